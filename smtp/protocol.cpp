// smtp/protocol.cpp - the SMTP client side of one session (see protocol.hpp).
#include "smtp/protocol.hpp"

#include <deque>
#include <exception>
#include <string.h>  // explicit_bzero

#include "auth/sasl.hpp"
#include "queue/queue.hpp"
#include "util/strings.hpp"

namespace postern::smtp {
namespace {

// Message content goes out while less than this waits in the glue's output
// buffer; pump() continues once the socket has taken some of it.
constexpr std::size_t HighWater = 256 * 1024;
// RFC 3461: at most 100 characters of ENVID, 500 of ORCPT (xtext included).
constexpr std::size_t MaxEnvid = 100, MaxOrcpt = 500;
// Bounds on what parse_ehlo keeps of an AUTH line.
constexpr std::size_t MaxMechanisms = 32, MaxMechanismName = 40;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string to_upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}

// The length of an RFC 3463 code "c.sss.ddd" of class cls at the start of
// text (followed by a space or the end), or 0 when there is none.
std::size_t enhanced_length(std::string_view text, char cls) {
    if (cls != '2' && cls != '4' && cls != '5') return 0;
    if (text.size() < 5 || text[0] != cls || text[1] != '.') return 0;
    std::size_t i = 2;
    for (int part = 0; part < 2; ++part) {
        std::size_t start = i;
        while (i < text.size() && is_digit(text[i]) && i - start < 4) ++i;
        if (i == start || i - start > 3) return 0;
        if (part == 0) {
            if (i >= text.size() || text[i] != '.') return 0;
            ++i;
        }
    }
    if (i < text.size() && text[i] != ' ') return 0;
    return i;
}

// An envelope address fit to go between "<" and ">" on a command line: the
// queue should never hold anything else, but a CR or LF here would let one
// message inject SMTP commands into the session.
bool safe_address(std::string_view a) {
    for (unsigned char c : a)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

bool offers(const Reply& r, std::string_view keyword) {
    for (std::size_t i = 1; i < r.lines.size(); ++i) {
        auto words = util::split_ws(r.lines[i]);
        if (!words.empty() && util::iequals(words[0], keyword)) return true;
    }
    return false;
}

// Overwrites the whole buffer of a string that held credentials.
void wipe(std::string& s) noexcept {
    s.resize(s.capacity());
    explicit_bzero(s.data(), s.size());
    s.clear();
}

// "mx.example[192.0.2.1]:25" -> "mx.example[192.0.2.1]", as reasons name a host.
std::string host_of(const std::string& peer) {
    auto colon = peer.rfind(':');
    if (colon == std::string::npos || colon == 0 || peer[colon - 1] != ']' || colon + 1 == peer.size()) return peer;
    for (std::size_t i = colon + 1; i < peer.size(); ++i)
        if (!is_digit(peer[i])) return peer;
    return peer.substr(0, colon);
}

// The DSN code of a failure reply: its enhanced code, else X.0.0 by class;
// a reply of any other class where a failure was expected is a protocol error.
std::string failure_dsn(const Reply& r) {
    int cls = r.code / 100;
    if (cls != 4 && cls != 5) return "4.5.0";
    if (!r.enhanced.empty()) return r.enhanced;
    return cls == 5 ? "5.0.0" : "4.0.0";
}

// Runs one entry point of Client: an exception ends the session (through
// on_error) unless the Client is gone by then.
template <typename F, typename E>
void guarded(const std::shared_ptr<bool>& alive_ref, F&& f, E&& on_error) {
    auto alive = alive_ref;  // a copy: f may destroy the Client and its Impl
    try {
        f();
    } catch (const std::exception& e) {
        if (*alive) on_error(e.what());
    }
}

}  // namespace

// ---- Replies

std::string Reply::text() const {
    std::string s = std::to_string(code);
    for (auto& l : lines) {
        if (l.empty()) continue;
        s += ' ';
        s += l;
    }
    // printable() may overshoot max_len by one escape and appends "...".
    return util::printable(s, MaxReasonText - 6);
}

Result<void> ReplyParser::feed(std::string_view bytes) {
    if (failed_) return Error::protocol("unreadable reply");
    buf_.append(bytes);
    std::size_t pos = 0;
    auto fail = [this](std::string why) -> Result<void> {
        failed_ = true;
        buf_.clear();
        partial_.reset();
        return Error::protocol(std::move(why));
    };
    const std::string too_long = "reply line longer than " + std::to_string(MaxReplyLine) + " bytes";
    for (;;) {
        auto nl = buf_.find('\n', pos);
        if (nl == std::string::npos) {
            if (buf_.size() - pos >= MaxReplyLine) return fail(too_long);
            break;
        }
        if (nl + 1 - pos > MaxReplyLine) return fail(too_long);
        std::string_view line(buf_.data() + pos, nl - pos);
        pos = nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
            (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
            return fail("malformed reply line \"" + util::printable(line, 80) + "\"");
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (code < 200 || code > 599) return fail("reply code " + std::to_string(code) + " out of range");
        bool last = line.size() == 3 || line[3] == ' ';
        std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
        if (partial_) {
            if (partial_->code != code) return fail("multi-line reply with different codes");
            if (partial_->lines.size() >= MaxReplyLines)
                return fail("reply longer than " + std::to_string(MaxReplyLines) + " lines");
        } else {
            partial_.emplace();
            partial_->code = code;
            if (auto n = enhanced_length(text, line[0])) partial_->enhanced = std::string(text.substr(0, n));
        }
        partial_->lines.emplace_back(text);
        if (last) {
            ready_.push_back(std::move(*partial_));
            partial_.reset();
        }
    }
    buf_.erase(0, pos);
    return {};
}

std::optional<Reply> ReplyParser::next() {
    if (ready_.empty()) return std::nullopt;
    Reply r = std::move(ready_.front());
    ready_.erase(ready_.begin());
    return r;
}

Features parse_ehlo(const Reply& r) {
    Features f;
    f.esmtp = r.code / 100 == 2;
    for (std::size_t i = 1; i < r.lines.size(); ++i) {  // the first line is the server's name
        auto words = util::split_ws(r.lines[i]);
        if (words.empty()) continue;
        std::string kw = to_upper(words[0]);
        std::vector<std::string> args(words.begin() + 1, words.end());
        if (kw.starts_with("AUTH=")) {  // the pre-RFC 4954 form some servers still send
            args.insert(args.begin(), kw.substr(5));
            kw = "AUTH";
        }
        if (kw == "PIPELINING") f.pipelining = true;
        else if (kw == "STARTTLS") f.starttls = true;
        else if (kw == "8BITMIME") f.eightbitmime = true;
        else if (kw == "SMTPUTF8") f.smtputf8 = true;
        else if (kw == "DSN") f.dsn = true;
        else if (kw == "SIZE") {
            auto n = args.empty() ? std::nullopt : util::parse_long(args[0]);
            if (n && *n > 0) f.size_limit = static_cast<std::uint64_t>(*n);
        } else if (kw == "AUTH") {
            for (auto& a : args)
                if (!a.empty() && a.size() <= MaxMechanismName && f.auth.size() < MaxMechanisms)
                    f.auth.insert(to_upper(a));
        }
    }
    return f;
}

// ---- The session

struct Client::Impl {
    enum class Phase {
        Greeting, Ehlo, Helo, StartTls, Handshake,
        AuthUser, AuthPassword, AuthResult,  // waiting for: LOGIN's 334s, the final 235
        Ready, Txn, Content, Quit, Closed,
    };
    enum class Cmd { Mail, Rcpt, Data, DataDone, DotIgnored, Rset };
    struct Expect {
        Cmd cmd;
        std::size_t rcpt = 0;  // Rcpt: the recipient's position in the transaction
    };

    struct Txn {
        Transaction t;
        ContentSource* src = nullptr;
        std::function<void(const TransactionResult&)> done;
        std::vector<std::optional<RcptResult>> results;  // set once final
        std::vector<bool> accepted;                      // RCPT got 2xx
        std::deque<Expect> expect;                       // replies still due, in order
        std::size_t next_rcpt = 0;                       // without PIPELINING: the next RCPT to send
        bool mail_sent = false, mail_failed = false, data_sent = false, dot_sent = false, rset_sent = false;
        char last = '\n';                                // the last content byte read ('\n': at a line start)
    };

    Client& self;
    ClientSettings settings;
    ClientIo& io;
    std::string host;  // as reasons name it
    ReplyParser parser;
    Phase phase = Phase::Greeting;
    bool size_offered = false, starttls_refused = false;
    std::optional<Txn> txn;
    // Every entry point keeps a copy; the destructor sets it false, so code
    // that ran done (which may destroy the Client) can tell and return.
    // shared_ptr because the flag must outlive the Impl it belongs to.
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);

    Impl(Client& c, const ClientSettings& s, ClientIo& i, std::string peer)
        : self(c), settings(s), io(i), host(host_of(peer)) {}

    void set(Phase p) {
        phase = p;
        switch (p) {
            case Phase::Greeting: self.state_ = State::Greeting; break;
            case Phase::Ehlo:
            case Phase::Helo: self.state_ = State::Helo; break;
            case Phase::StartTls:
            case Phase::Handshake: self.state_ = State::StartTls; break;
            case Phase::AuthUser:
            case Phase::AuthPassword:
            case Phase::AuthResult: self.state_ = State::Auth; break;
            case Phase::Ready: self.state_ = State::Ready; break;
            case Phase::Txn:
            case Phase::Content: self.state_ = State::Busy; break;
            case Phase::Quit: self.state_ = State::Quitting; break;
            case Phase::Closed: self.state_ = State::Closed; break;
        }
    }

    // What we are doing, for "timed out while ..." and "lost connection ... while ...".
    std::string doing() const {
        switch (phase) {
            case Phase::Greeting: return "receiving the initial server greeting";
            case Phase::Ehlo: return "performing the EHLO handshake";
            case Phase::Helo: return "performing the HELO handshake";
            case Phase::StartTls: return "sending STARTTLS";
            case Phase::Handshake: return "performing the TLS handshake";
            case Phase::AuthUser:
            case Phase::AuthPassword:
            case Phase::AuthResult: return "performing SASL authentication";
            case Phase::Ready: return "idle";
            case Phase::Content: return "sending message body";
            case Phase::Quit: return "sending QUIT";
            case Phase::Closed: return "closing";
            case Phase::Txn: break;
        }
        if (!txn || txn->expect.empty()) return "sending message body";
        switch (txn->expect.front().cmd) {
            case Cmd::Mail: return "sending MAIL FROM";
            case Cmd::Rcpt: return "sending RCPT TO";
            case Cmd::Data: return "sending DATA command";
            case Cmd::DataDone: return "sending end of data -- message may be sent more than once";
            case Cmd::DotIgnored: return "sending end of data";
            case Cmd::Rset: return "sending RSET";
        }
        return "talking";
    }

    std::string_view waiting_for() const {
        switch (phase) {
            case Phase::Greeting: return "greeting";
            case Phase::Ehlo:
            case Phase::Helo: return "helo";
            case Phase::StartTls:
            case Phase::Handshake: return "starttls";
            case Phase::AuthUser:
            case Phase::AuthPassword:
            case Phase::AuthResult: return "auth";
            case Phase::Content: return "data_done";
            case Phase::Quit: return "quit";
            case Phase::Ready:
            case Phase::Closed: return "";
            case Phase::Txn: break;
        }
        if (!txn || txn->expect.empty()) return "";
        switch (txn->expect.front().cmd) {
            case Cmd::Mail:
            case Cmd::Rset: return "mail";
            case Cmd::Rcpt: return "rcpt";
            case Cmd::Data: return "data";
            case Cmd::DataDone:
            case Cmd::DotIgnored: return "data_done";
        }
        return "";
    }

    std::string said(const Reply& r, std::string_view cmd) const {
        return "host " + host + " said: " + r.text() + " (in reply to " + std::string(cmd) + ")";
    }

    // ---- Ending

    // The session is over. A transaction past MAIL gets a result for every
    // recipient (the open ones deferred with reason); one not yet started
    // gets session_failed. polite: the server is between commands and may
    // hear QUIT. Runs done last.
    void end(std::string reason, std::string dsn, bool polite) {
        if (phase == Phase::Closed) return;
        self.session_error_ = reason;
        self.session_dsn_ = dsn;
        set(Phase::Closed);
        if (polite) io.send("QUIT\r\n");
        io.close();
        if (!txn) return;
        if (!txn->mail_sent) {
            TransactionResult r;
            r.session_failed = true;
            r.reason = std::move(reason);
            r.dsn = std::move(dsn);
            auto done = std::move(txn->done);
            txn.reset();
            done(r);
            return;
        }
        // Whatever ended the session mid-transaction, it says nothing final
        // about the recipients still open.
        if (dsn.empty()) dsn = "4.0.0";
        else dsn[0] = '4';
        for (std::size_t i = 0; i < txn->results.size(); ++i)
            if (!txn->results[i])
                txn->results[i] = RcptResult{txn->t.rcpts[i].index, RcptResult::Kind::Deferred, dsn, reason};
        deliver(Phase::Closed);
    }

    // The transaction is decided: hand the results over. Runs done last.
    void deliver(Phase next) {
        set(next);
        TransactionResult r;
        for (std::size_t i = 0; i < txn->results.size(); ++i) {
            if (txn->results[i]) r.rcpts.push_back(std::move(*txn->results[i]));
            else  // not reached: every path decides every recipient
                r.rcpts.push_back({txn->t.rcpts[i].index, RcptResult::Kind::Deferred, "4.3.0",
                                   "internal error: no result from the SMTP session with " + host});
        }
        auto done = std::move(txn->done);
        txn.reset();
        done(r);
    }

    // ---- Session set-up

    void send_hello(bool ehlo) {
        set(ehlo ? Phase::Ehlo : Phase::Helo);
        io.send((ehlo ? "EHLO " : "HELO ") + settings.helo_name + "\r\n");
    }

    void on_greeting(const Reply& r) {
        if (r.code == 220) return send_hello(true);
        end("host " + host + " refused to talk to me: " + r.text(), failure_dsn(r), r.code != 421);
    }

    // The server calls itself by our name: we are talking to ourselves.
    bool loops(const Reply& r) {
        if (settings.myhostname.empty() || r.lines.empty()) return false;
        std::string_view first = r.lines[0];
        first = first.substr(0, first.find(' '));
        if (!util::iequals(first, settings.myhostname)) return false;
        end("host " + host + " replied to HELO/EHLO with my own hostname " + settings.myhostname, "5.4.6", true);
        return true;
    }

    void on_ehlo(const Reply& r) {
        if (r.code / 100 == 2) {
            if (loops(r)) return;
            self.features_ = parse_ehlo(r);
            size_offered = offers(r, "SIZE");
            return after_hello();
        }
        if (r.code / 100 == 5) return send_hello(false);
        end(said(r, "EHLO command"), failure_dsn(r), r.code != 421);
    }

    void on_helo(const Reply& r) {
        if (r.code / 100 == 2) {
            if (loops(r)) return;
            self.features_ = Features{};
            size_offered = false;
            return after_hello();
        }
        end(said(r, "HELO command"), failure_dsn(r), r.code != 421);
    }

    bool tls_required() const { return settings.tls == TlsPolicy::Encrypt || settings.tls == TlsPolicy::Verify; }

    void after_hello() {
        if (!io.tls_active() && settings.tls != TlsPolicy::None) {
            if (settings.tls_available && self.features_.starttls && !starttls_refused) {
                set(Phase::StartTls);
                io.send("STARTTLS\r\n");
                return;
            }
            if (tls_required()) {
                // Note: Postfix words the second case the same way; the
                // glue's log already says why no TLS context was loaded.
                return end(settings.tls_available ? "TLS is required, but was not offered by host " + host
                                                  : "TLS is required, but our TLS engine is unavailable",
                           "4.7.4", true);
            }
        }
        start_auth();
    }

    void on_starttls(const Reply& r) {
        if (r.code == 220) {
            // Anything the server sent after its 220 came in plaintext and
            // would be read as if it came through TLS: drop it (RFC 3207 §6).
            parser = ReplyParser();
            set(Phase::Handshake);
            io.start_tls();  // may call on_tls_failed() at once
            return;
        }
        if (r.code == 421) return end(said(r, "STARTTLS command"), failure_dsn(r), false);
        if (!tls_required()) {
            starttls_refused = true;
            return after_hello();
        }
        end("TLS is required, but host " + host + " refused to start TLS: " + r.text(), "4.7.4", true);
    }

    void send_secret(std::string cmd) {
        io.send(cmd);
        wipe(cmd);
    }

    void start_auth() {
        if (!settings.auth) return ready();
        if (!io.tls_active()) return end("refusing to send credentials to " + host + " without TLS", "4.7.0", true);
        const auto& mechs = self.features_.auth;
        if (mechs.count("PLAIN")) {
            std::string msg;
            msg += '\0';
            msg += settings.auth->first;
            msg += '\0';
            msg += settings.auth->second;
            set(Phase::AuthResult);
            send_secret("AUTH PLAIN " + sasl::base64_encode(msg) + "\r\n");
            wipe(msg);
            return;
        }
        if (mechs.count("LOGIN")) {
            set(Phase::AuthUser);
            io.send("AUTH LOGIN\r\n");
            return;
        }
        // No mechanism we can use: go on without; the server will refuse
        // relaying, and that reply is what the recipients get.
        ready();
    }

    void on_auth(const Reply& r) {
        if (phase == Phase::AuthUser && r.code == 334) {
            set(Phase::AuthPassword);
            return send_secret(sasl::base64_encode(settings.auth->first) + "\r\n");
        }
        if (phase == Phase::AuthPassword && r.code == 334) {
            set(Phase::AuthResult);
            return send_secret(sasl::base64_encode(settings.auth->second) + "\r\n");
        }
        if (phase == Phase::AuthResult && r.code / 100 == 2) return ready();
        // After a stray 334 the server waits for a SASL response: no QUIT.
        end("SASL authentication failed; server " + host + " said: " + r.text(), r.code / 100 == 5 ? "5.7.8" : "4.7.8",
            r.code != 421 && r.code != 334);
    }

    void ready() {
        set(Phase::Ready);
        if (txn && !txn->mail_sent) start_txn();
    }

    // ---- Transactions

    void start_txn() {
        Txn& x = *txn;
        const Features& f = self.features_;
        auto bounce_all = [&](const char* dsn, const std::string& reason) {
            for (std::size_t i = 0; i < x.results.size(); ++i)
                x.results[i] = RcptResult{x.t.rcpts[i].index, RcptResult::Kind::Bounced, dsn, reason};
            deliver(Phase::Ready);
        };
        if (x.t.smtputf8 && !f.smtputf8)
            return bounce_all("5.6.7", "SMTPUTF8 is required, but was not offered by host " + host);
        if (f.size_limit && x.t.size > *f.size_limit)
            return bounce_all("5.3.4", "message size " + std::to_string(x.t.size) + " exceeds size limit " +
                                           std::to_string(*f.size_limit) + " of server " + host);
        if (!safe_address(x.t.sender)) return bounce_all("5.1.7", "invalid sender address");
        bool any = false;
        for (std::size_t i = 0; i < x.t.rcpts.size(); ++i) {
            const auto& a = x.t.rcpts[i].address;
            if (a.empty() || !safe_address(a))
                x.results[i] = RcptResult{x.t.rcpts[i].index, RcptResult::Kind::Bounced, "5.1.3",
                                          "invalid recipient address"};
            else any = true;
        }
        if (!any) return deliver(Phase::Ready);

        x.mail_sent = true;
        set(Phase::Txn);
        std::string out = mail_command();
        x.expect.push_back({Cmd::Mail});
        if (f.pipelining) {
            for (std::size_t i = 0; i < x.t.rcpts.size(); ++i) {
                if (x.results[i]) continue;
                out += rcpt_command(i);
                x.expect.push_back({Cmd::Rcpt, i});
            }
            out += "DATA\r\n";
            x.expect.push_back({Cmd::Data});
            x.data_sent = true;
            x.next_rcpt = x.t.rcpts.size();
        }
        io.send(out);
    }

    std::string mail_command() const {
        const Transaction& t = txn->t;
        const Features& f = self.features_;
        std::string cmd = "MAIL FROM:<" + t.sender + ">";
        if (size_offered) cmd += " SIZE=" + std::to_string(t.size);
        if (f.eightbitmime && util::iequals(t.body, "8BITMIME")) cmd += " BODY=8BITMIME";
        if (t.smtputf8) cmd += " SMTPUTF8";
        if (f.dsn) {
            std::string ret = to_upper(t.ret);
            if (ret == "FULL" || ret == "HDRS") cmd += " RET=" + ret;
            if (!t.envid.empty()) {
                std::string x = util::xtext_encode(t.envid);
                if (x.size() <= MaxEnvid) cmd += " ENVID=" + x;
            }
        }
        return cmd + "\r\n";
    }

    std::string rcpt_command(std::size_t i) const {
        const Rcpt& r = txn->t.rcpts[i];
        std::string cmd = "RCPT TO:<" + r.address + ">";
        if (self.features_.dsn) {
            if (r.notify & queue::NotifyNever) {
                cmd += " NOTIFY=NEVER";
            } else if (r.notify != 0) {
                std::string n;
                if (r.notify & queue::NotifySuccess) n += ",SUCCESS";
                if (r.notify & queue::NotifyFailure) n += ",FAILURE";
                if (r.notify & queue::NotifyDelay) n += ",DELAY";
                if (!n.empty()) cmd += " NOTIFY=" + n.substr(1);
            }
            if (!r.orcpt.empty()) {
                // Queued as "type;address" with the address decoded.
                std::string_view o = r.orcpt, type = "rfc822", addr = o;
                if (auto semi = o.find(';'); semi != std::string_view::npos) {
                    type = o.substr(0, semi);
                    addr = o.substr(semi + 1);
                }
                bool type_ok = !type.empty() && type.size() <= 20;
                for (char c : type)
                    if (!(is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-')) type_ok = false;
                std::string value = std::string(type) + ";" + util::xtext_encode(addr);
                if (type_ok && !addr.empty() && value.size() <= MaxOrcpt) cmd += " ORCPT=" + value;
            }
        }
        return cmd + "\r\n";
    }

    RcptResult failure(const Reply& r, std::string_view cmd, std::size_t i) const {
        return {txn->t.rcpts[i].index, r.code / 100 == 5 ? RcptResult::Kind::Bounced : RcptResult::Kind::Deferred,
                failure_dsn(r), said(r, cmd)};
    }

    bool any_accepted_open() const {
        for (std::size_t i = 0; i < txn->accepted.size(); ++i)
            if (txn->accepted[i] && !txn->results[i]) return true;
        return false;
    }

    void on_txn_reply(const Reply& r) {
        Txn& x = *txn;
        if (x.expect.empty()) return on_unexpected(r);  // not reached: Txn always waits for something
        Expect e = x.expect.front();
        x.expect.pop_front();
        std::string_view cmd;
        switch (e.cmd) {
            case Cmd::Mail: cmd = "MAIL FROM command"; break;
            case Cmd::Rcpt: cmd = "RCPT TO command"; break;
            case Cmd::Data: cmd = "DATA command"; break;
            case Cmd::DataDone:
            case Cmd::DotIgnored: cmd = "end of DATA command"; break;
            case Cmd::Rset: cmd = "RSET command"; break;
        }
        // 421 ends the session wherever it comes; a 3xx other than DATA's 354
        // (or a 2xx to DATA) means we no longer agree on where we are.
        bool data354 = e.cmd == Cmd::Data && r.code == 354;
        if (r.code == 421) return end(said(r, cmd), failure_dsn(r), false);
        if (e.cmd != Cmd::DotIgnored &&
            ((r.code / 100 == 3 && !data354) || (e.cmd == Cmd::Data && r.code / 100 == 2)))
            return end(said(r, cmd), "4.5.0", false);

        switch (e.cmd) {
            case Cmd::Mail:
                if (r.code / 100 == 2) break;
                x.mail_failed = true;
                for (std::size_t i = 0; i < x.results.size(); ++i)
                    if (!x.results[i]) x.results[i] = failure(r, cmd, i);
                break;
            case Cmd::Rcpt:
                if (x.mail_failed) break;
                if (r.code / 100 == 2) x.accepted[e.rcpt] = true;
                else x.results[e.rcpt] = failure(r, cmd, e.rcpt);
                break;
            case Cmd::Data:
                if (data354) {
                    if (!x.mail_failed && any_accepted_open()) {
                        set(Phase::Content);
                        return stream();
                    }
                    // Pipelined DATA with nobody to send to: end it empty
                    // and pay no attention to what the server says to that.
                    x.dot_sent = true;
                    x.expect.push_back({Cmd::DotIgnored});
                    io.send(".\r\n");
                    return;
                }
                if (x.mail_failed) break;
                for (std::size_t i = 0; i < x.results.size(); ++i)
                    if (x.accepted[i] && !x.results[i]) x.results[i] = failure(r, cmd, i);
                break;
            case Cmd::DataDone:
                for (std::size_t i = 0; i < x.results.size(); ++i) {
                    if (!x.accepted[i] || x.results[i]) continue;
                    if (r.code / 100 == 2)
                        x.results[i] = RcptResult{x.t.rcpts[i].index, RcptResult::Kind::Sent,
                                                  r.enhanced.empty() ? "2.0.0" : r.enhanced, r.text()};
                    else x.results[i] = failure(r, cmd, i);
                }
                break;
            case Cmd::DotIgnored: break;
            case Cmd::Rset:
                if (r.code / 100 != 2) return end(said(r, cmd), failure_dsn(r), true);
                break;
        }
        advance();
    }

    // After a reply: the next command when sending one at a time, else the
    // end of the transaction once every reply is in.
    void advance() {
        Txn& x = *txn;
        if (phase != Phase::Txn || !x.expect.empty()) return;
        if (!x.mail_failed) {
            while (x.next_rcpt < x.results.size() && x.results[x.next_rcpt]) ++x.next_rcpt;
            if (x.next_rcpt < x.results.size()) {
                std::size_t i = x.next_rcpt++;
                x.expect.push_back({Cmd::Rcpt, i});
                io.send(rcpt_command(i));
                return;
            }
            if (!x.data_sent && any_accepted_open()) {
                x.data_sent = true;
                x.expect.push_back({Cmd::Data});
                io.send("DATA\r\n");
                return;
            }
            // MAIL was accepted but no message went through: reset the
            // server's transaction so the session can be used again.
            if (!x.dot_sent && !x.rset_sent) {
                x.rset_sent = true;
                x.expect.push_back({Cmd::Rset});
                io.send("RSET\r\n");
                return;
            }
        }
        deliver(Phase::Ready);
    }

    // Sends content while the glue's output buffer has room; the dot-stuffed
    // end with ".\r\n" when the source is done.
    void stream() {
        Txn& x = *txn;
        while (phase == Phase::Content && io.output_pending() < HighWater) {
            auto piece = x.src->next();
            if (!piece) return end(piece.error().text, "4.3.0", false);  // no "." : the server must not deliver
            if (!*piece) {
                std::string tail;
                if (x.last == '\r') tail = "\n";
                else if (x.last != '\n') tail = "\r\n";
                tail += ".\r\n";
                x.dot_sent = true;
                x.expect.push_back({Cmd::DataDone});
                set(Phase::Txn);
                io.send(tail);
                return;
            }
            std::string out;
            out.reserve(piece->value().size() + 64);
            // Lines end in CRLF on the wire: a bare LF gets its CR, so that
            // no content can look like an end of data to a lax server.
            for (char c : **piece) {
                if (c == '\n') {
                    if (x.last != '\r') out += '\r';
                } else if (c == '.' && x.last == '\n') {
                    out += '.';
                }
                out += c;
                x.last = c;
            }
            if (!out.empty()) io.send(out);
        }
    }

    // ---- Other replies

    void on_unexpected(const Reply& r) {
        std::string why = phase == Phase::Content ? " (while sending message body)" : "";
        if (r.code == 421) return end("host " + host + " said: " + r.text() + why, failure_dsn(r), false);
        end("host " + host + " sent an unexpected reply: " + r.text() + why, r.code / 100 == 4 ? failure_dsn(r) : "4.5.0",
            false);
    }

    void on_reply(const Reply& r) {
        switch (phase) {
            case Phase::Greeting: return on_greeting(r);
            case Phase::Ehlo: return on_ehlo(r);
            case Phase::Helo: return on_helo(r);
            case Phase::StartTls: return on_starttls(r);
            case Phase::AuthUser:
            case Phase::AuthPassword:
            case Phase::AuthResult: return on_auth(r);
            case Phase::Txn: return on_txn_reply(r);
            case Phase::Ready:
            case Phase::Content: return on_unexpected(r);
            case Phase::Quit:
                set(Phase::Closed);
                io.close();
                return;
            case Phase::Handshake:
            case Phase::Closed: return;
        }
    }

    void feed(std::string_view bytes) {
        // During the handshake the glue feeds nothing; if it did, it would
        // be plaintext that must not count.
        if (phase == Phase::Closed || phase == Phase::Handshake) return;
        auto guard = alive;
        auto fed = parser.feed(bytes);
        while (phase != Phase::Closed && phase != Phase::Handshake) {
            auto r = parser.next();
            if (!r) break;
            on_reply(*r);
            if (!*guard) return;
        }
        if (!fed && phase != Phase::Closed && phase != Phase::Handshake) {
            if (phase == Phase::Quit) {
                set(Phase::Closed);
                io.close();
                return;
            }
            end("host " + host + " sent a malformed reply: " + fed.error().text + " (while " + doing() + ")", "4.5.0",
                false);
        }
    }

    void lost(bool timeout) {
        if (phase == Phase::Closed) return;
        if (phase == Phase::Quit) {
            set(Phase::Closed);
            io.close();
            return;
        }
        if (timeout) {
            // Idle between transactions: say goodbye properly.
            bool idle = phase == Phase::Ready;
            return end("conversation with " + host + " timed out while " + doing(), "4.4.2", idle);
        }
        end("lost connection with " + host + " while " + doing(), "4.4.2", false);
    }

    // An exception inside one session ends that session, never the process.
    void internal_error(const char* what) {
        end("internal error in the SMTP session with " + host + ": " + util::printable(what), "4.3.0", false);
    }
};

Client::Client(const ClientSettings& settings, ClientIo& io, std::string peer_text)
    : impl_(std::make_unique<Impl>(*this, settings, io, std::move(peer_text))) {}

Client::~Client() { *impl_->alive = false; }

void Client::feed(std::string_view bytes) {
    Impl& m = *impl_;
    guarded(m.alive, [&] { m.feed(bytes); }, [&](const char* w) { m.internal_error(w); });
}

void Client::tls_started() {
    Impl& m = *impl_;
    guarded(m.alive, [&] {
        if (m.phase != Impl::Phase::Handshake) return;
        features_ = Features{};  // what the server said in plaintext no longer counts
        m.size_offered = false;
        m.send_hello(true);
    }, [&](const char* w) { m.internal_error(w); });
}

void Client::on_tls_failed(const std::string& why) {
    Impl& m = *impl_;
    guarded(m.alive, [&] {
        if (m.phase == Impl::Phase::Closed) return;
        std::string w = util::printable(why);
        // Either way the connection is unusable after a failed handshake.
        if (m.tls_required())
            m.end("TLS is required, but the TLS handshake with " + m.host + " failed: " + w, "4.7.5", false);
        else {
            opportunistic_tls_failed_ = true;
            m.end("TLS handshake with " + m.host + " failed: " + w, "4.7.5", false);
        }
    }, [&](const char* w) { m.internal_error(w); });
}

void Client::on_timeout() {
    Impl& m = *impl_;
    guarded(m.alive, [&] { m.lost(true); }, [&](const char* w) { m.internal_error(w); });
}

void Client::on_disconnect() {
    Impl& m = *impl_;
    guarded(m.alive, [&] { m.lost(false); }, [&](const char* w) { m.internal_error(w); });
}

void Client::begin(Transaction t, ContentSource& src, std::function<void(const TransactionResult&)> done) {
    Impl& m = *impl_;
    POSTERN_ASSERT(done);
    if (m.phase == Impl::Phase::Closed || m.phase == Impl::Phase::Quit) {
        TransactionResult r;
        r.session_failed = true;
        r.reason = session_error_.empty() ? "connection with " + m.host + " is closed" : session_error_;
        r.dsn = session_dsn_.empty() ? "4.4.2" : session_dsn_;
        done(r);
        return;
    }
    POSTERN_ASSERT(!m.txn);  // one transaction at a time
    guarded(m.alive, [&] {
        auto& x = m.txn.emplace();
        x.t = std::move(t);
        x.src = &src;
        x.done = std::move(done);
        x.results.assign(x.t.rcpts.size(), std::nullopt);
        x.accepted.assign(x.t.rcpts.size(), false);
        if (m.phase == Impl::Phase::Ready) m.start_txn();
        // else it starts when the session is ready
    }, [&](const char* w) { m.internal_error(w); });
}

void Client::pump() {
    Impl& m = *impl_;
    guarded(m.alive, [&] {
        if (m.phase == Impl::Phase::Content) m.stream();
    }, [&](const char* w) { m.internal_error(w); });
}

void Client::quit() {
    Impl& m = *impl_;
    guarded(m.alive, [&] {
        switch (m.phase) {
            case Impl::Phase::Closed:
            case Impl::Phase::Quit: return;
            case Impl::Phase::Ready:
                m.set(Impl::Phase::Quit);
                m.io.send("QUIT\r\n");
                return;
            default:
                // Mid-command: no QUIT, just hang up.
                m.end("session with " + m.host + " aborted while " + m.doing(), "4.3.0", false);
        }
    }, [&](const char* w) { m.internal_error(w); });
}

std::string_view Client::waiting_for() const noexcept { return impl_->waiting_for(); }

}  // namespace postern::smtp
