// NAME
//   service/proto.hpp - how master and its children talk
// PURPOSE
//   The descriptor numbers, command-line flags and status record shared by
//   master (which spawns) and lib/service (which every daemon runs on). Not a
//   general IPC format: that is lib/ipc.
// SYNOPSIS
//   child:  write(kStatusFd, &StatusMsg{getpid(), gen, Status::Taken}, sizeof ...)
//   master: read StatusMsg records from the service's status pipe.
//   argv:   PROGRAM -c DIR -n NAME -t inet|unix -s NSOCK -g GEN [-u] [-j] [-o k=v]... -- ARGS...
// SECURITY
//   Status records come from our own children; master still checks the pid and
//   generation before believing one.
#pragma once

#include <cstdint>
#include <sys/types.h>

namespace postern::service::proto {

inline constexpr int kStatusFd = 3;    // child -> master: StatusMsg records (pipe)
inline constexpr int kLifelineFd = 4;  // master -> child: EOF means "finish and exit"
inline constexpr int kListenFd = 5;    // first listening socket; -s says how many

enum class Status : std::int32_t { Taken = 0, Avail = 1 };

// Written with one write(2) of sizeof(StatusMsg) < PIPE_BUF bytes: atomic.
struct StatusMsg {
    std::int32_t pid;
    std::uint32_t generation;
    Status status;
};

}  // namespace postern::service::proto
