// Unit tests for the auth daemon's logic: the limiter (delays, lockouts,
// forgetting, the entry bound), the dispatcher with a fake backend and fake
// timers, user info for system and virtual users, the backend settings, and
// the server on a socketpair with the virtual backend and a real user table.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "auth/proto.hpp"
#include "auth/users.hpp"
#include "authd/accounts.hpp"
#include "authd/backends.hpp"
#include "authd/dispatcher.hpp"
#include "authd/limiter.hpp"
#include "authd/secret.hpp"
#include "authd/server.hpp"
#include "config/config.hpp"
#include "event/event.hpp"
#include "ipc/ipc.hpp"
#include "service/service.hpp"

using namespace postern;
using namespace postern::authd;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

namespace {

// Far from the clock's epoch, which the limiter uses as "never".
const Limiter::TimePoint T0 = Limiter::TimePoint{} + std::chrono::hours(1000);

Limiter::Settings settings(long long threshold = 10, std::size_t max_entries = 100000) {
    Limiter::Settings s;
    s.failure_delay = 2000ms;
    s.max_delay = 15000ms;
    s.threshold = threshold;
    s.lockout_time = 600000ms;
    s.max_entries = max_entries;
    return s;
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-authd-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

config::Config make_config(const std::string& text) {
    auto c = config::Config::from_text(text, "main.cf", "/nonexistent");
    INFO((c ? "" : c.error().text));
    REQUIRE(c);
    return std::move(*c);
}

}  // namespace

// ---------------------------------------------------------------- limiter

TEST_CASE("limiter: delays double per recent failure and stop at the cap") {
    Limiter lim(settings(100));
    const long long want[] = {2000, 4000, 8000, 15000, 15000, 15000};
    for (long long w : want) {
        auto f = lim.failed("192.0.2.1", "alice", T0);
        INFO("failure " << f.count << ": got " << f.delay.count() << " ms, want " << w);
        CHECK(f.delay.count() == w);
    }
}

TEST_CASE("limiter: the delay follows the larger of the client's and the user's counts") {
    Limiter lim(settings(100));
    lim.failed("192.0.2.1", "alice", T0);
    lim.failed("192.0.2.1", "bob", T0);
    lim.failed("192.0.2.1", "carol", T0);
    // A fresh user from the same client: the client has 3 failures, now 4.
    auto f = lim.failed("192.0.2.1", "dave", T0);
    CHECK(f.count == 4);
    CHECK(f.delay == 15000ms);
    // A fresh client for a user with one failure: 2.
    f = lim.failed("198.51.100.7", "alice", T0);
    CHECK(f.count == 2);
    CHECK(f.delay == 4000ms);
}

TEST_CASE("limiter: no delay when auth_failure_delay is 0") {
    auto s = settings();
    s.failure_delay = 0ms;
    Limiter lim(s);
    CHECK(lim.failed("192.0.2.1", "alice", T0).delay == 0ms);
    CHECK(lim.failed("192.0.2.1", "alice", T0).delay == 0ms);
}

TEST_CASE("limiter: reaching the threshold locks the client and the user") {
    Limiter lim(settings(3));
    CHECK_FALSE(lim.locked("192.0.2.1", "alice", T0));
    auto f1 = lim.failed("192.0.2.1", "alice", T0);
    auto f2 = lim.failed("192.0.2.1", "alice", T0 + 1s);
    CHECK_FALSE((f1.client_locked || f1.user_locked || f2.client_locked || f2.user_locked));
    CHECK_FALSE(lim.locked("192.0.2.1", "alice", T0 + 2s));
    auto f3 = lim.failed("192.0.2.1", "alice", T0 + 2s);
    CHECK(f3.client_locked);
    CHECK(f3.user_locked);
    CHECK(lim.locked("192.0.2.1", "alice", T0 + 3s));
    SECTION("the client is locked for every user") { CHECK(lim.locked("192.0.2.1", "bob", T0 + 3s)); }
    SECTION("the user is locked from every client") { CHECK(lim.locked("198.51.100.7", "alice", T0 + 3s)); }
    SECTION("others are not") { CHECK_FALSE(lim.locked("198.51.100.7", "bob", T0 + 3s)); }
    SECTION("the user's name in another case is the same user") { CHECK(lim.locked("198.51.100.7", "ALICE", T0 + 3s)); }
    SECTION("failures already in flight do not lengthen the lock") {
        auto f4 = lim.failed("192.0.2.1", "alice", T0 + 100s);
        CHECK_FALSE(f4.client_locked);
        CHECK_FALSE(f4.user_locked);
        CHECK(lim.locked("192.0.2.1", "alice", T0 + 2s + 600s - 1ms));
        CHECK_FALSE(lim.locked("192.0.2.1", "alice", T0 + 2s + 600s));
    }
}

TEST_CASE("limiter: a lockout ends after auth_lockout_time and starts the count afresh") {
    Limiter lim(settings(3));
    for (int i = 0; i < 3; ++i) lim.failed("192.0.2.1", "alice", T0);
    CHECK(lim.locked("192.0.2.1", "alice", T0 + 599s));
    CHECK_FALSE(lim.locked("192.0.2.1", "alice", T0 + 600s));
    CHECK(lim.client_failures("192.0.2.1", T0 + 600s) == 0);
    CHECK(lim.user_failures("alice", T0 + 600s) == 0);
    auto f = lim.failed("192.0.2.1", "alice", T0 + 601s);
    CHECK(f.count == 1);
    CHECK(f.delay == 2000ms);
    CHECK_FALSE(lim.locked("192.0.2.1", "alice", T0 + 601s));
}

TEST_CASE("limiter: failures are forgotten auth_lockout_time after the last one") {
    Limiter lim(settings(3));
    lim.failed("192.0.2.1", "alice", T0);
    lim.failed("192.0.2.1", "alice", T0 + 300s);
    CHECK(lim.user_failures("alice", T0 + 899s) == 2);
    CHECK(lim.user_failures("alice", T0 + 900s) == 0);
    auto f = lim.failed("192.0.2.1", "alice", T0 + 900s);
    CHECK(f.count == 1);
    CHECK_FALSE(f.user_locked);
}

TEST_CASE("limiter: a success resets the counts, but not a lockout") {
    Limiter lim(settings(3));
    lim.failed("192.0.2.1", "alice", T0);
    lim.failed("192.0.2.1", "alice", T0);
    lim.succeeded("192.0.2.1", "alice", T0 + 1s);
    CHECK(lim.client_failures("192.0.2.1", T0 + 1s) == 0);
    CHECK(lim.user_failures("alice", T0 + 1s) == 0);
    CHECK(lim.failed("192.0.2.1", "alice", T0 + 2s).delay == 2000ms);

    lim.failed("192.0.2.1", "alice", T0 + 3s);
    lim.failed("192.0.2.1", "alice", T0 + 4s);
    REQUIRE(lim.locked("192.0.2.1", "alice", T0 + 5s));
    // A check that was running when the lock began comes back good.
    lim.succeeded("192.0.2.1", "alice", T0 + 5s);
    CHECK(lim.locked("192.0.2.1", "alice", T0 + 6s));
    CHECK(lim.locked("192.0.2.1", "bob", T0 + 6s));
}

TEST_CASE("limiter: clients on this machine are tracked per user only") {
    Limiter lim(settings(3));
    for (const char* local : {"", "unix", "127.0.0.1", "::1"}) {
        INFO("client \"" << local << "\"");
        CHECK_FALSE(Limiter::tracks_client(local));
    }
    CHECK(Limiter::tracks_client("192.0.2.1"));
    for (int i = 0; i < 3; ++i) lim.failed("127.0.0.1", "user" + std::to_string(i), T0);
    CHECK_FALSE(lim.locked("127.0.0.1", "alice", T0));  // the webmail host is not locked out
    for (int i = 0; i < 3; ++i) lim.failed("", "alice", T0);
    CHECK(lim.locked("127.0.0.1", "alice", T0));  // but its user is
    CHECK(lim.locked("192.0.2.1", "alice", T0));
}

TEST_CASE("limiter: the table is bounded, least recently failed out first") {
    Limiter lim(settings(3, 100));
    for (int i = 0; i < 1000; ++i) lim.failed("", "user" + std::to_string(i), T0 + milliseconds(i));
    CHECK(lim.size() == 100);
    CHECK(lim.user_failures("user0", T0 + 1s) == 0);
    CHECK(lim.user_failures("user999", T0 + 1s) == 1);
    CHECK(lim.user_failures("user900", T0 + 1s) == 1);
    CHECK(lim.user_failures("user899", T0 + 1s) == 0);
    // Touching an old entry moves it to the back.
    lim.failed("", "user900", T0 + 2s);
    for (int i = 1000; i < 1099; ++i) lim.failed("", "user" + std::to_string(i), T0 + 2s);
    CHECK(lim.user_failures("user900", T0 + 3s) == 2);
    CHECK(lim.user_failures("user901", T0 + 3s) == 0);
    CHECK(lim.size() == 100);
}

TEST_CASE("limiter: expired entries are dropped before the bound is reached") {
    Limiter lim(settings(3, 100));
    for (int i = 0; i < 50; ++i) lim.failed("", "old" + std::to_string(i), T0);
    lim.failed("", "new", T0 + 601s);
    CHECK(lim.size() == 1);
}

TEST_CASE("limiter settings come from main.cf") {
    auto c = make_config("auth_failure_delay = 1s\nauth_failure_max_delay = 5s\nauth_lockout_threshold = 3\n"
                         "auth_lockout_time = 30s\n");
    auto s = Limiter::Settings::from(c.params());
    CHECK(s.failure_delay == 1000ms);
    CHECK(s.max_delay == 5000ms);
    CHECK(s.threshold == 3);
    CHECK(s.lockout_time == 30000ms);
}

// ---------------------------------------------------------------- dispatcher

namespace {

// Holds every request until the test answers it.
struct FakeBackend : Backend {
    struct Call {
        auth::VerifyRequest verify;
        auth::LookupRequest lookup;
        bool is_verify = false;
        Done done;
    };
    std::vector<Call> calls;
    void verify(auth::VerifyRequest req, Done done) override {
        calls.push_back({std::move(req), {}, true, std::move(done)});
    }
    void lookup(auth::LookupRequest req, Done done) override {
        calls.push_back({{}, std::move(req), false, std::move(done)});
    }
};

struct FakeDelayer : Delayer {
    struct Pending {
        milliseconds delay;
        std::function<void()> fn;
    };
    std::vector<Pending> pending;
    void after(milliseconds d, std::function<void()> fn) override { pending.push_back({d, std::move(fn)}); }
    void run_all() {
        auto p = std::move(pending);
        pending.clear();
        for (auto& x : p) x.fn();
    }
};

auth::UserInfo alice_info() {
    auth::UserInfo u;
    u.name = "alice";
    u.uid = 1000;
    u.gid = 1000;
    u.home = "/home/alice";
    u.mailbox = "/home/alice/Maildir/";
    return u;
}

auth::VerifyRequest verify_req(std::uint64_t id, std::string user = "alice", std::string client = "192.0.2.1") {
    auth::VerifyRequest r;
    r.id = id;
    r.service = "smtpd";
    r.mechanism = "PLAIN";
    r.user = std::move(user);
    r.password = "secret";
    r.client_addr = std::move(client);
    r.client_name = "unknown";
    return r;
}

struct DispatchFixture {
    FakeBackend backend;
    FakeDelayer delayer;
    Limiter limiter{settings(3)};
    Limiter::TimePoint now = T0;
    Dispatcher d{backend, limiter, delayer, [this] { return now; }};
    std::vector<auth::Reply> replies;
    Dispatcher::Send sink() {
        return [this](const auth::Reply& r) { replies.push_back(r); };
    }
};

}  // namespace

TEST_CASE("dispatcher: a good password is answered at once, with the user") {
    DispatchFixture f;
    f.d.handle(verify_req(7), f.sink());
    REQUIRE(f.backend.calls.size() == 1);
    CHECK(f.backend.calls[0].verify.password == "secret");
    f.backend.calls[0].done(Verdict::ok(alice_info()));
    REQUIRE(f.replies.size() == 1);
    CHECK(f.replies[0].id == 7);
    CHECK(f.replies[0].outcome == auth::Outcome::Ok);
    REQUIRE(f.replies[0].user);
    CHECK(f.replies[0].user->uid == 1000);
    CHECK(f.delayer.pending.empty());
}

TEST_CASE("dispatcher: a wrong password is answered after the limiter's delay, growing") {
    DispatchFixture f;
    f.d.handle(verify_req(1), f.sink());
    f.backend.calls[0].done(Verdict::fail("password_mismatch"));
    CHECK(f.replies.empty());
    REQUIRE(f.delayer.pending.size() == 1);
    CHECK(f.delayer.pending[0].delay == 2000ms);
    f.delayer.run_all();
    REQUIRE(f.replies.size() == 1);
    CHECK(f.replies[0].id == 1);
    CHECK(f.replies[0].outcome == auth::Outcome::Fail);
    CHECK(f.replies[0].reason == "password_mismatch");
    CHECK_FALSE(f.replies[0].user);

    f.d.handle(verify_req(2), f.sink());
    f.backend.calls[1].done(Verdict::fail("password_mismatch"));
    REQUIRE(f.delayer.pending.size() == 1);
    CHECK(f.delayer.pending[0].delay == 4000ms);
}

TEST_CASE("dispatcher: once locked, requests are refused without asking the backend") {
    DispatchFixture f;
    for (std::uint64_t id = 1; id <= 3; ++id) {
        f.d.handle(verify_req(id), f.sink());
        f.backend.calls.back().done(Verdict::fail("password_mismatch"));
    }
    f.delayer.run_all();
    CHECK(f.replies.size() == 3);
    f.d.handle(verify_req(4), f.sink());
    CHECK(f.backend.calls.size() == 3);
    REQUIRE(f.delayer.pending.size() == 1);
    CHECK(f.delayer.pending[0].delay == 2000ms);  // the base delay, not the doubled one
    f.delayer.run_all();
    REQUIRE(f.replies.size() == 4);
    CHECK(f.replies[3].id == 4);
    CHECK(f.replies[3].outcome == auth::Outcome::Locked);
    CHECK(f.replies[3].reason == "locked");
    SECTION("until the lockout time has passed") {
        f.now = T0 + 601s;
        f.d.handle(verify_req(5), f.sink());
        CHECK(f.backend.calls.size() == 4);
    }
    SECTION("lookups are not locked") {
        auth::LookupRequest l;
        l.id = 9;
        l.user = "alice";
        f.d.handle(l, f.sink());
        CHECK(f.backend.calls.size() == 4);
    }
}

TEST_CASE("dispatcher: a backend failure is answered at once and not counted") {
    DispatchFixture f;
    for (std::uint64_t id = 1; id <= 5; ++id) {
        f.d.handle(verify_req(id), f.sink());
        f.backend.calls.back().done(Verdict::tempfail("LDAP is down"));
    }
    CHECK(f.replies.size() == 5);
    CHECK(f.replies[4].outcome == auth::Outcome::TempFail);
    CHECK(f.replies[4].reason == "backend_failure");
    CHECK(f.delayer.pending.empty());
    CHECK_FALSE(f.limiter.locked("192.0.2.1", "alice", f.now));
}

TEST_CASE("dispatcher: replies go out as the checks finish, out of order") {
    DispatchFixture f;
    f.d.handle(verify_req(1, "slow"), f.sink());
    f.d.handle(verify_req(2, "fast"), f.sink());
    auth::LookupRequest l;
    l.id = 3;
    l.user = "carol";
    f.d.handle(l, f.sink());
    REQUIRE(f.backend.calls.size() == 3);
    CHECK_FALSE(f.backend.calls[2].is_verify);
    f.backend.calls[2].done(Verdict::fail("unknown_user"));
    f.backend.calls[1].done(Verdict::ok(alice_info()));
    f.backend.calls[0].done(Verdict::ok(alice_info()));
    REQUIRE(f.replies.size() == 3);
    CHECK(f.replies[0].id == 3);
    CHECK(f.replies[0].outcome == auth::Outcome::Fail);
    CHECK(f.delayer.pending.empty());  // a lookup's "no such user" is not a failed login
    CHECK(f.replies[1].id == 2);
    CHECK(f.replies[2].id == 1);
}

TEST_CASE("dispatcher: an ok verdict without user details is not a success") {
    DispatchFixture f;
    f.d.handle(verify_req(1), f.sink());
    f.backend.calls[0].done(Verdict{auth::Outcome::Ok, "ok", std::nullopt, ""});
    REQUIRE(f.replies.size() == 1);
    CHECK(f.replies[0].outcome == auth::Outcome::TempFail);
}

// ---------------------------------------------------------------- accounts and settings

TEST_CASE("secret: wiped on move, copies independent") {
    std::string pw = "hunter2";
    Secret s(std::move(pw));
    CHECK(pw.empty());
    CHECK(s.view() == "hunter2");
    Secret copy = s;
    Secret moved = std::move(s);
    CHECK(s.view().empty());
    CHECK(copy.view() == "hunter2");
    CHECK(moved.view() == "hunter2");
}

TEST_CASE("accounts: system users' mailboxes follow home_mailbox or the spool") {
    privs::UserInfo pw{"alice", 1000, 100, "/home/alice", "/bin/sh"};
    MailboxSettings mb{"Maildir/", "/var/mail", ""};
    auto u = system_user_info(pw, mb);
    CHECK(u.kind == auth::UserInfo::Kind::System);
    CHECK(u.name == "alice");
    CHECK(u.uid == 1000);
    CHECK(u.gid == 100);
    CHECK(u.home == "/home/alice");
    CHECK(u.mailbox == "/home/alice/Maildir/");
    mb.home_mailbox = "";
    CHECK(system_user_info(pw, mb).mailbox == "/var/mail/alice");
    mb.mail_spool_directory = "/var/spool/mail/";
    CHECK(system_user_info(pw, mb).mailbox == "/var/spool/mail/alice");
    CHECK(join_path("/", "x") == "/x");
    CHECK(join_path("/srv/mail/", "/a/b/") == "/srv/mail/a/b/");
}

TEST_CASE("accounts: uid and gid maps") {
    IdMap fixed("virtual_uid_maps", "static:5000");
    auto r = fixed.lookup("a@example.org");
    REQUIRE(r);
    CHECK(**r == 5000);
    for (const char* bad : {"static:0", "static:x", ""}) {
        INFO(bad);
        IdMap m("virtual_uid_maps", bad);
        CHECK_FALSE(m.lookup("a@example.org"));
    }
    TempDir dir;
    std::string src = dir.path + "/uids";
    {
        FILE* f = std::fopen(src.c_str(), "w");
        REQUIRE(f);
        std::fputs("a@example.org 5001\n@example.org 5002\nbad@example.org root\n", f);
        std::fclose(f);
    }
    REQUIRE(maps::build(src, maps::Format::Postmap));
    IdMap tables("virtual_uid_maps", "hash:" + src);
    CHECK(**tables.lookup("A@example.org") == 5001);
    CHECK(**tables.lookup("b@example.org") == 5002);
    CHECK_FALSE(*tables.lookup("b@example.net"));
    CHECK_FALSE(tables.lookup("bad@example.org"));
}

TEST_CASE("backend settings: auth_backends") {
    auto s = BackendSettings::from(make_config("").params());
    REQUIRE(s);
    CHECK(s->pam);
    CHECK(s->virtual_users);
    CHECK(s->pam_service == "postern");
    CHECK(s->pam_threads == 4);
    s = BackendSettings::from(make_config("auth_backends = virtual\n").params());
    REQUIRE(s);
    CHECK_FALSE(s->pam);
    auto bad = BackendSettings::from(make_config("auth_backends = pam, ldap\n").params());
    REQUIRE_FALSE(bad);
    CHECK(bad.error().kind == Error::Kind::Config);
    CHECK(bad.error().text.find("ldap") != std::string::npos);
    CHECK_FALSE(BackendSettings::from(make_config("auth_backends = ,\n").params()));
}

namespace {

// A virtual user table with bob@example.org (password "bobpw") and a
// main.cf that uses it.
struct VirtualSetup {
    TempDir dir;
    std::string spec = "hash:" + dir.path + "/users";
    std::string hash;
    VirtualSetup() {
        auto h = auth::hash_password("bobpw");
        REQUIRE(h);
        hash = *h;
        add("bob@example.org", "example.org/bob/");
    }
    void add(const std::string& address, const std::string& mailbox) {
        auto r = auth::update_users(spec, "", [&](std::map<std::string, auth::VirtualUser>& all) -> Result<void> {
            all[address] = auth::VirtualUser{address, hash, mailbox, 1024};
            return {};
        });
        INFO((r ? "" : r.error().text));
        REQUIRE(r);
    }
    std::string main_cf(const std::string& extra = "") const {
        return "auth_backends = virtual\nvirtual_user_database = " + spec +
               "\nvirtual_mailbox_base = /srv/vmail\nvirtual_uid_maps = static:5000\n"
               "virtual_gid_maps = static:5001\nauth_failure_delay = 0\n" +
               extra;
    }
};

}  // namespace

TEST_CASE("accounts: virtual users from the table, reopened when it changes") {
    VirtualSetup v;
    auto cfg = make_config(v.main_cf());
    VirtualDirectory dir(cfg.params());
    CHECK(dir.open_error().empty());
    auto u = dir.find("Bob@Example.ORG");
    REQUIRE(u);
    REQUIRE(*u);
    auto info = dir.info(**u);
    REQUIRE(info);
    CHECK(info->kind == auth::UserInfo::Kind::Virtual);
    CHECK(info->name == "bob@example.org");
    CHECK(info->uid == 5000);
    CHECK(info->gid == 5001);
    CHECK(info->home == "/srv/vmail");
    CHECK(info->mailbox == "/srv/vmail/example.org/bob/");
    CHECK(info->quota == 1024);
    CHECK_FALSE(*dir.find("nobody@example.org"));
    CHECK_FALSE(*dir.find("not an address"));
    v.add("carol@example.org", "carol/");
    auto c = dir.find("carol@example.org");
    REQUIRE(c);
    CHECK(*c);
}

TEST_CASE("accounts: a virtual user needs ids and a mailbox base") {
    VirtualSetup v;
    auto cfg = make_config(v.main_cf("virtual_uid_maps =\n"));
    VirtualDirectory dir(cfg.params());
    auto u = dir.find("bob@example.org");
    REQUIRE(u);
    REQUIRE(*u);
    auto info = dir.info(**u);
    REQUIRE_FALSE(info);
    CHECK(info.error().text.find("virtual_uid_maps") != std::string::npos);
    auto cfg2 = make_config(v.main_cf("virtual_mailbox_base =\n"));
    VirtualDirectory dir2(cfg2.params());
    CHECK_FALSE(dir2.info(**u));
}

TEST_CASE("accounts: a missing user table is empty until it appears") {
    TempDir d;
    auto cfg = make_config("virtual_user_database = hash:" + d.path + "/users\n");
    VirtualDirectory dir(cfg.params());
    CHECK(dir.open_error().empty());
    auto u = dir.find("bob@example.org");
    REQUIRE(u);
    CHECK_FALSE(*u);
}

// ---------------------------------------------------------------- backends and server, virtual users

namespace {

// Runs the loop until pred() or a few seconds have passed.
template <typename Pred>
bool run_until(event::Base& base, Pred pred, int ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + milliseconds(ms);
    auto tick = event::Event::timer(base, [&] { base.exit(); });
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
        tick.add(10ms);
        base.dispatch();
    }
    return pred();
}

}  // namespace

TEST_CASE("backends: virtual passwords are checked off the loop") {
    VirtualSetup v;
    auto cfg = make_config(v.main_cf());
    auto s = BackendSettings::from(cfg.params());
    REQUIRE(s);
    event::Base base;
    Backends b(base, cfg.params(), *s);
    std::map<std::string, Verdict> got;
    auto ask = [&](const std::string& tag, std::string user, std::string pw) {
        auto req = verify_req(1, std::move(user));
        req.password = std::move(pw);
        b.verify(std::move(req), [&got, tag](Verdict x) { got[tag] = std::move(x); });
    };
    ask("good", "BOB@example.org", "bobpw");
    ask("bad", "bob@example.org", "wrong");
    ask("empty", "bob@example.org", "");
    ask("unknown", "nobody@example.org", "bobpw");
    ask("system", "alice", "bobpw");  // no PAM configured
    REQUIRE(run_until(base, [&] { return got.size() == 5; }));
    CHECK(got["good"].outcome == auth::Outcome::Ok);
    REQUIRE(got["good"].user);
    CHECK(got["good"].user->mailbox == "/srv/vmail/example.org/bob/");
    CHECK(got["bad"].outcome == auth::Outcome::Fail);
    CHECK(got["bad"].reason == "password_mismatch");
    CHECK(got["empty"].reason == "password_mismatch");
    CHECK(got["unknown"].reason == "unknown_user");
    CHECK(got["system"].reason == "unknown_user");

    std::map<std::string, Verdict> looked;
    auth::LookupRequest l;
    l.id = 1;
    l.user = "bob@example.org";
    b.lookup(l, [&](Verdict x) { looked["bob"] = std::move(x); });
    l.user = "nobody@example.org";
    b.lookup(l, [&](Verdict x) { looked["nobody"] = std::move(x); });
    REQUIRE(run_until(base, [&] { return looked.size() == 2; }));
    CHECK(looked["bob"].outcome == auth::Outcome::Ok);
    CHECK(looked["nobody"].outcome == auth::Outcome::Fail);
}

namespace {

void send_frame(int fd, const ipc::AttrList& a) {
    std::string w = ipc::encode(a);
    REQUIRE(::write(fd, w.data(), w.size()) == static_cast<ssize_t>(w.size()));
}

}  // namespace

TEST_CASE("server: requests on one connection, answered; a bad frame drops only its connection") {
    VirtualSetup v;
    auto cfg = make_config(v.main_cf());
    service::Options opts;
    event::Base base;
    service::Context ctx(cfg, opts, base);
    Server srv(ctx);

    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd client(sv[0]);
    int sessions = 1;
    srv.accept(service::Connection(UniqueFd(sv[1]), service::Peer{"unix"}, [&] { --sessions; }));

    auto good = verify_req(11, "bob@example.org", "");
    good.password = "bobpw";
    auto bad = verify_req(12, "bob@example.org", "");
    bad.password = "nope";
    auth::LookupRequest l;
    l.id = 13;
    l.user = "bob@example.org";
    send_frame(client.get(), auth::encode(good));
    send_frame(client.get(), auth::encode(bad));
    send_frame(client.get(), auth::encode(l));

    ipc::Decoder dec;
    std::map<std::uint64_t, auth::Reply> replies;
    ::fcntl(client.get(), F_SETFL, O_NONBLOCK);
    REQUIRE(run_until(base, [&] {
        char buf[4096];
        ssize_t n;
        while ((n = ::read(client.get(), buf, sizeof buf)) > 0) REQUIRE(dec.feed(std::string_view(buf, n)));
        while (auto m = dec.next()) {
            auto r = auth::decode_reply(*m);
            REQUIRE(r);
            replies[r->id] = *r;
        }
        return replies.size() == 3;
    }));
    CHECK(replies[11].outcome == auth::Outcome::Ok);
    CHECK(replies[12].outcome == auth::Outcome::Fail);
    CHECK(replies[13].outcome == auth::Outcome::Ok);

    SECTION("garbage") {
        const char junk[] = "\xff\xff\xff\xffjunk";
        REQUIRE(::write(client.get(), junk, sizeof junk - 1) == static_cast<ssize_t>(sizeof junk - 1));
    }
    SECTION("a frame that is not a request") { send_frame(client.get(), ipc::AttrList{{"request", "Nonsense"}}); }
    SECTION("a request with an attribute too many") {
        auto a = auth::encode(l);
        a.add("extra", "x");
        send_frame(client.get(), a);
    }
    bool eof = false;
    REQUIRE(run_until(base, [&] {
        char buf[256];
        ssize_t n = ::read(client.get(), buf, sizeof buf);
        if (n == 0) eof = true;
        return eof && sessions == 0;
    }));
}

TEST_CASE("server: drain closes idle connections and answers busy ones first") {
    VirtualSetup v;
    auto cfg = make_config(v.main_cf("auth_failure_delay = 1s\n"));
    service::Options opts;
    event::Base base;
    service::Context ctx(cfg, opts, base);
    Server srv(ctx);
    int idle_sv[2], busy_sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, idle_sv) == 0);
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, busy_sv) == 0);
    UniqueFd idle(idle_sv[0]), busy(busy_sv[0]);
    int sessions = 2;
    srv.accept(service::Connection(UniqueFd(idle_sv[1]), service::Peer{"unix"}, [&] { --sessions; }));
    srv.accept(service::Connection(UniqueFd(busy_sv[1]), service::Peer{"unix"}, [&] { --sessions; }));
    auto bad = verify_req(5, "bob@example.org", "");
    bad.password = "nope";  // answered after 1 s
    send_frame(busy.get(), auth::encode(bad));
    // Let the request reach the server before the drain.
    run_until(base, [] { return false; }, 200);
    srv.drain();
    REQUIRE(run_until(base, [&] { return sessions == 1; }));  // the idle one at once
    REQUIRE(run_until(base, [&] { return sessions == 0; }));  // the busy one after its reply
    auto reply = ipc::read_frame(busy.get(), ipc::Limits{}, 5000);
    REQUIRE(reply);
    auto r = auth::decode_reply(*reply);
    REQUIRE(r);
    CHECK(r->id == 5);
    CHECK(r->outcome == auth::Outcome::Fail);
    char c;
    CHECK(::read(idle.get(), &c, 1) == 0);
}
