"""Retention through the broker: the retention timer deletes whole segments by
age (retention.ms) and by size (retention.bytes), and the earliest offset that
clients see moves accordingly; the newest data stays readable."""

import time

import kafka_helpers as kh
from kafka_helpers import (assert_delivered, bound, create_topics, make_admin, make_consumer,
                           make_producer, produce_all, wait_until)

OLD_TS = 1_600_000_000_000  # 2020: far older than any retention.ms below


def watermarks(broker, topic):
    consumer = make_consumer(broker)
    try:
        return consumer.get_watermark_offsets(kh.confluent_kafka.TopicPartition(topic, 0),
                                              timeout=bound(10))
    finally:
        kh.close_consumer(consumer)


def test_retention_by_age_deletes_old_segments(kafka_factory):
    broker = kafka_factory(["log.retention.check.interval.ms = 200"]).start()
    admin = make_admin(broker)
    create_topics(admin, [("aged", 1, {"retention.ms": "60000", "segment.bytes": "2048"})])
    producer = make_producer(broker, {"linger.ms": 0})
    # Old records fill several segments; retention.ms = 60 s has long expired for them.
    old = [{"value": b"o%03d" % i + b"x" * 200, "timestamp": OLD_TS + i} for i in range(40)]
    for m in old:
        assert_delivered(produce_all(producer, "aged", [m]))
    # Then fresh records, which must survive.
    fresh = [{"value": b"fresh%d" % i} for i in range(5)]
    assert_delivered(produce_all(producer, "aged", fresh))
    wait_until(lambda: watermarks(broker, "aged")[0] >= 40, bound(10),
               "the earliest offset to pass the expired records")
    low, high = watermarks(broker, "aged")
    assert high == 45
    got = kh.read_topic(broker, "aged", high - low)
    assert [m.value() for m in got][-5:] == [m["value"] for m in fresh]


def test_retention_by_size_keeps_at_least_the_limit(kafka_factory):
    broker = kafka_factory(["log.retention.check.interval.ms = 200"]).start()
    admin = make_admin(broker)
    create_topics(admin, [("sized", 1, {"retention.bytes": "4096", "segment.bytes": "2048"})])
    producer = make_producer(broker, {"linger.ms": 0})
    for i in range(60):
        assert_delivered(produce_all(producer, "sized", [{"value": b"%03d" % i + b"y" * 200}]))
    wait_until(lambda: watermarks(broker, "sized")[0] > 0, bound(10),
               "size retention to delete the oldest segments")
    time.sleep(0.5)  # a few more retention rounds: it must stop at the limit
    low, high = watermarks(broker, "sized")
    assert high == 60 and 0 < low < 60
    kept = kh.read_topic(broker, "sized", high - low, extra={"auto.offset.reset": "earliest"})
    assert kept[-1].value().startswith(b"059")
    # Kafka's rule: the oldest segment goes only while what stays is >= retention.bytes.
    sizes = [p.stat().st_size for p in sorted(broker.data_dir.rglob("sized.*/0/*.log"))]
    assert sum(sizes) >= 4096, sizes
    assert sum(sizes) - sizes[0] < 4096, sizes
