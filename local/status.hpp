// NAME
//   local/status.hpp - what one delivery attempt of the local agent came to
// PURPOSE
//   A Status is the verdict of one final delivery (a mailbox, a file, a
//   command, a forward) or of an expansion step that failed: sent, deferred or
//   bounced, with an RFC 3463 code and a reason in Postfix's words. Several of
//   them for one queue recipient combine into the worst one (deferred >
//   bounced > sent). Also the tiny length-prefixed packing used to carry
//   statuses and file contents from a privilege-dropped child back to the
//   agent. Not the wire format to qmgr (delivery/delivery.hpp).
// SYNOPSIS
//   Status s = Status::bounced("5.1.1", "unknown user: \"x\"");
//   Status w = worst(a, b);
//   std::string wire = pack({"a", "b"});  auto fields = unpack(wire);   // optional<vector<string>>
//   Status t = storage_status(err);       // a mailbox write error -> 4.2.2 / 5.2.2 / 4.2.0
// ERRORS
//   unpack returns nullopt for malformed input; decode_status likewise.
// SECURITY
//   Packed data comes from children running as a mail recipient: lengths are
//   checked against the bytes present, and at most MaxPacked bytes are read.
// SEE ALSO
//   delivery/delivery.hpp (Outcome), local/privsep.hpp
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "delivery/delivery.hpp"
#include "util/result.hpp"

namespace postern::local {

using Kind = delivery::Outcome::Kind;

struct Status {
    Kind kind = Kind::Deferred;
    std::string dsn = "4.3.0";
    std::string text;

    static Status sent(std::string text) { return {Kind::Sent, "2.0.0", std::move(text)}; }
    static Status deferred(std::string dsn, std::string text) { return {Kind::Deferred, std::move(dsn), std::move(text)}; }
    static Status bounced(std::string dsn, std::string text) { return {Kind::Bounced, std::move(dsn), std::move(text)}; }
    bool ok() const noexcept { return kind == Kind::Sent; }
};

// Sent 0 < Bounced 1 < Deferred 2: a recipient is done only when every copy is.
int severity(Kind k) noexcept;
// The worse of two; the first on a tie.
const Status& worst(const Status& a, const Status& b) noexcept;

// An internal or I/O error as a deferral (STYLE E4: never a bounce), with text.
Status deferral(const Error& e, std::string_view dsn = "4.3.0");
// A mailbox or file write error: full disk or quota 4.2.2 (deferred), file
// too large 5.2.2 (bounced), anything else 4.2.0 (deferred).
Status storage_status(const Error& e);

inline constexpr std::size_t MaxPacked = 1u << 20;

// Fields as "LEN:BYTES" one after the other.
std::string pack(const std::vector<std::string>& fields);
std::optional<std::vector<std::string>> unpack(std::string_view data);

std::string encode_status(const Status& s);
std::optional<Status> decode_status(std::string_view data);

}  // namespace postern::local
