"""Integration-test harness: whole Postern instances in temporary directories.

An Instance has its own config directory (-c), queue, log file and free
loopback ports. Tests start it, drive it with real clients, and stop it; the
runner calls cleanup_all() after every test so nothing is left running. Only
processes this harness started are ever signalled, by pid."""
import os
import pwd
import re
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.environ.get("POSTERN_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("POSTERN_BUILD", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "bin")

_instances = []


class Skip(Exception):
    pass


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root")
    ensure_users()


def ensure_users():
    """The postern user and posterndrop group, as make install creates them."""
    subprocess.run([os.path.join(ROOT, "scripts", "mkusers")], check=True)


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    v = pred()
    if v:
        return v
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def proc_status(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid):
    st = proc_status(pid)
    return st is not None and not st.get("State", "").startswith("Z")


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


class Instance:
    def __init__(self, main_cf=None, master_cf="", name="t"):
        self.dir = tempfile.mkdtemp(prefix=f"postern-{name}-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.logfile = os.path.join(self.dir, "maillog")
        os.makedirs(self.etc)
        self.main = {
            "queue_directory": self.queue,
            "daemon_directory": BIN,
            "maillog_file": self.logfile,
            "inet_interfaces": "127.0.0.1",
            "service_throttle_time": "60s",
            "master_stop_timeout": "5s",
            # Tests never use the machine's resolver: client names stay
            # "unknown" unless a test starts its own DNS server (dnsserver.py)
            # and sets smtpd_peername_lookup = yes and dns_servers.
            "smtpd_peername_lookup": "no",
        }
        self.main.update(main_cf or {})
        self.write_main_cf()
        self.write_master_cf(master_cf)
        self.master = None
        self.master_pid = None
        _instances.append(self)

    # ---- configuration ----
    def write_main_cf(self, extra_text=""):
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# written by the test harness\n")
            for k, v in self.main.items():
                f.write(f"{k} = {v}\n")
            f.write(extra_text)

    def write_master_cf(self, text):
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(text)

    # ---- processes ----
    def start(self, wait=True):
        out = open(os.path.join(self.dir, "master.out"), "wb")
        self.master = subprocess.Popen([os.path.join(BIN, "master"), "-f", "-c", self.etc],
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.master_pid = self.master.pid
        if wait:
            wait_for(lambda: "daemon started" in self.log() or self.master.poll() is not None,
                     what="master to start")
            if self.master.poll() is not None:
                raise AssertionError(f"master exited with {self.master.returncode}: {self.output()}")
        return self

    def output(self):
        try:
            with open(os.path.join(self.dir, "master.out"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10.0, count=1):
        rx = re.compile(pattern)
        return wait_for(lambda: len(rx.findall(self.log())) >= count, timeout, f"log line /{pattern}/")

    def children(self, of=None):
        """Live processes whose parent is this instance's master."""
        parent = of or self.master_pid
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = proc_status(int(d))
                if st and st.get("PPid") == str(parent) and not st.get("State", "").startswith("Z"):
                    out.append(int(d))
        return out

    def our_processes(self):
        """Every live process whose command line names this instance's config dir."""
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != os.getpid() and self.etc in cmdline(int(d)) and alive(int(d)):
                out.append(int(d))
        return out

    def postern(self, *args, timeout=60):
        return subprocess.run([os.path.join(BIN, "postern"), "-c", self.etc, *args], capture_output=True,
                              text=True, timeout=timeout)

    def signal(self, sig):
        os.kill(self.master_pid, sig)

    def stop(self):
        if self.master is not None and self.master.poll() is None:
            self.master.send_signal(signal.SIGTERM)
            try:
                self.master.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait()
        # Children of ours that outlived master (they should not): by pid only.
        for pid in self.our_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.master.returncode if self.master else None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def cleanup_all():
    while _instances:
        _instances.pop().cleanup()


class Client:
    """A line-oriented TCP client with timeouts."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def close(self):
        self.sock.close()


def testd_hello(port):
    """Connects to a testd service; returns (client, fields of its greeting)."""
    c = Client(port)
    hello = c.line()
    fields = dict(kv.split("=", 1) for kv in hello.split()[1:])
    return c, fields


def make_cert(directory, cn="mx.example.test"):
    """A self-signed certificate and key (mode 0600) for TLS tests."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key
