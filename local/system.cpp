// local/system.cpp - aliases, passwd, and .forward/:include: files read as their user.
#include "local/system.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "local/privsep.hpp"
#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::local {
namespace {

std::set<std::string> word_set(std::string_view list) {
    auto v = util::split_list(list);
    return {v.begin(), v.end()};
}

Result<std::string> read_bounded(int fd, std::size_t max, const std::string& path) {
    std::string text;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error("read", path, errno);
        if (n == 0) return text;
        if (text.size() + static_cast<std::size_t>(n) > max) return Error::perm(path + " is larger than " + std::to_string(max) + " bytes");
        text.append(buf, static_cast<std::size_t>(n));
    }
}

UniqueFd open_read(const std::string& path) {
    return UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
}

// In a child running as the user: the first usable file of paths, packed as
// {"found", path, text, warnings...} or {"none", warnings...}.
std::string first_forward(const std::vector<std::string>& paths, uid_t uid) {
    std::vector<std::string> warnings;
    for (auto& path : paths) {
        UniqueFd fd = open_read(path);
        if (!fd) {
            if (errno != ENOENT && errno != ENOTDIR) warnings.push_back("cannot read " + path + ": " + errno_text(errno));
            continue;
        }
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) {
            warnings.push_back("cannot stat " + path + ": " + errno_text(errno));
            continue;
        }
        if (auto why = unsafe_file(st, uid); !why.empty()) {
            warnings.push_back(path + " is ignored: " + why);
            continue;
        }
        auto text = read_bounded(fd.get(), MaxForwardFileSize, path);
        if (!text) {
            warnings.push_back(path + " is ignored: " + text.error().text);
            continue;
        }
        std::vector<std::string> out{"found", path, *text};
        out.insert(out.end(), warnings.begin(), warnings.end());
        return pack(out);
    }
    std::vector<std::string> out{"none"};
    out.insert(out.end(), warnings.begin(), warnings.end());
    return pack(out);
}

// In a child running as the reader: {"ok", text, owner uid} or {"error", why}.
std::string read_include(const std::string& path) {
    UniqueFd fd = open_read(path);
    if (!fd) return pack({"error", "cannot open: " + errno_text(errno)});
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return pack({"error", "cannot stat: " + errno_text(errno)});
    if (!S_ISREG(st.st_mode)) return pack({"error", "not a regular file"});
    if (st.st_mode & (S_IWGRP | S_IWOTH)) return pack({"error", "writable by group or others"});
    auto text = read_bounded(fd.get(), MaxIncludeFileSize, path);
    if (!text) return pack({"error", text.error().text});
    return pack({"ok", *text, std::to_string(st.st_uid)});
}

}  // namespace

SystemResolver::SystemResolver(const config::Config& cfg)
    : cfg_(cfg), aliases_(cfg.params().alias_maps, maps::Format::Aliases), mydestination_(cfg.params().mydestination),
      commands_(word_set(cfg.params().allow_mail_to_commands)), files_(word_set(cfg.params().allow_mail_to_files)),
      limit_(cfg.params().command_time_limit) {}

Result<std::optional<std::string>> SystemResolver::alias(std::string_view key) { return aliases_.lookup(key); }

Result<std::optional<privs::UserInfo>> SystemResolver::user(std::string_view name) { return privs::lookup_user(name); }

Result<std::optional<privs::UserInfo>> SystemResolver::user_by_uid(uid_t uid) { return privs::lookup_uid(uid); }

Result<privs::UserInfo> SystemResolver::default_privs() {
    const std::string& name = cfg_.params().default_privs;
    auto u = privs::lookup_user(name);
    if (!u) return u.error();
    if (!*u) return Error::temp("default_privs: no such user: " + name);
    if ((*u)->uid == 0) return Error::temp("default_privs must not be a user with uid 0: " + name);
    return **u;
}

Result<std::optional<FileText>> SystemResolver::forward_file(const privs::UserInfo& u, std::string_view extension,
                                                             std::string_view domain) {
    ForwardVars v;
    v.home = u.home;
    v.user = u.name;
    v.extension = std::string(extension);
    // Note: with several delimiter characters configured, $recipient_delimiter is the first.
    v.recipient_delimiter = extension.empty() ? "" : cfg_.params().recipient_delimiter.substr(0, 1);
    v.local = u.name + v.recipient_delimiter + v.extension;
    v.domain = std::string(domain);
    v.recipient = v.local + (domain.empty() ? "" : "@" + v.domain);
    auto paths = forward_paths(cfg_, v);
    if (paths.empty()) return std::optional<FileText>();
    // Most users have no .forward. Whether the names exist is checked here
    // (lstat only: nothing of the user's is opened or read as root, and the
    // answer only decides whether a child is needed); anything but "not
    // there" (found, or cannot tell) goes to the child, which reads as the user.
    bool maybe = false;
    for (auto& path : paths) {
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) maybe = true;
    }
    if (!maybe) return std::optional<FileText>();
    auto r = run_as(u.uid, u.gid, limit_, {}, [&] { return first_forward(paths, u.uid); });
    if (!r) return Error::temp("reading .forward of " + u.name + ": " + r.error().text);
    auto f = unpack(*r);
    if (!f || f->empty()) return Error::temp("reading .forward of " + u.name + ": malformed answer");
    const bool found = (*f)[0] == "found" && f->size() >= 3;
    for (std::size_t i = found ? 3 : 1; i < f->size(); ++i) log::warn("%s", util::printable((*f)[i], 500).c_str());
    if (!found) return std::optional<FileText>();
    return std::optional<FileText>(FileText{(*f)[1], (*f)[2], u.uid});
}

Result<FileText> SystemResolver::include_file(const std::string& path, const privs::UserInfo& reader) {
    auto r = run_as(reader.uid, reader.gid, limit_, {}, [&] { return read_include(path); });
    if (!r) return r.error();
    auto f = unpack(*r);
    if (!f || f->size() < 2) return Error::temp("malformed answer");
    if ((*f)[0] != "ok" || f->size() != 3) return Error::temp((*f)[1]);
    auto owner = util::parse_long((*f)[2]);
    if (!owner || *owner < 0) return Error::temp("malformed answer");
    return FileText{path, (*f)[1], static_cast<uid_t>(*owner)};
}

bool SystemResolver::allowed(Target::Kind kind, Source source) {
    const auto& set = kind == Target::Kind::Command ? commands_ : files_;
    return set.count(std::string(source_name(source))) > 0;
}

}  // namespace postern::local
