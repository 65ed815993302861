// NAME
//   log/log.hpp - the mail log, in Postfix's line shape
// PURPOSE
//   Every program logs through here: `postern/smtpd[1234]: warning: text` to
//   syslog (LOG_MAIL), to a file (maillog_file, with a syslog-style time stamp
//   and host name) or to stderr. Tools that read Postfix logs (pflogsumm,
//   fail2ban) read ours. Not for protocol replies or command output.
// SYNOPSIS
//   log::open({.tag = "postern/master", .file = cfg.maillog_file});  // before chroot
//   log::info("%s: from=<%s>", qid, sender);
//   log::warn("connect to %s: %s", path, ec.message().c_str());
//   log::fatal(EX_CONFIG, "bad %s", x);   log::panic("bug: %s", why);
// ERRORS
//   Failing to write a log line is ignored (there is nowhere to report it).
//   fatal() exits with the given sysexits.h code; panic() aborts.
// SECURITY
//   Callers pass untrusted text through util::printable(). Never log secrets.
// SEE ALSO
//   util/assert.hpp, config/params.cpp (maillog_file, syslog_name)
#pragma once

#include <string>

namespace postern::log {

struct Options {
    std::string tag = "postern";  // syslog_name/program, e.g. "postern/smtpd"
    std::string file;             // "" = syslog; "/dev/stderr" or "-" = stderr; else a path
    bool also_stderr = false;     // commands: show messages to the person too
    bool verbose = false;         // log debug() lines
};

// Opens the sink. Call again after the config is known; call before chroot
// (the file and the syslog socket stay open afterwards).
void open(const Options& options);
const Options& options() noexcept;

[[gnu::format(printf, 1, 2)]] void debug(const char* fmt, ...) noexcept;
[[gnu::format(printf, 1, 2)]] void info(const char* fmt, ...) noexcept;
[[gnu::format(printf, 1, 2)]] void warn(const char* fmt, ...) noexcept;
[[gnu::format(printf, 1, 2)]] void error(const char* fmt, ...) noexcept;
[[noreturn, gnu::format(printf, 2, 3)]] void fatal(int exit_code, const char* fmt, ...) noexcept;
[[noreturn, gnu::format(printf, 1, 2)]] void panic(const char* fmt, ...) noexcept;

// Hook for tests and for fatal() cleanup in the master: called before exit.
using FatalHook = void (*)() noexcept;
void set_fatal_hook(FatalHook hook) noexcept;

}  // namespace postern::log
