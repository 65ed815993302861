// Unit tests for lib/dns: the wire parser on hand-made packets (compression,
// pointer loops, truncation at every byte, CNAME chains, every record type),
// reverse names, query-name syntax, the dns_servers syntax, and the Resolver
// against servers inside the test: a UDP socket on loopback that answers A,
// MX and NXDOMAIN itself, and one that never answers (timeouts, cancellation,
// the in-flight limit). No real DNS server is ever contacted.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "dns/dns.hpp"
#include "dns/wire.hpp"
#include "event/event.hpp"
#include "util/unique_fd.hpp"
#include "t/unit/test_loop.hpp"
#include "t/unit/test_net.hpp"

using namespace postern;
using namespace postern::dns;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

namespace {

// ---- packet building ---------------------------------------------------------

struct Pkt {
    std::vector<std::byte> b;
    Pkt& u8(unsigned v) {
        b.push_back(static_cast<std::byte>(v & 0xff));
        return *this;
    }
    Pkt& u16(unsigned v) { return u8(v >> 8).u8(v); }
    Pkt& u32(std::uint32_t v) { return u16(v >> 16).u16(v & 0xffff); }
    Pkt& label(std::string_view l) {
        u8(static_cast<unsigned>(l.size()));
        for (char c : l) u8(static_cast<unsigned char>(c));
        return *this;
    }
    // "a.b.c" as labels and the root byte; "" is the root alone.
    Pkt& name(std::string_view n) {
        while (!n.empty()) {
            auto dot = n.find('.');
            label(n.substr(0, dot));
            n = dot == std::string_view::npos ? std::string_view() : n.substr(dot + 1);
        }
        return u8(0);
    }
    Pkt& ptr(unsigned off) { return u8(0xc0 | (off >> 8)).u8(off & 0xff); }
    std::size_t size() const { return b.size(); }
    std::span<const std::byte> span() const { return b; }
    // Sets the 16-bit value at off (for counts filled in afterwards).
    void set16(std::size_t off, unsigned v) {
        b[off] = static_cast<std::byte>(v >> 8);
        b[off + 1] = static_cast<std::byte>(v & 0xff);
    }
};

// Header plus the question; the question name starts at offset 12.
Pkt response(std::string_view qname, Type qtype, unsigned ancount, unsigned rcode = 0, unsigned flags = 0x8180) {
    Pkt p;
    p.u16(0x1234).u16(flags | rcode).u16(1).u16(ancount).u16(0).u16(0);
    p.name(qname).u16(static_cast<unsigned>(qtype)).u16(1);
    return p;
}

// Record header with the owner as a pointer to the question name.
Pkt& rr(Pkt& p, Type type, std::uint32_t ttl, unsigned rdlength, unsigned owner = 12) {
    return p.ptr(owner).u16(static_cast<unsigned>(type)).u16(1).u32(ttl).u16(rdlength);
}

std::string status_text(Status s) {
    return s == Status::Found ? "Found" : s == Status::NoData ? "NoData" : "NxDomain";
}

// ---- a DNS server inside the test ----------------------------------------

// Answers on 127.0.0.1:<port>: A queries with 192.0.2.1 (or NXDOMAIN for
// names under nx.), MX queries with two MX records, anything else NODATA.
// With silent = true it never answers at all.
struct FakeServer {
    UniqueFd fd;
    int port = 0;
    int queries = 0;
    event::Event ev;

    FakeServer(event::Base& base, bool silent) {
        fd = test::bind_loopback(SOCK_DGRAM | SOCK_NONBLOCK, port);
        if (!silent) {
            ev = event::Event::io(base, fd.get(), EV_READ | EV_PERSIST, [this](short) { answer(); });
            ev.add();
        }
    }
    std::string server() const { return "127.0.0.1@" + std::to_string(port); }

    void answer() {
        std::uint8_t q[512];
        sockaddr_storage from{};
        socklen_t flen = sizeof from;
        ssize_t n = ::recvfrom(fd.get(), q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
        if (n < 12) return;
        ++queries;
        // The question: name, type, class, right after the header.
        std::size_t pos = 12;
        std::string qname;
        while (pos < static_cast<std::size_t>(n) && q[pos] != 0) {
            std::size_t l = q[pos];
            if (pos + 1 + l > static_cast<std::size_t>(n)) return;
            if (!qname.empty()) qname += '.';
            qname.append(reinterpret_cast<const char*>(q) + pos + 1, l);
            pos += 1 + l;
        }
        if (pos + 5 > static_cast<std::size_t>(n)) return;
        unsigned qtype = q[pos + 1] << 8 | q[pos + 2];
        std::size_t qend = pos + 5;
        bool nx = qname.rfind("nx.", 0) == 0;
        Pkt r;
        r.u8(q[0]).u8(q[1]).u16(0x8180 | (nx ? 3 : 0)).u16(1).u16(0).u16(0).u16(0);
        for (std::size_t i = 12; i < qend; ++i) r.u8(q[i]);
        unsigned an = 0;
        if (!nx && qtype == static_cast<unsigned>(Type::A)) {
            rr(r, Type::A, 60, 4).u8(192).u8(0).u8(2).u8(1);
            an = 1;
        } else if (!nx && qtype == static_cast<unsigned>(Type::Mx)) {
            rr(r, Type::Mx, 60, 2 + 6).u16(20).label("mx2").ptr(12);
            rr(r, Type::Mx, 60, 2 + 6).u16(10).label("mx1").ptr(12);
            an = 2;
        }
        r.set16(6, an);
        (void)::sendto(fd.get(), r.b.data(), r.b.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
};

// The event loop with a safety timer (t/unit/test_loop.hpp).
using test::Loop;

std::unique_ptr<Resolver> make_resolver(event::Base& base, const std::string& server,
                                        std::chrono::milliseconds timeout = 2000ms, std::size_t max = 100) {
    auto r = Resolver::create(base, {.servers = server, .timeout = timeout, .max_queries = max});
    INFO("Resolver::create: " << (r ? std::string("ok") : r.error().text));
    REQUIRE(r);
    return std::move(*r);
}

}  // namespace

// ---- names ---------------------------------------------------------------------

TEST_CASE("read_name: plain, compressed, root and escaped names") {
    Pkt p;
    p.u16(0).u16(0).u16(0).u16(0).u16(0).u16(0);  // 12 bytes of header
    p.name("mail.example.org");                    // 12
    std::size_t second = p.size();
    p.label("www").ptr(17);                        // www + pointer to "example.org"
    std::size_t third = p.size();
    p.u8(0);                                       // the root
    std::size_t fourth = p.size();
    p.u8(5).u8('a').u8('.').u8('\\').u8(0x01).u8(0xff).u8(0);  // odd bytes in one label

    std::size_t pos = 12;
    auto n = wire::read_name(p.span(), pos);
    REQUIRE(n);
    CHECK(*n == "mail.example.org");
    CHECK(pos == second);

    pos = second;
    n = wire::read_name(p.span(), pos);
    REQUIRE(n);
    CHECK(*n == "www.example.org");
    INFO("pos after a pointer: got " << pos << ", want " << third);
    CHECK(pos == third);

    pos = third;
    n = wire::read_name(p.span(), pos);
    REQUIRE(n);
    CHECK(*n == ".");
    CHECK(pos == fourth);

    pos = fourth;
    n = wire::read_name(p.span(), pos);
    REQUIRE(n);
    CHECK(*n == "a\\.\\\\\\001\\255");
}

TEST_CASE("read_name: refuses loops, forward pointers, bad labels and overlong names") {
    struct Case {
        const char* what;
        Pkt pkt;
        std::size_t start;
    };
    std::vector<Case> cases;
    auto header = [] {
        Pkt p;
        for (int i = 0; i < 12; ++i) p.u8(0);
        return p;
    };
    {
        Pkt p = header();
        p.ptr(12);  // points at itself
        cases.push_back({"self pointer", p, 12});
    }
    {
        Pkt p = header();
        p.ptr(14).label("a").u8(0);  // points forward
        cases.push_back({"forward pointer", p, 12});
    }
    {
        Pkt p = header();
        p.label("a").ptr(12);  // a label, then back to itself: a loop through labels
        cases.push_back({"loop through a label", p, 12});
    }
    {
        Pkt p = header();
        p.label("abc");  // no terminating root
        cases.push_back({"missing root", p, 12});
    }
    {
        Pkt p = header();
        p.u8(10).u8('a').u8('b');  // label longer than the packet
        cases.push_back({"label past the end", p, 12});
    }
    {
        Pkt p = header();
        p.u8(0xc0);  // half a pointer
        cases.push_back({"half a pointer", p, 12});
    }
    {
        Pkt p = header();
        p.u8(0x41).u8(0);  // extended label type 01
        cases.push_back({"label type 01", p, 12});
    }
    {
        Pkt p = header();
        p.u8(0x80).u8(0);  // reserved label type 10
        cases.push_back({"label type 10", p, 12});
    }
    {
        Pkt p = header();
        for (int i = 0; i < 5; ++i) p.label(std::string(60, 'x'));  // 305 bytes
        p.u8(0);
        cases.push_back({"name over 255 bytes", p, 12});
    }
    {
        // 255 bytes exactly is fine: 3 * (1+63) + (1+61) + 1.
        Pkt p = header();
        for (int i = 0; i < 3; ++i) p.label(std::string(63, 'y'));
        p.label(std::string(61, 'z')).u8(0);
        std::size_t pos = 12;
        auto n = wire::read_name(p.span(), pos);
        INFO("255-byte name: got " << (n ? "ok" : n.error().text) << ", want ok");
        CHECK(n);
    }
    {
        Pkt p;
        cases.push_back({"empty packet", p, 0});
    }
    for (auto& c : cases) {
        std::size_t pos = c.start;
        auto n = wire::read_name(c.pkt.span(), pos);
        INFO(c.what << ": got " << (n ? "\"" + *n + "\"" : "error") << ", want an error");
        CHECK_FALSE(n);
        if (!n) CHECK(n.error().kind == Error::Kind::Temp);
    }
}

TEST_CASE("reverse_name for IPv4 and IPv6; nothing for other text") {
    CHECK(wire::reverse_name("192.0.2.1") == "1.2.0.192.in-addr.arpa");
    CHECK(wire::reverse_name("127.0.0.1") == "1.0.0.127.in-addr.arpa");
    CHECK(wire::reverse_name("2001:db8::567:89ab") ==
          "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    CHECK(wire::reverse_name("::1") == "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa");
    for (const char* bad : {"", "unknown", "1.2.3", "1.2.3.4.5", "192.0.2.256", "::g", "1.2.3.4 ", "[::1]",
                            "0000000000000000000000000000000000000000000000000000000001.2.3.4"}) {
        INFO("reverse_name(\"" << bad << "\"): want nullopt");
        CHECK_FALSE(wire::reverse_name(bad));
    }
}

TEST_CASE("valid_query_name and same_name") {
    for (const char* ok : {"example.org", "example.org.", "_25._tcp.mx.example.org", "xn--bcher-kva.example", "a",
                           "1.2.0.192.in-addr.arpa"}) {
        INFO(ok << ": want valid");
        CHECK(wire::valid_query_name(ok));
    }
    std::string long_label = std::string(64, 'a') + ".example";
    std::string long_name;
    while (long_name.size() < 254) long_name += "abcdefgh.";
    long_name += "org";
    for (std::string bad : {std::string(), std::string("."), std::string("a..b"), std::string(".a"),
                            std::string("a b"), std::string("a\\.b"), std::string("a\0b", 3), long_label, long_name,
                            std::string("example.org.."), std::string("ex\xc3\xa4mple.org")}) {
        INFO("\"" << bad << "\": want invalid");
        CHECK_FALSE(wire::valid_query_name(bad));
    }
    CHECK(wire::same_name("Example.ORG", "example.org."));
    CHECK(wire::same_name(".", "."));
    CHECK_FALSE(wire::same_name("example.org", "example.com"));
    CHECK_FALSE(wire::same_name("example.org", "xexample.org"));
    // An escaped final dot is part of the label, not the end of the name.
    CHECK_FALSE(wire::same_name("a\\.", "a\\"));
    CHECK(wire::same_name("a\\..", "a\\."));
}

TEST_CASE("parse_servers accepts addr, addr@port and [addr]:port") {
    struct Case {
        const char* in;
        std::vector<std::string> want;
    };
    const Case good[] = {
        {"", {}},
        {"192.0.2.1", {"192.0.2.1"}},
        {"127.0.0.1@5353, ::1", {"127.0.0.1@5353", "::1"}},
        {"[2001:db8::1]:53 [192.0.2.9]", {"2001:db8::1@53", "192.0.2.9"}},
        {"2001:db8::1@5300", {"2001:db8::1@5300"}},
    };
    for (const auto& c : good) {
        auto got = parse_servers(c.in);
        INFO("\"" << c.in << "\": " << (got ? "ok" : got.error().text));
        REQUIRE(got);
        CHECK(*got == c.want);
    }
    for (const char* bad : {"localhost", "192.0.2.1:53", "[::1", "[::1]53", "[::1]:", "1.2.3.4@", "1.2.3.4@0",
                            "1.2.3.4@65536", "1.2.3.4@5x", "1.2.3.4@+53", "ns.example.org@53"}) {
        auto got = parse_servers(bad);
        INFO("\"" << bad << "\": want an error");
        REQUIRE_FALSE(got);
        CHECK(got.error().kind == Error::Kind::Config);
    }
    std::string many;
    for (int i = 0; i < 17; ++i) many += "192.0.2." + std::to_string(i) + " ";
    CHECK_FALSE(parse_servers(many));
}

// ---- answers -------------------------------------------------------------------

TEST_CASE("parse_addresses: A and AAAA, NODATA, NXDOMAIN") {
    Pkt a = response("mx.example.test", Type::A, 2);
    rr(a, Type::A, 300, 4).u8(192).u8(0).u8(2).u8(1);
    rr(a, Type::A, 60, 4).u8(192).u8(0).u8(2).u8(2);
    auto r = wire::parse_addresses(a.span(), "MX.example.test.", Type::A);
    REQUIRE(r);
    CHECK(r->status == Status::Found);
    CHECK(r->records == std::vector<std::string>{"192.0.2.1", "192.0.2.2"});
    INFO("ttl: got " << r->ttl << ", want the smallest, 60");
    CHECK(r->ttl == 60);

    Pkt six = response("mx.example.test", Type::Aaaa, 1);
    rr(six, Type::Aaaa, 300, 16).u16(0x2001).u16(0xdb8).u32(0).u32(0).u16(0).u16(1);
    auto r6 = wire::parse_addresses(six.span(), "mx.example.test", Type::Aaaa);
    REQUIRE(r6);
    CHECK(r6->records == std::vector<std::string>{"2001:db8::1"});

    // Records of another type or owner do not count: NODATA.
    Pkt other = response("mx.example.test", Type::A, 1);
    rr(other, Type::Txt, 300, 2).u8(1).u8('x');
    auto nd = wire::parse_addresses(other.span(), "mx.example.test", Type::A);
    REQUIRE(nd);
    INFO("status: got " << status_text(nd->status) << ", want NoData");
    CHECK(nd->status == Status::NoData);
    CHECK(nd->records.empty());

    auto nx = wire::parse_addresses(response("nx.example.test", Type::A, 0, 3).span(), "nx.example.test", Type::A);
    REQUIRE(nx);
    INFO("status: got " << status_text(nx->status) << ", want NxDomain");
    CHECK(nx->status == Status::NxDomain);
}

TEST_CASE("parse_mx: sorted by preference, compressed exchanges, null MX") {
    Pkt p = response("example.test", Type::Mx, 3);
    rr(p, Type::Mx, 300, 2 + 6).u16(20).label("mx2").ptr(12);
    rr(p, Type::Mx, 300, 2 + 6).u16(10).label("mx1").ptr(12);
    rr(p, Type::Mx, 300, 2 + 6).u16(20).label("mx3").ptr(12);
    auto r = wire::parse_mx(p.span(), "example.test");
    REQUIRE(r);
    std::vector<Mx> want = {{10, "mx1.example.test"}, {20, "mx2.example.test"}, {20, "mx3.example.test"}};
    CHECK(r->records == want);
    CHECK_FALSE(is_null_mx(*r));

    Pkt null = response("nomail.test", Type::Mx, 1);
    rr(null, Type::Mx, 300, 3).u16(0).u8(0);
    auto n = wire::parse_mx(null.span(), "nomail.test");
    REQUIRE(n);
    REQUIRE(n->records.size() == 1);
    CHECK(n->records[0].exchange == ".");
    CHECK(is_null_mx(*n));

    // The exchange must fill the record data exactly.
    Pkt extra = response("example.test", Type::Mx, 1);
    rr(extra, Type::Mx, 300, 2 + 1 + 1).u16(10).u8(0).u8(0);
    CHECK_FALSE(wire::parse_mx(extra.span(), "example.test"));
    Pkt shortmx = response("example.test", Type::Mx, 1);
    rr(shortmx, Type::Mx, 300, 2).u16(10);
    CHECK_FALSE(wire::parse_mx(shortmx.span(), "example.test"));
    // A name in the record data may not run on past it into the next record.
    Pkt spill = response("example.test", Type::Mx, 2);
    rr(spill, Type::Mx, 300, 2 + 2).u16(10).u8(3).u8('m');
    rr(spill, Type::Mx, 300, 3).u16(0).u8(0);
    CHECK_FALSE(wire::parse_mx(spill.span(), "example.test"));
}

TEST_CASE("CNAME chains are followed, bounded, and loops refused") {
    // www.example.test CNAME web.example.test; web.example.test A 192.0.2.80
    Pkt p = response("www.example.test", Type::A, 2);
    std::size_t cname_rdata = p.size() + 12;
    rr(p, Type::Cname, 300, 6).label("web").ptr(16);  // 16: "example.test" inside the question
    rr(p, Type::A, 300, 4, static_cast<unsigned>(cname_rdata)).u8(192).u8(0).u8(2).u8(80);
    auto r = wire::parse_addresses(p.span(), "www.example.test", Type::A);
    REQUIRE(r);
    CHECK(r->name == "web.example.test");
    CHECK(r->records == std::vector<std::string>{"192.0.2.80"});

    // a CNAME b, b CNAME a.
    Pkt loop = response("a.test", Type::A, 2);
    std::size_t b_at = loop.size() + 12;
    rr(loop, Type::Cname, 300, 4).label("b").ptr(14);  // b.test
    loop.ptr(static_cast<unsigned>(b_at)).u16(static_cast<unsigned>(Type::Cname)).u16(1).u32(300).u16(2).ptr(12);
    auto l = wire::parse_addresses(loop.span(), "a.test", Type::A);
    REQUIRE_FALSE(l);
    CHECK(l.error().text.find("CNAME") != std::string::npos);

    // A chain of kMaxCnameChain links is fine, one more is not.
    auto chain = [](int links) {
        Pkt c = response("c0.test", Type::A, static_cast<unsigned>(links + 1));
        for (int i = 0; i < links; ++i) {
            c.name("c" + std::to_string(i) + ".test").u16(static_cast<unsigned>(Type::Cname)).u16(1).u32(300);
            std::string target = "c" + std::to_string(i + 1) + ".test";
            c.u16(static_cast<unsigned>(target.size() + 2)).name(target);
        }
        c.name("c" + std::to_string(links) + ".test").u16(1).u16(1).u32(300).u16(4).u32(0xc0000201);
        return c;
    };
    auto ok = wire::parse_addresses(chain(wire::kMaxCnameChain).span(), "c0.test", Type::A);
    INFO("chain of " << wire::kMaxCnameChain << ": " << (ok ? "ok" : ok.error().text));
    REQUIRE(ok);
    CHECK(ok->records == std::vector<std::string>{"192.0.2.1"});
    CHECK_FALSE(wire::parse_addresses(chain(wire::kMaxCnameChain + 1).span(), "c0.test", Type::A));
}

TEST_CASE("parse_txt, parse_ptr and parse_tlsa") {
    Pkt t = response("example.test", Type::Txt, 2);
    rr(t, Type::Txt, 300, 7 + 6).label("v=spf1").label(" -all");
    rr(t, Type::Txt, 300, 1).u8(0);
    auto txt = wire::parse_txt(t.span(), "example.test");
    REQUIRE(txt);
    CHECK(txt->records == std::vector<std::string>{"v=spf1 -all", ""});
    Pkt bad = response("example.test", Type::Txt, 1);
    rr(bad, Type::Txt, 300, 3).u8(5).u8('a').u8('b');  // string longer than the record
    CHECK_FALSE(wire::parse_txt(bad.span(), "example.test"));

    Pkt p = response("1.0.0.127.in-addr.arpa", Type::Ptr, 1);
    rr(p, Type::Ptr, 300, 17).name("mx.test.example");
    auto ptr = wire::parse_ptr(p.span(), "1.0.0.127.in-addr.arpa");
    REQUIRE(ptr);
    CHECK(ptr->records == std::vector<std::string>{"mx.test.example"});

    Pkt s = response("_25._tcp.mx.example.test", Type::Tlsa, 1);
    rr(s, Type::Tlsa, 300, 3 + 4).u8(3).u8(1).u8(1).u32(0xdeadbeef);
    auto tlsa = wire::parse_tlsa(s.span(), "_25._tcp.mx.example.test");
    REQUIRE(tlsa);
    REQUIRE(tlsa->records.size() == 1);
    CHECK(tlsa->records[0] == Tlsa{3, 1, 1, {0xde, 0xad, 0xbe, 0xef}});
    Pkt st = response("_25._tcp.mx.example.test", Type::Tlsa, 1);
    rr(st, Type::Tlsa, 300, 3).u8(3).u8(1).u8(1);
    CHECK_FALSE(wire::parse_tlsa(st.span(), "_25._tcp.mx.example.test"));
}

TEST_CASE("malformed packets are temporary errors") {
    struct Case {
        const char* what;
        Pkt pkt;
    };
    std::vector<Case> cases;
    {
        Pkt p = response("example.test", Type::A, 0);
        p.set16(2, 0x0180);  // QR clear
        cases.push_back({"a query, not a response", p});
    }
    cases.push_back({"truncated (TC)", response("example.test", Type::A, 0, 0, 0x8380)});
    cases.push_back({"SERVFAIL", response("example.test", Type::A, 0, 2)});
    cases.push_back({"REFUSED", response("example.test", Type::A, 0, 5)});
    cases.push_back({"another name", response("example.org", Type::A, 0)});
    cases.push_back({"another type", response("example.test", Type::Mx, 0)});
    {
        Pkt p = response("example.test", Type::A, 0);
        p.set16(4, 2);
        cases.push_back({"two questions", p});
    }
    {
        Pkt p = response("example.test", Type::A, 3);  // claims 3 records, has 1
        rr(p, Type::A, 300, 4).u32(0xc0000201);
        cases.push_back({"lying answer count", p});
    }
    {
        Pkt p = response("example.test", Type::A, 1);
        rr(p, Type::A, 300, 40).u32(0xc0000201);  // rdlength past the end
        cases.push_back({"rdlength past the end", p});
    }
    {
        Pkt p = response("example.test", Type::A, 1);
        rr(p, Type::A, 300, 3).u8(1).u8(2).u8(3);
        cases.push_back({"3-byte A record", p});
    }
    {
        Pkt p = response("example.test", Type::A, 0);
        p.set16(0, 0x1234);
        p.b.resize(11);
        cases.push_back({"short header", p});
    }
    for (auto& c : cases) {
        auto r = wire::parse_addresses(c.pkt.span(), "example.test", Type::A);
        INFO(c.what << ": got " << (r ? "an answer" : r.error().text) << ", want a temporary error");
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Temp);
    }
}

TEST_CASE("every prefix of a valid answer fails cleanly, and the whole parses") {
    Pkt p = response("example.test", Type::Mx, 2);
    rr(p, Type::Mx, 300, 2 + 6).u16(20).label("mx2").ptr(12);
    rr(p, Type::Mx, 300, 2 + 6).u16(10).label("mx1").ptr(12);
    for (std::size_t n = 0; n < p.size(); ++n) {
        auto r = wire::parse_mx(p.span().first(n), "example.test");
        INFO("prefix of " << n << " of " << p.size() << " bytes: want an error");
        CHECK_FALSE(r);
    }
    auto whole = wire::parse_mx(p.span(), "example.test");
    REQUIRE(whole);
    CHECK(whole->records.size() == 2);
}

// ---- the resolver ----------------------------------------------------------------

TEST_CASE("Resolver: answers from a server, never from inside the call") {
    Loop loop;
    FakeServer srv(loop.base, false);
    auto res = make_resolver(loop.base, srv.server());
    std::optional<Result<Answer<std::string>>> a, nx;
    std::optional<Result<Answer<Mx>>> mx;
    int pending = 3;
    auto done = [&] {
        if (--pending == 0) loop.base.exit();
    };
    auto la = res->a("host.example.test", [&](Result<Answer<std::string>> r) { a.emplace(std::move(r)); done(); });
    auto lm = res->mx("example.test", [&](Result<Answer<Mx>> r) { mx.emplace(std::move(r)); done(); });
    auto ln = res->a("nx.example.test", [&](Result<Answer<std::string>> r) { nx.emplace(std::move(r)); done(); });
    CHECK_FALSE(a);
    CHECK(la.active());
    CHECK(res->in_flight() == 3);
    loop.run();
    REQUIRE(a);
    REQUIRE(*a);
    CHECK((*a)->status == Status::Found);
    CHECK((*a)->records == std::vector<std::string>{"192.0.2.1"});
    CHECK_FALSE((*a)->secure);
    REQUIRE(mx);
    REQUIRE(*mx);
    std::vector<Mx> want = {{10, "mx1.example.test"}, {20, "mx2.example.test"}};
    CHECK((*mx)->records == want);
    REQUIRE(nx);
    REQUIRE(*nx);
    CHECK((*nx)->status == Status::NxDomain);
    CHECK_FALSE(la.active());
    CHECK(res->in_flight() == 0);
}

TEST_CASE("Resolver: bad names and addresses are refused through the callback") {
    Loop loop;
    FakeServer srv(loop.base, true);
    auto res = make_resolver(loop.base, srv.server());
    std::vector<Error::Kind> kinds;
    auto cb = [&](Result<Answer<std::string>> r) {
        CHECK_FALSE(r);
        kinds.push_back(r ? Error::Kind::Temp : r.error().kind);
        if (kinds.size() == 3) loop.base.exit();
    };
    auto l1 = res->a("bad name", cb);
    auto l2 = res->ptr("not-an-address", cb);
    auto l3 = res->txt("a..b", cb);
    CHECK(kinds.empty());
    loop.run();
    CHECK(kinds == std::vector<Error::Kind>{Error::Kind::Perm, Error::Kind::Perm, Error::Kind::Perm});
    CHECK(srv.queries == 0);
}

TEST_CASE("Resolver: a server that never answers times out") {
    Loop loop;
    FakeServer srv(loop.base, true);
    auto res = make_resolver(loop.base, srv.server(), 200ms);
    std::optional<Result<Answer<Mx>>> got;
    auto start = SteadyClock::now();
    auto l = res->mx("example.test", [&](Result<Answer<Mx>> r) {
        got.emplace(std::move(r));
        loop.base.exit();
    });
    loop.run();
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
    REQUIRE(got);
    REQUIRE_FALSE(*got);
    CHECK(got->error().kind == Error::Kind::Temp);
    CHECK(got->error().text.find("timed out") != std::string::npos);
    INFO("timeout after " << took << " ms, want 200-1500");
    CHECK(took >= 190);
    CHECK(took < 1500);
}

TEST_CASE("Resolver: cancelled lookups never call back") {
    Loop loop;
    FakeServer silent(loop.base, true);
    FakeServer answering(loop.base, false);
    int calls = 0;
    {
        auto res = make_resolver(loop.base, silent.server(), 100ms);
        {
            auto l = res->a("example.test", [&](Result<Answer<std::string>>) { ++calls; });
            CHECK(res->in_flight() == 1);
        }  // destroyed: cancelled
        CHECK(res->in_flight() == 0);
        auto l2 = res->mx("example.test", [&](Result<Answer<Mx>>) { ++calls; });
        l2.cancel();
        CHECK_FALSE(l2.active());
        l2 = res->txt("example.test", [&](Result<Answer<std::string>>) { ++calls; });
        l2 = Lookup();  // move-assigning cancels the one it replaces
        loop.run_for(400ms);  // longer than the timeout
    }
    {
        // Answered at once from /etc/hosts-style local data (inside the call
        // that started it), then cancelled before the callback could run.
        char dir[] = "/tmp/postern-dns-test-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        std::string resolv = std::string(dir) + "/resolv.conf", hosts = std::string(dir) + "/hosts";
        {
            std::ofstream(resolv) << "nameserver 127.0.0.1\n";
            std::ofstream(hosts) << "192.0.2.5 local.example.test\n";
        }
        auto r = Resolver::create(loop.base, {.resolv_conf = resolv, .hosts = hosts});
        std::filesystem::remove_all(dir);
        REQUIRE(r);
        std::optional<Result<Answer<std::string>>> got;
        auto l = (*r)->a("local.example.test", [&](Result<Answer<std::string>> a) {
            got.emplace(std::move(a));
            loop.base.exit();
        });
        CHECK_FALSE(got);
        loop.run();  // the same again, not cancelled: the answer is there
        REQUIRE(got);
        REQUIRE(*got);
        CHECK((*got)->records == std::vector<std::string>{"192.0.2.5"});
        auto l2 = (*r)->a("local.example.test", [&](Result<Answer<std::string>>) { ++calls; });
        CHECK((*r)->in_flight() == 1);
        l2.cancel();
        CHECK((*r)->in_flight() == 0);
        loop.run_for(50ms);
    }
    INFO("callbacks: got " << calls << ", want 0");
    CHECK(calls == 0);
}

TEST_CASE("Resolver: the in-flight limit fails extra lookups at once") {
    Loop loop;
    FakeServer srv(loop.base, true);
    auto res = make_resolver(loop.base, srv.server(), 300ms, 2);
    std::vector<std::string> errors;
    auto cb = [&](Result<Answer<std::string>> r) {
        errors.push_back(r ? "answer" : r.error().text);
        if (errors.size() == 3) loop.base.exit();
    };
    auto l1 = res->a("one.example.test", cb);
    auto l2 = res->a("two.example.test", cb);
    auto l3 = res->a("three.example.test", cb);
    loop.run();
    REQUIRE(errors.size() == 3);
    INFO("first callback: got \"" << errors[0] << "\", want the refusal of the third lookup");
    CHECK(errors[0].find("too many lookups in flight") != std::string::npos);
    CHECK(errors[1].find("timed out") != std::string::npos);
    CHECK(errors[2].find("timed out") != std::string::npos);
}

TEST_CASE("Resolver: callbacks may drop their own lookup or start new ones; the resolver may go first") {
    Loop loop;
    FakeServer srv(loop.base, false);
    auto res = make_resolver(loop.base, srv.server());
    std::optional<Lookup> self;
    Lookup second;
    std::vector<std::string> seen;
    self = res->a("first.example.test", [&](Result<Answer<std::string>> r) {
        seen.push_back(r ? "first" : r.error().text);
        self.reset();  // destroys the lookup whose callback this is
        second = res->mx("example.test", [&](Result<Answer<Mx>> m) {
            seen.push_back(m ? "second" : m.error().text);
            loop.base.exit();
        });
    });
    loop.run();
    CHECK(seen == std::vector<std::string>{"first", "second"});

    // Pending lookups whose resolver is destroyed: no callback, and their
    // handles can still be destroyed afterwards.
    FakeServer silent(loop.base, true);
    auto res2 = make_resolver(loop.base, silent.server(), 100ms);
    int calls = 0;
    auto l1 = res2->a("example.test", [&](Result<Answer<std::string>>) { ++calls; });
    auto l2 = res2->ptr("bad", [&](Result<Answer<std::string>>) { ++calls; });  // queued, not yet delivered
    res2.reset();
    CHECK_FALSE(l1.active());
    loop.run_for(300ms);
    CHECK(calls == 0);
}

TEST_CASE("Resolver::create: bad server lists are configuration errors") {
    event::Base base;
    for (const char* bad : {"nameserver.example", "1.2.3.4:53", ",", "[::1"}) {
        auto r = Resolver::create(base, {.servers = bad});
        INFO("\"" << bad << "\": want Error::config");
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Config);
    }
}
