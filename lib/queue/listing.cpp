// queue/listing.cpp - the mailq listing (Postfix postqueue -p layout, or JSON lines), shared by
// `postern queue list` (as root) and showq(8) (jailed in the queue directory, for mailq users).
#include <fcntl.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "queue/handles.hpp"
#include "queue/queue.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace postern::queue {
namespace {

struct Entry {
    std::string id;
    std::string_view dir;
    Envelope env;
    std::uint64_t size = 0;
    std::vector<DeferEntry> defer;  // why recipients wait, from defer/<ID>
};

// The defer reason for each pending recipient, in recipient order (empty
// when none is known). A log entry serves one recipient: an address that
// appears twice takes the entries in turn.
std::vector<std::string> delay_reasons(const Entry& e) {
    std::vector<std::string> out;
    std::vector<bool> used(e.defer.size(), false);
    for (const auto& r : e.env.recipients) {
        if (r.status != StatusPending) continue;
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

using util::json_string;

// Reads one queue file's envelope and content size; nullopt (and a warning)
// when it cannot be read.
std::optional<Entry> load(const std::string& qdir, std::string_view dir, const std::string& id,
                          const ListWarn& warn) {
    std::string path = qdir + "/" + std::string(dir) + "/" + id;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) return std::nullopt;  // delivered or moved meanwhile
    std::uint64_t off = 0;
    auto env = read_envelope(fd.get(), &off);
    if (!env) {
        warn(path + ": " + env.error().text);
        return std::nullopt;
    }
    Entry e{id, dir, std::move(*env), 0, {}};
    auto r = read_content(fd.get(), off, [&](std::string_view b) -> Result<void> {
        e.size += b.size();
        return {};
    });
    if (!r) warn(path + ": " + r.error().text);
    auto d = read_defer_log(qdir, id);
    if (d) e.defer = std::move(*d);
    else warn(id + ": " + d.error().text);
    return e;
}

std::vector<Entry> scan(const std::string& qdir, const ListWarn& warn) {
    std::vector<Entry> out;
    for (std::string_view dir : {Incoming, Active, Deferred, Hold}) {
        std::string path = qdir + "/" + std::string(dir);
        DirPtr d(::opendir(path.c_str()));
        if (!d) continue;
        std::vector<std::string> ids;
        while (const dirent* de = ::readdir(d.get()))
            if (valid_id(de->d_name)) ids.emplace_back(de->d_name);
        d.reset();
        for (auto& id : ids)
            if (auto e = load(qdir, dir, id, warn)) out.push_back(std::move(*e));
    }
    // IDs sort by arrival time.
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.id < b.id; });
    return out;
}

Result<void> list_json(const std::vector<Entry>& entries, const ListSink& out) {
    for (auto& e : entries) {
        std::string line = "{\"queue_name\": " + json_string(e.dir) + ", \"queue_id\": " + json_string(e.id) +
                           ", \"arrival_time\": " + std::to_string(e.env.arrival_us / 1000000) +
                           ", \"message_size\": " + std::to_string(e.size) +
                           ", \"sender\": " + json_string(e.env.sender) + ", \"recipients\": [";
        auto reasons = delay_reasons(e);
        std::size_t n = 0;
        for (auto& r : e.env.recipients) {
            if (r.status != StatusPending) continue;
            line += (n ? ", " : "");
            line += "{\"address\": " + json_string(r.address);
            if (!reasons[n].empty()) line += ", \"delay_reason\": " + json_string(reasons[n]);
            line += "}";
            ++n;
        }
        line += "]}\n";
        if (auto r = out(line); !r) return r;
    }
    return {};
}

Result<void> list_text(const std::vector<Entry>& entries, const ListSink& out) {
    if (entries.empty()) return out("Mail queue is empty\n");
    // Postfix's postqueue -p layout for long queue IDs, line by line: an
    // "(reason)" line right-aligned to column 78 above the recipients it
    // applies to, repeated only when the reason changes ("reason
    // unavailable" when it goes away); a blank line between messages; the
    // total in whole Kbytes, rounded down. One call of out per message.
    char line[512];
    std::snprintf(line, sizeof line, "%-17s %8s %-19s %s\n", "----Queue ID-----", "--Size--",
                  "---Arrival Time----", "--Sender/Recipient------");
    std::string text = line;
    std::uint64_t total = 0;
    bool first = true;
    for (auto& e : entries) {
        if (!first) text += "\n";
        first = false;
        char when[32];
        std::time_t t = static_cast<std::time_t>(e.env.arrival_us / 1000000);
        std::tm tm{};
        localtime_r(&t, &tm);
        std::strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);  // asctime's first 19 characters
        std::string id = e.id + (e.dir == Active ? "*" : e.dir == Hold ? "!" : "");
        std::snprintf(line, sizeof line, "%-17s %8llu %19.19s ", id.c_str(), static_cast<unsigned long long>(e.size),
                      when);
        text += line;
        text += util::printable(e.env.sender.empty() ? "MAILER-DAEMON" : e.env.sender, 300) + "\n";
        auto reasons = delay_reasons(e);
        std::size_t n = 0;
        std::string shown;
        for (auto& r : e.env.recipients) {
            if (r.status != StatusPending) continue;
            std::string why = util::printable(reasons[n++], 300);
            if (why != shown) {
                shown = why;
                std::string reason = why.empty() ? "reason unavailable" : why;
                text += std::string(reason.size() < 76 ? 76 - reason.size() : 0, ' ') + "(" + reason + ")\n";
            }
            text += std::string(47, ' ') + util::printable(r.address, 300) + "\n";
        }
        total += e.size;
        if (auto r = out(text); !r) return r;
        text.clear();
    }
    text += "\n-- " + std::to_string(total / 1024) + " Kbytes in " + std::to_string(entries.size()) +
            (entries.size() == 1 ? " Request.\n" : " Requests.\n");
    return out(text);
}

}  // namespace

Result<void> list_queue(const std::string& queue_dir, ListFormat format, const ListSink& out, const ListWarn& warn) {
    auto entries = scan(queue_dir, warn);
    return format == ListFormat::Json ? list_json(entries, out) : list_text(entries, out);
}

}  // namespace postern::queue
