// local/server.cpp - the request/reply loop on one connection.
#include "local/server.hpp"

#include "log/log.hpp"

namespace postern::local {

std::size_t serve(int fd, const Handler& handle, int timeout_ms) {
    std::size_t served = 0;
    for (;;) {
        auto frame = ipc::read_frame(fd, RequestLimits, timeout_ms);
        if (!frame) {
            if (frame.error().text.find("connection closed") == std::string::npos)
                log::warn("reading a delivery request: %s", frame.error().text.c_str());
            return served;
        }
        auto req = delivery::decode_request(*frame);
        if (!req) {
            log::warn("bad delivery request, dropping the connection: %s", req.error().text.c_str());
            return served;
        }
        auto reply = handle(*req);
        if (auto w = ipc::write_frame(fd, delivery::encode(reply), timeout_ms); !w) {
            log::warn("%s: sending the delivery reply: %s", req->queue_id.c_str(), w.error().text.c_str());
            return served;
        }
        ++served;
    }
}

}  // namespace postern::local
