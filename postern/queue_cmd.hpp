// NAME
//   postern/queue_cmd.hpp - `postern queue list|show`: look into the queue
// PURPOSE
//   Read-only views of the queue for administrators: a Postfix mailq-shaped
//   listing (or JSON lines, like postqueue -j) and one message's envelope and
//   content (like postcat). Never changes a queue file. Not the queue manager
//   and not the hold/release/delete operations (those coordinate with qmgr).
// SYNOPSIS
//   return queue_cmd::list(params, json, std::cout);
//   return queue_cmd::show(params, "1M0Z90PCG0DBG9R1", std::cout);
// ERRORS
//   sysexits codes: EX_USAGE for a malformed queue ID, EX_NOINPUT when the
//   message is not in the queue; a damaged file is reported and skipped.
// SECURITY
//   Envelope text and content come from clients: control characters are
//   escaped in listings; show prints content as stored.
#pragma once

#include <ostream>
#include <string>

#include "config/config.hpp"

namespace postern::queue_cmd {

int list(const config::Params& p, bool json, std::ostream& out);
int show(const config::Params& p, const std::string& id, std::ostream& out);

}  // namespace postern::queue_cmd
