// smtpd/protocol.cpp - RFC 5321 command, path and ESMTP parameter parsing.
#include "smtpd/protocol.hpp"

#include <cstdint>

#include "util/strings.hpp"

namespace postern::smtpd {
namespace {

constexpr std::size_t kMaxLocal = 64;
constexpr std::size_t kMaxDomain = 255;
constexpr std::size_t kMaxPath = 256;
constexpr std::size_t kMaxParams = 10;

bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_atext(unsigned char c) {
    return is_alpha(c) || is_digit(c) || std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) != std::string_view::npos;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}

bool valid_domain(std::string_view d, bool* utf8) {
    if (d.empty() || d.size() > kMaxDomain) return false;
    if (d.front() == '[') {
        // Address literal: [1.2.3.4] or [IPv6:...]; checked for shape only.
        if (d.back() != ']' || d.size() < 3) return false;
        for (unsigned char c : d.substr(1, d.size() - 2))
            if (!(is_alpha(c) || is_digit(c) || c == '.' || c == ':')) return false;
        return true;
    }
    std::size_t label = 0;
    for (std::size_t i = 0; i < d.size(); ++i) {
        auto c = static_cast<unsigned char>(d[i]);
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-') return false;
            label = 0;
            continue;
        }
        if (c >= 0x80) {
            *utf8 = true;
        } else if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '_')) {
            return false;
        } else if (c == '-' && label == 0) {
            return false;
        }
        if (++label > 63) return false;
    }
    return label > 0 && d.back() != '-';  // the last label may not end in '-' either
}

bool valid_local(std::string_view l, bool* utf8) {
    if (l.empty() || l.size() > kMaxLocal) return false;
    if (l.front() == '"') {
        if (l.size() < 2 || l.back() != '"') return false;
        for (std::size_t i = 1; i + 1 < l.size(); ++i) {
            auto c = static_cast<unsigned char>(l[i]);
            if (c == '\\') {
                if (++i + 1 >= l.size()) return false;
                c = static_cast<unsigned char>(l[i]);
                if (c < 32 || c == 127) return false;
            } else if (c == '"' || c < 32 || c == 127) {
                return false;
            } else if (c >= 0x80) {
                *utf8 = true;
            }
        }
        return true;
    }
    if (l.front() == '.' || l.back() == '.' || l.find("..") != std::string_view::npos) return false;
    for (unsigned char c : l) {
        if (c >= 0x80) *utf8 = true;
        else if (!is_atext(c) && c != '.') return false;
    }
    return true;
}

// Position of the '@' that separates local part and domain (not inside quotes).
std::string_view::size_type split_at(std::string_view s) {
    bool quoted = false;
    std::string_view::size_type at = std::string_view::npos;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (quoted && s[i] == '\\') {
            ++i;
            continue;
        }
        if (s[i] == '"') quoted = !quoted;
        else if (!quoted && s[i] == '@') at = i;
    }
    return quoted ? std::string_view::npos : at;
}

// Decoded xtext (ENVID, ORCPT, AUTH) goes into queue records and DSN headers:
// "+0D+0A" must not smuggle a line break or NUL into them.
bool has_control(std::string_view s) {
    for (unsigned char c : s)
        if (c < 32 || c == 127) return true;
    return false;
}

// Well-formed UTF-8 (RFC 3629): no overlongs, surrogates or values past U+10FFFF.
bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t n;
        std::uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= s.size()) return false;
        for (std::size_t k = 1; k <= n; ++k) {
            auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += n + 1;
    }
    return true;
}

bool valid_param_value(std::string_view v) {
    for (unsigned char c : v)
        if (c < 33 || c > 126 || c == '=') return false;
    return true;
}

}  // namespace

Result<Command> parse_command(std::string_view line) {
    if (line.find('\0') != std::string_view::npos) return Error::protocol("500 5.5.2 Error: NUL character in command");
    if (line.find('\r') != std::string_view::npos) return Error::protocol("500 5.5.2 Error: bare <CR> in command");
    for (unsigned char c : line)
        if (c < 32 && c != '\t') return Error::protocol("500 5.5.2 Error: control character in command");
    auto sp = line.find(' ');
    std::string_view verb = line.substr(0, sp);
    Command cmd;
    if (sp != std::string_view::npos) {
        std::string_view rest = line.substr(sp + 1);
        while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
        while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
        cmd.arg = std::string(rest);
    }
    static const std::pair<std::string_view, Verb> kVerbs[] = {
        {"HELO", Verb::Helo}, {"EHLO", Verb::Ehlo}, {"MAIL", Verb::Mail}, {"RCPT", Verb::Rcpt},
        {"DATA", Verb::Data}, {"BDAT", Verb::Bdat}, {"RSET", Verb::Rset}, {"NOOP", Verb::Noop},
        {"QUIT", Verb::Quit}, {"VRFY", Verb::Vrfy}, {"EXPN", Verb::Expn}, {"HELP", Verb::Help},
        {"STARTTLS", Verb::Starttls}, {"AUTH", Verb::Auth},
    };
    for (auto& [name, v] : kVerbs) {
        if (util::iequals(verb, name)) {
            cmd.verb = v;
            cmd.name = std::string(name);
            return cmd;
        }
    }
    cmd.name = "unknown";
    return cmd;
}

Result<Path> parse_path(std::string_view arg, std::string_view prefix, bool allow_null, bool allow_bare_postmaster) {
    const bool mail = prefix == "FROM:";
    const char* syntax = mail ? "501 5.5.4 Syntax: MAIL FROM:<address>" : "501 5.5.4 Syntax: RCPT TO:<address>";
    const std::string bad = mail ? "501 5.1.7 Bad sender address syntax" : "501 5.1.3 Bad recipient address syntax";
    if (!util::starts_with_icase(arg, prefix)) return Error::protocol(syntax);
    arg.remove_prefix(prefix.size());
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    std::string_view inner, rest;
    if (!arg.empty() && arg.front() == '<') {
        // Find the closing '>' outside quoted strings.
        bool quoted = false;
        std::size_t end = std::string_view::npos;
        for (std::size_t i = 1; i < arg.size(); ++i) {
            if (quoted && arg[i] == '\\') {
                ++i;
                continue;
            }
            if (arg[i] == '"') quoted = !quoted;
            else if (!quoted && arg[i] == '>') {
                end = i;
                break;
            }
        }
        if (end == std::string_view::npos) return Error::protocol(bad);
        inner = arg.substr(1, end - 1);
        rest = arg.substr(end + 1);
        if (!rest.empty() && rest.front() != ' ') return Error::protocol(bad);
    } else {
        auto sp = arg.find(' ');
        inner = arg.substr(0, sp);
        rest = sp == std::string_view::npos ? std::string_view() : arg.substr(sp);
        if (inner.empty()) return Error::protocol(syntax);
    }
    if (inner.size() > kMaxPath) return Error::protocol(mail ? "501 5.1.7 Sender address too long" : "501 5.1.3 Recipient address too long");
    Path p;
    if (inner.empty()) {
        if (!allow_null) return Error::protocol(bad);
    } else {
        // A source route (@a,@b:user@c) is checked and dropped (RFC 5321 C).
        if (inner.front() == '@') {
            auto colon = inner.find(':');
            if (colon == std::string_view::npos) return Error::protocol(bad);
            for (auto& hop : util::split_list(inner.substr(0, colon))) {
                bool u = false;
                if (hop.size() < 2 || hop[0] != '@' || !valid_domain(std::string_view(hop).substr(1), &u))
                    return Error::protocol(bad);
            }
            inner = inner.substr(colon + 1);
        }
        auto at = split_at(inner);
        if (at == std::string_view::npos) {
            if (allow_bare_postmaster && util::iequals(inner, "postmaster")) {
                p.local = std::string(inner);
                p.address = p.local;
            } else {
                return Error::protocol(bad);
            }
        } else {
            std::string_view local = inner.substr(0, at), domain = inner.substr(at + 1);
            if (!valid_local(local, &p.utf8) || !valid_domain(domain, &p.utf8)) return Error::protocol(bad);
            if (p.utf8 && !valid_utf8(inner)) return Error::protocol(bad);
            p.local = std::string(local);
            p.domain = util::to_lower(domain);
            p.address = p.local + "@" + p.domain;
        }
    }
    for (auto& item : util::split_ws(rest)) {
        if (p.params.size() >= kMaxParams) return Error::protocol("501 5.5.4 Too many parameters");
        auto eq = item.find('=');
        std::string key = upper(std::string_view(item).substr(0, eq));
        std::string value = eq == std::string::npos ? std::string() : item.substr(eq + 1);
        if (key.empty() || key.size() > 20 || !valid_param_value(value) || (eq != std::string::npos && value.empty()))
            return Error::protocol("501 5.5.4 Bad parameter syntax");
        for (unsigned char c : key)
            if (!is_alpha(c) && !is_digit(c) && c != '-') return Error::protocol("501 5.5.4 Bad parameter syntax");
        for (auto& [k, v] : p.params)
            if (k == key) return Error::protocol("501 5.5.4 Duplicate parameter " + key);
        p.params.emplace_back(key, value);
    }
    return p;
}

Result<MailParams> parse_mail_params(const std::vector<std::pair<std::string, std::string>>& params) {
    MailParams m;
    for (auto& [k, v] : params) {
        if (k == "SIZE") {
            auto n = util::parse_long(v);
            if (v.empty() || v.size() > 19 || !n || *n < 0) return Error::protocol("501 5.5.4 Bad SIZE parameter");
            m.size = static_cast<unsigned long long>(*n);
        } else if (k == "BODY") {
            if (util::iequals(v, "7BIT")) m.body = Body::SevenBit;
            else if (util::iequals(v, "8BITMIME")) m.body = Body::EightBitMime;
            else return Error::protocol("501 5.5.4 Unsupported BODY parameter value");
        } else if (k == "SMTPUTF8") {
            if (!v.empty()) return Error::protocol("501 5.5.4 SMTPUTF8 takes no value");
            m.smtputf8 = true;
        } else if (k == "RET") {
            if (util::iequals(v, "FULL")) m.ret = "FULL";
            else if (util::iequals(v, "HDRS")) m.ret = "HDRS";
            else return Error::protocol("501 5.5.4 Bad RET parameter");
        } else if (k == "ENVID") {
            auto d = xtext_decode(v);
            if (v.empty() || !d || d->size() > 100 || has_control(*d)) return Error::protocol("501 5.5.4 Bad ENVID parameter");
            m.envid = *d;
        } else if (k == "AUTH") {
            auto d = v == "<>" ? std::optional<std::string>("<>") : xtext_decode(v);
            if (!d || has_control(*d)) return Error::protocol("501 5.5.4 Bad AUTH parameter");
            m.auth = *d;
        } else {
            return Error::protocol("555 5.5.4 Unsupported option: " + k);
        }
    }
    return m;
}

Result<RcptParams> parse_rcpt_params(const std::vector<std::pair<std::string, std::string>>& params) {
    RcptParams r;
    for (auto& [k, v] : params) {
        if (k == "NOTIFY") {
            if (v.empty()) return Error::protocol("501 5.5.4 Bad NOTIFY parameter");
            for (auto& item : util::split_list(v)) {
                unsigned bit = util::iequals(item, "NEVER") ? 1 : util::iequals(item, "SUCCESS") ? 2
                             : util::iequals(item, "FAILURE") ? 4 : util::iequals(item, "DELAY") ? 8 : 0;
                if (bit == 0) return Error::protocol("501 5.5.4 Bad NOTIFY parameter");
                r.notify |= bit;
            }
            if (r.notify == 0) return Error::protocol("501 5.5.4 Bad NOTIFY parameter");  // e.g. "NOTIFY=,"
            if ((r.notify & 1) && r.notify != 1) return Error::protocol("501 5.5.4 NOTIFY=NEVER cannot be combined");
        } else if (k == "ORCPT") {
            auto semi = v.find(';');
            if (semi == std::string::npos || semi == 0) return Error::protocol("501 5.5.4 Bad ORCPT parameter");
            auto d = xtext_decode(std::string_view(v).substr(semi + 1));
            if (!d || d->empty() || d->size() > 500 || has_control(*d)) return Error::protocol("501 5.5.4 Bad ORCPT parameter");
            r.orcpt = util::to_lower(v.substr(0, semi)) + ";" + *d;
        } else {
            return Error::protocol("555 5.5.4 Unsupported option: " + k);
        }
    }
    return r;
}

bool valid_helo(std::string_view s) {
    if (s.empty() || s.size() > 255) return false;
    for (unsigned char c : s)
        if (c < 33 || c > 126) return false;
    return true;
}

}  // namespace postern::smtpd
