// Unit tests for smtp/dest: parse_nexthop (every accepted form, the refused
// ones), order_mx (sorting, shuffled ties with an injected generator, merged
// names, null MX, our own name, the host cap) and DestResolver end to end
// against a DNS server inside the test: a UDP socket on loopback answering
// from a small zone table (A, AAAA, MX, NXDOMAIN, NODATA, SERVFAIL, and
// names it never answers). No real DNS server is ever contacted.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dns/dns.hpp"
#include "event/event.hpp"
#include "smtp/dest.hpp"
#include "util/unique_fd.hpp"
#include "t/unit/test_loop.hpp"
#include "t/unit/test_net.hpp"

using namespace postern;
using namespace postern::smtp;
using namespace std::chrono_literals;

namespace {

// ---- a DNS server inside the test ------------------------------------------

// Records by (lower-case name, type). A name with no records of any type is
// NXDOMAIN; one with records of other types only is NODATA. Names in
// `servfail` get SERVFAIL, names in `silent` no answer at all.
struct Zone {
    std::map<std::pair<std::string, dns::Type>, std::vector<std::vector<std::uint8_t>>> rrs;
    std::set<std::string> servfail, silent;

    static std::vector<std::uint8_t> wire_name(std::string_view n) {
        std::vector<std::uint8_t> out;
        while (!n.empty() && n != ".") {
            auto dot = n.find('.');
            auto label = n.substr(0, dot);
            out.push_back(static_cast<std::uint8_t>(label.size()));
            out.insert(out.end(), label.begin(), label.end());
            n = dot == std::string_view::npos ? std::string_view() : n.substr(dot + 1);
        }
        out.push_back(0);
        return out;
    }
    Zone& a(const std::string& name, const std::string& addr) {
        std::vector<std::uint8_t> d(4);
        REQUIRE(::inet_pton(AF_INET, addr.c_str(), d.data()) == 1);
        rrs[{name, dns::Type::A}].push_back(d);
        return *this;
    }
    Zone& aaaa(const std::string& name, const std::string& addr) {
        std::vector<std::uint8_t> d(16);
        REQUIRE(::inet_pton(AF_INET6, addr.c_str(), d.data()) == 1);
        rrs[{name, dns::Type::Aaaa}].push_back(d);
        return *this;
    }
    Zone& mx(const std::string& name, unsigned pref, const std::string& exchange) {
        std::vector<std::uint8_t> d{static_cast<std::uint8_t>(pref >> 8), static_cast<std::uint8_t>(pref & 0xff)};
        auto n = wire_name(exchange);
        d.insert(d.end(), n.begin(), n.end());
        rrs[{name, dns::Type::Mx}].push_back(d);
        return *this;
    }
    // A name that exists without A/AAAA/MX records (NODATA for all of them).
    Zone& exists(const std::string& name) {
        rrs[{name, dns::Type::Txt}].push_back({1, 'x'});
        return *this;
    }
    bool has_name(const std::string& name) const {
        for (const auto& [k, v] : rrs)
            if (k.first == name) return true;
        return false;
    }
};

struct FakeDns {
    Zone zone;
    UniqueFd fd;
    int port = 0;
    std::vector<std::string> asked;  // "name/type" in arrival order
    event::Event ev;

    FakeDns(event::Base& base, Zone z) : zone(std::move(z)) {
        fd = test::bind_loopback(SOCK_DGRAM | SOCK_NONBLOCK, port);
        ev = event::Event::io(base, fd.get(), EV_READ | EV_PERSIST, [this](short) { answer(); });
        ev.add();
    }
    std::string server() const { return "127.0.0.1@" + std::to_string(port); }

    void answer() {
        std::uint8_t q[512];
        sockaddr_storage from{};
        socklen_t flen = sizeof from;
        ssize_t n = ::recvfrom(fd.get(), q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
        if (n < 12) return;
        std::size_t pos = 12;
        std::string qname;
        while (pos < static_cast<std::size_t>(n) && q[pos] != 0) {
            std::size_t l = q[pos];
            if (pos + 1 + l > static_cast<std::size_t>(n)) return;
            if (!qname.empty()) qname += '.';
            for (std::size_t i = 0; i < l; ++i) qname += static_cast<char>(std::tolower(q[pos + 1 + i]));
            pos += 1 + l;
        }
        if (pos + 5 > static_cast<std::size_t>(n)) return;
        auto qtype = static_cast<dns::Type>(q[pos + 1] << 8 | q[pos + 2]);
        std::size_t qend = pos + 5;
        asked.push_back(qname + "/" + std::to_string(static_cast<int>(qtype)));
        if (zone.silent.count(qname)) return;
        unsigned rcode = zone.servfail.count(qname) ? 2 : zone.has_name(qname) ? 0 : 3;
        std::vector<std::uint8_t> r{q[0], q[1], 0x84, static_cast<std::uint8_t>(0x80 | rcode), 0, 1, 0, 0, 0, 0, 0, 0};
        r.insert(r.end(), q + 12, q + qend);
        unsigned an = 0;
        if (rcode == 0) {
            auto it = zone.rrs.find({qname, qtype});
            if (it != zone.rrs.end()) {
                for (const auto& data : it->second) {
                    r.push_back(0xc0);  // owner: the question name
                    r.push_back(12);
                    unsigned t = static_cast<unsigned>(qtype);
                    std::uint8_t fixed[] = {static_cast<std::uint8_t>(t >> 8), static_cast<std::uint8_t>(t), 0, 1,
                                            0, 0, 0, 60, static_cast<std::uint8_t>(data.size() >> 8),
                                            static_cast<std::uint8_t>(data.size())};
                    r.insert(r.end(), std::begin(fixed), std::end(fixed));
                    r.insert(r.end(), data.begin(), data.end());
                    ++an;
                }
            }
        }
        r[6] = static_cast<std::uint8_t>(an >> 8);
        r[7] = static_cast<std::uint8_t>(an);
        (void)::sendto(fd.get(), r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
};

// The event loop with a safety timer (t/unit/test_loop.hpp).
using test::Loop;

std::string show(const DestResult& r) {
    if (auto* f = std::get_if<DestFailure>(&r))
        return std::string(f->permanent ? "perm " : "temp ") + f->dsn + " " + f->reason;
    std::string out;
    for (const auto& t : std::get<std::vector<Target>>(r)) out += (out.empty() ? "" : " ") + t.text();
    return out;
}

// Resolves hop against a FakeDns serving zone; returns the result and the queries asked.
struct Run {
    DestResult result;
    std::vector<std::string> asked;
    int calls = 0;
};
Run resolve(Zone zone, const std::string& nexthop, DestOptions opt = {.myhostname = "me.example.test"},
            std::chrono::milliseconds dns_timeout = 2000ms) {
    Loop loop;
    FakeDns srv(loop.base, std::move(zone));
    auto res = dns::Resolver::create(loop.base, {.servers = srv.server(), .timeout = dns_timeout});
    REQUIRE(res);
    DestResolver d(**res, opt);
    auto hop = parse_nexthop(nexthop);
    REQUIRE(hop);
    Run out;
    bool inside = true;
    auto pending = d.resolve(*hop, [&](const DestResult& r) {
        INFO("done must not run inside resolve()");
        CHECK_FALSE(inside);
        out.result = r;
        ++out.calls;
        loop.base.exit();
    });
    inside = false;
    loop.run();
    loop.run_for(20ms);  // nothing more may arrive
    CHECK(out.calls == 1);
    out.asked = srv.asked;
    return out;
}

// The targets as text. The order of addresses within one host and family is
// the server's (libunbound rotates RRsets), so each such run is sorted here.
std::vector<std::string> texts(const DestResult& r) {
    std::vector<std::string> out;
    auto* v = std::get_if<std::vector<Target>>(&r);
    if (!v) return out;
    for (std::size_t i = 0; i < v->size();) {
        auto family = [](const Target& t) { return t.addr.find(':') != std::string::npos; };
        std::size_t j = i;
        std::vector<std::string> run;
        while (j < v->size() && (*v)[j].host == (*v)[i].host && family((*v)[j]) == family((*v)[i]))
            run.push_back((*v)[j++].text());
        std::sort(run.begin(), run.end());
        out.insert(out.end(), run.begin(), run.end());
        i = j;
    }
    return out;
}

dns::Mx mx(std::uint16_t p, std::string e) { return {p, std::move(e)}; }

}  // namespace

// ---- parse_nexthop --------------------------------------------------------------

TEST_CASE("parse_nexthop accepts domains, [hosts], IP literals and ports") {
    struct Case {
        const char* in;
        std::string host;
        int port;
        bool mx;
    };
    const Case cases[] = {
        {"example.org", "example.org", 25, true},
        {"Example.ORG", "example.org", 25, true},
        {"example.org.", "example.org", 25, true},
        {"example.org:2525", "example.org", 2525, true},
        {"[mx.example.org]", "mx.example.org", 25, false},
        {"[MX.Example.org]:587", "mx.example.org", 587, false},
        {"[smtp.example.net]:submission", "smtp.example.net", 587, false},
        {"[192.0.2.1]", "192.0.2.1", 25, false},
        {"[192.0.2.1]:2525", "192.0.2.1", 2525, false},
        {"[ipv6:2001:db8::1]", "2001:db8::1", 25, false},
        {"[IPv6:2001:DB8:0::1]:465", "2001:db8::1", 465, false},
        {"[2001:db8::1]:25", "2001:db8::1", 25, false},
        {"192.0.2.7", "192.0.2.7", 25, false},
        {"192.0.2.7:26", "192.0.2.7", 26, false},
        {"2001:db8::7", "2001:db8::7", 25, false},
        {"localhost:1", "localhost", 1, true},
        {"a:65535", "a", 65535, true},
    };
    for (const auto& c : cases) {
        auto h = parse_nexthop(c.in);
        INFO(c.in << ": " << (h ? "ok" : h.error().text));
        REQUIRE(h);
        INFO("got host=" << h->host << " port=" << h->port << " mx=" << h->mx << ", want " << c.host << " "
                         << c.port << " " << c.mx);
        CHECK(h->host == c.host);
        CHECK(h->port == c.port);
        CHECK(h->mx == c.mx);
    }
}

TEST_CASE("parse_nexthop refuses malformed next hops as configuration errors") {
    for (const char* bad : {"", "[", "[]", "[]:25", "[mx.example.org", "[mx.example.org]x", "[mx.example.org]:",
                            "[mx.example.org]:0", "[mx.example.org]:65536", "example.org:", "example.org:abc",
                            "example.org:+25", "example.org:-1", "example.org:25:25", "exa mple.org", "a..b",
                            ".", ":25", "[ipv6:192.0.2.1]", "[ipv6:zz::1]", "[ipv6:]", "[192.0.2.256]",
                            "ex\\ample.org", "[mx.example.org]:25]", "example.org:123456"}) {
        auto h = parse_nexthop(bad);
        INFO("\"" << bad << "\": got " << (h ? "host=" + h->host : "an error") << ", want an error");
        REQUIRE_FALSE(h);
        CHECK(h.error().kind == Error::Kind::Config);
    }
}

TEST_CASE("Target::text names a server as logs do") {
    CHECK(Target{"mx.example.org", "192.0.2.1", 25, 10}.text() == "mx.example.org[192.0.2.1]:25");
    CHECK(Target{"mx.example.org", "2001:db8::1", 587, 0}.text() == "mx.example.org[2001:db8::1]:587");
}

// ---- order_mx ------------------------------------------------------------------

TEST_CASE("order_mx sorts by preference, merges names and caps the host list") {
    std::mt19937 rng(1);
    auto plan = order_mx({mx(30, "c.example.test"), mx(10, "A.example.test."), mx(20, "b.example.test"),
                          mx(40, "a.example.test")},
                         "me.example.test", "example.test", rng);
    REQUIRE_FALSE(plan.failure);
    using H = std::vector<std::pair<std::string, int>>;
    CHECK(plan.hosts == H{{"a.example.test", 10}, {"b.example.test", 20}, {"c.example.test", 30}});

    std::vector<dns::Mx> many;
    for (int i = 0; i < 15; ++i) many.push_back(mx(static_cast<std::uint16_t>(i), "h" + std::to_string(i) + ".test"));
    plan = order_mx(many, "", "example.test", rng);
    INFO("hosts: got " << plan.hosts.size() << ", want MaxMxHosts = " << MaxMxHosts);
    CHECK(plan.hosts.size() == MaxMxHosts);
    CHECK(plan.hosts.front().first == "h0.test");
    CHECK(plan.hosts.back().first == "h9.test");
}

TEST_CASE("order_mx shuffles equal preferences with the generator it is given") {
    std::vector<dns::Mx> recs{mx(10, "a.test"), mx(10, "b.test"), mx(10, "c.test"), mx(5, "first.test"),
                              mx(20, "last.test")};
    std::set<std::string> orders;
    for (std::uint32_t seed = 0; seed < 40; ++seed) {
        std::mt19937 rng(seed);
        auto plan = order_mx(recs, "", "example.test", rng);
        REQUIRE(plan.hosts.size() == 5);
        CHECK(plan.hosts.front().first == "first.test");
        CHECK(plan.hosts.back().first == "last.test");
        std::string o;
        for (std::size_t i = 1; i < 4; ++i) {
            CHECK(plan.hosts[i].second == 10);
            o += plan.hosts[i].first[0];
        }
        orders.insert(o);
        // The same seed gives the same order.
        std::mt19937 again(seed);
        CHECK(order_mx(recs, "", "example.test", again).hosts == plan.hosts);
    }
    INFO("distinct orders of three equal MX hosts over 40 seeds: got " << orders.size() << ", want all 6");
    CHECK(orders.size() == 6);
}

TEST_CASE("order_mx: null MX, our own name, loops back to myself") {
    std::mt19937 rng(7);
    auto null = order_mx({mx(0, ".")}, "me.test", "Nomail.TEST", rng);
    REQUIRE(null.failure);
    CHECK(null.failure->permanent);
    CHECK(null.failure->dsn == "5.1.10");
    CHECK(null.failure->reason == "Domain nomail.test does not accept mail (nullMX)");
    CHECK(null.hosts.empty());

    // "." among real hosts is not a null MX: it is skipped.
    auto mixed = order_mx({mx(0, "."), mx(10, "mx.test")}, "me.test", "example.test", rng);
    REQUIRE_FALSE(mixed.failure);
    CHECK(mixed.hosts == std::vector<std::pair<std::string, int>>{{"mx.test", 10}});

    // We are MX 20: only strictly more preferred hosts remain.
    auto backup = order_mx({mx(10, "primary.test"), mx(20, "ME.test."), mx(20, "peer.test"), mx(30, "other.test")},
                           "me.test", "example.test", rng);
    REQUIRE_FALSE(backup.failure);
    CHECK(backup.hosts == std::vector<std::pair<std::string, int>>{{"primary.test", 10}});

    // We are the best MX (alone or tied): loops back.
    for (auto recs : {std::vector<dns::Mx>{mx(10, "me.test"), mx(20, "other.test")},
                      std::vector<dns::Mx>{mx(10, "other.test"), mx(10, "me.test")},
                      std::vector<dns::Mx>{mx(10, "me.test")}}) {
        auto loops = order_mx(recs, "me.test", "example.test", rng);
        REQUIRE(loops.failure);
        CHECK(loops.failure->permanent);
        CHECK(loops.failure->dsn == "5.4.6");
        CHECK(loops.failure->reason == "mail for example.test loops back to myself");
    }
    // Listed twice: the best preference counts.
    auto twice = order_mx({mx(30, "me.test"), mx(5, "me.test"), mx(10, "other.test")}, "me.test", "example.test", rng);
    REQUIRE(twice.failure);
    CHECK(twice.failure->dsn == "5.4.6");
}

// ---- DestResolver against a DNS server -------------------------------------

namespace {
Zone test_zone() {
    Zone z;
    z.mx("example.test", 20, "mx2.example.test").mx("example.test", 10, "mx1.example.test");
    z.a("mx1.example.test", "127.0.0.11").aaaa("mx1.example.test", "::1");
    z.a("mx2.example.test", "127.0.0.12").a("mx2.example.test", "127.0.0.13");
    z.a("aonly.test", "127.0.0.20");                  // no MX: the domain itself
    z.mx("nomail.test", 0, ".");                     // null MX
    z.mx("loop.test", 10, "me.example.test").a("me.example.test", "127.0.0.99");
    z.mx("backup.test", 10, "mx1.example.test").mx("backup.test", 20, "me.example.test");
    z.mx("deadmx.test", 10, "gone.test").mx("deadmx.test", 20, "nodata.test");
    z.exists("nodata.test");                          // exists, no addresses
    z.mx("halfdead.test", 10, "gone.test").mx("halfdead.test", 20, "mx2.example.test");
    z.mx("tempmx.test", 10, "fail.test").mx("tempmx.test", 20, "gone.test");
    z.servfail.insert("fail.test");
    z.servfail.insert("servfail.test");
    z.silent.insert("slow.test");
    z.exists("bare.test");                           // no MX, no A
    z.mx("shared.test", 10, "mx2.example.test").mx("shared.test", 20, "alias.test");
    z.a("alias.test", "127.0.0.12").a("alias.test", "127.0.0.14");
    return z;
}
}  // namespace

TEST_CASE("DestResolver: MX hosts in preference order, addresses of each host, IPv4 first") {
    auto r = resolve(test_zone(), "example.test");
    INFO(show(r.result));
    auto got = texts(r.result);
    // mx2's two addresses come in DNS order.
    CHECK(got == std::vector<std::string>{"mx1.example.test[127.0.0.11]:25", "mx1.example.test[::1]:25",
                                          "mx2.example.test[127.0.0.12]:25", "mx2.example.test[127.0.0.13]:25"});
    auto& v = std::get<std::vector<Target>>(r.result);
    CHECK(v[0].preference == 10);
    CHECK(v[3].preference == 20);

    // IPv4 only: no AAAA lookups at all.
    r = resolve(test_zone(), "example.test", {.myhostname = "me.example.test", .ipv6 = false});
    CHECK(texts(r.result) == std::vector<std::string>{"mx1.example.test[127.0.0.11]:25",
                                                      "mx2.example.test[127.0.0.12]:25",
                                                      "mx2.example.test[127.0.0.13]:25"});
    for (const auto& q : r.asked) CHECK(q.find("/28") == std::string::npos);

    // IPv6 only.
    r = resolve(test_zone(), "example.test", {.myhostname = "me.example.test", .ipv4 = false});
    CHECK(texts(r.result) == std::vector<std::string>{"mx1.example.test[::1]:25"});
}

TEST_CASE("DestResolver: the address limit, and one server named by two MX hosts") {
    auto r = resolve(test_zone(), "example.test", {.myhostname = "", .max_addresses = 2});
    CHECK(texts(r.result) == std::vector<std::string>{"mx1.example.test[127.0.0.11]:25", "mx1.example.test[::1]:25"});
    r = resolve(test_zone(), "shared.test");
    INFO(show(r.result));
    CHECK(texts(r.result) == std::vector<std::string>{"mx2.example.test[127.0.0.12]:25",
                                                      "mx2.example.test[127.0.0.13]:25", "alias.test[127.0.0.14]:25"});
}

TEST_CASE("DestResolver: no MX falls back to the domain's own addresses; ports carry through") {
    auto r = resolve(test_zone(), "aonly.test:2525");
    INFO(show(r.result));
    CHECK(texts(r.result) == std::vector<std::string>{"aonly.test[127.0.0.20]:2525"});
    CHECK(std::get<std::vector<Target>>(r.result)[0].preference == 0);
}

TEST_CASE("DestResolver: [host] and IP literals skip the MX lookup") {
    auto r = resolve(test_zone(), "[mx2.example.test]:587");
    CHECK(texts(r.result) == std::vector<std::string>{"mx2.example.test[127.0.0.12]:587",
                                                      "mx2.example.test[127.0.0.13]:587"});
    for (const auto& q : r.asked) CHECK(q.find("/15") == std::string::npos);

    // [example.test] has MX records but no address of its own: those MX are not used.
    r = resolve(test_zone(), "[example.test]");
    INFO(show(r.result));
    REQUIRE(std::holds_alternative<DestFailure>(r.result));
    CHECK(std::get<DestFailure>(r.result).dsn == "5.4.4");

    for (const char* lit : {"[127.0.0.5]:2525", "127.0.0.5:2525"}) {
        r = resolve(test_zone(), lit);
        CHECK(texts(r.result) == std::vector<std::string>{"127.0.0.5[127.0.0.5]:2525"});
        INFO("queries for an IP literal: got " << r.asked.size() << ", want 0");
        CHECK(r.asked.empty());
    }
    r = resolve(test_zone(), "[ipv6:::1]");
    CHECK(texts(r.result) == std::vector<std::string>{"::1[::1]:25"});
}

TEST_CASE("DestResolver: failures and their DSNs") {
    struct Case {
        const char* hop;
        bool permanent;
        const char* dsn;
        const char* reason;
    };
    const Case cases[] = {
        {"missing.test", true, "5.4.4",
         "Host or domain name not found. Name service error for name=missing.test type=MX: Host not found"},
        {"servfail.test", false, "4.4.3",
         "Host or domain name not found. Name service error for name=servfail.test type=MX: Host not found, try "
         "again"},
        {"nomail.test", true, "5.1.10", "Domain nomail.test does not accept mail (nullMX)"},
        {"loop.test", true, "5.4.6", "mail for loop.test loops back to myself"},
        // Every MX host NXDOMAIN or NODATA: permanent; the reason names the best host.
        {"deadmx.test", true, "5.4.4",
         "Host or domain name not found. Name service error for name=gone.test type=A: Host not found"},
        {"bare.test", true, "5.4.4",
         "Host or domain name not found. Name service error for name=bare.test type=A: Host found but no data "
         "record of requested type"},
        // One host failed temporarily: try again later.
        {"tempmx.test", false, "4.4.3",
         "Host or domain name not found. Name service error for name=fail.test type=A: Host not found, try again"},
    };
    for (const auto& c : cases) {
        auto r = resolve(test_zone(), c.hop);
        INFO(c.hop << ": got " << show(r.result) << ", want " << c.dsn << " " << c.reason);
        REQUIRE(std::holds_alternative<DestFailure>(r.result));
        const auto& f = std::get<DestFailure>(r.result);
        CHECK(f.permanent == c.permanent);
        CHECK(f.dsn == c.dsn);
        CHECK(f.reason == c.reason);
    }
}

TEST_CASE("DestResolver: a host without addresses is skipped; we as backup MX use only better hosts") {
    auto r = resolve(test_zone(), "halfdead.test");
    INFO(show(r.result));
    CHECK(texts(r.result) == std::vector<std::string>{"mx2.example.test[127.0.0.12]:25",
                                                      "mx2.example.test[127.0.0.13]:25"});
    r = resolve(test_zone(), "backup.test", {.myhostname = "me.example.test", .ipv6 = false});
    INFO(show(r.result));
    CHECK(texts(r.result) == std::vector<std::string>{"mx1.example.test[127.0.0.11]:25"});
    for (const auto& q : r.asked) CHECK(q.rfind("me.example.test/", 0) != 0);
}

TEST_CASE("DestResolver: an MX lookup that times out is temporary") {
    auto r = resolve(test_zone(), "slow.test", {.myhostname = "me.example.test"}, 200ms);
    INFO(show(r.result));
    REQUIRE(std::holds_alternative<DestFailure>(r.result));
    CHECK_FALSE(std::get<DestFailure>(r.result).permanent);
    CHECK(std::get<DestFailure>(r.result).dsn == "4.4.3");
}

TEST_CASE("DestResolver: destroying the pending resolution cancels it") {
    Loop loop;
    Zone z = test_zone();
    z.silent.insert("mx1.example.test");
    FakeDns srv(loop.base, z);
    auto res = dns::Resolver::create(loop.base, {.servers = srv.server(), .timeout = 300ms});
    REQUIRE(res);
    DestResolver d(**res, {.myhostname = "me.example.test"});
    int calls = 0;
    {
        auto p = d.resolve(*parse_nexthop("slow.test"), [&](const DestResult&) { ++calls; });
        loop.run_for(50ms);
        CHECK((*res)->in_flight() == 1);
    }
    CHECK((*res)->in_flight() == 0);
    {
        // Cancelled during the address lookups (mx1 never answers).
        auto p = d.resolve(*parse_nexthop("example.test"), [&](const DestResult&) { ++calls; });
        loop.run_for(100ms);
        INFO("lookups in flight while waiting for addresses: " << (*res)->in_flight());
        CHECK((*res)->in_flight() >= 1);
    }
    CHECK((*res)->in_flight() == 0);
    {
        // An IP literal, cancelled before the loop ran.
        auto p = d.resolve(*parse_nexthop("[127.0.0.1]"), [&](const DestResult&) { ++calls; });
    }
    loop.run_for(500ms);
    INFO("done calls after cancellation: got " << calls << ", want 0");
    CHECK(calls == 0);

    // The owner may drop the pending object from inside done.
    std::unique_ptr<DestResolver::Pending> p;
    p = d.resolve(*parse_nexthop("aonly.test"), [&](const DestResult& r) {
        ++calls;
        CHECK(texts(r) == std::vector<std::string>{"aonly.test[127.0.0.20]:25"});
        p.reset();
        loop.base.exit();
    });
    loop.run();
    CHECK(calls == 1);
    CHECK_FALSE(p);
}
