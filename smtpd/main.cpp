// smtpd: the SMTP server (ports 25, 587, 465 per master.cf and -o overrides).
#include <memory>

#include "service/service.hpp"
#include "smtpd/server.hpp"

using namespace postern;

int main(int argc, char** argv) {
    static smtpd::Resources resources;
    static std::unique_ptr<smtpd::Server> server;
    service::ServiceSpec spec{.name = "smtpd", .skeleton = service::Skeleton::Multi};
    spec.pre_jail = [](service::Context& ctx) { resources = smtpd::load_resources(ctx); };
    spec.post_jail = [](service::Context& ctx) { server = std::make_unique<smtpd::Server>(ctx, std::move(resources)); };
    spec.on_connection = [](service::Context&, service::Connection c) { server->accept(std::move(c)); };
    return service::run(spec, argc, argv);
}
