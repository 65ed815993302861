// NAME
//   qmgr/resolve.hpp - which transport and next hop a recipient goes to
// PURPOSE
//   Postfix's trivial-rewrite "resolve" for the queue manager: the recipient's
//   domain class (mydestination -> local_transport, virtual_mailbox_domains ->
//   virtual_transport, relay_domains -> relay_transport, anything else ->
//   default_transport with relayhost), overridden by transport_maps (full
//   address, then the domain, then its parents as ".parent"). Also the
//   destination key that per-destination concurrency counts against. Not
//   delivery, not alias expansion (local does that), not DNS (smtp does).
// SYNOPSIS
//   Router r(params);  r.add_transport_map(std::move(map));   // before the jail
//   auto route = r.resolve("User@Example.COM");   // Result<Route>
//   route->transport == "smtp"; route->nexthop == "example.com";
//   if (auto* m = r.changed_table()) ...;        // rebuilt: qmgr must restart
// ERRORS
//   A transport map that fails: Error::temp (the message waits). An entry
//   that is not "transport:nexthop"-shaped: Error::config naming the map.
// SECURITY
//   Addresses come from queue files written from network input: they are
//   only split and case-folded here, never interpreted further (no percent
//   hack, no source routes, no "!" paths: smtpd already refused those for
//   relaying, and here they stay part of the local part).
// SEE ALSO
//   qmgr/qmgr.hpp, Postfix trivial-rewrite(8), transport(5)
#pragma once

#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "maps/maps.hpp"
#include "util/result.hpp"

namespace postern::qmgr {

struct Route {
    enum class Class { Local, Virtual, Relay, Default };
    Class cls = Class::Default;
    std::string transport;  // master.cf service name, or "error" / "discard"
    std::string nexthop;    // domain, [host]:port, or for error/discard the reason text
};

// "transport:nexthop" split at the first ':' (either part may be empty).
std::pair<std::string, std::string> split_transport(std::string_view spec);

// The domain of an address, lower-cased, without a trailing dot; "" if none.
std::string domain_of(std::string_view address);

class Router {
public:
    explicit Router(const config::Params& p);
    void add_transport_map(std::unique_ptr<maps::Map> m) { transport_maps_.push_back(std::move(m)); }

    Result<Route> resolve(std::string_view address) const;

    // The first transport map whose file was replaced since it was opened, or
    // nullptr. qmgr is jailed and cannot open it again: it exits instead.
    const maps::Map* changed_table() const;

private:
    Result<std::optional<std::string>> lookup_transport(std::string_view address, const std::string& domain) const;

    std::string myhostname_;
    std::set<std::string, std::less<>> local_domains_, virtual_domains_, relay_domains_;
    std::string local_transport_, virtual_transport_, relay_transport_, default_transport_, relayhost_;
    std::vector<std::unique_ptr<maps::Map>> transport_maps_;
};

// A Router with the transport_maps of p opened (before the jail). A table
// that cannot be opened is fatal (EX_CONFIG): mail must not take a wrong route.
std::unique_ptr<Router> make_router(const config::Params& p);

}  // namespace postern::qmgr
