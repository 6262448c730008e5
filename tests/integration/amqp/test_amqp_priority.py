"""Priority queues with pika: x-max-priority (RabbitMQ 3.10 classic queue
semantics, docs/amqp.md "Priority queues"): highest priority first, FIFO within
a priority, priorities above the maximum treated as the maximum, requeued
messages back in their place, drop-head taking what would be delivered next,
bad x-max-priority values refused with 406, order kept across a restart."""

import decimal
import random
import time

import pika
import pika.exceptions
import pytest


def closed_with(fn, code):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn()
    assert e.value.reply_code == code, e.value.reply_text
    return e.value.reply_text


def shuffled_messages(seed=7, copies=3):
    """(priority, body) for priorities 0..9, copies of each, shuffled; bodies
    carry the publish index so FIFO inside a priority can be checked."""
    prios = [p for p in range(10) for _ in range(copies)]
    random.Random(seed).shuffle(prios)
    return [(p, b"p%d-%03d" % (p, i)) for i, p in enumerate(prios)]


def expected_order(msgs, max_priority):
    """Highest (capped) priority first, then publish order."""
    def level(p):
        return 0 if p is None else min(p, max_priority)
    ranked = sorted((-level(p), i, b) for i, (p, b) in enumerate(msgs))
    return [b for _, _, b in ranked]


def publish_all(ch, queue, msgs, persistent=False):
    for p, body in msgs:
        props = pika.BasicProperties(priority=p, delivery_mode=2 if persistent else None)
        ch.basic_publish("", queue, body, props)


def get_all(ch, queue, limit=1000):
    out = []
    for _ in range(limit):
        m = ch.basic_get(queue, auto_ack=True)
        if m[0] is None:
            return out
        out.append(m[2])
    raise AssertionError("queue never emptied")


def test_basic_get_in_priority_order(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("pq", arguments={"x-max-priority": 10})
    msgs = shuffled_messages()
    msgs.insert(4, (None, b"none-a"))  # no priority property: 0
    msgs.append((None, b"none-b"))
    ch.confirm_delivery()
    publish_all(ch, "pq", msgs)
    assert ch.queue_declare("pq", passive=True).method.message_count == len(msgs)
    got = get_all(ch, "pq")
    assert got == expected_order(msgs, 10)
    assert got[:3] == [b for _, b in msgs if _ == 9]


def test_consume_in_priority_order(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("pc", arguments={"x-max-priority": 10})
    msgs = shuffled_messages(seed=11)
    ch.confirm_delivery()
    publish_all(ch, "pc", msgs)
    got = []

    def on_msg(c, method, props, body):
        got.append((body, props.priority))
        c.basic_ack(method.delivery_tag)

    ch.basic_qos(prefetch_count=5)
    ch.basic_consume("pc", on_msg)
    deadline = time.monotonic() + 10
    while len(got) < len(msgs) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert [b for b, _ in got] == expected_order(msgs, 10)
    # The property is delivered as published.
    assert all(body.startswith(b"p%d-" % p) for body, p in got)


def test_consume_prefers_new_high_priority(amqp_broker, pika_connect):
    """With prefetch 1 and a backlog of low priority messages, a high priority
    message published meanwhile is the next one delivered."""
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("pn", arguments={"x-max-priority": 5})
    ch.confirm_delivery()
    publish_all(ch, "pn", [(1, b"low-%d" % i) for i in range(5)])
    got = []
    tags = []

    def on_msg(c, method, props, body):
        got.append(body)
        tags.append(method.delivery_tag)

    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("pn", on_msg)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert got == [b"low-0"]
    publish_all(ch, "pn", [(5, b"high")])
    ch.basic_ack(tags[-1])
    while len(got) < 2 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert got == [b"low-0", b"high"]


def test_priority_above_max_is_max(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("pm", arguments={"x-max-priority": 3})
    msgs = [(2, b"a"), (200, b"b"), (3, b"c"), (9, b"d"), (None, b"e"), (255, b"f")]
    ch.confirm_delivery()
    publish_all(ch, "pm", msgs)
    got = []
    for _ in msgs:
        m = ch.basic_get("pm", auto_ack=True)
        got.append((m[2], m[1].priority))
    assert got == [(b"b", 200), (b"c", 3), (b"d", 9), (b"f", 255), (b"a", 2), (b"e", None)]


def test_queue_without_max_priority_ignores_priorities(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("plain")
    msgs = shuffled_messages(seed=3, copies=1)
    ch.confirm_delivery()
    publish_all(ch, "plain", msgs)
    assert get_all(ch, "plain") == [b for _, b in msgs]


def test_bad_max_priority_is_406(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    text = closed_with(lambda: conn.channel().queue_declare(
        "bp", arguments={"x-max-priority": 256}), 406)
    assert text == ("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'bp' in "
                    "vhost '/': {max_value_exceeded,256}")
    text = closed_with(lambda: conn.channel().queue_declare(
        "bp", arguments={"x-max-priority": -1}), 406)
    assert text == ("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'bp' in "
                    "vhost '/': {value_negative,-1}")
    text = closed_with(lambda: conn.channel().queue_declare(
        "bp", arguments={"x-max-priority": "ten"}), 406)
    assert text == ("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'bp' in "
                    "vhost '/': \"expected integer, got longstr\"")
    text = closed_with(lambda: conn.channel().queue_declare(
        "bp", arguments={"x-max-priority": decimal.Decimal("1.5")}), 406)
    assert text.endswith("\"expected integer, got decimal\"")
    ch = conn.channel()
    closed_with(lambda: ch.queue_declare("bp", passive=True), 404)  # never created
    ch = conn.channel()
    ch.queue_declare("p255", arguments={"x-max-priority": 255})
    ch.queue_declare("p0", arguments={"x-max-priority": 0})
    assert conn.is_open


def test_requeue_goes_back_to_its_place(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("pr", arguments={"x-max-priority": 9})
    msgs = [(5, b"a5"), (5, b"b5"), (1, b"c1"), (9, b"d9"), (5, b"e5")]
    ch.confirm_delivery()
    publish_all(ch, "pr", msgs)
    first = [ch.basic_get("pr") for _ in range(3)]
    assert [m[2] for m in first] == [b"d9", b"a5", b"b5"]
    ch.basic_nack(first[2][0].delivery_tag, requeue=True)  # b5
    ch.basic_reject(first[0][0].delivery_tag, requeue=True)  # d9
    ch.basic_ack(first[1][0].delivery_tag)  # a5 done
    got = []
    for _ in range(4):
        m = ch.basic_get("pr", auto_ack=True)
        got.append((m[2], m[0].redelivered))
    assert got == [(b"d9", True), (b"b5", True), (b"e5", False), (b"c1", False)]
    # Unacked messages of a closing channel go back to their places too.
    publish_all(ch, "pr", msgs)
    ch2 = conn.channel()
    held = [ch2.basic_get("pr")[2] for _ in range(2)]
    assert held == [b"d9", b"a5"]
    ch2.close()
    assert [(m, True) for m in held] == [
        (m[2], m[0].redelivered) for m in (ch.basic_get("pr", auto_ack=True) for _ in range(2))]
    assert get_all(ch, "pr") == [b"b5", b"e5", b"c1"]


def test_max_length_drops_next_to_deliver(amqp_broker, pika_connect):
    """RabbitMQ's drop-head on a priority queue (rabbit_priority_queue:drop/2)
    drops the head of the highest priority: the message a get would take."""
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("pl", arguments={"x-max-priority": 10, "x-max-length": 3})
    ch.confirm_delivery()
    publish_all(ch, "pl", [(1, b"a1"), (5, b"b5"), (1, b"c1")])
    publish_all(ch, "pl", [(0, b"d0")])   # drops b5
    assert ch.queue_declare("pl", passive=True).method.message_count == 3
    publish_all(ch, "pl", [(9, b"e9")])   # drops e9 itself: it is the head now
    assert get_all(ch, "pl") == [b"a1", b"c1", b"d0"]


def test_ttl_and_purge_on_priority_queue(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("pt", arguments={"x-max-priority": 10})
    ch.confirm_delivery()
    ch.basic_publish("", "pt", b"short", pika.BasicProperties(priority=9, expiration="100"))
    publish_all(ch, "pt", [(2, b"two"), (7, b"seven")])
    time.sleep(0.3)
    assert get_all(ch, "pt") == [b"seven", b"two"]
    publish_all(ch, "pt", [(2, b"x"), (7, b"y")])
    assert ch.queue_purge("pt").method.message_count == 2
    assert ch.basic_get("pt")[0] is None


@pytest.mark.amqp_timeout(60)
def test_priority_order_survives_restart(amqp_factory, pika_connect):
    broker = amqp_factory().start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.queue_declare("dpq", durable=True, arguments={"x-max-priority": 10})
    msgs = shuffled_messages(seed=5)
    ch.confirm_delivery()
    publish_all(ch, "dpq", msgs, persistent=True)
    # Take the two highest, ack one, leave the other unacked across the restart.
    a = ch.basic_get("dpq")
    b = ch.basic_get("dpq")
    want = expected_order(msgs, 10)
    assert [a[2], b[2]] == want[:2]
    ch.basic_ack(a[0].delivery_tag)
    time.sleep(0.2)  # the ack reaches the queue's owner before the stop
    conn.close()
    broker.restart()
    conn = pika_connect(broker)
    ch = conn.channel()
    ok = ch.queue_declare("dpq", durable=True, arguments={"x-max-priority": 10}).method
    assert ok.message_count == len(msgs) - 1
    # Still a priority queue after the restart: a new high one goes first.
    ch.confirm_delivery()
    publish_all(ch, "dpq", [(10, b"new-10"), (0, b"new-0")], persistent=True)
    first = ch.basic_get("dpq", auto_ack=True)
    assert first[2] == b"new-10"
    second = ch.basic_get("dpq", auto_ack=True)
    assert second[2] == want[1] and second[0].redelivered
    rest = get_all(ch, "dpq")
    assert rest == want[2:] + [b"new-0"]
    # And again after a crash (kill -9).
    publish_all(ch, "dpq", [(3, b"c3"), (8, b"c8"), (3, b"d3")], persistent=True)
    conn.close()
    broker.kill9()
    broker.start()
    ch = pika_connect(broker).channel()
    assert get_all(ch, "dpq") == [b"c8", b"c3", b"d3"]
