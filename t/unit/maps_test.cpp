// Unit tests for lib/maps: source parsing, hash and texthash maps, atomic rebuild.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "log/log.hpp"
#include "maps/maps.hpp"

using namespace postern;

namespace {

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
public:
    TempDir() {
        std::string tmpl = "/tmp/postern-maps-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path_ = tmpl;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

    // Names in the directory, sorted, for "no temp file left" checks.
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(path_)) out.push_back(e.path().filename());
        std::sort(out.begin(), out.end());
        return out;
    }

private:
    std::string path_;
};

void write_file(const std::string& path, std::string_view text, mode_t mode = 0644) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    REQUIRE(out);
    REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string render(const std::vector<maps::Entry>& entries) {
    std::string out;
    for (const auto& e : entries) out += e.key + "=" + e.value + "@" + std::to_string(e.line) + ";";
    return out;
}

std::string render(const Result<std::optional<std::string>>& r) {
    if (!r) return "error: " + r.error().text;
    return *r ? "found: " + **r : "not found";
}

// Looks `key` up and renders the outcome for "got X, want Y" messages.
std::string look(const maps::Map& m, std::string_view key) { return render(m.lookup(key)); }

std::string joined(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += s + " ";
    return out;
}

struct ParseCase {
    const char* name;
    maps::Format format;
    std::string text;
    std::string want;  // render() of the entries
};

struct BadCase {
    const char* name;
    maps::Format format;
    std::string text;
    std::string want;  // the error text
};

constexpr auto P = maps::Format::Postmap;
constexpr auto A = maps::Format::Aliases;

}  // namespace

TEST_CASE("parse_source: well-formed sources") {
    const ParseCase cases[] = {
        {"empty", P, "", ""},
        {"one entry", P, "a b\n", "a=b@1;"},
        {"no final newline", P, "a b", "a=b@1;"},
        {"comments and blank lines", P, "# c\n\n   \n  # indented comment\nA  B  c \n", "a=B  c@5;"},
        {"case folding keeps the value", P, "MiXeD@Example.COM OK Value\n", "mixed@example.com=OK Value@1;"},
        {"tab separator", P, "k\tv\n", "k=v@1;"},
        {"continuation", P, "k v1\n  v2\n\tv3\nz y\n", "k=v1 v2 v3@1;z=y@4;"},
        {"continuation over comment and blank", P, "k v1\n# x\n\n v2\n", "k=v1 v2@1;"},
        {"value only on continuation line", P, "k\n   v\n", "k=v@1;"},
        {"CRLF line ends", P, "K V\r\nx y\r\n", "k=V@1;x=y@2;"},
        {"hash inside value is kept", P, "k a#b\n", "k=a#b@1;"},
        {"duplicate: first wins", P, "a 1\nb 2\nA 3\n  more\n", "a=1@1;b=2@2;"},
        {"aliases: simple", A, "postmaster: root\n", "postmaster=root@1;"},
        {"aliases: list kept raw", A, "Root: a,  b,\n  c\n", "root=a,  b, c@1;"},
        {"aliases: space before colon", A, "x : y\n", "x=y@1;"},
        {"aliases: quoted key", A, "\"Foo Bar\": x\n", "foo bar=x@1;"},
        {"aliases: quoted key with colon", A, "\"a:b\" : y\n", "a:b=y@1;"},
        {"aliases: comments", A, "# head\nabuse: root # not a comment\n", "abuse=root # not a comment@2;"},
        {"aliases: value on next line", A, "k:\n  |\"/bin/cmd\"\n", "k=|\"/bin/cmd\"@1;"},
        {"aliases: duplicate first wins", A, "a: 1\nA: 2\n", "a=1@1;"},
    };
    for (const auto& c : cases) {
        auto r = maps::parse_source(c.text, c.format, "f");
        std::string got = r ? render(*r) : "error: " + r.error().text;
        INFO(c.name << ": got " << got << ", want " << c.want);
        CHECK(got == c.want);
    }
}

TEST_CASE("parse_source: malformed sources give file:line: message") {
    const std::string key_limit = std::to_string(maps::MaxKeyLength);
    const std::string value_limit = std::to_string(maps::MaxValueLength);
    const BadCase cases[] = {
        {"missing value", P, "a b\nkey\n", "f:2: missing value (want \"key whitespace value\")"},
        {"missing value after continuation entry", P, "a b\n c\nd\n", "f:3: missing value (want \"key whitespace value\")"},
        {"continuation first", P, " x y\n", "f:1: continuation line before any entry"},
        {"continuation after comment", P, "# c\n\n\tx\n", "f:3: continuation line before any entry"},
        {"NUL byte", P, std::string("a b\nc\0d e\n", 10), "f:2: NUL byte in text"},
        {"NUL byte in comment", P, std::string("#\0\n", 3), "f:1: NUL byte in text"},
        {"aliases: no colon", A, "a: b\nnocolon\n", "f:2: missing ':' after key"},
        {"aliases: empty key", A, ": v\n", "f:1: missing key"},
        {"aliases: empty quoted key", A, "\"\": v\n", "f:1: missing key"},
        {"aliases: missing value", A, "k:\n", "f:1: missing value (want \"key: value\")"},
        {"aliases: unterminated quote", A, "\"k: v\n", "f:1: unterminated quoted key"},
        {"aliases: quote without colon", A, "\"k\" v\n", "f:1: missing ':' after key"},
        {"aliases: continuation first", A, "  a: b\n", "f:1: continuation line before any entry"},
        {"key too long", P, std::string(maps::MaxKeyLength + 1, 'k') + " v\n",
         "f:1: key too long (limit " + key_limit + " bytes)"},
        {"aliases: key too long", A, "a: b\n" + std::string(maps::MaxKeyLength + 1, 'k') + ": v\n",
         "f:2: key too long (limit " + key_limit + " bytes)"},
        {"value too long", P, "k " + std::string(maps::MaxValueLength + 1, 'v') + "\n",
         "f:1: value too long (limit " + value_limit + " bytes)"},
        {"value too long by continuation", P,
         "x y\nk " + std::string(50000, 'v') + "\n " + std::string(maps::MaxValueLength - 50000, 'w') + "\n",
         "f:2: value too long (limit " + value_limit + " bytes)"},
        {"aliases: value too long", A, "k: " + std::string(maps::MaxValueLength + 1, 'v') + "\n",
         "f:1: value too long (limit " + value_limit + " bytes)"},
    };
    for (const auto& c : cases) {
        auto r = maps::parse_source(c.text, c.format, "f");
        std::string got = r ? "entries: " + render(*r) : r.error().text;
        INFO(c.name << ": got " << got << ", want " << c.want);
        CHECK(got == c.want);
        if (!r) CHECK(r.error().kind == Error::Kind::Config);
    }
}

TEST_CASE("parse_source: limits are inclusive") {
    const std::string key(maps::MaxKeyLength, 'K');
    const std::string value(maps::MaxValueLength, 'v');
    const std::string split_value = std::string(50000, 'v') + " " + std::string(maps::MaxValueLength - 50001, 'w');
    const ParseCase cases[] = {
        {"key at limit", P, key + " v\n", std::string(maps::MaxKeyLength, 'k') + "=v@1;"},
        {"aliases: key at limit", A, key + ": v\n", std::string(maps::MaxKeyLength, 'k') + "=v@1;"},
        {"value at limit", P, "k " + value + "\n", "k=" + value + "@1;"},
        {"aliases: value at limit", A, "k: " + value + "\n", "k=" + value + "@1;"},
        {"value at limit by continuation", P,
         "k " + std::string(50000, 'v') + "\n " + std::string(maps::MaxValueLength - 50001, 'w') + "\n",
         "k=" + split_value + "@1;"},
    };
    for (const auto& c : cases) {
        auto r = maps::parse_source(c.text, c.format, "f");
        std::string got = r ? render(*r) : "error: " + r.error().text;
        INFO(c.name << ": got " << got.substr(0, 80) << "..., want " << c.want.substr(0, 80) << "...");
        CHECK(got == c.want);
    }
}

TEST_CASE("parse_source: a duplicate key is logged with file:line") {
    TempDir dir;
    const std::string log_path = dir.file("log");
    log::open({.tag = "postern/maps_test", .file = log_path});
    auto r = maps::parse_source("a 1\nb 2\nA 3\n", P, "/etc/postern/x");
    log::open({.tag = "postern/maps_test", .file = "-"});
    REQUIRE(r);
    const std::string got = read_file(log_path);
    const std::string want = "warning: /etc/postern/x:3: duplicate entry \"a\" ignored; the entry at line 1 wins";
    INFO("got " << got << ", want it to contain " << want);
    CHECK(got.find(want) != std::string::npos);
}

TEST_CASE("hash: build and look up") {
    TempDir dir;
    const std::string src = dir.file("virtual");
    const std::string long_key(maps::MaxKeyLength, 'x');
    write_file(src, "# virtual\nUser@Example.COM  Local-Part\nother@example.com a,\n  b\n" + long_key + " long\n",
               0640);
    REQUIRE(maps::build(src, P));
    {
        const std::vector<std::string> want = {"virtual", "virtual.db"};
        INFO("got " << joined(dir.names()) << ", want " << joined(want));
        CHECK(dir.names() == want);
    }
    struct stat st {};
    REQUIRE(::stat((src + ".db").c_str(), &st) == 0);
    CHECK((st.st_mode & 0004) == 0);  // as private as the source

    auto m = maps::open("hash:" + src);
    REQUIRE(m);
    CHECK((*m)->spec() == "hash:" + src);
    struct Case { std::string key, want; };
    const Case cases[] = {
        {"user@example.com", "found: Local-Part"},
        {"USER@EXAMPLE.COM", "found: Local-Part"},
        {"other@example.com", "found: a, b"},
        {"nobody@example.com", "not found"},
        {"", "not found"},
        {std::string("user@example.com\0", 17), "not found"},
        {long_key, "found: long"},
        {long_key + "x", "not found"},
    };
    for (const auto& c : cases) {
        std::string got = look(**m, c.key);
        INFO("key " << c.key.substr(0, 40) << ": got " << got << ", want " << c.want);
        CHECK(got == c.want);
    }
}

TEST_CASE("hash: aliases format") {
    TempDir dir;
    const std::string src = dir.file("aliases");
    write_file(src, "postmaster: root\nRoot: alice, bob\n");
    REQUIRE(maps::build(src, A));
    auto m = maps::open("hash:" + src, A);
    REQUIRE(m);
    CHECK(look(**m, "ROOT") == "found: alice, bob");
    CHECK(look(**m, "postmaster") == "found: root");
}

TEST_CASE("texthash: open and look up") {
    TempDir dir;
    const std::string src = dir.file("transport");
    const std::string long_key(maps::MaxKeyLength, 'x');
    write_file(src, "Example.COM smtp:[relay.example.com]\n" + long_key + " long\n");
    auto m = maps::open("texthash:" + src);
    REQUIRE(m);
    CHECK((*m)->spec() == "texthash:" + src);
    struct Case { std::string key, want; };
    const Case cases[] = {
        {"example.com", "found: smtp:[relay.example.com]"},
        {"EXAMPLE.com", "found: smtp:[relay.example.com]"},
        {"example.org", "not found"},
        {long_key, "found: long"},
        {long_key + "x", "not found"},
    };
    for (const auto& c : cases) {
        std::string got = look(**m, c.key);
        INFO("key " << c.key.substr(0, 40) << ": got " << got << ", want " << c.want);
        CHECK(got == c.want);
    }

    write_file(src, "a: b\n");
    auto al = maps::open("texthash:" + src, A);
    REQUIRE(al);
    CHECK(look(**al, "A") == "found: b");
}

TEST_CASE("texthash: bad sources") {
    TempDir dir;
    const std::string src = dir.file("bad");
    write_file(src, "ok 1\nbroken\n");
    auto r = maps::open("texthash:" + src);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Config);
    CHECK(r.error().text == src + ":2: missing value (want \"key whitespace value\")");

    auto missing = maps::open("texthash:" + dir.file("nope"));
    REQUIRE_FALSE(missing);
    CHECK(missing.error().kind == Error::Kind::Config);
    CHECK(missing.error().text ==
          "texthash:" + dir.file("nope") + ": open " + dir.file("nope") + ": No such file or directory");

    // Sparse files: the size check comes before any reading.
    const std::string big = dir.file("big");
    write_file(big, "");
    REQUIRE(::truncate(big.c_str(), static_cast<off_t>(maps::MaxSourceSize + 1)) == 0);
    auto too_big = maps::open("texthash:" + big);
    REQUIRE_FALSE(too_big);
    CHECK(too_big.error().text == "texthash:" + big + ": " + big + ": file too large (limit " +
                                      std::to_string(maps::MaxSourceSize) + " bytes)");
    // At the limit it is read (and then refused by the parser: it is all NULs).
    REQUIRE(::truncate(big.c_str(), static_cast<off_t>(maps::MaxSourceSize)) == 0);
    auto at_limit = maps::open("texthash:" + big);
    REQUIRE_FALSE(at_limit);
    CHECK(at_limit.error().text == big + ":1: NUL byte in text");
}

TEST_CASE("hash: rebuild while a reader has the old map open") {
    TempDir dir;
    const std::string src = dir.file("map");
    write_file(src, "k old\ngone yes\n");
    REQUIRE(maps::build(src, P));
    auto old_map = maps::open("hash:" + src);
    REQUIRE(old_map);
    CHECK(look(**old_map, "k") == "found: old");

    write_file(src, "k new\nadded yes\n");
    auto rebuilt = maps::build(src, P);
    INFO("build: " << (rebuilt ? "ok" : rebuilt.error().text));
    REQUIRE(rebuilt);

    struct Case { const maps::Map* map; const char* key; const char* want; };
    auto new_map = maps::open("hash:" + src);
    REQUIRE(new_map);
    const Case cases[] = {
        {old_map->get(), "k", "found: old"},      {old_map->get(), "gone", "found: yes"},
        {old_map->get(), "added", "not found"},   {new_map->get(), "k", "found: new"},
        {new_map->get(), "gone", "not found"},    {new_map->get(), "added", "found: yes"},
    };
    for (const auto& c : cases) {
        std::string got = look(*c.map, c.key);
        INFO((c.map == old_map->get() ? "old" : "new") << " map, key " << c.key << ": got " << got
                                                         << ", want " << c.want);
        CHECK(got == c.want);
    }
}

TEST_CASE("hash: a failed build keeps the old .db and leaves no temp file") {
    TempDir dir;
    const std::string src = dir.file("map");
    write_file(src, "k old\n");
    REQUIRE(maps::build(src, P));
    const std::vector<std::string> want_names = {"map", "map.db"};

    SECTION("bad source") {
        write_file(src, "k new\nbroken\n");
        auto r = maps::build(src, P);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Config);
        CHECK(r.error().text == src + ":2: missing value (want \"key whitespace value\")");
    }
    SECTION("write fails after the temp file was created") {
        // Many entries and a small file size limit: BDB fails with EFBIG while
        // writing the temporary .db. Nothing may print while the limit is set.
        std::string text;
        for (int i = 0; i < 20000; ++i) text += "key" + std::to_string(i) + " " + std::string(40, 'v') + "\n";
        write_file(src, text);
        struct rlimit saved {};
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
        auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
        log::open({.tag = "postern/maps_test", .file = "/dev/null"});
        struct rlimit small = saved;
        small.rlim_cur = 64 * 1024;
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
        auto r = maps::build(src, P);
        ::setrlimit(RLIMIT_FSIZE, &saved);
        ::signal(SIGXFSZ, old_handler);
        log::open({.tag = "postern/maps_test", .file = "-"});
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Temp);
        INFO("error: " << r.error().text);
        CHECK(r.error().text.find(src + ".db.tmp.") != std::string::npos);
    }
    {
        INFO("got " << joined(dir.names()) << ", want " << joined(want_names));
        CHECK(dir.names() == want_names);
    }
    auto m = maps::open("hash:" + src);
    REQUIRE(m);
    CHECK(look(**m, "k") == "found: old");
}

TEST_CASE("open: errors") {
    TempDir dir;
    const std::string file = dir.file("nope");
    struct Case { std::string spec, want; };
    const Case cases[] = {
        {"hash:" + file, "hash:" + file + ": cannot open " + file +
                             ".db: No such file or directory (create it with \"postern map build " + file + "\")"},
        {"btree:/etc/x", "unsupported map type \"btree\" in \"btree:/etc/x\" (want hash:FILE or texthash:FILE)"},
        {"/etc/x", "unsupported map type \"\" in \"/etc/x\" (want hash:FILE or texthash:FILE)"},
        {"hash:", "map \"hash:\" has no file name"},
    };
    for (const auto& c : cases) {
        auto r = maps::open(c.spec);
        std::string got = r ? "opened" : r.error().text;
        INFO(c.spec << ": got " << got << ", want " << c.want);
        CHECK(got == c.want);
        if (!r) CHECK(r.error().kind == Error::Kind::Config);
    }

    // A file that is not a Berkeley DB hash file.
    write_file(file + ".db", "this is not a database\n");
    log::open({.tag = "postern/maps_test", .file = "/dev/null"});  // BDB says why, too
    auto r = maps::open("hash:" + file);
    log::open({.tag = "postern/maps_test", .file = "-"});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Config);
    INFO("got " << r.error().text);
    CHECK(r.error().text.rfind("hash:" + file + ": cannot open " + file + ".db: ", 0) == 0);
}

TEST_CASE("build: missing source") {
    TempDir dir;
    auto r = maps::build(dir.file("nope"), P);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Config);
    CHECK(r.error().text == "open " + dir.file("nope") + ": No such file or directory");
    CHECK(dir.names().empty());
}

TEST_CASE("changed: hash maps watch the .db they opened") {
    TempDir dir;
    const std::string src = dir.file("aliases");
    write_file(src, "oldalias: root\n");
    REQUIRE(maps::build(src, A));
    auto m = maps::open("hash:" + src, A);
    REQUIRE(m);
    auto other = maps::open("hash:" + src, A);
    REQUIRE(other);

    INFO("untouched: got changed() " << (*m)->changed() << ", want false");
    CHECK_FALSE((*m)->changed());
    CHECK(look(**m, "oldalias") == "found: root");

    // Editing the source is not a change of the table until it is built.
    write_file(src, "newalias: root\n");
    INFO("source edited, not rebuilt: got changed() " << (*m)->changed() << ", want false");
    CHECK_FALSE((*m)->changed());

    REQUIRE(maps::build(src, A));
    INFO("after a rebuild: got changed() " << (*m)->changed() << ", want true");
    CHECK((*m)->changed());
    CHECK((*other)->changed());
    // The old table still answers, as before the rebuild.
    CHECK(look(**m, "oldalias") == "found: root");
    CHECK(look(**m, "newalias") == "not found");

    auto fresh = maps::open("hash:" + src, A);
    REQUIRE(fresh);
    INFO("a map opened after the rebuild: got changed() " << (*fresh)->changed() << ", want false");
    CHECK_FALSE((*fresh)->changed());
    CHECK(look(**fresh, "newalias") == "found: root");

    // Works without the path: the directory is gone, as it would be out of sight in a chroot.
    REQUIRE(::unlink((src + ".db").c_str()) == 0);
    INFO("after the .db was removed: got changed() " << (*fresh)->changed() << ", want true");
    CHECK((*fresh)->changed());
}

TEST_CASE("changed: texthash maps watch their source file") {
    TempDir dir;
    const std::string src = dir.file("transport");
    write_file(src, "example.com smtp:[a.example]\n");
    auto m = maps::open("texthash:" + src);
    REQUIRE(m);
    INFO("untouched: got changed() " << (*m)->changed() << ", want false");
    CHECK_FALSE((*m)->changed());
    INFO("a lookup does not count as a change");
    CHECK(look(**m, "example.com") == "found: smtp:[a.example]");
    CHECK_FALSE((*m)->changed());

    SECTION("edited with an atomic rename, as editors and scripts do") {
        const std::string tmp = dir.file("transport.new");
        write_file(tmp, "example.com smtp:[b.example]\n");
        REQUIRE(::rename(tmp.c_str(), src.c_str()) == 0);
        INFO("after the rename: got changed() " << (*m)->changed() << ", want true");
        CHECK((*m)->changed());
        CHECK(look(**m, "example.com") == "found: smtp:[a.example]");
        auto again = maps::open("texthash:" + src);
        REQUIRE(again);
        CHECK_FALSE((*again)->changed());
        CHECK(look(**again, "example.com") == "found: smtp:[b.example]");
    }
    SECTION("rewritten in place") {
        {
            std::ofstream out(src, std::ios::binary | std::ios::app);
            out << "example.org smtp:[c.example]\n";
        }
        INFO("after an append: got changed() " << (*m)->changed() << ", want true");
        CHECK((*m)->changed());
    }
    SECTION("same size, new modification time") {
        const timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
        REQUIRE(::utimensat(AT_FDCWD, src.c_str(), times, 0) == 0);
        INFO("after a new mtime: got changed() " << (*m)->changed() << ", want true");
        CHECK((*m)->changed());
    }
    SECTION("removed") {
        REQUIRE(::unlink(src.c_str()) == 0);
        INFO("after unlink: got changed() " << (*m)->changed() << ", want true");
        CHECK((*m)->changed());
    }
}

TEST_CASE("changed: a texthash map keeps one descriptor, closed with the map") {
    TempDir dir;
    const std::string src = dir.file("t");
    write_file(src, "k v\n");
    auto count_fds = [] {
        std::size_t n = 0;
        for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
        return n;
    };
    const std::size_t before = count_fds();
    {
        auto m = maps::open("texthash:" + src);
        REQUIRE(m);
        INFO("open descriptors with the map open: got " << count_fds() << ", want " << before + 1);
        CHECK(count_fds() == before + 1);
    }
    INFO("open descriptors after the map is gone: got " << count_fds() << ", want " << before);
    CHECK(count_fds() == before);
    // A source that fails to parse leaves no descriptor behind either.
    write_file(src, "broken\n");
    CHECK_FALSE(maps::open("texthash:" + src));
    CHECK(count_fds() == before);
}
