// Unit tests for lib/service: master's command line (parse_options), the
// Connection claim, and the instance pid-file lock and queue directory tree.
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "service/instance.hpp"
#include "service/service.hpp"

using namespace postern;

namespace {

// argv for parse_options, with the strings kept alive.
struct Argv {
    std::vector<std::string> strs;
    std::vector<char*> ptrs;
    explicit Argv(std::vector<std::string> args) : strs(std::move(args)) {
        for (auto& s : strs) ptrs.push_back(s.data());
        ptrs.push_back(nullptr);
    }
    int argc() const { return static_cast<int>(strs.size()); }
    char** argv() { return ptrs.data(); }
    std::string text() const {
        std::string t;
        for (auto& s : strs) t += (t.empty() ? "" : " ") + ("'" + s + "'");
        return t;
    }
};

using Overrides = std::vector<std::pair<std::string, std::string>>;

std::string show(const Overrides& o) {
    std::string t;
    for (auto& [k, v] : o) t += "{" + k + "," + v + "}";
    return t;
}

std::string show(const std::vector<std::string>& v) {
    std::string t;
    for (auto& s : v) t += "[" + s + "]";
    return t;
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-service-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

config::Config config_for(const TempDir& dir) {
    auto cfg = config::Config::from_text("queue_directory = " + dir.path + "/q\n", dir.path + "/main.cf", dir.path);
    INFO("from_text: " << (cfg ? "" : cfg.error().text));
    REQUIRE(cfg);
    return std::move(*cfg);
}

}  // namespace

TEST_CASE("parse_options: master's command lines") {
    struct Case {
        std::vector<std::string> argv;
        service::Options want;
    };
    auto opts = [](auto&& fill) {
        service::Options o;
        fill(o);
        return o;
    };
    const std::vector<Case> cases = {
        {{"prog", "-c", "/d", "-n", "name", "-t", "inet", "-s", "2", "-g", "7", "-u", "-j", "-o", "a=b", "-o", "c=d=",
          "--", "x", "y"},
         opts([](service::Options& o) {
             o.config_dir = "/d";
             o.service_name = "name";
             o.transport = "inet";
             o.listen_count = 2;
             o.generation = 7;
             o.unpriv = true;
             o.chroot = true;
             o.overrides = {{"a", "b"}, {"c", "d="}};
             o.args = {"x", "y"};
         })},
        {{"prog"}, service::Options{}},
        {{"prog", "--"}, service::Options{}},
        {{"prog", "-t", "unix", "-s", "0", "-g", "1000000000"},
         opts([](service::Options& o) { o.generation = 1000000000; })},
        {{"prog", "-c", "/a", "-c", "/b"}, opts([](service::Options& o) { o.config_dir = "/b"; })},
        {{"prog", "-o", "a=", "-o", "x==y"}, opts([](service::Options& o) { o.overrides = {{"a", ""}, {"x", "=y"}}; })},
        // After "--" everything is an argument, even what looks like an option.
        {{"prog", "-n", "smtp", "--", "-u", "-c", "--"}, opts([](service::Options& o) {
             o.service_name = "smtp";
             o.args = {"-u", "-c", "--"};
         })},
        // A value may look like an option.
        {{"prog", "-n", "-u"}, opts([](service::Options& o) { o.service_name = "-u"; })},
    };
    for (auto c : cases) {
        Argv a(c.argv);
        INFO("argv: " << a.text());
        auto r = service::parse_options(a.argc(), a.argv());
        INFO("error: " << (r ? "" : r.error().text));
        REQUIRE(r);
        const auto& got = *r;
        const auto& want = c.want;
        INFO("config_dir: got " << got.config_dir << ", want " << want.config_dir);
        CHECK(got.config_dir == want.config_dir);
        INFO("service_name: got " << got.service_name << ", want " << want.service_name);
        CHECK(got.service_name == want.service_name);
        INFO("transport: got " << got.transport << ", want " << want.transport);
        CHECK(got.transport == want.transport);
        INFO("listen_count: got " << got.listen_count << ", want " << want.listen_count);
        CHECK(got.listen_count == want.listen_count);
        INFO("generation: got " << got.generation << ", want " << want.generation);
        CHECK(got.generation == want.generation);
        INFO("unpriv: got " << got.unpriv << ", want " << want.unpriv);
        CHECK(got.unpriv == want.unpriv);
        INFO("chroot: got " << got.chroot << ", want " << want.chroot);
        CHECK(got.chroot == want.chroot);
        INFO("overrides: got " << show(got.overrides) << ", want " << show(want.overrides));
        CHECK(got.overrides == want.overrides);
        INFO("args: got " << show(got.args) << ", want " << show(want.args));
        CHECK(got.args == want.args);
    }
}

TEST_CASE("parse_options: bad command lines are config errors") {
    struct Case {
        std::vector<std::string> argv;
        std::string want_text;  // a substring of the error text
    };
    const std::vector<Case> cases = {
        {{"prog", "-x"}, "unknown option: -x"},
        {{"prog", "stray"}, "unknown option: stray"},
        {{"prog", "-c", "/d", "-uj"}, "unknown option: -uj"},
        {{"prog", "-t", "bogus"}, "bad -t value: bogus"},
        {{"prog", "-t", ""}, "bad -t value"},
        {{"prog", "-s", "two"}, "bad number for -s"},
        {{"prog", "-s", "2x"}, "bad number for -s"},
        {{"prog", "-s", ""}, "bad number for -s"},
        {{"prog", "-s", "-1"}, "bad number for -s"},
        {{"prog", "-s", "1000000001"}, "bad number for -s"},
        {{"prog", "-g", "-7"}, "bad number for -g"},
        {{"prog", "-g", "seven"}, "bad number for -g"},
        {{"prog", "-o", "noequals"}, "bad -o value: noequals"},
        {{"prog", "-o", "=value"}, "bad -o value: =value"},
        {{"prog", "-o", ""}, "bad -o value"},
        {{"prog", "-c"}, "option -c needs a value"},
        {{"prog", "-n", "x", "-n"}, "option -n needs a value"},
        {{"prog", "-t"}, "option -t needs a value"},
        {{"prog", "-s"}, "option -s needs a value"},
        {{"prog", "-g"}, "option -g needs a value"},
        {{"prog", "-o"}, "option -o needs a value"},
    };
    for (auto c : cases) {
        Argv a(c.argv);
        INFO("argv: " << a.text());
        auto r = service::parse_options(a.argc(), a.argv());
        INFO("got " << (r ? "success" : "error \"" + r.error().text + "\"") << ", want an error containing \""
                    << c.want_text << "\"");
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Config);
        CHECK(r.error().text.find(c.want_text) != std::string::npos);
    }
}

TEST_CASE("parse_options: unprintable bytes in a bad option are escaped") {
    Argv a({"prog", "-t", "in\x01\net"});
    auto r = service::parse_options(a.argc(), a.argv());
    REQUIRE_FALSE(r);
    INFO("error text: " << r.error().text);
    CHECK(r.error().text.find('\x01') == std::string::npos);
    CHECK(r.error().text.find('\n') == std::string::npos);
}

TEST_CASE("Connection: done() runs the callback exactly once") {
    int calls = 0;
    {
        service::Connection c(UniqueFd(), service::Peer{"192.0.2.1", 25, "198.51.100.1", 2525}, [&] { ++calls; });
        CHECK(c.peer().addr == "192.0.2.1");
        CHECK(c.peer().port == 25);
        CHECK(c.peer().local_port == 2525);
        CHECK(calls == 0);
        c.done();
        INFO("calls after done(): got " << calls << ", want 1");
        CHECK(calls == 1);
        c.done();
        INFO("calls after a second done(): got " << calls << ", want 1");
        CHECK(calls == 1);
    }
    INFO("calls after destruction: got " << calls << ", want 1");
    CHECK(calls == 1);
}

TEST_CASE("Connection: the destructor ends a session that did not call done()") {
    int calls = 0;
    { service::Connection c(UniqueFd(), {}, [&] { ++calls; }); }
    INFO("calls: got " << calls << ", want 1");
    CHECK(calls == 1);
}

TEST_CASE("Connection: a moved-from connection does not end the session") {
    int calls = 0;
    {
        service::Connection a(UniqueFd(), {}, [&] { ++calls; });
        {
            service::Connection b(std::move(a));
            INFO("calls after move: got " << calls << ", want 0");
            CHECK(calls == 0);
        }
        INFO("calls after the new owner is gone: got " << calls << ", want 1");
        CHECK(calls == 1);
        a.done();  // NOLINT(bugprone-use-after-move): moved-from must be inert
    }
    INFO("calls after the moved-from one is gone: got " << calls << ", want 1");
    CHECK(calls == 1);
}

TEST_CASE("Connection: move-assignment ends the session it replaces") {
    int first = 0, second = 0;
    {
        service::Connection a(UniqueFd(), {}, [&] { ++first; });
        service::Connection b(UniqueFd(), {}, [&] { ++second; });
        a = std::move(b);
        INFO("replaced session's callback: got " << first << " calls, want 1");
        CHECK(first == 1);
        CHECK(second == 0);
    }
    INFO("after destruction: first got " << first << ", want 1; second got " << second << ", want 1");
    CHECK(first == 1);
    CHECK(second == 1);
}

TEST_CASE("Connection: owns its fd and hands it over") {
    int sv[2];
    REQUIRE(::pipe(sv) == 0);
    UniqueFd other(sv[1]);
    service::Connection c(UniqueFd(sv[0]), {}, nullptr);
    CHECK(c.fd() == sv[0]);
    UniqueFd fd = c.take_fd();
    CHECK(fd.get() == sv[0]);
    CHECK(c.fd() < 0);
    c.done();  // no callback: nothing to run
}

TEST_CASE("instance: pid file lock, write_pid and running_pid") {
    TempDir dir;
    auto cfg = config_for(dir);
    const auto& p = cfg.params();
    REQUIRE(p.queue_directory == dir.path + "/q");
    CHECK(service::pid_file_path(p) == dir.path + "/q/pid/master.pid");

    SECTION("no pid directory: the lock fails with the path in the text") {
        auto lock = service::lock_pid_file(p);
        REQUIRE_FALSE(lock);
        INFO("error: " << lock.error().text);
        CHECK(lock.error().text.find(service::pid_file_path(p)) != std::string::npos);
        CHECK_FALSE(service::running_pid(p).has_value());
    }

    SECTION("held, written, released") {
        REQUIRE(::mkdir((dir.path + "/q").c_str(), 0755) == 0);
        REQUIRE(::mkdir((dir.path + "/q/pid").c_str(), 0755) == 0);
        INFO("running_pid without a pid file: want nullopt");
        CHECK_FALSE(service::running_pid(p).has_value());
        {
            auto lock = service::lock_pid_file(p);
            INFO("first lock: " << (lock ? "ok" : lock.error().text));
            REQUIRE(lock);
            // Locked but no pid written yet: no pid to report.
            CHECK_FALSE(service::running_pid(p).has_value());

            auto second = service::lock_pid_file(p);
            INFO("second lock: got " << (second ? "success" : "\"" + second.error().text + "\"")
                                     << ", want an error containing \"already running\"");
            REQUIRE_FALSE(second);
            CHECK(second.error().kind == Error::Kind::Temp);
            CHECK(second.error().text.find("already running") != std::string::npos);

            REQUIRE(service::write_pid(*lock, 99999));
            REQUIRE(service::write_pid(*lock, 4242));  // shorter: the old digits must go
            auto pid = service::running_pid(p);
            INFO("running_pid while held: got " << (pid ? std::to_string(*pid) : "nullopt") << ", want 4242");
            CHECK(pid == std::optional<pid_t>(4242));

            auto third = service::lock_pid_file(p);
            REQUIRE_FALSE(third);
            INFO("lock error: " << third.error().text);
            CHECK(third.error().text.find("already running (pid 4242)") != std::string::npos);
            // The failed attempts must not have dropped the lock.
            CHECK(service::running_pid(p) == std::optional<pid_t>(4242));
        }
        auto pid = service::running_pid(p);
        INFO("running_pid after release: got " << (pid ? std::to_string(*pid) : "nullopt") << ", want nullopt");
        CHECK_FALSE(pid.has_value());

        // The lock can be taken again once released.
        auto again = service::lock_pid_file(p);
        INFO("lock after release: " << (again ? "ok" : again.error().text));
        CHECK(again);
    }
}

TEST_CASE("instance: prepare_queue_dirs creates the tree with owners and modes") {
    if (::geteuid() != 0) {
        WARN("skipped: prepare_queue_dirs needs root");
        return;
    }
    TempDir dir;
    auto cfg = config_for(dir);
    const auto& p = cfg.params();
    struct passwd* pw = ::getpwnam(p.mail_owner.c_str());
    struct group* gr = ::getgrnam(p.setgid_group.c_str());
    if (pw == nullptr || gr == nullptr) {
        WARN("skipped: user " << p.mail_owner << " or group " << p.setgid_group << " does not exist");
        return;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = gr->gr_gid;

    auto r = service::prepare_queue_dirs(p);
    INFO("prepare_queue_dirs: " << (r ? "ok" : r.error().text));
    REQUIRE(r);
    struct Want {
        std::string path;
        mode_t mode;
        uid_t uid;
        gid_t gid;
    };
    const std::vector<Want> wants = {
        {dir.path + "/q", 0710, uid, gid},
        {dir.path + "/q/pid", 0755, 0, 0},
        {dir.path + "/q/private", 0700, uid, 0},
        {dir.path + "/q/public", 0710, uid, gid},
    };
    auto check_tree = [&] {
        for (const auto& w : wants) {
            struct stat st {};
            INFO(w.path);
            REQUIRE(::lstat(w.path.c_str(), &st) == 0);
            CHECK(S_ISDIR(st.st_mode));
            INFO("mode: got 0" << std::oct << (st.st_mode & 07777) << ", want 0" << w.mode << std::dec);
            CHECK((st.st_mode & 07777) == w.mode);
            INFO("owner: got " << st.st_uid << ":" << st.st_gid << ", want " << w.uid << ":" << w.gid);
            CHECK(st.st_uid == w.uid);
            CHECK(st.st_gid == w.gid);
        }
    };
    check_tree();

    // Running it again repairs modes that drifted.
    REQUIRE(::chmod((dir.path + "/q/private").c_str(), 0777) == 0);
    auto again = service::prepare_queue_dirs(p);
    INFO("second prepare_queue_dirs: " << (again ? "ok" : again.error().text));
    REQUIRE(again);
    check_tree();

    // The tree is usable for the pid lock.
    auto lock = service::lock_pid_file(p);
    CHECK(lock);
}

TEST_CASE("instance: prepare_queue_dirs names a missing mail_owner") {
    TempDir dir;
    auto cfg = config::Config::from_text("queue_directory = " + dir.path + "/q\nmail_owner = no-such-user-xq7\n",
                                         dir.path + "/main.cf", dir.path);
    REQUIRE(cfg);
    auto r = service::prepare_queue_dirs(cfg->params());
    REQUIRE_FALSE(r);
    INFO("error: " << r.error().text);
    CHECK(r.error().kind == Error::Kind::Config);
    CHECK(r.error().text.find("no-such-user-xq7") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.path + "/q"));
}
