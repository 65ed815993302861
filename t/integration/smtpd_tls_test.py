"""smtpd with TLS: STARTTLS on port 25 and on submission (587-style, where it
is required before MAIL), implicit TLS (465-style), STARTTLS command
injection, the Received header and the TLS log line, and key-file checks."""
import os
import re
import smtplib
import socket
import ssl

from harness import Instance, make_cert, need_root, free_port
from smtpd_test import Raw, content_of, qid_of, queued


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_instance():
    p25, p587, p465 = free_port(), free_port(), free_port()
    inst = Instance(main_cf={"mydestination": "localhost", "mynetworks": ""})
    cert, key = make_cert(inst.etc)
    inst.main.update({"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key})
    inst.write_main_cf()
    inst.write_master_cf(f"{p25} inet n - y - - smtpd\n"
                         f"{p587} inet n - y - - smtpd -o smtpd_tls_security_level=encrypt\n"
                         f"{p465} inet n - y - - smtpd -o smtpd_tls_wrappermode=yes\n")
    inst.start()
    inst.p25, inst.p587, inst.p465 = p25, p587, p465
    return inst


def test_starttls_on_25_and_tls_in_received_header():
    need_root()
    inst = tls_instance()
    with smtplib.SMTP("127.0.0.1", inst.p25, timeout=10) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=client_ctx())
        assert code == 220
        s.ehlo("client.example")
        assert not s.has_extn("starttls"), "STARTTLS is not offered again inside TLS"
        s.sendmail("a@b.example", ["root@localhost"], b"Subject: tls\r\n\r\nover tls\r\n")
    inst.wait_log(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)")
    qid = re.search(r"(\w+): client=", inst.log()).group(1)
    body = content_of(queued(inst, qid))
    assert re.search(rb"\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\)\r\n\tby \S+ \(Postern\) with ESMTPS id ", body), body[:300]


def test_submission_requires_starttls_before_mail():
    need_root()
    inst = tls_instance()
    with smtplib.SMTP("127.0.0.1", inst.p587, timeout=10) as s:
        s.ehlo("x")
        code, text = s.mail("a@b.example")
        assert code == 530 and b"5.7.0" in text, (code, text)
        s.starttls(context=client_ctx())
        s.ehlo("x")
        assert s.mail("a@b.example")[0] == 250


def test_implicit_tls():
    need_root()
    inst = tls_instance()
    with smtplib.SMTP_SSL("127.0.0.1", inst.p465, timeout=10, context=client_ctx()) as s:
        code, _ = s.ehlo("x")
        assert code == 250 and not s.has_extn("starttls")
        s.sendmail("a@b.example", ["root@localhost"], b"Subject: 465\r\n\r\nimplicit\r\n")
    inst.wait_log(r"from=<a@b\.example>, size=\d+, nrcpt=1")


def test_starttls_injection_is_discarded():
    need_root()
    inst = tls_instance()
    raw = socket.create_connection(("127.0.0.1", inst.p25), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220")
    raw.sendall(b"EHLO x\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    # The classic injection: a command pipelined in plaintext after STARTTLS.
    raw.sendall(b"STARTTLS\r\nRSET\r\n")
    assert f.readline().startswith(b"220 2.0.0")
    tls = client_ctx().wrap_socket(raw, server_hostname="mx.example.test")
    tls.sendall(b"NOOP\r\n")
    first = tls.recv(1000)
    assert first.startswith(b"250 2.0.0 Ok"), first
    assert first.count(b"\r\n") == 1, f"only the NOOP is answered, not an injected RSET: {first!r}"
    tls.sendall(b"MAIL FROM:<a@b.example>\r\n")
    assert tls.recv(1000).startswith(b"503 5.5.1"), "EHLO state is forgotten after STARTTLS (RFC 3207)"
    tls.close()
    inst.wait_log(r"discarding \d+ bytes of plaintext")


def test_ehlo_in_the_same_segment_as_the_handshake_end():
    """A client (our own smtp agent does this) may send EHLO in the same TCP
    segment as its last handshake message: libevent then has the EHLO before
    it reports the handshake done. smtpd must answer it as a TLS EHLO (no
    STARTTLS offered) and keep the session's state for the MAIL after it."""
    need_root()
    inst = tls_instance()
    s = socket.create_connection(("127.0.0.1", inst.p25), timeout=10)
    f = s.makefile("rb")

    def reply():
        lines = []
        while True:
            line = f.readline()
            assert line, "connection closed"
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)
    try:
        reply()
        s.sendall(b"EHLO client.example\r\n")
        reply()
        s.sendall(b"STARTTLS\r\n")
        assert reply().startswith(b"220")
        inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_ctx().wrap_bio(inb, outb)
        for _ in range(20):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outb.pending:
                    s.sendall(outb.read())
                inb.write(s.recv(65536))
        tls.write(b"EHLO client.example\r\n")
        s.sendall(outb.read())  # the client's Finished and EHLO in one write

        def tls_reply():
            buf = b""
            for _ in range(50):
                try:
                    buf += tls.read(65536)
                except ssl.SSLWantReadError:
                    pass
                if re.search(rb"(^|\n)\d{3} [^\n]*\n", buf):
                    return buf
                data = s.recv(65536)
                assert data, "connection closed"
                inb.write(data)
            raise AssertionError(f"no complete reply: {buf!r}")
        ehlo = tls_reply()
        assert ehlo.startswith(b"250") and b"STARTTLS" not in ehlo, ehlo
        tls.write(b"MAIL FROM:<a@b.example>\r\n")
        s.sendall(outb.read())
        mail = tls_reply()
        assert mail.startswith(b"250 2.1.0"), mail
    finally:
        s.close()


def test_world_readable_key_is_refused():
    need_root()
    port = free_port()
    inst = Instance(main_cf={"mydestination": "localhost"})
    cert, key = make_cert(inst.etc)
    os.chmod(key, 0o644)
    inst.main.update({"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key})
    inst.write_main_cf()
    inst.write_master_cf(f"{port} inet n - y - - smtpd -o smtpd_tls_security_level=encrypt\n")
    inst.start()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).recv(100)
    except OSError:
        pass
    inst.wait_log(r"private key must not be accessible by group or others")
    inst.wait_log(r"bad command startup -- throttling")
