// NAME
//   local/system.hpp - the expander's view of the real system
// PURPOSE
//   The Resolver (local/aliases.hpp) the agent uses: alias_maps, the passwd
//   database, default_privs, mydestination, allow_mail_to_commands/files, and
//   reading ~/.forward and :include: files in a child running as the user
//   whose rights apply (local/privsep.hpp). Unit tests use a fake instead.
// SYNOPSIS
//   SystemResolver r(cfg);  Expander x(r, opts);
// ERRORS
//   Lookups fail with Error::temp (map or NSS trouble, a missing
//   default_privs user, a child that fails). An unsafe or unreadable .forward
//   is logged as a warning and skipped, not an error.
// SECURITY
//   .forward and :include: files are opened by the user whose rights apply
//   (never by root) and obeyed only when safe: a .forward must pass
//   local/forward.hpp unsafe_file, an :include: file must be a regular file
//   not writable by group or others. At most MaxForwardFileSize /
//   MaxIncludeFileSize bytes are read.
// SEE ALSO
//   local/aliases.hpp, local/privsep.hpp, local/tables.hpp
#pragma once

#include <chrono>
#include <set>
#include <string>

#include "config/config.hpp"
#include "local/aliases.hpp"
#include "local/recipient.hpp"
#include "local/tables.hpp"

namespace postern::local {

inline constexpr std::size_t MaxIncludeFileSize = 1u << 20;

class SystemResolver : public Resolver {
public:
    explicit SystemResolver(const config::Config& cfg);

    Result<std::optional<std::string>> alias(std::string_view key) override;
    Result<std::optional<privs::UserInfo>> user(std::string_view name) override;
    Result<std::optional<privs::UserInfo>> user_by_uid(uid_t uid) override;
    Result<privs::UserInfo> default_privs() override;
    Result<std::optional<FileText>> forward_file(const privs::UserInfo& u, std::string_view extension,
                                                std::string_view domain) override;
    Result<FileText> include_file(const std::string& path, const privs::UserInfo& reader) override;
    bool local_domain(std::string_view domain) override { return mydestination_.contains(domain); }
    bool allowed(Target::Kind kind, Source source) override;

private:
    const config::Config& cfg_;
    MapList aliases_;
    DomainList mydestination_;
    std::set<std::string> commands_, files_;  // sources allowed to name them
    std::chrono::seconds limit_;
};

}  // namespace postern::local
