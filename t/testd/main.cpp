// testd: a test service for master and lib/service (not installed). It greets
// with its pid/uid/gid/chroot, echoes lines, and can misbehave on request:
// args "single" | "trigger" | "crash" (abort at start) | "fail" (exit 1 at start).
#include <sysexits.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>

#include "log/log.hpp"
#include "service/service.hpp"

using namespace postern;

namespace {
struct Session {
    event::BufferEvent bev;
    service::Connection conn;
};
std::map<Session*, std::unique_ptr<Session>> g_sessions;

bool has_arg(const service::Context& ctx, std::string_view a) {
    for (auto& x : ctx.args()) if (x == a) return true;
    return false;
}

void serve(service::Context& ctx, service::Connection conn) {
    auto s = std::make_unique<Session>(Session{event::BufferEvent(ctx.base(), conn.take_fd()), std::move(conn)});
    Session* sp = s.get();
    g_sessions[sp] = std::move(s);
    auto close = [sp] { g_sessions.erase(sp); };
    char hello[256];
    std::snprintf(hello, sizeof hello, "testd pid=%d uid=%d gid=%d service=%s\r\n", ::getpid(), ::getuid(), ::getgid(),
                  ctx.options().service_name.c_str());
    sp->bev.write(hello);
    sp->bev.on_read([sp, close] {
        while (auto line = sp->bev.read_line(1000)) {
            if (*line == "quit") return close();
            sp->bev.write("echo " + *line + "\r\n");
        }
    });
    sp->bev.on_event([close](short) { close(); });
    sp->bev.enable(EV_READ);
}
}  // namespace

int main(int argc, char** argv) {
    service::ServiceSpec spec{.name = "testd"};
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "single") spec.skeleton = service::Skeleton::Single;
        if (std::string_view(argv[i]) == "trigger") spec.skeleton = service::Skeleton::Trigger;
    }
    spec.post_jail = [](service::Context& ctx) {
        if (has_arg(ctx, "crash")) std::abort();
        if (has_arg(ctx, "fail")) log::fatal(EX_SOFTWARE, "failing on purpose");
        log::info("started: uid=%d", static_cast<int>(::getuid()));
    };
    spec.on_connection = serve;
    spec.on_trigger = [](service::Context&, std::string_view data) {
        log::info("trigger: %.*s", static_cast<int>(data.size()), data.data());
    };
    return service::run(spec, argc, argv);
}
