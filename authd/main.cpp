// auth: the password and user lookup daemon (master.cf: "auth unix - n n - 1 auth").
#include <sysexits.h>

#include <memory>

#include "authd/server.hpp"
#include "log/log.hpp"
#include "privs/privs.hpp"
#include "service/service.hpp"

using namespace postern;

int main(int argc, char** argv) {
    static std::unique_ptr<authd::Server> server;
    service::ServiceSpec spec{.name = "auth", .skeleton = service::Skeleton::Multi};
    // The failure counts and lockouts live in this process: it stays until
    // master stops or reloads it, whatever max_idle and max_use say.
    spec.ignore_max_idle = true;
    spec.post_jail = [](service::Context& ctx) {
        // PAM reads /etc/shadow and /etc/pam.d, the user table is root's.
        if (!privs::is_root()) log::fatal(EX_CONFIG, "auth must run as root: set unpriv = n in master.cf");
        if (ctx.options().chroot) log::fatal(EX_CONFIG, "auth needs /etc for PAM: set chroot = n in master.cf");
        server = std::make_unique<authd::Server>(ctx);
    };
    spec.on_connection = [](service::Context&, service::Connection c) { server->accept(std::move(c)); };
    spec.on_drain = [] { server->drain(); };
    return service::run(spec, argc, argv);
}
