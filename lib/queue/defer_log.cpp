// queue/defer_log.cpp - defer/<ID>: why each waiting recipient is still waiting (text, atomic replace).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <string>

#include "queue/queue.hpp"
#include "queue/record.hpp"

namespace postern::queue {

using namespace detail;

namespace {

constexpr std::string_view DeferMagic = "postern-defer-log 1\n";
constexpr char Hex[] = "0123456789abcdef";

// A byte the writer must escape: it would end a field or a line, or is the escape itself.
bool needs_escape(unsigned char c) noexcept { return c < 0x20 || c == 0x7f || c == '\\'; }

void put_escaped(std::string& out, std::string_view s) {
    for (unsigned char c : s) {
        if (needs_escape(c)) {
            out += '\\';
            out += 'x';
            out += Hex[c >> 4];
            out += Hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // upper case is not what the writer makes: refused (one spelling per value)
}

// Undoes put_escaped; nullopt for raw control bytes, bad or needless escapes.
std::optional<std::string> unescape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c != '\\') {
            if (needs_escape(c)) return std::nullopt;
            out += static_cast<char>(c);
            continue;
        }
        if (s.size() - i < 4 || s[i + 1] != 'x') return std::nullopt;
        int hi = hex_value(s[i + 2]), lo = hex_value(s[i + 3]);
        if (hi < 0 || lo < 0) return std::nullopt;
        auto v = static_cast<unsigned char>(hi << 4 | lo);
        if (!needs_escape(v)) return std::nullopt;
        out += static_cast<char>(v);
        i += 3;
    }
    return out;
}

// "d.d.d": class 2, 4 or 5, then 1..3 digits twice (RFC 3463's shape).
bool valid_dsn_code(std::string_view s) noexcept {
    if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
    std::size_t i = 2;
    for (int part = 0; part < 2; ++part) {
        std::size_t start = i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
        if (i == start || i - start > 3) return false;
        if (part == 0) {
            if (i >= s.size() || s[i] != '.') return false;
            ++i;
        }
    }
    return i == s.size();
}

// Cuts an over-long reason, never inside a UTF-8 sequence, and says so with "...".
std::string_view cut_reason(std::string_view s, std::string& buf) {
    if (s.size() <= MaxDeferReason) return s;
    std::size_t n = MaxDeferReason - 3;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
    buf.assign(s.substr(0, n));
    buf += "...";
    return buf;
}

Error garbage(const std::string& path, std::size_t line, std::string_view what) {
    std::string t = "corrupt defer log" + (path.empty() ? "" : " " + path) + ": line " + std::to_string(line) + ": ";
    t += what;
    return Error::perm(std::move(t));
}

// defer/ opened without following a symlink: every later call is relative to
// it. Returns 0 or the errno value.
int open_defer_dir(const std::string& queue_dir, std::string& path_out, UniqueFd& fd_out) {
    path_out = join_path(queue_dir, DeferLog);
    fd_out.reset(::open(path_out.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    return fd_out ? 0 : errno;
}

Result<std::vector<DeferEntry>> parse(std::string_view text, const std::string& path) {
    if (text.size() > MaxDeferLogSize) return garbage(path, 1, "longer than " + std::to_string(MaxDeferLogSize) + " bytes");
    if (text.substr(0, DeferMagic.size()) != DeferMagic) return garbage(path, 1, "not a defer log");
    text.remove_prefix(DeferMagic.size());
    std::vector<DeferEntry> out;
    for (std::size_t line_no = 2; !text.empty(); ++line_no) {
        auto nl = text.find('\n');
        if (nl == std::string_view::npos) return garbage(path, line_no, "no line end");
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        std::string_view f[5];
        std::size_t n = 0;
        for (;;) {
            auto tab = line.find('\t');
            if (n == 4 || tab == std::string_view::npos) {
                f[n++] = line;
                if (tab != std::string_view::npos) return garbage(path, line_no, "too many fields");
                break;
            }
            f[n++] = line.substr(0, tab);
            line.remove_prefix(tab + 1);
        }
        if (n != 5) return garbage(path, line_no, "want 5 fields");
        DeferEntry e;
        bool digits = !f[0].empty() && f[0].size() <= 19 && (f[0].size() == 1 || f[0][0] != '0');
        for (char c : f[0]) digits = digits && c >= '0' && c <= '9';
        auto [end, ec] = std::from_chars(f[0].data(), f[0].data() + f[0].size(), e.time_us);
        if (!digits || ec != std::errc() || end != f[0].data() + f[0].size())
            return garbage(path, line_no, "bad time");
        if (!valid_dsn_code(f[1])) return garbage(path, line_no, "bad status code");
        e.dsn = f[1];
        auto addr = unescape(f[2]), relay = unescape(f[3]), reason = unescape(f[4]);
        if (!addr || !relay || !reason) return garbage(path, line_no, "bad escape or control character");
        if (addr->empty()) return garbage(path, line_no, "empty address");
        // The writer cuts longer ones, so the text has one spelling per list.
        if (reason->size() > MaxDeferReason) return garbage(path, line_no, "reason too long");
        e.address = std::move(*addr);
        e.relay = std::move(*relay);
        e.reason = std::move(*reason);
        out.push_back(std::move(e));
    }
    return out;
}

}  // namespace

Result<std::string> format_defer_log(const std::vector<DeferEntry>& entries) {
    std::string text(DeferMagic);
    std::string cut;
    for (const auto& e : entries) {
        if (e.address.empty()) return Error::perm("defer log entry: empty address");
        if (!valid_dsn_code(e.dsn)) return Error::perm("defer log entry: bad status code");
        if (e.time_us < 0) return Error::perm("defer log entry: time before 1970");
        text += std::to_string(e.time_us);
        text += '\t';
        text += e.dsn;
        text += '\t';
        put_escaped(text, e.address);
        text += '\t';
        put_escaped(text, e.relay);
        text += '\t';
        put_escaped(text, cut_reason(e.reason, cut));
        text += '\n';
    }
    if (text.size() > MaxDeferLogSize)
        return Error::perm("defer log longer than " + std::to_string(MaxDeferLogSize) + " bytes");
    return text;
}

Result<std::vector<DeferEntry>> parse_defer_log(std::string_view text) { return parse(text, ""); }

Result<void> write_defer_log(const std::string& queue_dir, std::string_view id, const std::vector<DeferEntry>& entries) {
    if (!valid_id(id)) return Error::perm("write defer log: invalid queue ID");
    if (entries.empty()) {
        remove_defer_log(queue_dir, id);
        return {};
    }
    auto text = format_defer_log(entries);
    if (!text) return Error::perm("write defer log " + std::string(id) + ": " + text.error().text);

    std::string dir;
    UniqueFd dfd;
    if (int err = open_defer_dir(queue_dir, dir, dfd); err != 0) return sys_error("open", dir, err);
    // One writer per queue (qmgr), so a temp file already there was left by a
    // crash: remove it and go on.
    const std::string temp = std::string(TempPrefix) + std::string(id);
    const std::string temp_path = join_path(dir, temp);
    UniqueFd fd;
    for (int tries = 0; tries < 2 && !fd; ++tries) {
        fd.reset(::openat(dfd.get(), temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd && errno != EEXIST) return sys_error("create", temp_path, errno);
        if (!fd) ::unlinkat(dfd.get(), temp.c_str(), 0);
    }
    if (!fd) return sys_error("create", temp_path, EEXIST);
    auto fail = [&](const char* op, int err) {
        ::unlinkat(dfd.get(), temp.c_str(), 0);
        return sys_error(op, temp_path, err);
    };
    if (auto w = fs::write_all(fd.get(), *text); !w) {
        ::unlinkat(dfd.get(), temp.c_str(), 0);
        return w.error();
    }
    // Note: no fsync. The log is informational; after a crash an old or
    // missing log only means a less helpful `postern queue list`.
    if (::close(fd.release()) != 0 && errno != EINTR) return fail("close", errno);
    const std::string name(id);
    if (::renameat(dfd.get(), temp.c_str(), dfd.get(), name.c_str()) != 0) return fail("rename", errno);
    return {};
}

Result<std::vector<DeferEntry>> read_defer_log(const std::string& queue_dir, std::string_view id) {
    if (!valid_id(id)) return Error::perm("read defer log: invalid queue ID");
    std::string dir;
    UniqueFd dfd;
    if (int err = open_defer_dir(queue_dir, dir, dfd); err != 0) {
        if (err == ENOENT) return std::vector<DeferEntry>{};  // a queue made before defer logs
        return sys_error("open", dir, err);
    }
    const std::string name(id);
    const std::string path = join_path(dir, name);
    // O_NONBLOCK: a FIFO planted here must not make a root-run reader hang.
    UniqueFd fd(::openat(dfd.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!fd) {
        if (errno == ENOENT) return std::vector<DeferEntry>{};
        if (errno == ELOOP) return Error::perm("refusing " + path + ": symbolic link");
        return sys_error("open", path, errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return sys_error("fstat", path, errno);
    if (!S_ISREG(st.st_mode)) return Error::perm("refusing " + path + ": not a regular file");
    if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > MaxDeferLogSize)
        return Error::perm("refusing " + path + ": longer than " + std::to_string(MaxDeferLogSize) + " bytes");
    std::string text(static_cast<std::size_t>(st.st_size) + 1, '\0');  // +1 notices a file that grew
    std::size_t got = 0;
    while (got < text.size()) {
        ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return sys_error("read", path, errno);
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    // Files are replaced by rename, never rewritten, so a size change means
    // someone else is writing it by hand.
    if (got != static_cast<std::size_t>(st.st_size)) return Error::temp("read " + path + ": file changed while reading");
    text.resize(got);
    return parse(text, path);
}

void remove_defer_log(const std::string& queue_dir, std::string_view id) noexcept {
    if (!valid_id(id)) return;
    try {
        std::string dir;
        UniqueFd dfd;
        if (open_defer_dir(queue_dir, dir, dfd) != 0) return;
        const std::string name(id);
        ::unlinkat(dfd.get(), name.c_str(), 0);
        ::unlinkat(dfd.get(), (std::string(TempPrefix) + name).c_str(), 0);  // from a crash, if any
    } catch (const std::exception&) {  // only bad_alloc can get here; the log is informational
    }
}

}  // namespace postern::queue
