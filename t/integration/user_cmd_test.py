"""postern user add|passwd|del|list: the virtual user tables (users.db, 0600,
with yescrypt hashes; user_mailboxes.db, 0644) read back with `postern map
query`; passwords from standard input and from a terminal (a pty: prompts,
echo off, the terminal restored after a signal); exit codes of the errors;
non-root callers refused; the warnings for a configuration that would not
deliver; and end to end: a user added with `postern user add` receives mail
through smtpd, qmgr and the virtual delivery agent, unknown addresses are
refused at RCPT, and after `user del` (or a later add) a fresh smtpd answers
from the new table."""
import grp
import json
import os
import pty
import pwd
import re
import select
import signal
import smtplib
import stat
import subprocess
import termios
import time

from harness import BIN, Instance, free_port, need_root, wait_for

DOMAIN = "virt.example"
EX_USAGE, EX_DATAERR, EX_NOUSER, EX_CANTCREAT, EX_NOPERM = 64, 65, 67, 73, 77


def instance(main=None, master_cf="", virtual=True):
    """A configuration directory (daemons only when a test starts them)."""
    inst = Instance(name="user", master_cf=master_cf)
    if virtual:
        inst.main.update({"virtual_mailbox_domains": DOMAIN, "virtual_mailbox_base": os.path.join(inst.dir, "vmail"),
                          "virtual_uid_maps": f"static:{pwd.getpwnam('nobody').pw_uid}",
                          "virtual_gid_maps": f"static:{grp.getgrnam('nogroup').gr_gid}",
                          "virtual_mailbox_maps": "hash:$config_directory/user_mailboxes"})
    inst.main.update(main or {})
    inst.write_main_cf()
    return inst


def user(inst, *args, password=None, as_nobody=False):
    """Runs postern -c ETC user ARGS with password (text, written as is) on stdin."""
    cmd = [os.path.join(BIN, "postern"), "-c", inst.etc, "user", *args]
    if as_nobody:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, input=password if password is not None else "", capture_output=True, text=True,
                          timeout=60)


def lookup(inst, table, key):
    """postern map query hash:ETC/TABLE KEY: the value, or None when not found."""
    r = inst.postern("map", "query", f"hash:{inst.etc}/{table}", key)
    assert r.returncode in (0, 1), (r.returncode, r.stderr)
    return r.stdout.rstrip("\n") if r.returncode == 0 else None


def entry(inst, address):
    """(hash, mailbox, quota) from users.db, or None."""
    v = lookup(inst, "users", address)
    return tuple(v.split("\t")) if v is not None else None


def crypt_matches(password, hashed):
    """True/False when Python's crypt module can tell, None without it."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        return None
    got = crypt.crypt(password, hashed)
    return None if got is None else got == hashed


def check_ok(r, what):
    assert r.returncode == 0, f"{what}: exit {r.returncode}: {r.stderr}"


def test_add_list_passwd_del_and_the_tables():
    need_root()
    inst = instance()
    r = user(inst, "add", "Bob@Virt.Example", password="s3cret pass\n")
    check_ok(r, "user add")
    assert "warning" not in r.stderr, r.stderr
    assert "bob@virt.example" in r.stderr and "virt.example/bob/" in r.stderr, r.stderr
    # CRLF line end, explicit mailbox (an mbox file) and a quota with a suffix; no newline at all.
    check_ok(user(inst, "add", "al@virt.example", "--quota", "10M", "--mailbox", "virt.example/al.mbox",
                  password="pw-al\r\n"), "user add al")
    check_ok(user(inst, "add", "cy@virt.example", "--quota=2k", password="no-newline"), "user add cy")

    users_db = os.path.join(inst.etc, "users.db")
    mailboxes_db = os.path.join(inst.etc, "user_mailboxes.db")
    for path, mode in ((users_db, 0o600), (mailboxes_db, 0o644)):
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == mode and st.st_uid == 0, (path, oct(st.st_mode), st.st_uid)

    h, mailbox, quota = entry(inst, "bob@virt.example")
    assert h.startswith("$y$") and mailbox == "virt.example/bob/" and quota == "0", (h, mailbox, quota)
    assert crypt_matches("s3cret pass", h) in (True, None)
    h_al, mailbox, quota = entry(inst, "al@virt.example")
    assert mailbox == "virt.example/al.mbox" and quota == str(10 * 1024 * 1024), (mailbox, quota)
    assert crypt_matches("pw-al", h_al) in (True, None)  # without the CR
    assert crypt_matches("no-newline", entry(inst, "cy@virt.example")[0]) in (True, None)
    # The public table: mailboxes only, never a hash.
    assert lookup(inst, "user_mailboxes", "bob@virt.example") == "virt.example/bob/"
    assert lookup(inst, "user_mailboxes", "al@virt.example") == "virt.example/al.mbox"

    r = user(inst, "list")
    check_ok(r, "user list")
    assert r.stdout == ("al@virt.example virt.example/al.mbox 10485760\n"
                        "bob@virt.example virt.example/bob/ 0\n"
                        "cy@virt.example virt.example/cy/ 2048\n"), r.stdout
    assert "$y$" not in r.stdout
    r = user(inst, "list", "--json")
    check_ok(r, "user list --json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows == [{"address": "al@virt.example", "mailbox": "virt.example/al.mbox", "quota": 10485760},
                    {"address": "bob@virt.example", "mailbox": "virt.example/bob/", "quota": 0},
                    {"address": "cy@virt.example", "mailbox": "virt.example/cy/", "quota": 2048}], rows

    check_ok(user(inst, "passwd", "BOB@virt.example", password="another one\n"), "user passwd")
    h2, mailbox, quota = entry(inst, "bob@virt.example")
    assert h2 != h and h2.startswith("$y$") and mailbox == "virt.example/bob/" and quota == "0"
    assert crypt_matches("another one", h2) in (True, None)
    assert crypt_matches("s3cret pass", h2) in (False, None)

    r = user(inst, "del", "bob@virt.example")
    check_ok(r, "user del")
    assert "left" in r.stderr, r.stderr  # says the mailbox stays
    assert entry(inst, "bob@virt.example") is None
    assert lookup(inst, "user_mailboxes", "bob@virt.example") is None
    assert user(inst, "list").stdout == ("al@virt.example virt.example/al.mbox 10485760\n"
                                         "cy@virt.example virt.example/cy/ 2048\n")
    assert stat.S_IMODE(os.stat(users_db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(mailboxes_db).st_mode) == 0o644


def test_list_of_no_users_is_empty():
    need_root()
    inst = instance()
    for args in (("list",), ("list", "--json")):
        r = user(inst, *args)
        check_ok(r, "user list")
        assert r.stdout == "", r.stdout


def test_errors_and_exit_codes():
    need_root()
    inst = instance()
    check_ok(user(inst, "add", "bob@virt.example", password="pw\n"), "user add")
    before = entry(inst, "bob@virt.example")

    cases = [
        # (args, stdin, exit code, stderr regex)
        (("add", "BOB@virt.example"), "pw\n", EX_CANTCREAT, "exists already"),
        (("passwd", "zed@virt.example"), "pw\n", EX_NOUSER, "no virtual user zed@virt.example"),
        (("del", "zed@virt.example"), "", EX_NOUSER, "no virtual user zed@virt.example"),
        (("add", "new@virt.example", "TopSecret1"), "", EX_USAGE, "never given on the command line"),
        (("passwd", "bob@virt.example", "TopSecret1"), "", EX_USAGE, "never given on the command line"),
        (("add", "new@virt.example"), "\n", EX_DATAERR, "empty password"),
        (("add", "new@virt.example"), "\r\n", EX_DATAERR, "empty password"),
        (("add", "new@virt.example"), "", EX_DATAERR, "no password"),
        (("add", "new@virt.example"), "x" * 1025 + "\n", EX_DATAERR, "longer than"),
        (("add", "new@virt.example"), "x" * 5000, EX_DATAERR, "longer than"),
        (("passwd", "bob@virt.example"), "\n", EX_DATAERR, "empty password"),
        (("add", "new@virt.example"), "a\0b\n", EX_DATAERR, "NUL"),
        (("add", "no-domain"), "pw\n", EX_DATAERR, ""),
        (("add", "two words@virt.example"), "pw\n", EX_DATAERR, ""),
        (("add", "new@"), "pw\n", EX_DATAERR, ""),
        (("add", "new@virt.example", "--mailbox", "../x/"), "pw\n", EX_DATAERR, "bad mailbox path"),
        (("add", "new@virt.example", "--mailbox", "/abs/new/"), "pw\n", EX_DATAERR, "bad mailbox path"),
        (("add", "new@virt.example", "--mailbox", "a/../../b/"), "pw\n", EX_DATAERR, "bad mailbox path"),
        (("add", "new@virt.example", "--quota", "5X"), "pw\n", EX_DATAERR, "bad quota"),
        (("add", "new@virt.example", "--quota", "-1"), "pw\n", EX_DATAERR, "bad quota"),
        (("add", "new@virt.example", "--quota", "99999999999999999999G"), "pw\n", EX_DATAERR, "bad quota"),
        (("add", "new@virt.example", "--quota"), "pw\n", EX_USAGE, "needs a value"),
        (("add", "new@virt.example", "--quota", "1", "--quota", "2"), "pw\n", EX_USAGE, "twice"),
        (("add", "new@virt.example", "--bogus"), "pw\n", EX_USAGE, "unknown option"),
        (("add",), "pw\n", EX_USAGE, "which address"),
        (("del", "bob@virt.example", "extra"), "", EX_USAGE, "too many"),
        (("list", "extra"), "", EX_USAGE, "too many"),
        (("list", "--mailbox", "x"), "", EX_USAGE, "unknown option"),
        (("show", "bob@virt.example"), "", EX_USAGE, "unknown subcommand"),
        ((), "", EX_USAGE, ""),
    ]
    for args, stdin, code, rx in cases:
        r = user(inst, *args, password=stdin)
        assert r.returncode == code, f"user {args}: got exit {r.returncode}, want {code}: {r.stderr}"
        assert re.search(rx, r.stderr), f"user {args}: stderr {r.stderr!r} lacks /{rx}/"
        assert "TopSecret1" not in r.stderr and "TopSecret1" not in r.stdout, "a password was echoed"
        if code == EX_USAGE:
            assert "usage: postern" in r.stderr, r.stderr
    # Nothing of the above changed the table.
    assert entry(inst, "bob@virt.example") == before
    assert entry(inst, "new@virt.example") is None
    assert user(inst, "list").stdout == "bob@virt.example virt.example/bob/ 0\n"


def test_non_root_is_refused():
    need_root()
    inst = instance()
    check_ok(user(inst, "add", "bob@virt.example", password="pw\n"), "user add")
    for args, stdin in ((("list",), ""), (("list", "--json"), ""), (("add", "eve@virt.example"), "pw\n"),
                        (("passwd", "bob@virt.example"), "pw\n"), (("del", "bob@virt.example"), "")):
        r = user(inst, *args, password=stdin, as_nobody=True)
        assert r.returncode == EX_NOPERM, (args, r.returncode, r.stderr)
        assert "only root" in r.stderr, r.stderr
        assert r.stdout == "", r.stdout
    # The table itself is not readable by others either.
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        os.path.join(BIN, "postern"), "map", "query", f"hash:{inst.etc}/users", "bob@virt.example"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode not in (0, 1) and "$y$" not in r.stdout, (r.returncode, r.stdout)
    assert user(inst, "list").stdout == "bob@virt.example virt.example/bob/ 0\n"


def test_add_warns_when_mail_would_not_be_delivered():
    need_root()
    inst = instance(virtual=False, main={"virtual_mailbox_domains": "other.example"})
    r = user(inst, "add", "bob@virt.example", password="pw\n")
    check_ok(r, "user add")  # warnings are not fatal
    warnings = [line for line in r.stderr.splitlines() if line.startswith("postern: warning: ")]
    text = "\n".join(warnings)
    assert "virtual_mailbox_domains = other.example, virt.example" in text, text
    assert "virtual_mailbox_maps = $virtual_user_mailbox_map" in text, text
    assert "virtual_mailbox_base = " in text and "virtual_uid_maps = static:" in text, text
    assert entry(inst, "bob@virt.example") is not None
    # A complete setup: no warning.
    inst2 = instance()
    r = user(inst2, "add", "bob@virt.example", password="pw\n")
    check_ok(r, "user add")
    assert "warning" not in r.stderr, r.stderr


# ---- passwords from a terminal -------------------------------------------------------

class Tty:
    """postern user ARGS on a new pty (its controlling terminal)."""

    def __init__(self, inst, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execv(os.path.join(BIN, "postern"), ["postern", "-c", inst.etc, "user", *args])
            finally:
                os._exit(127)
        self.out = b""

    def read_until(self, text, timeout=10):
        end = time.time() + timeout
        while text.encode() not in self.out:
            left = end - time.time()
            if left <= 0:
                raise AssertionError(f"no {text!r} on the terminal; got {self.out!r}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"terminal closed before {text!r}; got {self.out!r}")
                self.out += data

    def echo(self):
        return bool(termios.tcgetattr(self.fd)[3] & termios.ECHO)

    def type(self, text):
        os.write(self.fd, text.encode())

    def wait(self):
        """The exit status (or -signal), after reading what is left."""
        _, st = os.waitpid(self.pid, 0)
        while True:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if not r:
                break
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                break
            if not data:
                break
            self.out += data
        return os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st)

    def close(self):
        os.close(self.fd)


def test_password_from_the_terminal():
    need_root()
    inst = instance()
    t = Tty(inst, "add", "tty@virt.example")
    try:
        t.read_until("Password: ")
        assert not t.echo()
        t.type("Tty Secret 1\n")
        t.read_until("Retype password: ")
        t.type("Tty Secret 1\n")
        assert t.wait() == 0, t.out
        assert b"Tty Secret" not in t.out, t.out  # not echoed
        assert t.echo(), "echo was not turned on again"
    finally:
        t.close()
    h = entry(inst, "tty@virt.example")[0]
    assert h.startswith("$y$") and crypt_matches("Tty Secret 1", h) in (True, None)

    # Two different entries: nothing changes.
    t = Tty(inst, "passwd", "tty@virt.example")
    try:
        t.read_until("Password: ")
        t.type("first\n")
        t.read_until("Retype password: ")
        t.type("second\n")
        assert t.wait() == EX_DATAERR, t.out
        assert b"do not match" in t.out, t.out
        assert t.echo()
    finally:
        t.close()
    assert entry(inst, "tty@virt.example")[0] == h

    # Interrupted while echo is off: the terminal is restored, nothing changes.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        t = Tty(inst, "passwd", "tty@virt.example")
        try:
            t.read_until("Password: ")
            t.type("half")
            wait_for(lambda: not t.echo(), 5, "echo off")
            os.kill(t.pid, sig)
            assert t.wait() == -sig, t.out
            assert t.echo(), f"echo still off after signal {sig}"
        finally:
            t.close()
    assert entry(inst, "tty@virt.example")[0] == h


# ---- end to end ------------------------------------------------------------------------

def rcpt(port, address):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("sender@remote.example")
        code, text = s.rcpt(address)
        return code, text.decode("utf-8", "replace")


def wait_rcpt(port, address, want, timeout=10.0):
    """New sessions until RCPT gets `want`: the first after a change may reach
    the old smtpd, which serves it and exits; a fresh one reads the new table."""
    end = time.time() + timeout
    seen = []
    while True:
        code, text = rcpt(port, address)
        seen.append(code)
        if code == want:
            return text
        if time.time() > end:
            raise AssertionError(f"RCPT TO:<{address}>: got {seen}, want {want} (last: {code} {text})")
        time.sleep(0.2)


def test_added_user_receives_mail_and_deleted_user_is_refused():
    need_root()
    port = free_port()
    master_cf = (f"{port} inet n - y - - smtpd\n"
                 "qmgr unix - - y 300 1 qmgr\n"
                 "local unix - n n - - local\n"
                 "virtual unix - n n - - local\n")
    inst = instance(master_cf=master_cf,
                    main={"mydestination": "localhost", "mynetworks": "127.0.0.0/8", "myhostname": "mx.example.test",
                          "alias_maps": "", "minimal_backoff_time": "300s", "queue_run_delay": "300s"})
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup")
    base = os.path.join(inst.dir, "vmail")
    os.makedirs(base)
    os.chown(base, nobody.pw_uid, nogroup.gr_gid)
    os.chmod(base, 0o700)
    # Before start: user_mailboxes.db must exist when smtpd opens it.
    check_ok(user(inst, "add", "bob@virt.example", password="pw\n"), "user add")
    inst.start()

    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example")
        assert s.mail("sender@remote.example")[0] == 250
        code, text = s.rcpt("nobody@virt.example")
        assert code == 550 and b"5.1.1" in text, (code, text)
        code, text = s.rcpt("Bob@virt.example")
        assert code == 250, (code, text)
        code, text = s.data(b"From: sender@remote.example\r\nSubject: to a virtual user\r\n\r\nhello bob\r\n")
        assert code == 250, (code, text)
    new = os.path.join(base, "virt.example", "bob", "new")
    files = wait_for(lambda: os.path.isdir(new) and os.listdir(new), 30, "delivery to bob's Maildir")
    path = os.path.join(new, files[0])
    assert os.stat(path).st_uid == nobody.pw_uid
    assert b"hello bob" in open(path, "rb").read()
    inst.wait_log(r"(?i)to=<bob@virt\.example>, (orig_to=<[^>]*>, )?relay=virtual, .*status=sent", timeout=10)

    # Changes under the running smtpd: it restarts and answers from the new table.
    check_ok(user(inst, "add", "carol@virt.example", password="pw\n"), "user add carol")
    wait_rcpt(port, "carol@virt.example", 250)
    r = user(inst, "del", "bob@virt.example")
    check_ok(r, "user del")
    text = wait_rcpt(port, "bob@virt.example", 550)
    assert "5.1.1" in text, text
    assert os.listdir(new) == files  # del leaves the mailbox alone
    assert rcpt(port, "carol@virt.example")[0] == 250
