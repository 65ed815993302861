// authd/pam_check.cpp - pam_authenticate + pam_acct_mgmt with a password-only conversation.
#include "authd/pam_check.hpp"

#include <security/pam_appl.h>

#include <algorithm>
#include <cstddef>

#include "authd/handles.hpp"

namespace postern::authd {
namespace {

struct Conversation {
    const std::string* user;
    const Secret* password;
};

// The daemon answers failures after its own delay (limiter): libpam must not
// sleep on a worker thread as well.
void no_fail_delay(int, unsigned, void*) {}

int converse(int n, const pam_message** msg, pam_response** resp, void* data) {
    if (n <= 0 || n > PAM_MAX_NUM_MSG || msg == nullptr || resp == nullptr || data == nullptr) return PAM_CONV_ERR;
    auto* conv = static_cast<const Conversation*>(data);
    PamReplies replies(n);
    if (!replies.ok()) return PAM_BUF_ERR;
    for (int i = 0; i < n; ++i) {
        auto idx = static_cast<std::size_t>(i);
        switch (msg[i]->msg_style) {
        case PAM_PROMPT_ECHO_OFF:
            if (!replies.set(idx, conv->password->view())) return PAM_BUF_ERR;
            break;
        case PAM_PROMPT_ECHO_ON:
            if (!replies.set(idx, *conv->user)) return PAM_BUF_ERR;
            break;
        case PAM_ERROR_MSG:
        case PAM_TEXT_INFO:
            break;  // nobody to show it to
        default:
            return PAM_CONV_ERR;  // a module that wants more than a password
        }
    }
    *resp = replies.release();
    return PAM_SUCCESS;
}

bool plain_name(const std::string& s) {
    return std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

PamResult result(auth::Outcome o, std::string reason, std::string detail) {
    PamResult r;
    r.outcome = o;
    r.reason = std::move(reason);
    r.detail = std::move(detail);
    return r;
}

std::string pam_text(pam_handle_t* h, const char* call, int rc) {
    const char* s = ::pam_strerror(h, rc);
    return std::string(call) + ": " + (s ? s : "unknown error");
}

}  // namespace

PamResult pam_check(const std::string& service, const std::string& user, const Secret& password,
                    const std::string& rhost) {
    using auth::Outcome;
    if (!plain_name(user)) return result(Outcome::Fail, "unknown_user", "control character in the user name");
    Conversation data{&user, &password};
    const pam_conv conv{&converse, &data};
    PamSession s;
    s.status = ::pam_start(service.c_str(), user.c_str(), &conv, s.out());
    if (s.status != PAM_SUCCESS || s.get() == nullptr)
        return result(Outcome::TempFail, "backend_failure", pam_text(s.get(), "pam_start", s.status));
    pam_handle_t* h = s.get();
    if (!rhost.empty()) {
        s.status = ::pam_set_item(h, PAM_RHOST, rhost.c_str());
        if (s.status != PAM_SUCCESS) return result(Outcome::TempFail, "backend_failure", pam_text(h, "pam_set_item", s.status));
    }
    // Note: a function pointer as const void* is what PAM_FAIL_DELAY takes.
    s.status = ::pam_set_item(h, PAM_FAIL_DELAY, reinterpret_cast<const void*>(&no_fail_delay));
    if (s.status != PAM_SUCCESS) return result(Outcome::TempFail, "backend_failure", pam_text(h, "pam_set_item", s.status));

    s.status = ::pam_authenticate(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    switch (s.status) {
    case PAM_SUCCESS:
        break;
    case PAM_USER_UNKNOWN:
        return result(Outcome::Fail, "unknown_user", pam_text(h, "pam_authenticate", s.status));
    case PAM_AUTH_ERR:
    case PAM_CRED_INSUFFICIENT:
    case PAM_MAXTRIES:
    case PAM_PERM_DENIED:
        return result(Outcome::Fail, "password_mismatch", pam_text(h, "pam_authenticate", s.status));
    case PAM_ACCT_EXPIRED:
    case PAM_NEW_AUTHTOK_REQD:
        return result(Outcome::Fail, "account_disabled", pam_text(h, "pam_authenticate", s.status));
    default:
        return result(Outcome::TempFail, "backend_failure", pam_text(h, "pam_authenticate", s.status));
    }

    s.status = ::pam_acct_mgmt(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    switch (s.status) {
    case PAM_SUCCESS:
        break;
    case PAM_USER_UNKNOWN:
    case PAM_ACCT_EXPIRED:
    case PAM_NEW_AUTHTOK_REQD:
    case PAM_PERM_DENIED:
    case PAM_AUTH_ERR:
        return result(Outcome::Fail, "account_disabled", pam_text(h, "pam_acct_mgmt", s.status));
    default:
        return result(Outcome::TempFail, "backend_failure", pam_text(h, "pam_acct_mgmt", s.status));
    }

    PamResult ok = result(Outcome::Ok, "ok", "");
    const void* item = nullptr;
    if (::pam_get_item(h, PAM_USER, &item) == PAM_SUCCESS && item != nullptr)
        ok.user = static_cast<const char*>(item);
    if (ok.user.empty()) ok.user = user;
    return ok;
}

}  // namespace postern::authd
