// sendmail/context.cpp - who is sending, when, and with which configuration.
#include <pwd.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

#include "sendmail/submit.hpp"

namespace postern::sendmail {

Result<Context> make_context(const std::string& config_dir_option) {
    Context ctx;
    ctx.config_dir = config_dir_option;
    if (ctx.config_dir.empty()) {
        const char* env = std::getenv("MAIL_CONFIG");
        ctx.config_dir = env && *env ? env : "/etc/postern";
    }
    auto cfg = config::Config::load(ctx.config_dir);
    if (!cfg) return cfg.error();
    ctx.params = cfg->params();

    ctx.uid = ::getuid();
    passwd pw{};
    passwd* found = nullptr;
    std::string buf(16384, '\0');
    if (::getpwuid_r(ctx.uid, &pw, buf.data(), buf.size(), &found) == 0 && found) {
        ctx.login = pw.pw_name;
        ctx.full_name = gecos_name(pw.pw_gecos ? pw.pw_gecos : "", ctx.login);
    } else {
        // No passwd entry (a container's numeric uid): still identifiable.
        ctx.login = "uid" + std::to_string(ctx.uid);
    }

    timeval tv{};
    ::gettimeofday(&tv, nullptr);
    ctx.now_us = static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
    std::tm tm{};
    time_t secs = tv.tv_sec;
    ::localtime_r(&secs, &tm);
    ctx.date = format_date(tm, tm.tm_gmtoff);
    return ctx;
}

}  // namespace postern::sendmail
