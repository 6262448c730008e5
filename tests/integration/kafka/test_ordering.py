"""python3-confluent-kafka: 100,000 small messages produced to one partition
come back in order with dense, increasing offsets 0..99,999."""

import pytest

import kafka_helpers as kh
from kafka_helpers import assign, bound, make_consumer, make_producer

COUNT = 100_000


@pytest.mark.kafka_timeout(60)
def test_hundred_thousand_messages_in_order(broker):
    producer = make_producer(broker, {"linger.ms": 5, "batch.num.messages": 10000,
                                      "queue.buffering.max.messages": COUNT + 10})
    errors = []
    acked = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[0] += 1

    for i in range(COUNT):
        producer.produce("ordered", value=b"%d" % i, partition=0, on_delivery=on_delivery)
        if i % 10000 == 0:
            producer.poll(0)
    left = producer.flush(bound(30))
    assert left == 0 and not errors, f"{left} undelivered, {len(errors)} errors: {errors[:3]}"
    assert acked[0] == COUNT

    consumer = make_consumer(broker)
    try:
        assign(consumer, "ordered", 0)
        expected = 0
        for m in kh.consume_n(consumer, COUNT, timeout=30):
            assert m.partition() == 0
            assert m.offset() == expected, f"offset {m.offset()} where {expected} was due"
            assert m.value() == b"%d" % expected, f"value {m.value()!r} at offset {expected}"
            expected += 1
        marks = consumer.get_watermark_offsets(
            kh.confluent_kafka.TopicPartition("ordered", 0), timeout=bound(10))
        assert marks == (0, COUNT)
    finally:
        kh.close_consumer(consumer)
