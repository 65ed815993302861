// Unit tests for lib/tls: server contexts from certificate and key files,
// refusal of unsafe key files, connection summaries over a socketpair, and the
// client side with lib/event: client contexts, SNI, handshakes against
// servers with a self-signed certificate and with one from a test CA (trusted,
// name mismatch, IP address), STARTTLS in both directions on one loop,
// implicit TLS over connect_tcp, and failed handshakes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "event/event.hpp"
#include "tls/tls.hpp"
#include "t/unit/test_loop.hpp"
#include "t/unit/test_net.hpp"

using namespace postern;

namespace {
struct Certs {
    std::string dir, cert, key, other_key;
    Certs() {
        char tmpl[] = "/tmp/postern-tls-XXXXXX";
        dir = ::mkdtemp(tmpl);
        cert = dir + "/cert.pem";
        key = dir + "/key.pem";
        other_key = dir + "/other.pem";
        std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=t -keyout " + key + " -out " +
                          cert + " 2>/dev/null && openssl genrsa -out " + other_key + " 2048 2>/dev/null";
        REQUIRE(std::system(cmd.c_str()) == 0);
        ::chmod(key.c_str(), 0600);
        ::chmod(other_key.c_str(), 0600);
    }
    ~Certs() { std::filesystem::remove_all(dir); }
};
}  // namespace

TEST_CASE("server_context loads a matching certificate and key") {
    Certs c;
    auto ctx = tls::server_context(c.cert, c.key);
    REQUIRE(ctx);
    CHECK(SSL_CTX_get_min_proto_version(ctx->get()) == TLS1_2_VERSION);
    auto ssl = tls::new_ssl(ctx->get());
    CHECK(ssl != nullptr);
    CHECK(tls::summary(nullptr).empty());
}

TEST_CASE("server_context refuses what it must refuse") {
    Certs c;
    struct Case { std::string cert, key; const char* want; };
    std::vector<Case> cases = {
        {c.cert, c.dir + "/missing.pem", "No such file"},
        {c.dir + "/missing.pem", c.key, "cannot load certificate"},
        {c.cert, c.other_key, "match"},  // "key values mismatch" or "does not match"
        {c.cert, c.dir, "not a regular file"},
    };
    for (auto& k : cases) {
        auto r = tls::server_context(k.cert, k.key);
        INFO("cert " << k.cert << " key " << k.key << ": want error containing " << k.want);
        REQUIRE_FALSE(r);
        CHECK(r.error().text.find(k.want) != std::string::npos);
    }
    ::chmod(c.key.c_str(), 0640);
    auto r = tls::server_context(c.cert, c.key);
    REQUIRE_FALSE(r);
    CHECK(r.error().text.find("must not be accessible by group or others (mode 0640") != std::string::npos);
}

TEST_CASE("summary names protocol, cipher and bits after a handshake") {
    // The peer may be gone when TLS 1.3 session tickets are written.
    ::signal(SIGPIPE, SIG_IGN);
    Certs c;
    auto sctx = tls::server_context(c.cert, c.key);
    REQUIRE(sctx);
    tls::SslCtxPtr cctx(SSL_CTX_new(TLS_client_method()));
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    auto server = tls::new_ssl(sctx->get());
    auto client = tls::new_ssl(cctx.get());
    SSL_set_fd(server.get(), sv[0]);
    SSL_set_fd(client.get(), sv[1]);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(sv[0]);
        int ok = SSL_connect(client.get()) == 1;
        SSL_shutdown(client.get());
        _exit(ok ? 0 : 1);
    }
    ::close(sv[1]);
    REQUIRE(SSL_accept(server.get()) == 1);
    std::string s = tls::summary(server.get());
    INFO("summary: " << s);
    CHECK((s.rfind("TLSv1.3 with cipher ", 0) == 0 || s.rfind("TLSv1.2 with cipher ", 0) == 0));
    CHECK(s.find(" bits)") != std::string::npos);
    int st = 0;
    ::waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    ::close(sv[0]);
}

// ---- client side -----------------------------------------------------------------

namespace {

using namespace std::chrono_literals;

// A test CA and a server certificate it signed for mx.example.test and
// 127.0.0.1; a self-signed certificate for mx.example.test; EC keys (fast).
struct Pki {
    std::string dir, ca, cert, key, self_cert, self_key, empty;
    Pki() {
        char tmpl[] = "/tmp/postern-tls-pki-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        ca = dir + "/ca.pem";
        cert = dir + "/cert.pem";
        key = dir + "/key.pem";
        self_cert = dir + "/self.pem";
        self_key = dir + "/self.key";
        empty = dir + "/empty.pem";
        std::ofstream(dir + "/san.ext") << "subjectAltName=DNS:mx.example.test,IP:127.0.0.1\n";
        std::ofstream(empty) << "";
        const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
        std::string cmd = "cd " + dir + " && openssl req -x509" + ec + "-days 2 -subj '/CN=Postern Test CA'" +
                          " -keyout ca.key -out ca.pem 2>/dev/null" + " && openssl req" + ec +
                          "-subj /CN=mx.example.test -keyout key.pem -out leaf.csr 2>/dev/null" +
                          " && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2" +
                          " -extfile san.ext -out cert.pem 2>/dev/null" + " && openssl req -x509" + ec +
                          "-days 2 -subj /CN=mx.example.test -keyout self.key -out self.pem 2>/dev/null";
        REQUIRE(std::system(cmd.c_str()) == 0);
        ::chmod(key.c_str(), 0600);
        ::chmod(self_key.c_str(), 0600);
    }
    ~Pki() { std::filesystem::remove_all(dir); }
};

// The event loop with a safety timer (t/unit/test_loop.hpp).
using test::Loop;

using test::Listener;  // t/unit/test_net.hpp

std::string what_text(short what) {
    std::string s;
    if (what & BEV_EVENT_CONNECTED) s += "CONNECTED ";
    if (what & BEV_EVENT_ERROR) s += "ERROR ";
    if (what & BEV_EVENT_EOF) s += "EOF ";
    if (what & BEV_EVENT_TIMEOUT) s += "TIMEOUT ";
    return s.empty() ? "none" : s;
}

// Implicit TLS from connect_tcp + tls_client to a tls_server on loopback;
// runs until both handshakes ended and returns what the client saw.
struct Handshake {
    short client_what = 0, server_what = 0;
    tls::PeerCheck check;
    std::string summary, sni;
};
Handshake implicit_tls(const std::string& server_cert, const std::string& server_key, const std::string& ca_file,
                       const std::string& host) {
    ::signal(SIGPIPE, SIG_IGN);
    auto sctx = tls::server_context(server_cert, server_key);
    REQUIRE(sctx);
    auto cctx = tls::client_context(ca_file);
    INFO("client_context(" << ca_file << "): " << (cctx ? "ok" : cctx.error().text));
    REQUIRE(cctx);
    Loop loop;
    Listener l;
    auto c = event::connect_tcp("127.0.0.1", l.port, "");
    REQUIRE(c);
    auto ssl = tls::new_client_ssl(cctx->get(), host);
    REQUIRE(ssl);
    auto client = event::BufferEvent::tls_client(loop.base, std::move(*c), ssl.release());
    auto server = event::BufferEvent::tls_server(loop.base, l.accept(), tls::new_ssl(sctx->get()).release());
    Handshake h;
    auto maybe_exit = [&] {
        if (h.client_what && h.server_what) loop.base.exit();
    };
    client.on_event([&](short what) {
        h.client_what = what;
        if (what & BEV_EVENT_CONNECTED) {
            h.check = tls::check_peer(client.ssl(), host + "[127.0.0.1]:" + std::to_string(l.port));
            h.summary = tls::summary(client.ssl());
        }
        maybe_exit();
    });
    server.on_event([&](short what) {
        h.server_what = what;
        if (const char* n = SSL_get_servername(server.ssl(), TLSEXT_NAMETYPE_host_name)) h.sni = n;
        maybe_exit();
    });
    client.enable(EV_READ | EV_WRITE);
    server.enable(EV_READ | EV_WRITE);
    loop.run();
    INFO("client event: " << what_text(h.client_what) << "; server event: " << what_text(h.server_what)
                          << "; client error: " << client.error_text());
    REQUIRE((h.client_what & BEV_EVENT_CONNECTED) != 0);
    REQUIRE((h.server_what & BEV_EVENT_CONNECTED) != 0);
    return h;
}

}  // namespace

TEST_CASE("client_context loads a CA file now, or says why not") {
    Pki pki;
    auto sys = tls::client_context();
    INFO("the system CA bundle: " << (sys ? "ok" : sys.error().text));
    CHECK(sys);
    auto ctx = tls::client_context(pki.ca);
    REQUIRE(ctx);
    CHECK(SSL_CTX_get_min_proto_version(ctx->get()) == TLS1_2_VERSION);
    CHECK(SSL_CTX_get_verify_mode(ctx->get()) == SSL_VERIFY_NONE);
    CHECK(tls::client_context(""));  // no trust anchors at all
    for (const std::string& bad : {pki.dir + "/missing.pem", pki.empty, pki.dir}) {
        auto r = tls::client_context(bad);
        INFO(bad << ": want Error::config naming the file");
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Config);
        CHECK(r.error().text.rfind(bad + ": cannot load CA certificates: ", 0) == 0);
    }
}

TEST_CASE("new_client_ssl sends SNI for names only") {
    auto ctx = tls::client_context("");
    REQUIRE(ctx);
    auto named = tls::new_client_ssl(ctx->get(), "mx.example.test.");
    REQUIRE(named);
    const char* sni = SSL_get_servername(named.get(), TLSEXT_NAMETYPE_host_name);
    REQUIRE(sni != nullptr);
    CHECK(std::string(sni) == "mx.example.test");
    for (const char* no_sni : {"127.0.0.1", "2001:db8::1", ""}) {
        auto ssl = tls::new_client_ssl(ctx->get(), no_sni);
        REQUIRE(ssl);
        INFO(no_sni << ": want no SNI");
        CHECK(SSL_get_servername(ssl.get(), TLSEXT_NAMETYPE_host_name) == nullptr);
    }
    auto pc = tls::check_peer(nullptr, "x[1.2.3.4]:25");
    CHECK_FALSE(pc.trusted);
    CHECK(pc.reason == "certificate verification failed for x[1.2.3.4]:25: no TLS session");
}

TEST_CASE("check_peer: a self-signed server certificate is untrusted, with the reason") {
    Pki pki;
    auto h = implicit_tls(pki.self_cert, pki.self_key, tls::client_context() ? "/etc/ssl/certs/ca-certificates.crt" : "",
                          "mx.example.test");
    INFO("reason: " << h.check.reason);
    CHECK_FALSE(h.check.trusted);
    CHECK_FALSE(h.check.chain_ok);
    CHECK(h.check.name_matches);  // CN=mx.example.test, no subjectAltName
    std::string port = h.check.reason.substr(h.check.reason.find("]:") + 2);
    port = port.substr(0, port.find(':'));
    CHECK(h.check.reason ==
          "certificate verification failed for mx.example.test[127.0.0.1]:" + port + ": self-signed certificate");
    CHECK(h.sni == "mx.example.test");
    CHECK(h.summary.find(" with cipher ") != std::string::npos);
}

TEST_CASE("check_peer: a certificate from a CA in the CA file, by name, by address, and mismatched") {
    Pki pki;
    auto ok = implicit_tls(pki.cert, pki.key, pki.ca, "mx.example.test");
    INFO("by name: " << ok.check.reason);
    CHECK(ok.check.trusted);
    CHECK(ok.check.chain_ok);
    CHECK(ok.check.name_matches);
    CHECK(ok.check.reason.empty());

    auto ip = implicit_tls(pki.cert, pki.key, pki.ca, "127.0.0.1");
    INFO("by address: " << ip.check.reason);
    CHECK(ip.check.trusted);
    CHECK(ip.sni.empty());

    auto other = implicit_tls(pki.cert, pki.key, pki.ca, "other.example.test");
    INFO("other name: " << other.check.reason);
    CHECK_FALSE(other.check.trusted);
    CHECK(other.check.chain_ok);
    CHECK_FALSE(other.check.name_matches);
    CHECK(other.check.reason.find(": hostname mismatch") != std::string::npos);

    auto wrong_ip = implicit_tls(pki.cert, pki.key, pki.ca, "127.0.0.2");
    CHECK_FALSE(wrong_ip.check.trusted);
    CHECK(wrong_ip.check.reason.find(": IP address mismatch") != std::string::npos);

    auto noname = implicit_tls(pki.cert, pki.key, pki.ca, "");
    CHECK_FALSE(noname.check.trusted);
    CHECK(noname.check.chain_ok);
    CHECK(noname.check.reason.find("no host name to match") != std::string::npos);

    // The right name, but the CA is not in the CA file.
    auto unknown_ca = implicit_tls(pki.cert, pki.key, pki.self_cert, "mx.example.test");
    INFO("unknown CA: " << unknown_ca.check.reason);
    CHECK_FALSE(unknown_ca.check.trusted);
    CHECK_FALSE(unknown_ca.check.chain_ok);
    CHECK(unknown_ca.check.name_matches);
    CHECK(unknown_ca.check.reason.find(": unable to get local issuer certificate") != std::string::npos);
}

TEST_CASE("STARTTLS on a plain connection, both sides on one loop; plaintext sent ahead is dropped") {
    ::signal(SIGPIPE, SIG_IGN);
    Pki pki;
    auto sctx = tls::server_context(pki.cert, pki.key);
    auto cctx = tls::client_context(pki.ca);
    REQUIRE(sctx);
    REQUIRE(cctx);
    Loop loop;
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    event::BufferEvent client(loop.base, UniqueFd(sv[0]));
    event::BufferEvent server(loop.base, UniqueFd(sv[1]));
    std::vector<std::string> client_lines, server_lines;
    std::size_t client_dropped = 99, server_dropped = 99;
    bool client_tls = false, server_tls = false;
    tls::PeerCheck check;
    auto both_ready = [&] {
        if (client_tls && server_tls) {
            client.write("EHLO client.test\r\n");  // over TLS now
        }
    };
    client.on_read([&] {
        while (auto line = client.read_line(100)) {
            client_lines.push_back(*line);
            if (*line == "220 ready for TLS") {
                client_dropped = client.start_tls_client(loop.base,
                                                         tls::new_client_ssl(cctx->get(), "mx.example.test").release());
                return;  // the rest was plaintext: gone
            }
            if (*line == "250 hello over TLS") loop.base.exit();
        }
    });
    client.on_event([&](short what) {
        if (what & BEV_EVENT_CONNECTED) {
            client_tls = true;
            check = tls::check_peer(client.ssl(), "mx.example.test[local]:25");
            both_ready();
        } else {
            INFO("client event " << what_text(what) << ": " << client.error_text());
            FAIL_CHECK("client connection failed");
            loop.base.exit();
        }
    });
    server.on_read([&] {
        while (auto line = server.read_line(100)) {
            server_lines.push_back(*line);
            if (*line == "STARTTLS") {
                // The reply and a forged one in one segment, then TLS.
                server.write("220 ready for TLS\r\n250 forged\r\n");
                server_dropped = server.start_tls_server(loop.base, tls::new_ssl(sctx->get()).release());
                server.enable(EV_READ | EV_WRITE);  // as smtpd does; start_tls_client needs no such call
            } else if (*line == "EHLO client.test") {
                server.write("250 hello over TLS\r\n");
            }
        }
    });
    server.on_event([&](short what) {
        if (what & BEV_EVENT_CONNECTED) {
            server_tls = true;
            both_ready();
        } else {
            INFO("server event " << what_text(what) << ": " << server.error_text());
            FAIL_CHECK("server connection failed");
            loop.base.exit();
        }
    });
    client.enable(EV_READ | EV_WRITE);
    server.enable(EV_READ | EV_WRITE);
    client.write("STARTTLS\r\n");
    loop.run();
    CHECK(server_lines == std::vector<std::string>{"STARTTLS", "EHLO client.test"});
    INFO("client lines: got " << client_lines.size() << ", want the 220 and the 250 over TLS, not the forged one");
    CHECK(client_lines == std::vector<std::string>{"220 ready for TLS", "250 hello over TLS"});
    INFO("plaintext dropped by the client: got " << client_dropped << ", want 12 (\"250 forged\\r\\n\")");
    CHECK(client_dropped == 12);
    CHECK(server_dropped == 0);
    INFO("peer check: " << check.reason);
    CHECK(check.trusted);
    CHECK(client.ssl() != nullptr);
    CHECK(server.ssl() != nullptr);
    CHECK(tls::summary(client.ssl()).rfind("TLSv1.", 0) == 0);
}

TEST_CASE("TLS failures: a closed port, a server that does not speak TLS") {
    ::signal(SIGPIPE, SIG_IGN);
    auto cctx = tls::client_context("");
    REQUIRE(cctx);
    Loop loop;
    {
        // Implicit TLS to a port nobody listens on.
        Listener closed(false);
        auto c = event::connect_tcp("127.0.0.1", closed.port, "");
        REQUIRE(c);
        auto client = event::BufferEvent::tls_client(loop.base, std::move(*c),
                                                     tls::new_client_ssl(cctx->get(), "x.test").release());
        short what_seen = 0;
        client.on_event([&](short what) {
            what_seen = what;
            loop.base.exit();
        });
        client.enable(EV_READ | EV_WRITE);
        loop.run();
        INFO("closed port: got " << what_text(what_seen) << ", errno " << client.socket_error() << " ("
                                 << client.error_text() << "), want ERROR and ECONNREFUSED");
        CHECK((what_seen & BEV_EVENT_ERROR) != 0);
        CHECK((what_seen & BEV_EVENT_CONNECTED) == 0);
        CHECK(client.socket_error() == ECONNREFUSED);
        CHECK(client.error_text() == "Connection refused");
    }
    {
        // STARTTLS accepted, then plain text instead of a handshake.
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        UniqueFd peer(sv[1]);
        event::BufferEvent client(loop.base, UniqueFd(sv[0]));
        short what_seen = 0;
        client.on_event([&](short what) {
            what_seen = what;
            loop.base.exit();
        });
        client.enable(EV_READ | EV_WRITE);
        client.start_tls_client(loop.base, tls::new_client_ssl(cctx->get(), "x.test").release());
        std::string junk = "500 this is not TLS at all, sorry\r\n";
        REQUIRE(::send(peer.get(), junk.data(), junk.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(junk.size()));
        loop.run();
        INFO("plain server: got " << what_text(what_seen) << ": " << client.error_text());
        CHECK((what_seen & BEV_EVENT_ERROR) != 0);
        CHECK((what_seen & BEV_EVENT_CONNECTED) == 0);
        CHECK_FALSE(client.error_text().empty());
        CHECK(client.error_text().find("SSL routines") != std::string::npos);
    }
}
