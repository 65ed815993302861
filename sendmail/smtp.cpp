// sendmail/smtp.cpp - the SMTP subset behind sendmail -bs.
#include "sendmail/smtp.hpp"

#include <sysexits.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>

namespace postern::sendmail {

namespace {

constexpr std::size_t DataPiece = 64 * 1024;

// Lines from a descriptor, LF-terminated (a CR before the LF is removed);
// a line longer than the caller's limit comes in pieces.
class LineReader {
public:
    explicit LineReader(int fd) : fd_(fd) {}
    // 1: out holds a line or a piece (complete tells which); 0: end of input; -1: read error.
    int next(std::string& out, bool& complete, std::size_t max) {
        out.clear();
        for (;;) {
            std::size_t lf = buf_.find('\n', pos_);
            if (lf != std::string::npos && lf - pos_ <= max) {
                out.assign(buf_, pos_, lf - pos_);
                pos_ = lf + 1;
                if (!out.empty() && out.back() == '\r') out.pop_back();
                complete = true;
                return 1;
            }
            if (buf_.size() - pos_ > max || (eof_ && pos_ < buf_.size())) {
                std::size_t take = std::min(max, buf_.size() - pos_);
                // Keep a CR that may be the first half of CRLF for the next piece.
                if (take > 1 && buf_[pos_ + take - 1] == '\r' && !eof_) --take;
                out.assign(buf_, pos_, take);
                pos_ += take;
                complete = eof_ && pos_ == buf_.size();
                return 1;
            }
            if (eof_) return 0;
            buf_.erase(0, pos_);
            pos_ = 0;
            char tmp[16384];
            ssize_t n = ::read(fd_, tmp, sizeof tmp);
            if (n < 0) {
                if (errno == EINTR) continue;
                return -1;
            }
            if (n == 0) eof_ = true;
            buf_.append(tmp, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_;
    std::string buf_;
    std::size_t pos_ = 0;
    bool eof_ = false;
};

bool write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

// Splits "<path> PARAMS" (or a bare path). Returns false for an unterminated <.
bool split_path(std::string_view arg, std::string& path, std::string& params) {
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    std::size_t end;
    if (!arg.empty() && arg.front() == '<') {
        bool quoted = false;
        for (end = 1; end < arg.size(); ++end) {
            if (arg[end] == '\\') ++end;
            else if (arg[end] == '"') quoted = !quoted;
            else if (arg[end] == '>' && !quoted) break;
        }
        if (end >= arg.size()) return false;
        path = std::string(arg.substr(1, end - 1));
        ++end;
    } else {
        end = std::min(arg.find(' '), arg.size());
        path = std::string(arg.substr(0, end));
    }
    params = std::string(arg.substr(end));
    return true;
}

class Session {
public:
    Session(const Context& ctx, int in_fd, int out_fd) : ctx_(ctx), in_(in_fd), out_fd_(out_fd) {}

    int run() {
        std::string host = ctx_.params.myhostname.empty() ? "localhost" : ctx_.params.myhostname;
        if (!reply("220 " + host + " ESMTP Postern (sendmail -bs)")) return EX_IOERR;
        std::string line;
        bool complete = false;
        for (;;) {
            int r = in_.next(line, complete, SmtpLineLimit);
            if (r < 0) return EX_IOERR;
            if (r == 0) return EX_OK;
            if (!complete) {
                while ((r = in_.next(line, complete, SmtpLineLimit)) > 0 && !complete) {
                }
                if (!error("500 5.5.2 Error: line too long")) return errors_ > SmtpErrorLimit ? EX_PROTOCOL : EX_IOERR;
                continue;
            }
            int rc = command(line, host);
            if (rc >= 0) return rc;
        }
    }

private:
    bool reply(const std::string& text) { return write_all(out_fd_, text + "\r\n"); }
    bool error(const std::string& text) {
        if (++errors_ > SmtpErrorLimit) {
            reply("421 4.7.0 Error: too many errors");
            return false;
        }
        return reply(text);
    }
    void reset() {
        mail_ = false;
        sender_.clear();
        rcpts_.clear();
    }

    // -1 to go on, else the exit status.
    int command(const std::string& line, const std::string& host) {
        std::size_t sp = line.find(' ');
        std::string verb = upper(line.substr(0, sp));
        std::string arg = sp == std::string::npos ? std::string() : line.substr(sp + 1);
        bool ok = true;
        if (verb == "EHLO") {
            ok = reply("250-" + host + "\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8");
        } else if (verb == "HELO") {
            ok = reply("250 " + host);
        } else if (verb == "NOOP") {
            ok = reply("250 2.0.0 Ok");
        } else if (verb == "RSET") {
            reset();
            ok = reply("250 2.0.0 Ok");
        } else if (verb == "QUIT") {
            reply("221 2.0.0 Bye");
            return EX_OK;
        } else if (verb == "MAIL") {
            ok = mail(arg);
        } else if (verb == "RCPT") {
            ok = rcpt(arg);
        } else if (verb == "DATA") {
            return data();
        } else {
            ok = error("502 5.5.2 Error: command not recognized");
        }
        if (!ok) return errors_ > SmtpErrorLimit ? EX_PROTOCOL : EX_IOERR;
        return -1;
    }

    bool mail(const std::string& arg) {
        if (mail_) return error("503 5.5.1 Error: nested MAIL command");
        if (upper(arg.substr(0, 5)) != "FROM:") return error("501 5.5.4 Syntax: MAIL FROM:<address>");
        std::string path, params;
        if (!split_path(std::string_view(arg).substr(5), path, params)) return error("501 5.1.7 Bad sender address syntax");
        for (std::size_t pos = 0; pos < params.size();) {
            std::size_t end = std::min(params.find(' ', pos), params.size());
            std::string p = upper(params.substr(pos, end - pos));
            pos = end + 1;
            if (p.empty() || p == "SMTPUTF8" || p == "BODY=7BIT" || p == "BODY=8BITMIME" || p.starts_with("SIZE="))
                continue;
            return error("555 5.5.4 Unsupported option: " + p);
        }
        sender_.clear();
        if (!path.empty()) {
            if (auto f = parse_one_address(path, ctx_, sender_)) return error("501 5.1.7 Bad sender address syntax");
        }
        mail_ = true;
        return reply("250 2.1.0 Ok");
    }

    bool rcpt(const std::string& arg) {
        if (!mail_) return error("503 5.5.1 Error: need MAIL command");
        if (upper(arg.substr(0, 3)) != "TO:") return error("501 5.5.4 Syntax: RCPT TO:<address>");
        std::string path, params;
        if (!split_path(std::string_view(arg).substr(3), path, params) || path.empty())
            return error("501 5.1.3 Bad recipient address syntax");
        if (!params.empty() && params.find_first_not_of(' ') != std::string::npos)
            return error("555 5.5.4 Unsupported option");
        if (rcpts_.size() >= SmtpRecipientLimit) return reply("452 4.5.3 Error: too many recipients");
        std::string a;
        if (auto f = parse_one_address(path, ctx_, a)) return error("501 5.1.3 Bad recipient address syntax");
        rcpts_.push_back(std::move(a));
        return reply("250 2.1.5 Ok");
    }

    int data() {
        if (!mail_ || rcpts_.empty()) {
            if (!error("503 5.5.1 Error: need RCPT command")) return errors_ > SmtpErrorLimit ? EX_PROTOCOL : EX_IOERR;
            return -1;
        }
        Drop::Params p;
        p.sender_given = true;
        p.sender = sender_;
        p.rcpts = rcpts_;
        p.ignore_dots = true;
        p.full_name = ctx_.full_name;
        Drop drop(ctx_, std::move(p));
        std::optional<Failure> failure = drop.create();
        if (!reply("354 End data with <CR><LF>.<CR><LF>")) return EX_IOERR;
        std::string piece;
        bool complete = false, bol = true;
        for (;;) {
            int r = in_.next(piece, complete, DataPiece);
            if (r < 0) return EX_IOERR;
            if (r == 0) return EX_OK;  // end of input inside DATA: nothing queued (drop's destructor removes it)
            if (bol && complete && piece == ".") break;
            std::string_view v = piece;
            if (bol && !v.empty() && v.front() == '.') v.remove_prefix(1);
            if (!failure) failure = drop.feed(v);
            if (!failure && complete) failure = drop.feed("\n");
            bol = complete;
        }
        std::string id;
        if (!failure) failure = drop.finish();
        if (!failure) failure = drop.commit(id);
        reset();
        bool ok;
        if (!failure) {
            ok = reply("250 2.0.0 Ok: queued as " + id);
        } else {
            std::string code = failure->code == EX_DATAERR ? "554 5.6.0 " : "451 4.3.0 ";
            ok = reply(code + "Error: " + failure->text);
        }
        return ok ? -1 : EX_IOERR;
    }

    const Context& ctx_;
    LineReader in_;
    int out_fd_;
    int errors_ = 0;
    bool mail_ = false;
    std::string sender_;
    std::vector<std::string> rcpts_;
};

}  // namespace

int run_smtp(const Context& ctx, int in_fd, int out_fd) { return Session(ctx, in_fd, out_fd).run(); }

}  // namespace postern::sendmail
