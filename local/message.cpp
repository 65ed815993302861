// local/message.cpp - streaming the queued message with LF line ends; Delivered-To scan.
#include "local/message.hpp"

#include <sys/stat.h>

#include "queue/queue.hpp"
#include "util/strings.hpp"

namespace postern::local {
namespace {

constexpr std::string_view From = "From ";
constexpr std::size_t MaxFieldLength = 4096;  // longer Delivered-To values are not addresses

// A sink error that only means "enough": the header block has been seen.
constexpr std::string_view Enough = "local: header scan done";

}  // namespace

void LfWriter::put(char c, std::string& out) {
    if (quote_ && line_start_) {
        head_ += c;
        const bool maybe = From.substr(0, head_.size()) == head_;
        if (c != '\n' && maybe && head_.size() < From.size()) return;
        if (head_ == From) out += '>';
        out += head_;
        head_.clear();
        line_start_ = c == '\n';
        return;
    }
    out += c;
    line_start_ = c == '\n';
}

void LfWriter::feed(std::string_view in, std::string& out) {
    out.reserve(out.size() + in.size() + 8);
    if (!quote_) {
        // Maildir, files, commands: only CR LF -> LF, so copy the runs
        // between CRs whole (a 100 KiB message byte by byte was a good part
        // of local's CPU).
        while (!in.empty()) {
            if (cr_) {
                cr_ = false;
                if (in.front() == '\n') {
                    out += '\n';
                    line_start_ = true;
                    in.remove_prefix(1);
                    continue;
                }
                out += '\r';
                line_start_ = false;
            }
            const std::size_t cr = in.find('\r');
            const std::size_t n = cr == std::string_view::npos ? in.size() : cr;
            if (n > 0) {
                out.append(in.data(), n);
                line_start_ = in[n - 1] == '\n';
            }
            if (cr == std::string_view::npos) break;
            cr_ = true;
            in.remove_prefix(cr + 1);
        }
        return;
    }
    for (char c : in) {
        if (cr_) {
            cr_ = false;
            if (c == '\n') {
                put('\n', out);
                continue;
            }
            put('\r', out);
        }
        if (c == '\r') {
            cr_ = true;
            continue;
        }
        put(c, out);
    }
}

void LfWriter::finish(std::string& out) {
    if (cr_) {
        cr_ = false;
        put('\r', out);
    }
    if (!head_.empty()) {
        out += head_;
        head_.clear();
        line_start_ = false;
    }
}

bool HeaderScanner::feed(std::string_view chunk) {
    for (char c : chunk) {
        if (done_) return false;
        if (++seen_ > MaxHeaderScan) {
            done_ = true;
            return false;
        }
        if (at_start_) {
            at_start_ = false;
            if (c == '\r' || c == '\n') {
                // An empty line: the header block ends here.
                line_done();
                done_ = true;
                return false;
            }
            if (c != ' ' && c != '\t') line_done();  // not a continuation: the field above is complete
        }
        if (c == '\n') {
            at_start_ = true;
            continue;
        }
        if (c != '\r' && line_.size() < MaxFieldLength) line_ += c;
    }
    return !done_;
}

void HeaderScanner::line_done() {
    constexpr std::string_view Name = "delivered-to:";
    if (line_.size() > Name.size() && util::starts_with_icase(line_, Name) && found_.size() < MaxDeliveredTo) {
        std::string_view v = util::trim(std::string_view(line_).substr(Name.size()));
        if (v.size() >= 2 && v.front() == '<' && v.back() == '>') v = v.substr(1, v.size() - 2);
        if (!v.empty()) found_.insert(util::to_lower(v));
    }
    line_.clear();
}

std::string delivery_headers(std::string_view sender, std::string_view recipient) {
    return "Return-Path: <" + std::string(sender) + ">\nDelivered-To: " + util::to_lower(recipient) + "\n";
}

Result<Message> Message::open(int fd, std::uint64_t content_offset) {
    Message m;
    m.fd_ = fd;
    m.offset_ = content_offset;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return sys_error("fstat", "queue file", errno);
    m.size_ = static_cast<std::uint64_t>(st.st_size) > content_offset ? st.st_size - content_offset : 0;
    HeaderScanner scan;
    auto r = queue::read_content(fd, content_offset, [&](std::string_view chunk) -> Result<void> {
        if (!scan.feed(chunk)) return Error::temp(std::string(Enough));
        return {};
    });
    if (!r && r.error().text != Enough) return r.error();
    m.delivered_ = scan.delivered_to();
    return m;
}

bool Message::delivered_to(std::string_view address) const { return delivered_.count(util::to_lower(address)) > 0; }

Result<void> Message::stream_raw(const Sink& sink) const { return queue::read_content(fd_, offset_, sink); }

Result<void> Message::stream_lf(std::string_view prefix, bool quote_from, const Sink& sink) const {
    LfWriter w(quote_from);
    std::string out;
    w.feed(prefix, out);
    auto r = queue::read_content(fd_, offset_, [&](std::string_view chunk) -> Result<void> {
        w.feed(chunk, out);
        auto s = sink(out);
        out.clear();
        return s;
    });
    if (!r) return r;
    w.finish(out);
    if (out.empty()) return {};
    return sink(out);
}

}  // namespace postern::local
