// smtpd/data.cpp - DATA/BDAT state machine and header scanning.
#include "smtpd/data.hpp"

#include "util/strings.hpp"

namespace postern::smtpd {

void DataReader::flag(const char* what) {
    if (!defect_) defect_ = what;
}

std::size_t DataReader::feed(std::string_view in, std::string& out) {
    std::size_t i = 0;
    const bool data = mode_ == Mode::Data;
    while (i < in.size() && !done_) {
        char c = in[i];
        switch (state_) {
            case State::LineStart:
                if (c == '.' && data) {
                    state_ = State::Dot;
                    ++i;
                    continue;
                }
                state_ = State::InLine;
                continue;  // same byte, as part of a line
            case State::InLine: {
                // Fast path: copy the run of ordinary bytes at once.
                std::size_t j = i;
                while (j < in.size() && in[j] != '\r' && in[j] != '\n' && in[j] != '\0') ++j;
                out.append(in.data() + i, j - i);
                i = j;
                if (i == in.size()) break;
                c = in[i++];
                if (c == '\r') {
                    state_ = State::Cr;
                } else if (c == '\n') {
                    // A bare LF ends the content line (stored as CRLF) but does
                    // not start an SMTP line: what follows is plain content, so
                    // <LF>.<CR><LF> can never end DATA (CVE-2023-51764) and a
                    // dot after it is kept. The defect makes the session refuse
                    // the message anyway.
                    flag("bare <LF>");
                    out += "\r\n";
                    state_ = State::InLine;
                } else {
                    flag("NUL character");
                    out += c;
                }
                continue;
            }
            case State::Cr:
                if (c == '\n') {
                    out += "\r\n";
                    ++i;
                    state_ = State::LineStart;
                } else {
                    flag("bare <CR>");
                    out += '\r';
                    state_ = State::InLine;  // reprocess c
                }
                continue;
            case State::Dot:
                if (c == '\r') {
                    state_ = State::DotCr;
                    ++i;
                } else {
                    // Dot-stuffing: the leading dot goes; the rest is the line.
                    if (c == '\n') flag("bare <LF>");
                    state_ = State::InLine;
                }
                continue;
            case State::DotCr:
                if (c == '\n') {
                    ++i;
                    done_ = true;
                } else {
                    flag("bare <CR>");
                    out += '\r';
                    state_ = State::InLine;
                }
                continue;
        }
    }
    return i;
}

void DataReader::finish_bdat() {
    if (state_ == State::Cr) {
        flag("bare <CR>");
        state_ = State::InLine;
    }
}

void HeaderScanner::feed(std::string_view content) {
    if (ended_) return;
    std::size_t room = limit_ > buf_.size() ? limit_ - buf_.size() : 0;
    buf_.append(content.substr(0, room));
    std::size_t end = buf_.compare(0, 2, "\r\n") == 0 ? 0 : buf_.find("\r\n\r\n");
    if (end != std::string::npos) {
        buf_.resize(end + 2);  // keep the last header's CRLF
        ended_ = true;
    } else if (buf_.size() >= limit_) {
        ended_ = true;  // Note: headers past the limit are not scanned (still stored).
    }
}

std::optional<std::string> HeaderScanner::value(std::string_view name) const {
    std::size_t pos = 0;
    while (pos < buf_.size()) {
        auto eol = buf_.find("\r\n", pos);
        if (eol == std::string::npos) eol = buf_.size();
        std::string_view line(buf_.data() + pos, eol - pos);
        auto colon = line.find(':');
        if (colon != std::string_view::npos && line[0] != ' ' && line[0] != '\t' &&
            util::iequals(util::trim(line.substr(0, colon)), name)) {
            std::string v(line.substr(colon + 1));
            // Unfold continuation lines.
            std::size_t next = eol + 2;
            while (next < buf_.size() && (buf_[next] == ' ' || buf_[next] == '\t')) {
                auto e2 = buf_.find("\r\n", next);
                if (e2 == std::string::npos) e2 = buf_.size();
                v += ' ';
                v += util::trim(std::string_view(buf_.data() + next, e2 - next));
                next = e2 + 2;
            }
            return std::string(util::trim(v));
        }
        pos = eol + 2;
    }
    return std::nullopt;
}

}  // namespace postern::smtpd
