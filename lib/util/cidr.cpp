// util/cidr.cpp - network list parsing and matching (IPv4 mapped into IPv6).
#include "util/cidr.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "util/strings.hpp"

namespace postern::util {
namespace {

// Parses an address into 16 bytes (IPv4 as ::ffff:a.b.c.d); returns the
// number of prefix bits the family contributes offset by (96 for IPv4).
bool to16(std::string_view text, std::array<std::uint8_t, 16>& out, int* base_bits) {
    std::string s(text);
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    in_addr a4{};
    in6_addr a6{};
    if (inet_pton(AF_INET, s.c_str(), &a4) == 1) {
        out.fill(0);
        out[10] = out[11] = 0xff;
        std::memcpy(out.data() + 12, &a4, 4);
        *base_bits = 96;
        return true;
    }
    if (inet_pton(AF_INET6, s.c_str(), &a6) == 1) {
        std::memcpy(out.data(), &a6, 16);
        *base_bits = 0;
        return true;
    }
    return false;
}

}  // namespace

Result<NetList> NetList::parse(std::string_view text) {
    NetList list;
    for (auto& item : split_list(text)) {
        std::string_view addr = item, prefix;
        // "[::1]/128" or "::1/128" or "10.0.0.0/8"
        auto slash = item.rfind('/');
        if (slash != std::string::npos) {
            addr = std::string_view(item).substr(0, slash);
            prefix = std::string_view(item).substr(slash + 1);
        }
        Net n;
        int base = 0;
        if (!to16(addr, n.addr, &base)) return Error::config("bad network address \"" + printable(item, 80) + "\"");
        int max = 128 - base;
        int bits = max;
        if (!prefix.empty()) {
            auto p = parse_long(prefix);
            if (!p || *p < 0 || *p > max) return Error::config("bad network prefix \"" + printable(item, 80) + "\"");
            bits = static_cast<int>(*p);
        }
        n.bits = base + bits;
        list.nets_.push_back(n);
    }
    return list;
}

bool NetList::contains(std::string_view addr) const {
    std::array<std::uint8_t, 16> a{};
    int base = 0;
    if (!to16(addr, a, &base)) return false;
    for (auto& n : nets_) {
        int full = n.bits / 8, rest = n.bits % 8;
        if (std::memcmp(a.data(), n.addr.data(), static_cast<std::size_t>(full)) != 0) continue;
        if (rest != 0) {
            auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
            if ((a[static_cast<std::size_t>(full)] & mask) != (n.addr[static_cast<std::size_t>(full)] & mask)) continue;
        }
        return true;
    }
    return false;
}

bool is_loopback(std::string_view addr) {
    static const NetList loopback = *NetList::parse("127.0.0.0/8 [::1]/128");
    return loopback.contains(addr);
}

}  // namespace postern::util
