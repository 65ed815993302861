"""SMTP AUTH (RFC 4954) end to end: the auth daemon with the real pam_unix
stack (a system user the test creates) and a virtual user made with `postern
user add`; smtplib and swaks on submission (587-style, STARTTLS) and smtps
(465-style); relaying only after AUTH; the refusals before TLS, before AUTH,
for a wrong password and for another user's sender; the failure delay, the
lock-out and the log lines fail2ban's postfix-sasl filter matches."""
import os
import re
import secrets
import smtplib
import socket
import ssl
import subprocess
import time

from harness import BIN, ROOT, Instance, make_cert, need_root, free_port, wait_for

# The shape of fail2ban's postfix-sasl failregex (our own reading of it): a
# warning naming the client, the mechanism, and a tail of letters and spaces.
FAIL2BAN = re.compile(r"smtpd\[\d+\]: warning: [-._\w]+\[(?P<host>[0-9.]+)\]: "
                      r"SASL (?:LOGIN|PLAIN) authentication failed(?::[ A-Za-z0-9+/:]*={0,2})?\s*$", re.M)


def auth_once(s, mech, user, password):
    """One AUTH command (smtplib's login() falls back to the next mechanism
    after a failure, which would count twice)."""
    s.user, s.password = user, password
    return s.auth(mech, getattr(s, "auth_" + mech.lower()), initial_response_ok=True)


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SystemUser:
    """A login with a known password, through the machine's passwd/shadow."""

    def __init__(self):
        self.name = "pta" + secrets.token_hex(4)
        self.password = "pw-" + secrets.token_hex(8)
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", self.name], check=True)
        subprocess.run(["chpasswd"], input=f"{self.name}:{self.password}\n", text=True, check=True)

    def remove(self):
        subprocess.run(["userdel", self.name], check=False, capture_output=True)


class PamService:
    """/etc/pam.d/<name>: the standard stack, as etc/pam.d/postern ships it."""

    def __init__(self):
        self.name = f"postern-t{os.getpid()}"
        self.path = f"/etc/pam.d/{self.name}"
        with open(os.path.join(ROOT, "etc", "pam.d", "postern")) as f:
            text = f.read()
        with open(self.path, "w") as f:
            f.write(text)

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def auth_instance(**extra):
    p25, p587, p465 = free_port(), free_port(), free_port()
    pam = PamService()
    inst = Instance(main_cf={
        "mydestination": "localhost",
        "mynetworks": "",
        "virtual_mailbox_domains": "virt.test",
        "auth_pam_service": pam.name,
        "auth_failure_delay": "1s",
        "auth_failure_max_delay": "2s",
        "auth_lockout_threshold": "5",
        "auth_lockout_time": "60s",
        **extra,
    }, name="auth")
    inst.pam = pam
    vbase = os.path.join(inst.dir, "vmail")
    os.makedirs(vbase)
    inst.main.update({"virtual_mailbox_base": vbase,
                      "virtual_mailbox_maps": f"hash:{inst.etc}/user_mailboxes",
                      "virtual_uid_maps": "static:65534", "virtual_gid_maps": "static:65534"})
    cert, key = make_cert(inst.etc)
    inst.main.update({"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key})
    inst.write_main_cf()
    sub = ("-o smtpd_sasl_auth_enable=yes -o smtpd_sasl_auth_required=yes "
           "-o smtpd_reject_sender_login_mismatch=yes")
    inst.write_master_cf(f"{p25} inet n - y - - smtpd -o smtpd_sasl_auth_enable=yes\n"
                         f"{p587} inet n - y - - smtpd -o smtpd_tls_security_level=encrypt {sub}\n"
                         f"{p465} inet n - y - - smtpd -o smtpd_tls_wrappermode=yes {sub}\n"
                         "auth unix - n n - 1 auth\n")
    inst.user = SystemUser()
    inst.vuser, inst.vpass = "vera@virt.test", "v-" + secrets.token_hex(8)
    r = subprocess.run([os.path.join(BIN, "postern"), "-c", inst.etc, "user", "add", inst.vuser],
                       input=inst.vpass + "\n", text=True, capture_output=True)
    assert r.returncode == 0, r.stderr
    inst.start()
    inst.p25, inst.p587, inst.p465 = p25, p587, p465
    return inst


def finish(inst):
    inst.user.remove()
    inst.pam.remove()
    inst.stop()


def queue_file_text(inst, qid):
    """The queue file of qid as text (it sits in incoming/: no qmgr here)."""
    path = wait_for(lambda: next((os.path.join(inst.queue, d, qid) for d in ("incoming", "active", "deferred")
                                  if os.path.exists(os.path.join(inst.queue, d, qid))), None),
                    what=f"queue file {qid}")
    with open(path, "rb") as f:
        return f.read()


def test_submission_starttls_then_auth_then_relay():
    need_root()
    inst = auth_instance()
    try:
        u = inst.user
        with smtplib.SMTP("127.0.0.1", inst.p587, timeout=20) as s:
            s.ehlo("client.example")
            assert not s.has_extn("auth"), "no AUTH before TLS"
            code, text = s.docmd("AUTH", "PLAIN AHVzZXIAcHc=")
            assert code == 530 and b"5.7.0" in text, (code, text)
            code, text = s.mail(f"{u.name}@localhost")
            assert code == 530 and b"STARTTLS" in text, (code, text)
            s.starttls(context=client_ctx())
            s.ehlo("client.example")
            assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
            code, text = s.mail(f"{u.name}@localhost")
            assert code == 530 and text.startswith(b"5.7.0 Authentication required"), (code, text)
            s.rset()
            code, _ = s.login(u.name, u.password)
            assert code == 235
            refused = s.sendmail(f"{u.name}@localhost", ["someone@far.example"],
                                 b"Subject: via submission\r\n\r\nrelayed after AUTH\r\n")
            assert refused == {}
        line = inst.wait_log(r"\w+: client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username=" + u.name)
        qid = re.search(r"(\w+): client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN", inst.log()).group(1)
        text = queue_file_text(inst, qid)
        assert b"with ESMTPSA id " + qid.encode() in text, text[:400]
        assert u.name.encode() in text  # the sasl_username record
        assert line
    finally:
        finish(inst)


def test_smtps_virtual_user_and_sender_ownership():
    need_root()
    inst = auth_instance()
    try:
        with smtplib.SMTP_SSL("127.0.0.1", inst.p465, timeout=20, context=client_ctx()) as s:
            s.ehlo("client.example")
            assert s.has_extn("auth")
            s.login(inst.vuser, inst.vpass)
            code, text = s.mail("other@virt.test")
            assert code == 553 and b"5.7.1" in text and b"not owned by user vera@virt.test" in text, (code, text)
            code, text = s.mail("postmaster@localhost")
            assert code == 553, (code, text)
            assert s.mail("Vera+tag@Virt.test")[0] == 250
            assert s.rcpt("x@far.example")[0] == 250
            s.rset()
        inst.wait_log(r"NOQUEUE: reject: MAIL from unknown\[127\.0\.0\.1\]: 553 5\.7\.1 <other@virt\.test>")
    finally:
        finish(inst)


def test_swaks_on_submission_and_port_25():
    need_root()
    inst = auth_instance()
    try:
        u = inst.user
        ok = subprocess.run(["swaks", "--server", f"127.0.0.1:{inst.p587}", "--tls", "--auth", "LOGIN",
                             "--auth-user", u.name, "--auth-password", u.password, "--from", f"{u.name}@localhost",
                             "--to", "friend@far.example", "--timeout", "20"], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "235 2.7.0 Authentication successful" in ok.stdout
        inst.wait_log(r"sasl_method=LOGIN, sasl_username=" + u.name)
        # Port 25: relaying is refused without AUTH, AUTH is not offered in
        # plaintext, and after STARTTLS + AUTH the same relay is accepted.
        with smtplib.SMTP("127.0.0.1", inst.p25, timeout=20) as s:
            s.ehlo("client.example")
            assert not s.has_extn("auth")
            s.mail("a@b.example")
            code, text = s.rcpt("x@far.example")
            assert code == 554 and b"5.7.1" in text and b"Relay access denied" in text, (code, text)
            s.rset()
            s.starttls(context=client_ctx())
            s.ehlo("client.example")
            assert s.has_extn("auth")
            assert s.mail("a@b.example")[0] == 250, "AUTH is never required on port 25"
            s.rset()
            s.login(inst.vuser, inst.vpass)
            s.mail(inst.vuser)
            assert s.rcpt("x@far.example")[0] == 250
    finally:
        finish(inst)


def test_wrong_password_delay_lockout_and_fail2ban_lines():
    need_root()
    inst = auth_instance()
    try:
        u = inst.user
        swaks = subprocess.run(["swaks", "--server", f"127.0.0.1:{inst.p587}", "--tls", "--auth", "PLAIN",
                                "--auth-user", u.name, "--auth-password", "wrong", "--from", f"{u.name}@localhost",
                                "--to", "x@far.example", "--timeout", "20"], capture_output=True, text=True)
        assert swaks.returncode != 0
        assert "535 5.7.8" in swaks.stdout, swaks.stdout
        # A wrong password is answered late; the third failure in a session
        # ends it (smtpd_sasl_failure_limit = 3).
        with smtplib.SMTP("127.0.0.1", inst.p587, timeout=30) as s:
            s.starttls(context=client_ctx())
            s.ehlo("client.example")
            for attempt in range(3):
                t0 = time.monotonic()
                try:
                    auth_once(s, "PLAIN", u.name, f"wrong{attempt}")
                    raise AssertionError("a wrong password was accepted")
                except smtplib.SMTPAuthenticationError as e:
                    assert e.smtp_code == 535 and e.smtp_error.startswith(b"5.7.8"), e
                except smtplib.SMTPServerDisconnected:
                    assert attempt == 2
                assert time.monotonic() - t0 >= 0.8, "failures are delayed (auth_failure_delay)"
            try:
                code, _ = s.noop()
                assert code == 421
            except smtplib.SMTPServerDisconnected:
                pass
        inst.wait_log(r"too many failed AUTH attempts \(smtpd_sasl_failure_limit=3\)")
        # Four failures so far from 127.0.0.1 and for the user: one more reaches
        # the threshold of 5, after which even the right password is refused.
        with smtplib.SMTP_SSL("127.0.0.1", inst.p465, timeout=30, context=client_ctx()) as s:
            s.ehlo("client.example")
            try:
                auth_once(s, "LOGIN", u.name, "wrong-again")
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code in (535, 454), e
            try:
                auth_once(s, "PLAIN", u.name, u.password)
                raise AssertionError("a locked-out client got in")
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code == 454 and e.smtp_error.startswith(b"4.7.0"), e
        lines = [m for m in FAIL2BAN.finditer(inst.log())]
        assert len(lines) >= 5, inst.log()[-3000:]
        assert all(m.group("host") == "127.0.0.1" for m in lines)
        assert u.password not in inst.log() and "wrong0" not in inst.log()
    finally:
        finish(inst)


def test_loopback_plaintext_auth_when_tls_auth_only_is_off():
    need_root()
    inst = auth_instance(smtpd_tls_auth_only="no")
    try:
        with smtplib.SMTP("127.0.0.1", inst.p25, timeout=20) as s:
            s.ehlo("client.example")
            assert s.has_extn("auth"), "loopback client, smtpd_tls_auth_only = no"
            s.login(inst.vuser, inst.vpass)
            s.mail(inst.vuser)
            assert s.rcpt("x@far.example")[0] == 250
    finally:
        finish(inst)
