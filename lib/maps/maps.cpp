// maps/maps.cpp - source parser, texthash and hash (Berkeley DB) maps, postmap-style build.
#include "maps/maps.hpp"

#include <db.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <unordered_map>

#include "log/log.hpp"
#include "maps/handles.hpp"
#include "util/assert.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace postern::maps {
namespace {

// ---- parsing ---------------------------------------------------------------

bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

Error at(const std::string& file, int line, std::string_view message) {
    std::string text = file;
    text += ':';
    text += std::to_string(line);
    text += ": ";
    text += message;
    return Error::config(std::move(text));
}

// One logical line: the first physical line plus its continuation lines.
struct Logical {
    std::string text;
    int line = 0;
};

// Splits a logical line into key and value; the key is not folded yet.
Result<Entry> split_postmap(const Logical& l, const std::string& file) {
    std::string_view s = l.text;  // starts with a non-blank byte (see parse_source)
    std::size_t end = 0;
    while (end < s.size() && !is_blank(s[end])) ++end;
    std::string_view value = util::trim(s.substr(end));
    if (value.empty()) return at(file, l.line, "missing value (want \"key whitespace value\")");
    return Entry{std::string(s.substr(0, end)), std::string(value), l.line};
}

Result<Entry> split_aliases(const Logical& l, const std::string& file) {
    std::string_view s = l.text;
    std::string_view key;
    std::string_view rest;
    if (s.front() == '"') {
        std::size_t close = s.find('"', 1);
        if (close == std::string_view::npos) return at(file, l.line, "unterminated quoted key");
        key = s.substr(1, close - 1);
        rest = util::trim(s.substr(close + 1));
        if (rest.empty() || rest.front() != ':') return at(file, l.line, "missing ':' after key");
        rest.remove_prefix(1);
    } else {
        std::size_t colon = s.find(':');
        if (colon == std::string_view::npos) return at(file, l.line, "missing ':' after key");
        key = util::trim(s.substr(0, colon));
        rest = s.substr(colon + 1);
    }
    if (key.empty()) return at(file, l.line, "missing key");
    std::string_view value = util::trim(rest);
    if (value.empty()) return at(file, l.line, "missing value (want \"key: value\")");
    return Entry{std::string(key), std::string(value), l.line};
}

Result<Entry> make_entry(const Logical& l, Format format, const std::string& file) {
    Result<Entry> e = format == Format::Postmap ? split_postmap(l, file) : split_aliases(l, file);
    if (!e) return e;
    if (e->key.size() > MaxKeyLength)
        return at(file, l.line, "key too long (limit " + std::to_string(MaxKeyLength) + " bytes)");
    if (e->value.size() > MaxValueLength)
        return at(file, l.line, "value too long (limit " + std::to_string(MaxValueLength) + " bytes)");
    e->key = util::to_lower(e->key);
    return e;
}

// ---- files -----------------------------------------------------------------

Result<UniqueFd> open_source(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) return Error::config("open " + path + ": " + errno_text(errno));
    return fd;
}

// Reads a whole source file from fd (at its start), refusing anything larger
// than MaxSourceSize; path is for messages.
Result<std::string> read_source(const UniqueFd& fd, const std::string& path) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Error::config("stat " + path + ": " + errno_text(errno));
    if (!S_ISREG(st.st_mode)) return Error::config(path + ": not a regular file");
    const std::string too_large =
        path + ": file too large (limit " + std::to_string(MaxSourceSize) + " bytes)";
    if (static_cast<std::uintmax_t>(st.st_size) > MaxSourceSize) return Error::config(too_large);
    std::string text;
    // Note: read until EOF rather than trusting st_size; the file may grow.
    std::size_t used = 0;
    text.resize(static_cast<std::size_t>(st.st_size) + 1);
    for (;;) {
        if (used == text.size()) {
            if (text.size() > MaxSourceSize) return Error::config(too_large);
            text.resize(std::min(text.size() * 2, MaxSourceSize + 1));
        }
        ssize_t n = ::read(fd.get(), text.data() + used, text.size() - used);
        if (n < 0) {
            if (errno == EINTR) continue;
            return Error::config("read " + path + ": " + errno_text(errno));
        }
        if (n == 0) break;
        used += static_cast<std::size_t>(n);
    }
    if (used > MaxSourceSize) return Error::config(too_large);
    text.resize(used);
    return text;
}

Result<std::string> read_source(const std::string& path) {
    Result<UniqueFd> fd = open_source(path);
    if (!fd) return fd.error();
    return read_source(*fd, path);
}

std::string dir_of(const std::string& path) {
    std::size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

Result<void> fsync_path(const std::string& path, int flags) {
    UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC));
    if (!fd) return Error::temp("open " + path + ": " + errno_text(errno));
    if (::fsync(fd.get()) != 0) return Error::temp("fsync " + path + ": " + errno_text(errno));
    return {};
}

// ---- Berkeley DB -----------------------------------------------------------

void db_error_to_log(const DB_ENV*, const char* prefix, const char* message) {
    log::warn("%s%sBerkeley DB: %s", prefix != nullptr ? prefix : "", prefix != nullptr ? ": " : "",
              message != nullptr ? message : "(null)");
}

Result<DbHandle> db_new() {
    DB* raw = nullptr;
    int rc = db_create(&raw, nullptr, 0);
    if (rc != 0) return Error::temp(std::string("db_create: ") + db_strerror(rc));
    DbHandle db(raw);
    db->set_errcall(db.get(), db_error_to_log);
    return db;
}

// Closes a BDB cursor (DBC->close is a method, so no CDeleter; maps/handles.hpp).
class Cursor {
public:
    explicit Cursor(DBC* c) noexcept : c_(c) {}
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;
    ~Cursor() {
        if (c_ != nullptr) c_->close(c_);
    }
    DBC* get() const noexcept { return c_; }

private:
    DBC* c_;
};

DBT make_dbt(std::string& s) {
    DBT d{};
    d.data = s.data();
    d.size = static_cast<u_int32_t>(s.size());  // bounded by MaxValueLength
    return d;
}

class HashMap final : public Map {
public:
    HashMap(std::string spec, DbHandle db) : Map(std::move(spec)), db_(std::move(db)) {}

    // Watches the file BDB actually opened: the descriptor, not the path, so a
    // rename between a stat and the open cannot make us watch another inode.
    Result<void> watch_db() {
        int fd = -1;
        int rc = db_->fd(db_.get(), &fd);
        if (rc != 0) return Error::config(spec() + ": Berkeley DB descriptor: " + db_strerror(rc));
        return watch(fd);
    }

    Result<std::optional<std::string>> lookup(std::string_view key) const override {
        if (key.empty() || key.size() > MaxKeyLength) return std::optional<std::string>();
        std::string folded = util::to_lower(key);
        DBT k = make_dbt(folded);
        DBT v{};
        // Note: without DB_THREAD, v.data points into the handle's own buffer,
        // valid until the next call; we copy it at once and free nothing.
        int rc = db_->get(db_.get(), nullptr, &k, &v, 0);
        if (rc == DB_NOTFOUND) return std::optional<std::string>();
        if (rc != 0) return Error::temp(spec() + ": lookup: " + db_strerror(rc));
        if (v.size > MaxValueLength) return Error::temp(spec() + ": lookup: stored value too long");
        return std::optional<std::string>(std::string(static_cast<const char*>(v.data), v.size));
    }

private:
    DbHandle db_;
};

Result<std::unique_ptr<Map>> open_hash(std::string spec, const std::string& file) {
    const std::string path = file + ".db";
    Result<DbHandle> db = db_new();
    if (!db) return Error::config(spec + ": " + db.error().text);
    // Note: a missing file is the usual case ("forgot postern map build"), so
    // check it first: BDB would also log a message of its own.
    struct stat db_st {};
    if (::stat(path.c_str(), &db_st) != 0) {
        int err = errno;
        std::string text = spec + ": cannot open " + path + ": " + errno_text(err);
        if (err == ENOENT) text += " (create it with \"postern map build " + file + "\")";
        return Error::config(std::move(text));
    }
    int rc = (*db)->open(db->get(), nullptr, path.c_str(), nullptr, DB_HASH, DB_RDONLY, 0);
    if (rc != 0) return Error::config(spec + ": cannot open " + path + ": " + db_strerror(rc));
    struct stat src_st {};
    if (::stat(file.c_str(), &src_st) == 0 && src_st.st_mtime > db_st.st_mtime)
        log::warn("%s: database %s is older than source file %s", spec.c_str(), path.c_str(),
                  file.c_str());
    auto map = std::make_unique<HashMap>(std::move(spec), std::move(*db));
    if (Result<void> r = map->watch_db(); !r) return r.error();
    return std::unique_ptr<Map>(std::move(map));
}

// ---- texthash --------------------------------------------------------------

class TextMap final : public Map {
public:
    TextMap(std::string spec, UniqueFd source) : Map(std::move(spec)), source_(std::move(source)) {}

    // Note: called before the file is read, so a write racing with the read
    // shows as a change later instead of being lost.
    Result<void> watch_source() { return watch(source_.get()); }
    const UniqueFd& source() const noexcept { return source_; }
    void set_table(std::unordered_map<std::string, std::string> table) { table_ = std::move(table); }

    Result<std::optional<std::string>> lookup(std::string_view key) const override {
        if (key.size() > MaxKeyLength) return std::optional<std::string>();
        auto it = table_.find(util::to_lower(key));
        if (it == table_.end()) return std::optional<std::string>();
        return std::optional<std::string>(it->second);
    }

private:
    std::unordered_map<std::string, std::string> table_;
    UniqueFd source_;  // kept open only for changed()
};

Result<std::unique_ptr<Map>> open_text(std::string spec, const std::string& file, Format format) {
    Result<UniqueFd> fd = open_source(file);
    if (!fd) return Error::config(spec + ": " + fd.error().text);
    auto map = std::make_unique<TextMap>(spec, std::move(*fd));
    if (Result<void> r = map->watch_source(); !r) return r.error();
    Result<std::string> text = read_source(map->source(), file);
    if (!text) return Error::config(spec + ": " + text.error().text);
    Result<std::vector<Entry>> entries = parse_source(*text, format, file);
    if (!entries) return entries.error();
    std::unordered_map<std::string, std::string> table;
    table.reserve(entries->size());
    for (Entry& e : *entries) table.emplace(std::move(e.key), std::move(e.value));
    map->set_table(std::move(table));
    return std::unique_ptr<Map>(std::move(map));
}

}  // namespace

Result<void> Map::watch(int fd) {
    if (!watch_.watch(fd)) return Error::config(spec_ + ": fstat: " + errno_text(errno));
    return {};
}

// An fstat error counts as a change: a fresh process opens the table again.
bool Map::changed() const { return watch_.changed(); }

Result<std::vector<Entry>> parse_source(std::string_view text, Format format,
                                        const std::string& file_name_for_errors) {
    const std::string& file = file_name_for_errors;
    std::vector<Entry> entries;
    std::unordered_map<std::string, int> first_line;  // folded key -> line of the entry kept
    std::optional<Logical> current;

    auto finish = [&]() -> Result<void> {
        if (!current) return {};
        Result<Entry> e = make_entry(*current, format, file);
        current.reset();
        if (!e) return e.error();
        auto [it, inserted] = first_line.emplace(e->key, e->line);
        if (!inserted) {
            log::warn("%s:%d: duplicate entry \"%s\" ignored; the entry at line %d wins",
                      file.c_str(), e->line, util::printable(e->key).c_str(), it->second);
            return {};
        }
        entries.push_back(std::move(*e));
        return {};
    };

    int line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        std::size_t end = nl == std::string_view::npos ? text.size() : nl;
        std::string_view line = text.substr(pos, end - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        ++line_no;
        if (line.find('\0') != std::string_view::npos) return at(file, line_no, "NUL byte in text");
        std::string_view body = util::trim(line);
        if (body.empty() || body.front() == '#') continue;  // never ends an entry
        if (is_blank(line.front())) {
            if (!current) return at(file, line_no, "continuation line before any entry");
            current->text += ' ';
            current->text += body;
            continue;
        }
        if (Result<void> r = finish(); !r) return r.error();
        current = Logical{std::string(body), line_no};
    }
    if (Result<void> r = finish(); !r) return r.error();
    return entries;
}

Result<std::unique_ptr<Map>> open(std::string_view spec, Format format) {
    std::size_t colon = spec.find(':');
    std::string_view type = colon == std::string_view::npos ? std::string_view() : spec.substr(0, colon);
    std::string file(colon == std::string_view::npos ? spec : spec.substr(colon + 1));
    if (type != "hash" && type != "texthash")
        return Error::config("unsupported map type \"" + util::printable(type) + "\" in \"" +
                             util::printable(spec) + "\" (want hash:FILE or texthash:FILE)");
    if (file.empty()) return Error::config("map \"" + std::string(spec) + "\" has no file name");
    if (type == "hash") return open_hash(std::string(spec), file);
    return open_text(std::string(spec), file, format);
}

Result<void> build(const std::string& source_path, Format format) {
    Result<std::string> text = read_source(source_path);
    if (!text) return text.error();
    Result<std::vector<Entry>> entries = parse_source(*text, format, source_path);
    if (!entries) return entries.error();
    struct stat src_st {};
    if (::stat(source_path.c_str(), &src_st) != 0)
        return Error::config("stat " + source_path + ": " + errno_text(errno));
    // Note: the source's permission bits, so a table of secrets (sasl_passwd)
    // does not become world-readable as its .db. The umask still applies.
    Result<PendingDb> db = prepare_db(source_path + ".db", *entries, src_st.st_mode & 0666, false);
    if (!db) return db.error();
    return db->commit();
}

// ---- whole tables ------------------------------------------------------------

Result<std::optional<std::vector<Entry>>> read_db(const std::string& db_path) {
    using Out = std::optional<std::vector<Entry>>;
    struct stat st {};
    if (::stat(db_path.c_str(), &st) != 0) {
        if (errno == ENOENT) return Out();
        return sys_error("stat", db_path, errno);
    }
    Result<DbHandle> db = db_new();
    if (!db) return db.error();
    int rc = (*db)->open(db->get(), nullptr, db_path.c_str(), nullptr, DB_HASH, DB_RDONLY, 0);
    if (rc != 0) return Error::temp("cannot open " + db_path + ": " + db_strerror(rc));
    DBC* raw = nullptr;
    rc = (*db)->cursor(db->get(), nullptr, &raw, 0);
    if (rc != 0) return Error::temp(db_path + ": cursor: " + db_strerror(rc));
    Cursor cursor(raw);
    std::vector<Entry> entries;
    std::size_t total = 0;
    for (;;) {
        DBT k{}, v{};
        // Note: without DB_THREAD the data points into the handle's buffers,
        // valid until the next call; copied at once.
        rc = cursor.get()->get(cursor.get(), &k, &v, DB_NEXT);
        if (rc == DB_NOTFOUND) break;
        if (rc != 0) return Error::temp(db_path + ": read: " + db_strerror(rc));
        if (k.size == 0 || k.size > MaxKeyLength || v.size > MaxValueLength)
            return Error::temp(db_path + ": stored key or value too long");
        total += k.size + v.size;
        if (total > MaxSourceSize)
            return Error::temp(db_path + ": table too large (limit " + std::to_string(MaxSourceSize) + " bytes)");
        entries.push_back(Entry{std::string(static_cast<const char*>(k.data), k.size),
                                std::string(static_cast<const char*>(v.data), v.size), 0});
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
    return Out(std::move(entries));
}

PendingDb::PendingDb(PendingDb&& o) noexcept
    : temp_path_(std::move(o.temp_path_)), final_path_(std::move(o.final_path_)),
      armed_(std::exchange(o.armed_, false)) {}

PendingDb::~PendingDb() {
    if (armed_) ::unlink(temp_path_.c_str());
}

Result<void> PendingDb::commit() {
    POSTERN_ASSERT(armed_);
    if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0)
        return Error::temp("rename " + temp_path_ + " to " + final_path_ + ": " + errno_text(errno));
    armed_ = false;
    return fsync_path(dir_of(final_path_), O_RDONLY | O_DIRECTORY);
}

Result<PendingDb> prepare_db(const std::string& db_path, const std::vector<Entry>& entries, mode_t mode,
                             bool exact_mode) {
    PendingDb pending(db_path + ".tmp." + std::to_string(::getpid()), db_path);
    const std::string& tmp = pending.temp_path_;
    Result<DbHandle> db = db_new();
    if (!db) return db.error();
    int rc = (*db)->open(db->get(), nullptr, tmp.c_str(), nullptr, DB_HASH, DB_CREATE | DB_EXCL,
                         static_cast<int>(mode & 07777));
    if (rc != 0) return Error::temp("create " + tmp + ": " + db_strerror(rc));
    pending.armed_ = true;
    if (exact_mode) {
        int fd = -1;
        rc = (*db)->fd(db->get(), &fd);
        if (rc != 0) return Error::temp(tmp + ": Berkeley DB descriptor: " + db_strerror(rc));
        if (::fchmod(fd, mode & 07777) != 0) return sys_error("chmod", tmp, errno);
    }
    for (const Entry& e : entries) {
        std::string key = util::to_lower(e.key);
        std::string value = e.value;
        if (key.empty() || key.size() > MaxKeyLength || value.size() > MaxValueLength)
            return Error::config(db_path + ": key \"" + util::printable(key) + "\": empty or too long, or value too long");
        DBT k = make_dbt(key);
        DBT v = make_dbt(value);
        rc = (*db)->put(db->get(), nullptr, &k, &v, DB_NOOVERWRITE);
        if (rc == DB_KEYEXIST) return Error::config(db_path + ": key \"" + util::printable(key) + "\" given twice");
        if (rc != 0) return Error::temp(tmp + ": store \"" + util::printable(key) + "\": " + db_strerror(rc));
    }
    rc = db->close();  // writes out the cached pages
    if (rc != 0) return Error::temp("close " + tmp + ": " + db_strerror(rc));
    if (Result<void> r = fsync_path(tmp, O_RDONLY); !r) return r.error();
    return pending;
}

Result<void> write_db(const std::string& db_path, const std::vector<Entry>& entries, mode_t mode) {
    Result<PendingDb> db = prepare_db(db_path, entries, mode);
    if (!db) return db.error();
    return db->commit();
}

}  // namespace postern::maps
