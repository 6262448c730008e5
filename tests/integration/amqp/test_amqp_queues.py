"""The queue class with pika: declare (server-named, passive, durable, exclusive,
auto-delete, arguments), bind / unbind, purge, delete, exclusivity across
connections, restart durability, length limits and TTL. Reply codes and texts
are RabbitMQ 3.10's (checked side by side, see docs/amqp.md)."""

import time

import pika
import pika.exceptions
import pytest


def closed_with(fn, code):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn()
    assert e.value.reply_code == code, e.value.reply_text
    return e.value.reply_text


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_server_named_queue(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ok = ch.queue_declare("", exclusive=True).method
    assert ok.queue.startswith("amq.gen-") and len(ok.queue) == 30
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    other = ch.queue_declare("", exclusive=True).method.queue
    assert other != ok.queue


def test_declare_passive_and_equivalence(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    text = closed_with(lambda: ch.queue_declare("nq", passive=True), 404)
    assert text == "NOT_FOUND - no queue 'nq' in vhost '/'"
    ch = conn.channel()
    text = closed_with(lambda: ch.queue_declare("amq.q"), 403)
    assert "queue name 'amq.q' contains reserved prefix 'amq.*'" in text
    ch = conn.channel()
    ch.queue_declare("q1", durable=True)
    ch.basic_publish("", "q1", b"one")
    ok = ch.queue_declare("q1", durable=True).method
    assert ok.message_count == 1
    text = closed_with(lambda: ch.queue_declare("q1", durable=False), 406)
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q1' in vhost "
                    "'/': received 'false' but current is 'true'")
    ch = conn.channel()
    text = closed_with(lambda: ch.queue_declare("q1", durable=True, auto_delete=True), 406)
    assert "inequivalent arg 'auto_delete'" in text
    ch = conn.channel()
    closed_with(lambda: ch.queue_declare("q1", durable=True, exclusive=True), 405)
    assert conn.is_open


def test_queue_arguments_checked(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    text = closed_with(lambda: conn.channel().queue_declare(
        "a1", arguments={"x-max-length": "x"}), 406)
    assert "invalid arg 'x-max-length' for queue 'a1'" in text and "got longstr" in text
    text = closed_with(lambda: conn.channel().queue_declare(
        "a1", arguments={"x-message-ttl": -1}), 406)
    assert "{value_negative,-1}" in text
    text = closed_with(lambda: conn.channel().queue_declare(
        "a1", arguments={"x-overflow": "nope"}), 406)
    assert "invalid_overflow" in text
    conn.channel().queue_declare("a1", arguments={"x-queue-type": "classic",
                                                  "x-queue-mode": "lazy", "other": 1})


def test_unsupported_argument_is_540(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.channel().queue_declare("dl", arguments={"x-delivery-limit": 5})
    assert e.value.reply_code == 540
    assert "x-delivery-limit" in e.value.reply_text


def test_exclusive_queue_locked_and_deleted_with_owner(amqp_broker, pika_connect):
    owner = pika_connect(amqp_broker)
    och = owner.channel()
    och.queue_declare("mine", exclusive=True)
    och.queue_bind("mine", "amq.direct", "mine-key")
    other = pika_connect(amqp_broker)
    ops = [
        lambda c: c.queue_declare("mine", exclusive=True),
        lambda c: c.queue_declare("mine", passive=True),
        lambda c: c.queue_bind("mine", "amq.direct", "k"),
        lambda c: c.basic_consume("mine", lambda *a: None),
        lambda c: c.basic_get("mine"),
        lambda c: c.queue_purge("mine"),
        lambda c: c.queue_delete("mine"),
    ]
    for op in ops:
        ch = other.channel()
        text = closed_with(lambda: op(ch), 405)
        assert "cannot obtain exclusive access to locked queue 'mine'" in text
    och.basic_publish("", "mine", b"x")  # the owner uses it freely
    assert och.basic_get("mine", auto_ack=True)[2] == b"x"
    owner.close()

    def gone():
        ch = other.channel()
        try:
            ch.queue_declare("mine", passive=True)
            ch.close()
            return False
        except pika.exceptions.ChannelClosedByBroker as e:
            return e.reply_code == 404
    assert wait_for(gone)
    # Its binding went with it: a new queue of the same name is not bound.
    ch = other.channel()
    ch.queue_declare("mine")
    ch.basic_publish("amq.direct", "mine-key", b"stale?")
    assert ch.basic_get("mine", auto_ack=True)[0] is None


def test_bind_unbind(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("bq")
    ch.exchange_declare("bx", "direct")
    ch.queue_bind("bq", "bx", "k1")
    ch.queue_bind("bq", "bx", "k1")  # again: one binding
    ch.basic_publish("bx", "k1", b"m")
    assert ch.queue_declare("bq", passive=True).method.message_count == 1
    ch.queue_unbind("bq", "bx", "k1")
    ch.queue_unbind("bq", "bx", "k1")        # idempotent, as RabbitMQ
    ch.queue_unbind("nosuch", "nosuchx", "k")  # idempotent even when missing
    ch.basic_publish("bx", "k1", b"m")
    assert ch.queue_declare("bq", passive=True).method.message_count == 1
    text = closed_with(lambda: ch.queue_bind("nq", "bx", "k"), 404)
    assert text == "NOT_FOUND - no queue 'nq' in vhost '/'"
    ch = conn.channel()
    text = closed_with(lambda: ch.queue_bind("bq", "nx", "k"), 404)
    assert text == "NOT_FOUND - no exchange 'nx' in vhost '/'"
    ch = conn.channel()
    closed_with(lambda: ch.queue_bind("bq", "", "k"), 403)
    ch = conn.channel()
    text = closed_with(lambda: ch.queue_bind("", "bx", "k"), 404)
    assert text == "NOT_FOUND - no previously declared queue"
    ch = conn.channel()
    ch.queue_declare("cur")
    ch.queue_bind("", "bx")  # the channel's last queue, with its name as key
    ch.basic_publish("bx", "cur", b"to-current")
    assert ch.basic_get("cur", auto_ack=True)[2] == b"to-current"


def test_purge_and_delete(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("pd")
    for i in range(7):
        ch.basic_publish("", "pd", b"%d" % i)
    m = ch.basic_get("pd")  # one unacked: not purged
    assert ch.queue_purge("pd").method.message_count == 6
    ch.basic_nack(m[0].delivery_tag, requeue=True)
    text = closed_with(lambda: ch.queue_delete("pd", if_empty=True), 406)
    assert text == "PRECONDITION_FAILED - queue 'pd' in vhost '/' not empty"
    ch = conn.channel()
    ch.basic_consume("pd", lambda *a: None)
    text = closed_with(lambda: conn.channel().queue_delete("pd", if_unused=True), 406)
    assert text == "PRECONDITION_FAILED - queue 'pd' in vhost '/' in use"
    ch.close()
    ch = conn.channel()
    assert ch.queue_delete("nosuch").method.message_count == 0
    ch.queue_declare("pd2")
    ch.queue_bind("pd2", "amq.fanout")
    ch.basic_publish("", "pd2", b"a")
    ch.basic_publish("", "pd2", b"b")
    assert ch.queue_delete("pd2").method.message_count == 2
    closed_with(lambda: ch.queue_declare("pd2", passive=True), 404)
    ch = conn.channel()
    ch.queue_declare("pd2")  # the fanout binding went with the old queue
    ch.basic_publish("amq.fanout", "", b"c")
    assert ch.queue_declare("pd2", passive=True).method.message_count == 0


def test_auto_delete_queue(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("ad", auto_delete=True)
    ch.queue_bind("ad", "amq.topic", "ad.#")
    tag = ch.basic_consume("ad", lambda *a: None)
    ch.basic_cancel(tag)
    ch2 = conn.channel()
    assert wait_for(lambda: _missing(conn, "ad"))
    ch2.queue_declare("ad")
    ch2.basic_publish("amq.topic", "ad.x", b"m")
    assert ch2.queue_declare("ad", passive=True).method.message_count == 0


def _missing(conn, name):
    ch = conn.channel()
    try:
        ch.queue_declare(name, passive=True)
        ch.close()
        return False
    except pika.exceptions.ChannelClosedByBroker:
        return True


def test_max_length_drop_head(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("ml", arguments={"x-max-length": 3})
    for i in range(10):
        ch.basic_publish("", "ml", b"%d" % i)
    assert ch.queue_declare("ml", passive=True).method.message_count == 3
    bodies = [ch.basic_get("ml", auto_ack=True)[2] for _ in range(3)]
    assert bodies == [b"7", b"8", b"9"]


def test_max_length_reject_publish_nacks(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("flash", arguments={"x-max-length": 5, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    accepted = rejected = 0
    for i in range(8):
        try:
            ch.basic_publish("", "flash", b"%d" % i)
            accepted += 1
        except pika.exceptions.NackError:
            rejected += 1
    assert (accepted, rejected) == (5, 3)
    assert ch.queue_declare("flash", passive=True).method.message_count == 5


def test_message_ttl(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("ttl", arguments={"x-message-ttl": 200})
    ch.basic_publish("", "ttl", b"short-lived")
    time.sleep(0.5)
    assert ch.basic_get("ttl", auto_ack=True)[0] is None


def test_durable_queue_survives_restart(amqp_factory, pika_connect):
    broker = amqp_factory().start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.exchange_declare("orders", "topic", durable=True)
    ch.queue_declare("dq", durable=True)
    ch.queue_bind("dq", "orders", "eu.#")
    ch.queue_declare("tq", durable=False)
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("orders", "eu.new", b"p%d" % i,
                         pika.BasicProperties(delivery_mode=2, message_id=str(i)))
    conn.close()
    broker.restart()
    ch = pika_connect(broker).channel()
    assert ch.queue_declare("dq", durable=True).method.message_count == 5
    closed_with(lambda: ch.queue_declare("tq", passive=True), 404)
    ch = pika_connect(broker).channel()
    m = ch.basic_get("dq", auto_ack=True)
    assert m[2] == b"p0" and m[1].message_id == "0" and m[1].delivery_mode == 2
    assert m[0].exchange == "orders" and m[0].routing_key == "eu.new"
    ch.basic_publish("orders", "eu.again", b"after")  # the binding is back
    assert ch.queue_declare("dq", passive=True).method.message_count == 5


def test_durable_exclusive_queue_gone_after_restart(amqp_factory, pika_connect):
    """An exclusive queue belongs to its connection; a restart ends that connection,
    so the queue (durable or not) and its bindings are gone, as in RabbitMQ."""
    broker = amqp_factory().start()
    ch = pika_connect(broker).channel()
    ch.exchange_declare("ex.keep", "fanout", durable=True)
    ch.queue_declare("mine.durable", durable=True, exclusive=True)
    ch.queue_bind("mine.durable", "ex.keep")
    ch.queue_declare("shared.durable", durable=True)
    broker.restart()
    ch = pika_connect(broker).channel()
    ch.queue_declare("shared.durable", passive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("mine.durable", passive=True)
    assert e.value.reply_code == 404
    ch = pika_connect(broker).channel()
    ch.queue_declare("mine.durable", durable=True)  # a new, shared one: no old binding
    ch.basic_publish("ex.keep", "", b"x")
    time.sleep(0.2)
    assert ch.queue_declare("mine.durable", passive=True).method.message_count == 0
    broker.restart()  # and the catalog agrees
    ch = pika_connect(broker).channel()
    assert ch.queue_declare("mine.durable", passive=True).method.message_count == 0


def test_acked_segments_free_disk_space(amqp_factory, pika_connect):
    """A durable queue keeps its messages in a segmented log: once every message
    of a segment is acked, the segment file is deleted (disk space freed), and
    what is still unacked stays on disk and is delivered."""
    broker = amqp_factory(config_lines=["queue.segment.bytes = 65536"]).start()
    name = "free-disk"
    log_dir = broker.data_dir / "queues" / name.encode().hex() / "log"
    ch = pika_connect(broker).channel()
    ch.queue_declare(name, durable=True)
    ch.confirm_delivery()
    body = b"x" * 1024
    for i in range(1000):
        ch.basic_publish("", name, body + str(i).encode(),
                         pika.BasicProperties(delivery_mode=2))

    def segments():
        return sorted(p for p in log_dir.iterdir() if p.suffix == ".log")

    def size():
        return sum(p.stat().st_size for p in segments())

    full_segments, full_size = len(segments()), size()
    assert full_segments >= 10, full_segments  # ~1 MiB in 64 KiB segments
    assert full_size >= 1000 * 1024

    # Consume and ack all but the last 10 messages.
    got = []
    for _ in range(990):
        method, _props, b = ch.basic_get(name)
        assert method is not None
        got.append(b)
        ch.basic_ack(method.delivery_tag)
    assert got[0] == body + b"0" and got[-1] == body + b"989"
    assert wait_for(lambda: size() < full_size / 5, timeout=10), (full_size, size())
    assert len(segments()) <= 2, [p.name for p in segments()]

    # The unacked tail is intact.
    rest = []
    while True:
        method, _props, b = ch.basic_get(name, auto_ack=True)
        if method is None:
            break
        rest.append(b)
    assert rest == [body + str(i).encode() for i in range(990, 1000)]


def _log_fsyncs(amqp_factory, pika_connect, durable, delivery_mode, n=300):
    """Publishes n confirmed messages to a fresh broker's queue, consumes and acks
    them, stops the broker and returns the log fsyncs it reported."""
    import re
    broker = amqp_factory().start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("fsync-q", durable=durable)
    for i in range(n):
        ch.basic_publish("", "fsync-q", b"m%d" % i,
                         pika.BasicProperties(delivery_mode=delivery_mode))
    got = 0
    for method, _props, _body in ch.consume("fsync-q", inactivity_timeout=5):
        assert method is not None, f"only {got} of {n} delivered"
        got += 1
        ch.basic_ack(method.delivery_tag)
        if got == n:
            break
    ch.cancel()
    conn.close()
    assert broker.stop() == 0
    m = re.search(r"(\d+) log fsyncs while running", broker.stderr)
    assert m, broker.stderr[-2000:]
    return int(m.group(1))


def test_only_persistent_messages_in_durable_queues_pay_for_fsync(amqp_factory, pika_connect):
    """log.flush=batch (the default): a confirmed persistent message in a durable
    queue waits for an fsync; transient messages, and any message in a
    non-durable queue, are confirmed without one."""
    assert _log_fsyncs(amqp_factory, pika_connect, durable=False, delivery_mode=2) == 0
    assert _log_fsyncs(amqp_factory, pika_connect, durable=True, delivery_mode=1) == 0
    # pika's confirm_delivery waits for each confirm: one fsync per publish at least.
    assert _log_fsyncs(amqp_factory, pika_connect, durable=True, delivery_mode=2) >= 300
