// NAME
//   local/resubmit.hpp - forwarding: a new queue file for addresses elsewhere
// PURPOSE
//   When an alias or .forward names addresses in other domains, the agent
//   does not talk SMTP itself: it writes one new queue file holding all of
//   them (like Postfix handing mail back to cleanup), with "Delivered-To:
//   RCPT" in front of the original message so a loop back to us is caught,
//   makes it durable, gives it to mail_owner (qmgr updates it), and wakes
//   qmgr. Not the expansion (local/aliases.hpp).
// SYNOPSIS
//   auto id = resubmit({.queue_dir = q, .uid = owner_uid, .gid = owner_gid}, req, rcpt,
//                      sender, {"a@remote.example"}, "list@example.com", msg, now_us);
//   wake_qmgr(queue_dir);
// ERRORS
//   Error::temp (or perm, from lib/queue) when the file cannot be written;
//   nothing is left queued then.
// SECURITY
//   Runs as root in the agent: the file is created O_EXCL|O_NOFOLLOW in
//   incoming/ by lib/queue and chowned before it becomes visible.
// SEE ALSO
//   queue/queue.hpp (Writer), local/agent.hpp
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "delivery/delivery.hpp"
#include "local/message.hpp"
#include "util/result.hpp"

namespace postern::local {

struct QueueOwner {
    std::string queue_dir;
    uid_t uid = 0;  // mail_owner
    gid_t gid = 0;
};

// One queue file for addresses, from sender, with the DSN options (NOTIFY,
// ORCPT, ENVID, RET) of the original recipient and message. Returns its ID.
Result<std::string> resubmit(const QueueOwner& q, const delivery::Request& req, const delivery::Rcpt& orig,
                             const std::string& sender, const std::vector<std::string>& addresses,
                             const std::string& delivered_to, const Message& msg, std::int64_t now_us);

// "A" to queue_dir/private/qmgr; nobody listening is fine (qmgr scans incoming/).
void wake_qmgr(const std::string& queue_dir);

}  // namespace postern::local
