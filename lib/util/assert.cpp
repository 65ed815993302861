// util/assert.cpp - the abort path behind POSTERN_ASSERT.
#include "util/assert.hpp"

#include <cstdio>
#include <cstdlib>

namespace postern::util {
namespace {
PanicHook g_hook = nullptr;
}

void set_panic_hook(PanicHook hook) noexcept { g_hook = hook; }

void assert_fail(const char* expr, const char* file, int line) noexcept {
    char buf[512];
    std::snprintf(buf, sizeof buf, "assertion failed: %s (%s:%d)", expr, file, line);
    if (g_hook != nullptr)
        g_hook(buf);
    else
        std::fprintf(stderr, "panic: %s\n", buf);
    std::abort();
}

}  // namespace postern::util
