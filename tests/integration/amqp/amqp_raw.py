"""A raw-socket AMQP 0-9-1 peer for tests that must send what no client library would.

Frames are built and parsed here with struct, straight from the spec (AMQP
0-9-1 section 4.2.3: type u8, channel u16, size u32, payload, 0xCE), so the
tests do not depend on the broker's own codec. Every read has a deadline.
"""

import socket
import struct
import time

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE


def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">B", len(b)) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def table(entries=()):
    """A field table of (key, type letter, encoded value bytes) entries."""
    body = b"".join(shortstr(k) + t.encode() + v for k, t, v in entries)
    return struct.pack(">I", len(body)) + body


def frame(ftype, channel, payload, end=FRAME_END, size=None):
    n = len(payload) if size is None else size
    return struct.pack(">BHI", ftype, channel, n) + payload + bytes([end])


def method(channel, class_id, method_id, args=b""):
    return frame(FRAME_METHOD, channel, struct.pack(">HH", class_id, method_id) + args)


def start_ok(user="guest", password="guest", mechanism="PLAIN", response=None):
    if response is None:
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
    caps = table([("authentication_failure_close", "t", b"\x01")])
    props = table([("product", "S", longstr("raw-test")), ("capabilities", "F", caps)])
    return method(0, 10, 11, props + shortstr(mechanism) + longstr(response) + shortstr("en_US"))


def tune_ok(channel_max=2047, frame_max=131072, heartbeat=0):
    return method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, heartbeat))


def connection_open(vhost="/"):
    return method(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")


def connection_close(code=200, text="bye", class_id=0, method_id=0):
    return method(0, 10, 50, struct.pack(">H", code) + shortstr(text) +
                  struct.pack(">HH", class_id, method_id))


def connection_close_ok():
    return method(0, 10, 51)


def channel_open(channel):
    return method(channel, 20, 10, shortstr(""))


def channel_close(channel, code=200, text="bye"):
    return method(channel, 20, 40, struct.pack(">H", code) + shortstr(text) + b"\x00" * 4)


def channel_close_ok(channel):
    return method(channel, 20, 41)


def exchange_declare(channel, name, xtype="direct", passive=False, durable=False):
    bits = (1 if passive else 0) | (2 if durable else 0)
    return method(channel, 40, 10, b"\x00\x00" + shortstr(name) + shortstr(xtype) +
                  bytes([bits]) + table())


def heartbeat():
    return frame(FRAME_HEARTBEAT, 0, b"")


class Frame:
    def __init__(self, ftype, channel, payload):
        self.type, self.channel, self.payload = ftype, channel, payload
        self.class_id = self.method_id = None
        if ftype == FRAME_METHOD and len(payload) >= 4:
            self.class_id, self.method_id = struct.unpack(">HH", payload[:4])

    @property
    def method(self):
        return (self.class_id, self.method_id)

    def close_args(self):
        """(reply code, reply text, class id, method id) of a connection/channel close."""
        p = self.payload[4:]
        code = struct.unpack(">H", p[:2])[0]
        n = p[2]
        text = p[3:3 + n].decode(errors="replace")
        cid, mid = struct.unpack(">HH", p[3 + n:7 + n])
        return code, text, cid, mid

    def __repr__(self):
        return f"Frame(type={self.type}, ch={self.channel}, method={self.method}, " \
               f"len={len(self.payload)})"


class RawAmqp:
    """One raw connection. recv_frame() returns a Frame, or None at EOF."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame from the broker in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise TimeoutError("no frame from the broker in time") from None
        if chunk:
            self.buf += chunk
        return bool(chunk)

    def recv_exact(self, n, timeout=None):
        """n bytes, or fewer if the peer closed first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                break
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if len(self.buf) >= 7:
                ftype, ch, size = struct.unpack(">BHI", self.buf[:7])
                if len(self.buf) >= 8 + size:
                    payload = self.buf[7:7 + size]
                    assert self.buf[7 + size] == FRAME_END, "broker sent a bad frame-end"
                    self.buf = self.buf[8 + size:]
                    return Frame(ftype, ch, payload)
            if not self._fill(deadline):
                return None

    def recv_method(self, timeout=None):
        """The next method frame, skipping heartbeats; None at EOF."""
        while True:
            f = self.recv_frame(timeout)
            if f is None or f.type != FRAME_HEARTBEAT:
                return f

    def wait_closed(self, timeout=None):
        """True once the broker closed the socket (reads drain until EOF)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while self._fill(deadline):
                self.buf = b""
        except (TimeoutError, OSError):
            return False
        return True

    def handshake(self, heartbeat=0, frame_max=131072, channel_max=2047, vhost="/"):
        """Runs the connection negotiation; returns (start, tune) frames."""
        self.send(PROTOCOL_HEADER)
        start = self.recv_method()
        assert start is not None and start.method == (10, 10), start
        self.send(start_ok())
        tune = self.recv_method()
        assert tune is not None and tune.method == (10, 30), tune
        self.send(tune_ok(channel_max, frame_max, heartbeat))
        self.send(connection_open(vhost))
        ok = self.recv_method()
        assert ok is not None and ok.method == (10, 41), ok
        return start, tune

    def open_channel(self, channel):
        self.send(channel_open(channel))
        ok = self.recv_method()
        assert ok is not None and ok.method == (20, 11), ok

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
