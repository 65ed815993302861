// authd/worker_pool.cpp - WorkerPool: blocking checks on threads, results back through an eventfd.
#include "authd/worker_pool.hpp"

#include <sys/eventfd.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <exception>

#include "log/log.hpp"

namespace postern::authd {

WorkerPool::WorkerPool(event::Base& base, int threads, std::size_t max_queued)
    : max_queued_(max_queued), wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (!wake_fd_) log::fatal(EX_OSERR, "eventfd: %s", errno_text(errno).c_str());
    wake_ev_ = event::Event::io(base, wake_fd_.get(), EV_READ | EV_PERSIST, [this](short) { deliver(); });
    wake_ev_.add();
    if (threads < 1) threads = 1;
    try {
        for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
    } catch (const std::exception& e) {
        stop_and_join();
        log::fatal(EX_OSERR, "cannot start worker threads: %s", e.what());
    }
}

WorkerPool::~WorkerPool() {
    stop_and_join();
    wake_ev_.del();
}

void WorkerPool::stop_and_join() noexcept {
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
        tasks_.clear();  // nobody waits for them any more
    }
    cv_.notify_all();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
}

bool WorkerPool::submit(Job job, Done done) {
    {
        std::lock_guard lk(mu_);
        if (stopping_ || tasks_.size() >= max_queued_) return false;
        tasks_.push_back(Task{std::move(job), std::move(done)});
    }
    cv_.notify_one();
    return true;
}

std::size_t WorkerPool::queued() const {
    std::lock_guard lk(mu_);
    return tasks_.size();
}

void WorkerPool::worker() noexcept {
    for (;;) {
        Task task;
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [this] { return stopping_ || !tasks_.empty(); });
            if (stopping_) return;
            task = std::move(tasks_.front());
            tasks_.pop_front();
        }
        Verdict v;
        try {
            v = task.job();
        } catch (const std::exception& e) {
            v = Verdict::tempfail(std::string("internal error: ") + e.what());
        } catch (...) {
            v = Verdict::tempfail("internal error");
        }
        task.job = nullptr;  // the password it holds is wiped here, off the loop
        bool wake = false;
        {
            std::lock_guard lk(mu_);
            wake = finished_.empty();  // deliver() takes everything per wake-up
            finished_.push_back(Finished{std::move(task.done), std::move(v)});
        }
        if (wake) {
            const std::uint64_t one = 1;
            // Note: fails only with EAGAIN when the counter is full, and then a wake-up is pending anyway.
            [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
        }
    }
}

void WorkerPool::deliver() noexcept {
    std::uint64_t count = 0;
    // Read the eventfd before taking the results: one finished after the swap
    // writes it again, so no wake-up is lost.
    [[maybe_unused]] ssize_t n = ::read(wake_fd_.get(), &count, sizeof count);
    std::vector<Finished> batch;
    {
        std::lock_guard lk(mu_);
        batch.swap(finished_);
    }
    for (auto& f : batch) {
        if (f.done) event::guarded("auth check", [&] { f.done(std::move(f.verdict)); });
    }
}

}  // namespace postern::authd
