/*
 * test_crc32c.c: CRC-32C against published vectors (the check value and
 * RFC 3720 appendix B.4), incremental updates over every split point, and the
 * ISA-L path against both fallbacks (SSE4.2 and table) over random buffers of
 * many lengths and misaligned starts.
 *
 * The >2 GiB chunking in crc32c_update (ISA-L takes an int length) is not run
 * here for memory's sake; test_chunk_boundary_shape checks the same contract in
 * small: feeding a buffer in pieces equals one shot, for every piece size.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"

#define SEED 0x5eed2024u

/* xorshift32: a fixed, portable sequence so failures reproduce. */
static uint32_t rng_state = SEED;

static uint32_t rng(void)
{
	uint32_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return rng_state = x;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng();
}

typedef uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len);

static const crc_fn impls[] = { crc32c_update, crc32c_fallback_update, crc32c_table_update };
static const char *const impl_names[] = { "isal", "fallback", "table" };
#define N_IMPLS (sizeof impls / sizeof impls[0])

/* Asserts that every implementation gives want over buf. */
static void check_all(const void *buf, size_t len, uint32_t want)
{
	for (size_t i = 0; i < N_IMPLS; i++) {
		uint32_t got = impls[i](0, buf, len);
		if (got != want)
			fail_msg("%s: len %zu got 0x%08x want 0x%08x", impl_names[i], len, got, want);
	}
}

static void *table_first_use(void *arg)
{
	uint32_t *out = arg;
	*out = crc32c_table_update(0, "123456789", 9);
	return NULL;
}

/*
 * Runs first: two threads race to be the first user of the lazily built table.
 * Under ThreadSanitizer this fails if the build is not synchronised.
 */
static void test_table_init_threads(void **state)
{
	(void)state;
	pthread_t t[2];
	uint32_t out[2] = { 0, 0 };
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, table_first_use, &out[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	assert_int_equal(out[0], 0xE3069283u);
	assert_int_equal(out[1], 0xE3069283u);
}

static void test_check_value(void **state)
{
	(void)state;
	assert_int_equal(crc32c("123456789", 9), 0xE3069283u);
	check_all("123456789", 9, 0xE3069283u);
}

static void test_rfc3720_vectors(void **state)
{
	(void)state;
	uint8_t buf[32];

	memset(buf, 0x00, sizeof buf);
	assert_int_equal(crc32c(buf, sizeof buf), 0x8A9136AAu);
	check_all(buf, sizeof buf, 0x8A9136AAu);

	memset(buf, 0xFF, sizeof buf);
	assert_int_equal(crc32c(buf, sizeof buf), 0x62A8AB43u);
	check_all(buf, sizeof buf, 0x62A8AB43u);

	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(crc32c(buf, sizeof buf), 0x46DD794Eu);
	check_all(buf, sizeof buf, 0x46DD794Eu);

	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(crc32c(buf, sizeof buf), 0x113FDB5Cu);
	check_all(buf, sizeof buf, 0x113FDB5Cu);
}

/* RFC 3720 B.4's iSCSI Read (10) command PDU, 48 bytes -> 0xD9963A56. */
static void test_rfc3720_iscsi_pdu(void **state)
{
	(void)state;
	static const uint8_t pdu[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
		0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
		0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	check_all(pdu, sizeof pdu, 0xD9963A56u);
}

static void test_empty(void **state)
{
	(void)state;
	assert_int_equal(crc32c(NULL, 0), 0);
	assert_int_equal(crc32c("x", 0), 0);
	check_all(NULL, 0, 0);
	/* An empty update leaves any running value unchanged. */
	for (size_t i = 0; i < N_IMPLS; i++) {
		assert_int_equal(impls[i](0xDEADBEEFu, NULL, 0), 0xDEADBEEFu);
		assert_int_equal(impls[i](0xE3069283u, "abc", 0), 0xE3069283u);
	}
}

/* A single byte: a value computed bit by bit, independent of any table. */
static uint32_t crc_bitwise(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

static void test_every_byte_value(void **state)
{
	(void)state;
	for (int b = 0; b < 256; b++) {
		uint8_t x = (uint8_t)b;
		check_all(&x, 1, crc_bitwise(&x, 1));
	}
}

static void test_incremental_every_split(void **state)
{
	(void)state;
	uint8_t buf[300];
	fill_random(buf, sizeof buf);
	uint32_t whole = crc_bitwise(buf, sizeof buf);
	assert_int_equal(crc32c(buf, sizeof buf), whole);
	for (size_t impl = 0; impl < N_IMPLS; impl++) {
		for (size_t cut = 0; cut <= sizeof buf; cut++) {
			uint32_t c = impls[impl](0, buf, cut);
			c = impls[impl](c, buf + cut, sizeof buf - cut);
			if (c != whole)
				fail_msg("%s: split at %zu", impl_names[impl], cut);
		}
		/* Three pieces. */
		for (size_t a = 0; a <= sizeof buf; a += 7) {
			for (size_t b = a; b <= sizeof buf; b += 13) {
				uint32_t c = impls[impl](0, buf, a);
				c = impls[impl](c, buf + a, b - a);
				c = impls[impl](c, buf + b, sizeof buf - b);
				if (c != whole)
					fail_msg("%s: splits at %zu,%zu", impl_names[impl], a, b);
			}
		}
	}
	/* Mixing implementations mid-stream works: they share the convention. */
	for (size_t cut = 0; cut <= sizeof buf; cut += 5) {
		uint32_t c = crc32c_update(0, buf, cut);
		assert_int_equal(crc32c_table_update(c, buf + cut, sizeof buf - cut), whole);
		c = crc32c_fallback_update(0, buf, cut);
		assert_int_equal(crc32c_update(c, buf + cut, sizeof buf - cut), whole);
	}
}

/*
 * Contract that the ISA-L chunking relies on: crc32c over a buffer equals the
 * CRC carried across consecutive pieces of any size. With piece sizes from 1 up
 * this exercises the same arithmetic the 1 GiB chunks do.
 */
static void test_chunk_boundary_shape(void **state)
{
	(void)state;
	enum { N = 4096 };
	uint8_t *buf = malloc(N);
	assert_non_null(buf);
	fill_random(buf, N);
	uint32_t whole = crc32c(buf, N);
	assert_int_equal(whole, crc_bitwise(buf, N));
	for (size_t piece = 1; piece <= N; piece = piece * 2 + 1) {
		uint32_t c = 0;
		for (size_t off = 0; off < N; off += piece) {
			size_t n = N - off < piece ? N - off : piece;
			c = crc32c_update(c, buf + off, n);
		}
		assert_int_equal(c, whole);
	}
	free(buf);
}

static void test_isal_equals_fallback_random(void **state)
{
	(void)state;
	enum { MAXLEN = 4096, PAD = 16 };
	uint8_t *buf = malloc(MAXLEN + PAD);
	assert_non_null(buf);
	printf("test_crc32c: random seed 0x%08x\n", SEED);
	rng_state = SEED;
	for (size_t len = 0; len <= MAXLEN; len++) {
		size_t align = rng() % PAD;
		if (len % 64 == 0)
			fill_random(buf, MAXLEN + PAD);
		const uint8_t *p = buf + align;
		uint32_t init = (len % 3 == 0) ? 0 : rng();
		uint32_t a = crc32c_update(init, p, len);
		uint32_t b = crc32c_fallback_update(init, p, len);
		uint32_t c = crc32c_table_update(init, p, len);
		if (a != b || a != c)
			fail_msg("len %zu align %zu init 0x%08x: isal 0x%08x fallback 0x%08x table 0x%08x",
				 len, align, init, a, b, c);
		if (init == 0 && len <= 300)
			assert_int_equal(a, crc_bitwise(p, len));
	}
	/* Every start offset 0..15 for a few fixed lengths around SIMD widths. */
	static const size_t lens[] = { 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65,
				       127, 128, 129, 255, 256, 257, 1023, 1024, 1025 };
	fill_random(buf, MAXLEN + PAD);
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		for (size_t align = 0; align < PAD; align++) {
			const uint8_t *p = buf + align;
			uint32_t want = crc_bitwise(p, lens[i]);
			check_all(p, lens[i], want);
		}
	}
	free(buf);
}

/* Any single bit flip changes the CRC (CRC-32C detects all 1-bit errors). */
static void test_detects_bit_flips(void **state)
{
	(void)state;
	uint8_t buf[64];
	fill_random(buf, sizeof buf);
	uint32_t base = crc32c(buf, sizeof buf);
	for (size_t bit = 0; bit < sizeof buf * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_not_equal(crc32c(buf, sizeof buf), base);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(crc32c(buf, sizeof buf), base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_init_threads),
		cmocka_unit_test(test_check_value),
		cmocka_unit_test(test_rfc3720_vectors),
		cmocka_unit_test(test_rfc3720_iscsi_pdu),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_every_byte_value),
		cmocka_unit_test(test_incremental_every_split),
		cmocka_unit_test(test_chunk_boundary_shape),
		cmocka_unit_test(test_isal_equals_fallback_random),
		cmocka_unit_test(test_detects_bit_flips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
