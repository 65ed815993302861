// Unit tests for sendmail/: option parsing, line endings, -i dot handling,
// header completion, folding of long header lines, -t recipient extraction
// and Bcc removal, and -bv's answers (with fake tables). Message inputs
// are fed whole, a byte at a time and split at every position; all must
// agree. Failures say "got X, want Y".
#include <catch2/catch.hpp>

#include <sysexits.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "delivery/route.hpp"
#include "fs/fs.hpp"
#include "queue/queue.hpp"
#include "sendmail/message.hpp"
#include "sendmail/options.hpp"
#include "sendmail/submit.hpp"
#include "sendmail/verify.hpp"
#include "t/unit/temp_queue.hpp"

using namespace postern;
using namespace postern::sendmail;

namespace {

Result<Options> parse(std::vector<std::string_view> args, std::string_view prog = "sendmail") {
    return parse_options(args, prog);
}

struct Out {
    std::string text;
    std::string rcpts;
    bool ended = false;
    bool err = false;
    bool operator==(const Out&) const = default;
};

MessageSettings settings(bool ignore_dots, bool extract) {
    MessageSettings s;
    s.ignore_dots = ignore_dots;
    s.extract = extract;
    s.from = "Ann <ann@host.example>";
    s.date = "Mon, 1 Jan 2024 00:00:00 +0000";
    s.message_id = "<id@host.example>";
    return s;
}

Out run_pieces(const MessageSettings& s, const std::vector<std::string_view>& pieces) {
    MessageBuilder b(s);
    Out o;
    for (auto p : pieces) {
        if (!b.feed(p)) {
            o.err = true;
            return o;
        }
        o.text += b.take_output();
    }
    if (!b.finish()) {
        o.err = true;
        return o;
    }
    o.text += b.take_output();
    o.ended = b.ended();
    for (const auto& a : b.header_recipients()) o.rcpts += a.spec() + ",";
    return o;
}

// Whole, byte by byte, and split at every position: all the same.
Out run(const MessageSettings& s, std::string_view in) {
    Out whole = run_pieces(s, {in});
    std::vector<std::string_view> bytes;
    for (std::size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
    Out one = run_pieces(s, bytes);
    INFO("byte at a time: got " << one.text << ", want " << whole.text);
    CHECK(one == whole);
    for (std::size_t i = 0; i <= in.size(); ++i) {
        Out split = run_pieces(s, {in.substr(0, i), in.substr(i)});
        INFO("split at " << i << ": got " << split.text << ", want " << whole.text);
        CHECK(split == whole);
    }
    return whole;
}

const std::string Added = "From: Ann <ann@host.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                          "Message-ID: <id@host.example>\r\n";

}  // namespace

TEST_CASE("sendmail options") {
    auto o = parse({"-t", "-oi", "-f", "bob@example.org", "-FBob Example", "-N", "success,delay", "-R", "hdrs",
                    "-V", "env1", "-B", "8bitmime", "-v", "-Cdir", "--", "-x@example.org"});
    REQUIRE(o);
    CHECK(o->extract);
    CHECK(o->ignore_dots);
    CHECK(o->sender_given);
    CHECK(o->sender == "bob@example.org");
    CHECK(o->full_name == "Bob Example");
    CHECK(o->notify == (queue::NotifySuccess | queue::NotifyDelay));
    CHECK(o->ret == "HDRS");
    CHECK(o->envid == "env1");
    CHECK(o->body == "8BITMIME");
    CHECK(o->config_dir == "dir");
    CHECK(o->verbose == 1);
    CHECK(o->recipients == std::vector<std::string>{"-x@example.org"});

    auto g = parse({"-ti", "-rsender", "a@b", "c@d"});
    REQUIRE(g);
    CHECK((g->extract && g->ignore_dots && g->sender == "sender"));
    CHECK(g->recipients.size() == 2);

    CHECK(parse({"-Nnever"})->notify == queue::NotifyNever);
    CHECK(parse({"-bs"})->mode == Mode::Smtp);
    CHECK(parse({"-bp"})->mode == Mode::ListQueue);
    CHECK(parse({"-bi"})->mode == Mode::NewAliases);
    CHECK(parse({"-bv", "a"})->mode == Mode::Verify);
    CHECK(parse({"-q"})->mode == Mode::Flush);
    CHECK(parse({"-q30m"})->mode == Mode::Flush);
    CHECK(parse({}, "mailq")->mode == Mode::ListQueue);
    CHECK(parse({}, "newaliases")->mode == Mode::NewAliases);
    CHECK(program_name("/usr/bin/mailq") == "mailq");
    // Accepted and ignored.
    auto ign = parse({"-oem", "-odb", "-O", "DeliveryMode=b", "-L", "x", "-U", "-m", "-n", "-bm", "a"});
    REQUIRE(ign);
    CHECK_FALSE(ign->ignore_dots);
    CHECK(ign->mode == Mode::Deliver);

    for (auto bad : std::vector<std::vector<std::string_view>>{
             {"-z"}, {"-f"}, {"-N", "sometimes"}, {"-R", "all"}, {"-B", "binary"}, {"-bd"}, {"-V", "a b"}, {"-C", ""}}) {
        INFO("args: " << bad[0]);
        CHECK_FALSE(parse(bad));
    }
}

TEST_CASE("line endings become CRLF") {
    auto s = settings(true, false);
    CHECK(run(s, "Subject: x\n\na\nb\n").text == "Subject: x\r\n" + Added + "\r\na\r\nb\r\n");
    CHECK(run(s, "Subject: x\r\n\r\na\r\nb\r\n").text == "Subject: x\r\n" + Added + "\r\na\r\nb\r\n");
    // No line ending at the end: one is added. A CR alone stays.
    CHECK(run(s, "Subject: x\n\na\rb").text == "Subject: x\r\n" + Added + "\r\na\rb\r\n");
    // Mixed, and a CR before the LF is not doubled.
    CHECK(run(s, "Subject: x\r\n\na\r\n\r\nb\n").text == "Subject: x\r\n" + Added + "\r\na\r\n\r\nb\r\n");
}

TEST_CASE("a lone dot ends the input unless -i") {
    auto plain = settings(false, false);
    auto i = settings(true, false);
    Out o = run(plain, "Subject: x\n\na\n.\nb\n");
    CHECK(o.text == "Subject: x\r\n" + Added + "\r\na\r\n");
    CHECK(o.ended);
    CHECK(run(plain, "Subject: x\n\na\r\n.\r\nb\n").text == "Subject: x\r\n" + Added + "\r\na\r\n");
    CHECK(run(plain, "Subject: x\n\n..\n.a\n").text == "Subject: x\r\n" + Added + "\r\n..\r\n.a\r\n");
    CHECK(run(plain, "Subject: x\n.\nbody\n").text == "Subject: x\r\n" + Added);
    Out oi = run(i, "Subject: x\n\na\n.\nb\n");
    CHECK(oi.text == "Subject: x\r\n" + Added + "\r\na\r\n.\r\nb\r\n");
    CHECK_FALSE(oi.ended);
    // A dot at the very end without a line ending is text.
    CHECK(run(plain, "Subject: x\n\na\n.").text == "Subject: x\r\n" + Added + "\r\na\r\n.\r\n");
}

TEST_CASE("missing headers are added, present ones kept") {
    auto s = settings(true, false);
    std::string full = "From: me@x.example\nDate: Tue, 2 Jan 2024 00:00:00 +0000\nMessage-ID: <m@x>\nSubject: s\n\nb\n";
    CHECK(run(s, full).text ==
          "From: me@x.example\r\nDate: Tue, 2 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m@x>\r\nSubject: s\r\n\r\nb\r\n");
    // No header at all.
    CHECK(run(s, "just a body line\n").text == Added + "\r\njust a body line\r\n");
    CHECK(run(s, "").text == Added);
    // An mbox From line first is dropped; folded headers stay folded.
    CHECK(run(s, "From ann Mon Jan 1 00:00:00 2024\nSubject: a\n b\n\nx\n").text ==
          "Subject: a\r\n b\r\n" + Added + "\r\nx\r\n");
}

TEST_CASE("-t takes To, Cc and Bcc; Bcc is removed") {
    auto s = settings(true, true);
    Out o = run(s, "To: Ann <ann@a.example>,\n  bob@b.example\nCc: undisclosed:;\nBcc: carl@c.example\n"
                   "Subject: hi\n\nbody\n");
    CHECK(o.rcpts == "ann@a.example,bob@b.example,carl@c.example,");
    CHECK(o.text == "To: Ann <ann@a.example>,\r\n  bob@b.example\r\nCc: undisclosed:;\r\nSubject: hi\r\n" + Added +
                        "\r\nbody\r\n");
    CHECK(run(s, "To: <broken\n\nx\n").err);
    // Without -t the headers give no recipients, and Bcc still goes.
    auto n = settings(true, false);
    Out o2 = run(n, "Bcc: carl@c.example\nSubject: hi\n\nbody\n");
    CHECK(o2.rcpts.empty());
    CHECK(o2.text == "Subject: hi\r\n" + Added + "\r\nbody\r\n");
}

TEST_CASE("the header is limited") {
    auto s = settings(true, false);
    s.max_header_bytes = 100;
    MessageBuilder ok(s);
    CHECK(ok.feed("Subject: " + std::string(80, 'x') + "\n\n"));
    MessageBuilder big(s);
    CHECK_FALSE(big.feed("Subject: " + std::string(200, 'x') + "\n\n"));
    // The body is not limited.
    MessageBuilder body(s);
    CHECK(body.feed("\n" + std::string(100000, 'x') + "\n"));
}

TEST_CASE("From, Date and gecos helpers") {
    CHECK(format_from("", "a@b") == "a@b");
    CHECK(format_from("Ann Example", "a@b") == "Ann Example <a@b>");
    CHECK(format_from("Example, Ann", "a@b") == "\"Example, Ann\" <a@b>");
    CHECK(format_from("A \"q\"\nB", "a@b") == "\"A \\\"q\\\"B\" <a@b>");
    CHECK(gecos_name("& Smith,Room 1,,", "ann") == "Ann Smith");
    std::tm tm{};
    tm.tm_year = 124;
    tm.tm_mon = 4;
    tm.tm_mday = 14;
    tm.tm_wday = 2;
    tm.tm_hour = 10;
    CHECK(format_date(tm, 7200) == "Tue, 14 May 2024 10:00:00 +0200");
    CHECK(format_date(tm, -16200) == "Tue, 14 May 2024 10:00:00 -0430");
}

namespace {

// The field with its folds undone (RFC 5322 2.2.3: CRLF before WSP removed).
std::string unfold(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r' && i + 2 < s.size() && s[i + 1] == '\n' && (s[i + 2] == ' ' || s[i + 2] == '\t')) {
            ++i;
            continue;
        }
        out += s[i];
    }
    return out;
}

std::size_t longest_line(std::string_view s) {
    std::size_t best = 0, pos = 0;
    for (;;) {
        std::size_t eol = s.find("\r\n", pos);
        std::size_t len = (eol == std::string_view::npos ? s.size() : eol) - pos;
        best = std::max(best, len);
        if (eol == std::string_view::npos) return best;
        pos = eol + 2;
    }
}

std::string words(std::size_t n, char sep = ' ') {
    std::string s;
    for (std::size_t i = 0; s.size() < n; ++i) {
        if (!s.empty()) s += sep;
        s += "word" + std::to_string(i);
    }
    s.resize(n);
    if (s.back() == ' ' || s.back() == '\t') s.back() = 'x';
    return s;
}

}  // namespace

TEST_CASE("header lines longer than 998 octets are folded where they can be") {
    struct Case {
        const char* what;
        std::string in;
        bool folded;  // changed (and then within the limit)
    };
    const std::string a(2000, 'a');
    std::vector<Case> cases = {
        {"short", "Subject: hello world", false},
        {"exactly 998", "Subject: " + words(998 - 9), false},
        {"999 with spaces", "Subject: " + words(999 - 9), true},
        {"long with spaces", "Subject: " + words(5000), true},
        {"long with tabs", "Subject: " + words(3000, '\t'), true},
        {"only the space after the colon, and enough", "Subject: " + std::string(990, 'a'), true},
        {"only the space after the colon, not enough", "Subject: " + a, false},
        {"no white space at all", "X-Token:" + a, false},
        {"white space only at the end", "X: " + std::string(997, 'a') + "   ", false},
        {"white space only inside the name part", std::string(1000, 'N') + ": a b", false},
        {"a long continuation line", "Subject: first\r\n " + words(2500), true},
        {"a long line, then a short one", "To: " + words(1500, ',') + "\r\n x@example.org", false},
    };
    // "a,b,..." has no white space: it stays; with ", " it folds.
    cases.push_back({"address list", "To: " + [] {
                         std::string s;
                         for (int i = 0; i < 200; ++i) s += (i ? ", " : "") + std::string("user") + std::to_string(i) + "@example.org";
                         return s;
                     }(), true});
    for (auto& c : cases) {
        std::size_t kept = 0;
        std::string got = fold_header(c.in, MaxHeaderLine, kept);
        INFO(c.what);
        CHECK(unfold(got) == unfold(c.in));  // byte for byte once unfolded
        if (c.folded) {
            CHECK(got != c.in);
            CHECK(longest_line(got) <= MaxHeaderLine);
            CHECK(kept == 0);
        } else {
            INFO("got a change, want the field as it was");
            CHECK(got == c.in);
            CHECK(kept == (longest_line(c.in) > MaxHeaderLine ? 1u : 0u));
        }
        // No line of white space only, and every continuation starts with white space.
        std::size_t pos = 0;
        while ((pos = got.find("\r\n", pos)) != std::string::npos) {
            pos += 2;
            REQUIRE(pos < got.size());
            CHECK((got[pos] == ' ' || got[pos] == '\t'));
            std::size_t eol = std::min(got.find("\r\n", pos), got.size());
            CHECK(got.substr(pos, eol - pos).find_first_not_of(" \t") != std::string::npos);
        }
    }
}

TEST_CASE("a fold goes at the last white space within the limit") {
    std::size_t kept = 0;
    // 'x' up to index 989, a space at 990, then a word that crosses 998.
    std::string in = "Subject: " + std::string(981, 'x') + " " + std::string(20, 'y') + " tail";
    REQUIRE(in[990] == ' ');
    CHECK(fold_header(in, MaxHeaderLine, kept) == in.substr(0, 990) + "\r\n" + in.substr(990));
    // The space at 998 itself: the first line is exactly 998 octets.
    std::string at = "Subject: " + std::string(989, 'x') + " " + std::string(20, 'y');
    REQUIRE(at[998] == ' ');
    CHECK(fold_header(at, MaxHeaderLine, kept) == at.substr(0, 998) + "\r\n" + at.substr(998));
    // The space at 999 is too late: the one before is taken, and the rest
    // (1010 octets) is folded again.
    std::string late = "Subject: a " + std::string(988, 'x') + " " + std::string(20, 'y');
    REQUIRE(late[999] == ' ');
    CHECK(fold_header(late, MaxHeaderLine, kept) ==
          "Subject: a\r\n " + std::string(988, 'x') + "\r\n " + std::string(20, 'y'));
    CHECK(kept == 0);
}

TEST_CASE("sendmail folds long header lines only, and counts the ones it cannot fold") {
    auto s = settings(true, false);
    const std::string subject = "Subject: " + words(2500);
    const std::string token = "X-Token: " + std::string(1500, 't');
    const std::string body = words(3000) + "\n" + std::string(2000, 'b') + "\n";
    std::string in = subject + "\n" + token + "\n\n" + body;
    MessageBuilder b(s);
    REQUIRE(b.feed(in));
    REQUIRE(b.finish());
    std::string out = b.take_output();
    CHECK(b.long_header_lines() == 1);
    auto end = out.find("\r\n\r\n");
    REQUIRE(end != std::string::npos);
    std::string header = out.substr(0, end + 2);
    std::string folded_subject = header.substr(0, header.find("\r\nX-Token:"));
    CHECK(folded_subject != subject);
    CHECK(unfold(folded_subject) == subject);
    CHECK(longest_line(folded_subject) <= MaxHeaderLine);
    CHECK(header.find("\r\n" + token + "\r\n") != std::string::npos);  // kept as it is
    // The body is not touched (only its line endings become CRLF).
    std::string want_body = words(3000) + "\r\n" + std::string(2000, 'b') + "\r\n";
    CHECK(out.substr(end + 4) == want_body);

    // The same whole, byte by byte and split anywhere (run() compares them).
    Out o = run(s, "Subject: " + words(1200) + "\n\nx\n");
    CHECK(longest_line(o.text) <= MaxHeaderLine);
    CHECK(unfold(o.text) == "Subject: " + words(1200) + "\r\n" + Added + "\r\nx\r\n");

    // A From header added from a very long -F name is folded too.
    auto f = settings(true, false);
    f.from = format_from(words(1500), "ann@host.example");
    MessageBuilder fb(f);
    REQUIRE(fb.feed("Subject: x\n\nbody\n"));
    REQUIRE(fb.finish());
    std::string fo = fb.take_output();
    CHECK(longest_line(fo) <= MaxHeaderLine);
    CHECK(fb.long_header_lines() == 0);
    CHECK(unfold(fo).find("From: " + f.from + "\r\n") != std::string::npos);
}

TEST_CASE("sendmail -bv: the route qmgr would take, and what local would find") {
    test::TempQueue tmp;
    const std::string transport = tmp.path + "/transport";
    REQUIRE(fs::atomic_write(transport, "bad.example  error:5.1.2 no such domain\n"
                                        "later.example  error:4.4.1 try later\n"
                                        "drop.example  discard:silently\n",
                             0644));
    auto cfg = config::Config::from_text("myhostname = mail.example.com\nmydestination = $myhostname, example.com, localhost\n"
                                         "relay_domains = relay.example\nvirtual_mailbox_domains = virt.example\n"
                                         "transport_maps = texthash:" + transport + "\n",
                                         "main.cf", "/nonexistent");
    REQUIRE(cfg);
    auto router = delivery::open_router(cfg->params());
    REQUIRE(router);

    auto map = [](std::map<std::string, std::string> m) -> MapLookup {
        return [m](std::string_view k) -> Result<std::optional<std::string>> {
            auto it = m.find(std::string(k));
            if (it == m.end()) return std::optional<std::string>();
            return std::optional<std::string>(it->second);
        };
    };
    VerifyTables t;
    t.alias = map({{"postmaster", "root"}, {"lists", "ann, bob"}});
    t.virtual_mailbox = map({{"a@virt.example", "virt.example/a/"}});
    t.user = [](std::string_view n) -> Result<std::optional<privs::UserInfo>> {
        if (n == "ann") return std::optional<privs::UserInfo>(privs::UserInfo{"ann", 1000, 1000, "/home/ann", "/bin/sh"});
        if (n == "root") return std::optional<privs::UserInfo>(privs::UserInfo{"root", 0, 0, "/root", "/bin/sh"});
        return std::optional<privs::UserInfo>();
    };
    t.services_known = true;
    t.services = {"local", "virtual", "smtp"};

    auto line = [](const Verifier& v, std::string_view addr) {
        auto a = address::parse_list(addr);
        REQUIRE(a);
        REQUIRE(a->size() == 1);
        return verdict_line(addr, v.check(a->front()));
    };
    Verifier v(cfg->params(), **router, t);
    const char* host = "local (mail.example.com)";
    struct Case {
        std::string addr, want;
    } cases[] = {
        {"ann@example.com", std::string("deliverable via ") + host + ": user ann"},
        {"Ann+tag@Example.COM", std::string("deliverable via ") + host + ": user ann"},
        {"postmaster@localhost", std::string("deliverable via ") + host + ": alias"},
        {"lists+x@example.com", std::string("deliverable via ") + host + ": alias"},
        {"nobody@example.com", "undeliverable: unknown user: \"nobody\""},
        {"root@mail.example.com", "deferred: mail for root is not delivered with uid 0: alias root to a real user in alias_maps"},
        {"double-bounce@mail.example.com", "deliverable via discard (mail to double_bounce_sender is discarded)"},
        {"x@far.example", "deliverable via smtp (far.example)"},
        {"x@relay.example", "deliverable via smtp (relay.example)"},
        {"a@virt.example", "deliverable via virtual (virt.example): virtual mailbox"},
        {"b@virt.example", "undeliverable: unknown user: \"b@virt.example\""},
        {"x@bad.example", "undeliverable: 5.1.2 no such domain"},
        {"x@later.example", "deferred: 4.4.1 try later"},
        {"x@drop.example", "deliverable via discard (silently)"},
    };
    for (auto& c : cases) {
        std::string got = line(v, c.addr), want = c.addr + ": " + c.want;
        INFO("got " << got << ", want " << want);
        CHECK(got == want);
    }

    // A transport that master.cf does not have: the message would wait.
    auto no_smtp = t;
    no_smtp.services = {"local", "virtual"};
    Verifier v2(cfg->params(), **router, no_smtp);
    CHECK(line(v2, "x@far.example") == "x@far.example: deferred: transport smtp (far.example) is not a service in "
                                       "master.cf; the message would wait in the queue");
    no_smtp.services_known = false;  // master.cf unreadable: not checked
    CHECK(line(Verifier(cfg->params(), **router, no_smtp), "x@far.example") ==
          "x@far.example: deliverable via smtp (far.example)");

    // Aliases that cannot be read: a passwd user is still found; otherwise nobody can tell.
    auto down = t;
    down.alias = [](std::string_view) -> Result<std::optional<std::string>> {
        return Error::temp("alias_maps: cannot open hash:/etc/postern/aliases");
    };
    Verifier v3(cfg->params(), **router, down);
    CHECK(line(v3, "ann@example.com") == std::string("ann@example.com: deliverable via ") + host +
                                             ": user ann (aliases not checked: alias_maps: cannot open "
                                             "hash:/etc/postern/aliases)");
    CHECK(line(v3, "nobody@example.com") ==
          "nobody@example.com: deferred: cannot tell: alias_maps: cannot open hash:/etc/postern/aliases");
}

TEST_CASE("sendmail -bv: a transport table that cannot be opened") {
    auto cfg = config::Config::from_text("transport_maps = hash:/nonexistent/transport\n", "main.cf", "/nonexistent");
    REQUIRE(cfg);
    auto r = delivery::open_router(cfg->params());
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Config);
    CHECK(r.error().text.rfind("transport_maps: ", 0) == 0);
}
