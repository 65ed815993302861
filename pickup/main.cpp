// pickup: maildrop/ files from sendmail(1) into the queue (master.cf: pickup unix n - y 60 1 pickup).
#include <fcntl.h>
#include <sys/file.h>
#include <sysexits.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "log/log.hpp"
#include "pickup/pickup.hpp"
#include "service/service.hpp"

using namespace postern;

namespace {
pickup::UserLookup users;
std::unique_ptr<pickup::Pickup> worker;
std::string queue_dir;
UniqueFd lock;       // one pickup at a time: recover() must not race a pass in progress
event::Event again;  // a long maildrop/ is worked off in bounded passes, triggers in between

void pass(service::Context& ctx) {
    auto more = worker->run_pass();
    if (worker->take_committed() > 0) pickup::trigger_qmgr(queue_dir);
    if (worker->needs_new_user_table()) return ctx.request_exit("a maildrop file's owner is newer than the user table");
    if (more == pickup::PassResult::More) again.add(std::chrono::milliseconds(0));
    else ctx.work_done();
}
}  // namespace

int main(int argc, char** argv) {
    service::ServiceSpec spec{.name = "pickup", .skeleton = service::Skeleton::Trigger};
    spec.pre_jail = [](service::Context&) { users = pickup::snapshot_users(); };
    spec.post_jail = [](service::Context& ctx) {
        const auto& p = ctx.params();
        queue_dir = ctx.options().chroot ? "/" : p.queue_directory;
        lock.reset(::open((queue_dir + "/maildrop").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!lock || ::flock(lock.get(), LOCK_EX) != 0) log::fatal(EX_TEMPFAIL, "lock maildrop/: %s", std::strerror(errno));
        pickup::Settings s{.queue_dir = queue_dir, .myhostname = p.myhostname, .myorigin = p.myorigin,
                           .mail_name = p.mail_name, .message_size_limit = static_cast<uint64_t>(p.message_size_limit),
                           .header_size_limit = static_cast<std::size_t>(p.header_size_limit),
                           .sender_policy = pickup::SenderPolicy::parse(p.sendmail_sender_override_users)};
        worker = std::make_unique<pickup::Pickup>(std::move(s), users, [] {
            return std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
        });
        worker->recover();
        again = event::Event::timer(ctx.base(), [&ctx] { pass(ctx); });
    };
    spec.busy = [] { return again.pending(); };
    spec.on_drain = [] { again.del(); };
    spec.on_trigger = [](service::Context& ctx, std::string_view) {
        if (!again.pending()) pass(ctx);
    };
    return service::run(spec, argc, argv);
}
