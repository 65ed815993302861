// NAME
//   qmgr/qmgr.hpp - the queue manager: from incoming/ to delivered, deferred or bounced
// PURPOSE
//   Takes messages from incoming/ (and due ones from deferred/) into active/,
//   never more than qmgr_message_active_limit at once, so memory stays bounded
//   whatever the queue length; resolves each pending recipient (Router);
//   hands batches to the delivery agents (Agents) within per-transport process
//   limits and per-destination concurrency and recipient limits; records each
//   outcome in the queue file; and then removes the file (nothing pending),
//   moves it to deferred/ with its next attempt time as the file's mtime
//   (exponential backoff), or returns it to the sender (bounce, expiry).
//   Not delivery itself (local, smtp), not the DSN text (qmgr/bounce), not
//   sockets: Agents is an interface, so unit tests drive the scheduler.
// SYNOPSIS
//   Manager m(base, settings, router, agents);
//   m.start();                 // resume active/, then incoming/ and due deferred/
//   m.trigger('A');            // new mail in incoming/ ('F' flush deferred/, 'W' wake-up)
// ERRORS
//   Nothing is thrown out of the event loop. A damaged queue file moves to
//   corrupt/ with a log line. I/O trouble defers the message (it is retried
//   later); a lost agent defers the recipients it had.
// SECURITY
//   Runs as mail_owner, chrooted in the queue directory. Queue files are read
//   strictly by lib/queue. Agent replies are checked against the request
//   (delivery::decode_reply) before anything is recorded.
//   Files can be renamed or removed under qmgr by `postern queue` (hold,
//   delete, requeue): the open descriptor keeps working, statuses are written
//   through it, and a move that finds the file gone leaves it where the
//   administrator put it.
// SEE ALSO
//   delivery/route.hpp, qmgr/bounce.hpp, delivery/delivery.hpp, Postfix qmgr(8)
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "delivery/delivery.hpp"
#include "delivery/route.hpp"
#include "event/event.hpp"
#include "qmgr/bounce.hpp"
#include "queue/queue.hpp"
#include "util/unique_fd.hpp"

namespace postern::qmgr {

struct Settings {
    std::string queue_dir = "/";  // "/" when chrooted
    std::string myhostname = "localhost";
    std::string mail_name = "Postern";
    std::size_t active_limit = 20000;
    std::size_t recycle_limit = 1000;  // queue_recycle_limit
    std::chrono::seconds queue_run_delay{300}, min_backoff{300}, max_backoff{4000};
    std::chrono::seconds max_lifetime{5 * 86400}, bounce_lifetime{5 * 86400};
    std::size_t bounce_size_limit = 50000;
    std::chrono::seconds delay_warning{0};  // 0 = no delay notices
    std::string bounce_notice_recipient = "postmaster";
    std::string double_bounce_sender = "double-bounce";
    // Per transport (master.cf service name): processes, parallel deliveries
    // per destination, recipients per request.
    std::function<int(const std::string&)> process_limit = [](const std::string&) { return 100; };
    std::function<int(const std::string&)> destination_concurrency = [](const std::string&) { return 20; };
    std::function<int(const std::string&)> recipient_limit = [](const std::string& t) {
        return t == "local" || t == "virtual" ? 1 : 50;
    };
    // Requests sent back to back in one agent session (one connection).
    std::function<int(const std::string&)> batch_limit = [](const std::string&) { return 1; };

    static Settings from(const config::Config& cfg, const std::vector<config::Service>& services, bool chrooted);
};

// How qmgr reaches the delivery agents: one session carries one or more
// requests for the same transport and destination. done[i] is called exactly
// once for reqs[i], in order, later, from the event loop (never inside start).
class Agents {
public:
    using Done = std::function<void(Result<delivery::Reply>)>;
    virtual ~Agents() = default;
    virtual void start(std::vector<delivery::Request> reqs, std::vector<Done> done) = 0;
};

// Agents over UNIX sockets: queue_dir/private/<transport>, one connection
// per session, its requests written back to back and the replies read in
// order through the event loop, each with a time limit.
std::unique_ptr<Agents> make_socket_agents(event::Base& base, std::string queue_dir, std::chrono::seconds timeout);

class Manager {
public:
    Manager(event::Base& base, Settings s, const delivery::Router& router, Agents& agents);
    Manager(const Manager&) = delete;
    Manager& operator=(const Manager&) = delete;
    ~Manager();

    void start();
    void trigger(char what);
    // Stops starting deliveries and scans (the process is about to exit);
    // deliveries in flight still complete and are recorded. on_idle runs
    // when the last one is back.
    void drain();
    std::function<void()> on_idle;

    // For tests and logs.
    std::size_t active_count() const noexcept { return active_.size(); }
    std::size_t in_flight() const noexcept { return in_flight_total_; }

    // Wall clock in microseconds; replaceable in tests.
    std::function<std::int64_t()> now_us;

private:
    struct Result_ {
        enum class State { Pending, Sent, Deferred, Bounced } state = State::Pending;
        std::string dsn, relay, reason;
        delivery::Outcome::Handoff handoff = delivery::Outcome::Handoff::Final;
        bool logged = false;  // the agent wrote the status line
    };
    struct Message {
        std::string id;
        UniqueFd fd;  // only while finish() runs
        queue::Envelope env;
        std::uint64_t content_offset = 0;
        std::int64_t active_us = 0;
        std::vector<Result_> results;  // by recipient index
        std::size_t jobs = 0;          // outstanding delivery requests
    };
    struct Job {
        std::string msg_id;
        std::string transport, nexthop;
        std::string dest;  // key into dests_: "transport\0destination"
        std::vector<std::uint32_t> rcpts;
    };
    struct Dest {
        std::deque<Job> jobs;
        int in_flight = 0;
    };

    void scan();
    void scan_dir(std::string_view dir, bool only_due, bool everything);
    bool take(std::string_view dir, const std::string& id);
    void plan(Message& m);
    void dispatch();
    void deliver(std::vector<Job> batch);
    delivery::Request request_for(const Job& job) const;
    void completed(const Job& job, bool session_over, Result<delivery::Reply> reply);
    void finish(Message& m);
    UniqueFd reopen(const std::string& id) const;
    // Queues a DSN of this kind about these recipients; false if it could
    // not be written (failures are then retried with the message).
    bool notify(Message& m, const std::vector<std::uint32_t>& which, DsnKind kind);
    // delay_warning_time: one delay notice per message, flagged in the file.
    void maybe_warn(Message& m, std::int64_t age_us);
    void log_result(const Message& m, std::uint32_t i, const Result_& r);
    std::string path(std::string_view dir, std::string_view id) const;
    void move_corrupt(const std::string& id, std::string_view dir, const std::string& why);
    void schedule_scan();
    // Retires a finished queue file (queue::retire), recycling it while
    // recycle/ holds fewer than recycle_limit files.
    int retire(std::string_view dir, const std::string& id, int fd);

    event::Base& base_;
    Settings s_;
    const delivery::Router& router_;
    Agents& agents_;
    std::map<std::string, std::unique_ptr<Message>> active_;
    std::map<std::string, Dest> dests_;  // "transport\0key"
    std::map<std::string, int> transport_in_flight_;
    std::size_t in_flight_total_ = 0;
    bool started_ = false, want_incoming_ = false, want_deferred_ = false, flush_ = false;
    bool scanning_ = false, draining_ = false;
    event::Event scan_ev_, timer_ev_;
    std::chrono::steady_clock::time_point last_deferred_scan_{};
    // Files put into recycle/ since it was last counted, plus that count;
    // recounted (at most once a second) only when it reaches the limit.
    std::size_t recycled_ = 0;
    std::chrono::steady_clock::time_point recycle_counted_{};
};

}  // namespace postern::qmgr
