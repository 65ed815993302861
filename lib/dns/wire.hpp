// NAME
//   dns/wire.hpp - DNS record types and a strict parser for answer packets
// PURPOSE
//   The typed results of a lookup (Answer<T> with Mx, Tlsa, addresses, names,
//   TXT strings) and the code that takes them out of a DNS response in wire
//   format (RFC 1035 section 4): header, question, answer records, name
//   decompression, CNAME chains. Also the names a lookup is made for: the
//   in-addr.arpa / ip6.arpa name of an address, and the check that a name is
//   fit to be asked at all. Pure functions over bytes, no I/O: the resolver
//   (dns/dns.hpp) feeds them the packets libunbound hands over, and the unit
//   tests and the fuzzer feed them anything. Not a general DNS library: only
//   the record types Postern asks for, only the answer section.
// SYNOPSIS
//   auto mx = wire::parse_mx(packet, "example.org");        // Result<Answer<Mx>>
//   if (mx && mx->status == Status::Found) use(mx->records); // sorted by preference
//   auto name = wire::reverse_name("192.0.2.1");             // "1.2.0.192.in-addr.arpa"
//   auto n = wire::read_name(packet, pos);                   // Result<std::string>, pos moves on
// ERRORS
//   A malformed packet, a question that is not the one asked, a CNAME chain
//   that is too long or loops, and a server-side failure rcode (SERVFAIL,
//   REFUSED, ...) are Error::temp: the caller tries later. NXDOMAIN and "no
//   records of this type" (NODATA) are not errors: Answer::status says which.
// SECURITY
//   The packet is untrusted. Every length is checked against the bytes that
//   are left; compression pointers must point backwards (so they cannot loop)
//   and a name is at most 255 bytes on the wire; a CNAME chain is followed at
//   most kMaxCnameChain links. Names are returned in presentation form with
//   any byte that is not printable ASCII, and '.' or '\' inside a label,
//   escaped as \DDD or \. / \\, so they never carry control bytes; callers
//   that need a host name still check its syntax. TXT strings are returned
//   as the raw bytes they are: callers parse them and log them printable.
// SEE ALSO
//   dns/dns.hpp, RFC 1035, RFC 2181 (CNAME), RFC 6698 (TLSA), RFC 7505 (null MX)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace postern::dns {

enum class Type : std::uint16_t { A = 1, Cname = 5, Ptr = 12, Mx = 15, Txt = 16, Aaaa = 28, Tlsa = 52 };

enum class Status {
    Found,     // at least one record of the type asked for
    NoData,    // the name exists, but has no such records
    NxDomain,  // the name does not exist
};

struct Mx {
    std::uint16_t preference = 0;
    std::string exchange;  // without the trailing dot; the root (null MX) is "."
    bool operator==(const Mx&) const = default;
};

struct Tlsa {
    std::uint8_t usage = 0, selector = 0, matching = 0;
    std::vector<std::uint8_t> data;  // certificate association data
    bool operator==(const Tlsa&) const = default;
};

template <typename T>
struct Answer {
    Status status = Status::NoData;
    bool secure = false;     // DNSSEC-validated (needs a trust anchor in the resolver)
    std::string name;        // the name the records belong to, after CNAMEs
    std::uint32_t ttl = 0;   // the smallest TTL of the records
    std::vector<T> records;  // A/AAAA: addresses in inet_ntop form; PTR: names; TXT: one string per record
    bool found() const noexcept { return status == Status::Found; }
};

// A single MX record of preference 0 and exchange "." (RFC 7505): the domain
// accepts no mail.
bool is_null_mx(const Answer<Mx>& a) noexcept;

namespace wire {

constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kMaxNameWire = 255;   // RFC 1035 2.3.4
constexpr std::size_t kMaxCompressionJumps = 64;
constexpr int kMaxCnameChain = 8;

// Reads the name that starts at pos (following compression pointers) and
// moves pos past it (past the first pointer, if any). Presentation form
// without the trailing dot, "." for the root.
Result<std::string> read_name(std::span<const std::byte> packet, std::size_t& pos);

// The answer for (qname, type) in a response packet. qname may end in a dot;
// names compare without regard to ASCII case.
Result<Answer<std::string>> parse_addresses(std::span<const std::byte> packet, std::string_view qname, Type type);
Result<Answer<Mx>> parse_mx(std::span<const std::byte> packet, std::string_view qname);  // sorted by preference (stable)
Result<Answer<std::string>> parse_txt(std::span<const std::byte> packet, std::string_view qname);
Result<Answer<std::string>> parse_ptr(std::span<const std::byte> packet, std::string_view qname);
Result<Answer<Tlsa>> parse_tlsa(std::span<const std::byte> packet, std::string_view qname);

// "4.3.2.1.in-addr.arpa" for "1.2.3.4", the 32-nibble ip6.arpa name for an
// IPv6 address; nullopt if addr is not an IP address.
std::optional<std::string> reverse_name(std::string_view addr);

// A name we are willing to send to a server: 1-63 byte labels of letters,
// digits, '-' and '_' (SRV/TLSA owner names), at most 253 bytes, an optional
// trailing dot. Anything else (escapes, spaces, empty labels) is refused.
bool valid_query_name(std::string_view name) noexcept;

// ASCII case-insensitive comparison that ignores one trailing dot on either side.
bool same_name(std::string_view a, std::string_view b) noexcept;

}  // namespace wire
}  // namespace postern::dns
