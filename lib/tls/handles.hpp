// NAME
//   tls/handles.hpp - owning pointers for OpenSSL objects
// PURPOSE
//   Zero-size deleters (STYLE R1) for the OpenSSL types Postern keeps.
#pragma once

#include <openssl/ssl.h>

#include <memory>

#include "util/handles.hpp"

namespace postern::tls {

using SslCtxPtr = std::unique_ptr<SSL_CTX, CDeleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, CDeleter<SSL_free>>;

}  // namespace postern::tls
