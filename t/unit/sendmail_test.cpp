// Unit tests for sendmail/: option parsing, line endings, -i dot handling,
// header completion, -t recipient extraction and Bcc removal. Message inputs
// are fed whole, a byte at a time and split at every position; all must
// agree. Failures say "got X, want Y".
#include <catch2/catch.hpp>

#include <sysexits.h>

#include <string>
#include <vector>

#include "queue/queue.hpp"
#include "sendmail/message.hpp"
#include "sendmail/options.hpp"
#include "sendmail/submit.hpp"

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
