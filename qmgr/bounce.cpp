// qmgr/bounce.cpp - composes RFC 3464 delivery status notifications, streaming the original from its queue file.
#include "qmgr/bounce.hpp"

#include <algorithm>
#include <ctime>

#include "queue/queue.hpp"

namespace postern::qmgr {
namespace {

using Sink = std::function<Result<void>(std::string_view)>;

constexpr std::size_t MaxLine = 998;     // RFC 5322 2.1.1, without the CRLF
constexpr std::size_t FoldWidth = 78;    // where fields and text are folded
constexpr std::size_t MaxBoundary = 70;  // RFC 2046 5.1.1
constexpr int BoundaryTries = 10;

bool is_ascii(std::string_view s) noexcept {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

// Field and text values from clients and remote servers: control bytes
// (CR and LF above all) become '?', so a value cannot start a new field or line.
std::string clean(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) c = '?';
    }
    return out;
}

std::string rfc5322_date(int64_t us) {
    std::time_t t = static_cast<std::time_t>(us / 1000000);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
    return buf;
}

// Appends text to out, breaking lines before a word that would pass
// FoldWidth; each new line starts with cont. It breaks only at spaces of the
// text, and with cont " " (header fields) that space becomes the leading white
// space of the next line, so unfolding gives the text back. A word too long
// for any line (more than MaxLine bytes) is split hard.
void fold(std::string& out, std::size_t col, std::string_view text, std::string_view cont) {
    bool first = true;
    for (;;) {
        auto sp = text.find(' ');
        std::string_view word = text.substr(0, sp);
        std::string_view sep = first ? "" : " ";
        if (!first && col + sep.size() + word.size() > FoldWidth) {
            out.append("\r\n").append(cont);
            col = cont.size();
            sep = "";
        }
        while (col + sep.size() + word.size() > MaxLine) {
            std::size_t n = MaxLine - std::min(MaxLine, col + sep.size());
            out.append(sep).append(word.substr(0, n)).append("\r\n").append(cont);
            word.remove_prefix(n);
            col = cont.size();
            sep = "";
        }
        out.append(sep).append(word);
        col += sep.size() + word.size();
        first = false;
        if (sp == std::string_view::npos) break;
        text.remove_prefix(sp + 1);
    }
    out.append("\r\n");
}

// "Name: value" with RFC 5322 folding; value is cleaned.
void field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name).append(":");
    std::string v = clean(value);
    out.append(" ");
    fold(out, name.size() + 2, v, " ");
}

// A line of the human-readable text, folded with indent.
void text_line(std::string& out, std::string_view text, std::string_view indent = "    ") {
    fold(out, 0, clean(text), indent);
}

// Feeds a stream of content chunks and passes on only the header section:
// everything before the first empty line (CRLF or bare LF). A CR at the end of
// a chunk that may start the empty line is held back until the next chunk.
class HeaderCut {
public:
    bool done() const noexcept { return done_; }

    Result<void> feed(std::string_view chunk, const Sink& emit) {
        if (done_) return {};
        if (held_cr_) {
            held_cr_ = false;
            if (!chunk.empty() && chunk[0] == '\n') {
                done_ = true;
                return {};
            }
            if (auto r = emit("\r"); !r) return r;
            line_start_ = false;
        }
        for (std::size_t i = 0; i < chunk.size(); ++i) {
            char c = chunk[i];
            if (line_start_ && (c == '\n' || c == '\r')) {
                if (c == '\n' || (i + 1 < chunk.size() && chunk[i + 1] == '\n')) {
                    done_ = true;
                    return i > 0 ? emit(chunk.substr(0, i)) : Result<void>{};
                }
                if (i + 1 == chunk.size()) {
                    held_cr_ = true;
                    return i > 0 ? emit(chunk.substr(0, i)) : Result<void>{};
                }
            }
            line_start_ = c == '\n';
        }
        return chunk.empty() ? Result<void>{} : emit(chunk);
    }

private:
    bool line_start_ = true;
    bool held_cr_ = false;
    bool done_ = false;
};

// The part of the original that is returned, chunk by chunk: all of it, or
// its header section (then reading stops at the empty line). A header
// section longer than cap is cut there, at the last line end before it when
// the last piece has one. A sink may stop the walk early by setting stop.
Result<void> walk(int fd, uint64_t off, bool headers_only, std::size_t cap, bool& stop, const Sink& sink) {
    stop = false;
    HeaderCut cut;
    std::size_t sent = 0;
    bool capped = false;
    const Sink capped_sink = [&](std::string_view piece) -> Result<void> {
        if (capped) return {};
        if (piece.size() > cap - sent) {
            capped = true;
            auto nl = piece.substr(0, cap - sent).rfind('\n');
            if (nl == std::string_view::npos) return {};
            piece = piece.substr(0, nl + 1);
        }
        sent += piece.size();
        return sink(piece);
    };
    auto r = queue::read_content(fd, off, [&](std::string_view chunk) -> Result<void> {
        if (!headers_only) return sink(chunk);
        if (auto e = cut.feed(chunk, capped_sink); !e) return e;
        if (cut.done() || capped) stop = true;
        return stop ? Error::temp("stop") : Result<void>{};
    });
    if (!r && !stop) return r;
    return {};
}

// What one pass over the returned part found.
struct Scan {
    bool too_big = false;         // more than the limit (whole-message pass only)
    bool unfit = false;           // NUL or an over-long line
    bool found = false;           // the boundary occurs
    bool eight_bit = false;
    bool header_eight_bit = false;
};

Result<Scan> scan(int fd, uint64_t off, bool headers_only, std::size_t limit, std::string_view boundary) {
    Scan s;
    std::string carry;  // the last boundary.size()-1 bytes seen, for matches across chunks
    std::size_t size = 0, line_len = 0;
    HeaderCut cut;
    bool stop = false;
    const Sink header_check = [&](std::string_view h) -> Result<void> {
        if (!is_ascii(h)) s.header_eight_bit = true;
        return {};
    };
    auto r = walk(fd, off, headers_only, limit, stop, [&](std::string_view chunk) -> Result<void> {
        size += chunk.size();
        if (!headers_only && size > limit) {
            s.too_big = true;
            stop = true;
            return Error::temp("stop");
        }
        if (!headers_only) (void)cut.feed(chunk, header_check);  // header_check never fails
        else if (!is_ascii(chunk)) s.header_eight_bit = true;
        for (unsigned char c : chunk) {
            if (c >= 0x80) s.eight_bit = true;
            if (c == 0) s.unfit = true;
            if (c == '\n') {
                line_len = 0;
            } else if (++line_len > MaxLine + 1) {  // +1: the CR of CRLF
                s.unfit = true;
            }
        }
        if (!s.found) {
            std::string joint = carry;
            joint.append(chunk.substr(0, boundary.size() - 1));
            if (joint.find(boundary) != std::string::npos || chunk.find(boundary) != std::string_view::npos)
                s.found = true;
            carry.append(chunk.substr(chunk.size() > boundary.size() ? chunk.size() - boundary.size() : 0));
            if (carry.size() >= boundary.size()) carry.erase(0, carry.size() - (boundary.size() - 1));
        }
        return {};
    });
    if (!r) return r.error();
    return s;
}

bool is_bchar(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("'()+_,-./:=?").find(c) != std::string_view::npos;
}

// "=_" cannot start a line of quoted-printable or occur in base64, so encoded
// parts never hold it; the queue ID and the time make it unique to this
// notification, and scan() checks the content anyway.
std::string make_boundary(const DsnInput& in, int64_t now_us, int attempt) {
    std::string b = "=_" + in.queue_id + "." + std::to_string(now_us);
    if (attempt > 0) b += "." + std::to_string(attempt);
    b += "/";
    for (char c : in.myhostname)
        if (is_bchar(c)) b += c;
    if (b.size() > MaxBoundary) b.resize(MaxBoundary);
    return b;
}

// Whether text that goes into parts 1 and 2 holds the boundary (our own
// words never do: they have no "=_").
bool inputs_hold(const DsnInput& in, std::string_view boundary) {
    auto has = [&](const std::string& v) { return v.find(boundary) != std::string::npos; };
    if (has(in.to) || has(in.original_sender) || has(in.envid) || has(in.delay_text)) return true;
    for (const auto& r : in.recipients)
        if (has(r.address) || has(r.orcpt) || has(r.reason) || has(r.diagnostic) || has(r.remote_mta)) return true;
    return false;
}

bool recipients_ascii(const DsnInput& in) {
    for (const auto& r : in.recipients)
        if (!is_ascii(r.address) || !is_ascii(r.orcpt)) return false;
    return true;
}

bool text_ascii(const DsnInput& in) {
    for (const auto& r : in.recipients)
        if (!is_ascii(r.address) || !is_ascii(r.reason)) return false;
    return is_ascii(in.delay_text);
}

// "5.1.1" shape, else the kind's generic code.
std::string status_code(std::string_view dsn, DsnKind kind) {
    bool ok = dsn.size() >= 5 && dsn.size() <= 9 && (dsn[0] == '2' || dsn[0] == '4' || dsn[0] == '5') && dsn[1] == '.';
    int dots = 0;
    for (std::size_t i = 1; ok && i < dsn.size(); ++i) {
        if (dsn[i] == '.') ok = dsn[i - 1] != '.' && ++dots <= 2;
        else ok = dsn[i] >= '0' && dsn[i] <= '9';
    }
    if (ok && dots == 2 && dsn.back() != '.') return std::string(dsn);
    return kind == DsnKind::Failure ? "5.0.0" : kind == DsnKind::Delay ? "4.0.0" : "2.0.0";
}

// "mx.example[192.0.2.1]:25" (a delivery agent's relay) -> "mx.example";
// "[192.0.2.1]:25" -> "192.0.2.1"; a plain name stays as it is.
std::string remote_host(std::string_view relay) {
    auto open = relay.find('[');
    if (open == std::string_view::npos) return std::string(relay);
    if (open > 0) return std::string(relay.substr(0, open));
    auto close = relay.find(']', open);
    return std::string(relay.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1));
}

std::string address_field(std::string_view addr) {
    return (is_ascii(addr) ? "rfc822; " : "utf-8; ") + std::string(addr);
}

void write_headers(std::string& o, const DsnInput& in, const DsnPlan& plan, int64_t now_us) {
    const char* subject = in.kind == DsnKind::Failure ? "Undelivered Mail Returned to Sender"
                          : in.kind == DsnKind::Delay ? "Delayed Mail (still being retried)"
                                                      : "Successful Mail Delivery Report";
    field(o, "From", "MAILER-DAEMON@" + in.myhostname + " (Mail Delivery System)");
    field(o, "To", "<" + in.to + ">");
    field(o, "Subject", subject);
    field(o, "Date", rfc5322_date(now_us));
    field(o, "Message-ID", "<" + std::to_string(now_us) + "." + in.queue_id + "@" + in.myhostname + ">");
    field(o, "Auto-Submitted", "auto-replied");
    field(o, "MIME-Version", "1.0");
    o += "Content-Type: multipart/report; report-type=";
    o += recipients_ascii(in) ? "delivery-status;" : "global-delivery-status;";
    o += "\r\n\tboundary=\"" + plan.boundary + "\"\r\n";
    if (plan.eight_bit) o += "Content-Transfer-Encoding: 8bit\r\n";
    o += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";
}

void write_notification(std::string& o, const DsnInput& in, const DsnPlan& plan) {
    bool ascii = text_ascii(in);
    o += "--" + plan.boundary + "\r\n";
    o += "Content-Description: Notification\r\n";
    o += ascii ? "Content-Type: text/plain; charset=us-ascii\r\n" : "Content-Type: text/plain; charset=utf-8\r\n";
    if (!ascii) o += "Content-Transfer-Encoding: 8bit\r\n";
    o += "\r\n";
    text_line(o, "This is the mail system at host " + in.myhostname + ".");
    o += "\r\n";
    switch (in.kind) {
    case DsnKind::Failure:
        text_line(o, "I'm sorry to have to inform you that your message could not be delivered to one or more "
                     "recipients. The reasons are listed below.",
                  "");
        o += "\r\n";
        text_line(o, plan.headers_only ? "The headers of your message are attached." : "Your message is attached.",
                  "");
        o += "\r\n";
        text_line(o, "If you need help, write to postmaster and include this report; you may leave out the text "
                     "of your own message.",
                  "");
        break;
    case DsnKind::Delay:
        text_line(o, "This is a warning only. You do not need to send your message again.", "");
        o += "\r\n";
        text_line(o,
                  "Your message could not be delivered yet to the recipients below" +
                      (in.delay_text.empty() ? std::string(".") : " after " + in.delay_text + ".") +
                      " The mail system will keep trying" +
                      (in.retry_until_us > 0 ? " until " + rfc5322_date(in.retry_until_us) + "." : "."),
                  "");
        break;
    case DsnKind::Success:
        text_line(o, "Your message was delivered to the recipients below, as you asked with the NOTIFY=SUCCESS "
                     "delivery status notification option. Where the report says \"relayed\", it was passed on "
                     "to a mail system that sends no further notifications.",
                  "");
        break;
    }
    o += "\r\n";
    text_line(o, "    The " + (in.mail_name.empty() ? std::string("Postern") : in.mail_name) + " program", "");
    for (const auto& r : in.recipients) {
        o += "\r\n";
        text_line(o, "<" + r.address + ">: " + (r.reason.empty() ? "status " + status_code(r.dsn, in.kind) : r.reason));
    }
}

void write_report(std::string& o, const DsnInput& in, const DsnPlan& plan, int64_t now_us) {
    bool ascii = recipients_ascii(in);
    o += "\r\n--" + plan.boundary + "\r\n";
    o += "Content-Description: Delivery report\r\n";
    o += ascii ? "Content-Type: message/delivery-status\r\n" : "Content-Type: message/global-delivery-status\r\n";
    if (!ascii) o += "Content-Transfer-Encoding: 8bit\r\n";
    o += "\r\n";
    // Field order follows the grammar of RFC 3464 2.2 and 2.3.
    if (!in.envid.empty()) field(o, "Original-Envelope-Id", in.envid);
    field(o, "Reporting-MTA", "dns; " + in.myhostname);
    field(o, "Arrival-Date", rfc5322_date(in.arrival_us));
    field(o, "X-Postern-Queue-ID", in.queue_id);
    field(o, "X-Postern-Sender", address_field(in.original_sender));
    const char* action = in.kind == DsnKind::Failure ? "failed" : in.kind == DsnKind::Delay ? "delayed" : "delivered";
    for (const auto& r : in.recipients) {
        o += "\r\n";
        if (!r.orcpt.empty()) {
            // Stored "type;address" (xtext already decoded by smtpd).
            auto semi = r.orcpt.find(';');
            std::string_view type = semi == std::string::npos ? "rfc822" : std::string_view(r.orcpt).substr(0, semi);
            std::string_view addr = semi == std::string::npos ? std::string_view(r.orcpt)
                                                              : std::string_view(r.orcpt).substr(semi + 1);
            while (!addr.empty() && addr.front() == ' ') addr.remove_prefix(1);
            field(o, "Original-Recipient", std::string(type) + "; " + std::string(addr));
        }
        field(o, "Final-Recipient", address_field(r.address));
        field(o, "Action", in.kind == DsnKind::Success && r.relayed ? "relayed" : action);
        field(o, "Status", status_code(r.dsn, in.kind));
        if (auto mta = remote_host(r.remote_mta); !mta.empty()) field(o, "Remote-MTA", "dns; " + mta);
        if (!r.diagnostic.empty())
            field(o, "Diagnostic-Code",
                  r.diagnostic.find(';') != std::string::npos ? r.diagnostic : "X-Postern; " + r.diagnostic);
        if (in.kind != DsnKind::Success) field(o, "Last-Attempt-Date", rfc5322_date(now_us));
        if (in.kind == DsnKind::Delay && in.retry_until_us > 0)
            field(o, "Will-Retry-Until", rfc5322_date(in.retry_until_us));
    }
}

}  // namespace

Result<DsnPlan> plan_dsn(const DsnInput& in, int queue_fd, uint64_t content_offset, int64_t now_us) {
    POSTERN_ASSERT(!in.recipients.empty());
    POSTERN_ASSERT(!in.to.empty());
    DsnPlan plan;
    plan.headers_only = in.kind != DsnKind::Failure || in.ret == "HDRS";
    Scan s;
    for (int attempt = 0;; ++attempt) {
        if (attempt == BoundaryTries) return Error::temp("bounce " + in.queue_id + ": cannot find a MIME boundary");
        plan.boundary = make_boundary(in, now_us, attempt);
        auto r = scan(queue_fd, content_offset, plan.headers_only, in.bounce_size_limit, plan.boundary);
        if (r && !plan.headers_only && (r->too_big || r->unfit)) {
            plan.headers_only = true;  // for good; this boundary is checked against the headers
            r = scan(queue_fd, content_offset, true, in.bounce_size_limit, plan.boundary);
        }
        if (!r) return r.error();
        s = *r;
        if (!s.found && !inputs_hold(in, plan.boundary)) break;
    }
    plan.returned_8bit = s.eight_bit;
    plan.returned_global = s.header_eight_bit;
    plan.utf8 = !is_ascii(in.to) || !recipients_ascii(in) || s.header_eight_bit;
    plan.eight_bit = s.eight_bit || plan.utf8 || !text_ascii(in);
    return plan;
}

Result<void> compose_dsn(const DsnInput& in, const DsnPlan& plan, int queue_fd, uint64_t content_offset,
                         int64_t now_us, const Sink& out) {
    POSTERN_ASSERT(!in.recipients.empty());
    POSTERN_ASSERT(!in.to.empty());
    std::string o;
    write_headers(o, in, plan, now_us);
    write_notification(o, in, plan);
    write_report(o, in, plan, now_us);

    // Part 3: the original, or its header section, as stored.
    const char* what = in.kind == DsnKind::Failure  ? "Undelivered Message"
                       : in.kind == DsnKind::Delay ? "Delayed Message"
                                                   : "Delivered Message";
    o += "\r\n--" + plan.boundary + "\r\n";
    o += "Content-Description: " + std::string(what) + (plan.headers_only ? " Headers\r\n" : "\r\n");
    if (plan.headers_only)
        o += plan.returned_global ? "Content-Type: text/global-headers\r\n" : "Content-Type: text/rfc822-headers\r\n";
    else
        o += plan.returned_global ? "Content-Type: message/global\r\n" : "Content-Type: message/rfc822\r\n";
    if (plan.returned_8bit) o += "Content-Transfer-Encoding: 8bit\r\n";
    o += "\r\n";
    if (auto r = out(o); !r) return r;

    char last = '\n';
    bool any = false, stop = false;
    auto r = walk(queue_fd, content_offset, plan.headers_only, in.bounce_size_limit, stop,
                  [&](std::string_view chunk) -> Result<void> {
        if (chunk.empty()) return {};
        any = true;
        last = chunk.back();
        return out(chunk);
    });
    if (!r) return r;
    std::string tail = (any && last != '\n') ? "\r\n" : "";
    tail += "\r\n--" + plan.boundary + "--\r\n";
    return out(tail);
}

Result<void> compose_dsn(const DsnInput& in, int queue_fd, uint64_t content_offset, int64_t now_us, const Sink& out) {
    auto plan = plan_dsn(in, queue_fd, content_offset, now_us);
    if (!plan) return plan.error();
    return compose_dsn(in, *plan, queue_fd, content_offset, now_us, out);
}

}  // namespace postern::qmgr
