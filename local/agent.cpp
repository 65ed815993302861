// local/agent.cpp - one DeliveryRequest: classify, expand, deliver, log, combine.
#include "local/agent.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "local/maildir.hpp"
#include "local/pipe.hpp"
#include "local/privsep.hpp"
#include "log/log.hpp"
#include "queue/queue.hpp"
#include "util/strings.hpp"

namespace postern::local {
namespace {

std::int64_t now_us() {
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

bool has_dotdot(std::string_view path) {
    std::size_t start = 0;
    while (start <= path.size()) {
        auto end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        if (path.substr(start, end - start) == "..") return true;
        start = end + 1;
    }
    return false;
}

void log_final(const delivery::Request& req, const std::string& to, const std::string& orig_to, const Status& s,
               std::string_view relay, std::int64_t start_us) {
    delivery::Outcome o{0, s.kind, s.dsn, std::string(relay), s.text};
    log::info("%s: %s", req.queue_id.c_str(), delivery::status_line(req, to, orig_to, o, start_us, now_us()).c_str());
}

}  // namespace

std::string env_safe(std::string_view value) {
    constexpr std::string_view Safe = "!@%-_=+:,./";
    std::string out(value);
    for (char& c : out) {
        const auto u = static_cast<unsigned char>(c);
        const bool alnum = (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z');
        if (!alnum && Safe.find(c) == std::string_view::npos) c = '_';
    }
    return out;
}

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

delivery::Reply Agent::deliver(const delivery::Request& req) {
    const std::int64_t start = now_us();
    done_.clear();
    delivery::Reply rep;
    auto fail_all = [&](const Status& s) {
        for (auto& r : req.recipients) {
            log_final(req, r.address, "", s, LocalRelay, start);
            rep.outcomes.push_back({r.index, s.kind, s.dsn, std::string(LocalRelay), s.text});
        }
        return rep;
    };
    const std::string path = p_.queue_directory + "/" + req.queue_file;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return fail_all(deferral(sys_error("open", path, errno)));
    std::uint64_t offset = 0;
    auto env = queue::read_envelope(fd.get(), &offset);
    if (!env) return fail_all(deferral(env.error()));
    if (env->queue_id != req.queue_id) return fail_all(Status::deferred("4.3.0", "queue file " + path + " has another ID"));
    // The request names recipients by index; each must be the queue file's
    // own, still pending: qmgr is trusted with scheduling, not with addresses.
    for (auto& r : req.recipients) {
        if (r.index >= env->recipients.size() || env->recipients[r.index].address != r.address ||
            env->recipients[r.index].status != queue::StatusPending)
            return fail_all(Status::deferred("4.3.0", "request does not match queue file " + path));
    }
    auto msg = Message::open(fd.get(), offset);
    if (!msg) return fail_all(deferral(msg.error()));
    for (auto& r : req.recipients) rep.outcomes.push_back(recipient(req, r, *msg, start));
    return rep;
}

delivery::Outcome Agent::recipient(const delivery::Request& req, const delivery::Rcpt& rcpt, const Message& msg,
                                   std::int64_t start_us) {
    const Address a = split_address(rcpt.address);
    const bool local = a.domain.empty() || mydestination_.contains(a.domain);
    const bool virt = !local && virtual_domains_.contains(a.domain);
    const std::string_view relay = virt ? VirtualRelay : LocalRelay;
    Job job{req, rcpt, msg, delivery_headers(req.sender, rcpt.address), {}};
    if (msg.delivered_to(rcpt.address)) {
        job.finals.push_back({rcpt.address, Status::bounced("5.4.6", "mail forwarding loop for " + rcpt.address)});
    } else if (local) {
        local_recipient(job, a);
    } else if (virt) {
        virtual_recipient(job, a);
    } else {
        job.finals.push_back({rcpt.address, Status::deferred("4.3.5", "mail for " + a.domain +
                                                                           " is not delivered here: the domain is in "
                                                                           "neither mydestination nor "
                                                                           "virtual_mailbox_domains")});
    }
    POSTERN_ASSERT(!job.finals.empty());
    const Status* w = &job.finals.front().status;
    for (auto& f : job.finals) {
        log_final(req, f.to, rcpt.address, f.status, relay, start_us);
        w = &worst(*w, f.status);
    }
    return {rcpt.index, w->kind, w->dsn, std::string(relay), w->text};
}

void Agent::local_recipient(Job& job, const Address& a) {
    Expander x(resolver_, {.delimiters = p_.recipient_delimiter});
    Plan plan = x.expand(job.rcpt.address, a.local, a.domain, job.req.sender);
    for (auto& f : plan.failures) job.finals.push_back({f.address, f.status});
    std::vector<const Target*> forwards;
    for (auto& t : plan.targets) {
        if (t.kind == Target::Kind::Forward) forwards.push_back(&t);
        else job.finals.push_back({t.address, execute(job, t)});
    }
    if (!forwards.empty()) forward(job, forwards);
}

Status Agent::execute(Job& job, const Target& t) {
    const std::string key = target_key(t);
    if (auto it = done_.find(key); it != done_.end()) return it->second;
    Status s = t.kind == Target::Kind::Mailbox ? mailbox(job, t.as)
               : t.kind == Target::Kind::File  ? file(job, t)
                                               : command(job, t);
    done_.emplace(key, s);
    return s;
}

void Agent::forward(Job& job, const std::vector<const Target*>& targets) {
    // One new queue file per envelope sender (owner-ALIAS may differ).
    std::map<std::string, std::vector<const Target*>> by_sender;
    for (const Target* t : targets) {
        if (auto it = done_.find(target_key(*t)); it != done_.end()) job.finals.push_back({t->address, it->second});
        else by_sender[t->sender].push_back(t);
    }
    bool queued = false;
    for (auto& [sender, list] : by_sender) {
        std::vector<std::string> addresses;
        for (const Target* t : list) addresses.push_back(t->text);
        auto id = resubmit(queue_, job.req, job.rcpt, sender, addresses, job.rcpt.address, job.msg, now_us());
        Status s = id ? Status::sent("forwarded as " + *id) : deferral(id.error());
        queued = queued || id.has_value();
        for (const Target* t : list) {
            job.finals.push_back({t->address, s});
            done_.emplace(target_key(*t), s);
        }
    }
    if (queued) wake_qmgr(queue_.queue_dir);
}

Status Agent::mailbox(Job& job, const privs::UserInfo& u) {
    const std::string& hm = p_.home_mailbox;
    if (!hm.empty()) {
        const bool maildir = hm.back() == '/';
        return store(job, u.uid, u.gid, u.home + "/" + hm, u.uid, false, maildir ? "maildir" : "mailbox");
    }
    // The spool directory is usually root:mail 2775 (Debian): deliver with
    // its group so the mailbox and its dot lock can be made there.
    const std::string& spool = p_.mail_spool_directory;
    gid_t gid = u.gid;
    struct stat st {};
    if (::stat(spool.c_str(), &st) == 0 && (st.st_mode & S_IWGRP) && st.st_gid != 0) gid = st.st_gid;
    return store(job, u.uid, gid, spool + "/" + u.name, u.uid, false, "mailbox");
}

Status Agent::file(Job& job, const Target& t) {
    return store(job, t.as.uid, t.as.gid, t.text, AnyOwner, true, "file: " + t.text);
}

Status Agent::store(Job& job, uid_t uid, gid_t gid, const std::string& path, uid_t owner, bool may_fail_dotlock,
                    const std::string& what) {
    const Message& msg = job.msg;
    const std::string& headers = job.headers;
    const std::string from = from_line(job.req.sender, now_us());
    MboxOptions o = mbox_;
    o.dotlock_may_fail = may_fail_dotlock;
    o.size_hint = msg.size() + headers.size() + from.size();
    const bool maildir = !path.empty() && path.back() == '/';
    return run_status_as(uid, gid, p_.command_time_limit, {msg.fd()}, [&]() -> Status {
        if (maildir) {
            return deliver_maildir(path, p_.myhostname, now_us(),
                                   [&](const Sink& s) { return msg.stream_lf(headers, false, s); }, what);
        }
        return append_mbox(path, owner, o, from, [&](const Sink& s) { return msg.stream_lf(headers, true, s); }, what);
    });
}

Status Agent::command(Job& job, const Target& t) {
    CommandSpec c;
    c.command = t.text;
    c.uid = t.as.uid;
    c.gid = t.as.gid;
    c.cwd = t.as.home.empty() ? "/" : t.as.home;
    c.env = command_env(job, t);
    c.shell = p_.local_command_shell;
    c.time_limit = p_.command_time_limit;
    return run_command(c, [&](const Sink& s) { return job.msg.stream_lf(job.headers, false, s); });
}

std::vector<std::string> Agent::command_env(const Job& job, const Target& t) const {
    const Address a = split_address(t.address);
    return {
        "HOME=" + t.as.home,
        "USER=" + t.as.name,
        "LOGNAME=" + t.as.name,
        "SHELL=" + t.as.shell,
        "SENDER=" + env_safe(job.req.sender),
        "RECIPIENT=" + env_safe(t.address),
        "LOCAL=" + env_safe(util::to_lower(a.local)),
        "DOMAIN=" + env_safe(a.domain),
        "EXTENSION=" + env_safe(t.extension),
        "ORIGINAL_RECIPIENT=" + env_safe(job.rcpt.address),
        "PATH=/usr/bin:/bin",
    };
}

void Agent::virtual_recipient(Job& job, const Address& a) {
    const std::string& address = job.rcpt.address;
    auto finish = [&](Status s) { job.finals.push_back({address, std::move(s)}); };
    const std::string local = util::to_lower(a.local);
    const LocalPart part = split_extension(local, p_.recipient_delimiter);
    std::vector<std::string> keys{local + "@" + a.domain};
    if (!part.extension.empty()) keys.push_back(part.user + "@" + a.domain);
    keys.push_back("@" + a.domain);
    std::optional<std::string> rel;
    for (auto& k : keys) {
        auto v = virtual_mailboxes_.lookup(k);
        if (!v) return finish(deferral(v.error()));
        if (*v) {
            rel = std::string(util::trim(**v));
            break;
        }
    }
    if (!rel) return finish(Status::bounced("5.1.1", "unknown user: \"" + util::printable(address) + "\""));
    if (p_.virtual_mailbox_base.empty()) return finish(Status::deferred("4.3.5", "virtual_mailbox_base is not set"));
    if (rel->empty() || has_dotdot(*rel))
        return finish(Status::deferred("4.3.5", "virtual_mailbox_maps: bad mailbox path for " + address));
    auto uid = virtual_uids_.lookup(keys);
    auto gid = virtual_gids_.lookup(keys);
    if (!uid) return finish(deferral(uid.error(), "4.3.5"));
    if (!gid) return finish(deferral(gid.error(), "4.3.5"));
    if (!*uid || !*gid) return finish(Status::deferred("4.3.5", "no virtual_uid_maps/virtual_gid_maps entry for " + address));
    std::string base = p_.virtual_mailbox_base;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    const std::string path = base + "/" + (rel->front() == '/' ? rel->substr(1) : *rel);
    const std::string key = "virtual:" + path;
    if (auto it = done_.find(key); it != done_.end()) return finish(it->second);
    Status s = store(job, **uid, **gid, path, **uid, false, path.back() == '/' ? "maildir" : "mailbox");
    done_.emplace(key, s);
    finish(std::move(s));
}

}  // namespace postern::local
