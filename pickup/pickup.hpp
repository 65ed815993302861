// NAME
//   pickup/pickup.hpp - moves maildrop/ files written by sendmail(1) into the queue
// PURPOSE
//   The logic of the pickup daemon, without sockets: list maildrop/, read each
//   complete file as hostile input, decide the envelope sender from the
//   file's owner, write a fresh queue file into incoming/ with queue::Writer
//   (the code smtpd uses), and remove the maildrop file, so that a crash at
//   any point neither loses nor doubles a message. Not a submission program
//   (sendmail writes maildrop files) and not a scheduler (qmgr).
//
//   Maildrop protocol: sendmail, running as the invoking user with setgid
//   posterndrop, writes a normal queue file (lib/queue format) directly in
//   maildrop/ with mode 0600, then fchmod 0644 and fsync when it is complete.
//   Files that are not 0644 are still being written and are left alone; one
//   that stays so for more than IncompleteAge goes to corrupt/. The owner
//   (st_uid) is the submitting user; nothing in the content says who that is.
//   The 'S' record is the -f address when the origin ('o') is "sendmail -f";
//   it is used only for users in sendmail_sender_override_users (root
//   always); otherwise the sender is the owner's login name @ $myorigin.
//
// CRASH SAFETY (maildrop/NAME -> incoming/ID)
//   1. write the new queue file under its temp name (incoming/.tmp-*), with
//      origin "pickup uid=N maildrop=NAME id=MID" (MID: the queue ID sendmail
//      wrote in the maildrop file, so a reused NAME is never mistaken);
//   2. rename maildrop/NAME -> incoming/.pickup-NAME, fsync incoming/ and
//      maildrop/ (the new name first, so the file is never nameless);
//   3. commit the queue file (fsync, rename to incoming/ID, fsync incoming/);
//   4. unlink incoming/.pickup-NAME.
//   If the commit fails, .pickup-NAME goes back to maildrop/NAME. recover()
//   runs at start-up, before the first pass: for each incoming/.pickup-NAME
//   left over, a queue file in incoming/ active/ deferred/ hold/ whose
//   origin names maildrop=NAME id=MID (MID read from the leftover) means
//   step 3 was done: the leftover is
//   removed; otherwise it goes back to maildrop/NAME and is picked up again.
//   Master's start-up cleanup removes only incoming/.tmp-* (step 1 leftovers,
//   never committed). One pickup at a time: the daemon holds a lock on
//   maildrop/ (see main.cpp) so recover() never races a pass in progress.
// SYNOPSIS
//   pickup::Pickup p(settings, users);
//   p.recover();
//   while (p.run_pass() == pickup::PassResult::More) {}
//   auto s = pickup::decide_sender(env, uid, "alice", policy, "example.org");
//   auto h = pickup::received_header("mail.example.org", "Postern", 1000, id, now_us);
//   pickup::HeaderCheck hc;  hc.feed(bytes) ...;  auto why = hc.problem(102400, 1000);
// ERRORS
//   A bad maildrop file is moved to corrupt/ with a warning naming the uid.
//   I/O trouble (disk full) leaves the file in maildrop/ for the next pass and
//   is logged; nothing is ever removed before its queue file is committed.
// SECURITY
//   Runs as mail_owner chrooted in the queue directory. Files are opened with
//   O_NOFOLLOW|O_NONBLOCK, must be regular, 0644 and at most
//   message_size_limit + EnvelopeSlack bytes; queue::read_envelope checks
//   every length. Content is copied in chunks, never held whole in memory.
//   Recipients: at least one, at most recipient_limit, no control characters.
//   Header: HeaderCheck measures it as it streams by, in constant memory: a
//   field longer than header_size_limit bytes or more than
//   header_field_limit fields get a warning naming the uid, and the message
//   is queued whole all the same. Note: Postfix cuts such a header; we do
//   not, because sendmail already said "queued" and every way of enforcing
//   the limit here loses mail: cutting loses text, corrupt/ stops the
//   message, a bounce returns at most bounce_size_limit bytes. Readers
//   further on bound their own header scans, as they must for smtpd's mail.
// SEE ALSO
//   queue/queue.hpp, pickup(8), sendmail(1), Postfix pickup(8)
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "queue/queue.hpp"
#include "util/result.hpp"

namespace postern::pickup {

inline constexpr std::string_view LeftoverPrefix = ".pickup-";
inline constexpr int64_t IncompleteAge = 3600;          // seconds before a 0600 file is corrupt
inline constexpr std::size_t EnvelopeSlack = 1u << 20;  // file size allowed above message_size_limit
inline constexpr std::size_t MaxNameLength = 200;       // maildrop file names we handle
inline constexpr std::size_t MaxAddressLength = 998;
inline constexpr std::size_t MaxHeaderFields = 1000;     // header fields before a warning

// Who may choose their envelope sender with sendmail -f.
struct SenderPolicy {
    bool anyone = false;             // "static:anyone"
    std::vector<std::string> users;  // login names; root is always allowed
    static SenderPolicy parse(std::string_view value);
    bool allows(uid_t uid, std::string_view login) const;
};

// The envelope sender for a maildrop file owned by uid (login name login).
std::string decide_sender(const queue::Envelope& env, uid_t uid, std::string_view login, const SenderPolicy& policy,
                          std::string_view myorigin);

// Checks what pickup will not pass on; Error::perm naming the problem.
Result<void> validate(const queue::Envelope& env, std::size_t recipient_limit);

// "Received: by HOST (MAILNAME, from userid N)\r\n\tid ID; DATE\r\n" (local time).
std::string received_header(std::string_view myhostname, std::string_view mail_name, uid_t uid,
                            std::string_view queue_id, int64_t now_us);

// What a queue file's origin names after "maildrop=" ("NAME id=MID"), if it came from pickup.
std::optional<std::string> origin_maildrop_name(std::string_view origin);

// Measures the header section of message content as it streams by, in
// constant memory: the number of header fields and the size of the largest
// (its lines with the CRLFs between them, without the final CRLF). The
// section ends at an empty line or at a line that is not a header field
// ("Name:" or "Name :" first, or white space continuing a field); further
// bytes are ignored. Any bytes are fine; CRLF and bare LF both end lines.
class HeaderCheck {
public:
    void feed(std::string_view bytes) noexcept;
    bool in_header() const noexcept { return state_ != State::Done; }
    std::size_t fields() const noexcept { return fields_; }
    std::size_t largest_field() const noexcept { return largest_ > cur_ ? largest_ : cur_; }
    // Which limit the header breaks, as log text; "" when none.
    std::string problem(std::size_t header_size_limit, std::size_t field_limit) const;

private:
    enum class State { LineStart, Name, NameSpace, Value, Done };
    void end_field() noexcept;
    void not_a_field() noexcept;

    State state_ = State::LineStart;
    std::size_t fields_ = 0;
    std::size_t cur_ = 0;      // bytes of the field being read
    std::size_t largest_ = 0;  // largest finished field
    std::size_t term_ = 0;     // line ending before this line: 2 CRLF, 1 LF
    bool cr_ = false;          // the last byte was a CR
};

struct Settings {
    std::string queue_dir = ".";
    std::string myhostname = "localhost";
    std::string myorigin = "localhost";
    std::string mail_name = "Postern";
    uint64_t message_size_limit = 10240000;
    std::size_t recipient_limit = 1000;
    std::size_t batch_limit = 1000;  // files handled per pass
    std::size_t header_size_limit = 102400;
    std::size_t header_field_limit = MaxHeaderFields;
    SenderPolicy sender_policy;
};

// uid -> login name; nullopt = unknown uid. Pickup is chrooted, so main.cpp
// takes a snapshot of the passwd database before the jail.
using UserLookup = std::function<std::optional<std::string>(uid_t)>;

// Snapshot of the passwd database (getpwent), at most max_users entries;
// taken before the jail, where /etc/passwd is out of sight.
UserLookup snapshot_users(std::size_t max_users = 200000);

// Pokes qmgr to scan incoming/ ("A" on private/qmgr); failures are ignored:
// qmgr finds the files on its own scan.
void trigger_qmgr(const std::string& queue_dir);

enum class PassResult { Done, More };

class Pickup {
public:
    Pickup(Settings s, UserLookup users, std::function<int64_t()> now_us);

    // Crash recovery (see CRASH SAFETY); returns how many leftovers it handled.
    std::size_t recover();
    // One bounded pass over maildrop/: More when files were left for the next.
    PassResult run_pass();
    // Messages queued since the last call (for the qmgr trigger).
    std::size_t take_committed() { return std::exchange(committed_, 0); }
    // Set when a file's owner has no passwd entry in a snapshot older than
    // the file: a fresh process (new snapshot) should take over.
    bool needs_new_user_table() const noexcept { return stale_users_; }

private:
    enum class Outcome { Queued, Skipped, Corrupt, Later };
    Outcome handle(const std::string& name);
    Result<std::string> queue_file(int fd, const std::string& name, uid_t uid, const std::string& login,
                                   const queue::Envelope& env, uint64_t content_off);
    void to_corrupt(const std::string& name, uid_t uid, const std::string& why);
    std::string path(std::string_view subdir, std::string_view name = {}) const;

    Settings s_;
    UserLookup users_;
    std::function<int64_t()> now_us_;
    int64_t started_us_;
    std::size_t committed_ = 0;
    bool stale_users_ = false;
};

}  // namespace postern::pickup
