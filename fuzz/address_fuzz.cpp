// libFuzzer target for lib/address: parse_list never crashes, respects its
// limits, and what it returns quotes back to something it parses again to
// the same addresses.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "address/address.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace postern;
    std::string_view in(reinterpret_cast<const char*>(data), size);
    auto r = address::parse_list(in);
    if (!r) return 0;
    if (r->size() > address::MaxAddresses) __builtin_trap();
    std::string again;
    for (const auto& a : *r) {
        if (a.local.empty() || a.spec().size() > address::MaxAddressLength) __builtin_trap();
        again += (again.empty() ? "" : ", ") + a.spec();
    }
    auto r2 = address::parse_list(again);
    if (!r2 || r2->size() != r->size()) __builtin_trap();
    for (std::size_t i = 0; i < r->size(); ++i)
        if ((*r2)[i].spec() != (*r)[i].spec()) __builtin_trap();
    return 0;
}
