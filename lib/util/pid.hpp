// NAME
//   util/pid.hpp - this process's ID without a system call each time
// PURPOSE
//   glibc's getpid() enters the kernel every time, and log lines, status
//   reports to master and temp file names want it per message. cached_pid()
//   asks once and forgets the answer in a child forked with fork(2) (a
//   pthread_atfork handler), so a child never uses its parent's ID. Not for
//   children made with clone(2) or vfork(2) directly (none here).
// SYNOPSIS
//   std::to_string(util::cached_pid())
#pragma once

#include <sys/types.h>

namespace postern::util {

pid_t cached_pid() noexcept;

}  // namespace postern::util
