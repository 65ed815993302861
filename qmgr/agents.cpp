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
#include "util/assert.hpp"

namespace postern::qmgr {
namespace {

// One session: connect, send every request frame, read one reply frame per
// request, in order.
struct Call {
    std::vector<delivery::Request> reqs;
    std::vector<Agents::Done> done;
    std::size_t answered = 0;
    std::optional<event::BufferEvent> bev;
    ipc::Decoder decoder{ipc::Limits{.max_frame = 1 << 20, .max_attrs = delivery::MaxRecipients + 4}};
    bool finished = false;
    std::string transport() const { return reqs.front().transport; }
};

class SocketAgents final : public Agents {
public:
    SocketAgents(event::Base& base, std::string queue_dir, std::chrono::seconds timeout)
        : base_(base), queue_dir_(std::move(queue_dir)), timeout_(timeout) {
        reap_ = event::Event::timer(base_, [this] { reap(); });
    }

    void start(std::vector<delivery::Request> reqs, std::vector<Done> done) override {
        POSTERN_ASSERT(!reqs.empty() && reqs.size() == done.size());
        calls_.emplace_back();
        auto it = std::prev(calls_.end());
        Call& c = *it;
        c.reqs = std::move(reqs);
        c.done = std::move(done);
        const std::string transport = c.transport();
        std::string sock = (queue_dir_ == "/" ? std::string() : queue_dir_ + "/") + "private/" + transport;
        // Note: a UNIX connect to a listening socket completes at once (master
        // holds the listener even while no agent runs); the timeout only
        // matters when its backlog is full.
        auto fd = ipc::connect_unix(sock, 2000);
        if (!fd) {
            fail_later(it, Error::temp("connect to transport private/" + transport + ": " + fd.error().text));
            return;
        }
        c.bev.emplace(base_, std::move(*fd));
        c.bev->set_timeouts(timeout_, timeout_);
        c.bev->on_read([this, it] { on_read(it); });
        c.bev->on_event([this, it](short what) {
            (void)what;
            finish(it, Error::temp("lost connection with private/" + it->transport() + " while delivering"));
        });
        c.bev->enable(EV_READ | EV_WRITE);
        std::string out;
        for (auto& r : c.reqs) out += ipc::encode(delivery::encode(r));
        c.bev->write(out);
    }

private:
    using Iter = std::list<Call>::iterator;

    void on_read(Iter it) {
        std::string bytes = it->bev->read_all();
        if (auto r = it->decoder.feed(bytes); !r)
            return finish(it, Error::temp("bad reply from private/" + it->transport() + ": " + r.error().text));
        while (auto frame = it->decoder.next()) {
            const delivery::Request& req = it->reqs[it->answered];
            auto rep = delivery::decode_reply(*frame, req);
            if (!rep) {
                log::warn("%s: bad reply from private/%s: %s", req.queue_id.c_str(), req.transport.c_str(),
                          rep.error().text.c_str());
                return finish(it, Error::temp("bad reply from private/" + req.transport));
            }
            // This reply's caller may start new sessions; ours stays valid
            // (std::list) and is only erased by reap().
            auto done = std::move(it->done[it->answered]);
            ++it->answered;
            bool last = it->answered == it->reqs.size();
            if (last) {
                it->finished = true;
                it->bev.reset();
                dead_.push_back(it);
                if (!reap_.pending()) reap_.add(std::chrono::milliseconds(0));
            }
            done(std::move(*rep));
            if (last) return;
        }
    }

    void fail_later(Iter it, Error e) {
        it->finished = true;
        pending_errors_.emplace_back(it, std::move(e));
        if (!reap_.pending()) reap_.add(std::chrono::milliseconds(0));
    }

    // The session failed: every request not answered yet gets the error.
    void finish(Iter it, Error e) {
        if (it->finished) return;
        it->finished = true;
        it->bev.reset();
        dead_.push_back(it);
        if (!reap_.pending()) reap_.add(std::chrono::milliseconds(0));
        fail_rest(it, e);
    }

    void fail_rest(Iter it, const Error& e) {
        while (it->answered < it->reqs.size()) {
            auto done = std::move(it->done[it->answered]);
            ++it->answered;
            done(e);
        }
    }

    void reap() {
        auto errors = std::move(pending_errors_);
        pending_errors_.clear();
        for (auto& [it, e] : errors) {
            dead_.push_back(it);
            fail_rest(it, e);
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
