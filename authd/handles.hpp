// NAME
//   authd/handles.hpp - owners for the PAM library's handles and memory
// PURPOSE
//   PamSession owns a pam_handle_t and ends it with the status of the last
//   call (pam_end needs it, so a plain unique_ptr deleter will not do, STYLE
//   R1). PamReplies builds the response array a PAM conversation function
//   returns: PAM takes it over and frees it with free(3), so it must come
//   from calloc(3)/strdup(3), which only this file uses. Not the PAM logic
//   (authd/pam_check.hpp).
// SYNOPSIS
//   PamSession s;  s.status = pam_start(service, user, &conv, s.out());
//   PamReplies r(n);  if (!r.set(i, password)) return PAM_BUF_ERR;  *resp = r.release();
// ERRORS
//   Allocation failure: PamReplies::ok()/set() return false (PAM_BUF_ERR).
// SECURITY
//   Replies that are not handed to PAM (a conversation that fails half-way)
//   are wiped before they are freed; PAM wipes the ones it takes.
// SEE ALSO
//   pam_start(3), pam_conv(3)
#pragma once

#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>

#include <cstddef>
#include <string_view>

namespace postern::authd {

class PamSession {
public:
    PamSession() = default;
    PamSession(const PamSession&) = delete;
    PamSession& operator=(const PamSession&) = delete;
    ~PamSession() {
        if (h_ != nullptr) ::pam_end(h_, status | PAM_DATA_SILENT);
    }
    pam_handle_t** out() noexcept { return &h_; }
    pam_handle_t* get() const noexcept { return h_; }

    int status = PAM_SUCCESS;  // the last call's, for pam_end

private:
    pam_handle_t* h_ = nullptr;
};

class PamReplies {
public:
    explicit PamReplies(int n)
        : n_(n > 0 ? static_cast<std::size_t>(n) : 0),
          r_(static_cast<pam_response*>(::calloc(n_ > 0 ? n_ : 1, sizeof(pam_response)))) {}
    PamReplies(const PamReplies&) = delete;
    PamReplies& operator=(const PamReplies&) = delete;
    ~PamReplies() {
        if (r_ == nullptr) return;
        for (std::size_t i = 0; i < n_; ++i) {
            if (r_[i].resp == nullptr) continue;
            ::explicit_bzero(r_[i].resp, ::strlen(r_[i].resp));
            ::free(r_[i].resp);
        }
        ::free(r_);
    }
    bool ok() const noexcept { return r_ != nullptr; }
    // A copy of text (which must not contain NUL) as reply i.
    bool set(std::size_t i, std::string_view text) noexcept {
        if (r_ == nullptr || i >= n_) return false;
        char* p = static_cast<char*>(::malloc(text.size() + 1));
        if (p == nullptr) return false;
        ::memcpy(p, text.data(), text.size());
        p[text.size()] = '\0';
        r_[i].resp = p;
        r_[i].resp_retcode = 0;
        return true;
    }
    pam_response* release() noexcept {
        pam_response* r = r_;
        r_ = nullptr;
        return r;
    }

private:
    std::size_t n_;
    pam_response* r_;
};

}  // namespace postern::authd
