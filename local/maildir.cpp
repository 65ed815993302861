// local/maildir.cpp - Maildir delivery through lib/mailbox (group commit), with errors as Statuses.
#include "local/maildir.hpp"

#include <utility>

#include "mailbox/mailbox.hpp"

namespace postern::local {
namespace {

// Writes one message and moves it into new/ (not yet durable).
Result<mailbox::Delivery> write_one(const mailbox::Maildir& md, std::string_view hostname, std::int64_t now_us,
                                    const Producer& produce) {
    auto d = md.begin(hostname, now_us);
    if (!d) return d.error();
    if (auto r = produce([&](std::string_view s) { return d->append(s); }); !r) return r.error();
    if (auto path = d->commit_file(); !path) return path.error();
    return std::move(*d);
}

}  // namespace

Status deliver_maildir(const std::string& maildir, std::string_view hostname, std::int64_t now_us,
                       const Producer& produce, std::string_view what) {
    return deliver_maildir_batch(maildir, hostname, now_us, {{produce, std::string(what)}}).front();
}

std::vector<Status> deliver_maildir_batch(const std::string& maildir, std::string_view hostname, std::int64_t now_us,
                                          const std::vector<MaildirMessage>& messages) {
    auto all = [&](const Error& e) { return std::vector<Status>(messages.size(), storage_status(e)); };
    if (auto r = mailbox::ensure_maildir(maildir); !r) return all(r.error());
    auto md = mailbox::Maildir::open(maildir);
    if (!md) return all(md.error());
    std::vector<Status> out;
    std::vector<mailbox::Delivery> committed;
    std::vector<std::size_t> committed_at;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        auto d = write_one(*md, hostname, now_us, messages[i].produce);
        if (!d) {
            out.push_back(storage_status(d.error()));
            continue;
        }
        out.push_back(Status::sent("delivered to " + messages[i].what));
        committed.push_back(std::move(*d));
        committed_at.push_back(i);
    }
    if (committed.empty()) return out;
    if (auto r = md->sync_new(); !r) {
        // Not durable: take them all back, so that no deferred message is in new/.
        for (auto& d : committed) d.uncommit();
        for (std::size_t i : committed_at) out[i] = storage_status(r.error());
    }
    return out;
}

}  // namespace postern::local
