"""sendmail(1) against a temporary instance whose master.cf has no pickup, so
the maildrop files sendmail leaves stay where they are and can be checked:
mode 0644 and owned by the invoking user (sendmail runs as a throw-away user,
setgid posterndrop like an installed one), the envelope and content records,
-t/-f/-F/-i, -bs driven by Python, and the exit codes for bad options and bad
addresses."""
import grp
import os
import pwd
import shutil
import subprocess

from harness import BIN, Instance, need_root
from smtpd_test import read_queue_file

USER = "postern-smtest"


def setup():
    need_root()
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--comment", "Sendmail Tester,,,", USER], check=True)
    inst = Instance(name="sendmail", main_cf={"myhostname": "host.example", "myorigin": "origin.example"})
    inst.start()  # master makes the queue, maildrop/ 01730 postern:posterndrop
    return inst, setgid_copy(inst)


def setgid_copy(inst):
    """An installed-like sendmail: a copy owned root:posterndrop, mode 2755,
    with the instance's configuration readable by the user who runs it."""
    binary = os.path.join(inst.dir, "sendmail")
    shutil.copy(os.path.join(BIN, "sendmail"), binary)
    os.chown(binary, 0, grp.getgrnam("posterndrop").gr_gid)
    os.chmod(binary, 0o2755)
    os.chmod(inst.etc, 0o755)
    os.chmod(os.path.join(inst.etc, "main.cf"), 0o644)
    return binary


def sendmail(inst, binary, args, data=b"", user=USER):
    cmd = [binary, "-C", inst.etc] + list(args)
    if user:
        cmd = ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--"] + cmd
    return subprocess.run(cmd, input=data, capture_output=True, timeout=30)


def maildrop_files(inst):
    d = os.path.join(inst.queue, "maildrop")
    return sorted(os.path.join(d, f) for f in os.listdir(d))


def only_new_file(inst, before):
    new = [f for f in maildrop_files(inst) if f not in before]
    assert len(new) == 1, f"got {len(new)} new maildrop files, want 1"
    return new[0]


def records(path):
    recs = read_queue_file(path)
    assert recs[0] == ("V", b"1") and recs[-1] == ("E", b""), f"bad first/last record in {path}"
    return recs


def one(recs, t):
    v = [p for rt, p in recs if rt == t]
    assert len(v) <= 1, f"record {t} {len(v)} times"
    return v[0] if v else None


def rcpts(recs):
    return [p[4:4 + int.from_bytes(p[2:4], "big")].decode() for t, p in recs if t == "R"]


def content(recs):
    return b"".join(p for t, p in recs if t == "B")


def test_sendmail_maildrop():
    inst, binary = setup()
    uid = pwd.getpwnam(USER).pw_uid

    # -t with To/Cc/Bcc plus a command-line recipient; bare LF input; -F.
    before = maildrop_files(inst)
    msg = (b"To: Ann <ann@a.example>\nCc: bob@b.example, undisclosed:;\nBcc: carl@c.example\n"
           b"Subject: t test\n\nline 1\n.\nnot reached\n")
    r = sendmail(inst, binary, ["-t", "-F", "Test User", "dave"], msg)
    assert r.returncode == 0, f"got exit {r.returncode} ({r.stderr!r}), want 0"
    path = only_new_file(inst, before)
    st = os.stat(path)
    assert st.st_mode & 0o7777 == 0o644, f"got mode {oct(st.st_mode)}, want 0644"
    assert st.st_uid == uid, f"got owner {st.st_uid}, want {uid}"
    recs = records(path)
    assert one(recs, "I").decode() == os.path.basename(path)
    assert one(recs, "S") == b"" and one(recs, "o") == b"sendmail"
    got = rcpts(recs)
    want = ["dave@origin.example", "ann@a.example", "bob@b.example", "carl@c.example"]
    assert got == want, f"got recipients {got}, want {want}"
    body = content(recs)
    assert b"Bcc" not in body and b"carl" not in body, body
    assert b"\r\nFrom: Test User <" + USER.encode() + b"@origin.example>\r\n" in body, body
    assert b"\r\nDate: " in body and b"\r\nMessage-ID: <" in body, body
    assert body.endswith(b"\r\n\r\nline 1\r\n"), body
    assert b"not reached" not in body and b"\n\n" not in body.replace(b"\r\n", b""), body

    # -f and -i: the lone dot is text; CRLF input is not doubled; DSN options.
    before = maildrop_files(inst)
    r = sendmail(inst, binary, ["-i", "-f", "sender@s.example", "-N", "failure,delay", "-R", "hdrs", "-V", "E1",
                                "ann@a.example"], b"Subject: i\r\n\r\na\r\n.\r\nb\r\n")
    assert r.returncode == 0, r.stderr
    recs = records(only_new_file(inst, before))
    assert one(recs, "S") == b"sender@s.example" and one(recs, "o") == b"sendmail -f"
    assert one(recs, "r") == b"HDRS" and one(recs, "e") == b"E1"
    assert [p[1] for t, p in recs if t == "R"] == [4 | 8]
    assert content(recs).endswith(b"\r\n\r\na\r\n.\r\nb\r\n"), content(recs)
    assert b"\r\nFrom: Sendmail Tester <sender@s.example>\r\n" in content(recs), content(recs)

    # Non-ASCII header: SMTPUTF8.
    before = maildrop_files(inst)
    r = sendmail(inst, binary, ["ann@a.example"], "Subject: gr\u00fc\u00dfe\n\nx\n".encode())
    assert r.returncode == 0, r.stderr
    assert one(records(only_new_file(inst, before)), "U") == b"1"

    # Failures: exit codes and no file left behind.
    before = maildrop_files(inst)
    for args, data, want in [
        (["-z", "a@b.example"], b"x\n", 64),
        (["-N", "bogus", "a@b.example"], b"x\n", 64),
        ([], b"x\n", 64),
        (["a@@b.example"], b"x\n", 65),
        (["-f", "<broken", "a@b.example"], b"x\n", 65),
        (["-t"], b"To: <broken\n\nx\n", 65),
        (["-t"], b"Subject: none\n\nx\n", 65),
        (["-bp"], b"", 69),  # no showq in this instance (sendmail_more_test covers mailq)
        (["-bi"], b"", 77),
    ]:
        r = sendmail(inst, binary, args, data)
        assert r.returncode == want, f"{args}: got exit {r.returncode} ({r.stderr!r}), want {want}"
        assert len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
    assert maildrop_files(inst) == before, "a failed sendmail left a maildrop file"


def test_sendmail_bs():
    inst, binary = setup()
    before = maildrop_files(inst)
    session = (b"EHLO client\r\nMAIL FROM:<me@m.example> BODY=8BITMIME\r\nRCPT TO:<ann@a.example>\r\n"
               b"RCPT TO:<bob>\r\nDATA\r\nSubject: bs\r\n\r\n..dot\r\nx\r\n.\r\nQUIT\r\n")
    r = sendmail(inst, binary, ["-bs"], session)
    assert r.returncode == 0, r.stderr
    replies = r.stdout.decode()
    assert "250 2.0.0 Ok: queued as " in replies and replies.endswith("221 2.0.0 Bye\r\n"), replies
    recs = records(only_new_file(inst, before))
    assert rcpts(recs) == ["ann@a.example", "bob@origin.example"]
    assert one(recs, "S") == b"me@m.example" and one(recs, "o") == b"sendmail -f"
    assert content(recs).endswith(b"\r\n\r\n.dot\r\nx\r\n"), content(recs)


def test_sendmail_long_header_lines():
    """RFC 5322 2.1.1: header lines over 998 octets are folded at white
    space; one with nowhere to fold is kept as it is, with a warning, and the
    message is still queued; body lines are never touched."""
    inst, binary = setup()
    subject = b"Subject: " + b" ".join(b"word%d" % i for i in range(600))  # about 4.4 kB
    token = b"X-Token: " + b"t" * 1500
    body_line = b" ".join(b"body%d" % i for i in range(700))
    before = maildrop_files(inst)
    r = sendmail(inst, binary, ["ann@a.example"], subject + b"\n" + token + b"\n\n" + body_line + b"\n")
    assert r.returncode == 0, f"got exit {r.returncode} ({r.stderr!r}), want 0"
    assert b"warning:" in r.stderr and b"1 header line longer than 998 octets" in r.stderr, r.stderr
    data = content(records(only_new_file(inst, before)))
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    folded = header[:header.index(b"\r\nX-Token:")]
    assert folded.replace(b"\r\n ", b" ") == subject, "the folded Subject does not unfold to the original"
    assert folded != subject and all(len(l) <= 998 for l in folded.split(b"\r\n")), "Subject not folded"
    assert token in lines, "the line with nowhere to fold was changed"
    assert body == body_line + b"\r\n", "the body was changed"

    # Nothing to fold: no warning.
    r = sendmail(inst, binary, ["ann@a.example"], subject + b"\n\nx\n")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
