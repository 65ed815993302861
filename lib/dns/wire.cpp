// dns/wire.cpp - the strict DNS answer parser (see wire.hpp).
#include "dns/wire.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <limits>

namespace postern::dns {

bool is_null_mx(const Answer<Mx>& a) noexcept {
    return a.status == Status::Found && a.records.size() == 1 && a.records[0].preference == 0 &&
           a.records[0].exchange == ".";
}

namespace wire {
namespace {

constexpr std::uint16_t kClassIn = 1;
constexpr std::uint16_t kFlagQr = 0x8000;
constexpr std::uint16_t kFlagTc = 0x0200;
constexpr int kRcodeNxDomain = 3;

std::uint8_t byte_at(std::span<const std::byte> p, std::size_t i) { return static_cast<std::uint8_t>(p[i]); }

bool get16(std::span<const std::byte> p, std::size_t& pos, std::uint16_t& out) {
    if (p.size() < 2 || pos > p.size() - 2) return false;
    out = static_cast<std::uint16_t>(byte_at(p, pos) << 8 | byte_at(p, pos + 1));
    pos += 2;
    return true;
}

bool get32(std::span<const std::byte> p, std::size_t& pos, std::uint32_t& out) {
    std::uint16_t hi = 0, lo = 0;
    if (!get16(p, pos, hi) || !get16(p, pos, lo)) return false;
    out = static_cast<std::uint32_t>(hi) << 16 | lo;
    return true;
}

void append_label_byte(std::string& out, std::uint8_t c) {
    if (c == '.' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
    } else if (c > 0x20 && c < 0x7f) {
        out += static_cast<char>(c);
    } else {
        char buf[5] = {'\\', static_cast<char>('0' + c / 100), static_cast<char>('0' + c / 10 % 10),
                       static_cast<char>('0' + c % 10), 0};
        out += buf;
    }
}

// "a.b." -> "a.b"; an escaped final dot (a\.) stays, and so does the root.
std::string_view without_final_dot(std::string_view n) noexcept {
    if (n.size() < 2 || n.back() != '.') return n;
    std::size_t backslashes = 0;
    for (std::size_t i = n.size() - 1; i > 0 && n[i - 1] == '\\'; --i) ++backslashes;
    if (backslashes % 2 == 1) return n;
    n.remove_suffix(1);
    return n;
}

Error malformed(std::string_view what) { return Error::temp("malformed DNS answer: " + std::string(what)); }

// One resource record of the answer section; rdata stays in the packet
// because names inside it may point elsewhere in the packet.
struct Rr {
    std::string owner;
    std::uint16_t type = 0, cls = 0;
    std::uint32_t ttl = 0;
    std::size_t rdata = 0, rdlength = 0;
};

struct Section {
    int rcode = 0;
    std::vector<Rr> answers;
};

Result<Section> parse_packet(std::span<const std::byte> p, std::string_view qname, Type qtype) {
    std::size_t pos = 0;
    std::uint16_t id = 0, flags = 0, qd = 0, an = 0, ns = 0, ar = 0;
    if (!get16(p, pos, id) || !get16(p, pos, flags) || !get16(p, pos, qd) || !get16(p, pos, an) ||
        !get16(p, pos, ns) || !get16(p, pos, ar))
        return malformed("short header");
    if (!(flags & kFlagQr)) return malformed("not a response");
    if (flags & kFlagTc) return Error::temp("truncated DNS answer");
    if (qd != 1) return malformed("question count is not 1");
    auto name = read_name(p, pos);
    if (!name) return name.error();
    std::uint16_t type = 0, cls = 0;
    if (!get16(p, pos, type) || !get16(p, pos, cls)) return malformed("short question");
    if (!same_name(*name, qname) || type != static_cast<std::uint16_t>(qtype) || cls != kClassIn)
        return malformed("answer to another question");
    Section s;
    s.rcode = flags & 0xf;
    if (s.rcode != 0 && s.rcode != kRcodeNxDomain)
        return Error::temp("DNS server failure (rcode " + std::to_string(s.rcode) + ")");
    // Each record takes at least 11 bytes, so a lying count runs out of packet.
    for (std::uint16_t i = 0; i < an; ++i) {
        Rr rr;
        auto owner = read_name(p, pos);
        if (!owner) return owner.error();
        rr.owner = std::move(*owner);
        std::uint16_t rdlength = 0;
        if (!get16(p, pos, rr.type) || !get16(p, pos, rr.cls) || !get32(p, pos, rr.ttl) || !get16(p, pos, rdlength))
            return malformed("short record");
        if (rdlength > p.size() - pos) return malformed("record data runs past the end");
        rr.rdata = pos;
        rr.rdlength = rdlength;
        pos += rdlength;
        s.answers.push_back(std::move(rr));
    }
    // Note: the authority and additional sections are not needed and not read.
    (void)id;
    (void)ns;
    (void)ar;
    return s;
}

// A name that fills the record data exactly.
Result<std::string> rdata_name(std::span<const std::byte> p, const Rr& rr, std::size_t offset) {
    std::size_t pos = rr.rdata + offset;
    auto end = rr.rdata + rr.rdlength;
    if (pos >= end) return malformed("empty name in record data");
    // Read within the packet (pointers may go anywhere before), but the
    // uncompressed part must stay inside the record data.
    auto name = read_name(p.first(end), pos);
    if (!name) return name;
    if (pos != end) return malformed("trailing bytes in record data");
    return name;
}

// Follows the CNAME chain from qname and calls take(rr) for every record of
// the wanted type owned by the final name.
template <typename T, typename Take>
Result<Answer<T>> collect(std::span<const std::byte> p, std::string_view qname, Type type, Take take) {
    auto sec = parse_packet(p, qname, type);
    if (!sec) return sec.error();
    Answer<T> a;
    a.name = std::string(without_final_dot(qname));
    for (int hops = 0;; ++hops) {
        const Rr* cname = nullptr;
        for (const auto& rr : sec->answers)
            if (rr.type == static_cast<std::uint16_t>(Type::Cname) && rr.cls == kClassIn && same_name(rr.owner, a.name)) {
                cname = &rr;
                break;
            }
        if (cname == nullptr || type == Type::Cname) break;
        if (hops >= kMaxCnameChain) return Error::temp("DNS answer: CNAME chain too long or looping at " + a.name);
        auto target = rdata_name(p, *cname, 0);
        if (!target) return target.error();
        a.name = std::move(*target);
    }
    a.ttl = std::numeric_limits<std::uint32_t>::max();
    for (const auto& rr : sec->answers) {
        if (rr.type != static_cast<std::uint16_t>(type) || rr.cls != kClassIn || !same_name(rr.owner, a.name)) continue;
        auto rec = take(rr);
        if (!rec) return rec.error();
        a.records.push_back(std::move(*rec));
        a.ttl = std::min(a.ttl, rr.ttl);
    }
    if (a.records.empty()) {
        a.ttl = 0;
        a.status = sec->rcode == kRcodeNxDomain ? Status::NxDomain : Status::NoData;
    } else {
        a.status = Status::Found;
    }
    return a;
}

}  // namespace

Result<std::string> read_name(std::span<const std::byte> p, std::size_t& pos) {
    std::string out;
    std::size_t at = pos, wire_len = 0, jumps = 0;
    bool jumped = false;
    for (;;) {
        if (at >= p.size()) return malformed("name runs past the end");
        std::uint8_t len = byte_at(p, at);
        if ((len & 0xc0) == 0xc0) {
            if (at + 1 >= p.size()) return malformed("name runs past the end");
            std::size_t target = static_cast<std::size_t>(len & 0x3f) << 8 | byte_at(p, at + 1);
            // Backwards only: a chain of pointers always ends. Labels read
            // after a jump grow wire_len, so a loop through labels ends too.
            if (target >= at) return malformed("compression pointer does not point backwards");
            if (++jumps > kMaxCompressionJumps) return malformed("too many compression pointers");
            if (!jumped) pos = at + 2;
            jumped = true;
            at = target;
            continue;
        }
        if (len & 0xc0) return malformed("unknown label type");
        wire_len += 1 + len;
        if (wire_len > kMaxNameWire) return malformed("name longer than 255 bytes");
        if (len == 0) {
            if (!jumped) pos = at + 1;
            break;
        }
        if (len > p.size() - at - 1) return malformed("label runs past the end");
        if (!out.empty()) out += '.';
        for (std::size_t i = 0; i < len; ++i) append_label_byte(out, byte_at(p, at + 1 + i));
        at += 1 + len;
    }
    if (out.empty()) out = ".";
    return out;
}

Result<Answer<std::string>> parse_addresses(std::span<const std::byte> p, std::string_view qname, Type type) {
    if (type != Type::A && type != Type::Aaaa) return Error::temp("parse_addresses: not an address type");
    return collect<std::string>(p, qname, type, [&](const Rr& rr) -> Result<std::string> {
        std::size_t want = type == Type::A ? 4 : 16;
        if (rr.rdlength != want) return malformed(type == Type::A ? "A record is not 4 bytes" : "AAAA record is not 16 bytes");
        unsigned char raw[16];
        for (std::size_t i = 0; i < want; ++i) raw[i] = byte_at(p, rr.rdata + i);
        char buf[INET6_ADDRSTRLEN] = {};
        if (!::inet_ntop(type == Type::A ? AF_INET : AF_INET6, raw, buf, sizeof buf)) return malformed("address");
        return std::string(buf);
    });
}

Result<Answer<Mx>> parse_mx(std::span<const std::byte> p, std::string_view qname) {
    auto a = collect<Mx>(p, qname, Type::Mx, [&](const Rr& rr) -> Result<Mx> {
        if (rr.rdlength < 3) return malformed("MX record too short");
        Mx mx;
        std::size_t pos = rr.rdata;
        (void)get16(p, pos, mx.preference);
        auto name = rdata_name(p, rr, 2);
        if (!name) return name.error();
        mx.exchange = std::move(*name);
        return mx;
    });
    if (a) std::stable_sort(a->records.begin(), a->records.end(),
                            [](const Mx& x, const Mx& y) { return x.preference < y.preference; });
    return a;
}

Result<Answer<std::string>> parse_txt(std::span<const std::byte> p, std::string_view qname) {
    return collect<std::string>(p, qname, Type::Txt, [&](const Rr& rr) -> Result<std::string> {
        // One or more <length><bytes> strings; a record is their concatenation
        // (RFC 7208 3.3, RFC 6376 3.6.2.2).
        std::string text;
        std::size_t pos = rr.rdata, end = rr.rdata + rr.rdlength;
        while (pos < end) {
            std::size_t len = byte_at(p, pos);
            if (len > end - pos - 1) return malformed("TXT string runs past the record");
            for (std::size_t i = 0; i < len; ++i) text += static_cast<char>(byte_at(p, pos + 1 + i));
            pos += 1 + len;
        }
        return text;
    });
}

Result<Answer<std::string>> parse_ptr(std::span<const std::byte> p, std::string_view qname) {
    return collect<std::string>(p, qname, Type::Ptr, [&](const Rr& rr) { return rdata_name(p, rr, 0); });
}

Result<Answer<Tlsa>> parse_tlsa(std::span<const std::byte> p, std::string_view qname) {
    return collect<Tlsa>(p, qname, Type::Tlsa, [&](const Rr& rr) -> Result<Tlsa> {
        if (rr.rdlength < 4) return malformed("TLSA record too short");
        Tlsa t;
        t.usage = byte_at(p, rr.rdata);
        t.selector = byte_at(p, rr.rdata + 1);
        t.matching = byte_at(p, rr.rdata + 2);
        for (std::size_t i = 3; i < rr.rdlength; ++i) t.data.push_back(byte_at(p, rr.rdata + i));
        return t;
    });
}

std::optional<std::string> reverse_name(std::string_view addr) {
    if (addr.size() >= INET6_ADDRSTRLEN) return std::nullopt;
    std::string text(addr);
    unsigned char raw[16];
    if (::inet_pton(AF_INET, text.c_str(), raw) == 1) {
        std::string out;
        for (int i = 3; i >= 0; --i) out += std::to_string(raw[i]) + ".";
        return out + "in-addr.arpa";
    }
    if (::inet_pton(AF_INET6, text.c_str(), raw) == 1) {
        static constexpr char kHex[] = "0123456789abcdef";
        std::string out;
        for (int i = 15; i >= 0; --i) {
            out += kHex[raw[i] & 0xf];
            out += '.';
            out += kHex[raw[i] >> 4];
            out += '.';
        }
        return out + "ip6.arpa";
    }
    return std::nullopt;
}

bool valid_query_name(std::string_view name) noexcept {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty() || name.size() > 253) return false;
    std::size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok || ++label > 63) return false;
    }
    return label > 0;
}

bool same_name(std::string_view a, std::string_view b) noexcept {
    a = without_final_dot(a);
    b = without_final_dot(b);
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

}  // namespace wire
}  // namespace postern::dns
