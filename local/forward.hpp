// NAME
//   local/forward.hpp - alias values, .forward and :include: files: the entries
// PURPOSE
//   Parses the destination lists that aliases(5), ~/.forward and :include:
//   files share: comma-separated entries (newlines too, in files; '#' lines are
//   comments), each one of
//     user, user@domain, <user@domain>   an address (delivered or forwarded)
//     \user                              the user's own mailbox, no more lookups
//     /path/file  /path/dir/             append to a file (mbox) or a Maildir
//     |command                           a command fed the message
//     :include:/path                     more entries from a file
//   An entry may be written "in double quotes" (to hold commas: "|a, b").
//   Also: which forward_path files to try for a user, and whether a .forward
//   or :include: file is safe to obey. Not the expansion itself
//   (local/aliases.hpp) and no file reading: callers read, as the right user.
// SYNOPSIS
//   auto e = parse_entries("bob, \"|/usr/bin/filter -x\", /var/log/mail.copy");
//   auto f = parse_file_entries(forward_text);
//   auto paths = forward_paths(cfg, {.home = h, .user = u, .extension = ext, ...});
//   std::string why = unsafe_file(st, owner_uid);   // "" when safe
// ERRORS
//   parse_*: Error::perm naming the problem (unterminated quote, empty command
//   or file name, relative :include: path, more than MaxEntries entries).
// SECURITY
//   Alias values come from the administrator, .forward files from users (and
//   are read as that user); both are only parsed here, never executed. An
//   unsafe file (writable by group or others, or owned by someone other than
//   the user or root) is not obeyed.
// SEE ALSO
//   local/aliases.hpp, aliases(5), Postfix local(8) "EXTERNAL FILE DELIVERY"
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "util/result.hpp"

namespace postern::local {

struct Entry {
    enum class Kind { Address, File, Command, Include };
    Kind kind = Kind::Address;
    std::string text;        // address, path or command line
    bool backslash = false;  // Address written as \user
    bool operator==(const Entry&) const = default;
};

inline constexpr std::size_t MaxEntries = 10000;
inline constexpr std::size_t MaxForwardFileSize = 64 * 1024;

Result<std::vector<Entry>> parse_entries(std::string_view list);
// A file: lines whose first non-blank byte is '#' are comments, newlines
// separate entries like commas.
Result<std::vector<Entry>> parse_file_entries(std::string_view text);

// The values $name may use in forward_path.
struct ForwardVars {
    std::string home, user, extension, recipient_delimiter, local, domain, recipient;
};
// forward_path expanded for one recipient, in order. An entry that uses
// $extension is left out when the recipient has no extension (so the default
// "$home/.forward${recipient_delimiter}${extension}, $home/.forward" tries
// only ~/.forward for "bob" and ~/.forward+lists first for "bob+lists").
std::vector<std::string> forward_paths(const config::Config& cfg, const ForwardVars& v);

// Why a .forward or :include: file must not be obeyed, or "" when it may:
// not a regular file, owned by neither owner nor root, writable by group or
// others.
std::string unsafe_file(const struct stat& st, uid_t owner);

}  // namespace postern::local
