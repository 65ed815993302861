// t/unit/temp_queue.hpp - a throw-away queue directory for unit tests (made
// with queue::make_dirs, removed with everything in it at the end).
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "queue/queue.hpp"

namespace postern::test {

struct TempQueue {
    std::string path;
    TempQueue() {
        char tmpl[] = "/tmp/postern-queue-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
        REQUIRE(queue::make_dirs(path));
    }
    ~TempQueue() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempQueue(const TempQueue&) = delete;
    TempQueue& operator=(const TempQueue&) = delete;
    // The names in a subdirectory, sorted; with_temp = false leaves out the
    // ".tmp-*" files of writers at work.
    std::vector<std::string> list(const std::string& sub, bool with_temp = true) const {
        std::vector<std::string> out;
        for (auto& e : std::filesystem::directory_iterator(path + "/" + sub)) {
            std::string n = e.path().filename();
            if (with_temp || n.rfind(".tmp", 0) != 0) out.push_back(n);
        }
        std::sort(out.begin(), out.end());
        return out;
    }
};

}  // namespace postern::test
