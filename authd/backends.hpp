// NAME
//   authd/backends.hpp - where passwords and users are looked up: PAM, virtual table
// PURPOSE
//   Backend is what the dispatcher asks: verify a password, or look a user
//   up. Backends is the real one, configured by auth_backends (a list of
//   "pam" and "virtual"): a name with '@' is looked up in the virtual user
//   table first (virtual_user_database; if it is not there, PAM is asked
//   when enabled), any other name goes to PAM. PAM conversations and passwd
//   lookups run on a pool of auth_pam_concurrency threads; virtual hashes
//   (yescrypt, deliberately slow) on a second pool; table lookups on the
//   loop. Not the throttling (authd/limiter.hpp), not the sockets
//   (authd/server.hpp).
// SYNOPSIS
//   Backends b(base, params);                       // log::fatal on a bad auth_backends
//   b.verify(std::move(req), [](Verdict v) {...});  // v.user is set when v.outcome is Ok
//   b.lookup(std::move(req), [](Verdict v) {...});
// ERRORS
//   Callbacks run on the loop thread, exactly once, possibly inside the call
//   (a table error, a full queue). Verdicts: Ok; Fail (unknown_user,
//   password_mismatch, account_disabled); TempFail (backend_failure: a table
//   or PAM failed, the queue is full, the user's ids cannot be found).
// SECURITY
//   The password is moved into a Secret and wiped after the check. An empty
//   password is always wrong. An unknown virtual user still costs one hash
//   check (against a dummy hash), so timing does not tell which addresses
//   exist. uid 0 (root) is refused (account_disabled): no mail session may
//   run as root.
// SEE ALSO
//   authd/pam_check.hpp, authd/accounts.hpp, authd/worker_pool.hpp
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "auth/proto.hpp"
#include "authd/accounts.hpp"
#include "authd/verdict.hpp"
#include "authd/worker_pool.hpp"
#include "config/config.hpp"
#include "event/event.hpp"

namespace postern::authd {

class Backend {
public:
    using Done = std::function<void(Verdict)>;
    virtual ~Backend() = default;
    virtual void verify(auth::VerifyRequest req, Done done) = 0;
    virtual void lookup(auth::LookupRequest req, Done done) = 0;
};

// Waiting jobs per pool; beyond that a request gets tempfail at once.
inline constexpr std::size_t MaxQueuedChecks = 1000;

struct BackendSettings {
    bool pam = false, virtual_users = false;
    std::string pam_service;
    int pam_threads = 4;
    MailboxSettings mailbox;
    // auth_backends and the rest of main.cf; Error::config for an unknown or
    // missing backend name.
    static Result<BackendSettings> from(const config::Params& p);
};

class Backends : public Backend {
public:
    Backends(event::Base& base, const config::Params& p, BackendSettings s);
    void verify(auth::VerifyRequest req, Done done) override;
    void lookup(auth::LookupRequest req, Done done) override;

private:
    void verify_pam(auth::VerifyRequest& req, Done& done);
    void verify_virtual(const auth::VirtualUser& u, auth::VerifyRequest& req, Done& done);
    void unknown_virtual(auth::VerifyRequest& req, Done& done);
    void submit(WorkerPool& pool, WorkerPool::Job job, Done& done);

    BackendSettings s_;
    std::unique_ptr<VirtualDirectory> virtual_;  // when virtual_users
    std::string dummy_hash_;  // for unknown virtual users
    std::unique_ptr<WorkerPool> pam_pool_;  // when pam
    std::unique_ptr<WorkerPool> hash_pool_;
};

}  // namespace postern::authd
