// NAME
//   local/maildir.hpp - one message into a Maildir, as the local agent does it
// PURPOSE
//   The glue between lib/mailbox and a delivery: make sure the Maildir exists,
//   write the message through a Producer, commit, and turn errors into a
//   Status. Called in a child already running as the mailbox owner. Not the
//   Maildir mechanics themselves (mailbox/mailbox.hpp).
// SYNOPSIS
//   Status s = deliver_maildir(home + "/Maildir", hostname, now_us, producer, "maildir");
// ERRORS
//   A Status: sent "delivered to WHAT"; a full disk or quota 4.2.2; a
//   symlink or non-directory in the way and other failures 4.2.0 (deferred:
//   a broken mailbox is fixed by a person, the mail waits meanwhile).
// SECURITY
//   See mailbox/mailbox.hpp: no symlinks inside the Maildir, O_EXCL files.
// SEE ALSO
//   mailbox/mailbox.hpp, local/mbox.hpp
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "local/mbox.hpp"
#include "local/status.hpp"

namespace postern::local {

Status deliver_maildir(const std::string& maildir, std::string_view hostname, std::int64_t now_us,
                       const Producer& produce, std::string_view what);

}  // namespace postern::local
