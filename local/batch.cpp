// local/batch.cpp - grouping a batch's Maildir stores and running each group in one child.
#include "local/batch.hpp"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "local/maildir.hpp"
#include "util/assert.hpp"

namespace postern::local {
namespace {

void run_group(std::span<StoreJob> jobs, const std::vector<std::size_t>& group, std::string_view hostname,
               std::chrono::seconds limit) {
    const StoreJob& first = jobs[group.front()];
    std::vector<int> fds;
    for (std::size_t i : group) {
        POSTERN_ASSERT(jobs[i].msg != nullptr);
        fds.push_back(jobs[i].msg->fd());
    }
    std::sort(fds.begin(), fds.end());
    fds.erase(std::unique(fds.begin(), fds.end()), fds.end());
    auto statuses = run_statuses_as(first.uid, first.gid, limit, fds, group.size(), [&] {
        std::vector<MaildirMessage> messages;
        for (std::size_t i : group) {
            const StoreJob& j = jobs[i];
            messages.push_back({[&j](const Sink& s) { return j.msg->stream_lf(j.headers, false, s); }, j.what});
        }
        return deliver_maildir_batch(first.path, hostname, wall_clock_us(), messages);
    });
    // An honest child answers once per message (deliver_maildir_batch does);
    // run_statuses_as has checked the count.
    POSTERN_ASSERT(statuses.size() == group.size());
    const std::int64_t done = wall_clock_us();
    for (std::size_t k = 0; k < group.size(); ++k) {
        jobs[group[k]].status = std::move(statuses[k]);
        jobs[group[k]].done_us = done;
    }
}

}  // namespace

std::int64_t wall_clock_us() {
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::vector<std::vector<std::size_t>> group_stores(std::span<const StoreJob> jobs, std::size_t max_group) {
    POSTERN_ASSERT(max_group > 0);
    using Key = std::tuple<uid_t, gid_t, std::string>;
    std::map<Key, std::size_t> open;  // key -> its group still taking jobs
    std::vector<std::vector<std::size_t>> groups;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        Key key{jobs[i].uid, jobs[i].gid, jobs[i].path};
        auto it = open.find(key);
        if (it == open.end() || groups[it->second].size() >= max_group) {
            groups.emplace_back();
            it = open.insert_or_assign(std::move(key), groups.size() - 1).first;
        }
        groups[it->second].push_back(i);
    }
    return groups;
}

void run_stores(std::span<StoreJob> jobs, std::string_view hostname, std::chrono::seconds limit) {
    for (auto& group : group_stores(jobs)) run_group(jobs, group, hostname, limit);
}

}  // namespace postern::local
