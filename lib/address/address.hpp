// NAME
//   address/address.hpp - RFC 5322 address lists and RFC 5321 address quoting
// PURPOSE
//   Turns the value of an address header field (To, Cc, Bcc, From ...) into
//   the addr-specs it names, the way a mail administrator expects: display
//   names, comments and group names are dropped, quoted local parts are
//   unquoted, route addresses lose their route, obsolete forms (dots and
//   quoted strings mixed in local parts, empty list members) are tolerated.
//   It also quotes a local part for use in an SMTP path (RFC 5321 4.1.2).
//   It is not a header parser (mime), does no rewriting (no myorigin, no
//   canonical maps) and no I/O; an address without "@" is returned as it is
//   and the caller decides how to qualify it.
// SYNOPSIS
//   auto list = address::parse_list("Ann <ann@x.example>, undisclosed:;");
//   for (auto& a : *list) use(a.local, a.domain, a.spec());
//   std::string s = address::quote_local_part("john doe");   // "\"john doe\""
//   bool ok = address::is_dot_atom("john.doe");
// ERRORS
//   parse_list returns Error::perm("<what> in address list") for malformed
//   input (unbalanced <>, unterminated quote, comment or domain literal,
//   "@" without a domain, a phrase that is not followed by <address>), and
//   for input beyond the limits below. Nothing is a bug.
// SECURITY
//   Input is untrusted (message headers, command-line arguments of any
//   user). Limits: MaxListLength bytes of input, MaxAddresses addresses,
//   MaxAddressLength bytes per address, MaxCommentDepth nested comments.
//   Every byte value is accepted without undefined behaviour
//   (fuzz/address_fuzz.cpp); bytes >= 0x80 (UTF-8, RFC 6531) are atext.
// SEE ALSO
//   RFC 5322 3.4 and 4.4, RFC 5321 4.1.2, RFC 6531 3.3, Postfix tok822(3)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace postern::address {

inline constexpr std::size_t MaxListLength = 1u << 20;   // one header field, unfolded
inline constexpr std::size_t MaxAddresses = 10000;       // per list
inline constexpr std::size_t MaxAddressLength = 998;     // local@domain as returned by spec()
inline constexpr std::size_t MaxCommentDepth = 32;

struct Address {
    std::string local;   // unquoted: the characters of the local part
    std::string domain;  // empty if the address had no "@"; "[...]" for a domain literal
    // RFC 5321 form: quote_local_part(local), then "@" domain if there is one.
    std::string spec() const;
};

// The addresses of an RFC 5322 address-list (or mailbox-list), in order.
// An empty list, or one of only empty groups, is an empty vector.
Result<std::vector<Address>> parse_list(std::string_view text);

// True if s is a non-empty dot-atom: atext runs separated by single dots.
bool is_dot_atom(std::string_view s) noexcept;

// s as an RFC 5321 Local-part: s itself if it is a dot-atom, else a
// quoted-string with '"' and '\' escaped by a backslash.
std::string quote_local_part(std::string_view s);

}  // namespace postern::address
