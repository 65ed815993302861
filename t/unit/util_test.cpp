// Unit tests for lib/util: Result, UniqueFd, string helpers.
#include <fcntl.h>

#include <catch2/catch.hpp>

#include "util/result.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

using namespace postern;

TEST_CASE("Result holds a value or an error") {
    Result<int> ok = 42;
    REQUIRE(ok);
    CHECK(*ok == 42);
    Result<int> bad = Error::perm("nope");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().kind == Error::Kind::Perm);
    CHECK(bad.error().text == "nope");
    CHECK(bad.value_or(7) == 7);
    Result<void> v;
    CHECK(v);
    Result<void> ve = Error::temp("later");
    CHECK_FALSE(ve);
}

TEST_CASE("UniqueFd closes once and moves") {
    UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    REQUIRE(a);
    int raw = a.get();
    UniqueFd b = std::move(a);
    CHECK_FALSE(a);
    CHECK(b.get() == raw);
    b.reset();
    CHECK(::fcntl(raw, F_GETFD) == -1);
}

TEST_CASE("string helpers") {
    struct Case { const char* in; std::vector<std::string> want; };
    const Case cases[] = {
        {"", {}},
        {"a", {"a"}},
        {" a, b  c,,d ", {"a", "b", "c", "d"}},
        {"\ta\n,b", {"a", "b"}},
    };
    for (const auto& c : cases) {
        INFO("input: '" << c.in << "'");
        CHECK(util::split_list(c.in) == c.want);
    }
    CHECK(util::trim("  x y \t") == "x y");
    CHECK(util::to_lower("MiXeD@Example.COM") == "mixed@example.com");
    CHECK(util::iequals("EHLO", "ehlo"));
    CHECK_FALSE(util::iequals("EHLO", "ehl"));
    CHECK(util::starts_with_icase("MAIL FROM:<a>", "mail from:"));
    CHECK(util::parse_long("123") == 123);
    CHECK(util::parse_long("-5") == -5);
    CHECK_FALSE(util::parse_long("12a"));
    CHECK_FALSE(util::parse_long(""));
    CHECK_FALSE(util::parse_long("99999999999999999999999"));
    CHECK(util::printable("a\r\nb") == "a\\x0d\\x0ab");
    CHECK(util::printable(std::string(300, 'x'), 10) == "xxxxxxxxxx...");
}

#include "util/cidr.hpp"

TEST_CASE("NetList matches IPv4 and IPv6 networks") {
    auto nets = util::NetList::parse("127.0.0.0/8 [::1]/128, 192.0.2.7 10.1.0.0/16 2001:db8::/32");
    REQUIRE(nets);
    struct Case { const char* addr; bool want; };
    const Case cases[] = {
        {"127.0.0.1", true}, {"127.255.255.255", true}, {"128.0.0.1", false}, {"::1", true},
        {"::2", false},      {"192.0.2.7", true},       {"192.0.2.8", false}, {"10.1.200.3", true},
        {"10.2.0.1", false}, {"2001:db8:1::5", true},   {"2001:db9::1", false}, {"::ffff:127.0.0.1", true},
        {"not-an-ip", false}, {"", false},
    };
    for (auto& c : cases) {
        INFO("addr " << c.addr << ": want " << c.want);
        CHECK(nets->contains(c.addr) == c.want);
    }
    auto empty = util::NetList::parse("");
    REQUIRE(empty);
    CHECK_FALSE(empty->contains("127.0.0.1"));
    for (const char* bad : {"10.0.0.0/33", "mail.example.com", "1.2.3.4/x", "[::1]/129"}) {
        INFO("bad " << bad);
        CHECK_FALSE(util::NetList::parse(bad));
    }
}

TEST_CASE("json_string quotes, escapes controls, and keeps or escapes 8-bit bytes") {
    CHECK(util::json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(util::json_string(std::string_view("x\n\0y", 4)) == "\"x\\u000a\\u0000y\"");
    CHECK(util::json_string("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
    CHECK(util::json_string("caf\xc3\xa9", true) == "\"caf\\u00c3\\u00a9\"");
}

TEST_CASE("xtext: encode escapes what decode expects, and they round-trip") {
    CHECK(util::xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d");
    CHECK(util::xtext_encode("\xc3\xa9\r\n") == "+C3+A9+0D+0A");
    CHECK(util::xtext_encode("") == "");
    std::string all;
    for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
    auto back = util::xtext_decode(util::xtext_encode(all));
    REQUIRE(back);
    CHECK(*back == all);
    CHECK_FALSE(util::xtext_decode("a+2"));   // cut escape
    CHECK_FALSE(util::xtext_decode("a+2b"));  // lower-case hex
    CHECK_FALSE(util::xtext_decode("a=b"));
}
