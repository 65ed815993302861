// tls/tls.cpp - OpenSSL context set-up, peer checks and connection summaries.
#include "tls/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

namespace postern::tls {

std::string last_error() {
    std::string out;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "unknown TLS error" : out;
}

namespace {

Result<void> check_key_file(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return Error::config(path + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return Error::config(path + ": not a regular file");
    if (st.st_uid != 0 && st.st_uid != ::geteuid())
        return Error::config(path + ": private key must be owned by root (it is owned by uid " + std::to_string(st.st_uid) + ")");
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        char mode[16];
        std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
        return Error::config(path + ": private key must not be accessible by group or others (mode " + mode +
                             "; chmod 600 it)");
    }
    return {};
}

}  // namespace

Result<SslCtxPtr> server_context(const std::string& cert_file, const std::string& key_file) {
    if (auto r = check_key_file(key_file); !r) return r.error();
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) return Error::config("SSL_CTX_new: " + last_error());
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);  // small idle sessions
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1)
        return Error::config(cert_file + ": cannot load certificate: " + last_error());
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1)
        return Error::config(key_file + ": cannot load private key: " + last_error());
    if (SSL_CTX_check_private_key(ctx.get()) != 1)
        return Error::config(key_file + ": private key does not match " + cert_file + ": " + last_error());
    return ctx;
}

SslPtr new_ssl(SSL_CTX* ctx) { return SslPtr(SSL_new(ctx)); }

namespace {

// What the verification of a client connection found, kept in the SSL's
// ex_data as plain numbers (no allocation, nothing to free):
//   Verified: 0 = never ran (no certificate), else 1 | first chain error << 1
//   NameError: the X509_V_ERR_*_MISMATCH seen, 0 = none
//   Named:     1 when new_client_ssl() set a name or address to match
enum Slot { Verified, NameError, Named, SlotCount };

int slot_index(Slot s) {
    static const int idx[SlotCount] = {
        SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr),
        SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr),
        SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr),
    };
    return idx[s];
}

std::uintptr_t get_slot(const SSL* ssl, Slot s) {
    return reinterpret_cast<std::uintptr_t>(SSL_get_ex_data(ssl, slot_index(s)));
}
void set_slot(SSL* ssl, Slot s, std::uintptr_t v) {
    SSL_set_ex_data(ssl, slot_index(s), reinterpret_cast<void*>(v));
}

bool is_name_error(int err) {
    return err == X509_V_ERR_HOSTNAME_MISMATCH || err == X509_V_ERR_IP_ADDRESS_MISMATCH ||
           err == X509_V_ERR_EMAIL_MISMATCH;
}

// The verify callback of client connections: notes every problem and lets
// the verification go on (returning 1), so that both the chain and the name
// are judged; the handshake itself never fails on them (SSL_VERIFY_NONE).
int record_verify(int ok, X509_STORE_CTX* sctx) noexcept {
    auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
    if (ssl == nullptr) return ok;
    std::uintptr_t verified = get_slot(ssl, Verified) | 1;
    if (!ok) {
        int err = X509_STORE_CTX_get_error(sctx);
        if (is_name_error(err)) {
            if (get_slot(ssl, NameError) == 0) set_slot(ssl, NameError, static_cast<std::uintptr_t>(err));
        } else if ((verified >> 1) == 0 && err != X509_V_OK) {
            verified |= static_cast<std::uintptr_t>(err) << 1;
        }
    }
    set_slot(ssl, Verified, verified);
    return 1;
}

bool is_ip_address(const std::string& s) {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

Result<SslCtxPtr> client_context(const std::string& ca_file) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) return Error::config("SSL_CTX_new: " + last_error());
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, record_verify);
    if (!ca_file.empty()) {
        ERR_clear_error();
        // Note: a file (unlike a CApath directory) is read whole here; a
        // chrooted process never needs to open it again.
        if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1)
            return Error::config(ca_file + ": cannot load CA certificates: " + last_error());
    }
    return ctx;
}

SslPtr new_client_ssl(SSL_CTX* ctx, const std::string& host) {
    SslPtr ssl(SSL_new(ctx));
    if (!ssl) return ssl;
    std::string h = host;
    if (h.size() > 1 && h.back() == '.') h.pop_back();
    if (h.empty()) return ssl;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = 0;
    if (is_ip_address(h)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, h.c_str());
    } else {
        ok = X509_VERIFY_PARAM_set1_host(param, h.c_str(), 0);
        SSL_set_tlsext_host_name(ssl.get(), h.c_str());
    }
    // A name OpenSSL refused (it has a NUL, say) stays unset: nothing can match it.
    if (ok == 1) set_slot(ssl.get(), Named, 1);
    ERR_clear_error();
    return ssl;
}

PeerCheck check_peer(const SSL* ssl, std::string_view peer) {
    PeerCheck pc;
    std::vector<std::string> why;
    X509* cert = ssl != nullptr ? SSL_get0_peer_certificate(ssl) : nullptr;
    if (cert == nullptr) {
        why.push_back(ssl != nullptr ? "no server certificate" : "no TLS session");
    } else {
        std::uintptr_t verified = get_slot(ssl, Verified);
        auto chain_err = static_cast<long>(verified >> 1);
        auto name_err = static_cast<long>(get_slot(ssl, NameError));
        bool named = get_slot(ssl, Named) != 0;
        pc.chain_ok = verified != 0 && chain_err == 0;
        pc.name_matches = verified != 0 && named && name_err == 0;
        if (verified == 0) why.push_back("certificate not verified");
        else if (chain_err != 0) why.push_back(X509_verify_cert_error_string(chain_err));
        if (!named) why.push_back("no host name to match");
        else if (name_err != 0) why.push_back(X509_verify_cert_error_string(name_err));
    }
    pc.trusted = pc.chain_ok && pc.name_matches;
    if (!pc.trusted) {
        pc.reason = "certificate verification failed";
        if (!peer.empty()) pc.reason += " for " + std::string(peer);
        pc.reason += ": ";
        for (std::size_t i = 0; i < why.size(); ++i) pc.reason += (i ? "; " : "") + why[i];
    }
    return pc;
}

std::string summary(const SSL* ssl) {
    if (ssl == nullptr) return {};
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
    int alg = 0;
    int bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;
    return std::string(SSL_get_version(ssl)) + " with cipher " + (c ? SSL_CIPHER_get_name(c) : "unknown") + " (" +
           std::to_string(bits) + "/" + std::to_string(alg) + " bits)";
}

}  // namespace postern::tls
