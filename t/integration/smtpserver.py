"""A scripted SMTP server for the smtp delivery agent's tests: a thread that
listens on a loopback address and a free port and answers as the test says.

    srv = SmtpServer(starttls=(cert, key), auth={"relay": "secret"})
    srv.rcpt = lambda addr: "550 5.1.1 no such user" if addr.startswith("bad") else None
    srv.data_reply = ["451 4.3.0 try later", "250 2.0.0 ok"]   # one per transaction, the last repeats
    srv.start()
    ... srv.port, srv.messages (list of dicts: sender, rcpts, data, tls, auth, helo) ...
    srv.stop()

Replies not scripted are the usual 250s. `hang = True` accepts connections and
never says anything (a server that hangs); `ehlo = None` refuses EHLO (502) so
the client must fall back to HELO; `hangup = "DATA"` (any verb, or "." for the
end of the message) closes the connection instead of answering that command;
`close_after_message = True` closes it right after answering the final dot;
`stall = "."` (or a verb) never answers that command and waits for the client
to give up (its timeouts).
Every socket has a timeout, the accept loop polls a stop flag: nothing here
runs unbounded."""
import socket
import ssl
import threading
import base64


class SmtpServer:
    def __init__(self, host="127.0.0.1", port=0, name="sink.example.test", starttls=None, auth=None,
                 ehlo=("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN")):
        self.host = host
        self.name = name
        self.starttls = starttls  # (certfile, keyfile) or None
        self.auth = auth or {}    # user -> password; offered after TLS when set
        self.ehlo = ehlo
        self.greeting = f"220 {name} ESMTP scripted"
        self.mail = None          # fn(sender) -> reply or None
        self.rcpt = None          # fn(address) -> reply or None
        self.data_reply = []      # replies to the final dot, one per transaction (last repeats)
        self.hang = False
        self.hangup = None        # verb (or ".") answered by closing the connection
        self.close_after_message = False
        self.stall = None         # verb (or ".") never answered: the client times out
        self.broken_tls = False   # STARTTLS: 220, then garbage instead of a TLS handshake
        self.messages = []
        self.sessions = 0
        self.commands = []        # every command line received, in order
        self.lock = threading.Lock()
        self._stop = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(50)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._threads = []

    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop = True
        for t in self._threads:
            t.join(timeout=5)
        self._listener.close()

    def received(self):
        with self.lock:
            return list(self.messages)

    # ---- internals ----
    def _accept_loop(self):
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(30)
            with self.lock:
                self.sessions += 1
            t = threading.Thread(target=self._session, args=(conn,), daemon=True)
            t.start()

    def _session(self, conn):
        try:
            if self.hang:
                while not self._stop:
                    try:
                        if not conn.recv(4096):
                            return
                    except socket.timeout:
                        continue
                return
            _Session(self, conn).run()
        except (OSError, EOFError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


class _Session:
    def __init__(self, srv, conn):
        self.srv = srv
        self.conn = conn
        self.buf = b""
        self.tls = False
        self.authed = None
        self.helo = None
        self.reset()

    def reset(self):
        self.sender = None
        self.rcpts = []

    def send(self, text):
        self.conn.sendall(text.encode() + b"\r\n")

    def line(self):
        while b"\n" not in self.buf:
            if self.srv._stop:
                raise EOFError()
            data = self.conn.recv(65536)
            if not data:
                raise EOFError()
            self.buf += data
            if len(self.buf) > 1 << 20 and b"\n" not in self.buf:
                raise EOFError()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def features(self):
        f = list(self.srv.ehlo)
        if self.srv.starttls and not self.tls:
            f.append("STARTTLS")
        if self.srv.auth and self.tls:
            f.append("AUTH PLAIN LOGIN")
        return f

    def run(self):
        srv = self.srv
        self.send(srv.greeting)
        while True:
            cmd = self.line()
            with srv.lock:
                srv.commands.append(cmd)
            verb = cmd.split(" ", 1)[0].upper()
            arg = cmd[len(verb):].strip()
            if srv.hangup and verb == srv.hangup.upper():
                return
            if srv.stall and verb == srv.stall.upper():
                return self.silence()
            if verb == "EHLO":
                if srv.ehlo is None:
                    self.send("502 5.5.2 EHLO not here")
                    continue
                self.helo = arg
                feats = self.features()
                lines = [srv.name] + feats
                for i, l in enumerate(lines):
                    self.send(("250 " if i == len(lines) - 1 else "250-") + l)
                self.reset()
            elif verb == "HELO":
                self.helo = arg
                self.send("250 " + srv.name)
            elif verb == "STARTTLS" and srv.starttls and not self.tls:
                self.send("220 2.0.0 go ahead")
                if srv.broken_tls:
                    self.conn.sendall(b"this is not a TLS record\r\n" * 4)
                    return
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(*srv.starttls)
                self.conn = ctx.wrap_socket(self.conn, server_side=True)
                self.buf = b""
                self.tls = True
                self.reset()
            elif verb == "AUTH" and srv.auth and self.tls:
                self.auth(arg)
            elif verb == "MAIL":
                sender = arg[5:].split(">", 1)[0].lstrip("<") if arg.upper().startswith("FROM:") else ""
                r = srv.mail(sender) if srv.mail else None
                if r:
                    self.send(r)
                else:
                    self.sender = sender
                    self.mail_params = arg
                    self.send("250 2.1.0 ok")
            elif verb == "RCPT":
                addr = arg[3:].split(">", 1)[0].lstrip("<") if arg.upper().startswith("TO:") else ""
                r = srv.rcpt(addr) if srv.rcpt else None
                if self.sender is None:
                    self.send("503 5.5.1 need MAIL first")
                elif r:
                    self.send(r)
                else:
                    self.rcpts.append(addr)
                    self.send("250 2.1.5 ok")
            elif verb == "DATA":
                if self.sender is None or not self.rcpts:
                    self.send("503 5.5.1 no valid recipients")
                    continue
                self.send("354 go ahead")
                data = []
                while True:
                    l = self.line()
                    if l == ".":
                        break
                    data.append(l[1:] if l.startswith(".") else l)
                if srv.hangup == ".":
                    return
                if srv.stall == ".":
                    return self.silence()
                with srv.lock:
                    n = sum(1 for m in srv.messages if m.get("reply", "").startswith("2"))
                    attempt = len([m for m in srv.messages])
                    replies = srv.data_reply
                    reply = replies[min(attempt, len(replies) - 1)] if replies else "250 2.0.0 ok: queued"
                    srv.messages.append({"sender": self.sender, "rcpts": list(self.rcpts),
                                         "data": "\r\n".join(data) + "\r\n", "tls": self.tls,
                                         "auth": self.authed, "helo": self.helo, "reply": reply,
                                         "mail_params": self.mail_params, "delivered_before": n})
                self.send(reply)
                self.reset()
                if srv.close_after_message:
                    return
            elif verb == "RSET":
                self.reset()
                self.send("250 2.0.0 ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 bye")
                return
            else:
                self.send("500 5.5.2 what?")

    def silence(self):
        """Reads and says nothing until the client hangs up (or the server stops)."""
        while not self.srv._stop:
            try:
                if not self.conn.recv(4096):
                    return
            except socket.timeout:
                continue

    def auth(self, arg):
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        if mech == "PLAIN":
            resp = parts[1] if len(parts) > 1 else None
            if resp is None:
                self.send("334 ")
                resp = self.line()
            try:
                _, user, pw = base64.b64decode(resp).decode().split("\0")
            except Exception:
                self.send("501 5.5.2 bad")
                return
        elif mech == "LOGIN":
            self.send("334 VXNlcm5hbWU6")
            user = base64.b64decode(self.line()).decode()
            self.send("334 UGFzc3dvcmQ6")
            pw = base64.b64decode(self.line()).decode()
        else:
            self.send("504 5.5.4 unknown mechanism")
            return
        if self.srv.auth.get(user) == pw:
            self.authed = user
            self.send("235 2.7.0 ok")
        else:
            self.send("535 5.7.8 bad credentials")
