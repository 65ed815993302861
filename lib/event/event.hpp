// NAME
//   event/event.hpp - RAII over libevent: base, io/timer/signal events, bufferevents
// PURPOSE
//   Owns every libevent object through unique_ptr-like handles so nothing leaks
//   and nothing raw escapes, and routes every callback through one noexcept
//   trampoline that catches exceptions (STYLE E3): an exception that reaches it
//   is logged and the loop goes on. Not a protocol framework: sessions own
//   their parsing and call write()/close() themselves.
// SYNOPSIS
//   event::Base base;
//   auto t = event::Event::timer(base, [&]{ ... });  t.add(std::chrono::seconds(5));
//   auto s = event::Event::signal(base, SIGTERM, [&]{ base.exit(); });  s.add();
//   auto r = event::Event::io(base, fd, EV_READ | EV_PERSIST, [&](short what){ ... });  r.add();
//   event::BufferEvent be(base, std::move(fd));  be.on_read([&]{ auto line = be.read_line(4096); });
//   auto c = event::connect_tcp("192.0.2.1", 25, "");  event::BufferEvent out(base, std::move(*c));  // CONNECTED/ERROR
//   be.start_tls_server(base, ssl);  out.start_tls_client(base, ssl);  // STARTTLS, either side
//   base.dispatch();
// ERRORS
//   Failure to create a libevent object is an environment failure: log::fatal.
//   Exceptions thrown by callbacks are caught in the trampoline and logged.
//   connect_tcp() returns Error for what fails at once (bad address, no
//   socket, bind, an immediate refusal); the rest of a connect's failures
//   reach on_event as BEV_EVENT_ERROR, with the errno in socket_error().
// SECURITY
//   read_line() enforces a caller-given line limit; BufferEvent sets a
//   high-water mark so a peer cannot make us buffer without bound.
//   A TLS BufferEvent only moves bytes: whether the peer's certificate is
//   acceptable is the caller's decision after BEV_EVENT_CONNECTED
//   (tls::check_peer). After STARTTLS the plaintext still buffered is thrown
//   away, on both sides (a peer cannot inject commands or replies that would
//   seem to come over TLS).
// SEE ALSO
//   event/handles.hpp, service/service.hpp, tls/tls.hpp
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <openssl/ssl.h>

#include "event/handles.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace postern::event {

class Base {
public:
    Base();
    event_base* get() const noexcept { return base_.get(); }
    // Runs until exit() or no events are left. Returns libevent's status.
    int dispatch();
    void exit() noexcept;
    // Re-initialises the base in a child after fork().
    void reinit_after_fork();

private:
    EventBasePtr base_;
};

class Event {
public:
    using Callback = std::function<void(short what)>;

    static Event timer(Base& base, std::function<void()> cb);
    static Event signal(Base& base, int signo, std::function<void()> cb);
    static Event io(Base& base, int fd, short what, Callback cb);

    Event();
    Event(Event&&) noexcept;
    Event& operator=(Event&&) noexcept;
    ~Event();

    void add();  // no timeout
    void add(std::chrono::milliseconds timeout);
    void del() noexcept;
    bool pending() const noexcept;
    explicit operator bool() const noexcept { return state_ != nullptr; }

private:
    struct State;
    static void trampoline(evutil_socket_t fd, short what, void* arg) noexcept;
    std::unique_ptr<State> state_;
};

// A socket whose non-blocking connect() has been started (connect_tcp), or
// has already finished. A BufferEvent made from it reports the outcome.
struct ConnectingFd {
    UniqueFd fd;
};

// Starts a TCP connection to an IPv4/IPv6 address ("192.0.2.1",
// "2001:db8::1"; brackets allowed) without blocking. bind_addr, when not
// empty, is the local address to connect from; one of the other family than
// addr is ignored (Postfix keeps smtp_bind_address and smtp_bind_address6
// apart). Errors: Error::perm for a bad addr or port, Error::config for a bad
// bind_addr, Error::temp for system call failures, the text being just
// strerror ("Connection refused") when connect() itself fails at once, else
// "socket: ..." / "bind to ADDR: ...".
Result<ConnectingFd> connect_tcp(const std::string& addr, int port, const std::string& bind_addr = "");

class BufferEvent {
public:
    // Takes ownership of a connected socket (accepted, socketpair).
    BufferEvent(Base& base, UniqueFd fd);
    // Takes ownership of a connecting socket: on_event gets
    // BEV_EVENT_CONNECTED once the connection is made, or BEV_EVENT_ERROR
    // (socket_error() says why). Reading enabled before then starts only
    // after BEV_EVENT_CONNECTED, so on_read never comes first; writes are
    // queued and sent once connected. Never calls back from the constructor.
    BufferEvent(Base& base, ConnectingFd fd);
    // Implicit TLS (server side, e.g. port 465): the handshake starts at
    // once; on_event gets BEV_EVENT_CONNECTED when it is done. Takes ssl.
    static BufferEvent tls_server(Base& base, UniqueFd fd, SSL* ssl);
    // Implicit TLS (client side, a port 465 smarthost) on a connecting or
    // connected socket; ssl from tls::new_client_ssl(), taken over. The
    // handshake starts once the TCP connection is made; on_event gets
    // BEV_EVENT_CONNECTED when it is done, else BEV_EVENT_ERROR (TCP or TLS
    // failure) or BEV_EVENT_EOF (the server closed during the handshake).
    static BufferEvent tls_client(Base& base, ConnectingFd fd, SSL* ssl);
    BufferEvent(BufferEvent&&) noexcept;
    BufferEvent& operator=(BufferEvent&&) noexcept;
    ~BufferEvent();

    void on_read(std::function<void()> cb);
    void on_write(std::function<void()> cb);           // output drained to the low-water mark (0)
    void on_event(std::function<void(short what)> cb);  // BEV_EVENT_EOF / ERROR / TIMEOUT / CONNECTED

    void enable(short what);
    void disable(short what);
    void set_timeouts(std::chrono::milliseconds read, std::chrono::milliseconds write);
    // Stop reading from the socket once this much input is buffered.
    void set_read_high_water(std::size_t bytes);

    void write(std::string_view data);
    std::size_t input_length() const;
    std::size_t output_length() const;
    // One line ending in LF (CRLF accepted), without the line ending. Returns
    // nullopt when no complete line is buffered. A line longer than max_len is
    // reported with too_long_out = true and the bytes up to max_len consumed.
    std::optional<std::string> read_line(std::size_t max_len, bool* too_long_out = nullptr);
    std::string read_all();
    // STARTTLS: puts TLS (server side) under this connection, taking ssl.
    // Input still buffered in plaintext is discarded (its size is returned):
    // nothing sent before the handshake may be read as if it came over TLS.
    // Output already queued (the 220 reply) is sent first.
    std::size_t start_tls_server(Base& base, SSL* ssl);
    // STARTTLS, client side: call after reading the server's 220 reply to
    // STARTTLS. Takes ssl (tls::new_client_ssl). Like start_tls_server():
    // plaintext input still buffered (a server pipelining replies ahead of
    // the handshake) is discarded and its size returned. on_event gets
    // BEV_EVENT_CONNECTED when the handshake is done, BEV_EVENT_ERROR or
    // BEV_EVENT_EOF if it fails (error_text() says why). What was enabled
    // (EV_READ/EV_WRITE) and the read high-water mark carry over to the TLS
    // layer; timeouts do not: set them again (for the handshake, too).
    std::size_t start_tls_client(Base& base, SSL* ssl);
    // The SSL of a TLS BufferEvent (nullptr for plain ones).
    SSL* ssl() const noexcept;
    // Why the last BEV_EVENT_ERROR happened. socket_error(): its errno (0 if
    // none or unknown): ECONNREFUSED, ETIMEDOUT, ECONNRESET ... error_text():
    // OpenSSL's reasons for a failed TLS handshake or record (libevent takes
    // them off OpenSSL's queue, so tls::last_error() no longer sees them),
    // else strerror(socket_error()), else "".
    int socket_error() const noexcept;
    std::string error_text() const;
    int fd() const noexcept;
    bufferevent* get() const noexcept;

private:
    struct State;
    BufferEvent() = default;
    static void read_cb(bufferevent*, void* arg) noexcept;
    static void write_cb(bufferevent*, void* arg) noexcept;
    static void event_cb(bufferevent*, short what, void* arg) noexcept;
    std::unique_ptr<State> state_;
};

// Runs fn and logs (instead of propagating) any exception. Used by the
// trampolines; also for code that drives callbacks by hand.
void guarded(const char* where, const std::function<void()>& fn) noexcept;

}  // namespace postern::event
