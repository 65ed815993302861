// NAME
//   postern/user_cmd.hpp - `postern user add|passwd|del|list`: the virtual users
// PURPOSE
//   The administrator's commands for the virtual user table
//   (virtual_user_database: address -> password hash, mailbox, quota) that
//   the auth daemon checks passwords against. Every change also rewrites the
//   public companion table virtual_user_mailbox_map (address -> mailbox),
//   which virtual_mailbox_maps should list so that smtpd accepts the address
//   and local delivers to it. `add` warns (but goes on) when main.cf would
//   not route mail to the new user, naming the line to add. Not the table
//   format or the hashing (auth/users.hpp), and not mailbox creation: local
//   makes the Maildir at the first delivery, and `del` leaves it in place.
//
//     add ADDRESS [--mailbox PATH] [--quota BYTES]
//                     mailbox default: auth::default_mailbox ("domain/local/");
//                     quota: bytes, or with a suffix k, M, G (x1024); 0 = none.
//                     Note: stored and handed on by auth; delivery does not
//                     enforce it yet
//     passwd ADDRESS  a new password, mailbox and quota kept
//     del ADDRESS     the entry only
//     list [--json]   "address mailbox quota" lines, or one JSON object per
//                     line: {"address":..,"mailbox":..,"quota":N}; never a hash
//
//   Passwords: when standard input is a terminal, read twice from /dev/tty
//   with echo off ("Password: ", "Retype password: "); otherwise one line
//   from standard input (the newline or CRLF stripped). Never from the
//   command line: an extra argument is a usage error.
// SYNOPSIS
//   int code = user_cmd::run(config_dir, {"add", "bob@example.org"}, std::cout);
//   if (code == EX_USAGE) print_usage();   // the caller owns the usage text
//   auto q = user_cmd::parse_quota("10M");  // 10485760
// ERRORS
//   run returns a sysexits.h code and has printed "postern: ..." lines on
//   stderr: EX_USAGE (64) malformed arguments (nothing printed but the
//   reason: the caller shows the usage); EX_DATAERR (65) a bad address,
//   mailbox path, quota or password (empty, over MaxPasswordLength or what
//   crypt(3) can hash, a NUL byte, the two entries differ); EX_NOUSER (67) passwd/del of an unknown
//   address; EX_CANTCREAT (73) add of an address that exists; EX_NOPERM
//   (77) not root; EX_TEMPFAIL (75) the tables could not be read or written
//   (nothing changed); EX_IOERR (74) the password or listing could not be
//   read or written; EX_CONFIG (78) main.cf is broken, a table type cannot
//   be written or an entry is damaged.
// SECURITY
//   Root only, for every subcommand: the table holds password hashes and is
//   0600. The password is read without stdio buffering, wiped from memory
//   after hashing, never logged or printed; the terminal's settings are
//   restored on every exit path, also when a signal (INT, TERM, HUP, QUIT,
//   TSTP) arrives while echo is off.
// SEE ALSO
//   auth/users.hpp, doc/postern.1 (user), doc/guide.md (Virtual users)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl.hpp"

namespace postern::user_cmd {

// Bytes, after the line end is stripped: what the auth daemon accepts. Note:
// crypt(3) may take fewer (libxcrypt: CRYPT_MAX_PASSPHRASE_SIZE - 1 = 511);
// a longer password is refused then too, as it could not be hashed.
inline constexpr std::size_t MaxPasswordLength = sasl::MaxPasswordLength;

// args: what follows "user" on the command line.
int run(const std::string& config_dir, const std::vector<std::string>& args, std::ostream& out);

// "1000", "64k", "10M", "2G" (k/M/G: powers of 1024, either case); nullopt for
// anything else, including values over 2^63 - 1 bytes.
std::optional<std::uint64_t> parse_quota(std::string_view text);

}  // namespace postern::user_cmd
