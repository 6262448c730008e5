"""Direct reply-to with pika (RabbitMQ's amq.rabbitmq.reply-to, docs/amqp.md):
an RPC round trip across two connections; the reply-to property is rewritten
to the channel's key; a reply consumer must be no-ack (406) and must exist
before a publish asks for it (406); replies to a closed channel are dropped
(mandatory: basic.return 312); passive declares of the pseudo-queue and of a
live key succeed; confirms of replies are acked; basic.cancel ends it."""

import time

import pika
import pika.exceptions
import pytest

REPLY_TO = "amq.rabbitmq.reply-to"


def closed_with(fn, code):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn()
    assert e.value.reply_code == code, e.value.reply_text
    return e.value.reply_text


def wait_for(conn, pred, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not pred() and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    return pred()


def get_request(ch, queue, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m, props, body = ch.basic_get(queue, auto_ack=True)
        if m is not None:
            return props, body
        time.sleep(0.02)
    raise AssertionError("no request arrived in " + queue)


def test_rpc_round_trip(amqp_broker, pika_connect):
    client = pika_connect(amqp_broker)
    server = pika_connect(amqp_broker)
    cch = client.channel()
    sch = server.channel()
    sch.queue_declare("rpc-work")
    replies = []
    tag = cch.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append((m, p, b)),
                            auto_ack=True)
    for i in range(3):
        cch.basic_publish("", "rpc-work", b"req-%d" % i,
                          pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c%d" % i,
                                               headers={"h": i}))
        props, body = get_request(sch, "rpc-work")
        assert body == b"req-%d" % i
        assert props.reply_to.startswith(REPLY_TO + "."), props.reply_to
        assert len(props.reply_to) > len(REPLY_TO) + 1
        assert props.correlation_id == "c%d" % i
        assert props.headers == {"h": i}  # the other properties survive the rewrite
        sch.basic_publish("", props.reply_to, b"rep-" + body,
                          pika.BasicProperties(correlation_id=props.correlation_id))
        assert wait_for(client, lambda: len(replies) == i + 1)
        m, p, b = replies[i]
        assert b == b"rep-req-%d" % i
        assert p.correlation_id == "c%d" % i
        assert m.consumer_tag == tag
        assert m.exchange == ""
        assert m.routing_key == props.reply_to
    # The key is the channel's: the same for each request.
    cch.basic_publish("", "rpc-work", b"x", pika.BasicProperties(reply_to=REPLY_TO))
    cch.basic_publish("", "rpc-work", b"y", pika.BasicProperties(reply_to=REPLY_TO))
    p1, _ = get_request(sch, "rpc-work")
    p2, _ = get_request(sch, "rpc-work")
    assert p1.reply_to == p2.reply_to
    # Nothing is stored anywhere: the work queue is empty, the client saw 3 replies.
    assert sch.queue_declare("rpc-work", passive=True).method.message_count == 0


def test_consume_with_ack_is_406(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    text = closed_with(lambda: ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False),
                       406)
    assert "reply consumer cannot acknowledge" in text


def test_publish_without_reply_consumer_is_406(amqp_broker, pika_connect):
    conn = pika_connect(amqp_broker)
    ch = conn.channel()
    ch.queue_declare("rpc-nobody")

    def publish():
        ch.basic_publish("", "rpc-nobody", b"x", pika.BasicProperties(reply_to=REPLY_TO))
        ch.queue_declare("rpc-nobody", passive=True)  # a round trip to see the close

    text = closed_with(publish, 406)
    assert "fast reply consumer does not exist" in text
    # A consumer on another channel of the same connection does not count either.
    c1 = conn.channel()
    c1.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    c2 = conn.channel()

    def publish2():
        c2.basic_publish("", "rpc-nobody", b"x", pika.BasicProperties(reply_to=REPLY_TO))
        c2.queue_declare("rpc-nobody", passive=True)

    closed_with(publish2, 406)
    assert c1.queue_declare("rpc-nobody", passive=True).method.message_count == 0


def test_reply_to_closed_channel_is_returned(amqp_broker, pika_connect):
    client = pika_connect(amqp_broker)
    cch = client.channel()
    cch.queue_declare("rpc-gone")
    cch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    cch.basic_publish("", "rpc-gone", b"req", pika.BasicProperties(reply_to=REPLY_TO))
    server = pika_connect(amqp_broker)
    sch = server.channel()
    props, _ = get_request(sch, "rpc-gone")
    # While the consumer lives the key can be declared passively.
    assert sch.queue_declare(props.reply_to, passive=True).method.message_count == 0
    client.close()
    returned = []
    sch.add_on_return_callback(lambda c, m, p, b: returned.append((m, b)))
    sch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        sch.basic_publish("", props.reply_to, b"late", mandatory=True)
    assert wait_for(server, lambda: returned)
    m, b = returned[0]
    assert m.reply_code == 312 and m.routing_key == props.reply_to and b == b"late"
    # Not mandatory: dropped silently and still confirmed.
    sch.basic_publish("", props.reply_to, b"late2")
    closed_with(lambda: sch.queue_declare(props.reply_to, passive=True), 404)


def test_pseudo_queue_passive_declare(amqp_broker, pika_connect):
    ch = pika_connect(amqp_broker).channel()
    ok = ch.queue_declare(REPLY_TO, passive=True).method
    assert ok.queue == REPLY_TO and ok.message_count == 0 and ok.consumer_count == 0


def test_confirmed_reply_and_cancel(amqp_broker, pika_connect):
    client = pika_connect(amqp_broker)
    cch = client.channel()
    cch.queue_declare("rpc-cancel")
    replies = []
    tag = cch.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append(b), auto_ack=True)
    cch.basic_publish("", "rpc-cancel", b"req", pika.BasicProperties(reply_to=REPLY_TO))
    server = pika_connect(amqp_broker)
    sch = server.channel()
    sch.confirm_delivery()
    props, _ = get_request(sch, "rpc-cancel")
    sch.basic_publish("", props.reply_to, b"one", mandatory=True)  # acked, not returned
    assert wait_for(client, lambda: replies == [b"one"])
    cch.basic_cancel(tag)
    with pytest.raises(pika.exceptions.UnroutableError):
        sch.basic_publish("", props.reply_to, b"two", mandatory=True)
    # After the cancel the channel may consume again, with a new key.
    cch.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append(b), auto_ack=True)
    cch.basic_publish("", "rpc-cancel", b"req2", pika.BasicProperties(reply_to=REPLY_TO))
    props2, _ = get_request(sch, "rpc-cancel")
    assert props2.reply_to != props.reply_to
    sch.basic_publish("", props2.reply_to, b"three")
    assert wait_for(client, lambda: replies == [b"one", b"three"])
