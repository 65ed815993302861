// libFuzzer target for dns/wire: DNS answer packets as a hostile server (or a
// broken libunbound) could hand them over.
//   make fuzz  (clang++ -fsanitize=fuzzer,address,undefined; see the Makefile)
// The input is one packet. The question asked is the packet's own question
// name when it has one (so parsing gets past the question check), else a
// fixed name. Besides memory safety it checks the promises callers rely on:
// names are escaped (no control bytes, spaces or bare backslashes), at most
// 255 wire bytes become at most 4 * 255 characters, records exist exactly
// when the status is Found, MX records are sorted, addresses are addresses.
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "dns/wire.hpp"

namespace {

using namespace postern::dns;

void check_name(const std::string& n) {
    if (n.empty() || n.size() > 4 * wire::kMaxNameWire) __builtin_trap();
    for (std::size_t i = 0; i < n.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(n[i]);
        if (c <= 0x20 || c >= 0x7f) __builtin_trap();
        if (c == '\\') {
            // \. or \\ or \DDD
            if (i + 1 >= n.size()) __builtin_trap();
            if (n[i + 1] == '.' || n[i + 1] == '\\') ++i;
            else if (i + 3 < n.size() && n[i + 1] >= '0' && n[i + 1] <= '2') i += 3;
            else __builtin_trap();
        }
    }
}

template <typename T>
void check_common(const postern::Result<Answer<T>>& r) {
    if (!r) {
        if (r.error().kind != postern::Error::Kind::Temp || r.error().text.empty()) __builtin_trap();
        return;
    }
    if ((r->status == Status::Found) != !r->records.empty()) __builtin_trap();
    check_name(r->name);
}

void check_address(const std::string& a, int af) {
    unsigned char buf[16];
    if (::inet_pton(af, a.c_str(), buf) != 1) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::span<const std::byte> pkt(reinterpret_cast<const std::byte*>(data), size);

    // Names at every offset of a small packet: decompression in all its forms.
    if (size <= 512) {
        for (std::size_t off = 0; off < size; ++off) {
            std::size_t pos = off;
            auto n = wire::read_name(pkt, pos);
            if (n) {
                check_name(*n);
                if (pos <= off || pos > size) __builtin_trap();
            }
        }
    }

    std::string qname = "example.test";
    std::size_t pos = wire::kHeaderSize;
    if (auto n = wire::read_name(pkt, pos)) qname = *n;

    auto a = wire::parse_addresses(pkt, qname, Type::A);
    check_common(a);
    if (a) for (auto& x : a->records) check_address(x, AF_INET);
    auto aaaa = wire::parse_addresses(pkt, qname, Type::Aaaa);
    check_common(aaaa);
    if (aaaa) for (auto& x : aaaa->records) check_address(x, AF_INET6);
    auto mx = wire::parse_mx(pkt, qname);
    check_common(mx);
    if (mx) {
        for (std::size_t i = 0; i < mx->records.size(); ++i) {
            check_name(mx->records[i].exchange);
            if (i > 0 && mx->records[i - 1].preference > mx->records[i].preference) __builtin_trap();
        }
        (void)is_null_mx(*mx);
    }
    auto txt = wire::parse_txt(pkt, qname);
    check_common(txt);
    if (txt) for (auto& t : txt->records) if (t.size() > size) __builtin_trap();
    auto ptr = wire::parse_ptr(pkt, qname);
    check_common(ptr);
    if (ptr) for (auto& n : ptr->records) check_name(n);
    auto tlsa = wire::parse_tlsa(pkt, qname);
    check_common(tlsa);
    if (tlsa) for (auto& t : tlsa->records) if (t.data.empty() || t.data.size() > size) __builtin_trap();
    return 0;
}
