// delivery/delivery.cpp - DeliveryRequest / DeliveryReply framing and the status log line.
#include "delivery/delivery.hpp"

#include <cinttypes>
#include <cstdio>

#include "ipc/attrs.hpp"
#include "queue/queue.hpp"
#include "util/assert.hpp"
#include "util/strings.hpp"

namespace postern::delivery {
namespace {

namespace attr = ipc::attr;

constexpr std::string_view KQueueFile = "queue_file", KContentOffset = "content_offset",
                           KArrival = "arrival", KActive = "active", KEnvid = "envid", KRet = "ret",
                           KBody = "body", KSmtputf8 = "smtputf8", KTransport = "transport",
                           KNexthop = "nexthop", KCount = "count";

std::string indexed(std::string_view prefix, std::size_t i) { return std::string(prefix) + std::to_string(i); }

Result<long long> get_range(const ipc::AttrList& a, std::string_view name, long long lo, long long hi) {
    auto v = a.get_int(name);
    if (!v) return v;
    if (*v < lo || *v > hi) return Error::protocol("attribute " + std::string(name) + " out of range");
    return v;
}

const std::string& get_str(const ipc::AttrList& a, std::string_view name) {
    static const std::string empty;
    const std::string* v = a.find(name);
    return v ? *v : empty;
}

// Parses "N" up to the first space; advances s past the space.
std::optional<long long> take_number(std::string_view& s) {
    auto sp = s.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    auto n = util::parse_long(s.substr(0, sp));
    s.remove_prefix(sp + 1);
    return n;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

}  // namespace

bool valid_dsn(std::string_view dsn) noexcept {
    if (dsn.size() < 5 || (dsn[0] != '2' && dsn[0] != '4' && dsn[0] != '5') || dsn[1] != '.') return false;
    std::size_t i = 2, parts = 0;
    while (parts < 2) {
        std::size_t start = i;
        while (i < dsn.size() && dsn[i] >= '0' && dsn[i] <= '9') ++i;
        if (i == start || i - start > 3) return false;
        ++parts;
        if (parts == 1) {
            if (i >= dsn.size() || dsn[i] != '.') return false;
            ++i;
        }
    }
    return i == dsn.size();
}

bool valid_queue_file(std::string_view path) noexcept {
    auto slash = path.find('/');
    if (slash == std::string_view::npos) return false;
    if (path.substr(0, slash) != queue::Active) return false;
    return queue::valid_id(path.substr(slash + 1));
}

ipc::AttrList encode(const Request& r) {
    POSTERN_ASSERT(r.recipients.size() <= MaxRecipients);
    ipc::AttrList a;
    a.add(attr::Request, RequestName);
    a.add(attr::QueueId, r.queue_id);
    a.add(KQueueFile, r.queue_file);
    a.add_int(KContentOffset, static_cast<long long>(r.content_offset));
    a.add_int(KArrival, r.arrival_us);
    a.add_int(KActive, r.active_us);
    a.add(attr::Sender, r.sender);
    a.add(KEnvid, r.envid);
    a.add(KRet, r.ret);
    a.add(KBody, r.body);
    a.add(KSmtputf8, r.smtputf8 ? "1" : "0");
    a.add(KTransport, r.transport);
    a.add(KNexthop, r.nexthop);
    a.add_int(KCount, static_cast<long long>(r.recipients.size()));
    for (std::size_t i = 0; i < r.recipients.size(); ++i) {
        const Rcpt& rc = r.recipients[i];
        POSTERN_ASSERT(!has_nul(rc.address) && !rc.address.empty());
        std::string v = std::to_string(rc.index) + " " + std::to_string(rc.notify) + " " + rc.address;
        v += '\0';
        v += rc.orcpt;
        a.add(indexed("rcpt_", i), v);
    }
    return a;
}

Result<Request> decode_request(const ipc::AttrList& a) {
    const std::string* name = a.find(attr::Request);
    if (!name || *name != RequestName) return Error::protocol("not a " + std::string(RequestName));
    auto count = get_range(a, KCount, 1, MaxRecipients);
    if (!count) return count.error();
    // Every attribute must be a known one: fixed names plus rcpt_0..rcpt_{count-1}.
    std::size_t fixed = 14;
    if (a.size() != fixed + static_cast<std::size_t>(*count))
        return Error::protocol("DeliveryRequest: wrong number of attributes");
    Request r;
    r.queue_id = get_str(a, attr::QueueId);
    r.queue_file = get_str(a, KQueueFile);
    if (!queue::valid_id(r.queue_id)) return Error::protocol("DeliveryRequest: bad queue_id");
    if (!valid_queue_file(r.queue_file) || r.queue_file.substr(r.queue_file.find('/') + 1) != r.queue_id)
        return Error::protocol("DeliveryRequest: bad queue_file");
    auto off = get_range(a, KContentOffset, 1, 1LL << 50);
    auto arr = get_range(a, KArrival, 0, 1LL << 55);
    auto act = get_range(a, KActive, 0, 1LL << 55);
    if (!off) return off.error();
    if (!arr) return arr.error();
    if (!act) return act.error();
    r.content_offset = static_cast<std::uint64_t>(*off);
    r.arrival_us = *arr;
    r.active_us = *act;
    for (auto k : {attr::Sender, KEnvid, KRet, KBody, KSmtputf8, KTransport, KNexthop})
        if (!a.find(k)) return Error::protocol("DeliveryRequest: missing " + std::string(k));
    r.sender = get_str(a, attr::Sender);
    r.envid = get_str(a, KEnvid);
    r.ret = get_str(a, KRet);
    r.body = get_str(a, KBody);
    const std::string& u8 = get_str(a, KSmtputf8);
    if (u8 != "0" && u8 != "1") return Error::protocol("DeliveryRequest: bad smtputf8");
    r.smtputf8 = u8 == "1";
    r.transport = get_str(a, KTransport);
    r.nexthop = get_str(a, KNexthop);
    if (has_nul(r.sender) || has_nul(r.nexthop) || has_nul(r.transport) || r.transport.empty())
        return Error::protocol("DeliveryRequest: bad sender, transport or nexthop");
    std::vector<bool> seen;
    for (long long i = 0; i < *count; ++i) {
        const std::string* v = a.find(indexed("rcpt_", static_cast<std::size_t>(i)));
        if (!v) return Error::protocol("DeliveryRequest: missing rcpt_" + std::to_string(i));
        std::string_view s = *v;
        auto index = take_number(s);
        auto notify = take_number(s);
        auto nul = s.find('\0');
        if (!index || *index < 0 || *index >= 1000000 || !notify || *notify < 0 || *notify > 15 ||
            nul == std::string_view::npos || nul == 0)
            return Error::protocol("DeliveryRequest: bad rcpt_" + std::to_string(i));
        Rcpt rc;
        rc.index = static_cast<std::uint32_t>(*index);
        rc.notify = static_cast<unsigned>(*notify);
        rc.address = std::string(s.substr(0, nul));
        rc.orcpt = std::string(s.substr(nul + 1));
        if (has_nul(rc.orcpt)) return Error::protocol("DeliveryRequest: bad rcpt_" + std::to_string(i));
        if (seen.size() <= rc.index) seen.resize(rc.index + 1);
        if (seen[rc.index]) return Error::protocol("DeliveryRequest: recipient index repeated");
        seen[rc.index] = true;
        r.recipients.push_back(std::move(rc));
    }
    return r;
}

std::string_view kind_word(Outcome::Kind k) noexcept {
    switch (k) {
    case Outcome::Kind::Sent: return "sent";
    case Outcome::Kind::Deferred: return "deferred";
    case Outcome::Kind::Bounced: return "bounced";
    }
    return "deferred";
}

ipc::AttrList encode(const Reply& r) {
    POSTERN_ASSERT(r.outcomes.size() <= MaxRecipients);
    ipc::AttrList a;
    a.add(attr::Request, ReplyName);
    a.add_int(KCount, static_cast<long long>(r.outcomes.size()));
    for (std::size_t i = 0; i < r.outcomes.size(); ++i) {
        const Outcome& o = r.outcomes[i];
        POSTERN_ASSERT(valid_dsn(o.dsn));
        char k = o.kind == Outcome::Kind::Bounced ? 'B'
               : o.kind == Outcome::Kind::Deferred ? 'D'
               : o.handoff == Outcome::Handoff::Relayed ? 'R'
               : o.handoff == Outcome::Handoff::Passed  ? 'P'
                                                        : 'S';
        std::string v = std::to_string(o.index) + " " + k + " " + o.dsn;
        v += '\0';
        v += util::printable(o.relay, 300);
        v += '\0';
        v += util::printable(o.reason, 1000);
        a.add(indexed("out_", i), v);
    }
    return a;
}

Result<Reply> decode_reply(const ipc::AttrList& a, const Request& req) {
    const std::string* name = a.find(attr::Request);
    if (!name || *name != ReplyName) return Error::protocol("not a " + std::string(ReplyName));
    auto count = get_range(a, KCount, 0, static_cast<long long>(req.recipients.size()));
    if (!count) return count.error();
    if (a.size() != 2 + static_cast<std::size_t>(*count)) return Error::protocol("DeliveryReply: wrong number of attributes");
    Reply rep;
    std::vector<std::uint32_t> done;
    for (long long i = 0; i < *count; ++i) {
        const std::string* v = a.find(indexed("out_", static_cast<std::size_t>(i)));
        if (!v) return Error::protocol("DeliveryReply: missing out_" + std::to_string(i));
        std::string_view s = *v;
        auto index = take_number(s);
        Outcome o;
        if (!index || *index < 0 || s.size() < 2 || s[1] != ' ')
            return Error::protocol("DeliveryReply: bad out_" + std::to_string(i));
        switch (s[0]) {
        case 'S': o.kind = Outcome::Kind::Sent; break;
        case 'R': o.kind = Outcome::Kind::Sent, o.handoff = Outcome::Handoff::Relayed; break;
        case 'P': o.kind = Outcome::Kind::Sent, o.handoff = Outcome::Handoff::Passed; break;
        case 'D': o.kind = Outcome::Kind::Deferred; break;
        case 'B': o.kind = Outcome::Kind::Bounced; break;
        default: return Error::protocol("DeliveryReply: bad kind in out_" + std::to_string(i));
        }
        s.remove_prefix(2);
        auto n1 = s.find('\0');
        auto n2 = n1 == std::string_view::npos ? n1 : s.find('\0', n1 + 1);
        if (n2 == std::string_view::npos || s.find('\0', n2 + 1) != std::string_view::npos)
            return Error::protocol("DeliveryReply: bad out_" + std::to_string(i));
        o.index = static_cast<std::uint32_t>(*index);
        o.dsn = std::string(s.substr(0, n1));
        o.relay = std::string(s.substr(n1 + 1, n2 - n1 - 1));
        o.reason = std::string(s.substr(n2 + 1));
        if (!valid_dsn(o.dsn)) return Error::protocol("DeliveryReply: bad dsn in out_" + std::to_string(i));
        // The DSN class must agree with the kind: a "sent" with 5.x.x is a confused agent.
        char want = o.kind == Outcome::Kind::Sent ? '2' : o.kind == Outcome::Kind::Deferred ? '4' : '5';
        if (o.dsn[0] != want) return Error::protocol("DeliveryReply: dsn class does not match status");
        bool known = false;
        for (auto& rc : req.recipients) known = known || rc.index == o.index;
        if (!known) return Error::protocol("DeliveryReply: unknown recipient index");
        for (auto d : done)
            if (d == o.index) return Error::protocol("DeliveryReply: recipient index repeated");
        done.push_back(o.index);
        rep.outcomes.push_back(std::move(o));
    }
    return rep;
}

std::string status_line(const Request& req, std::string_view to, std::string_view orig_to, const Outcome& o,
                        std::int64_t start_us, std::int64_t now_us, std::int64_t connected_us) {
    auto secs = [](std::int64_t us) { return us <= 0 ? 0.0 : static_cast<double>(us) / 1e6; };
    // Postfix prints delays with two significant decimals, and "0" for nothing.
    auto fmt = [](double v) {
        char b[32];
        if (v < 0.005) return std::string("0");
        if (v < 10) std::snprintf(b, sizeof b, "%.2g", v);
        else std::snprintf(b, sizeof b, "%.0f", v);
        return std::string(b);
    };
    double a = secs(req.active_us - req.arrival_us);
    double b = secs(start_us - req.active_us);
    double c = connected_us > 0 ? secs(connected_us - start_us) : 0.0;
    double d = secs(now_us - (connected_us > 0 ? connected_us : start_us));
    double total = secs(now_us - req.arrival_us);
    char delay[32];
    std::snprintf(delay, sizeof delay, "%.2g", total < 0.005 ? 0.0 : total);
    std::string line = "to=<" + util::printable(to, 300) + ">";
    if (!orig_to.empty() && orig_to != to) line += ", orig_to=<" + util::printable(orig_to, 300) + ">";
    line += ", relay=" + (o.relay.empty() ? std::string("none") : o.relay);
    line += ", delay=" + (total >= 10 ? fmt(total) : std::string(delay));
    line += ", delays=" + fmt(a) + "/" + fmt(b) + "/" + fmt(c) + "/" + fmt(d);
    line += ", dsn=" + o.dsn + ", status=" + std::string(kind_word(o.kind)) + " (" + o.reason + ")";
    return line;
}

}  // namespace postern::delivery
