"""Hostile and edge-case frames on a raw socket, from the table wire_cases.json
(built by make_wire_cases.py; each case cites the spec it follows).

For every case, while a well-behaved client (a confluent-kafka producer) keeps
producing to another topic, the case's frames are sent on a fresh connection
and the outcome checked: the right Kafka error code, responses in order, or
the connection closed (within a bound: never a hang). Afterwards the broker
must still serve: a new connection gets an ApiVersions reply, the steady
producer keeps getting acknowledgements, and nothing it sent is lost.
"""

import json
import pathlib
import socket
import struct
import threading
import time

import pytest

import kafka_helpers as kh
from kafka_helpers import (assert_delivered, bound, make_producer, produce_all, read_topic)

TABLE = json.loads((pathlib.Path(__file__).parent / "wire_cases.json").read_text())
OUTCOME_TIMEOUT = 5.0


class SteadyProducer:
    """A thread producing to topic 'steady' until stop(); counts acks and errors."""

    def __init__(self, broker):
        self.producer = make_producer(broker, {"linger.ms": 5})
        self.sent = 0
        self.acked = 0
        self.errors = []
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def on_delivery(self, err, msg):
        if err is None:
            self.acked += 1
        else:
            self.errors.append(err)

    def run(self):
        while not self.halt.is_set():
            try:
                self.producer.produce("steady", value=b"%d" % self.sent,
                                      on_delivery=self.on_delivery)
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0.005)

    def start(self):
        self.thread.start()

    def wait_started(self):
        kh.wait_until(lambda: self.acked >= 20, 10, "the steady producer's first acks")

    def wait_more_acks(self, n=20, timeout=10):
        target = self.acked + n
        kh.wait_until(lambda: self.acked >= target or self.errors, timeout,
                      f"{n} more acks for the steady producer")
        assert not self.errors, f"steady producer errors: {self.errors[:3]}"

    def halt_and_flush(self):
        """Stops producing; returns how many messages stayed undelivered."""
        self.halt.set()
        self.thread.join(bound(5))
        return self.producer.flush(bound(10))

    def stop(self):
        left = self.halt_and_flush()
        assert left == 0, f"steady producer: {left} messages undelivered"
        assert not self.errors, f"steady producer errors: {self.errors[:3]}"
        assert self.acked == self.sent


# --- reading replies ------------------------------------------------------------

class Closed(Exception):
    pass


def recv_exact(sock, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(buf))
        except ConnectionResetError:
            raise Closed from None
        except socket.timeout:
            raise TimeoutError from None
        if not chunk:
            raise Closed
        buf += chunk
    return bytes(buf)


def recv_frame(sock, deadline):
    (size,) = struct.unpack(">i", recv_exact(sock, 4, deadline))
    assert 4 <= size <= 16 * 1024 * 1024, f"response size prefix {size}"
    return recv_exact(sock, size, deadline)


class Body:
    """A cursor over a response (bounds-checked by struct)."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def uvarint(self):
        shift = value = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def skip_string(self):
        n = self.take(">h")
        self.pos += max(n, 0)

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()


def parse_api_versions(frame, version):
    """(correlation_id, error_code, {api_key: (min, max)}) of an ApiVersions response."""
    b = Body(frame)
    corr = b.take(">i")  # response header v0 even for v3 (ApiVersionsResponse.json)
    error = b.take(">h")
    ranges = {}
    if version >= 3:
        n = b.uvarint() - 1
        for _ in range(n):
            key, lo, hi = b.take(">hhh")
            b.skip_tags()
            ranges[key] = (lo, hi)
    else:
        n = b.take(">i")
        for _ in range(n):
            key, lo, hi = b.take(">hhh")
            ranges[key] = (lo, hi)
    return corr, error, ranges


def produce_v3_errors(frame):
    """(correlation_id, [partition error codes]) of a ProduceResponse v3."""
    b = Body(frame)
    corr = b.take(">i")
    errors = []
    for _ in range(b.take(">i")):
        b.skip_string()
        for _ in range(b.take(">i")):
            _, err, _, _ = b.take(">ihqq")
            errors.append(err)
    return corr, errors


def fetch_v4_errors(frame):
    """(correlation_id, [partition error codes]) of a FetchResponse v4."""
    b = Body(frame)
    corr = b.take(">i")
    b.take(">i")  # throttle_time_ms
    errors = []
    for _ in range(b.take(">i")):
        b.skip_string()
        for _ in range(b.take(">i")):
            _, err, _, _ = b.take(">ihqq")
            errors.append(err)
            aborted = b.take(">i")
            b.pos += max(aborted, 0) * 16
            b.pos += max(b.take(">i"), 0)  # records
    return corr, errors


def check_api_versions(frame, expect):
    corr, error, ranges = parse_api_versions(frame, expect["version"])
    assert corr == expect["correlation_id"]
    assert error == expect["error_code"], f"error {error}, ranges {ranges}"
    assert 18 in ranges, f"ApiVersions (18) missing from {ranges}"
    lo, hi = ranges[18]
    assert lo == 0 and hi >= 3, f"ApiVersions range {lo}..{hi}"
    if error == 0:
        # CLIENT-VERSIONS.md: librdkafka compresses only if Produce min is 0, and
        # uses RecordBatch v2 only if Produce includes 3 and Fetch includes 4.
        assert ranges.get(0, (1, 0))[0] == 0 and ranges[0][1] >= 3, f"Produce {ranges.get(0)}"
        assert ranges.get(1, (5, 0))[0] <= 4 <= ranges[1][1], f"Fetch {ranges.get(1)}"


def check_outcome(sock, expect):
    outcome = expect["outcome"]
    deadline = time.monotonic() + bound(OUTCOME_TIMEOUT)
    if outcome == "close":
        try:
            while True:  # whatever arrives, the connection must end
                recv_exact(sock, 1, deadline)
        except Closed:
            return
        except TimeoutError:
            pytest.fail(f"connection still open after {bound(OUTCOME_TIMEOUT):.0f} s")
    try:
        if outcome == "close_or_response":
            try:
                frame = recv_frame(sock, deadline)
            except Closed:
                return
            assert struct.unpack_from(">i", frame)[0] == expect["correlation_id"]
        elif outcome == "api_versions":
            check_api_versions(recv_frame(sock, deadline), expect)
        elif outcome in ("produce", "fetch"):
            parse = produce_v3_errors if outcome == "produce" else fetch_v4_errors
            corr, errors = parse(recv_frame(sock, deadline))
            assert corr == expect["correlation_id"]
            assert len(errors) == 1 and errors[0] in expect["error_codes"], \
                f"error codes {errors}, expected one of {expect['error_codes']}"
        elif outcome == "responses":
            got = [struct.unpack_from(">i", recv_frame(sock, deadline))[0]
                   for _ in expect["correlation_ids"]]
            assert got == expect["correlation_ids"], f"correlation ids in order: {got}"
            try:
                extra = recv_frame(sock, time.monotonic() + 0.3)
                pytest.fail(f"unexpected extra response {extra[:16].hex()}")
            except TimeoutError:
                pass
        else:
            raise AssertionError(f"unknown outcome {outcome}")
    except Closed:
        pytest.fail("the broker closed the connection instead of answering")
    except TimeoutError:
        pytest.fail(f"no response within {bound(OUTCOME_TIMEOUT):.0f} s")


def api_versions_works(broker):
    """A new client connection gets a correct ApiVersions v0 reply."""
    with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=bound(5)) as s:
        s.sendall(bytes.fromhex(TABLE["cases"][0]["frames"][0]))
        frame = recv_frame(s, time.monotonic() + bound(5))
        check_api_versions(frame, TABLE["cases"][0]["expect"])


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: c["name"])
def test_wire_case(kafka_factory, case):
    broker = kafka_factory(TABLE["broker_config"]).start()
    steady = SteadyProducer(broker)
    steady.start()
    try:
        assert_delivered(produce_all(make_producer(broker), TABLE["topic"], [{"value": b"seed"}]))
        steady.wait_started()
        with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as s:
            s.sendall(b"".join(bytes.fromhex(f) for f in case["frames"]))
            check_outcome(s, case["expect"])
        assert broker.running(), "the broker exited"
        api_versions_works(broker)
        steady.wait_more_acks()
    except BaseException:
        steady.halt_and_flush()
        raise
    steady.stop()
    got = read_topic(broker, "steady", steady.acked, timeout=20)
    assert [int(m.value()) for m in got] == list(range(steady.acked))
