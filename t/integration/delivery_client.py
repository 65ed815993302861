"""The qmgr side of the delivery-agent protocol, for tests that drive an agent
(local, smtp, ...) without a queue manager.

Queue files (lib/queue/queue.hpp): records of 1 byte type, 4-byte big-endian
payload length, payload. IPC frames (lib/ipc/ipc.hpp): 4-byte length, then a
2-byte attribute count and per attribute a 1-byte name length, the name, a
4-byte value length and the value. DeliveryRequest / DeliveryReply attributes
are those of lib/delivery/delivery.hpp, in the order delivery::encode writes.

    recs = read_records(path)
    outcomes = deliver(queue_dir, qid)          # moves incoming/ID to active/ID first
    outcomes[0]["kind"] == "S"; outcomes[0]["dsn"], ["relay"], ["reason"]
    replies = deliver_pipelined(queue_dir, [(qid1, None), (qid2, [1])])   # one connection, back-to-back
    replies[1][0]["index"] == 1
"""
import os
import socket
import struct


def read_records(path):
    """The records of a queue file as (type, payload, offset after the record)."""
    with open(path, "rb") as f:
        data = f.read()
    recs, pos = [], 0
    while pos + 5 <= len(data):
        t = data[pos:pos + 1].decode("latin-1")
        (n,) = struct.unpack(">I", data[pos + 1:pos + 5])
        end = pos + 5 + n
        recs.append((t, data[pos + 5:end], end))
        pos = end
    return recs


def content_offset(recs):
    """Offset of the first record after 'M' (what read_envelope reports)."""
    for t, _, end in recs:
        if t == "M":
            return end
    raise AssertionError("queue file has no M record")


def envelope(recs):
    """sender, arrival time (us) and recipients [(address, orcpt, notify)] of a queue file."""
    env = {"sender": "", "arrival": 0, "recipients": [], "id": "", "content": b""}
    for t, p, _ in recs:
        if t == "S":
            env["sender"] = p.decode("utf-8", "replace")
        elif t == "T":
            env["arrival"] = int(p)
        elif t == "I":
            env["id"] = p.decode()
        elif t == "R":
            notify = p[1]
            (alen,) = struct.unpack(">H", p[2:4])
            env["recipients"].append((p[4:4 + alen].decode("utf-8", "replace"),
                                      p[4 + alen:].decode("utf-8", "replace"), notify))
        elif t == "B":
            env["content"] += p
    return env


def encode_frame(attrs):
    payload = struct.pack(">H", len(attrs))
    for name, value in attrs:
        n = name.encode()
        v = value if isinstance(value, bytes) else str(value).encode()
        payload += struct.pack(">B", len(n)) + n + struct.pack(">I", len(v)) + v
    return struct.pack(">I", len(payload)) + payload


def decode_frame(payload):
    (count,) = struct.unpack(">H", payload[:2])
    pos, out = 2, []
    for _ in range(count):
        nlen = payload[pos]
        name = payload[pos + 1:pos + 1 + nlen].decode()
        pos += 1 + nlen
        (vlen,) = struct.unpack(">I", payload[pos:pos + 4])
        out.append((name, payload[pos + 4:pos + 4 + vlen]))
        pos += 4 + vlen
    assert pos == len(payload), "trailing bytes in frame"
    return out


def request_attrs(qid, offset, sender, recipients, transport="local", nexthop="", arrival_us=0, active_us=0,
                  envid="", ret="", body="", smtputf8=False):
    """recipients: [(index, address, orcpt, notify)]."""
    attrs = [("request", "DeliveryRequest"), ("queue_id", qid), ("queue_file", "active/" + qid),
             ("content_offset", offset), ("arrival", arrival_us), ("active", active_us), ("sender", sender),
             ("envid", envid), ("ret", ret), ("body", body), ("smtputf8", "1" if smtputf8 else "0"),
             ("transport", transport), ("nexthop", nexthop), ("count", len(recipients))]
    for i, (index, address, orcpt, notify) in enumerate(recipients):
        attrs.append((f"rcpt_{i}", f"{index} {notify} {address}".encode() + b"\0" + orcpt.encode()))
    return attrs


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"agent closed the connection after {len(data)} of {n} bytes")
        data += chunk
    return data


def exchange(sock_path, attrs, timeout=60):
    """Sends one request frame, returns the reply's attributes."""
    return exchange_pipelined(sock_path, [attrs], timeout)[0]


def exchange_pipelined(sock_path, attrs_list, timeout=60):
    """Sends every request frame back-to-back on one connection (one write, as
    qmgr does), then reads one reply frame per request; returns their
    attributes, in the order they came."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(b"".join(encode_frame(a) for a in attrs_list))
        replies = []
        for _ in attrs_list:
            (n,) = struct.unpack(">I", _recv_exact(s, 4))
            replies.append(decode_frame(_recv_exact(s, n)))
        return replies


def parse_reply(attrs):
    d = dict(attrs)
    assert d.get("request") == b"DeliveryReply", attrs
    out = []
    for i in range(int(d["count"])):
        v = d[f"out_{i}"]
        head, relay, reason = v.split(b"\0")
        index, kind, dsn = head.decode().split(" ")
        out.append({"index": int(index), "kind": kind, "dsn": dsn, "relay": relay.decode(),
                    "reason": reason.decode("utf-8", "replace")})
    return out


def activate(queue_dir, qid):
    """incoming/ID -> active/ID (what qmgr does before delivering)."""
    src = os.path.join(queue_dir, "incoming", qid)
    if os.path.exists(src):
        os.rename(src, os.path.join(queue_dir, "active", qid))
    return os.path.join(queue_dir, "active", qid)


def request_for(queue_dir, qid, transport="local", indexes=None):
    """The DeliveryRequest attributes for the message's recipients (all, or
    those at indexes), after moving it to active/."""
    path = activate(queue_dir, qid)
    recs = read_records(path)
    env = envelope(recs)
    rcpts = [(i, a, o, n) for i, (a, o, n) in enumerate(env["recipients"]) if indexes is None or i in indexes]
    return request_attrs(qid, content_offset(recs), env["sender"], rcpts, transport=transport,
                         arrival_us=env["arrival"], active_us=env["arrival"])


def deliver(queue_dir, qid, transport="local", indexes=None, timeout=60):
    """Asks the agent behind queue_dir/private/<transport> to deliver the
    message's recipients (all, or those at indexes); returns the outcomes."""
    attrs = request_for(queue_dir, qid, transport, indexes)
    return parse_reply(exchange(os.path.join(queue_dir, "private", transport), attrs, timeout))


def deliver_pipelined(queue_dir, requests, transport="local", timeout=60):
    """requests: [(qid, indexes or None)]. Sends all the requests back-to-back
    on one connection and returns the outcomes of each reply, in order."""
    attrs = [request_for(queue_dir, qid, transport, indexes) for qid, indexes in requests]
    replies = exchange_pipelined(os.path.join(queue_dir, "private", transport), attrs, timeout)
    return [parse_reply(r) for r in replies]
