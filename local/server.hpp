// NAME
//   local/server.hpp - one qmgr connection to the local agent
// PURPOSE
//   Reads DeliveryRequest frames from a connection until the peer closes it,
//   hands them to a handler (Agent::deliver_batch) and writes back one
//   DeliveryReply per request, in request order. qmgr may send several
//   requests back-to-back (for one destination); after the first, every
//   further request that has already started to arrive is taken into the
//   same batch (up to MaxBatchRequests), so that the agent can write them
//   with one child and one fsync per Maildir. A lone request is a batch of
//   one. Blocking: the Single skeleton gives each agent process one
//   connection, and master starts more processes. Not the delivery logic
//   (local/agent.hpp).
// SYNOPSIS
//   serve(conn.fd(), [&](const std::vector<delivery::Request>& b) { return agent.deliver_batch(b); }, timeout_ms);
// ERRORS
//   A malformed frame or request, a timeout or an I/O error ends the
//   connection with a warning (STYLE E4: never guess at a bad peer's
//   meaning); the requests of the batch read before it are still delivered
//   and answered first, exactly as if they had been answered one by one.
//   A handler that returns another number of replies than requests is a bug.
// SECURITY
//   Frames are bounded (RequestLimits: frame size, attribute count) before
//   anything is decoded; every request is checked by delivery::decode_request.
//   A batch holds at most MaxBatchRequests requests.
// SEE ALSO
//   delivery/delivery.hpp, ipc/ipc.hpp, service/service.hpp
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "delivery/delivery.hpp"
#include "ipc/ipc.hpp"

namespace postern::local {

// Room for MaxRecipients recipients of up to ~4 KB each, and the fixed attributes.
inline constexpr ipc::Limits RequestLimits{.max_frame = 8u << 20, .max_attrs = delivery::MaxRecipients + 32};
// Requests taken from the connection into one batch at most. qmgr sends
// about 20 at once; more would only delay the first reply.
inline constexpr std::size_t MaxBatchRequests = 50;

using Handler = std::function<std::vector<delivery::Reply>(const std::vector<delivery::Request>&)>;

// Returns the number of requests answered.
std::size_t serve(int fd, const Handler& handle, int timeout_ms);

}  // namespace postern::local
