// libFuzzer target for ipc::Decoder: chunked vs one-shot decoding must agree, and decoded frames must re-encode to the input.
//
// Build: clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Ilib
//          fuzz/ipc_frame_fuzz.cpp lib/ipc/ipc.cpp lib/util/strings.cpp lib/util/assert.cpp
// The first two input bytes seed the piece sizes; the rest is the byte stream.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/ipc.hpp"

namespace {

using postern::ipc::AttrList;
using postern::ipc::Decoder;
using postern::ipc::Limits;

// Small limits so the fuzzer reaches both sides of them cheaply.
constexpr Limits FuzzLimits{.max_frame = 4096, .max_attrs = 16};

void check(bool ok) {
    if (!ok) __builtin_trap();
}

struct Outcome {
    std::vector<AttrList> frames;
    bool failed = false;
    std::string error;
    std::size_t buffered = 0;
};

void drain(Decoder& d, Outcome& out) {
    while (auto l = d.next()) out.frames.push_back(std::move(*l));
}

Outcome decode_whole(std::string_view bytes) {
    Outcome out;
    Decoder d(FuzzLimits);
    auto r = d.feed(bytes);
    drain(d, out);
    out.failed = !r;
    if (!r) out.error = r.error().text;
    out.buffered = d.buffered();
    return out;
}

Outcome decode_pieces(std::string_view bytes, std::uint32_t seed) {
    Outcome out;
    Decoder d(FuzzLimits);
    while (!bytes.empty()) {
        seed = seed * 1103515245u + 12345u;
        // Mostly tiny pieces (byte-at-a-time paths), sometimes large ones.
        std::size_t n = (seed >> 16) % 8 == 0 ? (seed >> 8) % 512 + 1 : (seed >> 16) % 4 + 1;
        if (n > bytes.size()) n = bytes.size();
        auto r = d.feed(bytes.substr(0, n));
        bytes.remove_prefix(n);
        drain(d, out);
        if (!r) {
            out.failed = true;
            out.error = r.error().text;
            // A failed decoder stays failed and yields nothing more.
            auto again = d.feed("\0\0\0\2\0\0");
            check(!again && again.error().text == out.error);
            check(!d.next().has_value());
            break;
        }
    }
    out.buffered = d.buffered();
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    std::uint32_t seed = static_cast<std::uint32_t>(data[0]) << 8 | data[1];
    std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);

    Outcome whole = decode_whole(bytes);
    Outcome pieces = decode_pieces(bytes, seed);
    check(whole.frames == pieces.frames);
    check(whole.failed == pieces.failed);
    check(whole.error == pieces.error);

    // Encoding is canonical, so the decoded frames re-encode to exactly the
    // bytes they came from, and the decoder holds the rest when it has not failed.
    std::string reencoded;
    for (const auto& f : whole.frames) {
        std::string wire = postern::ipc::encode(f);
        Decoder d(FuzzLimits);
        check(static_cast<bool>(d.feed(wire)));
        auto back = d.next();
        check(back.has_value() && *back == f);
        reencoded += wire;
    }
    check(bytes.substr(0, reencoded.size()) == reencoded);
    if (!whole.failed) {
        check(whole.buffered == bytes.size() - reencoded.size());
        check(pieces.buffered == whole.buffered);
    }
    return 0;
}
