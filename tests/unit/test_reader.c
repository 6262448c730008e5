/*
 * test_reader.c: the bounded reader, the one door for untrusted bytes.
 *
 * The core check is check_codec(): a valid encoding must decode to the expected
 * value and consume exactly its bytes, and EVERY truncation of it (held in a
 * heap buffer of exactly that size, so AddressSanitizer sees any over-read)
 * must fail with -ERR_MALFORMED, return zero or an empty slice, consume nothing,
 * and leave the reader failed for every later read. Invalid encodings go
 * through check_fails() the same way. Values come from tables of known vectors
 * and from an independent reference encoder over boundary and random values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/err.h"
#include "core/reader.h"

#define SEED 0x0dec0de5u

/* ---- helpers -------------------------------------------------------------- */

static uint64_t rng_state = SEED;

/* splitmix64: fixed and portable, so a failure reproduces from the seed. */
static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Parses hex (spaces allowed) into a fresh heap buffer of exactly *len bytes. */
static uint8_t *from_hex(const char *hex, size_t *len)
{
	size_t n = 0;
	uint8_t *out = malloc(strlen(hex) / 2 + 1);
	assert_non_null(out);
	for (const char *c = hex; *c;) {
		if (*c == ' ') {
			c++;
			continue;
		}
		unsigned v;
		assert_true(c[1] != '\0');
		assert_int_equal(sscanf(c, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		c += 2;
	}
	*len = n;
	return out;
}

/* A copy of the first n bytes in a heap block of exactly n bytes. */
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
	/* malloc(0) too: AddressSanitizer then flags even a 1-byte over-read. A
	 * NULL result is fine, reader_init(NULL, 0) is a valid empty reader. */
	uint8_t *b = malloc(n);
	if (n) {
		assert_non_null(b);
		memcpy(b, src, n);
	}
	return b;
}

/* What one decode produced: an integer (sign-extended for signed types) or a slice. */
struct val {
	uint64_t u;
	struct slice s;
};

typedef struct val (*dec_fn)(struct reader *r);

static struct val d_u8(struct reader *r) { return (struct val){ .u = reader_u8(r) }; }
static struct val d_i8(struct reader *r) { return (struct val){ .u = (uint64_t)(int64_t)reader_i8(r) }; }
static struct val d_u16(struct reader *r) { return (struct val){ .u = reader_u16(r) }; }
static struct val d_i16(struct reader *r) { return (struct val){ .u = (uint64_t)(int64_t)reader_i16(r) }; }
static struct val d_u32(struct reader *r) { return (struct val){ .u = reader_u32(r) }; }
static struct val d_i32(struct reader *r) { return (struct val){ .u = (uint64_t)(int64_t)reader_i32(r) }; }
static struct val d_u64(struct reader *r) { return (struct val){ .u = reader_u64(r) }; }
static struct val d_i64(struct reader *r) { return (struct val){ .u = (uint64_t)reader_i64(r) }; }
static struct val d_uvarint(struct reader *r) { return (struct val){ .u = reader_uvarint(r) }; }
static struct val d_uvarlong(struct reader *r) { return (struct val){ .u = reader_uvarlong(r) }; }
static struct val d_varint(struct reader *r) { return (struct val){ .u = (uint64_t)(int64_t)reader_varint(r) }; }
static struct val d_varlong(struct reader *r) { return (struct val){ .u = (uint64_t)reader_varlong(r) }; }

static struct val d_f64(struct reader *r)
{
	double d = reader_f64(r);
	struct val v = { 0 };
	memcpy(&v.u, &d, sizeof d);
	return v;
}

static struct val d_string_null(struct reader *r) { return (struct val){ .s = reader_string(r, 1) }; }
static struct val d_string(struct reader *r) { return (struct val){ .s = reader_string(r, 0) }; }
static struct val d_kbytes_null(struct reader *r) { return (struct val){ .s = reader_kbytes(r, 1) }; }
static struct val d_kbytes(struct reader *r) { return (struct val){ .s = reader_kbytes(r, 0) }; }
static struct val d_compact_null(struct reader *r) { return (struct val){ .s = reader_compact_bytes(r, 1) }; }
static struct val d_compact(struct reader *r) { return (struct val){ .s = reader_compact_bytes(r, 0) }; }
static struct val d_varint_bytes(struct reader *r) { return (struct val){ .s = reader_varint_bytes(r) }; }
static struct val d_shortstr(struct reader *r) { return (struct val){ .s = reader_shortstr(r) }; }
static struct val d_longstr(struct reader *r) { return (struct val){ .s = reader_longstr(r) }; }
static struct val d_bytes3(struct reader *r) { return (struct val){ .s = reader_bytes(r, 3) }; }

static struct val d_skip3(struct reader *r)
{
	reader_skip(r, 3);
	return (struct val){ .u = r->err ? 0 : 1 };
}

/* reader_sub of 3 bytes, reported as the sub-reader's window. */
static struct val d_sub3(struct reader *r)
{
	struct reader sub = reader_sub(r, 3);
	struct val v = { 0 };
	if (sub.err) {
		assert_int_equal(reader_remaining(&sub), 0);
		assert_int_equal(reader_u8(&sub), 0);
		return v;
	}
	v.s.len = reader_remaining(&sub);
	v.s.data = reader_bytes(&sub, v.s.len).data;
	return v;
}

static struct val d_count(struct reader *r) { return (struct val){ .u = (uint64_t)(int64_t)reader_array_count(r, 1) }; }
static struct val d_ccount(struct reader *r) { return (struct val){ .u = (uint64_t)(int64_t)reader_compact_array_count(r, 1) }; }

static void assert_zero_val(struct val v)
{
	assert_int_equal(v.u, 0);
	assert_null(v.s.data);
	assert_int_equal(v.s.len, 0);
}

static void assert_val_equal(const char *what, struct val got, struct val want)
{
	if (got.u != want.u)
		fail_msg("%s: got %#llx want %#llx", what, (unsigned long long)got.u,
			 (unsigned long long)want.u);
	if ((got.s.data == NULL) != (want.s.data == NULL))
		fail_msg("%s: null-ness differs (got %s)", what, got.s.data ? "non-null" : "null");
	assert_int_equal(got.s.len, want.s.len);
	if (want.s.len)
		assert_memory_equal(got.s.data, want.s.data, want.s.len);
}

/* After a failure: everything reads as zero/empty and the reader stays failed. */
static void assert_stays_failed(struct reader *r, size_t offset)
{
	assert_int_equal(r->err, -ERR_MALFORMED);
	assert_int_equal(reader_remaining(r), 0);
	assert_int_equal(reader_offset(r), offset);
	assert_int_equal(reader_u8(r), 0);
	assert_int_equal(reader_u32(r), 0);
	assert_int_equal(reader_uvarlong(r), 0);
	struct slice s = reader_bytes(r, 0);
	assert_null(s.data);
	assert_int_equal(r->err, -ERR_MALFORMED);
	assert_int_equal(reader_offset(r), offset);
}

/*
 * enc[0..len) must decode with fn to want, consuming exactly len bytes; each
 * shorter prefix must fail cleanly. context_free: the decode does not depend on
 * what follows (not true of array counts), so a trailing byte must be left.
 */
static void check_bytes(const char *what, dec_fn fn, const uint8_t *enc, size_t len,
			struct val want, int context_free)
{
	struct reader r;

	uint8_t *b = exact_copy(enc, len);
	reader_init(&r, b, len);
	struct val got = fn(&r);
	assert_int_equal(r.err, 0);
	assert_val_equal(what, got, want);
	assert_int_equal(reader_offset(&r), len);
	assert_int_equal(reader_remaining(&r), 0);
	/* A slice is borrowed from the buffer, not copied. */
	if (got.s.len)
		assert_true(got.s.data >= b && got.s.data + got.s.len <= b + len);
	free(b);

	if (context_free) {
		b = malloc(len + 1);
		assert_non_null(b);
		memcpy(b, enc, len);
		b[len] = 0x5a;
		reader_init(&r, b, len + 1);
		got = fn(&r);
		assert_int_equal(r.err, 0);
		assert_val_equal(what, got, want);
		assert_int_equal(reader_remaining(&r), 1);
		assert_int_equal(reader_u8(&r), 0x5a);
		free(b);
	}

	for (size_t cut = 0; cut < len; cut++) {
		b = exact_copy(enc, cut);
		reader_init(&r, b, cut);
		got = fn(&r);
		if (r.err != -ERR_MALFORMED)
			fail_msg("%s: truncated to %zu of %zu bytes did not fail", what, cut, len);
		assert_zero_val(got);
		assert_stays_failed(&r, 0);
		assert_zero_val(fn(&r));
		free(b);
	}

	/* A reader failed beforehand returns zero even over valid bytes. */
	b = exact_copy(enc, len);
	reader_init(&r, b, len);
	reader_fail(&r);
	assert_zero_val(fn(&r));
	assert_stays_failed(&r, 0);
	free(b);
}

static void check_codec(const char *what, dec_fn fn, const char *hex, struct val want)
{
	size_t len;
	uint8_t *enc = from_hex(hex, &len);
	check_bytes(what, fn, enc, len, want, 1);
	free(enc);
}

/* enc must fail as a whole and at every truncation, consuming nothing. */
static void check_fails_bytes(const char *what, dec_fn fn, const uint8_t *enc, size_t len)
{
	for (size_t cut = 0; cut <= len; cut++) {
		struct reader r;
		uint8_t *b = exact_copy(enc, cut);
		reader_init(&r, b, cut);
		struct val got = fn(&r);
		if (r.err != -ERR_MALFORMED)
			fail_msg("%s: %zu of %zu bytes decoded without error", what, cut, len);
		assert_zero_val(got);
		assert_stays_failed(&r, 0);
		free(b);
	}
}

static void check_fails(const char *what, dec_fn fn, const char *hex)
{
	size_t len;
	uint8_t *enc = from_hex(hex, &len);
	check_fails_bytes(what, fn, enc, len);
	free(enc);
}

static struct val U(uint64_t u) { return (struct val){ .u = u }; }
static struct val S(int64_t i) { return (struct val){ .u = (uint64_t)i }; }
static struct val STR(const char *s) { return (struct val){ .s = { (const uint8_t *)s, strlen(s) } }; }
static const struct val NUL = { 0 };

/* ---- fixed-width integers ----------------------------------------------- */

static void test_fixed_width(void **state)
{
	(void)state;
	check_codec("u8 0", d_u8, "00", U(0));
	check_codec("u8 ff", d_u8, "ff", U(0xff));
	check_codec("i8 -1", d_i8, "ff", S(-1));
	check_codec("i8 min", d_i8, "80", S(INT8_MIN));
	check_codec("i8 max", d_i8, "7f", S(INT8_MAX));
	check_codec("u16", d_u16, "beef", U(0xbeef));
	check_codec("u16 max", d_u16, "ffff", U(UINT16_MAX));
	check_codec("i16 -1", d_i16, "ffff", S(-1));
	check_codec("i16 min", d_i16, "8000", S(INT16_MIN));
	check_codec("i16 max", d_i16, "7fff", S(INT16_MAX));
	check_codec("i16 1", d_i16, "0001", S(1));
	check_codec("u32", d_u32, "deadbeef", U(0xdeadbeef));
	check_codec("u32 byte order", d_u32, "01020304", U(0x01020304));
	check_codec("i32 0", d_i32, "00000000", S(0));
	check_codec("i32 -1", d_i32, "ffffffff", S(-1));
	check_codec("i32 min", d_i32, "80000000", S(INT32_MIN));
	check_codec("i32 max", d_i32, "7fffffff", S(INT32_MAX));
	check_codec("u64", d_u64, "0123456789abcdef", U(0x0123456789abcdefull));
	check_codec("u64 max", d_u64, "ffffffffffffffff", U(UINT64_MAX));
	check_codec("i64 -1", d_i64, "ffffffffffffffff", S(-1));
	check_codec("i64 min", d_i64, "8000000000000000", S(INT64_MIN));
	check_codec("i64 max", d_i64, "7fffffffffffffff", S(INT64_MAX));
	check_codec("i64 1", d_i64, "0000000000000001", S(1));
}

static void test_f64(void **state)
{
	(void)state;
	check_codec("f64 1.5", d_f64, "3ff8000000000000", U(0x3ff8000000000000ull));
	check_codec("f64 -0", d_f64, "8000000000000000", U(0x8000000000000000ull));
	check_codec("f64 inf", d_f64, "7ff0000000000000", U(0x7ff0000000000000ull));
	/* A NaN keeps its payload bits. */
	check_codec("f64 nan", d_f64, "7ff8000000000123", U(0x7ff8000000000123ull));

	uint8_t enc[8] = { 0xc0, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18 }; /* -pi */
	struct reader r;
	reader_init(&r, enc, sizeof enc);
	assert_true(reader_f64(&r) == -3.141592653589793);
	assert_int_equal(r.err, 0);
	reader_init(&r, enc, 7);
	assert_true(reader_f64(&r) == 0.0);
	assert_int_equal(r.err, -ERR_MALFORMED);
}

/* ---- varints --------------------------------------------------------------- */

static void test_uvarint_vectors(void **state)
{
	(void)state;
	check_codec("uvarint 0", d_uvarint, "00", U(0));
	check_codec("uvarint 1", d_uvarint, "01", U(1));
	check_codec("uvarint 127", d_uvarint, "7f", U(127));
	check_codec("uvarint 128", d_uvarint, "8001", U(128));
	check_codec("uvarint 300", d_uvarint, "ac02", U(300));
	check_codec("uvarint 16383", d_uvarint, "ff7f", U(16383));
	check_codec("uvarint 16384", d_uvarint, "808001", U(16384));
	check_codec("uvarint int32 max", d_uvarint, "ffffffff07", U(INT32_MAX));
	check_codec("uvarint 2^31", d_uvarint, "8080808008", U(0x80000000u));
	check_codec("uvarint max", d_uvarint, "ffffffff0f", U(UINT32_MAX));
	/* Over-long but in range: accepted, as Kafka's ByteUtils does. */
	check_codec("uvarint 0 in 2 bytes", d_uvarint, "8000", U(0));
	check_codec("uvarint 0 in 5 bytes", d_uvarint, "8080808000", U(0));
	check_codec("uvarint 1 in 5 bytes", d_uvarint, "8180808000", U(1));

	/* Six bytes (the 5th still has its continuation bit). */
	check_fails("uvarint 6 bytes", d_uvarint, "808080808000");
	check_fails("uvarint 6 bytes of ff", d_uvarint, "ffffffffff01");
	check_fails("uvarint 5th byte continues", d_uvarint, "ffffffff8f");
	/* 5th byte carrying bits past 32. */
	check_fails("uvarint bit 32", d_uvarint, "8080808010");
	check_fails("uvarint 0x1f in 5th", d_uvarint, "ffffffff1f");
	check_fails("uvarint 0x7f in 5th", d_uvarint, "ffffffff7f");
	check_fails("uvarint bit 34 only", d_uvarint, "8080808040");
	/* Unterminated. */
	check_fails("uvarint lone continuation", d_uvarint, "80");
	check_fails("uvarint 4 continuations", d_uvarint, "ffffffff");
}

static void test_uvarlong_vectors(void **state)
{
	(void)state;
	check_codec("uvarlong 0", d_uvarlong, "00", U(0));
	check_codec("uvarlong 1", d_uvarlong, "01", U(1));
	check_codec("uvarlong 300", d_uvarlong, "ac02", U(300));
	check_codec("uvarlong 2^32", d_uvarlong, "8080808010", U(1ull << 32));
	check_codec("uvarlong 2^63-1", d_uvarlong, "ffffffffffffffff7f", U(INT64_MAX));
	check_codec("uvarlong 2^63", d_uvarlong, "80808080808080808001", U(1ull << 63));
	check_codec("uvarlong max", d_uvarlong, "ffffffffffffffffff01", U(UINT64_MAX));
	check_codec("uvarlong 0 in 10 bytes", d_uvarlong, "80808080808080808000", U(0));

	check_fails("uvarlong 11 bytes", d_uvarlong, "8080808080808080808000");
	check_fails("uvarlong 11 bytes of ff", d_uvarlong, "ffffffffffffffffffff01");
	check_fails("uvarlong 10th continues", d_uvarlong, "ffffffffffffffffff81");
	check_fails("uvarlong bit 64", d_uvarlong, "80808080808080808002");
	check_fails("uvarlong 10th = 0x7f", d_uvarlong, "ffffffffffffffffff7f");
	check_fails("uvarlong unterminated", d_uvarlong, "ffffffffffffff");
}

static void test_varint_vectors(void **state)
{
	(void)state;
	/* Kafka zigzag. */
	check_codec("varint 0", d_varint, "00", S(0));
	check_codec("varint -1", d_varint, "01", S(-1));
	check_codec("varint 1", d_varint, "02", S(1));
	check_codec("varint -2", d_varint, "03", S(-2));
	check_codec("varint -64", d_varint, "7f", S(-64));
	check_codec("varint 63", d_varint, "7e", S(63));
	check_codec("varint 64", d_varint, "8001", S(64));
	check_codec("varint -65", d_varint, "8101", S(-65));
	check_codec("varint 150", d_varint, "ac02", S(150));
	check_codec("varint int32 max", d_varint, "feffffff0f", S(INT32_MAX));
	check_codec("varint int32 min", d_varint, "ffffffff0f", S(INT32_MIN));
	check_fails("varint 6 bytes", d_varint, "808080808000");
	check_fails("varint past 32 bits", d_varint, "ffffffff1f");

	check_codec("varlong 0", d_varlong, "00", S(0));
	check_codec("varlong -1", d_varlong, "01", S(-1));
	check_codec("varlong 1", d_varlong, "02", S(1));
	check_codec("varlong -64", d_varlong, "7f", S(-64));
	check_codec("varlong 64", d_varlong, "8001", S(64));
	check_codec("varlong int32 max", d_varlong, "feffffff0f", S(INT32_MAX));
	check_codec("varlong int32 min", d_varlong, "ffffffff0f", S(INT32_MIN));
	check_codec("varlong int32 max+1", d_varlong, "8080808010", S((int64_t)INT32_MAX + 1));
	check_codec("varlong int64 max", d_varlong, "feffffffffffffffff01", S(INT64_MAX));
	check_codec("varlong int64 min", d_varlong, "ffffffffffffffffff01", S(INT64_MIN));
	check_fails("varlong 11 bytes", d_varlong, "8080808080808080808000");
	check_fails("varlong past 64 bits", d_varlong, "ffffffffffffffffff03");
}

/* Independent reference LEB128 encoder; returns the length. */
static size_t ref_uleb(uint64_t v, uint8_t *out)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

static uint64_t ref_zigzag64(int64_t v)
{
	return v >= 0 ? (uint64_t)v * 2 : ((uint64_t)(-(v + 1)) * 2) + 1;
}

/* One 64-bit value through all four varint decoders where it fits. */
static void check_varint_value(uint64_t u)
{
	uint8_t enc[16];
	size_t n = ref_uleb(u, enc);
	check_bytes("uvarlong", d_uvarlong, enc, n, U(u), 1);
	if (u <= UINT32_MAX)
		check_bytes("uvarint", d_uvarint, enc, n, U(u), 1);
	else
		check_fails_bytes("uvarint too big", d_uvarint, enc, n);

	int64_t s = (int64_t)u;
	n = ref_uleb(ref_zigzag64(s), enc);
	check_bytes("varlong", d_varlong, enc, n, S(s), 1);
	if (s >= INT32_MIN && s <= INT32_MAX)
		check_bytes("varint", d_varint, enc, n, S(s), 1);
	if (s != INT64_MIN) {
		int64_t neg = -s;
		n = ref_uleb(ref_zigzag64(neg), enc);
		check_bytes("varlong neg", d_varlong, enc, n, S(neg), 1);
		if (neg >= INT32_MIN && neg <= INT32_MAX)
			check_bytes("varint neg", d_varint, enc, n, S(neg), 1);
	}
}

static void test_varint_boundaries_and_random(void **state)
{
	(void)state;
	for (int k = 0; k < 64; k++) {
		uint64_t p = 1ull << k;
		check_varint_value(p - 1);
		check_varint_value(p);
		check_varint_value(p + 1);
	}
	check_varint_value(UINT64_MAX);
	check_varint_value((uint64_t)INT64_MIN);

	printf("test_reader: random seed 0x%08x\n", SEED);
	rng_state = SEED;
	for (int i = 0; i < 2000; i++) {
		uint64_t u = rng() >> (rng() % 64); /* all magnitudes */
		check_varint_value(u);
	}
}

/*
 * A long random stream of mixed fields, encoded by hand, decoded in order:
 * catches a decoder that consumes one byte too many or too few.
 */
static void test_mixed_stream(void **state)
{
	(void)state;
	enum { N = 3000 };
	uint8_t *buf = malloc(N * 10);
	uint64_t *vals = malloc(N * sizeof *vals);
	int *kinds = malloc(N * sizeof *kinds);
	assert_non_null(buf);
	assert_non_null(vals);
	assert_non_null(kinds);
	rng_state = SEED + 1;
	size_t len = 0;
	for (int i = 0; i < N; i++) {
		kinds[i] = (int)(rng() % 6);
		uint64_t v = rng() >> (rng() % 64);
		switch (kinds[i]) {
		case 0: v &= 0xff; buf[len++] = (uint8_t)v; break;
		case 1: v &= 0xffff; buf[len++] = (uint8_t)(v >> 8); buf[len++] = (uint8_t)v; break;
		case 2:
			v &= 0xffffffff;
			for (int k = 3; k >= 0; k--)
				buf[len++] = (uint8_t)(v >> (8 * k));
			break;
		case 3:
			for (int k = 7; k >= 0; k--)
				buf[len++] = (uint8_t)(v >> (8 * k));
			break;
		case 4: v &= 0xffffffff; len += ref_uleb(v, buf + len); break;
		default: len += ref_uleb(ref_zigzag64((int64_t)v), buf + len); break;
		}
		vals[i] = v;
	}
	struct reader r;
	reader_init(&r, buf, len);
	for (int i = 0; i < N; i++) {
		uint64_t got = 0;
		switch (kinds[i]) {
		case 0: got = reader_u8(&r); break;
		case 1: got = reader_u16(&r); break;
		case 2: got = reader_u32(&r); break;
		case 3: got = reader_u64(&r); break;
		case 4: got = reader_uvarint(&r); break;
		default: got = (uint64_t)reader_varlong(&r); break;
		}
		if (got != vals[i])
			fail_msg("field %d kind %d: got %#llx want %#llx", i, kinds[i],
				 (unsigned long long)got, (unsigned long long)vals[i]);
	}
	assert_int_equal(r.err, 0);
	assert_int_equal(reader_remaining(&r), 0);
	assert_int_equal(reader_u8(&r), 0);
	assert_int_equal(r.err, -ERR_MALFORMED);
	free(kinds);
	free(vals);
	free(buf);
}

/* ---- strings and bytes ---------------------------------------------------- */

static void test_kafka_string(void **state)
{
	(void)state;
	check_codec("string abc", d_string, "0003 616263", STR("abc"));
	check_codec("string nullable abc", d_string_null, "0003 616263", STR("abc"));
	check_codec("string empty", d_string, "0000", STR(""));
	check_codec("string nullable empty", d_string_null, "0000", STR(""));
	check_codec("string null", d_string_null, "ffff", NUL);
	check_fails("string null not allowed", d_string, "ffff");
	check_fails("string -2", d_string_null, "fffe 6161");
	check_fails("string int16 min", d_string_null, "8000");
	check_fails("string longer than data", d_string, "0004 616263");
	check_fails("string max over short data", d_string, "7fff 616263");
}

static void test_kafka_bytes(void **state)
{
	(void)state;
	check_codec("kbytes abc", d_kbytes, "00000003 616263", STR("abc"));
	check_codec("kbytes empty", d_kbytes, "00000000", STR(""));
	check_codec("kbytes nullable empty", d_kbytes_null, "00000000", STR(""));
	check_codec("kbytes null", d_kbytes_null, "ffffffff", NUL);
	check_fails("kbytes null not allowed", d_kbytes, "ffffffff");
	check_fails("kbytes -2", d_kbytes_null, "fffffffe 61");
	check_fails("kbytes int32 min", d_kbytes_null, "80000000");
	check_fails("kbytes longer than data", d_kbytes, "00000004 616263");
	check_fails("kbytes int32 max", d_kbytes, "7fffffff 616263");
}

static void test_compact_bytes(void **state)
{
	(void)state;
	check_codec("compact abc", d_compact, "04 616263", STR("abc"));
	check_codec("compact nullable abc", d_compact_null, "04 616263", STR("abc"));
	check_codec("compact empty", d_compact, "01", STR(""));
	check_codec("compact null", d_compact_null, "00", NUL);
	check_fails("compact null not allowed", d_compact, "00");
	check_fails("compact longer than data", d_compact, "05 616263");
	check_fails("compact huge", d_compact_null, "ffffffff0f 616263");
	check_fails("compact bad varint", d_compact_null, "ffffffff1f");
	check_fails("compact unterminated varint", d_compact_null, "ff");

	/* 200 bytes: a two-byte length (201 = c9 01). */
	uint8_t enc[202];
	enc[0] = 0xc9;
	enc[1] = 0x01;
	for (int i = 0; i < 200; i++)
		enc[2 + i] = (uint8_t)i;
	struct val want = { .s = { enc + 2, 200 } };
	check_bytes("compact 200", d_compact, enc, sizeof enc, want, 1);
}

static void test_varint_bytes(void **state)
{
	(void)state;
	check_codec("varint bytes abc", d_varint_bytes, "06 616263", STR("abc"));
	check_codec("varint bytes empty", d_varint_bytes, "00", STR(""));
	check_codec("varint bytes null", d_varint_bytes, "01", NUL);
	check_fails("varint bytes -2", d_varint_bytes, "03 6161");
	check_fails("varint bytes int32 min", d_varint_bytes, "ffffffff0f");
	check_fails("varint bytes longer than data", d_varint_bytes, "08 616263");
	check_fails("varint bytes int32 max", d_varint_bytes, "feffffff0f 6162");
	check_fails("varint bytes bad varint", d_varint_bytes, "808080808000");
}

static void test_amqp_strings(void **state)
{
	(void)state;
	check_codec("shortstr abc", d_shortstr, "03 616263", STR("abc"));
	check_codec("shortstr empty", d_shortstr, "00", STR(""));
	check_fails("shortstr longer than data", d_shortstr, "04 616263");
	check_fails("shortstr 255 over short data", d_shortstr, "ff 616263");

	uint8_t enc[256];
	enc[0] = 255;
	memset(enc + 1, 'x', 255);
	struct val want = { .s = { enc + 1, 255 } };
	check_bytes("shortstr 255", d_shortstr, enc, sizeof enc, want, 1);

	check_codec("longstr abc", d_longstr, "00000003 616263", STR("abc"));
	check_codec("longstr empty", d_longstr, "00000000", STR(""));
	/* No null in AMQP: ffffffff is a 4 GiB length, not -1. */
	check_fails("longstr ffffffff", d_longstr, "ffffffff 61");
	check_fails("longstr longer than data", d_longstr, "00000004 616263");
}

static void test_raw_bytes_skip_sub(void **state)
{
	(void)state;
	check_codec("bytes 3", d_bytes3, "616263", STR("abc"));
	check_codec("skip 3", d_skip3, "616263", U(1));
	check_codec("sub 3", d_sub3, "616263", STR("abc"));

	struct reader r;
	uint8_t buf[6] = { 1, 2, 3, 4, 5, 6 };

	/* Zero-length reads succeed anywhere, including at the end. */
	reader_init(&r, buf, sizeof buf);
	struct slice s = reader_bytes(&r, 0);
	assert_non_null(s.data);
	assert_int_equal(s.len, 0);
	reader_skip(&r, 6);
	reader_skip(&r, 0);
	s = reader_bytes(&r, 0);
	assert_non_null(s.data);
	assert_int_equal(r.err, 0);
	assert_int_equal(reader_offset(&r), 6);

	/* Absurd sizes fail without wrapping the pointer. */
	reader_init(&r, buf, sizeof buf);
	reader_u8(&r);
	reader_skip(&r, SIZE_MAX);
	assert_stays_failed(&r, 1);
	reader_init(&r, buf, sizeof buf);
	s = reader_bytes(&r, SIZE_MAX);
	assert_null(s.data);
	assert_stays_failed(&r, 0);
	reader_init(&r, buf, sizeof buf);
	struct reader sub = reader_sub(&r, SIZE_MAX - 2);
	assert_int_equal(sub.err, -ERR_MALFORMED);
	assert_stays_failed(&r, 0);
}

static void test_sub_reader(void **state)
{
	(void)state;
	uint8_t buf[8] = { 0xaa, 0x00, 0x01, 0x00, 0x02, 0xbb, 0xcc, 0xdd };
	struct reader r;
	reader_init(&r, buf, sizeof buf);
	assert_int_equal(reader_u8(&r), 0xaa);
	struct reader sub = reader_sub(&r, 4);
	assert_int_equal(sub.err, 0);
	assert_int_equal(reader_offset(&r), 5);
	assert_int_equal(reader_remaining(&sub), 4);
	assert_int_equal(reader_offset(&sub), 0);
	assert_int_equal(reader_u16(&sub), 1);
	assert_int_equal(reader_u16(&sub), 2);
	/* The sub-reader ends at its own end, not the parent's. */
	assert_int_equal(reader_u8(&sub), 0);
	assert_int_equal(sub.err, -ERR_MALFORMED);
	/* and failing it does not fail the parent. */
	assert_int_equal(r.err, 0);
	assert_int_equal(reader_u8(&r), 0xbb);

	/* A sub-reader longer than what is left fails both. */
	sub = reader_sub(&r, 3);
	assert_int_equal(sub.err, -ERR_MALFORMED);
	assert_int_equal(reader_remaining(&sub), 0);
	assert_int_equal(reader_u8(&sub), 0);
	assert_stays_failed(&r, 6);

	/* A sub-reader of a failed parent is failed. */
	reader_init(&r, buf, sizeof buf);
	reader_fail(&r);
	sub = reader_sub(&r, 1);
	assert_int_equal(sub.err, -ERR_MALFORMED);
	assert_int_equal(reader_u8(&sub), 0);

	/* Empty sub-readers: fine to make, every read from them fails. */
	reader_init(&r, buf, sizeof buf);
	reader_skip(&r, 8);
	sub = reader_sub(&r, 0);
	assert_int_equal(sub.err, 0);
	assert_int_equal(r.err, 0);
	assert_int_equal(reader_remaining(&sub), 0);
	assert_int_equal(reader_uvarint(&sub), 0);
	assert_int_equal(sub.err, -ERR_MALFORMED);

	/* Nested: a sub-reader of a sub-reader. */
	reader_init(&r, buf, sizeof buf);
	sub = reader_sub(&r, 6);
	reader_skip(&sub, 1);
	struct reader subsub = reader_sub(&sub, 2);
	assert_int_equal(reader_u16(&subsub), 1);
	assert_int_equal(reader_remaining(&subsub), 0);
	assert_int_equal(reader_remaining(&sub), 3);
	assert_int_equal(reader_remaining(&r), 2);
}

/* A reader over nothing: valid, empty; over NULL with a length: failed. */
static void test_null_reader(void **state)
{
	(void)state;
	struct reader r;
	reader_init(&r, NULL, 0);
	assert_int_equal(r.err, 0);
	assert_int_equal(reader_remaining(&r), 0);
	assert_int_equal(reader_offset(&r), 0);
	struct slice s = reader_bytes(&r, 0);
	assert_int_equal(r.err, 0);
	assert_non_null(s.data); /* empty, not null */
	assert_int_equal(s.len, 0);
	reader_skip(&r, 0);
	struct reader sub = reader_sub(&r, 0);
	assert_int_equal(sub.err, 0);
	assert_int_equal(r.err, 0);
	assert_int_equal(reader_remaining(&sub), 0);
	assert_int_equal(reader_array_count(&r, 1), 0);
	assert_stays_failed(&r, 0);

	/* Every decoder fails on it. */
	static const dec_fn all[] = { d_u8, d_i8, d_u16, d_i16, d_u32, d_i32, d_u64, d_i64,
				      d_f64, d_uvarint, d_uvarlong, d_varint, d_varlong,
				      d_string_null, d_kbytes_null, d_compact_null,
				      d_varint_bytes, d_shortstr, d_longstr, d_bytes3,
				      d_skip3, d_sub3, d_count, d_ccount };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		reader_init(&r, NULL, 0);
		assert_zero_val(all[i](&r));
		assert_stays_failed(&r, 0);
	}

	reader_init(&r, NULL, 5);
	assert_int_equal(r.err, -ERR_MALFORMED);
	assert_int_equal(reader_remaining(&r), 0);
	assert_int_equal(reader_u8(&r), 0);
	assert_stays_failed(&r, 0);
}

/* Once failed, every kind of read returns zero/empty and consumes nothing. */
static void test_sticky_error_all_reads(void **state)
{
	(void)state;
	static const dec_fn all[] = { d_u8, d_i8, d_u16, d_i16, d_u32, d_i32, d_u64, d_i64,
				      d_f64, d_uvarint, d_uvarlong, d_varint, d_varlong,
				      d_string_null, d_string, d_kbytes_null, d_kbytes,
				      d_compact_null, d_compact, d_varint_bytes, d_shortstr,
				      d_longstr, d_bytes3, d_skip3, d_sub3, d_count, d_ccount };
	uint8_t buf[64];
	memset(buf, 0, sizeof buf); /* decodes with all but d_compact (0 = null) */
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		struct reader r;
		reader_init(&r, buf, sizeof buf);
		reader_u16(&r);
		assert_true(reader_remaining(&r) > 0);
		reader_skip(&r, 1000); /* fails */
		assert_zero_val(all[i](&r));
		assert_stays_failed(&r, 2);
		/* A fresh reader over the same bytes decodes without error. */
		reader_init(&r, buf, sizeof buf);
		all[i](&r);
		assert_int_equal(r.err, all[i] == d_compact ? -ERR_MALFORMED : 0);
	}
}

/* A failed field rewinds to its start, so offsets in diagnostics name it. */
static void test_failed_read_offset(void **state)
{
	(void)state;
	uint8_t buf[] = { 0xaa, 0x00, 0x05, 'a', 'b' };
	struct reader r;
	reader_init(&r, buf, sizeof buf);
	reader_u8(&r);
	struct slice s = reader_string(&r, 0);
	assert_null(s.data);
	assert_stays_failed(&r, 1);

	reader_init(&r, buf, sizeof buf);
	reader_u8(&r);
	assert_int_equal(reader_u64(&r), 0);
	assert_stays_failed(&r, 1);

	uint8_t v[] = { 0x00, 0xff, 0xff, 0xff };
	reader_init(&r, v, sizeof v);
	reader_u8(&r);
	assert_int_equal(reader_uvarlong(&r), 0);
	assert_stays_failed(&r, 1);
}

/* ---- array counts --------------------------------------------------------- */

struct count_case {
	const char *hex;  /* count prefix followed by payload bytes */
	size_t min;       /* min_elem_bytes */
	int compact;
	int ok;
	int32_t want;
	size_t prefix;    /* bytes of the count itself */
};

static void test_array_counts(void **state)
{
	(void)state;
	const size_t huge_min = SIZE_MAX / 2 + 1; /* 2 * huge_min wraps to 0 */
	const struct count_case cases[] = {
		{ "ffffffff", 1, 0, 1, -1, 4 },
		{ "ffffffff", 0, 0, 1, -1, 4 },
		{ "00000000", 1, 0, 1, 0, 4 },
		{ "00000000", SIZE_MAX, 0, 1, 0, 4 },
		{ "00000003 aabbcc", 1, 0, 1, 3, 4 },
		{ "00000003 aabbcc", 0, 0, 1, 3, 4 },
		{ "00000004 aabbcc", 0, 0, 0, 0, 4 },
		{ "00000003 aabb", 1, 0, 0, 0, 4 },
		{ "00000003 aabbccddeeff", 2, 0, 1, 3, 4 },
		{ "00000003 aabbccddee", 2, 0, 0, 0, 4 },
		{ "00000002 aabbccddeeff0011", 4, 0, 1, 2, 4 },
		{ "00000003 aabbccddeeff0011", 4, 0, 0, 0, 4 },
		{ "fffffffe", 1, 0, 0, 0, 4 },
		{ "fffffffe aabbcc", 0, 0, 0, 0, 4 },
		{ "80000000 aabbcc", 1, 0, 0, 0, 4 },
		{ "7fffffff aabbccddeeff0011", 1, 0, 0, 0, 4 },
		{ "00000001 aa", SIZE_MAX, 0, 0, 0, 4 },
		{ "00000002 aabbccdd", huge_min, 0, 0, 0, 4 },

		{ "00", 1, 1, 1, -1, 1 },
		{ "01", 1, 1, 1, 0, 1 },
		{ "01", SIZE_MAX, 1, 1, 0, 1 },
		{ "04 aabbcc", 1, 1, 1, 3, 1 },
		{ "04 aabb", 1, 1, 0, 0, 1 },
		{ "04 aabbccddeeff", 2, 1, 1, 3, 1 },
		{ "04 aabbccddee", 2, 1, 0, 0, 1 },
		{ "03 aabbccdd", huge_min, 1, 0, 0, 1 },
		{ "ffffffff0f aabbcc", 1, 1, 0, 0, 5 },
		{ "8080808008 aabbcc", 1, 1, 0, 0, 5 },
		{ "ffffffff1f aabbcc", 1, 1, 0, 0, 5 },
		{ "ff", 1, 1, 0, 0, 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct count_case *c = &cases[i];
		size_t len;
		uint8_t *enc = from_hex(c->hex, &len);
		struct reader r;
		reader_init(&r, enc, len);
		int32_t got = c->compact ? reader_compact_array_count(&r, c->min)
					 : reader_array_count(&r, c->min);
		if (c->ok) {
			if (r.err || got != c->want)
				fail_msg("case %zu (%s min %zu): got %d err %d, want %d", i,
					 c->hex, c->min, got, r.err, c->want);
			assert_int_equal(reader_offset(&r), c->prefix);
		} else {
			if (r.err != -ERR_MALFORMED || got != 0)
				fail_msg("case %zu (%s min %zu): got %d err %d, want failure",
					 i, c->hex, c->min, got, r.err);
			assert_stays_failed(&r, 0);
		}
		/* Any truncation of the count prefix fails. */
		for (size_t cut = 0; cut < c->prefix && cut < len; cut++) {
			uint8_t *b = exact_copy(enc, cut);
			reader_init(&r, b, cut);
			got = c->compact ? reader_compact_array_count(&r, c->min)
					 : reader_array_count(&r, c->min);
			assert_int_equal(got, 0);
			assert_stays_failed(&r, 0);
			free(b);
		}
		free(enc);
	}
}

/*
 * Lengths and counts near the 32-bit limits, over a 4 GiB mapping that is never
 * touched beyond its first page (MAP_NORESERVE: no memory is used). This is the
 * only way to see that a compact count of 2^31 is rejected for being past
 * INT32_MAX rather than for lack of bytes, and that big lengths do not wrap.
 */
static void test_huge_lengths(void **state)
{
	(void)state;
	const size_t size = (4ull << 30) + 4096;
	uint8_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) {
		printf("test_reader: cannot map 4 GiB, skipping huge-length checks\n");
		skip();
	}
	struct reader r;

	/* Compact count 2^31 - 1: allowed with enough bytes. */
	memcpy(m, "\x80\x80\x80\x80\x08", 5);
	reader_init(&r, m, size);
	assert_int_equal(reader_compact_array_count(&r, 1), INT32_MAX);
	assert_int_equal(r.err, 0);
	/* Compact count 2^31: past INT32_MAX, must fail, not come back negative. */
	memcpy(m, "\x81\x80\x80\x80\x08", 5);
	reader_init(&r, m, size);
	assert_int_equal(reader_compact_array_count(&r, 1), 0);
	assert_stays_failed(&r, 0);
	/* Compact count 2^32 - 2. */
	memcpy(m, "\xff\xff\xff\xff\x0f", 5);
	reader_init(&r, m, size);
	assert_int_equal(reader_compact_array_count(&r, 0), 0);
	assert_stays_failed(&r, 0);
	/* Kafka count INT32_MAX with 4 GiB left and 1- or 2-byte elements. */
	memcpy(m, "\x7f\xff\xff\xff", 4);
	reader_init(&r, m, size);
	assert_int_equal(reader_array_count(&r, 1), INT32_MAX);
	reader_init(&r, m, size);
	assert_int_equal(reader_array_count(&r, 2), INT32_MAX);
	reader_init(&r, m, size);
	assert_int_equal(reader_array_count(&r, 3), 0);
	assert_stays_failed(&r, 0);

	/* Big lengths are taken whole, as borrowed slices. */
	memcpy(m, "\x7f\xff\xff\xff", 4);
	reader_init(&r, m, size);
	struct slice s = reader_kbytes(&r, 0);
	assert_ptr_equal(s.data, m + 4);
	assert_int_equal(s.len, INT32_MAX);
	memcpy(m, "\xff\xff\xff\xff", 4);
	reader_init(&r, m, size);
	s = reader_longstr(&r);
	assert_ptr_equal(s.data, m + 4);
	assert_int_equal(s.len, UINT32_MAX);
	assert_int_equal(reader_remaining(&r), size - 4 - UINT32_MAX);
	memcpy(m, "\xff\xff\xff\xff\x0f", 5);
	reader_init(&r, m, size);
	s = reader_compact_bytes(&r, 0);
	assert_ptr_equal(s.data, m + 5);
	assert_int_equal(s.len, UINT32_MAX - 1);
	/* ...and one byte short of them fails. */
	memcpy(m, "\xff\xff\xff\xff", 4);
	reader_init(&r, m, 4 + (size_t)UINT32_MAX - 1);
	s = reader_longstr(&r);
	assert_null(s.data);
	assert_stays_failed(&r, 0);

	munmap(m, size);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_width),
		cmocka_unit_test(test_f64),
		cmocka_unit_test(test_uvarint_vectors),
		cmocka_unit_test(test_uvarlong_vectors),
		cmocka_unit_test(test_varint_vectors),
		cmocka_unit_test(test_varint_boundaries_and_random),
		cmocka_unit_test(test_mixed_stream),
		cmocka_unit_test(test_kafka_string),
		cmocka_unit_test(test_kafka_bytes),
		cmocka_unit_test(test_compact_bytes),
		cmocka_unit_test(test_varint_bytes),
		cmocka_unit_test(test_amqp_strings),
		cmocka_unit_test(test_raw_bytes_skip_sub),
		cmocka_unit_test(test_sub_reader),
		cmocka_unit_test(test_null_reader),
		cmocka_unit_test(test_sticky_error_all_reads),
		cmocka_unit_test(test_failed_read_offset),
		cmocka_unit_test(test_array_counts),
		cmocka_unit_test(test_huge_lengths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
