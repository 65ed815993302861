// NAME
//   sendmail/submit.hpp - what sendmail(1) does in each mode
// PURPOSE
//   The body of the sendmail command after option parsing: -bm (read stdin,
//   write one maildrop file, poke pickup), -bs (sendmail/smtp.hpp), -bv
//   (sendmail/verify.hpp), -bp (root: the postern command; others: the
//   showq(8) service, if authorized_mailq_users allows), and the root-only
//   modes that run the postern command (-bi, -q).
//   The maildrop protocol (shared with pickup): a normal queue file, made
//   by queue::Writer::create_maildrop (final name, 0600 while written), with
//   sender = the -f address ("" if none or -f <>), origin "sendmail -f" when
//   -f/-r was given and "sendmail" otherwise, the recipients with -N
//   NOTIFY, -R RET, -V ENVID, -B BODY, SMTPUTF8 when an address or a header
//   is not ASCII; then fchmod 0644 ("complete"), fsync, a "W" to
//   queue_directory/public/pickup (failure ignored), and exit 0 only then.
// SYNOPSIS
//   Context ctx = ...;   // params, invoking user, clock
//   Drop d(ctx, sender, rcpts, settings);  d.feed(bytes); d.finish(); d.commit();
//   int rc = run(opts, ctx, STDIN_FILENO);
// ERRORS
//   Failures are printed to stderr as "sendmail: <text>" and turned into
//   sysexits.h codes: EX_USAGE, EX_DATAERR (bad address, header too large,
//   message too large), EX_NOPERM, EX_CANTCREAT (maildrop file),
//   EX_TEMPFAIL (I/O), EX_IOERR (reading stdin), EX_UNAVAILABLE (-bp as
//   a user while showq is not running).
// SECURITY
//   Runs as the invoking user with setgid posterndrop; trusts nothing on
//   stdin; never holds more than the header and one read buffer in memory.
//   Commands (postern) run by execve with a fixed environment, root only.
// SEE ALSO
//   sendmail/options.hpp, sendmail/message.hpp, queue/queue.hpp, pickup(8)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "queue/queue.hpp"
#include "sendmail/message.hpp"
#include "sendmail/options.hpp"
#include "util/result.hpp"

namespace postern::sendmail {

struct Context {
    config::Params params;
    std::string config_dir;
    uid_t uid = 0;
    std::string login;       // the invoking user's name
    std::string full_name;   // from the gecos field
    int64_t now_us = 0;
    std::string date;        // Date header value for now
};

// Loads main.cf from config_dir_option, else $MAIL_CONFIG, else
// /etc/postern; looks up the invoking user; reads the clock.
Result<Context> make_context(const std::string& config_dir_option);

// An exit status with the message explaining it.
struct Failure {
    int code;
    std::string text;
};

// addr qualified with myorigin when it has no domain. Bad syntax or not
// exactly one address: EX_DATAERR.
std::optional<Failure> parse_one_address(std::string_view text, const Context& ctx, std::string& out);
// Every address of a list (command-line argument or RCPT), qualified.
std::optional<Failure> parse_addresses(std::string_view text, const Context& ctx, std::vector<std::string>& out);

bool is_ascii(std::string_view s) noexcept;

// One maildrop file being written.
class Drop {
public:
    struct Params {
        bool sender_given = false;
        std::string sender;               // qualified, "" = null sender
        std::vector<std::string> rcpts;   // qualified
        bool extract = false;
        bool ignore_dots = false;
        std::string full_name;
        unsigned notify = 0;
        std::string ret, envid, body;
    };
    Drop(const Context& ctx, Params p) : ctx_(ctx), p_(std::move(p)) {}

    std::optional<Failure> create();
    std::optional<Failure> feed(std::string_view bytes);
    std::optional<Failure> finish();
    // fchmod 0644 + fsync; then pokes pickup. Returns the queue ID in id_out.
    // Header lines that had to stay longer than 998 octets get a warning on
    // stderr (the message is queued all the same, unchanged).
    std::optional<Failure> commit(std::string& id_out);
    bool ended() const noexcept { return builder_ && builder_->ended(); }

private:
    std::optional<Failure> write_envelope();
    std::optional<Failure> drain();

    const Context& ctx_;
    Params p_;
    std::optional<queue::Writer> writer_;
    std::unique_ptr<MessageBuilder> builder_;
    bool envelope_written_ = false;
};

// Pokes pickup: connects to queue_dir/public/pickup and writes "W". Best effort.
void poke_pickup(const std::string& queue_dir) noexcept;

// mailq for users other than root: copies what queue_dir/public/showq
// sends to out_fd. Cannot connect: EX_UNAVAILABLE ("mailq: cannot connect
// to showq: ..."); a read timeout or error: EX_TEMPFAIL.
std::optional<Failure> copy_from_showq(const std::string& queue_dir, int out_fd);

// Runs mode o.mode; returns the exit status. in_fd/out_fd: stdin and stdout.
int run(const Options& o, const Context& ctx, int in_fd, int out_fd);

}  // namespace postern::sendmail
