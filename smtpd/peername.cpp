// smtpd/peername.cpp - forward-confirmed reverse DNS for the client (see peername.hpp).
#include "smtpd/peername.hpp"

#include <arpa/inet.h>

#include <algorithm>

#include "log/log.hpp"
#include "util/strings.hpp"

namespace postern::smtpd {
namespace {

bool same_address(const std::string& a, const std::string& b, bool v6) {
    unsigned char x[16], y[16];
    int af = v6 ? AF_INET6 : AF_INET;
    return ::inet_pton(af, a.c_str(), x) == 1 && ::inet_pton(af, b.c_str(), y) == 1 &&
           std::equal(x, x + (v6 ? 16 : 4), y);
}

}  // namespace

bool valid_hostname(std::string_view name) noexcept {
    if (name.empty() || name.size() > 253) return false;
    std::size_t label = 0, label_start = 0;
    bool label_numeric = true;
    for (std::size_t i = 0; i <= name.size(); ++i) {
        if (i == name.size() || name[i] == '.') {
            if (label == 0 || label > 63) return false;
            if (name[label_start] == '-' || name[i - 1] == '-') return false;
            if (i == name.size() && label_numeric) return false;  // "192.0.2.1", "host.123"
            label = 0;
            label_start = i + 1;
            label_numeric = true;
            continue;
        }
        char c = name[i];
        bool digit = c >= '0' && c <= '9';
        bool ok = digit || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
        if (!ok) return false;
        if (!digit) label_numeric = false;
        ++label;
    }
    return true;
}

PeerNameLookup::PeerNameLookup(dns::Resolver& resolver, event::Base& base, std::string addr,
                               std::chrono::milliseconds timeout, std::function<void(std::string)> done)
    : resolver_(resolver), addr_(std::move(addr)), v6_(addr_.find(':') != std::string::npos), done_(std::move(done)) {
    timer_ = event::Event::timer(base, [this, timeout] {
        log::warn("%s: hostname lookup timed out after %lld ms%s%s", addr_.c_str(),
                  static_cast<long long>(timeout.count()), trying_.empty() ? "" : " verifying ",
                  util::printable(trying_, 100).c_str());
        lookup_.cancel();
        finish("unknown");
    });
    timer_.add(timeout);
    lookup_ = resolver_.ptr(addr_, [this](Result<dns::Answer<std::string>> r) { on_ptr(std::move(r)); });
}

void PeerNameLookup::on_ptr(Result<dns::Answer<std::string>> r) {
    if (!r) {
        if (r.error().kind == Error::Kind::Temp)
            log::warn("%s: address not resolved: %s", addr_.c_str(), r.error().text.c_str());
        return finish("unknown");
    }
    for (const auto& name : r->records) {
        if (!valid_hostname(name)) {
            log::warn("%s: malformed host name in PTR record: %s", addr_.c_str(), util::printable(name, 100).c_str());
            continue;
        }
        bool seen = std::any_of(names_.begin(), names_.end(), [&](const auto& n) { return util::iequals(n, name); });
        if (!seen && names_.size() < kMaxNames) names_.push_back(name);
    }
    next_name();
}

void PeerNameLookup::next_name() {
    if (names_.empty()) return finish("unknown");
    trying_ = names_.front();
    names_.erase(names_.begin());
    auto cb = [this](Result<dns::Answer<std::string>> r) { on_addresses(std::move(r)); };
    lookup_ = v6_ ? resolver_.aaaa(trying_, cb) : resolver_.a(trying_, cb);
}

void PeerNameLookup::on_addresses(Result<dns::Answer<std::string>> r) {
    if (r) {
        for (const auto& a : r->records)
            if (same_address(a, addr_, v6_)) return finish(trying_);
        if (r->found())
            log::warn("hostname %s does not resolve to address %s", trying_.c_str(), addr_.c_str());
        else
            log::warn("hostname %s does not resolve to address %s: %s", trying_.c_str(), addr_.c_str(),
                      r->status == dns::Status::NxDomain ? "host not found" : "no address records");
    } else {
        log::warn("hostname %s does not resolve to address %s: %s", trying_.c_str(), addr_.c_str(),
                  r.error().text.c_str());
    }
    next_name();
}

void PeerNameLookup::finish(std::string name) {
    timer_.del();
    lookup_ = dns::Lookup();  // may be the lookup whose callback we are in: allowed
    auto done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(name));  // last: may destroy *this
}

}  // namespace postern::smtpd
