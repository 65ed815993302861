// Unit tests for smtp/protocol: the reply parser, EHLO features and the SMTP
// client state machine, driven through a fake ClientIo and ContentSource.
// Conversations run twice: replies fed whole and a byte at a time.
#include <catch2/catch.hpp>

#include <cstring>
#include <tuple>

#include "queue/queue.hpp"
#include "smtp/protocol.hpp"

using namespace postern;
using namespace postern::smtp;
using Kind = RcptResult::Kind;
using State = Client::State;

namespace {

const std::string Host = "mx.example[192.0.2.1]";  // as reasons name the peer (no port)

struct FakeIo : ClientIo {
    std::string out;                 // everything sent, in order
    std::vector<std::string> sends;  // one entry per send()
    bool tls = false, started_tls = false, closed = false;
    bool track_pending = false;      // output_pending() grows with send() until drain()
    std::size_t pending = 0;
    void send(std::string_view b) override {
        REQUIRE_FALSE(closed);
        out += b;
        sends.emplace_back(b);
        if (track_pending) pending += b.size();
    }
    void start_tls() override { started_tls = true; }
    bool tls_active() const override { return tls; }
    std::size_t output_pending() const override { return pending; }
    void close() override { closed = true; }
    std::string take() {
        std::string s = std::move(out);
        out.clear();
        return s;
    }
};

struct FakeSource : ContentSource {
    std::vector<std::string> pieces;
    std::size_t pos = 0, calls = 0;
    std::optional<std::size_t> fail_at;  // next() call number that fails
    explicit FakeSource(std::vector<std::string> p = {"Subject: t\r\n\r\nhello\r\n"}) : pieces(std::move(p)) {}
    Result<std::optional<std::string>> next() override {
        if (fail_at && calls == *fail_at) return Error::temp("read queue file ABC: Input/output error");
        ++calls;
        if (pos == pieces.size()) return std::optional<std::string>();
        return std::optional<std::string>(pieces[pos++]);
    }
};

std::string ehlo(std::vector<std::string> kw) {
    std::string s = "250";
    s += kw.empty() ? " " : "-";
    s += "mx.example\r\n";
    for (std::size_t i = 0; i < kw.size(); ++i) s += "250" + std::string(i + 1 == kw.size() ? " " : "-") + kw[i] + "\r\n";
    return s;
}

ClientSettings plain_settings() {
    ClientSettings s;
    s.helo_name = "client.example";
    s.tls = TlsPolicy::May;
    s.tls_available = false;
    return s;
}

struct Run {
    ClientSettings s;
    FakeIo io;
    std::unique_ptr<Client> c;
    std::vector<TransactionResult> results;
    bool bytewise = false;
    explicit Run(bool bw, ClientSettings st = plain_settings()) : s(std::move(st)), bytewise(bw) {
        c = std::make_unique<Client>(s, io, Host + ":25");
    }
    void feed(std::string_view in) {
        if (!bytewise) return c->feed(in);
        for (char ch : in) {
            if (!c) return;
            c->feed(std::string_view(&ch, 1));
        }
    }
    // Greeting and EHLO with these keywords, up to Ready.
    void ready(std::vector<std::string> kw) {
        feed("220 mx.example ESMTP\r\n");
        REQUIRE(io.take() == "EHLO client.example\r\n");
        feed(ehlo(std::move(kw)));
        REQUIRE(c->state() == State::Ready);
    }
    void begin(Transaction t, ContentSource& src) {
        c->begin(std::move(t), src, [this](const TransactionResult& r) { results.push_back(r); });
    }
};

Transaction txn(std::vector<std::string> rcpts) {
    Transaction t;
    t.sender = "s@example.org";
    t.size = 123;
    std::uint32_t i = 0;
    for (auto& a : rcpts) t.rcpts.push_back({i++, a, "", 0});
    return t;
}

void check_rcpt(const RcptResult& r, std::uint32_t index, Kind kind, const std::string& dsn, const std::string& reason) {
    INFO("recipient " << index);
    CHECK(r.index == index);
    CHECK(int(r.kind) == int(kind));
    CHECK(r.dsn == dsn);
    CHECK(r.reason == reason);
}

}  // namespace

// ---------------------------------------------------------------- replies

TEST_CASE("ReplyParser: well-formed replies, whole and byte at a time") {
    const std::string in =
        "220 mx.example ESMTP\r\n"
        "250-mx.example\n"            // bare LF accepted
        "250-PIPELINING\r\n"
        "250 SIZE 1000\r\n"
        "550 5.1.1 <x@y>: User unknown\r\n"
        "250\r\n"                     // no text at all
        "451 4.3.0\r\n"               // only an enhanced code
        "550 2.0.0 not enhanced: wrong class\r\n"
        "250 2.1.0x not a code\r\n"
        "250 2.1234.0 too many digits\r\n"
        "354 End data with <CR><LF>.<CR><LF>\r\n"
        "599 5.999.999 edge\r\n";
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        ReplyParser p;
        if (bytewise) {
            for (char ch : in) REQUIRE(p.feed(std::string_view(&ch, 1)));
        } else {
            REQUIRE(p.feed(in));
        }
        std::vector<Reply> got;
        while (auto r = p.next()) got.push_back(*r);
        REQUIRE(got.size() == 10);
        CHECK(got[0].code == 220);
        CHECK(got[0].lines == std::vector<std::string>{"mx.example ESMTP"});
        CHECK(got[1].code == 250);
        CHECK(got[1].lines == std::vector<std::string>{"mx.example", "PIPELINING", "SIZE 1000"});
        CHECK(got[1].text() == "250 mx.example PIPELINING SIZE 1000");
        CHECK(got[2].enhanced == "5.1.1");
        CHECK(got[2].text() == "550 5.1.1 <x@y>: User unknown");
        CHECK(got[3].code == 250);
        CHECK(got[3].lines == std::vector<std::string>{""});
        CHECK(got[3].text() == "250");
        CHECK(got[4].enhanced == "4.3.0");
        CHECK(got[5].enhanced == "");
        CHECK(got[6].enhanced == "");
        CHECK(got[7].enhanced == "");
        CHECK(got[8].code == 354);
        CHECK(got[8].enhanced == "");
        CHECK(got[9].enhanced == "5.999.999");
        CHECK_FALSE(p.failed());
        CHECK_FALSE(p.next());
    }
}

TEST_CASE("ReplyParser: malformed replies fail and stay failed") {
    struct Case { std::string in; const char* why; };
    const Case cases[] = {
        {"hello\r\n", "no code"},
        {"25\r\n", "short"},
        {"2500 x\r\n", "fourth character"},
        {"250_x\r\n", "fourth character"},
        {"199 x\r\n", "code below 200"},
        {"600 x\r\n", "code above 599"},
        {"050 x\r\n", "code below 200"},
        {"\r\n", "empty line"},
        {"250-a\r\n251 b\r\n", "codes differ"},
        {"25a ok\r\n", "not digits"},
    };
    for (auto& c : cases) {
        for (bool bytewise : {false, true}) {
            INFO(c.why << ", bytewise " << bytewise);
            ReplyParser p;
            bool ok = true;
            if (bytewise) {
                for (char ch : c.in) ok = ok && bool(p.feed(std::string_view(&ch, 1)));
            } else {
                ok = bool(p.feed(c.in));
            }
            CHECK_FALSE(ok);
            CHECK(p.failed());
            CHECK_FALSE(p.feed("250 ok\r\n"));
            CHECK_FALSE(p.next());
        }
    }
}

TEST_CASE("ReplyParser: replies before a bad line are still delivered") {
    ReplyParser p;
    auto r = p.feed("250 one\r\n251 two\r\nbogus\r\n250 three\r\n");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Protocol);
    CHECK(r.error().text.find("bogus") != std::string::npos);
    auto a = p.next();
    auto b = p.next();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->code == 250);
    CHECK(b->code == 251);
    CHECK_FALSE(p.next());
}

TEST_CASE("ReplyParser: line length limit, at the limit and one over") {
    for (bool crlf : {true, false}) {
        INFO("crlf " << crlf);
        std::string end = crlf ? "\r\n" : "\n";
        std::string at = "250 " + std::string(MaxReplyLine - 4 - end.size(), 'x') + end;
        REQUIRE(at.size() == MaxReplyLine);
        ReplyParser p;
        REQUIRE(p.feed(at));
        auto r = p.next();
        REQUIRE(r);
        CHECK(r->lines[0].size() == MaxReplyLine - 4 - end.size());

        std::string over = "250 " + std::string(MaxReplyLine - 3 - end.size(), 'x') + end;
        REQUIRE(over.size() == MaxReplyLine + 1);
        ReplyParser q;
        CHECK_FALSE(q.feed(over));
        // Byte at a time: fails as soon as the limit passes without a newline.
        ReplyParser b;
        bool failed = false;
        std::size_t n = 0;
        for (char ch : over) {
            ++n;
            if (!b.feed(std::string_view(&ch, 1))) {
                failed = true;
                break;
            }
        }
        CHECK(failed);
        CHECK(n <= MaxReplyLine + 1);
    }
    // Without any newline: the buffer never grows past the limit.
    ReplyParser p;
    CHECK(p.feed(std::string(MaxReplyLine - 1, '2')));
    CHECK_FALSE(p.feed("2"));
}

TEST_CASE("ReplyParser: line count limit, at the limit and one over") {
    auto reply = [](std::size_t n) {
        std::string s;
        for (std::size_t i = 1; i < n; ++i) s += "250-line\r\n";
        return s + "250 last\r\n";
    };
    ReplyParser p;
    REQUIRE(p.feed(reply(MaxReplyLines)));
    auto r = p.next();
    REQUIRE(r);
    CHECK(r->lines.size() == MaxReplyLines);
    ReplyParser q;
    CHECK_FALSE(q.feed(reply(MaxReplyLines + 1)));
    CHECK_FALSE(q.next());
}

TEST_CASE("Reply::text is printable and bounded") {
    Reply r;
    r.code = 550;
    r.lines = {"5.7.1 bad\x01\xff byte", "second"};
    CHECK(r.text() == "550 5.7.1 bad\\x01\\xff byte second");
    r.lines = {std::string(3000, '\x02')};
    CHECK(r.text().size() <= MaxReasonText);
    r.lines = {std::string(3000, 'a')};
    CHECK(r.text().size() <= MaxReasonText);
    CHECK(r.text().size() >= MaxReasonText - 10);
}

TEST_CASE("parse_ehlo") {
    ReplyParser p;
    REQUIRE(p.feed("250-mx.example says hi\r\n250-pipelining\r\n250-SIZE 52428800\r\n250-STARTTLS\r\n"
                   "250-AUTH PLAIN login CRAM-MD5\r\n250-AUTH=XOAUTH2\r\n250-8BITMIME\r\n250-DSN\r\n"
                   "250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"));
    auto f = parse_ehlo(*p.next());
    CHECK(f.esmtp);
    CHECK(f.pipelining);
    CHECK(f.starttls);
    CHECK(f.eightbitmime);
    CHECK(f.dsn);
    CHECK(f.smtputf8);
    REQUIRE(f.size_limit);
    CHECK(*f.size_limit == 52428800);
    CHECK(f.auth == std::set<std::string>{"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"});

    struct Case { const char* in; std::optional<std::uint64_t> size; };
    const Case sizes[] = {{"250-x\r\n250 SIZE\r\n", std::nullopt},
                          {"250-x\r\n250 SIZE 0\r\n", std::nullopt},
                          {"250-x\r\n250 SIZE abc\r\n", std::nullopt},
                          {"250-x\r\n250 SIZE 1000\r\n", 1000}};
    for (auto& c : sizes) {
        INFO(c.in);
        ReplyParser q;
        REQUIRE(q.feed(c.in));
        auto g = parse_ehlo(*q.next());
        CHECK(g.size_limit == c.size);
        CHECK_FALSE(g.pipelining);
    }
    // The first line is the server's name, never a keyword.
    ReplyParser q;
    REQUIRE(q.feed("250 PIPELINING\r\n"));
    CHECK_FALSE(parse_ehlo(*q.next()).pipelining);
}

// ---------------------------------------------------------------- session set-up

TEST_CASE("greeting refusals end the session") {
    struct Case { const char* greeting; const char* dsn; bool quit; };
    const Case cases[] = {
        {"554 5.7.1 mx.example go away\r\n", "5.7.1", true},
        {"554 no SMTP service here\r\n", "5.0.0", true},
        {"421 4.3.2 mx.example busy\r\n", "4.3.2", false},
        {"450 try later\r\n", "4.0.0", true},
        {"250 strange\r\n", "4.5.0", true},
    };
    for (auto& c : cases) {
        for (bool bytewise : {false, true}) {
            INFO(c.greeting << " bytewise " << bytewise);
            Run r(bytewise);
            CHECK(r.c->state() == State::Greeting);
            CHECK(r.c->waiting_for() == "greeting");
            FakeSource src;
            r.begin(txn({"a@x"}), src);  // begun early: waits for the session
            r.feed(std::string(c.greeting) + "250 more\r\n");
            CHECK(r.c->state() == State::Closed);
            CHECK(r.io.closed);
            CHECK(r.io.out == (c.quit ? "QUIT\r\n" : ""));
            std::string text(c.greeting, std::strlen(c.greeting) - 2);
            CHECK(r.c->session_error() == "host " + Host + " refused to talk to me: " + text);
            CHECK(r.c->session_dsn() == c.dsn);
            REQUIRE(r.results.size() == 1);
            CHECK(r.results[0].session_failed);
            CHECK(r.results[0].reason == r.c->session_error());
            CHECK(r.results[0].dsn == c.dsn);
            CHECK(r.results[0].rcpts.empty());
            CHECK(r.c->waiting_for() == "");
        }
    }
}

TEST_CASE("multi-line greeting, EHLO, features") {
    for (bool bytewise : {false, true}) {
        Run r(bytewise);
        r.feed("220-mx.example ESMTP\r\n220-no UCE\r\n220 really\r\n");
        CHECK(r.io.take() == "EHLO client.example\r\n");
        CHECK(r.c->state() == State::Helo);
        CHECK(r.c->waiting_for() == "helo");
        r.feed(ehlo({"PIPELINING", "SIZE 1000", "8BITMIME", "DSN", "SMTPUTF8"}));
        CHECK(r.c->state() == State::Ready);
        CHECK(r.c->waiting_for() == "");
        CHECK(r.c->features().esmtp);
        CHECK(r.c->features().pipelining);
        CHECK(r.c->features().size_limit == std::optional<std::uint64_t>(1000));
        CHECK(r.io.out.empty());
        CHECK(r.c->session_error().empty());
    }
}

TEST_CASE("EHLO refused: HELO; HELO refused ends the session") {
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        for (const char* refusal : {"502 5.5.2 Error: command not recognized\r\n", "500 what\r\n", "550 no\r\n"}) {
            Run r(bytewise);
            r.feed("220 old.example SMTP\r\n");
            r.io.take();
            r.feed(refusal);
            CHECK(r.io.take() == "HELO client.example\r\n");
            CHECK(r.c->waiting_for() == "helo");
            r.feed("250 old.example\r\n");
            CHECK(r.c->state() == State::Ready);
            CHECK_FALSE(r.c->features().esmtp);
            CHECK_FALSE(r.c->features().pipelining);
            // After HELO: no ESMTP parameters, one command at a time.
            FakeSource src;
            r.begin(txn({"a@x"}), src);
            CHECK(r.io.take() == "MAIL FROM:<s@example.org>\r\n");
        }
        Run r(bytewise);
        r.feed("220 x\r\n");
        r.feed("502 no EHLO\r\n");
        r.io.take();
        r.feed("550 5.7.1 no HELO either\r\n");
        CHECK(r.c->state() == State::Closed);
        CHECK(r.c->session_error() == "host " + Host + " said: 550 5.7.1 no HELO either (in reply to HELO command)");
        CHECK(r.c->session_dsn() == "5.7.1");
        CHECK(r.io.take() == "QUIT\r\n");
        CHECK(r.io.closed);
    }
}

TEST_CASE("EHLO 4xx ends the session; 421 without QUIT") {
    Run r(false);
    r.feed("220 x\r\n451 4.3.0 later\r\n");
    CHECK(r.c->state() == State::Closed);
    CHECK(r.c->session_error() == "host " + Host + " said: 451 4.3.0 later (in reply to EHLO command)");
    CHECK(r.io.out == "EHLO client.example\r\nQUIT\r\n");
    Run q(false);
    q.feed("220 x\r\n421 4.4.2 bye\r\n");
    CHECK(q.c->state() == State::Closed);
    CHECK(q.c->session_dsn() == "4.4.2");
    CHECK(q.io.out == "EHLO client.example\r\n");
    CHECK(q.io.closed);
}

TEST_CASE("a server that answers EHLO or HELO with our own name is a loop (5.4.6)") {
    auto st = plain_settings();
    st.myhostname = "mail.example.org";
    for (bool helo : {false, true}) {
        INFO("helo " << helo);
        Run r(false, st);
        r.feed("220 somebody ESMTP\r\n");
        r.io.take();
        if (helo) {
            r.feed("502 no\r\n");
            r.io.take();
        }
        r.feed("250-MAIL.example.org hello\r\n250 PIPELINING\r\n");
        CHECK(r.c->state() == State::Closed);
        CHECK(r.c->session_dsn() == "5.4.6");
        CHECK(r.c->session_error() ==
              "host " + Host + " replied to HELO/EHLO with my own hostname mail.example.org");
        CHECK(r.io.take() == "QUIT\r\n");
    }
    // Another name, or no myhostname set: no loop.
    Run other(false, st);
    other.ready({"PIPELINING"});
    Run unset(false);
    unset.feed("220 x\r\n");
    unset.feed("250 client.example\r\n");
    CHECK(unset.c->state() == State::Ready);
}

// ---------------------------------------------------------------- STARTTLS

namespace {
ClientSettings tls_settings(TlsPolicy p, bool available = true) {
    auto s = plain_settings();
    s.tls = p;
    s.tls_available = available;
    return s;
}
}  // namespace

TEST_CASE("STARTTLS: handshake, EHLO again, old features forgotten") {
    for (auto policy : {TlsPolicy::May, TlsPolicy::Encrypt, TlsPolicy::Verify}) {
        for (bool bytewise : {false, true}) {
            INFO("policy " << int(policy) << " bytewise " << bytewise);
            Run r(bytewise, tls_settings(policy));
            r.feed("220 x\r\n");
            r.io.take();
            r.feed(ehlo({"PIPELINING", "STARTTLS", "SIZE 10", "AUTH PLAIN"}));
            CHECK(r.io.take() == "STARTTLS\r\n");
            CHECK(r.c->state() == State::StartTls);
            CHECK(r.c->waiting_for() == "starttls");
            // Plaintext after the 220 (a response injection) must not count.
            r.feed("220 2.0.0 Ready to start TLS\r\n250 injected\r\n");
            CHECK(r.io.started_tls);
            CHECK(r.c->state() == State::StartTls);
            r.feed("250 more injected\r\n");
            CHECK(r.io.out.empty());
            r.io.tls = true;
            r.c->tls_started();
            CHECK(r.io.take() == "EHLO client.example\r\n");
            CHECK(r.c->state() == State::Helo);
            CHECK_FALSE(r.c->features().pipelining);  // forgotten until the new EHLO says so
            r.feed(ehlo({"8BITMIME"}));
            CHECK(r.c->state() == State::Ready);
            CHECK_FALSE(r.c->features().pipelining);
            CHECK_FALSE(r.c->features().size_limit);
            CHECK(r.c->features().eightbitmime);
            CHECK(r.io.out.empty());
        }
    }
}

TEST_CASE("STARTTLS is not used with policy none, without a TLS engine, or when TLS is active") {
    {
        Run r(false, tls_settings(TlsPolicy::None));
        r.ready({"STARTTLS"});
        CHECK(r.io.out.empty());
    }
    {
        Run r(false, tls_settings(TlsPolicy::May, false));
        r.ready({"STARTTLS"});
        CHECK(r.io.out.empty());
    }
    {
        Run r(false, tls_settings(TlsPolicy::May));
        r.ready({"PIPELINING"});  // not offered: plaintext with policy may
        CHECK(r.io.out.empty());
    }
}

TEST_CASE("STARTTLS refused: may goes on in plaintext, encrypt/verify give up") {
    for (bool bytewise : {false, true}) {
        Run r(bytewise, tls_settings(TlsPolicy::May));
        r.feed("220 x\r\n");
        r.feed(ehlo({"STARTTLS"}));
        r.io.take();
        r.feed("454 4.7.0 TLS not available due to local problem\r\n");
        CHECK(r.c->state() == State::Ready);
        CHECK(r.io.out.empty());
        CHECK_FALSE(r.io.started_tls);
        for (auto policy : {TlsPolicy::Encrypt, TlsPolicy::Verify}) {
            Run e(bytewise, tls_settings(policy));
            FakeSource src;
            e.begin(txn({"a@x"}), src);
            e.feed("220 x\r\n");
            e.feed(ehlo({"STARTTLS"}));
            e.io.take();
            e.feed("454 4.7.0 TLS not available\r\n");
            CHECK(e.c->state() == State::Closed);
            CHECK(e.c->session_error() == "TLS is required, but host " + Host +
                                              " refused to start TLS: 454 4.7.0 TLS not available");
            CHECK(e.c->session_dsn() == "4.7.4");
            CHECK(e.io.take() == "QUIT\r\n");
            REQUIRE(e.results.size() == 1);
            CHECK(e.results[0].session_failed);
            CHECK(e.results[0].dsn == "4.7.4");
        }
        // 421 to STARTTLS ends the session whatever the policy.
        Run q(bytewise, tls_settings(TlsPolicy::May));
        q.feed("220 x\r\n");
        q.feed(ehlo({"STARTTLS"}));
        q.io.take();
        q.feed("421 4.3.0 bye\r\n");
        CHECK(q.c->state() == State::Closed);
        CHECK(q.c->session_error() == "host " + Host + " said: 421 4.3.0 bye (in reply to STARTTLS command)");
        CHECK(q.io.out.empty());
    }
}

TEST_CASE("TLS required but not offered, or no TLS engine") {
    for (auto policy : {TlsPolicy::Encrypt, TlsPolicy::Verify}) {
        Run r(false, tls_settings(policy));
        r.feed("220 x\r\n");
        r.io.take();
        r.feed(ehlo({"PIPELINING"}));
        CHECK(r.c->state() == State::Closed);
        CHECK(r.c->session_error() == "TLS is required, but was not offered by host " + Host);
        CHECK(r.c->session_dsn() == "4.7.4");
        CHECK(r.io.take() == "QUIT\r\n");

        Run n(false, tls_settings(policy, false));
        n.feed("220 x\r\n");
        n.feed(ehlo({"STARTTLS"}));
        CHECK(n.c->state() == State::Closed);
        CHECK(n.c->session_error() == "TLS is required, but our TLS engine is unavailable");
        CHECK(n.c->session_dsn() == "4.7.4");

        // After HELO there is no STARTTLS to offer.
        Run h(false, tls_settings(policy));
        h.feed("220 x\r\n502 no\r\n250 ok\r\n");
        CHECK(h.c->state() == State::Closed);
        CHECK(h.c->session_error() == "TLS is required, but was not offered by host " + Host);
    }
}

TEST_CASE("TLS handshake failure") {
    struct Case { TlsPolicy p; const char* reason; };
    const Case cases[] = {
        {TlsPolicy::May, "TLS handshake with mx.example[192.0.2.1] failed: certificate\\x0a bad"},
        {TlsPolicy::Encrypt, "TLS is required, but the TLS handshake with mx.example[192.0.2.1] failed: certificate\\x0a bad"},
        {TlsPolicy::Verify, "TLS is required, but the TLS handshake with mx.example[192.0.2.1] failed: certificate\\x0a bad"},
    };
    for (auto& c : cases) {
        INFO("policy " << int(c.p));
        Run r(false, tls_settings(c.p));
        FakeSource src;
        r.begin(txn({"a@x"}), src);
        r.feed("220 x\r\n");
        r.feed(ehlo({"STARTTLS"}));
        r.feed("220 go\r\n");
        r.io.take();
        r.c->on_tls_failed("certificate\n bad");
        CHECK(r.c->state() == State::Closed);
        CHECK(r.c->session_error() == c.reason);
        CHECK(r.c->session_dsn() == "4.7.5");
        // Only when TLS was optional may the glue try the server without it.
        CHECK(r.c->opportunistic_tls_failed() == (c.p == TlsPolicy::May));
        CHECK(r.io.out.empty());
        CHECK(r.io.closed);
        REQUIRE(r.results.size() == 1);
        CHECK(r.results[0].session_failed);
        CHECK(r.results[0].reason == c.reason);
        // Later events change nothing.
        r.c->tls_started();
        r.c->on_timeout();
        r.c->on_disconnect();
        r.feed("250 ok\r\n");
        CHECK(r.results.size() == 1);
        CHECK(r.io.out.empty());
    }
}

TEST_CASE("start_tls may fail synchronously inside feed") {
    struct FailingIo : FakeIo {
        Client* c = nullptr;
        void start_tls() override {
            started_tls = true;
            c->on_tls_failed("TLS is not available");
        }
    };
    FailingIo io;
    Client c(tls_settings(TlsPolicy::May), io, Host + ":25");
    io.c = &c;
    c.feed("220 x\r\n" + ehlo({"STARTTLS"}) + "220 go\r\n250 junk\r\n");
    CHECK(io.started_tls);
    CHECK(c.state() == State::Closed);
    CHECK(c.session_error() == "TLS handshake with " + Host + " failed: TLS is not available");
}

// ---------------------------------------------------------------- AUTH

namespace {
ClientSettings auth_settings() {
    auto s = tls_settings(TlsPolicy::May);
    s.auth = std::make_pair(std::string("user"), std::string("pass"));
    return s;
}
// Greeting, EHLO, STARTTLS and the second EHLO (with kw).
void through_tls(Run& r, std::vector<std::string> kw) {
    r.feed("220 x\r\n");
    r.feed(ehlo({"STARTTLS"}));
    r.feed("220 go\r\n");
    r.io.tls = true;
    r.c->tls_started();
    r.io.take();
    r.feed(ehlo(std::move(kw)));
}
}  // namespace

TEST_CASE("AUTH PLAIN inside TLS") {
    for (bool bytewise : {false, true}) {
        Run r(bytewise, auth_settings());
        through_tls(r, {"AUTH LOGIN PLAIN", "PIPELINING"});
        CHECK(r.io.take() == "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");  // base64("\0user\0pass"); PLAIN preferred
        CHECK(r.c->state() == State::Auth);
        CHECK(r.c->waiting_for() == "auth");
        r.feed("235 2.7.0 Authentication successful\r\n");
        CHECK(r.c->state() == State::Ready);
        CHECK(r.io.out.empty());
    }
}

TEST_CASE("AUTH LOGIN inside TLS") {
    for (bool bytewise : {false, true}) {
        Run r(bytewise, auth_settings());
        through_tls(r, {"AUTH=LOGIN"});
        CHECK(r.io.take() == "AUTH LOGIN\r\n");
        r.feed("334 VXNlcm5hbWU6\r\n");
        CHECK(r.io.take() == "dXNlcg==\r\n");
        r.feed("334 UGFzc3dvcmQ6\r\n");
        CHECK(r.io.take() == "cGFzcw==\r\n");
        r.feed("235 2.7.0 ok\r\n");
        CHECK(r.c->state() == State::Ready);
    }
}

TEST_CASE("AUTH refused") {
    struct Case { std::string mech; std::string conversation; std::string reply; const char* dsn; bool quit; };
    const Case cases[] = {
        {"PLAIN", "", "535 5.7.8 Error: authentication failed: bad\r\n", "5.7.8", true},
        {"PLAIN", "", "454 4.7.0 Temporary authentication failure\r\n", "4.7.8", true},
        {"PLAIN", "", "421 4.7.0 bye\r\n", "4.7.8", false},
        {"PLAIN", "", "334 \r\n", "4.7.8", false},
        {"LOGIN", "334 VXNlcm5hbWU6\r\n", "535 5.7.8 no\r\n", "5.7.8", true},
        {"LOGIN", "", "504 5.5.4 unrecognized mechanism\r\n", "5.7.8", true},
    };
    for (auto& c : cases) {
        INFO(c.reply);
        Run r(false, auth_settings());
        FakeSource src;
        r.begin(txn({"a@x"}), src);
        through_tls(r, {"AUTH " + c.mech});
        r.feed(c.conversation);
        r.io.take();
        r.feed(c.reply);
        CHECK(r.c->state() == State::Closed);
        std::string text = c.reply.substr(0, c.reply.size() - 2);
        if (text.back() == ' ') text.pop_back();
        CHECK(r.c->session_error() == "SASL authentication failed; server " + Host + " said: " + text);
        CHECK(r.c->session_dsn() == c.dsn);
        CHECK(r.io.out == (c.quit ? "QUIT\r\n" : ""));
        REQUIRE(r.results.size() == 1);
        CHECK(r.results[0].session_failed);
        CHECK(r.results[0].dsn == c.dsn);
        CHECK(r.c->session_error().find("pass") == std::string::npos);
    }
}

TEST_CASE("no credentials without TLS") {
    for (auto policy : {TlsPolicy::None, TlsPolicy::May}) {
        auto s = auth_settings();
        s.tls = policy;
        Run r(false, s);
        r.feed("220 x\r\n");
        r.io.take();
        r.feed(ehlo({"AUTH PLAIN LOGIN"}));
        CHECK(r.c->state() == State::Closed);
        CHECK(r.c->session_error() == "refusing to send credentials to " + Host + " without TLS");
        CHECK(r.c->session_dsn() == "4.7.0");
        CHECK(r.io.out == "QUIT\r\n");
    }
    // STARTTLS refused with policy may: still no credentials in plaintext.
    Run r(false, auth_settings());
    r.feed("220 x\r\n");
    r.feed(ehlo({"STARTTLS", "AUTH PLAIN"}));
    r.feed("454 4.7.0 no TLS today\r\n");
    CHECK(r.c->state() == State::Closed);
    CHECK(r.c->session_dsn() == "4.7.0");
    CHECK(r.io.out == "EHLO client.example\r\nSTARTTLS\r\nQUIT\r\n");
}

TEST_CASE("no usable AUTH mechanism: go on without") {
    Run r(false, auth_settings());
    through_tls(r, {"AUTH CRAM-MD5 XOAUTH2"});
    CHECK(r.c->state() == State::Ready);
    CHECK(r.io.out.empty());
    Run n(false, auth_settings());
    through_tls(n, {"PIPELINING"});
    CHECK(n.c->state() == State::Ready);
}

// ---------------------------------------------------------------- transactions

TEST_CASE("pipelined transaction: exact bytes, mixed RCPT results") {
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        Run r(bytewise);
        r.ready({"PIPELINING", "SIZE 10000", "8BITMIME", "ENHANCEDSTATUSCODES"});
        FakeSource src({"Subject: t\r\n\r\nbody\r\n"});
        auto t = txn({"a@x", "b@x", "c@x"});
        t.body = "8BITMIME";
        r.begin(t, src);
        REQUIRE(r.io.sends.size() == 2);  // EHLO, then everything else at once
        CHECK(r.io.take() ==
              "MAIL FROM:<s@example.org> SIZE=123 BODY=8BITMIME\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
              "RCPT TO:<c@x>\r\nDATA\r\n");
        CHECK(r.c->state() == State::Busy);
        CHECK(r.c->waiting_for() == "mail");
        r.feed("250 2.1.0 Ok\r\n");
        CHECK(r.c->waiting_for() == "rcpt");
        r.feed("250 2.1.5 Ok\r\n550 5.1.1 <b@x>: Recipient address rejected: User unknown\r\n"
               "450 4.2.0 <c@x>: greylisted\r\n");
        CHECK(r.c->waiting_for() == "data");
        CHECK(r.io.out.empty());
        r.feed("354 End data with <CR><LF>.<CR><LF>\r\n");
        CHECK(r.io.take() == "Subject: t\r\n\r\nbody\r\n.\r\n");
        CHECK(r.c->waiting_for() == "data_done");
        CHECK(r.results.empty());
        r.feed("250 2.0.0 Ok: queued as ABC\r\n");
        CHECK(r.c->state() == State::Ready);
        REQUIRE(r.results.size() == 1);
        auto& res = r.results[0];
        CHECK_FALSE(res.session_failed);
        REQUIRE(res.rcpts.size() == 3);
        check_rcpt(res.rcpts[0], 0, Kind::Sent, "2.0.0", "250 2.0.0 Ok: queued as ABC");
        check_rcpt(res.rcpts[1], 1, Kind::Bounced, "5.1.1",
                   "host " + Host + " said: 550 5.1.1 <b@x>: Recipient address rejected: User unknown (in reply to RCPT TO command)");
        check_rcpt(res.rcpts[2], 2, Kind::Deferred, "4.2.0",
                   "host " + Host + " said: 450 4.2.0 <c@x>: greylisted (in reply to RCPT TO command)");
        CHECK(r.io.out.empty());
    }
}

TEST_CASE("transaction without PIPELINING: one command at a time") {
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        Run r(bytewise);
        r.ready({"SIZE", "8BITMIME"});  // SIZE without a limit: SIZE= still sent
        FakeSource src({"hello\r\n"});
        auto t = txn({"a@x", "b@x", "c@x"});
        t.body = "7BIT";
        r.begin(t, src);
        CHECK(r.io.take() == "MAIL FROM:<s@example.org> SIZE=123\r\n");
        r.feed("250 ok\r\n");
        CHECK(r.io.take() == "RCPT TO:<a@x>\r\n");
        r.feed("550 no such user\r\n");
        CHECK(r.io.take() == "RCPT TO:<b@x>\r\n");
        CHECK(r.c->waiting_for() == "rcpt");
        r.feed("251 will forward\r\n");
        CHECK(r.io.take() == "RCPT TO:<c@x>\r\n");
        r.feed("452 4.5.3 too many\r\n");
        CHECK(r.io.take() == "DATA\r\n");
        CHECK(r.c->waiting_for() == "data");
        r.feed("354 go\r\n");
        CHECK(r.io.take() == "hello\r\n.\r\n");
        r.feed("250 queued\r\n");
        REQUIRE(r.results.size() == 1);
        auto& res = r.results[0].rcpts;
        REQUIRE(res.size() == 3);
        check_rcpt(res[0], 0, Kind::Bounced, "5.0.0", "host " + Host + " said: 550 no such user (in reply to RCPT TO command)");
        check_rcpt(res[1], 1, Kind::Sent, "2.0.0", "250 queued");
        check_rcpt(res[2], 2, Kind::Deferred, "4.5.3", "host " + Host + " said: 452 4.5.3 too many (in reply to RCPT TO command)");
        CHECK(r.c->state() == State::Ready);
    }
}

TEST_CASE("MAIL refused: every recipient gets the MAIL reply") {
    for (bool pipelining : {false, true}) {
        INFO("pipelining " << pipelining);
        Run r(false);
        r.ready(pipelining ? std::vector<std::string>{"PIPELINING"} : std::vector<std::string>{});
        FakeSource src;
        r.begin(txn({"a@x", "b@x"}), src);
        r.io.take();
        r.feed("553 5.7.1 <s@example.org>: Sender address rejected\r\n");
        if (pipelining) {
            CHECK(r.results.empty());  // the RCPT and DATA replies are still due
            r.feed("503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n");
            CHECK(r.results.empty());
            r.feed("554 5.5.1 no valid recipients\r\n");
        }
        CHECK(r.io.out.empty());  // no RSET: there is no transaction to reset
        REQUIRE(r.results.size() == 1);
        std::string why = "host " + Host + " said: 553 5.7.1 <s@example.org>: Sender address rejected (in reply to MAIL FROM command)";
        REQUIRE(r.results[0].rcpts.size() == 2);
        check_rcpt(r.results[0].rcpts[0], 0, Kind::Bounced, "5.7.1", why);
        check_rcpt(r.results[0].rcpts[1], 1, Kind::Bounced, "5.7.1", why);
        CHECK(r.c->state() == State::Ready);
    }
    // 4xx defers.
    Run r(false);
    r.ready({});
    FakeSource src;
    r.begin(txn({"a@x"}), src);
    r.feed("451 4.3.0 try later\r\n");
    REQUIRE(r.results.size() == 1);
    check_rcpt(r.results[0].rcpts[0], 0, Kind::Deferred, "4.3.0",
               "host " + Host + " said: 451 4.3.0 try later (in reply to MAIL FROM command)");
}

TEST_CASE("pipelined MAIL refused but DATA got 354: end it empty, ignore the reply") {
    Run r(false);
    r.ready({"PIPELINING"});
    FakeSource src;
    r.begin(txn({"a@x"}), src);
    r.io.take();
    r.feed("550 no\r\n503 no\r\n354 go on\r\n");
    CHECK(r.io.take() == ".\r\n");
    CHECK(r.results.empty());
    r.feed("250 2.0.0 queued as NOTHING\r\n");
    REQUIRE(r.results.size() == 1);
    CHECK(int(r.results[0].rcpts[0].kind) == int(Kind::Bounced));
    CHECK(r.io.out.empty());
    CHECK(src.calls == 0);
    CHECK(r.c->state() == State::Ready);
}

TEST_CASE("no recipient accepted") {
    SECTION("pipelined, DATA refused: RSET, then the results") {
        Run r(false);
        r.ready({"PIPELINING"});
        FakeSource src;
        r.begin(txn({"a@x", "b@x"}), src);
        r.io.take();
        r.feed("250 ok\r\n550 5.1.1 no a\r\n450 4.1.1 no b\r\n554 5.5.1 Error: no valid recipients\r\n");
        CHECK(r.io.take() == "RSET\r\n");
        CHECK(r.results.empty());
        CHECK(r.c->state() == State::Busy);
        CHECK(r.c->waiting_for() == "mail");
        r.feed("250 2.0.0 Ok\r\n");
        REQUIRE(r.results.size() == 1);
        auto& res = r.results[0].rcpts;
        check_rcpt(res[0], 0, Kind::Bounced, "5.1.1", "host " + Host + " said: 550 5.1.1 no a (in reply to RCPT TO command)");
        check_rcpt(res[1], 1, Kind::Deferred, "4.1.1", "host " + Host + " said: 450 4.1.1 no b (in reply to RCPT TO command)");
        CHECK(r.c->state() == State::Ready);
        CHECK(src.calls == 0);
    }
    SECTION("pipelined, DATA got 354 anyway: just the dot") {
        Run r(false);
        r.ready({"PIPELINING"});
        FakeSource src;
        r.begin(txn({"a@x"}), src);
        r.io.take();
        r.feed("250 ok\r\n550 5.1.1 no a\r\n354 go\r\n");
        CHECK(r.io.take() == ".\r\n");
        CHECK(src.calls == 0);
        r.feed("554 5.5.1 no valid recipients\r\n");
        CHECK(r.io.out.empty());
        REQUIRE(r.results.size() == 1);
        check_rcpt(r.results[0].rcpts[0], 0, Kind::Bounced, "5.1.1",
                   "host " + Host + " said: 550 5.1.1 no a (in reply to RCPT TO command)");
        CHECK(r.c->state() == State::Ready);
    }
    SECTION("one at a time: no DATA, RSET") {
        Run r(false);
        r.ready({});
        FakeSource src;
        r.begin(txn({"a@x"}), src);
        r.feed("250 ok\r\n");
        r.io.take();
        r.feed("550 5.1.1 no a\r\n");
        CHECK(r.io.take() == "RSET\r\n");
        r.feed("250 ok\r\n");
        REQUIRE(r.results.size() == 1);
        CHECK(int(r.results[0].rcpts[0].kind) == int(Kind::Bounced));
        CHECK(r.c->state() == State::Ready);
    }
    SECTION("RSET refused: the results stand, the session ends") {
        Run r(false);
        r.ready({});
        FakeSource src;
        r.begin(txn({"a@x"}), src);
        r.feed("250 ok\r\n550 5.1.1 no a\r\n");
        r.io.take();
        r.feed("502 5.5.1 no RSET\r\n");
        CHECK(r.io.take() == "QUIT\r\n");
        REQUIRE(r.results.size() == 1);
        check_rcpt(r.results[0].rcpts[0], 0, Kind::Bounced, "5.1.1",
                   "host " + Host + " said: 550 5.1.1 no a (in reply to RCPT TO command)");
        CHECK(r.c->state() == State::Closed);
    }
}

TEST_CASE("DATA refused") {
    for (bool pipelining : {false, true}) {
        for (auto [reply, kind, dsn] : {std::tuple{"554 5.7.1 no data for you", Kind::Bounced, "5.7.1"},
                                        std::tuple{"451 4.3.0 local error", Kind::Deferred, "4.3.0"}}) {
            INFO("pipelining " << pipelining << " " << reply);
            Run r(false);
            r.ready(pipelining ? std::vector<std::string>{"PIPELINING"} : std::vector<std::string>{});
            FakeSource src;
            r.begin(txn({"a@x", "b@x"}), src);
            r.feed("250 ok\r\n250 ok\r\n550 5.1.1 no b\r\n");
            r.io.take();
            r.feed(std::string(reply) + "\r\n");
            CHECK(r.io.take() == "RSET\r\n");
            r.feed("250 ok\r\n");
            REQUIRE(r.results.size() == 1);
            auto& res = r.results[0].rcpts;
            check_rcpt(res[0], 0, kind, dsn, "host " + Host + " said: " + reply + " (in reply to DATA command)");
            CHECK(int(res[1].kind) == int(Kind::Bounced));
            CHECK(src.calls == 0);
            CHECK(r.c->state() == State::Ready);
        }
    }
}

TEST_CASE("end of DATA refused") {
    for (auto [reply, kind, dsn] : {std::tuple{"554 5.7.1 spam", Kind::Bounced, "5.7.1"},
                                    std::tuple{"451 4.3.0 try again", Kind::Deferred, "4.3.0"},
                                    std::tuple{"552 too big", Kind::Bounced, "5.0.0"}}) {
        for (bool bytewise : {false, true}) {
            INFO(reply << " bytewise " << bytewise);
            Run r(bytewise);
            r.ready({"PIPELINING"});
            FakeSource src;
            r.begin(txn({"a@x", "b@x"}), src);
            r.feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
            r.io.take();
            r.feed(std::string(reply) + "\r\n");
            REQUIRE(r.results.size() == 1);
            std::string why = "host " + Host + " said: " + reply + " (in reply to end of DATA command)";
            check_rcpt(r.results[0].rcpts[0], 0, kind, dsn, why);
            check_rcpt(r.results[0].rcpts[1], 1, kind, dsn, why);
            CHECK(r.io.out.empty());  // the transaction is over at the server: no RSET
            CHECK(r.c->state() == State::Ready);
        }
    }
}

TEST_CASE("content: dot-stuffing, line ends, the final CRLF") {
    struct Case { std::vector<std::string> pieces; std::string want; const char* why; };
    const Case cases[] = {
        {{"a\r\n.b\r\n..c\r\n.\r\n"}, "a\r\n..b\r\n...c\r\n..\r\n.\r\n", "dots at line starts"},
        {{".first\r\n"}, "..first\r\n.\r\n", "a dot on the very first line"},
        {{"x\r", "\n.y\r\n"}, "x\r\n..y\r\n.\r\n", "CRLF split over pieces"},
        {{"x\r\n", ".", "y\r\n"}, "x\r\n..y\r\n.\r\n", "a dot alone in a piece"},
        {{"abc"}, "abc\r\n.\r\n", "no final CRLF"},
        {{"abc\r"}, "abc\r\n.\r\n", "final CR without LF"},
        {{"a\nb\n.c\n"}, "a\r\nb\r\n..c\r\n.\r\n", "bare LF"},
        {{"a\r.b\r\n"}, "a\r.b\r\n.\r\n", "bare CR is no line end"},
        {{}, ".\r\n", "empty content"},
        {{"", "a\r\n", ""}, "a\r\n.\r\n", "empty pieces"},
        {{"a.\r\n"}, "a.\r\n.\r\n", "dot inside a line"},
    };
    for (auto& c : cases) {
        INFO(c.why);
        Run r(false);
        r.ready({"PIPELINING"});
        FakeSource src(c.pieces);
        r.begin(txn({"a@x"}), src);
        r.feed("250 ok\r\n250 ok\r\n");
        r.io.take();
        r.feed("354 go\r\n");
        r.c->pump();  // nothing left to send: harmless
        CHECK(r.io.take() == c.want);
    }
}

TEST_CASE("large content is streamed under back-pressure") {
    Run r(false);
    r.io.track_pending = true;
    r.ready({"PIPELINING"});
    std::vector<std::string> pieces;
    std::string want;
    for (int i = 0; i < 40; ++i) {
        std::string p;
        while (p.size() < 64 * 1024) p += "line " + std::to_string(i) + " .... ....\r\n.dot\r\n";
        pieces.push_back(p);
    }
    for (auto& p : pieces) {
        std::string s = p;
        std::size_t pos = 0;
        while ((pos = s.find("\r\n.", pos)) != std::string::npos) {
            s.insert(pos + 2, ".");
            pos += 3;
        }
        want += s;
    }
    want += ".\r\n";
    FakeSource src(pieces);
    r.begin(txn({"a@x"}), src);
    r.feed("250 ok\r\n250 ok\r\n");
    r.io.take();
    r.io.pending = 0;
    r.feed("354 go\r\n");
    std::string got = r.io.take();
    int rounds = 0;
    while (got.size() < want.size()) {
        // Each burst stops once the mark is passed: at most one piece over.
        CHECK(r.io.pending <= 256 * 1024 + 80 * 1024);
        CHECK(r.c->state() == State::Busy);
        CHECK(got.find("\r\n.\r\n") == std::string::npos);
        r.io.pending = 0;  // the socket took it all
        r.c->pump();
        got += r.io.take();
        REQUIRE(++rounds < 100);
    }
    CHECK(rounds >= 8);
    CHECK(got == want);
    CHECK(r.c->waiting_for() == "data_done");
    r.feed("250 ok\r\n");
    REQUIRE(r.results.size() == 1);
    CHECK(int(r.results[0].rcpts[0].kind) == int(Kind::Sent));
}

TEST_CASE("pump while the output is full sends nothing") {
    Run r(false);
    r.ready({"PIPELINING"});
    r.io.pending = 300 * 1024;
    FakeSource src({"a\r\n"});
    r.begin(txn({"a@x"}), src);
    r.feed("250 ok\r\n250 ok\r\n354 go\r\n");
    r.io.take();
    CHECK(src.calls == 0);
    r.c->pump();
    CHECK(r.io.out.empty());
    CHECK(r.c->state() == State::Busy);
    CHECK(r.c->waiting_for() == "data_done");
    r.io.pending = 0;
    r.c->pump();
    CHECK(r.io.take() == "a\r\n.\r\n");
}

TEST_CASE("content source error: connection dropped, recipients deferred") {
    Run r(false);
    r.ready({"PIPELINING"});
    FakeSource src({"a\r\n", "b\r\n"});
    src.fail_at = 1;
    r.begin(txn({"a@x", "b@x"}), src);
    r.feed("250 ok\r\n250 ok\r\n550 no b\r\n354 go\r\n");
    CHECK(r.io.out.find("a\r\n") != std::string::npos);
    CHECK(r.io.out.find(".\r\n") == std::string::npos);  // never the end of data
    CHECK(r.io.closed);
    CHECK(r.c->state() == State::Closed);
    REQUIRE(r.results.size() == 1);
    check_rcpt(r.results[0].rcpts[0], 0, Kind::Deferred, "4.3.0", "read queue file ABC: Input/output error");
    CHECK(int(r.results[0].rcpts[1].kind) == int(Kind::Bounced));
}

TEST_CASE("SMTPUTF8") {
    SECTION("not offered: bounced without MAIL, inside begin") {
        Run r(false);
        r.ready({"PIPELINING", "8BITMIME"});
        FakeSource src;
        auto t = txn({"a@x", "b@x"});
        t.smtputf8 = true;
        r.begin(t, src);
        CHECK(r.io.out.empty());
        REQUIRE(r.results.size() == 1);
        for (std::uint32_t i = 0; i < 2; ++i)
            check_rcpt(r.results[0].rcpts[i], i, Kind::Bounced, "5.6.7",
                       "SMTPUTF8 is required, but was not offered by host " + Host);
        CHECK(r.c->state() == State::Ready);
    }
    SECTION("offered: MAIL says so") {
        Run r(false);
        r.ready({"SMTPUTF8", "8BITMIME"});
        FakeSource src;
        auto t = txn({"a@x"});
        t.smtputf8 = true;
        t.body = "8bitmime";
        r.begin(t, src);
        CHECK(r.io.take() == "MAIL FROM:<s@example.org> BODY=8BITMIME SMTPUTF8\r\n");
    }
}

TEST_CASE("SIZE limit") {
    Run r(false);
    r.ready({"SIZE 1000"});
    FakeSource src;
    auto t = txn({"a@x"});
    t.size = 2000;
    r.begin(t, src);
    CHECK(r.io.out.empty());
    REQUIRE(r.results.size() == 1);
    check_rcpt(r.results[0].rcpts[0], 0, Kind::Bounced, "5.3.4",
               "message size 2000 exceeds size limit 1000 of server " + Host);
    // At the limit: sent.
    t.size = 1000;
    r.begin(t, src);
    CHECK(r.io.take() == "MAIL FROM:<s@example.org> SIZE=1000\r\n");
}

TEST_CASE("8-bit content to a server without 8BITMIME goes as it is") {
    Run r(false);
    r.ready({});
    FakeSource src;
    auto t = txn({"a@x"});
    t.body = "8BITMIME";
    r.begin(t, src);
    CHECK(r.io.take() == "MAIL FROM:<s@example.org>\r\n");
}

TEST_CASE("DSN parameters only when DSN is offered") {
    auto t = txn({"a@x", "b@x", "c@x", "d@x"});
    t.sender = "";
    t.ret = "hdrs";
    t.envid = "id+1=x y";
    t.rcpts[0].notify = queue::NotifySuccess | queue::NotifyFailure | queue::NotifyDelay;
    t.rcpts[0].orcpt = "rfc822;A+B=c@x";
    t.rcpts[1].notify = queue::NotifyNever;
    t.rcpts[2].notify = queue::NotifyDelay;
    t.rcpts[2].orcpt = "utf-8;\xc3\xa9@x";
    t.rcpts[3].orcpt = "bad type;d@x";
    {
        Run r(false);
        r.ready({"PIPELINING", "DSN"});
        FakeSource src;
        r.begin(t, src);
        CHECK(r.io.take() ==
              "MAIL FROM:<> RET=HDRS ENVID=id+2B1+3Dx+20y\r\n"
              "RCPT TO:<a@x> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;A+2BB+3Dc@x\r\n"
              "RCPT TO:<b@x> NOTIFY=NEVER\r\n"
              "RCPT TO:<c@x> NOTIFY=DELAY ORCPT=utf-8;+C3+A9@x\r\n"
              "RCPT TO:<d@x>\r\n"
              "DATA\r\n");
    }
    {
        Run r(false);
        r.ready({"PIPELINING"});
        FakeSource src;
        r.begin(t, src);
        CHECK(r.io.take() == "MAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\nDATA\r\n");
    }
    {
        // Over the RFC 3461 lengths: left out rather than refused.
        auto u = txn({"a@x"});
        u.envid = std::string(101, 'e');
        u.ret = "bogus";
        u.rcpts[0].orcpt = "rfc822;" + std::string(500, 'o');
        Run r(false);
        r.ready({"DSN"});
        FakeSource src;
        r.begin(u, src);
        CHECK(r.io.take() == "MAIL FROM:<s@example.org>\r\n");
        r.feed("250 ok\r\n");
        CHECK(r.io.take() == "RCPT TO:<a@x>\r\n");
    }
}

TEST_CASE("addresses that could inject commands are never sent") {
    Run r(false);
    r.ready({"PIPELINING"});
    FakeSource src;
    auto t = txn({"a@x\r\nRSET", "b@x"});
    r.begin(t, src);
    CHECK(r.io.take() == "MAIL FROM:<s@example.org>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
    r.feed("250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
    REQUIRE(r.results.size() == 1);
    check_rcpt(r.results[0].rcpts[0], 0, Kind::Bounced, "5.1.3", "invalid recipient address");
    CHECK(int(r.results[0].rcpts[1].kind) == int(Kind::Sent));

    r.io.take();
    auto u = txn({"a@x"});
    u.sender = "evil\n@x";
    r.begin(u, src);
    CHECK(r.io.out.empty());
    REQUIRE(r.results.size() == 2);
    check_rcpt(r.results[1].rcpts[0], 0, Kind::Bounced, "5.1.7", "invalid sender address");
    CHECK(r.c->state() == State::Ready);
}

TEST_CASE("421 in the middle of a transaction") {
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        Run r(bytewise);
        r.ready({"PIPELINING"});
        FakeSource src;
        r.begin(txn({"a@x", "b@x", "c@x"}), src);
        r.io.take();
        r.feed("250 ok\r\n550 5.1.1 no a\r\n250 ok\r\n421 4.7.0 mx.example Error: too many errors\r\n");
        CHECK(r.c->state() == State::Closed);
        CHECK(r.io.closed);
        CHECK(r.io.out.empty());  // no QUIT after 421
        REQUIRE(r.results.size() == 1);
        auto& res = r.results[0];
        CHECK_FALSE(res.session_failed);
        std::string why = "host " + Host + " said: 421 4.7.0 mx.example Error: too many errors (in reply to RCPT TO command)";
        check_rcpt(res.rcpts[0], 0, Kind::Bounced, "5.1.1", "host " + Host + " said: 550 5.1.1 no a (in reply to RCPT TO command)");
        check_rcpt(res.rcpts[1], 1, Kind::Deferred, "4.7.0", why);
        check_rcpt(res.rcpts[2], 2, Kind::Deferred, "4.7.0", why);
        CHECK(r.c->session_error() == why);
        r.feed("250 late\r\n");
        CHECK(r.results.size() == 1);
    }
    // 421 to the end of data, and while the content is still going out.
    Run r(false);
    r.ready({"PIPELINING"});
    FakeSource src;
    r.begin(txn({"a@x"}), src);
    r.feed("250 ok\r\n250 ok\r\n354 go\r\n421 shutting down\r\n");
    REQUIRE(r.results.size() == 1);
    check_rcpt(r.results[0].rcpts[0], 0, Kind::Deferred, "4.0.0",
               "host " + Host + " said: 421 shutting down (in reply to end of DATA command)");
    Run q(false);
    q.io.pending = 1 << 30;  // nothing goes out
    q.ready({"PIPELINING"});
    q.begin(txn({"a@x"}), src);
    q.feed("250 ok\r\n250 ok\r\n354 go\r\n421 4.4.2 idle too long\r\n");
    REQUIRE(q.results.size() == 1);
    check_rcpt(q.results[0].rcpts[0], 0, Kind::Deferred, "4.4.2",
               "host " + Host + " said: 421 4.4.2 idle too long (while sending message body)");
}

TEST_CASE("421 while idle ends the session") {
    Run r(false);
    r.ready({});
    r.feed("421 4.4.2 timeout\r\n");
    CHECK(r.c->state() == State::Closed);
    CHECK(r.c->session_error() == "host " + Host + " said: 421 4.4.2 timeout");
    CHECK(r.io.closed);
    FakeSource src;
    r.begin(txn({"a@x"}), src);  // too late: fails at once
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].session_failed);
    CHECK(r.results[0].reason == r.c->session_error());
    CHECK(r.results[0].dsn == "4.4.2");
}

TEST_CASE("protocol errors mid-transaction") {
    struct Case { std::string replies; std::string reason; };
    const Case cases[] = {
        {"250 ok\r\n354 go\r\n", "host " + Host + " said: 354 go (in reply to RCPT TO command)"},
        {"250 ok\r\n250 ok\r\n250 ok\r\n", "host " + Host + " said: 250 ok (in reply to DATA command)"},
        {"250 ok\r\n25", ""},
    };
    for (auto& c : cases) {
        INFO(c.replies);
        Run r(false);
        r.ready({"PIPELINING"});
        FakeSource src;
        r.begin(txn({"a@x"}), src);
        r.feed(c.replies);
        if (c.reason.empty()) {
            CHECK(r.results.empty());
            r.feed("x bad\r\n");
            REQUIRE(r.results.size() == 1);
            CHECK(r.results[0].rcpts[0].reason ==
                  "host " + Host + " sent a malformed reply: malformed reply line \"25x bad\" (while sending RCPT TO)");
        } else {
            REQUIRE(r.results.size() == 1);
            CHECK(r.results[0].rcpts[0].reason == c.reason);
        }
        CHECK(r.results[0].rcpts[0].dsn == "4.5.0");
        CHECK(int(r.results[0].rcpts[0].kind) == int(Kind::Deferred));
        CHECK(r.c->state() == State::Closed);
    }
}

TEST_CASE("a malformed or oversized reply before MAIL is a session failure") {
    Run r(false);
    FakeSource src;
    r.begin(txn({"a@x"}), src);
    r.feed("220 x\r\n");
    r.feed("250-" + std::string(MaxReplyLine, 'x'));
    CHECK(r.c->state() == State::Closed);
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].session_failed);
    CHECK(r.results[0].dsn == "4.5.0");
    CHECK(r.results[0].reason == "host " + Host + " sent a malformed reply: reply line longer than 4096 bytes "
                                                  "(while performing the EHLO handshake)");
}

TEST_CASE("timeouts and lost connections at each stage") {
    // Drives a session to a stage; returns whether a transaction was begun.
    struct Stage {
        const char* name;
        std::string replies;   // after greeting+EHLO unless setup
        bool setup;            // replies start from the greeting
        bool txn;              // a transaction is under way (past MAIL)
        const char* doing;
        const char* waiting;
    };
    const Stage stages[] = {
        {"greeting", "", true, false, "receiving the initial server greeting", "greeting"},
        {"ehlo", "220 x\r\n", true, false, "performing the EHLO handshake", "helo"},
        {"helo", "220 x\r\n502 no\r\n", true, false, "performing the HELO handshake", "helo"},
        {"mail", "", false, true, "sending MAIL FROM", "mail"},
        {"rcpt", "250 ok\r\n", false, true, "sending RCPT TO", "rcpt"},
        {"rcpt2", "250 ok\r\n250 ok\r\n", false, true, "sending RCPT TO", "rcpt"},
        {"data", "250 ok\r\n250 ok\r\n550 no\r\n", false, true, "sending DATA command", "data"},
        {"body", "250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n", false, true, "sending message body", "data_done"},
        {"dot", "250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n", false, true,
         "sending end of data -- message may be sent more than once", "data_done"},
    };
    for (bool timeout : {true, false}) {
        for (auto& st : stages) {
            INFO(st.name << (timeout ? " timeout" : " disconnect"));
            Run r(false);
            FakeSource src;
            if (std::string_view(st.name) == "body") r.io.pending = 1 << 30;
            if (st.setup) {
                r.begin(txn({"a@x", "b@x"}), src);
                r.feed(st.replies);
            } else {
                r.ready({});
                r.begin(txn({"a@x", "b@x"}), src);
                r.feed(st.replies);
            }
            CHECK(r.c->waiting_for() == st.waiting);
            r.io.take();
            if (timeout) r.c->on_timeout();
            else r.c->on_disconnect();
            std::string reason = timeout ? "conversation with " + Host + " timed out while " + st.doing
                                         : "lost connection with " + Host + " while " + st.doing;
            CHECK(r.c->state() == State::Closed);
            CHECK(r.io.closed);
            CHECK(r.io.out.empty());
            CHECK(r.c->session_error() == reason);
            CHECK(r.c->session_dsn() == "4.4.2");
            REQUIRE(r.results.size() == 1);
            auto& res = r.results[0];
            if (!st.txn) {
                CHECK(res.session_failed);
                CHECK(res.reason == reason);
                CHECK(res.dsn == "4.4.2");
                CHECK(res.rcpts.empty());
            } else {
                CHECK_FALSE(res.session_failed);
                REQUIRE(res.rcpts.size() == 2);
                check_rcpt(res.rcpts[0], 0, Kind::Deferred, "4.4.2", reason);
                if (std::string_view(st.name) == "data" || std::string_view(st.name) == "body" ||
                    std::string_view(st.name) == "dot")
                    CHECK(int(res.rcpts[1].kind) == int(Kind::Bounced));  // decided before: stays
                else
                    check_rcpt(res.rcpts[1], 1, Kind::Deferred, "4.4.2", reason);
            }
            // Nothing happens twice.
            r.c->on_timeout();
            r.c->on_disconnect();
            r.c->quit();
            CHECK(r.results.size() == 1);
            CHECK(r.io.out.empty());
        }
    }
}

TEST_CASE("timeouts during STARTTLS, the handshake and AUTH") {
    struct Case { const char* doing; int steps; };
    const Case cases[] = {{"sending STARTTLS", 0}, {"performing the TLS handshake", 1}, {"performing SASL authentication", 2}};
    for (auto& c : cases) {
        INFO(c.doing);
        Run r(false, auth_settings());
        r.feed("220 x\r\n");
        r.feed(ehlo({"STARTTLS"}));
        if (c.steps >= 1) r.feed("220 go\r\n");
        if (c.steps >= 2) {
            r.io.tls = true;
            r.c->tls_started();
            r.feed(ehlo({"AUTH PLAIN"}));
        }
        r.c->on_timeout();
        CHECK(r.c->session_error() == "conversation with " + Host + " timed out while " + c.doing);
    }
}

TEST_CASE("idle timeout and disconnect between transactions") {
    Run r(false);
    r.ready({});
    r.c->on_timeout();
    CHECK(r.io.out == "QUIT\r\n");
    CHECK(r.c->state() == State::Closed);
    Run d(false);
    d.ready({});
    d.c->on_disconnect();
    CHECK(d.io.out.empty());
    CHECK(d.c->state() == State::Closed);
    CHECK(d.c->session_error() == "lost connection with " + Host + " while idle");
}

TEST_CASE("two transactions on one session, then QUIT") {
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        Run r(bytewise);
        r.ready({"PIPELINING", "SIZE 100000"});
        FakeSource one({"one\r\n"}), two({"two\r\n"});
        r.begin(txn({"a@x"}), one);
        r.feed("250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued as ONE\r\n");
        CHECK(r.c->state() == State::Ready);
        auto t = txn({"b@y"});
        t.sender = "other@example.org";
        r.begin(t, two);
        r.feed("250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued as TWO\r\n");
        REQUIRE(r.results.size() == 2);
        CHECK(r.results[0].rcpts[0].reason == "250 2.0.0 queued as ONE");
        CHECK(r.results[1].rcpts[0].reason == "250 2.0.0 queued as TWO");
        CHECK(r.io.take() ==
              "MAIL FROM:<s@example.org> SIZE=123\r\nRCPT TO:<a@x>\r\nDATA\r\none\r\n.\r\n"
              "MAIL FROM:<other@example.org> SIZE=123\r\nRCPT TO:<b@y>\r\nDATA\r\ntwo\r\n.\r\n");
        r.c->quit();
        CHECK(r.io.take() == "QUIT\r\n");
        CHECK(r.c->state() == State::Quitting);
        CHECK(r.c->waiting_for() == "quit");
        CHECK_FALSE(r.io.closed);
        r.feed("221 2.0.0 Bye\r\n");
        CHECK(r.c->state() == State::Closed);
        CHECK(r.io.closed);
        CHECK(r.c->session_error().empty());
        r.c->quit();
        CHECK(r.io.out.empty());
    }
}

TEST_CASE("quit: a lost connection or a timeout instead of 221 is fine") {
    Run r(false);
    r.ready({});
    r.c->quit();
    r.c->on_disconnect();
    CHECK(r.c->state() == State::Closed);
    CHECK(r.c->session_error().empty());
    Run t(false);
    t.ready({});
    t.c->quit();
    t.c->on_timeout();
    CHECK(t.c->state() == State::Closed);
    CHECK(t.io.out == "QUIT\r\n");
}

TEST_CASE("quit before the session is ready hangs up") {
    Run r(false);
    FakeSource src;
    r.begin(txn({"a@x"}), src);
    r.feed("220 x\r\n");
    r.io.take();
    r.c->quit();
    CHECK(r.c->state() == State::Closed);
    CHECK(r.io.out.empty());
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].session_failed);
}

TEST_CASE("a transaction begun before the session is ready starts when it is") {
    for (bool bytewise : {false, true}) {
        Run r(bytewise);
        FakeSource src({"x\r\n"});
        r.begin(txn({"a@x"}), src);
        CHECK(r.io.out.empty());
        r.feed("220 x\r\n" + ehlo({"PIPELINING"}) + "250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n");
        CHECK(r.io.out == "EHLO client.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<a@x>\r\nDATA\r\nx\r\n.\r\n");
        REQUIRE(r.results.size() == 1);
        CHECK(int(r.results[0].rcpts[0].kind) == int(Kind::Sent));
    }
}

TEST_CASE("done may destroy the Client or begin the next transaction") {
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        Run r(bytewise);
        r.ready({"PIPELINING"});
        FakeSource src;
        int calls = 0;
        r.c->begin(txn({"a@x"}), src, [&](const TransactionResult&) {
            ++calls;
            r.c.reset();
        });
        // More replies in the same chunk after the one that ends the transaction.
        r.feed("250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n250 extra\r\n");
        CHECK(calls == 1);
        CHECK_FALSE(r.c);
    }
    for (bool bytewise : {false, true}) {
        Run r(bytewise);
        r.ready({"PIPELINING"});
        FakeSource one({"1\r\n"}), two({"2\r\n"});
        std::vector<std::string> reasons;
        r.c->begin(txn({"a@x"}), one, [&](const TransactionResult& res) {
            reasons.push_back(res.rcpts[0].reason);
            r.c->begin(txn({"b@x"}), two, [&](const TransactionResult& res2) {
                reasons.push_back(res2.rcpts[0].reason);
                r.c->quit();
            });
        });
        r.feed("250 ok\r\n250 ok\r\n354 go\r\n250 first\r\n250 ok\r\n250 ok\r\n354 go\r\n250 second\r\n221 bye\r\n");
        CHECK(reasons == std::vector<std::string>{"250 first", "250 second"});
        CHECK(r.c->state() == State::Closed);
        CHECK(r.io.out.find("2\r\n.\r\nQUIT\r\n") != std::string::npos);
    }
    // Destroyed inside done run from on_timeout, and from begin (immediate bounce).
    {
        Run r(false);
        r.ready({});
        FakeSource src;
        r.c->begin(txn({"a@x"}), src, [&](const TransactionResult&) { r.c.reset(); });
        r.c->on_timeout();
        CHECK_FALSE(r.c);
    }
    {
        Run r(false);
        r.ready({});
        FakeSource src;
        auto t = txn({"a@x"});
        t.smtputf8 = true;
        r.c->begin(t, src, [&](const TransactionResult&) { r.c.reset(); });
        CHECK_FALSE(r.c);
    }
}

TEST_CASE("a transaction with no recipients ends at once") {
    Run r(false);
    r.ready({});
    FakeSource src;
    r.begin(txn({}), src);
    CHECK(r.io.out.empty());
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0].rcpts.empty());
    CHECK_FALSE(r.results[0].session_failed);
    CHECK(r.c->state() == State::Ready);
}

TEST_CASE("the peer text keeps its name when it has no port") {
    FakeIo io;
    Client c(plain_settings(), io, "[2001:db8::1]");
    c.feed("554 no\r\n");
    CHECK(c.session_error() == "host [2001:db8::1] refused to talk to me: 554 no");
    FakeIo io2;
    Client c2(plain_settings(), io2, "mx[2001:db8::1]:587");
    c2.on_disconnect();
    CHECK(c2.session_error() == "lost connection with mx[2001:db8::1] while receiving the initial server greeting");
}
