#!/usr/bin/python3
"""SMTP acceptance benchmark: Postern versus Debian's Postfix, side by side.

Both servers run on loopback ports from temporary directories, accept mail and
do nothing else (Postern has no delivery yet; Postfix runs without its queue
manager, see README.md). Postfix's smtp-source is the client. For every
(sessions, size) pair each server gets RUNS runs of MESSAGES messages; the
script prints the median acceptance rate of each, the ratio, and the CPU time
of each server's whole process tree per message. Results also go to
bench/results/<timestamp>.json.

Run as root:  /usr/bin/python3 bench/smtp_accept.py [--quick] [--sessions 10,50] [--sizes 1k,100k]
Only processes this script started are ever signalled, and only by pid."""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")
RESULTS = os.path.join(ROOT, "bench", "results")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SENDER = "a@localhost"
RECIPIENT = "root@localhost"


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


def count_files(top):
    n = 0
    for _, _, files in os.walk(top):
        n += len(files)
    return n


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

class Server:
    name = "?"

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(prefix=f"bench-{self.name}-", dir=workdir)
        os.chmod(self.dir, 0o755)
        self.port = free_port()

    def cpu(self):
        return tree_cpu_seconds(self.root_pid())


class Postern(Server):
    name = "postern"

    def __init__(self, workdir, extra=None):
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
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# written by bench/smtp_accept.py\n")
            f.writelines(f"{k} = {v}\n" for k, v in main.items())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(f"{self.port} inet n - y - - smtpd\n")

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
        return count_files(os.path.join(self.queue, "incoming"))

    def clean_queue(self):
        inc = os.path.join(self.queue, "incoming")
        for top, _, files in os.walk(inc):
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
    """A private Postfix instance: its own config dir, queue and data dir, and
    only the services acceptance needs (qmgr is off, see README.md)."""
    name = "postfix"

    def __init__(self, workdir, mode="accept"):
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
            f.write("# written by bench/smtp_accept.py\n")
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
        else:
            params["defer_transports"] = "smtp local virtual relay lmtp error"
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

    def tail_log(self, n=15):
        try:
            return "".join(open(self.logfile, errors="replace").readlines()[-n:])
        except OSError:
            return "(no log)"

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


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            return s.recv(100).startswith(b"220")
    except OSError:
        return False


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


def kill_leftovers(pids):
    """SIGKILL, by pid, processes of a server we started that outlived its stop."""
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- measuring

def one_run(server, sessions, size, messages, timeout):
    server.clean_queue()
    time.sleep(0.2)
    cmd = ["smtp-source", "-c", "-l", str(size), "-m", str(messages), "-s", str(sessions),
           "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{server.port}"]
    os.sync()
    cpu0, _ = server.cpu()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, nproc = server.cpu()
    # Processes that outlive the run may still be logging; the queue count is
    # what proves acceptance.
    queued = server.queued()
    res = {
        "wall_s": round(wall, 4),
        "rate": round(messages / wall, 2),
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cpu_ms_per_msg": round((cpu1 - cpu0) * 1000 / messages, 4),
        "client_cpu_s": round((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 3),
        "server_processes_after": nproc,
        "queued": queued,
        "ok": r.returncode == 0 and queued == messages,
    }
    if r.returncode != 0:
        res["error"] = (r.stderr or r.stdout).strip()[-500:]
    elif queued != messages:
        res["error"] = f"{queued} messages in the queue after sending {messages}"
    return res


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    width = int(spec.split(".")[0] or 0)
    return "-".rjust(width) if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 messages, 1 run (a smoke test, not a measurement)")
    ap.add_argument("--messages", type=int, help="messages per run (default 5000)")
    ap.add_argument("--runs", type=int, help="runs per configuration (default 3; the median is reported)")
    ap.add_argument("--sessions", default="1,10,50", help="comma-separated concurrent session counts")
    ap.add_argument("--sizes", default="1k,100k", help="comma-separated message sizes (bytes, or with k / m)")
    ap.add_argument("--servers", default="postern,postfix", help="which servers to measure")
    ap.add_argument("--postfix-mode", choices=["accept", "defer"], default="accept",
                    help="accept: Postfix without qmgr (default, like Postern today); "
                         "defer: Postfix with qmgr, every transport deferred")
    ap.add_argument("--postern-param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra main.cf setting for Postern (repeatable), e.g. "
                         "smtpd_client_connection_count_limit=50 to keep that default")
    ap.add_argument("--warmup", type=int, default=200, help="messages sent to each server before measuring")
    ap.add_argument("--timeout", type=int, default=900, help="seconds one smtp-source run may take")
    ap.add_argument("--out", help="JSON file (default bench/results/<timestamp>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories (servers are stopped)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("smtp_accept.py: must be run as root (both servers bind, chroot and drop privileges)")
    messages = args.messages or (500 if args.quick else 5000)
    runs = args.runs or (1 if args.quick else 3)
    sessions_list = [int(s) for s in args.sessions.split(",") if s.strip()]
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    for n in names:
        if n not in ("postern", "postfix"):
            sys.exit(f"unknown server {n}")
    if "postern" in names and not os.path.exists(os.path.join(BIN, "master")):
        sys.exit(f"{BIN}/master not found: run make -j2 all first")

    postern_params = {}
    for kv in args.postern_param:
        k, sep, v = kv.partition("=")
        if not sep:
            sys.exit(f"--postern-param wants NAME=VALUE, not {kv}")
        postern_params[k.strip()] = v.strip()

    ensure_postfix()

    workdir = tempfile.mkdtemp(prefix="postern-bench-")
    os.chmod(workdir, 0o755)
    servers = []

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    started = datetime.datetime.now()
    rows = []
    try:
        for n in names:
            s = Postern(workdir, postern_params) if n == "postern" else Postfix(workdir, args.postfix_mode)
            servers.append(s)
            s.start()
            log(f"{s.name} listening on 127.0.0.1:{s.port} ({s.dir}), version {s.version()}")
        for s in servers:
            if args.warmup:
                r = one_run(s, 10, 1024, args.warmup, args.timeout)
                if not r["ok"]:
                    raise RuntimeError(f"warm-up against {s.name} failed: {r.get('error')}")
        for size in sizes:
            for sessions in sessions_list:
                raw = {s.name: [] for s in servers}
                for i in range(runs):
                    # Interleave the servers so slow drift in the machine's
                    # load hits both alike.
                    order = servers if i % 2 == 0 else list(reversed(servers))
                    for s in order:
                        r = one_run(s, sessions, size, messages, args.timeout)
                        raw[s.name].append(r)
                        log(f"  {s.name:7} sessions={sessions:<3} size={size_label(size):7} run {i + 1}/{runs}: "
                            f"{r['rate']:8.1f} msg/s, {r['server_cpu_ms_per_msg']:.3f} CPU ms/msg"
                            + ("" if r["ok"] else f"  FAILED: {r.get('error')}"))
                row = {"sessions": sessions, "size": size, "messages": messages, "runs": runs}
                for n, rs in raw.items():
                    good = [r for r in rs if r["ok"]]
                    row[n] = {
                        "rate_median": median([r["rate"] for r in good]),
                        "cpu_ms_per_msg_median": median([r["server_cpu_ms_per_msg"] for r in good]),
                        "failed_runs": len(rs) - len(good),
                        "runs": rs,
                    }
                if "postern" in row and "postfix" in row and row["postern"]["rate_median"] and \
                        row["postfix"]["rate_median"]:
                    row["ratio"] = round(row["postern"]["rate_median"] / row["postfix"]["rate_median"], 3)
                rows.append(row)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopping the servers")
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {s.name}: {e}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if not rows:
        sys.exit(1)
    print_table(rows, names)
    result = {
        "benchmark": "smtp_accept",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_at_end": os.getloadavg()},
        "versions": {s.name: s.version() for s in servers},
        "settings": {"messages": messages, "runs": runs, "sessions": sessions_list, "sizes": sizes,
                     "sender": SENDER, "recipient": RECIPIENT, "postfix_mode": args.postfix_mode,
                     "warmup": args.warmup, "quick": args.quick, "postern_params": postern_params,
                     "client": "smtp-source -c -l SIZE -m MESSAGES -s SESSIONS (one connection per message)"},
        "rows": rows,
    }
    out = args.out or os.path.join(RESULTS, started.strftime("%Y-%m-%d-%H%M%S") + (
        "-quick" if args.quick else "") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"\nwrote {out}")
    failed = sum(row[n]["failed_runs"] for row in rows for n in names)
    return 1 if failed else 0


def print_table(rows, names):
    hdr = f"{'sessions':>8} {'size':>7}"
    for n in names:
        hdr += f" {n + ' msg/s':>14} {n + ' CPU ms/msg':>19}"
    if len(names) == 2:
        hdr += f" {'ratio':>7}"
    print()
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        line = f"{row['sessions']:>8} {size_label(row['size']):>7}"
        for n in names:
            d = row[n]
            mark = "*" if d["failed_runs"] else " "
            line += f" {fmt(d['rate_median'], '13.1f')}{mark} {fmt(d['cpu_ms_per_msg_median'], '19.3f')}"
        if len(names) == 2:
            line += f" {fmt(row.get('ratio'), '7.2f')}"
        print(line)
    print(f"\nmedian of {rows[0]['runs']} run(s) of {rows[0]['messages']} messages; "
          "ratio = postern rate / postfix rate; CPU = whole server process tree"
          + ("; * = some runs failed (see JSON)" if any(row[n]["failed_runs"] for row in rows for n in names)
             else ""))


if __name__ == "__main__":
    sys.exit(main())
