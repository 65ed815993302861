"""The auth daemon on a real instance, driven through private/auth with the
AuthPasswordVerify / AuthUserLookup frames of lib/auth/proto.hpp: PAM checks
of a real system user, failure delays and lockouts, answers out of order,
lookups, a garbage frame, and virtual users made with `postern user add`.

Root only. Each test creates its own system user (pt<random>, home in the
instance directory, password set with chpasswd) and its own PAM service file
/etc/pam.d/postern-test-<pid>-<random> (the shipped etc/pam.d/postern stack),
and removes both afterwards; existing users and PAM files are never touched."""
import os
import pwd
import re
import secrets
import socket
import struct
import subprocess
import threading
import time

from delivery_client import decode_frame, encode_frame
from harness import BIN, ROOT, Instance, need_root, wait_for

DELAY = 1  # auth_failure_delay in the tests' main.cf, seconds


class AuthConn:
    """One connection to private/auth; requests get increasing ids."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.next_id = 1

    def send_verify(self, user, password, client_addr="192.0.2.10", service="smtpd"):
        rid = self.next_id
        self.next_id += 1
        self.sock.sendall(encode_frame([
            ("request", "AuthPasswordVerify"), ("id", rid), ("service", service), ("mechanism", "PLAIN"),
            ("user", user), ("password", password), ("client_addr", client_addr), ("client_name", "unknown"),
            ("tls", "1")]))
        return rid

    def send_lookup(self, user):
        rid = self.next_id
        self.next_id += 1
        self.sock.sendall(encode_frame([("request", "AuthUserLookup"), ("id", rid), ("user", user)]))
        return rid

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("auth closed the connection")
            data += chunk
        return data

    def reply(self):
        """The next reply as a dict of str values (id as int)."""
        (n,) = struct.unpack(">I", self._exact(4))
        d = {k: v.decode("utf-8", "replace") for k, v in decode_frame(self._exact(n))}
        d["id"] = int(d["id"])
        return d

    def verify(self, user, password, **kw):
        rid = self.send_verify(user, password, **kw)
        r = self.reply()
        assert r["id"] == rid, r
        return r

    def lookup(self, user):
        rid = self.send_lookup(user)
        r = self.reply()
        assert r["id"] == rid, r
        return r

    def close(self):
        self.sock.close()


class Setup:
    """An instance running only master and auth, a system user with a known
    password and a PAM service of our own. A context manager: the user and
    the PAM file are removed on the way out."""

    def __init__(self, main=None):
        need_root()
        self.tag = secrets.token_hex(3)
        self.pam_service = f"postern-test-{os.getpid()}-{self.tag}"
        self.pam_file = os.path.join("/etc/pam.d", self.pam_service)
        self.user = f"pt{self.tag}"
        self.password = "Pw-" + secrets.token_hex(8)
        self.made_user = False
        self.inst = Instance(name="auth", master_cf="auth unix - n n - 1 auth\n")
        cfg = {"auth_pam_service": self.pam_service, "auth_failure_delay": f"{DELAY}s",
               "auth_failure_max_delay": "4s", "auth_lockout_threshold": "3", "auth_lockout_time": "30s",
               "home_mailbox": "Maildir/"}
        cfg.update(main or {})
        self.inst.main.update(cfg)
        self.inst.write_main_cf()
        self.socket = os.path.join(self.inst.queue, "private", "auth")

    def __enter__(self):
        try:
            with open(os.path.join(ROOT, "etc", "pam.d", "postern")) as src, open(self.pam_file, "x") as dst:
                dst.write(src.read())
            try:
                pwd.getpwnam(self.user)
                raise AssertionError(f"user {self.user} exists already; not touching it")
            except KeyError:
                pass
            homes = os.path.join(self.inst.dir, "home")
            os.makedirs(homes)
            os.chmod(homes, 0o755)
            subprocess.run(["useradd", "-m", "-d", os.path.join(homes, self.user), "-s", "/bin/sh", self.user],
                           check=True, capture_output=True, timeout=30)
            self.made_user = True
            subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}\n", text=True, check=True,
                           capture_output=True, timeout=30)
            self.pw = pwd.getpwnam(self.user)
            self.inst.start()
            wait_for(lambda: os.path.exists(self.socket), what="private/auth")
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def cleanup(self):
        self.inst.stop()
        if self.made_user:
            subprocess.run(["userdel", "-r", self.user], capture_output=True, timeout=30)
            self.made_user = False
        try:
            os.unlink(self.pam_file)
        except FileNotFoundError:
            pass

    def conn(self):
        return AuthConn(self.socket)

    def auth_pid(self):
        pids = [p for p in self.inst.children() if "/auth " in open(f"/proc/{p}/cmdline", "rb").read()
                .replace(b"\0", b" ").decode("utf-8", "replace")]
        return pids[0] if pids else None


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


def test_pam_password_ok_gives_the_user():
    with Setup() as s:
        c = s.conn()
        r, took = timed(c.verify, s.user, s.password)
        assert r["outcome"] == "ok" and r["reason"] == "ok", r
        assert r["kind"] == "system"
        assert r["user"] == s.user
        assert int(r["uid"]) == s.pw.pw_uid and int(r["gid"]) == s.pw.pw_gid
        assert r["home"] == s.pw.pw_dir
        assert r["mailbox"] == s.pw.pw_dir + "/Maildir/"
        assert "password" not in r
        assert took < 5, f"a good password took {took:.1f}s"
        s.inst.wait_log(rf"postern/auth\[\d+\]: auth ok: service=smtpd user={s.user} rip=192\.0\.2\.10 kind=system")
        assert s.password not in s.inst.log()


def test_pam_lookup_of_system_and_unknown_users():
    with Setup() as s:
        c = s.conn()
        r = c.lookup(s.user)
        assert r["outcome"] == "ok", r
        assert int(r["uid"]) == s.pw.pw_uid and r["home"] == s.pw.pw_dir and r["kind"] == "system"
        r = c.lookup(f"nosuch{s.tag}")
        assert r["outcome"] == "fail" and r["reason"] == "unknown_user", r
        assert "uid" not in r
        r = c.lookup("root")
        assert r["outcome"] == "fail" and r["reason"] == "account_disabled", r
        # Lookups are not logins: no delay, no failure counted.
        r, took = timed(c.verify, s.user, s.password)
        assert r["outcome"] == "ok" and took < 5


def test_wrong_password_is_delayed_then_locked():
    with Setup() as s:
        c = s.conn()
        r, took = timed(c.verify, s.user, "wrong-" + s.tag)
        assert r["outcome"] == "fail" and r["reason"] == "password_mismatch", r
        assert took >= 0.8 * DELAY, f"first failure answered after {took:.2f}s, want about {DELAY}s"
        r, took = timed(c.verify, s.user, "wrong-" + s.tag)
        assert r["outcome"] == "fail", r
        assert took >= 1.6 * DELAY, f"second failure answered after {took:.2f}s, want about {2 * DELAY}s"
        r = c.verify(s.user, "wrong-" + s.tag)  # the third: threshold 3
        assert r["outcome"] == "fail", r
        s.inst.wait_log(r"warning: auth: client 192\.0\.2\.10 locked out for 30s after 3 failures")
        s.inst.wait_log(rf"warning: auth: user {s.user} locked out for 30s after 3 failures")
        # Now even the right password is refused, from this client and for this user.
        r = c.verify(s.user, s.password)
        assert r["outcome"] == "locked" and r["reason"] == "locked", r
        assert "uid" not in r
        r = c.verify(s.user, s.password, client_addr="198.51.100.20")
        assert r["outcome"] == "locked", r
        r = c.verify(f"other{s.tag}", "x", client_addr="192.0.2.10")
        assert r["outcome"] == "locked", r
        log = s.inst.log()
        assert len(re.findall(rf"auth failed: service=smtpd user={s.user} rip=192\.0\.2\.10 "
                              r"reason=password_mismatch", log)) == 3, log
        assert re.search(rf"auth failed: service=smtpd user={s.user} rip=198\.51\.100\.20 reason=locked", log)
        assert s.password not in log and "wrong-" + s.tag not in log


def test_a_slow_failure_does_not_hold_up_other_requests():
    with Setup() as s:
        slow, fast = s.conn(), s.conn()
        order = []
        lock = threading.Lock()

        def ask(conn, name, password, addr):
            r = conn.verify(s.user, password, client_addr=addr)
            with lock:
                order.append((name, r["outcome"], time.monotonic()))

        t0 = time.monotonic()
        t_slow = threading.Thread(target=ask, args=(slow, "slow", "wrong-" + s.tag, "192.0.2.30"))
        t_slow.start()
        time.sleep(0.1)
        t_fast = threading.Thread(target=ask, args=(fast, "fast", s.password, "192.0.2.31"))
        t_fast.start()
        t_slow.join(30)
        t_fast.join(30)
        assert [(n, o) for n, o, _ in order] == [("fast", "ok"), ("slow", "fail")], order
        assert order[1][2] - t0 >= 0.8 * DELAY

        # The same on one connection: the reply to the later request comes first.
        c = s.conn()
        first = c.send_verify(s.user, "wrong-" + s.tag, client_addr="192.0.2.32")
        second = c.send_verify(s.user, s.password, client_addr="192.0.2.33")
        third = c.send_lookup(s.user)
        got = [c.reply() for _ in range(3)]
        ids = [r["id"] for r in got]
        assert ids[-1] == first and set(ids[:2]) == {second, third}, got
        assert got[-1]["outcome"] == "fail"


def test_a_garbage_frame_drops_the_connection_but_not_the_daemon():
    with Setup() as s:
        c = s.conn()
        assert c.lookup(s.user)["outcome"] == "ok"
        pid = s.auth_pid()
        assert pid, "no auth process"
        bad = s.conn()
        bad.sock.sendall(b"\x00\x00\x00\x07\x00\x01\x00junk")
        assert bad.sock.recv(100) == b"", "auth answered a malformed frame"
        s.inst.wait_log(r"warning: bad auth request frame, dropping the connection")
        # An unknown request name is refused the same way.
        bad2 = s.conn()
        bad2.sock.sendall(encode_frame([("request", "AuthEverything"), ("id", 1)]))
        assert bad2.sock.recv(100) == b""
        s.inst.wait_log(r"warning: bad auth request, dropping the connection")
        # The first connection and new ones are still served, by the same process.
        assert c.lookup(s.user)["outcome"] == "ok"
        assert s.conn().verify(s.user, s.password)["outcome"] == "ok"
        assert s.auth_pid() == pid


def test_reload_answers_requests_in_flight_then_hands_over():
    import signal
    with Setup() as s:
        idle, busy = s.conn(), s.conn()
        assert idle.lookup(s.user)["outcome"] == "ok"
        old = s.auth_pid()
        t0 = time.monotonic()
        rid = busy.send_verify(s.user, "wrong-" + s.tag)  # answered after the delay
        time.sleep(0.2)
        s.inst.signal(signal.SIGHUP)
        s.inst.wait_log(r"reload -- version")
        # The idle connection is closed; the busy one gets its answer first.
        assert idle.sock.recv(100) == b""
        r = busy.reply()
        assert r["id"] == rid and r["outcome"] == "fail", r
        assert time.monotonic() - t0 >= 0.8 * DELAY
        assert busy.sock.recv(100) == b""
        wait_for(lambda: old not in s.inst.children(), what="the old auth process to exit")
        assert s.conn().verify(s.user, s.password)["outcome"] == "ok"
        assert s.auth_pid() not in (None, old)


def _postern_user_works():
    r = subprocess.run([os.path.join(BIN, "postern"), "user"], capture_output=True, text=True, timeout=30)
    return "add" in (r.stdout + r.stderr)


def test_virtual_users_made_with_postern_user_add():
    need_root()
    if not _postern_user_works():
        from harness import Skip
        raise Skip("postern user add is not there yet")
    with Setup(main={"virtual_mailbox_base": "/srv/vmail-test", "virtual_uid_maps": "static:5000",
                     "virtual_gid_maps": "static:5001"}) as s:
        address = f"v{s.tag}@example.test"
        vpw = "Virt-" + secrets.token_hex(6)
        r = subprocess.run([os.path.join(BIN, "postern"), "-c", s.inst.etc, "user", "add", address],
                           input=vpw + "\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        c = s.conn()
        # The table was made after auth started: it is picked up without a restart.
        r = c.verify(address.upper(), vpw)
        assert r["outcome"] == "ok", r
        assert r["kind"] == "virtual" and r["user"] == address
        assert (r["uid"], r["gid"]) == ("5000", "5001")
        assert r["home"] == "/srv/vmail-test"
        assert r["mailbox"] == f"/srv/vmail-test/example.test/v{s.tag}/"
        r, took = timed(c.verify, address, "wrong", client_addr="192.0.2.40")
        assert r["outcome"] == "fail" and r["reason"] == "password_mismatch" and took >= 0.8 * DELAY, (r, took)
        r = c.verify(f"nobody{s.tag}@example.test", vpw, client_addr="192.0.2.41")
        assert r["outcome"] == "fail", r
        r = c.lookup(address)
        assert r["outcome"] == "ok" and r["kind"] == "virtual", r
        assert c.lookup(f"nobody{s.tag}@example.test")["outcome"] == "fail"
        assert vpw not in s.inst.log()


def test_an_unknown_backend_stops_auth_at_start():
    need_root()
    inst = Instance(name="auth", master_cf="auth unix - n n - 1 auth\n",
                    main_cf={"auth_backends": "pam, ldap"}).start()
    path = os.path.join(inst.queue, "private", "auth")
    wait_for(lambda: os.path.exists(path), what="private/auth")
    # master starts the process for the first client, which is never answered.
    c = AuthConn(path, timeout=10)
    try:
        c.send_lookup("root")
        inst.wait_log(r"postern/auth\[\d+\]: fatal: auth_backends: unknown backend \"ldap\" \(want pam, virtual\)")
    finally:
        c.close()
