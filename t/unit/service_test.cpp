// Unit tests for lib/service: master's command line (parse_options), the
// Connection claim, the instance pid-file lock and queue directory tree, and
// how a daemon exits on request (run in a child with master's descriptors).
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "event/event.hpp"
#include "log/log.hpp"
#include "service/instance.hpp"
#include "service/proto.hpp"
#include "service/service.hpp"
#include "t/unit/test_net.hpp"

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

namespace {

// A daemon run by service::run in a child process, with the descriptors
// master gives it: status pipe (3), lifeline (4), one listener (5).
class Daemon {
public:
    Daemon(const service::ServiceSpec& spec, const std::string& config_dir, const UniqueFd& listener) {
        int st[2], life[2];
        REQUIRE(::pipe2(st, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(life, O_CLOEXEC) == 0);
        status_r_.reset(st[0]);
        UniqueFd status_w(st[1]);
        UniqueFd life_r(life[0]);
        life_w_.reset(life[1]);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            // Like master: out of the way first, then into place.
            const int give[] = {status_w.get(), life_r.get(), listener.get()};
            int tmp[3];
            for (int i = 0; i < 3; ++i) tmp[i] = ::fcntl(give[i], F_DUPFD_CLOEXEC, 64);
            for (int i = 0; i < 3; ++i)
                if (tmp[i] < 0 || ::dup2(tmp[i], service::proto::kStatusFd + i) < 0) ::_exit(70);
            // Nothing else: our copy of the lifeline's write end would hide its EOF.
            ::close_range(service::proto::kListenFd + 1, ~0U, 0);
            std::vector<std::string> args = {"testd", "-c", config_dir, "-n", "svc", "-t", "unix",
                                             "-s", "1", "-g", "0"};
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::_exit(service::run(spec, static_cast<int>(args.size()), argv.data()));
        }
    }
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    ~Daemon() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }

    bool running() {
        if (pid_ <= 0) return false;
        int st = 0;
        pid_t r = ::waitpid(pid_, &st, WNOHANG);
        if (r == 0) return true;
        status_ = st;
        pid_ = -1;
        return false;
    }
    // The exit status, or -1 when it is still running after the timeout.
    int wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (running() && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (running()) return -1;
        return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    }
    void close_lifeline() { life_w_.reset(); }
    // Status reports so far, as "A" (available) and "T" (taken) letters.
    std::string statuses() {
        std::string out;
        ::fcntl(status_r_.get(), F_SETFL, O_NONBLOCK);
        service::proto::StatusMsg m{};
        while (::read(status_r_.get(), &m, sizeof m) == static_cast<ssize_t>(sizeof m))
            out += m.status == service::proto::Status::Avail ? 'A' : 'T';
        return out;
    }

private:
    pid_t pid_ = -1;
    int status_ = 0;
    UniqueFd status_r_, life_w_;
};

struct DaemonDir : TempDir {
    DaemonDir() {
        std::ofstream(path + "/main.cf") << "queue_directory = " << path << "/q\nmaillog_file = " << path
                                         << "/maillog\n";
    }
    std::string log() const {
        std::ifstream in(path + "/maillog");
        std::ostringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
};

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
    return n;
}

UniqueFd tcp_listener(int& port_out) {
    UniqueFd fd = test::bind_loopback(SOCK_STREAM, port_out);
    REQUIRE(::listen(fd.get(), 16) == 0);
    return fd;
}

UniqueFd tcp_connect(int port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(static_cast<uint16_t>(port));
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    return fd;
}

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof sun.sun_path);
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    return sun;
}

// Reads what arrives within the timeout, up to and including a newline.
std::string read_line(int fd, int timeout_ms = 5000) {
    std::string out;
    char c;
    while (out.empty() || out.back() != '\n') {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) != 1 || ::read(fd, &c, 1) != 1) break;
        out += c;
    }
    return out;
}

// A connection waiting in the listener's queue, taken without blocking.
UniqueFd pending(const UniqueFd& listener) {
    pollfd p{listener.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) != 1) return UniqueFd();
    return UniqueFd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
}

}  // namespace

TEST_CASE("request_exit: a Multi daemon stops accepting, finishes its session, exits 0") {
    DaemonDir dir;
    int port = 0;
    UniqueFd listener = tcp_listener(port);
    // The session greets, asks to exit (twice: logged once), and stays open
    // until the client says something; then it says bye and ends.
    struct Held {
        service::Connection conn;
        event::Event ev;
    };
    std::vector<std::unique_ptr<Held>> held;  // the child's copy is the one used
    service::ServiceSpec spec{.name = "svc", .skeleton = service::Skeleton::Multi};
    spec.on_connection = [&held](service::Context& ctx, service::Connection c) {
        ssize_t n = ::write(c.fd(), "hello\n", 6);
        ctx.at_exit([] { log::info("at_exit ran"); });
        ctx.request_exit("table hash:/x has changed");
        ctx.request_exit("table hash:/y has changed");
        n += ::write(c.fd(), ctx.exit_requested() ? "exiting\n" : "staying\n", 8);
        (void)n;
        held.push_back(std::make_unique<Held>(Held{std::move(c), {}}));
        Held* h = held.back().get();
        h->ev = event::Event::io(ctx.base(), h->conn.fd(), EV_READ, [h](short) {
            ssize_t w = ::write(h->conn.fd(), "bye\n", 4);
            (void)w;
            h->conn.done();
        });
        h->ev.add();
    };
    Daemon d(spec, dir.path, listener);

    UniqueFd a = tcp_connect(port);
    INFO("log: " << dir.log());
    CHECK(read_line(a.get()) == "hello\n");
    CHECK(read_line(a.get()) == "exiting\n");
    UniqueFd b = tcp_connect(port);  // queued: the daemon no longer accepts
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    INFO("the daemon must wait for its session to end");
    REQUIRE(d.running());

    REQUIRE(::write(a.get(), "x", 1) == 1);
    CHECK(read_line(a.get()) == "bye\n");
    int status = d.wait_exit();
    INFO("exit status: got " << status << ", want 0");
    CHECK(status == 0);
    std::string st = d.statuses();
    INFO("status reports: got " << st << ", want A first and T last");
    REQUIRE_FALSE(st.empty());
    CHECK(st.front() == 'A');
    CHECK(st.back() == 'T');
    INFO("the second connection must be left for the next process");
    CHECK(static_cast<bool>(pending(listener)));
    const std::string log = dir.log();
    INFO("log:\n" << log);
    CHECK(count(log, "table hash:/x has changed -- restarting") == 1);
    CHECK(count(log, "-- restarting") == 1);
    CHECK(count(log, "at_exit ran") == 1);
}

TEST_CASE("request_exit: a Trigger daemon exits after the trigger and leaves a wake-up") {
    DaemonDir dir;
    const std::string path = dir.path + "/svc.sock";
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(listener);
    sockaddr_un sun = unix_address(path);
    REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
    REQUIRE(::listen(listener.get(), 16) == 0);
    service::ServiceSpec spec{.name = "svc", .skeleton = service::Skeleton::Trigger, .ignore_max_idle = true};
    spec.on_trigger = [](service::Context& ctx, std::string_view data) {
        if (data == "T") ctx.request_exit("table texthash:/t has changed");
    };
    Daemon d(spec, dir.path, listener);

    // Another trigger first: the daemon keeps running.
    auto trigger = [&](const char* what) {
        UniqueFd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
        REQUIRE(::write(c.get(), what, std::strlen(what)) == static_cast<ssize_t>(std::strlen(what)));
    };
    trigger("A");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    REQUIRE(d.running());
    trigger("T");
    int status = d.wait_exit();
    INFO("exit status: got " << status << ", want 0");
    CHECK(status == 0);

    UniqueFd wake = pending(listener);
    INFO("a wake-up must wait in the listen queue for the next process");
    REQUIRE(wake);
    CHECK(read_line(wake.get(), 1000) == "W");
    const std::string log = dir.log();
    INFO("log:\n" << log);
    CHECK(count(log, "table texthash:/t has changed -- restarting") == 1);
}

TEST_CASE("drain: master closing the lifeline still ends an idle daemon") {
    DaemonDir dir;
    int port = 0;
    UniqueFd listener = tcp_listener(port);
    service::ServiceSpec spec{.name = "svc", .skeleton = service::Skeleton::Multi};
    spec.on_connection = [](service::Context&, service::Connection) {};
    Daemon d(spec, dir.path, listener);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    REQUIRE(d.running());
    d.close_lifeline();
    int status = d.wait_exit();
    INFO("exit status: got " << status << ", want 0");
    CHECK(status == 0);
    INFO("no wake-up is left on a reload");
    CHECK(dir.log().find("-- restarting") == std::string::npos);
}

TEST_CASE("Context: request_exit logs once and calls the skeleton once") {
    TempDir dir;
    auto cfg = config_for(dir);
    service::Options opts;
    event::Base base;
    service::Context ctx(cfg, opts, base);
    int calls = 0;
    ctx.on_exit_request([&] { ++calls; });
    CHECK_FALSE(ctx.exit_requested());
    ctx.request_exit("first");
    ctx.request_exit("second");
    CHECK(ctx.exit_requested());
    INFO("skeleton calls: got " << calls << ", want 1");
    CHECK(calls == 1);
}
