"""Traffic shaping under a burst (the flash-sale case): several publishers with
confirms flood a bounded queue (x-max-length, x-overflow reject-publish) while a
slow consumer drains it. Every message is either confirmed (ack) and then
consumed exactly once, or refused (nack) and never seen; the queue never holds
more than its limit and the broker stays up."""

import threading
import time

import pika
import pytest

LIMIT = 300
PUBLISHERS = 3
PER_PUBLISHER = 2000


def publisher(port, index, acked, nacked, errors):
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", port, socket_timeout=5, blocked_connection_timeout=30))
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(PER_PUBLISHER):
            body = f"{index}-{i}".encode()
            try:
                ch.basic_publish("", "flash.sale", body)
                acked.append(body)
            except pika.exceptions.NackError:
                nacked.append(body)
        conn.close()
    except Exception as e:  # reported by the test
        errors.append(repr(e))


@pytest.mark.amqp_timeout(120)
def test_flash_sale_burst_reject_publish(amqp_broker, pika_connect):
    setup = pika_connect(amqp_broker).channel()
    setup.queue_declare("flash.sale", durable=True,
                        arguments={"x-max-length": LIMIT, "x-overflow": "reject-publish"})
    acked, nacked, errors = [], [], []
    threads = [threading.Thread(target=publisher,
                                args=(amqp_broker.amqp_port, i, acked, nacked, errors))
               for i in range(PUBLISHERS)]
    for t in threads:
        t.start()

    # A slow consumer: prefetch 10, a short pause per message.
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    consumed = []
    max_depth = 0

    def on_msg(c, method, props, body):
        consumed.append(body)
        c.basic_ack(method.delivery_tag)

    ch.basic_consume("flash.sale", on_msg)
    deadline = time.monotonic() + 100
    while any(t.is_alive() for t in threads):
        assert time.monotonic() < deadline, "publishers did not finish"
        conn.process_data_events(time_limit=0.05)
        time.sleep(0.01)  # slow: lets the queue fill up
        depth = setup.queue_declare("flash.sale", passive=True).method.message_count
        max_depth = max(max_depth, depth)
    for t in threads:
        t.join(5)
    assert not errors
    # Drain what is left.
    while len(consumed) < len(acked):
        assert time.monotonic() < deadline, (len(consumed), len(acked))
        conn.process_data_events(time_limit=0.1)
    conn.process_data_events(time_limit=0.3)  # nothing more may arrive

    assert len(acked) + len(nacked) == PUBLISHERS * PER_PUBLISHER
    assert nacked, "the burst never hit the limit: the test proves nothing"
    assert max_depth <= LIMIT
    assert len(consumed) == len(set(consumed)), "a message was delivered twice"
    assert set(consumed) == set(acked), "consumed set differs from the confirmed set"
    assert not set(consumed) & set(nacked)
    assert amqp_broker.running()
    print(f"acked {len(acked)} nacked {len(nacked)} max depth {max_depth}")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.amqp_timeout(120)
def test_long_queue_pages_to_disk_not_ram(amqp_broker, pika_connect):
    """A queue nobody consumes holds 160 MB of messages: they are on disk, and the
    broker's memory grows by a small fraction of that (the bounded delivery cache
    and a small entry per message), then every message comes back in order."""
    import os
    if "ASAN_OPTIONS" in os.environ or "asan" in os.environ.get("SLUICE_BIN", ""):
        pytest.skip("AddressSanitizer's quarantine keeps freed memory: RSS says nothing")
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("long.q", durable=True)
    body = os.urandom(4096)
    n = 40000
    before = rss_bytes(amqp_broker.pid)
    for i in range(n):
        ch.basic_publish("", "long.q", i.to_bytes(4, "big") + body,
                         pika.BasicProperties(delivery_mode=2))
    deadline = time.monotonic() + 60
    while ch.queue_declare("long.q", passive=True).method.message_count < n:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grown = rss_bytes(amqp_broker.pid) - before
    stored = n * (len(body) + 4)
    print(f"RSS grew by {grown} bytes for {stored} bytes queued")
    assert grown < stored / 4, f"RSS grew by {grown} bytes for {stored} bytes queued"
    ch.basic_qos(prefetch_count=500)
    seen = 0

    def on_msg(c, method, props, b):
        nonlocal seen
        assert int.from_bytes(b[:4], "big") == seen
        seen += 1
        if seen % 250 == 0:
            c.basic_ack(method.delivery_tag, multiple=True)

    ch.basic_consume("long.q", on_msg)
    while seen < n:
        assert time.monotonic() < deadline, seen
        conn.process_data_events(time_limit=0.2)
