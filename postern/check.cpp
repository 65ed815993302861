// postern/check.cpp - configuration, program, user and permission checks.
#include "postern/check.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "config/config.hpp"
#include "privs/privs.hpp"
#include "util/strings.hpp"

namespace postern::check {
namespace {

void split_into(const std::string& text, std::vector<std::string>& out) {
    std::size_t start = 0;
    while (start <= text.size()) {
        auto nl = text.find('\n', start);
        std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if (!line.empty()) out.push_back(line);
        if (nl == std::string::npos) break;
        start = nl + 1;
    }
}

char type_char(mode_t m) { return S_ISDIR(m) ? 'd' : S_ISREG(m) ? 'f' : '?'; }

// Owner and permission rules for one path.
void check_path(Report& r, const std::string& path, bool must_exist, uid_t want_uid, mode_t forbidden, const char* why) {
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) {
        if (must_exist || errno != ENOENT) r.errors.push_back(path + ": " + std::strerror(errno));
        return;
    }
    if (S_ISLNK(st.st_mode)) {
        r.errors.push_back(path + ": is a symbolic link; " + why);
        return;
    }
    if (want_uid != static_cast<uid_t>(-1) && st.st_uid != want_uid)
        r.errors.push_back(path + ": owned by uid " + std::to_string(st.st_uid) + ", want uid " + std::to_string(want_uid) +
                           "; " + why);
    if ((st.st_mode & forbidden) != 0) {
        char buf[160];
        std::snprintf(buf, sizeof buf, ": mode %04o %c has bits %04o that must be off; ", st.st_mode & 07777,
                      type_char(st.st_mode), st.st_mode & forbidden);
        r.errors.push_back(path + buf + why);
    }
}

}  // namespace

Report run(const std::string& dir) {
    Report r;
    auto cfg = config::Config::load(dir, {}, &r.warnings);
    if (!cfg) {
        split_into(cfg.error().text, r.errors);
        // master.cf is still worth checking on its own.
    }
    auto services = config::load_master_cf(dir);
    if (!services) split_into(services.error().text, r.errors);
    if (!cfg) return r;
    const auto& p = cfg->params();

    // Users and groups the daemons need.
    auto owner = privs::lookup_user(p.mail_owner);
    uid_t owner_uid = static_cast<uid_t>(-1);
    if (!owner || !*owner) {
        r.errors.push_back(cfg->main_cf_path() + ": mail_owner " + p.mail_owner + ": no such user (make install creates it)");
    } else {
        owner_uid = (*owner)->uid;
        if (owner_uid == 0) r.errors.push_back(cfg->main_cf_path() + ": mail_owner must not be root");
    }
    auto group = privs::lookup_group(p.setgid_group);
    if (!group || !*group)
        r.errors.push_back(cfg->main_cf_path() + ": setgid_group " + p.setgid_group + ": no such group (make install creates it)");
    auto nobody = privs::lookup_user(p.default_privs);
    if (!nobody || !*nobody) {
        r.errors.push_back(cfg->main_cf_path() + ": default_privs " + p.default_privs + ": no such user");
    } else if ((*nobody)->uid == 0) {
        r.errors.push_back(cfg->main_cf_path() + ": default_privs must not be root");
    }

    // Programs named in master.cf, and their -o overrides.
    if (services) {
        for (auto& s : *services) {
            if (!s.overrides.empty()) {
                auto with = config::Config::load(dir, s.overrides);
                if (!with) {
                    std::vector<std::string> errs;
                    split_into(with.error().text, errs);
                    for (auto& e : errs)
                        if (e.rfind("-o ", 0) == 0) r.errors.push_back(s.origin + ": " + e);
                }
            }
            std::string path = s.command.front() == '/' ? s.command : p.daemon_directory + "/" + s.command;
            if (::access(path.c_str(), X_OK) != 0)
                r.errors.push_back(s.origin + ": service " + s.name + ": " + path + ": " + std::strerror(errno));
        }
    }

    // Config directory and files: root's, not writable by anyone else.
    const char* cfg_why = "config files must be owned by root and writable only by root";
    check_path(r, dir, true, 0, S_IWGRP | S_IWOTH, cfg_why);
    check_path(r, dir + "/main.cf", false, 0, S_IWGRP | S_IWOTH, cfg_why);
    check_path(r, dir + "/master.cf", true, 0, S_IWGRP | S_IWOTH, cfg_why);

    // Queue: the mail owner's, closed to others (group posterndrop may pass
    // through to maildrop/). Missing is fine: master creates it.
    const char* q_why = "the queue must belong to mail_owner and be closed to other users";
    check_path(r, p.queue_directory, false, owner_uid, S_IRWXO | S_IWGRP | S_IRGRP, q_why);
    check_path(r, p.queue_directory + "/private", false, owner_uid, S_IRWXO | S_IRWXG, q_why);
    check_path(r, p.queue_directory + "/public", false, owner_uid, S_IRWXO | S_IWGRP | S_IRGRP, q_why);
    check_path(r, p.queue_directory + "/pid", false, 0, S_IWGRP | S_IWOTH, "pid/ must be root's");
    return r;
}

}  // namespace postern::check
