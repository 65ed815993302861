// NAME
//   util/result.hpp - expected failures as values
// PURPOSE
//   Result<T> holds either a T or an Error{kind, text}. It is for failures that
//   are part of normal life (bad input, map down, disk full); it is not for bugs
//   (POSTERN_ASSERT) or start-up failures (log::fatal). g++ 12 has no
//   std::expected, so the member names copy it.
// SYNOPSIS
//   Result<int> r = parse(x);  if (!r) use(r.error().text);  else use(*r);
//   return Error::perm("no such user");
//   Result<void> ok = {};  Result<std::optional<T>> for lookups.
// ERRORS
//   value() on an error (or error() on a value) is a bug: assert.
// SECURITY
//   Error text may be shown to peers; never put secrets in it.
// SEE ALSO
//   util/assert.hpp
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "util/assert.hpp"

namespace postern {

struct Error {
    enum class Kind { Temp, Perm, Config, Protocol };
    Kind kind = Kind::Temp;
    std::string text;

    static Error temp(std::string t) { return {Kind::Temp, std::move(t)}; }
    static Error perm(std::string t) { return {Kind::Perm, std::move(t)}; }
    static Error config(std::string t) { return {Kind::Config, std::move(t)}; }
    static Error protocol(std::string t) { return {Kind::Protocol, std::move(t)}; }
};

// strerror-style text for an errno value (thread-safe).
std::string errno_text(int err);
// "op what: strerror(err)" as Error::temp: the shape of every system-call error.
Error sys_error(std::string_view op, std::string_view what, int err);

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}
    Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}

    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & { POSTERN_ASSERT(has_value()); return std::get<0>(v_); }
    const T& value() const& { POSTERN_ASSERT(has_value()); return std::get<0>(v_); }
    T&& value() && { POSTERN_ASSERT(has_value()); return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const { POSTERN_ASSERT(!has_value()); return std::get<1>(v_); }

    template <typename U>
    T value_or(U&& u) const& { return has_value() ? std::get<0>(v_) : T(std::forward<U>(u)); }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error e) : err_(std::move(e)), failed_(true) {}

    bool has_value() const noexcept { return !failed_; }
    explicit operator bool() const noexcept { return !failed_; }
    const Error& error() const { POSTERN_ASSERT(failed_); return err_; }

private:
    Error err_;
    bool failed_ = false;
};

}  // namespace postern
