"""python3-kafka (kafka-python 2.0.2): KafkaProducer/KafkaConsumer round trip
without a group, and KafkaAdminClient creating and deleting a topic.

kafka-python probes the broker with ApiVersions v0 + Metadata v0 pipelined,
infers a broker version from the advertised ranges and picks its request
versions from that (CLIENT-VERSIONS.md): the test checks it inferred >= 2.1,
which makes it write RecordBatch v2."""

import time

import kafka_helpers as kh
from kafka_helpers import bootstrap, bound, need_kafka_python, wait_until


def common(broker):
    return {"bootstrap_servers": bootstrap(broker), "request_timeout_ms": int(bound(10) * 1000),
            "api_version_auto_timeout_ms": int(bound(10) * 1000)}


def test_kafka_python_produce_consume_round_trip(broker):
    need_kafka_python()
    KafkaProducer, KafkaConsumer = kh.kafka_python.KafkaProducer, kh.kafka_python.KafkaConsumer
    producer = KafkaProducer(acks="all", linger_ms=5, **common(broker))
    try:
        assert producer.config["api_version"] >= (2, 1), \
            f"kafka-python inferred broker version {producer.config['api_version']}"
        futures = [producer.send("kpy", key=b"k%d" % (i % 3), value=b"kafka-python %d" % i,
                                 headers=[("n", b"%d" % i)], timestamp_ms=1_650_000_000_000 + i)
                   for i in range(300)]
        producer.flush(timeout=bound(15))
        metas = [f.get(timeout=bound(5)) for f in futures]
        assert sorted(m.offset for m in metas) == list(range(300))
        assert {m.partition for m in metas} == {0}
    finally:
        producer.close(timeout=bound(5))

    consumer = KafkaConsumer("kpy", group_id=None, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(bound(2) * 1000), **common(broker))
    got = []
    deadline = time.monotonic() + bound(15)
    try:
        while len(got) < 300 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
    finally:
        consumer.close()
    assert len(got) == 300, f"received {len(got)} of 300"
    got.sort(key=lambda r: r.offset)
    for i, r in enumerate(got):
        assert r.offset == i
        assert r.key == b"k%d" % (i % 3)
        assert r.value == b"kafka-python %d" % i
        assert r.headers == [("n", b"%d" % i)]
        assert r.timestamp == 1_650_000_000_000 + i


def test_kafka_python_admin_create_and_delete_topic(broker):
    need_kafka_python()
    admin = kh.kafka_python_admin.KafkaAdminClient(**common(broker))
    try:
        admin.create_topics([kh.kafka_python_admin.NewTopic("kpy-admin", num_partitions=3,
                                                             replication_factor=1)],
                            timeout_ms=int(bound(10) * 1000))
        assert "kpy-admin" in admin.list_topics()
        desc = admin.describe_topics(["kpy-admin"])
        assert len(desc) == 1 and desc[0]["error_code"] == 0, desc
        assert sorted(p["partition"] for p in desc[0]["partitions"]) == [0, 1, 2]

        admin.delete_topics(["kpy-admin"], timeout_ms=int(bound(10) * 1000))
        wait_until(lambda: "kpy-admin" not in admin.list_topics(), 10,
                   "kpy-admin to leave the topic list after delete_topics")
    finally:
        admin.close()
