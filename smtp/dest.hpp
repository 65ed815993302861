// NAME
//   smtp/dest.hpp - where to deliver: next hop -> ordered list of addresses
// PURPOSE
//   RFC 5321 section 5 for the smtp agent: a next hop "example.org" is looked
//   up as MX records (sorted by preference, equal preferences shuffled), each
//   MX host then as A and AAAA records (as inet_protocols allows); no MX
//   records: the domain itself is the host (its A/AAAA records); a null MX
//   (RFC 7505: one MX ".") bounces at once; our own name (myhostname) among
//   the MX hosts: only hosts more preferred than ourselves are tried, and when
//   we are the best one the mail "loops back to myself" (bounce). A next hop
//   "[host]:port" or "[192.0.2.1]" skips the MX lookup (relayhost, transport
//   maps). At most max_addresses addresses are returned, in the order to try:
//   hosts in MX order, and for each host its IPv4 addresses before its IPv6
//   ones (why: smtp/dest.cpp), an address listed once.
//   Not the SMTP session (smtp/protocol.hpp) and not the DNS client (lib/dns).
// SYNOPSIS
//   auto hop = parse_nexthop("[smtp.example.net]:587");        // Result<Nexthop>
//   DestResolver d(resolver, {.myhostname = "mx.example.org"});
//   auto pending = d.resolve(*hop, [](const DestResult& r) {...});  // cancel by destroying `pending`
//   auto ordered = order_mx(records, "mx.example.org", "example.org", rng);  // the pure part
// ERRORS
//   A DestFailure says permanent or not, with a DSN and a Postfix-shaped
//   reason: NXDOMAIN for the domain -> 5.4.4 "Host or domain name not found.
//   Name service error for name=example.org type=MX: Host not found"; null MX
//   -> 5.1.10 "Domain example.org does not accept mail (nullMX)"; loops back
//   -> 5.4.6 "mail for example.org loops back to myself"; no address for any
//   host -> 5.4.4 when every lookup said NXDOMAIN/NODATA, else 4.4.3 (a
//   server failure or timeout: try again later).
// SECURITY
//   DNS answers are untrusted (lib/dns parses them strictly); the number of
//   MX hosts looked up is bounded (MaxMxHosts) as is the address list.
// SEE ALSO
//   RFC 5321 section 5, RFC 7505; dns/dns.hpp
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dns/dns.hpp"
#include "util/result.hpp"

namespace postern::smtp {

inline constexpr std::size_t MaxMxHosts = 10;

struct Nexthop {
    std::string host;     // domain or host name, lower case; or an IP literal without brackets
    int port = 25;
    bool mx = true;       // false for "[host]" forms: no MX lookup
};
// "example.org", "example.org:2525", "[mx.example.org]", "[mx.example.org]:587",
// "[192.0.2.1]:25", "[ipv6:2001:db8::1]" / "[2001:db8::1]". Error::config otherwise.
Result<Nexthop> parse_nexthop(std::string_view s);

struct Target {
    std::string host;     // the MX host name (or the literal)
    std::string addr;     // "192.0.2.1" / "2001:db8::1"
    int port = 25;
    int preference = 0;   // the MX preference (0 without MX)
    // "mx.example.org[192.0.2.1]:25", as logs and reasons name a server.
    std::string text() const;
};

struct DestFailure {
    bool permanent = false;
    std::string dsn;      // "5.4.4", "4.4.3" ...
    std::string reason;
};

using DestResult = std::variant<std::vector<Target>, DestFailure>;

struct DestOptions {
    std::string myhostname;            // lower case
    bool ipv4 = true, ipv6 = true;     // inet_protocols
    std::size_t max_addresses = 5;     // smtp_mx_address_limit
};

// The MX part, without DNS: sorted by preference, ties shuffled with rng,
// hosts with the same name merged; our own name drops itself and every less
// preferred host (nullopt host list + failure when we are the best MX). The
// null MX case is checked here too.
struct MxPlan {
    std::vector<std::pair<std::string, int>> hosts;  // (host, preference) in the order to try
    std::optional<DestFailure> failure;
};
MxPlan order_mx(const std::vector<dns::Mx>& records, std::string_view myhostname, std::string_view domain,
                std::mt19937& rng);

class DestResolver {
public:
    using Done = std::function<void(const DestResult&)>;
    class Pending {   // destroying it cancels the lookups; done is then never called
    public:
        virtual ~Pending() = default;
    };

    DestResolver(dns::Resolver& resolver, DestOptions options);
    // done runs exactly once, on the event loop, never inside resolve().
    std::unique_ptr<Pending> resolve(const Nexthop& hop, Done done);

private:
    dns::Resolver& resolver_;
    DestOptions options_;
    std::mt19937 rng_;
};

}  // namespace postern::smtp
