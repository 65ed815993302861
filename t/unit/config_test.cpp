// Unit tests for lib/config: main.cf parsing and expansion, typed values,
// master.cf, loading from a directory, and hostile input.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"

using namespace postern;
using namespace postern::config;
using Overrides = std::vector<std::pair<std::string, std::string>>;

namespace {

// "got X, want Y" for a Result: the value's rendering or "error: TEXT".
template <typename T>
std::string error_text(const Result<T>& r) {
    return r ? std::string("(no error)") : r.error().text;
}

std::vector<std::string> lines_of(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : " | ") + s;
    return out;
}

std::string render(const std::vector<Setting>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : " | ") + s.name + "=" + s.value + " @" + s.origin;
    return out;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// A directory under /tmp removed with everything in it at scope exit.
class TempDir {
public:
    TempDir() {
        std::string tmpl = "/tmp/postern-config-test.XXXXXX";
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    void write(const std::string& name, const std::string& text) const {
        std::ofstream f(path_ + "/" + name, std::ios::binary);
        f << text;
        REQUIRE(f.good());
    }

private:
    std::string path_;
};

}  // namespace

// ---- parse_main_cf ----------------------------------------------------------

TEST_CASE("parse_main_cf accepts settings, comments, blank and continuation lines") {
    struct Case {
        const char* what;
        std::string text;
        std::string want;  // render() of the settings
    };
    const Case cases[] = {
        {"empty", "", ""},
        {"plain", "a = b\n", "a=b @main.cf:1"},
        {"no spaces", "a=b", "a=b @main.cf:1"},
        {"tabs and spaces around =", "a \t=\t  b c  \n", "a=b c @main.cf:1"},
        {"empty value", "a =\n", "a= @main.cf:1"},
        {"= in value", "a = b=c\n", "a=b=c @main.cf:1"},
        {"comment at start", "# x = y\na = b\n", "a=b @main.cf:2"},
        {"indented comment", "a = b\n   # not a continuation\nc = d\n", "a=b @main.cf:1 | c=d @main.cf:3"},
        {"tab-indented comment", "a = b\n\t# note\n", "a=b @main.cf:1"},
        {"blank lines", "\n\n  \n\t\na = b\n\n", "a=b @main.cf:5"},
        {"continuation with space", "a = b\n c\n", "a=b c @main.cf:1"},
        {"continuation with tab", "a = b\n\tc\n\t  d\n", "a=b c d @main.cf:1"},
        {"continuation after comment", "a = b\n# x\n c\n", "a=b c @main.cf:1"},
        {"continuation of empty value", "a =\n  b\n", "a=b @main.cf:1"},
        {"CRLF", "a = b\r\nc = d\r\n", "a=b @main.cf:1 | c=d @main.cf:2"},
        {"CRLF continuation", "a = b\r\n  c\r\n", "a=b c @main.cf:1"},
        {"no final newline", "a = b\nc = d", "a=b @main.cf:1 | c=d @main.cf:2"},
        {"name chars", "Ab_9 = x\n", "Ab_9=x @main.cf:1"},
        {"later wins, order of last", "a = 1\nb = 2\na = 3\n", "b=2 @main.cf:2 | a=3 @main.cf:3"},
        {"hash inside value kept", "a = b # c\n", "a=b # c @main.cf:1"},
    };
    for (const auto& c : cases) {
        INFO(c.what << ": input \"" << c.text << "\"");
        auto r = parse_main_cf(c.text, "main.cf");
        INFO("error: " << error_text(r));
        REQUIRE(r);
        INFO("got " << render(*r) << ", want " << c.want);
        CHECK(render(*r) == c.want);
    }
}

TEST_CASE("parse_main_cf rejects malformed lines with file:line") {
    struct Case {
        const char* what;
        std::string text;
        std::string want;  // the whole error text
    };
    const Case cases[] = {
        {"continuation first", " a = b\n", "main.cf:1: continuation line before any setting"},
        {"continuation after comments", "# c\n\n\tx\na = b\n", "main.cf:3: continuation line before any setting"},
        {"missing =", "a = b\nhello\n", "main.cf:2: missing '=' after parameter name"},
        {"empty name", " \n= b\n", "main.cf:2: bad parameter name \"\""},
        {"dash in name", "a-b = c\n", "main.cf:1: bad parameter name \"a-b\""},
        {"space in name", "a b = c\n", "main.cf:1: bad parameter name \"a b\""},
        {"dollar in name", "$a = c\n", "main.cf:1: bad parameter name \"$a\""},
        {"name too long", std::string(101, 'n') + " = v\n", "main.cf:1: bad parameter name \"" + std::string(60, 'n') + "...\""},
        {"control byte in name", "a\x01 = c\n", "main.cf:1: bad parameter name \"a\\x01\""},
        {"NUL on line 3", std::string("a = b\nc = d\ne = f") + '\0' + "g\n", "main.cf:3: NUL byte in file"},
        {"NUL at start", std::string("\0a = b\n", 7), "main.cf:1: NUL byte in file"},
        {"NUL in comment", std::string("# x\n# \0\n", 8), "main.cf:2: NUL byte in file"},
    };
    for (const auto& c : cases) {
        INFO(c.what << ": input \"" << c.text << "\"");
        auto r = parse_main_cf(c.text, "main.cf");
        REQUIRE_FALSE(r);
        INFO("got \"" << r.error().text << "\", want \"" << c.want << "\"");
        CHECK(r.error().text == c.want);
        CHECK(r.error().kind == Error::Kind::Config);
    }
}

TEST_CASE("parse_main_cf reports every error, one per line") {
    const std::string text = "ok = 1\nnoequals\nbad-name = x\nfine = 2\nalso bad\n";
    auto r = parse_main_cf(text, "/etc/postern/main.cf");
    REQUIRE_FALSE(r);
    const std::vector<std::string> want = {
        "/etc/postern/main.cf:2: missing '=' after parameter name",
        "/etc/postern/main.cf:3: bad parameter name \"bad-name\"",
        "/etc/postern/main.cf:5: missing '=' after parameter name",
    };
    auto got = lines_of(r.error().text);
    INFO("got " << join(got) << ", want " << join(want));
    CHECK(got == want);

    auto c = parse_main_cf(" x\n\ty\nz = 1\n", "main.cf");
    REQUIRE_FALSE(c);
    const std::vector<std::string> want_c = {"main.cf:1: continuation line before any setting",
                                             "main.cf:2: continuation line before any setting"};
    INFO("got " << join(lines_of(c.error().text)) << ", want " << join(want_c));
    CHECK(lines_of(c.error().text) == want_c);
}

TEST_CASE("parse_main_cf warns when a later setting overrides an earlier one") {
    std::vector<std::string> warnings;
    auto r = parse_main_cf("a = 1\nb = 2\n\na = 3\na = 4\n", "main.cf", &warnings);
    REQUIRE(r);
    const std::vector<std::string> want = {
        "main.cf:4: overriding earlier entry: a (main.cf:1)",
        "main.cf:5: overriding earlier entry: a (main.cf:4)",
    };
    INFO("got " << join(warnings) << ", want " << join(want));
    CHECK(warnings == want);
    CHECK(render(*r) == "b=2 @main.cf:2 | a=4 @main.cf:5");
    // Without a warnings vector the result is the same.
    auto r2 = parse_main_cf("a = 1\na = 2\n", "main.cf");
    REQUIRE(r2);
    CHECK(render(*r2) == "a=2 @main.cf:2");
}

TEST_CASE("parse_main_cf survives every prefix of a file") {
    const std::string text = "# c\r\nmyhostname = mail.example.com\r\n  x\nbad\n a\nb = ${c?d}\n";
    for (std::size_t n = 0; n <= text.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        std::vector<std::string> warnings;
        auto r = parse_main_cf(std::string_view(text).substr(0, n), "main.cf", &warnings);
        if (!r) CHECK(contains(r.error().text, "main.cf:"));
        auto c = Config::from_text(std::string_view(text).substr(0, n), "main.cf", "/etc/postern", {}, &warnings);
        if (!c) CHECK(contains(c.error().text, "main.cf"));
    }
}

// ---- Config::from_text: expansion ----------------------------------------

TEST_CASE("from_text expands $name, ${name}, $(name), $$ and conditionals") {
    struct Case {
        const char* what;
        std::string text;  // appended to a main.cf that sets e, f and mail_name
        std::string name;
        std::string want;
    };
    const std::string base = "mail_name = M\ne =\nf = F\n";
    const Case cases[] = {
        {"plain", "x = a $mail_name b", "x", "a M b"},
        {"braces", "x = a${mail_name}b", "x", "aMb"},
        {"parens", "x = a$(mail_name)b", "x", "aMb"},
        {"name stops at non-name char", "x = $mail_name.example", "x", "M.example"},
        {"dollar dollar", "x = a$$b $$mail_name", "x", "a$b $mail_name"},
        {"?: set", "x = <${f?yes}>", "x", "<yes>"},
        {"?: empty", "x = <${e?yes}>", "x", "<>"},
        {"?: undefined", "x = <${nosuch?yes}>", "x", "<>"},
        {":: set expands to nothing, as in Postfix", "x = <${f:no}>", "x", "<>"},
        {":: empty", "x = <${e:no}>", "x", "<no>"},
        {":: undefined", "x = <${nosuch:no}>", "x", "<no>"},
        {"paren ?", "x = <$(f?yes)>", "x", "<yes>"},
        {"paren :", "x = <$(e:no)>", "x", "<no>"},
        {"alt text expands", "x = ${f?$mail_name}", "x", "M"},
        {"alt text with $$", "x = ${f?a$$b}", "x", "a$b"},
        {"chain", "x = $y\ny = $z\nz = deep", "x", "deep"},
        {"forward reference", "x = $later\nlater = L", "x", "L"},
        {"known from custom", "x = $mail_name", "x", "M"},
        {"custom from known", "smtpd_banner = $x\nx = X", "smtpd_banner", "X"},
        {"nested braces in ?", "x = <${f?${mail_name}}>", "x", "<M>"},
        {"nested braces in :", "x = <${e:${f}}>", "x", "<F>"},
        {"nested braces, empty", "x = <${e?${f}}>", "x", "<>"},
    };
    for (const auto& c : cases) {
        INFO(c.what << ": input \"" << c.text << "\"");
        std::vector<std::string> warnings;
        auto r = Config::from_text(base + c.text + "\n", "main.cf", "/etc/postern", {}, &warnings);
        INFO("error: " << error_text(r));
        REQUIRE(r);
        auto got = r->value(c.name);
        REQUIRE(got);
        INFO("got \"" << *got << "\", want \"" << c.want << "\"");
        CHECK(*got == c.want);
    }
}

TEST_CASE("from_text applies defaults that refer to other parameters") {
    struct Case {
        std::string text;
        std::string name;
        std::string want;
    };
    const Case cases[] = {
        {"myhostname = mail.example.com", "mydomain", "example.com"},
        {"myhostname = mail.example.com", "myorigin", "mail.example.com"},
        {"myhostname = mail.example.com", "mydestination", "mail.example.com, localhost.example.com, localhost"},
        {"myhostname = a.b.c.example", "mydomain", "b.c.example"},
        {"myhostname = host", "mydomain", "localdomain"},
        {"myhostname = host", "mydestination", "host, localhost.localdomain, localhost"},
        {"myhostname = host.", "mydomain", "localdomain"},
        {"myhostname = mail.example.com\nmydomain = other.org", "mydestination",
         "mail.example.com, localhost.other.org, localhost"},
        {"myhostname = mail.example.com\nmydomain = other.org", "myorigin", "mail.example.com"},
        {"myhostname = mail.example.com\nmyorigin = $mydomain", "myorigin", "example.com"},
        {"myhostname = h.$mydomain\nmydomain = d.org", "myhostname", "h.d.org"},
        {"base = x.example.net\nmyhostname = mail.$base", "mydomain", "x.example.net"},
        {"myhostname = mail.example.com", "smtpd_banner", "mail.example.com ESMTP Postern"},
        {"myhostname = m.example\nmail_name = Mx", "smtpd_banner", "m.example ESMTP Mx"},
        {"smtpd_tls_cert_file = /c.pem", "smtpd_tls_key_file", "/c.pem"},
        {"", "queue_directory", "/var/spool/postern"},
        {"", "syslog_name", "postern"},
        {"", "relay_domains", ""},
    };
    for (const auto& c : cases) {
        INFO("input \"" << c.text << "\", parameter " << c.name);
        auto r = Config::from_text(c.text + "\n", "main.cf", "/etc/postern");
        INFO("error: " << error_text(r));
        REQUIRE(r);
        auto got = r->value(c.name);
        REQUIRE(got);
        INFO("got \"" << *got << "\", want \"" << c.want << "\"");
        CHECK(*got == c.want);
    }
    // The typed struct agrees with value().
    auto r = Config::from_text("myhostname = mail.example.com\n", "main.cf", "/etc/postern");
    REQUIRE(r);
    CHECK(r->params().myhostname == "mail.example.com");
    CHECK(r->params().mydomain == "example.com");
    CHECK(r->params().myorigin == "mail.example.com");
    CHECK(r->params().mail_name == "Postern");
    CHECK(r->params().default_process_limit == 100);
    CHECK(r->params().max_idle == Seconds(100));
    CHECK(r->params().daemon_timeout == Seconds(18000));
}

TEST_CASE("from_text without myhostname uses the system host name") {
    auto r = Config::from_text("", "main.cf", "/etc/postern");
    REQUIRE(r);
    const auto& p = r->params();
    INFO("myhostname \"" << p.myhostname << "\", mydomain \"" << p.mydomain << "\"");
    CHECK_FALSE(p.myhostname.empty());
    CHECK_FALSE(p.mydomain.empty());
    CHECK(p.myorigin == p.myhostname);
    CHECK(p.mydestination == p.myhostname + ", localhost." + p.mydomain + ", localhost");
}

TEST_CASE("from_text: custom parameters and unknown-parameter warnings") {
    std::vector<std::string> warnings;
    auto r = Config::from_text("used = U\nunused = V\nmail_name = $used\nchained = $used2\nused2 = W\n", "main.cf",
                               "/etc/postern", {}, &warnings);
    {
        INFO("error: " << error_text(r));
        REQUIRE(r);
    }
    CHECK(r->value("used") == "U");
    CHECK(r->value("unused") == "V");
    CHECK(r->value("used2") == "W");
    CHECK(r->value("chained") == "W");
    CHECK(r->value("mail_name") == "U");
    CHECK_FALSE(r->value("nosuch"));
    // used and used2 are referenced; unused and chained are not.
    std::vector<std::string> want = {"main.cf:4: unknown parameter: chained",
                                     "main.cf:2: unknown parameter: unused"};
    std::sort(warnings.begin(), warnings.end());
    std::sort(want.begin(), want.end());
    INFO("got " << join(warnings) << ", want " << join(want));
    CHECK(warnings == want);

    // A name referenced only inside a conditional counts as used.
    warnings.clear();
    auto c = Config::from_text("flag = 1\nmail_name = ${flag?on}\n", "main.cf", "/etc/postern", {}, &warnings);
    REQUIRE(c);
    CHECK(c->params().mail_name == "on");
    INFO("got " << join(warnings) << ", want nothing");
    CHECK(warnings.empty());

    // Known parameters never warn; overrides never warn.
    warnings.clear();
    auto k = Config::from_text("mail_name = X\n", "main.cf", "/etc/postern", {{"custom_o", "1"}}, &warnings);
    REQUIRE(k);
    INFO("got " << join(warnings) << ", want nothing");
    CHECK(warnings.empty());
    CHECK(k->value("custom_o") == "1");
}

TEST_CASE("from_text rejects bad references with file:line") {
    struct Case {
        const char* what;
        std::string text;
        std::vector<std::string> want;  // substrings of the one error line
    };
    const Case cases[] = {
        {"undefined custom", "a = 1\nx = $nosuch\n", {"main.cf:2: ", "x", "undefined parameter $nosuch"}},
        {"undefined in known", "\nmyorigin = ${nosuch}\n", {"main.cf:2: ", "myorigin", "undefined parameter $nosuch"}},
        {"undefined via chain", "x = $y\ny = $(nosuch)\n", {"main.cf:", "undefined parameter $nosuch"}},
        {"dollar at end", "x = abc$\n", {"main.cf:1: ", "x", "'$' at end of value"}},
        {"dollar alone", "x = $ y\n", {"main.cf:1: ", "not followed by a parameter name"}},
        {"unclosed brace", "x = ${abc\n", {"main.cf:1: ", "missing '}'"}},
        {"unclosed paren", "x = $(abc\n", {"main.cf:1: ", "missing ')'"}},
        {"empty braces", "x = ${}\n", {"main.cf:1: ", "bad parameter name"}},
        {"bad name in braces", "x = ${a-b}\n", {"main.cf:1: ", "bad parameter name in \"$a-b\""}},
        {"self reference", "x = $x\n", {"main.cf:1: ", "x", "recursive"}},
        {"mutual recursion", "a = $b\nb = $a\n", {"main.cf:", "recursive"}},
        {"recursion via known", "mail_name = $smtpd_banner\n", {"main.cf:1: ", "mail_name", "recursive"}},
        {"recursion in ?", "x = ${x?y}\n", {"main.cf:1: ", "recursive"}},
    };
    for (const auto& c : cases) {
        INFO(c.what << ": input \"" << c.text << "\"");
        auto r = Config::from_text(c.text, "main.cf", "/etc/postern");
        REQUIRE_FALSE(r);
        for (const auto& w : c.want) {
            INFO("got \"" << r.error().text << "\", want it to contain \"" << w << "\"");
            CHECK(contains(r.error().text, w));
        }
    }
}

TEST_CASE("from_text: config_directory is always the directory argument") {
    struct Case {
        std::string text;
        Overrides overrides;
    };
    const Case cases[] = {
        {"", {}},
        {"config_directory = /elsewhere\n", {}},
        {"", {{"config_directory", "/other"}}},
        {"x = $config_directory/x\n", {}},
    };
    for (const auto& c : cases) {
        INFO("input \"" << c.text << "\"");
        auto r = Config::from_text(c.text, "/d/main.cf", "/d", c.overrides);
        REQUIRE(r);
        INFO("got " << r->params().config_directory << ", want /d");
        CHECK(r->params().config_directory == "/d");
        CHECK(r->value("config_directory") == "/d");
        CHECK(r->main_cf_path() == "/d/main.cf");
    }
    auto r = Config::from_text("x = $config_directory/x\n", "/d/main.cf", "/d");
    REQUIRE(r);
    CHECK(r->value("x") == "/d/x");
}

TEST_CASE("from_text reports every error, one per line") {
    auto r = Config::from_text("max_use = 0\nmax_idle = 1x\nx = $nosuch\n", "main.cf", "/etc/postern");
    REQUIRE_FALSE(r);
    auto got = lines_of(r.error().text);
    INFO("got " << join(got));
    REQUIRE(got.size() == 3);
    std::sort(got.begin(), got.end());
    CHECK(got[0].rfind("main.cf:1: invalid value for max_use", 0) == 0);
    CHECK(got[1].rfind("main.cf:2: invalid value for max_idle", 0) == 0);
    CHECK(got[2].rfind("main.cf:3: x: undefined parameter $nosuch", 0) == 0);
}

// ---- typed values and overrides --------------------------------------------

TEST_CASE("Int parameters are checked against their range") {
    struct Case {
        std::string name;
        std::string value;
        long long want;  // -1: an error
    };
    const Case cases[] = {
        {"default_process_limit", "50", 50},
        {"default_process_limit", "1", 1},             // min
        {"default_process_limit", "100000", 100000},   // max
        {"default_process_limit", "100001", -1},       // max+1
        {"default_process_limit", "0", -1},            // min-1
        {"default_process_limit", "-5", -1},
        {"default_process_limit", "ten", -1},
        {"default_process_limit", "10k", -1},
        {"default_process_limit", "+10", -1},
        {"default_process_limit", "", -1},
        {"default_process_limit", "99999999999999999999999", -1},
        {"max_use", "1000000000", 1000000000},
        {"max_use", "1000000001", -1},
        {"service_client_limit", "100000", 100000},
        {"service_client_limit", "100001", -1},
    };
    for (const auto& c : cases) {
        INFO(c.name << " = \"" << c.value << "\"");
        auto r = Config::from_text("\n" + c.name + " = " + c.value + "\n", "main.cf", "/etc/postern");
        if (c.want < 0) {
            REQUIRE_FALSE(r);
            INFO("got \"" << r.error().text << "\", want main.cf:2 and " << c.name);
            CHECK(r.error().text.rfind("main.cf:2: invalid value for " + c.name, 0) == 0);
            CHECK(lines_of(r.error().text).size() == 1);
            continue;
        }
        INFO("error: " << error_text(r));
        REQUIRE(r);
        long long got = c.name == "max_use"                  ? r->params().max_use
                        : c.name == "service_client_limit"   ? r->params().service_client_limit
                                                             : r->params().default_process_limit;
        INFO("got " << got << ", want " << c.want);
        CHECK(got == c.want);
    }
    auto r = Config::from_text("default_process_limit = 100001\n", "main.cf", "/etc/postern");
    REQUIRE_FALSE(r);
    CHECK(r.error().text ==
          "main.cf:1: invalid value for default_process_limit: \"100001\" (expected a number between 1 and 100000)");
}

TEST_CASE("Time parameters take units s m h d w") {
    struct Case {
        std::string value;
        long long want;  // seconds of max_idle; -1: an error
    };
    const Case cases[] = {
        {"30s", 30},   {"5m", 300},       {"2h", 7200},   {"1d", 86400}, {"1w", 604800},  // max
        {"45", 45},    {"1", 1},          {"1s", 1},      {"0", -1},     {"0s", -1},
        {"8d", -1},    {"604801", -1},    {"1x", -1},     {"s", -1},     {"", -1},
        {"-1s", -1},   {"5M", -1},        {"1.5h", -1},   {"h5", -1},    {"99999999999999999999w", -1},
    };
    for (const auto& c : cases) {
        INFO("max_idle = \"" << c.value << "\"");
        auto r = Config::from_text("max_idle = " + c.value + "\n", "main.cf", "/etc/postern");
        if (c.want < 0) {
            REQUIRE_FALSE(r);
            INFO("got \"" << r.error().text << "\", want main.cf:1 and max_idle");
            CHECK(r.error().text.rfind("main.cf:1: invalid value for max_idle", 0) == 0);
            continue;
        }
        INFO("error: " << error_text(r));
        REQUIRE(r);
        INFO("got " << r->params().max_idle.count() << ", want " << c.want);
        CHECK(r->params().max_idle.count() == c.want);
    }
}

TEST_CASE("overrides win over main.cf and are checked") {
    std::vector<std::string> warnings;
    auto r = Config::from_text("max_use = 5\nmyhostname = a.example.com\n", "main.cf", "/etc/postern",
                               {{"max_use", "7"}, {"myhostname", "b.example.org"}, {"max_idle", "2m"}}, &warnings);
    {
        INFO("error: " << error_text(r));
        REQUIRE(r);
    }
    CHECK(r->params().max_use == 7);
    CHECK(r->params().myhostname == "b.example.org");
    CHECK(r->params().mydomain == "example.org");
    CHECK(r->params().max_idle == Seconds(120));
    // A later override of the same name wins.
    auto r2 = Config::from_text("", "main.cf", "/etc/postern", {{"max_use", "7"}, {"max_use", "8"}});
    REQUIRE(r2);
    CHECK(r2->params().max_use == 8);
    // An override may refer to main.cf settings.
    auto r3 = Config::from_text("x = X\n", "main.cf", "/etc/postern", {{"mail_name", "$x!"}});
    REQUIRE(r3);
    CHECK(r3->params().mail_name == "X!");

    struct Case {
        Overrides overrides;
        std::string want;  // prefix of the error
    };
    const Case cases[] = {
        {{{"max_use", "0"}}, "-o max_use: invalid value for max_use: \"0\""},
        {{{"max_idle", "soon"}}, "-o max_idle: invalid value for max_idle"},
        {{{"bad name", "x"}}, "-o bad name: bad parameter name"},
        {{{"", "x"}}, "-o : bad parameter name"},
        {{{"mail_name", "$nosuch"}}, "-o mail_name: mail_name: undefined parameter $nosuch"},
    };
    for (const auto& c : cases) {
        INFO("override " << c.overrides[0].first << "=" << c.overrides[0].second);
        auto e = Config::from_text("", "main.cf", "/etc/postern", c.overrides);
        REQUIRE_FALSE(e);
        // Parameters whose defaults use a bad override fail too; look for
        // the override's own line.
        auto got = lines_of(e.error().text);
        bool found = std::any_of(got.begin(), got.end(), [&](const std::string& l) { return l.rfind(c.want, 0) == 0; });
        INFO("got \"" << e.error().text << "\", want a line starting \"" << c.want << "\"");
        CHECK(found);
    }
}

TEST_CASE("parse_time") {
    struct Case {
        std::string in;
        long long want;  // -1: nullopt
    };
    const Case cases[] = {
        {"0", 0},          {"0s", 0},      {"17", 17},     {"17s", 17},  {"2m", 120},      {"3h", 10800},
        {"4d", 345600},    {"2w", 1209600}, {" 5m ", 300}, {"\t9\t", 9}, {"", -1},         {" ", -1},
        {"m", -1},         {"5x", -1},     {"5 m", -1},    {"-5", -1},   {"-5m", -1},      {"5mm", -1},
        {"5S", -1},        {"0x10", -1},   {"1e3", -1},    {"+1", -1},   {"1099511627776", 1099511627776},
        {"1099511627777", -1}, {"1099511627776w", 1099511627776LL * 604800},
    };
    for (const auto& c : cases) {
        auto got = parse_time(c.in);
        INFO("parse_time(\"" << c.in << "\"): got " << (got ? std::to_string(got->count()) : "nullopt")
                             << ", want " << (c.want < 0 ? "nullopt" : std::to_string(c.want)));
        if (c.want < 0)
            CHECK_FALSE(got);
        else
            CHECK((got && got->count() == c.want));
    }
}

TEST_CASE("parse_bool") {
    struct Case {
        std::string in;
        int want;  // 1 true, 0 false, -1 nullopt
    };
    const Case cases[] = {
        {"yes", 1},  {"YES", 1},   {"Yes", 1},  {"true", 1},  {"TRUE", 1}, {"on", 1},  {" on ", 1},
        {"no", 0},   {"NO", 0},    {"false", 0}, {"False", 0}, {"off", 0}, {"\toff\t", 0},
        {"", -1},    {"y", -1},    {"n", -1},   {"1", -1},    {"0", -1},   {"yess", -1}, {"o", -1},
        {"enable", -1},
    };
    for (const auto& c : cases) {
        auto got = parse_bool(c.in);
        int g = got ? (*got ? 1 : 0) : -1;
        INFO("parse_bool(\"" << c.in << "\"): got " << g << ", want " << c.want);
        CHECK(g == c.want);
    }
}

TEST_CASE("Config::expand uses the expanded values") {
    auto r = Config::from_text("myhostname = mail.example.com\nx = a$$b\nempty =\n", "main.cf", "/etc/postern");
    REQUIRE(r);
    struct Case {
        std::string in;
        std::string want;
    };
    const Case cases[] = {
        {"", ""},
        {"plain", "plain"},
        {"$myhostname", "mail.example.com"},
        {"<${mydomain}>", "<example.com>"},
        {"$(myorigin)", "mail.example.com"},
        {"$x", "a$b"},            // a '$' in a value stays literal
        {"$$x", "$x"},
        {"$nosuch.", "."},        // undefined names expand to nothing here
        {"${x?set}", "set"},
        {"${empty?set}", ""},
        {"${empty:unset}", "unset"},
        {"$", "$"},               // a syntax error returns the text unchanged
        {"${oops", "${oops"},
    };
    for (const auto& c : cases) {
        auto got = r->expand(c.in);
        INFO("expand(\"" << c.in << "\"): got \"" << got << "\", want \"" << c.want << "\"");
        CHECK(got == c.want);
    }
}

// ---- master.cf ---------------------------------------------------------------

TEST_CASE("parse_master_cf reads a typical file") {
    const std::string text =
        "# service type  private unpriv  chroot  wakeup  maxproc command + args\n"
        "smtp      inet  n       -       y       -       -       smtpd\n"
        "pickup    unix  n       -       y       60      1       pickup\n"
        "qmgr      unix  n       -       n       300?    1       qmgr -v\n"
        "\n"
        "   # indented comment\n"
        "127.0.0.1:2525 inet - n n - 10 smtpd -o a=b extra -o c=d=e -o empty= last\r\n"
        "local     unix  -       n       n       -       0       /usr/lib/x/local\n";
    auto r = parse_master_cf(text, "master.cf");
    {
        INFO("error: " << error_text(r));
        REQUIRE(r);
    }
    REQUIRE(r->size() == 5);
    const auto& v = *r;

    CHECK(v[0].name == "smtp");
    CHECK(v[0].type == ServiceType::Inet);
    CHECK(v[0].key() == "smtp/inet");
    CHECK_FALSE(v[0].private_);
    CHECK(v[0].unpriv);
    CHECK(v[0].chroot);
    CHECK(v[0].wakeup == 0);
    CHECK_FALSE(v[0].wakeup_if_used);
    CHECK(v[0].maxproc == -1);
    CHECK(v[0].command == "smtpd");
    CHECK(v[0].args.empty());
    CHECK(v[0].overrides.empty());
    CHECK(v[0].origin == "master.cf:2");

    CHECK(v[1].name == "pickup");
    CHECK(v[1].type == ServiceType::Unix);
    CHECK(v[1].key() == "pickup/unix");
    CHECK_FALSE(v[1].private_);
    CHECK(v[1].wakeup == 60);
    CHECK_FALSE(v[1].wakeup_if_used);
    CHECK(v[1].maxproc == 1);
    CHECK(v[1].origin == "master.cf:3");

    CHECK(v[2].wakeup == 300);
    CHECK(v[2].wakeup_if_used);
    CHECK_FALSE(v[2].chroot);
    CHECK(v[2].args == std::vector<std::string>{"-v"});

    CHECK(v[3].name == "127.0.0.1:2525");
    CHECK_FALSE(v[3].private_);  // "-" for inet means public
    CHECK_FALSE(v[3].unpriv);
    CHECK(v[3].maxproc == 10);
    CHECK(v[3].args == std::vector<std::string>{"extra", "last"});
    const Overrides want_o = {{"a", "b"}, {"c", "d=e"}, {"empty", ""}};
    CHECK(v[3].overrides == want_o);
    CHECK(v[3].origin == "master.cf:7");

    CHECK(v[4].private_);  // "-" for unix means private
    CHECK(v[4].maxproc == 0);
    CHECK(v[4].command == "/usr/lib/x/local");
}

TEST_CASE("parse_master_cf joins continuation lines") {
    const std::string text =
        "submission inet n - y - - smtpd\n"
        "  -o smtpd_tls_security_level=encrypt\n"
        "# a comment between\n"
        "\t-o smtpd_sasl_auth_enable=yes\r\n"
        "  extra\n"
        "qmgr unix n - n 300 1 qmgr\n";
    auto r = parse_master_cf(text, "master.cf");
    {
        INFO("error: " << error_text(r));
        REQUIRE(r);
    }
    REQUIRE(r->size() == 2);
    const Overrides want = {{"smtpd_tls_security_level", "encrypt"}, {"smtpd_sasl_auth_enable", "yes"}};
    CHECK((*r)[0].overrides == want);
    CHECK((*r)[0].args == std::vector<std::string>{"extra"});
    CHECK((*r)[0].origin == "master.cf:1");
    CHECK((*r)[1].origin == "master.cf:6");

    // Fields may be split over lines too.
    auto s = parse_master_cf("smtp inet n -\n  y - - smtpd\n", "master.cf");
    REQUIRE(s);
    REQUIRE(s->size() == 1);
    CHECK((*s)[0].command == "smtpd");
}

TEST_CASE("parse_master_cf rejects malformed entries with file:line") {
    struct Case {
        const char* what;
        std::string text;
        std::string want;
    };
    const Case cases[] = {
        {"too few fields", "smtp inet n - y - -\n",
         "master.cf:1: expected 8 or more fields (service type private unpriv chroot wakeup maxproc command), got 7"},
        {"one field", "# c\nsmtp\n",
         "master.cf:2: expected 8 or more fields (service type private unpriv chroot wakeup maxproc command), got 1"},
        {"bad type", "smtp tcp n - y - - smtpd\n", "master.cf:1: unsupported service type \"tcp\" (inet or unix)"},
        {"fifo type", "pickup fifo n - y 60 1 pickup\n", "master.cf:1: unsupported service type \"fifo\" (inet or unix)"},
        {"bad private", "smtp inet x - y - - smtpd\n", "master.cf:1: bad private field \"x\" (y, n or -)"},
        {"bad unpriv", "smtp inet n yes y - - smtpd\n", "master.cf:1: bad unpriv field \"yes\" (y, n or -)"},
        {"bad chroot", "smtp inet n - Y - - smtpd\n", "master.cf:1: bad chroot field \"Y\" (y, n or -)"},
        {"bad wakeup", "p unix n - y abc 1 pickup\n", "master.cf:1: bad wakeup field \"abc\" (seconds, or -)"},
        {"negative wakeup", "p unix n - y -5 1 pickup\n", "master.cf:1: bad wakeup field \"-5\" (seconds, or -)"},
        {"bare ?", "p unix n - y ? 1 pickup\n", "master.cf:1: bad wakeup field \"?\" (seconds, or -)"},
        {"wakeup ??", "p unix n - y 60?? 1 pickup\n", "master.cf:1: bad wakeup field \"60??\" (seconds, or -)"},
        {"wakeup too big", "p unix n - y 31536001 1 pickup\n",
         "master.cf:1: bad wakeup field \"31536001\" (seconds, or -)"},
        {"bad maxproc", "p unix n - y - x pickup\n", "master.cf:1: bad maxproc field \"x\" (a number, or -)"},
        {"negative maxproc", "p unix n - y - -1 pickup\n", "master.cf:1: bad maxproc field \"-1\" (a number, or -)"},
        {"maxproc too big", "p unix n - y - 100001 pickup\n",
         "master.cf:1: bad maxproc field \"100001\" (a number, or -)"},
        {"private inet", "smtp inet y - y - - smtpd\n", "master.cf:1: an inet service cannot be private"},
        {"-o at end", "smtp inet n - y - - smtpd -o\n", "master.cf:1: -o without name=value"},
        {"-o at end of continuation", "smtp inet n - y - - smtpd\n  -o a=b -o\n",
         "master.cf:1: -o without name=value"},
        {"-o without =", "smtp inet n - y - - smtpd -o novalue\n",
         "master.cf:1: bad -o option \"novalue\" (expected name=value)"},
        {"-o without name", "smtp inet n - y - - smtpd -o =v\n",
         "master.cf:1: bad -o option \"=v\" (expected name=value)"},
        {"command with ..", "smtp inet n - y - - ../../bin/sh\n", "master.cf:1: command must not contain \"..\""},
        {"command with .. inside", "smtp inet n - y - - /usr/lib/../sh\n",
         "master.cf:1: command must not contain \"..\""},
        {"NUL in line", std::string("smtp inet n - y - - sm") + '\0' + "tpd\n",
         "master.cf:1: NUL byte in line"},
    };
    for (const auto& c : cases) {
        INFO(c.what << ": input \"" << c.text << "\"");
        auto r = parse_master_cf(c.text, "master.cf");
        REQUIRE_FALSE(r);
        INFO("got \"" << r.error().text << "\", want \"" << c.want << "\"");
        CHECK(r.error().text == c.want);
        CHECK(r.error().kind == Error::Kind::Config);
    }
}

TEST_CASE("parse_master_cf rejects duplicate services and reports every error") {
    const std::string text =
        "smtp inet n - y - - smtpd\n"
        "smtp unix - - y - - smtpd\n"       // same name, other type: fine
        "smtp inet n - y - - smtpd -v\n"    // duplicate
        "bad\n"
        "x unix - - y - - ..\n"
        "smtp unix - - y - - smtpd\n";      // duplicate
    auto r = parse_master_cf(text, "/etc/postern/master.cf");
    REQUIRE_FALSE(r);
    const std::vector<std::string> want = {
        "/etc/postern/master.cf:3: duplicate service smtp inet (first defined at /etc/postern/master.cf:1)",
        "/etc/postern/master.cf:4: expected 8 or more fields (service type private unpriv chroot wakeup maxproc "
        "command), got 1",
        "/etc/postern/master.cf:5: command must not contain \"..\"",
        "/etc/postern/master.cf:6: duplicate service smtp unix (first defined at /etc/postern/master.cf:2)",
    };
    auto got = lines_of(r.error().text);
    INFO("got " << join(got) << ", want " << join(want));
    CHECK(got == want);

    auto ok = parse_master_cf("smtp inet n - y - - smtpd\nsmtp unix - - y - - smtpd\n", "master.cf");
    {
        INFO("error: " << error_text(ok));
        REQUIRE(ok);
    }
    CHECK(ok->size() == 2);
}

TEST_CASE("parse_master_cf on empty and comment-only input") {
    for (std::string text : {"", "\n", "# only\n  # comments\n\n", "\r\n"}) {
        auto r = parse_master_cf(text, "master.cf");
        INFO("input \"" << text << "\": error " << error_text(r));
        REQUIRE(r);
        CHECK(r->empty());
    }
}

// ---- loading from a directory ----------------------------------------------

TEST_CASE("Config::load reads DIR/main.cf, or uses defaults when it is missing") {
    TempDir dir;
    std::vector<std::string> warnings;
    auto d = Config::load(dir.path(), {}, &warnings);
    {
        INFO("error: " << error_text(d));
        REQUIRE(d);
    }
    CHECK(d->params().config_directory == dir.path());
    CHECK(d->params().queue_directory == "/var/spool/postern");
    CHECK(d->params().default_process_limit == 100);
    CHECK(d->params().max_idle == Seconds(100));
    CHECK(d->main_cf_path() == dir.path() + "/main.cf");
    CHECK(warnings.empty());

    dir.write("main.cf", "myhostname = mail.example.com\nmax_use = 3\nunknown_thing = 1\n");
    auto r = Config::load(dir.path(), {{"max_use", "4"}}, &warnings);
    {
        INFO("error: " << error_text(r));
        REQUIRE(r);
    }
    CHECK(r->params().mydomain == "example.com");
    CHECK(r->params().max_use == 4);
    const std::vector<std::string> want = {dir.path() + "/main.cf:3: unknown parameter: unknown_thing"};
    INFO("got " << join(warnings) << ", want " << join(want));
    CHECK(warnings == want);

    dir.write("main.cf", "max_use = nope\n");
    auto e = Config::load(dir.path());
    REQUIRE_FALSE(e);
    INFO("got \"" << e.error().text << "\"");
    CHECK(e.error().text.rfind(dir.path() + "/main.cf:1: invalid value for max_use", 0) == 0);
}

TEST_CASE("load_master_cf reads DIR/master.cf and names a missing file") {
    TempDir dir;
    auto m = load_master_cf(dir.path());
    REQUIRE_FALSE(m);
    INFO("got \"" << m.error().text << "\", want it to name " << dir.path() << "/master.cf");
    CHECK(m.error().text.rfind(dir.path() + "/master.cf: ", 0) == 0);

    dir.write("master.cf", "smtp inet n - y - - smtpd\nbad line\n");
    auto b = load_master_cf(dir.path());
    REQUIRE_FALSE(b);
    CHECK(b.error().text.rfind(dir.path() + "/master.cf:2: expected 8 or more fields", 0) == 0);

    dir.write("master.cf", "smtp inet n - y - - smtpd\n");
    auto ok = load_master_cf(dir.path());
    REQUIRE(ok);
    REQUIRE(ok->size() == 1);
    CHECK((*ok)[0].origin == dir.path() + "/master.cf:1");
}

TEST_CASE("config files are limited to 1 MiB") {
    TempDir dir;
    constexpr std::size_t kMiB = 1 << 20;
    // Exactly 1 MiB of comment lines is fine.
    std::string line = "#" + std::string(1022, 'x') + "\n";
    std::string big;
    while (big.size() < kMiB) big += line;
    REQUIRE(big.size() == kMiB);
    dir.write("main.cf", big);
    auto ok = Config::load(dir.path());
    INFO("error: " << error_text(ok));
    CHECK(ok);
    auto okr = read_config_file(dir.path() + "/main.cf");
    REQUIRE(okr);
    CHECK(okr->size() == kMiB);

    dir.write("main.cf", big + "\n");
    auto e = Config::load(dir.path());
    REQUIRE_FALSE(e);
    INFO("got \"" << e.error().text << "\"");
    CHECK(e.error().text == dir.path() + "/main.cf: file is larger than 1 MiB");

    dir.write("master.cf", big + "#");
    auto m = load_master_cf(dir.path());
    REQUIRE_FALSE(m);
    CHECK(m.error().text == dir.path() + "/master.cf: file is larger than 1 MiB");

    // The text entry points have the same limit.
    auto t = parse_main_cf(big + "\n", "main.cf");
    REQUIRE_FALSE(t);
    CHECK(t.error().text == "main.cf: file is larger than 1 MiB");
    auto tm = parse_master_cf(big + "\n", "master.cf");
    REQUIRE_FALSE(tm);
    CHECK(tm.error().text == "master.cf: file is larger than 1 MiB");

    // A directory in place of main.cf is an error, not "missing".
    std::filesystem::remove(dir.path() + "/main.cf");
    std::filesystem::create_directory(dir.path() + "/main.cf");
    auto d = Config::load(dir.path());
    REQUIRE_FALSE(d);
    CHECK(contains(d.error().text, dir.path() + "/main.cf"));
}

// ---- hostile input -----------------------------------------------------------

TEST_CASE("values are limited to 100000 bytes") {
    const std::string at_limit(100000, 'v');
    auto ok = parse_main_cf("x = " + at_limit + "  \n", "main.cf");
    {
        INFO("error: " << error_text(ok));
        REQUIRE(ok);
    }
    CHECK((*ok)[0].value.size() == 100000);

    auto bad = parse_main_cf("a = 1\nx = " + at_limit + "v\n", "main.cf");
    REQUIRE_FALSE(bad);
    INFO("got \"" << bad.error().text << "\"");
    CHECK(bad.error().text == "main.cf:2: value of x is longer than 100000 bytes");

    // The limit applies after continuation lines are joined: 99998 + ' ' + 1.
    auto joined = parse_main_cf("x = " + std::string(99998, 'v') + "\n v\n", "main.cf");
    REQUIRE(joined);
    auto joined_bad = parse_main_cf("x = " + std::string(99998, 'v') + "\n vv\n", "main.cf");
    REQUIRE_FALSE(joined_bad);

    // Through from_text: a custom value at the limit is kept whole.
    auto c = Config::from_text("x = " + at_limit + "\n", "main.cf", "/etc/postern");
    {
        INFO("error: " << error_text(c));
        REQUIRE(c);
    }
    CHECK(c->value("x")->size() == 100000);

    // Expansion may not grow a value past the limit.
    auto grow = Config::from_text("a = " + std::string(60000, 'a') + "\nb = $a$a\nmail_name = $b\n", "main.cf",
                                  "/etc/postern");
    REQUIRE_FALSE(grow);
    INFO("got \"" << grow.error().text.substr(0, 300) << "\"");
    CHECK(contains(grow.error().text, "longer than 100000 bytes"));
}

TEST_CASE("many lines and many references are handled") {
    // 20000 distinct settings, then each overridden once.
    std::string text;
    for (int i = 0; i < 20000; ++i) text += "p" + std::to_string(i) + " = v" + std::to_string(i) + "\n";
    std::string twice = text + text;
    std::vector<std::string> warnings;
    auto r = parse_main_cf(twice, "main.cf", &warnings);
    {
        INFO("error: " << error_text(r));
        REQUIRE(r);
    }
    CHECK(r->size() == 20000);
    CHECK(warnings.size() == 20000);
    CHECK(warnings[0] == "main.cf:20001: overriding earlier entry: p0 (main.cf:1)");

    // A file of nothing but one repeated line, close to the size limit.
    std::string same;
    while (same.size() + 6 <= (1u << 20)) same += "a = 1\n";
    auto s = parse_main_cf(same, "main.cf");
    REQUIRE(s);
    CHECK(s->size() == 1);

    // A 1 MiB file of distinct short settings parses in linear time.
    std::string wide;
    for (int i = 0; wide.size() + 16 < (1u << 20); ++i) wide += "p" + std::to_string(i) + "=1\n";
    auto w = parse_main_cf(wide, "main.cf");
    REQUIRE(w);
    CHECK(w->size() > 100000);

    // A deep chain just inside the depth limit, and one just outside it.
    auto chain = [](int n) {
        std::string t = "c0 = end\n";
        for (int i = 1; i <= n; ++i) t += "c" + std::to_string(i) + " = $c" + std::to_string(i - 1) + "\n";
        t += "top = $c" + std::to_string(n) + "\n";
        return t;
    };
    // top -> c19 -> ... -> c0 is 20 levels below top.
    auto deep = Config::from_text(chain(19), "main.cf", "/etc/postern");
    {
        INFO("error: " << error_text(deep).substr(0, 300));
        REQUIRE(deep);
    }
    CHECK(deep->value("top") == "end");
    auto too_deep = Config::from_text(chain(20), "main.cf", "/etc/postern");
    REQUIRE_FALSE(too_deep);
    CHECK(contains(too_deep.error().text, "recursive"));

    // Many services in master.cf.
    std::string master;
    int services = 0;
    for (; master.size() + 40 < (1u << 20); ++services)
        master += "s" + std::to_string(services) + " unix - - y - - cmd\n";
    auto m = parse_master_cf(master, "master.cf");
    {
        INFO("error: " << error_text(m).substr(0, 300));
        REQUIRE(m);
    }
    CHECK(m->size() == static_cast<std::size_t>(services));
}

TEST_CASE("wide expansion trees end in an error, not a hang") {
    // Ten references per level, ten levels, empty leaves: 10^10 lookups if
    // nothing limits the work.
    std::string text = "l0 =\n";
    for (int i = 1; i <= 10; ++i) {
        text += "l" + std::to_string(i) + " =";
        for (int k = 0; k < 10; ++k) text += " $l" + std::to_string(i - 1);
        text += "\n";
    }
    text += "mail_name = $l10\n";
    auto r = Config::from_text(text, "main.cf", "/etc/postern");
    // Either outcome is fine as long as it returns; with spaces between the
    // references the value grows past 100000 bytes.
    if (!r) CHECK(contains(r.error().text, "main.cf:"));

    std::string tight = "l0 =\n";
    for (int i = 1; i <= 10; ++i) {
        tight += "l" + std::to_string(i) + " = ";
        for (int k = 0; k < 10; ++k) tight += "$l" + std::to_string(i - 1);
        tight += "\n";
    }
    tight += "mail_name = x$l10\n";
    auto t = Config::from_text(tight, "main.cf", "/etc/postern");
    REQUIRE_FALSE(t);
    INFO("got \"" << t.error().text.substr(0, 300) << "\"");
    CHECK(contains(t.error().text, "main.cf:"));
    CHECK(contains(t.error().text, "parameter expansion takes too much work"));
}

TEST_CASE("random bytes do not crash the parsers") {
    std::mt19937 rng(20240601);  // fixed seed: the test is repeatable
    const std::string alphabet = std::string("$={}()?:#-o \t\r\n\nabcxyz_019.", 28) + std::string(1, '\0');
    for (int iter = 0; iter < 3000; ++iter) {
        std::size_t len = rng() % 300;
        std::string s;
        bool raw = iter % 3 == 0;
        for (std::size_t i = 0; i < len; ++i)
            s += raw ? static_cast<char>(rng() & 0xff) : alphabet[rng() % alphabet.size()];
        INFO("iteration " << iter);
        std::vector<std::string> warnings;
        auto a = parse_main_cf(s, "main.cf", &warnings);
        if (!a) CHECK_FALSE(a.error().text.empty());
        auto b = Config::from_text(s, "main.cf", "/etc/postern", {{"x", s.substr(0, 20)}}, &warnings);
        if (b) (void)b->expand(s);
        auto c = parse_master_cf(s, "master.cf");
        if (!c) CHECK_FALSE(c.error().text.empty());
        // Bytes that master.cf accepts as an entry form a complete Service.
        if (c)
            for (const auto& svc : *c) CHECK_FALSE(svc.command.empty());
    }
}

TEST_CASE("from_text: per-transport scheduling limits are known and checked") {
    std::vector<std::string> warnings;
    auto r = Config::from_text("local_destination_concurrency_limit = 5\nsmtp_destination_recipient_limit = 20\n",
                               "main.cf", "/etc/postern", {}, &warnings);
    REQUIRE(r);
    CHECK(warnings.empty());
    CHECK(r->value("local_destination_concurrency_limit") == "5");
    auto bad = Config::from_text("relay_destination_concurrency_limit = lots\n", "main.cf", "/etc/postern");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().text.find("main.cf:1: invalid value for relay_destination_concurrency_limit") !=
          std::string::npos);
}
