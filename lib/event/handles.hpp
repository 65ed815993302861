// NAME
//   event/handles.hpp - owning pointers for libevent objects
// PURPOSE
//   Zero-size deleters (STYLE R1) so event.cpp never calls a free function by
//   hand. Not for use outside lib/event: other modules use event.hpp classes.
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <memory>

#include "util/handles.hpp"

namespace postern::event {

using EventBasePtr = std::unique_ptr<event_base, CDeleter<event_base_free>>;
using EventPtr = std::unique_ptr<::event, CDeleter<event_free>>;
using BufferEventPtr = std::unique_ptr<bufferevent, CDeleter<bufferevent_free>>;

}  // namespace postern::event
