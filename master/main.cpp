// master: the Postern supervisor. Usage: master [-f] [-c DIR]
#include <fcntl.h>
#include <sysexits.h>
#include <unistd.h>

#include <cstring>

#include "log/log.hpp"
#include "master/master.hpp"
#include "service/instance.hpp"

using namespace postern;

int main(int argc, char** argv) {
    log::open({.tag = "postern/master", .file = "-"});
    bool foreground = false;
    std::string dir = ::getenv("MAIL_CONFIG") ? ::getenv("MAIL_CONFIG") : "/etc/postern";
    for (int c; (c = ::getopt(argc, argv, "fc:")) != -1;) {
        if (c == 'f') foreground = true;
        else if (c == 'c') dir = optarg;
        else log::fatal(EX_USAGE, "usage: master [-f] [-c config_directory]");
    }
    if (::geteuid() != 0) log::fatal(EX_NOPERM, "master must be started as root");
    std::vector<std::string> warnings;
    auto cfg = config::Config::load(dir, {}, &warnings);
    if (!cfg) log::fatal(EX_CONFIG, "%s", cfg.error().text.c_str());
    auto services = config::load_master_cf(dir);
    if (!services) log::fatal(EX_CONFIG, "%s", services.error().text.c_str());
    const auto& p = cfg->params();
    log::open({.tag = p.syslog_name + "/master", .file = p.maillog_file, .also_stderr = true});
    for (auto& w : warnings) log::warn("%s", w.c_str());
    if (auto r = service::prepare_queue_dirs(p); !r) log::fatal(EX_CONFIG, "%s", r.error().text.c_str());
    auto lock = service::lock_pid_file(p);
    if (!lock) log::fatal(EX_TEMPFAIL, "%s", lock.error().text.c_str());

    master::Master m(dir, std::move(*cfg), std::move(*services));
    m.start();  // binds every listener: failures show before we detach
    if (!foreground) {
        pid_t pid = ::fork();
        if (pid < 0) log::fatal(EX_OSERR, "fork: %s", std::strerror(errno));
        if (pid > 0) {
            // The parent records the daemon's pid before it exits, so whoever
            // started us finds the right pid as soon as we return.
            if (auto r = service::write_pid(*lock, pid); !r) log::fatal(EX_OSERR, "%s", r.error().text.c_str());
            _exit(0);
        }
        ::setsid();
        int null = ::open("/dev/null", O_RDWR);
        for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
        if (null > 2) ::close(null);
        m.after_fork();
    }
    if (foreground) {
        if (auto r = service::write_pid(*lock, ::getpid()); !r) log::fatal(EX_OSERR, "%s", r.error().text.c_str());
    }
    return m.run();
}
