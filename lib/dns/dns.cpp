// dns/dns.cpp - libunbound on our event loop (see dns.hpp).
#include "dns/dns.hpp"

#include <arpa/inet.h>
#include <unbound-event.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>

#include "dns/wire.hpp"
#include "util/strings.hpp"

namespace postern::dns {
namespace detail {

// One lookup. The Lookup handle owns it; the Resolver knows it while it is
// live (started, callback not yet called).
class Query {
public:
    virtual ~Query() = default;
    // The outcome from libunbound: rcode 0 with a packet, or a failure rcode.
    virtual void complete(int rcode, std::span<const std::byte> packet, int sec, const char* why_bogus) = 0;
    virtual void fail(Error e) = 0;
    virtual bool has_result() const noexcept = 0;
    // Calls the callback with the result; *this may be destroyed by it.
    virtual void deliver() = 0;

    Resolver* owner = nullptr;  // null once delivered, cancelled or orphaned
    std::string name;
    Type type = Type::A;
    int async_id = 0;
    bool in_unbound = false;  // libunbound still works on it (cancel it!)
    event::Event timer;
};

}  // namespace detail

namespace {

const char* type_name(Type t) {
    switch (t) {
        case Type::A: return "A";
        case Type::Aaaa: return "AAAA";
        case Type::Mx: return "MX";
        case Type::Txt: return "TXT";
        case Type::Ptr: return "PTR";
        case Type::Tlsa: return "TLSA";
        case Type::Cname: return "CNAME";
    }
    return "?";
}

std::string rcode_text(int rcode) {
    switch (rcode) {
        case 1: return "FORMERR";
        case 2: return "SERVFAIL";
        case 4: return "NOTIMP";
        case 5: return "REFUSED";
    }
    return "rcode " + std::to_string(rcode);
}

std::string what(const detail::Query& q) { return util::printable(q.name, 300) + "/" + type_name(q.type); }

template <typename T>
class TypedQuery final : public detail::Query {
public:
    using Parse = Result<Answer<T>> (*)(std::span<const std::byte>, std::string_view);
    TypedQuery(Callback<T> cb, Parse parse) : cb_(std::move(cb)), parse_(parse) {}

    void complete(int rcode, std::span<const std::byte> packet, int sec, const char* why) override {
        if (rcode != 0) return fail(Error::temp("DNS lookup of " + what(*this) + ": " + rcode_text(rcode)));
        if (sec == 1)
            return fail(Error::temp("DNS lookup of " + what(*this) + ": DNSSEC validation failed" +
                                    (why ? ": " + util::printable(why, 200) : std::string())));
        auto r = parse_(packet, name);
        if (!r) return fail(Error::temp(what(*this) + ": " + r.error().text));
        r->secure = sec == 2;
        result_.emplace(std::move(r));
    }
    void fail(Error e) override { result_.emplace(std::move(e)); }
    bool has_result() const noexcept override { return result_.has_value(); }
    void deliver() override {
        auto cb = std::move(cb_);
        Result<Answer<T>> r = std::move(*result_);
        cb(std::move(r));  // last: may destroy *this
    }

private:
    Callback<T> cb_;
    Parse parse_;
    std::optional<Result<Answer<T>>> result_;
};

Result<Answer<std::string>> parse_a(std::span<const std::byte> p, std::string_view n) {
    return wire::parse_addresses(p, n, Type::A);
}
Result<Answer<std::string>> parse_aaaa(std::span<const std::byte> p, std::string_view n) {
    return wire::parse_addresses(p, n, Type::Aaaa);
}

// libunbound's built-in local zones (localhost, 127.in-addr.arpa, test.,
// ...) would answer these names without asking our servers. A stub leaves
// every answer to its servers: a zone of our own, transparent and empty,
// keeps each default from being created. The private-use reverse zones
// (RFC 1918 and the like) go with unblock-lan-zones.
constexpr const char* kDefaultZones[] = {
    "localhost.", "127.in-addr.arpa.", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
    "home.arpa.", "onion.", "test.", "invalid.",
};

}  // namespace

// ---- Lookup ----------------------------------------------------------------

Lookup::Lookup() noexcept = default;
Lookup::Lookup(std::unique_ptr<detail::Query> q) noexcept : q_(std::move(q)) {}
Lookup::Lookup(Lookup&&) noexcept = default;
Lookup& Lookup::operator=(Lookup&& o) noexcept {
    if (this != &o) {
        cancel();
        q_ = std::move(o.q_);
    }
    return *this;
}
Lookup::~Lookup() { cancel(); }

void Lookup::cancel() noexcept {
    if (!q_) return;
    if (q_->owner) q_->owner->forget(q_.get());
    q_.reset();
}

bool Lookup::active() const noexcept { return q_ && q_->owner; }

// ---- servers ---------------------------------------------------------------

Result<std::vector<std::string>> parse_servers(std::string_view list) {
    constexpr std::size_t kMaxServers = 16;
    std::vector<std::string> out;
    for (const auto& item : util::split_list(list)) {
        std::string addr, port;
        auto bad = [&](const char* why) {
            return Error::config("dns_servers: " + util::printable(item, 100) + ": " + why +
                                 " (want addr, addr@port or [addr]:port)");
        };
        if (!item.empty() && item[0] == '[') {
            auto close = item.find(']');
            if (close == std::string::npos) return bad("missing ]");
            addr = item.substr(1, close - 1);
            std::string rest = item.substr(close + 1);
            if (!rest.empty()) {
                if (rest[0] != ':') return bad("junk after ]");
                port = rest.substr(1);
                if (port.empty()) return bad("empty port");
            }
        } else if (auto at = item.find('@'); at != std::string::npos) {
            addr = item.substr(0, at);
            port = item.substr(at + 1);
            if (port.empty()) return bad("empty port");
        } else {
            addr = item;
        }
        unsigned char raw[16];
        if (addr.size() >= INET6_ADDRSTRLEN ||
            (::inet_pton(AF_INET, addr.c_str(), raw) != 1 && ::inet_pton(AF_INET6, addr.c_str(), raw) != 1))
            return bad("not an IP address");
        if (!port.empty()) {
            auto n = util::parse_long(port);
            if (!n || *n < 1 || *n > 65535 || port.find_first_not_of("0123456789") != std::string::npos)
                return bad("bad port");
            addr += "@" + std::to_string(*n);
        }
        if (out.size() >= kMaxServers) return Error::config("dns_servers: more than 16 servers");
        out.push_back(std::move(addr));
    }
    return out;
}

// ---- Resolver ----------------------------------------------------------------

// ub_ctx_hosts() loads the names of the hosts file, not the addresses: add
// each address's PTR (its first name, as the C library's gethostbyaddr gives
// it), so "127.0.0.1" is "localhost" without asking a server, as for Postfix.
static void add_host_ptrs(ub_ctx* ctx, const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "re");
    if (!f) return;
    std::set<std::string> seen;
    char line[1024];
    bool continuation = false;
    for (int n = 0; n < 10000 && std::fgets(line, sizeof line, f); ++n) {
        std::string_view l(line);
        // A line longer than the buffer: its pieces are not lines of their own.
        bool whole = !l.empty() && l.back() == '\n';
        bool skip = continuation;
        continuation = !whole && !std::feof(f);
        if (skip || continuation) continue;
        l = l.substr(0, l.find('#'));
        auto words = util::split_ws(l);
        if (words.size() < 2 || !seen.insert(words[0]).second) continue;
        auto rev = wire::reverse_name(words[0]);
        if (!rev || !wire::valid_query_name(words[1])) continue;
        std::string data = *rev + ". PTR " + words[1] + ".";
        (void)ub_ctx_data_add(ctx, data.c_str());
    }
    std::fclose(f);
}

Result<std::unique_ptr<Resolver>> Resolver::create(event::Base& base, Options options) {
    UbCtxPtr ctx(ub_ctx_create_event(base.get()));
    if (!ctx) return Error::temp("cannot create a libunbound context");
    auto set = [&](const char* opt, const std::string& val) -> Result<void> {
        int r = ub_ctx_set_option(ctx.get(), opt, val.c_str());
        if (r != 0) return Error::config(std::string("libunbound option ") + opt + " " + val + ": " + ub_strerror(r));
        return {};
    };
    if (options.servers.empty()) {
        int r = options.resolv_conf.empty() ? UB_READFILE : ub_ctx_resolvconf(ctx.get(), options.resolv_conf.c_str());
        // Like the C library: no resolv.conf means a server on this host.
        if (r == UB_READFILE) r = ub_ctx_set_fwd(ctx.get(), "127.0.0.1");
        if (r != 0) return Error::config("DNS servers from " + options.resolv_conf + ": " + ub_strerror(r));
        // Note: the hosts file is a convenience; a missing file or a line
        // libunbound cannot parse (it stops there) must not stop a daemon.
        if (!options.hosts.empty()) {
            (void)ub_ctx_hosts(ctx.get(), options.hosts.c_str());
        }
    } else {
        auto servers = parse_servers(options.servers);
        if (!servers) return servers.error();
        if (servers->empty()) return Error::config("dns_servers: no server");
        for (const auto& s : *servers) {
            int r = ub_ctx_set_fwd(ctx.get(), s.c_str());
            if (r != 0) return Error::config("dns_servers: " + s + ": " + ub_strerror(r));
        }
    }
    // Forwarding to servers on this host (127.0.0.53, a local unbound) is normal for a stub.
    if (auto r = set("do-not-query-localhost:", "no"); !r) return r.error();
    if (auto r = set("unblock-lan-zones:", "yes"); !r) return r.error();
    if (auto r = set("insecure-lan-zones:", "yes"); !r) return r.error();
    for (const char* zone : kDefaultZones)
        if (auto r = set("local-zone:", std::string(zone) + " transparent"); !r) return r.error();
    // A server that stopped answering is marked down in the infrastructure
    // cache; keep probing it and forget the verdict soon, so that a short
    // outage does not fail lookups for the default 15 minutes.
    if (auto r = set("infra-keep-probing:", "yes"); !r) return r.error();
    if (auto r = set("infra-host-ttl:", "60"); !r) return r.error();
    // Our own limit is max_queries; libunbound's must not drop ours first.
    if (auto r = set("num-queries-per-thread:", std::to_string(std::max<std::size_t>(options.max_queries * 2, 1024)));
        !r)
        return r.error();
    // (Adding local data finalizes the context: after every option.)
    if (options.servers.empty() && !options.hosts.empty()) add_host_ptrs(ctx.get(), options.hosts);
    // Finalize now, while files can still be read (trust anchors and such
    // are read at finalization). Note: re-adding one of our transparent zones
    // changes nothing; it is the documented call that finalizes.
    if (int r = ub_ctx_zone_add(ctx.get(), "invalid.", "transparent"); r != 0)
        return Error::config(std::string("libunbound: ") + ub_strerror(r));
    return std::make_unique<Resolver>(Key{}, base, std::move(options), std::move(ctx));
}

Resolver::Resolver(Key, event::Base& base, Options options, UbCtxPtr ctx)
    : base_(base), options_(std::move(options)), ctx_(std::move(ctx)) {
    dispatcher_ = event::Event::timer(base_, [this] { dispatch(); });
}

Resolver::~Resolver() {
    // Cancelled queries never call back, so libunbound's cleanup below
    // cannot reach a Query either.
    for (auto* q : live_) {
        if (q->in_unbound) ub_cancel(ctx_.get(), q->async_id);
        q->in_unbound = false;
        q->owner = nullptr;
        q->timer.del();
    }
    live_.clear();
    ready_.clear();
    dispatcher_.del();
}

Lookup Resolver::a(std::string_view name, Callback<std::string> cb) {
    return submit(std::make_unique<TypedQuery<std::string>>(std::move(cb), parse_a), name, Type::A);
}
Lookup Resolver::aaaa(std::string_view name, Callback<std::string> cb) {
    return submit(std::make_unique<TypedQuery<std::string>>(std::move(cb), parse_aaaa), name, Type::Aaaa);
}
Lookup Resolver::mx(std::string_view domain, Callback<Mx> cb) {
    return submit(std::make_unique<TypedQuery<Mx>>(std::move(cb), wire::parse_mx), domain, Type::Mx);
}
Lookup Resolver::txt(std::string_view name, Callback<std::string> cb) {
    return submit(std::make_unique<TypedQuery<std::string>>(std::move(cb), wire::parse_txt), name, Type::Txt);
}
Lookup Resolver::tlsa(std::string_view name, Callback<Tlsa> cb) {
    return submit(std::make_unique<TypedQuery<Tlsa>>(std::move(cb), wire::parse_tlsa), name, Type::Tlsa);
}
Lookup Resolver::ptr(std::string_view addr, Callback<std::string> cb) {
    auto q = std::make_unique<TypedQuery<std::string>>(std::move(cb), wire::parse_ptr);
    if (auto rev = wire::reverse_name(addr)) return submit(std::move(q), *rev, Type::Ptr);
    return submit(std::move(q), addr, Type::Ptr, Error::perm("not an IP address: " + util::printable(addr, 100)));
}

Lookup Resolver::submit(std::unique_ptr<detail::Query> q, std::string_view name, Type type,
                        std::optional<Error> refused) {
    detail::Query* qp = q.get();
    Lookup handle(std::move(q));
    qp->owner = this;
    qp->name = std::string(name);
    qp->type = type;
    live_.insert(qp);
    // Refusals, too, reach the caller through the callback, later.
    if (refused) {
        qp->fail(std::move(*refused));
        ready(qp);
        return handle;
    }
    if (live_.size() > options_.max_queries) {
        qp->fail(Error::temp("DNS lookup of " + what(*qp) + ": too many lookups in flight"));
        ready(qp);
        return handle;
    }
    if (!wire::valid_query_name(name)) {
        qp->fail(Error::perm("DNS lookup of " + what(*qp) + ": invalid domain name"));
        ready(qp);
        return handle;
    }
    qp->timer = event::Event::timer(base_, [this, qp] { timed_out(qp); });
    qp->timer.add(options_.timeout);
    qp->in_unbound = true;
    int id = 0;
    // Note: an answer from local data (/etc/hosts) calls on_answer before
    // this returns; on_answer only queues it, so no callback runs in here.
    int r = ub_resolve_event(ctx_.get(), qp->name.c_str(), static_cast<int>(type), 1, qp, &Resolver::on_answer, &id);
    if (r != 0) {
        qp->in_unbound = false;
        qp->fail(Error::temp("DNS lookup of " + what(*qp) + ": " + ub_strerror(r)));
        ready(qp);
    } else if (qp->in_unbound) {
        qp->async_id = id;
    }
    return handle;
}

void Resolver::on_answer(void* arg, int rcode, void* packet, int len, int sec, char* why_bogus, int) noexcept {
    auto* q = static_cast<detail::Query*>(arg);
    q->in_unbound = false;
    event::guarded("dns", [&] {
        std::span<const std::byte> pkt;
        if (rcode == 0 && packet != nullptr && len > 0)
            pkt = std::span<const std::byte>(static_cast<const std::byte*>(packet), static_cast<std::size_t>(len));
        q->complete(rcode, pkt, sec, why_bogus);
    });
    event::guarded("dns", [&] {
        if (!q->has_result()) q->fail(Error::temp("DNS lookup of " + what(*q) + ": internal error"));
    });
    if (q->owner) q->owner->ready(q);
}

void Resolver::ready(detail::Query* q) {
    q->timer.del();
    ready_.push_back(q);
    if (!dispatcher_.pending()) dispatcher_.add(std::chrono::milliseconds(0));
}

void Resolver::dispatch() {
    // One callback per turn of the loop; after deliver() nothing here may
    // touch the query (or, should a callback misbehave, this resolver).
    if (ready_.empty()) return;
    detail::Query* q = ready_.front();
    ready_.pop_front();
    if (!ready_.empty()) dispatcher_.add(std::chrono::milliseconds(0));
    live_.erase(q);
    q->owner = nullptr;
    if (q->has_result()) q->deliver();
}

void Resolver::timed_out(detail::Query* q) {
    if (q->in_unbound) {
        ub_cancel(ctx_.get(), q->async_id);
        q->in_unbound = false;
    }
    q->fail(Error::temp("DNS lookup of " + what(*q) + ": timed out"));
    ready(q);
}

void Resolver::forget(detail::Query* q) noexcept {
    if (q->in_unbound) ub_cancel(ctx_.get(), q->async_id);
    q->in_unbound = false;
    q->owner = nullptr;
    q->timer.del();
    live_.erase(q);
    std::erase(ready_, q);
}

}  // namespace postern::dns
