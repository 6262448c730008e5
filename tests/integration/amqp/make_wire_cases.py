#!/usr/bin/env python3
"""Writes wire_cases.json: hostile and edge-case AMQP 0-9-1 input for test_amqp_wire.py.

Run from this directory: /usr/bin/python3 make_wire_cases.py
Frames are built with amqp_raw.py (straight from the spec's frame layout).
Each case says what RabbitMQ 3.10 answered to the same bytes (checked with the
Debian rabbitmq-server, see docs/amqp.md); where RabbitMQ has no designed answer
(its reader process crashes and the socket just drops) Sluice sends a
connection.close with the closest reply code instead, and the case says so.
"""

import json
import pathlib
import struct

from amqp_raw import (PROTOCOL_HEADER, channel_open, exchange_declare, frame, method, shortstr,
                      table)

CASES = []


def case(name, group, send, expect, spec, rabbitmq="same", setup="channel1", tune=None,
         comment=""):
    c = {"name": name, "group": group, "setup": setup,
         "send": [x.hex() for x in send], "expect": expect, "spec": spec,
         "rabbitmq": rabbitmq}
    if tune:
        c["tune"] = tune
    if comment:
        c["comment"] = comment
    CASES.append(c)


def conn_close(code, cls=0, meth=0):
    return {"outcome": "connection_close", "code": code, "class_id": cls, "method_id": meth}


def chan_close(code, cls, meth, channel=1):
    return {"outcome": "channel_close", "channel": channel, "code": code, "class_id": cls,
            "method_id": meth}


def reply(channel, cls, meth):
    return {"outcome": "method", "channel": channel, "method": [cls, meth]}


FRAMING = "AMQP 0-9-1 4.2.3 (frame layout, frame-end 0xCE) and 2.3.7 (frame errors are fatal)"

# --- the protocol header ---
case("http_request", "spec", [b"GET / HTTP/1.1\r\n\r\n"], {"outcome": "protocol_header"},
     "4.2.2: a server that does not accept the header replies with its own and closes",
     setup="none")
case("amqp_0_9_0_header", "spec", [b"AMQP\x00\x00\x09\x00"], {"outcome": "protocol_header"},
     "4.2.2", setup="none")
case("amqp_0_10_header", "spec", [b"AMQP\x01\x01\x00\x0a"], {"outcome": "protocol_header"},
     "4.2.2", setup="none",
     rabbitmq="answers with a 0-8 connection.start (it speaks 0-8 too); Sluice speaks 0-9-1 only")

# --- framing ---
case("bad_frame_end", "hostile", [method(1, 20, 10, shortstr(""))[:-1] + b"\x00"],
     conn_close(501), FRAMING)
case("bad_frame_end_on_channel_0", "hostile", [method(0, 10, 70, b"")[:-1] + b"\xff"],
     conn_close(501), FRAMING)
case("huge_size", "hostile", [struct.pack(">BHI", 1, 0, 0x7FFFFFFF) + b"abc"],
     conn_close(501), FRAMING + "; refused from the 7-byte header, nothing buffered")
case("size_max_u32", "hostile", [struct.pack(">BHI", 3, 1, 0xFFFFFFFF)], conn_close(501),
     FRAMING)
case("over_frame_max", "hostile",
     [frame(1, 1, b"\x00\x28\x00\x0a" + b"\x00" * 200000)], conn_close(501),
     "4.2.3 and connection.tune frame-max: a frame larger than the negotiated frame_max")
case("over_lowered_frame_max", "spec", [frame(1, 1, b"\x00\x28\x00\x0a" + b"\x00" * 5000)],
     conn_close(501), "connection.tune-ok frame-max 4096 chosen by the client",
     tune={"frame_max": 4096})
case("unknown_frame_type", "hostile", [frame(4, 0, b"abc")], conn_close(501), FRAMING)
case("frame_type_zero", "hostile", [frame(0, 1, b"")], conn_close(501), FRAMING)
case("heartbeat_with_payload", "hostile", [frame(8, 0, b"ab")], conn_close(501),
     "4.2.7: heartbeat frames have no payload")
case("heartbeat_on_channel_1", "hostile", [frame(8, 1, b"")], conn_close(505),
     "4.2.7: heartbeats belong to channel 0")

# --- methods ---
case("unknown_class", "hostile", [method(1, 99, 10)], conn_close(540),
     "reply code 540 not-implemented", rabbitmq="drops the socket (its reader crashes)")
case("unknown_method", "hostile", [method(1, 60, 99)], conn_close(540),
     "reply code 540 not-implemented", rabbitmq="drops the socket (its reader crashes)")
case("method_payload_too_short", "hostile", [frame(1, 1, b"\x00\x14")], conn_close(501),
     "4.2.4: a method frame holds class-id and method-id")
case("truncated_arguments", "hostile", [method(1, 40, 10, b"\x00\x00\x05ab")],
     conn_close(501, 40, 10), "4.2.5: argument layout")
case("trailing_bytes", "hostile",
     [method(1, 20, 40, struct.pack(">H", 200) + shortstr("x") + b"\x00" * 4 + b"zz")],
     conn_close(501, 20, 40), "4.2.5: argument layout")
case("bad_table", "hostile",
     [method(1, 40, 10, b"\x00\x00" + shortstr("t") + shortstr("direct") + b"\x00" +
             struct.pack(">I", 5) + b"\x01a?zz")],
     conn_close(501, 40, 10), "4.2.5.5 field tables (unknown type letter '?')",
     rabbitmq="drops the socket (its reader crashes)")
case("table_length_past_frame", "hostile",
     [method(1, 40, 10, b"\x00\x00" + shortstr("t") + shortstr("direct") + b"\x00" +
             struct.pack(">I", 0xFFFFFF00))],
     conn_close(501, 40, 10), "4.2.5.5 field tables")
deep = table()
for _ in range(40):
    deep = table([("k", "F", deep)])
case("table_nested_too_deep", "hostile",
     [method(1, 40, 10, b"\x00\x00" + shortstr("t") + shortstr("direct") + b"\x00" +
             deep)],
     conn_close(501, 40, 10), "4.2.5.5 field tables; Sluice caps nesting at 32 levels",
     rabbitmq="accepts any depth")
case("method_on_unopened_channel", "spec", [exchange_declare(5, "x")],
     conn_close(504, 40, 10), "reply code 504 channel-error (channel not open)")
case("class_method_on_channel_0", "spec", [exchange_declare(0, "x")], conn_close(504, 40, 10),
     "2.3.5: channel 0 carries the connection class only", setup="handshake")
case("connection_method_on_channel_1", "spec",
     [method(1, 10, 40, shortstr("/") + shortstr("") + b"\x00")], conn_close(503, 10, 40),
     "2.3.5: connection methods belong on channel 0")
case("second_channel_open", "spec", [channel_open(1)], conn_close(504, 20, 10),
     "channel.open on an open channel")
case("channel_above_channel_max", "spec", [channel_open(3000)], conn_close(530, 20, 10),
     "connection.tune channel-max",
     rabbitmq="3.10 opens it anyway; 3.11+ refuses with 530 NOT_ALLOWED")
case("server_method_from_client", "hostile",
     [method(1, 60, 60, shortstr("t") + struct.pack(">Q", 1) + b"\x00" + shortstr("") +
             shortstr(""))],
     conn_close(503, 60, 60), "basic.deliver is a server method (chassis client)",
     rabbitmq="ignores it silently")
case("connection_start_from_client", "hostile",
     [method(0, 10, 10, b"\x00\x09" + table() + b"\x00\x00\x00\x05PLAIN" +
             b"\x00\x00\x00\x05en_US")],
     conn_close(504, 10, 10), "connection.start is sent by servers")
case("header_frame_without_method", "hostile",
     [frame(2, 1, struct.pack(">HHQH", 60, 0, 5, 0))], conn_close(505),
     "4.2.6: content follows a content-bearing method")
case("body_frame_without_method", "hostile", [frame(3, 1, b"hello")], conn_close(505),
     "4.2.6: content follows a content-bearing method")
case("body_on_unopened_channel", "hostile", [frame(3, 9, b"hello")], conn_close(505),
     "4.2.6")
case("channel_flow_inactive", "spec", [method(1, 20, 20, b"\x00")], conn_close(540, 20, 20),
     "channel.flow active=false (RabbitMQ does not support it)")
case("channel_flow_active", "spec", [method(1, 20, 20, b"\x01")], reply(1, 20, 21),
     "channel.flow active=true is answered")
case("access_request", "spec", [method(1, 30, 10, shortstr("/data") + b"\x1e")],
     reply(1, 30, 11), "access.request (0-9, still sent by old clients): ticket 1")

# --- the exchange class (channel errors) ---
case("declare_default_exchange", "spec", [exchange_declare(1, "")], chan_close(403, 40, 10),
     "RabbitMQ: operation not permitted on the default exchange")
case("declare_default_exchange_passive", "spec", [exchange_declare(1, "", passive=True)],
     chan_close(403, 40, 10), "RabbitMQ: operation not permitted on the default exchange")
case("declare_reserved_prefix", "spec", [exchange_declare(1, "amq.new")],
     chan_close(403, 40, 10), "exchange.declare: names starting with amq. are reserved")
case("declare_missing_passive", "spec", [exchange_declare(1, "no-such", passive=True)],
     chan_close(404, 40, 10), "exchange.declare passive: 404 when missing")
case("declare_type_mismatch", "spec", [exchange_declare(1, "amq.direct", xtype="fanout")],
     chan_close(406, 40, 10), "exchange.declare: 406 when not equivalent")
case("declare_unknown_type", "spec", [exchange_declare(1, "zz", xtype="weird")],
     conn_close(503, 40, 10), "exchange.declare type: unknown type is command-invalid")
case("delete_system_exchange", "spec",
     [method(1, 40, 20, b"\x00\x00" + shortstr("amq.direct") + b"\x00")],
     chan_close(403, 40, 20), "RabbitMQ: deletion of system exchanges is not allowed")
case("delete_missing_exchange", "spec",
     [method(1, 40, 20, b"\x00\x00" + shortstr("no-such") + b"\x00")], reply(1, 40, 21),
     "RabbitMQ: deleting a missing exchange succeeds")
case("e2e_bind_missing_source", "spec",
     [method(1, 40, 30, b"\x00\x00" + shortstr("amq.direct") + shortstr("no-such") +
             shortstr("k") + b"\x00" + table())],
     chan_close(404, 40, 30), "exchange.bind: both exchanges must exist")
case("e2e_bind_invalid_x_match", "spec",
     [method(1, 40, 30, b"\x00\x00" + shortstr("amq.direct") + shortstr("amq.headers") +
             shortstr("") + b"\x00" + table([("x-match", "S", b"\x00\x00\x00\x04some")]))],
     chan_close(406, 40, 30), "headers exchange: x-match must be all, any, all-with-x, any-with-x")

# --- the tx class ---
case("tx_select", "spec", [method(1, 90, 10)], reply(1, 90, 11),
     "tx.select: the channel becomes transactional")
case("tx_commit_without_select", "spec", [method(1, 90, 20)], chan_close(406, 90, 20),
     "RabbitMQ: precondition-failed, channel is not transactional")
case("tx_rollback_without_select", "spec", [method(1, 90, 30)], chan_close(406, 90, 30),
     "RabbitMQ: precondition-failed, channel is not transactional")
case("tx_select_in_confirm_mode", "spec", [method(1, 85, 10, b"\x01"), method(1, 90, 10)],
     chan_close(406, 90, 10),
     "RabbitMQ: precondition-failed, cannot switch from confirm to tx mode "
     "(confirm.select with nowait has no reply)")

if __name__ == "__main__":
    out = {
        "comment": "Generated by make_wire_cases.py; read by test_amqp_wire.py. Each case: "
                   "setup (none: raw socket; handshake: connection open; channel1: and channel 1 "
                   "open), tune (the client's tune-ok values), send (hex, in order), expect "
                   "(protocol_header | connection_close | channel_close | method), the spec it "
                   "follows and what RabbitMQ 3.10 does with the same bytes.",
        "cases": CASES,
    }
    path = pathlib.Path(__file__).with_name("wire_cases.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(CASES)} cases written to {path}")
