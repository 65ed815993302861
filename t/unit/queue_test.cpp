// Unit tests for lib/queue: IDs, the queue file format (round trips, truncation, garbage), status updates, housekeeping, CommitPool, defer logs.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "event/event.hpp"
#include "fs/fs.hpp"
#include "queue/queue.hpp"

using namespace postern;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

constexpr int64_t Now = 1'700'000'000'123'456;  // an arrival time in 2023, in microseconds

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-queue-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
        auto r = queue::make_dirs(path);
        INFO("make_dirs: " << (r ? "" : r.error().text));
        REQUIRE(r);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

std::vector<std::string> list(const std::string& dir) {
    std::vector<std::string> names;
    for (auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
}

std::string slurp(const std::string& path) {
    auto r = fs::read_file(path, 64 << 20);
    INFO("read " << path << ": " << (r ? "" : r.error().text));
    REQUIRE(r);
    return *r;
}

// An in-memory file holding bytes, like the fuzz target uses.
UniqueFd memfd_with(std::string_view bytes) {
    UniqueFd fd(::memfd_create("queue-test", MFD_CLOEXEC));
    REQUIRE(fd);
    REQUIRE(fs::write_all(fd.get(), bytes));
    return fd;
}

std::string rec(char type, std::string_view payload) {
    std::string r(1, type);
    auto n = static_cast<uint32_t>(payload.size());
    for (int shift = 24; shift >= 0; shift -= 8) r += static_cast<char>(n >> shift);
    r += payload;
    return r;
}

std::string rcpt(char status, unsigned notify, const std::string& addr, const std::string& orcpt = "") {
    std::string p;
    p += status;
    p += static_cast<char>(notify);
    p += static_cast<char>(addr.size() >> 8);
    p += static_cast<char>(addr.size() & 0xff);
    return p + addr + orcpt;
}

const std::string GoodId = queue::make_id(static_cast<uint64_t>(Now), 4242);

// The smallest well-formed file, as records, so tests can vary one piece.
std::string minimal_file(const std::string& middle = "", const std::string& content = rec('B', "hi\r\n")) {
    return rec('V', "1") + rec('T', std::to_string(Now)) + rec('I', GoodId) + rec('S', "a@b") + middle +
           rec('R', rcpt('P', 0, "c@d")) + rec('M', "") + content + rec('E', "");
}

queue::Envelope full_envelope() {
    queue::Envelope e;
    e.client_name = "mail.example.org";
    e.client_addr = "192.0.2.1";
    e.helo = "mail.example.org";
    e.protocol = "ESMTPSA";
    e.sasl_method = "PLAIN";
    e.sasl_username = "alice";
    e.origin = "smtpd";
    e.sender = "alice@example.org";
    e.envid = "QQ314159";
    e.ret = "HDRS";
    e.body = "8BITMIME";
    e.smtputf8 = true;
    e.recipients = {
        {"bob@example.com", "rfc822;bob@example.com", queue::NotifySuccess | queue::NotifyFailure},
        {"carol@example.net", "", queue::NotifyNever},
        {"dave@example.com", "", 0, queue::StatusDone},
        {"erin@example.com", "utf-8;erin@example.com", queue::NotifyDelay, queue::StatusFailed},
    };
    return e;
}

std::string binary_content(std::size_t n) {
    std::string s(n, '\0');
    std::mt19937 rng(7);
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
}

// Writes and commits a message in one go; returns its ID.
std::string commit_message(const std::string& dir, const queue::Envelope& env, std::string_view content,
                           std::size_t piece = 4096, int64_t now = Now) {
    auto w = queue::Writer::create(dir, now);
    INFO("create: " << (w ? "" : w.error().text));
    REQUIRE(w);
    REQUIRE(w->write_envelope(env));
    for (std::size_t i = 0; i < content.size(); i += piece) REQUIRE(w->append(content.substr(i, piece)));
    REQUIRE(w->content_size() == content.size());
    REQUIRE(w->finish());
    auto c = w->commit();
    INFO("commit: " << (c ? "" : c.error().text));
    REQUIRE(c);
    return w->id();
}

struct Read {
    Result<queue::Envelope> env = Error::temp("not read");
    Result<void> content = Error::temp("not read");
    std::string bytes;
    std::vector<std::size_t> chunks;
};

Read read_all(int fd) {
    Read out;
    uint64_t off = 0;
    out.env = queue::read_envelope(fd, &off);
    if (!out.env) return out;
    out.content = queue::read_content(fd, off, [&](std::string_view chunk) -> Result<void> {
        out.bytes += chunk;
        out.chunks.push_back(chunk.size());
        return {};
    });
    return out;
}

std::string error_of(const Read& r) {
    if (!r.env) return r.env.error().text;
    if (!r.content) return r.content.error().text;
    return "";
}

bool is_corrupt(const Error& e) {
    return e.kind == Error::Kind::Perm && e.text.rfind("corrupt queue file: ", 0) == 0 &&
           e.text.find(" at offset ") != std::string::npos;
}

}  // namespace

TEST_CASE("make_id: fixed-width time, then the inode without leading zeros") {
    struct Case {
        uint64_t time_us, inode;
        std::string want;
    } cases[] = {
        {0, 0, "000000000000"},
        {1, 31, "00000000001_"},
        {32, 32, "0000000001010"},
        {31, 1024, "0000000000_100"},
        {(uint64_t{1} << 55) - 1, 5, "___________5"},
        {0, UINT64_MAX, "00000000000H____________"},
        {0x123456789ABCDEull, 0xB, "4KNBTX9PH6ZC"},
    };
    for (const auto& c : cases) {
        std::string got = queue::make_id(c.time_us, c.inode);
        INFO("make_id(" << c.time_us << ", " << c.inode << "): got " << got << ", want " << c.want);
        CHECK(got == c.want);
        CHECK(queue::valid_id(got));
        auto t = queue::id_time_us(got);
        REQUIRE(t);
        INFO("id_time_us: got " << *t << ", want " << c.time_us);
        CHECK(*t == c.time_us);
    }
}

TEST_CASE("make_id: IDs sort by arrival time whatever the inode") {
    std::mt19937_64 rng(1);
    std::vector<uint64_t> times = {0, 1, 31, 32, 33, 1023, 1024, 1025, uint64_t(Now), uint64_t(Now) + 1};
    for (int i = 0; i < 200; ++i) times.push_back(rng() >> 9);  // < 2^55
    std::sort(times.begin(), times.end());
    times.erase(std::unique(times.begin(), times.end()), times.end());
    for (std::size_t i = 1; i < times.size(); ++i) {
        std::string a = queue::make_id(times[i - 1], rng());
        std::string b = queue::make_id(times[i], rng() >> (rng() % 64));
        INFO("got " << a << " >= " << b << ", want " << a << " < " << b);
        CHECK(a < b);
    }
}

TEST_CASE("valid_id table") {
    struct Case {
        std::string id;
        bool want;
    } cases[] = {
        {"000000000000", true},
        {"1KX3BCDFGHJ5", true},
        {"00000000000H____________", true},   // largest 64-bit inode
        {"00000000000J000000000000", false},  // inode past 64 bits
        {"00000000000_____________", false},
        {"0000000000012345678912345", false},  // 25 characters
        {"", false},
        {"00000000000", false},    // time only
        {"000000000000Z", false},  // leading zero in the inode
        {"0000000000A1", false},   // vowel
        {"0000000000E1", false},
        {"0000000000b1", false},   // lower case
        {"00000000/001", false},
        {"00000000.001", false},
        {"../../../etc/passwd", false},
        {std::string("00000000000\0" "1", 13), false},
    };
    for (const auto& c : cases) {
        INFO("valid_id(\"" << c.id << "\"): got " << !c.want << ", want " << c.want);
        CHECK(queue::valid_id(c.id) == c.want);
        CHECK(queue::id_time_us(c.id).has_value() == c.want);
    }
}

TEST_CASE("ContentReader: the same chunks as read_content, and the same refusals") {
    TempDir dir;
    queue::Envelope env = full_envelope();
    const std::string content = binary_content(3 * 64 * 1024 + 17);
    std::string id = commit_message(dir.path, env, content, 5000);
    const std::string file = slurp(dir / "incoming/" + id);
    UniqueFd fd = memfd_with(file);
    uint64_t off = 0;
    REQUIRE(queue::read_envelope(fd.get(), &off));
    auto r = queue::ContentReader::open(fd.get(), off);
    REQUIRE(r);
    CHECK(r->size_estimate() >= content.size());
    CHECK(r->size_estimate() < content.size() + 64);
    std::string got;
    int chunks = 0;
    for (;;) {
        auto c = r->next();
        REQUIRE(c);
        if (!*c) break;
        got += **c;
        ++chunks;
    }
    CHECK(got == content);
    CHECK(chunks == 4);
    auto again = r->next();  // stays at the end
    REQUIRE(again);
    CHECK_FALSE(*again);
    CHECK_FALSE(queue::ContentReader::open(fd.get(), file.size() + 1));
    for (std::size_t n = off; n < file.size(); n += 997) {
        UniqueFd cut = memfd_with(std::string_view(file).substr(0, n));
        auto cr = queue::ContentReader::open(cut.get(), off);
        REQUIRE(cr);
        Result<std::optional<std::string>> c = std::optional<std::string>();
        for (int i = 0; i < 10; ++i) {
            c = cr->next();
            if (!c || !*c) break;
        }
        INFO("prefix of " << n << " bytes");
        REQUIRE_FALSE(c);
        CHECK(is_corrupt(c.error()));
    }
}

TEST_CASE("Writer: round trip of every envelope field and binary content") {
    TempDir dir;
    struct Case {
        std::size_t size, piece;
        std::size_t want_chunks;
    } cases[] = {
        {0, 1, 0},
        {1, 1, 1},
        {300, 1, 1},                             // byte at a time
        {64 * 1024, 4096, 1},                    // exactly one chunk
        {64 * 1024 + 1, 64 * 1024 + 1, 2},       // one more byte
        {3 * 64 * 1024 + 17, 5000, 4},           // several chunks, pieces across chunk borders
        {5 * 64 * 1024, 200 * 1024, 5},          // large pieces, no copy
    };
    for (const auto& c : cases) {
        INFO("content size " << c.size << " in pieces of " << c.piece);
        queue::Envelope in = full_envelope();
        std::string content = binary_content(c.size);
        std::string id = commit_message(dir.path, in, content, c.piece);
        CHECK(queue::valid_id(id));
        CHECK(queue::id_time_us(id) == uint64_t(Now));

        UniqueFd fd(::open((dir / "incoming/" + id).c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
        struct stat st {};
        REQUIRE(::fstat(fd.get(), &st) == 0);
        INFO("mode: got " << std::oct << (st.st_mode & 07777) << ", want 600");
        CHECK((st.st_mode & 07777) == 0600);
        Read got = read_all(fd.get());
        INFO("read: " << error_of(got));
        REQUIRE(got.env);
        REQUIRE(got.content);
        const queue::Envelope& out = *got.env;
        CHECK(out.arrival_us == Now);
        CHECK(out.queue_id == id);
        CHECK(out.client_name == in.client_name);
        CHECK(out.client_addr == in.client_addr);
        CHECK(out.helo == in.helo);
        CHECK(out.protocol == in.protocol);
        CHECK(out.sasl_method == in.sasl_method);
        CHECK(out.sasl_username == in.sasl_username);
        CHECK(out.origin == in.origin);
        CHECK(out.sender == in.sender);
        CHECK(out.envid == in.envid);
        CHECK(out.ret == in.ret);
        CHECK(out.body == in.body);
        CHECK(out.smtputf8);
        REQUIRE(out.recipients.size() == in.recipients.size());
        for (std::size_t i = 0; i < in.recipients.size(); ++i) {
            INFO("recipient " << i << ": got " << out.recipients[i].address << ", want " << in.recipients[i].address);
            CHECK(out.recipients[i].address == in.recipients[i].address);
            CHECK(out.recipients[i].orcpt == in.recipients[i].orcpt);
            CHECK(out.recipients[i].notify == in.recipients[i].notify);
            CHECK(out.recipients[i].status == in.recipients[i].status);
            CHECK(out.recipients[i].status_offset > 0);
        }
        INFO("content: got " << got.bytes.size() << " bytes, want " << content.size());
        CHECK(got.bytes == content);
        INFO("chunks: got " << got.chunks.size() << ", want " << c.want_chunks);
        CHECK(got.chunks.size() == c.want_chunks);
        for (auto n : got.chunks) CHECK(n <= queue::ContentChunk);
    }
    std::vector<std::string> names = list(dir / "incoming");
    INFO("incoming holds " << names.size() << " files, want " << std::size(cases));
    CHECK(names.size() == std::size(cases));
    for (const auto& n : names) CHECK(queue::valid_id(n));
}

TEST_CASE("Writer: null sender and no optional fields") {
    TempDir dir;
    queue::Envelope in;
    in.recipients = {{"postmaster", ""}};
    std::string id = commit_message(dir.path, in, "Subject: x\r\n\r\nhi\r\n");
    UniqueFd fd(::open((dir / "incoming/" + id).c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd);
    Read got = read_all(fd.get());
    INFO("read: " << error_of(got));
    REQUIRE(got.env);
    CHECK(got.env->sender.empty());
    CHECK(got.env->client_name.empty());
    CHECK(got.env->ret.empty());
    CHECK(got.env->body.empty());
    CHECK_FALSE(got.env->smtputf8);
    REQUIRE(got.env->recipients.size() == 1);
    CHECK(got.env->recipients[0].address == "postmaster");
    CHECK(got.bytes == "Subject: x\r\n\r\nhi\r\n");
}

TEST_CASE("Writer: envelope values that cannot be stored are refused") {
    TempDir dir;
    struct Case {
        const char* what;
        void (*change)(queue::Envelope&);
    } cases[] = {
        {"bad RET", [](queue::Envelope& e) { e.ret = "SOME"; }},
        {"bad BODY", [](queue::Envelope& e) { e.body = "9BIT"; }},
        {"empty recipient", [](queue::Envelope& e) { e.recipients[0].address.clear(); }},
        {"long recipient", [](queue::Envelope& e) { e.recipients[0].address.assign(70000, 'x'); }},
        {"bad status", [](queue::Envelope& e) { e.recipients[0].status = 'X'; }},
        {"NOTIFY=NEVER,SUCCESS", [](queue::Envelope& e) { e.recipients[0].notify = 3; }},
        {"NOTIFY bit 16", [](queue::Envelope& e) { e.recipients[0].notify = 16; }},
    };
    for (const auto& c : cases) {
        INFO(c.what << ": got success, want Error::perm");
        queue::Envelope env = full_envelope();
        c.change(env);
        auto w = queue::Writer::create(dir.path, Now);
        REQUIRE(w);
        auto r = w->write_envelope(env);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Perm);
    }
    INFO("temp files left: got " << list(dir / "incoming").size() << ", want 0");
    CHECK(list(dir / "incoming").empty());
}

TEST_CASE("read_envelope: malformed files are corrupt, with what and where") {
    struct Case {
        const char* what;
        std::string file;
        std::string want;  // substring of the error text
    } cases[] = {
        {"empty file", "", "missing version record at offset 0"},
        {"no version first", rec('T', "1") + minimal_file(), "missing version record at offset 0"},
        {"version 2", rec('V', "2") + minimal_file().substr(6), "unsupported version"},
        {"unknown type", minimal_file(rec('X', "")), "unknown record type 'X'"},
        {"unknown binary type", minimal_file(rec('\x01', "")), "unknown record type 0x01"},
        {"duplicate sender", minimal_file(rec('S', "x@y")), "duplicate record 'S'"},
        {"duplicate version", minimal_file(rec('V', "1")), "duplicate record 'V'"},
        {"missing sender",
         rec('V', "1") + rec('T', "5") + rec('I', GoodId) + rec('M', "") + rec('E', ""),
         "missing record 'S' before message start"},
        {"missing ID", rec('V', "1") + rec('T', "5") + rec('S', "") + rec('M', "") + rec('E', ""),
         "missing record 'I'"},
        {"missing time", rec('V', "1") + rec('I', GoodId) + rec('S', "") + rec('M', "") + rec('E', ""),
         "missing record 'T'"},
        {"missing message start", rec('V', "1") + rec('T', "5") + rec('I', GoodId) + rec('S', ""),
         "missing message start record"},
        {"missing end", minimal_file().substr(0, minimal_file().size() - 5), "missing end record"},
        {"data after end", minimal_file() + rec('B', "x"), "data after end record"},
        {"garbage after end", minimal_file() + "\n", "data after end record"},
        {"content before start", minimal_file(rec('B', "x")), "content record outside message"},
        {"envelope record in message", minimal_file("", rec('R', rcpt('P', 0, "x@y"))),
         "envelope record 'R' in message"},
        {"second message start", minimal_file("", rec('M', "")), "envelope record 'M' in message"},
        {"non-empty end", minimal_file().substr(0, minimal_file().size() - 5) + rec('E', "x"),
         "non-empty end record"},
        {"bad time", minimal_file().replace(6, 5 + std::to_string(Now).size(), rec('T', "12x")), "bad arrival time"},
        {"duplicate ID", minimal_file(rec('I', GoodId)), "duplicate record 'I'"},
        {"bad ID", rec('V', "1") + rec('T', "5") + rec('I', "abc") + rec('S', "") + rec('M', "") + rec('E', ""),
         "bad queue ID"},
        {"bad RET", minimal_file(rec('r', "FOO")), "bad RET value"},
        {"empty BODY", minimal_file(rec('b', "")), "bad BODY value"},
        {"bad SMTPUTF8", minimal_file(rec('U', "yes")), "bad SMTPUTF8 record"},
        {"short recipient", minimal_file(rec('R', "P\0\0"s)), "short recipient record"},
        {"recipient status", minimal_file(rec('R', rcpt('X', 0, "x@y"))), "bad recipient status"},
        {"recipient NOTIFY", minimal_file(rec('R', rcpt('P', 0x10, "x@y"))), "bad recipient NOTIFY flags"},
        {"NOTIFY never+delay", minimal_file(rec('R', rcpt('P', 9, "x@y"))), "bad recipient NOTIFY flags"},
        {"address past payload", minimal_file(rec('R', rcpt('P', 0, "x@y").substr(0, 6))),
         "bad recipient address length"},
        {"empty address", minimal_file(rec('R', rcpt('P', 0, ""))), "bad recipient address length"},
        {"huge length", rec('V', "1") + "S\xff\xff\xff\xff" "abc", "record 'S' too long"},
        {"length past end", rec('V', "1") + "S\0\0\1\0abc"s, "record 'S' length past end of file"},
        {"truncated header", rec('V', "1") + "S\0\0"s, "truncated record header"},
    };
    for (const auto& c : cases) {
        UniqueFd fd = memfd_with(c.file);
        Read got = read_all(fd.get());
        INFO(c.what << ": got \"" << error_of(got) << "\", want \"" << c.want << "\"");
        REQUIRE_FALSE(got.env);
        CHECK(is_corrupt(got.env.error()));
        CHECK(got.env.error().text.find(c.want) != std::string::npos);
    }
    // And the base file itself is fine, so each case fails for its own reason.
    UniqueFd fd = memfd_with(minimal_file());
    Read got = read_all(fd.get());
    INFO("minimal file: got \"" << error_of(got) << "\", want success");
    CHECK(got.env);
    CHECK(got.content);
    CHECK(got.bytes == "hi\r\n");
}

TEST_CASE("read_envelope: a record over 64 MiB is refused before anything is allocated") {
    // A sparse 70 MiB file whose record claims 65 MiB: inside the file, over the cap.
    std::string head = rec('V', "1") + "S";
    const uint32_t len = 65u << 20;
    for (int shift = 24; shift >= 0; shift -= 8) head += static_cast<char>(len >> shift);
    UniqueFd fd = memfd_with(head);
    REQUIRE(::ftruncate(fd.get(), 70 << 20) == 0);
    auto r = queue::read_envelope(fd.get());
    INFO("got \"" << (r ? "success" : r.error().text) << "\", want record too long");
    REQUIRE_FALSE(r);
    CHECK(r.error().text.find("record 'S' too long at offset 6") != std::string::npos);
}

TEST_CASE("read_envelope: every truncation of a committed file is corrupt, the whole file is not") {
    TempDir dir;
    queue::Envelope env = full_envelope();
    std::string id = commit_message(dir.path, env, "Subject: t\r\n\r\nbody\r\n");
    const std::string file = slurp(dir / "incoming/" + id);
    for (std::size_t n = 0; n < file.size(); ++n) {
        UniqueFd fd = memfd_with(std::string_view(file).substr(0, n));
        uint64_t off = 0;
        auto r = queue::read_envelope(fd.get(), &off);
        INFO("prefix of " << n << " of " << file.size() << " bytes: got " << (r ? "success" : r.error().text)
                          << ", want corrupt");
        REQUIRE_FALSE(r);
        CHECK(is_corrupt(r.error()));
    }
    // read_content alone must not accept a prefix either (content starts after 'M').
    uint64_t content_off = 0;
    {
        UniqueFd fd = memfd_with(file);
        Read got = read_all(fd.get());
        INFO("whole file: got \"" << error_of(got) << "\", want success");
        REQUIRE(got.env);
        REQUIRE(got.content);
        REQUIRE(queue::read_envelope(fd.get(), &content_off));
    }
    for (std::size_t n = content_off; n < file.size(); ++n) {
        UniqueFd fd = memfd_with(std::string_view(file).substr(0, n));
        auto r = queue::read_content(fd.get(), content_off, [](std::string_view) -> Result<void> { return {}; });
        INFO("read_content on a prefix of " << n << " bytes: got " << (r ? "success" : r.error().text)
                                            << ", want corrupt");
        REQUIRE_FALSE(r);
        CHECK(is_corrupt(r.error()));
    }
}

TEST_CASE("read_envelope: garbage never crashes and is rejected") {
    std::mt19937 rng(12345);
    for (int i = 0; i < 2000; ++i) {
        std::string junk(rng() % 300, '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        // Half of them start like a queue file, to get past the first check.
        if (i % 2 == 1) junk = rec('V', "1") + junk;
        UniqueFd fd = memfd_with(junk);
        Read got = read_all(fd.get());
        INFO("input " << i << ": got success, want corrupt");
        REQUIRE_FALSE(got.env);
        CHECK(got.env.error().kind == Error::Kind::Perm);
    }
    // Single-byte mutations of a valid file: any outcome but a crash; an accepted
    // file must also have readable content.
    const std::string good = minimal_file(rec('c', "client") + rec('R', rcpt('D', 2, "x@y", "rfc822;x@y")));
    for (std::size_t pos = 0; pos < good.size(); ++pos) {
        for (int v : {0x00, 0x01, 0x7f, 0x80, 0xff, int{'E'}, int{'B'}, int{'R'}}) {
            std::string bad = good;
            bad[pos] = static_cast<char>(v);
            UniqueFd fd = memfd_with(bad);
            Read got = read_all(fd.get());
            if (got.env) {
                INFO("mutation at " << pos << " to " << v << ": envelope ok, content got " << error_of(got));
                CHECK(got.content);
            } else {
                CHECK(got.env.error().kind == Error::Kind::Perm);
            }
        }
    }
}

TEST_CASE("set_recipient_status: rewrites in place and refuses a wrong offset") {
    TempDir dir;
    std::string id = commit_message(dir.path, full_envelope(), "x\r\n");
    const std::string path = dir / "incoming/" + id;
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(fd);
    auto env = queue::read_envelope(fd.get());
    REQUIRE(env);
    const std::string before = slurp(path);

    queue::Recipient r0 = env->recipients[0];
    struct Bad {
        const char* what;
        queue::Recipient r;
        char status;
    } bad[] = {
        {"offset + 1", {r0.address, "", 0, 'P', r0.status_offset + 1}, 'D'},
        {"offset - 1", {r0.address, "", 0, 'P', r0.status_offset - 1}, 'D'},
        {"offset 0", {r0.address, "", 0, 'P', 0}, 'D'},
        {"offset past end", {r0.address, "", 0, 'P', before.size() + 10}, 'D'},
        {"offset far past end", {r0.address, "", 0, 'P', UINT64_MAX}, 'D'},
        {"other address", {"mallory@example.com", "", 0, 'P', r0.status_offset}, 'D'},
        {"other recipient's offset", {r0.address, "", 0, 'P', env->recipients[1].status_offset}, 'D'},
        {"bad new status", r0, 'X'},
    };
    for (const auto& b : bad) {
        auto r = queue::set_recipient_status(fd.get(), b.r, b.status);
        INFO(b.what << ": got " << (r ? "success" : r.error().text) << ", want an error");
        CHECK_FALSE(r);
    }
    INFO("file changed by refused updates: got changed, want unchanged");
    REQUIRE(slurp(path) == before);

    REQUIRE(queue::set_recipient_status(fd.get(), env->recipients[0], 'D'));
    REQUIRE(queue::set_recipient_status(fd.get(), env->recipients[1], 'F'));
    REQUIRE(queue::set_recipient_status(fd.get(), env->recipients[3], 'P'));
    auto again = queue::read_envelope(fd.get());
    REQUIRE(again);
    const char want[] = {'D', 'F', 'D', 'P'};
    for (std::size_t i = 0; i < 4; ++i) {
        INFO("recipient " << i << ": got " << again->recipients[i].status << ", want " << want[i]);
        CHECK(again->recipients[i].status == want[i]);
    }
    CHECK(slurp(path).size() == before.size());
}

TEST_CASE("Writer: abort, destructor and moves leave no temp file") {
    TempDir dir;
    const std::string incoming = dir / "incoming";
    {
        auto w = queue::Writer::create(dir.path, Now);
        REQUIRE(w);
        REQUIRE(list(incoming).size() == 1);
        CHECK(list(incoming)[0].rfind(".tmp-", 0) == 0);
        w->abort();
        INFO("after abort: got " << list(incoming).size() << " files, want 0");
        CHECK(list(incoming).empty());
        w->abort();  // twice is harmless
    }
    {
        auto w = queue::Writer::create(dir.path, Now);
        REQUIRE(w);
        REQUIRE(w->write_envelope(full_envelope()));
        REQUIRE(w->append("data"));
    }
    INFO("after destructor: got " << list(incoming).size() << " files, want 0");
    CHECK(list(incoming).empty());
    {
        auto w = queue::Writer::create(dir.path, Now);
        REQUIRE(w);
        REQUIRE(w->write_envelope(full_envelope()));
        queue::Writer moved(std::move(*w));
        { queue::Writer gone(std::move(moved)); }
        CHECK(list(incoming).empty());
    }
    {
        auto a = queue::Writer::create(dir.path, Now);
        auto b = queue::Writer::create(dir.path, Now);
        REQUIRE(a);
        REQUIRE(b);
        CHECK(a->id() != b->id());
        REQUIRE(list(incoming).size() == 2);
        *a = std::move(*b);  // a's old file goes; b's stays with a
        CHECK(list(incoming).size() == 1);
        REQUIRE(a->write_envelope(full_envelope()));
        REQUIRE(a->finish());
        REQUIRE(a->commit());
        a->abort();  // no-op after commit
        CHECK(list(incoming) == std::vector<std::string>{a->id()});
    }
}

TEST_CASE("Writer: IDs of one time stamp differ and name the committed file") {
    TempDir dir;
    std::set<std::string> ids;
    for (int i = 0; i < 20; ++i) ids.insert(commit_message(dir.path, full_envelope(), "x"));
    INFO("distinct IDs: got " << ids.size() << ", want 20");
    CHECK(ids.size() == 20);
    auto names = list(dir / "incoming");
    CHECK(std::set<std::string>(names.begin(), names.end()) == ids);
}

TEST_CASE("Writer: a commit failure is an error and leaves nothing queued") {
    TempDir dir;
    auto w = queue::Writer::create(dir.path, Now);
    REQUIRE(w);
    REQUIRE(w->write_envelope(full_envelope()));
    REQUIRE(w->finish());
    std::filesystem::rename(dir / "incoming", dir / "gone");
    auto r = w->commit();
    INFO("commit: got " << (r ? "success" : r.error().text) << ", want a rename error");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Temp);
    CHECK(r.error().text.find("rename") != std::string::npos);
}

TEST_CASE("Writer: a negative clock is an error, not an ID") {
    TempDir dir;
    auto w = queue::Writer::create(dir.path, -1);
    REQUIRE_FALSE(w);
    CHECK(list(dir / "incoming").empty());
}

TEST_CASE("remove_stale_temp_files removes only temp files") {
    TempDir dir;
    std::string id = commit_message(dir.path, full_envelope(), "x");
    for (auto name : {".tmp-1-0", ".tmp-99999-7", ".tmp-"}) REQUIRE(fs::atomic_write(dir / "incoming/" + name, "", 0600));
    REQUIRE(fs::atomic_write(dir / "incoming/.other", "", 0600));
    auto n = queue::remove_stale_temp_files(dir.path);
    INFO("removed: got " << (n ? std::to_string(*n) : n.error().text) << ", want 3");
    REQUIRE(n);
    CHECK(*n == 3);
    CHECK(list(dir / "incoming") == std::vector<std::string>{".other", id});
    auto again = queue::remove_stale_temp_files(dir.path);
    REQUIRE(again);
    CHECK(*again == 0);
    TempDir empty;
    std::filesystem::remove(empty / "incoming");
    CHECK_FALSE(queue::remove_stale_temp_files(empty.path));
}

ino_t inode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_ino;
}

TEST_CASE("retire: recycles an emptied file that the next writer fills, keeping its inode") {
    TempDir dir;
    const std::string old = commit_message(dir.path, full_envelope(), std::string(100000, 'o'));
    REQUIRE(queue::move_to(dir.path, old, queue::Incoming, queue::Active));
    const ino_t ino = inode_of(dir / "active/" + old);
    UniqueFd fd(::open((dir / "active/" + old).c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(fd);
    CHECK(queue::retire(dir.path, queue::Active, old, fd.get(), true) == 0);
    CHECK(list(dir / "active").empty());
    REQUIRE(list(dir / "recycle") == std::vector<std::string>{old});
    CHECK(std::filesystem::file_size(dir / "recycle/" + old) == 0);  // no mail lingers
    CHECK(queue::count_recycled(dir.path) == 1);

    // A second later (an empty recycle/ is not read again sooner), the next
    // message goes into that file: same inode, new ID, only the new bytes.
    const std::string next = commit_message(dir.path, full_envelope(), "new message\r\n", 4096, Now + 2'000'000);
    CHECK(next != old);
    CHECK(list(dir / "recycle").empty());
    CHECK(inode_of(dir / "incoming/" + next) == ino);
    UniqueFd rfd(::open((dir / "incoming/" + next).c_str(), O_RDONLY | O_CLOEXEC));
    auto got = read_all(rfd.get());
    INFO(error_of(got));
    REQUIRE(got.content);
    CHECK(got.bytes == "new message\r\n");
    CHECK(got.env->queue_id == next);
}

TEST_CASE("retire: a file left with its bytes is truncated by the writer") {
    TempDir dir;
    const std::string old = commit_message(dir.path, full_envelope(), std::string(5000, 'x'));
    CHECK(queue::retire(dir.path, queue::Incoming, old, -1, true) == 0);  // no fd: not emptied
    CHECK(std::filesystem::file_size(dir / "recycle/" + old) > 5000);
    const std::string next = commit_message(dir.path, full_envelope(), "y", 4096, Now + 2'000'000);
    UniqueFd rfd(::open((dir / "incoming/" + next).c_str(), O_RDONLY | O_CLOEXEC));
    auto got = read_all(rfd.get());
    INFO(error_of(got));
    REQUIRE(got.content);
    CHECK(got.bytes == "y");
}

TEST_CASE("retire: unlinks without recycling, without recycle/, and reports a missing file") {
    TempDir dir;
    const std::string a = commit_message(dir.path, full_envelope(), "a");
    CHECK(queue::retire(dir.path, queue::Incoming, a, -1, false) == 0);
    CHECK(list(dir / "incoming").empty());
    CHECK(list(dir / "recycle").empty());
    CHECK(queue::retire(dir.path, queue::Incoming, a, -1, true) == ENOENT);
    CHECK(queue::retire(dir.path, queue::Incoming, a, -1, false) == ENOENT);
    std::filesystem::remove(dir / "recycle");
    const std::string b = commit_message(dir.path, full_envelope(), "b");
    CHECK(queue::retire(dir.path, queue::Incoming, b, -1, true) == 0);
    CHECK(list(dir / "incoming").empty());
    CHECK(queue::count_recycled(dir.path) == 0);
    // A writer copes with the missing directory too.
    CHECK_FALSE(commit_message(dir.path, full_envelope(), "c", 4096, Now + 2'000'000).empty());
}

TEST_CASE("Writer: recycle/ entries that are not plain files with one link are not written over") {
    TempDir dir;
    const int64_t t = Now + 50'000'000;  // a time no other test's writer has seen in this process
    // Valid queue ID names, wrong things: a directory, a hard-linked file, a symlink.
    const std::string d = queue::make_id(1, 1), h = queue::make_id(1, 2), s = queue::make_id(1, 3);
    std::filesystem::create_directory(dir / "recycle/" + d);
    REQUIRE(fs::atomic_write(dir / "hold/keep", "precious", 0600));
    REQUIRE(::link((dir / "hold/keep").c_str(), (dir / "recycle/" + h).c_str()) == 0);
    std::filesystem::create_symlink(dir / "hold/keep", dir / "recycle/" + s);
    const std::string id = commit_message(dir.path, full_envelope(), "z", 4096, t);
    CHECK(slurp(dir / "hold/keep") == "precious");
    CHECK(list(dir / "incoming") == std::vector<std::string>{id});
    CHECK(list(dir / "recycle") == std::vector<std::string>{d});  // the extra names went, the directory stayed
}

TEST_CASE("Writer: a recycled file of another user is left alone") {
    TempDir dir;
    const std::string other = queue::make_id(1, 9);
    REQUIRE(fs::atomic_write(dir / "recycle/" + other, "", 0600));
    const uid_t stranger = ::geteuid() == 0 ? 65534 : ::geteuid();
    if (::geteuid() == 0) REQUIRE(::chown((dir / "recycle/" + other).c_str(), stranger, stranger) == 0);
    const std::string id = commit_message(dir.path, full_envelope(), "q", 4096, Now + 90'000'000);
    if (::geteuid() == 0) {
        // root (local re-queueing forwarded mail) never writes into a file the
        // mail owner could have swapped in; the file stays for its owner.
        CHECK(list(dir / "recycle") == std::vector<std::string>{other});
        CHECK(inode_of(dir / "incoming/" + id) != inode_of(dir / "recycle/" + other));
    } else {
        CHECK(list(dir / "recycle").empty());  // our own file: reused
    }
}

TEST_CASE("move_to: between queues, refusing bad IDs and directories") {
    TempDir dir;
    std::string id = commit_message(dir.path, full_envelope(), "x");
    REQUIRE(queue::move_to(dir.path, id, queue::Incoming, queue::Active));
    CHECK(list(dir / "incoming").empty());
    CHECK(list(dir / "active") == std::vector<std::string>{id});
    REQUIRE(queue::move_to(dir.path, id, queue::Active, queue::Corrupt));
    CHECK(list(dir / "corrupt") == std::vector<std::string>{id});

    struct Bad {
        std::string id, from, to;
    } bad[] = {
        {id, "active", "corrupt"},           // not there any more
        {"../x", "corrupt", "active"},
        {id, "corrupt", ".."},
        {id, "../corrupt", "active"},
        {id, "corrupt", "corrupt"},          // would replace itself: refused by NOREPLACE
    };
    for (const auto& b : bad) {
        auto r = queue::move_to(dir.path, b.id, b.from, b.to);
        INFO("move_to(" << b.id << ", " << b.from << ", " << b.to << "): got success, want an error");
        CHECK_FALSE(r);
    }
    CHECK(list(dir / "corrupt") == std::vector<std::string>{id});
}

TEST_CASE("CommitPool: results arrive on the loop thread") {
    TempDir dir;
    event::Base base;
    bool timed_out = false;
    auto safety = event::Event::timer(base, [&] {
        timed_out = true;
        base.exit();
    });
    safety.add(10000ms);
    const auto loop_thread = std::this_thread::get_id();
    constexpr int N = 50;
    std::vector<std::string> ids;
    int off_thread = 0, errors = 0;
    {
        queue::CommitPool pool(base, 4);
        std::vector<std::string> want;
        for (int i = 0; i < N; ++i) {
            auto w = queue::Writer::create(dir.path, Now + i);
            REQUIRE(w);
            REQUIRE(w->write_envelope(full_envelope()));
            REQUIRE(w->append(binary_content(1000 + static_cast<std::size_t>(i))));
            REQUIRE(w->finish());
            want.push_back(w->id());
            pool.submit(std::make_unique<queue::Writer>(std::move(*w)), [&](Result<std::string> r) {
                if (std::this_thread::get_id() != loop_thread) ++off_thread;
                if (r) ids.push_back(*r);
                else ++errors;
                if (static_cast<int>(ids.size()) + errors == N) base.exit();
            });
        }
        INFO("callbacks run inside submit: got " << ids.size() << ", want 0");
        CHECK(ids.empty());
        base.dispatch();
        REQUIRE_FALSE(timed_out);
        std::sort(want.begin(), want.end());
        std::vector<std::string> got = ids;
        std::sort(got.begin(), got.end());
        CHECK(got == want);
    }
    INFO("off-loop callbacks: got " << off_thread << ", want 0; errors: got " << errors << ", want 0");
    CHECK(off_thread == 0);
    CHECK(errors == 0);
    REQUIRE(ids.size() == N);
    for (const auto& id : ids) {
        CHECK(queue::valid_id(id));
        UniqueFd fd(::open((dir / "incoming/" + id).c_str(), O_RDONLY | O_CLOEXEC));
        INFO("incoming/" << id << ": got missing, want present and readable");
        REQUIRE(fd);
        CHECK(read_all(fd.get()).content);
    }
    CHECK(list(dir / "incoming").size() == N);
}

TEST_CASE("CommitPool: a commit failure is delivered as an error") {
    TempDir dir;
    event::Base base;
    auto safety = event::Event::timer(base, [&] { base.exit(); });
    safety.add(10000ms);
    std::optional<Result<std::string>> got;
    {
        queue::CommitPool pool(base, 2);
        auto w = queue::Writer::create(dir.path, Now);
        REQUIRE(w);
        REQUIRE(w->write_envelope(full_envelope()));
        REQUIRE(w->finish());
        std::filesystem::rename(dir / "incoming", dir / "gone");
        pool.submit(std::make_unique<queue::Writer>(std::move(*w)), [&](Result<std::string> r) {
            got.emplace(std::move(r));
            base.exit();
        });
        base.dispatch();
    }
    REQUIRE(got.has_value());
    INFO("got " << (*got ? "success" : got->error().text) << ", want a temporary rename error");
    REQUIRE_FALSE(*got);
    CHECK(got->error().kind == Error::Kind::Temp);
    CHECK(got->error().text.find("rename") != std::string::npos);
}

TEST_CASE("CommitPool: the destructor finishes queued work and reports it") {
    TempDir dir;
    event::Base base;
    int done = 0;
    {
        queue::CommitPool pool(base, 1);
        for (int i = 0; i < 10; ++i) {
            auto w = queue::Writer::create(dir.path, Now);
            REQUIRE(w);
            REQUIRE(w->write_envelope(full_envelope()));
            REQUIRE(w->finish());
            pool.submit(std::make_unique<queue::Writer>(std::move(*w)), [&](Result<std::string> r) {
                CHECK(r);
                ++done;
            });
        }
    }  // no loop ran
    INFO("callbacks: got " << done << ", want 10");
    CHECK(done == 10);
    CHECK(list(dir / "incoming").size() == 10);
}

// ---- Defer logs

namespace {

std::vector<queue::DeferEntry> sample_defer_entries() {
    return {
        {"alice@example.com", "4.4.1", "connect to mx.example.com[192.0.2.1]:25: Connection refused",
         "mx.example.com[192.0.2.1]:25", Now},
        {"\"odd\\\\ one\"@example.com", "4.7.0", "tab\there, newline\nthere, \x7f, back\\slash, caf\xc3\xa9", "",
         Now + 1},
        {"bob@example.org", "5.1.1", "", "", 0},
    };
}

bool same(const queue::DeferEntry& a, const queue::DeferEntry& b) {
    return a.address == b.address && a.dsn == b.dsn && a.reason == b.reason && a.relay == b.relay &&
           a.time_us == b.time_us;
}

const std::string DeferId = "1M0Z90PCG0DBG9R1";

}  // namespace

TEST_CASE("defer log: round trip, replace, remove") {
    TempDir dir;
    REQUIRE(queue::valid_id(DeferId));
    auto entries = sample_defer_entries();
    auto w = queue::write_defer_log(dir.path, DeferId, entries);
    INFO("write: " << (w ? "" : w.error().text));
    REQUIRE(w);
    CHECK(list(dir / "defer") == std::vector<std::string>{DeferId});
    struct stat st {};
    REQUIRE(::stat((dir / "defer/" + DeferId).c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    std::string text = slurp(dir / "defer/" + DeferId);
    INFO("file: " << text);
    CHECK(text.rfind("postern-defer-log 1\n", 0) == 0);
    CHECK(text.find("tab\\x09here, newline\\x0athere, \\x7f, back\\x5cslash, caf\xc3\xa9\n") != std::string::npos);

    auto r = queue::read_defer_log(dir.path, DeferId);
    INFO("read: " << (r ? "" : r.error().text));
    REQUIRE(r);
    REQUIRE(r->size() == entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
        INFO("entry " << i << ": got <" << (*r)[i].address << "> " << (*r)[i].reason);
        CHECK(same((*r)[i], entries[i]));
    }

    // A second write replaces the whole log.
    REQUIRE(queue::write_defer_log(dir.path, DeferId, {entries[2]}));
    r = queue::read_defer_log(dir.path, DeferId);
    REQUIRE(r);
    REQUIRE(r->size() == 1);
    CHECK(same(r->front(), entries[2]));
    CHECK(list(dir / "defer") == std::vector<std::string>{DeferId});  // no temp file left

    // An empty list removes it; so does remove_defer_log.
    REQUIRE(queue::write_defer_log(dir.path, DeferId, {}));
    CHECK(list(dir / "defer").empty());
    REQUIRE(queue::write_defer_log(dir.path, DeferId, entries));
    queue::remove_defer_log(dir.path, DeferId);
    CHECK(list(dir / "defer").empty());
    queue::remove_defer_log(dir.path, DeferId);  // already gone: fine
}

TEST_CASE("defer log: missing log and missing directory are empty") {
    TempDir dir;
    auto r = queue::read_defer_log(dir.path, DeferId);
    REQUIRE(r);
    CHECK(r->empty());
    std::filesystem::remove(dir / "defer");
    r = queue::read_defer_log(dir.path, DeferId);
    REQUIRE(r);
    CHECK(r->empty());
    auto w = queue::write_defer_log(dir.path, DeferId, sample_defer_entries());
    REQUIRE_FALSE(w);
    CHECK(w.error().kind == Error::Kind::Temp);
}

TEST_CASE("defer log: a crash's temp file does not block the next write") {
    TempDir dir;
    { std::ofstream(dir / ("defer/.tmp-" + DeferId)) << "half"; }
    REQUIRE(queue::write_defer_log(dir.path, DeferId, sample_defer_entries()));
    CHECK(list(dir / "defer") == std::vector<std::string>{DeferId});
    { std::ofstream(dir / ("defer/.tmp-" + DeferId)) << "half"; }
    queue::remove_defer_log(dir.path, DeferId);
    CHECK(list(dir / "defer").empty());
}

TEST_CASE("defer log: a long reason is cut, marked, and not split inside UTF-8") {
    TempDir dir;
    std::string reason = "x" + std::string(1200, '\0');
    for (std::size_t i = 1; i < reason.size(); i += 2) reason.replace(i, 2, "\xc3\xa9");
    reason.resize(1201);
    queue::DeferEntry e{"a@b.example", "4.0.0", reason, "", Now};
    REQUIRE(queue::write_defer_log(dir.path, DeferId, {e}));
    auto r = queue::read_defer_log(dir.path, DeferId);
    REQUIRE(r);
    REQUIRE(r->size() == 1);
    const std::string& got = r->front().reason;
    INFO("got " << got.size() << " bytes, want at most " << queue::MaxDeferReason);
    CHECK(got.size() <= queue::MaxDeferReason);
    CHECK(got.substr(got.size() - 3) == "...");
    CHECK(got.compare(0, got.size() - 3, reason, 0, got.size() - 3) == 0);
    CHECK((static_cast<unsigned char>(got[got.size() - 4]) & 0xc0) != 0xc0);  // no lead byte left dangling
}

TEST_CASE("defer log: IDs are validated") {
    TempDir dir;
    for (std::string bad : {"", "../incoming/1M0Z90PCG0DBG9R1", "1M0Z90PCG0DBG9R1/", "x", ".tmp-1M0Z90PCG0DBG9R1"}) {
        INFO("id \"" << bad << "\"");
        auto w = queue::write_defer_log(dir.path, bad, sample_defer_entries());
        REQUIRE_FALSE(w);
        CHECK(w.error().kind == Error::Kind::Perm);
        auto r = queue::read_defer_log(dir.path, bad);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Perm);
        queue::remove_defer_log(dir.path, bad);  // a no-op, no crash
    }
    CHECK(list(dir / "defer").empty());
}

TEST_CASE("defer log: bad entries are refused on write") {
    TempDir dir;
    struct Case {
        const char* what;
        queue::DeferEntry e;
    } cases[] = {
        {"empty address", {"", "4.0.0", "r", "", Now}},
        {"bad DSN", {"a@b", "4.0", "r", "", Now}},
        {"DSN class 3", {"a@b", "3.0.0", "r", "", Now}},
        {"negative time", {"a@b", "4.0.0", "r", "", -1}},
    };
    for (auto& c : cases) {
        INFO(c.what);
        auto w = queue::write_defer_log(dir.path, DeferId, {c.e});
        REQUIRE_FALSE(w);
        CHECK(w.error().kind == Error::Kind::Perm);
    }
    // Too much text in all.
    std::vector<queue::DeferEntry> many(2000, {"a@b.example", "4.0.0", std::string(900, 'r'), "", Now});
    auto w = queue::write_defer_log(dir.path, DeferId, many);
    REQUIRE_FALSE(w);
    CHECK(w.error().kind == Error::Kind::Perm);
    CHECK(list(dir / "defer").empty());
}

TEST_CASE("defer log: garbage is refused") {
    TempDir dir;
    const std::string head = "postern-defer-log 1\n";
    const std::string good = "1700000000123456\t4.4.1\ta@b.example\trelay\treason\n";
    struct Case {
        const char* what;
        std::string text;
    } cases[] = {
        {"empty file", ""},
        {"no header", good},
        {"wrong version", "postern-defer-log 2\n" + good},
        {"no final newline", head + good.substr(0, good.size() - 1)},
        {"four fields", head + "1\t4.4.1\ta@b\treason\n"},
        {"six fields", head + "1\t4.4.1\ta@b\tr\treason\textra\n"},
        {"bad time", head + "12x\t4.4.1\ta@b\tr\treason\n"},
        {"negative time", head + "-1\t4.4.1\ta@b\tr\treason\n"},
        {"leading zero", head + "01\t4.4.1\ta@b\tr\treason\n"},
        {"huge time", head + "99999999999999999999\t4.4.1\ta@b\tr\treason\n"},
        {"bad dsn", head + "1\t4.4\ta@b\tr\treason\n"},
        {"dsn digits", head + "1\t4.1234.1\ta@b\tr\treason\n"},
        {"empty address", head + "1\t4.4.1\t\tr\treason\n"},
        {"raw control byte", head + "1\t4.4.1\ta@b\tr\trea\rson\n"},
        {"raw DEL", head + "1\t4.4.1\ta@b\tr\trea\x7fson\n"},
        {"short escape", head + "1\t4.4.1\ta@b\tr\treason\\x0\n"},
        {"bad escape", head + "1\t4.4.1\ta@b\tr\treason\\n\n"},
        {"upper-case escape", head + "1\t4.4.1\ta@b\tr\treason\\x0A\n"},
        {"needless escape", head + "1\t4.4.1\ta@b\tr\treason\\x41\n"},
        {"NUL", head + "1\t4.4.1\ta@b\tr\trea" + std::string(1, '\0') + "son\n"},
        {"blank line", head + good + "\n"},
    };
    auto path = dir / ("defer/" + DeferId);
    // The good line parses, so each failure below is the case's own fault.
    { std::ofstream(path, std::ios::binary) << head << good; }
    auto ok = queue::read_defer_log(dir.path, DeferId);
    INFO("good: " << (ok ? "" : ok.error().text));
    REQUIRE(ok);
    REQUIRE(ok->size() == 1);
    CHECK(ok->front().relay == "relay");
    for (auto& c : cases) {
        { std::ofstream(path, std::ios::binary | std::ios::trunc) << c.text; }
        auto r = queue::read_defer_log(dir.path, DeferId);
        INFO(c.what << ": got " << (r ? "success" : r.error().text) << ", want a corrupt defer log error");
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Perm);
        CHECK(r.error().text.find("corrupt defer log") != std::string::npos);
    }
}

TEST_CASE("defer log: the text form is canonical") {
    auto entries = sample_defer_entries();
    auto text = queue::format_defer_log(entries);
    REQUIRE(text);
    auto back = queue::parse_defer_log(*text);
    INFO((back ? "" : back.error().text));
    REQUIRE(back);
    REQUIRE(back->size() == entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) CHECK(same((*back)[i], entries[i]));
    auto again = queue::format_defer_log(*back);
    REQUIRE(again);
    CHECK(*again == *text);
    auto empty = queue::format_defer_log({});
    REQUIRE(empty);
    CHECK(*empty == "postern-defer-log 1\n");
    // A reason longer than the writer would write is refused by the reader.
    std::string too_long = "postern-defer-log 1\n1\t4.0.0\ta@b\t\t" + std::string(queue::MaxDeferReason + 1, 'r') + "\n";
    auto r = queue::parse_defer_log(too_long);
    REQUIRE_FALSE(r);
    CHECK(r.error().text == "corrupt defer log: line 2: reason too long");
}

TEST_CASE("defer log: oversized, symlinked and non-regular files are refused") {
    TempDir dir;
    auto path = dir / ("defer/" + DeferId);
    {
        std::ofstream f(path, std::ios::binary);
        f << "postern-defer-log 1\n";
        std::string line = "1\t4.4.1\ta@b\tr\t" + std::string(1000, 'x') + "\n";
        while (f.tellp() <= static_cast<std::streamoff>(queue::MaxDeferLogSize)) f << line;
    }
    auto r = queue::read_defer_log(dir.path, DeferId);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Perm);
    std::filesystem::remove(path);
    REQUIRE(queue::write_defer_log(dir.path, "1M0Z90PCG0DBG9R2", sample_defer_entries()));
    std::filesystem::create_symlink(dir / "defer/1M0Z90PCG0DBG9R2", path);
    r = queue::read_defer_log(dir.path, DeferId);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Perm);
    std::filesystem::remove(path);
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    r = queue::read_defer_log(dir.path, DeferId);  // must not hang
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Error::Kind::Perm);
}

TEST_CASE("Writer::set_owner: the committed file has the owner given") {
    TempDir dir;
    auto w = queue::Writer::create(dir.path, Now);
    REQUIRE(w);
    REQUIRE(w->write_envelope(full_envelope()));
    REQUIRE(w->finish());
    // Without root only our own ids are allowed; with root use another pair.
    const uid_t uid = ::geteuid() == 0 ? 65534 : ::geteuid();
    const gid_t gid = ::geteuid() == 0 ? 65534 : ::getegid();
    auto r = w->set_owner(uid, gid);
    INFO("set_owner: " << (r ? "" : r.error().text));
    REQUIRE(r);
    REQUIRE(w->commit());
    struct stat st {};
    REQUIRE(::stat((dir / ("incoming/" + w->id())).c_str(), &st) == 0);
    INFO("owner: got " << st.st_uid << ":" << st.st_gid << ", want " << uid << ":" << gid);
    CHECK(st.st_uid == uid);
    CHECK(st.st_gid == gid);
    if (::geteuid() != 0) {
        auto w2 = queue::Writer::create(dir.path, Now);
        REQUIRE(w2);
        auto bad = w2->set_owner(0, 0);
        INFO("set_owner(0, 0) as a normal user: want an error");
        CHECK_FALSE(bad);
    }
}

TEST_CASE("set_delay_warned flips the W flag in place, durably, and nothing else") {
    TempDir dir;
    queue::Envelope env;
    env.sender = "s@example.org";
    queue::Recipient r;
    r.address = "a@example.com";
    env.recipients.push_back(r);
    std::string id = commit_message(dir.path, env, "Subject: x\r\n\r\nbody\r\n");
    UniqueFd fd(::open((dir.path + "/incoming/" + id).c_str(), O_RDWR));
    REQUIRE(fd);
    auto before = read_all(fd.get());
    REQUIRE(before.env);
    CHECK_FALSE(before.env->delay_warned);
    CHECK(before.env->warned_offset != 0);
    REQUIRE(queue::set_delay_warned(fd.get(), *before.env));
    auto after = read_all(fd.get());
    REQUIRE(after.env);
    CHECK(after.env->delay_warned);
    CHECK(after.bytes == before.bytes);
    CHECK(after.env->recipients.at(0).address == "a@example.com");
    // A wrong offset is refused, not written.
    queue::Envelope bogus = *after.env;
    bogus.warned_offset = bogus.recipients[0].status_offset;
    CHECK_FALSE(queue::set_delay_warned(fd.get(), bogus));
    bogus.warned_offset = 0;
    CHECK_FALSE(queue::set_delay_warned(fd.get(), bogus));
}
