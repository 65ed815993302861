"""More of sendmail(1) against temporary instances: mailq for a user other
than root through showq(8) (and authorized_mailq_users, and the system down),
a 50 MB message streamed under a 40 MB RLIMIT_DATA, newaliases with a broken
and a good aliases file, a real mail program (s-nail) using the sendmail of
a DESTDIR install through pickup, qmgr and local to a Maildir, and -bv."""
import grp
import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile

from harness import BIN, ROOT, Instance, free_port, need_root, wait_for
from sendmail_test import setgid_copy
from smtpd_test import qid_of

USER = "postern-smtest"
MB = 1024 * 1024


def ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--comment", "Sendmail Tester,,,", USER], check=True)


def as_user(user, cmd):
    return ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--"] + cmd


def run(cmd, data=b""):
    return subprocess.run(cmd, input=data, capture_output=True, timeout=60)


def test_mailq_for_users_through_showq():
    need_root()
    ensure_user()
    port = free_port()
    # smtpd and showq, no qmgr: what smtpd queues stays in incoming/.
    inst = Instance(name="showq", main_cf={"mydestination": "localhost, example.test", "mynetworks": ""},
                    master_cf=f"{port} inet n - y - - smtpd\nshowq unix n - y - - showq\n").start()
    binary = setgid_copy(inst)
    mailq = os.path.join(inst.dir, "mailq")
    os.symlink(binary, mailq)
    st = os.stat(os.path.join(inst.queue, "public"))
    assert st.st_mode & 0o777 == 0o710, f"got public/ mode {oct(st.st_mode)}, want 0710"

    for cmd in ([binary, "-C", inst.etc, "-bp"], [mailq, "-C", inst.etc]):
        r = run(as_user(USER, cmd))
        assert r.returncode == 0, f"{cmd[0]}: got exit {r.returncode} ({r.stderr!r}), want 0"
        assert r.stdout == b"Mail queue is empty\n", f"got {r.stdout!r}, want the empty-queue line"

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("x")
        ids = []
        for i in range(2):
            s.mail("sender@b.example")
            s.rcpt("root@localhost")
            code, text = s.data(f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
            assert code == 250, text
            ids.append(qid_of(text.decode()))
    os.rename(os.path.join(inst.queue, "incoming", ids[1]), os.path.join(inst.queue, "hold", ids[1]))

    r = run(as_user(USER, [binary, "-C", inst.etc, "-bp"]))
    assert r.returncode == 0, r.stderr
    got = r.stdout.decode().splitlines()
    want = inst.postern("queue", "list").stdout.splitlines()
    assert len(got) == len(want), f"got {len(got)} lines, want {len(want)}:\n{r.stdout.decode()}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"line {i + 1}: got {g!r}, want {w!r}"
    text = r.stdout.decode()
    assert ids[0] + " " in text and ids[1] + "!" in text and "root@localhost" in text, text
    assert got[-1] == "-- 0 Kbytes in 2 Requests.", got[-1]

    # authorized_mailq_users: a list without the user refuses; root still lists.
    inst.main["authorized_mailq_users"] = "root"
    inst.write_main_cf()
    r = run(as_user(USER, [binary, "-C", inst.etc, "-bp"]))
    assert r.returncode == 77, f"got exit {r.returncode} ({r.stderr!r}), want 77"
    assert b"authorized_mailq_users" in r.stderr, r.stderr
    inst.main["authorized_mailq_users"] = f"root, {USER}"
    inst.write_main_cf()
    r = run(as_user(USER, [binary, "-C", inst.etc, "-bp"]))
    assert r.returncode == 0 and ids[0].encode() in r.stdout, r.stderr

    # The mail system down: users get EX_UNAVAILABLE, root reads the queue itself.
    inst.stop()
    r = run(as_user(USER, [binary, "-C", inst.etc, "-bp"]))
    assert r.returncode == 69, f"got exit {r.returncode} ({r.stderr!r}), want 69"
    assert r.stderr.startswith(b"sendmail: mailq: cannot connect to showq: "), r.stderr
    r = run([os.path.join(BIN, "sendmail"), "-C", inst.etc, "-bp"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == want, r.stdout
    inst.cleanup()


def test_50mb_message_is_streamed():
    need_root()
    ensure_user()
    limit = ["prlimit", "--data=40000000", "--"]
    # The limit bites: 50 MB cannot be allocated under it.
    r = run(limit + ["/usr/bin/python3", "-c", "b = bytearray(50_000_000)"])
    assert r.returncode != 0 and b"MemoryError" in r.stderr, r.stderr

    # No pickup: the maildrop file stays for inspection.
    inst = Instance(name="sendmail50", main_cf={"message_size_limit": "60000000"}).start()
    binary = setgid_copy(inst)
    p = subprocess.Popen(limit + as_user(USER, [binary, "-C", inst.etc, "big@example.test"]),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = b"x" * 75 + b"\n"
    chunk = line * (MB // len(line) + 1)
    p.stdin.write(b"Subject: big\n\n")
    sent = 0
    while sent < 50 * MB:
        p.stdin.write(chunk)
        sent += len(chunk)
    p.stdin.close()
    rc = p.wait(timeout=120)
    err = p.stderr.read()
    assert rc == 0, f"got exit {rc} ({err!r}), want 0"
    d = os.path.join(inst.queue, "maildrop")
    files = [os.path.join(d, f) for f in os.listdir(d) if not f.startswith(".")]
    assert len(files) == 1, files
    size = os.path.getsize(files[0])
    assert size >= 50 * MB, f"got a {size}-byte maildrop file, want >= {50 * MB}"
    inst.cleanup()


def test_newaliases_broken_and_good_file():
    need_root()
    inst = Instance(name="newaliases", main_cf={"alias_database": "hash:$config_directory/aliases",
                                                "command_directory": BIN})
    aliases = os.path.join(inst.etc, "aliases")
    link = os.path.join(inst.dir, "newaliases")
    os.symlink(os.path.join(BIN, "sendmail"), link)
    db = aliases + ".db"
    for cmd in ([os.path.join(BIN, "sendmail"), "-C", inst.etc, "-bi"], [link, "-C", inst.etc]):
        with open(aliases, "w") as f:
            f.write("postmaster: root\nthis line is broken\n")
        if os.path.exists(db):
            os.unlink(db)
        r = run(cmd)
        # What postern map build returns for a bad line: EX_DATAERR.
        assert r.returncode == 65, f"{cmd[0]}: got exit {r.returncode} ({r.stderr!r}), want 65"
        assert f"{aliases}:2: ".encode() in r.stderr, r.stderr
        assert not os.path.exists(db), "a broken aliases file left a database"

        with open(aliases, "w") as f:
            f.write("postmaster: root\nabuse: postmaster, ops@example.test\n")
        r = run(cmd)
        assert r.returncode == 0, f"{cmd[0]}: got exit {r.returncode} ({r.stderr!r}), want 0"
        q = run([os.path.join(BIN, "postern"), "map", "query", "hash:" + aliases, "abuse"])
        assert q.returncode == 0 and b"ops@example.test" in q.stdout, (q.returncode, q.stdout, q.stderr)
    inst.cleanup()


def install_into(dest):
    """make install DESTDIR=dest PREFIX=/usr, then what a package does on the
    target for a staged tree: sendmail group posterndrop, mode 2755."""
    r = run([os.path.join(ROOT, "scripts", "install"), dest, "/usr", "/etc/postern", BIN])
    assert r.returncode == 0, r.stderr
    binary = os.path.join(dest, "usr", "sbin", "sendmail")
    os.chown(binary, 0, grp.getgrnam("posterndrop").gr_gid)
    os.chmod(binary, 0o2755)
    os.chmod(dest, 0o755)  # mkdtemp's 0700 would keep the user out
    return binary


def test_s_nail_sends_through_sendmail():
    """A real mail program: s-nail, configured to use /usr/sbin/sendmail from a
    DESTDIR install, finds the instance through MAIL_CONFIG (as an installed
    sendmail finds /etc/postern), and the message reaches a Maildir through
    pickup, qmgr and local."""
    need_root()
    snail = shutil.which("s-nail")
    assert snail, "s-nail is not installed (scripts/install-deps installs it)"
    from qmgr_test import finish
    from sendmail_e2e_test import setup
    inst = setup()
    dest = tempfile.mkdtemp(prefix="postern-dest-")
    try:
        sendmail = install_into(dest)
        writer = inst.users.add("snail")
        reader = inst.users.add("snrd")
        inst.start()
        env = {"PATH": "/usr/bin:/bin", "HOME": inst.users.home(writer), "LC_ALL": "C.UTF-8",
               "MAIL_CONFIG": inst.etc}
        cmd = as_user(writer, [snail, "-n", "-S", "mta=" + sendmail, "-s", "hello from s-nail",
                               f"{reader}@example.test"])
        r = subprocess.run(cmd, input=b"sent by a real MUA\n", capture_output=True, timeout=60, env=env)
        assert r.returncode == 0, f"got exit {r.returncode} ({r.stderr!r}), want 0"
        files = wait_for(lambda: inst.users.maildir_files(reader), 30, "delivery of the s-nail message")
        text = open(files[0], "rb").read()
        assert b"Subject: hello from s-nail" in text, text[:600]
        assert b"sent by a real MUA" in text, text
        assert f"{writer}@".encode() in text, text[:600]
        # It went through the installed binary, as the invoking user.
        inst.wait_log(r"uid=%d from=<%s@" % (pwd.getpwnam(writer).pw_uid, writer))
    finally:
        finish(inst)
        shutil.rmtree(dest)


def test_bv_reports_routes_without_sending():
    """sendmail -bv: one line per address from qmgr's routing code, master.cf
    and local's tables; nothing is queued. Runs without root too (as root it
    also runs as the unprivileged user nobody)."""
    inst = Instance(name="bv", main_cf={"myhostname": "mail.example.test",
                                        "mydestination": "$myhostname, localhost, example.test",
                                        "alias_maps": "hash:$config_directory/aliases",
                                        "transport_maps": "texthash:$config_directory/transport"},
                    master_cf="local unix - n n - - local\nvirtual unix - n n - - local\n")
    with open(os.path.join(inst.etc, "aliases"), "w") as f:
        f.write("postmaster: root\n")
    with open(os.path.join(inst.etc, "transport"), "w") as f:
        f.write("bad.example  error:5.1.2 no such domain\n")
    b = run([os.path.join(BIN, "postern"), "-c", inst.etc, "map", "build", "-a", os.path.join(inst.etc, "aliases")])
    assert b.returncode == 0, b.stderr
    sendmail = [os.path.join(BIN, "sendmail"), "-C", inst.etc, "-bv"]
    local = "deliverable via local (mail.example.test)"
    cases = [
        (["postmaster@example.test", "nobody"], 0,
         [f"postmaster@example.test: {local}: alias", f"nobody@mail.example.test: {local}: user nobody"]),
        (["Nobody+ext@Example.Test", "nosuchuser@example.test"], 67,
         [f"Nobody+ext@Example.Test: {local}: user nobody",
          'nosuchuser@example.test: undeliverable: unknown user: "nosuchuser"']),
        (["user@bad.example"], 67, ["user@bad.example: undeliverable: 5.1.2 no such domain"]),
        # No smtp service in this master.cf: remote mail would wait in the queue.
        (["user@far.example"], 75, ["user@far.example: deferred: transport smtp (far.example) is not a service "
                                    "in master.cf; the message would wait in the queue"]),
    ]
    runs = [lambda cmd: cmd]
    if os.geteuid() == 0:
        gid = str(pwd.getpwnam("nobody").pw_gid)  # its group is "nogroup" on Debian
        runs.append(lambda cmd: ["setpriv", "--reuid", "nobody", "--regid", gid, "--clear-groups", "--"] + cmd)
    for wrap in runs:
        for args, code, want in cases:
            r = run(wrap(sendmail + args))
            assert r.returncode == code, f"{args}: got exit {r.returncode} ({r.stderr!r}), want {code}"
            got = r.stdout.decode().splitlines()
            assert got == want, f"{args}: got {got}, want {want}"
        for args, code in [([], 64), (["a@@b.example"], 65)]:
            r = run(wrap(sendmail + args))
            assert r.returncode == code, f"{args}: got exit {r.returncode} ({r.stderr!r}), want {code}"
            assert r.stdout == b"" and len(r.stderr.splitlines()) == 1, (r.stdout, r.stderr)
    assert not os.path.exists(inst.queue), "-bv made a queue"
    inst.cleanup()
