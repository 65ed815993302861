// NAME
//   queue/record.hpp - record types and small helpers shared by lib/queue files
// PURPOSE
//   Internal to lib/queue: the record type letters and header size of the
//   format documented in queue/queue.hpp, and path/error helpers. Not for use
//   outside lib/queue: only this module knows the format (STYLE S4).
// SYNOPSIS
//   append_record(out, RecSender, env.sender);
//   return sys_error("fsync", path, errno);
// ERRORS
//   sys_error builds Error::temp; corrupt() builds Error::perm.
// SEE ALSO
//   queue/queue.hpp
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fs/fs.hpp"
#include "util/result.hpp"

namespace postern::queue::detail {

inline constexpr char RecVersion = 'V', RecTime = 'T', RecId = 'I';
inline constexpr char RecClientName = 'c', RecClientAddr = 'a', RecHelo = 'h', RecProtocol = 'p';
inline constexpr char RecSaslMethod = 'm', RecSaslUsername = 'u', RecOrigin = 'o';
inline constexpr char RecSender = 'S', RecEnvid = 'e', RecRet = 'r', RecBody = 'b', RecSmtputf8 = 'U';
inline constexpr char RecWarned = 'W';
inline constexpr char RecRecipient = 'R', RecMessage = 'M', RecContent = 'B', RecEnd = 'E';

inline constexpr std::size_t RecHeaderSize = 5;   // type + 4-byte big-endian length
inline constexpr std::size_t RcptFixedSize = 4;   // status, notify, 2-byte address length
inline constexpr std::string_view FormatVersion = "1";
inline constexpr std::string_view TempPrefix = ".tmp-";

// Appends one record (header and payload) to out. payload.size() must fit 32 bits.
void append_record(std::string& out, char type, std::string_view payload);
void put_u32(char* p, uint32_t v) noexcept;
uint32_t get_u32(const char* p) noexcept;

bool valid_status(char c) noexcept;
bool valid_notify(unsigned n) noexcept;
bool valid_ret(std::string_view s) noexcept;
bool valid_body(std::string_view s) noexcept;
bool valid_subdir(std::string_view s) noexcept;

// dir + "/" + name, without doubling the slash when dir is "/" or ends in one.
std::string join_path(std::string_view dir, std::string_view name);
// Renames without replacing an existing file, falling back to rename(2) where
// the file system cannot do RENAME_NOREPLACE (queue names are unique, so that
// is safe enough). Returns 0 or errno.
int rename_noreplace(const std::string& from, const std::string& to) noexcept;
// Error::temp("<op> <what>: <strerror>")

}  // namespace postern::queue::detail
