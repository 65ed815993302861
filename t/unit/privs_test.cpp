// Unit tests for lib/privs: lookups, rlimits, privilege drop and jail (in fork()ed children).
#include <fcntl.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "privs/privs.hpp"

using namespace postern;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-privs-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

// Runs fn in a fork()ed child, so privilege changes cannot leak into the test
// process; returns the child's exit status (or 128+signal).
template <typename Fn>
int in_child(Fn fn) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(fn());
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

privs::UserInfo nobody() {
    auto u = privs::lookup_user("nobody");
    REQUIRE(u);
    REQUIRE(u->has_value());
    REQUIRE((*u)->uid != 0);
    return **u;
}

}  // namespace

TEST_CASE("lookup_user and lookup_uid find root") {
    auto by_name = privs::lookup_user("root");
    REQUIRE(by_name);
    REQUIRE(by_name->has_value());
    auto by_uid = privs::lookup_uid(0);
    REQUIRE(by_uid);
    REQUIRE(by_uid->has_value());
    for (const auto& u : {**by_name, **by_uid}) {
        INFO("got " << u.name << " " << u.uid << ":" << u.gid << " " << u.home << ", want root 0:0 /root");
        CHECK(u.name == "root");
        CHECK(u.uid == 0);
        CHECK(u.gid == 0);
        CHECK(u.home == "/root");
        CHECK_FALSE(u.shell.empty());
    }
}

TEST_CASE("lookups of missing names are empty, not errors") {
    const std::string names[] = {"postern-no-such-user-x9", "", std::string("root\0x", 6), std::string(5000, 'a')};
    for (const auto& n : names) {
        auto u = privs::lookup_user(n);
        INFO("user '" << n.substr(0, 40) << "': got " << (u ? (u->has_value() ? "found" : "empty") : u.error().text)
                      << ", want empty");
        REQUIRE(u);
        CHECK_FALSE(u->has_value());
        auto g = privs::lookup_group(n);
        REQUIRE(g);
        CHECK_FALSE(g->has_value());
    }
    auto id = privs::lookup_uid(2147483000u);
    REQUIRE(id);
    CHECK_FALSE(id->has_value());
}

TEST_CASE("lookup_group finds root") {
    auto g = privs::lookup_group("root");
    REQUIRE(g);
    REQUIRE(g->has_value());
    INFO("gid got " << **g << ", want 0");
    CHECK(**g == 0);
}

TEST_CASE("is_root follows the effective uid") { CHECK(privs::is_root() == (::geteuid() == 0)); }

TEST_CASE("set_limit sets the soft limit and raises the hard one only when needed") {
    int code = in_child([] {
        rlimit rl{32, 64};
        if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 10;
        if (!privs::set_limit(RLIMIT_NOFILE, 48)) return 11;
        if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur != 48 || rl.rlim_max != 64) return 12;
        // Raising the hard limit needs CAP_SYS_RESOURCE, which even root may lack
        // (containers): either it worked, or it failed and changed nothing.
        auto up = privs::set_limit(RLIMIT_NOFILE, 100);
        if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 13;
        if (up && (rl.rlim_cur != 100 || rl.rlim_max != 100)) return 14;
        if (!up && (rl.rlim_cur != 48 || rl.rlim_max != 64)) return 15;
        if (!up && up.error().text.find("setrlimit") == std::string::npos) return 16;
        if (up && ::geteuid() != 0) return 17;
        return 0;
    });
    INFO("child exit got " << code << ", want 0");
    CHECK(code == 0);
}

TEST_CASE("chroot_to a missing directory fails and names it") {
    auto r = privs::chroot_to("/nonexistent-postern-dir/x");
    REQUIRE_FALSE(r);
    INFO("error text: " << r.error().text);
    CHECK(r.error().text.find("/nonexistent-postern-dir/x") != std::string::npos);
}

TEST_CASE("enter_jail with nothing to do succeeds") { CHECK(privs::enter_jail({})); }

TEST_CASE("drop_privileges drops uid, gid and groups for good") {
    if (::geteuid() != 0) {
        WARN("skipped: needs root");
        return;
    }
    const auto u = nobody();
    int code = in_child([&u] {
        gid_t extra[] = {0, 1, 2};
        if (::setgroups(3, extra) != 0) return 10;
        if (auto r = privs::drop_privileges(u.uid, u.gid); !r) return 11;
        uid_t ru, eu, su;
        gid_t rg, eg, sg;
        ::getresuid(&ru, &eu, &su);
        ::getresgid(&rg, &eg, &sg);
        if (ru != u.uid || eu != u.uid || su != u.uid) return 12;
        if (rg != u.gid || eg != u.gid || sg != u.gid) return 13;
        gid_t groups[8];
        int n = ::getgroups(8, groups);
        if (n != 1 || groups[0] != u.gid) return 14;
        if (::setuid(0) == 0 || ::seteuid(0) == 0) return 15;
        if (privs::drop_privileges(0, 0)) return 16;  // no way back
        return 0;
    });
    INFO("child exit got " << code << ", want 0 (11 drop failed, 12-14 ids wrong, 15-16 root regained)");
    CHECK(code == 0);
}

TEST_CASE("enter_jail chroots and then drops privileges") {
    if (::geteuid() != 0) {
        WARN("skipped: needs root");
        return;
    }
    const auto u = nobody();
    TempDir d;
    REQUIRE(::chmod(d.path.c_str(), 0755) == 0);
    {
        int fd = ::open((d.path + "/marker").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        REQUIRE(fd >= 0);
        ::close(fd);
    }
    int code = in_child([&] {
        if (auto r = privs::enter_jail({.chroot_dir = d.path, .user = u}); !r) return 10;
        if (::getuid() != u.uid || ::geteuid() != u.uid || ::getgid() != u.gid) return 11;
        if (::access("/marker", R_OK) != 0) return 12;
        if (::access((d.path + "/marker").c_str(), F_OK) == 0) return 13;  // old path gone
        if (::access("/etc/passwd", F_OK) == 0) return 14;
        char cwd[256];
        if (::getcwd(cwd, sizeof cwd) == nullptr || std::string(cwd) != "/") return 15;
        if (::chroot("/") == 0) return 16;  // no longer root
        return 0;
    });
    INFO("child exit got " << code << ", want 0 (10 enter_jail, 11 ids, 12-14 chroot, 15 cwd, 16 root kept)");
    CHECK(code == 0);
}

TEST_CASE("enter_jail without root fails") {
    if (::geteuid() != 0) {
        CHECK_FALSE(privs::enter_jail({.chroot_dir = "/tmp", .user = std::nullopt}));
        return;
    }
    const auto u = nobody();
    int code = in_child([&u] {
        if (!privs::drop_privileges(u.uid, u.gid)) return 10;
        return privs::enter_jail({.chroot_dir = "/tmp", .user = std::nullopt}) ? 11 : 0;
    });
    INFO("child exit got " << code << ", want 0");
    CHECK(code == 0);
}
