// t/unit/test_loop.hpp - an event loop for unit tests that cannot hang.
// A Base plus a safety timer: run() dispatches until a callback calls
// base.exit() and fails the test if the safety timer had to end it instead;
// run_for() dispatches for a fixed time when nothing is expected to exit.
// Not for production code (Catch2 assertions inside).
#pragma once

#include <chrono>

#include <catch2/catch.hpp>

#include "event/event.hpp"

namespace postern::test {

struct Loop {
    event::Base base;
    event::Event safety;
    bool timed_out = false;
    std::chrono::milliseconds limit;

    explicit Loop(std::chrono::milliseconds safety_limit = std::chrono::milliseconds(3000)) : limit(safety_limit) {
        safety = event::Event::timer(base, [this] {
            timed_out = true;
            base.exit();
        });
    }
    void run() {
        timed_out = false;
        safety.add(limit);
        base.dispatch();
        safety.del();
        INFO("event loop: got the safety timeout after " << limit.count() << " ms, want a callback to call exit()");
        REQUIRE_FALSE(timed_out);
    }
    void run_for(std::chrono::milliseconds d) {
        auto stop = event::Event::timer(base, [this] { base.exit(); });
        stop.add(d);
        base.dispatch();
    }
};

}  // namespace postern::test
