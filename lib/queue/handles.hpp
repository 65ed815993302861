// NAME
//   queue/handles.hpp - owning pointers for C handles used by lib/queue
// PURPOSE
//   Zero-size deleters (STYLE R1) so lib/queue never calls closedir by hand.
//   Not for use outside lib/queue.
// SYNOPSIS
//   DirPtr d(::opendir(path.c_str()));  if (!d) ...;  ::readdir(d.get());
#pragma once

#include <dirent.h>

#include <memory>

#include "util/handles.hpp"

namespace postern::queue {

using DirPtr = std::unique_ptr<DIR, CDeleter<::closedir>>;

}  // namespace postern::queue
