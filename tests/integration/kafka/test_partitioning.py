"""python3-confluent-kafka: key-based partitioning on a 4-partition topic made
with AdminClient: the same key always lands on the same partition, every
partition gets keys, and each partition's offsets are dense from 0."""

import collections

from kafka_helpers import (assert_delivered, create_topics, make_admin, make_producer,
                           produce_all, read_topic, topic_partitions)


def test_same_key_same_partition(broker):
    admin = make_admin(broker)
    create_topics(admin, [("keyed", 4)])
    assert topic_partitions(admin, "keyed") == 4
    keys = [b"user-%d" % k for k in range(40)]
    sent = [{"key": keys[i % 40], "value": b"event %d" % i} for i in range(800)]
    # murmur2 is Java's default partitioner, so every Kafka client agrees on it.
    producer = make_producer(broker, {"partitioner": "murmur2_random"})
    reports = produce_all(producer, "keyed", sent)
    assert_delivered(reports)

    partition_of = {}
    per_partition = collections.Counter()
    for _, m in reports:
        assert partition_of.setdefault(m.key(), m.partition()) == m.partition(), \
            f"key {m.key()!r} went to partitions {partition_of[m.key()]} and {m.partition()}"
        per_partition[m.partition()] += 1
    assert sorted(per_partition) == [0, 1, 2, 3], f"partitions used: {per_partition}"

    # What a consumer reads agrees with the delivery reports, in order per key.
    for p in range(4):
        got = read_topic(broker, "keyed", per_partition[p], partition=p)
        assert [m.offset() for m in got] == list(range(per_partition[p]))
        for m in got:
            assert partition_of[m.key()] == p
        by_key = collections.defaultdict(list)
        for m in got:
            by_key[m.key()].append(int(m.value().split()[1]))
        for k, seq in by_key.items():
            assert seq == sorted(seq), f"key {k!r} out of order on partition {p}"
