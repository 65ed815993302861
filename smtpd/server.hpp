// NAME
//   smtpd/server.hpp - smtpd's connection handling on libevent
// PURPOSE
//   Owns the per-process state of smtpd (settings, local recipient table,
//   commit pool, DNS resolver) and, for each accepted connection, a
//   bufferevent feeding a Session and carrying its replies, with timeouts,
//   back-pressure while a commit is in flight, and a per-client connection
//   limit. The greeting waits for the client's verified host name
//   (smtpd/peername.hpp, bounded by smtpd_peername_lookup_timeout). When an
//   alias map was rebuilt, the connection in hand is served with the old
//   table and the process asks to exit (Context::request_exit), so that the
//   next clients get a fresh smtpd. Not the SMTP logic (smtpd/session.cpp)
//   and not the queue format (lib/queue).
// SYNOPSIS
//   auto res = load_resources(ctx);   // before the jail: recipients, TLS key, resolver
//   Server srv(ctx, std::move(res));  // after the jail
//   srv.accept(std::move(conn));      // from the service skeleton
// ERRORS
//   Queue and commit failures reach the client as 451 4.3.0. A bad
//   dns_servers or smtpd_peername_lookup value is fatal at start-up (EX_CONFIG).
// SEE ALSO
//   smtpd/session.hpp, service/service.hpp, queue/queue.hpp
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "auth/client.hpp"
#include "dns/dns.hpp"
#include "queue/queue.hpp"
#include "service/service.hpp"
#include "smtpd/peername.hpp"
#include "smtpd/recipients.hpp"
#include "smtpd/senders.hpp"
#include "smtpd/session.hpp"
#include "tls/tls.hpp"

namespace postern::smtpd {

// What smtpd loads as root before the jail: the recipient table, the TLS
// certificate and key (the key file is root's, mode 0600), and the DNS
// resolver (it reads /etc/resolv.conf and /etc/hosts when it is created).
// No resolver when smtpd_peername_lookup = no: every client is "unknown".
struct Resources {
    LocalRecipients recipients;
    SenderLogins senders;
    tls::SslCtxPtr tls;
    std::unique_ptr<dns::Resolver> resolver;
    std::chrono::milliseconds peername_timeout{10000};
};
Resources load_resources(service::Context& ctx);

class Server : public Backend {
public:
    Server(service::Context& ctx, Resources res);
    ~Server() override;
    void accept(service::Connection conn);

    // Backend
    std::optional<bool> local_user_exists(std::string_view local) override;
    std::optional<bool> virtual_user_exists(std::string_view address) override;
    Result<std::unique_ptr<MessageWriter>> open_message(const Envelope& env) override;
    void commit(std::unique_ptr<MessageWriter> w, std::function<void(Result<std::string>)> done) override;
    std::int64_t now_us() override;
    void authenticate(std::string_view mechanism, std::string_view user, std::string_view password, const Peer& client,
                      bool tls, std::function<void(AuthOutcome, AuthUser)> done) override;
    std::optional<bool> sender_owned(std::string_view sender, const AuthUser& user) override;

private:
    struct Conn;
    void arm(Conn* cp);
    bool rate_ok(const std::string& addr);
    void reap();
    void trigger_qmgr();

    service::Context& ctx_;
    Settings settings_;
    LocalRecipients recipients_;
    SenderLogins senders_;
    tls::SslCtxPtr tls_;
    // Before conns_: the sessions' lookups must go before the resolver does.
    std::unique_ptr<dns::Resolver> resolver_;
    std::chrono::milliseconds peername_timeout_;
    bool wrapper_ = false;
    std::string queue_dir_;
    queue::CommitPool pool_;
    std::unique_ptr<auth::Client> auth_;  // smtpd_sasl_auth_enable: the auth daemon
    std::map<Conn*, std::unique_ptr<Conn>> conns_;
    std::map<std::string, int> per_client_;
    util::NetList limit_exceptions_;
    std::map<std::string, std::deque<std::chrono::steady_clock::time_point>> rates_;
    event::Event reaper_, trigger_timer_;
    std::chrono::steady_clock::time_point last_trigger_{};
};

}  // namespace postern::smtpd
