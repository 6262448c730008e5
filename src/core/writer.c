/*
 * writer.c: bounded, growable big-endian and varint encoding. Growth doubles up
 * to the writer's limit; nothing is ever written past len or allocated past limit.
 */
#include "core/writer.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

void writer_init(struct writer *w, size_t limit)
{
	memset(w, 0, sizeof *w);
	w->limit = limit;
}

void writer_fini(struct writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof *w);
}

void writer_reset(struct writer *w)
{
	w->len = 0;
	w->err = 0;
}

uint8_t *writer_take(struct writer *w, size_t *len)
{
	uint8_t *b = w->buf;
	*len = w->len;
	size_t limit = w->limit;
	memset(w, 0, sizeof *w);
	w->limit = limit;
	return b;
}

/* Returns a pointer to n writable bytes at the end and advances len, or NULL. */
static uint8_t *grow(struct writer *w, size_t n)
{
	/* n == 0 asks for nothing; buf may still be NULL, and NULL + 0 is undefined. */
	if (w->err || n == 0)
		return NULL;
	if (n > w->limit || w->len > w->limit - n) {
		w->err = -ERR_TOO_LARGE;
		return NULL;
	}
	size_t need = w->len + n;
	if (need > w->cap) {
		size_t cap = w->cap ? w->cap : 64;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		if (cap > w->limit)
			cap = w->limit;
		uint8_t *nb = realloc(w->buf, cap);
		if (!nb) {
			w->err = -ERR_NOMEM;
			return NULL;
		}
		w->buf = nb;
		w->cap = cap;
	}
	uint8_t *p = w->buf + w->len;
	w->len = need;
	return p;
}

void writer_prealloc(struct writer *w, size_t n)
{
	if (w->err || n <= w->cap)
		return;
	if (n > w->limit)
		n = w->limit;
	uint8_t *nb = realloc(w->buf, n);
	if (!nb) {
		w->err = -ERR_NOMEM;
		return;
	}
	w->buf = nb;
	w->cap = n;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

void writer_u8(struct writer *w, uint8_t v)
{
	uint8_t *p = grow(w, 1);
	if (p)
		p[0] = v;
}

void writer_u16(struct writer *w, uint16_t v)
{
	uint8_t *p = grow(w, 2);
	if (p)
		put_be(p, v, 2);
}

void writer_u32(struct writer *w, uint32_t v)
{
	uint8_t *p = grow(w, 4);
	if (p)
		put_be(p, v, 4);
}

void writer_u64(struct writer *w, uint64_t v)
{
	uint8_t *p = grow(w, 8);
	if (p)
		put_be(p, v, 8);
}

void writer_f64(struct writer *w, double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof u);
	writer_u64(w, u);
}

void writer_uvarlong(struct writer *w, uint64_t v)
{
	uint8_t tmp[10];
	int n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		tmp[n++] = b | (v ? 0x80 : 0);
	} while (v);
	writer_bytes(w, tmp, (size_t)n);
}

void writer_uvarint(struct writer *w, uint32_t v)
{
	writer_uvarlong(w, v);
}

void writer_varint(struct writer *w, int32_t v)
{
	writer_uvarint(w, ((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

void writer_varlong(struct writer *w, int64_t v)
{
	writer_uvarlong(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void writer_bytes(struct writer *w, const void *data, size_t len)
{
	uint8_t *p = grow(w, len);
	if (p && len)
		memcpy(p, data, len);
}

void writer_zeros(struct writer *w, size_t len)
{
	uint8_t *p = grow(w, len);
	if (p && len)
		memset(p, 0, len);
}

void writer_string(struct writer *w, const void *data, size_t len)
{
	if (!data) {
		writer_i16(w, -1);
		return;
	}
	if (len > INT16_MAX) {
		w->err = w->err ? w->err : -ERR_TOO_LARGE;
		return;
	}
	writer_i16(w, (int16_t)len);
	writer_bytes(w, data, len);
}

void writer_kbytes(struct writer *w, const void *data, size_t len)
{
	if (!data) {
		writer_i32(w, -1);
		return;
	}
	if (len > INT32_MAX) {
		w->err = w->err ? w->err : -ERR_TOO_LARGE;
		return;
	}
	writer_i32(w, (int32_t)len);
	writer_bytes(w, data, len);
}

void writer_compact_bytes(struct writer *w, const void *data, size_t len)
{
	if (!data) {
		writer_uvarint(w, 0);
		return;
	}
	if (len >= UINT32_MAX) {
		w->err = w->err ? w->err : -ERR_TOO_LARGE;
		return;
	}
	writer_uvarint(w, (uint32_t)len + 1);
	writer_bytes(w, data, len);
}

void writer_varint_bytes(struct writer *w, const void *data, size_t len)
{
	if (!data) {
		writer_varint(w, -1);
		return;
	}
	if (len > INT32_MAX) {
		w->err = w->err ? w->err : -ERR_TOO_LARGE;
		return;
	}
	writer_varint(w, (int32_t)len);
	writer_bytes(w, data, len);
}

void writer_shortstr(struct writer *w, const void *data, size_t len)
{
	if (len > 255) {
		w->err = w->err ? w->err : -ERR_TOO_LARGE;
		return;
	}
	writer_u8(w, (uint8_t)len);
	writer_bytes(w, data, len);
}

void writer_longstr(struct writer *w, const void *data, size_t len)
{
	if (len > UINT32_MAX) {
		w->err = w->err ? w->err : -ERR_TOO_LARGE;
		return;
	}
	writer_u32(w, (uint32_t)len);
	writer_bytes(w, data, len);
}

size_t writer_reserve(struct writer *w, size_t n)
{
	size_t pos = w->len;
	writer_zeros(w, n);
	return pos;
}

/* Patches n bytes at pos if they lie within what was written. */
static void put_at(struct writer *w, size_t pos, uint64_t v, int n)
{
	if (w->err)
		return;
	if (pos > w->len || w->len - pos < (size_t)n) {
		w->err = -ERR_INVALID;
		return;
	}
	put_be(w->buf + pos, v, n);
}

void writer_put_u16(struct writer *w, size_t pos, uint16_t v)
{
	put_at(w, pos, v, 2);
}

void writer_put_u32(struct writer *w, size_t pos, uint32_t v)
{
	put_at(w, pos, v, 4);
}

void writer_put_u64(struct writer *w, size_t pos, uint64_t v)
{
	put_at(w, pos, v, 8);
}
