// local/resubmit.cpp - forwarded mail goes back into the queue as a new file.
#include "local/resubmit.hpp"

#include <unistd.h>

#include "ipc/ipc.hpp"
#include "queue/queue.hpp"
#include "util/strings.hpp"

namespace postern::local {

Result<std::string> resubmit(const QueueOwner& q, const delivery::Request& req, const delivery::Rcpt& orig,
                             const std::string& sender, const std::vector<std::string>& addresses,
                             const std::string& delivered_to, const Message& msg, std::int64_t now_us) {
    auto w = queue::Writer::create(q.queue_dir, now_us);
    if (!w) return w.error();
    queue::Envelope env;
    env.protocol = "local";
    env.origin = "local";
    env.sender = sender;
    env.envid = req.envid;
    env.ret = req.ret;
    env.body = req.body;
    env.smtputf8 = req.smtputf8;
    for (auto& a : addresses) env.recipients.push_back({a, orig.orcpt, orig.notify});
    if (auto r = w->write_envelope(env); !r) return r.error();
    if (auto r = w->append("Delivered-To: " + util::to_lower(delivered_to) + "\r\n"); !r) return r.error();
    if (auto r = msg.stream_raw([&](std::string_view s) { return w->append(s); }); !r) return r.error();
    if (auto r = w->finish(); !r) return r.error();
    if (auto r = w->set_owner(q.uid, q.gid); !r) return r.error();
    if (auto r = w->commit(); !r) return r.error();
    return w->id();
}

void wake_qmgr(const std::string& queue_dir) {
    auto fd = ipc::connect_unix(queue_dir + "/private/qmgr", 100);
    if (!fd) return;
    ssize_t n = ::write(fd->get(), "A", 1);
    (void)n;
}

}  // namespace postern::local
