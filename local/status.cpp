// local/status.cpp - delivery verdicts, their ordering, and packing for child processes.
#include "local/status.hpp"

#include <cerrno>

#include "util/strings.hpp"

namespace postern::local {

int severity(Kind k) noexcept {
    switch (k) {
    case Kind::Sent: return 0;
    case Kind::Bounced: return 1;
    case Kind::Deferred: return 2;
    }
    return 2;
}

const Status& worst(const Status& a, const Status& b) noexcept {
    return severity(b.kind) > severity(a.kind) ? b : a;
}

Status deferral(const Error& e, std::string_view dsn) { return Status::deferred(std::string(dsn), e.text); }

Status storage_status(const Error& e) {
    auto says = [&](int err) { return e.text.find(errno_text(err)) != std::string::npos; };
    if (says(ENOSPC) || says(EDQUOT)) return Status::deferred("4.2.2", e.text);
    if (says(EFBIG)) return Status::bounced("5.2.2", e.text);
    return Status::deferred("4.2.0", e.text);
}

std::string pack(const std::vector<std::string>& fields) {
    std::string out;
    for (auto& f : fields) {
        out += std::to_string(f.size());
        out += ':';
        out += f;
    }
    return out;
}

std::optional<std::vector<std::string>> unpack(std::string_view data) {
    if (data.size() > MaxPacked) return std::nullopt;
    std::vector<std::string> out;
    while (!data.empty()) {
        auto colon = data.find(':');
        if (colon == std::string_view::npos || colon == 0 || colon > 8) return std::nullopt;
        auto n = util::parse_long(data.substr(0, colon));
        if (!n || *n < 0 || static_cast<std::size_t>(*n) > data.size() - colon - 1) return std::nullopt;
        out.emplace_back(data.substr(colon + 1, static_cast<std::size_t>(*n)));
        data.remove_prefix(colon + 1 + static_cast<std::size_t>(*n));
    }
    return out;
}

std::string encode_status(const Status& s) {
    const char* k = s.kind == Kind::Sent ? "S" : s.kind == Kind::Bounced ? "B" : "D";
    return pack({k, s.dsn, s.text});
}

std::optional<Status> decode_status(std::string_view data) {
    auto f = unpack(data);
    if (!f || f->size() != 3 || (*f)[0].size() != 1) return std::nullopt;
    Status s;
    switch ((*f)[0][0]) {
    case 'S': s.kind = Kind::Sent; break;
    case 'B': s.kind = Kind::Bounced; break;
    case 'D': s.kind = Kind::Deferred; break;
    default: return std::nullopt;
    }
    s.dsn = (*f)[1];
    s.text = (*f)[2];
    char want = s.kind == Kind::Sent ? '2' : s.kind == Kind::Bounced ? '5' : '4';
    if (!delivery::valid_dsn(s.dsn) || s.dsn[0] != want) return std::nullopt;
    return s;
}

}  // namespace postern::local
