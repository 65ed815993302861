// NAME
//   authd/secret.hpp - a password that is wiped when it goes away
// PURPOSE
//   Holds a password on its way from a request to a worker thread, and
//   overwrites its bytes (explicit_bzero) when destroyed or moved from, so
//   freed heap memory does not keep it. Copyable, because std::function
//   needs copyable callables; each copy wipes itself. Not protection against
//   an attacker who can read our memory while the check runs.
// SYNOPSIS
//   Secret pw(std::move(req.password));   // req.password is wiped
//   verify_password(pw.view(), hash);
// ERRORS
//   None (copying may throw bad_alloc, like any string).
// SECURITY
//   The point of it; see PURPOSE for what it does not cover.
// SEE ALSO
//   authd/backends.hpp
#pragma once

#include <string.h>

#include <string>
#include <string_view>
#include <utility>

namespace postern::authd {

// Overwrites all of s's buffer, then empties it. Note: the whole capacity,
// so that a string whose contents were moved out (which leaves a short
// string's bytes behind in its inline buffer) is cleaned too.
inline void wipe(std::string& s) noexcept {
    s.resize(s.capacity());  // no reallocation: size <= capacity
    ::explicit_bzero(s.data(), s.size());
    s.clear();
}

class Secret {
public:
    Secret() = default;
    explicit Secret(std::string&& s) : s_(s) { wipe(s); }
    Secret(const Secret&) = default;
    Secret(Secret&& o) noexcept : s_(o.s_) { wipe(o.s_); }
    Secret& operator=(const Secret& o) {
        if (this != &o) {
            wipe(s_);
            s_ = o.s_;
        }
        return *this;
    }
    Secret& operator=(Secret&& o) noexcept {
        if (this != &o) {
            wipe(s_);
            s_ = o.s_;
            wipe(o.s_);
        }
        return *this;
    }
    ~Secret() { wipe(s_); }

    std::string_view view() const noexcept { return s_; }
    const char* c_str() const noexcept { return s_.c_str(); }

private:
    // Note: the constructors copy and then wipe the source instead of moving
    // it: a short password lives inside the std::string object itself, and a
    // move would leave its bytes behind in the source.
    std::string s_;
};

}  // namespace postern::authd
