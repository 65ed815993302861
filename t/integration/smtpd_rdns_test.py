"""smtpd's client names from DNS (forward-confirmed reverse DNS, as Postfix
does it), against a test DNS server (dnsserver.py, the unbound daemon) named
in dns_servers: a verified name appears in the connect/client/disconnect log
lines and the Received header; a PTR name that does not resolve back to the
address, a missing PTR or a missing forward name give "unknown"; a DNS
server that never answers gives "unknown" after smtpd_peername_lookup_timeout,
and the greeting waits for it. Clients use several loopback addresses
(127.0.0.x and ::1) to meet different DNS data in one instance."""
import re
import smtplib
import socket
import time

from harness import Instance, need_root, free_port
from dnsserver import DnsServer
from smtpd_test import content_of, queued


def rdns_instance(dns_servers, extra_main=None, v6=False):
    port = free_port()
    main = {"mydestination": "localhost", "mynetworks": "", "smtpd_peername_lookup": "yes",
            "dns_servers": dns_servers}
    main.update(extra_main or {})
    master = f"{port} inet n - y - - smtpd\n"
    port6 = None
    if v6:
        port6 = free_port("::1")
        master += f"[::1]:{port6} inet n - y - - smtpd\n"
    inst = Instance(main_cf=main, master_cf=master).start()
    inst.port, inst.port6 = port, port6
    return inst


def send(inst, source="127.0.0.1", host="127.0.0.1", port=None):
    """One message from source; returns its queue id."""
    with smtplib.SMTP(host, port or inst.port, timeout=20, source_address=(source, 0)) as s:
        s.ehlo("client.example")
        s.mail("a@b.example")
        s.rcpt("root@localhost")
        code, text = s.data(b"Subject: rdns\r\n\r\nhello\r\n")
        assert code == 250, (code, text)
    return re.search(r"queued as (\S+)", text.decode()).group(1)


def received(inst, qid):
    body = content_of(queued(inst, qid))
    return body.split(b"\r\n\t")[0].decode()


def test_verified_names_in_log_and_received_header():
    need_root()
    dns = DnsServer()
    dns.ptr("127.0.0.1", "mx.test.example").a("mx.test.example", "127.0.0.1")
    # Two PTR names; only the second resolves back.
    dns.ptr("127.0.0.5", "other.test.example").a("other.test.example", "192.0.2.5")
    dns.ptr("127.0.0.5", "mx5.test.example").a("mx5.test.example", "127.0.0.5")
    dns.ptr("::1", "v6.test.example").aaaa("v6.test.example", "::1")
    dns.start()
    inst = rdns_instance(dns.server, v6=True)

    qid = send(inst)
    inst.wait_log(r"connect from mx\.test\.example\[127\.0\.0\.1\]")
    inst.wait_log(rf"{qid}: client=mx\.test\.example\[127\.0\.0\.1\]")
    assert received(inst, qid) == "Received: from client.example (mx.test.example [127.0.0.1])", received(inst, qid)
    assert "1.0.0.127.in-addr.arpa. PTR IN" in dns.output(), "the PTR query reached the test server"
    inst.wait_log(r"disconnect from mx\.test\.example\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 quit=1")

    qid5 = send(inst, source="127.0.0.5")
    inst.wait_log(rf"{qid5}: client=mx5\.test\.example\[127\.0\.0\.5\]")

    qid6 = send(inst, source="::1", host="::1", port=inst.port6)
    inst.wait_log(rf"{qid6}: client=v6\.test\.example\[::1\]")
    assert received(inst, qid6) == "Received: from client.example (v6.test.example [::1])", received(inst, qid6)


def test_unverified_names_are_unknown():
    need_root()
    dns = DnsServer()
    dns.ptr("127.0.0.1", "liar.test.example").a("liar.test.example", "192.0.2.1")  # points elsewhere
    dns.ptr("127.0.0.2", "ghost.test.example")  # the name does not exist
    # 127.0.0.3: no PTR at all (NXDOMAIN)
    # Names no host may have, even when they resolve back.
    dns.ptr("127.0.0.4", "-dash.test.example").a("-dash.test.example", "127.0.0.4")
    dns.ptr("127.0.0.4", "127.0.0.4").a("127.0.0.4", "127.0.0.4")
    dns.start()
    inst = rdns_instance(dns.server)

    qid = send(inst)
    inst.wait_log(r"connect from unknown\[127\.0\.0\.1\]")
    inst.wait_log(rf"{qid}: client=unknown\[127\.0\.0\.1\]")
    inst.wait_log(r"warning: hostname liar\.test\.example does not resolve to address 127\.0\.0\.1(?!:)")
    assert received(inst, qid) == "Received: from client.example (unknown [127.0.0.1])", received(inst, qid)

    send(inst, source="127.0.0.2")
    inst.wait_log(r"connect from unknown\[127\.0\.0\.2\]")
    inst.wait_log(r"warning: hostname ghost\.test\.example does not resolve to address 127\.0\.0\.2: host not found")

    send(inst, source="127.0.0.3")
    inst.wait_log(r"connect from unknown\[127\.0\.0\.3\]")
    assert "127.0.0.3: address not resolved" not in inst.log(), "a missing PTR is no DNS failure"

    send(inst, source="127.0.0.4")
    inst.wait_log(r"connect from unknown\[127\.0\.0\.4\]")
    inst.wait_log(r"warning: 127\.0\.0\.4: malformed host name in PTR record: -dash\.test\.example")
    inst.wait_log(r"warning: 127\.0\.0\.4: malformed host name in PTR record: 127\.0\.0\.4")


def test_no_dns_answer_means_unknown_after_the_timeout():
    need_root()
    # A DNS "server" that never answers: a bound UDP socket nobody reads.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        inst = rdns_instance(f"127.0.0.1@{silent.getsockname()[1]}", {"smtpd_peername_lookup_timeout": "2s"})
        # Clients that leave while their lookup is pending: the lookups are
        # cancelled with their sessions, and smtpd carries on.
        for _ in range(5):
            socket.create_connection(("127.0.0.1", inst.port), timeout=5).close()
        inst.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] commands=0", count=5)
        t0 = time.time()
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
            waited = time.time() - t0
            assert s.ehlo("client.example")[0] == 250
        assert 1.8 <= waited < 8, f"greeting after {waited:.1f}s, want about 2 s (the lookup timeout)"
        inst.wait_log(r"connect from unknown\[127\.0\.0\.1\]")
        inst.wait_log(r"warning: 127\.0\.0\.1: hostname lookup timed out after 2000 ms")
        assert "killed by signal" not in inst.log() and "panic" not in inst.log(), inst.log()
        assert inst.log().count("hostname lookup timed out") == 1, "the cancelled lookups did not time out later"
    finally:
        silent.close()


def test_peername_lookup_off_makes_no_queries():
    need_root()
    dns = DnsServer()
    dns.ptr("127.0.0.1", "mx.test.example").a("mx.test.example", "127.0.0.1")
    dns.start()
    inst = rdns_instance(dns.server, {"smtpd_peername_lookup": "no"})
    qid = send(inst)
    inst.wait_log(rf"{qid}: client=unknown\[127\.0\.0\.1\]")
    assert "in-addr.arpa" not in dns.output(), dns.output()
