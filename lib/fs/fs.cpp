// fs/fs.cpp - atomic replace, symlink-safe open, size-limited reads, dirs and OFD locks.
#include "fs/fs.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <system_error>

namespace postern::fs {

namespace {

Error refused(std::string_view path, std::string_view why) {
    std::string t("refusing ");
    t += path;
    t += ": ";
    t += why;
    return Error::perm(std::move(t));
}

// For error text only: the path behind fd if /proc says (not inside a chroot).
std::string fd_name(int fd) {
    std::string name = "fd " + std::to_string(fd);
    char target[4096];
    std::string link = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = ::readlink(link.c_str(), target, sizeof target);
    if (n > 0 && static_cast<std::size_t>(n) < sizeof target) name.append(" (").append(target, n).append(")");
    return name;
}

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

// Unique enough for O_EXCL: pid + counter + 64 random bits; O_EXCL catches the rest.
std::string temp_name(const std::string& path) {
    static std::atomic<unsigned> counter{0};
    unsigned long long rnd = 0;
    if (::getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof rnd)) rnd = 0;
    char suffix[80];
    std::snprintf(suffix, sizeof suffix, ".tmp.%ld.%u.%016llx", static_cast<long>(::getpid()),
                  counter.fetch_add(1), rnd);
    return path + suffix;
}

// Closes and reports the close() error: NFS and some disks report write errors only here.
Result<void> close_checked(UniqueFd fd, const std::string& name) {
    if (::close(fd.release()) != 0 && errno != EINTR) return sys_error("close", name, errno);
    return {};
}

// Returns 0 or the errno value, so callers can name the file in the error.
int write_fully(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;  // cannot happen for a non-empty write; do not spin
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return 0;
}

}  // namespace

Result<void> write_all(int fd, std::string_view data) {
    if (int err = write_fully(fd, data); err != 0) return sys_error("write", fd_name(fd), err);
    return {};
}

Result<void> fsync_dir(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("open", dir, errno);
    if (::fsync(fd.get()) != 0) return sys_error("fsync", dir, errno);
    return {};
}

Result<void> atomic_write(const std::string& path, std::string_view data, mode_t mode) {
    std::string tmp;
    UniqueFd fd;
    for (int tries = 0; tries < 16 && !fd; ++tries) {
        tmp = temp_name(path);
        fd.reset(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
        if (!fd && errno != EEXIST) return sys_error("create", tmp, errno);
    }
    if (!fd) return sys_error("create", tmp, EEXIST);

    auto fail = [&tmp](Error e) {
        ::unlink(tmp.c_str());
        return e;
    };
    if (::fchmod(fd.get(), mode) != 0) return fail(sys_error("fchmod", tmp, errno));
    if (int err = write_fully(fd.get(), data); err != 0) return fail(sys_error("write", tmp, err));
    if (::fsync(fd.get()) != 0) return fail(sys_error("fsync", tmp, errno));
    if (auto c = close_checked(std::move(fd), tmp); !c) return fail(c.error());
    if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(sys_error("rename to", path, errno));
    return fsync_dir(dir_of(path));
}

Result<UniqueFd> safe_open(const std::string& path, int flags, mode_t mode) {
    // Note: O_TRUNC waits until we know the file is ours, or a planted hard
    // link to someone else's file would be emptied before we could refuse it.
    const bool trunc = (flags & O_TRUNC) != 0;
    const bool nonblock = (flags & O_NONBLOCK) != 0;
    const int open_flags = (flags & ~O_TRUNC) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
    UniqueFd fd(::open(path.c_str(), open_flags, mode));
    if (!fd) {
        if (errno == ELOOP) return refused(path, "is a symbolic link");
        return sys_error("open", path, errno);
    }
    struct stat fst {};
    if (::fstat(fd.get(), &fst) != 0) return sys_error("fstat", path, errno);
    if (!S_ISREG(fst.st_mode)) return refused(path, "not a regular file");
    if (fst.st_nlink != 1) return refused(path, "has more than one link");
    if ((flags & O_CREAT) != 0 && (flags & O_EXCL) == 0) {
        // Someone could have renamed another file into place between open and now.
        struct stat lst {};
        if (::lstat(path.c_str(), &lst) != 0) return sys_error("lstat", path, errno);
        if (lst.st_dev != fst.st_dev || lst.st_ino != fst.st_ino)
            return refused(path, "file was replaced while opening");
    }
    if (trunc && (flags & O_ACCMODE) != O_RDONLY && ::ftruncate(fd.get(), 0) != 0)
        return sys_error("truncate", path, errno);
    if (!nonblock) {
        int fl = ::fcntl(fd.get(), F_GETFL);
        if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0)
            return sys_error("fcntl", path, errno);
    }
    return fd;
}

Result<std::string> read_file(const std::string& path, std::size_t max_size) {
    // O_NONBLOCK only so that opening a FIFO cannot hang; regular files ignore it.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd) return sys_error("open", path, errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return sys_error("fstat", path, errno);
    if (!S_ISREG(st.st_mode)) return refused(path, "not a regular file");
    auto too_big = [&] { return refused(path, "larger than " + std::to_string(max_size) + " bytes"); };
    if (static_cast<unsigned long long>(st.st_size) > max_size) return too_big();

    // Read to EOF rather than trusting st_size: the file may grow, and /proc lies.
    std::string out;
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return sys_error("read", path, errno);
        }
        if (n == 0) break;
        if (static_cast<std::size_t>(n) > max_size - out.size()) return too_big();
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

Result<void> ensure_dir(const std::string& path, mode_t mode, uid_t uid, gid_t gid) {
    if (path.empty()) return sys_error("mkdir", "\"\"", ENOENT);
    // Parents first; EEXIST is fine here, the final checks are on path itself.
    for (auto pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
        std::string parent = path.substr(0, pos);
        if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir", parent, errno);
    }
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return sys_error("mkdir", path, errno);

    struct stat lst {};
    if (::lstat(path.c_str(), &lst) != 0) return sys_error("lstat", path, errno);
    if (S_ISLNK(lst.st_mode)) return refused(path, "is a symbolic link");
    if (!S_ISDIR(lst.st_mode)) return refused(path, "not a directory");
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return sys_error("open", path, errno);
    struct stat fst {};
    if (::fstat(fd.get(), &fst) != 0) return sys_error("fstat", path, errno);
    if (fst.st_dev != lst.st_dev || fst.st_ino != lst.st_ino)
        return refused(path, "directory was replaced while checking");
    // chown before chmod: chown may clear set-id bits that mode asks for.
    const bool new_uid = uid != static_cast<uid_t>(-1) && fst.st_uid != uid;
    const bool new_gid = gid != static_cast<gid_t>(-1) && fst.st_gid != gid;
    if ((new_uid || new_gid) && ::fchown(fd.get(), uid, gid) != 0) return sys_error("chown", path, errno);
    if (::fchmod(fd.get(), mode) != 0) return sys_error("chmod", path, errno);
    return {};
}

Result<FileLock> FileLock::acquire(UniqueFd fd, bool wait) {
    if (!fd) return sys_error("lock", fd_name(fd.get()), EBADF);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;  // whole file, including what is appended later
    fl.l_pid = 0;  // required for OFD locks
    int cmd = wait ? F_OFD_SETLKW : F_OFD_SETLK;
    for (;;) {
        if (::fcntl(fd.get(), cmd, &fl) == 0) return FileLock(std::move(fd));
        if (errno == EINTR) continue;
        if (errno == EINVAL && (cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW)) {
            // XXX: pre-3.15 kernel. Classic locks are per process and are lost
            // when the process closes any fd of the file; good enough there.
            cmd = wait ? F_SETLKW : F_SETLK;
            continue;
        }
        if (errno == EAGAIN || errno == EACCES) {
            std::string t("lock ");
            t += fd_name(fd.get());
            t += ": locked";
            return Error::temp(std::move(t));
        }
        return sys_error("lock", fd_name(fd.get()), errno);
    }
}

Result<FileLock> FileLock::try_lock(UniqueFd fd) { return acquire(std::move(fd), false); }
Result<FileLock> FileLock::lock_wait(UniqueFd fd) { return acquire(std::move(fd), true); }
Result<FileLock> lock_wait(UniqueFd fd) { return FileLock::lock_wait(std::move(fd)); }

bool FileWatch::watch(int fd) noexcept {
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
        fd_ = -1;
        return false;
    }
    fd_ = fd;
    size_ = static_cast<long long>(st.st_size);
    mtime_ = st.st_mtim;
    return true;
}

bool FileWatch::changed() const noexcept {
    if (fd_ < 0) return false;
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return true;
    return st.st_nlink == 0 || static_cast<long long>(st.st_size) != size_ || st.st_mtim.tv_sec != mtime_.tv_sec ||
           st.st_mtim.tv_nsec != mtime_.tv_nsec;
}

}  // namespace postern::fs
