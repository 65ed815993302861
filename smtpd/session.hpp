// NAME
//   smtpd/session.hpp - one SMTP server session, without sockets
// PURPOSE
//   The RFC 5321 state machine: greeting, EHLO/HELO, MAIL, RCPT, DATA, BDAT,
//   RSET, NOOP, QUIT, VRFY, HELP, STARTTLS, with PIPELINING, SIZE, 8BITMIME,
//   SMTPUTF8, DSN, CHUNKING and ENHANCEDSTATUSCODES, AUTH PLAIN/LOGIN (RFC
//   4954, checked by the Backend); relay control, recipient
//   validation, limits, the Received header and Postfix-shaped log lines. It
//   takes bytes and answers through an Io; storage and lookups go through a
//   Backend. Unit tests drive it directly; smtpd/server.cpp connects it to
//   libevent. Not for TLS itself or the queue file format.
// SYNOPSIS
//   Session s(settings, backend, io, peer);
//   s.start();                 // greeting (or a refusal)
//   s.feed(bytes);             // commands and message data; replies via io
//   s.on_timeout();            // 421 and close
// ERRORS
//   Client mistakes become replies with enhanced status codes; internal
//   failures become 4xx (STYLE E4). Nothing is thrown across feed().
// SECURITY
//   Every input has a limit (line length, recipients, message size, errors);
//   DATA ends only at CRLF.CRLF and bare LF/CR/NUL refuse the message;
//   plaintext pipelined after STARTTLS is discarded; an over-long line is
//   refused as a whole, never split into two commands.
// SEE ALSO
//   smtpd/protocol.hpp, smtpd/data.hpp, smtpd/server.hpp
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl.hpp"
#include "config/config.hpp"
#include "smtpd/data.hpp"
#include "smtpd/protocol.hpp"
#include "util/cidr.hpp"
#include "util/result.hpp"

namespace postern::smtpd {

struct Settings {
    std::string hostname;
    std::string banner;
    std::string mail_name = "Postern";
    std::set<std::string> local_domains;
    std::set<std::string> relay_domains;
    std::set<std::string> virtual_domains;
    util::NetList mynetworks;
    bool tls_required = false;     // smtpd_tls_security_level = encrypt
    bool sasl_enabled = false;     // offer AUTH (smtpd_sasl_auth_enable)
    bool auth_required = false;    // submission: AUTH before MAIL (smtpd_sasl_auth_required)
    bool tls_auth_only = true;     // no AUTH in plaintext, except to loopback clients when false
    std::size_t sasl_failure_limit = 3;
    bool sender_login_check = false;  // smtpd_reject_sender_login_mismatch
    std::uint64_t size_limit = 10240000;
    std::size_t rcpt_limit = 1000;
    std::size_t line_limit = 2048;
    std::size_t hard_error_limit = 20;
    bool vrfy_disabled = true;
    std::string delimiter = "+";
    bool reject_unlisted = true;
    bool add_missing_headers = false;  // submission: add Date and Message-ID
    bool reject_pregreet = true;

    static Result<Settings> from(const config::Params& p);
};

struct Peer {
    std::string addr = "unknown";
    std::string name = "unknown";
    std::string text() const { return name + "[" + addr + "]"; }
};

// Who authenticated, as the auth daemon named them.
struct AuthUser {
    std::string name;      // "alice" or "alice@example.org"
    bool virtual_user = false;
    std::string method;    // "PLAIN", "LOGIN"
};

enum class AuthOutcome { Ok, Fail, Locked, TempFail };

struct Recipient {
    std::string address;
    std::string orcpt;
    unsigned notify = 0;
};

// What the session stores: handed to the Backend to write the queue file.
struct Envelope {
    std::int64_t arrival_us = 0;
    std::string client_name, client_addr, helo, protocol, sender, envid, ret, body;
    std::string sasl_method, sasl_username;
    bool smtputf8 = false;
    std::vector<Recipient> recipients;
};

class MessageWriter {
public:
    virtual ~MessageWriter() = default;
    virtual const std::string& id() const = 0;
    virtual Result<void> append(std::string_view bytes) = 0;
    virtual Result<void> finish() = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    // Is this (lower-cased, extension-free) local part a local user or alias?
    // nullopt: cannot tell now (map down): the client should try later.
    virtual std::optional<bool> local_user_exists(std::string_view local) = 0;
    // Is this address (lower-cased, extension-free) a virtual mailbox?
    virtual std::optional<bool> virtual_user_exists(std::string_view address) = 0;
    virtual Result<std::unique_ptr<MessageWriter>> open_message(const Envelope& env) = 0;
    // Makes the message durable (fsync + rename + fsync dir) off the event
    // loop; calls done on the loop with the queue ID or an error.
    virtual void commit(std::unique_ptr<MessageWriter> w, std::function<void(Result<std::string>)> done) = 0;
    virtual std::int64_t now_us() = 0;
    // Checks a password with the auth daemon, off the event loop; done runs on
    // the loop, never inside this call. user: the canonical name when Ok.
    virtual void authenticate(std::string_view mechanism, std::string_view user, std::string_view password,
                              const Peer& client, bool tls, std::function<void(AuthOutcome, AuthUser)> done) = 0;
    // Does this authenticated user own the envelope sender (lower-cased)?
    // nullopt: cannot tell now (table down).
    virtual std::optional<bool> sender_owned(std::string_view sender, const AuthUser& user) = 0;
};

class Io {
public:
    virtual ~Io() = default;
    virtual void reply(std::string_view text) = 0;  // one or more CRLF-terminated lines
    virtual void close() = 0;                       // after the pending replies are sent
    virtual bool tls_available() const = 0;
    virtual bool tls_active() const = 0;
    virtual std::string tls_summary() const = 0;    // "TLSv1.3 with cipher ..."
    virtual void start_tls() = 0;                   // after the 220 reply is sent
    virtual void resume() {}                        // a commit finished: read input again
};

class Session {
public:
    Session(const Settings& settings, Backend& backend, Io& io, Peer peer);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();
    void feed(std::string_view bytes);
    void on_timeout();
    // The client went away: log the disconnect line (once).
    void on_disconnect();
    bool closed() const noexcept { return closed_; }
    bool started() const noexcept { return started_; }
    std::string peer_text() const { return peer_.text(); }
    // The client's verified host name (smtpd/peername.hpp), set before start().
    void set_peer_name(std::string name) { peer_.name = std::move(name); }
    bool waiting() const noexcept { return paused_; }  // a commit is in flight
    // TLS became active (after start_tls()): reset to the pre-EHLO state.
    void tls_started();

private:
    void process();
    bool handle_line(std::string_view line);
    void reply(const std::string& text);
    void error_reply(const std::string& text);
    void reset_transaction();
    void count(const std::string& name, bool ok);
    void count_ok(std::string_view name);
    std::string proto() const;
    void log_reject(const std::string& cmd, const std::string& reply, const std::string& to);

    void do_helo(const Command& c, bool ehlo);
    void do_mail(const Command& c);
    void do_rcpt(const Command& c);
    void do_data();
    void do_bdat(const Command& c);
    void do_vrfy(const Command& c);
    bool do_starttls(const Command& c);  // true: TLS is starting
    void do_auth(const Command& c);
    void sasl_line(std::string_view line);
    void sasl_step(const sasl::SaslServer::Step& step);
    void auth_done(AuthOutcome outcome, AuthUser user);
    void auth_failed(const std::string& reply_text);
    bool auth_offered() const;
    bool open_writer();
    void content(std::string_view bytes);
    void write(std::string_view bytes);
    void flush_held();
    std::string rfc5322_date() const;
    void end_message();
    void abort_message();
    std::string received_header() const;

    const Settings& s_;
    Backend& backend_;
    Io& io_;
    Peer peer_;
    // The session object may be gone when a commit completes; the callback
    // checks this flag. Note: shared_ptr because the commit pool holds the
    // callback on another queue; the flag is only touched on the loop thread.
    std::shared_ptr<bool> alive_;

    std::string in_;
    bool closed_ = false, paused_ = false, processing_ = false, started_ = false, pregreeted_ = false, discarding_line_ = false, disconnected_ = false;
    std::string helo_;
    bool ehlo_ = false, greeted_ = false;
    std::size_t errors_ = 0;
    std::vector<std::pair<std::string, std::pair<int, int>>> counts_;  // name -> (ok, total)

    // SMTP AUTH: an exchange in progress, its outcome, failures so far.
    std::unique_ptr<sasl::SaslServer> sasl_;
    std::optional<AuthUser> auth_user_;
    std::size_t auth_failures_ = 0;

    // Transaction.
    bool have_mail_ = false;
    Envelope env_;
    MailParams mail_params_;
    enum class Phase { Command, Data, Bdat } phase_ = Phase::Command;
    std::unique_ptr<DataReader> reader_;
    HeaderScanner headers_;
    std::unique_ptr<MessageWriter> writer_;
    std::uint64_t size_ = 0;
    bool too_big_ = false, write_failed_ = false;
    std::uint64_t bdat_left_ = 0;
    bool bdat_last_ = false, bdat_used_ = false;
    std::string chunk_;
    std::string chunk_refusal_;  // BDAT refused before its bytes were read
    std::string held_;           // header section held back (add_missing_headers)
    std::optional<std::string> added_message_id_;
};

}  // namespace postern::smtpd
