// libFuzzer target for the queue file reader: any input is read without crashing, and an accepted file is consistent.
//
// Build: clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Ilib fuzz/queue_reader_fuzz.cpp
//          lib/queue/*.cpp lib/event/event.cpp lib/fs/fs.cpp lib/log/log.cpp lib/util/*.cpp -levent_core
// The input is the whole queue file. It lives in a memfd, so no disk is touched.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "queue/queue.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

// Returns a memfd holding bytes, or -1 (then the input is skipped).
int memfd_with(std::string_view bytes) {
    int fd = ::memfd_create("queue-fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n <= 0) {
            ::close(fd);
            return -1;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    postern::UniqueFd fd(memfd_with(bytes));
    if (!fd) return 0;

    std::uint64_t content_offset = 0;
    auto env = postern::queue::read_envelope(fd.get(), &content_offset);
    std::size_t content_bytes = 0;
    auto content = postern::queue::read_content(fd.get(), content_offset,
                                                [&](std::string_view chunk) -> postern::Result<void> {
                                                    content_bytes += chunk.size();
                                                    return {};
                                                });
    if (!env) {
        check(env.error().kind == postern::Error::Kind::Perm);
        return 0;
    }
    // read_envelope checked the whole structure, so the content walk cannot fail.
    check(static_cast<bool>(content));
    check(content_offset <= size && content_bytes <= size);
    check(postern::queue::valid_id(env->queue_id));
    for (const auto& r : env->recipients) {
        check(r.status_offset < size && bytes[r.status_offset] == r.status);
        check(!r.address.empty());
    }
    // Flip the first recipient's status in place: the file must stay valid
    // and show the new status.
    if (!env->recipients.empty()) {
        const auto& r0 = env->recipients[0];
        char next = r0.status == 'D' ? 'F' : 'D';
        check(static_cast<bool>(postern::queue::set_recipient_status(fd.get(), r0, next)));
        auto again = postern::queue::read_envelope(fd.get());
        check(again && again->recipients.size() == env->recipients.size() && again->recipients[0].status == next);
    }
    return 0;
}
