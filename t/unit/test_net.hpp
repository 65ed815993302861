// t/unit/test_net.hpp - loopback sockets for unit tests.
// bind_loopback(): a socket bound to 127.0.0.1 on a free port (UDP for fake
// DNS servers, TCP for listeners). Listener: a TCP one, listening unless told
// not to (a bound socket that does not listen refuses connections: a closed
// port that nobody else can take meanwhile). Not for production code
// (Catch2 assertions inside).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <string>

#include "util/unique_fd.hpp"

namespace postern::test {

// type: SOCK_STREAM or SOCK_DGRAM, with flags (SOCK_NONBLOCK ...) as socket(2) takes them.
inline UniqueFd bind_loopback(int type, int& port_out) {
    UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t len = sizeof sin;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) == 0);
    port_out = ntohs(sin.sin_port);
    return fd;
}

struct Listener {
    int port = 0;  // before fd: bind_loopback() sets it
    UniqueFd fd;
    explicit Listener(bool listening = true) : fd(bind_loopback(SOCK_STREAM, port)) {
        if (listening) REQUIRE(::listen(fd.get(), 8) == 0);
    }
    // Waits up to 1 s for a connection; returns it and the peer's address.
    UniqueFd accept(std::string* peer_out = nullptr) {
        pollfd p{fd.get(), POLLIN, 0};
        REQUIRE(::poll(&p, 1, 1000) == 1);
        sockaddr_in sin{};
        socklen_t len = sizeof sin;
        UniqueFd c(::accept4(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len, SOCK_CLOEXEC));
        REQUIRE(c);
        if (peer_out) {
            char buf[INET_ADDRSTRLEN];
            *peer_out = ::inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof buf);
        }
        return c;
    }
};

}  // namespace postern::test
