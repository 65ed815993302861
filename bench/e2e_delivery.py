#!/usr/bin/python3
"""End-to-end delivery benchmark: Postern versus Debian's Postfix, side by side.

Measures the time from smtp-source's first connection until the last of N
messages is a file in the recipient's ~/Maildir/. Both servers run complete
(smtpd, queue manager, local delivery) on loopback ports from temporary
directories, each delivering to its own throw-away system user. For every
(sessions, size) pair each server gets RUNS runs of MESSAGES messages,
alternating which server goes first; the script prints the median delivery
rate of each, the CPU time of each server's whole process tree per message,
the peak PSS of that tree, and the ratios. Results also go to
bench/results/<timestamp>-e2e.json. See bench/README.md.

Run as root:  /usr/bin/python3 bench/e2e_delivery.py [--quick] [--sessions 10] [--sizes 1k]
Only processes this script started are ever signalled, and only by pid; the
users it creates are removed at the end, also on Ctrl-C or an error."""
import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time

from common import (BIN, RESULTS, make_workdir, remove_workdir, MailUser, Postern, Postfix, PssSampler, ensure_postfix, fmt, log, median,
                    parse_params, parse_size, size_label, wait_drained)

SENDER = "a@localhost"
WRITTEN_BY = "bench/e2e_delivery.py"

# Postern: the three services of a delivering instance (DESIGN.md).
POSTERN_SERVICES = """\
qmgr unix - - y 300 1 qmgr
local unix - n n - - local
"""

# Target (README.md): at 10 sessions, Postern delivers >= 2.5x Postfix's rate
# with <= half its CPU per message.
TARGET_SESSIONS = 10
TARGET_RATE_RATIO = 2.5
TARGET_CPU_RATIO = 0.5

POLL = 0.05  # seconds between Maildir counts


def make_server(name, workdir, args):
    if name == "postern":
        main = {"myhostname": "localhost", "alias_maps": ""}
        main.update(args.postern_params)
        return Postern(workdir, main, services=POSTERN_SERVICES, written_by=WRITTEN_BY)
    extra = {"home_mailbox": "Maildir/"}
    extra.update(args.postfix_params)
    return Postfix(workdir, mode="deliver", extra=extra, written_by=WRITTEN_BY)


def prepare(server, user, drain_timeout):
    """Before a run: nothing queued, an empty Maildir, data on disk."""
    left = wait_drained(server, drain_timeout)
    if left:
        log(f"  {server.name}: {left} files still queued from before; removing them")
        server.clean_queue()
        time.sleep(0.5)
    user.empty()
    os.sync()
    time.sleep(0.2)


def measure(server, user, client, sampler, messages, t0, errors, args):
    """Polls the Maildir until MESSAGES are there (or the run fails), then
    collects the end readings. Appends failures to errors."""
    done = accepted = None
    last_n, last_progress = 0, t0
    while True:
        n = user.count()
        now = time.monotonic()
        ended = now
        if n >= messages:
            done = now
            break
        if n > last_n:
            last_n, last_progress = n, now
        if accepted is None and client.poll() is not None:
            accepted = now
            if client.returncode != 0:
                errors.append(f"smtp-source exited {client.returncode}")
        if now - t0 > args.timeout:
            errors.append(f"timed out after {args.timeout}s with {n} of {messages} delivered")
            break
        if now - last_progress > (10 if errors else args.stall):
            errors.append(f"no delivery for {now - last_progress:.0f}s, {n} of {messages} delivered")
            break
        time.sleep(POLL)
    # smtp-source has at most its QUIT left once everything is delivered.
    try:
        client.wait(timeout=30)
    except subprocess.TimeoutExpired:
        client.kill()
        client.wait()
        errors.append("smtp-source still running 30s after the end; killed")
    if accepted is None:
        accepted = time.monotonic()
        if client.returncode != 0 and not any(e.startswith("smtp-source") for e in errors):
            errors.append(f"smtp-source exited {client.returncode}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The last file in the Maildir ends the clock; the CPU account also
    # takes the little work after it (the queue file's removal, logging),
    # so it waits for the queue to drain first.
    queue_left = wait_drained(server, args.drain)
    cpu1, nproc = server.cpu()
    sampler.stop()
    return done, ended, accepted, queue_left, cpu1, nproc, ru1


def one_run(server, user, sessions, size, messages, args):
    prepare(server, user, args.drain)
    cmd = ["smtp-source", "-c", "-l", str(size), "-m", str(messages), "-s", str(sessions),
           "-f", SENDER, "-t", f"{user.name}@localhost", f"127.0.0.1:{server.port}"]
    client_out = os.path.join(server.dir, "smtp-source.out")
    res = {"messages": messages}
    errors = []
    with open(client_out, "w+b") as out:
        cpu0, _ = server.cpu()
        sampler = PssSampler(server.root_pid(), args.pss_interval).start()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        client = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            done, ended, accepted, queue_left, cpu1, nproc, ru1 = measure(server, user, client, sampler,
                                                                          messages, t0, errors, args)
        except BaseException:
            # Interrupted: our client must not outlive us.
            if client.poll() is None:
                client.kill()
                client.wait()
            sampler.stop()
            raise
        out.seek(0)
        client_text = out.read().decode(errors="replace")

    delivered = user.count()
    wall = ended - t0
    res.update({
        "wall_s": round(wall, 4),
        "rate": round(messages / wall, 2) if done else None,
        "accepted_s": round(accepted - t0, 4),
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cpu_ms_per_msg": round((cpu1 - cpu0) * 1000 / messages, 4),
        "client_cpu_s": round((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 3),
        "peak_pss_kib": sampler.peak_kib,
        "peak_pss_processes": sampler.peak_processes,
        "pss_samples": sampler.samples,
        "pss_sampler_cpu_s": round(sampler.cpu_s, 3),
        "server_processes_after": nproc,
        "delivered": delivered,
        "queue_left": queue_left,
    })
    if done and delivered > messages:
        errors.append(f"{delivered} messages in the Maildir after sending {messages} (duplicates)")
    if done:
        files = user.files()
        if files:
            smallest = min(os.stat(p).st_size for p in files[:50])
            res["smallest_file_bytes"] = smallest
            # smtp-source counts CR LF in SIZE; a Maildir file stores LF
            # (1 byte in 80 less) plus the added headers.
            if smallest < size * 0.95:
                errors.append(f"a delivered file has {smallest} bytes for {size} sent")
    if queue_left:
        # Delivered but not cleaned up: worth knowing, not a failed delivery.
        res["warning"] = f"{queue_left} files still queued {args.drain}s after the end"
    if client.returncode != 0:
        res["client_output"] = client_text.replace("\r", "\n").strip()[-500:]
    res["ok"] = done is not None and not errors
    if errors:
        res["error"] = "; ".join(errors)
    return res


def summarize(rs):
    good = [r for r in rs if r["ok"]]
    peaks = [r["peak_pss_kib"] for r in good]
    return {
        "rate_median": median([r["rate"] for r in good]),
        "cpu_ms_per_msg_median": median([r["server_cpu_ms_per_msg"] for r in good]),
        "peak_pss_kib_max": max(peaks) if peaks else None,
        "peak_pss_kib_median": median(peaks),
        "accepted_s_median": median([r["accepted_s"] for r in good]),
        "failed_runs": len(rs) - len(good),
        "runs": rs,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 messages, 1 run (a smoke test, not a measurement)")
    ap.add_argument("--messages", type=int, help="messages per run (default 2000)")
    ap.add_argument("--runs", type=int, help="runs per configuration (default 3; the median is reported)")
    ap.add_argument("--sessions", default="1,10,50", help="comma-separated concurrent session counts")
    ap.add_argument("--sizes", default="1k,100k", help="comma-separated message sizes (bytes, or with k / m)")
    ap.add_argument("--servers", default="postern,postfix", help="which servers to measure")
    ap.add_argument("--postern-param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra main.cf setting for Postern (repeatable)")
    ap.add_argument("--postfix-param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra main.cf setting for Postfix (repeatable), e.g. "
                         "local_destination_concurrency_limit=20")
    ap.add_argument("--warmup", type=int, default=200,
                    help="messages delivered by each server before measuring (default 200; 0 = none)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds one run may take before it fails")
    ap.add_argument("--stall", type=int, default=60,
                    help="a run fails when no message is delivered for this many seconds")
    ap.add_argument("--drain", type=int, default=30,
                    help="seconds to wait for a queue to empty after a run and before the next")
    ap.add_argument("--pss-interval", type=float, default=0.1, help="seconds between PSS samples")
    ap.add_argument("--out", help="JSON file (default bench/results/<timestamp>-e2e.json)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directories, Maildirs included (servers are stopped and "
                         "users removed all the same)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("e2e_delivery.py: must be run as root (both servers bind, chroot and deliver as the user)")
    messages = args.messages or (200 if args.quick else 2000)
    runs = args.runs or (1 if args.quick else 3)
    sessions_list = [int(s) for s in args.sessions.split(",") if s.strip()]
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    for n in names:
        if n not in ("postern", "postfix"):
            sys.exit(f"unknown server {n}")
    if "postern" in names:
        missing = [p for p in ("master", "smtpd", "qmgr", "local") if not os.path.exists(os.path.join(BIN, p))]
        if missing:
            sys.exit(f"{', '.join(missing)} not found in {BIN}: run make -j2 all first "
                     "(or --servers postfix)")
    if args.pss_interval <= 0:
        sys.exit("--pss-interval must be > 0")
    args.postern_params = parse_params(args.postern_param, "--postern-param")
    args.postfix_params = parse_params(args.postfix_param, "--postfix-param")

    ensure_postfix()

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    workdir = make_workdir("postern-bench-e2e-")
    os.chmod(workdir, 0o755)
    homes = os.path.join(workdir, "home")
    os.mkdir(homes, 0o755)
    servers, users = [], {}
    versions = {}
    started = datetime.datetime.now()
    rows = []
    turn = 0
    try:
        # Users first: Postern's smtpd reads the user list when it starts.
        for n in names:
            users[n] = MailUser("pbe2e" + {"postern": "pn", "postfix": "pf"}[n], homes)
            log(f"created user {users[n].name} (uid {users[n].uid}, home {users[n].home}) for {n}")
        for n in names:
            s = make_server(n, workdir, args)
            servers.append(s)
            s.start()
            versions[s.name] = s.version()
            log(f"{s.name} listening on 127.0.0.1:{s.port} ({s.dir}), version {versions[s.name]}")
        if args.warmup:
            for s in servers:
                r = one_run(s, users[s.name], 10, 1024, args.warmup, args)
                if not r["ok"]:
                    raise RuntimeError(f"warm-up against {s.name} failed: {r.get('error')}\n"
                                       f"last lines of its log:\n{s.tail_log()}")
                log(f"  {s.name} warm-up: {r['rate']:.1f} msg/s")
        for size in sizes:
            for sessions in sessions_list:
                raw = {s.name: [] for s in servers}
                for i in range(runs):
                    # Alternate which server goes first (counting across the
                    # whole matrix, so single runs alternate too), so slow
                    # drift in the machine's load hits both alike.
                    order = servers if turn % 2 == 0 else list(reversed(servers))
                    turn += 1
                    for s in order:
                        r = one_run(s, users[s.name], sessions, size, messages, args)
                        raw[s.name].append(r)
                        log(f"  {s.name:7} sessions={sessions:<3} size={size_label(size):7} run {i + 1}/{runs}: "
                            f"{fmt(r['rate'], '8.1f')} msg/s (accepted in {r['accepted_s']:.1f}s, "
                            + (f"delivered in {r['wall_s']:.1f}s), " if r["rate"] else
                               f"{r['delivered']} delivered, gave up after {r['wall_s']:.1f}s), ")
                            + f"{r['server_cpu_ms_per_msg']:.3f} CPU ms/msg, "
                            f"peak PSS {r['peak_pss_kib'] / 1024:.1f} MiB"
                            + ("" if r["ok"] else f"  FAILED: {r.get('error')}")
                            + (f"  ({r['warning']})" if r.get("warning") else ""))
                row = {"sessions": sessions, "size": size, "messages": messages, "runs": runs}
                for n, rs in raw.items():
                    row[n] = summarize(rs)
                if "postern" in row and "postfix" in row:
                    a, b = row["postern"], row["postfix"]
                    if a["rate_median"] and b["rate_median"]:
                        row["ratio"] = round(a["rate_median"] / b["rate_median"], 3)
                    if a["cpu_ms_per_msg_median"] and b["cpu_ms_per_msg_median"]:
                        row["cpu_ratio"] = round(a["cpu_ms_per_msg_median"] / b["cpu_ms_per_msg_median"], 3)
                rows.append(row)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'SIGINT'}); stopping the servers")
    except Exception as e:
        log(f"error: {e}")
        if not rows:
            raise
    finally:
        # A second Ctrl-C must not leave users or processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {s.name}: {e}")
        for u in users.values():
            try:
                u.remove(keep_home=args.keep)
            except Exception as e:
                log(f"removing user {u.name}: {e}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            remove_workdir(workdir)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if not rows:
        sys.exit(1)
    print_table(rows, names)
    result = {
        "benchmark": "e2e_delivery",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_at_end": os.getloadavg()},
        "versions": versions,
        "settings": {"messages": messages, "runs": runs, "sessions": sessions_list, "sizes": sizes,
                     "sender": SENDER, "recipient": "a throw-away user per server, USER@localhost",
                     "warmup": args.warmup, "quick": args.quick, "timeout_s": args.timeout,
                     "stall_s": args.stall, "drain_s": args.drain, "pss_interval_s": args.pss_interval,
                     "postern_params": args.postern_params, "postfix_params": args.postfix_params,
                     "postern_master_cf": POSTERN_SERVICES,
                     "client": "smtp-source -c -l SIZE -m MESSAGES -s SESSIONS (one connection per message)",
                     "end": "the MESSAGES-th file in Maildir/new + Maildir/cur, polled every 50 ms"},
        "rows": rows,
    }
    out = args.out or os.path.join(RESULTS, started.strftime("%Y-%m-%d-%H%M%S") + "-e2e" + (
        "-quick" if args.quick else "") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"\nwrote {out}")
    failed = sum(row[n]["failed_runs"] for row in rows for n in names if n in row)
    return 1 if failed or len(rows) < len(sizes) * len(sessions_list) else 0


def print_table(rows, names):
    hdr = f"{'sessions':>8} {'size':>7}"
    for n in names:
        hdr += f" {n + ' msg/s':>14} {n + ' CPU ms/msg':>19} {n + ' PSS MiB':>16}"
    both = len(names) == 2
    if both:
        hdr += f" {'ratio':>7} {'CPU ratio':>9}"
    print()
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        line = f"{row['sessions']:>8} {size_label(row['size']):>7}"
        for n in names:
            d = row.get(n)
            if d is None:
                line += f" {'-':>14} {'-':>19} {'-':>16}"
                continue
            mark = "*" if d["failed_runs"] else " "
            pss = d["peak_pss_kib_max"] / 1024 if d["peak_pss_kib_max"] is not None else None
            line += (f" {fmt(d['rate_median'], '13.1f')}{mark} {fmt(d['cpu_ms_per_msg_median'], '19.3f')}"
                     f" {fmt(pss, '16.1f')}")
        if both:
            line += f" {fmt(row.get('ratio'), '7.2f')} {fmt(row.get('cpu_ratio'), '9.2f')}"
        print(line)
    print(f"\nmedian of {rows[0]['runs']} run(s) of {rows[0]['messages']} messages, from the first connection "
          "to the last file in the Maildir;\nCPU = whole server process tree; PSS = peak of the tree's summed PSS "
          "(max over the runs)")
    if both:
        print("ratio = postern rate / postfix rate; CPU ratio = postern CPU ms/msg / postfix CPU ms/msg")
        for row in rows:
            if row["sessions"] != TARGET_SESSIONS:
                continue
            r, c = row.get("ratio"), row.get("cpu_ratio")
            met = r is not None and c is not None and r >= TARGET_RATE_RATIO and c <= TARGET_CPU_RATIO
            print(f"target at {TARGET_SESSIONS} sessions, {size_label(row['size'])}: ratio >= {TARGET_RATE_RATIO} "
                  f"and CPU ratio <= {TARGET_CPU_RATIO}: {'met' if met else 'NOT met'} "
                  f"({fmt(r, '.3f')}, {fmt(c, '.3f')})")
    if any(row[n]["failed_runs"] for row in rows for n in names if n in row):
        print("* = some runs failed (see the JSON)")


if __name__ == "__main__":
    sys.exit(main())
