// smtpd/session.cpp - the SMTP server state machine (see session.hpp).
#include "smtpd/session.hpp"

#include <ctime>

#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::smtpd {

Result<Settings> Settings::from(const config::Params& p) {
    Settings s;
    s.hostname = p.myhostname;
    s.banner = p.smtpd_banner;
    s.mail_name = p.mail_name;
    for (auto& d : util::split_list(p.mydestination)) s.local_domains.insert(util::to_lower(d));
    for (auto& d : util::split_list(p.relay_domains)) s.relay_domains.insert(util::to_lower(d));
    for (auto& d : util::split_list(p.virtual_mailbox_domains)) s.virtual_domains.insert(util::to_lower(d));
    auto nets = util::NetList::parse(p.mynetworks);
    if (!nets) return Error::config("mynetworks: " + nets.error().text);
    s.mynetworks = std::move(*nets);
    if (p.smtpd_tls_security_level == "encrypt") s.tls_required = true;
    else if (p.smtpd_tls_security_level != "may" && p.smtpd_tls_security_level != "none")
        return Error::config("smtpd_tls_security_level: want none, may or encrypt, not \"" +
                             util::printable(p.smtpd_tls_security_level, 40) + "\"");
    s.sasl_enabled = p.smtpd_sasl_auth_enable;
    s.auth_required = p.smtpd_sasl_auth_required;
    s.tls_auth_only = p.smtpd_tls_auth_only;
    s.sasl_failure_limit = static_cast<std::size_t>(p.smtpd_sasl_failure_limit);
    s.sender_login_check = p.smtpd_reject_sender_login_mismatch;
    s.size_limit = static_cast<std::uint64_t>(p.message_size_limit);
    s.rcpt_limit = static_cast<std::size_t>(p.smtpd_recipient_limit);
    s.line_limit = static_cast<std::size_t>(p.line_length_limit);
    s.hard_error_limit = static_cast<std::size_t>(p.smtpd_hard_error_limit);
    s.vrfy_disabled = p.disable_vrfy_command;
    s.delimiter = p.recipient_delimiter;
    s.reject_unlisted = p.smtpd_reject_unlisted_recipient;
    s.add_missing_headers = p.always_add_missing_headers;
    s.reject_pregreet = p.smtpd_reject_pregreet;
    return s;
}

Session::Session(const Settings& settings, Backend& backend, Io& io, Peer peer)
    : s_(settings), backend_(backend), io_(io), peer_(std::move(peer)), alive_(std::make_shared<bool>(true)) {}

Session::~Session() {
    *alive_ = false;
    on_disconnect();
}

void Session::start() {
    started_ = true;
    log::info("connect from %s", peer_.text().c_str());
    reply("220 " + s_.banner);
    if (!in_.empty()) process();
}

void Session::reply(const std::string& text) {
    if (closed_) return;
    io_.reply(text + "\r\n");
}

void Session::error_reply(const std::string& text) {
    ++errors_;
    reply(text);
    if (errors_ >= s_.hard_error_limit) {
        log::warn("hard error limit (smtpd_hard_error_limit=%zu) reached for %s", s_.hard_error_limit,
                  peer_.text().c_str());
        reply("421 4.7.0 " + s_.hostname + " Error: too many errors");
        io_.close();
        closed_ = true;
    }
}

// Counts a command for the disconnect line ("rcpt=1/2": 1 of 2 accepted).
void Session::count(const std::string& name, bool ok) {
    std::string key = util::to_lower(name);
    for (auto& [n, c] : counts_) {
        if (n == key) {
            c.first += ok;
            c.second += 1;
            return;
        }
    }
    counts_.push_back({key, {ok ? 1 : 0, 1}});
}

// A command counted with count(name, false) turned out to succeed.
void Session::count_ok(std::string_view name) {
    for (auto& [n, c] : counts_)
        if (n == name) ++c.first;
}

void Session::on_disconnect() {
    if (disconnected_) return;
    disconnected_ = true;
    closed_ = true;
    abort_message();
    std::string line = "disconnect from " + peer_.text();
    int ok = 0, total = 0;
    for (auto& [n, c] : counts_) {
        line += " " + n + "=" + (c.first == c.second ? std::to_string(c.first) : std::to_string(c.first) + "/" + std::to_string(c.second));
        ok += c.first;
        total += c.second;
    }
    line += " commands=" + (ok == total ? std::to_string(ok) : std::to_string(ok) + "/" + std::to_string(total));
    log::info("%s", line.c_str());
}

void Session::on_timeout() {
    if (closed_) return;
    const char* where = phase_ == Phase::Command ? (have_mail_ ? "RCPT" : greeted_ ? "MAIL" : "CONNECT") : "DATA";
    log::info("timeout after %s from %s", where, peer_.text().c_str());
    reply("421 4.4.2 " + s_.hostname + " Error: timeout exceeded");
    io_.close();
    closed_ = true;
}

std::string Session::proto() const {
    if (!ehlo_) return "SMTP";
    // RFC 3848: ESMTPS with TLS, ESMTPA / ESMTPSA after AUTH.
    return std::string(io_.tls_active() ? "ESMTPS" : "ESMTP") + (auth_user_ ? "A" : "");
}

void Session::log_reject(const std::string& cmd, const std::string& text, const std::string& to) {
    std::string line = "NOQUEUE: reject: " + cmd + " from " + peer_.text() + ": " + util::printable(text, 500) + ";";
    if (have_mail_) line += " from=<" + util::printable(env_.sender) + ">";
    if (!to.empty()) line += " to=<" + util::printable(to) + ">";
    line += " proto=" + proto() + " helo=<" + util::printable(helo_, 100) + ">";
    log::info("%s", line.c_str());
}

void Session::reset_transaction() {
    abort_message();
    have_mail_ = false;
    env_ = Envelope{};
    mail_params_ = MailParams{};
    phase_ = Phase::Command;
    reader_.reset();
    headers_ = HeaderScanner();
    held_.clear();
    added_message_id_.reset();
    size_ = 0;
    too_big_ = write_failed_ = false;
    bdat_left_ = 0;
    bdat_last_ = bdat_used_ = false;
}

void Session::abort_message() {
    writer_.reset();  // the queue writer removes its unfinished file
}

void Session::feed(std::string_view bytes) {
    if (closed_) return;
    if (!started_) {
        // The client talked before our greeting: a spambot's habit.
        if (!pregreeted_)
            log::info("PREGREET %zu after greeting pause from %s: %s", bytes.size(), peer_.text().c_str(),
                      util::printable(bytes, 100).c_str());
        pregreeted_ = true;
        if (s_.reject_pregreet) {
            reply("554 5.5.1 " + s_.hostname + " Error: talked before the greeting");
            io_.close();
            closed_ = true;
            return;
        }
        // Not refused: keep it for after the greeting (bounded by the limit).
        if (in_.size() + bytes.size() > s_.line_limit * 4) {
            io_.close();
            closed_ = true;
            return;
        }
        in_.append(bytes.data(), bytes.size());
        return;
    }
    in_.append(bytes.data(), bytes.size());
    process();
}

void Session::process() {
    // A backend that completes a commit synchronously calls back into here;
    // the outer loop carries on instead.
    if (processing_) return;
    processing_ = true;
    std::size_t pos = 0;
    while (!closed_ && !paused_ && pos < in_.size()) {
        std::string_view avail(in_.data() + pos, in_.size() - pos);
        if (phase_ == Phase::Data) {
            chunk_.clear();
            std::size_t used = reader_->feed(avail, chunk_);
            pos += used;
            content(chunk_);
            if (reader_->done()) end_message();
            continue;
        }
        if (phase_ == Phase::Bdat) {
            std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(bdat_left_, avail.size()));
            chunk_.clear();
            reader_->feed(avail.substr(0, take), chunk_);
            pos += take;
            bdat_left_ -= take;
            content(chunk_);
            if (bdat_left_ == 0) {
                if (bdat_last_) {
                    reader_->finish_bdat();
                    end_message();
                } else {
                    phase_ = Phase::Command;
                    if (too_big_ || write_failed_ || reader_->defect()) {
                        // Report the failure now; the transaction is over.
                        end_message();
                    } else {
                        reply("250 2.0.0 Ok: " + std::to_string(size_) + " octets received");
                    }
                }
            }
            continue;
        }
        // A SASL response may be longer than a command line.
        std::size_t limit = sasl_ ? std::max(s_.line_limit, sasl::MaxResponseLength) : s_.line_limit;
        auto nl = avail.find('\n');
        if (nl == std::string_view::npos) {
            // A line at the limit may wait for the LF after its CR.
            if (avail.size() > limit + (avail.back() == '\r' ? 1 : 0)) {
                // Drop what we have; refuse the whole line when it ends.
                discarding_line_ = true;
                pos = in_.size();
            }
            break;
        }
        std::string_view line = avail.substr(0, nl);
        pos += nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (discarding_line_ || line.size() > limit) {
            discarding_line_ = false;
            log::warn("%s: command line longer than line_length_limit=%zu refused", peer_.text().c_str(), limit);
            if (sasl_) {
                sasl_.reset();
                auth_failed("500 5.5.6 Authentication exchange line is too long");
            } else {
                error_reply("500 5.5.2 Error: line too long");
            }
            continue;
        }
        if (sasl_) {
            sasl_line(line);
            continue;
        }
        bool more = pos < in_.size();
        if (!handle_line(line)) {
            // STARTTLS: whatever the client sent after it in plaintext is
            // dropped, never read as if it came over TLS (CVE-2011-0411).
            if (pos < in_.size())
                log::warn("%s: discarding %zu bytes of plaintext pipelined after STARTTLS", peer_.text().c_str(),
                          in_.size() - pos);
            pos = in_.size();
            break;
        }
        if (more && phase_ == Phase::Data)
            log::info("improper command pipelining after DATA from %s", peer_.text().c_str());
    }
    in_.erase(0, std::min(pos, in_.size()));
    processing_ = false;
}

// Returns false when the remaining input must be discarded (STARTTLS).
bool Session::handle_line(std::string_view line) {
    auto cmd = parse_command(line);
    if (!cmd) {
        count("unknown", false);
        log::warn("%s: refused command: %s", peer_.text().c_str(), cmd.error().text.c_str());
        error_reply(cmd.error().text);
        return true;
    }
    const Command& c = *cmd;
    switch (c.verb) {
        case Verb::Helo: do_helo(c, false); break;
        case Verb::Ehlo: do_helo(c, true); break;
        case Verb::Mail: do_mail(c); break;
        case Verb::Rcpt: do_rcpt(c); break;
        case Verb::Data:
            if (!c.arg.empty()) {
                count("data", false);
                error_reply("501 5.5.4 Syntax: DATA");
            } else {
                do_data();
            }
            break;
        case Verb::Bdat: do_bdat(c); break;
        case Verb::Rset:
            count("rset", true);
            reset_transaction();
            reply("250 2.0.0 Ok");
            break;
        case Verb::Noop:
            count("noop", true);
            reply("250 2.0.0 Ok");
            break;
        case Verb::Quit:
            count("quit", true);
            reply("221 2.0.0 Bye");
            io_.close();
            closed_ = true;
            break;
        case Verb::Vrfy: do_vrfy(c); break;
        case Verb::Expn:
            count("expn", false);
            error_reply("502 5.5.1 Error: command not implemented");
            break;
        case Verb::Help:
            count("help", true);
            reply("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
            break;
        case Verb::Starttls:
            // After a successful STARTTLS the rest of the input is dropped.
            return !do_starttls(c);
        case Verb::Auth: do_auth(c); break;
        case Verb::Unknown:
            count("unknown", false);
            error_reply("502 5.5.2 Error: command not recognized");
            break;
    }
    return true;
}

void Session::do_helo(const Command& c, bool ehlo) {
    count(ehlo ? "ehlo" : "helo", false);
    if (!valid_helo(c.arg)) {
        error_reply(ehlo ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname");
        return;
    }
    count_ok(ehlo ? "ehlo" : "helo");
    reset_transaction();
    helo_ = c.arg;
    ehlo_ = ehlo;
    greeted_ = true;
    if (!ehlo) {
        reply("250 " + s_.hostname);
        return;
    }
    std::string r = "250-" + s_.hostname + "\r\n250-PIPELINING\r\n250-SIZE " + std::to_string(s_.size_limit) + "\r\n";
    if (io_.tls_available() && !io_.tls_active()) r += "250-STARTTLS\r\n";
    if (auth_offered()) r += "250-AUTH PLAIN LOGIN\r\n";
    r += "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING";
    reply(r);
}

void Session::do_mail(const Command& c) {
    count("mail", false);
    if (!greeted_) return error_reply("503 5.5.1 Error: send HELO/EHLO first");
    if (have_mail_) return error_reply("503 5.5.1 Error: nested MAIL command");
    if (s_.tls_required && !io_.tls_active()) return error_reply("530 5.7.0 Must issue a STARTTLS command first");
    if (s_.auth_required && !auth_user_) return error_reply("530 5.7.0 Authentication required");
    auto path = parse_path(c.arg, "FROM:", true, false);
    if (!path) return error_reply(path.error().text);
    if (!ehlo_ && !path->params.empty()) return error_reply("555 5.5.4 Unsupported option: " + path->params[0].first);
    auto params = parse_mail_params(path->params);
    if (!params) return error_reply(params.error().text);
    if (path->utf8 && !params->smtputf8) return error_reply("553 5.6.7 Must declare SMTPUTF8 to send unicode address");
    if (params->size && *params->size > s_.size_limit) {
        log_reject("MAIL", "552 5.3.4 Message size exceeds fixed limit", "");
        return error_reply("552 5.3.4 Message size exceeds fixed limit");
    }
    if (auth_user_ && s_.sender_login_check && !path->address.empty()) {
        auto owned = backend_.sender_owned(util::to_lower(path->address), *auth_user_);
        if (!owned) {
            std::string text = "451 4.3.0 <" + path->address + ">: Sender address rejected: Temporary lookup failure";
            log_reject("MAIL", text, "");
            return reply(text);
        }
        if (!*owned) {
            std::string text = "553 5.7.1 <" + path->address + ">: Sender address rejected: not owned by user " +
                               util::printable(auth_user_->name, 300);
            log_reject("MAIL", text, "");
            return error_reply(text);
        }
    }
    have_mail_ = true;
    mail_params_ = *params;
    env_ = Envelope{};
    env_.sender = path->address;
    env_.envid = params->envid;
    env_.ret = params->ret;
    env_.body = params->body == Body::EightBitMime ? "8BITMIME" : params->body == Body::SevenBit ? "7BIT" : "";
    env_.smtputf8 = params->smtputf8;
    count_ok("mail");
    reply("250 2.1.0 Ok");
}

void Session::do_rcpt(const Command& c) {
    count("rcpt", false);
    if (!have_mail_) return error_reply("503 5.5.1 Error: need MAIL command");
    auto path = parse_path(c.arg, "TO:", false, true);
    if (!path) return error_reply(path.error().text);
    if (!ehlo_ && !path->params.empty()) return error_reply("555 5.5.4 Unsupported option: " + path->params[0].first);
    auto params = parse_rcpt_params(path->params);
    if (!params) return error_reply(params.error().text);
    if (path->utf8 && !mail_params_.smtputf8) return error_reply("553 5.6.7 Must declare SMTPUTF8 to send unicode address");
    if (env_.recipients.size() >= s_.rcpt_limit) {
        if (env_.recipients.size() == s_.rcpt_limit)
            log::warn("%s: too many recipients (smtpd_recipient_limit=%zu)", peer_.text().c_str(), s_.rcpt_limit);
        return reply("452 4.5.3 Error: too many recipients");
    }
    std::string addr = path->domain.empty() ? path->local : path->address;
    const std::string& dom = path->domain;
    bool local = dom.empty() || s_.local_domains.count(dom) != 0;
    if (local) {
        // user+ext@local validates as user; postmaster always exists.
        std::string user = util::to_lower(path->local);
        if (!s_.delimiter.empty() && user.front() != '"') {
            auto d = user.find_first_of(s_.delimiter);
            if (d != std::string::npos && d > 0) user.resize(d);
        }
        if (user != "postmaster" && s_.reject_unlisted) {
            std::optional<bool> known = false;
            if (user.front() != '"') known = backend_.local_user_exists(user);
            if (!known) {
                std::string text = "451 4.3.0 <" + addr + ">: Temporary lookup failure";
                log_reject("RCPT", text, addr);
                return reply(text);
            }
            if (!*known) {
                std::string text = "550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown in local recipient table";
                log_reject("RCPT", text, addr);
                return error_reply(text);
            }
        }
        if (dom.empty()) addr = path->local + "@" + s_.hostname;
    } else if (s_.virtual_domains.count(dom)) {
        // Virtual mailboxes: user+ext@dom validates as user@dom; postmaster
        // is always accepted (RFC 5321 4.5.1).
        std::string user = util::to_lower(path->local);
        if (!s_.delimiter.empty() && user.front() != '"') {
            auto d = user.find_first_of(s_.delimiter);
            if (d != std::string::npos && d > 0) user.resize(d);
        }
        if (user != "postmaster" && s_.reject_unlisted) {
            auto known = backend_.virtual_user_exists(user + "@" + dom);
            if (!known) {
                std::string text = "451 4.3.0 <" + addr + ">: Temporary lookup failure";
                log_reject("RCPT", text, addr);
                return reply(text);
            }
            if (!*known) {
                std::string text =
                    "550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown in virtual mailbox table";
                log_reject("RCPT", text, addr);
                return error_reply(text);
            }
        }
    } else if (!s_.relay_domains.count(dom) && !s_.mynetworks.contains(peer_.addr) && !auth_user_) {
        std::string text = "554 5.7.1 <" + addr + ">: Relay access denied";
        log_reject("RCPT", text, addr);
        return error_reply(text);
    }
    env_.recipients.push_back({addr, params->orcpt, params->notify});
    count_ok("rcpt");
    reply("250 2.1.5 Ok");
}

void Session::do_vrfy(const Command& c) {
    count("vrfy", true);
    if (c.arg.empty()) return error_reply("501 5.5.4 Syntax: VRFY address");
    // Note: by default the same answer for every address, so VRFY reveals nothing.
    if (s_.vrfy_disabled) return reply("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
    std::string arg = c.arg;
    if (arg.size() > 2 && arg.front() == '<' && arg.back() == '>') arg = arg.substr(1, arg.size() - 2);
    auto at = arg.rfind('@');
    std::string local = util::to_lower(arg.substr(0, at));
    std::string dom = at == std::string::npos ? std::string() : util::to_lower(arg.substr(at + 1));
    if (!dom.empty() && !s_.local_domains.count(dom))
        return reply("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
    auto known = local == "postmaster" ? std::optional<bool>(true) : backend_.local_user_exists(local);
    if (!known) return reply("451 4.3.0 <" + util::printable(arg) + ">: Temporary lookup failure");
    if (!*known) return error_reply("550 5.1.1 <" + util::printable(arg) + ">: Recipient address rejected: User unknown in local recipient table");
    reply("250 2.0.0 <" + util::printable(arg) + ">");
}

bool Session::do_starttls(const Command& c) {
    count("starttls", false);
    if (!c.arg.empty()) {
        error_reply("501 5.5.4 Syntax: STARTTLS");
        return false;
    }
    if (!io_.tls_available() || io_.tls_active()) {
        error_reply("502 5.5.1 Error: command not implemented");
        return false;
    }
    count_ok("starttls");
    reply("220 2.0.0 Ready to start TLS");
    io_.start_tls();
    return true;
}

void Session::tls_started() {
    // RFC 3207 4.2: forget everything learned before TLS.
    reset_transaction();
    greeted_ = ehlo_ = false;
    helo_.clear();
    in_.clear();
    sasl_.reset();
    auth_user_.reset();
}

// RFC 4954 with RFC 8314's advice: credentials only over TLS, except from
// this machine when smtpd_tls_auth_only = no.
bool Session::auth_offered() const {
    if (!s_.sasl_enabled) return false;
    if (io_.tls_active()) return true;
    return !s_.tls_auth_only && util::is_loopback(peer_.addr);
}

void Session::do_auth(const Command& c) {
    count("auth", false);
    if (!s_.sasl_enabled) return error_reply("503 5.5.1 Error: authentication not enabled");
    if (!ehlo_) return error_reply("503 5.5.1 Error: send EHLO first");
    if (s_.tls_required && !io_.tls_active()) return error_reply("530 5.7.0 Must issue a STARTTLS command first");
    if (!auth_offered())
        return error_reply("538 5.7.11 Encryption required for requested authentication mechanism");
    if (auth_user_) return error_reply("503 5.5.1 Error: already authenticated");
    if (have_mail_) return error_reply("503 5.5.1 Error: MAIL transaction in progress");
    auto args = util::split_ws(c.arg);
    if (args.empty() || args.size() > 2) return error_reply("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
    auto mech = sasl::parse_mechanism(args[0]);
    if (!mech) return error_reply("504 5.5.4 Unrecognized authentication type");
    sasl_ = std::make_unique<sasl::SaslServer>(*mech);
    std::optional<std::string_view> initial;
    if (args.size() == 2) initial = args[1];
    sasl_step(sasl_->start(initial));
}

void Session::sasl_line(std::string_view line) { sasl_step(sasl_->next(line)); }

void Session::sasl_step(const sasl::SaslServer::Step& step) {
    using Kind = sasl::SaslServer::Step::Kind;
    using Failure = sasl::SaslServer::Failure;
    if (step.kind == Kind::Challenge) return reply("334 " + step.challenge);
    if (step.kind == Kind::Failed) {
        auto mech = sasl_->mechanism();
        sasl_.reset();
        switch (step.failure) {
            case Failure::Aborted: return error_reply("501 5.7.0 Authentication aborted");
            case Failure::BadEncoding:
                log::warn("%s: SASL %s authentication failed: undecodable response", peer_.text().c_str(),
                          std::string(sasl::mechanism_name(mech)).c_str());
                return auth_failed("501 5.5.2 Cannot decode response");
            default:
                log::warn("%s: SASL %s authentication failed: malformed response", peer_.text().c_str(),
                          std::string(sasl::mechanism_name(mech)).c_str());
                return auth_failed("535 5.7.8 Error: authentication failed: malformed response");
        }
    }
    // Done: ask the auth daemon; input waits (no pipelining past AUTH).
    paused_ = true;
    std::weak_ptr<bool> alive = alive_;
    const auto& cr = sasl_->credentials();
    backend_.authenticate(sasl::mechanism_name(sasl_->mechanism()), cr.user, cr.password, peer_, io_.tls_active(),
                          [this, alive](AuthOutcome o, AuthUser u) {
                              auto a = alive.lock();
                              if (!a || !*a) return;
                              auth_done(o, std::move(u));
                          });
}

void Session::auth_done(AuthOutcome outcome, AuthUser user) {
    std::string method(sasl_ ? sasl::mechanism_name(sasl_->mechanism()) : "PLAIN");
    sasl_.reset();
    paused_ = false;
    if (outcome == AuthOutcome::Ok) {
        user.method = method;
        auth_user_ = std::move(user);
        count_ok("auth");
        reply("235 2.7.0 Authentication successful");
    } else {
        // Note: exactly the shape fail2ban's postfix-sasl filter matches (the
        // line ends with letters and spaces only); the auth daemon logs the user.
        if (outcome == AuthOutcome::TempFail) {
            log::warn("%s: SASL %s authentication not checked: auth service unavailable", peer_.text().c_str(),
                      method.c_str());
            reply("454 4.7.0 Temporary authentication failure");
        } else {
            bool locked = outcome == AuthOutcome::Locked;
            log::warn("%s: SASL %s authentication failed: %s", peer_.text().c_str(), method.c_str(),
                      locked ? "too many failures" : "authentication failure");
            auth_failed(locked ? "454 4.7.0 Temporary authentication failure: too many failed attempts, try again later"
                               : "535 5.7.8 Error: authentication failed: authentication failure");
        }
    }
    if (!closed_) {
        process();
        io_.resume();
    }
}

// A failed exchange: counted against smtpd_sasl_failure_limit.
void Session::auth_failed(const std::string& reply_text) {
    ++auth_failures_;
    error_reply(reply_text);
    if (closed_ || auth_failures_ < s_.sasl_failure_limit) return;
    log::warn("%s: too many failed AUTH attempts (smtpd_sasl_failure_limit=%zu)", peer_.text().c_str(),
              s_.sasl_failure_limit);
    reply("421 4.7.0 " + s_.hostname + " Error: too many failed authentication attempts");
    io_.close();
    closed_ = true;
}

bool Session::open_writer() {
    env_.arrival_us = backend_.now_us();
    env_.client_name = peer_.name;
    env_.client_addr = peer_.addr;
    env_.helo = helo_;
    env_.protocol = proto();
    if (auth_user_) {
        env_.sasl_method = auth_user_->method;
        env_.sasl_username = auth_user_->name;
    }
    auto w = backend_.open_message(env_);
    if (!w) {
        log::warn("%s: cannot create queue file: %s", peer_.text().c_str(), w.error().text.c_str());
        return false;
    }
    writer_ = std::move(*w);
    if (auth_user_)
        log::info("%s: client=%s, sasl_method=%s, sasl_username=%s", writer_->id().c_str(), peer_.text().c_str(),
                  auth_user_->method.c_str(), util::printable(auth_user_->name, 300).c_str());
    else
        log::info("%s: client=%s", writer_->id().c_str(), peer_.text().c_str());
    if (auto r = writer_->append(received_header()); !r) write_failed_ = true;
    return true;
}

void Session::do_data() {
    count("data", false);
    if (!have_mail_) return error_reply("503 5.5.1 Error: need MAIL command");
    if (env_.recipients.empty()) return error_reply("554 5.5.1 Error: no valid recipients");
    if (bdat_used_) return error_reply("503 5.5.1 Error: DATA after BDAT");
    if (!open_writer()) return reply("451 4.3.0 Error: queue file write error");
    reader_ = std::make_unique<DataReader>(DataReader::Mode::Data);
    phase_ = Phase::Data;
    reply("354 End data with <CR><LF>.<CR><LF>");
}

void Session::do_bdat(const Command& c) {
    count("bdat", false);
    auto f = util::split_ws(c.arg);
    auto n = f.empty() ? std::nullopt : util::parse_long(f[0]);
    bool last = f.size() == 2 && util::iequals(f[1], "LAST");
    if (!n || *n < 0 || f.size() > 2 || (f.size() == 2 && !last)) {
        // Without a valid size the chunk cannot be skipped: close.
        reply("501 5.5.4 Syntax: BDAT size [LAST]");
        io_.close();
        closed_ = true;
        return;
    }
    auto size = static_cast<std::uint64_t>(*n);
    std::optional<std::string> refuse;
    if (!have_mail_) refuse = "503 5.5.1 Error: need MAIL command";
    else if (env_.recipients.empty()) refuse = "554 5.5.1 Error: no valid recipients";
    if (!refuse && !bdat_used_ && !open_writer()) refuse = "451 4.3.0 Error: queue file write error";
    if (refuse) {
        // RFC 3030: the chunk is read and thrown away, never run as commands.
        abort_message();
        reader_ = std::make_unique<DataReader>(DataReader::Mode::Bdat);
        too_big_ = true;
        write_failed_ = false;
        bdat_left_ = size;
        bdat_last_ = true;
        phase_ = Phase::Bdat;
        chunk_refusal_ = *refuse;
        if (size == 0) end_message();
        return;
    }
    if (!bdat_used_) {
        reader_ = std::make_unique<DataReader>(DataReader::Mode::Bdat);
        bdat_used_ = true;
    }
    bdat_left_ = size;
    bdat_last_ = last;
    phase_ = Phase::Bdat;
    count_ok("bdat");
    if (size == 0) {
        phase_ = Phase::Command;
        if (last) {
            reader_->finish_bdat();
            end_message();
        } else {
            reply("250 2.0.0 Ok: " + std::to_string(size_) + " octets received");
        }
    }
}

void Session::content(std::string_view bytes) {
    if (bytes.empty()) return;
    size_ += bytes.size();
    if (!too_big_ && size_ > s_.size_limit) {
        too_big_ = true;
        log::warn("%s: message larger than message_size_limit=%llu", peer_.text().c_str(),
                  static_cast<unsigned long long>(s_.size_limit));
    }
    bool was_in_headers = headers_.in_headers();
    if (was_in_headers) headers_.feed(bytes);
    if (too_big_ || write_failed_ || !writer_) return;
    if (s_.add_missing_headers && was_in_headers) {
        // Hold the header section until it ends, so missing Date and
        // Message-ID can be added to it (submission).
        held_.append(bytes.data(), bytes.size());
        if (headers_.in_headers()) return;
        flush_held();
        return;
    }
    write(bytes);
}

void Session::write(std::string_view bytes) {
    if (too_big_ || write_failed_ || !writer_ || bytes.empty()) return;
    if (auto r = writer_->append(bytes); !r) {
        log::warn("%s: queue file write error: %s", writer_->id().c_str(), r.error().text.c_str());
        write_failed_ = true;
    }
}

// Writes the held header section with Date and Message-ID added when absent
// (at the end of the headers, as Postfix's cleanup does), then the rest.
void Session::flush_held() {
    std::size_t cut;
    if (held_.compare(0, 2, "\r\n") == 0) cut = 0;
    else if (auto e = held_.find("\r\n\r\n"); e != std::string::npos) cut = e + 2;
    else cut = held_.size();  // no body, or headers past the scan limit
    if (cut == held_.size() && held_.size() >= kHeaderScanLimit) {
        // Note: headers too long to scan are stored as they are.
        write(held_);
        held_.clear();
        return;
    }
    std::string add;
    if (!headers_.value("Date")) add += "Date: " + rfc5322_date() + "\r\n";
    if (!headers_.value("Message-ID")) {
        auto id = "<" + std::to_string(backend_.now_us()) + "." + writer_->id() + "@" + s_.hostname + ">";
        add += "Message-ID: " + id + "\r\n";
        added_message_id_ = id;
    }
    if (cut == held_.size() && !held_.empty() && held_.back() != '\n') add = "\r\n" + add;
    write(std::string_view(held_).substr(0, cut));
    write(add);
    write(std::string_view(held_).substr(cut));
    held_.clear();
}

void Session::end_message() {
    phase_ = Phase::Command;
    std::string refusal;
    if (!chunk_refusal_.empty()) {
        refusal = chunk_refusal_;
        chunk_refusal_.clear();
        reset_transaction();
        if (refusal[0] == '5') error_reply(refusal);
        else reply(refusal);
        return;
    }
    if (reader_ && reader_->defect()) {
        refusal = "550 5.5.2 Error: message refused: " + *reader_->defect() + " received (only <CR><LF> ends a line)";
    } else if (too_big_) {
        refusal = "552 5.3.4 Error: message file too big";
    } else if (write_failed_) {
        refusal = "451 4.3.0 Error: queue file write error";
    }
    if (!refusal.empty()) {
        std::string id = writer_ ? writer_->id() : std::string("NOQUEUE");
        log::info("%s: reject: %s from %s: %s; from=<%s> proto=%s helo=<%s>", id.c_str(), bdat_used_ ? "BDAT" : "DATA",
                  peer_.text().c_str(), refusal.c_str(), util::printable(env_.sender).c_str(), proto().c_str(),
                  util::printable(helo_, 100).c_str());
        reset_transaction();
        if (refusal[0] == '5') error_reply(refusal);
        else reply(refusal);
        return;
    }
    if (s_.add_missing_headers && !held_.empty()) flush_held();
    if (s_.add_missing_headers && held_.empty() && !added_message_id_ && headers_.in_headers() && size_ == 0)
        flush_held();  // an empty message still gets Date and Message-ID
    if (write_failed_) {
        reset_transaction();
        return reply("451 4.3.0 Error: queue file write error");
    }
    if (auto r = writer_->finish(); !r) {
        log::warn("%s: queue file write error: %s", writer_->id().c_str(), r.error().text.c_str());
        reset_transaction();
        return reply("451 4.3.0 Error: queue file write error");
    }
    if (auto mid = added_message_id_ ? added_message_id_ : headers_.value("Message-ID"))
        log::info("%s: message-id=%s", writer_->id().c_str(), util::printable(*mid, 300).c_str());
    if (!bdat_used_) count_ok("data");  // BDAT chunks were counted as they came
    // 250 only after the file is durable (DESIGN.md): wait for the commit.
    paused_ = true;
    std::weak_ptr<bool> alive = alive_;
    std::string sender = env_.sender;
    std::size_t nrcpt = env_.recipients.size();
    std::uint64_t size = size_;
    backend_.commit(std::move(writer_), [this, alive, sender, nrcpt, size](Result<std::string> r) {
        if (r) {
            log::info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)", r->c_str(), util::printable(sender).c_str(),
                      static_cast<unsigned long long>(size), nrcpt);
        } else {
            log::warn("queue file commit failed: %s", r.error().text.c_str());
        }
        auto a = alive.lock();
        if (!a || !*a) return;  // the client is gone; the message (if any) is queued
        paused_ = false;
        reset_transaction();
        if (r) reply("250 2.0.0 Ok: queued as " + *r);
        else reply("451 4.3.0 Error: queue file write error");
        process();
        io_.resume();
    });
}

std::string Session::rfc5322_date() const {
    char date[64];
    std::time_t now = static_cast<std::time_t>(backend_.now_us() / 1000000);
    std::tm tm{};
    localtime_r(&now, &tm);
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
    return date;
}

std::string Session::received_header() const {
    std::string date = rfc5322_date();
    std::string h = "Received: from " + util::printable(helo_, 100) + " (" + peer_.name + " [" + peer_.addr + "])\r\n";
    if (io_.tls_active()) h += "\t(using " + io_.tls_summary() + ")\r\n";
    h += "\tby " + s_.hostname + " (" + s_.mail_name + ") with " + proto() + " id " + writer_->id();
    if (env_.recipients.size() == 1) h += "\r\n\tfor <" + util::printable(env_.recipients[0].address, 300) + ">";
    h += "; " + std::string(date) + "\r\n";
    return h;
}

}  // namespace postern::smtpd
