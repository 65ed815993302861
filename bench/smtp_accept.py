#!/usr/bin/python3
"""SMTP acceptance benchmark: Postern versus Debian's Postfix, side by side.

Both servers run on loopback ports from temporary directories, accept mail and
do nothing else (Postern has no delivery yet; Postfix runs without its queue
manager, see README.md). Postfix's smtp-source is the client. For every
(sessions, size) pair each server gets RUNS runs of MESSAGES messages; the
script prints the median acceptance rate of each, the ratio, and the CPU time
of each server's whole process tree per message. Results also go to
bench/results/<timestamp>.json.

Run as root:  /usr/bin/python3 bench/smtp_accept.py [--quick] [--sessions 10,50] [--sizes 1k,100k]
Only processes this script started are ever signalled, and only by pid."""
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

from common import (BIN, RESULTS, make_workdir, remove_workdir, Postern, Postfix, ensure_postfix, fmt, log, median,
                    parse_params, parse_size, size_label)

SENDER = "a@localhost"
RECIPIENT = "root@localhost"


# ---------------------------------------------------------------- measuring

def one_run(server, sessions, size, messages, timeout):
    # Moved aside, not deleted: deleting the last run's files would slow this
    # run's file creation (common.make_workdir). With qmgr running (Postfix in
    # defer mode) the queue is cleaned as before.
    if getattr(server, "mode", "accept") == "accept":
        server.set_aside_incoming()
    else:
        server.clean_queue()
    time.sleep(0.2)
    cmd = ["smtp-source", "-c", "-l", str(size), "-m", str(messages), "-s", str(sessions),
           "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{server.port}"]
    os.sync()
    cpu0, _ = server.cpu()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, nproc = server.cpu()
    # Processes that outlive the run may still be logging; the queue count is
    # what proves acceptance.
    queued = server.queued()
    res = {
        "wall_s": round(wall, 4),
        "rate": round(messages / wall, 2),
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cpu_ms_per_msg": round((cpu1 - cpu0) * 1000 / messages, 4),
        "client_cpu_s": round((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 3),
        "server_processes_after": nproc,
        "queued": queued,
        "ok": r.returncode == 0 and queued == messages,
    }
    if r.returncode != 0:
        res["error"] = (r.stderr or r.stdout).strip()[-500:]
    elif queued != messages:
        res["error"] = f"{queued} messages in the queue after sending {messages}"
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 messages, 1 run (a smoke test, not a measurement)")
    ap.add_argument("--messages", type=int, help="messages per run (default 5000)")
    ap.add_argument("--runs", type=int, help="runs per configuration (default 3; the median is reported)")
    ap.add_argument("--sessions", default="1,10,50", help="comma-separated concurrent session counts")
    ap.add_argument("--sizes", default="1k,100k", help="comma-separated message sizes (bytes, or with k / m)")
    ap.add_argument("--servers", default="postern,postfix", help="which servers to measure")
    ap.add_argument("--postfix-mode", choices=["accept", "defer"], default="accept",
                    help="accept: Postfix without qmgr (default, like Postern today); "
                         "defer: Postfix with qmgr, every transport deferred")
    ap.add_argument("--postern-param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra main.cf setting for Postern (repeatable), e.g. "
                         "smtpd_client_connection_count_limit=50 to keep that default")
    ap.add_argument("--warmup", type=int, default=200, help="messages sent to each server before measuring")
    ap.add_argument("--timeout", type=int, default=900, help="seconds one smtp-source run may take")
    ap.add_argument("--out", help="JSON file (default bench/results/<timestamp>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories (servers are stopped)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("smtp_accept.py: must be run as root (both servers bind, chroot and drop privileges)")
    messages = args.messages or (500 if args.quick else 5000)
    runs = args.runs or (1 if args.quick else 3)
    sessions_list = [int(s) for s in args.sessions.split(",") if s.strip()]
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    for n in names:
        if n not in ("postern", "postfix"):
            sys.exit(f"unknown server {n}")
    if "postern" in names and not os.path.exists(os.path.join(BIN, "master")):
        sys.exit(f"{BIN}/master not found: run make -j2 all first")

    postern_params = parse_params(args.postern_param, "--postern-param")

    ensure_postfix()

    workdir = make_workdir("postern-bench-")
    os.chmod(workdir, 0o755)
    servers = []

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    started = datetime.datetime.now()
    rows = []
    try:
        for n in names:
            s = Postern(workdir, postern_params, written_by="bench/smtp_accept.py") if n == "postern" \
                else Postfix(workdir, args.postfix_mode, written_by="bench/smtp_accept.py")
            servers.append(s)
            s.start()
            log(f"{s.name} listening on 127.0.0.1:{s.port} ({s.dir}), version {s.version()}")
        for s in servers:
            if args.warmup:
                r = one_run(s, 10, 1024, args.warmup, args.timeout)
                if not r["ok"]:
                    raise RuntimeError(f"warm-up against {s.name} failed: {r.get('error')}")
        for size in sizes:
            for sessions in sessions_list:
                raw = {s.name: [] for s in servers}
                for i in range(runs):
                    # Interleave the servers so slow drift in the machine's
                    # load hits both alike.
                    order = servers if i % 2 == 0 else list(reversed(servers))
                    for s in order:
                        r = one_run(s, sessions, size, messages, args.timeout)
                        raw[s.name].append(r)
                        log(f"  {s.name:7} sessions={sessions:<3} size={size_label(size):7} run {i + 1}/{runs}: "
                            f"{r['rate']:8.1f} msg/s, {r['server_cpu_ms_per_msg']:.3f} CPU ms/msg"
                            + ("" if r["ok"] else f"  FAILED: {r.get('error')}"))
                row = {"sessions": sessions, "size": size, "messages": messages, "runs": runs}
                for n, rs in raw.items():
                    good = [r for r in rs if r["ok"]]
                    row[n] = {
                        "rate_median": median([r["rate"] for r in good]),
                        "cpu_ms_per_msg_median": median([r["server_cpu_ms_per_msg"] for r in good]),
                        "failed_runs": len(rs) - len(good),
                        "runs": rs,
                    }
                if "postern" in row and "postfix" in row and row["postern"]["rate_median"] and \
                        row["postfix"]["rate_median"]:
                    row["ratio"] = round(row["postern"]["rate_median"] / row["postfix"]["rate_median"], 3)
                rows.append(row)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopping the servers")
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {s.name}: {e}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            remove_workdir(workdir)

    if not rows:
        sys.exit(1)
    print_table(rows, names)
    result = {
        "benchmark": "smtp_accept",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_at_end": os.getloadavg()},
        "versions": {s.name: s.version() for s in servers},
        "settings": {"messages": messages, "runs": runs, "sessions": sessions_list, "sizes": sizes,
                     "sender": SENDER, "recipient": RECIPIENT, "postfix_mode": args.postfix_mode,
                     "warmup": args.warmup, "quick": args.quick, "postern_params": postern_params,
                     "client": "smtp-source -c -l SIZE -m MESSAGES -s SESSIONS (one connection per message)"},
        "rows": rows,
    }
    out = args.out or os.path.join(RESULTS, started.strftime("%Y-%m-%d-%H%M%S") + (
        "-quick" if args.quick else "") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"\nwrote {out}")
    failed = sum(row[n]["failed_runs"] for row in rows for n in names)
    return 1 if failed else 0


def print_table(rows, names):
    hdr = f"{'sessions':>8} {'size':>7}"
    for n in names:
        hdr += f" {n + ' msg/s':>14} {n + ' CPU ms/msg':>19}"
    if len(names) == 2:
        hdr += f" {'ratio':>7}"
    print()
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        line = f"{row['sessions']:>8} {size_label(row['size']):>7}"
        for n in names:
            d = row[n]
            mark = "*" if d["failed_runs"] else " "
            line += f" {fmt(d['rate_median'], '13.1f')}{mark} {fmt(d['cpu_ms_per_msg_median'], '19.3f')}"
        if len(names) == 2:
            line += f" {fmt(row.get('ratio'), '7.2f')}"
        print(line)
    print(f"\nmedian of {rows[0]['runs']} run(s) of {rows[0]['messages']} messages; "
          "ratio = postern rate / postfix rate; CPU = whole server process tree"
          + ("; * = some runs failed (see JSON)" if any(row[n]["failed_runs"] for row in rows for n in names)
             else ""))


if __name__ == "__main__":
    sys.exit(main())
