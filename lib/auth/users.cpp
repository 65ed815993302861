// auth/users.cpp - the virtual user table (hash:FILE), its mailbox map, and crypt(3) hashes.
#include "auth/users.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "auth/proto.hpp"
#include "fs/fs.hpp"
#include "util/strings.hpp"

namespace postern::auth {
namespace {

static_assert(MaxHashedPasswordLength + 1 == CRYPT_MAX_PASSPHRASE_SIZE);

constexpr std::size_t MaxAddressLength = 254;
constexpr std::size_t MaxLabelLength = 63;
constexpr mode_t UserTableMode = 0600;   // holds password hashes
constexpr mode_t MailboxMapMode = 0644;  // read by smtpd and the delivery agents

// "hash:PATH" -> PATH. Only hash: tables can be written, and UserTable reads
// the same files, so only hash: is accepted anywhere here.
Result<std::string> hash_file(const std::string& spec) {
    if (spec.rfind("hash:", 0) != 0 || spec.size() == 5)
        return Error::config("virtual user table \"" + util::printable(spec) + "\": want hash:FILE");
    return spec.substr(5);
}

bool is_atext(char c) {
    // RFC 5322 atext without '/': the local part becomes a directory name.
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-=?^_`{|}~").find(c) != std::string_view::npos;
}

bool is_hostchar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

// Dot-separated non-empty parts, each accepted by ok(part).
template <typename F>
bool dotted(std::string_view s, F ok) {
    for (;;) {
        std::size_t dot = s.find('.');
        std::string_view part = s.substr(0, dot);
        if (part.empty() || !ok(part)) return false;
        if (dot == std::string_view::npos) return true;
        s.remove_prefix(dot + 1);
    }
}

// A crypt(3) string as stored: printable ASCII, no space or tab.
bool valid_hash_field(std::string_view h) {
    return !h.empty() && std::all_of(h.begin(), h.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

std::optional<std::uint64_t> parse_quota(std::string_view s) {
    if (s.empty() || s.size() > 20) return std::nullopt;
    for (char c : s)
        if (c < '0' || c > '9') return std::nullopt;
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

// See sasl.cpp: clears the whole buffer, short-string storage included.
void wipe(std::string& s) noexcept {
    s.resize(s.capacity());
    explicit_bzero(s.data(), s.size());
    s.clear();
}

// crypt_rn with a zeroed work area that is cleared again afterwards; "" on failure.
std::string run_crypt(const std::string& password, const char* setting) {
    auto data = std::make_unique<crypt_data>();  // value-initialised: zero, as crypt_rn wants
    const char* out = crypt_rn(password.c_str(), setting, data.get(), sizeof *data);
    std::string result = out != nullptr && out[0] == '$' ? std::string(out) : std::string();
    explicit_bzero(data.get(), sizeof *data);
    return result;
}

Error user_error(std::string_view address, std::string_view why) {
    return Error::config("virtual user \"" + util::printable(address) + "\": " + std::string(why));
}

// The whole table, keyed by address; a missing file is an empty table.
Result<std::map<std::string, VirtualUser>> read_all(const std::string& db_path) {
    auto entries = maps::read_db(db_path);
    if (!entries) return entries.error();
    std::map<std::string, VirtualUser> all;
    if (!*entries) return all;
    for (const maps::Entry& e : **entries) {
        auto u = parse_user(e.key, e.value);
        if (!u) return Error::config(db_path + ": " + u.error().text);
        std::string key = u->address;
        all.emplace(std::move(key), std::move(*u));
    }
    return all;
}

}  // namespace

Result<std::string> normalize_address(std::string_view address) {
    auto bad = [&](std::string_view why) {
        return Error::config("bad address \"" + util::printable(address) + "\": " + std::string(why));
    };
    if (address.empty()) return bad("empty");
    if (address.size() > MaxAddressLength)
        return bad("longer than " + std::to_string(MaxAddressLength) + " bytes");
    for (char c : address)
        if (c <= ' ' || c >= 0x7f) return bad("white space, control or non-ASCII character");
    std::size_t at = address.find('@');
    if (at == std::string_view::npos || address.find('@', at + 1) != std::string_view::npos)
        return bad("want exactly one '@' (local@domain)");
    std::string_view local = address.substr(0, at), domain = address.substr(at + 1);
    if (!dotted(local, [](std::string_view p) { return std::all_of(p.begin(), p.end(), is_atext); }))
        return bad("the local part must be dot-separated words of letters, digits and !#$%&'*+-=?^_`{|}~");
    if (!dotted(domain, [](std::string_view p) {
            return p.size() <= MaxLabelLength && p.front() != '-' && p.back() != '-' &&
                   std::all_of(p.begin(), p.end(), is_hostchar);
        }))
        return bad("the domain must be a host name (letters, digits, '-', dot-separated)");
    return util::to_lower(address);
}

bool valid_mailbox_path(std::string_view path) {
    if (path.empty() || path.size() > MaxPathLength || path.front() == '/') return false;
    for (char c : path)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
    std::string_view rest = path;
    while (!rest.empty()) {
        std::size_t slash = rest.find('/');
        std::string_view part = rest.substr(0, slash);
        if (part.empty() || part == "." || part == "..") return false;
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);  // a trailing '/' leaves rest empty: a Maildir
    }
    return true;
}

std::string default_mailbox(std::string_view address) {
    std::size_t at = address.rfind('@');
    if (at == std::string_view::npos) return std::string(address) + "/";
    return std::string(address.substr(at + 1)) + "/" + std::string(address.substr(0, at)) + "/";
}

std::string format_user(const VirtualUser& u) {
    return u.hash + "\t" + u.mailbox + "\t" + std::to_string(u.quota);
}

Result<VirtualUser> parse_user(std::string_view address, std::string_view value) {
    auto addr = normalize_address(address);
    if (!addr) return addr.error();
    std::size_t t1 = value.find('\t');
    std::size_t t2 = t1 == std::string_view::npos ? t1 : value.find('\t', t1 + 1);
    if (t2 == std::string_view::npos || value.find('\t', t2 + 1) != std::string_view::npos)
        return user_error(*addr, "want HASH<tab>MAILBOX<tab>QUOTA");
    VirtualUser u;
    u.address = std::move(*addr);
    std::string_view hash = value.substr(0, t1);
    std::string_view mailbox = value.substr(t1 + 1, t2 - t1 - 1);
    std::string_view quota = value.substr(t2 + 1);
    if (!valid_hash_field(hash)) return user_error(u.address, "bad password hash field");
    if (!valid_mailbox_path(mailbox))
        return user_error(u.address, "bad mailbox \"" + util::printable(mailbox) +
                                         "\" (want a relative path without \"..\")");
    auto q = parse_quota(quota);
    if (!q) return user_error(u.address, "bad quota \"" + util::printable(quota) + "\"");
    u.hash = std::string(hash);
    u.mailbox = std::string(mailbox);
    u.quota = *q;
    return u;
}

Result<std::string> hash_password(std::string_view password) {
    if (password.find('\0') != std::string_view::npos) return Error::config("password contains a NUL byte");
    if (password.size() > MaxHashedPasswordLength)
        return Error::config("password longer than " + std::to_string(MaxHashedPasswordLength) + " bytes");
    std::string pw(password);
    std::string result;
    // Note: yescrypt first; a libxcrypt built without it refuses the prefix,
    // in crypt_gensalt_rn or (with a policy file) in crypt_rn.
    for (const char* prefix : {"$y$", "$6$"}) {
        char setting[CRYPT_GENSALT_OUTPUT_SIZE];
        if (crypt_gensalt_rn(prefix, 0, nullptr, 0, setting, sizeof setting) == nullptr) continue;
        result = run_crypt(pw, setting);
        if (!result.empty()) break;
    }
    wipe(pw);
    if (result.empty()) return Error::temp(std::string("crypt: cannot hash a password: ") + errno_text(errno));
    return result;
}

bool verify_password(std::string_view password, std::string_view hash) {
    // "*", "!...", "" and anything else that is not a "$id$..." setting: a
    // locked or disabled account, never a match (DES crypt is not accepted).
    if (hash.size() < 3 || hash.front() != '$' || hash.find('\0') != std::string_view::npos) return false;
    if (password.find('\0') != std::string_view::npos || password.size() > MaxHashedPasswordLength) return false;
    std::string pw(password);
    const std::string setting(hash);
    std::string computed = run_crypt(pw, setting.c_str());
    wipe(pw);
    bool match = computed.size() == hash.size() && CRYPTO_memcmp(computed.data(), hash.data(), hash.size()) == 0;
    wipe(computed);
    return match;
}

Result<std::unique_ptr<UserTable>> UserTable::open(const std::string& spec) {
    auto file = hash_file(spec);
    if (!file) return file.error();
    UserTable t;
    t.spec_ = spec;
    auto m = maps::open(spec);
    if (m) {
        t.map_ = std::move(*m);
    } else {
        // Note: opened first, stat'ed after a failure, so a table that
        // appears in between is simply opened.
        struct stat st {};
        if (::stat((*file + ".db").c_str(), &st) == 0 || errno != ENOENT) return m.error();
    }
    return std::make_unique<UserTable>(std::move(t));
}

Result<std::optional<VirtualUser>> UserTable::find(std::string_view address) const {
    using Out = std::optional<VirtualUser>;
    auto addr = normalize_address(address);
    if (!addr || !map_) return Out();  // an address that cannot be in the table is not in it
    auto v = map_->lookup(*addr);
    if (!v) return v.error();
    if (!*v) return Out();
    auto u = parse_user(*addr, **v);
    if (!u) return Error::config(spec_ + ": " + u.error().text);
    return Out(std::move(*u));
}

bool UserTable::changed() const {
    if (map_) return map_->changed();
    // Note: a path stat, unlike maps::Map::changed(): the auth daemon is not
    // chrooted, so the path names the same file it would open.
    struct stat st {};
    if (::stat((spec_.substr(5) + ".db").c_str(), &st) == 0) return true;
    return errno != ENOENT && errno != ENOTDIR;  // cannot tell: let the caller open again
}

Result<std::vector<VirtualUser>> list_users(const std::string& spec) {
    auto file = hash_file(spec);
    if (!file) return file.error();
    auto all = read_all(*file + ".db");
    if (!all) return all.error();
    std::vector<VirtualUser> out;
    out.reserve(all->size());
    for (auto& [address, u] : *all) out.push_back(std::move(u));
    return out;
}

Result<void> update_users(const std::string& spec, const std::string& mailbox_map_spec,
                          const std::function<Result<void>(std::map<std::string, VirtualUser>&)>& mutate) {
    auto file = hash_file(spec);
    if (!file) return file.error();
    std::string map_file;
    if (!mailbox_map_spec.empty()) {
        auto m = hash_file(mailbox_map_spec);
        if (!m) return m.error();
        map_file = *m;
    }
    auto lock_fd = fs::safe_open(*file + ".lock", O_RDWR | O_CREAT, 0600);
    if (!lock_fd) return lock_fd.error();
    auto lock = fs::lock_wait(std::move(*lock_fd));
    if (!lock) return lock.error();

    const std::string db_path = *file + ".db";
    auto all = read_all(db_path);
    if (!all) return all.error();
    if (auto r = mutate(*all); !r) return r;

    std::vector<maps::Entry> users, mailboxes;
    for (const auto& [key, u] : *all) {
        auto addr = normalize_address(key);
        if (!addr) return addr.error();
        if (*addr != key || u.address != key) return user_error(key, "address differs from its key");
        if (!valid_hash_field(u.hash)) return user_error(key, "bad password hash");
        if (!valid_mailbox_path(u.mailbox))
            return user_error(key, "bad mailbox \"" + util::printable(u.mailbox) +
                                       "\" (want a relative path without \"..\")");
        users.push_back(maps::Entry{key, format_user(u), 0});
        mailboxes.push_back(maps::Entry{key, u.mailbox, 0});
    }
    // Both files are complete on disk before either is replaced. Note: if the
    // second rename fails after the first one (it should not: same directory,
    // files already written), the mailbox map is stale until the next change.
    auto users_db = maps::prepare_db(db_path, users, UserTableMode);
    if (!users_db) return users_db.error();
    std::optional<maps::PendingDb> map_db;
    if (!map_file.empty()) {
        auto m = maps::prepare_db(map_file + ".db", mailboxes, MailboxMapMode);
        if (!m) return m.error();
        map_db.emplace(std::move(*m));
    }
    if (auto r = users_db->commit(); !r) return r;
    if (map_db) return map_db->commit();
    return {};
}

}  // namespace postern::auth
