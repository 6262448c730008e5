"""Consumer priorities (basic.consume argument x-priority, RabbitMQ's extension):
a consumer of higher priority gets the messages while it has credit; lower
ones get them only while it is full; equal priorities share round robin."""

import time

import pika
import pytest


def pump_until(conn, cond, timeout=3.0):
    """Processes events until cond() holds (bounded), then a little more so that
    anything wrongly delivered would show."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        conn.process_data_events(time_limit=0.05)
    conn.process_data_events(time_limit=0.2)


def test_higher_priority_consumer_first(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("cp")
    ch.basic_qos(prefetch_count=3)
    got = {"low": [], "high": []}
    ch.basic_consume("cp", lambda c, m, p, b: got["low"].append(m.delivery_tag))
    ch.basic_consume("cp", lambda c, m, p, b: got["high"].append(m.delivery_tag),
                     arguments={"x-priority": 10})
    conn.process_data_events(time_limit=0.3)
    for i in range(2):
        ch.basic_publish("", "cp", b"%d" % i)
    pump_until(conn, lambda: len(got["high"]) + len(got["low"]) == 2)
    assert len(got["high"]) == 2 and got["low"] == []  # high has credit: it gets both
    for i in range(3):
        ch.basic_publish("", "cp", b"x%d" % i)
    pump_until(conn, lambda: len(got["high"]) + len(got["low"]) == 5)
    assert len(got["high"]) == 3  # full at its prefetch of 3
    assert len(got["low"]) == 2   # the rest go to the lower one meanwhile
    ch.basic_ack(got["high"][-1], multiple=True)  # high has room again
    ch.basic_publish("", "cp", b"after")
    pump_until(conn, lambda: len(got["high"]) + len(got["low"]) == 6)
    assert len(got["high"]) == 4 and len(got["low"]) == 2


def test_equal_priorities_round_robin(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("cp2")
    got = {"a": 0, "b": 0}

    def counter(k):
        def cb(c, m, p, b):
            got[k] += 1
            c.basic_ack(m.delivery_tag)
        return cb

    ch.basic_consume("cp2", counter("a"), arguments={"x-priority": 5})
    ch.basic_consume("cp2", counter("b"), arguments={"x-priority": 5})
    conn.process_data_events(time_limit=0.3)
    for i in range(10):
        ch.basic_publish("", "cp2", b"%d" % i)
    pump_until(conn, lambda: got["a"] + got["b"] == 10)
    assert got == {"a": 5, "b": 5}


def test_bad_consumer_priority_is_406(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("cp3")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume("cp3", lambda *a: None, arguments={"x-priority": "high"})
    assert e.value.reply_code == 406
