// NAME
//   tls/tls.hpp - OpenSSL contexts for Postern's servers and clients
// PURPOSE
//   Builds server SSL_CTX objects from a certificate chain and key (TLS 1.2
//   and newer, no compression, no renegotiation, server cipher preference),
//   checks that key files are not readable by others, and describes a live
//   connection the way Postfix logs it. Not the I/O: event::BufferEvent does
//   the TLS reads and writes.
// SYNOPSIS
//   auto ctx = tls::server_context(cert_file, key_file);   // before chroot
//   tls::SslPtr ssl = tls::new_ssl(*ctx);
//   tls::summary(ssl.get());  // "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
// ERRORS
//   Error::config with the file name and OpenSSL's reason.
// SECURITY
//   The key file must be a regular file owned by root or the caller and not
//   readable by group or others; anything else is refused.
// SEE ALSO
//   event/event.hpp (BufferEvent::start_tls_server), smtpd/server.cpp
#pragma once

#include <string>

#include "tls/handles.hpp"
#include "util/result.hpp"

namespace postern::tls {

Result<SslCtxPtr> server_context(const std::string& cert_file, const std::string& key_file);
SslPtr new_ssl(SSL_CTX* ctx);
std::string summary(const SSL* ssl);
// Text of OpenSSL's error queue (and clears it).
std::string last_error();

}  // namespace postern::tls
