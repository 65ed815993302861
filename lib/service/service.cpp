// service/service.cpp - the daemon skeleton: options, config, jail, accept loop, status.
#include "service/service.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "log/log.hpp"
#include "privs/privs.hpp"
#include "service/proto.hpp"
#include "util/pid.hpp"
#include "util/strings.hpp"

namespace postern::service {

Connection::Connection(UniqueFd fd, Peer peer, std::function<void()> on_done)
    : fd_(std::move(fd)), peer_(std::move(peer)), on_done_(std::move(on_done)) {}

Connection::~Connection() { done(); }

Connection& Connection::operator=(Connection&& o) noexcept {
    // Note: a defaulted operator= would drop our on_done_ uncalled, and the
    // skeleton would count the replaced session as running for ever.
    if (this != &o) {
        done();
        fd_ = std::move(o.fd_);
        peer_ = std::move(o.peer_);
        on_done_ = std::exchange(o.on_done_, nullptr);
    }
    return *this;
}

void Connection::done() {
    if (on_done_) {
        auto cb = std::move(on_done_);
        on_done_ = nullptr;
        cb();
    }
}

Result<Options> parse_options(int argc, char** argv) {
    Options o;
    int i = 1;
    auto need = [&](const char* flag) -> Result<std::string> {
        if (i + 1 >= argc) return Error::config(std::string("option ") + flag + " needs a value");
        return std::string(argv[++i]);
    };
    for (; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (a == "-u") {
            o.unpriv = true;
        } else if (a == "-j") {
            o.chroot = true;
        } else if (a == "-c" || a == "-n" || a == "-t" || a == "-s" || a == "-g" || a == "-o") {
            auto v = need(argv[i]);
            if (!v) return v.error();
            if (a == "-c") o.config_dir = *v;
            if (a == "-n") o.service_name = *v;
            if (a == "-t") {
                if (*v != "inet" && *v != "unix") return Error::config("bad -t value: " + util::printable(*v, 20));
                o.transport = *v;
            }
            if (a == "-s" || a == "-g") {
                auto n = util::parse_long(*v);
                if (!n || *n < 0 || *n > 1000000000) return Error::config("bad number for " + std::string(a));
                if (a == "-s") o.listen_count = static_cast<int>(*n);
                else o.generation = static_cast<unsigned>(*n);
            }
            if (a == "-o") {
                auto eq = v->find('=');
                if (eq == std::string::npos || eq == 0) return Error::config("bad -o value: " + util::printable(*v, 60));
                o.overrides.emplace_back(v->substr(0, eq), v->substr(eq + 1));
            }
        } else {
            return Error::config("unknown option: " + util::printable(a, 40));
        }
    }
    for (; i < argc; ++i) o.args.emplace_back(argv[i]);
    return o;
}

namespace {

Peer peer_of(int fd) {
    Peer p;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    auto fill = [](const sockaddr_storage& s, std::string& addr, int& port) {
        char buf[INET6_ADDRSTRLEN] = {};
        if (s.ss_family == AF_INET) {
            auto* sin = reinterpret_cast<const sockaddr_in*>(&s);
            inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
            port = ntohs(sin->sin_port);
            addr = buf;
        } else if (s.ss_family == AF_INET6) {
            auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&s);
            inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
            port = ntohs(sin6->sin6_port);
            addr = buf;
            if (addr.rfind("::ffff:", 0) == 0 && addr.find('.') != std::string::npos) addr = addr.substr(7);
        } else {
            addr = "unix";
        }
    };
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) fill(ss, p.addr, p.port);
    len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) fill(ss, p.local_addr, p.local_port);
    return p;
}

class Runtime {
public:
    Runtime(const ServiceSpec& spec, const Options& opts, Context& ctx)
        : spec_(spec), opts_(opts), ctx_(ctx),
          limit_(spec.skeleton == Skeleton::Multi ? static_cast<std::size_t>(ctx.params().service_client_limit) : 1) {}

    void start() {
        auto& base = ctx_.base();
        for (int i = 0; i < opts_.listen_count; ++i) {
            int fd = proto::kListenFd + i;
            ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
            listeners_.push_back(event::Event::io(base, fd, EV_READ | EV_PERSIST, [this, fd](short) { accept_on(fd); }));
        }
        lifeline_ = event::Event::io(base, proto::kLifelineFd, EV_READ | EV_PERSIST, [this](short) { on_lifeline(); });
        lifeline_.add();
        idle_timer_ = event::Event::timer(base, [this] { on_idle(); });
        drained_ = event::Event::timer(base, [this] {
            listeners_.clear();
            update();
        });
        ctx_.on_exit_request([this] { drain(true); });
        ctx_.on_work_done([this] {
            if (draining_) update();
        });
        update();
    }

    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;
    ~Runtime() {
        ctx_.on_exit_request(nullptr);
        ctx_.on_work_done(nullptr);
    }

private:
    void report(proto::Status s) {
        if (reported_ == static_cast<int>(s)) return;
        reported_ = static_cast<int>(s);
        proto::StatusMsg m{static_cast<std::int32_t>(util::cached_pid()), opts_.generation, s};
        ssize_t n;
        do n = ::write(proto::kStatusFd, &m, sizeof m);
        while (n < 0 && errno == EINTR);
        if (n != static_cast<ssize_t>(sizeof m)) log::fatal(EX_OSERR, "cannot report status to master: %s", std::strerror(errno));
    }

    bool idle() const { return clients_ == 0 && !(spec_.busy && spec_.busy()); }

    // max_use counts sessions per client slot. A Postfix process has one
    // slot and serves max_use sessions; a process with limit_ slots stands
    // in for limit_ such processes and serves max_use x limit_ sessions, so
    // the same share of the serving capacity is renewed per session as with
    // Postfix. Retiring it after max_use sessions would instead restart the
    // one process every max_use sessions: ten times a second at 1,000
    // sessions a second, each start costing tens of ms of CPU (exec, shared
    // libraries, resolver, tables) and stalling every new client meanwhile.
    std::size_t use_limit() const { return static_cast<std::size_t>(ctx_.params().max_use) * limit_; }

    bool accepting() const {
        return !draining_ && clients_ < limit_ && (spec_.ignore_max_idle || used_ < use_limit());
    }

    void update() {
        bool want = accepting();
        for (auto& l : listeners_) {
            if (want) l.add();
            else l.del();
        }
        report(want ? proto::Status::Avail : proto::Status::Taken);
        if (idle() && !accepting()) finish();  // max_use reached or master said goodbye
        if (idle() && !spec_.ignore_max_idle)
            idle_timer_.add(std::chrono::seconds(ctx_.params().max_idle));
        else
            idle_timer_.del();
    }

    void accept_on(int lfd) {
        for (int i = 0; i < 16 && accepting(); ++i) {
            int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                    log::warn("accept: %s", std::strerror(errno));
                break;
            }
            UniqueFd conn(fd);
            ++used_;
            // Tell master once that this process did work (it only throttles
            // services whose children die before doing any); update() reports
            // Avail again. Not per connection: a process serving many
            // sessions would send master two messages for each.
            if (used_ == 1) report(proto::Status::Taken);
            if (spec_.skeleton == Skeleton::Trigger) {
                handle_trigger(std::move(conn));
                continue;
            }
            ++clients_;
            Peer peer = peer_of(conn.get());
            Connection c(std::move(conn), std::move(peer), [this] {
                --clients_;
                update();
            });
            update();
            if (spec_.on_connection) {
                event::guarded("connection", [&] { spec_.on_connection(ctx_, std::move(c)); });
            }
        }
        update();
    }

    void handle_trigger(UniqueFd conn) {
        // Note: triggers are a few bytes written by a local process that then
        // closes; a bounded blocking read is simpler than a state machine.
        std::string data;
        char buf[1024];
        int waited = 0;
        while (data.size() < sizeof buf && waited < 1000) {
            pollfd p{conn.get(), POLLIN, 0};
            int r = ::poll(&p, 1, 100);
            if (r == 0) {
                waited += 100;
                continue;
            }
            if (r < 0 && errno == EINTR) continue;
            ssize_t n = ::read(conn.get(), buf, sizeof buf - data.size());
            if (n <= 0) break;
            data.append(buf, static_cast<std::size_t>(n));
        }
        if (spec_.on_trigger) event::guarded("trigger", [&] { spec_.on_trigger(ctx_, data); });
    }

    void on_lifeline() {
        char c;
        ssize_t n = ::read(proto::kLifelineFd, &c, 1);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            // Master reloaded or went away: a removed service's port must close.
            lifeline_.del();
            drain(false);
        }
    }

    // Stops taking work, for master (lifeline EOF) and for the daemon itself
    // (Context::request_exit): closes our copies of the listeners (master
    // keeps its own), says "taken" so master starts a fresh process for the
    // next client, and lets update() exit once the sessions in progress are
    // over. Idempotent.
    void drain(bool wake_successor) {
        if (draining_) return;
        draining_ = true;
        if (spec_.on_drain) event::guarded("drain", spec_.on_drain);
        const std::string wake =
            wake_successor && spec_.skeleton == Skeleton::Trigger ? own_socket_path() : std::string();
        // Note: the listener Events are only disarmed here and destroyed by
        // drained_: we may be inside one's callback (a session asking to exit).
        for (auto& l : listeners_) l.del();
        for (int i = 0; i < opts_.listen_count; ++i) ::close(proto::kListenFd + i);
        report(proto::Status::Taken);
        if (!wake.empty()) wake_successor_at(wake);
        // Not update() now: it may exit, and request_exit promises to return.
        drained_.add(std::chrono::milliseconds(0));
    }

    // Our first listener's path as seen from here ("" unless it is a UNIX
    // socket): master binds it under queue_directory, our jail's "/".
    std::string own_socket_path() const {
        if (opts_.listen_count < 1) return {};
        sockaddr_un sun{};
        socklen_t len = sizeof sun;
        if (::getsockname(proto::kListenFd, reinterpret_cast<sockaddr*>(&sun), &len) != 0 || sun.sun_family != AF_UNIX)
            return {};
        std::string path(sun.sun_path, ::strnlen(sun.sun_path, sizeof sun.sun_path));
        if (!opts_.chroot || path.empty()) return path;
        std::string_view queue = ctx_.params().queue_directory;
        while (queue.size() > 1 && queue.back() == '/') queue.remove_suffix(1);
        if (queue == "/") return path;
        if (path.size() <= queue.size() || path.compare(0, queue.size(), queue) != 0 || path[queue.size()] != '/')
            return {};
        return path.substr(queue.size());
    }

    // A Trigger service's successor is started by master only for a trigger,
    // which for qmgr may be a wake-up minutes away. So leave one in master's
    // listen queue, as master's wake-up timer would: the socket is master's,
    // the connection waits there after we exit, and starts the new process.
    static void wake_successor_at(const std::string& path) {
        sockaddr_un sun{};
        if (path.size() >= sizeof sun.sun_path) return;
        sun.sun_family = AF_UNIX;
        std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sun), sizeof sun) != 0 ||
            ::write(fd.get(), "W", 1) != 1)
            log::warn("cannot leave a wake-up at %s for the next process: %s; master starts it at the next trigger",
                      path.c_str(), std::strerror(errno));
    }

    void on_idle() {
        if (idle()) finish();
    }

    [[noreturn]] void finish() {
        event::guarded("exit", [this] { ctx_.run_at_exit(); });
        log::debug("exiting: %zu sessions served", used_);
        std::fflush(nullptr);
        std::_Exit(0);
    }

    const ServiceSpec& spec_;
    const Options& opts_;
    Context& ctx_;
    std::size_t limit_;
    std::vector<event::Event> listeners_;
    event::Event lifeline_, idle_timer_, drained_;
    std::size_t clients_ = 0, used_ = 0;
    bool draining_ = false;
    int reported_ = -1;
};

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

}  // namespace

void Context::run_at_exit() {
    auto fns = std::move(at_exit_);
    at_exit_.clear();
    for (auto& fn : fns) fn();
}

void Context::request_exit(std::string_view why) {
    if (exit_requested_) return;
    exit_requested_ = true;
    log::info("%s -- restarting", util::printable(why, 1000).c_str());
    if (on_exit_request_) on_exit_request_();
}

int run(const ServiceSpec& spec, int argc, char** argv) {
    // Daemons allocate and free message-sized buffers (64 KiB chunks, a
    // 100 KiB message being converted) over and over. glibc's defaults give
    // freed memory at the top of the heap back at once (brk) and take it
    // again for the next message: a system call, a TLB flush on every CPU
    // and fresh page faults each time, a third of local's CPU on 100 KiB
    // messages. Keep up to 4 MiB (bounded; a process that once needed more
    // gives the rest back), and a fixed mmap threshold for the rare larger
    // blocks instead of glibc's sliding one.
    ::mallopt(M_TRIM_THRESHOLD, 4 << 20);
    ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
    std::string tag = "postern/" + std::string(spec.name);
    log::open({.tag = tag, .file = "-"});
    auto opts = parse_options(argc, argv);
    if (!opts) log::fatal(EX_USAGE, "%s", opts.error().text.c_str());
    if (!fd_open(proto::kStatusFd) || !fd_open(proto::kLifelineFd))
        log::fatal(EX_USAGE, "this program is started by master(8), not by hand");

    std::vector<std::string> warnings;
    auto cfg = config::Config::load(opts->config_dir, opts->overrides, &warnings);
    if (!cfg) log::fatal(EX_CONFIG, "%s", cfg.error().text.c_str());
    const auto& p = cfg->params();
    log::open({.tag = p.syslog_name + "/" + std::string(spec.name), .file = p.maillog_file});

    ::signal(SIGPIPE, SIG_IGN);
    event::Base base;
    Context ctx(*cfg, *opts, base);
    if (spec.pre_jail) spec.pre_jail(ctx);

    privs::Jail jail;
    if (opts->chroot) jail.chroot_dir = p.queue_directory;
    if (opts->unpriv) {
        auto u = privs::lookup_user(p.mail_owner);
        if (!u) log::fatal(EX_TEMPFAIL, "look up mail_owner %s: %s", p.mail_owner.c_str(), u.error().text.c_str());
        if (!*u) log::fatal(EX_CONFIG, "mail_owner %s: no such user", p.mail_owner.c_str());
        if ((*u)->uid == 0) log::fatal(EX_CONFIG, "mail_owner %s must not be root", p.mail_owner.c_str());
        jail.user = **u;
    }
    if (!jail.chroot_dir.empty() || jail.user) {
        auto r = privs::enter_jail(jail);
        if (!r) log::fatal(EX_OSERR, "cannot enter jail: %s", r.error().text.c_str());
    }
    if (opts->unpriv && (::getuid() == 0 || ::geteuid() == 0))
        log::fatal(EX_SOFTWARE, "still root after dropping privileges");
    if (spec.post_jail) spec.post_jail(ctx);

    Runtime rt(spec, *opts, ctx);
    rt.start();
    base.dispatch();
    return 0;
}

}  // namespace postern::service
