// qmgr/qmgr.cpp - the queue manager's scheduler: scan, plan, dispatch, record, finish.
#include "qmgr/qmgr.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ipc/ipc.hpp"
#include "log/log.hpp"
#include "qmgr/bounce.hpp"
#include "util/strings.hpp"

namespace postern::qmgr {

namespace {

constexpr std::int64_t UsPerSec = 1000000;

std::int64_t wall_now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

long long param_or(const config::Config& cfg, const std::string& name, long long fallback) {
    auto v = cfg.value(name);
    if (!v) return fallback;
    auto n = util::parse_long(*v);
    return n && *n > 0 ? *n : fallback;
}

std::string dest_key(const std::string& transport, const std::string& key) { return transport + '\0' + key; }

// "4.4.1 text" or "text": the DSN code at the front of an error transport's text, if any.
std::pair<std::string, std::string> split_dsn(const std::string& text, std::string_view fallback) {
    auto sp = text.find(' ');
    std::string first = text.substr(0, sp);
    if (delivery::valid_dsn(first) && first[0] != '2')
        return {first, sp == std::string::npos ? std::string() : std::string(util::trim(text.substr(sp + 1)))};
    return {std::string(fallback), text};
}

}  // namespace

Settings Settings::from(const config::Config& cfg, const std::vector<config::Service>& services, bool chrooted) {
    const auto& p = cfg.params();
    Settings s;
    s.queue_dir = chrooted ? "/" : p.queue_directory;
    s.myhostname = p.myhostname;
    s.mail_name = p.mail_name;
    s.active_limit = static_cast<std::size_t>(p.qmgr_message_active_limit);
    s.recycle_limit = static_cast<std::size_t>(p.queue_recycle_limit);
    s.queue_run_delay = p.queue_run_delay;
    s.min_backoff = p.minimal_backoff_time;
    s.max_backoff = std::max(p.maximal_backoff_time, p.minimal_backoff_time);
    s.max_lifetime = p.maximal_queue_lifetime;
    s.bounce_lifetime = p.bounce_queue_lifetime;
    s.bounce_size_limit = static_cast<std::size_t>(p.bounce_size_limit);
    s.delay_warning = p.delay_warning_time;
    s.bounce_notice_recipient = p.bounce_notice_recipient;
    s.double_bounce_sender = p.double_bounce_sender;
    std::map<std::string, int> procs;
    for (auto& svc : services) {
        if (svc.type != config::ServiceType::Unix) continue;
        procs[svc.name] = static_cast<int>(svc.maxproc > 0 ? svc.maxproc : p.default_process_limit);
    }
    int default_procs = static_cast<int>(p.default_process_limit);
    s.process_limit = [procs, default_procs](const std::string& t) {
        auto it = procs.find(t);
        return it != procs.end() ? it->second : default_procs;
    };
    // Per-transport overrides are read once here ("<transport>_destination_..."),
    // like Postfix; transports are few.
    std::map<std::string, int> conc, rcpt;
    for (auto& svc : services) {
        conc[svc.name] = static_cast<int>(param_or(cfg, svc.name + "_destination_concurrency_limit",
                                                   svc.name == "local" || svc.name == "virtual"
                                                       ? 2
                                                       : p.default_destination_concurrency_limit));
        rcpt[svc.name] = static_cast<int>(param_or(cfg, svc.name + "_destination_recipient_limit",
                                                   svc.name == "local" || svc.name == "virtual"
                                                       ? 1
                                                       : p.default_destination_recipient_limit));
    }
    int dc = static_cast<int>(p.default_destination_concurrency_limit);
    int dr = static_cast<int>(p.default_destination_recipient_limit);
    auto is_local = [](const std::string& t) { return t == "local" || t == "virtual"; };
    s.destination_concurrency = [conc, dc, is_local](const std::string& t) {
        auto it = conc.find(t);
        return it != conc.end() ? it->second : is_local(t) ? 2 : dc;
    };
    // Requests per agent session: a local delivery agent writes a batch for
    // one mailbox in one child with one directory fsync; smtp carries a
    // batch over one cached connection, and fewer sessions mean fewer agent
    // restarts (max_use), whose connection caches go with them.
    s.batch_limit = [is_local](const std::string& t) { return is_local(t) ? 64 : 10; };
    s.recipient_limit = [rcpt, dr, is_local](const std::string& t) {
        auto it = rcpt.find(t);
        return std::min(it != rcpt.end() ? it->second : is_local(t) ? 1 : dr, static_cast<int>(delivery::MaxRecipients));
    };
    return s;
}

Manager::Manager(event::Base& base, Settings s, const delivery::Router& router, Agents& agents)
    : now_us(wall_now_us), base_(base), s_(std::move(s)), router_(router), agents_(agents) {
    scan_ev_ = event::Event::timer(base_, [this] { scan(); });
    timer_ev_ = event::Event::timer(base_, [this] {
        want_incoming_ = want_deferred_ = true;
        scan();
        timer_ev_.add(std::chrono::seconds(std::min<long long>(s_.queue_run_delay.count(), 60)));
    });
}

Manager::~Manager() = default;

std::string Manager::path(std::string_view dir, std::string_view id) const {
    std::string p = s_.queue_dir;
    if (p.empty() || p.back() != '/') p += '/';
    p += dir;
    if (!id.empty()) {
        p += '/';
        p += id;
    }
    return p;
}

void Manager::start() {
    started_ = true;
    if (s_.recycle_limit > 0) {
        recycled_ = queue::count_recycled(s_.queue_dir);
        recycle_counted_ = std::chrono::steady_clock::now();
    }
    // After a crash or reboot: everything in active/ was in progress.
    scan_dir(queue::Active, false, true);
    want_incoming_ = want_deferred_ = true;
    scan();
    timer_ev_.add(std::chrono::seconds(std::min<long long>(s_.queue_run_delay.count(), 60)));
}

void Manager::trigger(char what) {
    if (what == 'F') {
        flush_ = true;
        want_deferred_ = true;
    }
    want_incoming_ = true;
    if (what == 'W') want_deferred_ = true;
    schedule_scan();
}

void Manager::drain() {
    draining_ = true;
    scan_ev_.del();
    timer_ev_.del();
}

int Manager::retire(std::string_view dir, const std::string& id, int fd) {
    bool recycle = s_.recycle_limit > 0;
    if (recycle && recycled_ >= s_.recycle_limit) {
        // Writers may have taken some since: look again, but not often.
        auto now = std::chrono::steady_clock::now();
        if (now - recycle_counted_ >= std::chrono::seconds(1)) {
            recycled_ = queue::count_recycled(s_.queue_dir);
            recycle_counted_ = now;
        }
        recycle = recycled_ < s_.recycle_limit;
    }
    int err = queue::retire(s_.queue_dir, dir, id, fd, recycle);
    if (err == 0 && recycle) ++recycled_;
    return err;
}

void Manager::schedule_scan() {
    if (!draining_ && !scan_ev_.pending()) scan_ev_.add(std::chrono::milliseconds(0));
}

void Manager::scan() {
    if (!started_ || scanning_ || draining_) return;
    scanning_ = true;
    auto now = std::chrono::steady_clock::now();
    if (now - last_deferred_scan_ >= s_.queue_run_delay) want_deferred_ = true;
    if (want_incoming_) {
        want_incoming_ = false;
        scan_dir(queue::Incoming, false, false);
    }
    if (want_deferred_ && active_.size() < s_.active_limit) {
        want_deferred_ = false;
        last_deferred_scan_ = now;
        bool everything = flush_;
        flush_ = false;
        scan_dir(queue::Deferred, !everything, false);
    }
    scanning_ = false;
    dispatch();
}

// Note: readdir order, not arrival order; both Postfix and this scan until
// the active set is full and come back for the rest when room frees up.
void Manager::scan_dir(std::string_view dir, bool only_due, bool everything) {
    std::string dpath = path(dir, "");
    DIR* d = ::opendir(dpath.c_str());
    if (!d) {
        log::warn("open directory %s: %s", dpath.c_str(), std::strerror(errno));
        return;
    }
    std::int64_t now = now_us();
    std::vector<std::string> ids;
    bool more = false;
    while (dirent* e = ::readdir(d)) {
        std::string_view name = e->d_name;
        if (!queue::valid_id(name) || active_.count(std::string(name))) continue;
        if (!everything && active_.size() + ids.size() >= s_.active_limit) {
            more = true;
            break;
        }
        if (only_due) {
            struct stat st;
            if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            std::int64_t due = static_cast<std::int64_t>(st.st_mtim.tv_sec) * UsPerSec + st.st_mtim.tv_nsec / 1000;
            if (due > now) continue;
        }
        ids.emplace_back(name);
    }
    ::closedir(d);
    for (auto& id : ids) take(dir, id);
    if (more && dir == queue::Incoming) want_incoming_ = true;
    if (more && dir == queue::Deferred) want_deferred_ = true;
}

void Manager::move_corrupt(const std::string& id, std::string_view dir, const std::string& why) {
    log::warn("%s: %s; moving it to corrupt/", id.c_str(), why.c_str());
    if (auto r = queue::move_to(s_.queue_dir, id, dir, queue::Corrupt); !r)
        log::warn("%s: %s", id.c_str(), r.error().text.c_str());
}

bool Manager::take(std::string_view dir, const std::string& id) {
    if (dir != queue::Active) {
        std::string from = path(dir, id), to = path(queue::Active, id);
        // Note: no directory fsync: after a crash the file is in one of the
        // two directories, and both are scanned at start-up.
        if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
            if (errno != ENOENT) log::warn("%s: move to active/: %s", id.c_str(), std::strerror(errno));
            return false;
        }
    }
    std::string p = path(queue::Active, id);
    UniqueFd fd(::open(p.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        if (errno != ENOENT) log::warn("%s: open %s: %s", id.c_str(), p.c_str(), std::strerror(errno));
        return false;
    }
    std::uint64_t off = 0;
    auto env = queue::read_envelope(fd.get(), &off);
    if (!env) {
        if (env.error().kind == Error::Kind::Perm) {
            move_corrupt(id, queue::Active, env.error().text);
        } else {
            log::warn("%s: %s", id.c_str(), env.error().text.c_str());
        }
        return false;
    }
    if (env->queue_id != id) {
        move_corrupt(id, queue::Active, "queue ID in the file is " + util::printable(env->queue_id));
        return false;
    }
    auto m = std::make_unique<Message>();
    m->id = id;
    // Note: no descriptor is kept while the message waits or is delivered
    // (20,000 active messages would exceed RLIMIT_NOFILE); finish() opens
    // the file again, wherever `postern queue` may have moved it.
    m->env = std::move(*env);
    m->content_offset = off;
    m->active_us = now_us();
    m->results.resize(m->env.recipients.size());
    Message& ref = *m;
    active_.emplace(id, std::move(m));
    plan(ref);
    return true;
}

void Manager::plan(Message& m) {
    // Group pending recipients by transport and destination, then cut the
    // groups into requests of at most recipient_limit recipients.
    std::map<std::string, Job> groups;
    std::vector<std::string> order;
    const std::string dbl_local = util::to_lower(s_.double_bounce_sender);
    for (std::uint32_t i = 0; i < m.env.recipients.size(); ++i) {
        const auto& rc = m.env.recipients[i];
        if (rc.status != queue::StatusPending) continue;
        Result_& res = m.results[i];
        auto route = router_.resolve(rc.address);
        if (!route) {
            res = {Result_::State::Deferred, "4.3.0", "none", route.error().text};
            continue;
        }
        // Mail to the double-bounce address is discarded: bounces never loop.
        if (route->cls == delivery::Route::Class::Local &&
            util::to_lower(rc.address.substr(0, rc.address.rfind('@'))) == dbl_local) {
            res = {Result_::State::Sent, "2.0.0", "none", "discarded"};
            continue;
        }
        if (route->transport == "error") {
            auto [dsn, text] = split_dsn(route->nexthop, "5.0.0");
            if (dsn[0] == '4') res = {Result_::State::Deferred, dsn, "none", text.empty() ? "deferred" : text};
            else res = {Result_::State::Bounced, dsn, "none", text.empty() ? "mail is refused" : text};
            continue;
        }
        if (route->transport == "discard") {
            res = {Result_::State::Sent, "2.0.0", "none", route->nexthop.empty() ? "discarded" : route->nexthop};
            continue;
        }
        int limit = std::max(1, s_.recipient_limit(route->transport));
        // With one recipient per request the destination is the recipient
        // (Postfix: per-user concurrency for local delivery).
        std::string key = limit == 1 ? util::to_lower(rc.address) : util::to_lower(route->nexthop);
        std::string gk = dest_key(route->transport, key) + '\0' + route->nexthop;
        auto it = groups.find(gk);
        if (it == groups.end()) {
            it = groups.emplace(gk, Job{m.id, route->transport, route->nexthop, dest_key(route->transport, key), {}})
                     .first;
            order.push_back(gk);
        }
        it->second.rcpts.push_back(i);
    }
    for (auto& gk : order) {
        Job& g = groups[gk];
        std::size_t limit = static_cast<std::size_t>(std::max(1, s_.recipient_limit(g.transport)));
        for (std::size_t at = 0; at < g.rcpts.size(); at += limit) {
            Job j{m.id, g.transport, g.nexthop, g.dest, {}};
            auto end = std::min(g.rcpts.size(), at + limit);
            j.rcpts.assign(g.rcpts.begin() + static_cast<long>(at), g.rcpts.begin() + static_cast<long>(end));
            dests_[g.dest].jobs.push_back(std::move(j));
            ++m.jobs;
        }
    }
    if (m.jobs == 0) finish(m);
}

void Manager::dispatch() {
    if (draining_) {
        if (in_flight_total_ == 0 && on_idle) on_idle();
        return;
    }
    // Round robin over destinations with work: one request each per pass.
    bool progress = true;
    while (progress) {
        progress = false;
        for (auto it = dests_.begin(); it != dests_.end();) {
            Dest& d = it->second;
            if (d.jobs.empty()) {
                if (d.in_flight == 0) it = dests_.erase(it);
                else ++it;
                continue;
            }
            const std::string transport = d.jobs.front().transport;
            if (d.in_flight < s_.destination_concurrency(transport) &&
                transport_in_flight_[transport] < s_.process_limit(transport)) {
                // One agent session: up to batch_limit requests for this
                // destination, sent back to back on one connection. The
                // concurrency limits count sessions, i.e. parallel deliveries.
                std::vector<Job> batch;
                std::size_t limit = static_cast<std::size_t>(std::max(1, s_.batch_limit(transport)));
                while (!d.jobs.empty() && batch.size() < limit) {
                    batch.push_back(std::move(d.jobs.front()));
                    d.jobs.pop_front();
                }
                ++d.in_flight;
                ++transport_in_flight_[transport];
                in_flight_total_ += batch.size();
                ++it;
                progress = true;
                // Agents never call back from inside start(), so the
                // iterator stays valid.
                deliver(std::move(batch));
                continue;
            }
            ++it;
        }
    }
}

void Manager::deliver(std::vector<Job> batch) {
    std::vector<delivery::Request> reqs;
    std::vector<Agents::Done> dones;
    // The session ends (and its concurrency slot frees) with its last reply.
    auto left = std::make_shared<std::size_t>(batch.size());
    for (auto& job : batch) {
        reqs.push_back(request_for(job));
        dones.push_back([this, job = std::move(job), left](Result<delivery::Reply> reply) {
            completed(job, --*left == 0, std::move(reply));
        });
    }
    agents_.start(std::move(reqs), std::move(dones));
}

delivery::Request Manager::request_for(const Job& job) const {
    auto mit = active_.find(job.msg_id);
    POSTERN_ASSERT(mit != active_.end());
    const Message& m = *mit->second;
    delivery::Request req;
    req.queue_id = m.id;
    req.queue_file = std::string(queue::Active) + "/" + m.id;
    req.content_offset = m.content_offset;
    req.arrival_us = m.env.arrival_us;
    req.active_us = m.active_us;
    req.sender = m.env.sender;
    req.envid = m.env.envid;
    req.ret = m.env.ret;
    req.body = m.env.body;
    req.smtputf8 = m.env.smtputf8;
    req.transport = job.transport;
    req.nexthop = job.nexthop;
    for (auto i : job.rcpts) {
        const auto& rc = m.env.recipients[i];
        req.recipients.push_back({i, rc.address, rc.orcpt, rc.notify});
    }
    return req;
}

void Manager::completed(const Job& job, bool session_over, Result<delivery::Reply> reply) {
    if (session_over) {
        if (auto d = dests_.find(job.dest); d != dests_.end()) --d->second.in_flight;
        --transport_in_flight_[job.transport];
    }
    --in_flight_total_;
    auto mit = active_.find(job.msg_id);
    if (mit == active_.end()) {
        dispatch();
        return;
    }
    Message& m = *mit->second;
    if (reply) {
        for (auto& o : reply->outcomes) {
            Result_& r = m.results[o.index];
            using K = delivery::Outcome::Kind;
            r.state = o.kind == K::Sent ? Result_::State::Sent
                    : o.kind == K::Bounced ? Result_::State::Bounced
                                           : Result_::State::Deferred;
            r.dsn = o.dsn;
            r.relay = o.relay;
            r.reason = o.reason;
            r.handoff = o.handoff;
            r.logged = true;
        }
    }
    for (auto i : job.rcpts) {
        Result_& r = m.results[i];
        if (r.state != Result_::State::Pending) continue;
        std::string why = reply ? std::string("delivery agent ") + job.transport + " gave no result"
                                : "delivery temporarily suspended: " + job.transport + ": " + reply.error().text;
        r = {Result_::State::Deferred, "4.3.0", "none", why};
    }
    if (--m.jobs == 0) finish(m);
    dispatch();
}

void Manager::log_result(const Message& m, std::uint32_t i, const Result_& r) {
    if (r.logged) return;
    delivery::Request req;
    req.arrival_us = m.env.arrival_us;
    req.active_us = m.active_us;
    delivery::Outcome o;
    o.kind = r.state == Result_::State::Sent      ? delivery::Outcome::Kind::Sent
           : r.state == Result_::State::Bounced ? delivery::Outcome::Kind::Bounced
                                                : delivery::Outcome::Kind::Deferred;
    o.dsn = r.dsn;
    o.relay = r.relay;
    o.reason = r.reason;
    std::int64_t now = now_us();
    log::info("%s: %s", m.id.c_str(),
              delivery::status_line(req, m.env.recipients[i].address, {}, o, now, now).c_str());
}

UniqueFd Manager::reopen(const std::string& id) const {
    for (auto dir : {queue::Active, queue::Hold, queue::Deferred, queue::Incoming}) {
        std::string p = path(dir, id);
        UniqueFd fd(::open(p.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
        if (fd) return fd;
        if (errno != ENOENT) log::warn("%s: open %s: %s", id.c_str(), p.c_str(), std::strerror(errno));
    }
    return UniqueFd();
}

void Manager::finish(Message& m) {
    m.fd = reopen(m.id);
    std::int64_t now = now_us();
    std::int64_t age_us = now - m.env.arrival_us;
    auto lifetime = m.env.sender.empty() ? s_.bounce_lifetime : s_.max_lifetime;
    bool expired = age_us >= std::chrono::duration_cast<std::chrono::microseconds>(lifetime).count();
    std::vector<std::uint32_t> failed, delivered_notify;
    std::size_t pending = 0;
    for (std::uint32_t i = 0; i < m.results.size(); ++i) {
        Result_& r = m.results[i];
        if (m.env.recipients[i].status != queue::StatusPending) continue;
        if (r.state == Result_::State::Deferred && expired) {
            // Still undeliverable after the queue lifetime: return it, with the
            // last temporary reason (Postfix keeps the 4.x.x status too).
            log_result(m, i, r);
            r.state = Result_::State::Bounced;
            r.reason = "message expired: " + r.reason;
            r.logged = false;
            log::info("%s: to=<%s>, status=expired, returned to sender", m.id.c_str(),
                      util::printable(m.env.recipients[i].address, 300).c_str());
            r.logged = true;
        }
        log_result(m, i, r);
        r.logged = true;
        if (r.state == Result_::State::Bounced) failed.push_back(i);
        // NOTIFY=SUCCESS: tell the sender about the delivery (RFC 3461 5.2.2),
        // unless the next server took the request on (it reports, not us).
        if (r.state == Result_::State::Sent && (m.env.recipients[i].notify & queue::NotifySuccess) &&
            r.handoff != delivery::Outcome::Handoff::Passed && !m.env.sender.empty())
            delivered_notify.push_back(i);
        if (r.state == Result_::State::Deferred || r.state == Result_::State::Pending) ++pending;
    }
    if (!delivered_notify.empty()) notify(m, delivered_notify, DsnKind::Success);
    if (!failed.empty() && !notify(m, failed, DsnKind::Failure)) {
        // No bounce on disk: the recipients stay in the queue and the bounce
        // is tried again with the next attempt.
        for (auto i : failed) m.results[i].state = Result_::State::Deferred;
        pending += failed.size();
    }

    std::string id = m.id;
    auto write_statuses = [&] {
        for (std::uint32_t i = 0; i < m.results.size(); ++i) {
            auto& rc = m.env.recipients[i];
            if (rc.status != queue::StatusPending) continue;
            char st = m.results[i].state == Result_::State::Sent      ? queue::StatusDone
                    : m.results[i].state == Result_::State::Bounced ? queue::StatusFailed
                                                                    : 0;
            if (!st || !m.fd) continue;
            if (auto r = queue::set_recipient_status(m.fd.get(), rc, st); !r)
                log::warn("%s: %s", id.c_str(), r.error().text.c_str());
            else rc.status = st;
        }
    };
    if (pending == 0) {
        std::string p = path(queue::Active, id);
        if (int err = retire(queue::Active, id, m.fd.get()); err == 0) {
            queue::remove_defer_log(s_.queue_dir, id);
            log::info("%s: removed", id.c_str());
        } else {
            // Moved by `postern queue` meanwhile: record the outcomes in the
            // file wherever it is now, so nobody gets it twice.
            if (err != ENOENT) log::warn("%s: remove %s: %s", id.c_str(), p.c_str(), std::strerror(err));
            write_statuses();
        }
    } else {
        write_statuses();
        maybe_warn(m, age_us);
        std::vector<queue::DeferEntry> entries;
        for (std::uint32_t i = 0; i < m.results.size(); ++i) {
            const Result_& r = m.results[i];
            if (m.env.recipients[i].status != queue::StatusPending) continue;
            entries.push_back({m.env.recipients[i].address, r.dsn, r.reason, r.relay, now});
        }
        if (auto r = queue::write_defer_log(s_.queue_dir, id, entries); !r)
            log::warn("%s: %s", id.c_str(), r.error().text.c_str());
        // Next attempt: the message's age, between the minimal and maximal
        // backoff, so the pauses double as the message gets older.
        auto min_us = std::chrono::duration_cast<std::chrono::microseconds>(s_.min_backoff).count();
        auto max_us = std::chrono::duration_cast<std::chrono::microseconds>(s_.max_backoff).count();
        std::int64_t next = now + std::clamp<std::int64_t>(age_us, min_us, max_us);
        timespec ts[2];
        ts[0].tv_sec = ts[1].tv_sec = next / UsPerSec;
        ts[0].tv_nsec = ts[1].tv_nsec = (next % UsPerSec) * 1000;
        if (m.fd && ::futimens(m.fd.get(), ts) != 0) log::warn("%s: set next attempt time: %s", id.c_str(), std::strerror(errno));
        std::string from = path(queue::Active, id), to = path(queue::Deferred, id);
        if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
            if (errno != ENOENT) log::warn("%s: move to deferred/: %s", id.c_str(), std::strerror(errno));
            // Deleted by `postern queue delete` meanwhile: no defer log either.
            struct stat st;
            if (!m.fd || (::fstat(m.fd.get(), &st) == 0 && st.st_nlink == 0)) queue::remove_defer_log(s_.queue_dir, id);
        }
    }
    active_.erase(id);
    // Room in the active set: go back for what an earlier scan left behind
    // (scan_dir sets the flags). New mail brings its own trigger.
    if (want_incoming_ || want_deferred_) schedule_scan();
}

void Manager::maybe_warn(Message& m, std::int64_t age_us) {
    auto warn_us = std::chrono::duration_cast<std::chrono::microseconds>(s_.delay_warning).count();
    if (warn_us <= 0 || age_us < warn_us || m.env.delay_warned || m.env.warned_offset == 0 || !m.fd) return;
    std::vector<std::uint32_t> which;
    for (std::uint32_t i = 0; i < m.results.size(); ++i) {
        const auto& rc = m.env.recipients[i];
        if (rc.status != queue::StatusPending || m.results[i].state != Result_::State::Deferred) continue;
        // NOTIFY not given, or given with DELAY (RFC 3461 4.1).
        if (rc.notify == 0 || (rc.notify & queue::NotifyDelay)) which.push_back(i);
    }
    if (!which.empty() && !notify(m, which, DsnKind::Delay)) return;  // try again next time
    if (auto r = queue::set_delay_warned(m.fd.get(), m.env); !r)
        log::warn("%s: %s", m.id.c_str(), r.error().text.c_str());
}

bool Manager::notify(Message& m, const std::vector<std::uint32_t>& which, DsnKind kind) {
    // Who gets told: the sender; for a bounce (null sender) the postmaster;
    // for a failed postmaster notice nobody (it is dropped, never looped).
    const std::string dbl = s_.double_bounce_sender + "@" + s_.myhostname;
    const bool failure = kind == DsnKind::Failure;
    if (!m.fd) return true;  // deleted by the administrator: nobody to tell
    if (util::iequals(m.env.sender, dbl)) {
        log::warn("%s: discarding undeliverable postmaster notification", m.id.c_str());
        return true;
    }
    DsnInput in;
    in.myhostname = s_.myhostname;
    in.mail_name = s_.mail_name;
    in.queue_id = m.id;
    in.envid = m.env.envid;
    in.ret = m.env.ret;
    in.original_sender = m.env.sender;
    in.arrival_us = m.env.arrival_us;
    in.kind = kind;
    in.bounce_size_limit = s_.bounce_size_limit;
    if (kind == DsnKind::Delay) {
        auto hours = (now_us() - m.env.arrival_us) / (3600 * UsPerSec);
        in.delay_text = hours >= 1 ? std::to_string(hours) + (hours == 1 ? " hour" : " hours") : "less than an hour";
        auto lifetime = m.env.sender.empty() ? s_.bounce_lifetime : s_.max_lifetime;
        in.retry_until_us =
            m.env.arrival_us + std::chrono::duration_cast<std::chrono::microseconds>(lifetime).count();
    }
    for (auto i : which) {
        const auto& rc = m.env.recipients[i];
        // NOTIFY=NEVER, or NOTIFY without FAILURE: the sender asked not to be told.
        if (failure && rc.notify != 0 && !(rc.notify & queue::NotifyFailure)) continue;
        const Result_& r = m.results[i];
        DsnRecipient d;
        d.address = rc.address;
        d.orcpt = rc.orcpt;
        d.dsn = r.dsn;
        d.reason = r.reason;
        d.relayed = r.handoff == delivery::Outcome::Handoff::Relayed;
        if (r.relay != "none" && r.relay != "local" && r.relay != "virtual") d.remote_mta = r.relay;
        in.recipients.push_back(std::move(d));
    }
    if (in.recipients.empty()) return true;
    bool double_bounce = m.env.sender.empty();
    if (double_bounce && !failure) return true;
    std::string to = m.env.sender;
    std::string sender;
    if (double_bounce) {
        to = s_.bounce_notice_recipient.find('@') == std::string::npos ? s_.bounce_notice_recipient + "@" + s_.myhostname
                                                                         : s_.bounce_notice_recipient;
        sender = dbl;
    }
    in.to = to;
    auto w = queue::Writer::create(s_.queue_dir, now_us());
    auto fail = [&](const Error& e) {
        log::warn("%s: cannot write %s: %s", m.id.c_str(), double_bounce ? "postmaster notification" : "bounce",
                  e.text.c_str());
        return false;
    };
    if (!w) return fail(w.error());
    queue::Envelope env;
    env.protocol = "local";
    env.origin = double_bounce ? "qmgr double-bounce" : "qmgr bounce";
    env.sender = sender;
    queue::Recipient rcpt;
    rcpt.address = to;
    env.recipients.push_back(rcpt);
    std::int64_t now = now_us();
    auto plan = plan_dsn(in, m.fd.get(), m.content_offset, now);
    if (!plan) return fail(plan.error());
    if (plan->eight_bit) env.body = "8BITMIME";
    env.smtputf8 = plan->utf8;
    if (auto r = w->write_envelope(env); !r) return fail(r.error());
    auto r = compose_dsn(in, *plan, m.fd.get(), m.content_offset, now,
                         [&](std::string_view bytes) { return w->append(bytes); });
    if (!r) return fail(r.error());
    if (auto f = w->finish(); !f) return fail(f.error());
    if (auto c = w->commit(); !c) return fail(c.error());
    log::info("%s: %s: %s", m.id.c_str(),
              kind == DsnKind::Delay ? "sender delay notification"
              : !failure             ? "sender delivery status notification"
              : double_bounce ? "postmaster non-delivery notification"
                              : "sender non-delivery notification",
              w->id().c_str());
    want_incoming_ = true;
    return true;
}

}  // namespace postern::qmgr
