// authd/server.cpp - bufferevents and frames in, dispatcher, replies and delay timers out.
#include "authd/server.hpp"

#include <sysexits.h>
#include <unistd.h>

#include <vector>

#include "authd/secret.hpp"
#include "log/log.hpp"

namespace postern::authd {

struct Server::Conn {
    Conn(Server& s, std::uint64_t id_, service::Connection c)
        : id(id_), bev(s.ctx_.base(), c.take_fd()), conn(std::move(c)), decoder(RequestLimits) {}

    std::uint64_t id;
    event::BufferEvent bev;
    service::Connection conn;  // the skeleton's accounting: ends with the Conn
    ipc::Decoder decoder;
    std::size_t in_flight = 0;
    bool closing = false;  // no new requests; close once the last reply is out
    bool gone = false;     // dropped: waits for the reaper
    bool paused = false;   // MaxInFlight reached: not reading
};

namespace {

Limiter::Settings limiter_settings(const config::Params& p) { return Limiter::Settings::from(p); }

}  // namespace

Server::Server(service::Context& ctx) : ctx_(ctx), limiter_(limiter_settings(ctx.params())) {
    auto settings = BackendSettings::from(ctx.params());
    if (!settings) log::fatal(EX_CONFIG, "%s", settings.error().text.c_str());
    if (settings->pam && ::access(("/etc/pam.d/" + settings->pam_service).c_str(), F_OK) != 0 &&
        ::access("/etc/pam.conf", F_OK) != 0)
        log::warn("PAM service %s has no /etc/pam.d/%s: PAM falls back to \"other\", which usually refuses everyone",
                  settings->pam_service.c_str(), settings->pam_service.c_str());
    backends_ = std::make_unique<Backends>(ctx.base(), ctx.params(), std::move(*settings));
    dispatcher_ = std::make_unique<Dispatcher>(*backends_, limiter_, *this, [] { return Limiter::Clock::now(); });
    delay_timer_ = event::Event::timer(ctx.base(), [this] { run_due(); });
    reaper_ = event::Event::timer(ctx.base(), [this] {
        for (auto it = conns_.begin(); it != conns_.end();) {
            if (it->second->gone) it = conns_.erase(it);
            else ++it;
        }
    });
}

// Note: the delay timer and the reaper go first (reverse order of members),
// so no callback runs into a half-destroyed Server.
Server::~Server() = default;

void Server::accept(service::Connection c) {
    std::uint64_t id = next_id_++;
    auto owned = std::make_unique<Conn>(*this, id, std::move(c));
    Conn& conn = *owned;
    conns_[id] = std::move(owned);
    // No read timeout: clients keep one connection for as long as they run.
    conn.bev.set_timeouts(std::chrono::milliseconds(0), WriteTimeout);
    conn.bev.on_read([this, &conn] { on_read(conn); });
    conn.bev.on_write([this, &conn] {
        if (conn.closing && conn.in_flight == 0 && conn.bev.output_length() == 0) dead(conn);
    });
    conn.bev.on_event([this, &conn](short what) {
        if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && conn.in_flight > 0) {
            // The client is done sending but may still read: answer what it asked.
            close(conn);
            return;
        }
        if (what & BEV_EVENT_TIMEOUT) log::warn("auth client does not read its replies: dropping the connection");
        dead(conn);
    });
    if (draining_) return close(conn);
    conn.bev.enable(EV_READ | EV_WRITE);
}

void Server::on_read(Conn& c) {
    if (c.closing || c.gone) return;
    std::string data = c.bev.read_all();
    auto fed = c.decoder.feed(data);
    wipe(data);  // it may hold passwords
    if (!fed) {
        log::warn("bad auth request frame, dropping the connection: %s", fed.error().text.c_str());
        return dead(c);
    }
    while (auto msg = c.decoder.next()) {
        auto req = auth::decode_request(*msg);
        if (!req) {
            log::warn("bad auth request, dropping the connection: %s", req.error().text.c_str());
            return dead(c);
        }
        ++c.in_flight;
        dispatcher_->handle(std::move(*req), [this, id = c.id](const auth::Reply& r) { reply(id, r); });
        if (c.gone) return;
    }
    if (c.in_flight >= MaxInFlight && !c.paused) {
        c.paused = true;
        c.bev.disable(EV_READ);
    }
}

void Server::reply(std::uint64_t conn_id, const auth::Reply& r) {
    auto it = conns_.find(conn_id);
    if (it == conns_.end() || it->second->gone) return;  // the client went away meanwhile
    Conn& c = *it->second;
    if (c.in_flight > 0) --c.in_flight;
    c.bev.write(ipc::encode(auth::encode(r)));
    if (c.paused && !c.closing && c.in_flight < MaxInFlight / 2) {
        c.paused = false;
        // Note: on_read took every whole frame before it paused, so nothing
        // waits in the decoder: the socket's next bytes come with a callback.
        c.bev.enable(EV_READ);
    }
    // Otherwise the write callback sees the last reply out.
    if (c.closing && c.in_flight == 0 && c.bev.output_length() == 0) dead(c);
}

void Server::close(Conn& c) {
    if (c.gone) return;
    c.closing = true;
    c.bev.disable(EV_READ);
    if (c.in_flight == 0 && c.bev.output_length() == 0) dead(c);
}

void Server::dead(Conn& c) {
    if (c.gone) return;
    c.gone = true;
    c.bev.disable(EV_READ | EV_WRITE);
    // Note: destroyed by the reaper, never inside one of its own callbacks.
    reaper_.add(std::chrono::milliseconds(0));
}

void Server::drain() {
    draining_ = true;
    for (auto& [id, c] : conns_) close(*c);
}

void Server::after(std::chrono::milliseconds delay, std::function<void()> fn) {
    if (delay.count() < 0) delay = std::chrono::milliseconds(0);
    delayed_.emplace(Limiter::Clock::now() + delay, std::move(fn));
    arm_delay_timer();
}

void Server::arm_delay_timer() {
    if (delayed_.empty()) return delay_timer_.del();
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(delayed_.begin()->first - Limiter::Clock::now());
    delay_timer_.add(std::max(wait, std::chrono::milliseconds(0)));
}

void Server::run_due() {
    auto now = Limiter::Clock::now();
    std::vector<std::function<void()>> due;
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
        due.push_back(std::move(delayed_.begin()->second));
        delayed_.erase(delayed_.begin());
    }
    for (auto& fn : due) event::guarded("auth reply", fn);
    arm_delay_timer();
}

}  // namespace postern::authd
