// NAME
//   local/message.hpp - the queued message as the local agent hands it out
// PURPOSE
//   Streams a queue file's content for delivery, never holding the whole
//   message in memory: raw (CRLF, as queued; for re-queueing) or as a UNIX
//   text file (LF line ends; for Maildir, mbox, files and commands) with the
//   Return-Path and Delivered-To lines in front and, for mbox, ">From "
//   quoting. Also collects the message's Delivered-To headers once, for loop
//   detection. Not a MIME parser and no header rewriting beyond that.
// SYNOPSIS
//   auto m = Message::open(fd, content_offset);        // reads the header block once
//   if (m->delivered_to("bob@example.com")) loop();
//   m->stream_lf(delivery_headers(sender, rcpt), /*quote_from=*/true, sink);
//   m->stream_raw(sink);
//   LfWriter w(true);  w.feed(chunk, out);  w.finish(out);
// ERRORS
//   Queue file errors from lib/queue (Error::temp / Error::perm), and whatever
//   the sink returns, as they are.
// SECURITY
//   The content is untrusted. The header scan is bounded (MaxHeaderScan bytes,
//   MaxDeliveredTo values); lines are never buffered whole (LfWriter keeps at
//   most 5 bytes of state).
// SEE ALSO
//   queue/queue.hpp (read_content), local/mbox.hpp, RFC 5322, Postfix local(8)
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>

#include "util/result.hpp"

namespace postern::local {

using Sink = std::function<Result<void>(std::string_view)>;

inline constexpr std::size_t MaxHeaderScan = 1u << 20;
inline constexpr std::size_t MaxDeliveredTo = 1000;

// CRLF -> LF (a lone CR stays), optionally ">From " for lines starting
// "From ". Feed it any split of the input; the output is the same.
class LfWriter {
public:
    explicit LfWriter(bool quote_from) : quote_(quote_from) {}
    void feed(std::string_view in, std::string& out);
    void finish(std::string& out);

private:
    void put(char c, std::string& out);

    bool quote_;
    bool cr_ = false;          // a CR waits for the next byte
    bool line_start_ = true;   // the next byte begins a line
    std::string head_;         // the first bytes of a line that may be "From "
};

// Collects the values of Delivered-To header fields (lower case, without
// <>), from the header block only. Feed the raw content; stops by itself.
class HeaderScanner {
public:
    // Returns false once the header block has ended (no more input needed).
    bool feed(std::string_view chunk);
    const std::set<std::string>& delivered_to() const noexcept { return found_; }

private:
    void line_done();

    std::string line_;         // the current (unfolded) field, capped
    std::size_t seen_ = 0;
    bool done_ = false;
    bool at_start_ = true;     // at the start of a physical line
    std::set<std::string> found_;
};

// "Return-Path: <sender>\nDelivered-To: rcpt\n" (rcpt in lower case).
std::string delivery_headers(std::string_view sender, std::string_view recipient);

class Message {
public:
    // Borrows fd (a queue file) for its lifetime; scans the header block.
    static Result<Message> open(int fd, std::uint64_t content_offset);

    bool delivered_to(std::string_view address) const;
    Result<void> stream_raw(const Sink& sink) const;
    Result<void> stream_lf(std::string_view prefix, bool quote_from, const Sink& sink) const;
    int fd() const noexcept { return fd_; }
    // Content bytes as queued (CRLF): an upper bound of the LF size.
    std::uint64_t size() const noexcept { return size_; }

private:
    Message() = default;
    int fd_ = -1;
    std::uint64_t offset_ = 0;
    std::uint64_t size_ = 0;
    std::set<std::string> delivered_;
};

}  // namespace postern::local
