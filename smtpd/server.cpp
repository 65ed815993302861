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

struct Server::Conn : Io {
    Conn(Server& srv, service::Connection c)
        : server(srv), peer_addr(c.peer().addr), bev(srv.ctx_.base(), c.take_fd()), conn(std::move(c)) {}

    void reply(std::string_view text) override { bev.write(text); }
    void close() override {
        closing = true;
        bev.disable(EV_READ);
        if (bev.output_length() == 0) dead();
    }
    bool tls_available() const override { return false; }
    bool tls_active() const override { return false; }
    std::string tls_summary() const override { return {}; }
    void start_tls() override {}
    void resume() override {
        if (!closing) bev.enable(EV_READ);
    }
    void dead() {
        if (gone) return;
        gone = true;
        bev.disable(EV_READ | EV_WRITE);
        server.reap();
    }

    Server& server;
    std::string peer_addr;
    event::BufferEvent bev;
    service::Connection conn;
    std::unique_ptr<Session> session;
    bool closing = false, gone = false;
};

Server::Server(service::Context& ctx, LocalRecipients recipients)
    : ctx_(ctx), recipients_(std::move(recipients)),
      queue_dir_(ctx.options().chroot ? "/" : ctx.params().queue_directory), pool_(ctx.base()) {
    auto s = Settings::from(ctx.params());
    if (!s) log::fatal(EX_CONFIG, "%s", s.error().text.c_str());
    settings_ = std::move(*s);
    reaper_ = event::Event::timer(ctx.base(), [this] {
        for (auto it = conns_.begin(); it != conns_.end();) {
            if (it->first->gone) {
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

void Server::accept(service::Connection c) {
    auto conn = std::make_unique<Conn>(*this, std::move(c));
    Conn* cp = conn.get();
    conns_[cp] = std::move(conn);
    Peer peer;
    peer.addr = cp->peer_addr;
    cp->session = std::make_unique<Session>(settings_, *this, *cp, peer);
    int& n = per_client_[cp->peer_addr];
    ++n;
    auto limit = ctx_.params().smtpd_client_connection_count_limit;
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(ctx_.params().smtpd_timeout);
    cp->bev.set_timeouts(timeout, timeout);
    cp->bev.on_read([cp] {
        if (cp->closing) return;
        std::string data = cp->bev.read_all();
        cp->session->feed(data);
        if (cp->session->waiting()) cp->bev.disable(EV_READ);  // back-pressure until the commit is done
    });
    cp->bev.on_write([cp] {
        if (cp->closing && cp->bev.output_length() == 0) cp->dead();
    });
    cp->bev.on_event([cp](short what) {
        if (what & BEV_EVENT_TIMEOUT) {
            cp->session->on_timeout();
            if (!cp->closing) cp->close();
            return;
        }
        cp->session->on_disconnect();
        cp->dead();
    });
    if (limit > 0 && n > limit) {
        log::warn("too many connections from %s (smtpd_client_connection_count_limit=%lld)", cp->peer_addr.c_str(), limit);
        cp->reply("421 4.7.0 " + settings_.hostname + " Error: too many connections from " + cp->peer_addr + "\r\n");
        cp->session.reset();
        cp->session = std::make_unique<Session>(settings_, *this, *cp, peer);
        cp->close();
        return;
    }
    cp->session->start();
    cp->bev.enable(EV_READ);
}

std::optional<bool> Server::local_user_exists(std::string_view local) { return recipients_.exists(local); }

Result<std::unique_ptr<MessageWriter>> Server::open_message(const Envelope& env) {
    auto w = queue::Writer::create(queue_dir_, env.arrival_us);
    if (!w) return w.error();
    queue::Envelope qe;
    qe.client_name = env.client_name;
    qe.client_addr = env.client_addr;
    qe.helo = env.helo;
    qe.protocol = env.protocol;
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

std::int64_t Server::now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void Server::trigger_qmgr() {
    // Nobody listening yet is fine: the file waits in incoming/.
    std::string path = (queue_dir_ == "/" ? std::string() : queue_dir_ + "/") + "private/qmgr";
    auto fd = ipc::connect_unix(path, 100);
    if (!fd) return;
    ssize_t n = ::write(fd->get(), "A", 1);
    (void)n;
}

}  // namespace postern::smtpd
