// Unit tests for lib/event: timers, signals, io events, the exception-catching
// trampoline, BufferEvent (write, read_line limits, read_all, EOF, timeouts),
// and outgoing TCP connections (connect_tcp: to a listening loopback port, to
// a closed one, bad addresses, the bind address). TLS over BufferEvents is
// tested in tls_test.cpp, which has certificates.
// Every loop runs under a safety timer, so a bug fails the test instead of hanging it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "event/event.hpp"
#include "log/log.hpp"
#include "t/unit/test_loop.hpp"
#include "t/unit/test_net.hpp"

using namespace postern;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

namespace {

// The event loop with a safety timer (t/unit/test_loop.hpp).
struct Loop : test::Loop {
    Loop() : test::Loop(std::chrono::milliseconds(2000)) {}
};

// Both ends of a socketpair; end a goes to the code under test, b stays ours.
struct Pair {
    UniqueFd a, b;
    Pair() {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        a.reset(sv[0]);
        b.reset(sv[1]);
    }
};

void send_all(int fd, std::string_view data) {
    std::size_t off = 0;
    for (int tries = 0; off < data.size() && tries < 1000; ++tries) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n > 0) off += static_cast<std::size_t>(n);
    }
    REQUIRE(off == data.size());
}

// Reads from fd until want bytes arrived or 1 s passed.
std::string recv_some(int fd, std::size_t want) {
    std::string got;
    auto deadline = SteadyClock::now() + 1s;
    while (got.size() < want && SteadyClock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        char buf[4096];
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
}

// Sends data to the peer and runs the loop until the BufferEvent has buffered at least want bytes.
void feed(Loop& loop, event::BufferEvent& be, int peer, std::string_view data, std::size_t want) {
    send_all(peer, data);
    be.on_read([&] {
        if (be.input_length() >= want) loop.base.exit();
    });
    be.enable(EV_READ);
    if (be.input_length() < want) loop.run();
    be.disable(EV_READ);
    be.on_read(nullptr);
    INFO("buffered input: got " << be.input_length() << " bytes, want " << want);
    REQUIRE(be.input_length() == want);
}

std::string show(const std::optional<std::string>& s) { return s ? "\"" + *s + "\"" : std::string("nullopt"); }

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-event-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

}  // namespace

TEST_CASE("timer fires once after its timeout and can be re-added") {
    Loop loop;
    int fired = 0;
    SteadyClock::time_point fired_at;
    auto t = event::Event::timer(loop.base, [&] {
        ++fired;
        fired_at = SteadyClock::now();
    });
    auto stop = event::Event::timer(loop.base, [&] { loop.base.exit(); });
    REQUIRE(t);
    CHECK_FALSE(t.pending());

    auto start = SteadyClock::now();
    t.add(30ms);
    CHECK(t.pending());
    stop.add(150ms);
    loop.run();
    INFO("fired: got " << fired << ", want 1");
    CHECK(fired == 1);
    auto after = std::chrono::duration_cast<std::chrono::milliseconds>(fired_at - start).count();
    INFO("fired after: got " << after << " ms, want >= 25 ms");
    CHECK(after >= 25);
    CHECK_FALSE(t.pending());

    // Re-adding an expired timer arms it again, once.
    t.add(10ms);
    stop.add(100ms);
    loop.run();
    INFO("fired after re-add: got " << fired << ", want 2");
    CHECK(fired == 2);
}

TEST_CASE("timer re-added from its own callback fires again") {
    Loop loop;
    int fired = 0;
    event::Event t;
    t = event::Event::timer(loop.base, [&] {
        if (++fired < 3) t.add(5ms);
        else loop.base.exit();
    });
    t.add(5ms);
    loop.run();
    INFO("fired: got " << fired << ", want 3");
    CHECK(fired == 3);
}

TEST_CASE("del() keeps a timer from firing") {
    Loop loop;
    int fired = 0;
    auto t = event::Event::timer(loop.base, [&] { ++fired; });
    auto stop = event::Event::timer(loop.base, [&] { loop.base.exit(); });

    event::Event killer = event::Event::timer(loop.base, [&] { t.del(); });
    SECTION("before the loop runs") {
        t.add(10ms);
        t.del();
        CHECK_FALSE(t.pending());
        stop.add(60ms);
    }
    SECTION("from another callback") {
        t.add(50ms);
        killer.add(5ms);
        stop.add(120ms);
    }
    loop.run();
    CHECK_FALSE(t.pending());
    INFO("fired: got " << fired << ", want 0");
    CHECK(fired == 0);
}

TEST_CASE("empty and moved-from events are inert; a moved event still fires") {
    Loop loop;
    event::Event empty;
    CHECK_FALSE(empty);
    CHECK_FALSE(empty.pending());
    empty.add();  // no-ops, must not crash
    empty.add(5ms);
    empty.del();

    int fired = 0;
    auto a = event::Event::timer(loop.base, [&] {
        ++fired;
        loop.base.exit();
    });
    a.add(10ms);
    event::Event b(std::move(a));
    CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is what we test
    CHECK(b);
    CHECK(b.pending());
    loop.run();
    INFO("fired: got " << fired << ", want 1");
    CHECK(fired == 1);

    // Assigning over a pending event cancels it.
    int old_fired = 0;
    auto c = event::Event::timer(loop.base, [&] { ++old_fired; });
    c.add(10ms);
    c = event::Event::timer(loop.base, [&] { loop.base.exit(); });
    c.add(40ms);
    loop.run();
    INFO("replaced timer fired: got " << old_fired << ", want 0");
    CHECK(old_fired == 0);
}

TEST_CASE("signal event fires when the signal is raised inside the loop") {
    Loop loop;
    int got = 0;
    auto sig = event::Event::signal(loop.base, SIGUSR1, [&] {
        ++got;
        loop.base.exit();
    });
    sig.add();
    CHECK(sig.pending());
    auto raiser = event::Event::timer(loop.base, [] { ::raise(SIGUSR1); });
    raiser.add(10ms);
    loop.run();
    INFO("signal callbacks: got " << got << ", want 1");
    CHECK(got == 1);
    // Signal events persist until deleted.
    CHECK(sig.pending());

    raiser.add(5ms);
    loop.run();
    INFO("signal callbacks after a second raise: got " << got << ", want 2");
    CHECK(got == 2);
}

TEST_CASE("io event reports a readable socketpair end") {
    Loop loop;
    Pair p;
    std::string got;
    short seen = 0;
    int calls = 0;
    auto r = event::Event::io(loop.base, p.a.get(), EV_READ | EV_PERSIST, [&](short what) {
        ++calls;
        seen |= what;
        char buf[64];
        ssize_t n = ::recv(p.a.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) got.append(buf, static_cast<std::size_t>(n));
        if (got.size() >= 6) loop.base.exit();
    });
    r.add();
    auto w1 = event::Event::timer(loop.base, [&] { send_all(p.b.get(), "abc"); });
    auto w2 = event::Event::timer(loop.base, [&] { send_all(p.b.get(), "def"); });
    w1.add(5ms);
    w2.add(30ms);
    loop.run();
    INFO("read through io event: got \"" << got << "\", want \"abcdef\"");
    CHECK(got == "abcdef");
    CHECK((seen & EV_READ) != 0);
    INFO("callbacks: got " << calls << ", want 2 (EV_PERSIST, two writes)");
    CHECK(calls == 2);
    CHECK(r.pending());
}

TEST_CASE("io event reports a writable socketpair end") {
    Loop loop;
    Pair p;
    short seen = 0;
    auto w = event::Event::io(loop.base, p.a.get(), EV_WRITE, [&](short what) {
        seen = what;
        loop.base.exit();
    });
    w.add();
    loop.run();
    INFO("what: got " << seen << ", want EV_WRITE (" << EV_WRITE << ")");
    CHECK((seen & EV_WRITE) != 0);
}

TEST_CASE("an exception thrown in a callback is caught and logged; the loop goes on") {
    TempDir dir;
    std::string log_path = dir.path + "/log";
    log::open({.tag = "event_test", .file = log_path});

    Loop loop;
    bool later_fired = false;
    auto thrower = event::Event::timer(loop.base, [] { throw std::runtime_error("boom in timer"); });
    auto odd_thrower = event::Event::timer(loop.base, [] { throw 42; });
    auto later = event::Event::timer(loop.base, [&] {
        later_fired = true;
        loop.base.exit();
    });
    thrower.add(5ms);
    odd_thrower.add(10ms);
    later.add(40ms);
    loop.run();
    CHECK(later_fired);

    // guarded() is the same net, for callbacks driven by hand.
    bool ran = false;
    event::guarded("by-hand", [&] {
        ran = true;
        throw std::logic_error("boom by hand");
    });
    CHECK(ran);

    log::open({});
    std::ifstream in(log_path);
    REQUIRE(in);
    std::ostringstream ss;
    ss << in.rdbuf();
    auto text = std::optional<std::string>(ss.str());
    for (const char* want : {"event: unexpected exception: boom in timer", "event: unexpected exception\n",
                             "by-hand: unexpected exception: boom by hand"}) {
        INFO("log:\n" << *text << "want it to contain \"" << want << "\"");
        CHECK(text->find(want) != std::string::npos);
    }
}

TEST_CASE("BufferEvent write() arrives at the peer and drains the output") {
    Loop loop;
    Pair p;
    event::BufferEvent be(loop.base, std::move(p.a));
    int drained = 0;
    be.on_write([&] {
        ++drained;
        loop.base.exit();
    });
    be.enable(EV_WRITE);
    const std::string msg = "220 ready\r\n250 ok\r\n";
    be.write(msg);
    // Queued: the loop sends it (with whatever else is written this turn),
    // and the write callback comes from there, never from inside write().
    CHECK(be.output_length() == msg.size());
    CHECK(drained == 0);
    loop.run();
    INFO("on_write calls: got " << drained << ", want 1");
    CHECK(drained == 1);
    CHECK(be.output_length() == 0);
    std::string got = recv_some(p.b.get(), msg.size());
    INFO("peer received: got \"" << got << "\", want \"" << msg << "\"");
    CHECK(got == msg);
    CHECK(be.fd() >= 0);
    CHECK(be.get() != nullptr);
}

TEST_CASE("BufferEvent write() of a large buffer arrives whole") {
    Loop loop;
    Pair p;
    event::BufferEvent be(loop.base, std::move(p.a));
    std::string msg(1 << 20, 'x');
    for (std::size_t i = 0; i < msg.size(); i += 97) msg[i] = static_cast<char>('a' + i % 26);
    std::string got;
    ::fcntl(p.b.get(), F_SETFL, O_NONBLOCK);
    // The peer drains as the loop runs; on_write fires once everything is out.
    auto reader = event::Event::io(loop.base, p.b.get(), EV_READ | EV_PERSIST, [&](short) {
        char buf[65536];
        ssize_t n = ::recv(p.b.get(), buf, sizeof buf, 0);
        if (n > 0) got.append(buf, static_cast<std::size_t>(n));
        if (got.size() == msg.size()) loop.base.exit();
    });
    reader.add();
    be.enable(EV_WRITE);
    // Two writes in one turn arrive in order.
    be.write(msg.substr(0, msg.size() - 10));
    CHECK(be.output_length() > 0);
    be.write(msg.substr(msg.size() - 10));
    loop.run();
    INFO("peer received: got " << got.size() << " bytes, want " << msg.size());
    CHECK(got.size() == msg.size());
    CHECK(got == msg);
}

TEST_CASE("BufferEvent write() with writing disabled queues until it is enabled") {
    Loop loop;
    Pair p;
    event::BufferEvent be(loop.base, std::move(p.a));
    be.on_write([&] { loop.base.exit(); });
    be.disable(EV_WRITE);
    be.write("held\r\n");
    CHECK(be.output_length() == 6);
    be.enable(EV_WRITE);
    loop.run();
    CHECK(be.output_length() == 0);
    CHECK(recv_some(p.b.get(), 6) == "held\r\n");
}

namespace {
struct Step {
    std::optional<std::string> line;
    bool too_long = false;
};
struct LineCase {
    const char* name;
    std::string input;
    std::size_t max;
    std::vector<Step> steps;  // read_line results in order; the last is followed by nullopt
    std::size_t left;         // input bytes still buffered afterwards
};
}  // namespace

TEST_CASE("BufferEvent read_line: line endings, partial lines and the length limit") {
    const std::vector<LineCase> cases = {
        {"LF", "abc\n", 4, {{"abc"}}, 0},
        {"CRLF", "abc\r\n", 4, {{"abc"}}, 0},
        {"several lines, mixed endings", "a\nb\r\nc\n", 4, {{"a"}, {"b"}, {"c"}}, 0},
        {"empty LF line", "\n", 4, {{""}}, 0},
        {"empty CRLF line", "\r\n", 4, {{""}}, 0},
        {"lone CR is data", "a\rb\n", 4, {{"a\rb"}}, 0},
        {"only one CR stripped", "ab\r\r\n", 4, {{"ab\r"}}, 0},
        {"partial line", "abc", 4, {}, 3},
        {"complete line then partial", "ab\ncd", 4, {{"ab"}}, 2},
        {"LF line at the limit", "abcd\n", 4, {{"abcd"}}, 0},
        {"CRLF line at the limit", "abcd\r\n", 4, {{"abcd"}}, 0},
        {"LF line at limit+1", "abcde\nxy\n", 4, {{"abcd", true}, {"xy"}}, 0},
        {"CRLF line at limit+1", "abcde\r\nxy\r\n", 4, {{"abcd", true}, {"xy"}}, 0},
        {"much too long line", "abcdefghij\nz\n", 4, {{"abcd", true}, {"z"}}, 0},
        {"partial line at the limit", "abcd", 4, {}, 4},
        {"partial line at the limit, CR waiting for LF", "abcd\r", 4, {}, 5},
        {"partial line at limit+1", "abcde", 4, {{"abcd", true}}, 1},
        {"partial line at limit+1 after CR", "abcd\rx", 4, {{"abcd", true}}, 2},
        {"limit 0 takes only empty lines", "\nx\n", 0, {{""}, {"", true}}, 0},
    };
    for (const auto& c : cases) {
        INFO("case: " << c.name);
        Loop loop;
        Pair p;
        event::BufferEvent be(loop.base, std::move(p.a));
        feed(loop, be, p.b.get(), c.input, c.input.size());
        for (std::size_t i = 0; i <= c.steps.size(); ++i) {
            Step want = i < c.steps.size() ? c.steps[i] : Step{};
            bool too_long = !want.too_long;  // must be overwritten
            auto got = be.read_line(c.max, &too_long);
            INFO("read_line #" << i + 1 << ": got " << show(got) << " too_long=" << too_long << ", want "
                               << show(want.line) << " too_long=" << want.too_long);
            CHECK(got == want.line);
            CHECK(too_long == want.too_long);
        }
        INFO("left in buffer: got " << be.input_length() << ", want " << c.left);
        CHECK(be.input_length() == c.left);
        // Without too_long_out the result is the same; nothing left to read here.
        CHECK_FALSE(be.read_line(c.max + 1000).has_value());
    }
}

TEST_CASE("BufferEvent read_line: a partial line completes later") {
    Loop loop;
    Pair p;
    event::BufferEvent be(loop.base, std::move(p.a));
    feed(loop, be, p.b.get(), "MAIL FROM:<a", 12);
    bool too_long = true;
    CHECK_FALSE(be.read_line(100, &too_long).has_value());
    CHECK_FALSE(too_long);
    feed(loop, be, p.b.get(), "@example.org>\r\nRCPT", 31);
    auto got = be.read_line(100, &too_long);
    INFO("got " << show(got) << ", want \"MAIL FROM:<a@example.org>\"");
    CHECK(got == std::optional<std::string>("MAIL FROM:<a@example.org>"));
    CHECK_FALSE(too_long);
    CHECK_FALSE(be.read_line(100).has_value());
    CHECK(be.input_length() == 4);
}

TEST_CASE("BufferEvent read_line: byte at a time, at the limit and at limit+1") {
    struct Case {
        std::string input;
        std::size_t max;
        std::vector<Step> steps;  // non-nullopt results, in order
    };
    const std::vector<Case> cases = {
        {"hello\r\n", 5, {{"hello"}}},
        {"hello\n", 5, {{"hello"}}},
        // The limit is passed before the LF arrives: the first max bytes are
        // reported as too long at once and the rest arrives as its own line.
        {"hello!\r\n", 5, {{"hello", true}, {"!"}}},
        {"hello\r!\n", 5, {{"hello", true}, {"\r!"}}},
        {"a\r\nb\n", 1, {{"a"}, {"b"}}},
    };
    for (const auto& c : cases) {
        INFO("input \"" << c.input << "\" max " << c.max);
        Loop loop;
        Pair p;
        event::BufferEvent be(loop.base, std::move(p.a));
        std::vector<Step> got_steps;
        std::size_t buffered = 0;
        for (char ch : c.input) {
            feed(loop, be, p.b.get(), std::string_view(&ch, 1), buffered + 1);
            bool too_long = false;
            while (auto line = be.read_line(c.max, &too_long)) got_steps.push_back({*line, too_long});
            buffered = be.input_length();
        }
        const std::vector<Step>& want = c.steps;
        INFO("lines: got " << got_steps.size() << ", want " << want.size());
        REQUIRE(got_steps.size() == want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
            INFO("line #" << i + 1 << ": got " << show(got_steps[i].line) << " too_long=" << got_steps[i].too_long
                          << ", want " << show(want[i].line) << " too_long=" << want[i].too_long);
            CHECK(got_steps[i].line == want[i].line);
            CHECK(got_steps[i].too_long == want[i].too_long);
        }
        CHECK(be.input_length() == 0);
    }
}

TEST_CASE("BufferEvent read_all takes everything buffered") {
    Loop loop;
    Pair p;
    event::BufferEvent be(loop.base, std::move(p.a));
    CHECK(be.read_all().empty());
    feed(loop, be, p.b.get(), "line one\r\nno end", 16);
    std::string got = be.read_all();
    INFO("read_all: got \"" << got << "\", want \"line one\\r\\nno end\"");
    CHECK(got == "line one\r\nno end");
    CHECK(be.input_length() == 0);
    CHECK(be.read_all().empty());
}

TEST_CASE("BufferEvent on_event reports EOF when the peer closes") {
    Loop loop;
    Pair p;
    event::BufferEvent be(loop.base, std::move(p.a));
    std::vector<std::string> lines;
    short what_seen = 0;
    int events = 0;
    be.on_read([&] {
        while (auto line = be.read_line(100)) lines.push_back(*line);
    });
    be.on_event([&](short what) {
        ++events;
        what_seen = what;
        loop.base.exit();
    });
    be.enable(EV_READ);
    send_all(p.b.get(), "QUIT\r\n");
    p.b.reset();
    loop.run();
    INFO("on_event calls: got " << events << ", want 1");
    CHECK(events == 1);
    INFO("what: got " << what_seen << ", want BEV_EVENT_EOF|BEV_EVENT_READING");
    CHECK((what_seen & BEV_EVENT_EOF) != 0);
    CHECK((what_seen & BEV_EVENT_READING) != 0);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "QUIT");
}

TEST_CASE("BufferEvent read timeout is reported through on_event") {
    Loop loop;
    Pair p;
    event::BufferEvent be(loop.base, std::move(p.a));
    short what_seen = 0;
    be.on_event([&](short what) {
        what_seen = what;
        loop.base.exit();
    });
    be.set_timeouts(30ms, 0ms);
    be.enable(EV_READ);
    auto start = SteadyClock::now();
    loop.run();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
    INFO("what: got " << what_seen << ", want BEV_EVENT_TIMEOUT|BEV_EVENT_READING; after " << ms << " ms");
    CHECK((what_seen & BEV_EVENT_TIMEOUT) != 0);
    CHECK((what_seen & BEV_EVENT_READING) != 0);
    CHECK(ms >= 25);
}

TEST_CASE("BufferEvent keeps working after a move") {
    Loop loop;
    Pair p;
    event::BufferEvent first(loop.base, std::move(p.a));
    event::BufferEvent be(std::move(first));
    feed(loop, be, p.b.get(), "moved\n", 6);
    auto got = be.read_line(100);
    INFO("got " << show(got) << ", want \"moved\"");
    CHECK(got == std::optional<std::string>("moved"));

    event::BufferEvent other(loop.base, std::move(Pair().a));
    other = std::move(be);
    feed(loop, other, p.b.get(), "again\n", 6);
    got = other.read_line(100);
    INFO("after move-assign: got " << show(got) << ", want \"again\"");
    CHECK(got == std::optional<std::string>("again"));
}

// ---- outgoing connections -----------------------------------------------------

namespace {

using test::Listener;  // t/unit/test_net.hpp

}  // namespace

TEST_CASE("connect_tcp to a listening port: CONNECTED first, then replies; queued writes are sent") {
    ::signal(SIGPIPE, SIG_IGN);
    Loop loop;
    Listener l;
    auto c = event::connect_tcp("127.0.0.1", l.port, "");
    INFO("connect_tcp: " << (c ? "ok" : c.error().text));
    REQUIRE(c);
    std::vector<std::string> seen;
    event::BufferEvent be(loop.base, std::move(*c));
    be.on_event([&](short what) {
        seen.push_back((what & BEV_EVENT_CONNECTED) ? "connected" : "event " + std::to_string(what));
        if (!(what & BEV_EVENT_CONNECTED)) loop.base.exit();
    });
    be.on_read([&] {
        while (auto line = be.read_line(100)) seen.push_back(*line);
        if (!seen.empty() && seen.back() == "220 hello") loop.base.exit();
    });
    be.enable(EV_READ | EV_WRITE);
    be.write("EHLO client\r\n");  // queued until the connection is made
    INFO("callbacks from inside the constructor: got " << seen.size() << ", want 0");
    CHECK(seen.empty());
    // The server accepts and greets before the loop runs at all: the socket
    // is readable and writable at once when the loop first looks.
    UniqueFd server = l.accept();
    send_all(server.get(), "220 hello\r\n");
    loop.run();
    INFO("order of callbacks: got " << seen.size() << " entries, want connected then the greeting");
    REQUIRE(seen.size() == 2);
    CHECK(seen[0] == "connected");
    CHECK(seen[1] == "220 hello");
    CHECK(be.socket_error() == 0);
    std::string got = recv_some(server.get(), 13);
    INFO("server received \"" << got << "\", want the EHLO queued before the connect completed");
    CHECK(got == "EHLO client\r\n");
}

TEST_CASE("connect_tcp to a closed port: an error, never CONNECTED") {
    Loop loop;
    Listener closed(false);
    auto c = event::connect_tcp("127.0.0.1", closed.port, "");
    if (!c) {
        // Refused before connect() returned: fine too, as long as it says so.
        INFO("connect_tcp: " << c.error().text);
        CHECK(c.error().text == "Connection refused");
        return;
    }
    event::BufferEvent be(loop.base, std::move(*c));
    short what_seen = 0;
    int reads = 0;
    be.on_event([&](short what) {
        what_seen = what;
        loop.base.exit();
    });
    be.on_read([&] { ++reads; });
    be.enable(EV_READ | EV_WRITE);
    loop.run();
    INFO("what: got " << what_seen << ", want BEV_EVENT_ERROR without CONNECTED");
    CHECK((what_seen & BEV_EVENT_ERROR) != 0);
    CHECK((what_seen & BEV_EVENT_CONNECTED) == 0);
    CHECK(reads == 0);
    INFO("socket_error: got " << be.socket_error() << ", want ECONNREFUSED; error_text: " << be.error_text());
    CHECK(be.socket_error() == ECONNREFUSED);
    CHECK(be.error_text() == "Connection refused");
}

TEST_CASE("connect_tcp: bad addresses and ports; the bind address") {
    struct Bad {
        const char* addr;
        int port;
        const char* bind;
        Error::Kind kind;
    };
    const Bad bad[] = {
        {"mx.example.org", 25, "", Error::Kind::Perm},  {"", 25, "", Error::Kind::Perm},
        {"127.0.0.1", 0, "", Error::Kind::Perm},        {"127.0.0.1", 65536, "", Error::Kind::Perm},
        {"127.0.0.1 ", 25, "", Error::Kind::Perm},      {"127.0.0.1", 25, "localhost", Error::Kind::Config},
        {"127.0.0.1", 25, "[127.0.0.1", Error::Kind::Config},
    };
    for (const auto& b : bad) {
        auto c = event::connect_tcp(b.addr, b.port, b.bind);
        INFO("connect_tcp(\"" << b.addr << "\", " << b.port << ", \"" << b.bind << "\"): want an error");
        REQUIRE_FALSE(c);
        CHECK(c.error().kind == b.kind);
    }
    // 192.0.2.1 is not an address of this machine.
    auto c = event::connect_tcp("127.0.0.1", 25, "192.0.2.1");
    REQUIRE_FALSE(c);
    INFO(c.error().text);
    CHECK(c.error().text.rfind("bind to 192.0.2.1: ", 0) == 0);

    Listener l;
    std::string peer;
    auto bound = event::connect_tcp("127.0.0.1", l.port, "127.0.0.2");
    REQUIRE(bound);
    UniqueFd s1 = l.accept(&peer);
    INFO("peer address with bind address 127.0.0.2: got " << peer);
    CHECK(peer == "127.0.0.2");
    // An IPv6 bind address does not apply to an IPv4 connection; brackets are fine.
    auto other = event::connect_tcp("[127.0.0.1]", l.port, "::1");
    REQUIRE(other);
    UniqueFd s2 = l.accept(&peer);
    CHECK(peer == "127.0.0.1");
}
