"""python3-confluent-kafka: ListOffsets (earliest, latest, by timestamp) through
get_watermark_offsets and offsets_for_times."""

import kafka_helpers as kh
from kafka_helpers import assert_delivered, bound, make_consumer, make_producer, produce_all

BASE_TS = 1_600_000_000_000


def test_watermarks_earliest_latest(broker):
    consumer = make_consumer(broker)
    try:
        assert_delivered(produce_all(make_producer(broker), "marks",
                                     [{"value": b"x"}]))
        tp = kh.confluent_kafka.TopicPartition("marks", 0)
        assert consumer.get_watermark_offsets(tp, timeout=bound(10)) == (0, 1)
        assert_delivered(produce_all(make_producer(broker), "marks",
                                     [{"value": b"%d" % i} for i in range(24)]))
        assert consumer.get_watermark_offsets(tp, timeout=bound(10)) == (0, 25)
    finally:
        kh.close_consumer(consumer)


def check_offsets_for_times(broker, topic):
    """Ten messages one second apart in CreateTime are in topic; ListOffsets by time
    must return the first offset whose timestamp is >= the one asked for."""
    consumer = make_consumer(broker)
    TP = kh.confluent_kafka.TopicPartition
    try:
        cases = [
            (BASE_TS - 5000, 0),   # before everything: the first offset
            (BASE_TS, 0),          # exact match
            (BASE_TS + 3500, 4),   # first message with timestamp >= the query
            (BASE_TS + 9000, 9),   # the last message
            (BASE_TS + 9001, -1),  # after everything: no offset (end)
        ]
        for ts, want in cases:
            res = consumer.offsets_for_times([TP(topic, 0, ts)], timeout=bound(10))
            assert len(res) == 1 and res[0].error is None, res
            assert res[0].offset == want, f"timestamp {ts}: offset {res[0].offset}, want {want}"
        # Seeking to the offset found reads the matching message first.
        res = consumer.offsets_for_times([TP(topic, 0, BASE_TS + 6000)], timeout=bound(10))
        consumer.assign(res)
        got = kh.consume_n(consumer, 4)
        assert [m.value() for m in got] == [b"t6", b"t7", b"t8", b"t9"]
    finally:
        kh.close_consumer(consumer)


def test_offsets_for_times_one_batch_per_message(broker):
    producer = make_producer(broker, {"linger.ms": 0})
    for i in range(10):
        assert_delivered(produce_all(producer, "times-1",
                                     [{"value": b"t%d" % i, "timestamp": BASE_TS + i * 1000}]))
    check_offsets_for_times(broker, "times-1")


def test_offsets_for_times_inside_one_batch(broker):
    # One batch of ten records: the answer is a record's offset, not the batch's
    # base offset (Kafka looks inside the batch).
    sent = [{"value": b"t%d" % i, "timestamp": BASE_TS + i * 1000} for i in range(10)]
    producer = make_producer(broker, {"linger.ms": 1000, "batch.num.messages": 10})
    # Learn the (auto-created) topic's partitions first: messages that wait for
    # metadata are past their linger time once placed and leave one by one.
    producer.list_topics("times-n", timeout=bound(10))
    kh.wait_until(lambda: len(producer.list_topics("times-n", timeout=bound(5))
                             .topics["times-n"].partitions) == 1, 10, "times-n metadata")
    reports = produce_all(producer, "times-n", sent)
    assert_delivered(reports)
    batches = kh.stored_batches(broker.data_dir)
    assert [b["records"] for b in batches] == [10], f"expected one batch of 10: {batches}"
    check_offsets_for_times(broker, "times-n")
