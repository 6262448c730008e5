/*
 * test_kafka_codec_deferred.c: deferred RECORDS values (kafka_codec.h,
 * kafka_codec_encode_deferred), the encoding behind the zero-copy fetch.
 *
 * The property: the writer's bytes with each deferred value's bytes inserted
 * at the offsets the sink was told are exactly what kafka_codec_encode writes
 * for the same message holding the bytes in memory, in plain (v4, v11) and
 * flexible (v12, v16) versions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "kafka/kafka_codec.h"
#include "kafka/kafka_msg.h"

#define NPARTS 3

struct sink_log {
	const struct slice *rec[8];
	size_t at[8];
	size_t n;
	int fail_at; /* return an error on this call (1-based), 0 never */
};

static int log_deferred(void *arg, const struct slice *rec, size_t at)
{
	struct sink_log *l = arg;
	if (l->n >= 8)
		return -ERR_TOO_LARGE;
	l->rec[l->n] = rec;
	l->at[l->n] = at;
	l->n++;
	if (l->fail_at && (int)l->n == l->fail_at)
		return -ERR_NOMEM;
	return 0;
}

/* A response with three partitions: records of 300 bytes, none (empty), 5 bytes. */
struct fixture {
	uint8_t rec0[300], rec2[5];
	struct kafka_fetch_response_partition_data parts[NPARTS];
	struct kafka_fetch_response_fetchable_topic_response topic;
	struct kafka_fetch_response resp;
};

static void make_response(struct fixture *f, bool deferred)
{
	for (size_t i = 0; i < sizeof f->rec0; i++)
		f->rec0[i] = (uint8_t)(i * 13);
	memcpy(f->rec2, "abcde", 5);
	kafka_fetch_response_init(&f->resp);
	kafka_fetch_response_fetchable_topic_response_init(&f->topic);
	f->topic.topic = (struct slice){ (const uint8_t *)"topic", 5 };
	for (int i = 0; i < NPARTS; i++) {
		kafka_fetch_response_partition_data_init(&f->parts[i]);
		f->parts[i].partition_index = i;
		f->parts[i].high_watermark = 100 + i;
	}
	f->parts[0].records = deferred ? (struct slice){ KAFKA_RECORDS_DEFERRED, sizeof f->rec0 }
				       : (struct slice){ f->rec0, sizeof f->rec0 };
	f->parts[1].records = (struct slice){ (const uint8_t *)"", 0 };
	f->parts[2].records = deferred ? (struct slice){ KAFKA_RECORDS_DEFERRED, sizeof f->rec2 }
				       : (struct slice){ f->rec2, sizeof f->rec2 };
	f->topic.partitions = f->parts;
	f->topic.partitions_count = NPARTS;
	f->resp.responses = &f->topic;
	f->resp.responses_count = 1;
}

static void test_deferred_matches_plain_encoding(void **state)
{
	(void)state;
	static const int16_t versions[] = { 4, 7, 11, 12, 16 };
	for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
		int16_t ver = versions[v];
		struct fixture plain, def;
		make_response(&plain, false);
		make_response(&def, true);
		struct writer wp, wd;
		writer_init(&wp, 1 << 20);
		writer_init(&wd, 1 << 20);
		writer_bytes(&wd, "pre", 3); /* offsets are absolute in the writer */
		assert_int_equal(kafka_codec_encode(&kafka_fetch_response_desc, &wp, ver, &plain.resp), 0);
		struct sink_log log = { 0 };
		struct kafka_records_sink sink = { log_deferred, &log };
		assert_int_equal(kafka_codec_encode_deferred(&kafka_fetch_response_desc, &wd, ver,
			&def.resp, &sink), 0);
		/* One call per deferred value, in wire order, naming the value itself. */
		assert_int_equal(log.n, 2);
		assert_ptr_equal(log.rec[0], &def.parts[0].records);
		assert_ptr_equal(log.rec[1], &def.parts[2].records);
		assert_true(log.at[0] < log.at[1]);
		assert_true(log.at[1] <= wd.len);
		/* Splicing the bytes in gives the plain encoding. */
		assert_int_equal(wd.len - 3 + sizeof def.rec0 + sizeof def.rec2, wp.len);
		uint8_t *joined = malloc(wp.len);
		assert_non_null(joined);
		size_t n = 0;
		memcpy(joined + n, wd.buf + 3, log.at[0] - 3);
		n += log.at[0] - 3;
		memcpy(joined + n, def.rec0, sizeof def.rec0);
		n += sizeof def.rec0;
		memcpy(joined + n, wd.buf + log.at[0], log.at[1] - log.at[0]);
		n += log.at[1] - log.at[0];
		memcpy(joined + n, def.rec2, sizeof def.rec2);
		n += sizeof def.rec2;
		memcpy(joined + n, wd.buf + log.at[1], wd.len - log.at[1]);
		n += wd.len - log.at[1];
		assert_int_equal(n, wp.len);
		assert_memory_equal(joined, wp.buf, wp.len);
		free(joined);
		writer_fini(&wp);
		writer_fini(&wd);
	}
}

static void test_deferred_refused_without_sink_and_sink_errors(void **state)
{
	(void)state;
	struct fixture def;
	make_response(&def, true);
	struct writer w;
	writer_init(&w, 1 << 20);
	writer_bytes(&w, "keep", 4);
	/* The plain encoder never writes a hole. */
	assert_int_equal(kafka_codec_encode(&kafka_fetch_response_desc, &w, 11, &def.resp),
		-ERR_INVALID);
	assert_int_equal(w.len, 4);
	assert_int_equal(kafka_codec_encode_deferred(&kafka_fetch_response_desc, &w, 11, &def.resp,
		NULL), -ERR_INVALID);
	assert_int_equal(w.len, 4);
	/* A sink's error stops the encoding and the writer is rolled back. */
	struct sink_log log = { .fail_at = 2 };
	struct kafka_records_sink sink = { log_deferred, &log };
	assert_int_equal(kafka_codec_encode_deferred(&kafka_fetch_response_desc, &w, 11, &def.resp,
		&sink), -ERR_NOMEM);
	assert_int_equal(log.n, 2);
	assert_int_equal(w.len, 4);
	/* A deferred value too long for its i32 length prefix. */
	def.parts[0].records.len = (size_t)INT32_MAX + 1;
	log = (struct sink_log){ 0 };
	assert_int_equal(kafka_codec_encode_deferred(&kafka_fetch_response_desc, &w, 11, &def.resp,
		&sink), -ERR_TOO_LARGE);
	assert_int_equal(log.n, 0);
	assert_int_equal(w.len, 4);
	writer_fini(&w);
}

/* A tiny flexible message whose only field is a tagged RECORDS value. */
struct tagged_msg {
	struct slice rec;
};
static const struct kafka_field tagged_fields[] = {
	{ .name = "Rec", .type = KAFKA_T_RECORDS, .min_version = 0, .max_version = KAFKA_V_MAX,
	  .nullable_min = 0, .nullable_max = KAFKA_V_MAX, .tagged_min = 0, .tag = 0,
	  .default_null = 1, .offset = offsetof(struct tagged_msg, rec) },
};
static const struct kafka_struct_desc tagged_struct = { "Tagged", sizeof(struct tagged_msg),
	tagged_fields, 1 };
static const struct kafka_msg_desc tagged_desc = { "Tagged", &tagged_struct, -1, 0, 0, 0 };

static void test_deferred_in_tagged_field_refused(void **state)
{
	(void)state;
	struct tagged_msg m = { { KAFKA_RECORDS_DEFERRED, 10 } };
	struct sink_log log = { 0 };
	struct kafka_records_sink sink = { log_deferred, &log };
	struct writer w;
	writer_init(&w, 1 << 20);
	assert_int_equal(kafka_codec_encode_deferred(&tagged_desc, &w, 0, &m, &sink), -ERR_UNSUPPORTED);
	assert_int_equal(log.n, 0);
	assert_int_equal(w.len, 0);
	/* The same message with the bytes in memory encodes. */
	m.rec = (struct slice){ (const uint8_t *)"0123456789", 10 };
	assert_int_equal(kafka_codec_encode_deferred(&tagged_desc, &w, 0, &m, &sink), 0);
	assert_true(w.len > 10);
	writer_fini(&w);
}

/*
 * The mark is an address no other value can have: clang once merged the const
 * mark with the literal "" behind empty default strings, so a Fetch response
 * whose Topic held its default was refused (-ERR_INVALID) as a misplaced
 * deferred value.
 */
static void test_empty_default_string_is_not_deferred(void **state)
{
	(void)state;
	struct kafka_fetch_response_fetchable_topic_response topic;
	kafka_fetch_response_fetchable_topic_response_init(&topic);
	assert_non_null(topic.topic.data);
	assert_int_equal(topic.topic.len, 0);
	assert_true(topic.topic.data != KAFKA_RECORDS_DEFERRED);
	struct kafka_fetch_response fr;
	kafka_fetch_response_init(&fr);
	fr.responses = &topic;
	fr.responses_count = 1;
	struct writer w;
	writer_init(&w, 1 << 20);
	for (int16_t v = 4; v <= 12; v++) {
		writer_reset(&w);
		assert_int_equal(kafka_fetch_response_encode(&w, v, &fr), 0);
	}
	writer_fini(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deferred_matches_plain_encoding),
		cmocka_unit_test(test_deferred_refused_without_sink_and_sink_errors),
		cmocka_unit_test(test_deferred_in_tagged_field_refused),
		cmocka_unit_test(test_empty_default_string_is_not_deferred),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
