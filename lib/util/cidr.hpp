// NAME
//   util/cidr.hpp - IPv4/IPv6 network lists (mynetworks)
// PURPOSE
//   Parses "127.0.0.0/8 [::1]/128 192.0.2.7" and answers whether an address
//   string is inside. Not a resolver: names are not accepted.
// SYNOPSIS
//   auto nets = util::NetList::parse("127.0.0.0/8 [::1]/128");  // Result
//   nets->contains("127.0.0.1");
// ERRORS
//   parse() fails on anything that is not a numeric address or prefix.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace postern::util {

class NetList {
public:
    static Result<NetList> parse(std::string_view text);
    bool contains(std::string_view addr) const;
    bool empty() const noexcept { return nets_.empty(); }

private:
    struct Net {
        std::array<std::uint8_t, 16> addr{};
        int bits = 0;
    };
    std::vector<Net> nets_;
};

// 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104: a client on this machine.
bool is_loopback(std::string_view addr);

}  // namespace postern::util
