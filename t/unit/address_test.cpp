// Unit tests for lib/address: RFC 5322 address lists and RFC 5321 quoting.
// Table-driven; failures say "got X, want Y".
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "address/address.hpp"

using namespace postern;

namespace {

std::string joined(const std::vector<address::Address>& v) {
    std::string out;
    for (const auto& a : v) out += (out.empty() ? "" : "|") + a.spec();
    return out;
}

}  // namespace

TEST_CASE("address lists parse to addr-specs") {
    struct Case {
        const char* in;
        const char* want;
    };
    const Case cases[] = {
        {"ann@example.org", "ann@example.org"},
        {"Ann Example <ann@example.org>", "ann@example.org"},
        {"\"Example, Ann\" <ann@example.org>, bob@example.net", "ann@example.org|bob@example.net"},
        {"ann@example.org (Ann Example)", "ann@example.org"},
        {"(c) ann (x) @ (y) example.org", "ann@example.org"},
        {"undisclosed-recipients:;", ""},
        {"", ""},
        {"  ,  , ", ""},
        {"friends: ann@a.example, Bob <bob@b.example>; carl@c.example", "ann@a.example|bob@b.example|carl@c.example"},
        {"\"john doe\"@example.org", "\"john doe\"@example.org"},
        {"\"john\".doe@example.org", "john.doe@example.org"},
        {"john . doe@example.org", "john.doe@example.org"},
        {"<@route.example,@other.example:ann@example.org>", "ann@example.org"},
        {"root", "root"},
        {"Root <root>", "root"},
        {"ann@[192.0.2.1]", "ann@[192.0.2.1]"},
        {"John Q. Public <jqp@example.org>", "jqp@example.org"},
        {"\"a\\\"b\"@example.org", "\"a\\\"b\"@example.org"},
        {"ann@example.org,\r\n\tbob@example.org", "ann@example.org|bob@example.org"},
        {"j\xc3\xb6rg@b\xc3\xbc" "cher.example", "j\xc3\xb6rg@b\xc3\xbc" "cher.example"},
        {"(nested (comment)) ann@example.org", "ann@example.org"},
    };
    for (const auto& c : cases) {
        auto r = address::parse_list(c.in);
        INFO("input: " << c.in);
        REQUIRE(r);
        CHECK(joined(*r) == c.want);
    }
}

TEST_CASE("malformed address lists are errors") {
    const char* bad[] = {
        "ann@",
        "@example.org",
        "<ann@example.org",
        "ann@example.org>",
        "\"unterminated@example.org",
        "(unterminated ann@example.org",
        "ann@[192.0.2.1",
        "John Doe",
        "Ann <a@b.example> trailing",
        "<>",
        "a@b@c.example",
        "ann@exa..mple.org",
        "a\x01@example.org",
        "\"a\tb\"@example.org",
        "<a@b.example> <c@d.example>",
    };
    for (const char* s : bad) {
        INFO("input: " << s);
        CHECK_FALSE(address::parse_list(s));
    }
}

TEST_CASE("address list limits") {
    std::string deep(address::MaxCommentDepth, '(');
    deep += std::string(address::MaxCommentDepth, ')') + " a@b.example";
    CHECK(address::parse_list(deep));
    std::string deeper(address::MaxCommentDepth + 1, '(');
    deeper += std::string(address::MaxCommentDepth + 1, ')') + " a@b.example";
    CHECK_FALSE(address::parse_list(deeper));

    std::string local(address::MaxAddressLength - 2, 'a');  // + "@b"
    CHECK(address::parse_list(local + "@b"));
    CHECK_FALSE(address::parse_list(local + "@bc"));

    std::string many;
    for (std::size_t i = 0; i < address::MaxAddresses; ++i) many += "a@b,";
    CHECK(address::parse_list(many)->size() == address::MaxAddresses);
    CHECK_FALSE(address::parse_list(many + "a@b"));

    CHECK_FALSE(address::parse_list(std::string(address::MaxListLength + 1, ' ')));
}

TEST_CASE("local parts are quoted only when needed") {
    struct Case {
        const char* in;
        const char* want;
    };
    const Case cases[] = {
        {"ann", "ann"},
        {"ann.example", "ann.example"},
        {"a+b-c", "a+b-c"},
        {"john doe", "\"john doe\""},
        {".ann", "\".ann\""},
        {"a..b", "\"a..b\""},
        {"a\"b", "\"a\\\"b\""},
        {"a\\b", "\"a\\\\b\""},
        {"", "\"\""},
        {"a@b", "\"a@b\""},
    };
    for (const auto& c : cases) {
        std::string got = address::quote_local_part(c.in);
        INFO("input: " << c.in << " got " << got << ", want " << c.want);
        CHECK(got == c.want);
    }
}
