// NAME
//   util/unique_fd.hpp - move-only owner of a file descriptor
// PURPOSE
//   Closes the descriptor exactly once. No implicit int conversion: call get()
//   to borrow, release() to hand ownership to C code. Not for FILE* or sockets
//   owned by libevent (those have their own handles).
// SYNOPSIS
//   UniqueFd fd(::open(...));  if (!fd) ...;  ::write(fd.get(), ...);
//   int raw = fd.release();    fd.reset(other);
// ERRORS
//   close() failures are ignored (nothing useful can be done with them here;
//   code that needs durability fsyncs before closing).
#pragma once

#include <unistd.h>

#include <utility>

namespace postern {

class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        int old = std::exchange(fd_, fd);
        if (old >= 0) ::close(old);
    }

private:
    int fd_ = -1;
};

}  // namespace postern
