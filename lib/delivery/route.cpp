// delivery/route.cpp - recipient -> transport:nexthop, as Postfix's trivial-rewrite resolves.
#include "delivery/route.hpp"

#include "util/strings.hpp"

namespace postern::delivery {

std::pair<std::string, std::string> split_transport(std::string_view spec) {
    spec = util::trim(spec);
    auto colon = spec.find(':');
    if (colon == std::string_view::npos) return {std::string(spec), ""};
    return {std::string(spec.substr(0, colon)), std::string(spec.substr(colon + 1))};
}

std::string domain_of(std::string_view address) {
    auto at = address.rfind('@');
    if (at == std::string_view::npos) return "";
    std::string d = util::to_lower(address.substr(at + 1));
    while (!d.empty() && d.back() == '.') d.pop_back();
    return d;
}

Router::Router(const config::Params& p)
    : myhostname_(util::to_lower(p.myhostname)),
      local_transport_(p.local_transport),
      virtual_transport_(p.virtual_transport),
      relay_transport_(p.relay_transport),
      default_transport_(p.default_transport),
      relayhost_(util::trim(p.relayhost)) {
    for (auto& d : util::split_list(p.mydestination)) local_domains_.insert(util::to_lower(d));
    for (auto& d : util::split_list(p.virtual_mailbox_domains)) virtual_domains_.insert(util::to_lower(d));
    for (auto& d : util::split_list(p.relay_domains)) relay_domains_.insert(util::to_lower(d));
}

Result<std::optional<std::string>> Router::lookup_transport(std::string_view address,
                                                            const std::string& domain) const {
    if (transport_maps_.empty()) return std::optional<std::string>();
    std::vector<std::string> keys;
    if (!domain.empty()) keys.push_back(util::to_lower(address));
    if (!domain.empty()) {
        keys.push_back(domain);
        // Parent domains as ".parent": "a.b.example" tries .b.example, then .example.
        for (auto dot = domain.find('.'); dot != std::string::npos; dot = domain.find('.', dot + 1))
            keys.push_back(domain.substr(dot));
    }
    for (auto& key : keys) {
        for (auto& m : transport_maps_) {
            auto v = m->lookup(key);
            if (!v) return Error::temp("transport_maps " + m->spec() + ": " + v.error().text);
            if (*v) return v;
        }
    }
    return std::optional<std::string>();
}

Result<Route> Router::resolve(std::string_view address) const {
    std::string domain = domain_of(address);
    Route r;
    std::string spec;
    std::string default_nexthop = domain;
    if (domain.empty() || local_domains_.count(domain)) {
        r.cls = Route::Class::Local;
        spec = local_transport_;
        default_nexthop = myhostname_;
    } else if (virtual_domains_.count(domain)) {
        r.cls = Route::Class::Virtual;
        spec = virtual_transport_;
    } else if (relay_domains_.count(domain)) {
        r.cls = Route::Class::Relay;
        spec = relay_transport_;
        if (!relayhost_.empty()) default_nexthop = relayhost_;
    } else {
        r.cls = Route::Class::Default;
        spec = default_transport_;
        if (!relayhost_.empty()) default_nexthop = relayhost_;
    }
    auto [transport, nexthop] = split_transport(spec);
    auto mapped = lookup_transport(address, domain);
    if (!mapped) return mapped.error();
    if (*mapped) {
        auto [t, n] = split_transport(**mapped);
        if (!t.empty()) {
            transport = t;
            // A new transport without a next hop goes to the recipient domain.
            nexthop = n;
        } else if (!n.empty()) {
            nexthop = n;
        }
    }
    if (transport.empty()) return Error::config("empty transport for <" + std::string(address) + ">");
    r.transport = transport;
    r.nexthop = nexthop.empty() && transport != "error" && transport != "discard" ? default_nexthop : nexthop;
    return r;
}

}  // namespace postern::delivery
