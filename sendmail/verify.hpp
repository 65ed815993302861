// NAME
//   sendmail/verify.hpp - sendmail -bv: where each address would go, without sending
// PURPOSE
//   For each address, the route qmgr would take (delivery::Router: the same
//   code, the same main.cf and transport_maps), and whether that transport
//   exists in master.cf. For the local and virtual transports also what
//   local(8) would find, as far as the invoking user can see it: an alias
//   (alias_maps, the whole local part, then without its +extension), a
//   passwd user (not root: local refuses uid 0), a virtual_mailbox_maps
//   entry. One line per address on stdout:
//     ADDR: deliverable via TRANSPORT (NEXTHOP)[: DETAIL]
//     ADDR: deferred: REASON          (it would wait in the queue)
//     ADDR: undeliverable: REASON     (it would bounce)
//   Not a delivery: .forward files, :include: files and the targets of an
//   alias are not followed (they belong to their owners), no DNS, no remote
//   server is asked. Postfix's sendmail -bv mails such a report; Postern
//   prints it.
// SYNOPSIS
//   auto tables = sendmail::system_tables(ctx);          // alias/virtual maps, passwd, master.cf
//   sendmail::Verifier v(ctx.params, router, std::move(tables));
//   Verdict d = v.check(address);  puts(verdict_line(address.spec(), d).c_str());
//   int rc = sendmail::verify_addresses(opts, ctx, STDOUT_FILENO);
// ERRORS
//   A table that cannot be opened or read makes the answers that need it
//   "deferred" (local would defer the same way). verify_addresses returns
//   EX_OK when every address is deliverable, EX_NOUSER when one is not,
//   EX_TEMPFAIL when one would be deferred, EX_CONFIG when transport_maps
//   cannot be opened, EX_DATAERR for a malformed address, EX_USAGE for none.
// SECURITY
//   Runs as the invoking user: it reads only what that user may read, and
//   reports an alias's existence, never its value (which may name private
//   addresses or commands). Lookup keys are bounded by maps::MaxKeyLength.
// SEE ALSO
//   delivery/route.hpp, local/aliases.hpp, sendmail/submit.hpp, doc/sendmail.1
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "address/address.hpp"
#include "config/config.hpp"
#include "delivery/route.hpp"
#include "privs/privs.hpp"
#include "sendmail/options.hpp"
#include "sendmail/submit.hpp"
#include "util/result.hpp"

namespace postern::sendmail {

struct Verdict {
    enum class Kind { Deliverable, Deferred, Undeliverable };
    Kind kind = Kind::Deferred;
    std::string text;  // what follows "deliverable via ", "deferred: " or "undeliverable: "
};

using MapLookup = std::function<Result<std::optional<std::string>>(std::string_view key)>;

// What -bv consults besides the router. Empty functions are not asked.
struct VerifyTables {
    MapLookup alias;             // alias_maps
    MapLookup virtual_mailbox;   // virtual_mailbox_maps
    std::function<Result<std::optional<privs::UserInfo>>(std::string_view name)> user;  // passwd
    bool services_known = false;       // master.cf could be read
    std::set<std::string> services;    // its unix services (transports)
};

class Verifier {
public:
    Verifier(const config::Params& p, const delivery::Router& router, VerifyTables t);
    // a: a parsed address with a domain (sendmail qualifies bare names first).
    Verdict check(const address::Address& a) const;

private:
    Verdict check_local(const address::Address& a, const delivery::Route& r) const;
    Verdict check_virtual(const address::Address& a, const delivery::Route& r) const;

    const delivery::Router& router_;
    VerifyTables t_;
    std::string delimiters_;
    std::string local_transport_, virtual_transport_;  // transport names, without next hop
    std::string double_bounce_;                         // lower case
};

// "ADDR: deliverable via local (host): user ann", "ADDR: undeliverable: ..."
std::string verdict_line(std::string_view address, const Verdict& v);

// The real tables: alias_maps and virtual_mailbox_maps opened now (one that
// cannot be opened fails its lookups), getpwnam, ctx.config_dir/master.cf.
VerifyTables system_tables(const Context& ctx);

// sendmail -bv: parses and qualifies o.recipients, prints one line per
// address to out_fd, returns the exit status (see ERRORS).
int verify_addresses(const Options& o, const Context& ctx, int out_fd);

}  // namespace postern::sendmail
