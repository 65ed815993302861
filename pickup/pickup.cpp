// pickup/pickup.cpp - maildrop/ files into incoming/: sender rule, checks, crash-safe hand-over.
#include "pickup/pickup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>  // renameat2
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <map>
#include <set>

#include "fs/fs.hpp"
#include "ipc/ipc.hpp"
#include "log/log.hpp"
#include "util/handles.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace postern::pickup {
namespace {

using DirPtr = std::unique_ptr<DIR, CDeleter<::closedir>>;

constexpr std::string_view OriginPrefix = "pickup uid=";
constexpr std::string_view MaildropKey = " maildrop=";
constexpr std::size_t MaxHeaderScan = 64 * 1024;  // bytes of header looked at for Message-ID

bool has_control(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}

// sendmail names its files with these; anything else is not ours.
bool valid_maildrop_name(std::string_view n) {
    if (n.empty() || n.size() > MaxNameLength || n[0] == '.') return false;
    for (unsigned char c : n)
        if (!(std::isalnum(c) || c == '.' || c == '-' || c == '_')) return false;
    return true;
}

std::string sys_text(const char* op, const std::string& what, int err) {
    return std::string(op) + " " + what + ": " + std::strerror(err);
}

// Renames without replacing; 0 or errno.
int rename_noreplace(const std::string& from, const std::string& to) {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
    return errno;
}

// The recovery key of a maildrop file: its name and the queue ID sendmail
// wrote in it. Names alone could be reused by sendmail over the years.
std::string maildrop_key(std::string_view name, std::string_view maildrop_id) {
    return std::string(name) + " id=" + std::string(maildrop_id);
}

// Finds Message-ID in the header section as it streams by (first MaxHeaderScan bytes).
class MessageIdScanner {
public:
    void feed(std::string_view b) {
        if (done_) return;
        std::size_t take = std::min(b.size(), MaxHeaderScan - buf_.size());
        buf_.append(b.substr(0, take));
        if (buf_.find("\r\n\r\n") != std::string::npos || buf_.size() >= MaxHeaderScan) done_ = true;
    }
    std::optional<std::string> value() const {
        std::string_view h(buf_);
        if (auto end = h.find("\r\n\r\n"); end != std::string_view::npos) h = h.substr(0, end + 2);
        std::size_t pos = 0;
        while (pos < h.size()) {
            std::size_t eol = h.find("\r\n", pos);
            if (eol == std::string_view::npos) break;
            std::string_view line = h.substr(pos, eol - pos);
            pos = eol + 2;
            if (!util::starts_with_icase(line, "message-id:")) continue;
            std::string v(util::trim(line.substr(11)));
            // Folded continuation lines.
            while (pos < h.size() && (h[pos] == ' ' || h[pos] == '\t')) {
                eol = h.find("\r\n", pos);
                if (eol == std::string_view::npos) break;
                v += " " + std::string(util::trim(h.substr(pos, eol - pos)));
                pos = eol + 2;
            }
            return std::string(util::trim(v));
        }
        return std::nullopt;
    }

private:
    std::string buf_;
    bool done_ = false;
};

}  // namespace

SenderPolicy SenderPolicy::parse(std::string_view value) {
    SenderPolicy p;
    for (auto& item : util::split_list(value)) {
        if (item == "static:anyone") p.anyone = true;
        else if (item.find(':') != std::string::npos)
            log::warn("sendmail_sender_override_users: %s: only static:anyone and user names are supported",
                      util::printable(item).c_str());
        else p.users.push_back(item);
    }
    return p;
}

bool SenderPolicy::allows(uid_t uid, std::string_view login) const {
    if (anyone || uid == 0) return true;
    for (auto& u : users)
        if (u == login) return true;
    return false;
}

std::string decide_sender(const queue::Envelope& env, uid_t uid, std::string_view login, const SenderPolicy& policy,
                          std::string_view myorigin) {
    if (env.origin == "sendmail -f" && policy.allows(uid, login)) return env.sender;
    return std::string(login) + "@" + std::string(myorigin);
}

Result<void> validate(const queue::Envelope& env, std::size_t recipient_limit) {
    if (env.recipients.empty()) return Error::perm("no recipients");
    if (env.recipients.size() > recipient_limit)
        return Error::perm("too many recipients (" + std::to_string(env.recipients.size()) + ", limit " +
                           std::to_string(recipient_limit) + ")");
    if (env.sender.size() > MaxAddressLength || has_control(env.sender))
        return Error::perm("bad sender address");
    for (auto& r : env.recipients) {
        if (r.address.size() > MaxAddressLength || has_control(r.address) || has_control(r.orcpt) ||
            r.orcpt.size() > MaxAddressLength + 10)
            return Error::perm("bad recipient address");
    }
    if (has_control(env.envid) || env.envid.size() > 100) return Error::perm("bad ENVID");
    return {};
}

std::string received_header(std::string_view myhostname, std::string_view mail_name, uid_t uid,
                            std::string_view queue_id, int64_t now_us) {
    char date[64];
    std::time_t t = static_cast<std::time_t>(now_us / 1000000);
    std::tm tm{};
    localtime_r(&t, &tm);
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
    return "Received: by " + std::string(myhostname) + " (" + std::string(mail_name) + ", from userid " +
           std::to_string(uid) + ")\r\n\tid " + std::string(queue_id) + "; " + date + "\r\n";
}

std::optional<std::string> origin_maildrop_name(std::string_view origin) {
    if (origin.substr(0, OriginPrefix.size()) != OriginPrefix) return std::nullopt;
    auto at = origin.find(MaildropKey);
    if (at == std::string_view::npos) return std::nullopt;
    return std::string(origin.substr(at + MaildropKey.size()));
}

namespace {
bool is_wsp(char c) { return c == ' ' || c == '\t'; }
bool is_name_char(char c) { return c > 32 && c < 127 && c != ':'; }
}  // namespace

void HeaderCheck::end_field() noexcept {
    if (cur_ > largest_) largest_ = cur_;
    cur_ = 0;
}

void HeaderCheck::not_a_field() noexcept {
    // The line was counted as a new field at its first byte; it is the
    // first line of the body instead.
    --fields_;
    cur_ = 0;
    state_ = State::Done;
}

void HeaderCheck::feed(std::string_view bytes) noexcept {
    for (char c : bytes) {
        switch (state_) {
        case State::Done:
            return;
        case State::LineStart:
            if (c == '\r' || c == '\n') {  // the empty line (or a stray CR line) ends the header
                end_field();
                state_ = State::Done;
            } else if (is_wsp(c)) {
                if (fields_ == 0) {
                    state_ = State::Done;  // nothing to continue: body
                } else {
                    cur_ += term_ + 1;
                    state_ = State::Value;
                }
            } else {
                end_field();
                ++fields_;
                cur_ = 1;
                if (is_name_char(c)) state_ = State::Name;
                else not_a_field();
            }
            break;
        case State::Name:
        case State::NameSpace:
            if (c == ':') {
                ++cur_;
                state_ = State::Value;
            } else if (is_wsp(c)) {
                ++cur_;
                state_ = State::NameSpace;
            } else if (state_ == State::Name && is_name_char(c)) {
                ++cur_;
            } else {
                not_a_field();
            }
            break;
        case State::Value:
            if (c == '\n') {
                if (cr_) --cur_;  // the CR of a CRLF is not part of the line
                term_ = cr_ ? 2 : 1;
                cr_ = false;
                state_ = State::LineStart;
            } else {
                ++cur_;
                cr_ = c == '\r';
            }
            break;
        }
    }
}

std::string HeaderCheck::problem(std::size_t header_size_limit, std::size_t field_limit) const {
    std::string why;
    if (largest_field() > header_size_limit)
        why = "a header field of " + std::to_string(largest_field()) + " bytes exceeds header_size_limit=" +
              std::to_string(header_size_limit);
    if (fields_ > field_limit) {
        if (!why.empty()) why += ", and ";
        why += std::to_string(fields_) + " header fields exceed the limit of " + std::to_string(field_limit);
    }
    return why;
}

UserLookup snapshot_users(std::size_t max_users) {
    auto table = std::make_shared<std::map<uid_t, std::string>>();  // shared: UserLookup is copyable
    ::setpwent();
    while (const passwd* pw = ::getpwent()) {
        if (table->size() >= max_users) {
            log::warn("more than %zu users; the others cannot use sendmail", max_users);
            break;
        }
        table->emplace(pw->pw_uid, pw->pw_name);  // the first entry of a uid wins, as getpwuid
    }
    ::endpwent();
    return [table](uid_t uid) -> std::optional<std::string> {
        auto it = table->find(uid);
        if (it == table->end()) return std::nullopt;
        return it->second;
    };
}

void trigger_qmgr(const std::string& queue_dir) {
    std::string path = (queue_dir == "/" ? std::string() : queue_dir + "/") + "private/qmgr";
    auto fd = ipc::connect_unix(path, 100);
    if (!fd) return;
    ssize_t n = ::write(fd->get(), "A", 1);
    (void)n;
}

Pickup::Pickup(Settings s, UserLookup users, std::function<int64_t()> now_us)
    : s_(std::move(s)), users_(std::move(users)), now_us_(std::move(now_us)), started_us_(now_us_()) {}

std::string Pickup::path(std::string_view subdir, std::string_view name) const {
    std::string p = s_.queue_dir == "/" ? "/" : s_.queue_dir + "/";
    p += subdir;
    if (!name.empty()) p += "/" + std::string(name);
    return p;
}

std::size_t Pickup::recover() {
    std::vector<std::string> leftovers;
    {
        DirPtr d(::opendir(path(queue::Incoming).c_str()));
        if (!d) {
            log::warn("recovery: opendir %s: %s", path(queue::Incoming).c_str(), std::strerror(errno));
            return 0;
        }
        while (const dirent* e = ::readdir(d.get())) {
            std::string_view n(e->d_name);
            if (n.substr(0, LeftoverPrefix.size()) == LeftoverPrefix &&
                valid_maildrop_name(n.substr(LeftoverPrefix.size())))
                leftovers.emplace_back(n.substr(LeftoverPrefix.size()));
        }
    }
    if (leftovers.empty()) return 0;  // the usual case: no scan of the queue

    // Which maildrop files made it into the queue (step 3 done)?
    std::set<std::string> queued;
    for (std::string_view dir : {queue::Incoming, queue::Active, queue::Deferred, queue::Hold}) {
        DirPtr d(::opendir(path(dir).c_str()));
        if (!d) continue;
        while (const dirent* e = ::readdir(d.get())) {
            if (!queue::valid_id(e->d_name)) continue;
            UniqueFd fd(::open(path(dir, e->d_name).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
            if (!fd) continue;
            auto env = queue::read_envelope(fd.get());
            if (!env) continue;
            if (auto key = origin_maildrop_name(env->origin)) queued.insert(*key);
        }
    }
    for (auto& name : leftovers) {
        const std::string left = path(queue::Incoming, std::string(LeftoverPrefix) + name);
        std::optional<std::string> key;
        {
            UniqueFd fd(::open(left.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
            if (fd) {
                if (auto env = queue::read_envelope(fd.get())) key = maildrop_key(name, env->queue_id);
            }
        }
        if (key && queued.count(*key)) {
            log::info("recovery: %s was queued before a crash; removing %s", name.c_str(), left.c_str());
            if (::unlink(left.c_str()) != 0 && errno != ENOENT)
                log::warn("recovery: %s", sys_text("unlink", left, errno).c_str());
            continue;
        }
        const std::string back = path(queue::Maildrop, name);
        int err = rename_noreplace(left, back);
        if (err == EEXIST) {
            // A crash before the maildrop/ removal was durable: both names
            // may be the same file.
            struct stat a {}, b {};
            if (::lstat(left.c_str(), &a) == 0 && ::lstat(back.c_str(), &b) == 0 && a.st_ino == b.st_ino &&
                a.st_dev == b.st_dev) {
                ::unlink(left.c_str());
                err = 0;
            }
        }
        if (err != 0) {
            log::warn("recovery: %s", sys_text("rename", left + " to " + back, err).c_str());
            continue;
        }
        log::info("recovery: %s was not queued before a crash; back in maildrop/", name.c_str());
    }
    if (auto r = fs::fsync_dir(path(queue::Maildrop)); !r) log::warn("recovery: %s", r.error().text.c_str());
    return leftovers.size();
}

PassResult Pickup::run_pass() {
    DirPtr d(::opendir(path(queue::Maildrop).c_str()));
    if (!d) {
        log::warn("%s", sys_text("opendir", path(queue::Maildrop), errno).c_str());
        return PassResult::Done;
    }
    std::size_t acted = 0;
    while (const dirent* e = ::readdir(d.get())) {
        std::string name(e->d_name);
        if (name == "." || name == "..") continue;
        if (acted >= s_.batch_limit) return PassResult::More;
        Outcome o = handle(name);
        if (o == Outcome::Queued || o == Outcome::Corrupt) ++acted;
        if (o == Outcome::Later && stale_users_) return PassResult::Done;
    }
    return PassResult::Done;
}

void Pickup::to_corrupt(const std::string& name, uid_t uid, const std::string& why) {
    const std::string from = path(queue::Maildrop, name);
    // Corrupt names are unique per file: the maildrop name can repeat.
    const std::string to = path(queue::Corrupt, "maildrop-" + std::to_string(now_us_()) + "-" +
                                                    (valid_maildrop_name(name) ? name : std::string("unnamed")));
    if (int err = rename_noreplace(from, to); err != 0) {
        log::warn("%s: uid=%u: corrupt maildrop file: %s; %s", util::printable(name).c_str(),
                  static_cast<unsigned>(uid), why.c_str(), sys_text("rename", from + " to " + to, err).c_str());
        return;
    }
    log::warn("%s: uid=%u: corrupt maildrop file: %s; moved to corrupt/", util::printable(name).c_str(),
              static_cast<unsigned>(uid), why.c_str());
}

Pickup::Outcome Pickup::handle(const std::string& name) {
    const std::string p = path(queue::Maildrop, name);
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return Outcome::Skipped;  // gone meanwhile
    if (!S_ISREG(st.st_mode)) {
        to_corrupt(name, st.st_uid, "not a regular file");
        return Outcome::Corrupt;
    }
    if (name[0] == '.') {
        // sendmail's own temp name (.tmp-*) until it renames the file to its
        // final name: not ours unless a crash left it behind.
        if (now_us_() / 1000000 - st.st_mtime <= IncompleteAge) return Outcome::Skipped;
        to_corrupt(name, st.st_uid, "temporary file left for more than an hour");
        return Outcome::Corrupt;
    }
    if (!valid_maildrop_name(name)) {
        to_corrupt(name, st.st_uid, "bad file name");
        return Outcome::Corrupt;
    }
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return Outcome::Skipped;
        log::warn("%s", sys_text("open", p, errno).c_str());
        return Outcome::Later;
    }
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return Outcome::Skipped;  // replaced meanwhile
    const uid_t uid = st.st_uid;
    if ((st.st_mode & 07777) != 0644) {
        if (now_us_() / 1000000 - st.st_mtime <= IncompleteAge) return Outcome::Skipped;  // still being written
        to_corrupt(name, uid, "incomplete for more than an hour");
        return Outcome::Corrupt;
    }
    if (st.st_nlink != 1) {
        to_corrupt(name, uid, "file has " + std::to_string(st.st_nlink) + " links");
        return Outcome::Corrupt;
    }
    if (static_cast<uint64_t>(st.st_size) > s_.message_size_limit + EnvelopeSlack) {
        to_corrupt(name, uid, "file too large (" + std::to_string(st.st_size) + " bytes)");
        return Outcome::Corrupt;
    }
    uint64_t content_off = 0;
    auto env = queue::read_envelope(fd.get(), &content_off);
    if (!env) {
        to_corrupt(name, uid, env.error().text);
        return Outcome::Corrupt;
    }
    auto login = users_(uid);
    if (!login) {
        if (st.st_mtime >= started_us_ / 1000000 - 1) {
            // The user may be newer than our passwd snapshot.
            stale_users_ = true;
            return Outcome::Later;
        }
        to_corrupt(name, uid, "unknown user ID");
        return Outcome::Corrupt;
    }
    if (auto v = validate(*env, s_.recipient_limit); !v) {
        to_corrupt(name, uid, v.error().text);
        return Outcome::Corrupt;
    }
    auto id = queue_file(fd.get(), name, uid, *login, *env, content_off);
    if (!id) {
        if (id.error().kind == Error::Kind::Perm) {
            to_corrupt(name, uid, id.error().text);
            return Outcome::Corrupt;
        }
        log::warn("%s: uid=%u: %s; will try again", name.c_str(), static_cast<unsigned>(uid),
                  id.error().text.c_str());
        return Outcome::Later;
    }
    ++committed_;
    return Outcome::Queued;
}

Result<std::string> Pickup::queue_file(int fd, const std::string& name, uid_t uid, const std::string& login,
                                       const queue::Envelope& in, uint64_t content_off) {
    const int64_t now = now_us_();
    auto w = queue::Writer::create(s_.queue_dir, now);
    if (!w) return w.error();
    queue::Envelope env;
    env.protocol = "local";
    env.origin = std::string(OriginPrefix) + std::to_string(uid) + std::string(MaildropKey) +
                 maildrop_key(name, in.queue_id);
    env.sender = decide_sender(in, uid, login, s_.sender_policy, s_.myorigin);
    env.envid = in.envid;
    env.ret = in.ret;
    env.body = in.body;
    env.smtputf8 = in.smtputf8;
    for (auto& r : in.recipients) {
        queue::Recipient out;
        out.address = r.address;
        out.orcpt = r.orcpt;
        out.notify = r.notify;
        env.recipients.push_back(std::move(out));
    }
    if (auto r = w->write_envelope(env); !r) return r.error();
    if (auto r = w->append(received_header(s_.myhostname, s_.mail_name, uid, w->id(), now)); !r) return r.error();
    MessageIdScanner mid;
    HeaderCheck header;
    uint64_t size = 0;
    auto copied = queue::read_content(fd, content_off, [&](std::string_view b) -> Result<void> {
        size += b.size();
        if (size > s_.message_size_limit)
            return Error::perm("message too large (message_size_limit=" + std::to_string(s_.message_size_limit) + ")");
        mid.feed(b);
        header.feed(b);
        return w->append(b);
    });
    if (!copied) return copied.error();
    if (auto r = w->finish(); !r) return r.error();

    // Step 2: the maildrop file leaves maildrop/ for a name recover() knows.
    const std::string from = path(queue::Maildrop, name);
    const std::string left = path(queue::Incoming, std::string(LeftoverPrefix) + name);
    if (int err = rename_noreplace(from, left); err != 0) return Error::temp(sys_text("rename", from + " to " + left, err));
    auto put_back = [&] {
        if (int err = rename_noreplace(left, from); err != 0)
            log::warn("%s (recovered at the next start)", sys_text("rename", left + " to " + from, err).c_str());
    };
    for (std::string_view dir : {queue::Incoming, queue::Maildrop}) {
        if (auto r = fs::fsync_dir(path(dir)); !r) {
            put_back();
            return r.error();
        }
    }
    // Step 3.
    if (auto r = w->commit(); !r) {
        put_back();
        return r.error();
    }
    // Step 4: a crash before this is handled by recover().
    if (::unlink(left.c_str()) != 0)
        log::warn("%s (removed at the next start)", sys_text("unlink", left, errno).c_str());

    log::info("%s: uid=%u from=<%s>", w->id().c_str(), static_cast<unsigned>(uid),
              util::printable(env.sender, 300).c_str());
    if (auto m = mid.value()) log::info("%s: message-id=%s", w->id().c_str(), util::printable(*m, 300).c_str());
    if (auto why = header.problem(s_.header_size_limit, s_.header_field_limit); !why.empty())
        log::warn("%s: uid=%u: maildrop file %s: %s; queued whole, nothing cut", w->id().c_str(),
                  static_cast<unsigned>(uid), name.c_str(), why.c_str());
    return w->id();
}

}  // namespace postern::pickup
