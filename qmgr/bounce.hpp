// NAME
//   qmgr/bounce.hpp - RFC 3464 delivery status notifications (bounces, delay warnings)
// PURPOSE
//   Composes the whole notification message qmgr queues for a sender: RFC 5322
//   headers and a multipart/report (RFC 6522) with three parts: a text/plain
//   explanation, the message/delivery-status report (RFC 3464), and the
//   original message (message/rfc822) or only its header section
//   (text/rfc822-headers). It streams: the original is read from its queue
//   file with queue::read_content and handed to `out` chunk by chunk, never
//   held in memory. It is not the policy of when to notify or whom (qmgr
//   decides: NOTIFY, null senders, double bounces, postmaster copies), and it
//   writes no queue file itself: qmgr passes a Writer::append as `out`.
//
//   What is returned (part 3):
//     Failure: the whole original, unless RET=HDRS or the original is larger
//       than bounce_size_limit; then its header section only.
//     Delay, Success: the header section only (the sender still has, or got,
//       the message; RFC 3461 RET speaks of failed DSNs).
//     An original that is not fit to be carried as a message (a NUL byte or a
//       line longer than 998 bytes: RFC 5322 2.1.1) is also returned as its
//       header section only.
//     A header section is everything before the first empty line (CRLF or
//       bare LF); one longer than bounce_size_limit is cut at a line end
//       within the limit, so a message that is all "headers" cannot make
//       the notification large.
//   8-bit and UTF-8: the original is returned as it is stored, never
//   re-encoded. A part holding 8-bit bytes is labelled
//   Content-Transfer-Encoding: 8bit, and so is the whole message (RFC 2045
//   6.4: a multipart containing an 8bit part is 8bit); plan_dsn says so, so
//   that qmgr can queue the notification with BODY=8BITMIME. An original
//   whose header section has 8-bit bytes (SMTPUTF8 mail) goes out as
//   message/global or text/global-headers (RFC 6532, 6533); a recipient
//   address with non-ASCII characters is reported with address type "utf-8"
//   in a message/global-delivery-status part (RFC 6533). DsnPlan::utf8 tells
//   qmgr that the notification needs SMTPUTF8.
// SYNOPSIS
//   qmgr::DsnInput in{.myhostname = p.myhostname, .mail_name = p.mail_name, .queue_id = env.queue_id, ...};
//   auto plan = qmgr::plan_dsn(in, fd, content_off, now_us);   // before Writer::write_envelope
//   bounce_env.body = plan->eight_bit ? "8BITMIME" : "";  bounce_env.smtputf8 = plan->utf8;
//   auto r = qmgr::compose_dsn(in, *plan, fd, content_off, now_us,
//                              [&](std::string_view b) { return writer.append(b); });
//   qmgr::compose_dsn(in, fd, content_off, now_us, out);          // plan and write in one call
// ERRORS
//   Errors reading the queue file come back as read_content gives them
//   (Error::temp for I/O, Error::perm for a corrupt file); an error from `out`
//   stops the composition and is returned as it is. No recipients, or an
//   empty `to`, is a bug (assert).
// SECURITY
//   Addresses, ENVID, ORCPT and reasons come from clients and remote servers:
//   control characters in them are replaced by '?' before they go into header
//   or report fields, so they cannot add fields or lines. The MIME boundary
//   is checked against the returned content, so the original cannot end a
//   part early. Only the header section is read when that is all that is
//   returned; memory use is bounded by the chunk size, not the message.
// SEE ALSO
//   queue/queue.hpp, RFC 3461, RFC 3464, RFC 6522, RFC 6533, Postfix bounce(8)
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace postern::qmgr {

struct DsnRecipient {
    std::string address;     // the recipient as in the queue file
    std::string orcpt;       // "rfc822;user@example.com" as stored (decoded), or empty
    std::string dsn;         // "5.1.1"
    std::string reason;      // human-readable text: "host mx[192.0.2.1] said: 550 5.1.1 no such user"
    std::string remote_mta;  // "mx.example.com" (or a relay "mx.example.com[192.0.2.1]:25"), or empty
    std::string diagnostic;  // "smtp; 550 5.1.1 no such user", or empty
    bool relayed = false;    // Success: passed to a server without DSN (Action: relayed)
};

enum class DsnKind { Failure, Delay, Success };

struct DsnInput {
    std::string myhostname;
    std::string mail_name;        // "Postern"
    std::string queue_id;         // of the original message
    std::string envid;            // DSN ENVID of the original, or empty
    std::string ret;              // "FULL", "HDRS" or "" (not given: FULL)
    std::string original_sender;  // envelope sender of the original
    int64_t arrival_us = 0;       // of the original
    DsnKind kind = DsnKind::Failure;
    std::vector<DsnRecipient> recipients;
    std::string to;               // who gets the notification (usually original_sender)
    std::size_t bounce_size_limit = 50000;
    std::string delay_text;       // Delay: how long it has waited, "4 hours"
    int64_t retry_until_us = 0;   // Delay: when qmgr gives up (Will-Retry-Until); 0 = not said
};

// What compose_dsn will write, decided from the original before anything is
// written: which form part 3 takes, the boundary, and the transport needs.
struct DsnPlan {
    bool headers_only = false;  // part 3 is the header section only
    std::string boundary;       // does not occur in the returned content
    bool returned_8bit = false;    // the returned original (part 3) has 8-bit bytes
    bool returned_global = false;  // ... in its header section: message/global, text/global-headers
    bool eight_bit = false;        // some part has 8-bit bytes: queue with BODY=8BITMIME
    bool utf8 = false;             // UTF-8 in header fields or addresses: queue with SMTPUTF8
};

// Reads the original (content at content_offset of queue file queue_fd) to
// choose the plan. now_us seeds the boundary.
Result<DsnPlan> plan_dsn(const DsnInput& in, int queue_fd, uint64_t content_offset, int64_t now_us);

// Writes the notification (CRLF line ends) to out, following plan.
Result<void> compose_dsn(const DsnInput& in, const DsnPlan& plan, int queue_fd, uint64_t content_offset,
                         int64_t now_us, const std::function<Result<void>(std::string_view)>& out);

// plan_dsn, then compose_dsn.
Result<void> compose_dsn(const DsnInput& in, int queue_fd, uint64_t content_offset, int64_t now_us,
                         const std::function<Result<void>(std::string_view)>& out);

}  // namespace postern::qmgr
