// NAME
//   maps/handles.hpp - owner of a Berkeley DB `DB*` handle
// PURPOSE
//   DbHandle closes a DB handle exactly once with `db->close(db, 0)`. It is a
//   class rather than a CDeleter alias because DB->close is a method that takes
//   flags and reports a status that the writer (maps::build) must check: close
//   is what flushes the pages to the file. Not for DB_ENV or cursors.
// SYNOPSIS
//   DB* raw = nullptr;  db_create(&raw, nullptr, 0);  DbHandle db(raw);
//   db->open(db.get(), ...);      // close is still required if open fails
//   int rc = db.close();          // writer: flush now and check
// ERRORS
//   The destructor ignores the close status (readers have nothing to flush);
//   close() returns it. After close(), whatever it returned, the handle is empty.
// SEE ALSO
//   maps/maps.hpp, util/handles.hpp
#pragma once

#include <db.h>

#include <utility>

namespace postern::maps {

class DbHandle {
public:
    DbHandle() noexcept = default;
    explicit DbHandle(DB* db) noexcept : db_(db) {}
    DbHandle(DbHandle&& o) noexcept : db_(o.release()) {}
    DbHandle& operator=(DbHandle&& o) noexcept {
        if (this != &o) {
            close();
            db_ = o.release();
        }
        return *this;
    }
    DbHandle(const DbHandle&) = delete;
    DbHandle& operator=(const DbHandle&) = delete;
    ~DbHandle() { close(); }

    DB* get() const noexcept { return db_; }
    DB* operator->() const noexcept { return db_; }
    explicit operator bool() const noexcept { return db_ != nullptr; }
    DB* release() noexcept { return std::exchange(db_, nullptr); }

    // Closes now and returns DB->close's status (0 when empty). The DB handle
    // is freed by BDB whatever the status, so it is never closed twice.
    int close() noexcept {
        DB* db = std::exchange(db_, nullptr);
        return db != nullptr ? db->close(db, 0) : 0;
    }

private:
    DB* db_ = nullptr;
};

}  // namespace postern::maps
