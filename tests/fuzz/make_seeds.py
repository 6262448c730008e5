#!/usr/bin/env python3
"""Writes the libFuzzer seed inputs in tests/fuzz/seeds/ (run with /usr/bin/python3:
it needs Debian's python3-pika and python3-kafka). The seeds are committed; this
script documents how they were made and remakes them.

seeds/amqp/:  AMQP 0-9-1 frames as pika marshals them (one file per frame, and
              one with all of them in a row), tables with every type pika writes.
seeds/kafka/: byte 0 = API key, byte 1 = version - the API's lowest version,
              then a request header v1 and body; and "batch", a RecordBatch v2
              with two records (kafka-python's MemoryRecordsBuilder).
seeds/queue_recovery/: the files of durable queues written by a real broker
              (SLUICE_BIN, default build/sluice) fed by pika: a plain queue and
              a priority queue, some messages acked, packed as
              fuzz_queue_recovery.c reads them.
"""
import hashlib
import os
import socket
import struct
import subprocess
import tempfile
import time

import pika.frame as fr
import pika.spec as spec
from kafka.record.memory_records import MemoryRecordsBuilder

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def save(kind, data, name=None):
    d = os.path.join(HERE, kind)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def amqp():
    props = spec.BasicProperties(
        content_type="text/plain", delivery_mode=2, priority=3,
        headers={"a": 1, "b": "x", "c": [1, "y", {"n": 2}], "d": {"e": True}, "t": None},
        correlation_id="c1", reply_to="r", expiration="1000", message_id="m",
        timestamp=1700000000, type="t", user_id="guest", app_id="app")
    frames = [
        fr.Method(0, spec.Connection.StartOk(
            client_properties={"product": "x", "capabilities": {"publisher_confirms": True}},
            mechanism="PLAIN", response="\0guest\0guest")),
        fr.Method(0, spec.Connection.TuneOk(2047, 131072, 60)),
        fr.Method(0, spec.Connection.Open("/")),
        fr.Method(1, spec.Channel.Open()),
        fr.Method(1, spec.Queue.Declare(queue="q", durable=True, arguments={
            "x-max-length": 10, "x-overflow": "reject-publish", "x-dead-letter-exchange": "dlx",
            "x-message-ttl": 1000, "x-max-priority": 5})),
        fr.Method(1, spec.Exchange.Declare(exchange="e", type="headers",
                                           arguments={"alternate-exchange": "ae"})),
        fr.Method(1, spec.Queue.Bind(queue="q", exchange="e", routing_key="k",
                                     arguments={"x-match": "any", "h": 1})),
        fr.Method(1, spec.Basic.Qos(prefetch_count=10)),
        fr.Method(1, spec.Basic.Consume(queue="q", consumer_tag="tag", arguments={"x-priority": 2})),
        fr.Method(1, spec.Basic.Publish(exchange="e", routing_key="k", mandatory=True)),
        fr.Header(1, 5, props),
        fr.Body(1, b"hello"),
        fr.Method(1, spec.Basic.Ack(delivery_tag=5, multiple=True)),
        fr.Method(1, spec.Basic.Nack(delivery_tag=5, multiple=True, requeue=True)),
        fr.Method(1, spec.Confirm.Select()),
        fr.Method(1, spec.Tx.Select()),
        fr.Heartbeat(),
    ]
    save("amqp", b"".join(f.marshal() for f in frames), "session")
    for f in frames:
        save("amqp", f.marshal())


def kafka():
    b = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    b.append(timestamp=1000, key=b"k", value=b"v", headers=[("h", b"x")])
    b.append(timestamp=1001, key=None, value=b"v2", headers=[])
    b.close()
    batch = bytes(b.buffer())
    save("kafka", batch, "batch")

    def s16(s):
        return struct.pack(">h", len(s)) + s

    def req(key, version, body):
        hdr = struct.pack(">hhi", key, version, 7) + s16(b"fz")
        save("kafka", bytes([key, version]) + hdr + body)  # every lowest version is 0

    req(18, 0, b"")                                                     # ApiVersions
    req(3, 0, struct.pack(">i", 2) + s16(b"a") + s16(b"bb"))            # Metadata
    req(3, 1, struct.pack(">i", -1))
    req(0, 3, struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 1) + s16(b"t")  # Produce
        + struct.pack(">i", 1) + struct.pack(">ii", 0, len(batch)) + batch)
    req(1, 4, struct.pack(">iiiib", -1, 100, 1, 1 << 20, 0) + struct.pack(">i", 1)  # Fetch
        + s16(b"t") + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20))
    req(10, 0, s16(b"g"))                                               # FindCoordinator
    req(12, 0, s16(b"g") + struct.pack(">i", 1) + s16(b"m"))            # Heartbeat


def queue_recovery():
    import pika
    root = os.path.dirname(os.path.dirname(HERE))
    sluice = os.environ.get("SLUICE_BIN", os.path.join(root, "..", "build", "sluice"))
    with tempfile.TemporaryDirectory() as tmp:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        proc = subprocess.Popen([sluice, "--data-dir", tmp + "/data", "--port-kafka", "0",
                                 "--port-amqp", str(port), "--port-http", "0"],
                                stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
                    break
                except Exception:
                    time.sleep(0.1)
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare("plain", durable=True)
            ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 5})
            for i in range(12):
                props = pika.BasicProperties(delivery_mode=2, priority=i % 6,
                                             expiration="600000" if i % 3 == 0 else None,
                                             headers={"i": i})
                for q in ("plain", "prio"):
                    ch.basic_publish("", q, b"body %d" % i, props)
            for q in ("plain", "prio"):
                for _ in range(5):
                    m, _, _ = ch.basic_get(q)
                    ch.basic_ack(m.delivery_tag)
                ch.basic_get(q)  # delivered, left unacked
            conn.close()
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        for name, mode in (("plain", 0), ("prio", 1 | (5 << 1))):
            d = os.path.join(tmp, "data", "queues", name.encode().hex())
            acks = open(os.path.join(d, "acks"), "rb").read()
            segs = sorted(f for f in os.listdir(os.path.join(d, "log")) if f.endswith(".log"))
            seg = open(os.path.join(d, "log", segs[0]), "rb").read()
            save("queue_recovery", bytes([mode]) + struct.pack(">H", len(acks)) + acks + seg, name)


if __name__ == "__main__":
    amqp()
    kafka()
    queue_recovery()
