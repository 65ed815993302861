// NAME
//   postern/check.hpp - `postern check`: is this instance fit to run?
// PURPOSE
//   Validates main.cf and master.cf (every error as `file:line: message`),
//   the programs master.cf names, the users and groups, and the ownership and
//   modes of the config and queue directories. Pure reporting: it changes
//   nothing. Not the config parser itself (lib/config).
// SYNOPSIS
//   auto report = check::run(config_dir);
//   for (auto& e : report.errors) puts(e);   report.ok()
#pragma once

#include <string>
#include <vector>

namespace postern::check {

struct Report {
    std::vector<std::string> errors;
    std::vector<std::string> warnings;
    bool ok() const { return errors.empty(); }
};

Report run(const std::string& config_dir);

}  // namespace postern::check
