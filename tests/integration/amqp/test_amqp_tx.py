"""The tx class with pika: tx.select / commit / rollback with RabbitMQ's
semantics (docs/amqp.md). Publishes and acks in a transaction take effect only
at tx.commit; tx.rollback drops the publishes and leaves acked deliveries
unacked; closing the channel discards the transaction; confirm and tx modes
exclude each other (406); commit / rollback on a non-transactional channel is
406; mandatory unroutable messages come back at commit; a queue refusing a
committed message is 406 "partial tx completion"; a committed persistent
message survives kill -9; a transaction is bounded (406, nothing stored)."""

import time

import pika
import pika.exceptions
import pytest

from amqp_raw import RawAmqp, method


def closed_with(fn, code):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn()
    assert e.value.reply_code == code, e.value.reply_text
    return e.value.reply_text


def count(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def get_all(ch, queue, limit=1000):
    """basic.get with auto-ack until the queue is empty; returns the bodies."""
    bodies = []
    while len(bodies) < limit:
        m, _, body = ch.basic_get(queue, auto_ack=True)
        if m is None:
            break
        bodies.append(body)
    return bodies


def test_tx_publishes_invisible_until_commit(amqp_broker, pika_connect):
    """Publishes in a transaction reach neither basic.get nor a consumer (on
    another connection) before tx.commit; all arrive, in order, after it."""
    pub = pika_connect(amqp_broker).channel()
    pub.queue_declare("txq")
    pub.queue_declare("txc")
    pub.tx_select()
    for i in range(5):
        pub.basic_publish("", "txq", b"g-%d" % i)
        pub.basic_publish("", "txc", b"c-%d" % i)

    conn = pika_connect(amqp_broker)
    other = conn.channel()
    got = []
    other.basic_consume("txc", lambda c, m, p, b: got.append(b), auto_ack=True)
    assert other.basic_get("txq", auto_ack=True) == (None, None, None)
    assert count(other, "txq") == 0 and count(other, "txc") == 0
    conn.process_data_events(time_limit=0.5)
    assert got == []

    pub.tx_commit()
    # commit-ok comes after every queue stored its copy: visible at once.
    assert count(other, "txq") == 5
    deadline = time.monotonic() + 10
    while len(got) < 5 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert got == [b"c-%d" % i for i in range(5)]
    assert get_all(other, "txq") == [b"g-%d" % i for i in range(5)]


def test_tx_rollback_discards_publishes(amqp_broker, pika_connect):
    """tx.rollback drops what was published since the last commit; the channel
    stays transactional and the next commit stores only later publishes."""
    ch = pika_connect(amqp_broker).channel()
    ch.queue_declare("rb")
    ch.tx_select()
    ch.basic_publish("", "rb", b"kept-1")
    ch.tx_commit()
    for i in range(3):
        ch.basic_publish("", "rb", b"dropped-%d" % i)
    ch.tx_rollback()
    assert count(ch, "rb") == 1
    ch.basic_publish("", "rb", b"kept-2")
    assert count(ch, "rb") == 1  # still in the transaction
    ch.tx_commit()
    assert get_all(ch, "rb") == [b"kept-1", b"kept-2"]
    ch.tx_commit()  # an empty transaction commits too
    ch.tx_rollback()


def test_tx_acks_take_effect_only_on_commit(amqp_broker, pika_connect):
    """An ack in a rolled-back transaction leaves the delivery unacked (closing
    the channel redelivers it); an ack in a committed one removes it."""
    conn = pika_connect(amqp_broker)
    setup = conn.channel()
    setup.queue_declare("acks")
    setup.basic_publish("", "acks", b"m")

    ch = conn.channel()
    ch.tx_select()
    m, _, body = ch.basic_get("acks")
    assert body == b"m"
    ch.basic_ack(m.delivery_tag)
    assert count(setup, "acks") == 0  # delivered, unacked
    ch.tx_rollback()
    ch.close()
    m, _, body = setup.basic_get("acks")  # requeued when the channel closed
    assert body == b"m" and m.redelivered
    setup.basic_nack(m.delivery_tag, requeue=True)

    ch = conn.channel()
    ch.tx_select()
    m, _, body = ch.basic_get("acks")
    assert body == b"m"
    ch.basic_ack(m.delivery_tag)
    ch.tx_commit()
    ch.close()
    assert count(setup, "acks") == 0
    assert setup.basic_get("acks") == (None, None, None)


def test_tx_ack_after_rollback_still_unacked(amqp_broker, pika_connect):
    """After tx.rollback the delivery is unacked again (its tag can be acked in
    the next transaction); an ack of a tag already acked in the open transaction
    is an unknown tag (406), as RabbitMQ; that channel's close requeues it."""
    conn = pika_connect(amqp_broker)
    setup = conn.channel()
    setup.queue_declare("again")
    for i in range(3):
        setup.basic_publish("", "again", b"%d" % i)
    ch = conn.channel()
    ch.tx_select()
    tags = [ch.basic_get("again")[0].delivery_tag for _ in range(3)]
    ch.basic_ack(tags[1], multiple=True)  # tags 0 and 1
    ch.tx_rollback()
    ch.basic_ack(tags[0])
    ch.tx_commit()
    assert count(setup, "again") == 0
    ch.basic_ack(tags[2])
    ch.basic_ack(tags[2])
    text = closed_with(lambda: ch.tx_commit(), 406)
    assert "unknown delivery tag" in text
    # tag 0 was committed; 1 (rolled back) and 2 (its transaction died) come back.
    assert sorted(get_all(setup, "again")) == [b"1", b"2"]


def test_tx_nack_and_reject_on_commit(amqp_broker, pika_connect):
    """nack / reject with requeue in a transaction requeue at commit, without
    requeue they drop the message at commit; not before."""
    conn = pika_connect(amqp_broker)
    setup = conn.channel()
    setup.queue_declare("nk")
    setup.basic_publish("", "nk", b"a")
    setup.basic_publish("", "nk", b"b")
    ch = conn.channel()
    ch.tx_select()
    ma = ch.basic_get("nk")[0]
    mb = ch.basic_get("nk")[0]
    ch.basic_nack(ma.delivery_tag, requeue=True)
    ch.basic_reject(mb.delivery_tag, requeue=False)
    assert count(setup, "nk") == 0
    ch.tx_commit()
    assert get_all(setup, "nk") == [b"a"]


def test_tx_consumer_credit_back_on_commit(amqp_broker, pika_connect):
    """A consumer with prefetch 1 on a transactional channel: its ack gives the
    credit back (and the next message comes) only at tx.commit."""
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("credit")
    for i in range(2):
        ch.basic_publish("", "credit", b"%d" % i)
    ch.tx_select()
    ch.basic_qos(prefetch_count=1)
    got = []
    ch.basic_consume("credit", lambda c, m, p, b: got.append((m.delivery_tag, b)))
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert [b for _, b in got] == [b"0"]
    ch.basic_ack(got[0][0])
    conn.process_data_events(time_limit=0.5)
    assert len(got) == 1, "the ack took effect before tx.commit"
    ch.tx_commit()
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert [b for _, b in got] == [b"0", b"1"]


def test_tx_confirm_modes_exclude_each_other(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.confirm_delivery()
    text = closed_with(ch.tx_select, 406)
    assert text == "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
    ch = conn.channel()
    ch.tx_select()
    ch.tx_select()  # again: still select-ok
    text = closed_with(ch.confirm_delivery, 406)
    assert text == "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
    assert conn.is_open


def test_tx_commit_rollback_need_tx_select(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    text = closed_with(ch.tx_commit, 406)
    assert text == "PRECONDITION_FAILED - channel is not transactional"
    ch = conn.channel()
    text = closed_with(ch.tx_rollback, 406)
    assert text == "PRECONDITION_FAILED - channel is not transactional"
    assert conn.is_open


def test_tx_mandatory_returned_at_commit(amqp_broker, pika_connect):
    """An unroutable mandatory message in a transaction is returned (312) at
    tx.commit, before commit-ok, not when it is published; a routable one in the
    same transaction is stored."""
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("routed")
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m.reply_code, b)))
    ch.tx_select()
    ch.basic_publish("amq.direct", "nobody", b"lost", mandatory=True)
    ch.basic_publish("", "routed", b"kept", mandatory=True)
    ch.basic_publish("amq.direct", "nobody", b"not-mandatory")
    conn.process_data_events(time_limit=0.3)
    assert returned == []
    ch.tx_commit()
    conn.process_data_events(time_limit=0)  # dispatch what came before commit-ok
    assert returned == [(312, b"lost")]
    assert get_all(ch, "routed") == [b"kept"]


def test_tx_channel_close_discards(amqp_broker, pika_connect):
    """Closing a channel with an open transaction discards its publishes and
    requeues deliveries it acked."""
    conn = pika_connect(amqp_broker)
    setup = conn.channel()
    setup.queue_declare("closing")
    setup.basic_publish("", "closing", b"old")
    ch = conn.channel()
    ch.tx_select()
    m = ch.basic_get("closing")[0]
    ch.basic_ack(m.delivery_tag)
    ch.basic_publish("", "closing", b"new")
    ch.close()
    m, _, body = setup.basic_get("closing", auto_ack=True)
    assert body == b"old" and m.redelivered
    assert setup.basic_get("closing") == (None, None, None)


def test_tx_second_transaction_on_error_channel(amqp_broker, pika_connect):
    """A channel error inside a transaction (publish to a missing exchange)
    discards it; nothing of it is stored."""
    conn = pika_connect(amqp_broker)
    setup = conn.channel()
    setup.queue_declare("err")
    ch = conn.channel()
    ch.tx_select()
    ch.basic_publish("", "err", b"x")
    ch.basic_publish("no-such-exchange", "k", b"y")
    closed_with(ch.tx_commit, 404)
    assert count(setup, "err") == 0


def test_tx_partial_completion_is_406(amqp_broker, pika_connect):
    """A queue refusing a committed message (x-overflow reject-publish, full)
    makes tx.commit RabbitMQ's 406 "partial tx completion"; the copies the
    queues took stay."""
    conn = pika_connect(amqp_broker)
    setup = conn.channel()
    setup.queue_declare("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch = conn.channel()
    ch.tx_select()
    ch.basic_publish("", "full", b"fits")
    ch.basic_publish("", "full", b"refused")
    text = closed_with(ch.tx_commit, 406)
    assert text == "PRECONDITION_FAILED - partial tx completion"
    assert get_all(setup, "full") == [b"fits"]


@pytest.mark.amqp_timeout(60)
def test_tx_persistent_commit_survives_kill9(amqp_factory, pika_connect):
    """commit-ok means stored durably: persistent messages committed to a
    durable queue are all there after kill -9, in order; a rolled-back one and
    an uncommitted one are not."""
    broker = amqp_factory().start()
    conn = pika_connect(broker)
    ch = conn.channel()
    ch.queue_declare("durable-tx", durable=True)
    ch.tx_select()
    persistent = pika.BasicProperties(delivery_mode=2)
    ch.basic_publish("", "durable-tx", b"rolled-back", persistent)
    ch.tx_rollback()
    bodies = [b"p-%03d" % i for i in range(200)]
    for b in bodies:
        ch.basic_publish("", "durable-tx", b, persistent)
    ch.tx_commit()
    ch.basic_publish("", "durable-tx", b"uncommitted", persistent)
    broker.kill9()
    broker.start()

    ch = pika_connect(broker).channel()
    assert count(ch, "durable-tx") == 200
    assert get_all(ch, "durable-tx") == bodies


@pytest.mark.amqp_timeout(120)
def test_tx_size_is_bounded(amqp_factory, pika_connect):
    """A transaction holding more than 256 MiB (docs/amqp.md) fails its channel
    with 406 and nothing of it is stored; the connection carries on."""
    broker = amqp_factory().start()
    conn = pika_connect(broker, socket_timeout=30)
    setup = conn.channel()
    setup.queue_declare("big")
    ch = conn.channel()
    ch.tx_select()
    body = b"x" * 1_000_000
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        for _ in range(300):  # 300 MB > 256 MiB
            ch.basic_publish("", "big", body)
        ch.tx_commit()
    assert e.value.reply_code == 406
    assert "uncommitted transactions would hold more than 268435456 bytes" in \
        e.value.reply_text
    assert count(setup, "big") == 0
    ch = conn.channel()  # the memory was given back: a new transaction fits
    ch.tx_select()
    for _ in range(5):
        ch.basic_publish("", "big", body)
    ch.tx_commit()
    assert count(setup, "big") == 5


def test_tx_raw_select_commit_rollback_ok(amqp_broker):
    """tx.select-ok (90/11), tx.commit-ok (90/21), tx.rollback-ok (90/31) on the
    wire, and a commit on another, non-transactional channel is channel.close
    406 naming tx.commit (90/20)."""
    raw = RawAmqp(amqp_broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(method(1, 90, 10))
    assert raw.recv_method().method == (90, 11)
    raw.send(method(1, 90, 20))
    assert raw.recv_method().method == (90, 21)
    raw.send(method(1, 90, 30))
    assert raw.recv_method().method == (90, 31)
    raw.open_channel(2)
    raw.send(method(2, 90, 20))
    f = raw.recv_method()
    assert f.method == (20, 40)
    code, text, cid, mid = f.close_args()
    assert (code, cid, mid) == (406, 90, 20), text
