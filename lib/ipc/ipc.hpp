// NAME
//   ipc/ipc.hpp - framed name=value attribute lists over UNIX stream sockets
// PURPOSE
//   The one way Postern daemons talk to each other (like Postfix attr_print /
//   attr_scan): a request or reply is an ordered AttrList, sent as one frame.
//   Decoder is incremental and does no I/O, so event loops feed it whatever
//   bytes they read; the blocking helpers (write_frame, read_frame,
//   connect_unix, listen_unix) are for simple clients, commands and tests.
//   Not for talking to the outside world (SMTP, IMAP), and not an RPC layer:
//   message names and attribute keys live with their users and in attrs.hpp.
// WIRE FORMAT (all integers unsigned big-endian)
//   frame   = length:4 payload              length = payload size in bytes
//   payload = count:2 attr{count}           nothing may follow the last attr
//   attr    = nlen:1 name:nlen vlen:4 value:vlen
//   name is 1..64 bytes of [a-z0-9_], unique within a frame; value is any
//   bytes (NUL included). An empty list is the 6 bytes 00 00 00 02 00 00.
// SYNOPSIS
//   AttrList req;  req.add(attr::QueueId, qid);  req.add_int(attr::Pid, getpid());
//   std::string wire = encode(req);
//   Decoder d(limits);  if (auto r = d.feed(bytes); !r) drop(r.error());
//   while (auto msg = d.next()) { if (auto ok = expect(*msg, {attr::Status}); !ok) ... }
//   auto fd = connect_unix(path, 5000);  write_frame(fd->get(), req, 5000);
//   auto reply = read_frame(fd->get(), Limits{}, 5000);
// ERRORS
//   Malformed or over-limit input: Error::protocol, and the Decoder stays failed
//   (drop the peer, STYLE E4). I/O failure, timeout, or EOF before a full frame:
//   Error::temp. A socket path longer than sun_path, or a non-socket in the way
//   of listen_unix: Error::config. Building or encoding an invalid list (bad
//   name, duplicate name, > 65535 attributes, value >= 4 GiB) is a bug: assert.
// SECURITY
//   Peers are other local daemons, possibly compromised or running as another
//   user, so every frame is untrusted: Limits bound the frame size (checked
//   from the 4-byte header, before buffering the payload) and the attribute
//   count; every length is checked against the bytes left in the frame, and no
//   NUL termination is assumed. Receivers should also call expect().
// SEE ALSO
//   ipc/attrs.hpp (attribute keys), event/ (the loops that feed a Decoder)
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <deque>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace postern::ipc {

inline constexpr std::size_t MaxNameLength = 64;

struct Limits {
    std::size_t max_frame = 1 << 20;  // payload bytes, not counting the 4-byte length
    std::size_t max_attrs = 256;
};

// 1..64 bytes of [a-z0-9_]. constexpr so attrs.hpp can check its keys at compile time.
constexpr bool is_valid_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > MaxNameLength) return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

struct Attr {
    std::string name, value;
    bool operator==(const Attr&) const = default;
};

// Ordered (name, value) pairs. Order is kept on the wire and compared by ==.
class AttrList {
public:
    using const_iterator = std::vector<Attr>::const_iterator;

    AttrList() = default;
    AttrList(std::initializer_list<std::pair<std::string_view, std::string_view>> attrs);

    // An invalid name is a bug (assert). Duplicates are caught by encode().
    AttrList& add(std::string_view name, std::string_view value);
    AttrList& add_int(std::string_view name, long long value);

    // nullptr when absent. The pointer is valid until the list is changed.
    const std::string* find(std::string_view name) const noexcept;
    // Error::protocol if absent or not entirely a decimal integer in range.
    Result<long long> get_int(std::string_view name) const;

    std::size_t size() const noexcept { return attrs_.size(); }
    bool empty() const noexcept { return attrs_.empty(); }
    const_iterator begin() const noexcept { return attrs_.begin(); }
    const_iterator end() const noexcept { return attrs_.end(); }

    bool operator==(const AttrList&) const = default;

private:
    std::vector<Attr> attrs_;
};

// One whole frame, length header included.
std::string encode(const AttrList& attrs);

// Incremental frame decoder: feed() any number of bytes, in pieces of any size,
// then take complete lists with next(). Frames completed before a malformed one
// are still returned by next(); after the first error feed() returns that error
// forever and nothing more is decoded.
class Decoder {
public:
    explicit Decoder(Limits limits = {});

    Result<void> feed(std::string_view bytes);
    std::optional<AttrList> next();
    // Bytes held for a frame that is not complete yet.
    std::size_t buffered() const noexcept { return buf_.size(); }
    bool failed() const noexcept { return failed_; }

private:
    Result<void> fail(std::string text);

    Limits limits_;
    std::string buf_;
    std::deque<AttrList> ready_;
    Error error_;
    bool failed_ = false;
};

// Receivers' strict schema check: every name in `required` is present and every
// attribute is in `required` or `optional`. Error::protocol names the first
// missing attribute, else the first unknown one.
Result<void> expect(const AttrList& attrs, std::initializer_list<std::string_view> required,
                    std::initializer_list<std::string_view> optional = {});

// Blocking helpers. timeout_ms bounds the whole call (< 0 waits forever); EINTR
// and short reads/writes are retried. fd may be blocking or not.
Result<void> write_frame(int fd, const AttrList& attrs, int timeout_ms);
// Reads exactly one frame and nothing after it. EOF before a full frame is
// Error::temp("connection closed").
Result<AttrList> read_frame(int fd, const Limits& limits, int timeout_ms);

// Returns a blocking, close-on-exec connected socket.
Result<UniqueFd> connect_unix(const std::string& path, int timeout_ms);
// Replaces a stale socket at path (never another kind of file), binds, sets the
// mode, listens. The listener is blocking and close-on-exec.
Result<UniqueFd> listen_unix(const std::string& path, mode_t mode, int backlog);

}  // namespace postern::ipc
