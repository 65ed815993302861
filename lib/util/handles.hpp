// NAME
//   util/handles.hpp - zero-size deleters for C library handles
// PURPOSE
//   CDeleter<Fn> turns a C "free" function into a unique_ptr deleter, so each
//   module can write `using SslCtxPtr = std::unique_ptr<SSL_CTX, CDeleter<SSL_CTX_free>>;`
//   in its own handles.hpp. Not for handles whose close needs extra arguments
//   (BDB DB->close, pam_end): those get small classes.
// SYNOPSIS
//   using FilePtr = std::unique_ptr<FILE, CDeleter<std::fclose>>;
#pragma once

namespace postern {

template <auto Fn>
struct CDeleter {
    template <typename T>
    void operator()(T* p) const noexcept {
        if (p != nullptr) Fn(p);
    }
};

}  // namespace postern
