// queue/reader.cpp - strict queue file reader and in-place recipient status updates.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>

#include "queue/queue.hpp"
#include "queue/record.hpp"

namespace postern::queue {

using namespace detail;

namespace {

constexpr std::size_t ReadBlock = 64 * 1024;

Error corrupt(std::string_view what, uint64_t offset) {
    std::string t = "corrupt queue file: ";
    t += what;
    t += " at offset ";
    t += std::to_string(offset);
    return Error::perm(std::move(t));
}

// For error text: the record type as a letter, or as hex when not printable.
std::string type_name(char type) {
    char b[16];
    auto u = static_cast<unsigned char>(type);
    if (u > 0x20 && u < 0x7f) std::snprintf(b, sizeof b, "'%c'", type);
    else std::snprintf(b, sizeof b, "0x%02x", u);
    return b;
}

bool known_type(char t) noexcept {
    static constexpr std::string_view Known = "VTIcahpmuoSerbUWRMBE";
    return Known.find(t) != std::string_view::npos;
}

// pread until n bytes or an error. A short file is reported: it shrank since fstat.
Result<void> pread_exact(int fd, char* out, std::size_t n, uint64_t offset) {
    while (n > 0) {
        ssize_t got = ::pread(fd, out, n, static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR) continue;
            return sys_error("read queue file at offset", std::to_string(offset), errno);
        }
        if (got == 0) return Error::temp("read queue file: file shrank at offset " + std::to_string(offset));
        out += got;
        n -= static_cast<std::size_t>(got);
        offset += static_cast<uint64_t>(got);
    }
    return {};
}

Result<uint64_t> file_size(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return sys_error("fstat queue file", "fd " + std::to_string(fd), errno);
    if (!S_ISREG(st.st_mode)) return Error::perm("corrupt queue file: not a regular file at offset 0");
    return static_cast<uint64_t>(st.st_size);
}

// Sequential record walk over [0, size) with a read-ahead block, so an
// envelope with many small records costs few system calls.
class Records {
public:
    Records(int fd, uint64_t size, uint64_t start) : fd_(fd), size_(size), off_(start) {}

    struct Header {
        char type;
        uint32_t len;
        uint64_t offset;  // of the record header
    };

    bool at_end() const noexcept { return off_ >= size_; }
    uint64_t offset() const noexcept { return off_; }

    // Reads the next header; checks that the payload lies inside the file and
    // within the size cap. Moves past the payload without reading it.
    Result<Header> next() {
        if (size_ - off_ < RecHeaderSize) return corrupt("truncated record header", off_);
        char hdr[RecHeaderSize];
        if (auto r = read(off_, hdr, sizeof hdr); !r) return r.error();
        Header h{hdr[0], get_u32(hdr + 1), off_};
        if (off_ == 0 && h.type != RecVersion) return corrupt("missing version record", 0);
        if (!known_type(h.type)) return corrupt("unknown record type " + type_name(h.type), off_);
        if (h.len > MaxRecordSize) return corrupt("record " + type_name(h.type) + " too long", off_);
        if (h.len > size_ - off_ - RecHeaderSize)
            return corrupt("record " + type_name(h.type) + " length past end of file", off_);
        off_ += RecHeaderSize + h.len;
        return h;
    }

    // The payload of h; its length was checked against the file size by next().
    Result<void> payload(const Header& h, std::string& out) {
        out.resize(h.len);
        return read(h.offset + RecHeaderSize, out.data(), h.len);
    }

private:
    Result<void> read(uint64_t offset, char* out, std::size_t n) {
        if (offset >= block_off_ && offset + n <= block_off_ + block_.size()) {
            std::copy_n(block_.data() + (offset - block_off_), n, out);
            return {};
        }
        if (n > ReadBlock) return pread_exact(fd_, out, n, offset);
        std::size_t want = static_cast<std::size_t>(std::min<uint64_t>(ReadBlock, size_ - offset));
        block_.resize(want);
        block_off_ = offset;
        if (auto r = pread_exact(fd_, block_.data(), want, offset); !r) {
            block_.clear();
            return r;
        }
        std::copy_n(block_.data(), n, out);
        return {};
    }

    int fd_;
    uint64_t size_;
    uint64_t off_;
    std::string block_;
    uint64_t block_off_ = 0;
};

std::optional<int64_t> parse_time(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(v);
}

Result<Recipient> parse_recipient(std::string_view p, uint64_t payload_offset) {
    if (p.size() < RcptFixedSize) return corrupt("short recipient record", payload_offset);
    Recipient r;
    r.status = p[0];
    r.notify = static_cast<unsigned char>(p[1]);
    std::size_t alen = static_cast<std::size_t>(static_cast<unsigned char>(p[2])) << 8 |
                       static_cast<unsigned char>(p[3]);
    if (!valid_status(r.status)) return corrupt("bad recipient status", payload_offset);
    if (!valid_notify(r.notify)) return corrupt("bad recipient NOTIFY flags", payload_offset + 1);
    if (alen == 0 || alen > p.size() - RcptFixedSize)
        return corrupt("bad recipient address length", payload_offset + 2);
    r.address.assign(p.substr(RcptFixedSize, alen));
    r.orcpt.assign(p.substr(RcptFixedSize + alen));
    r.status_offset = payload_offset;
    return r;
}

}  // namespace

Result<Envelope> read_envelope(int fd, uint64_t* content_offset_out) {
    auto size = file_size(fd);
    if (!size) return size.error();
    Records recs(fd, *size, 0);
    Envelope env;
    std::array<bool, 256> seen{};
    enum class Phase { Envelope, Content, Done } phase = Phase::Envelope;
    uint64_t content_offset = 0;
    std::string p;

    if (recs.at_end()) return corrupt("missing version record", 0);
    while (!recs.at_end()) {
        if (phase == Phase::Done) return corrupt("data after end record", recs.offset());
        auto h = recs.next();
        if (!h) return h.error();
        const uint64_t at = h->offset;
        const uint64_t payload_at = at + RecHeaderSize;
        auto& once = seen[static_cast<unsigned char>(h->type)];

        if (h->type == RecContent) {
            if (phase != Phase::Content) return corrupt("content record outside message", at);
            continue;  // read_content reads it
        }
        if (h->type == RecEnd) {
            if (phase != Phase::Content) return corrupt("end record before message start", at);
            if (h->len != 0) return corrupt("non-empty end record", at);
            phase = Phase::Done;
            continue;
        }
        if (phase != Phase::Envelope) return corrupt("envelope record " + type_name(h->type) + " in message", at);
        if (h->type == RecMessage) {
            if (h->len != 0) return corrupt("non-empty message start record", at);
            for (char req : {RecTime, RecId, RecSender})
                if (!seen[static_cast<unsigned char>(req)])
                    return corrupt("missing record " + type_name(req) + " before message start", at);
            phase = Phase::Content;
            content_offset = payload_at;
            continue;
        }
        if (h->type != RecRecipient) {
            if (once) return corrupt("duplicate record " + type_name(h->type), at);
            once = true;
        }
        if (auto r = recs.payload(*h, p); !r) return r.error();

        switch (h->type) {
        case RecVersion:
            if (p != FormatVersion) return corrupt("unsupported version", payload_at);
            break;
        case RecTime: {
            auto t = parse_time(p);
            if (!t) return corrupt("bad arrival time", payload_at);
            env.arrival_us = *t;
            break;
        }
        case RecId:
            if (!valid_id(p)) return corrupt("bad queue ID", payload_at);
            env.queue_id = p;
            break;
        case RecClientName: env.client_name = p; break;
        case RecClientAddr: env.client_addr = p; break;
        case RecHelo: env.helo = p; break;
        case RecProtocol: env.protocol = p; break;
        case RecSaslMethod: env.sasl_method = p; break;
        case RecSaslUsername: env.sasl_username = p; break;
        case RecOrigin: env.origin = p; break;
        case RecSender: env.sender = p; break;
        case RecEnvid: env.envid = p; break;
        case RecRet:
            if (p.empty() || !valid_ret(p)) return corrupt("bad RET value", payload_at);
            env.ret = p;
            break;
        case RecBody:
            if (p.empty() || !valid_body(p)) return corrupt("bad BODY value", payload_at);
            env.body = p;
            break;
        case RecSmtputf8:
            if (p != "1") return corrupt("bad SMTPUTF8 record", payload_at);
            env.smtputf8 = true;
            break;
        case RecWarned:
            if (p != "0" && p != "1") return corrupt("bad delay warning record", payload_at);
            env.delay_warned = p == "1";
            env.warned_offset = payload_at;
            break;
        case RecRecipient: {
            auto r = parse_recipient(p, payload_at);
            if (!r) return r.error();
            env.recipients.push_back(std::move(*r));
            break;
        }
        default:
            return corrupt("unknown record type " + type_name(h->type), at);
        }
    }
    if (phase == Phase::Envelope) return corrupt("missing message start record", *size);
    if (phase != Phase::Done) return corrupt("missing end record", *size);
    if (content_offset_out != nullptr) *content_offset_out = content_offset;
    return env;
}

Result<void> set_delay_warned(int fd, Envelope& env) {
    if (env.warned_offset == 0) return Error::perm("queue file " + env.queue_id + " has no delay warning record");
    auto size = file_size(fd);
    if (!size) return size.error();
    const uint64_t at = env.warned_offset;
    if (at < RecHeaderSize || at >= *size) return corrupt("no delay warning record", at);
    char rec[RecHeaderSize + 1];
    if (auto rd = pread_exact(fd, rec, sizeof rec, at - RecHeaderSize); !rd) return rd;
    if (rec[0] != RecWarned || get_u32(rec + 1) != 1 || (rec[5] != '0' && rec[5] != '1'))
        return corrupt("no delay warning record", at);
    const char one = '1';
    for (;;) {
        ssize_t n = ::pwrite(fd, &one, 1, static_cast<off_t>(at));
        if (n == 1) break;
        if (n < 0 && errno == EINTR) continue;
        return sys_error("write delay warning flag at offset", std::to_string(at), n < 0 ? errno : EIO);
    }
    if (::fdatasync(fd) != 0) return sys_error("fdatasync queue file", "fd " + std::to_string(fd), errno);
    env.delay_warned = true;
    return {};
}

Result<ContentReader> ContentReader::open(int fd, uint64_t content_offset) {
    auto size = file_size(fd);
    if (!size) return size.error();
    if (content_offset > *size) return corrupt("content offset past end of file", content_offset);
    return ContentReader(fd, *size, content_offset);
}

Result<std::optional<std::string>> ContentReader::next() {
    if (done_) return std::optional<std::string>();
    // Note: a fresh Records per chunk; its block cache only spans one record here.
    Records recs(fd_, size_, off_);
    if (recs.at_end()) return corrupt("missing end record", size_);
    auto h = recs.next();
    if (!h) return h.error();
    if (h->type == RecEnd) {
        if (h->len != 0) return corrupt("non-empty end record", h->offset);
        if (!recs.at_end()) return corrupt("data after end record", recs.offset());
        done_ = true;
        return std::optional<std::string>();
    }
    if (h->type != RecContent) return corrupt("record " + type_name(h->type) + " in message", h->offset);
    std::string p;
    if (auto r = recs.payload(*h, p); !r) return r.error();
    off_ = recs.offset();
    return std::optional<std::string>(std::move(p));
}

Result<void> read_content(int fd, uint64_t content_offset,
                          const std::function<Result<void>(std::string_view)>& sink) {
    auto size = file_size(fd);
    if (!size) return size.error();
    if (content_offset > *size) return corrupt("content offset past end of file", content_offset);
    Records recs(fd, *size, content_offset);
    std::string p;
    while (!recs.at_end()) {
        auto h = recs.next();
        if (!h) return h.error();
        if (h->type == RecEnd) {
            if (h->len != 0) return corrupt("non-empty end record", h->offset);
            if (!recs.at_end()) return corrupt("data after end record", recs.offset());
            return {};
        }
        if (h->type != RecContent) return corrupt("record " + type_name(h->type) + " in message", h->offset);
        if (auto r = recs.payload(*h, p); !r) return r;
        if (auto r = sink(p); !r) return r;
    }
    return corrupt("missing end record", *size);
}

Result<void> set_recipient_status(int fd, const Recipient& r, char status) {
    if (!valid_status(status)) return Error::perm("set recipient status: bad status value");
    auto size = file_size(fd);
    if (!size) return size.error();
    const uint64_t at = r.status_offset;
    const uint64_t need = RecHeaderSize + RcptFixedSize + r.address.size();
    // Check that an 'R' record for this address starts right before the
    // offset: a stale offset must not flip a byte of someone else's data.
    if (at < RecHeaderSize || r.address.empty() || r.address.size() > UINT16_MAX || at - RecHeaderSize > *size ||
        need > *size - (at - RecHeaderSize))
        return corrupt("no recipient record for status update", at);
    std::string rec(need, '\0');
    if (auto rd = pread_exact(fd, rec.data(), rec.size(), at - RecHeaderSize); !rd) return rd;
    const std::size_t alen = static_cast<std::size_t>(static_cast<unsigned char>(rec[7])) << 8 |
                             static_cast<unsigned char>(rec[8]);
    if (rec[0] != RecRecipient || get_u32(rec.data() + 1) < RcptFixedSize + alen || !valid_status(rec[5]) ||
        alen != r.address.size() || std::string_view(rec).substr(RecHeaderSize + RcptFixedSize) != r.address)
        return corrupt("no recipient record for status update", at);
    for (;;) {
        ssize_t n = ::pwrite(fd, &status, 1, static_cast<off_t>(at));
        if (n == 1) break;
        if (n < 0 && errno == EINTR) continue;
        return sys_error("write recipient status at offset", std::to_string(at), n < 0 ? errno : EIO);
    }
    if (::fdatasync(fd) != 0) return sys_error("fdatasync queue file", "fd " + std::to_string(fd), errno);
    return {};
}

}  // namespace postern::queue
