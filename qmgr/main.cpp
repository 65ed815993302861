// qmgr: the queue manager (master.cf: qmgr unix - - y 300 1 qmgr).
#include <sysexits.h>

#include <memory>

#include "log/log.hpp"
#include "qmgr/qmgr.hpp"
#include "service/service.hpp"

using namespace postern;

int main(int argc, char** argv) {
    static std::unique_ptr<delivery::Router> router;
    static std::vector<config::Service> services;
    static std::unique_ptr<qmgr::Agents> agents;
    static std::unique_ptr<qmgr::Manager> manager;
    service::ServiceSpec spec{.name = "qmgr", .skeleton = service::Skeleton::Trigger, .ignore_max_idle = true};
    spec.pre_jail = [](service::Context& ctx) {
        auto svcs = config::load_master_cf(ctx.params().config_directory);
        if (!svcs) log::fatal(EX_CONFIG, "%s", svcs.error().text.c_str());
        services = std::move(*svcs);
        auto r = delivery::open_router(ctx.params());
        if (!r) log::fatal(EX_CONFIG, "%s", r.error().text.c_str());  // mail must not take a wrong route
        router = std::move(*r);
    };
    spec.post_jail = [](service::Context& ctx) {
        auto s = qmgr::Settings::from(ctx.config(), services, ctx.options().chroot);
        agents = qmgr::make_socket_agents(ctx.base(), s.queue_dir, ctx.params().ipc_timeout);
        manager = std::make_unique<qmgr::Manager>(ctx.base(), std::move(s), *router, *agents);
        manager->on_idle = [&ctx] { ctx.work_done(); };
        manager->start();
    };
    // Reload, a changed table: deliveries in flight are waited for, so their
    // outcomes are recorded and nothing is delivered twice.
    spec.busy = [] { return manager && manager->in_flight() > 0; };
    spec.on_drain = [] {
        if (manager) manager->drain();
    };
    spec.on_trigger = [](service::Context& ctx, std::string_view data) {
        // The successor routes with the new table; it resumes active/ and
        // incoming/ when it starts, so this trigger is not passed on.
        if (auto* m = router->changed_table()) return ctx.request_exit("table " + m->spec() + " has changed");
        for (char c : data.substr(0, 16)) manager->trigger(c);
    };
    return service::run(spec, argc, argv);
}
