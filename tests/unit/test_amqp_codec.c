/*
 * test_amqp_codec.c: the generated AMQP 0-9-1 tables (amqp_msg.h) and their
 * interpreter (amqp_codec.c): frames, methods, content headers, field tables.
 *
 * 1. Every method round-trips with every argument set to a non-default value
 *    (test data from walking the descriptor tables), and its encoding equals
 *    the bytes pika 1.2.0's own encoder produces for the same values (64 of
 *    the 66 methods: pika 1.2 lacks connection.update-secret/-ok). Every
 *    strict prefix of each payload must fail, trailing bytes must fail, and
 *    single-byte corruptions must decode or fail cleanly.
 * 2. Byte vectors: connection.start as a server sends it (with a
 *    capabilities table; pika 1.2.0 completed a handshake on these bytes),
 *    and frames captured from pika 1.2.0 talking to a fake server:
 *    connection.start-ok, tune-ok, open, channel.open, basic.publish +
 *    content header + body, channel.close, connection.close. Content-header
 *    properties with all 14 present and a headers table of every type pika
 *    writes, from pika's BasicProperties.encode().
 * 3. Field tables of every type, nesting to the depth cap, lookups, and
 *    hostile input: lengths, letters, depth, truncation.
 * 4. Framing: frame-end, unknown types, frame_max refused from the header
 *    alone, partial frames, body splitting, heartbeats, protocol header.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp/amqp_codec.h"
#include "amqp/amqp_msg.h"
#include "core/err.h"
#include "core/reader.h"
#include "core/writer.h"

#define WLIMIT (1u << 20)

/* Decodes hex into out (at most cap bytes); returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
		unsigned v;
		char two[3] = { hex[i], hex[i + 1], 0 };
		assert_int_equal(sscanf(two, "%2x", &v), 1);
		assert_true(n < cap);
		out[n++] = (uint8_t)v;
	}
	return n;
}

static bool slice_eq(struct slice s, const char *text)
{
	size_t n = strlen(text);
	return s.len == n && (n == 0 || memcmp(s.data, text, n) == 0);
}

static bool slices_equal(struct slice a, struct slice b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* Encodes a table and returns its bytes (caller frees) and length. */
static uint8_t *table_bytes(const struct amqp_table *t, size_t *len)
{
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_table_encode(&w, t), 0);
	return writer_take(&w, len);
}

static void assert_tables_equal(const struct amqp_table *a, const struct amqp_table *b)
{
	size_t la, lb;
	uint8_t *ba = table_bytes(a, &la);
	uint8_t *bb = table_bytes(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ba, bb, la);
	free(ba);
	free(bb);
}

/* ---- pika 1.2.0's encodings of every method it knows ----
 * Argument i of a method holds: integers ((i + 1) * 0x0102030405060708)
 * truncated to the field's width (+1 if that is the default), bits the
 * opposite of their default, shortstr "f<i>", longstr "long-<i>", tables
 * {"k<i>": 1000 + i} (pika writes small ints as 'I'). The payload is
 * class id, method id, then pika's Method.encode(). */
struct vector {
	uint32_t id;
	const char *hex;
};

static const struct vector pika_methods[] = {
	/* connection.start */
	{ 0x000A000Au,
		"000a000a081000000008026b3249000003ea000000066c6f6e672d33000000066c6f6e67"
		"2d34" },
	/* connection.start-ok */
	{ 0x000A000Bu,
		"000a000b00000008026b3049000003e8026631000000066c6f6e672d32026633" },
	{ 0x000A0014u, "000a0014000000066c6f6e672d30" }, /* connection.secure */
	{ 0x000A0015u, "000a0015000000066c6f6e672d30" }, /* connection.secure-ok */
	{ 0x000A001Eu, "000a001e07080a0c0e101518" }, /* connection.tune */
	{ 0x000A001Fu, "000a001f07080a0c0e101518" }, /* connection.tune-ok */
	{ 0x000A0028u, "000a002802663002663101" }, /* connection.open */
	{ 0x000A0029u, "000a0029026630" }, /* connection.open-ok */
	{ 0x000A0032u, "000a0032070802663115181c20" }, /* connection.close */
	{ 0x000A0033u, "000a0033" }, /* connection.close-ok */
	{ 0x000A003Cu, "000a003c026630" }, /* connection.blocked */
	{ 0x000A003Du, "000a003d" }, /* connection.unblocked */
	{ 0x0014000Au, "0014000a026630" }, /* channel.open */
	{ 0x0014000Bu, "0014000b000000066c6f6e672d30" }, /* channel.open-ok */
	{ 0x00140014u, "0014001401" }, /* channel.flow */
	{ 0x00140015u, "0014001501" }, /* channel.flow-ok */
	{ 0x00140028u, "00140028070802663115181c20" }, /* channel.close */
	{ 0x00140029u, "00140029" }, /* channel.close-ok */
	{ 0x001E000Au, "001e000a02663001" }, /* access.request */
	{ 0x001E000Bu, "001e000b0708" }, /* access.request-ok */
	{ 0x0028000Au, "0028000a07080266310266321f00000008026b3849000003f0" }, /* exchange.declare */
	{ 0x0028000Bu, "0028000b" }, /* exchange.declare-ok */
	{ 0x00280014u, "00280014070802663103" }, /* exchange.delete */
	{ 0x00280015u, "00280015" }, /* exchange.delete-ok */
	{ 0x0028001Eu, "0028001e07080266310266320266330100000008026b3549000003ed" }, /* exchange.bind */
	{ 0x0028001Fu, "0028001f" }, /* exchange.bind-ok */
	{ 0x00280028u, "0028002807080266310266320266330100000008026b3549000003ed" }, /* exchange.unbind */
	{ 0x00280033u, "00280033" }, /* exchange.unbind-ok */
	{ 0x0032000Au, "0032000a07080266311f00000008026b3749000003ef" }, /* queue.declare */
	{ 0x0032000Bu, "0032000b0266300a0c0e100f121518" }, /* queue.declare-ok */
	{ 0x00320014u, "0032001407080266310266320266330100000008026b3549000003ed" }, /* queue.bind */
	{ 0x00320015u, "00320015" }, /* queue.bind-ok */
	{ 0x0032001Eu, "0032001e070802663101" }, /* queue.purge */
	{ 0x0032001Fu, "0032001f05060708" }, /* queue.purge-ok */
	{ 0x00320028u, "00320028070802663107" }, /* queue.delete */
	{ 0x00320029u, "0032002905060708" }, /* queue.delete-ok */
	{ 0x00320032u, "00320032070802663102663202663300000008026b3449000003ec" }, /* queue.unbind */
	{ 0x00320033u, "00320033" }, /* queue.unbind-ok */
	{ 0x003C000Au, "003c000a050607080e1001" }, /* basic.qos */
	{ 0x003C000Bu, "003c000b" }, /* basic.qos-ok */
	{ 0x003C0014u, "003c001407080266310266320f00000008026b3749000003ef" }, /* basic.consume */
	{ 0x003C0015u, "003c0015026630" }, /* basic.consume-ok */
	{ 0x003C001Eu, "003c001e02663001" }, /* basic.cancel */
	{ 0x003C001Fu, "003c001f026630" }, /* basic.cancel-ok */
	{ 0x003C0028u, "003c0028070802663102663203" }, /* basic.publish */
	{ 0x003C0032u, "003c00320708026631026632026633" }, /* basic.return */
	{ 0x003C003Cu, "003c003c026630020406080a0c0e1001026633026634" }, /* basic.deliver */
	{ 0x003C0046u, "003c0046070802663101" }, /* basic.get */
	{ 0x003C0047u, "003c0047010203040506070801026632026633191e2328" }, /* basic.get-ok */
	{ 0x003C0048u, "003c0048026630" }, /* basic.get-empty */
	{ 0x003C0050u, "003c0050010203040506070801" }, /* basic.ack */
	{ 0x003C005Au, "003c005a010203040506070800" }, /* basic.reject */
	{ 0x003C0064u, "003c006401" }, /* basic.recover-async */
	{ 0x003C006Eu, "003c006e01" }, /* basic.recover */
	{ 0x003C006Fu, "003c006f" }, /* basic.recover-ok */
	{ 0x003C0078u, "003c0078010203040506070801" }, /* basic.nack */
	{ 0x005A000Au, "005a000a" }, /* tx.select */
	{ 0x005A000Bu, "005a000b" }, /* tx.select-ok */
	{ 0x005A0014u, "005a0014" }, /* tx.commit */
	{ 0x005A0015u, "005a0015" }, /* tx.commit-ok */
	{ 0x005A001Eu, "005a001e" }, /* tx.rollback */
	{ 0x005A001Fu, "005a001f" }, /* tx.rollback-ok */
	{ 0x0055000Au, "0055000a01" }, /* confirm.select */
	{ 0x0055000Bu, "0055000b" }, /* confirm.select-ok */
};

static const char *pika_vector(uint32_t id)
{
	for (size_t i = 0; i < sizeof pika_methods / sizeof pika_methods[0]; i++)
		if (pika_methods[i].id == id)
			return pika_methods[i].hex;
	return NULL;
}

/* ---- test data from the descriptor tables ---- */

#define FILL_MAX 16

/* Storage the filled strings and tables point into. */
struct fill {
	char str[FILL_MAX][32];
	char key[FILL_MAX][24];
	struct amqp_table_entry ent[FILL_MAX];
};

static uint64_t fill_int(size_t i, const struct amqp_field *f)
{
	uint64_t v = (uint64_t)(i + 1) * 0x0102030405060708ull;
	switch (f->type) {
	case AMQP_T_OCTET: v &= 0xff; break;
	case AMQP_T_SHORT: v &= 0xffff; break;
	case AMQP_T_LONG: v &= 0xffffffffu; break;
	default: break;
	}
	return v == f->def_int ? v + 1 : v;
}

static void fill_args(const struct amqp_method_desc *d, void *obj, struct fill *fb)
{
	assert_true(d->n_fields <= FILL_MAX);
	amqp_args_init(d, obj);
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct amqp_field *f = &d->fields[i];
		void *p = (char *)obj + f->offset;
		switch (f->type) {
		case AMQP_T_BIT: *(bool *)p = f->def_int == 0; break;
		case AMQP_T_OCTET: *(uint8_t *)p = (uint8_t)fill_int(i, f); break;
		case AMQP_T_SHORT: *(uint16_t *)p = (uint16_t)fill_int(i, f); break;
		case AMQP_T_LONG: *(uint32_t *)p = (uint32_t)fill_int(i, f); break;
		case AMQP_T_LONGLONG:
		case AMQP_T_TIMESTAMP: *(uint64_t *)p = fill_int(i, f); break;
		case AMQP_T_SHORTSTR:
			snprintf(fb->str[i], sizeof fb->str[i], "f%zu", i);
			*(struct slice *)p = amqp_slice_str(fb->str[i]);
			break;
		case AMQP_T_LONGSTR:
			snprintf(fb->str[i], sizeof fb->str[i], "long-%zu", i);
			*(struct slice *)p = amqp_slice_str(fb->str[i]);
			break;
		case AMQP_T_TABLE:
			snprintf(fb->key[i], sizeof fb->key[i], "k%zu", i);
			fb->ent[i].key = amqp_slice_str(fb->key[i]);
			fb->ent[i].value = amqp_field_i32((int32_t)(1000 + i));
			*(struct amqp_table *)p = amqp_table_of(&fb->ent[i], 1);
			break;
		}
	}
}

/* Asserts that two d-structs hold the same values (tables by encoding). */
static void assert_args_equal(const struct amqp_method_desc *d, const void *a, const void *b)
{
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct amqp_field *f = &d->fields[i];
		const void *pa = (const char *)a + f->offset;
		const void *pb = (const char *)b + f->offset;
		switch (f->type) {
		case AMQP_T_BIT: assert_int_equal(*(const bool *)pa, *(const bool *)pb); break;
		case AMQP_T_OCTET: assert_int_equal(*(const uint8_t *)pa, *(const uint8_t *)pb); break;
		case AMQP_T_SHORT:
			assert_int_equal(*(const uint16_t *)pa, *(const uint16_t *)pb);
			break;
		case AMQP_T_LONG:
			assert_int_equal(*(const uint32_t *)pa, *(const uint32_t *)pb);
			break;
		case AMQP_T_LONGLONG:
		case AMQP_T_TIMESTAMP:
			assert_true(*(const uint64_t *)pa == *(const uint64_t *)pb);
			break;
		case AMQP_T_SHORTSTR:
		case AMQP_T_LONGSTR:
			assert_true(slices_equal(*(const struct slice *)pa, *(const struct slice *)pb));
			break;
		case AMQP_T_TABLE: assert_tables_equal(pa, pb); break;
		}
	}
}

/* Decodes a method payload of n bytes; returns the rc. */
static int decode_payload(const uint8_t *buf, size_t n, struct amqp_method *m)
{
	struct reader r;
	reader_init(&r, buf, n);
	return amqp_method_decode(&r, m);
}

static void test_round_trip_all(void **state)
{
	(void)state;
	size_t vectors = 0;
	for (size_t k = 0; k < AMQP_METHOD_COUNT; k++) {
		const struct amqp_method_desc *d = amqp_methods[k];
		union amqp_method_args in;
		struct fill fb;
		fill_args(d, &in, &fb);

		struct writer w;
		writer_init(&w, WLIMIT);
		assert_int_equal(amqp_method_encode(&w, d, d->size ? &in : NULL), 0);
		size_t n;
		uint8_t *buf = writer_take(&w, &n);

		const char *hex = pika_vector(d->id);
		if (hex) {
			uint8_t want[256];
			size_t wn = unhex(hex, want, sizeof want);
			assert_int_equal(n, wn);
			assert_memory_equal(buf, want, n);
			vectors++;
		}

		struct amqp_method m;
		assert_int_equal(decode_payload(buf, n, &m), 0);
		assert_int_equal(m.id, d->id);
		assert_ptr_equal(m.desc, d);
		assert_args_equal(d, &in, &m.args);

		/* Decoded (raw tables) re-encodes to the same bytes. */
		writer_init(&w, WLIMIT);
		assert_int_equal(amqp_method_encode(&w, d, d->size ? &m.args : NULL), 0);
		assert_int_equal(w.len, n);
		assert_memory_equal(w.buf, buf, n);
		writer_fini(&w);

		/* In a frame. */
		writer_init(&w, WLIMIT);
		assert_int_equal(amqp_frame_method_encode(&w, 7, d, d->size ? &in : NULL), 0);
		struct reader r;
		struct amqp_frame f;
		reader_init(&r, w.buf, w.len);
		assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), 0);
		assert_int_equal(f.type, AMQP_FRAME_METHOD);
		assert_int_equal(f.channel, 7);
		assert_int_equal(f.size, n);
		assert_memory_equal(f.payload.data, buf, n);
		assert_int_equal(reader_remaining(&r), 0);
		writer_fini(&w);

		/* Every strict prefix fails; so does a trailing byte. */
		uint8_t *copy = malloc(n + 1);
		assert_non_null(copy);
		for (size_t cut = 0; cut < n; cut++) {
			memcpy(copy, buf, cut);
			assert_int_equal(decode_payload(copy, cut, &m), -ERR_MALFORMED);
		}
		memcpy(copy, buf, n);
		copy[n] = 0;
		assert_int_equal(decode_payload(copy, n + 1, &m), -ERR_MALFORMED);

		/* Corruptions decode or fail; what decodes re-encodes. */
		static const uint8_t flips[] = { 0x01, 0x80, 0xff, 0x7f };
		for (size_t pos = 0; pos < n; pos++) {
			for (size_t x = 0; x < sizeof flips; x++) {
				memcpy(copy, buf, n);
				copy[pos] ^= flips[x];
				int rc = decode_payload(copy, n, &m);
				if (rc == 0) {
					writer_init(&w, WLIMIT);
					assert_int_equal(amqp_method_encode(&w, m.desc,
						m.desc->size ? &m.args : NULL), 0);
					writer_fini(&w);
				} else {
					assert_true(rc == -ERR_MALFORMED || rc == -ERR_NOT_FOUND ||
						rc == -ERR_TOO_LARGE);
				}
			}
		}
		free(copy);
		free(buf);
	}
	assert_int_equal(vectors, sizeof pika_methods / sizeof pika_methods[0]);
	assert_int_equal(vectors, AMQP_METHOD_COUNT - 2);
}

/* The table covers every method of the JSON with its ids and flags. */
static void test_method_table(void **state)
{
	(void)state;
	assert_int_equal(AMQP_METHOD_COUNT, 66);
	for (size_t k = 0; k < AMQP_METHOD_COUNT; k++) {
		const struct amqp_method_desc *d = amqp_methods[k];
		if (k > 0)
			assert_true(amqp_methods[k - 1]->id < d->id);
		assert_int_equal(d->id, AMQP_METHOD_ID(d->class_id, d->method_id));
		assert_ptr_equal(amqp_method_find(d->class_id, d->method_id), d);
		assert_string_equal(amqp_method_name(d->id), d->name);
		assert_true(d->flags & (AMQP_M_TO_SERVER | AMQP_M_TO_CLIENT));
		for (int i = 0; i < 2; i++)
			if (d->responses[i])
				assert_non_null(amqp_method_find(AMQP_METHOD_CLASS(d->responses[i]),
					AMQP_METHOD_INDEX(d->responses[i])));
	}
	assert_null(amqp_method_find(60, 41));
	assert_null(amqp_method_find(99, 10));
	assert_string_equal(amqp_method_name(0x00630001u), "unknown");

	/* RabbitMQ extensions and quirks. */
	assert_int_equal(AMQP_BASIC_NACK, 0x003C0078u);
	assert_int_equal(AMQP_CONFIRM_SELECT, 0x0055000Au);
	assert_int_equal(AMQP_CONFIRM_SELECT_OK, 0x0055000Bu);
	assert_int_equal(AMQP_EXCHANGE_BIND, 0x0028001Eu);
	assert_int_equal(AMQP_EXCHANGE_UNBIND_OK, 0x00280033u); /* 40/51, not 40/41 */
	assert_int_equal(AMQP_CONNECTION_BLOCKED, 0x000A003Cu);
	assert_int_equal(AMQP_CONNECTION_UNBLOCKED, 0x000A003Du);
	assert_int_equal(AMQP_CONNECTION_UPDATE_SECRET, 0x000A0046u);
	assert_int_equal(AMQP_CONNECTION_UPDATE_SECRET_OK, 0x000A0047u);
	assert_string_equal(amqp_basic_nack_desc.name, "basic.nack");
	assert_int_equal(amqp_basic_nack_desc.n_fields, 3);
	assert_int_equal(amqp_basic_nack_desc.flags & (AMQP_M_TO_SERVER | AMQP_M_TO_CLIENT),
		AMQP_M_TO_SERVER | AMQP_M_TO_CLIENT);
	assert_int_equal(amqp_connection_start_desc.flags,
		AMQP_M_SYNCHRONOUS | AMQP_M_TO_CLIENT);
	assert_int_equal(amqp_connection_start_desc.responses[0], AMQP_CONNECTION_START_OK);
	assert_int_equal(amqp_basic_get_desc.responses[0], AMQP_BASIC_GET_OK);
	assert_int_equal(amqp_basic_get_desc.responses[1], AMQP_BASIC_GET_EMPTY);
	assert_true(amqp_basic_publish_desc.flags & AMQP_M_CONTENT);
	assert_true(amqp_basic_deliver_desc.flags & AMQP_M_CONTENT);
	assert_false(amqp_basic_deliver_desc.flags & AMQP_M_TO_SERVER);
	assert_true(amqp_basic_publish_desc.flags & AMQP_M_TO_SERVER);
	assert_false(amqp_basic_publish_desc.flags & AMQP_M_TO_CLIENT);
	assert_int_equal(amqp_access_request_desc.flags, AMQP_M_SYNCHRONOUS | AMQP_M_TO_SERVER);

	assert_string_equal(amqp_class_name(AMQP_CLASS_CONFIRM), "confirm");
	assert_string_equal(amqp_class_name(AMQP_CLASS_BASIC), "basic");
	assert_string_equal(amqp_class_name(11), "unknown");
	assert_ptr_equal(amqp_props_find(AMQP_CLASS_BASIC), &amqp_basic_properties_desc);
	assert_null(amqp_props_find(AMQP_CLASS_CONNECTION));
	assert_int_equal(amqp_basic_properties_desc.n_fields, 14);
}

static void test_constants(void **state)
{
	(void)state;
	assert_int_equal(AMQP_FRAME_METHOD, 1);
	assert_int_equal(AMQP_FRAME_HEADER, 2);
	assert_int_equal(AMQP_FRAME_BODY, 3);
	assert_int_equal(AMQP_FRAME_HEARTBEAT, 8);
	assert_int_equal(AMQP_FRAME_END, 0xCE);
	assert_int_equal(AMQP_FRAME_MIN_SIZE, 4096);
	static const struct {
		int code;
		const char *name;
		bool hard;
	} codes[] = {
		{ 200, "REPLY_SUCCESS", false }, { 311, "CONTENT_TOO_LARGE", false },
		{ 312, "NO_ROUTE", false }, { 313, "NO_CONSUMERS", false },
		{ 320, "CONNECTION_FORCED", true }, { 402, "INVALID_PATH", true },
		{ 403, "ACCESS_REFUSED", false }, { 404, "NOT_FOUND", false },
		{ 405, "RESOURCE_LOCKED", false }, { 406, "PRECONDITION_FAILED", false },
		{ 501, "FRAME_ERROR", true }, { 502, "SYNTAX_ERROR", true },
		{ 503, "COMMAND_INVALID", true }, { 504, "CHANNEL_ERROR", true },
		{ 505, "UNEXPECTED_FRAME", true }, { 506, "RESOURCE_ERROR", true },
		{ 530, "NOT_ALLOWED", true }, { 540, "NOT_IMPLEMENTED", true },
		{ 541, "INTERNAL_ERROR", true },
	};
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		assert_string_equal(amqp_reply_name((uint16_t)codes[i].code), codes[i].name);
		assert_int_equal(amqp_reply_is_hard((uint16_t)codes[i].code), codes[i].hard);
	}
	assert_int_equal(AMQP_NOT_FOUND, 404);
	assert_int_equal(AMQP_PRECONDITION_FAILED, 406);
	assert_int_equal(AMQP_NO_ROUTE, 312);
	assert_int_equal(AMQP_NOT_IMPLEMENTED, 540);
	assert_string_equal(amqp_reply_name(999), "UNKNOWN");
	assert_false(amqp_reply_is_hard(999));
}

/* Spec defaults, and bits packed low bit first into a shared octet. */
static void test_defaults_and_bits(void **state)
{
	(void)state;
	struct amqp_connection_start s;
	amqp_connection_start_init(&s);
	assert_int_equal(s.version_major, 0);
	assert_int_equal(s.version_minor, 9);
	assert_true(slice_eq(s.mechanisms, "PLAIN"));
	assert_true(slice_eq(s.locales, "en_US"));
	struct amqp_basic_nack nk;
	amqp_basic_nack_init(&nk);
	assert_false(nk.multiple);
	assert_true(nk.requeue);
	struct amqp_exchange_declare xd;
	amqp_exchange_declare_init(&xd);
	assert_true(slice_eq(xd.type, "direct"));

	/* exchange.declare: passive durable auto-delete internal nowait = bits 0..4. */
	for (int i = 0; i < 5; i++) {
		amqp_exchange_declare_init(&xd);
		xd.exchange = amqp_slice_str("x");
		bool *bits[] = { &xd.passive, &xd.durable, &xd.auto_delete, &xd.internal,
			&xd.nowait };
		*bits[i] = true;
		struct writer w;
		writer_init(&w, WLIMIT);
		assert_int_equal(amqp_exchange_declare_encode(&w, &xd), 0);
		/* ids 4, ticket 2, "x" 2, "direct" 7, then the bit octet, then the table */
		assert_int_equal(w.len, 4 + 2 + 2 + 7 + 1 + 4);
		assert_int_equal(w.buf[15], 1u << i);
		struct amqp_method m;
		assert_int_equal(decode_payload(w.buf, w.len, &m), 0);
		const struct amqp_exchange_declare *g = &m.args.exchange_declare;
		const bool got[5] = { g->passive, g->durable, g->auto_delete, g->internal,
			g->nowait };
		for (int j = 0; j < 5; j++)
			assert_int_equal(got[j], i == j);
		writer_fini(&w);
	}
	/* Unused high bits of a bit octet are ignored. */
	uint8_t ack[] = { 0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 9, 0xfe };
	struct amqp_method m;
	assert_int_equal(decode_payload(ack, sizeof ack, &m), 0);
	assert_false(m.args.basic_ack.multiple);
	assert_true(m.args.basic_ack.delivery_tag == 9);
	/* Methods without arguments. */
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_channel_close_ok_encode(&w), 0);
	assert_int_equal(w.len, 4);
	assert_memory_equal(w.buf, "\x00\x14\x00\x29", 4);
	writer_fini(&w);
}

/* ---- byte vectors ---- */

/* connection.start as a server sends it: 0-9, server-properties with a
 * capabilities table, mechanisms "PLAIN AMQPLAIN", locales "en_US". pika
 * 1.2.0 accepted these bytes and went on to start-ok. */
static const char server_start_hex[] =
	"010000000000e8000a000a0009000000c30c6361706162696c6974696573460000008c"
	"127075626c69736865725f636f6e6669726d7374011a65786368616e67655f6578636861"
	"6e67655f62696e64696e677374010a62617369632e6e61636b740116636f6e73756d6572"
	"5f63616e63656c5f6e6f74696679740112636f6e6e656374696f6e2e626c6f636b656474"
	"011c61757468656e7469636174696f6e5f6661696c7572655f636c6f736574010770726f"
	"647563745300000006536c756963650776657273696f6e5300000005302e312e30000000"
	"0e504c41494e20414d51504c41494e00000005656e5f5553ce";

static void test_server_connection_start(void **state)
{
	(void)state;
	const struct amqp_table_entry caps[] = {
		{ amqp_slice_str("publisher_confirms"), amqp_field_bool(true) },
		{ amqp_slice_str("exchange_exchange_bindings"), amqp_field_bool(true) },
		{ amqp_slice_str("basic.nack"), amqp_field_bool(true) },
		{ amqp_slice_str("consumer_cancel_notify"), amqp_field_bool(true) },
		{ amqp_slice_str("connection.blocked"), amqp_field_bool(true) },
		{ amqp_slice_str("authentication_failure_close"), amqp_field_bool(true) },
	};
	const struct amqp_table_entry props[] = {
		{ amqp_slice_str("capabilities"),
		  amqp_field_table(amqp_table_of(caps, sizeof caps / sizeof caps[0])) },
		{ amqp_slice_str("product"), amqp_field_cstr("Sluice") },
		{ amqp_slice_str("version"), amqp_field_cstr("0.1.0") },
	};
	struct amqp_connection_start s;
	amqp_connection_start_init(&s);
	s.server_properties = amqp_table_of(props, 3);
	s.mechanisms = amqp_slice_str("PLAIN AMQPLAIN");

	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_frame_method_encode(&w, 0, &amqp_connection_start_desc, &s), 0);
	uint8_t want[512];
	size_t n = unhex(server_start_hex, want, sizeof want);
	assert_int_equal(w.len, n);
	assert_memory_equal(w.buf, want, n);

	/* And back, as a client would read it. */
	struct reader r;
	struct amqp_frame f;
	reader_init(&r, want, n);
	assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), 0);
	struct amqp_method m;
	reader_init(&r, f.payload.data, f.payload.len);
	assert_int_equal(amqp_method_decode(&r, &m), 0);
	assert_int_equal(m.id, AMQP_CONNECTION_START);
	struct amqp_field_value v, c;
	assert_int_equal(amqp_table_get(&m.args.connection_start.server_properties,
		"capabilities", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_TABLE);
	assert_int_equal(amqp_table_get(&v.v.table, "basic.nack", &c), 0);
	assert_int_equal(c.type, AMQP_FIELD_BOOL);
	assert_true(c.v.b);
	assert_int_equal(amqp_table_get(&v.v.table, "per_consumer_qos", &c), -ERR_NOT_FOUND);
	assert_int_equal(amqp_table_get(&m.args.connection_start.server_properties,
		"product", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_LONGSTR);
	assert_true(slice_eq(v.v.str, "Sluice"));
	writer_fini(&w);
}

/* Frames pika 1.2.0 (Python 3.11.2) sent to a fake server, in order. */
static const char pika_start_ok_hex[] =
	"01000000000122000a000b000000fe0770726f64756374530000001a50696b6120507974"
	"686f6e20436c69656e74204c69627261727908706c6174666f726d530000000d50797468"
	"6f6e20332e31312e320c6361706162696c6974696573460000006f1c61757468656e7469"
	"636174696f6e5f6661696c7572655f636c6f736574010a62617369632e6e61636b740112"
	"636f6e6e656374696f6e2e626c6f636b6564740116636f6e73756d65725f63616e63656c"
	"5f6e6f746966797401127075626c69736865725f636f6e6669726d7374010b696e666f72"
	"6d6174696f6e530000001853656520687474703a2f2f70696b612e727466642e6f726707"
	"76657273696f6e5300000005312e322e3005504c41494e0000000c006775657374006775"
	"65737405656e5f5553ce";
static const char pika_tune_ok_hex[] = "0100000000000c000a001f07ff00020000003cce";
static const char pika_open_hex[] = "01000000000008000a0028012f0001ce";
static const char pika_channel_open_hex[] = "010001000000050014000a00ce";
/* basic_publish('amq.direct', 'rk', b'hello', mandatory=True, properties=
 * content_type text/plain, headers {x-n: 7, s: 'v'}, delivery_mode 2,
 * priority 5, correlation_id c1, message_id m1, timestamp 1700000000). */
static const char pika_publish_hex[] =
	"01000100000015003c002800000a616d712e64697265637402726b01ce"
	"0200010000003e003c00000000000000000005bcc00a746578742f706c61696e00000011"
	"03782d6e490000000701735300000001760205026331026d31000000006553f100ce"
	"0300010000000568656c6c6fce";
static const char pika_channel_close_hex[] =
	"0100010000001a0014002800000f4e6f726d616c2073687574646f776e00000000ce";
static const char pika_connection_close_hex[] =
	"0100000000001a000a003200c80f4e6f726d616c2073687574646f776e00000000ce";

/* Parses one frame of buf and decodes its method; re-encodes it and checks
 * the bytes are the same. Returns the frame length. */
static size_t check_method_frame(const uint8_t *buf, size_t n, uint16_t channel,
	uint32_t id, struct amqp_method *m)
{
	struct reader r;
	struct amqp_frame f;
	reader_init(&r, buf, n);
	assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), 0);
	size_t used = n - reader_remaining(&r);
	assert_int_equal(f.type, AMQP_FRAME_METHOD);
	assert_int_equal(f.channel, channel);
	struct reader pr;
	reader_init(&pr, f.payload.data, f.payload.len);
	assert_int_equal(amqp_method_decode(&pr, m), 0);
	assert_int_equal(m->id, id);
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_frame_method_encode(&w, channel, m->desc,
		m->desc->size ? &m->args : NULL), 0);
	assert_int_equal(w.len, used);
	assert_memory_equal(w.buf, buf, used);
	writer_fini(&w);
	return used;
}

static void test_pika_handshake(void **state)
{
	(void)state;
	uint8_t buf[1024];
	struct amqp_method m;
	size_t n = unhex(pika_start_ok_hex, buf, sizeof buf);
	check_method_frame(buf, n, 0, AMQP_CONNECTION_START_OK, &m);
	const struct amqp_connection_start_ok *so = &m.args.connection_start_ok;
	assert_true(slice_eq(so->mechanism, "PLAIN"));
	assert_int_equal(so->response.len, 12);
	assert_memory_equal(so->response.data, "\0guest\0guest", 12);
	assert_true(slice_eq(so->locale, "en_US"));
	struct amqp_field_value v, c;
	assert_int_equal(amqp_table_get(&so->client_properties, "product", &v), 0);
	assert_true(slice_eq(v.v.str, "Pika Python Client Library"));
	assert_int_equal(amqp_table_get(&so->client_properties, "capabilities", &v), 0);
	static const char *const caps[] = { "authentication_failure_close", "basic.nack",
		"connection.blocked", "consumer_cancel_notify", "publisher_confirms" };
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(amqp_table_get(&v.v.table, caps[i], &c), 0);
		assert_int_equal(c.type, AMQP_FIELD_BOOL);
		assert_true(c.v.b);
	}
	/* Iteration sees the entries in wire order. */
	struct amqp_table_iter it;
	struct slice key;
	static const char *const order[] = { "product", "platform", "capabilities",
		"information", "version" };
	amqp_table_iter_init(&it, &so->client_properties);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(amqp_table_iter_next(&it, &key, &v), 1);
		assert_true(slice_eq(key, order[i]));
	}
	assert_int_equal(amqp_table_iter_next(&it, &key, &v), 0);

	n = unhex(pika_tune_ok_hex, buf, sizeof buf);
	check_method_frame(buf, n, 0, AMQP_CONNECTION_TUNE_OK, &m);
	assert_int_equal(m.args.connection_tune_ok.channel_max, 2047);
	assert_int_equal(m.args.connection_tune_ok.frame_max, 131072);
	assert_int_equal(m.args.connection_tune_ok.heartbeat, 60);

	n = unhex(pika_open_hex, buf, sizeof buf);
	check_method_frame(buf, n, 0, AMQP_CONNECTION_OPEN, &m);
	assert_true(slice_eq(m.args.connection_open.virtual_host, "/"));
	assert_true(m.args.connection_open.insist); /* pika sets it */

	n = unhex(pika_channel_open_hex, buf, sizeof buf);
	check_method_frame(buf, n, 1, AMQP_CHANNEL_OPEN, &m);

	n = unhex(pika_channel_close_hex, buf, sizeof buf);
	check_method_frame(buf, n, 1, AMQP_CHANNEL_CLOSE, &m);
	assert_int_equal(m.args.channel_close.reply_code, 0);
	assert_true(slice_eq(m.args.channel_close.reply_text, "Normal shutdown"));

	n = unhex(pika_connection_close_hex, buf, sizeof buf);
	check_method_frame(buf, n, 0, AMQP_CONNECTION_CLOSE, &m);
	assert_int_equal(m.args.connection_close.reply_code, AMQP_REPLY_SUCCESS);
}

static void test_pika_publish(void **state)
{
	(void)state;
	uint8_t buf[512];
	size_t n = unhex(pika_publish_hex, buf, sizeof buf);
	struct amqp_method m;
	size_t used = check_method_frame(buf, n, 1, AMQP_BASIC_PUBLISH, &m);
	const struct amqp_basic_publish *p = &m.args.basic_publish;
	assert_int_equal(p->ticket, 0);
	assert_true(slice_eq(p->exchange, "amq.direct"));
	assert_true(slice_eq(p->routing_key, "rk"));
	assert_true(p->mandatory);
	assert_false(p->immediate);

	struct reader r;
	struct amqp_frame f;
	reader_init(&r, buf + used, n - used);
	assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), 0);
	assert_int_equal(f.type, AMQP_FRAME_HEADER);
	assert_int_equal(f.channel, 1);
	struct reader hr;
	reader_init(&hr, f.payload.data, f.payload.len);
	struct amqp_content_header h;
	assert_int_equal(amqp_content_header_decode(&hr, &h), 0);
	assert_int_equal(h.class_id, AMQP_CLASS_BASIC);
	assert_int_equal(h.weight, 0);
	assert_true(h.body_size == 5);
	const struct amqp_basic_properties *bp = &h.props.basic;
	assert_int_equal(bp->flags, 0xbcc0);
	assert_int_equal(bp->flags, AMQP_BASIC_FLAG_CONTENT_TYPE | AMQP_BASIC_FLAG_HEADERS |
		AMQP_BASIC_FLAG_DELIVERY_MODE | AMQP_BASIC_FLAG_PRIORITY |
		AMQP_BASIC_FLAG_CORRELATION_ID | AMQP_BASIC_FLAG_MESSAGE_ID |
		AMQP_BASIC_FLAG_TIMESTAMP);
	assert_true(slice_eq(bp->content_type, "text/plain"));
	assert_int_equal(bp->delivery_mode, 2);
	assert_int_equal(bp->priority, 5);
	assert_true(slice_eq(bp->correlation_id, "c1"));
	assert_true(slice_eq(bp->message_id, "m1"));
	assert_true(bp->timestamp == 1700000000);
	assert_int_equal(bp->expiration.len, 0);
	struct amqp_field_value v;
	int64_t x;
	assert_int_equal(amqp_table_get(&bp->headers, "x-n", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_I32);
	assert_int_equal(amqp_field_int(&v, &x), 0);
	assert_true(x == 7);
	assert_int_equal(amqp_table_get(&bp->headers, "s", &v), 0);
	assert_true(slice_eq(v.v.str, "v"));
	assert_int_equal(h.props_raw.len, f.payload.len - 12);

	struct amqp_frame body;
	assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &body), 0);
	assert_int_equal(body.type, AMQP_FRAME_BODY);
	assert_true(slice_eq(body.payload, "hello"));
	assert_int_equal(reader_remaining(&r), 0);

	/* Re-encoded from the decoded properties, and from props_raw: pika's bytes. */
	for (int raw = 0; raw < 2; raw++) {
		struct amqp_content_header h2 = h;
		if (!raw)
			h2.props_raw = (struct slice){ NULL, 0 };
		struct writer w;
		writer_init(&w, WLIMIT);
		assert_int_equal(amqp_frame_content_encode(&w, 1, &h2, "hello", 5, 131072), 0);
		assert_int_equal(w.len, n - used);
		assert_memory_equal(w.buf, buf + used, n - used);
		writer_fini(&w);
	}

	/* Every strict prefix of the three frames asks for more bytes. */
	for (size_t cut = 0; cut < n; cut++) {
		reader_init(&r, buf, cut);
		int rc;
		size_t frames = 0;
		while ((rc = amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f)) == 0)
			frames++;
		assert_int_equal(rc, -ERR_AGAIN);
		assert_true(frames < 3);
	}
}

/* Properties with all 14 present and a headers table of every type pika
 * 1.2.0 writes, from BasicProperties.encode() (flags word onwards). */
static const char pika_props_hex[] =
	"fffc106170706c69636174696f6e2f6a736f6e04677a697000000083016274010169490000000703"
	"6269676c0000010000000000036e656749fffffffb03737472530000000176056279746573780000"
	"000200010364656344020000007d02747354000000006553f10003746162460000000b0178530000"
	"000179016e5603617272410000001249000000015300000001614100000002740104766f69645602"
	"0904636f727215616d712e7261626269746d712e7265706c792d746f053630303030036d69640000"
	"00006553f10001740567756573740361707002636c";

static void test_all_properties(void **state)
{
	(void)state;
	uint8_t buf[512];
	/* class 60, weight 0, body size 0x0102030405060708, then pika's bytes */
	static const uint8_t head[] = { 0, 60, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8 };
	memcpy(buf, head, sizeof head);
	size_t n = sizeof head + unhex(pika_props_hex, buf + sizeof head, sizeof buf - sizeof head);
	struct reader r;
	reader_init(&r, buf, n);
	struct amqp_content_header h;
	assert_int_equal(amqp_content_header_decode(&r, &h), 0);
	assert_true(h.body_size == 0x0102030405060708ull);
	const struct amqp_basic_properties *p = &h.props.basic;
	assert_int_equal(p->flags, 0xfffc);
	assert_true(slice_eq(p->content_type, "application/json"));
	assert_true(slice_eq(p->content_encoding, "gzip"));
	assert_int_equal(p->delivery_mode, 2);
	assert_int_equal(p->priority, 9);
	assert_true(slice_eq(p->correlation_id, "corr"));
	assert_true(slice_eq(p->reply_to, "amq.rabbitmq.reply-to"));
	assert_true(slice_eq(p->expiration, "60000"));
	assert_true(slice_eq(p->message_id, "mid"));
	assert_true(p->timestamp == 1700000000);
	assert_true(slice_eq(p->type, "t"));
	assert_true(slice_eq(p->user_id, "guest"));
	assert_true(slice_eq(p->app_id, "app"));
	assert_true(slice_eq(p->cluster_id, "cl"));

	/* The same headers built in C encode to pika's bytes. */
	const struct amqp_table_entry tab[] = {
		{ amqp_slice_str("x"), amqp_field_cstr("y") },
		{ amqp_slice_str("n"), { .type = AMQP_FIELD_VOID } },
	};
	const struct amqp_field_value inner[] = { amqp_field_bool(true) };
	const struct amqp_field_value arr[] = {
		amqp_field_i32(1), amqp_field_cstr("a"), amqp_field_array(inner, 1),
	};
	struct amqp_field_value bytes = { .type = AMQP_FIELD_BYTES };
	bytes.v.str = (struct slice){ (const uint8_t *)"\x00\x01", 2 };
	struct amqp_field_value dec = { .type = AMQP_FIELD_DECIMAL };
	dec.v.dec.scale = 2;
	dec.v.dec.value = 125;
	const struct amqp_table_entry hdrs[] = {
		{ amqp_slice_str("b"), amqp_field_bool(true) },
		{ amqp_slice_str("i"), amqp_field_i32(7) },
		{ amqp_slice_str("big"), amqp_field_i64(1ll << 40) },
		{ amqp_slice_str("neg"), amqp_field_i32(-5) },
		{ amqp_slice_str("str"), amqp_field_cstr("v") },
		{ amqp_slice_str("bytes"), bytes },
		{ amqp_slice_str("dec"), dec },
		{ amqp_slice_str("ts"), amqp_field_timestamp(1700000000) },
		{ amqp_slice_str("tab"), amqp_field_table(amqp_table_of(tab, 2)) },
		{ amqp_slice_str("arr"), amqp_field_array(arr, 3) },
		{ amqp_slice_str("void"), { .type = AMQP_FIELD_VOID } },
	};
	struct amqp_table built = amqp_table_of(hdrs, sizeof hdrs / sizeof hdrs[0]);
	assert_tables_equal(&built, &p->headers);

	/* Decoded values, nested ones included. */
	struct amqp_field_value v, e;
	int64_t x;
	assert_int_equal(amqp_table_get(&p->headers, "big", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_I64);
	assert_int_equal(amqp_field_int(&v, &x), 0);
	assert_true(x == (1ll << 40));
	assert_int_equal(amqp_table_get(&p->headers, "neg", &v), 0);
	assert_int_equal(amqp_field_int(&v, &x), 0);
	assert_true(x == -5);
	assert_int_equal(amqp_table_get(&p->headers, "dec", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_DECIMAL);
	assert_int_equal(v.v.dec.scale, 2);
	assert_int_equal(v.v.dec.value, 125);
	assert_int_equal(amqp_field_int(&v, &x), -ERR_INVALID);
	assert_int_equal(amqp_table_get(&p->headers, "bytes", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_BYTES);
	assert_int_equal(v.v.str.len, 2);
	assert_int_equal(amqp_table_get(&p->headers, "ts", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_TIMESTAMP);
	assert_true(v.v.ts == 1700000000);
	assert_int_equal(amqp_table_get(&p->headers, "void", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_VOID);
	assert_int_equal(amqp_table_get(&p->headers, "tab", &v), 0);
	assert_int_equal(amqp_table_get(&v.v.table, "n", &e), 0);
	assert_int_equal(e.type, AMQP_FIELD_VOID);
	assert_int_equal(amqp_table_get(&p->headers, "arr", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_ARRAY);
	struct amqp_array_iter ai;
	amqp_array_iter_init(&ai, &v.v.array);
	assert_int_equal(amqp_array_iter_next(&ai, &e), 1);
	assert_int_equal(e.type, AMQP_FIELD_I32);
	assert_int_equal(e.v.i32, 1);
	assert_int_equal(amqp_array_iter_next(&ai, &e), 1);
	assert_true(slice_eq(e.v.str, "a"));
	assert_int_equal(amqp_array_iter_next(&ai, &e), 1);
	assert_int_equal(e.type, AMQP_FIELD_ARRAY);
	struct amqp_array_iter ai2;
	struct amqp_field_value t;
	amqp_array_iter_init(&ai2, &e.v.array);
	assert_int_equal(amqp_array_iter_next(&ai2, &t), 1);
	assert_int_equal(t.type, AMQP_FIELD_BOOL);
	assert_int_equal(amqp_array_iter_next(&ai2, &t), 0);
	assert_int_equal(amqp_array_iter_next(&ai, &e), 0);

	/* Re-encoded from the decoded struct (not props_raw): the same bytes. */
	struct amqp_content_header h2 = h;
	h2.props_raw = (struct slice){ NULL, 0 };
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_content_header_encode(&w, &h2), 0);
	assert_int_equal(w.len, n);
	assert_memory_equal(w.buf, buf, n);
	writer_fini(&w);

	/* Every strict prefix fails; so does a trailing byte. */
	for (size_t cut = 0; cut < n; cut++) {
		reader_init(&r, buf, cut);
		assert_int_equal(amqp_content_header_decode(&r, &h), -ERR_MALFORMED);
	}
	buf[n] = 0;
	reader_init(&r, buf, n + 1);
	assert_int_equal(amqp_content_header_decode(&r, &h), -ERR_MALFORMED);
}

/* ---- field tables ---- */

/* Parses a table from bytes: u32 length + entries. */
static int parse_table_bytes(const uint8_t *buf, size_t n, struct amqp_table *t)
{
	struct reader r;
	reader_init(&r, buf, n);
	int rc = amqp_table_parse(&r, t);
	if (rc == 0)
		assert_int_equal(reader_remaining(&r), 0);
	else
		assert_int_equal(reader_offset(&r), 0); /* failed at the length */
	return rc;
}

/* Every letter RabbitMQ reads, including 'L' (as int64) and 's' (int16). */
static void test_table_types(void **state)
{
	(void)state;
	static const uint8_t t[] = {
		0, 0, 0, 131,
		1, 'a', 't', 2,                        /* any non-zero is true */
		1, 'b', 'b', 0xff,
		1, 'c', 'B', 0xff,
		1, 'd', 's', 0xff, 0xfe,
		1, 'e', 'u', 0xff, 0xfe,
		1, 'f', 'I', 0xff, 0xff, 0xff, 0xfd,
		1, 'g', 'i', 0xff, 0xff, 0xff, 0xfd,
		1, 'h', 'l', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc,
		1, 'i', 'L', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb,
		1, 'j', 'f', 0x3f, 0xc0, 0x00, 0x00,   /* 1.5f */
		1, 'k', 'd', 0x40, 0x04, 0, 0, 0, 0, 0, 0, /* 2.5 */
		1, 'l', 'D', 3, 0xff, 0xff, 0xff, 0xff, /* -0.001 */
		1, 'm', 'S', 0, 0, 0, 2, 'h', 'i',
		1, 'n', 'x', 0, 0, 0, 1, 0,
		1, 'o', 'T', 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0,
		1, 'p', 'V',
		1, 'q', 'F', 0, 0, 0, 0,
		1, 'r', 'A', 0, 0, 0, 2, 'b', 5,
	};
	assert_int_equal(sizeof t, 4 + 131);
	struct amqp_table tab;
	assert_int_equal(parse_table_bytes(t, sizeof t, &tab), 0);
	struct amqp_field_value v;
	int64_t x;
	assert_int_equal(amqp_table_get(&tab, "a", &v), 0);
	assert_true(v.type == AMQP_FIELD_BOOL && v.v.b);
	assert_int_equal(amqp_table_get(&tab, "b", &v), 0);
	assert_true(v.type == AMQP_FIELD_I8 && v.v.i8 == -1);
	assert_int_equal(amqp_table_get(&tab, "c", &v), 0);
	assert_true(v.type == AMQP_FIELD_U8 && v.v.u8 == 255);
	assert_int_equal(amqp_table_get(&tab, "d", &v), 0);
	assert_true(v.type == AMQP_FIELD_I16 && v.v.i16 == -2);
	assert_int_equal(amqp_table_get(&tab, "e", &v), 0);
	assert_true(v.type == AMQP_FIELD_U16 && v.v.u16 == 0xfffe);
	assert_int_equal(amqp_table_get(&tab, "f", &v), 0);
	assert_true(v.type == AMQP_FIELD_I32 && v.v.i32 == -3);
	assert_int_equal(amqp_table_get(&tab, "g", &v), 0);
	assert_true(v.type == AMQP_FIELD_U32 && v.v.u32 == 0xfffffffdu);
	assert_int_equal(amqp_field_int(&v, &x), 0);
	assert_true(x == 0xfffffffdll);
	assert_int_equal(amqp_table_get(&tab, "h", &v), 0);
	assert_true(v.type == AMQP_FIELD_I64 && v.v.i64 == -4);
	assert_int_equal(amqp_table_get(&tab, "i", &v), 0);
	assert_true(v.type == AMQP_FIELD_I64 && v.v.i64 == -5);
	assert_int_equal(amqp_table_get(&tab, "j", &v), 0);
	assert_true(v.type == AMQP_FIELD_FLOAT && v.v.f32 == 1.5f);
	assert_int_equal(amqp_table_get(&tab, "k", &v), 0);
	assert_true(v.type == AMQP_FIELD_DOUBLE && v.v.f64 == 2.5);
	assert_int_equal(amqp_table_get(&tab, "l", &v), 0);
	assert_true(v.type == AMQP_FIELD_DECIMAL && v.v.dec.scale == 3 && v.v.dec.value == -1);
	assert_int_equal(amqp_table_get(&tab, "m", &v), 0);
	assert_true(v.type == AMQP_FIELD_LONGSTR && slice_eq(v.v.str, "hi"));
	assert_int_equal(amqp_table_get(&tab, "n", &v), 0);
	assert_true(v.type == AMQP_FIELD_BYTES && v.v.str.len == 1);
	assert_int_equal(amqp_table_get(&tab, "o", &v), 0);
	assert_true(v.type == AMQP_FIELD_TIMESTAMP && v.v.ts == 1700000000);
	assert_int_equal(amqp_table_get(&tab, "p", &v), 0);
	assert_true(v.type == AMQP_FIELD_VOID);
	assert_int_equal(amqp_table_get(&tab, "q", &v), 0);
	assert_true(v.type == AMQP_FIELD_TABLE && v.v.table.raw.len == 0);
	assert_int_equal(amqp_table_get(&tab, "r", &v), 0);
	assert_true(v.type == AMQP_FIELD_ARRAY && v.v.array.raw.len == 2);
	assert_int_equal(amqp_table_get(&tab, "zz", &v), -ERR_NOT_FOUND);
	assert_int_equal(amqp_table_get(&tab, "", &v), -ERR_NOT_FOUND);

	/* Copying every value into a built table re-encodes the same bytes,
	 * except 'L' (written as 'l') and 't' 2 (written as 1). */
	struct amqp_table_entry ents[20];
	size_t n = 0;
	struct amqp_table_iter it;
	struct slice key;
	amqp_table_iter_init(&it, &tab);
	while (amqp_table_iter_next(&it, &key, &v) == 1) {
		assert_true(n < 20);
		ents[n].key = key;
		ents[n].value = v;
		n++;
	}
	assert_int_equal(n, 18);
	struct amqp_table built = amqp_table_of(ents, n);
	size_t len;
	uint8_t *out = table_bytes(&built, &len);
	assert_int_equal(len, sizeof t);
	uint8_t want[sizeof t];
	memcpy(want, t, sizeof t);
	want[7] = 1;
	want[8 + 4 + 4 + 5 + 5 + 7 + 7 + 11 + 2] = 'l';
	assert_memory_equal(out, want, len);
	free(out);

	/* A raw table passes through unchanged. */
	out = table_bytes(&tab, &len);
	assert_int_equal(len, sizeof t);
	assert_memory_equal(out, t, len);
	free(out);
}

/* Tables and arrays nested n deep: F(F(...F(empty))) or A(A(...)). */
static size_t nested(uint8_t *buf, size_t cap, int depth, bool arrays)
{
	/* Built from the inside out: each level adds a prefix. */
	size_t len = 4; /* innermost: an empty table/array's length */
	assert_true(cap >= (size_t)depth * 10 + 4);
	size_t off = cap - 4;
	memset(buf + off, 0, 4);
	for (int i = 1; i < depth; i++) {
		size_t add = arrays ? 1 : 3; /* arrays: letter; tables: key "k" + letter */
		size_t inner = len;
		off -= add + 4;
		if (arrays) {
			buf[off + 4] = 'A';
		} else {
			buf[off + 4] = 1;
			buf[off + 5] = 'k';
			buf[off + 6] = 'F';
		}
		len = inner + add + 4;
		uint32_t body = (uint32_t)(len - 4);
		buf[off] = (uint8_t)(body >> 24);
		buf[off + 1] = (uint8_t)(body >> 16);
		buf[off + 2] = (uint8_t)(body >> 8);
		buf[off + 3] = (uint8_t)body;
	}
	memmove(buf, buf + off, len);
	return len;
}

static void test_table_depth(void **state)
{
	(void)state;
	uint8_t buf[1024];
	struct amqp_table t;
	size_t n = nested(buf, sizeof buf, AMQP_TABLE_MAX_DEPTH, false);
	assert_int_equal(parse_table_bytes(buf, n, &t), 0);
	n = nested(buf, sizeof buf, AMQP_TABLE_MAX_DEPTH + 1, false);
	assert_int_equal(parse_table_bytes(buf, n, &t), -ERR_TOO_LARGE);
	n = nested(buf, sizeof buf, 90, false);
	assert_int_equal(parse_table_bytes(buf, n, &t), -ERR_TOO_LARGE);

	/* A table holding arrays nested 31 deep is 32 levels. */
	uint8_t abuf[512];
	for (int depth = AMQP_TABLE_MAX_DEPTH - 1; depth <= AMQP_TABLE_MAX_DEPTH; depth++) {
		size_t an = nested(abuf, sizeof abuf, depth, true);
		buf[0] = 0;
		buf[1] = 0;
		buf[2] = 0;
		buf[3] = (uint8_t)(an + 3);
		buf[4] = 1;
		buf[5] = 'k';
		buf[6] = 'A';
		memcpy(buf + 7, abuf, an);
		int rc = parse_table_bytes(buf, an + 7, &t);
		assert_int_equal(rc, depth + 1 <= AMQP_TABLE_MAX_DEPTH ? 0 : -ERR_TOO_LARGE);
	}

	/* Deep inside a method: queue.declare arguments. */
	uint8_t m[1100] = { 0, 50, 0, 10, 0, 0, 1, 'q', 0 };
	n = nested(buf, sizeof buf, AMQP_TABLE_MAX_DEPTH + 1, false);
	memcpy(m + 9, buf, n);
	struct amqp_method meth;
	assert_int_equal(decode_payload(m, 9 + n, &meth), -ERR_TOO_LARGE);
	n = nested(buf, sizeof buf, AMQP_TABLE_MAX_DEPTH, false);
	memcpy(m + 9, buf, n);
	assert_int_equal(decode_payload(m, 9 + n, &meth), 0);

	/* Encoding refuses nesting past the cap, e.g. a cycle. */
	struct amqp_table_entry self;
	self.key = amqp_slice_str("me");
	struct amqp_table cyc = amqp_table_of(&self, 1);
	self.value = amqp_field_table(cyc);
	struct writer w;
	writer_init(&w, WLIMIT);
	writer_u8(&w, 0xaa);
	assert_int_equal(amqp_table_encode(&w, &cyc), -ERR_INVALID);
	assert_int_equal(w.len, 1); /* rolled back */
	writer_fini(&w);
}

static void test_table_hostile(void **state)
{
	(void)state;
	struct amqp_table t;
	static const struct {
		const char *what;
		const char *hex;
		int rc;
	} cases[] = {
		{ "length past the end", "00000005" "0161" "7401", -ERR_MALFORMED },
		{ "length 4 GiB", "ffffffff" "016174", -ERR_MALFORMED },
		{ "key past the end", "00000003" "056162", -ERR_MALFORMED },
		{ "no value", "00000002" "0161", -ERR_MALFORMED },
		{ "unknown letter U", "00000005" "016155" "0001", -ERR_MALFORMED },
		{ "unknown letter z", "00000003" "01617a", -ERR_MALFORMED },
		{ "letter 0", "00000003" "016100", -ERR_MALFORMED },
		{ "short int truncated", "00000004" "01617300", -ERR_MALFORMED },
		{ "longstr past the table", "00000008" "016153" "00000002" "78", -ERR_MALFORMED },
		{ "longstr length 4 GiB", "00000008" "016153" "ffffffff" "78", -ERR_MALFORMED },
		{ "bytes past the table", "00000008" "016178" "00000009" "78", -ERR_MALFORMED },
		{ "nested table past its parent", "00000008" "016146" "00000009" "00",
		  -ERR_MALFORMED },
		{ "nested table bad inside", "00000009" "016146" "00000002" "0161",
		  -ERR_MALFORMED },
		{ "array past its parent", "00000008" "016141" "00000005" "74",
		  -ERR_MALFORMED },
		{ "array with unknown letter", "00000009" "016141" "00000002" "5500",
		  -ERR_MALFORMED },
		{ "array value truncated", "00000009" "016141" "00000002" "4900",
		  -ERR_MALFORMED },
		{ "decimal truncated", "00000006" "016144" "020000", -ERR_MALFORMED },
		{ "key with no value after a void", "00000003" "00" "5600", -ERR_MALFORMED },
		{ "empty key, void", "00000002" "0056", 0 },
		{ "empty table", "00000000", 0 },
		{ "void array", "00000009" "016141" "00000002" "5656", 0 },
	};
	uint8_t buf[64];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = unhex(cases[i].hex, buf, sizeof buf);
		int rc = parse_table_bytes(buf, n, &t);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
	}

	/* A raw table that was never checked fails cleanly when iterated. */
	struct amqp_table bad;
	memset(&bad, 0, sizeof bad);
	bad.raw = (struct slice){ (const uint8_t *)"\x01" "a" "Z", 3 };
	assert_int_equal(amqp_table_check(bad.raw), -ERR_MALFORMED);
	struct amqp_field_value v;
	assert_int_equal(amqp_table_get(&bad, "b", &v), -ERR_MALFORMED);
	struct amqp_array badarr;
	memset(&badarr, 0, sizeof badarr);
	badarr.raw = (struct slice){ (const uint8_t *)"I\x00", 2 };
	struct amqp_array_iter ai;
	amqp_array_iter_init(&ai, &badarr);
	assert_int_equal(amqp_array_iter_next(&ai, &v), -ERR_MALFORMED);
	assert_int_equal(amqp_array_iter_next(&ai, &v), -ERR_MALFORMED);

	/* Duplicate keys: the first wins, as a lookup. */
	static const uint8_t dup[] = { 0, 0, 0, 8, 1, 'a', 'b', 1, 1, 'a', 'b', 2 };
	assert_int_equal(parse_table_bytes(dup, sizeof dup, &t), 0);
	assert_int_equal(amqp_table_get(&t, "a", &v), 0);
	assert_int_equal(v.v.i8, 1);

	/* Encoder refusals leave the writer as it was. */
	struct writer w;
	writer_init(&w, WLIMIT);
	writer_u8(&w, 0x55);
	char longkey[257];
	memset(longkey, 'k', 256);
	longkey[256] = 0;
	struct amqp_table_entry e = { amqp_slice_str(longkey), amqp_field_bool(true) };
	struct amqp_table tt = amqp_table_of(&e, 1);
	assert_int_equal(amqp_table_encode(&w, &tt), -ERR_TOO_LARGE);
	assert_int_equal(w.len, 1);
	writer_reset(&w);
	e.key = amqp_slice_str("k");
	e.value.type = (enum amqp_field_type)'U';
	assert_int_equal(amqp_table_encode(&w, &tt), -ERR_INVALID);
	assert_int_equal(w.len, 0);
	e.value = amqp_field_str((struct slice){ NULL, 3 });
	assert_int_equal(amqp_table_encode(&w, &tt), -ERR_INVALID);
	tt.entries = NULL;
	assert_int_equal(amqp_table_encode(&w, &tt), -ERR_INVALID);
	assert_int_equal(w.len, 0);
	writer_fini(&w);

	/* The writer's limit. */
	writer_init(&w, 8);
	e.value = amqp_field_cstr("too long for eight");
	tt = amqp_table_of(&e, 1);
	assert_int_equal(amqp_table_encode(&w, &tt), -ERR_TOO_LARGE);
	writer_fini(&w);
}

/* Values a queue's arguments carry, looked up with their types. */
static void test_table_lookup(void **state)
{
	(void)state;
	const struct amqp_table_entry args[] = {
		{ amqp_slice_str("x-max-length"), amqp_field_i64(1000) },
		{ amqp_slice_str("x-message-ttl"), { .type = AMQP_FIELD_I16, .v.i16 = 500 } },
		{ amqp_slice_str("x-overflow"), amqp_field_cstr("reject-publish") },
		{ amqp_slice_str("x-dead-letter-exchange"), amqp_field_cstr("") },
		{ amqp_slice_str("x-max-priority"), { .type = AMQP_FIELD_U8, .v.u8 = 10 } },
	};
	struct amqp_queue_declare q;
	amqp_queue_declare_init(&q);
	q.queue = amqp_slice_str("work");
	q.durable = true;
	q.arguments = amqp_table_of(args, 5);
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_queue_declare_encode(&w, &q), 0);
	struct amqp_method m;
	assert_int_equal(decode_payload(w.buf, w.len, &m), 0);
	const struct amqp_table *a = &m.args.queue_declare.arguments;
	struct amqp_field_value v;
	int64_t x;
	assert_int_equal(amqp_table_get(a, "x-max-length", &v), 0);
	assert_int_equal(amqp_field_int(&v, &x), 0);
	assert_true(x == 1000);
	assert_int_equal(amqp_table_get(a, "x-message-ttl", &v), 0);
	assert_int_equal(v.type, AMQP_FIELD_I16);
	assert_int_equal(amqp_field_int(&v, &x), 0);
	assert_true(x == 500);
	assert_int_equal(amqp_table_get(a, "x-overflow", &v), 0);
	assert_true(slice_eq(v.v.str, "reject-publish"));
	assert_int_equal(amqp_field_int(&v, &x), -ERR_INVALID);
	assert_int_equal(amqp_table_get(a, "x-dead-letter-exchange", &v), 0);
	assert_int_equal(v.v.str.len, 0);
	assert_int_equal(amqp_table_get(a, "x-max-priority", &v), 0);
	assert_int_equal(amqp_field_int(&v, &x), 0);
	assert_true(x == 10);
	assert_int_equal(amqp_table_get(a, "x-expires", &v), -ERR_NOT_FOUND);
	assert_int_equal(amqp_table_get(a, "x-max-length-bytes", &v), -ERR_NOT_FOUND);

	/* x-death: an array of tables, newest first, appended to decoded headers. */
	const struct amqp_table_entry death[] = {
		{ amqp_slice_str("count"), amqp_field_i64(1) },
		{ amqp_slice_str("reason"), amqp_field_cstr("expired") },
		{ amqp_slice_str("queue"), amqp_field_cstr("work") },
		{ amqp_slice_str("time"), amqp_field_timestamp(1700000000) },
		{ amqp_slice_str("exchange"), amqp_field_cstr("") },
	};
	const struct amqp_field_value deaths[] = { amqp_field_table(amqp_table_of(death, 5)) };
	const struct amqp_table_entry hdrs[] = {
		{ amqp_slice_str("orig"), amqp_field_table(*a) }, /* a raw table inside */
		{ amqp_slice_str("x-death"), amqp_field_array(deaths, 1) },
	};
	struct amqp_table h = amqp_table_of(hdrs, 2);
	size_t len;
	uint8_t *bytes = table_bytes(&h, &len);
	struct amqp_table back;
	assert_int_equal(parse_table_bytes(bytes, len, &back), 0);
	assert_int_equal(amqp_table_get(&back, "x-death", &v), 0);
	struct amqp_array_iter ai;
	struct amqp_field_value d0, r;
	amqp_array_iter_init(&ai, &v.v.array);
	assert_int_equal(amqp_array_iter_next(&ai, &d0), 1);
	assert_int_equal(d0.type, AMQP_FIELD_TABLE);
	assert_int_equal(amqp_table_get(&d0.v.table, "reason", &r), 0);
	assert_true(slice_eq(r.v.str, "expired"));
	assert_int_equal(amqp_table_get(&back, "orig", &v), 0);
	assert_int_equal(amqp_table_get(&v.v.table, "x-overflow", &r), 0);
	assert_true(slice_eq(r.v.str, "reject-publish"));
	free(bytes);
	writer_fini(&w); /* a borrowed from its buffer */
}

/* ---- content headers ---- */

static void test_content_header_hostile(void **state)
{
	(void)state;
	struct amqp_content_header h;
	static const struct {
		const char *what;
		const char *hex;
		int rc;
	} cases[] = {
		{ "no properties", "003c0000" "0000000000000000" "0000", 0 },
		{ "flag of a 15th property", "003c0000" "0000000000000000" "0002",
		  -ERR_MALFORMED },
		{ "continuation, empty word", "003c0000" "0000000000000000" "0001" "0000", 0 },
		{ "continuation, two empty words", "003c0000" "0000000000000000" "0001" "0001" "0000",
		  0 },
		{ "continuation with a flag", "003c0000" "0000000000000000" "0001" "8000",
		  -ERR_MALFORMED },
		{ "continuation missing", "003c0000" "0000000000000000" "8001" "00",
		  -ERR_MALFORMED },
		{ "present property missing", "003c0000" "0000000000000000" "8000",
		  -ERR_MALFORMED },
		{ "shortstr past the end", "003c0000" "0000000000000000" "8000" "05616263",
		  -ERR_MALFORMED },
		{ "trailing bytes", "003c0000" "0000000000000000" "0000" "00", -ERR_MALFORMED },
		{ "bad headers table", "003c0000" "0000000000000000" "2000" "00000003016155",
		  -ERR_MALFORMED },
		{ "class without content", "000a0000" "0000000000000000" "0000", -ERR_NOT_FOUND },
		{ "short", "003c0000" "00000000000000", -ERR_MALFORMED },
	};
	uint8_t buf[64];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = unhex(cases[i].hex, buf, sizeof buf);
		struct reader r;
		reader_init(&r, buf, n);
		int rc = amqp_content_header_decode(&r, &h);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
	}

	/* Encoding: only known flags; a class without properties is refused. */
	memset(&h, 0, sizeof h);
	h.class_id = AMQP_CLASS_BASIC;
	amqp_basic_properties_init(&h.props.basic);
	h.props.basic.flags = 0x0002;
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_content_header_encode(&w, &h), -ERR_INVALID);
	assert_int_equal(w.len, 0);
	h.props.basic.flags = AMQP_BASIC_FLAG_EXPIRATION;
	h.props.basic.expiration = amqp_slice_str("60000");
	assert_int_equal(amqp_content_header_encode(&w, &h), 0);
	assert_int_equal(w.len, 12 + 2 + 6);
	assert_int_equal(w.buf[12], 0x01);
	assert_int_equal(w.buf[13], 0x00);
	h.class_id = AMQP_CLASS_QUEUE;
	assert_int_equal(amqp_content_header_encode(&w, &h), -ERR_NOT_FOUND);
	writer_fini(&w);
}

/* ---- frames ---- */

static void test_frames(void **state)
{
	(void)state;
	struct reader r;
	struct amqp_frame f;

	/* Heartbeat: 8 bytes, channel 0, size 0. */
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_frame_heartbeat_encode(&w), 0);
	assert_int_equal(w.len, 8);
	assert_memory_equal(w.buf, "\x08\x00\x00\x00\x00\x00\x00\xce", 8);
	reader_init(&r, w.buf, w.len);
	assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), 0);
	assert_int_equal(f.type, AMQP_FRAME_HEARTBEAT);
	assert_int_equal(f.size, 0);
	assert_non_null(f.payload.data);
	writer_fini(&w);

	/* Frame-end must be 0xCE; nothing is consumed on failure. */
	static const uint8_t bad_end[] = { 1, 0, 1, 0, 0, 0, 4, 0, 20, 0, 41, 0xcf };
	reader_init(&r, bad_end, sizeof bad_end);
	assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), -ERR_MALFORMED);
	assert_int_equal(f.channel, 1);
	assert_int_equal(f.size, 4);
	assert_int_equal(reader_offset(&r), 0);

	/* Unknown frame types (4: the PDF's old heartbeat). */
	static const uint8_t types[] = { 0, 4, 5, 9, 0x41 };
	for (size_t i = 0; i < sizeof types; i++) {
		uint8_t fr[8] = { types[i], 0, 0, 0, 0, 0, 0, 0xce };
		reader_init(&r, fr, sizeof fr);
		assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), -ERR_MALFORMED);
		assert_int_equal(f.type, types[i]);
	}

	/* Too large: refused from the 7 header bytes alone. */
	static const uint8_t huge[] = { 3, 0, 1, 0xff, 0xff, 0xff, 0xff };
	reader_init(&r, huge, sizeof huge);
	assert_int_equal(amqp_frame_parse(&r, 131072, &f), -ERR_TOO_LARGE);
	assert_int_equal(f.size, 0xffffffffu);
	static const uint8_t big[] = { 3, 0, 1, 0, 0, 0x10, 0x01 }; /* 4097 */
	reader_init(&r, big, sizeof big);
	assert_int_equal(amqp_frame_parse(&r, 4096, &f), -ERR_TOO_LARGE);
	reader_init(&r, big, sizeof big);
	assert_int_equal(amqp_frame_parse(&r, 4097, &f), -ERR_AGAIN);
	assert_int_equal(f.size, 4097);
	assert_int_equal(reader_offset(&r), 0);
	reader_init(&r, big, sizeof big);
	assert_int_equal(amqp_frame_parse(&r, 0, &f), -ERR_TOO_LARGE);

	/* Partial frames ask for more; the header is reported once complete. */
	static const uint8_t part[] = { 1, 0, 2, 0, 0, 0, 4, 0, 20 };
	for (size_t cut = 0; cut <= sizeof part; cut++) {
		reader_init(&r, part, cut);
		assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), -ERR_AGAIN);
		assert_int_equal(reader_offset(&r), 0);
		if (cut >= AMQP_FRAME_HEADER_SIZE)
			assert_int_equal(f.size, 4);
	}
	/* A failed reader never parses. */
	reader_init(&r, part, sizeof part);
	reader_fail(&r);
	assert_int_equal(amqp_frame_parse(&r, AMQP_FRAME_MIN_SIZE, &f), -ERR_MALFORMED);

	/* Method decode: unknown method names its id; trailing bytes fail. */
	static const uint8_t unknown[] = { 0, 60, 0, 200, 0 };
	struct amqp_method m;
	assert_int_equal(decode_payload(unknown, sizeof unknown, &m), -ERR_NOT_FOUND);
	assert_int_equal(m.id, 0x003C00C8u);
	assert_null(m.desc);
	static const uint8_t hostile_longstr[] = { 0, 10, 0, 21, 0xff, 0xff, 0xff, 0xff, 'x' };
	assert_int_equal(decode_payload(hostile_longstr, sizeof hostile_longstr, &m),
		-ERR_MALFORMED);
	assert_int_equal(m.id, AMQP_CONNECTION_SECURE_OK);
	static const uint8_t hostile_shortstr[] = { 0, 20, 0, 10, 0xff, 'x' };
	assert_int_equal(decode_payload(hostile_shortstr, sizeof hostile_shortstr, &m),
		-ERR_MALFORMED);
	static const uint8_t hostile_table[] = { 0, 10, 0, 11, 0x7f, 0xff, 0xff, 0xff, 0 };
	assert_int_equal(decode_payload(hostile_table, sizeof hostile_table, &m),
		-ERR_MALFORMED);
}

static void test_content_split(void **state)
{
	(void)state;
	enum { BODY = 10000, FMAX = 4096 };
	uint8_t *body = malloc(BODY);
	assert_non_null(body);
	for (size_t i = 0; i < BODY; i++)
		body[i] = (uint8_t)(i * 7);
	struct amqp_content_header h;
	memset(&h, 0, sizeof h);
	h.class_id = AMQP_CLASS_BASIC;
	h.body_size = BODY;
	amqp_basic_properties_init(&h.props.basic);
	struct writer w;
	writer_init(&w, WLIMIT);
	assert_int_equal(amqp_frame_content_encode(&w, 3, &h, body, BODY, FMAX), 0);

	struct reader r;
	struct amqp_frame f;
	reader_init(&r, w.buf, w.len);
	assert_int_equal(amqp_frame_parse(&r, FMAX, &f), 0);
	assert_int_equal(f.type, AMQP_FRAME_HEADER);
	static const size_t sizes[] = { FMAX - 8, FMAX - 8, BODY - 2 * (FMAX - 8) };
	size_t off = 0;
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(amqp_frame_parse(&r, FMAX - 8, &f), 0);
		assert_int_equal(f.type, AMQP_FRAME_BODY);
		assert_int_equal(f.channel, 3);
		assert_int_equal(f.size, sizes[i]);
		assert_memory_equal(f.payload.data, body + off, f.size);
		off += f.size;
	}
	assert_int_equal(reader_remaining(&r), 0);

	/* Empty body: the header frame alone. Bad arguments leave w alone. */
	writer_reset(&w);
	h.body_size = 0;
	assert_int_equal(amqp_frame_content_encode(&w, 3, &h, NULL, 0, FMAX), 0);
	assert_int_equal(w.len, 8 + 14);
	writer_reset(&w);
	assert_int_equal(amqp_frame_content_encode(&w, 3, &h, body, 5, FMAX), -ERR_INVALID);
	h.body_size = 5;
	assert_int_equal(amqp_frame_content_encode(&w, 3, &h, body, 5, 8), -ERR_INVALID);
	assert_int_equal(w.len, 0);
	/* A writer limit hit in the middle rolls everything back. */
	writer_fini(&w);
	writer_init(&w, 100);
	writer_u8(&w, 1);
	h.body_size = BODY;
	assert_int_equal(amqp_frame_content_encode(&w, 3, &h, body, BODY, FMAX), -ERR_TOO_LARGE);
	assert_int_equal(w.len, 1);
	writer_fini(&w);

	/* Encoder errors inside a method frame roll back too. */
	writer_init(&w, WLIMIT);
	struct amqp_basic_consume_ok ok;
	char tag[300];
	memset(tag, 't', sizeof tag);
	ok.consumer_tag = (struct slice){ (const uint8_t *)tag, 256 };
	assert_int_equal(amqp_frame_method_encode(&w, 1, &amqp_basic_consume_ok_desc, &ok),
		-ERR_TOO_LARGE);
	assert_int_equal(w.len, 0);
	ok.consumer_tag.len = 255;
	w.err = 0;
	assert_int_equal(amqp_frame_method_encode(&w, 1, &amqp_basic_consume_ok_desc, &ok), 0);
	assert_int_equal(w.len, 8 + 4 + 256);
	writer_fini(&w);
	free(body);
}

static void test_protocol_header(void **state)
{
	(void)state;
	struct reader r;
	static const uint8_t good[] = { 'A', 'M', 'Q', 'P', 0, 0, 9, 1, 1 };
	for (size_t cut = 0; cut < 8; cut++) {
		reader_init(&r, good, cut);
		assert_int_equal(amqp_protocol_header_check(&r), -ERR_AGAIN);
		assert_int_equal(reader_offset(&r), 0);
	}
	reader_init(&r, good, sizeof good);
	assert_int_equal(amqp_protocol_header_check(&r), 0);
	assert_int_equal(reader_offset(&r), 8);
	static const uint8_t v10[] = { 'A', 'M', 'Q', 'P', 0, 1, 0, 0 };
	reader_init(&r, v10, sizeof v10);
	assert_int_equal(amqp_protocol_header_check(&r), -ERR_UNSUPPORTED);
	static const uint8_t http[] = { 'G', 'E', 'T' };
	reader_init(&r, http, sizeof http);
	assert_int_equal(amqp_protocol_header_check(&r), -ERR_UNSUPPORTED);
	assert_int_equal(sizeof AMQP_PROTOCOL_HEADER - 1, AMQP_PROTOCOL_HEADER_SIZE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_all),
		cmocka_unit_test(test_method_table),
		cmocka_unit_test(test_constants),
		cmocka_unit_test(test_defaults_and_bits),
		cmocka_unit_test(test_server_connection_start),
		cmocka_unit_test(test_pika_handshake),
		cmocka_unit_test(test_pika_publish),
		cmocka_unit_test(test_all_properties),
		cmocka_unit_test(test_table_types),
		cmocka_unit_test(test_table_depth),
		cmocka_unit_test(test_table_hostile),
		cmocka_unit_test(test_table_lookup),
		cmocka_unit_test(test_content_header_hostile),
		cmocka_unit_test(test_frames),
		cmocka_unit_test(test_content_split),
		cmocka_unit_test(test_protocol_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
