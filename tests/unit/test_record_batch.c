/*
 * test_record_batch.c: RecordBatch v2 parsing, validation, patching, encoding
 * and record iteration, including every malformed case the parser rejects.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "core/reader.h"
#include "core/writer.h"
#include "storage/record_batch.h"

#define MAX (1u << 20)

static struct slice sl(const char *s)
{
	struct slice x = { (const uint8_t *)s, s ? strlen(s) : 0 };
	return x;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Recomputes the CRC of a batch after a test modified it (independent implementation). */
static void fix_crc(uint8_t *b, size_t len)
{
	put32(b + 17, crc32c_fallback_update(0, b + 21, len - 21));
}

/* Encodes n simple records "v0", "v1"... into w. */
static void encode_simple(struct writer *w, int64_t base_ts, int n)
{
	struct record_batch_rec recs[16];
	char vals[16][8];
	assert_true(n <= 16);
	for (int i = 0; i < n; i++) {
		snprintf(vals[i], sizeof vals[i], "v%d", i);
		memset(&recs[i], 0, sizeof recs[i]);
		recs[i].offset_delta = i;
		recs[i].timestamp_delta = i * 10;
		recs[i].value = sl(vals[i]);
	}
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.base_timestamp = base_ts;
	assert_int_equal(record_batch_encode(w, &p, recs, (size_t)n), 0);
}

/* The exact bytes of a one-record batch, built by hand from the spec. */
static void test_encode_matches_spec_layout(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, MAX);
	struct record_batch_rec rec = { 0 };
	rec.value = sl("a");
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.base_offset = 5;
	p.base_timestamp = 1000;
	assert_int_equal(record_batch_encode(&w, &p, &rec, 1), 0);

	uint8_t want[69] = {
		0, 0, 0, 0, 0, 0, 0, 5,          /* baseOffset */
		0, 0, 0, 57,                     /* batchLength = 69 - 12 */
		0xff, 0xff, 0xff, 0xff,          /* partitionLeaderEpoch -1 */
		2,                               /* magic */
		0, 0, 0, 0,                      /* crc, patched below */
		0, 0,                            /* attributes */
		0, 0, 0, 0,                      /* lastOffsetDelta */
		0, 0, 0, 0, 0, 0, 0x03, 0xe8,    /* baseTimestamp 1000 */
		0, 0, 0, 0, 0, 0, 0x03, 0xe8,    /* maxTimestamp 1000 */
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* producerId -1 */
		0xff, 0xff,                      /* producerEpoch -1 */
		0xff, 0xff, 0xff, 0xff,          /* baseSequence -1 */
		0, 0, 0, 1,                      /* records count */
		0x0e,                            /* record length 7 (zigzag 14) */
		0,                               /* attributes */
		0,                               /* timestampDelta 0 */
		0,                               /* offsetDelta 0 */
		0x01,                            /* key length -1: null */
		0x02, 'a',                       /* value length 1, "a" */
		0,                               /* header count 0 */
	};
	fix_crc(want, sizeof want);
	assert_int_equal(w.len, sizeof want);
	assert_memory_equal(w.buf, want, sizeof want);
	writer_fini(&w);
}

/* Decodes a hex string into out; returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out)
{
	size_t n = 0;
	for (; hex[0] && hex[1]; hex += 2) {
		unsigned v;
		sscanf(hex, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	return n;
}

/*
 * The same records encoded by another implementation: kafka-python 2.0.2's
 * DefaultRecordBatchBuilder (python3-kafka), which writes partitionLeaderEpoch 0.
 */
static void test_encode_matches_kafka_python(void **state)
{
	(void)state;
	static const char *one =
		"0000000000000000000000390000000002ebf1884b00000000000000000000000003e8"
		"00000000000003e8ffffffffffffffffffffffffffff000000010e00000001026100";
	static const char *two =
		"0000000000000000000000560000000002c59c27730000000000010000018bcfe56800"
		"0000018bcfe56800ffffffffffffffffffffffffffff0000000224000000046b301476"
		"616c7565207a65726f0022000902010104046831066f6e6504683201";
	uint8_t want[256];
	struct writer w;
	writer_init(&w, MAX);
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.partition_leader_epoch = 0;
	p.base_timestamp = 1000;
	struct record_batch_rec rec = { 0 };
	rec.value = sl("a");
	assert_int_equal(record_batch_encode(&w, &p, &rec, 1), 0);
	size_t n = unhex(one, want);
	assert_int_equal(w.len, n);
	assert_memory_equal(w.buf, want, n);

	writer_reset(&w);
	struct record_batch_kv hdrs[2] = { { sl("h1"), sl("one") }, { sl("h2"), { NULL, 0 } } };
	struct record_batch_rec recs[2] = {
		{ .timestamp_delta = 0, .offset_delta = 0, .key = sl("k0"), .value = sl("value zero") },
		{ .timestamp_delta = -5, .offset_delta = 1, .headers = hdrs, .header_count = 2 },
	};
	p.base_timestamp = 1700000000000LL;
	assert_int_equal(record_batch_encode(&w, &p, recs, 2), 0);
	n = unhex(two, want);
	assert_int_equal(w.len, n);
	assert_memory_equal(w.buf, want, n);
	struct record_batch_header h;
	assert_int_equal(record_batch_parse(want, n, MAX, &h), 0);
	writer_fini(&w);
}

static void test_parse_fields(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, MAX);
	struct record_batch_rec recs[3] = { 0 };
	for (int i = 0; i < 3; i++) {
		recs[i].offset_delta = i;
		recs[i].timestamp_delta = 100 - i * 40; /* max is the first: 100 */
		recs[i].value = sl("xyz");
	}
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.base_offset = 77;
	p.base_timestamp = 5000;
	p.producer_id = 42;
	p.producer_epoch = 3;
	p.base_sequence = 9;
	p.partition_leader_epoch = 7;
	p.attributes = RECORD_BATCH_ATTR_TRANSACTIONAL;
	assert_int_equal(record_batch_encode(&w, &p, recs, 3), 0);

	struct record_batch_header h;
	assert_int_equal(record_batch_parse(w.buf, w.len, MAX, &h), 0);
	assert_int_equal(h.base_offset, 77);
	assert_int_equal(record_batch_size(&h), w.len);
	assert_int_equal(h.batch_length, (int32_t)w.len - 12);
	assert_int_equal(h.partition_leader_epoch, 7);
	assert_int_equal(h.magic, 2);
	assert_int_equal(h.attributes, RECORD_BATCH_ATTR_TRANSACTIONAL);
	assert_int_equal(h.last_offset_delta, 2);
	assert_int_equal(record_batch_last_offset(&h), 79);
	assert_int_equal(h.base_timestamp, 5000);
	assert_int_equal(h.max_timestamp, 5100);
	assert_int_equal(h.producer_id, 42);
	assert_int_equal(h.producer_epoch, 3);
	assert_int_equal(h.base_sequence, 9);
	assert_int_equal(h.record_count, 3);
	assert_int_equal(h.crc, crc32c_fallback_update(0, w.buf + 21, w.len - 21));
	/* the header alone parses without the body */
	assert_int_equal(record_batch_header_parse(w.buf, RECORD_BATCH_HEADER_SIZE, MAX, &h), 0);
	writer_fini(&w);
}

/* Expects record_batch_parse of a copy of b, modified by fn, to fail with want. */
static void expect_parse(const uint8_t *b, size_t len, size_t max, int want)
{
	struct record_batch_header h;
	assert_int_equal(record_batch_parse(b, len, max, &h), want);
}

static void test_parse_malformed(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, MAX);
	encode_simple(&w, 1000, 3);
	size_t len = w.len;
	uint8_t *b = malloc(len + 16);
	struct record_batch_header h;

	/* every truncation is corrupt */
	for (size_t n = 0; n < len; n++)
		expect_parse(w.buf, n, MAX, -ERR_CORRUPT);
	expect_parse(w.buf, len, MAX, 0);
	expect_parse(NULL, 0, MAX, -ERR_CORRUPT);
	/* too large for the cap, but whole and valid otherwise */
	expect_parse(w.buf, len, len - 1, -ERR_TOO_LARGE);
	expect_parse(w.buf, len, len, 0);

	/* magic other than 2, even with a correct CRC */
	for (int m = -1; m <= 3; m++) {
		if (m == 2)
			continue;
		memcpy(b, w.buf, len);
		b[16] = (uint8_t)m;
		expect_parse(b, len, MAX, -ERR_CORRUPT);
	}
	/* batchLength below the header, negative, beyond the buffer */
	uint32_t bad_lengths[] = { 0, 48, 0xffffffffu, 0x80000000u, (uint32_t)len - 11 };
	for (size_t i = 0; i < sizeof bad_lengths / sizeof *bad_lengths; i++) {
		memcpy(b, w.buf, len);
		put32(b + 8, bad_lengths[i]);
		expect_parse(b, len, MAX, -ERR_CORRUPT);
	}
	/* a shorter but still >= 49 length: the CRC no longer matches */
	memcpy(b, w.buf, len);
	put32(b + 8, (uint32_t)len - 13);
	expect_parse(b, len, MAX, -ERR_CORRUPT);
	/* negative records count / lastOffsetDelta, CRC fixed so only the field is wrong */
	memcpy(b, w.buf, len);
	put32(b + 57, 0xffffffffu);
	fix_crc(b, len);
	expect_parse(b, len, MAX, -ERR_CORRUPT);
	memcpy(b, w.buf, len);
	put32(b + 23, 0x80000000u);
	fix_crc(b, len);
	expect_parse(b, len, MAX, -ERR_CORRUPT);
	/* any flipped bit covered by the CRC (attributes .. end) or in the CRC */
	for (size_t i = 17; i < len; i++) {
		memcpy(b, w.buf, len);
		b[i] ^= 0x10;
		expect_parse(b, len, MAX, -ERR_CORRUPT);
	}
	/* the base offset and leader epoch are outside the CRC */
	memcpy(b, w.buf, len);
	b[3] ^= 0xff;
	b[13] ^= 0xff;
	assert_int_equal(record_batch_parse(b, len, MAX, &h), 0);
	/* extra bytes after the batch are not part of it */
	memcpy(b, w.buf, len);
	memset(b + len, 0xab, 16);
	assert_int_equal(record_batch_parse(b, len + 16, MAX, &h), 0);
	assert_int_equal(record_batch_size(&h), len);
	free(b);
	writer_fini(&w);
}

static void test_walk_and_validate_all(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, MAX);
	size_t ends[4];
	for (int i = 0; i < 4; i++) {
		encode_simple(&w, 1000 + i, i + 1);
		ends[i] = w.len;
	}
	struct record_batch_walk walk;
	struct record_batch_header h;
	struct slice b;
	size_t pos;
	record_batch_walk_init(&walk, w.buf, w.len, MAX, 1);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(record_batch_walk_next(&walk, &h, &b, &pos), 1);
		assert_int_equal(pos, i ? ends[i - 1] : 0);
		assert_int_equal(pos + b.len, ends[i]);
		assert_int_equal(h.record_count, i + 1);
	}
	assert_int_equal(record_batch_walk_next(&walk, &h, &b, &pos), 0);

	struct record_batch_set_info info;
	assert_int_equal(record_batch_validate_all(w.buf, w.len, MAX, &info), 0);
	assert_int_equal(info.batches, 4);
	assert_int_equal(info.offsets, 1 + 2 + 3 + 4);
	assert_int_equal(info.max_timestamp, 1003 + 30);

	/* empty, trailing partial batch, trailing garbage byte */
	assert_int_equal(record_batch_validate_all(w.buf, 0, MAX, &info), -ERR_CORRUPT);
	assert_int_equal(record_batch_validate_all(w.buf, w.len - 1, MAX, &info), -ERR_CORRUPT);
	uint8_t *copy = malloc(w.len + 1);
	memcpy(copy, w.buf, w.len);
	copy[w.len] = 0;
	assert_int_equal(record_batch_validate_all(copy, w.len + 1, MAX, &info), -ERR_CORRUPT);
	/* a bad CRC in the third batch fails the whole buffer */
	copy[ends[1] + 70] ^= 1;
	assert_int_equal(record_batch_validate_all(copy, w.len, MAX, &info), -ERR_CORRUPT);
	/* without CRC checks the walk accepts it */
	record_batch_walk_init(&walk, copy, w.len, MAX, 0);
	int n = 0;
	while (record_batch_walk_next(&walk, &h, &b, &pos) == 1)
		n++;
	assert_int_equal(n, 4);
	/* one batch over the cap */
	assert_int_equal(record_batch_validate_all(w.buf, w.len, ends[3] - ends[2] - 1, &info),
			 -ERR_TOO_LARGE);
	free(copy);
	writer_fini(&w);
}

static void test_set_base_offset(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, MAX);
	encode_simple(&w, 1000, 2);
	struct record_batch_header h;
	assert_int_equal(record_batch_set_base_offset(w.buf, w.len, 123456789012LL), 0);
	assert_int_equal(record_batch_parse(w.buf, w.len, MAX, &h), 0);
	assert_int_equal(h.base_offset, 123456789012LL);
	assert_int_equal(record_batch_last_offset(&h), 123456789013LL);
	assert_int_equal(record_batch_set_base_offset(w.buf, 60, 1), -ERR_INVALID);
	writer_fini(&w);
}

static void test_log_append_time(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, MAX);
	encode_simple(&w, 1000, 3);
	uint8_t *orig = malloc(w.len);
	memcpy(orig, w.buf, w.len);
	struct record_batch_header h0, h;
	assert_int_equal(record_batch_parse(orig, w.len, MAX, &h0), 0);

	assert_int_equal(record_batch_set_log_append_time(w.buf, w.len, 987654321), 0);
	assert_int_equal(record_batch_parse(w.buf, w.len, MAX, &h), 0); /* CRC recomputed */
	assert_int_equal(h.attributes & RECORD_BATCH_ATTR_LOG_APPEND_TIME, RECORD_BATCH_ATTR_LOG_APPEND_TIME);
	assert_int_equal(h.max_timestamp, 987654321);
	assert_int_equal(h.base_timestamp, h0.base_timestamp);
	assert_int_not_equal(h.crc, h0.crc);
	/* only attributes, maxTimestamp and the CRC changed */
	for (size_t i = 0; i < w.len; i++) {
		int patched = (i >= 17 && i < 23) || (i >= 35 && i < 43);
		if (!patched)
			assert_int_equal(w.buf[i], orig[i]);
	}
	/* records now carry the append time */
	struct record_batch_iter it;
	struct record_batch_record rec;
	assert_int_equal(record_batch_iter_init(&it, w.buf, w.len), 0);
	while (record_batch_iter_next(&it, &rec) == 1)
		assert_int_equal(rec.timestamp, 987654321);
	/* the length must be the batch's */
	assert_int_equal(record_batch_set_log_append_time(w.buf, w.len - 1, 1), -ERR_INVALID);
	assert_int_equal(record_batch_set_log_append_time(w.buf, 10, 1), -ERR_INVALID);
	free(orig);
	writer_fini(&w);
}

static void test_encode_and_iterate(void **state)
{
	(void)state;
	struct record_batch_kv hdrs[2] = {
		{ sl("h1"), sl("one") },
		{ sl("h2"), { NULL, 0 } },
	};
	struct record_batch_rec recs[4];
	memset(recs, 0, sizeof recs);
	recs[0] = (struct record_batch_rec){ .timestamp_delta = 0, .offset_delta = 0,
		.key = sl("k0"), .value = sl("value zero") };
	recs[1] = (struct record_batch_rec){ .timestamp_delta = -5, .offset_delta = 1,
		.key = { NULL, 0 }, .value = { NULL, 0 }, .headers = hdrs, .header_count = 2 };
	recs[2] = (struct record_batch_rec){ .timestamp_delta = 300, .offset_delta = 2,
		.key = sl(""), .value = sl("") };
	char big[1000];
	memset(big, 'b', sizeof big);
	recs[3] = (struct record_batch_rec){ .timestamp_delta = 70000, .offset_delta = 5,
		.value = { (const uint8_t *)big, sizeof big } };
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.base_offset = 100;
	p.base_timestamp = 1700000000000LL;
	struct writer w;
	writer_init(&w, MAX);
	assert_int_equal(record_batch_encode(&w, &p, recs, 4), 0);

	struct record_batch_header h;
	assert_int_equal(record_batch_parse(w.buf, w.len, MAX, &h), 0);
	assert_int_equal(h.last_offset_delta, 5);
	assert_int_equal(h.max_timestamp, 1700000070000LL);

	struct record_batch_iter it;
	struct record_batch_record rec;
	struct record_batch_kv kv;
	assert_int_equal(record_batch_iter_init(&it, w.buf, w.len), 0);

	assert_int_equal(record_batch_iter_next(&it, &rec), 1);
	assert_int_equal(rec.offset, 100);
	assert_int_equal(rec.timestamp, 1700000000000LL);
	assert_int_equal(rec.key.len, 2);
	assert_memory_equal(rec.key.data, "k0", 2);
	assert_int_equal(rec.value.len, 10);
	assert_memory_equal(rec.value.data, "value zero", 10);
	assert_int_equal(rec.header_count, 0);
	assert_int_equal(record_batch_header_next(&rec, &kv), 0);

	assert_int_equal(record_batch_iter_next(&it, &rec), 1);
	assert_int_equal(rec.offset, 101);
	assert_int_equal(rec.timestamp, 1700000000000LL - 5);
	assert_null(rec.key.data);
	assert_null(rec.value.data);
	assert_int_equal(rec.header_count, 2);
	assert_int_equal(record_batch_header_next(&rec, &kv), 1);
	assert_int_equal(kv.key.len, 2);
	assert_memory_equal(kv.key.data, "h1", 2);
	assert_int_equal(kv.value.len, 3);
	assert_memory_equal(kv.value.data, "one", 3);
	assert_int_equal(record_batch_header_next(&rec, &kv), 1);
	assert_memory_equal(kv.key.data, "h2", 2);
	assert_null(kv.value.data);
	assert_int_equal(record_batch_header_next(&rec, &kv), 0);

	assert_int_equal(record_batch_iter_next(&it, &rec), 1);
	assert_int_equal(rec.offset, 102);
	assert_non_null(rec.key.data); /* empty, not null */
	assert_int_equal(rec.key.len, 0);
	assert_non_null(rec.value.data);
	assert_int_equal(rec.value.len, 0);

	assert_int_equal(record_batch_iter_next(&it, &rec), 1);
	assert_int_equal(rec.offset, 105);
	assert_int_equal(rec.timestamp, 1700000070000LL);
	assert_int_equal(rec.value.len, sizeof big);
	assert_memory_equal(rec.value.data, big, sizeof big);

	assert_int_equal(record_batch_iter_next(&it, &rec), 0);
	assert_int_equal(record_batch_iter_next(&it, &rec), 0);
	writer_fini(&w);
}

static void test_encode_invalid(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, MAX);
	struct record_batch_params p;
	record_batch_params_init(&p);
	struct record_batch_rec recs[2] = { 0 };
	recs[1].offset_delta = 1;
	assert_int_equal(record_batch_encode(&w, &p, recs, 0), -ERR_INVALID);
	p.attributes = 1; /* gzip: not produced by this encoder */
	assert_int_equal(record_batch_encode(&w, &p, recs, 2), -ERR_INVALID);
	p.attributes = 0;
	recs[1].offset_delta = 0; /* not increasing */
	assert_int_equal(record_batch_encode(&w, &p, recs, 2), -ERR_INVALID);
	recs[1].offset_delta = 1;
	recs[0].offset_delta = -1;
	assert_int_equal(record_batch_encode(&w, &p, recs, 2), -ERR_INVALID);
	recs[0].offset_delta = 0;
	struct record_batch_kv nullkey = { { NULL, 0 }, sl("v") };
	recs[0].headers = &nullkey;
	recs[0].header_count = 1;
	assert_int_equal(record_batch_encode(&w, &p, recs, 2), -ERR_INVALID);
	recs[0].header_count = 0;
	assert_int_equal(w.len, 0);

	/* a writer limit too small: the writer's length is restored */
	struct writer small;
	writer_init(&small, 100);
	writer_bytes(&small, "xx", 2);
	char big[200] = { 0 };
	recs[0].value = (struct slice){ (const uint8_t *)big, sizeof big };
	assert_int_equal(record_batch_encode(&small, &p, recs, 2), -ERR_TOO_LARGE);
	assert_int_equal(small.len, 2);
	writer_fini(&small);
	writer_fini(&w);
}

/* Wraps a hand-made records region in a valid header (count, lastOffsetDelta, attributes). */
static size_t wrap(uint8_t *out, const struct writer *records, int32_t count, int32_t last_delta,
		   int16_t attributes)
{
	struct writer w;
	writer_init(&w, MAX);
	writer_i64(&w, 0);
	writer_i32(&w, (int32_t)(49 + records->len));
	writer_i32(&w, -1);
	writer_i8(&w, 2);
	writer_u32(&w, 0);
	writer_i16(&w, attributes);
	writer_i32(&w, last_delta);
	writer_i64(&w, 10);
	writer_i64(&w, 10);
	writer_i64(&w, -1);
	writer_i16(&w, -1);
	writer_i32(&w, -1);
	writer_i32(&w, count);
	writer_bytes(&w, records->buf, records->len);
	assert_int_equal(w.err, 0);
	memcpy(out, w.buf, w.len);
	size_t len = w.len;
	fix_crc(out, len);
	writer_fini(&w);
	return len;
}

/* Writes one record body (length prefix from the body itself). */
static void raw_record(struct writer *w, int32_t offset_delta, int32_t hcount, int hkey_null,
		       int extra)
{
	struct writer body;
	writer_init(&body, MAX);
	writer_i8(&body, 0);
	writer_varlong(&body, 0);
	writer_varint(&body, offset_delta);
	writer_varint(&body, -1);
	writer_varint_bytes(&body, "v", 1);
	writer_varint(&body, hcount);
	for (int i = 0; i < hcount && i < 4; i++) {
		if (hkey_null)
			writer_varint(&body, -1);
		else
			writer_varint_bytes(&body, "k", 1);
		writer_varint_bytes(&body, "x", 1);
	}
	for (int i = 0; i < extra; i++)
		writer_u8(&body, 0);
	writer_varint(w, (int32_t)body.len);
	writer_bytes(w, body.buf, body.len);
	writer_fini(&body);
}

/* Iterates the whole batch; returns the first error or the number of records. */
static int iterate_all(const uint8_t *b, size_t len)
{
	struct record_batch_iter it;
	struct record_batch_record rec;
	struct record_batch_kv kv;
	int rc = record_batch_iter_init(&it, b, len);
	if (rc)
		return rc;
	int n = 0;
	while ((rc = record_batch_iter_next(&it, &rec)) == 1) {
		n++;
		while ((rc = record_batch_header_next(&rec, &kv)) == 1)
			;
		if (rc)
			return rc;
	}
	return rc ? rc : n;
}

static void test_iterate_malformed(void **state)
{
	(void)state;
	uint8_t b[4096];
	struct writer r;
	writer_init(&r, MAX);

	/* a good two-record batch, as a control */
	raw_record(&r, 0, 1, 0, 0);
	raw_record(&r, 1, 0, 0, 0);
	size_t len = wrap(b, &r, 2, 1, 0);
	assert_int_equal(iterate_all(b, len), 2);
	/* compressed batches are not iterated here */
	len = wrap(b, &r, 2, 1, 2);
	assert_int_equal(iterate_all(b, len), -ERR_UNSUPPORTED);
	/* count says more records than there are */
	len = wrap(b, &r, 3, 2, 0);
	assert_int_equal(iterate_all(b, len), -ERR_CORRUPT);
	/* count says fewer: bytes are left over */
	len = wrap(b, &r, 1, 1, 0);
	assert_int_equal(iterate_all(b, len), -ERR_CORRUPT);
	/* offsetDelta beyond lastOffsetDelta */
	len = wrap(b, &r, 2, 0, 0);
	assert_int_equal(iterate_all(b, len), -ERR_CORRUPT);
	/* the buffer shorter than the batch */
	len = wrap(b, &r, 2, 1, 0);
	assert_int_equal(iterate_all(b, len - 1), -ERR_CORRUPT);

	/* negative offset delta, negative header count, null header key, header count
	 * larger than the bytes, bytes left inside a record */
	int cases[][4] = { { -1, 0, 0, 0 }, { 0, -1, 0, 0 }, { 0, 1, 1, 0 }, { 0, 1000, 0, 0 },
			   { 0, 0, 0, 3 } };
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		writer_reset(&r);
		raw_record(&r, cases[i][0], cases[i][1], cases[i][2], cases[i][3]);
		len = wrap(b, &r, 1, 0, 0);
		assert_int_equal(iterate_all(b, len), -ERR_CORRUPT);
	}
	/* a record length running past the region, and a negative one */
	writer_reset(&r);
	writer_varint(&r, 100);
	writer_zeros(&r, 10);
	len = wrap(b, &r, 1, 0, 0);
	assert_int_equal(iterate_all(b, len), -ERR_CORRUPT);
	writer_reset(&r);
	writer_varint(&r, -3);
	writer_zeros(&r, 10);
	len = wrap(b, &r, 1, 0, 0);
	assert_int_equal(iterate_all(b, len), -ERR_CORRUPT);
	/* a varint that never ends */
	writer_reset(&r);
	for (int i = 0; i < 12; i++)
		writer_u8(&r, 0xff);
	len = wrap(b, &r, 1, 0, 0);
	assert_int_equal(iterate_all(b, len), -ERR_CORRUPT);
	writer_fini(&r);
}

/* Random mutations of valid batches never crash the parser or the iterator. */
static void test_mutations_do_not_crash(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, MAX);
	encode_simple(&w, 1000, 5);
	size_t len = w.len;
	uint8_t *b = malloc(len);
	unsigned seed = 12345;
	int parsed_ok = 0;
	for (int iter = 0; iter < 20000; iter++) {
		memcpy(b, w.buf, len);
		int flips = 1 + rand_r(&seed) % 4;
		for (int k = 0; k < flips; k++)
			b[rand_r(&seed) % len] ^= (uint8_t)(1 + rand_r(&seed) % 255);
		size_t n = (iter % 3 == 0) ? (size_t)rand_r(&seed) % (len + 1) : len;
		struct record_batch_header h;
		if (record_batch_parse(b, n, MAX, &h) == 0)
			parsed_ok++;
		fix_crc(b, len);
		(void)iterate_all(b, n);
	}
	/* only flips of the base offset / epoch (outside the CRC) keep a batch valid */
	assert_true(parsed_ok < 20000 / 4);
	free(b);
	writer_fini(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_matches_spec_layout),
		cmocka_unit_test(test_encode_matches_kafka_python),
		cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_walk_and_validate_all),
		cmocka_unit_test(test_set_base_offset),
		cmocka_unit_test(test_log_append_time),
		cmocka_unit_test(test_encode_and_iterate),
		cmocka_unit_test(test_encode_invalid),
		cmocka_unit_test(test_iterate_malformed),
		cmocka_unit_test(test_mutations_do_not_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
