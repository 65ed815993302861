// NAME
//   mailbox/mailbox.hpp - Maildir delivery
// PURPOSE
//   What the local delivery agent calls, after it has dropped to the
//   recipient's uid, to put one message into a Maildir: create the directory
//   layout (tmp/ new/ cur/), write the message to a uniquely named file in
//   tmp/, make it durable, then move it into new/ under its final name
//   `<sec>.M<usec>P<pid>Q<counter>.<host>,S=<size>` (the common Maildir
//   convention plus Dovecot's size field). For several messages into one
//   Maildir (the local agent's batches) there is a group commit like
//   lib/queue's: open the Maildir once, commit_file() each message (fsync the
//   file, move it into new/), then one sync_new() (fsync of new/) makes them
//   all durable; if that fails, uncommit() each one. Also the Maildir
//   clean-up of forgotten tmp/ files.
//   Not for: mbox or pipe delivery, aliases/.forward, message rewriting (the
//   caller passes the message in its final form, with Return-Path and
//   Delivered-To already added), size limits (the caller enforces
//   message_size_limit; quotas come from the file system as EDQUOT), reading
//   or flag changes (cur/, ":2,FLAGS"). Not IMAP either.
//   Note: the IMAP UID index (uidvalidity + uid per file name, like
//   dovecot-uidlist) will live in this module later; delivery only ever
//   writes new/, which the index will scan, so nothing here has to change.
// SYNOPSIS
//   if (auto r = mailbox::ensure_maildir(home + "/Maildir"); !r) defer(r.error());
//   auto d = mailbox::Delivery::begin(home + "/Maildir", myhostname, now_us);
//   if (!d) defer(d.error());
//   d->append(headers);  d->append(body);        // buffered, any number of calls
//   auto path = d->commit();                     // Result<std::string>: .../new/<name>
//   auto md = mailbox::Maildir::open(path);      // group commit: d = md->begin(host, now_us) ...
//   d->commit_file() for each;  if (!md->sync_new()) each d->uncommit();
//   auto n = mailbox::remove_stale_tmp(maildir, now_us);   // default: older than 36 h
// ERRORS
//   Results, never exceptions or aborts. Error::temp for disk and I/O trouble
//   (the text names the path and the strerror text, so a full disk says
//   "No space left on device" and a quota "Disk quota exceeded"), and for a
//   missing maildir or subdirectory. Error::perm when a maildir path or one of
//   tmp/ new/ cur/ exists but is a symlink or not a directory: retrying will
//   not help until someone fixes it. After any failure, append() and commit()
//   keep failing and the tmp/ file is gone. commit() returns an error only if
//   the message is not (durably) in new/: on a failed directory fsync the new/
//   entry is removed again, so an error always means "not delivered".
//   commit_file() likewise leaves nothing behind when it fails; when it
//   succeeds the file is in new/ (visible, not yet durable) and stays there,
//   whatever happens to the Delivery, until uncommit(): the caller must
//   follow with sync_new() and, if that fails, uncommit() (which only warns
//   in the log if the file cannot be removed).
// SECURITY
//   The maildir path comes from trusted configuration, but the directories
//   inside it belong to the recipient: the maildir itself and tmp/ new/ cur/
//   must be real directories (O_NOFOLLOW), and all later work goes through
//   directory descriptors opened once in begin() or Maildir::open() (a
//   Maildir's deliveries use duplicates of its descriptors), so renaming or
//   replacing a directory mid-delivery cannot redirect the file. The tmp/
//   file is created O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC with mode 0600.
//   Components above the maildir (the home directory) are trusted. The host
//   name is sanitized for the file name: '/' -> "\057", ':' -> "\072",
//   '\' and bytes outside 0x21..0x7e likewise as \ooo; it is cut to at most
//   64 bytes, "" becomes "localhost".
//   Message bytes are written as given (8-bit and NUL included).
// SEE ALSO
//   fs/fs.hpp, https://cr.yp.to/proto/maildir.html, Dovecot maildir-save.c,
//   Postfix local(8) mail_copy/maildir.c
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace postern::mailbox {

// Creates path (missing parents get mode less the umask), then path/tmp,
// path/new and path/cur. The four directories get exactly mode when this call
// creates them; existing ones are left as they are. Each of the four must end up a real directory (Error::perm if a
// symlink or something else is in the way). New directories are fsync()ed
// into their parent.
Result<void> ensure_maildir(const std::string& path, mode_t mode = 0700);

class Maildir;

// One message on its way into a Maildir. Move-only; if it is destroyed (or
// abort()ed) before commit() or commit_file() succeeds, the tmp/ file is
// removed.
class Delivery {
public:
    // Opens maildir, maildir/tmp and maildir/new (no symlinks; none is
    // created: call ensure_maildir first) and creates the tmp/ file. now_us is
    // the delivery time in microseconds since the epoch (injected for tests).
    static Result<Delivery> begin(const std::string& maildir, std::string_view hostname, int64_t now_us);

    Delivery(Delivery&& o) noexcept;
    Delivery& operator=(Delivery&& o) noexcept;
    Delivery(const Delivery&) = delete;
    Delivery& operator=(const Delivery&) = delete;
    ~Delivery();

    // Appends bytes to the message (buffered; large pieces go straight to the
    // file). On failure the delivery is aborted.
    Result<void> append(std::string_view bytes);

    // Flush, fsync, close (close errors count: NFS reports write errors
    // there), link tmp/<name> to new/<name>,S=<size> (rename on file systems
    // without hard links), unlink tmp/<name>, fsync new/. Returns the final
    // path. Any failure aborts the delivery.
    Result<std::string> commit();

    // commit() without the fsync of new/, for a group commit: flush, fsync,
    // close, move to new/<name>,S=<size>; returns that path. The message is
    // visible but not durable until a Maildir::sync_new() (or any fsync of
    // new/) that starts after this returns. Any failure aborts the delivery.
    Result<std::string> commit_file();

    // Takes a committed message back out of new/ (after sync_new() failed,
    // so that the caller can report "not delivered"). A no-op unless
    // committed; afterwards committed() is false. A failed unlink is only
    // logged: there is nothing better to do.
    void uncommit() noexcept;
    bool committed() const noexcept { return committed_; }

    // Removes the tmp/ file unless committed. Idempotent.
    void abort() noexcept;

    // The base name in tmp/ (without ",S=<size>"); "" once moved from.
    const std::string& name() const noexcept { return name_; }
    // Bytes appended so far.
    uint64_t size() const noexcept { return size_; }

private:
    friend class Maildir;
    Delivery() = default;
    // Creates the tmp/ file; takes the directory descriptors.
    static Result<Delivery> create(std::string maildir, UniqueFd tmp_dir, UniqueFd new_dir,
                                   std::string_view hostname, int64_t now_us);
    Result<void> flush();
    Error fail(Error e) noexcept;

    std::string maildir_;     // as given, trailing '/' removed
    std::string name_;        // base name in tmp/
    std::string final_name_;  // base name in new/, once committed
    UniqueFd tmp_dir_;
    UniqueFd new_dir_;
    UniqueFd file_;
    std::string buf_;
    uint64_t size_ = 0;
    bool open_ = false;       // the tmp/ file exists and is ours to remove
    bool committed_ = false;  // new/<final_name_> is ours to take back
};

// A Maildir opened once (path, tmp/ and new/; no symlinks, nothing created:
// call ensure_maildir first) for several deliveries that share one fsync of
// new/ (group commit). Move-only.
class Maildir {
public:
    static Result<Maildir> open(const std::string& path);

    // A new message, as Delivery::begin, on duplicates of this Maildir's
    // directory descriptors (it may outlive the Maildir).
    Result<Delivery> begin(std::string_view hostname, int64_t now_us) const;

    // fsync of new/: makes durable every commit_file() into this Maildir that
    // returned before the call. On failure the caller must uncommit() them
    // (an error here means none of them may be reported delivered).
    Result<void> sync_new() const;

    // As given, trailing '/' removed.
    const std::string& path() const noexcept { return path_; }

private:
    friend class Delivery;  // Delivery::begin takes a temporary Maildir's descriptors
    Maildir() = default;
    std::string path_;
    UniqueFd tmp_dir_;
    UniqueFd new_dir_;
};

// Removes regular files in maildir/tmp whose access and modification times
// are both more than max_age before now_us (the Maildir convention: a
// delivery that died part-way leaves its file behind). Returns how many were
// removed. Files that vanish meanwhile are not counted and not an error.
Result<std::size_t> remove_stale_tmp(const std::string& maildir, int64_t now_us,
                                     std::chrono::seconds max_age = std::chrono::hours(36));

}  // namespace postern::mailbox
