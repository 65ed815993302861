// NAME
//   sendmail/smtp.hpp - sendmail -bs: a small SMTP server on stdin/stdout
// PURPOSE
//   For mail clients that submit by speaking SMTP to "sendmail -bs" through
//   a pipe. A subset of RFC 5321: HELO, EHLO (8BITMIME, SMTPUTF8,
//   PIPELINING), MAIL (BODY, SMTPUTF8 and SIZE parameters), RCPT, DATA with
//   dot-unstuffing, RSET, NOOP, QUIT. Each DATA writes one maildrop file
//   (sendmail/submit.hpp), with the MAIL FROM address as the requested
//   sender (like -f). Not smtpd: no TLS, AUTH, DSN parameters or policy;
//   the invoking user is already known and pickup applies the rules.
// SYNOPSIS
//   int rc = run_smtp(ctx, STDIN_FILENO, STDOUT_FILENO);
// ERRORS
//   Protocol errors are SMTP replies; failures writing a message are 4xx
//   (I/O) or 5xx (bad data) replies for that message. Returns EX_OK after
//   QUIT or end of input, EX_PROTOCOL after too many errors, EX_IOERR when
//   stdin or stdout fails.
// SECURITY
//   Commands are at most SmtpLineLimit bytes; data lines are streamed in
//   pieces; at most SmtpRecipientLimit recipients and SmtpErrorLimit errors.
// SEE ALSO
//   sendmail/submit.hpp, RFC 5321
#pragma once

#include <cstddef>

#include "sendmail/submit.hpp"

namespace postern::sendmail {

inline constexpr std::size_t SmtpLineLimit = 2048;
inline constexpr std::size_t SmtpRecipientLimit = 1000;
inline constexpr int SmtpErrorLimit = 20;

int run_smtp(const Context& ctx, int in_fd, int out_fd);

}  // namespace postern::sendmail
