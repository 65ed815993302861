// local/tables.cpp - ordered table lists and uid/gid tables.
#include "local/tables.hpp"

#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::local {
namespace {

std::optional<unsigned> parse_id(std::string_view s) {
    auto n = util::parse_long(util::trim(s));
    if (!n || *n < 1 || *n > 0x7fffffff) return std::nullopt;
    return static_cast<unsigned>(*n);
}

}  // namespace

MapList::MapList(std::string_view specs, maps::Format format) : format_(format) {
    for (auto& spec : util::split_list(specs)) {
        slots_.push_back({spec, nullptr, ""});
        open(slots_.back());
    }
}

void MapList::open(Slot& s) {
    auto m = maps::open(s.spec, format_);
    if (m) {
        s.map = std::move(*m);
        s.error.clear();
    } else {
        s.error = m.error().text;
    }
}

Result<std::optional<std::string>> MapList::lookup(std::string_view key) {
    for (auto& s : slots_) {
        if (s.map && s.map->changed()) {
            log::info("table %s has changed -- reopening", s.spec.c_str());
            s.map.reset();  // a failed open must not leave the old table in use
        }
        if (!s.map) open(s);
        if (!s.map) return Error::temp("table " + s.spec + " is unavailable: " + s.error);
        auto v = s.map->lookup(key);
        if (!v) return Error::temp("table " + s.spec + ": " + v.error().text);
        if (*v) return v;
    }
    return std::optional<std::string>();
}

IdMap::IdMap(std::string_view spec) {
    std::string_view s = util::trim(spec);
    if (s.substr(0, 7) == "static:") {
        fixed_ = parse_id(s.substr(7));
        bad_static_ = !fixed_;  // every lookup reports it
        return;
    }
    maps_ = MapList(s, maps::Format::Postmap);
}

Result<std::optional<unsigned>> IdMap::lookup(const std::vector<std::string>& keys) {
    if (bad_static_) return Error::temp("static: id is not a number in 1..2147483647");
    if (fixed_) return fixed_;
    for (auto& k : keys) {
        auto v = maps_.lookup(k);
        if (!v) return v.error();
        if (!*v) continue;
        auto id = parse_id(**v);
        if (!id) return Error::temp("id \"" + util::printable(**v) + "\" for " + util::printable(k) + " is not a number in 1..2147483647");
        return id;
    }
    return std::optional<unsigned>();
}

}  // namespace postern::local
