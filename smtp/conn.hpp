// NAME
//   smtp/conn.hpp - one connection to one server: socket, TLS, timeouts
// PURPOSE
//   The glue between a TCP connection (libevent BufferEvent, STARTTLS on
//   demand) and the protocol engine (smtp/protocol.hpp): connects with
//   smtp_connect_timeout, feeds replies to the Client, lets it send, arms the
//   timeout of the step it waits for (smtp_helo_timeout, smtp_mail_timeout,
//   ...), runs the TLS handshake and checks the server's certificate as the
//   policy asks, and logs the TLS line as Postfix does ("Trusted TLS
//   connection established to mx.example[192.0.2.1]:25: TLSv1.3 with cipher
//   ..."). It tells its owner when the session became ready for a
//   transaction or ended. Not the delivery logic (smtp/agent.cpp).
// SYNOPSIS
//   auto c = Conn::open(env, target, settings, [](Conn& c) { ... c.state() ... });
//   c->client().begin(txn, src, done);     // when notified in Phase::Ready
//   c->quit();
// ERRORS
//   A failed connect, handshake or timeout ends the session; failed() and
//   failure() say why (reason, DSN) when it ended before it was ready.
// SEE ALSO
//   smtp/protocol.hpp, smtp/agent.hpp, event/event.hpp, tls/tls.hpp
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "event/event.hpp"
#include "smtp/dest.hpp"
#include "smtp/protocol.hpp"
#include "tls/tls.hpp"

namespace postern::smtp {

// What every connection of this process shares.
struct ConnEnv {
    event::Base& base;
    const config::Params& params;
    SSL_CTX* tls = nullptr;  // nullptr: no TLS (no CA file could be loaded)
};

class Conn : private ClientIo {
public:
    enum class Phase { Connecting, Talking, Ready, Closed };
    using Notify = std::function<void(Conn&)>;

    // Starts the TCP connect; notify is called (never from inside open) when
    // the session is Ready, and when it is Closed.
    static std::unique_ptr<Conn> open(ConnEnv& env, const Target& target, const ClientSettings& settings, Notify notify);
    ~Conn() override;
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    Client& client() noexcept { return *client_; }
    const Target& target() const noexcept { return target_; }
    Phase phase() const noexcept { return phase_; }
    // Ended before it was ready: why, and the DSN to use if no other host works.
    const std::string& failure() const noexcept { return failure_; }
    const std::string& failure_dsn() const noexcept { return failure_dsn_; }
    // When the TCP connection was made (for smtp_connection_reuse_time_limit).
    std::chrono::steady_clock::time_point born() const noexcept { return born_; }
    void set_notify(Notify n) { notify_ = std::move(n); }
    // After a transaction ended (the Client is Ready again or Closed): re-arm
    // the timeouts and notify again on close.
    void after_transaction();
    // Sends QUIT (when the session is ready) and closes.
    void quit();

private:
    Conn(ConnEnv& env, Target target, const ClientSettings& settings, Notify notify);
    // ClientIo
    void send(std::string_view bytes) override;
    void start_tls() override;
    bool tls_active() const override { return tls_; }
    std::size_t output_pending() const override;
    void close() override;  // ClientIo::close: the Client is done with the socket

    void on_event(short what);
    void on_read();
    void progress();
    void fail(const std::string& reason, const std::string& dsn);
    void arm();
    void finish();
    std::chrono::milliseconds step_timeout() const;

    ConnEnv& env_;
    Target target_;
    ClientSettings settings_;
    Notify notify_;
    std::unique_ptr<event::BufferEvent> bev_;
    std::unique_ptr<Client> client_;
    event::Event connect_timer_, later_;
    Phase phase_ = Phase::Connecting;
    bool tls_ = false, handshaking_ = false, notified_ready_ = false, closing_ = false;
    std::string failure_, failure_dsn_;
    std::chrono::steady_clock::time_point born_;
};

}  // namespace postern::smtp
