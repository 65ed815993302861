#!/usr/bin/python3
"""Relay benchmark: Postern versus Debian's Postfix, side by side.

Each server accepts N messages over SMTP from smtp-source (from a client in
mynetworks, for a remote domain) and relays them through its smtp delivery
agent to its own smtp-sink on loopback (relayhost = [127.0.0.1]:SINKPORT).
The clock runs from smtp-source's first connection until smtp-source is done
and the server's queue is empty (a queue file is removed only after its
recipient is delivered); the sink's own counter must then show N messages.
For each server: RUNS runs (alternating which goes first), the median rate,
the CPU time of the server's whole process tree per message, the sink's SMTP
sessions (how well connections are reused), and the ratios. Results also go
to bench/results/<timestamp>-relay.json. See bench/README.md.

Run as root:  /usr/bin/python3 bench/relay.py [--quick] [--messages 10000] [--size 4k]
Only processes this script started are ever signalled, and only by pid."""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time

from common import (BIN, RESULTS, make_workdir, remove_workdir, Postern, Postfix, ensure_postfix, fmt, free_port, log, median, parse_params,
                    parse_size, port_open, size_label, wait_drained, wait_for)

SENDER = "a@localhost"
RECIPIENT = "someone@relay.example"
WRITTEN_BY = "bench/relay.py"

POSTERN_SERVICES = """\
qmgr unix - - y 300 1 qmgr
smtp unix - - y - - smtp
"""

TARGET_RATIO = 2.0
POLL = 0.05


class Sink:
    """Postfix's smtp-sink on a free loopback port; counts what it accepted."""

    def __init__(self, workdir, name):
        self.port = free_port()
        self.out = os.path.join(workdir, f"sink-{name}.out")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{self.port}", "256"],
                                     stdout=open(self.out, "wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or port_open(self.port), 10, "smtp-sink")
        if self.proc.poll() is not None:
            raise RuntimeError(f"smtp-sink exited {self.proc.returncode}")

    def counts(self):
        """(sessions, messages) so far, from the -c counter line."""
        try:
            with open(self.out, "rb") as f:
                f.seek(max(0, os.path.getsize(self.out) - 200))
                tail = f.read().decode(errors="replace")
        except OSError:
            return 0, 0
        m = re.findall(r"sess=(\d+) quit=\d+ mesg=(\d+)", tail)
        return (int(m[-1][0]), int(m[-1][1])) if m else (0, 0)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_server(name, workdir, sink, args):
    relay = {"relayhost": f"[127.0.0.1]:{sink.port}"}
    if name == "postern":
        main = {"myhostname": "bench.localdomain", "alias_maps": "", **relay}
        main.update(args.postern_params)
        return Postern(workdir, main, services=POSTERN_SERVICES, written_by=WRITTEN_BY)
    extra = dict(relay)
    extra.update(args.postfix_params)
    return Postfix(workdir, mode="deliver", extra=extra, written_by=WRITTEN_BY)


def one_run(server, sink, sessions, size, messages, args):
    left = wait_drained(server, args.drain)
    if left:
        log(f"  {server.name}: {left} files still queued from before; removing them")
        server.clean_queue()
        time.sleep(0.5)
    os.sync()
    time.sleep(0.2)
    sess0, mesg0 = sink.counts()
    cmd = ["smtp-source", "-c", "-l", str(size), "-m", str(messages), "-s", str(sessions),
           "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{server.port}"]
    res = {"messages": messages}
    errors = []
    cpu0, _ = server.cpu()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    done = accepted = None
    last_sunk, last_progress = mesg0, t0
    try:
        while True:
            now = time.monotonic()
            if accepted is None and client.poll() is not None:
                accepted = now
                if client.returncode != 0:
                    errors.append(f"smtp-source exited {client.returncode}: "
                                  f"{client.stderr.read().decode(errors='replace')[-300:]}")
            if accepted is not None and server.queued() == 0:
                done = now
                break
            _, sunk = sink.counts()
            if sunk > last_sunk:
                last_sunk, last_progress = sunk, now
            if now - t0 > args.timeout:
                errors.append(f"timed out after {args.timeout}s with {sunk - mesg0} of {messages} relayed")
                break
            if now - last_progress > args.stall:
                errors.append(f"nothing relayed for {now - last_progress:.0f}s, {sunk - mesg0} of {messages}")
                break
            time.sleep(POLL)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    cpu1, nproc = server.cpu()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The sink's counter line is written as the message completes; give the
    # last ones a moment to appear.
    wait_for_count = time.monotonic() + 5
    while sink.counts()[1] - mesg0 < messages and time.monotonic() < wait_for_count:
        time.sleep(POLL)
    sess1, mesg1 = sink.counts()
    wall = (done or time.monotonic()) - t0
    relayed = mesg1 - mesg0
    if done and relayed != messages:
        errors.append(f"the sink counted {relayed} messages for {messages} sent")
    res.update({
        "wall_s": round(wall, 4),
        "rate": round(messages / wall, 2) if done else None,
        "accepted_s": round((accepted or time.monotonic()) - t0, 4),
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cpu_ms_per_msg": round((cpu1 - cpu0) * 1000 / messages, 4),
        "client_cpu_s": round((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 3),
        "server_processes_after": nproc,
        "relayed": relayed,
        "sink_sessions": sess1 - sess0,
    })
    res["ok"] = done is not None and not errors
    if errors:
        res["error"] = "; ".join(errors)
    return res


def summarize(rs):
    good = [r for r in rs if r["ok"]]
    return {
        "rate_median": median([r["rate"] for r in good]),
        "cpu_ms_per_msg_median": median([r["server_cpu_ms_per_msg"] for r in good]),
        "sink_sessions_median": median([r["sink_sessions"] for r in good]),
        "accepted_s_median": median([r["accepted_s"] for r in good]),
        "failed_runs": len(rs) - len(good),
        "runs": rs,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 messages, 1 run (a smoke test, not a measurement)")
    ap.add_argument("--messages", type=int, help="messages per run (default 10000)")
    ap.add_argument("--runs", type=int, help="runs (default 3; the median is reported)")
    ap.add_argument("--sessions", type=int, default=10, help="smtp-source sessions (default 10)")
    ap.add_argument("--size", default="4k", help="message size (default 4k)")
    ap.add_argument("--servers", default="postern,postfix", help="which servers to measure")
    ap.add_argument("--postern-param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra main.cf setting for Postern (repeatable)")
    ap.add_argument("--postfix-param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra main.cf setting for Postfix (repeatable)")
    ap.add_argument("--warmup", type=int, default=200, help="messages relayed by each server before measuring")
    ap.add_argument("--timeout", type=int, default=600, help="seconds one run may take before it fails")
    ap.add_argument("--stall", type=int, default=60, help="a run fails when nothing is relayed for this long")
    ap.add_argument("--drain", type=int, default=60, help="seconds to wait for a queue to empty between runs")
    ap.add_argument("--out", help="JSON file (default bench/results/<timestamp>-relay.json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("relay.py: must be run as root (both servers bind and chroot)")
    messages = args.messages or (500 if args.quick else 10000)
    runs = args.runs or (1 if args.quick else 3)
    size = parse_size(args.size)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    for n in names:
        if n not in ("postern", "postfix"):
            sys.exit(f"unknown server {n}")
    if "postern" in names:
        missing = [p for p in ("master", "smtpd", "qmgr", "smtp") if not os.path.exists(os.path.join(BIN, p))]
        if missing:
            sys.exit(f"{', '.join(missing)} not found in {BIN}: run make -j2 all first")
    args.postern_params = parse_params(args.postern_param, "--postern-param")
    args.postfix_params = parse_params(args.postfix_param, "--postfix-param")
    ensure_postfix()

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    workdir = make_workdir("postern-bench-relay-")
    os.chmod(workdir, 0o755)
    servers, sinks, versions = [], {}, {}
    started = datetime.datetime.now()
    raw = {n: [] for n in names}
    try:
        for n in names:
            sinks[n] = Sink(workdir, n)
            sinks[n].start()
            s = make_server(n, workdir, sinks[n], args)
            servers.append(s)
            s.start()
            versions[s.name] = s.version()
            log(f"{s.name} on 127.0.0.1:{s.port} relaying to smtp-sink on 127.0.0.1:{sinks[n].port} ({s.dir}), "
                f"version {versions[s.name]}")
        if args.warmup:
            for s in servers:
                r = one_run(s, sinks[s.name], args.sessions, size, args.warmup, args)
                if not r["ok"]:
                    raise RuntimeError(f"warm-up against {s.name} failed: {r.get('error')}\n"
                                       f"last lines of its log:\n{s.tail_log()}")
                log(f"  {s.name} warm-up: {r['rate']:.1f} msg/s")
        for i in range(runs):
            order = servers if i % 2 == 0 else list(reversed(servers))
            for s in order:
                r = one_run(s, sinks[s.name], args.sessions, size, messages, args)
                raw[s.name].append(r)
                log(f"  {s.name:7} run {i + 1}/{runs}: {fmt(r['rate'], '8.1f')} msg/s (accepted in "
                    f"{r['accepted_s']:.1f}s, done in {r['wall_s']:.1f}s), {r['server_cpu_ms_per_msg']:.3f} CPU ms/msg, "
                    f"{r['sink_sessions']} sink sessions" + ("" if r["ok"] else f"  FAILED: {r.get('error')}"))
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'SIGINT'}); stopping the servers")
    except Exception as e:
        log(f"error: {e}")
        if not any(raw.values()):
            raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for s in servers:
            try:
                s.stop()
            except Exception as e:
                log(f"stopping {s.name}: {e}")
        for k in sinks.values():
            k.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            remove_workdir(workdir)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if not any(raw.values()):
        sys.exit(1)
    row = {n: summarize(rs) for n, rs in raw.items()}
    if "postern" in row and "postfix" in row:
        a, b = row["postern"], row["postfix"]
        if a["rate_median"] and b["rate_median"]:
            row["ratio"] = round(a["rate_median"] / b["rate_median"], 3)
        if a["cpu_ms_per_msg_median"] and b["cpu_ms_per_msg_median"]:
            row["cpu_ratio"] = round(a["cpu_ms_per_msg_median"] / b["cpu_ms_per_msg_median"], 3)
    print()
    print(f"{'server':>8} {'msg/s':>9} {'CPU ms/msg':>11} {'sink sessions':>14}")
    for n in names:
        d = row[n]
        mark = "*" if d["failed_runs"] else " "
        print(f"{n:>8} {fmt(d['rate_median'], '8.1f')}{mark} {fmt(d['cpu_ms_per_msg_median'], '11.3f')} "
              f"{fmt(d['sink_sessions_median'], '14.0f')}")
    print(f"\nmedian of {runs} run(s) of {messages} messages of {size_label(size)}, {args.sessions} client sessions, "
          "from the first connection until the queue is empty")
    if "ratio" in row:
        print(f"ratio (postern/postfix rate) {row['ratio']:.2f}, CPU ratio {fmt(row.get('cpu_ratio'), '.2f')}; "
              f"target ratio >= {TARGET_RATIO}: {'met' if row['ratio'] >= TARGET_RATIO else 'NOT met'}")
    result = {
        "benchmark": "relay",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_at_end": os.getloadavg()},
        "versions": versions,
        "settings": {"messages": messages, "runs": runs, "sessions": args.sessions, "size": size,
                     "sender": SENDER, "recipient": RECIPIENT, "warmup": args.warmup, "quick": args.quick,
                     "postern_params": args.postern_params, "postfix_params": args.postfix_params,
                     "postern_master_cf": POSTERN_SERVICES,
                     "client": "smtp-source -c -l SIZE -m MESSAGES -s SESSIONS",
                     "peer": "smtp-sink -c -u nobody 127.0.0.1:PORT 256, one per server",
                     "end": "smtp-source exited and the queue is empty (polled every 50 ms)"},
        "result": row,
    }
    out = args.out or os.path.join(RESULTS, started.strftime("%Y-%m-%d-%H%M%S") + "-relay" + (
        "-quick" if args.quick else "") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"\nwrote {out}")
    return 1 if any(row[n]["failed_runs"] for n in names) else 0


if __name__ == "__main__":
    sys.exit(main())
