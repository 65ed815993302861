// NAME
//   smtpd/data.hpp - the DATA and BDAT byte state machines
// PURPOSE
//   DataReader turns the bytes after "354" into message content: it ends only
//   at <CR><LF>.<CR><LF> (RFC 5321 4.1.1.4; never at a bare-LF or bare-CR
//   look-alike, which closes the SMTP smuggling family CVE-2023-51764),
//   removes dot-stuffing, and records the first defect (bare LF, bare CR,
//   NUL) so the session can refuse the whole message once the real end is
//   reached. In BDAT mode it checks line endings and NULs without looking for
//   a terminator. HeaderScanner watches the content for the header section
//   (Message-ID, Date) within a byte limit. No I/O, no policy.
// SYNOPSIS
//   DataReader r;  std::string out;
//   std::size_t used = r.feed(bytes, out);   // stops right after the terminator
//   if (r.done()) { if (r.defect()) refuse(*r.defect()); else commit(); }
// ERRORS
//   None: defects are reported by defect(), never thrown.
// SECURITY
//   Bytes are hostile. State survives any split of the input (byte at a
//   time gives the same result as one piece).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::smtpd {

class DataReader {
public:
    enum class Mode { Data, Bdat };
    explicit DataReader(Mode mode = Mode::Data) : mode_(mode) {}

    // Consumes input, appending content to out. Returns the number of bytes
    // used: all of them, or up to and including the terminating CRLF.CRLF.
    std::size_t feed(std::string_view in, std::string& out);
    bool done() const noexcept { return done_; }
    // The first defect seen: "bare <LF>", "bare <CR>" or "NUL character".
    const std::optional<std::string>& defect() const noexcept { return defect_; }
    // BDAT: after the LAST chunk, a pending CR at the very end is a bare CR.
    void finish_bdat();

private:
    enum class State { LineStart, InLine, Cr, Dot, DotCr };
    void flag(const char* what);
    Mode mode_;
    State state_ = State::LineStart;
    bool done_ = false;
    std::optional<std::string> defect_;
};

inline constexpr std::size_t kHeaderScanLimit = 64 * 1024;

// Watches message content (CRLF lines) until the end of the header section.
class HeaderScanner {
public:
    explicit HeaderScanner(std::size_t limit = kHeaderScanLimit) : limit_(limit) {}
    void feed(std::string_view content);
    bool in_headers() const noexcept { return !ended_; }
    // Value of the first header with this name (unfolded, trimmed), if seen.
    std::optional<std::string> value(std::string_view name) const;

private:
    std::size_t limit_;
    std::string buf_;
    bool ended_ = false;
};

}  // namespace postern::smtpd
