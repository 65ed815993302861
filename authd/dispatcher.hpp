// NAME
//   authd/dispatcher.hpp - one auth request from decoding to reply, without I/O
// PURPOSE
//   The auth daemon's logic between the sockets and the backends: a verify
//   request from a locked-out client or user is answered "locked" without
//   asking a backend; otherwise the backend checks the password, the limiter
//   counts the outcome, and a failure's reply is held back by the limiter's
//   delay (on the Delayer: the loop's timers, or a fake in the unit tests).
//   Lookups go straight to the backend. Each request's reply goes to its own
//   Send callback, whenever it is ready: replies come out of order. Logs one
//   line per verify outcome and a warning per lockout. Not the wire format
//   (auth/proto.hpp), not the sockets (authd/server.hpp).
// SYNOPSIS
//   Dispatcher d(backend, limiter, delayer, [] { return Limiter::Clock::now(); });
//   d.handle(std::move(request), [](const auth::Reply& r) { write(encode(r)); });
// LOG LINES
//   info: auth ok: service=smtpd user=alice rip=192.0.2.1 kind=system
//   info: auth failed: service=smtpd user=alice rip=192.0.2.1 reason=password_mismatch
//   warning: auth: client 192.0.2.1 locked out for 600s after 10 failures
//   warning: auth tempfail: service=smtpd user=alice rip=192.0.2.1: DETAIL
// ERRORS
//   Every request gets exactly one reply, also when the backend fails
//   (tempfail). A locked reply waits auth_failure_delay, a failure the
//   limiter's delay; ok and tempfail go out at once.
// SECURITY
//   User names are untrusted and logged through util::printable; passwords
//   are never logged, and are wiped once the backend has them.
// SEE ALSO
//   authd/limiter.hpp, authd/backends.hpp, authd/server.hpp
#pragma once

#include <chrono>
#include <functional>

#include "auth/proto.hpp"
#include "authd/backends.hpp"
#include "authd/limiter.hpp"
#include "authd/verdict.hpp"

namespace postern::authd {

class Delayer {
public:
    virtual ~Delayer() = default;
    // Runs fn on the loop after delay (0: on a later loop turn or at once).
    virtual void after(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
};

class Dispatcher {
public:
    using Send = std::function<void(const auth::Reply&)>;
    using Now = std::function<Limiter::TimePoint()>;

    Dispatcher(Backend& backend, Limiter& limiter, Delayer& delayer, Now now)
        : backend_(backend), limiter_(limiter), delayer_(delayer), now_(std::move(now)) {}

    void handle(auth::Request req, Send send);

private:
    struct Who {  // what a verify's log lines and limiter need after the password is gone
        std::uint64_t id;
        std::string service, user, client;
    };
    void verify(auth::VerifyRequest req, Send send);
    void lookup(auth::LookupRequest req, Send send);
    void verified(const Who& who, Verdict v, const Send& send);

    Backend& backend_;
    Limiter& limiter_;
    Delayer& delayer_;
    Now now_;
};

}  // namespace postern::authd
