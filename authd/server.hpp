// NAME
//   authd/server.hpp - the auth daemon's connections on libevent
// PURPOSE
//   Owns the daemon's state (limiter, backends, dispatcher) and, for each
//   client connection on private/auth (smtpd processes now, the IMAP/POP3
//   login and mail processes later), a bufferevent feeding an ipc::Decoder.
//   Every decoded request goes to the Dispatcher; its reply is written when
//   it is ready, so one connection has many requests in flight and they are
//   answered out of order. Also the Delayer: one libevent timer over a
//   queue of deadlines carries out the failure delays, without sleeping.
//   Not the checks (authd/backends.hpp) and not the policy
//   (authd/dispatcher.hpp, authd/limiter.hpp).
// SYNOPSIS
//   Server srv(ctx);                 // after the (empty) jail: log::fatal on bad config
//   srv.accept(std::move(conn));     // from the service skeleton
//   srv.drain();                     // reload: finish the requests in flight, then close
// ERRORS
//   A malformed frame or request: a warning, and the connection is dropped
//   (its requests in flight are not answered). A peer that does not read its
//   replies for WriteTimeout is dropped.
// SECURITY
//   Peers are local daemons, some of them network-facing and unprivileged,
//   so frames are untrusted: RequestLimits bound a frame (16 KiB, 32
//   attributes) and MaxInFlight the requests one connection may have
//   running; past that we stop reading from it until replies go out.
// SEE ALSO
//   authd/dispatcher.hpp, service/service.hpp, ipc/ipc.hpp
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "authd/backends.hpp"
#include "authd/dispatcher.hpp"
#include "authd/limiter.hpp"
#include "ipc/ipc.hpp"
#include "service/service.hpp"

namespace postern::authd {

inline constexpr ipc::Limits RequestLimits{.max_frame = 16 * 1024, .max_attrs = 32};
inline constexpr std::size_t MaxInFlight = 256;  // requests per connection
inline constexpr std::chrono::milliseconds WriteTimeout{60000};

class Server : public Delayer {
public:
    explicit Server(service::Context& ctx);
    ~Server() override;
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    void accept(service::Connection c);
    // Stop reading new requests: idle connections close now, busy ones after
    // their last reply. The skeleton exits once every connection is gone.
    void drain();

    // Delayer
    void after(std::chrono::milliseconds delay, std::function<void()> fn) override;

private:
    struct Conn;
    void on_read(Conn& c);
    void reply(std::uint64_t conn_id, const auth::Reply& r);
    void close(Conn& c);
    void dead(Conn& c);
    void run_due();
    void arm_delay_timer();

    service::Context& ctx_;
    Limiter limiter_;
    std::unique_ptr<Backends> backends_;
    std::unique_ptr<Dispatcher> dispatcher_;
    std::uint64_t next_id_ = 1;
    std::map<std::uint64_t, std::unique_ptr<Conn>> conns_;
    bool draining_ = false;
    std::multimap<Limiter::TimePoint, std::function<void()>> delayed_;
    event::Event delay_timer_, reaper_;
};

}  // namespace postern::authd
