"""python3-confluent-kafka (librdkafka 2.0.2): what a producer sends comes back
byte-identical: key, value, headers, CreateTime timestamps, null keys and
values, every compression codec, 1 MiB values; and an oversized batch is
refused with MSG_SIZE_TOO_LARGE."""

import os

import pytest

import kafka_helpers as kh
from kafka_helpers import (assert_delivered, make_admin, make_producer, produce_all,
                           read_topic, stored_batches)

BASE_TS = 1_700_000_000_000  # CreateTime given by the producer (ms)
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}  # RecordBatch attributes & 7


def test_key_value_headers_timestamp_round_trip(broker):
    sent = []
    for i in range(20):
        sent.append({
            "key": f"key-{i}".encode(),
            "value": os.urandom(1 + i * 37),
            "headers": [("h-ascii", f"v{i}".encode()), ("h-bin", bytes([0, 255, i])),
                        ("h-dup", b"first"), ("h-dup", b"second")],
            "timestamp": BASE_TS + i * 1000,
        })
    reports = produce_all(make_producer(broker), "roundtrip", sent)
    assert_delivered(reports)
    assert [m.offset() for _, m in reports] == list(range(20))
    got = read_topic(broker, "roundtrip", 20)
    kh.need_confluent()
    for i, (s, m) in enumerate(zip(sent, got)):
        assert m.offset() == i
        assert m.key() == s["key"]
        assert m.value() == s["value"]
        assert m.headers() == s["headers"]
        assert m.timestamp() == (kh.confluent_kafka.TIMESTAMP_CREATE_TIME, s["timestamp"])


def test_null_key_and_null_value_round_trip(broker):
    sent = [
        {"key": None, "value": b"value without key"},
        {"key": b"key without value", "value": None},
        {"key": None, "value": None},
        {"key": b"", "value": b""},  # empty is not null
    ]
    assert_delivered(produce_all(make_producer(broker), "nulls", sent))
    got = read_topic(broker, "nulls", len(sent))
    assert [(m.key(), m.value()) for m in got] == [(s["key"], s["value"]) for s in sent]


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_compressed_batches_round_trip(broker, codec):
    # Mixed compressible and random values, several batches (linger lets them group).
    sent = []
    for i in range(300):
        value = (b"log line %d: " % i) * (i % 40 + 1) if i % 3 else os.urandom(200 + i)
        sent.append({"key": b"k%d" % (i % 10), "value": value})
    producer = make_producer(broker, {"compression.type": codec, "linger.ms": 20,
                                      "batch.num.messages": 100})
    assert_delivered(produce_all(producer, f"codec-{codec}", sent))
    got = read_topic(broker, f"codec-{codec}", len(sent))
    assert [m.value() for m in got] == [s["value"] for s in sent]
    assert [m.key() for m in got] == [s["key"] for s in sent]
    assert [m.offset() for m in got] == list(range(len(sent)))
    # The client really compressed (librdkafka silently sends uncompressed when the
    # broker's Produce version range puts it off, CLIENT-VERSIONS.md), and the
    # broker stored the batches as they came.
    codecs = {b["codec"] for b in stored_batches(broker.data_dir)}
    assert CODECS[codec] in codecs, f"no {codec} batch in the segment files (codecs {codecs})"


def test_one_mib_message_round_trip(kafka_factory):
    broker = kafka_factory(["message.max.bytes = 4194304"]).start()
    big = os.urandom(1024 * 1024)
    sent = [{"key": b"big", "value": big}, {"key": b"small", "value": b"after"},
            {"key": b"big2", "value": big[::-1]}]
    producer = make_producer(broker, {"message.max.bytes": 4 * 1024 * 1024})
    assert_delivered(produce_all(producer, "big", sent))
    got = read_topic(broker, "big", 3, extra={"fetch.message.max.bytes": 4 * 1024 * 1024,
                                              "fetch.max.bytes": 8 * 1024 * 1024})
    assert [m.value() for m in got] == [s["value"] for s in sent]


def test_batch_over_broker_limit_is_rejected(kafka_factory):
    broker = kafka_factory(["message.max.bytes = 1048588"]).start()
    producer = make_producer(broker, {"message.max.bytes": 8 * 1024 * 1024,
                                      "compression.type": "none",
                                      "message.send.max.retries": 0})
    reports = produce_all(producer, "limit", [{"value": os.urandom(2 * 1024 * 1024)}])
    err = reports[0][0]
    assert err is not None, "a 2 MiB batch was accepted by a broker limited to 1 MiB"
    assert err.code() == kh.confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE, err
    # The refusal is a Kafka error code, not a dropped connection: the same
    # producer goes on with a message that fits.
    assert_delivered(produce_all(producer, "limit", [{"value": b"fits"}]))
    got = read_topic(broker, "limit", 1)
    assert got[0].value() == b"fits" and got[0].offset() == 0
    assert make_admin(broker).list_topics("limit", timeout=10).topics["limit"].error is None
