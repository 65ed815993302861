// NAME
//   dns/handles.hpp - owning pointer for the libunbound context
// PURPOSE
//   Zero-size deleter (STYLE R1) so dns.cpp never calls ub_ctx_delete by
//   hand. Not for use outside lib/dns.
#pragma once

#include <unbound.h>

#include <memory>

#include "util/handles.hpp"

namespace postern::dns {

using UbCtxPtr = std::unique_ptr<ub_ctx, CDeleter<ub_ctx_delete>>;

}  // namespace postern::dns
