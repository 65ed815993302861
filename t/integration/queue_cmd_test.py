"""postern queue hold/release/delete/requeue/flush and list's markers and defer
reasons, on an instance without qmgr (master.cf has only smtpd), so queue files
stay where smtpd and the test put them. A fake qmgr trigger socket checks the
pokes; a mover thread plays qmgr moving files while the command runs."""
import json
import os
import pwd
import smtplib
import socket
import threading
import time

from harness import need_root
from smtpd_test import qid_of, smtp_instance

SUBDIRS = ["incoming", "active", "deferred", "hold", "corrupt"]


def send(inst, n, rcpts=("root@localhost",)):
    ids = []
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.ehlo("x")
        for i in range(n):
            s.mail("sender@b.example")
            for r in rcpts:
                s.rcpt(r)
            code, text = s.data(f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
            assert code == 250, text
            ids.append(qid_of(text.decode()))
    return ids


def where(inst, qid):
    """The subdirectories holding qid (a list, so a duplicate would show)."""
    return [d for d in SUBDIRS if os.path.exists(os.path.join(inst.queue, d, qid))]


def run(inst, *args, stdin=None):
    import subprocess
    from harness import BIN
    return subprocess.run([os.path.join(BIN, "postern"), "-c", inst.etc, "queue", *args], capture_output=True,
                          text=True, timeout=60, input=stdin)


def move(inst, qid, frm, to):
    os.rename(os.path.join(inst.queue, frm, qid), os.path.join(inst.queue, to, qid))


def write_defer_log(inst, qid, address, reason):
    path = os.path.join(inst.queue, "defer", qid)
    with open(path, "w") as f:
        f.write(f"postern-defer-log 1\n1700000000000000\t4.4.1\t{address}\tmx.example[192.0.2.1]:25\t{reason}\n")
    return path


class FakeQmgr:
    """Listens on queue_directory/private/qmgr like qmgr's trigger socket."""

    def __init__(self, inst):
        d = os.path.join(inst.queue, "private")
        os.makedirs(d, mode=0o700, exist_ok=True)
        self.path = os.path.join(d, "qmgr")
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(16)
        self.sock.settimeout(0.2)

    def pokes(self):
        got = b""
        while True:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                return got.decode()
            c.settimeout(2)
            got += c.recv(10)
            c.close()

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def test_hold_release_requeue_delete():
    need_root()
    inst = smtp_instance()
    owner = pwd.getpwnam("postern").pw_uid
    qmgr = FakeQmgr(inst)
    ids = send(inst, 3)
    for qid in ids:
        assert where(inst, qid) == ["incoming"]

    r = run(inst, "hold", ids[0])
    assert r.returncode == 0 and r.stderr == "postern: Placed on hold: 1 message\n", (r.returncode, r.stderr)
    assert where(inst, ids[0]) == ["hold"]
    r = run(inst, "list")
    assert f"\n{ids[0]}!" in "\n" + r.stdout, r.stdout
    assert f"\n{ids[1]} " in "\n" + r.stdout, r.stdout
    r = run(inst, "hold", ids[0])
    assert r.returncode == 0 and r.stderr == "", "holding a held message does nothing, quietly"
    assert qmgr.pokes() == ""

    # Release: hold/ -> deferred/, due now (mtime), and qmgr is told to look.
    os.utime(os.path.join(inst.queue, "hold", ids[0]), (1, 1))
    r = run(inst, "release", ids[0])
    assert r.returncode == 0 and r.stderr == "postern: Released from hold: 1 message\n", r.stderr
    assert where(inst, ids[0]) == ["deferred"]
    assert abs(os.stat(os.path.join(inst.queue, "deferred", ids[0])).st_mtime - time.time()) < 60
    assert qmgr.pokes() == "F"
    r = run(inst, "release", ids[1])
    assert r.returncode == 0 and r.stderr == "", "releasing a message that is not held does nothing"

    # Requeue: deferred/ -> incoming/, qmgr told "A".
    r = run(inst, "requeue", ids[0])
    assert r.returncode == 0 and r.stderr == "postern: Requeued: 1 message\n", r.stderr
    assert where(inst, ids[0]) == ["incoming"]
    assert qmgr.pokes() == "A"

    # ALL: from wherever qmgr keeps them (active/ and deferred/ too).
    move(inst, ids[1], "incoming", "active")
    move(inst, ids[2], "incoming", "deferred")
    r = run(inst, "hold", "ALL")
    assert r.returncode == 0 and r.stderr == "postern: Placed on hold: 3 messages\n", r.stderr
    assert all(where(inst, q) == ["hold"] for q in ids)
    r = run(inst, "list")
    assert r.stdout.count("!") == 3, r.stdout
    r = run(inst, "release", "ALL")
    assert r.stderr == "postern: Released from hold: 3 messages\n", r.stderr
    assert all(where(inst, q) == ["deferred"] for q in ids)
    r = run(inst, "hold", ids[2])
    r = run(inst, "requeue", "ALL")
    assert r.returncode == 0 and r.stderr == "postern: Requeued: 3 messages\n", r.stderr
    assert all(where(inst, q) == ["incoming"] for q in ids)
    assert qmgr.pokes() == "FA"
    for q in ids:
        assert os.stat(os.path.join(inst.queue, "incoming", q)).st_uid == owner, "renames keep the mail owner"

    # Delete from stdin (white space and blank lines are fine), with the defer log.
    move(inst, ids[1], "incoming", "deferred")
    log = write_defer_log(inst, ids[1], "root@localhost", "connection refused")
    r = run(inst, "delete", "-", stdin=f"{ids[0]}\n\n  {ids[1]}  \n{ids[0]}\n")
    assert r.returncode == 0 and r.stderr == "postern: Deleted: 2 messages\n", (r.returncode, r.stderr)
    assert where(inst, ids[0]) == [] and where(inst, ids[1]) == []
    assert not os.path.exists(log), "the defer log goes with the message"
    assert where(inst, ids[2]) == ["incoming"]
    r = run(inst, "delete", "ALL")
    assert r.returncode == 0 and r.stderr == "postern: Deleted: 1 message\n", r.stderr
    assert run(inst, "list").stdout == "Mail queue is empty\n"
    r = run(inst, "delete", "ALL")
    assert r.returncode == 0 and r.stderr == "", "nothing to delete: nothing said"
    assert qmgr.pokes() == ""
    qmgr.close()


def test_bad_arguments_and_missing_messages():
    need_root()
    inst = smtp_instance()
    ids = send(inst, 2)
    gone = ids[0][:11] + "ZZZZZ"
    for verb in ["hold", "release", "delete", "requeue"]:
        r = run(inst, verb, gone)
        assert r.returncode == 66 and r.stderr == f"postern: {gone}: no such message\n", (verb, r.returncode, r.stderr)
        r = run(inst, verb, "../../etc/passwd")
        assert r.returncode == 64 and "is not a queue ID" in r.stderr, (verb, r.returncode, r.stderr)
        r = run(inst, verb)
        assert r.returncode == 64, verb
    # A bad ID anywhere stops everything before anything is done.
    r = run(inst, "delete", ids[0], "not-an-id")
    assert r.returncode == 64 and where(inst, ids[0]) == ["incoming"]
    r = run(inst, "delete", "-", stdin=f"{ids[0]}\nbad/id\n")
    assert r.returncode == 64 and where(inst, ids[0]) == ["incoming"]
    r = run(inst, "delete", "-", stdin="x" * 100000)
    assert r.returncode == 64 and where(inst, ids[0]) == ["incoming"]
    r = run(inst, "hold", "ALL", ids[0])
    assert r.returncode == 64 and where(inst, ids[0]) == ["incoming"]
    r = run(inst, "hold", "-", "-")
    assert r.returncode == 64
    r = run(inst, "flush", "extra")
    assert r.returncode == 64
    # The ones there are done, the missing one is reported: exit 66.
    r = run(inst, "hold", ids[0], gone, ids[1])
    assert r.returncode == 66, (r.returncode, r.stderr)
    assert r.stderr == f"postern: {gone}: no such message\npostern: Placed on hold: 2 messages\n", r.stderr
    assert where(inst, ids[0]) == ["hold"] and where(inst, ids[1]) == ["hold"]
    # A named message in corrupt/ can be deleted; ALL leaves corrupt/ alone.
    move(inst, ids[0], "hold", "corrupt")
    r = run(inst, "delete", "ALL")
    assert r.stderr == "postern: Deleted: 1 message\n" and where(inst, ids[0]) == ["corrupt"], r.stderr
    r = run(inst, "delete", ids[0])
    assert r.returncode == 0 and where(inst, ids[0]) == []


def test_flush_touches_deferred_and_pokes_qmgr():
    need_root()
    inst = smtp_instance()
    ids = send(inst, 2)
    for q in ids:
        move(inst, q, "incoming", "deferred")
        os.utime(os.path.join(inst.queue, "deferred", q), (time.time() + 3600, time.time() + 3600))
    # Nobody listening: flush still does its part and says the mail system seems down.
    r = run(inst, "flush")
    assert r.returncode == 0 and "cannot wake the queue manager" in r.stderr, (r.returncode, r.stderr)
    for q in ids:
        assert abs(os.stat(os.path.join(inst.queue, "deferred", q)).st_mtime - time.time()) < 60
    qmgr = FakeQmgr(inst)
    r = run(inst, "flush")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert qmgr.pokes() == "F"
    qmgr.close()


def test_list_shows_defer_reasons_and_markers():
    need_root()
    inst = smtp_instance()
    ids = send(inst, 2, rcpts=("root@localhost", "postmaster@localhost"))
    move(inst, ids[0], "incoming", "deferred")
    write_defer_log(inst, ids[0], "postmaster@localhost", "connect to mx.example[192.0.2.1]:25: Connection refused")
    move(inst, ids[1], "incoming", "active")
    r = run(inst, "list")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in run(inst, "list", "--json").stdout.splitlines()]
    # Postfix's postqueue -p, line by line (long queue ID layout): the
    # reason right-aligned to column 78, above the recipients it applies to.
    by_id = {x["queue_id"]: x for x in rows}

    def head(qid, mark):
        x = by_id[qid]
        when = time.strftime("%a %b %e %H:%M:%S", time.localtime(x["arrival_time"]))
        return "%-17s %8d %19.19s %s" % (qid + mark, x["message_size"], when, "sender@b.example")

    reason = "connect to mx.example[192.0.2.1]:25: Connection refused"
    want = ["----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------",
            head(ids[0], ""),
            " " * 47 + "root@localhost",
            " " * (76 - len(reason)) + "(" + reason + ")",
            " " * 47 + "postmaster@localhost",
            "",
            head(ids[1], "*"),
            " " * 47 + "root@localhost",
            " " * 47 + "postmaster@localhost",
            "",
            "-- %d Kbytes in 2 Requests." % ((by_id[ids[0]]["message_size"] + by_id[ids[1]]["message_size"]) // 1024)]
    assert r.stdout.splitlines() == want, "got:\n%s\nwant:\n%s" % (r.stdout, "\n".join(want))
    # The reason goes away for a later recipient: Postfix says so.
    write_defer_log(inst, ids[0], "root@localhost", reason)
    lines = run(inst, "list").stdout.splitlines()
    assert lines[2:6] == [" " * (76 - len(reason)) + "(" + reason + ")", " " * 47 + "root@localhost",
                          " " * 58 + "(reason unavailable)", " " * 47 + "postmaster@localhost"], lines
    row = next(x for x in rows if x["queue_id"] == ids[0])
    assert row["queue_name"] == "deferred"
    assert row["recipients"] == [{"address": "root@localhost"},
                                 {"address": "postmaster@localhost",
                                  "delay_reason": "connect to mx.example[192.0.2.1]:25: Connection refused"}]
    # A damaged defer log is reported, and the message still listed.
    with open(os.path.join(inst.queue, "defer", ids[0]), "w") as f:
        f.write("garbage\n")
    r = run(inst, "list")
    assert r.returncode == 0 and ids[0] in r.stdout and "corrupt defer log" in r.stderr, (r.stdout, r.stderr)


def test_operations_race_with_a_moving_queue_manager():
    """A thread moves files incoming -> active -> deferred (as qmgr does)
    while hold ALL runs: every message ends on hold, none is lost or reported
    missing."""
    need_root()
    inst = smtp_instance()
    ids = send(inst, 40)
    stop = threading.Event()

    def mover():
        for step in [("incoming", "active"), ("active", "deferred")]:
            for q in ids:
                if stop.is_set():
                    return
                try:
                    move(inst, q, *step)
                except FileNotFoundError:
                    pass  # already held
                time.sleep(0)  # let the command run between moves

    t = threading.Thread(target=mover)
    t.start()
    try:
        r = run(inst, "hold", "ALL")
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0 and "no such message" not in r.stderr, (r.returncode, r.stderr)
    # The subdirectories are listed in the order the mover moves files, so
    # each message is listed at least once, and then found wherever it went.
    for q in ids:
        assert where(inst, q) == ["hold"], (q, where(inst, q))
    r = run(inst, "delete", *ids)
    assert r.returncode == 0 and r.stderr == "postern: Deleted: 40 messages\n", r.stderr
