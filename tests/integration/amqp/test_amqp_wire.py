"""Hostile and edge-case AMQP input on a raw socket, from the table wire_cases.json
(built by make_wire_cases.py; each case cites the spec and says what RabbitMQ 3.10
does with the same bytes).

For every case: a pika client connects first and stays connected; the raw
connection is set up (nothing, handshake, or handshake plus channel 1), the
case's bytes are sent, and the broker's answer is checked: our protocol header
then EOF, a connection.close with the reply code (answered with close-ok, then
EOF), a channel.close (the connection keeps working: channel 2 opens), or a
method reply. Then the pika client must still work, so no case stalls or
crashes the broker.
"""

import json
import pathlib
import struct

import pytest

from amqp_raw import (PROTOCOL_HEADER, RawAmqp, channel_close_ok, connection_close_ok,
                      FRAME_HEARTBEAT)

TABLE = json.loads((pathlib.Path(__file__).parent / "wire_cases.json").read_text())
CASES = TABLE["cases"]


def check_case(port, c):
    raw = RawAmqp(port)
    try:
        if c["setup"] != "none":
            raw.handshake(**c.get("tune", {}))
        if c["setup"] == "channel1":
            raw.open_channel(1)
        for hexdata in c["send"]:
            raw.send(bytes.fromhex(hexdata))
        want = c["expect"]
        outcome = want["outcome"]
        if outcome == "protocol_header":
            assert raw.recv_exact(8) == PROTOCOL_HEADER
            assert raw.wait_closed(), "the broker must close after its protocol header"
            return
        f = raw.recv_method()
        assert f is not None, "the broker closed the socket without a close method"
        if outcome == "connection_close":
            assert (f.channel, f.method) == (0, (10, 50)), f
            code, text, cid, mid = f.close_args()
            assert code == want["code"], text
            assert (cid, mid) == (want["class_id"], want["method_id"]), text
            raw.send(connection_close_ok())
            assert raw.wait_closed(), "no EOF after connection.close-ok"
        elif outcome == "channel_close":
            assert (f.channel, f.method) == (want["channel"], (20, 40)), f
            code, text, cid, mid = f.close_args()
            assert code == want["code"], text
            assert (cid, mid) == (want["class_id"], want["method_id"]), text
            raw.send(channel_close_ok(want["channel"]))
            raw.open_channel(2)  # the connection still works
        else:
            assert (f.channel, list(f.method)) == (want["channel"], want["method"]), f
            raw.open_channel(2)
    finally:
        raw.close()


@pytest.mark.parametrize("c", CASES, ids=[c["name"] for c in CASES])
def test_wire_case(amqp_broker, pika_connect, c):
    other = pika_connect(amqp_broker)
    ch = other.channel()
    check_case(amqp_broker.amqp_port, c)
    # The bystander is unaffected.
    ch.exchange_declare("amq.direct", passive=True)
    ch.exchange_declare(f"after-{c['name']}", "fanout", auto_delete=True)
    ch.exchange_delete(f"after-{c['name']}")
    other.close()


def test_wire_cases_back_to_back(amqp_broker, pika_connect):
    """Every case on one broker, twice over, then a normal client still works."""
    for _ in range(2):
        for c in CASES:
            check_case(amqp_broker.amqp_port, c)
    conn = pika_connect(amqp_broker)
    conn.channel().exchange_declare("amq.topic", passive=True)


def test_malformed_frames_logged_once(amqp_broker):
    """A peer sending garbage gets one warning naming the fault, not one per frame."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    bad = struct.pack(">BHI", 1, 1, 9) + b"\x00\x28\x00\x0a\x00\x00\x05ab" + b"\xce"
    raw.send(bad * 3)
    f = raw.recv_method()
    assert f.method == (10, 50) and f.close_args()[0] == 501
    raw.close()
    log = amqp_broker.stderr
    lines = [line for line in log.splitlines() if "malformed method frame" in line]
    assert len(lines) == 1, log
    assert "class 40 method 10 (exchange.declare)" in lines[0]
    assert "fault at payload byte" in lines[0] and "frame at stream byte" in lines[0]


def test_frame_split_byte_by_byte(amqp_broker):
    """Frames arriving one byte at a time are reassembled (no stall, no error)."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    from amqp_raw import channel_open, exchange_declare
    data = channel_open(1) + exchange_declare(1, "amq.fanout", xtype="fanout", passive=True)
    for i in range(len(data)):
        raw.send(data[i:i + 1])
    assert raw.recv_method().method == (20, 11)
    assert raw.recv_method().method == (40, 11)
    raw.close()


def test_heartbeats_do_not_count_as_methods(amqp_broker):
    """Heartbeat frames between methods are accepted in any state after tune-ok."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake(heartbeat=30)
    from amqp_raw import heartbeat
    raw.send(heartbeat() * 5)
    raw.open_channel(1)
    f = raw.recv_frame(timeout=0.5) if raw.buf else None
    assert f is None or f.type == FRAME_HEARTBEAT
    raw.close()
