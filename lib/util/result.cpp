// util/result.cpp - errno text and system-call errors as Error values.
#include "util/result.hpp"

#include <system_error>

namespace postern {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

Error sys_error(std::string_view op, std::string_view what, int err) {
    std::string t(op);
    t += ' ';
    t += what;
    t += ": ";
    t += errno_text(err);
    return Error::temp(std::move(t));
}

}  // namespace postern
