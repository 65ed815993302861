// sendmail/verify.cpp - sendmail -bv: the route qmgr would take and what local would find.
#include "sendmail/verify.hpp"

#include <sysexits.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "delivery/delivery.hpp"
#include "fs/fs.hpp"
#include "maps/maps.hpp"
#include "util/strings.hpp"

namespace postern::sendmail {
namespace {

using Kind = Verdict::Kind;

// A main.cf list of tables asked in order, first hit wins; a table that
// cannot be opened fails the lookups that reach it, as in local(8).
MapLookup open_maps(std::string_view specs, maps::Format format, const std::string& param) {
    struct Slot {
        std::string spec;
        std::unique_ptr<maps::Map> map;
        std::string error;
    };
    // shared: std::function must be copyable, the tables are opened once.
    auto slots = std::make_shared<std::vector<Slot>>();
    for (auto& spec : util::split_list(specs)) {
        auto m = maps::open(spec, format);
        if (m) slots->push_back({spec, std::move(*m), {}});
        else slots->push_back({spec, nullptr, m.error().text});
    }
    return [slots, param](std::string_view key) -> Result<std::optional<std::string>> {
        for (auto& s : *slots) {
            if (!s.map) return Error::temp(param + ": " + s.error);
            auto v = s.map->lookup(key);
            if (!v) return Error::temp(param + " " + s.spec + ": " + v.error().text);
            if (*v) return v;
        }
        return std::optional<std::string>();
    };
}

std::string transport_name(std::string_view spec) { return delivery::split_transport(spec).first; }

std::string route_text(const delivery::Route& r) { return r.transport + " (" + r.nexthop + ")"; }

}  // namespace

Verifier::Verifier(const config::Params& p, const delivery::Router& router, VerifyTables t)
    : router_(router),
      t_(std::move(t)),
      delimiters_(p.recipient_delimiter),
      local_transport_(transport_name(p.local_transport)),
      virtual_transport_(transport_name(p.virtual_transport)),
      double_bounce_(util::to_lower(p.double_bounce_sender)) {}

Verdict Verifier::check(const address::Address& a) const {
    auto r = router_.resolve(a.spec());
    if (!r) return {Kind::Deferred, r.error().text};
    if (r->cls == delivery::Route::Class::Local && util::to_lower(a.local) == double_bounce_)
        return {Kind::Deliverable, "discard (mail to double_bounce_sender is discarded)"};
    if (r->transport == "error") {
        // As qmgr: "4.x.x text" defers, anything else bounces.
        std::string first = r->nexthop.substr(0, r->nexthop.find(' '));
        bool temp = delivery::valid_dsn(first) && first[0] == '4';
        return {temp ? Kind::Deferred : Kind::Undeliverable, r->nexthop.empty() ? "mail is refused" : r->nexthop};
    }
    if (r->transport == "discard")
        return {Kind::Deliverable, "discard (" + (r->nexthop.empty() ? std::string("discarded") : r->nexthop) + ")"};
    if (t_.services_known && !t_.services.count(r->transport))
        return {Kind::Deferred, "transport " + r->transport + " (" + r->nexthop +
                                    ") is not a service in master.cf; the message would wait in the queue"};
    if (r->cls == delivery::Route::Class::Local && r->transport == local_transport_) return check_local(a, *r);
    if (r->cls == delivery::Route::Class::Virtual && r->transport == virtual_transport_) return check_virtual(a, *r);
    return {Kind::Deliverable, route_text(*r)};
}

// As local/aliases.cpp: an alias for the whole local part, then for the
// user part without its extension, then the passwd user.
Verdict Verifier::check_local(const address::Address& a, const delivery::Route& r) const {
    const std::string local = util::to_lower(a.local);
    auto cut = delimiters_.empty() ? std::string::npos : local.find_first_of(delimiters_, 1);
    const std::string user = local.substr(0, cut);
    std::string alias_error;
    auto is_alias = [&](const std::string& key) {
        if (!t_.alias || !alias_error.empty()) return false;
        auto v = t_.alias(key);
        if (!v) alias_error = v.error().text;
        return v && v->has_value();
    };
    if (is_alias(local) || (cut != std::string::npos && is_alias(user)))
        return {Kind::Deliverable, route_text(r) + ": alias"};
    if (!t_.user) return {Kind::Deliverable, route_text(r)};
    auto u = t_.user(user);
    if (!u) return {Kind::Deferred, "cannot look up user \"" + util::printable(user) + "\": " + u.error().text};
    if (!*u) {
        if (!alias_error.empty()) return {Kind::Deferred, "cannot tell: " + alias_error};
        return {Kind::Undeliverable, "unknown user: \"" + util::printable(local) + "\""};
    }
    if ((*u)->uid == 0)
        return {Kind::Deferred, "mail for " + (*u)->name + " is not delivered with uid 0: alias " + (*u)->name +
                                    " to a real user in alias_maps"};
    std::string text = route_text(r) + ": user " + (*u)->name;
    if (!alias_error.empty()) text += " (aliases not checked: " + alias_error + ")";
    return {Kind::Deliverable, text};
}

// As local's virtual delivery: local@domain, user@domain, @domain.
Verdict Verifier::check_virtual(const address::Address& a, const delivery::Route& r) const {
    const std::string local = util::to_lower(a.local);
    const std::string domain = delivery::domain_of(a.spec());
    auto cut = delimiters_.empty() ? std::string::npos : local.find_first_of(delimiters_, 1);
    std::vector<std::string> keys{local + "@" + domain};
    if (cut != std::string::npos) keys.push_back(local.substr(0, cut) + "@" + domain);
    keys.push_back("@" + domain);
    if (t_.virtual_mailbox) {
        for (auto& k : keys) {
            auto v = t_.virtual_mailbox(k);
            if (!v) return {Kind::Deferred, "cannot tell: " + v.error().text};
            if (*v) return {Kind::Deliverable, route_text(r) + ": virtual mailbox"};
        }
    }
    return {Kind::Undeliverable, "unknown user: \"" + util::printable(a.spec()) + "\""};
}

std::string verdict_line(std::string_view address, const Verdict& v) {
    std::string line = util::printable(address, 1000) + ": ";
    switch (v.kind) {
    case Kind::Deliverable: line += "deliverable via "; break;
    case Kind::Deferred: line += "deferred: "; break;
    case Kind::Undeliverable: line += "undeliverable: "; break;
    }
    return line + v.text;
}

VerifyTables system_tables(const Context& ctx) {
    const auto& p = ctx.params;
    VerifyTables t;
    if (!util::split_list(p.alias_maps).empty()) t.alias = open_maps(p.alias_maps, maps::Format::Aliases, "alias_maps");
    if (!util::split_list(p.virtual_mailbox_maps).empty())
        t.virtual_mailbox = open_maps(p.virtual_mailbox_maps, maps::Format::Postmap, "virtual_mailbox_maps");
    t.user = [](std::string_view name) { return privs::lookup_user(name); };
    // Note: master.cf unreadable (a locked-down /etc/postern) just means the
    // transports are not checked.
    if (auto svcs = config::load_master_cf(ctx.config_dir)) {
        t.services_known = true;
        for (auto& s : *svcs)
            if (s.type == config::ServiceType::Unix) t.services.insert(s.name);
    }
    return t;
}

int verify_addresses(const Options& o, const Context& ctx, int out_fd) {
    std::vector<std::string> rcpts;
    for (const auto& r : o.recipients) {
        if (auto f = parse_addresses(r, ctx, rcpts)) {
            std::fprintf(stderr, "sendmail: %s\n", f->text.c_str());
            return f->code;
        }
    }
    if (rcpts.empty()) {
        std::fprintf(stderr, "sendmail: -bv: no addresses given\n");
        return EX_USAGE;
    }
    auto router = delivery::open_router(ctx.params);
    if (!router) {
        std::fprintf(stderr, "sendmail: -bv: cannot route: %s\n", router.error().text.c_str());
        return EX_CONFIG;
    }
    Verifier v(ctx.params, **router, system_tables(ctx));
    bool deferred = false, undeliverable = false;
    std::string out;
    for (const auto& r : rcpts) {
        auto parsed = address::parse_list(r);  // the qualified spec parses again to one address
        Verdict d = parsed && parsed->size() == 1 ? v.check(parsed->front())
                                                  : Verdict{Kind::Undeliverable, "malformed address"};
        if (d.kind == Kind::Deferred) deferred = true;
        if (d.kind == Kind::Undeliverable) undeliverable = true;
        out += verdict_line(r, d) + "\n";
    }
    if (auto w = fs::write_all(out_fd, out); !w) {
        std::fprintf(stderr, "sendmail: write standard output: %s\n", w.error().text.c_str());
        return EX_IOERR;
    }
    return undeliverable ? EX_NOUSER : deferred ? EX_TEMPFAIL : EX_OK;
}

}  // namespace postern::sendmail
