"""pickup(8): maildrop files (written here as sendmail would) move into the
queue; the sender rule for -f, garbage to corrupt/, incomplete files left
alone, and crash recovery of incoming/.pickup-NAME leftovers. master.cf has
only pickup, so queue files stay in incoming/ where the test reads them."""
import os
import pwd
import socket
import struct
import time

from harness import Instance, need_root, wait_for
from smtpd_test import read_queue_file


def record(t, payload):
    return t.encode() + struct.pack(">I", len(payload)) + payload


def maildrop_file(rcpts, origin="sendmail", sender="", content=b"Subject: test\r\n\r\nhello\r\n",
                  qid="1M0Z90PCG0DBG9R"):
    data = record("V", b"1") + record("T", b"1700000000000000") + record("I", qid.encode())
    data += record("o", origin.encode()) + record("S", sender.encode())
    for r in rcpts:
        a = r.encode()
        data += record("R", b"P\x00" + struct.pack(">H", len(a)) + a)
    data += record("M", b"") + record("B", content) + record("E", b"")
    return data


def drop(inst, name, data, user="nobody", mode=0o644):
    path = os.path.join(inst.queue, "maildrop", name)
    with open(path, "wb") as f:
        f.write(data)
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)
    return path


def poke(inst):
    def once():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(os.path.join(inst.queue, "public", "pickup"))
            s.sendall(b"W")
            return True
        except OSError:
            return False  # master (re)starting
        finally:
            s.close()
    wait_for(once, what="the pickup socket")


def queued(inst):
    d = os.path.join(inst.queue, "incoming")
    return sorted(n for n in os.listdir(d) if not n.startswith("."))


def envelope(inst, qid):
    recs = read_queue_file(os.path.join(inst.queue, "incoming", qid))
    return {t: p for t, p in recs if t not in "RB"}, [p for t, p in recs if t == "R"], \
        b"".join(p for t, p in recs if t == "B")


def pickup_instance():
    return Instance(main_cf={"myhostname": "mail.example.test", "myorigin": "example.test",
                             "sendmail_sender_override_users": "daemon"},
                    master_cf="pickup unix n - y 60 1 pickup\n", name="pickup").start()


def test_pickup_queues_and_applies_sender_rule():
    need_root()
    inst = pickup_instance()
    nobody = pwd.getpwnam("nobody").pw_uid
    daemon = pwd.getpwnam("daemon").pw_uid
    drop(inst, "plain", maildrop_file(["bob@example.net"], content=b"Message-ID: <m1@x>\r\n\r\nhi\r\n"))
    drop(inst, "forged", maildrop_file(["bob@example.net"], origin="sendmail -f", sender="boss@example.com"))
    drop(inst, "allowed", maildrop_file(["bob@example.net"], origin="sendmail -f", sender="list@example.com"),
         user="daemon")
    drop(inst, "writing", maildrop_file(["bob@example.net"]), mode=0o600)
    poke(inst)
    wait_for(lambda: len(queued(inst)) == 3, what="three queue files")
    assert sorted(os.listdir(os.path.join(inst.queue, "maildrop"))) == ["writing"]
    senders = {}
    for qid in queued(inst):
        env, rcpts, content = envelope(inst, qid)
        origin = env["o"].decode()
        senders[origin.split(" maildrop=")[1].split(" ")[0]] = env["S"].decode()
        assert env["p"] == b"local" and "c" not in env and "a" not in env, env
        assert rcpts == [b"P\x00\x00\x0fbob@example.net"], rcpts
        assert content.startswith(b"Received: by mail.example.test (Postern, from userid %d)\r\n\tid %s; "
                                  % (int(origin.split()[1][4:]), qid.encode())), content
    assert senders == {"plain": "nobody@example.test", "forged": "nobody@example.test",
                       "allowed": "list@example.com"}, senders
    inst.wait_log(rf": uid={nobody} from=<nobody@example.test>", count=2)
    inst.wait_log(rf": uid={daemon} from=<list@example.com>")
    inst.wait_log(r": message-id=<m1@x>")


def test_garbage_goes_to_corrupt():
    need_root()
    inst = pickup_instance()
    nobody = pwd.getpwnam("nobody").pw_uid
    drop(inst, "garbage", b"From: me\r\n\r\nnot a queue file\r\n")
    drop(inst, "norcpt", maildrop_file([]))
    poke(inst)
    inst.wait_log(rf"warning: garbage: uid={nobody}: corrupt maildrop file: .*; moved to corrupt/")
    inst.wait_log(rf"warning: norcpt: uid={nobody}: corrupt maildrop file: no recipients; moved to corrupt/")
    assert os.listdir(os.path.join(inst.queue, "maildrop")) == []
    assert len(os.listdir(os.path.join(inst.queue, "corrupt"))) == 2
    assert queued(inst) == []


def test_crash_recovery():
    need_root()
    inst = pickup_instance()
    # Queue one message normally, then fake a crash after step 3 by putting
    # the same maildrop file back as a leftover.
    data = maildrop_file(["bob@example.net"], qid="1M0Z90PCG0DBG9C")
    drop(inst, "done", data)
    poke(inst)
    wait_for(lambda: len(queued(inst)) == 1, what="queue file")
    inst.stop()
    # done: queued before the crash -> leftover removed, no second copy.
    drop(inst, "x", data)
    os.rename(os.path.join(inst.queue, "maildrop", "x"), os.path.join(inst.queue, "incoming", ".pickup-done"))
    # lost: crash before the commit -> back to maildrop/ and queued.
    drop(inst, "x", maildrop_file(["carol@example.net"], qid="1M0Z90PCG0DBG9D"))
    os.rename(os.path.join(inst.queue, "maildrop", "x"), os.path.join(inst.queue, "incoming", ".pickup-lost"))
    inst.start()
    poke(inst)
    wait_for(lambda: len(queued(inst)) == 2, what="the lost message queued")
    time.sleep(0.5)
    assert len(queued(inst)) == 2
    leftovers = [n for n in os.listdir(os.path.join(inst.queue, "incoming")) if n.startswith(".pickup-")]
    assert leftovers == [], leftovers
    assert os.listdir(os.path.join(inst.queue, "maildrop")) == []
    inst.wait_log(r"recovery: done was queued before a crash")
    inst.wait_log(r"recovery: lost was not queued before a crash")
