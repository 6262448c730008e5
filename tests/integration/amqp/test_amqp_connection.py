"""AMQP 0-9-1 connection negotiation, heartbeats and channels (pika and raw sockets).

Spec references are to the AMQP 0-9-1 specification (section 2.2.4 connection
and channel life, 4.2 framing) and RabbitMQ's documented behaviour, which Sluice
matches (checked side by side with RabbitMQ 3.10, see docs/amqp.md).
"""

import socket
import struct
import time

import pika
import pika.exceptions
import pytest

from amqp_raw import (FRAME_HEARTBEAT, PROTOCOL_HEADER, RawAmqp, channel_close, connection_close,
                      heartbeat, longstr, method, shortstr, start_ok, table, tune_ok)


def test_connection_open_close(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    props = conn._impl.server_properties
    assert props["product"] == "Sluice"
    assert props["version"]
    caps = props["capabilities"]
    for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "authentication_failure_close",
                "per_consumer_qos"):
        assert caps[cap] is True, cap
    assert caps["consumer_priorities"] is True
    assert caps["direct_reply_to"] is True
    assert conn.is_open
    conn.close()
    assert conn.is_closed
    assert "connection error" not in amqp_broker.stderr


def test_many_connections(amqp_broker, pika_connect):
    conns = [pika_connect(amqp_broker) for _ in range(20)]
    for c in conns:
        c.channel().exchange_declare("amq.direct", passive=True)
    for c in conns:
        c.close()


def test_tune_values(amqp_broker):
    """connection.tune proposes channel_max 2047, frame_max 131072, heartbeat 60."""
    raw = RawAmqp(amqp_broker.amqp_port)
    start, tune = raw.handshake()
    major, minor = start.payload[4], start.payload[5]
    assert (major, minor) == (0, 9)
    assert b"PLAIN" in start.payload and b"AMQPLAIN" in start.payload
    channel_max, frame_max, hb = struct.unpack(">HIH", tune.payload[4:12])
    assert (channel_max, frame_max, hb) == (2047, 131072, 60)
    raw.close()


@pytest.mark.parametrize("header", [b"HTTP/1.1 200 OK\r\n", b"AMQP\x00\x00\x09\x00",
                                    b"AMQP\x01\x01\x00\x0a", b"AMQX\x00\x00\x09\x01"])
def test_wrong_protocol_header(amqp_broker, header):
    """Spec 4.2.2: reply with the header we accept, then close."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.send(header)
    assert raw.recv_exact(8) == PROTOCOL_HEADER
    assert raw.wait_closed()


def test_header_in_pieces(amqp_broker):
    raw = RawAmqp(amqp_broker.amqp_port)
    for b in PROTOCOL_HEADER:
        raw.send(bytes([b]))
        time.sleep(0.01)
    assert raw.recv_method().method == (10, 10)
    raw.close()


def test_login_refused(amqp_broker, pika_connect):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as e:
        pika_connect(amqp_broker, credentials=pika.PlainCredentials("guest", "wrong"))
    assert "ACCESS_REFUSED" in str(e.value)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika_connect(amqp_broker, credentials=pika.PlainCredentials("nobody", "guest"))
    pika_connect(amqp_broker).channel()  # the right password still works


def test_login_amqplain(amqp_broker):
    """AMQPLAIN: a field table without its length, with LOGIN and PASSWORD."""
    for password, ok in (("guest", True), ("nope", False)):
        raw = RawAmqp(amqp_broker.amqp_port)
        raw.send(PROTOCOL_HEADER)
        assert raw.recv_method().method == (10, 10)
        resp = table([("LOGIN", "S", longstr("guest")), ("PASSWORD", "S", longstr(password))])[4:]
        raw.send(start_ok(mechanism="AMQPLAIN", response=resp))
        f = raw.recv_method()
        if ok:
            assert f.method == (10, 30)
        else:
            assert f.method == (10, 50)
            assert f.close_args()[0] == 403
            assert raw.wait_closed(timeout=5)
        raw.close()


def test_unknown_mechanism(amqp_broker):
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    raw.recv_method()
    raw.send(start_ok(mechanism="EXTERNAL", response=b""))
    f = raw.recv_method()
    assert f.method == (10, 50) and f.close_args()[0] == 503


def test_vhost_not_allowed(amqp_broker, pika_connect):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        pika_connect(amqp_broker, virtual_host="other")
    assert "530" in str(e.value) and "vhost other not found" in str(e.value)


@pytest.mark.parametrize("channel_max,frame_max", [(0, 131072), (4000, 131072), (10, 0),
                                                   (10, 262144), (10, 1000)])
def test_tune_ok_out_of_range(amqp_broker, channel_max, frame_max):
    """RabbitMQ's rules: the client may lower the limits, never raise or remove them."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    raw.recv_method()
    raw.send(start_ok())
    raw.recv_method()
    raw.send(tune_ok(channel_max, frame_max, 0))
    f = raw.recv_method()
    assert f.method == (10, 50)
    assert f.close_args()[0] == 530


def test_frame_max_lowered_by_client(amqp_broker):
    """A client choosing frame_max 4096 may not send bigger frames (501, connection closed)."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake(frame_max=4096)
    raw.open_channel(1)
    from amqp_raw import frame
    raw.send(frame(1, 1, b"\x00\x28\x00\x0a" + b"\x00" * 4200))
    f = raw.recv_method()
    assert f.method == (10, 50)
    code, text, _, _ = f.close_args()
    assert code == 501 and "frame_max" in text


def test_frame_over_frame_max_pika(amqp_broker, pika_connect):
    """pika's own frame_max check is bypassed with a hand-made oversized frame on its socket."""
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    sock = conn._impl._transport._sock
    payload = struct.pack(">HH", 40, 10) + b"\x00" * 140000
    sock.sendall(struct.pack(">BHI", 1, ch.channel_number, len(payload)) + payload + b"\xce")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.process_data_events(time_limit=5)
        ch.exchange_declare("amq.direct", passive=True)
    assert e.value.reply_code == 501


def test_handshake_method_out_of_order(amqp_broker):
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    raw.recv_method()
    raw.send(tune_ok())  # start-ok expected
    f = raw.recv_method()
    assert f.method == (10, 50) and f.close_args()[0] == 503


def test_close_during_handshake(amqp_broker):
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    raw.recv_method()
    raw.send(connection_close())
    f = raw.recv_method()
    assert f.method == (10, 51)
    assert raw.wait_closed()


def test_client_close_gets_close_ok(amqp_broker):
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(connection_close())
    assert raw.recv_method().method == (10, 51)
    assert raw.wait_closed()


@pytest.mark.amqp_timeout(25)
def test_handshake_timeout(amqp_broker):
    """A client that never finishes the handshake is closed after 10 s."""
    raw = RawAmqp(amqp_broker.amqp_port, timeout=15)
    raw.send(PROTOCOL_HEADER)
    assert raw.recv_method().method == (10, 10)
    started = time.monotonic()
    assert raw.wait_closed(timeout=15)
    assert 9.0 <= time.monotonic() - started <= 13.0
    assert "handshake not finished" in amqp_broker.stderr


# ---- heartbeats ----

def test_heartbeat_negotiation_pika(amqp_broker, pika_connect):
    """pika takes the server's 60 s by default, or its own value when given."""
    conn = pika_connect(amqp_broker)
    assert conn._impl.params.heartbeat == 60
    conn2 = pika_connect(amqp_broker, heartbeat=1)
    assert conn2._impl.params.heartbeat == 1
    # Idle for 4 intervals: both sides' heartbeats keep it open.
    conn2.sleep(4)
    assert conn2.is_open
    conn2.channel().exchange_declare("amq.direct", passive=True)
    assert "missed heartbeats" not in amqp_broker.stderr


def test_server_sends_heartbeats(amqp_broker):
    """With heartbeat 1 the broker sends a heartbeat whenever it was silent for 0.5 s."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake(heartbeat=1)
    got = 0
    deadline = time.monotonic() + 2.6
    while time.monotonic() < deadline:
        raw.send(heartbeat())
        try:
            f = raw.recv_frame(timeout=0.3)
        except TimeoutError:
            continue
        assert f is not None, "the broker closed a connection that sent heartbeats"
        if f.type == FRAME_HEARTBEAT:
            assert f.channel == 0 and f.payload == b""
            got += 1
    assert got >= 3
    raw.close()


@pytest.mark.amqp_timeout(20)
def test_dead_client_closed_after_two_intervals(amqp_broker, pika_connect):
    """A client that negotiated heartbeat 1 and then goes silent is closed after ~2 s."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake(heartbeat=1)
    raw.open_channel(1)
    silent_since = time.monotonic()
    other = pika_connect(amqp_broker)  # unaffected bystander
    assert raw.wait_closed(timeout=8)
    waited = time.monotonic() - silent_since
    assert 1.5 <= waited <= 5.0, waited
    assert "missed heartbeats from client, timeout: 1s" in amqp_broker.stderr
    other.channel().exchange_declare("amq.direct", passive=True)


def test_no_heartbeat_when_disabled(amqp_broker):
    """heartbeat 0 in tune-ok: the broker neither sends heartbeats nor times out."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake(heartbeat=0)
    with pytest.raises(TimeoutError):
        raw.recv_frame(timeout=2.5)
    raw.open_channel(1)
    raw.close()


# ---- channels ----

def test_channels_open_close(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    chans = [conn.channel() for _ in range(50)]
    assert len({c.channel_number for c in chans}) == 50
    for c in chans[::2]:
        c.close()
    for c in chans[1::2]:
        c.exchange_declare("amq.fanout", passive=True)
    again = conn.channel(channel_number=chans[0].channel_number)
    again.exchange_declare("amq.fanout", passive=True)


def test_channel_error_closes_only_the_channel(amqp_broker, pika_connect):
    """A passive declare of a missing exchange: 404 closes that channel only."""
    conn = pika_connect(amqp_broker)
    ok = conn.channel()
    bad = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        bad.exchange_declare("no-such-exchange", passive=True)
    assert e.value.reply_code == 404
    assert "no exchange 'no-such-exchange' in vhost '/'" in e.value.reply_text
    assert bad.is_closed
    assert conn.is_open and ok.is_open
    ok.exchange_declare("amq.direct", passive=True)
    # The number is free again once close-ok went back.
    reopened = conn.channel(channel_number=bad.channel_number)
    reopened.exchange_declare("amq.direct", passive=True)


def test_frames_after_channel_error_are_discarded(amqp_broker):
    """Spec 2.2.4: after channel.close the broker discards that channel's frames
    until close-ok; other channels go on."""
    from amqp_raw import exchange_declare
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.open_channel(2)
    raw.send(exchange_declare(1, "missing", passive=True))
    f = raw.recv_method()
    assert (f.channel, f.method) == (1, (20, 40)) and f.close_args()[0] == 404
    raw.send(exchange_declare(1, "amq.direct", passive=True))  # discarded
    raw.send(exchange_declare(2, "amq.direct", passive=True))
    f = raw.recv_method()
    assert (f.channel, f.method) == (2, (40, 11))
    raw.send(method(1, 20, 41))  # close-ok
    raw.open_channel(1)
    raw.close()


def test_channel_close_both_ways(amqp_broker):
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(3)
    raw.send(channel_close(3))
    f = raw.recv_method()
    assert (f.channel, f.method) == (3, (20, 41))
    raw.open_channel(3)
    raw.close()


def test_channel_max_negotiated(amqp_broker):
    """tune-ok channel_max 5: channel 5 opens, 6 is refused (530)."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake(channel_max=5)
    raw.open_channel(5)
    from amqp_raw import channel_open
    raw.send(channel_open(6))
    f = raw.recv_method()
    assert f.method == (10, 50) and f.close_args()[0] == 530


def test_not_implemented_yet_is_540(amqp_broker):
    """Methods Sluice does not implement yet are refused with 540 NOT_IMPLEMENTED
    (docs/amqp.md lists them); the connection closes."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(method(1, 60, 110, b"\x00"))  # basic.recover requeue=false
    f = raw.recv_method()
    assert f.method == (10, 50)
    code, text, cid, mid = f.close_args()
    assert (code, cid, mid) == (540, 60, 110), text


def test_configured_users(amqp_factory, pika_connect):
    """amqp.users replaces guest/guest: each account logs in with its own password
    (PLAIN through pika, and through amqp-tools), guest is gone, and a password may
    hold ':' (only the first colon ends the name)."""
    import shutil
    import subprocess
    broker = amqp_factory(config_lines=["amqp.users = alice:s3cret,bob:pa:ss"]).start()
    ch = pika_connect(broker, credentials=pika.PlainCredentials("alice", "s3cret")).channel()
    ch.queue_declare("users-q")
    pika_connect(broker, credentials=pika.PlainCredentials("bob", "pa:ss")).channel()
    for user, password in (("guest", "guest"), ("alice", "pa:ss"), ("bob", "pa"),
                           ("alic", "s3cret"), ("alice", "s3cre")):
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika_connect(broker, credentials=pika.PlainCredentials(user, password))
    assert "login refused" in broker.stderr
    if shutil.which("amqp-publish"):
        url = f"amqp://alice:s3cret@127.0.0.1:{broker.amqp_port}"
        subprocess.run(["amqp-publish", "--url", url, "-r", "users-q", "-b", "hi"],
                       check=True, timeout=10)
        bad = subprocess.run(["amqp-publish", "--url", url.replace("s3cret", "nope"),
                              "-r", "users-q", "-b", "x"], timeout=10, capture_output=True)
        assert bad.returncode != 0
        method, _props, body = ch.basic_get("users-q", auto_ack=True)
        assert body == b"hi"
        assert ch.basic_get("users-q")[0] is None


@pytest.mark.parametrize("spec", ["alice", ":pw", "alice:pw,", "alice:pw,bob"])
def test_bad_users_setting_refuses_to_start(amqp_factory, spec):
    broker = amqp_factory(config_lines=[f"amqp.users = {spec}"])
    broker.start(wait=False)
    assert broker.wait_exit(timeout=10) not in (None, 0)
    assert "amqp.users: entry" in broker.stderr
