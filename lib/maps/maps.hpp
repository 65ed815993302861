// NAME
//   maps/maps.hpp - lookup tables: hash:FILE (Berkeley DB) and texthash:FILE
// PURPOSE
//   One interface for the key -> value tables that main.cf names, like Postfix's
//   postmap/postalias: `hash:/etc/postern/transport` reads the Berkeley DB 5.3
//   hash file /etc/postern/transport.db that build() made from the text file;
//   `texthash:/etc/postern/transport` reads the text file into memory at open.
//   Keys are folded to ASCII lower case when built and when looked up; values
//   are kept as written. Not for regexp/pcre/cidr tables, and not a general
//   database: values are opaque strings (the caller parses alias lists etc.).
// SYNOPSIS
//   auto m = maps::open("hash:/etc/postern/virtual");   // Result<unique_ptr<Map>>
//   auto v = (*m)->lookup("User@Example.COM");           // Result<optional<string>>
//   maps::build("/etc/postern/virtual", Format::Postmap); // writes virtual.db atomically
//   maps::build("/etc/postern/aliases", Format::Aliases);
//   auto entries = maps::parse_source(text, Format::Postmap, "virtual");
//   if ((*m)->changed()) ...;   // rebuilt since open: restart (chrooted) or open again
//   auto all = maps::read_db("/etc/postern/users.db");   // Result<optional<vector<Entry>>>
//   maps::write_db("/etc/postern/users.db", entries, 0600);
// CHANGES
//   changed() is like Postfix's dict_changed_name(): a long-running daemon asks it
//   before new work and, when true, finishes what it is doing and exits (or,
//   when it can still reach the path, opens the map again). It watches the
//   descriptor the map was read from (hash: the Berkeley DB file, kept open by
//   BDB; texthash: the source file, kept open after it was read), never the
//   path, so it works inside a chroot where the path means nothing. True when
//   that file was unlinked (st_nlink == 0: build() renamed a new .db over it,
//   or an editor saved by rename, or it was removed) or written in place (size
//   or mtime differ from open). Note: no path re-stat: in a jail the same path
//   may name another file, and a false "changed" would restart a daemon at
//   every connection. Missed: a replaced file still linked elsewhere (a hard
//   link kept as a backup), and an in-place rewrite of the same size within
//   one timestamp tick.
// FORMATS
//   Postmap: `key whitespace value` per line. Aliases (/etc/aliases): `key: value`,
//   the value kept as raw trimmed text (a comma list is the caller's business);
//   the key may be written "quoted" (the quotes are stripped). In both: lines
//   whose first non-blank byte is `#` and blank lines are ignored (and do not
//   end an entry); a line starting with white space continues the entry above,
//   joined with a single space. A key that appears twice: warning naming
//   file:line, and the FIRST entry wins, like postmap (a later line must not
//   silently override an earlier, possibly more carefully placed, one).
// ERRORS
//   parse_source: Error::config "FILE:LINE: message" (NUL byte, continuation
//   line before any entry, missing value, missing key, missing ':', unterminated
//   quoted key, key or value too long). open: Error::config for an unknown map
//   type, a missing or unreadable file (for hash: naming the .db and suggesting
//   `postern map build FILE`) or a bad source (texthash). lookup: nullopt when
//   not found (also for a key longer than MaxKeyLength); Error::temp when the
//   database fails or holds a value longer than MaxValueLength. build: Config
//   for the source, Temp for writing the .db; on failure no temp file is left and
//   the old .db is untouched. changed() cannot fail: an fstat error counts as
//   "changed" (a fresh process opens the table again). read_db: nullopt for a
//   missing file; Error::temp when it cannot be read or holds a key or value
//   over the limits. prepare_db/write_db: Error::config for an empty or
//   over-long key, an over-long value or a key given twice (after folding),
//   Error::temp for writing; on failure no temp file is left and the old .db
//   is untouched.
// SECURITY
//   Sources are written by the administrator, but lookup keys come from the
//   network: they are bounded by MaxKeyLength and never need a NUL terminator.
//   Limits: MaxKeyLength, MaxValueLength, MaxSourceSize. A built .db gets the
//   permission bits of its source (a secret table stays as private as its text).
//   Not thread-safe: a Map is used by one thread (Postern processes have one).
// SEE ALSO
//   postmap(1), postalias(1), aliases(5); maps/handles.hpp
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/fs.hpp"
#include "util/result.hpp"

namespace postern::maps {

inline constexpr std::size_t MaxKeyLength = 1024;            // bytes, after folding
inline constexpr std::size_t MaxValueLength = 100000;        // bytes, after joining lines
inline constexpr std::size_t MaxSourceSize = 64 * 1024 * 1024;  // text file read by build/texthash

enum class Format { Postmap, Aliases };

struct Entry {
    std::string key;    // folded to ASCII lower case
    std::string value;  // as written, trimmed, continuation lines joined by " "
    int line = 0;       // first line of the entry, 1-based
};

// Parses a whole source text; entries come out in file order, duplicates
// dropped (first wins, with a log::warn). Does no I/O besides that warning.
Result<std::vector<Entry>> parse_source(std::string_view text, Format format,
                                        const std::string& file_name_for_errors);

class Map {
public:
    virtual ~Map() = default;
    Map(const Map&) = delete;
    Map& operator=(const Map&) = delete;

    // Key is folded before the lookup; found -> value, not found -> nullopt.
    virtual Result<std::optional<std::string>> lookup(std::string_view key) const = 0;

    // The spec it was opened with, e.g. "hash:/etc/postern/aliases" (for logs).
    const std::string& spec() const noexcept { return spec_; }

    // True when the file this map was read from has been replaced, removed or
    // rewritten since open (see CHANGES above). One fstat(2); no path lookup.
    bool changed() const;

protected:
    explicit Map(std::string spec) : spec_(std::move(spec)) {}

    // Watches fd (not owned: it must stay open as long as the Map) from now
    // on; Error::config when it cannot be fstat'ed.
    Result<void> watch(int fd);

private:
    std::string spec_;
    fs::FileWatch watch_;  // nothing watched: never changed
};

// spec is "hash:FILE" (opens FILE.db read-only) or "texthash:FILE" (parses
// FILE now, in `format`; hash maps were given their format by build()).
Result<std::unique_ptr<Map>> open(std::string_view spec, Format format = Format::Postmap);

// Like postmap: parse source_path, write source_path.db.tmp.<pid>, fsync,
// rename over source_path.db, fsync the directory. Open readers keep the old
// file (the rename replaces the inode) and their changed() turns true; the
// next open() sees the new one.
Result<void> build(const std::string& source_path, Format format);

// ---- whole tables, for programs that own one (auth/users.hpp) ----

// Every entry of the Berkeley DB hash file db_path (the .db itself, not a
// source), sorted by key, with line = 0. nullopt when the file does not exist.
// The file is trusted to be ours, but still read within MaxKeyLength,
// MaxValueLength and MaxSourceSize bytes in all.
Result<std::optional<std::vector<Entry>>> read_db(const std::string& db_path);

class PendingDb;
// Writes entries (keys folded to lower case, values as given) to a new hash
// file with exactly the permission bits `mode` (the umask does not apply);
// exact_mode = false lets the umask apply, as build() does.
Result<PendingDb> prepare_db(const std::string& db_path, const std::vector<Entry>& entries, mode_t mode,
                             bool exact_mode = true);
// prepare_db + commit: replaces db_path atomically.
Result<void> write_db(const std::string& db_path, const std::vector<Entry>& entries, mode_t mode);

// What prepare_db returns: a new .db, complete and fsync'ed under a temporary
// name beside its final path (db_path.tmp.<pid>) but not in place yet:
// commit() renames it over db_path and fsyncs the directory. Destroying it
// uncommitted removes the temporary file. Lets a caller that keeps two tables
// in step write both before it replaces either.
class PendingDb {
public:
    PendingDb(PendingDb&& o) noexcept;
    PendingDb& operator=(PendingDb&&) = delete;
    PendingDb(const PendingDb&) = delete;
    PendingDb& operator=(const PendingDb&) = delete;
    ~PendingDb();

    // Once only. If only the directory fsync fails, db_path already has the
    // new table but the error is still returned.
    Result<void> commit();
    const std::string& temp_path() const noexcept { return temp_path_; }

private:
    friend Result<PendingDb> prepare_db(const std::string&, const std::vector<Entry>&, mode_t, bool);
    PendingDb(std::string temp_path, std::string final_path) noexcept
        : temp_path_(std::move(temp_path)), final_path_(std::move(final_path)) {}
    std::string temp_path_, final_path_;
    bool armed_ = false;  // the temp file exists and is ours to remove
};

}  // namespace postern::maps
