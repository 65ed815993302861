// postern/queue_ops.cpp - postern queue flush|hold|release|delete|requeue: rename, unlink and touch queue files next to a running qmgr.
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <set>

#include "postern/queue_cmd.hpp"
#include "queue/queue.hpp"
#include "util/handles.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace postern::queue_cmd {
namespace {

using DirPtr = std::unique_ptr<DIR, CDeleter<::closedir>>;

// The subdirectories an operation can touch, as indexes into Queue::fd.
enum Sub { Incoming, Active, Deferred, Hold, Corrupt, SubCount };
constexpr std::array<std::string_view, SubCount> SubName = {queue::Incoming, queue::Active, queue::Deferred,
                                                            queue::Hold, queue::Corrupt};

// How often a message that moved under us is looked for again.
constexpr int LookupRounds = 3;
// Longest line accepted from the input for "-": a queue ID is at most 24 bytes.
constexpr std::size_t MaxInputLine = 256;

struct Queue {
    std::string dir;
    std::array<UniqueFd, SubCount> fd;
    std::set<int> touched;  // subdirectories to fsync at the end

    std::string path(Sub s) const { return dir + "/" + std::string(SubName[s]); }
};

// Opens every subdirectory without following a symlink; later calls are
// relative to these descriptors, so a symlink planted in place of a
// subdirectory cannot send root elsewhere.
std::optional<Queue> open_queue(const std::string& dir) {
    Queue q;
    q.dir = dir;
    for (int s = 0; s < SubCount; ++s) {
        q.fd[s].reset(::open(q.path(Sub(s)).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!q.fd[s]) {
            std::fprintf(stderr, "postern: open %s: %s\n", q.path(Sub(s)).c_str(), std::strerror(errno));
            return std::nullopt;
        }
    }
    return q;
}

// The valid queue IDs in one subdirectory; temp files and strays are skipped.
std::optional<std::vector<std::string>> list_ids(const Queue& q, Sub s) {
    UniqueFd dup(::openat(q.fd[s].get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DirPtr d(dup ? ::fdopendir(dup.get()) : nullptr);
    if (!d) {
        std::fprintf(stderr, "postern: opendir %s: %s\n", q.path(s).c_str(), std::strerror(errno));
        return std::nullopt;
    }
    (void)dup.release();  // the DIR owns it now
    std::vector<std::string> ids;
    for (;;) {
        errno = 0;
        const dirent* e = ::readdir(d.get());
        if (e == nullptr) {
            if (errno != 0) {
                std::fprintf(stderr, "postern: readdir %s: %s\n", q.path(s).c_str(), std::strerror(errno));
                return std::nullopt;
            }
            break;
        }
        if (queue::valid_id(e->d_name)) ids.emplace_back(e->d_name);
    }
    return ids;
}

// Sets a file's access and modification time to now; qmgr reads a deferred
// file's mtime as its next attempt time. Returns 0 or errno.
int touch(const Queue& q, Sub s, const std::string& id) {
    const timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    return ::utimensat(q.fd[s].get(), id.c_str(), now, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

// Moves from/id to to/id, never replacing a file. Returns 0 or errno.
int move(Queue& q, Sub from, Sub to, const std::string& id) {
    if (::renameat2(q.fd[from].get(), id.c_str(), q.fd[to].get(), id.c_str(), RENAME_NOREPLACE) != 0) {
        // Note: some file systems cannot do RENAME_NOREPLACE; IDs are unique, so this is safe enough there.
        if (errno != EINVAL && errno != ENOSYS) return errno;
        struct stat st {};
        if (::fstatat(q.fd[to].get(), id.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return EEXIST;
        if (::renameat(q.fd[from].get(), id.c_str(), q.fd[to].get(), id.c_str()) != 0) return errno;
    }
    q.touched.insert(from);
    q.touched.insert(to);
    return 0;
}

struct VerbInfo {
    std::vector<Sub> from;       // where the message is taken from, in this order
    std::optional<Sub> to;       // nullopt: delete
    const char* summary;         // "Deleted"
    char poke;                   // qmgr trigger afterwards, 0 for none
};

// Looked for in the order qmgr moves files (incoming -> active -> deferred),
// so one round usually finds a message that is moving.
VerbInfo info(Verb v) {
    switch (v) {
    case Verb::Hold: return {{Incoming, Active, Deferred}, Hold, "Placed on hold", 0};
    case Verb::Release: return {{Hold}, Deferred, "Released from hold", 'F'};
    case Verb::Delete: return {{Incoming, Active, Deferred, Hold}, std::nullopt, "Deleted", 0};
    case Verb::Requeue: return {{Deferred, Hold}, Incoming, "Requeued", 'A'};
    }
    return {{}, std::nullopt, "", 0};
}

enum class Outcome { Done, Elsewhere, Missing, Failed };

// Applies the verb to one message wherever it is. named: the administrator
// named it (a delete then also looks in corrupt/).
Outcome apply(Queue& q, Verb v, const VerbInfo& vi, const std::string& id, bool named) {
    std::vector<Sub> from = vi.from;
    if (v == Verb::Delete && named) from.push_back(Corrupt);
    for (int round = 0; round < LookupRounds; ++round) {
        for (Sub s : from) {
            int err = 0;
            if (!vi.to) {
                err = ::unlinkat(q.fd[s].get(), id.c_str(), 0) == 0 ? 0 : errno;
                if (err == 0) q.touched.insert(s);
            } else {
                // Released messages are due now: touch while still in hold/,
                // where qmgr does not look, then move.
                if (v == Verb::Release) err = touch(q, s, id);
                if (err == 0) err = move(q, s, *vi.to, id);
            }
            if (err == 0) {
                if (v == Verb::Delete) queue::remove_defer_log(q.dir, id);
                return Outcome::Done;
            }
            if (err == ENOENT) continue;  // not there, or it just moved: look on
            const char* what = !vi.to ? "remove" : "move";
            std::fprintf(stderr, "postern: %s: %s %s/%s: %s\n", id.c_str(), what, std::string(SubName[s]).c_str(),
                         id.c_str(), err == EEXIST ? "a file of that name is in the way" : std::strerror(err));
            return Outcome::Failed;
        }
        for (int s = 0; s < SubCount; ++s) {
            struct stat st {};
            if (::fstatat(q.fd[s].get(), id.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            bool ours = false;
            for (Sub f : from) ours = ours || f == s;
            if (!ours) return Outcome::Elsewhere;
        }
    }
    return Outcome::Missing;
}

// Wakes qmgr through its trigger socket. Nobody listening is fine: qmgr
// scans the queue when it starts and on master's wakeup timer.
bool poke_qmgr(const std::string& queue_dir, char what, std::string& why_out) {
    std::string path = queue_dir + "/private/qmgr";
    sockaddr_un sun{};
    if (path.size() >= sizeof sun.sun_path) {
        why_out = path + ": path too long";
        return false;
    }
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    // Non-blocking: a full listen queue (EAGAIN) means qmgr has wake-ups enough.
    if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sun), sizeof sun) != 0 ||
        ::send(fd.get(), &what, 1, MSG_NOSIGNAL) != 1) {
        why_out = path + ": " + std::strerror(errno);
        return false;
    }
    return true;
}

void summary(const char* what, std::size_t n) {
    if (n > 0) std::fprintf(stderr, "postern: %s: %zu message%s\n", what, n, n == 1 ? "" : "s");
}

void sync_touched(const Queue& q, bool& io_error) {
    for (int s : q.touched) {
        if (::fsync(q.fd[s].get()) != 0 && errno != EINVAL) {
            std::fprintf(stderr, "postern: fsync %s: %s\n", q.path(Sub(s)).c_str(), std::strerror(errno));
            io_error = true;
        }
    }
}

// IDs from the input stream, one per line (surrounding white space ignored,
// empty lines skipped). nullopt after printing why on a bad line.
std::optional<std::vector<std::string>> read_ids(std::istream& in) {
    std::vector<std::string> ids;
    std::string line;
    char c;
    bool too_long = false;
    auto finish_line = [&]() -> bool {
        std::string_view id = util::trim(line);
        if (too_long) {
            std::fprintf(stderr, "postern: input line longer than %zu bytes\n", MaxInputLine);
            return false;
        }
        if (!id.empty()) ids.emplace_back(id);
        line.clear();
        return true;
    };
    while (in.get(c)) {
        if (c == '\n') {
            if (!finish_line()) return std::nullopt;
        } else if (line.size() < MaxInputLine) {
            line += c;
        } else {
            too_long = true;
        }
    }
    if (!finish_line()) return std::nullopt;
    return ids;
}

}  // namespace

int change(const config::Params& p, Verb verb, const std::vector<std::string>& targets, std::istream& in) {
    const VerbInfo vi = info(verb);
    bool all = false;
    std::vector<std::string> ids;
    for (const auto& t : targets) {
        if ((t == "ALL" || t == "-") && targets.size() != 1) {
            std::fprintf(stderr, "postern: %s must be the only target\n", t.c_str());
            return EX_USAGE;
        }
        if (t == "ALL") {
            all = true;
        } else if (t == "-") {
            auto r = read_ids(in);
            if (!r) return EX_USAGE;
            ids = std::move(*r);
        } else {
            ids.push_back(t);
        }
    }
    // Every ID is checked before anything is done.
    for (const auto& id : ids) {
        if (!queue::valid_id(id)) {
            std::fprintf(stderr, "postern: \"%s\" is not a queue ID\n", util::printable(id, 60).c_str());
            return EX_USAGE;
        }
    }
    auto q = open_queue(p.queue_directory);
    if (!q) return EX_TEMPFAIL;

    bool io_error = false, missing = false;
    if (all) {
        std::set<std::string> seen;
        for (Sub s : vi.from) {
            auto found = list_ids(*q, s);
            if (!found) {
                io_error = true;
                continue;
            }
            for (auto& id : *found)
                if (seen.insert(id).second) ids.push_back(std::move(id));
        }
    }
    std::size_t done = 0;
    std::set<std::string> seen;
    for (const auto& id : ids) {
        if (!seen.insert(id).second) continue;  // named twice: once is enough
        switch (apply(*q, verb, vi, id, !all)) {
        case Outcome::Done: ++done; break;
        case Outcome::Elsewhere: break;
        case Outcome::Missing:
            // With ALL it was delivered (or removed) since the directory was read.
            if (!all) {
                std::fprintf(stderr, "postern: %s: no such message\n", id.c_str());
                missing = true;
            }
            break;
        case Outcome::Failed: io_error = true; break;
        }
    }
    sync_touched(*q, io_error);
    summary(vi.summary, done);
    std::string why;
    if (done > 0 && vi.poke) (void)poke_qmgr(p.queue_directory, vi.poke, why);
    if (io_error) return EX_TEMPFAIL;
    return missing ? EX_NOINPUT : EX_OK;
}

int flush(const config::Params& p) {
    auto q = open_queue(p.queue_directory);
    if (!q) return EX_TEMPFAIL;
    auto ids = list_ids(*q, Deferred);
    if (!ids) return EX_TEMPFAIL;
    bool io_error = false;
    for (const auto& id : *ids) {
        int err = touch(*q, Deferred, id);
        if (err != 0 && err != ENOENT) {  // ENOENT: qmgr took it meanwhile
            std::fprintf(stderr, "postern: %s: set time of deferred/%s: %s\n", id.c_str(), id.c_str(),
                         std::strerror(err));
            io_error = true;
        }
    }
    std::string why;
    if (!poke_qmgr(p.queue_directory, 'F', why))
        std::fprintf(stderr, "postern: warning: cannot wake the queue manager (%s); is the mail system running?\n",
                     why.c_str());
    return io_error ? EX_TEMPFAIL : EX_OK;
}

}  // namespace postern::queue_cmd
