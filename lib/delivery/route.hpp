// NAME
//   delivery/route.hpp - which transport and next hop a recipient goes to
// PURPOSE
//   Postfix's trivial-rewrite "resolve": the recipient's domain class
//   (mydestination -> local_transport, virtual_mailbox_domains ->
//   virtual_transport, relay_domains -> relay_transport, anything else ->
//   default_transport with relayhost), overridden by transport_maps (full
//   address, then the domain, then its parents as ".parent"). qmgr routes
//   every recipient with it (and counts per-destination concurrency against
//   the next hop); sendmail -bv reports the same answer without sending. Not
//   delivery, not alias expansion (local does that), not DNS (smtp does).
// SYNOPSIS
//   auto r = delivery::open_router(params);      // Result<unique_ptr<Router>>, before a jail
//   auto route = (*r)->resolve("User@Example.COM");   // Result<Route>
//   route->transport == "smtp"; route->nexthop == "example.com";
//   if (auto* m = (*r)->changed_table()) ...;    // rebuilt: a jailed qmgr must restart
//   auto [t, n] = delivery::split_transport("smtp:[relay]:587");
// ERRORS
//   open_router: Error::config naming the transport table that cannot be
//   opened (qmgr makes that fatal: mail must not take a wrong route).
//   resolve: a transport map that fails is Error::temp (the message waits);
//   an empty transport is Error::config.
// SECURITY
//   Addresses come from queue files written from network input, or from any
//   local user's command line: they are only split and case-folded here,
//   never interpreted further (no percent hack, no source routes, no "!"
//   paths: smtpd already refused those for relaying, and here they stay part
//   of the local part). Map keys are bounded by maps::MaxKeyLength.
// SEE ALSO
//   qmgr/qmgr.hpp, sendmail/verify.hpp, maps/maps.hpp, Postfix trivial-rewrite(8), transport(5)
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "maps/maps.hpp"
#include "util/result.hpp"
#include "util/strings.hpp"

namespace postern::delivery {

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
    const maps::Map* changed_table() const {
        for (auto& m : transport_maps_)
            if (m->changed()) return m.get();
        return nullptr;
    }

private:
    Result<std::optional<std::string>> lookup_transport(std::string_view address, const std::string& domain) const;

    std::string myhostname_;
    std::set<std::string, std::less<>> local_domains_, virtual_domains_, relay_domains_;
    std::string local_transport_, virtual_transport_, relay_transport_, default_transport_, relayhost_;
    std::vector<std::unique_ptr<maps::Map>> transport_maps_;
};

// A Router with the transport_maps of p opened.
// Note: inline (like changed_table above), so that only the programs that
// open tables need lib/maps' code; lib/delivery's own objects do not, and
// its unit test links without maps.
inline Result<std::unique_ptr<Router>> open_router(const config::Params& p) {
    auto r = std::make_unique<Router>(p);
    for (auto& spec : util::split_list(p.transport_maps)) {
        auto m = maps::open(spec);
        if (!m) return Error::config("transport_maps: " + m.error().text);
        r->add_transport_map(std::move(*m));
    }
    return r;
}

}  // namespace postern::delivery
