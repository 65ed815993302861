// NAME
//   authd/limiter.hpp - brute-force protection of the auth daemon
// PURPOSE
//   Counts recent failed password checks per client address and per user
//   name, says how long to hold back a failure's reply (auth_failure_delay,
//   doubled per recent failure, at most auth_failure_max_delay) and locks a
//   client or user out for auth_lockout_time once either count reaches
//   auth_lockout_threshold. Failures are forgotten auth_lockout_time after
//   the last one. No I/O and no clock of its own: the caller passes the time,
//   so unit tests drive it. Not the timers that carry out the delay
//   (authd/server.hpp) and not connection rate limits (smtpd does those).
// SYNOPSIS
//   Limiter lim(Limiter::Settings::from(params));
//   if (lim.locked(addr, user, now)) reply(Outcome::Locked);
//   auto f = lim.failed(addr, user, now);   // f.delay; f.client_locked, f.user_locked (just now)
//   lim.succeeded(addr, user, now);         // resets the counts unless locked
// ERRORS
//   None: every call succeeds.
// SECURITY
//   Keys are untrusted (user names from the network, through smtpd): they
//   are only compared, and the table holds at most Settings::max_entries of
//   them, least recently failed dropped first. Client addresses on this
//   machine ("", "unix", loopback: webmail, the mail processes' own checks)
//   are not tracked, so one local proxy cannot lock everybody out; their
//   users still are. User names are folded to lower case, so changing the
//   case of a name does not start a fresh count.
//   XXX: an attacker who can make max_entries distinct failures within
//   auth_lockout_time pushes older entries, locked ones included, out.
// SEE ALSO
//   authd/dispatcher.hpp, postern.conf(5) auth_*
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "config/config.hpp"

namespace postern::authd {

class Limiter {
public:
    using Clock = std::chrono::steady_clock;
    using TimePoint = Clock::time_point;

    struct Settings {
        std::chrono::milliseconds failure_delay{2000};
        std::chrono::milliseconds max_delay{15000};
        long long threshold = 10;  // failures that lock; < 1: never lock
        std::chrono::milliseconds lockout_time{600000};
        std::size_t max_entries = 100000;
        static Settings from(const config::Params& p);
    };

    struct Failure {
        std::chrono::milliseconds delay{0};  // hold the reply back this long
        long long count = 0;                 // max(client's, user's) recent failures, this one included
        bool client_locked = false;          // this failure locked the client out
        bool user_locked = false;            // this failure locked the user out
    };

    explicit Limiter(Settings s) : s_(s) {}

    // Whether the client or the user is locked out now.
    bool locked(std::string_view client, std::string_view user, TimePoint now);
    // Records a failed check of user from client.
    Failure failed(std::string_view client, std::string_view user, TimePoint now);
    // A successful check: both counts start again, but a lockout stays.
    void succeeded(std::string_view client, std::string_view user, TimePoint now);

    // Recent failures counted for one key (tests, logs).
    long long client_failures(std::string_view client, TimePoint now);
    long long user_failures(std::string_view user, TimePoint now);
    std::size_t size() const noexcept { return entries_.size(); }
    const Settings& settings() const noexcept { return s_; }
    // Whether client is tracked at all (see SECURITY).
    static bool tracks_client(std::string_view client);

private:
    struct Entry {
        long long failures = 0;
        TimePoint last_failure{};
        TimePoint locked_until{};
        std::list<std::string>::iterator order;  // position in order_
    };
    using Map = std::unordered_map<std::string, Entry>;

    static std::string client_key(std::string_view client);
    static std::string user_key(std::string_view user);
    // The live entry for key, or nullptr; drops it when it has expired.
    Entry* find(const std::string& key, TimePoint now);
    Entry& touch(const std::string& key, TimePoint now);
    bool expired(const Entry& e, TimePoint now) const;
    void purge(TimePoint now);
    std::chrono::milliseconds delay_for(long long n) const;

    Settings s_;
    Map entries_;
    std::list<std::string> order_;  // keys, least recently failed first
};

}  // namespace postern::authd
