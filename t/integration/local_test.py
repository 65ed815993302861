"""The local and virtual delivery agent on a real instance. Messages come in
through smtpd; as there is no queue manager here, each test moves the queue
file to active/ and sends the agent a DeliveryRequest itself
(delivery_client.py), then checks the outcome, what landed in Maildirs, mbox
files and command output, who owns it, and the log. Every test creates its own
system users (pt-NAME-RANDOM, homes in the instance directory) and removes
them again with userdel -r; existing users are never touched."""
import grp
import os
import pwd
import re
import secrets
import smtplib
import socket
import stat
import struct
import subprocess

import delivery_client as dc
from harness import Instance, free_port, need_root, wait_for

DOMAIN = "example.test"
SENDER = "sender@remote.example"
MESSAGE = ("From: Sender <sender@remote.example>\r\nTo: someone@example.test\r\nSubject: local test\r\n"
           "Message-ID: <{tag}@remote.example>\r\n\r\nHello.\r\nFrom the body, a line that mbox must quote.\r\n")


class Users:
    """Test users pt-SHORT-TAG with homes under base; remove() deletes exactly those."""

    def __init__(self, base, shorts):
        self.tag = secrets.token_hex(3)
        self.base = base
        self.made = []
        self.pw = {}
        for s in shorts:
            self.add(s)

    def add(self, short):
        name = f"pt-{short}-{self.tag}"
        try:
            pwd.getpwnam(name)
            raise AssertionError(f"user {name} exists already; not touching it")
        except KeyError:
            pass
        subprocess.run(["useradd", "-m", "-d", os.path.join(self.base, name), "-s", "/bin/sh", name],
                       check=True, capture_output=True, timeout=30)
        self.made.append(name)
        self.pw[short] = pwd.getpwnam(name)
        return self.pw[short]

    def name(self, short):
        return self.pw[short].pw_name

    def home(self, short):
        return self.pw[short].pw_dir

    def remove(self):
        for name in self.made:
            subprocess.run(["userdel", "-r", name], capture_output=True, timeout=30)
        self.made = []


class Setup:
    """An instance with smtpd, local and virtual, plus test users. Use as a
    context manager: the users are removed on the way out."""

    def __init__(self, users=("alice",), main=None, aliases=None, files=None):
        need_root()
        self.port = free_port()
        self.inst = Instance(name="local", master_cf=(f"{self.port} inet n - y - - smtpd\n"
                                                      "local unix - n n - - local\n"
                                                      "virtual unix - n n - - local\n"))
        self.dir = self.inst.dir
        homes = os.path.join(self.dir, "home")
        os.makedirs(homes)
        os.chmod(homes, 0o755)
        self.out = os.path.join(self.dir, "out")  # where nobody may write
        os.makedirs(self.out)
        os.chmod(self.out, 0o1777)
        self.users = Users(homes, users)
        self.alias_file = os.path.join(self.inst.etc, "aliases")
        cfg = {"mydestination": f"localhost, {DOMAIN}", "myhostname": "mx.example.test", "mynetworks": "127.0.0.0/8",
               "alias_maps": f"texthash:{self.alias_file}", "default_privs": "nobody",
               "smtpd_reject_unlisted_recipient": "no", "command_time_limit": "20s"}
        cfg.update({k: self.fill(v) for k, v in (main or {}).items()})
        self.inst.main.update(cfg)
        self.inst.write_main_cf()
        self.write(self.alias_file, self.fill(aliases or ""))
        for path, text in (files or {}).items():
            self.write(self.fill(path), self.fill(text))

    def fill(self, text):
        """{alice} -> the user's name, {home:alice} {uid:alice} {gid:alice}, {out} {dir} {etc} -> directories."""
        for short, pw in self.users.pw.items():
            text = text.replace("{" + short + "}", pw.pw_name).replace("{home:" + short + "}", pw.pw_dir)
            text = text.replace("{uid:" + short + "}", str(pw.pw_uid)).replace("{gid:" + short + "}", str(pw.pw_gid))
        return text.replace("{out}", self.out).replace("{dir}", self.dir).replace("{etc}", self.inst.etc)

    def write(self, path, text, mode=0o644):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    def __enter__(self):
        try:
            self.inst.start()
        except BaseException:
            self.users.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.users.remove()
        return False

    # ---- helpers
    def addr(self, short, ext=None, domain=DOMAIN):
        return self.users.name(short) + (f"+{ext}" if ext else "") + "@" + domain

    def send(self, rcpts, message=None, sender=SENDER):
        body = (message or MESSAGE.format(tag=secrets.token_hex(4))).encode()
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
            s.ehlo("client.example")
            assert s.mail(sender)[0] == 250
            for r in rcpts:
                code, text = s.rcpt(r)
                assert code == 250, (r, code, text)
            code, text = s.data(body)
            assert code == 250, (code, text)
        return re.search(rb"queued as (\S+)", text).group(1).decode()

    def deliver(self, qid, transport="local"):
        return dc.deliver(self.inst.queue, qid, transport=transport, timeout=60)

    def send_and_deliver(self, rcpts, message=None, transport="local", sender=SENDER):
        qid = self.send(rcpts, message, sender)
        return qid, self.deliver(qid, transport)

    def maildir(self, path):
        """Contents of the messages in path/new, oldest first."""
        new = os.path.join(path, "new")
        if not os.path.isdir(new):
            return []
        names = sorted(os.listdir(new))
        return [open(os.path.join(new, n), "rb").read() for n in names]

    def maildir_files(self, path):
        new = os.path.join(path, "new")
        return [os.path.join(new, n) for n in sorted(os.listdir(new))] if os.path.isdir(new) else []

    def inbox(self, short):
        return self.maildir(os.path.join(self.users.home(short), "Maildir"))


def expect(outcomes, *want):
    """want: (kind, dsn, reason regex) per recipient, in order."""
    assert len(outcomes) == len(want), outcomes
    for got, (kind, dsn, reason) in zip(outcomes, want):
        assert got["kind"] == kind and got["dsn"] == dsn and re.search(reason, got["reason"]), (got, want)


def owner(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid


def nobody_uid():
    return pwd.getpwnam("nobody").pw_uid


def test_maildir_delivery_as_the_user():
    with Setup(users=("alice", "bob")) as s:
        qid, out = s.send_and_deliver([s.addr("alice"), s.addr("bob", "tag")])
        expect(out, ("S", "2.0.0", r"^delivered to maildir$"), ("S", "2.0.0", r"^delivered to maildir$"))
        assert all(o["relay"] == "local" for o in out)
        for short, rcpt in (("alice", s.addr("alice")), ("bob", s.addr("bob", "tag"))):
            files = s.maildir_files(os.path.join(s.users.home(short), "Maildir"))
            assert len(files) == 1, files
            pw = s.users.pw[short]
            assert owner(files[0]) == (pw.pw_uid, pw.pw_gid)
            assert stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
            data = open(files[0], "rb").read()
            assert data.startswith(f"Return-Path: <{SENDER}>\nDelivered-To: {rcpt}\nReceived: ".encode()), data[:200]
            assert b"\r" not in data and data.endswith(b"\nFrom the body, a line that mbox must quote.\n")
        s.inst.wait_log(rf"postern/local\[\d+\]: {qid}: to=<{re.escape(s.addr('alice'))}>, relay=local, delay=[\d.]+, "
                        r"delays=[\d.]+/[\d.]+/0/[\d.]+, dsn=2\.0\.0, status=sent \(delivered to maildir\)")


def test_mbox_delivery_in_the_spool_directory():
    mail_gid = grp.getgrnam("mail").gr_gid
    with Setup(main={"home_mailbox": "", "mail_spool_directory": "{dir}/spool"}) as s:
        spool = os.path.join(s.dir, "spool")
        os.makedirs(spool)
        os.chown(spool, 0, mail_gid)
        os.chmod(spool, 0o2775)  # root:mail 2775, as on Debian
        for _ in range(2):
            _, out = s.send_and_deliver([s.addr("alice")])
            expect(out, ("S", "2.0.0", r"^delivered to mailbox$"))
        box = os.path.join(spool, s.users.name("alice"))
        assert owner(box) == (s.users.pw["alice"].pw_uid, mail_gid)
        assert stat.S_IMODE(os.stat(box).st_mode) == 0o600
        data = open(box, "rb").read()
        assert data.startswith(f"From {SENDER} ".encode()), data[:100]
        assert len(re.findall(rb"(?m)^From ", data)) == 2
        assert data.count(b"\n>From the body, a line") == 2
        assert data.count(f"Return-Path: <{SENDER}>\nDelivered-To: {s.addr('alice')}\n".encode()) == 2
        assert data.endswith(b"quote.\n\n") and b"\r" not in data
        assert not os.path.exists(box + ".lock")
        assert s.inbox("alice") == []


def test_mbox_size_limit_bounces_and_leaves_the_mailbox_intact():
    with Setup(main={"home_mailbox": "mbox", "mailbox_size_limit": "3000"}) as s:
        _, out = s.send_and_deliver([s.addr("alice")])
        expect(out, ("S", "2.0.0", r"^delivered to mailbox$"))
        box = os.path.join(s.users.home("alice"), "mbox")
        before = open(box, "rb").read()
        big = "Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 60
        _, out = s.send_and_deliver([s.addr("alice")], message=big)
        expect(out, ("B", "5.2.2", r"mailbox_size_limit"))
        assert open(box, "rb").read() == before


def test_aliases_to_users_commands_files_and_include():
    aliases = ("team: {alice}, {bob}\n"
               "cmd: |id -u > {out}/cmd.out\n"
               "archive: {out}/archive.mbox\n"
               "list: :include:{etc}/list.include\n")
    with Setup(users=("alice", "bob"), aliases=aliases) as s:
        s.write(os.path.join(s.inst.etc, "list.include"), s.fill("# the list\n{alice}\n{bob}@localhost\n"))
        rcpts = [f"team@{DOMAIN}", f"cmd@{DOMAIN}", f"archive@{DOMAIN}", f"list@{DOMAIN}"]
        qid, out = s.send_and_deliver(rcpts)
        expect(out, ("S", "2.0.0", r"^delivered to maildir$"),
               ("S", "2.0.0", r"^delivered to command: id -u > .*/cmd\.out$"),
               ("S", "2.0.0", r"^delivered to file: .*/archive\.mbox$"),
               ("S", "2.0.0", r"^delivered to maildir$"))
        # team and list both reach alice and bob: one copy each.
        assert len(s.inbox("alice")) == 1 and len(s.inbox("bob")) == 1
        assert s.inbox("alice")[0].startswith(f"Return-Path: <{SENDER}>\nDelivered-To: team@{DOMAIN}\n".encode())
        # The command and the file ran as default_privs (nobody).
        cmd_out = os.path.join(s.out, "cmd.out")
        assert open(cmd_out).read() == f"{nobody_uid()}\n"
        assert owner(cmd_out)[0] == nobody_uid()
        mbox = os.path.join(s.out, "archive.mbox")
        assert owner(mbox)[0] == nobody_uid()
        data = open(mbox, "rb").read()
        assert data.startswith(f"From {SENDER} ".encode()) and b"\n>From the body" in data and data.endswith(b"\n\n")
        assert f"Delivered-To: archive@{DOMAIN}\n".encode() in data
        s.inst.wait_log(rf"{qid}: to=<{re.escape(s.addr('alice'))}>, orig_to=<team@{DOMAIN}>, relay=local, .*"
                        r"status=sent \(delivered to maildir\)")
        s.inst.wait_log(rf"{qid}: to=<cmd@{DOMAIN}>, relay=local, .*status=sent \(delivered to command: id -u")


def test_bounces_loops_unknown_users_and_root():
    aliases = "loop1: loop2\nloop2: loop1\n"
    with Setup(aliases=aliases) as s:
        qid, out = s.send_and_deliver([f"loop1@{DOMAIN}", f"nosuch@{DOMAIN}", f"root@{DOMAIN}"])
        expect(out, ("B", "5.4.6", rf"^mail forwarding loop for loop1@{DOMAIN}$"),
               ("B", "5.1.1", r'^unknown user: "nosuch"$'),
               ("D", "4.3.0", r"alias root to a real user"))
        s.inst.wait_log(rf"{qid}: to=<nosuch@{DOMAIN}>, relay=local, .*dsn=5\.1\.1, status=bounced "
                        r'\(unknown user: "nosuch"\)')
        # A message that was already delivered to this recipient is a loop.
        looped = (f"Delivered-To: {s.addr('alice')}\r\nSubject: again\r\n\r\nbody\r\n")
        _, out = s.send_and_deliver([s.addr("alice")], message=looped)
        expect(out, ("B", "5.4.6", rf"^mail forwarding loop for {re.escape(s.addr('alice'))}$"))
        assert s.inbox("alice") == []


def test_forward_pipe_runs_as_the_user_with_a_clean_environment():
    with Setup(users=("alice",)) as s:
        home = s.users.home("alice")
        pw = s.users.pw["alice"]
        fwd = os.path.join(home, ".forward")
        s.write(fwd, f"# filter\n|(id -u; env; cat) > {home}/pipe.out\n")
        os.chown(fwd, pw.pw_uid, pw.pw_gid)
        qid, out = s.send_and_deliver([s.addr("alice", "ext")])
        expect(out, ("S", "2.0.0", r"^delivered to command: \(id -u; env; cat\)"))
        path = os.path.join(home, "pipe.out")
        assert owner(path) == (pw.pw_uid, pw.pw_gid)
        lines = open(path, "rb").read().split(b"\n")
        assert lines[0] == str(pw.pw_uid).encode()
        env = dict(l.decode().split("=", 1) for l in lines[1:] if b"=" in l and not l.startswith(b"Return-Path"))
        want = {"HOME": home, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": "/bin/sh", "SENDER": SENDER,
                "RECIPIENT": s.addr("alice", "ext"), "EXTENSION": "ext", "DOMAIN": DOMAIN,
                "ORIGINAL_RECIPIENT": s.addr("alice", "ext"), "PATH": "/usr/bin:/bin"}
        for k, v in want.items():
            assert env.get(k) == v, (k, env.get(k), v)
        assert "MAIL_CONFIG" not in env and "LANG" not in env, env
        data = open(path, "rb").read()
        assert f"Return-Path: <{SENDER}>\nDelivered-To: {s.addr('alice', 'ext')}\n".encode() in data
        assert b"\r" not in data
        assert s.inbox("alice") == []


def test_forward_with_backslash_keeps_a_copy_and_forwards():
    with Setup(users=("alice", "bob")) as s:
        pw = s.users.pw["bob"]
        fwd = os.path.join(s.users.home("bob"), ".forward")
        s.write(fwd, s.fill("\\{bob}, {alice}\n"))
        os.chown(fwd, pw.pw_uid, pw.pw_gid)
        _, out = s.send_and_deliver([s.addr("bob")])
        expect(out, ("S", "2.0.0", r"^delivered to maildir$"))
        assert len(s.inbox("bob")) == 1 and len(s.inbox("alice")) == 1


def test_unsafe_forward_is_ignored():
    with Setup(users=("alice", "bob")) as s:
        pw = s.users.pw["alice"]
        fwd = os.path.join(s.users.home("alice"), ".forward")
        s.write(fwd, s.fill("{bob}\n"), mode=0o664)
        os.chown(fwd, pw.pw_uid, pw.pw_gid)
        _, out = s.send_and_deliver([s.addr("alice")])
        expect(out, ("S", "2.0.0", r"^delivered to maildir$"))
        assert len(s.inbox("alice")) == 1 and s.inbox("bob") == []
        s.inst.wait_log(r"warning: .*\.forward is ignored: writable by group or others")
        # Owned by another user: also ignored.
        os.chmod(fwd, 0o644)
        os.chown(fwd, s.users.pw["bob"].pw_uid, s.users.pw["bob"].pw_gid)
        _, out = s.send_and_deliver([s.addr("alice")])
        expect(out, ("S", "2.0.0", r"^delivered to maildir$"))
        assert len(s.inbox("alice")) == 2 and s.inbox("bob") == []
        s.inst.wait_log(r"warning: .*\.forward is ignored: owned by uid")


def test_extension_uses_forward_plus_extension_first():
    with Setup(users=("alice",)) as s:
        pw = s.users.pw["alice"]
        home = s.users.home("alice")
        fwd = os.path.join(home, ".forward+lists")
        s.write(fwd, f"{home}/lists.mbox\n")
        os.chown(fwd, pw.pw_uid, pw.pw_gid)
        _, out = s.send_and_deliver([s.addr("alice", "lists"), s.addr("alice", "other")])
        expect(out, ("S", "2.0.0", rf"^delivered to file: {re.escape(home)}/lists\.mbox$"),
               ("S", "2.0.0", r"^delivered to maildir$"))
        mbox = os.path.join(home, "lists.mbox")
        assert owner(mbox) == (pw.pw_uid, pw.pw_gid)
        assert f"Delivered-To: {s.addr('alice', 'lists')}\n".encode() in open(mbox, "rb").read()
        inbox = s.inbox("alice")
        assert len(inbox) == 1 and f"Delivered-To: {s.addr('alice', 'other')}\n".encode() in inbox[0]


def test_pipe_exit_status_maps_to_sent_deferred_bounced():
    aliases = ('ok: "|cat >/dev/null; exit 0"\n'
               'later: "|cat >/dev/null; exit 75"\n'
               'nope: "|echo no such list; exit 1"\n'
               'nouser: "|echo who; exit 67"\n'
               'slow: "|sleep 30"\n')
    with Setup(aliases=aliases, main={"command_time_limit": "2s"}) as s:
        rcpts = [f"{a}@{DOMAIN}" for a in ("ok", "later", "nope", "nouser", "slow")]
        qid, out = s.send_and_deliver(rcpts)
        expect(out, ("S", "2.0.0", r"^delivered to command: cat >/dev/null; exit 0$"),
               ("D", "4.3.0", r"^cat >/dev/null; exit 75: exit status 75$"),
               ("B", "5.3.0", r"^echo no such list; exit 1: no such list$"),
               ("B", "5.1.1", r"^echo who; exit 67: who$"),
               ("D", "4.3.0", r"time limit of 2s exceeded"))
        s.inst.wait_log(rf"{qid}: to=<nope@{DOMAIN}>, relay=local, .*dsn=5\.3\.0, status=bounced "
                        r"\(echo no such list; exit 1: no such list\)")


def test_virtual_mailboxes():
    main = {"virtual_mailbox_domains": "virt.example", "virtual_mailbox_maps": "texthash:{etc}/vmailbox",
            "virtual_mailbox_base": "{dir}/vmail", "virtual_uid_maps": "static:{uid:vmail}",
            "virtual_gid_maps": "static:{gid:vmail}",
            # smtpd would refuse nobody@ at RCPT; this test is about local's answer.
            "smtpd_reject_unlisted_recipient": "no"}
    files = {"{etc}/vmailbox": "info@virt.example virt.example/info/\nsales@virt.example virt.example/sales.mbox\n"}
    with Setup(users=("vmail",), main=main, files=files) as s:
        pw = s.users.pw["vmail"]
        base = os.path.join(s.dir, "vmail")
        os.makedirs(base)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chmod(base, 0o700)
        rcpts = ["info@virt.example", "Info+tag@virt.example", "sales@virt.example", "nobody@virt.example"]
        qid, out = s.send_and_deliver(rcpts, transport="virtual")
        expect(out, ("S", "2.0.0", r"^delivered to maildir$"), ("S", "2.0.0", r"^delivered to maildir$"),
               ("S", "2.0.0", r"^delivered to mailbox$"), ("B", "5.1.1", r'^unknown user: "nobody@virt\.example"$'))
        assert all(o["relay"] == "virtual" for o in out)
        files = s.maildir_files(os.path.join(base, "virt.example", "info"))
        assert len(files) == 1, files  # info and info+tag share the mailbox: one copy
        assert owner(files[0]) == (pw.pw_uid, pw.pw_gid)
        assert open(files[0], "rb").read().startswith(
            f"Return-Path: <{SENDER}>\nDelivered-To: info@virt.example\n".encode())
        mbox = os.path.join(base, "virt.example", "sales.mbox")
        assert owner(mbox) == (pw.pw_uid, pw.pw_gid)
        assert open(mbox, "rb").read().startswith(f"From {SENDER} ".encode())
        s.inst.wait_log(rf"{qid}: to=<sales@virt\.example>, relay=virtual, .*status=sent \(delivered to mailbox\)")


def test_forward_to_a_remote_address_requeues_the_message():
    aliases = "fwd: far@remote.example, other@remote2.example, {alice}\nowner-fwd: {alice}\n"
    with Setup(aliases=aliases) as s:
        before = set(os.listdir(os.path.join(s.inst.queue, "incoming")))
        qid, out = s.send_and_deliver([f"fwd@{DOMAIN}"])
        expect(out, ("S", "2.0.0", r"^delivered to maildir$"))  # the worst of maildir and the forward: both sent
        new = set(os.listdir(os.path.join(s.inst.queue, "incoming"))) - before
        assert len(new) == 1, new
        new_id = new.pop()
        s.inst.wait_log(rf"{qid}: to=<far@remote\.example>, orig_to=<fwd@{DOMAIN}>, relay=local, .*"
                        rf"status=sent \(forwarded as {new_id}\)")
        path = os.path.join(s.inst.queue, "incoming", new_id)
        postern = pwd.getpwnam("postern")
        assert owner(path) == (postern.pw_uid, postern.pw_gid)
        recs = dc.read_records(path)
        assert recs[0][:2] == ("V", b"1") and recs[-1][:2] == ("E", b"")
        env = dc.envelope(recs)
        assert env["sender"] == f"owner-fwd@{DOMAIN}"
        assert [r[0] for r in env["recipients"]] == ["far@remote.example", "other@remote2.example"]
        assert ("o", b"local") in [r[:2] for r in recs]
        assert env["content"].startswith(f"Delivered-To: fwd@{DOMAIN}\r\nReceived: ".encode())
        assert env["content"].endswith(b"\r\nFrom the body, a line that mbox must quote.\r\n")
        # Handed to local by mistake, a remote recipient is deferred, not lost.
        out = s.deliver(new_id)
        expect(out, ("D", "4.3.5", r"neither mydestination nor virtual_mailbox_domains"),
               ("D", "4.3.5", r"neither mydestination nor virtual_mailbox_domains"))


def test_bad_request_drops_the_connection():
    with Setup(users=()) as s:
        path = os.path.join(s.inst.queue, "private", "local")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(20)
            c.connect(path)
            c.sendall(dc.encode_frame([("request", "DeliveryRequest"), ("queue_id", "../../etc/passwd")]))
            assert c.recv(100) == b""
        s.inst.wait_log(r"postern/local\[\d+\]: warning: bad delivery request, dropping the connection")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(20)
            c.connect(path)
            c.sendall(struct.pack(">I", 64 << 20))  # a frame far over the limit
            assert c.recv(100) == b""


# ---- batches: several requests back-to-back on one connection (as qmgr sends them)

def writer_pid(path):
    """The P<pid> of a Maildir file name <sec>.M<usec>P<pid>Q<n>.<host>,S=<size>: who wrote it."""
    m = re.search(r"\.M\d+P(\d+)Q\d+\.", os.path.basename(path))
    assert m, path
    return int(m.group(1))


def local_pids(inst):
    return {int(p) for p in re.findall(r"postern/local\[(\d+)\]", inst.log())}


def test_pipelined_requests_to_one_maildir_share_one_child():
    with Setup(users=("alice",)) as s:
        # Message k has k other recipients before alice, so request k asks for
        # index k only and its reply must carry index k: the order shows.
        qids = [s.send([f"other{j}@{DOMAIN}" for j in range(k)] + [s.addr("alice")]) for k in range(4)]
        replies = dc.deliver_pipelined(s.inst.queue, [(qid, [k]) for k, qid in enumerate(qids)])
        assert len(replies) == 4, replies
        for k, out in enumerate(replies):
            assert [o["index"] for o in out] == [k], (k, out)
            expect(out, ("S", "2.0.0", r"^delivered to maildir$"))
        files = s.maildir_files(os.path.join(s.users.home("alice"), "Maildir"))
        assert len(files) == 4, files
        pw = s.users.pw["alice"]
        assert all(owner(f) == (pw.pw_uid, pw.pw_gid) for f in files)
        assert not os.listdir(os.path.join(s.users.home("alice"), "Maildir", "tmp"))
        # One child wrote them all, and it was not the agent itself.
        pids = {writer_pid(f) for f in files}
        assert len(pids) == 1, files
        for qid in qids:
            s.inst.wait_log(rf"postern/local\[\d+\]: {qid}: to=<{re.escape(s.addr('alice'))}>, relay=local, "
                            r"delay=[\d.]+, delays=[\d.]+/[\d.]+/0/[\d.]+, dsn=2\.0\.0, status=sent \(delivered to maildir\)")
        assert pids.isdisjoint(local_pids(s.inst))
        # Each copy has its own message and Delivered-To.
        tags = sorted(re.search(rb"Message-ID: <(\w+)@", open(f, "rb").read()).group(1) for f in files)
        assert len(set(tags)) == 4, tags


def test_pipelined_batch_mixes_users_unknowns_and_other_deliveries():
    aliases = "cmd: |cat > {out}/cmd.out\n"
    with Setup(users=("alice", "bob"), aliases=aliases) as s:
        # The command comes before alice+x's copy: nothing has to be written before it.
        rcpts = [[s.addr("alice")], [f"nosuch@{DOMAIN}"], [s.addr("bob")], [f"cmd@{DOMAIN}", s.addr("alice", "x")],
                 [s.addr("bob")]]
        qids = [s.send(r) for r in rcpts]
        replies = dc.deliver_pipelined(s.inst.queue, [(qid, None) for qid in qids])
        assert len(replies) == 5, replies
        expect(replies[0], ("S", "2.0.0", r"^delivered to maildir$"))
        expect(replies[1], ("B", "5.1.1", r'^unknown user: "nosuch"$'))
        expect(replies[2], ("S", "2.0.0", r"^delivered to maildir$"))
        expect(replies[3], ("S", "2.0.0", r"^delivered to command: cat"), ("S", "2.0.0", r"^delivered to maildir$"))
        expect(replies[4], ("S", "2.0.0", r"^delivered to maildir$"))
        assert [o["index"] for o in replies[3]] == [0, 1]
        alice = s.maildir_files(os.path.join(s.users.home("alice"), "Maildir"))
        bob = s.maildir_files(os.path.join(s.users.home("bob"), "Maildir"))
        assert len(alice) == 2 and len(bob) == 2, (alice, bob)
        # One child per mailbox: alice's two copies share one, bob's another.
        assert len({writer_pid(f) for f in alice}) == 1 and len({writer_pid(f) for f in bob}) == 1
        assert writer_pid(alice[0]) != writer_pid(bob[0])
        for short, files in (("alice", alice), ("bob", bob)):
            pw = s.users.pw[short]
            assert all(owner(f) == (pw.pw_uid, pw.pw_gid) for f in files)
        delivered_to = sorted(re.search(rb"\nDelivered-To: (\S+)\n", open(f, "rb").read()).group(1).decode()
                              for f in alice)
        assert delivered_to == sorted([s.addr("alice"), s.addr("alice", "x")]), delivered_to
        assert f"Delivered-To: cmd@{DOMAIN}\n".encode() in open(os.path.join(s.out, "cmd.out"), "rb").read()
        s.inst.wait_log(rf"{qids[1]}: to=<nosuch@{DOMAIN}>, relay=local, .*dsn=5\.1\.1, status=bounced")
        s.inst.wait_log(rf"{qids[4]}: to=<{re.escape(s.addr('bob'))}>, relay=local, .*status=sent \(delivered to maildir\)")


def test_pipelined_batch_into_an_unwritable_maildir_defers_all():
    with Setup(users=("alice",)) as s:
        maildir = os.path.join(s.users.home("alice"), "Maildir")
        for sub in ("", "tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)
        pw = s.users.pw["alice"]
        for sub in ("", "tmp", "cur"):
            os.chown(os.path.join(maildir, sub), pw.pw_uid, pw.pw_gid)
        os.chmod(os.path.join(maildir, "new"), 0o755)  # root's: alice cannot move messages in
        qids = [s.send([s.addr("alice")]) for _ in range(3)]
        replies = dc.deliver_pipelined(s.inst.queue, [(qid, None) for qid in qids])
        assert len(replies) == 3, replies
        for out in replies:
            expect(out, ("D", "4.2.0", r"/new/.*Permission denied"))
        assert s.maildir_files(maildir) == []
        assert os.listdir(os.path.join(maildir, "tmp")) == []
        for qid in qids:
            s.inst.wait_log(rf"{qid}: to=<{re.escape(s.addr('alice'))}>, relay=local, .*dsn=4\.2\.0, status=deferred")
        # Fixed: the same requests again go through.
        os.chown(os.path.join(maildir, "new"), pw.pw_uid, pw.pw_gid)
        replies = dc.deliver_pipelined(s.inst.queue, [(qid, None) for qid in qids])
        for out in replies:
            expect(out, ("S", "2.0.0", r"^delivered to maildir$"))
        assert len(s.maildir_files(maildir)) == 3


def test_pipelined_requests_keep_each_requests_order_of_deliveries():
    """A command after a Maildir copy in one request runs after that copy is
    written, as it would if the request came alone."""
    with Setup(users=("alice",)) as s:
        home = s.users.home("alice")
        pw = s.users.pw["alice"]
        fwd = os.path.join(home, ".forward")
        s.write(fwd, s.fill("\\{alice}\n|ls {home:alice}/Maildir/new | wc -l >> {home:alice}/count\n"))
        os.chown(fwd, pw.pw_uid, pw.pw_gid)
        qids = [s.send([s.addr("alice")]) for _ in range(3)]
        replies = dc.deliver_pipelined(s.inst.queue, [(qid, None) for qid in qids])
        for out in replies:
            expect(out, ("S", "2.0.0", r"^delivered to maildir$"))
        assert open(os.path.join(home, "count")).read().split() == ["1", "2", "3"]
        assert len(s.inbox("alice")) == 3
