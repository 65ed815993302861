// NAME
//   privs/privs.hpp - user lookup, chroot, dropping root, resource limits
// PURPOSE
//   What a daemon does between start-up as root and serving its first client:
//   resolve the unprivileged user (before chroot, while /etc/passwd is still
//   visible), chroot, drop every uid and gid for good, and set rlimits. Only
//   lib/service calls enter_jail(); the master and local delivery call the
//   lookups. Not for authentication (lib/auth) and not for supplementary groups
//   of a mailbox owner: the only group kept is the one given.
// SYNOPSIS
//   auto u = privs::lookup_user(params.mail_owner);  // Result<optional<UserInfo>>
//   auto g = privs::lookup_group("postdrop");        // Result<optional<gid_t>>
//   auto r = privs::enter_jail({.chroot_dir = dir, .user = *u});
//   auto l = privs::set_limit(RLIMIT_FSIZE, params.message_size_limit);
//   if (privs::is_root()) ...
// ERRORS
//   Lookups: user/group not found is an empty optional; an NSS failure (LDAP
//   down, file unreadable) is Error::temp. Everything else returns Error::temp
//   naming the call, the argument and strerror. A failure of chroot_to,
//   drop_privileges or enter_jail leaves the process in an unknown state:
//   callers log::fatal() rather than carry on.
// SECURITY
//   drop_privileges sets real, effective and saved ids and then checks that
//   they stuck and that setuid(0) now fails, so a partly dropped process is
//   reported, never silently kept. Order is chroot, then groups, gid, uid.
//   Names with a NUL byte are "not found".
// SEE ALSO
//   service/service.hpp (pre_jail, post_jail), Postfix set_ugid(3), chroot_uid(3)
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "util/result.hpp"

namespace postern::privs {

struct UserInfo {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string home;
    std::string shell;
};

Result<std::optional<UserInfo>> lookup_user(std::string_view name);
Result<std::optional<UserInfo>> lookup_uid(uid_t uid);
Result<std::optional<gid_t>> lookup_group(std::string_view name);

// setgroups(1, &gid), setresgid, setresuid (real, effective, saved), then
// verifies getresgid/getresuid/getgroups and, unless uid is 0, that setuid(0)
// fails. Needs root (CAP_SETUID/CAP_SETGID).
Result<void> drop_privileges(uid_t uid, gid_t gid);

// chroot(dir) then chdir("/"). Needs root. Open descriptors stay usable.
Result<void> chroot_to(const std::string& dir);

// Sets the soft limit to value. The hard limit is left alone when it already
// allows value (so it can be raised again later); when it is lower it is raised
// to value, which needs CAP_SYS_RESOURCE; without it this is an error, not a
// silent clamp.
Result<void> set_limit(int resource, rlim_t value);

struct Jail {
    std::string chroot_dir;          // empty = no chroot
    std::optional<UserInfo> user;    // nullopt = keep the current ids
};

// chroot (if any) first, while still root, then drop to user (if any). Logs
// nothing itself; the caller logs and exits on error.
Result<void> enter_jail(const Jail& jail);

bool is_root() noexcept;  // effective uid is 0

}  // namespace postern::privs
