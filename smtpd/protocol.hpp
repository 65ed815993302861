// NAME
//   smtpd/protocol.hpp - SMTP command-line and parameter parsing (RFC 5321)
// PURPOSE
//   Turns one command line from a client into a verb and argument, and MAIL /
//   RCPT arguments into a path and ESMTP parameters (SIZE, BODY, SMTPUTF8,
//   RET, ENVID, NOTIFY, ORCPT, AUTH), with every check done here so the
//   session never sees malformed text. Pure functions: no I/O, no policy
//   (relay and recipient decisions live in smtpd/session.cpp).
// SYNOPSIS
//   auto cmd = parse_command(line);          // Result<Command>
//   auto path = parse_path(cmd->arg, "FROM:", /*allow_null=*/true, /*allow_bare_postmaster=*/false);
//   auto p = parse_mail_params(path->params); // Result<MailParams>
// ERRORS
//   Error::protocol with the SMTP reply to send ("501 5.5.4 ..."), so callers
//   pass the text through unchanged.
// SECURITY
//   Input is hostile: lengths are limited (local part 64, domain 255, path
//   256 bytes as in RFC 5321 4.5.3.1, plus 10 parameters), NUL and control
//   bytes are refused, nothing is rewritten (no percent hack, no source
//   routes, no bang paths: a route is checked and dropped).
// SEE ALSO
//   smtpd/data.hpp, smtpd/session.hpp
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.hpp"
#include "util/strings.hpp"

namespace postern::smtpd {

enum class Verb { Helo, Ehlo, Mail, Rcpt, Data, Bdat, Rset, Noop, Quit, Vrfy, Expn, Help, Starttls, Auth, Unknown };

struct Command {
    Verb verb = Verb::Unknown;
    std::string name;  // the verb as sent, upper-cased, for logs and counters
    std::string arg;   // the rest of the line after one space, as sent
};

// A command line without its CRLF.
Result<Command> parse_command(std::string_view line);

struct Path {
    std::string address;  // local@domain, or "" for the null sender <>
    std::string local;    // local part as sent (quotes kept)
    std::string domain;   // domain, lower-cased; "" when none
    bool utf8 = false;    // non-ASCII bytes in the address
    std::vector<std::pair<std::string, std::string>> params;  // ESMTP keyword=value (upper-cased keyword)
};

// Parses `FROM:<path> params` / `TO:<path> params` (prefix "FROM:" / "TO:").
// `<>` is allowed only when allow_null. `postmaster` without domain is allowed
// for RCPT (allow_bare_postmaster).
Result<Path> parse_path(std::string_view arg, std::string_view prefix, bool allow_null, bool allow_bare_postmaster);

enum class Body { None, SevenBit, EightBitMime, BinaryMime };

struct MailParams {
    std::optional<unsigned long long> size;
    Body body = Body::None;
    bool smtputf8 = false;
    std::string ret;    // "FULL", "HDRS" or ""
    std::string envid;  // decoded xtext
    std::string auth;   // AUTH=<> or an xtext mailbox; accepted, not trusted
};
Result<MailParams> parse_mail_params(const std::vector<std::pair<std::string, std::string>>& params);

struct RcptParams {
    unsigned notify = 0;  // 1 NEVER, 2 SUCCESS, 4 FAILURE, 8 DELAY
    std::string orcpt;    // "rfc822;addr" with the address xtext-decoded
};
Result<RcptParams> parse_rcpt_params(const std::vector<std::pair<std::string, std::string>>& params);

// RFC 3461 xtext: "+HH" escapes; nullopt when malformed.
using util::xtext_decode;

// A HELO/EHLO argument: a domain name or an address literal, printable ASCII.
bool valid_helo(std::string_view s);

}  // namespace postern::smtpd
