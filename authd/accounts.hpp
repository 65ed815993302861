// NAME
//   authd/accounts.hpp - what the auth daemon tells about a user: uid, gid, home, mailbox
// PURPOSE
//   Turns a passwd entry (system users) or a virtual_user_database entry
//   (virtual users) into an auth::UserInfo, with the same rules local
//   delivery uses: a system user's mailbox is home/home_mailbox, or
//   mail_spool_directory/user when home_mailbox is empty; a virtual user's
//   is virtual_mailbox_base/MAILBOX, owned by the ids virtual_uid_maps and
//   virtual_gid_maps give for the address (static:N, or tables keyed by the
//   address, then by @domain). VirtualDirectory keeps the user table and
//   the id tables open and opens them again when they are replaced. Not the
//   password checks (authd/backends.hpp). Runs on the loop thread only: maps
//   are not thread-safe.
// SYNOPSIS
//   auto info = system_user_info(pw, settings);                 // auth::UserInfo
//   VirtualDirectory dir(params);
//   auto u = dir.find("Alice@Example.org");                     // Result<optional<VirtualUser>>
//   auto info = dir.info(**u);                                   // Result<auth::UserInfo>
// ERRORS
//   find: Error::temp when the table cannot be opened or read (retried at the
//   next call). info: Error::temp naming the parameter when no uid or gid
//   can be found, an id is not a number in 1..2^31-1, or
//   virtual_mailbox_base is not an absolute path.
// SECURITY
//   Addresses come from the network: anything normalize_address refuses is
//   simply not found. A virtual user never gets uid or gid 0.
// SEE ALSO
//   auth/users.hpp, local(8), postern.conf(5)
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/proto.hpp"
#include "auth/users.hpp"
#include "config/config.hpp"
#include "maps/maps.hpp"
#include "privs/privs.hpp"
#include "util/result.hpp"

namespace postern::authd {

struct MailboxSettings {
    std::string home_mailbox;          // "Maildir/", "" = the spool
    std::string mail_spool_directory;  // "/var/mail"
    std::string virtual_mailbox_base;
    static MailboxSettings from(const config::Params& p);
};

// dir + "/" + name, with no doubled '/'.
std::string join_path(std::string_view dir, std::string_view name);

auth::UserInfo system_user_info(const privs::UserInfo& pw, const MailboxSettings& s);

// virtual_uid_maps / virtual_gid_maps: "static:N" or a list of tables whose
// values are numbers.
class IdMap {
public:
    IdMap(std::string name, std::string_view spec);
    // The id for address (tried as is, then as @domain); nullopt when none.
    Result<std::optional<unsigned>> lookup(std::string_view address);

private:
    struct Table {
        std::string spec;
        std::unique_ptr<maps::Map> map;
    };
    std::string name_;  // the parameter, for errors
    std::optional<unsigned> fixed_;
    std::string bad_;  // why the spec is unusable, "" when it is fine
    std::vector<Table> tables_;
};

class VirtualDirectory {
public:
    VirtualDirectory(const config::Params& p);
    // The first open's error, for a warning at start-up ("" when fine).
    const std::string& open_error() const noexcept { return open_error_; }

    Result<std::optional<auth::VirtualUser>> find(std::string_view address);
    Result<auth::UserInfo> info(const auth::VirtualUser& u);

private:
    Result<void> reopen_if_needed();

    std::string spec_;
    std::string base_;
    std::unique_ptr<auth::UserTable> table_;
    std::string open_error_;
    IdMap uids_, gids_;
};

}  // namespace postern::authd
