"""Topic administration with python3-confluent-kafka's AdminClient
(CreateTopics, CreatePartitions, DeleteTopics, DescribeConfigs) and the errors
clients must see as Kafka error codes: an existing topic, invalid requests, an
unknown topic with auto-creation off, and an out-of-range fetch offset
resolved by auto.offset.reset."""

import json
import os
import time

import pytest

import kafka_helpers as kh
from kafka_helpers import (assert_delivered, bound, close_consumer, consume_n, create_topics,
                           make_admin, make_consumer, make_producer, produce_all, read_topic,
                           topic_partitions, wait_until)


def admin_error(future, timeout=10):
    """The KafkaError a failed admin future carries (fails if it succeeded)."""
    try:
        future.result(timeout=bound(timeout))
    except kh.confluent_kafka.KafkaException as e:
        return e.args[0]
    pytest.fail("the admin operation succeeded where an error was expected")


def segment_bytes(data_dir):
    """Bytes of every .log file under data_dir. The broker may delete a topic's
    directory while this walks it: what vanished counts as gone (0 bytes)."""
    total = 0
    for root, _dirs, files in os.walk(data_dir):  # os.walk skips vanished dirs
        for name in files:
            if name.endswith(".log"):
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except FileNotFoundError:
                    pass
    return total


def test_create_topic_with_partitions_and_configs(broker):
    admin = make_admin(broker)
    config = {"retention.ms": "3600000", "retention.bytes": "104857600",
              "segment.bytes": "1048576", "cleanup.policy": "delete"}
    create_topics(admin, [("adm", 3, config), ("adm-plain", 1)])
    assert topic_partitions(admin, "adm") == 3
    assert topic_partitions(admin, "adm-plain") == 1

    CR = kh.confluent_admin.ConfigResource
    futures = admin.describe_configs([CR(CR.Type.TOPIC, "adm")], request_timeout=bound(10))
    entries = list(futures.values())[0].result(timeout=bound(10))
    for key, value in config.items():
        assert key in entries, f"DescribeConfigs lacks {key}: {sorted(entries)}"
        assert entries[key].value == value, f"{key} = {entries[key].value}, want {value}"
        assert not entries[key].is_default, f"{key} was set at creation, not a default"
    # A topic created without configs reports the broker defaults.
    futures = admin.describe_configs([CR(CR.Type.TOPIC, "adm-plain")], request_timeout=bound(10))
    entries = list(futures.values())[0].result(timeout=bound(10))
    assert entries["cleanup.policy"].value == "delete"
    assert entries["retention.ms"].value == "604800000"

    # Each partition takes writes.
    for p in range(3):
        assert_delivered(produce_all(make_producer(broker), "adm",
                                     [{"value": b"p%d" % p, "partition": p}]))
        assert read_topic(broker, "adm", 1, partition=p)[0].value() == b"p%d" % p


def test_create_partitions_increases_count(broker):
    admin = make_admin(broker)
    create_topics(admin, [("grow", 2)])
    assert_delivered(produce_all(make_producer(broker), "grow",
                                 [{"value": b"old", "partition": 1}]))
    futures = admin.create_partitions([kh.confluent_admin.NewPartitions("grow", 5)],
                                      request_timeout=bound(10))
    for f in futures.values():
        f.result(timeout=bound(10))
    wait_until(lambda: topic_partitions(admin, "grow") == 5, 10, "5 partitions in metadata")
    # New partitions start empty and take writes; old data is untouched.
    assert_delivered(produce_all(make_producer(broker), "grow",
                                 [{"value": b"new", "partition": 4}]))
    got = read_topic(broker, "grow", 1, partition=4)
    assert got[0].value() == b"new" and got[0].offset() == 0
    assert read_topic(broker, "grow", 1, partition=1)[0].value() == b"old"
    # Shrinking is refused (INVALID_PARTITIONS).
    futures = admin.create_partitions([kh.confluent_admin.NewPartitions("grow", 3)],
                                      request_timeout=bound(10))
    err = admin_error(list(futures.values())[0])
    assert err.code() == kh.confluent_kafka.KafkaError.INVALID_PARTITIONS, err


def test_delete_topic_removes_it_and_frees_disk(broker):
    admin = make_admin(broker)
    create_topics(admin, [("doomed", 2), ("kept", 1)])
    payload = [{"value": os.urandom(1000), "partition": i % 2} for i in range(2000)]
    assert_delivered(produce_all(make_producer(broker), "doomed", payload))
    assert_delivered(produce_all(make_producer(broker), "kept", [{"value": b"stay"}]))
    before = segment_bytes(broker.data_dir)
    assert before >= 2_000_000

    futures = admin.delete_topics(["doomed"], operation_timeout=bound(10),
                                  request_timeout=bound(10))
    futures["doomed"].result(timeout=bound(10))
    wait_until(lambda: topic_partitions(admin, "doomed") is None, 10,
               "doomed to leave the metadata")
    md = admin.list_topics(timeout=bound(10))
    assert "doomed" not in md.topics and "kept" in md.topics
    wait_until(lambda: segment_bytes(broker.data_dir) < before - 1_500_000, 10,
               "the deleted topic's segments to be removed from the data dir")
    # A new topic of the same name starts empty.
    create_topics(admin, [("doomed", 1)])
    c = make_consumer(broker)
    try:
        marks = c.get_watermark_offsets(kh.confluent_kafka.TopicPartition("doomed", 0),
                                        timeout=bound(10))
        assert marks == (0, 0), marks
    finally:
        close_consumer(c)
    assert read_topic(broker, "kept", 1)[0].value() == b"stay"


def test_create_existing_topic_is_topic_already_exists(broker):
    admin = make_admin(broker)
    create_topics(admin, [("twice", 2)])
    futures = admin.create_topics([kh.confluent_admin.NewTopic("twice", 4, 1)],
                                  request_timeout=bound(10))
    err = admin_error(futures["twice"])
    assert err.code() == kh.confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS, err
    assert topic_partitions(admin, "twice") == 2  # unchanged


def test_create_topic_invalid_requests(broker):
    admin = make_admin(broker)
    NT = kh.confluent_admin.NewTopic
    KE = kh.confluent_kafka.KafkaError
    cases = [
        (NT("zero-parts", num_partitions=0, replication_factor=1), KE.INVALID_PARTITIONS),
        (NT("three-replicas", num_partitions=1, replication_factor=3),
         KE.INVALID_REPLICATION_FACTOR),
        (NT("bad-config", num_partitions=1, replication_factor=1,
            config={"retention.ms": "not-a-number"}), KE.INVALID_CONFIG),
        (NT("bad/name", num_partitions=1, replication_factor=1), KE.TOPIC_EXCEPTION),
    ]
    for topic, code in cases:
        futures = admin.create_topics([topic], request_timeout=bound(10))
        err = admin_error(futures[topic.topic])
        assert err.code() == code, f"{topic.topic}: {err}"
    md = admin.list_topics(timeout=bound(10))
    assert not {t.topic for t, _ in cases} & set(md.topics)


def test_auto_create_uses_num_partitions(kafka_factory):
    broker = kafka_factory(["num.partitions = 3"]).start()
    assert_delivered(produce_all(make_producer(broker), "auto3", [{"value": b"x"}]))
    assert topic_partitions(make_admin(broker), "auto3") == 3


def test_unknown_topic_with_auto_create_off(kafka_factory):
    broker = kafka_factory(["auto.create.topics.enable = false"]).start()
    admin = make_admin(broker)
    md = admin.list_topics(topic="ghost", timeout=bound(10))
    err = md.topics["ghost"].error
    assert err is not None and err.code() == kh.confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART, \
        f"metadata for an unknown topic: {md.topics['ghost']}"

    # A producer is told the topic does not exist; nothing is created.
    producer = make_producer(broker, {"topic.metadata.propagation.max.ms": 1000,
                                      "message.timeout.ms": int(bound(8) * 1000)})
    reports = produce_all(producer, "ghost", [{"value": b"lost"}], timeout=12)
    err = reports[0][0]
    assert err is not None, "produce to an unknown topic succeeded with auto-create off"
    KE = kh.confluent_kafka.KafkaError
    assert err.code() in (KE.UNKNOWN_TOPIC_OR_PART, KE._UNKNOWN_TOPIC), err
    assert "ghost" not in admin.list_topics(timeout=bound(10)).topics

    # Explicit creation still works.
    create_topics(admin, [("ghost", 1)])
    assert_delivered(produce_all(make_producer(broker), "ghost", [{"value": b"found"}]))


def test_out_of_range_offset_reset_earliest(broker):
    sent = [{"value": b"e%d" % i} for i in range(10)]
    assert_delivered(produce_all(make_producer(broker), "range", sent))
    c = make_consumer(broker, {"auto.offset.reset": "earliest"})
    try:
        kh.assign(c, "range", 0, 1_000_000)
        got = consume_n(c, 10)
        assert [m.offset() for m in got] == list(range(10))
    finally:
        close_consumer(c)


def test_out_of_range_offset_reset_latest(broker):
    assert_delivered(produce_all(make_producer(broker), "range-l",
                                 [{"value": b"old%d" % i} for i in range(10)]))
    stats = {}

    def on_stats(text):
        part = json.loads(text).get("topics", {}).get("range-l", {}).get("partitions", {})
        stats.update(part.get("0", {}))

    c = make_consumer(broker, {"auto.offset.reset": "latest", "statistics.interval.ms": 100,
                               "stats_cb": on_stats})
    try:
        kh.assign(c, "range-l", 0, 1_000_000)

        def reset_to_end():  # librdkafka's statistics show the fetch position
            m = c.poll(0.1)
            assert m is None or m.error(), f"message at offset {m.offset()} before any produce"
            return stats.get("fetch_state") == "active" and stats.get("next_offset") == 10
        wait_until(reset_to_end, 10, f"the consumer to reset to the log end offset 10 ({stats})")
        assert_delivered(produce_all(make_producer(broker), "range-l",
                                     [{"value": b"new%d" % i} for i in range(3)]))
        got = consume_n(c, 3)
        assert [(m.offset(), m.value()) for m in got] == [(10, b"new0"), (11, b"new1"),
                                                           (12, b"new2")]
    finally:
        close_consumer(c)


def test_out_of_range_offset_reset_error_is_reported(broker):
    assert_delivered(produce_all(make_producer(broker), "range-e", [{"value": b"x"}]))
    c = make_consumer(broker, {"auto.offset.reset": "error"})
    try:
        kh.assign(c, "range-e", 0, 1_000_000)
        deadline = time.monotonic() + bound(10)
        while True:
            assert time.monotonic() < deadline, "no error for an out-of-range fetch offset"
            m = c.poll(0.2)
            if m is None:
                continue
            assert m.error() is not None, f"message at offset {m.offset()} instead of an error"
            assert m.error().code() == kh.confluent_kafka.KafkaError._AUTO_OFFSET_RESET, m.error()
            assert "out of range" in m.error().str().lower(), m.error().str()
            break
    finally:
        close_consumer(c)
