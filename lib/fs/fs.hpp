// NAME
//   fs/fs.hpp - careful file operations: atomic replace, safe open, locks
// PURPOSE
//   The few file-system primitives that queue, maps, config and master need to
//   be crash-safe and not fooled by symlinks or hard links planted by another
//   user: write-then-rename with fsync, open without following the last
//   symlink, size-limited reads, directory set-up, and whole-file write locks.
//   Not a general path library, not for directories other than ensure_dir and
//   fsync_dir, and not for network I/O (write_all works on any fd, but knows
//   nothing about non-blocking sockets: EAGAIN is an error).
// SYNOPSIS
//   auto r = fs::atomic_write(dir + "/pid", text, 0644);    // replace, durable
//   auto fd = fs::safe_open(path, O_RDWR | O_CREAT, 0600);   // Result<UniqueFd>
//   auto s = fs::read_file(path, params.some_size_limit);    // Result<std::string>
//   auto d = fs::ensure_dir(queue_dir, 0700, uid, gid);
//   auto lk = fs::FileLock::try_lock(std::move(*fd));         // held until destroyed
//   auto w = fs::write_all(fd.get(), bytes);
// ERRORS
//   Every failure is a Result error whose text names the path (or fd) and the
//   strerror text, e.g. "open /var/spool/x: Permission denied". System call
//   failures are Error::temp. A refused file (symlink, hard link, not a regular
//   file, not a directory, too large) is Error::perm: trying again will not
//   help until someone changes the file system. A lock held by someone else is
//   Error::temp with text ending in ": locked". Nothing throws or aborts.
// SECURITY
//   safe_open never follows a symlink in the last component and refuses files
//   with more than one link, so another user cannot point a root-run program at
//   /etc/shadow; symlinks in earlier components are trusted (callers own the
//   directories they use). O_TRUNC is applied only after those checks pass.
//   read_file needs an explicit size limit. Files are opened O_CLOEXEC.
//   Locks are OFD locks: they belong to the open file description, so a fork()ed
//   child that keeps the descriptor keeps the lock alive after the parent lets go.
// SEE ALSO
//   util/unique_fd.hpp, util/result.hpp, Postfix safe_open(3), fcntl(2) F_OFD_SETLK
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <ctime>
#include <string>
#include <string_view>

#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace postern::fs {

// Writes all of data, retrying short writes and EINTR. EAGAIN is an error.
Result<void> write_all(int fd, std::string_view data);

// fsync()s a directory, making renames and unlinks in it durable.
Result<void> fsync_dir(const std::string& dir);

// Replaces path with data, all or nothing: a temp file in the same directory
// (O_EXCL|O_NOFOLLOW), fchmod to exactly mode (the umask does not apply),
// write, fsync, rename over path, fsync the directory. On failure before the
// rename the temp file is removed and path is untouched. If only the final
// directory fsync fails, path already has the new data but the error is
// still returned (it may not survive a crash).
Result<void> atomic_write(const std::string& path, std::string_view data, mode_t mode);

// open() for regular files that refuses to be redirected: adds O_NOFOLLOW,
// O_CLOEXEC and (while opening) O_NONBLOCK, so a FIFO cannot make us hang. The
// opened file must be a regular file with exactly one link; with O_CREAT but
// not O_EXCL, lstat(path) must also name the same file as the descriptor.
// O_TRUNC is carried out after the checks. O_NONBLOCK is cleared again unless
// the caller asked for it. Not for directories.
Result<UniqueFd> safe_open(const std::string& path, int flags, mode_t mode = 0600);

// Reads a whole regular file (following symlinks: config files may be links).
// A file with more than max_size bytes is an error, never silently cut.
Result<std::string> read_file(const std::string& path, std::size_t max_size);

// mkdir -p. Missing parents are created 0755 (less the umask); path itself is
// created with mode. Then path must be a real directory (not a symlink), and it
// gets exactly mode and, when uid/gid are not -1, that owner and group.
Result<void> ensure_dir(const std::string& path, mode_t mode, uid_t uid = static_cast<uid_t>(-1),
                        gid_t gid = static_cast<gid_t>(-1));

// An exclusive fcntl write lock on a whole file, held for the lifetime of the
// object; destroying it closes the descriptor, which releases the lock. Uses
// OFD locks (F_OFD_SETLK): two descriptions of one file conflict even inside
// one process, and closing an unrelated fd for the same file does not drop
// the lock. Falls back to classic F_SETLK on kernels without OFD locks.
// Note: OFD locks record no owner pid, so there is no holder-pid query;
// programs that need one (master's pid file) write their pid into the file.
class FileLock {
public:
    // Fails at once with Error::temp("...: locked") if another description holds it.
    static Result<FileLock> try_lock(UniqueFd fd);
    // Blocks until the lock is granted (EINTR is retried).
    static Result<FileLock> lock_wait(UniqueFd fd);

    FileLock(FileLock&&) noexcept = default;
    FileLock& operator=(FileLock&&) noexcept = default;
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;
    ~FileLock() = default;

    int fd() const noexcept { return fd_.get(); }

private:
    explicit FileLock(UniqueFd fd) noexcept : fd_(std::move(fd)) {}
    static Result<FileLock> acquire(UniqueFd fd, bool wait);
    UniqueFd fd_;
};

// Free-function spelling of FileLock::lock_wait.
Result<FileLock> lock_wait(UniqueFd fd);

// Whether a file changed under an open descriptor: unlinked (replaced by a
// rename, removed) or written in place (size or mtime differ from watch()).
// Watches the descriptor, never the path, so it works inside a chroot where
// the path may name another file. Missed: a replaced file still linked
// elsewhere, and a same-size rewrite within one timestamp tick. The
// descriptor is borrowed and must stay open while watched.
class FileWatch {
public:
    // Starts watching fd; false (and nothing watched) if fstat fails.
    bool watch(int fd) noexcept;
    bool watching() const noexcept { return fd_ >= 0; }
    // False when nothing is watched; true when fstat fails (cannot tell).
    bool changed() const noexcept;

private:
    int fd_ = -1;
    long long size_ = 0;
    struct timespec mtime_ {};
};

}  // namespace postern::fs
