// queue/queue.cpp - queue IDs, record helpers, directory set-up and moves between queues.
#include "queue/queue.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <system_error>

#include "fs/fs.hpp"
#include "queue/handles.hpp"
#include "queue/record.hpp"

namespace postern::queue {
namespace detail {

void put_u32(char* p, uint32_t v) noexcept {
    p[0] = static_cast<char>(v >> 24);
    p[1] = static_cast<char>(v >> 16);
    p[2] = static_cast<char>(v >> 8);
    p[3] = static_cast<char>(v);
}

uint32_t get_u32(const char* p) noexcept {
    auto b = [p](int i) { return static_cast<uint32_t>(static_cast<unsigned char>(p[i])); };
    return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

void append_record(std::string& out, char type, std::string_view payload) {
    POSTERN_ASSERT(payload.size() <= UINT32_MAX);
    char hdr[RecHeaderSize];
    hdr[0] = type;
    put_u32(hdr + 1, static_cast<uint32_t>(payload.size()));
    out.append(hdr, sizeof hdr);
    out.append(payload);
}

bool valid_status(char c) noexcept { return c == StatusPending || c == StatusDone || c == StatusFailed; }

bool valid_notify(unsigned n) noexcept {
    if (n > (NotifyNever | NotifySuccess | NotifyFailure | NotifyDelay)) return false;
    return (n & NotifyNever) == 0 || n == NotifyNever;  // RFC 3461: NEVER stands alone
}

bool valid_ret(std::string_view s) noexcept { return s.empty() || s == "FULL" || s == "HDRS"; }

bool valid_body(std::string_view s) noexcept {
    return s.empty() || s == "7BIT" || s == "8BITMIME" || s == "BINARYMIME";
}

bool valid_subdir(std::string_view s) noexcept {
    return s == Incoming || s == Active || s == Deferred || s == Hold || s == Corrupt || s == Maildrop;
}

std::string join_path(std::string_view dir, std::string_view name) {
    if (dir.empty()) dir = ".";
    std::string p;
    p.reserve(dir.size() + 1 + name.size());
    p.append(dir);
    if (dir.back() != '/') p.push_back('/');
    p.append(name);
    return p;
}

int rename_noreplace(const std::string& from, const std::string& to) noexcept {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return errno;
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

}  // namespace detail

using namespace detail;

namespace {

static_assert(IdAlphabet.size() == 32);
constexpr bool alphabet_ascending() {
    for (std::size_t i = 1; i < IdAlphabet.size(); ++i)
        if (IdAlphabet[i - 1] >= IdAlphabet[i]) return false;
    return true;
}
static_assert(alphabet_ascending(), "IDs must sort like the numbers they encode");

// Digit value of each byte, -1 for bytes outside the alphabet.
constexpr std::array<signed char, 256> make_digit_table() {
    std::array<signed char, 256> t{};
    for (auto& v : t) v = -1;
    for (std::size_t i = 0; i < IdAlphabet.size(); ++i)
        t[static_cast<unsigned char>(IdAlphabet[i])] = static_cast<signed char>(i);
    return t;
}
constexpr auto Digit = make_digit_table();

int digit(char c) noexcept { return Digit[static_cast<unsigned char>(c)]; }

// Inode digits that fit a 64-bit number in the leading position of 13.
constexpr int MaxTopInodeDigit = 15;

}  // namespace

std::string make_id(uint64_t time_us, uint64_t inode) {
    POSTERN_ASSERT(time_us < (uint64_t{1} << (5 * IdTimeChars)));
    std::string id(IdTimeChars, '0');
    for (std::size_t i = IdTimeChars; i-- > 0; time_us >>= 5) id[i] = IdAlphabet[time_us & 31];
    char tail[IdMaxInodeChars];
    std::size_t n = 0;
    do {
        tail[n++] = IdAlphabet[inode & 31];
        inode >>= 5;
    } while (inode != 0);
    while (n > 0) id += tail[--n];
    return id;
}

bool valid_id(std::string_view id) noexcept {
    if (id.size() <= IdTimeChars || id.size() > IdTimeChars + IdMaxInodeChars) return false;
    for (char c : id)
        if (digit(c) < 0) return false;
    std::string_view inode = id.substr(IdTimeChars);
    // make_id writes no leading zeros, so each inode has exactly one spelling.
    if (inode.size() > 1 && inode[0] == IdAlphabet[0]) return false;
    if (inode.size() == IdMaxInodeChars && digit(inode[0]) > MaxTopInodeDigit) return false;
    return true;
}

std::optional<uint64_t> id_time_us(std::string_view id) noexcept {
    if (!valid_id(id)) return std::nullopt;
    uint64_t t = 0;
    for (std::size_t i = 0; i < IdTimeChars; ++i) t = t << 5 | static_cast<uint64_t>(digit(id[i]));
    return t;
}

Result<void> make_dirs(const std::string& queue_dir) {
    if (::mkdir(queue_dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir", queue_dir, errno);
    for (auto sub : {Incoming, Active, Deferred, Hold, Corrupt, Maildrop, DeferLog, Recycle}) {
        std::string p = join_path(queue_dir, sub);
        if (::mkdir(p.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir", p, errno);
        struct stat st {};
        if (::lstat(p.c_str(), &st) != 0) return sys_error("lstat", p, errno);
        if (!S_ISDIR(st.st_mode)) return Error::perm("refusing " + p + ": not a directory");
    }
    return {};
}

Result<std::size_t> remove_stale_temp_files(const std::string& queue_dir) {
    std::string dir = join_path(queue_dir, Incoming);
    DirPtr d(::opendir(dir.c_str()));
    if (!d) return sys_error("opendir", dir, errno);
    std::size_t removed = 0;
    for (;;) {
        errno = 0;
        const dirent* e = ::readdir(d.get());
        if (e == nullptr) {
            if (errno != 0) return sys_error("readdir", dir, errno);
            break;
        }
        std::string_view name(e->d_name);
        if (name.substr(0, TempPrefix.size()) != TempPrefix) continue;
        if (::unlinkat(::dirfd(d.get()), e->d_name, 0) == 0) {
            ++removed;
        } else if (errno != ENOENT) {
            return sys_error("unlink", join_path(dir, name), errno);
        }
    }
    return removed;
}

Result<void> move_to(const std::string& queue_dir, const std::string& id, std::string_view from_subdir,
                     std::string_view to_subdir) {
    if (!valid_id(id)) return Error::perm("move queue file: invalid queue ID");
    if (!valid_subdir(from_subdir) || !valid_subdir(to_subdir))
        return Error::perm("move queue file " + id + ": not a queue directory");
    std::string from = join_path(join_path(queue_dir, from_subdir), id);
    std::string to_dir = join_path(queue_dir, to_subdir);
    std::string to = join_path(to_dir, id);
    if (int err = rename_noreplace(from, to); err != 0) return sys_error("rename", from + " to " + to, err);
    return fs::fsync_dir(to_dir);
}

int retire(const std::string& queue_dir, std::string_view subdir, const std::string& id, int fd,
           bool recycle) noexcept {
    const std::string path = join_path(join_path(queue_dir, subdir), id);
    if (recycle && valid_id(id)) {
        const std::string to = join_path(join_path(queue_dir, Recycle), id);
        if (rename_noreplace(path, to) == 0) {
            // Emptied now, so no mail lingers in recycle/. A failure leaves
            // the bytes for the next writer's O_TRUNC.
            if (fd >= 0) (void)::ftruncate(fd, 0);
            return 0;
        }
        // No recycle/ (an old queue), a name clash or no such file: unlink
        // tells which.
    }
    return ::unlink(path.c_str()) == 0 ? 0 : errno;
}

std::size_t count_recycled(const std::string& queue_dir) noexcept {
    const std::string dir = join_path(queue_dir, Recycle);
    DirPtr d(::opendir(dir.c_str()));
    if (!d) return 0;
    std::size_t n = 0;
    while (const dirent* e = ::readdir(d.get()))
        if (e->d_name[0] != '.') ++n;
    return n;
}

}  // namespace postern::queue
