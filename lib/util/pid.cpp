// util/pid.cpp - cached_pid(): getpid() once per process, reset in forked children.
#include "util/pid.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>

namespace postern::util {
namespace {

std::atomic<pid_t> g_pid{0};

void forget() noexcept { g_pid.store(0, std::memory_order_relaxed); }

}  // namespace

pid_t cached_pid() noexcept {
    pid_t pid = g_pid.load(std::memory_order_relaxed);
    if (pid == 0) {
        static const bool registered = [] {
            ::pthread_atfork(nullptr, nullptr, forget);
            return true;
        }();
        (void)registered;
        pid = ::getpid();
        g_pid.store(pid, std::memory_order_relaxed);
    }
    return pid;
}

}  // namespace postern::util
