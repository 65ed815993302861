"""master, lib/service and the postern control command, on a real instance
with the testd service: privileges, chroot, replacement of dead children,
throttling, reload, stop, the pid lock, and postern check/start/stop/status."""
import os
import pwd
import signal
import socket
import subprocess
import time

from harness import BIN, Client, Instance, alive, need_root, free_port, proc_status, testd_hello, wait_for


def inet(port, args="", maxproc="-"):
    return f"127.0.0.1:{port} inet n - y - {maxproc} testd {args}\n"


def test_children_run_unprivileged_in_chroot():
    need_root()
    port = free_port()
    inst = Instance(master_cf=inet(port)).start()
    c, hello = testd_hello(port)
    pid = int(hello["pid"])
    want = pwd.getpwnam("postern")
    st = proc_status(pid)
    uids = st["Uid"].split()
    gids = st["Gid"].split()
    assert uids == [str(want.pw_uid)] * 4, f"got Uid {uids}, want all {want.pw_uid}"
    assert gids == [str(want.pw_gid)] * 4, f"got Gid {gids}, want all {want.pw_gid}"
    assert st["Groups"].split() == [str(want.pw_gid)], f"got Groups {st['Groups']!r}, want only {want.pw_gid}"
    root = os.readlink(f"/proc/{pid}/root")
    assert root == os.path.realpath(inst.queue), f"got root {root}, want {inst.queue}"
    c.send("hello")
    assert c.line() == "echo hello"
    c.close()


def test_unjailed_service_keeps_root_and_real_root():
    need_root()
    port = free_port()
    inst = Instance(master_cf=f"127.0.0.1:{port} inet n n n - - testd\n").start()
    c, hello = testd_hello(port)
    assert hello["uid"] == "0", f"got uid {hello['uid']}, want 0 (unpriv=n)"
    assert os.readlink(f"/proc/{hello['pid']}/root") == "/"
    c.close()


def test_killed_child_is_replaced():
    need_root()
    port = free_port()
    inst = Instance(master_cf=inet(port)).start()
    c, hello = testd_hello(port)
    first = int(hello["pid"])
    os.kill(first, signal.SIGKILL)
    inst.wait_log(rf"pid {first} killed by signal 9")
    c2, hello2 = testd_hello(port)
    second = int(hello2["pid"])
    assert second != first and alive(second), f"got pid {second}, want a new live child"
    assert "throttling" not in inst.log(), "a child that served a client must not throttle its service"
    c2.send("x")
    assert c2.line() == "echo x"


def test_crash_looping_service_is_throttled_and_logged_once():
    need_root()
    port, good = free_port(), free_port()
    inst = Instance(master_cf=inet(port, "crash") + inet(good)).start()
    for _ in range(3):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.settimeout(1)
            try:
                s.recv(10)
            except OSError:
                pass
            s.close()
        except OSError:
            pass
    inst.wait_log(r"killed by signal 6")
    inst.wait_log(rf"bad command startup -- throttling service 127.0.0.1:{port} for 60s")
    time.sleep(1)
    log = inst.log()
    assert log.count("throttling service") == 1, f"got {log.count('throttling service')} throttle lines, want 1:\n{log}"
    crashed = log.count("killed by signal 6")
    assert crashed == 1, f"got {crashed} crashes, want 1 (no restarts while throttled)"
    # Other services are not affected.
    c, hello = testd_hello(good)
    assert alive(int(hello["pid"]))


def test_throttle_ends_after_service_throttle_time():
    need_root()
    port = free_port()
    inst = Instance(main_cf={"service_throttle_time": "1s"}, master_cf=inet(port, "fail")).start()
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    inst.wait_log(r"exit status 70")
    inst.wait_log(r"throttle period over", timeout=5)
    # The pending connection makes master try again after the pause.
    inst.wait_log(r"exit status 70", count=2, timeout=5)
    s.close()


def test_sighup_picks_up_master_cf_change():
    need_root()
    p1, p2 = free_port(), free_port()
    inst = Instance(master_cf=inet(p1)).start()
    c1, h1 = testd_hello(p1)  # a session in progress survives the reload
    try:
        socket.create_connection(("127.0.0.1", p2), timeout=1).close()
        raise AssertionError(f"port {p2} should not be listening yet")
    except ConnectionRefusedError:
        pass
    inst.write_master_cf(inet(p2))
    inst.signal(signal.SIGHUP)
    inst.wait_log(r"reload -- version")
    c2, h2 = testd_hello(p2)
    assert h2["service"] == f"127.0.0.1:{p2}"
    wait_for(lambda: _refused(p1), what=f"removed service on port {p1} to close")
    c1.send("still here")
    assert c1.line() == "echo still here", "the session in progress must finish normally"
    c1.send("quit")
    wait_for(lambda: not alive(int(h1["pid"])), what="old-generation child to exit after its session")


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def test_sighup_with_broken_config_keeps_running():
    need_root()
    port = free_port()
    inst = Instance(master_cf=inet(port)).start()
    inst.write_master_cf(inet(port) + "broken line\n")
    inst.signal(signal.SIGHUP)
    inst.wait_log(r"reload failed, keeping the running configuration: .*master.cf:2:")
    c, hello = testd_hello(port)
    c.close()


def test_sigterm_leaves_no_process_behind():
    need_root()
    p1, p2 = free_port(), free_port()
    inst = Instance(master_cf=inet(p1) + inet(p2, "single") +
                    "trig unix - - y 1 1 testd trigger\n").start()
    clients = [testd_hello(p1)[0], testd_hello(p1)[0], testd_hello(p2)[0]]
    inst.wait_log(r"trigger: W")
    assert len(inst.our_processes()) >= 3
    inst.signal(signal.SIGTERM)
    rc = inst.master.wait(timeout=15)
    assert rc == 0, f"got master exit {rc}, want 0"
    wait_for(lambda: not inst.our_processes(), timeout=5, what="every child to be gone")
    inst.wait_log(r"terminating on signal 15")
    for c in clients:
        c.close()


def test_second_master_is_refused():
    need_root()
    port = free_port()
    inst = Instance(master_cf=inet(port)).start()
    second = subprocess.run([os.path.join(BIN, "master"), "-f", "-c", inst.etc], capture_output=True, text=True,
                            timeout=20)
    assert second.returncode == 75, f"got exit {second.returncode}, want 75 (EX_TEMPFAIL)"
    assert "already running" in second.stderr and str(inst.master_pid) in second.stderr, second.stderr
    assert inst.master.poll() is None, "the first master must keep running"


def test_postern_check_reports_file_and_line():
    need_root()
    inst = Instance(master_cf=inet(free_port()))
    inst.write_main_cf("this line is broken\nmax_use = lots\n")
    r = inst.postern("check")
    assert r.returncode == 78, f"got exit {r.returncode}, want 78 (EX_CONFIG)"
    main_cf = os.path.join(inst.etc, "main.cf")
    n = len(inst.main) + 2  # header comment + settings, then the broken line
    assert f"{main_cf}:{n}: missing '='" in r.stderr, r.stderr
    assert f"{main_cf}:{n + 1}: invalid value for max_use" in r.stderr, r.stderr


def test_postern_check_reports_master_cf_and_modes():
    need_root()
    inst = Instance(master_cf="smtp inet n - y - - no-such-program\nfoo bar\n")
    os.chmod(os.path.join(inst.etc, "main.cf"), 0o666)
    r = inst.postern("check")
    assert r.returncode == 78
    assert "master.cf:2: expected 8 or more fields" in r.stderr, r.stderr
    assert "main.cf: mode 0666" in r.stderr, r.stderr


def test_postern_check_reports_bad_override_and_choice():
    need_root()
    inst = Instance(master_cf="25 inet n - y - - smtpd -o smtpd_tls_security_level=sometimes\n")
    r = inst.postern("check")
    assert r.returncode == 78
    assert "master.cf:1: -o smtpd_tls_security_level: invalid value for smtpd_tls_security_level" in r.stderr, r.stderr
    assert "expected one of: none may encrypt" in r.stderr, r.stderr
    inst.write_main_cf("inet_protocols = ipv5\n")
    r = inst.postern("check")
    assert r.returncode == 78 and "invalid value for inet_protocols" in r.stderr, r.stderr


def test_postern_check_accepts_a_good_instance():
    need_root()
    inst = Instance(master_cf=inet(free_port()))
    r = inst.postern("check")
    assert r.returncode == 0, f"got exit {r.returncode}: {r.stderr}"


def test_postern_start_status_reload_stop():
    need_root()
    port = free_port()
    inst = Instance(master_cf=inet(port))
    r = inst.postern("status")
    assert r.returncode == 69 and "not running" in r.stderr, (r.returncode, r.stderr)
    r = inst.postern("start")
    assert r.returncode == 0, f"start: got {r.returncode}: {r.stderr}"
    r = inst.postern("status")
    assert r.returncode == 0 and "is running: PID:" in r.stderr, (r.returncode, r.stderr)
    pid = int(r.stderr.rsplit(":", 1)[1])
    assert "master" in open(f"/proc/{pid}/cmdline").read()
    try:
        r = inst.postern("start")
        assert r.returncode == 75 and "already running" in r.stderr, (r.returncode, r.stderr)
        c, hello = testd_hello(port)
        c.close()
        r = inst.postern("reload")
        assert r.returncode == 0, r.stderr
        inst.wait_log(r"reload -- version")
        r = inst.postern("stop")
        assert r.returncode == 0, r.stderr
        assert not alive(pid)
        r = inst.postern("status")
        assert r.returncode == 69
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_max_idle_and_max_use():
    need_root()
    p1, p2 = free_port(), free_port()
    inst = Instance(main_cf={"max_idle": "1s"},
                    master_cf=inet(p1) + f"127.0.0.1:{p2} inet n - y - - testd -o max_use=1 -o max_idle=100s "
                                         f"-o service_client_limit=1\n").start()
    c, h = testd_hello(p1)
    c.send("quit")
    wait_for(lambda: not alive(int(h["pid"])), timeout=5, what="idle child to exit after max_idle")
    c1, a = testd_hello(p2)
    c1.send("quit")
    c2, b = testd_hello(p2)
    assert a["pid"] != b["pid"], "max_use=1: the second session needs a new process"
    wait_for(lambda: not alive(int(a["pid"])), timeout=5, what="used-up child to exit")


def test_max_use_counts_per_client_slot():
    need_root()
    port = free_port()
    # A process with 2 client slots and max_use=2 serves 4 sessions, then a
    # new process takes over.
    inst = Instance(master_cf=f"127.0.0.1:{port} inet n - y - - testd -o max_use=2 -o max_idle=100s "
                              f"-o service_client_limit=2\n").start()
    pids = []
    for _ in range(5):
        c, h = testd_hello(port)
        pids.append(h["pid"])
        c.send("quit")
        c.close()
    assert len(set(pids[:4])) == 1, f"four sessions in one process, got {pids}"
    assert pids[4] != pids[0], f"the fifth session needs a new process, got {pids}"
    wait_for(lambda: not alive(int(pids[0])), timeout=5, what="used-up child to exit")


def test_single_skeleton_spawns_up_to_maxproc():
    need_root()
    port = free_port()
    inst = Instance(master_cf=inet(port, "single", maxproc="2")).start()
    c1, a = testd_hello(port)
    c2, b = testd_hello(port)
    assert a["pid"] != b["pid"], "single-session processes: two clients need two processes"
    c3 = socket.create_connection(("127.0.0.1", port), timeout=5)
    c3.settimeout(1)
    try:
        data = c3.recv(100)
        raise AssertionError(f"maxproc=2: a third client must wait, got {data!r}")
    except socket.timeout:
        pass
    c1.send("quit")
    c3.settimeout(5)
    assert c3.recv(100).startswith(b"testd "), "the waiting client is served when a process frees up"


def test_wakeup_triggers_unix_service():
    need_root()
    inst = Instance(master_cf="trig unix - - y 1 1 testd trigger\n").start()
    inst.wait_log(r"postern/testd\[\d+\]: trigger: W", count=2, timeout=6)
    sock = os.path.join(inst.queue, "private", "trig")
    st = os.stat(sock)
    assert oct(os.stat(os.path.dirname(sock)).st_mode & 0o777) == "0o700"
    assert st.st_mode & 0o777 == 0o666
