// Unit tests for pickup's logic (pickup/pickup.cpp): sender rule, checks,
// Received header, and the maildrop -> incoming hand-over with its crash
// recovery, on temporary queue directories (no sockets, no master).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "log/log.hpp"
#include "pickup/pickup.hpp"
#include "queue/queue.hpp"
#include "t/unit/temp_queue.hpp"
#include "util/unique_fd.hpp"

using namespace postern;

namespace {

constexpr int64_t Now = 1'700'000'000'000'000;  // 2023-11-14 22:13:20 UTC

using test::TempQueue;

queue::Envelope maildrop_env(const std::string& origin = "sendmail", const std::string& sender = "") {
    queue::Envelope env;
    env.origin = origin;
    env.sender = sender;
    queue::Recipient r;
    r.address = "bob@example.net";
    r.notify = queue::NotifyFailure;
    env.recipients.push_back(r);
    return env;
}

// Writes a queue file as sendmail would and puts it in q's maildrop/NAME.
// Returns the maildrop file's own queue ID.
std::string drop(const TempQueue& q, const std::string& name, const queue::Envelope& env, std::string_view content,
                 mode_t mode = 0644) {
    TempQueue src;
    auto w = queue::Writer::create(src.path, Now - 1000);
    REQUIRE(w);
    REQUIRE(w->write_envelope(env));
    REQUIRE(w->append(content));
    REQUIRE(w->finish());
    REQUIRE(w->commit());
    std::string to = q.path + "/maildrop/" + name;
    std::filesystem::copy_file(src.path + "/incoming/" + w->id(), to);
    REQUIRE(::chmod(to.c_str(), mode) == 0);
    return w->id();
}

void drop_raw(const TempQueue& q, const std::string& name, std::string_view bytes, mode_t mode = 0644) {
    std::string to = q.path + "/maildrop/" + name;
    UniqueFd fd(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600));
    REQUIRE(fd);
    REQUIRE(::write(fd.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    REQUIRE(::fchmod(fd.get(), mode) == 0);
}

struct Read {
    queue::Envelope env;
    std::string content;
};

Read read_queued(const TempQueue& q, const std::string& sub, const std::string& id) {
    UniqueFd fd(::open((q.path + "/" + sub + "/" + id).c_str(), O_RDONLY));
    REQUIRE(fd);
    uint64_t off = 0;
    auto env = queue::read_envelope(fd.get(), &off);
    REQUIRE(env);
    Read r{*env, {}};
    REQUIRE(queue::read_content(fd.get(), off, [&](std::string_view b) -> Result<void> {
        r.content.append(b);
        return {};
    }));
    return r;
}

pickup::Pickup make(const TempQueue& q, pickup::SenderPolicy policy = pickup::SenderPolicy::parse("static:anyone")) {
    pickup::Settings s;
    s.queue_dir = q.path;
    s.myhostname = "mail.example.org";
    s.myorigin = "example.org";
    s.sender_policy = std::move(policy);
    return pickup::Pickup(s, [](uid_t) { return std::optional<std::string>("alice"); }, [] { return Now; });
}

}  // namespace

TEST_CASE("pickup: sender decision") {
    auto anyone = pickup::SenderPolicy::parse("static:anyone");
    auto listed = pickup::SenderPolicy::parse("carol, dave");
    auto with_f = maildrop_env("sendmail -f", "list@example.com");
    auto plain = maildrop_env("sendmail", "forged@example.com");
    struct Case {
        const queue::Envelope* env;
        uid_t uid;
        const char* login;
        const pickup::SenderPolicy* policy;
        const char* want;
    } cases[] = {
        {&with_f, 1000, "alice", &anyone, "list@example.com"},
        {&with_f, 1000, "alice", &listed, "alice@example.org"},
        {&with_f, 1001, "carol", &listed, "list@example.com"},
        {&with_f, 0, "root", &listed, "list@example.com"},
        {&plain, 1000, "alice", &anyone, "alice@example.org"},  // S without -f is never trusted
        {&plain, 0, "root", &anyone, "root@example.org"},
    };
    for (auto& c : cases) {
        auto got = pickup::decide_sender(*c.env, c.uid, c.login, *c.policy, "example.org");
        INFO("uid " << c.uid << " origin " << c.env->origin << ": got " << got << ", want " << c.want);
        CHECK(got == c.want);
    }
    auto null_sender = maildrop_env("sendmail -f", "");
    CHECK(pickup::decide_sender(null_sender, 1000, "alice", anyone, "example.org") == "");
    CHECK(pickup::decide_sender(null_sender, 1000, "alice", listed, "example.org") == "alice@example.org");
}

TEST_CASE("pickup: validation") {
    auto env = maildrop_env();
    CHECK(pickup::validate(env, 1000));
    auto none = env;
    none.recipients.clear();
    CHECK(pickup::validate(none, 1000).error().text == "no recipients");
    auto many = env;
    many.recipients.assign(3, env.recipients[0]);
    CHECK(pickup::validate(many, 3));
    CHECK(!pickup::validate(many, 2));
    auto ctl = env;
    ctl.recipients[0].address = "bob@example.net\r\nRCPT TO:<x>";
    CHECK(!pickup::validate(ctl, 1000));
    auto bad_sender = maildrop_env("sendmail -f", std::string("a\0b@x", 5));
    CHECK(!pickup::validate(bad_sender, 1000));
}

TEST_CASE("pickup: Received header and origin") {
    ::setenv("TZ", "UTC", 1);
    ::tzset();
    CHECK(pickup::received_header("mail.example.org", "Postern", 1000, "QID", Now) ==
          "Received: by mail.example.org (Postern, from userid 1000)\r\n"
          "\tid QID; Tue, 14 Nov 2023 22:13:20 +0000 (UTC)\r\n");
    CHECK(pickup::origin_maildrop_name("pickup uid=1000 maildrop=abc id=XYZ") == "abc id=XYZ");
    CHECK(!pickup::origin_maildrop_name("smtpd"));
    CHECK(!pickup::origin_maildrop_name("pickup uid=1000"));
}

TEST_CASE("pickup: a complete maildrop file becomes a queue file") {
    TempQueue q;
    auto env = maildrop_env("sendmail -f", "list@example.com");
    env.envid = "ENV1";
    env.ret = "HDRS";
    drop(q, "m1", env, "Message-ID: <abc@x>\r\nSubject: hi\r\n\r\nbody\r\n");
    auto p = make(q);
    CHECK(p.run_pass() == pickup::PassResult::Done);
    CHECK(p.take_committed() == 1);
    CHECK(q.list("maildrop").empty());
    auto files = q.list("incoming");
    REQUIRE(files.size() == 1);
    REQUIRE(queue::valid_id(files[0]));
    auto got = read_queued(q, "incoming", files[0]);
    CHECK(got.env.sender == "list@example.com");
    CHECK(got.env.protocol == "local");
    CHECK(got.env.client_name.empty());
    CHECK(got.env.origin.rfind("pickup uid=" + std::to_string(::getuid()) + " maildrop=m1 id=", 0) == 0);
    CHECK(got.env.envid == "ENV1");
    CHECK(got.env.ret == "HDRS");
    REQUIRE(got.env.recipients.size() == 1);
    CHECK(got.env.recipients[0].address == "bob@example.net");
    CHECK(got.env.recipients[0].notify == queue::NotifyFailure);
    CHECK(got.content.rfind("Received: by mail.example.org (Postern, from userid ", 0) == 0);
    CHECK(got.content.find("\tid " + files[0] + "; ") != std::string::npos);
    CHECK(got.content.substr(got.content.find("Message-ID:")) == "Message-ID: <abc@x>\r\nSubject: hi\r\n\r\nbody\r\n");
}

TEST_CASE("pickup: -f without permission, incomplete and corrupt files") {
    TempQueue q;
    drop(q, "forged", maildrop_env("sendmail -f", "boss@example.com"), "Subject: x\r\n\r\nx\r\n");
    if (::getuid() == 0) REQUIRE(::chown((q.path + "/maildrop/forged").c_str(), 12345, 12345) == 0);  // root may -f
    drop(q, "writing", maildrop_env(), "x\r\n", 0600);
    drop(q, ".tmp-123-0", maildrop_env(), "x\r\n", 0600);  // sendmail before its rename
    drop_raw(q, "garbage", "this is not a queue file");
    auto norcpt = maildrop_env();
    norcpt.recipients.clear();
    drop(q, "norcpt", norcpt, "x\r\n");
    auto p = make(q, pickup::SenderPolicy::parse("carol"));
    CHECK(p.run_pass() == pickup::PassResult::Done);
    CHECK(p.take_committed() == 1);
    CHECK(q.list("maildrop") == std::vector<std::string>{".tmp-123-0", "writing"});
    auto corrupt = q.list("corrupt");
    REQUIRE(corrupt.size() == 2);
    auto in = q.list("incoming");
    REQUIRE(in.size() == 1);
    CHECK(read_queued(q, "incoming", in[0]).env.sender == "alice@example.org");
}

TEST_CASE("pickup: an incomplete file older than an hour goes to corrupt/") {
    TempQueue q;
    drop(q, "stuck", maildrop_env(), "x\r\n", 0600);
    struct timespec ts[2] = {{Now / 1000000 - 3601, 0}, {Now / 1000000 - 3601, 0}};
    REQUIRE(::utimensat(AT_FDCWD, (q.path + "/maildrop/stuck").c_str(), ts, 0) == 0);
    auto p = make(q);
    p.run_pass();
    CHECK(q.list("maildrop").empty());
    CHECK(q.list("corrupt").size() == 1);
}

TEST_CASE("pickup: batches") {
    TempQueue q;
    for (int i = 0; i < 5; ++i) drop(q, "m" + std::to_string(i), maildrop_env(), "x\r\n");
    pickup::Settings s;
    s.queue_dir = q.path;
    s.batch_limit = 2;
    pickup::Pickup p(s, [](uid_t) { return std::optional<std::string>("alice"); }, [] { return Now; });
    CHECK(p.run_pass() == pickup::PassResult::More);
    CHECK(p.run_pass() == pickup::PassResult::More);
    CHECK(p.run_pass() == pickup::PassResult::Done);
    CHECK(q.list("incoming").size() == 5);
}

TEST_CASE("pickup: crash recovery") {
    TempQueue q;
    TempQueue saved;  // the maildrop files as they were before the pass
    for (const char* n : {"a", "b", "c"}) {
        drop(q, n, maildrop_env(), std::string(n) + "\r\n");
        std::filesystem::copy_file(q.path + "/maildrop/" + n, saved.path + "/maildrop/" + n);
    }
    make(q).run_pass();
    auto queued = q.list("incoming");
    REQUIRE(queued.size() == 3);
    for (auto& id : queued) {
        auto origin = read_queued(q, "incoming", id).env.origin;
        auto key = pickup::origin_maildrop_name(origin);
        REQUIRE(key);
        if (key->rfind("a ", 0) == 0) {
            // a: the crash came after step 3; qmgr has moved it on since.
            std::filesystem::rename(q.path + "/incoming/" + id, q.path + "/deferred/" + id);
        } else if (key->rfind("b ", 0) == 0) {
            // b: the crash came before step 3 was durable: no queue file.
            std::filesystem::remove(q.path + "/incoming/" + id);
        }
        // c: its queue file stays, but the leftover below is another file
        // that happens to have the same name.
    }
    std::filesystem::copy_file(saved.path + "/maildrop/a", q.path + "/incoming/.pickup-a");
    std::filesystem::copy_file(saved.path + "/maildrop/b", q.path + "/incoming/.pickup-b");
    drop(q, "c", maildrop_env(), "another c\r\n");
    std::filesystem::rename(q.path + "/maildrop/c", q.path + "/incoming/.pickup-c");

    auto p = make(q);
    CHECK(p.recover() == 3);
    CHECK(q.list("maildrop") == std::vector<std::string>{"b", "c"});
    CHECK(q.list("incoming").size() == 1);  // c's first queue file
    CHECK(q.list("deferred").size() == 1);
    // And nothing to do without leftovers.
    CHECK(p.recover() == 0);
    // b and c are picked up again.
    p.run_pass();
    CHECK(q.list("maildrop").empty());
    CHECK(q.list("incoming").size() == 3);
}

namespace {

struct Measured {
    std::size_t fields, largest;
    bool in_header;
    bool operator==(const Measured&) const = default;
};

// Whole, a byte at a time and split at every position: all must agree.
Measured measure(std::string_view in) {
    auto one = [](const std::vector<std::string_view>& pieces) {
        pickup::HeaderCheck h;
        for (auto p : pieces) h.feed(p);
        return Measured{h.fields(), h.largest_field(), h.in_header()};
    };
    Measured whole = one({in});
    std::vector<std::string_view> bytes;
    for (std::size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
    CHECK(one(bytes) == whole);
    for (std::size_t i = 0; i <= in.size(); ++i) CHECK(one({in.substr(0, i), in.substr(i)}) == whole);
    return whole;
}

}  // namespace

TEST_CASE("pickup: the header is measured as it streams by") {
    struct Case {
        const char* in;
        Measured want;
    } cases[] = {
        {"", {0, 0, true}},
        {"Subject: hi\r\n\r\nbody: not a header\r\n", {1, 11, false}},
        {"A: 1\r\nSubject: hello\r\n folded\r\n\tagain\r\n\r\nx\r\n", {2, 31, false}},
        {"A: 1\nBB: 22\n\nx\n", {2, 6, false}},  // bare LF ends lines too
        {"Old-Style : v\r\n\r\n", {1, 13, false}},
        {"A: 1\r\nno colon here\r\nB: 2\r\n\r\n", {1, 4, false}},  // the body starts at a non-header line
        {"A: 1\r\n: empty name\r\n\r\n", {1, 4, false}},
        {" starts with space\r\nA: 1\r\n\r\n", {0, 0, false}},
        {"A: 1\r\nB", {2, 4, true}},  // the input ends inside the header
        {"A: x\ry\r\n\r\n", {1, 6, false}},  // a CR inside a line is part of it
        {"Subject\r\n\r\n", {0, 0, false}},
    };
    for (auto& c : cases) {
        Measured got = measure(c.in);
        INFO("input " << c.in << ": got fields=" << got.fields << " largest=" << got.largest << " in_header="
                      << got.in_header << ", want " << c.want.fields << " " << c.want.largest << " "
                      << c.want.in_header);
        CHECK(got == c.want);
    }
}

TEST_CASE("pickup: header limits at the limit and one over") {
    auto field = [](std::size_t size) { return "X-Big: " + std::string(size - 7, 'x'); };
    auto fields = [](std::size_t n) {
        std::string s;
        for (std::size_t i = 0; i < n; ++i) s += "X-N: " + std::to_string(i) + "\r\n";
        return s;
    };
    pickup::HeaderCheck at, over, count_at, count_over, folded;
    at.feed(field(1000) + "\r\n\r\nbody\r\n");
    over.feed(field(1001) + "\r\n\r\nbody\r\n");
    count_at.feed(fields(1000) + "\r\nbody\r\n");
    count_over.feed(fields(1001) + "\r\nbody\r\n");
    // A field folded over many lines counts as one, CRLFs included.
    folded.feed("X-Big: a\r\n" + std::string(" b\r\n").append(std::string(" c\r\n")) + "\r\n");
    CHECK(at.largest_field() == 1000);
    CHECK(at.problem(1000, 1000).empty());
    CHECK(over.problem(1000, 1000) == "a header field of 1001 bytes exceeds header_size_limit=1000");
    CHECK(count_at.problem(1000, 1000).empty());
    CHECK(count_over.problem(1000, 1000) == "1001 header fields exceed the limit of 1000");
    CHECK(folded.fields() == 1);
    CHECK(folded.largest_field() == std::string("X-Big: a\r\n b\r\n c").size());
    pickup::HeaderCheck both;
    both.feed(fields(1001) + field(2000) + "\r\n\r\n");
    CHECK(both.problem(1000, 1000) ==
          "a header field of 2000 bytes exceeds header_size_limit=1000, and 1002 header fields exceed the limit of 1000");
}

TEST_CASE("pickup: a header over the limits is queued whole, with a warning") {
    TempQueue q;
    std::string log_path = q.path + "/maillog";
    log::open({.tag = "pickup_test", .file = log_path});
    std::string big = "X-Big: " + std::string(2000, 'x') + "\r\n";
    std::string many;
    for (int i = 0; i < 1001; ++i) many += "X-N: " + std::to_string(i) + "\r\n";
    const std::string content = big + many + "Subject: big header\r\n\r\nbody\r\n";
    drop(q, "big", maildrop_env(), content);
    drop(q, "fine", maildrop_env(), "X-Big: " + std::string(993, 'x') + "\r\n\r\nbody\r\n");  // 1000 bytes: at the limit
    pickup::Settings s;
    s.queue_dir = q.path;
    s.header_size_limit = 1000;
    pickup::Pickup p(s, [](uid_t) { return std::optional<std::string>("alice"); }, [] { return Now; });
    p.run_pass();
    log::open({});
    CHECK(q.list("maildrop").empty());
    CHECK(q.list("corrupt").empty());
    auto in = q.list("incoming");
    REQUIRE(in.size() == 2);
    std::string big_id;
    for (auto& id : in) {
        auto got = read_queued(q, "incoming", id);
        if (got.content.find("Subject: big header") == std::string::npos) continue;
        big_id = id;
        // Everything after pickup's Received header, byte for byte.
        CHECK(got.content.substr(got.content.find("X-Big:")) == content);
    }
    REQUIRE(!big_id.empty());
    std::ifstream f(log_path);
    std::string log_text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    INFO(log_text);
    CHECK(log_text.find(big_id + ": uid=" + std::to_string(::getuid()) +
                        ": maildrop file big: a header field of 2007 bytes exceeds header_size_limit=1000, and 1003 "
                        "header fields exceed the limit of 1000; queued whole, nothing cut") != std::string::npos);
    CHECK(log_text.find("maildrop file fine") == std::string::npos);
}
