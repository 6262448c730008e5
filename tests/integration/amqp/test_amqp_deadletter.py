"""Dead-lettering (x-dead-letter-exchange, x-dead-letter-routing-key) with pika:
a message rejected or nacked without requeue, expired (queue TTL or its own
expiration, also with no consumer at all), or dropped / refused by
x-max-length is republished to the dead-letter exchange with RabbitMQ's x-death
headers; queue arguments survive a restart; re-declaring with other arguments
is 406; x-expires deletes an unused queue."""

import time

import pika
import pytest


def get_all(ch, queue, wait=3.0, want=None):
    """basic.get until the queue is empty (or `want` messages), waiting up to `wait`
    for messages still on their way (dead-lettering is asynchronous)."""
    got = []
    deadline = time.monotonic() + wait
    while True:
        m, props, body = ch.basic_get(queue, auto_ack=True)
        if m is not None:
            got.append((m, props, body))
            if want is not None and len(got) >= want:
                return got
            continue
        if (want is None and got) or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def declare_dlx(ch, prefix, **extra):
    """A fanout-free setup: direct exchange `<prefix>.dlx` bound to `<prefix>.dead`
    with key `<prefix>`, and the work queue `<prefix>.work` dead-lettering to it."""
    ch.exchange_declare(f"{prefix}.dlx", "direct")
    ch.queue_declare(f"{prefix}.dead")
    ch.queue_bind(f"{prefix}.dead", f"{prefix}.dlx", routing_key=prefix)
    args = {"x-dead-letter-exchange": f"{prefix}.dlx"}
    args.update(extra)
    ch.queue_declare(f"{prefix}.work", arguments=args)


def test_reject_without_requeue_is_dead_lettered(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    declare_dlx(ch, "rj")
    props = pika.BasicProperties(headers={"app": "mail"}, correlation_id="c-1",
                                 delivery_mode=2)
    ch.basic_publish("", "rj.work", b"bad job", props)
    ch.basic_publish("", "rj.work", b"good job")
    m, _, body = ch.basic_get("rj.work")
    assert body == b"bad job"
    ch.basic_reject(m.delivery_tag, requeue=False)
    m2, _, body2 = ch.basic_get("rj.work")
    assert body2 == b"good job"
    ch.basic_ack(m2.delivery_tag)
    # The routing key "rj.work" does not match the binding "rj": no x-dead-letter-
    # routing-key, so the original key is used and nothing arrives...
    assert get_all(ch, "rj.dead", wait=0.5) == []


def test_dead_letter_routing_key_and_x_death(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    declare_dlx(ch, "dk", **{"x-dead-letter-routing-key": "dk"})
    props = pika.BasicProperties(headers={"app": "mail"}, correlation_id="c-1",
                                 delivery_mode=2, content_type="text/plain")
    ch.basic_publish("", "dk.work", b"job-1", props)
    m, _, _ = ch.basic_get("dk.work")
    ch.basic_nack(m.delivery_tag, requeue=False)
    [(dm, dprops, dbody)] = get_all(ch, "dk.dead", want=1)
    assert dbody == b"job-1"
    assert dm.exchange == "dk.dlx"
    assert dm.routing_key == "dk"
    assert dprops.correlation_id == "c-1"
    assert dprops.content_type == "text/plain"
    assert dprops.delivery_mode == 2
    h = dprops.headers
    assert h["app"] == "mail"
    [death] = h["x-death"]
    assert death["reason"] == "rejected"
    assert death["queue"] == "dk.work"
    assert death["exchange"] == ""
    assert death["routing-keys"] == ["dk.work"]
    assert death["count"] == 1
    assert isinstance(death["time"], type(death["time"]))  # present
    assert h["x-first-death-reason"] == "rejected"
    assert h["x-first-death-queue"] == "dk.work"
    assert h["x-first-death-exchange"] == ""


def test_consumer_nack_multiple_dead_letters_all(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    declare_dlx(ch, "nm", **{"x-dead-letter-routing-key": "nm"})
    for i in range(5):
        ch.basic_publish("", "nm.work", f"m{i}".encode())
    seen = []

    def on_msg(c, method, props, body):
        seen.append(method.delivery_tag)
        if len(seen) == 5:
            c.basic_nack(method.delivery_tag, multiple=True, requeue=False)

    ch.basic_qos(prefetch_count=10)
    tag = ch.basic_consume("nm.work", on_msg)
    deadline = time.monotonic() + 5
    while len(seen) < 5 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    ch.basic_cancel(tag)
    dead = get_all(ch, "nm.dead", want=5)
    assert sorted(b for _, _, b in dead) == [f"m{i}".encode() for i in range(5)]
    assert ch.queue_declare("nm.work", passive=True).method.message_count == 0


def test_queue_ttl_dead_letters_without_any_consumer(amqp_broker, pika_connect):
    """The delayed-retry pattern: a queue nobody consumes, with a TTL, dead-letters
    into the work queue by itself."""
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("retry.work")
    ch.queue_declare("retry.wait", arguments={"x-message-ttl": 200,
                                              "x-dead-letter-exchange": "",
                                              "x-dead-letter-routing-key": "retry.work"})
    ch.basic_publish("", "retry.wait", b"later")
    assert ch.basic_get("retry.work")[0] is None
    [(m, props, body)] = get_all(ch, "retry.work", wait=3.0, want=1)
    assert body == b"later"
    [death] = props.headers["x-death"]
    assert death["reason"] == "expired"
    assert death["queue"] == "retry.wait"
    assert ch.queue_declare("retry.wait", passive=True).method.message_count == 0


def test_per_message_expiration_dead_letters_with_original_expiration(amqp_broker,
                                                                      pika_connect):
    ch = pika_connect(amqp_broker).channel()
    declare_dlx(ch, "px", **{"x-dead-letter-routing-key": "px"})
    ch.basic_publish("", "px.work", b"short", pika.BasicProperties(expiration="100"))
    [(m, props, body)] = get_all(ch, "px.dead", wait=3.0, want=1)
    assert body == b"short"
    assert props.expiration is None  # removed, so the copy does not expire again
    [death] = props.headers["x-death"]
    assert death["reason"] == "expired"
    assert death["original-expiration"] == "100"


def test_max_length_drop_head_dead_letters_oldest(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    declare_dlx(ch, "ml", **{"x-dead-letter-routing-key": "ml", "x-max-length": 2})
    for i in range(5):
        ch.basic_publish("", "ml.work", f"m{i}".encode())
    dead = get_all(ch, "ml.dead", want=3)
    assert [b for _, _, b in dead] == [b"m0", b"m1", b"m2"]
    assert all(p.headers["x-death"][0]["reason"] == "maxlen" for _, p, _ in dead)
    kept = get_all(ch, "ml.work", want=2)
    assert [b for _, _, b in kept] == [b"m3", b"m4"]


def test_reject_publish_dlx_nacks_and_dead_letters(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    declare_dlx(ch, "rp", **{"x-dead-letter-routing-key": "rp", "x-max-length": 1,
                             "x-overflow": "reject-publish-dlx"})
    ch.confirm_delivery()
    ch.basic_publish("", "rp.work", b"fits")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "rp.work", b"refused")
    [(m, props, body)] = get_all(ch, "rp.dead", want=1)
    assert body == b"refused"
    assert props.headers["x-death"][0]["reason"] == "maxlen"
    assert [b for _, _, b in get_all(ch, "rp.work", want=1)] == [b"fits"]


def test_reject_publish_without_dlx_drops_nothing_into_dlx(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    declare_dlx(ch, "rq", **{"x-dead-letter-routing-key": "rq", "x-max-length": 1,
                             "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", "rq.work", b"fits")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "rq.work", b"refused")
    assert get_all(ch, "rq.dead", wait=0.5) == []


def test_x_death_counts_repeated_deaths(amqp_broker, pika_connect):
    """A queue whose DLX routes back to itself (a retry loop through rejections is
    allowed): x-death keeps one entry per (queue, reason) whose count grows."""
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("loop.q", arguments={"x-dead-letter-exchange": ""})
    ch.basic_publish("", "loop.q", b"again")
    for n in range(3):
        deadline = time.monotonic() + 3
        while True:
            m, props, body = ch.basic_get("loop.q")
            if m is not None:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        if n:
            assert props.headers["x-death"][0]["count"] == n
        ch.basic_reject(m.delivery_tag, requeue=False)
    [(m, props, body)] = get_all(ch, "loop.q", want=1)
    assert body == b"again"
    [death] = props.headers["x-death"]
    assert death["queue"] == "loop.q" and death["reason"] == "rejected"
    assert death["count"] == 3


def test_expiry_cycle_is_broken(amqp_broker, pika_connect):
    """A queue whose expired messages dead-letter back into itself: RabbitMQ drops
    the message instead of cycling forever."""
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("cyc", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": ""})
    ch.basic_publish("", "cyc", b"x")
    time.sleep(0.6)
    assert ch.queue_declare("cyc", passive=True).method.message_count == 0
    assert amqp_broker.running()


def test_missing_dead_letter_exchange_drops(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("nodlx", arguments={"x-dead-letter-exchange": "does-not-exist"})
    ch.basic_publish("", "nodlx", b"x")
    m, _, _ = ch.basic_get("nodlx")
    ch.basic_reject(m.delivery_tag, requeue=False)
    time.sleep(0.2)
    assert ch.queue_declare("nodlx", passive=True).method.message_count == 0
    assert "does-not-exist" in amqp_broker.stderr


def test_bad_dead_letter_arguments_are_406(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    for args in ({"x-dead-letter-exchange": 5},
                 {"x-dead-letter-routing-key": "k"},
                 {"x-expires": 0},
                 {"x-expires": -1}):
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_declare("badargs", arguments=args)
        assert e.value.reply_code == 406, args


def test_redeclare_with_other_arguments_is_406(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("eq", arguments={"x-max-length": 10, "x-dead-letter-exchange": "a"})
    ch.queue_declare("eq", arguments={"x-max-length": 10, "x-dead-letter-exchange": "a"})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("eq", arguments={"x-max-length": 11, "x-dead-letter-exchange": "a"})
    assert e.value.reply_code == 406
    assert "x-max-length" in e.value.reply_text
    assert "received '11' but current is '10'" in e.value.reply_text  # RabbitMQ's text
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("eq", arguments={"x-max-length": 10})
    assert e.value.reply_code == 406
    assert "x-dead-letter-exchange" in e.value.reply_text
    # passive declares do not compare
    ch = conn.channel()
    assert ch.queue_declare("eq", passive=True).method.message_count == 0


def test_durable_queue_arguments_survive_restart(amqp_factory, pika_connect):
    """x-max-length, TTL and the dead-letter exchange of a durable queue are read back
    from the catalog at start, so they still apply after a restart."""
    broker = amqp_factory().start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.exchange_declare("rs.dlx", "fanout", durable=True)
    ch.queue_declare("rs.dead", durable=True)
    ch.queue_bind("rs.dead", "rs.dlx")
    ch.queue_declare("rs.work", durable=True,
                     arguments={"x-max-length": 2, "x-dead-letter-exchange": "rs.dlx"})
    conn.close()
    broker.restart()
    conn = pika_connect(broker)
    ch = conn.channel()
    for i in range(4):
        ch.basic_publish("", "rs.work", f"m{i}".encode(),
                         pika.BasicProperties(delivery_mode=2))
    dead = get_all(ch, "rs.dead", want=2)
    assert [b for _, _, b in dead] == [b"m0", b"m1"]
    # the same arguments re-declared are accepted, others refused
    ch.queue_declare("rs.work", durable=True,
                     arguments={"x-max-length": 2, "x-dead-letter-exchange": "rs.dlx"})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare("rs.work", durable=True, arguments={"x-max-length": 3})


def test_dead_lettered_persistent_message_survives_kill9(amqp_factory, pika_connect):
    broker = amqp_factory().start()
    ch = pika_connect(broker).channel()
    ch.queue_declare("k9.dead", durable=True)
    ch.queue_declare("k9.work", durable=True,
                     arguments={"x-dead-letter-exchange": "",
                                "x-dead-letter-routing-key": "k9.dead"})
    ch.basic_publish("", "k9.work", b"keep me", pika.BasicProperties(delivery_mode=2))
    m, _, _ = ch.basic_get("k9.work")
    ch.basic_reject(m.delivery_tag, requeue=False)
    assert len(get_all(ch, "k9.dead", want=1, wait=3.0)) == 1  # consumed: gone
    ch.basic_publish("", "k9.work", b"second", pika.BasicProperties(delivery_mode=2))
    m, _, _ = ch.basic_get("k9.work")
    ch.basic_reject(m.delivery_tag, requeue=False)
    deadline = time.monotonic() + 3
    while ch.queue_declare("k9.dead", passive=True).method.message_count < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # the dead-lettered copy is stored without a confirm: let it sync
    broker.kill9()
    broker.start()
    ch = pika_connect(broker).channel()
    got = get_all(ch, "k9.dead", want=1)
    assert [b for _, _, b in got] == [b"second"]
    assert ch.queue_declare("k9.work", passive=True).method.message_count == 0


def test_passive_declare_keeps_x_expires_queue(amqp_broker, pika_connect):
    """As RabbitMQ 3.10 (checked side by side): a passive declare counts as a use."""
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("xe.kept", arguments={"x-expires": 1000})
    for _ in range(6):
        ch.connection.sleep(0.35)
        ch.queue_declare("xe.kept", passive=True)  # raises 404 if it was deleted


def test_x_expires_deletes_unused_queue(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("ex.short", arguments={"x-expires": 300})
    ch.queue_declare("ex.used", arguments={"x-expires": 300})
    ch.basic_publish("", "ex.short", b"publishing does not count as use")
    tag = ch.basic_consume("ex.used", lambda *a: None)
    time.sleep(0.8)
    ch.basic_publish("", "ex.short", b"x")
    time.sleep(0.1)
    # a queue with a consumer is in use; the other one is gone
    assert ch.queue_declare("ex.used", passive=True).method.consumer_count == 1
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("ex.short", passive=True)
    assert e.value.reply_code == 404
    ch = pika_connect(amqp_broker).channel()
    # after its consumer leaves, the timer starts again; a passive declare is a use
    # too (as RabbitMQ), so only sleeps check it here
    ch.queue_declare("ex.later", arguments={"x-expires": 300})
    t = ch.basic_consume("ex.later", lambda *a: None)
    ch.connection.sleep(0.6)
    assert ch.queue_declare("ex.later", passive=True).method.consumer_count == 1
    ch.basic_cancel(t)
    ch.connection.sleep(0.15)
    assert ch.queue_declare("ex.later", passive=True).method.consumer_count == 0  # a use
    ch.connection.sleep(0.8)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("ex.later", passive=True)
    assert e.value.reply_code == 404
    del tag


def test_x_expires_forgets_bindings(amqp_broker, pika_connect):
    """A queue deleted by x-expires loses its bindings: a new queue of the same name
    does not receive messages through the old queue's bindings."""
    ch = pika_connect(amqp_broker).channel()
    ch.exchange_declare("xb.ex", "fanout")
    ch.queue_declare("xb.q", arguments={"x-expires": 200})
    ch.queue_bind("xb.q", "xb.ex")
    ch.connection.sleep(0.7)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare("xb.q", passive=True)
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("xb.q")
    ch.basic_publish("xb.ex", "", b"through a stale binding?")
    time.sleep(0.2)
    assert ch.queue_declare("xb.q", passive=True).method.message_count == 0


def test_dead_lettered_message_keeps_its_priority(amqp_broker, pika_connect):
    """A message dead-lettered into a priority queue keeps its priority there (as
    in RabbitMQ): dead-lettered low then high, the high one comes out first."""
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("pr.dead", arguments={"x-max-priority": 10})
    ch.queue_declare("pr.work", arguments={"x-dead-letter-exchange": "",
                                           "x-dead-letter-routing-key": "pr.dead"})
    for body, prio in ((b"low", 1), (b"high", 9)):
        ch.basic_publish("", "pr.work", body, pika.BasicProperties(priority=prio))
    for want in (b"low", b"high"):  # dead-lettered in this order
        m, _, body = ch.basic_get("pr.work")
        assert body == want
        ch.basic_nack(m.delivery_tag, requeue=False)
    deadline = time.monotonic() + 5
    while ch.queue_declare("pr.dead", passive=True).method.message_count < 2:
        assert time.monotonic() < deadline, "the dead-lettered messages did not arrive"
        time.sleep(0.02)
    got = [(b, p.priority) for _, p, b in get_all(ch, "pr.dead", want=2)]
    assert got == [(b"high", 9), (b"low", 1)]
