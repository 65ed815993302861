"""The smtp delivery agent finding other mail servers in DNS (RFC 5321 section
5), between whole Postern instances on port 25 of their own loopback
addresses, with a test DNS server (dnsserver.py, the unbound daemon) in
dns_servers:

  - two instances, mx.a.test on 127.0.0.2 and mx.b.test on 127.0.0.3, deliver
    to each other through the MX records of a.test and b.test, with STARTTLS
    (smtp_tls_security_level = may, self-signed certificates: "Untrusted TLS
    connection established to mx.b.test[127.0.0.3]:25"); the message lands in
    the recipient's Maildir with both Received headers, the receiver's naming
    the sender (verified by reverse DNS) and the TLS cipher, and both logs
    agree on the queue ids; then the other way round;
  - MX records of two preferences: the preference-10 host has no server
    (127.0.0.4, port 25 closed), the mail goes to the preference-20 host; a
    domain whose only MX host has no server stays deferred (4.4.1,
    "Connection refused");
  - a domain without MX records is its own mail server (its A record);
  - a null MX (RFC 7505) bounces at once (5.1.10) without looking up or
    connecting to any address;
  - a domain that does not exist (NXDOMAIN) bounces (5.4.4);
  - our own name (myhostname) as the best MX bounces, "loops back to myself"
    (5.4.6), also when a less preferred host is listed.

The bounces go to the sender, a local user of the sending instance, and are
checked as RFC 3464 reports in its Maildir."""
import email
import email.policy
import os
import re
import smtplib
import socket

from dnsserver import DnsServer
from harness import Instance, make_cert, need_root, wait_for
from qmgr_test import Users, parse_dsn

A_ADDR, B_ADDR = "127.0.0.2", "127.0.0.3"
DEAD_ADDR = "127.0.0.4"  # an MX host with nothing on port 25
WATCH_ADDR = "127.0.0.5"  # a listener that must never see a connection

MASTER_CF = """\
{addr}:25 inet n - y - - smtpd
qmgr unix - - y 300 1 qmgr
local unix - n n - - local
smtp unix - - y - - smtp
"""

STATUS = r"to=<{rcpt}>, relay={relay}, delay=[0-9.]+, delays=[0-9./]+, dsn={dsn}, status={status} \({reason}\)"


def zones():
    """The DNS data every test shares: a.test and b.test with their MX hosts,
    which also have PTR records (smtpd_peername_lookup = yes)."""
    dns = DnsServer()
    dns.mx("a.test", (10, "mx.a.test")).a("mx.a.test", A_ADDR).ptr(A_ADDR, "mx.a.test")
    dns.mx("b.test", (10, "mx.b.test")).a("mx.b.test", B_ADDR).ptr(B_ADDR, "mx.b.test")
    return dns


def mx_instance(name, addr, dns, domains=()):
    """Instance "mx.NAME.test" on port 25 of addr, the final destination of
    NAME.test (and domains), sending everything else by smtp with MX lookups."""
    inst = Instance(main_cf={
        "myhostname": f"mx.{name}.test",
        "mydestination": ", ".join([f"{name}.test", f"mx.{name}.test", "localhost", *domains]),
        "inet_interfaces": addr,
        "mynetworks": "127.0.0.0/8",
        "alias_maps": "",
        "dns_servers": dns.server,
        "smtpd_peername_lookup": "yes",
        "smtp_bind_address": addr,
        "smtp_tls_security_level": "may",
        "smtp_connect_timeout": "5s",
        # Nothing is tried twice within a test: deferred stays deferred.
        "minimal_backoff_time": "300s",
        "queue_run_delay": "300s",
    }, master_cf=MASTER_CF.format(addr=addr), name=f"mx-{name}")
    cert, key = make_cert(inst.etc, cn=f"mx.{name}.test")
    inst.main.update({"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key})
    inst.write_main_cf()
    os.makedirs(os.path.join(inst.dir, "home"))
    inst.users = Users(inst.dir)
    inst.addr = addr
    return inst


def finish(*insts):
    """Removes the test users; the runner stops and deletes the instances."""
    for inst in insts:
        inst.stop()
        inst.users.remove()


def send(inst, sender, rcpt, subject):
    """One message, submitted as a client in mynetworks (127.0.0.1)."""
    msg = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nsent by MX\r\n"
    with smtplib.SMTP(inst.addr, 25, local_hostname="client.example", timeout=30,
                      source_address=("127.0.0.1", 0)) as s:
        s.sendmail(sender, [rcpt], msg)


def delivered(sender, receiver, user, rcpt):
    """The message from sender to rcpt, in receiver's user's Maildir. A failed
    attempt in the sender's log ends the wait at once, with that line."""
    failed = re.compile(rf".*: to=<{re.escape(rcpt)}>, .*status=(?:bounced|deferred) .*")

    def arrived():
        m = failed.search(sender.log())
        if m:
            raise AssertionError(f"not delivered: {m.group(0)}")
        return receiver.users.maildir_files(user)

    files = wait_for(arrived, 30, f"delivery to {rcpt}")
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        return email.message_from_binary_file(f, policy=email.policy.compat32)


def status_line(inst, rcpt, relay, dsn, status, reason, timeout=30):
    rx = STATUS.format(rcpt=re.escape(rcpt), relay=relay, dsn=re.escape(dsn), status=status, reason=reason)
    inst.wait_log(rx, timeout=timeout)
    return re.search(r"(\w+): " + rx, inst.log())


def check_hop(sender, receiver, from_user, to_user, subject):
    """Mail from sender's from_user to receiver's to_user, by MX with STARTTLS."""
    s, r = sender.main["myhostname"], receiver.main["myhostname"]
    sdom, rdom = s.split(".", 1)[1], r.split(".", 1)[1]
    send(sender, f"{from_user}@{sdom}", f"{to_user}@{rdom}", subject)
    msg = delivered(sender, receiver, to_user, f"{to_user}@{rdom}")
    assert msg["Subject"] == subject, msg["Subject"]
    assert msg["Return-Path"] == f"<{from_user}@{sdom}>", msg["Return-Path"]
    assert msg["Delivered-To"] == f"{to_user}@{rdom}", msg["Delivered-To"]

    # The receiver's Received header on top, then the sender's.
    received = [" ".join(h.split()) for h in msg.get_all("Received")]
    assert len(received) == 2, received
    ra, rs = re.escape(receiver.addr), re.escape(sender.addr)
    theirs = re.match(rf"from {re.escape(s)} \({re.escape(s)} \[{rs}\]\) "
                      r"\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\) "
                      rf"by {re.escape(r)} \(Postern\) with ESMTPS id (\w+) "
                      rf"for <{re.escape(to_user)}@{re.escape(rdom)}>; ", received[0])
    assert theirs, received[0]
    ours = re.match(r"from client\.example \(unknown \[127\.0\.0\.1\]\) "
                    rf"by {re.escape(s)} \(Postern\) with ESMTP id (\w+) ", received[1])
    assert ours, received[1]
    qid_s, qid_r = ours.group(1), theirs.group(1)

    # The sender's log: the TLS session and the delivery to the MX host.
    relay = rf"{re.escape(r)}\[{ra}\]:25"
    sender.wait_log(rf"Untrusted TLS connection established to {relay}: TLSv1\.[23] with cipher ")
    m = status_line(sender, f"{to_user}@{rdom}", relay, "2.0.0", "sent", r"250 2\.0\.0 [^)]*queued as (\w+)")
    assert m.group(1) == qid_s, (m.group(1), qid_s)
    assert m.group(2) == qid_r, (m.group(2), qid_r)
    sender.wait_log(rf"{qid_s}: removed")
    # The receiver's log: the client verified by reverse DNS, over TLS.
    receiver.wait_log(rf"Anonymous TLS connection established from {re.escape(s)}\[{rs}\]: TLSv1\.[23]")
    receiver.wait_log(rf"{qid_r}: client={re.escape(s)}\[{rs}\]")


def test_two_instances_deliver_to_each_other_by_mx_with_starttls():
    need_root()
    dns = zones().start()
    a = mx_instance("a", A_ADDR, dns)
    b = mx_instance("b", B_ADDR, dns)
    try:
        alice, bob = a.users.add("alice"), b.users.add("bob")
        a.start()
        b.start()
        check_hop(a, b, alice, bob, "from a to b")
        check_hop(b, a, bob, alice, "from b to a")
        queries = dns.output()
        for q in ("b.test. MX IN", "mx.b.test. A IN", "a.test. MX IN", "mx.a.test. A IN"):
            assert q in queries, f"no query {q!r}:\n{queries}"
    finally:
        finish(a, b)


def test_mx_preferences_and_a_dead_server():
    need_root()
    dns = zones()
    dns.mx("two.test", (10, "mx1.two.test"), (20, "mx2.two.test"))
    dns.a("mx1.two.test", DEAD_ADDR).a("mx2.two.test", B_ADDR)
    dns.mx("dead.test", (10, "mx1.two.test"))
    dns.start()
    a = mx_instance("a", A_ADDR, dns)
    b = mx_instance("b", B_ADDR, dns, domains=["two.test"])
    try:
        bob = b.users.add("bob")
        a.start()
        b.start()
        # Port 25 of the preference-10 host refuses; the preference-20 one takes it.
        send(a, "sender@a.test", f"{bob}@two.test", "second preference")
        delivered(a, b, bob, f"{bob}@two.test")
        status_line(a, f"{bob}@two.test", r"mx2\.two\.test\[127\.0\.0\.3\]:25", "2.0.0", "sent", r"250 2\.0\.0 [^)]*")
        assert "relay=mx1.two.test" not in a.log(), a.log()
        assert "mx1.two.test. A IN" in dns.output(), "the preference-10 host was looked up"

        # Its only MX host has no server: deferred, the connection failure as the reason.
        send(a, "sender@a.test", "someone@dead.test", "nobody home")
        status_line(a, "someone@dead.test", "none", "4.4.1", "deferred",
                    r"connect to mx1\.two\.test\[127\.0\.0\.4\]:25: Connection refused")
        assert "status=bounced" not in a.log(), a.log()
    finally:
        finish(a, b)


def test_domain_without_mx_is_its_own_server():
    need_root()
    dns = zones()
    dns.a("plain.test", B_ADDR)
    dns.start()
    a = mx_instance("a", A_ADDR, dns)
    b = mx_instance("b", B_ADDR, dns, domains=["plain.test"])
    try:
        bob = b.users.add("bob")
        a.start()
        b.start()
        send(a, "sender@a.test", f"{bob}@plain.test", "no mx")
        delivered(a, b, bob, f"{bob}@plain.test")
        status_line(a, f"{bob}@plain.test", r"plain\.test\[127\.0\.0\.3\]:25", "2.0.0", "sent", r"250 2\.0\.0 [^)]*")
        queries = dns.output()
        assert "plain.test. MX IN" in queries and "plain.test. A IN" in queries, queries
    finally:
        finish(a, b)


def bounce_cases(dns, *cases):
    """Mail from a local user of instance A to each (rcpt, dsn, reason regex)
    bounces: the log line, and the report in the sender's Maildir."""
    a = mx_instance("a", A_ADDR, dns)
    try:
        alice = a.users.add("alice")
        a.start()
        for rcpt, dsn, reason in cases:
            send(a, f"{alice}@a.test", rcpt, f"to {rcpt}")
            status_line(a, rcpt, "none", dsn, "bounced", reason)
        files = wait_for(lambda: len(a.users.maildir_files(alice)) >= len(cases) and a.users.maildir_files(alice),
                         30, "the bounces in the sender's Maildir")
        reports = {}
        for path in files:
            msg, blocks, parts = parse_dsn(path)
            assert msg["From"].startswith("MAILER-DAEMON@mx.a.test"), msg["From"]
            per_rcpt = blocks[1]
            reports[per_rcpt["Final-Recipient"].lower()] = (per_rcpt["Action"], per_rcpt["Status"])
        assert reports == {f"rfc822; {rcpt}": ("failed", dsn) for rcpt, dsn, _ in cases}, reports
        assert "TLS connection established" not in a.log(), a.log()
    finally:
        finish(a)


def test_null_mx_bounces_without_connecting():
    need_root()
    dns = zones()
    dns.null_mx("nullmx.test")
    # An address it must not use: the domain's own A record, with a listener.
    dns.a("nullmx.test", WATCH_ADDR)
    dns.start()
    watch = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        watch.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        watch.bind((WATCH_ADDR, 25))
        watch.listen(8)
        watch.setblocking(False)
        bounce_cases(dns, ("user@nullmx.test", "5.1.10", r"Domain nullmx\.test does not accept mail \(nullMX\)"))
        try:
            conn, peer = watch.accept()
            conn.close()
            raise AssertionError(f"a connection to the null MX domain's address came from {peer}")
        except BlockingIOError:
            pass
        queries = dns.output()
        assert "nullmx.test. MX IN" in queries, queries
        assert "nullmx.test. A IN" not in queries and "nullmx.test. AAAA IN" not in queries, queries
    finally:
        watch.close()


def test_missing_domain_bounces():
    need_root()
    dns = zones().start()
    bounce_cases(dns, ("user@nowhere.test", "5.4.4", r"Host or domain name not found\. Name service error "
                                                   r"for name=nowhere\.test type=MX: Host not found"))


def test_own_name_as_best_mx_loops_back():
    need_root()
    dns = zones()
    dns.mx("loop.test", (10, "mx.a.test"))
    # A less preferred host does not help: only better ones than us are tried.
    dns.mx("loop2.test", (10, "mx.a.test"), (20, "mx.b.test"))
    dns.start()
    bounce_cases(dns, ("user@loop.test", "5.4.6", r"mail for loop\.test loops back to myself"),
                 ("user@loop2.test", "5.4.6", r"mail for loop2\.test loops back to myself"))
