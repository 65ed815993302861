// Unit tests for qmgr's scheduler (qmgr/qmgr.cpp) and router (delivery/route.cpp):
// real queue files in a temporary queue directory, a fake delivery agent.
#include <event2/event.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "delivery/route.hpp"
#include "fs/fs.hpp"
#include "qmgr/qmgr.hpp"
#include "queue/queue.hpp"
#include "t/unit/temp_queue.hpp"

using namespace postern;
using namespace postern::qmgr;
using namespace postern::delivery;

namespace {

// Queued files only: writers' temp files are left out.
struct TempQueue : test::TempQueue {
    std::vector<std::string> list(const std::string& sub) const { return test::TempQueue::list(sub, false); }
};

config::Config make_config(const std::string& extra = "") {
    auto c = config::Config::from_text("myhostname = mail.example.com\nmydestination = $myhostname, example.com, localhost\n"
                                       "relay_domains = relay.example\nvirtual_mailbox_domains = virt.example\n" +
                                           extra,
                                       "main.cf", "/nonexistent");
    INFO((c ? "" : c.error().text));
    REQUIRE(c);
    return std::move(*c);
}

std::string queue_message(const TempQueue& q, const std::string& sender, std::vector<std::string> rcpts,
                          std::string_view subdir = queue::Incoming, int64_t arrival_us = 0) {
    auto now = arrival_us ? arrival_us
                          : std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    auto w = queue::Writer::create(q.path, now);
    REQUIRE(w);
    queue::Envelope env;
    env.sender = sender;
    for (auto& r : rcpts) {
        queue::Recipient rc;
        rc.address = r;
        env.recipients.push_back(rc);
    }
    REQUIRE(w->write_envelope(env));
    REQUIRE(w->append("Subject: test\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n"));
    REQUIRE(w->finish());
    REQUIRE(w->commit());
    std::string id = w->id();
    if (subdir != queue::Incoming) REQUIRE(queue::move_to(q.path, id, queue::Incoming, subdir));
    return id;
}

struct FakeAgents final : Agents {
    struct Call {
        delivery::Request req;
        std::function<void(Result<delivery::Reply>)> done;
    };
    std::vector<Call> calls;
    std::vector<std::size_t> sessions;  // requests per start()
    void start(std::vector<delivery::Request> reqs, std::vector<Done> done) override {
        sessions.push_back(reqs.size());
        for (std::size_t i = 0; i < reqs.size(); ++i) calls.push_back({std::move(reqs[i]), std::move(done[i])});
    }
    // Answers the oldest call: every recipient gets kind/dsn/reason.
    void answer(delivery::Outcome::Kind kind, std::string dsn, std::string reason) {
        REQUIRE(!calls.empty());
        Call c = std::move(calls.front());
        calls.erase(calls.begin());
        delivery::Reply rep;
        for (auto& r : c.req.recipients) rep.outcomes.push_back({r.index, kind, dsn, "local", reason});
        c.done(std::move(rep));
    }
    void fail(std::string why) {
        REQUIRE(!calls.empty());
        Call c = std::move(calls.front());
        calls.erase(calls.begin());
        c.done(Error::temp(why));
    }
};

void run(event::Base& base) {
    for (int i = 0; i < 20; ++i) event_base_loop(base.get(), EVLOOP_NONBLOCK);
}

struct Fixture {
    TempQueue q;
    config::Config cfg;
    Router router;
    FakeAgents agents;
    event::Base base;
    Settings s;
    std::unique_ptr<Manager> m;
    explicit Fixture(const std::string& extra = "") : cfg(make_config(extra)), router(cfg.params()) {
        s = Settings::from(cfg, {}, false);
        s.queue_dir = q.path;
    }
    void start() {
        m = std::make_unique<Manager>(base, s, router, agents);
        m->start();
        run(base);
    }
};

using K = delivery::Outcome::Kind;

}  // namespace

TEST_CASE("router: domain classes, relayhost and transport_maps") {
    auto cfg = make_config("relayhost = [smart.example]:2525\n");
    Router r(cfg.params());
    auto local = r.resolve("Alice@Example.COM");
    REQUIRE(local);
    CHECK(local->cls == Route::Class::Local);
    CHECK(local->transport == "local");
    CHECK(local->nexthop == "mail.example.com");
    auto bare = r.resolve("bob");
    REQUIRE(bare);
    CHECK(bare->cls == Route::Class::Local);
    auto virt = r.resolve("carol@virt.example");
    REQUIRE(virt);
    CHECK(virt->transport == "virtual");
    CHECK(virt->nexthop == "virt.example");
    auto relay = r.resolve("dave@relay.example.");
    REQUIRE(relay);
    CHECK(relay->cls == Route::Class::Relay);
    CHECK(relay->nexthop == "[smart.example]:2525");
    auto other = r.resolve("eve@elsewhere.example");
    REQUIRE(other);
    CHECK(other->transport == "smtp");
    CHECK(other->nexthop == "[smart.example]:2525");

    auto cfg2 = make_config("default_transport = error:5.7.1 outbound mail is disabled\n");
    Router r2(cfg2.params());
    auto err = r2.resolve("x@elsewhere.example");
    REQUIRE(err);
    CHECK(err->transport == "error");
    CHECK(err->nexthop == "5.7.1 outbound mail is disabled");

    CHECK(split_transport("smtp:[h]:25") == std::pair<std::string, std::string>{"smtp", "[h]:25"});
    CHECK(split_transport("local") == std::pair<std::string, std::string>{"local", ""});
    CHECK(domain_of("a@B.Example.") == "b.example");
    CHECK(domain_of("nodomain").empty());
}

TEST_CASE("router: transport_maps by address, domain and parent domain") {
    TempQueue tmp;
    std::string file = tmp.path + "/transport";
    REQUIRE(fs::atomic_write(file, "special@far.example  smtp:[one.example]:25\n"
                                        "far.example  :[two.example]\n"
                                        ".sub.example  relay2:\n"
                                        "drop.example  discard:gone\n",
                                  0644));
    auto m = maps::open("texthash:" + file);
    REQUIRE(m);
    auto cfg = make_config();
    Router r(cfg.params());
    r.add_transport_map(std::move(*m));
    auto a = r.resolve("Special@far.example");
    REQUIRE(a);
    CHECK(a->transport == "smtp");
    CHECK(a->nexthop == "[one.example]:25");
    auto b = r.resolve("other@far.example");
    REQUIRE(b);
    CHECK(b->transport == "smtp");
    CHECK(b->nexthop == "[two.example]");
    auto c = r.resolve("x@deep.sub.example");
    REQUIRE(c);
    CHECK(c->transport == "relay2");
    CHECK(c->nexthop == "deep.sub.example");
    auto d = r.resolve("x@drop.example");
    REQUIRE(d);
    CHECK(d->transport == "discard");
}

TEST_CASE("qmgr: delivered message is removed") {
    Fixture f;
    std::string id = queue_message(f.q, "s@example.org", {"alice@example.com"});
    f.start();
    REQUIRE(f.agents.calls.size() == 1);
    auto& req = f.agents.calls[0].req;
    CHECK(req.transport == "local");
    CHECK(req.queue_file == "active/" + id);
    CHECK(req.recipients.at(0).address == "alice@example.com");
    CHECK(f.q.list("active") == std::vector<std::string>{id});
    f.agents.answer(K::Sent, "2.0.0", "delivered to maildir");
    run(f.base);
    CHECK(f.q.list("active").empty());
    CHECK(f.q.list("incoming").empty());
    CHECK(f.q.list("deferred").empty());
    CHECK(f.m->active_count() == 0);
}

TEST_CASE("qmgr: a delivered message's file is emptied into recycle/, up to queue_recycle_limit") {
    Fixture f("queue_recycle_limit = 2\n");
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(queue_message(f.q, "s@example.org", {"u" + std::to_string(i) + "@far.example"}));
    f.start();
    REQUIRE(f.agents.calls.size() == 3);
    for (int i = 0; i < 3; ++i) f.agents.answer(K::Sent, "2.0.0", "delivered");
    run(f.base);
    CHECK(f.q.list("active").empty());
    auto kept = f.q.list("recycle");
    INFO("recycle/ holds " << kept.size() << " files, want 2 (the limit); the third was unlinked");
    REQUIRE(kept.size() == 2);
    for (auto& name : kept) {
        CHECK(std::find(ids.begin(), ids.end(), name) != ids.end());
        CHECK(std::filesystem::file_size(f.q.path + "/recycle/" + name) == 0);
    }
}

TEST_CASE("qmgr: queue_recycle_limit = 0 unlinks delivered messages") {
    Fixture f("queue_recycle_limit = 0\n");
    queue_message(f.q, "s@example.org", {"alice@example.com"});
    f.start();
    f.agents.answer(K::Sent, "2.0.0", "delivered to maildir");
    run(f.base);
    CHECK(f.q.list("active").empty());
    CHECK(f.q.list("recycle").empty());
}

TEST_CASE("qmgr: temporary failure defers with backoff and a defer log; flush retries") {
    Fixture f;
    std::string id = queue_message(f.q, "s@example.org", {"alice@example.com"});
    f.start();
    f.agents.answer(K::Deferred, "4.2.2", "mailbox full");
    run(f.base);
    REQUIRE(f.q.list("deferred") == std::vector<std::string>{id});
    struct stat st;
    REQUIRE(::stat((f.q.path + "/deferred/" + id).c_str(), &st) == 0);
    CHECK(st.st_mtime >= ::time(nullptr) + 250);  // minimal_backoff_time 300s
    auto log = queue::read_defer_log(f.q.path, id);
    REQUIRE(log);
    REQUIRE(log->size() == 1);
    CHECK((*log)[0].reason == "mailbox full");
    CHECK((*log)[0].dsn == "4.2.2");
    // Not due yet: a plain wake-up leaves it alone; a flush takes it.
    f.m->trigger('W');
    run(f.base);
    CHECK(f.agents.calls.empty());
    f.m->trigger('F');
    run(f.base);
    REQUIRE(f.agents.calls.size() == 1);
    f.agents.answer(K::Sent, "2.0.0", "delivered to maildir");
    run(f.base);
    CHECK(f.q.list("deferred").empty());
    CHECK(f.q.list("active").empty());
    CHECK(std::filesystem::directory_iterator(f.q.path + "/defer") == std::filesystem::directory_iterator());
}

TEST_CASE("qmgr: partial delivery records done recipients and defers the rest") {
    Fixture f("default_destination_recipient_limit = 10\n");
    std::string id = queue_message(f.q, "s@example.org", {"a@far.example", "b@far.example"});
    f.start();
    REQUIRE(f.agents.calls.size() == 1);
    auto c = std::move(f.agents.calls[0]);
    f.agents.calls.clear();
    REQUIRE(c.req.recipients.size() == 2);
    delivery::Reply rep;
    rep.outcomes.push_back({0, K::Sent, "2.0.0", "mx[192.0.2.1]:25", "250 ok"});
    rep.outcomes.push_back({1, K::Deferred, "4.4.1", "none", "connection timed out"});
    c.done(std::move(rep));
    run(f.base);
    REQUIRE(f.q.list("deferred") == std::vector<std::string>{id});
    UniqueFd fd(::open((f.q.path + "/deferred/" + id).c_str(), O_RDONLY));
    auto env = queue::read_envelope(fd.get());
    REQUIRE(env);
    CHECK(env->recipients[0].status == queue::StatusDone);
    CHECK(env->recipients[1].status == queue::StatusPending);
    // Next attempt goes only to b.
    f.m->trigger('F');
    run(f.base);
    REQUIRE(f.agents.calls.size() == 1);
    REQUIRE(f.agents.calls[0].req.recipients.size() == 1);
    CHECK(f.agents.calls[0].req.recipients[0].address == "b@far.example");
}

TEST_CASE("qmgr: permanent failure bounces to the sender; a failed bounce goes to postmaster; then dropped") {
    Fixture f;
    std::string id = queue_message(f.q, "sender@example.org", {"nobody@example.com"});
    f.start();
    f.agents.answer(K::Bounced, "5.1.1", "unknown user: \"nobody\"");
    run(f.base);
    // The original is gone; the bounce was queued and taken into active.
    REQUIRE(f.agents.calls.size() == 1);
    auto& b = f.agents.calls[0].req;
    CHECK(b.queue_id != id);
    CHECK(b.sender.empty());
    CHECK(b.recipients.at(0).address == "sender@example.org");
    f.agents.answer(K::Bounced, "5.1.1", "no such sender");
    run(f.base);
    // The bounce bounced: a postmaster notice from the double-bounce sender.
    REQUIRE(f.agents.calls.size() == 1);
    auto& d = f.agents.calls[0].req;
    CHECK(d.sender == "double-bounce@mail.example.com");
    CHECK(d.recipients.at(0).address == "postmaster@mail.example.com");
    f.agents.answer(K::Bounced, "5.1.1", "no postmaster");
    run(f.base);
    // And that one is discarded: nothing left anywhere, no loop.
    CHECK(f.agents.calls.empty());
    CHECK(f.q.list("active").empty());
    CHECK(f.q.list("incoming").empty());
    CHECK(f.q.list("deferred").empty());
}

TEST_CASE("qmgr: NOTIFY=NEVER suppresses the bounce") {
    Fixture f;
    auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    auto w = queue::Writer::create(f.q.path, now);
    REQUIRE(w);
    queue::Envelope env;
    env.sender = "s@example.org";
    queue::Recipient rc;
    rc.address = "x@example.com";
    rc.notify = queue::NotifyNever;
    env.recipients.push_back(rc);
    REQUIRE(w->write_envelope(env));
    REQUIRE(w->append("Subject: x\r\n\r\nx\r\n"));
    REQUIRE(w->finish());
    REQUIRE(w->commit());
    f.start();
    f.agents.answer(K::Bounced, "5.1.1", "unknown user");
    run(f.base);
    CHECK(f.agents.calls.empty());
    CHECK(f.q.list("incoming").empty());
    CHECK(f.q.list("active").empty());
}

TEST_CASE("qmgr: per-destination concurrency and the active limit") {
    Fixture f("default_destination_concurrency_limit = 2\nqmgr_message_active_limit = 3\n");
    // One request per session, so that requests in flight count sessions.
    f.s.batch_limit = [](const std::string&) { return 1; };
    std::vector<std::string> ids;
    for (int i = 0; i < 6; ++i) ids.push_back(queue_message(f.q, "s@example.org", {"u@far.example"}));
    f.start();
    CHECK(f.m->active_count() == 3);
    CHECK(f.agents.calls.size() == 2);  // concurrency 2 for far.example
    int delivered = 0;
    for (int round = 0; round < 20 && !f.agents.calls.empty(); ++round) {
        f.agents.answer(K::Sent, "2.0.0", "ok");
        ++delivered;
        run(f.base);
        CHECK(f.agents.calls.size() <= 2);
        CHECK(f.m->active_count() <= 3);
    }
    CHECK(delivered == 6);
    CHECK(f.q.list("incoming").empty());
    CHECK(f.q.list("active").empty());
}

TEST_CASE("qmgr: resumes active/ at start, moves a corrupt file aside") {
    Fixture f;
    std::string id = queue_message(f.q, "s@example.org", {"alice@example.com"}, queue::Active);
    // A damaged file in incoming/.
    std::string bad = queue_message(f.q, "s@example.org", {"bob@example.com"});
    REQUIRE(::truncate((f.q.path + "/incoming/" + bad).c_str(), 20) == 0);
    f.start();
    REQUIRE(f.agents.calls.size() == 1);
    CHECK(f.agents.calls[0].req.queue_id == id);
    CHECK(f.q.list("corrupt") == std::vector<std::string>{bad});
}

TEST_CASE("qmgr: lost agent defers; error transport bounces without an agent") {
    Fixture f("default_transport = error:5.7.1 no outbound mail here\n");
    std::string id = queue_message(f.q, "s@example.org", {"alice@example.com", "x@far.example"});
    f.start();
    REQUIRE(f.agents.calls.size() == 1);  // alice only: far.example goes to the error transport
    f.agents.fail("lost connection with private/local while delivering");
    run(f.base);
    // x bounced at once (a bounce to s@example.org was queued), alice deferred.
    REQUIRE(f.q.list("deferred") == std::vector<std::string>{id});
    auto log = queue::read_defer_log(f.q.path, id);
    REQUIRE(log);
    REQUIRE(log->size() == 1);
    CHECK(log->at(0).address == "alice@example.com");
    CHECK(log->at(0).reason.find("lost connection") != std::string::npos);
    // The bounce to s@example.org hits the error transport too, so the
    // postmaster gets the notice instead.
    REQUIRE(f.agents.calls.size() == 1);
    CHECK(f.agents.calls[0].req.recipients.at(0).address == "postmaster@mail.example.com");
}

TEST_CASE("qmgr: a message past maximal_queue_lifetime is returned at its next failure") {
    Fixture f("maximal_queue_lifetime = 1d\n");
    auto old = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch() - std::chrono::hours(48))
                   .count();
    std::string id = queue_message(f.q, "s@example.org", {"alice@example.com"}, queue::Incoming, old);
    f.start();
    f.agents.answer(K::Deferred, "4.4.1", "connection refused");
    run(f.base);
    CHECK(f.q.list("deferred").empty());
    REQUIRE(f.agents.calls.size() == 1);  // the bounce
    CHECK(f.agents.calls[0].req.sender.empty());
}

TEST_CASE("qmgr: NOTIFY=SUCCESS gets a delivery report, NOTIFY=FAILURE alone does not") {
    Fixture f;
    auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    auto w = queue::Writer::create(f.q.path, now);
    REQUIRE(w);
    queue::Envelope env;
    env.sender = "s@example.org";
    queue::Recipient a, b;
    a.address = "a@example.com";
    a.notify = queue::NotifySuccess | queue::NotifyFailure;
    b.address = "b@example.com";
    b.notify = queue::NotifyFailure;
    env.recipients = {a, b};
    REQUIRE(w->write_envelope(env));
    REQUIRE(w->append("Subject: x\r\n\r\nx\r\n"));
    REQUIRE(w->finish());
    REQUIRE(w->commit());
    f.start();
    REQUIRE(f.agents.calls.size() == 2);  // local: one recipient per request
    f.agents.answer(K::Sent, "2.0.0", "delivered to maildir");
    f.agents.answer(K::Sent, "2.0.0", "delivered to maildir");
    run(f.base);
    // One report, about a only, from <> to the sender.
    REQUIRE(f.agents.calls.size() == 1);
    auto& req = f.agents.calls[0].req;
    CHECK(req.sender.empty());
    CHECK(req.recipients.at(0).address == "s@example.org");
    std::string qf = f.q.path + "/" + req.queue_file;
    UniqueFd fd(::open(qf.c_str(), O_RDONLY));
    std::uint64_t off = 0;
    REQUIRE(queue::read_envelope(fd.get(), &off));
    std::string text;
    REQUIRE(queue::read_content(fd.get(), off, [&](std::string_view s) -> Result<void> {
        text.append(s);
        return {};
    }));
    CHECK(text.find("Action: delivered") != std::string::npos);
    CHECK(text.find("rfc822; a@example.com") != std::string::npos);
    CHECK(text.find("b@example.com\r\nAction") == std::string::npos);
}

TEST_CASE("qmgr: one delay notice after delay_warning_time, flagged in the queue file") {
    Fixture f("delay_warning_time = 1h\n");
    auto old = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch() - std::chrono::hours(2))
                   .count();
    std::string id = queue_message(f.q, "s@example.org", {"alice@example.com"}, queue::Incoming, old);
    f.start();
    f.agents.answer(K::Deferred, "4.2.2", "mailbox full");
    run(f.base);
    REQUIRE(f.q.list("deferred") == std::vector<std::string>{id});
    REQUIRE(f.agents.calls.size() == 1);  // the delay notice
    CHECK(f.agents.calls[0].req.sender.empty());
    CHECK(f.agents.calls[0].req.recipients.at(0).address == "s@example.org");
    f.agents.answer(K::Sent, "2.0.0", "ok");
    run(f.base);
    UniqueFd fd(::open((f.q.path + "/deferred/" + id).c_str(), O_RDONLY));
    auto env = queue::read_envelope(fd.get());
    REQUIRE(env);
    CHECK(env->delay_warned);
    // The next failure sends no second notice.
    f.m->trigger('F');
    run(f.base);
    REQUIRE(f.agents.calls.size() == 1);
    CHECK(f.agents.calls[0].req.queue_id == id);
    f.agents.answer(K::Deferred, "4.2.2", "mailbox full");
    run(f.base);
    CHECK(f.agents.calls.empty());
}

TEST_CASE("qmgr: drain finishes deliveries in flight, starts none, then reports idle") {
    Fixture f("default_destination_concurrency_limit = 1\n");
    f.s.batch_limit = [](const std::string&) { return 1; };
    std::string a = queue_message(f.q, "s@example.org", {"u@far.example"});
    std::string b = queue_message(f.q, "s@example.org", {"u@far.example"});
    f.start();
    REQUIRE(f.agents.calls.size() == 1);
    bool idle = false;
    f.m->on_idle = [&] { idle = true; };
    f.m->drain();
    f.agents.answer(K::Sent, "2.0.0", "ok");
    run(f.base);
    CHECK(idle);
    CHECK(f.agents.calls.empty());  // the second message was not started
    CHECK(f.m->in_flight() == 0);
    CHECK(f.q.list("active").size() == 1);  // the other one waits for the next qmgr
}

TEST_CASE("qmgr: remote mail goes to smtp in sessions of up to 10 requests") {
    Fixture f;
    for (int i = 0; i < 25; ++i) queue_message(f.q, "s@example.org", {"u@far.example"});
    f.start();
    CHECK(f.agents.sessions == std::vector<std::size_t>{10, 10, 5});
    CHECK(f.agents.calls.front().req.transport == "smtp");
    for (int i = 0; i < 25; ++i) f.agents.answer(K::Sent, "2.0.0", "ok");
    run(f.base);
    CHECK(f.q.list("active").empty());
}

TEST_CASE("qmgr: messages for one local recipient go to local as one batch per session") {
    Fixture f;
    for (int i = 0; i < 70; ++i) queue_message(f.q, "s@example.org", {"alice@example.com"});
    f.start();
    // 70 requests for one destination: a session of 64 and one of 6 (concurrency 2).
    CHECK(f.agents.sessions == std::vector<std::size_t>{64, 6});
    REQUIRE(f.agents.calls.size() == 70);
    for (int i = 0; i < 70; ++i) f.agents.answer(K::Sent, "2.0.0", "delivered to maildir");
    run(f.base);
    CHECK(f.q.list("active").empty());
    CHECK(f.m->in_flight() == 0);
    // A new message after that starts a new session.
    queue_message(f.q, "s@example.org", {"alice@example.com"});
    f.m->trigger('A');
    run(f.base);
    CHECK(f.agents.sessions.size() == 3);
}

TEST_CASE("qmgr: a message held during its delivery keeps the outcome in the held file") {
    Fixture f("default_destination_recipient_limit = 10\n");
    std::string id = queue_message(f.q, "s@example.org", {"a@far.example", "b@far.example"});
    f.start();
    REQUIRE(f.agents.calls.size() == 1);
    REQUIRE(queue::move_to(f.q.path, id, queue::Active, queue::Hold));
    auto c = std::move(f.agents.calls[0]);
    f.agents.calls.clear();
    delivery::Reply rep;
    rep.outcomes.push_back({0, K::Sent, "2.0.0", "mx", "250 ok"});
    rep.outcomes.push_back({1, K::Sent, "2.0.0", "mx", "250 ok"});
    c.done(std::move(rep));
    run(f.base);
    REQUIRE(f.q.list("hold") == std::vector<std::string>{id});
    UniqueFd fd(::open((f.q.path + "/hold/" + id).c_str(), O_RDONLY));
    auto env = queue::read_envelope(fd.get());
    REQUIRE(env);
    CHECK(env->recipients[0].status == queue::StatusDone);
    CHECK(env->recipients[1].status == queue::StatusDone);
}
