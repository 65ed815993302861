// authd/accounts.cpp - user info for system and virtual users.
#include "authd/accounts.hpp"

#include "util/strings.hpp"

namespace postern::authd {
namespace {

std::optional<unsigned> parse_id(std::string_view s) {
    auto n = util::parse_long(util::trim(s));
    if (!n || *n < 1 || *n > 0x7fffffff) return std::nullopt;
    return static_cast<unsigned>(*n);
}

}  // namespace

MailboxSettings MailboxSettings::from(const config::Params& p) {
    return {p.home_mailbox, p.mail_spool_directory, p.virtual_mailbox_base};
}

std::string join_path(std::string_view dir, std::string_view name) {
    while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
    while (!name.empty() && name.front() == '/') name.remove_prefix(1);
    std::string out(dir);
    if (out.empty() || out.back() != '/') out += '/';
    out += name;
    return out;
}

auth::UserInfo system_user_info(const privs::UserInfo& pw, const MailboxSettings& s) {
    auth::UserInfo u;
    u.kind = auth::UserInfo::Kind::System;
    u.name = pw.name;
    u.uid = pw.uid;
    u.gid = pw.gid;
    u.home = pw.home;
    u.mailbox = s.home_mailbox.empty() ? join_path(s.mail_spool_directory, pw.name) : join_path(pw.home, s.home_mailbox);
    return u;
}

IdMap::IdMap(std::string name, std::string_view spec) : name_(std::move(name)) {
    std::string_view s = util::trim(spec);
    if (s.empty()) {
        bad_ = name_ + " is empty: set it to static:UID or to tables";
        return;
    }
    if (s.substr(0, 7) == "static:") {
        fixed_ = parse_id(s.substr(7));
        if (!fixed_) bad_ = name_ + ": static: id is not a number in 1..2147483647";
        return;
    }
    for (auto& t : util::split_list(s)) tables_.push_back({t, nullptr});
}

Result<std::optional<unsigned>> IdMap::lookup(std::string_view address) {
    if (!bad_.empty()) return Error::temp(bad_);
    if (fixed_) return fixed_;
    std::vector<std::string> keys{std::string(address)};
    if (auto at = address.rfind('@'); at != std::string_view::npos) keys.emplace_back(address.substr(at));
    for (auto& k : keys) {
        for (auto& t : tables_) {
            // Note: we run outside any jail, so a replaced table is simply opened again.
            if (t.map && t.map->changed()) t.map.reset();
            if (!t.map) {
                auto m = maps::open(t.spec);
                if (!m) return Error::temp(name_ + ": " + m.error().text);
                t.map = std::move(*m);
            }
            auto v = t.map->lookup(k);
            if (!v) return Error::temp(name_ + ": table " + t.spec + ": " + v.error().text);
            if (!*v) continue;
            auto id = parse_id(**v);
            if (!id)
                return Error::temp(name_ + ": \"" + util::printable(**v, 40) + "\" for " + util::printable(k) +
                                   " is not a number in 1..2147483647");
            return id;
        }
    }
    return std::optional<unsigned>();
}

VirtualDirectory::VirtualDirectory(const config::Params& p)
    : spec_(p.virtual_user_database), base_(p.virtual_mailbox_base), uids_("virtual_uid_maps", p.virtual_uid_maps),
      gids_("virtual_gid_maps", p.virtual_gid_maps) {
    if (auto r = reopen_if_needed(); !r) open_error_ = r.error().text;
}

Result<void> VirtualDirectory::reopen_if_needed() {
    if (table_ && !table_->changed()) return {};
    // A failed open must not leave the old table in use.
    table_.reset();
    auto t = auth::UserTable::open(spec_);
    if (!t) return Error::temp("virtual_user_database " + spec_ + ": " + t.error().text);
    table_ = std::move(*t);
    return {};
}

Result<std::optional<auth::VirtualUser>> VirtualDirectory::find(std::string_view address) {
    auto addr = auth::normalize_address(address);
    if (!addr) return std::optional<auth::VirtualUser>();
    if (auto r = reopen_if_needed(); !r) return r.error();
    auto u = table_->find(*addr);
    if (!u) return Error::temp("virtual_user_database " + spec_ + ": " + u.error().text);
    return u;
}

Result<auth::UserInfo> VirtualDirectory::info(const auth::VirtualUser& v) {
    if (base_.empty() || base_.front() != '/')
        return Error::temp("virtual_mailbox_base must be an absolute path for virtual users");
    auto uid = uids_.lookup(v.address);
    if (!uid) return uid.error();
    if (!*uid) return Error::temp("virtual_uid_maps has no uid for " + util::printable(v.address));
    auto gid = gids_.lookup(v.address);
    if (!gid) return gid.error();
    if (!*gid) return Error::temp("virtual_gid_maps has no gid for " + util::printable(v.address));
    auth::UserInfo u;
    u.kind = auth::UserInfo::Kind::Virtual;
    u.name = v.address;
    u.uid = static_cast<uid_t>(**uid);
    u.gid = static_cast<gid_t>(**gid);
    u.home = base_;
    u.mailbox = join_path(base_, v.mailbox);
    u.quota = v.quota;
    return u;
}

}  // namespace postern::authd
