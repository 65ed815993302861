// NAME
//   local/aliases.hpp - expanding a local recipient into deliveries
// PURPOSE
//   Turns one local recipient into the list of things to do: mailboxes of
//   users, files, commands, and addresses to forward to, following alias_maps,
//   ~/.forward files and :include: files recursively, as Postfix local(8) does.
//   Every step that fails (unknown user, loop, a map that is down, a command
//   where commands are not allowed) becomes a Failure with its Status, so the
//   caller reports one outcome per queue recipient: the worst of all.
//   All system access (maps, passwd, reading files as a user) goes through a
//   Resolver, so unit tests drive the logic with fakes. Not the deliveries
//   themselves (local/agent.hpp) and not entry syntax (local/forward.hpp).
// RULES
//   - Alias keys are lower-case local parts; "bob+ext" is looked up, then "bob".
//   - A name that reappears inside its own expansion ("bob: bob, |filter") or
//     is written \bob means bob's mailbox, without more alias or .forward
//     lookups. Any other name already being expanded higher up is a loop: that
//     entry bounces with 5.4.6 "mail forwarding loop for ADDRESS".
//   - Depth is limited to max_depth (20); one recipient expands into at most
//     max_items deliveries and failures (and at most 4 * max_items expansion
//     steps); beyond that the recipient bounces 5.3.0 before anything is
//     delivered. A destination, alias, .forward or :include: file reached
//     twice is done once.
//   - Files and commands from aliases run as default_privs, from a .forward as
//     the user, from an :include: file as its owner (default_privs when root
//     owns it). allow_mail_to_commands/files decide per source (alias,
//     forward, include); refused ones bounce 5.7.1.
//   - A user with uid 0 never gets a mailbox, .forward, file or command of
//     their own: their mail must be aliased. It is deferred (4.3.0) with a
//     reason saying so, not bounced, so nothing is lost while the
//     administrator adds the alias.
//   - Addresses in a domain that is not local are forwarded; the sender of the
//     forwarded copy is owner-ALIAS@domain when alias owner-ALIAS exists
//     (and the original sender is not <>).
// SYNOPSIS
//   Expander x(resolver, {.delimiters = "+"});
//   Plan p = x.expand("bob+x@example.com", "bob+x", "example.com", "sender@a.example");
//   for (auto& t : p.targets) ...;  for (auto& f : p.failures) ...;
// ERRORS
//   None thrown; every problem is a Failure in the plan.
// SECURITY
//   Never produces a File, Command or Mailbox target that runs as uid 0.
//   Include and .forward files are read through the Resolver as the user whose
//   rights apply, and only obeyed when safe (local/forward.hpp unsafe_file).
// SEE ALSO
//   local/forward.hpp, local/agent.hpp, aliases(5), Postfix local(8)
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "local/forward.hpp"
#include "local/status.hpp"
#include "privs/privs.hpp"
#include "util/result.hpp"

namespace postern::local {

enum class Source { Alias, Forward, Include };
std::string_view source_name(Source s) noexcept;  // "alias" "forward" "include"

struct Target {
    enum class Kind { Mailbox, File, Command, Forward };
    Kind kind = Kind::Mailbox;
    std::string address;    // the address this delivery is for (logged as to=<...>)
    std::string text;       // File: path; Command: command line; Forward: address; Mailbox: ""
    Source source = Source::Alias;
    privs::UserInfo as;     // Mailbox: the user; File, Command: who runs it
    std::string extension;  // Mailbox, Command: the recipient's extension
    std::string sender;     // Forward: envelope sender of the new copy
};

// Identifies a destination: the same key means the same delivery.
std::string target_key(const Target& t);

struct Failure {
    std::string address;
    Status status;
};

struct Plan {
    std::vector<Target> targets;
    std::vector<Failure> failures;
};

// A file read for the expander: its text and owner.
struct FileText {
    std::string path;
    std::string text;
    uid_t owner = 0;
};

class Resolver {
public:
    virtual ~Resolver() = default;
    // alias_maps: value of the (lower-case) key.
    virtual Result<std::optional<std::string>> alias(std::string_view key) = 0;
    virtual Result<std::optional<privs::UserInfo>> user(std::string_view name) = 0;
    virtual Result<std::optional<privs::UserInfo>> user_by_uid(uid_t uid) = 0;
    virtual Result<privs::UserInfo> default_privs() = 0;
    // The first forward_path file of u that exists and is safe, read as u;
    // nullopt when there is none.
    virtual Result<std::optional<FileText>> forward_file(const privs::UserInfo& u, std::string_view extension,
                                                        std::string_view domain) = 0;
    // An :include: file read as reader; Error::temp when missing, unreadable or unsafe.
    virtual Result<FileText> include_file(const std::string& path, const privs::UserInfo& reader) = 0;
    virtual bool local_domain(std::string_view domain) = 0;
    // allow_mail_to_commands / allow_mail_to_files.
    virtual bool allowed(Target::Kind kind, Source source) = 0;
};

struct ExpandOptions {
    std::string delimiters = "+";
    std::size_t max_depth = 20;
    std::size_t max_items = 10000;
};

class Expander {
public:
    Expander(Resolver& r, ExpandOptions o) : r_(r), o_(std::move(o)) {}
    // address: the queue recipient; local/domain: its parts (domain local or
    // empty); sender: the envelope sender ("" for <>).
    Plan expand(const std::string& address, const std::string& local, const std::string& domain,
                const std::string& sender);

private:
    // Where entries come from: decides the rights, the self name and the sender.
    struct Context {
        Source source = Source::Alias;
        privs::UserInfo runner;  // files/commands run as, files are read as
        std::string self;        // lower-case name whose expansion this is
        std::string address;     // the address being expanded (for to=<...>)
        std::string extension;   // of that address
        std::string domain;      // for unqualified names
        std::string sender;
        std::size_t depth = 0;
    };

    void recipient(const std::string& address, const std::string& local, const std::string& domain,
                   const std::string& sender, std::size_t depth, bool direct);
    bool try_alias(const std::string& address, const std::string& key, const std::string& extension,
                   const std::string& domain, const std::string& sender, std::size_t depth);
    bool try_forward(const privs::UserInfo& u, const std::string& address, const std::string& domain,
                     const std::string& extension, const std::string& sender, std::size_t depth);
    bool on_stack(const std::string& mark) const;
    void entries(const std::vector<Entry>& list, const Context& ctx);
    void entry(const Entry& e, const Context& ctx);
    void include(const std::string& path, const Context& ctx);
    void mailbox(const privs::UserInfo& u, const std::string& address, const std::string& extension);
    void add(Target t);
    void fail(const std::string& address, Status s);
    bool full();
    bool step();  // counts work; false once the expansion is too big
    std::string owner_sender(const std::string& key, const std::string& domain, const std::string& sender);

    Resolver& r_;
    ExpandOptions o_;
    Plan plan_;
    std::vector<std::string> stack_;  // "alias:key", "user:name", "include:path" being expanded
    std::set<std::string> seen_;      // destinations already in the plan
    std::set<std::string> expanded_;  // marks whose expansion is in the plan already
    std::set<std::string> plain_users_;  // "user:name[+ext]" without a .forward
    std::size_t steps_ = 0;
    bool overflow_ = false;
};

}  // namespace postern::local
