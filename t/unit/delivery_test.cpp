// Unit tests for lib/delivery: request/reply round trips, strict decoding, the status log line.
#include <catch2/catch.hpp>
#include <string>

#include "delivery/delivery.hpp"
#include "ipc/attrs.hpp"

using namespace postern;
using namespace postern::delivery;

namespace {

Request sample() {
    Request r;
    r.queue_id = "0000000000B1";
    r.queue_file = "active/0000000000B1";
    r.content_offset = 200;
    r.arrival_us = 1000000;
    r.active_us = 1500000;
    r.sender = "a@example.org";
    r.ret = "HDRS";
    r.transport = "local";
    r.nexthop = "example.com";
    r.recipients.push_back({0, "bob@example.com", "rfc822;bob@example.com", 6});
    r.recipients.push_back({3, "carol@example.com", "", 0});
    return r;
}

// Re-encode a list with one attribute replaced.
ipc::AttrList with(const ipc::AttrList& a, std::string_view name, std::string_view value) {
    ipc::AttrList out;
    for (auto& x : a) out.add(x.name, x.name == name ? value : std::string_view(x.value));
    return out;
}

}  // namespace

TEST_CASE("delivery request round trip") {
    Request r = sample();
    auto d = decode_request(encode(r));
    REQUIRE(d);
    CHECK(d->queue_id == r.queue_id);
    CHECK(d->queue_file == r.queue_file);
    CHECK(d->content_offset == 200);
    CHECK(d->arrival_us == 1000000);
    CHECK(d->active_us == 1500000);
    CHECK(d->sender == "a@example.org");
    CHECK(d->ret == "HDRS");
    CHECK(d->nexthop == "example.com");
    REQUIRE(d->recipients.size() == 2);
    CHECK(d->recipients[0].address == "bob@example.com");
    CHECK(d->recipients[0].orcpt == "rfc822;bob@example.com");
    CHECK(d->recipients[0].notify == 6);
    CHECK(d->recipients[1].index == 3);
    CHECK(d->recipients[1].orcpt.empty());
}

TEST_CASE("delivery request decoding is strict") {
    auto a = encode(sample());
    CHECK_FALSE(decode_request(with(a, "queue_file", "../etc/passwd")));
    CHECK_FALSE(decode_request(with(a, "queue_file", "deferred/0000000000B1")));
    CHECK_FALSE(decode_request(with(a, "queue_file", "active/0000000000B2")));
    CHECK_FALSE(decode_request(with(a, "count", "3")));
    CHECK_FALSE(decode_request(with(a, "count", "0")));
    CHECK_FALSE(decode_request(with(a, "rcpt_1", "0 0 x@y")));            // no NUL, and index 0 repeated
    CHECK_FALSE(decode_request(with(a, "rcpt_1", std::string("0 0 x@y\0", 8))));  // index repeated
    CHECK_FALSE(decode_request(with(a, "rcpt_1", std::string("1 99 x@y\0", 9))));  // notify out of range
    CHECK_FALSE(decode_request(with(a, "smtputf8", "yes")));
    CHECK_FALSE(decode_request(with(a, "request", "DeliveryReply")));
    auto extra = a;
    extra.add("surprise", "1");
    CHECK_FALSE(decode_request(extra));
}

TEST_CASE("delivery reply round trip and checks") {
    Request r = sample();
    Reply rep;
    rep.outcomes.push_back({3, Outcome::Kind::Bounced, "5.1.1", "local", "unknown user: \"carol\"\r\nX"});
    rep.outcomes.push_back({0, Outcome::Kind::Sent, "2.0.0", "local", "delivered to maildir"});
    auto d = decode_reply(encode(rep), r);
    REQUIRE(d);
    REQUIRE(d->outcomes.size() == 2);
    CHECK(d->outcomes[0].index == 3);
    CHECK(d->outcomes[0].kind == Outcome::Kind::Bounced);
    CHECK(d->outcomes[0].reason.find('\r') == std::string::npos);  // sanitized on encode
    CHECK(d->outcomes[1].kind == Outcome::Kind::Sent);
    CHECK(d->outcomes[1].relay == "local");

    Reply bad;
    bad.outcomes.push_back({7, Outcome::Kind::Sent, "2.0.0", "local", "x"});
    CHECK_FALSE(decode_reply(encode(bad), r));  // index not in the request
    Reply twice;
    twice.outcomes.push_back({0, Outcome::Kind::Sent, "2.0.0", "local", "x"});
    twice.outcomes.push_back({0, Outcome::Kind::Sent, "2.0.0", "local", "x"});
    CHECK_FALSE(decode_reply(encode(twice), r));
    auto a = encode(rep);
    CHECK_FALSE(decode_reply(with(a, "out_1", std::string("0 S 5.0.0\0local\0x", 17)), r));  // class mismatch
    CHECK_FALSE(decode_reply(with(a, "out_1", std::string("0 Q 2.0.0\0local\0x", 17)), r));  // unknown kind
    CHECK_FALSE(decode_reply(with(a, "out_1", std::string("0 R 4.0.0\0local\0x", 17)), r));  // relayed is sent
}

TEST_CASE("delivery reply carries where the DSN duties went") {
    Request r = sample();
    for (auto h : {Outcome::Handoff::Final, Outcome::Handoff::Relayed, Outcome::Handoff::Passed}) {
        Reply rep;
        Outcome o{0, Outcome::Kind::Sent, "2.0.0", "mx.example[192.0.2.1]:25", "250 ok"};
        o.handoff = h;
        rep.outcomes.push_back(o);
        auto d = decode_reply(encode(rep), r);
        REQUIRE(d);
        CHECK(d->outcomes[0].kind == Outcome::Kind::Sent);
        CHECK(d->outcomes[0].handoff == h);
    }
    // Only a sent recipient has a hand-off; the others are Final.
    Reply rep;
    Outcome o{0, Outcome::Kind::Deferred, "4.4.1", "none", "x"};
    o.handoff = Outcome::Handoff::Passed;
    rep.outcomes.push_back(o);
    auto d = decode_reply(encode(rep), r);
    REQUIRE(d);
    CHECK(d->outcomes[0].handoff == Outcome::Handoff::Final);
}

TEST_CASE("dsn codes") {
    CHECK(valid_dsn("2.0.0"));
    CHECK(valid_dsn("5.1.10"));
    CHECK(valid_dsn("4.123.456"));
    CHECK_FALSE(valid_dsn("3.0.0"));
    CHECK_FALSE(valid_dsn("5.0"));
    CHECK_FALSE(valid_dsn("5.0.0.0"));
    CHECK_FALSE(valid_dsn("5.1234.0"));
    CHECK_FALSE(valid_dsn("5..0"));
}

TEST_CASE("status line has Postfix's shape") {
    Request r = sample();
    Outcome o{0, Outcome::Kind::Sent, "2.0.0", "local", "delivered to maildir"};
    std::string line = status_line(r, "bob@example.com", "root@example.com", o, 1600000, 1700000);
    CHECK(line == "to=<bob@example.com>, orig_to=<root@example.com>, relay=local, delay=0.7, "
                  "delays=0.5/0.1/0/0.1, dsn=2.0.0, status=sent (delivered to maildir)");
    CHECK(status_line(r, "bob@example.com", "bob@example.com", o, 1600000, 1700000).find("orig_to") ==
          std::string::npos);
    // With a connection set-up time (smtp): c is from the start to the connection, d the rest.
    Outcome s{0, Outcome::Kind::Sent, "2.0.0", "mx.example[192.0.2.1]:25", "250 2.0.0 Ok"};
    CHECK(status_line(r, "bob@example.com", "", s, 1600000, 1700000, 1630000).find("delays=0.5/0.1/0.03/0.07,") !=
          std::string::npos);
}
