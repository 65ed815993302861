// NAME
//   util/strings.hpp - small string helpers shared by every module
// PURPOSE
//   Trimming, splitting, ASCII case folding and number parsing on string_view,
//   with no locale and no allocation where none is needed. Not a parser for any
//   protocol: those live in their own modules.
// SYNOPSIS
//   trim(" a ") == "a";  split_list("a, b c") == {"a","b","c"};
//   to_lower("MiXeD");   parse_long("42") -> optional<long>;
//   starts_with_icase("EHLO x", "ehlo");
// ERRORS
//   parse_* return nullopt on anything that is not entirely a number in range.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::util {

std::string_view trim(std::string_view s) noexcept;
std::string to_lower(std::string_view s);
bool iequals(std::string_view a, std::string_view b) noexcept;
bool starts_with_icase(std::string_view s, std::string_view prefix) noexcept;

// Split on commas and/or white space, dropping empty items (Postfix list syntax).
std::vector<std::string> split_list(std::string_view s);
// Split on white space only.
std::vector<std::string> split_ws(std::string_view s);

std::optional<long long> parse_long(std::string_view s) noexcept;

// Printable rendering of untrusted bytes for logs: control bytes and non-ASCII
// become \xNN; output is cut at max_len with "..." appended.
std::string printable(std::string_view s, std::size_t max_len = 200);
// s as a quoted JSON string: '"' and '\' escaped, control bytes as \u00XX;
// other bytes pass through (UTF-8), or with ascii_only are \u00XX as well.
std::string json_string(std::string_view s, bool ascii_only = false);

// RFC 3461 xtext (DSN ENVID and ORCPT values): bytes outside "!".."~" and
// '+', '=' as "+HH". decode returns nullopt for malformed xtext.
std::string xtext_encode(std::string_view s);
std::optional<std::string> xtext_decode(std::string_view s);

}  // namespace postern::util
