/*
 * fuzz_amqp.c: libFuzzer target for the AMQP 0-9-1 codec (src/amqp).
 *
 * The input is read three ways, as the broker meets untrusted bytes:
 *   1. a stream of frames after the protocol header: each frame is parsed
 *      (frame_max 4096), a method frame's payload decoded, re-encoded and
 *      decoded again; a content header decoded and re-encoded; every table
 *      met (the content header's headers) walked down to its leaves;
 *   2. a field table on its own (u32 length + entries), walked;
 *   3. a message as stored in a queue's log (a record batch), decoded with
 *      its properties.
 * Nothing may crash, leak or trip a sanitizer; the round trips must decode.
 * Built by CMake with -DSLUICE_FUZZ=ON (clang); run by scripts/fuzz.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amqp/amqp_int.h"
#include "amqp/amqp_msg.h"
#include "core/err.h"
#include "core/reader.h"
#include "core/writer.h"

static void walk_value(const struct amqp_field_value *v, int depth);

static void walk_table(const struct amqp_table *t, int depth)
{
	struct amqp_table_iter it;
	struct slice key;
	struct amqp_field_value v;
	amqp_table_iter_init(&it, t);
	while (amqp_table_iter_next(&it, &key, &v) == 1)
		walk_value(&v, depth + 1);
}

static void walk_value(const struct amqp_field_value *v, int depth)
{
	if (depth > AMQP_TABLE_MAX_DEPTH + 2)
		abort(); /* validation let a deeper nesting through */
	int64_t n;
	(void)amqp_field_int(v, &n);
	if (v->type == AMQP_FIELD_TABLE) {
		walk_table(&v->v.table, depth);
	} else if (v->type == AMQP_FIELD_ARRAY) {
		struct amqp_array_iter it;
		struct amqp_field_value e;
		amqp_array_iter_init(&it, &v->v.array);
		while (amqp_array_iter_next(&it, &e) == 1)
			walk_value(&e, depth + 1);
	}
}

static void method_round_trip(struct slice payload)
{
	struct reader r;
	struct amqp_method m;
	reader_init(&r, payload.data, payload.len);
	if (amqp_method_decode(&r, &m) != 0)
		return;
	struct writer w;
	writer_init(&w, 1u << 20);
	if (amqp_method_encode(&w, m.desc, &m.args) == 0) {
		struct amqp_method again;
		reader_init(&r, w.buf, w.len);
		if (amqp_method_decode(&r, &again) != 0 || again.id != m.id)
			abort(); /* what we encode must decode */
	}
	writer_fini(&w);
}

static void header_round_trip(struct slice payload)
{
	struct reader r;
	struct amqp_content_header h;
	reader_init(&r, payload.data, payload.len);
	if (amqp_content_header_decode(&r, &h) != 0)
		return;
	if (h.props.basic.flags & AMQP_BASIC_FLAG_HEADERS)
		walk_table(&h.props.basic.headers, 0);
	struct writer w;
	writer_init(&w, 1u << 20);
	if (amqp_content_header_encode(&w, &h) == 0) {
		struct amqp_content_header again;
		reader_init(&r, w.buf, w.len);
		if (amqp_content_header_decode(&r, &again) != 0 || again.body_size != h.body_size)
			abort();
	}
	writer_fini(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	/* 1. frames */
	struct reader r;
	reader_init(&r, data, len);
	for (int i = 0; i < 256; i++) {
		struct amqp_frame f;
		if (amqp_frame_parse(&r, 4096, &f) != 0)
			break;
		if (f.type == AMQP_FRAME_METHOD)
			method_round_trip(f.payload);
		else if (f.type == AMQP_FRAME_HEADER)
			header_round_trip(f.payload);
	}

	/* 2. a table alone */
	struct amqp_table t;
	reader_init(&r, data, len);
	if (amqp_table_parse(&r, &t) == 0) {
		walk_table(&t, 0);
		struct amqp_field_value v;
		(void)amqp_table_get(&t, "x-max-length", &v);
	}

	/* 3. a stored message */
	struct amqp_message msg;
	if (amqp_message_decode(data, len, &msg) == 0) {
		struct amqp_basic_properties props;
		(void)amqp_props_decode(msg.props_raw, &props);
	}
	return 0;
}
