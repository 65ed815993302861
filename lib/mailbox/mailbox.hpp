// NAME
//   mailbox/mailbox.hpp - Maildir delivery
// PURPOSE
//   What the local delivery agent calls, after it has dropped to the
//   recipient's uid, to put one message into a Maildir: create the directory
//   layout (tmp/ new/ cur/), write the message to a uniquely named file in
//   tmp/, make it durable, then move it into new/ under its final name
//   `<sec>.M<usec>P<pid>Q<counter>.<host>,S=<size>` (the common Maildir
//   convention plus Dovecot's size field). Also the Maildir clean-up of
//   forgotten tmp/ files.
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
// SECURITY
//   The maildir path comes from trusted configuration, but the directories
//   inside it belong to the recipient: the maildir itself and tmp/ new/ cur/
//   must be real directories (O_NOFOLLOW), and all later work goes through
//   directory descriptors opened once in begin(), so renaming or replacing a
//   directory mid-delivery cannot redirect the file. The tmp/ file is created
//   O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC with mode 0600. Components above the
//   maildir (the home directory) are trusted. The host name is sanitized for
//   the file name: '/' -> "\057", ':' -> "\072", '\' and bytes outside
//   0x21..0x7e likewise as \ooo; it is cut to at most 64 bytes, "" becomes
//   "localhost".
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

// One message on its way into a Maildir. Move-only; if it is destroyed (or
// abort()ed) before commit() succeeds, the tmp/ file is removed.
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

    // Removes the tmp/ file unless committed. Idempotent.
    void abort() noexcept;

    // The base name in tmp/ (without ",S=<size>"); "" once moved from.
    const std::string& name() const noexcept { return name_; }
    // Bytes appended so far.
    uint64_t size() const noexcept { return size_; }

private:
    Delivery() = default;
    Result<void> flush();
    Error fail(Error e) noexcept;

    std::string maildir_;  // as given, trailing '/' removed
    std::string name_;     // base name in tmp/
    UniqueFd tmp_dir_;
    UniqueFd new_dir_;
    UniqueFd file_;
    std::string buf_;
    uint64_t size_ = 0;
    bool open_ = false;    // the tmp/ file exists and is ours to remove
};

// Removes regular files in maildir/tmp whose access and modification times
// are both more than max_age before now_us (the Maildir convention: a
// delivery that died part-way leaves its file behind). Returns how many were
// removed. Files that vanish meanwhile are not counted and not an error.
Result<std::size_t> remove_stale_tmp(const std::string& maildir, int64_t now_us,
                                     std::chrono::seconds max_age = std::chrono::hours(36));

}  // namespace postern::mailbox
