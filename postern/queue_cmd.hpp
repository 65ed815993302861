// NAME
//   postern/queue_cmd.hpp - `postern queue ...`: look into the queue and act on messages
// PURPOSE
//   The administrator's view of the queue: a Postfix mailq-shaped listing
//   (or JSON lines, like postqueue -j) with each waiting recipient's defer
//   reason, one message's envelope and content (like postcat), and the
//   postsuper/postqueue operations: flush, hold, release, delete, requeue.
//   The operations only rename, unlink and touch queue files (and remove
//   defer logs); they never rewrite one. Not the queue manager: after
//   release, requeue and flush it pokes qmgr through its trigger socket
//   (queue_directory/private/qmgr: "F" scan deferred/, "A" scan incoming/),
//   and a qmgr that is not running finds the files later by itself.
//
//   Verbs, with the subdirectories they take messages from:
//     flush            deferred/: mtime := now (qmgr's next-attempt time); poke "F"
//     hold             incoming/ active/ deferred/ -> hold/
//     release          hold/ -> deferred/ with mtime now; poke "F"
//     delete           incoming/ active/ deferred/ hold/ (a named ID also corrupt/) -> gone, with defer/<ID>
//     requeue          deferred/ hold/ -> incoming/; poke "A"
//   Targets: one or more queue IDs, ALL (every message in those
//   subdirectories), or - (queue IDs from the input stream, one per line).
//   A message found elsewhere (holding a held message, requeueing an active
//   one) is left alone and not counted.
//
//   Running next to qmgr: qmgr moves files between incoming/, active/ and
//   deferred/ and removes delivered ones at any time, so a rename or unlink
//   that finds no file looks for the message again in every subdirectory,
//   for up to three rounds, before calling it gone. qmgr keeps working on
//   an active/ file through its descriptor when it is moved or removed.
// SYNOPSIS
//   return queue_cmd::list(params, json, std::cout);
//   return queue_cmd::show(params, "1M0Z90PCG0DBG9R1", std::cout);
//   return queue_cmd::change(params, queue_cmd::Verb::Hold, {"ALL"}, std::cin);
//   return queue_cmd::flush(params);
// ERRORS
//   sysexits codes: EX_USAGE for a malformed queue ID or a bad mix of targets
//   (nothing is done then), EX_NOINPUT when a named message is not in the
//   queue (the others are still done), EX_TEMPFAIL for I/O trouble; a damaged
//   file is reported and skipped by list. Each operation prints a summary to
//   stderr: "postern: Deleted: 3 messages".
// SECURITY
//   Runs as root in a directory the mail owner controls: IDs are checked with
//   queue::valid_id (no other path can be named), subdirectories are opened
//   with O_NOFOLLOW and every call is relative to them, no symlink is
//   followed (rename, unlink and utimensat act on the entry itself), and no
//   file is created, so ownership stays with the mail owner. Envelope text
//   and content come from clients: control characters are escaped in
//   listings; show prints content as stored.
// SEE ALSO
//   queue/queue.hpp (subdirectories, defer logs), qmgr/qmgr.hpp, doc/postern.1,
//   Postfix postqueue(1) and postsuper(1)
#pragma once

#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace postern::queue_cmd {

int list(const config::Params& p, bool json, std::ostream& out);
int show(const config::Params& p, const std::string& id, std::ostream& out);

enum class Verb { Hold, Release, Delete, Requeue };

// targets: queue IDs, or exactly one of "ALL" and "-" (IDs read from in).
int change(const config::Params& p, Verb verb, const std::vector<std::string>& targets, std::istream& in);
int flush(const config::Params& p);

}  // namespace postern::queue_cmd
