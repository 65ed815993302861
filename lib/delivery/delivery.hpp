// NAME
//   delivery/delivery.hpp - the request qmgr sends a delivery agent, and the reply
// PURPOSE
//   One message (DeliveryRequest) from qmgr to a delivery agent (local, smtp,
//   ...) over the agent's UNIX socket: which queue file, the envelope fields an
//   agent needs, the next hop, and a batch of recipients (each with its index in
//   the queue file). The agent answers with one DeliveryReply: an outcome per
//   recipient (sent, deferred, bounced) with the enhanced status code, the relay
//   that answered and the reason. Also the Postfix-shaped status log line every
//   agent writes. Not the scheduling (qmgr), not the queue file format (the
//   agent reads the file itself with lib/queue), not the DSN composition.
// WIRE FORMAT
//   Both are ipc::AttrList frames. Request attributes: request=DeliveryRequest,
//   queue_id, queue_file ("active/ID", relative to queue_directory),
//   content_offset, arrival (us), active (us), sender, envid, ret, body,
//   smtputf8 (0/1), transport, nexthop, count, then rcpt_0 .. rcpt_{count-1},
//   each "INDEX NOTIFY ADDRESS\0ORCPT" (index and notify decimal). Reply:
//   request=DeliveryReply, count, then out_0 .. out_{count-1}, each
//   "INDEX KIND DSN\0RELAY\0REASON" with KIND one of S (sent) D (deferred)
//   B (bounced). Every index in a reply must have been in the request, once.
// SYNOPSIS
//   ipc::AttrList a = delivery::encode(req);           // qmgr
//   auto req = delivery::decode_request(frame);        // agent; Error::protocol if malformed
//   rep.outcomes.push_back({i, Outcome::Kind::Sent, "2.0.0", "local", "delivered to maildir"});
//   auto rep = delivery::decode_reply(frame, req);     // qmgr checks it against its request
//   log::info("%s", delivery::status_line(req, rcpt, outcome, now_us, orig_to).c_str());
// ERRORS
//   decode_* return Error::protocol naming the first bad attribute. encode of a
//   value that cannot be framed (a NUL inside an address) is a bug (assert):
//   queue files never hold one (smtpd and pickup refuse NUL).
// SECURITY
//   Agents and qmgr are separate processes of differing privilege (local runs
//   as root): every field is checked (counts <= MaxRecipients, indexes in
//   range, DSN codes shaped d.d.d, kinds known, queue_file a queue
//   subdirectory + valid ID), so a compromised qmgr cannot make an agent open
//   an arbitrary path. Reasons are printable-only (sanitized on encode).
// SEE ALSO
//   ipc/ipc.hpp, queue/queue.hpp, qmgr/, local/, Postfix deliver_request.h
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/ipc.hpp"
#include "util/result.hpp"

namespace postern::delivery {

inline constexpr std::size_t MaxRecipients = 1000;

struct Rcpt {
    std::uint32_t index = 0;   // position among the queue file's recipients
    std::string address;
    std::string orcpt;
    unsigned notify = 0;       // queue::Notify* bits
};

struct Request {
    std::string queue_id;
    std::string queue_file;    // "active/ID"
    std::uint64_t content_offset = 0;
    std::int64_t arrival_us = 0;
    std::int64_t active_us = 0;   // when qmgr took the message into active/
    std::string sender;           // "" = null sender
    std::string envid, ret, body;
    bool smtputf8 = false;
    std::string transport;        // master.cf service name ("local", "smtp")
    std::string nexthop;          // domain, or "[host]:port"
    std::vector<Rcpt> recipients;
};

struct Outcome {
    enum class Kind { Sent, Deferred, Bounced };
    std::uint32_t index = 0;
    Kind kind = Kind::Deferred;
    std::string dsn = "4.3.0";    // enhanced status code
    std::string relay;            // "local", "mx.example[192.0.2.1]:25", "none"
    std::string reason;           // "delivered to maildir", "host ... said: 550 ..."
    // Sent only: where the mail's DSN duties went (RFC 3461 section 6.2):
    // Final: delivered here (a success notice, if asked, says "delivered");
    // Relayed: to a server without DSN ("relayed"); Passed: to a server
    // that took the NOTIFY request on (no notice from us).
    enum class Handoff { Final, Relayed, Passed };
    Handoff handoff = Handoff::Final;
};

struct Reply {
    std::vector<Outcome> outcomes;
};

inline constexpr std::string_view RequestName = "DeliveryRequest";
inline constexpr std::string_view ReplyName = "DeliveryReply";

ipc::AttrList encode(const Request& r);
Result<Request> decode_request(const ipc::AttrList& a);
ipc::AttrList encode(const Reply& r);
// Checks the reply against the request it answers: every index one of the
// request's, none twice. Recipients without an outcome are the caller's to
// treat (qmgr defers them).
Result<Reply> decode_reply(const ipc::AttrList& a, const Request& req);

// "d.d.d" with class 2, 4 or 5 (RFC 3463 shape, each detail 1..3 digits).
bool valid_dsn(std::string_view dsn) noexcept;
// Whether queue_file is "<subdir>/<valid queue ID>" for a queue subdirectory
// a delivery can come from (active).
bool valid_queue_file(std::string_view path) noexcept;

// The Postfix-shaped status line, without the "QUEUEID: " prefix:
// "to=<a@b>, orig_to=<c@d>, relay=local, delay=0.12, delays=0.01/0.01/0/0.1,
//  dsn=2.0.0, status=sent (delivered to maildir)". orig_to is left out when
// empty. delays: a = arrival -> active, b = active -> request, c = 0 (no
// connection setup of its own), d = request -> now. start_us = when the agent
// got the request.
// delays=a/b/c/d: a before the active queue, b there until start_us, c the
// connection set-up (start_us to connected_us: DNS, greeting, EHLO, TLS;
// 0 = none, c is then 0), d the transmission until now_us.
std::string status_line(const Request& req, std::string_view to, std::string_view orig_to,
                        const Outcome& o, std::int64_t start_us, std::int64_t now_us,
                        std::int64_t connected_us = 0);
std::string_view kind_word(Outcome::Kind k) noexcept;  // "sent" "deferred" "bounced"

}  // namespace postern::delivery
