// NAME
//   ipc/attrs.hpp - the attribute keys of Postern IPC messages
// PURPOSE
//   The one place attribute keys live (STYLE N3, like Postfix MAIL_ATTR_*):
//   senders and receivers both name keys through these constants, so a typo is
//   a compile error and `grep attr::QueueId` finds every user. Add new keys
//   here, in alphabetical order. Not for message names or value formats: those
//   are documented with the message (<Domain><Noun><Verb>) that uses them.
// SYNOPSIS
//   AttrList reply{{attr::Status, "2.0.0"}, {attr::QueueId, qid}};
//   expect(req, {attr::Request, attr::Sender}, {attr::ClientAddr});
// SECURITY
//   Each key must satisfy ipc::is_valid_name() ([a-z0-9_], 1..64 bytes); a
//   static_assert below checks them at compile time.
// SEE ALSO
//   ipc/ipc.hpp
#pragma once

#include <string_view>

#include "ipc/ipc.hpp"

namespace postern::ipc::attr {

inline constexpr std::string_view ClientAddr = "client_addr";  // peer IP address, no brackets
inline constexpr std::string_view ClientName = "client_name";  // verified host name or "unknown"
inline constexpr std::string_view Gid = "gid";                  // decimal group id
inline constexpr std::string_view Home = "home";                // absolute home directory
inline constexpr std::string_view Id = "id";                    // decimal request id, echoed by the reply
inline constexpr std::string_view Kind = "kind";                // a message's own enumeration, e.g. "virtual"
inline constexpr std::string_view Mailbox = "mailbox";          // mailbox path (Maildir ends with '/')
inline constexpr std::string_view Mechanism = "mechanism";      // SASL mechanism name, e.g. "PLAIN"
inline constexpr std::string_view Outcome = "outcome";          // "ok", "fail", "locked", "tempfail"
inline constexpr std::string_view Password = "password";        // a secret: never logged
inline constexpr std::string_view Pid = "pid";                  // decimal process id
inline constexpr std::string_view QueueId = "queue_id";
inline constexpr std::string_view Quota = "quota";              // decimal bytes, 0 = none
inline constexpr std::string_view Reason = "reason";            // human-readable text for logs and DSNs
inline constexpr std::string_view Recipient = "recipient";      // envelope address, unquoted
inline constexpr std::string_view Request = "request";          // message name, e.g. "QueueMessageCommit"
inline constexpr std::string_view Sender = "sender";            // envelope address, "" for <>
inline constexpr std::string_view Service = "service";          // master.cf service name
inline constexpr std::string_view Status = "status";            // enhanced status code: "2.0.0", "4.3.0"
inline constexpr std::string_view Tls = "tls";                  // "1" when the client used TLS, else "0"
inline constexpr std::string_view Uid = "uid";                  // decimal user id
inline constexpr std::string_view User = "user";                // login or system user name

static_assert(is_valid_name(ClientAddr) && is_valid_name(ClientName) && is_valid_name(Gid) &&
              is_valid_name(Home) && is_valid_name(Id) && is_valid_name(Kind) &&
              is_valid_name(Mailbox) && is_valid_name(Mechanism) && is_valid_name(Outcome) &&
              is_valid_name(Password) && is_valid_name(Pid) && is_valid_name(QueueId) &&
              is_valid_name(Quota) && is_valid_name(Reason) && is_valid_name(Recipient) &&
              is_valid_name(Request) && is_valid_name(Sender) && is_valid_name(Service) &&
              is_valid_name(Status) && is_valid_name(Tls) && is_valid_name(Uid) && is_valid_name(User));

}  // namespace postern::ipc::attr
