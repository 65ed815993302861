// libFuzzer target for the defer log parser: any input is parsed without crashing, and an accepted text formats back to itself.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "queue/queue.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto entries = postern::queue::parse_defer_log(text);
    if (!entries) return 0;
    auto again = postern::queue::format_defer_log(*entries);
    if (!again || *again != text) __builtin_trap();
    return 0;
}
