// NAME
//   local/tables.hpp - the lookup tables the local agent consults
// PURPOSE
//   MapList: a main.cf list of tables ("hash:/etc/postern/aliases,
//   texthash:/x") asked in order, first hit wins. A table that cannot be
//   opened is retried at the next lookup and makes lookups fail temporarily
//   meanwhile: delivering as if an alias did not exist would be wrong. A
//   table whose file was replaced since it was opened (`postern map build`,
//   maps::Map::changed) is opened again before the lookup: local runs outside
//   the jail and can, so it need not exit like smtpd. If that fails, the
//   table counts as unopenable (the old contents are not used).
//   IdMap: virtual_uid_maps / virtual_gid_maps, "static:N" or tables whose
//   values are numbers. Not the table formats (maps/maps.hpp).
// SYNOPSIS
//   MapList aliases(params.alias_maps, maps::Format::Aliases);
//   auto v = aliases.lookup("postmaster");                 // Result<optional<string>>
//   IdMap uids(params.virtual_uid_maps);  auto u = uids.lookup({"a@b.example", "@b.example"});
// ERRORS
//   lookup: Error::temp naming the table when it cannot be opened or fails;
//   IdMap: Error::temp for a value that is not a number in 1..2^31-1.
// SECURITY
//   Keys come from mail addresses; maps bound their length.
// SEE ALSO
//   maps/maps.hpp
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "maps/maps.hpp"
#include "util/result.hpp"

namespace postern::local {

class MapList {
public:
    MapList() = default;
    MapList(std::string_view specs, maps::Format format);
    Result<std::optional<std::string>> lookup(std::string_view key);
    bool empty() const noexcept { return slots_.empty(); }

private:
    struct Slot {
        std::string spec;
        std::unique_ptr<maps::Map> map;
        std::string error;  // why it is not open
    };
    void open(Slot& s);

    std::vector<Slot> slots_;
    maps::Format format_ = maps::Format::Postmap;
};

class IdMap {
public:
    IdMap() = default;
    explicit IdMap(std::string_view spec);
    // The first key found wins; nullopt when none is.
    Result<std::optional<unsigned>> lookup(const std::vector<std::string>& keys);

private:
    std::optional<unsigned> fixed_;
    bool bad_static_ = false;
    MapList maps_;
};

}  // namespace postern::local
