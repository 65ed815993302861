// NAME
//   local/mbox.hpp - appending a message to an mbox file
// PURPOSE
//   The classic UNIX mailbox (/var/mail/user, ~/mbox, or a /file named in an
//   alias or .forward): take the locks (fcntl and/or a "path.lock" dot lock,
//   per mailbox_delivery_lock, retried for a bounded time), write a "From "
//   line, the message with ">From " quoting and LF line ends, and a blank
//   line, fsync; on any failure cut the file back to its old size, so a
//   mailbox never holds half a message. Called in a child that already runs
//   as the mailbox owner. Not Maildir (local/maildir.hpp), not the message
//   conversion (local/message.hpp).
// SYNOPSIS
//   auto o = lock_options(params.mailbox_delivery_lock);   // Result<MboxOptions>
//   o->size_limit = params.mailbox_size_limit;
//   Status s = append_mbox("/var/mail/bob", bob_uid, *o, from_line(sender, now), writer, "mailbox");
// ERRORS
//   A Status: sent "delivered to WHAT"; mailbox_size_limit or EFBIG -> 5.2.2
//   bounced; ENOSPC/EDQUOT -> 4.2.2 deferred; a lock that stays busy, a file
//   owned by someone else, a symlink or hard link, other I/O errors -> 4.2.0
//   deferred.
// SECURITY
//   The file is opened with O_NOFOLLOW and must be a regular file with one
//   link (fs::safe_open), owned by the expected uid. Runs with the owner's
//   rights only. The dot lock is created O_EXCL|O_NOFOLLOW and removed only
//   by whoever made it (or when stale, older than stale_lock).
// SEE ALSO
//   local/message.hpp (LfWriter), fs/fs.hpp (FileLock), mbox(5), Postfix local(8)
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "local/message.hpp"
#include "local/status.hpp"

namespace postern::local {

struct MboxOptions {
    bool fcntl_lock = true;
    bool dotlock = true;
    bool dotlock_may_fail = false;  // e.g. a file in a directory the user cannot write
    std::uint64_t size_limit = 0;   // bytes the file may reach; 0 = no limit
    std::uint64_t size_hint = 0;    // expected size of the message, checked before writing
    int lock_tries = 20;
    std::chrono::milliseconds lock_pause{500};
    std::chrono::seconds stale_lock{300};
};

// From mailbox_delivery_lock: a list of "fcntl", "dotlock" (Error::config otherwise).
Result<MboxOptions> lock_options(std::string_view spec);

// "From SENDER Www Mmm dd hh:mm:ss yyyy\n" in local time; <> is MAILER-DAEMON.
std::string from_line(std::string_view sender, std::int64_t now_us);

// Writes the message through the sink it is given (LF text, ">From " quoted).
using Producer = std::function<Result<void>(const Sink&)>;

// owner: the uid the file must belong to, or AnyOwner (files named in
// aliases: the kernel's permission check as the runner is enough).
inline constexpr uid_t AnyOwner = static_cast<uid_t>(-1);
Status append_mbox(const std::string& path, uid_t owner, const MboxOptions& o, std::string_view from,
                   const Producer& produce, std::string_view what);

}  // namespace postern::local
