// NAME
//   service/instance.hpp - one instance on disk: queue directory tree and master pid lock
// PURPOSE
//   Creates the queue directory tree with the owners and modes DESIGN.md gives
//   and takes the one-master-per-instance lock. Shared with `postern status`,
//   which reads the same pid file. Not for queue file handling (lib/queue).
// SYNOPSIS
//   auto r = service::prepare_queue_dirs(params);      // as root
//   auto lock = service::lock_pid_file(params);        // Result<fs::FileLock>
//   auto pid = service::running_pid(params);           // std::optional<pid_t>
// ERRORS
//   Result errors with text a person can act on.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "config/config.hpp"
#include "fs/fs.hpp"

namespace postern::service {

std::string pid_file_path(const config::Params& p);
Result<void> prepare_queue_dirs(const config::Params& p);
// Takes the lock or fails with Error::temp naming the running master's pid.
Result<fs::FileLock> lock_pid_file(const config::Params& p);
Result<void> write_pid(const fs::FileLock& lock, pid_t pid);
// The pid of the master that holds the lock, if one does.
std::optional<pid_t> running_pid(const config::Params& p);

}  // namespace postern::service
