// config/master_cf.cpp - the master.cf service table.
#include <cerrno>
#include <sys/stat.h>

#include "config/config.hpp"
#include "util/strings.hpp"

namespace postern::config {
namespace {

// Continuation lines (leading white space) belong to the previous entry.
struct Entry {
    std::string text;
    int line;
};

std::vector<Entry> entries(std::string_view text) {
    std::vector<Entry> out;
    int n = 0;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        ++n;
        auto t = util::trim(line);
        if (t.empty() || t.front() == '#') continue;
        if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
            out.back().text += ' ';
            out.back().text += t;
        } else {
            out.push_back({std::string(t), n});
        }
    }
    return out;
}

// Parses y/n/- fields.
std::optional<bool> yes_no(std::string_view f, bool dflt) {
    if (f == "-") return dflt;
    if (f == "y") return true;
    if (f == "n") return false;
    return std::nullopt;
}

}  // namespace

Result<std::vector<Service>> parse_master_cf(std::string_view text, const std::string& file) {
    if (text.size() > (1 << 20)) return Error::config(file + ": file is larger than 1 MiB");
    std::vector<Service> out;
    std::map<std::string, std::string> seen;  // key() -> origin of the accepted entry
    std::string errors;
    for (auto& e : entries(text)) {
        std::string at = file + ":" + std::to_string(e.line) + ": ";
        if (e.text.find('\0') != std::string::npos) {
            errors += at + "NUL byte in line\n";
            continue;
        }
        if (e.text.size() > 100000) {
            errors += at + "entry is longer than 100000 bytes\n";
            continue;
        }
        auto f = util::split_ws(e.text);
        if (f.size() < 8) {
            errors += at + "expected 8 or more fields (service type private unpriv chroot wakeup maxproc command), got " +
                      std::to_string(f.size()) + "\n";
            continue;
        }
        Service s;
        s.origin = file + ":" + std::to_string(e.line);
        s.name = f[0];
        if (f[1] == "inet") {
            s.type = ServiceType::Inet;
        } else if (f[1] == "unix") {
            s.type = ServiceType::Unix;
        } else {
            errors += at + "unsupported service type \"" + util::printable(f[1], 40) + "\" (inet or unix)\n";
            continue;
        }
        bool ok = true;
        auto flag = [&](const std::string& v, const char* what, bool dflt, bool& out_flag) {
            auto b = yes_no(v, dflt);
            if (!b) {
                errors += at + "bad " + what + " field \"" + util::printable(v, 40) + "\" (y, n or -)\n";
                ok = false;
            } else {
                out_flag = *b;
            }
        };
        flag(f[2], "private", s.type == ServiceType::Unix, s.private_);
        flag(f[3], "unpriv", true, s.unpriv);
        flag(f[4], "chroot", true, s.chroot);
        if (s.type == ServiceType::Inet && s.private_ && f[2] == "y") {
            errors += at + "an inet service cannot be private\n";
            ok = false;
        }
        if (s.type == ServiceType::Inet) s.private_ = false;
        if (f[5] != "-") {
            std::string_view w = f[5];
            if (!w.empty() && w.back() == '?') {
                s.wakeup_if_used = true;
                w.remove_suffix(1);
            }
            auto n = util::parse_long(w);
            if (!n || *n < 0 || *n > 86400 * 365) {
                errors += at + "bad wakeup field \"" + util::printable(f[5], 40) + "\" (seconds, or -)\n";
                ok = false;
            } else {
                s.wakeup = *n;
            }
        }
        if (f[6] != "-") {
            auto n = util::parse_long(f[6]);
            if (!n || *n < 0 || *n > 100000) {
                errors += at + "bad maxproc field \"" + util::printable(f[6], 40) + "\" (a number, or -)\n";
                ok = false;
            } else {
                s.maxproc = *n;
            }
        }
        s.command = f[7];
        if (s.command.find("..") != std::string::npos) {
            errors += at + "command must not contain \"..\"\n";
            ok = false;
        }
        for (std::size_t i = 8; i < f.size(); ++i) {
            if (f[i] == "-o") {
                if (i + 1 >= f.size()) {
                    errors += at + "-o without name=value\n";
                    ok = false;
                    break;
                }
                const std::string& kv = f[++i];
                auto eq = kv.find('=');
                if (eq == std::string::npos || eq == 0) {
                    errors += at + "bad -o option \"" + util::printable(kv, 60) + "\" (expected name=value)\n";
                    ok = false;
                    continue;
                }
                s.overrides.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
            } else {
                s.args.push_back(f[i]);
            }
        }
        // Note: a map, not a scan of out: a 1 MiB file has ~50,000 entries.
        if (auto it = seen.find(s.key()); it != seen.end()) {
            errors += at + "duplicate service " + s.name + " " + f[1] + " (first defined at " + it->second + ")\n";
            ok = false;
        }
        if (ok) {
            seen.emplace(s.key(), s.origin);
            out.push_back(std::move(s));
        }
    }
    if (!errors.empty()) {
        errors.pop_back();
        return Error::config(errors);
    }
    return out;
}

Result<std::vector<Service>> load_master_cf(const std::string& dir) {
    std::string path = dir + "/master.cf";
    auto text = read_config_file(path);
    if (!text) return text.error();
    return parse_master_cf(*text, path);
}

}  // namespace postern::config
