// tls/tls.cpp - OpenSSL context set-up and connection summaries.
#include "tls/tls.hpp"

#include <openssl/err.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

std::string summary(const SSL* ssl) {
    if (ssl == nullptr) return {};
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
    int alg = 0;
    int bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;
    return std::string(SSL_get_version(ssl)) + " with cipher " + (c ? SSL_CIPHER_get_name(c) : "unknown") + " (" +
           std::to_string(bits) + "/" + std::to_string(alg) + " bits)";
}

}  // namespace postern::tls
