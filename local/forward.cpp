// local/forward.cpp - parsing alias/.forward/:include: entries; forward_path; file safety.
#include "local/forward.hpp"

#include <map>

#include "util/strings.hpp"

namespace postern::local {
namespace {

// Splits at commas (and newlines when files) outside double quotes; keeps the
// quotes and backslashes for classify(). Fails on an unterminated quote.
Result<std::vector<std::string>> split_items(std::string_view list, bool newlines) {
    std::vector<std::string> items;
    std::string cur;
    bool quoted = false;
    for (std::size_t i = 0; i < list.size(); ++i) {
        char c = list[i];
        if (quoted && c == '\\' && i + 1 < list.size()) {
            cur += c;
            cur += list[++i];
            continue;
        }
        if (c == '"') quoted = !quoted;
        if (!quoted && (c == ',' || (newlines && c == '\n'))) {
            items.push_back(std::move(cur));
            cur.clear();
            continue;
        }
        cur += c;
    }
    if (quoted) return Error::perm("unterminated quoted string");
    items.push_back(std::move(cur));
    return items;
}

// "\"text\"" (the whole item) -> text without quotes and escapes.
std::string unquote(std::string_view s) {
    std::string out;
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
        if (s[i] == '\\' && i + 2 < s.size()) ++i;
        out += s[i];
    }
    return out;
}

bool wholly_quoted(std::string_view s) {
    if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
        if (s[i] == '\\') ++i;
        else if (s[i] == '"') return false;
    }
    return true;
}

Result<Entry> classify(std::string_view raw) {
    std::string item = wholly_quoted(raw) ? unquote(raw) : std::string(raw);
    std::string_view s = util::trim(item);
    constexpr std::string_view Include = ":include:";
    Entry e;
    if (!s.empty() && s[0] == '|') {
        e.kind = Entry::Kind::Command;
        e.text = std::string(util::trim(s.substr(1)));
        if (e.text.empty()) return Error::perm("empty command in \"" + util::printable(s) + "\"");
    } else if (!s.empty() && s[0] == '/') {
        e.kind = Entry::Kind::File;
        e.text = std::string(s);
    } else if (util::starts_with_icase(s, Include)) {
        e.kind = Entry::Kind::Include;
        e.text = std::string(util::trim(s.substr(Include.size())));
        if (e.text.empty() || e.text[0] != '/')
            return Error::perm(":include: needs an absolute path: \"" + util::printable(s) + "\"");
    } else {
        if (!s.empty() && s[0] == '\\') {
            e.backslash = true;
            s.remove_prefix(1);
        }
        if (s.size() >= 2 && s.front() == '<' && s.back() == '>') s = s.substr(1, s.size() - 2);
        e.text = std::string(util::trim(s));
        if (e.text.empty()) return Error::perm("empty address");
    }
    return e;
}

Result<std::vector<Entry>> parse(std::string_view text, bool newlines) {
    auto items = split_items(text, newlines);
    if (!items) return items.error();
    std::vector<Entry> out;
    for (auto& item : *items) {
        if (util::trim(item).empty()) continue;
        auto e = classify(item);
        if (!e) return e.error();
        if (out.size() >= MaxEntries) return Error::perm("more than " + std::to_string(MaxEntries) + " entries");
        out.push_back(std::move(*e));
    }
    return out;
}

}  // namespace

Result<std::vector<Entry>> parse_entries(std::string_view list) { return parse(list, false); }

Result<std::vector<Entry>> parse_file_entries(std::string_view text) {
    std::string kept;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        std::string_view t = util::trim(line);
        if (!t.empty() && t[0] == '#') continue;
        kept.append(line);
        kept += '\n';
    }
    return parse(kept, true);
}

std::vector<std::string> forward_paths(const config::Config& cfg, const ForwardVars& v) {
    std::map<std::string, std::string, std::less<>> vars = {
        {"home", v.home},         {"user", v.user},     {"extension", v.extension},
        {"recipient_delimiter", v.recipient_delimiter}, {"local", v.local},
        {"domain", v.domain},     {"recipient", v.recipient},
    };
    // Note: an entry "uses $extension" when its expansion changes with it;
    // that also catches ${extension?...} and nested forms without a parser.
    auto probe = vars;
    probe["extension"] = "\x01";
    std::vector<std::string> out;
    for (auto& entry : util::split_list(cfg.params().forward_path)) {
        std::string path = cfg.expand(entry, &vars);
        if (v.extension.empty() && cfg.expand(entry, &probe) != path) continue;
        if (!path.empty() && path[0] == '/') out.push_back(std::move(path));
    }
    return out;
}

std::string unsafe_file(const struct stat& st, uid_t owner) {
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    if (st.st_uid != owner && st.st_uid != 0) return "owned by uid " + std::to_string(st.st_uid);
    if (st.st_mode & (S_IWGRP | S_IWOTH)) return "writable by group or others";
    return "";
}

}  // namespace postern::local
