"""Per-message TTL (the `expiration` property, RabbitMQ's extension): a message
dies once its own TTL passes, the shorter of message and queue TTL wins, and a
malformed expiration closes the channel with 406 while the connection lives."""

import time

import pika
import pytest


def test_message_expiration_applies(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("exp")
    ch.basic_publish("", "exp", b"short", pika.BasicProperties(expiration="150"))
    ch.basic_publish("", "exp", b"long", pika.BasicProperties(expiration="60000"))
    ch.basic_publish("", "exp", b"forever")
    time.sleep(0.4)
    got = []
    while True:
        m, _, body = ch.basic_get("exp", auto_ack=True)
        if m is None:
            break
        got.append(body)
    assert got == [b"long", b"forever"]


def test_shorter_of_queue_and_message_ttl_wins(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("exp2", arguments={"x-message-ttl": 150})
    ch.basic_publish("", "exp2", b"queue-ttl", pika.BasicProperties(expiration="60000"))
    ch.basic_publish("", "exp2", b"own-ttl", pika.BasicProperties(expiration="100"))
    time.sleep(0.4)
    assert ch.basic_get("exp2", auto_ack=True)[0] is None


def test_invalid_expiration_is_406(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("exp3")
    ch.basic_publish("", "exp3", b"bad", pika.BasicProperties(expiration="soon"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("exp3", passive=True)  # a round trip to see the close
    assert e.value.reply_code == 406
    assert "expiration" in e.value.reply_text
    # Only the channel closed: the connection still works and nothing was stored.
    ch2 = conn.channel()
    assert ch2.queue_declare("exp3", passive=True).method.message_count == 0


def test_message_expiration_survives_restart(amqp_factory, pika_connect):
    """A persistent message's own expiration still applies after a restart (it runs
    from the publish time), and one without expiration is kept."""
    broker = amqp_factory().start()
    ch = pika_connect(broker).channel()
    ch.queue_declare("exp.durable", durable=True)
    ch.basic_publish("", "exp.durable", b"dies",
                     pika.BasicProperties(delivery_mode=2, expiration="3000"))
    ch.basic_publish("", "exp.durable", b"stays", pika.BasicProperties(delivery_mode=2))
    t0 = time.monotonic()
    broker.restart()
    ch = pika_connect(broker).channel()
    count = ch.queue_declare("exp.durable", passive=True).method.message_count
    if time.monotonic() - t0 < 2.5:
        assert count == 2  # both came back from the log
    time.sleep(max(0.0, 3.4 - (time.monotonic() - t0)))
    m, _, body = ch.basic_get("exp.durable", auto_ack=True)
    assert body == b"stays"
    assert ch.basic_get("exp.durable", auto_ack=True)[0] is None


def test_huge_ttls_do_not_overflow(amqp_broker, pika_connect):
    """TTLs near the int64 limit (client-chosen) never expire early and never
    overflow the expiry arithmetic (a UBSan report fails the test)."""
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("exp.huge", arguments={"x-message-ttl": 2**63 - 1})
    ch.basic_publish("", "exp.huge", b"kept", pika.BasicProperties(expiration="999999999999999"))
    time.sleep(0.2)
    m, _, body = ch.basic_get("exp.huge", auto_ack=True)
    assert body == b"kept"
