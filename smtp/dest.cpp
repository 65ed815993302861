// smtp/dest.cpp - next hop -> ordered list of addresses (see dest.hpp).
//
// Address order within one MX host: IPv4 addresses first, then IPv6. Note:
// RFC 6724 would put IPv6 first, but a server whose IPv6 address lacks the
// reverse DNS and SPF its IPv4 address has is refused (5xx, so a bounce) by
// large providers over IPv6 only; trying IPv4 first keeps such mail flowing,
// and IPv6 still follows as a fallback within the same host. Hosts stay in MX
// order; an address already listed (two MX names, one server) is not repeated.
#include "smtp/dest.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "dns/wire.hpp"
#include "util/strings.hpp"

namespace postern::smtp {
namespace {

constexpr std::string_view kNotFound = "Host or domain name not found. Name service error for name=";

// The canonical text of an IP address, or nullopt when s is not one.
std::optional<std::string> ip_literal(std::string_view s) {
    if (s.empty() || s.size() > INET6_ADDRSTRLEN) return std::nullopt;
    std::string z(s);
    unsigned char bin[16];
    char out[INET6_ADDRSTRLEN];
    if (::inet_pton(AF_INET, z.c_str(), bin) == 1) return z;
    if (::inet_pton(AF_INET6, z.c_str(), bin) == 1 && ::inet_ntop(AF_INET6, bin, out, sizeof out) != nullptr)
        return std::string(out);
    return std::nullopt;
}

std::optional<int> parse_port(std::string_view s) {
    if (s == "smtp") return 25;
    if (s == "submission") return 587;
    if (s == "submissions" || s == "smtps") return 465;
    if (s.empty() || s.size() > 5) return std::nullopt;
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    if (v < 1 || v > 65535) return std::nullopt;
    return v;
}

// A host name fit for a lookup, lower case, without the trailing dot.
std::optional<std::string> host_name(std::string_view s) {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    if (s.empty() || !dns::wire::valid_query_name(s)) return std::nullopt;
    // No top-level domain is numeric: "192.0.2.256" is a bad address, not a name.
    auto last = s.substr(s.rfind('.') + 1);
    if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
    return util::to_lower(s);
}

std::string canonical(std::string_view name) {
    if (!name.empty() && name.back() == '.' && name.size() > 1) name.remove_suffix(1);
    return util::to_lower(name);
}

DestFailure not_found(const std::string& name, std::string_view type, dns::Status st) {
    std::string why = st == dns::Status::NoData ? "Host found but no data record of requested type" : "Host not found";
    return {true, "5.4.4", std::string(kNotFound) + name + " type=" + std::string(type) + ": " + why};
}

DestFailure try_again(const std::string& name, std::string_view type) {
    return {false, "4.4.3", std::string(kNotFound) + name + " type=" + std::string(type) + ": Host not found, try again"};
}

// One resolution in progress: the MX lookup, then the address lookups of
// every host at once. Destroying it destroys (cancels) every dns::Lookup.
class Job final : public DestResolver::Pending {
public:
    Job(dns::Resolver& resolver, const DestOptions& options, Nexthop hop, DestResolver::Done done, std::uint32_t seed)
        : resolver_(resolver), options_(options), hop_(std::move(hop)), done_(std::move(done)), rng_(seed) {
        if (!options_.ipv4 && !options_.ipv6) options_.ipv4 = true;
    }

    void start() {
        if (auto lit = ip_literal(hop_.host)) {
            Target t{hop_.host, *lit, hop_.port, 0};
            // Note: the Resolver owns the only way onto the loop we have
            // here; a lookup it refuses (an empty name is never asked)
            // still calls back later, from the loop, which is what done needs.
            mx_ = resolver_.ptr("", [this, t](const Result<dns::Answer<std::string>>&) {
                finish(std::vector<Target>{t});
            });
            return;
        }
        if (!hop_.mx) {
            lookup_hosts({{hop_.host, 0}});
            return;
        }
        mx_ = resolver_.mx(hop_.host, [this](Result<dns::Answer<dns::Mx>> r) { on_mx(std::move(r)); });
    }

private:
    struct Host {
        std::string name;
        int preference = 0;
        dns::Lookup a, aaaa;
        std::vector<std::string> v4, v6;
        // Why a lookup found nothing: [0] for A, [1] for AAAA.
        std::optional<DestFailure> failure[2];
        // The failure that explains this host best: a temporary one before a
        // permanent one, A before AAAA (whatever order the answers came in).
        const DestFailure* why() const {
            for (bool temp : {true, false})
                for (const auto& f : failure)
                    if (f && f->permanent != temp) return &*f;
            return nullptr;
        }
    };

    void on_mx(Result<dns::Answer<dns::Mx>> r) {
        if (!r) {
            if (r.error().kind == Error::Kind::Temp) return finish(try_again(hop_.host, "MX"));
            return finish(not_found(hop_.host, "MX", dns::Status::NxDomain));
        }
        if (r->status == dns::Status::NxDomain) return finish(not_found(hop_.host, "MX", dns::Status::NxDomain));
        if (r->status == dns::Status::NoData) return lookup_hosts({{hop_.host, 0}});
        MxPlan plan = order_mx(r->records, options_.myhostname, hop_.host, rng_);
        if (plan.failure) return finish(*plan.failure);
        lookup_hosts(plan.hosts);
    }

    void lookup_hosts(const std::vector<std::pair<std::string, int>>& hosts) {
        hosts_.resize(hosts.size());
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            hosts_[i].name = hosts[i].first;
            hosts_[i].preference = hosts[i].second;
            outstanding_ += (options_.ipv4 ? 1 : 0) + (options_.ipv6 ? 1 : 0);
        }
        // Every lookup is started before any can answer: callbacks never run
        // inside the call that starts them.
        for (std::size_t i = 0; i < hosts_.size(); ++i) {
            if (options_.ipv4)
                hosts_[i].a = resolver_.a(hosts_[i].name, [this, i](Result<dns::Answer<std::string>> r) {
                    on_address(i, "A", std::move(r));
                });
            if (options_.ipv6)
                hosts_[i].aaaa = resolver_.aaaa(hosts_[i].name, [this, i](Result<dns::Answer<std::string>> r) {
                    on_address(i, "AAAA", std::move(r));
                });
        }
    }

    void on_address(std::size_t i, std::string_view type, Result<dns::Answer<std::string>> r) {
        Host& h = hosts_[i];
        bool v6 = type == "AAAA";
        auto& failure = h.failure[v6 ? 1 : 0];
        if (!r) {
            // Error::perm: a name that cannot be asked; it has no address.
            failure = r.error().kind == Error::Kind::Temp ? try_again(h.name, type)
                                                           : not_found(h.name, type, dns::Status::NxDomain);
        } else if (r->status != dns::Status::Found) {
            failure = not_found(h.name, type, r->status);
        } else {
            (v6 ? h.v6 : h.v4) = std::move(r->records);
        }
        if (--outstanding_ == 0) assemble();
    }

    void assemble() {
        std::vector<Target> out;
        auto full = [&] { return options_.max_addresses != 0 && out.size() >= options_.max_addresses; };
        auto add = [&](const Host& h, const std::string& addr) {
            if (full()) return;
            for (const auto& t : out)
                if (t.addr == addr) return;
            out.push_back(Target{h.name, addr, hop_.port, h.preference});
        };
        for (const auto& h : hosts_) {
            for (const auto& a : h.v4) add(h, a);
            for (const auto& a : h.v6) add(h, a);
        }
        if (!out.empty()) return finish(std::move(out));
        // No address anywhere: permanent only when every answer said so.
        // The reason names the most preferred host with a temporary failure,
        // else the most preferred host.
        for (const auto& h : hosts_)
            if (const auto* f = h.why(); f && !f->permanent) return finish(*f);
        if (!hosts_.empty())
            if (const auto* f = hosts_.front().why()) return finish(*f);
        return finish(not_found(hop_.host, options_.ipv4 ? "A" : "AAAA", dns::Status::NxDomain));
    }

    // The last thing a Job does: done may destroy it.
    void finish(DestResult result) {
        DestResolver::Done done = std::move(done_);
        done_ = nullptr;
        if (done) done(result);
    }

    dns::Resolver& resolver_;
    DestOptions options_;
    Nexthop hop_;
    DestResolver::Done done_;
    std::mt19937 rng_;
    dns::Lookup mx_;
    std::vector<Host> hosts_;
    int outstanding_ = 0;
};

}  // namespace

Result<Nexthop> parse_nexthop(std::string_view s) {
    auto bad = [&](const char* why) {
        return Error::config("invalid next hop \"" + util::printable(s, 100) + "\": " + why);
    };
    Nexthop hop;
    std::string_view rest = s;
    if (s.empty()) return bad("empty");
    if (rest.front() == '[') {
        auto close = rest.find(']');
        if (close == std::string_view::npos) return bad("missing ']'");
        std::string_view inner = rest.substr(1, close - 1);
        rest = rest.substr(close + 1);
        hop.mx = false;
        if (inner.size() >= 5 && util::iequals(inner.substr(0, 5), "ipv6:")) {
            inner.remove_prefix(5);
            unsigned char bin[16];
            std::string z(inner);
            if (inner.find(':') == std::string_view::npos || ::inet_pton(AF_INET6, z.c_str(), bin) != 1)
                return bad("not an IPv6 address after \"IPv6:\"");
        }
        if (auto lit = ip_literal(inner)) {
            hop.host = *lit;
        } else if (auto name = host_name(inner)) {
            hop.host = *name;
        } else {
            return bad("not a host name or IP address inside [...]");
        }
        if (!rest.empty()) {
            if (rest.front() != ':') return bad("unexpected text after ']'");
            auto port = parse_port(rest.substr(1));
            if (!port) return bad("bad port");
            hop.port = *port;
        }
        return hop;
    }
    // A bare IP address is a literal, too: there is nothing to look up as MX.
    if (auto lit = ip_literal(rest); lit && rest.find(':') != std::string_view::npos) {
        hop.host = *lit;
        hop.mx = false;
        return hop;
    }
    auto colon = rest.rfind(':');
    if (colon != std::string_view::npos) {
        auto port = parse_port(rest.substr(colon + 1));
        if (!port) return bad("bad port");
        hop.port = *port;
        rest = rest.substr(0, colon);
    }
    if (auto lit = ip_literal(rest)) {
        if (lit->find(':') != std::string::npos) return bad("an IPv6 address with a port needs [...]");
        hop.host = *lit;
        hop.mx = false;
        return hop;
    }
    auto name = host_name(rest);
    if (!name) return bad("not a domain name");
    hop.host = *name;
    return hop;
}

std::string Target::text() const { return host + "[" + addr + "]:" + std::to_string(port); }

MxPlan order_mx(const std::vector<dns::Mx>& records, std::string_view myhostname, std::string_view domain,
                std::mt19937& rng) {
    MxPlan plan;
    std::string dom = canonical(domain);
    if (records.size() == 1 && records[0].exchange == ".") {
        plan.failure = DestFailure{true, "5.1.10", "Domain " + dom + " does not accept mail (nullMX)"};
        return plan;
    }
    // Merge names (keeping the best preference); "." among others is no host.
    std::vector<std::pair<std::string, int>> hosts;
    for (const auto& r : records) {
        if (r.exchange.empty() || r.exchange == ".") continue;
        std::string name = canonical(r.exchange);
        auto it = std::find_if(hosts.begin(), hosts.end(), [&](const auto& h) { return h.first == name; });
        if (it == hosts.end()) hosts.emplace_back(std::move(name), r.preference);
        else it->second = std::min<int>(it->second, r.preference);
    }
    std::stable_sort(hosts.begin(), hosts.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    for (auto first = hosts.begin(); first != hosts.end();) {
        auto last = std::find_if(first, hosts.end(), [&](const auto& h) { return h.second != first->second; });
        std::shuffle(first, last, rng);
        first = last;
    }
    if (!myhostname.empty()) {
        std::string me = canonical(myhostname);
        auto self = std::find_if(hosts.begin(), hosts.end(), [&](const auto& h) { return h.first == me; });
        if (self != hosts.end()) {
            int mine = self->second;
            std::erase_if(hosts, [&](const auto& h) { return h.second >= mine; });
            if (hosts.empty()) {
                plan.failure = DestFailure{true, "5.4.6", "mail for " + dom + " loops back to myself"};
                return plan;
            }
        }
    }
    if (hosts.empty()) {
        // Only "." records (not a proper null MX): nothing to deliver to.
        plan.failure = DestFailure{true, "5.1.10", "Domain " + dom + " does not accept mail (nullMX)"};
        return plan;
    }
    if (hosts.size() > MaxMxHosts) hosts.resize(MaxMxHosts);
    plan.hosts = std::move(hosts);
    return plan;
}

DestResolver::DestResolver(dns::Resolver& resolver, DestOptions options)
    : resolver_(resolver), options_(std::move(options)), rng_(std::random_device{}()) {}

std::unique_ptr<DestResolver::Pending> DestResolver::resolve(const Nexthop& hop, Done done) {
    // Each job shuffles with its own generator, seeded from ours: a job needs
    // only the dns::Resolver, not this object.
    auto job = std::make_unique<Job>(resolver_, options_, hop, std::move(done), static_cast<std::uint32_t>(rng_()));
    job->start();
    return job;
}

}  // namespace postern::smtp
