// postern/control.cpp - signalling and waiting for the master of one instance.
#include "postern/control.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "config/config.hpp"
#include "postern/check.hpp"
#include "service/instance.hpp"

namespace postern::control {
namespace {

void say(const char* text, const char* detail = nullptr) {
    if (detail)
        std::fprintf(stderr, "postern: %s: %s\n", text, detail);
    else
        std::fprintf(stderr, "postern: %s\n", text);
}

// Loads the configuration or explains why not (exit code in *code_out).
std::optional<config::Config> load(const std::string& dir, int* code_out) {
    auto cfg = config::Config::load(dir);
    if (!cfg) {
        std::fprintf(stderr, "%s\npostern: fix the configuration, then try again\n", cfg.error().text.c_str());
        *code_out = EX_CONFIG;
        return std::nullopt;
    }
    return std::move(*cfg);
}

bool root_or_complain(int* code_out) {
    if (::geteuid() == 0) return true;
    say("this command must be run as root");
    *code_out = EX_NOPERM;
    return false;
}

template <typename Pred>
bool wait_until(Pred pred, std::chrono::seconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return pred();
}

}  // namespace

int start(const std::string& dir) {
    int code = 0;
    if (!root_or_complain(&code)) return code;
    auto report = check::run(dir);
    for (auto& w : report.warnings) std::fprintf(stderr, "postern: warning: %s\n", w.c_str());
    if (!report.ok()) {
        for (auto& e : report.errors) std::fprintf(stderr, "%s\n", e.c_str());
        say("not starting: fix the problems above (postern check lists them)");
        return EX_CONFIG;
    }
    auto cfg = load(dir, &code);
    if (!cfg) return code;
    const auto& p = cfg->params();
    if (auto pid = service::running_pid(p)) {
        std::fprintf(stderr, "postern: the Postern mail system is already running (pid %d)\n", *pid);
        return EX_TEMPFAIL;
    }
    say("starting the Postern mail system");
    std::string master = p.daemon_directory + "/master";
    pid_t child = ::fork();
    if (child < 0) {
        say("fork", std::strerror(errno));
        return EX_OSERR;
    }
    if (child == 0) {
        const char* argv[] = {master.c_str(), "-c", dir.c_str(), nullptr};
        ::execv(master.c_str(), const_cast<char* const*>(argv));
        std::fprintf(stderr, "postern: exec %s: %s\n", master.c_str(), std::strerror(errno));
        _exit(EX_OSERR);
    }
    int st = 0;
    while (::waitpid(child, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        say("master did not start (see the messages above and the mail log)");
        return WIFEXITED(st) && WEXITSTATUS(st) != 0 ? WEXITSTATUS(st) : EX_SOFTWARE;
    }
    if (!wait_until([&] { return service::running_pid(p).has_value(); }, std::chrono::seconds(10))) {
        say("master exited without taking its pid file lock; see the mail log");
        return EX_SOFTWARE;
    }
    return EX_OK;
}

int stop(const std::string& dir) {
    int code = 0;
    if (!root_or_complain(&code)) return code;
    auto cfg = load(dir, &code);
    if (!cfg) return code;
    const auto& p = cfg->params();
    auto pid = service::running_pid(p);
    if (!pid) {
        say("the Postern mail system is not running");
        return EX_UNAVAILABLE;
    }
    say("stopping the Postern mail system");
    if (::kill(*pid, SIGTERM) != 0) {
        say("kill master", std::strerror(errno));
        return EX_OSERR;
    }
    auto limit = p.master_stop_timeout + std::chrono::seconds(10);
    if (!wait_until([&] { return !service::running_pid(p).has_value(); }, limit)) {
        std::fprintf(stderr, "postern: master (pid %d) has not stopped yet; see the mail log\n", *pid);
        return EX_TEMPFAIL;
    }
    return EX_OK;
}

int reload(const std::string& dir) {
    int code = 0;
    if (!root_or_complain(&code)) return code;
    auto report = check::run(dir);
    if (!report.ok()) {
        for (auto& e : report.errors) std::fprintf(stderr, "%s\n", e.c_str());
        say("not reloading: fix the problems above; the running configuration stays in force");
        return EX_CONFIG;
    }
    auto cfg = load(dir, &code);
    if (!cfg) return code;
    auto pid = service::running_pid(cfg->params());
    if (!pid) {
        say("the Postern mail system is not running");
        return EX_UNAVAILABLE;
    }
    say("refreshing the Postern mail system");
    if (::kill(*pid, SIGHUP) != 0) {
        say("kill master", std::strerror(errno));
        return EX_OSERR;
    }
    return EX_OK;
}

int status(const std::string& dir) {
    int code = 0;
    auto cfg = load(dir, &code);
    if (!cfg) return code;
    auto pid = service::running_pid(cfg->params());
    if (!pid) {
        say("the Postern mail system is not running");
        return EX_UNAVAILABLE;
    }
    std::fprintf(stderr, "postern: the Postern mail system is running: PID: %d\n", *pid);
    return EX_OK;
}

}  // namespace postern::control
