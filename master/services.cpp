// master/services.cpp - endpoint resolution and per-service process accounting.
#include "master/services.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cstring>

#include "util/strings.hpp"

namespace postern::master {

std::string Endpoint::text() const {
    if (kind == Kind::Unix) return path;
    if (family == AF_INET6) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::optional<int> service_port(std::string_view name) {
    static const std::pair<std::string_view, int> kPorts[] = {
        {"smtp", 25},   {"submission", 587}, {"submissions", 465}, {"smtps", 465}, {"imap", 143},
        {"imap2", 143}, {"imaps", 993},      {"pop3", 110},        {"pop3s", 995}, {"lmtp", 24},
    };
    if (auto n = util::parse_long(name)) {
        if (*n < 1 || *n > 65535) return std::nullopt;
        return static_cast<int>(*n);
    }
    for (auto& [n, p] : kPorts)
        if (n == name) return p;
    return std::nullopt;
}

namespace {

Result<Endpoint> numeric(std::string_view host, int port) {
    Endpoint e;
    e.port = port;
    std::string h(host);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    in_addr a4{};
    in6_addr a6{};
    if (inet_pton(AF_INET, h.c_str(), &a4) == 1) {
        e.family = AF_INET;
    } else if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
        e.family = AF_INET6;
    } else if (h == "localhost") {
        e.family = AF_INET;
        h = "127.0.0.1";
    } else {
        return Error::config("\"" + util::printable(h, 80) + "\" is not a numeric IPv4 or IPv6 address");
    }
    e.host = h;
    return e;
}

}  // namespace

Result<std::vector<Endpoint>> resolve_endpoints(const config::Service& svc, const config::Params& params) {
    std::vector<Endpoint> out;
    if (svc.type == config::ServiceType::Unix) {
        if (svc.name.empty() || svc.name.find('/') != std::string::npos || svc.name.size() > 60)
            return Error::config(svc.origin + ": bad unix service name \"" + util::printable(svc.name, 80) + "\"");
        Endpoint e;
        e.kind = Endpoint::Kind::Unix;
        e.path = params.queue_directory + (svc.private_ ? "/private/" : "/public/") + svc.name;
        out.push_back(e);
        return out;
    }
    // inet: "port", "host:port", "[v6]:port".
    std::string host, port_text = svc.name;
    auto colon = svc.name.rfind(':');
    if (colon != std::string::npos) {
        host = svc.name.substr(0, colon);
        port_text = svc.name.substr(colon + 1);
        if (host.find(':') != std::string::npos && host.front() != '[')
            return Error::config(svc.origin + ": write IPv6 addresses as [addr]:port");
    }
    auto port = service_port(port_text);
    if (!port) return Error::config(svc.origin + ": unknown port or service name \"" + util::printable(port_text, 40) + "\"");
    std::vector<std::string> hosts;
    if (!host.empty()) {
        hosts.push_back(host);
    } else {
        auto ifs = util::split_list(params.inet_interfaces);
        bool v4 = params.inet_protocols != "ipv6", v6 = params.inet_protocols != "ipv4";
        for (auto& i : ifs) {
            if (i == "all") {
                if (v4) hosts.push_back("0.0.0.0");
                if (v6) hosts.push_back("::");
            } else if (i == "loopback-only") {
                if (v4) hosts.push_back("127.0.0.1");
                if (v6) hosts.push_back("::1");
            } else {
                hosts.push_back(i);
            }
        }
        if (hosts.empty()) return Error::config(svc.origin + ": inet_interfaces names no address");
    }
    for (auto& h : hosts) {
        auto e = numeric(h, *port);
        if (!e) return Error::config(svc.origin + ": " + e.error().text);
        out.push_back(*e);
    }
    return out;
}

void Pool::spawned(pid_t pid, Clock::time_point now) {
    children_[pid] = Child{true, false, now};
    ++avail_;
}

void Pool::status_avail(pid_t pid, bool avail) {
    auto it = children_.find(pid);
    if (it == children_.end()) return;
    if (!avail) it->second.used = true;
    if (it->second.avail == avail) return;
    it->second.avail = avail;
    avail_ += avail ? 1 : -1;
}

ExitVerdict Pool::exited(pid_t pid, int st, Clock::time_point now) {
    ExitVerdict v;
    auto it = children_.find(pid);
    if (it == children_.end()) return v;
    Child c = it->second;
    children_.erase(it);
    if (c.avail) --avail_;
    if (WIFSIGNALED(st)) {
        v.abnormal = true;
        v.how = "killed by signal " + std::to_string(WTERMSIG(st));
    } else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
        v.abnormal = true;
        v.how = "exit status " + std::to_string(WEXITSTATUS(st));
    }
    if (!v.abnormal) return v;
    // A child that dies before taking any work is broken at start-up; so is a
    // service whose children keep dying (5 times in 10 seconds).
    std::erase_if(recent_failures_, [&](Clock::time_point t) { return now - t > std::chrono::seconds(10); });
    recent_failures_.push_back(now);
    if (!throttled_ && (!c.used || recent_failures_.size() >= 5)) {
        v.throttle = true;
        recent_failures_.clear();
    }
    return v;
}

std::vector<pid_t> Pool::pids() const {
    std::vector<pid_t> out;
    for (auto& [pid, c] : children_) out.push_back(pid);
    return out;
}

}  // namespace postern::master
