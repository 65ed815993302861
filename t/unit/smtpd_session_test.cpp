// Unit tests for smtpd/session: the SMTP state machine driven without
// sockets through a fake Io and Backend, whole and byte at a time.
#include <catch2/catch.hpp>

#include "smtpd/session.hpp"

using namespace postern;
using namespace postern::smtpd;

namespace {

struct FakeIo : Io {
    std::string out;
    bool closed = false, tls = false, started_tls = false, active = false;
    void reply(std::string_view t) override { out += t; }
    void close() override { closed = true; }
    bool tls_available() const override { return tls; }
    bool tls_active() const override { return active; }
    std::string tls_summary() const override { return {}; }
    void start_tls() override { started_tls = true; }
};

struct FakeWriter : MessageWriter {
    std::string id_ = "QID1", data;
    bool finished = false;
    std::string* sink;
    explicit FakeWriter(std::string* s) : sink(s) {}
    const std::string& id() const override { return id_; }
    Result<void> append(std::string_view b) override {
        data += b;
        return {};
    }
    Result<void> finish() override {
        finished = true;
        *sink = data;
        return {};
    }
};

struct FakeBackend : Backend {
    std::string stored;
    Envelope env;
    int commits = 0;
    bool fail_commit = false;
    std::function<void(Result<std::string>)> pending;  // when async
    bool async = false;
    std::optional<bool> local_user_exists(std::string_view l) override {
        if (l == "down") return std::nullopt;
        return l == "alice" || l == "bob";
    }
    std::optional<bool> virtual_user_exists(std::string_view a) override {
        if (a == "down@virt.example") return std::nullopt;
        return a == "vera@virt.example";
    }
    Result<std::unique_ptr<MessageWriter>> open_message(const Envelope& e) override {
        env = e;
        return std::unique_ptr<MessageWriter>(std::make_unique<FakeWriter>(&stored));
    }
    void commit(std::unique_ptr<MessageWriter>, std::function<void(Result<std::string>)> done) override {
        ++commits;
        Result<std::string> r = fail_commit ? Result<std::string>(Error::temp("disk")) : Result<std::string>("QID1");
        if (async) pending = [done, r](Result<std::string>) { done(r); };
        else done(r);
    }
    std::int64_t now_us() override { return 1700000000000000; }

    // The auth daemon: alice/secret (system), vera@virt.example/pw (virtual);
    // user "locked" is locked out, "down" is a backend failure.
    bool auth_async = false;
    std::function<void()> auth_pending;
    std::vector<std::string> auth_calls;  // "MECH user password tls"
    void authenticate(std::string_view mech, std::string_view user, std::string_view password, const Peer&, bool tls,
                      std::function<void(AuthOutcome, AuthUser)> done) override {
        auth_calls.push_back(std::string(mech) + " " + std::string(user) + " " + std::string(password) + " " +
                             (tls ? "tls" : "plain"));
        AuthOutcome o = AuthOutcome::Fail;
        AuthUser u;
        if (user == "alice" && password == "secret") o = AuthOutcome::Ok, u.name = "alice";
        if (user == "vera@virt.example" && password == "pw") o = AuthOutcome::Ok, u.name = user, u.virtual_user = true;
        if (user == "locked") o = AuthOutcome::Locked;
        if (user == "down") o = AuthOutcome::TempFail;
        auth_pending = [done, o, u] { done(o, u); };
        if (!auth_async) auth_pending();
    }
    std::optional<bool> sender_owned(std::string_view sender, const AuthUser& user) override {
        if (sender == "down@example.org") return std::nullopt;
        return sender == user.name + "@example.org" || sender == user.name;
    }
};

Settings settings() {
    Settings s;
    s.hostname = "mx.example";
    s.banner = "mx.example ESMTP Postern";
    s.local_domains = {"example.org", "localhost"};
    s.mynetworks = *util::NetList::parse("10.0.0.0/8");
    s.size_limit = 1000;
    s.rcpt_limit = 100;
    s.line_limit = 512;
    s.hard_error_limit = 5;
    return s;
}

// Runs a whole conversation; returns the reply codes in order.
std::vector<std::string> codes(const std::string& out) {
    std::vector<std::string> v;
    std::size_t pos = 0;
    while (pos < out.size()) {
        auto e = out.find("\r\n", pos);
        std::string line = out.substr(pos, e - pos);
        if (line.size() >= 4 && line[3] == ' ') v.push_back(line.substr(0, 3));
        pos = e + 2;
    }
    return v;
}

struct Run {
    Settings s = settings();
    FakeIo io;
    FakeBackend be;
    std::unique_ptr<Session> session;
    explicit Run(std::string addr = "192.0.2.1") {
        Peer p;
        p.addr = addr;
        session = std::make_unique<Session>(s, be, io, p);
        session->start();
    }
    void feed(const std::string& in, bool bytewise) {
        if (!bytewise) return session->feed(in);
        for (char c : in) session->feed(std::string_view(&c, 1));
    }
};

}  // namespace

TEST_CASE("a whole transaction gives the same replies whole and byte at a time") {
    const std::string in =
        "EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=100\r\nRCPT TO:<alice@example.org>\r\n"
        "RCPT TO:<nobody@example.org>\r\nRCPT TO:<x@far.example>\r\nDATA\r\n"
        "Subject: t\r\nMessage-ID: <1@b>\r\n\r\n..dotted\r\nline\r\n.\r\nQUIT\r\n";
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        Run r;
        r.feed(in, bytewise);
        CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "250", "250", "550", "554", "354", "250", "221"});
        CHECK(r.io.closed);
        CHECK(r.be.commits == 1);
        CHECK(r.be.env.sender == "a@b.example");
        REQUIRE(r.be.env.recipients.size() == 1);
        CHECK(r.be.env.recipients[0].address == "alice@example.org");
        CHECK(r.be.env.protocol == "ESMTP");
        CHECK(r.be.stored.find("Received: from client.example (unknown [192.0.2.1])\r\n\tby mx.example (Postern) with ESMTP id QID1\r\n\tfor <alice@example.org>;") == 0);
        CHECK(r.be.stored.size() > 20);
        CHECK(r.be.stored.substr(r.be.stored.find("\r\n\r\n")) == "\r\n\r\n.dotted\r\nline\r\n");
    }
}

TEST_CASE("state and syntax errors") {
    struct Case { const char* in; std::vector<std::string> want; };
    const Case cases[] = {
        {"MAIL FROM:<a@b>\r\n", {"220", "503"}},
        {"HELO x\r\nRCPT TO:<alice@example.org>\r\n", {"220", "250", "503"}},
        {"HELO x\r\nDATA\r\n", {"220", "250", "503"}},
        {"HELO x\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n", {"220", "250", "250", "554"}},
        {"HELO x\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n", {"220", "250", "250", "503"}},
        {"HELO x\r\nMAIL FROM:<a@b.example> SIZE=10\r\n", {"220", "250", "555"}},  // no ESMTP params after HELO
        {"EHLO x\r\nMAIL FROM:<a@b.example> SIZE=1001\r\n", {"220", "250", "552"}},
        {"EHLO\r\n", {"220", "501"}},
        {"EHLO x\r\nMAIL FROM:a@b.example\r\nRCPT TO:<down@example.org>\r\n", {"220", "250", "250", "451"}},
        {"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster@example.org>\r\nRCPT TO:<bob+x@example.org>\r\n",
         {"220", "250", "250", "250", "250"}},
        {"EHLO x\r\nSTARTTLS\r\n", {"220", "250", "502"}},
        {"EHLO x\r\nAUTH PLAIN\r\n", {"220", "250", "503"}},
        {"EHLO x\r\nRSET\r\nNOOP\r\nHELP\r\nVRFY alice\r\nEXPN staff\r\n", {"220", "250", "250", "250", "214", "252", "502"}},
    };
    for (auto& c : cases) {
        for (bool bytewise : {false, true}) {
            INFO("input " << c.in << " bytewise " << bytewise);
            Run r;
            r.feed(c.in, bytewise);
            CHECK(codes(r.io.out) == c.want);
        }
    }
}

TEST_CASE("relay: mynetworks may relay, others may not") {
    Run inside("10.1.2.3");
    inside.feed("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@far.example>\r\n", false);
    CHECK(codes(inside.io.out).back() == "250");
    Run outside("192.0.2.9");
    outside.feed("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@far.example>\r\n", false);
    CHECK(codes(outside.io.out).back() == "554");
    CHECK(outside.io.out.find("5.7.1 <x@far.example>: Relay access denied") != std::string::npos);
}

TEST_CASE("hard error limit closes with 421") {
    Run r;
    r.feed("A\r\nB\r\nC\r\nD\r\nE\r\nF\r\n", false);
    auto c = codes(r.io.out);
    CHECK(c.back() == "421");
    CHECK(c.size() == 7);  // greeting, 5 errors, 421; F is never answered
    CHECK(r.io.closed);
}

TEST_CASE("line limit at the limit and one past it") {
    Run r;
    std::string at = "NOOP " + std::string(512 - 5, 'x');
    std::string over = at + "y";
    r.feed(at + "\r\n" + over + "\r\nNOOP\r\n", false);
    CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "500", "250"});
}

TEST_CASE("STARTTLS discards pipelined plaintext") {
    Run r;
    r.io.tls = true;
    r.feed("EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n", false);
    CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "220"});
    CHECK(r.io.started_tls);
    CHECK(r.io.out.find("STARTTLS") != std::string::npos);
}

TEST_CASE("250 waits for the commit; later commands wait too") {
    Run r;
    r.be.async = true;
    r.feed("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nhi\r\n.\r\nNOOP\r\n", false);
    CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "250", "250", "354"});
    CHECK(r.session->waiting());
    REQUIRE(r.be.pending);
    r.be.pending(std::string("QID1"));
    CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "250", "250", "354", "250", "250"});
    CHECK(r.io.out.find("250 2.0.0 Ok: queued as QID1") != std::string::npos);
}

TEST_CASE("a failed commit is a temporary error") {
    Run r;
    r.be.fail_commit = true;
    r.feed("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nhi\r\n.\r\n", false);
    CHECK(codes(r.io.out).back() == "451");
}

TEST_CASE("message size limit: refused after the data, session goes on") {
    Run r;
    r.feed("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n" + std::string(1200, 'x') +
               "\r\n.\r\nNOOP\r\n",
           false);
    CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "250", "250", "354", "552", "250"});
    CHECK(r.be.commits == 0);
}

TEST_CASE("VRFY: the same 252 by default; real answers only when enabled") {
    Run off;
    off.feed("VRFY alice\r\nVRFY nosuch\r\nVRFY\r\n", false);
    CHECK(codes(off.io.out) == std::vector<std::string>{"220", "252", "252", "501"});
    Run on;
    on.s.vrfy_disabled = false;
    on.feed("VRFY alice\r\nVRFY <nosuch@example.org>\r\nVRFY someone@far.example\r\nVRFY down\r\n", false);
    CHECK(codes(on.io.out) == std::vector<std::string>{"220", "250", "550", "252", "451"});
}

TEST_CASE("virtual mailbox domains: known users and postmaster accepted, unknown 550, lookup trouble 451") {
    Run r;
    r.s.virtual_domains = {"virt.example"};
    r.feed("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<vera@virt.example>\r\nRCPT TO:<Vera+tag@VIRT.example>\r\n"
           "RCPT TO:<postmaster@virt.example>\r\nRCPT TO:<nobody@virt.example>\r\nRCPT TO:<down@virt.example>\r\n",
           false);
    CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "250", "250", "250", "250", "550", "451"});
    CHECK(r.io.out.find("User unknown in virtual mailbox table") != std::string::npos);
}

namespace {

// "\0user\0password" in base64, as AUTH PLAIN sends it.
std::string plain(const std::string& user, const std::string& pw) {
    return sasl::base64_encode(std::string("\0", 1) + user + std::string("\0", 1) + pw);
}

struct AuthRun : Run {
    explicit AuthRun(bool tls_active = true, std::string addr = "192.0.2.1", bool tls_auth_only = true)
        : Run(addr) {
        // Settings are read per command, so changing them after start() is fine.
        s.sasl_enabled = true;
        s.tls_auth_only = tls_auth_only;
        io.active = tls_active;
    }
};

}  // namespace

TEST_CASE("AUTH is offered only over TLS, or in plaintext to loopback when allowed") {
    {
        AuthRun r(false);
        r.feed("EHLO c.example\r\nAUTH PLAIN " + plain("alice", "secret") + "\r\n", false);
        CHECK(r.io.out.find("AUTH PLAIN LOGIN") == std::string::npos);
        CHECK(codes(r.io.out).back() == "538");
        CHECK(r.be.auth_calls.empty());
    }
    {
        AuthRun r(false, "127.0.0.1", true);
        r.feed("EHLO c.example\r\n", false);
        CHECK(r.io.out.find("AUTH PLAIN LOGIN") == std::string::npos);
    }
    {
        AuthRun r(false, "127.0.0.1", false);
        r.feed("EHLO c.example\r\nAUTH PLAIN " + plain("alice", "secret") + "\r\n", false);
        CHECK(r.io.out.find("250-AUTH PLAIN LOGIN\r\n") != std::string::npos);
        CHECK(codes(r.io.out).back() == "235");
    }
    {
        AuthRun r(false, "192.0.2.9", false);  // not loopback: still not in plaintext
        r.feed("EHLO c.example\r\n", false);
        CHECK(r.io.out.find("AUTH") == std::string::npos);
    }
    {
        AuthRun r(true);
        r.s.sasl_enabled = false;
        r.feed("EHLO c.example\r\nAUTH PLAIN\r\n", false);
        CHECK(r.io.out.find("AUTH") == std::string::npos);
        CHECK(r.io.out.find("503 5.5.1 Error: authentication not enabled") != std::string::npos);
    }
}

TEST_CASE("AUTH PLAIN with an initial response lets the client relay; Received says ESMTPSA") {
    for (bool bytewise : {false, true}) {
        AuthRun r;
        r.feed("EHLO c.example\r\nAUTH PLAIN " + plain("alice", "secret") +
                   "\r\nMAIL FROM:<alice@example.org> AUTH=<>\r\nRCPT TO:<x@far.example>\r\nDATA\r\nSubject: t\r\n\r\nhi\r\n.\r\n",
               bytewise);
        CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "235", "250", "250", "354", "250"});
        REQUIRE(r.be.auth_calls.size() == 1);
        CHECK(r.be.auth_calls[0] == "PLAIN alice secret tls");
        CHECK(r.be.env.sasl_method == "PLAIN");
        CHECK(r.be.env.sasl_username == "alice");
        CHECK(r.be.env.protocol == "ESMTPSA");
        CHECK(r.be.stored.find("with ESMTPSA id") != std::string::npos);
    }
}

TEST_CASE("AUTH LOGIN and AUTH PLAIN without an initial response use 334 challenges") {
    AuthRun r;
    r.feed("EHLO c.example\r\nAUTH LOGIN\r\n", false);
    CHECK(r.io.out.find("334 VXNlcm5hbWU6\r\n") != std::string::npos);
    r.feed(sasl::base64_encode("alice") + "\r\n", false);
    CHECK(r.io.out.find("334 UGFzc3dvcmQ6\r\n") != std::string::npos);
    r.feed(sasl::base64_encode("secret") + "\r\n", false);
    CHECK(codes(r.io.out).back() == "235");
    CHECK(r.be.auth_calls.at(0) == "LOGIN alice secret tls");

    AuthRun p;
    p.feed("EHLO c.example\r\nAUTH plain\r\n", false);
    CHECK(p.io.out.find("334 \r\n") != std::string::npos);
    p.feed(plain("vera@virt.example", "pw") + "\r\n", false);
    CHECK(codes(p.io.out).back() == "235");
    p.feed("AUTH PLAIN " + plain("alice", "secret") + "\r\n", false);
    CHECK(p.io.out.find("503 5.5.1 Error: already authenticated") != std::string::npos);
}

TEST_CASE("failed, aborted and malformed AUTH exchanges; too many failures close the session") {
    AuthRun r;
    r.feed("EHLO c.example\r\nAUTH LOGIN\r\n*\r\n", false);
    CHECK(r.io.out.find("501 5.7.0 Authentication aborted") != std::string::npos);
    r.feed("AUTH PLAIN !!notbase64\r\n", false);
    CHECK(r.io.out.find("501 5.5.2 Cannot decode response") != std::string::npos);
    r.feed("AUTH PLAIN " + sasl::base64_encode("no nuls here") + "\r\n", false);
    CHECK(r.io.out.find("535 5.7.8") != std::string::npos);
    CHECK_FALSE(r.io.closed);  // two failures so far: an abort does not count
    CHECK(r.be.auth_calls.empty());
    r.feed("AUTH PLAIN " + plain("alice", "wrong") + "\r\n", false);
    CHECK(r.io.closed);

    AuthRun w;
    w.feed("EHLO c.example\r\nAUTH PLAIN " + plain("alice", "wrong") + "\r\n", false);
    CHECK(w.io.out.find("535 5.7.8 Error: authentication failed") != std::string::npos);
    CHECK_FALSE(w.io.closed);
    w.feed("MAIL FROM:<a@b.example>\r\nRCPT TO:<x@far.example>\r\n", false);
    CHECK(w.io.out.find("554 5.7.1 <x@far.example>: Relay access denied") != std::string::npos);
    w.feed("RSET\r\nAUTH PLAIN " + plain("alice", "wrong2") + "\r\nAUTH PLAIN " + plain("alice", "wrong3") + "\r\n", false);
    CHECK(w.io.out.find("421 4.7.0 mx.example Error: too many failed authentication attempts") != std::string::npos);
    CHECK(w.io.closed);

    AuthRun l;
    l.feed("EHLO c.example\r\nAUTH PLAIN " + plain("locked", "x") + "\r\nAUTH PLAIN " + plain("down", "x") + "\r\n", false);
    CHECK(l.io.out.find("454 4.7.0 Temporary authentication failure: too many failed attempts") != std::string::npos);
    CHECK(codes(l.io.out).back() == "454");

    AuthRun u;
    u.feed("EHLO c.example\r\nAUTH CRAM-MD5\r\nAUTH\r\nMAIL FROM:<a@b.example>\r\nAUTH PLAIN\r\n", false);
    CHECK(u.io.out.find("504 5.5.4 Unrecognized authentication type") != std::string::npos);
    CHECK(u.io.out.find("501 5.5.4 Syntax: AUTH mechanism") != std::string::npos);
    CHECK(u.io.out.find("503 5.5.1 Error: MAIL transaction in progress") != std::string::npos);
}

TEST_CASE("input pipelined after AUTH waits for the auth daemon's answer") {
    AuthRun r;
    r.be.auth_async = true;
    r.feed("EHLO c.example\r\nAUTH PLAIN " + plain("alice", "secret") + "\r\nMAIL FROM:<alice@example.org>\r\n", false);
    CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250"});
    CHECK(r.session->waiting());
    r.be.auth_pending();
    CHECK(codes(r.io.out) == std::vector<std::string>{"220", "250", "235", "250"});
}

TEST_CASE("submission: AUTH before MAIL, and the sender must be the user's own") {
    AuthRun r;
    r.s.auth_required = true;
    r.s.sender_login_check = true;
    r.feed("EHLO c.example\r\nMAIL FROM:<alice@example.org>\r\n", false);
    CHECK(r.io.out.find("530 5.7.0 Authentication required") != std::string::npos);
    r.feed("AUTH PLAIN " + plain("alice", "secret") + "\r\nMAIL FROM:<bob@example.org>\r\n", false);
    CHECK(r.io.out.find("553 5.7.1 <bob@example.org>: Sender address rejected: not owned by user alice") !=
          std::string::npos);
    r.feed("MAIL FROM:<down@example.org>\r\n", false);
    CHECK(r.io.out.find("451 4.3.0 <down@example.org>") != std::string::npos);
    r.feed("MAIL FROM:<Alice@Example.ORG>\r\n", false);
    CHECK(codes(r.io.out).back() == "250");

    AuthRun t(false);  // STARTTLS required and not done
    t.s.tls_required = true;
    t.feed("EHLO c.example\r\nAUTH PLAIN " + plain("alice", "secret") + "\r\n", false);
    CHECK(t.io.out.find("530 5.7.0 Must issue a STARTTLS command first") != std::string::npos);
}
