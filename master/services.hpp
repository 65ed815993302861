// NAME
//   master/services.hpp - master's pure logic: endpoints and process accounting
// PURPOSE
//   Turns a master.cf entry into the endpoints to bind (inet_interfaces,
//   host:port, [v6]:port, service names, unix socket paths) and keeps the
//   per-service process counts that decide when to spawn another child, when
//   to throttle a broken service and when it may run again. No sockets, no
//   fork: master.cpp does the I/O, unit tests drive this directly.
// SYNOPSIS
//   auto eps = resolve_endpoints(svc, params);        // Result<std::vector<Endpoint>>
//   Pool pool(maxproc);  pool.spawned(pid, now);  pool.status(pid, Avail);
//   if (pool.want_listen()) ...;  auto v = pool.exited(pid, status, now);
// ERRORS
//   resolve_endpoints: Error::config for a bad port, address or name.
// SEE ALSO
//   master/master.hpp, service/proto.hpp
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace postern::master {

struct Endpoint {
    enum class Kind { Inet, Unix } kind = Kind::Inet;
    int family = 0;    // AF_INET / AF_INET6 for Inet
    std::string host;  // numeric address for Inet
    int port = 0;
    std::string path;  // Unix socket path
    std::string text() const;
    bool operator==(const Endpoint&) const = default;
};

// Port for "25", "smtp", "submission", ...; nullopt when unknown.
std::optional<int> service_port(std::string_view name);

Result<std::vector<Endpoint>> resolve_endpoints(const config::Service& svc, const config::Params& params);

using Clock = std::chrono::steady_clock;

// What happened when a child exited.
struct ExitVerdict {
    bool abnormal = false;   // killed by a signal or non-zero exit
    bool throttle = false;   // start the throttle period now
    std::string how;         // "exit status 1", "killed by signal 9"
};

class Pool {
public:
    explicit Pool(long long maxproc) : maxproc_(maxproc) {}

    void spawned(pid_t pid, Clock::time_point now);
    void status_avail(pid_t pid, bool avail);
    ExitVerdict exited(pid_t pid, int wait_status, Clock::time_point now);
    bool has(pid_t pid) const { return children_.count(pid) != 0; }

    // Master should watch the listeners (and spawn on activity) when no child
    // is available, the process limit allows one more, and not throttled.
    bool want_listen() const { return !throttled_ && avail_ == 0 && (maxproc_ == 0 || total() < maxproc_); }
    void set_throttled(bool t) { throttled_ = t; }
    bool throttled() const { return throttled_; }
    long long total() const { return static_cast<long long>(children_.size()); }
    long long avail() const { return avail_; }
    std::vector<pid_t> pids() const;

private:
    struct Child {
        bool avail = true;
        bool used = false;
        Clock::time_point started;
    };
    long long maxproc_;
    long long avail_ = 0;
    bool throttled_ = false;
    std::map<pid_t, Child> children_;
    std::vector<Clock::time_point> recent_failures_;
};

}  // namespace postern::master
