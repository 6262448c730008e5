"""basic.qos as RabbitMQ 3.10 with per_consumer_qos: global=false limits each
consumer started afterwards, global=true limits the unacked deliveries of all
the channel's consumers together, at once; both can apply; deliveries held
back by the channel limit are requeued when the channel closes."""

import time

import pika


def pump(conn, seconds=0.5):
    conn.process_data_events(time_limit=seconds)


def pump_until(conn, cond, timeout=5.0):
    """Processes events until cond() holds (bounded), then 0.3 s more so that a
    delivery beyond the limit would show."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        conn.process_data_events(time_limit=0.05)
    conn.process_data_events(time_limit=0.3)


def fill(ch, queue, n):
    ch.queue_declare(queue)
    for i in range(n):
        ch.basic_publish("", queue, f"{queue}-{i}".encode())


def test_global_prefetch_shared_by_the_channels_consumers(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    fill(ch, "gq1", 10)
    fill(ch, "gq2", 10)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = []
    ch.basic_consume("gq1", lambda c, m, p, b: got.append((m.delivery_tag, b)))
    ch.basic_consume("gq2", lambda c, m, p, b: got.append((m.delivery_tag, b)))
    pump_until(conn, lambda: len(got) >= 3)
    assert len(got) == 3, got  # 3 for the two consumers together, not 3 each
    ch.basic_ack(got[0][0])
    pump_until(conn, lambda: len(got) >= 4)
    assert len(got) == 4
    ch.basic_ack(got[-1][0], multiple=True)
    pump_until(conn, lambda: len(got) >= 7)
    assert len(got) == 7
    # Nothing is lost or duplicated: ack as they come until all 20 arrived.
    deadline = time.monotonic() + 10
    while len(got) < 20:
        assert time.monotonic() < deadline, len(got)
        ch.basic_ack(got[-1][0], multiple=True)
        pump(conn, 0.1)
    ch.basic_ack(got[-1][0], multiple=True)
    pump(conn)
    bodies = sorted(b for _, b in got)
    assert bodies == sorted([f"gq1-{i}".encode() for i in range(10)] +
                            [f"gq2-{i}".encode() for i in range(10)])


def test_global_and_per_consumer_limits_together(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    fill(ch, "bq1", 10)
    fill(ch, "bq2", 10)
    ch.basic_qos(prefetch_count=2)                     # each consumer: 2
    ch.basic_qos(prefetch_count=3, global_qos=True)    # the channel: 3
    got = {"bq1": [], "bq2": []}
    ch.basic_consume("bq1", lambda c, m, p, b: got["bq1"].append(m.delivery_tag))
    pump_until(conn, lambda: len(got["bq1"]) >= 2)
    assert len(got["bq1"]) == 2  # its own limit
    ch.basic_consume("bq2", lambda c, m, p, b: got["bq2"].append(m.delivery_tag))
    pump_until(conn, lambda: len(got["bq2"]) >= 1)
    assert len(got["bq2"]) == 1  # the channel's: 3 in all
    assert len(got["bq1"]) + len(got["bq2"]) == 3


def test_global_prefetch_change_applies_at_once(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    fill(ch, "gc", 10)
    ch.basic_qos(prefetch_count=2, global_qos=True)
    got = []
    ch.basic_consume("gc", lambda c, m, p, b: got.append(m.delivery_tag))
    pump_until(conn, lambda: len(got) >= 2)
    assert len(got) == 2
    ch.basic_qos(prefetch_count=0, global_qos=True)  # removed: the rest flows
    deadline = time.monotonic() + 5
    while len(got) < 10:
        assert time.monotonic() < deadline, len(got)
        pump(conn, 0.1)


def test_held_back_deliveries_requeued_on_channel_close(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    fill(ch, "gh1", 5)
    fill(ch, "gh2", 5)
    ch.basic_qos(prefetch_count=1, global_qos=True)
    got = []
    ch.basic_consume("gh1", lambda c, m, p, b: got.append(b))
    ch.basic_consume("gh2", lambda c, m, p, b: got.append(b))
    pump_until(conn, lambda: len(got) >= 1)
    assert len(got) == 1
    ch.close()
    other = pika_connect(amqp_broker).channel()
    total = 0
    for q in ("gh1", "gh2"):
        total += other.queue_declare(q, passive=True).method.message_count
    assert total == 10  # the delivered one and the held-back ones are all back
