"""The memory high watermark: connection.blocked / connection.unblocked.

With a small `memory.high.watermark.bytes`, a consumer that does not read its
socket (no-ack, no prefetch limit, a 16 KiB receive buffer) makes deliveries
pile up in the broker. A raw "filler" publisher (it announces the
connection.blocked capability and never waits on a socket, so the test cannot
hang on a write the broker no longer reads) publishes 64 KiB messages until
the broker holds more than the watermark and keeps it blocked. Then a
connection that publishes is blocked: it is sent connection.blocked (only if
it announced the capability) and its socket is no longer read, so its further
publishes reach no queue. Connections that only consume are still served; when
the slow consumer reads and the memory falls below the low mark (90%), the
publishers get connection.unblocked and everything they published arrives.
Every wait is bounded.
"""

import socket
import struct
import time

import pytest

import amqp_raw as raw

WATERMARK = 2 * 1024 * 1024
BODY = 64 * 1024
MAX_FILL = 400          # 25 MiB: far above the watermark plus what the kernel buffers
PROBES = 5


def basic_consume(channel, queue, no_ack=True):
    """basic.consume (60/20) with a server-made tag."""
    bits = 0x02 if no_ack else 0
    return raw.method(channel, 60, 20, b"\x00\x00" + raw.shortstr(queue) + raw.shortstr("") +
                      bytes([bits]) + raw.table())


def basic_publish(channel, queue, body):
    """basic.publish (60/40) to the default exchange, its content header and body."""
    m = raw.method(channel, 60, 40, b"\x00\x00" + raw.shortstr("") + raw.shortstr(queue) +
                   b"\x00")
    h = raw.frame(raw.FRAME_HEADER, channel, struct.pack(">HHQH", 60, 0, len(body), 0))
    return m + h + raw.frame(raw.FRAME_BODY, channel, body)


def frames_in(buf):
    """Splits whole frames off buf: returns ([Frame], rest)."""
    out = []
    while len(buf) >= 7:
        ftype, ch, size = struct.unpack(">BHI", buf[:7])
        if len(buf) < 8 + size:
            break
        assert buf[7 + size] == raw.FRAME_END, "broker sent a bad frame-end"
        out.append(raw.Frame(ftype, ch, buf[7:7 + size]))
        buf = buf[8 + size:]
    return out, buf


class SlowConsumer(raw.RawAmqp):
    """A raw consumer (no-ack, no prefetch limit) with a 16 KiB receive buffer that
    reads only when told to, so deliveries pile up in the broker."""

    def __init__(self, port, queue):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.settimeout(5.0)
        s.connect(("127.0.0.1", port))
        self.sock, self.timeout, self.buf = s, 5.0, b""
        self.handshake()
        self.open_channel(1)
        self.send(basic_consume(1, queue))
        ok = self.recv_method()
        assert ok is not None and ok.method == (60, 21), ok

    def read_messages(self, count, timeout, idle=None):
        """The bodies of the next count deliveries (bounded by timeout); idle() runs
        whenever nothing came for 50 ms (other clients go on meanwhile)."""
        deadline = time.monotonic() + timeout
        bodies, body, size = [], None, 0
        self.sock.settimeout(0.05)
        while len(bodies) < count:
            assert time.monotonic() < deadline, \
                f"only {len(bodies)} of {count} deliveries in {timeout} s"
            try:
                chunk = self.sock.recv(1 << 20)
                assert chunk, "broker closed the consumer"
                self.buf += chunk
            except socket.timeout:
                if idle:
                    idle()
                continue
            frames, self.buf = frames_in(self.buf)
            for f in frames:
                if f.type == raw.FRAME_METHOD:
                    assert f.method == (60, 60), f
                    body = None
                elif f.type == raw.FRAME_HEADER:
                    size, body = struct.unpack(">Q", f.payload[4:12])[0], b""
                elif f.type == raw.FRAME_BODY:
                    body += f.payload
                if body is not None and len(body) == size and f.type != raw.FRAME_METHOD:
                    bodies.append(body)
                    body = None
        self.sock.settimeout(self.timeout)
        return bodies


def capable_start_ok():
    """connection.start-ok announcing the connection.blocked capability."""
    caps = raw.table([("connection.blocked", "t", b"\x01")])
    props = raw.table([("product", "S", raw.longstr("raw-filler")), ("capabilities", "F", caps)])
    return raw.method(0, 10, 11, props + raw.shortstr("PLAIN") +
                      raw.longstr(b"\x00guest\x00guest") + raw.shortstr("en_US"))


class Filler(raw.RawAmqp):
    """A raw publisher that announces connection.blocked and never blocks the test: it
    writes without waiting and notes connection.blocked / unblocked as they come."""

    def __init__(self, port):
        super().__init__(port)
        self.send(raw.PROTOCOL_HEADER)
        assert self.recv_method().method == (10, 10)
        self.send(capable_start_ok())
        assert self.recv_method().method == (10, 30)
        self.send(raw.tune_ok(heartbeat=0) + raw.connection_open())
        assert self.recv_method().method == (10, 41)
        self.open_channel(1)
        self.sock.setblocking(False)
        self.out = b""
        self.sent = 0
        self.events = []

    def blocked(self):
        return bool(self.events) and self.events[-1] == "blocked"

    def pump(self):
        """Writes what the socket takes now, and notes what the broker sent."""
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                break
            self.out = self.out[n:]
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            assert chunk, "broker closed the filler"
            self.buf += chunk
        frames, self.buf = frames_in(self.buf)
        for f in frames:
            if f.method == (10, 60):
                self.events.append("blocked")
            elif f.method == (10, 61):
                self.events.append("unblocked")

    def fill(self, queue, timeout=20):
        """Publishes 64 KiB messages until blocked, and blocked for 0.5 s; returns how
        many were queued (the last ones may still wait in self.out until unblocked).

        The kernel's socket buffers towards the slow consumer (up to tcp_wmem's
        4 MiB on the broker's side) are not the broker's memory: deliveries they
        take after a block may bring the account below the low mark again, and
        the filler is unblocked after one check (100 ms); it publishes more until
        what the broker holds stays above the mark.
        """
        deadline = time.monotonic() + timeout
        while True:
            while not self.blocked():
                assert time.monotonic() < deadline, f"not blocked in {timeout} s"
                assert self.sent < MAX_FILL, f"not blocked after {self.sent} messages"
                if len(self.out) < BODY:
                    self.out += basic_publish(1, queue, b"F" + struct.pack(">I", self.sent) +
                                              b"x" * (BODY - 5))
                    self.sent += 1
                self.pump()
                if self.out:
                    time.sleep(0.002)
            end = time.monotonic() + 0.5
            while time.monotonic() < end and self.blocked():
                self.pump()
                time.sleep(0.01)
            if self.blocked():
                return self.sent


def check_filler_bodies(bodies, sent):
    """The filler's messages, all of them, in publishing order."""
    got = [struct.unpack(">I", b[1:5])[0] for b in bodies if b[:1] == b"F"]
    assert got == list(range(sent))
    assert all(len(b) == BODY for b in bodies if b[:1] == b"F")


def message_count(conn, queue):
    return conn.channel().queue_declare(queue, passive=True).method.message_count


def wait_for(cond, timeout, what, poll=None):
    """Waits (bounded) until cond() is true; poll() runs between tries."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        if poll:
            poll()
        else:
            time.sleep(0.05)


def is_blocked(pub):
    return len(pub.blocked) > len(pub.unblocked)


def blocking_publisher(pika_connect, broker, **params):
    """A pika connection (it announces connection.blocked) recording blocked/unblocked."""
    params.setdefault("blocked_connection_timeout", 30)
    pub = pika_connect(broker, **params)
    pub.blocked, pub.unblocked = [], []
    pub.add_on_connection_blocked_callback(
        lambda conn, frame: pub.blocked.append(frame.method.reason))
    pub.add_on_connection_unblocked_callback(lambda conn, frame: pub.unblocked.append(True))
    return pub


def slow_consumer_and_filler(broker, pika_connect):
    """Declares the queues "wm" and "probe" on an admin connection, and starts a
    SlowConsumer of "wm" and a Filler: (admin, consumer, filler)."""
    admin = pika_connect(broker)
    setup = admin.channel()
    setup.queue_declare("wm")
    setup.queue_declare("probe")
    return admin, SlowConsumer(broker.amqp_port, "wm"), Filler(broker.amqp_port)


@pytest.fixture
def watermark_broker(amqp_factory):
    return amqp_factory(config_lines=[f"memory.high.watermark.bytes = {WATERMARK}"]).start()


@pytest.mark.amqp_timeout(90)
def test_blocked_until_slow_consumer_drains(watermark_broker, pika_connect):
    broker = watermark_broker
    admin, consumer, filler = slow_consumer_and_filler(broker, pika_connect)
    try:
        pub = blocking_publisher(pika_connect, broker)
        ch = pub.channel()
        sent = filler.fill("wm")
        wait_for(lambda: "memory high watermark passed" in broker.stderr, 5, "the alarm logged")

        # The pika publisher publishes into the alarm: it is blocked, and its
        # publishes are not read any more, so they reach no queue.
        ch.basic_publish("", "wm", b"P" + b"pika")
        wait_for(lambda: is_blocked(pub), 10, "connection.blocked",
                 poll=lambda: pub.process_data_events(0.05))
        assert pub.blocked == ["low on memory"]
        for i in range(PROBES):
            ch.basic_publish("", "probe", b"probe %d" % i)
        end = time.monotonic() + 0.7
        while time.monotonic() < end:
            pub.process_data_events(0.05)
        assert message_count(admin, "probe") == 0
        assert is_blocked(pub) and pub.is_open

        # The consumer (a connection that only consumes) is still served: it reads
        # everything; the memory drains and the publishers are unblocked.
        def others():
            filler.pump()
            pub.process_data_events(0)
        bodies = consumer.read_messages(sent + 1, timeout=40, idle=others)
        check_filler_bodies(bodies, sent)
        assert [b for b in bodies if b[:1] == b"P"] == [b"Ppika"]
        wait_for(lambda: not is_blocked(pub), 10, "connection.unblocked",
                 poll=lambda: pub.process_data_events(0.05))
        assert pub.blocked == ["low on memory"] and pub.unblocked == [True]
        wait_for(lambda: message_count(admin, "probe") == PROBES, 10, "the probes stored")
        wait_for(lambda: "memory below the low mark" in broker.stderr, 5, "the clear logged")
        wait_for(lambda: filler.events[-1] == "unblocked", 10, "connection.unblocked (filler)",
                 poll=filler.pump)

        # Publishing goes on as usual once unblocked.
        ch.basic_publish("", "wm", b"Pafter")
        assert consumer.read_messages(1, timeout=10) == [b"Pafter"]
        got = [admin.channel().basic_get("probe", auto_ack=True)[2] for _ in range(PROBES)]
        assert got == [b"probe %d" % i for i in range(PROBES)]
    finally:
        filler.close()
        consumer.close()


@pytest.mark.amqp_timeout(90)
def test_client_without_capability_is_paused_silently(watermark_broker, pika_connect):
    broker = watermark_broker
    admin, consumer, filler = slow_consumer_and_filler(broker, pika_connect)
    # raw.start_ok announces only authentication_failure_close, not connection.blocked.
    quiet = raw.RawAmqp(broker.amqp_port)
    try:
        quiet.handshake(heartbeat=0)
        quiet.open_channel(1)
        sent = filler.fill("wm")

        # The alarm is on: the client without the capability publishes.
        quiet.send(b"".join(basic_publish(1, "probe", b"quiet %d" % i) for i in range(PROBES)))
        time.sleep(0.7)
        assert message_count(admin, "probe") == 0, "a paused connection's publish was read"
        with pytest.raises(TimeoutError):
            f = quiet.recv_frame(timeout=0.3)
            pytest.fail(f"the client without the capability was sent {f!r}")

        check_filler_bodies(consumer.read_messages(sent, timeout=40, idle=filler.pump), sent)
        wait_for(lambda: filler.events[-1] == "unblocked", 10,
                 "connection.unblocked (capable client)", poll=filler.pump)
        wait_for(lambda: message_count(admin, "probe") == PROBES, 10,
                 "the paused client's publishes stored")
        with pytest.raises(TimeoutError):
            f = quiet.recv_frame(timeout=0.3)
            pytest.fail(f"the client without the capability was sent {f!r}")
        # It is read again: channel.close is answered.
        quiet.send(raw.channel_close(1))
        ok = quiet.recv_method()
        assert ok is not None and ok.method == (20, 41), ok
    finally:
        quiet.close()
        filler.close()
        consumer.close()


@pytest.mark.amqp_timeout(90)
def test_watermark_zero_disables(amqp_factory, pika_connect):
    broker = amqp_factory(config_lines=["memory.high.watermark.bytes = 0"]).start()
    admin = pika_connect(broker)
    admin.channel().queue_declare("wm")
    consumer = SlowConsumer(broker.amqp_port, "wm")
    filler = Filler(broker.amqp_port)
    try:
        n = 160  # 10 MiB for the consumer: more than the kernel buffers plus 2 MiB
        for i in range(n):
            filler.out += basic_publish(1, "wm", b"F" + struct.pack(">I", i) + b"z" * (BODY - 5))
            filler.sent += 1
        filler.pump()
        check_filler_bodies(consumer.read_messages(n, timeout=40, idle=filler.pump), n)
        filler.pump()
        assert filler.events == []
        assert "memory high watermark passed" not in broker.stderr
    finally:
        filler.close()
        consumer.close()


@pytest.mark.amqp_timeout(90)
def test_blocked_client_not_closed_for_missed_heartbeats(watermark_broker, pika_connect):
    """While blocked the client's heartbeats cannot be read: a block longer than two
    heartbeat intervals must not close it (RabbitMQ pauses its monitor too)."""
    broker = watermark_broker
    admin = pika_connect(broker)
    admin.channel().queue_declare("wm")
    consumer = SlowConsumer(broker.amqp_port, "wm")
    filler = Filler(broker.amqp_port)
    try:
        pub = blocking_publisher(pika_connect, broker, heartbeat=1)
        ch = pub.channel()
        sent = filler.fill("wm")
        # The heartbeat client publishes into the alarm: blocked for 3 s > 2 intervals.
        ch.basic_publish("", "wm", b"Phb")
        wait_for(lambda: is_blocked(pub), 10, "connection.blocked",
                 poll=lambda: pub.process_data_events(0.05))
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            pub.process_data_events(0.1)
        assert pub.is_open and is_blocked(pub)
        assert "missed heartbeats" not in broker.stderr

        def others():
            filler.pump()
            pub.process_data_events(0)
        bodies = consumer.read_messages(sent + 1, timeout=40, idle=others)
        check_filler_bodies(bodies, sent)
        wait_for(lambda: not is_blocked(pub), 10, "connection.unblocked",
                 poll=lambda: pub.process_data_events(0.05))
        # Still alive and served after the unblock.
        ch.queue_declare("after")
        assert pub.is_open
        assert "missed heartbeats" not in broker.stderr
    finally:
        filler.close()
        consumer.close()
