// NAME
//   smtpd/senders.hpp - which envelope senders an authenticated user may use
// PURPOSE
//   smtpd_reject_sender_login_mismatch: with smtpd_sender_login_maps, a table
//   says which login names own an address (looked up as the address, the
//   address without its extension, then "@domain"; the value is a list of
//   logins). Without a table, users own their own addresses: a virtual user
//   its address, a system user `name@` any of mydestination (or the bare
//   name), with or without a recipient_delimiter extension. Not for deciding
//   who may relay (session.cpp) or for authentication (the auth daemon).
// SYNOPSIS
//   SenderLogins s;  s.load(params);               // before the jail
//   auto owned = s.owned("alice+x@example.org", user);   // optional<bool>
// ERRORS
//   A table that cannot be opened at start-up makes every check nullopt (the
//   client is told to try later, 451 4.3.0), logged once; a failed lookup too.
// SEE ALSO
//   smtpd/session.hpp, maps/maps.hpp
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "maps/maps.hpp"
#include "smtpd/session.hpp"

namespace postern::smtpd {

class SenderLogins {
public:
    void load(const config::Params& p);
    // sender: the envelope sender, lower case, not empty.
    std::optional<bool> owned(std::string_view sender, const AuthUser& user) const;
    const maps::Map* changed_table() const;

private:
    std::vector<std::unique_ptr<maps::Map>> maps_;
    bool maps_ok_ = true, have_maps_ = false;
    std::set<std::string> local_domains_;
    std::string delimiter_;
};

}  // namespace postern::smtpd
