// Unit tests for lib/fs: atomic_write, safe_open, read_file, ensure_dir, FileLock, write_all.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "fs/fs.hpp"

using namespace postern;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/postern-fs-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void put(const std::string& path, const std::string& data) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(fd);
    REQUIRE(fs::write_all(fd.get(), data));
}

std::string get(const std::string& path) {
    auto r = fs::read_file(path, 1 << 20);
    INFO("read " << path << ": " << (r ? "" : r.error().text));
    REQUIRE(r);
    return *r;
}

mode_t mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

int entries(const std::string& dir) {
    int n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir)) ++n;
    return n;
}

}  // namespace

TEST_CASE("atomic_write writes, overwrites and leaves no temp files") {
    TempDir d;
    const auto path = d / "file";
    const std::string cases[] = {"hello\n", "", std::string(100000, 'x'), "second\0with nul"};
    for (const auto& data : cases) {
        auto r = fs::atomic_write(path, data, 0640);
        INFO("atomic_write " << data.size() << " bytes: " << (r ? "ok" : r.error().text));
        REQUIRE(r);
        auto got = get(path);
        INFO("got " << got.size() << " bytes, want " << data.size());
        CHECK(got == data);
        INFO("mode got " << std::oct << mode_of(path) << ", want 640");
        CHECK(mode_of(path) == 0640);
        INFO("entries got " << entries(d.path) << ", want 1");
        CHECK(entries(d.path) == 1);
    }
}

TEST_CASE("atomic_write ignores the umask") {
    TempDir d;
    mode_t old = ::umask(077);
    auto r = fs::atomic_write(d / "f", "x", 0644);
    ::umask(old);
    REQUIRE(r);
    INFO("mode got " << std::oct << mode_of(d / "f") << ", want 644");
    CHECK(mode_of(d / "f") == 0644);
}

TEST_CASE("atomic_write fails in a missing directory and names the path") {
    TempDir d;
    auto r = fs::atomic_write(d / "nodir/file", "x", 0600);
    REQUIRE_FALSE(r);
    INFO("error text: " << r.error().text);
    CHECK(r.error().text.find(d / "nodir/") != std::string::npos);
    CHECK(r.error().text.find("No such file") != std::string::npos);
}

TEST_CASE("atomic_write replaces a symlink rather than writing through it") {
    TempDir d;
    put(d / "target", "keep");
    REQUIRE(::symlink((d / "target").c_str(), (d / "link").c_str()) == 0);
    REQUIRE(fs::atomic_write(d / "link", "new", 0600));
    CHECK(get(d / "target") == "keep");
    struct stat st {};
    REQUIRE(::lstat((d / "link").c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));
}

TEST_CASE("safe_open refuses symlinks in the last component") {
    TempDir d;
    put(d / "target", "secret");
    REQUIRE(::symlink((d / "target").c_str(), (d / "link").c_str()) == 0);
    REQUIRE(::symlink((d / "nowhere").c_str(), (d / "dangling").c_str()) == 0);
    struct Case {
        const char* name;
        int flags;
    } cases[] = {
        {"link", O_RDONLY},
        {"link", O_WRONLY | O_APPEND},
        {"link", O_RDWR | O_CREAT | O_TRUNC},
        {"dangling", O_WRONLY | O_CREAT},
        {"dangling", O_WRONLY | O_CREAT | O_EXCL},
    };
    for (const auto& c : cases) {
        auto r = fs::safe_open(d / c.name, c.flags);
        INFO(c.name << " flags " << std::hex << c.flags << ": got " << (r ? "success" : r.error().text)
                    << ", want refusal");
        CHECK_FALSE(r);
    }
    CHECK(get(d / "target") == "secret");
    CHECK(::access((d / "nowhere").c_str(), F_OK) != 0);
}

TEST_CASE("safe_open refuses hard-linked files and does not truncate them") {
    TempDir d;
    put(d / "a", "data");
    REQUIRE(::link((d / "a").c_str(), (d / "b").c_str()) == 0);
    for (const char* name : {"a", "b"}) {
        for (int flags : {O_RDONLY, O_RDWR | O_TRUNC, O_WRONLY | O_CREAT | O_TRUNC}) {
            auto r = fs::safe_open(d / name, flags);
            INFO(name << " flags " << std::hex << flags << ": got " << (r ? "success" : "refusal")
                      << ", want refusal");
            REQUIRE_FALSE(r);
            CHECK(r.error().kind == Error::Kind::Perm);
            CHECK(r.error().text.find("link") != std::string::npos);
        }
    }
    CHECK(get(d / "a") == "data");
}

TEST_CASE("safe_open refuses directories and FIFOs without hanging") {
    TempDir d;
    REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
    for (const auto& p : {d.path, d / "fifo"}) {
        auto r = fs::safe_open(p, O_RDONLY);
        INFO(p << ": got " << (r ? "success" : r.error().text) << ", want refusal");
        CHECK_FALSE(r);
    }
}

TEST_CASE("safe_open creates, opens and truncates plain files") {
    TempDir d;
    mode_t old = ::umask(022);
    auto r = fs::safe_open(d / "new", O_WRONLY | O_CREAT | O_EXCL, 0640);
    ::umask(old);
    INFO("create: " << (r ? "ok" : r.error().text));
    REQUIRE(r);
    REQUIRE(fs::write_all(r->get(), "abc"));
    CHECK(mode_of(d / "new") == 0640);
    CHECK((::fcntl(r->get(), F_GETFL) & O_NONBLOCK) == 0);
    CHECK((::fcntl(r->get(), F_GETFD) & FD_CLOEXEC) != 0);

    auto again = fs::safe_open(d / "new", O_WRONLY | O_CREAT | O_EXCL);
    CHECK_FALSE(again);

    auto existing = fs::safe_open(d / "new", O_RDWR | O_CREAT);
    REQUIRE(existing);
    CHECK(get(d / "new") == "abc");

    auto trunc = fs::safe_open(d / "new", O_WRONLY | O_TRUNC);
    REQUIRE(trunc);
    CHECK(get(d / "new").empty());

    auto missing = fs::safe_open(d / "missing", O_RDONLY);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().text.find(d / "missing") != std::string::npos);
}

TEST_CASE("read_file enforces max_size at the limit and limit+1") {
    TempDir d;
    const std::size_t max = 20000;  // more than one internal read buffer
    struct Case {
        std::size_t size;
        bool ok;
    } cases[] = {{0, true}, {1, true}, {max - 1, true}, {max, true}, {max + 1, false}, {3 * max, false}};
    for (const auto& c : cases) {
        put(d / "f", std::string(c.size, 'y'));
        auto r = fs::read_file(d / "f", max);
        INFO("size " << c.size << ": got " << (r ? "ok" : r.error().text) << ", want " << (c.ok ? "ok" : "error"));
        REQUIRE(bool(r) == c.ok);
        if (r) {
            CHECK(r->size() == c.size);
        } else {
            CHECK(r.error().text.find(d / "f") != std::string::npos);
        }
    }
    auto missing = fs::read_file(d / "missing", max);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().text.find("No such file") != std::string::npos);
}

TEST_CASE("ensure_dir creates parents and fixes the mode") {
    TempDir d;
    const auto deep = d / "a/b/c";
    struct Case {
        mode_t mode;
    } cases[] = {{0750}, {0700}, {02755}};
    for (const auto& c : cases) {
        auto r = fs::ensure_dir(deep, c.mode);
        INFO("mode " << std::oct << c.mode << ": " << (r ? "ok" : r.error().text));
        REQUIRE(r);
        struct stat st {};
        REQUIRE(::lstat(deep.c_str(), &st) == 0);
        CHECK(S_ISDIR(st.st_mode));
        INFO("mode got " << std::oct << (st.st_mode & 07777) << ", want " << c.mode);
        CHECK((st.st_mode & 07777) == c.mode);
    }
    REQUIRE(::chmod(deep.c_str(), 0777) == 0);
    REQUIRE(fs::ensure_dir(deep, 0700));
    CHECK(mode_of(deep) == 0700);
    CHECK(fs::ensure_dir(d.path + "/x/", 0700));  // trailing slash
    CHECK(mode_of(d / "x") == 0700);
}

TEST_CASE("ensure_dir refuses symlinks and files") {
    TempDir d;
    REQUIRE(::mkdir((d / "real").c_str(), 0755) == 0);
    REQUIRE(::symlink((d / "real").c_str(), (d / "link").c_str()) == 0);
    put(d / "file", "");
    for (const char* name : {"link", "file"}) {
        auto r = fs::ensure_dir(d / name, 0700);
        INFO(name << ": got " << (r ? "success" : r.error().text) << ", want refusal");
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == Error::Kind::Perm);
    }
    CHECK(mode_of(d / "real") == 0755);
}

TEST_CASE("ensure_dir sets the owner") {
    if (::geteuid() != 0) {
        WARN("skipped: needs root");
        return;
    }
    TempDir d;
    REQUIRE(fs::ensure_dir(d / "owned", 0750, 12345, 23456));
    struct stat st {};
    REQUIRE(::lstat((d / "owned").c_str(), &st) == 0);
    INFO("owner got " << st.st_uid << ":" << st.st_gid << ", want 12345:23456");
    CHECK(st.st_uid == 12345);
    CHECK(st.st_gid == 23456);
    CHECK((st.st_mode & 07777) == 0750);
    REQUIRE(fs::ensure_dir(d / "owned", 0750, static_cast<uid_t>(-1), 0));  // gid only
    REQUIRE(::lstat((d / "owned").c_str(), &st) == 0);
    CHECK(st.st_uid == 12345);
    CHECK(st.st_gid == 0);
}

TEST_CASE("FileLock excludes a second open file description until released") {
    TempDir d;
    const auto path = d / "lock";
    auto open_it = [&] {
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        REQUIRE(fd);
        return fd;
    };
    {
        auto first = fs::FileLock::try_lock(open_it());
        REQUIRE(first);
        CHECK(first->fd() >= 0);
        auto second = fs::FileLock::try_lock(open_it());
        INFO("second try_lock got " << (second ? "success" : second.error().text) << ", want locked");
        REQUIRE_FALSE(second);
        CHECK(second.error().kind == Error::Kind::Temp);
        CHECK(second.error().text.find("locked") != std::string::npos);
        CHECK(second.error().text.find(path) != std::string::npos);

        fs::FileLock moved = std::move(*first);  // ownership moves, lock stays
        CHECK_FALSE(fs::FileLock::try_lock(open_it()));
    }
    auto third = fs::FileLock::try_lock(open_it());
    INFO("try_lock after release got " << (third ? "success" : third.error().text) << ", want success");
    CHECK(third);
}

TEST_CASE("FileLock conflicts across processes and lock_wait blocks until release") {
    TempDir d;
    const auto path = d / "lock";
    auto held = fs::FileLock::try_lock(UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)));
    REQUIRE(held);
    int pipefd[2];
    REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
    UniqueFd rd(pipefd[0]), wr(pipefd[1]);

    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Our copy of the parent's descriptor shares its lock; drop it.
        ::close(held->fd());
        wr.reset();
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!fd) ::_exit(10);
        UniqueFd fd2(::dup(fd.get()));
        if (fs::FileLock::try_lock(std::move(fd))) ::_exit(11);
        char c;
        if (::read(rd.get(), &c, 1) != 0) ::_exit(12);  // EOF: parent is about to release
        auto got = fs::lock_wait(std::move(fd2));
        ::_exit(got ? 0 : 13);
    }
    rd.reset();
    ::usleep(50 * 1000);
    wr.reset();
    ::usleep(50 * 1000);
    { auto release = std::move(*held); }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    INFO("child exit got " << code << ", want 0 (10 open, 11 try_lock succeeded, 12 pipe, 13 lock_wait)");
    CHECK(code == 0);
}

TEST_CASE("try_lock on a bad descriptor is an error") {
    auto r = fs::FileLock::try_lock(UniqueFd());
    CHECK_FALSE(r);
}

TEST_CASE("write_all writes everything and reports bad descriptors") {
    TempDir d;
    const std::string big(3 << 20, 'z');
    {
        UniqueFd fd(::open((d / "big").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        REQUIRE(fd);
        REQUIRE(fs::write_all(fd.get(), big));
    }
    auto got = fs::read_file(d / "big", big.size());
    REQUIRE(got);
    CHECK(*got == big);

    // A pipe forces short writes when the reader is slower than the writer.
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    UniqueFd rd(p[0]), wr(p[1]);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        wr.reset();
        std::string all;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(rd.get(), buf, sizeof buf)) > 0) all.append(buf, static_cast<std::size_t>(n));
        ::_exit(all == big ? 0 : 1);
    }
    rd.reset();
    REQUIRE(fs::write_all(wr.get(), big));
    wr.reset();
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);

    auto bad = fs::write_all(-1, "x");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().text.find("fd -1") != std::string::npos);
}

TEST_CASE("fsync_dir works on a directory and names a missing one") {
    TempDir d;
    CHECK(fs::fsync_dir(d.path));
    auto r = fs::fsync_dir(d / "missing");
    REQUIRE_FALSE(r);
    CHECK(r.error().text.find(d / "missing") != std::string::npos);
}

TEST_CASE("FileWatch: unchanged, written in place, replaced by rename, nothing watched") {
    TempDir d;
    const std::string f = d / "passwd";
    REQUIRE(fs::atomic_write(f, "root:x:0:0::/root:/bin/sh\n", 0644));
    fs::FileWatch none;
    CHECK_FALSE(none.watching());
    CHECK_FALSE(none.changed());
    CHECK_FALSE(none.watch(-1));

    UniqueFd fd(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd);
    fs::FileWatch w;
    REQUIRE(w.watch(fd.get()));
    CHECK(w.watching());
    CHECK_FALSE(w.changed());
    {
        UniqueFd out(::open(f.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        REQUIRE(fs::write_all(out.get(), "alice:x:1000:1000::/home/alice:/bin/sh\n"));
    }
    CHECK(w.changed());  // written in place: the size differs

    UniqueFd fd2(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
    fs::FileWatch w2;
    REQUIRE(w2.watch(fd2.get()));
    REQUIRE(fs::atomic_write(f, "root:x:0:0::/root:/bin/sh\n", 0644));  // a new file renamed over it
    CHECK(w2.changed());  // the watched inode has no links left
}
