#!/usr/bin/env python3
"""Writes wire_cases.json: hostile and edge-case Kafka frames for test_kafka_wire.py.

The JSON is the table the test reads (hex bytes exactly as sent, the expected
outcome, the spec it follows); this script is how its frames were built, so a
case can be changed or added without hand-encoding hex. Run it from anywhere:
    python3 tests/integration/kafka/make_wire_cases.py
and commit both files.

Encodings follow the Kafka protocol guide and the message schemas in
shared/specs/kafka/message/ (request header v1 for non-flexible versions,
v2 = v1 + tagged fields for flexible ones; RecordBatch v2 with CRC-32C over
attributes..end).
"""

import json
import pathlib
import struct

OUT = pathlib.Path(__file__).resolve().parent / "wire_cases.json"
TOPIC = "wire"       # created by the test before the cases run
TIMESTAMP = 1_700_000_000_000


def crc32c(data):
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)
def string(s): return i16(len(s)) + s.encode()


def uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v):
    return uvarint((v << 1) ^ (v >> 63))  # zigzag


def compact_string(s): return uvarint(len(s) + 1) + s.encode()


def header_v1(key, version, corr, client="wire-test"):
    return i16(key) + i16(version) + i32(corr) + string(client)


def header_v2(key, version, corr, client="wire-test"):
    return header_v1(key, version, corr, client) + uvarint(0)


def frame(body):
    return i32(len(body)) + body


def record(value, key=None, offset_delta=0):
    body = i8(0) + varint(0) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(len(value)) + value
    body += uvarint(0)  # header count (varint 0)
    return varint(len(body)) + body


def record_batch(records, count=None, magic=2, bad_crc=False, length_delta=0):
    """RecordBatch v2 (DefaultRecordBatch): baseOffset .. records; CRC over attributes..end."""
    count = len(records) if count is None else count
    after_crc = (i16(0) + i32(len(records) - 1) + i64(TIMESTAMP) + i64(TIMESTAMP)
                 + i64(-1) + i16(-1) + i32(-1) + i32(count) + b"".join(records))
    crc = crc32c(after_crc)
    if bad_crc:
        crc ^= 0x1
    tail = i32(0) + i8(magic) + struct.pack(">I", crc) + after_crc  # partitionLeaderEpoch ..
    return i64(0) + i32(len(tail) + length_delta) + tail


def produce_v3(corr, records_bytes, acks=1, topic=TOPIC, topic_count=None, records_len=None):
    """ProduceRequest v3: transactional_id, acks, timeout_ms, [topic, [partition, records]]."""
    rl = len(records_bytes) if records_len is None else records_len
    body = header_v1(0, 3, corr) + i16(-1) + i16(acks) + i32(5000)
    body += i32(1 if topic_count is None else topic_count)
    body += string(topic) + i32(1) + i32(0) + i32(rl) + records_bytes
    return frame(body)


def api_versions_v0(corr):
    return frame(header_v1(18, 0, corr))


def api_versions_flexible(corr, version):
    body = compact_string("wire-test") + compact_string("1.0") + uvarint(0)
    return frame(header_v2(18, version, corr) + body)


def metadata_v1(corr, topic_count=-1, topics=()):
    body = header_v1(3, 1, corr) + i32(topic_count) + b"".join(string(t) for t in topics)
    return frame(body)


def fetch_v4(corr, topic, offset):
    body = header_v1(1, 4, corr) + i32(-1) + i32(100) + i32(0) + i32(1 << 20) + i8(0)
    body += i32(1) + string(topic) + i32(1) + i32(0) + i64(offset) + i32(1 << 20)
    return frame(body)


def one_record():
    return [record(b"wire value", key=b"wire key")]


SPEC_FRAMING = "Kafka protocol guide, 'Protocol Primitives'/'Requests': Size int32 prefix"
SPEC_HEADER = "RequestHeader.json v1/v2 (api_key, api_version, correlation_id, client_id)"
SPEC_AV = "ApiVersionsRequest/Response.json; KIP-511 (unsupported version: v0 error 35 + range)"
SPEC_PRODUCE = "ProduceRequest/Response.json v3; RecordBatch v2 (KIP-98), CRC-32C"


def cases():
    c = []

    def add(name, frames, expect, spec, comment, group="spec"):
        c.append({"name": name, "group": group, "frames": [f.hex() for f in frames],
                  "expect": expect, "spec": spec, "comment": comment})

    add("api_versions_v0", [api_versions_v0(1)],
        {"outcome": "api_versions", "version": 0, "correlation_id": 1, "error_code": 0},
        SPEC_AV, "baseline: a v0 request gets the broker's ranges (Produce min 0, Fetch ∋ 4)")
    add("api_versions_v3_flexible", [api_versions_flexible(2, 3)],
        {"outcome": "api_versions", "version": 3, "correlation_id": 2, "error_code": 0},
        SPEC_AV, "librdkafka's first request: flexible body, response header stays v0")
    add("api_versions_unsupported_version", [api_versions_flexible(3, 99)],
        {"outcome": "api_versions", "version": 0, "correlation_id": 3, "error_code": 35},
        SPEC_AV, "newer ApiVersions than supported: v0-format reply, UNSUPPORTED_VERSION (35), "
                 "with the broker's ApiVersions range so the client can retry")
    add("pipelined_requests_in_order",
        [api_versions_v0(11) + metadata_v1(12) + api_versions_v0(13)],
        {"outcome": "responses", "correlation_ids": [11, 12, 13]},
        SPEC_FRAMING, "responses on one connection come back in request order "
                      "(kafka-python pipelines ApiVersions v0 + Metadata v0)")
    add("length_huge", [i32(0x7FFFFFFF) + b"\x00" * 16],
        {"outcome": "close"}, SPEC_FRAMING,
        "2 GiB size prefix: over socket.request.max.bytes, refused before any allocation")
    add("length_over_request_max", [i32(65537)],
        {"outcome": "close"}, SPEC_FRAMING,
        "just over socket.request.max.bytes (65536 in this test): closed without waiting "
        "for the body")
    add("length_negative", [i32(-1) + b"\x00" * 8],
        {"outcome": "close"}, SPEC_FRAMING, "negative size prefix")
    add("length_zero", [i32(0)],
        {"outcome": "close"}, SPEC_FRAMING, "empty frame: no room for a request header")
    add("header_truncated", [frame(b"\x00\x12\x00")],
        {"outcome": "close"}, SPEC_HEADER, "3-byte frame: api_key and half an api_version")
    add("header_client_id_overruns", [frame(i16(18) + i16(0) + i32(5) + i16(100) + b"abc")],
        {"outcome": "close"}, SPEC_HEADER, "client_id length 100, 3 bytes present")
    add("unknown_api_key", [frame(header_v1(0x7FF0, 0, 6))],
        {"outcome": "close_or_response", "correlation_id": 6}, SPEC_HEADER,
        "api key 32752 does not exist: Apache Kafka closes; an error reply is also fine")
    add("metadata_unsupported_version", [frame(header_v1(3, 99, 7) + i32(-1))],
        {"outcome": "close_or_response", "correlation_id": 7}, "MetadataRequest.json",
        "Metadata v99: Apache Kafka closes; an error reply is also fine")
    add("metadata_negative_topic_count", [metadata_v1(8, topic_count=-5)],
        {"outcome": "close"}, "MetadataRequest.json v1 (topics nullable: only -1 is null)",
        "array count -5")
    add("metadata_huge_topic_count", [metadata_v1(9, topic_count=0x7FFFFFFF, topics=["a"])],
        {"outcome": "close"}, "MetadataRequest.json v1",
        "2^31-1 topics announced, one present: must not preallocate")
    add("produce_valid_batch", [produce_v3(20, record_batch(one_record()))],
        {"outcome": "produce", "correlation_id": 20, "error_codes": [0]}, SPEC_PRODUCE,
        "control: the same frame builder with a correct batch is accepted")
    add("produce_bad_crc", [produce_v3(21, record_batch(one_record(), bad_crc=True))],
        {"outcome": "produce", "correlation_id": 21, "error_codes": [2]}, SPEC_PRODUCE,
        "CRC-32C off by one bit: CORRUPT_MESSAGE (2)")
    add("produce_batch_length_overruns",
        [produce_v3(22, record_batch(one_record(), length_delta=40))],
        {"outcome": "produce", "correlation_id": 22, "error_codes": [2, 87]}, SPEC_PRODUCE,
        "batchLength 40 bytes past the records field: CORRUPT_MESSAGE or INVALID_RECORD (87)")
    add("produce_record_count_mismatch",
        [produce_v3(23, record_batch(one_record(), count=5))],
        {"outcome": "produce", "correlation_id": 23, "error_codes": [2, 87]}, SPEC_PRODUCE,
        "recordCount 5 with one record (CRC valid): CORRUPT_MESSAGE or INVALID_RECORD")
    add("produce_magic_1", [produce_v3(24, record_batch(one_record(), magic=1))],
        {"outcome": "produce", "correlation_id": 24, "error_codes": [2, 43, 87]}, SPEC_PRODUCE,
        "Produce v3+ carries only magic 2: INVALID_RECORD (Kafka), UNSUPPORTED_FOR_MESSAGE_"
        "FORMAT (43) or CORRUPT_MESSAGE")
    add("produce_too_large",
        [produce_v3(25, record_batch([record(b"x" * 5000)]))],
        {"outcome": "produce", "correlation_id": 25, "error_codes": [10]}, SPEC_PRODUCE,
        "a 5 KB batch with message.max.bytes = 4096 in this test: MESSAGE_TOO_LARGE (10)")
    add("produce_negative_topic_count",
        [produce_v3(26, record_batch(one_record()), topic_count=-2)],
        {"outcome": "close"}, SPEC_PRODUCE, "topic_data count -2 (not nullable)")
    add("produce_huge_topic_count",
        [produce_v3(27, record_batch(one_record()), topic_count=0x7FFFFFFF)],
        {"outcome": "close"}, SPEC_PRODUCE, "2^31-1 topics announced, one present")
    add("produce_records_length_overruns",
        [produce_v3(28, record_batch(one_record()), records_len=100000)],
        {"outcome": "close"}, SPEC_PRODUCE, "records bytes length 100000 past the frame end")
    add("produce_acks0_no_response",
        [produce_v3(29, record_batch(one_record()), acks=0) + api_versions_v0(30)],
        {"outcome": "responses", "correlation_ids": [30]}, SPEC_PRODUCE,
        "acks=0: no Produce response at all; the next request's reply comes first")
    add("fetch_unknown_topic", [fetch_v4(31, "no-such-topic", 0)],
        {"outcome": "fetch", "correlation_id": 31, "error_codes": [3]},
        "FetchRequest/Response.json v4", "UNKNOWN_TOPIC_OR_PARTITION (3), not auto-created")
    add("fetch_offset_out_of_range", [fetch_v4(32, TOPIC, 1_000_000)],
        {"outcome": "fetch", "correlation_id": 32, "error_codes": [1]},
        "FetchRequest/Response.json v4", "OFFSET_OUT_OF_RANGE (1) past the log end")
    return c


def main():
    doc = {
        "comment": "Generated by make_wire_cases.py; read by test_kafka_wire.py. Each case: "
                   "frames (hex, sent in order on one connection), expect (outcome: close | "
                   "close_or_response | api_versions | produce | fetch | responses), the spec "
                   "section it follows. The broker runs with message.max.bytes = 4096 and "
                   "socket.request.max.bytes = 65536; topic 'wire' exists.",
        "broker_config": ["message.max.bytes = 4096", "socket.request.max.bytes = 65536"],
        "topic": TOPIC,
        "cases": cases(),
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(doc['cases'])} cases to {OUT}")


if __name__ == "__main__":
    main()
