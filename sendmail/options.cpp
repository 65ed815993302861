// sendmail/options.cpp - getopt-style parsing of the sendmail(1) command line.
#include "sendmail/options.hpp"

#include <cctype>

#include "queue/queue.hpp"

#include "util/strings.hpp"

namespace postern::sendmail {

namespace {

Result<unsigned> parse_notify(std::string_view v) {
    std::string s = util::to_lower(v);
    if (s == "never") return queue::NotifyNever;
    unsigned bits = 0;
    std::size_t pos = 0;
    while (pos <= s.size()) {
        std::size_t end = s.find(',', pos);
        if (end == std::string::npos) end = s.size();
        std::string_view word = std::string_view(s).substr(pos, end - pos);
        if (word == "success") bits |= queue::NotifySuccess;
        else if (word == "failure") bits |= queue::NotifyFailure;
        else if (word == "delay") bits |= queue::NotifyDelay;
        else return Error::config("-N: bad DSN notification \"" + std::string(v) +
                                  "\" (never, or a list of success,failure,delay)");
        pos = end + 1;
    }
    return bits;
}

Result<void> apply(Options& o, char opt, std::string_view arg) {
    switch (opt) {
    case 'f':
    case 'r':
        o.sender_given = true;
        o.sender = std::string(arg);
        return {};
    case 'F':
        o.full_name_given = true;
        o.full_name = std::string(arg);
        return {};
    case 'C':
        if (arg.empty()) return Error::config("-C: empty config directory");
        o.config_dir = std::string(arg);
        return {};
    case 'N': {
        auto n = parse_notify(arg);
        if (!n) return n.error();
        o.notify = *n;
        return {};
    }
    case 'R': {
        std::string s = util::to_lower(arg);
        if (s != "full" && s != "hdrs") return Error::config("-R: bad DSN return \"" + std::string(arg) + "\" (full or hdrs)");
        o.ret = s == "full" ? "FULL" : "HDRS";
        return {};
    }
    case 'V':
        if (arg.empty() || arg.size() > 100) return Error::config("-V: envelope ID must have 1 to 100 characters");
        for (unsigned char c : arg)
            if (c < 0x21 || c > 0x7e) return Error::config("-V: envelope ID must be printable ASCII");
        o.envid = std::string(arg);
        return {};
    case 'B': {
        std::string s = util::to_lower(arg);
        if (s != "7bit" && s != "8bitmime") return Error::config("-B: bad body type \"" + std::string(arg) + "\" (7BIT or 8BITMIME)");
        o.body = s == "7bit" ? "7BIT" : "8BITMIME";
        return {};
    }
    case 'b':
        if (arg == "m") o.mode = Mode::Deliver;
        else if (arg == "s") o.mode = Mode::Smtp;
        else if (arg == "p") o.mode = Mode::ListQueue;
        else if (arg == "i") o.mode = Mode::NewAliases;
        else if (arg == "v") o.mode = Mode::Verify;
        else return Error::config("-b" + std::string(arg) + ": unsupported mode (supported: -bm -bs -bp -bi -bv)");
        return {};
    case 'o':
        if (arg == "i") o.ignore_dots = true;  // other sendmail.cf options: ignored, as Postfix does
        return {};
    default:  // A L O X h e p: accepted and ignored
        return {};
    }
}

bool takes_argument(char c) {
    switch (c) {
    case 'A': case 'B': case 'C': case 'F': case 'L': case 'N': case 'O': case 'R': case 'V': case 'X':
    case 'b': case 'e': case 'f': case 'h': case 'o': case 'p': case 'r':
        return true;
    default:
        return false;
    }
}

}  // namespace

std::string_view program_name(std::string_view argv0) noexcept {
    auto slash = argv0.rfind('/');
    return slash == std::string_view::npos ? argv0 : argv0.substr(slash + 1);
}

Result<Options> parse_options(const std::vector<std::string_view>& args, std::string_view program) {
    Options o;
    if (program == "mailq") o.mode = Mode::ListQueue;
    if (program == "newaliases") o.mode = Mode::NewAliases;
    std::size_t i = 0;
    for (; i < args.size(); ++i) {
        std::string_view a = args[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (a.size() < 2 || a[0] != '-') break;
        for (std::size_t k = 1; k < a.size(); ++k) {
            char c = a[k];
            if (takes_argument(c)) {
                std::string_view value;
                if (k + 1 < a.size()) {
                    value = a.substr(k + 1);
                } else if (i + 1 < args.size()) {
                    value = args[++i];
                } else {
                    return Error::config(std::string("option requires an argument -- '") + c + "'");
                }
                if (auto r = apply(o, c, value); !r) return r.error();
                break;
            }
            switch (c) {
            case 't': o.extract = true; break;
            case 'i': o.ignore_dots = true; break;
            case 'v': ++o.verbose; break;
            case 'I': o.mode = Mode::NewAliases; break;
            case 'q':  // -q, -q30m, -qRsite, -qIid ...: all mean "flush the queue now"
                o.mode = Mode::Flush;
                k = a.size();
                break;
            case 'm': case 'n': case 'c': case 'G': case 'U': case 'x':
                break;  // accepted and ignored, as Postfix does
            default: {
                std::string shown = std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "?";
                return Error::config("invalid option -- '" + shown + "'");
            }
            }
        }
    }
    for (; i < args.size(); ++i) o.recipients.emplace_back(args[i]);
    return o;
}

}  // namespace postern::sendmail
