"""Helpers shared by the Kafka integration tests (real, unmodified clients).

The clients are Debian 12's packages (kcat, python3-confluent-kafka on
librdkafka 2.0.2, python3-kafka 2.0.2) and KafkaJS from npm (node/). A missing
client makes the tests that need it fail with the command that installs it;
nothing is skipped.

Every wait here is bounded. Bounds are multiplied by time_scale(): 1 for a
normal build, 3 for a sanitizer build of the broker (detected from the binary)
or the value of $SLUICE_TIMEOUT_SCALE. Set SLUICE_KAFKA_DEBUG=protocol,broker
(any librdkafka debug contexts) to make librdkafka clients log to stderr.
"""

import functools
import os
import pathlib
import shutil
import struct
import subprocess
import threading
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
NODE_DIR = HERE / "node"
SETUP_HINT = "run scripts/setup-kafka-clients.sh (as root) to install the Kafka test clients"

try:
    import confluent_kafka
    from confluent_kafka import admin as confluent_admin
except ImportError:  # reported by need_confluent()
    confluent_kafka = None
    confluent_admin = None

try:
    import kafka as kafka_python
    import kafka.admin as kafka_python_admin
except ImportError:  # reported by need_kafka_python()
    kafka_python = None
    kafka_python_admin = None


# --- time bounds -------------------------------------------------------------

def sluice_bin_path():
    """The broker binary under test (as tests/integration/conftest.py picks it)."""
    return os.environ.get("SLUICE_BIN", str(REPO / "build" / "sluice"))


@functools.lru_cache(maxsize=None)
def time_scale():
    """Factor for every bound: $SLUICE_TIMEOUT_SCALE, else 3 for an ASan/TSan binary."""
    env = os.environ.get("SLUICE_TIMEOUT_SCALE")
    if env:
        return float(env)
    try:
        data = pathlib.Path(sluice_bin_path()).read_bytes()
    except OSError:
        return 1.0
    if b"__asan_init" in data or b"__tsan_init" in data:
        return 3.0
    return 1.0


def bound(seconds):
    """seconds scaled by time_scale()."""
    return seconds * time_scale()


def wait_until(predicate, timeout, what, interval=0.05):
    """Calls predicate until it returns a true value (returned); fails after timeout s."""
    deadline = time.monotonic() + bound(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {bound(timeout):.1f} s waiting for {what}")
        time.sleep(interval)


# --- client availability ----------------------------------------------------

def need_confluent():
    if confluent_kafka is None:
        pytest.fail("python3-confluent-kafka is missing (import confluent_kafka failed): "
                    + SETUP_HINT)


def need_kafka_python():
    if kafka_python is None:
        pytest.fail("python3-kafka is missing (import kafka failed): " + SETUP_HINT)


def need_kcat():
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is missing from PATH: " + SETUP_HINT)
    return path


def need_kafkajs():
    """Path of node; fails unless node and node/node_modules/kafkajs exist."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing from PATH (Debian package nodejs): " + SETUP_HINT)
    if not (NODE_DIR / "node_modules" / "kafkajs" / "package.json").exists():
        pytest.fail(f"kafkajs is not installed in {NODE_DIR}/node_modules: " + SETUP_HINT)
    return node


# --- librdkafka (confluent-kafka) clients -----------------------------------

def bootstrap(broker):
    return f"127.0.0.1:{broker.kafka_port}"


def base_conf(broker):
    """Client settings every librdkafka client in these tests uses."""
    conf = {
        "bootstrap.servers": bootstrap(broker),
        "broker.address.family": "v4",
        "socket.timeout.ms": int(bound(10) * 1000),
        "reconnect.backoff.max.ms": 1000,
    }
    debug = os.environ.get("SLUICE_KAFKA_DEBUG")
    if debug:
        conf["debug"] = debug
    return conf


def make_producer(broker, extra=None):
    need_confluent()
    conf = base_conf(broker)
    conf.update({"message.timeout.ms": int(bound(15) * 1000), "linger.ms": 1})
    conf.update(extra or {})
    return confluent_kafka.Producer(conf)


def make_consumer(broker, extra=None):
    """A consumer (not subscribed); group.id is required by confluent-kafka 1.7."""
    need_confluent()
    conf = base_conf(broker)
    conf.update({
        "group.id": "sluice-test-reader",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    })
    conf.update(extra or {})
    return confluent_kafka.Consumer(conf)


def make_admin(broker, extra=None):
    need_confluent()
    conf = base_conf(broker)
    conf.update(extra or {})
    return confluent_admin.AdminClient(conf)


def produce_all(producer, topic, messages, timeout=15):
    """Produces each message dict (value, key, headers, partition, timestamp) in order.

    Returns the delivery reports as (error, message) pairs in the order they
    arrived; fails unless every message got a report within timeout s.
    """
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg))

    deadline = time.monotonic() + bound(timeout)
    for m in messages:
        kwargs = {k: v for k, v in m.items() if v is not None or k in ("key", "value")}
        while True:
            try:
                producer.produce(topic, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:  # local queue full: serve reports, then retry
                producer.poll(0.1)
                if time.monotonic() > deadline:
                    pytest.fail("producer queue stayed full")
        producer.poll(0)
    left = producer.flush(max(0.1, deadline - time.monotonic()))
    if left or len(reports) != len(messages):
        pytest.fail(f"{left} of {len(messages)} messages still undelivered after "
                    f"{bound(timeout):.0f} s ({len(reports)} delivery reports)")
    return reports


def assert_delivered(reports):
    """Fails on the first delivery report that carries an error."""
    errors = [err for err, _ in reports if err is not None]
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"


def consume_n(consumer, n, timeout=15, allow_more=False):
    """Polls until n messages arrived; returns them. Fails on a consumer error or timeout.

    Without allow_more, keeps polling briefly after n to catch extra messages.
    """
    out = []
    deadline = time.monotonic() + bound(timeout)
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"received {len(out)} of {n} messages within {bound(timeout):.0f} s")
        batch = consumer.consume(num_messages=min(10000, n - len(out)), timeout=min(left, 0.5))
        for m in batch:
            if m.error():
                pytest.fail(f"consumer error: {m.error()}")
            out.append(m)
    if not allow_more:
        extra = [m for m in consumer.consume(num_messages=100, timeout=0.3) if not m.error()]
        assert not extra, f"{len(extra)} messages beyond the {n} expected, first offset " \
                          f"{extra[0].offset()}"
    return out


def assign(consumer, topic, partition=0, offset=None):
    """Assigns one partition from offset (default: the beginning)."""
    if offset is None:
        offset = confluent_kafka.OFFSET_BEGINNING
    consumer.assign([confluent_kafka.TopicPartition(topic, partition, offset)])


def read_topic(broker, topic, n, partition=0, timeout=15, extra=None):
    """Reads exactly n messages of one partition from the beginning with a fresh consumer."""
    c = make_consumer(broker, extra)
    try:
        assign(c, topic, partition)
        return consume_n(c, n, timeout)
    finally:
        close_consumer(c)


def close_consumer(consumer, timeout=10):
    """Closes a consumer; a close that hangs (broker gone) fails after timeout s."""
    t = threading.Thread(target=consumer.close, daemon=True)
    t.start()
    t.join(bound(timeout))
    if t.is_alive():
        pytest.fail(f"consumer.close() still blocked after {bound(timeout):.0f} s")


def create_topics(admin, topics, timeout=10):
    """Creates topics given as (name, partitions) or (name, partitions, config) tuples."""
    new = []
    for t in topics:
        name, parts = t[0], t[1]
        config = t[2] if len(t) > 2 else {}
        new.append(confluent_admin.NewTopic(name, num_partitions=parts, replication_factor=1,
                                            config=config))
    futures = admin.create_topics(new, operation_timeout=bound(timeout),
                                  request_timeout=bound(timeout))
    for name, f in futures.items():
        f.result(timeout=bound(timeout))


def topic_partitions(admin, topic, timeout=10):
    """Partition count of topic from fresh metadata, or None when it is not listed."""
    md = admin.list_topics(timeout=bound(timeout))
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


# --- other clients -------------------------------------------------------------

def run_kcat(args, stdin=None, timeout=15):
    """Runs kcat with args; returns CompletedProcess (text). Fails on timeout."""
    kcat = need_kcat()
    try:
        return subprocess.run([kcat] + list(args), input=stdin, capture_output=True,
                              text=True, timeout=bound(timeout))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"kcat {' '.join(args)} did not finish within {bound(timeout):.0f} s; "
                    f"stderr:\n{e.stderr}")


def run_node(script, args, timeout=20):
    """Runs node/<script> with args; returns CompletedProcess (text). Fails on timeout."""
    node = need_kafkajs()
    try:
        return subprocess.run([node, str(NODE_DIR / script)] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=bound(timeout),
                              cwd=NODE_DIR, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"node {script} did not finish within {bound(timeout):.0f} s; "
                    f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}")


# --- what the broker stored ---------------------------------------------------

def stored_batches(data_dir):
    """Headers of every RecordBatch in the broker's segment files under data_dir.

    Segment files are named <20-digit base offset>.log (src/storage/log.h) and
    hold RecordBatch v2 as produced. Returns dicts with path, base_offset,
    attributes, codec (attributes & 7), records.
    """
    out = []
    for path in sorted(pathlib.Path(data_dir).rglob("*.log")):
        if len(path.stem) != 20 or not path.stem.isdigit():
            continue
        data = path.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            base, length = struct.unpack_from(">qi", data, pos)
            if length < 49 or pos + 12 + length > len(data):
                break
            magic = data[pos + 16]
            attributes = struct.unpack_from(">h", data, pos + 21)[0]
            records = struct.unpack_from(">i", data, pos + 57)[0]
            out.append({"path": path, "base_offset": base, "magic": magic,
                        "attributes": attributes, "codec": attributes & 7,
                        "records": records})
            pos += 12 + length
    return out
