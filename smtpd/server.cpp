// smtpd/server.cpp - bufferevent glue between sockets, Session and the queue.
#include "smtpd/server.hpp"

#include <sysexits.h>
#include <unistd.h>

#include <chrono>

#include "ipc/ipc.hpp"
#include "log/log.hpp"

namespace postern::smtpd {
namespace {

// The queue writer behind the Session's MessageWriter interface.
class QueueMessage : public MessageWriter {
public:
    explicit QueueMessage(queue::Writer w) : w_(std::make_unique<queue::Writer>(std::move(w))) {}
    const std::string& id() const override { return w_->id(); }
    Result<void> append(std::string_view bytes) override { return w_->append(bytes); }
    Result<void> finish() override { return w_->finish(); }
    std::unique_ptr<queue::Writer> take() { return std::move(w_); }

private:
    std::unique_ptr<queue::Writer> w_;
};

}  // namespace

// Replies waiting for a client that does not read stop us reading from it.
constexpr std::size_t kOutputCap = 256 * 1024;

struct Server::Conn : Io {
    Conn(Server& srv, service::Connection c, bool implicit_tls)
        : server(srv), peer_addr(c.peer().addr), bev(make_bev(srv, c, implicit_tls)), conn(std::move(c)),
          handshaking(implicit_tls) {}

    static event::BufferEvent make_bev(Server& srv, service::Connection& c, bool implicit_tls) {
        if (implicit_tls) return event::BufferEvent::tls_server(srv.ctx_.base(), c.take_fd(), tls::new_ssl(srv.tls_.get()).release());
        return event::BufferEvent(srv.ctx_.base(), c.take_fd());
    }

    void reply(std::string_view text) override { bev.write(text); }
    void close() override {
        if (closing) return;
        closing = true;
        bev.disable(EV_READ);
        if (bev.output_length() == 0) return dead();
        // A peer that never reads must not keep us forever.
        linger = event::Event::timer(server.ctx_.base(), [this] {
            session->on_disconnect();
            dead();
        });
        linger.add(std::chrono::seconds(10));
    }
    bool tls_available() const override { return server.tls_ != nullptr; }
    bool tls_active() const override { return tls; }
    std::string tls_summary() const override { return tls::summary(bev.ssl()); }
    void start_tls() override {
        // The 220 is queued on the plain connection and goes out first.
        std::size_t dropped = bev.start_tls_server(server.ctx_.base(), tls::new_ssl(server.tls_.get()).release());
        if (dropped > 0)
            log::warn("%s: discarding %zu bytes of plaintext sent after STARTTLS", session->peer_text().c_str(), dropped);
        handshaking = true;
        server.arm(this);
        bev.enable(EV_READ | EV_WRITE);
    }
    void resume() override {
        if (gone) return server.reap();  // the client left during the commit
        if (!closing && bev.output_length() < kOutputCap) bev.enable(EV_READ);
    }
    void dead() {
        if (gone) return;
        gone = true;
        bev.disable(EV_READ | EV_WRITE);
        server.reap();
    }
    // The greeting waits for the client's name, the pregreet pause and (for
    // implicit TLS) the handshake, whichever comes last.
    void maybe_start() {
        if (closing || gone || !name_ready || !pause_over || !tls_ready || session->started()) return;
        session->start();
    }

    Server& server;
    std::string peer_addr;
    event::BufferEvent bev;
    service::Connection conn;
    std::unique_ptr<Session> session;
    std::unique_ptr<PeerNameLookup> peername;
    event::Event greet_timer, linger;
    bool closing = false, gone = false, handshaking = false, tls = false;
    bool name_ready = true, pause_over = true, tls_ready = true;
};

namespace {

// The client host name lookup: smtpd_peername_lookup, dns_servers and
// smtpd_peername_lookup_timeout.
void load_resolver(service::Context& ctx, Resources& r) {
    const auto& p = ctx.params();
    r.peername_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(p.smtpd_peername_lookup_timeout);
    if (!p.smtpd_peername_lookup) return;
    auto res = dns::Resolver::create(ctx.base(), {.servers = p.dns_servers, .timeout = r.peername_timeout});
    if (!res) log::fatal(EX_CONFIG, "%s", res.error().text.c_str());
    r.resolver = std::move(*res);
}

}  // namespace

Resources load_resources(service::Context& ctx) {
    const auto& p = ctx.params();
    Resources r;
    r.recipients.load(p);
    r.senders.load(p);
    load_resolver(ctx, r);
    bool need = p.smtpd_tls_security_level == "encrypt" || p.smtpd_tls_wrappermode;
    if (p.smtpd_tls_security_level == "none" && !p.smtpd_tls_wrappermode) return r;
    if (p.smtpd_tls_cert_file.empty()) {
        // Implicit TLS cannot work at all without a certificate; a service
        // that requires STARTTLS still runs and refuses MAIL with 530.
        if (p.smtpd_tls_wrappermode)
            log::fatal(EX_CONFIG, "smtpd_tls_wrappermode = yes needs a certificate: set smtpd_tls_cert_file");
        if (need)
            log::warn("smtpd_tls_security_level = encrypt but smtpd_tls_cert_file is empty: "
                      "every MAIL will be refused with 530 until a certificate is configured");
        return r;
    }
    auto tls_ctx = tls::server_context(p.smtpd_tls_cert_file, p.smtpd_tls_key_file);
    if (!tls_ctx) {
        if (need) log::fatal(EX_CONFIG, "%s", tls_ctx.error().text.c_str());
        log::warn("%s; STARTTLS is not offered", tls_ctx.error().text.c_str());
        return r;
    }
    r.tls = std::move(*tls_ctx);
    return r;
}

Server::Server(service::Context& ctx, Resources res)
    : ctx_(ctx), recipients_(std::move(res.recipients)), senders_(std::move(res.senders)), tls_(std::move(res.tls)), resolver_(std::move(res.resolver)),
      peername_timeout_(res.peername_timeout), wrapper_(ctx.params().smtpd_tls_wrappermode),
      queue_dir_(ctx.options().chroot ? "/" : ctx.params().queue_directory), pool_(ctx.base()) {
    auto s = Settings::from(ctx.params());
    if (!s) log::fatal(EX_CONFIG, "%s", s.error().text.c_str());
    settings_ = std::move(*s);
    auto ex = util::NetList::parse(ctx.params().smtpd_client_event_limit_exceptions);
    if (!ex) log::fatal(EX_CONFIG, "smtpd_client_event_limit_exceptions: %s", ex.error().text.c_str());
    limit_exceptions_ = std::move(*ex);
    if (settings_.sasl_enabled) {
        const std::string& sp = ctx.params().smtpd_sasl_path;
        std::string path = sp.starts_with("/") ? sp : (queue_dir_ == "/" ? "/" : queue_dir_ + "/") + sp;
        auth_ = std::make_unique<auth::Client>(ctx.base(), path, std::chrono::seconds(60));
    }
    trigger_timer_ = event::Event::timer(ctx.base(), [this] {
        last_trigger_ = {};
        trigger_qmgr();
    });
    // A process that exits (max_use, or a rebuilt table) must not take a
    // rate-limited trigger with it: the mail would wait for qmgr's next scan.
    ctx.at_exit([this] {
        if (!trigger_timer_.pending()) return;
        trigger_timer_.del();
        last_trigger_ = {};
        trigger_qmgr();
    });
    reaper_ = event::Event::timer(ctx.base(), [this] {
        for (auto it = conns_.begin(); it != conns_.end();) {
            // Note: a session whose commit is in flight stays until the commit
            // reports back, so the process never exits under a pool thread.
            if (it->first->gone && !it->first->session->waiting()) {
                if (--per_client_[it->first->peer_addr] <= 0) per_client_.erase(it->first->peer_addr);
                it = conns_.erase(it);
            } else {
                ++it;
            }
        }
    });
}

Server::~Server() = default;

void Server::reap() { reaper_.add(std::chrono::milliseconds(0)); }

void Server::arm(Conn* cp) {
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(ctx_.params().smtpd_timeout);
    cp->bev.set_timeouts(timeout, timeout);
    cp->bev.on_read([cp] {
        if (cp->closing) return;
        std::string data = cp->bev.read_all();
        cp->session->feed(data);
        // Back-pressure: until the commit is done, or the client reads its replies.
        if (cp->session->waiting() || cp->bev.output_length() >= kOutputCap) cp->bev.disable(EV_READ);
    });
    cp->bev.on_write([cp] {
        if (cp->closing) {
            if (cp->bev.output_length() == 0) cp->dead();
        } else if (!cp->session->waiting()) {
            cp->bev.enable(EV_READ);  // the output drained
        }
    });
    cp->bev.on_event([this, cp](short what) {
        if (what & BEV_EVENT_CONNECTED) {
            if (cp->closing) return;  // refused (limits) before the handshake ended
            if (cp->handshaking) {
                cp->handshaking = false;
                cp->tls = true;
                log::info("Anonymous TLS connection established from %s: %s", cp->session->peer_text().c_str(),
                          tls::summary(cp->bev.ssl()).c_str());
                if (!cp->tls_ready) {  // implicit TLS: now the greeting may go
                    cp->tls_ready = true;
                    cp->maybe_start();
                } else {
                    cp->session->tls_started();
                }
            }
            return;
        }
        if (what & BEV_EVENT_TIMEOUT) {
            bool stuck = (what & BEV_EVENT_WRITING) || cp->closing || cp->handshaking;
            cp->session->on_timeout();
            if (stuck) {
                // The 421 cannot be delivered: the peer does not read, or
                // TLS never came up. Drop the connection now.
                cp->session->on_disconnect();
                cp->dead();
            } else if (!cp->closing) {
                cp->close();
            }
            return;
        }
        if ((what & BEV_EVENT_ERROR) && cp->handshaking)
            log::warn("TLS handshake failed with %s: %s", cp->session->peer_text().c_str(), tls::last_error().c_str());
        cp->session->on_disconnect();
        cp->dead();
    });
}

void Server::accept(service::Connection c) {
    // Like Postfix: this client still gets the old table; the next ones get
    // a fresh smtpd that opens the new one (we cannot: we are in the jail).
    const maps::Map* m = recipients_.changed_table();
    if (!m) m = senders_.changed_table();
    if (m) ctx_.request_exit("table " + m->spec() + " has changed");
    else if (recipients_.users_changed(std::chrono::steady_clock::now())) ctx_.request_exit("/etc/passwd has changed");
    bool implicit = wrapper_ && tls_;
    auto conn = std::make_unique<Conn>(*this, std::move(c), implicit);
    Conn* cp = conn.get();
    conns_[cp] = std::move(conn);
    Peer peer;
    peer.addr = cp->peer_addr;
    cp->session = std::make_unique<Session>(settings_, *this, *cp, peer);
    int& n = per_client_[cp->peer_addr];
    ++n;
    bool exempt = limit_exceptions_.contains(cp->peer_addr);
    auto limit = exempt ? 0 : ctx_.params().smtpd_client_connection_count_limit;
    arm(cp);
    if (limit > 0 && n > limit) {
        log::warn("too many connections from %s (smtpd_client_connection_count_limit=%lld)", cp->peer_addr.c_str(), limit);
        cp->reply("421 4.7.0 " + settings_.hostname + " Error: too many connections from " + cp->peer_addr + "\r\n");
        cp->close();
        return;
    }
    if (!exempt && !rate_ok(cp->peer_addr)) {
        log::warn("too many connections from %s: rate %lld/%llds exceeded (smtpd_client_connection_rate_limit)",
                  cp->peer_addr.c_str(), ctx_.params().smtpd_client_connection_rate_limit,
                  static_cast<long long>(ctx_.params().anvil_rate_time_unit.count()));
        cp->reply("421 4.7.0 " + settings_.hostname + " Error: too many connections from " + cp->peer_addr + "\r\n");
        cp->close();
        return;
    }
    cp->bev.enable(EV_READ | EV_WRITE);
    if (resolver_ && dns::wire::reverse_name(cp->peer_addr)) {
        // Like Postfix: the greeting (and the "connect from" line) waits for
        // the verified name; a client that talks meanwhile is pregreeting.
        cp->name_ready = false;
        cp->peername = std::make_unique<PeerNameLookup>(*resolver_, ctx_.base(), cp->peer_addr, peername_timeout_,
                                                        [cp](std::string name) {
                                                            cp->session->set_peer_name(std::move(name));
                                                            cp->name_ready = true;
                                                            cp->maybe_start();
                                                        });
    }
    auto pause = ctx_.params().smtpd_pregreet_wait;
    if (implicit) {
        cp->tls_ready = false;  // the greeting follows the TLS handshake
    } else if (pause.count() > 0) {
        // Wait a moment before the greeting: a client that talks first is caught.
        cp->pause_over = false;
        cp->greet_timer = event::Event::timer(ctx_.base(), [cp] {
            cp->pause_over = true;
            cp->maybe_start();
        });
        cp->greet_timer.add(std::chrono::duration_cast<std::chrono::milliseconds>(pause));
    }
    cp->maybe_start();
}

bool Server::rate_ok(const std::string& addr) {
    auto limit = ctx_.params().smtpd_client_connection_rate_limit;
    if (limit <= 0) return true;
    auto now = std::chrono::steady_clock::now();
    auto& times = rates_[addr];
    while (!times.empty() && now - times.front() > ctx_.params().anvil_rate_time_unit) times.pop_front();
    times.push_back(now);
    // Note: per process; bounded by forgetting idle addresses below.
    if (rates_.size() > 10000) {
        for (auto it = rates_.begin(); it != rates_.end();) {
            if (it->second.empty() || now - it->second.back() > ctx_.params().anvil_rate_time_unit) it = rates_.erase(it);
            else ++it;
        }
    }
    return static_cast<long long>(times.size()) <= limit;
}

std::optional<bool> Server::local_user_exists(std::string_view local) { return recipients_.exists(local); }
std::optional<bool> Server::virtual_user_exists(std::string_view address) {
    return recipients_.virtual_exists(address);
}

Result<std::unique_ptr<MessageWriter>> Server::open_message(const Envelope& env) {
    auto w = queue::Writer::create(queue_dir_, env.arrival_us);
    if (!w) return w.error();
    queue::Envelope qe;
    qe.client_name = env.client_name;
    qe.client_addr = env.client_addr;
    qe.helo = env.helo;
    qe.protocol = env.protocol;
    qe.sasl_method = env.sasl_method;
    qe.sasl_username = env.sasl_username;
    qe.origin = "smtpd";
    qe.sender = env.sender;
    qe.envid = env.envid;
    qe.ret = env.ret;
    qe.body = env.body;
    qe.smtputf8 = env.smtputf8;
    for (auto& r : env.recipients) qe.recipients.push_back({r.address, r.orcpt, r.notify});
    if (auto r = w->write_envelope(qe); !r) return r.error();
    return std::unique_ptr<MessageWriter>(std::make_unique<QueueMessage>(std::move(*w)));
}

void Server::commit(std::unique_ptr<MessageWriter> w, std::function<void(Result<std::string>)> done) {
    auto* qm = static_cast<QueueMessage*>(w.get());
    pool_.submit(qm->take(), [this, done = std::move(done)](Result<std::string> r) {
        if (r) trigger_qmgr();
        done(std::move(r));
    });
}

void Server::authenticate(std::string_view mechanism, std::string_view user, std::string_view password,
                          const Peer& client, bool tls, std::function<void(AuthOutcome, AuthUser)> done) {
    auth::VerifyRequest req;
    req.service = "smtpd";
    req.mechanism = std::string(mechanism);
    req.user = std::string(user);
    req.password = std::string(password);
    req.client_addr = client.addr;
    req.client_name = client.name;
    req.tls = tls;
    auth_->send(std::move(req), [done = std::move(done)](const auth::Reply& r) {
        AuthUser u;
        if (r.user) {
            u.name = r.user->name;
            u.virtual_user = r.user->kind == auth::UserInfo::Kind::Virtual;
        }
        switch (r.outcome) {
            case auth::Outcome::Ok: return done(AuthOutcome::Ok, std::move(u));
            case auth::Outcome::Fail: return done(AuthOutcome::Fail, std::move(u));
            case auth::Outcome::Locked: return done(AuthOutcome::Locked, std::move(u));
            case auth::Outcome::TempFail: return done(AuthOutcome::TempFail, std::move(u));
        }
    });
}

std::optional<bool> Server::sender_owned(std::string_view sender, const AuthUser& user) {
    return senders_.owned(sender, user);
}

std::int64_t Server::now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void Server::trigger_qmgr() {
    // At most one wake-up per 100 ms: qmgr scans incoming/ anyway.
    auto now = std::chrono::steady_clock::now();
    if (now - last_trigger_ < std::chrono::milliseconds(100)) {
        if (!trigger_timer_.pending()) trigger_timer_.add(std::chrono::milliseconds(100));
        return;
    }
    last_trigger_ = now;
    // Nobody listening yet is fine: the file waits in incoming/.
    std::string path = (queue_dir_ == "/" ? std::string() : queue_dir_ + "/") + "private/qmgr";
    auto fd = ipc::connect_unix(path, 100);
    if (!fd) return;
    ssize_t n = ::write(fd->get(), "A", 1);
    (void)n;
}

}  // namespace postern::smtpd
