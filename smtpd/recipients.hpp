// NAME
//   smtpd/recipients.hpp - who is a local recipient
// PURPOSE
//   Answers "does this local part exist?" for RCPT validation: system users
//   (read from the password database before the chroot) plus the keys of
//   alias_maps; for virtual_mailbox_domains, "does this address exist?"
//   from the keys of virtual_mailbox_maps. Not delivery:
//   aliases are only checked for existence here, never expanded.
// SYNOPSIS
//   LocalRecipients r;  r.load(params);   // as root, before the jail
//   r.exists("alice");                    // std::optional<bool>
//   if (auto* m = r.changed_table()) ...  // rebuilt since load: time for a new smtpd
//   if (r.users_changed(now)) ...         // /etc/passwd changed since load: the same
// ERRORS
//   A map that fails at lookup time gives nullopt (try later, 451).
// CHANGES
//   The maps cannot be opened again from inside the jail; changed_table()
//   tells the server that one was rebuilt, so that the process can exit and
//   master start one with the new table (maps/maps.hpp, Map::changed).
//   Likewise users_changed() for /etc/passwd, watched through a descriptor
//   opened before the jail (fs::FileWatch: replaced, or written in place),
//   looked at at most once a second. An smtpd lives for max_use x
//   service_client_limit sessions, which under steady traffic can be days, so
//   a new user must not wait for it to end. Users from other NSS sources
//   (LDAP, systemd) are seen only when the process ends.
// SECURITY
//   Keys are lower-cased local parts; nothing is executed.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "fs/fs.hpp"
#include "maps/maps.hpp"
#include "util/unique_fd.hpp"

namespace postern::smtpd {

class LocalRecipients {
public:
    void load(const config::Params& p);
    std::optional<bool> exists(std::string_view local) const;
    // A virtual mailbox user@domain: a key of virtual_mailbox_maps (as local
    // delivers it: the address without its extension). nullopt: try later.
    std::optional<bool> virtual_exists(std::string_view address) const;
    // The first alias map whose file was replaced since load(), or nullptr.
    const maps::Map* changed_table() const;
    // Watches this file (load() watches /etc/passwd) for users_changed().
    void watch_users_file(const std::string& path);
    // The watched file was replaced or modified since watch_users_file();
    // false without a file, and without a look when the last one was less
    // than a second before now.
    bool users_changed(std::chrono::steady_clock::time_point now);
    void add_user(std::string name) { users_.insert(std::move(name)); }

private:
    std::unordered_set<std::string> users_;
    std::vector<std::unique_ptr<maps::Map>> maps_;
    std::vector<std::unique_ptr<maps::Map>> virtual_maps_;
    bool virtual_ok_ = true;
    UniqueFd users_fd_;
    fs::FileWatch users_watch_;  // of users_fd_
    std::chrono::steady_clock::time_point users_checked_{};
};

}  // namespace postern::smtpd
