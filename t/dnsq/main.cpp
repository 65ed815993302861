// dnsq: a test program for lib/dns (not installed). Runs the lookups given on
// the command line at once through a dns::Resolver and prints one JSON line
// per lookup, in command-line order, when all are done:
//   dnsq [--server LIST] [--timeout MS] [--max N] [--hosts FILE] [--resolv-conf FILE]
//        [--chroot DIR] [--cancel] TYPE NAME [TYPE NAME ...]
//   {"type":"MX","name":"example.test","status":"found","secure":false,"ttl":300,"records":["10 mx1.example.test"]}
//   status: found | nodata | nxdomain | temp | perm (then "error" holds the text)
// --chroot enters DIR after the resolver is created (files are read only then);
// --cancel starts every lookup and cancels it at once: nothing may be printed
// but {"cancelled":N}. Exit status: 0 done, 1 resolver failure, 2 usage.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "dns/dns.hpp"
#include "event/event.hpp"
#include "util/strings.hpp"

using namespace postern;

namespace {

// Record text may hold any byte: keep the output plain ASCII JSON.
std::string json_string(std::string_view s) { return util::json_string(s, true); }

std::string hex(const std::vector<std::uint8_t>& v) {
    std::string out;
    char buf[3];
    for (auto b : v) {
        std::snprintf(buf, sizeof buf, "%02x", b);
        out += buf;
    }
    return out;
}

std::string text(const std::string& s) { return s; }
std::string text(const dns::Mx& m) { return std::to_string(m.preference) + " " + m.exchange; }
std::string text(const dns::Tlsa& t) {
    return std::to_string(t.usage) + " " + std::to_string(t.selector) + " " + std::to_string(t.matching) + " " + hex(t.data);
}

struct Job {
    std::string type, name;
    std::optional<std::string> line;
    dns::Lookup lookup;
};

template <typename T>
dns::Callback<T> report(Job& job, int& pending, event::Base& base) {
    return [&job, &pending, &base](Result<dns::Answer<T>> r) {
        std::string l = "{\"type\":" + json_string(job.type) + ",\"name\":" + json_string(job.name);
        if (!r) {
            bool temp = r.error().kind == Error::Kind::Temp;
            l += std::string(",\"status\":\"") + (temp ? "temp" : "perm") + "\",\"error\":" + json_string(r.error().text);
        } else {
            const char* st = r->status == dns::Status::Found ? "found" : r->status == dns::Status::NoData ? "nodata" : "nxdomain";
            l += std::string(",\"status\":\"") + st + "\",\"secure\":" + (r->secure ? "true" : "false") +
                 ",\"ttl\":" + std::to_string(r->ttl) + ",\"canonical\":" + json_string(r->name) + ",\"records\":[";
            for (std::size_t i = 0; i < r->records.size(); ++i) l += (i ? "," : "") + json_string(text(r->records[i]));
            l += "]";
        }
        job.line = l + "}";
        if (--pending == 0) base.exit();
    };
}

int usage() {
    std::fprintf(stderr, "usage: dnsq [--server LIST] [--timeout MS] [--max N] [--hosts FILE] [--resolv-conf FILE] "
                         "[--chroot DIR] [--cancel] TYPE NAME ...\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    dns::Options opt;
    std::string chroot_dir;
    bool cancel = false;
    std::vector<std::string> rest;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::optional<std::string> {
            if (i + 1 >= argc) return std::nullopt;
            return std::string(argv[++i]);
        };
        std::optional<std::string> v;
        if (a == "--server" && (v = next())) opt.servers = *v;
        else if (a == "--timeout" && (v = next())) opt.timeout = std::chrono::milliseconds(util::parse_long(*v).value_or(0));
        else if (a == "--max" && (v = next())) opt.max_queries = static_cast<std::size_t>(util::parse_long(*v).value_or(0));
        else if (a == "--hosts" && (v = next())) opt.hosts = *v;
        else if (a == "--resolv-conf" && (v = next())) opt.resolv_conf = *v;
        else if (a == "--chroot" && (v = next())) chroot_dir = *v;
        else if (a == "--cancel") cancel = true;
        else if (a.rfind("--", 0) == 0) return usage();
        else rest.push_back(a);
    }
    if (rest.empty() || rest.size() % 2 != 0) return usage();

    event::Base base;
    auto res = dns::Resolver::create(base, opt);
    if (!res) {
        std::fprintf(stderr, "dnsq: %s\n", res.error().text.c_str());
        return 1;
    }
    if (!chroot_dir.empty() && (::chroot(chroot_dir.c_str()) != 0 || ::chdir("/") != 0)) {
        std::fprintf(stderr, "dnsq: chroot %s: %s\n", chroot_dir.c_str(), std::strerror(errno));
        return 1;
    }
    auto& r = **res;
    std::vector<Job> jobs(rest.size() / 2);
    int pending = static_cast<int>(jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        Job& j = jobs[i];
        j.type = util::to_lower(rest[2 * i]);
        j.name = rest[2 * i + 1];
        if (j.type == "a") j.lookup = r.a(j.name, report<std::string>(j, pending, base));
        else if (j.type == "aaaa") j.lookup = r.aaaa(j.name, report<std::string>(j, pending, base));
        else if (j.type == "mx") j.lookup = r.mx(j.name, report<dns::Mx>(j, pending, base));
        else if (j.type == "txt") j.lookup = r.txt(j.name, report<std::string>(j, pending, base));
        else if (j.type == "ptr") j.lookup = r.ptr(j.name, report<std::string>(j, pending, base));
        else if (j.type == "tlsa") j.lookup = r.tlsa(j.name, report<dns::Tlsa>(j, pending, base));
        else return usage();
        j.type = rest[2 * i];
    }
    if (cancel) {
        for (auto& j : jobs) j.lookup.cancel();
        // Give stray callbacks (there must be none) time to show up.
        auto stop = event::Event::timer(base, [&] { base.exit(); });
        stop.add(std::chrono::milliseconds(500));
        base.dispatch();
        int called = 0;
        for (auto& j : jobs)
            if (j.line) ++called;
        std::printf("{\"cancelled\":%zu,\"called\":%d,\"in_flight\":%zu}\n", jobs.size(), called, r.in_flight());
        return 0;
    }
    base.dispatch();
    for (auto& j : jobs) std::printf("%s\n", j.line.value_or("{\"status\":\"lost\"}").c_str());
    return 0;
}
