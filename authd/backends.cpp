// authd/backends.cpp - PAM and virtual-table checks, routed by the shape of the name.
#include "authd/backends.hpp"

#include <sysexits.h>

#include <algorithm>
#include <thread>

#include "authd/pam_check.hpp"
#include "authd/secret.hpp"
#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::authd {
namespace {

// getpwnam_r on a worker thread (NSS may block): the verdict for a system
// user. after_pam: PAM has accepted the name, so "not in passwd" is a
// configuration problem, not a wrong login.
Verdict system_verdict(const std::string& name, const MailboxSettings& mb, bool after_pam) {
    auto pw = privs::lookup_user(name);
    if (!pw) return Verdict::tempfail(pw.error().text);
    if (!*pw) {
        if (after_pam)
            return Verdict::tempfail("PAM accepted user " + util::printable(name) +
                                     ", but the passwd database does not know it");
        return Verdict::fail("unknown_user");
    }
    if ((*pw)->uid == 0) return Verdict::fail("account_disabled", "uid 0 may not log in");
    return Verdict::ok(system_user_info(**pw, mb));
}

bool has_at(std::string_view user) { return user.find('@') != std::string_view::npos; }

}  // namespace

Result<BackendSettings> BackendSettings::from(const config::Params& p) {
    BackendSettings s;
    auto names = util::split_list(p.auth_backends);
    if (names.empty()) return Error::config("auth_backends is empty: list pam, virtual or both");
    for (auto& n : names) {
        if (n == "pam") s.pam = true;
        else if (n == "virtual") s.virtual_users = true;
        else return Error::config("auth_backends: unknown backend \"" + util::printable(n, 40) + "\" (want pam, virtual)");
    }
    s.pam_service = p.auth_pam_service;
    if (s.pam && s.pam_service.empty()) return Error::config("auth_pam_service is empty");
    s.pam_threads = static_cast<int>(std::clamp<long long>(p.auth_pam_concurrency, 1, 64));
    s.mailbox = MailboxSettings::from(p);
    return s;
}

Backends::Backends(event::Base& base, const config::Params& p, BackendSettings s) : s_(std::move(s)) {
    if (s_.pam) pam_pool_ = std::make_unique<WorkerPool>(base, s_.pam_threads, MaxQueuedChecks);
    if (s_.virtual_users) {
        virtual_ = std::make_unique<VirtualDirectory>(p);
        if (!virtual_->open_error().empty())
            log::warn("%s; virtual users get tempfail until it can be read", virtual_->open_error().c_str());
    }
    // Hashes are CPU work: one thread per core, a few at most.
    int cores = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
    hash_pool_ = std::make_unique<WorkerPool>(base, cores, MaxQueuedChecks);
    // Note: the same hash function and cost as a real entry, so an unknown
    // address takes as long as a wrong password.
    if (auto h = auth::hash_password("postern-dummy-password"); h) dummy_hash_ = *h;
}

void Backends::submit(WorkerPool& pool, WorkerPool::Job job, Done& done) {
    if (pool.submit(std::move(job), done)) return;
    done(Verdict::tempfail("too many checks waiting (" + std::to_string(MaxQueuedChecks) + ")"));
}

void Backends::verify(auth::VerifyRequest req, Done done) {
    if (req.password.empty()) {
        done(Verdict::fail("password_mismatch", "empty password"));
        return;
    }
    if (s_.virtual_users && has_at(req.user)) {
        auto u = virtual_->find(req.user);
        if (!u) {
            wipe(req.password);
            done(Verdict::tempfail(u.error().text));
            return;
        }
        if (*u) return verify_virtual(**u, req, done);
    }
    if (s_.pam) return verify_pam(req, done);
    unknown_virtual(req, done);
}

void Backends::verify_pam(auth::VerifyRequest& req, Done& done) {
    submit(*pam_pool_,
           [service = s_.pam_service, user = req.user, pw = Secret(std::move(req.password)), rhost = req.client_addr,
            mb = s_.mailbox]() -> Verdict {
               PamResult r = pam_check(service, user, pw, rhost);
               if (r.outcome != auth::Outcome::Ok) return Verdict{r.outcome, r.reason, std::nullopt, r.detail};
               return system_verdict(r.user, mb, true);
           },
           done);
}

void Backends::verify_virtual(const auth::VirtualUser& u, auth::VerifyRequest& req, Done& done) {
    // Table lookups on the loop (maps are not thread-safe); only the hash goes to a thread.
    Result<auth::UserInfo> info = virtual_->info(u);
    submit(*hash_pool_,
           [pw = Secret(std::move(req.password)), hash = u.hash, info = std::move(info)]() -> Verdict {
               if (!auth::verify_password(pw.view(), hash)) return Verdict::fail("password_mismatch");
               if (!info) return Verdict::tempfail(info.error().text);
               return Verdict::ok(*info);
           },
           done);
}

void Backends::unknown_virtual(auth::VerifyRequest& req, Done& done) {
    submit(*hash_pool_,
           [pw = Secret(std::move(req.password)), hash = dummy_hash_]() -> Verdict {
               (void)auth::verify_password(pw.view(), hash);
               return Verdict::fail("unknown_user");
           },
           done);
}

void Backends::lookup(auth::LookupRequest req, Done done) {
    if (s_.virtual_users && has_at(req.user)) {
        auto u = virtual_->find(req.user);
        if (!u) return done(Verdict::tempfail(u.error().text));
        if (*u) {
            auto info = virtual_->info(**u);
            if (!info) return done(Verdict::tempfail(info.error().text));
            return done(Verdict::ok(std::move(*info)));
        }
    }
    if (!s_.pam) return done(Verdict::fail("unknown_user"));
    submit(*pam_pool_, [user = req.user, mb = s_.mailbox]() -> Verdict { return system_verdict(user, mb, false); },
           done);
}

}  // namespace postern::authd
