// local/aliases.cpp - recursive expansion of aliases, .forward and :include: files.
#include "local/aliases.hpp"

#include <algorithm>

#include "local/recipient.hpp"
#include "util/strings.hpp"

namespace postern::local {
namespace {

Status loop(const std::string& address) { return Status::bounced("5.4.6", "mail forwarding loop for " + address); }

}  // namespace

std::string target_key(const Target& t) {
    switch (t.kind) {
    case Target::Kind::Mailbox: return "mailbox:" + std::to_string(t.as.uid) + ":" + t.as.name;
    case Target::Kind::File: return "file:" + std::to_string(t.as.uid) + ":" + t.text;
    case Target::Kind::Command: return "command:" + std::to_string(t.as.uid) + ":" + t.text;
    case Target::Kind::Forward: return "forward:" + util::to_lower(t.text);
    }
    return "";
}

std::string_view source_name(Source s) noexcept {
    switch (s) {
    case Source::Alias: return "alias";
    case Source::Forward: return "forward";
    case Source::Include: return "include";
    }
    return "alias";
}

Plan Expander::expand(const std::string& address, const std::string& local, const std::string& domain,
                      const std::string& sender) {
    plan_ = {};
    stack_.clear();
    seen_.clear();
    expanded_.clear();
    plain_users_.clear();
    steps_ = 0;
    overflow_ = false;
    recipient(address, local, domain, sender, 0, false);
    if (overflow_) {
        // Nothing has been delivered yet: refuse the whole recipient rather
        // than deliver a part of it again on every retry.
        plan_.targets.clear();
        plan_.failures = {{address, Status::bounced("5.3.0", "expansion of " + address + " gives more than " +
                                                                 std::to_string(o_.max_items) + " destinations")}};
    } else if (plan_.targets.empty() && plan_.failures.empty()) {
        fail(address, Status::deferred("4.3.5", "expansion of " + address + " gives no destinations"));
    }
    return std::move(plan_);
}

void Expander::recipient(const std::string& address, const std::string& local, const std::string& domain,
                         const std::string& sender, std::size_t depth, bool direct) {
    if (!step()) return;
    if (depth > o_.max_depth) {
        fail(address, Status::bounced("5.4.6", "mail forwarding loop for " + address + " (more than " +
                                                   std::to_string(o_.max_depth) + " levels of aliases)"));
        return;
    }
    const std::string lower = util::to_lower(local);
    const LocalPart part = split_extension(lower, o_.delimiters);
    if (!direct) {
        if (try_alias(address, lower, part.extension, domain, sender, depth)) return;
        if (!part.extension.empty() && try_alias(address, part.user, part.extension, domain, sender, depth)) return;
    }
    auto u = r_.user(part.user);
    if (!u) return fail(address, deferral(u.error()));
    if (!*u) return fail(address, Status::bounced("5.1.1", "unknown user: \"" + util::printable(lower) + "\""));
    if ((*u)->uid == 0) {
        return fail(address, Status::deferred("4.3.0", "mail for " + (*u)->name +
                                                           " is not delivered with uid 0: alias " + (*u)->name +
                                                           " to a real user in alias_maps"));
    }
    if (!direct && try_forward(**u, address, domain, part.extension, sender, depth)) return;
    mailbox(**u, address, part.extension);
}

bool Expander::try_alias(const std::string& address, const std::string& key, const std::string& extension,
                         const std::string& domain, const std::string& sender, std::size_t depth) {
    auto value = r_.alias(key);
    if (!value) {
        fail(address, deferral(value.error()));
        return true;
    }
    if (!*value) return false;
    const std::string mark = "alias:" + key;
    if (on_stack(mark)) {
        fail(address, loop(address));
        return true;
    }
    if (!expanded_.insert(mark).second) return true;  // reached before: its destinations are in the plan
    auto list = parse_entries(**value);
    if (!list) {
        fail(address, Status::deferred("4.3.5", "alias " + key + ": " + list.error().text));
        return true;
    }
    auto runner = r_.default_privs();
    if (!runner) {
        fail(address, deferral(runner.error(), "4.3.5"));
        return true;
    }
    Context ctx{Source::Alias, *runner, key, address, extension, domain, owner_sender(key, domain, sender), depth + 1};
    stack_.push_back(mark);
    entries(*list, ctx);
    stack_.pop_back();
    return true;
}

bool Expander::try_forward(const privs::UserInfo& u, const std::string& address, const std::string& domain,
                           const std::string& extension, const std::string& sender, std::size_t depth) {
    const std::string mark = "user:" + u.name + (extension.empty() ? "" : "+" + extension);
    if (on_stack(mark)) {
        fail(address, loop(address));
        return true;
    }
    if (expanded_.count(mark)) return true;
    if (plain_users_.count(mark)) return false;
    auto file = r_.forward_file(u, extension, domain);
    if (!file) {
        fail(address, deferral(file.error()));
        return true;
    }
    if (!*file) {
        plain_users_.insert(mark);
        return false;
    }
    auto list = parse_file_entries((*file)->text);
    if (!list) {
        fail(address, Status::deferred("4.3.5", (*file)->path + ": " + list.error().text));
        return true;
    }
    if (list->empty()) {  // an empty .forward changes nothing
        plain_users_.insert(mark);
        return false;
    }
    expanded_.insert(mark);
    Context ctx{Source::Forward, u, util::to_lower(u.name), address, extension, domain, sender, depth + 1};
    stack_.push_back(mark);
    entries(*list, ctx);
    stack_.pop_back();
    return true;
}

void Expander::entries(const std::vector<Entry>& list, const Context& ctx) {
    for (const Entry& e : list) {
        if (full()) return;
        entry(e, ctx);
    }
}

void Expander::entry(const Entry& e, const Context& ctx) {
    switch (e.kind) {
    case Entry::Kind::Address: {
        Address a = split_address(e.text);
        if (!a.domain.empty() && !r_.local_domain(a.domain)) {
            add({Target::Kind::Forward, e.text, e.text, ctx.source, {}, "", ctx.sender});
            return;
        }
        const std::string domain = a.domain.empty() ? ctx.domain : a.domain;
        const std::string address = a.local + (domain.empty() ? "" : "@" + domain);
        const bool direct = e.backslash || util::to_lower(a.local) == ctx.self;
        recipient(address, a.local, domain, ctx.sender, ctx.depth, direct);
        return;
    }
    case Entry::Kind::File:
    case Entry::Kind::Command: {
        const bool file = e.kind == Entry::Kind::File;
        const auto kind = file ? Target::Kind::File : Target::Kind::Command;
        if (!r_.allowed(kind, ctx.source)) {
            fail(ctx.address, Status::bounced("5.7.1", std::string("mail to ") + (file ? "file" : "command") +
                                                           " is restricted in " + std::string(source_name(ctx.source)) +
                                                           " entries: " + util::printable(e.text)));
            return;
        }
        POSTERN_ASSERT(ctx.runner.uid != 0);
        add({kind, ctx.address, e.text, ctx.source, ctx.runner, ctx.extension, ""});
        return;
    }
    case Entry::Kind::Include: include(e.text, ctx); return;
    }
}

void Expander::include(const std::string& path, const Context& ctx) {
    const std::string mark = "include:" + path;
    if (!step()) return;
    if (on_stack(mark)) return fail(ctx.address, loop(ctx.address));
    if (ctx.depth + 1 > o_.max_depth) return fail(ctx.address, loop(ctx.address));
    if (!expanded_.insert(mark).second) return;
    auto file = r_.include_file(path, ctx.runner);
    if (!file) return fail(ctx.address, Status::deferred("4.3.5", ":include:" + path + ": " + file.error().text));
    auto list = parse_file_entries(file->text);
    if (!list) return fail(ctx.address, Status::deferred("4.3.5", path + ": " + list.error().text));
    Context inner = ctx;
    inner.source = Source::Include;
    inner.depth = ctx.depth + 1;
    // Files and commands listed in an include file run as its owner; root's
    // rights are never lent, default_privs stands in.
    if (file->owner == 0) {
        auto d = r_.default_privs();
        if (!d) return fail(ctx.address, deferral(d.error(), "4.3.5"));
        inner.runner = *d;
    } else {
        auto owner = r_.user_by_uid(file->owner);
        if (!owner) return fail(ctx.address, deferral(owner.error()));
        if (!*owner)
            return fail(ctx.address, Status::deferred("4.3.5", ":include:" + path + ": owner uid " +
                                                                   std::to_string(file->owner) + " has no passwd entry"));
        inner.runner = **owner;
    }
    stack_.push_back(mark);
    entries(*list, inner);
    stack_.pop_back();
}

void Expander::mailbox(const privs::UserInfo& u, const std::string& address, const std::string& extension) {
    add({Target::Kind::Mailbox, address, "", Source::Alias, u, extension, ""});
}

void Expander::add(Target t) {
    if (full()) return;
    if (!seen_.insert(target_key(t)).second) return;
    plan_.targets.push_back(std::move(t));
}

void Expander::fail(const std::string& address, Status s) {
    if (full()) return;
    plan_.failures.push_back({address, std::move(s)});
}

bool Expander::full() {
    if (plan_.targets.size() + plan_.failures.size() < o_.max_items) return false;
    overflow_ = true;
    return true;
}

bool Expander::step() {
    // Note: duplicates cost work but add nothing to the plan; this bounds
    // the work too, whatever shape the aliases and include files have.
    if (++steps_ > 4 * o_.max_items) overflow_ = true;
    return !overflow_ && !full();
}

bool Expander::on_stack(const std::string& mark) const {
    return std::find(stack_.begin(), stack_.end(), mark) != stack_.end();
}

std::string Expander::owner_sender(const std::string& key, const std::string& domain, const std::string& sender) {
    if (sender.empty()) return sender;  // keep <>: bounces are never re-addressed
    auto v = r_.alias("owner-" + key);
    if (!v || !*v) return sender;
    return "owner-" + key + (domain.empty() ? "" : "@" + domain);
}

}  // namespace postern::local
