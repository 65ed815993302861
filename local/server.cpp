// local/server.cpp - the request/reply loop on one connection, in batches of pipelined requests.
#include "local/server.hpp"

#include <poll.h>

#include "log/log.hpp"
#include "util/assert.hpp"

namespace postern::local {
namespace {

struct Batch {
    std::vector<delivery::Request> requests;
    bool last = false;  // the connection ends after this batch
};

// Whether bytes (or EOF) are waiting, without blocking.
bool readable_now(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

// Waits up to timeout_ms for one request, then takes every further one that
// has started to arrive; the rest of a started frame gets timeout_ms.
Batch read_batch(int fd, int timeout_ms) {
    Batch b;
    while (b.requests.size() < MaxBatchRequests) {
        if (!b.requests.empty() && !readable_now(fd)) break;
        auto frame = ipc::read_frame(fd, RequestLimits, timeout_ms);
        if (!frame) {
            if (frame.error().text.find("connection closed") == std::string::npos)
                log::warn("reading a delivery request: %s", frame.error().text.c_str());
            b.last = true;
            break;
        }
        auto req = delivery::decode_request(*frame);
        if (!req) {
            log::warn("bad delivery request, dropping the connection: %s", req.error().text.c_str());
            b.last = true;
            break;
        }
        b.requests.push_back(std::move(*req));
    }
    return b;
}

}  // namespace

std::size_t serve(int fd, const Handler& handle, int timeout_ms) {
    std::size_t served = 0;
    for (;;) {
        Batch b = read_batch(fd, timeout_ms);
        if (b.requests.empty()) return served;
        auto replies = handle(b.requests);
        POSTERN_ASSERT(replies.size() == b.requests.size());
        for (std::size_t i = 0; i < replies.size(); ++i) {
            if (auto w = ipc::write_frame(fd, delivery::encode(replies[i]), timeout_ms); !w) {
                log::warn("%s: sending the delivery reply: %s", b.requests[i].queue_id.c_str(), w.error().text.c_str());
                return served;
            }
            ++served;
        }
        if (b.last) return served;
    }
}

}  // namespace postern::local
