"""python3-confluent-kafka with enable.idempotence=true: InitProducerId plus
per-partition sequence numbers. The count read back is exact, also when
Produce responses are lost and librdkafka retries batches the broker has
already appended (a proxy drops responses and cuts the connection): the
broker must acknowledge those duplicates without appending them again."""

import pytest

from kafka_helpers import (assert_delivered, bootstrap, make_producer, produce_all, read_topic)
from kafka_proxy import KafkaProxy

COUNT = 5000


def check_exact(broker, topic, count):
    got = read_topic(broker, topic, count, timeout=20)
    values = [int(m.value()) for m in got]
    assert values == list(range(count)), "duplicates, gaps or reordering in the log"
    assert [m.offset() for m in got] == list(range(count))


def test_idempotent_producer_exact_count(broker):
    producer = make_producer(broker, {"enable.idempotence": True, "linger.ms": 2,
                                      "batch.num.messages": 200})
    sent = [{"value": b"%d" % i, "partition": 0} for i in range(COUNT)]
    reports = produce_all(producer, "idem", sent, timeout=20)
    assert_delivered(reports)
    assert sorted(m.offset() for _, m in reports) == list(range(COUNT))
    check_exact(broker, "idem", COUNT)


@pytest.mark.kafka_timeout(45)
def test_idempotent_producer_retries_after_lost_responses(broker):
    proxy = KafkaProxy(broker.kafka_port, drop_every=10, max_drops=4)
    try:
        producer = make_producer(broker, {
            "bootstrap.servers": f"127.0.0.1:{proxy.port}",
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 100,
            "retry.backoff.ms": 50,
        })
        assert bootstrap(broker) != f"127.0.0.1:{proxy.port}"
        sent = [{"value": b"%d" % i, "partition": 0} for i in range(COUNT)]
        reports = produce_all(producer, "idem-retry", sent, timeout=30)
        assert_delivered(reports)
        assert proxy.drops >= 1, \
            f"no response was dropped ({proxy.produce_responses} Produce responses seen)"
        assert sorted(m.offset() for _, m in reports) == list(range(COUNT))
    finally:
        proxy.stop()
    check_exact(broker, "idem-retry", COUNT)
