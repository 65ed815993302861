// log/log.cpp - syslog/file/stderr sinks with Postfix-shaped lines.
#include "log/log.hpp"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "util/assert.hpp"
#include "util/pid.hpp"

namespace postern::log {
namespace {

Options g_opts;
int g_fd = -1;            // file sink, or 2 for stderr; -1 = syslog
bool g_syslog_open = false;
char g_host[256] = "localhost";
FatalHook g_fatal_hook = nullptr;

enum class Level { Debug, Info, Warn, Error, Fatal, Panic };

const char* prefix(Level l) {
    switch (l) {
        case Level::Warn: return "warning: ";
        case Level::Error: return "error: ";
        case Level::Fatal: return "fatal: ";
        case Level::Panic: return "panic: ";
        default: return "";
    }
}

int priority(Level l) {
    switch (l) {
        case Level::Debug: return LOG_DEBUG;
        case Level::Info: return LOG_INFO;
        case Level::Warn: return LOG_WARNING;
        case Level::Error: return LOG_ERR;
        case Level::Fatal: return LOG_CRIT;
        case Level::Panic: return LOG_CRIT;
    }
    return LOG_INFO;
}

void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

void emit(Level level, const char* fmt, va_list ap) noexcept {
    if (level == Level::Debug && !g_opts.verbose) return;
    int saved_errno = errno;
    char text[2048];
    int n = std::vsnprintf(text, sizeof text, fmt, ap);
    if (n < 0) text[0] = '\0';
    // Note: a line longer than the buffer is cut, and says so.
    if (n >= static_cast<int>(sizeof text)) std::memcpy(text + sizeof text - 5, "...", 4);

    if (g_fd >= 0) {
        char line[2400];
        std::size_t len = 0;
        if (g_fd != 2) {
            std::time_t now = std::time(nullptr);
            std::tm tm{};
            localtime_r(&now, &tm);
            len = std::strftime(line, sizeof line, "%b %e %H:%M:%S ", &tm);
            int m = std::snprintf(line + len, sizeof line - len, "%s %s[%d]: %s%s\n", g_host,
                                  g_opts.tag.c_str(), static_cast<int>(util::cached_pid()), prefix(level), text);
            len += (m > 0) ? std::min<std::size_t>(static_cast<std::size_t>(m), sizeof line - len - 1) : 0;
        } else {
            int m = std::snprintf(line, sizeof line, "%s[%d]: %s%s\n", g_opts.tag.c_str(),
                                  static_cast<int>(util::cached_pid()), prefix(level), text);
            len = (m > 0) ? std::min<std::size_t>(static_cast<std::size_t>(m), sizeof line - 1) : 0;
        }
        if (len > 0 && line[len - 1] != '\n') line[len - 1] = '\n';
        write_all(g_fd, line, len);
    } else {
        if (!g_syslog_open) {
            openlog(g_opts.tag.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
            g_syslog_open = true;
        }
        syslog(priority(level), "%s%s", prefix(level), text);
    }
    if (g_opts.also_stderr && g_fd != 2 && level != Level::Info && level != Level::Debug) {
        // Commands: the person at the terminal sees "postern: fatal: text".
        const char* base = std::strrchr(g_opts.tag.c_str(), '/');
        base = base ? base + 1 : g_opts.tag.c_str();
        char line[2400];
        int m = std::snprintf(line, sizeof line, "%s: %s%s\n", base, prefix(level), text);
        if (m > 0) write_all(2, line, std::min<std::size_t>(static_cast<std::size_t>(m), sizeof line - 1));
    }
    errno = saved_errno;
}

void panic_hook(const char* message) noexcept { panic("%s", message); }

}  // namespace

void open(const Options& options) {
    if (g_fd > 2) ::close(g_fd);
    g_fd = -1;
    if (g_syslog_open) {
        closelog();
        g_syslog_open = false;
    }
    g_opts = options;
    ::gethostname(g_host, sizeof g_host - 1);
    if (char* dot = std::strchr(g_host, '.')) *dot = '\0';
    // Load the time zone before any chroot: localtime_r needs it later.
    tzset();
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);

    if (g_opts.file == "-" || g_opts.file == "/dev/stderr") {
        g_fd = 2;
    } else if (!g_opts.file.empty()) {
        g_fd = ::open(g_opts.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (g_fd < 0) {
            int e = errno;
            g_fd = 2;
            warn("open log file %s: %s; logging to stderr", g_opts.file.c_str(), std::strerror(e));
        }
    } else {
        openlog(g_opts.tag.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
        g_syslog_open = true;
    }
    util::set_panic_hook(panic_hook);
}

const Options& options() noexcept { return g_opts; }

#define POSTERN_LOG_BODY(level)  \
    va_list ap;                  \
    va_start(ap, fmt);           \
    emit(level, fmt, ap);        \
    va_end(ap)

void debug(const char* fmt, ...) noexcept { POSTERN_LOG_BODY(Level::Debug); }
void info(const char* fmt, ...) noexcept { POSTERN_LOG_BODY(Level::Info); }
void warn(const char* fmt, ...) noexcept { POSTERN_LOG_BODY(Level::Warn); }
void error(const char* fmt, ...) noexcept { POSTERN_LOG_BODY(Level::Error); }

void fatal(int exit_code, const char* fmt, ...) noexcept {
    POSTERN_LOG_BODY(Level::Fatal);
    if (g_fatal_hook != nullptr) g_fatal_hook();
    std::fflush(nullptr);
    std::_Exit(exit_code);
}

void panic(const char* fmt, ...) noexcept {
    POSTERN_LOG_BODY(Level::Panic);
    std::abort();
}

void set_fatal_hook(FatalHook hook) noexcept { g_fatal_hook = hook; }

}  // namespace postern::log
