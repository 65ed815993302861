// NAME
//   local/agent.hpp - the local and virtual delivery agent's logic
// PURPOSE
//   Answers one DeliveryRequest: opens the queue file, and for each recipient
//   decides the class (mydestination or no domain: a local user;
//   virtual_mailbox_domains: a virtual mailbox), refuses forwarding loops
//   (a Delivered-To header naming the recipient: 5.4.6), expands aliases and
//   .forward files (local/aliases.hpp), performs every resulting delivery
//   (Maildir, mbox, file, command, forward), logs one Postfix-shaped line per
//   delivery, and reports one outcome per recipient: the worst of its
//   deliveries. A destination reached through several recipients of one
//   request is delivered once. Not the socket loop (local/server.hpp).
// SYNOPSIS
//   Agent agent(cfg);                              // as root: opens tables
//   delivery::Reply rep = agent.deliver(request);  // blocks; forks per delivery
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
//   recipient (4.3.0); each delivery's own failure is its recipient's outcome.
//   A recipient in neither kind of domain is deferred 4.3.5 (a routing
//   mistake someone will fix).
// SECURITY
//   The agent runs as root and never delivers as root: every mailbox, file
//   and command is handled by a child with the recipient's (or
//   default_privs') uid and gid (local/privsep.hpp, local/pipe.hpp). Virtual
//   mailboxes never get uid or gid 0, and their paths may not contain "..".
// SEE ALSO
//   delivery/delivery.hpp, local/aliases.hpp, Postfix local(8) and virtual(8)
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "delivery/delivery.hpp"
#include "local/aliases.hpp"
#include "local/mbox.hpp"
#include "local/message.hpp"
#include "local/recipient.hpp"
#include "local/resubmit.hpp"
#include "local/system.hpp"
#include "local/tables.hpp"

namespace postern::local {

class Agent {
public:
    // As root: looks up mail_owner and opens the tables. Fatal if mail_owner
    // does not exist or mailbox_delivery_lock is invalid.
    explicit Agent(const config::Config& cfg);
    delivery::Reply deliver(const delivery::Request& req);

private:
    struct Final {
        std::string to;
        Status status;
    };
    // What one recipient's deliveries share.
    struct Job {
        const delivery::Request& req;
        const delivery::Rcpt& rcpt;
        const Message& msg;
        std::string headers;  // Return-Path and Delivered-To
        std::vector<Final> finals;
    };

    delivery::Outcome recipient(const delivery::Request& req, const delivery::Rcpt& rcpt, const Message& msg,
                                std::int64_t start_us);
    void local_recipient(Job& job, const Address& a);
    void virtual_recipient(Job& job, const Address& a);
    Status execute(Job& job, const Target& t);
    void forward(Job& job, const std::vector<const Target*>& targets);
    Status mailbox(Job& job, const privs::UserInfo& u);
    Status file(Job& job, const Target& t);
    Status command(Job& job, const Target& t);
    Status store(Job& job, uid_t uid, gid_t gid, const std::string& path, uid_t owner, bool may_fail_dotlock,
                 const std::string& what);
    std::vector<std::string> command_env(const Job& job, const Target& t) const;

    const config::Params& p_;
    SystemResolver resolver_;
    DomainList mydestination_, virtual_domains_;
    MapList virtual_mailboxes_;
    IdMap virtual_uids_, virtual_gids_;
    MboxOptions mbox_;
    QueueOwner queue_;
    std::map<std::string, Status> done_;  // this request's destinations, by dedupe key
};

// The relay name a recipient's log line and outcome carry.
inline constexpr std::string_view LocalRelay = "local", VirtualRelay = "virtual";

// Characters an environment value for a command may keep; others become '_'.
std::string env_safe(std::string_view value);

}  // namespace postern::local
