// NAME
//   dns/dns.hpp - asynchronous DNS lookups on the event loop (libunbound)
// PURPOSE
//   A stub resolver for the daemons: MX, A, AAAA, TXT, PTR and TLSA lookups
//   that run inside our libevent loop (libunbound's event API, no threads, no
//   forked helper) and report through a callback. It forwards every question
//   to the configured servers (main.cf dns_servers; empty = the nameservers
//   of /etc/resolv.conf plus the names in /etc/hosts) and never recurses
//   from the root itself. Answers carry DNSSEC's verdict (`secure`) for the
//   day a trust anchor is configured (DANE). Not a DNS library: the record
//   types and their parsing live in dns/wire.hpp, and policy (which MX to
//   try, what a missing PTR means) belongs to the callers.
// SYNOPSIS
//   auto r = dns::Resolver::create(ctx.base(), {.servers = "127.0.0.1@5353"});  // before chroot
//   dns::Lookup l = (*r)->mx("example.org", [](Result<dns::Answer<dns::Mx>> a) {...});
//   l.cancel();   // or just let l go out of scope: the callback is never called
//   (*r)->ptr("192.0.2.1", cb);  (*r)->a(name, cb);  (*r)->aaaa(name, cb);  (*r)->txt(name, cb);  (*r)->tlsa(name, cb);
// ERRORS
//   create(): Error::config for a bad server list or libunbound option.
//   A lookup's callback gets exactly one Result, on the event loop and never
//   from inside the call that started it: an Answer whose status is Found,
//   NoData or NxDomain (none of them errors), Error::temp for a timeout, a
//   server failure, a malformed or DNSSEC-bogus answer or too many lookups in
//   flight, and Error::perm for a name that cannot be asked (bad syntax).
//   Destroying the Resolver while lookups are pending drops their callbacks;
//   destroying it from inside a callback is a bug.
// SECURITY
//   Files (/etc/resolv.conf, /etc/hosts) are read by create() only, so create
//   the Resolver before the chroot; afterwards it needs nothing but sockets.
//   Answers are untrusted and parsed strictly (dns/wire.hpp). Limits: each
//   lookup ends after Options::timeout; at most Options::max_queries are in
//   flight per resolver, more fail at once with Error::temp.
// SEE ALSO
//   dns/wire.hpp, event/event.hpp, libunbound(3), unbound.conf(5)
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dns/handles.hpp"
#include "dns/wire.hpp"
#include "event/event.hpp"
#include "util/result.hpp"

namespace postern::dns {

struct Options {
    // dns_servers: "" = /etc/resolv.conf (+ /etc/hosts); else a list of
    // "addr", "addr@port" or "[addr]:port" (comma or space separated).
    std::string servers;
    std::chrono::milliseconds timeout{10000};  // per lookup
    std::size_t max_queries = 1000;            // lookups in flight at once
    // Read only when servers is empty; "" = do not read.
    std::string resolv_conf = "/etc/resolv.conf";
    std::string hosts = "/etc/hosts";
};

// Parses a dns_servers value into libunbound's "addr" / "addr@port" form.
Result<std::vector<std::string>> parse_servers(std::string_view list);

template <typename T>
using Callback = std::function<void(Result<Answer<T>>)>;

class Resolver;
namespace detail {
class Query;
}

// A pending lookup. Destroying it (or cancel()) cancels the lookup: its
// callback is never called afterwards. Move-only.
class Lookup {
public:
    Lookup() noexcept;
    Lookup(Lookup&&) noexcept;
    Lookup& operator=(Lookup&&) noexcept;
    ~Lookup();
    void cancel() noexcept;
    // True until the callback has been called (or the lookup cancelled).
    bool active() const noexcept;

private:
    friend class Resolver;
    explicit Lookup(std::unique_ptr<detail::Query> q) noexcept;
    std::unique_ptr<detail::Query> q_;
};

class Resolver {
    struct Key {
        explicit Key() = default;
    };

public:
    static Result<std::unique_ptr<Resolver>> create(event::Base& base, Options options);
    Resolver(Key, event::Base& base, Options options, UbCtxPtr ctx);  // through create() only
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    [[nodiscard]] Lookup a(std::string_view name, Callback<std::string> cb);
    [[nodiscard]] Lookup aaaa(std::string_view name, Callback<std::string> cb);
    [[nodiscard]] Lookup mx(std::string_view domain, Callback<Mx> cb);
    [[nodiscard]] Lookup txt(std::string_view name, Callback<std::string> cb);
    // The PTR names of an IPv4 or IPv6 address (Error::perm if addr is not one).
    [[nodiscard]] Lookup ptr(std::string_view addr, Callback<std::string> cb);
    [[nodiscard]] Lookup tlsa(std::string_view name, Callback<Tlsa> cb);

    std::size_t in_flight() const noexcept { return live_.size(); }
    const Options& options() const noexcept { return options_; }

private:
    friend class Lookup;
    Lookup submit(std::unique_ptr<detail::Query> q, std::string_view name, Type type,
                  std::optional<Error> refused = std::nullopt);
    void ready(detail::Query* q);
    void dispatch();
    void timed_out(detail::Query* q);
    void forget(detail::Query* q) noexcept;
    static void on_answer(void* arg, int rcode, void* packet, int len, int sec, char* why_bogus,
                          int was_ratelimited) noexcept;

    event::Base& base_;
    Options options_;
    UbCtxPtr ctx_;
    event::Event dispatcher_;
    std::deque<detail::Query*> ready_;  // answered, callback not yet called
    std::set<detail::Query*> live_;     // started, callback not yet called
};

}  // namespace postern::dns
