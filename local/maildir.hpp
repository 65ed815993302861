// NAME
//   local/maildir.hpp - messages into a Maildir, as the local agent does it
// PURPOSE
//   The glue between lib/mailbox and a delivery: make sure the Maildir exists,
//   write each message through its Producer, commit, and turn errors into a
//   Status. Several messages for one Maildir (a batch of requests) share one
//   fsync of new/ (mailbox group commit). Called in a child already running
//   as the mailbox owner. Not the Maildir mechanics themselves
//   (mailbox/mailbox.hpp), not the grouping of a batch (local/batch.hpp).
// SYNOPSIS
//   Status s = deliver_maildir(home + "/Maildir", hostname, now_us, producer, "maildir");
//   std::vector<Status> v = deliver_maildir_batch(maildir, hostname, now_us, {{p1, "maildir"}, {p2, "maildir"}});
// ERRORS
//   A Status per message: sent "delivered to WHAT"; a full disk or quota
//   4.2.2; a symlink or non-directory in the way and other failures 4.2.0
//   (deferred: a broken mailbox is fixed by a person, the mail waits
//   meanwhile). A Maildir that cannot be made or opened fails every message;
//   a message that cannot be written fails alone; a failed fsync of new/
//   takes every message of the batch back out of new/ and fails them all, so
//   "sent" always means durably in new/.
// SECURITY
//   See mailbox/mailbox.hpp: no symlinks inside the Maildir, O_EXCL files.
// SEE ALSO
//   mailbox/mailbox.hpp, local/mbox.hpp, local/batch.hpp
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "local/mbox.hpp"
#include "local/status.hpp"

namespace postern::local {

Status deliver_maildir(const std::string& maildir, std::string_view hostname, std::int64_t now_us,
                       const Producer& produce, std::string_view what);

struct MaildirMessage {
    Producer produce;
    std::string what;  // for "delivered to WHAT"
};

// One Status per message, in order.
std::vector<Status> deliver_maildir_batch(const std::string& maildir, std::string_view hostname, std::int64_t now_us,
                                          const std::vector<MaildirMessage>& messages);

}  // namespace postern::local
