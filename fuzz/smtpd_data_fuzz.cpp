// libFuzzer target for smtpd/data: DataReader must give the same result
// however its input is split.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Ilib -I.
//       fuzz/smtpd_data_fuzz.cpp smtpd/data.cpp lib/util/*.cpp -o build/smtpd_data_fuzz
// Byte 0 picks the mode (bit 0: BDAT) and bytes 1-4 give split strides; the
// rest is the stream. It is fed in one piece, a byte at a time and in pieces
// whose lengths cycle through the strides; content, defect, done and the total
// used must be identical, and DATA must only end right after CRLF.CRLF. The
// content also goes through HeaderScanner, whole and in the same pieces.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtpd/data.hpp"

namespace {

using namespace postern::smtpd;

struct Outcome {
    std::string content;
    std::optional<std::string> defect;
    bool done = false;
    std::size_t used = 0;
    bool operator==(const Outcome&) const = default;
};

Outcome run(DataReader::Mode mode, std::string_view in, const std::vector<std::size_t>& lengths) {
    DataReader r(mode);
    Outcome o;
    std::size_t pos = 0, k = 0;
    while (pos < in.size()) {
        std::size_t n = lengths.empty() ? in.size() : lengths[k++ % lengths.size()];
        if (n > in.size() - pos) n = in.size() - pos;
        std::size_t used = r.feed(in.substr(pos, n), o.content);
        if (used > n || (used < n && !r.done())) __builtin_trap();
        o.used += used;
        pos += n;
    }
    if (mode == DataReader::Mode::Bdat) r.finish_bdat();
    o.defect = r.defect();
    o.done = r.done();
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 5) return 0;
    const auto mode = (data[0] & 1) ? DataReader::Mode::Bdat : DataReader::Mode::Data;
    std::vector<std::size_t> strides;
    for (int i = 1; i <= 4; ++i) strides.push_back(data[i] % 17 + 1);
    std::string_view in(reinterpret_cast<const char*>(data) + 5, size - 5);

    Outcome whole = run(mode, in, {});
    if (!(run(mode, in, {1}) == whole)) __builtin_trap();
    if (!(run(mode, in, strides) == whole)) __builtin_trap();
    // One cut at a position taken from the first bytes.
    std::size_t cut = in.empty() ? 0 : (std::size_t(data[1]) << 8 | data[2]) % (in.size() + 1);
    std::vector<std::size_t> two = {cut == 0 ? in.size() : cut, in.size()};
    if (!(run(mode, in, two) == whole)) __builtin_trap();

    if (mode == DataReader::Mode::Bdat) {
        if (whole.done || whole.used != in.size()) __builtin_trap();
    } else if (whole.done) {
        // The stream up to `used` ends in CRLF.CRLF, or is ".\r\n" at the start.
        std::string_view taken = in.substr(0, whole.used);
        if (!(taken == ".\r\n" || (taken.size() >= 5 && taken.substr(taken.size() - 5) == "\r\n.\r\n"))) __builtin_trap();
    } else if (whole.used != in.size()) {
        __builtin_trap();
    }
    if (!whole.defect && whole.content.find('\0') != std::string::npos) __builtin_trap();

    HeaderScanner a, b(64);
    a.feed(whole.content);
    for (std::size_t i = 0; i < whole.content.size(); i += strides[0]) b.feed(std::string_view(whole.content).substr(i, strides[0]));
    HeaderScanner c;
    for (std::size_t i = 0; i < whole.content.size(); i += strides[1]) c.feed(std::string_view(whole.content).substr(i, strides[1]));
    if (a.value("Message-ID") != c.value("Message-ID") || a.in_headers() != c.in_headers()) __builtin_trap();
    (void)b.value("Date");
    return 0;
}
