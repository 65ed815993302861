// local: the local and virtual delivery agent (master.cf: "local unix - n n - - local").
#include <sysexits.h>

#include <memory>
#include <vector>

#include "local/agent.hpp"
#include "local/server.hpp"
#include "log/log.hpp"
#include "privs/privs.hpp"
#include "service/service.hpp"

using namespace postern;

int main(int argc, char** argv) {
    static std::unique_ptr<local::Agent> agent;
    service::ServiceSpec spec{.name = "local", .skeleton = service::Skeleton::Single};
    spec.pre_jail = [](service::Context& ctx) { agent = std::make_unique<local::Agent>(ctx.config()); };
    spec.post_jail = [](service::Context&) {
        // Deliveries switch to each recipient's uid: that takes root.
        if (!privs::is_root()) log::fatal(EX_CONFIG, "local must run as root: set unpriv = n in master.cf");
    };
    spec.on_connection = [](service::Context& ctx, service::Connection c) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(ctx.params().ipc_timeout).count();
        local::serve(c.fd(), [](const std::vector<delivery::Request>& b) { return agent->deliver_batch(b); },
                     static_cast<int>(ms));
    };
    return service::run(spec, argc, argv);
}
