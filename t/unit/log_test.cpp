// Unit tests for lib/log: Postfix-shaped lines in the file and stderr sinks,
// level prefixes, fatal() exit codes and panic() aborts.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "log/log.hpp"
#include "util/assert.hpp"

using namespace postern;

namespace {
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-log-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

std::string slurp(const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Runs fn in a child; returns its wait status.
template <typename Fn>
int in_child(Fn fn) {
    pid_t pid = ::fork();
    if (pid == 0) {
        // Not Catch's: its signal handlers and report must stay in the parent.
        ::signal(SIGABRT, SIG_DFL);
        int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::dup2(null, 2);
        fn();
        _exit(0);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    return st;
}
}  // namespace

TEST_CASE("file sink writes syslog-shaped lines with level prefixes") {
    TempDir d;
    std::string file = d.path + "/maillog";
    log::open({.tag = "postern/smtpd", .file = file});
    log::info("%s: from=<%s>, size=%d", "4Xyz", "a@example.com", 42);
    log::warn("unknown[%s]: SASL LOGIN authentication failed", "192.0.2.1");
    log::error("disk %s", "full");
    log::debug("not shown unless verbose");
    std::string text = slurp(file);
    INFO("log:\n" << text);
    std::regex info(R"(^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ postern/smtpd\[\d+\]: 4Xyz: from=<a@example.com>, size=42$)");
    std::regex warn(R"(postern/smtpd\[\d+\]: warning: unknown\[192\.0\.2\.1\]: SASL LOGIN authentication failed$)");
    std::regex err(R"(postern/smtpd\[\d+\]: error: disk full$)");
    std::istringstream lines(text);
    std::string l1, l2, l3, extra;
    std::getline(lines, l1);
    std::getline(lines, l2);
    std::getline(lines, l3);
    CHECK(std::regex_search(l1, info));
    CHECK(std::regex_search(l2, warn));
    CHECK(std::regex_search(l3, err));
    CHECK_FALSE(std::getline(lines, extra));
    log::open({.tag = "postern/test", .file = "-"});
}

TEST_CASE("verbose enables debug lines") {
    TempDir d;
    std::string file = d.path + "/maillog";
    log::open({.tag = "postern/x", .file = file, .verbose = true});
    log::debug("detail %d", 7);
    CHECK(slurp(file).find("postern/x[") != std::string::npos);
    CHECK(slurp(file).find(": detail 7") != std::string::npos);
    log::open({.tag = "postern/test", .file = "-"});
}

TEST_CASE("a very long message is cut and says so, never overflows") {
    TempDir d;
    std::string file = d.path + "/maillog";
    log::open({.tag = "postern/x", .file = file});
    std::string big(10000, 'a');
    log::info("%s", big.c_str());
    std::string text = slurp(file);
    CHECK(text.size() < 3000);
    CHECK(text.find("...") != std::string::npos);
    CHECK(text.back() == '\n');
    log::open({.tag = "postern/test", .file = "-"});
}

TEST_CASE("fatal exits with the sysexits code, panic and assert abort") {
    TempDir d;
    std::string file = d.path + "/maillog";
    int st = in_child([&] {
        log::open({.tag = "postern/x", .file = file});
        log::fatal(EX_CONFIG, "bad %s", "config");
    });
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == EX_CONFIG);
    CHECK(slurp(file).find("postern/x[") != std::string::npos);
    CHECK(slurp(file).find("]: fatal: bad config") != std::string::npos);

    st = in_child([&] {
        log::open({.tag = "postern/x", .file = file});
        log::panic("bug %d", 1);
    });
    CHECK(WIFSIGNALED(st));
    CHECK(slurp(file).find("]: panic: bug 1") != std::string::npos);

    st = in_child([&] {
        log::open({.tag = "postern/x", .file = file});
        POSTERN_ASSERT(1 + 1 == 3);
    });
    CHECK(WIFSIGNALED(st));
    CHECK(slurp(file).find("]: panic: assertion failed: 1 + 1 == 3") != std::string::npos);
}

TEST_CASE("an unwritable log file falls back to stderr with a warning") {
    int st = in_child([] {
        log::open({.tag = "postern/x", .file = "/nonexistent-dir/maillog"});
        log::info("still logging");
    });
    CHECK(WIFEXITED(st));
}
