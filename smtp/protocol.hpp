// NAME
//   smtp/protocol.hpp - the SMTP client side of one session, without sockets
// PURPOSE
//   What the smtp delivery agent says to a remote server and how it reads the
//   answers (RFC 5321): the greeting, EHLO (HELO when EHLO is refused),
//   STARTTLS (RFC 3207) as the TLS policy asks, AUTH PLAIN/LOGIN to a relay
//   (RFC 4954, only inside TLS), then any number of transactions (MAIL, RCPT,
//   DATA), pipelined when the server offers PIPELINING (RFC 2920), with SIZE
//   (RFC 1870), BODY=8BITMIME, SMTPUTF8 (RFC 6531) and the DSN parameters
//   (RFC 3461) when offered; QUIT. It turns replies into a result per
//   recipient with the remote text ("host mx.example[192.0.2.1] said: 550
//   5.1.1 ... (in reply to RCPT TO command)"). The session glue
//   (smtp/session.cpp) owns the socket, TLS, timeouts and the connection
//   cache; unit tests drive this class directly. Not for DNS (smtp/dest.hpp)
//   or the queue file (the glue streams the content through ContentSource).
// SYNOPSIS
//   Client c(settings, io, "mx.example[192.0.2.1]:25");
//   c.feed(bytes);                        // server replies; commands go out through io.send()
//   // when c.state() == State::Ready:
//   c.begin(txn, source, [](const TransactionResult& r) {...});
//   c.pump();                             // io's output drained: more message content
//   c.tls_started();                      // after io.start_tls() finished its handshake
//   c.quit();                             // or: keep it Ready for the next begin() (connection reuse)
// OUTCOMES
//   Session failures (no greeting or a 4xx/5xx one, EHLO and HELO refused,
//   TLS required by policy but not offered or failing, AUTH refused, a
//   reply that cannot be parsed, the connection lost or timed out before
//   MAIL) end the session: a pending transaction gets TransactionResult with
//   session_failed = true and no recipient results, so the glue can try the
//   next MX host. After MAIL was sent, every recipient gets a result:
//   MAIL 4xx/5xx -> all deferred/bounced; RCPT 4xx/5xx -> that recipient;
//   DATA refused -> the accepted ones deferred/bounced; the reply to the
//   final "." decides for all accepted ones; a connection lost or timed out
//   in the middle defers those still open. An SMTPUTF8 message to a server
//   without SMTPUTF8 bounces at once (5.6.7), one larger than the server's
//   SIZE limit too (5.3.4), without sending MAIL. 8-bit content to a server
//   without 8BITMIME is sent as it is (documented in smtp(8)). DSN codes come
//   from the reply's enhanced status code, else X.0.0 from its class.
// ERRORS
//   Nothing is thrown across feed() or any other entry point; a protocol
//   error from the server ends the session as described above, and so does
//   an exception inside the Client (4.3.0, "internal error ...").
// SECURITY
//   Replies are untrusted: each line is bounded (MaxReplyLine, longer lines
//   end the session), a reply has at most MaxReplyLines lines, and reply
//   text in reasons is made printable and cut at MaxReasonText. Credentials
//   are only sent over TLS, never logged.
// SEE ALSO
//   RFC 5321, RFC 2920, RFC 3207, RFC 4954, RFC 1870, RFC 3461, RFC 6152,
//   RFC 6531; smtp/session.hpp; smtpd/session.hpp (the server side)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace postern::smtp {

inline constexpr std::size_t MaxReplyLine = 4096;   // bytes, CRLF included
inline constexpr std::size_t MaxReplyLines = 100;
inline constexpr std::size_t MaxReasonText = 500;

// One complete server reply.
struct Reply {
    int code = 0;                     // 220, 250, 354, 421, 550 ...
    std::string enhanced;             // "5.1.1" when the reply carries one, else ""
    std::vector<std::string> lines;   // the text after "250-" / "250 " of each line
    // "550 5.1.1 <x@y>: User unknown" (lines joined with a space, printable, cut at MaxReasonText).
    std::string text() const;
};

// Incremental reply reader: feed() any split of the bytes, next() the replies.
class ReplyParser {
public:
    Result<void> feed(std::string_view bytes);  // Error::protocol: bad syntax, line or count limit
    std::optional<Reply> next();
    bool failed() const noexcept { return failed_; }

private:
    std::string buf_;
    std::vector<Reply> ready_;
    std::optional<Reply> partial_;
    bool failed_ = false;
};

// What the server offered in its EHLO reply (all false after HELO).
struct Features {
    bool esmtp = false, pipelining = false, starttls = false, eightbitmime = false, smtputf8 = false, dsn = false;
    std::optional<std::uint64_t> size_limit;  // SIZE n (n = 0: no fixed limit -> nullopt)
    std::set<std::string> auth;               // upper-case mechanism names
};
Features parse_ehlo(const Reply& r);

enum class TlsPolicy { None, May, Encrypt, Verify };

struct ClientSettings {
    std::string helo_name;        // smtp_helo_name
    // myhostname: a server that names itself so in its EHLO/HELO reply is
    // this host (a loop: the session ends with 5.4.6); "" checks nothing.
    std::string myhostname;
    TlsPolicy tls = TlsPolicy::May;
    bool tls_available = false;   // the glue can do TLS (a client context was loaded)
    // Credentials for AUTH to this destination (smtp_sasl_password_maps); sent
    // only inside TLS, PLAIN preferred, then LOGIN.
    std::optional<std::pair<std::string, std::string>> auth;
};

struct Rcpt {
    std::uint32_t index = 0;   // the queue file's recipient index, echoed in results
    std::string address;
    std::string orcpt;         // "rfc822;addr" as queued, or ""
    unsigned notify = 0;       // queue::Notify* bits, 0 = not given
};

struct Transaction {
    std::string sender;        // "" = null sender
    std::string envid, ret;    // DSN parameters as queued ("" = none)
    std::string body;          // "8BITMIME", "7BIT" or ""
    bool smtputf8 = false;
    std::uint64_t size = 0;    // estimated content size, for SIZE=
    std::vector<Rcpt> rcpts;
};

struct RcptResult {
    enum class Kind { Sent, Deferred, Bounced };
    std::uint32_t index = 0;
    Kind kind = Kind::Deferred;
    std::string dsn;     // "2.0.0", "4.4.2", "5.1.1"
    std::string reason;  // "250 2.0.0 Ok: queued as X" / "host ... said: ... (in reply to RCPT TO command)"
};

struct TransactionResult {
    bool session_failed = false;   // nothing was decided: try another host (reason says why)
    std::string reason;            // session_failed: "host mx[1.2.3.4] said: 421 ... (in reply to EHLO command)",
                                   // or "connection lost with mx[...] while receiving the initial server greeting"
    std::string dsn;               // session_failed: the DSN to use if no other host works ("4.4.2", "5.7.4"...)
    std::vector<RcptResult> rcpts; // one per recipient of the transaction, unless session_failed
};

// The message content, read as the session needs it. next() gives the next
// piece of raw content (CRLF lines, as queued, not dot-stuffed), an empty
// optional at the end, or an error (the transaction is then aborted: the
// connection is dropped and the open recipients deferred with the error).
class ContentSource {
public:
    virtual ~ContentSource() = default;
    virtual Result<std::optional<std::string>> next() = 0;
};

class ClientIo {
public:
    virtual ~ClientIo() = default;
    virtual void send(std::string_view bytes) = 0;
    // After "220" to STARTTLS: start the TLS handshake; the glue calls
    // Client::tls_started() when it is done, or Client::on_tls_failed(why).
    virtual void start_tls() = 0;
    virtual bool tls_active() const = 0;
    virtual std::size_t output_pending() const = 0;  // bytes not yet written to the socket
    virtual void close() = 0;                        // after what was sent
};

class Client {
public:
    enum class State { Greeting, Helo, StartTls, Auth, Ready, Busy, Quitting, Closed };

    Client(const ClientSettings& settings, ClientIo& io, std::string peer_text);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    void feed(std::string_view bytes);
    void tls_started();
    void on_tls_failed(const std::string& why);
    void on_timeout();       // the glue's timer for the current step fired
    void on_disconnect();    // the peer closed or the socket failed

    // Starts a transaction; State must be Ready (begun earlier, while the
    // session is still being set up, it waits until then; begun after the
    // session ended, it fails at once with session_failed). One transaction at
    // a time. done runs exactly once: possibly inside begin() itself (SMTPUTF8
    // and SIZE bounces), else inside feed(), pump(), on_timeout(),
    // on_disconnect(), on_tls_failed() or quit(). When it runs, state() is
    // already Ready (reusable) or Closed, and the Client touches none of its
    // members afterwards: done may begin() the next transaction, quit(), or
    // destroy the Client. src must live until done runs.
    void begin(Transaction t, ContentSource& src, std::function<void(const TransactionResult&)> done);
    // The output drained below the glue's low-water mark: send more content.
    void pump();
    void quit();

    State state() const noexcept { return state_; }
    const Features& features() const noexcept { return features_; }
    // What the glue should be waiting for now, for its timeouts: "greeting",
    // "helo", "starttls", "auth", "mail", "rcpt", "data", "data_done", "quit";
    // "data_done" also while the content is streamed; "" when idle or closed.
    std::string_view waiting_for() const noexcept;
    // The session said something unusual that ended it (for the log), and
    // the DSN code to use for it ("4.4.2", "5.7.4" ...); both "" until then.
    // A "host" in reasons is peer_text without a trailing ":port".
    const std::string& session_error() const noexcept { return session_error_; }
    const std::string& session_dsn() const noexcept { return session_dsn_; }
    // The session ended in a failed TLS handshake that the policy did not
    // require (may): the same server may well work without TLS.
    bool opportunistic_tls_failed() const noexcept { return opportunistic_tls_failed_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    State state_ = State::Greeting;
    Features features_;
    std::string session_error_, session_dsn_;
    bool opportunistic_tls_failed_ = false;
};

}  // namespace postern::smtp
