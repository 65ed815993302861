// postern/user_cmd.cpp - `postern user ...`: arguments, password entry, and the calls into auth/users.
#include "postern/user_cmd.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <charconv>
#include <cstdio>
#include <functional>
#include <iterator>
#include <limits>
#include <map>

#include "auth/users.hpp"
#include "config/config.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace postern::user_cmd {
namespace {

// ---- passwords --------------------------------------------------------------

// A password in memory: its buffer is reserved once (so appending never leaves
// a copy behind in a freed block) and wiped when it goes away.
class Secret {
public:
    Secret() { s_.reserve(MaxPasswordLength + 2); }
    ~Secret() {
        s_.resize(s_.capacity());
        ::explicit_bzero(s_.data(), s_.size());
    }
    Secret(const Secret&) = delete;
    Secret& operator=(const Secret&) = delete;

    std::string& text() { return s_; }
    const std::string& text() const { return s_; }

private:
    std::string s_;
};

// One line from fd into line_out, without its "\n" or "\r\n". Byte by byte:
// nothing after the line is taken from the descriptor and nothing is left in
// a stdio buffer. Stops reading once the line is too long to be a password.
// false: end of input before any byte.
Result<bool> read_line(int fd, const char* what, std::string& line_out) {
    line_out.clear();
    bool any = false;
    for (;;) {
        char c;
        ssize_t n = ::read(fd, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error("read", what, errno);
        if (n == 0) break;
        any = true;
        if (c == '\n') break;
        // Room for the password and the '\r' of a CRLF; beyond it no need to look further.
        if (line_out.size() == MaxPasswordLength + 1)
            return Error::perm("the password is longer than " + std::to_string(MaxPasswordLength) + " bytes");
        line_out.push_back(c);
    }
    if (!line_out.empty() && line_out.back() == '\r') line_out.pop_back();
    return any;
}

Result<void> check_password(const std::string& pw) {
    if (pw.empty()) return Error::perm("empty password refused");
    if (pw.size() > MaxPasswordLength)
        return Error::perm("the password is longer than " + std::to_string(MaxPasswordLength) + " bytes");
    if (pw.find('\0') != std::string::npos) return Error::perm("the password contains a NUL byte");
#ifdef CRYPT_MAX_PASSPHRASE_SIZE
    if (pw.size() >= CRYPT_MAX_PASSPHRASE_SIZE)
        return Error::perm("the password is longer than " + std::to_string(CRYPT_MAX_PASSPHRASE_SIZE - 1) +
                           " bytes, the most crypt(3) can hash here");
#endif
    return {};
}

// The terminal whose echo is off, for the signal handler. Set only while an
// EchoOff exists, before its handlers are installed.
int g_tty = -1;
termios g_saved{};
termios g_quiet{};
const char* g_prompt = "";
constexpr int kTtySignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};

extern "C" void on_tty_signal(int sig) {
    const int saved_errno = errno;
    ::tcsetattr(g_tty, TCSANOW, &g_saved);
    if (sig == SIGTSTP) {
        // Suspend with the terminal as the shell expects it; after fg, echo
        // off again and show the prompt again (the read goes on: SA_RESTART).
        ::kill(::getpid(), SIGSTOP);
        ::tcsetattr(g_tty, TCSANOW, &g_quiet);
        (void)!::write(g_tty, "\n", 1);
        (void)!::write(g_tty, g_prompt, ::strlen(g_prompt));
        errno = saved_errno;
        return;
    }
    (void)!::write(g_tty, "\n", 1);
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    ::sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    // Blocked while this handler runs: delivered, and fatal, when it returns.
    ::raise(sig);
    errno = saved_errno;
}

// Echo off on a terminal for its lifetime; restored on every way out,
// including the signals above.
class EchoOff {
public:
    explicit EchoOff(int fd) {
        termios t{};
        if (::tcgetattr(fd, &t) != 0) {
            error_ = errno;
            return;
        }
        g_saved = t;
        t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK | ECHONL);
        g_quiet = t;
        g_tty = fd;
        struct sigaction sa{};
        sa.sa_handler = on_tty_signal;
        ::sigemptyset(&sa.sa_mask);
        for (int s : kTtySignals) ::sigaddset(&sa.sa_mask, s);
        sa.sa_flags = SA_RESTART;
        for (std::size_t i = 0; i < std::size(kTtySignals); ++i) ::sigaction(kTtySignals[i], &sa, &old_[i]);
        // TCSAFLUSH: what was typed before the prompt is not taken as the password.
        if (::tcsetattr(fd, TCSAFLUSH, &g_quiet) != 0) error_ = errno;
    }
    ~EchoOff() {
        if (g_tty < 0) return;
        ::tcsetattr(g_tty, TCSAFLUSH, &g_saved);
        for (std::size_t i = 0; i < std::size(kTtySignals); ++i) ::sigaction(kTtySignals[i], &old_[i], nullptr);
        g_tty = -1;
        g_prompt = "";
    }
    EchoOff(const EchoOff&) = delete;
    EchoOff& operator=(const EchoOff&) = delete;

    int error() const { return error_; }

private:
    int error_ = 0;
    struct sigaction old_[std::size(kTtySignals)]{};
};

Result<void> prompt_and_read(int tty, const char* prompt, std::string& line_out) {
    g_prompt = prompt;
    if (::write(tty, prompt, ::strlen(prompt)) < 0) return sys_error("write", "/dev/tty", errno);
    auto r = read_line(tty, "/dev/tty", line_out);
    (void)!::write(tty, "\n", 1);  // the user's Enter was not echoed
    if (!r) {
        if (r.error().kind == Error::Kind::Perm) ::tcflush(tty, TCIFLUSH);  // the rest of an overlong line
        return r.error();
    }
    if (!*r) return Error::perm("no password given");
    return {};
}

// The password to set: twice from the terminal when standard input is one,
// else one line from standard input. Error::perm: a password we refuse (or
// none); Error::temp: the terminal or input could not be read.
Result<void> read_new_password(Secret& pw_out) {
    if (!::isatty(STDIN_FILENO)) {
        auto r = read_line(STDIN_FILENO, "standard input", pw_out.text());
        if (!r) return r.error();
        if (!*r) return Error::perm("no password on standard input (one line is read)");
        return check_password(pw_out.text());
    }
    UniqueFd tty(::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!tty) return sys_error("open", "/dev/tty", errno);
    Secret again;
    EchoOff quiet(tty.get());
    if (quiet.error()) return Error::temp("cannot turn off echo on /dev/tty: " + errno_text(quiet.error()));
    if (auto r = prompt_and_read(tty.get(), "Password: ", pw_out.text()); !r) return r;
    if (auto r = check_password(pw_out.text()); !r) return r;
    if (auto r = prompt_and_read(tty.get(), "Retype password: ", again.text()); !r) return r;
    if (pw_out.text() != again.text()) return Error::perm("the passwords do not match; nothing changed");
    return {};
}

// ---- reporting ----------------------------------------------------------------

[[gnu::format(printf, 2, 3)]] int fail(int code, const char* fmt, ...) {
    std::fputs("postern: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
    return code;
}

// A table error as an exit code: a spec or table content that is wrong stays
// wrong (EX_CONFIG); anything else may work on another try.
int code_for(const Error& e) { return e.kind == Error::Kind::Config ? EX_CONFIG : EX_TEMPFAIL; }

std::string with_item(const std::string& list, const std::string& item) {
    return util::trim(list).empty() ? item : std::string(util::trim(list)) + ", " + item;
}

bool listed(const std::string& list, const std::string& item, bool fold) {
    for (auto& x : util::split_list(list))
        if (fold ? util::iequals(x, item) : x == item) return true;
    return false;
}

// Warnings for a configuration that would not deliver to a new user at
// address: each names the main.cf line that fixes it.
void warn_routing(const config::Params& p, const std::string& address) {
    auto warn = [](const std::string& text) { std::fprintf(stderr, "postern: warning: %s\n", text.c_str()); };
    const std::string domain = address.substr(address.rfind('@') + 1);
    if (!listed(p.virtual_mailbox_domains, domain, true))
        warn(domain + " is not in virtual_mailbox_domains, so " + address +
             " receives no mail here; in main.cf: virtual_mailbox_domains = " +
             with_item(p.virtual_mailbox_domains, domain));
    if (util::trim(p.virtual_user_mailbox_map).empty())
        warn("virtual_user_mailbox_map is empty, so no table tells smtpd and local where " + address +
             "'s mailbox is; in main.cf: virtual_user_mailbox_map = hash:$config_directory/user_mailboxes, "
             "and list it in virtual_mailbox_maps");
    else if (!listed(p.virtual_mailbox_maps, p.virtual_user_mailbox_map, false))
        warn("virtual_mailbox_maps does not list " + p.virtual_user_mailbox_map +
             " (virtual_user_mailbox_map), so mail to " + address +
             " is refused; in main.cf: virtual_mailbox_maps = " +
             with_item(p.virtual_mailbox_maps, "$virtual_user_mailbox_map"));
    if (util::trim(p.virtual_mailbox_base).empty())
        warn("virtual_mailbox_base is not set, so mail to " + address +
             " stays in the queue; in main.cf: virtual_mailbox_base = /var/mail/vhosts "
             "(a directory owned by the user of virtual_uid_maps)");
    if (util::trim(p.virtual_uid_maps).empty() || util::trim(p.virtual_gid_maps).empty())
        warn("virtual_uid_maps or virtual_gid_maps is not set, so mail to " + address +
             " stays in the queue; in main.cf: virtual_uid_maps = static:5000 and virtual_gid_maps = static:5000 "
             "(the ids of a user for the mail, such as one made with useradd -r -u 5000 vmail; never 0)");
}

std::string quota_text(std::uint64_t q) { return q == 0 ? "no quota" : "quota " + std::to_string(q) + " bytes"; }

// ---- the subcommands ---------------------------------------------------------

struct Args {
    std::string sub;
    std::string address;
    std::optional<std::string> mailbox;
    std::optional<std::string> quota;
    bool json = false;
};

// The argument shape of each subcommand; false (reason printed) on a usage error.
bool parse_args(const std::vector<std::string>& args, Args& a_out) {
    if (args.empty()) {
        std::fprintf(stderr, "postern: user: add, passwd, del or list?\n");
        return false;
    }
    a_out.sub = args[0];
    const std::string& sub = a_out.sub;
    if (sub != "add" && sub != "passwd" && sub != "del" && sub != "list") {
        std::fprintf(stderr, "postern: user: unknown subcommand \"%s\"\n", util::printable(sub, 40).c_str());
        return false;
    }
    std::vector<std::string> positional;
    for (std::size_t i = 1; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg.size() < 2 || arg[0] != '-') {
            positional.push_back(arg);
            continue;
        }
        const auto eq = arg.find('=');
        const std::string name = arg.substr(0, eq);
        if (sub == "list" && name == "--json") {
            if (a_out.json || eq != std::string::npos) {
                std::fprintf(stderr, "postern: user list: --json takes no value and is given once\n");
                return false;
            }
            a_out.json = true;
            continue;
        }
        std::optional<std::string>* slot = sub == "add" && name == "--mailbox" ? &a_out.mailbox
                                           : sub == "add" && name == "--quota" ? &a_out.quota
                                                                               : nullptr;
        if (!slot) {
            std::fprintf(stderr, "postern: user %s: unknown option \"%s\"\n", sub.c_str(),
                         util::printable(name, 40).c_str());
            return false;
        }
        if (*slot) {
            std::fprintf(stderr, "postern: user %s: %s given twice\n", sub.c_str(), name.c_str());
            return false;
        }
        if (eq != std::string::npos) {
            *slot = arg.substr(eq + 1);
        } else if (i + 1 < args.size()) {
            *slot = args[++i];
        } else {
            std::fprintf(stderr, "postern: user %s: %s needs a value\n", sub.c_str(), name.c_str());
            return false;
        }
    }
    const std::size_t want = sub == "list" ? 0 : 1;
    if (positional.size() < want) {
        std::fprintf(stderr, "postern: user %s: which address?\n", sub.c_str());
        return false;
    }
    if (positional.size() > want) {
        // Note: the extra words are not echoed: one of them may be a password.
        if (sub == "add" || sub == "passwd")
            std::fprintf(stderr,
                         "postern: user %s: too many arguments (a password is never given on the command line: "
                         "it is read from the terminal, or as one line from standard input)\n",
                         sub.c_str());
        else
            std::fprintf(stderr, "postern: user %s: too many arguments\n", sub.c_str());
        return false;
    }
    if (want) a_out.address = positional[0];
    return true;
}

int list(const config::Params& p, bool json, std::ostream& out) {
    auto users = auth::list_users(p.virtual_user_database);
    if (!users)
        return fail(code_for(users.error()), "user list: %s", users.error().text.c_str());
    for (auto& u : *users) {
        if (json)
            out << "{\"address\":" << util::json_string(u.address) << ",\"mailbox\":" << util::json_string(u.mailbox)
                << ",\"quota\":" << u.quota << "}\n";
        else
            out << u.address << ' ' << u.mailbox << ' ' << u.quota << '\n';
    }
    out.flush();
    return out ? EX_OK : fail(EX_IOERR, "user list: cannot write the listing");
}

// Is address in the table? An error code (message printed) when it cannot tell.
Result<bool> exists(const config::Params& p, const char* sub, const std::string& address, int* code_out) {
    auto table = auth::UserTable::open(p.virtual_user_database);
    if (!table) {
        *code_out = fail(code_for(table.error()), "user %s: %s", sub, table.error().text.c_str());
        return table.error();
    }
    auto u = (*table)->find(address);
    if (!u) {
        *code_out = fail(code_for(u.error()), "user %s: %s", sub, u.error().text.c_str());
        return u.error();
    }
    return u->has_value();
}

// The password hash to store, from the terminal or standard input.
Result<std::string> new_hash(const char* sub, int* code_out) {
    Secret pw;
    if (auto r = read_new_password(pw); !r) {
        *code_out = fail(r.error().kind == Error::Kind::Perm ? EX_DATAERR : EX_IOERR, "user %s: %s", sub,
                         r.error().text.c_str());
        return r.error();
    }
    auto hash = auth::hash_password(pw.text());
    if (!hash) *code_out = fail(EX_TEMPFAIL, "user %s: %s", sub, hash.error().text.c_str());
    return hash;
}

// Runs update_users; not_found/found tell the caller why mutate refused.
int update(const config::Params& p, const char* sub,
           const std::function<Result<void>(std::map<std::string, auth::VirtualUser>&)>& mutate) {
    auto r = auth::update_users(p.virtual_user_database, p.virtual_user_mailbox_map, mutate);
    if (!r) return fail(code_for(r.error()), "user %s: %s; nothing changed", sub, r.error().text.c_str());
    return EX_OK;
}

int add(const config::Params& p, const std::string& address, const Args& a) {
    const std::string mailbox = a.mailbox ? *a.mailbox : auth::default_mailbox(address);
    if (!auth::valid_mailbox_path(mailbox))
        return fail(EX_DATAERR,
                    "user add: bad mailbox path \"%s\": it must be relative to virtual_mailbox_base, without \"..\" "
                    "(a Maildir ends with '/')",
                    util::printable(mailbox, 100).c_str());
    std::uint64_t quota = 0;
    if (a.quota) {
        auto q = parse_quota(*a.quota);
        if (!q)
            return fail(EX_DATAERR, "user add: bad quota \"%s\": bytes, or a number with k, M or G",
                        util::printable(*a.quota, 40).c_str());
        quota = *q;
    }
    int code = EX_OK;
    auto found = exists(p, "add", address, &code);
    if (!found) return code;
    if (*found) return fail(EX_CANTCREAT, "user add: %s exists already (postern user passwd changes the password)",
                            address.c_str());
    warn_routing(p, address);
    auto hash = new_hash("add", &code);
    if (!hash) return code;
    bool clash = false;  // added by someone else meanwhile
    code = update(p, "add", [&](std::map<std::string, auth::VirtualUser>& all) -> Result<void> {
        if (all.count(address)) {
            clash = true;
            return Error::perm(address + " exists already");
        }
        all[address] = auth::VirtualUser{address, *hash, mailbox, quota};
        return {};
    });
    if (clash) return EX_CANTCREAT;
    if (code != EX_OK) return code;
    std::fprintf(stderr, "postern: added %s: mailbox %s, %s\n", address.c_str(), mailbox.c_str(),
                 quota_text(quota).c_str());
    return EX_OK;
}

int passwd(const config::Params& p, const std::string& address) {
    int code = EX_OK;
    auto found = exists(p, "passwd", address, &code);
    if (!found) return code;
    if (!*found) return fail(EX_NOUSER, "user passwd: no virtual user %s", address.c_str());
    auto hash = new_hash("passwd", &code);
    if (!hash) return code;
    bool gone = false;  // deleted by someone else meanwhile
    code = update(p, "passwd", [&](std::map<std::string, auth::VirtualUser>& all) -> Result<void> {
        auto it = all.find(address);
        if (it == all.end()) {
            gone = true;
            return Error::perm("no virtual user " + address);
        }
        it->second.hash = *hash;
        return {};
    });
    if (gone) return EX_NOUSER;
    if (code != EX_OK) return code;
    std::fprintf(stderr, "postern: changed the password of %s\n", address.c_str());
    return EX_OK;
}

int del(const config::Params& p, const std::string& address) {
    bool gone = false;
    std::string mailbox;
    int code = update(p, "del", [&](std::map<std::string, auth::VirtualUser>& all) -> Result<void> {
        auto it = all.find(address);
        if (it == all.end()) {
            gone = true;
            return Error::perm("no virtual user " + address);
        }
        mailbox = it->second.mailbox;
        all.erase(it);
        return {};
    });
    if (gone) return EX_NOUSER;
    if (code != EX_OK) return code;
    std::fprintf(stderr, "postern: removed %s; its mailbox %s under virtual_mailbox_base is left as it is\n",
                 address.c_str(), mailbox.c_str());
    return EX_OK;
}

}  // namespace

std::optional<std::uint64_t> parse_quota(std::string_view text) {
    std::uint64_t unit = 1;
    if (!text.empty()) {
        switch (text.back()) {
        case 'k': case 'K': unit = 1ULL << 10; break;
        case 'm': case 'M': unit = 1ULL << 20; break;
        case 'g': case 'G': unit = 1ULL << 30; break;
        default: break;
        }
    }
    if (unit != 1) text.remove_suffix(1);
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    // Readers may hold the quota in a signed 64-bit number.
    constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (n > max / unit) return std::nullopt;
    return n * unit;
}

int run(const std::string& config_dir, const std::vector<std::string>& args, std::ostream& out) {
    Args a;
    if (!parse_args(args, a)) return EX_USAGE;
    if (::geteuid() != 0)
        return fail(EX_NOPERM, "user %s: only root may %s", a.sub.c_str(),
                    a.sub == "list" ? "read the virtual user table (it holds password hashes)"
                                    : "change the virtual user table");
    auto cfg = config::Config::load(config_dir);
    if (!cfg) {
        std::fprintf(stderr, "%s\n", cfg.error().text.c_str());
        return EX_CONFIG;
    }
    const auto& p = cfg->params();
    if (util::trim(p.virtual_user_database).empty())
        return fail(EX_CONFIG, "user %s: virtual_user_database is empty", a.sub.c_str());
    if (a.sub == "list") return list(p, a.json, out);
    auto address = auth::normalize_address(a.address);
    if (!address) return fail(EX_DATAERR, "user %s: %s", a.sub.c_str(), address.error().text.c_str());
    if (a.sub == "add") return add(p, *address, a);
    if (a.sub == "passwd") return passwd(p, *address);
    return del(p, *address);
}

}  // namespace postern::user_cmd
