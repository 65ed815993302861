// NAME
//   local/agent.hpp - the local and virtual delivery agent's logic
// PURPOSE
//   Answers a batch of DeliveryRequests (those qmgr sent back-to-back on one
//   connection; a single request is a batch of one). For each request it
//   opens the queue file, and for each recipient decides the class
//   (mydestination or no domain: a local user; virtual_mailbox_domains: a
//   virtual mailbox), refuses forwarding loops (a Delivered-To header naming
//   the recipient: 5.4.6), expands aliases and .forward files
//   (local/aliases.hpp), performs every resulting delivery (Maildir, mbox,
//   file, command, forward), logs one Postfix-shaped line per delivery, and
//   reports one outcome per recipient: the worst of its deliveries. A
//   destination reached through several recipients of one request is
//   delivered once. Maildir copies are not written where they are decided:
//   they are collected over the whole batch and written per Maildir, one
//   child and one fsync of new/ for all (local/batch.hpp); everything else
//   runs at once, as it is decided. Within a request the order stays as if
//   it came alone: before an mbox, file or command delivery, the Maildir
//   copies the request has decided on so far are written (with all others
//   still waiting), since that delivery may depend on them (a notification
//   command; a virtual mbox whose parent directory the Maildir delivery
//   makes). Not the socket loop (local/server.hpp).
// SYNOPSIS
//   Agent agent(cfg);                                    // as root: opens tables
//   std::vector<delivery::Reply> r = agent.deliver_batch(requests);  // blocks; forks
// DELIVERY
//   Local users: home_mailbox "DIR/" is a Maildir under the home directory,
//   "FILE" an mbox there, "" the mbox mail_spool_directory/USER (made with
//   the spool directory's group when that group may write it, like Debian's
//   setgid-mail convention). Virtual: virtual_mailbox_maps gives a path under
//   virtual_mailbox_base (a trailing '/' means Maildir) for user@domain
//   (extension stripped, then @domain), owned by virtual_uid_maps /
//   virtual_gid_maps. Every copy starts with "Return-Path: <sender>" and
//   "Delivered-To: recipient" and has LF line ends.
// ERRORS
//   Nothing is thrown: a queue file that cannot be read defers every
//   recipient of that request (4.3.0) and no other; each delivery's own
//   failure is its recipient's outcome. Every request of a batch keeps its
//   own outcomes, log lines (each with its own timing) and duplicate
//   suppression, as if it had come alone.
//   A recipient in neither kind of domain is deferred 4.3.5 (a routing
//   mistake someone will fix).
// SECURITY
//   The agent runs as root and never delivers as root: every mailbox, file
//   and command is handled by a child with the recipient's (or
//   default_privs') uid and gid (local/privsep.hpp, local/pipe.hpp); a
//   batch's Maildir child serves one (uid, gid, path) only. Virtual
//   mailboxes never get uid or gid 0, and their paths may not contain "..".
// SEE ALSO
//   delivery/delivery.hpp, local/aliases.hpp, local/batch.hpp, Postfix local(8) and virtual(8)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "delivery/delivery.hpp"
#include "local/aliases.hpp"
#include "local/batch.hpp"
#include "local/mbox.hpp"
#include "local/message.hpp"
#include "local/recipient.hpp"
#include "local/resubmit.hpp"
#include "local/system.hpp"
#include "local/tables.hpp"
#include "util/unique_fd.hpp"

namespace postern::local {

class Agent {
public:
    // As root: looks up mail_owner and opens the tables. Fatal if mail_owner
    // does not exist or mailbox_delivery_lock is invalid.
    explicit Agent(const config::Config& cfg);
    // One reply per request, in order.
    std::vector<delivery::Reply> deliver_batch(const std::vector<delivery::Request>& reqs);

private:
    // A delivery's verdict, or the index of a StoreJob in stores_ whose
    // status is known only after run_stores.
    struct Slot {
        Status status;
        std::optional<std::size_t> store;
    };
    struct Final {
        std::string to;
        Slot slot;
        std::int64_t done_us = 0;  // when a verdict not in stores_ was known
    };
    struct RcptResult {
        std::string_view relay;
        std::vector<Final> finals;
    };
    // One request of a batch, from its queue file to its reply.
    struct Pending {
        const delivery::Request& req;
        std::int64_t start_us = 0;
        UniqueFd fd;                  // the queue file, open until the stores have run
        std::optional<Message> msg;
        std::vector<RcptResult> rcpts;  // one per recipient, in order
    };
    // What one recipient's deliveries share.
    struct Job {
        const delivery::Request& req;
        const delivery::Rcpt& rcpt;
        const Message& msg;
        std::string headers;  // Return-Path and Delivered-To
        std::vector<Final> finals;
    };

    void resolve(Pending& p);
    Result<void> open_queue_file(Pending& p);
    RcptResult recipient(const delivery::Request& req, const delivery::Rcpt& rcpt, const Message& msg);
    delivery::Reply finish(const Pending& p) const;
    void local_recipient(Job& job, const Address& a);
    void virtual_recipient(Job& job, const Address& a);
    Slot execute(Job& job, const Target& t);
    void forward(Job& job, const std::vector<const Target*>& targets);
    Slot mailbox(Job& job, const privs::UserInfo& u);
    Slot file(Job& job, const Target& t);
    Slot command(Job& job, const Target& t);
    Slot store(Job& job, uid_t uid, gid_t gid, const std::string& path, uid_t owner, bool may_fail_dotlock,
               const std::string& what);
    std::vector<std::string> command_env(const Job& job, const Target& t) const;

    // Runs the pending Maildir copies (all of them, one child per Maildir).
    void write_stores();
    // write_stores() if the request being resolved has pending Maildir
    // copies: its next delivery must come after them, as it would alone.
    void write_stores_before_this();

    const config::Params& p_;
    SystemResolver resolver_;
    DomainList mydestination_, virtual_domains_;
    MapList virtual_mailboxes_;
    IdMap virtual_uids_, virtual_gids_;
    MboxOptions mbox_;
    QueueOwner queue_;
    std::map<std::string, Slot> done_;  // the request being resolved: destinations by dedupe key
    std::vector<StoreJob> stores_;      // the batch's Maildir copies
    std::size_t stores_written_ = 0;    // stores_ before this have run
    std::size_t request_stores_ = 0;    // stores_ from here on are the request being resolved
};

// The relay name a recipient's log line and outcome carry.
inline constexpr std::string_view LocalRelay = "local", VirtualRelay = "virtual";

// Characters an environment value for a command may keep; others become '_'.
std::string env_safe(std::string_view value);

}  // namespace postern::local
