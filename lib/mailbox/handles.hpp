// NAME
//   mailbox/handles.hpp - owning pointers for C handles used by lib/mailbox
// PURPOSE
//   Zero-size deleters (STYLE R1) so lib/mailbox never calls closedir by hand.
//   Not for use outside lib/mailbox.
// SYNOPSIS
//   DirPtr d(::fdopendir(fd.release()));  if (!d) ...;  ::readdir(d.get());
#pragma once

#include <dirent.h>

#include <memory>

#include "util/handles.hpp"

namespace postern::mailbox {

using DirPtr = std::unique_ptr<DIR, CDeleter<::closedir>>;

}  // namespace postern::mailbox
