"""kcat 1.7.1 (librdkafka 2.0.2) against Sluice: produce and consume lines with
keys and headers, and list metadata. Topics are auto-created by the produce."""

import json

from kafka_helpers import bootstrap, run_kcat


def kcat_produce(broker, topic, lines, *extra):
    r = run_kcat(["-b", bootstrap(broker), "-P", "-t", topic, *extra], stdin=lines)
    assert r.returncode == 0, f"kcat -P failed ({r.returncode}):\n{r.stderr}"
    return r


def kcat_consume(broker, topic, fmt):
    """Everything in topic from the beginning, formatted by kcat -f fmt."""
    r = run_kcat(["-b", bootstrap(broker), "-C", "-t", topic, "-e", "-o", "beginning",
                  "-q", "-f", fmt])
    assert r.returncode == 0, f"kcat -C failed ({r.returncode}):\n{r.stderr}"
    return r.stdout


def test_kcat_keyed_lines_round_trip(broker):
    lines = "".join(f"key-{i % 7}:value number {i}\n" for i in range(200))
    kcat_produce(broker, "kcat-lines", lines, "-K:")
    out = kcat_consume(broker, "kcat-lines", "%k:%s\n")
    assert out == lines


def test_kcat_consume_shows_dense_offsets_and_partition(broker):
    kcat_produce(broker, "kcat-offsets", "".join(f"m{i}\n" for i in range(50)))
    out = kcat_consume(broker, "kcat-offsets", "%p %o %s\n")
    assert out == "".join(f"0 {i} m{i}\n" for i in range(50))


def test_kcat_metadata_lists_topic(broker):
    kcat_produce(broker, "kcat-meta", "one\n")
    r = run_kcat(["-b", bootstrap(broker), "-L", "-J"])
    assert r.returncode == 0, r.stderr
    md = json.loads(r.stdout)
    assert len(md["brokers"]) == 1
    b = md["brokers"][0]
    assert b["name"].startswith("127.0.0.1:") and b["name"].endswith(f":{broker.kafka_port}"), b
    topics = {t["topic"]: t for t in md["topics"]}
    assert "kcat-meta" in topics, f"topic missing from metadata: {sorted(topics)}"
    t = topics["kcat-meta"]
    assert "error" not in t, t
    assert [p["partition"] for p in t["partitions"]] == [0]
    assert t["partitions"][0]["leader"] == b["id"]


def test_kcat_headers_round_trip(broker):
    kcat_produce(broker, "kcat-headers", "payload-1\npayload-2\n",
                 "-H", "trace=abc123", "-H", "source=unit test", "-H", "empty=")
    out = kcat_consume(broker, "kcat-headers", "%h|%s\n")
    assert out == ("trace=abc123,source=unit test,empty=|payload-1\n"
                   "trace=abc123,source=unit test,empty=|payload-2\n")
