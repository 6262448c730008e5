"""The basic class with pika: publish / get / consume with every property,
acks, nacks and rejects with requeue (redelivered set), unacked messages coming
back when a channel or connection closes, competing consumers with prefetch 1,
cancel (both ways), publisher confirms, mandatory returns, routing through
every exchange type, RPC with reply_to / correlation_id, large and empty
bodies. Reply codes are RabbitMQ 3.10's (docs/amqp.md)."""

import struct
import threading
import time

import pika
import pika.exceptions
import pytest

from amqp_raw import RawAmqp, frame, method, shortstr


def closed_with(fn, code):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn()
    assert e.value.reply_code == code, e.value.reply_text
    return e.value.reply_text


def drain(ch, queue, n, timeout=10.0, auto_ack=True):
    """Consumes n messages (bounded wait); returns [(method, props, body)]."""
    got = []
    deadline = time.monotonic() + timeout
    for m in ch.consume(queue, auto_ack=auto_ack, inactivity_timeout=0.5):
        if m[0] is not None:
            got.append(m)
        if len(got) == n or time.monotonic() > deadline:
            break
    ch.cancel()
    return got


def test_properties_round_trip(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("props")
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip",
        headers={"s": "str", "i": 42, "big": 2 ** 40, "neg": -7, "t": True, "n": None,
                 "nested": {"a": [1, "two", {"x": b"bytes"}]}},
        delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="replies",
        expiration="60000", message_id="mid-1", timestamp=1700000000, type="order",
        user_id="guest", app_id="tests", cluster_id="c1")
    ch.basic_publish("", "props", b"payload", props)
    m, p, body = ch.basic_get("props", auto_ack=True)
    assert body == b"payload" and not m.redelivered
    assert (m.exchange, m.routing_key) == ("", "props")
    for field in ("content_type", "content_encoding", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                  "type", "user_id", "app_id", "cluster_id"):
        assert getattr(p, field) == getattr(props, field), field
    assert p.headers["s"] == b"str" or p.headers["s"] == "str"
    assert p.headers["i"] == 42 and p.headers["big"] == 2 ** 40 and p.headers["neg"] == -7
    assert p.headers["t"] is True and p.headers["n"] is None
    assert p.headers["nested"]["a"][0] == 1


def test_get_empty_and_counts(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("ge")
    assert ch.basic_get("ge") == (None, None, None)
    for i in range(3):
        ch.basic_publish("", "ge", b"%d" % i)
    m = ch.basic_get("ge", auto_ack=True)
    assert m[2] == b"0" and m[0].message_count == 2


def test_large_and_empty_bodies(amqp_factory, pika_connect):
    broker = amqp_factory(config_lines=["message.max.bytes = 4194304"]).start()
    ch = pika_connect(broker).channel()
    ch.queue_declare("sizes")
    ch.confirm_delivery()
    big = bytes(range(256)) * 4096  # 1 MiB: many body frames each way
    ch.basic_publish("", "sizes", big)
    ch.basic_publish("", "sizes", b"")
    assert ch.basic_get("sizes", auto_ack=True)[2] == big
    assert ch.basic_get("sizes", auto_ack=True)[2] == b""


def test_ack_nack_reject(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("anr")
    for i in range(4):
        ch.basic_publish("", "anr", b"%d" % i)
    got = [ch.basic_get("anr") for _ in range(4)]
    tags = [m[0].delivery_tag for m in got]
    assert tags == sorted(tags) and len(set(tags)) == 4
    ch.basic_nack(tags[0], requeue=True)       # back in its place, redelivered
    ch.basic_reject(tags[1], requeue=False)    # dropped
    ch.basic_ack(tags[3], multiple=True)       # acks 2 and 3
    m = ch.basic_get("anr", auto_ack=True)
    assert m[2] == b"0" and m[0].redelivered
    assert ch.basic_get("anr") == (None, None, None)
    text = closed_with(lambda: (ch.basic_ack(tags[3]), ch.queue_declare("anr", passive=True)),
                       406)
    assert text == f"PRECONDITION_FAILED - unknown delivery tag {tags[3]}"
    assert conn.is_open


def test_nack_multiple_and_recover(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("nm")
    for i in range(5):
        ch.basic_publish("", "nm", b"%d" % i)
    got = [ch.basic_get("nm") for _ in range(5)]
    ch.basic_nack(got[2][0].delivery_tag, multiple=True, requeue=True)  # 0, 1, 2 back
    ch.basic_recover(requeue=True)  # 3, 4 back
    bodies = [ch.basic_get("nm", auto_ack=True) for _ in range(5)]
    assert [b[2] for b in bodies] == [b"0", b"1", b"2", b"3", b"4"]
    assert all(b[0].redelivered for b in bodies)


def test_unacked_requeued_on_channel_and_connection_close(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("rq")
    for i in range(3):
        ch.basic_publish("", "rq", b"%d" % i)
    ch2 = conn.channel()
    assert ch2.basic_get("rq")[2] == b"0"
    ch2.close()
    # Requeues travel from this connection's loop to the queue's owner; a
    # declare on the same connection answers only after they arrived.
    assert ch.queue_declare("rq", passive=True).method.message_count == 3
    conn2 = pika_connect(amqp_broker)
    c2 = conn2.channel()
    assert c2.basic_get("rq")[2] == b"0"
    assert c2.basic_get("rq")[2] == b"1"
    conn2.close()
    deadline = time.monotonic() + 5  # conn2's requeues come from its own loop
    while ch.queue_declare("rq", passive=True).method.message_count < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    got = drain(ch, "rq", 3)
    assert [m[2] for m in got] == [b"0", b"1", b"2"]
    assert [m[0].redelivered for m in got] == [True, True, False]


def test_work_queue_fair_dispatch(amqp_broker, pika_connect):
    """3 competing consumers with prefetch 1: each takes the next message only
    after acking its current one, so a slow consumer gets fewer."""
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("work", durable=True)
    ch.confirm_delivery()
    for i in range(30):
        ch.basic_publish("", "work", b"%d" % i, pika.BasicProperties(delivery_mode=2))
    counts, lock, done = {}, threading.Lock(), threading.Event()
    total = []

    def worker(name, delay):
        c = pika_connect(amqp_broker)
        wch = c.channel()
        wch.basic_qos(prefetch_count=1)

        def on_msg(chn, m, p, body):
            time.sleep(delay)
            chn.basic_ack(m.delivery_tag)
            with lock:
                counts[name] = counts.get(name, 0) + 1
                total.append(body)
                if len(total) == 30:
                    done.set()
        wch.basic_consume("work", on_msg)
        deadline = time.monotonic() + 20
        while not done.is_set() and time.monotonic() < deadline:
            c.process_data_events(time_limit=0.1)
        c.close()

    threads = [threading.Thread(target=worker, args=(n, d))
               for n, d in (("fast1", 0.0), ("fast2", 0.0), ("slow", 0.3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(25)
    assert done.is_set()
    assert sorted(total, key=int) == [b"%d" % i for i in range(30)]
    assert counts["slow"] < counts["fast1"] and counts["slow"] < counts["fast2"]
    assert ch.queue_declare("work", durable=True, passive=True).method.message_count == 0


def test_cancel_and_server_cancel(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("cq")
    seen = []
    tag = ch.basic_consume("cq", lambda c, m, p, b: seen.append(b), auto_ack=True)
    ch.basic_publish("", "cq", b"one")
    conn.process_data_events(time_limit=1)
    assert seen == [b"one"]
    ch.basic_cancel(tag)
    ch.basic_publish("", "cq", b"two")
    conn.process_data_events(time_limit=0.5)
    assert seen == [b"one"]
    assert ch.basic_get("cq", auto_ack=True)[2] == b"two"
    # Deleting the queue cancels its consumers: pika gets basic.cancel.
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag2 = ch.basic_consume("cq", lambda *a: None)
    other = pika_connect(amqp_broker).channel()
    other.queue_delete("cq")
    deadline = time.monotonic() + 5
    while not cancelled and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert cancelled == [tag2]


def test_consumer_errors(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    text = closed_with(lambda: conn.channel().basic_consume("nosuch", lambda *a: None), 404)
    assert text == "NOT_FOUND - no queue 'nosuch' in vhost '/'"
    ch = conn.channel()
    ch.queue_declare("ex-c")
    ch.basic_consume("ex-c", lambda *a: None, exclusive=True)
    text = closed_with(lambda: conn.channel().basic_consume("ex-c", lambda *a: None), 403)
    assert text == "ACCESS_REFUSED - queue 'ex-c' in vhost '/' in exclusive use"
    ch.queue_declare("used")
    ch.basic_consume("used", lambda *a: None)
    closed_with(lambda: conn.channel().basic_consume("used", lambda *a: None, exclusive=True),
                403)
    text = closed_with(lambda: conn.channel().basic_get("nosuch"), 404)
    assert conn.is_open


def test_publish_errors(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    text = closed_with(lambda: (ch.basic_publish("nx", "k", b"x"),
                                ch.queue_declare("", exclusive=True)), 404)
    assert text == "NOT_FOUND - no exchange 'nx' in vhost '/'"
    ch = conn.channel()
    ch.exchange_declare("inner", "fanout", internal=True)
    text = closed_with(lambda: (ch.basic_publish("inner", "k", b"x"),
                                ch.queue_declare("", exclusive=True)), 403)
    assert "cannot publish to internal exchange 'inner'" in text
    assert conn.is_open
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.channel().basic_qos(prefetch_size=10)
    assert e.value.reply_code == 540


def test_publisher_confirms(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("conf", durable=True)
    ch.confirm_delivery()
    for i in range(500):
        ch.basic_publish("", "conf", b"%d" % i, pika.BasicProperties(delivery_mode=2))
    assert ch.queue_declare("conf", durable=True, passive=True).method.message_count == 500
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("amq.direct", "nobody", b"x", mandatory=True)
    ch.basic_publish("amq.direct", "nobody", b"x")  # not mandatory: acked, dropped


def test_mandatory_return_content(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, p, b)))
    ch.basic_publish("amq.topic", "no.route", b"back", pika.BasicProperties(message_id="r1"),
                     mandatory=True)
    deadline = time.monotonic() + 5
    while not returned and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    m, p, b = returned[0]
    assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == \
        (312, "NO_ROUTE", "amq.topic", "no.route")
    assert b == b"back" and p.message_id == "r1"


def test_routing_all_exchange_types(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    for q in ("qa", "qb", "qc", "qh"):
        ch.queue_declare(q)
    ch.exchange_declare("logs", "fanout")
    ch.exchange_declare("topics", "topic")
    ch.queue_bind("qa", "logs")
    ch.queue_bind("qb", "logs")
    ch.queue_bind("qc", "topics", "*.error")
    ch.queue_bind("qa", "topics", "kern.#")
    ch.exchange_bind("logs", "topics", "audit.#")  # e2e: topics -> logs -> qa, qb
    ch.queue_bind("qh", "amq.headers", arguments={"x-match": "any", "fmt": "pdf", "n": 1})
    ch.basic_publish("logs", "", b"fan")
    ch.basic_publish("topics", "kern.error", b"kern")
    ch.basic_publish("topics", "audit.login", b"audit")
    ch.basic_publish("amq.headers", "", b"hdr", pika.BasicProperties(headers={"n": 1}))
    ch.basic_publish("amq.headers", "", b"nohdr", pika.BasicProperties(headers={"n": 2}))

    def bodies(q):
        out = []
        while True:
            m = ch.basic_get(q, auto_ack=True)
            if m[0] is None:
                return out
            out.append(m[2])
    assert bodies("qa") == [b"fan", b"kern", b"audit"]
    assert bodies("qb") == [b"fan", b"audit"]
    assert bodies("qc") == [b"kern"]
    assert bodies("qh") == [b"hdr"]


def test_rpc_reply_to(amqp_broker, pika_connect):
    server = pika_connect(amqp_broker).channel()
    server.queue_declare("rpc")
    client_conn = pika_connect(amqp_broker)
    client = client_conn.channel()
    reply_q = client.queue_declare("", exclusive=True).method.queue
    client.basic_publish("", "rpc", b"6", pika.BasicProperties(reply_to=reply_q,
                                                               correlation_id="c-42"))
    # Another connection's publish: wait for it rather than get at once.
    m, p, body = drain(server, "rpc", 1)[0]
    server.basic_publish("", p.reply_to, b"%d" % (int(body) * 7),
                         pika.BasicProperties(correlation_id=p.correlation_id))
    got = drain(client, reply_q, 1)
    assert got[0][2] == b"42" and got[0][1].correlation_id == "c-42"


def test_no_ack_consumer_and_prefetch(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("pf")
    for i in range(10):
        ch.basic_publish("", "pf", b"%d" % i)
    ch.basic_qos(prefetch_count=3)
    held = []
    ch.basic_consume("pf", lambda c, m, p, b: held.append(m.delivery_tag))
    conn.process_data_events(time_limit=1)
    assert len(held) == 3  # no ack: the window stays full
    ch.basic_ack(held[-1], multiple=True)
    conn.process_data_events(time_limit=1)
    assert len(held) == 6


def test_content_frames_interleave_across_channels(amqp_broker):
    """Spec 4.2.6: content of one channel may be interleaved with other channels'
    frames, but a method on the same channel before the body ends is 505."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.open_channel(2)
    decl = method(2, 50, 10, b"\x00\x00" + shortstr("il") + b"\x00" + struct.pack(">I", 0))
    raw.send(decl)
    assert raw.recv_method().method == (50, 11)
    publish = method(1, 60, 40, b"\x00\x00" + shortstr("") + shortstr("il") + b"\x00")
    header = frame(2, 1, struct.pack(">HHQH", 60, 0, 10, 0))
    raw.send(publish + header + frame(3, 1, b"hello"))
    raw.send(method(2, 20, 20, b"\x01"))  # channel.flow on channel 2, mid-content
    assert raw.recv_method().method == (20, 21)
    raw.send(frame(3, 1, b"world"))
    raw.send(method(2, 60, 70, b"\x00\x00" + shortstr("il") + b"\x01"))  # basic.get no-ack
    f = raw.recv_method()
    assert (f.channel, f.method) == (2, (60, 71))
    hdr = raw.recv_frame()
    body = raw.recv_frame()
    assert hdr.type == 2 and body.payload == b"helloworld"
    raw.send(publish + header + frame(3, 1, b"hello"))
    raw.send(method(1, 20, 20, b"\x01"))  # a method on the publishing channel: 505
    f = raw.recv_method()
    assert f.method == (10, 50) and f.close_args()[0] == 505


def test_body_longer_than_announced(amqp_broker):
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(method(1, 60, 40, b"\x00\x00" + shortstr("amq.direct") + shortstr("k") + b"\x00"))
    raw.send(frame(2, 1, struct.pack(">HHQH", 60, 0, 3, 0)) + frame(3, 1, b"toolong"))
    f = raw.recv_method()
    assert f.method == (10, 50) and f.close_args()[0] == 505


def test_body_size_over_limit(amqp_broker):
    """A content header announcing more than 128 MiB: 406, checked before any body."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(method(1, 60, 40, b"\x00\x00" + shortstr("amq.direct") + shortstr("k") + b"\x00"))
    raw.send(frame(2, 1, struct.pack(">HHQH", 60, 0, 1 << 40, 0)))
    f = raw.recv_method()
    assert (f.channel, f.method) == (1, (20, 40))
    code, text, cid, mid = f.close_args()
    assert code == 406 and "larger than configured max size" in text
    raw.send(frame(3, 1, b"ignored"))  # discarded until close-ok
    raw.send(method(1, 20, 41))
    raw.open_channel(1)


@pytest.mark.amqp_timeout(90)
def test_unfinished_bodies_capped_per_connection(amqp_broker, pika_connect):
    """Bodies announced large on several channels and sent slowly: past 256 MiB of
    unfinished content on one connection the broker refuses (506) instead of
    holding it all; another client is unaffected."""
    raw = RawAmqp(amqp_broker.amqp_port, timeout=30)
    raw.handshake()
    chunk = b"\x00" * (131072 - 8)
    closed = None
    for n in (1, 2, 3):
        raw.open_channel(n)
        raw.send(method(n, 60, 40, b"\x00\x00" + shortstr("") + shortstr("nobody") + b"\x00"))
        raw.send(frame(2, n, struct.pack(">HHQH", 60, 0, 128 << 20, 0)))
    try:
        for _ in range(int(70 * 1024 * 1024 / len(chunk))):
            for n in (1, 2, 3):
                raw.send(frame(3, n, chunk))
    except (BrokenPipeError, ConnectionResetError):
        pass
    f = raw.recv_method()
    assert f is not None and f.method == (10, 50)
    closed = f.close_args()
    assert closed[0] == 506 and "unfinished message bodies" in closed[1]
    pika_connect(amqp_broker).channel().queue_declare("", exclusive=True)
