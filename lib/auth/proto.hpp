// NAME
//   auth/proto.hpp - the auth daemon's requests and replies (private/auth)
// PURPOSE
//   Typed messages between the auth daemon and its clients (smtpd now, the
//   IMAP/POP3 login and mail processes and the virtual delivery agent later),
//   carried as lib/ipc frames. Every request has an `id` that its reply
//   echoes, so a client may send many requests on one connection and the
//   daemon may answer them in any order (a slow PAM conversation does not hold
//   up the others). Not the daemon's logic (auth/), not SASL (auth/sasl.hpp):
//   clients decode the mechanism themselves and send the user and password.
// MESSAGES
//   AuthPasswordVerify  id service mechanism user password client_addr client_name tls
//     -> id outcome reason [user uid gid home mailbox quota kind]
//   AuthUserLookup      id user
//     -> id outcome reason [user uid gid home mailbox quota kind]
//   outcome is ok, fail (wrong password / unknown user; for a lookup: no such
//   user), locked (refused without checking: too many recent failures) or
//   tempfail (a backend is down). reason is a short code for logs
//   (ReasonCode); the password is never in a reply.
// VALUES
//   id, uid, gid, quota: canonical unsigned decimal (no sign, no leading zero),
//   id and quota up to 2^64-1, uid and gid up to 2^32-2 ((uid_t)-1 is never a
//   user). tls: "0" or "1". kind: "system" or "virtual". user: 1..MaxUserLength
//   bytes, password: 0..MaxPasswordLength bytes (sasl.hpp), neither with a NUL.
//   service, mechanism: 1..MaxTokenLength printable ASCII bytes, no space;
//   client_addr: 0..MaxTokenLength of those; client_name: 0..MaxHostLength.
//   reason: 0..MaxTokenLength bytes of [a-z0-9_]. home: "" or an absolute
//   path, mailbox: an absolute path, both at most MaxPathLength bytes, no NUL.
//   A request carries `request` (its name); a reply does not. The user
//   attributes of a reply are all present when outcome is ok, else all absent.
// ERRORS
//   decode_*: Error::protocol for a missing, unexpected or repeated attribute,
//   a bad number, an unknown request name or outcome, or a value over its
//   limit (see VALUES). encode(Reply) with outcome Ok but no user, or a user
//   with another outcome, is a bug: assert.
// SECURITY
//   Requests come from unprivileged, network-facing processes and are
//   untrusted: the daemon decodes them with these strict functions, whose
//   limits match auth/sasl.hpp (user, password) and lib/ipc (frame size).
// SEE ALSO
//   auth/client.hpp, auth/sasl.hpp, ipc/ipc.hpp
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "ipc/ipc.hpp"
#include "util/result.hpp"

namespace postern::auth {

inline constexpr std::size_t MaxPathLength = 4096;   // home, mailbox
inline constexpr std::size_t MaxTokenLength = 64;    // service, mechanism, client_addr, reason
inline constexpr std::size_t MaxHostLength = 255;    // client_name

inline constexpr std::string_view VerifyRequestName = "AuthPasswordVerify";
inline constexpr std::string_view LookupRequestName = "AuthUserLookup";

enum class Outcome { Ok, Fail, Locked, TempFail };
std::string_view outcome_name(Outcome o);  // "ok", "fail", "locked", "tempfail"

// Short reason codes for logs: "ok", "unknown_user", "password_mismatch",
// "account_disabled", "locked", "backend_failure", "bad_request".
using ReasonCode = std::string;

struct UserInfo {
    enum class Kind { System, Virtual } kind = Kind::System;
    std::string name;     // canonical login: "alice" (system) or "alice@example.org" (virtual)
    uid_t uid = 0;
    gid_t gid = 0;
    std::string home;     // system: pw_dir; virtual: virtual_mailbox_base
    std::string mailbox;  // absolute path; a Maildir ends with '/'
    std::uint64_t quota = 0;  // bytes, 0 = none
};

struct VerifyRequest {
    std::uint64_t id = 0;
    std::string service;      // "smtpd", "imap", "pop3"
    std::string mechanism;    // "PLAIN", "LOGIN"
    std::string user;
    std::string password;
    std::string client_addr;  // "192.0.2.1", or "" when not from the network
    std::string client_name;  // verified name or "unknown"
    bool tls = false;
};

struct LookupRequest {
    std::uint64_t id = 0;
    std::string user;
};

struct Reply {
    std::uint64_t id = 0;
    Outcome outcome = Outcome::TempFail;
    ReasonCode reason;
    std::optional<UserInfo> user;  // present exactly when outcome == Ok
};

using Request = std::variant<VerifyRequest, LookupRequest>;

ipc::AttrList encode(const VerifyRequest& r);
ipc::AttrList encode(const LookupRequest& r);
ipc::AttrList encode(const Reply& r);
Result<Request> decode_request(const ipc::AttrList& a);
Result<Reply> decode_reply(const ipc::AttrList& a);

}  // namespace postern::auth
