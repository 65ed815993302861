// postern/queue_cmd.cpp - mailq-style listing (with defer reasons) and postcat-style display of queue files.
#include "postern/queue_cmd.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <memory>
#include <vector>

#include "queue/queue.hpp"
#include "util/handles.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace postern::queue_cmd {
namespace {

using DirPtr = std::unique_ptr<DIR, CDeleter<::closedir>>;

struct Entry {
    std::string id;
    std::string_view dir;
    queue::Envelope env;
    std::uint64_t size = 0;
    std::vector<queue::DeferEntry> defer;  // why recipients wait, from defer/<ID>
};

// The defer reason for each pending recipient, in recipient order (empty
// when none is known). A log entry serves one recipient: an address that
// appears twice takes the entries in turn.
std::vector<std::string> delay_reasons(const Entry& e) {
    std::vector<std::string> out;
    std::vector<bool> used(e.defer.size(), false);
    for (const auto& r : e.env.recipients) {
        if (r.status != queue::StatusPending) continue;
        std::string reason;
        for (std::size_t i = 0; i < e.defer.size(); ++i) {
            if (used[i] || e.defer[i].address != r.address) continue;
            used[i] = true;
            reason = e.defer[i].reason;
            break;
        }
        out.push_back(std::move(reason));
    }
    return out;
}

std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);  // UTF-8 passes through
        }
    }
    return out + "\"";
}

// Reads one queue file's envelope and content size; nullopt (and a message
// on stderr) when it cannot be read.
std::optional<Entry> load(const std::string& qdir, std::string_view dir, const std::string& id) {
    std::string path = qdir + "/" + std::string(dir) + "/" + id;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return std::nullopt;  // delivered or moved meanwhile
    std::uint64_t off = 0;
    auto env = queue::read_envelope(fd.get(), &off);
    if (!env) {
        std::fprintf(stderr, "postern: %s: %s\n", path.c_str(), env.error().text.c_str());
        return std::nullopt;
    }
    Entry e{id, dir, std::move(*env), 0};
    auto r = queue::read_content(fd.get(), off, [&](std::string_view b) -> Result<void> {
        e.size += b.size();
        return {};
    });
    if (!r) std::fprintf(stderr, "postern: %s: %s\n", path.c_str(), r.error().text.c_str());
    auto d = queue::read_defer_log(qdir, id);
    if (d) e.defer = std::move(*d);
    else std::fprintf(stderr, "postern: %s: %s\n", id.c_str(), d.error().text.c_str());
    return e;
}

std::vector<Entry> scan(const std::string& qdir) {
    std::vector<Entry> out;
    for (std::string_view dir : {queue::Incoming, queue::Active, queue::Deferred, queue::Hold}) {
        std::string path = qdir + "/" + std::string(dir);
        DirPtr d(::opendir(path.c_str()));
        if (!d) continue;
        std::vector<std::string> ids;
        while (const dirent* de = ::readdir(d.get()))
            if (queue::valid_id(de->d_name)) ids.emplace_back(de->d_name);
        d.reset();
        for (auto& id : ids)
            if (auto e = load(qdir, dir, id)) out.push_back(std::move(*e));
    }
    // IDs sort by arrival time.
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.id < b.id; });
    return out;
}

}  // namespace

int list(const config::Params& p, bool json, std::ostream& out) {
    auto entries = scan(p.queue_directory);
    if (json) {
        for (auto& e : entries) {
            out << "{\"queue_name\": " << json_string(e.dir) << ", \"queue_id\": " << json_string(e.id)
                << ", \"arrival_time\": " << e.env.arrival_us / 1000000 << ", \"message_size\": " << e.size
                << ", \"sender\": " << json_string(e.env.sender) << ", \"recipients\": [";
            auto reasons = delay_reasons(e);
            std::size_t n = 0;
            for (auto& r : e.env.recipients) {
                if (r.status != queue::StatusPending) continue;
                out << (n ? ", " : "") << "{\"address\": " << json_string(r.address);
                if (!reasons[n].empty()) out << ", \"delay_reason\": " << json_string(reasons[n]);
                out << "}";
                ++n;
            }
            out << "]}\n";
        }
        return EX_OK;
    }
    if (entries.empty()) {
        out << "Mail queue is empty\n";
        return EX_OK;
    }
    // Postfix's postqueue -p layout for long queue IDs, line by line: an
    // "(reason)" line right-aligned to column 78 above the recipients it
    // applies to, repeated only when the reason changes ("reason
    // unavailable" when it goes away); a blank line between messages; the
    // total in whole Kbytes, rounded down.
    char line[512];
    std::snprintf(line, sizeof line, "%-17s %8s %-19s %s\n", "----Queue ID-----", "--Size--",
                  "---Arrival Time----", "--Sender/Recipient------");
    out << line;
    std::uint64_t total = 0;
    bool first = true;
    for (auto& e : entries) {
        if (!first) out << "\n";
        first = false;
        char when[32];
        std::time_t t = static_cast<std::time_t>(e.env.arrival_us / 1000000);
        std::tm tm{};
        localtime_r(&t, &tm);
        std::strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);  // asctime's first 19 characters
        std::string id = e.id + (e.dir == queue::Active ? "*" : e.dir == queue::Hold ? "!" : "");
        std::snprintf(line, sizeof line, "%-17s %8llu %19.19s ", id.c_str(), static_cast<unsigned long long>(e.size),
                      when);
        out << line << util::printable(e.env.sender.empty() ? "MAILER-DAEMON" : e.env.sender, 300) << "\n";
        auto reasons = delay_reasons(e);
        std::size_t n = 0;
        std::string shown;
        for (auto& r : e.env.recipients) {
            if (r.status != queue::StatusPending) continue;
            std::string why = util::printable(reasons[n++], 300);
            if (why != shown) {
                shown = why;
                std::string text = why.empty() ? "reason unavailable" : why;
                out << std::string(text.size() < 76 ? 76 - text.size() : 0, ' ') << "(" << text << ")\n";
            }
            out << std::string(47, ' ') << util::printable(r.address, 300) << "\n";
        }
        total += e.size;
    }
    out << "\n-- " << total / 1024 << " Kbytes in " << entries.size()
        << (entries.size() == 1 ? " Request.\n" : " Requests.\n");
    return EX_OK;
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
