// event/event.cpp - libevent wrappers and the one exception-catching trampoline.
#include "event/event.hpp"

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sysexits.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <vector>

#include "log/log.hpp"

namespace postern::event {

void guarded(const char* where, const std::function<void()>& fn) noexcept {
    try {
        fn();
    } catch (const std::exception& e) {
        log::error("%s: unexpected exception: %s", where, e.what());
    } catch (...) {
        log::error("%s: unexpected exception", where);
    }
}

Base::Base() : base_(event_base_new()) {
    if (!base_) log::fatal(EX_OSERR, "event_base_new failed");
}

int Base::dispatch() { return event_base_dispatch(base_.get()); }
void Base::exit() noexcept { event_base_loopbreak(base_.get()); }
void Base::reinit_after_fork() { event_reinit(base_.get()); }

struct Event::State {
    Callback cb;
    EventPtr ev;
};

void Event::trampoline(evutil_socket_t, short what, void* arg) noexcept {
    auto* st = static_cast<State*>(arg);
    guarded("event", [&] { st->cb(what); });
}

namespace {
void fatal_if_null(const void* p) {
    if (p == nullptr) log::fatal(EX_OSERR, "event_new failed");
}
}  // namespace

Event Event::timer(Base& base, std::function<void()> cb) {
    Event e;
    e.state_ = std::make_unique<State>();
    e.state_->cb = [cb = std::move(cb)](short) { cb(); };
    e.state_->ev.reset(event_new(base.get(), -1, 0, trampoline, e.state_.get()));
    fatal_if_null(e.state_->ev.get());
    return e;
}

Event Event::signal(Base& base, int signo, std::function<void()> cb) {
    Event e;
    e.state_ = std::make_unique<State>();
    e.state_->cb = [cb = std::move(cb)](short) { cb(); };
    e.state_->ev.reset(event_new(base.get(), signo, EV_SIGNAL | EV_PERSIST, trampoline, e.state_.get()));
    fatal_if_null(e.state_->ev.get());
    return e;
}

Event Event::io(Base& base, int fd, short what, Callback cb) {
    Event e;
    e.state_ = std::make_unique<State>();
    e.state_->cb = std::move(cb);
    e.state_->ev.reset(event_new(base.get(), fd, what, trampoline, e.state_.get()));
    fatal_if_null(e.state_->ev.get());
    return e;
}

Event::Event() = default;
Event::Event(Event&&) noexcept = default;
Event& Event::operator=(Event&& o) noexcept {
    if (this != &o) {
        del();
        state_ = std::move(o.state_);
    }
    return *this;
}
Event::~Event() { del(); }

void Event::add() {
    if (state_) event_add(state_->ev.get(), nullptr);
}

void Event::add(std::chrono::milliseconds timeout) {
    if (!state_) return;
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    event_add(state_->ev.get(), &tv);
}

void Event::del() noexcept {
    if (state_ && state_->ev) event_del(state_->ev.get());
}

bool Event::pending() const noexcept {
    return state_ && event_pending(state_->ev.get(), EV_READ | EV_WRITE | EV_SIGNAL | EV_TIMEOUT, nullptr);
}

struct BufferEvent::State {
    BufferEventPtr bev;
    std::function<void()> on_read, on_write;
    std::function<void(short)> on_event;
    // A connect (or client handshake) in progress: reading waits for it.
    bool connecting = false;
    bool read_wanted = false;
    // Set dirty shutdowns as EOF once the client handshake is done (during
    // it, a refused or reset connection must stay an error).
    bool dirty_ok_when_connected = false;
    // A TLS handshake whose BEV_EVENT_CONNECTED has not been reported yet.
    // libevent's OpenSSL filter re-enables reading when the handshake ends
    // and may run the read callback (with application data that came with
    // the last handshake flight, e.g. a pipelined EHLO after STARTTLS) before
    // the CONNECTED event: read_cb then reports CONNECTED first itself and
    // the late one is swallowed.
    bool tls_handshaking = false, tls_connected_early = false;
    // Why the last BEV_EVENT_ERROR happened.
    int error = 0;
    std::vector<unsigned long> tls_errors;
};

namespace {

// "192.0.2.1" / "2001:db8::1" / "[2001:db8::1]" -> sockaddr; false if not an address.
bool to_sockaddr(std::string_view addr, int port, sockaddr_storage& ss, socklen_t& len) {
    if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
    if (addr.empty() || addr.size() >= INET6_ADDRSTRLEN) return false;
    std::string z(addr);
    ss = {};
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, z.c_str(), &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(static_cast<std::uint16_t>(port));
        len = sizeof(sockaddr_in);
        return true;
    }
    if (::inet_pton(AF_INET6, z.c_str(), &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(static_cast<std::uint16_t>(port));
        len = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

}  // namespace

Result<ConnectingFd> connect_tcp(const std::string& addr, int port, const std::string& bind_addr) {
    sockaddr_storage to{};
    socklen_t to_len = 0;
    if (port < 1 || port > 65535) return Error::perm("bad port " + std::to_string(port));
    if (!to_sockaddr(addr, port, to, to_len)) return Error::perm("not an IP address: " + addr);
    sockaddr_storage from{};
    socklen_t from_len = 0;
    bool bind_it = false;
    if (!bind_addr.empty()) {
        if (!to_sockaddr(bind_addr, 0, from, from_len)) return Error::config("bad bind address: " + bind_addr);
        bind_it = from.ss_family == to.ss_family;
    }
    UniqueFd fd(::socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return sys_error("socket", "", errno);
    if (bind_it && ::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), from_len) != 0)
        return Error::temp("bind to " + bind_addr + ": " + errno_text(errno));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), to_len) != 0 && errno != EINPROGRESS &&
        errno != EINTR)  // Note: after EINTR the connect goes on in the background
        return Error::temp(errno_text(errno));
    return ConnectingFd{std::move(fd)};
}

BufferEvent::BufferEvent(Base& base, UniqueFd fd) : state_(std::make_unique<State>()) {
    evutil_make_socket_nonblocking(fd.get());
    state_->bev.reset(bufferevent_socket_new(base.get(), fd.release(), BEV_OPT_CLOSE_ON_FREE));
    if (!state_->bev) log::fatal(EX_OSERR, "bufferevent_socket_new failed");
    bufferevent_setcb(state_->bev.get(), read_cb, write_cb, event_cb, state_.get());
}

BufferEvent::BufferEvent(Base& base, ConnectingFd fd) : BufferEvent(base, std::move(fd.fd)) {
    // A NULL address tells libevent that the socket is connecting already:
    // it waits for it to become writable and reports CONNECTED or ERROR
    // from the loop.
    if (bufferevent_socket_connect(state_->bev.get(), nullptr, 0) != 0)
        log::fatal(EX_OSERR, "bufferevent_socket_connect failed");
    state_->connecting = true;
}

BufferEvent BufferEvent::tls_client(Base& base, ConnectingFd fd, SSL* ssl) {
    BufferEvent b;
    b.state_ = std::make_unique<State>();
    // Note: a socket still connecting makes the first handshake write fail
    // with EAGAIN, so the handshake simply waits for the connection; a
    // refused one fails the handshake with the connect's errno.
    b.state_->bev.reset(bufferevent_openssl_socket_new(base.get(), fd.fd.release(), ssl, BUFFEREVENT_SSL_CONNECTING,
                                                       BEV_OPT_CLOSE_ON_FREE));
    if (!b.state_->bev) log::fatal(EX_OSERR, "bufferevent_openssl_socket_new failed");
    b.state_->dirty_ok_when_connected = true;
    b.state_->tls_handshaking = true;
    bufferevent_setcb(b.state_->bev.get(), read_cb, write_cb, event_cb, b.state_.get());
    return b;
}

BufferEvent BufferEvent::tls_server(Base& base, UniqueFd fd, SSL* ssl) {
    BufferEvent b;
    b.state_ = std::make_unique<State>();
    evutil_make_socket_nonblocking(fd.get());
    b.state_->bev.reset(
        bufferevent_openssl_socket_new(base.get(), fd.release(), ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE));
    if (!b.state_->bev) log::fatal(EX_OSERR, "bufferevent_openssl_socket_new failed");
    bufferevent_openssl_set_allow_dirty_shutdown(b.state_->bev.get(), 1);
    b.state_->tls_handshaking = true;
    bufferevent_setcb(b.state_->bev.get(), read_cb, write_cb, event_cb, b.state_.get());
    return b;
}

std::size_t BufferEvent::start_tls_server(Base& base, SSL* ssl) {
    bufferevent* plain = state_->bev.get();
    evbuffer* in = bufferevent_get_input(plain);
    std::size_t dropped = evbuffer_get_length(in);
    evbuffer_drain(in, dropped);
    bufferevent* f = bufferevent_openssl_filter_new(base.get(), plain, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
    if (f == nullptr) log::fatal(EX_OSERR, "bufferevent_openssl_filter_new failed");
    // The filter owns the plain bufferevent now (and frees it with itself).
    (void)state_->bev.release();
    state_->bev.reset(f);
    bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
    state_->tls_handshaking = true;
    bufferevent_setcb(f, read_cb, write_cb, event_cb, state_.get());
    return dropped;
}

std::size_t BufferEvent::start_tls_client(Base& base, SSL* ssl) {
    bufferevent* plain = state_->bev.get();
    evbuffer* in = bufferevent_get_input(plain);
    std::size_t dropped = evbuffer_get_length(in);
    evbuffer_drain(in, dropped);
    short enabled = bufferevent_get_enabled(plain);
    std::size_t low = 0, high = 0;
    bufferevent_getwatermark(plain, EV_READ, &low, &high);
    bufferevent* f = bufferevent_openssl_filter_new(base.get(), plain, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
    if (f == nullptr) log::fatal(EX_OSERR, "bufferevent_openssl_filter_new failed");
    (void)state_->bev.release();  // owned by the filter now
    state_->bev.reset(f);
    state_->dirty_ok_when_connected = true;
    state_->tls_handshaking = true;
    bufferevent_setcb(f, read_cb, write_cb, event_cb, state_.get());
    // The TLS layer reads and writes as the plain one did, with its limit.
    bufferevent_setwatermark(f, EV_READ, 0, high);
    bufferevent_enable(f, enabled);
    return dropped;
}

SSL* BufferEvent::ssl() const noexcept { return bufferevent_openssl_get_ssl(state_->bev.get()); }
int BufferEvent::socket_error() const noexcept { return state_->error; }

std::string BufferEvent::error_text() const {
    std::string out;
    for (unsigned long e : state_->tls_errors) {
        // libevent also records the SSL_get_error() code itself (a small
        // number, no library): it says nothing a reader could use.
        if (ERR_GET_LIB(e) == 0) continue;
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    if (out.empty() && state_->error != 0) out = errno_text(state_->error);
    return out;
}

BufferEvent::~BufferEvent() = default;
BufferEvent::BufferEvent(BufferEvent&&) noexcept = default;
BufferEvent& BufferEvent::operator=(BufferEvent&&) noexcept = default;

void BufferEvent::read_cb(bufferevent* bev, void* arg) noexcept {
    auto* st = static_cast<State*>(arg);
    if (st->tls_handshaking) {
        st->tls_connected_early = true;
        event_cb(bev, BEV_EVENT_CONNECTED, arg);
    }
    if (st->on_read) guarded("read", st->on_read);
}
void BufferEvent::write_cb(bufferevent*, void* arg) noexcept {
    auto* st = static_cast<State*>(arg);
    if (st->on_write) guarded("write", st->on_write);
}
void BufferEvent::event_cb(bufferevent* bev, short what, void* arg) noexcept {
    int saved = errno;
    auto* st = static_cast<State*>(arg);
    if (what & BEV_EVENT_ERROR) {
        st->error = saved;
        st->tls_errors.clear();
        // libevent moved OpenSSL's error queue into the bufferevent.
        if (bufferevent_openssl_get_ssl(bev) != nullptr)
            while (unsigned long e = bufferevent_get_openssl_error(bev)) st->tls_errors.push_back(e);
    }
    if (what & BEV_EVENT_CONNECTED) {
        if (!st->tls_handshaking && st->tls_connected_early) {
            st->tls_connected_early = false;
            return;
        }
        st->tls_handshaking = false;
    }
    if (st->connecting) {
        st->connecting = false;
        if ((what & BEV_EVENT_CONNECTED) && st->read_wanted) bufferevent_enable(bev, EV_READ);
        st->read_wanted = false;
    }
    if ((what & BEV_EVENT_CONNECTED) && st->dirty_ok_when_connected) {
        st->dirty_ok_when_connected = false;
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
    if (st->on_event)
        guarded("event", [&] {
            errno = saved;  // for callers that read EVUTIL_SOCKET_ERROR() themselves
            st->on_event(what);
        });
}

void BufferEvent::on_read(std::function<void()> cb) { state_->on_read = std::move(cb); }
void BufferEvent::on_write(std::function<void()> cb) { state_->on_write = std::move(cb); }
void BufferEvent::on_event(std::function<void(short)> cb) { state_->on_event = std::move(cb); }
void BufferEvent::enable(short what) {
    if (state_->connecting && (what & EV_READ)) {
        state_->read_wanted = true;
        what &= ~EV_READ;
    }
    if (what != 0) bufferevent_enable(state_->bev.get(), what);
}
void BufferEvent::disable(short what) {
    if (state_->connecting && (what & EV_READ)) state_->read_wanted = false;
    bufferevent_disable(state_->bev.get(), what);
}

void BufferEvent::set_timeouts(std::chrono::milliseconds read, std::chrono::milliseconds write) {
    timeval r{static_cast<time_t>(read.count() / 1000), static_cast<suseconds_t>((read.count() % 1000) * 1000)};
    timeval w{static_cast<time_t>(write.count() / 1000), static_cast<suseconds_t>((write.count() % 1000) * 1000)};
    bufferevent_set_timeouts(state_->bev.get(), read.count() > 0 ? &r : nullptr, write.count() > 0 ? &w : nullptr);
}

void BufferEvent::set_read_high_water(std::size_t bytes) { bufferevent_setwatermark(state_->bev.get(), EV_READ, 0, bytes); }

// Note: queued, and sent by libevent from the loop, even when nothing is
// queued yet. Sending at once (saving the EPOLLOUT round of three system
// calls per reply) was tried: a second write in the same turn then meets
// Nagle's algorithm behind the unacknowledged first one and waits for the
// peer's delayed ACK, and the smtp agent's pipelined commands relayed at a
// third of the rate. All writes of one turn go out together this way.
void BufferEvent::write(std::string_view data) { bufferevent_write(state_->bev.get(), data.data(), data.size()); }

std::size_t BufferEvent::input_length() const { return evbuffer_get_length(bufferevent_get_input(state_->bev.get())); }
std::size_t BufferEvent::output_length() const {
    return evbuffer_get_length(bufferevent_get_output(state_->bev.get()));
}

std::optional<std::string> BufferEvent::read_line(std::size_t max_len, bool* too_long_out) {
    evbuffer* in = bufferevent_get_input(state_->bev.get());
    if (too_long_out) *too_long_out = false;
    evbuffer_ptr p = evbuffer_search_eol(in, nullptr, nullptr, EVBUFFER_EOL_LF);
    std::size_t avail = evbuffer_get_length(in);
    auto byte_at = [in](std::size_t pos) {
        char c = 0;
        evbuffer_ptr q{};
        if (evbuffer_ptr_set(in, &q, pos, EVBUFFER_PTR_SET) == 0) evbuffer_copyout_from(in, &q, &c, 1);
        return c;
    };
    if (p.pos < 0) {
        // Note: max_len excludes the line ending, so a CR right after max_len
        // bytes may be the first half of the CRLF ending a line at the limit.
        if (avail > max_len && !(avail == max_len + 1 && byte_at(max_len) == '\r')) {
            std::string cut(max_len, '\0');
            evbuffer_remove(in, cut.data(), max_len);
            if (too_long_out) *too_long_out = true;
            return cut;
        }
        return std::nullopt;
    }
    auto len = static_cast<std::size_t>(p.pos);
    std::size_t eol = 1;
    if (len > 0 && byte_at(len - 1) == '\r') {
        --len;
        eol = 2;
    }
    if (len > max_len) {
        std::string cut(max_len, '\0');
        evbuffer_remove(in, cut.data(), max_len);
        evbuffer_drain(in, len - max_len + eol);
        if (too_long_out) *too_long_out = true;
        return cut;
    }
    std::string line(len, '\0');
    evbuffer_remove(in, line.data(), len);
    evbuffer_drain(in, eol);
    return line;
}

std::string BufferEvent::read_all() {
    evbuffer* in = bufferevent_get_input(state_->bev.get());
    std::string out(evbuffer_get_length(in), '\0');
    evbuffer_remove(in, out.data(), out.size());
    return out;
}

int BufferEvent::fd() const noexcept { return bufferevent_getfd(state_->bev.get()); }
bufferevent* BufferEvent::get() const noexcept { return state_->bev.get(); }

}  // namespace postern::event
