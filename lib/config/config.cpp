// config/config.cpp - main.cf parsing, $name expansion and typed checks.
#include "config/config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace postern::config {
namespace {

constexpr std::size_t kMaxFile = 1 << 20;
constexpr std::size_t kMaxValue = 100000;
constexpr int kMaxDepth = 20;
constexpr std::size_t kMaxWork = 20'000'000;

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool valid_name(std::string_view s) {
    if (s.empty() || s.size() > 100) return false;
    for (char c : s)
        if (!is_name_char(c)) return false;
    return true;
}

bool starts_with_space(std::string_view line) { return !line.empty() && (line[0] == ' ' || line[0] == '\t'); }

// Splits text into physical lines (without "\n" or a trailing "\r").
std::vector<std::string_view> physical_lines(std::string_view text) {
    std::vector<std::string_view> out;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        out.push_back(line);
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    return out;
}

// A logical line: continuation lines (leading white space) joined with one space.
struct Logical {
    std::string text;
    int line = 0;
};

Result<std::vector<Logical>> logical_lines(std::string_view text, const std::string& file) {
    if (text.size() > kMaxFile) return Error::config(file + ": file is larger than 1 MiB");
    if (auto nul = text.find('\0'); nul != std::string_view::npos) {
        int line = 1;
        for (std::size_t i = 0; i < nul; ++i) line += text[i] == '\n';
        return Error::config(file + ":" + std::to_string(line) + ": NUL byte in file");
    }
    std::vector<Logical> out;
    std::string errors;
    int n = 0;
    for (auto raw : physical_lines(text)) {
        ++n;
        auto t = util::trim(raw);
        if (t.empty() || t.front() == '#') continue;
        if (starts_with_space(raw)) {
            if (out.empty()) {
                errors += file + ":" + std::to_string(n) + ": continuation line before any setting\n";
                continue;
            }
            out.back().text += ' ';
            out.back().text += t;
            continue;
        }
        out.push_back({std::string(t), n});
    }
    if (!errors.empty()) {
        errors.pop_back();
        return Error::config(errors);
    }
    return out;
}

std::string where(const std::string& file, int line) { return file + ":" + std::to_string(line); }

std::string default_hostname() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
    return util::to_lower(buf);
}

// Per-transport scheduling limits, named after a master.cf service
// ("local_destination_concurrency_limit"), as Postfix has them.
bool is_transport_limit(std::string_view name) {
    for (std::string_view suffix : {"_destination_concurrency_limit", "_destination_recipient_limit"}) {
        if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix &&
            name.substr(0, name.size() - suffix.size()) != "default")
            return true;
    }
    return false;
}

// Expands $name, ${name}, $(name), ${name?text}, ${name:text} and $$.
class Expander {
public:
    using Lookup = std::optional<std::string> (*)(void* ctx, std::string_view name);
    Expander(Lookup lookup, void* ctx) : lookup_(lookup), ctx_(ctx) {}

    // Returns the expanded text or an error message (without origin).
    Result<std::string> expand(std::string_view text, int depth = 0) {
        if (depth > kMaxDepth) return Error::config("parameter expansion is recursive (more than 20 levels)");
        // Note: depth alone does not bound the work: ten levels of ten
        // references to an empty value are 10^10 lookups.
        work_ += text.size() + 1;
        if (work_ > kMaxWork) return Error::config("parameter expansion takes too much work");
        std::string out;
        std::size_t i = 0;
        while (i < text.size()) {
            char c = text[i];
            if (c != '$') {
                out += c;
                ++i;
                continue;
            }
            if (i + 1 >= text.size()) return Error::config("'$' at end of value");
            char d = text[i + 1];
            if (d == '$') {
                out += '$';
                i += 2;
                continue;
            }
            std::string_view name, alt;
            char op = 0;
            if (d == '{' || d == '(') {
                char close = d == '{' ? '}' : ')';
                // Note: brackets nest, as in Postfix, so ${a?${b}} works.
                std::size_t end = i + 2;
                for (int level = 0; end < text.size(); ++end) {
                    if (text[end] == d) ++level;
                    else if (text[end] == close && level-- == 0) break;
                }
                if (end >= text.size()) return Error::config(std::string("missing '") + close + "'");
                std::string_view inner = text.substr(i + 2, end - i - 2);
                auto sep = inner.find_first_of("?:");
                name = inner.substr(0, sep);
                if (sep != std::string_view::npos) {
                    op = inner[sep];
                    alt = inner.substr(sep + 1);
                }
                i = end + 1;
            } else {
                std::size_t j = i + 1;
                while (j < text.size() && is_name_char(text[j])) ++j;
                name = text.substr(i + 1, j - i - 1);
                if (name.empty()) return Error::config("'$' not followed by a parameter name");
                i = j;
            }
            if (!valid_name(name)) return Error::config("bad parameter name in \"$" + std::string(name) + "\"");
            referenced.insert(std::string(name));
            auto raw = lookup_(ctx_, name);
            if (!raw && op == 0) return Error::config("undefined parameter $" + std::string(name));
            std::string value;
            if (raw) {
                auto v = expand(*raw, depth + 1);
                if (!v) return v;
                value = std::move(*v);
                work_ += value.size();
            }
            if (op == '?') {
                if (!value.empty()) {
                    auto v = expand(alt, depth + 1);
                    if (!v) return v;
                    out += *v;
                }
            } else if (op == ':') {
                if (value.empty()) {
                    auto v = expand(alt, depth + 1);
                    if (!v) return v;
                    out += *v;
                }
            } else {
                out += value;
            }
            if (out.size() > kMaxValue) return Error::config("expanded value is longer than 100000 bytes");
        }
        return out;
    }

    std::set<std::string> referenced;

private:
    Lookup lookup_;
    void* ctx_;
    std::size_t work_ = 0;  // bytes scanned and copied, over all calls
};

struct LoadCtx {
    std::map<std::string, Setting, std::less<>> settings;
    std::string hostname;
    std::string dir;
};

std::optional<std::string> lookup_raw(void* p, std::string_view name) {
    auto* ctx = static_cast<LoadCtx*>(p);
    if (name == "config_directory") return ctx->dir;
    if (auto it = ctx->settings.find(name); it != ctx->settings.end()) return it->second.value;
    if (name == "myhostname") return ctx->hostname;
    if (const ParamDef* d = find_param(name)) return std::string(d->default_value);
    return std::nullopt;
}

std::string domain_of(const std::string& host) {
    auto dot = host.find('.');
    if (dot == std::string::npos || dot + 1 >= host.size()) return "localdomain";
    return host.substr(dot + 1);
}

}  // namespace

std::optional<Seconds> parse_time(std::string_view text) {
    text = util::trim(text);
    if (text.empty()) return std::nullopt;
    long long mult = 1;
    switch (text.back()) {
        case 's': mult = 1; text.remove_suffix(1); break;
        case 'm': mult = 60; text.remove_suffix(1); break;
        case 'h': mult = 3600; text.remove_suffix(1); break;
        case 'd': mult = 86400; text.remove_suffix(1); break;
        case 'w': mult = 7 * 86400; text.remove_suffix(1); break;
        default: break;
    }
    auto n = util::parse_long(text);
    if (!n || *n < 0 || *n > (1LL << 40)) return std::nullopt;
    return Seconds(*n * mult);
}

std::optional<bool> parse_bool(std::string_view text) {
    text = util::trim(text);
    if (util::iequals(text, "yes") || util::iequals(text, "true") || util::iequals(text, "on")) return true;
    if (util::iequals(text, "no") || util::iequals(text, "false") || util::iequals(text, "off")) return false;
    return std::nullopt;
}

namespace {
// Parses what it can; problems go to errors (one "file:line: text\n" each).
std::vector<Setting> parse_settings(std::string_view text, const std::string& file,
                                    std::vector<std::string>* warnings_out, std::string& errors) {
    std::vector<Setting> out;
    auto lines = logical_lines(text, file);
    if (!lines) {
        errors += lines.error().text + "\n";
        return out;
    }
    std::map<std::string, std::size_t, std::less<>> last;  // name -> index in out
    for (auto& l : *lines) {
        auto eq = l.text.find('=');
        if (eq == std::string::npos) {
            errors += where(file, l.line) + ": missing '=' after parameter name\n";
            continue;
        }
        std::string name(util::trim(std::string_view(l.text).substr(0, eq)));
        std::string value(util::trim(std::string_view(l.text).substr(eq + 1)));
        if (!valid_name(name)) {
            errors += where(file, l.line) + ": bad parameter name \"" + util::printable(name, 60) + "\"\n";
            continue;
        }
        if (value.size() > kMaxValue) {
            errors += where(file, l.line) + ": value of " + name + " is longer than 100000 bytes\n";
            continue;
        }
        // Note: an index by name keeps this linear; 1 MiB is ~100,000 lines.
        auto [it, fresh] = last.try_emplace(name, out.size());
        if (!fresh) {
            if (warnings_out)
                warnings_out->push_back(where(file, l.line) + ": overriding earlier entry: " + name + " (" +
                                        out[it->second].origin + ")");
            it->second = out.size();
        }
        out.push_back({name, value, where(file, l.line)});
    }
    // Keep the last setting of each name, in file order.
    std::vector<Setting> kept;
    for (std::size_t i = 0; i < out.size(); ++i)
        if (last.find(out[i].name)->second == i) kept.push_back(std::move(out[i]));
    return kept;
}
}  // namespace

Result<std::vector<Setting>> parse_main_cf(std::string_view text, const std::string& file,
                                           std::vector<std::string>* warnings_out) {
    std::string errors;
    auto out = parse_settings(text, file, warnings_out, errors);
    if (!errors.empty()) {
        errors.pop_back();
        return Error::config(errors);
    }
    return out;
}

Result<std::string> read_config_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Error::config(path + ": " + std::strerror(errno));
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return Error::config(path + ": " + std::strerror(errno));
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
        if (out.size() > kMaxFile) return Error::config(path + ": file is larger than 1 MiB");
    }
    return out;
}

Result<Config> Config::load(const std::string& dir,
                            const std::vector<std::pair<std::string, std::string>>& overrides,
                            std::vector<std::string>* warnings_out) {
    std::string path = dir + "/main.cf";
    std::string text;
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0 || errno != ENOENT) {
        auto t = read_config_file(path);
        if (!t) return t.error();
        text = std::move(*t);
    }
    return from_text(text, path, dir, overrides, warnings_out);
}

Result<Config> Config::from_text(std::string_view main_cf, const std::string& file, const std::string& dir,
                                 const std::vector<std::pair<std::string, std::string>>& overrides,
                                 std::vector<std::string>* warnings_out) {
    // Every problem is reported at once: bad lines do not hide bad values.
    std::string errors;
    auto settings = parse_settings(main_cf, file, warnings_out, errors);

    LoadCtx ctx;
    ctx.dir = dir;
    ctx.hostname = default_hostname();
    for (auto& s : settings) ctx.settings[s.name] = s;
    for (auto& [name, value] : overrides) {
        if (!valid_name(name)) {
            errors += "-o " + util::printable(name, 60) + ": bad parameter name\n";
            continue;
        }
        ctx.settings[name] = Setting{name, value, "-o " + name};
    }

    Expander ex(lookup_raw, &ctx);
    Config cfg;
    auto origin_of = [&](std::string_view name) -> std::string {
        auto it = ctx.settings.find(name);
        return it != ctx.settings.end() ? it->second.origin : std::string(file + ": default for ") + std::string(name);
    };
    // mydomain's default depends on the expanded myhostname.
    if (!ctx.settings.count("mydomain")) {
        auto host = ex.expand("$myhostname");
        ctx.settings["mydomain"] = Setting{"mydomain", domain_of(host ? *host : ctx.hostname), "default"};
        ctx.settings["mydomain"].origin = file + ": default for mydomain";
    }

    for (const ParamDef& d : param_table()) {
        auto raw = lookup_raw(&ctx, d.name);
        // A late parameter keeps its $names for the daemon to expand per
        // use (forward_path: $home, $user, $extension), with Config::expand.
        auto v = d.late ? Result<std::string>(raw.value_or("")) : ex.expand(raw.value_or(""));
        if (!v) {
            errors += origin_of(d.name) + ": " + d.name.data() + ": " + v.error().text + "\n";
            continue;
        }
        cfg.expanded_[std::string(d.name)] = *v;
        auto bad = [&](const std::string& want) {
            errors += origin_of(d.name) + ": invalid value for " + std::string(d.name) + ": \"" +
                      util::printable(*v, 80) + "\" (" + want + ")\n";
        };
        auto range = [&] { return d.max > 0 ? " between " + std::to_string(d.min) + " and " + std::to_string(d.max) : ""; };
        switch (d.type) {
            case Type::Str: {
                auto allowed = util::split_ws(d.choices);
                if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), util::trim(*v)) == allowed.end())
                    bad("expected one of: " + std::string(d.choices));
                else
                    cfg.params_.*std::get<std::string Params::*>(d.member) = std::string(util::trim(*v));
                break;
            }
            case Type::Int: {
                auto n = util::parse_long(util::trim(*v));
                if (!n || (d.max > 0 && (*n < d.min || *n > d.max)))
                    bad("expected a number" + range());
                else
                    cfg.params_.*std::get<long long Params::*>(d.member) = *n;
                break;
            }
            case Type::Bool: {
                auto b = parse_bool(*v);
                if (!b)
                    bad("expected yes or no");
                else
                    cfg.params_.*std::get<bool Params::*>(d.member) = *b;
                break;
            }
            case Type::Time: {
                auto t = parse_time(*v);
                if (!t || (d.max > 0 && (t->count() < d.min || t->count() > d.max)))
                    bad("expected a time like 30s, 5m, 1h, 2d" + (d.max > 0 ? ", in seconds" + range() : std::string()));
                else
                    cfg.params_.*std::get<Seconds Params::*>(d.member) = *t;
                break;
            }
        }
    }
    // Settings Postern does not know: expand them (custom parameters may be
    // referenced elsewhere) and warn when nothing uses them.
    for (auto& [name, s] : ctx.settings) {
        if (find_param(name)) continue;
        auto v = ex.expand(s.value);
        if (!v) {
            errors += s.origin + ": " + name + ": " + v.error().text + "\n";
            continue;
        }
        if (is_transport_limit(name)) {
            auto n = util::parse_long(*v);
            if (!n || *n < 1 || *n > 10000)
                errors += s.origin + ": invalid value for " + name + ": \"" + util::printable(*v, 80) +
                          "\" (a number between 1 and 10000)\n";
        }
        cfg.expanded_[name] = *v;
    }
    for (auto& [name, s] : ctx.settings) {
        if (!find_param(name) && !is_transport_limit(name) && !ex.referenced.count(name) && warnings_out &&
            s.origin.rfind("-o", 0) != 0)
            warnings_out->push_back(s.origin + ": unknown parameter: " + name);
    }
    if (!errors.empty()) {
        errors.pop_back();
        return Error::config(errors);
    }
    return cfg;
}

std::string Config::expand(std::string_view text, const std::map<std::string, std::string, std::less<>>* extra) const {
    struct Ctx {
        const Config* self;
        const std::map<std::string, std::string, std::less<>>* extra;
    } ctx{this, extra};
    Expander ex(
        [](void* p, std::string_view name) -> std::optional<std::string> {
            auto* c = static_cast<Ctx*>(p);
            const std::string* value = nullptr;
            if (c->extra) {
                if (auto e = c->extra->find(name); e != c->extra->end()) value = &e->second;
            }
            if (!value) {
                auto it = c->self->expanded_.find(name);
                if (it == c->self->expanded_.end()) return std::string();
                value = &it->second;
            }
            // Values are already expanded; protect '$' in them.
            std::string out;
            for (char ch : *value) {
                out += ch;
                if (ch == '$') out += '$';
            }
            return out;
        },
        &ctx);
    auto r = ex.expand(text);
    return r ? *r : std::string(text);
}

std::optional<std::string> Config::value(std::string_view name) const {
    auto it = expanded_.find(name);
    if (it == expanded_.end()) return std::nullopt;
    return it->second;
}

}  // namespace postern::config
