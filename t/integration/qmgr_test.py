"""The queue manager end to end: smtpd -> incoming/ -> qmgr -> local -> Maildir,
bounces (RFC 3464, parsed), deferral and `postern queue flush`, the error
transport, kill -9 of qmgr and of local in the middle of work, and 1,000
messages delivered exactly once."""
import email
import email.policy
import glob
import os
import pwd
import random
import re
import shutil
import signal
import smtplib
import subprocess
import threading
import time

from harness import Instance, need_root, free_port, wait_for

MASTER_CF = """\
{port} inet n - y - - smtpd
qmgr unix - - y 300 1 qmgr
local unix - n n - - local
"""


class Users:
    """Throw-away system users with homes under the instance directory."""

    def __init__(self, base):
        self.base = base
        self.names = []

    def add(self, short):
        name = f"pt-{short}-{random.randrange(16**5):05x}"
        home = os.path.join(self.base, "home", name)
        os.makedirs(home)
        subprocess.run(["useradd", "-M", "-d", home, "-s", "/usr/sbin/nologin", name], check=True,
                       capture_output=True)
        pw = pwd.getpwnam(name)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o755)
        self.names.append(name)
        return name

    def home(self, name):
        return pwd.getpwnam(name).pw_dir

    def maildir_files(self, name, sub="new"):
        return sorted(glob.glob(os.path.join(self.home(name), "Maildir", sub, "*")))

    def remove(self):
        for n in self.names:
            subprocess.run(["userdel", n], capture_output=True)
        self.names = []


def start(main=None, extra_master=""):
    port = free_port()
    cfg = {"mydestination": "localhost, example.test", "mynetworks": "127.0.0.0/8",
           "myhostname": "mail.example.test", "alias_maps": "",
           "minimal_backoff_time": "300s", "queue_run_delay": "300s"}
    cfg.update(main or {})
    inst = Instance(main_cf=cfg, master_cf=MASTER_CF.format(port=port) + extra_master)
    os.makedirs(os.path.join(inst.dir, "home"))
    inst.users = Users(inst.dir)
    inst.port = port
    return inst


def finish(inst):
    inst.stop()
    inst.users.remove()
    inst.cleanup()


def send(inst, sender, rcpts, subject="test", body="hello\n", mid=None):
    msg = f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
    if mid:
        msg += f"Message-ID: <{mid}>\r\n"
    msg += "\r\n" + body.replace("\n", "\r\n")
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
        s.sendmail(sender, rcpts, msg)


def owner(path):
    return os.stat(path).st_uid


def test_smtp_to_maildir():
    need_root()
    inst = start()
    try:
        alice = inst.users.add("alice")
        inst.start()
        send(inst, "sender@example.org", [f"{alice}@example.test"], subject="first")
        files = wait_for(lambda: inst.users.maildir_files(alice), 20, "delivery to the Maildir")
        assert len(files) == 1
        assert owner(files[0]) == pwd.getpwnam(alice).pw_uid
        text = open(files[0], "rb").read()
        assert b"Subject: first" in text
        assert text.startswith(b"Return-Path: <sender@example.org>"), text[:200]
        assert f"Delivered-To: {alice}@example.test".encode() in text
        inst.wait_log(r": to=<%s@example\.test>, relay=local, delay=[0-9.]+, delays=[0-9./]+, dsn=2\.0\.0, "
                      r"status=sent \(delivered to maildir\)" % alice)
        inst.wait_log(r"[0-9B-Z_]+: removed")
        wait_for(lambda: not os.listdir(os.path.join(inst.queue, "active")), 10, "active/ to drain")
        assert not os.listdir(os.path.join(inst.queue, "incoming"))
        assert not os.listdir(os.path.join(inst.queue, "deferred"))
    finally:
        finish(inst)


def _inode_of_id(qid):
    """The inode number a queue ID ends with (lib/queue/queue.hpp)."""
    alphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZ_"
    n = 0
    for c in qid[11:]:
        n = n * 32 + alphabet.index(c)
    return n


def test_delivered_queue_files_are_recycled_emptied_and_reused():
    need_root()
    inst = start()
    try:
        bob = inst.users.add("bob")
        inst.start()
        for i in range(3):
            send(inst, "sender@example.org", [f"{bob}@example.test"], subject=f"r{i}", body="secret %d\n" % i)
        wait_for(lambda: len(inst.users.maildir_files(bob)) == 3, 20, "three deliveries")
        recycle = os.path.join(inst.queue, "recycle")
        st = os.stat(recycle)
        assert st.st_mode & 0o777 == 0o700 and st.st_uid == pwd.getpwnam("postern").pw_uid
        kept = wait_for(lambda: len(os.listdir(recycle)) == 3 and os.listdir(recycle), 10, "three recycled files")
        inodes = set()
        for name in kept:
            fst = os.stat(os.path.join(recycle, name))
            assert fst.st_size == 0, f"{name} still holds {fst.st_size} bytes"
            assert fst.st_mode & 0o777 == 0o600
            inodes.add(fst.st_ino)
        # smtpd looks into an empty recycle/ at most once a second.
        time.sleep(1.2)
        send(inst, "sender@example.org", [f"{bob}@example.test"], subject="reused")
        inst.wait_log(r"[0-9B-Z_]+: client=", count=4)
        qids = re.findall(r"([0-9B-Z_]{12,}): client=", inst.log())
        assert _inode_of_id(qids[-1]) in inodes, (qids, inodes)
        wait_for(lambda: len(inst.users.maildir_files(bob)) == 4, 20, "the fourth delivery")
        body = [open(f, "rb").read() for f in inst.users.maildir_files(bob) if b"Subject: reused" in open(f, "rb").read()]
        assert len(body) == 1 and b"secret" not in body[0], body
    finally:
        finish(inst)


def _rcpt_code(inst, addr):
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
        s.ehlo()
        s.mail("sender@example.org")
        return s.rcpt(addr)[0]


def test_a_user_added_while_smtpd_runs_is_accepted_soon():
    """smtpd snapshots the users before its chroot and lives long
    (max_use per client slot); a changed /etc/passwd makes it hand over."""
    need_root()
    inst = start()
    try:
        inst.start()
        name = f"pt-late-{random.randrange(16**5):05x}"
        assert _rcpt_code(inst, f"{name}@example.test") == 550
        home = os.path.join(inst.dir, "home", name)
        os.makedirs(home)
        subprocess.run(["useradd", "-M", "-d", home, "-s", "/usr/sbin/nologin", name], check=True,
                       capture_output=True)
        inst.users.names.append(name)
        time.sleep(1.2)  # smtpd looks at /etc/passwd at most once a second
        codes = []
        for _ in range(20):
            codes.append(_rcpt_code(inst, f"{name}@example.test"))
            if codes[-1] == 250:
                break
            time.sleep(0.2)
        assert codes[-1] == 250, codes
        inst.wait_log(r"/etc/passwd has changed")
    finally:
        finish(inst)


def parse_dsn(path):
    msg = email.message_from_binary_file(open(path, "rb"), policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    assert parts[2].get_content_type() in ("message/rfc822", "text/rfc822-headers")
    # message/delivery-status payload: a list of header blocks (per message, per recipient)
    blocks = parts[1].get_payload()
    return msg, blocks, parts


def test_unknown_user_bounces_with_rfc3464_report():
    need_root()
    inst = start({"smtpd_reject_unlisted_recipient": "no"})
    try:
        bob = inst.users.add("bob")
        inst.start()
        send(inst, f"{bob}@example.test", ["nosuchuser@example.test"], subject="lost", mid="lost-1@example.test")
        files = wait_for(lambda: inst.users.maildir_files(bob), 20, "the bounce in the sender's Maildir")
        msg, blocks, parts = parse_dsn(files[0])
        assert msg["From"].startswith("MAILER-DAEMON@mail.example.test"), msg["From"]
        text = open(files[0], "rb").read()
        assert text.startswith(b"Return-Path: <>"), text[:100]
        per_msg, per_rcpt = blocks[0], blocks[1]
        assert "mail.example.test" in per_msg["Reporting-MTA"]
        assert per_rcpt["Final-Recipient"].lower().endswith("nosuchuser@example.test")
        assert per_rcpt["Action"] == "failed"
        assert per_rcpt["Status"] == "5.1.1"
        assert b"Subject: lost" in parts[2].as_bytes() or "lost" in str(parts[2])
        inst.wait_log(r"status=bounced \(unknown user")
        inst.wait_log(r"sender non-delivery notification: [0-9B-Z_]+")
    finally:
        finish(inst)


def test_deferred_then_delivered_after_flush():
    need_root()
    inst = start()
    try:
        carol = inst.users.add("carol")
        # A Maildir the user cannot write: delivery fails temporarily.
        md = os.path.join(inst.users.home(carol), "Maildir")
        os.makedirs(md)
        os.chmod(md, 0o555)
        os.chown(md, 0, 0)
        inst.start()
        send(inst, "sender@example.org", [f"{carol}@example.test"], subject="later")
        inst.wait_log(r"to=<%s@example\.test>.*status=deferred" % carol, timeout=20)
        wait_for(lambda: os.listdir(os.path.join(inst.queue, "deferred")), 10, "file in deferred/")
        listing = inst.postern("queue", "list")
        assert carol in listing.stdout, listing.stdout
        pw = pwd.getpwnam(carol)
        os.chown(md, pw.pw_uid, pw.pw_gid)
        os.chmod(md, 0o700)
        r = inst.postern("queue", "flush")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: inst.users.maildir_files(carol), 20, "delivery after flush")
        wait_for(lambda: not os.listdir(os.path.join(inst.queue, "deferred")), 10, "deferred/ to drain")
    finally:
        finish(inst)


def test_error_transport_bounces_everything_not_routed():
    need_root()
    inst = start({"default_transport": "error:5.7.1 this test instance sends nothing out"})
    try:
        dan = inst.users.add("dan")
        inst.start()
        send(inst, f"{dan}@example.test", ["someone@elsewhere.example"], subject="out")
        files = wait_for(lambda: inst.users.maildir_files(dan), 20, "the bounce")
        msg, blocks, parts = parse_dsn(files[0])
        assert blocks[1]["Status"] == "5.7.1"
        assert "sends nothing out" in parts[0].get_payload(decode=True).decode()
    finally:
        finish(inst)


def _sent_count(inst, users):
    return sum(len(inst.users.maildir_files(u)) for u in users)


def _subjects(inst, users):
    subs = []
    for u in users:
        for f in inst.users.maildir_files(u):
            for line in open(f, "rb"):
                if line.startswith(b"Subject: "):
                    subs.append(line.strip().decode())
                    break
    return subs


def test_kill9_qmgr_and_local_mid_work_loses_nothing():
    need_root()
    inst = start()
    try:
        users = [inst.users.add(f"k{i}") for i in range(3)]
        inst.start()
        n = 60

        def sender():
            for i in range(n):
                send(inst, "s@example.org", [f"{users[i % 3]}@example.test"], subject=f"k{i}")

        t = threading.Thread(target=sender)
        t.start()
        killed = {"qmgr": 0, "local": 0}
        deadline = time.time() + 60
        while t.is_alive() and time.time() < deadline:
            time.sleep(0.2)
            for pid in inst.children():
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
                name = os.path.basename(cmd.decode())
                if name in killed and killed[name] < 3:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed[name] += 1
                    except ProcessLookupError:
                        pass
        t.join(60)
        # master replaces qmgr (its wakeup timer or the next trigger brings it back).
        wait_for(lambda: _sent_count(inst, users) >= n, 90, f"{n} deliveries")
        time.sleep(1)
        subs = _subjects(inst, users)
        assert set(subs) == {f"Subject: k{i}" for i in range(n)}, sorted(set(f"Subject: k{i}" for i in range(n)) - set(subs))
        dups = len(subs) - len(set(subs))
        # Duplicates are allowed ("at least once"), within what the kills
        # explain: a local killed after its mailbox writes but before its
        # replies repeats at most its batch (up to 64 requests of one session),
        # a qmgr killed after replies but before it removed the files repeats
        # at most what it had in flight (3 users x local_destination_
        # concurrency_limit 2 sessions x 64). No message may come more often
        # than once per kill plus one.
        kills = killed["local"] + killed["qmgr"]
        assert dups <= 64 * killed["local"] + 384 * killed["qmgr"], (dups, killed)
        most = max(subs.count(x) for x in set(subs))
        assert most <= 1 + kills, (most, killed)
        print(f"killed {killed}, duplicates {dups}")
    finally:
        finish(inst)


def test_thousand_messages_delivered_exactly_once():
    need_root()
    inst = start()
    try:
        users = [inst.users.add(f"m{i}") for i in range(4)]
        inst.start()
        n = 1000
        errors = []

        def worker(k):
            try:
                with smtplib.SMTP("127.0.0.1", inst.port, timeout=60) as s:
                    for i in range(k, n, 10):
                        u = users[i % len(users)]
                        s.sendmail("s@example.org", [f"{u}@example.test"],
                                   f"Subject: m{i}\r\nMessage-ID: <m{i}@t>\r\n\r\nbody {i}\r\n")
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        wait_for(lambda: _sent_count(inst, users) >= n, 120, f"{n} deliveries")
        time.sleep(1)
        subs = _subjects(inst, users)
        assert len(subs) == n and len(set(subs)) == n, (len(subs), len(set(subs)))
        wait_for(lambda: not os.listdir(os.path.join(inst.queue, "active")), 20, "active/ to drain")
    finally:
        finish(inst)


def test_virtual_mailbox_end_to_end_and_unknown_refused_at_rcpt():
    need_root()
    inst = start({"virtual_mailbox_domains": "virt.example"},
                 extra_master="virtual unix - n n - - local\n")
    try:
        vmail = inst.users.add("vmail")
        pw = pwd.getpwnam(vmail)
        base = os.path.join(inst.dir, "vmail")
        os.makedirs(base)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        with open(os.path.join(inst.etc, "vmailbox"), "w") as f:
            f.write("vera@virt.example virt.example/vera/\n")
        inst.main.update({"virtual_mailbox_maps": f"texthash:{inst.etc}/vmailbox",
                          "virtual_mailbox_base": base, "virtual_uid_maps": f"static:{pw.pw_uid}",
                          "virtual_gid_maps": f"static:{pw.pw_gid}"})
        inst.write_main_cf()
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
            s.ehlo("client.example")
            s.mail("s@example.org")
            code, text = s.rcpt("nobody@virt.example")
            assert code == 550 and b"virtual mailbox table" in text, (code, text)
            code, _ = s.rcpt("postmaster@virt.example")
            assert code == 250
            code, _ = s.rcpt("Vera+x@virt.example")
            assert code == 250
            code, _ = s.data(b"Subject: virtual\r\n\r\nhello\r\n")
            assert code == 250
        md = os.path.join(base, "virt.example", "vera", "new")
        files = wait_for(lambda: os.path.isdir(md) and os.listdir(md), 20, "delivery to the virtual Maildir")
        assert owner(os.path.join(md, files[0])) == pw.pw_uid
        inst.wait_log(r"to=<vera@virt\.example>, orig_to=<Vera\+x@virt\.example>, relay=virtual, .*status=sent|"
                      r"to=<Vera\+x@virt\.example>, relay=virtual, .*status=sent")
    finally:
        finish(inst)
