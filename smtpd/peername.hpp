// NAME
//   smtpd/peername.hpp - the client's verified host name (forward-confirmed reverse DNS)
// PURPOSE
//   What Postfix's smtpd does before its greeting: look up the PTR names of
//   the client address, then the addresses of those names; a name whose A
//   (or, for an IPv6 client, AAAA) records include the client address is the
//   client's name, as in "connect from mx.example.org[192.0.2.1]". Anything
//   else (no PTR, a name that does not resolve back, a malformed name, DNS
//   trouble, the time limit) gives "unknown". Not for policy: nothing is
//   refused here; the reasons only go to the log.
// SYNOPSIS
//   auto l = std::make_unique<PeerNameLookup>(resolver, base, "192.0.2.1", 10s,
//                                             [](std::string name) { ... });  // "name" or "unknown"
//   l.reset();   // cancels: done is not called
// ERRORS
//   None returned: every failure ends in "unknown" and, where a mail
//   administrator would want to know, a warning in the log.
// SECURITY
//   PTR answers are untrusted: a name is used only if it is a syntactically
//   valid host name (letters, digits, '-', '_', dots; not all-numeric) and
//   resolves back to the address. At most kMaxNames PTR names are tried, one
//   forward lookup at a time, all within the caller's time limit.
// SEE ALSO
//   dns/dns.hpp, smtpd/server.cpp, Postfix smtpd_peer.c (the behaviour copied)
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dns/dns.hpp"
#include "event/event.hpp"

namespace postern::smtpd {

// A name fit for "name[addr]" and the Received header (Postfix valid_hostname()).
bool valid_hostname(std::string_view name) noexcept;

class PeerNameLookup {
public:
    static constexpr std::size_t kMaxNames = 4;

    // done is called exactly once, from the event loop (never from inside
    // this constructor), unless this object is destroyed first.
    PeerNameLookup(dns::Resolver& resolver, event::Base& base, std::string addr, std::chrono::milliseconds timeout,
                   std::function<void(std::string name)> done);
    PeerNameLookup(const PeerNameLookup&) = delete;
    PeerNameLookup& operator=(const PeerNameLookup&) = delete;

private:
    void on_ptr(Result<dns::Answer<std::string>> r);
    void next_name();
    void on_addresses(Result<dns::Answer<std::string>> r);
    void finish(std::string name);

    dns::Resolver& resolver_;
    std::string addr_;
    bool v6_ = false;
    std::function<void(std::string)> done_;
    std::vector<std::string> names_;  // PTR names still to try
    std::string trying_;
    dns::Lookup lookup_;
    event::Event timer_;
};

}  // namespace postern::smtpd
