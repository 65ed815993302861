// NAME
//   smtp/agent.hpp - the smtp delivery agent: qmgr's requests to remote servers
// PURPOSE
//   Serves qmgr's connections (one per destination session, requests in
//   order, replies in the same order) on one event loop: for each request it
//   opens the queue file, finds the next hop's servers (smtp/dest.hpp), or a
//   cached idle connection to the same next hop, tries the servers in order
//   until one takes the transaction (smtp/conn.hpp, smtp/protocol.hpp), and
//   answers qmgr with one outcome per recipient, logging each in Postfix's
//   shape ("to=<a@b>, relay=mx.example[192.0.2.1]:25, delay=0.5,
//   delays=0.01/0/0.3/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)"). A
//   connection that ends its transaction ready for more is kept for
//   smtp_connection_cache_time_limit for the next message to that next hop.
//   Not the scheduling (qmgr) and not the protocol (smtp/protocol.cpp).
// SYNOPSIS
//   auto res = load_resources(ctx);         // before the jail: resolver, CA file, tables
//   Agent agent(ctx, std::move(res));       // after the jail
//   agent.accept(std::move(conn));          // each connection from qmgr
// ERRORS
//   A malformed request drops qmgr's connection (qmgr defers the message).
//   A queue file that cannot be read defers its recipients (4.3.0).
// SECURITY
//   Runs unprivileged and chrooted; everything from the network goes through
//   smtp/protocol.cpp's bounded parser; requests are checked by lib/delivery.
// SEE ALSO
//   smtp/conn.hpp, smtp/dest.hpp, delivery/delivery.hpp, smtp(8)
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "delivery/delivery.hpp"
#include "dns/dns.hpp"
#include "maps/maps.hpp"
#include "service/service.hpp"
#include "smtp/conn.hpp"
#include "smtp/dest.hpp"
#include "tls/tls.hpp"

namespace postern::smtp {

struct Resources {
    std::unique_ptr<dns::Resolver> resolver;
    tls::SslCtxPtr tls;
    std::vector<std::unique_ptr<maps::Map>> tls_policy, sasl_passwords;
};
Resources load_resources(service::Context& ctx);

class Agent {
public:
    Agent(service::Context& ctx, Resources res);
    ~Agent();
    void accept(service::Connection conn);
    // master asked us to stop taking work: close idle cached connections.
    void drain();

private:
    struct QmgrConn;
    struct Delivery;
    void read_requests(QmgrConn* q);
    void start_next(QmgrConn* q);
    void start(Delivery* d);
    void resolved(Delivery* d, const DestResult& r);
    void try_next(Delivery* d);
    void on_conn(Delivery* d, Conn& c);
    void transaction_done(Delivery* d, const TransactionResult& r);
    void finish(Delivery* d);
    void finish_all(Delivery* d, delivery::Outcome::Kind kind, const std::string& dsn, const std::string& relay,
                    const std::string& reason);
    void park(const std::string& key, std::unique_ptr<Conn> c);
    std::unique_ptr<Conn> take_cached(const std::string& key);
    void bury(std::unique_ptr<Conn> c);
    void drop_qmgr(QmgrConn* q);
    // Error::config for a bad smtp_tls_policy_maps entry.
    Result<ClientSettings> settings_for(const std::string& nexthop, const Nexthop& hop) const;
    std::optional<std::string> lookup(const std::vector<std::unique_ptr<maps::Map>>& ms,
                                      const std::vector<std::string>& keys) const;

    service::Context& ctx_;
    Resources res_;
    ConnEnv env_;
    std::unique_ptr<DestResolver> dest_;
    std::string queue_dir_;
    std::map<QmgrConn*, std::unique_ptr<QmgrConn>> qmgr_;
    struct Cached {
        std::unique_ptr<Conn> conn;
        std::chrono::steady_clock::time_point idle_since;
    };
    std::map<std::string, std::deque<Cached>> cache_;
    // Freed on the next loop turn (their own callbacks may be running).
    std::vector<std::unique_ptr<Conn>> graveyard_;
    std::map<Delivery*, std::unique_ptr<Delivery>> deliveries_;  // in progress
    std::vector<std::unique_ptr<Delivery>> dead_deliveries_;
    std::vector<std::unique_ptr<QmgrConn>> dead_qmgr_;
    event::Event sweeper_, reaper_;
    bool draining_ = false;
};

}  // namespace postern::smtp
