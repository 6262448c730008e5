"""A log pipeline: a private rsyslogd (Debian rsyslog 8.2302 with rsyslog-kafka's
omkafka on librdkafka 2.0.2) receives 10,000 syslog lines over TCP and forwards
them into a Sluice topic; a python3-confluent-kafka consumer counts every one.

The rsyslogd here is a test instance, not the system one: its own config, pid
file and work directory under the test's temporary directory, no system
sockets (no imuxsock on /dev/log, no imklog), an imtcp input on a free
127.0.0.1 port and its own internal messages written to a file. It is started
and stopped by the PID this test spawned. Install it with scripts/setup-rsyslog.sh.
"""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import can_connect, free_port
from kafka_helpers import (bound, close_consumer, confluent_kafka, create_topics,
                           make_admin, make_consumer, need_confluent)

SETUP_HINT = "run scripts/setup-rsyslog.sh (as root) to install rsyslog and rsyslog-kafka"
OMKAFKA_PATHS = ("/usr/lib/x86_64-linux-gnu/rsyslog/omkafka.so",
                 "/usr/lib/rsyslog/omkafka.so")
COUNT = 10000
TOPIC = "syslog"
PARTITIONS = 3
HOST = "sluicehost"
APP = "pipeline"
RSYSLOG_START_TIMEOUT = 10.0
RSYSLOG_STOP_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 60.0

# rsyslog's RainerScript config. Everything it touches is under {d}; its only
# input is imtcp on 127.0.0.1:{tcp_port}. Internal messages (errors of omkafka or
# librdkafka) go through the default ruleset into internal.log; the syslog lines
# are bound to their own ruleset, so only they reach Kafka.
RSYSLOG_CONF = """\
global(workDirectory="{d}/work"
       processInternalMessages="on"
       maxMessageSize="8k")
main_queue(queue.type="LinkedList" queue.size="50000" queue.workerThreads="1")

module(load="imtcp")
module(load="omkafka")

template(name="kafkaline" type="string" string="%hostname% %app-name% %msg%")

input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="tokafka")

ruleset(name="tokafka") {{
  action(type="omkafka"
         broker=["127.0.0.1:{kafka_port}"]
         topic="{topic}"
         template="kafkaline"
         partitions.auto="on"
         resubmitOnFailure="on"
         errorFile="{d}/omkafka-errors.json"
         closeTimeout="5000"
         confParam=["linger.ms=5",
                    "batch.num.messages=500",
                    "enable.idempotence=true",
                    "acks=all",
                    "broker.address.family=v4",
                    "socket.timeout.ms=10000",
                    "message.timeout.ms=30000"]
         queue.type="LinkedList"
         queue.size="50000"
         queue.workerThreads="1"
         queue.dequeueBatchSize="500"
         queue.timeoutShutdown="5000"
         action.resumeRetryCount="-1"
         action.resumeInterval="1")
}}

action(type="omfile" file="{d}/internal.log")
"""


def need_rsyslog():
    """Path of rsyslogd; fails (with the setup command) unless rsyslogd and omkafka exist."""
    path = shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.path.exists(p)), None)
    if path is None:
        pytest.fail("rsyslogd is missing (Debian package rsyslog): " + SETUP_HINT)
    if not any(os.path.exists(p) for p in OMKAFKA_PATHS):
        pytest.fail("rsyslog's omkafka module is missing (Debian package rsyslog-kafka): "
                    + SETUP_HINT)
    return path


def read_text(path):
    try:
        return pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return ""


class Rsyslogd:
    """One private rsyslogd (foreground, -n) with its own config, pid file and work dir."""

    def __init__(self, base_dir, kafka_port):
        self.rsyslogd = need_rsyslog()
        self.dir = pathlib.Path(base_dir)
        (self.dir / "work").mkdir(parents=True)
        self.tcp_port = free_port()
        self.conf = self.dir / "rsyslog.conf"
        self.pid_file = self.dir / "rsyslog.pid"
        self.output = self.dir / "rsyslogd.out"
        self.conf.write_text(RSYSLOG_CONF.format(d=self.dir, tcp_port=self.tcp_port,
                                                 kafka_port=kafka_port, topic=TOPIC))
        self.proc = None

    def logs(self):
        """rsyslogd's stdout/stderr, its internal messages and omkafka's error file."""
        return (f"--- rsyslogd stdout/stderr ---\n{read_text(self.output)}\n"
                f"--- rsyslog internal.log ---\n{read_text(self.dir / 'internal.log')}\n"
                f"--- omkafka errorFile ---\n"
                f"{read_text(self.dir / 'omkafka-errors.json')[-4000:]}")

    def check_config(self):
        """rsyslogd -N1: a config error fails here with rsyslog's own message."""
        r = subprocess.run([self.rsyslogd, "-N1", "-f", str(self.conf)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=bound(20))
        assert r.returncode == 0, \
            f"rsyslogd -N1 rejected the test config ({r.returncode}):\n{r.stdout}{r.stderr}"

    def start(self):
        """Starts rsyslogd and waits (bounded) for its pid file and its TCP input."""
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [self.rsyslogd, "-n", "-f", str(self.conf), "-i", str(self.pid_file)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.dir)
        deadline = time.monotonic() + bound(RSYSLOG_START_TIMEOUT)
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"rsyslogd exited with {self.proc.returncode} at start:\n"
                            + self.logs())
            if self.pid_file.exists() and can_connect(self.tcp_port, timeout=0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"rsyslogd not listening on 127.0.0.1:{self.tcp_port} after "
                            f"{bound(RSYSLOG_START_TIMEOUT):.0f} s:\n" + self.logs())
            time.sleep(0.05)
        written = self.pid_file.read_text().strip()
        assert written == str(self.proc.pid), \
            f"pid file holds {written!r}, but the rsyslogd started is {self.proc.pid}"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM to the PID started here, bounded wait, then SIGKILL of that PID only.

        Returns the exit code (None when it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=bound(RSYSLOG_STOP_TIMEOUT))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=bound(RSYSLOG_STOP_TIMEOUT))
            return None


def syslog_time(ms):
    """RFC 5424 TIMESTAMP (UTC, milliseconds) of ms since the epoch."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def syslog_line(seq, base_ms):
    """One RFC 5424 message, LF-framed, with its sequence number; stamped base_ms + seq."""
    return (f"<134>1 {syslog_time(base_ms + seq)} {HOST} {APP} - - - "
            f"seq={seq:05d} request served in {seq % 997} ms\n")


def expected_value(seq):
    """The Kafka value the template %hostname% %app-name% %msg% makes of syslog_line(seq)."""
    return f"{HOST} {APP} seq={seq:05d} request served in {seq % 997} ms"


def send_lines(port, count, base_ms):
    """Sends count syslog lines over one TCP connection to rsyslog's imtcp."""
    data = "".join(syslog_line(i, base_ms) for i in range(count)).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=bound(10)) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)


SEQ_RE = re.compile(r"seq=(\d{5}) ")


def consume_all(consumer, count, timeout):
    """Polls until count distinct sequence numbers were seen or timeout s passed.

    Returns (values by seq, duplicates, bad values, (partition, offset, seq) list,
    Kafka timestamps by seq)."""
    seen = {}
    duplicates = 0
    bad = []
    records = []
    stamps = {}
    deadline = time.monotonic() + bound(timeout)
    while len(seen) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for m in consumer.consume(num_messages=5000, timeout=min(left, 0.5)):
            if m.error():
                pytest.fail(f"consumer error: {m.error()}")
            value = m.value().decode(errors="replace")
            match = SEQ_RE.search(value)
            if not match:
                bad.append(value)
                continue
            seq = int(match.group(1))
            records.append((m.partition(), m.offset(), seq))
            if seq in seen:
                duplicates += 1
            seen[seq] = value
            stamps[seq] = m.timestamp()
    return seen, duplicates, bad, records, stamps


@pytest.mark.kafka_timeout(90)
def test_rsyslog_omkafka_forwards_every_line(kafka_factory, tmp_path):
    need_confluent()
    broker = kafka_factory().start()
    admin = make_admin(broker)
    create_topics(admin, [(TOPIC, PARTITIONS)])

    rsyslog = Rsyslogd(tmp_path / "rsyslog", broker.kafka_port)
    rsyslog.check_config()
    consumer = None
    try:
        rsyslog.start()
        t0 = time.monotonic()
        # Recent timestamps, as a live pipeline has: omkafka passes the syslog
        # TIMESTAMP on as the record's CreateTime, and retention (log.retention.ms,
        # 7 days) goes by record timestamps, so older lines could be deleted early.
        base_ms = int(time.time() * 1000) - 60000
        send_lines(rsyslog.tcp_port, COUNT, base_ms)

        consumer = make_consumer(broker, {"group.id": "rsyslog-pipeline-reader"})
        consumer.assign([confluent_kafka.TopicPartition(TOPIC, p,
                                                        confluent_kafka.OFFSET_BEGINNING)
                         for p in range(PARTITIONS)])
        seen, duplicates, bad, records, stamps = consume_all(consumer, COUNT, DELIVERY_TIMEOUT)
        elapsed = time.monotonic() - t0
        # Every line was seen once; anything more (a duplicate from a retry) is here now.
        late = [m for m in consumer.consume(num_messages=1000, timeout=1.0) if not m.error()]
        duplicates += len(late)

        missing = sorted(set(range(COUNT)) - set(seen))
        print(f"rsyslog -> sluice: {len(seen)} of {COUNT} lines in {elapsed:.2f} s, "
              f"{duplicates} duplicates, per partition "
              f"{[sum(1 for r in records if r[0] == p) for p in range(PARTITIONS)]}")
        assert not bad, f"{len(bad)} values without a sequence number, first: {bad[0]!r}"
        assert not missing, (
            f"{len(missing)} of {COUNT} lines never reached the topic within "
            f"{bound(DELIVERY_TIMEOUT):.0f} s (first missing: {missing[:10]})\n"
            + rsyslog.logs())
        assert set(seen) == set(range(COUNT))
        for seq, value in seen.items():
            assert value == expected_value(seq), f"line {seq} arrived as {value!r}"
            # omkafka sends the syslog TIMESTAMP in whole seconds as CreateTime.
            want = (confluent_kafka.TIMESTAMP_CREATE_TIME, (base_ms + seq) // 1000 * 1000)
            assert stamps[seq] == want, f"line {seq}: timestamp {stamps[seq]}, want {want}"
        # enable.idempotence=true: librdkafka's retries must not duplicate anything.
        assert duplicates == 0, f"{duplicates} duplicate lines in the topic"

        # Offsets in each partition are dense from 0, and (one TCP session, one
        # worker per queue, idempotent producer) each partition keeps the send order.
        for p in range(PARTITIONS):
            part = sorted((off, seq) for q, off, seq in records if q == p)
            assert [off for off, _ in part] == list(range(len(part))), \
                f"partition {p}: offsets not dense from 0"
            seqs = [seq for _, seq in part]
            assert seqs == sorted(seqs), f"partition {p}: lines out of send order"
    finally:
        if consumer is not None:
            close_consumer(consumer)
        code = rsyslog.stop()
    assert code == 0, f"rsyslogd exit code {code} after SIGTERM:\n" + rsyslog.logs()
    errors = read_text(rsyslog.dir / "omkafka-errors.json")
    assert not errors, f"omkafka reported failed messages:\n{errors[:4000]}"
    internal = read_text(rsyslog.dir / "internal.log")
    kafka_errors = [l for l in internal.splitlines()
                    if "omkafka" in l and re.search(r"error|fail", l, re.I)]
    assert not kafka_errors, "omkafka logged errors:\n" + "\n".join(kafka_errors[:20])
