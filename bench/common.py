"""Shared by the benchmarks in bench/: private Postern and Postfix instances in
temporary directories, process-tree CPU and memory accounting, throw-away
mailbox users, and small formatting helpers.

Only processes the benchmarks started are ever signalled, and only by pid.
Not a test library: nothing here runs in `make check`."""
import os
import pwd
import grp
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# POSTERN_BENCH_BIN: another build to measure (an A/B comparison of two builds).
BIN = os.environ.get("POSTERN_BENCH_BIN") or os.path.join(ROOT, "build", "bin")
RESULTS = os.path.join(ROOT, "bench", "results")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    if not pred():
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


# When a benchmark last freed its files (remove_workdir), and how long its
# freed inodes keep costing (see make_workdir): ext4 counts an inode freed
# less than 60 s ago as recent, 360 s while its inode table block is dirty;
# settle() syncs first, so the blocks are clean and 60 s (plus margin) do.
SETTLE_STAMP = "/var/tmp/postern-bench-freed"
SETTLE_S = 70


def settle():
    """Waits until the inodes the last benchmark's clean-up freed no longer
    slow file creation (POSTERN_BENCH_NO_SETTLE=1 skips this). A benchmark
    run with --keep frees nothing and leaves no wait behind."""
    if os.environ.get("POSTERN_BENCH_NO_SETTLE"):
        return
    try:
        age = time.time() - os.stat(SETTLE_STAMP).st_mtime
    except OSError:
        return
    if 0 <= age < SETTLE_S:
        os.sync()
        log(f"waiting {SETTLE_S - age:.0f} s for the inodes the last benchmark freed to age "
            f"(ext4 skips recently freed inodes at a cost; POSTERN_BENCH_NO_SETTLE=1 skips the wait)")
        time.sleep(SETTLE_S - age)


def remove_workdir(path):
    shutil.rmtree(path, ignore_errors=True)
    try:
        with open(SETTLE_STAMP, "w"):
            pass
    except OSError:
        pass


def make_workdir(prefix):
    """A temporary directory whose subdirectories (each server's own, each
    user's home) ext4 spreads over block groups of their own (chattr +T, the
    Orlov "top directory" hint). Why: on ext4 without a journal a new inode
    is found only after skipping every inode of its block group freed in the
    last minute or more (up to 6 with a dirty inode table), so files freed by
    an earlier benchmark's clean-up, or by the other server's run, would slow
    this server's file creation. In groups of their own, each server pays only
    for the inodes it frees itself. Harmless where chattr or +T is missing.
    Orlov prefers groups with many free inodes, which includes those an
    earlier benchmark just emptied: settle() first."""
    settle()
    d = tempfile.mkdtemp(prefix=prefix)
    subprocess.run(["chattr", "+T", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return d


def set_aside(path, aside_root):
    """Renames directory `path` into `aside_root` and makes an empty one like
    it (mode, owner) in its place: a queue or mailbox emptied without freeing
    an inode (see make_workdir). Daemons reach their directories by path, so
    they write into the new one from the next file on."""
    st = os.stat(path)
    os.makedirs(aside_root, mode=0o700, exist_ok=True)
    n = len(os.listdir(aside_root)) + 1
    os.rename(path, os.path.join(aside_root, f"{n}-{os.path.basename(path)}"))
    os.mkdir(path, 0o700)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, st.st_mode & 0o7777)


def wait_drained(server, timeout, poll=0.05):
    """Waits until the server's queue is empty; returns what is left."""
    end = time.monotonic() + timeout
    while True:
        left = server.queued()
        if left == 0 or time.monotonic() >= end:
            return left
        time.sleep(poll)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def parse_size(text):
    t = text.strip().lower()
    mult = 1
    if t.endswith("kib") or t.endswith("k"):
        mult, t = 1024, t.rstrip("kib").rstrip("k")
    elif t.endswith("mib") or t.endswith("m"):
        mult, t = 1024 * 1024, t.rstrip("mib").rstrip("m")
    return int(t) * mult


def size_label(n):
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)}MiB"
    if n % 1024 == 0:
        return f"{n // 1024}KiB"
    return f"{n}B"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    width = int(spec.split(".")[0] or 0)
    return "-".rjust(width) if x is None else format(x, spec)


def parse_params(items, option):
    """["NAME=VALUE", ...] -> {NAME: VALUE}; exits on a malformed item."""
    out = {}
    for kv in items:
        k, sep, v = kv.partition("=")
        if not sep or not k.strip():
            sys.exit(f"{option} wants NAME=VALUE, not {kv}")
        out[k.strip()] = v.strip()
    return out


def count_files(top):
    n = 0
    for _, _, files in os.walk(top):
        n += len(files)
    return n


# ---------------------------------------------------------------- process trees

def proc_table():
    """pid -> (ppid, own + reaped-children CPU ticks) for every process."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # rest[0] = state (field 3); utime..cstime are fields 14..17.
        ppid = int(rest[1])
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        table[int(d)] = (ppid, ticks)
    return table


def tree_cpu_seconds(root_pid):
    """CPU seconds used so far by root_pid and all its live descendants,
    including descendants that already exited and were reaped (their time is
    in their parent's cutime/cstime). Returns (seconds, number of processes)."""
    table = proc_table()
    if root_pid not in table:
        return 0.0, 0
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, n, todo = 0, 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += table[pid][1]
        n += 1
        todo.extend(children.get(pid, []))
    return total / CLK_TCK, n


def descendants(root):
    table = proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _children_via_task_files(pid):
    """Children of pid from /proc/PID/task/*/children (every thread: a child
    belongs to the thread that forked it); None when the kernel lacks them."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):
                return out          # the process went away
            return None             # no children files (CONFIG_PROC_CHILDREN off)
        except OSError:
            pass
    return out


def tree_pids(root):
    """root and its live descendants. Uses the cheap children files when the
    kernel has them (the memory sampler calls this every 100 ms), else a scan
    of /proc."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = _children_via_task_files(pid)
        if kids is None:
            return [root] + descendants(root) if pid_alive(root) else []
        pids.append(pid)
        todo.extend(kids)
    return pids


def pss_kib(pid):
    """Proportional set size of one process in KiB (0 if it is gone). Raw
    reads: the kernel's page-table walk (~0.1 ms per process) is most of the
    cost, and the sampler calls this for every process every 100 ms."""
    try:
        fd = os.open(f"/proc/{pid}/smaps_rollup", os.O_RDONLY)
    except OSError:
        return 0
    try:
        data = os.read(fd, 4096)
    except OSError:
        return 0
    finally:
        os.close(fd)
    i = data.find(b"\nPss:")
    if i < 0:
        return 0
    try:
        return int(data[i + 5:data.index(b"kB", i)])
    except ValueError:
        return 0


def tree_pss_kib(root):
    """(PSS in KiB summed over root's process tree, number of processes)."""
    pids = tree_pids(root)
    return sum(pss_kib(p) for p in pids), len(pids)


class PssSampler:
    """Samples the summed PSS of a process tree every `interval` seconds in a
    thread, from start() to stop(); keeps the maximum. PSS splits shared pages
    between the processes mapping them, so the sum over a tree counts the
    shared libraries once, not once per process as RSS would."""

    def __init__(self, root_pid, interval=0.1):
        self.root = root_pid
        self.interval = interval
        self.peak_kib = 0
        self.peak_processes = 0
        self.samples = 0
        self.cpu_s = 0.0   # the sampler thread's own CPU time (not the server's)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        t0 = time.thread_time()
        while True:
            kib, n = tree_pss_kib(self.root)
            self.samples += 1
            if kib > self.peak_kib:
                self.peak_kib, self.peak_processes = kib, n
            self.cpu_s = time.thread_time() - t0
            if self._stop.wait(self.interval):
                return

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        # One last sample, so a run shorter than the interval still has one.
        kib, n = tree_pss_kib(self.root)
        self.samples += 1
        if kib > self.peak_kib:
            self.peak_kib, self.peak_processes = kib, n
        return self.peak_kib


def kill_leftovers(pids):
    """SIGKILL, by pid, processes of a server we started that outlived its stop."""
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            return s.recv(100).startswith(b"220")
    except OSError:
        return False


# ---------------------------------------------------------------- Postfix package

def postfix_master_pid(queue_dir):
    try:
        with open(os.path.join(queue_dir, "pid", "master.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def ensure_postfix():
    """Installs Debian's postfix package (used for smtp-source and as the peer)
    when missing; a system-wide Postfix that the install starts is stopped."""
    if shutil.which("smtp-source") and shutil.which("postfix") and shutil.which("postconf"):
        return
    log("installing Debian's postfix package (no configuration)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], input="postfix postfix/main_mailer_type select No configuration\n",
                   text=True, check=True)
    cmd = ["apt-get", "install", "-y", "-q", "postfix"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        out = r.stdout + r.stderr
        if "Unable to locate package" in out or "has no installation candidate" in out or "404" in out:
            log("package lists missing or stale: apt-get update")
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("apt-get install postfix failed:\n" + r.stdout + r.stderr)
    # The package's own instance must not stay up (policy-rc.d or the absence of
    # a main.cf usually keep it down; make sure).
    pid = postfix_master_pid("/var/spool/postfix")
    if pid:
        log(f"stopping the system-wide Postfix the install started (master pid {pid})")
        subprocess.run(["postfix", "stop"], capture_output=True)
        wait_for(lambda: not pid_alive(pid), 20, "system Postfix to stop")


# ---------------------------------------------------------------- servers

def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


class Server:
    name = "?"

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(prefix=f"bench-{self.name}-", dir=workdir)
        os.chmod(self.dir, 0o755)
        self.port = free_port()

    def cpu(self):
        return tree_cpu_seconds(self.root_pid())

    def pss(self):
        return tree_pss_kib(self.root_pid())

    def tail_log(self, n=15):
        return tail(self.logfile, n)


class Postern(Server):
    """A Postern instance from build/bin: `master -f -c DIR`. `services` are
    master.cf lines after the smtpd listener (default: none, accept only)."""
    name = "postern"
    QUEUES = ("incoming", "active", "deferred", "hold")

    def __init__(self, workdir, extra=None, services="", written_by="bench"):
        super().__init__(workdir)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.logfile = os.path.join(self.dir, "maillog")
        self.proc = None
        os.makedirs(self.etc)
        main = {
            "queue_directory": self.queue,
            "daemon_directory": BIN,
            "maillog_file": self.logfile,
            "inet_interfaces": "127.0.0.1",
            "mydestination": "localhost",
            "mynetworks": "127.0.0.0/8",
            "master_stop_timeout": "10s",
            # Like Postfix, whose per-client connection limit does not apply to
            # $mynetworks (smtpd_client_event_limit_exceptions): smtp-source
            # reconnects faster than smtpd notices the previous QUIT, so at 50
            # sessions the default 50 is briefly exceeded and runs fail with 421.
            "smtpd_client_connection_count_limit": "0",
        }
        main.update(extra or {})
        self.main = main
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"# written by {written_by}\n")
            f.writelines(f"{k} = {v}\n" for k, v in main.items())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(f"{self.port} inet n - y - - smtpd\n")
            f.write(services)

    def start(self):
        mkusers = os.path.join(ROOT, "scripts", "mkusers")
        if os.path.exists(mkusers):
            run([mkusers])
        out = open(os.path.join(self.dir, "master.out"), "wb")
        self.proc = subprocess.Popen([os.path.join(BIN, "master"), "-f", "-c", self.etc], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"postern master exited {self.proc.returncode}: {self.output()}")
            try:
                return "daemon started" in open(self.logfile, errors="replace").read()
            except FileNotFoundError:
                return False
        wait_for(up, 15, "postern master to start")
        wait_for(lambda: port_open(self.port), 15, f"postern smtpd on port {self.port}")

    def output(self):
        try:
            return open(os.path.join(self.dir, "master.out"), errors="replace").read()
        except OSError:
            return ""

    def root_pid(self):
        return self.proc.pid

    def queued(self):
        """Messages in the queue (temporary .tmp-* files of smtpd included)."""
        return sum(count_files(os.path.join(self.queue, q)) for q in self.QUEUES)

    def set_aside_incoming(self):
        """Empties incoming/ (with no qmgr running) without unlinking."""
        set_aside(os.path.join(self.queue, "incoming"), os.path.join(self.dir, "aside"))

    def clean_queue(self):
        """Removes every queue file and defer log. qmgr tolerates files that
        vanish under it (that is what `postern queue delete` does)."""
        for q in self.QUEUES + ("defer",):
            for top, _, files in os.walk(os.path.join(self.queue, q)):
                for fn in files:
                    try:
                        os.unlink(os.path.join(top, fn))
                    except FileNotFoundError:
                        pass

    def version(self):
        return run(["git", "-C", ROOT, "describe", "--always", "--dirty"], check=False).stdout.strip()

    def stop(self):
        if self.proc is None:
            return
        pids = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_leftovers(pids)


class Postfix(Server):
    """A private Postfix instance: its own config dir, queue and data dir.

    mode "accept": no queue manager (it only accepts, see README.md);
    "defer": complete, every transport deferred;
    "deliver": complete and unchanged, mail is delivered.
    `extra` are main.cf settings applied last."""
    name = "postfix"

    def __init__(self, workdir, mode="accept", extra=None, written_by="bench"):
        super().__init__(workdir)
        self.mode = mode
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "maillog")
        self.master = None
        for d in (self.etc, self.queue, self.data):
            os.makedirs(d)
        shutil.chown(self.data, "postfix")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"# written by {written_by}\n")
        aliases = os.path.join(self.etc, "aliases")
        with open(aliases, "w") as f:
            f.write("postmaster: root\n")
        params = {
            "compatibility_level": "3.6",
            "config_directory": self.etc,
            "queue_directory": self.queue,
            "data_directory": self.data,
            "maillog_file": self.logfile,
            "maillog_file_prefixes": self.dir,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "bench.localdomain",
            "mydestination": "localhost",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": f"hash:{aliases}",
            "alias_database": f"hash:{aliases}",
            "biff": "no",
        }
        if mode == "accept":
            # qmgr is not running, so nothing hands cleanup its in-flow tokens;
            # without this every message would wait in_flow_delay (1s).
            params["in_flow_delay"] = "0s"
        elif mode == "defer":
            params["defer_transports"] = "smtp local virtual relay lmtp error"
        params.update(extra or {})
        run(["postconf", "-c", self.etc, "-e"] + [f"{k}={v}" for k, v in params.items()])
        run(["postalias", "-c", self.etc, aliases])
        # master.cf: Debian's, with the smtp listener moved to our port and,
        # in accept mode, no queue manager.
        lines = []
        for line in open("/etc/postfix/master.cf"):
            fields = line.split()
            if fields[:2] == ["smtp", "inet"]:
                line = line.replace("smtp", f"127.0.0.1:{self.port}", 1)
            elif mode == "accept" and fields[:2] == ["qmgr", "unix"]:
                line = "#" + line
            lines.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.writelines(lines)
        # The chroot (Debian runs smtpd, cleanup, rewrite chrooted) needs what
        # Debian's configure-instance.sh copies for the system instance.
        os.makedirs(os.path.join(self.queue, "etc"))
        for fn in ("hosts", "resolv.conf", "nsswitch.conf", "services", "host.conf", "localtime"):
            if os.path.exists(f"/etc/{fn}"):
                shutil.copy(f"/etc/{fn}", os.path.join(self.queue, "etc", fn))

    def postfix_cmd(self, *args):
        r = run(["postfix", "-c", self.etc, *args], check=False)
        if r.returncode != 0:
            # postfix(1) reports only to the log (or a tty); show the log.
            raise RuntimeError(f"postfix {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
                               f"{self.tail_log()}")
        return r

    def start(self):
        self.postfix_cmd("start")
        wait_for(lambda: postfix_master_pid(self.queue), 15, "postfix master")
        self.master = postfix_master_pid(self.queue)
        if self.mode == "accept":
            # cleanup pokes the qmgr FIFO after each message; with the FIFO
            # absent it logs a warning per message, with a FIFO nobody reads
            # the poke fails silently (as when qmgr is busy restarting).
            fifo = os.path.join(self.queue, "public", "qmgr")
            if not os.path.exists(fifo):
                os.mkfifo(fifo, 0o622)
                shutil.chown(fifo, "postfix", "root")
        wait_for(lambda: port_open(self.port), 15, f"postfix smtpd on port {self.port}")

    def root_pid(self):
        return self.master

    def queued(self):
        return sum(count_files(os.path.join(self.queue, q)) for q in ("incoming", "active", "deferred", "hold"))

    def set_aside_incoming(self):
        """Empties incoming/ (accept mode: no qmgr) without unlinking."""
        set_aside(os.path.join(self.queue, "incoming"), os.path.join(self.dir, "aside"))

    def clean_queue(self):
        run(["postsuper", "-c", self.etc, "-d", "ALL"], check=False)
        if self.mode != "accept":
            for q in ("defer", "bounce", "trace"):
                shutil.rmtree(os.path.join(self.queue, q, ""), ignore_errors=True)

    def version(self):
        return run(["postconf", "-c", self.etc, "-h", "mail_version"], check=False).stdout.strip()

    def stop(self):
        master = self.master or postfix_master_pid(self.queue)
        if not master:
            return
        pids = descendants(master)
        run(["postfix", "-c", self.etc, "stop"], check=False)
        try:
            wait_for(lambda: not pid_alive(master), 20, "postfix master to stop")
        except RuntimeError:
            pids.append(master)
        kill_leftovers(pids)


# ---------------------------------------------------------------- mailbox users

class MailUser:
    """A throw-away system user with its home (and ~/Maildir/) under `parent`,
    made with useradd and removed with userdel. The name is new: an existing
    user or group of that name is never reused, changed or removed."""

    def __init__(self, prefix, parent):
        self.name = None
        self.uid = None
        self.mail_spool_existed = True   # until known: never remove /var/mail/NAME
        for _ in range(50):
            name = f"{prefix}{os.getpid() % 100000}{os.urandom(2).hex()}"
            if not _user_exists(name) and not _group_exists(name):
                break
        else:
            raise RuntimeError(f"no free user name with prefix {prefix}")
        self.home = os.path.join(parent, name)
        spool_existed = os.path.lexists(f"/var/mail/{name}")
        # Named before useradd runs, so an interrupt in between still removes
        # it; remove() checks that the user is the one made here (its home).
        self.name = name
        self.mail_spool_existed = spool_existed
        try:
            r = run(["useradd", "-M", "-U", "-d", self.home, "-s", "/usr/sbin/nologin",
                     "-c", "Postern benchmark (temporary)", name], check=False)
        except BaseException:
            self.remove()
            raise
        if r.returncode != 0:
            self.name = None
            raise RuntimeError(f"useradd {name} failed: {r.stdout}{r.stderr}")
        try:
            pw = pwd.getpwnam(name)
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
            os.makedirs(self.home)
            os.chown(self.home, self.uid, self.gid)
            os.chmod(self.home, 0o700)
            # A Maildir as the user would have it; both servers would create it
            # on first delivery too.
            self.maildir = os.path.join(self.home, "Maildir")
            os.mkdir(self.maildir, 0o700)
            os.chown(self.maildir, self.uid, self.gid)
            for sub in ("tmp", "new", "cur"):
                p = os.path.join(self.maildir, sub)
                os.mkdir(p, 0o700)
                os.chown(p, self.uid, self.gid)
        except BaseException:
            self.remove()
            raise

    def count(self):
        """Messages delivered: entries in Maildir/new and Maildir/cur."""
        n = 0
        for sub in ("new", "cur"):
            try:
                with os.scandir(os.path.join(self.maildir, sub)) as it:
                    for _ in it:
                        n += 1
            except FileNotFoundError:
                pass
        return n

    def files(self):
        out = []
        for sub in ("new", "cur"):
            try:
                with os.scandir(os.path.join(self.maildir, sub)) as it:
                    out.extend(e.path for e in it)
            except FileNotFoundError:
                pass
        return out

    def empty(self):
        """Moves every message (new, cur and tmp) out of the Maildir, into
        ~/.old/, which goes with the home directory at the end. Not unlinked
        between runs: on ext4 without a journal an inode freed less than 30 s
        ago is skipped, at a cost, by every later allocation in its block
        group, so deleting the last run's 2,000 files would slow the next run's
        file creation (either server's) for reasons outside the servers."""
        old = os.path.join(self.home, ".old")
        os.makedirs(old, mode=0o700, exist_ok=True)
        self.emptied = getattr(self, "emptied", 0) + 1
        for sub in ("tmp", "new", "cur"):
            p = os.path.join(self.maildir, sub)
            try:
                os.rename(p, os.path.join(old, f"{self.emptied}-{sub}"))
            except FileNotFoundError:
                pass
            os.mkdir(p, 0o700)
            os.chown(p, self.uid, self.gid)

    def remove(self, keep_home=False):
        if not self.name:
            return
        name, self.name = self.name, None
        try:
            ours = pwd.getpwnam(name).pw_dir == self.home
        except KeyError:
            ours = False
        if ours:
            r = run(["userdel", name], check=False)
            if r.returncode != 0:
                log(f"userdel {name}: {r.stdout}{r.stderr}".strip())
            # userdel removes the user's own group when USERGROUPS_ENAB; make sure.
            if _group_exists(name) and not _user_exists(name):
                run(["groupdel", name], check=False)
        spool = f"/var/mail/{name}"
        if not self.mail_spool_existed and os.path.lexists(spool):
            try:
                if self.uid is not None and os.lstat(spool).st_uid == self.uid:
                    os.unlink(spool)
            except OSError:
                pass
        if not keep_home:
            shutil.rmtree(self.home, ignore_errors=True)


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False
