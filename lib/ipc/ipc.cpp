// ipc/ipc.cpp - attribute list framing, incremental decoder and blocking UNIX-socket helpers.
#include "ipc/ipc.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <system_error>

#include "util/strings.hpp"

namespace postern::ipc {

namespace {

constexpr std::size_t HeaderSize = 4;
constexpr std::size_t CountSize = 2;

std::uint32_t get_be32(const char* p) noexcept {
    auto b = [p](int i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])); };
    return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

std::uint16_t get_be16(const char* p) noexcept {
    auto b = [p](int i) { return static_cast<std::uint16_t>(static_cast<unsigned char>(p[i])); };
    return static_cast<std::uint16_t>((b(0) << 8) | b(1));
}

void put_be32(std::string& out, std::uint32_t v) {
    out += static_cast<char>((v >> 24) & 0xff);
    out += static_cast<char>((v >> 16) & 0xff);
    out += static_cast<char>((v >> 8) & 0xff);
    out += static_cast<char>(v & 0xff);
}

void put_be16(std::string& out, std::uint16_t v) {
    out += static_cast<char>((v >> 8) & 0xff);
    out += static_cast<char>(v & 0xff);
}

std::string quoted(std::string_view untrusted, std::size_t max_len = MaxNameLength) {
    return "\"" + util::printable(untrusted, max_len) + "\"";
}

// Reads fields out of one complete payload; every take checks what is left.
class PayloadReader {
public:
    explicit PayloadReader(std::string_view p) noexcept : p_(p) {}
    std::size_t left() const noexcept { return p_.size() - pos_; }
    std::string_view take(std::size_t n) noexcept {
        std::string_view s = p_.substr(pos_, n);
        pos_ += n;
        return s;
    }

private:
    std::string_view p_;
    std::size_t pos_ = 0;
};

// Parses one complete payload (the length header already stripped and checked).
Result<AttrList> parse_payload(std::string_view payload, const Limits& limits) {
    PayloadReader in(payload);
    if (in.left() < CountSize) return Error::protocol("frame too short for the attribute count");
    std::size_t count = get_be16(in.take(CountSize).data());
    if (count > limits.max_attrs) {
        return Error::protocol("too many attributes: " + std::to_string(count) + ", limit " +
                               std::to_string(limits.max_attrs));
    }
    AttrList list;
    std::vector<std::string_view> names;
    names.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        auto at = [i] { return "attribute " + std::to_string(i + 1) + ": "; };
        if (in.left() < 1) return Error::protocol(at() + "name length past the frame end");
        std::size_t nlen = static_cast<unsigned char>(in.take(1)[0]);
        if (nlen == 0 || nlen > MaxNameLength) {
            return Error::protocol(at() + "bad name length " + std::to_string(nlen) + " (want 1.." +
                                   std::to_string(MaxNameLength) + ")");
        }
        if (in.left() < nlen) return Error::protocol(at() + "name past the frame end");
        std::string_view name = in.take(nlen);
        if (!is_valid_name(name)) {
            return Error::protocol(at() + "bad name " + quoted(name) + " (want [a-z0-9_])");
        }
        if (in.left() < 4) return Error::protocol(at() + quoted(name) + ": value length past the frame end");
        std::size_t vlen = get_be32(in.take(4).data());
        if (vlen > in.left()) {
            return Error::protocol(at() + quoted(name) + ": value length " + std::to_string(vlen) +
                                   " past the frame end (" + std::to_string(in.left()) + " bytes left)");
        }
        list.add(name, in.take(vlen));
        names.push_back(name);
    }
    if (in.left() != 0) {
        return Error::protocol(std::to_string(in.left()) + " trailing bytes after the last attribute");
    }
    // Note: sort rather than look up as we go, so a hostile max_attrs-sized frame costs n log n.
    std::sort(names.begin(), names.end());
    if (auto dup = std::adjacent_find(names.begin(), names.end()); dup != names.end()) {
        return Error::protocol("duplicate attribute " + quoted(*dup));
    }
    return list;
}

std::string sys_text(std::string_view what, int err) {
    return std::string(what) + ": " + std::system_category().message(err);
}

using Clock = std::chrono::steady_clock;

// Deadline for a whole blocking call; timeout_ms < 0 means none.
class Deadline {
public:
    explicit Deadline(int timeout_ms) noexcept
        : forever_(timeout_ms < 0), end_(Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0))) {}
    // Milliseconds left for poll(): -1 forever, 0 when expired.
    int poll_ms() const noexcept {
        if (forever_) return -1;
        auto left = std::chrono::ceil<std::chrono::milliseconds>(end_ - Clock::now()).count();
        return static_cast<int>(std::clamp<long long>(left, 0, std::numeric_limits<int>::max()));
    }

private:
    bool forever_;
    Clock::time_point end_;
};

// Waits for `events` on fd. Ok when ready (or on POLLERR/POLLHUP: the next
// I/O call reports the real condition), Error::temp on timeout.
Result<void> wait_for(int fd, short events, const Deadline& deadline, std::string_view what) {
    for (;;) {
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, deadline.poll_ms());
        if (n > 0) return {};
        if (n == 0) return Error::temp(std::string(what) + ": timed out");
        if (errno != EINTR) return Error::temp(sys_text(std::string(what) + ": poll", errno));
    }
}

// Writes all of `data`. Sockets use send(MSG_NOSIGNAL) so a vanished peer is
// an error, not SIGPIPE; MSG_DONTWAIT keeps a blocking fd from outliving the deadline.
Result<void> write_all(int fd, std::string_view data, const Deadline& deadline) {
    bool is_socket = true;
    while (!data.empty()) {
        if (auto r = wait_for(fd, POLLOUT, deadline, "write frame"); !r) return r;
        ssize_t n = is_socket ? ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT)
                              : ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == ENOTSOCK && is_socket) {
                is_socket = false;
                continue;
            }
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            if (errno == EPIPE || errno == ECONNRESET) return Error::temp("write frame: connection closed");
            return Error::temp(sys_text("write frame", errno));
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

// Reads exactly out.size() bytes: never more, so what follows stays in the socket.
Result<void> read_exact(int fd, char* out, std::size_t len, const Deadline& deadline) {
    std::size_t got = 0;
    while (got < len) {
        if (auto r = wait_for(fd, POLLIN, deadline, "read frame"); !r) return r;
        ssize_t n = ::read(fd, out + got, len - got);
        if (n == 0) return Error::temp("connection closed");
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            if (errno == ECONNRESET) return Error::temp("connection closed");
            return Error::temp(sys_text("read frame", errno));
        }
        got += static_cast<std::size_t>(n);
    }
    return {};
}

Result<sockaddr_un> unix_address(const std::string& path) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sun.sun_path || path.find('\0') != std::string::npos) {
        return Error::config("bad UNIX socket path " + quoted(path, 200) + " (want 1.." +
                             std::to_string(sizeof sun.sun_path - 1) + " bytes, no NUL)");
    }
    std::memcpy(sun.sun_path, path.data(), path.size());
    return sun;
}

}  // namespace

// ---- AttrList ----

AttrList::AttrList(std::initializer_list<std::pair<std::string_view, std::string_view>> attrs) {
    attrs_.reserve(attrs.size());
    for (const auto& [name, value] : attrs) add(name, value);
}

AttrList& AttrList::add(std::string_view name, std::string_view value) {
    POSTERN_ASSERT(is_valid_name(name));
    attrs_.push_back(Attr{std::string(name), std::string(value)});
    return *this;
}

AttrList& AttrList::add_int(std::string_view name, long long value) {
    return add(name, std::to_string(value));
}

const std::string* AttrList::find(std::string_view name) const noexcept {
    for (const auto& a : attrs_) {
        if (a.name == name) return &a.value;
    }
    return nullptr;
}

Result<long long> AttrList::get_int(std::string_view name) const {
    const std::string* v = find(name);
    if (v == nullptr) return Error::protocol("missing attribute " + quoted(name));
    auto n = util::parse_long(*v);
    if (!n) return Error::protocol("attribute " + quoted(name) + ": bad integer " + quoted(*v));
    return *n;
}

// ---- encoding ----

std::string encode(const AttrList& attrs) {
    POSTERN_ASSERT(attrs.size() <= std::numeric_limits<std::uint16_t>::max());
    std::size_t payload = CountSize;
    std::vector<std::string_view> names;
    names.reserve(attrs.size());
    for (const auto& a : attrs) {
        POSTERN_ASSERT(is_valid_name(a.name));
        POSTERN_ASSERT(a.value.size() <= std::numeric_limits<std::uint32_t>::max());
        payload += 1 + a.name.size() + 4 + a.value.size();
        names.push_back(a.name);
    }
    POSTERN_ASSERT(payload <= std::numeric_limits<std::uint32_t>::max());
    std::sort(names.begin(), names.end());
    POSTERN_ASSERT(std::adjacent_find(names.begin(), names.end()) == names.end());

    std::string out;
    out.reserve(HeaderSize + payload);
    put_be32(out, static_cast<std::uint32_t>(payload));
    put_be16(out, static_cast<std::uint16_t>(attrs.size()));
    for (const auto& a : attrs) {
        out += static_cast<char>(a.name.size());
        out += a.name;
        put_be32(out, static_cast<std::uint32_t>(a.value.size()));
        out += a.value;
    }
    return out;
}

// ---- Decoder ----

Decoder::Decoder(Limits limits) : limits_(limits) {}

Result<void> Decoder::fail(std::string text) {
    failed_ = true;
    error_ = Error::protocol("bad attribute frame: " + text);
    buf_.clear();
    buf_.shrink_to_fit();
    return error_;
}

Result<void> Decoder::feed(std::string_view bytes) {
    if (failed_) return error_;
    buf_.append(bytes);
    std::size_t pos = 0;
    for (;;) {
        std::size_t avail = buf_.size() - pos;
        if (avail < HeaderSize) break;
        const char* frame = buf_.data() + pos;
        // Header checks run as soon as the bytes are here, so an oversized
        // frame is refused before its payload is buffered.
        std::size_t len = get_be32(frame);
        if (len > limits_.max_frame) {
            return fail("frame length " + std::to_string(len) + " exceeds the limit of " +
                        std::to_string(limits_.max_frame));
        }
        if (len < CountSize) return fail("frame length " + std::to_string(len) + " too short for the attribute count");
        if (avail >= HeaderSize + CountSize) {
            std::size_t count = get_be16(frame + HeaderSize);
            if (count > limits_.max_attrs) {
                return fail("too many attributes: " + std::to_string(count) + ", limit " +
                            std::to_string(limits_.max_attrs));
            }
        }
        if (avail < HeaderSize + len) break;
        auto list = parse_payload(std::string_view(frame + HeaderSize, len), limits_);
        if (!list) return fail(list.error().text);
        ready_.push_back(std::move(*list));
        pos += HeaderSize + len;
    }
    buf_.erase(0, pos);
    // Note: don't keep a max_frame-sized buffer around for every idle connection.
    if (buf_.empty() && buf_.capacity() > 64 * 1024) buf_.shrink_to_fit();
    return {};
}

std::optional<AttrList> Decoder::next() {
    if (ready_.empty()) return std::nullopt;
    AttrList out = std::move(ready_.front());
    ready_.pop_front();
    return out;
}

// ---- schema check ----

Result<void> expect(const AttrList& attrs, std::initializer_list<std::string_view> required,
                    std::initializer_list<std::string_view> optional) {
    for (std::string_view name : required) {
        if (attrs.find(name) == nullptr) return Error::protocol("missing attribute " + quoted(name));
    }
    for (const auto& a : attrs) {
        auto in = [&a](std::initializer_list<std::string_view> names) {
            return std::find(names.begin(), names.end(), a.name) != names.end();
        };
        if (!in(required) && !in(optional)) return Error::protocol("unknown attribute " + quoted(a.name));
    }
    return {};
}

// ---- blocking helpers ----

Result<void> write_frame(int fd, const AttrList& attrs, int timeout_ms) {
    return write_all(fd, encode(attrs), Deadline(timeout_ms));
}

Result<AttrList> read_frame(int fd, const Limits& limits, int timeout_ms) {
    Deadline deadline(timeout_ms);
    Decoder decoder(limits);
    char header[HeaderSize];
    if (auto r = read_exact(fd, header, sizeof header, deadline); !r) return r.error();
    if (auto r = decoder.feed(std::string_view(header, sizeof header)); !r) return r.error();
    // The decoder has checked len against max_frame, so this allocation is bounded.
    std::string payload(get_be32(header), '\0');
    if (auto r = read_exact(fd, payload.data(), payload.size(), deadline); !r) return r.error();
    if (auto r = decoder.feed(payload); !r) return r.error();
    auto list = decoder.next();
    POSTERN_ASSERT(list.has_value());
    return std::move(*list);
}

Result<UniqueFd> connect_unix(const std::string& path, int timeout_ms) {
    auto addr = unix_address(path);
    if (!addr) return addr.error();
    Deadline deadline(timeout_ms);
    std::string what = "connect to " + path;
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return Error::temp(sys_text(what + ": socket", errno));
    for (;;) {
        if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0) break;
        int err = errno;
        if (err == EAGAIN) {
            // Linux: the listener's backlog is full. A UNIX socket never goes
            // EINPROGRESS, so poll has nothing to wait on; retry shortly.
            int ms = deadline.poll_ms();
            if (ms == 0) return Error::temp(what + ": timed out");
            ::poll(nullptr, 0, ms < 0 ? 10 : std::min(ms, 10));
            continue;
        }
        if (err != EINPROGRESS && err != EINTR) return Error::temp(sys_text(what, err));
        if (auto r = wait_for(fd.get(), POLLOUT, deadline, what); !r) return r.error();
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len) < 0) {
            return Error::temp(sys_text(what + ": getsockopt", errno));
        }
        if (so_error != 0) return Error::temp(sys_text(what, so_error));
        break;
    }
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
        return Error::temp(sys_text(what + ": fcntl", errno));
    }
    return fd;
}

Result<UniqueFd> listen_unix(const std::string& path, mode_t mode, int backlog) {
    auto addr = unix_address(path);
    if (!addr) return addr.error();
    std::string what = "listen on " + path;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        // Only a socket is ours to replace; anything else means a config mistake.
        if (!S_ISSOCK(st.st_mode)) return Error::config(what + ": exists and is not a socket");
        if (::unlink(path.c_str()) < 0 && errno != ENOENT) return Error::temp(sys_text(what + ": unlink", errno));
    } else if (errno != ENOENT) {
        return Error::temp(sys_text(what + ": lstat", errno));
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return Error::temp(sys_text(what + ": socket", errno));
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0) {
        return Error::temp(sys_text(what + ": bind", errno));
    }
    // Note: until listen() nobody can connect, so the umask-derived mode that
    // bind() left does not open a window.
    if (::chmod(path.c_str(), mode) < 0) return Error::temp(sys_text(what + ": chmod", errno));
    if (::listen(fd.get(), backlog) < 0) return Error::temp(sys_text(what + ": listen", errno));
    return fd;
}

}  // namespace postern::ipc
