// NAME
//   auth/sasl.hpp - SASL PLAIN and LOGIN, server side, without I/O
// PURPOSE
//   Decodes what a client sends during SMTP AUTH (RFC 4954) and, later, IMAP
//   AUTHENTICATE / POP3 AUTH: strict base64 (RFC 4648), the PLAIN message
//   (RFC 4616: [authzid] NUL authcid NUL passwd) and the two LOGIN prompts.
//   A SaslServer walks one exchange: the protocol code sends the challenges
//   it returns (base64, after "334 " or "+ ") and feeds back each client line.
//   Not for checking passwords (the auth daemon does that, auth/proto.hpp),
//   and not for the SMTP reply texts (smtpd maps the outcomes to replies).
// SYNOPSIS
//   auto m = sasl::parse_mechanism("plain");          // optional<Mechanism>
//   sasl::SaslServer x(*m);
//   auto step = x.start(initial_response);            // optional<string_view>: AUTH PLAIN <ir>
//   while (step.kind == Step::Challenge) { send("334 " + step.challenge); step = x.next(line); }
//   if (step.kind == Step::Done) check(x.credentials()); else refuse(step.failure);
// ERRORS
//   Failure::Aborted: the client sent "*". Failure::BadEncoding: not strict
//   base64 (bad character, bad padding, whitespace, too long). Failure::Malformed:
//   PLAIN without its two NULs, an empty user or password, a NUL inside LOGIN's
//   user or password, a field over its limit, an authzid that differs from the
//   user (proxy authorization is not offered). Once failed, the exchange stays
//   failed.
// SECURITY
//   Everything here is network input before authentication: each client line is
//   bounded by MaxResponseLength before decoding, fields by MaxUserLength and
//   MaxPasswordLength, and nothing assumes NUL termination. The password is
//   kept only in the Credentials and overwritten (explicit_bzero) when the
//   SaslServer is destroyed.
// SEE ALSO
//   RFC 4954, RFC 4616, draft-murchison-sasl-login; auth/proto.hpp
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "util/result.hpp"

namespace postern::sasl {

inline constexpr std::size_t MaxResponseLength = 12288;  // base64 characters of one client line
inline constexpr std::size_t MaxUserLength = 255;        // bytes, after decoding
inline constexpr std::size_t MaxPasswordLength = 1024;

// Strict RFC 4648 base64 with padding; "" decodes to "". Error::protocol on any
// character outside the alphabet (whitespace included), bad padding, non-zero
// pad bits, or input longer than MaxResponseLength.
Result<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

enum class Mechanism { Plain, Login };
// Case-insensitive "PLAIN" / "LOGIN"; nullopt for anything else.
std::optional<Mechanism> parse_mechanism(std::string_view name);
std::string_view mechanism_name(Mechanism m);  // "PLAIN", "LOGIN"

struct Credentials {
    std::string authzid;   // PLAIN only; empty or equal to user
    std::string user;
    std::string password;
};

// Decodes a PLAIN message (already base64-decoded). Error::protocol as in ERRORS.
Result<Credentials> decode_plain(std::string_view message);

class SaslServer {
public:
    enum class Failure { None, Aborted, BadEncoding, Malformed };
    struct Step {
        enum class Kind { Challenge, Done, Failed } kind = Kind::Failed;
        std::string challenge;  // Challenge: base64 text to send ("" for PLAIN's empty challenge)
        Failure failure = Failure::None;
    };

    explicit SaslServer(Mechanism m);
    ~SaslServer();
    SaslServer(const SaslServer&) = delete;
    SaslServer& operator=(const SaslServer&) = delete;

    // initial: the initial response given with the command (RFC 4954: "=" is an
    // empty one), or nullopt. LOGIN with an initial response takes it as the user name.
    Step start(std::optional<std::string_view> initial);
    // One client line (without CRLF) in reply to the last challenge.
    Step next(std::string_view line);

    Mechanism mechanism() const noexcept { return mech_; }
    // Valid after a Done step.
    const Credentials& credentials() const noexcept { return creds_; }

private:
    Step fail(Failure f);
    Mechanism mech_;
    int state_ = 0;
    bool failed_ = false;
    Failure failure_ = Failure::None;  // the first failure, repeated by later calls
    Credentials creds_;
};

}  // namespace postern::sasl
