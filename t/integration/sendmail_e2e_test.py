"""sendmail(1) end to end: a user's message goes sendmail -> maildrop/ ->
pickup -> qmgr -> local -> the recipient's Maildir; one for an unknown local
user comes back to the invoking user as an RFC 3464 bounce from <>; one sent
while the mail system is down waits in maildrop/ and is delivered once it
starts."""
import os
import subprocess

from harness import need_root, wait_for
from qmgr_test import finish, parse_dsn, start
from sendmail_test import setgid_copy

MASTER_EXTRA = "pickup unix n - y 60 1 pickup\n"


def setup():
    need_root()
    inst = start({"mydestination": "$myhostname, localhost, example.test",
                  "smtpd_reject_unlisted_recipient": "no"}, extra_master=MASTER_EXTRA)
    inst.sendmail = setgid_copy(inst)
    return inst


def sendmail(inst, user, args, data):
    cmd = ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--", inst.sendmail, "-C", inst.etc]
    return subprocess.run(cmd + list(args), input=data, capture_output=True, timeout=30)


def test_sendmail_to_a_local_maildir():
    inst = setup()
    try:
        alice = inst.users.add("salice")
        bob = inst.users.add("sbob")
        inst.start()
        r = sendmail(inst, alice, ["-t", "-i"], f"To: {bob}@example.test\nSubject: via sendmail\n\nhello\n.\nbye\n".encode())
        assert r.returncode == 0, r.stderr
        files = wait_for(lambda: inst.users.maildir_files(bob), 30, "delivery of the sendmail message")
        text = open(files[0], "rb").read()
        assert b"Subject: via sendmail" in text
        assert f"From: ".encode() in text and f"{alice}@mail.example.test".encode() in text, text[:400]
        assert f"Return-Path: <{alice}@mail.example.test>".encode() in text
        assert b"\nhello\n.\nbye\n" in text  # -i: the lone dot is content; LF in the Maildir
        inst.wait_log(r"uid=\d+ from=<%s@mail\.example\.test>" % alice)
        assert not [n for n in os.listdir(os.path.join(inst.queue, "maildrop")) if not n.startswith(".")]
    finally:
        finish(inst)


def test_unknown_local_user_bounces_to_the_invoking_user():
    inst = setup()
    try:
        carol = inst.users.add("scarol")
        inst.start()
        r = sendmail(inst, carol, ["nosuchuser@example.test"], b"Subject: lost\n\nbody\n")
        assert r.returncode == 0, r.stderr
        files = wait_for(lambda: inst.users.maildir_files(carol), 30, "the bounce for the invoking user")
        msg, blocks, parts = parse_dsn(files[0])
        assert open(files[0], "rb").read().startswith(b"Return-Path: <>")
        assert blocks[1]["Status"] == "5.1.1"
        assert blocks[1]["Final-Recipient"].lower().endswith("nosuchuser@example.test")
    finally:
        finish(inst)


def test_mail_sent_while_down_is_delivered_after_start():
    inst = setup()
    try:
        dave = inst.users.add("sdave")
        erin = inst.users.add("serin")
        # Master made the queue; stop it, then send.
        inst.start()
        inst.stop()
        r = sendmail(inst, dave, [f"{erin}@example.test"], b"Subject: while down\n\nqueued\n")
        assert r.returncode == 0, r.stderr
        waiting = [n for n in os.listdir(os.path.join(inst.queue, "maildrop")) if not n.startswith(".")]
        assert len(waiting) == 1, waiting
        inst.start()
        files = wait_for(lambda: inst.users.maildir_files(erin), 90, "delivery after start")
        assert len(files) == 1
    finally:
        finish(inst)
