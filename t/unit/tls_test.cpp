// Unit tests for lib/tls: server contexts from certificate and key files,
// refusal of unsafe key files, and connection summaries over a socketpair.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "tls/tls.hpp"

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
