"""lib/dns against a real DNS server (unbound, started by dnsserver.py), through
the test program t/dnsq: MX preferences, a domain with only an A record, null
MX, NXDOMAIN and NODATA, TXT, AAAA, PTR for IPv4 and IPv6, CNAME, TLSA, a
server that never answers (bounded by the timeout), cancellation, the
in-flight limit, bad server lists, and lookups after chroot."""
import json
import os
import socket
import subprocess
import tempfile
import time

from harness import BIN, Skip
from dnsserver import DnsServer

DNSQ = os.path.join(BIN, "dnsq")


def dnsq(*args, timeout=30):
    p = subprocess.run([DNSQ, *args], capture_output=True, text=True, timeout=timeout)
    return p


def lookups(server, *pairs, extra=()):
    p = dnsq("--server", server, *extra, *pairs)
    assert p.returncode == 0, f"dnsq exit {p.returncode}: {p.stderr}"
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(out) == len(pairs) // 2, p.stdout
    return out


def zone():
    dns = DnsServer()
    # Declared in reverse order: the answer must come sorted by preference.
    dns.mx("example.test", (20, "mx2.example.test"), (10, "mx1.example.test"))
    dns.a("mx1.example.test", "192.0.2.1")
    dns.a("mx2.example.test", "192.0.2.2")
    dns.a("aonly.example.test", "192.0.2.3")
    dns.null_mx("nomail.example.test")
    dns.txt("example.test", "v=spf1 ip4:192.0.2.0/24 -all")
    dns.txt("long.example.test", "k=" + "x" * 300)
    dns.aaaa("v6.example.test", "2001:db8::25")
    dns.ptr("192.0.2.1", "mx1.example.test")
    dns.ptr("2001:db8::25", "v6.example.test")
    dns.cname("www.example.test", "aonly.example.test")
    dns.tlsa("_25._tcp.mx1.example.test", 3, 1, 1, "00" * 31 + "ff")
    return dns.start()


def test_record_types_and_outcomes():
    dns = zone()
    got = lookups(dns.server,
                  "MX", "example.test",
                  "MX", "aonly.example.test",
                  "A", "aonly.example.test",
                  "MX", "nomail.example.test",
                  "MX", "missing.example.test",
                  "A", "missing.example.test",
                  "TXT", "example.test",
                  "TXT", "long.example.test",
                  "AAAA", "v6.example.test",
                  "AAAA", "mx1.example.test",
                  "PTR", "192.0.2.1",
                  "PTR", "2001:db8::25",
                  "PTR", "192.0.2.99",
                  "A", "www.example.test",
                  "TLSA", "_25._tcp.mx1.example.test")
    mx, mx_aonly, a_aonly, nullmx, mx_missing, a_missing, txt, longtxt, aaaa, aaaa_none, ptr4, ptr6, ptr_none, cname, tlsa = got
    assert mx["status"] == "found" and mx["records"] == ["10 mx1.example.test", "20 mx2.example.test"], mx
    assert mx["ttl"] == 300 and mx["secure"] is False, mx
    assert mx_aonly["status"] == "nodata", f"a domain with only an A record: got {mx_aonly}, want nodata"
    assert a_aonly["records"] == ["192.0.2.3"], a_aonly
    assert nullmx["status"] == "found" and nullmx["records"] == ["0 ."], nullmx
    assert mx_missing["status"] == "nxdomain" and a_missing["status"] == "nxdomain", (mx_missing, a_missing)
    assert txt["records"] == ["v=spf1 ip4:192.0.2.0/24 -all"], txt
    assert longtxt["records"] == ["k=" + "x" * 300], "strings of one TXT record are joined"
    assert aaaa["records"] == ["2001:db8::25"], aaaa
    assert aaaa_none["status"] == "nodata", aaaa_none
    assert ptr4["records"] == ["mx1.example.test"] and ptr4["canonical"] == "1.2.0.192.in-addr.arpa", ptr4
    assert ptr6["records"] == ["v6.example.test"] and ptr6["canonical"].endswith(".8.b.d.0.1.0.0.2.ip6.arpa"), ptr6
    assert ptr_none["status"] == "nxdomain", ptr_none
    assert cname["records"] == ["192.0.2.3"] and cname["canonical"] == "aonly.example.test", cname
    assert tlsa["records"] == ["3 1 1 " + "00" * 31 + "ff"], tlsa


def test_server_that_never_answers_times_out():
    # A bound UDP socket that never reads: queries vanish without an ICMP error.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    try:
        t0 = time.time()
        out = lookups(f"127.0.0.1@{port}", "MX", "example.test", "PTR", "127.0.0.1", extra=["--timeout", "1000"])
        took = time.time() - t0
    finally:
        silent.close()
    for o in out:
        assert o["status"] == "temp" and "timed out" in o["error"], o
    assert 0.9 <= took < 5, f"took {took:.1f}s, want about 1 s"


def test_cancelled_lookups_do_not_call_back():
    dns = zone()
    p = dnsq("--server", dns.server, "--cancel", "MX", "example.test", "A", "mx1.example.test", "PTR", "192.0.2.1")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"cancelled": 3, "called": 0, "in_flight": 0}, p.stdout


def test_in_flight_limit():
    dns = zone()
    a, b = lookups(dns.server, "A", "mx1.example.test", "A", "mx2.example.test", extra=["--max", "1"])
    assert a["status"] == "found", a
    assert b["status"] == "temp" and "too many lookups in flight" in b["error"], b


def test_bad_names_and_server_lists():
    dns = zone()
    bad_name, bad_addr = lookups(dns.server, "A", "not a name", "PTR", "mx1.example.test")
    assert bad_name["status"] == "perm" and bad_addr["status"] == "perm", (bad_name, bad_addr)
    for bad in ["dns.example.test", "127.0.0.1:53", "[::1", "127.0.0.1@99999"]:
        p = dnsq("--server", bad, "A", "example.test")
        assert p.returncode == 1 and "dns_servers" in p.stderr, (bad, p.returncode, p.stderr)


def test_lookups_after_chroot():
    """The resolver reads its files when it is created; in an empty chroot it
    still resolves through its servers and from the hosts file it read."""
    if os.geteuid() != 0:
        raise Skip("needs root (chroot)")
    dns = zone()
    with tempfile.TemporaryDirectory() as d:
        jail = os.path.join(d, "jail")
        os.mkdir(jail)
        out = lookups(dns.server, "MX", "example.test", "PTR", "192.0.2.1", extra=["--chroot", jail])
        assert out[0]["records"] == ["10 mx1.example.test", "20 mx2.example.test"], out
        assert out[1]["records"] == ["mx1.example.test"], out
        # dns_servers empty: resolv.conf and hosts, both read before the chroot.
        resolv, hosts = os.path.join(d, "resolv.conf"), os.path.join(d, "hosts")
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.1\n")
        with open(hosts, "w") as f:
            f.write("192.0.2.44 gateway.example.test\n")
        p = dnsq("--resolv-conf", resolv, "--hosts", hosts, "--chroot", jail, "A", "gateway.example.test")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["records"] == ["192.0.2.44"], p.stdout


def test_hosts_file_answers_ptr_too():
    """As the C library does: an address in the hosts file maps back to the
    first name of its line, so 127.0.0.1 is "localhost" without asking a
    server (smtpd logs localhost[127.0.0.1], like Postfix)."""
    with tempfile.TemporaryDirectory() as d:
        resolv, hosts = os.path.join(d, "resolv.conf"), os.path.join(d, "hosts")
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.1\n")  # nothing answers there on port 53 in tests
        with open(hosts, "w") as f:
            f.write("# comment\n127.0.0.1 localhost\n192.0.2.45 gw.example.test gw # trailing\n"
                    "192.0.2.45 second.example.test\n::1 localhost ip6-localhost\n")
        p = dnsq("--resolv-conf", resolv, "--hosts", hosts, "--timeout", "2000",
                 "PTR", "127.0.0.1", "PTR", "192.0.2.45", "PTR", "::1", "A", "gw.example.test")
        assert p.returncode == 0, p.stderr
        out = [json.loads(line) for line in p.stdout.splitlines()]
        assert out[0]["records"] == ["localhost"], out
        assert out[1]["records"] == ["gw.example.test"], out
        assert out[2]["records"] == ["localhost"], out
        assert out[3]["records"] == ["192.0.2.45"], out
