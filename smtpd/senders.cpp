// smtpd/senders.cpp - sender ownership for authenticated clients (see senders.hpp).
#include "smtpd/senders.hpp"

#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::smtpd {

void SenderLogins::load(const config::Params& p) {
    for (auto& d : util::split_list(p.mydestination)) local_domains_.insert(util::to_lower(d));
    delimiter_ = p.recipient_delimiter;
    for (auto& spec : util::split_list(p.smtpd_sender_login_maps)) {
        have_maps_ = true;
        auto m = maps::open(spec);
        if (!m) {
            log::warn("smtpd_sender_login_maps: %s; senders of authenticated clients cannot be checked",
                      m.error().text.c_str());
            maps_ok_ = false;
            continue;
        }
        maps_.push_back(std::move(*m));
    }
}

const maps::Map* SenderLogins::changed_table() const {
    for (auto& m : maps_)
        if (m->changed()) return m.get();
    return nullptr;
}

std::optional<bool> SenderLogins::owned(std::string_view sender, const AuthUser& user) const {
    std::string addr = util::to_lower(sender);
    auto at = addr.rfind('@');
    std::string local = at == std::string::npos ? addr : addr.substr(0, at);
    std::string domain = at == std::string::npos ? std::string() : addr.substr(at + 1);
    std::string base = local;
    if (!delimiter_.empty()) {
        auto d = local.find_first_of(delimiter_);
        if (d != std::string::npos && d > 0) base.resize(d);
    }
    std::string login = util::to_lower(user.name);
    if (!have_maps_) {
        if (user.virtual_user) return !domain.empty() && base + "@" + domain == login;
        return base == login && (domain.empty() || local_domains_.count(domain) != 0);
    }
    if (!maps_ok_) return std::nullopt;
    std::vector<std::string> keys{addr};
    if (base != local) keys.push_back(base + (domain.empty() ? "" : "@" + domain));
    if (!domain.empty()) keys.push_back("@" + domain);
    for (auto& key : keys) {
        for (auto& m : maps_) {
            auto r = m->lookup(key);
            if (!r) {
                log::warn("%s: lookup of %s failed: %s", m->spec().c_str(), util::printable(key).c_str(),
                          r.error().text.c_str());
                return std::nullopt;
            }
            if (!*r) continue;
            // The first table entry found decides.
            for (auto& owner : util::split_list(**r))
                if (util::to_lower(owner) == login) return true;
            return false;
        }
    }
    return false;
}

}  // namespace postern::smtpd
