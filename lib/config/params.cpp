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
    I("max_use", &P::max_use, "100", 1, 1000000000, "sessions a daemon process serves before it exits"),
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
    B("smtpd_sasl_auth_enable", &P::smtpd_sasl_auth_enable, "no", "offer and require SMTP AUTH (submission)"),
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
};

}  // namespace

std::span<const ParamDef> param_table() { return kTable; }

const ParamDef* find_param(std::string_view name) {
    for (const auto& d : kTable)
        if (d.name == name) return &d;
    return nullptr;
}

}  // namespace postern::config
