// NAME
//   sendmail/message.hpp - a message from sendmail's stdin, made into a proper one
// PURPOSE
//   Streams message bytes as a local user typed or piped them and produces
//   what goes into the queue file: CRLF line endings (bare LF becomes CRLF,
//   CRLF stays CRLF, no doubled CR), without -i a lone "." line ends the
//   input, a leading mbox "From " line is dropped, Bcc is removed, missing
//   From, Date and Message-ID are added, and with -t the To/Cc/Bcc addresses
//   are collected. Everything else is kept byte for byte, except that a
//   header line longer than MaxHeaderLine octets (RFC 5322 2.1.1) is folded:
//   CRLF goes in before the last white space within the limit, so the
//   continuation line starts with that space or tab and unfolding gives the
//   original line back. A line with nowhere to fold (no white space after
//   the colon, or only at its end) is kept as it is and counted
//   (long_header_lines()): changing it would change the header's value, and
//   refusing the message would turn an oddity into lost mail for callers
//   like cron that cannot retry. Body lines are never touched. Only
//   the header is held in memory (at most max_header_bytes); the body passes
//   through. No I/O and no addresses qualified here: the caller does that.
// SYNOPSIS
//   MessageBuilder b(settings);
//   b.feed(chunk) ...;  if (b.headers_done()) use(b.header_recipients());
//   out = b.take_output();  ...  b.finish();  out = b.take_output();
//   if (b.long_header_lines() > 0) warn(...);     // kept longer than 998 octets
//   std::string d = format_date(time, gmtoff);
//   std::string f = fold_header("Subject: ...", MaxHeaderLine, kept);
// ERRORS
//   feed/finish return Error::perm for an oversized header or a malformed
//   To/Cc/Bcc address list (with -t); the caller exits EX_DATAERR.
// SECURITY
//   Input is whatever the invoking user sends; memory is bounded by
//   max_header_bytes plus the size of one feed() chunk.
// SEE ALSO
//   sendmail/submit.hpp, address/address.hpp, RFC 5322 3.6
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "address/address.hpp"
#include "util/result.hpp"

namespace postern::sendmail {

inline constexpr std::size_t DefaultMaxHeaderBytes = 1u << 20;
inline constexpr std::size_t MaxHeaderLine = 998;  // octets, without the CRLF (RFC 5322 2.1.1)

struct MessageSettings {
    bool ignore_dots = false;   // -i: a lone "." does not end the input
    bool extract = false;       // -t: collect To, Cc, Bcc
    std::string from;           // value of a From header to add when there is none
    std::string date;           // value of a Date header to add when there is none
    std::string message_id;     // value of a Message-ID header to add when there is none
    std::size_t max_header_bytes = DefaultMaxHeaderBytes;
};

class MessageBuilder {
public:
    explicit MessageBuilder(MessageSettings s) : s_(std::move(s)) {}

    // Consumes input bytes; after ended() further bytes are ignored.
    Result<void> feed(std::string_view bytes);
    // End of input: completes the last line and, if still open, the header.
    Result<void> finish();

    bool headers_done() const noexcept { return !in_header_; }
    bool ended() const noexcept { return ended_; }  // a lone "." was seen
    // With extract: the To, Cc and Bcc addresses, in header order.
    const std::vector<address::Address>& header_recipients() const noexcept { return rcpts_; }
    // A byte >= 0x80 in the header as stored (needs SMTPUTF8).
    bool header_8bit() const noexcept { return header_8bit_; }
    // Header lines left longer than MaxHeaderLine: nowhere to fold them.
    std::size_t long_header_lines() const noexcept { return long_lines_; }
    // The bytes produced so far and not yet taken.
    std::string take_output() { return std::exchange(out_, std::string()); }

private:
    struct Header {
        std::string raw;   // "Name: value" with inner CRLFs of folded lines, no final CRLF
        std::string name;  // lower case
    };
    void put(char c);
    void end_line();
    void header_line();
    void complete_headers();
    void body_line_end();

    MessageSettings s_;
    std::string out_;
    std::string line_;  // header mode: the current line
    std::vector<Header> headers_;
    std::vector<address::Address> rcpts_;
    std::size_t header_bytes_ = 0;
    std::size_t long_lines_ = 0;
    bool in_header_ = true;
    bool first_line_ = true;
    bool pending_cr_ = false;
    bool bol_ = true;
    bool dot_held_ = false;
    bool ended_ = false;
    bool header_8bit_ = false;
    std::string error_;  // first error; sticky
};

// One header field as stored ("Name: value", inner CRLFs between its lines,
// no final CRLF) with each line longer than max_line octets folded at the
// last white space that keeps the part before it within max_line, repeatedly.
// A fold never leaves a line of white space only, and never goes before the
// colon. kept_long_out is increased by the lines that stay too long.
std::string fold_header(std::string_view field, std::size_t max_line, std::size_t& kept_long_out);

// RFC 5322 date-time in English ("Tue, 14 May 2024 10:00:00 +0200") for
// the broken-down local time tm whose UTC offset is gmtoff seconds.
std::string format_date(const std::tm& tm, long gmtoff);
// A From header value: "Full Name <addr>", the name quoted when needed; just
// addr when name is empty.
std::string format_from(std::string_view name, std::string_view addr);
// The full name from a passwd gecos field: the part before the first ',',
// '&' replaced by the login name with its first letter in upper case.
std::string gecos_name(std::string_view gecos, std::string_view login);

}  // namespace postern::sendmail
