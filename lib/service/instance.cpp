// service/instance.cpp - queue directory tree and the master pid-file lock.
#include "service/instance.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "privs/privs.hpp"
#include "queue/queue.hpp"
#include "util/strings.hpp"

namespace postern::service {

std::string pid_file_path(const config::Params& p) { return p.queue_directory + "/pid/master.pid"; }

Result<void> prepare_queue_dirs(const config::Params& p) {
    auto owner = privs::lookup_user(p.mail_owner);
    if (!owner) return owner.error();
    if (!*owner) return Error::config("mail_owner " + p.mail_owner + ": no such user (make install creates it)");
    auto group = privs::lookup_group(p.setgid_group);
    if (!group) return group.error();
    if (!*group) return Error::config("setgid_group " + p.setgid_group + ": no such group (make install creates it)");
    uid_t uid = (*owner)->uid;
    gid_t gid = **group;
    // Note: DESIGN.md says the queue is postern-owned and closed to others; it
    // is 0710 with group posterndrop (not 0700) so that the setgid sendmail
    // can reach maildrop/ inside it.
    struct Dir {
        std::string path;
        mode_t mode;
        uid_t uid;
        gid_t gid;
    };
    const Dir dirs[] = {
        {p.queue_directory, 0710, uid, gid},
        {p.queue_directory + "/pid", 0755, 0, 0},
        {p.queue_directory + "/private", 0700, uid, 0},
        {p.queue_directory + "/public", 0710, uid, gid},
        {p.queue_directory + "/incoming", 0700, uid, gid},
        {p.queue_directory + "/active", 0700, uid, gid},
        {p.queue_directory + "/deferred", 0700, uid, gid},
        {p.queue_directory + "/hold", 0700, uid, gid},
        {p.queue_directory + "/corrupt", 0700, uid, gid},
        {p.queue_directory + "/defer", 0700, uid, gid},
        {p.queue_directory + "/recycle", 0700, uid, gid},
        {p.queue_directory + "/maildrop", 01730, uid, gid},
    };
    for (auto& d : dirs) {
        auto r = fs::ensure_dir(d.path, d.mode, d.uid, d.gid);
        if (!r) return r;
    }
    // Files a crash left half-written are never delivered: remove them.
    auto stale = queue::remove_stale_temp_files(p.queue_directory);
    if (!stale) return stale.error();
    return {};
}

Result<fs::FileLock> lock_pid_file(const config::Params& p) {
    std::string path = pid_file_path(p);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) return Error::temp("open " + path + ": " + std::strerror(errno));
    auto lock = fs::FileLock::try_lock(std::move(fd));
    if (!lock) {
        auto pid = running_pid(p);
        return Error::temp("the Postern mail system is already running" +
                           (pid ? " (pid " + std::to_string(*pid) + ")" : std::string()) + " for " +
                           p.config_directory);
    }
    return lock;
}

Result<void> write_pid(const fs::FileLock& lock, pid_t pid) {
    char buf[32];
    int n = std::snprintf(buf, sizeof buf, "%10d\n", static_cast<int>(pid));
    if (::ftruncate(lock.fd(), 0) != 0 || ::pwrite(lock.fd(), buf, static_cast<std::size_t>(n), 0) != n)
        return Error::temp(std::string("write pid file: ") + std::strerror(errno));
    return {};
}

std::optional<pid_t> running_pid(const config::Params& p) {
    std::string path = pid_file_path(p);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return std::nullopt;
    // Held lock = live master; the pid in the file alone proves nothing.
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (::fcntl(fd.get(), F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) return std::nullopt;
    char buf[32] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    if (n <= 0) return std::nullopt;
    auto v = util::parse_long(util::trim(std::string_view(buf, static_cast<std::size_t>(n))));
    if (!v || *v <= 0) return std::nullopt;
    return static_cast<pid_t>(*v);
}

}  // namespace postern::service
