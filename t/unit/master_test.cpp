// Unit tests for master/services: service_port, resolve_endpoints and the
// per-service process Pool (spawn/status/exit accounting and throttling).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "master/services.hpp"

using namespace postern;
using namespace std::chrono_literals;
using master::Endpoint;

namespace {

config::Config make_config(const std::string& main_cf) {
    auto cfg = config::Config::from_text(main_cf, "/etc/postern/main.cf", "/etc/postern");
    INFO("main.cf:\n" << main_cf << "from_text: " << (cfg ? "ok" : cfg.error().text));
    REQUIRE(cfg);
    return std::move(*cfg);
}

config::Service inet(const std::string& name) {
    config::Service s;
    s.name = name;
    s.type = config::ServiceType::Inet;
    s.private_ = false;
    s.command = "smtpd";
    s.origin = "/etc/postern/master.cf:12";
    return s;
}

config::Service unix_svc(const std::string& name, bool priv) {
    config::Service s;
    s.name = name;
    s.type = config::ServiceType::Unix;
    s.private_ = priv;
    s.command = name;
    s.origin = "/etc/postern/master.cf:30";
    return s;
}

Endpoint ep4(const std::string& host, int port) { return {Endpoint::Kind::Inet, AF_INET, host, port, ""}; }
Endpoint ep6(const std::string& host, int port) { return {Endpoint::Kind::Inet, AF_INET6, host, port, ""}; }
Endpoint epu(const std::string& path) { return {Endpoint::Kind::Unix, 0, "", 0, path}; }

std::string show(const std::vector<Endpoint>& eps) {
    std::string t;
    for (auto& e : eps) t += (t.empty() ? "" : " ") + e.text() + (e.kind == Endpoint::Kind::Unix ? "(unix)" : "");
    return t.empty() ? "(none)" : t;
}

std::string show(const std::optional<int>& p) { return p ? std::to_string(*p) : "nullopt"; }

const master::Clock::time_point t0{};

}  // namespace

TEST_CASE("service_port: numbers and service names") {
    struct Case {
        const char* name;
        std::optional<int> want;
    };
    const std::vector<Case> cases = {
        {"1", 1},
        {"25", 25},
        {"2525", 2525},
        {"65535", 65535},
        {"0", std::nullopt},
        {"65536", std::nullopt},
        {"-25", std::nullopt},
        {"99999999999999999999", std::nullopt},
        {"smtp", 25},
        {"submission", 587},
        {"submissions", 465},
        {"smtps", 465},
        {"imap", 143},
        {"imaps", 993},
        {"pop3", 110},
        {"pop3s", 995},
        {"lmtp", 24},
        {"SMTP", std::nullopt},  // service names are case-sensitive, as in /etc/services
        {"nosuchservice", std::nullopt},
        {"", std::nullopt},
        {"25x", std::nullopt},
        {" 25", std::nullopt},
    };
    for (const auto& c : cases) {
        auto got = master::service_port(c.name);
        INFO("service_port(\"" << c.name << "\"): got " << show(got) << ", want " << show(c.want));
        CHECK(got == c.want);
    }
}

TEST_CASE("resolve_endpoints: inet services") {
    struct Case {
        std::string main_cf;
        std::string name;
        std::vector<Endpoint> want;
    };
    const std::vector<Case> cases = {
        {"inet_interfaces = all\ninet_protocols = all\n", "2525", {ep4("0.0.0.0", 2525), ep6("::", 2525)}},
        {"inet_interfaces = all\ninet_protocols = ipv4\n", "2525", {ep4("0.0.0.0", 2525)}},
        {"inet_interfaces = all\ninet_protocols = ipv6\n", "2525", {ep6("::", 2525)}},
        {"", "smtp", {ep4("0.0.0.0", 25), ep6("::", 25)}},  // defaults: all, all
        {"inet_interfaces = loopback-only\n", "submission", {ep4("127.0.0.1", 587), ep6("::1", 587)}},
        {"inet_interfaces = loopback-only\ninet_protocols = ipv4\n", "25", {ep4("127.0.0.1", 25)}},
        {"inet_interfaces = loopback-only\ninet_protocols = ipv6\n", "25", {ep6("::1", 25)}},
        {"inet_interfaces = 127.0.0.1, ::1\n", "2525", {ep4("127.0.0.1", 2525), ep6("::1", 2525)}},
        {"inet_interfaces = 192.0.2.1 [2001:db8::1]\n", "smtps", {ep4("192.0.2.1", 465), ep6("2001:db8::1", 465)}},
        // host:port ignores inet_interfaces.
        {"inet_interfaces = loopback-only\n", "127.0.0.2:25", {ep4("127.0.0.2", 25)}},
        {"", "[::1]:587", {ep6("::1", 587)}},
        {"", "[2001:db8::25]:smtp", {ep6("2001:db8::25", 25)}},
        {"", "localhost:25", {ep4("127.0.0.1", 25)}},
        {"", "[127.0.0.1]:26", {ep4("127.0.0.1", 26)}},
    };
    for (const auto& c : cases) {
        auto cfg = make_config(c.main_cf);
        auto got = master::resolve_endpoints(inet(c.name), cfg.params());
        INFO("main.cf: " << c.main_cf << "service: " << c.name);
        INFO("error: " << (got ? "" : got.error().text));
        REQUIRE(got);
        INFO("endpoints: got " << show(*got) << ", want " << show(c.want));
        CHECK(*got == c.want);
    }
}

TEST_CASE("resolve_endpoints: bad inet services are config errors naming the origin") {
    struct Case {
        std::string main_cf;
        std::string name;
        std::string want_text;  // besides the origin
    };
    const std::vector<Case> cases = {
        {"", "1.2.3:25", "\"1.2.3\" is not a numeric IPv4 or IPv6 address"},
        {"", "::1:25", "write IPv6 addresses as [addr]:port"},
        {"", "2001:db8::1:25", "write IPv6 addresses as [addr]:port"},
        {"", "70000", "unknown port or service name \"70000\""},
        {"", "0", "unknown port or service name \"0\""},
        {"", "nosuchservice", "unknown port or service name \"nosuchservice\""},
        {"", "127.0.0.1:", "unknown port or service name \"\""},
        {"", "127.0.0.1:nosuchservice", "unknown port or service name \"nosuchservice\""},
        {"", "mail.example.org:25", "\"mail.example.org\" is not a numeric IPv4 or IPv6 address"},
        {"", "[::1:25", "is not a numeric IPv4 or IPv6 address"},
        {"inet_interfaces = 192.0.2.300\n", "25", "\"192.0.2.300\" is not a numeric IPv4 or IPv6 address"},
        {"inet_interfaces = mail.example.org\n", "25", "\"mail.example.org\" is not a numeric"},
        {"inet_interfaces =\n", "25", "inet_interfaces names no address"},
        {"inet_interfaces = ,\n", "25", "inet_interfaces names no address"},
    };
    for (const auto& c : cases) {
        auto cfg = make_config(c.main_cf);
        auto svc = inet(c.name);
        auto got = master::resolve_endpoints(svc, cfg.params());
        INFO("main.cf: " << c.main_cf << "service: " << c.name);
        INFO("got " << (got ? "endpoints " + show(*got) : "error \"" + got.error().text + "\"")
                    << ", want an error with \"" << svc.origin << ": \" and \"" << c.want_text << "\"");
        REQUIRE_FALSE(got);
        CHECK(got.error().kind == Error::Kind::Config);
        CHECK(got.error().text.rfind(svc.origin + ": ", 0) == 0);
        CHECK(got.error().text.find(c.want_text) != std::string::npos);
    }
}

TEST_CASE("resolve_endpoints: unix services live under the queue directory") {
    auto cfg = make_config("queue_directory = /var/spool/pq\n");
    struct Case {
        std::string name;
        bool priv;
        std::string want;
    };
    const std::vector<Case> cases = {
        {"qmgr", false, "/var/spool/pq/public/qmgr"},
        {"pickup", false, "/var/spool/pq/public/pickup"},
        {"smtp", true, "/var/spool/pq/private/smtp"},
        {"local", true, "/var/spool/pq/private/local"},
        {std::string(60, 'n'), true, "/var/spool/pq/private/" + std::string(60, 'n')},
    };
    for (const auto& c : cases) {
        auto got = master::resolve_endpoints(unix_svc(c.name, c.priv), cfg.params());
        INFO("service " << c.name << (c.priv ? " (private)" : " (public)"));
        INFO("error: " << (got ? "" : got.error().text));
        REQUIRE(got);
        std::vector<Endpoint> want = {epu(c.want)};
        INFO("endpoints: got " << show(*got) << ", want " << show(want));
        CHECK(*got == want);
        CHECK(got->front().text() == c.want);
    }

    for (const std::string& bad : std::vector<std::string>{"../etc/passwd", "a/b", "/abs", "", std::string(61, 'n')}) {
        auto svc = unix_svc(bad, true);
        auto got = master::resolve_endpoints(svc, cfg.params());
        INFO("service \"" << bad << "\": got " << (got ? "endpoints " + show(*got) : "error \"" + got.error().text + "\"")
                          << ", want a config error naming " << svc.origin);
        REQUIRE_FALSE(got);
        CHECK(got.error().kind == Error::Kind::Config);
        CHECK(got.error().text.rfind(svc.origin + ": bad unix service name", 0) == 0);
    }
}

TEST_CASE("Endpoint::text") {
    CHECK(ep4("127.0.0.1", 25).text() == "127.0.0.1:25");
    CHECK(ep6("::1", 587).text() == "[::1]:587");
    CHECK(epu("/q/private/smtp").text() == "/q/private/smtp");
}

TEST_CASE("Pool: spawn and status accounting") {
    master::Pool pool(2);
    CHECK(pool.total() == 0);
    CHECK(pool.avail() == 0);
    INFO("empty pool: want_listen want true");
    CHECK(pool.want_listen());

    pool.spawned(100, t0);
    CHECK(pool.has(100));
    CHECK(pool.total() == 1);
    INFO("after spawn: avail got " << pool.avail() << ", want 1");
    CHECK(pool.avail() == 1);
    CHECK_FALSE(pool.want_listen());  // a child is waiting for work

    pool.status_avail(100, false);
    INFO("after Taken: avail got " << pool.avail() << ", want 0");
    CHECK(pool.avail() == 0);
    CHECK(pool.want_listen());  // 1 < maxproc 2

    pool.status_avail(100, false);  // repeated status changes nothing
    CHECK(pool.avail() == 0);

    pool.spawned(101, t0);
    CHECK(pool.avail() == 1);
    CHECK_FALSE(pool.want_listen());
    pool.status_avail(101, false);
    CHECK(pool.avail() == 0);
    INFO("at maxproc: want_listen want false");
    CHECK_FALSE(pool.want_listen());

    pool.status_avail(100, true);
    CHECK(pool.avail() == 1);
    pool.status_avail(100, true);
    CHECK(pool.avail() == 1);

    pool.status_avail(999, false);  // not ours
    CHECK(pool.avail() == 1);
    CHECK_FALSE(pool.has(999));
    CHECK(pool.pids() == std::vector<pid_t>{100, 101});

    auto v = pool.exited(100, W_EXITCODE(0, 0), t0 + 1s);
    CHECK_FALSE(v.abnormal);
    CHECK(pool.total() == 1);
    INFO("after the available child exits: avail got " << pool.avail() << ", want 0");
    CHECK(pool.avail() == 0);
    CHECK(pool.want_listen());
    CHECK(pool.pids() == std::vector<pid_t>{101});

    pool.exited(101, W_EXITCODE(0, 0), t0 + 1s);
    CHECK(pool.total() == 0);
    CHECK(pool.avail() == 0);
}

TEST_CASE("Pool: maxproc 0 means no limit") {
    master::Pool pool(0);
    for (pid_t pid = 200; pid < 300; ++pid) {
        pool.spawned(pid, t0);
        pool.status_avail(pid, false);
    }
    CHECK(pool.total() == 100);
    CHECK(pool.avail() == 0);
    INFO("100 busy children, maxproc 0: want_listen want true");
    CHECK(pool.want_listen());

    master::Pool one(1);
    one.spawned(1, t0);
    one.status_avail(1, false);
    CHECK_FALSE(one.want_listen());
}

TEST_CASE("Pool: exit status is described") {
    struct Case {
        int status;
        bool abnormal;
        std::string how;
    };
    const std::vector<Case> cases = {
        {W_EXITCODE(0, 0), false, ""},
        {W_EXITCODE(1, 0), true, "exit status 1"},
        {W_EXITCODE(75, 0), true, "exit status 75"},
        {9, true, "killed by signal 9"},                          // raw status of SIGKILL
        {SIGSEGV, true, "killed by signal 11"},
        {SIGABRT | WCOREFLAG, true, "killed by signal 6"},        // with a core dump
    };
    for (const auto& c : cases) {
        for (bool used : {false, true}) {
            master::Pool pool(10);
            pool.spawned(42, t0);
            if (used) pool.status_avail(42, false);
            auto v = pool.exited(42, c.status, t0 + 1s);
            INFO("status " << c.status << (used ? " (used)" : " (never took work)") << ": got abnormal=" << v.abnormal
                           << " how=\"" << v.how << "\", want abnormal=" << c.abnormal << " how=\"" << c.how << "\"");
            CHECK(v.abnormal == c.abnormal);
            CHECK(v.how == c.how);
            // Only a child that died abnormally before doing any work throttles at once.
            bool want_throttle = c.abnormal && !used;
            INFO("throttle: got " << v.throttle << ", want " << want_throttle);
            CHECK(v.throttle == want_throttle);
            CHECK_FALSE(pool.has(42));
            CHECK(pool.total() == 0);
            CHECK(pool.avail() == 0);
        }
    }
}

TEST_CASE("Pool: used children dying often throttle the service") {
    master::Pool pool(100);
    auto die = [&](pid_t pid, master::Clock::time_point now) {
        pool.spawned(pid, now);
        pool.status_avail(pid, false);
        return pool.exited(pid, 9, now);
    };

    SECTION("5 abnormal deaths within 10 s: the 5th throttles") {
        for (int i = 1; i <= 5; ++i) {
            auto v = die(1000 + i, t0 + std::chrono::seconds(2 * i));
            INFO("death #" << i << ": throttle got " << v.throttle << ", want " << (i == 5));
            CHECK(v.abnormal);
            CHECK(v.throttle == (i == 5));
        }
        // The count starts over after a throttle.
        for (int i = 1; i <= 4; ++i) {
            auto v = die(2000 + i, t0 + 11s);
            INFO("death #" << i << " after the throttle: throttle got " << v.throttle << ", want 0");
            CHECK_FALSE(v.throttle);
        }
    }
    SECTION("deaths spread over more than 10 s do not throttle") {
        for (int i = 0; i < 20; ++i) {
            auto v = die(3000 + i, t0 + std::chrono::seconds(3 * i));
            INFO("death #" << i + 1 << " at " << 3 * i << " s: throttle got " << v.throttle << ", want 0");
            CHECK_FALSE(v.throttle);
        }
    }
    SECTION("normal exits do not count") {
        for (int i = 0; i < 10; ++i) {
            pool.spawned(4000 + i, t0);
            pool.status_avail(4000 + i, false);
            auto v = pool.exited(4000 + i, W_EXITCODE(0, 0), t0 + 1s);
            CHECK_FALSE(v.abnormal);
            CHECK_FALSE(v.throttle);
        }
        auto v = die(4100, t0 + 2s);
        CHECK_FALSE(v.throttle);
    }
    SECTION("an already throttled pool is not throttled again") {
        pool.set_throttled(true);
        for (int i = 1; i <= 6; ++i) {
            auto v = die(5000 + i, t0 + std::chrono::seconds(i));
            CHECK_FALSE(v.throttle);
        }
        pool.spawned(5100, t0);
        auto v = pool.exited(5100, W_EXITCODE(1, 0), t0 + 7s);  // never took work
        CHECK(v.abnormal);
        CHECK_FALSE(v.throttle);
    }
}

TEST_CASE("Pool: a throttled pool does not listen") {
    master::Pool pool(5);
    CHECK(pool.want_listen());
    pool.set_throttled(true);
    CHECK(pool.throttled());
    INFO("throttled: want_listen want false");
    CHECK_FALSE(pool.want_listen());
    pool.set_throttled(false);
    CHECK_FALSE(pool.throttled());
    CHECK(pool.want_listen());
}

TEST_CASE("Pool: exited() of an unknown pid is a no-op") {
    master::Pool pool(3);
    pool.spawned(7, t0);
    for (int st : {W_EXITCODE(0, 0), W_EXITCODE(1, 0), 9}) {
        auto v = pool.exited(8, st, t0 + 1s);
        INFO("status " << st << ": got abnormal=" << v.abnormal << " throttle=" << v.throttle << " how=\"" << v.how
                       << "\", want all empty");
        CHECK_FALSE(v.abnormal);
        CHECK_FALSE(v.throttle);
        CHECK(v.how.empty());
    }
    CHECK(pool.total() == 1);
    CHECK(pool.avail() == 1);
    CHECK(pool.has(7));

    // A pid that already exited is unknown too.
    pool.exited(7, 9, t0 + 2s);
    auto v = pool.exited(7, 9, t0 + 3s);
    CHECK_FALSE(v.abnormal);
    CHECK(pool.total() == 0);
    CHECK(pool.avail() == 0);
}
