// smtp/conn.cpp - one connection to one server (see conn.hpp).
#include "smtp/conn.hpp"

#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::smtp {
namespace {

std::chrono::milliseconds ms(config::Seconds s) { return std::chrono::duration_cast<std::chrono::milliseconds>(s); }

}  // namespace

std::unique_ptr<Conn> Conn::open(ConnEnv& env, const Target& target, const ClientSettings& settings, Notify notify) {
    return std::unique_ptr<Conn>(new Conn(env, target, settings, std::move(notify)));
}

Conn::Conn(ConnEnv& env, Target target, const ClientSettings& settings, Notify notify)
    : env_(env), target_(std::move(target)), settings_(settings), notify_(std::move(notify)),
      born_(std::chrono::steady_clock::now()) {
    client_ = std::make_unique<Client>(settings_, static_cast<ClientIo&>(*this), target_.text());
    // Notifications go out from the loop, never from inside our own callbacks:
    // the owner may destroy this connection when it hears from it.
    later_ = event::Event::timer(env_.base, [this] {
        if (phase_ == Phase::Ready || phase_ == Phase::Closed) notify_(*this);
    });
    connect_timer_ = event::Event::timer(env_.base, [this] {
        fail("connect to " + target_.text() + ": Connection timed out", "4.4.1");
    });
    auto fd = event::connect_tcp(target_.addr, target_.port, env_.params.smtp_bind_address);
    if (!fd) {
        fail("connect to " + target_.text() + ": " + fd.error().text, "4.4.1");
        return;
    }
    bev_ = std::make_unique<event::BufferEvent>(env_.base, std::move(*fd));
    bev_->on_read([this] { on_read(); });
    bev_->on_write([this] {
        if (closing_ && bev_->output_length() == 0) return finish();
        // Note: a transaction runs while we are still Ready (the owner began
        // it when told so); the Client's state says whether content waits.
        if (phase_ != Phase::Closed && client_->state() == Client::State::Busy) {
            client_->pump();
            progress();
        }
    });
    bev_->on_event([this](short what) { on_event(what); });
    bev_->enable(EV_READ | EV_WRITE);
    connect_timer_.add(ms(env_.params.smtp_connect_timeout));
}

Conn::~Conn() = default;

void Conn::send(std::string_view bytes) {
    if (bev_ && !closing_) bev_->write(bytes);
}

std::size_t Conn::output_pending() const { return bev_ ? bev_->output_length() : 0; }

void Conn::start_tls() {
    if (!env_.tls || !bev_) {
        client_->on_tls_failed("TLS is not available");
        return;
    }
    auto ssl = tls::new_client_ssl(env_.tls, target_.host);
    handshaking_ = true;
    bev_->start_tls_client(env_.base, ssl.release());
    bev_->set_timeouts(ms(env_.params.smtp_starttls_timeout), ms(env_.params.smtp_starttls_timeout));
}

void Conn::close() {
    // The Client is done (QUIT answered, or the session failed). It calls
    // this from inside end(), before progress() sees it Closed: keep why a
    // session that never got ready ended now, finish() makes us Closed.
    if (phase_ != Phase::Ready && phase_ != Phase::Closed && failure_.empty() && !notified_ready_) {
        failure_ = client_->session_error().empty() ? "lost connection with " + target_.text()
                                                     : client_->session_error();
        failure_dsn_ = client_->session_dsn().empty() ? "4.4.2" : client_->session_dsn();
    }
    if (!bev_) return finish();
    closing_ = true;
    bev_->disable(EV_READ);
    if (bev_->output_length() == 0) finish();
}

void Conn::quit() {
    if (phase_ == Phase::Ready && client_->state() == Client::State::Ready) {
        phase_ = Phase::Talking;
        client_->quit();
        arm();
        return;
    }
    close();
}

void Conn::on_read() {
    if (!bev_ || closing_) return;
    client_->feed(bev_->read_all());
    progress();
}

void Conn::on_event(short what) {
    if (what & BEV_EVENT_CONNECTED) {
        if (handshaking_) {
            handshaking_ = false;
            tls_ = true;
            SSL* ssl = bev_->ssl();
            auto check = tls::check_peer(ssl, target_.text());
            // Postfix's words: Verified (name checked), Trusted (chain only), Untrusted.
            const char* trust = SSL_get0_peer_certificate(ssl) == nullptr ? "Anonymous"
                                : check.trusted                            ? "Verified"
                                : check.chain_ok                           ? "Trusted"
                                                                           : "Untrusted";
            log::info("%s TLS connection established to %s: %s", trust, target_.text().c_str(),
                      tls::summary(ssl).c_str());
            if (settings_.tls == TlsPolicy::Verify && !check.trusted) client_->on_tls_failed(check.reason);
            else client_->tls_started();
            arm();
            progress();
            return;
        }
        connect_timer_.del();
        phase_ = Phase::Talking;
        arm();
        return;
    }
    if (phase_ == Phase::Connecting) {
        std::string why = (what & BEV_EVENT_TIMEOUT) ? "Connection timed out" : bev_->error_text();
        if (why.empty()) why = "Connection refused";
        return fail("connect to " + target_.text() + ": " + why, "4.4.1");
    }
    if (what & BEV_EVENT_TIMEOUT) {
        client_->on_timeout();
    } else if (handshaking_) {
        handshaking_ = false;
        std::string why = bev_->error_text();
        client_->on_tls_failed(why.empty() ? std::string("the connection was closed") : why);
    } else {
        client_->on_disconnect();
    }
    progress();
}

// Looks at the Client after anything happened and tells the owner.
void Conn::progress() {
    if (phase_ == Phase::Closed) return;
    auto st = client_->state();
    if (st == Client::State::Ready && phase_ != Phase::Ready) {
        phase_ = Phase::Ready;
        arm();
        later_.add(std::chrono::milliseconds(0));
    } else if (st == Client::State::Closed) {
        close();
    } else {
        arm();
    }
}

void Conn::after_transaction() {
    if (phase_ == Phase::Closed) return;
    notified_ready_ = true;
    if (client_->state() == Client::State::Ready) {
        phase_ = Phase::Ready;
        arm();
    } else {
        phase_ = Phase::Talking;
        progress();
    }
}

void Conn::fail(const std::string& reason, const std::string& dsn) {
    if (failure_.empty()) {
        failure_ = reason;
        failure_dsn_ = dsn;
    }
    finish();
}

void Conn::finish() {
    if (phase_ == Phase::Closed) return;
    phase_ = Phase::Closed;
    connect_timer_.del();
    if (bev_) bev_->disable(EV_READ | EV_WRITE);
    later_.add(std::chrono::milliseconds(0));
}

// The time limit for what the Client waits for now (Postfix's smtp_*_timeout).
std::chrono::milliseconds Conn::step_timeout() const {
    const auto& p = env_.params;
    std::string_view w = client_->waiting_for();
    if (w == "greeting" || w == "helo") return ms(p.smtp_helo_timeout);
    if (w == "starttls") return ms(p.smtp_starttls_timeout);
    if (w == "auth" || w == "mail") return ms(p.smtp_mail_timeout);
    if (w == "rcpt") return ms(p.smtp_rcpt_timeout);
    if (w == "data") return ms(p.smtp_data_init_timeout);
    if (w == "data_done") return ms(p.smtp_data_done_timeout);
    if (w == "quit") return ms(p.smtp_quit_timeout);
    return ms(p.smtp_connection_reuse_time_limit);  // idle, between transactions: the owner's timer decides
}

void Conn::arm() {
    if (!bev_ || phase_ == Phase::Closed || handshaking_) return;
    bev_->set_timeouts(step_timeout(), ms(env_.params.smtp_data_xfer_timeout));
}

}  // namespace postern::smtp
