// local/maildir.cpp - Maildir delivery through lib/mailbox, with errors as a Status.
#include "local/maildir.hpp"

#include "mailbox/mailbox.hpp"

namespace postern::local {

Status deliver_maildir(const std::string& maildir, std::string_view hostname, std::int64_t now_us,
                       const Producer& produce, std::string_view what) {
    if (auto r = mailbox::ensure_maildir(maildir); !r) return storage_status(r.error());
    auto d = mailbox::Delivery::begin(maildir, hostname, now_us);
    if (!d) return storage_status(d.error());
    if (auto r = produce([&](std::string_view s) { return d->append(s); }); !r) return storage_status(r.error());
    if (auto path = d->commit(); !path) return storage_status(path.error());
    return Status::sent("delivered to " + std::string(what));
}

}  // namespace postern::local
