// NAME
//   authd/worker_pool.hpp - blocking checks on worker threads, results on the loop
// PURPOSE
//   A PAM conversation may block for seconds (a slow NSS or LDAP server, a
//   module's own sleep) and a yescrypt hash takes tens of milliseconds; the
//   auth daemon's event loop must not wait for either. WorkerPool runs such
//   jobs on a fixed number of threads and hands each result back to the loop
//   thread through an eventfd, where the job's done callback runs. The queue
//   in front of the threads is bounded: submit() refuses work beyond it and
//   the caller answers "tempfail". Like queue::CommitPool, written for this
//   daemon: not a general executor.
// SYNOPSIS
//   WorkerPool pool(base, 4, 1000);
//   bool queued = pool.submit([=] { return check(user, pw); },   // worker thread
//                             [](Verdict v) { reply(v); });        // loop thread, later
// ERRORS
//   A job that throws gives Verdict{TempFail, "backend_failure"}. eventfd or
//   thread creation failing at start-up is fatal (EX_OSERR).
// SECURITY
//   Jobs run on other threads: they must not touch the loop's objects, maps
//   (not thread-safe) or the log (not thread-safe); they return what the loop
//   should log in Verdict::detail. Destroying the pool waits for running jobs
//   and drops the callbacks of the rest.
// SEE ALSO
//   queue/queue.hpp (CommitPool), authd/dispatcher.hpp
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "authd/verdict.hpp"
#include "event/event.hpp"
#include "util/unique_fd.hpp"

namespace postern::authd {

class WorkerPool {
public:
    using Job = std::function<Verdict()>;
    using Done = std::function<void(Verdict)>;

    WorkerPool(event::Base& base, int threads, std::size_t max_queued);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // False (and nothing happens) when max_queued jobs are waiting already.
    // done runs on the loop thread, never inside submit().
    [[nodiscard]] bool submit(Job job, Done done);
    std::size_t queued() const;

private:
    struct Task {
        Job job;
        Done done;
    };
    struct Finished {
        Done done;
        Verdict verdict;
    };
    void worker() noexcept;
    void deliver() noexcept;
    void stop_and_join() noexcept;

    std::size_t max_queued_;
    UniqueFd wake_fd_;
    event::Event wake_ev_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Task> tasks_;
    std::vector<Finished> finished_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace postern::authd
