/*
 * reader.h: the only way Sluice decodes untrusted bytes.
 *
 * A reader is a window [p, end) over a buffer it does not own. Every read checks
 * what remains; on a short or invalid read it sets err (sticky) and returns zero
 * or an empty slice, so callers decode a whole structure and check err once.
 * A failed read consumes nothing: reader_offset() then names the start of the
 * field that failed (for a string, its length prefix), for diagnostics.
 * Slices read successfully never have data NULL unless the value was null, even
 * when empty and even over a NULL, 0-length buffer.
 * All integers on the wire are big-endian (Kafka and AMQP agree on this).
 * Varints are Kafka's: unsigned LEB128 (uvarint) and zigzag-encoded signed
 * (varint/varlong), at most 5 and 10 bytes.
 */
#ifndef SLUICE_READER_H
#define SLUICE_READER_H

#include <stddef.h>
#include <stdint.h>

struct reader {
	const uint8_t *p;   /* borrowed: next unread byte */
	const uint8_t *end; /* one past the last byte */
	const uint8_t *start; /* first byte, for offsets in error messages */
	int err;            /* 0, or -ERR_MALFORMED once any read failed */
};

/* A borrowed byte range; data is NULL when the value was null on the wire. */
struct slice {
	const uint8_t *data;
	size_t len;
};

/* Starts a reader over len bytes at buf (NULL with len 0 is a valid empty
 * reader; NULL with len > 0 starts failed). */
void reader_init(struct reader *r, const void *buf, size_t len);
/* Bytes left to read (0 once err is set). */
size_t reader_remaining(const struct reader *r);
/* Offset of the next byte from the start, for diagnostics. */
size_t reader_offset(const struct reader *r);
/* Marks the reader failed; later reads return zero. */
void reader_fail(struct reader *r);

uint8_t reader_u8(struct reader *r);
int8_t reader_i8(struct reader *r);
uint16_t reader_u16(struct reader *r);
int16_t reader_i16(struct reader *r);
uint32_t reader_u32(struct reader *r);
int32_t reader_i32(struct reader *r);
uint64_t reader_u64(struct reader *r);
int64_t reader_i64(struct reader *r);
double reader_f64(struct reader *r);
/* Unsigned LEB128, at most 5 bytes, value must fit 32 bits (a 5th byte with
 * bits past bit 31 fails). */
uint32_t reader_uvarint(struct reader *r);
/* Unsigned LEB128, at most 10 bytes, value must fit 64 bits. */
uint64_t reader_uvarlong(struct reader *r);
/* Zigzag varint (32-bit), as Kafka record fields. */
int32_t reader_varint(struct reader *r);
/* Zigzag varlong (64-bit). */
int64_t reader_varlong(struct reader *r);

/* n raw bytes as a borrowed slice. */
struct slice reader_bytes(struct reader *r, size_t n);
/* Skips n bytes. */
void reader_skip(struct reader *r, size_t n);
/* Takes n bytes as a sub-reader; the parent advances past them. */
struct reader reader_sub(struct reader *r, size_t n);

/* Kafka STRING: i16 length, -1 is null (nullable must be set, else error). */
struct slice reader_string(struct reader *r, int nullable);
/* Kafka BYTES: i32 length, -1 is null when nullable. */
struct slice reader_kbytes(struct reader *r, int nullable);
/* Kafka COMPACT_STRING / COMPACT_BYTES: uvarint length+1, 0 is null when nullable. */
struct slice reader_compact_bytes(struct reader *r, int nullable);
/* Kafka varint-length bytes inside records: zigzag varint length, -1 is null. */
struct slice reader_varint_bytes(struct reader *r);
/* AMQP shortstr: u8 length. */
struct slice reader_shortstr(struct reader *r);
/* AMQP longstr: u32 length. */
struct slice reader_longstr(struct reader *r);

/*
 * Array count (Kafka ARRAY: i32, -1 null; compact: uvarint count+1). Returns the
 * count, or -1 for null. A count larger than the bytes left (each element takes
 * at least min_elem_bytes; 0 counts as 1) fails the reader, so a hostile count
 * can never size an allocation or a loop beyond the frame. Counts other than -1
 * below 0 or above INT32_MAX fail too.
 */
int32_t reader_array_count(struct reader *r, size_t min_elem_bytes);
int32_t reader_compact_array_count(struct reader *r, size_t min_elem_bytes);

#endif
