// NAME
//   queue/queue.hpp - queue IDs, the queue file format, and durable commits
// PURPOSE
//   The only code that knows how a queued message is laid out on disk (STYLE
//   S4): it writes queue files (Writer), makes them durable off the event loop
//   (CommitPool), reads them back strictly (read_envelope, read_content),
//   rewrites a recipient's status in place (set_recipient_status), and moves
//   files between the queue subdirectories. It is not a scheduler (qmgr), not
//   a header parser (mime) and knows nothing about SMTP; callers fill in the
//   Envelope and feed message bytes.
//
//   Queue directory: subdirectories incoming active deferred hold corrupt
//   maildrop, plus defer/ for defer logs and recycle/ for emptied files kept
//   for reuse (made by master; make_dirs is for tests). Daemons run chrooted in
//   it, so every call takes the queue directory path, which may be "/" or ".".
//
//   Recycling: qmgr does not unlink a finished queue file but renames it into
//   recycle/ and empties it (retire), up to queue_recycle_limit files; the
//   next Writer renames one of them into incoming/ and writes over it instead
//   of creating a file. Why: on ext4 without a journal, allocating an inode
//   skips every inode of the block group freed in the last minute (six while
//   its inode table block is dirty), and
//   checks each one in the buffer cache. A queue that frees one inode per
//   message makes each new file (queue files, and the Maildir files local
//   writes near them) cost time proportional to the recent message rate: a
//   quarter of smtpd's and a third of local's CPU in bench/e2e_delivery.py.
//   A recycled file keeps its inode, so nothing is freed. Files in recycle/
//   hold no mail (they are truncated; a writer truncates again) and are
//   neither listed nor scanned; deleting them is always safe.
//
//   Queue ID: 11 characters of the arrival time in microseconds, base 32, fixed
//   width, then the inode number of the file in the same base 32, 1..13
//   characters without leading zeros. Alphabet (ASCII-ascending, no vowels):
//   "0123456789BCDFGHJKLMNPQRSTVWXYZ_". So IDs sort by arrival time as plain
//   strings, are safe file names, and are unique: the inode is unique among
//   existing files of the file system and stays with the file across rename.
//   Note: a deleted message's inode may be reused; an ID can repeat only if a
//   message with that ID came and went within the same microsecond.
//
// FILE FORMAT (version 1)
//   A sequence of records: 1 byte type, 4 bytes big-endian payload length,
//   payload. The version record comes first and the end record last; a file
//   without its end record is incomplete and never delivered.
//     'V' "1"                     version; always the first record
//     'T' decimal microseconds    arrival time (Unix epoch)
//     'I' queue ID
//     'c' client name   'a' client address   'h' HELO/EHLO name
//     'p' protocol (SMTP ESMTP ESMTPS ESMTPSA local)
//     'm' SASL method   'u' SASL username    'o' origin ("smtpd", "pickup uid=1000")
//     'S' envelope sender (empty payload: null sender <>)
//     'e' DSN ENVID     'r' DSN RET: FULL or HDRS   'b' BODY: 7BIT 8BITMIME BINARYMIME
//     'U' "1"           SMTPUTF8 was given
//     'W' "0" or "1"    a delay notice was sent (rewritten in place by
//                       set_delay_warned; written by every writer, optional
//                       for the reader)
//     'R' recipient: status byte ('P' pending, 'D' done, 'F' failed), NOTIFY
//         byte (bits 1 never, 2 success, 4 failure, 8 delay; 0 = not given;
//         never is not combined with others), 2-byte big-endian address length,
//         address (not empty), then the rest of the payload is ORCPT (may be empty).
//         The status byte is rewritten in place (set_recipient_status).
//     'M' (empty)                 start of message content
//     'B' raw message bytes       as received after dot-unstuffing, CRLF line
//                                 endings; the writer makes chunks of <= 64 KiB
//     'E' (empty)                 end record: the file is complete
//   Records c a h p m u o e r b U W are optional (absent = empty/false); V T I S
//   M E are required; all but R and B appear at most once. Envelope records
//   come before M, B records between M and E, nothing after E.
//
// DEFER LOG FORMAT
//   defer/<ID> tells, for each recipient still waiting, why the last attempt
//   failed. qmgr replaces it after each attempt, `postern queue list` shows it,
//   deleting the message removes it. It is informational: never fsynced, and
//   losing it loses no mail. Text: the line "postern-defer-log 1", then one
//   line per entry, five fields separated by TAB, ended by LF:
//     TIME DSN ADDRESS RELAY REASON
//   TIME decimal microseconds (Unix epoch, no leading zeros); DSN "d.d.d"
//   (class 2, 4 or 5); ADDRESS not empty; RELAY may be empty. In ADDRESS,
//   RELAY and REASON every byte below 0x20, 0x7f and '\' is written as \xNN
//   (two lower-case hex digits) and nothing else is; other bytes (UTF-8) are
//   as they are. A REASON longer than MaxDeferReason bytes (unescaped) is cut
//   by the writer and ends in "..."; readers refuse longer ones. The whole
//   file is at most MaxDeferLogSize bytes.
//
// SYNOPSIS
//   auto w = queue::Writer::create(queue_dir, now_us);   // incoming/.tmp-PID-N
//   w->write_envelope(env);  w->append(bytes) ...;  w->finish();
//   w->set_owner(uid, gid);                            // root writers only
//   pool.submit(std::make_unique<queue::Writer>(std::move(*w)), [](Result<std::string> id) {...});
//   auto env = queue::read_envelope(fd, &content_off);  queue::read_content(fd, content_off, sink);
//   queue::set_recipient_status(fd, env->recipients[0], 'D');
//   queue::move_to(queue_dir, id, "incoming", "active");
//   queue::write_defer_log(queue_dir, id, entries);  auto d = queue::read_defer_log(queue_dir, id);
//   queue::list_queue(queue_dir, queue::ListFormat::Text, write_out, warn);   // mailq
// ERRORS
//   I/O failures (including a full disk) are Error::temp naming the operation,
//   the path and strerror. A malformed file is Error::perm("corrupt queue
//   file: <what> at offset N"); callers move it to corrupt/. Envelope values
//   that cannot be stored (bad RET/BODY/NOTIFY/status, oversized fields) are
//   Error::perm. Calling Writer methods out of order is a bug (assert).
//   A malformed or oversized defer log is Error::perm("corrupt defer log ...");
//   a missing one is an empty list. list_queue reports each unreadable file
//   through its warn callback and leaves it out; it fails only when its
//   output callback fails.
// SECURITY
//   Readers trust nothing in the file: every length is checked against the
//   file size (from fstat) before anything is allocated, and a single record
//   is capped at 64 MiB. IDs given to move_to are checked with valid_id, so
//   they cannot name other paths. Files are created 0600 with O_EXCL and
//   O_NOFOLLOW. The reader never crashes on any input (fuzz/queue_reader_fuzz.cpp).
//   Defer logs are read by root (`postern queue list`) from a directory the
//   mail owner controls: opened relative to defer/ (itself not a symlink),
//   with O_NOFOLLOW and O_NONBLOCK, regular files only, size checked first.
//   Listings escape control characters in client-supplied envelope text.
// SEE ALSO
//   fs/fs.hpp, event/event.hpp, DESIGN.md (Queue), Postfix rec_type.h
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "event/event.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace postern::queue {

// ---- Queue IDs

inline constexpr std::string_view IdAlphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZ_";
inline constexpr std::size_t IdTimeChars = 11;       // 55 bits: good until the year 3111
inline constexpr std::size_t IdMaxInodeChars = 13;   // 64 bits

// time_us must be below 2^55 (a bug otherwise).
std::string make_id(uint64_t time_us, uint64_t inode);
bool valid_id(std::string_view id) noexcept;
// The arrival time encoded in a valid ID; nullopt if the ID is not valid.
std::optional<uint64_t> id_time_us(std::string_view id) noexcept;

// ---- Directories

inline constexpr std::string_view Incoming = "incoming";
inline constexpr std::string_view Active = "active";
inline constexpr std::string_view Deferred = "deferred";
inline constexpr std::string_view Hold = "hold";
inline constexpr std::string_view Corrupt = "corrupt";
inline constexpr std::string_view Maildrop = "maildrop";
// Per-message defer logs (why each recipient is still waiting), not queue files.
inline constexpr std::string_view DeferLog = "defer";
// Emptied files waiting to be reused by a Writer (see Recycling above).
inline constexpr std::string_view Recycle = "recycle";

// Creates the queue directory and any missing subdirectory, mode 0700.
// Existing directories are left as they are. For tests; master sets up the
// real queue as root.
Result<void> make_dirs(const std::string& queue_dir);

// ---- Recycling (see the top of this file)

// Retires the queue file SUBDIR/ID whose recipients are all done. With
// recycle, renames it to recycle/ID and empties it through fd (the caller's
// open descriptor of it, or -1); without, or when that rename fails, unlinks
// it. Returns 0, or the unlink's errno (ENOENT: the file is not there, e.g.
// moved by `postern queue` meanwhile).
int retire(const std::string& queue_dir, std::string_view subdir, const std::string& id, int fd,
           bool recycle) noexcept;
// Number of entries in recycle/ (0 when it cannot be read).
std::size_t count_recycled(const std::string& queue_dir) noexcept;

// ---- Envelope

inline constexpr unsigned NotifyNever = 1, NotifySuccess = 2, NotifyFailure = 4, NotifyDelay = 8;
inline constexpr char StatusPending = 'P', StatusDone = 'D', StatusFailed = 'F';
inline constexpr std::size_t ContentChunk = 64 * 1024;      // 'B' record size the writer makes
inline constexpr std::size_t MaxRecordSize = 64u << 20;     // any record, reader and writer

struct Recipient {
    std::string address;
    std::string orcpt;
    unsigned notify = 0;         // Notify* bits, 0 = NOTIFY not given
    char status = StatusPending;
    uint64_t status_offset = 0;  // set by read_envelope: file offset of the status byte
};

struct Envelope {
    int64_t arrival_us = 0;  // set by read_envelope; Writer uses its own
    std::string queue_id;    // set by read_envelope; Writer uses its own
    std::string client_name, client_addr, helo, protocol, sasl_method, sasl_username, origin;
    std::string sender;      // empty = null sender
    std::string envid, ret, body;
    bool smtputf8 = false;
    bool delay_warned = false;       // a delay notice went to the sender
    uint64_t warned_offset = 0;      // set by read_envelope: offset of the 'W' flag (0 = none)
    std::vector<Recipient> recipients;
};

// ---- Writing

// One new queue file, from creation to commit. Order: create, write_envelope
// once, append any number of times, finish, then commit (usually through a
// CommitPool). Until commit succeeds the file is "incoming/.tmp-PID-N"; abort()
// or the destructor removes it. After a failed write every further call
// returns an error. Not thread-safe; it may be handed to another thread.
class Writer {
public:
    // Creates the temp file (O_CREAT|O_EXCL|O_NOFOLLOW, 0600) and assigns the
    // ID from now_us and the file's inode. When recycle/ has a file it is
    // renamed to the temp name and truncated instead (a regular file with one
    // link, or it is removed and the next one tried); recycle/ is read at most
    // once a second while it is empty. Only files owned by the writer's euid.
    static Result<Writer> create(const std::string& queue_dir, int64_t now_us);
    // For sendmail(1) (setgid, cannot open maildrop/ to fsync it): creates
    // maildrop/.tmp-PID-N (0600) and at once renames it to maildrop/<ID>, so
    // the file has its final name while it is written; pickup ignores it
    // until commit_maildrop() makes it 0644. Commit with commit_maildrop()
    // only; until then abort() or the destructor removes it.
    static Result<Writer> create_maildrop(const std::string& queue_dir, int64_t now_us);

    Writer(Writer&& o) noexcept;
    Writer& operator=(Writer&& o) noexcept;
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer();

    const std::string& id() const noexcept { return id_; }
    int64_t arrival_us() const noexcept { return arrival_us_; }

    // Writes V T I, the session records, S e r b U, every R, then M.
    // env.queue_id and env.arrival_us are ignored: the writer's are stored.
    Result<void> write_envelope(const Envelope& env);
    // Message bytes, buffered up to ContentChunk and written as 'B' records.
    // Never fsyncs (it runs on the event loop).
    Result<void> append(std::string_view bytes);
    uint64_t content_size() const noexcept { return content_size_; }
    // Writes the buffered bytes and the end record.
    Result<void> finish();
    // fchown()s the temp file, for a writer running as root (the local agent
    // re-queueing forwarded mail) whose file the queue owner must be able to
    // update. Any time before commit; needs CAP_CHOWN.
    Result<void> set_owner(uid_t uid, gid_t gid);
    // BLOCKING: fsync the file, rename it to incoming/<ID> (never replacing a
    // file), fsync incoming/. Meant for a pool thread. If the directory fsync
    // fails the file is removed again, so an error always means "not queued".
    Result<void> commit();
    // commit() in two steps, so a pool can share one directory fsync among
    // many files: commit_file() fsyncs and renames; after a failed fsync of
    // incoming_dir(), uncommit() takes the file back.
    Result<void> commit_file();
    std::string incoming_dir() const;
    void uncommit() noexcept;
    // BLOCKING, maildrop writers only: fchmod 0644 (the "complete" mark for
    // pickup), then fsync the file. No directory fsync (see writer.cpp).
    Result<void> commit_maildrop();
    bool committed() const noexcept { return state_ == State::Committed; }
    // Removes the temp file. A no-op after a successful commit.
    void abort() noexcept;

private:
    enum class State { Created, Envelope, Finished, Committed, Closed };
    Writer() = default;
    static Result<Writer> create_in(const std::string& queue_dir, std::string_view subdir, int64_t now_us);
    Result<void> write_raw(std::string_view bytes);
    Result<void> write_record(char type, std::string_view payload);
    Result<void> check_usable() const;
    Error fail_sys(const char* op, const std::string& what, int err);  // also marks the writer failed

    std::string queue_dir_;
    std::string temp_path_;
    std::string id_;
    UniqueFd fd_;
    int64_t arrival_us_ = 0;
    std::string buf_;
    uint64_t content_size_ = 0;
    State state_ = State::Closed;
    bool failed_ = false;
    bool maildrop_ = false;
};

// Commits Writers on worker threads and reports back on the event loop.
// Why: fsync is slow and blocks. On this disk one fsyncing thread does about
// 1,800 commits/s and 8 concurrent ones about 3,500, so the event loop never
// fsyncs and several commits run at once (the file system batches them).
// Construct, submit and destroy on the loop thread.
inline constexpr int DefaultCommitThreads = 8;

class CommitPool {
public:
    using Done = std::function<void(Result<std::string>)>;

    CommitPool(event::Base& base, int threads = DefaultCommitThreads);
    CommitPool(const CommitPool&) = delete;
    CommitPool& operator=(const CommitPool&) = delete;
    // Stops accepting work, finishes queued commits, joins the threads, then
    // runs the done callbacks not yet delivered (on the calling thread, which
    // must be the loop thread): a committed message is always reported.
    ~CommitPool();

    // w must be finished. done gets the queue ID or the commit error and is
    // called on the loop thread, from the event loop, never inside submit().
    // done must not destroy the pool (call base.exit() and destroy it after).
    void submit(std::unique_ptr<Writer> w, Done done);

private:
    struct Job {
        std::unique_ptr<Writer> writer;
        Done done;
    };
    struct Completion {
        Done done;
        Result<std::string> result;
    };
    void worker() noexcept;
    // Group commit: one fsync of incoming/ covers every rename finished
    // before it started; each caller waits until its rename is covered.
    Result<void> sync_dir(const std::string& dir);
    void deliver() noexcept;
    void stop_and_join() noexcept;

    std::thread::id loop_thread_;
    UniqueFd wake_fd_;  // eventfd: workers -> loop
    event::Event wake_ev_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> jobs_;             // guarded by mu_
    std::vector<Completion> results_;  // guarded by mu_
    // Directory group commit state, guarded by sync_mu_.
    std::mutex sync_mu_;
    std::condition_variable sync_cv_;
    std::uint64_t renamed_ = 0, synced_ = 0;
    bool syncing_ = false;
    struct FailedRound {
        std::uint64_t lo, hi;
        Error error;
    };
    std::vector<FailedRound> failed_rounds_;
    bool stopping_ = false;            // guarded by mu_
    std::vector<std::thread> threads_;
};

// ---- Reading

// Reads and checks the whole file structure (V first, E last, every length)
// and returns the envelope. content_offset_out gets the offset of the first
// record after 'M', for read_content.
Result<Envelope> read_envelope(int fd, uint64_t* content_offset_out = nullptr);

// Calls sink with each content chunk in order, from content_offset to the end
// record. A sink error stops the walk and is returned as it is.
Result<void> read_content(int fd, uint64_t content_offset,
                          const std::function<Result<void>(std::string_view)>& sink);

// The same walk one chunk at a time, for event loops that send the content
// as the peer takes it (the smtp agent). fd must stay open while it is used.
class ContentReader {
public:
    static Result<ContentReader> open(int fd, uint64_t content_offset);
    // The next chunk; nullopt after the end record. Errors as read_content.
    Result<std::optional<std::string>> next();
    // Bytes from the content offset to the end of the file: an upper bound
    // of the content size (record headers included), for SMTP SIZE=.
    uint64_t size_estimate() const noexcept { return size_ - start_; }

private:
    ContentReader(int fd, uint64_t size, uint64_t start) : fd_(fd), size_(size), start_(start), off_(start) {}
    int fd_;
    uint64_t size_, start_, off_;
    bool done_ = false;
};

// Marks the message's delay notice as sent ('W' flag to "1", in place, then
// fdatasync). Error::perm if the file has no such record (older files).
Result<void> set_delay_warned(int fd, Envelope& env);

// Rewrites r's status byte in place at r.status_offset, then fdatasync. First
// checks that an 'R' record for r.address with a valid status is there, so a
// stale or wrong offset is refused (Error::perm) instead of damaging the file.
Result<void> set_recipient_status(int fd, const Recipient& r, char status);

// ---- Housekeeping

// Removes incoming/.tmp-* left by a crash; returns how many. Only while no
// Writer can be running (master at start-up).
Result<std::size_t> remove_stale_temp_files(const std::string& queue_dir);

// Renames from_subdir/<id> to to_subdir/<id> (never replacing a file) and
// fsyncs to_subdir. Both must be queue subdirectories and id must be valid.
Result<void> move_to(const std::string& queue_dir, const std::string& id, std::string_view from_subdir,
                     std::string_view to_subdir);

// ---- Defer logs (format above)

struct DeferEntry {
    std::string address;  // the recipient as in the queue file
    std::string dsn;      // "4.4.1"
    std::string reason;   // "connect to mx.example[192.0.2.1]:25: Connection refused"
    std::string relay;    // "mx.example[192.0.2.1]:25", or empty
    int64_t time_us = 0;  // when the attempt ended
};

inline constexpr std::size_t MaxDeferLogSize = 1u << 20;
inline constexpr std::size_t MaxDeferReason = 1000;

// Replaces defer/<id> with entries, all or nothing (temp file in defer/,
// then rename; mode 0600; no fsync). An empty list removes the log. One
// writer per queue (qmgr): a temp file of the same ID is taken for a crash
// leftover and removed. Error::perm for an invalid ID, an entry with an empty
// address, a malformed DSN code or a negative time, or more than
// MaxDeferLogSize bytes of text; Error::temp for I/O failures.
Result<void> write_defer_log(const std::string& queue_dir, std::string_view id,
                             const std::vector<DeferEntry>& entries);
// The entries in the order written. No log (or no defer/ at all): empty.
Result<std::vector<DeferEntry>> read_defer_log(const std::string& queue_dir, std::string_view id);
// Removes defer/<id> (and a crash's temp file for it); a missing log or an
// invalid ID is not an error. Best effort: the log is informational.
void remove_defer_log(const std::string& queue_dir, std::string_view id) noexcept;
// The file's text and back, without I/O (the two above use them; for tests
// and fuzzing). The text form is canonical: a text that parses formats back
// to itself. Errors as for write_defer_log and read_defer_log.
Result<std::string> format_defer_log(const std::vector<DeferEntry>& entries);
Result<std::vector<DeferEntry>> parse_defer_log(std::string_view text);

// ---- Listing (mailq, `postern queue list`, showq)

// Text: Postfix's postqueue -p layout (queue ID with '*' for active/ and '!'
// for hold/, size, arrival time, sender, each pending recipient below its
// defer reason, the "-- N Kbytes in N Requests." trailer; "Mail queue is
// empty"). Json: one object per message per line, like postqueue -j.
enum class ListFormat { Text, Json };
using ListSink = std::function<Result<void>(std::string_view)>;
using ListWarn = std::function<void(const std::string&)>;

// Reads incoming/ active/ deferred/ hold/ (and defer/ logs) of queue_dir and
// hands the listing to out, in pieces (at least one per message), sorted by
// queue ID. warn gets "PATH: problem" for each file that cannot be read; the
// listing goes on without it. Stops at out's first error and returns it.
// Note: holds every envelope in memory while sorting, not message content.
Result<void> list_queue(const std::string& queue_dir, ListFormat format, const ListSink& out, const ListWarn& warn);

}  // namespace postern::queue
