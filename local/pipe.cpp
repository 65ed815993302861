// local/pipe.cpp - running a delivery command as the recipient, with limits.
#include "local/pipe.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "fs/fs.hpp"
#include "local/privsep.hpp"
#include "privs/privs.hpp"
#include "util/strings.hpp"

namespace postern::local {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view ShellMeta = "|&;<>()$`\\\"'*?[]#~={}\n\r";

std::vector<char*> c_strings(std::vector<std::string>& v) {
    std::vector<char*> out;
    for (auto& s : v) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

// Where execve may find argv[0]: as given when it has a '/', else PATH=/usr/bin:/bin.
std::vector<std::string> candidates(const std::string& prog) {
    if (prog.find('/') != std::string::npos) return {prog};
    return {"/usr/bin/" + prog, "/bin/" + prog};
}

[[noreturn]] void exec_child(const CommandSpec& c, int in, int out, std::vector<std::string>& argv,
                             std::vector<std::string>& env, const std::vector<std::string>& paths) noexcept {
    ::setsid();
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    close_fds_except({});
    ::signal(SIGPIPE, SIG_DFL);
    // Note: no stdio here: its buffers are copies of the agent's.
    if (auto r = privs::drop_privileges(c.uid, c.gid); !r) {
        (void)fs::write_all(1, "cannot run command: " + r.error().text + "\n");
        ::_exit(EX_OSERR);
    }
    ::umask(077);
    if (::chdir(c.cwd.c_str()) != 0 && ::chdir("/") != 0) ::_exit(EX_OSERR);
    auto args = c_strings(argv);
    auto envp = c_strings(env);
    int err = ENOENT;
    for (auto& p : paths) {
        ::execve(p.c_str(), args.data(), envp.data());
        if (errno != ENOENT) err = errno;
    }
    (void)fs::write_all(1, "cannot execute " + argv[0] + ": " + errno_text(err) + "\n");
    ::_exit(127);
}

// The agent's side of a running command: stdin, bounded output, deadline.
class Running {
public:
    Running(pid_t pid, UniqueFd in, UniqueFd out, const CommandSpec& c)
        : pid_(pid), in_(std::move(in)), out_(std::move(out)), max_output_(c.max_output),
          deadline_(Clock::now() + c.time_limit) {
        ::fcntl(in_.get(), F_SETFL, O_NONBLOCK);
        ::fcntl(out_.get(), F_SETFL, O_NONBLOCK);
    }

    // Writes to the command's stdin, reading its output meanwhile. A command
    // that stops reading early is fine: the rest is dropped.
    Result<void> feed(std::string_view data) {
        while (!data.empty() && in_) {
            pollfd p[2] = {{in_.get(), POLLOUT, 0}, {out_ ? out_.get() : -1, POLLIN, 0}};
            if (!wait_for(p, 2)) {
                timed_out_ = true;
                return Error::temp("command time limit exceeded");
            }
            if (p[1].revents) read_output();
            if (p[0].revents & (POLLERR | POLLHUP)) in_.reset();
            if (!(p[0].revents & POLLOUT) || !in_) continue;
            ssize_t n = ::write(in_.get(), data.data(), data.size());
            if (n > 0) data.remove_prefix(static_cast<std::size_t>(n));
            else if (n < 0 && errno == EPIPE) in_.reset();
            else if (n < 0 && errno != EAGAIN && errno != EINTR) return sys_error("write to", "command", errno);
        }
        return {};
    }

    // Closes stdin, reads the output to its end, reaps the command. Returns
    // the wait status, or nullopt when the time limit struck.
    std::optional<int> finish() {
        in_.reset();
        while (out_) {
            pollfd p{out_.get(), POLLIN, 0};
            if (!wait_for(&p, 1)) return kill();
            read_output();
        }
        int status = 0;
        for (;;) {
            pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) return status;
            if (r < 0 && errno != EINTR) return status;
            if (Clock::now() >= deadline_) return kill();
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

    std::optional<int> kill() {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        return std::nullopt;
    }

    const std::string& output() const noexcept { return output_; }
    bool timed_out() const noexcept { return timed_out_; }

private:
    bool wait_for(pollfd* p, nfds_t n) {
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
            if (left <= 0) return false;
            int r = ::poll(p, n, static_cast<int>(std::min<long long>(left, 60000)));
            if (r > 0) return true;
            if (r < 0 && errno != EINTR) return false;
        }
    }

    void read_output() {
        char buf[4096];
        ssize_t n = ::read(out_.get(), buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            out_.reset();
            return;
        }
        if (n > 0 && output_.size() < max_output_)
            output_.append(buf, std::min(static_cast<std::size_t>(n), max_output_ - output_.size()));
    }

    pid_t pid_;
    UniqueFd in_, out_;
    std::size_t max_output_;
    Clock::time_point deadline_;
    std::string output_;
    bool timed_out_ = false;
};

std::string first_line(std::string_view output) {
    std::string_view t = util::trim(output);
    return util::printable(t.substr(0, t.find('\n')), 200);
}

}  // namespace

bool needs_shell(std::string_view command) noexcept { return command.find_first_of(ShellMeta) != std::string_view::npos; }

std::vector<std::string> command_argv(std::string_view command, std::string_view shell) {
    if (needs_shell(command)) return {std::string(shell), "-c", std::string(command)};
    return util::split_ws(command);
}

Status exit_status(int wait_status, std::string_view command, std::string_view output) {
    const std::string cmd = util::printable(command, 200);
    if (WIFSIGNALED(wait_status))
        return Status::deferred("4.3.0", cmd + ": killed by signal " + std::to_string(WTERMSIG(wait_status)));
    const int code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : EX_SOFTWARE;
    if (code == 0) return Status::sent("delivered to command: " + cmd);
    std::string line = first_line(output);
    std::string text = cmd + ": " + (line.empty() ? "exit status " + std::to_string(code) : line);
    switch (code) {
    case EX_TEMPFAIL:
    case EX_OSERR:
    case EX_IOERR:
    case EX_CANTCREAT:
    case EX_CONFIG: return Status::deferred("4.3.0", text);
    case EX_NOUSER: return Status::bounced("5.1.1", text);
    case EX_NOHOST: return Status::bounced("5.1.2", text);
    case EX_DATAERR: return Status::bounced("5.6.0", text);
    case EX_PROTOCOL: return Status::bounced("5.5.0", text);
    case EX_NOPERM: return Status::bounced("5.7.0", text);
    default: return Status::bounced("5.3.0", text);
    }
}

Status run_command(const CommandSpec& c, const Producer& produce) {
    if (c.uid == 0) return Status::deferred("4.3.0", "refusing to run a command as root");
    auto argv = command_argv(c.command, c.shell);
    if (argv.empty()) return Status::bounced("5.3.0", "empty command");
    auto env = c.env;
    const auto paths = candidates(argv[0]);
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return deferral(sys_error("pipe", "command", errno));
    UniqueFd in_r(in[0]), in_w(in[1]);
    if (::pipe2(out, O_CLOEXEC) != 0) return deferral(sys_error("pipe", "command", errno));
    UniqueFd out_r(out[0]), out_w(out[1]);
    pid_t pid = ::fork();
    if (pid < 0) return deferral(sys_error("fork", "command", errno));
    if (pid == 0) exec_child(c, in_r.get(), out_w.get(), argv, env, paths);
    in_r.reset();
    out_w.reset();
    Running run(pid, std::move(in_w), std::move(out_r), c);
    auto fed = produce([&](std::string_view s) { return run.feed(s); });
    std::optional<int> status;
    if (fed) {
        status = run.finish();
    } else {
        run.kill();
        if (!run.timed_out()) return Status::deferred("4.3.0", util::printable(c.command, 200) + ": " + fed.error().text);
    }
    if (!status)
        return Status::deferred("4.3.0", util::printable(c.command, 200) + ": command time limit of " +
                                             std::to_string(c.time_limit.count()) + "s exceeded");
    return exit_status(*status, c.command, run.output());
}

}  // namespace postern::local
