// postern: the control command. postern [-c DIR] start|stop|reload|status|check|queue ...|user ...; postern map build|query
#include <sysexits.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "log/log.hpp"
#include "maps/maps.hpp"
#include "postern/check.hpp"
#include "postern/control.hpp"
#include "postern/queue_cmd.hpp"
#include "postern/user_cmd.hpp"

#include <iostream>

using namespace postern;

namespace {
int usage() {
    std::fprintf(stderr,
                 "usage: postern [-c config_directory] start | stop | reload | status | check\n"
                 "       postern [-c config_directory] queue list [--json] | show QUEUE_ID | flush\n"
                 "       postern [-c config_directory] queue hold | release | delete | requeue QUEUE_ID... | ALL | -\n"
                 "       postern [-c config_directory] user add ADDRESS [--mailbox PATH] [--quota BYTES[k|M|G]]\n"
                 "       postern [-c config_directory] user passwd ADDRESS | del ADDRESS | list [--json]\n"
                 "                                        (passwords: from the terminal, or one line on stdin)\n"
                 "       postern map build [-a] FILE      (-a: aliases(5) format; writes FILE.db)\n"
                 "       postern map query TYPE:FILE KEY  (prints the value; exit 1 when not found)\n");
    return EX_USAGE;
}

// postern map query SPEC KEY: like postmap -q; exit 0 found, 1 not found.
int map_query(int argc, char** argv, int i) {
    if (i + 2 != argc) return usage();
    auto map = maps::open(argv[i]);
    if (!map) {
        std::fprintf(stderr, "postern: %s\n", map.error().text.c_str());
        return map.error().kind == Error::Kind::Config ? EX_CONFIG : EX_TEMPFAIL;
    }
    auto v = (*map)->lookup(argv[i + 1]);
    if (!v) {
        std::fprintf(stderr, "postern: %s\n", v.error().text.c_str());
        return EX_TEMPFAIL;
    }
    if (!*v) return 1;
    std::printf("%s\n", (*v)->c_str());
    return EX_OK;
}

int map_command(int argc, char** argv, int i) {
    if (i < argc && std::string(argv[i]) == "query") return map_query(argc, argv, i + 1);
    if (i >= argc || std::string(argv[i]) != "build") return usage();
    auto format = maps::Format::Postmap;
    if (++i < argc && std::string(argv[i]) == "-a") {
        format = maps::Format::Aliases;
        ++i;
    }
    if (i + 1 != argc) return usage();
    auto r = maps::build(argv[i], format);
    if (!r) {
        std::fprintf(stderr, "%s\n", r.error().text.c_str());
        return r.error().kind == Error::Kind::Config ? EX_DATAERR : EX_TEMPFAIL;
    }
    return EX_OK;
}
}  // namespace

int main(int argc, char** argv) {
    log::open({.tag = "postern/postern", .file = "-"});
    std::string dir = ::getenv("MAIL_CONFIG") ? ::getenv("MAIL_CONFIG") : "/etc/postern";
    int i = 1;
    if (i + 1 < argc && std::string(argv[i]) == "-c") {
        dir = argv[i + 1];
        i += 2;
    }
    if (i >= argc) return usage();
    std::string cmd = argv[i++];
    if (cmd == "map") return map_command(argc, argv, i);
    if (cmd == "user") {
        int code = user_cmd::run(dir, {argv + i, argv + argc}, std::cout);
        return code == EX_USAGE ? usage() : code;
    }
    if (cmd == "queue") {
        auto cfg = config::Config::load(dir);
        if (!cfg) {
            std::fprintf(stderr, "%s\n", cfg.error().text.c_str());
            return EX_CONFIG;
        }
        std::string sub = i < argc ? argv[i] : "";
        if (sub == "list" && (i + 1 == argc || (i + 2 == argc && std::string(argv[i + 1]) == "--json")))
            return queue_cmd::list(cfg->params(), i + 2 == argc, std::cout);
        if (sub == "show" && i + 2 == argc) return queue_cmd::show(cfg->params(), argv[i + 1], std::cout);
        if (sub == "flush" && i + 1 == argc) return queue_cmd::flush(cfg->params());
        const std::pair<const char*, queue_cmd::Verb> verbs[] = {{"hold", queue_cmd::Verb::Hold},
                                                                  {"release", queue_cmd::Verb::Release},
                                                                  {"delete", queue_cmd::Verb::Delete},
                                                                  {"requeue", queue_cmd::Verb::Requeue}};
        for (auto& [name, verb] : verbs)
            if (sub == name && i + 1 < argc)
                return queue_cmd::change(cfg->params(), verb, {argv + i + 1, argv + argc}, std::cin);
        return usage();
    }
    if (i != argc) return usage();
    if (cmd == "start") return control::start(dir);
    if (cmd == "stop") return control::stop(dir);
    if (cmd == "reload") return control::reload(dir);
    if (cmd == "status") return control::status(dir);
    if (cmd == "check") {
        auto report = check::run(dir);
        for (auto& w : report.warnings) std::fprintf(stderr, "postern: warning: %s\n", w.c_str());
        for (auto& e : report.errors) std::fprintf(stderr, "%s\n", e.c_str());
        return report.ok() ? EX_OK : EX_CONFIG;
    }
    std::fprintf(stderr, "postern: unknown command \"%s\"\n", cmd.c_str());
    return usage();
}
