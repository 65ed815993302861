"""smtpd on a real instance, driven by Python's smtplib, raw sockets and swaks:
acceptance into the queue, relay control and relay tricks, unknown users,
pipelining, SIZE, BDAT, 8-bit and SMTPUTF8, limits, smuggling, the log lines,
200 concurrent sessions, and "250 means on disk"."""
import os
import re
import signal
import smtplib
import socket
import struct
import subprocess
import threading
import time

from harness import Instance, need_root, free_port, wait_for


def smtp_instance(main=None, extra_master=""):
    port = free_port()
    cfg = {"mydestination": "localhost, example.test", "mynetworks": ""}
    cfg.update(main or {})
    inst = Instance(main_cf=cfg, master_cf=f"{port} inet n - y - - smtpd\n" + extra_master).start()
    inst.port = port
    return inst


def read_queue_file(path):
    """Parses a queue file (type byte, 4-byte length, payload); returns records."""
    data = open(path, "rb").read()
    recs, pos = [], 0
    while pos < len(data):
        t = data[pos:pos + 1].decode()
        (n,) = struct.unpack(">I", data[pos + 1:pos + 5])
        recs.append((t, data[pos + 5:pos + 5 + n]))
        pos += 5 + n
    return recs


def queued(inst, qid):
    path = os.path.join(inst.queue, "incoming", qid)
    recs = read_queue_file(path)
    assert recs[0] == ("V", b"1") and recs[-1] == ("E", b""), f"bad first/last record in {path}"
    return recs


def content_of(recs):
    return b"".join(p for t, p in recs if t == "B")


class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """One complete (possibly multi-line) reply as text."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    raise EOFError("closed; got so far: %r" % lines)
                self.buf += d
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def closed(self):
        try:
            return self.s.recv(100) == b""
        except OSError:
            return True


def qid_of(text):
    m = re.search(r"queued as (\S+)", text)
    assert m, text
    return m.group(1)


def test_message_is_queued_with_received_header_and_log_lines():
    need_root()
    inst = smtp_instance()
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        code, _ = s.ehlo("client.example")
        assert code == 250
        for kw in ["pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "dsn", "chunking"]:
            assert s.has_extn(kw), f"EHLO lacks {kw}"
        msg = b"From: a@b.example\r\nTo: root@localhost\r\nMessage-ID: <m1@b.example>\r\nSubject: hi\r\n\r\nbody\r\n..dot\r\n"
        s.sendmail("a@b.example", ["root@localhost"], msg)
        reply = s.noop()
    log = inst.log()
    qid = re.search(r"(\w+): client=unknown\[127\.0\.0\.1\]", log).group(1)
    recs = queued(inst, qid)
    body = content_of(recs)
    assert body.startswith(b"Received: from client.example (unknown [127.0.0.1])\r\n\tby "), body[:200]
    assert f"with ESMTP id {qid}".encode() in body and b"for <root@localhost>;" in body
    # smtplib dot-stuffs "..dot" to "...dot"; smtpd must store it unstuffed.
    assert body.endswith(b"\r\nbody\r\n..dot\r\n"), body[-40:]
    assert ("S", b"a@b.example") in recs and any(t == "R" and b"root@localhost" in p for t, p in recs)
    inst.wait_log(r"connect from unknown\[127\.0\.0\.1\]")
    inst.wait_log(rf"{qid}: message-id=<m1@b\.example>")
    inst.wait_log(rf"{qid}: from=<a@b\.example>, size=\d+, nrcpt=1 \(queue active\)")
    inst.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 noop=1 quit=1 commands=6")


def test_relay_is_refused_and_tricks_do_not_relay():
    need_root()
    inst = smtp_instance()
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.ehlo("x")
        assert s.mail("a@b.example")[0] == 250
        code, text = s.rcpt("victim@elsewhere.example")
        assert code == 554 and b"5.7.1" in text and b"Relay access denied" in text, (code, text)
        for trick in ["victim%elsewhere.example@localhost", '"victim@elsewhere.example"@localhost',
                      "elsewhere.example!victim@localhost", "@localhost:victim@elsewhere.example"]:
            code, text = s.rcpt(trick)
            assert code in (550, 554), f"{trick}: got {code} {text}, want a refusal"
            assert b"Relay access denied" in text or b"User unknown" in text, text
        code, text = s.rcpt("Root@LOCALHOST")
        assert code == 250, "domains and local parts are case-insensitive"
    inst.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 <victim@elsewhere\.example>: "
                  r"Relay access denied; from=<a@b\.example> to=<victim@elsewhere\.example> proto=ESMTP helo=<x>")


def test_mynetworks_may_relay():
    need_root()
    inst = smtp_instance({"mynetworks": "127.0.0.0/8"})
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.ehlo("x")
        s.mail("a@b.example")
        assert s.rcpt("friend@elsewhere.example")[0] == 250


def test_unknown_user_postmaster_and_extension():
    need_root()
    inst = smtp_instance()
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.ehlo("x")
        s.mail("")
        code, text = s.rcpt("nosuchuser@localhost")
        assert code == 550 and text.startswith(b"5.1.1 <nosuchuser@localhost>"), (code, text)
        assert s.rcpt("postmaster@example.test")[0] == 250
        assert s.rcpt("PostMaster")[0] == 250
        assert s.rcpt("root+tag@localhost")[0] == 250, "user+ext validates as user"


def test_pipelining_replies_in_order():
    need_root()
    inst = smtp_instance()
    r = Raw(inst.port)
    assert r.reply().startswith("220 ")
    r.send("EHLO x\r\n")
    r.reply()
    r.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<nosuchuser@localhost>\r\nRCPT TO:<root@localhost>\r\nDATA\r\n")
    replies = [r.reply()[:3] for _ in range(4)]
    assert replies == ["250", "550", "250", "354"], replies
    r.send("Subject: p\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    assert r.reply().startswith("250 2.0.0 Ok: queued as ")
    assert r.reply().startswith("221")


def test_size_declared_and_actual():
    need_root()
    inst = smtp_instance({"message_size_limit": "2000"})
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.ehlo("x")
        assert s.esmtp_features["size"] == "2000"
        code, text = s.mail("a@b.example", ["SIZE=5000"])
        assert code == 552 and b"5.3.4" in text
        assert s.mail("a@b.example", ["SIZE=100"])[0] == 250
        s.rcpt("root@localhost")
        code, text = s.data(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n")
        assert code == 552 and b"5.3.4" in text, (code, text)
        assert s.noop()[0] == 250, "the session goes on after 552"
        s.mail("a@b.example")
        s.rcpt("root@localhost")
        assert s.data(b"Subject: small\r\n\r\nok\r\n")[0] == 250
    assert len(os.listdir(os.path.join(inst.queue, "incoming"))) == 1, "the refused message left no file"


def test_bdat_chunking():
    need_root()
    inst = smtp_instance()
    r = Raw(inst.port)
    r.reply()
    r.send("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<root@localhost>\r\n")
    r.reply(), r.reply(), r.reply()
    part1 = b"Subject: chunks\r\n\r\n.line with dot\r\n"
    part2 = b"end\r\n"
    r.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert r.reply().startswith("250 2.0.0")
    r.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    qid = qid_of(r.reply())
    body = content_of(queued(inst, qid))
    assert body.endswith(b"\r\n\r\n.line with dot\r\nend\r\n"), "BDAT content is taken as is"


def test_8bit_and_smtputf8():
    need_root()
    inst = smtp_instance()
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.ehlo("x")
        msg = "Subject: caf\u00e9\r\n\r\nGr\u00fc\u00dfe \u2603\r\n".encode()
        s.sendmail("a@b.example", ["root@localhost"], msg, mail_options=["BODY=8BITMIME"])
        s.sendmail("j\u00f6rg@b.example", ["root@localhost"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    files = os.listdir(os.path.join(inst.queue, "incoming"))
    assert len(files) == 2
    bodies = [content_of(queued(inst, f)) for f in files]
    assert all(b.endswith("Gr\u00fc\u00dfe \u2603\r\n".encode()) for b in bodies), "8-bit bytes kept"
    assert any(("S", "j\u00f6rg@b.example".encode()) in queued(inst, f) for f in files)


def test_unicode_address_needs_smtputf8():
    need_root()
    inst = smtp_instance()
    r = Raw(inst.port)
    r.reply()
    r.send("EHLO x\r\n")
    r.reply()
    r.send("MAIL FROM:<j\u00f6rg@b.example>\r\n".encode())
    assert r.reply().startswith("553 5.6.7")


def test_smuggling_bare_lf_dot_does_not_end_data():
    need_root()
    inst = smtp_instance()
    r = Raw(inst.port)
    r.reply()
    r.send("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<root@localhost>\r\nDATA\r\n")
    [r.reply() for _ in range(4)]
    # A smuggled second message after <LF>.<LF> must stay inside the first.
    r.send("Subject: s\r\n\r\nhello\n.\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<root@localhost>\r\nDATA\r\nevil\r\n.\r\n")
    text = r.reply()
    assert text.startswith("550 5.5.2") and "bare <LF>" in text, text
    r.send("NOOP\r\n")
    assert r.reply().startswith("250"), "no smuggled command was executed; the session goes on"
    assert os.listdir(os.path.join(inst.queue, "incoming")) == []
    assert "evil@x.example>, size" not in inst.log()


def test_smuggling_bare_cr_and_nul():
    need_root()
    inst = smtp_instance()
    for payload, what in [(b"a\r.\r\nb\r\n.\r\n", "bare <CR>"), (b"a\x00b\r\n.\r\n", "NUL")]:
        r = Raw(inst.port)
        r.reply()
        r.send("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<root@localhost>\r\nDATA\r\n")
        [r.reply() for _ in range(4)]
        r.send(payload)
        text = r.reply()
        assert text.startswith("550 5.5.2") and what in text, text


def test_long_lines_nul_and_bad_commands():
    need_root()
    inst = smtp_instance({"line_length_limit": "600"})
    r = Raw(inst.port)
    r.reply()
    r.send("NOOP " + "x" * 595 + "\r\n")
    assert r.reply().startswith("250"), "600 bytes is within the limit"
    r.send("NOOP " + "x" * 700 + "RSET\r\n")
    assert r.reply().startswith("500 5.5.2"), "an over-long line is refused whole"
    r.send("NOOP\r\n")
    assert r.reply().startswith("250"), "and not split into a second command"
    r.send(b"NO\x00OP\r\n")
    assert r.reply().startswith("500 5.5.2")
    r.send("FROB\r\n")
    assert r.reply().startswith("502 5.5.2")
    r.send("MAIL FROM:<a@b.example>\r\n")
    assert r.reply().startswith("503 5.5.1"), "HELO/EHLO first"
    r.send("VRFY root\r\n")
    assert r.reply().startswith("252 ")
    r.send("VRFY nosuchuser\r\n")
    assert r.reply().startswith("252 "), "the same answer for every address"


def test_hard_error_limit_closes():
    need_root()
    inst = smtp_instance({"smtpd_hard_error_limit": "3"})
    r = Raw(inst.port)
    r.reply()
    r.send("FROB\r\nFROB\r\nFROB\r\n")
    assert r.reply().startswith("502")
    assert r.reply().startswith("502")
    assert r.reply().startswith("502")
    assert r.reply().startswith("421 4.7.0")
    assert r.closed()


def test_recipient_limit():
    need_root()
    inst = smtp_instance({"smtpd_recipient_limit": "100"})
    r = Raw(inst.port)
    r.reply()
    r.send("EHLO x\r\nMAIL FROM:<a@b.example>\r\n")
    r.reply(), r.reply()
    r.send("".join(f"RCPT TO:<root+{i}@localhost>\r\n" for i in range(101)))
    replies = [r.reply()[:9] for _ in range(101)]
    assert replies[:100] == ["250 2.1.5"] * 100 and replies[100] == "452 4.5.3", replies[98:]
    inst.wait_log(r"too many recipients \(smtpd_recipient_limit=100\)")


def test_timeout_closes_with_421():
    need_root()
    inst = smtp_instance({"smtpd_timeout": "1s"})
    r = Raw(inst.port)
    r.reply()
    time.sleep(1.5)
    assert r.reply().startswith("421 4.4.2")
    assert r.closed()
    inst.wait_log(r"timeout after CONNECT from unknown\[127\.0\.0\.1\]")


def test_swaks_sends_mail():
    need_root()
    inst = smtp_instance()
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{inst.port}", "--to", "root@localhost",
                        "--from", "a@b.example", "--pipeline"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "queued as" in r.stdout


def test_per_client_connection_limit():
    need_root()
    inst = smtp_instance({"smtpd_client_connection_count_limit": "2", "mynetworks": "192.0.2.0/24"})
    a, b = Raw(inst.port), Raw(inst.port)
    assert a.reply().startswith("220") and b.reply().startswith("220")
    c = Raw(inst.port)
    assert c.reply().startswith("421 4.7.0"), "the third concurrent session from one address is refused"
    assert c.closed()
    inst.wait_log(r"too many connections from 127\.0\.0\.1 \(smtpd_client_connection_count_limit=2\)")


def test_mynetworks_are_exempt_from_connection_limits():
    need_root()
    inst = smtp_instance({"smtpd_client_connection_count_limit": "2", "smtpd_client_connection_rate_limit": "2",
                          "mynetworks": "127.0.0.0/8"})
    clients = [Raw(inst.port) for _ in range(4)]
    assert [c.reply()[:3] for c in clients] == ["220"] * 4


def test_200_concurrent_sessions():
    need_root()
    inst = smtp_instance({"smtpd_client_connection_count_limit": "0"})
    results = []

    def one(i):
        try:
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=60) as s:
                s.sendmail("a@b.example", ["root@localhost"], f"Subject: {i}\r\n\r\nmessage {i}\r\n")
            results.append(True)
        except Exception as e:  # noqa
            results.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    failures = [r for r in results if r is not True]
    assert len(results) == 200 and not failures, f"{len(failures)} failed: {failures[:3]}"
    assert len(os.listdir(os.path.join(inst.queue, "incoming"))) == 200


def test_250_means_on_disk():
    need_root()
    inst = smtp_instance()
    r = Raw(inst.port)
    r.reply()
    r.send("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<root@localhost>\r\nDATA\r\n")
    [r.reply() for _ in range(4)]
    r.send("Subject: durable\r\n\r\n" + "line\r\n" * 1000 + ".\r\n")
    qid = qid_of(r.reply())
    # Kill the whole instance at once, no clean shutdown.
    for pid in inst.our_processes():
        os.kill(pid, signal.SIGKILL)
    inst.master.wait(10)
    inst.start()
    recs = queued(inst, qid)
    assert content_of(recs).endswith(b"line\r\n" * 1000)


def test_submission_adds_missing_date_and_message_id():
    need_root()
    port = free_port()
    inst = smtp_instance(extra_master=f"{port} inet n - y - - smtpd -o always_add_missing_headers=yes\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("a@b.example", ["root@localhost"], b"Subject: bare\r\n\r\nno date here\r\nDate: in body\r\n")
        s.sendmail("a@b.example", ["root@localhost"],
                   b"Subject: full\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <keep@b.example>\r\n\r\nx\r\n")
    bodies = {}
    for f in os.listdir(os.path.join(inst.queue, "incoming")):
        b = content_of(queued(inst, f))
        bodies[b"bare" if b"Subject: bare" in b else b"full"] = b
    bare = bodies[b"bare"]
    head, _, rest = bare.partition(b"\r\n\r\n")
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} ", head), head
    assert re.search(rb"\r\nMessage-ID: <\d+\.\w+@", head), head
    assert rest == b"no date here\r\nDate: in body\r\n", "the body is untouched"
    full = bodies[b"full"]
    assert full.count(b"Date:") == 1 and full.count(b"Message-ID:") == 1
    inst.wait_log(r"message-id=<\d+\.\w+@")
    # Port 25 (no override) adds nothing.
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.sendmail("a@b.example", ["root@localhost"], b"Subject: plain25\r\n\r\nx\r\n")
    for f in os.listdir(os.path.join(inst.queue, "incoming")):
        b = content_of(queued(inst, f))
        if b"plain25" in b:
            assert b"Message-ID:" not in b and b"\r\nDate:" not in b


def test_pregreet_talker_is_logged_and_refused():
    need_root()
    inst = smtp_instance({"smtpd_pregreet_wait": "1s"})
    r = Raw(inst.port)
    r.send("EHLO impatient\r\n")
    text = r.reply()
    assert text.startswith("554 5.5.1"), text
    assert r.closed()
    inst.wait_log(r"PREGREET 16 after greeting pause from unknown\[127\.0\.0\.1\]: EHLO impatient")
    polite = Raw(inst.port)
    assert polite.reply().startswith("220 "), "a client that waits is greeted"


def test_connection_rate_limit():
    need_root()
    inst = smtp_instance({"smtpd_client_connection_rate_limit": "3"})
    got = []
    for _ in range(4):
        c = Raw(inst.port)
        got.append(c.reply()[:3])
        c.send("QUIT\r\n")
    assert got == ["220", "220", "220", "421"], got
    inst.wait_log(r"too many connections from 127\.0\.0\.1: rate 3/60s exceeded")


def test_dsn_parameters_are_stored():
    need_root()
    inst = smtp_instance()
    r = Raw(inst.port)
    r.reply()
    r.send("EHLO x\r\nMAIL FROM:<a@b.example> RET=HDRS ENVID=env+2B1\r\n"
           "RCPT TO:<root@localhost> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Root+40example.test\r\nDATA\r\n")
    [r.reply() for _ in range(4)]
    r.send("Subject: dsn\r\n\r\nx\r\n.\r\n")
    recs = queued(inst, qid_of(r.reply()))
    assert ("r", b"HDRS") in recs and ("e", b"env+1") in recs, recs[:12]
    rcpt = [p for t, p in recs if t == "R"][0]
    assert rcpt[0:1] == b"P" and rcpt[1] == 2 | 8, rcpt
    assert rcpt.endswith(b"rfc822;Root@example.test")


def test_alias_keys_are_local_recipients():
    need_root()
    port = free_port()
    inst = Instance(main_cf={"mydestination": "localhost", "mynetworks": ""},
                    master_cf=f"{port} inet n - y - - smtpd\n")
    with open(os.path.join(inst.etc, "aliases"), "w") as f:
        f.write("# test aliases\nsales: root\nHelpDesk: root, nobody\n")
    r = subprocess.run([os.path.join(inst.main["daemon_directory"], "postern"), "map", "build", "-a",
                        os.path.join(inst.etc, "aliases")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    inst.start()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("x")
        s.mail("a@b.example")
        assert s.rcpt("sales@localhost")[0] == 250
        assert s.rcpt("helpdesk+x@LOCALHOST")[0] == 250
        assert s.rcpt("marketing@localhost")[0] == 550


def test_smtpd_triggers_qmgr_and_stale_files_are_removed():
    need_root()
    port = free_port()
    inst = Instance(main_cf={"mydestination": "localhost", "mynetworks": ""},
                    master_cf=f"{port} inet n - y - - smtpd\nqmgr unix - - y - 1 testd trigger\n")
    os.makedirs(os.path.join(inst.queue, "incoming"), exist_ok=True)
    stale = os.path.join(inst.queue, "incoming", ".tmp-99999-1")
    open(stale, "w").write("half a message")
    inst.start()
    assert not os.path.exists(stale), "master removes unfinished queue files at start-up"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("a@b.example", ["root@localhost"], b"Subject: t\r\n\r\nx\r\n")
    inst.wait_log(r"postern/testd\[\d+\]: trigger: A")


def test_silent_client_after_starttls_is_dropped_and_frees_its_slot():
    need_root()
    from harness import make_cert
    port = free_port()
    inst = Instance(main_cf={"mydestination": "localhost", "mynetworks": "", "smtpd_timeout": "1s",
                             "smtpd_client_connection_count_limit": "1"},
                    master_cf=f"{port} inet n - y - - smtpd\n")
    cert, key = make_cert(inst.etc)
    inst.main.update({"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key})
    inst.write_main_cf()
    inst.start()
    r = Raw(port)
    r.reply()
    r.send("EHLO x\r\nSTARTTLS\r\n")
    r.reply()
    assert r.reply().startswith("220 2.0.0")
    # ... and then the client never starts the handshake.
    inst.wait_log(r"timeout after", timeout=5)
    inst.wait_log(r"disconnect from unknown\[127\.0\.0\.1\]", timeout=5)
    again = Raw(port)
    assert again.reply().startswith("220 "), "the slot of the dropped session is free again"


def test_client_that_never_reads_cannot_grow_server_memory():
    need_root()
    inst = smtp_instance({"smtpd_hard_error_limit": "1000"})
    s = socket.create_connection(("127.0.0.1", inst.port), timeout=3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    chunk = b"HELP\r\n" * 10000
    sent = 0
    try:
        for _ in range(400):  # up to 24 MB, replies ~15x larger
            s.sendall(chunk)
            sent += len(chunk)
    except (socket.timeout, OSError):
        pass
    pid = inst.children()[0]
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
    assert rss < 64 * 1024, f"smtpd RSS {rss} KiB after {sent} bytes from a client that never reads"
    s.close()


def test_queue_failure_during_bdat_never_runs_chunk_as_commands():
    need_root()
    inst = smtp_instance()
    incoming = os.path.join(inst.queue, "incoming")
    os.chmod(incoming, 0o500)
    try:
        r = Raw(inst.port)
        r.reply()
        r.send("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<root@localhost>\r\n")
        r.reply(), r.reply(), r.reply()
        chunk = b"NOOP\r\nHELP\r\nQUIT\r\n"
        r.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        assert r.reply().startswith("451 4.3.0")
        r.send("NOOP\r\n")
        assert r.reply().startswith("250 2.0.0 Ok"), "the chunk was read as data and thrown away"
    finally:
        os.chmod(incoming, 0o700)


def test_pregreet_without_rejection_answers_after_the_greeting():
    need_root()
    inst = smtp_instance({"smtpd_pregreet_wait": "1s", "smtpd_reject_pregreet": "no"})
    r = Raw(inst.port)
    r.send("NOOP\r\n")
    assert r.reply().startswith("220 "), "the greeting comes first"
    assert r.reply().startswith("250 ")
    inst.wait_log(r"PREGREET 6 after greeting pause")


def test_postern_queue_list_and_show():
    need_root()
    import json
    inst = smtp_instance()
    r = inst.postern("queue", "list")
    assert r.returncode == 0 and r.stdout == "Mail queue is empty\n", (r.returncode, r.stdout, r.stderr)
    ids = []
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.ehlo("x")
        for i in range(2):
            s.mail("sender@b.example")
            s.rcpt("root@localhost")
            s.rcpt("postmaster@localhost")
            code, text = s.data(f"Subject: q{i}\r\n\r\nbody {i}\r\n".encode())
            ids.append(qid_of(text.decode()))
    r = inst.postern("queue", "list")
    assert r.returncode == 0, r.stderr
    # Postfix's heading for long queue IDs (queue_cmd_test checks every line).
    assert r.stdout.startswith("----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n")
    for qid in ids:
        assert re.search(rf"^{qid} +\d+ \w{{3}} \w{{3}} +\d+ \d\d:\d\d:\d\d +sender@b\.example$", r.stdout, re.M), r.stdout
    assert r.stdout.count(" " * 47 + "root@localhost\n") == 2
    assert r.stdout.rstrip().endswith("Kbytes in 2 Requests.")
    r = inst.postern("queue", "list", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["queue_id"] for row in rows] == sorted(ids)
    assert rows[0]["sender"] == "sender@b.example" and len(rows[0]["recipients"]) == 2
    r = inst.postern("queue", "show", ids[1])
    assert r.returncode == 0
    assert f"*** ENVELOPE RECORDS incoming/{ids[1]} ***" in r.stdout and "sender: sender@b.example" in r.stdout
    assert "Subject: q1\n\nbody 1\n*** END OF MESSAGE ***" in r.stdout  # text mode folds CRLF
    assert inst.postern("queue", "show", ids[0][:11] + "ZZZZZ").returncode == 66
    assert inst.postern("queue", "show", "../../etc").returncode == 64
