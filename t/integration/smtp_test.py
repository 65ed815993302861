"""The smtp delivery agent end to end: smtpd -> qmgr -> smtp -> a scripted
SMTP server (smtpserver.py), mostly named by relayhost = [127.0.0.1]:port.

Covered, each checked in the status line smtp logs (dsn=, status=, reason)
and at the server:
  - 451 to the end of DATA: deferred, `postern queue flush` delivers it once,
    the queue is empty afterwards;
  - 550 to one of two RCPTs: one sent, one bounced, the RFC 3464 bounce goes
    back to the sender; 553 to MAIL bounces every recipient; every RCPT
    refused: RSET and the session carries the next message;
  - a server that never greets: timeout after smtp_helo_timeout (2s), the
    message stays in deferred/ and the flush delivers it once the server
    answers; no reply to the end of data (smtp_data_done_timeout); a refused
    connection; a 554 greeting (deferred with a 4.x.x DSN); a hang-up after
    the end of data (deferred, "may be sent more than once", then flushed);
  - TLS: encrypt towards a server without STARTTLS defers (4.7.4); may with
    a failed handshake tries the same server again in plaintext; may over a
    self-signed certificate delivers inside TLS with "Untrusted TLS
    connection established to ..."; verify refuses that certificate (4.7.5);
    verify chosen by smtp_tls_policy_maps (hash:) over a global none, with
    smtp_tls_CAfile trusting a certificate for the IP address: "Verified";
    a misspelt level in that map defers the mail (4.3.5);
  - AUTH PLAIN to a smarthost inside TLS from smtp_sasl_password_maps (hash:,
    `postern map build`); a wrong password (535) defers, 4.7.8, and no
    password is ever logged;
  - connection reuse (two messages, one server session), no reuse with
    smtp_connection_cache_time_limit = 0, none of a connection the server
    closed;
  - SMTPUTF8: bounced with 5.6.7 by a server without it, SMTPUTF8 on MAIL
    to one with it; HELO (and smtp_helo_name) when EHLO is refused;
  - NOTIFY, ORCPT, RET, ENVID and BODY=8BITMIME passed on to a server that
    offers DSN and 8BITMIME (and then no success notice from us), none of
    them (nor SIZE) to one that does not (and then a notice, "relayed");
  - default_transport = error:5.7.1 ...: bounced, no server contacted;
  - a server answering EHLO with our own myhostname: a loop, bounced 5.4.6;
  - a message of about 700 KB with dot-stuffed lines arrives intact, in
    plaintext and inside TLS; one over the server's SIZE bounces (5.3.4);
  - MX fallback: the preference-10 host greets with 554, the next one takes
    the mail (DNS from dnsserver.py; smtp_mx_test.py has the rest of DNS)."""
import glob
import os
import re
import smtplib
import subprocess
import time

from harness import Instance, make_cert, need_root, free_port, wait_for
from dnsserver import DnsServer
from smtpserver import SmtpServer

MASTER_CF = """\
{port} inet n - y - - smtpd
qmgr unix - - y 300 1 qmgr
smtp unix - - y - - smtp
"""

WAIT = 20  # seconds, for any one log line

# A queue id and the recipient's status line, as smtp(8) logs it.
QID = r"[0-9B-Z_]+"


def start(srv=None, main=None):
    """An instance whose mail for other domains goes to srv. The retry timers
    are long: a deferred message comes back only with `postern queue flush`."""
    port = free_port()
    cfg = {"mydestination": "localhost", "mynetworks": "127.0.0.0/8", "myhostname": "mail.example.test",
           "alias_maps": "", "minimal_backoff_time": "300s", "maximal_backoff_time": "300s",
           "queue_run_delay": "300s", "smtp_tls_security_level": "may",
           # Nothing in these tests should take long; a stuck step fails fast.
           "smtp_connect_timeout": "10s", "smtp_helo_timeout": "10s", "smtp_starttls_timeout": "10s",
           "smtp_mail_timeout": "10s", "smtp_rcpt_timeout": "10s", "smtp_data_init_timeout": "10s",
           "smtp_data_xfer_timeout": "10s", "smtp_data_done_timeout": "10s", "smtp_quit_timeout": "10s"}
    if srv is not None:
        cfg["relayhost"] = f"[127.0.0.1]:{srv.port}"
    cfg.update(main or {})
    inst = Instance(main_cf=cfg, master_cf=MASTER_CF.format(port=port), name="smtp")
    inst.port = port
    return inst


def send(inst, sender, rcpts, subject="test", body="hello\r\n", mail_options=(), rcpt_options=(), extra=""):
    msg = f"From: {sender}\r\nSubject: {subject}\r\n{extra}\r\n{body}"
    data = msg.encode("utf-8")
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
        s.sendmail(sender, rcpts, data, mail_options=list(mail_options), rcpt_options=list(rcpt_options))


def logged(text):
    """An address as the log shows it (util::printable: \\xNN for other bytes)."""
    return "".join(c if 0x20 <= ord(c) < 0x7f and c != "\\" else "".join(f"\\x{b:02x}" for b in c.encode())
                   for c in text)


def status_line(inst, rcpt, status, timeout=WAIT):
    """Waits for smtp's line for rcpt with that status; returns it."""
    rx = r"postern/smtp\[\d+\]: %s: to=<%s>, (?:orig_to=<[^>]*>, )?relay=[^,]+, delay=[0-9.]+, delays=[0-9./]+, " \
         r"dsn=[245]\.\d+\.\d+, status=%s \(.*\)$" % (QID, re.escape(logged(rcpt)), status)
    try:
        wait_for(lambda: re.search(rx, inst.log(), re.M), timeout, f"status={status} for <{rcpt}>")
    except AssertionError as e:  # say what did happen
        raise AssertionError(f"{e}; the log ends:\n{inst.log()[-3000:]}") from None
    return re.search(rx, inst.log(), re.M).group(0)


def queue_files(inst, sub):
    return [p for p in glob.glob(os.path.join(inst.queue, sub, "**", "*"), recursive=True) if os.path.isfile(p)]


def queue_empty(inst):
    return not any(queue_files(inst, d) for d in ("incoming", "active", "deferred"))


def messages_from(srv, sender):
    return [m for m in srv.received() if m["sender"] == sender]


def stop_all(inst, *servers):
    if inst is not None:
        inst.cleanup()
    for s in servers:
        if s is not None:
            s.stop()


def build_map(inst, name, text):
    path = os.path.join(inst.etc, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    r = inst.postern("map", "build", path)
    assert r.returncode == 0, r.stderr
    return "hash:" + path


def san_cert(directory, ip="127.0.0.1"):
    """A self-signed certificate for an IP address (subjectAltName IP:...)."""
    cert = os.path.join(directory, "ip-cert.pem")
    key = os.path.join(directory, "ip-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ip}",
                    "-addext", f"subjectAltName=IP:{ip}", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key


# ---- deferral, retry, bounces

def test_451_at_end_of_data_deferred_then_delivered_after_flush():
    need_root()
    srv = SmtpServer()
    srv.data_reply = ["451 4.3.0 try later", "250 2.0.0 ok"]
    srv.start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="retry me")
        line = status_line(inst, "x@remote.test", "deferred")
        assert f"relay=127.0.0.1[127.0.0.1]:{srv.port}," in line, line
        assert "dsn=4.3.0" in line, line
        assert "(host 127.0.0.1[127.0.0.1] said: 451 4.3.0 try later (in reply to end of DATA command))" in line, line
        wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
        listing = inst.postern("queue", "list")
        assert "x@remote.test" in listing.stdout and "451 4.3.0 try later" in listing.stdout, listing.stdout
        r = inst.postern("queue", "flush")
        assert r.returncode == 0, r.stderr
        line = status_line(inst, "x@remote.test", "sent")
        assert "dsn=2.0.0" in line and "(250 2.0.0 ok)" in line, line
        inst.wait_log(r"%s: removed" % QID, WAIT)
        wait_for(lambda: queue_empty(inst), 10, "the queue to empty")
        assert "Mail queue is empty" in inst.postern("queue", "list").stdout
        msgs = srv.received()
        assert [m["reply"] for m in msgs] == ["451 4.3.0 try later", "250 2.0.0 ok"], msgs
        delivered = [m for m in msgs if m["reply"].startswith("250")]
        assert len(delivered) == 1 and "Subject: retry me" in delivered[0]["data"]
        assert delivered[0]["rcpts"] == ["x@remote.test"] and delivered[0]["sender"] == "a@example.test"
        time.sleep(0.5)  # nothing more arrives
        assert len(srv.received()) == 2
    finally:
        stop_all(inst, srv)


def test_550_at_rcpt_bounces_one_recipient_delivers_the_other():
    need_root()
    srv = SmtpServer()
    srv.rcpt = lambda a: "550 5.1.1 <%s>: Recipient address rejected: User unknown" % a if a.startswith("bad") else None
    srv.start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["good@remote.test", "bad@remote.test"], subject="half")
        ok = status_line(inst, "good@remote.test", "sent")
        assert "dsn=2.0.0" in ok, ok
        bad = status_line(inst, "bad@remote.test", "bounced")
        assert "dsn=5.1.1" in bad, bad
        assert ("(host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad@remote.test>: Recipient address rejected: "
                "User unknown (in reply to RCPT TO command))") in bad, bad
        # The message went once, to the good recipient only.
        wait_for(lambda: messages_from(srv, "a@example.test"), 10, "the message at the server")
        got = messages_from(srv, "a@example.test")
        assert len(got) == 1 and got[0]["rcpts"] == ["good@remote.test"], got
        # The bounce goes back to the sender (by the same relay here): RFC 3464, null sender.
        inst.wait_log(r"%s: sender non-delivery notification: %s" % (QID, QID), WAIT)
        bounces = wait_for(lambda: messages_from(srv, ""), WAIT, "the bounce at the server")
        assert bounces[0]["rcpts"] == ["a@example.test"], bounces
        text = bounces[0]["data"]
        assert "multipart/report" in text and "report-type=delivery-status" in text, text[:500]
        assert re.search(r"Final-Recipient: rfc822; ?bad@remote\.test", text), text
        assert "Status: 5.1.1" in text and "550 5.1.1" in text, text
        wait_for(lambda: queue_empty(inst), 10, "the queue to empty")
    finally:
        stop_all(inst, srv)


def test_mail_from_refused_bounces_every_recipient():
    need_root()
    srv = SmtpServer()
    srv.mail = lambda s: "553 5.7.1 <%s>: Sender address rejected" % s if s == "a@example.test" else None
    srv.start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test", "y@remote.test"], subject="refused")
        for rcpt in ("x@remote.test", "y@remote.test"):
            line = status_line(inst, rcpt, "bounced")
            assert "dsn=5.7.1" in line and ("(host 127.0.0.1[127.0.0.1] said: 553 5.7.1 <a@example.test>: Sender "
                                            "address rejected (in reply to MAIL FROM command))") in line, line
        assert not messages_from(srv, "a@example.test")
        bounces = wait_for(lambda: messages_from(srv, ""), WAIT, "the bounce at the server")
        assert bounces[0]["rcpts"] == ["a@example.test"]
    finally:
        stop_all(inst, srv)


def test_all_recipients_refused_then_connection_used_again():
    """Every RCPT refused (pipelined DATA then fails): RSET, and the same
    session carries the next message (the bounce, here)."""
    need_root()
    srv = SmtpServer()
    srv.rcpt = lambda a: "550 5.1.1 no such user" if a.endswith("@remote.test") else None
    srv.start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test", "y@remote.test"], subject="nobody")
        for rcpt in ("x@remote.test", "y@remote.test"):
            line = status_line(inst, rcpt, "bounced")
            assert "(host 127.0.0.1[127.0.0.1] said: 550 5.1.1 no such user (in reply to RCPT TO command))" in line
        bounces = wait_for(lambda: messages_from(srv, ""), WAIT, "the bounce at the server")
        assert bounces[0]["rcpts"] == ["a@example.test"]
        assert srv.sessions == 1, srv.sessions
        assert "RSET" in srv.commands, srv.commands
        i = srv.commands.index("RSET")
        assert srv.commands[i + 1].startswith("MAIL FROM:<>"), srv.commands
        assert "status=deferred" not in inst.log()
    finally:
        stop_all(inst, srv)


def test_server_that_never_greets_times_out_and_message_stays_deferred():
    need_root()
    srv = SmtpServer()
    srv.hang = True
    srv.start()
    inst = start(srv, {"smtp_helo_timeout": "2s"})
    try:
        inst.start()
        t0 = time.time()
        send(inst, "a@example.test", ["x@remote.test"], subject="hang")
        line = status_line(inst, "x@remote.test", "deferred")
        took = time.time() - t0
        assert 1.5 < took < 10, took
        assert "dsn=4.4.2" in line, line
        assert "(conversation with 127.0.0.1[127.0.0.1] timed out while receiving the initial server greeting)" \
            in line, line
        files = wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
        assert len(files) == 1
        assert not queue_files(inst, "active")
        assert srv.sessions >= 1 and not srv.received()
        assert "status=sent" not in inst.log() and "status=bounced" not in inst.log()
        # Nothing lost: once the server answers, the flush delivers it.
        srv.hang = False
        assert inst.postern("queue", "flush").returncode == 0
        status_line(inst, "x@remote.test", "sent")
        assert len(srv.received()) == 1
        wait_for(lambda: queue_empty(inst), 10, "the queue to empty")
    finally:
        stop_all(inst, srv)


def test_no_reply_to_end_of_data_times_out_and_defers():
    need_root()
    srv = SmtpServer()
    srv.stall = "."
    srv.start()
    inst = start(srv, {"smtp_data_done_timeout": "2s"})
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="slow")
        line = status_line(inst, "x@remote.test", "deferred")
        assert f"relay=127.0.0.1[127.0.0.1]:{srv.port}," in line and "dsn=4.4.2" in line, line
        assert "(conversation with 127.0.0.1[127.0.0.1] timed out while sending end of data -- message may be " \
               "sent more than once)" in line, line
        wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
    finally:
        stop_all(inst, srv)


def test_connection_refused_defers():
    need_root()
    inst = start()
    try:
        port = free_port()  # nobody listens there
        inst.main["relayhost"] = f"[127.0.0.1]:{port}"
        inst.write_main_cf()
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="nobody home")
        line = status_line(inst, "x@remote.test", "deferred")
        assert "relay=none," in line and "dsn=4.4.1" in line, line
        assert f"(connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused)" in line, line
        wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
    finally:
        stop_all(inst)


def test_server_with_our_own_name_is_a_loop_and_bounces():
    """A server that answers EHLO with our myhostname is this host (an MX or
    A record pointing back at us): the mail bounces at once (5.4.6), it is
    not sent to ourselves; the failure names the server in relay=."""
    need_root()
    srv = SmtpServer(name="mail.example.test").start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="loop")
        line = status_line(inst, "x@remote.test", "bounced")
        assert "dsn=5.4.6" in line and "replied to HELO/EHLO with my own hostname mail.example.test" in line, line
        assert f"relay=127.0.0.1[127.0.0.1]:{srv.port}," in line, line
        assert not srv.received()
    finally:
        stop_all(inst, srv)


# ---- TLS

def test_tls_encrypt_without_starttls_is_deferred():
    need_root()
    srv = SmtpServer().start()  # no STARTTLS
    inst = start(srv, {"smtp_tls_security_level": "encrypt"})
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="secret")
        line = status_line(inst, "x@remote.test", "deferred")
        assert "dsn=4.7.4" in line, line
        assert "(TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])" in line, line
        assert not srv.received()
        assert not any(c.startswith("MAIL") for c in srv.commands), srv.commands
        wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
    finally:
        stop_all(inst, srv)


def test_tls_may_uses_starttls_with_a_self_signed_certificate():
    need_root()
    inst = srv = None
    try:
        inst = start()
        cert, key = make_cert(inst.dir, "sink.example.test")
        srv = SmtpServer(starttls=(cert, key)).start()
        inst.main["relayhost"] = f"[127.0.0.1]:{srv.port}"
        inst.write_main_cf()
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="tls")
        status_line(inst, "x@remote.test", "sent")
        inst.wait_log(r"postern/smtp\[\d+\]: Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: "
                      r"TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)" % srv.port, WAIT)
        msgs = srv.received()
        assert len(msgs) == 1 and msgs[0]["tls"] is True, msgs
        # EHLO again inside TLS (RFC 3207 4.2), then the transaction.
        cmds = srv.commands
        assert cmds[:3] == ["EHLO mail.example.test", "STARTTLS", "EHLO mail.example.test"], cmds
    finally:
        stop_all(inst, srv)


def test_tls_may_handshake_failure_retries_in_plaintext():
    """Opportunistic TLS that fails in the handshake: the same server once
    more without STARTTLS (Postfix does so too), and the mail goes; with
    encrypt it would wait."""
    need_root()
    inst = srv = None
    try:
        inst = start()
        srv = SmtpServer(starttls=make_cert(inst.dir, "sink.example.test")).start()
        srv.broken_tls = True
        inst.main["relayhost"] = f"[127.0.0.1]:{srv.port}"
        inst.write_main_cf()
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="tls broken")
        line = status_line(inst, "x@remote.test", "sent")
        assert re.search(r"TLS handshake with 127\.0\.0\.1\[127\.0\.0\.1\] failed: [^;]+; trying again without TLS",
                         inst.log()), inst.log()[-2000:]
        got = messages_from(srv, "a@example.test")
        assert len(got) == 1 and not got[0]["tls"], got
        assert srv.sessions == 2, srv.sessions
    finally:
        stop_all(inst, srv)


def test_tls_verify_refuses_a_self_signed_certificate():
    need_root()
    inst = srv = None
    try:
        inst = start(None, {"smtp_tls_security_level": "verify"})
        cert, key = make_cert(inst.dir, "sink.example.test")
        srv = SmtpServer(starttls=(cert, key)).start()
        inst.main["relayhost"] = f"[127.0.0.1]:{srv.port}"
        inst.write_main_cf()
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="verify")
        line = status_line(inst, "x@remote.test", "deferred")
        assert "dsn=4.7.5" in line, line
        assert "certificate verification failed for 127.0.0.1[127.0.0.1]" in line, line
        assert "self-signed certificate" in line or "self signed certificate" in line, line
        inst.wait_log(r"Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d" % srv.port, WAIT)
        assert not srv.received()
        assert not any(c.startswith("MAIL") for c in srv.commands), srv.commands
        wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
    finally:
        stop_all(inst, srv)


def test_tls_verify_with_trusted_certificate_and_policy_map():
    """verify delivers when smtp_tls_CAfile trusts the server's certificate
    and it names the address; smtp_tls_policy_maps asks for verify for this
    next hop while the global level is none."""
    need_root()
    inst = srv = None
    try:
        inst = start()
        cert, key = san_cert(inst.dir)
        srv = SmtpServer(starttls=(cert, key)).start()
        hop = f"[127.0.0.1]:{srv.port}"
        policy = build_map(inst, "tls_policy", f"{hop} verify\n")
        inst.main.update({"relayhost": hop, "smtp_tls_security_level": "none", "smtp_tls_policy_maps": policy,
                          "smtp_tls_CAfile": cert})
        inst.write_main_cf()
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="verified")
        status_line(inst, "x@remote.test", "sent")
        inst.wait_log(r"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.[23]" % srv.port,
                      WAIT)
        assert srv.received()[0]["tls"] is True
    finally:
        stop_all(inst, srv)



def test_tls_policy_map_with_an_unknown_level_defers():
    """A misspelt level in smtp_tls_policy_maps must not quietly fall back to
    the global level (here none): the mail waits, 4.3.5, the entry named."""
    need_root()
    srv = SmtpServer().start()
    inst = start(srv)
    try:
        hop = f"[127.0.0.1]:{srv.port}"
        policy = build_map(inst, "tls_policy", f"{hop} encrpyt\n")
        inst.main.update({"smtp_tls_security_level": "none", "smtp_tls_policy_maps": policy})
        inst.write_main_cf()
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="typo")
        line = status_line(inst, "x@remote.test", "deferred")
        assert "dsn=4.3.5" in line and 'unknown TLS security level "encrpyt"' in line, line
        assert srv.sessions == 0
    finally:
        stop_all(inst, srv)


# ---- AUTH to a smarthost

def auth_setup(password):
    inst = start()
    cert, key = make_cert(inst.dir, "smarthost.example.test")
    srv = SmtpServer(starttls=(cert, key), auth={"relayuser": "s3cret"}).start()
    hop = f"[127.0.0.1]:{srv.port}"
    pw = build_map(inst, "sasl_passwd", f"{hop} relayuser:{password}\n")
    inst.main.update({"relayhost": hop, "smtp_sasl_auth_enable": "yes", "smtp_sasl_password_maps": pw})
    inst.write_main_cf()
    return inst, srv


def test_auth_to_smarthost():
    need_root()
    inst = srv = None
    try:
        inst, srv = auth_setup("s3cret")
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="relayed")
        status_line(inst, "x@remote.test", "sent")
        msgs = srv.received()
        assert len(msgs) == 1 and msgs[0]["auth"] == "relayuser" and msgs[0]["tls"], msgs
        auth = [c for c in srv.commands if c.startswith("AUTH")]
        assert len(auth) == 1 and auth[0].startswith("AUTH PLAIN "), srv.commands
        assert "s3cret" not in inst.log()
    finally:
        stop_all(inst, srv)


def test_auth_wrong_password_defers_and_is_not_logged():
    need_root()
    inst = srv = None
    try:
        inst, srv = auth_setup("Wr0ngPa55")
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="refused")
        line = status_line(inst, "x@remote.test", "deferred")
        assert "dsn=4.7.8, status=deferred (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: " \
               "535 5.7.8 bad credentials)" in line, line
        assert not srv.received()
        assert not any(c.startswith("MAIL") for c in srv.commands), srv.commands
        wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
        log = inst.log()
        assert "Wr0ngPa55" not in log and "s3cret" not in log
        assert "DeliveryReply" not in log, log
    finally:
        stop_all(inst, srv)


# ---- the session

def test_connection_reuse_for_two_messages():
    need_root()
    srv = SmtpServer().start()
    inst = start(srv, {"smtp_connection_cache_time_limit": "5s"})
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="one")
        status_line(inst, "x@remote.test", "sent")
        time.sleep(0.3)
        send(inst, "a@example.test", ["y@remote.test"], subject="two")
        status_line(inst, "y@remote.test", "sent")
        msgs = srv.received()
        assert [m["rcpts"] for m in msgs] == [["x@remote.test"], ["y@remote.test"]], msgs
        assert srv.sessions == 1, srv.sessions
        assert srv.commands.count("EHLO mail.example.test") == 1, srv.commands
    finally:
        stop_all(inst, srv)


def test_connection_cache_off_quits_after_each_message():
    need_root()
    srv = SmtpServer().start()
    inst = start(srv, {"smtp_connection_cache_time_limit": "0"})
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="one")
        status_line(inst, "x@remote.test", "sent")
        wait_for(lambda: "QUIT" in srv.commands, 10, "QUIT after the first message")
        send(inst, "a@example.test", ["y@remote.test"], subject="two")
        status_line(inst, "y@remote.test", "sent")
        wait_for(lambda: srv.commands.count("QUIT") == 2, 10, "QUIT after the second message")
        assert srv.sessions == 2, srv.sessions
    finally:
        stop_all(inst, srv)


def test_smtputf8_message_to_server_without_smtputf8_bounces():
    need_root()
    srv = SmtpServer().start()  # EHLO without SMTPUTF8
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["jörg@remote.test"], subject="utf8", mail_options=["SMTPUTF8"])
        line = status_line(inst, "jörg@remote.test", "bounced")
        assert "dsn=5.6.7" in line, line
        assert "(SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1])" in line, line
        assert not messages_from(srv, "a@example.test")
        assert not any(c.startswith("MAIL FROM:<a@example.test>") for c in srv.commands), srv.commands
        # The bounce says SMTPUTF8 too and bounces the same way; the
        # postmaster's notice ends it.
        wait_for(lambda: queue_empty(inst), 10, "the queue to empty")
    finally:
        stop_all(inst, srv)


def test_smtputf8_message_to_server_with_smtputf8():
    need_root()
    srv = SmtpServer(ehlo=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8")).start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["jörg@remote.test"], subject="utf8", mail_options=["SMTPUTF8"])
        status_line(inst, "jörg@remote.test", "sent")
        mail = [c for c in srv.commands if c.startswith("MAIL FROM:")]
        assert mail and mail[0].endswith(" SMTPUTF8"), mail
        assert "RCPT TO:<jörg@remote.test>" in srv.commands, srv.commands
    finally:
        stop_all(inst, srv)


def test_helo_when_ehlo_is_refused():
    need_root()
    srv = SmtpServer(ehlo=None).start()
    inst = start(srv, {"smtp_helo_name": "relay.example.test"})
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="old server")
        status_line(inst, "x@remote.test", "sent")
        assert srv.commands[:2] == ["EHLO relay.example.test", "HELO relay.example.test"], srv.commands
        msgs = srv.received()
        assert len(msgs) == 1 and msgs[0]["helo"] == "relay.example.test"
        # No ESMTP parameters after HELO.
        assert msgs[0]["mail_params"] == "FROM:<a@example.test>", msgs[0]
    finally:
        stop_all(inst, srv)


DSN_MAIL = ["BODY=8BITMIME", "RET=HDRS", "ENVID=env+2Bid-1"]
DSN_RCPT = ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Orig+2Bx@remote.test"]


def test_dsn_parameters_passed_on_when_offered():
    need_root()
    srv = SmtpServer().start()  # offers DSN and 8BITMIME
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="dsn", mail_options=DSN_MAIL, rcpt_options=DSN_RCPT)
        status_line(inst, "x@remote.test", "sent")
        mail = [c for c in srv.commands if c.startswith("MAIL FROM:<a@example.test>")]
        rcpt = [c for c in srv.commands if c.startswith("RCPT TO:<x@remote.test>")]
        assert len(mail) == 1 and re.fullmatch(
            r"MAIL FROM:<a@example\.test> SIZE=\d+ BODY=8BITMIME RET=HDRS ENVID=env\+2Bid-1", mail[0]), mail
        assert rcpt == ["RCPT TO:<x@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Orig+2Bx@remote.test"], rcpt
        # The server took NOTIFY=SUCCESS on: the success notice is its job,
        # not ours (RFC 3461 6.2.1): nothing comes back from the null sender.
        time.sleep(1.5)
        assert not [m for m in srv.received() if m["sender"] == ""], srv.received()
        assert "delivery status notification" not in inst.log()
    finally:
        stop_all(inst, srv)


def test_dsn_parameters_not_sent_when_not_offered():
    """Nor BODY= nor SIZE= to a server without 8BITMIME and SIZE (and without
    PIPELINING: one command at a time)."""
    need_root()
    srv = SmtpServer(ehlo=("ENHANCEDSTATUSCODES",)).start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="dsn", mail_options=DSN_MAIL, rcpt_options=DSN_RCPT)
        status_line(inst, "x@remote.test", "sent")
        mail = [c for c in srv.commands if c.startswith("MAIL FROM:<a@example.test>")]
        rcpt = [c for c in srv.commands if c.startswith("RCPT TO:<x@remote.test>")]
        assert mail == ["MAIL FROM:<a@example.test>"], mail
        assert rcpt == ["RCPT TO:<x@remote.test>"], rcpt
        # NOTIFY=SUCCESS could not go on: we tell the sender, "relayed"
        # (the notice itself goes back out through the same server).
        wait_for(lambda: [m for m in srv.received() if m["sender"] == ""], WAIT, "the success notice")
        notice = [m for m in srv.received() if m["sender"] == ""][0]
        assert notice["rcpts"] == ["a@example.test"], notice
        assert "Action: relayed" in notice["data"] and "Final-Recipient: rfc822; x@remote.test" in notice["data"], \
            notice["data"]
    finally:
        stop_all(inst, srv)


def test_error_default_transport_bounces_without_contacting_servers():
    need_root()
    srv = SmtpServer().start()
    # relayhost is set, but the error transport wins: nothing goes out.
    inst = start(srv, {"default_transport": "error:5.7.1 no outside mail"})
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="out")
        inst.wait_log(r"%s: to=<x@remote\.test>, relay=none, .*dsn=5\.7\.1, status=bounced \(no outside mail\)" % QID,
                      WAIT)
        wait_for(lambda: queue_empty(inst), 10, "the queue to empty")
        time.sleep(0.5)
        assert srv.sessions == 0, srv.commands
        assert "postern/smtp[" not in inst.log()
    finally:
        stop_all(inst, srv)


# ---- failures in the middle, big and too big messages

def test_5xx_greeting_defers_with_a_4xx_status():
    """A server that refuses to talk ends the session before any transaction:
    the next server would be tried; with none left the mail waits, and its
    DSN says so (4.x.x: qmgr refuses a deferral with a 5.x.x status)."""
    need_root()
    srv = SmtpServer()
    srv.greeting = "554 5.7.1 no service for you"
    srv.start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="refused")
        line = status_line(inst, "x@remote.test", "deferred")
        assert "dsn=4.7.1" in line, line
        assert "(host 127.0.0.1[127.0.0.1] refused to talk to me: 554 5.7.1 no service for you)" in line, line
        assert srv.commands == ["QUIT"], srv.commands
        wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
        assert "bad reply" not in inst.log(), inst.log()
    finally:
        stop_all(inst, srv)


def test_hangup_after_end_of_data_defers_then_flush_delivers():
    need_root()
    srv = SmtpServer()
    srv.hangup = "."  # takes the message, closes without a reply
    srv.start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test", "y@remote.test"], subject="maybe twice")
        for rcpt in ("x@remote.test", "y@remote.test"):
            line = status_line(inst, rcpt, "deferred")
            assert f"relay=127.0.0.1[127.0.0.1]:{srv.port}," in line and "dsn=4.4.2" in line, line
            assert "(lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- message may be sent " \
                   "more than once)" in line, line
        assert not srv.received()
        wait_for(lambda: queue_files(inst, "deferred"), 10, "the message in deferred/")
        srv.hangup = None
        assert inst.postern("queue", "flush").returncode == 0
        status_line(inst, "x@remote.test", "sent")
        status_line(inst, "y@remote.test", "sent")
        wait_for(lambda: queue_empty(inst), 10, "the queue to empty")
        msgs = srv.received()
        assert len(msgs) == 1 and msgs[0]["rcpts"] == ["x@remote.test", "y@remote.test"], msgs
        assert srv.sessions == 2
    finally:
        stop_all(inst, srv)


def big_message(tls):
    """About 700 KB (more than the client's 256 KB output high-water mark),
    with lines that need dot-stuffing: the server gets the same body."""
    need_root()
    inst = srv = None
    try:
        inst = start()
        srv = SmtpServer(starttls=make_cert(inst.dir) if tls else None).start()
        inst.main["relayhost"] = f"[127.0.0.1]:{srv.port}"
        inst.write_main_cf()
        inst.start()
        lines = []
        for i in range(9000):
            lines.append(("." if i % 7 == 0 else "") + f"line {i:05d} " + "x" * 64)
            if i % 1000 == 0:
                lines += [".", "..", ". dot space"]
        body = "\r\n".join(lines) + "\r\n"
        send(inst, "a@example.test", ["x@remote.test"], subject="big", body=body)
        status_line(inst, "x@remote.test", "sent")
        msgs = srv.received()
        assert len(msgs) == 1 and msgs[0]["tls"] == tls
        got = msgs[0]["data"].split("\r\n\r\n", 1)[1]
        assert got == body, (len(got), len(body))
        assert "Subject: big" in msgs[0]["data"]
    finally:
        stop_all(inst, srv)


def test_large_message_with_dot_lines_arrives_intact():
    big_message(tls=False)


def test_large_message_over_tls():
    big_message(tls=True)


def test_message_larger_than_server_size_limit_bounces():
    need_root()
    srv = SmtpServer(ehlo=("PIPELINING", "SIZE 2000", "8BITMIME", "ENHANCEDSTATUSCODES")).start()
    inst = start(srv)
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="too big", body=("z" * 70 + "\r\n") * 60)
        line = status_line(inst, "x@remote.test", "bounced")
        assert "dsn=5.3.4" in line, line
        assert re.search(r"\(message size \d+ exceeds size limit 2000 of server 127\.0\.0\.1\[127\.0\.0\.1\]\)$",
                         line), line
        assert not any(c.startswith("MAIL FROM:<a@example.test>") for c in srv.commands), srv.commands
    finally:
        stop_all(inst, srv)


def test_server_closing_an_idle_connection_is_not_reused():
    """The server hangs up after each message: the cached connection is
    dropped when that is noticed, and the next message opens a new one."""
    need_root()
    srv = SmtpServer()
    srv.close_after_message = True
    srv.start()
    inst = start(srv, {"smtp_connection_cache_time_limit": "5s"})
    try:
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="one")
        status_line(inst, "x@remote.test", "sent")
        time.sleep(0.5)
        send(inst, "a@example.test", ["y@remote.test"], subject="two")
        status_line(inst, "y@remote.test", "sent")
        assert [m["rcpts"] for m in srv.received()] == [["x@remote.test"], ["y@remote.test"]]
        assert srv.sessions == 2, srv.sessions
        assert "deferred" not in inst.log()
    finally:
        stop_all(inst, srv)


# ---- DNS (more in smtp_mx_test.py)

def test_mx_fallback_to_the_next_host():
    """MX 10 (127.0.0.2, refuses with 554) then MX 20 (127.0.0.1): the
    second delivers. transport_maps gives the port: remote.test:PORT."""
    need_root()
    inst = srv = bad = dns = None
    try:
        for _ in range(20):  # the same port free on both addresses
            srv = SmtpServer()
            try:
                bad = SmtpServer(host="127.0.0.2", port=srv.port)
                break
            except OSError:
                srv.stop()
                srv = None
        assert bad is not None, "no port free on 127.0.0.1 and 127.0.0.2"
        bad.greeting = "554 5.3.2 not today"
        srv.start()
        bad.start()
        dns = DnsServer()
        dns.mx("remote.test", (10, "mx1.remote.test"), (20, "mx2.remote.test"))
        dns.a("mx1.remote.test", "127.0.0.2")
        dns.a("mx2.remote.test", "127.0.0.1")
        dns.start()
        inst = start(None, {"dns_servers": dns.server, "inet_protocols": "ipv4"})
        tm = build_map(inst, "transport", f"remote.test smtp:remote.test:{srv.port}\n")
        inst.main["transport_maps"] = tm
        inst.write_main_cf()
        inst.start()
        send(inst, "a@example.test", ["x@remote.test"], subject="mx")
        line = status_line(inst, "x@remote.test", "sent")
        assert f"relay=mx2.remote.test[127.0.0.1]:{srv.port}," in line, line
        assert bad.sessions == 1 and bad.commands == ["QUIT"], bad.commands
        assert len(srv.received()) == 1
        assert "status=deferred" not in inst.log()
    finally:
        stop_all(inst, srv, bad)
        if dns is not None:
            dns.cleanup()
