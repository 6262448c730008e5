"""x-single-active-consumer (RabbitMQ 3.8+; behaviour checked side by side with
RabbitMQ 3.10.8): only the first consumer to register receives; when it goes,
the next one takes over, with the messages it left unacked first."""

import time

import pika
import pytest


def pump_until(conns, cond, timeout=5.0):
    """Processes both connections' events until cond() holds (bounded), then a
    little more so that a wrong delivery would show."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        for c in conns:
            c.process_data_events(time_limit=0.03)
    for c in conns:
        c.process_data_events(time_limit=0.3)


def test_single_active_consumer_and_takeover(amqp_broker, pika_connect):
    c1 = pika_connect(amqp_broker)
    ch = c1.channel()
    ch.queue_declare("sac", arguments={"x-single-active-consumer": True})
    for i in range(6):
        ch.basic_publish("", "sac", b"%d" % i)
    ch.basic_qos(prefetch_count=2)
    got = {"a": [], "b": []}
    ch.basic_consume("sac", lambda c, m, p, b: got["a"].append((m.delivery_tag, b)))
    c2 = pika_connect(amqp_broker)
    ch2 = c2.channel()
    ch2.basic_qos(prefetch_count=2)
    ch2.basic_consume("sac", lambda c, m, p, b: got["b"].append((m.delivery_tag, b)))
    pump_until((c1, c2), lambda: len(got["a"]) >= 2)
    assert [b for _, b in got["a"]] == [b"0", b"1"]
    assert got["b"] == []  # not active, although it has credit
    ch.basic_ack(got["a"][0][0])
    pump_until((c1, c2), lambda: len(got["a"]) >= 3)
    assert [b for _, b in got["a"]] == [b"0", b"1", b"2"]
    assert got["b"] == []
    c1.close()  # the active consumer leaves: "1" and "2" are requeued, b takes over
    pump_until((c2,), lambda: len(got["b"]) >= 2)
    assert [b for _, b in got["b"]] == [b"1", b"2"]


def test_single_active_consumer_argument_checked(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        conn.channel().queue_declare("sac2", arguments={"x-single-active-consumer": "yes"})
    assert e.value.reply_code == 406
    assert "{unacceptable_type,longstr}" in e.value.reply_text
    ch = conn.channel()
    ch.queue_declare("sac3", arguments={"x-single-active-consumer": True})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("sac3")
    assert e.value.reply_code == 406
    assert "x-single-active-consumer" in e.value.reply_text
