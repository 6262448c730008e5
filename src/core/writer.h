/*
 * writer.h: bounded encoding into a growable buffer.
 *
 * A writer owns a heap buffer that grows as needed up to a hard cap chosen by
 * the caller (a configured limit). A write that would pass the cap, or an
 * allocation failure, sets err (sticky) and is dropped; callers write a whole
 * message and check err once. Integers are big-endian; varints are Kafka's.
 * Space can be reserved and patched later (length prefixes, CRCs).
 */
#ifndef SLUICE_WRITER_H
#define SLUICE_WRITER_H

#include <stddef.h>
#include <stdint.h>

struct writer {
	uint8_t *buf;  /* owned; freed by writer_fini() unless taken */
	size_t len;    /* bytes written */
	size_t cap;    /* bytes allocated */
	size_t limit;  /* never grow beyond this many bytes */
	int err;       /* 0, or -ERR_TOO_LARGE, -ERR_NOMEM, -ERR_INVALID (bad patch) */
};

/* Starts an empty writer that may grow up to limit bytes. */
void writer_init(struct writer *w, size_t limit);
/* Allocates room for n bytes at once (at most the limit), so a writer whose
 * final size is known is not grown step by step. Sets err on failure. */
void writer_prealloc(struct writer *w, size_t n);
/* Frees the buffer. */
void writer_fini(struct writer *w);
/* Forgets the contents, keeps the allocation. */
void writer_reset(struct writer *w);
/* Hands the buffer to the caller (who frees it; NULL if nothing was ever
 * allocated) and resets the writer to empty with the same limit. */
uint8_t *writer_take(struct writer *w, size_t *len);

void writer_u8(struct writer *w, uint8_t v);
void writer_u16(struct writer *w, uint16_t v);
void writer_u32(struct writer *w, uint32_t v);
void writer_u64(struct writer *w, uint64_t v);
#define writer_i8(w, v) writer_u8((w), (uint8_t)(v))
#define writer_i16(w, v) writer_u16((w), (uint16_t)(v))
#define writer_i32(w, v) writer_u32((w), (uint32_t)(v))
#define writer_i64(w, v) writer_u64((w), (uint64_t)(v))
void writer_f64(struct writer *w, double v);
void writer_uvarint(struct writer *w, uint32_t v);
void writer_uvarlong(struct writer *w, uint64_t v);
void writer_varint(struct writer *w, int32_t v);
void writer_varlong(struct writer *w, int64_t v);
void writer_bytes(struct writer *w, const void *data, size_t len);
void writer_zeros(struct writer *w, size_t len);

/* Kafka STRING (i16 length; data NULL writes null -1). */
void writer_string(struct writer *w, const void *data, size_t len);
/* Kafka BYTES (i32 length; data NULL writes -1). */
void writer_kbytes(struct writer *w, const void *data, size_t len);
/* Kafka COMPACT_STRING/BYTES (uvarint len+1; data NULL writes 0). */
void writer_compact_bytes(struct writer *w, const void *data, size_t len);
/* Varint-length bytes inside records (zigzag; data NULL writes -1). */
void writer_varint_bytes(struct writer *w, const void *data, size_t len);
/* AMQP shortstr (len must be <= 255, else err). */
void writer_shortstr(struct writer *w, const void *data, size_t len);
/* AMQP longstr. */
void writer_longstr(struct writer *w, const void *data, size_t len);

/* Reserves n bytes and returns their position, to patch with writer_put_*. */
size_t writer_reserve(struct writer *w, size_t n);
/* Overwrites bytes at pos, which must already be written (else err is set to
 * -ERR_INVALID); does nothing once err is set. */
void writer_put_u32(struct writer *w, size_t pos, uint32_t v);
void writer_put_u16(struct writer *w, size_t pos, uint16_t v);
void writer_put_u64(struct writer *w, size_t pos, uint64_t v);

#endif
