/*
 * amqp_codec.h: AMQP 0-9-1 framing, the table-driven method codec, content
 * headers and field tables.
 *
 * A connection starts with the client's 8-byte protocol header "AMQP" 0 0 9 1;
 * after that both peers exchange frames (AMQP 0-9-1 section 4.2.3):
 *
 *   +------+---------+---------+--------------+-----------+
 *   | type | channel |  size   | payload      | frame-end |
 *   | u8   | u16     |  u32    | size octets  | 0xCE      |
 *   +------+---------+---------+--------------+-----------+
 *     1 method  payload = class-id u16, method-id u16, arguments
 *     2 header  payload = class-id u16, weight u16 (0), body-size u64,
 *                         property flags (u16 words, bit 15 = 1st property,
 *                         bit 0 = another flags word follows), property list
 *     3 body    payload = the next bytes of the message body
 *     8 heartbeat, channel 0, size 0
 *
 * Method arguments are octet/short/long/longlong/timestamp (big-endian
 * unsigned), shortstr (u8 length), longstr (u32 length), table (u32 length +
 * entries) and bit. Consecutive bit arguments share an octet, first bit in
 * the low bit; any other argument (or a 9th bit) closes the octet.
 * tools/amqp_codegen.py turns the spec's JSON into one descriptor table per
 * method (amqp_msg.c) and this module interprets them.
 *
 * Field tables (4.2.5.5 with RabbitMQ's type letters, see the errata):
 *     table = u32 byte length, then entries: shortstr key, u8 letter, value
 *   t bool(u8)   b int8   B uint8   s int16   u uint16   I int32   i uint32
 *   l int64 (L too, read as int64 like RabbitMQ)   f float   d double
 *   D decimal (u8 scale, int32 value)   S longstr   x byte array (longstr)
 *   T timestamp (u64)   F table   A array (u32 byte length, then letter+value
 *   repeated)   V void (no value)
 * Decoded tables are kept LAZY: a struct amqp_table holding the raw entry
 * bytes, borrowed from the frame, after one validating walk (lengths, type
 * letters, nesting depth <= AMQP_TABLE_MAX_DEPTH). Iterators and
 * amqp_table_get() read values from the raw bytes on demand; nested tables
 * and arrays come back raw too. No allocation happens while decoding. A table
 * to encode can be raw bytes (a decoded one, passed through) or a C array of
 * entries; the two mix freely at any level.
 *
 * Everything is decoded through core/reader.h and encoded through
 * core/writer.h. Include amqp/amqp_msg.h (which includes this header) for the
 * generated method structs, struct amqp_method and struct
 * amqp_content_header.
 */
#ifndef SLUICE_AMQP_CODEC_H
#define SLUICE_AMQP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reader.h"
#include "core/writer.h"

/* The protocol header a 0-9-1 client sends first (and a server sends back
 * before closing when it does not speak the client's version). */
#define AMQP_PROTOCOL_HEADER "AMQP\x00\x00\x09\x01"
#define AMQP_PROTOCOL_HEADER_SIZE 8
/* Frame header (type, channel, size) and header + frame-end octet. */
#define AMQP_FRAME_HEADER_SIZE 7
#define AMQP_FRAME_OVERHEAD 8
/* Deepest nesting of tables/arrays accepted; the outermost table is 1. */
#define AMQP_TABLE_MAX_DEPTH 32

/* Method ids combine class and method: AMQP_BASIC_PUBLISH == 0x003C0028. */
#define AMQP_METHOD_ID(class_id, method_id) \
	(((uint32_t)(class_id) << 16) | (uint16_t)(method_id))
#define AMQP_METHOD_CLASS(id) ((uint16_t)((id) >> 16))
#define AMQP_METHOD_INDEX(id) ((uint16_t)((id) & 0xffff))

/* ---- descriptor tables (generated in amqp_msg.c) ---- */

/* Wire type of a method argument or property. */
enum amqp_type {
	AMQP_T_BIT = 1,    /* bool, packed with neighbouring bits */
	AMQP_T_OCTET,      /* uint8_t */
	AMQP_T_SHORT,      /* uint16_t */
	AMQP_T_LONG,       /* uint32_t */
	AMQP_T_LONGLONG,   /* uint64_t */
	AMQP_T_TIMESTAMP,  /* uint64_t, seconds since the epoch */
	AMQP_T_SHORTSTR,   /* struct slice, at most 255 bytes */
	AMQP_T_LONGSTR,    /* struct slice */
	AMQP_T_TABLE,      /* struct amqp_table */
};

/* One method argument or property, in wire order. */
struct amqp_field {
	const char *name;   /* spec name, for diagnostics */
	enum amqp_type type;
	uint8_t bit;        /* AMQP_T_BIT: bit in its octet; 0 opens a new octet */
	size_t offset;      /* offsetof the member in the C struct */
	uint64_t def_int;   /* default of integers and bits */
	const char *def_str; /* default of strings, NULL for "" */
};

/* Method flags. TO_SERVER / TO_CLIENT come from the spec's chassis: which
 * peer receives (implements) the method. */
#define AMQP_M_SYNCHRONOUS 0x01u /* the sender waits for a response */
#define AMQP_M_CONTENT 0x02u     /* followed by a content header and body */
#define AMQP_M_TO_SERVER 0x04u   /* a client may send it */
#define AMQP_M_TO_CLIENT 0x08u   /* a server may send it */

struct amqp_method_desc {
	const char *name;      /* "basic.publish" */
	uint32_t id;           /* AMQP_METHOD_ID(class_id, method_id) */
	uint16_t class_id;
	uint16_t method_id;
	uint32_t flags;        /* AMQP_M_* */
	uint32_t responses[2]; /* ids of the replies a synchronous method expects, 0: none */
	size_t size;           /* sizeof the argument struct, 0 when it has none */
	const struct amqp_field *fields;
	size_t n_fields;
};

/* Content-header properties of a class (only basic has any). */
struct amqp_props_desc {
	const char *name;      /* class name */
	uint16_t class_id;
	size_t size;           /* sizeof the properties struct */
	size_t flags_offset;   /* offsetof its uint16_t flags */
	const struct amqp_field *fields; /* at most 15, wire order */
	size_t n_fields;
};

/* ---- field tables ---- */

/* Field value types; each is its wire letter. */
enum amqp_field_type {
	AMQP_FIELD_BOOL = 't',
	AMQP_FIELD_I8 = 'b',
	AMQP_FIELD_U8 = 'B',
	AMQP_FIELD_I16 = 's',
	AMQP_FIELD_U16 = 'u',
	AMQP_FIELD_I32 = 'I',
	AMQP_FIELD_U32 = 'i',
	AMQP_FIELD_I64 = 'l',
	AMQP_FIELD_FLOAT = 'f',
	AMQP_FIELD_DOUBLE = 'd',
	AMQP_FIELD_DECIMAL = 'D',
	AMQP_FIELD_LONGSTR = 'S',
	AMQP_FIELD_BYTES = 'x',
	AMQP_FIELD_ARRAY = 'A',
	AMQP_FIELD_TIMESTAMP = 'T',
	AMQP_FIELD_TABLE = 'F',
	AMQP_FIELD_VOID = 'V',
};

struct amqp_table_entry;
struct amqp_field_value;

/*
 * A field table: raw entry bytes when raw.data is not NULL (as decoded: the
 * entries without the u32 length, borrowed), else n_entries entries. All
 * zero is the empty table.
 */
struct amqp_table {
	struct slice raw;
	const struct amqp_table_entry *entries; /* borrowed */
	size_t n_entries;
};

/* A field array: raw value bytes (letter + value, repeated) or items. */
struct amqp_array {
	struct slice raw;
	const struct amqp_field_value *items; /* borrowed */
	size_t n_items;
};

/* A decimal: value / 10^scale (the errata: value is signed). */
struct amqp_decimal {
	uint8_t scale;
	int32_t value;
};

struct amqp_field_value {
	enum amqp_field_type type;
	union {
		bool b;                    /* t */
		int8_t i8;                 /* b */
		uint8_t u8;                /* B */
		int16_t i16;               /* s */
		uint16_t u16;              /* u */
		int32_t i32;               /* I */
		uint32_t u32;              /* i */
		int64_t i64;               /* l */
		float f32;                 /* f */
		double f64;                /* d */
		struct amqp_decimal dec;   /* D */
		struct slice str;          /* S and x (borrowed) */
		uint64_t ts;               /* T */
		struct amqp_table table;   /* F */
		struct amqp_array array;   /* A */
	} v;
};

struct amqp_table_entry {
	struct slice key; /* shortstr: at most 255 bytes */
	struct amqp_field_value value;
};

/*
 * Reads a table (u32 length + entries) from r and validates every entry,
 * nested tables and arrays included. out->raw borrows from r's buffer.
 * Returns 0; -ERR_MALFORMED for a bad length, key, value or type letter;
 * -ERR_TOO_LARGE when nesting passes AMQP_TABLE_MAX_DEPTH. On failure r is
 * failed at the table's length prefix.
 */
int amqp_table_parse(struct reader *r, struct amqp_table *out);
/* Validates raw table entries (without the length) as amqp_table_parse does. */
int amqp_table_check(struct slice raw);
/*
 * Writes t (u32 length + entries). Raw tables and arrays are written as they
 * are. Returns 0; -ERR_INVALID for an unknown value type, a slice with data
 * NULL but a length, or nesting past AMQP_TABLE_MAX_DEPTH (e.g. a cycle);
 * -ERR_TOO_LARGE for a key over 255 bytes or the writer's limit; -ERR_NOMEM.
 * On error w->len is restored.
 */
int amqp_table_encode(struct writer *w, const struct amqp_table *t);
/* Writes an array (u32 length + values); returns as amqp_table_encode(). */
int amqp_array_encode(struct writer *w, const struct amqp_array *a);

/* Walks a table's entries (raw or not) in order. */
struct amqp_table_iter {
	const struct amqp_table *t;
	struct reader r; /* raw tables */
	size_t i;        /* entry tables */
};
void amqp_table_iter_init(struct amqp_table_iter *it, const struct amqp_table *t);
/* Returns 1 with the next key and value, 0 at the end, -ERR_MALFORMED if a
 * raw table does not parse (not after amqp_table_parse/_check succeeded). */
int amqp_table_iter_next(struct amqp_table_iter *it, struct slice *key,
	struct amqp_field_value *val);

/* Walks an array's values in order. */
struct amqp_array_iter {
	const struct amqp_array *a;
	struct reader r;
	size_t i;
};
void amqp_array_iter_init(struct amqp_array_iter *it, const struct amqp_array *a);
/* Returns 1 with the next value, 0 at the end, -ERR_MALFORMED. */
int amqp_array_iter_next(struct amqp_array_iter *it, struct amqp_field_value *val);

/* Finds the first entry named key (e.g. "x-max-length"). Returns 0 and the
 * value; -ERR_NOT_FOUND; -ERR_MALFORMED if a raw table does not parse. */
int amqp_table_get(const struct amqp_table *t, const char *key, struct amqp_field_value *out);
/* An integer value of any integer type (b B s u I i l) as int64. Returns 0;
 * -ERR_INVALID for any other type. */
int amqp_field_int(const struct amqp_field_value *v, int64_t *out);

/* Builders for tables to encode (server-properties, x-death headers). */
struct slice amqp_slice_str(const char *s); /* borrows s; NULL gives "" */
struct amqp_table amqp_table_of(const struct amqp_table_entry *entries, size_t n);
struct amqp_field_value amqp_field_bool(bool b);
struct amqp_field_value amqp_field_i32(int32_t v);
struct amqp_field_value amqp_field_i64(int64_t v);
struct amqp_field_value amqp_field_timestamp(uint64_t seconds);
struct amqp_field_value amqp_field_str(struct slice s);     /* S */
struct amqp_field_value amqp_field_cstr(const char *s);     /* S */
struct amqp_field_value amqp_field_table(struct amqp_table t);
struct amqp_field_value amqp_field_array(const struct amqp_field_value *items, size_t n);

/* ---- methods ---- */

struct amqp_method;          /* amqp/amqp_msg.h */
struct amqp_content_header;  /* amqp/amqp_msg.h */

/* Sets every argument of a d-struct to its spec default. */
void amqp_args_init(const struct amqp_method_desc *d, void *args);
/* Decodes d's arguments from r into args. Returns 0, -ERR_MALFORMED,
 * -ERR_TOO_LARGE (table nesting). Bytes after them are left in r. */
int amqp_args_decode(const struct amqp_method_desc *d, struct reader *r, void *args);
/* Encodes d's arguments. Returns 0; -ERR_TOO_LARGE (a shortstr over 255,
 * the writer's limit); -ERR_INVALID; -ERR_NOMEM. On error w->len is restored. */
int amqp_args_encode(const struct amqp_method_desc *d, struct writer *w, const void *args);

/*
 * Decodes a method frame's whole payload (r covers exactly the payload):
 * class id, method id, arguments; trailing bytes are an error. out->id is set
 * as soon as the ids are read, so a caller can name the method in
 * connection.close even when decoding failed. Returns 0; -ERR_NOT_FOUND for a
 * (class, method) the spec does not define (out->desc NULL); -ERR_MALFORMED;
 * -ERR_TOO_LARGE (table nesting).
 */
int amqp_method_decode(struct reader *r, struct amqp_method *out);
/* Writes a method payload: class id, method id, d's arguments from args (NULL
 * when d has none). Returns as amqp_args_encode(). */
int amqp_method_encode(struct writer *w, const struct amqp_method_desc *d, const void *args);

/* ---- content headers ---- */

/* Clears a properties struct of class d: no property present. */
void amqp_props_init(const struct amqp_props_desc *d, void *props);
/*
 * Decodes a content header frame's whole payload. Property flags words
 * continue while bit 0 is set; a flag for a property the class does not have
 * is an error. Returns 0; -ERR_NOT_FOUND for a class without content
 * properties; -ERR_MALFORMED (also for trailing bytes); -ERR_TOO_LARGE.
 */
int amqp_content_header_decode(struct reader *r, struct amqp_content_header *out);
/* Writes a content header payload (props_raw if set, else props). Returns 0;
 * -ERR_NOT_FOUND for a class without properties; -ERR_INVALID for a flag of
 * no property; the errors of amqp_args_encode(). */
int amqp_content_header_encode(struct writer *w, const struct amqp_content_header *h);
/*
 * Content properties alone (flags words + present properties, as a content
 * header carries them after its 12-byte prefix), for a class's properties
 * descriptor d (amqp_props_find). Decode borrows from r's buffer; the caller
 * checks for trailing bytes. Errors as amqp_content_header_decode / _encode.
 */
int amqp_props_read(const struct amqp_props_desc *d, struct reader *r, void *props);
int amqp_props_write(const struct amqp_props_desc *d, struct writer *w, const void *props);

/* ---- frames ---- */

/* A parsed frame; payload borrows from the reader's buffer. */
struct amqp_frame {
	uint8_t type;       /* AMQP_FRAME_METHOD, _HEADER, _BODY, _HEARTBEAT */
	uint16_t channel;
	uint32_t size;      /* payload bytes */
	struct slice payload;
};

/*
 * Checks the client's protocol header. Returns 0 and consumes 8 bytes when
 * they are AMQP_PROTOCOL_HEADER; -ERR_AGAIN (nothing consumed) when fewer
 * than 8 bytes are there; -ERR_UNSUPPORTED for anything else (answer with
 * AMQP_PROTOCOL_HEADER and close).
 */
int amqp_protocol_header_check(struct reader *r);
/*
 * Takes one frame from the front of r. The 7-byte header is checked first:
 * once it is there f->type, channel and size are set, even on failure, so the
 * caller knows how many bytes the frame needs (AMQP_FRAME_OVERHEAD + size) or
 * what to report. Returns 0 and consumes the frame;
 *   -ERR_AGAIN       the header or the rest of the frame is not all there yet
 *                    (nothing consumed);
 *   -ERR_TOO_LARGE   size > frame_max, decided from the header alone, before
 *                    anything is buffered: reply 501 FRAME_ERROR. frame_max is
 *                    the negotiated frame-max, whose spec meaning is the whole
 *                    frame; like RabbitMQ this tolerates clients that count
 *                    the payload alone (a payload of up to frame_max bytes
 *                    passes). frame_max 0 is NOT "no limit": pass the cap;
 *   -ERR_MALFORMED   unknown frame type or frame-end octet not 0xCE.
 */
int amqp_frame_parse(struct reader *r, uint32_t frame_max, struct amqp_frame *f);

/* Starts a frame: writes the header with a size to patch. Returns its
 * position for amqp_frame_commit(). */
size_t amqp_frame_begin(struct writer *w, uint8_t type, uint16_t channel);
/* Ends the frame begun at pos: patches its size, writes frame-end. Returns 0,
 * -ERR_TOO_LARGE (payload over 4 GiB or the writer's limit), -ERR_NOMEM. */
int amqp_frame_commit(struct writer *w, size_t pos);
/* Writes a whole method frame. Returns as amqp_method_encode(); on error
 * w->len is restored. */
int amqp_frame_method_encode(struct writer *w, uint16_t channel,
	const struct amqp_method_desc *d, const void *args);
/*
 * Writes a content header frame for h and body frames carrying body_len bytes
 * of body, each frame at most frame_max bytes in all (frame_max >
 * AMQP_FRAME_OVERHEAD; an empty body has no body frame). h->body_size must
 * equal body_len. Returns 0, -ERR_INVALID, or the errors of
 * amqp_content_header_encode(); on error w->len is restored.
 */
int amqp_frame_content_encode(struct writer *w, uint16_t channel,
	const struct amqp_content_header *h, const void *body, size_t body_len,
	uint32_t frame_max);
/* Writes a heartbeat frame. Returns 0 or the writer's error. */
int amqp_frame_heartbeat_encode(struct writer *w);

#endif
