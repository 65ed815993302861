// mailbox/mailbox.cpp - Maildir layout, tmp/ -> new/ delivery and group commit, stale tmp/ clean-up.
#include "mailbox/mailbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <system_error>
#include <utility>

#include "log/log.hpp"
#include "mailbox/handles.hpp"
#include "util/pid.hpp"

namespace postern::mailbox {
namespace {

constexpr std::size_t BufferSize = 64 * 1024;
constexpr std::size_t MaxHostLen = 64;
constexpr int CreateTries = 16;
constexpr int64_t UsPerSec = 1000000;

Error refused(std::string_view path, std::string_view why) {
    std::string t("refusing maildir ");
    t += path;
    t += ": ";
    t += why;
    return Error::perm(std::move(t));
}

std::string strip_slashes(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return p;
}

// Opens an existing directory relative to at (AT_FDCWD for absolute or cwd
// paths) without following a symlink in its last component. shown is the
// path for error texts.
Result<UniqueFd> open_dir_at(int at, const std::string& name, const std::string& shown) {
    UniqueFd fd(::openat(at, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd) return fd;
    const int err = errno;
    if (err == ELOOP || err == ENOTDIR) {
        struct stat st {};
        if (::fstatat(at, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISLNK(st.st_mode)) return refused(shown, "is a symbolic link");
            if (!S_ISDIR(st.st_mode)) return refused(shown, "not a directory");
        }
    }
    return sys_error("open", shown, err);
}

// mkdir + open; a directory we created gets exactly mode (no umask).
// created_out tells the caller to fsync the parent.
Result<UniqueFd> make_dir_at(int at, const std::string& name, const std::string& shown, mode_t mode,
                             bool& created_out) {
    created_out = false;
    if (::mkdirat(at, name.c_str(), mode) == 0) {
        created_out = true;
    } else if (errno != EEXIST) {
        return sys_error("mkdir", shown, errno);
    }
    auto fd = open_dir_at(at, name, shown);
    if (!fd) return fd;
    if (created_out && ::fchmod(fd->get(), mode) != 0) return sys_error("chmod", shown, errno);
    return fd;
}

Result<void> fsync_fd(int fd, const std::string& shown) {
    if (::fsync(fd) != 0) return sys_error("fsync", shown, errno);
    return {};
}

Result<void> fsync_path(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sys_error("open", dir, errno);
    return fsync_fd(fd.get(), dir);
}

std::string parent_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

std::string sanitize_host(std::string_view host) {
    if (host.empty()) return "localhost";
    std::string out;
    for (unsigned char c : host) {
        char piece[8] = {static_cast<char>(c), '\0'};
        if (c == '/' || c == ':' || c == '\\' || c < 0x21 || c > 0x7e)
            std::snprintf(piece, sizeof piece, "\\%03o", static_cast<unsigned>(c));
        const std::string_view p = piece;
        if (out.size() + p.size() > MaxHostLen) break;
        out += p;
    }
    return out;
}

// Process-wide, so two deliveries in the same microsecond differ (Q<counter>).
std::atomic<uint64_t> delivery_counter{0};

std::string unique_name(int64_t now_us, const std::string& host) {
    if (now_us < 0) now_us = 0;  // a clock before 1970 is not worth an error
    char head[96];
    std::snprintf(head, sizeof head, "%" PRId64 ".M%" PRId64 "P%ldQ%" PRIu64 ".", now_us / UsPerSec,
                  now_us % UsPerSec, static_cast<long>(util::cached_pid()), delivery_counter.fetch_add(1) + 1);
    return head + host;
}

int write_fully(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return 0;
}

}  // namespace

Result<void> ensure_maildir(const std::string& path_in, mode_t mode) {
    if (path_in.empty()) return Error::perm("maildir path is empty");
    const std::string path = strip_slashes(path_in);

    // Missing parents get mode too: a virtual-mailbox tree should not be world-readable.
    for (auto pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
        std::string parent = path.substr(0, pos);
        if (::mkdir(parent.c_str(), mode) != 0 && errno != EEXIST) return sys_error("mkdir", parent, errno);
    }
    bool created = false;
    auto top = make_dir_at(AT_FDCWD, path, path, mode, created);
    if (!top) return top.error();
    if (created) {
        if (auto r = fsync_path(parent_of(path)); !r) return r;
    }
    bool any_sub = false;
    for (const char* sub : {"tmp", "new", "cur"}) {
        auto d = make_dir_at(top->get(), sub, path + "/" + sub, mode, created);
        if (!d) return d.error();
        any_sub = any_sub || created;
    }
    if (any_sub) return fsync_fd(top->get(), path);
    return {};
}

Result<Maildir> Maildir::open(const std::string& path) {
    Maildir m;
    m.path_ = strip_slashes(path);
    auto top = open_dir_at(AT_FDCWD, m.path_, m.path_);
    if (!top) return top.error();
    auto tmp = open_dir_at(top->get(), "tmp", m.path_ + "/tmp");
    if (!tmp) return tmp.error();
    auto nw = open_dir_at(top->get(), "new", m.path_ + "/new");
    if (!nw) return nw.error();
    m.tmp_dir_ = std::move(*tmp);
    m.new_dir_ = std::move(*nw);
    return m;
}

Result<Delivery> Maildir::begin(std::string_view hostname, int64_t now_us) const {
    UniqueFd tmp(::fcntl(tmp_dir_.get(), F_DUPFD_CLOEXEC, 0));
    if (!tmp) return sys_error("dup", path_ + "/tmp", errno);
    UniqueFd nw(::fcntl(new_dir_.get(), F_DUPFD_CLOEXEC, 0));
    if (!nw) return sys_error("dup", path_ + "/new", errno);
    return Delivery::create(path_, std::move(tmp), std::move(nw), hostname, now_us);
}

Result<void> Maildir::sync_new() const { return fsync_fd(new_dir_.get(), path_ + "/new"); }

Result<Delivery> Delivery::begin(const std::string& maildir, std::string_view hostname, int64_t now_us) {
    auto m = Maildir::open(maildir);
    if (!m) return m.error();
    return create(std::move(m->path_), std::move(m->tmp_dir_), std::move(m->new_dir_), hostname, now_us);
}

Result<Delivery> Delivery::create(std::string maildir, UniqueFd tmp_dir, UniqueFd new_dir, std::string_view hostname,
                                  int64_t now_us) {
    Delivery d;
    d.maildir_ = std::move(maildir);
    d.tmp_dir_ = std::move(tmp_dir);
    d.new_dir_ = std::move(new_dir);

    const std::string host = sanitize_host(hostname);
    // The counter changes on every try, so EEXIST (a leftover, or pid reuse
    // within one microsecond) just means "next name".
    for (int tries = 0; tries < CreateTries && !d.file_; ++tries) {
        d.name_ = unique_name(now_us, host);
        d.file_.reset(::openat(d.tmp_dir_.get(), d.name_.c_str(),
                               O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!d.file_ && errno != EEXIST) return sys_error("create", d.maildir_ + "/tmp/" + d.name_, errno);
    }
    if (!d.file_) return sys_error("create", d.maildir_ + "/tmp/" + d.name_, EEXIST);
    d.open_ = true;
    // Exactly 0600 whatever the umask; a failure here aborts via ~Delivery.
    if (::fchmod(d.file_.get(), 0600) != 0) return sys_error("chmod", d.maildir_ + "/tmp/" + d.name_, errno);
    d.buf_.reserve(BufferSize);
    return d;
}

Delivery::Delivery(Delivery&& o) noexcept
    : maildir_(std::move(o.maildir_)),
      name_(std::move(o.name_)),
      final_name_(std::move(o.final_name_)),
      tmp_dir_(std::move(o.tmp_dir_)),
      new_dir_(std::move(o.new_dir_)),
      file_(std::move(o.file_)),
      buf_(std::move(o.buf_)),
      size_(std::exchange(o.size_, 0)),
      open_(std::exchange(o.open_, false)),
      committed_(std::exchange(o.committed_, false)) {
    o.name_.clear();
    o.final_name_.clear();
}

Delivery& Delivery::operator=(Delivery&& o) noexcept {
    if (this != &o) {
        abort();
        maildir_ = std::move(o.maildir_);
        name_ = std::move(o.name_);
        o.name_.clear();
        final_name_ = std::move(o.final_name_);
        o.final_name_.clear();
        tmp_dir_ = std::move(o.tmp_dir_);
        new_dir_ = std::move(o.new_dir_);
        file_ = std::move(o.file_);
        buf_ = std::move(o.buf_);
        size_ = std::exchange(o.size_, 0);
        open_ = std::exchange(o.open_, false);
        committed_ = std::exchange(o.committed_, false);
    }
    return *this;
}

Delivery::~Delivery() { abort(); }

void Delivery::abort() noexcept {
    file_.reset();
    if (open_) {
        ::unlinkat(tmp_dir_.get(), name_.c_str(), 0);
        open_ = false;
    }
    buf_.clear();
}

Error Delivery::fail(Error e) noexcept {
    abort();
    return e;
}

Result<void> Delivery::flush() {
    if (buf_.empty()) return {};
    if (int err = write_fully(file_.get(), buf_); err != 0)
        return fail(sys_error("write", maildir_ + "/tmp/" + name_, err));
    buf_.clear();
    return {};
}

Result<void> Delivery::append(std::string_view bytes) {
    if (!open_) return Error::temp("maildir delivery to " + maildir_ + " is no longer open");
    if (buf_.size() + bytes.size() > BufferSize) {
        if (auto r = flush(); !r) return r;
    }
    if (bytes.size() >= BufferSize) {
        if (int err = write_fully(file_.get(), bytes); err != 0)
            return fail(sys_error("write", maildir_ + "/tmp/" + name_, err));
    } else {
        buf_.append(bytes);
    }
    size_ += bytes.size();
    return {};
}

Result<std::string> Delivery::commit_file() {
    if (!open_) return Error::temp("maildir delivery to " + maildir_ + " is no longer open");
    const std::string tmp_path = maildir_ + "/tmp/" + name_;
    if (auto r = flush(); !r) return r.error();
    if (::fsync(file_.get()) != 0) return fail(sys_error("fsync", tmp_path, errno));
    if (::close(file_.release()) != 0 && errno != EINTR) return fail(sys_error("close", tmp_path, errno));

    std::string final_name = name_ + ",S=" + std::to_string(size_);
    const std::string final_path = maildir_ + "/new/" + final_name;
    // link() rather than rename(): it fails instead of replacing an existing
    // message. Some file systems (AFS, some FUSE) have no hard links: rename.
    if (::linkat(tmp_dir_.get(), name_.c_str(), new_dir_.get(), final_name.c_str(), 0) == 0) {
        ::unlinkat(tmp_dir_.get(), name_.c_str(), 0);  // Note: a leftover is a harmless second link
    } else if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS) {
        if (::renameat(tmp_dir_.get(), name_.c_str(), new_dir_.get(), final_name.c_str()) != 0)
            return fail(sys_error("rename to", final_path, errno));
    } else {
        return fail(sys_error("link to", final_path, errno));
    }
    open_ = false;
    committed_ = true;
    final_name_ = std::move(final_name);
    buf_.clear();
    buf_.shrink_to_fit();
    return final_path;
}

void Delivery::uncommit() noexcept {
    if (!committed_) return;
    committed_ = false;
    if (::unlinkat(new_dir_.get(), final_name_.c_str(), 0) != 0 && errno != ENOENT)
        log::warn("cannot take back %s/new/%s: %s", maildir_.c_str(), final_name_.c_str(), errno_text(errno).c_str());
}

Result<std::string> Delivery::commit() {
    auto path = commit_file();
    if (!path) return path;
    if (::fsync(new_dir_.get()) != 0) {
        // Not durable: take it back so that an error always means "not delivered".
        Error e = sys_error("fsync", maildir_ + "/new", errno);
        uncommit();
        return e;
    }
    return path;
}

Result<std::size_t> remove_stale_tmp(const std::string& maildir_in, int64_t now_us, std::chrono::seconds max_age) {
    const std::string maildir = strip_slashes(maildir_in);
    const std::string tmp_path = maildir + "/tmp";
    auto top = open_dir_at(AT_FDCWD, maildir, maildir);
    if (!top) return top.error();
    auto tmp = open_dir_at(top->get(), "tmp", tmp_path);
    if (!tmp) return tmp.error();
    DirPtr dir(::fdopendir(tmp->get()));
    if (!dir) return sys_error("opendir", tmp_path, errno);
    tmp->release();  // now owned by dir
    const int dfd = ::dirfd(dir.get());

    const int64_t max_age_us = static_cast<int64_t>(max_age.count()) * UsPerSec;
    auto us_of = [](const struct timespec& ts) {
        return static_cast<int64_t>(ts.tv_sec) * UsPerSec + ts.tv_nsec / 1000;
    };
    std::size_t removed = 0;
    for (;;) {
        errno = 0;
        const struct dirent* e = ::readdir(dir.get());
        if (e == nullptr) {
            if (errno != 0) return sys_error("readdir", tmp_path, errno);
            break;
        }
        const std::string_view name = e->d_name;
        if (name == "." || name == "..") continue;
        struct stat st {};
        if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            return sys_error("stat", tmp_path + "/" + e->d_name, errno);
        }
        if (!S_ISREG(st.st_mode)) continue;
        // Maildir says "not accessed for 36 hours"; with noatime/relatime the
        // mtime is the better witness, so both must be old.
        const int64_t newest = std::max(us_of(st.st_atim), us_of(st.st_mtim));
        if (now_us - newest <= max_age_us) continue;
        if (::unlinkat(dfd, e->d_name, 0) != 0) {
            if (errno == ENOENT) continue;
            return sys_error("unlink", tmp_path + "/" + e->d_name, errno);
        }
        ++removed;
    }
    return removed;
}

}  // namespace postern::mailbox
