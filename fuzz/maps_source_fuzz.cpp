// fuzz/maps_source_fuzz.cpp - libFuzzer target: maps::parse_source in both formats.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "log/log.hpp"
#include "maps/maps.hpp"
#include "util/assert.hpp"

namespace {

// Every entry that comes out must obey what the .db writer and lookups assume.
void check(const postern::Result<std::vector<postern::maps::Entry>>& r) {
    if (!r) {
        POSTERN_ASSERT(r.error().kind == postern::Error::Kind::Config);
        POSTERN_ASSERT(r.error().text.rfind("fuzz:", 0) == 0);
        return;
    }
    int last_line = 0;
    for (const auto& e : *r) {
        POSTERN_ASSERT(!e.key.empty() && e.key.size() <= postern::maps::MaxKeyLength);
        POSTERN_ASSERT(!e.value.empty() && e.value.size() <= postern::maps::MaxValueLength);
        POSTERN_ASSERT(e.line > last_line);
        last_line = e.line;
        for (char c : e.key) POSTERN_ASSERT(c != '\0' && !(c >= 'A' && c <= 'Z'));
        POSTERN_ASSERT(e.value.find('\0') == std::string::npos);
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Duplicate-key warnings would otherwise go to syslog on every run.
    postern::log::open({.tag = "postern/maps_fuzz", .file = "/dev/null"});
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    check(postern::maps::parse_source(text, postern::maps::Format::Postmap, "fuzz"));
    check(postern::maps::parse_source(text, postern::maps::Format::Aliases, "fuzz"));
    return 0;
}
