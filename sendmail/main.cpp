// sendmail/main.cpp - sendmail(1), mailq(1), newaliases(1): the command-line entry point.
#include <signal.h>
#include <sysexits.h>
#include <unistd.h>

#include <cstdio>

#include "sendmail/options.hpp"
#include "sendmail/submit.hpp"

using namespace postern;

int main(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);  // a closed stdout (-bs) is an error to report, not a reason to die
    std::string_view prog = sendmail::program_name(argc > 0 ? argv[0] : "sendmail");
    std::vector<std::string_view> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    auto opts = sendmail::parse_options(args, prog);
    if (!opts) {
        std::fprintf(stderr, "sendmail: %s (usage: sendmail [-t] [-i] [-f sender] [-F name] [-C dir] recipient...)\n",
                     opts.error().text.c_str());
        return EX_USAGE;
    }
    auto ctx = sendmail::make_context(opts->config_dir);
    if (!ctx) {
        std::fprintf(stderr, "sendmail: %s\n", ctx.error().text.c_str());
        return ctx.error().kind == Error::Kind::Temp ? EX_TEMPFAIL : EX_CONFIG;
    }
    return sendmail::run(*opts, *ctx, STDIN_FILENO, STDOUT_FILENO);
}
