// Unit tests for lib/mailbox: ensure_maildir, Delivery (begin/append/commit/abort), the group commit
// (Maildir, commit_file, sync_new, uncommit), remove_stale_tmp.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fs/fs.hpp"
#include "mailbox/mailbox.hpp"

using namespace postern;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-mailbox-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

std::vector<std::string> entries(const std::string& dir) {
    std::vector<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
    return out;
}

std::string get(const std::string& path) {
    auto r = fs::read_file(path, 4 << 20);
    INFO("read " << path << ": " << (r ? "" : r.error().text));
    REQUIRE(r);
    return *r;
}

struct stat lstat_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st;
}

std::string maildir_in(const TempDir& t) {
    std::string md = t / "Maildir";
    auto r = mailbox::ensure_maildir(md);
    INFO("ensure_maildir: " << (r ? "" : r.error().text));
    REQUIRE(r);
    return md;
}

int64_t now_us() {
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

constexpr int64_t T0 = 1700000000123456;  // 2023-11-14, .123456

}  // namespace

TEST_CASE("ensure_maildir creates tmp, new and cur, and is idempotent") {
    TempDir t;
    const std::string md = t / "a/b/Maildir";
    auto r = mailbox::ensure_maildir(md);
    INFO((r ? "" : r.error().text));
    REQUIRE(r);
    for (const char* sub : {"", "/tmp", "/new", "/cur"}) {
        auto st = lstat_of(md + sub);
        CHECK(S_ISDIR(st.st_mode));
        CHECK((st.st_mode & 07777) == 0700);
    }
    CHECK(mailbox::ensure_maildir(md));
    CHECK(mailbox::ensure_maildir(md + "/"));
}

TEST_CASE("ensure_maildir leaves existing directories' modes alone and fills in missing ones") {
    TempDir t;
    const std::string md = t / "Maildir";
    REQUIRE(::mkdir(md.c_str(), 0750) == 0);
    REQUIRE(::chmod(md.c_str(), 0750) == 0);
    REQUIRE(mailbox::ensure_maildir(md));
    CHECK((lstat_of(md).st_mode & 07777) == 0750);
    CHECK(S_ISDIR(lstat_of(md + "/cur").st_mode));
}

TEST_CASE("ensure_maildir refuses symlinks and non-directories") {
    TempDir t;
    const std::string md = t / "Maildir";
    const std::string elsewhere = t / "elsewhere";
    REQUIRE(::mkdir(elsewhere.c_str(), 0700) == 0);

    SECTION("symlinked new/") {
        REQUIRE(::mkdir(md.c_str(), 0700) == 0);
        REQUIRE(::symlink(elsewhere.c_str(), (md + "/new").c_str()) == 0);
        auto r = mailbox::ensure_maildir(md);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Perm);
        CHECK(r.error().text.find("symbolic link") != std::string::npos);
        CHECK(S_ISLNK(lstat_of(md + "/new").st_mode));
    }
    SECTION("symlinked maildir") {
        REQUIRE(::symlink(elsewhere.c_str(), md.c_str()) == 0);
        auto r = mailbox::ensure_maildir(md);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Perm);
        CHECK(entries(elsewhere).empty());
    }
    SECTION("maildir is a file") {
        REQUIRE(fs::atomic_write(md, "x", 0600));
        auto r = mailbox::ensure_maildir(md);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Perm);
        CHECK(r.error().text.find("not a directory") != std::string::npos);
    }
    SECTION("cur is a file") {
        REQUIRE(::mkdir(md.c_str(), 0700) == 0);
        REQUIRE(fs::atomic_write(md + "/cur", "x", 0600));
        auto r = mailbox::ensure_maildir(md);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Perm);
    }
    SECTION("empty path") {
        auto r = mailbox::ensure_maildir("");
        REQUIRE_FALSE(r);
    }
}

TEST_CASE("deliveries get unique names in the Maildir convention") {
    TempDir t;
    const std::string md = maildir_in(t);
    auto a = mailbox::Delivery::begin(md, "mx.example.org", T0);
    auto b = mailbox::Delivery::begin(md, "mx.example.org", T0);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->name() != b->name());
    const std::string head = "1700000000.M123456P" + std::to_string(::getpid()) + "Q";
    for (const auto* d : {&*a, &*b}) {
        INFO("got " << d->name() << ", want " << head << "<n>.mx.example.org");
        CHECK(d->name().rfind(head, 0) == 0);
        CHECK(d->name().size() > head.size() + std::string(".mx.example.org").size());
        CHECK(d->name().substr(d->name().size() - 15) == ".mx.example.org");
    }
    CHECK(entries(md + "/tmp").size() == 2);
}

TEST_CASE("host names are sanitized for the file name") {
    TempDir t;
    const std::string md = maildir_in(t);
    struct Case {
        std::string host, want_suffix;
    };
    const std::vector<Case> cases = {
        {"a/b:c", ".a\\057b\\072c"},
        {"", ".localhost"},
        {std::string("x\0y", 3), ".x\\000y"},
        {"sp ace\n", ".sp\\040ace\\012"},
        {"back\\slash", ".back\\134slash"},
    };
    for (const auto& c : cases) {
        auto d = mailbox::Delivery::begin(md, c.host, T0);
        REQUIRE(d);
        const std::string& n = d->name();
        INFO("got " << n << ", want suffix " << c.want_suffix);
        REQUIRE(n.size() >= c.want_suffix.size());
        CHECK(n.substr(n.size() - c.want_suffix.size()) == c.want_suffix);
        CHECK(n.find('/') == std::string::npos);
    }
    auto long_host = mailbox::Delivery::begin(md, std::string(300, 'h'), T0);
    REQUIRE(long_host);
    CHECK(long_host->name().size() < 120);
}

TEST_CASE("commit moves the message to new/ with its size, bytes intact") {
    TempDir t;
    const std::string md = maildir_in(t);
    std::string msg = "Return-Path: <a@example.org>\r\nSubject: 8-bit\r\n\r\n";
    SECTION("every byte value, in small pieces") {
        for (int i = 0; i < 256; ++i) msg += static_cast<char>(i);
        msg += "\r\nend\r\n";
    }
    SECTION("1 MiB, mixed piece sizes") {
        std::string body(1 << 20, '\0');
        for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 131 + i / 977) & 0xff);
        msg += body;
    }
    SECTION("empty message") { msg.clear(); }

    auto d = mailbox::Delivery::begin(md, "host", now_us());
    REQUIRE(d);
    // Piece sizes 1, 7, 49, ... and one that exceeds the buffer.
    std::size_t off = 0, piece = 1;
    while (off < msg.size()) {
        const std::size_t n = std::min(piece, msg.size() - off);
        REQUIRE(d->append(std::string_view(msg).substr(off, n)));
        off += n;
        piece = piece * 7 % 300000 + 1;
    }
    CHECK(d->size() == msg.size());
    const std::string name = d->name();
    auto path = d->commit();
    INFO((path ? "" : path.error().text));
    REQUIRE(path);
    const std::string want = md + "/new/" + name + ",S=" + std::to_string(msg.size());
    CHECK(*path == want);
    CHECK(get(*path) == msg);
    CHECK(entries(md + "/tmp").empty());
    CHECK(entries(md + "/new").size() == 1);
    auto st = lstat_of(*path);
    CHECK(S_ISREG(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(st.st_nlink == 1);

    // After commit the delivery is finished: no more appends, no second commit,
    // and destroying it does not touch the delivered file.
    CHECK_FALSE(d->append("more"));
    CHECK_FALSE(d->commit());
    d->abort();
    CHECK(get(*path) == msg);
}

TEST_CASE("the tmp/ file is created 0600 whatever the umask") {
    TempDir t;
    const std::string md = maildir_in(t);
    const mode_t old = ::umask(0);
    auto d = mailbox::Delivery::begin(md, "host", T0);
    ::umask(old);
    REQUIRE(d);
    CHECK((lstat_of(md + "/tmp/" + d->name()).st_mode & 07777) == 0600);
}

TEST_CASE("abort, the destructor and moves clean tmp/ exactly once") {
    TempDir t;
    const std::string md = maildir_in(t);
    SECTION("abort") {
        auto d = mailbox::Delivery::begin(md, "host", T0);
        REQUIRE(d);
        REQUIRE(d->append("hello\n"));
        CHECK(entries(md + "/tmp").size() == 1);
        d->abort();
        CHECK(entries(md + "/tmp").empty());
        d->abort();
        CHECK_FALSE(d->append("x"));
        CHECK_FALSE(d->commit());
        CHECK(entries(md + "/new").empty());
    }
    SECTION("destructor") {
        {
            auto d = mailbox::Delivery::begin(md, "host", T0);
            REQUIRE(d);
            REQUIRE(d->append(std::string(200000, 'x')));
            CHECK(entries(md + "/tmp").size() == 1);
        }
        CHECK(entries(md + "/tmp").empty());
        CHECK(entries(md + "/new").empty());
    }
    SECTION("move construction and assignment") {
        auto a = mailbox::Delivery::begin(md, "host", T0);
        auto b = mailbox::Delivery::begin(md, "host", T0);
        REQUIRE(a);
        REQUIRE(b);
        mailbox::Delivery moved(std::move(*a));
        CHECK(a->name().empty());
        CHECK(entries(md + "/tmp").size() == 2);
        moved = std::move(*b);  // aborts moved's own file, takes b's
        CHECK(entries(md + "/tmp").size() == 1);
        REQUIRE(moved.append("x"));
        auto p = moved.commit();
        REQUIRE(p);
        CHECK(get(*p) == "x");
        CHECK(entries(md + "/tmp").empty());
    }
}

TEST_CASE("delivery into a broken maildir fails cleanly") {
    TempDir t;
    const std::string md = maildir_in(t);
    SECTION("new/ missing at begin") {
        REQUIRE(::rmdir((md + "/new").c_str()) == 0);
        auto d = mailbox::Delivery::begin(md, "host", T0);
        REQUIRE_FALSE(d);
        CHECK(d.error().kind == Error::Kind::Temp);
        CHECK(d.error().text.find(md + "/new") != std::string::npos);
        CHECK(entries(md + "/tmp").empty());
    }
    SECTION("new/ removed during the delivery") {
        auto d = mailbox::Delivery::begin(md, "host", T0);
        REQUIRE(d);
        REQUIRE(d->append("message\n"));
        REQUIRE(::rmdir((md + "/new").c_str()) == 0);
        auto p = d->commit();
        REQUIRE_FALSE(p);
        CHECK(p.error().kind == Error::Kind::Temp);
        CHECK(entries(md + "/tmp").empty());
    }
    SECTION("new/ is a symlink") {
        REQUIRE(::rmdir((md + "/new").c_str()) == 0);
        REQUIRE(::symlink((md + "/cur").c_str(), (md + "/new").c_str()) == 0);
        auto d = mailbox::Delivery::begin(md, "host", T0);
        REQUIRE_FALSE(d);
        CHECK(d.error().kind == Error::Kind::Perm);
        CHECK(entries(md + "/tmp").empty());
    }
    SECTION("maildir is a file") {
        const std::string f = t / "file";
        REQUIRE(fs::atomic_write(f, "x", 0600));
        auto d = mailbox::Delivery::begin(f, "host", T0);
        REQUIRE_FALSE(d);
        CHECK(d.error().kind == Error::Kind::Perm);
    }
    SECTION("maildir missing") {
        auto d = mailbox::Delivery::begin(t / "nope", "host", T0);
        REQUIRE_FALSE(d);
        CHECK(d.error().kind == Error::Kind::Temp);
    }
}

// ---- group commit

TEST_CASE("group commit: commit_file for each message, one sync_new for all") {
    TempDir t;
    const std::string md = maildir_in(t);
    auto m = mailbox::Maildir::open(md + "/");
    INFO((m ? "" : m.error().text));
    REQUIRE(m);
    CHECK(m->path() == md);
    std::vector<std::string> paths;
    {
        std::vector<mailbox::Delivery> ds;
        for (int i = 0; i < 3; ++i) {
            auto d = m->begin("host", T0);
            REQUIRE(d);
            REQUIRE(d->append("message " + std::to_string(i) + "\n"));
            ds.push_back(std::move(*d));
        }
        CHECK(entries(md + "/tmp").size() == 3);
        for (auto& d : ds) {
            const std::string name = d.name();
            auto p = d.commit_file();
            INFO((p ? "" : p.error().text));
            REQUIRE(p);
            CHECK(*p == md + "/new/" + name + ",S=10");
            CHECK(d.committed());
            paths.push_back(*p);
        }
        CHECK(entries(md + "/tmp").empty());
        CHECK(entries(md + "/new").size() == 3);
        REQUIRE(m->sync_new());
        // Finished: no second commit; destroying the deliveries keeps the files.
        CHECK_FALSE(ds[0].commit_file());
        CHECK_FALSE(ds[0].commit());
    }
    REQUIRE(paths.size() == 3);
    for (int i = 0; i < 3; ++i) CHECK(get(paths[static_cast<std::size_t>(i)]) == "message " + std::to_string(i) + "\n");
    // One process wrote them all: the same P<pid>, different Q<counter>.
    const std::string pid = "P" + std::to_string(::getpid()) + "Q";
    for (auto& p : paths) CHECK(p.find(pid) != std::string::npos);
    CHECK(paths[0] != paths[1]);
}

TEST_CASE("uncommit takes a committed message back out of new/") {
    TempDir t;
    const std::string md = maildir_in(t);
    auto m = mailbox::Maildir::open(md);
    REQUIRE(m);
    SECTION("after commit_file") {
        auto a = m->begin("host", T0);
        auto b = m->begin("host", T0);
        REQUIRE(a);
        REQUIRE(b);
        REQUIRE(a->append("a"));
        REQUIRE(b->append("b"));
        REQUIRE(a->commit_file());
        REQUIRE(b->commit_file());
        CHECK(entries(md + "/new").size() == 2);
        a->uncommit();
        b->uncommit();
        CHECK_FALSE(a->committed());
        CHECK(entries(md + "/new").empty());
        CHECK(entries(md + "/tmp").empty());
        a->uncommit();  // idempotent
        CHECK_FALSE(a->commit_file());
        CHECK(entries(md + "/new").empty());
    }
    SECTION("before commit: a no-op, the tmp/ file is the abort's") {
        auto d = m->begin("host", T0);
        REQUIRE(d);
        REQUIRE(d->append("x"));
        d->uncommit();
        CHECK_FALSE(d->committed());
        CHECK(entries(md + "/tmp").size() == 1);
        REQUIRE(d->commit_file());
        CHECK(entries(md + "/new").size() == 1);
    }
    SECTION("moves carry the committed state") {
        auto d = m->begin("host", T0);
        REQUIRE(d);
        REQUIRE(d->commit_file());
        mailbox::Delivery moved(std::move(*d));
        CHECK_FALSE(d->committed());
        d->uncommit();  // the moved-from one owns nothing
        CHECK(entries(md + "/new").size() == 1);
        auto other = m->begin("host", T0);
        REQUIRE(other);
        *other = std::move(moved);  // aborts other's tmp/ file, takes the committed message
        CHECK(entries(md + "/tmp").empty());
        CHECK(other->committed());
        other->uncommit();
        CHECK(entries(md + "/new").empty());
    }
    SECTION("a failed commit_file leaves nothing to take back") {
        auto d = m->begin("host", T0);
        REQUIRE(d);
        REQUIRE(d->append("x"));
        REQUIRE(::rmdir((md + "/new").c_str()) == 0);
        auto p = d->commit_file();
        REQUIRE_FALSE(p);
        CHECK(p.error().kind == Error::Kind::Temp);
        CHECK_FALSE(d->committed());
        CHECK(entries(md + "/tmp").empty());
    }
}

TEST_CASE("Maildir: opened once, checked like Delivery::begin, outlived by its deliveries") {
    TempDir t;
    const std::string md = maildir_in(t);
    SECTION("deliveries outlive the Maildir") {
        std::optional<mailbox::Delivery> d;
        {
            auto m = mailbox::Maildir::open(md);
            REQUIRE(m);
            auto b = m->begin("host", T0);
            REQUIRE(b);
            d.emplace(std::move(*b));
        }
        REQUIRE(d->append("late"));
        auto p = d->commit();
        REQUIRE(p);
        CHECK(get(*p) == "late");
    }
    SECTION("symlinked new/") {
        REQUIRE(::rmdir((md + "/new").c_str()) == 0);
        REQUIRE(::symlink((md + "/cur").c_str(), (md + "/new").c_str()) == 0);
        auto m = mailbox::Maildir::open(md);
        REQUIRE_FALSE(m);
        CHECK(m.error().kind == Error::Kind::Perm);
    }
    SECTION("missing tmp/") {
        REQUIRE(::rmdir((md + "/tmp").c_str()) == 0);
        auto m = mailbox::Maildir::open(md);
        REQUIRE_FALSE(m);
        CHECK(m.error().kind == Error::Kind::Temp);
        CHECK(m.error().text.find(md + "/tmp") != std::string::npos);
    }
    SECTION("missing maildir") {
        auto m = mailbox::Maildir::open(t / "nope");
        REQUIRE_FALSE(m);
        CHECK(m.error().kind == Error::Kind::Temp);
    }
}

TEST_CASE("remove_stale_tmp removes only old regular files from tmp/") {
    TempDir t;
    const std::string md = maildir_in(t);
    const int64_t now = now_us();
    REQUIRE(fs::atomic_write(md + "/tmp/old", "old", 0600));
    REQUIRE(fs::atomic_write(md + "/tmp/fresh", "fresh", 0600));
    REQUIRE(fs::atomic_write(md + "/new/old-in-new", "keep", 0600));
    REQUIRE(::mkdir((md + "/tmp/olddir").c_str(), 0700) == 0);
    const struct timespec aged[2] = {{static_cast<time_t>(now / 1000000 - 37 * 3600), 0},
                                     {static_cast<time_t>(now / 1000000 - 37 * 3600), 0}};
    for (const char* p : {"/tmp/old", "/new/old-in-new", "/tmp/olddir"})
        REQUIRE(::utimensat(AT_FDCWD, (md + p).c_str(), aged, AT_SYMLINK_NOFOLLOW) == 0);
    auto live = mailbox::Delivery::begin(md, "host", now);
    REQUIRE(live);

    auto n = mailbox::remove_stale_tmp(md, now);
    INFO((n ? "" : n.error().text));
    REQUIRE(n);
    CHECK(*n == 1);
    auto left = entries(md + "/tmp");
    std::sort(left.begin(), left.end());
    std::vector<std::string> want = {"fresh", "olddir", live->name()};
    std::sort(want.begin(), want.end());
    CHECK(left == want);
    CHECK(entries(md + "/new").size() == 1);

    // A shorter max_age, or a later clock, makes the others stale too.
    auto later = mailbox::remove_stale_tmp(md, now + 3600 * int64_t{1000000}, std::chrono::seconds(60));
    REQUIRE(later);
    CHECK(*later == 2);
    CHECK(entries(md + "/tmp") == std::vector<std::string>{"olddir"});
    // The live delivery lost its file; commit reports it instead of crashing.
    REQUIRE(live->append("x"));
    CHECK_FALSE(live->commit());

    auto none = mailbox::remove_stale_tmp(t / "missing", now);
    CHECK_FALSE(none);
}
