// libFuzzer target for smtpd/protocol: command lines, MAIL/RCPT paths and
// ESMTP parameters.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Ilib -I.
//       fuzz/smtpd_command_fuzz.cpp smtpd/protocol.cpp lib/util/*.cpp -o build/smtpd_command_fuzz
// The input is one command line. Besides memory safety it checks the promises
// the session relies on: errors always carry an SMTP reply, parsed paths obey
// the RFC 5321 limits and hold no control bytes, the domain is lower case.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "smtpd/protocol.hpp"

namespace {

using namespace postern::smtpd;

bool has_control(std::string_view s) {
    for (unsigned char c : s)
        if (c < 32 || c == 127) return true;
    return false;
}

void check_error(const postern::Error& e) {
    // A reply the session can send unchanged: "5xy x.y.z text".
    if (e.text.size() < 10 || e.text[0] != '5' || e.text[3] != ' ') __builtin_trap();
}

void check_path(const Path& p, bool allow_null, bool allow_pm) {
    if (p.address.empty()) {
        if (!allow_null || !p.local.empty() || !p.domain.empty()) __builtin_trap();
    } else if (p.domain.empty()) {
        if (!allow_pm || p.address != p.local || p.local.size() != 10) __builtin_trap();  // "postmaster"
    } else if (p.address != p.local + "@" + p.domain) {
        __builtin_trap();
    }
    if (p.local.size() > 64 || p.domain.size() > 255 || p.address.size() > 256) __builtin_trap();
    if (has_control(p.address)) __builtin_trap();
    for (char c : p.domain)
        if (c >= 'A' && c <= 'Z') __builtin_trap();
    if (p.params.size() > 10) __builtin_trap();
    for (const auto& [k, v] : p.params)
        if (k.empty() || has_control(k) || has_control(v)) __builtin_trap();

    auto m = parse_mail_params(p.params);
    if (m) {
        if (has_control(m->envid) || has_control(m->auth) || m->envid.size() > 100) __builtin_trap();
    } else {
        check_error(m.error());
    }
    auto r = parse_rcpt_params(p.params);
    if (r) {
        if (r->notify > 15 || ((r->notify & 1) && r->notify != 1) || has_control(r->orcpt)) __builtin_trap();
    } else {
        check_error(r.error());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view line(reinterpret_cast<const char*>(data), size);

    auto cmd = parse_command(line);
    if (!cmd) {
        if (cmd.error().text.rfind("500 5.5.2 ", 0) != 0) __builtin_trap();
    } else if (cmd->name.empty() || has_control(cmd->name) ||
               cmd->arg.find_first_of(std::string_view("\0\r\n", 3)) != std::string::npos) {
        __builtin_trap();  // only TAB may remain of the control bytes
    }

    // Paths: the raw input and the parsed argument, both prefixes, all flags.
    std::string_view args[] = {line, cmd ? std::string_view(cmd->arg) : line};
    for (std::string_view arg : args) {
        for (std::string_view prefix : {std::string_view("FROM:"), std::string_view("TO:")}) {
            for (int flags = 0; flags < 4; ++flags) {
                bool allow_null = flags & 1, allow_pm = flags & 2;
                auto p = parse_path(arg, prefix, allow_null, allow_pm);
                if (p) check_path(*p, allow_null, allow_pm);
                else check_error(p.error());
            }
        }
    }

    // Parameters straight from the input, without parse_path's syntax checks:
    // "K=V K=V ..." split on spaces, then the first '='.
    std::vector<std::pair<std::string, std::string>> params;
    std::size_t pos = 0;
    while (pos < line.size() && params.size() < 16) {
        std::size_t end = line.find(' ', pos);
        if (end == std::string_view::npos) end = line.size();
        std::string_view item = line.substr(pos, end - pos);
        std::size_t eq = item.find('=');
        params.emplace_back(std::string(item.substr(0, eq)),
                            eq == std::string_view::npos ? std::string() : std::string(item.substr(eq + 1)));
        pos = end + 1;
    }
    auto m = parse_mail_params(params);
    if (!m) check_error(m.error());
    auto r = parse_rcpt_params(params);
    if (!r) check_error(r.error());

    auto x = xtext_decode(line);
    if (x && x->size() > line.size()) __builtin_trap();
    (void)valid_helo(line);
    return 0;
}
