// sendmail/message.cpp - line-ending repair, header completion and -t extraction for sendmail.
#include "sendmail/message.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>

#include "util/strings.hpp"

namespace postern::sendmail {

namespace {

// "Name:" or obsolete "Name :" (RFC 5322 4.5.2). Returns the name length, 0 if not a header line.
std::size_t header_name_length(std::string_view line) {
    std::size_t i = 0;
    while (i < line.size() && line[i] != ':' && line[i] > 32 && line[i] < 127) ++i;
    std::size_t name = i;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (name == 0 || i >= line.size() || line[i] != ':') return 0;
    return name;
}

bool has_8bit(std::string_view s) {
    for (unsigned char c : s)
        if (c >= 0x80) return true;
    return false;
}

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

// One physical line (no CRLF) folded into pieces of at most max_line octets,
// or nullopt when that cannot be done without changing the line. A fold
// goes before a white-space byte at index >= min_fold, with a non-white
// byte both before it (in the same piece) and somewhere after it, so no
// piece is white space only and unfolding restores the line.
std::optional<std::string> fold_line(std::string_view line, std::size_t min_fold, std::size_t max_line) {
    const std::size_t last = line.find_last_not_of(" \t");
    std::string out;
    std::size_t s = 0;
    while (line.size() - s > max_line) {
        const std::size_t first = line.find_first_not_of(" \t", s);
        if (first == std::string_view::npos || last == std::string_view::npos || last == 0) return std::nullopt;
        const std::size_t lo = std::max(min_fold, first + 1);
        std::size_t p = std::min(s + max_line, last - 1);
        while (p >= lo && p > s && !is_wsp(line[p])) --p;
        if (p < lo || p <= s || !is_wsp(line[p])) return std::nullopt;
        out.append(line.substr(s, p - s));
        out += "\r\n";
        s = p;
    }
    out.append(line.substr(s));
    return out;
}

}  // namespace

std::string fold_header(std::string_view field, std::size_t max_line, std::size_t& kept_long_out) {
    std::string out;
    std::size_t pos = 0;
    bool first = true;
    while (pos <= field.size()) {
        std::size_t eol = field.find("\r\n", pos);
        if (eol == std::string_view::npos) eol = field.size();
        std::string_view line = field.substr(pos, eol - pos);
        if (!first) out += "\r\n";
        if (line.size() <= max_line) {
            out.append(line);
        } else {
            // Not before the colon: the name (and an obsolete "Name :") stays whole.
            std::size_t colon = first ? line.find(':') : 0;
            auto folded = fold_line(line, colon == std::string_view::npos ? line.size() : colon + 1, max_line);
            if (folded) {
                out += *folded;
            } else {
                out.append(line);
                ++kept_long_out;
            }
        }
        first = false;
        pos = eol + 2;
    }
    return out;
}

Result<void> MessageBuilder::feed(std::string_view bytes) {
    for (char c : bytes) {
        if (ended_ || !error_.empty()) break;
        if (c == '\n') {
            end_line();
            continue;
        }
        if (pending_cr_) {
            pending_cr_ = false;
            put('\r');  // a CR not followed by LF is kept as it is
        }
        if (c == '\r') {
            pending_cr_ = true;
            continue;
        }
        put(c);
    }
    if (!error_.empty()) return Error::perm(error_);
    return {};
}

Result<void> MessageBuilder::finish() {
    if (!ended_ && error_.empty()) {
        if (pending_cr_) {
            pending_cr_ = false;
            put('\r');
        }
        if (in_header_) {
            if (!line_.empty()) end_line();
            if (in_header_ && error_.empty() && !ended_) complete_headers();
        } else if (dot_held_ || !bol_) {
            // The last line had no line ending: add one. A "." there is text
            // (only a "." line ends the input).
            if (dot_held_) {
                out_ += '.';
                dot_held_ = false;
                bol_ = false;
            }
            end_line();
        }
    }
    if (!error_.empty()) return Error::perm(error_);
    return {};
}

void MessageBuilder::put(char c) {
    if (in_header_) {
        if (header_bytes_ + line_.size() >= s_.max_header_bytes) {
            error_ = "message header exceeds " + std::to_string(s_.max_header_bytes) + " bytes";
            return;
        }
        line_ += c;
        return;
    }
    if (bol_ && c == '.' && !s_.ignore_dots && !dot_held_) {
        dot_held_ = true;  // maybe the lone "." that ends the input
        return;
    }
    if (dot_held_) {
        out_ += '.';
        dot_held_ = false;
    }
    out_ += c;
    bol_ = false;
}

void MessageBuilder::end_line() {
    pending_cr_ = false;  // the CR of a CRLF
    if (in_header_) {
        header_line();
        line_.clear();
        return;
    }
    body_line_end();
}

void MessageBuilder::body_line_end() {
    if (dot_held_ && bol_) {
        dot_held_ = false;
        ended_ = true;
        return;
    }
    out_ += "\r\n";
    bol_ = true;
}

void MessageBuilder::header_line() {
    bool first = std::exchange(first_line_, false);
    if (!s_.ignore_dots && line_ == ".") {
        complete_headers();
        ended_ = true;
        return;
    }
    if (first && line_.starts_with("From ")) return;  // mbox separator line: not part of the message
    if (line_.empty()) {
        complete_headers();
        out_ += "\r\n";
        return;
    }
    if ((line_[0] == ' ' || line_[0] == '\t') && !headers_.empty()) {
        headers_.back().raw += "\r\n";
        headers_.back().raw += line_;
        header_bytes_ += line_.size() + 2;
        return;
    }
    if (std::size_t n = header_name_length(line_); n > 0) {
        headers_.push_back({line_, util::to_lower(std::string_view(line_).substr(0, n))});
        header_bytes_ += line_.size() + 2;
        return;
    }
    // Not a header line: the body starts here, after the blank line RFC 5322 needs.
    complete_headers();
    out_ += "\r\n";
    out_ += line_;
    out_ += "\r\n";
}

void MessageBuilder::complete_headers() {
    in_header_ = false;
    bool have_from = false, have_date = false, have_msgid = false;
    for (const auto& h : headers_) {
        if (h.name == "from") have_from = true;
        if (h.name == "date") have_date = true;
        if (h.name == "message-id") have_msgid = true;
        if (s_.extract && (h.name == "to" || h.name == "cc" || h.name == "bcc")) {
            auto list = address::parse_list(std::string_view(h.raw).substr(h.raw.find(':') + 1));
            if (!list) {
                error_ = "bad address in " + std::string(h.raw.substr(0, h.raw.find(':'))) +
                         " header: " + list.error().text;
                return;
            }
            for (auto& a : *list) rcpts_.push_back(std::move(a));
        }
    }
    for (const auto& h : headers_) {
        // Note: Bcc goes even without -t; left in, it would show every
        // recipient the blind copies.
        if (h.name == "bcc") continue;
        out_ += fold_header(h.raw, MaxHeaderLine, long_lines_);
        out_ += "\r\n";
        if (has_8bit(h.raw)) header_8bit_ = true;
    }
    auto add = [&](const char* name, const std::string& value) {
        if (value.empty()) return;
        out_ += fold_header(std::string(name) + ": " + value, MaxHeaderLine, long_lines_);
        out_ += "\r\n";
        if (has_8bit(value)) header_8bit_ = true;
    };
    if (!have_from) add("From", s_.from);
    if (!have_date) add("Date", s_.date);
    if (!have_msgid) add("Message-ID", s_.message_id);
    headers_.clear();
    headers_.shrink_to_fit();
}

std::string format_date(const std::tm& tm, long gmtoff) {
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    long off = gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", days[(tm.tm_wday % 7 + 7) % 7],
                  tm.tm_mday, months[(tm.tm_mon % 12 + 12) % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                  tm.tm_sec, sign, (off / 60) % 100, off % 60);
    return buf;
}

std::string format_from(std::string_view name, std::string_view addr) {
    if (name.empty()) return std::string(addr);
    bool plain = true;
    for (unsigned char c : name) {
        if (c == ' ' || c >= 0x80 || std::isalnum(c)) continue;
        if (std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) != std::string_view::npos) continue;
        plain = false;
    }
    if (name.front() == ' ' || name.back() == ' ') plain = false;
    std::string out;
    if (plain) {
        out = name;
    } else {
        out = "\"";
        for (char c : name) {
            if (c == '\r' || c == '\n') continue;  // never let a name start a new header line
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
    out += " <";
    out += addr;
    out += '>';
    return out;
}

std::string gecos_name(std::string_view gecos, std::string_view login) {
    gecos = gecos.substr(0, gecos.find(','));
    std::string out;
    for (char c : gecos) {
        if (c == '&') {
            std::string l(login);
            if (!l.empty()) l[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(l[0])));
            out += l;
        } else if (c != '\r' && c != '\n') {
            out += c;
        }
    }
    return out;
}

}  // namespace postern::sendmail
