// Unit tests for qmgr's logic classes. First block: DSN composition
// (qmgr/bounce.cpp) from real queue files, parsed back as MIME.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "qmgr/bounce.hpp"
#include "queue/queue.hpp"
#include "t/unit/temp_queue.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

using namespace postern;
using namespace std::string_literals;

// ---- DSN composition (qmgr/bounce)

namespace {

constexpr int64_t Arrival = 1'700'000'000'123'456;  // 2023-11-14
constexpr int64_t Later = Arrival + 3'600'000'000;  // an hour on

using BounceQueue = test::TempQueue;

// A committed queue file holding content, opened for reading.
struct Original {
    std::string id;
    UniqueFd fd;
    uint64_t content_offset = 0;
};

Original write_original(const BounceQueue& q, std::string_view content, const std::string& ret = "") {
    auto w = queue::Writer::create(q.path, Arrival);
    REQUIRE(w);
    queue::Envelope env;
    env.sender = "sender@example.org";
    env.envid = "ENV-42";
    env.ret = ret;
    queue::Recipient r;
    r.address = "nobody@example.net";
    r.orcpt = "rfc822;Nobody@Example.NET";
    env.recipients.push_back(r);
    REQUIRE(w->write_envelope(env));
    // Small appends, so the content is cut into records at odd places too.
    while (!content.empty()) {
        auto n = std::min<std::size_t>(content.size(), 7919);
        REQUIRE(w->append(content.substr(0, n)));
        content.remove_prefix(n);
    }
    REQUIRE(w->finish());
    auto c = w->commit();
    INFO("commit: " << (c ? "" : c.error().text));
    REQUIRE(c);
    Original o;
    o.id = w->id();
    o.fd.reset(::open((q.path + "/incoming/" + o.id).c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(o.fd);
    auto env2 = queue::read_envelope(o.fd.get(), &o.content_offset);
    REQUIRE(env2);
    return o;
}

qmgr::DsnInput failure_input(const Original& o) {
    qmgr::DsnInput in;
    in.myhostname = "mx.example.com";
    in.mail_name = "Postern";
    in.queue_id = o.id;
    in.envid = "ENV-42";
    in.original_sender = "sender@example.org";
    in.to = "sender@example.org";
    in.arrival_us = Arrival;
    in.kind = qmgr::DsnKind::Failure;
    in.recipients.push_back({"nobody@example.net", "rfc822;Nobody@Example.NET", "5.1.1",
                             "host in.example.net[192.0.2.7] said: 550 5.1.1 <nobody@example.net>: no such user "
                             "(in reply to RCPT TO command)",
                             "in.example.net", "smtp; 550 5.1.1 <nobody@example.net>: no such user"});
    return in;
}

std::string compose(const qmgr::DsnInput& in, const Original& o, int64_t now = Later) {
    std::string out;
    auto r = qmgr::compose_dsn(in, o.fd.get(), o.content_offset, now, [&](std::string_view b) -> Result<void> {
        out.append(b);
        return {};
    });
    INFO("compose_dsn: " << (r ? "" : r.error().text));
    REQUIRE(r);
    return out;
}

// ---- A small MIME reader for the checks (RFC 5322 fields, RFC 2046 multipart).

struct Entity {
    std::vector<std::pair<std::string, std::string>> fields;  // lower-case names, unfolded values
    std::string body;

    std::string get(const std::string& name) const {
        for (auto& [n, v] : fields)
            if (n == name) return v;
        return "";
    }
    bool has(const std::string& name) const {
        for (auto& f : fields)
            if (f.first == name) return true;
        return false;
    }
    std::size_t count(const std::string& name) const {
        std::size_t n = 0;
        for (auto& f : fields) n += f.first == name;
        return n;
    }
};

std::vector<std::pair<std::string, std::string>> parse_fields(std::string_view text) {
    std::vector<std::pair<std::string, std::string>> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto eol = text.find("\r\n", pos);
        REQUIRE(eol != std::string_view::npos);
        std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 2;
        if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
            REQUIRE(!out.empty());
            out.back().second += line;  // unfold: drop the CRLF, keep the white space
            continue;
        }
        auto colon = line.find(':');
        INFO("field line: " << line);
        REQUIRE(colon != std::string_view::npos);
        out.emplace_back(util::to_lower(line.substr(0, colon)), std::string(util::trim(line.substr(colon + 1))));
    }
    for (auto& f : out) f.second = std::string(util::trim(f.second));
    return out;
}

Entity parse_entity(std::string_view s) {
    Entity e;
    std::size_t split;
    if (s.substr(0, 2) == "\r\n") {
        split = 0;
    } else {
        split = s.find("\r\n\r\n");
        REQUIRE(split != std::string_view::npos);
        split += 2;
        e.fields = parse_fields(s.substr(0, split));
    }
    e.body = s.substr(split + 2);
    return e;
}

std::string param(const std::string& value, const std::string& name) {
    auto p = util::to_lower(value).find(name + "=");
    REQUIRE(p != std::string::npos);
    std::string v = value.substr(p + name.size() + 1);
    if (!v.empty() && v[0] == '"') return v.substr(1, v.find('"', 1) - 1);
    return v.substr(0, v.find(';'));
}

std::vector<Entity> split_multipart(const std::string& body, const std::string& boundary) {
    const std::string delim = "\r\n--" + boundary;
    // The preamble may be empty, and then the first delimiter has no CRLF before it.
    std::string b = "\r\n" + body;
    auto pos = b.find(delim);
    REQUIRE(pos != std::string::npos);
    std::vector<Entity> parts;
    for (;;) {
        pos += delim.size();
        if (b.compare(pos, 2, "--") == 0) {
            INFO("after the close delimiter: " << b.substr(pos + 2));
            CHECK(b.substr(pos + 2) == "\r\n");
            break;
        }
        REQUIRE(b.compare(pos, 2, "\r\n") == 0);
        pos += 2;
        auto next = b.find(delim, pos);
        REQUIRE(next != std::string::npos);
        parts.push_back(parse_entity(std::string_view(b).substr(pos, next - pos)));
        pos = next;
    }
    return parts;
}

// The report part: per-message fields, then one block per recipient.
std::vector<std::vector<std::pair<std::string, std::string>>> report_blocks(const std::string& body) {
    std::vector<std::vector<std::pair<std::string, std::string>>> blocks;
    std::size_t pos = 0;
    while (pos < body.size()) {
        auto end = body.find("\r\n\r\n", pos);
        std::string block = end == std::string::npos ? body.substr(pos) : body.substr(pos, end + 2 - pos);
        blocks.push_back(parse_fields(block));
        if (end == std::string::npos) break;
        pos = end + 4;
    }
    return blocks;
}

std::string get(const std::vector<std::pair<std::string, std::string>>& fields, const std::string& name) {
    for (auto& [n, v] : fields)
        if (n == name) return v;
    return "";
}

struct Dsn {
    Entity top;
    std::vector<Entity> parts;
    std::string boundary;
};

Dsn parse_dsn(const std::string& text) {
    INFO("DSN:\n" << text);
    // Every line ends in CRLF and fits RFC 5322's limit.
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\n') continue;
        REQUIRE(i > 0);
        REQUIRE(text[i - 1] == '\r');
        CHECK(i - 1 - line_start <= 998);
        line_start = i + 1;
    }
    REQUIRE(line_start == text.size());
    Dsn d;
    d.top = parse_entity(text);
    auto ct = d.top.get("content-type");
    CHECK(util::starts_with_icase(ct, "multipart/report;"));
    d.boundary = param(ct, "boundary");
    REQUIRE(!d.boundary.empty());
    CHECK(d.boundary.size() <= 70);
    d.parts = split_multipart(d.top.body, d.boundary);
    REQUIRE(d.parts.size() == 3);
    return d;
}

const std::string Headers =
    "Received: from client.example.org (client.example.org [192.0.2.1])\r\n"
    "\tby mx.example.com (Postern) with ESMTP id X\r\n"
    "From: Sender <sender@example.org>\r\n"
    "To: nobody@example.net\r\n"
    "Subject: hello\r\n"
    "Message-ID: <m1@example.org>\r\n";
const std::string Body = "Hello,\r\n\r\nthis is the body.\r\n-- \r\nS.\r\n";

}  // namespace

TEST_CASE("bounce: a failure DSN has the three parts and the RFC 3464 fields") {
    BounceQueue q;
    auto o = write_original(q, Headers + "\r\n" + Body);
    auto in = failure_input(o);
    in.recipients.push_back({"other@example.net", "", "5.2.2", "mailbox full", "", ""});
    in.recipients.push_back({"third@example.net", "", "5.7.1", "refused", "mx.example.net[192.0.2.9]:25", ""});
    auto d = parse_dsn(compose(in, o));

    CHECK(d.top.get("from") == "MAILER-DAEMON@mx.example.com (Mail Delivery System)");
    CHECK(d.top.get("to") == "<sender@example.org>");
    CHECK(d.top.get("subject") == "Undelivered Mail Returned to Sender");
    CHECK(d.top.get("auto-submitted") == "auto-replied");
    CHECK(d.top.get("mime-version") == "1.0");
    CHECK(d.top.get("message-id").find("@mx.example.com>") != std::string::npos);
    CHECK(d.top.get("date").find("2023") != std::string::npos);  // Later, an hour after arrival
    CHECK(util::to_lower(d.top.get("content-type")).find("report-type=delivery-status") != std::string::npos);
    CHECK_FALSE(d.top.has("content-transfer-encoding"));  // all 7-bit
    for (const char* f : {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"}) {
        INFO(f << " appears " << d.top.count(f) << " times, want 1");
        CHECK(d.top.count(f) == 1);
    }

    const Entity& text = d.parts[0];
    CHECK(util::starts_with_icase(text.get("content-type"), "text/plain"));
    CHECK(text.body.find("This is the mail system at host mx.example.com.") == 0);
    CHECK(text.body.find("I'm sorry to have to inform you that your message could not") != std::string::npos);
    CHECK(text.body.find("<nobody@example.net>: host in.example.net[192.0.2.7] said: 550") != std::string::npos);
    CHECK(text.body.find("<other@example.net>: mailbox full") != std::string::npos);

    const Entity& report = d.parts[1];
    CHECK(report.get("content-type") == "message/delivery-status");
    auto blocks = report_blocks(report.body);
    REQUIRE(blocks.size() == 4);
    CHECK(get(blocks[3], "remote-mta") == "dns; mx.example.net");
    CHECK(get(blocks[0], "reporting-mta") == "dns; mx.example.com");
    CHECK(get(blocks[0], "x-postern-queue-id") == o.id);
    CHECK(get(blocks[0], "original-envelope-id") == "ENV-42");
    CHECK(get(blocks[0], "x-postern-sender") == "rfc822; sender@example.org");
    CHECK(get(blocks[0], "arrival-date").find("2023") != std::string::npos);
    CHECK(get(blocks[1], "final-recipient") == "rfc822; nobody@example.net");
    CHECK(get(blocks[1], "original-recipient") == "rfc822; Nobody@Example.NET");
    CHECK(get(blocks[1], "action") == "failed");
    CHECK(get(blocks[1], "status") == "5.1.1");
    CHECK(get(blocks[1], "remote-mta") == "dns; in.example.net");
    CHECK(get(blocks[1], "diagnostic-code") == "smtp; 550 5.1.1 <nobody@example.net>: no such user");
    CHECK(get(blocks[2], "final-recipient") == "rfc822; other@example.net");
    CHECK(get(blocks[2], "original-recipient").empty());
    CHECK(get(blocks[2], "status") == "5.2.2");
    CHECK(get(blocks[2], "remote-mta").empty());
    // RFC 3464 field order: Original-Recipient before Final-Recipient, then Action, Status.
    REQUIRE(blocks[1].size() >= 4);
    CHECK(blocks[1][0].first == "original-recipient");
    CHECK(blocks[1][1].first == "final-recipient");
    CHECK(blocks[1][2].first == "action");
    CHECK(blocks[1][3].first == "status");

    const Entity& orig = d.parts[2];
    CHECK(orig.get("content-type") == "message/rfc822");
    INFO("returned: " << orig.body);
    CHECK(orig.body == Headers + "\r\n" + Body);  // byte for byte
}

TEST_CASE("bounce: no ENVID, no ORCPT, no remote MTA: those fields are left out") {
    BounceQueue q;
    auto o = write_original(q, Headers + "\r\n" + Body);
    auto in = failure_input(o);
    in.envid.clear();
    in.recipients[0].orcpt.clear();
    in.recipients[0].remote_mta.clear();
    in.recipients[0].diagnostic.clear();
    auto d = parse_dsn(compose(in, o));
    auto blocks = report_blocks(d.parts[1].body);
    REQUIRE(blocks.size() == 2);
    CHECK_FALSE(report_blocks(d.parts[1].body)[0].empty());
    for (const char* f : {"original-envelope-id"}) CHECK(get(blocks[0], f).empty());
    for (const char* f : {"original-recipient", "remote-mta", "diagnostic-code"}) {
        INFO(f);
        CHECK(get(blocks[1], f).empty());
    }
    CHECK(get(blocks[1], "final-recipient") == "rfc822; nobody@example.net");
}

TEST_CASE("bounce: RET=HDRS returns the header section only") {
    BounceQueue q;
    auto o = write_original(q, Headers + "\r\n" + Body, "HDRS");
    auto in = failure_input(o);
    in.ret = "HDRS";
    auto d = parse_dsn(compose(in, o));
    CHECK(d.parts[2].get("content-type") == "text/rfc822-headers");
    CHECK(d.parts[2].get("content-description") == "Undelivered Message Headers");
    CHECK(d.parts[2].body == Headers);
    CHECK(d.parts[0].body.find("headers of your message") != std::string::npos);
}

TEST_CASE("bounce: bounce_size_limit: the whole original at the limit, headers only above it") {
    BounceQueue q;
    std::string content = Headers + "\r\n" + Body;
    auto o = write_original(q, content);
    auto in = failure_input(o);
    in.bounce_size_limit = content.size();
    auto d = parse_dsn(compose(in, o));
    CHECK(d.parts[2].get("content-type") == "message/rfc822");
    CHECK(d.parts[2].body == content);
    in.bounce_size_limit = content.size() - 1;
    d = parse_dsn(compose(in, o));
    CHECK(d.parts[2].get("content-type") == "text/rfc822-headers");
    CHECK(d.parts[2].body == Headers);
}

TEST_CASE("bounce: a header section longer than bounce_size_limit is cut at a line end") {
    BounceQueue q;
    std::string h;
    for (int i = 0; h.size() < 5000; ++i) h += "X-Line-" + std::to_string(i) + ": " + std::string(60, 'v') + "\r\n";
    auto o = write_original(q, h + "\r\n" + Body);
    auto in = failure_input(o);
    in.bounce_size_limit = 1000;
    auto d = parse_dsn(compose(in, o));
    CHECK(d.parts[2].get("content-type") == "text/rfc822-headers");
    const std::string& got = d.parts[2].body;
    INFO("got " << got.size() << " bytes");
    CHECK(got.size() <= 1000);
    CHECK(got.size() > 900);
    CHECK(h.compare(0, got.size(), got) == 0);
    CHECK(got.substr(got.size() - 2) == "\r\n");
}

TEST_CASE("bounce: a large original is not read past its headers") {
    BounceQueue q;
    std::string big(3u << 20, 'x');
    for (std::size_t i = 76; i < big.size(); i += 78) big.replace(i, 2, "\r\n");
    auto o = write_original(q, Headers + "\r\n" + big + "\r\n");
    auto in = failure_input(o);
    std::size_t calls = 0, total = 0;
    auto r = qmgr::compose_dsn(in, o.fd.get(), o.content_offset, Later, [&](std::string_view b) -> Result<void> {
        ++calls;
        total += b.size();
        return {};
    });
    REQUIRE(r);
    INFO("wrote " << total << " bytes in " << calls << " calls");
    CHECK(total < 10000);
}

TEST_CASE("bounce: the empty line ends the headers wherever the chunks are cut") {
    // The writer stores content in 64 KiB records; put the CR of the empty
    // line at the last byte of the first record, and then one byte later.
    for (std::size_t shift : {0, 1, 2}) {
        BounceQueue q;
        std::size_t want = queue::ContentChunk - 1 - shift;  // index of the empty line's CR
        std::string h = "Subject: long\r\nX-Fill: x";
        while (h.size() + 80 < want) h += "\r\n\t" + std::string(70, 'f');
        h += "\r\n\t" + std::string(want - h.size() - 5, 'g') + "\r\n";
        REQUIRE(h.size() == want);
        auto o = write_original(q, h + "\r\nbody\r\n", "HDRS");
        auto in = failure_input(o);
        in.ret = "HDRS";
        in.bounce_size_limit = 1 << 20;  // room for all of h
        auto d = parse_dsn(compose(in, o));
        INFO("shift " << shift);
        CHECK(d.parts[2].body.size() == h.size());
        CHECK(d.parts[2].body == h);
    }
}

namespace {

// A queue file whose content is stored one byte per record, so every byte
// of the original reaches the composer as a chunk of its own (the format is
// queue/queue.hpp's; the reader accepts any record size).
Original write_bytewise(const BounceQueue& q, std::string_view content) {
    auto rec = [](char type, std::string_view payload) {
        std::string r(1, type);
        auto n = static_cast<uint32_t>(payload.size());
        for (int shift = 24; shift >= 0; shift -= 8) r += static_cast<char>(n >> shift);
        return r.append(payload);
    };
    std::string id = queue::make_id(Arrival, 4242);
    std::string rcpt = "P"s + '\0' + '\0' + static_cast<char>(18) + "nobody@example.net";
    std::string file = rec('V', "1") + rec('T', std::to_string(Arrival)) + rec('I', id) +
                       rec('S', "sender@example.org") + rec('R', rcpt) + rec('M', "");
    for (char c : content) file += rec('B', std::string_view(&c, 1));
    file += rec('E', "");
    std::string path = q.path + "/incoming/" + id;
    {
        UniqueFd w(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        REQUIRE(w);
        REQUIRE(::write(w.get(), file.data(), file.size()) == static_cast<ssize_t>(file.size()));
    }
    Original o;
    o.id = id;
    o.fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(o.fd);
    auto env = queue::read_envelope(o.fd.get(), &o.content_offset);
    INFO((env ? "" : env.error().text));
    REQUIRE(env);
    return o;
}

}  // namespace

TEST_CASE("bounce: content arriving a byte at a time") {
    BounceQueue q;
    std::string content = Headers + "\r\n" + Body;
    SECTION("whole message") {
        auto o = write_bytewise(q, content);
        auto d = parse_dsn(compose(failure_input(o), o));
        CHECK(d.parts[2].get("content-type") == "message/rfc822");
        CHECK(d.parts[2].body == content);
    }
    SECTION("header section, CRLF") {
        auto o = write_bytewise(q, content);
        auto in = failure_input(o);
        in.ret = "HDRS";
        auto d = parse_dsn(compose(in, o));
        CHECK(d.parts[2].body == Headers);
    }
    SECTION("header section, bare LF") {
        auto o = write_bytewise(q, "Subject: a\nFrom: b\n\nbody\n");
        auto in = failure_input(o);
        in.ret = "HDRS";
        std::string text = compose(in, o);
        // The original's bare LFs are its own; only the header section comes back.
        CHECK(text.find("Subject: a\nFrom: b\n\r\n--") != std::string::npos);
        INFO(text);
        CHECK(text.find("body\\n") == std::string::npos);
    }
    SECTION("a boundary split over many chunks is found") {
        auto probe = write_original(q, content);
        auto in = failure_input(probe);
        auto plan = qmgr::plan_dsn(in, probe.fd.get(), probe.content_offset, Later);
        REQUIRE(plan);
        auto o = write_bytewise(q, content + "--" + plan->boundary + "\r\n");
        auto plan2 = qmgr::plan_dsn(in, o.fd.get(), o.content_offset, Later);
        REQUIRE(plan2);
        CHECK(plan2->boundary != plan->boundary);
    }
    SECTION("an over-long line is noticed") {
        auto o = write_bytewise(q, Headers + "\r\n" + std::string(999, 'a') + "\r\n");
        auto d = parse_dsn(compose(failure_input(o), o));
        CHECK(d.parts[2].get("content-type") == "text/rfc822-headers");
    }
}

TEST_CASE("bounce: originals without headers or without a body") {
    BounceQueue q;
    SECTION("no header section") {
        auto o = write_original(q, "\r\nonly a body\r\n", "HDRS");
        auto in = failure_input(o);
        in.ret = "HDRS";
        auto d = parse_dsn(compose(in, o));
        CHECK(d.parts[2].body.empty());
    }
    SECTION("no body, no final CRLF") {
        auto o = write_original(q, "Subject: x");
        auto in = failure_input(o);
        auto d = parse_dsn(compose(in, o));
        CHECK(d.parts[2].body == "Subject: x\r\n");  // a CRLF is added before the delimiter
    }
}

TEST_CASE("bounce: the boundary never occurs in the returned content") {
    BounceQueue q;
    auto probe = write_original(q, Headers + "\r\n" + Body);
    auto in = failure_input(probe);
    auto plan = qmgr::plan_dsn(in, probe.fd.get(), probe.content_offset, Later);
    REQUIRE(plan);
    std::string first = plan->boundary;
    CHECK(first.find(probe.id) != std::string::npos);
    // An original quoting exactly that boundary (a previous bounce, say)
    // with the same queue ID and time, so the first choice is taken.
    auto o = write_original(q, Headers + "\r\n" + Body + "--" + first + "\r\n" + "--" + first + "--\r\n");
    in.queue_id = probe.id;
    auto plan2 = qmgr::plan_dsn(in, o.fd.get(), o.content_offset, Later);
    REQUIRE(plan2);
    CHECK(plan2->boundary != first);
    auto d = parse_dsn(compose(in, o));
    CHECK(d.boundary != first);
    CHECK(d.parts[2].get("content-type") == "message/rfc822");
    CHECK(d.parts[2].body.find(first) != std::string::npos);

    // Nor in the reasons quoted in the first two parts.
    auto in2 = failure_input(probe);
    in2.recipients[0].reason = "remote said --" + first + "--";
    auto plan3 = qmgr::plan_dsn(in2, probe.fd.get(), probe.content_offset, Later);
    REQUIRE(plan3);
    CHECK(plan3->boundary != first);
}

TEST_CASE("bounce: 8-bit bodies and UTF-8 headers are labelled, not re-encoded") {
    BounceQueue q;
    SECTION("8-bit body") {
        std::string content = Headers + "\r\ncaf\xc3\xa9 cr\xc3\xa8me\r\n";
        auto o = write_original(q, content);
        auto in = failure_input(o);
        auto plan = qmgr::plan_dsn(in, o.fd.get(), o.content_offset, Later);
        REQUIRE(plan);
        CHECK(plan->eight_bit);
        CHECK_FALSE(plan->utf8);
        auto d = parse_dsn(compose(in, o));
        CHECK(d.top.get("content-transfer-encoding") == "8bit");
        CHECK(d.parts[2].get("content-type") == "message/rfc822");
        CHECK(d.parts[2].get("content-transfer-encoding") == "8bit");
        CHECK(d.parts[2].body == content);
        CHECK_FALSE(d.parts[0].has("content-transfer-encoding"));
    }
    SECTION("UTF-8 header: message/global") {
        std::string content = "Subject: caf\xc3\xa9\r\n\r\nbody\r\n";
        auto o = write_original(q, content);
        auto in = failure_input(o);
        auto plan = qmgr::plan_dsn(in, o.fd.get(), o.content_offset, Later);
        REQUIRE(plan);
        CHECK(plan->utf8);
        auto d = parse_dsn(compose(in, o));
        CHECK(d.parts[2].get("content-type") == "message/global");
        CHECK(d.parts[2].body == content);
    }
    SECTION("UTF-8 recipient: global delivery status") {
        auto o = write_original(q, Headers + "\r\n" + Body);
        auto in = failure_input(o);
        in.recipients[0].address = "j\xc3\xb6rg@example.net";
        auto d = parse_dsn(compose(in, o));
        CHECK(util::to_lower(d.top.get("content-type")).find("report-type=global-delivery-status") != std::string::npos);
        CHECK(d.parts[1].get("content-type") == "message/global-delivery-status");
        auto blocks = report_blocks(d.parts[1].body);
        REQUIRE(blocks.size() == 2);
        CHECK(get(blocks[1], "final-recipient") == "utf-8; j\xc3\xb6rg@example.net");
        CHECK(util::starts_with_icase(d.parts[0].get("content-type"), "text/plain; charset=utf-8"));
    }
}

TEST_CASE("bounce: an original unfit to be carried as a message returns its headers") {
    BounceQueue q;
    SECTION("line over 998 bytes") {
        auto o = write_original(q, Headers + "\r\n" + std::string(999, 'a') + "\r\n");
        auto d = parse_dsn(compose(failure_input(o), o));
        CHECK(d.parts[2].get("content-type") == "text/rfc822-headers");
        CHECK(d.parts[2].body == Headers);
    }
    SECTION("line of exactly 998 bytes is fine") {
        auto o = write_original(q, Headers + "\r\n" + std::string(998, 'a') + "\r\n");
        auto d = parse_dsn(compose(failure_input(o), o));
        CHECK(d.parts[2].get("content-type") == "message/rfc822");
    }
    SECTION("NUL byte") {
        auto o = write_original(q, Headers + "\r\nnul \0 here\r\n"s);
        auto d = parse_dsn(compose(failure_input(o), o));
        CHECK(d.parts[2].get("content-type") == "text/rfc822-headers");
    }
}

TEST_CASE("bounce: delay warning and success notice") {
    BounceQueue q;
    auto o = write_original(q, Headers + "\r\n" + Body);
    auto in = failure_input(o);
    in.kind = qmgr::DsnKind::Delay;
    in.recipients[0].dsn = "4.4.1";
    in.recipients[0].reason = "connect to in.example.net[192.0.2.7]:25: Connection refused";
    in.recipients[0].diagnostic.clear();
    in.delay_text = "4 hours";
    in.retry_until_us = Arrival + 5 * 86400 * int64_t{1000000};
    auto d = parse_dsn(compose(in, o));
    CHECK(d.top.get("subject") == "Delayed Mail (still being retried)");
    CHECK(d.parts[0].body.find("warning only") != std::string::npos);
    CHECK(d.parts[0].body.find("4 hours") != std::string::npos);
    auto blocks = report_blocks(d.parts[1].body);
    REQUIRE(blocks.size() == 2);
    CHECK(get(blocks[1], "action") == "delayed");
    CHECK(get(blocks[1], "status") == "4.4.1");
    CHECK(get(blocks[1], "will-retry-until").find("2023") != std::string::npos);
    CHECK(d.parts[2].get("content-type") == "text/rfc822-headers");
    CHECK(d.parts[2].body == Headers);

    in.kind = qmgr::DsnKind::Success;
    in.recipients[0].dsn = "2.0.0";
    in.recipients[0].reason = "delivered to maildir";
    d = parse_dsn(compose(in, o));
    CHECK(d.top.get("subject") == "Successful Mail Delivery Report");
    blocks = report_blocks(d.parts[1].body);
    CHECK(get(blocks[1], "action") == "delivered");
    CHECK(get(blocks[1], "status") == "2.0.0");
    CHECK(d.parts[2].get("content-type") == "text/rfc822-headers");
}

TEST_CASE("bounce: values from the network cannot add fields or lines") {
    BounceQueue q;
    auto o = write_original(q, Headers + "\r\n" + Body);
    auto in = failure_input(o);
    in.to = "sender@example.org\r\nBcc: victim@example.com";
    in.envid = "E\r\nX-Injected: 1";
    in.recipients[0].reason = "bad\r\nX-Injected: 2";
    in.recipients[0].diagnostic = "smtp; 550\nX-Injected: 3";
    in.recipients[0].dsn = "5.1.1\r\nX-Injected: 4";
    std::string text = compose(in, o);
    CHECK(text.find("\nBcc:") == std::string::npos);
    CHECK(text.find("\nX-Injected") == std::string::npos);
    auto d = parse_dsn(text);
    CHECK_FALSE(d.top.has("bcc"));
    auto blocks = report_blocks(d.parts[1].body);
    REQUIRE(blocks.size() == 2);
    CHECK(get(blocks[1], "status") == "5.0.0");  // malformed code: the generic one
}

TEST_CASE("bounce: long reasons are folded, never longer than 998 bytes a line") {
    BounceQueue q;
    auto o = write_original(q, Headers + "\r\n" + Body);
    auto in = failure_input(o);
    std::string words;
    for (int i = 0; i < 200; ++i) words += "word" + std::to_string(i) + " ";
    in.recipients[0].diagnostic = "smtp; 550 " + words + std::string(2500, 'z');
    in.recipients[0].reason = words;
    auto d = parse_dsn(compose(in, o));  // checks the line lengths
    auto blocks = report_blocks(d.parts[1].body);
    REQUIRE(blocks.size() == 2);
    // Folding at spaces keeps the words; only the 2500-byte word is split.
    CHECK(get(blocks[1], "diagnostic-code").find("word0 word1 word2") != std::string::npos);
}

TEST_CASE("bounce: errors from the sink and from the queue file are returned") {
    BounceQueue q;
    auto o = write_original(q, Headers + "\r\n" + Body);
    auto in = failure_input(o);
    int calls = 0;
    auto r = qmgr::compose_dsn(in, o.fd.get(), o.content_offset, Later, [&](std::string_view) -> Result<void> {
        if (++calls == 2) return Error::temp("disk full");
        return {};
    });
    REQUIRE_FALSE(r);
    CHECK(r.error().text == "disk full");
    // A content offset in the middle of nowhere: the reader says corrupt.
    auto bad = qmgr::compose_dsn(in, o.fd.get(), o.content_offset + 3, Later,
                                 [](std::string_view) -> Result<void> { return {}; });
    REQUIRE_FALSE(bad);
    CHECK(bad.error().kind == Error::Kind::Perm);
}

// ---- End of the DSN composition tests.
