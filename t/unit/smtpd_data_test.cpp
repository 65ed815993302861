// Unit tests for smtpd/data: the DATA/BDAT state machine and the header
// scanner. Every case is fed in one piece, a byte at a time and split at every
// position (plus every 3-way split of short inputs); all must agree with the
// table. Failures say "got X, want Y".
#include <catch2/catch.hpp>

#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "smtpd/data.hpp"
#include "util/strings.hpp"

using namespace postern::smtpd;
using namespace std::string_literals;

namespace {

std::string show(std::string_view s) { return postern::util::printable(s, 120); }

struct Outcome {
    std::string content;
    std::optional<std::string> defect;
    bool done = false;
    std::size_t used = 0;
    bool operator==(const Outcome&) const = default;
};

std::string show(const Outcome& o) {
    std::ostringstream s;
    s << "{content '" << show(o.content) << "' (" << o.content.size() << " bytes), defect "
      << (o.defect ? "'" + *o.defect + "'" : "none") << ", done " << o.done << ", used " << o.used << "}";
    return s.str();
}

// Feeds `in` cut at the given (ascending) positions. Pieces after the end of
// DATA are still offered: the reader must take none of them.
Outcome run(DataReader::Mode mode, std::string_view in, const std::vector<std::size_t>& cuts, bool finish = false) {
    DataReader r(mode);
    Outcome o;
    std::size_t from = 0;
    auto feed = [&](std::size_t to) {
        std::string_view piece = in.substr(from, to - from);
        std::size_t used = r.feed(piece, o.content);
        if (used > piece.size() || (used < piece.size() && !r.done()))  // only the end of DATA stops early
            FAIL("feed of " << piece.size() << " bytes used " << used << ", done " << r.done());
        o.used += used;
        from = to;
    };
    for (std::size_t c : cuts) feed(c);
    feed(in.size());
    if (finish) r.finish_bdat();
    o.defect = r.defect();
    o.done = r.done();
    return o;
}

// Checks one case in one piece, byte at a time and in every 2-way split (and
// every 3-way split when short); big inputs get a sample of splits instead.
void check_all_splits(DataReader::Mode mode, const std::string& in, const Outcome& want, bool finish = false) {
    auto check = [&](const std::vector<std::size_t>& cuts, const char* how) {
        Outcome got = run(mode, in, cuts, finish);
        if (got == want) return;
        std::string at;
        for (auto c : cuts) at += " " + std::to_string(c);
        INFO("input '" << show(in) << "' " << how << (at.empty() ? "" : " at") << at << ":\n  got  " << show(got)
                       << "\n  want " << show(want));
        CHECK(got == want);
    };
    check({}, "in one piece");
    std::vector<std::size_t> every(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) every[i] = i;
    check(every, "byte at a time");
    const bool small = in.size() <= 4096;
    for (std::size_t i = 0; i <= in.size(); i += small ? 1 : in.size() / 97 + 1) check({i}, "split");
    if (!small)
        for (std::size_t i = in.size() - 8; i <= in.size(); ++i) check({i}, "split");  // around the terminator
    if (in.size() <= 24)
        for (std::size_t i = 0; i <= in.size(); ++i)
            for (std::size_t j = i; j <= in.size(); ++j) check({i, j}, "3-way split");
}

const std::optional<std::string> kNone;
const std::optional<std::string> kBareLf = "bare <LF>"s, kBareCr = "bare <CR>"s, kNul = "NUL character"s;

}  // namespace

TEST_CASE("DataReader DATA mode: table, any split") {
    struct Case { std::string in; std::string content; std::optional<std::string> defect; bool done; std::size_t used; };
    const std::string mb(1 << 20, 'x');
    const std::vector<Case> cases = {
        // Plain messages and the terminator.
        {"a\r\nb\r\n.\r\n", "a\r\nb\r\n", kNone, true, 9},
        {".\r\n", "", kNone, true, 3},                       // empty message: "." right after 354
        {"\r\n.\r\n", "\r\n", kNone, true, 5},
        {"Subject: x\r\n\r\nbody\r\n.\r\n", "Subject: x\r\n\r\nbody\r\n", kNone, true, 23},
        // Dot-stuffing.
        {"..x\r\n.\r\n", ".x\r\n", kNone, true, 8},
        {"a\r\n..\r\n.\r\n", "a\r\n.\r\n", kNone, true, 10},
        {"...\r\n.\r\n", "..\r\n", kNone, true, 8},
        {". x\r\n.\r\n", " x\r\n", kNone, true, 8},
        {"a.\r\n.b\r\n.\r\n", "a.\r\nb\r\n", kNone, true, 11},
        // Bytes after the terminator are not consumed (pipelined commands).
        {"a\r\n.\r\nQUIT\r\n", "a\r\n", kNone, true, 6},
        {".\r\n.\r\n", "", kNone, true, 3},
        {"a\r\n.\r\n.\r\n", "a\r\n", kNone, true, 6},
        // Not finished yet: everything is used, the pending dot / CR is held.
        {"", "", kNone, false, 0},
        {"a", "a", kNone, false, 1},
        {"a\r\n", "a\r\n", kNone, false, 3},
        {"a\r", "a", kNone, false, 2},
        {"a\r\n.", "a\r\n", kNone, false, 4},
        {"a\r\n.\r", "a\r\n", kNone, false, 5},
        // SMTP smuggling look-alikes never end DATA (CVE-2023-51764). A bare LF
        // is stored as CRLF and flagged, but does not start an SMTP line: the
        // bytes after it are plain content (no dot handling, no end), so the
        // reader goes on until a real CRLF.CRLF, and the session refuses the
        // message for the defect.
        {"a\n.\n", "a\r\n.\r\n", kBareLf, false, 4},
        {"a\n.\r\n", "a\r\n.\r\n", kBareLf, false, 5},
        {"a\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", kBareLf, false, 22},
        {"a\n.\r\nb\r\n.\r\nRSET\r\n", "a\r\n.\r\nb\r\n", kBareLf, true, 11},
        {"a\n..\r\n.\r\n", "a\r\n..\r\n", kBareLf, true, 9},   // the dot after a bare LF is content
        {"\n.\r\n", "\r\n.\r\n", kBareLf, false, 4},
        {"a\r\n.\n", "a\r\n\r\n", kBareLf, false, 5},            // "." ended by bare LF: dot unstuffed, not the end
        {"a\r\n.\n.\r\n", "a\r\n\r\n.\r\n", kBareLf, false, 8},  // ...and the next "." follows a bare LF
        {"a\r\n.\nb\r\n.\r\n", "a\r\n\r\nb\r\n", kBareLf, true, 11},
        {".\n", "\r\n", kBareLf, false, 2},
        {"a\r.\r", "a\r.", kBareCr, false, 4},
        {"a\r.\r\n", "a\r.\r\n", kBareCr, false, 5},
        {"a\r.\rb\r\n.\r\n", "a\r.\rb\r\n", kBareCr, true, 10},
        {"a\r\n.\rX", "a\r\n\rX", kBareCr, false, 6},
        {"a\r\n.\r.\r\n", "a\r\n\r.\r\n", kBareCr, false, 8},
        {"a\r\n.\r\r\n.\r\n", "a\r\n\r\r\n", kBareCr, true, 10},
        {"a\r\r\n.\r\n", "a\r\r\n", kBareCr, true, 7},
        {"a\rb\r\n.\r\n", "a\rb\r\n", kBareCr, true, 8},
        {"a\n\r.\r\n", "a\r\n\r.\r\n", kBareLf, false, 6},
        // NUL is kept in the content and flagged.
        {"a\0b\r\n.\r\n"s, "a\0b\r\n"s, kNul, true, 8},
        {".\0\r\n.\r\n"s, "\0\r\n"s, kNul, true, 7},
        {"\0"s, "\0"s, kNul, false, 1},
        // The first defect is the one reported.
        {"a\0\nb\r\r\n.\r\n"s, "a\0\r\nb\r\r\n"s, kNul, true, 10},
        {"a\nb\0\r\n.\r\n"s, "a\r\nb\0\r\n"s, kBareLf, true, 9},
        {"a\rb\n\r\n.\r\n"s, "a\rb\r\n\r\n"s, kBareCr, true, 9},
        // 8-bit bytes are plain content.
        {"\xff\xfe\x80\r\n.\r\n", "\xff\xfe\x80\r\n", kNone, true, 8},
        // Long lines pass untouched (line length is the session's policy).
        {mb + "\r\n.\r\n", mb + "\r\n", kNone, true, mb.size() + 5},
        {"." + mb + "\r\n.\r\n", mb + "\r\n", kNone, true, mb.size() + 6},
    };
    for (const auto& c : cases) check_all_splits(DataReader::Mode::Data, c.in, {c.content, c.defect, c.done, c.used});
}

TEST_CASE("DataReader: nothing is taken after the end") {
    DataReader r;
    std::string out;
    CHECK(r.feed("a\r\n.\r\nMAIL", out) == 6);
    REQUIRE(r.done());
    CHECK(r.feed("MORE\r\n.\r\n", out) == 0);
    INFO("got content '" << show(out) << "', want 'a\\r\\n'");
    CHECK(out == "a\r\n");
    CHECK_FALSE(r.defect());
}

TEST_CASE("DataReader: content is appended to what the caller holds") {
    DataReader r;
    std::string out = "Received: x\r\n";
    CHECK(r.feed("b\r\n.\r\n", out) == 6);
    CHECK(out == "Received: x\r\nb\r\n");
}

TEST_CASE("DataReader BDAT mode: table, any split") {
    // BDAT chunks are counted bytes: no terminator, no dot-stuffing; line
    // endings and NUL are still checked. finish_bdat() runs after the last chunk.
    struct Case { std::string in; bool finish; std::string content; std::optional<std::string> defect; };
    const std::string mb(1 << 20, 'y');
    const std::vector<Case> cases = {
        {"", true, "", kNone},
        {"a\r\nb\r\n", true, "a\r\nb\r\n", kNone},
        {"a\r\n.\r\n", true, "a\r\n.\r\n", kNone},  // ".\r\n" is content
        {".\r\n", true, ".\r\n", kNone},
        {"..x\r\n", true, "..x\r\n", kNone},        // dots not unstuffed
        {"a\r\n..\r\n.\r\nQUIT\r\n", true, "a\r\n..\r\n.\r\nQUIT\r\n", kNone},
        {"a\nb", true, "a\r\nb", kBareLf},
        {"a\n.\r\n", true, "a\r\n.\r\n", kBareLf},
        {"\n", true, "\r\n", kBareLf},
        {"a\rb", true, "a\rb", kBareCr},
        {"a\r\r\n", true, "a\r\r\n", kBareCr},
        {"a\0b"s, true, "a\0b"s, kNul},
        {"a\r\n", true, "a\r\n", kNone},
        // A CR at the very end of a chunk waits for the next one...
        {"a\r", false, "a", kNone},
        // ...and after the LAST chunk it is a bare CR (the CR itself is not
        // appended: finish_bdat has no output, and the message is refused).
        {"a\r", true, "a", kBareCr},
        {"\r", true, "", kBareCr},
        {mb, true, mb, kNone},
        {mb + "\r\n", true, mb + "\r\n", kNone},
    };
    for (const auto& c : cases) {
        INFO("finish_bdat: " << c.finish);
        check_all_splits(DataReader::Mode::Bdat, c.in, {c.content, c.defect, false, c.in.size()}, c.finish);
    }
}

TEST_CASE("DataReader BDAT: CRLF split across chunks is not a bare CR") {
    DataReader r(DataReader::Mode::Bdat);
    std::string out;
    CHECK(r.feed("a\r", out) == 2);
    CHECK(r.feed("\nb\r", out) == 3);
    CHECK(r.feed("\n", out) == 1);
    r.finish_bdat();
    INFO("got content '" << show(out) << "' defect " << (r.defect() ? *r.defect() : "none") << ", want 'a\\r\\nb\\r\\n', none");
    CHECK(out == "a\r\nb\r\n");
    CHECK_FALSE(r.defect());
    CHECK_FALSE(r.done());
}

TEST_CASE("HeaderScanner: table, fed whole and byte at a time") {
    struct Case {
        const char* what;
        std::string content;
        std::size_t limit;
        const char* name;
        std::optional<std::string> want;
        bool want_in_headers;
    };
    const std::string big(200, 'v');
    const std::vector<Case> cases = {
        {"simple", "Message-ID: <a@b.example>\r\nSubject: x\r\n\r\nbody\r\n", 1024, "Message-ID", "<a@b.example>"s, false},
        {"name case-insensitive", "message-id: <a@b.example>\r\n\r\n", 1024, "Message-ID", "<a@b.example>"s, false},
        {"asked in other case", "Message-ID: <a@b.example>\r\n\r\n", 1024, "MESSAGE-id", "<a@b.example>"s, false},
        {"value trimmed", "Message-ID:   <a@b.example> \t\r\n\r\n", 1024, "Message-ID", "<a@b.example>"s, false},
        {"no space after colon", "Message-ID:<a@b.example>\r\n\r\n", 1024, "Message-ID", "<a@b.example>"s, false},
        {"folded value unfolded", "Subject: x\r\nMessage-ID:\r\n <a@b.example>\r\nDate: d\r\n\r\n", 1024, "Message-ID",
         "<a@b.example>"s, false},
        {"folded over lines", "Subject: one\r\n two\r\n\tthree\r\nX: y\r\n\r\n", 1024, "Subject", "one two three"s, false},
        {"first of two", "Date: first\r\nDate: second\r\n\r\n", 1024, "Date", "first"s, false},
        {"later header", "A: 1\r\nB: 2\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n", 1024, "Date",
         "Mon, 1 Jan 2024 00:00:00 +0000"s, false},
        {"other name not matched", "X-Message-ID: <x@y>\r\n\r\n", 1024, "Message-ID", std::nullopt, false},
        {"continuation not a header", "Subject: x\r\n Message-ID: <x@y>\r\n\r\n", 1024, "Message-ID", std::nullopt, false},
        {"after the blank line", "Subject: x\r\n\r\nMessage-ID: <a@b.example>\r\n", 1024, "Message-ID", std::nullopt, false},
        {"no headers", "\r\nMessage-ID: <a@b.example>\r\n", 1024, "Message-ID", std::nullopt, false},
        {"only a blank line", "\r\n", 1024, "Message-ID", std::nullopt, false},
        {"still in headers", "Message-ID: <a@b.example>\r\nSubj", 1024, "Message-ID", "<a@b.example>"s, true},
        {"nothing yet", "", 1024, "Message-ID", std::nullopt, true},
        {"blank line not yet complete", "Message-ID: <a@b.example>\r\n\r", 1024, "Message-ID", "<a@b.example>"s, true},
        // Limits: at the limit the header is seen; past it, headers are not scanned.
        {"header ends at the limit", "Message-ID: <a@b.example>\r\nX: y\r\n\r\n", 27, "Message-ID", "<a@b.example>"s, false},
        {"limit reached first", "X-Long: " + big + "\r\nMessage-ID: <a@b.example>\r\n\r\n", 64, "Message-ID", std::nullopt, false},
        {"limit cuts before name", "Subject: x\r\nMessage-ID: <a@b.example>\r\n\r\n", 12, "Message-ID", std::nullopt, false},
        {"limit with blank line just inside", "A: 1\r\n\r\nMessage-ID: <x>\r\n", 8, "Message-ID", std::nullopt, false},
        {"limit zero", "Message-ID: <a@b.example>\r\n\r\n", 0, "Message-ID", std::nullopt, false},
    };
    for (const auto& c : cases) {
        for (bool bytewise : {false, true}) {
            HeaderScanner s(c.limit);
            if (bytewise)
                for (char ch : c.content) s.feed(std::string_view(&ch, 1));
            else
                s.feed(c.content);
            auto got = s.value(c.name);
            INFO(c.what << (bytewise ? " (byte at a time)" : " (one piece)") << ": got "
                        << (got ? "'" + show(*got) + "'" : "nullopt") << " in_headers " << s.in_headers() << ", want "
                        << (c.want ? "'" + show(*c.want) + "'" : "nullopt") << " in_headers " << c.want_in_headers);
            CHECK(got == c.want);
            CHECK(s.in_headers() == c.want_in_headers);
        }
    }
}

TEST_CASE("HeaderScanner: ignores content after the header section ends") {
    HeaderScanner s;
    s.feed("Subject: x\r\n\r\n");
    REQUIRE_FALSE(s.in_headers());
    s.feed("Message-ID: <late@b.example>\r\n");
    CHECK_FALSE(s.value("Message-ID"));
    CHECK(s.value("Subject") == "x");
}

TEST_CASE("DataReader output feeds HeaderScanner") {
    DataReader r;
    HeaderScanner s;
    const std::string wire = "Message-ID:\r\n <m@b.example>\r\n\r\n..body\r\n.\r\n";
    for (char ch : wire) {
        std::string out;
        r.feed(std::string_view(&ch, 1), out);
        s.feed(out);
    }
    REQUIRE(r.done());
    CHECK_FALSE(r.defect());
    CHECK(s.value("message-id") == "<m@b.example>");
    CHECK_FALSE(s.in_headers());
}
