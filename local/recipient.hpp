// NAME
//   local/recipient.hpp - taking a recipient address apart for local delivery
// PURPOSE
//   Splits "local@domain" (the last '@'), removes the quotes of a quoted local
//   part, splits the local part at the recipient_delimiter into user and
//   extension ("bob+lists" -> "bob", "lists"), and matches domains against
//   mydestination / virtual_mailbox_domains. Not a full RFC 5321 parser: the
//   addresses come from queue files that smtpd already checked, or from
//   aliases and .forward files.
// SYNOPSIS
//   Address a = split_address("Bob+x@Example.COM");   // local "Bob+x", domain "example.com"
//   LocalPart p = split_extension("bob+x", "+");       // user "bob", extension "x", delimiter '+'
//   DomainList d(params.mydestination);  d.contains("example.com");
// ERRORS
//   None: an address without '@' has an empty domain.
// SECURITY
//   Input is untrusted text; nothing here allocates more than the input.
// SEE ALSO
//   local/aliases.hpp, Postfix recipient_delimiter
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace postern::local {

struct Address {
    std::string local;   // unquoted, case kept
    std::string domain;  // lower case; empty when the address had no '@'
};

Address split_address(std::string_view address);

struct LocalPart {
    std::string user;       // before the delimiter (all of it without one)
    std::string extension;  // after it; empty when there is none
    char delimiter = 0;     // the delimiter that split it, 0 if none
};

// Splits at the first byte that is one of delimiters; a delimiter in the first
// position does not count (a local part "+x" is a user name).
LocalPart split_extension(std::string_view local, std::string_view delimiters);

// A list of domain names from main.cf ("a.example, b.example"); entries that
// are lookup tables ("hash:...") or paths are not supported here and ignored.
class DomainList {
public:
    DomainList() = default;
    explicit DomainList(std::string_view list);
    bool contains(std::string_view domain) const;

private:
    std::vector<std::string> names_;
};

}  // namespace postern::local
