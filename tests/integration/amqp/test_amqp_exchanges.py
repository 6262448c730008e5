"""The exchange class with pika: declare (passive, durable, auto-delete, internal),
delete (if-unused), exchange-to-exchange bind/unbind, the reply codes RabbitMQ
uses (403 reserved names, 404 missing, 406 inequivalent, 503 unknown type) and
durable exchanges surviving a restart. Routing through exchanges is covered by
the queue tests."""

import struct

import pika
import pika.exceptions
import pytest

from amqp_raw import RawAmqp, method, shortstr, table


def closed_with(fn, code):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn()
    assert e.value.reply_code == code, e.value.reply_text
    return e.value.reply_text


def test_declare_and_delete(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    for t in ("direct", "fanout", "topic", "headers"):
        ch.exchange_declare(f"x-{t}", t)
        ch.exchange_declare(f"x-{t}", t)  # again: equivalent, fine
        ch.exchange_declare(f"x-{t}", passive=True)
    for t in ("direct", "fanout", "topic", "headers"):
        ch.exchange_delete(f"x-{t}")
        closed_with(lambda: ch.exchange_declare(f"x-{t}", passive=True), 404)
        ch = pika_connect(amqp_broker).channel()
    ch.exchange_delete("never-declared")  # RabbitMQ: succeeds


def test_predeclared_exchanges(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    for name, t in (("amq.direct", "direct"), ("amq.fanout", "fanout"),
                    ("amq.topic", "topic"), ("amq.headers", "headers"),
                    ("amq.match", "headers")):
        ch.exchange_declare(name, passive=True)
        ch.exchange_declare(name, t, durable=True)  # equivalent re-declaration


def test_inequivalent_declarations(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.exchange_declare("eq", "topic", durable=True)
    text = closed_with(lambda: ch.exchange_declare("eq", "fanout", durable=True), 406)
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'eq' in "
                    "vhost '/': received 'fanout' but current is 'topic'")
    ch = conn.channel()
    text = closed_with(lambda: ch.exchange_declare("eq", "topic", durable=False), 406)
    assert "inequivalent arg 'durable'" in text
    ch = conn.channel()
    text = closed_with(lambda: ch.exchange_declare("eq", "topic", durable=True,
                                                   auto_delete=True), 406)
    assert "inequivalent arg 'auto_delete'" in text
    ch = conn.channel()
    text = closed_with(lambda: ch.exchange_declare("eq", "topic", durable=True,
                                                   internal=True), 406)
    assert "inequivalent arg 'internal'" in text
    assert conn.is_open


def test_reserved_and_default_names(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    text = closed_with(lambda: conn.channel().exchange_declare("amq.mine", "direct"), 403)
    assert "reserved prefix 'amq.*'" in text
    text = closed_with(lambda: conn.channel().exchange_delete("amq.topic"), 403)
    assert "deletion of system exchange 'amq.topic'" in text
    text = closed_with(lambda: conn.channel().exchange_declare("", "direct"), 403)
    assert "default exchange" in text
    closed_with(lambda: conn.channel().exchange_delete(""), 403)
    closed_with(lambda: conn.channel().exchange_bind("amq.direct", ""), 403)
    assert conn.is_open


def test_unknown_type_closes_connection(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.channel().exchange_declare("odd", "x-consistent-hash")
    assert e.value.reply_code == 503
    assert "unknown exchange type 'x-consistent-hash'" in e.value.reply_text


def test_exchange_to_exchange_bindings(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.exchange_declare("src", "topic")
    ch.exchange_declare("dst", "fanout")
    ch.exchange_bind("dst", "src", "a.#")
    ch.exchange_bind("dst", "src", "a.#")  # twice: one binding
    text = closed_with(lambda: ch.exchange_delete("src", if_unused=True), 406)
    assert "exchange 'src' in vhost '/' in use" in text
    ch = conn.channel()
    ch.exchange_delete("dst", if_unused=True)  # dst is only a destination: unused
    ch.exchange_declare("dst", "fanout")
    ch.exchange_bind("dst", "src", "b")
    ch.exchange_unbind("dst", "src", "b")
    ch.exchange_unbind("dst", "src", "b")  # not bound any more: still fine
    ch.exchange_delete("src", if_unused=True)
    text = closed_with(lambda: ch.exchange_bind("dst", "missing", "k"), 404)
    assert "no exchange 'missing'" in text
    ch = conn.channel()
    text = closed_with(lambda: ch.exchange_bind("missing2", "dst", "k"), 404)
    assert "no exchange 'missing2'" in text
    ch = conn.channel()
    ch.exchange_unbind("dst", "missing", "k")  # as RabbitMQ: unbinding is idempotent
    ch.exchange_unbind("missing2", "missing3", "k")


def test_headers_binding_x_match(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.exchange_declare("h-dst", "fanout")
    for mode in ("all", "any", "all-with-x", "any-with-x"):
        ch.exchange_bind("h-dst", "amq.headers", arguments={"x-match": mode, "k": "v"})
    text = closed_with(lambda: ch.exchange_bind("h-dst", "amq.headers",
                                                arguments={"x-match": "most"}), 406)
    assert "Invalid x-match field value" in text
    ch = conn.channel()
    text = closed_with(lambda: ch.exchange_bind("h-dst", "amq.headers",
                                                arguments={"x-match": 1}), 406)
    assert "Invalid x-match field type" in text


def test_auto_delete_exchange(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.exchange_declare("ad", "fanout", auto_delete=True)
    ch.exchange_declare("ad", passive=True)  # never bound: stays
    ch.exchange_bind("amq.fanout", "ad")
    ch.exchange_unbind("amq.fanout", "ad")   # its last binding went: deleted
    closed_with(lambda: ch.exchange_declare("ad", passive=True), 404)


def test_nowait_declare(amqp_broker, pika_connect):
    """nowait: no declare-ok; the exchange exists for the next method."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    bits = 0x10  # nowait
    raw.send(method(1, 40, 10, b"\x00\x00" + shortstr("nw") + shortstr("topic") +
                    bytes([bits]) + table()))
    raw.send(method(1, 40, 10, b"\x00\x00" + shortstr("nw") + shortstr("") + b"\x01" + table()))
    f = raw.recv_method()
    assert (f.channel, f.method) == (1, (40, 11))  # only the passive one answers
    raw.close()


def test_durable_exchanges_survive_restart(amqp_factory, pika_connect):
    broker = amqp_factory().start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.exchange_declare("keep", "topic", durable=True)
    ch.exchange_declare("keep-e2e", "fanout", durable=True)
    ch.exchange_bind("keep-e2e", "keep", "k.#")
    ch.exchange_declare("lose", "topic", durable=False)
    conn.close()
    broker.restart()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.exchange_declare("keep", "topic", durable=True)
    ch.exchange_declare("keep-e2e", passive=True)
    closed_with(lambda: ch.exchange_delete("keep", if_unused=True), 406)  # binding is back
    ch = conn.channel()
    closed_with(lambda: ch.exchange_declare("lose", passive=True), 404)
    ch = conn.channel()
    ch.exchange_delete("keep")
    conn.close()
    broker.restart()
    ch = pika_connect(broker).channel()
    closed_with(lambda: ch.exchange_declare("keep", passive=True), 404)
