// NAME
//   local/server.hpp - one qmgr connection to the local agent
// PURPOSE
//   Reads DeliveryRequest frames from a connection until the peer closes it,
//   hands each to a handler (Agent::deliver) and writes back its
//   DeliveryReply. Blocking, one request at a time: the Single skeleton gives
//   each agent process one connection, and master starts more processes.
//   Not the delivery logic (local/agent.hpp).
// SYNOPSIS
//   serve(conn.fd(), [&](const delivery::Request& r) { return agent.deliver(r); }, timeout_ms);
// ERRORS
//   A malformed frame or request, a timeout or an I/O error ends the
//   connection with a warning (STYLE E4: never guess at a bad peer's meaning).
// SECURITY
//   Frames are bounded (RequestLimits: frame size, attribute count) before
//   anything is decoded; every request is checked by delivery::decode_request.
// SEE ALSO
//   delivery/delivery.hpp, ipc/ipc.hpp, service/service.hpp
#pragma once

#include <functional>

#include "delivery/delivery.hpp"
#include "ipc/ipc.hpp"

namespace postern::local {

// Room for MaxRecipients recipients of up to ~4 KB each, and the fixed attributes.
inline constexpr ipc::Limits RequestLimits{.max_frame = 8u << 20, .max_attrs = delivery::MaxRecipients + 32};

using Handler = std::function<delivery::Reply(const delivery::Request&)>;

// Returns the number of requests answered.
std::size_t serve(int fd, const Handler& handle, int timeout_ms);

}  // namespace postern::local
