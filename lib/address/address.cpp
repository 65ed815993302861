// address/address.cpp - RFC 5322 address-list tokenizer and parser, RFC 5321 local-part quoting.
#include "address/address.hpp"

#include <cstdint>

namespace postern::address {

namespace {

bool is_wsp(unsigned char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool is_ctl(unsigned char c) noexcept { return c < 0x20 || c == 0x7f; }

// RFC 5322 atext plus UTF-8 bytes (RFC 6531); not '.'.
bool is_atext(unsigned char c) noexcept {
    if (c >= 0x80) return true;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-': case '/':
    case '=': case '?': case '^': case '_': case '`': case '{': case '|': case '}': case '~':
        return true;
    default:
        return false;
    }
}

enum class Tok { Atom, Quoted, Literal, Special };

struct Token {
    Tok type;
    char special = 0;
    std::string text;           // atom text, unquoted string, or "[...]"
    bool space_before = false;  // whitespace or a comment came before it
};

Error bad(const char* what) { return Error::perm(std::string(what) + " in address list"); }

// Splits text into tokens, dropping whitespace and comments. Atoms include
// dots, so "John Q. Public" and "a.b" are handled without special cases.
Result<std::vector<Token>> tokenize(std::string_view s) {
    std::vector<Token> out;
    bool space = false;
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        auto c = static_cast<unsigned char>(s[i]);
        if (is_wsp(c)) {
            space = true;
            ++i;
            continue;
        }
        if (c == '(') {
            std::size_t depth = 0;
            for (;;) {
                if (i >= n) return bad("unterminated comment");
                char d = s[i++];
                if (d == '\\') {
                    if (i >= n) return bad("unterminated comment");
                    ++i;
                } else if (d == '(') {
                    if (++depth > MaxCommentDepth) return bad("comments nested too deeply");
                } else if (d == ')') {
                    if (--depth == 0) break;
                }
            }
            space = true;
            continue;
        }
        Token t{Tok::Atom, 0, {}, space};
        space = false;
        if (c == '"') {
            t.type = Tok::Quoted;
            ++i;
            for (;;) {
                if (i >= n) return bad("unterminated quoted string");
                auto d = static_cast<unsigned char>(s[i++]);
                if (d == '"') break;
                if (d == '\\') {
                    if (i >= n) return bad("unterminated quoted string");
                    d = static_cast<unsigned char>(s[i++]);
                } else if (d == '\r' || d == '\n') {
                    continue;  // folding inside the string: unfold
                }
                // RFC 5321 cannot carry controls (not even HTAB) in a local part.
                if (is_ctl(d)) return bad("control character in quoted string");
                t.text += static_cast<char>(d);
            }
        } else if (c == '[') {
            t.type = Tok::Literal;
            t.text = "[";
            ++i;
            for (;;) {
                if (i >= n) return bad("unterminated domain literal");
                auto d = static_cast<unsigned char>(s[i++]);
                if (d == ']') break;
                if (d == '[' || d == '\\' || is_ctl(d) || d == ' ') return bad("bad character in domain literal");
                t.text += static_cast<char>(d);
            }
            t.text += ']';
        } else if (c == '<' || c == '>' || c == '@' || c == ',' || c == ';' || c == ':') {
            t.type = Tok::Special;
            t.special = static_cast<char>(c);
            ++i;
        } else if (c == ')' || c == ']' || c == '\\') {
            return bad("unexpected special character");
        } else if (is_ctl(c)) {
            return bad("control character");
        } else {
            while (i < n) {
                auto d = static_cast<unsigned char>(s[i]);
                if (!is_atext(d) && d != '.') break;
                t.text += static_cast<char>(d);
                ++i;
            }
            if (t.text.empty()) return bad("unexpected character");  // cannot happen: every byte is covered
        }
        out.push_back(std::move(t));
    }
    return out;
}

bool ends_with_dot(const Token& t) { return t.type == Tok::Atom && !t.text.empty() && t.text.back() == '.'; }
bool starts_with_dot(const Token& t) { return t.type == Tok::Atom && !t.text.empty() && t.text.front() == '.'; }

// Joins the words of an (obsolete) local part or domain. Words separated by
// whitespace without a dot between them are a phrase, not an address.
Result<std::string> join_words(const std::vector<Token>& toks, std::size_t from, std::size_t to, bool domain) {
    std::string out;
    for (std::size_t k = from; k < to; ++k) {
        const Token& t = toks[k];
        if (t.type == Tok::Special) return bad("unexpected special character");
        if (domain ? t.type == Tok::Quoted : t.type == Tok::Literal) return bad("bad address");
        if (k > from && t.space_before && !ends_with_dot(toks[k - 1]) && !starts_with_dot(t))
            return bad("phrase without <address>");
        if (t.type == Tok::Literal && to - from != 1) return bad("bad domain literal");
        out += t.text;
    }
    return out;
}

bool valid_domain(std::string_view d) {
    if (d.empty()) return false;
    if (d.front() == '[') return d.size() > 2;
    if (d.front() == '.' || d.back() == '.' || d.find("..") != std::string_view::npos) return false;
    for (unsigned char c : d)
        if (!is_atext(c) && c != '.') return false;
    return true;
}

Result<Address> make_address(const std::vector<Token>& toks) {
    std::size_t at = toks.size();
    for (std::size_t k = 0; k < toks.size(); ++k) {
        if (toks[k].type == Tok::Special && toks[k].special == '@') {
            at = k;
            break;
        }
    }
    if (at == 0) return bad("missing local part");
    auto local = join_words(toks, 0, at, false);
    if (!local) return local.error();
    if (local->empty()) return bad("empty local part");
    Address a{std::move(*local), {}};
    if (at < toks.size()) {
        auto domain = join_words(toks, at + 1, toks.size(), true);
        if (!domain) return domain.error();
        if (!valid_domain(*domain)) return bad("bad domain");
        a.domain = std::move(*domain);
    }
    if (a.spec().size() > MaxAddressLength) return bad("address too long");
    return a;
}

}  // namespace

std::string Address::spec() const {
    std::string s = quote_local_part(local);
    if (!domain.empty()) {
        s += '@';
        s += domain;
    }
    return s;
}

bool is_dot_atom(std::string_view s) noexcept {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    char prev = 0;
    for (char c : s) {
        if (c == '.') {
            if (prev == '.') return false;
        } else if (!is_atext(static_cast<unsigned char>(c))) {
            return false;
        }
        prev = c;
    }
    return true;
}

std::string quote_local_part(std::string_view s) {
    if (is_dot_atom(s)) return std::string(s);
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

Result<std::vector<Address>> parse_list(std::string_view text) {
    if (text.size() > MaxListLength) return bad("too long");
    auto toks = tokenize(text);
    if (!toks) return toks.error();

    std::vector<Address> out;
    std::vector<Token> item;   // tokens of the current member outside <>
    std::vector<Token> angle;  // tokens inside <>, route removed
    bool in_angle = false, had_angle = false, in_group = false;

    auto finish_item = [&]() -> Result<void> {
        const std::vector<Token>* addr = nullptr;
        if (had_angle) {
            if (angle.empty()) return bad("empty <>");
            addr = &angle;
        } else if (!item.empty()) {
            addr = &item;
        }
        if (addr) {
            if (out.size() >= MaxAddresses) return bad("too many addresses");
            auto a = make_address(*addr);
            if (!a) return a.error();
            out.push_back(std::move(*a));
        }
        item.clear();
        angle.clear();
        had_angle = false;
        return {};
    };

    for (auto& t : *toks) {
        // '@' joins the parts of an address like any word does.
        if (t.type != Tok::Special || t.special == '@') {
            if (in_angle) {
                angle.push_back(std::move(t));
            } else if (had_angle) {
                return bad("text after <address>");
            } else {
                item.push_back(std::move(t));
            }
            continue;
        }
        switch (t.special) {
        case '<':
            if (in_angle || had_angle) return bad("unexpected <");
            in_angle = had_angle = true;
            item.clear();  // the display name
            break;
        case '>':
            if (!in_angle) return bad("unexpected >");
            in_angle = false;
            break;
        case ',':
            if (in_angle) {
                angle.push_back(std::move(t));  // obsolete route: <@a,@b:user@c>
            } else if (auto r = finish_item(); !r) {
                return r.error();
            }
            break;
        case ':':
            if (in_angle) {
                angle.clear();  // end of an obsolete route
            } else {
                if (had_angle || in_group) return bad("unexpected :");
                for (auto& p : item)
                    if (p.type == Tok::Special) return bad("unexpected :");
                item.clear();  // the group name
                in_group = true;
            }
            break;
        case ';':
            if (in_angle) return bad("unexpected ;");
            if (auto r = finish_item(); !r) return r.error();
            in_group = false;  // a stray ';' is tolerated
            break;
        default:
            return bad("unexpected special character");
        }
    }
    if (in_angle) return bad("missing >");
    if (auto r = finish_item(); !r) return r.error();
    return out;
}

}  // namespace postern::address
