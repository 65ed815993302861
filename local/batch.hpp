// NAME
//   local/batch.hpp - the Maildir stores of a batch of requests, one child per Maildir
// PURPOSE
//   qmgr sends the local agent several requests back-to-back on one
//   connection (local/server.hpp), usually for one recipient. The agent
//   resolves every request first (local/agent.hpp); each Maildir copy it
//   decides on becomes a StoreJob instead of a child of its own. Here the
//   jobs are grouped by (uid, gid, Maildir path) and each group runs in ONE
//   child running as that uid and gid, which writes every message of the
//   group and fsyncs new/ once (local/maildir.hpp deliver_maildir_batch).
//   Each job gets its own Status and the time it was known. Not the
//   resolution (aliases, .forward, loops), not mbox, files, commands or
//   forwarding: those still run one at a time where they are decided.
// SYNOPSIS
//   std::vector<StoreJob> jobs;  jobs.push_back({uid, gid, path, "maildir", &msg, headers});
//   auto groups = group_stores(jobs);          // job indexes per child, for tests and run_stores
//   run_stores(jobs, myhostname, command_time_limit);   // fills in status and done_us
//   run_stores(std::span(jobs).subspan(first), ...);     // only those not run yet
// ERRORS
//   Nothing is returned or thrown: a child that fails (cannot drop
//   privileges, dies, times out) defers every job of its group (4.3.0).
// SECURITY
//   Each child runs as its group's uid and gid (uid 0 is refused by
//   privsep) and keeps only the queue file descriptors of its jobs. A group
//   holds at most MaxStoreGroup jobs, so its answer is bounded (privsep
//   MaxStatuses).
// SEE ALSO
//   local/agent.hpp, local/maildir.hpp, local/privsep.hpp, mailbox/mailbox.hpp
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "local/message.hpp"
#include "local/privsep.hpp"
#include "local/status.hpp"

namespace postern::local {

// Jobs one child takes at most; a bigger group is split in order.
inline constexpr std::size_t MaxStoreGroup = 64;
static_assert(MaxStoreGroup <= MaxStatuses);

struct StoreJob {
    uid_t uid = 0;
    gid_t gid = 0;
    std::string path;             // the Maildir, as configured (ends in '/')
    std::string what;             // "maildir", "file: /x/": for "delivered to WHAT"
    const Message* msg = nullptr; // the request's queue file; must outlive run_stores
    std::string headers;          // Return-Path and Delivered-To
    Status status{};              // set by run_stores
    std::int64_t done_us = 0;     // set by run_stores: when status was known
};

// Indexes into jobs, one vector per child: jobs with equal (uid, gid, path)
// together, in job order; groups in the order of their first job; groups
// bigger than max_group split into pieces of max_group.
std::vector<std::vector<std::size_t>> group_stores(std::span<const StoreJob> jobs,
                                                   std::size_t max_group = MaxStoreGroup);

// BLOCKING: runs every group (one child each, one after the other) and sets
// each job's status and done_us. limit bounds each child.
void run_stores(std::span<StoreJob> jobs, std::string_view hostname, std::chrono::seconds limit);

// The wall clock in microseconds since the epoch.
std::int64_t wall_clock_us();

}  // namespace postern::local
