/*
 * reader.c: bounded big-endian and varint decoding. This file is the only place
 * that does pointer arithmetic on untrusted bytes; everything else asks it.
 */
#include "core/reader.h"

#include <string.h>

#include "core/err.h"

/*
 * A reader over no buffer points here instead of at NULL: arithmetic on a null
 * pointer is undefined even with offset 0, and an empty slice of it must still
 * read as "empty", not "null".
 */
static const uint8_t empty[1];

void reader_init(struct reader *r, const void *buf, size_t len)
{
	r->err = 0;
	if (buf == NULL) {
		if (len != 0)
			r->err = -ERR_MALFORMED;
		buf = empty;
		len = 0;
	}
	r->p = buf;
	r->start = buf;
	r->end = r->p + len;
}

size_t reader_remaining(const struct reader *r)
{
	return r->err ? 0 : (size_t)(r->end - r->p);
}

size_t reader_offset(const struct reader *r)
{
	return (size_t)(r->p - r->start);
}

void reader_fail(struct reader *r)
{
	r->err = -ERR_MALFORMED;
}

/* Returns a pointer to n readable bytes and advances, or NULL and fails. */
static const uint8_t *take(struct reader *r, size_t n)
{
	if (r->err || (size_t)(r->end - r->p) < n) {
		r->err = -ERR_MALFORMED;
		return NULL;
	}
	const uint8_t *q = r->p;
	r->p += n;
	return q;
}

uint8_t reader_u8(struct reader *r)
{
	const uint8_t *q = take(r, 1);
	return q ? q[0] : 0;
}

int8_t reader_i8(struct reader *r)
{
	return (int8_t)reader_u8(r);
}

uint16_t reader_u16(struct reader *r)
{
	const uint8_t *q = take(r, 2);
	return q ? (uint16_t)((q[0] << 8) | q[1]) : 0;
}

int16_t reader_i16(struct reader *r)
{
	return (int16_t)reader_u16(r);
}

uint32_t reader_u32(struct reader *r)
{
	const uint8_t *q = take(r, 4);
	if (!q)
		return 0;
	return ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | q[3];
}

int32_t reader_i32(struct reader *r)
{
	return (int32_t)reader_u32(r);
}

uint64_t reader_u64(struct reader *r)
{
	/* One take of 8 bytes, so a short read consumes nothing (offsets stay true). */
	const uint8_t *q = take(r, 8);
	if (!q)
		return 0;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | q[i];
	return v;
}

int64_t reader_i64(struct reader *r)
{
	return (int64_t)reader_u64(r);
}

double reader_f64(struct reader *r)
{
	uint64_t u = reader_u64(r);
	double d;
	memcpy(&d, &u, sizeof d);
	return d;
}

/* Fails the reader and rewinds it to at, the start of the field that failed. */
static void fail_at(struct reader *r, const uint8_t *at)
{
	r->p = at;
	r->err = -ERR_MALFORMED;
}

/*
 * LEB128 of at most max_bytes; the last byte may not carry bits past 'bits'.
 * Over-long but in-range forms (0x80 0x00 for 0) are accepted, as Kafka does.
 */
static uint64_t uleb(struct reader *r, int max_bytes, int bits)
{
	const uint8_t *at = r->p;
	uint64_t v = 0;
	for (int i = 0; i < max_bytes; i++) {
		uint8_t b = reader_u8(r);
		if (r->err)
			break;
		int shift = 7 * i;
		uint64_t part = (uint64_t)(b & 0x7f);
		if (shift + 7 > bits && (part >> (bits - shift)) != 0)
			break;
		v |= part << shift;
		if (!(b & 0x80))
			return v;
	}
	fail_at(r, at);
	return 0;
}

uint32_t reader_uvarint(struct reader *r)
{
	return (uint32_t)uleb(r, 5, 32);
}

uint64_t reader_uvarlong(struct reader *r)
{
	return uleb(r, 10, 64);
}

int32_t reader_varint(struct reader *r)
{
	uint32_t u = reader_uvarint(r);
	return (int32_t)((u >> 1) ^ (~(u & 1) + 1));
}

int64_t reader_varlong(struct reader *r)
{
	uint64_t u = reader_uvarlong(r);
	return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}

struct slice reader_bytes(struct reader *r, size_t n)
{
	struct slice s = { NULL, 0 };
	const uint8_t *q = take(r, n);
	if (q) {
		s.data = q;
		s.len = n;
	}
	return s;
}

void reader_skip(struct reader *r, size_t n)
{
	(void)take(r, n);
}

struct reader reader_sub(struct reader *r, size_t n)
{
	struct reader sub;
	const uint8_t *q = take(r, n);
	reader_init(&sub, q, q ? n : 0);
	if (!q)
		sub.err = -ERR_MALFORMED;
	return sub;
}

/*
 * The payload after a length len already read from at; -1 means null. On
 * failure the length prefix is given back too, so the field fails as a whole.
 */
static struct slice sized(struct reader *r, const uint8_t *at, int64_t len, int nullable)
{
	struct slice s = { NULL, 0 };
	if (r->err)
		return s;
	if (len == -1 && nullable)
		return s;
	if (len < 0 || (uint64_t)len > (size_t)(r->end - r->p)) {
		fail_at(r, at);
		return s;
	}
	/* Never NULL on success, so an empty value stays distinct from null. */
	return reader_bytes(r, (size_t)len);
}

struct slice reader_string(struct reader *r, int nullable)
{
	const uint8_t *at = r->p;
	int16_t len = reader_i16(r);
	return sized(r, at, len, nullable);
}

struct slice reader_kbytes(struct reader *r, int nullable)
{
	const uint8_t *at = r->p;
	int32_t len = reader_i32(r);
	return sized(r, at, len, nullable);
}

struct slice reader_compact_bytes(struct reader *r, int nullable)
{
	const uint8_t *at = r->p;
	uint32_t n = reader_uvarint(r);
	return sized(r, at, (int64_t)n - 1, nullable);
}

struct slice reader_varint_bytes(struct reader *r)
{
	const uint8_t *at = r->p;
	int32_t len = reader_varint(r);
	return sized(r, at, len, 1);
}

struct slice reader_shortstr(struct reader *r)
{
	const uint8_t *at = r->p;
	uint8_t len = reader_u8(r);
	return sized(r, at, len, 0);
}

struct slice reader_longstr(struct reader *r)
{
	const uint8_t *at = r->p;
	uint32_t len = reader_u32(r);
	return sized(r, at, len, 0);
}

/*
 * Checks that count elements of at least min bytes each can fit in what is
 * left. Division, not multiplication, so no min can overflow the check; counts
 * past INT32_MAX (possible with compact counts) are rejected, never wrapped.
 */
static int32_t checked_count(struct reader *r, const uint8_t *at, int64_t count, size_t min)
{
	if (r->err)
		return 0;
	if (count == -1)
		return -1;
	if (min == 0)
		min = 1;
	if (count < 0 || count > INT32_MAX ||
	    (uint64_t)count > reader_remaining(r) / min) {
		fail_at(r, at);
		return 0;
	}
	return (int32_t)count;
}

int32_t reader_array_count(struct reader *r, size_t min_elem_bytes)
{
	const uint8_t *at = r->p;
	int32_t n = reader_i32(r);
	return checked_count(r, at, n, min_elem_bytes);
}

int32_t reader_compact_array_count(struct reader *r, size_t min_elem_bytes)
{
	const uint8_t *at = r->p;
	uint32_t n = reader_uvarint(r);
	return checked_count(r, at, (int64_t)n - 1, min_elem_bytes);
}
