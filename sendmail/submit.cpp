// sendmail/submit.cpp - sendmail modes: queue a message into maildrop/, verify, run postern as root.
#include "sendmail/submit.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "address/address.hpp"
#include "sendmail/smtp.hpp"
#include "sendmail/verify.hpp"
#include "util/unique_fd.hpp"

namespace postern::sendmail {

namespace {

constexpr std::size_t ReadChunk = 64 * 1024;
constexpr time_t ShowqTimeout = 60;  // seconds without a byte from showq

Failure temp(const Error& e) { return {EX_TEMPFAIL, e.text}; }

std::string qualify(const address::Address& a, const Context& ctx) {
    if (!a.domain.empty()) return a.spec();
    address::Address q = a;
    q.domain = ctx.params.myorigin.empty() ? ctx.params.myhostname : ctx.params.myorigin;
    return q.domain.empty() ? a.spec() : q.spec();
}

bool in_list(std::string_view list, std::string_view name) {
    std::size_t pos = 0;
    while (pos < list.size()) {
        std::size_t end = list.find_first_of(", \t", pos);
        if (end == std::string_view::npos) end = list.size();
        if (list.substr(pos, end - pos) == name) return true;
        pos = end + 1;
    }
    return false;
}

// Runs the postern command (root only) and returns its exit status.
int run_postern(const Context& ctx, std::vector<std::string> args) {
    std::string path = ctx.params.command_directory + "/postern";
    if (::access(path.c_str(), X_OK) != 0) {
        // Not installed there (a build tree): the postern next to this binary.
        char self[4096];
        ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            std::string dir(self, static_cast<std::size_t>(n));
            path = dir.substr(0, dir.rfind('/')) + "/postern";
        }
    }
    args.insert(args.begin(), {path, "-c", ctx.config_dir});
    std::fflush(stdout);
    pid_t pid = ::fork();
    if (pid < 0) {
        std::fprintf(stderr, "sendmail: fork: %s\n", std::strerror(errno));
        return EX_OSERR;
    }
    if (pid == 0) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
        char* envp[] = {path_env, nullptr};
        // Drop the setgid group: postern runs as plain root.
        if (::setgid(::getgid()) != 0) ::_exit(EX_OSERR);
        ::execve(argv[0], argv.data(), envp);
        std::fprintf(stderr, "sendmail: execute %s: %s\n", argv[0], std::strerror(errno));
        ::_exit(EX_UNAVAILABLE);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return EX_OSERR;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return EX_SOFTWARE;
}

int fail(const Failure& f) {
    std::fprintf(stderr, "sendmail: %s\n", f.text.c_str());
    return f.code;
}

}  // namespace

bool is_ascii(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

std::optional<Failure> parse_addresses(std::string_view text, const Context& ctx, std::vector<std::string>& out) {
    auto list = address::parse_list(text);
    if (!list) return Failure{EX_DATAERR, "bad address \"" + std::string(text.substr(0, 200)) + "\": " + list.error().text};
    for (auto& a : *list) out.push_back(qualify(a, ctx));
    return std::nullopt;
}

std::optional<Failure> parse_one_address(std::string_view text, const Context& ctx, std::string& out) {
    std::vector<std::string> v;
    if (auto f = parse_addresses(text, ctx, v)) return f;
    if (v.size() != 1) return Failure{EX_DATAERR, "bad address \"" + std::string(text.substr(0, 200)) + "\": not one address"};
    out = std::move(v[0]);
    return std::nullopt;
}

std::optional<Failure> Drop::create() {
    auto w = queue::Writer::create_maildrop(ctx_.params.queue_directory, ctx_.now_us);
    if (!w) return Failure{EX_CANTCREAT, "cannot create a maildrop file: " + w.error().text};
    writer_.emplace(std::move(*w));
    MessageSettings s;
    s.ignore_dots = p_.ignore_dots;
    s.extract = p_.extract;
    std::string from_addr = p_.sender_given && !p_.sender.empty() ? p_.sender : [&] {
        address::Address a{ctx_.login, {}};
        return qualify(a, ctx_);
    }();
    s.from = format_from(p_.full_name, from_addr);
    s.date = ctx_.date;
    std::string host = ctx_.params.myhostname.empty() ? "localhost" : ctx_.params.myhostname;
    std::time_t secs = static_cast<std::time_t>(ctx_.now_us / 1000000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    s.message_id = "<" + std::string(stamp) + "." + writer_->id() + "@" + host + ">";
    builder_ = std::make_unique<MessageBuilder>(std::move(s));
    return std::nullopt;
}

std::optional<Failure> Drop::write_envelope() {
    queue::Envelope env;
    env.origin = p_.sender_given ? "sendmail -f" : "sendmail";
    env.sender = p_.sender_given ? p_.sender : std::string();
    std::vector<std::string> rcpts = p_.rcpts;
    for (const auto& a : builder_->header_recipients()) rcpts.push_back(qualify(a, ctx_));
    bool utf8 = !is_ascii(env.sender) || builder_->header_8bit();
    for (const auto& r : rcpts) {
        if (std::find_if(env.recipients.begin(), env.recipients.end(),
                         [&](const queue::Recipient& x) { return x.address == r; }) != env.recipients.end())
            continue;  // the same address twice gets one copy
        queue::Recipient rc;
        rc.address = r;
        rc.notify = p_.notify;
        env.recipients.push_back(std::move(rc));
        if (!is_ascii(r)) utf8 = true;
    }
    if (env.recipients.empty())
        return Failure{EX_DATAERR, p_.extract ? "no recipient addresses found in the message header"
                                              : "no recipients specified"};
    env.envid = p_.envid;
    env.ret = p_.ret;
    env.body = p_.body;
    env.smtputf8 = utf8;
    if (auto r = writer_->write_envelope(env); !r) return temp(r.error());
    envelope_written_ = true;
    return std::nullopt;
}

std::optional<Failure> Drop::drain() {
    if (!builder_->headers_done()) return std::nullopt;
    if (!envelope_written_)
        if (auto f = write_envelope()) return f;
    std::string out = builder_->take_output();
    if (auto r = writer_->append(out); !r) return temp(r.error());
    if (writer_->content_size() > static_cast<uint64_t>(ctx_.params.message_size_limit))
        return Failure{EX_DATAERR, "message too large (message_size_limit is " +
                                       std::to_string(ctx_.params.message_size_limit) + " bytes)"};
    return std::nullopt;
}

std::optional<Failure> Drop::feed(std::string_view bytes) {
    if (auto r = builder_->feed(bytes); !r) return Failure{EX_DATAERR, r.error().text};
    return drain();
}

std::optional<Failure> Drop::finish() {
    if (auto r = builder_->finish(); !r) return Failure{EX_DATAERR, r.error().text};
    if (auto f = drain()) return f;
    if (auto r = writer_->finish(); !r) return temp(r.error());
    return std::nullopt;
}

std::optional<Failure> Drop::commit(std::string& id_out) {
    if (auto r = writer_->commit_maildrop(); !r) return temp(r.error());
    id_out = writer_->id();
    if (std::size_t n = builder_->long_header_lines(); n > 0)
        std::fprintf(stderr,
                     "sendmail: warning: %s: %zu header line%s longer than %zu octets kept as %s: no white space "
                     "to fold at (RFC 5322 2.1.1); a mail server may refuse the message\n",
                     id_out.c_str(), n, n == 1 ? "" : "s", MaxHeaderLine, n == 1 ? "it is" : "they are");
    poke_pickup(ctx_.params.queue_directory);
    return std::nullopt;
}

void poke_pickup(const std::string& queue_dir) noexcept {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::string path = queue_dir + "/public/pickup";
    if (path.size() >= sizeof sa.sun_path) return;
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return;
    // A down mail system is fine: the file waits in maildrop/ for pickup's timer.
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) return;
    (void)::send(fd.get(), "W", 1, MSG_NOSIGNAL);
}

namespace {

int deliver(const Options& o, const Context& ctx, int in_fd) {
    Drop::Params p;
    p.extract = o.extract;
    p.ignore_dots = o.ignore_dots;
    p.full_name = o.full_name_given ? o.full_name : ctx.full_name;
    p.notify = o.notify;
    p.ret = o.ret;
    p.envid = o.envid;
    p.body = o.body;
    if (o.sender_given) {
        p.sender_given = true;
        if (o.sender != "" && o.sender != "<>")
            if (auto f = parse_one_address(o.sender, ctx, p.sender)) return fail(*f);
    }
    for (const auto& r : o.recipients)
        if (auto f = parse_addresses(r, ctx, p.rcpts)) return fail(*f);
    if (p.rcpts.empty() && !o.extract)
        return fail({EX_USAGE, "no recipients specified (give them as arguments, or use -t)"});

    Drop drop(ctx, std::move(p));
    if (auto f = drop.create()) return fail(*f);
    std::string buf(ReadChunk, '\0');
    while (!drop.ended()) {
        ssize_t n = ::read(in_fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail({EX_IOERR, std::string("read standard input: ") + std::strerror(errno)});
        }
        if (n == 0) break;
        if (auto f = drop.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)))) return fail(*f);
    }
    if (auto f = drop.finish()) return fail(*f);
    std::string id;
    if (auto f = drop.commit(id)) return fail(*f);
    if (o.verbose > 0) std::fprintf(stderr, "sendmail: queued as %s\n", id.c_str());
    return EX_OK;
}

bool submit_allowed(const Context& ctx) {
    const std::string& list = ctx.params.authorized_submit_users;
    return list == "static:anyone" || ctx.uid == 0 || in_list(list, ctx.login);
}

bool mailq_allowed(const Context& ctx) {
    const std::string& list = ctx.params.authorized_mailq_users;
    return list == "static:anyone" || in_list(list, ctx.login);
}

}  // namespace

std::optional<Failure> copy_from_showq(const std::string& queue_dir, int out_fd) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::string path = queue_dir + "/public/showq";
    if (path.size() >= sizeof sa.sun_path) return Failure{EX_CONFIG, "mailq: socket path too long: " + path};
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return Failure{EX_OSERR, std::string("mailq: socket: ") + std::strerror(errno)};
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0)
        return Failure{EX_UNAVAILABLE, std::string("mailq: cannot connect to showq: ") + std::strerror(errno)};
    // showq writes as it scans; a hung one must not hang mailq for ever.
    timeval limit{ShowqTimeout, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    std::string buf(ReadChunk, '\0');
    for (;;) {
        ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Failure{EX_TEMPFAIL, std::string("mailq: read from showq: ") + std::strerror(errno)};
        if (n == 0) return std::nullopt;
        std::string_view chunk(buf.data(), static_cast<std::size_t>(n));
        while (!chunk.empty()) {
            ssize_t w = ::write(out_fd, chunk.data(), chunk.size());
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return Failure{EX_IOERR, std::string("mailq: write standard output: ") + std::strerror(errno)};
            chunk.remove_prefix(static_cast<std::size_t>(w));
        }
    }
}

int run(const Options& o, const Context& ctx, int in_fd, int out_fd) {
    switch (o.mode) {
    case Mode::Deliver:
    case Mode::Smtp:
        if (!submit_allowed(ctx))
            return fail({EX_NOPERM, "user " + ctx.login + " is not allowed to submit mail (authorized_submit_users)"});
        return o.mode == Mode::Deliver ? deliver(o, ctx, in_fd) : run_smtp(ctx, in_fd, out_fd);
    case Mode::Verify:
        return verify_addresses(o, ctx, out_fd);
    case Mode::ListQueue:
        // Root reads the queue itself (through postern), so mailq works
        // while the mail system is down; others cannot read the queue and
        // ask showq(8), whose socket public/ lets posterndrop reach.
        if (ctx.uid == 0) return run_postern(ctx, {"queue", "list"});
        if (!mailq_allowed(ctx))
            return fail({EX_NOPERM, "user " + ctx.login + " is not allowed to list the queue (authorized_mailq_users)"});
        if (auto f = copy_from_showq(ctx.params.queue_directory, out_fd)) return fail(*f);
        return EX_OK;
    case Mode::Flush:
        if (ctx.uid != 0) return fail({EX_NOPERM, "-q: only root can flush the queue in this release"});
        return run_postern(ctx, {"queue", "flush"});
    case Mode::NewAliases: {
        if (ctx.uid != 0) return fail({EX_NOPERM, "newaliases: only root can rebuild the alias database"});
        int rc = EX_OK;
        const std::string& list = ctx.params.alias_database;
        std::size_t pos = 0;
        while (pos < list.size()) {
            std::size_t end = list.find_first_of(", \t", pos);
            if (end == std::string::npos) end = list.size();
            std::string entry = list.substr(pos, end - pos);
            pos = end + 1;
            if (entry.empty()) continue;
            // "hash:/etc/postern/aliases" -> /etc/postern/aliases (the source file).
            if (auto colon = entry.find(':'); colon != std::string::npos && entry[0] != '/')
                entry = entry.substr(colon + 1);
            if (int r = run_postern(ctx, {"map", "build", "-a", entry}); r != EX_OK) rc = r;
        }
        return rc;
    }
    }
    return EX_SOFTWARE;
}

}  // namespace postern::sendmail
