// NAME
//   authd/pam_check.hpp - one PAM conversation: is this the user's password?
// PURPOSE
//   Runs pam_start / pam_authenticate / pam_acct_mgmt / pam_end for the
//   service auth_pam_service (/etc/pam.d/NAME) with a conversation function
//   that answers echo-off prompts with the password and echo-on prompts
//   with the user name, sets PAM_RHOST to the client address, and passes
//   PAM_SILENT. Blocking: it runs on a worker thread (authd/worker_pool.hpp),
//   never on the event loop. Not the lookup of uid and home (the caller does
//   getpwnam_r on the name PAM returns), and not failure delays: libpam's own
//   delay (pam_fail_delay) is switched off, the daemon delays failures on its
//   timers instead (authd/limiter.hpp).
// SYNOPSIS
//   PamResult r = pam_check("postern", "alice", password, "192.0.2.1");
//   if (r.outcome == auth::Outcome::Ok) use(r.user);   // PAM_USER after the conversation
// ERRORS
//   Outcome::Fail with reason password_mismatch (PAM_AUTH_ERR and the like),
//   unknown_user (PAM_USER_UNKNOWN) or account_disabled (pam_acct_mgmt
//   refused: expired, locked, password must be changed). Outcome::TempFail
//   (backend_failure) for PAM_AUTHINFO_UNAVAIL, a missing service file, a
//   conversation error, and whatever else is not a verdict about the
//   password. detail has pam_strerror's text for the log.
// SECURITY
//   Thread-safe as far as the PAM modules are (pam_unix uses the _r
//   functions). The password is copied only into PAM's reply buffers, which
//   PAM wipes; it is never logged. User names with control characters never
//   reach PAM.
// SEE ALSO
//   pam(3), pam_conv(3), etc/pam.d/postern
#pragma once

#include <string>

#include "auth/proto.hpp"
#include "authd/secret.hpp"

namespace postern::authd {

struct PamResult {
    auth::Outcome outcome = auth::Outcome::TempFail;
    auth::ReasonCode reason = "backend_failure";
    std::string user;    // PAM_USER after a success (a module may map the name)
    std::string detail;  // for the log
};

PamResult pam_check(const std::string& service, const std::string& user, const Secret& password,
                    const std::string& rhost);

}  // namespace postern::authd
