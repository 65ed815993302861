// NAME
//   config/config.hpp - main.cf and master.cf, Postfix-shaped
// PURPOSE
//   Reads main.cf (`name = value`, comments, continuation lines, `$name`,
//   `${name}` and `$(name)` expansion, `${name?text}` / `${name:text}`) into a
//   typed Params struct whose members are named exactly like the parameters,
//   and master.cf into a list of services. Every known parameter, its type,
//   default and range lives in one table (params.cpp). Not for reading maps
//   (lib/maps) or per-user files.
// SYNOPSIS
//   auto cfg = config::Config::load("/etc/postern", overrides, &warnings);
//   if (!cfg) { report(cfg.error().text); }   // "file:line: message" lines
//   cfg->params().queue_directory;  cfg->expand("$myhostname");
//   auto svcs = config::load_master_cf(dir);  // Result<std::vector<Service>>
// ERRORS
//   Invalid values, bad syntax and undefined or recursive `$name` references
//   are errors (all of them reported, one per line, as `file:line: message`);
//   unknown parameter names are warnings.
// SECURITY
//   Config files are trusted (root-owned) but still parsed with limits: at most
//   1 MiB per file, 100,000 bytes per value, expansion depth 20.
// SEE ALSO
//   config/params.cpp (the table), postern check, doc/postern.conf.5
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "util/result.hpp"

namespace postern::config {

using Seconds = std::chrono::seconds;

// Every parameter Postern knows. Members carry their main.cf names (STYLE N2);
// the table in params.cpp gives each its type, default and range.
struct Params {
    // Locations and identities.
    std::string config_directory;
    std::string queue_directory;
    std::string daemon_directory;
    std::string command_directory;
    std::string data_directory;
    std::string mail_owner;
    std::string setgid_group;
    std::string default_privs;
    std::string import_environment;
    // Names and networks.
    std::string myhostname;
    std::string mydomain;
    std::string myorigin;
    std::string mydestination;
    std::string inet_interfaces;
    std::string inet_protocols;
    std::string mynetworks;
    std::string relay_domains;
    // Logging.
    std::string maillog_file;
    std::string syslog_name;
    // Process management (master and lib/service).
    long long default_process_limit = 0;
    long long max_use = 0;
    Seconds max_idle{};
    Seconds service_throttle_time{};
    Seconds master_stop_timeout{};
    long long service_client_limit = 0;
    Seconds ipc_timeout{};
    Seconds daemon_timeout{};
    // TLS (used by the SMTP/IMAP/POP3 servers).
    std::string smtpd_tls_cert_file;
    std::string smtpd_tls_key_file;
    std::string smtpd_banner;
    std::string mail_name;
    // smtpd.
    std::string smtpd_tls_security_level;
    bool smtpd_tls_wrappermode = false;
    bool smtpd_sasl_auth_enable = false;
    bool smtpd_sasl_auth_required = false;
    bool smtpd_tls_auth_only = true;
    std::string smtpd_sasl_path;
    long long smtpd_sasl_failure_limit = 0;
    std::string smtpd_sender_login_maps;
    bool smtpd_reject_sender_login_mismatch = false;
    long long message_size_limit = 0;
    long long smtpd_recipient_limit = 0;
    long long line_length_limit = 0;
    Seconds smtpd_timeout{};
    long long smtpd_hard_error_limit = 0;
    long long smtpd_client_connection_count_limit = 0;
    bool disable_vrfy_command = true;
    std::string recipient_delimiter;
    std::string alias_maps;
    bool smtpd_reject_unlisted_recipient = true;
    bool always_add_missing_headers = false;
    Seconds smtpd_pregreet_wait{};
    bool smtpd_reject_pregreet = true;
    long long smtpd_client_connection_rate_limit = 0;
    Seconds anvil_rate_time_unit{};
    std::string smtpd_client_event_limit_exceptions;
    std::string dns_servers;
    bool smtpd_peername_lookup = true;
    Seconds smtpd_peername_lookup_timeout{};
    // Queue manager: routing, scheduling, retries, bounces.
    std::string default_transport;
    std::string local_transport;
    std::string virtual_transport;
    std::string relay_transport;
    std::string relayhost;
    std::string transport_maps;
    std::string virtual_mailbox_domains;
    long long qmgr_message_active_limit = 0;
    long long queue_recycle_limit = 0;
    Seconds queue_run_delay{};
    Seconds minimal_backoff_time{};
    Seconds maximal_backoff_time{};
    Seconds maximal_queue_lifetime{};
    Seconds bounce_queue_lifetime{};
    Seconds delay_warning_time{};
    long long default_destination_concurrency_limit = 0;
    long long default_destination_recipient_limit = 0;
    std::string bounce_notice_recipient;
    std::string double_bounce_sender;
    long long bounce_size_limit = 0;
    // Local and virtual delivery.
    std::string home_mailbox;
    std::string mail_spool_directory;
    std::string forward_path;
    std::string allow_mail_to_commands;
    std::string allow_mail_to_files;
    Seconds command_time_limit{};
    long long mailbox_size_limit = 0;
    std::string local_command_shell;
    std::string mailbox_delivery_lock;
    std::string virtual_mailbox_maps;
    std::string virtual_mailbox_base;
    std::string virtual_uid_maps;
    std::string virtual_gid_maps;
    // sendmail(1), pickup, newaliases.
    std::string alias_database;
    std::string authorized_submit_users;
    std::string authorized_flush_users;
    std::string authorized_mailq_users;
    std::string sendmail_sender_override_users;
    long long header_size_limit = 0;
    // smtp delivery agent.
    std::string smtp_helo_name;
    Seconds smtp_connect_timeout{};
    Seconds smtp_helo_timeout{};
    Seconds smtp_starttls_timeout{};
    Seconds smtp_mail_timeout{};
    Seconds smtp_rcpt_timeout{};
    Seconds smtp_data_init_timeout{};
    Seconds smtp_data_xfer_timeout{};
    Seconds smtp_data_done_timeout{};
    Seconds smtp_quit_timeout{};
    std::string smtp_tls_security_level;
    std::string smtp_tls_policy_maps;
    std::string smtp_tls_CAfile;
    bool smtp_sasl_auth_enable = false;
    std::string smtp_sasl_password_maps;
    Seconds smtp_connection_cache_time_limit{};
    Seconds smtp_connection_reuse_time_limit{};
    long long smtp_mx_address_limit = 0;
    std::string smtp_bind_address;
    // auth daemon and virtual users.
    std::string auth_backends;
    std::string auth_pam_service;
    long long auth_pam_concurrency = 0;
    std::string virtual_user_database;
    std::string virtual_user_mailbox_map;
    Seconds auth_failure_delay{};
    Seconds auth_failure_max_delay{};
    long long auth_lockout_threshold = 0;
    Seconds auth_lockout_time{};
};

enum class Type { Str, Int, Bool, Time };

struct ParamDef {
    std::string_view name;
    Type type;
    std::string_view default_value;  // may contain $name; "" means empty
    long long min = 0;
    long long max = 0;  // Int/Time: inclusive range when max > 0
    std::variant<std::string Params::*, long long Params::*, bool Params::*, Seconds Params::*> member;
    std::string_view doc;
    std::string_view choices = {};  // Str: the allowed values, space-separated ("" = any)
    bool late = false;              // Str: stored unexpanded; the daemon expands it per use
};

std::span<const ParamDef> param_table();
const ParamDef* find_param(std::string_view name);

// One `name = value` line of main.cf (after joining continuation lines).
struct Setting {
    std::string name;
    std::string value;
    std::string origin;  // "file:line" or "-o"
};

// Parses main.cf text. Errors and warnings carry "file:line: " prefixes.
Result<std::vector<Setting>> parse_main_cf(std::string_view text, const std::string& file,
                                           std::vector<std::string>* warnings_out = nullptr);

// Parses a time value: a number with an optional unit s, m, h, d, w (default s).
std::optional<Seconds> parse_time(std::string_view text);
std::optional<bool> parse_bool(std::string_view text);

class Config {
public:
    // Loads DIR/main.cf (a missing file means all defaults), applies overrides
    // (from master.cf -o), expands and checks every parameter.
    static Result<Config> load(const std::string& dir,
                               const std::vector<std::pair<std::string, std::string>>& overrides = {},
                               std::vector<std::string>* warnings_out = nullptr);
    // The same from text, for tests and `postern check`.
    static Result<Config> from_text(std::string_view main_cf, const std::string& file, const std::string& dir,
                                    const std::vector<std::pair<std::string, std::string>>& overrides = {},
                                    std::vector<std::string>* warnings_out = nullptr);

    const Params& params() const noexcept { return params_; }
    // Expands $name references against this configuration; undefined names
    // expand to nothing here (load() already rejected them in main.cf).
    // extra: names that take precedence (per-recipient values such as $home);
    // their values are inserted as they are.
    std::string expand(std::string_view text,
                       const std::map<std::string, std::string, std::less<>>* extra = nullptr) const;
    // The expanded value of any parameter, known or not (custom parameters).
    std::optional<std::string> value(std::string_view name) const;
    std::string main_cf_path() const { return params_.config_directory + "/main.cf"; }

private:
    Params params_;
    std::map<std::string, std::string, std::less<>> expanded_;
};

// ---- master.cf ------------------------------------------------------------

enum class ServiceType { Inet, Unix };

struct Service {
    std::string name;  // "smtp", "127.0.0.1:2525", "qmgr"
    ServiceType type = ServiceType::Unix;
    bool private_ = true;
    bool unpriv = true;
    bool chroot = true;
    long long wakeup = 0;  // seconds; 0 = never
    bool wakeup_if_used = false;  // "60?" form
    long long maxproc = -1;       // -1 = default_process_limit
    std::string command;          // program name in daemon_directory, or absolute path
    std::vector<std::string> args;                               // without -o pairs
    std::vector<std::pair<std::string, std::string>> overrides;  // -o name=value
    std::string origin;                                          // "file:line"

    std::string key() const { return name + "/" + (type == ServiceType::Inet ? "inet" : "unix"); }
    bool operator==(const Service&) const = default;
};

Result<std::vector<Service>> parse_master_cf(std::string_view text, const std::string& file);
Result<std::vector<Service>> load_master_cf(const std::string& dir);

// Reads a config file with the size limit above.
Result<std::string> read_config_file(const std::string& path);

}  // namespace postern::config
