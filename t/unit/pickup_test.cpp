// Unit tests for pickup's logic (pickup/pickup.cpp): sender rule, checks,
// Received header, and the maildrop -> incoming hand-over with its crash
// recovery, on temporary queue directories (no sockets, no master).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

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
