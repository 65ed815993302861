// local/targets.cpp - one recipient's deliveries: local users, virtual mailboxes, aliases' targets, forwarding.
#include <sys/stat.h>

#include <algorithm>
#include <map>

#include "local/agent.hpp"
#include "local/pipe.hpp"
#include "local/privsep.hpp"
#include "util/strings.hpp"

namespace postern::local {
namespace {

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

void Agent::local_recipient(Job& job, const Address& a) {
    Expander x(resolver_, {.delimiters = p_.recipient_delimiter});
    Plan plan = x.expand(job.rcpt.address, a.local, a.domain, job.req.sender);
    for (auto& f : plan.failures) job.finals.push_back({f.address, {f.status}});
    std::vector<const Target*> forwards;
    for (auto& t : plan.targets) {
        if (t.kind == Target::Kind::Forward) forwards.push_back(&t);
        else job.finals.push_back({t.address, execute(job, t)});
    }
    if (!forwards.empty()) forward(job, forwards);
}

Agent::Slot Agent::execute(Job& job, const Target& t) {
    const std::string key = target_key(t);
    if (auto it = done_.find(key); it != done_.end()) return it->second;
    Slot s = t.kind == Target::Kind::Mailbox ? mailbox(job, t.as)
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
        auto id = resubmit(queue_, job.req, job.rcpt, sender, addresses, job.rcpt.address, job.msg, wall_clock_us());
        Slot s{id ? Status::sent("forwarded as " + *id) : deferral(id.error())};
        queued = queued || id.has_value();
        for (const Target* t : list) {
            job.finals.push_back({t->address, s});
            done_.emplace(target_key(*t), s);
        }
    }
    if (queued) wake_qmgr(queue_.queue_dir);
}

Agent::Slot Agent::mailbox(Job& job, const privs::UserInfo& u) {
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

Agent::Slot Agent::file(Job& job, const Target& t) {
    return store(job, t.as.uid, t.as.gid, t.text, AnyOwner, true, "file: " + t.text);
}

Agent::Slot Agent::store(Job& job, uid_t uid, gid_t gid, const std::string& path, uid_t owner, bool may_fail_dotlock,
                         const std::string& what) {
    const Message& msg = job.msg;
    const std::string& headers = job.headers;
    if (!path.empty() && path.back() == '/') {
        // A Maildir: written later, with the batch's other copies for it.
        stores_.push_back({uid, gid, path, what, &msg, headers});
        return {Status{}, stores_.size() - 1};
    }
    write_stores_before_this();
    const std::string from = from_line(job.req.sender, wall_clock_us());
    MboxOptions o = mbox_;
    o.dotlock_may_fail = may_fail_dotlock;
    o.size_hint = msg.size() + headers.size() + from.size();
    return {run_status_as(uid, gid, p_.command_time_limit, {msg.fd()}, [&]() -> Status {
        return append_mbox(path, owner, o, from, [&](const Sink& s) { return msg.stream_lf(headers, true, s); }, what);
    })};
}

void Agent::write_stores_before_this() {
    if (std::max(stores_written_, request_stores_) < stores_.size()) write_stores();
}

Agent::Slot Agent::command(Job& job, const Target& t) {
    write_stores_before_this();
    CommandSpec c;
    c.command = t.text;
    c.uid = t.as.uid;
    c.gid = t.as.gid;
    c.cwd = t.as.home.empty() ? "/" : t.as.home;
    c.env = command_env(job, t);
    c.shell = p_.local_command_shell;
    c.time_limit = p_.command_time_limit;
    return {run_command(c, [&](const Sink& s) { return job.msg.stream_lf(job.headers, false, s); })};
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
    auto finish = [&](Slot s) { job.finals.push_back({address, std::move(s)}); };
    const std::string local = util::to_lower(a.local);
    const LocalPart part = split_extension(local, p_.recipient_delimiter);
    std::vector<std::string> keys{local + "@" + a.domain};
    if (!part.extension.empty()) keys.push_back(part.user + "@" + a.domain);
    keys.push_back("@" + a.domain);
    std::optional<std::string> rel;
    for (auto& k : keys) {
        auto v = virtual_mailboxes_.lookup(k);
        if (!v) return finish({deferral(v.error())});
        if (*v) {
            rel = std::string(util::trim(**v));
            break;
        }
    }
    if (!rel) return finish({Status::bounced("5.1.1", "unknown user: \"" + util::printable(address) + "\"")});
    if (p_.virtual_mailbox_base.empty()) return finish({Status::deferred("4.3.5", "virtual_mailbox_base is not set")});
    if (rel->empty() || has_dotdot(*rel))
        return finish({Status::deferred("4.3.5", "virtual_mailbox_maps: bad mailbox path for " + address)});
    auto uid = virtual_uids_.lookup(keys);
    auto gid = virtual_gids_.lookup(keys);
    if (!uid) return finish({deferral(uid.error(), "4.3.5")});
    if (!gid) return finish({deferral(gid.error(), "4.3.5")});
    if (!*uid || !*gid) return finish({Status::deferred("4.3.5", "no virtual_uid_maps/virtual_gid_maps entry for " + address)});
    std::string base = p_.virtual_mailbox_base;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    const std::string path = base + "/" + (rel->front() == '/' ? rel->substr(1) : *rel);
    const std::string key = "virtual:" + path;
    if (auto it = done_.find(key); it != done_.end()) return finish(it->second);
    Slot s = store(job, **uid, **gid, path, **uid, false, path.back() == '/' ? "maildir" : "mailbox");
    done_.emplace(key, s);
    finish(std::move(s));
}

}  // namespace postern::local
