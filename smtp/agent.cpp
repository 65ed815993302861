// smtp/agent.cpp - qmgr's requests to remote SMTP servers (see agent.hpp).
#include "smtp/agent.hpp"

#include <fcntl.h>
#include <sysexits.h>

#include <algorithm>
#include <cstdint>

#include "log/log.hpp"
#include "queue/queue.hpp"
#include "util/strings.hpp"

namespace postern::smtp {
namespace {

constexpr ipc::Limits kRequestLimits{.max_frame = 1 << 20, .max_attrs = delivery::MaxRecipients + 32};

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::optional<TlsPolicy> policy_of(std::string_view s) {
    if (s == "none") return TlsPolicy::None;
    if (s == "may") return TlsPolicy::May;
    if (s == "encrypt") return TlsPolicy::Encrypt;
    if (s == "verify" || s == "secure") return TlsPolicy::Verify;
    return std::nullopt;
}

std::vector<std::unique_ptr<maps::Map>> open_maps(const std::string& param, const std::string& specs) {
    std::vector<std::unique_ptr<maps::Map>> out;
    for (auto& spec : util::split_list(specs)) {
        auto m = maps::open(spec);
        if (!m) log::fatal(EX_CONFIG, "%s: %s", param.c_str(), m.error().text.c_str());
        out.push_back(std::move(*m));
    }
    return out;
}

// The queued message content for the protocol engine.
class QueueSource : public ContentSource {
public:
    explicit QueueSource(queue::ContentReader r) : r_(std::move(r)) {}
    Result<std::optional<std::string>> next() override { return r_.next(); }
    std::uint64_t size() const { return r_.size_estimate(); }

private:
    queue::ContentReader r_;
};

delivery::Outcome::Kind kind_of(RcptResult::Kind k) {
    switch (k) {
        case RcptResult::Kind::Sent: return delivery::Outcome::Kind::Sent;
        case RcptResult::Kind::Bounced: return delivery::Outcome::Kind::Bounced;
        case RcptResult::Kind::Deferred: break;
    }
    return delivery::Outcome::Kind::Deferred;
}

}  // namespace

struct Agent::QmgrConn {
    explicit QmgrConn(service::Connection c) : conn(std::move(c)) {}
    service::Connection conn;
    std::unique_ptr<event::BufferEvent> bev;
    ipc::Decoder decoder{kRequestLimits};
    std::deque<delivery::Request> queue;
    Delivery* current = nullptr;
    bool gone = false;
};

struct Agent::Delivery {
    QmgrConn* q = nullptr;
    delivery::Request req;
    UniqueFd fd;
    std::unique_ptr<QueueSource> source;
    std::int64_t start_us = 0;
    std::vector<Target> targets;
    std::size_t next_target = 0;
    std::unique_ptr<Conn> conn;
    std::unique_ptr<DestResolver::Pending> pending;
    std::string key;
    std::optional<Nexthop> hop;
    bool in_txn = false;
    std::optional<TransactionResult> result;  // from the Client, handled on the next loop turn
    event::Event later;
    std::string last_failure, last_dsn, last_relay = "none";
    std::int64_t connected_us = 0;  // the connection was ready (delays=a/b/c/d)
    // The target tried once more without TLS after an opportunistic
    // handshake failure (as Postfix does); SIZE_MAX: none.
    std::size_t plaintext_for = SIZE_MAX;
    std::vector<delivery::Outcome> outcomes;
};

Resources load_resources(service::Context& ctx) {
    const auto& p = ctx.params();
    Resources r;
    auto res = dns::Resolver::create(ctx.base(), {.servers = p.dns_servers});
    if (!res) log::fatal(EX_CONFIG, "%s", res.error().text.c_str());
    r.resolver = std::move(*res);
    if (p.smtp_tls_security_level != "none" || !p.smtp_tls_policy_maps.empty()) {
        auto t = tls::client_context(p.smtp_tls_CAfile);
        if (!t) log::warn("smtp_tls_CAfile: %s; STARTTLS is not used", t.error().text.c_str());
        else r.tls = std::move(*t);
    }
    r.tls_policy = open_maps("smtp_tls_policy_maps", p.smtp_tls_policy_maps);
    if (p.smtp_sasl_auth_enable) r.sasl_passwords = open_maps("smtp_sasl_password_maps", p.smtp_sasl_password_maps);
    return r;
}

Agent::Agent(service::Context& ctx, Resources res)
    : ctx_(ctx), res_(std::move(res)), env_{ctx.base(), ctx.params(), res_.tls.get()},
      queue_dir_(ctx.options().chroot ? "/" : ctx.params().queue_directory + "/") {
    const auto& p = ctx.params();
    DestOptions o;
    o.myhostname = util::to_lower(p.myhostname);
    o.ipv4 = p.inet_protocols != "ipv6";
    o.ipv6 = p.inet_protocols != "ipv4";
    o.max_addresses = static_cast<std::size_t>(p.smtp_mx_address_limit);
    dest_ = std::make_unique<DestResolver>(*res_.resolver, o);
    reaper_ = event::Event::timer(ctx.base(), [this] {
        // Connections still saying QUIT stay until they report Closed.
        std::erase_if(graveyard_, [](const std::unique_ptr<Conn>& c) { return c->phase() == Conn::Phase::Closed; });
        dead_deliveries_.clear();
        dead_qmgr_.clear();
    });
    sweeper_ = event::Event::timer(ctx.base(), [this] {
        auto now = std::chrono::steady_clock::now();
        const auto idle = ctx_.params().smtp_connection_cache_time_limit;
        const auto age = ctx_.params().smtp_connection_reuse_time_limit;
        for (auto it = cache_.begin(); it != cache_.end();) {
            auto& dq = it->second;
            for (auto c = dq.begin(); c != dq.end();) {
                if (draining_ || now - c->idle_since >= idle || now - c->conn->born() >= age) {
                    c->conn->set_notify([this](Conn& cc) {
                        if (cc.phase() == Conn::Phase::Closed) reaper_.add(std::chrono::milliseconds(0));
                    });
                    c->conn->quit();
                    graveyard_.push_back(std::move(c->conn));
                    c = dq.erase(c);
                } else {
                    ++c;
                }
            }
            it = dq.empty() ? cache_.erase(it) : std::next(it);
        }
        if (!cache_.empty()) sweeper_.add(std::chrono::milliseconds(500));
    });
}

Agent::~Agent() = default;

void Agent::drain() {
    draining_ = true;
    sweeper_.add(std::chrono::milliseconds(0));
}

void Agent::accept(service::Connection conn) {
    int fd = conn.fd();
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    auto bev = std::make_unique<event::BufferEvent>(ctx_.base(), conn.take_fd());
    auto q = std::make_unique<QmgrConn>(std::move(conn));
    QmgrConn* qp = q.get();
    q->bev = std::move(bev);
    q->bev->on_read([this, qp] { read_requests(qp); });
    q->bev->on_event([this, qp](short) { drop_qmgr(qp); });
    auto t = std::chrono::duration_cast<std::chrono::milliseconds>(ctx_.params().ipc_timeout);
    q->bev->set_timeouts(t, t);
    q->bev->enable(EV_READ | EV_WRITE);
    qmgr_[qp] = std::move(q);
}

void Agent::read_requests(QmgrConn* q) {
    if (q->gone) return;
    if (auto r = q->decoder.feed(q->bev->read_all()); !r) {
        log::warn("bad delivery request, dropping the connection: %s", r.error().text.c_str());
        return drop_qmgr(q);
    }
    while (auto frame = q->decoder.next()) {
        auto req = delivery::decode_request(*frame);
        if (!req) {
            log::warn("bad delivery request, dropping the connection: %s", req.error().text.c_str());
            return drop_qmgr(q);
        }
        q->queue.push_back(std::move(*req));
    }
    if (!q->current) start_next(q);
}

void Agent::drop_qmgr(QmgrConn* q) {
    // qmgr went away: a delivery in progress finishes (its reply has nowhere
    // to go: qmgr defers the message and tries again).
    q->gone = true;
    q->bev->disable(EV_READ | EV_WRITE);
    if (q->current) q->current->q = nullptr;
    auto it = qmgr_.find(q);
    if (it == qmgr_.end()) return;
    // Note: we may be inside q's own callback; free it on the next turn.
    dead_qmgr_.push_back(std::move(it->second));
    qmgr_.erase(it);
    reaper_.add(std::chrono::milliseconds(0));
}

void Agent::start_next(QmgrConn* q) {
    if (q->gone || q->queue.empty()) return;
    auto owned = std::make_unique<Delivery>();
    Delivery* d = owned.get();
    deliveries_.emplace(d, std::move(owned));
    d->q = q;
    d->req = std::move(q->queue.front());
    q->queue.pop_front();
    q->current = d;
    start(d);
}

void Agent::start(Delivery* d) {
    d->start_us = now_us();
    d->later = event::Event::timer(ctx_.base(), [this, d] {
        auto r = std::move(*d->result);
        d->result.reset();
        transaction_done(d, r);
    });
    std::string path = queue_dir_ + d->req.queue_file;
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return finish_all(d, delivery::Outcome::Kind::Deferred, "4.3.0", "none",
                          "cannot open queue file: " + errno_text(errno));
    }
    d->fd = UniqueFd(fd);
    d->key = util::to_lower(d->req.nexthop);
    if (auto c = take_cached(d->key)) {
        d->conn = std::move(c);
        d->conn->set_notify([this, d](Conn& cc) { on_conn(d, cc); });
        return on_conn(d, *d->conn);
    }
    auto hop = parse_nexthop(d->req.nexthop);
    if (!hop) {
        return finish_all(d, delivery::Outcome::Kind::Deferred, "4.3.5", "none",
                          "bad next hop \"" + util::printable(d->req.nexthop, 100) + "\": " + hop.error().text);
    }
    d->hop = *hop;
    d->pending = dest_->resolve(*hop, [this, d](const DestResult& r) { resolved(d, r); });
}

void Agent::resolved(Delivery* d, const DestResult& r) {
    if (auto* f = std::get_if<DestFailure>(&r)) {
        return finish_all(d, f->permanent ? delivery::Outcome::Kind::Bounced : delivery::Outcome::Kind::Deferred,
                          f->dsn, "none", f->reason);
    }
    d->targets = std::get<std::vector<Target>>(r);
    try_next(d);
}

void Agent::try_next(Delivery* d) {
    if (d->conn) bury(std::move(d->conn));
    if (d->next_target >= d->targets.size()) {
        std::string reason = d->last_failure.empty() ? "no server to deliver to" : d->last_failure;
        // The mail waits: a 5xx that ended a session (AUTH refused, a 554
        // greeting) says 4.x.x here, as qmgr wants the class to match.
        std::string dsn = d->last_dsn.empty() ? "4.4.1" : d->last_dsn;
        // Except a loop (a server that is this host): that never gets better.
        if (dsn == "5.4.6") return finish_all(d, delivery::Outcome::Kind::Bounced, dsn, d->last_relay, reason);
        dsn[0] = '4';
        return finish_all(d, delivery::Outcome::Kind::Deferred, dsn, d->last_relay, reason);
    }
    // The servers before this one failed: say so (the final status line
    // has only the last reason), as Postfix does.
    if (!d->last_failure.empty()) {
        if (d->last_failure.starts_with("connect to ")) log::info("%s", d->last_failure.c_str());
        else log::info("%s: %s", d->req.queue_id.c_str(), d->last_failure.c_str());
    }
    auto settings = settings_for(d->key, *d->hop);
    if (!settings) {
        log::warn("%s: %s", d->req.queue_id.c_str(), settings.error().text.c_str());
        return finish_all(d, delivery::Outcome::Kind::Deferred, "4.3.5", "none", settings.error().text);
    }
    std::size_t at = d->next_target++;
    if (at == d->plaintext_for) settings->tls = TlsPolicy::None;
    d->conn = Conn::open(env_, d->targets[at], *settings, [this, d](Conn& c) { on_conn(d, c); });
}

void Agent::on_conn(Delivery* d, Conn& c) {
    if (d->in_txn) return;  // the transaction reports through transaction_done
    if (c.phase() == Conn::Phase::Closed) {
        d->last_failure = c.failure();
        d->last_dsn = c.failure_dsn();
        if (d->last_failure.empty()) d->last_failure = "lost connection with " + c.target().text();
        // relay= names a server we talked to, "none" one we never reached.
        d->last_relay = d->last_failure.starts_with("connect to ") ? "none" : c.target().text();
        if (c.client().opportunistic_tls_failed() && d->next_target > 0 && d->plaintext_for != d->next_target - 1) {
            log::info("%s: %s; trying again without TLS", d->req.queue_id.c_str(), d->last_failure.c_str());
            d->plaintext_for = d->next_target - 1;
            d->last_failure.clear();  // not logged again by try_next
            --d->next_target;
        }
        if (d->targets.empty()) {  // a cached connection that died: look the servers up after all
            auto hop = parse_nexthop(d->req.nexthop);
            if (!hop) return finish_all(d, delivery::Outcome::Kind::Deferred, "4.3.5", "none", "bad next hop");
            d->hop = *hop;
            bury(std::move(d->conn));
            d->pending = dest_->resolve(*hop, [this, d](const DestResult& r) { resolved(d, r); });
            return;
        }
        return try_next(d);
    }
    if (c.phase() != Conn::Phase::Ready) return;
    d->connected_us = now_us();
    auto reader = queue::ContentReader::open(d->fd.get(), d->req.content_offset);
    if (!reader) {
        return finish_all(d, delivery::Outcome::Kind::Deferred, "4.3.0", "none",
                          "cannot read queue file: " + reader.error().text);
    }
    d->source = std::make_unique<QueueSource>(std::move(*reader));
    Transaction t;
    t.sender = d->req.sender;
    t.envid = d->req.envid;
    t.ret = d->req.ret;
    t.body = d->req.body;
    t.smtputf8 = d->req.smtputf8;
    t.size = d->source->size();
    for (auto& r : d->req.recipients) t.rcpts.push_back({r.index, r.address, r.orcpt, r.notify});
    d->in_txn = true;
    c.client().begin(std::move(t), *d->source, [this, d](const TransactionResult& r) {
        // Inside the connection's callbacks: handle it on the next loop turn.
        d->result = r;
        d->later.add(std::chrono::milliseconds(0));
    });
}

void Agent::transaction_done(Delivery* d, const TransactionResult& r) {
    d->in_txn = false;
    if (r.session_failed) {
        d->last_failure = r.reason;
        d->last_dsn = r.dsn;
        d->last_relay = d->conn ? d->conn->target().text() : "none";
        if (d->targets.empty() && d->conn) {  // a cached connection: start over with DNS
            d->conn->quit();
            bury(std::move(d->conn));
            auto hop = parse_nexthop(d->req.nexthop);
            if (!hop) return finish_all(d, delivery::Outcome::Kind::Deferred, "4.3.5", "none", "bad next hop");
            d->hop = *hop;
            d->pending = dest_->resolve(*hop, [this, d](const DestResult& res) { resolved(d, res); });
            return;
        }
        return try_next(d);
    }
    std::string relay = d->conn ? d->conn->target().text() : "none";
    // A server that offers DSN got our NOTIFY/ORCPT and reports from now on.
    auto handoff = d->conn && d->conn->client().features().dsn ? delivery::Outcome::Handoff::Passed
                                                              : delivery::Outcome::Handoff::Relayed;
    for (auto& rr : r.rcpts) {
        delivery::Outcome o{rr.index, kind_of(rr.kind), rr.dsn, relay, rr.reason};
        if (o.kind == delivery::Outcome::Kind::Sent) o.handoff = handoff;
        d->outcomes.push_back(std::move(o));
    }
    if (d->conn) {
        d->conn->after_transaction();
        if (d->conn->phase() == Conn::Phase::Ready && !draining_ &&
            ctx_.params().smtp_connection_cache_time_limit.count() > 0)
            park(d->key, std::move(d->conn));
        else {
            d->conn->set_notify([this](Conn& cc) {
                if (cc.phase() == Conn::Phase::Closed) reaper_.add(std::chrono::milliseconds(0));
            });
            d->conn->quit();
            bury(std::move(d->conn));
        }
    }
    finish(d);
}

void Agent::finish_all(Delivery* d, delivery::Outcome::Kind kind, const std::string& dsn, const std::string& relay,
                       const std::string& reason) {
    for (auto& r : d->req.recipients) d->outcomes.push_back({r.index, kind, dsn, relay, reason});
    if (d->conn) bury(std::move(d->conn));
    finish(d);
}

void Agent::finish(Delivery* d) {
    std::int64_t now = now_us();
    delivery::Reply reply;
    for (auto& r : d->req.recipients) {
        auto it = std::find_if(d->outcomes.begin(), d->outcomes.end(),
                               [&](const delivery::Outcome& o) { return o.index == r.index; });
        delivery::Outcome o = it != d->outcomes.end()
                                  ? *it
                                  : delivery::Outcome{r.index, delivery::Outcome::Kind::Deferred, "4.3.0", "none",
                                                      "no result from the SMTP session"};
        std::string orig;
        if (util::starts_with_icase(r.orcpt, "rfc822;")) orig = r.orcpt.substr(7);
        if (util::iequals(orig, r.address)) orig.clear();
        log::info("%s: %s", d->req.queue_id.c_str(),
                  delivery::status_line(d->req, r.address, orig, o, d->start_us, now, d->connected_us).c_str());
        reply.outcomes.push_back(std::move(o));
    }
    QmgrConn* q = d->q;
    if (q && !q->gone) q->bev->write(ipc::encode(delivery::encode(reply)));
    // Note: d may be running its own `later` callback: free it on the next turn.
    auto it = deliveries_.find(d);
    dead_deliveries_.push_back(std::move(it->second));
    deliveries_.erase(it);
    reaper_.add(std::chrono::milliseconds(0));
    if (q && !q->gone) {
        q->current = nullptr;
        start_next(q);
    }
}

void Agent::park(const std::string& key, std::unique_ptr<Conn> c) {
    Conn* raw = c.get();
    c->set_notify([this, key, raw](Conn& cc) {
        if (cc.phase() != Conn::Phase::Closed) return;
        // The server closed an idle connection: forget it.
        auto it = cache_.find(key);
        if (it == cache_.end()) return;
        for (auto e = it->second.begin(); e != it->second.end(); ++e) {
            if (e->conn.get() == raw) {
                bury(std::move(e->conn));
                it->second.erase(e);
                break;
            }
        }
        if (it->second.empty()) cache_.erase(it);
    });
    cache_[key].push_back({std::move(c), std::chrono::steady_clock::now()});
    if (!sweeper_.pending()) sweeper_.add(std::chrono::milliseconds(500));
}

std::unique_ptr<Conn> Agent::take_cached(const std::string& key) {
    auto it = cache_.find(key);
    if (it == cache_.end()) return nullptr;
    auto now = std::chrono::steady_clock::now();
    while (!it->second.empty()) {
        auto e = std::move(it->second.front());
        it->second.pop_front();
        if (e.conn->phase() == Conn::Phase::Ready && now - e.conn->born() < ctx_.params().smtp_connection_reuse_time_limit) {
            if (it->second.empty()) cache_.erase(it);
            return std::move(e.conn);
        }
        e.conn->quit();
        bury(std::move(e.conn));
    }
    cache_.erase(it);
    return nullptr;
}

void Agent::bury(std::unique_ptr<Conn> c) {
    if (!c) return;
    if (c->phase() != Conn::Phase::Closed) {
        // Let it finish closing; it reports Closed, then goes.
        c->set_notify([this](Conn& cc) {
            if (cc.phase() == Conn::Phase::Closed) reaper_.add(std::chrono::milliseconds(0));
        });
        c->quit();
    }
    graveyard_.push_back(std::move(c));
    reaper_.add(std::chrono::milliseconds(0));
}

std::optional<std::string> Agent::lookup(const std::vector<std::unique_ptr<maps::Map>>& ms,
                                         const std::vector<std::string>& keys) const {
    for (auto& k : keys) {
        for (auto& m : ms) {
            auto r = m->lookup(k);
            if (!r) {
                log::warn("%s: lookup of %s failed: %s", m->spec().c_str(), util::printable(k).c_str(),
                          r.error().text.c_str());
                continue;
            }
            if (*r) return **r;
        }
    }
    return std::nullopt;
}

Result<ClientSettings> Agent::settings_for(const std::string& nexthop, const Nexthop& hop) const {
    const auto& p = ctx_.params();
    ClientSettings s;
    s.helo_name = p.smtp_helo_name;
    s.myhostname = p.myhostname;
    s.tls_available = res_.tls != nullptr;
    std::vector<std::string> keys{nexthop, hop.host};
    s.tls = policy_of(p.smtp_tls_security_level).value_or(TlsPolicy::May);  // checked by lib/config
    if (auto v = lookup(res_.tls_policy, keys)) {
        // A misspelt level must not quietly weaken TLS: the mail waits.
        auto words = util::split_ws(*v);
        if (!words.empty()) {
            auto level = policy_of(util::to_lower(words[0]));
            if (!level)
                return Error::config("smtp_tls_policy_maps: unknown TLS security level \"" +
                                     util::printable(words[0], 50) + "\" for " + util::printable(nexthop, 100));
            s.tls = *level;
        }
    }
    if (p.smtp_sasl_auth_enable) {
        std::string port = std::to_string(hop.port);
        std::vector<std::string> akeys{nexthop, "[" + hop.host + "]:" + port, "[" + hop.host + "]", hop.host};
        if (auto v = lookup(res_.sasl_passwords, akeys)) {
            auto colon = v->find(':');
            if (colon != std::string::npos) s.auth = std::make_pair(v->substr(0, colon), v->substr(colon + 1));
            else log::warn("smtp_sasl_password_maps: entry for %s is not user:password", util::printable(nexthop).c_str());
        }
    }
    return s;
}

}  // namespace postern::smtp
