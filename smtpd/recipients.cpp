// smtpd/recipients.cpp - system users and alias keys as the local recipient table.
#include "smtpd/recipients.hpp"

#include <fcntl.h>
#include <pwd.h>

#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::smtpd {

void LocalRecipients::watch_users_file(const std::string& path) {
    users_fd_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!users_watch_.watch(users_fd_.get())) users_fd_.reset();
}

bool LocalRecipients::users_changed(std::chrono::steady_clock::time_point now) {
    if (!users_watch_.watching() || now - users_checked_ < std::chrono::seconds(1)) return false;
    users_checked_ = now;
    return users_watch_.changed();
}

void LocalRecipients::load(const config::Params& p) {
    // Note: a snapshot taken before the chroot; users_changed() tells when
    // /etc/passwd changes, so that a fresh smtpd takes a new snapshot.
    watch_users_file("/etc/passwd");
    setpwent();
    while (passwd* pw = getpwent()) users_.insert(util::to_lower(pw->pw_name));
    endpwent();
    for (auto& spec : util::split_list(p.alias_maps)) {
        auto m = maps::open(spec, maps::Format::Aliases);
        if (!m) {
            log::warn("alias_maps: %s; only system users are local recipients", m.error().text.c_str());
            continue;
        }
        maps_.push_back(std::move(*m));
    }
    for (auto& spec : util::split_list(p.virtual_mailbox_maps)) {
        auto m = maps::open(spec);
        if (!m) {
            log::warn("virtual_mailbox_maps: %s; virtual recipients cannot be checked", m.error().text.c_str());
            virtual_ok_ = false;
            continue;
        }
        virtual_maps_.push_back(std::move(*m));
    }
}

const maps::Map* LocalRecipients::changed_table() const {
    for (auto& m : maps_)
        if (m->changed()) return m.get();
    for (auto& m : virtual_maps_)
        if (m->changed()) return m.get();
    return nullptr;
}

namespace {

// Is key in any of the maps? nullopt (logged) when one of them fails.
std::optional<bool> in_any(const std::vector<std::unique_ptr<maps::Map>>& ms, const std::string& key) {
    for (auto& m : ms) {
        auto r = m->lookup(key);
        if (!r) {
            log::warn("%s: lookup of %s failed: %s", m->spec().c_str(), util::printable(key).c_str(),
                      r.error().text.c_str());
            return std::nullopt;
        }
        if (*r) return true;
    }
    return false;
}

}  // namespace

std::optional<bool> LocalRecipients::exists(std::string_view local) const {
    std::string key = util::to_lower(local);
    if (users_.count(key)) return true;
    return in_any(maps_, key);
}

std::optional<bool> LocalRecipients::virtual_exists(std::string_view address) const {
    if (!virtual_ok_) return std::nullopt;
    std::string key = util::to_lower(address);
    auto at = key.rfind('@');
    // The address, then the "@domain" catch-all, as local looks them up.
    for (const std::string& k : {key, at == std::string::npos ? key : key.substr(at)}) {
        auto found = in_any(virtual_maps_, k);
        if (!found || *found) return found;
    }
    return false;
}

}  // namespace postern::smtpd
