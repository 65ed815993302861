// NAME
//   local/pipe.hpp - delivering to a command ("|command" in aliases and .forward)
// PURPOSE
//   Runs the command as the recipient (or default_privs), never as root:
//   without a shell when the text has no shell metacharacters (split at
//   blanks, looked up in /usr/bin:/bin), else local_command_shell -c TEXT; a
//   clean environment the caller builds; the message on stdin; stdout and
//   stderr captured (bounded); the whole process group killed after
//   command_time_limit. The exit status becomes a Status through sysexits(3).
//   Not a general process library and not the message formatting.
// SYNOPSIS
//   CommandSpec c{.command = "/usr/bin/procmail -a x", .uid = u, .gid = g, .cwd = home, .env = env};
//   Status s = run_command(c, producer);
//   needs_shell("a | b") == true;  exit_status(ws, cmd, output);
// EXIT STATUS
//   0 sent; EX_TEMPFAIL, EX_OSERR, EX_IOERR, EX_CANTCREAT, EX_CONFIG deferred
//   4.3.0 (a filter that cannot work right now, or is misconfigured, must
//   not bounce mail); EX_NOUSER 5.1.1, EX_NOHOST 5.1.2, EX_DATAERR 5.6.0,
//   EX_PROTOCOL 5.5.0, EX_NOPERM 5.7.0, anything else (127: not found) 5.3.0
//   bounced; killed by a signal or by the time limit: deferred 4.3.0. The
//   reason is "COMMAND: first output line", or "COMMAND: exit status N".
// ERRORS
//   Setup failures (pipe, fork) are 4.3.0 deferrals.
// SECURITY
//   uid 0 is refused. The child drops privileges (verified) before exec,
//   starts its own session (so the time limit kills everything it started),
//   keeps only descriptors 0-2 and gets SIGPIPE back at its default. Output
//   beyond max_output bytes is read and thrown away, so a chatty command can
//   neither block nor bloat the agent. The caller must ignore SIGPIPE.
// SEE ALSO
//   sysexits.h, local/privsep.hpp, Postfix local(8) "EXTERNAL COMMAND DELIVERY"
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "local/mbox.hpp"
#include "local/status.hpp"

namespace postern::local {

struct CommandSpec {
    std::string command;           // as written after '|'
    uid_t uid = 0;
    gid_t gid = 0;
    std::string cwd = "/";         // "/" when it cannot be entered
    std::vector<std::string> env;  // "NAME=value", the whole environment
    std::string shell = "/bin/sh";
    std::chrono::seconds time_limit{1000};
    std::size_t max_output = 4096;
};

bool needs_shell(std::string_view command) noexcept;
// {shell, "-c", command} or the command split at blanks.
std::vector<std::string> command_argv(std::string_view command, std::string_view shell);
// wait_status as from waitpid.
Status exit_status(int wait_status, std::string_view command, std::string_view output);

Status run_command(const CommandSpec& c, const Producer& produce);

}  // namespace postern::local
