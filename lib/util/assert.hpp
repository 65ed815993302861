// NAME
//   util/assert.hpp - POSTERN_ASSERT: a broken invariant is a bug
// PURPOSE
//   Log the failed expression and abort, in every build type. Not for input
//   errors: those are Result<T> values.
// SYNOPSIS
//   POSTERN_ASSERT(fd >= 0);
//   util::set_panic_hook(fn);   // log module routes the message to the mail log
// ERRORS
//   Never returns on failure.
// SEE ALSO
//   log/log.hpp (log::panic)
#pragma once

namespace postern::util {

// The hook gets the formatted message; it must not return control to the caller
// (assert_fail aborts after it). lib/log installs one that writes the mail log.
using PanicHook = void (*)(const char* message) noexcept;
void set_panic_hook(PanicHook hook) noexcept;

[[noreturn]] void assert_fail(const char* expr, const char* file, int line) noexcept;

}  // namespace postern::util

#define POSTERN_ASSERT(expr) \
    ((expr) ? static_cast<void>(0) : ::postern::util::assert_fail(#expr, __FILE__, __LINE__))
