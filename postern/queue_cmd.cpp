// postern/queue_cmd.cpp - mailq-style listing (with defer reasons) and postcat-style display of queue files.
#include "postern/queue_cmd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>

#include <cstdio>
#include <ctime>

#include "queue/queue.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace postern::queue_cmd {

int list(const config::Params& p, bool json, std::ostream& out) {
    auto r = queue::list_queue(
        p.queue_directory, json ? queue::ListFormat::Json : queue::ListFormat::Text,
        [&out](std::string_view text) -> Result<void> {
            out.write(text.data(), static_cast<std::streamsize>(text.size()));
            return {};
        },
        [](const std::string& problem) { std::fprintf(stderr, "postern: %s\n", problem.c_str()); });
    return r ? EX_OK : EX_IOERR;
}

int show(const config::Params& p, const std::string& id, std::ostream& out) {
    if (!queue::valid_id(id)) {
        std::fprintf(stderr, "postern: \"%s\" is not a queue ID\n", util::printable(id, 60).c_str());
        return EX_USAGE;
    }
    for (std::string_view dir : {queue::Incoming, queue::Active, queue::Deferred, queue::Hold, queue::Corrupt}) {
        std::string path = p.queue_directory + "/" + std::string(dir) + "/" + id;
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!fd) continue;
        std::uint64_t off = 0;
        auto env = queue::read_envelope(fd.get(), &off);
        if (!env) {
            std::fprintf(stderr, "postern: %s: %s\n", path.c_str(), env.error().text.c_str());
            return EX_DATAERR;
        }
        const auto& e = *env;
        char when[64];
        std::time_t t = static_cast<std::time_t>(e.arrival_us / 1000000);
        std::tm tm{};
        localtime_r(&t, &tm);
        std::strftime(when, sizeof when, "%a %b %e %H:%M:%S %Y", &tm);
        out << "*** ENVELOPE RECORDS " << dir << "/" << id << " ***\n"
            << "arrival_time: " << when << "\n";
        auto field = [&](const char* name, const std::string& v) {
            if (!v.empty()) out << name << ": " << util::printable(v, 1000) << "\n";
        };
        field("client_name", e.client_name);
        field("client_address", e.client_addr);
        field("helo_name", e.helo);
        field("protocol", e.protocol);
        field("sasl_method", e.sasl_method);
        field("sasl_username", e.sasl_username);
        field("origin", e.origin);
        out << "sender: " << util::printable(e.sender, 1000) << "\n";
        field("envelope_id", e.envid);
        field("dsn_ret", e.ret);
        field("body_type", e.body);
        if (e.smtputf8) out << "smtputf8: yes\n";
        for (auto& r : e.recipients) {
            const char* st = r.status == queue::StatusDone ? "done" : r.status == queue::StatusFailed ? "failed" : "pending";
            out << "recipient: " << util::printable(r.address, 1000) << " (" << st << ")";
            if (!r.orcpt.empty()) out << " orcpt=" << util::printable(r.orcpt, 1000);
            if (r.notify) out << " notify=" << r.notify;
            out << "\n";
        }
        out << "*** MESSAGE CONTENTS " << dir << "/" << id << " ***\n";
        auto r = queue::read_content(fd.get(), off, [&](std::string_view b) -> Result<void> {
            out.write(b.data(), static_cast<std::streamsize>(b.size()));
            return {};
        });
        out << "*** END OF MESSAGE ***\n";
        if (!r) {
            std::fprintf(stderr, "postern: %s: %s\n", path.c_str(), r.error().text.c_str());
            return EX_DATAERR;
        }
        return EX_OK;
    }
    std::fprintf(stderr, "postern: %s: no such message in the queue\n", id.c_str());
    return EX_NOINPUT;
}

}  // namespace postern::queue_cmd
