// auth/client.cpp - the auth daemon's clients (see client.hpp).
#include "auth/client.hpp"

#include <fcntl.h>

#include "ipc/ipc.hpp"
#include "log/log.hpp"

namespace postern::auth {
namespace {

// Replies are small: a user's paths and numbers.
constexpr ipc::Limits kReplyLimits{.max_frame = 64 * 1024, .max_attrs = 64};

Reply backend_failure(std::uint64_t id) { return Reply{.id = id, .outcome = Outcome::TempFail, .reason = "backend_failure"}; }

template <class Req>
Result<Reply> call_one(const std::string& path, const Req& req, int timeout_ms) {
    auto fd = ipc::connect_unix(path, timeout_ms);
    if (!fd) return fd.error();
    if (auto w = ipc::write_frame(fd->get(), encode(req), timeout_ms); !w) return w.error();
    auto frame = ipc::read_frame(fd->get(), kReplyLimits, timeout_ms);
    if (!frame) return frame.error();
    auto r = decode_reply(*frame);
    if (!r) return r.error();
    if (r->id != req.id) return Error::protocol("auth reply for another request");
    return r;
}

}  // namespace

Client::Client(event::Base& base, std::string socket_path, std::chrono::milliseconds timeout)
    : base_(base), path_(std::move(socket_path)), timeout_(timeout) {
    timer_ = event::Event::timer(base_, [this] {
        auto now = std::chrono::steady_clock::now();
        std::vector<std::uint64_t> expired;
        for (auto& [id, p] : pending_)
            if (p.deadline <= now) expired.push_back(id);
        if (!expired.empty()) log::warn("auth: no reply from %s in time for %zu request(s)", path_.c_str(), expired.size());
        for (auto id : expired) finish(id, backend_failure(id));
        arm_timer();
    });
    later_ = event::Event::timer(base_, [this] {
        old_conns_.clear();
        auto ready = std::move(deferred_);
        deferred_.clear();
        for (auto& [done, reply] : ready) done(reply);
    });
}

Client::~Client() = default;

void Client::send(VerifyRequest req, Done done) {
    req.id = next_id_++;
    send_frame(req.id, encode(req), std::move(done));
}

void Client::send(LookupRequest req, Done done) {
    req.id = next_id_++;
    send_frame(req.id, encode(req), std::move(done));
}

void Client::send_frame(std::uint64_t id, const ipc::AttrList& frame, Done done) {
    if (!conn_ && !connect()) {
        deferred_.emplace_back(std::move(done), backend_failure(id));
        later_.add(std::chrono::milliseconds(0));
        return;
    }
    pending_[id] = Pending{std::move(done), std::chrono::steady_clock::now() + timeout_};
    conn_->write(ipc::encode(frame));
    arm_timer();
}

bool Client::connect() {
    // A UNIX connect to a listening socket completes at once (or fails).
    auto fd = ipc::connect_unix(path_, 2000);
    if (!fd) {
        log::warn("auth: cannot connect to %s: %s", path_.c_str(), fd.error().text.c_str());
        return false;
    }
    int flags = ::fcntl(fd->get(), F_GETFL);
    ::fcntl(fd->get(), F_SETFL, flags | O_NONBLOCK);
    conn_ = std::make_unique<event::BufferEvent>(base_, std::move(*fd));
    decoder_ = std::make_unique<ipc::Decoder>(kReplyLimits);
    conn_->on_read([this] { on_read(); });
    conn_->on_event([this](short what) {
        fail_all((what & BEV_EVENT_EOF) ? "the auth daemon closed the connection" : "lost connection to the auth daemon");
    });
    conn_->enable(EV_READ | EV_WRITE);
    return true;
}

void Client::on_read() {
    if (!conn_) return;
    if (auto r = decoder_->feed(conn_->read_all()); !r) return fail_all("bad reply: " + r.error().text);
    while (auto msg = decoder_->next()) {
        auto reply = decode_reply(*msg);
        if (!reply) return fail_all("bad reply: " + reply.error().text);
        finish(reply->id, *reply);  // a late reply to an expired request is dropped there
        if (!conn_) return;
    }
}

void Client::fail_all(const std::string& why) {
    if (!pending_.empty()) log::warn("auth: %s: %s", path_.c_str(), why.c_str());
    // Note: we may be inside one of conn_'s callbacks; free it on the next turn.
    if (conn_) old_conns_.push_back(std::move(conn_));
    decoder_.reset();
    for (auto& [id, p] : pending_) deferred_.emplace_back(std::move(p.done), backend_failure(id));
    pending_.clear();
    timer_.del();
    later_.add(std::chrono::milliseconds(0));
}

void Client::finish(std::uint64_t id, const Reply& r) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    Done done = std::move(it->second.done);
    pending_.erase(it);
    done(r);
}

void Client::arm_timer() {
    if (pending_.empty()) {
        timer_.del();
        return;
    }
    if (!timer_.pending()) timer_.add(std::chrono::milliseconds(1000));
}

Result<Reply> call(const std::string& socket_path, const VerifyRequest& req, int timeout_ms) {
    return call_one(socket_path, req, timeout_ms);
}

Result<Reply> call(const std::string& socket_path, const LookupRequest& req, int timeout_ms) {
    return call_one(socket_path, req, timeout_ms);
}

}  // namespace postern::auth
