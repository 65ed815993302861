// auth/sasl.cpp - strict base64, the PLAIN message and the PLAIN/LOGIN server exchange.
#include "auth/sasl.hpp"

#include <string.h>

#include <array>

#include "util/strings.hpp"

namespace postern::sasl {
namespace {

constexpr std::string_view Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Byte -> 6-bit value, or -1 for anything outside the alphabet ('=' included:
// padding is handled by position, never by lookup).
constexpr std::array<signed char, 256> make_table() {
    std::array<signed char, 256> t{};
    for (auto& v : t) v = -1;
    for (std::size_t i = 0; i < Alphabet.size(); ++i) t[static_cast<unsigned char>(Alphabet[i])] = static_cast<signed char>(i);
    return t;
}
constexpr std::array<signed char, 256> Table = make_table();

int value_of(char c) { return Table[static_cast<unsigned char>(c)]; }

// Overwrites every byte the string's buffer holds, not only size() of them:
// growing to capacity() first also clears what a shorter value (or a move,
// which leaves the short-string buffer behind) kept there.
void wipe(std::string& s) noexcept {
    s.resize(s.capacity());
    explicit_bzero(s.data(), s.size());
    s.clear();
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

constexpr int NotStarted = 0, PlainMessage = 1, LoginUser = 2, LoginPassword = 3, Finished = 4;

}  // namespace

Result<std::string> base64_decode(std::string_view in) {
    if (in.size() > MaxResponseLength)
        return Error::protocol("base64: response too long (limit " + std::to_string(MaxResponseLength) + ")");
    if (in.size() % 4 != 0) return Error::protocol("base64: length is not a multiple of 4");
    std::string out;
    out.reserve(in.size() / 4 * 3);
    auto fail = [&out](const char* text) -> Result<std::string> {
        wipe(out);  // may be part of a password
        return Error::protocol(text);
    };
    for (std::size_t i = 0; i < in.size(); i += 4) {
        const bool last = i + 4 == in.size();
        const int a = value_of(in[i]), b = value_of(in[i + 1]);
        if (a < 0 || b < 0) return fail("base64: bad character");
        const unsigned ua = static_cast<unsigned>(a), ub = static_cast<unsigned>(b);
        out += static_cast<char>((ua << 2) | (ub >> 4));
        if (in[i + 2] == '=') {
            if (!last || in[i + 3] != '=') return fail("base64: bad padding");
            if ((ub & 0x0f) != 0) return fail("base64: non-zero pad bits");
            break;
        }
        const int c = value_of(in[i + 2]);
        if (c < 0) return fail("base64: bad character");
        const unsigned uc = static_cast<unsigned>(c);
        out += static_cast<char>(((ub & 0x0f) << 4) | (uc >> 2));
        if (in[i + 3] == '=') {
            if (!last) return fail("base64: bad padding");
            if ((uc & 0x03) != 0) return fail("base64: non-zero pad bits");
            break;
        }
        const int d = value_of(in[i + 3]);
        if (d < 0) return fail("base64: bad character");
        out += static_cast<char>(((uc & 0x03) << 6) | static_cast<unsigned>(d));
    }
    return out;
}

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const unsigned v = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16 |
                           static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8 |
                           static_cast<unsigned char>(in[i + 2]);
        out += Alphabet[v >> 18];
        out += Alphabet[(v >> 12) & 0x3f];
        out += Alphabet[(v >> 6) & 0x3f];
        out += Alphabet[v & 0x3f];
    }
    const std::size_t rest = in.size() - i;
    if (rest > 0) {
        unsigned v = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16;
        if (rest == 2) v |= static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8;
        out += Alphabet[v >> 18];
        out += Alphabet[(v >> 12) & 0x3f];
        out += rest == 2 ? Alphabet[(v >> 6) & 0x3f] : '=';
        out += '=';
    }
    return out;
}

std::optional<Mechanism> parse_mechanism(std::string_view name) {
    if (util::iequals(name, "PLAIN")) return Mechanism::Plain;
    if (util::iequals(name, "LOGIN")) return Mechanism::Login;
    return std::nullopt;
}

std::string_view mechanism_name(Mechanism m) { return m == Mechanism::Plain ? "PLAIN" : "LOGIN"; }

Result<Credentials> decode_plain(std::string_view message) {
    // Note: the texts name no part of the message: it holds a password.
    const std::size_t n1 = message.find('\0');
    const std::size_t n2 = n1 == std::string_view::npos ? n1 : message.find('\0', n1 + 1);
    if (n2 == std::string_view::npos) return Error::protocol("PLAIN: want authzid NUL user NUL password");
    const std::string_view authzid = message.substr(0, n1);
    const std::string_view user = message.substr(n1 + 1, n2 - n1 - 1);
    const std::string_view password = message.substr(n2 + 1);
    if (has_nul(password)) return Error::protocol("PLAIN: NUL byte in the password");
    if (user.empty()) return Error::protocol("PLAIN: empty user name");
    if (password.empty()) return Error::protocol("PLAIN: empty password");
    if (user.size() > MaxUserLength || authzid.size() > MaxUserLength)
        return Error::protocol("PLAIN: user name too long (limit " + std::to_string(MaxUserLength) + " bytes)");
    if (password.size() > MaxPasswordLength)
        return Error::protocol("PLAIN: password too long (limit " + std::to_string(MaxPasswordLength) + " bytes)");
    if (!authzid.empty() && authzid != user)
        return Error::protocol("PLAIN: authorization identity differs from the user (proxy login is not offered)");
    return Credentials{std::string(authzid), std::string(user), std::string(password)};
}

SaslServer::SaslServer(Mechanism m) : mech_(m) {}

SaslServer::~SaslServer() { wipe(creds_.password); }

SaslServer::Step SaslServer::fail(Failure f) {
    if (!failed_) failure_ = f;
    failed_ = true;
    state_ = Finished;
    wipe(creds_.password);
    creds_.user.clear();
    creds_.authzid.clear();
    return Step{Step::Kind::Failed, "", failure_};
}

SaslServer::Step SaslServer::start(std::optional<std::string_view> initial) {
    if (failed_ || state_ != NotStarted) return fail(Failure::Malformed);
    if (!initial) {
        if (mech_ == Mechanism::Plain) {
            state_ = PlainMessage;
            return Step{Step::Kind::Challenge, "", Failure::None};
        }
        state_ = LoginUser;
        return Step{Step::Kind::Challenge, base64_encode("Username:"), Failure::None};
    }
    // RFC 4954: "=" is an initial response of zero bytes.
    state_ = mech_ == Mechanism::Plain ? PlainMessage : LoginUser;
    return next(*initial == "=" ? std::string_view() : *initial);
}

SaslServer::Step SaslServer::next(std::string_view line) {
    if (failed_) return fail(failure_);
    if (state_ != PlainMessage && state_ != LoginUser && state_ != LoginPassword) return fail(Failure::Malformed);
    if (line == "*") return fail(Failure::Aborted);
    Result<std::string> decoded = base64_decode(line);
    if (!decoded) return fail(Failure::BadEncoding);
    std::string& d = *decoded;
    Step step{Step::Kind::Done, "", Failure::None};
    switch (state_) {
    case PlainMessage: {
        Result<Credentials> c = decode_plain(d);
        if (!c) {
            step = fail(Failure::Malformed);
            break;
        }
        creds_ = std::move(*c);
        wipe(c->password);  // the moved-from short-string buffer still holds it
        state_ = Finished;
        break;
    }
    case LoginUser:
        if (d.empty() || d.size() > MaxUserLength || has_nul(d)) {
            step = fail(Failure::Malformed);
            break;
        }
        creds_.user = d;
        state_ = LoginPassword;
        step = Step{Step::Kind::Challenge, base64_encode("Password:"), Failure::None};
        break;
    case LoginPassword:
        if (d.empty() || d.size() > MaxPasswordLength || has_nul(d)) {
            step = fail(Failure::Malformed);
            break;
        }
        creds_.password = d;
        state_ = Finished;
        break;
    default:
        step = fail(Failure::Malformed);
        break;
    }
    wipe(d);
    return step;
}

}  // namespace postern::sasl
