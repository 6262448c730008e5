"""The free disk space alarm (disk.free.limit.bytes, RabbitMQ's disk_free_limit).

A limit above any filesystem's free space raises the alarm from the start: a
pika connection that publishes is sent connection.blocked with RabbitMQ's
reason "low on disk" and its socket is no longer read, so its publishes reach
no queue, while connections that only declare, count and consume are served.
The shared blocking path (pausing, connection.unblocked) is exercised by
test_amqp_memory_watermark.py. Every wait is bounded.
"""

import time

import pytest

from test_amqp_memory_watermark import blocking_publisher, is_blocked, message_count, wait_for

NO_DISK_IS_THIS_BIG = 9223372036854775807


@pytest.mark.amqp_timeout(60)
def test_low_disk_blocks_publishers_only(amqp_factory, pika_connect):
    broker = amqp_factory(config_lines=[f"disk.free.limit.bytes = {NO_DISK_IS_THIS_BIG}"]).start()
    assert "starting with the disk alarm raised" in broker.stderr
    admin = pika_connect(broker)
    setup = admin.channel()
    setup.queue_declare("orders")
    pub = blocking_publisher(pika_connect, broker)
    ch = pub.channel()
    ch.queue_declare("orders")  # not a publish: answered
    for i in range(3):
        ch.basic_publish("", "orders", b"order %d" % i)
    wait_for(lambda: is_blocked(pub), 10, "connection.blocked",
             poll=lambda: pub.process_data_events(0.05))
    assert pub.blocked == ["low on disk"]
    assert "below disk.free.limit.bytes" in broker.stderr
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        pub.process_data_events(0.05)
    assert pub.is_open and is_blocked(pub)
    # Nothing published got in; the other connection is still served.
    assert message_count(admin, "orders") == 0
    assert setup.basic_get("orders", auto_ack=True) == (None, None, None)
    broker.kill9()  # the blocked connection's close would not be read


def test_disk_limit_zero_disables(amqp_factory, pika_connect):
    broker = amqp_factory(config_lines=["disk.free.limit.bytes = 0"]).start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.queue_declare("orders")
    ch.basic_publish("", "orders", b"order")
    wait_for(lambda: message_count(conn, "orders") == 1, 10, "the publish stored")
    assert "disk alarm" not in broker.stderr
