// event/event.cpp - libevent wrappers and the one exception-catching trampoline.
#include "event/event.hpp"

#include <event2/bufferevent_ssl.h>
#include <sysexits.h>

#include <exception>

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
};

BufferEvent::BufferEvent(Base& base, UniqueFd fd) : state_(std::make_unique<State>()) {
    evutil_make_socket_nonblocking(fd.get());
    state_->bev.reset(bufferevent_socket_new(base.get(), fd.release(), BEV_OPT_CLOSE_ON_FREE));
    if (!state_->bev) log::fatal(EX_OSERR, "bufferevent_socket_new failed");
    bufferevent_setcb(state_->bev.get(), read_cb, write_cb, event_cb, state_.get());
}

BufferEvent BufferEvent::tls_server(Base& base, UniqueFd fd, SSL* ssl) {
    BufferEvent b;
    b.state_ = std::make_unique<State>();
    evutil_make_socket_nonblocking(fd.get());
    b.state_->bev.reset(
        bufferevent_openssl_socket_new(base.get(), fd.release(), ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE));
    if (!b.state_->bev) log::fatal(EX_OSERR, "bufferevent_openssl_socket_new failed");
    bufferevent_openssl_set_allow_dirty_shutdown(b.state_->bev.get(), 1);
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
    bufferevent_setcb(f, read_cb, write_cb, event_cb, state_.get());
    return dropped;
}

SSL* BufferEvent::ssl() const noexcept { return bufferevent_openssl_get_ssl(state_->bev.get()); }

BufferEvent::~BufferEvent() = default;
BufferEvent::BufferEvent(BufferEvent&&) noexcept = default;
BufferEvent& BufferEvent::operator=(BufferEvent&&) noexcept = default;

void BufferEvent::read_cb(bufferevent*, void* arg) noexcept {
    auto* st = static_cast<State*>(arg);
    if (st->on_read) guarded("read", st->on_read);
}
void BufferEvent::write_cb(bufferevent*, void* arg) noexcept {
    auto* st = static_cast<State*>(arg);
    if (st->on_write) guarded("write", st->on_write);
}
void BufferEvent::event_cb(bufferevent*, short what, void* arg) noexcept {
    auto* st = static_cast<State*>(arg);
    if (st->on_event) guarded("event", [&] { st->on_event(what); });
}

void BufferEvent::on_read(std::function<void()> cb) { state_->on_read = std::move(cb); }
void BufferEvent::on_write(std::function<void()> cb) { state_->on_write = std::move(cb); }
void BufferEvent::on_event(std::function<void(short)> cb) { state_->on_event = std::move(cb); }
void BufferEvent::enable(short what) { bufferevent_enable(state_->bev.get(), what); }
void BufferEvent::disable(short what) { bufferevent_disable(state_->bev.get(), what); }

void BufferEvent::set_timeouts(std::chrono::milliseconds read, std::chrono::milliseconds write) {
    timeval r{static_cast<time_t>(read.count() / 1000), static_cast<suseconds_t>((read.count() % 1000) * 1000)};
    timeval w{static_cast<time_t>(write.count() / 1000), static_cast<suseconds_t>((write.count() % 1000) * 1000)};
    bufferevent_set_timeouts(state_->bev.get(), read.count() > 0 ? &r : nullptr, write.count() > 0 ? &w : nullptr);
}

void BufferEvent::set_read_high_water(std::size_t bytes) { bufferevent_setwatermark(state_->bev.get(), EV_READ, 0, bytes); }

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
