// local/privsep.cpp - fork, drop to the recipient, work, report back through a pipe.
#include "local/privsep.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include "fs/fs.hpp"
#include "log/log.hpp"
#include "privs/privs.hpp"
#include "util/assert.hpp"

namespace postern::local {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void child_main(int out, uid_t uid, gid_t gid, const std::function<std::string()>& fn) noexcept {
    std::string answer;
    try {
        if (auto r = privs::drop_privileges(uid, gid); !r) {
            answer = pack({"error", r.error().text});
        } else {
            ::umask(077);
            answer = pack({"ok", fn()});
        }
    } catch (const std::exception& e) {
        answer = pack({"error", std::string("delivery process: ") + e.what()});
    }
    (void)fs::write_all(out, answer);
    ::_exit(0);
}

// Reads the child's answer until EOF or the deadline. A child that is not
// done by then (too slow, or too chatty) is killed before it is reaped, so
// waitpid never waits for a writer blocked on a full pipe.
Result<std::string> collect(pid_t pid, int in, std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    std::string data;
    char buf[16384];
    bool eof = false, timed_out = false;
    while (!eof) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        pollfd p{in, POLLIN, 0};
        int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60000)));
        if (n < 0 && errno != EINTR) break;
        if (n <= 0) continue;
        ssize_t got = ::read(in, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) break;
        eof = got == 0;
        if (data.size() + static_cast<std::size_t>(got) > MaxPacked + 64) break;  // too chatty: garbage
        data.append(buf, static_cast<std::size_t>(got));
    }
    if (!eof) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) return Error::temp("delivery process timed out after " + std::to_string(limit.count()) + "s");
    if (WIFSIGNALED(status))
        return Error::temp("delivery process died with signal " + std::to_string(WTERMSIG(status)));
    auto fields = unpack(data);
    if (!fields || fields->size() != 2) return Error::temp("delivery process gave no usable answer");
    if ((*fields)[0] != "ok") return Error::temp((*fields)[1]);
    return std::move((*fields)[1]);
}

}  // namespace

void close_fds_except(std::vector<int> keep) noexcept {
    std::sort(keep.begin(), keep.end());
    unsigned next = 3;
    auto close_upto = [](unsigned lo, unsigned hi) {
        if (::close_range(lo, hi, 0) == 0) return;
        for (unsigned fd = lo; fd <= hi && fd < 65536; ++fd) ::close(static_cast<int>(fd));
    };
    for (int fd : keep) {
        if (fd < 0 || static_cast<unsigned>(fd) < next) continue;
        if (static_cast<unsigned>(fd) > next) close_upto(next, static_cast<unsigned>(fd) - 1);
        next = static_cast<unsigned>(fd) + 1;
    }
    close_upto(next, ~0U);
}

Result<std::string> run_as(uid_t uid, gid_t gid, std::chrono::seconds limit, const std::vector<int>& keep_fds,
                           const std::function<std::string()>& fn) {
    if (uid == 0) return Error::temp("refusing to deliver with root privileges");
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return sys_error("pipe", "delivery process", errno);
    UniqueFd in(fds[0]), out(fds[1]);
    pid_t pid = ::fork();
    if (pid < 0) return sys_error("fork", "delivery process", errno);
    if (pid == 0) {
        // Note: the log file's descriptor is about to be closed; a file the
        // child opens could get its number. Log to stderr from here on.
        log::open({.tag = log::options().tag, .file = "-"});
        std::vector<int> keep = keep_fds;
        keep.push_back(out.get());
        close_fds_except(keep);
        child_main(out.get(), uid, gid, fn);
    }
    out.reset();
    return collect(pid, in.get(), limit);
}

Status run_status_as(uid_t uid, gid_t gid, std::chrono::seconds limit, const std::vector<int>& keep_fds,
                     const std::function<Status()>& fn) {
    auto r = run_as(uid, gid, limit, keep_fds, [&] { return encode_status(fn()); });
    if (!r) return deferral(r.error());
    auto s = decode_status(*r);
    if (!s) return Status::deferred("4.3.0", "delivery process gave a malformed status");
    return *s;
}

std::vector<Status> run_statuses_as(uid_t uid, gid_t gid, std::chrono::seconds limit, const std::vector<int>& keep_fds,
                                    std::size_t n, const std::function<std::vector<Status>()>& fn) {
    POSTERN_ASSERT(n > 0 && n <= MaxStatuses);
    auto r = run_as(uid, gid, limit, keep_fds, [&] {
        std::vector<std::string> fields;
        for (Status s : fn()) {
            if (s.text.size() > MaxStatusText) s.text.resize(MaxStatusText);
            fields.push_back(encode_status(s));
        }
        return pack(fields);
    });
    if (!r) return std::vector<Status>(n, deferral(r.error()));
    const Status garbage = Status::deferred("4.3.0", "delivery process gave a malformed status");
    auto fields = unpack(*r);
    if (!fields || fields->size() != n) return std::vector<Status>(n, garbage);
    std::vector<Status> out;
    for (auto& f : *fields) {
        auto s = decode_status(f);
        if (!s) return std::vector<Status>(n, garbage);
        out.push_back(std::move(*s));
    }
    return out;
}

}  // namespace postern::local
