// NAME
//   tls/tls.hpp - OpenSSL contexts for Postern's servers and clients
// PURPOSE
//   Builds server SSL_CTX objects from a certificate chain and key (TLS 1.2
//   and newer, no compression, no renegotiation, server cipher preference),
//   checks that key files are not readable by others, builds the client
//   context of the smtp agent (same protocol floor, trust anchors from a CA
//   file), judges a server's certificate after the handshake, and describes
//   a live connection the way Postfix logs it. Not the I/O: event::BufferEvent
//   does the TLS reads and writes; not the policy (may/encrypt/verify): the
//   caller decides what an untrusted peer means.
// SYNOPSIS
//   auto ctx = tls::server_context(cert_file, key_file);   // before chroot
//   tls::SslPtr ssl = tls::new_ssl(*ctx);
//   auto cctx = tls::client_context("/etc/ssl/certs/ca-certificates.crt");  // before chroot
//   tls::SslPtr c = tls::new_client_ssl(cctx->get(), "mx.example.org");  // -> BufferEvent::start_tls_client
//   tls::PeerCheck pc = tls::check_peer(bev.ssl(), target.text());  // after BEV_EVENT_CONNECTED
//   tls::summary(ssl.get());  // "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
// ERRORS
//   Error::config with the file name and OpenSSL's reason. new_ssl() and
//   new_client_ssl() return nullptr only when OpenSSL is out of memory.
// SECURITY
//   The key file must be a regular file owned by root or the caller and not
//   readable by group or others; anything else is refused.
//   The client context loads every CA certificate when it is created (never
//   lazily from a directory), so verification keeps working after chroot.
//   Client handshakes never fail on the certificate (SSL_VERIFY_NONE, which
//   opportunistic TLS needs); verification runs all the same and check_peer()
//   reports it. Names are matched per RFC 6125 (no partial wildcards).
// SEE ALSO
//   event/event.hpp (BufferEvent::start_tls_server, start_tls_client,
//   tls_client), smtpd/server.cpp, smtp/conn.cpp
#pragma once

#include <string>
#include <string_view>

#include "tls/handles.hpp"
#include "util/result.hpp"

namespace postern::tls {

Result<SslCtxPtr> server_context(const std::string& cert_file, const std::string& key_file);
SslPtr new_ssl(SSL_CTX* ctx);

// Client side. ca_file: PEM bundle of trusted CAs, read now and in full;
// "" = no trust anchors (every peer is untrusted). Error::config if the file
// cannot be read or holds no certificate.
Result<SslCtxPtr> client_context(const std::string& ca_file = "/etc/ssl/certs/ca-certificates.crt");
// An SSL for one connection to host: a name is sent as SNI and becomes the
// name the certificate must match; an IP address ("192.0.2.1",
// "2001:db8::1") must match an IP address in the certificate instead (no
// SNI); "" checks no name at all.
SslPtr new_client_ssl(SSL_CTX* ctx, const std::string& host);

struct PeerCheck {
    bool trusted = false;       // chain_ok and name_matches
    bool name_matches = false;  // the certificate names the host given to new_client_ssl
    std::string reason;         // why not trusted; "" when trusted
    bool chain_ok = false;      // the chain leads to a CA of the CA file (name not considered)
};
// After the handshake of an SSL from new_client_ssl(). peer names the
// server in the reason: "certificate verification failed for
// mx.example[192.0.2.1]:25: self-signed certificate" (several problems are
// joined with "; ", e.g. "...: unable to get local issuer certificate;
// hostname mismatch").
PeerCheck check_peer(const SSL* ssl, std::string_view peer = {});

std::string summary(const SSL* ssl);
// Text of OpenSSL's error queue (and clears it).
std::string last_error();

}  // namespace postern::tls
