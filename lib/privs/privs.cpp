// privs/privs.cpp - passwd/group lookups, chroot, permanent privilege drop, rlimits.
#include "privs/privs.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <vector>

namespace postern::privs {
namespace {

// Large groups (thousands of members) need big buffers; past this, assume a broken NSS.
constexpr std::size_t MaxNssBuffer = 16u << 20;

// Calls a getXXnam_r-style function with a buffer that grows on ERANGE.
// Returns the entry copied by `convert`, nullopt when not found, or an error.
template <typename T, typename Entry, typename Call, typename Convert>
Result<std::optional<T>> nss_lookup(std::string_view what, Call call, Convert convert) {
    std::vector<char> buf(4096);
    for (;;) {
        Entry entry{};
        Entry* found = nullptr;
        int err = call(&entry, buf.data(), buf.size(), &found);
        if (err == ERANGE && buf.size() < MaxNssBuffer) {
            buf.resize(buf.size() * 2);
            continue;
        }
        // Note: glibc says "not found" with 0 and a null result; some NSS
        // modules use ENOENT instead, which is not a failure either.
        if (err == 0 || err == ENOENT) {
            if (found == nullptr) return std::optional<T>();
            return std::optional<T>(convert(*found));
        }
        return sys_error("lookup", what, err);
    }
}

UserInfo to_user(const passwd& pw) {
    return UserInfo{pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir ? pw.pw_dir : "",
                    pw.pw_shell ? pw.pw_shell : ""};
}

}  // namespace

Result<std::optional<UserInfo>> lookup_user(std::string_view name) {
    if (name.empty() || name.find('\0') != std::string_view::npos) return std::optional<UserInfo>();
    std::string n(name);
    return nss_lookup<UserInfo, passwd>(
        "user " + n,
        [&n](passwd* pw, char* b, std::size_t len, passwd** out) { return ::getpwnam_r(n.c_str(), pw, b, len, out); },
        to_user);
}

Result<std::optional<UserInfo>> lookup_uid(uid_t uid) {
    return nss_lookup<UserInfo, passwd>(
        "uid " + std::to_string(uid),
        [uid](passwd* pw, char* b, std::size_t len, passwd** out) { return ::getpwuid_r(uid, pw, b, len, out); },
        to_user);
}

Result<std::optional<gid_t>> lookup_group(std::string_view name) {
    if (name.empty() || name.find('\0') != std::string_view::npos) return std::optional<gid_t>();
    std::string n(name);
    return nss_lookup<gid_t, group>(
        "group " + n,
        [&n](group* gr, char* b, std::size_t len, group** out) { return ::getgrnam_r(n.c_str(), gr, b, len, out); },
        [](const group& gr) { return gr.gr_gid; });
}

Result<void> drop_privileges(uid_t uid, gid_t gid) {
    const std::string ids = std::to_string(uid) + ":" + std::to_string(gid);
    if (::setgroups(1, &gid) != 0) return sys_error("setgroups", ids, errno);
    if (::setresgid(gid, gid, gid) != 0) return sys_error("setresgid", ids, errno);
    if (::setresuid(uid, uid, uid) != 0) return sys_error("setresuid", ids, errno);

    // Trust, but verify: a kernel or LSM that quietly kept an id would leave
    // us with a way back to root.
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (::getresuid(&ru, &eu, &su) != 0) return sys_error("getresuid", ids, errno);
    if (::getresgid(&rg, &eg, &sg) != 0) return sys_error("getresgid", ids, errno);
    if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid)
        return Error::temp("drop privileges to " + ids + ": ids did not change");
    gid_t groups[2];
    int ng = ::getgroups(2, groups);
    if (ng < 0 || ng > 1 || (ng == 1 && groups[0] != gid))
        return Error::temp("drop privileges to " + ids + ": supplementary groups remain");
    if (uid != 0 && ::setuid(0) != -1)
        return Error::temp("drop privileges to " + ids + ": setuid(0) still succeeds");
    return {};
}

Result<void> chroot_to(const std::string& dir) {
    if (::chroot(dir.c_str()) != 0) return sys_error("chroot", dir, errno);
    if (::chdir("/") != 0) return sys_error("chdir / in", dir, errno);
    return {};
}

Result<void> set_limit(int resource, rlim_t value) {
    const std::string what = "resource " + std::to_string(resource);
    rlimit rl{};
    if (::getrlimit(resource, &rl) != 0) return sys_error("getrlimit", what, errno);
    rl.rlim_cur = value;
    if (rl.rlim_max != RLIM_INFINITY && (value == RLIM_INFINITY || rl.rlim_max < value)) rl.rlim_max = value;
    if (::setrlimit(resource, &rl) != 0) return sys_error("setrlimit", what + " to " + std::to_string(value), errno);
    return {};
}

Result<void> enter_jail(const Jail& jail) {
    if (!jail.chroot_dir.empty())
        if (auto r = chroot_to(jail.chroot_dir); !r) return r;
    if (jail.user)
        if (auto r = drop_privileges(jail.user->uid, jail.user->gid); !r) return r;
    return {};
}

bool is_root() noexcept { return ::geteuid() == 0; }

}  // namespace postern::privs
