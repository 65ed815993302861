// Unit tests for smtpd/protocol: command lines, MAIL/RCPT paths, ESMTP
// parameters, xtext and HELO arguments. Table-driven; failures say "got X, want Y".
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "smtpd/protocol.hpp"
#include "util/strings.hpp"

using namespace postern;
using namespace postern::smtpd;

namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

std::string show(std::string_view s) { return util::printable(s, 80); }

std::string show(const Params& ps) {
    std::string out = "{";
    for (const auto& [k, v] : ps) out += " " + k + (v.empty() ? "" : "=" + v);
    return out + " }";
}

// What a Result<T> came to: the error text, or "" for success.
template <typename T>
std::string error_of(const Result<T>& r) {
    return r ? std::string() : r.error().text;
}

}  // namespace

TEST_CASE("parse_command: every verb, case-insensitive") {
    struct Case { const char* verb; Verb want; };
    const Case cases[] = {
        {"HELO", Verb::Helo}, {"EHLO", Verb::Ehlo}, {"MAIL", Verb::Mail}, {"RCPT", Verb::Rcpt},
        {"DATA", Verb::Data}, {"BDAT", Verb::Bdat}, {"RSET", Verb::Rset}, {"NOOP", Verb::Noop},
        {"QUIT", Verb::Quit}, {"VRFY", Verb::Vrfy}, {"EXPN", Verb::Expn}, {"HELP", Verb::Help},
        {"STARTTLS", Verb::Starttls}, {"AUTH", Verb::Auth},
    };
    for (const auto& c : cases) {
        std::string upper = c.verb, lower = util::to_lower(c.verb), mixed = lower;
        mixed[0] = upper[0];
        for (const std::string& spelling : {upper, lower, mixed}) {
            for (const std::string& line : {spelling, spelling + " x y"}) {
                auto r = parse_command(line);
                INFO("line '" << line << "': got error '" << error_of(r) << "', want verb " << c.verb);
                REQUIRE(r);
                INFO("got name '" << r->name << "', want '" << c.verb << "'");
                CHECK(r->verb == c.want);
                CHECK(r->name == c.verb);  // upper-cased whatever was sent
            }
        }
    }
}

TEST_CASE("parse_command: unknown verbs") {
    const char* lines[] = {"", " ", "X", "HELOX", "HEL", "MAILFROM:<a@b>", "EHLO\tx", "STARTTLS2", "\xc3\xa9HLO x", "DATA\x7f"};
    for (const char* line : lines) {
        auto r = parse_command(line);
        INFO("line '" << show(line) << "': got error '" << error_of(r) << "', want Verb::Unknown");
        REQUIRE(r);
        INFO("got name '" << r->name << "', want 'unknown'");
        CHECK(r->verb == Verb::Unknown);
        CHECK(r->name == "unknown");
    }
}

TEST_CASE("parse_command: argument after one space, trimmed") {
    struct Case { const char* line; const char* want_arg; };
    const Case cases[] = {
        {"QUIT", ""},
        {"QUIT ", ""},
        {"QUIT    ", ""},
        {"EHLO client.example", "client.example"},
        {"EHLO   client.example", "client.example"},   // leading spaces go
        {"EHLO client.example  \t ", "client.example"},  // trailing spaces and tabs go
        {"MAIL FROM:<a@b.example>  SIZE=10", "FROM:<a@b.example>  SIZE=10"},  // inner spacing kept
        {"HELP a\tb", "a\tb"},                            // tab is allowed inside
        {"NOOP \xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9"},  // 8-bit passes through
    };
    for (const auto& c : cases) {
        auto r = parse_command(c.line);
        INFO("line '" << show(c.line) << "': got error '" << error_of(r) << "'");
        REQUIRE(r);
        INFO("got arg '" << show(r->arg) << "', want '" << show(c.want_arg) << "'");
        CHECK(r->arg == c.want_arg);
    }
}

TEST_CASE("parse_command: NUL, bare CR and control characters are refused") {
    using namespace std::string_literals;
    const std::string lines[] = {
        "NOOP\0"s, "MAIL FROM:<a@b>\0x"s, "\0"s,
        "NOOP\r"s, "NOOP a\rb"s, "\rQUIT"s,
        "NOOP \n"s, "NOOP \x01"s, "RCPT TO:<a\x1b@b>"s, "\x1f"s, "EHLO a\x0b"s,
    };
    for (const auto& line : lines) {
        auto r = parse_command(line);
        INFO("line '" << show(line) << "': got '" << error_of(r) << "', want a 500 5.5.2 error");
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Protocol);
        CHECK(r.error().text.rfind("500 5.5.2 ", 0) == 0);
    }
}

TEST_CASE("parse_path: valid paths") {
    struct Case {
        const char* arg;
        const char* prefix;
        bool allow_null, allow_pm;
        const char* address;
        const char* local;
        const char* domain;
        bool utf8;
        Params params;
    };
    const Case cases[] = {
        {"FROM:<a@b.example>", "FROM:", false, false, "a@b.example", "a", "b.example", false, {}},
        {"TO:<a@b.example>", "TO:", false, false, "a@b.example", "a", "b.example", false, {}},
        {"from:<a@b.example>", "FROM:", false, false, "a@b.example", "a", "b.example", false, {}},
        {"To:<a@b.example>", "TO:", false, false, "a@b.example", "a", "b.example", false, {}},
        // Domain lower-cased, local part kept as sent.
        {"FROM:<A@B.EXAMPLE>", "FROM:", false, false, "A@b.example", "A", "b.example", false, {}},
        // Space after the colon (common, though not RFC 5321).
        {"FROM: <a@b.example>", "FROM:", false, false, "a@b.example", "a", "b.example", false, {}},
        {"TO:   <a@b.example>", "TO:", false, false, "a@b.example", "a", "b.example", false, {}},
        // Bare address without brackets.
        {"FROM:a@b.example", "FROM:", false, false, "a@b.example", "a", "b.example", false, {}},
        {"TO:a@b.example NOTIFY=NEVER", "TO:", false, false, "a@b.example", "a", "b.example", false, {{"NOTIFY", "NEVER"}}},
        // Null sender only when allowed.
        {"FROM:<>", "FROM:", true, false, "", "", "", false, {}},
        {"FROM:<> SIZE=100", "FROM:", true, false, "", "", "", false, {{"SIZE", "100"}}},
        // Bare postmaster for RCPT.
        {"TO:<postmaster>", "TO:", false, true, "postmaster", "postmaster", "", false, {}},
        {"TO:<PostMaster>", "TO:", false, true, "PostMaster", "PostMaster", "", false, {}},
        {"TO:<postmaster@b.example>", "TO:", false, false, "postmaster@b.example", "postmaster", "b.example", false, {}},
        // Quoted local parts: quotes kept; an '@' inside quotes never becomes the domain.
        {"TO:<\"a b\"@x.example>", "TO:", false, false, "\"a b\"@x.example", "\"a b\"", "x.example", false, {}},
        {"TO:<\"a@b\"@local>", "TO:", false, false, "\"a@b\"@local", "\"a@b\"", "local", false, {}},
        {"TO:<\"a>b\"@local>", "TO:", false, false, "\"a>b\"@local", "\"a>b\"", "local", false, {}},
        {"TO:<\"a\\\"b\"@local>", "TO:", false, false, "\"a\\\"b\"@local", "\"a\\\"b\"", "local", false, {}},
        // Percent hack and bang paths are not interpreted: the domain is the last one.
        {"TO:<user%other.example@local>", "TO:", false, false, "user%other.example@local", "user%other.example", "local", false, {}},
        {"TO:<b!a@local>", "TO:", false, false, "b!a@local", "b!a", "local", false, {}},
        // A source route is checked and dropped.
        {"TO:<@relay.example,@r2:user@local>", "TO:", false, false, "user@local", "user", "local", false, {}},
        {"FROM:<@relay.example:user@local>", "FROM:", false, false, "user@local", "user", "local", false, {}},
        // UTF-8 (SMTPUTF8) in local part or domain.
        {"TO:<j\xc3\xb6rg@b.example>", "TO:", false, false, "j\xc3\xb6rg@b.example", "j\xc3\xb6rg", "b.example", true, {}},
        {"TO:<a@b\xc3\xbc.example>", "TO:", false, false, "a@b\xc3\xbc.example", "a", "b\xc3\xbc.example", true, {}},
        {"TO:<\"j\xc3\xb6 rg\"@b.example>", "TO:", false, false, "\"j\xc3\xb6 rg\"@b.example", "\"j\xc3\xb6 rg\"", "b.example", true, {}},
        // Address literals.
        {"TO:<a@[192.0.2.1]>", "TO:", false, false, "a@[192.0.2.1]", "a", "[192.0.2.1]", false, {}},
        {"TO:<a@[IPv6:2001:db8::1]>", "TO:", false, false, "a@[ipv6:2001:db8::1]", "a", "[ipv6:2001:db8::1]", false, {}},
        // Other legal shapes.
        {"TO:<a.b+tag@sub-1.b_x.example>", "TO:", false, false, "a.b+tag@sub-1.b_x.example", "a.b+tag", "sub-1.b_x.example", false, {}},
        {"TO:<a@localhost>", "TO:", false, false, "a@localhost", "a", "localhost", false, {}},
        // Parameters: keyword upper-cased, value kept, any white space between.
        {"FROM:<a@b> size=10  body=8BITMIME\tSMTPUTF8", "FROM:", false, false, "a@b", "a", "b", false,
         {{"SIZE", "10"}, {"BODY", "8BITMIME"}, {"SMTPUTF8", ""}}},
        {"FROM:<a@b> X-FOO=+2B", "FROM:", false, false, "a@b", "a", "b", false, {{"X-FOO", "+2B"}}},
    };
    for (const auto& c : cases) {
        auto r = parse_path(c.arg, c.prefix, c.allow_null, c.allow_pm);
        INFO("arg '" << show(c.arg) << "' null=" << c.allow_null << " postmaster=" << c.allow_pm
                     << ": got error '" << error_of(r) << "', want address '" << show(c.address) << "'");
        REQUIRE(r);
        INFO("got address '" << show(r->address) << "' local '" << show(r->local) << "' domain '" << show(r->domain)
                             << "' utf8 " << r->utf8 << " params " << show(r->params) << "; want '" << show(c.address)
                             << "' '" << show(c.local) << "' '" << show(c.domain) << "' " << c.utf8 << " "
                             << show(c.params));
        CHECK(r->address == c.address);
        CHECK(r->local == c.local);
        CHECK(r->domain == c.domain);
        CHECK(r->utf8 == c.utf8);
        CHECK(r->params == c.params);
    }
}

TEST_CASE("parse_path: invalid paths, with the reply for MAIL and for RCPT") {
    // Each argument is tried as MAIL ("FROM:" + rest) and as RCPT ("TO:" + rest),
    // both flags off. want_prefix: "addr" -> 501 5.1.7 / 501 5.1.3, "syntax" ->
    // 501 5.5.4 Syntax, otherwise a literal reply prefix.
    struct Case { std::string rest; const char* want; };
    const std::string l64(64, 'l'), l65(65, 'l');
    const std::vector<Case> cases = {
        {"<a@b.example", "addr"},             // missing '>'
        {"<a@b.example>SIZE=1", "addr"},      // junk after '>' without space
        {"<a@b.example>>", "addr"},
        {"<a@b.example>\tSIZE=1", "addr"},
        {"<@b.example>", "addr"},             // empty local part (route without ':')
        {"<a@>", "addr"},                     // empty domain
        {"<a>", "addr"},                      // no domain
        {"<a@b@c.example>", "addr"},
        {"<a..b@c.example>", "addr"},         // double dot in local part
        {"<.a@c.example>", "addr"},
        {"<a.@c.example>", "addr"},
        {"<a@b..example>", "addr"},           // double dot in domain
        {"<a@.b.example>", "addr"},
        {"<a@b.example.>", "addr"},
        {"<a@-b.example>", "addr"},           // label starting with '-'
        {"<a@b.-x.example>", "addr"},
        {"<a@b-.example>", "addr"},           // label ending with '-'
        {"<a@b.example->", "addr"},           // last label ending with '-'
        {"<a@b example>", "addr"},
        {"<a b@c.example>", "addr"},
        {"<a\"b@c.example>", "addr"},         // unbalanced quote
        {"<\"a\"b\"c\"@c.example>", "addr"},
        {"<a(b)@c.example>", "addr"},
        {"<a@[]>", "addr"},
        {"<a@[1.2.3.4>", "addr"},
        {"<a@[1.2.3.4/8]>", "addr"},
        {"<@relay.example:>", "addr"},        // route with nothing after it
        {"<@:a@b.example>", "addr"},
        {"<@-bad:a@b.example>", "addr"},
        {"<relay.example:a@b.example>", "addr"},
        {"<postmaster>", "addr"},             // bare postmaster needs the flag
        {"<>", "addr"},                       // null path needs the flag
        {"<a\x01@b.example>", "addr"},
        {"<a@b\x7f.example>", "addr"},
        {"<\"a\x01\"@b.example>", "addr"},
        {"<" + l65 + "@b.example>", "addr"},  // local part 65 bytes
        {"<\"" + std::string(63, 'q') + "\"@b.example>", "addr"},  // quoted local 65 bytes
        {"<a@" + std::string(64, 'd') + ".example>", "addr"},  // label 64 bytes
        {"", "syntax"},
        {"   ", "syntax"},
        {"a@b.example>", "addr"},             // bare form: '>' is not address syntax
    };
    for (const auto& c : cases) {
        for (bool mail : {true, false}) {
            std::string arg = (mail ? "FROM:" : "TO:") + c.rest;
            auto r = parse_path(arg, mail ? "FROM:" : "TO:", false, false);
            std::string want = std::string(c.want) == "addr" ? (mail ? "501 5.1.7 " : "501 5.1.3 ")
                             : std::string(c.want) == "syntax" ? "501 5.5.4 Syntax" : c.want;
            INFO("arg '" << show(arg) << "': got '" << (r ? "success: " + show(r->address) : r.error().text)
                         << "', want an error starting '" << want << "'");
            REQUIRE_FALSE(r);
            CHECK(r.error().kind == Error::Kind::Protocol);
            CHECK(r.error().text.rfind(want, 0) == 0);
        }
    }
}

TEST_CASE("parse_path: the prefix must match") {
    struct Case { const char* arg; const char* prefix; };
    const Case cases[] = {
        {"TO:<a@b>", "FROM:"}, {"FROM:<a@b>", "TO:"}, {"FROM <a@b>", "FROM:"}, {"<a@b>", "TO:"}, {"", "TO:"}, {"FRO", "FROM:"},
    };
    for (const auto& c : cases) {
        auto r = parse_path(c.arg, c.prefix, true, true);
        INFO("arg '" << c.arg << "' prefix " << c.prefix << ": got '" << error_of(r) << "', want 501 5.5.4 Syntax");
        REQUIRE_FALSE(r);
        CHECK(r.error().text.rfind("501 5.5.4 Syntax: ", 0) == 0);
    }
}

TEST_CASE("parse_path: flags control <> and <postmaster>") {
    struct Case { const char* arg; const char* prefix; bool null, pm, want_ok; };
    const Case cases[] = {
        {"FROM:<>", "FROM:", true, false, true},
        {"FROM:<>", "FROM:", false, false, false},
        {"FROM:<>", "FROM:", false, true, false},
        {"TO:<>", "TO:", false, true, false},
        {"TO:<postmaster>", "TO:", false, true, true},
        {"TO:postmaster", "TO:", false, true, true},
        {"TO:<postmaster>", "TO:", false, false, false},
        {"TO:<postmaster>", "TO:", true, false, false},
        {"FROM:<postmaster>", "FROM:", true, false, false},  // MAIL never passes allow_bare_postmaster
        {"TO:<postmasterx>", "TO:", false, true, false},
        {"TO:<abuse>", "TO:", false, true, false},
    };
    for (const auto& c : cases) {
        auto r = parse_path(c.arg, c.prefix, c.null, c.pm);
        INFO("arg '" << c.arg << "' null=" << c.null << " postmaster=" << c.pm << ": got '"
                     << (r ? "ok" : r.error().text) << "', want " << (c.want_ok ? "ok" : "an error"));
        CHECK(bool(r) == c.want_ok);
    }
}

TEST_CASE("parse_path: length limits at the limit and one past") {
    // Local part: 64 ok, 65 refused.
    {
        auto ok = parse_path("TO:<" + std::string(64, 'l') + "@b.example>", "TO:", false, false);
        INFO("local 64: got '" << error_of(ok) << "', want ok");
        CHECK(ok);
        auto quoted = parse_path("TO:<\"" + std::string(62, 'q') + "\"@b.example>", "TO:", false, false);
        INFO("quoted local 64: got '" << error_of(quoted) << "', want ok");
        CHECK(quoted);
        auto bad = parse_path("TO:<" + std::string(65, 'l') + "@b.example>", "TO:", false, false);
        INFO("local 65: got '" << error_of(bad) << "', want 501 5.1.3");
        REQUIRE_FALSE(bad);
        CHECK(bad.error().text.rfind("501 5.1.3 ", 0) == 0);
    }
    // Domain labels: 63 ok, 64 refused.
    {
        auto ok = parse_path("TO:<a@" + std::string(63, 'd') + ".example>", "TO:", false, false);
        INFO("label 63: got '" << error_of(ok) << "', want ok");
        CHECK(ok);
    }
    // Domain 255 / 256: the path limit (256 between the brackets) is reached
    // first, since the shortest path around a domain adds "x@". So the longest
    // usable domain is 254, and 255 and 256 are refused (as too long a path).
    auto domain = [](std::size_t n) {  // n bytes: 60-byte labels, never a trailing dot
        std::string d(n, 'd');
        for (std::size_t i = 60; i + 1 < n; i += 61) d[i] = '.';
        return d;
    };
    for (std::size_t n : {253u, 254u, 255u, 256u}) {
        std::string d = domain(n);
        REQUIRE(d.size() == n);
        for (bool mail : {true, false}) {
            auto r = parse_path((mail ? "FROM:<x@" : "TO:<x@") + d + ">", mail ? "FROM:" : "TO:", false, false);
            bool want_ok = n <= 254;
            INFO("domain " << n << (mail ? " MAIL" : " RCPT") << ": got '" << (r ? "ok" : r.error().text) << "', want "
                           << (want_ok ? "ok" : "too long"));
            REQUIRE(bool(r) == want_ok);
            if (!r) CHECK(r.error().text.rfind(mail ? "501 5.1.7 " : "501 5.1.3 ", 0) == 0);
            else CHECK(r->domain == d);
        }
    }
    // Whole path: 256 bytes between the brackets ok, 257 refused (also with
    // a source route, which counts before it is dropped).
    {
        std::string local(64, 'l');
        std::string at256 = local + "@" + domain(256 - 65);
        std::string at257 = local + "@" + domain(257 - 65);
        REQUIRE(at256.size() == 256);
        auto ok = parse_path("TO:<" + at256 + ">", "TO:", false, false);
        INFO("path 256: got '" << error_of(ok) << "', want ok");
        CHECK(ok);
        auto bad = parse_path("TO:<" + at257 + ">", "TO:", false, false);
        INFO("path 257: got '" << error_of(bad) << "', want 501 5.1.3 Recipient address too long");
        REQUIRE_FALSE(bad);
        CHECK(bad.error().text == "501 5.1.3 Recipient address too long");
        auto bad_mail = parse_path("FROM:" + at257, "FROM:", false, false);  // bare form too
        INFO("bare path 257: got '" << error_of(bad_mail) << "', want 501 5.1.7 Sender address too long");
        REQUIRE_FALSE(bad_mail);
        CHECK(bad_mail.error().text == "501 5.1.7 Sender address too long");
        std::string route = "@" + domain(243) + ":u@b.example";  // 256 with the route
        REQUIRE(route.size() == 256);
        auto routed = parse_path("TO:<" + route + ">", "TO:", false, false);
        INFO("routed path 256: got '" << error_of(routed) << "', want ok");
        CHECK(routed);
        auto routed_bad = parse_path("TO:<@" + domain(244) + ":u@b.example>", "TO:", false, false);
        INFO("routed path 257: got '" << error_of(routed_bad) << "', want 501 5.1.3 Recipient address too long");
        REQUIRE_FALSE(routed_bad);
        CHECK(routed_bad.error().text == "501 5.1.3 Recipient address too long");
    }
}

TEST_CASE("parse_path: parameter count and syntax") {
    auto params = [](int n) {
        std::string s;
        for (int i = 0; i < n; ++i) s += " X" + std::to_string(i) + "=" + std::to_string(i);
        return s;
    };
    {
        auto ok = parse_path("FROM:<a@b.example>" + params(10), "FROM:", false, false);
        INFO("10 params: got '" << error_of(ok) << "', want ok");
        REQUIRE(ok);
        CHECK(ok->params.size() == 10);
        auto bad = parse_path("FROM:<a@b.example>" + params(11), "FROM:", false, false);
        INFO("11 params: got '" << error_of(bad) << "', want 501 5.5.4 Too many parameters");
        REQUIRE_FALSE(bad);
        CHECK(bad.error().text == "501 5.5.4 Too many parameters");
    }
    struct Case { const char* rest; const char* want; };
    const Case cases[] = {
        {" SIZE=1 SIZE=2", "501 5.5.4 Duplicate parameter SIZE"},
        {" size=1 SIZE=2", "501 5.5.4 Duplicate parameter SIZE"},  // keywords compare upper-cased
        {" SMTPUTF8 smtputf8", "501 5.5.4 Duplicate parameter SMTPUTF8"},
        {" SIZE=", "501 5.5.4 Bad parameter syntax"},               // '=' with no value
        {" =1", "501 5.5.4 Bad parameter syntax"},                  // no keyword
        {" S_ZE=1", "501 5.5.4 Bad parameter syntax"},
        {" SIZE=a=b", "501 5.5.4 Bad parameter syntax"},            // '=' in value
        {" ENVID=\xc3\xa9", "501 5.5.4 Bad parameter syntax"},      // value must be printable ASCII
        {" ABCDEFGHIJKLMNOPQRSTU=1", "501 5.5.4 Bad parameter syntax"},  // keyword 21 chars
    };
    for (const auto& c : cases) {
        std::string arg = std::string("FROM:<a@b.example>") + c.rest;
        auto r = parse_path(arg, "FROM:", false, false);
        INFO("arg '" << show(arg) << "': got '" << error_of(r) << "', want '" << c.want << "'");
        REQUIRE_FALSE(r);
        CHECK(r.error().text == c.want);
    }
    auto twenty = parse_path("FROM:<a@b.example> ABCDEFGHIJKLMNOPQRST=1", "FROM:", false, false);
    INFO("keyword 20 chars: got '" << error_of(twenty) << "', want ok");
    CHECK(twenty);
}

TEST_CASE("parse_mail_params") {
    struct Case {
        Params in;
        const char* want_error;  // "" for success
        std::optional<unsigned long long> size;
        Body body;
        bool smtputf8;
        const char* ret;
        std::string envid;
        const char* auth;
    };
    const std::string envid100(100, 'e'), envid101(101, 'e');
    const std::vector<Case> cases = {
        {{}, "", std::nullopt, Body::None, false, "", "", ""},
        {{{"SIZE", "0"}}, "", 0ULL, Body::None, false, "", "", ""},
        {{{"SIZE", "10485760"}}, "", 10485760ULL, Body::None, false, "", "", ""},
        {{{"SIZE", "9223372036854775807"}}, "", 9223372036854775807ULL, Body::None, false, "", "", ""},
        {{{"SIZE", "9223372036854775808"}}, "501 5.5.4 Bad SIZE parameter", {}, Body::None, false, "", "", ""},
        {{{"SIZE", "12345678901234567890"}}, "501 5.5.4 Bad SIZE parameter", {}, Body::None, false, "", "", ""},  // 20 digits
        {{{"SIZE", "00000000000000000001"}}, "501 5.5.4 Bad SIZE parameter", {}, Body::None, false, "", "", ""},  // 20 digits
        {{{"SIZE", "abc"}}, "501 5.5.4 Bad SIZE parameter", {}, Body::None, false, "", "", ""},
        {{{"SIZE", "12k"}}, "501 5.5.4 Bad SIZE parameter", {}, Body::None, false, "", "", ""},
        {{{"SIZE", "-1"}}, "501 5.5.4 Bad SIZE parameter", {}, Body::None, false, "", "", ""},
        {{{"SIZE", "+1"}}, "501 5.5.4 Bad SIZE parameter", {}, Body::None, false, "", "", ""},
        {{{"SIZE", ""}}, "501 5.5.4 Bad SIZE parameter", {}, Body::None, false, "", "", ""},
        {{{"BODY", "7BIT"}}, "", {}, Body::SevenBit, false, "", "", ""},
        {{{"BODY", "8bitmime"}}, "", {}, Body::EightBitMime, false, "", "", ""},
        {{{"BODY", "BINARYMIME"}}, "501 5.5.4 Unsupported BODY parameter value", {}, Body::None, false, "", "", ""},
        {{{"BODY", "8BIT"}}, "501 5.5.4 Unsupported BODY parameter value", {}, Body::None, false, "", "", ""},
        {{{"SMTPUTF8", ""}}, "", {}, Body::None, true, "", "", ""},
        {{{"SMTPUTF8", "yes"}}, "501 5.5.4 SMTPUTF8 takes no value", {}, Body::None, false, "", "", ""},
        {{{"RET", "FULL"}}, "", {}, Body::None, false, "FULL", "", ""},
        {{{"RET", "hdrs"}}, "", {}, Body::None, false, "HDRS", "", ""},
        {{{"RET", "NONE"}}, "501 5.5.4 Bad RET parameter", {}, Body::None, false, "", "", ""},
        {{{"RET", ""}}, "501 5.5.4 Bad RET parameter", {}, Body::None, false, "", "", ""},
        {{{"ENVID", "abc"}}, "", {}, Body::None, false, "", "abc", ""},
        {{{"ENVID", "a+2Bb+3Dc"}}, "", {}, Body::None, false, "", "a+b=c", ""},
        {{{"ENVID", envid100}}, "", {}, Body::None, false, "", envid100, ""},
        {{{"ENVID", envid101}}, "501 5.5.4 Bad ENVID parameter", {}, Body::None, false, "", "", ""},
        {{{"ENVID", std::string(99, 'e') + "+2B"}}, "", {}, Body::None, false, "", std::string(99, 'e') + "+", ""},
        {{{"ENVID", std::string(100, 'e') + "+2B"}}, "501 5.5.4 Bad ENVID parameter", {}, Body::None, false, "", "", ""},
        {{{"ENVID", "a+2"}}, "501 5.5.4 Bad ENVID parameter", {}, Body::None, false, "", "", ""},
        {{{"ENVID", "a+2b"}}, "501 5.5.4 Bad ENVID parameter", {}, Body::None, false, "", "", ""},  // lower-case hex
        {{{"ENVID", "a+GG"}}, "501 5.5.4 Bad ENVID parameter", {}, Body::None, false, "", "", ""},
        {{{"ENVID", ""}}, "501 5.5.4 Bad ENVID parameter", {}, Body::None, false, "", "", ""},
        {{{"ENVID", "a+0D+0ABcc:x"}}, "501 5.5.4 Bad ENVID parameter", {}, Body::None, false, "", "", ""},  // no CRLF smuggling
        {{{"ENVID", "a+00"}}, "501 5.5.4 Bad ENVID parameter", {}, Body::None, false, "", "", ""},
        {{{"AUTH", "<>"}}, "", {}, Body::None, false, "", "", "<>"},
        {{{"AUTH", "u+40b.example"}}, "", {}, Body::None, false, "", "", "u@b.example"},
        {{{"AUTH", "u+4"}}, "501 5.5.4 Bad AUTH parameter", {}, Body::None, false, "", "", ""},
        {{{"AUTH", "u+0A"}}, "501 5.5.4 Bad AUTH parameter", {}, Body::None, false, "", "", ""},
        {{{"SIZE", "5"}, {"BODY", "8BITMIME"}, {"SMTPUTF8", ""}, {"RET", "HDRS"}, {"ENVID", "x"}, {"AUTH", "<>"}},
         "", 5ULL, Body::EightBitMime, true, "HDRS", "x", "<>"},
        {{{"XFOO", ""}}, "555 5.5.4 Unsupported option: XFOO", {}, Body::None, false, "", "", ""},
        {{{"NOTIFY", "NEVER"}}, "555 5.5.4 Unsupported option: NOTIFY", {}, Body::None, false, "", "", ""},  // RCPT only
        {{{"SIZE", "1"}, {"ORCPT", "rfc822;a"}}, "555 5.5.4 Unsupported option: ORCPT", {}, Body::None, false, "", "", ""},
    };
    for (const auto& c : cases) {
        auto r = parse_mail_params(c.in);
        INFO("params " << show(c.in) << ": got '" << error_of(r) << "', want '" << c.want_error << "'");
        REQUIRE(error_of(r) == c.want_error);
        if (!r) {
            CHECK(r.error().kind == Error::Kind::Protocol);
            continue;
        }
        INFO("got size " << (r->size ? std::to_string(*r->size) : "none") << " body " << int(r->body) << " smtputf8 "
                         << r->smtputf8 << " ret '" << r->ret << "' envid '" << show(r->envid) << "' auth '"
                         << show(r->auth) << "'; want size " << (c.size ? std::to_string(*c.size) : "none") << " body "
                         << int(c.body) << " smtputf8 " << c.smtputf8 << " ret '" << c.ret << "' envid '"
                         << show(c.envid) << "' auth '" << show(c.auth) << "'");
        CHECK(r->size == c.size);
        CHECK(r->body == c.body);
        CHECK(r->smtputf8 == c.smtputf8);
        CHECK(r->ret == c.ret);
        CHECK(r->envid == c.envid);
        CHECK(r->auth == c.auth);
    }
}

TEST_CASE("parse_rcpt_params") {
    struct Case { Params in; const char* want_error; unsigned notify; std::string orcpt; };
    const std::vector<Case> cases = {
        {{}, "", 0, ""},
        {{{"NOTIFY", "NEVER"}}, "", 1, ""},
        {{{"NOTIFY", "never"}}, "", 1, ""},
        {{{"NOTIFY", "SUCCESS"}}, "", 2, ""},
        {{{"NOTIFY", "FAILURE"}}, "", 4, ""},
        {{{"NOTIFY", "DELAY"}}, "", 8, ""},
        {{{"NOTIFY", "SUCCESS,FAILURE"}}, "", 6, ""},
        {{{"NOTIFY", "SUCCESS,FAILURE,DELAY"}}, "", 14, ""},
        {{{"NOTIFY", "delay,Success"}}, "", 10, ""},
        {{{"NOTIFY", "FAILURE,FAILURE"}}, "", 4, ""},
        {{{"NOTIFY", "NEVER,SUCCESS"}}, "501 5.5.4 NOTIFY=NEVER cannot be combined", 0, ""},
        {{{"NOTIFY", "DELAY,NEVER"}}, "501 5.5.4 NOTIFY=NEVER cannot be combined", 0, ""},
        {{{"NOTIFY", "SOMETIMES"}}, "501 5.5.4 Bad NOTIFY parameter", 0, ""},
        {{{"NOTIFY", "SUCCESS,BOGUS"}}, "501 5.5.4 Bad NOTIFY parameter", 0, ""},
        {{{"NOTIFY", "NEVERX"}}, "501 5.5.4 Bad NOTIFY parameter", 0, ""},
        {{{"NOTIFY", ""}}, "501 5.5.4 Bad NOTIFY parameter", 0, ""},
        {{{"NOTIFY", ","}}, "501 5.5.4 Bad NOTIFY parameter", 0, ""},  // no keyword at all
        {{{"NOTIFY", ",,"}}, "501 5.5.4 Bad NOTIFY parameter", 0, ""},
        {{{"ORCPT", "rfc822;a+40b"}}, "", 0, "rfc822;a@b"},
        {{{"ORCPT", "RFC822;user+40b.example"}}, "", 0, "rfc822;user@b.example"},
        {{{"ORCPT", "rfc822;" + std::string(500, 'o')}}, "", 0, "rfc822;" + std::string(500, 'o')},
        {{{"ORCPT", "rfc822;" + std::string(501, 'o')}}, "501 5.5.4 Bad ORCPT parameter", 0, ""},
        {{{"ORCPT", "rfc822a+40b"}}, "501 5.5.4 Bad ORCPT parameter", 0, ""},   // no ';'
        {{{"ORCPT", ";a+40b"}}, "501 5.5.4 Bad ORCPT parameter", 0, ""},        // no type
        {{{"ORCPT", "rfc822;"}}, "501 5.5.4 Bad ORCPT parameter", 0, ""},       // no address
        {{{"ORCPT", "rfc822;a+4"}}, "501 5.5.4 Bad ORCPT parameter", 0, ""},    // bad xtext
        {{{"ORCPT", "rfc822;a+4g"}}, "501 5.5.4 Bad ORCPT parameter", 0, ""},
        {{{"ORCPT", "rfc822;a+0D+0Ab"}}, "501 5.5.4 Bad ORCPT parameter", 0, ""},  // no CRLF smuggling
        {{{"NOTIFY", "FAILURE"}, {"ORCPT", "rfc822;a+40b"}}, "", 4, "rfc822;a@b"},
        {{{"SIZE", "1"}}, "555 5.5.4 Unsupported option: SIZE", 0, ""},
        {{{"X-Y", ""}}, "555 5.5.4 Unsupported option: X-Y", 0, ""},
    };
    for (const auto& c : cases) {
        auto r = parse_rcpt_params(c.in);
        INFO("params " << show(c.in) << ": got '" << error_of(r) << "', want '" << c.want_error << "'");
        REQUIRE(error_of(r) == c.want_error);
        if (!r) continue;
        INFO("got notify " << r->notify << " orcpt '" << show(r->orcpt) << "'; want " << c.notify << " '" << show(c.orcpt) << "'");
        CHECK(r->notify == c.notify);
        CHECK(r->orcpt == c.orcpt);
    }
}

TEST_CASE("parse_path + params: a whole RCPT line") {
    auto cmd = parse_command("rcpt to:<USER@Example.ORG> notify=success,failure orcpt=rfc822;USER+40Example.ORG");
    REQUIRE(cmd);
    REQUIRE(cmd->verb == Verb::Rcpt);
    auto path = parse_path(cmd->arg, "TO:", false, true);
    INFO("got '" << error_of(path) << "', want ok");
    REQUIRE(path);
    CHECK(path->address == "USER@example.org");
    auto p = parse_rcpt_params(path->params);
    REQUIRE(p);
    CHECK(p->notify == 6);
    CHECK(p->orcpt == "rfc822;USER@Example.ORG");
}

TEST_CASE("xtext_decode") {
    using namespace std::string_literals;
    struct Case { std::string in; std::optional<std::string> want; };
    const std::vector<Case> cases = {
        {"", ""s},
        {"abc", "abc"s},
        {"+2B", "+"s},
        {"a+2Bb", "a+b"s},
        {"+3D", "="s},
        {"+40+41", "@A"s},
        {"+00", "\0"s},  // well-formed xtext; callers decide what they accept
        {"+FF", "\xff"s},
        {"!~", "!~"s},
        {"+", std::nullopt},
        {"+2", std::nullopt},
        {"a+", std::nullopt},
        {"+2b", std::nullopt},  // RFC 3461 hexchar is upper case
        {"+G0", std::nullopt},
        {"+ 2", std::nullopt},
        {"a=b", std::nullopt},
        {"a b", std::nullopt},
        {"\x7f", std::nullopt},
        {"\xc3\xa9", std::nullopt},
        {"a\r\n", std::nullopt},
    };
    for (const auto& c : cases) {
        auto got = xtext_decode(c.in);
        INFO("in '" << show(c.in) << "': got " << (got ? "'" + show(*got) + "'" : "nullopt") << ", want "
                    << (c.want ? "'" + show(*c.want) + "'" : "nullopt"));
        CHECK(got == c.want);
    }
}

TEST_CASE("valid_helo") {
    struct Case { std::string in; bool want; };
    const std::vector<Case> cases = {
        {"client.example", true},
        {"localhost", true},
        {"[192.0.2.1]", true},
        {"[IPv6:2001:db8::1]", true},
        {"x", true},
        {"~!#", true},  // printable ASCII only is checked; not a DNS check
        {std::string(255, 'h'), true},
        {std::string(256, 'h'), false},
        {"", false},
        {"a b", false},
        {"a\tb", false},
        {"a\x7f", false},
        {"a\x01", false},
        {"h\xc3\xa9.example", false},
        {std::string("a\0b", 3), false},
    };
    for (const auto& c : cases) {
        bool got = valid_helo(c.in);
        INFO("in '" << show(c.in) << "' (" << c.in.size() << " bytes): got " << got << ", want " << c.want);
        CHECK(got == c.want);
    }
}

TEST_CASE("UTF-8 addresses must be well-formed") {
    struct Case { std::string addr; bool ok; };
    const Case cases[] = {
        {"j\xc3\xb6rg@b.example", true},         // ö
        {"\xe2\x98\x83@b.example", true},         // snowman
        {"\xf0\x9f\x98\x80@b.example", true},     // emoji
        {"a\xff@b.example", false},               // never valid
        {"a\xc3@b.example", false},               // truncated sequence
        {"a\xc0\xaf@b.example", false},           // overlong '/'
        {"a\xed\xa0\x80@b.example", false},       // surrogate
        {"a\xf4\x90\x80\x80@b.example", false},   // past U+10FFFF
        {"a@b\xc3.example", false},               // truncated in the domain
    };
    for (auto& c : cases) {
        auto r = smtpd::parse_path("FROM:<" + c.addr + ">", "FROM:", true, false);
        INFO("address " << util::printable(c.addr) << ": got " << bool(r) << ", want " << c.ok);
        CHECK(bool(r) == c.ok);
    }
}
