// Unit tests for the local delivery agent's logic: entries, alias/.forward
// expansion, message conversion, mbox, commands, child processes, tables,
// re-queueing, Maildir batches and the request loop.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fs/fs.hpp"
#include "ipc/attrs.hpp"
#include "local/agent.hpp"
#include "local/batch.hpp"
#include "local/aliases.hpp"
#include "local/forward.hpp"
#include "local/maildir.hpp"
#include "local/mbox.hpp"
#include "local/message.hpp"
#include "local/pipe.hpp"
#include "local/privsep.hpp"
#include "local/recipient.hpp"
#include "local/resubmit.hpp"
#include "local/server.hpp"
#include "local/status.hpp"
#include "local/tables.hpp"
#include "queue/queue.hpp"

using namespace postern;
using namespace postern::local;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-local-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
        ::chmod(path.c_str(), 0755);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void put(const std::string& path, const std::string& text, mode_t mode = 0644) {
    std::ofstream(path, std::ios::binary) << text;
    ::chmod(path.c_str(), mode);
}

std::string get(const std::string& path) {
    auto r = fs::read_file(path, 16 << 20);
    INFO("read " << path << ": " << (r ? "" : r.error().text));
    REQUIRE(r);
    return *r;
}

bool root() { return ::geteuid() == 0; }

privs::UserInfo make_user(std::string name, uid_t uid) { return {name, uid, uid, "/home/" + name, "/bin/sh"}; }

// ---- a fake system for the expander

struct FakeResolver : Resolver {
    std::map<std::string, std::string> aliases;
    std::map<std::string, privs::UserInfo> users;
    std::map<std::string, FileText> forwards;  // "bob" or "bob+ext"
    std::map<std::string, FileText> includes;  // by path
    std::set<std::string> failing;             // alias keys whose lookup fails
    std::set<std::string> local_domains{"example.com", "localhost"};
    bool commands = true, files = true;
    std::vector<std::string> reads;            // "reader path" for include reads

    FakeResolver() {
        for (auto& u : {make_user("root", 0), make_user("bob", 1001), make_user("alice", 1002), make_user("carol", 1003),
                        make_user("nobody", 65534)})
            users[u.name] = u;
    }
    int alias_lookups = 0;

    Result<std::optional<std::string>> alias(std::string_view key) override {
        ++alias_lookups;
        if (failing.count(std::string(key))) return Error::temp("table down");
        auto it = aliases.find(std::string(key));
        if (it == aliases.end()) return std::optional<std::string>();
        return std::optional<std::string>(it->second);
    }
    Result<std::optional<privs::UserInfo>> user(std::string_view name) override {
        auto it = users.find(std::string(name));
        if (it == users.end()) return std::optional<privs::UserInfo>();
        return std::optional<privs::UserInfo>(it->second);
    }
    Result<std::optional<privs::UserInfo>> user_by_uid(uid_t uid) override {
        for (auto& [n, u] : users)
            if (u.uid == uid) return std::optional<privs::UserInfo>(u);
        return std::optional<privs::UserInfo>();
    }
    Result<privs::UserInfo> default_privs() override { return users["nobody"]; }
    Result<std::optional<FileText>> forward_file(const privs::UserInfo& u, std::string_view ext,
                                                std::string_view) override {
        if (!ext.empty()) {
            if (auto it = forwards.find(u.name + "+" + std::string(ext)); it != forwards.end())
                return std::optional<FileText>(it->second);
        }
        if (auto it = forwards.find(u.name); it != forwards.end()) return std::optional<FileText>(it->second);
        return std::optional<FileText>();
    }
    Result<FileText> include_file(const std::string& path, const privs::UserInfo& reader) override {
        reads.push_back(reader.name + " " + path);
        auto it = includes.find(path);
        if (it == includes.end()) return Error::temp("cannot open: No such file or directory");
        return it->second;
    }
    bool local_domain(std::string_view d) override { return local_domains.count(std::string(d)) > 0; }
    bool allowed(Target::Kind kind, Source source) override {
        bool on = kind == Target::Kind::Command ? commands : files;
        return on && source != Source::Include;
    }
};

std::string kind_name(Target::Kind k) {
    switch (k) {
    case Target::Kind::Mailbox: return "mailbox";
    case Target::Kind::File: return "file";
    case Target::Kind::Command: return "command";
    case Target::Kind::Forward: return "forward";
    }
    return "?";
}

// One line per target and failure, for comparing whole plans.
std::vector<std::string> describe(const Plan& p) {
    std::vector<std::string> out;
    for (auto& t : p.targets) {
        std::string s = kind_name(t.kind) + " ";
        if (t.kind == Target::Kind::Forward) s += t.text + " from=" + t.sender;
        else s += t.as.name + (t.text.empty() ? "" : " " + t.text);
        out.push_back(s + " for " + t.address);
    }
    for (auto& f : p.failures) out.push_back("fail " + f.status.dsn + " " + f.status.text + " for " + f.address);
    return out;
}

Plan expand(FakeResolver& r, const std::string& address, const std::string& sender = "s@remote.example",
            ExpandOptions o = {}) {
    Expander x(r, o);
    Address a = split_address(address);
    return x.expand(address, a.local, a.domain, sender);
}

using Lines = std::vector<std::string>;

// A committed queue file with the given content; returns the open fd and offset.
struct QueuedMessage {
    TempDir dir;
    UniqueFd fd;
    std::uint64_t offset = 0;
    std::string id;
    explicit QueuedMessage(const std::string& content, const std::string& sender = "a@remote.example") {
        REQUIRE(queue::make_dirs(dir.path));
        auto w = queue::Writer::create(dir.path, 1700000000000000);
        REQUIRE(w);
        queue::Envelope env;
        env.sender = sender;
        env.recipients.push_back({"bob@example.com", "", 0});
        REQUIRE(w->write_envelope(env));
        REQUIRE(w->append(content));
        REQUIRE(w->finish());
        REQUIRE(w->commit());
        id = w->id();
        fd.reset(::open((dir / ("incoming/" + id)).c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
        REQUIRE(queue::read_envelope(fd.get(), &offset));
    }
    Message message() {
        auto m = Message::open(fd.get(), offset);
        INFO((m ? "" : m.error().text));
        REQUIRE(m);
        return std::move(*m);
    }
};

std::string collect_lf(const Message& m, const std::string& prefix, bool quote) {
    std::string out;
    auto r = m.stream_lf(prefix, quote, [&](std::string_view s) -> Result<void> {
        out.append(s);
        return {};
    });
    REQUIRE(r);
    return out;
}

Producer producer_of(std::string text) {
    return [text](const Sink& sink) { return sink(text); };
}

}  // namespace

// ---- status

TEST_CASE("worst: deferred beats bounced beats sent") {
    Status s = Status::sent("ok"), b = Status::bounced("5.1.1", "no"), d = Status::deferred("4.3.0", "later");
    CHECK(worst(s, b).kind == Kind::Bounced);
    CHECK(worst(b, s).kind == Kind::Bounced);
    CHECK(worst(b, d).kind == Kind::Deferred);
    CHECK(worst(d, s).kind == Kind::Deferred);
    CHECK(worst(s, Status::sent("other")).text == "ok");
}

TEST_CASE("pack/unpack round trip and strictness") {
    std::vector<std::string> f{"", "a", std::string("b\0c", 3), std::string(70000, 'x')};
    auto u = unpack(pack(f));
    REQUIRE(u);
    CHECK(*u == f);
    CHECK_FALSE(unpack(std::string(MaxPacked + 1, '0')));
    for (std::string bad : {"x", "3:ab", "-1:", ":", "1:ab", "999999999:a"}) {
        INFO("input " << bad);
        CHECK_FALSE(unpack(bad));
    }
    auto st = decode_status(encode_status(Status::bounced("5.1.1", "unknown user")));
    REQUIRE(st);
    CHECK(st->kind == Kind::Bounced);
    CHECK(st->text == "unknown user");
    CHECK_FALSE(decode_status(pack({"S", "5.1.1", "sent with a 5xx code"})));
    CHECK_FALSE(decode_status(pack({"X", "4.3.0", "unknown kind"})));
}

TEST_CASE("storage_status: full disk and quota defer 4.2.2, too large bounces 5.2.2") {
    CHECK(storage_status(sys_error("write", "/m", ENOSPC)).dsn == "4.2.2");
    CHECK(storage_status(sys_error("write", "/m", EDQUOT)).kind == Kind::Deferred);
    CHECK(storage_status(sys_error("write", "/m", EFBIG)).dsn == "5.2.2");
    CHECK(storage_status(sys_error("write", "/m", EIO)).dsn == "4.2.0");
}

// ---- recipients

TEST_CASE("split_address, split_extension and domain lists") {
    auto a = split_address("Bob+Lists@Example.COM");
    CHECK(a.local == "Bob+Lists");
    CHECK(a.domain == "example.com");
    CHECK(split_address("\"john doe\"@x.example").local == "john doe");
    CHECK(split_address("postmaster").domain.empty());
    auto p = split_extension("bob+lists+more", "+");
    CHECK(p.user == "bob");
    CHECK(p.extension == "lists+more");
    CHECK(p.delimiter == '+');
    CHECK(split_extension("bob-x", "+-").user == "bob");
    CHECK(split_extension("+bob", "+").user == "+bob");
    CHECK(split_extension("bob", "").extension.empty());
    DomainList d("Example.com, localhost hash:/etc/x");
    CHECK(d.contains("EXAMPLE.COM"));
    CHECK(d.contains("localhost"));
    CHECK_FALSE(d.contains("hash:/etc/x"));
    CHECK_FALSE(d.contains("other.example"));
}

// ---- entries

TEST_CASE("parse_entries: every kind of entry") {
    struct Case {
        std::string in;
        std::vector<Entry> want;
    };
    using K = Entry::Kind;
    std::vector<Case> cases = {
        {"bob", {{K::Address, "bob"}}},
        {"bob, alice@x.example", {{K::Address, "bob"}, {K::Address, "alice@x.example"}}},
        {"\\bob", {{K::Address, "bob", true}}},
        {"<a@b.example>", {{K::Address, "a@b.example"}}},
        {"|/usr/bin/filter -x", {{K::Command, "/usr/bin/filter -x"}}},
        {"\"|/usr/bin/filter a, b\", bob", {{K::Command, "/usr/bin/filter a, b"}, {K::Address, "bob"}}},
        {"\"|echo \\\"hi\\\"\"", {{K::Command, "echo \"hi\""}}},
        {"/var/log/copy, /var/mail/dir/", {{K::File, "/var/log/copy"}, {K::File, "/var/mail/dir/"}}},
        {":include:/etc/postern/list", {{K::Include, "/etc/postern/list"}}},
        {":INCLUDE: /etc/x", {{K::Include, "/etc/x"}}},
        {"\"john doe\"@x.example", {{K::Address, "\"john doe\"@x.example"}}},
        {" , bob ,, ", {{K::Address, "bob"}}},
    };
    for (auto& c : cases) {
        auto got = parse_entries(c.in);
        INFO("input: " << c.in << (got ? "" : " error: " + got.error().text));
        REQUIRE(got);
        CHECK(*got == c.want);
    }
    for (std::string bad : {"\"bob", "|", "| ", ":include:relative", ":include:", "\\"}) {
        INFO("input: " << bad);
        CHECK_FALSE(parse_entries(bad));
    }
}

TEST_CASE("parse_file_entries: lines, comments, quotes across the file") {
    auto got = parse_file_entries("# my forward\n\\bob\n  # indented comment\n|/usr/bin/vacation bob\nalice, carol\n");
    REQUIRE(got);
    using K = Entry::Kind;
    std::vector<Entry> want{{K::Address, "bob", true}, {K::Command, "/usr/bin/vacation bob"}, {K::Address, "alice"},
                            {K::Address, "carol"}};
    CHECK(*got == want);
    std::string many;
    for (std::size_t i = 0; i < MaxEntries; ++i) many += "u" + std::to_string(i) + "\n";
    auto at_limit = parse_file_entries(many);
    REQUIRE(at_limit);
    CHECK(at_limit->size() == MaxEntries);
    CHECK_FALSE(parse_file_entries(many + "one-more\n"));
}

TEST_CASE("forward_paths: +ext file first only when there is an extension") {
    auto cfg = config::Config::from_text("", "main.cf", "/etc/postern");
    REQUIRE(cfg);
    ForwardVars v{.home = "/home/bob", .user = "bob", .extension = "", .recipient_delimiter = "",
                  .local = "bob", .domain = "example.com", .recipient = "bob@example.com"};
    CHECK(forward_paths(*cfg, v) == std::vector<std::string>{"/home/bob/.forward"});
    v.extension = "lists";
    v.recipient_delimiter = "+";
    CHECK(forward_paths(*cfg, v) == std::vector<std::string>{"/home/bob/.forward+lists", "/home/bob/.forward"});
    auto cfg2 = config::Config::from_text("forward_path = /var/forward/$user, relative/$user\n", "main.cf", "/etc/postern");
    REQUIRE(cfg2);
    CHECK(forward_paths(*cfg2, v) == std::vector<std::string>{"/var/forward/bob"});
}

TEST_CASE("unsafe_file: owner, group/world writable, not regular") {
    struct stat st {};
    st.st_mode = S_IFREG | 0644;
    st.st_uid = 1001;
    CHECK(unsafe_file(st, 1001).empty());
    st.st_uid = 0;
    CHECK(unsafe_file(st, 1001).empty());
    st.st_uid = 1002;
    CHECK(unsafe_file(st, 1001) == "owned by uid 1002");
    st.st_uid = 1001;
    st.st_mode = S_IFREG | 0664;
    CHECK(unsafe_file(st, 1001) == "writable by group or others");
    st.st_mode = S_IFREG | 0646;
    CHECK_FALSE(unsafe_file(st, 1001).empty());
    st.st_mode = S_IFDIR | 0755;
    CHECK(unsafe_file(st, 1001) == "not a regular file");
}

// ---- expansion

TEST_CASE("expand: a user without aliases gets the mailbox; unknown users bounce 5.1.1") {
    FakeResolver r;
    CHECK(describe(expand(r, "bob@example.com")) == Lines{"mailbox bob for bob@example.com"});
    CHECK(describe(expand(r, "Bob@example.com")) == Lines{"mailbox bob for Bob@example.com"});
    CHECK(describe(expand(r, "nosuch@example.com")) ==
          Lines{"fail 5.1.1 unknown user: \"nosuch\" for nosuch@example.com"});
}

TEST_CASE("expand: root's mail is never delivered as root") {
    FakeResolver r;
    auto p = expand(r, "root@example.com");
    REQUIRE(p.failures.size() == 1);
    CHECK(p.targets.empty());
    CHECK(p.failures[0].status.kind == Kind::Deferred);
    CHECK(p.failures[0].status.text.find("alias root") != std::string::npos);
    r.aliases["root"] = "bob";
    CHECK(describe(expand(r, "root@example.com")) == Lines{"mailbox bob for bob@example.com"});
}

TEST_CASE("expand: aliases to users, commands, files, and remote addresses") {
    FakeResolver r;
    r.aliases["team"] = "bob, alice, |/usr/bin/log-it, /var/log/team, x@remote.example";
    CHECK(describe(expand(r, "team@example.com")) == Lines{
                                                         "mailbox bob for bob@example.com",
                                                         "mailbox alice for alice@example.com",
                                                         "command nobody /usr/bin/log-it for team@example.com",
                                                         "file nobody /var/log/team for team@example.com",
                                                         "forward x@remote.example from=s@remote.example for x@remote.example",
                                                     });
}

TEST_CASE("expand: user+ext looks up the full key, then the user") {
    FakeResolver r;
    r.aliases["bob+lists"] = "alice";
    r.aliases["carol"] = "bob";
    CHECK(describe(expand(r, "bob+lists@example.com")) == Lines{"mailbox alice for alice@example.com"});
    CHECK(describe(expand(r, "carol+x@example.com")) == Lines{"mailbox bob for bob@example.com"});
    auto p = expand(r, "alice+x@example.com");
    REQUIRE(p.targets.size() == 1);
    CHECK(p.targets[0].extension == "x");
}

TEST_CASE("expand: an alias naming itself is the user's mailbox, \\user skips lookups") {
    FakeResolver r;
    r.aliases["bob"] = "bob, |/usr/bin/archive";
    r.forwards["bob"] = {"/home/bob/.forward", "alice", 1001};
    CHECK(describe(expand(r, "bob@example.com")) == Lines{"mailbox bob for bob@example.com",
                                                          "command nobody /usr/bin/archive for bob@example.com"});
    r.aliases["x"] = "\\alice";
    r.aliases["alice"] = "carol";
    CHECK(describe(expand(r, "x@example.com")) == Lines{"mailbox alice for alice@example.com"});
}

TEST_CASE("expand: loops bounce 5.4.6, the rest is still delivered") {
    FakeResolver r;
    r.aliases["a"] = "b, alice";
    r.aliases["b"] = "a";
    CHECK(describe(expand(r, "a@example.com")) == Lines{"mailbox alice for alice@example.com",
                                                        "fail 5.4.6 mail forwarding loop for a@example.com for a@example.com"});
    // A loop through .forward files.
    FakeResolver f;
    f.forwards["bob"] = {"/home/bob/.forward", "alice", 1001};
    f.forwards["alice"] = {"/home/alice/.forward", "bob@localhost", 1002};
    auto p = expand(f, "bob@example.com");
    CHECK(p.targets.empty());
    REQUIRE(p.failures.size() == 1);
    CHECK(p.failures[0].status.dsn == "5.4.6");
}

TEST_CASE("expand: depth limit") {
    FakeResolver r;
    for (int i = 0; i < 30; ++i) r.aliases["l" + std::to_string(i)] = "l" + std::to_string(i + 1);
    r.aliases["l30"] = "bob";
    auto p = expand(r, "l0@example.com");
    CHECK(p.targets.empty());
    REQUIRE(p.failures.size() == 1);
    CHECK(p.failures[0].status.dsn == "5.4.6");
    CHECK(p.failures[0].status.text.find("levels") != std::string::npos);
    // l11 -> ... -> l30 -> bob: bob is 20 levels down, the most allowed; one more is a loop.
    CHECK(describe(expand(r, "l11@example.com")) == Lines{"mailbox bob for bob@example.com"});
    auto over = expand(r, "l10@example.com");
    CHECK(over.targets.empty());
    CHECK(over.failures.size() == 1);
}

TEST_CASE("expand: duplicates are delivered once") {
    FakeResolver r;
    r.aliases["all"] = "bob, team, Bob@example.com, x@remote.example, X@Remote.example";
    r.aliases["team"] = "bob, alice";
    CHECK(describe(expand(r, "all@example.com")) == Lines{
                                                        "mailbox bob for bob@example.com",
                                                        "mailbox alice for alice@example.com",
                                                        "forward x@remote.example from=s@remote.example for x@remote.example",
                                                    });
}

TEST_CASE("expand: repeated aliases and include files are expanded once, not exponentially") {
    FakeResolver r;
    for (int i = 0; i < 19; ++i) r.aliases["a" + std::to_string(i)] = "a" + std::to_string(i + 1) + ", a" + std::to_string(i + 1);
    r.aliases["a19"] = "bob";
    CHECK(describe(expand(r, "a0@example.com")) == Lines{"mailbox bob for bob@example.com"});
    INFO("alias lookups: " << r.alias_lookups);
    CHECK(r.alias_lookups < 100);
    r.aliases["inc"] = ":include:/i0";
    for (int i = 0; i < 15; ++i)
        r.includes["/i" + std::to_string(i)] = {"/i", ":include:/i" + std::to_string(i + 1) + "\n:include:/i" + std::to_string(i + 1), 0};
    r.includes["/i15"] = {"/i15", "alice", 0};
    CHECK(describe(expand(r, "inc@example.com")) == Lines{"mailbox alice for alice@example.com"});
    CHECK(r.reads.size() == 16);
}

TEST_CASE("expand: too many destinations bounce the recipient without delivering any") {
    FakeResolver r;
    std::string list;
    for (int i = 0; i < 50; ++i) list += "u" + std::to_string(i) + "@remote.example,";
    r.aliases["big"] = list;
    auto p = expand(r, "big@example.com", "s@remote.example", {.max_items = 20});
    CHECK(p.targets.empty());
    REQUIRE(p.failures.size() == 1);
    CHECK(p.failures[0].status.dsn == "5.3.0");
    CHECK(expand(r, "big@example.com", "s@remote.example", {.max_items = 50}).targets.size() == 50);
}

TEST_CASE("expand: :include: files, read as the alias runner, their entries run as the owner") {
    FakeResolver r;
    r.aliases["list"] = ":include:/etc/lists/list";
    r.includes["/etc/lists/list"] = {"/etc/lists/list", "# members\nbob\n|/usr/bin/count\n", 1003};
    r.commands = true;
    // FakeResolver refuses commands from include files (allowed() says no for Source::Include).
    auto p = expand(r, "list@example.com");
    CHECK(describe(p) == Lines{"mailbox bob for bob@example.com",
                               "fail 5.7.1 mail to command is restricted in include entries: /usr/bin/count for "
                               "list@example.com"});
    CHECK(r.reads == Lines{"nobody /etc/lists/list"});
    // A file from an include run as its owner; root's include file runs as default_privs.
    r.includes["/etc/lists/list"] = {"/etc/lists/list", "bob", 1003};
    r.includes["/etc/lists/self"] = {"/etc/lists/self", ":include:/etc/lists/self", 0};
    r.aliases["selfish"] = ":include:/etc/lists/self";
    auto loop = expand(r, "selfish@example.com");
    REQUIRE(loop.failures.size() == 1);
    CHECK(loop.failures[0].status.dsn == "5.4.6");
    r.aliases["missing"] = ":include:/nonexistent";
    auto m = expand(r, "missing@example.com");
    REQUIRE(m.failures.size() == 1);
    CHECK(m.failures[0].status.kind == Kind::Deferred);
}

TEST_CASE("expand: include owner's rights for files and commands") {
    struct AllowAll : FakeResolver {
        bool allowed(Target::Kind, Source) override { return true; }
    } r;
    r.aliases["list"] = ":include:/etc/l1, :include:/etc/l2";
    r.includes["/etc/l1"] = {"/etc/l1", "|/bin/a", 1003};
    r.includes["/etc/l2"] = {"/etc/l2", "/tmp/b", 0};
    CHECK(describe(expand(r, "list@example.com")) == Lines{"command carol /bin/a for list@example.com",
                                                           "file nobody /tmp/b for list@example.com"});
}

TEST_CASE("expand: allow_mail_to_commands/files refuse with 5.7.1") {
    FakeResolver r;
    r.commands = false;
    r.files = false;
    r.aliases["x"] = "|/bin/true, /tmp/x";
    auto p = expand(r, "x@example.com");
    CHECK(p.targets.empty());
    REQUIRE(p.failures.size() == 2);
    CHECK(p.failures[0].status.dsn == "5.7.1");
    CHECK(p.failures[1].status.text.find("mail to file is restricted") != std::string::npos);
}

TEST_CASE("expand: owner-ALIAS becomes the sender of forwarded copies, not for <>") {
    FakeResolver r;
    r.aliases["list"] = "a@remote.example, b@remote.example";
    r.aliases["owner-list"] = "bob";
    CHECK(describe(expand(r, "list@example.com")) ==
          Lines{"forward a@remote.example from=owner-list@example.com for a@remote.example",
                "forward b@remote.example from=owner-list@example.com for b@remote.example"});
    CHECK(describe(expand(r, "list@example.com", "")) ==
          Lines{"forward a@remote.example from= for a@remote.example",
                "forward b@remote.example from= for b@remote.example"});
}

TEST_CASE("expand: .forward entries run as the user; \\user keeps a copy; +ext file first") {
    FakeResolver r;
    r.forwards["bob"] = {"/home/bob/.forward", "\\bob, |/usr/bin/procmail, far@remote.example", 1001};
    CHECK(describe(expand(r, "bob@example.com")) == Lines{
                                                         "mailbox bob for bob@example.com",
                                                         "command bob /usr/bin/procmail for bob@example.com",
                                                         "forward far@remote.example from=s@remote.example for far@remote.example",
                                                     });
    r.forwards["bob+lists"] = {"/home/bob/.forward+lists", "/home/bob/lists.mbox", 1001};
    CHECK(describe(expand(r, "bob+lists@example.com")) ==
          Lines{"file bob /home/bob/lists.mbox for bob+lists@example.com"});
    // An empty .forward changes nothing.
    r.forwards["alice"] = {"/home/alice/.forward", "# nothing\n", 1002};
    CHECK(describe(expand(r, "alice@example.com")) == Lines{"mailbox alice for alice@example.com"});
    // A user's own name in their .forward means their mailbox.
    r.forwards["carol"] = {"/home/carol/.forward", "carol, bob@localhost", 1003};
    auto p = expand(r, "carol@example.com");
    REQUIRE(p.targets.size() >= 2);
    CHECK(describe(p)[0] == "mailbox carol for carol@example.com");
}

TEST_CASE("expand: a table failure defers, a bad alias value defers 4.3.5") {
    FakeResolver r;
    r.failing.insert("bob");
    auto p = expand(r, "bob@example.com");
    REQUIRE(p.failures.size() == 1);
    CHECK(p.failures[0].status.kind == Kind::Deferred);
    CHECK(p.failures[0].status.text == "table down");
    r.aliases["bad"] = "\"unterminated";
    auto q = expand(r, "bad@example.com");
    REQUIRE(q.failures.size() == 1);
    CHECK(q.failures[0].status.dsn == "4.3.5");
}

// ---- message conversion

TEST_CASE("LfWriter: CRLF to LF and From quoting, whatever the chunking") {
    struct Case {
        std::string in, want;
        bool quote;
    };
    std::vector<Case> cases = {
        {"a\r\nb\r\n", "a\nb\n", false},
        {"a\rb\r\n\r", "a\rb\n\r", false},
        {"From me\r\nFrom: x\r\n\r\nFrom here\r\n>From there\r\nFro\r\nFrom", ">From me\nFrom: x\n\n>From here\n>From there\nFro\nFrom",
         true},
        {"From here\r\n", "From here\n", false},
        {"From ", ">From ", true},
        {"x From y\n", "x From y\n", true},
        {"\r\r\n", "\r\n", false},
        {"a\r", "a\r", false},
        {"\r\n\r\n", "\n\n", false},
        {"x\r\r\r\ny\n", "x\r\r\ny\n", false},
    };
    for (auto& c : cases) {
        for (std::size_t step : {std::size_t(1), std::size_t(2), std::size_t(3), c.in.size() + 1}) {
            LfWriter w(c.quote);
            std::string out;
            for (std::size_t i = 0; i < c.in.size(); i += step) w.feed(std::string_view(c.in).substr(i, step), out);
            w.finish(out);
            INFO("input " << c.in << " step " << step << ": got " << out << ", want " << c.want);
            CHECK(out == c.want);
        }
    }
}

TEST_CASE("LfWriter: random CR/LF soup, any chunking, equals CRLF -> LF done by hand") {
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
        std::string in;
        const std::size_t len = rng() % 64;
        for (std::size_t i = 0; i < len; ++i) in += "\r\nab"[rng() % 4];
        std::string want;
        for (std::size_t i = 0; i < in.size(); ++i) {
            if (in[i] == '\r' && i + 1 < in.size() && in[i + 1] == '\n') continue;  // the LF follows
            want += in[i];
        }
        LfWriter w(false);
        std::string out;
        for (std::size_t i = 0; i < in.size();) {
            std::size_t step = 1 + rng() % 5;
            w.feed(std::string_view(in).substr(i, step), out);
            i += step;
        }
        w.finish(out);
        INFO("round " << round);
        CHECK(out == want);
    }
}

TEST_CASE("HeaderScanner: Delivered-To in the header block only, folded, any case") {
    HeaderScanner s;
    std::string msg = "Received: x\r\nDELIVERED-TO: <Bob@Example.com>\r\nDelivered-To:\r\n alice@example.com\r\n"
                      "Subject: hi\r\n\r\nDelivered-To: carol@example.com\r\n";
    for (char c : msg) s.feed(std::string_view(&c, 1));
    CHECK(s.delivered_to() == std::set<std::string>{"bob@example.com", "alice@example.com"});
    HeaderScanner t;
    CHECK_FALSE(t.feed("Subject: x\n\nbody"));
    // The scan stops after MaxHeaderScan bytes of header.
    HeaderScanner big;
    std::string filler = "X-Filler: " + std::string(998, 'x') + "\r\n";
    std::size_t fed = 0;
    while (fed < MaxHeaderScan) {
        big.feed(filler);
        fed += filler.size();
    }
    big.feed("Delivered-To: late@example.com\r\n\r\n");
    CHECK(big.delivered_to().empty());
}

TEST_CASE("Message: loop detection and streaming from a queue file") {
    QueuedMessage q("Delivered-To: bob@example.com\r\nSubject: x\r\n\r\nFrom the body\r\nend\r\n");
    Message m = q.message();
    CHECK(m.delivered_to("BOB@example.com"));
    CHECK_FALSE(m.delivered_to("alice@example.com"));
    std::string headers = delivery_headers("a@remote.example", "Alice@Example.com");
    CHECK(headers == "Return-Path: <a@remote.example>\nDelivered-To: alice@example.com\n");
    CHECK(collect_lf(m, headers, false) == headers + "Delivered-To: bob@example.com\nSubject: x\n\nFrom the body\nend\n");
    CHECK(collect_lf(m, "", true) == "Delivered-To: bob@example.com\nSubject: x\n\n>From the body\nend\n");
    std::string raw;
    REQUIRE(m.stream_raw([&](std::string_view s) -> Result<void> {
        raw.append(s);
        return {};
    }));
    CHECK(raw == "Delivered-To: bob@example.com\r\nSubject: x\r\n\r\nFrom the body\r\nend\r\n");
}

// ---- mbox

TEST_CASE("from_line and lock_options") {
    std::string f = from_line("a@b.example", 0);
    CHECK(f.rfind("From a@b.example ", 0) == 0);
    CHECK(f.back() == '\n');
    CHECK(f.size() == std::string("From a@b.example Thu Jan  1 00:00:00 1970\n").size());
    CHECK(from_line("", 0).rfind("From MAILER-DAEMON ", 0) == 0);
    CHECK(from_line("a b@c", 0).rfind("From a_b@c ", 0) == 0);
    auto o = lock_options("fcntl");
    REQUIRE(o);
    CHECK(o->fcntl_lock);
    CHECK_FALSE(o->dotlock);
    CHECK_FALSE(lock_options("flock"));
}

TEST_CASE("append_mbox: From line, quoting, blank line, and appends") {
    TempDir t;
    const std::string box = t / "mbox";
    auto o = lock_options("fcntl, dotlock");
    REQUIRE(o);
    auto s = append_mbox(box, ::geteuid(), *o, "From a@b Thu Jan  1 00:00:00 1970\n", producer_of("Subject: 1\n\n>From x\nno newline"), "mailbox");
    INFO(s.text);
    REQUIRE(s.ok());
    CHECK(s.text == "delivered to mailbox");
    s = append_mbox(box, ::geteuid(), *o, "From c@d Thu Jan  1 00:00:00 1970\n", producer_of("Subject: 2\n\nbody\n"), "mailbox");
    REQUIRE(s.ok());
    CHECK(get(box) == "From a@b Thu Jan  1 00:00:00 1970\nSubject: 1\n\n>From x\nno newline\n\n"
                      "From c@d Thu Jan  1 00:00:00 1970\nSubject: 2\n\nbody\n\n");
    CHECK_FALSE(std::filesystem::exists(box + ".lock"));
    struct stat st {};
    REQUIRE(::stat(box.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("append_mbox: the size limit bounces 5.2.2 and leaves the file as it was") {
    TempDir t;
    const std::string box = t / "mbox";
    put(box, "From old\nold\n\n", 0600);
    MboxOptions o;
    o.size_limit = 100;
    auto s = append_mbox(box, ::geteuid(), o, "From x\n", producer_of(std::string(200, 'x')), "mailbox");
    CHECK(s.kind == Kind::Bounced);
    CHECK(s.dsn == "5.2.2");
    CHECK(get(box) == "From old\nold\n\n");
    o.size_hint = 500;  // checked before writing anything
    s = append_mbox(box, ::geteuid(), o, "From x\n", producer_of("y"), "mailbox");
    CHECK(s.dsn == "5.2.2");
    // A failing producer (a queue file read error): deferred, file unchanged.
    o = MboxOptions{};
    s = append_mbox(box, ::geteuid(), o, "From x\n",
                    [](const Sink& sink) -> Result<void> {
                        if (auto r = sink(std::string(100000, 'z')); !r) return r;
                        return Error::temp("corrupt queue file");
                    },
                    "mailbox");
    CHECK(s.kind == Kind::Deferred);
    CHECK(get(box) == "From old\nold\n\n");
}

TEST_CASE("append_mbox: a held lock defers after the tries, a foreign owner or symlink defers") {
    TempDir t;
    const std::string box = t / "mbox";
    put(box, "", 0600);
    MboxOptions o;
    o.lock_tries = 2;
    o.lock_pause = std::chrono::milliseconds(10);
    {
        auto held = fs::FileLock::try_lock(UniqueFd(::open(box.c_str(), O_RDWR)));
        REQUIRE(held);
        auto s = append_mbox(box, ::geteuid(), o, "From x\n", producer_of("y\n"), "mailbox");
        CHECK(s.kind == Kind::Deferred);
        CHECK(s.text.find("locked") != std::string::npos);
    }
    put(box + ".lock", "", 0600);
    auto s = append_mbox(box, ::geteuid(), o, "From x\n", producer_of("y\n"), "mailbox");
    CHECK(s.kind == Kind::Deferred);
    o.stale_lock = std::chrono::seconds(-1);  // any lock is stale: removed, then taken
    s = append_mbox(box, ::geteuid(), o, "From x\n", producer_of("y\n"), "mailbox");
    CHECK(s.ok());
    CHECK(get(box) == "From x\ny\n\n");
    s = append_mbox(box, ::geteuid() + 1, o, "From x\n", producer_of("y\n"), "mailbox");
    CHECK(s.kind == Kind::Deferred);
    CHECK(s.text.find("owned by uid") != std::string::npos);
    CHECK(append_mbox(box, AnyOwner, o, "From x\n", producer_of("y\n"), "file: x").text == "delivered to file: x");
    std::filesystem::create_symlink(box, t / "link");
    s = append_mbox(t / "link", AnyOwner, o, "From x\n", producer_of("y\n"), "file: link");
    CHECK(s.kind == Kind::Deferred);
}

TEST_CASE("deliver_maildir: creates the Maildir and commits one file") {
    TempDir t;
    auto s = deliver_maildir(t / "Maildir/", "host.example", 1700000000000000, producer_of("Subject: x\n\nbody\n"), "maildir");
    INFO(s.text);
    REQUIRE(s.ok());
    CHECK(s.text == "delivered to maildir");
    std::vector<std::string> files;
    for (auto& e : std::filesystem::directory_iterator(t / "Maildir/new")) files.push_back(e.path());
    REQUIRE(files.size() == 1);
    CHECK(get(files[0]) == "Subject: x\n\nbody\n");
    put(t / "file", "");
    CHECK(deliver_maildir(t / "file/", "h", 1, producer_of("x"), "maildir").kind == Kind::Deferred);
}

// ---- commands

TEST_CASE("needs_shell and command_argv") {
    for (std::string s : {"/usr/bin/procmail", "/usr/bin/procmail -a x", "filter --flag /tmp/x.y"}) {
        INFO(s);
        CHECK_FALSE(needs_shell(s));
    }
    for (std::string s : {"a | b", "a > f", "a; b", "echo $HOME", "a `b`", "a && b", "echo 'x'", "echo \"x\"",
                          "ls *", "a\nb", "X=1 a", "cat ~/x", "a(b)", "echo \\x"}) {
        INFO(s);
        CHECK(needs_shell(s));
    }
    CHECK(command_argv("/usr/bin/x  -a\tb", "/bin/sh") == std::vector<std::string>{"/usr/bin/x", "-a", "b"});
    CHECK(command_argv("a | b", "/bin/dash") == std::vector<std::string>{"/bin/dash", "-c", "a | b"});
}

TEST_CASE("exit_status: sysexits mapping") {
    struct Case {
        int code;
        Kind kind;
        std::string dsn;
    };
    std::vector<Case> cases = {
        {0, Kind::Sent, "2.0.0"},          {EX_TEMPFAIL, Kind::Deferred, "4.3.0"}, {EX_OSERR, Kind::Deferred, "4.3.0"},
        {EX_IOERR, Kind::Deferred, "4.3.0"}, {EX_CANTCREAT, Kind::Deferred, "4.3.0"}, {EX_CONFIG, Kind::Deferred, "4.3.0"},
        {EX_NOUSER, Kind::Bounced, "5.1.1"}, {EX_NOHOST, Kind::Bounced, "5.1.2"},   {EX_DATAERR, Kind::Bounced, "5.6.0"},
        {EX_NOPERM, Kind::Bounced, "5.7.0"}, {EX_PROTOCOL, Kind::Bounced, "5.5.0"}, {1, Kind::Bounced, "5.3.0"},
        {127, Kind::Bounced, "5.3.0"},
    };
    for (auto& c : cases) {
        Status s = exit_status(W_EXITCODE(c.code, 0), "/bin/x", "");
        INFO("exit " << c.code << ": got " << s.dsn << " " << s.text << ", want " << c.dsn);
        CHECK(s.kind == c.kind);
        CHECK(s.dsn == c.dsn);
    }
    CHECK(exit_status(W_EXITCODE(0, 0), "/bin/x", "").text == "delivered to command: /bin/x");
    CHECK(exit_status(W_EXITCODE(1, 0), "/bin/x", "\n  no such mailbox\nsecond line\n").text == "/bin/x: no such mailbox");
    CHECK(exit_status(W_EXITCODE(1, 0), "/bin/x", "").text == "/bin/x: exit status 1");
    CHECK(exit_status(W_EXITCODE(0, SIGKILL), "/bin/x", "").kind == Kind::Deferred);
}

TEST_CASE("env_safe keeps only harmless characters") {
    CHECK(env_safe("bob+x@example.com") == "bob+x@example.com");
    CHECK(env_safe("a$(rm -rf /)`b`;c") == "a__rm_-rf_/__b__c");
}

TEST_CASE("run_command: stdin, environment, exit codes, time limit (root only)") {
    if (!root()) {
        WARN("skipped: needs root to switch to nobody");
        return;
    }
    ::signal(SIGPIPE, SIG_IGN);
    TempDir t;
    CommandSpec c;
    c.uid = 65534;
    c.gid = 65534;
    c.env = {"PATH=/usr/bin:/bin", "RECIPIENT=bob@example.com"};
    c.time_limit = std::chrono::seconds(10);
    c.command = "/bin/sh -c 'id -u; echo $RECIPIENT; cat; exit 0'";
    Status s = run_command(c, producer_of("hello\n"));
    CHECK(s.ok());
    c.command = "id -u; echo $RECIPIENT; tr a-z A-Z; exit 1";
    s = run_command(c, producer_of("hello\n"));
    CHECK(s.dsn == "5.3.0");
    CHECK(s.text == c.command + ": 65534");
    c.command = "cat >/dev/null; exit 75";
    CHECK(run_command(c, producer_of(std::string(1 << 20, 'x'))).dsn == "4.3.0");
    c.command = "/bin/true";  // never reads its input: fine
    s = run_command(c, producer_of(std::string(1 << 20, 'x')));
    INFO(s.dsn << " " << s.text);
    CHECK(s.ok());
    c.command = "/nonexistent/program";
    s = run_command(c, producer_of("x"));
    CHECK(s.kind == Kind::Bounced);
    CHECK(s.text.find("No such file") != std::string::npos);
    c.command = "sleep 30";
    c.time_limit = std::chrono::seconds(1);
    s = run_command(c, producer_of("x"));
    CHECK(s.kind == Kind::Deferred);
    CHECK(s.text.find("time limit") != std::string::npos);
    c.command = "yes";  // endless output: bounded, then the time limit
    s = run_command(c, producer_of("x"));
    CHECK(s.kind == Kind::Deferred);
    c.uid = 0;
    CHECK(run_command(c, producer_of("x")).text.find("root") != std::string::npos);
}

// ---- child processes

TEST_CASE("run_as: works as the user, refuses root, reports death (root only)") {
    CHECK_FALSE(run_as(0, 0, std::chrono::seconds(5), {}, [] { return std::string("x"); }));
    if (!root()) {
        WARN("skipped: needs root");
        return;
    }
    auto r = run_as(65534, 65534, std::chrono::seconds(5), {}, [] {
        return std::to_string(::getuid()) + " " + std::to_string(::geteuid()) + " " + std::to_string(::getgid());
    });
    REQUIRE(r);
    CHECK(*r == "65534 65534 65534");
    auto dead = run_as(65534, 65534, std::chrono::seconds(5), {}, []() -> std::string {
        ::kill(::getpid(), SIGKILL);  // not abort(): Catch's handler would report in the child
        return "";
    });
    REQUIRE_FALSE(dead);
    CHECK(dead.error().text.find("signal") != std::string::npos);
    auto slow = run_as(65534, 65534, std::chrono::seconds(1), {}, [] {
        ::sleep(10);
        return std::string();
    });
    REQUIRE_FALSE(slow);
    CHECK(slow.error().text.find("timed out") != std::string::npos);
    auto chatty = run_as(65534, 65534, std::chrono::seconds(5), {}, [] { return std::string(2 * MaxPacked, 'x'); });
    CHECK_FALSE(chatty);  // refused, and no hang on the child's full pipe
    Status s = run_status_as(65534, 65534, std::chrono::seconds(5), {}, [] { return Status::bounced("5.1.1", "x"); });
    CHECK(s.dsn == "5.1.1");
}

TEST_CASE("run_statuses_as: n statuses from one child, or n deferrals (root only)") {
    if (!root()) {
        WARN("skipped: needs root");
        return;
    }
    const auto two = [] { return std::vector<Status>{Status::sent(std::string(3 * MaxStatusText, 'x')),
                                                     Status::bounced("5.1.1", "b")}; };
    auto v = run_statuses_as(65534, 65534, std::chrono::seconds(5), {}, 2, two);
    REQUIRE(v.size() == 2);
    CHECK(v[0].ok());
    CHECK(v[0].text == std::string(MaxStatusText, 'x'));  // cut in the child
    CHECK(v[1].dsn == "5.1.1");
    auto miscounted = run_statuses_as(65534, 65534, std::chrono::seconds(5), {}, 3, two);
    REQUIRE(miscounted.size() == 3);
    for (auto& m : miscounted) CHECK(m.text == "delivery process gave a malformed status");
    auto dead = run_statuses_as(65534, 65534, std::chrono::seconds(5), {}, 2, []() -> std::vector<Status> {
        ::kill(::getpid(), SIGKILL);
        return {};
    });
    REQUIRE(dead.size() == 2);
    for (auto& d : dead) {
        CHECK(d.kind == Kind::Deferred);
        CHECK(d.text.find("signal") != std::string::npos);
    }
}

// ---- tables

TEST_CASE("MapList and IdMap") {
    TempDir t;
    put(t / "aliases", "Postmaster: bob\nlist: a, b\n");
    MapList m("texthash:" + (t / "aliases"), maps::Format::Aliases);
    auto v = m.lookup("postmaster");
    REQUIRE(v);
    REQUIRE(*v);
    CHECK(**v == "bob");
    auto none = m.lookup("nobody-here");
    REQUIRE(none);
    CHECK_FALSE(*none);
    MapList broken("hash:" + (t / "missing"), maps::Format::Aliases);
    auto e = broken.lookup("x");
    REQUIRE_FALSE(e);
    CHECK(e.error().kind == Error::Kind::Temp);
    CHECK(MapList("", maps::Format::Aliases).lookup("x").value_or(std::optional<std::string>("?")) == std::nullopt);

    auto id = IdMap("static:5000").lookup({"a@b"});
    REQUIRE(id);
    CHECK(*id == 5000u);
    CHECK_FALSE(IdMap("static:0").lookup({"a@b"}));
    CHECK_FALSE(IdMap("static:x").lookup({"a@b"}));
    put(t / "uids", "a@b.example 1234\n@b.example 99\nbad@b.example root\n");
    IdMap ids("texthash:" + (t / "uids"));
    CHECK(**ids.lookup({"a@b.example", "@b.example"}) == 1234u);
    CHECK(**ids.lookup({"c@b.example", "@b.example"}) == 99u);
    CHECK_FALSE(ids.lookup({"bad@b.example"}));
    CHECK_FALSE(*ids.lookup({"x@c.example"}));
}

// ---- re-queueing

TEST_CASE("resubmit: a new queue file with Delivered-To and the DSN options") {
    QueuedMessage q("Subject: x\r\n\r\nbody\r\n");
    Message m = q.message();
    delivery::Request req;
    req.queue_id = q.id;
    req.envid = "env1";
    req.ret = "HDRS";
    delivery::Rcpt orig{0, "list@example.com", "rfc822;list@example.com", queue::NotifyFailure};
    QueueOwner owner{q.dir.path, ::geteuid(), ::getegid()};
    auto id = resubmit(owner, req, orig, "owner-list@example.com", {"a@remote.example", "b@remote.example"},
                       "List@Example.com", m, 1700000001000000);
    INFO((id ? "" : id.error().text));
    REQUIRE(id);
    UniqueFd fd(::open((q.dir / ("incoming/" + *id)).c_str(), O_RDONLY));
    REQUIRE(fd);
    std::uint64_t off = 0;
    auto env = queue::read_envelope(fd.get(), &off);
    REQUIRE(env);
    CHECK(env->sender == "owner-list@example.com");
    CHECK(env->origin == "local");
    CHECK(env->envid == "env1");
    CHECK(env->ret == "HDRS");
    REQUIRE(env->recipients.size() == 2);
    CHECK(env->recipients[1].address == "b@remote.example");
    CHECK(env->recipients[1].orcpt == "rfc822;list@example.com");
    CHECK(env->recipients[1].notify == queue::NotifyFailure);
    std::string content;
    REQUIRE(queue::read_content(fd.get(), off, [&](std::string_view s) -> Result<void> {
        content.append(s);
        return {};
    }));
    CHECK(content == "Delivered-To: list@example.com\r\nSubject: x\r\n\r\nbody\r\n");
}

// ---- the request loop

namespace {

delivery::Request request_for(std::uint32_t index) {
    delivery::Request req;
    req.queue_id = "0000000000B1";
    req.queue_file = "active/0000000000B1";
    req.content_offset = 100;
    req.transport = "local";
    req.recipients.push_back({index, "bob@example.com", "", 0});
    return req;
}

// Answers each request with "sent" for its first recipient and records the batch sizes.
struct EchoHandler {
    std::vector<std::size_t> batches;
    std::vector<delivery::Reply> operator()(const std::vector<delivery::Request>& reqs) {
        batches.push_back(reqs.size());
        std::vector<delivery::Reply> out;
        for (auto& r : reqs) {
            delivery::Reply rep;
            rep.outcomes.push_back({r.recipients[0].index, Kind::Sent, "2.0.0", "local", "delivered to maildir"});
            out.push_back(rep);
        }
        return out;
    }
};

void check_reply(int fd, std::uint32_t index) {
    auto frame = ipc::read_frame(fd, {}, 5000);
    REQUIRE(frame);
    auto rep = delivery::decode_reply(*frame, request_for(index));
    REQUIRE(rep);
    REQUIRE(rep->outcomes.size() == 1);
    INFO("got index " << rep->outcomes[0].index << ", want " << index);
    CHECK(rep->outcomes[0].index == index);
    CHECK(rep->outcomes[0].reason == "delivered to maildir");
}

}  // namespace

TEST_CASE("serve: answers requests until EOF, drops a bad request") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd ours(sv[0]), theirs(sv[1]);
    std::size_t served = 0;
    EchoHandler h;
    std::thread th([&] { served = serve(theirs.get(), std::ref(h), 5000); });
    for (std::uint32_t i = 0; i < 2; ++i) {
        REQUIRE(ipc::write_frame(ours.get(), delivery::encode(request_for(3 + i)), 5000));
        check_reply(ours.get(), 3 + i);
    }
    ipc::AttrList bad;
    bad.add(ipc::attr::Request, "DeliveryRequest");
    REQUIRE(ipc::write_frame(ours.get(), bad, 5000));
    th.join();
    CHECK(served == 2);
    CHECK(h.batches == std::vector<std::size_t>{1, 1});
}

TEST_CASE("serve: pipelined requests are one batch, answered in order, at most MaxBatchRequests") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd ours(sv[0]), theirs(sv[1]);
    struct Case {
        std::size_t sent;
        std::vector<std::size_t> batches;
    };
    for (const Case& c : {Case{3, {3}}, Case{MaxBatchRequests, {MaxBatchRequests}},
                          Case{MaxBatchRequests + 1, {MaxBatchRequests, 1}}}) {
        // All frames are waiting before the server looks, so the batching is
        // deterministic. One write: a socket buffer counts writes, not bytes.
        std::string frames;
        for (std::uint32_t i = 0; i < c.sent; ++i) frames += ipc::encode(delivery::encode(request_for(i)));
        REQUIRE(fs::write_all(ours.get(), frames));
        EchoHandler h;
        std::size_t served = 0;
        std::thread th([&] { served = serve(theirs.get(), std::ref(h), 5000); });
        for (std::uint32_t i = 0; i < c.sent; ++i) check_reply(ours.get(), i);
        REQUIRE(::shutdown(ours.get(), SHUT_WR) == 0);
        th.join();
        INFO("sent " << c.sent);
        CHECK(served == c.sent);
        CHECK(h.batches == c.batches);
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        ours.reset(sv[0]);
        theirs.reset(sv[1]);
    }
}

TEST_CASE("serve: a bad frame after good ones: they are answered, then the connection is dropped") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd ours(sv[0]), theirs(sv[1]);
    SECTION("a request that does not decode") {
        ipc::AttrList bad;
        bad.add(ipc::attr::Request, "DeliveryRequest");
        for (std::uint32_t i = 0; i < 2; ++i)
            REQUIRE(ipc::write_frame(ours.get(), delivery::encode(request_for(i)), 5000));
        REQUIRE(ipc::write_frame(ours.get(), bad, 5000));
        REQUIRE(ipc::write_frame(ours.get(), delivery::encode(request_for(7)), 5000));
    }
    SECTION("a frame over the size limit") {
        for (std::uint32_t i = 0; i < 2; ++i)
            REQUIRE(ipc::write_frame(ours.get(), delivery::encode(request_for(i)), 5000));
        const unsigned char huge[4] = {0x7f, 0xff, 0xff, 0xff};
        REQUIRE(::write(ours.get(), huge, sizeof huge) == 4);
    }
    EchoHandler h;
    std::size_t served = 0;
    std::thread th([&] { served = serve(theirs.get(), std::ref(h), 5000); });
    for (std::uint32_t i = 0; i < 2; ++i) check_reply(ours.get(), i);
    th.join();
    CHECK(served == 2);
    CHECK(h.batches == std::vector<std::size_t>{2});
    theirs.reset();  // what the service does when serve returns
    // Closed, nothing for request 7 (with unread bytes left behind, a reset).
    char byte;
    const ssize_t n = ::recv(ours.get(), &byte, 1, MSG_DONTWAIT);
    const int err = errno;
    INFO("recv: " << n << " " << (n < 0 ? errno_text(err) : ""));
    CHECK((n == 0 || (n < 0 && err == ECONNRESET)));
}

// ---- batches of Maildir stores

TEST_CASE("group_stores: one group per (uid, gid, path), in order, split at the limit") {
    auto job = [](uid_t uid, gid_t gid, std::string path) {
        StoreJob j;
        j.uid = uid;
        j.gid = gid;
        j.path = std::move(path);
        return j;
    };
    using Groups = std::vector<std::vector<std::size_t>>;
    struct Case {
        std::string name;
        std::vector<StoreJob> jobs;
        std::size_t max;
        Groups want;
    };
    std::vector<Case> cases = {
        {"none", {}, 64, {}},
        {"one", {job(1, 1, "/a/")}, 64, {{0}}},
        {"same mailbox", {job(1, 1, "/a/"), job(1, 1, "/a/"), job(1, 1, "/a/")}, 64, {{0, 1, 2}}},
        {"interleaved mailboxes",
         {job(1, 1, "/a/"), job(2, 2, "/b/"), job(1, 1, "/a/"), job(2, 2, "/b/"), job(3, 3, "/c/")},
         64,
         {{0, 2}, {1, 3}, {4}}},
        {"same path, other uid or gid", {job(1, 1, "/a/"), job(2, 1, "/a/"), job(1, 2, "/a/")}, 64, {{0}, {1}, {2}}},
        {"split at the limit", {job(1, 1, "/a/"), job(1, 1, "/a/"), job(2, 2, "/b/"), job(1, 1, "/a/")}, 2,
         {{0, 1}, {2}, {3}}},
    };
    for (auto& c : cases) {
        Groups got = group_stores(c.jobs, c.max);
        INFO(c.name << ": got " << got.size() << " groups, want " << c.want.size());
        CHECK(got == c.want);
    }
}

namespace {

std::vector<std::string> maildir_names(const std::string& maildir) {
    std::vector<std::string> names;
    for (auto& e : std::filesystem::directory_iterator(maildir + "/new")) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
}

// "P<pid>" of a Maildir file name "<sec>.M<usec>P<pid>Q<n>.<host>,S=<size>".
std::string writer_pid(const std::string& name) {
    auto p = name.find('P');
    auto q = name.find('Q', p);
    REQUIRE(p != std::string::npos);
    REQUIRE(q != std::string::npos);
    return name.substr(p, q - p);
}

}  // namespace

TEST_CASE("deliver_maildir_batch: one Status per message; a failed write fails alone") {
    TempDir t;
    const std::string md = t / "Maildir/";
    std::vector<MaildirMessage> msgs = {
        {producer_of("one\n"), "maildir"},
        {[](const Sink&) -> Result<void> { return Error::temp("queue file: read: Input/output error"); }, "maildir"},
        {producer_of("three\n"), "file: " + md},
    };
    auto got = deliver_maildir_batch(md, "host.example", 1700000000000000, msgs);
    REQUIRE(got.size() == 3);
    CHECK(got[0].ok());
    CHECK(got[0].text == "delivered to maildir");
    CHECK(got[1].kind == Kind::Deferred);
    CHECK(got[1].dsn == "4.2.0");
    CHECK(got[2].text == "delivered to file: " + md);
    auto names = maildir_names(md);
    REQUIRE(names.size() == 2);
    CHECK(writer_pid(names[0]) == "P" + std::to_string(::getpid()));
    CHECK(writer_pid(names[1]) == writer_pid(names[0]));
    std::multiset<std::string> bodies{get(md + "new/" + names[0]), get(md + "new/" + names[1])};
    CHECK(bodies == std::multiset<std::string>{"one\n", "three\n"});
    CHECK(std::filesystem::is_empty(md + "tmp"));

    put(t / "file", "");
    auto broken = deliver_maildir_batch(t / "file/", "h", 1, msgs);
    REQUIRE(broken.size() == 3);
    for (auto& s : broken) CHECK(s.kind == Kind::Deferred);
}

TEST_CASE("run_stores: one child per Maildir, each job its own status (root only)") {
    if (!root()) {
        WARN("skipped: needs root to switch to nobody");
        return;
    }
    TempDir t;
    QueuedMessage q1("Subject: one\r\n\r\nbody 1\r\n"), q2("Subject: two\r\n\r\nbody 2\r\n");
    Message m1 = q1.message(), m2 = q2.message();
    const std::string a = t / "a", b = t / "b", locked = t / "locked";
    for (auto& d : {a, b, locked}) {
        REQUIRE(::mkdir(d.c_str(), 0700) == 0);
        REQUIRE(::chown(d.c_str(), 65534, 65534) == 0);
    }
    REQUIRE(::chown(locked.c_str(), 0, 0) == 0);  // nobody may not write here
    std::vector<StoreJob> jobs;
    auto add = [&](const std::string& dir, const Message& m, const std::string& rcpt) {
        StoreJob j;
        j.uid = 65534;
        j.gid = 65534;
        j.path = dir + "/Maildir/";
        j.what = "maildir";
        j.msg = &m;
        j.headers = delivery_headers("s@example.org", rcpt);
        jobs.push_back(std::move(j));
    };
    add(a, m1, "a1@example.com");
    add(b, m1, "b1@example.com");
    add(a, m2, "a2@example.com");
    add(locked, m2, "l2@example.com");
    run_stores(jobs, "host.example", std::chrono::seconds(10));
    for (std::size_t i = 0; i < 3; ++i) {
        INFO("job " << i << ": " << jobs[i].status.dsn << " " << jobs[i].status.text);
        CHECK(jobs[i].status.ok());
        CHECK(jobs[i].done_us > 0);
    }
    CHECK(jobs[3].status.kind == Kind::Deferred);
    CHECK(jobs[3].status.text.find("Permission denied") != std::string::npos);
    auto in_a = maildir_names(a + "/Maildir");
    auto in_b = maildir_names(b + "/Maildir");
    REQUIRE(in_a.size() == 2);
    REQUIRE(in_b.size() == 1);
    // The two copies for a/ were written by one child, b/'s by another; neither by us.
    CHECK(writer_pid(in_a[0]) == writer_pid(in_a[1]));
    CHECK(writer_pid(in_a[0]) != writer_pid(in_b[0]));
    CHECK(writer_pid(in_a[0]) != "P" + std::to_string(::getpid()));
    std::set<std::string> bodies{get(a + "/Maildir/new/" + in_a[0]), get(a + "/Maildir/new/" + in_a[1])};
    CHECK(bodies == std::set<std::string>{
                        "Return-Path: <s@example.org>\nDelivered-To: a1@example.com\nSubject: one\n\nbody 1\n",
                        "Return-Path: <s@example.org>\nDelivered-To: a2@example.com\nSubject: two\n\nbody 2\n"});
    struct stat st {};
    REQUIRE(::stat((a + "/Maildir/new/" + in_a[0]).c_str(), &st) == 0);
    CHECK(st.st_uid == 65534u);
}
