// queue/commit_pool.cpp - CommitPool: fsync+rename on worker threads, results back on the event loop.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <sysexits.h>

#include "fs/fs.hpp"
#include "log/log.hpp"
#include "queue/queue.hpp"
#include "queue/record.hpp"

namespace postern::queue {

CommitPool::CommitPool(event::Base& base, int threads)
    : loop_thread_(std::this_thread::get_id()), wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (!wake_fd_) log::fatal(EX_OSERR, "eventfd: %s", errno_text(errno).c_str());
    wake_ev_ = event::Event::io(base, wake_fd_.get(), EV_READ | EV_PERSIST, [this](short) { deliver(); });
    wake_ev_.add();
    if (threads < 1) threads = 1;
    try {
        for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
    } catch (...) {
        stop_and_join();  // std::thread failed: the destructor will not run
        throw;
    }
}

CommitPool::~CommitPool() {
    stop_and_join();
    wake_ev_.del();
    deliver();
}

void CommitPool::stop_and_join() noexcept {
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
}

void CommitPool::submit(std::unique_ptr<Writer> w, Done done) {
    POSTERN_ASSERT(std::this_thread::get_id() == loop_thread_);
    POSTERN_ASSERT(w != nullptr);
    {
        std::lock_guard lk(mu_);
        POSTERN_ASSERT(!stopping_);
        jobs_.push_back(Job{std::move(w), std::move(done)});
    }
    cv_.notify_one();
}

void CommitPool::worker() noexcept {
    for (;;) {
        Job job;
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
            if (jobs_.empty()) return;  // stopping, and all queued work is done
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        std::optional<Result<std::string>> result;
        try {
            auto r = job.writer->commit_file();
            if (r) r = sync_dir(job.writer->incoming_dir());
            if (!r && job.writer->committed()) job.writer->uncommit();
            if (r) result.emplace(job.writer->id());
            else result.emplace(r.error());
            job.writer.reset();  // a failed commit removes its temp file here, off the loop
        } catch (const std::exception& e) {
            result.emplace(Error::temp(std::string("commit queue file: ") + e.what()));
        }
        bool wake = false;
        {
            std::lock_guard lk(mu_);
            wake = results_.empty();  // the loop drains everything per wakeup
            results_.push_back(Completion{std::move(job.done), std::move(*result)});
        }
        if (wake) {
            const uint64_t one = 1;
            // Note: can fail only with EAGAIN when the counter is full, and then a wakeup is pending anyway.
            [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
        }
    }
}

Result<void> CommitPool::sync_dir(const std::string& dir) {
    std::unique_lock lk(sync_mu_);
    const std::uint64_t ticket = ++renamed_;  // my rename is done
    while (synced_ < ticket) {
        if (syncing_) {
            sync_cv_.wait(lk);
            continue;
        }
        // Lead a round: it covers every rename finished so far.
        syncing_ = true;
        const std::uint64_t lo = synced_ + 1, hi = renamed_;
        lk.unlock();
        auto r = fs::fsync_dir(dir);
        lk.lock();
        syncing_ = false;
        synced_ = hi;
        if (!r) {
            // Note: fsync errors are reported once; every file of the round fails.
            if (failed_rounds_.size() >= 64) failed_rounds_.erase(failed_rounds_.begin());
            failed_rounds_.push_back({lo, hi, r.error()});
        }
        sync_cv_.notify_all();
    }
    for (auto& f : failed_rounds_)
        if (ticket >= f.lo && ticket <= f.hi) return f.error;
    return {};
}

void CommitPool::deliver() noexcept {
    uint64_t count = 0;
    // Reset the eventfd before taking the results: a result queued after the
    // swap then writes the eventfd again, so no wakeup is lost.
    [[maybe_unused]] ssize_t n = ::read(wake_fd_.get(), &count, sizeof count);
    std::vector<Completion> batch;
    {
        std::lock_guard lk(mu_);
        batch.swap(results_);
    }
    for (auto& c : batch) {
        if (!c.done) continue;
        event::guarded("queue commit", [&] { c.done(std::move(c.result)); });
    }
}

}  // namespace postern::queue
