// NAME
//   auth/users.hpp - the virtual user table and password hashes
// PURPOSE
//   The Berkeley DB file behind virtual_user_database (address -> crypt(3)
//   hash, mailbox, quota), read by the auth daemon and changed by `postern
//   user add|passwd|del|list`. Each change also rewrites the public companion
//   table virtual_user_mailbox_map (address -> mailbox, no hashes) that
//   virtual_mailbox_maps lists, so smtpd and the virtual delivery agent know
//   the mailboxes without being able to read a password hash. Also password
//   hashing (yescrypt, else SHA-512-crypt) and checking. Not PAM (auth/ does
//   that) and not the command line (postern/user_cmd.cpp).
// FORMAT
//   key: the address, lower case, `local@domain`. value: `HASH\tMAILBOX\tQUOTA`
//   with HASH a crypt(3) string ("$y$..." or "$6$..."), MAILBOX a path relative
//   to virtual_mailbox_base (a Maildir ends with '/'; no "..", no leading '/'),
//   QUOTA bytes in decimal (0 = none). The table file is written 0600 root; the
//   mailbox map 0644. Both are rewritten whole, atomically (temp file, fsync,
//   rename, fsync dir), under an exclusive lock on PATH.lock (for the spec
//   hash:PATH; the table itself is PATH.db), so readers
//   (maps::Map::changed) see either the old or the new table.
// SYNOPSIS
//   auto t = UserTable::open("hash:/etc/postern/users");   // missing file = no users
//   auto u = (*t)->find("Alice@Example.org");              // Result<optional<VirtualUser>>
//   verify_password(pw, u->hash);
//   update_users("hash:/etc/postern/users", "hash:/etc/postern/user_mailboxes",
//                [&](std::map<std::string, VirtualUser>& all) -> Result<void> { ...; return {}; });
// ERRORS
//   normalize_address, parse_user: Error::config naming the address. open,
//   list_users, update_users: Error::config for a spec other than hash:FILE
//   (UserTable reads what update_users writes) or a corrupt entry;
//   update_users: Error::temp for I/O (Error::perm when the lock file is a
//   symlink or hard link), and whatever mutate returns; on any failure both
//   files are left as they were. Note: both new files are written and
//   fsync'ed before either is renamed into place; were the second rename to
//   fail (same directory: it should not), the mailbox map stays stale until
//   the next change. find: nullopt for an address that normalize_address
//   refuses; Error::config for a corrupt entry. hash_password: Error::config
//   for a password with a NUL byte or over MaxHashedPasswordLength,
//   Error::temp when crypt(3) fails.
// CHANGES
//   UserTable::changed() is maps::Map::changed() (descriptor-based) while the
//   file exists. While it is missing, it stat()s PATH.db by path and turns true
//   once the file appears: the auth daemon is not chrooted, so the path means
//   what it meant at open.
// SECURITY
//   verify_password uses crypt_rn on the stored setting and compares in
//   constant time; a hash that is not a "$id$" crypt string ("*", "!", "",
//   old DES crypt) never matches, nor does a password with a NUL byte or over
//   MaxHashedPasswordLength. Passwords are not logged, and the copies made for
//   crypt(3) are overwritten (explicit_bzero) before returning. Addresses are
//   dot-atom local parts (without '/') at host names, so default_mailbox()
//   always gives a valid mailbox path.
// SEE ALSO
//   crypt(5), auth/proto.hpp, maps/maps.hpp
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "maps/maps.hpp"
#include "util/result.hpp"

namespace postern::auth {

struct VirtualUser {
    std::string address;  // lower case local@domain
    std::string hash;     // crypt(3) string
    std::string mailbox;  // relative to virtual_mailbox_base, e.g. "example.org/alice/"
    std::uint64_t quota = 0;
};

// A valid virtual address: local@domain, ASCII, no white space or control
// characters, at most 254 bytes; returns it folded to lower case.
Result<std::string> normalize_address(std::string_view address);
// A valid relative mailbox path (see FORMAT).
bool valid_mailbox_path(std::string_view path);
// The default mailbox for an address: "domain/local/".
std::string default_mailbox(std::string_view address);

std::string format_user(const VirtualUser& u);  // the value stored under u.address
Result<VirtualUser> parse_user(std::string_view address, std::string_view value);

// Longest password crypt(3) takes (libxcrypt's CRYPT_MAX_PASSPHRASE_SIZE less
// its NUL): below sasl::MaxPasswordLength, so virtual users have this limit.
inline constexpr std::size_t MaxHashedPasswordLength = 511;

// crypt(3): a new yescrypt hash (SHA-512-crypt where yescrypt is missing).
Result<std::string> hash_password(std::string_view password);
bool verify_password(std::string_view password, std::string_view hash);

class UserTable {
public:
    // spec: "hash:PATH" (reads PATH.db). A missing file is an empty table.
    static Result<std::unique_ptr<UserTable>> open(const std::string& spec);
    Result<std::optional<VirtualUser>> find(std::string_view address) const;
    // The file was replaced since open (maps::Map::changed); false when it was missing then and still is.
    bool changed() const;

private:
    UserTable() = default;
    std::string spec_;
    std::unique_ptr<maps::Map> map_;
};

// All users in address order. A missing table: empty.
Result<std::vector<VirtualUser>> list_users(const std::string& spec);
// Locks, reads all users, calls mutate, and when it succeeds writes both
// tables. mailbox_map_spec may be "" (no companion table).
Result<void> update_users(const std::string& spec, const std::string& mailbox_map_spec,
                          const std::function<Result<void>(std::map<std::string, VirtualUser>&)>& mutate);

}  // namespace postern::auth
