// NAME
//   service/service.hpp - the skeleton every Postern daemon runs on
// PURPOSE
//   Postfix's single/multi/trigger servers in one place: parse master's
//   command line (-c DIR etc.), load the configuration, open the log, run the
//   daemon's pre_jail hook, enter the jail (chroot into queue_directory and
//   drop to mail_owner, as master.cf asks), run post_jail, then serve the
//   listeners master handed over, reporting busy/idle to master and exiting
//   after max_idle idle seconds or max_use sessions. Not for commands run by
//   people (postern, sendmail): those parse their own options.
// SYNOPSIS
//   int main(int argc, char** argv) {
//       service::ServiceSpec spec{.name = "smtpd", .skeleton = service::Skeleton::Multi,
//                                 .on_connection = [](service::Context& ctx, service::Connection c) {...}};
//       return service::run(spec, argc, argv);
//   }
//   A session calls conn.done() (or drops the Connection) when it ends.
//   ctx.request_exit("table hash:/etc/postern/aliases has changed");  // finish, exit, be replaced
// EXITING
//   A daemon exits with status 0 after max_use sessions, after max_idle idle
//   seconds, when master closes the lifeline (reload, stop), and when it asks
//   to with Context::request_exit (e.g. a lookup table it cannot open again
//   from inside its jail has changed). The last two share one path: stop
//   accepting (our copies of the listeners are closed; master keeps its own),
//   report "taken" so master starts a fresh process for the next client, let
//   the sessions in progress end, then exit. A Trigger service has no
//   sessions: it exits after the trigger it is handling, without waiting for
//   background work (qmgr's deliveries in flight), as on a reload. Because
//   only a trigger makes master start one, request_exit leaves a wake-up
//   ("W", as master's wake-up timer sends) in master's listen queue: the
//   successor starts as soon as the old process is gone.
// ERRORS
//   Start-up failures (bad config, jail) are log::fatal with a sysexits code:
//   master throttles a service whose children die that way.
// SECURITY
//   No listener is read before the jail is entered; an unprivileged service
//   that is still root after the jail is a fatal error.
// SEE ALSO
//   service/proto.hpp, master/master.hpp, STYLE L1/L2
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "event/event.hpp"
#include "util/unique_fd.hpp"

namespace postern::service {

enum class Skeleton {
    Single,   // one session at a time per process
    Multi,    // up to service_client_limit concurrent sessions per process
    Trigger,  // short "wake up" messages on a unix socket (and master's wakeup timer)
};

struct Peer {
    std::string addr;  // "192.0.2.1", "2001:db8::1", or "unix"
    int port = 0;
    std::string local_addr;
    int local_port = 0;
};

class Context;

// A client session's claim on the skeleton's accounting. Calling done() (or
// destroying the Connection) ends the session: the skeleton then counts it as
// finished for max_use, busy/idle and max_idle.
class Connection {
public:
    Connection(UniqueFd fd, Peer peer, std::function<void()> on_done);
    Connection(Connection&&) noexcept = default;
    Connection& operator=(Connection&&) noexcept;  // ends the session it replaces
    ~Connection();
    UniqueFd take_fd() { return std::move(fd_); }
    int fd() const noexcept { return fd_.get(); }
    const Peer& peer() const noexcept { return peer_; }
    void done();

private:
    UniqueFd fd_;
    Peer peer_;
    std::function<void()> on_done_;
};

struct Options {
    std::string config_dir = "/etc/postern";
    std::string service_name;
    std::string transport = "unix";  // "inet" or "unix"
    int listen_count = 0;
    unsigned generation = 0;
    bool unpriv = false;
    bool chroot = false;
    std::vector<std::pair<std::string, std::string>> overrides;
    std::vector<std::string> args;  // after "--"
};

// Parses master's command line; Error::config on anything unexpected.
Result<Options> parse_options(int argc, char** argv);

class Context {
public:
    Context(const config::Config& cfg, const Options& opts, event::Base& base)
        : config_(cfg), opts_(opts), base_(base) {}
    const config::Config& config() const noexcept { return config_; }
    const config::Params& params() const noexcept { return config_.params(); }
    const Options& options() const noexcept { return opts_; }
    const std::vector<std::string>& args() const noexcept { return opts_.args; }
    event::Base& base() noexcept { return base_; }

    // Asks the skeleton to finish the work in progress and exit (see EXITING):
    // logs "WHY -- restarting" once; later calls do nothing. Returns at once:
    // the process never exits inside this call, so a session may call it and
    // go on (smtpd serves the connection in hand with its old table).
    void request_exit(std::string_view why);
    bool exit_requested() const noexcept { return exit_requested_; }
    // What request_exit does after logging; set by the skeleton (and tests).
    void on_exit_request(std::function<void()> fn) { on_exit_request_ = std::move(fn); }

    // Runs fn just before a normal exit (max_use, max_idle, drained): the
    // last chance to pass on what must not be lost with the process, such as
    // smtpd's rate-limited qmgr trigger. Not run on fatal errors or signals.
    void at_exit(std::function<void()> fn) { at_exit_.push_back(std::move(fn)); }
    // For the skeleton: runs the at_exit functions (once).
    void run_at_exit();

    // A daemon with ServiceSpec::busy calls this when that work is over, so a
    // draining skeleton can exit (qmgr: the last delivery in flight came back).
    void work_done() {
        if (on_work_done_) on_work_done_();
    }
    void on_work_done(std::function<void()> fn) { on_work_done_ = std::move(fn); }

private:
    const config::Config& config_;
    const Options& opts_;
    event::Base& base_;
    bool exit_requested_ = false;
    std::function<void()> on_exit_request_, on_work_done_;
    std::vector<std::function<void()>> at_exit_;
};

struct ServiceSpec {
    std::string_view name;  // program name for the log tag: postern/NAME
    Skeleton skeleton = Skeleton::Multi;
    std::function<void(Context&)> pre_jail;   // as root, before chroot: open files, keys
    std::function<void(Context&)> post_jail;  // jailed, before the first client
    std::function<void(Context&, Connection)> on_connection;        // Single, Multi
    std::function<void(Context&, std::string_view)> on_trigger;     // Trigger
    // Runs until master says otherwise: neither max_idle nor max_use ends it
    // (a queue manager, like Postfix's MAIL_SERVER_UNLIMITED).
    bool ignore_max_idle = false;
    // Work outside sessions that must end before the process may exit
    // (reload, request_exit, max_use): while busy() is true a draining daemon
    // keeps running its loop; on_drain tells it to start no new work, and
    // Context::work_done() says when busy() may have turned false.
    std::function<bool()> busy;
    std::function<void()> on_drain;
};

// Runs the daemon; returns the process exit status.
int run(const ServiceSpec& spec, int argc, char** argv);

}  // namespace postern::service
