// authd/dispatcher.cpp - lockout check, backend, failure accounting and delayed replies.
#include "authd/dispatcher.hpp"

#include "authd/secret.hpp"
#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::authd {
namespace {

auth::Reply make_reply(std::uint64_t id, Verdict v) {
    auth::Reply r;
    r.id = id;
    r.outcome = v.outcome;
    r.reason = std::move(v.reason);
    if (r.outcome == auth::Outcome::Ok) {
        r.user = std::move(v.user);
        if (!r.user) {  // a backend bug; never claim success without the user's details
            r.outcome = auth::Outcome::TempFail;
            r.reason = "backend_failure";
        }
    }
    return r;
}

std::string p(std::string_view s) { return util::printable(s, 100); }

const char* kind_name(const auth::UserInfo& u) { return u.kind == auth::UserInfo::Kind::Virtual ? "virtual" : "system"; }

}  // namespace

void Dispatcher::handle(auth::Request req, Send send) {
    if (auto* v = std::get_if<auth::VerifyRequest>(&req)) return verify(std::move(*v), std::move(send));
    lookup(std::move(std::get<auth::LookupRequest>(req)), std::move(send));
}

void Dispatcher::verify(auth::VerifyRequest req, Send send) {
    Who who{req.id, req.service, req.user, req.client_addr};
    if (limiter_.locked(who.client, who.user, now_())) {
        wipe(req.password);
        log::info("auth failed: service=%s user=%s rip=%s reason=locked", p(who.service).c_str(), p(who.user).c_str(),
                  p(who.client).c_str());
        auto reply = make_reply(who.id, Verdict{auth::Outcome::Locked, "locked", std::nullopt, ""});
        // A gentle tarpit: hammering a locked account costs the client time too.
        delayer_.after(limiter_.settings().failure_delay, [send = std::move(send), reply] { send(reply); });
        return;
    }
    backend_.verify(std::move(req), [this, who, send = std::move(send)](Verdict v) { verified(who, std::move(v), send); });
    wipe(req.password);  // what a move leaves behind
}

void Dispatcher::verified(const Who& who, Verdict v, const Send& send) {
    switch (v.outcome) {
    case auth::Outcome::Ok:
        limiter_.succeeded(who.client, who.user, now_());
        log::info("auth ok: service=%s user=%s rip=%s kind=%s", p(who.service).c_str(), p(who.user).c_str(),
                  p(who.client).c_str(), v.user ? kind_name(*v.user) : "?");
        send(make_reply(who.id, std::move(v)));
        return;
    case auth::Outcome::Fail:
    case auth::Outcome::Locked: {
        auto f = limiter_.failed(who.client, who.user, now_());
        log::info("auth failed: service=%s user=%s rip=%s reason=%s%s%s", p(who.service).c_str(), p(who.user).c_str(),
                  p(who.client).c_str(), p(v.reason).c_str(), v.detail.empty() ? "" : ": ",
                  p(v.detail).c_str());
        const long long secs = std::chrono::duration_cast<std::chrono::seconds>(limiter_.settings().lockout_time).count();
        if (f.client_locked)
            log::warn("auth: client %s locked out for %llds after %lld failures", p(who.client).c_str(), secs,
                      limiter_.client_failures(who.client, now_()));
        if (f.user_locked)
            log::warn("auth: user %s locked out for %llds after %lld failures", p(who.user).c_str(), secs,
                      limiter_.user_failures(who.user, now_()));
        delayer_.after(f.delay, [send, reply = make_reply(who.id, std::move(v))] { send(reply); });
        return;
    }
    case auth::Outcome::TempFail:
        log::warn("auth tempfail: service=%s user=%s rip=%s: %s", p(who.service).c_str(), p(who.user).c_str(),
                  p(who.client).c_str(), v.detail.empty() ? "backend failure" : p(v.detail).c_str());
        send(make_reply(who.id, std::move(v)));
        return;
    }
}

void Dispatcher::lookup(auth::LookupRequest req, Send send) {
    std::uint64_t id = req.id;
    std::string user = req.user;
    backend_.lookup(std::move(req), [id, user, send = std::move(send)](Verdict v) {
        if (v.outcome == auth::Outcome::TempFail)
            log::warn("auth lookup tempfail: user=%s: %s", p(user).c_str(),
                      v.detail.empty() ? "backend failure" : p(v.detail).c_str());
        else
            log::debug("auth lookup: user=%s outcome=%s", p(user).c_str(), std::string(auth::outcome_name(v.outcome)).c_str());
        send(make_reply(id, std::move(v)));
    });
}

}  // namespace postern::authd
