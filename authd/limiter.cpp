// authd/limiter.cpp - failure counts, delays and lockouts per client and per user.
#include "authd/limiter.hpp"

#include <algorithm>

#include "util/cidr.hpp"
#include "util/strings.hpp"

namespace postern::authd {

using std::chrono::milliseconds;

Limiter::Settings Limiter::Settings::from(const config::Params& p) {
    Settings s;
    s.failure_delay = std::chrono::duration_cast<milliseconds>(p.auth_failure_delay);
    s.max_delay = std::chrono::duration_cast<milliseconds>(p.auth_failure_max_delay);
    s.threshold = p.auth_lockout_threshold;
    s.lockout_time = std::chrono::duration_cast<milliseconds>(p.auth_lockout_time);
    return s;
}

bool Limiter::tracks_client(std::string_view client) {
    return !client.empty() && client != "unix" && !util::is_loopback(client);
}

// Note: the prefixes keep a user called "192.0.2.1" apart from that address.
std::string Limiter::client_key(std::string_view client) { return "c " + util::to_lower(client); }
std::string Limiter::user_key(std::string_view user) { return "u " + util::to_lower(user); }

bool Limiter::expired(const Entry& e, TimePoint now) const {
    // A lockout that has run out forgets the failures that led to it too.
    if (e.locked_until != TimePoint{}) return e.locked_until <= now;
    return e.last_failure + s_.lockout_time <= now;
}

Limiter::Entry* Limiter::find(const std::string& key, TimePoint now) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    if (expired(it->second, now)) {
        order_.erase(it->second.order);
        entries_.erase(it);
        return nullptr;
    }
    return &it->second;
}

Limiter::Entry& Limiter::touch(const std::string& key, TimePoint now) {
    if (Entry* e = find(key, now)) {
        order_.splice(order_.end(), order_, e->order);
        return *e;
    }
    purge(now);
    order_.push_back(key);
    Entry& e = entries_[key];
    e.order = std::prev(order_.end());
    return e;
}

void Limiter::purge(TimePoint now) {
    // The front failed longest ago, so expired entries gather there.
    while (!order_.empty()) {
        auto it = entries_.find(order_.front());
        bool full = entries_.size() >= std::max<std::size_t>(s_.max_entries, 1);
        if (!full && !expired(it->second, now)) break;
        entries_.erase(it);
        order_.pop_front();
    }
}

milliseconds Limiter::delay_for(long long n) const {
    if (n < 1 || s_.failure_delay.count() <= 0) return milliseconds(0);
    milliseconds d = s_.failure_delay;
    for (long long i = 1; i < n && d < s_.max_delay; ++i) d *= 2;
    return std::min(d, s_.max_delay);
}

bool Limiter::locked(std::string_view client, std::string_view user, TimePoint now) {
    auto is_locked = [&](const std::string& key) {
        Entry* e = find(key, now);
        return e != nullptr && e->locked_until > now;
    };
    return (tracks_client(client) && is_locked(client_key(client))) || is_locked(user_key(user));
}

Limiter::Failure Limiter::failed(std::string_view client, std::string_view user, TimePoint now) {
    Failure f;
    auto count = [&](const std::string& key, bool& locked_out) {
        Entry& e = touch(key, now);
        ++e.failures;
        e.last_failure = now;
        // Note: failures of checks that were already running when the lock
        // began are counted but do not make it longer.
        if (s_.threshold > 0 && e.failures >= s_.threshold && e.locked_until == TimePoint{}) {
            e.locked_until = now + s_.lockout_time;
            locked_out = true;
        }
        f.count = std::max(f.count, e.failures);
    };
    if (tracks_client(client)) count(client_key(client), f.client_locked);
    count(user_key(user), f.user_locked);
    f.delay = delay_for(f.count);
    return f;
}

void Limiter::succeeded(std::string_view client, std::string_view user, TimePoint now) {
    auto reset = [&](const std::string& key) {
        Entry* e = find(key, now);
        if (e == nullptr || e->locked_until > now) return;
        order_.erase(e->order);
        entries_.erase(key);
    };
    if (tracks_client(client)) reset(client_key(client));
    reset(user_key(user));
}

long long Limiter::client_failures(std::string_view client, TimePoint now) {
    if (!tracks_client(client)) return 0;
    Entry* e = find(client_key(client), now);
    return e ? e->failures : 0;
}

long long Limiter::user_failures(std::string_view user, TimePoint now) {
    Entry* e = find(user_key(user), now);
    return e ? e->failures : 0;
}

}  // namespace postern::authd
