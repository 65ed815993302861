// NAME
//   authd/verdict.hpp - what a password check or user lookup came to
// PURPOSE
//   The result a backend (PAM, the virtual table, getpwnam) hands the
//   dispatcher, which turns it into an auth::Reply and a log line. Not the
//   wire format (auth/proto.hpp).
// SYNOPSIS
//   return Verdict::ok(info);
//   return Verdict::fail("password_mismatch");
//   return Verdict::tempfail("pam_authenticate: Authentication service cannot retrieve authentication info");
// ERRORS
//   None: a plain value.
// SECURITY
//   detail goes to the log: never put a password in it.
// SEE ALSO
//   authd/dispatcher.hpp, auth/proto.hpp
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "auth/proto.hpp"

namespace postern::authd {

struct Verdict {
    auth::Outcome outcome = auth::Outcome::TempFail;
    auth::ReasonCode reason = "backend_failure";
    std::optional<auth::UserInfo> user;  // set exactly when outcome is Ok
    std::string detail;                  // for the log, may be empty

    static Verdict ok(auth::UserInfo u) { return {auth::Outcome::Ok, "ok", std::move(u), ""}; }
    static Verdict fail(std::string reason, std::string detail = "") {
        return {auth::Outcome::Fail, std::move(reason), std::nullopt, std::move(detail)};
    }
    static Verdict tempfail(std::string detail) {
        return {auth::Outcome::TempFail, "backend_failure", std::nullopt, std::move(detail)};
    }
};

}  // namespace postern::authd
