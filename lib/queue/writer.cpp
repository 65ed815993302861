// queue/writer.cpp - Writer: creates a queue file, writes its records, and commits it durably.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <vector>

#include "fs/fs.hpp"
#include "log/log.hpp"
#include "queue/handles.hpp"
#include "queue/queue.hpp"
#include "queue/record.hpp"
#include "util/pid.hpp"

namespace postern::queue {

using namespace detail;

namespace {

// Names read from recycle/ and not tried yet, for this process. Writers run
// on the event loop and on pool threads, hence the mutex.
struct RecyclePool {
    std::mutex mu;
    std::string dir;  // the recycle/ the names are from
    std::vector<std::string> names;
    int64_t next_read_us = 0;  // recycle/ was empty: not read again before this
    uint64_t rng = 0;
};

constexpr std::size_t RecycleBatch = 64;
constexpr int64_t RecycleEmptyWaitUs = 1'000'000;
constexpr int RecycleTries = 8;

RecyclePool& recycle_pool() {
    static RecyclePool p;
    return p;
}

// Reads up to RecycleBatch names, in random order: several smtpd processes
// read the same directory, and taking its entries in the same order would
// make them collide on every rename.
void refill(RecyclePool& p) {
    DirPtr d(::opendir(p.dir.c_str()));
    if (!d) return;
    while (p.names.size() < RecycleBatch) {
        const dirent* e = ::readdir(d.get());
        if (e == nullptr) break;
        if (valid_id(e->d_name)) p.names.emplace_back(e->d_name);
    }
    if (p.rng == 0) p.rng = static_cast<uint64_t>(util::cached_pid()) * 0x9E3779B97F4A7C15ull | 1;
    for (std::size_t i = p.names.size(); i > 1; --i) {
        p.rng ^= p.rng << 13, p.rng ^= p.rng >> 7, p.rng ^= p.rng << 17;
        std::swap(p.names[i - 1], p.names[p.rng % i]);
    }
}

// Moves a file from recycle/ to temp and opens it, emptied. An invalid fd
// when there is none (then the caller creates a file).
UniqueFd claim_recycled(const std::string& queue_dir, const std::string& temp, int64_t now_us) {
    RecyclePool& p = recycle_pool();
    std::lock_guard lock(p.mu);
    std::string dir = join_path(queue_dir, Recycle);
    if (p.dir != dir) {
        p.dir = std::move(dir);
        p.names.clear();
        p.next_read_us = 0;
    }
    for (int tries = 0; tries < RecycleTries; ++tries) {
        if (p.names.empty()) {
            if (now_us < p.next_read_us) return {};
            refill(p);
            if (p.names.empty()) {
                p.next_read_us = now_us + RecycleEmptyWaitUs;
                return {};
            }
        }
        const std::string from = join_path(p.dir, p.names.back());
        p.names.pop_back();
        // recycle/ belongs to the mail owner like the rest of the queue; still,
        // only a plain file with no other name is written over. Checked
        // before the rename, so nothing else ever lands in incoming/.
        UniqueFd fd(::open(from.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
            if (fd || errno == ELOOP) ::unlink(from.c_str());  // not ours to reuse; a directory stays
            continue;
        }
        // Only files of the writer's own user: a root writer (local
        // re-queueing forwarded mail) never writes into a file the mail
        // owner could have put there, and leaves those for the others.
        if (st.st_uid != ::geteuid()) continue;
        if (rename_noreplace(from, temp) != 0) continue;  // taken by another writer
        // qmgr empties a file as it recycles it; a crash may leave one full.
        if ((st.st_size == 0 || ::ftruncate(fd.get(), 0) == 0) &&
            ((st.st_mode & 07777) == 0600 || ::fchmod(fd.get(), 0600) == 0))
            return fd;
        ::unlink(temp.c_str());
    }
    return {};
}

}  // namespace

Result<Writer> Writer::create_in(const std::string& queue_dir, std::string_view subdir, int64_t now_us) {
    if (now_us < 0) return Error::temp("create queue file: system clock is before 1970");
    static std::atomic<unsigned long> counter{0};
    const std::string incoming = join_path(queue_dir, subdir);
    Writer w;
    // O_EXCL can only collide with a file left by an earlier process with the
    // same pid; move on to the next counter value then.
    for (int tries = 0; tries < 100 && !w.fd_; ++tries) {
        w.temp_path_ = join_path(incoming, std::string(TempPrefix) + std::to_string(util::cached_pid()) + "-" +
                                               std::to_string(counter.fetch_add(1)));
        if (subdir == Incoming && tries == 0) w.fd_ = claim_recycled(queue_dir, w.temp_path_, now_us);
        if (!w.fd_)
            w.fd_.reset(::open(w.temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!w.fd_ && errno != EEXIST) return sys_error("create", w.temp_path_, errno);
    }
    if (!w.fd_) return sys_error("create", w.temp_path_, EEXIST);
    w.state_ = State::Created;  // from here on the destructor removes the file
    struct stat st {};
    if (::fstat(w.fd_.get(), &st) != 0) return sys_error("fstat", w.temp_path_, errno);
    w.queue_dir_ = queue_dir;
    w.arrival_us_ = now_us;
    w.id_ = make_id(static_cast<uint64_t>(now_us), static_cast<uint64_t>(st.st_ino));
    return w;
}

Result<Writer> Writer::create(const std::string& queue_dir, int64_t now_us) {
    return create_in(queue_dir, Incoming, now_us);
}

Result<Writer> Writer::create_maildrop(const std::string& queue_dir, int64_t now_us) {
    auto w = create_in(queue_dir, Maildrop, now_us);
    if (!w) return w;
    // The final name at once: sendmail cannot fsync maildrop/ (it may not
    // open it), so the one file fsync in commit_maildrop() must cover the
    // name too. The file stays 0600, which pickup ignores, until then.
    const std::string path = join_path(join_path(queue_dir, Maildrop), w->id_);
    if (int err = rename_noreplace(w->temp_path_, path); err != 0)
        return sys_error("rename", w->temp_path_ + " to " + path, err);
    w->temp_path_ = path;
    w->maildrop_ = true;
    return w;
}

Writer::Writer(Writer&& o) noexcept
    : queue_dir_(std::move(o.queue_dir_)),
      temp_path_(std::move(o.temp_path_)),
      id_(std::move(o.id_)),
      fd_(std::move(o.fd_)),
      arrival_us_(o.arrival_us_),
      buf_(std::move(o.buf_)),
      content_size_(o.content_size_),
      state_(std::exchange(o.state_, State::Closed)),
      failed_(o.failed_),
      maildrop_(o.maildrop_) {}

Writer& Writer::operator=(Writer&& o) noexcept {
    if (this != &o) {
        abort();
        queue_dir_ = std::move(o.queue_dir_);
        temp_path_ = std::move(o.temp_path_);
        id_ = std::move(o.id_);
        fd_ = std::move(o.fd_);
        arrival_us_ = o.arrival_us_;
        buf_ = std::move(o.buf_);
        content_size_ = o.content_size_;
        state_ = std::exchange(o.state_, State::Closed);
        failed_ = o.failed_;
        maildrop_ = o.maildrop_;
    }
    return *this;
}

Writer::~Writer() { abort(); }

void Writer::abort() noexcept {
    if (state_ == State::Created || state_ == State::Envelope || state_ == State::Finished) {
        if (::unlink(temp_path_.c_str()) != 0 && errno != ENOENT)
            log::warn("%s: remove %s: %s", id_.c_str(), temp_path_.c_str(), errno_text(errno).c_str());
        state_ = State::Closed;
    }
    fd_.reset();
}

Error Writer::fail_sys(const char* op, const std::string& what, int err) {
    failed_ = true;
    return sys_error(op, what, err);
}

Result<void> Writer::check_usable() const {
    if (failed_) return Error::temp("queue file " + temp_path_ + ": an earlier write failed");
    return {};
}

Result<void> Writer::write_raw(std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_sys("write", temp_path_, errno);
        }
        if (n == 0) return fail_sys("write", temp_path_, EIO);  // cannot happen; do not spin
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

Result<void> Writer::write_record(char type, std::string_view payload) {
    char hdr[RecHeaderSize];
    hdr[0] = type;
    put_u32(hdr + 1, static_cast<uint32_t>(payload.size()));
    if (auto r = write_raw(std::string_view(hdr, sizeof hdr)); !r) return r;
    return write_raw(payload);
}

Result<void> Writer::write_envelope(const Envelope& env) {
    POSTERN_ASSERT(state_ == State::Created);
    if (auto r = check_usable(); !r) return r;
    if (!valid_ret(env.ret)) return Error::perm("queue file " + id_ + ": bad RET value");
    if (!valid_body(env.body)) return Error::perm("queue file " + id_ + ": bad BODY value");

    std::string out;
    auto field = [&](char type, const std::string& value) -> bool {
        if (value.size() > MaxRecordSize) return false;
        append_record(out, type, value);
        return true;
    };
    auto optional = [&](char type, const std::string& value) { return value.empty() || field(type, value); };
    bool ok = field(RecVersion, std::string(FormatVersion)) && field(RecTime, std::to_string(arrival_us_)) &&
              field(RecId, id_) && optional(RecClientName, env.client_name) &&
              optional(RecClientAddr, env.client_addr) && optional(RecHelo, env.helo) &&
              optional(RecProtocol, env.protocol) && optional(RecSaslMethod, env.sasl_method) &&
              optional(RecSaslUsername, env.sasl_username) && optional(RecOrigin, env.origin) &&
              field(RecSender, env.sender) && optional(RecEnvid, env.envid) && optional(RecRet, env.ret) &&
              optional(RecBody, env.body) && (!env.smtputf8 || field(RecSmtputf8, "1")) &&
              field(RecWarned, env.delay_warned ? "1" : "0");
    if (!ok) return Error::perm("queue file " + id_ + ": envelope field too long");

    std::string rcpt;
    for (const auto& r : env.recipients) {
        if (r.address.empty() || r.address.size() > UINT16_MAX ||
            RcptFixedSize + r.address.size() + r.orcpt.size() > MaxRecordSize)
            return Error::perm("queue file " + id_ + ": bad recipient address length");
        if (!valid_status(r.status) || !valid_notify(r.notify))
            return Error::perm("queue file " + id_ + ": bad recipient status or NOTIFY");
        rcpt.clear();
        rcpt += r.status;
        rcpt += static_cast<char>(r.notify);
        rcpt += static_cast<char>(r.address.size() >> 8);
        rcpt += static_cast<char>(r.address.size() & 0xff);
        rcpt += r.address;
        rcpt += r.orcpt;
        append_record(out, RecRecipient, rcpt);
    }
    append_record(out, RecMessage, {});
    if (auto r = write_raw(out); !r) return r;
    state_ = State::Envelope;
    buf_.reserve(ContentChunk);
    return {};
}

Result<void> Writer::append(std::string_view bytes) {
    POSTERN_ASSERT(state_ == State::Envelope);
    if (auto r = check_usable(); !r) return r;
    content_size_ += bytes.size();
    while (!bytes.empty()) {
        if (buf_.empty() && bytes.size() >= ContentChunk) {
            // Whole chunks straight from the caller's bytes: no copy.
            if (auto r = write_record(RecContent, bytes.substr(0, ContentChunk)); !r) return r;
            bytes.remove_prefix(ContentChunk);
            continue;
        }
        std::size_t take = std::min(ContentChunk - buf_.size(), bytes.size());
        buf_.append(bytes.substr(0, take));
        bytes.remove_prefix(take);
        if (buf_.size() == ContentChunk) {
            if (auto r = write_record(RecContent, buf_); !r) return r;
            buf_.clear();
        }
    }
    return {};
}

Result<void> Writer::finish() {
    POSTERN_ASSERT(state_ == State::Envelope);
    if (auto r = check_usable(); !r) return r;
    if (!buf_.empty()) {
        if (auto r = write_record(RecContent, buf_); !r) return r;
        buf_.clear();
    }
    buf_.shrink_to_fit();
    if (auto r = write_record(RecEnd, {}); !r) return r;
    state_ = State::Finished;
    return {};
}

Result<void> Writer::set_owner(uid_t uid, gid_t gid) {
    POSTERN_ASSERT(state_ == State::Created || state_ == State::Envelope || state_ == State::Finished);
    if (auto r = check_usable(); !r) return r;
    if (::fchown(fd_.get(), uid, gid) != 0) return fail_sys("fchown", temp_path_, errno);
    return {};
}

Result<void> Writer::commit_maildrop() {
    POSTERN_ASSERT(state_ == State::Finished && maildrop_);
    if (auto r = check_usable(); !r) return r;
    if (::fchmod(fd_.get(), 0644) != 0) return fail_sys("fchmod", temp_path_, errno);
    // Note: on ext4 (and xfs, btrfs) fsync of the file also commits the
    // journal transaction holding its directory entry (the rename in
    // create_maildrop came earlier), so the name is as durable as the data.
    // On file systems without that property a crash may lose the entry;
    // sendmail cannot do better without read access to maildrop/.
    if (::fsync(fd_.get()) != 0) return fail_sys("fsync", temp_path_, errno);
    if (::close(fd_.release()) != 0 && errno != EINTR) return fail_sys("close", temp_path_, errno);
    state_ = State::Committed;
    return {};
}

Result<void> Writer::commit_file() {
    POSTERN_ASSERT(state_ == State::Finished && !maildrop_);
    if (auto r = check_usable(); !r) return r;
    if (::fsync(fd_.get()) != 0) return fail_sys("fsync", temp_path_, errno);
    // Note: close errors matter on NFS, where write errors may show up only here.
    if (::close(fd_.release()) != 0 && errno != EINTR) return fail_sys("close", temp_path_, errno);
    const std::string path = join_path(incoming_dir(), id_);
    if (int err = rename_noreplace(temp_path_, path); err != 0)
        return fail_sys("rename", temp_path_ + " to " + path, err);
    state_ = State::Committed;
    return {};
}

std::string Writer::incoming_dir() const { return join_path(queue_dir_, Incoming); }

void Writer::uncommit() noexcept {
    // The name may not survive a crash. Report "not queued" and take the
    // file back, so a client that retries does not make a duplicate.
    POSTERN_ASSERT(state_ == State::Committed);
    failed_ = true;
    const std::string path = join_path(incoming_dir(), id_);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        log::warn("%s: remove %s: %s", id_.c_str(), path.c_str(), errno_text(errno).c_str());
    state_ = State::Closed;
}

Result<void> Writer::commit() {
    if (auto r = commit_file(); !r) return r;
    if (auto r = fs::fsync_dir(incoming_dir()); !r) {
        uncommit();
        return r;
    }
    return {};
}

}  // namespace postern::queue
