// local/agent.cpp - a batch of DeliveryRequests: open, resolve, run the Maildir stores, log, combine.
#include "local/agent.hpp"

#include <fcntl.h>
#include <sysexits.h>

#include <cerrno>
#include <deque>
#include <span>

#include "log/log.hpp"
#include "queue/queue.hpp"
#include "util/assert.hpp"

namespace postern::local {
namespace {

void log_final(const delivery::Request& req, const std::string& to, const std::string& orig_to, const Status& s,
               std::string_view relay, std::int64_t start_us, std::int64_t done_us) {
    delivery::Outcome o{0, s.kind, s.dsn, std::string(relay), s.text};
    log::info("%s: %s", req.queue_id.c_str(), delivery::status_line(req, to, orig_to, o, start_us, done_us).c_str());
}

}  // namespace

Agent::Agent(const config::Config& cfg)
    : p_(cfg.params()), resolver_(cfg), mydestination_(p_.mydestination),
      virtual_domains_(p_.virtual_mailbox_domains), virtual_mailboxes_(p_.virtual_mailbox_maps, maps::Format::Postmap),
      virtual_uids_(p_.virtual_uid_maps), virtual_gids_(p_.virtual_gid_maps) {
    auto locks = lock_options(p_.mailbox_delivery_lock);
    if (!locks) log::fatal(EX_CONFIG, "%s", locks.error().text.c_str());
    mbox_ = *locks;
    mbox_.size_limit = static_cast<std::uint64_t>(p_.mailbox_size_limit);
    auto owner = privs::lookup_user(p_.mail_owner);
    if (!owner) log::fatal(EX_TEMPFAIL, "look up mail_owner %s: %s", p_.mail_owner.c_str(), owner.error().text.c_str());
    if (!*owner) log::fatal(EX_CONFIG, "mail_owner %s: no such user", p_.mail_owner.c_str());
    queue_ = {p_.queue_directory, (*owner)->uid, (*owner)->gid};
}

std::vector<delivery::Reply> Agent::deliver_batch(const std::vector<delivery::Request>& reqs) {
    stores_.clear();
    stores_written_ = request_stores_ = 0;
    // A deque, not a vector: stores_ points at the Messages in it.
    std::deque<Pending> pending;
    for (auto& req : reqs) {
        pending.push_back({.req = req});
        resolve(pending.back());
    }
    write_stores();
    std::vector<delivery::Reply> replies;
    for (auto& p : pending) replies.push_back(finish(p));
    stores_.clear();
    stores_written_ = request_stores_ = 0;
    return replies;
}

void Agent::write_stores() {
    if (stores_written_ == stores_.size()) return;
    run_stores(std::span(stores_).subspan(stores_written_), p_.myhostname, p_.command_time_limit);
    stores_written_ = stores_.size();
}

void Agent::resolve(Pending& p) {
    p.start_us = wall_clock_us();
    done_.clear();
    request_stores_ = stores_.size();
    if (auto r = open_queue_file(p); !r) {
        const Status s = deferral(r.error());
        for (auto& rcpt : p.req.recipients) p.rcpts.push_back({LocalRelay, {{rcpt.address, {s}, wall_clock_us()}}});
        return;
    }
    for (auto& r : p.req.recipients) p.rcpts.push_back(recipient(p.req, r, *p.msg));
}

Result<void> Agent::open_queue_file(Pending& p) {
    const delivery::Request& req = p.req;
    const std::string path = p_.queue_directory + "/" + req.queue_file;
    p.fd.reset(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!p.fd) return sys_error("open", path, errno);
    std::uint64_t offset = 0;
    auto env = queue::read_envelope(p.fd.get(), &offset);
    if (!env) return env.error();
    if (env->queue_id != req.queue_id) return Error::temp("queue file " + path + " has another ID");
    // The request names recipients by index; each must be the queue file's
    // own, still pending: qmgr is trusted with scheduling, not with addresses.
    for (auto& r : req.recipients) {
        if (r.index >= env->recipients.size() || env->recipients[r.index].address != r.address ||
            env->recipients[r.index].status != queue::StatusPending)
            return Error::temp("request does not match queue file " + path);
    }
    auto msg = Message::open(p.fd.get(), offset);
    if (!msg) return msg.error();
    p.msg.emplace(std::move(*msg));
    return {};
}

Agent::RcptResult Agent::recipient(const delivery::Request& req, const delivery::Rcpt& rcpt, const Message& msg) {
    const Address a = split_address(rcpt.address);
    const bool local = a.domain.empty() || mydestination_.contains(a.domain);
    const bool virt = !local && virtual_domains_.contains(a.domain);
    Job job{req, rcpt, msg, delivery_headers(req.sender, rcpt.address), {}};
    if (msg.delivered_to(rcpt.address)) {
        job.finals.push_back({rcpt.address, {Status::bounced("5.4.6", "mail forwarding loop for " + rcpt.address)}});
    } else if (local) {
        local_recipient(job, a);
    } else if (virt) {
        virtual_recipient(job, a);
    } else {
        job.finals.push_back({rcpt.address, {Status::deferred("4.3.5", "mail for " + a.domain +
                                                                            " is not delivered here: the domain is in "
                                                                            "neither mydestination nor "
                                                                            "virtual_mailbox_domains")}});
    }
    POSTERN_ASSERT(!job.finals.empty());
    const std::int64_t now = wall_clock_us();
    for (auto& f : job.finals) f.done_us = now;  // a Maildir copy's time comes from its store
    return {virt ? VirtualRelay : LocalRelay, std::move(job.finals)};
}

delivery::Reply Agent::finish(const Pending& p) const {
    delivery::Reply rep;
    for (std::size_t i = 0; i < p.req.recipients.size(); ++i) {
        const delivery::Rcpt& rcpt = p.req.recipients[i];
        const RcptResult& r = p.rcpts[i];
        const Status* w = nullptr;
        for (auto& f : r.finals) {
            const StoreJob* job = f.slot.store ? &stores_.at(*f.slot.store) : nullptr;
            const Status& s = job ? job->status : f.slot.status;
            log_final(p.req, f.to, rcpt.address, s, r.relay, p.start_us, job ? job->done_us : f.done_us);
            w = w ? &worst(*w, s) : &s;
        }
        rep.outcomes.push_back({rcpt.index, w->kind, w->dsn, std::string(r.relay), w->text});
    }
    return rep;
}

}  // namespace postern::local
