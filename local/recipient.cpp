// local/recipient.cpp - address splitting, extensions and domain lists.
#include "local/recipient.hpp"

#include "util/strings.hpp"

namespace postern::local {
namespace {

// "\"a b\"" -> "a b", with backslash escapes removed; anything else as is.
std::string unquote_local(std::string_view s) {
    if (s.size() < 2 || s.front() != '"' || s.back() != '"') return std::string(s);
    std::string out;
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
        if (s[i] == '\\' && i + 2 < s.size()) ++i;
        out += s[i];
    }
    return out;
}

}  // namespace

Address split_address(std::string_view address) {
    Address a;
    auto at = address.rfind('@');
    if (at == std::string_view::npos) {
        a.local = unquote_local(address);
        return a;
    }
    a.local = unquote_local(address.substr(0, at));
    a.domain = util::to_lower(address.substr(at + 1));
    return a;
}

LocalPart split_extension(std::string_view local, std::string_view delimiters) {
    LocalPart p;
    auto pos = delimiters.empty() ? std::string_view::npos : local.find_first_of(delimiters, 1);
    if (pos == std::string_view::npos) {
        p.user = std::string(local);
        return p;
    }
    p.user = std::string(local.substr(0, pos));
    p.extension = std::string(local.substr(pos + 1));
    p.delimiter = local[pos];
    return p;
}

DomainList::DomainList(std::string_view list) {
    for (auto& item : util::split_list(list)) {
        if (item.find(':') != std::string::npos || item.find('/') != std::string::npos) continue;
        names_.push_back(util::to_lower(item));
    }
}

bool DomainList::contains(std::string_view domain) const {
    for (auto& n : names_)
        if (util::iequals(n, domain)) return true;
    return false;
}

}  // namespace postern::local
