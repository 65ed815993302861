// Unit tests for lib/auth: strict base64, SASL PLAIN/LOGIN, the auth daemon's
// messages, and the virtual user table (with lib/maps' whole-table functions).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "auth/proto.hpp"
#include "auth/sasl.hpp"
#include "auth/users.hpp"
#include "ipc/attrs.hpp"
#include "ipc/ipc.hpp"
#include "maps/maps.hpp"

using namespace postern;
using namespace std::literals;
using sasl::SaslServer;
using Kind = SaslServer::Step::Kind;
using Failure = SaslServer::Failure;

namespace {

// ---- helpers -------------------------------------------------------------------

class TempDir {
public:
    TempDir() {
        std::string tmpl = "/tmp/postern-auth-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path_ = tmpl;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(path_)) out.push_back(e.path().filename());
        std::sort(out.begin(), out.end());
        return out;
    }

private:
    std::string path_;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string joined(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
    return out;
}

mode_t mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

// Sets the umask for a scope.
class Umask {
public:
    explicit Umask(mode_t m) : old_(::umask(m)) {}
    ~Umask() { ::umask(old_); }
    Umask(const Umask&) = delete;
    Umask& operator=(const Umask&) = delete;

private:
    mode_t old_;
};

std::string b64(std::string_view s) { return sasl::base64_encode(s); }

std::string render(const Result<std::string>& r) { return r ? "ok: " + *r : "error: " + r.error().text; }

std::string step_text(const SaslServer::Step& s) {
    switch (s.kind) {
    case Kind::Challenge: return "challenge \"" + s.challenge + "\"";
    case Kind::Done: return "done";
    case Kind::Failed:
        switch (s.failure) {
        case Failure::None: return "failed (none)";
        case Failure::Aborted: return "failed (aborted)";
        case Failure::BadEncoding: return "failed (bad encoding)";
        case Failure::Malformed: return "failed (malformed)";
        }
    }
    return "?";
}

// A copy of a with attribute name set to value (appended when absent).
ipc::AttrList with(const ipc::AttrList& a, std::string_view name, std::string_view value) {
    ipc::AttrList out;
    bool done = false;
    for (const auto& x : a) {
        if (x.name == name) {
            out.add(x.name, value);
            done = true;
        } else {
            out.add(x.name, x.value);
        }
    }
    if (!done) out.add(name, value);
    return out;
}

ipc::AttrList without(const ipc::AttrList& a, std::string_view name) {
    ipc::AttrList out;
    for (const auto& x : a)
        if (x.name != name) out.add(x.name, x.value);
    return out;
}

// Through the wire format and back, as a peer would receive it.
ipc::AttrList over_wire(const ipc::AttrList& a) {
    ipc::Decoder d;
    REQUIRE(d.feed(ipc::encode(a)));
    auto m = d.next();
    REQUIRE(m);
    return *m;
}

auth::VerifyRequest sample_verify() {
    auth::VerifyRequest v;
    v.id = 42;
    v.service = "smtpd";
    v.mechanism = "PLAIN";
    v.user = "alice@example.org";
    v.password = "s3cret pass\xc3\xa9";
    v.client_addr = "192.0.2.1";
    v.client_name = "mail.example.net";
    v.tls = true;
    return v;
}

auth::UserInfo sample_user() {
    auth::UserInfo u;
    u.kind = auth::UserInfo::Kind::Virtual;
    u.name = "alice@example.org";
    u.uid = 5000;
    u.gid = 5001;
    u.home = "/var/mail/vhosts";
    u.mailbox = "/var/mail/vhosts/example.org/alice/";
    u.quota = 1000000;
    return u;
}

auth::Reply ok_reply() {
    auth::Reply r;
    r.id = 7;
    r.outcome = auth::Outcome::Ok;
    r.reason = "ok";
    r.user = sample_user();
    return r;
}

std::string error_of(const Result<auth::Request>& r) { return r ? "decoded" : r.error().text; }
std::string error_of(const Result<auth::Reply>& r) { return r ? "decoded" : r.error().text; }

}  // namespace

// ---- base64 ----------------------------------------------------------------------

TEST_CASE("base64: valid input") {
    struct Case { std::string in, want; };
    const Case cases[] = {
        {"", ""},
        {"Zg==", "f"},
        {"Zm8=", "fo"},
        {"Zm9v", "foo"},
        {"Zm9vYg==", "foob"},
        {"Zm9vYmE=", "fooba"},
        {"Zm9vYmFy", "foobar"},
        {"AA==", "\0"s},
        {"AGFsaWNlAHB3", "\0alice\0pw"s},
        {"+/+/", "\xfb\xff\xbf"},
    };
    for (const auto& c : cases) {
        auto r = sasl::base64_decode(c.in);
        INFO(c.in << ": got " << render(r));
        REQUIRE(r);
        CHECK(*r == c.want);
        CHECK(sasl::base64_encode(c.want) == c.in);
    }
}

TEST_CASE("base64: every byte value and length round-trips") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    for (std::size_t n = 0; n <= all.size(); n += (n < 10 ? 1 : 37)) {
        std::string s = all.substr(all.size() - n);
        auto r = sasl::base64_decode(sasl::base64_encode(s));
        INFO("length " << n);
        REQUIRE(r);
        CHECK(*r == s);
    }
}

TEST_CASE("base64: rejects everything that is not strict RFC 4648") {
    struct Case { std::string in, want; };
    const Case cases[] = {
        {"Zg=", "base64: length is not a multiple of 4"},
        {"Z", "base64: length is not a multiple of 4"},
        {"Zm9vY", "base64: length is not a multiple of 4"},
        {"Zm9v\r\n", "base64: length is not a multiple of 4"},
        {"Zm9 ", "base64: bad character"},
        {" Zm9", "base64: bad character"},
        {"Zm\t9", "base64: bad character"},
        {"Zm9\n", "base64: bad character"},
        {"Zm9-", "base64: bad character"},  // base64url
        {"Zm9_", "base64: bad character"},
        {"Zm9\xff", "base64: bad character"},
        {"Zm\0v"s, "base64: bad character"},
        {"====", "base64: bad character"},
        {"Z===", "base64: bad character"},
        {"Zg=A", "base64: bad padding"},
        {"Zg==Zm9v", "base64: bad padding"},
        {"Zm8=Zm9v", "base64: bad padding"},
        {"Zh==", "base64: non-zero pad bits"},
        {"Zm9=", "base64: non-zero pad bits"},
    };
    for (const auto& c : cases) {
        auto r = sasl::base64_decode(c.in);
        INFO("input \"" << c.in << "\": got " << render(r) << ", want " << c.want);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Protocol);
        CHECK(r.error().text == c.want);
    }
}

TEST_CASE("base64: the line limit") {
    std::string at_limit(sasl::MaxResponseLength, 'A');
    auto r = sasl::base64_decode(at_limit);
    REQUIRE(r);
    CHECK(r->size() == sasl::MaxResponseLength / 4 * 3);
    auto over = sasl::base64_decode(at_limit + "AAAA");
    REQUIRE_FALSE(over);
    CHECK(over.error().text == "base64: response too long (limit 12288)");
}

// ---- PLAIN message --------------------------------------------------------------

TEST_CASE("decode_plain") {
    const std::string u255(sasl::MaxUserLength, 'u'), p1024(sasl::MaxPasswordLength, 'p');
    struct Case { std::string in, want; };
    const Case cases[] = {
        {"\0alice\0pw"s, "authzid= user=alice password=pw"},
        {"alice\0alice\0pw"s, "authzid=alice user=alice password=pw"},
        {"\0"s + u255 + "\0"s + p1024, "authzid= user=" + u255 + " password=" + p1024},
        {"\0al ice\0p w"s, "authzid= user=al ice password=p w"},
        {"bob\0alice\0pw"s, "PLAIN: authorization identity differs from the user (proxy login is not offered)"},
        {"Alice\0alice\0pw"s, "PLAIN: authorization identity differs from the user (proxy login is not offered)"},
        {"alicepw", "PLAIN: want authzid NUL user NUL password"},
        {"alice\0pw"s, "PLAIN: want authzid NUL user NUL password"},
        {"", "PLAIN: want authzid NUL user NUL password"},
        {"\0\0pw"s, "PLAIN: empty user name"},
        {"\0alice\0"s, "PLAIN: empty password"},
        {"\0\0"s, "PLAIN: empty user name"},
        {"\0alice\0p\0w"s, "PLAIN: NUL byte in the password"},
        {"\0"s + u255 + "u\0pw"s, "PLAIN: user name too long (limit 255 bytes)"},
        {u255 + "u\0"s + u255 + "\0pw"s, "PLAIN: user name too long (limit 255 bytes)"},
        {"\0alice\0"s + p1024 + "p", "PLAIN: password too long (limit 1024 bytes)"},
    };
    for (const auto& c : cases) {
        auto r = sasl::decode_plain(c.in);
        std::string got = r ? "authzid=" + r->authzid + " user=" + r->user + " password=" + r->password
                            : r.error().text;
        INFO("got " << got << ", want " << c.want);
        CHECK(got == c.want);
        if (!r) CHECK(r.error().kind == Error::Kind::Protocol);
    }
}

TEST_CASE("parse_mechanism and mechanism_name") {
    CHECK(sasl::parse_mechanism("PLAIN") == sasl::Mechanism::Plain);
    CHECK(sasl::parse_mechanism("plain") == sasl::Mechanism::Plain);
    CHECK(sasl::parse_mechanism("LoGiN") == sasl::Mechanism::Login);
    CHECK_FALSE(sasl::parse_mechanism("CRAM-MD5"));
    CHECK_FALSE(sasl::parse_mechanism("PLAIN "));
    CHECK_FALSE(sasl::parse_mechanism(""));
    CHECK(sasl::mechanism_name(sasl::Mechanism::Plain) == "PLAIN");
    CHECK(sasl::mechanism_name(sasl::Mechanism::Login) == "LOGIN");
}

// ---- SaslServer -------------------------------------------------------------------

TEST_CASE("SaslServer PLAIN") {
    SECTION("without initial response: empty challenge, then the message") {
        SaslServer s(sasl::Mechanism::Plain);
        CHECK(s.mechanism() == sasl::Mechanism::Plain);
        auto st = s.start(std::nullopt);
        CHECK(step_text(st) == "challenge \"\"");
        st = s.next(b64("\0alice\0secret"s));
        REQUIRE(step_text(st) == "done");
        CHECK(s.credentials().user == "alice");
        CHECK(s.credentials().password == "secret");
        CHECK(s.credentials().authzid.empty());
        // Nothing more is expected after Done.
        CHECK(step_text(s.next(b64("\0x\0y"s))) == "failed (malformed)");
    }
    SECTION("with initial response") {
        SaslServer s(sasl::Mechanism::Plain);
        auto st = s.start(b64("alice\0alice\0secret"s));
        REQUIRE(step_text(st) == "done");
        CHECK(s.credentials().authzid == "alice");
        CHECK(s.credentials().user == "alice");
        CHECK(s.credentials().password == "secret");
    }
    struct Case { std::optional<std::string> initial; std::vector<std::string> lines; std::string want; };
    const Case cases[] = {
        {"=", {}, "failed (malformed)"},  // an empty message
        {"*", {}, "failed (aborted)"},
        {std::nullopt, {"*"}, "failed (aborted)"},
        {std::nullopt, {""}, "failed (malformed)"},
        {std::nullopt, {"AGFsaWNlAHB3 "}, "failed (bad encoding)"},
        {"AGFsaWNlAHB", {}, "failed (bad encoding)"},
        {std::nullopt, {b64("alice\0secret"s)}, "failed (malformed)"},
        {std::nullopt, {b64("bob\0alice\0secret"s)}, "failed (malformed)"},
        {std::nullopt, {b64("\0alice\0"s + std::string(sasl::MaxPasswordLength + 1, 'p'))}, "failed (malformed)"},
        {std::nullopt, {std::string(sasl::MaxResponseLength + 4, 'A')}, "failed (bad encoding)"},
        // Once failed, it stays failed with the first reason.
        {std::nullopt, {"*", b64("\0alice\0secret"s)}, "failed (aborted)"},
        {std::nullopt, {"!!!!", "*"}, "failed (bad encoding)"},
    };
    for (const auto& c : cases) {
        SaslServer s(sasl::Mechanism::Plain);
        auto st = s.start(c.initial ? std::optional<std::string_view>(*c.initial) : std::nullopt);
        for (const auto& l : c.lines) st = s.next(l);
        INFO("initial " << c.initial.value_or("(none)") << ", " << c.lines.size() << " lines: got "
                        << step_text(st) << ", want " << c.want);
        CHECK(step_text(st) == c.want);
        CHECK(s.credentials().password.empty());
    }
    SECTION("start twice") {
        SaslServer s(sasl::Mechanism::Plain);
        CHECK(step_text(s.start(std::nullopt)) == "challenge \"\"");
        CHECK(step_text(s.start(std::nullopt)) == "failed (malformed)");
    }
    SECTION("next before start") {
        SaslServer s(sasl::Mechanism::Plain);
        CHECK(step_text(s.next(b64("\0a\0b"s))) == "failed (malformed)");
    }
}

TEST_CASE("SaslServer LOGIN") {
    const std::string user_prompt = "VXNlcm5hbWU6", pass_prompt = "UGFzc3dvcmQ6";
    CHECK(b64("Username:") == user_prompt);
    CHECK(b64("Password:") == pass_prompt);
    SECTION("without initial response") {
        SaslServer s(sasl::Mechanism::Login);
        CHECK(step_text(s.start(std::nullopt)) == "challenge \"" + user_prompt + "\"");
        CHECK(step_text(s.next(b64("alice@example.org"))) == "challenge \"" + pass_prompt + "\"");
        REQUIRE(step_text(s.next(b64("pass word"))) == "done");
        CHECK(s.credentials().user == "alice@example.org");
        CHECK(s.credentials().password == "pass word");
        CHECK(s.credentials().authzid.empty());
    }
    SECTION("with initial response: the user name") {
        SaslServer s(sasl::Mechanism::Login);
        CHECK(step_text(s.start(b64("alice"))) == "challenge \"" + pass_prompt + "\"");
        REQUIRE(step_text(s.next(b64("pw"))) == "done");
        CHECK(s.credentials().user == "alice");
        CHECK(s.credentials().password == "pw");
    }
    struct Case { std::optional<std::string> initial; std::vector<std::string> lines; std::string want; };
    const Case cases[] = {
        {std::nullopt, {"*"}, "failed (aborted)"},
        {std::nullopt, {b64("alice"), "*"}, "failed (aborted)"},
        {"*", {}, "failed (aborted)"},
        {"=", {}, "failed (malformed)"},  // an empty user name
        {std::nullopt, {"YWxpY2U"}, "failed (bad encoding)"},
        {std::nullopt, {b64("alice"), "cHc=\r"}, "failed (bad encoding)"},
        {std::nullopt, {b64("alice"), "cHd="}, "failed (bad encoding)"},  // non-zero pad bits
        {std::nullopt, {""}, "failed (malformed)"},
        {std::nullopt, {b64("alice"), ""}, "failed (malformed)"},
        {std::nullopt, {b64("al\0ice"s)}, "failed (malformed)"},
        {std::nullopt, {b64("alice"), b64("p\0w"s)}, "failed (malformed)"},
        {std::nullopt, {b64(std::string(sasl::MaxUserLength + 1, 'u'))}, "failed (malformed)"},
        {std::nullopt, {b64(std::string(sasl::MaxUserLength, 'u')), b64("pw")}, "done"},
        {std::nullopt, {b64("alice"), b64(std::string(sasl::MaxPasswordLength + 1, 'p'))}, "failed (malformed)"},
        {std::nullopt, {b64("alice"), b64(std::string(sasl::MaxPasswordLength, 'p'))}, "done"},
        {std::nullopt, {b64("alice"), "*", b64("pw")}, "failed (aborted)"},
    };
    for (const auto& c : cases) {
        SaslServer s(sasl::Mechanism::Login);
        auto st = s.start(c.initial ? std::optional<std::string_view>(*c.initial) : std::nullopt);
        for (const auto& l : c.lines) st = s.next(l);
        INFO("initial " << c.initial.value_or("(none)") << ", " << c.lines.size() << " lines: got "
                        << step_text(st) << ", want " << c.want);
        CHECK(step_text(st) == c.want);
    }
}

// ---- proto ------------------------------------------------------------------------

TEST_CASE("proto: outcome names") {
    CHECK(auth::outcome_name(auth::Outcome::Ok) == "ok");
    CHECK(auth::outcome_name(auth::Outcome::Fail) == "fail");
    CHECK(auth::outcome_name(auth::Outcome::Locked) == "locked");
    CHECK(auth::outcome_name(auth::Outcome::TempFail) == "tempfail");
}

TEST_CASE("proto: VerifyRequest round trip") {
    auth::VerifyRequest v = sample_verify();
    ipc::AttrList a = auth::encode(v);
    CHECK(*a.find(ipc::attr::Request) == auth::VerifyRequestName);
    CHECK(*a.find(ipc::attr::Tls) == "1");
    for (bool tls : {true, false}) {
        v.tls = tls;
        v.client_addr = tls ? "2001:db8::1" : "";
        v.id = tls ? 18446744073709551615ULL : 0;
        auto r = auth::decode_request(over_wire(auth::encode(v)));
        INFO(error_of(r));
        REQUIRE(r);
        REQUIRE(std::holds_alternative<auth::VerifyRequest>(*r));
        const auto& got = std::get<auth::VerifyRequest>(*r);
        CHECK(got.id == v.id);
        CHECK(got.service == v.service);
        CHECK(got.mechanism == v.mechanism);
        CHECK(got.user == v.user);
        CHECK(got.password == v.password);
        CHECK(got.client_addr == v.client_addr);
        CHECK(got.client_name == v.client_name);
        CHECK(got.tls == v.tls);
    }
}

TEST_CASE("proto: LookupRequest round trip") {
    auth::LookupRequest l{12345, "bob"};
    ipc::AttrList a = auth::encode(l);
    CHECK(a.size() == 3);
    auto r = auth::decode_request(over_wire(a));
    INFO(error_of(r));
    REQUIRE(r);
    REQUIRE(std::holds_alternative<auth::LookupRequest>(*r));
    CHECK(std::get<auth::LookupRequest>(*r).id == 12345);
    CHECK(std::get<auth::LookupRequest>(*r).user == "bob");
}

TEST_CASE("proto: Reply round trips, every outcome") {
    SECTION("ok, virtual and system users") {
        for (auto kind : {auth::UserInfo::Kind::Virtual, auth::UserInfo::Kind::System}) {
            auth::Reply rep = ok_reply();
            rep.user->kind = kind;
            if (kind == auth::UserInfo::Kind::System) {
                rep.user->name = "alice";
                rep.user->home = "";
                rep.user->mailbox = "/var/mail/alice";
                rep.user->uid = 4294967294U;
                rep.user->gid = 0;
                rep.user->quota = 18446744073709551615ULL;
            }
            ipc::AttrList a = auth::encode(rep);
            CHECK(a.find(ipc::attr::Request) == nullptr);
            CHECK(*a.find(ipc::attr::Kind) == (kind == auth::UserInfo::Kind::Virtual ? "virtual" : "system"));
            auto r = auth::decode_reply(over_wire(a));
            INFO(error_of(r));
            REQUIRE(r);
            CHECK(r->id == rep.id);
            CHECK(r->outcome == auth::Outcome::Ok);
            CHECK(r->reason == "ok");
            REQUIRE(r->user);
            CHECK(r->user->kind == kind);
            CHECK(r->user->name == rep.user->name);
            CHECK(r->user->uid == rep.user->uid);
            CHECK(r->user->gid == rep.user->gid);
            CHECK(r->user->home == rep.user->home);
            CHECK(r->user->mailbox == rep.user->mailbox);
            CHECK(r->user->quota == rep.user->quota);
        }
    }
    SECTION("fail, locked, tempfail: no user") {
        struct Case { auth::Outcome o; std::string reason, name; };
        const Case cases[] = {{auth::Outcome::Fail, "password_mismatch", "fail"},
                              {auth::Outcome::Locked, "locked", "locked"},
                              {auth::Outcome::TempFail, "backend_failure", "tempfail"},
                              {auth::Outcome::Fail, "", "fail"}};
        for (const auto& c : cases) {
            auth::Reply rep;
            rep.id = 99;
            rep.outcome = c.o;
            rep.reason = c.reason;
            ipc::AttrList a = auth::encode(rep);
            CHECK(a.size() == 3);
            CHECK(*a.find(ipc::attr::Outcome) == c.name);
            auto r = auth::decode_reply(over_wire(a));
            INFO(c.name << ": " << error_of(r));
            REQUIRE(r);
            CHECK(r->id == 99);
            CHECK(r->outcome == c.o);
            CHECK(r->reason == c.reason);
            CHECK_FALSE(r->user);
        }
    }
}

TEST_CASE("proto: requests that are refused") {
    const ipc::AttrList v = auth::encode(sample_verify());
    const ipc::AttrList l = auth::encode(auth::LookupRequest{1, "bob"});
    namespace attr = ipc::attr;
    ipc::AttrList dup = v;
    dup.add(attr::Id, "43");
    ipc::AttrList dup_lookup = l;
    dup_lookup.add(attr::User, "eve");
    const std::string u255(sasl::MaxUserLength, 'u'), p1024(sasl::MaxPasswordLength, 'p');
    struct Case { std::string what; ipc::AttrList a; std::string want; };
    const Case cases[] = {
        {"no request", without(v, attr::Request), "auth request: missing attribute \"request\""},
        {"unknown request", with(v, attr::Request, "AuthSomething"), "auth request: unknown request \"AuthSomething\""},
        {"empty list", ipc::AttrList(), "auth request: missing attribute \"request\""},
        {"repeated id", dup, "auth request: repeated attribute \"id\""},
        {"repeated user", dup_lookup, "auth request: repeated attribute \"user\""},
        {"no id", without(v, attr::Id), "AuthPasswordVerify: missing attribute \"id\""},
        {"no password", without(v, attr::Password), "AuthPasswordVerify: missing attribute \"password\""},
        {"no tls", without(v, attr::Tls), "AuthPasswordVerify: missing attribute \"tls\""},
        {"no client_addr", without(v, attr::ClientAddr), "AuthPasswordVerify: missing attribute \"client_addr\""},
        {"unknown attr", with(v, "extra", "1"), "AuthPasswordVerify: unknown attribute \"extra\""},
        {"lookup with password", with(l, attr::Password, "x"), "AuthUserLookup: unknown attribute \"password\""},
        {"lookup without user", without(l, attr::User), "AuthUserLookup: missing attribute \"user\""},
        {"id empty", with(v, attr::Id, ""), "AuthPasswordVerify: attribute id: bad number \"\""},
        {"id negative", with(v, attr::Id, "-1"), "AuthPasswordVerify: attribute id: bad number \"-1\""},
        {"id plus", with(v, attr::Id, "+1"), "AuthPasswordVerify: attribute id: bad number \"+1\""},
        {"id leading zero", with(v, attr::Id, "01"), "AuthPasswordVerify: attribute id: bad number \"01\""},
        {"id space", with(v, attr::Id, " 1"), "AuthPasswordVerify: attribute id: bad number \" 1\""},
        {"id trailing", with(v, attr::Id, "1a"), "AuthPasswordVerify: attribute id: bad number \"1a\""},
        {"id 2^64", with(v, attr::Id, "18446744073709551616"),
         "AuthPasswordVerify: attribute id: bad number \"18446744073709551616\""},
        {"lookup id", with(l, attr::Id, "x"), "AuthUserLookup: attribute id: bad number \"x\""},
        {"tls yes", with(v, attr::Tls, "yes"), "AuthPasswordVerify: attribute tls: want 0 or 1, got \"yes\""},
        {"tls empty", with(v, attr::Tls, ""), "AuthPasswordVerify: attribute tls: want 0 or 1, got \"\""},
        {"user empty", with(v, attr::User, ""), "AuthPasswordVerify: attribute user: empty, too long or with a NUL byte"},
        {"user long", with(v, attr::User, u255 + "u"),
         "AuthPasswordVerify: attribute user: empty, too long or with a NUL byte"},
        {"user NUL", with(v, attr::User, "al\0ice"s),
         "AuthPasswordVerify: attribute user: empty, too long or with a NUL byte"},
        {"lookup user empty", with(l, attr::User, ""),
         "AuthUserLookup: attribute user: empty, too long or with a NUL byte"},
        {"password long", with(v, attr::Password, p1024 + "p"),
         "AuthPasswordVerify: attribute password: too long or with a NUL byte"},
        {"password NUL", with(v, attr::Password, "p\0w"s),
         "AuthPasswordVerify: attribute password: too long or with a NUL byte"},
        {"service empty", with(v, attr::Service, ""), "AuthPasswordVerify: attribute service: bad service name"},
        {"service space", with(v, attr::Service, "smtp d"), "AuthPasswordVerify: attribute service: bad service name"},
        {"service long", with(v, attr::Service, std::string(auth::MaxTokenLength + 1, 's')),
         "AuthPasswordVerify: attribute service: bad service name"},
        {"mechanism empty", with(v, attr::Mechanism, ""),
         "AuthPasswordVerify: attribute mechanism: bad mechanism name"},
        {"client_addr long", with(v, attr::ClientAddr, std::string(auth::MaxTokenLength + 1, '1')),
         "AuthPasswordVerify: attribute client_addr: bad address"},
        {"client_addr control", with(v, attr::ClientAddr, "1.2.3.4\n"),
         "AuthPasswordVerify: attribute client_addr: bad address"},
        {"client_name long", with(v, attr::ClientName, std::string(auth::MaxHostLength + 1, 'h')),
         "AuthPasswordVerify: attribute client_name: bad host name"},
    };
    for (const auto& c : cases) {
        auto r = auth::decode_request(c.a);
        INFO(c.what << ": got " << error_of(r) << ", want " << c.want);
        CHECK(error_of(r) == c.want);
        if (!r) CHECK(r.error().kind == Error::Kind::Protocol);
    }
    // At the limits: accepted.
    const ipc::AttrList at_limit[] = {
        with(with(v, attr::User, u255), attr::Password, p1024),
        with(v, attr::Password, ""),
        with(v, attr::Service, std::string(auth::MaxTokenLength, 's')),
        with(v, attr::ClientName, std::string(auth::MaxHostLength, 'h')),
        with(v, attr::ClientName, ""),
        with(l, attr::Id, "18446744073709551615"),
        with(l, attr::Id, "0"),
    };
    for (const auto& a : at_limit) {
        auto r = auth::decode_request(a);
        INFO(error_of(r));
        CHECK(r);
    }
}

TEST_CASE("proto: replies that are refused") {
    namespace attr = ipc::attr;
    const ipc::AttrList ok = auth::encode(ok_reply());
    auth::Reply f;
    f.id = 3;
    f.outcome = auth::Outcome::Fail;
    f.reason = "unknown_user";
    const ipc::AttrList fail = auth::encode(f);
    ipc::AttrList dup = fail;
    dup.add(attr::Reason, "x");
    const std::string long_path = "/" + std::string(auth::MaxPathLength, 'p');
    struct Case { std::string what; ipc::AttrList a; std::string want; };
    const Case cases[] = {
        {"no outcome", without(fail, attr::Outcome), "auth reply: missing attribute \"outcome\""},
        {"unknown outcome", with(fail, attr::Outcome, "maybe"),
         "auth reply: attribute outcome: unknown outcome \"maybe\""},
        {"upper-case outcome", with(fail, attr::Outcome, "OK"), "auth reply: attribute outcome: unknown outcome \"OK\""},
        {"repeated reason", dup, "auth reply: repeated attribute \"reason\""},
        {"no id", without(fail, attr::Id), "auth reply (fail): missing attribute \"id\""},
        {"no reason", without(fail, attr::Reason), "auth reply (fail): missing attribute \"reason\""},
        {"fail with a user", with(fail, attr::User, "alice"), "auth reply (fail): unknown attribute \"user\""},
        {"tempfail with a uid", with(with(fail, attr::Outcome, "tempfail"), attr::Uid, "1"),
         "auth reply (tempfail): unknown attribute \"uid\""},
        {"ok without user", with(fail, attr::Outcome, "ok"), "auth reply (ok): missing attribute \"user\""},
        {"ok without quota", without(ok, attr::Quota), "auth reply (ok): missing attribute \"quota\""},
        {"ok without kind", without(ok, attr::Kind), "auth reply (ok): missing attribute \"kind\""},
        {"ok with password", with(ok, attr::Password, "x"), "auth reply (ok): unknown attribute \"password\""},
        {"bad id", with(fail, attr::Id, "00"), "auth reply: attribute id: bad number \"00\""},
        {"bad reason", with(fail, attr::Reason, "Bad Reason"),
         "auth reply: attribute reason: want at most 64 bytes of [a-z0-9_]"},
        {"long reason", with(fail, attr::Reason, std::string(auth::MaxTokenLength + 1, 'r')),
         "auth reply: attribute reason: want at most 64 bytes of [a-z0-9_]"},
        {"uid -1", with(ok, attr::Uid, "4294967295"), "auth reply: attribute uid: bad number \"4294967295\""},
        {"uid negative", with(ok, attr::Uid, "-5"), "auth reply: attribute uid: bad number \"-5\""},
        {"gid too big", with(ok, attr::Gid, "99999999999"), "auth reply: attribute gid: bad number \"99999999999\""},
        {"quota 2^64", with(ok, attr::Quota, "18446744073709551616"),
         "auth reply: attribute quota: bad number \"18446744073709551616\""},
        {"quota empty", with(ok, attr::Quota, ""), "auth reply: attribute quota: bad number \"\""},
        {"kind", with(ok, attr::Kind, "other"), "auth reply: attribute kind: want system or virtual, got \"other\""},
        {"user empty", with(ok, attr::User, ""), "auth reply: attribute user: empty, too long or with a NUL byte"},
        {"user long", with(ok, attr::User, std::string(sasl::MaxUserLength + 1, 'u')),
         "auth reply: attribute user: empty, too long or with a NUL byte"},
        {"home relative", with(ok, attr::Home, "var/mail"),
         "auth reply: attribute home: not empty or an absolute path of at most 4096 bytes"},
        {"home long", with(ok, attr::Home, long_path),
         "auth reply: attribute home: not empty or an absolute path of at most 4096 bytes"},
        {"home NUL", with(ok, attr::Home, "/var\0/x"s),
         "auth reply: attribute home: not empty or an absolute path of at most 4096 bytes"},
        {"mailbox empty", with(ok, attr::Mailbox, ""),
         "auth reply: attribute mailbox: not an absolute path of at most 4096 bytes"},
        {"mailbox relative", with(ok, attr::Mailbox, "example.org/alice/"),
         "auth reply: attribute mailbox: not an absolute path of at most 4096 bytes"},
        {"mailbox long", with(ok, attr::Mailbox, long_path),
         "auth reply: attribute mailbox: not an absolute path of at most 4096 bytes"},
    };
    for (const auto& c : cases) {
        auto r = auth::decode_reply(c.a);
        INFO(c.what << ": got " << error_of(r) << ", want " << c.want);
        CHECK(error_of(r) == c.want);
        if (!r) CHECK(r.error().kind == Error::Kind::Protocol);
    }
    const ipc::AttrList at_limit[] = {
        with(ok, attr::Mailbox, long_path.substr(0, auth::MaxPathLength)),
        with(ok, attr::Home, long_path.substr(0, auth::MaxPathLength)),
        with(ok, attr::User, std::string(sasl::MaxUserLength, 'u')),
        with(fail, attr::Reason, std::string(auth::MaxTokenLength, 'r')),
        with(ok, attr::Uid, "4294967294"),
    };
    for (const auto& a : at_limit) {
        auto r = auth::decode_reply(a);
        INFO(error_of(r));
        CHECK(r);
    }
    // A reply is not a request, and the other way round.
    CHECK_FALSE(auth::decode_request(ok));
    CHECK_FALSE(auth::decode_reply(auth::encode(sample_verify())));
}

// ---- users: addresses, paths, records -------------------------------------------

TEST_CASE("users: normalize_address") {
    struct Case { std::string in, want; };
    const std::string local64(64, 'l');
    const std::string long_domain = std::string(60, 'd') + "." + std::string(60, 'd') + "." + std::string(60, 'd') +
                                    "." + std::string(60, 'd');  // 243 bytes
    const Case cases[] = {
        {"Alice@Example.ORG", "alice@example.org"},
        {"first.last+tag@mail.example.org", "first.last+tag@mail.example.org"},
        {"o'hara_x{1}@ex-ample.org", "o'hara_x{1}@ex-ample.org"},
        {"a@localhost", "a@localhost"},
        {"abcdefghij@" + long_domain, "abcdefghij@" + long_domain},  // 254 bytes
        {"abcdefghijk@" + long_domain, "error"},                     // 255 bytes
        {"", "error"},
        {"alice", "error"},
        {"a@b@example.org", "error"},
        {"@example.org", "error"},
        {"alice@", "error"},
        {"al ice@example.org", "error"},
        {"alice@example.org ", "error"},
        {"al\tice@example.org", "error"},
        {"al\x7f" "ice@example.org", "error"},
        {"\xc3\xa9@example.org", "error"},
        {"a..b@example.org", "error"},
        {".a@example.org", "error"},
        {"a.@example.org", "error"},
        {"..@example.org", "error"},
        {"a/b@example.org", "error"},
        {"\"a b\"@example.org", "error"},
        {"a@example..org", "error"},
        {"a@.example.org", "error"},
        {"a@example.org.", "error"},
        {"a@-example.org", "error"},
        {"a@example-.org", "error"},
        {"a@exa_mple.org", "error"},
        {"a@[192.0.2.1]", "error"},
        {"a@" + std::string(64, 'x') + ".org", "error"},
    };
    for (const auto& c : cases) {
        auto r = auth::normalize_address(c.in);
        std::string got = r ? *r : "error";
        INFO("\"" << c.in << "\": got " << (r ? *r : r.error().text) << ", want " << c.want);
        CHECK(got == c.want);
        if (!r) CHECK(r.error().kind == Error::Kind::Config);
        if (r) CHECK(auth::valid_mailbox_path(auth::default_mailbox(*r)));
    }
    auto e = auth::normalize_address("a b@x");
    REQUIRE_FALSE(e);
    CHECK(e.error().text == "bad address \"a b@x\": white space, control or non-ASCII character");
}

TEST_CASE("users: valid_mailbox_path and default_mailbox") {
    struct Case { std::string in; bool want; };
    const Case cases[] = {
        {"example.org/alice/", true},
        {"example.org/alice", true},
        {"mbox", true},
        {"a/b/c/", true},
        {"caf\xc3\xa9/", true},
        {"..a/b..", true},
        {std::string(auth::MaxPathLength, 'x'), true},
        {std::string(auth::MaxPathLength + 1, 'x'), false},
        {"", false},
        {"/", false},
        {"/var/mail/alice/", false},
        {"..", false},
        {"../x", false},
        {"a/../b", false},
        {"a/..", false},
        {"a/../", false},
        {".", false},
        {"./a", false},
        {"a/./b", false},
        {"a//b", false},
        {"a\nb", false},
        {"a\tb", false},
        {"a\x7f", false},
        {"a\0b"s, false},
        {"a\x1b[1m", false},
    };
    for (const auto& c : cases) {
        INFO("\"" << c.in << "\": want " << c.want);
        CHECK(auth::valid_mailbox_path(c.in) == c.want);
    }
    CHECK(auth::default_mailbox("alice@example.org") == "example.org/alice/");
}

TEST_CASE("users: format_user and parse_user") {
    auth::VirtualUser u{"alice@example.org", "$y$j9T$abc$def", "example.org/alice/", 1048576};
    std::string v = auth::format_user(u);
    CHECK(v == "$y$j9T$abc$def\texample.org/alice/\t1048576");
    auto p = auth::parse_user("Alice@Example.org", v);
    REQUIRE(p);
    CHECK(p->address == "alice@example.org");
    CHECK(p->hash == u.hash);
    CHECK(p->mailbox == u.mailbox);
    CHECK(p->quota == u.quota);
    CHECK(auth::parse_user("a@b.org", "*\tb.org/a/\t0"));  // a disabled account is a valid record
    CHECK(auth::parse_user("a@b.org", "!x\tb.org/a/\t18446744073709551615"));

    struct Case { std::string address, value, want; };
    const Case cases[] = {
        {"a@b.org", "", "virtual user \"a@b.org\": want HASH<tab>MAILBOX<tab>QUOTA"},
        {"a@b.org", "$6$x$y\tb.org/a/", "virtual user \"a@b.org\": want HASH<tab>MAILBOX<tab>QUOTA"},
        {"a@b.org", "$6$x$y\tb.org/a/\t0\t1", "virtual user \"a@b.org\": want HASH<tab>MAILBOX<tab>QUOTA"},
        {"a@b.org", "\tb.org/a/\t0", "virtual user \"a@b.org\": bad password hash field"},
        {"a@b.org", "$6$ x\tb.org/a/\t0", "virtual user \"a@b.org\": bad password hash field"},
        {"a@b.org", "$6$x$y\t/b.org/a/\t0",
         "virtual user \"a@b.org\": bad mailbox \"/b.org/a/\" (want a relative path without \"..\")"},
        {"a@b.org", "$6$x$y\tb.org/../a/\t0",
         "virtual user \"a@b.org\": bad mailbox \"b.org/../a/\" (want a relative path without \"..\")"},
        {"a@b.org", "$6$x$y\tb.org/a/\t", "virtual user \"a@b.org\": bad quota \"\""},
        {"a@b.org", "$6$x$y\tb.org/a/\t-1", "virtual user \"a@b.org\": bad quota \"-1\""},
        {"a@b.org", "$6$x$y\tb.org/a/\t1k", "virtual user \"a@b.org\": bad quota \"1k\""},
        {"a@b.org", "$6$x$y\tb.org/a/\t18446744073709551616",
         "virtual user \"a@b.org\": bad quota \"18446744073709551616\""},
        {"not an address", "$6$x$y\tb.org/a/\t0",
         "bad address \"not an address\": white space, control or non-ASCII character"},
    };
    for (const auto& c : cases) {
        auto r = auth::parse_user(c.address, c.value);
        std::string got = r ? "parsed" : r.error().text;
        INFO("got " << got << ", want " << c.want);
        CHECK(got == c.want);
        if (!r) CHECK(r.error().kind == Error::Kind::Config);
    }
}

// ---- users: password hashes --------------------------------------------------------

TEST_CASE("users: hash_password and verify_password") {
    auto h = auth::hash_password("correct horse");
    REQUIRE(h);
    INFO("hash " << *h);
    CHECK((h->rfind("$y$", 0) == 0 || h->rfind("$6$", 0) == 0));
    CHECK(auth::verify_password("correct horse", *h));
    CHECK_FALSE(auth::verify_password("correct horse ", *h));
    CHECK_FALSE(auth::verify_password("Correct horse", *h));
    CHECK_FALSE(auth::verify_password("", *h));
    CHECK_FALSE(auth::verify_password("correct horse", h->substr(0, h->size() - 1)));
    // Salted: the same password hashes differently each time.
    auto h2 = auth::hash_password("correct horse");
    REQUIRE(h2);
    CHECK(*h2 != *h);
    CHECK(auth::verify_password("correct horse", *h2));

    // Hashes that are not crypt strings never match, whatever the password.
    for (const char* bad : {"*", "!", "", "!$6$x$y", "*LK*", "ab01FAX.bQRSU"}) {
        INFO("hash \"" << bad << "\"");
        CHECK_FALSE(auth::verify_password("", bad));
        CHECK_FALSE(auth::verify_password("*", bad));
        CHECK_FALSE(auth::verify_password(bad, bad));
    }
    // A SHA-512-crypt hash as `openssl passwd -6 -salt saltsalt 'secret pw'` makes it.
    const std::string sha512 =
        "$6$saltsalt$zM85MwF7wzNFxhHekCkSASe1NaC/xUx1S2eoXlbcx1w6LkHRO4n1DK7q.d/HKoYFUjJ10GWDs5jLq2A53OAzU1";
    CHECK(auth::verify_password("secret pw", sha512));
    CHECK_FALSE(auth::verify_password("secret pW", sha512));
    CHECK_FALSE(auth::verify_password("secret pw\0extra"s, sha512));  // not cut at the NUL

    // Passwords with a NUL byte or over the SASL limit are refused.
    auto nul = auth::hash_password("a\0b"s);
    REQUIRE_FALSE(nul);
    CHECK(nul.error().text == "password contains a NUL byte");
    const std::string longest(auth::MaxHashedPasswordLength, 'p');
    auto at_limit = auth::hash_password(longest);
    REQUIRE(at_limit);
    CHECK(auth::verify_password(longest, *at_limit));
    CHECK_FALSE(auth::verify_password(longest + "p", *at_limit));
    auto too_long = auth::hash_password(longest + "p");
    REQUIRE_FALSE(too_long);
    CHECK(too_long.error().text == "password longer than 511 bytes");
}

// ---- maps: whole tables --------------------------------------------------------------

TEST_CASE("maps: read_db, write_db, prepare_db") {
    TempDir dir;
    const std::string db = dir.file("t.db");
    auto missing = maps::read_db(db);
    REQUIRE(missing);
    CHECK_FALSE(*missing);

    Umask um(077);
    std::vector<maps::Entry> entries = {{"Zed", "last", 0}, {"alpha", "one\ttwo", 0}, {"m", "", 0}};
    REQUIRE(maps::write_db(db, entries, 0644));
    CHECK(mode_of(db) == 0644);  // exact: the umask does not apply
    auto all = maps::read_db(db);
    REQUIRE(all);
    REQUIRE(*all);
    std::string got;
    for (const auto& e : **all) got += e.key + "=" + e.value + ";";
    CHECK(got == "alpha=one\ttwo;m=;zed=last;");  // keys folded, sorted by key
    auto m = maps::open("hash:" + dir.file("t"));
    REQUIRE(m);
    auto v = (*m)->lookup("ZED");
    REQUIRE(v);
    CHECK(*v == "last");

    // Refused entries leave the old file and no temp file.
    struct Case { std::vector<maps::Entry> e; std::string want; };
    const Case cases[] = {
        {{{"a", "1", 0}, {"A", "2", 0}}, db + ": key \"a\" given twice"},
        {{{"", "1", 0}}, db + ": key \"\": empty or too long, or value too long"},
        {{{std::string(maps::MaxKeyLength + 1, 'k'), "1", 0}}, "too long"},
        {{{"k", std::string(maps::MaxValueLength + 1, 'v'), 0}}, "too long"},
    };
    for (const auto& c : cases) {
        auto r = maps::write_db(db, c.e, 0600);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Config);
        INFO("got " << r.error().text << ", want " << c.want);
        CHECK(r.error().text.find(c.want) != std::string::npos);
    }
    CHECK(joined(dir.names()) == "t.db");
    CHECK(mode_of(db) == 0644);

    // An uncommitted PendingDb goes away; a committed one replaces the file.
    {
        auto p = maps::prepare_db(db, {{"new", "1", 0}}, 0600);
        REQUIRE(p);
        CHECK(joined(dir.names()) == "t.db,t.db.tmp." + std::to_string(::getpid()));
    }
    CHECK(joined(dir.names()) == "t.db");
    auto p = maps::prepare_db(db, {{"new", "1", 0}}, 0600);
    REQUIRE(p);
    REQUIRE(p->commit());
    CHECK(joined(dir.names()) == "t.db");
    CHECK(mode_of(db) == 0600);
    CHECK((*m)->changed());
    auto after = maps::read_db(db);
    REQUIRE(after);
    REQUIRE(*after);
    REQUIRE((*after)->size() == 1);
    CHECK((**after)[0].key == "new");

    // Not a database: an error, not "missing".
    std::ofstream(dir.file("junk.db")) << "not a database\n";
    auto junk = maps::read_db(dir.file("junk.db"));
    CHECK_FALSE(junk);
}

// ---- users: the table ---------------------------------------------------------------

namespace {

auth::VirtualUser make_user(const std::string& address, const std::string& password, std::uint64_t quota = 0) {
    auto h = auth::hash_password(password);
    REQUIRE(h);
    return auth::VirtualUser{address, *h, auth::default_mailbox(address), quota};
}

std::string mailbox_of(const std::string& map_spec, const std::string& address) {
    auto m = maps::open(map_spec);
    if (!m) return "error: " + m.error().text;
    auto v = (*m)->lookup(address);
    if (!v) return "error: " + v.error().text;
    return *v ? **v : "not found";
}

std::string addresses(const Result<std::vector<auth::VirtualUser>>& r) {
    if (!r) return "error: " + r.error().text;
    std::string out;
    for (const auto& u : *r) out += (out.empty() ? "" : ",") + u.address;
    return out;
}

}  // namespace

TEST_CASE("users: a missing table is empty, and changed() sees it appear") {
    TempDir dir;
    const std::string spec = "hash:" + dir.file("users");
    auto t = auth::UserTable::open(spec);
    REQUIRE(t);
    auto f = (*t)->find("alice@example.org");
    REQUIRE(f);
    CHECK_FALSE(*f);
    CHECK_FALSE((*t)->changed());
    CHECK(addresses(auth::list_users(spec)) == "");
    CHECK(joined(dir.names()) == "");  // reading creates nothing

    REQUIRE(auth::update_users(spec, "", [](std::map<std::string, auth::VirtualUser>& all) -> Result<void> {
        all["alice@example.org"] = make_user("alice@example.org", "pw1");
        return {};
    }));
    CHECK((*t)->changed());

    auto t2 = auth::UserTable::open(spec);
    REQUIRE(t2);
    CHECK_FALSE((*t2)->changed());
    auto u = (*t2)->find("Alice@EXAMPLE.org");
    REQUIRE(u);
    REQUIRE(*u);
    CHECK((*u)->address == "alice@example.org");
    CHECK((*u)->mailbox == "example.org/alice/");
    CHECK(auth::verify_password("pw1", (*u)->hash));
    for (const char* other : {"bob@example.org", "not an address", "", "alice"}) {
        auto n = (*t2)->find(other);
        REQUIRE(n);
        CHECK_FALSE(*n);
    }
    // Removing the file counts as a change too.
    REQUIRE(::unlink(dir.file("users.db").c_str()) == 0);
    CHECK((*t2)->changed());
}

TEST_CASE("users: open and update refuse specs other than hash:FILE") {
    for (const std::string spec : {"texthash:/etc/postern/users", "/etc/postern/users", "hash:", ""}) {
        INFO(spec);
        auto t = auth::UserTable::open(spec);
        REQUIRE_FALSE(t);
        CHECK(t.error().kind == Error::Kind::Config);
        auto l = auth::list_users(spec);
        REQUIRE_FALSE(l);
        CHECK(l.error().kind == Error::Kind::Config);
        auto u = auth::update_users(spec, "", [](auto&) -> Result<void> { return {}; });
        REQUIRE_FALSE(u);
        CHECK(u.error().kind == Error::Kind::Config);
    }
    TempDir dir;
    auto u = auth::update_users("hash:" + dir.file("users"), "texthash:" + dir.file("mb"),
                                [](auto&) -> Result<void> { return {}; });
    REQUIRE_FALSE(u);
    CHECK(u.error().kind == Error::Kind::Config);
    CHECK(joined(dir.names()) == "");
}

TEST_CASE("users: update_users adds, modifies and deletes, with the mailbox map") {
    TempDir dir;
    Umask um(077);  // the modes below are exact, whatever the umask
    const std::string spec = "hash:" + dir.file("users"), map_spec = "hash:" + dir.file("mailboxes");
    const std::string users_db = dir.file("users.db"), map_db = dir.file("mailboxes.db");

    REQUIRE(auth::update_users(spec, map_spec, [](std::map<std::string, auth::VirtualUser>& all) -> Result<void> {
        CHECK(all.empty());
        for (const char* a : {"carol@example.org", "alice@example.org", "bob@example.net"})
            all[a] = make_user(a, std::string("pw-") + a, 100);
        return {};
    }));
    CHECK(mode_of(users_db) == 0600);
    CHECK(mode_of(map_db) == 0644);
    CHECK(joined(dir.names()) == "mailboxes.db,users.db,users.lock");
    CHECK(addresses(auth::list_users(spec)) == "alice@example.org,bob@example.net,carol@example.org");
    CHECK(mailbox_of(map_spec, "alice@example.org") == "example.org/alice/");
    CHECK(mailbox_of(map_spec, "BOB@example.net") == "example.net/bob/");
    // The public map holds no hashes.
    CHECK(read_file(map_db).find("$y$") == std::string::npos);
    CHECK(read_file(map_db).find("$6$") == std::string::npos);

    // Modify: a new password and mailbox for bob; delete carol.
    REQUIRE(auth::update_users(spec, map_spec, [](std::map<std::string, auth::VirtualUser>& all) -> Result<void> {
        REQUIRE(all.size() == 3);
        auto& bob = all.at("bob@example.net");
        CHECK(auth::verify_password("pw-bob@example.net", bob.hash));
        CHECK(bob.quota == 100);
        auto h = auth::hash_password("new");
        REQUIRE(h);
        bob.hash = *h;
        bob.mailbox = "net/b/";
        bob.quota = 0;
        all.erase("carol@example.org");
        return {};
    }));
    auto users = auth::list_users(spec);
    CHECK(addresses(users) == "alice@example.org,bob@example.net");
    REQUIRE(users);
    REQUIRE(users->size() == 2);
    CHECK(auth::verify_password("new", (*users)[1].hash));
    CHECK((*users)[1].mailbox == "net/b/");
    CHECK((*users)[1].quota == 0);
    CHECK(auth::verify_password("pw-alice@example.org", (*users)[0].hash));
    CHECK(mailbox_of(map_spec, "bob@example.net") == "net/b/");
    CHECK(mailbox_of(map_spec, "carol@example.org") == "not found");
    CHECK(mode_of(users_db) == 0600);
    CHECK(mode_of(map_db) == 0644);

    // Delete everyone: both tables exist and are empty.
    REQUIRE(auth::update_users(spec, map_spec, [](auto& all) -> Result<void> {
        all.clear();
        return {};
    }));
    CHECK(addresses(auth::list_users(spec)) == "");
    CHECK(mailbox_of(map_spec, "alice@example.org") == "not found");
    CHECK(joined(dir.names()) == "mailboxes.db,users.db,users.lock");
}

TEST_CASE("users: a failed update leaves both files as they were") {
    TempDir dir;
    const std::string spec = "hash:" + dir.file("users"), map_spec = "hash:" + dir.file("mailboxes");
    REQUIRE(auth::update_users(spec, map_spec, [](auto& all) -> Result<void> {
        all["alice@example.org"] = make_user("alice@example.org", "pw");
        return {};
    }));
    const std::string users_before = read_file(dir.file("users.db")), map_before = read_file(dir.file("mailboxes.db"));
    auto t = auth::UserTable::open(spec);
    REQUIRE(t);

    using Mutate = std::function<Result<void>(std::map<std::string, auth::VirtualUser>&)>;
    struct Case { std::string what; Mutate m; std::string map_spec, want; };
    const Case cases[] = {
        {"mutate fails",
         [](auto& all) -> Result<void> {
             all.clear();
             return Error::config("user bob@example.org exists");
         },
         map_spec, "user bob@example.org exists"},
        {"bad mailbox",
         [](auto& all) -> Result<void> {
             all["alice@example.org"].mailbox = "../../etc/";
             return {};
         },
         map_spec, "virtual user \"alice@example.org\": bad mailbox \"../../etc/\" (want a relative path without \"..\")"},
        {"key differs from address",
         [](auto& all) -> Result<void> {
             all["bob@example.org"] = make_user("eve@example.org", "x");
             return {};
         },
         map_spec, "virtual user \"bob@example.org\": address differs from its key"},
        {"upper-case key",
         [](auto& all) -> Result<void> {
             all["Bob@example.org"] = make_user("Bob@example.org", "x");
             return {};
         },
         map_spec, "virtual user \"Bob@example.org\": address differs from its key"},
        {"bad hash",
         [](auto& all) -> Result<void> {
             all["alice@example.org"].hash = "";
             return {};
         },
         map_spec, "virtual user \"alice@example.org\": bad password hash"},
        {"mailbox map cannot be written",
         [](auto& all) -> Result<void> {
             all["bob@example.org"] = make_user("bob@example.org", "x");
             return {};
         },
         "hash:" + dir.file("no/such/dir/mailboxes"), "create " + dir.file("no/such/dir/mailboxes.db.tmp.")},
    };
    for (const auto& c : cases) {
        auto r = auth::update_users(spec, c.map_spec, c.m);
        REQUIRE_FALSE(r);
        INFO(c.what << ": got " << r.error().text << ", want " << c.want);
        CHECK(r.error().text.rfind(c.want, 0) == 0);
        CHECK(read_file(dir.file("users.db")) == users_before);
        CHECK(read_file(dir.file("mailboxes.db")) == map_before);
        CHECK(joined(dir.names()) == "mailboxes.db,users.db,users.lock");
        CHECK_FALSE((*t)->changed());
    }
    CHECK(addresses(auth::list_users(spec)) == "alice@example.org");
}

TEST_CASE("users: a corrupt entry is an error, not a missing user") {
    TempDir dir;
    const std::string spec = "hash:" + dir.file("users");
    REQUIRE(maps::write_db(dir.file("users.db"), {{"alice@example.org", "no tabs here", 0}}, 0600));
    auto t = auth::UserTable::open(spec);
    REQUIRE(t);
    auto u = (*t)->find("alice@example.org");
    REQUIRE_FALSE(u);
    CHECK(u.error().kind == Error::Kind::Config);
    CHECK(u.error().text == spec + ": virtual user \"alice@example.org\": want HASH<tab>MAILBOX<tab>QUOTA");
    auto l = auth::list_users(spec);
    REQUIRE_FALSE(l);
    CHECK(l.error().kind == Error::Kind::Config);
    auto up = auth::update_users(spec, "", [](auto&) -> Result<void> { return {}; });
    REQUIRE_FALSE(up);
}
