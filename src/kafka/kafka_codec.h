/*
 * kafka_codec.h: the table-driven Kafka message codec.
 *
 * tools/kafka_codegen.py turns each Kafka JSON message schema into a C struct
 * plus a descriptor table (src/kafka/kafka_msg.c): one struct kafka_field per
 * schema field, in wire order, giving its type, the versions it is present in,
 * nullable and tagged versions, its default and its offset in the C struct.
 * This module interprets those tables, so the rules of the Kafka encoding live
 * in one hand-written place:
 *
 *   version v of a message is flexible when v >= flexible_min; then strings,
 *   bytes, records and arrays are "compact" (uvarint length + 1, 0 = null) and
 *   every struct ends with a tagged-field section:
 *       uvarint count, then count x { uvarint tag, uvarint size, size bytes }
 *   A field is tagged in v when tagged_min <= v, else regular when
 *   min_version <= v <= max_version, else absent (it then holds its default).
 *
 * Decoding goes through core/reader.h only. Every array count is checked
 * against the bytes left (count x the least bytes one element can take in
 * this version) before it sizes an arena allocation; unknown tags are skipped
 * after their size is checked. Strings, bytes and records borrow from the
 * reader's buffer; arrays come from the arena.
 *
 * Callers normally use the typed wrappers of kafka_msg.h; these generic entry
 * points serve dispatch tables, tests and the deferred-records encoder below.
 *
 * Deferred records (zero-copy fetch): a RECORDS value with data ==
 * KAFKA_RECORDS_DEFERRED and len n stands for n bytes kept elsewhere (a file
 * range). kafka_codec_encode_deferred writes its length prefix for n bytes but
 * not the bytes, and calls the sink with the writer offset where they belong;
 * the message on the wire is then the writer's bytes with each deferred value's
 * n bytes inserted at its offset (offsets ascend: sink calls come in wire
 * order). kafka_codec_encode refuses deferred values (-ERR_INVALID).
 */
#ifndef SLUICE_KAFKA_CODEC_H
#define SLUICE_KAFKA_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reader.h"
#include "core/writer.h"
#include "kafka/kafka_arena.h"

/* Upper end of an open version range ("3+"). */
#define KAFKA_V_MAX INT16_MAX
/* Longest string Kafka accepts (Java's limit, both plain and compact). */
#define KAFKA_STRING_MAX INT16_MAX

/* A Kafka UUID: 16 bytes in network order; all zero is the "zero uuid". */
struct kafka_uuid {
	uint8_t bytes[16];
};

/* Wire type of a field's value (or of each element when is_array). */
enum kafka_type {
	KAFKA_T_BOOL = 1,
	KAFKA_T_INT8,
	KAFKA_T_INT16,
	KAFKA_T_UINT16,
	KAFKA_T_INT32,
	KAFKA_T_UINT32,
	KAFKA_T_INT64,
	KAFKA_T_FLOAT64,
	KAFKA_T_UUID,    /* struct kafka_uuid */
	KAFKA_T_STRING,  /* struct slice */
	KAFKA_T_BYTES,   /* struct slice */
	KAFKA_T_RECORDS, /* struct slice: a raw record set, never parsed here */
	KAFKA_T_STRUCT,  /* the struct described by sub */
};

struct kafka_struct_desc;

/*
 * One schema field. Version ranges are inclusive; -1/-1 means never. Arrays
 * are stored as a pointer at offset, a size_t count at count_offset and, when
 * nullable in some version, a bool at null_offset (0 when there is none: an
 * array's pointer always precedes them, so 0 is never a valid offset).
 */
struct kafka_field {
	const char *name;             /* schema name, for diagnostics */
	enum kafka_type type;
	int16_t min_version;          /* "versions" */
	int16_t max_version;
	int16_t nullable_min;         /* "nullableVersions" */
	int16_t nullable_max;
	int16_t tagged_min;           /* "taggedVersions" (open-ended), -1 if untagged */
	uint32_t tag;
	uint8_t is_array;
	uint8_t ignorable;            /* may be dropped silently where absent */
	uint8_t compact_never;        /* field "flexibleVersions": "none" */
	uint8_t default_null;         /* strings, bytes, records: the default is null */
	size_t offset;
	size_t count_offset;
	size_t null_offset;
	const struct kafka_struct_desc *sub; /* KAFKA_T_STRUCT */
	int64_t def_int;              /* integers and bools */
	double def_float;
	const char *def_str;          /* strings: default text when not null; NULL is "" */
};

/* A struct: its fields in wire order. */
struct kafka_struct_desc {
	const char *name;
	size_t size;                  /* sizeof the C struct */
	const struct kafka_field *fields;
	size_t n_fields;
};

/* A top-level message (request, response, header or data schema). */
struct kafka_msg_desc {
	const char *name;             /* "MetadataRequest" */
	const struct kafka_struct_desc *body;
	int16_t api_key;              /* -1 for headers and data schemas */
	int16_t min_version;          /* validVersions */
	int16_t max_version;
	int16_t flexible_min;         /* first flexible version, -1 if never */
};

/* Whether the field is on the wire in version v as a regular (untagged) field. */
bool kafka_field_regular_in(const struct kafka_field *f, int16_t v);
/* Whether the field is carried as a tagged field in version v. */
bool kafka_field_tagged_in(const struct kafka_field *f, int16_t v);
/* Whether the field may be null in version v. */
bool kafka_field_nullable_in(const struct kafka_field *f, int16_t v);
/* Whether version v of the message is flexible. */
bool kafka_msg_is_flexible(const struct kafka_msg_desc *m, int16_t v);

/* Sets every field of a struct of type d to its schema default. */
void kafka_codec_init(const struct kafka_struct_desc *d, void *obj);
/* Whether field f of obj holds its schema default (deep for structs). */
bool kafka_codec_field_is_default(const struct kafka_field *f, const void *obj);

/*
 * Decodes version `version` of message m from r into out (a struct of m's
 * type), which is first set to defaults. Arrays are allocated from arena.
 * Returns 0; -ERR_UNSUPPORTED for a version outside m's range; -ERR_MALFORMED
 * for bytes that do not parse (r->err is set, reader_offset(r) is near the
 * fault); -ERR_TOO_LARGE or -ERR_NOMEM when the arena refuses. Bytes after
 * the message are left in r for the caller to judge.
 */
int kafka_codec_decode(const struct kafka_msg_desc *m, struct reader *r, int16_t version,
	struct kafka_arena *arena, void *out);

/*
 * Encodes in as version `version` of message m, appending to w. Tagged fields
 * are written when they differ from their default. Returns 0; -ERR_UNSUPPORTED
 * for a version outside m's range or a non-ignorable field that holds a
 * non-default value but is absent from this version; -ERR_INVALID for null in
 * a non-nullable field (or an array with a count but no elements);
 * -ERR_TOO_LARGE for an over-long string/array or the writer's limit;
 * -ERR_NOMEM. On error w->len is restored to where it was (w->err may stay set).
 */
int kafka_codec_encode(const struct kafka_msg_desc *m, struct writer *w, int16_t version,
	const void *in);

/*
 * The data pointer of a deferred RECORDS value (see the top of this file); never
 * read or written. The mark is writable on purpose: a const one-zero-byte array
 * may share its address with the literal "" (clang merges equal constants, which
 * C allows for string literals), and then every empty default string looked
 * deferred. A modifiable object's address is its own.
 */
extern uint8_t kafka_records_deferred_mark[1];
#define KAFKA_RECORDS_DEFERRED ((const uint8_t *)kafka_records_deferred_mark)

/* Where kafka_codec_encode_deferred reports deferred records. */
struct kafka_records_sink {
	/*
	 * Called once per deferred value, in wire order: rec is the value in the
	 * message being encoded (borrowed), at the writer offset where its rec->len
	 * bytes belong (the prefix is already written). Returns 0, or an error that
	 * stops the encoding and is returned.
	 */
	int (*deferred)(void *arg, const struct slice *rec, size_t at);
	void *arg;
};

/*
 * Encodes like kafka_codec_encode, allowing deferred RECORDS values, each
 * reported to sink (NULL: refused like kafka_codec_encode does). A deferred
 * value inside a tagged field is refused (-ERR_UNSUPPORTED); one longer than
 * its length prefix can hold gives -ERR_TOO_LARGE. Offsets already reported are
 * void when this returns an error (w->len is restored).
 */
int kafka_codec_encode_deferred(const struct kafka_msg_desc *m, struct writer *w,
	int16_t version, const void *in, const struct kafka_records_sink *sink);

#endif
