"""postern map build/query, make install/uninstall into a DESTDIR, the
service scripts, master listening on several addresses (IPv4 and IPv6), and
make run delivering mail for root into run/mail/root.mbox."""
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

from harness import BIN, ROOT, Instance, Skip, free_port, need_root, testd_hello


def postern(*args):
    return subprocess.run([os.path.join(BIN, "postern"), *args], capture_output=True, text=True, timeout=60)


def test_map_build_and_query():
    d = tempfile.mkdtemp(prefix="postern-map-")
    try:
        src = os.path.join(d, "virtual")
        with open(src, "w") as f:
            f.write("# comment\nAlice@Example.COM  alice\n  continued\nbob@example.com bob\n")
        r = postern("map", "build", src)
        assert r.returncode == 0, r.stderr
        assert os.path.exists(src + ".db")
        r = postern("map", "query", "hash:" + src, "alice@example.com")
        assert r.returncode == 0 and r.stdout == "alice continued\n", (r.returncode, r.stdout, r.stderr)
        r = postern("map", "query", "hash:" + src, "nobody@example.com")
        assert r.returncode == 1 and r.stdout == ""
        r = postern("map", "query", "texthash:" + src, "BOB@example.com")
        assert r.stdout == "bob\n"
        aliases = os.path.join(d, "aliases")
        with open(aliases, "w") as f:
            f.write("postmaster: root\nroot: alice,\n  bob\n")
        assert postern("map", "build", "-a", aliases).returncode == 0
        r = postern("map", "query", "hash:" + aliases, "root")
        assert r.stdout.replace(" ", "") == "alice,bob\n", r.stdout
        bad = os.path.join(d, "bad")
        with open(bad, "w") as f:
            f.write("ok value\nlonely\n")
        r = postern("map", "build", bad)
        assert r.returncode == 65, f"got exit {r.returncode}, want 65 (EX_DATAERR)"
        assert f"{bad}:2:" in r.stderr, r.stderr
        assert not os.path.exists(bad + ".db")
        r = postern("map", "frobnicate")
        assert r.returncode == 64
    finally:
        shutil.rmtree(d)


def test_unknown_command_is_usage_error():
    r = postern("frobnicate")
    assert r.returncode == 64 and "unknown command" in r.stderr
    r = subprocess.run([os.path.join(BIN, "master"), "-x"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 64 or (os.geteuid() != 0 and r.returncode == 77)


def test_daemon_refuses_to_run_by_hand():
    r = subprocess.run([os.path.join(BIN, "testd"), "-c", "/nonexistent"], capture_output=True, text=True,
                       timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 64, f"got exit {r.returncode}: {r.stderr}"
    assert "started by master" in r.stderr


def test_make_install_into_destdir_keeps_edited_config():
    dest = tempfile.mkdtemp(prefix="postern-dest-")
    try:
        def install(*extra):
            return subprocess.run([os.path.join(ROOT, "scripts", "install"), *extra], capture_output=True,
                                  text=True, timeout=120, cwd=ROOT)
        r = install(dest, "/usr/local", "/etc/postern", BIN)
        assert r.returncode == 0, r.stderr
        for path in ["usr/local/sbin/postern", "usr/local/libexec/postern/master",
                     "usr/local/libexec/postern/smtpd", "usr/local/libexec/postern/qmgr",
                     "usr/local/libexec/postern/local", "etc/postern/main.cf", "etc/postern/master.cf",
                     "etc/postern/aliases", "etc/init.d/postern", "lib/systemd/system/postern.service",
                     "etc/pam.d/postern", "usr/local/share/man/man8/master.8",
                     "usr/local/share/man/man8/qmgr.8", "usr/local/share/man/man8/local.8", "var/spool/postern"]:
            assert os.path.exists(os.path.join(dest, path)), f"missing {path}"
        # aliases.db belongs to the target: a staged install says how to build
        # it there. That command, run on the staged tree, gives a working table.
        aliases = os.path.join(dest, "etc/postern/aliases")
        assert not os.path.exists(aliases + ".db")
        assert "postern -c /etc/postern map build -a /etc/postern/aliases" in r.stdout, r.stdout
        b = postern("-c", os.path.join(dest, "etc/postern"), "map", "build", "-a", aliases)
        assert b.returncode == 0, b.stderr
        assert os.path.exists(aliases + ".db"), "missing etc/postern/aliases.db"
        for key, want in [("postmaster", "root"), ("abuse", "postmaster"), ("mailer-daemon", "postmaster")]:
            q = postern("map", "query", "hash:" + aliases, key)
            assert q.returncode == 0 and q.stdout.strip() == want, f"{key}: got {q.stdout!r}, want {want!r}"
        assert postern("map", "query", "hash:" + aliases, "root").returncode == 1, "root: is shipped commented out"
        main_cf = os.path.join(dest, "etc/postern/main.cf")
        text = open(main_cf).read()
        assert "daemon_directory = /usr/local/libexec/postern" in text
        assert "/usr/local/sbin/postern" in open(os.path.join(dest, "etc/init.d/postern")).read()
        assert os.access(os.path.join(dest, "etc/init.d/postern"), os.X_OK)
        # The administrator edits main.cf and aliases; a second install keeps the edits.
        with open(main_cf, "a") as f:
            f.write("myhostname = mail.example.com\n")
        with open(aliases, "a") as f:
            f.write("root: alice\n")
        r = install(dest, "/usr/local", "/etc/postern", BIN)
        assert r.returncode == 0, r.stderr
        assert "myhostname = mail.example.com" in open(main_cf).read()
        assert os.path.exists(main_cf + ".postern-new")
        assert "root: alice" in open(aliases).read()
        assert os.path.exists(aliases + ".postern-new")
        assert os.path.exists(aliases + ".db"), "a reinstall leaves the built table alone"
        # An unedited file is simply updated.
        assert not os.path.exists(os.path.join(dest, "etc/postern/master.cf.postern-new"))
        r = install("--uninstall", dest, "/usr/local", "/etc/postern")
        assert r.returncode == 0, r.stderr
        assert not os.path.exists(os.path.join(dest, "usr/local/sbin/postern"))
        assert not os.path.exists(os.path.join(dest, "usr/local/libexec/postern/master"))
        assert os.path.exists(main_cf), "uninstall keeps the configuration"
    finally:
        shutil.rmtree(dest)


def test_service_scripts_are_well_formed():
    init = os.path.join(ROOT, "etc", "init.d", "postern")
    r = subprocess.run(["sh", "-n", init], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = open(init).read()
    for action in ["start", "stop", "restart", "reload", "force-reload", "status"]:
        assert f"{action})" in text or f"|{action})" in text or f"{action}|" in text, f"init script lacks {action}"
    assert "### BEGIN INIT INFO" in text
    unit = open(os.path.join(ROOT, "etc", "postern.service")).read()
    assert "ExecStart=/usr/libexec/postern/master -f" in unit
    pam = open(os.path.join(ROOT, "etc", "pam.d", "postern")).read()
    assert "@include common-auth" in pam


def _v6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_master_listens_on_several_addresses_v4_and_v6():
    need_root()
    if not _v6_loopback():
        raise Skip("no IPv6 loopback here")
    port = free_port()
    inst = Instance(main_cf={"inet_interfaces": "127.0.0.1, ::1"},
                    master_cf=f"{port} inet n - y - - testd\n").start()
    c4, h4 = testd_hello(port)
    c6 = socket.create_connection(("::1", port), timeout=5)
    assert c6.recv(100).startswith(b"testd ")
    c4.close()
    c6.close()


def test_every_parameter_is_documented():
    """doc/postern.conf.5 mirrors lib/config/params.cpp."""
    import re
    table = open(os.path.join(ROOT, "lib", "config", "params.cpp")).read()
    names = re.findall(r'^\s+[SITBE]\("([a-z0-9_]+)"', table, re.M)
    assert len(names) > 40, names
    man = open(os.path.join(ROOT, "doc", "postern.conf.5")).read()
    missing = [n for n in names if f".B {n}\n" not in man]
    assert not missing, f"parameters missing from doc/postern.conf.5: {missing}"


def test_init_script_drives_an_instance():
    need_root()
    from harness import Instance, free_port, alive
    port = free_port()
    inst = Instance(master_cf=f"{port} inet n - y - - testd\n")
    defaults = os.path.join(inst.dir, "default")
    with open(defaults, "w") as f:
        f.write(f"POSTERN={BIN}/postern\nMAIL_CONFIG={inst.etc}\n")
    env = dict(os.environ, POSTERN_DEFAULTS=defaults)
    init = os.path.join(ROOT, "etc", "init.d", "postern")

    def run(action):
        return subprocess.run(["sh", init, action], capture_output=True, text=True, env=env, timeout=60)

    assert run("status").returncode == 3, "LSB: 3 = not running"
    r = run("start")
    assert r.returncode == 0, r.stdout + r.stderr
    assert run("status").returncode == 0
    assert run("start").returncode == 0, "starting a running service is not an error"
    assert run("reload").returncode == 0
    inst.wait_log(r"reload -- version")
    assert run("restart").returncode == 0
    assert run("force-reload").returncode == 0
    main_cf = os.path.join(inst.etc, "main.cf")
    good = open(main_cf).read()
    with open(main_cf, "a") as f:
        f.write("max_use = many\n")
    r = run("restart")
    assert r.returncode == 6 and "max_use" in r.stderr, "a broken config is refused before stopping"
    assert run("status").returncode == 4, "LSB: 4 = unknown while main.cf cannot be read"
    with open(main_cf, "w") as f:
        f.write(good)
    assert run("status").returncode == 0, "the refused restart left the system running"
    assert run("stop").returncode == 0
    assert run("status").returncode == 3
    assert run("stop").returncode == 0, "stopping a stopped service is not an error"
    assert run("frobnicate").returncode == 2


def _port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_make_run_delivers_to_root_mbox():
    """scripts/make-run on a copy of etc/ and scripts/ (so its run/ is a temp
    directory, not the developer's): mail to root@localhost lands in
    run/mail/root.mbox, and SIGTERM to master stops everything."""
    need_root()
    from harness import alive, cmdline, wait_for
    # make-run's ports are fixed (2525, 2587, 2465): a running `make run` owns them.
    for port in (2525, 2587, 2465):
        if not _port_free(port):
            raise Skip(f"port {port} is in use (a make run?)")
    top = tempfile.mkdtemp(prefix="postern-make-run-")
    os.chmod(top, 0o755)  # run/mail is written as nobody
    proc = master = None
    try:
        for d in ("scripts", "etc"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(top, d), symlinks=True)
        run = os.path.join(top, "run")
        out_path = os.path.join(top, "make-run.out")
        with open(out_path, "wb") as out:
            proc = subprocess.Popen([os.path.join(top, "scripts", "make-run"), BIN], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        def started():  # the start-up text ends with the "Control:" line
            return "\nControl: " in open(out_path, errors="replace").read() or proc.poll() is not None
        wait_for(started, 60, "make-run to start master")
        text = open(out_path, errors="replace").read()
        m = re.search(r"master pid (\d+)", text)
        if m:
            master = int(m.group(1))
        assert proc.poll() is None and m, f"make-run exited with {proc.returncode}:\n{text}"
        assert "Mail to root@localhost lands in run/mail/root.mbox" in text, text
        mbox = os.path.join(run, "mail", "root.mbox")
        st = os.stat(mbox)
        assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam("nobody").pw_uid, 0o600), st
        assert os.path.exists(os.path.join(run, "etc", "aliases.db"))
        wait_for(lambda: not _port_free(2525), 10, "smtpd on 2525")
        subject = f"make run test {time.time()}"
        with smtplib.SMTP("127.0.0.1", 2525, timeout=30) as s:
            s.sendmail("tester@example.org", ["root@localhost"],
                       f"From: tester@example.org\r\nTo: root@localhost\r\nSubject: {subject}\r\n\r\nhello\r\n")
        wait_for(lambda: subject in open(mbox, errors="replace").read(), 30, "delivery into run/mail/root.mbox")
        body = open(mbox, errors="replace").read()
        assert body.startswith("From tester@example.org "), body[:200]
        assert "Delivered-To: root@localhost" in body
        log = open(os.path.join(run, "log", "maillog"), errors="replace").read()
        assert re.search(r"status=sent \(delivered to file: .*/run/mail/root\.mbox\)", log), log
        os.kill(master, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "make run: master stopped" in open(out_path, errors="replace").read()
        wait_for(lambda: not alive(master), 10, "master to exit")
    finally:
        # Only what this test started: master by its pid, then make-run's own
        # process group (make-run and its tail), by its id.
        if master and alive(master) and "master" in cmdline(master):
            os.kill(master, signal.SIGKILL)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        shutil.rmtree(top, ignore_errors=True)
