// master/master.cpp - the supervisor's event loop: bind, spawn, reap, throttle, reload, stop.
#include "master/master.hpp"

#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>

#include "ipc/ipc.hpp"
#include "log/log.hpp"
#include "service/proto.hpp"
#include "util/strings.hpp"

extern char** environ;

namespace postern::master {

struct Master::ServiceRt {
    config::Service def;
    std::vector<Endpoint> endpoints;
    std::vector<UniqueFd> listeners;
    std::vector<event::Event> listen_evs;
    UniqueFd status_r, status_w, life_r, life_w;
    event::Event status_ev, unthrottle, wakeup;
    Pool pool{0};
    unsigned generation = 0;
    std::string path;
    bool used = false;  // for "wakeup N?" services
};

namespace {


Result<UniqueFd> bind_endpoint(const Endpoint& e) {
    if (e.kind == Endpoint::Kind::Unix) {
        sockaddr_un sun{};
        if (e.path.size() >= sizeof sun.sun_path) return Error::config("socket path too long: " + e.path);
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd) return Error::temp("socket: " + errno_text(errno));
        sun.sun_family = AF_UNIX;
        std::memcpy(sun.sun_path, e.path.c_str(), e.path.size() + 1);
        struct stat st{};
        if (::lstat(e.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(e.path.c_str());
        if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0)
            return Error::temp("bind " + e.path + ": " + errno_text(errno));
        ::chmod(e.path.c_str(), 0666);  // access is controlled by the directory
        if (::listen(fd.get(), 128) != 0) return Error::temp("listen " + e.path + ": " + errno_text(errno));
        return fd;
    }
    UniqueFd fd(::socket(e.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return Error::temp("socket: " + errno_text(errno));
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (e.family == AF_INET6) {
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(static_cast<uint16_t>(e.port));
        inet_pton(AF_INET6, e.host.c_str(), &s6->sin6_addr);
        len = sizeof *s6;
    } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(static_cast<uint16_t>(e.port));
        inet_pton(AF_INET, e.host.c_str(), &s4->sin_addr);
        len = sizeof *s4;
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
        return Error::temp("bind " + e.text() + ": " + errno_text(errno));
    if (::listen(fd.get(), 128) != 0) return Error::temp("listen " + e.text() + ": " + errno_text(errno));
    return fd;
}

bool make_pipe(UniqueFd& r, UniqueFd& w, bool nonblock_read) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return false;
    r.reset(p[0]);
    w.reset(p[1]);
    if (nonblock_read) ::fcntl(p[0], F_SETFL, O_NONBLOCK);
    return true;
}

}  // namespace

Master::Master(std::string config_dir, config::Config cfg, std::vector<config::Service> services)
    : config_dir_(std::move(config_dir)), cfg_(std::move(cfg)), defs_(std::move(services)) {
    // The children's environment: only what import_environment names.
    for (auto& name : util::split_list(cfg_.params().import_environment + " ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS")) {
        if (const char* v = ::getenv(name.c_str())) env_.push_back(name + "=" + v);
    }
    env_.push_back("PATH=/usr/bin:/bin");
}

Master::~Master() = default;

std::unique_ptr<Master::ServiceRt> Master::make_service(const config::Service& def,
                                                        std::vector<std::unique_ptr<ServiceRt>>* reuse,
                                                        std::string* error_out) {
    auto eps = resolve_endpoints(def, cfg_.params());
    if (!eps) {
        *error_out = eps.error().text;
        return nullptr;
    }
    auto s = std::make_unique<ServiceRt>();
    s->def = def;
    s->endpoints = *eps;
    s->generation = generation_;
    s->pool = Pool(def.maxproc >= 0 ? def.maxproc : cfg_.params().default_process_limit);
    s->path = def.command.front() == '/' ? def.command : cfg_.params().daemon_directory + "/" + def.command;
    // Keep listening sockets across a reload when the endpoints are the same,
    // so no connection is refused while the new generation starts.
    if (reuse) {
        for (auto& old : *reuse) {
            if (old && old->def.key() == def.key() && old->endpoints == s->endpoints && !old->listeners.empty()) {
                s->listeners = std::move(old->listeners);
                old->listen_evs.clear();
                break;
            }
        }
    }
    if (s->listeners.empty()) {
        for (auto& e : s->endpoints) {
            auto fd = bind_endpoint(e);
            if (!fd) {
                *error_out = def.origin + ": service " + def.name + ": " + fd.error().text;
                return nullptr;
            }
            s->listeners.push_back(std::move(*fd));
        }
    }
    if (!make_pipe(s->status_r, s->status_w, true) || !make_pipe(s->life_r, s->life_w, false)) {
        *error_out = "pipe: " + errno_text(errno);
        return nullptr;
    }
    return s;
}

void Master::arm(ServiceRt& s) {
    ServiceRt* sp = &s;
    for (auto& l : s.listeners)
        s.listen_evs.push_back(event::Event::io(base_, l.get(), EV_READ | EV_PERSIST, [this, sp](short) {
            if (sp->pool.want_listen() && !stopping_) spawn(*sp);
        }));
    s.status_ev = event::Event::io(base_, s.status_r.get(), EV_READ | EV_PERSIST, [this, sp](short) { read_status(*sp); });
    s.status_ev.add();
    s.unthrottle = event::Event::timer(base_, [this, sp] {
        sp->pool.set_throttled(false);
        log::info("service %s: throttle period over", sp->def.name.c_str());
        update_listen(*sp);
    });
    if (s.def.wakeup > 0 && s.def.type == config::ServiceType::Unix) {
        s.wakeup = event::Event::timer(base_, [this, sp] {
            wakeup(*sp);
            sp->wakeup.add(std::chrono::seconds(sp->def.wakeup));
        });
        // The first wake-up comes at once, so a queue manager starts with the
        // mail system and does not leave queued mail waiting a whole period.
        s.wakeup.add(s.def.wakeup_if_used ? std::chrono::milliseconds(s.def.wakeup * 1000)
                                          : std::chrono::milliseconds(200));
    }
    update_listen(s);
}

void Master::update_listen(ServiceRt& s) {
    bool want = s.pool.want_listen() && !stopping_;
    for (auto& e : s.listen_evs) {
        if (want) e.add();
        else e.del();
    }
}

void Master::spawn(ServiceRt& s) {
    // Everything the child needs is built before fork().
    std::vector<std::string> args = {s.path, "-c", config_dir_, "-n", s.def.name, "-t",
                                     s.def.type == config::ServiceType::Inet ? "inet" : "unix",
                                     "-s", std::to_string(s.listeners.size()), "-g", std::to_string(s.generation)};
    if (s.def.unpriv) args.push_back("-u");
    if (s.def.chroot) args.push_back("-j");
    for (auto& [k, v] : s.def.overrides) {
        args.push_back("-o");
        args.push_back(k + "=" + v);
    }
    args.push_back("--");
    for (auto& a : s.def.args) args.push_back(a);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<int> give = {s.status_w.get(), s.life_r.get()};
    for (auto& l : s.listeners) give.push_back(l.get());

    pid_t pid = ::fork();
    if (pid < 0) {
        log::warn("fork: %s", errno_text(errno).c_str());
        throttle(s);
        return;
    }
    if (pid == 0) {
        // Child: put the descriptors in place, nothing else open, then exec.
        ::setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        std::vector<int> tmp;
        for (int fd : give) tmp.push_back(::fcntl(fd, F_DUPFD, 64 + static_cast<int>(give.size())));
        for (std::size_t i = 0; i < tmp.size(); ++i) {
            if (tmp[i] < 0 || ::dup2(tmp[i], service::proto::kStatusFd + static_cast<int>(i)) < 0) _exit(EX_OSERR);
        }
        ::close_range(static_cast<unsigned>(service::proto::kStatusFd + give.size()), ~0U, 0);
        ::execve(argv[0], argv.data(), envp.data());
        log::error("exec %s: %s", argv[0], errno_text(errno).c_str());
        _exit(EX_OSERR);
    }
    s.pool.spawned(pid, Clock::now());
    s.used = true;
    pids_[pid] = &s;
    update_listen(s);
}

void Master::read_status(ServiceRt& s) {
    service::proto::StatusMsg m[64];
    for (;;) {
        ssize_t n = ::read(s.status_r.get(), m, sizeof m);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        // Writes of one record are atomic; a partial record would be a bug.
        for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof m[0]; ++i) {
            if (m[i].generation != s.generation || !s.pool.has(m[i].pid)) continue;
            s.pool.status_avail(m[i].pid, m[i].status == service::proto::Status::Avail);
        }
    }
    update_listen(s);
}

void Master::throttle(ServiceRt& s) {
    s.pool.set_throttled(true);
    s.unthrottle.add(std::chrono::seconds(cfg_.params().service_throttle_time));
    update_listen(s);
}

void Master::reap() {
    int st = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) {
        auto it = pids_.find(pid);
        if (it == pids_.end()) continue;
        ServiceRt& s = *it->second;
        pids_.erase(it);
        ExitVerdict v = s.pool.exited(pid, st, Clock::now());
        if (v.abnormal && !stopping_) log::warn("process %s pid %d %s", s.path.c_str(), pid, v.how.c_str());
        if (v.throttle && !stopping_) {
            log::warn("%s: bad command startup -- throttling service %s for %llds", s.path.c_str(), s.def.name.c_str(),
                      static_cast<long long>(cfg_.params().service_throttle_time.count()));
            throttle(s);
        }
        update_listen(s);
    }
    // Forget retired generations whose last child is gone.
    std::erase_if(retired_, [](const std::unique_ptr<ServiceRt>& r) { return r->pool.total() == 0; });
    maybe_finish();
}

void Master::wakeup(ServiceRt& s) {
    if (s.pool.throttled() || stopping_) return;
    if (s.def.wakeup_if_used && !s.used) return;
    auto fd = ipc::connect_unix(s.endpoints.front().path, 1000);
    if (!fd) {
        log::warn("wakeup %s: %s", s.def.name.c_str(), fd.error().text.c_str());
        return;
    }
    ssize_t n = ::write(fd->get(), "W", 1);
    (void)n;
}

void Master::retire(std::unique_ptr<ServiceRt> s) {
    s->listen_evs.clear();
    s->wakeup = {};
    s->unthrottle = {};
    s->life_w.reset();  // children see EOF: finish current sessions, then exit
    if (!s->listeners.empty()) {
        for (auto& e : s->endpoints)
            if (e.kind == Endpoint::Kind::Unix) ::unlink(e.path.c_str());
        s->listeners.clear();
    }
    if (s->pool.total() > 0) retired_.push_back(std::move(s));
}

void Master::start() {
    for (auto& def : defs_) {
        std::string err;
        auto s = make_service(def, nullptr, &err);
        if (!s) log::fatal(EX_UNAVAILABLE, "%s", err.c_str());
        active_.push_back(std::move(s));
    }
    for (auto& s : active_) arm(*s);
    signals_.push_back(event::Event::signal(base_, SIGCHLD, [this] { reap(); }));
    signals_.push_back(event::Event::signal(base_, SIGHUP, [this] { reload(); }));
    signals_.push_back(event::Event::signal(base_, SIGTERM, [this] { stop(SIGTERM); }));
    signals_.push_back(event::Event::signal(base_, SIGINT, [this] { stop(SIGINT); }));
    for (auto& e : signals_) e.add();
    ::signal(SIGPIPE, SIG_IGN);
}

void Master::reload() {
    if (stopping_) return;
    std::vector<std::string> warnings;
    auto cfg = config::Config::load(config_dir_, {}, &warnings);
    if (!cfg) {
        log::error("reload failed, keeping the running configuration: %s", cfg.error().text.c_str());
        return;
    }
    for (auto& w : warnings) log::warn("%s", w.c_str());
    auto defs = config::load_master_cf(config_dir_);
    if (!defs) {
        log::error("reload failed, keeping the running configuration: %s", defs.error().text.c_str());
        return;
    }
    config::Config old_cfg = std::move(cfg_);
    cfg_ = std::move(*cfg);
    ++generation_;
    std::vector<std::unique_ptr<ServiceRt>> fresh;
    std::string err;
    for (auto& def : *defs) {
        auto s = make_service(def, &active_, &err);
        if (!s) break;
        fresh.push_back(std::move(s));
    }
    if (!err.empty()) {
        // Give back any listener taken over and keep running as before.
        log::error("reload failed, keeping the running configuration: %s", err.c_str());
        for (auto& f : fresh)
            for (auto& old : active_)
                if (old->def.key() == f->def.key() && old->listeners.empty() && !f->listeners.empty()) {
                    old->listeners = std::move(f->listeners);
                    ServiceRt* sp = old.get();
                    for (auto& l : sp->listeners)
                        sp->listen_evs.push_back(event::Event::io(base_, l.get(), EV_READ | EV_PERSIST, [this, sp](short) {
                            if (sp->pool.want_listen() && !stopping_) spawn(*sp);
                        }));
                    update_listen(*sp);
                }
        cfg_ = std::move(old_cfg);
        --generation_;
        return;
    }
    auto old = std::move(active_);
    active_ = std::move(fresh);
    defs_ = std::move(*defs);
    for (auto& o : old) retire(std::move(o));
    for (auto& s : active_) arm(*s);
    log::info("reload -- version %s, configuration %s", POSTERN_VERSION, config_dir_.c_str());
}

void Master::stop(int signo) {
    if (stopping_) return;
    stopping_ = true;
    log::info("terminating on signal %d", signo);
    auto kill_all = [this](int sig) {
        for (auto& [pid, s] : pids_) ::kill(pid, sig);
    };
    for (auto& s : active_) s->listen_evs.clear();
    kill_all(SIGTERM);
    stop_timer_ = event::Event::timer(base_, [this, kill_all] {
        log::warn("children still running after %llds: killing them",
                  static_cast<long long>(cfg_.params().master_stop_timeout.count()));
        kill_all(SIGKILL);
    });
    stop_timer_.add(std::chrono::seconds(cfg_.params().master_stop_timeout));
    maybe_finish();
}

void Master::maybe_finish() {
    if (stopping_ && pids_.empty()) base_.exit();
}

int Master::run() {
    log::info("daemon started -- version %s, configuration %s", POSTERN_VERSION, config_dir_.c_str());
    base_.dispatch();
    return 0;
}

}  // namespace postern::master
