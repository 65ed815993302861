// NAME
//   auth/client.hpp - talking to the auth daemon from an event loop, or blocking
// PURPOSE
//   Client keeps one connection to the auth daemon's socket (private/auth)
//   per process, sends requests as they come (pipelined, each with its own
//   id) and calls each request's callback on the loop when its reply arrives.
//   A lost or refused connection fails the requests in flight as TempFail and
//   is opened again for the next request. call() is the blocking form for
//   commands and tests. Not the daemon (auth/), not SASL (auth/sasl.hpp).
// SYNOPSIS
//   auth::Client auth(base, "/private/auth", 30s);
//   auth.send(VerifyRequest{...}, [](const auth::Reply& r) { ... });   // id is filled in
//   auto r = auth::call("/var/spool/postern/private/auth", LookupRequest{...}, 5000);
// ERRORS
//   Callbacks always run, exactly once, on the loop (never inside send()):
//   connection failures, malformed replies and timeouts give Outcome::TempFail
//   with reason "backend_failure". Destroying the Client drops the callbacks
//   still pending without calling them.
// SEE ALSO
//   auth/proto.hpp
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "auth/proto.hpp"
#include "event/event.hpp"
#include "util/result.hpp"

namespace postern::auth {

class Client {
public:
    using Done = std::function<void(const Reply&)>;
    Client(event::Base& base, std::string socket_path, std::chrono::milliseconds timeout);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    void send(VerifyRequest req, Done done);
    void send(LookupRequest req, Done done);
    std::size_t pending() const noexcept { return pending_.size(); }

private:
    struct Pending {
        Done done;
        std::chrono::steady_clock::time_point deadline;
    };
    void send_frame(std::uint64_t id, const ipc::AttrList& frame, Done done);
    bool connect();
    void on_read();
    void fail_all(const std::string& why);
    void finish(std::uint64_t id, const Reply& r);
    void arm_timer();

    event::Base& base_;
    std::string path_;
    std::chrono::milliseconds timeout_;
    std::uint64_t next_id_ = 1;
    std::unique_ptr<event::BufferEvent> conn_;
    std::vector<std::unique_ptr<event::BufferEvent>> old_conns_;  // freed on the next loop turn
    std::unique_ptr<ipc::Decoder> decoder_;
    std::map<std::uint64_t, Pending> pending_;
    event::Event timer_, later_;
    std::vector<std::pair<Done, Reply>> deferred_;  // failures reported on the next loop turn
};

// Blocking: connect, send one request, read its reply (timeout in ms for each step).
Result<Reply> call(const std::string& socket_path, const VerifyRequest& req, int timeout_ms);
Result<Reply> call(const std::string& socket_path, const LookupRequest& req, int timeout_ms);

}  // namespace postern::auth
