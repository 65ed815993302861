// smtp: the SMTP delivery agent (master.cf: "smtp unix - - y - - smtp"): mail to other hosts.
#include <memory>

#include "service/service.hpp"
#include "smtp/agent.hpp"

using namespace postern;

int main(int argc, char** argv) {
    static smtp::Resources res;
    static std::unique_ptr<smtp::Agent> agent;
    service::ServiceSpec spec{.name = "smtp", .skeleton = service::Skeleton::Multi};
    // The resolver reads /etc/resolv.conf and /etc/hosts, TLS the CA file, both before the jail.
    spec.pre_jail = [](service::Context& ctx) { res = smtp::load_resources(ctx); };
    spec.post_jail = [](service::Context& ctx) { agent = std::make_unique<smtp::Agent>(ctx, std::move(res)); };
    spec.on_connection = [](service::Context&, service::Connection c) { agent->accept(std::move(c)); };
    spec.on_drain = [] { agent->drain(); };
    return service::run(spec, argc, argv);
}
