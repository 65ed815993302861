// NAME
//   sendmail/options.hpp - the sendmail(1) command line
// PURPOSE
//   Parses what cron, PHP's mail(), git send-email, mutt and friends pass to
//   /usr/sbin/sendmail, getopt-style ("-ti", "-fuser", "-f user", "-oi",
//   "--"), including the modes chosen by the program name (mailq,
//   newaliases). Options sendmail accepts but Postern has no use for (-O, -o*,
//   -L, -U, -v, -h, -e, -m, -n, -x, -G ...) are accepted and ignored. It only
//   parses: values are checked for shape here, addresses later.
// SYNOPSIS
//   auto o = sendmail::parse_options(args, "sendmail");
//   if (!o) { fprintf(stderr, "sendmail: %s\n", o.error().text.c_str()); return EX_USAGE; }
// ERRORS
//   Error::config("<one line>") for an unknown option, a missing argument or a
//   bad -N/-R/-B/-V/-b value: the caller prints it and exits EX_USAGE (64).
// SECURITY
//   Arguments come from any local user; only shape checks, no limits needed
//   beyond what the kernel allows for argv.
// SEE ALSO
//   sendmail/submit.hpp, doc/sendmail.1, Postfix sendmail(1)
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace postern::sendmail {

enum class Mode { Deliver, Smtp, ListQueue, NewAliases, Verify, Flush };

struct Options {
    Mode mode = Mode::Deliver;
    bool extract = false;        // -t
    bool ignore_dots = false;    // -i, -oi
    bool sender_given = false;   // -f or -r
    std::string sender;          // as given (may be "" or "<>": null sender)
    std::string full_name;       // -F
    bool full_name_given = false;
    unsigned notify = 0;         // -N, queue::Notify* bits; 0 = not given
    std::string ret;             // -R: "FULL" or "HDRS"
    std::string envid;           // -V
    std::string body;            // -B: "7BIT" or "8BITMIME"
    std::string config_dir;      // -C; empty = MAIL_CONFIG or the default
    int verbose = 0;             // -v (counted)
    std::vector<std::string> recipients;
};

// args excludes argv[0]; program is the basename of argv[0].
Result<Options> parse_options(const std::vector<std::string_view>& args, std::string_view program);

// "sendmail" for "/usr/sbin/sendmail", "mailq" for "mailq".
std::string_view program_name(std::string_view argv0) noexcept;

}  // namespace postern::sendmail
