// NAME
//   local/privsep.hpp - doing one piece of delivery as the recipient, in a child
// PURPOSE
//   The local agent stays root so it can serve any recipient; whatever touches
//   a recipient's files (reading ~/.forward, writing a Maildir or mbox) runs in
//   a forked child that first drops to the recipient's uid and gid for good
//   (privs::drop_privileges, verified), closes every descriptor it was not
//   given, does the work, and sends the result back through a pipe. Not for
//   commands (local/pipe.hpp execs them itself, with the same drop).
// SYNOPSIS
//   auto r = run_as(uid, gid, 30s, {msg_fd}, [&] { return read_forward(...); });  // Result<std::string>
//   Status s = run_status_as(uid, gid, 30s, {msg_fd}, [&] { return deliver(...); });
//   auto v = run_statuses_as(uid, gid, 30s, fds, n, [&] { return deliver_all(...); });  // n Statuses
//   close_fds_except({0, 1, 2, fd});   // in a child
// ERRORS
//   Error::temp when the child cannot be started, cannot drop privileges,
//   dies, times out (it is killed) or answers garbage; run_status_as turns
//   those into a 4.3.0 deferral, run_statuses_as into n of them (also when
//   the child answers with another number of statuses).
// SECURITY
//   uid 0 is refused before anything is forked. The child keeps only the
//   descriptors listed (and 0-2); it is not dumpable after the uid change, so
//   the recipient cannot ptrace it. Its answer is untrusted: size-capped
//   (MaxPacked) and parsed strictly. run_statuses_as takes at most
//   MaxStatuses at once, and the child cuts each text to MaxStatusText
//   bytes, so n honest answers always fit in MaxPacked.
// SEE ALSO
//   privs/privs.hpp, local/status.hpp (pack), Postfix local(8) "SECURITY"
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "local/status.hpp"
#include "util/result.hpp"

namespace postern::local {

Result<std::string> run_as(uid_t uid, gid_t gid, std::chrono::seconds limit, const std::vector<int>& keep_fds,
                           const std::function<std::string()>& fn);

Status run_status_as(uid_t uid, gid_t gid, std::chrono::seconds limit, const std::vector<int>& keep_fds,
                     const std::function<Status()>& fn);

inline constexpr std::size_t MaxStatusText = 4096;
inline constexpr std::size_t MaxStatuses = MaxPacked / (MaxStatusText + 64);

// n deliveries in one child: fn returns one Status each (a bug if n is 0 or
// more than MaxStatuses). Whatever goes wrong with the child defers all n.
std::vector<Status> run_statuses_as(uid_t uid, gid_t gid, std::chrono::seconds limit, const std::vector<int>& keep_fds,
                                    std::size_t n, const std::function<std::vector<Status>()>& fn);

// Closes every descriptor >= 3 not in keep (for a freshly forked child).
void close_fds_except(std::vector<int> keep) noexcept;

}  // namespace postern::local
