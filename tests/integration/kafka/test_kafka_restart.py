"""Broker restarts with the default durability (log.flush = batch: an acks=all
produce is acknowledged after its fsync): every acknowledged message is there
after a SIGTERM restart and after kill -9 (also one in the middle of a stream
of produces), and committed consumer-group offsets survive both."""

import signal
import threading
import time

import pytest

import kafka_helpers as kh
from kafka_helpers import (assert_delivered, bound, close_consumer, make_consumer, make_producer,
                           produce_all, read_topic)


def restart(broker, how):
    if how == "sigterm":
        assert broker.stop(signal.SIGTERM) == 0, "unclean exit on SIGTERM"
    else:
        broker.kill9()
    broker.start()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_acked_messages_survive_restart(kafka_factory, how):
    broker = kafka_factory(["log.flush = batch"]).start()
    sent = [{"key": b"k%d" % (i % 4), "value": b"durable %d" % i} for i in range(2000)]
    reports = produce_all(make_producer(broker, {"acks": "all"}), "durable", sent)
    assert_delivered(reports)
    restart(broker, how)
    got = read_topic(broker, "durable", 2000)
    assert [m.value() for m in got] == [s["value"] for s in sent]
    assert [m.offset() for m in got] == list(range(2000))
    # The log goes on where it stopped: the next offset is 2000.
    reports = produce_all(make_producer(broker, {"acks": "all"}), "durable", [{"value": b"next"}])
    assert_delivered(reports)
    assert reports[0][1].offset() == 2000


@pytest.mark.kafka_timeout(60)
def test_acked_messages_survive_kill9_during_produce(kafka_factory):
    broker = kafka_factory(["log.flush = batch"]).start()
    producer = make_producer(broker, {"acks": "all", "linger.ms": 1,
                                      "message.timeout.ms": int(bound(40) * 1000)})
    acked = set()
    failed = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked.add(int(msg.value()))
            else:
                failed.append(err)

    # Produce continuously; kill -9 once a good part is acknowledged.
    i = 0
    deadline = time.monotonic() + bound(15)
    while len(acked) < 3000:
        assert time.monotonic() < deadline, f"only {len(acked)} acks before the kill"
        producer.produce("crash", value=b"%d" % i, partition=0, on_delivery=on_delivery)
        i += 1
        if i % 50 == 0:
            producer.poll(0.001)
    with lock:
        acked_before_kill = set(acked)
    broker.kill9()
    # What was in flight is retried by librdkafka once the broker is back.
    for _ in range(200):
        producer.produce("crash", value=b"%d" % i, partition=0, on_delivery=on_delivery)
        i += 1
    broker.start()
    left = producer.flush(bound(30))
    assert left == 0, f"{left} messages undelivered after the restart; errors {failed[:3]}"

    consumer = make_consumer(broker)
    try:
        kh.assign(consumer, "crash", 0)
        high = consumer.get_watermark_offsets(kh.confluent_kafka.TopicPartition("crash", 0),
                                              timeout=bound(10))[1]
        got = kh.consume_n(consumer, high, timeout=20)
    finally:
        close_consumer(consumer)
    assert [m.offset() for m in got] == list(range(high)), "offsets not dense after recovery"
    stored = {int(m.value()) for m in got}
    lost = acked_before_kill - stored
    assert not lost, f"{len(lost)} messages acknowledged before kill -9 are gone, " \
                     f"e.g. {sorted(lost)[:10]}"
    lost = acked - stored
    assert not lost, f"{len(lost)} acknowledged messages missing, e.g. {sorted(lost)[:10]}"


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_group_offsets_survive_restart(kafka_factory, how):
    broker = kafka_factory().start()
    sent = [{"value": b"g%d" % i} for i in range(20)]
    assert_delivered(produce_all(make_producer(broker), "offsets", sent))
    TP = kh.confluent_kafka.TopicPartition
    c = make_consumer(broker, {"group.id": "g-durable"})
    try:
        c.subscribe(["offsets"])
        got = kh.consume_n(c, 7, allow_more=True)
        assert [m.offset() for m in got] == list(range(7))
        c.commit(message=got[-1], asynchronous=False)  # offset 7
        # Then an explicit offset (an OffsetCommit not tied to a consumed message).
        c.commit(offsets=[TP("offsets", 0, 13)], asynchronous=False)
    finally:
        close_consumer(c)
    other = make_consumer(broker, {"group.id": "g-other"})
    try:
        other.commit(offsets=[TP("offsets", 0, 3)], asynchronous=False)
    finally:
        close_consumer(other)

    restart(broker, how)

    for group, want in (("g-durable", 13), ("g-other", 3)):
        probe = make_consumer(broker, {"group.id": group})
        try:
            res = probe.committed([TP("offsets", 0)], timeout=bound(10))
            assert res[0].offset == want, f"group {group}: committed {res[0].offset}, want {want}"
        finally:
            close_consumer(probe)
    resumed = make_consumer(broker, {"group.id": "g-durable"})
    try:
        resumed.subscribe(["offsets"])
        got = kh.consume_n(resumed, 7)
        assert [m.value() for m in got] == [b"g%d" % i for i in range(13, 20)]
    finally:
        close_consumer(resumed)
