"""The memory high watermark: connection.blocked / connection.unblocked.

With a small `memory.high.watermark.bytes`, a consumer that does not read its
socket (prefetch 0, a tiny receive buffer) makes deliveries pile up in the
broker's output buffer for it. Once the broker holds more than the watermark,
a connection that publishes is blocked: it is sent connection.blocked (only if
it announced the capability) and its socket is no longer read, so its further
publishes do not reach any queue. Connections that only consume are still
served; when the slow consumer reads and the memory falls below the low mark
(90%), the publisher gets connection.unblocked and everything it published
arrives. Every wait is bounded.
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


class SlowConsumer(raw.RawAmqp):
    """A raw consumer with a small receive buffer that reads only when told to."""

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

    def read_messages(self, count, timeout):
        """The bodies of the next count deliveries (bounded by timeout)."""
        deadline = time.monotonic() + timeout
        bodies = []
        while len(bodies) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(bodies)} of {count} deliveries in {timeout} s"
            f = self.recv_method(timeout=left)
            assert f is not None, "broker closed the consumer"
            assert f.method == (60, 60), f
            h = self.recv_frame(timeout=left)
            assert h.type == raw.FRAME_HEADER, h
            size = struct.unpack(">Q", h.payload[4:12])[0]
            body = b""
            while len(body) < size:
                b = self.recv_frame(timeout=max(deadline - time.monotonic(), 0.1))
                assert b is not None and b.type == raw.FRAME_BODY, b
                body += b.payload
            bodies.append(body)
        return bodies


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


def fill_until_blocked(pub, ch, queue):
    """Publishes 64 KiB messages until the connection is blocked and stays blocked for
    0.5 s; returns how many were published.

    The kernel's socket buffers towards the slow consumer (up to tcp_wmem's 4 MiB
    on the broker's side) are not the broker's memory: deliveries they take after
    the block may bring the account below the low mark again, and the publisher
    is then unblocked after one check (100 ms); it publishes more until what the
    broker holds stays above the mark.
    """
    sent = 0
    while True:
        while not is_blocked(pub):
            assert sent < MAX_FILL, f"not blocked after {sent} messages of {BODY} bytes"
            ch.basic_publish("", queue, struct.pack(">I", sent) + b"x" * (BODY - 4))
            sent += 1
            pub.process_data_events(0)
        end = time.monotonic() + 0.5
        while time.monotonic() < end and is_blocked(pub):
            pub.process_data_events(0.05)
        if is_blocked(pub):
            return sent


def blocking_publisher(pika_connect, broker):
    """A pika connection (it announces connection.blocked) recording blocked/unblocked."""
    pub = pika_connect(broker, blocked_connection_timeout=20)
    pub.blocked, pub.unblocked = [], []
    pub.add_on_connection_blocked_callback(
        lambda conn, frame: pub.blocked.append(frame.method.reason))
    pub.add_on_connection_unblocked_callback(lambda conn, frame: pub.unblocked.append(True))
    return pub


@pytest.fixture
def watermark_broker(amqp_factory):
    return amqp_factory(config_lines=[f"memory.high.watermark.bytes = {WATERMARK}"]).start()


@pytest.mark.amqp_timeout(60)
def test_blocked_until_slow_consumer_drains(watermark_broker, pika_connect):
    broker = watermark_broker
    admin = pika_connect(broker)
    setup = admin.channel()
    setup.queue_declare("wm")
    setup.queue_declare("probe")
    consumer = SlowConsumer(broker.amqp_port, "wm")
    try:
        pub = blocking_publisher(pika_connect, broker)
        ch = pub.channel()
        sent = fill_until_blocked(pub, ch, "wm")
        assert set(pub.blocked) == {"low on memory"}
        wait_for(lambda: "memory high watermark passed" in broker.stderr, 5, "the alarm logged")

        # Blocked: publishes are not read any more, so they reach no queue.
        for i in range(PROBES):
            ch.basic_publish("", "probe", b"probe %d" % i)
        end = time.monotonic() + 0.7
        while time.monotonic() < end:
            pub.process_data_events(0.05)
        assert message_count(admin, "probe") == 0
        assert is_blocked(pub) and pub.is_open

        # The consumer (a connection that only consumes) is still served: it reads
        # everything, in order; the memory drains and the publisher is unblocked.
        bodies = consumer.read_messages(sent, timeout=30)
        assert [struct.unpack(">I", b[:4])[0] for b in bodies] == list(range(sent))
        assert all(len(b) == BODY for b in bodies)
        wait_for(lambda: not is_blocked(pub), 10, "connection.unblocked",
                 poll=lambda: pub.process_data_events(0.05))
        assert set(pub.blocked) == {"low on memory"}
        wait_for(lambda: message_count(admin, "probe") == PROBES, 10, "the probes stored")
        wait_for(lambda: "memory below the low mark" in broker.stderr, 5, "the clear logged")

        # Publishing goes on as usual once unblocked.
        ch.basic_publish("", "wm", struct.pack(">I", sent) + b"y" * 10)
        last = consumer.read_messages(1, timeout=10)
        assert struct.unpack(">I", last[0][:4])[0] == sent
        got = [admin.channel().basic_get("probe", auto_ack=True)[2] for _ in range(PROBES)]
        assert got == [b"probe %d" % i for i in range(PROBES)]
    finally:
        consumer.close()


@pytest.mark.amqp_timeout(60)
def test_client_without_capability_is_paused_silently(watermark_broker, pika_connect):
    broker = watermark_broker
    admin = pika_connect(broker)
    setup = admin.channel()
    setup.queue_declare("wm")
    setup.queue_declare("probe")
    consumer = SlowConsumer(broker.amqp_port, "wm")
    # raw.start_ok announces only authentication_failure_close, not connection.blocked.
    quiet = raw.RawAmqp(broker.amqp_port)
    try:
        quiet.handshake(heartbeat=0)
        quiet.open_channel(1)
        pub = blocking_publisher(pika_connect, broker)
        sent = fill_until_blocked(pub, pub.channel(), "wm")

        # The alarm is on: the client without the capability publishes.
        quiet.send(b"".join(basic_publish(1, "probe", b"quiet %d" % i) for i in range(PROBES)))
        time.sleep(0.7)
        assert message_count(admin, "probe") == 0, "a paused connection's publish was read"
        with pytest.raises(TimeoutError):
            f = quiet.recv_frame(timeout=0.3)
            pytest.fail(f"the client without the capability was sent {f!r}")

        consumer.read_messages(sent, timeout=30)
        wait_for(lambda: not is_blocked(pub), 10, "connection.unblocked (capable client)",
                 poll=lambda: pub.process_data_events(0.05))
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
        consumer.close()


@pytest.mark.amqp_timeout(60)
def test_watermark_zero_disables(amqp_factory, pika_connect):
    broker = amqp_factory(config_lines=["memory.high.watermark.bytes = 0"]).start()
    admin = pika_connect(broker)
    admin.channel().queue_declare("wm")
    consumer = SlowConsumer(broker.amqp_port, "wm")
    try:
        pub = blocking_publisher(pika_connect, broker)
        ch = pub.channel()
        n = 160  # 10 MiB for the consumer: more than the kernel buffers plus 2 MiB
        for i in range(n):
            ch.basic_publish("", "wm", struct.pack(">I", i) + b"z" * (BODY - 4))
            pub.process_data_events(0)
        bodies = consumer.read_messages(n, timeout=30)
        assert len(bodies) == n
        pub.process_data_events(0.1)
        assert pub.blocked == [] and pub.unblocked == []
        assert "memory high watermark passed" not in broker.stderr
    finally:
        consumer.close()


@pytest.mark.amqp_timeout(60)
def test_blocked_client_not_closed_for_missed_heartbeats(watermark_broker, pika_connect):
    """While blocked the client's heartbeats cannot be read: a block longer than two
    heartbeat intervals must not close it (RabbitMQ pauses its monitor too)."""
    broker = watermark_broker
    admin = pika_connect(broker)
    admin.channel().queue_declare("wm")
    consumer = SlowConsumer(broker.amqp_port, "wm")
    try:
        pub = blocking_publisher(pika_connect, broker)
        pub_hb = pika_connect(broker, heartbeat=1)
        pub_hb.blocked, pub_hb.unblocked = [], []
        pub_hb.add_on_connection_blocked_callback(
            lambda conn, frame: pub_hb.blocked.append(frame.method.reason))
        pub_hb.add_on_connection_unblocked_callback(
            lambda conn, frame: pub_hb.unblocked.append(True))
        sent = fill_until_blocked(pub, pub.channel(), "wm")
        # The heartbeat client publishes into the alarm: blocked for 3 s > 2 intervals.
        hb_ch = pub_hb.channel()
        hb_ch.basic_publish("", "wm", struct.pack(">I", sent) + b"h")
        wait_for(lambda: is_blocked(pub_hb), 5, "connection.blocked (heartbeat client)",
                 poll=lambda: pub_hb.process_data_events(0.05))
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            pub_hb.process_data_events(0.1)
        assert pub_hb.is_open and is_blocked(pub_hb)
        assert "missed heartbeats" not in broker.stderr

        bodies = consumer.read_messages(sent + 1, timeout=30)
        assert sorted(struct.unpack(">I", b[:4])[0] for b in bodies) == list(range(sent + 1))
        wait_for(lambda: not is_blocked(pub_hb), 10, "connection.unblocked (heartbeat client)",
                 poll=lambda: pub_hb.process_data_events(0.05))
        # Still alive and served after the unblock.
        hb_ch.queue_declare("after", passive=False)
        assert pub_hb.is_open
        assert "missed heartbeats" not in broker.stderr
    finally:
        consumer.close()
