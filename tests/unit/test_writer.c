/*
 * test_writer.c: the bounded writer.
 *
 * Byte-exact encodings against known vectors (Kafka zigzag varints, big-endian
 * integers, the string and bytes framings), random round trips through the
 * reader with a fixed seed, and the limit: a write past it sets -ERR_TOO_LARGE,
 * writes nothing, and the buffer never grows past the limit. Also reserve and
 * patch, take, reset, and the per-type length caps.
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

#define SEED 0x3141f00du

/*
 * Under AddressSanitizer or ThreadSanitizer a huge malloc aborts the process
 * unless this is set; test_nomem needs realloc to return NULL as libc does.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "allocator_may_return_null=1";
}

static uint64_t rng_state = SEED;

/* splitmix64: fixed and portable, so a failure reproduces from the seed. */
static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Asserts the writer holds exactly the bytes spelled by hex (spaces allowed). */
static void assert_bytes_hex(const struct writer *w, const char *hex)
{
	uint8_t want[256];
	size_t n = 0;
	for (const char *c = hex; *c;) {
		if (*c == ' ') {
			c++;
			continue;
		}
		unsigned v;
		assert_int_equal(sscanf(c, "%2x", &v), 1);
		want[n++] = (uint8_t)v;
		c += 2;
	}
	if (w->len != n)
		fail_msg("length %zu, want %zu (%s)", w->len, n, hex);
	if (n)
		assert_memory_equal(w->buf, want, n);
}

/* Runs one write into a fresh writer and compares the bytes. */
#define EXPECT(hex, call)                                  \
	do {                                               \
		struct writer w_;                          \
		writer_init(&w_, 1024);                    \
		struct writer *w = &w_;                    \
		call;                                      \
		assert_int_equal(w_.err, 0);               \
		assert_bytes_hex(&w_, hex);                \
		writer_fini(&w_);                          \
	} while (0)

static void test_vectors_fixed(void **state)
{
	(void)state;
	EXPECT("00", writer_u8(w, 0));
	EXPECT("ff", writer_u8(w, 255));
	EXPECT("80", writer_i8(w, INT8_MIN));
	EXPECT("ff", writer_i8(w, -1));
	EXPECT("beef", writer_u16(w, 0xbeef));
	EXPECT("8000", writer_i16(w, INT16_MIN));
	EXPECT("ffff", writer_i16(w, -1));
	EXPECT("01020304", writer_u32(w, 0x01020304));
	EXPECT("80000000", writer_i32(w, INT32_MIN));
	EXPECT("7fffffff", writer_i32(w, INT32_MAX));
	EXPECT("ffffffff", writer_i32(w, -1));
	EXPECT("0123456789abcdef", writer_u64(w, 0x0123456789abcdefull));
	EXPECT("8000000000000000", writer_i64(w, INT64_MIN));
	EXPECT("ffffffffffffffff", writer_i64(w, -1));
	EXPECT("3ff8000000000000", writer_f64(w, 1.5));
	EXPECT("c00921fb54442d18", writer_f64(w, -3.141592653589793));
	EXPECT("8000000000000000", writer_f64(w, -0.0));
	EXPECT("0000000000", writer_zeros(w, 5));
	EXPECT("", writer_zeros(w, 0));
	EXPECT("", writer_bytes(w, NULL, 0));
	EXPECT("616263", writer_bytes(w, "abc", 3));
}

static void test_vectors_varint(void **state)
{
	(void)state;
	/* Kafka zigzag varint. */
	EXPECT("00", writer_varint(w, 0));
	EXPECT("01", writer_varint(w, -1));
	EXPECT("02", writer_varint(w, 1));
	EXPECT("03", writer_varint(w, -2));
	EXPECT("7e", writer_varint(w, 63));
	EXPECT("7f", writer_varint(w, -64));
	EXPECT("8001", writer_varint(w, 64));
	EXPECT("8101", writer_varint(w, -65));
	EXPECT("ac02", writer_varint(w, 150));
	EXPECT("feffffff0f", writer_varint(w, INT32_MAX));
	EXPECT("ffffffff0f", writer_varint(w, INT32_MIN));
	/* Unsigned. */
	EXPECT("00", writer_uvarint(w, 0));
	EXPECT("01", writer_uvarint(w, 1));
	EXPECT("7f", writer_uvarint(w, 127));
	EXPECT("8001", writer_uvarint(w, 128));
	EXPECT("ac02", writer_uvarint(w, 300));
	EXPECT("ff7f", writer_uvarint(w, 16383));
	EXPECT("808001", writer_uvarint(w, 16384));
	EXPECT("ffffffff0f", writer_uvarint(w, UINT32_MAX));
	/* 64-bit. */
	EXPECT("00", writer_varlong(w, 0));
	EXPECT("01", writer_varlong(w, -1));
	EXPECT("02", writer_varlong(w, 1));
	EXPECT("7f", writer_varlong(w, -64));
	EXPECT("8001", writer_varlong(w, 64));
	EXPECT("8080808010", writer_varlong(w, (int64_t)INT32_MAX + 1));
	EXPECT("feffffffffffffffff01", writer_varlong(w, INT64_MAX));
	EXPECT("ffffffffffffffffff01", writer_varlong(w, INT64_MIN));
	EXPECT("ac02", writer_uvarlong(w, 300));
	EXPECT("8080808010", writer_uvarlong(w, 1ull << 32));
	EXPECT("ffffffffffffffff7f", writer_uvarlong(w, INT64_MAX));
	EXPECT("80808080808080808001", writer_uvarlong(w, 1ull << 63));
	EXPECT("ffffffffffffffffff01", writer_uvarlong(w, UINT64_MAX));
}

static void test_vectors_strings(void **state)
{
	(void)state;
	EXPECT("0003 616263", writer_string(w, "abc", 3));
	EXPECT("0000", writer_string(w, "", 0));
	EXPECT("ffff", writer_string(w, NULL, 0));
	EXPECT("00000003 616263", writer_kbytes(w, "abc", 3));
	EXPECT("00000000", writer_kbytes(w, "", 0));
	EXPECT("ffffffff", writer_kbytes(w, NULL, 0));
	EXPECT("04 616263", writer_compact_bytes(w, "abc", 3));
	EXPECT("01", writer_compact_bytes(w, "", 0));
	EXPECT("00", writer_compact_bytes(w, NULL, 0));
	EXPECT("06 616263", writer_varint_bytes(w, "abc", 3));
	EXPECT("00", writer_varint_bytes(w, "", 0));
	EXPECT("01", writer_varint_bytes(w, NULL, 0));
	EXPECT("03 616263", writer_shortstr(w, "abc", 3));
	EXPECT("00", writer_shortstr(w, "", 0));
	EXPECT("00000003 616263", writer_longstr(w, "abc", 3));
	EXPECT("00000000", writer_longstr(w, "", 0));

	/* A 200-byte compact string takes a two-byte length: 201 = c9 01. */
	uint8_t data[200];
	memset(data, 'z', sizeof data);
	struct writer w;
	writer_init(&w, 1024);
	writer_compact_bytes(&w, data, sizeof data);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.len, 202);
	assert_int_equal(w.buf[0], 0xc9);
	assert_int_equal(w.buf[1], 0x01);
	assert_memory_equal(w.buf + 2, data, sizeof data);
	writer_fini(&w);
}

/* ---- round trips ----------------------------------------------------------- */

enum kind {
	K_U8, K_U16, K_U32, K_U64, K_I8, K_I16, K_I32, K_I64, K_F64,
	K_UVARINT, K_UVARLONG, K_VARINT, K_VARLONG,
	K_STRING, K_KBYTES, K_COMPACT, K_VARINT_BYTES, K_SHORTSTR, K_LONGSTR, K_RAW,
	K_COUNT
};

struct field {
	enum kind kind;
	uint64_t v;          /* integer value (bit pattern for f64) */
	const uint8_t *data; /* for byte kinds; NULL = null value */
	size_t len;
};

/* A random value of every magnitude: shifting spreads lengths evenly. */
static uint64_t rand_value(void)
{
	static const uint64_t edges[] = { 0, 1, 127, 128, 255, 256, 16383, 16384,
					  0x7fffffff, 0x80000000, 0xffffffff, 1ull << 32,
					  INT64_MAX, (uint64_t)INT64_MIN, UINT64_MAX };
	if (rng() % 8 == 0)
		return edges[rng() % (sizeof edges / sizeof edges[0])];
	uint64_t v = rng() >> (rng() % 64);
	return (rng() & 1) ? v : ~v;
}

static struct field rand_field(const uint8_t *pool, size_t pool_len)
{
	struct field f = { .kind = (enum kind)(rng() % K_COUNT), .v = rand_value() };
	size_t maxlen = f.kind == K_SHORTSTR ? 255 : 600;
	f.len = (size_t)(rng() % (maxlen + 1));
	if (rng() % 4 == 0)
		f.len = rng() % 3;
	f.data = pool + rng() % (pool_len - f.len);
	int nullable = f.kind == K_STRING || f.kind == K_KBYTES || f.kind == K_COMPACT ||
		       f.kind == K_VARINT_BYTES;
	if (nullable && rng() % 6 == 0) {
		f.data = NULL;
		f.len = 0;
	}
	return f;
}

static void write_field(struct writer *w, const struct field *f)
{
	switch (f->kind) {
	case K_U8: writer_u8(w, (uint8_t)f->v); break;
	case K_U16: writer_u16(w, (uint16_t)f->v); break;
	case K_U32: writer_u32(w, (uint32_t)f->v); break;
	case K_U64: writer_u64(w, f->v); break;
	case K_I8: writer_i8(w, (int8_t)f->v); break;
	case K_I16: writer_i16(w, (int16_t)f->v); break;
	case K_I32: writer_i32(w, (int32_t)f->v); break;
	case K_I64: writer_i64(w, (int64_t)f->v); break;
	case K_F64: {
		double d;
		memcpy(&d, &f->v, sizeof d);
		writer_f64(w, d);
		break;
	}
	case K_UVARINT: writer_uvarint(w, (uint32_t)f->v); break;
	case K_UVARLONG: writer_uvarlong(w, f->v); break;
	case K_VARINT: writer_varint(w, (int32_t)f->v); break;
	case K_VARLONG: writer_varlong(w, (int64_t)f->v); break;
	case K_STRING: writer_string(w, f->data, f->len); break;
	case K_KBYTES: writer_kbytes(w, f->data, f->len); break;
	case K_COMPACT: writer_compact_bytes(w, f->data, f->len); break;
	case K_VARINT_BYTES: writer_varint_bytes(w, f->data, f->len); break;
	case K_SHORTSTR: writer_shortstr(w, f->data, f->len); break;
	case K_LONGSTR: writer_longstr(w, f->data, f->len); break;
	case K_RAW: writer_bytes(w, f->data, f->len); break;
	default: fail();
	}
}

static void expect_slice(int i, struct slice s, const struct field *f)
{
	if ((s.data == NULL) != (f->data == NULL))
		fail_msg("field %d kind %d: null-ness differs", i, f->kind);
	if (s.len != f->len)
		fail_msg("field %d kind %d: len %zu want %zu", i, f->kind, s.len, f->len);
	if (f->len)
		assert_memory_equal(s.data, f->data, f->len);
}

static void expect_int(int i, const struct field *f, uint64_t got, uint64_t want)
{
	if (got != want)
		fail_msg("field %d kind %d: got %#llx want %#llx", i, f->kind,
			 (unsigned long long)got, (unsigned long long)want);
}

static void read_field(struct reader *r, int i, const struct field *f)
{
	switch (f->kind) {
	case K_U8: expect_int(i, f, reader_u8(r), (uint8_t)f->v); break;
	case K_U16: expect_int(i, f, reader_u16(r), (uint16_t)f->v); break;
	case K_U32: expect_int(i, f, reader_u32(r), (uint32_t)f->v); break;
	case K_U64: expect_int(i, f, reader_u64(r), f->v); break;
	case K_I8: expect_int(i, f, (uint64_t)reader_i8(r), (uint64_t)(int8_t)f->v); break;
	case K_I16: expect_int(i, f, (uint64_t)reader_i16(r), (uint64_t)(int16_t)f->v); break;
	case K_I32: expect_int(i, f, (uint64_t)reader_i32(r), (uint64_t)(int32_t)f->v); break;
	case K_I64: expect_int(i, f, (uint64_t)reader_i64(r), f->v); break;
	case K_F64: {
		double d = reader_f64(r);
		uint64_t u;
		memcpy(&u, &d, sizeof u);
		expect_int(i, f, u, f->v); /* bit-exact, NaN payloads included */
		break;
	}
	case K_UVARINT: expect_int(i, f, reader_uvarint(r), (uint32_t)f->v); break;
	case K_UVARLONG: expect_int(i, f, reader_uvarlong(r), f->v); break;
	case K_VARINT: expect_int(i, f, (uint64_t)reader_varint(r), (uint64_t)(int32_t)f->v); break;
	case K_VARLONG: expect_int(i, f, (uint64_t)reader_varlong(r), f->v); break;
	case K_STRING: expect_slice(i, reader_string(r, 1), f); break;
	case K_KBYTES: expect_slice(i, reader_kbytes(r, 1), f); break;
	case K_COMPACT: expect_slice(i, reader_compact_bytes(r, 1), f); break;
	case K_VARINT_BYTES: expect_slice(i, reader_varint_bytes(r), f); break;
	case K_SHORTSTR: expect_slice(i, reader_shortstr(r), f); break;
	case K_LONGSTR: expect_slice(i, reader_longstr(r), f); break;
	case K_RAW: expect_slice(i, reader_bytes(r, f->len), f); break;
	default: fail();
	}
	if (r->err)
		fail_msg("field %d kind %d: reader failed at offset %zu", i, f->kind,
			 reader_offset(r));
}

static void test_round_trip_random(void **state)
{
	(void)state;
	enum { N = 20000, POOL = 4096 };
	printf("test_writer: random seed 0x%08x\n", SEED);
	rng_state = SEED;
	uint8_t *pool = malloc(POOL);
	struct field *fields = malloc(N * sizeof *fields);
	assert_non_null(pool);
	assert_non_null(fields);
	for (size_t i = 0; i < POOL; i++)
		pool[i] = (uint8_t)rng();

	for (int round = 0; round < 4; round++) {
		struct writer w;
		writer_init(&w, SIZE_MAX);
		int n = round == 0 ? 1 : N / (round + 1);
		for (int i = 0; i < n; i++) {
			fields[i] = rand_field(pool, POOL);
			size_t before = w.len;
			write_field(&w, &fields[i]);
			assert_int_equal(w.err, 0);
			assert_true(w.len > before || fields[i].kind == K_RAW);
		}
		struct reader r;
		reader_init(&r, w.buf, w.len);
		for (int i = 0; i < n; i++)
			read_field(&r, i, &fields[i]);
		assert_int_equal(reader_remaining(&r), 0);
		writer_fini(&w);
	}
	free(fields);
	free(pool);
}

/* Every integer edge value through each integer kind, one at a time. */
static void test_round_trip_edges(void **state)
{
	(void)state;
	static const uint64_t vals[] = { 0, 1, 2, 63, 64, 127, 128, 255, 256, 0x7fff, 0x8000,
					 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff,
					 1ull << 32, INT64_MAX, (uint64_t)INT64_MIN, UINT64_MAX,
					 (uint64_t)-1, (uint64_t)-64, (uint64_t)-65,
					 (uint64_t)INT32_MIN, (uint64_t)INT32_MIN - 1 };
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		for (int k = K_U8; k <= K_VARLONG; k++) {
			struct field f = { .kind = (enum kind)k, .v = vals[i] };
			struct writer w;
			writer_init(&w, 64);
			write_field(&w, &f);
			assert_int_equal(w.err, 0);
			struct reader r;
			reader_init(&r, w.buf, w.len);
			read_field(&r, (int)i, &f);
			assert_int_equal(reader_remaining(&r), 0);
			writer_fini(&w);
		}
	}
}

/* ---- the limit --------------------------------------------------------------- */

static void test_limit_basic(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, 10);
	writer_u64(&w, 0x0102030405060708ull);
	assert_int_equal(w.err, 0);
	writer_u32(&w, 0xdeadbeef); /* 12 > 10: dropped whole */
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_int_equal(w.len, 8);
	assert_true(w.cap <= 10);
	/* Sticky: even a write that would fit is dropped now. */
	writer_u8(&w, 0xff);
	writer_bytes(&w, "x", 1);
	writer_varint(&w, 1);
	assert_int_equal(w.len, 8);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_bytes_hex(&w, "0102030405060708");
	writer_fini(&w);

	/* Filling to exactly the limit is fine; one more byte is not. */
	writer_init(&w, 10);
	writer_zeros(&w, 7);
	writer_bytes(&w, "abc", 3);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.len, 10);
	assert_true(w.cap <= 10);
	writer_u8(&w, 1);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_int_equal(w.len, 10);
	writer_fini(&w);

	/* Limit 0: empty writes succeed without allocating, any byte fails. */
	writer_init(&w, 0);
	writer_bytes(&w, NULL, 0);
	writer_zeros(&w, 0);
	writer_bytes(&w, "abc", 0);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.len, 0);
	assert_null(w.buf);
	writer_u8(&w, 1);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_int_equal(w.cap, 0);
	writer_fini(&w);

	/* Sizes that would overflow len + n are rejected, not wrapped. */
	writer_init(&w, 100);
	writer_u8(&w, 7);
	writer_zeros(&w, SIZE_MAX);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_int_equal(w.len, 1);
	writer_fini(&w);
	writer_init(&w, SIZE_MAX);
	writer_u8(&w, 7);
	writer_bytes(&w, "x", SIZE_MAX); /* rejected before data is read */
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_int_equal(w.len, 1);
	writer_fini(&w);

	/* A multi-byte field straddling the limit writes none of its bytes. */
	writer_init(&w, 3);
	writer_u16(&w, 0x1122);
	writer_string(&w, "a", 1); /* 3 bytes, 5 total */
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_bytes_hex(&w, "1122");
	writer_fini(&w);
	writer_init(&w, 3);
	writer_u16(&w, 0x1122);
	writer_uvarint(&w, 300); /* 2 bytes, 4 total */
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_bytes_hex(&w, "1122");
	writer_fini(&w);
}

/*
 * Model check: the same random field sequence written with no limit and with
 * a random limit. The limited writer must hold exactly the bytes of the fields
 * before the first one that would cross the limit, have err set iff one did,
 * and never allocate past the limit. (A length-prefixed field may be written as
 * two writes; check the prefix property at byte level instead of per field.)
 */
static void test_limit_model(void **state)
{
	(void)state;
	enum { POOL = 1024 };
	uint8_t pool[POOL];
	rng_state = SEED ^ 0xabcdef;
	for (size_t i = 0; i < POOL; i++)
		pool[i] = (uint8_t)rng();
	for (int trial = 0; trial < 400; trial++) {
		struct field f[40];
		int n = 1 + (int)(rng() % 40);
		struct writer full;
		writer_init(&full, SIZE_MAX);
		size_t ends[41];
		ends[0] = 0;
		for (int i = 0; i < n; i++) {
			f[i] = rand_field(pool, POOL);
			if (f[i].len > 300 && f[i].kind != K_SHORTSTR)
				f[i].len = 300;
			write_field(&full, &f[i]);
			ends[i + 1] = full.len;
		}
		assert_int_equal(full.err, 0);
		size_t limit = (size_t)(rng() % (full.len + 20));
		struct writer w;
		writer_init(&w, limit);
		for (int i = 0; i < n; i++) {
			write_field(&w, &f[i]);
			assert_true(w.len <= limit);
			assert_true(w.cap <= limit);
		}
		/* Fields that fit wholly are all there. */
		int fit = 0;
		while (fit < n && ends[fit + 1] <= limit)
			fit++;
		assert_true(w.len >= ends[fit]);
		assert_true(w.len <= limit);
		if (w.len)
			assert_memory_equal(w.buf, full.buf, w.len);
		if (fit == n) {
			assert_int_equal(w.err, 0);
			assert_int_equal(w.len, full.len);
		} else {
			assert_int_equal(w.err, -ERR_TOO_LARGE);
			assert_true(w.len < ends[fit + 1]); /* the crossing field is cut */
		}
		writer_fini(&w);
		writer_fini(&full);
	}
}

/* Growth one byte at a time never passes the limit, whatever it is. */
static void test_growth_respects_limit(void **state)
{
	(void)state;
	static const size_t limits[] = { 1, 2, 63, 64, 65, 100, 127, 128, 129, 1000, 4096, 70000 };
	for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
		struct writer w;
		writer_init(&w, limits[i]);
		for (size_t k = 0; k < limits[i]; k++) {
			writer_u8(&w, (uint8_t)(k * 7));
			assert_true(w.cap <= limits[i]);
			assert_true(w.cap >= w.len);
		}
		assert_int_equal(w.err, 0);
		assert_int_equal(w.len, limits[i]);
		for (size_t k = 0; k < limits[i]; k++)
			assert_int_equal(w.buf[k], (uint8_t)(k * 7));
		writer_u8(&w, 0);
		assert_int_equal(w.err, -ERR_TOO_LARGE);
		assert_int_equal(w.len, limits[i]);
		writer_fini(&w);
	}
}

/* Out of memory sets -ERR_NOMEM and keeps what was written. */
static void test_nomem(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, SIZE_MAX);
	writer_u32(&w, 0xcafebabe);
	writer_zeros(&w, SIZE_MAX / 4);
	assert_int_equal(w.err, -ERR_NOMEM);
	assert_bytes_hex(&w, "cafebabe");
	writer_u8(&w, 1);
	assert_int_equal(w.len, 4);
	writer_fini(&w);
}

/* ---- per-type length caps ----------------------------------------------------- */

/* A cap violation: -ERR_TOO_LARGE, nothing written, even with no limit. */
#define EXPECT_REJECT(call)                                        \
	do {                                                       \
		struct writer w_;                                  \
		writer_init(&w_, SIZE_MAX);                        \
		struct writer *w = &w_;                            \
		writer_u8(w, 0x42);                                \
		call;                                              \
		assert_int_equal(w_.err, -ERR_TOO_LARGE);          \
		assert_bytes_hex(&w_, "42");                       \
		writer_u8(w, 0x43); /* and stays failed */         \
		assert_int_equal(w_.len, 1);                       \
		writer_fini(&w_);                                  \
	} while (0)

static void test_length_caps(void **state)
{
	(void)state;
	static uint8_t big[70000];
	memset(big, 'q', sizeof big);

	/* AMQP shortstr: 255 is the most. */
	EXPECT_REJECT(writer_shortstr(w, big, 256));
	EXPECT_REJECT(writer_shortstr(w, big, 70000));
	struct writer w;
	writer_init(&w, 1024);
	writer_shortstr(&w, big, 255);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.len, 256);
	assert_int_equal(w.buf[0], 255);
	writer_fini(&w);

	/* Kafka STRING: INT16_MAX is the most. */
	EXPECT_REJECT(writer_string(w, big, 32768));
	writer_init(&w, SIZE_MAX);
	writer_string(&w, big, 32767);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.len, 2 + 32767);
	assert_int_equal(w.buf[0], 0x7f);
	assert_int_equal(w.buf[1], 0xff);
	writer_fini(&w);

	/* Lengths past 32 bits: rejected on the length alone, data never read. */
	EXPECT_REJECT(writer_kbytes(w, big, (size_t)INT32_MAX + 1));
	EXPECT_REJECT(writer_varint_bytes(w, big, (size_t)INT32_MAX + 1));
	EXPECT_REJECT(writer_compact_bytes(w, big, (size_t)UINT32_MAX));
	EXPECT_REJECT(writer_longstr(w, big, (size_t)UINT32_MAX + 1));
	EXPECT_REJECT(writer_string(w, big, SIZE_MAX));

	/* A cap violation after an earlier error keeps the first error. */
	writer_init(&w, 1);
	writer_u16(&w, 1);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	writer_put_u16(&w, 100, 1);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	writer_fini(&w);
}

/* ---- reserve and patch --------------------------------------------------------- */

static void test_reserve_patch(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, 1024);
	writer_u8(&w, 0xaa);
	size_t len_pos = writer_reserve(&w, 4);
	assert_int_equal(len_pos, 1);
	size_t crc_pos = writer_reserve(&w, 8);
	assert_int_equal(crc_pos, 5);
	size_t attr_pos = writer_reserve(&w, 2);
	assert_int_equal(attr_pos, 13);
	writer_bytes(&w, "body", 4);
	/* Reserved bytes read as zero until patched. */
	assert_bytes_hex(&w, "aa 00000000 0000000000000000 0000 626f6479");
	writer_put_u32(&w, len_pos, (uint32_t)(w.len - 5));
	writer_put_u64(&w, crc_pos, 0x1122334455667788ull);
	writer_put_u16(&w, attr_pos, 0xbeef);
	assert_int_equal(w.err, 0);
	assert_bytes_hex(&w, "aa 0000000e 1122334455667788 beef 626f6479");
	/* Patch the very last bytes. */
	writer_put_u32(&w, w.len - 4, 0x01020304);
	assert_int_equal(w.err, 0);
	assert_bytes_hex(&w, "aa 0000000e 1122334455667788 beef 01020304");
	/* Patches that reach past what was written are rejected and change nothing. */
	writer_put_u32(&w, w.len - 3, 0xffffffff);
	assert_int_equal(w.err, -ERR_INVALID);
	assert_bytes_hex(&w, "aa 0000000e 1122334455667788 beef 01020304");
	writer_fini(&w);

	static const struct { size_t back; int width; } bad[] = {
		{ 1, 2 }, { 3, 4 }, { 7, 8 }, { 0, 2 }, { 0, 4 }, { 0, 8 },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		writer_init(&w, 1024);
		writer_zeros(&w, 16);
		size_t pos = w.len - bad[i].back;
		if (bad[i].width == 2)
			writer_put_u16(&w, pos, 0xffff);
		else if (bad[i].width == 4)
			writer_put_u32(&w, pos, 0xffffffff);
		else
			writer_put_u64(&w, pos, UINT64_MAX);
		assert_int_equal(w.err, -ERR_INVALID);
		assert_int_equal(w.len, 16);
		for (int k = 0; k < 16; k++)
			assert_int_equal(w.buf[k], 0);
		writer_fini(&w);
	}

	/* Positions far past the end, including ones where pos + n would wrap. */
	static const size_t far[] = { 17, 1000, SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 7 };
	for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
		writer_init(&w, 1024);
		writer_zeros(&w, 16);
		writer_put_u64(&w, far[i], UINT64_MAX);
		assert_int_equal(w.err, -ERR_INVALID);
		writer_fini(&w);
	}

	/* Patching an empty writer is rejected (nothing to patch, no buffer). */
	writer_init(&w, 1024);
	writer_put_u16(&w, 0, 1);
	assert_int_equal(w.err, -ERR_INVALID);
	writer_fini(&w);

	/* A reservation past the limit fails like any write; later patches are no-ops. */
	writer_init(&w, 6);
	writer_u32(&w, 0x01020304);
	size_t pos = writer_reserve(&w, 4);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_int_equal(w.len, 4);
	writer_put_u32(&w, pos, 0xffffffff);
	writer_put_u32(&w, 0, 0xffffffff); /* in range, but the writer has failed */
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	assert_bytes_hex(&w, "01020304");
	writer_fini(&w);

	/* A patched length prefix reads back through the reader. */
	writer_init(&w, 1024);
	size_t p = writer_reserve(&w, 4);
	writer_string(&w, "hello", 5);
	writer_varlong(&w, -12345);
	writer_put_u32(&w, p, (uint32_t)(w.len - 4));
	struct reader r;
	reader_init(&r, w.buf, w.len);
	struct reader body = reader_sub(&r, reader_u32(&r));
	struct slice s = reader_string(&body, 0);
	assert_int_equal(s.len, 5);
	assert_memory_equal(s.data, "hello", 5);
	assert_int_equal(reader_varlong(&body), -12345);
	assert_int_equal(body.err, 0);
	assert_int_equal(reader_remaining(&body), 0);
	assert_int_equal(reader_remaining(&r), 0);
	writer_fini(&w);
}

/* ---- take, reset, fini ------------------------------------------------------------ */

static void test_take(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, 500);
	writer_string(&w, "abc", 3);
	size_t len = 99;
	uint8_t *b = writer_take(&w, &len);
	assert_non_null(b);
	assert_int_equal(len, 5);
	assert_memory_equal(b, "\x00\x03" "abc", 5);
	/* The writer is empty again, keeps its limit, and works. */
	assert_null(w.buf);
	assert_int_equal(w.len, 0);
	assert_int_equal(w.cap, 0);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.limit, 500);
	writer_u8(&w, 9);
	assert_bytes_hex(&w, "09");
	assert_true(w.buf != b);
	free(b); /* the caller owns it; ASan flags a double free if fini also did */
	uint8_t *b2 = writer_take(&w, &len);
	assert_int_equal(len, 1);
	assert_int_equal(b2[0], 9);
	free(b2);
	writer_fini(&w);

	/* Take from a writer that never wrote: NULL and 0. */
	writer_init(&w, 500);
	len = 99;
	assert_null(writer_take(&w, &len));
	assert_int_equal(len, 0);
	writer_fini(&w);

	/* Take clears a failure too (the caller checked err before). */
	writer_init(&w, 2);
	writer_u32(&w, 1);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	b = writer_take(&w, &len);
	assert_int_equal(len, 0);
	free(b);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.limit, 2);
	writer_u16(&w, 0x0102);
	assert_int_equal(w.err, 0);
	writer_fini(&w);
}

static void test_reset_fini(void **state)
{
	(void)state;
	struct writer w;
	writer_init(&w, 100);
	writer_zeros(&w, 95);
	uint8_t *buf = w.buf;
	size_t cap = w.cap;
	writer_u64(&w, 1); /* over the limit */
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	writer_reset(&w);
	/* Contents and error forgotten, allocation and limit kept. */
	assert_int_equal(w.len, 0);
	assert_int_equal(w.err, 0);
	assert_ptr_equal(w.buf, buf);
	assert_int_equal(w.cap, cap);
	assert_int_equal(w.limit, 100);
	writer_u16(&w, 0xabcd);
	assert_bytes_hex(&w, "abcd");
	writer_zeros(&w, 98);
	assert_int_equal(w.err, 0);
	writer_u8(&w, 0);
	assert_int_equal(w.err, -ERR_TOO_LARGE);
	writer_fini(&w);
	assert_null(w.buf);
	assert_int_equal(w.len, 0);
	assert_int_equal(w.cap, 0);
	writer_fini(&w); /* twice is harmless */

	/* A writer that never wrote finalises cleanly. */
	writer_init(&w, 100);
	writer_reset(&w);
	writer_fini(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_fixed),
		cmocka_unit_test(test_vectors_varint),
		cmocka_unit_test(test_vectors_strings),
		cmocka_unit_test(test_round_trip_random),
		cmocka_unit_test(test_round_trip_edges),
		cmocka_unit_test(test_limit_basic),
		cmocka_unit_test(test_limit_model),
		cmocka_unit_test(test_growth_respects_limit),
		cmocka_unit_test(test_nomem),
		cmocka_unit_test(test_length_caps),
		cmocka_unit_test(test_reserve_patch),
		cmocka_unit_test(test_take),
		cmocka_unit_test(test_reset_fini),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
