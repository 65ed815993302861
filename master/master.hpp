// NAME
//   master/master.hpp - the supervisor: listeners, children, signals
// PURPOSE
//   Binds every listener from master.cf as root, spawns each service's program
//   with its listeners on known descriptors when a client arrives and no child
//   is free, reaps and replaces children, throttles services that crash at
//   start-up, triggers wakeup services, reloads on SIGHUP (new generation;
//   old children finish their sessions) and stops everything on SIGTERM.
//   Not for anything that reads network input: master never touches a client.
// SYNOPSIS
//   master::Master m(config_dir, std::move(cfg), std::move(services));
//   return m.run();
// ERRORS
//   Start-up problems (a port in use) are fatal; problems on reload are logged
//   and the old configuration stays in force.
// SEE ALSO
//   master/services.hpp (pure logic), service/proto.hpp, doc/master.8
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "event/event.hpp"
#include "master/services.hpp"
#include "util/unique_fd.hpp"

namespace postern::master {

class Master {
public:
    Master(std::string config_dir, config::Config cfg, std::vector<config::Service> services);
    ~Master();
    // Binds listeners; log::fatal on failure. Call once, before run().
    void start();
    // The event loop; returns the exit status when stopped.
    int run();
    // In the child after a daemonizing fork(): renew the event base.
    void after_fork() { base_.reinit_after_fork(); }

private:
    struct ServiceRt;
    std::unique_ptr<ServiceRt> make_service(const config::Service& def, std::vector<std::unique_ptr<ServiceRt>>* reuse,
                                            std::string* error_out);
    void arm(ServiceRt& s);
    void update_listen(ServiceRt& s);
    void spawn(ServiceRt& s);
    void read_status(ServiceRt& s);
    void reap();
    void throttle(ServiceRt& s);
    void wakeup(ServiceRt& s);
    void retire(std::unique_ptr<ServiceRt> s);
    void reload();
    void stop(int signo);
    void maybe_finish();

    std::string config_dir_;
    config::Config cfg_;
    std::vector<config::Service> defs_;
    event::Base base_;
    std::vector<std::unique_ptr<ServiceRt>> active_, retired_;
    std::map<pid_t, ServiceRt*> pids_;
    std::vector<event::Event> signals_;
    event::Event stop_timer_;
    unsigned generation_ = 1;
    bool stopping_ = false;
    std::vector<std::string> env_;
};

}  // namespace postern::master
