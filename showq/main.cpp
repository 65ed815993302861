// showq: the queue listing for mailq users (master.cf: showq unix n - y - - showq). Each
// client gets the `postern queue list` text and then EOF; it sends nothing.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "log/log.hpp"
#include "queue/queue.hpp"
#include "service/service.hpp"

using namespace postern;

namespace {
// Note: a Single server writing with blocking sends; a client that stops
// reading holds this process for at most SendTimeout per write.
constexpr timeval SendTimeout{60, 0};

Result<void> send_all(int fd, std::string_view text) {
    while (!text.empty()) {
        ssize_t n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return Error::temp(std::string("write to client: ") + std::strerror(n < 0 ? errno : EPIPE));
        text.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}
}  // namespace

int main(int argc, char** argv) {
    service::ServiceSpec spec{.name = "showq", .skeleton = service::Skeleton::Single};
    spec.pre_jail = [](service::Context&) { ::tzset(); };  // arrival times in local time after chroot
    spec.on_connection = [](service::Context& ctx, service::Connection conn) {
        int fd = conn.fd();
        int flags = ::fcntl(fd, F_GETFL);
        ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &SendTimeout, sizeof SendTimeout);
        std::string qdir = ctx.options().chroot ? "/" : ctx.params().queue_directory;
        auto r = queue::list_queue(qdir, queue::ListFormat::Text, [fd](std::string_view t) { return send_all(fd, t); },
                                   [](const std::string& problem) { log::warn("%s", problem.c_str()); });
        if (!r) log::warn("%s", r.error().text.c_str());
    };
    return service::run(spec, argc, argv);
}
