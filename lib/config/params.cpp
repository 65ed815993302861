// config/params.cpp - the one table of every main.cf parameter Postern knows.
#include <array>

#include "config/config.hpp"

namespace postern::config {
namespace {

using P = Params;

constexpr ParamDef S(std::string_view n, std::string P::*m, std::string_view def, std::string_view doc) {
    return {n, Type::Str, def, 0, 0, m, doc};
}
constexpr ParamDef I(std::string_view n, long long P::*m, std::string_view def, long long lo, long long hi,
                     std::string_view doc) {
    return {n, Type::Int, def, lo, hi, m, doc};
}
constexpr ParamDef T(std::string_view n, Seconds P::*m, std::string_view def, long long lo, long long hi,
                     std::string_view doc) {
    return {n, Type::Time, def, lo, hi, m, doc};
}

constexpr ParamDef E(std::string_view n, std::string P::*m, std::string_view def, std::string_view choices,
                     std::string_view doc) {
    return {n, Type::Str, def, 0, 0, m, doc, choices};
}
// A string kept unexpanded for per-use expansion (see ParamDef::late).
constexpr ParamDef L(std::string_view n, std::string P::*m, std::string_view def, std::string_view doc) {
    return {n, Type::Str, def, 0, 0, m, doc, {}, true};
}
constexpr ParamDef B(std::string_view n, bool P::*m, std::string_view def, std::string_view doc) {
    return {n, Type::Bool, def, 0, 0, m, doc};
}

// Note: defaults follow Postfix where Postfix has the parameter, so an
// administrator's main.cf means the same thing here.
const std::array kTable = {
    S("config_directory", &P::config_directory, "/etc/postern", "where main.cf and master.cf live (set by -c)"),
    S("queue_directory", &P::queue_directory, "/var/spool/postern", "the queue; also the chroot of jailed daemons"),
    S("daemon_directory", &P::daemon_directory, "/usr/libexec/postern", "where master finds daemon programs"),
    S("command_directory", &P::command_directory, "/usr/sbin", "where the postern and sendmail commands live"),
    S("data_directory", &P::data_directory, "/var/lib/postern", "writable data owned by mail_owner"),
    S("mail_owner", &P::mail_owner, "postern", "the unprivileged user of the jailed daemons"),
    S("setgid_group", &P::setgid_group, "posterndrop", "group of the maildrop directory and sendmail"),
    S("default_privs", &P::default_privs, "nobody", "user for commands and files named in aliases"),
    S("import_environment", &P::import_environment, "TZ LANG LC_ALL MAIL_CONFIG",
      "environment variables master passes to its children"),
    S("myhostname", &P::myhostname, "", "this host's fully qualified name (default: from the system)"),
    S("mydomain", &P::mydomain, "", "the domain of myhostname"),
    S("myorigin", &P::myorigin, "$myhostname", "domain appended to unqualified local senders"),
    S("mydestination", &P::mydestination, "$myhostname, localhost.$mydomain, localhost",
      "domains delivered locally"),
    S("inet_interfaces", &P::inet_interfaces, "all", "addresses inet services listen on"),
    E("inet_protocols", &P::inet_protocols, "all", "all ipv4 ipv6", "ipv4, ipv6 or all"),
    S("mynetworks", &P::mynetworks, "127.0.0.0/8 [::1]/128", "clients trusted to relay"),
    S("relay_domains", &P::relay_domains, "", "domains this host relays mail to"),
    S("maillog_file", &P::maillog_file, "", "log to this file instead of syslog (\"-\" = stderr)"),
    S("syslog_name", &P::syslog_name, "postern", "prefix of every log tag"),
    I("default_process_limit", &P::default_process_limit, "100", 1, 100000, "maxproc when master.cf says -"),
    I("max_use", &P::max_use, "100", 1, 1000000000, "sessions a daemon process serves per client slot before it exits"),
    T("max_idle", &P::max_idle, "100s", 1, 86400 * 7, "an idle daemon process exits after this long"),
    T("service_throttle_time", &P::service_throttle_time, "60s", 1, 86400,
      "pause before a broken service is started again"),
    T("master_stop_timeout", &P::master_stop_timeout, "10s", 1, 3600,
      "how long master waits for children to exit before SIGKILL"),
    I("service_client_limit", &P::service_client_limit, "500", 1, 100000,
      "concurrent clients per multi-session daemon process"),
    T("ipc_timeout", &P::ipc_timeout, "3600s", 1, 86400 * 7, "time limit for one IPC exchange"),
    T("daemon_timeout", &P::daemon_timeout, "18000s", 1, 86400 * 7, "time limit for one request to a daemon"),
    S("smtpd_tls_cert_file", &P::smtpd_tls_cert_file, "", "server certificate (PEM, chain after the leaf)"),
    S("smtpd_tls_key_file", &P::smtpd_tls_key_file, "$smtpd_tls_cert_file", "server private key (PEM)"),
    S("smtpd_banner", &P::smtpd_banner, "$myhostname ESMTP $mail_name", "text after 220 in the greeting"),
    S("mail_name", &P::mail_name, "Postern", "the name of this mail system"),
    E("smtpd_tls_security_level", &P::smtpd_tls_security_level, "may", "none may encrypt",
      "none, may (offer STARTTLS) or encrypt (require it before MAIL)"),
    B("smtpd_tls_wrappermode", &P::smtpd_tls_wrappermode, "no", "TLS from the first byte (port 465, RFC 8314)"),
    B("smtpd_sasl_auth_enable", &P::smtpd_sasl_auth_enable, "no", "offer SMTP AUTH (RFC 4954)"),
    B("smtpd_sasl_auth_required", &P::smtpd_sasl_auth_required, "no",
      "require AUTH before MAIL (530 5.7.0): submission and smtps"),
    B("smtpd_tls_auth_only", &P::smtpd_tls_auth_only, "yes",
      "offer AUTH only over TLS (no: also in plaintext, to loopback clients only)"),
    S("smtpd_sasl_path", &P::smtpd_sasl_path, "private/auth", "the auth daemon's socket, under queue_directory"),
    I("smtpd_sasl_failure_limit", &P::smtpd_sasl_failure_limit, "3", 1, 100,
      "failed AUTH commands before the session is closed"),
    S("smtpd_sender_login_maps", &P::smtpd_sender_login_maps, "",
      "tables: envelope sender -> login names that own it (empty: the user's own addresses)"),
    B("smtpd_reject_sender_login_mismatch", &P::smtpd_reject_sender_login_mismatch, "no",
      "refuse a MAIL FROM the authenticated user does not own (553 5.7.1)"),
    I("message_size_limit", &P::message_size_limit, "10240000", 1000, 1LL << 40, "largest message accepted, in bytes"),
    I("smtpd_recipient_limit", &P::smtpd_recipient_limit, "1000", 100, 1000000, "recipients per message"),
    I("line_length_limit", &P::line_length_limit, "2048", 512, 1000000, "longest SMTP command line, in bytes"),
    T("smtpd_timeout", &P::smtpd_timeout, "300s", 1, 3600, "time limit for each client command or data read"),
    I("smtpd_hard_error_limit", &P::smtpd_hard_error_limit, "20", 1, 1000, "errors before the session is closed"),
    I("smtpd_client_connection_count_limit", &P::smtpd_client_connection_count_limit, "50", 0, 100000,
      "concurrent sessions per client address in one smtpd process (0 = no limit)"),
    B("disable_vrfy_command", &P::disable_vrfy_command, "yes", "answer VRFY with the same 252 for every address"),
    S("recipient_delimiter", &P::recipient_delimiter, "+", "separates user and extension: user+ext"),
    S("alias_maps", &P::alias_maps, "hash:$config_directory/aliases", "alias tables; their keys are local recipients"),
    B("smtpd_reject_unlisted_recipient", &P::smtpd_reject_unlisted_recipient, "yes",
      "refuse unknown local users at RCPT (550 5.1.1)"),
    B("always_add_missing_headers", &P::always_add_missing_headers, "no",
      "add Date and Message-ID when a message lacks them (set on submission)"),
    T("smtpd_pregreet_wait", &P::smtpd_pregreet_wait, "0s", 0, 60,
      "pause before the greeting to catch clients that talk first (0 = none)"),
    B("smtpd_reject_pregreet", &P::smtpd_reject_pregreet, "yes",
      "refuse (554 and close) a client that talks before the greeting"),
    I("smtpd_client_connection_rate_limit", &P::smtpd_client_connection_rate_limit, "0", 0, 1000000,
      "sessions opened per client address and anvil_rate_time_unit in one smtpd process (0 = no limit)"),
    T("anvil_rate_time_unit", &P::anvil_rate_time_unit, "60s", 1, 3600, "the time unit of the rate limits"),
    S("smtpd_client_event_limit_exceptions", &P::smtpd_client_event_limit_exceptions, "$mynetworks",
      "clients exempt from the connection count and rate limits"),
    S("dns_servers", &P::dns_servers, "",
      "DNS servers to ask: addr, addr@port or [addr]:port (empty: /etc/resolv.conf and /etc/hosts)"),
    B("smtpd_peername_lookup", &P::smtpd_peername_lookup, "yes", "verify the client host name before the greeting"),
    T("smtpd_peername_lookup_timeout", &P::smtpd_peername_lookup_timeout, "10s", 1, 300,
      "time limit for the client host name lookup"),
    S("default_transport", &P::default_transport, "smtp", "transport for domains not otherwise routed"),
    S("local_transport", &P::local_transport, "local:$myhostname", "transport for mydestination domains"),
    S("virtual_transport", &P::virtual_transport, "virtual", "transport for virtual_mailbox_domains"),
    S("relay_transport", &P::relay_transport, "smtp", "transport for relay_domains"),
    S("relayhost", &P::relayhost, "", "next hop for mail to other domains: host, [host]:port"),
    S("transport_maps", &P::transport_maps, "", "tables: domain or address -> transport:nexthop"),
    S("virtual_mailbox_domains", &P::virtual_mailbox_domains, "", "domains whose users are virtual mailboxes"),
    I("qmgr_message_active_limit", &P::qmgr_message_active_limit, "20000", 1, 10000000,
      "messages qmgr holds in active/ at once"),
    I("queue_recycle_limit", &P::queue_recycle_limit, "1000", 0, 1000000,
      "finished queue files kept emptied in recycle/ for reuse (0 = unlink them)"),
    T("queue_run_delay", &P::queue_run_delay, "300s", 1, 86400, "how often qmgr scans deferred/"),
    T("minimal_backoff_time", &P::minimal_backoff_time, "300s", 1, 86400 * 7, "shortest pause before a retry"),
    T("maximal_backoff_time", &P::maximal_backoff_time, "4000s", 1, 86400 * 7, "longest pause before a retry"),
    T("maximal_queue_lifetime", &P::maximal_queue_lifetime, "5d", 0, 86400 * 100,
      "a message still undeliverable after this long is bounced"),
    T("bounce_queue_lifetime", &P::bounce_queue_lifetime, "5d", 0, 86400 * 100,
      "maximal_queue_lifetime for bounces (messages from <>)"),
    T("delay_warning_time", &P::delay_warning_time, "0h", 0, 86400 * 100,
      "warn the sender after a message is delayed this long (0 = never)"),
    I("default_destination_concurrency_limit", &P::default_destination_concurrency_limit, "20", 1, 10000,
      "parallel deliveries to one destination"),
    I("default_destination_recipient_limit", &P::default_destination_recipient_limit, "50", 1, 1000,
      "recipients per delivery request"),
    S("bounce_notice_recipient", &P::bounce_notice_recipient, "postmaster", "who gets double bounces"),
    S("double_bounce_sender", &P::double_bounce_sender, "double-bounce",
      "sender of double bounces; mail to it is discarded"),
    I("bounce_size_limit", &P::bounce_size_limit, "50000", 1, 1LL << 30,
      "most bytes of the original message returned in a bounce (beyond it: headers only)"),
    S("home_mailbox", &P::home_mailbox, "Maildir/",
      "mailbox relative to the home directory (ending in / = Maildir; empty = mail_spool_directory)"),
    S("mail_spool_directory", &P::mail_spool_directory, "/var/mail", "mbox spool used when home_mailbox is empty"),
    L("forward_path", &P::forward_path, "$home/.forward${recipient_delimiter}${extension}, $home/.forward",
      ".forward files tried, in order"),
    S("allow_mail_to_commands", &P::allow_mail_to_commands, "alias, forward",
      "where |command entries are allowed: alias, forward, include"),
    S("allow_mail_to_files", &P::allow_mail_to_files, "alias, forward",
      "where /file entries are allowed: alias, forward, include"),
    T("command_time_limit", &P::command_time_limit, "1000s", 1, 86400, "time limit for a delivery to a command"),
    I("mailbox_size_limit", &P::mailbox_size_limit, "51200000", 0, 1LL << 50,
      "largest mbox file, in bytes (0 = no limit)"),
    S("local_command_shell", &P::local_command_shell, "/bin/sh", "shell for commands that need one"),
    S("mailbox_delivery_lock", &P::mailbox_delivery_lock, "fcntl, dotlock", "how mbox files are locked"),
    S("virtual_mailbox_maps", &P::virtual_mailbox_maps, "", "tables: address -> maildir under virtual_mailbox_base"),
    S("virtual_mailbox_base", &P::virtual_mailbox_base, "", "directory the virtual mailbox paths are relative to"),
    S("virtual_uid_maps", &P::virtual_uid_maps, "", "owner uid of virtual mailboxes: static:N or tables"),
    S("virtual_gid_maps", &P::virtual_gid_maps, "", "group gid of virtual mailboxes: static:N or tables"),
    S("alias_database", &P::alias_database, "hash:$config_directory/aliases",
      "the alias databases newaliases (sendmail -bi) rebuilds"),
    S("authorized_submit_users", &P::authorized_submit_users, "static:anyone",
      "users who may submit mail with sendmail: static:anyone, or a list of user names"),
    S("authorized_flush_users", &P::authorized_flush_users, "static:anyone",
      "users who may flush the queue with sendmail -q"),
    S("authorized_mailq_users", &P::authorized_mailq_users, "static:anyone",
      "users who may list the queue with mailq (sendmail -bp)"),
    S("sendmail_sender_override_users", &P::sendmail_sender_override_users, "static:anyone",
      "users whose sendmail -f/-r sender is used as given (others get their own address)"),
    I("header_size_limit", &P::header_size_limit, "102400", 1000, 1LL << 30,
      "longest header field pickup passes without a warning, in bytes (the message is kept whole)"),
    S("smtp_helo_name", &P::smtp_helo_name, "$myhostname", "the name the smtp client sends in EHLO/HELO"),
    T("smtp_connect_timeout", &P::smtp_connect_timeout, "30s", 1, 3600, "time limit for a TCP connection to a server"),
    T("smtp_helo_timeout", &P::smtp_helo_timeout, "300s", 1, 3600,
      "time limit for the greeting and the reply to EHLO/HELO"),
    T("smtp_starttls_timeout", &P::smtp_starttls_timeout, "300s", 1, 3600,
      "time limit for the reply to STARTTLS and the TLS handshake"),
    T("smtp_mail_timeout", &P::smtp_mail_timeout, "300s", 1, 3600, "time limit for the reply to MAIL FROM (and AUTH)"),
    T("smtp_rcpt_timeout", &P::smtp_rcpt_timeout, "300s", 1, 3600, "time limit for the reply to RCPT TO"),
    T("smtp_data_init_timeout", &P::smtp_data_init_timeout, "120s", 1, 3600, "time limit for the reply to DATA"),
    T("smtp_data_xfer_timeout", &P::smtp_data_xfer_timeout, "180s", 1, 3600,
      "time limit for the server to take more of the message"),
    T("smtp_data_done_timeout", &P::smtp_data_done_timeout, "600s", 1, 3600,
      "time limit for the reply to the end of the message"),
    T("smtp_quit_timeout", &P::smtp_quit_timeout, "300s", 1, 3600, "time limit for the reply to QUIT"),
    E("smtp_tls_security_level", &P::smtp_tls_security_level, "may", "none may encrypt verify",
      "TLS towards servers: none, may (opportunistic STARTTLS), encrypt, verify"),
    S("smtp_tls_policy_maps", &P::smtp_tls_policy_maps, "",
      "tables: next-hop domain or [host]:port -> none, may, encrypt or verify"),
    S("smtp_tls_CAfile", &P::smtp_tls_CAfile, "/etc/ssl/certs/ca-certificates.crt",
      "the CA certificates for smtp_tls_security_level = verify (read at start, before the chroot)"),
    B("smtp_sasl_auth_enable", &P::smtp_sasl_auth_enable, "no", "authenticate to relays (smtp_sasl_password_maps)"),
    S("smtp_sasl_password_maps", &P::smtp_sasl_password_maps, "",
      "tables: [host]:port or host -> user:password for AUTH to a relay (over TLS only)"),
    T("smtp_connection_cache_time_limit", &P::smtp_connection_cache_time_limit, "2s", 0, 300,
      "how long an idle connection waits for the next message to the same next hop"),
    T("smtp_connection_reuse_time_limit", &P::smtp_connection_reuse_time_limit, "300s", 1, 86400,
      "age after which a connection is not reused"),
    I("smtp_mx_address_limit", &P::smtp_mx_address_limit, "5", 1, 100, "addresses tried per delivery attempt"),
    S("smtp_bind_address", &P::smtp_bind_address, "", "the local address of connections to servers (empty: any)"),
    S("auth_backends", &P::auth_backends, "pam, virtual", "password backends of the auth daemon: pam, virtual"),
    S("auth_pam_service", &P::auth_pam_service, "postern", "PAM service name (/etc/pam.d/NAME)"),
    I("auth_pam_concurrency", &P::auth_pam_concurrency, "4", 1, 64, "PAM conversations in progress at once"),
    S("virtual_user_database", &P::virtual_user_database, "hash:$config_directory/users",
      "virtual users: address -> password hash, mailbox, quota (postern user; root only)"),
    S("virtual_user_mailbox_map", &P::virtual_user_mailbox_map, "hash:$config_directory/user_mailboxes",
      "address -> mailbox table that postern user keeps for virtual_mailbox_maps"),
    T("auth_failure_delay", &P::auth_failure_delay, "2s", 0, 3600,
      "delay of a failed authentication, doubled per recent failure of the client or user"),
    T("auth_failure_max_delay", &P::auth_failure_max_delay, "15s", 0, 3600, "upper bound of auth_failure_delay"),
    I("auth_lockout_threshold", &P::auth_lockout_threshold, "10", 1, 100000,
      "recent failures of a client or user after which it is refused for auth_lockout_time"),
    T("auth_lockout_time", &P::auth_lockout_time, "10m", 1, 86400 * 7,
      "how long a locked-out client or user is refused; failures older than this are forgotten"),
};

}  // namespace

std::span<const ParamDef> param_table() { return kTable; }

const ParamDef* find_param(std::string_view name) {
    for (const auto& d : kTable)
        if (d.name == name) return &d;
    return nullptr;
}

}  // namespace postern::config
