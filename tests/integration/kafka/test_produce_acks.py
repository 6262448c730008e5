"""python3-confluent-kafka: produce with acks=all (-1), acks=1 and acks=0; every
message is stored once, in order. With acks=0 the broker sends no response,
so the producer's delivery reports carry no offsets, yet the data is there."""

import pytest

from kafka_helpers import assert_delivered, make_producer, produce_all, read_topic


@pytest.mark.parametrize("acks", ["all", "1", "0"])
def test_produce_with_acks(broker, acks):
    topic = f"acks-{acks}"
    producer = make_producer(broker, {"acks": acks, "linger.ms": 2})
    sent = [{"key": b"%d" % (i % 5), "value": b"acks %s message %d" % (acks.encode(), i)}
            for i in range(500)]
    reports = produce_all(producer, topic, sent)
    assert_delivered(reports)
    if acks != "0":
        assert sorted(m.offset() for _, m in reports) == list(range(500))
    # acks=0: no response is read, so a second batch proves the connection kept working
    # (a broker that answered acks=0 would desync the client's correlation ids).
    more = [{"value": b"second round %d" % i} for i in range(100)]
    assert_delivered(produce_all(producer, topic, more))
    got = read_topic(broker, topic, 600)
    assert [m.value() for m in got] == [s["value"] for s in sent + more]
    assert [m.offset() for m in got] == list(range(600))
