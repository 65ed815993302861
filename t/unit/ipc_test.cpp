// Unit tests for lib/ipc: frame encoding, the incremental Decoder, expect() and the socket helpers.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "ipc/attrs.hpp"
#include "ipc/ipc.hpp"
#include "util/strings.hpp"

using namespace postern;
using namespace postern::ipc;
using namespace std::literals;

namespace {

std::string be32(std::uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}
std::string be16(std::uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v)}; }

// Raw wire pieces, so malformed input can be built without encode()'s asserts.
std::string raw_attr(std::string_view name, std::string_view value) {
    return static_cast<char>(name.size()) + std::string(name) + be32(static_cast<std::uint32_t>(value.size())) +
           std::string(value);
}
std::string raw_frame(std::string_view payload) {
    return be32(static_cast<std::uint32_t>(payload.size())) + std::string(payload);
}

AttrList many_attrs(std::size_t n) {
    AttrList l;
    for (std::size_t i = 0; i < n; ++i) l.add("a" + std::to_string(i), std::to_string(i));
    return l;
}

// A list with one attribute "v" whose frame payload is exactly payload_size bytes.
AttrList list_with_payload(std::size_t payload_size) {
    const std::size_t overhead = 2 + 1 + 1 + 4;
    REQUIRE(payload_size >= overhead);
    AttrList l;
    l.add("v", std::string(payload_size - overhead, 'x'));
    return l;
}

std::string show(const AttrList& l) {
    std::string s = "{";
    for (const auto& a : l) s += a.name + "=" + util::printable(a.value, 40) + " ";
    return s + "}";
}

struct TempDir {
    std::string path;
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "ipc_test.XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

struct SocketPair {
    UniqueFd a, b;
    SocketPair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        a.reset(fds[0]);
        b.reset(fds[1]);
    }
};

}  // namespace

TEST_CASE("encode writes the documented wire format") {
    CHECK(encode(AttrList{}) == "\0\0\0\2\0\0"s);
    AttrList l{{"ab", "x\0y"sv}};
    CHECK(encode(l) == "\0\0\0\x0c\0\1\2ab\0\0\0\3x\0y"s);
}

TEST_CASE("AttrList add, find, get_int and equality") {
    AttrList l;
    l.add(attr::Status, "2.0.0").add_int(attr::Pid, -42).add(attr::Reason, "");
    REQUIRE(l.size() == 3);
    REQUIRE(l.find(attr::Status) != nullptr);
    CHECK(*l.find(attr::Status) == "2.0.0");
    CHECK(l.find(attr::User) == nullptr);
    CHECK(*l.find(attr::Reason) == "");

    auto pid = l.get_int(attr::Pid);
    REQUIRE(pid);
    CHECK(*pid == -42);
    auto missing = l.get_int(attr::User);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().kind == Error::Kind::Protocol);
    CHECK_THAT(missing.error().text, Catch::Contains("user"));
    auto bad = l.get_int(attr::Status);
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error().text, Catch::Contains("status"));

    std::vector<std::string> names;
    for (const auto& a : l) names.push_back(a.name);
    CHECK(names == std::vector<std::string>{"status", "pid", "reason"});

    AttrList same{{"status", "2.0.0"}, {"pid", "-42"}, {"reason", ""}};
    AttrList reordered{{"pid", "-42"}, {"status", "2.0.0"}, {"reason", ""}};
    CHECK(l == same);
    CHECK_FALSE(l == reordered);
}

TEST_CASE("round trips") {
    struct Case { const char* what; AttrList list; };
    std::string all_bytes;
    for (int c = 0; c < 256; ++c) all_bytes += static_cast<char>(c);
    const Case cases[] = {
        {"empty list", AttrList{}},
        {"one attribute", AttrList{{"status", "2.0.0"}}},
        {"binary value with NULs", AttrList{{"v", "\0a\0\0b\0"sv}, {"all", all_bytes}}},
        {"0-length values", AttrList{{"a", ""}, {"b", ""}, {"c", "x"}}},
        {"64-byte name", AttrList{{std::string(64, 'n'), "v"}}},
        {"name charset", AttrList{{"abcdefghijklmnopqrstuvwxyz_0123456789", "v"}}},
        {"256 attributes", many_attrs(256)},
        {"large value", AttrList{{"v", std::string(100000, '\xff')}}},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        Decoder d;
        auto r = d.feed(encode(c.list));
        INFO((r ? "ok"s : r.error().text));
        REQUIRE(r);
        auto got = d.next();
        REQUIRE(got.has_value());
        INFO("got " << show(*got) << ", want " << show(c.list));
        CHECK(*got == c.list);
        CHECK_FALSE(d.next().has_value());
        CHECK(d.buffered() == 0);
    }
}

TEST_CASE("byte-at-a-time feeding of two concatenated frames") {
    AttrList first{{"request", "QueueMessageCommit"}, {"queue_id", "4Fz1"}, {"bin", "\0\n\r"sv}};
    AttrList second{{"status", "4.3.0"}, {"reason", ""}};
    std::string wire = encode(first) + encode(second);
    Decoder d;
    std::vector<AttrList> got;
    for (std::size_t i = 0; i < wire.size(); ++i) {
        auto r = d.feed(wire.substr(i, 1));
        INFO("byte " << i << ": " << (r ? "ok"s : r.error().text));
        REQUIRE(r);
        while (auto l = d.next()) got.push_back(std::move(*l));
        // A frame is handed out exactly when its last byte arrives, not before.
        std::size_t want = (i + 1 >= wire.size()) ? 2 : (i + 1 >= encode(first).size() ? 1 : 0);
        INFO("got " << got.size() << " frames, want " << want);
        REQUIRE(got.size() == want);
    }
    REQUIRE(got.size() == 2);
    CHECK(got[0] == first);
    CHECK(got[1] == second);
    CHECK(d.buffered() == 0);
}

TEST_CASE("truncated frames stay pending") {
    std::string wire = encode(AttrList{{"status", "2.0.0"}});
    for (std::size_t cut = 0; cut < wire.size(); ++cut) {
        Decoder d;
        auto r = d.feed(wire.substr(0, cut));
        INFO("cut at " << cut << ": " << (r ? "ok"s : r.error().text));
        REQUIRE(r);
        CHECK_FALSE(d.next().has_value());
        INFO("buffered: got " << d.buffered() << ", want " << cut);
        CHECK(d.buffered() == cut);
        REQUIRE(d.feed(wire.substr(cut)));
        CHECK(d.next().has_value());
    }
}

TEST_CASE("limits at the limit and at limit+1") {
    struct Case {
        const char* what;
        Limits limits;
        std::string wire;
        bool want_ok;
        const char* want_text;
    };
    const Limits small{.max_frame = 100, .max_attrs = 4};
    const Case cases[] = {
        {"frame size at limit", small, encode(list_with_payload(100)), true, ""},
        {"frame size at limit+1", small, encode(list_with_payload(101)), false, "frame length 101"},
        {"default frame size at limit", Limits{}, encode(list_with_payload(1 << 20)), true, ""},
        {"default frame size at limit+1", Limits{}, encode(list_with_payload((1 << 20) + 1)), false,
         "exceeds the limit"},
        {"attr count at limit", small, encode(many_attrs(4)), true, ""},
        {"attr count at limit+1", small, encode(many_attrs(5)), false, "too many attributes: 5"},
        {"default attr count at limit", Limits{}, encode(many_attrs(256)), true, ""},
        {"default attr count at limit+1", Limits{}, encode(many_attrs(257)), false, "too many attributes: 257"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        Decoder d(c.limits);
        auto r = d.feed(c.wire);
        INFO("got " << (r ? "ok"s : r.error().text) << ", want " << (c.want_ok ? "ok" : c.want_text));
        REQUIRE(static_cast<bool>(r) == c.want_ok);
        if (c.want_ok) {
            CHECK(d.next().has_value());
        } else {
            CHECK(r.error().kind == Error::Kind::Protocol);
            CHECK_THAT(r.error().text, Catch::Contains(c.want_text));
        }
    }
}

TEST_CASE("an oversized frame is refused from its header alone") {
    Decoder d(Limits{.max_frame = 100, .max_attrs = 4});
    auto r = d.feed(be32(101));
    REQUIRE_FALSE(r);
    CHECK(d.buffered() == 0);

    Decoder d2(Limits{.max_frame = 100, .max_attrs = 4});
    r = d2.feed(be32(50) + be16(5));  // count over the limit, payload not sent yet
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().text, Catch::Contains("too many attributes"));
}

TEST_CASE("malformed input") {
    struct Case { const char* what; std::string wire; const char* want_text; };
    const Case cases[] = {
        {"frame length 0", be32(0), "too short"},
        {"frame length 1", raw_frame("\0"s), "too short"},
        {"upper-case name", raw_frame(be16(1) + raw_attr("Status", "x")), "bad name"},
        {"dash in name", raw_frame(be16(1) + raw_attr("queue-id", "x")), "bad name"},
        {"NUL in name", raw_frame(be16(1) + raw_attr("a\0b"sv, "x")), "bad name"},
        {"space in name", raw_frame(be16(1) + raw_attr("a b", "x")), "bad name"},
        {"high byte in name", raw_frame(be16(1) + raw_attr("\xe9", "x")), "bad name"},
        {"name length 0", raw_frame(be16(1) + raw_attr("", "x")), "bad name length 0"},
        {"name length 65", raw_frame(be16(1) + raw_attr(std::string(65, 'a'), "x")), "bad name length 65"},
        {"name past frame end", raw_frame(be16(1) + "\x05" "ab"), "name past the frame end"},
        {"name length byte missing", raw_frame(be16(1)), "name length past the frame end"},
        {"value length field cut", raw_frame(be16(1) + "\x01" "a\0\0"s), "value length past the frame end"},
        {"value length beyond frame", raw_frame(be16(1) + "\x01" "a"s + be32(10) + "short"),
         "value length 10 past the frame end"},
        {"value length 0xffffffff", raw_frame(be16(1) + "\x01" "a"s + be32(0xffffffff)), "past the frame end"},
        {"count says more than present", raw_frame(be16(2) + raw_attr("a", "1")), "attribute 2"},
        {"trailing bytes", raw_frame(be16(1) + raw_attr("a", "1") + "zz"), "2 trailing bytes"},
        {"trailing bytes, empty list", raw_frame(be16(0) + "\0"s), "1 trailing bytes"},
        {"duplicate names", raw_frame(be16(3) + raw_attr("a", "1") + raw_attr("b", "2") + raw_attr("a", "3")),
         "duplicate attribute \"a\""},
        {"good frame, then a bad one", encode(AttrList{{"a", "1"}}) + be32(0), "too short"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        Decoder d;
        auto r = d.feed(c.wire);
        INFO("got " << (r ? "ok"s : r.error().text) << ", want error containing \"" << c.want_text << "\"");
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Protocol);
        CHECK_THAT(r.error().text, Catch::Contains(c.want_text));
        // The decoder stays failed, even for valid input.
        CHECK(d.failed());
        auto again = d.feed(encode(AttrList{}));
        REQUIRE_FALSE(again);
        CHECK(again.error().text == r.error().text);

        // The same bytes one at a time fail the same way.
        Decoder slow;
        Result<void> last;
        for (char ch : c.wire) {
            last = slow.feed(std::string_view(&ch, 1));
            if (!last) break;
        }
        REQUIRE_FALSE(last);
        CHECK(last.error().text == r.error().text);
    }
}

TEST_CASE("frames decoded before an error are still returned") {
    Decoder d;
    AttrList good{{"a", "1"}};
    REQUIRE_FALSE(d.feed(encode(good) + be32(0)));
    auto got = d.next();
    REQUIRE(got.has_value());
    CHECK(*got == good);
    CHECK_FALSE(d.next().has_value());
}

TEST_CASE("expect checks required and unknown attributes") {
    AttrList l{{"status", "2.0.0"}, {"reason", "ok"}};
    struct Case {
        const char* what;
        std::initializer_list<std::string_view> required, optional;
        const char* want_error;  // nullptr: ok
    };
    const Case cases[] = {
        {"exact", {attr::Status, attr::Reason}, {}, nullptr},
        {"one optional present", {attr::Status}, {attr::Reason}, nullptr},
        {"optional absent", {attr::Status, attr::Reason}, {attr::QueueId}, nullptr},
        {"missing required", {attr::Status, attr::QueueId}, {attr::Reason}, "missing attribute \"queue_id\""},
        {"unknown attribute", {attr::Status}, {}, "unknown attribute \"reason\""},
        {"missing is reported before unknown", {attr::Pid}, {}, "missing attribute \"pid\""},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        auto r = expect(l, c.required, c.optional);
        INFO("got " << (r ? "ok"s : r.error().text) << ", want " << (c.want_error ? c.want_error : "ok"));
        if (c.want_error == nullptr) {
            CHECK(r);
        } else {
            REQUIRE_FALSE(r);
            CHECK(r.error().kind == Error::Kind::Protocol);
            CHECK(r.error().text == c.want_error);
        }
    }
    CHECK(expect(AttrList{}, {}));
}

TEST_CASE("write_frame and read_frame over a socketpair") {
    SocketPair sp;
    AttrList one{{"request", "AuthPassdbLookup"}, {"user", "alice"}, {"bin", "\0\xff"sv}};
    AttrList two = many_attrs(256);
    REQUIRE(write_frame(sp.a.get(), one, 1000));
    REQUIRE(write_frame(sp.a.get(), two, 1000));
    REQUIRE(write_frame(sp.a.get(), AttrList{}, 1000));
    // read_frame must not read past its frame: each of the three comes out whole.
    auto r1 = read_frame(sp.b.get(), Limits{}, 1000);
    REQUIRE(r1);
    CHECK(*r1 == one);
    auto r2 = read_frame(sp.b.get(), Limits{}, 1000);
    REQUIRE(r2);
    CHECK(*r2 == two);
    auto r3 = read_frame(sp.b.get(), Limits{}, 1000);
    REQUIRE(r3);
    CHECK(r3->empty());
}

TEST_CASE("write_frame of a frame larger than the socket buffer") {
    SocketPair sp;
    AttrList big{{"v", std::string(900000, 'q')}};
    std::thread reader([&] {
        auto r = read_frame(sp.b.get(), Limits{}, 5000);
        CHECK(r);
        if (r) CHECK(*r == big);
    });
    auto w = write_frame(sp.a.get(), big, 5000);
    reader.join();
    CHECK(w);
}

TEST_CASE("read_frame errors") {
    SECTION("timeout") {
        SocketPair sp;
        auto start = std::chrono::steady_clock::now();
        auto r = read_frame(sp.b.get(), Limits{}, 50);
        auto took = std::chrono::steady_clock::now() - start;
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Temp);
        CHECK_THAT(r.error().text, Catch::Contains("timed out"));
        CHECK(took >= std::chrono::milliseconds(45));
        CHECK(took < std::chrono::seconds(2));
    }
    SECTION("timeout in the middle of a frame") {
        SocketPair sp;
        std::string wire = encode(AttrList{{"a", "1"}});
        REQUIRE(::write(sp.a.get(), wire.data(), wire.size() - 1) == static_cast<ssize_t>(wire.size() - 1));
        auto r = read_frame(sp.b.get(), Limits{}, 50);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().text, Catch::Contains("timed out"));
    }
    SECTION("EOF before a full frame") {
        SocketPair sp;
        std::string wire = encode(AttrList{{"a", "1"}});
        REQUIRE(::write(sp.a.get(), wire.data(), 5) == 5);
        sp.a.reset();
        auto r = read_frame(sp.b.get(), Limits{}, 1000);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Temp);
        CHECK(r.error().text == "connection closed");
    }
    SECTION("EOF at a frame boundary") {
        SocketPair sp;
        sp.a.reset();
        auto r = read_frame(sp.b.get(), Limits{}, 1000);
        REQUIRE_FALSE(r);
        CHECK(r.error().text == "connection closed");
    }
    SECTION("oversized frame") {
        SocketPair sp;
        REQUIRE(write_frame(sp.a.get(), list_with_payload(101), 1000));
        auto r = read_frame(sp.b.get(), Limits{.max_frame = 100, .max_attrs = 4}, 1000);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Protocol);
    }
    SECTION("write to a closed peer") {
        SocketPair sp;
        sp.b.reset();
        auto w = write_frame(sp.a.get(), AttrList{{"a", "1"}}, 1000);
        REQUIRE_FALSE(w);
        CHECK(w.error().kind == Error::Kind::Temp);
    }
}

TEST_CASE("listen_unix and connect_unix") {
    TempDir dir;
    std::string path = dir.path + "/private_test";

    auto listener = listen_unix(path, 0620, 8);
    INFO((listener ? "ok"s : listener.error().text));
    REQUIRE(listener);
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    INFO("mode: got " << std::oct << (st.st_mode & 07777) << ", want 620");
    CHECK((st.st_mode & 07777) == 0620);

    auto client = connect_unix(path, 1000);
    INFO((client ? "ok"s : client.error().text));
    REQUIRE(client);
    CHECK((::fcntl(client->get(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(client->get(), F_GETFL) & O_NONBLOCK) == 0);
    UniqueFd server(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(server);

    AttrList req{{"request", "QueueMessageCommit"}, {"queue_id", "4Fz1"}};
    REQUIRE(write_frame(client->get(), req, 1000));
    auto got = read_frame(server.get(), Limits{}, 1000);
    REQUIRE(got);
    CHECK(*got == req);
    AttrList reply{{"status", "2.0.0"}};
    REQUIRE(write_frame(server.get(), reply, 1000));
    auto back = read_frame(client->get(), Limits{}, 1000);
    REQUIRE(back);
    CHECK(*back == reply);

    // A stale socket from a previous run is replaced.
    listener->reset();
    auto again = listen_unix(path, 0600, 8);
    INFO((again ? "ok"s : again.error().text));
    REQUIRE(again);
    CHECK(connect_unix(path, 1000));
}

TEST_CASE("listen_unix and connect_unix errors") {
    TempDir dir;
    SECTION("nobody listening") {
        auto c = connect_unix(dir.path + "/absent", 200);
        REQUIRE_FALSE(c);
        CHECK(c.error().kind == Error::Kind::Temp);
        CHECK_THAT(c.error().text, Catch::Contains("absent"));
    }
    SECTION("path longer than sun_path") {
        std::string longpath = dir.path + "/" + std::string(120, 'x');
        auto l = listen_unix(longpath, 0600, 8);
        REQUIRE_FALSE(l);
        CHECK(l.error().kind == Error::Kind::Config);
        auto c = connect_unix(longpath, 200);
        REQUIRE_FALSE(c);
        CHECK(c.error().kind == Error::Kind::Config);
    }
    SECTION("path at exactly sun_path - 1 bytes") {
        std::string base = dir.path + "/";
        std::string p = base + std::string(sizeof(sockaddr_un::sun_path) - 1 - base.size(), 's');
        auto l = listen_unix(p, 0600, 8);
        INFO((l ? "ok"s : l.error().text));
        REQUIRE(l);
        CHECK(connect_unix(p, 1000));
        auto too_long = listen_unix(p + "s", 0600, 8);
        REQUIRE_FALSE(too_long);
        CHECK(too_long.error().kind == Error::Kind::Config);
    }
    SECTION("a regular file is never replaced") {
        std::string p = dir.path + "/file";
        UniqueFd f(::open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
        REQUIRE(f);
        auto l = listen_unix(p, 0600, 8);
        REQUIRE_FALSE(l);
        CHECK(l.error().kind == Error::Kind::Config);
        struct stat st {};
        REQUIRE(::lstat(p.c_str(), &st) == 0);
        CHECK(S_ISREG(st.st_mode));
    }
}
