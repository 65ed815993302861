// auth/proto.cpp - AuthPasswordVerify / AuthUserLookup and their replies over ipc::AttrList.
#include "auth/proto.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <vector>

#include "auth/sasl.hpp"
#include "ipc/attrs.hpp"
#include "util/assert.hpp"
#include "util/strings.hpp"

namespace postern::auth {
namespace {

namespace attr = ipc::attr;

constexpr std::string_view KindSystem = "system", KindVirtual = "virtual";
// Largest uid/gid accepted: (uid_t)-1 means "no change" to chown(2) and is never a user.
constexpr std::uint64_t MaxId = 0xfffffffeULL;

std::string quoted(std::string_view s) { return "\"" + util::printable(s, 80) + "\""; }

Error bad(std::string_view what, std::string_view name, std::string_view why) {
    return Error::protocol(std::string(what) + ": attribute " + std::string(name) + ": " + std::string(why));
}

// Receivers reject repeated attributes (STYLE E4). Frames from ipc::Decoder
// never repeat a name, but an AttrList built in memory may.
Result<void> no_duplicates(const ipc::AttrList& a, std::string_view what) {
    std::vector<std::string_view> names;
    names.reserve(a.size());
    for (const auto& x : a) names.push_back(x.name);
    std::sort(names.begin(), names.end());
    auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end()) return Error::protocol(std::string(what) + ": repeated attribute " + quoted(*dup));
    return {};
}

// Canonical unsigned decimal: digits only, no leading zero (but "0"), <= max.
std::optional<std::uint64_t> parse_decimal(std::string_view s, std::uint64_t max) {
    if (s.empty() || s.size() > 20) return std::nullopt;
    if (s.size() > 1 && s.front() == '0') return std::nullopt;
    for (char c : s)
        if (c < '0' || c > '9') return std::nullopt;
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || v > max) return std::nullopt;
    return v;
}

// The caller has run ipc::expect, so required attributes are present.
const std::string& get(const ipc::AttrList& a, std::string_view name) {
    const std::string* v = a.find(name);
    POSTERN_ASSERT(v != nullptr);
    return *v;
}

Result<std::uint64_t> get_number(const ipc::AttrList& a, std::string_view name, std::uint64_t max,
                                 std::string_view what) {
    const std::string& v = get(a, name);
    auto n = parse_decimal(v, max);
    if (!n) return bad(what, name, "bad number " + quoted(v));
    return *n;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Printable ASCII without space, min..max bytes.
bool is_token(std::string_view s, std::size_t min, std::size_t max) {
    if (s.size() < min || s.size() > max) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

bool is_reason(std::string_view s) {
    if (s.size() > MaxTokenLength) return false;
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

bool is_user(std::string_view s) { return !s.empty() && s.size() <= sasl::MaxUserLength && !has_nul(s); }

bool is_path(std::string_view s, bool allow_empty) {
    if (s.empty()) return allow_empty;
    return s.size() <= MaxPathLength && s.front() == '/' && !has_nul(s);
}

Result<VerifyRequest> decode_verify(const ipc::AttrList& a) {
    constexpr std::string_view what = "AuthPasswordVerify";
    if (auto r = ipc::expect(a, {attr::Request, attr::Id, attr::Service, attr::Mechanism, attr::User,
                                 attr::Password, attr::ClientAddr, attr::ClientName, attr::Tls});
        !r)
        return Error::protocol(std::string(what) + ": " + r.error().text);
    VerifyRequest v;
    auto id = get_number(a, attr::Id, std::numeric_limits<std::uint64_t>::max(), what);
    if (!id) return id.error();
    v.id = *id;
    v.service = get(a, attr::Service);
    if (!is_token(v.service, 1, MaxTokenLength)) return bad(what, attr::Service, "bad service name");
    v.mechanism = get(a, attr::Mechanism);
    if (!is_token(v.mechanism, 1, MaxTokenLength)) return bad(what, attr::Mechanism, "bad mechanism name");
    // Note: user and password are untrusted and the password is a secret, so
    // neither is quoted into the error text.
    v.user = get(a, attr::User);
    if (!is_user(v.user)) return bad(what, attr::User, "empty, too long or with a NUL byte");
    const std::string& pw = get(a, attr::Password);
    if (pw.size() > sasl::MaxPasswordLength || has_nul(pw))
        return bad(what, attr::Password, "too long or with a NUL byte");
    v.password = pw;
    v.client_addr = get(a, attr::ClientAddr);
    if (!is_token(v.client_addr, 0, MaxTokenLength)) return bad(what, attr::ClientAddr, "bad address");
    v.client_name = get(a, attr::ClientName);
    if (!is_token(v.client_name, 0, MaxHostLength)) return bad(what, attr::ClientName, "bad host name");
    const std::string& tls = get(a, attr::Tls);
    if (tls != "0" && tls != "1") return bad(what, attr::Tls, "want 0 or 1, got " + quoted(tls));
    v.tls = tls == "1";
    return v;
}

Result<LookupRequest> decode_lookup(const ipc::AttrList& a) {
    constexpr std::string_view what = "AuthUserLookup";
    if (auto r = ipc::expect(a, {attr::Request, attr::Id, attr::User}); !r)
        return Error::protocol(std::string(what) + ": " + r.error().text);
    LookupRequest l;
    auto id = get_number(a, attr::Id, std::numeric_limits<std::uint64_t>::max(), what);
    if (!id) return id.error();
    l.id = *id;
    l.user = get(a, attr::User);
    if (!is_user(l.user)) return bad(what, attr::User, "empty, too long or with a NUL byte");
    return l;
}

std::optional<Outcome> parse_outcome(std::string_view s) {
    for (Outcome o : {Outcome::Ok, Outcome::Fail, Outcome::Locked, Outcome::TempFail})
        if (s == outcome_name(o)) return o;
    return std::nullopt;
}

Result<UserInfo> decode_user(const ipc::AttrList& a, std::string_view what) {
    UserInfo u;
    const std::string& kind = get(a, attr::Kind);
    if (kind == KindSystem) u.kind = UserInfo::Kind::System;
    else if (kind == KindVirtual) u.kind = UserInfo::Kind::Virtual;
    else return bad(what, attr::Kind, "want system or virtual, got " + quoted(kind));
    u.name = get(a, attr::User);
    if (!is_user(u.name)) return bad(what, attr::User, "empty, too long or with a NUL byte");
    auto uid = get_number(a, attr::Uid, MaxId, what);
    if (!uid) return uid.error();
    auto gid = get_number(a, attr::Gid, MaxId, what);
    if (!gid) return gid.error();
    u.uid = static_cast<uid_t>(*uid);
    u.gid = static_cast<gid_t>(*gid);
    u.home = get(a, attr::Home);
    if (!is_path(u.home, true)) return bad(what, attr::Home, "not empty or an absolute path of at most 4096 bytes");
    u.mailbox = get(a, attr::Mailbox);
    if (!is_path(u.mailbox, false)) return bad(what, attr::Mailbox, "not an absolute path of at most 4096 bytes");
    auto quota = get_number(a, attr::Quota, std::numeric_limits<std::uint64_t>::max(), what);
    if (!quota) return quota.error();
    u.quota = *quota;
    return u;
}

}  // namespace

std::string_view outcome_name(Outcome o) {
    switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::Fail: return "fail";
    case Outcome::Locked: return "locked";
    case Outcome::TempFail: return "tempfail";
    }
    return "tempfail";
}

ipc::AttrList encode(const VerifyRequest& r) {
    ipc::AttrList a;
    a.add(attr::Request, VerifyRequestName);
    a.add(attr::Id, std::to_string(r.id));
    a.add(attr::Service, r.service);
    a.add(attr::Mechanism, r.mechanism);
    a.add(attr::User, r.user);
    a.add(attr::Password, r.password);
    a.add(attr::ClientAddr, r.client_addr);
    a.add(attr::ClientName, r.client_name);
    a.add(attr::Tls, r.tls ? "1" : "0");
    return a;
}

ipc::AttrList encode(const LookupRequest& r) {
    ipc::AttrList a;
    a.add(attr::Request, LookupRequestName);
    a.add(attr::Id, std::to_string(r.id));
    a.add(attr::User, r.user);
    return a;
}

ipc::AttrList encode(const Reply& r) {
    POSTERN_ASSERT(r.user.has_value() == (r.outcome == Outcome::Ok));
    ipc::AttrList a;
    a.add(attr::Id, std::to_string(r.id));
    a.add(attr::Outcome, outcome_name(r.outcome));
    a.add(attr::Reason, r.reason);
    if (r.user) {
        const UserInfo& u = *r.user;
        a.add(attr::User, u.name);
        a.add(attr::Uid, std::to_string(static_cast<std::uint64_t>(u.uid)));
        a.add(attr::Gid, std::to_string(static_cast<std::uint64_t>(u.gid)));
        a.add(attr::Home, u.home);
        a.add(attr::Mailbox, u.mailbox);
        a.add(attr::Quota, std::to_string(u.quota));
        a.add(attr::Kind, u.kind == UserInfo::Kind::Virtual ? KindVirtual : KindSystem);
    }
    return a;
}

Result<Request> decode_request(const ipc::AttrList& a) {
    if (auto r = no_duplicates(a, "auth request"); !r) return r.error();
    const std::string* name = a.find(attr::Request);
    if (name == nullptr) return Error::protocol("auth request: missing attribute \"request\"");
    if (*name == VerifyRequestName) {
        auto v = decode_verify(a);
        if (!v) return v.error();
        return Request(std::move(*v));
    }
    if (*name == LookupRequestName) {
        auto l = decode_lookup(a);
        if (!l) return l.error();
        return Request(std::move(*l));
    }
    return Error::protocol("auth request: unknown request " + quoted(*name));
}

Result<Reply> decode_reply(const ipc::AttrList& a) {
    constexpr std::string_view what = "auth reply";
    if (auto r = no_duplicates(a, what); !r) return r.error();
    const std::string* outcome = a.find(attr::Outcome);
    if (outcome == nullptr) return Error::protocol("auth reply: missing attribute \"outcome\"");
    auto o = parse_outcome(*outcome);
    if (!o) return bad(what, attr::Outcome, "unknown outcome " + quoted(*outcome));
    Result<void> schema = *o == Outcome::Ok
                              ? ipc::expect(a, {attr::Id, attr::Outcome, attr::Reason, attr::User, attr::Uid,
                                                attr::Gid, attr::Home, attr::Mailbox, attr::Quota, attr::Kind})
                              : ipc::expect(a, {attr::Id, attr::Outcome, attr::Reason});
    if (!schema) return Error::protocol(std::string(what) + " (" + *outcome + "): " + schema.error().text);
    Reply rep;
    rep.outcome = *o;
    auto id = get_number(a, attr::Id, std::numeric_limits<std::uint64_t>::max(), what);
    if (!id) return id.error();
    rep.id = *id;
    rep.reason = get(a, attr::Reason);
    if (!is_reason(rep.reason)) return bad(what, attr::Reason, "want at most 64 bytes of [a-z0-9_]");
    if (*o == Outcome::Ok) {
        auto u = decode_user(a, what);
        if (!u) return u.error();
        rep.user = std::move(*u);
    }
    return rep;
}

}  // namespace postern::auth
