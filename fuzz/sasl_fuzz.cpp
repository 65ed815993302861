// libFuzzer target for lib/auth's network-facing decoders: strict base64,
// the PLAIN message, a SaslServer exchange, and the auth daemon's messages.
// The whole input goes to each of them:
//   - base64_decode: what it accepts re-encodes to exactly the input (strict
//     base64 has one spelling per byte string), within the length limit;
//   - decode_plain: what it accepts is bounded and rebuilds the input;
//   - SaslServer: byte 0 picks the mechanism (bit 0: LOGIN) and whether the
//     first line is an initial response (bit 1); the rest is split into lines
//     at '\n'. Done means bounded, NUL-free credentials; failed stays failed;
//   - ipc::Decoder frames from the input go to decode_request/decode_reply,
//     and what they accept encodes and decodes back to the same message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "auth/proto.hpp"
#include "auth/sasl.hpp"
#include "ipc/ipc.hpp"

namespace {

using namespace postern;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

void fuzz_base64(std::string_view in) {
    auto d = sasl::base64_decode(in);
    if (d) {
        check(in.size() <= sasl::MaxResponseLength && in.size() % 4 == 0);
        check(d->size() == in.size() / 4 * 3 - (in.size() >= 1 && in.back() == '=') -
                               (in.size() >= 2 && in[in.size() - 2] == '='));
        check(sasl::base64_encode(*d) == in);
    }
    std::string e = sasl::base64_encode(in);
    auto back = sasl::base64_decode(e);
    check(static_cast<bool>(back) == (e.size() <= sasl::MaxResponseLength));
    if (back) check(*back == in);
}

void fuzz_plain(std::string_view in) {
    auto c = sasl::decode_plain(in);
    if (!c) return;
    check(!c->user.empty() && c->user.size() <= sasl::MaxUserLength && !has_nul(c->user));
    check(!c->password.empty() && c->password.size() <= sasl::MaxPasswordLength && !has_nul(c->password));
    check(c->authzid.empty() || c->authzid == c->user);
    check(c->authzid + '\0' + c->user + '\0' + c->password == in);
}

void fuzz_exchange(std::string_view in) {
    if (in.empty()) return;
    const auto mech = (in[0] & 1) != 0 ? sasl::Mechanism::Login : sasl::Mechanism::Plain;
    const bool with_initial = (in[0] & 2) != 0;
    in.remove_prefix(1);
    std::vector<std::string_view> lines;
    for (;;) {
        std::size_t nl = in.find('\n');
        lines.push_back(in.substr(0, nl));
        if (nl == std::string_view::npos) break;
        in.remove_prefix(nl + 1);
    }
    using Kind = sasl::SaslServer::Step::Kind;
    sasl::SaslServer s(mech);
    std::size_t next = 0;
    auto step = s.start(with_initial ? std::optional<std::string_view>(lines[next++]) : std::nullopt);
    while (step.kind == Kind::Challenge && next < lines.size()) {
        check(static_cast<bool>(sasl::base64_decode(step.challenge)));
        step = s.next(lines[next++]);
    }
    if (step.kind == Kind::Done) {
        const auto& c = s.credentials();
        check(!c.user.empty() && c.user.size() <= sasl::MaxUserLength && !has_nul(c.user));
        check(!c.password.empty() && c.password.size() <= sasl::MaxPasswordLength && !has_nul(c.password));
        check(c.authzid.empty() || c.authzid == c.user);
        check(step.failure == sasl::SaslServer::Failure::None);
    }
    if (step.kind == Kind::Failed) {
        check(step.failure != sasl::SaslServer::Failure::None);
        auto again = s.next("AAAA");
        check(again.kind == Kind::Failed && again.failure == step.failure);
        check(s.credentials().password.empty());
    }
}

bool same(const auth::Request& a, const auth::Request& b) {
    if (a.index() != b.index()) return false;
    if (const auto* v = std::get_if<auth::VerifyRequest>(&a)) {
        const auto& w = std::get<auth::VerifyRequest>(b);
        return v->id == w.id && v->service == w.service && v->mechanism == w.mechanism && v->user == w.user &&
               v->password == w.password && v->client_addr == w.client_addr && v->client_name == w.client_name &&
               v->tls == w.tls;
    }
    const auto& l = std::get<auth::LookupRequest>(a);
    const auto& m = std::get<auth::LookupRequest>(b);
    return l.id == m.id && l.user == m.user;
}

bool same(const auth::Reply& a, const auth::Reply& b) {
    if (a.id != b.id || a.outcome != b.outcome || a.reason != b.reason || a.user.has_value() != b.user.has_value())
        return false;
    if (!a.user) return true;
    const auto &u = *a.user, &v = *b.user;
    return u.kind == v.kind && u.name == v.name && u.uid == v.uid && u.gid == v.gid && u.home == v.home &&
           u.mailbox == v.mailbox && u.quota == v.quota;
}

void fuzz_messages(std::string_view in) {
    ipc::Decoder d(ipc::Limits{.max_frame = 16384, .max_attrs = 32});
    (void)d.feed(in);
    while (auto frame = d.next()) {
        auto req = auth::decode_request(*frame);
        if (req) {
            ipc::AttrList again = std::visit([](const auto& r) { return auth::encode(r); }, *req);
            auto back = auth::decode_request(again);
            check(back && same(*back, *req));
        }
        auto rep = auth::decode_reply(*frame);
        if (rep) {
            check(rep->user.has_value() == (rep->outcome == auth::Outcome::Ok));
            auto back = auth::decode_reply(auth::encode(*rep));
            check(back && same(*back, *rep));
        }
        check(!(req && rep));  // a request carries `request`, a reply never does
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    fuzz_base64(in);
    fuzz_plain(in);
    fuzz_exchange(in);
    fuzz_messages(in);
    return 0;
}
