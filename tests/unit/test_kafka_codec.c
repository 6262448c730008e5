/*
 * test_kafka_codec.c: the generated Kafka codec (kafka_msg.h) and its runtime
 * (kafka_codec.c, kafka_arena.c).
 *
 * 1. Every generated message round-trips at every version it supports, once
 *    with every present field set to a non-default value and once with every
 *    nullable field null; test data comes from walking the descriptor tables.
 *    Every strict prefix of each encoding must fail to decode, and every
 *    single-byte corruption must decode or fail cleanly.
 * 2. Byte vectors checked by hand against the Kafka protocol guide, several
 *    also produced by kafka-python 2.0.2's encoders (noted at each).
 * 3. Hostile input: bad counts and lengths, unknown and malformed tagged
 *    fields, the arena cap.
 * 4. Encoder rules: defaults, ignorable fields, null in non-nullable fields.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/reader.h"
#include "core/writer.h"
#include "kafka/kafka_arena.h"
#include "kafka/kafka_codec.h"
#include "kafka/kafka_msg.h"

#define WLIMIT (1u << 20)
#define ACAP (1u << 20)

/* ---- generic test data from the descriptor tables ---- */

enum fill_mode {
	FILL_VALUES, /* every present field non-default, arrays of 2 */
	FILL_NULLS,  /* nullable fields null, arrays of 1 */
};

struct fill {
	struct kafka_arena *arena;
	int16_t v;
	enum fill_mode mode;
	uint32_t seq;
};

static void fill_struct(struct fill *fc, const struct kafka_struct_desc *d, void *obj);

static size_t elem_size(const struct kafka_field *f)
{
	switch (f->type) {
	case KAFKA_T_BOOL: return sizeof(bool);
	case KAFKA_T_INT8: return 1;
	case KAFKA_T_INT16:
	case KAFKA_T_UINT16: return 2;
	case KAFKA_T_INT32:
	case KAFKA_T_UINT32: return 4;
	case KAFKA_T_INT64: return 8;
	case KAFKA_T_FLOAT64: return sizeof(double);
	case KAFKA_T_UUID: return sizeof(struct kafka_uuid);
	case KAFKA_T_STRING:
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS: return sizeof(struct slice);
	case KAFKA_T_STRUCT: return f->sub->size;
	}
	return 0;
}

/* An integer that differs from the field's default and uses high bytes. */
static int64_t some_int(struct fill *fc, const struct kafka_field *f)
{
	int64_t x = (int64_t)fc->seq * 37 + 5;
	if (fc->seq & 1)
		x = -x;
	switch (f->type) {
	case KAFKA_T_INT8: x = (int8_t)x; break;
	case KAFKA_T_INT16: x = (int16_t)(x * 301); break;
	case KAFKA_T_UINT16: x = (uint16_t)(x * 301); break;
	case KAFKA_T_INT32: x = (int32_t)(x * 70001); break;
	case KAFKA_T_UINT32: x = (uint32_t)(x * 70001); break;
	default: x = x * 1000000007LL * 1000; break;
	}
	if (x == f->def_int)
		x ^= 1;
	return x;
}

static struct slice some_text(struct fill *fc, int binary)
{
	char *buf = kafka_arena_alloc(fc->arena, 32);
	assert_non_null(buf);
	int n;
	if (binary) {
		n = (int)(fc->seq % 5) + 1;
		for (int i = 0; i < n; i++)
			buf[i] = (char)(i == 0 ? 0x00 : 0xf0 + i + fc->seq);
	} else {
		n = snprintf(buf, 32, "s%u", (unsigned)fc->seq);
	}
	return (struct slice){ (const uint8_t *)buf, (size_t)n };
}

static void fill_value(struct fill *fc, const struct kafka_field *f, bool nullable, void *p)
{
	fc->seq++;
	switch (f->type) {
	case KAFKA_T_BOOL: *(bool *)p = f->def_int == 0; break;
	case KAFKA_T_INT8: *(int8_t *)p = (int8_t)some_int(fc, f); break;
	case KAFKA_T_INT16: *(int16_t *)p = (int16_t)some_int(fc, f); break;
	case KAFKA_T_UINT16: *(uint16_t *)p = (uint16_t)some_int(fc, f); break;
	case KAFKA_T_INT32: *(int32_t *)p = (int32_t)some_int(fc, f); break;
	case KAFKA_T_UINT32: *(uint32_t *)p = (uint32_t)some_int(fc, f); break;
	case KAFKA_T_INT64: *(int64_t *)p = some_int(fc, f); break;
	case KAFKA_T_FLOAT64: *(double *)p = fc->seq + 0.25; break;
	case KAFKA_T_UUID:
		for (int i = 0; i < 16; i++)
			((struct kafka_uuid *)p)->bytes[i] = (uint8_t)(fc->seq * 16 + i);
		break;
	case KAFKA_T_STRING:
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS:
		if (fc->mode == FILL_NULLS && nullable)
			*(struct slice *)p = (struct slice){ NULL, 0 };
		else
			*(struct slice *)p = some_text(fc, f->type != KAFKA_T_STRING);
		break;
	case KAFKA_T_STRUCT: fill_struct(fc, f->sub, p); break;
	}
}

static void fill_field(struct fill *fc, const struct kafka_field *f, void *obj)
{
	bool nullable = kafka_field_nullable_in(f, fc->v);
	if (!f->is_array) {
		fill_value(fc, f, nullable, (char *)obj + f->offset);
		return;
	}
	if (fc->mode == FILL_NULLS && nullable) {
		*(bool *)((char *)obj + f->null_offset) = true;
		return;
	}
	size_t n = fc->mode == FILL_NULLS ? 1 : 2;
	char *arr = kafka_arena_alloc_array(fc->arena, n, elem_size(f));
	assert_non_null(arr);
	for (size_t i = 0; i < n; i++)
		fill_value(fc, f, false, arr + i * elem_size(f));
	memcpy((char *)obj + f->offset, &arr, sizeof arr);
	*(size_t *)((char *)obj + f->count_offset) = n;
}

static void fill_struct(struct fill *fc, const struct kafka_struct_desc *d, void *obj)
{
	kafka_codec_init(d, obj);
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct kafka_field *f = &d->fields[i];
		if (!kafka_field_regular_in(f, fc->v) && !kafka_field_tagged_in(f, fc->v))
			continue;
		fill_field(fc, f, obj);
		if (fc->mode == FILL_VALUES && !kafka_codec_field_is_default(f, obj)) {
			continue;
		} else if (fc->mode == FILL_VALUES) {
			print_error("fill left %s.%s at its default\n", d->name, f->name);
			fail();
		}
	}
}

/* ---- deep comparison ---- */

static bool struct_eq(const struct kafka_struct_desc *d, const void *a, const void *b,
	const char *path);

static bool slice_eq(struct slice x, struct slice y)
{
	if ((x.data == NULL) != (y.data == NULL) || x.len != y.len)
		return false;
	return x.len == 0 || memcmp(x.data, y.data, x.len) == 0;
}

static bool value_eq(const struct kafka_field *f, const void *a, const void *b, const char *path)
{
	switch (f->type) {
	case KAFKA_T_BOOL: return *(const bool *)a == *(const bool *)b;
	case KAFKA_T_STRING:
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS: return slice_eq(*(const struct slice *)a, *(const struct slice *)b);
	case KAFKA_T_STRUCT: return struct_eq(f->sub, a, b, path);
	default: return memcmp(a, b, elem_size(f)) == 0;
	}
}

static bool struct_eq(const struct kafka_struct_desc *d, const void *a, const void *b,
	const char *path)
{
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct kafka_field *f = &d->fields[i];
		const char *pa = (const char *)a + f->offset;
		const char *pb = (const char *)b + f->offset;
		bool ok;
		if (f->is_array) {
			size_t na = *(const size_t *)((const char *)a + f->count_offset);
			size_t nb = *(const size_t *)((const char *)b + f->count_offset);
			ok = na == nb;
			if (ok && f->null_offset)
				ok = *(const bool *)((const char *)a + f->null_offset) ==
					*(const bool *)((const char *)b + f->null_offset);
			const char *ea, *eb;
			memcpy(&ea, pa, sizeof ea);
			memcpy(&eb, pb, sizeof eb);
			for (size_t j = 0; ok && j < na; j++)
				ok = value_eq(f, ea + j * elem_size(f), eb + j * elem_size(f), path);
		} else {
			ok = value_eq(f, pa, pb, path);
		}
		if (!ok) {
			print_error("%s: %s.%s differs\n", path, d->name, f->name);
			return false;
		}
	}
	return true;
}

/* ---- 1. round trips and truncations ---- */

/* Every generated message: requests and responses via the API table, then
 * the headers and data schemas. */
static size_t all_msgs(const struct kafka_msg_desc **out, size_t max)
{
	size_t n = 0;
	for (int16_t k = 0; k <= KAFKA_API_KEY_MAX; k++) {
		const struct kafka_api *api = kafka_api_find(k);
		if (api && api->request && n + 2 <= max) {
			out[n++] = api->request;
			out[n++] = api->response;
		}
	}
	const struct kafka_msg_desc *extra[] = {
		&kafka_request_header_desc, &kafka_response_header_desc,
		&kafka_consumer_protocol_subscription_desc, &kafka_consumer_protocol_assignment_desc,
	};
	for (size_t i = 0; i < sizeof extra / sizeof extra[0] && n < max; i++)
		out[n++] = extra[i];
	return n;
}

/* Encodes a filled message, decodes it, compares, re-encodes; then checks that
 * every strict prefix fails. Returns the encoded length. */
static size_t round_trip(const struct kafka_msg_desc *m, int16_t v, enum fill_mode mode)
{
	char path[96];
	snprintf(path, sizeof path, "%s v%d %s", m->name, v, mode == FILL_VALUES ? "values" : "nulls");
	struct kafka_arena a, b;
	kafka_arena_init(&a, ACAP);
	kafka_arena_init(&b, ACAP);
	void *in = calloc(1, m->body->size);
	void *out = calloc(1, m->body->size);
	assert_non_null(in);
	assert_non_null(out);
	struct fill fc = { &a, v, mode, (uint32_t)v * 1000 };
	fill_struct(&fc, m->body, in);

	struct writer w, w2;
	writer_init(&w, WLIMIT);
	writer_init(&w2, WLIMIT);
	int rc = kafka_codec_encode(m, &w, v, in);
	if (rc)
		print_error("%s: encode: %s\n", path, err_str(rc));
	assert_int_equal(rc, 0);

	static const uint8_t empty[1];
	const uint8_t *buf = w.len ? w.buf : empty;
	struct reader r;
	reader_init(&r, buf, w.len);
	rc = kafka_codec_decode(m, &r, v, &b, out);
	if (rc)
		print_error("%s: decode: %s at %zu\n", path, err_str(rc), reader_offset(&r));
	assert_int_equal(rc, 0);
	assert_int_equal(reader_remaining(&r), 0);
	assert_true(struct_eq(m->body, in, out, path));

	assert_int_equal(kafka_codec_encode(m, &w2, v, out), 0);
	assert_int_equal(w2.len, w.len);
	if (w.len)
		assert_memory_equal(w2.buf, w.buf, w.len);

	for (size_t len = 0; len < w.len; len++) {
		kafka_arena_reset(&b);
		reader_init(&r, buf, len);
		rc = kafka_codec_decode(m, &r, v, &b, out);
		if (rc == 0)
			print_error("%s: prefix of %zu/%zu bytes decoded\n", path, len, w.len);
		assert_int_not_equal(rc, 0);
	}
	/* Single-byte corruptions: each decodes or fails cleanly (ASan watches),
	 * and whatever decodes must encode again. */
	uint8_t *mut = malloc(w.len ? w.len : 1);
	assert_non_null(mut);
	static const uint8_t vals[] = { 0x00, 0x01, 0x7f, 0x80, 0xff };
	for (size_t pos = 0; pos < w.len; pos++) {
		for (size_t k = 0; k < sizeof vals; k++) {
			memcpy(mut, w.buf, w.len);
			mut[pos] = vals[k];
			kafka_arena_reset(&b);
			reader_init(&r, mut, w.len);
			rc = kafka_codec_decode(m, &r, v, &b, out);
			assert_true(rc == 0 || rc == -ERR_MALFORMED || rc == -ERR_TOO_LARGE);
			if (rc == 0) {
				writer_reset(&w2);
				assert_int_equal(kafka_codec_encode(m, &w2, v, out), 0);
			}
		}
	}
	free(mut);
	size_t len = w.len;
	writer_fini(&w);
	writer_fini(&w2);
	free(in);
	free(out);
	kafka_arena_fini(&a);
	kafka_arena_fini(&b);
	return len;
}

static void test_round_trip_all(void **state)
{
	(void)state;
	const struct kafka_msg_desc *msgs[128];
	size_t n = all_msgs(msgs, 128);
	assert_int_equal(n, 21 * 2 + 4);
	size_t versions = 0, bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const struct kafka_msg_desc *m = msgs[i];
		for (int16_t v = m->min_version; v <= m->max_version; v++) {
			bytes += round_trip(m, v, FILL_VALUES);
			bytes += round_trip(m, v, FILL_NULLS);
			versions++;
		}
	}
	/* 21 APIs x 2 plus headers and data schemas, every version. */
	assert_true(versions > 300);
	print_message("round-tripped %zu message versions, %zu bytes\n", versions, bytes);
}

/* ---- 2. hand-checked byte vectors ---- */

/* Decodes a whole buffer; bytes left over count as malformed. */
static int decode_all(const struct kafka_msg_desc *m, const uint8_t *buf, size_t len,
	int16_t v, struct kafka_arena *a, void *out)
{
	struct reader r;
	reader_init(&r, buf, len);
	int rc = kafka_codec_decode(m, &r, v, a, out);
	if (rc == 0 && reader_remaining(&r) != 0)
		return -ERR_MALFORMED;
	return rc;
}

static void assert_encodes(const struct kafka_msg_desc *m, int16_t v, const void *in,
	const uint8_t *want, size_t want_len)
{
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(kafka_codec_encode(m, &w, v, in), 0);
	assert_int_equal(w.len, want_len);
	if (want_len)
		assert_memory_equal(w.buf, want, want_len);
	writer_fini(&w);
}

static bool str_is(struct slice s, const char *text)
{
	return s.data && s.len == strlen(text) && memcmp(s.data, text, s.len) == 0;
}

static void test_request_header_vectors(void **state)
{
	(void)state;
	struct kafka_request_header h;
	/* v1 (kafka-python 2.0.2: Metadata v1, correlation 7, client "kp"). */
	static const uint8_t v1[] = { 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07,
		0x00, 0x02, 'k', 'p' };
	assert_int_equal(decode_all(&kafka_request_header_desc, v1, sizeof v1, 1, NULL, &h), 0);
	assert_int_equal(h.request_api_key, KAFKA_API_METADATA);
	assert_int_equal(h.request_api_version, 1);
	assert_int_equal(h.correlation_id, 7);
	assert_true(str_is(h.client_id, "kp"));
	assert_encodes(&kafka_request_header_desc, 1, &h, v1, sizeof v1);

	/* v1 with a null client id (i16 -1). */
	static const uint8_t v1null[] = { 0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
		0xff, 0xff };
	assert_int_equal(decode_all(&kafka_request_header_desc, v1null, sizeof v1null, 1, NULL,
		&h), 0);
	assert_null(h.client_id.data);
	assert_encodes(&kafka_request_header_desc, 1, &h, v1null, sizeof v1null);

	/* v2: ClientId keeps its i16 length ("flexibleVersions": "none"), then an
	 * empty tagged-field section. */
	static const uint8_t v2[] = { 0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x2a,
		0x00, 0x07, 'r', 'd', 'k', 'a', 'f', 'k', 'a', 0x00 };
	assert_int_equal(decode_all(&kafka_request_header_desc, v2, sizeof v2, 2, NULL, &h), 0);
	assert_int_equal(h.request_api_key, KAFKA_API_API_VERSIONS);
	assert_int_equal(h.request_api_version, 3);
	assert_int_equal(h.correlation_id, 42);
	assert_true(str_is(h.client_id, "rdkafka"));
	assert_encodes(&kafka_request_header_desc, 2, &h, v2, sizeof v2);

	/* v0 has no client id: it takes the schema default, "" (not null). */
	assert_int_equal(decode_all(&kafka_request_header_desc, v2, 8, 0, NULL, &h), 0);
	assert_true(str_is(h.client_id, ""));

	/* ResponseHeader v0 and v1. */
	struct kafka_response_header rh;
	kafka_response_header_init(&rh);
	rh.correlation_id = 0x01020304;
	static const uint8_t r0[] = { 0x01, 0x02, 0x03, 0x04 };
	static const uint8_t r1[] = { 0x01, 0x02, 0x03, 0x04, 0x00 };
	assert_encodes(&kafka_response_header_desc, 0, &rh, r0, sizeof r0);
	assert_encodes(&kafka_response_header_desc, 1, &rh, r1, sizeof r1);
}

static void test_api_versions_vectors(void **state)
{
	(void)state;
	struct kafka_arena a;
	kafka_arena_init(&a, ACAP);
	struct kafka_request_header h;
	struct kafka_api_versions_request req;

	/* A full v0 request as kafka-python sends it: header v1, empty body. */
	static const uint8_t v0[] = { 0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
		0x00, 0x02, 'k', 'p' };
	struct reader r;
	reader_init(&r, v0, sizeof v0);
	assert_int_equal(kafka_request_header_decode(&r, 1, NULL, &h), 0);
	assert_int_equal(kafka_request_header_version(h.request_api_key, h.request_api_version), 1);
	assert_int_equal(kafka_api_versions_request_decode(&r, 0, &a, &req), 0);
	assert_int_equal(reader_remaining(&r), 0);
	assert_true(str_is(req.client_software_name, "")); /* default, absent in v0 */
	assert_encodes(&kafka_api_versions_request_desc, 0, &req, NULL, 0);

	/* v3 as librdkafka sends it: header v2, then compact strings and tags. */
	static const uint8_t v3[] = { 0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,
		0x00, 0x07, 'r', 'd', 'k', 'a', 'f', 'k', 'a', 0x00,
		0x0b, 'l', 'i', 'b', 'r', 'd', 'k', 'a', 'f', 'k', 'a',
		0x06, '2', '.', '0', '.', '2', 0x00 };
	reader_init(&r, v3, sizeof v3);
	assert_int_equal(kafka_request_header_decode(&r, 1, NULL, &h), 0);
	int16_t hv = kafka_request_header_version(h.request_api_key, h.request_api_version);
	assert_int_equal(hv, 2);
	reader_init(&r, v3, sizeof v3);
	assert_int_equal(kafka_request_header_decode(&r, hv, NULL, &h), 0);
	assert_int_equal(kafka_api_versions_request_decode(&r, 3, &a, &req), 0);
	assert_int_equal(reader_remaining(&r), 0);
	assert_true(str_is(req.client_software_name, "librdkafka"));
	assert_true(str_is(req.client_software_version, "2.0.2"));
	assert_encodes(&kafka_api_versions_request_desc, 3, &req, v3 + 18, sizeof v3 - 18);

	/* A v3 response: one api key, throttle 0, FinalizedFeaturesEpoch (tag 1)
	 * and ZkMigrationReady (tag 3) set. */
	struct kafka_api_versions_response resp;
	kafka_api_versions_response_init(&resp);
	struct kafka_api_versions_response_api_version key;
	kafka_api_versions_response_api_version_init(&key);
	key.api_key = 18;
	key.min_version = 0;
	key.max_version = 3;
	resp.api_keys = &key;
	resp.api_keys_count = 1;
	resp.finalized_features_epoch = 5;
	resp.zk_migration_ready = true;
	static const uint8_t rv3[] = { 0x00, 0x00, 0x02, 0x00, 0x12, 0x00, 0x00, 0x00, 0x03,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x08,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x03, 0x01, 0x01 };
	assert_encodes(&kafka_api_versions_response_desc, 3, &resp, rv3, sizeof rv3);
	/* v0 of the same: no throttle, no tags; the tagged fields are ignorable. */
	static const uint8_t rv0[] = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12,
		0x00, 0x00, 0x00, 0x03 };
	assert_encodes(&kafka_api_versions_response_desc, 0, &resp, rv0, sizeof rv0);
	assert_int_equal(kafka_response_header_version(KAFKA_API_API_VERSIONS, 3), 0);
	kafka_arena_fini(&a);
}

static void test_metadata_v1_vectors(void **state)
{
	(void)state;
	struct kafka_arena a;
	kafka_arena_init(&a, ACAP);
	struct kafka_metadata_request req;
	/* kafka-python 2.0.2: MetadataRequest[1](topics=['foo', 'bar']). */
	static const uint8_t two[] = { 0x00, 0x00, 0x00, 0x02, 0x00, 0x03, 'f', 'o', 'o',
		0x00, 0x03, 'b', 'a', 'r' };
	assert_int_equal(decode_all(&kafka_metadata_request_desc, two, sizeof two, 1, &a, &req), 0);
	assert_false(req.topics_null);
	assert_int_equal(req.topics_count, 2);
	assert_true(str_is(req.topics[0].name, "foo"));
	assert_true(str_is(req.topics[1].name, "bar"));
	assert_true(req.allow_auto_topic_creation); /* v4+, default true */
	assert_encodes(&kafka_metadata_request_desc, 1, &req, two, sizeof two);

	/* kafka-python: topics=None (all topics) is a null array from v1 on... */
	static const uint8_t all[] = { 0xff, 0xff, 0xff, 0xff };
	assert_int_equal(decode_all(&kafka_metadata_request_desc, all, sizeof all, 1, &a, &req), 0);
	assert_true(req.topics_null);
	assert_int_equal(req.topics_count, 0);
	assert_encodes(&kafka_metadata_request_desc, 1, &req, all, sizeof all);
	/* ...but not in v0, where null is not allowed either way. */
	assert_int_equal(decode_all(&kafka_metadata_request_desc, all, sizeof all, 0, &a, &req),
		-ERR_MALFORMED);
	struct writer w;
	writer_init(&w, WLIMIT);
	kafka_metadata_request_init(&req);
	req.topics_null = true;
	assert_int_equal(kafka_metadata_request_encode(&w, 0, &req), -ERR_INVALID);
	assert_int_equal(w.len, 0);
	writer_fini(&w);

	/* The same two topics at v9 (flexible) and v10 (topic ids). */
	static const uint8_t v9[] = { 0x03, 0x04, 'f', 'o', 'o', 0x00, 0x04, 'b', 'a', 'r', 0x00,
		0x01, 0x00, 0x00, 0x00 };
	assert_int_equal(decode_all(&kafka_metadata_request_desc, two, sizeof two, 1, &a, &req), 0);
	assert_encodes(&kafka_metadata_request_desc, 9, &req, v9, sizeof v9);
	kafka_arena_fini(&a);
}

static void test_kafka_python_vectors(void **state)
{
	(void)state;
	struct kafka_arena a;
	kafka_arena_init(&a, ACAP);

	/* ProduceRequest[3](None, -1, 30000, [('t', [(0, b'\1\2\3')])]). */
	static const uint8_t produce3[] = { 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x75, 0x30,
		0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 't', 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x01, 0x02, 0x03 };
	struct kafka_produce_request p;
	assert_int_equal(decode_all(&kafka_produce_request_desc, produce3, sizeof produce3, 3,
		&a, &p), 0);
	assert_null(p.transactional_id.data);
	assert_int_equal(p.acks, -1);
	assert_int_equal(p.timeout_ms, 30000);
	assert_int_equal(p.topic_data_count, 1);
	assert_true(str_is(p.topic_data[0].name, "t"));
	assert_int_equal(p.topic_data[0].partition_data_count, 1);
	struct slice rec = p.topic_data[0].partition_data[0].records;
	assert_int_equal(rec.len, 3);
	assert_ptr_equal(rec.data, produce3 + sizeof produce3 - 3); /* borrowed, not copied */
	assert_encodes(&kafka_produce_request_desc, 3, &p, produce3, sizeof produce3);

	/* FetchRequest[4](-1, 500, 1, 52428800, 1, [('t', [(0, 42, 1048576)])]). */
	static const uint8_t fetch4[] = { 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0xf4,
		0x00, 0x00, 0x00, 0x01, 0x03, 0x20, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 't', 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,
		0x00, 0x10, 0x00, 0x00 };
	struct kafka_fetch_request f;
	assert_int_equal(decode_all(&kafka_fetch_request_desc, fetch4, sizeof fetch4, 4, &a, &f),
		0);
	assert_int_equal(f.replica_id, -1);
	assert_int_equal(f.max_wait_ms, 500);
	assert_int_equal(f.min_bytes, 1);
	assert_int_equal(f.max_bytes, 52428800);
	assert_int_equal(f.isolation_level, 1);
	assert_int_equal(f.session_epoch, -1);     /* v7+, default -1 */
	assert_int_equal(f.topics[0].partitions[0].fetch_offset, 42);
	assert_int_equal(f.topics[0].partitions[0].partition_max_bytes, 1048576);
	assert_int_equal(f.topics[0].partitions[0].log_start_offset, -1);
	assert_encodes(&kafka_fetch_request_desc, 4, &f, fetch4, sizeof fetch4);
	/* A v2 request has no MaxBytes: it takes its default. */
	static const uint8_t fetch2[] = { 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0xf4,
		0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00 };
	assert_int_equal(decode_all(&kafka_fetch_request_desc, fetch2, sizeof fetch2, 2, &a, &f),
		0);
	assert_int_equal(f.max_bytes, 0x7fffffff);

	/* JoinGroupRequest[2]('g', 10000, 300000, '', 'consumer', [('range', b'\0\1')]). */
	static const uint8_t join2[] = { 0x00, 0x01, 'g', 0x00, 0x00, 0x27, 0x10,
		0x00, 0x04, 0x93, 0xe0, 0x00, 0x00,
		0x00, 0x08, 'c', 'o', 'n', 's', 'u', 'm', 'e', 'r', 0x00, 0x00, 0x00, 0x01,
		0x00, 0x05, 'r', 'a', 'n', 'g', 'e', 0x00, 0x00, 0x00, 0x02, 0x00, 0x01 };
	struct kafka_join_group_request j;
	assert_int_equal(decode_all(&kafka_join_group_request_desc, join2, sizeof join2, 2, &a,
		&j), 0);
	assert_true(str_is(j.group_id, "g"));
	assert_int_equal(j.session_timeout_ms, 10000);
	assert_int_equal(j.rebalance_timeout_ms, 300000);
	assert_true(str_is(j.member_id, ""));
	assert_non_null(j.member_id.data); /* empty, not null */
	assert_null(j.group_instance_id.data); /* v5+, default null */
	assert_true(str_is(j.protocols[0].name, "range"));
	assert_int_equal(j.protocols[0].metadata.len, 2);
	assert_encodes(&kafka_join_group_request_desc, 2, &j, join2, sizeof join2);
	kafka_arena_fini(&a);
}

static void test_offset_fetch_v7_vectors(void **state)
{
	(void)state;
	/* OffsetFetch v6-7 is the flexible request on librdkafka's consumer path. */
	struct kafka_arena a;
	kafka_arena_init(&a, ACAP);
	static const uint8_t req7[] = { 0x02, 'g', 0x02, 0x02, 't',
		0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00 };
	struct kafka_offset_fetch_request req;
	assert_int_equal(decode_all(&kafka_offset_fetch_request_desc, req7, sizeof req7, 7, &a,
		&req), 0);
	assert_true(str_is(req.group_id, "g"));
	assert_int_equal(req.topics_count, 1);
	assert_true(str_is(req.topics[0].name, "t"));
	assert_int_equal(req.topics[0].partition_indexes_count, 2);
	assert_int_equal(req.topics[0].partition_indexes[1], 1);
	assert_true(req.require_stable);
	assert_int_equal(req.groups_count, 0); /* v8+ */
	assert_encodes(&kafka_offset_fetch_request_desc, 7, &req, req7, sizeof req7);
	/* Null topics (all committed offsets) are a compact 0. */
	static const uint8_t all7[] = { 0x02, 'g', 0x00, 0x00, 0x00 };
	assert_int_equal(decode_all(&kafka_offset_fetch_request_desc, all7, sizeof all7, 7, &a,
		&req), 0);
	assert_true(req.topics_null);

	struct kafka_offset_fetch_response resp;
	kafka_offset_fetch_response_init(&resp);
	struct kafka_offset_fetch_response_topic t;
	kafka_offset_fetch_response_topic_init(&t);
	struct kafka_offset_fetch_response_partition p;
	kafka_offset_fetch_response_partition_init(&p);
	assert_int_equal(p.committed_leader_epoch, -1);
	p.committed_offset = 42;
	p.metadata = (struct slice){ NULL, 0 };
	t.name = (struct slice){ (const uint8_t *)"t", 1 };
	t.partitions = &p;
	t.partitions_count = 1;
	resp.topics = &t;
	resp.topics_count = 1;
	static const uint8_t resp7[] = { 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 't', 0x02,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,
		0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
	assert_encodes(&kafka_offset_fetch_response_desc, 7, &resp, resp7, sizeof resp7);
	kafka_arena_fini(&a);
}

/* ---- 3. hostile input ---- */

static void test_hostile_counts(void **state)
{
	(void)state;
	struct kafka_arena a;
	kafka_arena_init(&a, ACAP);
	struct kafka_metadata_request mr;
	struct kafka_produce_request pr;

	static const uint8_t minus2[] = { 0xff, 0xff, 0xff, 0xfe, 0x00, 0x01, 'x' };
	static const uint8_t huge[] = { 0x7f, 0xff, 0xff, 0xff, 0x00, 0x01, 'x' };
	for (int16_t v = 1; v <= 8; v++) {
		assert_int_equal(decode_all(&kafka_metadata_request_desc, minus2, sizeof minus2, v,
			&a, &mr), -ERR_MALFORMED);
		assert_int_equal(decode_all(&kafka_metadata_request_desc, huge, sizeof huge, v, &a,
			&mr), -ERR_MALFORMED);
	}
	/* Compact: uvarint 0xffffffff (count 0xfffffffe) and 0x80000000. */
	static const uint8_t chuge[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x02, 'x', 0x00 };
	static const uint8_t chuge2[] = { 0x80, 0x80, 0x80, 0x80, 0x08, 0x02, 'x', 0x00 };
	assert_int_equal(decode_all(&kafka_metadata_request_desc, chuge, sizeof chuge, 9, &a, &mr),
		-ERR_MALFORMED);
	assert_int_equal(decode_all(&kafka_metadata_request_desc, chuge2, sizeof chuge2, 9, &a,
		&mr), -ERR_MALFORMED);
	/* A 6-byte varint is not a varint. */
	static const uint8_t longvar[] = { 0x81, 0x80, 0x80, 0x80, 0x80, 0x00 };
	assert_int_equal(decode_all(&kafka_metadata_request_desc, longvar, sizeof longvar, 9, &a,
		&mr), -ERR_MALFORMED);
	/* Each element needs >= 2 bytes (a string length): 3 topics cannot fit in 5. */
	static const uint8_t three[] = { 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00 };
	assert_int_equal(decode_all(&kafka_metadata_request_desc, three, sizeof three, 1, &a, &mr),
		-ERR_MALFORMED);
	assert_int_equal(a.held, 0); /* no count sized an allocation */

	/* Null where the schema forbids it: Produce TopicData (-1, compact 0). */
	static const uint8_t pnull[] = { 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, 0xff, 0xff, 0xff, 0xff };
	assert_int_equal(decode_all(&kafka_produce_request_desc, pnull, sizeof pnull, 0, &a, &pr),
		-ERR_MALFORMED);
	static const uint8_t pcnull[] = { 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00 };
	assert_int_equal(decode_all(&kafka_produce_request_desc, pcnull, sizeof pcnull, 9, &a, &pr),
		-ERR_MALFORMED);
	/* Strings: length -2, null where not nullable, longer than the frame. */
	static const uint8_t sneg[] = { 0x00, 0x00, 0x00, 0x01, 0xff, 0xfe };
	static const uint8_t snull[] = { 0x00, 0x00, 0x00, 0x01, 0xff, 0xff };
	static const uint8_t slong[] = { 0x00, 0x00, 0x00, 0x01, 0x7f, 0xff, 'a' };
	assert_int_equal(decode_all(&kafka_metadata_request_desc, sneg, sizeof sneg, 1, &a, &mr),
		-ERR_MALFORMED);
	assert_int_equal(decode_all(&kafka_metadata_request_desc, snull, sizeof snull, 1, &a, &mr),
		-ERR_MALFORMED);
	assert_int_equal(decode_all(&kafka_metadata_request_desc, slong, sizeof slong, 1, &a, &mr),
		-ERR_MALFORMED);
	/* A compact string longer than Kafka's 32767 limit, though all there. */
	size_t biglen = 2 + 3 + 0x8000 + 1 + 4;
	uint8_t *big = calloc(1, biglen);
	assert_non_null(big);
	big[0] = 0x02;                               /* one topic */
	big[1] = 0x81, big[2] = 0x80, big[3] = 0x02; /* length 0x8000 + 1 */
	memset(big + 4, 'x', 0x8000);
	assert_int_equal(decode_all(&kafka_metadata_request_desc, big, biglen - 1, 9, &a, &mr),
		-ERR_MALFORMED);
	big[3] = 0x01;                               /* 0x4000: fine */
	memset(big + 4 + 0x4000, 0, 5);
	assert_int_equal(decode_all(&kafka_metadata_request_desc, big, 4 + 0x4000 + 1 + 4, 9, &a,
		&mr), 0);
	assert_int_equal(mr.topics[0].name.len, 0x4000);
	free(big);
	kafka_arena_reset(&a);
	/* Records with a length past the end, and with -2. */
	static const uint8_t rlong[] = { 0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10,
		0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 't', 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0x01 };
	assert_int_equal(decode_all(&kafka_produce_request_desc, rlong, sizeof rlong, 3, &a, &pr),
		-ERR_MALFORMED);
	uint8_t rneg[sizeof rlong];
	memcpy(rneg, rlong, sizeof rneg);
	rneg[23] = 0xff, rneg[24] = 0xff, rneg[25] = 0xff, rneg[26] = 0xfe;
	assert_int_equal(decode_all(&kafka_produce_request_desc, rneg, sizeof rneg, 3, &a, &pr),
		-ERR_MALFORMED);
	/* Versions the schema does not define. */
	assert_int_equal(decode_all(&kafka_produce_request_desc, rlong, sizeof rlong, 12, &a, &pr),
		-ERR_UNSUPPORTED);
	assert_int_equal(decode_all(&kafka_produce_request_desc, rlong, sizeof rlong, -1, &a, &pr),
		-ERR_UNSUPPORTED);
	kafka_arena_fini(&a);
}

static void test_tagged_fields(void **state)
{
	(void)state;
	struct kafka_arena a;
	kafka_arena_init(&a, ACAP);
	struct kafka_api_versions_response resp;
	/* ApiVersions v3 response. The ApiVersion element carries an unknown tag 5
	 * (1 byte); the body has unknown tag 0x90 (2-byte varint, 3 bytes), known
	 * tag 1 (FinalizedFeaturesEpoch = 7) and unknown tag 9 (0 bytes). */
	static const uint8_t in[] = { 0x00, 0x00,
		0x02, 0x00, 0x12, 0x00, 0x00, 0x00, 0x03, 0x01, 0x05, 0x01, 0xee,
		0x00, 0x00, 0x00, 0x00,
		0x03, 0x90, 0x01, 0x03, 0xaa, 0xbb, 0xcc,
		0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
		0x09, 0x00 };
	assert_int_equal(decode_all(&kafka_api_versions_response_desc, in, sizeof in, 3, &a, &resp),
		0);
	assert_int_equal(resp.api_keys_count, 1);
	assert_int_equal(resp.api_keys[0].max_version, 3);
	assert_int_equal(resp.finalized_features_epoch, 7);
	assert_false(resp.zk_migration_ready);
	assert_int_equal(resp.supported_features_count, 0);
	/* Re-encoding keeps the known tag and drops the unknown ones. */
	static const uint8_t out[] = { 0x00, 0x00,
		0x02, 0x00, 0x12, 0x00, 0x00, 0x00, 0x03, 0x00,
		0x00, 0x00, 0x00, 0x00,
		0x01, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07 };
	assert_encodes(&kafka_api_versions_response_desc, 3, &resp, out, sizeof out);

	/* A tag whose size runs past the end. */
	uint8_t bad[sizeof out];
	memcpy(bad, out, sizeof bad);
	bad[16] = 0x09;
	assert_int_equal(decode_all(&kafka_api_versions_response_desc, bad, sizeof bad, 3, &a,
		&resp), -ERR_MALFORMED);
	/* A known tag whose declared size is too small for its int64. */
	static const uint8_t shorttag[] = { 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
		0x01, 0x01, 0x04, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00 };
	assert_int_equal(decode_all(&kafka_api_versions_response_desc, shorttag, sizeof shorttag,
		3, &a, &resp), -ERR_MALFORMED);
	/* A huge tag count with nothing behind it ends at the end of the frame. */
	static const uint8_t many[] = { 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
		0xff, 0xff, 0xff, 0xff, 0x0f, 0x09, 0x00 };
	assert_int_equal(decode_all(&kafka_api_versions_response_desc, many, sizeof many, 3, &a,
		&resp), -ERR_MALFORMED);
	/* Tagged struct (FetchResponse CurrentLeader, tag 1) nested in an array. */
	struct kafka_fetch_response fr;
	kafka_fetch_response_init(&fr);
	struct kafka_fetch_response_fetchable_topic_response topic;
	kafka_fetch_response_fetchable_topic_response_init(&topic);
	struct kafka_fetch_response_partition_data part;
	kafka_fetch_response_partition_data_init(&part);
	part.current_leader.leader_id = 3;
	topic.partitions = &part;
	topic.partitions_count = 1;
	fr.responses = &topic;
	fr.responses_count = 1;
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(kafka_fetch_response_encode(&w, 12, &fr), 0);
	struct kafka_fetch_response back;
	assert_int_equal(decode_all(&kafka_fetch_response_desc, w.buf, w.len, 12, &a, &back), 0);
	assert_int_equal(back.responses[0].partitions[0].current_leader.leader_id, 3);
	assert_int_equal(back.responses[0].partitions[0].current_leader.leader_epoch, -1);
	assert_int_equal(back.responses[0].partitions[0].diverging_epoch.epoch, -1);
	/* Not representable before v12: CurrentLeader is not ignorable. */
	writer_reset(&w);
	assert_int_equal(kafka_fetch_response_encode(&w, 11, &fr), -ERR_UNSUPPORTED);
	writer_fini(&w);
	kafka_arena_fini(&a);
}

static void test_arena_cap(void **state)
{
	(void)state;
	/* A Metadata v1 request naming 200 one-letter topics (600 bytes on the
	 * wire, ~200 x sizeof(struct kafka_metadata_request_topic) decoded). */
	enum { N = 200 };
	uint8_t buf[4 + N * 3];
	buf[0] = 0, buf[1] = 0, buf[2] = 0, buf[3] = N;
	for (int i = 0; i < N; i++) {
		buf[4 + i * 3] = 0;
		buf[5 + i * 3] = 1;
		buf[6 + i * 3] = (uint8_t)('a' + i % 26);
	}
	size_t need = N * sizeof(struct kafka_metadata_request_topic);
	struct kafka_metadata_request mr;
	struct kafka_arena a;
	kafka_arena_init(&a, need / 2);
	assert_int_equal(decode_all(&kafka_metadata_request_desc, buf, sizeof buf, 1, &a, &mr),
		-ERR_TOO_LARGE);
	assert_true(a.held <= need / 2);
	kafka_arena_fini(&a);
	kafka_arena_init(&a, need + 64);
	assert_int_equal(decode_all(&kafka_metadata_request_desc, buf, sizeof buf, 1, &a, &mr), 0);
	assert_int_equal(mr.topics_count, N);
	assert_int_equal(mr.topics[N - 1].name.data[0], 'a' + (N - 1) % 26);
	assert_true(a.held <= need + 64);
	kafka_arena_fini(&a);
}

static void test_arena(void **state)
{
	(void)state;
	struct kafka_arena a;
	kafka_arena_init(&a, 1 << 16);
	char *p = kafka_arena_alloc(&a, 3);
	char *q = kafka_arena_alloc(&a, 5);
	assert_non_null(p);
	assert_non_null(q);
	assert_int_equal((uintptr_t)q % _Alignof(max_align_t), 0);
	assert_true(q >= p + 3);
	/* Bigger than a block, and more blocks until the cap. */
	assert_non_null(kafka_arena_alloc(&a, 10000));
	while (kafka_arena_alloc(&a, 1000))
		;
	assert_int_equal(a.err, -ERR_TOO_LARGE);
	assert_true(a.held <= 1 << 16);
	/* Overflowing n * size. */
	kafka_arena_reset(&a);
	assert_int_equal(a.err, 0);
	assert_true(a.held <= 1 << 16);
	assert_null(kafka_arena_alloc_array(&a, SIZE_MAX / 2, 4));
	assert_int_equal(a.err, -ERR_TOO_LARGE);
	assert_null(kafka_arena_alloc(&a, SIZE_MAX));
	/* Reset keeps one block and memory is reusable. */
	kafka_arena_reset(&a);
	size_t held = a.held;
	assert_non_null(kafka_arena_alloc(&a, 16));
	assert_int_equal(a.held, held);
	kafka_arena_fini(&a);
	assert_int_equal(a.held, 0);
}

/* ---- 4. encoder rules ---- */

static void test_encode_rules(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, WLIMIT);
	struct kafka_metadata_response mr;
	kafka_metadata_response_init(&mr);
	assert_int_equal(mr.controller_id, -1);
	assert_null(mr.cluster_id.data);
	struct kafka_metadata_response_topic t;
	kafka_metadata_response_topic_init(&t);
	assert_int_equal(t.topic_authorized_operations, INT32_MIN);
	assert_non_null(t.name.data);
	t.name = (struct slice){ (const uint8_t *)"t", 1 };
	mr.topics = &t;
	mr.topics_count = 1;

	/* Ignorable ThrottleTimeMs (v3+) is dropped silently at v0. */
	mr.throttle_time_ms = 100;
	assert_int_equal(kafka_metadata_response_encode(&w, 0, &mr), 0);
	size_t v0len = w.len;
	writer_reset(&w);
	mr.throttle_time_ms = 0;
	assert_int_equal(kafka_metadata_response_encode(&w, 0, &mr), 0);
	assert_int_equal(w.len, v0len);
	/* Non-ignorable TopicAuthorizedOperations (v8+) refuses to vanish. */
	t.topic_authorized_operations = 5;
	writer_reset(&w);
	writer_u8(&w, 0x55);
	assert_int_equal(kafka_metadata_response_encode(&w, 7, &mr), -ERR_UNSUPPORTED);
	assert_int_equal(w.len, 1); /* rolled back */
	assert_int_equal(kafka_metadata_response_encode(&w, 8, &mr), 0);
	/* Null in a non-nullable string (Name is nullable only from v12). */
	t.name = (struct slice){ NULL, 0 };
	writer_reset(&w);
	assert_int_equal(kafka_metadata_response_encode(&w, 11, &mr), -ERR_INVALID);
	assert_int_equal(w.len, 0);
	assert_int_equal(kafka_metadata_response_encode(&w, 12, &mr), 0);
	/* A count without elements. */
	mr.topics = NULL;
	writer_reset(&w);
	assert_int_equal(kafka_metadata_response_encode(&w, 12, &mr), -ERR_INVALID);
	/* Over-long strings. */
	static char longname[40000];
	memset(longname, 'x', sizeof longname);
	t.name = (struct slice){ (const uint8_t *)longname, sizeof longname };
	mr.topics = &t;
	assert_int_equal(kafka_metadata_response_encode(&w, 12, &mr), -ERR_TOO_LARGE);
	assert_int_equal(kafka_metadata_response_encode(&w, 1, &mr), -ERR_TOO_LARGE);
	/* The writer's limit. */
	struct writer small;
	writer_init(&small, 8);
	t.name = (struct slice){ (const uint8_t *)"t", 1 };
	assert_int_equal(kafka_metadata_response_encode(&small, 1, &mr), -ERR_TOO_LARGE);
	writer_fini(&small);
	/* Versions out of range. */
	assert_int_equal(kafka_metadata_response_encode(&w, 13, &mr), -ERR_UNSUPPORTED);
	writer_fini(&w);

	/* Decoding fills defaults of absent fields, including nested ones. */
	struct kafka_arena a;
	kafka_arena_init(&a, ACAP);
	static const uint8_t v0[] = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x01, 't', 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
	struct kafka_metadata_response d;
	assert_int_equal(decode_all(&kafka_metadata_response_desc, v0, sizeof v0, 0, &a, &d), 0);
	assert_int_equal(d.controller_id, -1);
	assert_null(d.cluster_id.data);
	assert_int_equal(d.topics[0].topic_authorized_operations, INT32_MIN);
	assert_int_equal(d.topics[0].partitions[0].leader_epoch, -1);
	assert_int_equal(d.topics[0].partitions[0].leader_id, 1);
	kafka_arena_fini(&a);
}

static void test_api_table(void **state)
{
	(void)state;
	assert_string_equal(kafka_api_name(KAFKA_API_PRODUCE), "Produce");
	assert_string_equal(kafka_api_name(18), "ApiVersions");
	assert_string_equal(kafka_api_name(75), "DescribeTopicPartitions");
	assert_string_equal(kafka_api_name(-1), "Unknown");
	assert_string_equal(kafka_api_name(999), "Unknown");
	const struct kafka_api *api = kafka_api_find(KAFKA_API_OFFSET_FETCH);
	assert_non_null(api);
	assert_int_equal(api->min_version, KAFKA_OFFSET_FETCH_MIN_VERSION);
	assert_int_equal(api->max_version, KAFKA_OFFSET_FETCH_MAX_VERSION);
	assert_ptr_equal(api->request, &kafka_offset_fetch_request_desc);
	assert_null(kafka_api_find(KAFKA_API_DELETE_GROUPS)->request); /* known, not generated */

	assert_false(kafka_api_is_flexible(KAFKA_API_OFFSET_FETCH, 5));
	assert_true(kafka_api_is_flexible(KAFKA_API_OFFSET_FETCH, 6));
	assert_false(kafka_api_is_flexible(KAFKA_API_SASL_HANDSHAKE, 1));
	assert_false(kafka_api_is_flexible(999, 1));
	assert_int_equal(kafka_request_header_version(KAFKA_API_METADATA, 8), 1);
	assert_int_equal(kafka_request_header_version(KAFKA_API_METADATA, 9), 2);
	assert_int_equal(kafka_response_header_version(KAFKA_API_METADATA, 8), 0);
	assert_int_equal(kafka_response_header_version(KAFKA_API_METADATA, 9), 1);
	assert_int_equal(kafka_request_header_version(KAFKA_API_API_VERSIONS, 3), 2);
	assert_int_equal(kafka_response_header_version(KAFKA_API_API_VERSIONS, 3), 0);
	assert_int_equal(kafka_request_header_version(KAFKA_API_CONTROLLED_SHUTDOWN, 0), 0);
	assert_int_equal(kafka_request_header_version(KAFKA_API_CONTROLLED_SHUTDOWN, 1), 1);
	assert_int_equal(kafka_request_header_version(999, 0), 1);
	/* Every generated API agrees with its constants and descriptors. */
	for (int16_t k = 0; k <= KAFKA_API_KEY_MAX; k++) {
		api = kafka_api_find(k);
		if (!api || !api->request)
			continue;
		assert_int_equal(api->request->api_key, k);
		assert_int_equal(api->response->api_key, k);
		assert_int_equal(api->request->min_version, api->min_version);
		assert_int_equal(api->response->max_version, api->max_version);
		assert_int_equal(api->request->flexible_min, api->flexible_min);
	}
	assert_int_equal(KAFKA_PRODUCE_MAX_VERSION, 11);
	assert_int_equal(KAFKA_API_VERSIONS_FLEXIBLE_MIN_VERSION, 3);
	assert_int_equal(KAFKA_SASL_HANDSHAKE_FLEXIBLE_MIN_VERSION, -1);
}

static void test_consumer_protocol(void **state)
{
	(void)state;
	/* ConsumerProtocolSubscription v0 body (the i16 version before it is the
	 * caller's): topics ["a"], user data null. */
	static const uint8_t sub0[] = { 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 'a',
		0xff, 0xff, 0xff, 0xff };
	struct kafka_arena a;
	kafka_arena_init(&a, ACAP);
	struct kafka_consumer_protocol_subscription s;
	assert_int_equal(decode_all(&kafka_consumer_protocol_subscription_desc, sub0, sizeof sub0,
		0, &a, &s), 0);
	assert_int_equal(s.topics_count, 1);
	assert_true(str_is(s.topics[0], "a"));
	assert_null(s.user_data.data);
	assert_int_equal(s.generation_id, -1);
	assert_encodes(&kafka_consumer_protocol_subscription_desc, 0, &s, sub0, sizeof sub0);
	kafka_arena_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_all),
		cmocka_unit_test(test_request_header_vectors),
		cmocka_unit_test(test_api_versions_vectors),
		cmocka_unit_test(test_metadata_v1_vectors),
		cmocka_unit_test(test_kafka_python_vectors),
		cmocka_unit_test(test_offset_fetch_v7_vectors),
		cmocka_unit_test(test_hostile_counts),
		cmocka_unit_test(test_tagged_fields),
		cmocka_unit_test(test_arena_cap),
		cmocka_unit_test(test_arena),
		cmocka_unit_test(test_encode_rules),
		cmocka_unit_test(test_api_table),
		cmocka_unit_test(test_consumer_protocol),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
