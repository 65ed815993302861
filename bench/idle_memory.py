#!/usr/bin/python3
"""Memory per idle SMTP session: opens N sessions to one smtpd process (they
sit after the greeting), and reports the growth of that process's RSS per
session. Run as root from the repository after `make`. Not a test."""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "t", "integration"))
from harness import Instance, free_port, cleanup_all, ensure_users  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    ensure_users()
    port = free_port()
    inst = Instance(main_cf={"mydestination": "localhost", "smtpd_client_connection_count_limit": "0",
                             "service_client_limit": str(n + 10)},
                    master_cf=f"{port} inet n - y - - smtpd\n").start()
    try:
        first = socket.create_connection(("127.0.0.1", port))
        first.recv(100)
        time.sleep(0.2)
        pid = inst.children()[0]
        before = rss_kib(pid)
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.recv(100)
            socks.append(s)
        time.sleep(0.5)
        after = rss_kib(pid)
        print(f"{n} idle sessions: smtpd RSS {before} KiB -> {after} KiB, "
              f"{(after - before) * 1024 / n:.0f} bytes per idle session")
        for s in socks:
            s.close()
        first.close()
    finally:
        cleanup_all()


if __name__ == "__main__":
    main()
