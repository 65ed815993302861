// qmgr/agents.cpp - qmgr's side of the delivery protocol over UNIX sockets.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>

#include "event/event.hpp"
#include "ipc/ipc.hpp"
#include "log/log.hpp"
#include "qmgr/qmgr.hpp"

namespace postern::qmgr {
namespace {

// One request in flight: connect, send the frame, read one reply frame.
struct Call {
    delivery::Request req;
    std::function<void(Result<delivery::Reply>)> done;
    std::optional<event::BufferEvent> bev;
    ipc::Decoder decoder{ipc::Limits{.max_frame = 1 << 20, .max_attrs = delivery::MaxRecipients + 4}};
    bool finished = false;
};

class SocketAgents final : public Agents {
public:
    SocketAgents(event::Base& base, std::string queue_dir, std::chrono::seconds timeout)
        : base_(base), queue_dir_(std::move(queue_dir)), timeout_(timeout) {
        reap_ = event::Event::timer(base_, [this] { reap(); });
    }

    void start(const delivery::Request& req, std::function<void(Result<delivery::Reply>)> done) override {
        calls_.emplace_back();
        auto it = std::prev(calls_.end());
        Call& c = *it;
        c.req = req;
        c.done = std::move(done);
        std::string sock = (queue_dir_ == "/" ? std::string() : queue_dir_ + "/") + "private/" + req.transport;
        // Note: a UNIX connect to a listening socket completes at once (master
        // holds the listener even while no agent runs); the timeout only
        // matters when its backlog is full.
        auto fd = ipc::connect_unix(sock, 2000);
        if (!fd) {
            fail_later(it, Error::temp("connect to transport private/" + req.transport + ": " + fd.error().text));
            return;
        }
        c.bev.emplace(base_, std::move(*fd));
        c.bev->set_timeouts(timeout_, timeout_);
        c.bev->on_read([this, it] { on_read(it); });
        c.bev->on_event([this, it](short what) {
            (void)what;
            finish(it, Error::temp("lost connection with private/" + it->req.transport + " while delivering"));
        });
        c.bev->enable(EV_READ | EV_WRITE);
        c.bev->write(ipc::encode(delivery::encode(req)));
    }

private:
    using Iter = std::list<Call>::iterator;

    void on_read(Iter it) {
        std::string bytes = it->bev->read_all();
        if (auto r = it->decoder.feed(bytes); !r)
            return finish(it, Error::temp("bad reply from private/" + it->req.transport + ": " + r.error().text));
        auto frame = it->decoder.next();
        if (!frame) return;
        auto rep = delivery::decode_reply(*frame, it->req);
        if (!rep) {
            log::warn("%s: bad reply from private/%s: %s", it->req.queue_id.c_str(), it->req.transport.c_str(),
                      rep.error().text.c_str());
            return finish(it, Error::temp("bad reply from private/" + it->req.transport));
        }
        finish(it, std::move(*rep));
    }

    void fail_later(Iter it, Error e) {
        it->finished = true;
        pending_errors_.emplace_back(it, std::move(e));
        if (!reap_.pending()) reap_.add(std::chrono::milliseconds(0));
    }

    void finish(Iter it, Result<delivery::Reply> r) {
        if (it->finished) return;
        it->finished = true;
        it->bev.reset();
        auto done = std::move(it->done);
        // The Call is removed from the loop later: we are inside its callback.
        dead_.push_back(it);
        if (!reap_.pending()) reap_.add(std::chrono::milliseconds(0));
        done(std::move(r));
    }

    void reap() {
        auto errors = std::move(pending_errors_);
        pending_errors_.clear();
        for (auto& [it, e] : errors) {
            auto done = std::move(it->done);
            dead_.push_back(it);
            done(std::move(e));
        }
        for (auto it : dead_) calls_.erase(it);
        dead_.clear();
        if (!pending_errors_.empty() && !reap_.pending()) reap_.add(std::chrono::milliseconds(0));
    }

    event::Base& base_;
    std::string queue_dir_;
    std::chrono::seconds timeout_;
    std::list<Call> calls_;
    std::vector<Iter> dead_;
    std::vector<std::pair<Iter, Error>> pending_errors_;
    event::Event reap_;
};

}  // namespace

std::unique_ptr<Agents> make_socket_agents(event::Base& base, std::string queue_dir, std::chrono::seconds timeout) {
    return std::make_unique<SocketAgents>(base, std::move(queue_dir), timeout);
}

}  // namespace postern::qmgr
