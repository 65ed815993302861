// local/mbox.cpp - locked, all-or-nothing appends to mbox files.
#include "local/mbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <optional>
#include <thread>

#include "fs/fs.hpp"
#include "util/strings.hpp"

namespace postern::local {
namespace {

// A "path.lock" file we created; removed again when destroyed.
class DotLock {
public:
    explicit DotLock(std::string path) : path_(std::move(path)) {}
    DotLock(DotLock&& o) noexcept : path_(std::exchange(o.path_, {})) {}
    DotLock& operator=(DotLock&&) = delete;
    DotLock(const DotLock&) = delete;
    ~DotLock() {
        if (!path_.empty()) ::unlink(path_.c_str());
    }

private:
    std::string path_;
};

// nullopt: someone else holds it (a stale one is removed for the next try).
Result<std::optional<DotLock>> try_dotlock(const std::string& path, std::chrono::seconds stale) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ::close(fd);
        return std::optional<DotLock>(DotLock(path));
    }
    if (errno != EEXIST) return sys_error("create lock file", path, errno);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && std::time(nullptr) - st.st_mtime > stale.count()) ::unlink(path.c_str());
    return std::optional<DotLock>();
}

// Buffered appends that know the last bytes written and the size limit.
class Appender {
public:
    Appender(int fd, std::uint64_t start, std::uint64_t limit) : fd_(fd), size_(start), limit_(limit) {}

    Result<void> write(std::string_view s) {
        if (s.empty()) return {};
        if (limit_ && size_ + buf_.size() + s.size() > limit_) {
            over_limit_ = true;
            return Error::perm("mailbox_size_limit exceeded");
        }
        if (s.size() >= 2) tail_.assign(s.substr(s.size() - 2));
        else tail_.append(s);
        if (tail_.size() > 2) tail_.erase(0, tail_.size() - 2);
        buf_.append(s);
        if (buf_.size() >= 64 * 1024) return flush();
        return {};
    }
    Result<void> flush() {
        auto r = fs::write_all(fd_, buf_);
        size_ += buf_.size();
        buf_.clear();
        return r;
    }
    // Ends the message with a newline and a blank line, as mbox readers expect.
    Result<void> end_message() {
        if (tail_.empty() || tail_.back() != '\n') {
            if (auto r = write("\n"); !r) return r;
        }
        return write("\n");
    }
    bool over_limit() const noexcept { return over_limit_; }

private:
    int fd_;
    std::uint64_t size_;
    std::uint64_t limit_;
    std::string buf_;
    std::string tail_;  // the last two bytes written
    bool over_limit_ = false;
};

Status full(const std::string& path, std::uint64_t limit) {
    return Status::bounced("5.2.2", "mailbox " + path + " is full: mailbox_size_limit is " + std::to_string(limit) +
                                        " bytes");
}

Status write_locked(int fd, const std::string& path, const MboxOptions& o, std::string_view from,
                    const Producer& produce, std::string_view what) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return storage_status(sys_error("fstat", path, errno));
    const auto old_size = static_cast<std::uint64_t>(st.st_size);
    if (o.size_limit && old_size + o.size_hint > o.size_limit) return full(path, o.size_limit);
    Appender out(fd, old_size, o.size_limit);
    Result<void> r = out.write(from);
    if (r) r = produce([&](std::string_view s) { return out.write(s); });
    if (r) r = out.end_message();
    if (r) r = out.flush();
    if (r && ::fsync(fd) != 0) r = sys_error("fsync", path, errno);
    if (r) return Status::sent("delivered to " + std::string(what));
    // Note: the file may hold a part of the message now; cut it off again
    // (O_APPEND writes and our locks mean nobody appended after us).
    if (::ftruncate(fd, static_cast<off_t>(old_size)) != 0 || ::fsync(fd) != 0) {
        Status s = storage_status(r.error());
        s.text += "; and truncating " + path + " back failed: " + errno_text(errno);
        return s;
    }
    if (out.over_limit()) return full(path, o.size_limit);
    Status s = storage_status(r.error());
    if (s.text.find(path) == std::string::npos) s.text = path + ": " + s.text;
    return s;
}

}  // namespace

Result<MboxOptions> lock_options(std::string_view spec) {
    MboxOptions o;
    o.fcntl_lock = o.dotlock = false;
    for (auto& item : util::split_list(spec)) {
        if (item == "fcntl") o.fcntl_lock = true;
        else if (item == "dotlock") o.dotlock = true;
        else return Error::config("mailbox_delivery_lock: unknown lock type \"" + util::printable(item) + "\"");
    }
    return o;
}

std::string from_line(std::string_view sender, std::int64_t now_us) {
    std::string who = sender.empty() ? std::string("MAILER-DAEMON") : std::string(sender);
    for (char& c : who)
        if (static_cast<unsigned char>(c) <= ' ') c = '_';  // one word, one line
    std::time_t t = static_cast<std::time_t>(now_us / 1000000);
    std::tm tm {};
    ::localtime_r(&t, &tm);
    char when[64];
    std::strftime(when, sizeof when, "%a %b %e %H:%M:%S %Y", &tm);
    return "From " + who + " " + when + "\n";
}

Status append_mbox(const std::string& path, uid_t owner, const MboxOptions& o, std::string_view from,
                   const Producer& produce, std::string_view what) {
    for (int attempt = 1;; ++attempt) {
        auto fd = fs::safe_open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (!fd) return Status::deferred("4.2.0", "cannot open mailbox: " + fd.error().text);
        struct stat st {};
        if (::fstat(fd->get(), &st) != 0) return storage_status(sys_error("fstat", path, errno));
        if (owner != AnyOwner && st.st_uid != owner)
            return Status::deferred("4.2.0", path + " is owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                                                 std::to_string(owner));
        bool busy = false;
        std::optional<DotLock> dot;
        if (o.dotlock) {
            auto d = try_dotlock(path + ".lock", o.stale_lock);
            if (!d && !o.dotlock_may_fail) return Status::deferred("4.2.0", "cannot lock mailbox: " + d.error().text);
            if (d && !*d) busy = true;
            if (d && *d) dot.emplace(std::move(**d));
        }
        if (!busy && !o.fcntl_lock) return write_locked(fd->get(), path, o, from, produce, what);
        if (!busy) {
            auto lock = fs::FileLock::try_lock(std::move(*fd));
            if (lock) return write_locked(lock->fd(), path, o, from, produce, what);
            if (lock.error().text.find(": locked") == std::string::npos)
                return Status::deferred("4.2.0", "cannot lock mailbox: " + lock.error().text);
        }
        if (attempt >= o.lock_tries)
            return Status::deferred("4.2.0", "mailbox " + path + " is locked by another process");
        dot.reset();
        std::this_thread::sleep_for(o.lock_pause);
    }
}

}  // namespace postern::local
