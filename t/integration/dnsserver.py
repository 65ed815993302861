"""A DNS server for tests: the real unbound daemon (Debian package `unbound`)
on a loopback address and a free port, serving only what the test declares.

    dns = DnsServer()
    dns.mx("example.test", (10, "mx1.example.test"), (20, "mx2.example.test"))
    dns.a("mx1.example.test", "127.0.0.1")
    dns.null_mx("nomail.test")               # MX 0 .
    dns.txt("example.test", "v=spf1 -all")
    dns.aaaa("v6.example.test", "2001:db8::25")
    dns.ptr("127.0.0.1", "mx1.example.test")
    dns.start()                              # bounded wait until it answers
    dns.server                               # "127.0.0.1@PORT", for dns_servers / dnsq --server
    dns.stop()                               # or let harness.cleanup_all() do it

Every name nobody declared is NXDOMAIN (a missing domain needs no
declaration) and a declared name without records of the asked type is NODATA:
the server is authoritative for the whole tree (local-zone "." static), so it
never sends a query anywhere, and nothing here uses the machine's resolver.
It runs in the foreground as the invoking user (no chroot, no user change),
with its config, pid file and log in a temporary directory, and is stopped by
its pid. Records can be added until start(); add more and call restart()."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import harness

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "TLSA": 52}


def free_port(host="127.0.0.1"):
    """A port that is free for both UDP and TCP on host."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(fam, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                with socket.socket(fam, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
                return port
            except OSError:
                continue
    raise AssertionError("no free UDP+TCP port on " + host)


def _quote(text):
    """A TXT character-string in zone-file syntax, split into 255-byte pieces."""
    data = text.encode()
    pieces = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    out = []
    for p in pieces:
        s = "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else "\\%03d" % b for b in p)
        out.append('"' + s + '"')
    return " ".join(out)


def query(host, port, name, qtype="A", timeout=1.0):
    """One UDP query; returns (rcode, answer count) or None if nothing came back."""
    qid = 0x5053
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        if label:
            pkt += bytes([len(label)]) + label.encode()
    pkt += b"\0" + struct.pack(">HH", TYPES[qtype], 1)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(pkt, (host, port))
            data, _ = s.recvfrom(65535)
        except OSError:
            return None
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None
    return data[3] & 0xF, struct.unpack(">H", data[6:8])[0]


class DnsServer:
    def __init__(self, host="127.0.0.1", port=None, ttl=300):
        if not os.access(UNBOUND, os.X_OK):
            raise harness.Skip("unbound (the Debian package) is not installed")
        self.host = host
        self.port = port or free_port(host)
        self.ttl = ttl
        self.dir = tempfile.mkdtemp(prefix="postern-dns-")
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "unbound.conf")
        self.logfile = os.path.join(self.dir, "unbound.log")
        self.pidfile = os.path.join(self.dir, "unbound.pid")
        self.data = []  # local-data lines
        self.ptrs = []  # local-data-ptr lines
        self.proc = None
        harness._instances.append(self)  # cleanup_all() stops us after each test

    @property
    def server(self):
        """The address for dns_servers and dnsq --server."""
        return f"{self.host}@{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"

    # ---- declarations ----
    def record(self, name, rtype, rdata, ttl=None):
        """Any record, as zone-file text: record("x.test", "SRV", "0 5 25 mx.test")."""
        self.data.append(f"{name.rstrip('.')}. {ttl or self.ttl} IN {rtype} {rdata}")
        return self

    def a(self, name, *addrs):
        for a in addrs:
            self.record(name, "A", a)
        return self

    def aaaa(self, name, *addrs):
        for a in addrs:
            self.record(name, "AAAA", a)
        return self

    def mx(self, domain, *prefs):
        """mx("example.test", (10, "mx1.example.test"), (20, "mx2.example.test"))"""
        for pref, host in prefs:
            self.record(domain, "MX", f"{pref} {host.rstrip('.')}." if host != "." else f"{pref} .")
        return self

    def null_mx(self, domain):
        return self.record(domain, "MX", "0 .")

    def txt(self, name, *texts):
        """One TXT record per text; texts over 255 bytes become several strings."""
        for t in texts:
            self.record(name, "TXT", _quote(t))
        return self

    def cname(self, name, target):
        return self.record(name, "CNAME", target.rstrip(".") + ".")

    def ptr(self, addr, name):
        self.ptrs.append(f"{addr} {self.ttl} {name.rstrip('.')}.")
        return self

    def tlsa(self, name, usage, selector, mtype, hexdata):
        return self.record(name, "TLSA", f"{usage} {selector} {mtype} {hexdata}")

    # ---- process ----
    def write_config(self):
        v6 = ":" in self.host
        lines = [
            "server:",
            f"    interface: {self.host}@{self.port}",
            f"    port: {self.port}",
            "    do-daemonize: no",
            '    username: ""',
            '    chroot: ""',
            f'    directory: "{self.dir}"',
            f'    pidfile: "{self.pidfile}"',
            f'    logfile: "{self.logfile}"',
            "    use-syslog: no",
            "    verbosity: 1",
            "    log-queries: yes",  # output() shows what was asked
            "    num-threads: 1",
            f"    do-ip4: {'no' if v6 else 'yes'}",
            f"    do-ip6: {'yes' if v6 else 'no'}",
            "    access-control: 127.0.0.0/8 allow",
            "    access-control: ::1 allow",
            '    module-config: "iterator"',
            "    do-not-query-localhost: yes",
            # Authoritative for everything: no name is ever looked up elsewhere.
            '    local-zone: "." static',
            # Our own loopback reverse zones replace unbound's built-in ones
            # (which answer "localhost."), so a test's PTR is the only one.
            '    local-zone: "127.in-addr.arpa." static',
            '    local-zone: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa." static',
        ]
        lines += [f'    local-data: "{d}"' if '"' not in d else f"    local-data: '{d}'" for d in self.data]
        lines += [f'    local-data-ptr: "{p}"' for p in self.ptrs]
        lines += ["remote-control:", "    control-enable: no", ""]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines))

    def start(self, timeout=10.0):
        self.write_config()
        out = open(os.path.join(self.dir, "unbound.out"), "wb")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", self.conf], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"unbound exited with {self.proc.returncode}: {self.output()}")
            if query(self.host, self.port, "ready.invalid", "A", timeout=0.2) is not None:
                return self
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"unbound did not answer within {timeout}s: {self.output()}")

    def restart(self):
        self.stop()
        return self.start()

    def output(self):
        text = ""
        for name in ("unbound.out", "unbound.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
