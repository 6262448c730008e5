/*
 * kafka_codec.c: interprets the generated descriptor tables (kafka_msg.c) to
 * decode and encode Kafka messages of any version.
 *
 * One walk over a struct's fields in wire order does a whole struct; nested
 * structs recurse, so the recursion depth is the schema's nesting depth (at
 * most 4 for the generated messages), never something the input controls.
 * Values are reached through the byte offsets in the tables; pointers stored
 * in structs are copied with memcpy so no object is read through an lvalue of
 * another type.
 *
 * Deferred records (the zero-copy fetch): a RECORDS value whose data is
 * KAFKA_RECORDS_DEFERRED gets its length prefix but not its bytes; the sink of
 * kafka_codec_encode_deferred learns the writer offset they belong at, so the
 * caller can send the message as its bytes with file ranges spliced into the
 * holes. Tagged fields are encoded on the side into a temporary writer, so a
 * deferred value there would be misplaced: it is refused.
 */
#include "kafka/kafka_codec.h"

#include <string.h>

#include "core/err.h"

/* Per-call state shared down the recursion. */
struct codec {
	int16_t v;                 /* message version */
	bool flex;                 /* version is flexible */
	struct kafka_arena *arena; /* decode only; may be NULL when nothing is an array */
	const struct kafka_records_sink *sink; /* encode: where deferred records go, or NULL */
	bool in_tag;               /* encode: inside a tagged field (a side writer) */
};

uint8_t kafka_records_deferred_mark[1]; /* not const: see kafka_codec.h */

bool kafka_field_tagged_in(const struct kafka_field *f, int16_t v)
{
	return f->tagged_min >= 0 && v >= f->tagged_min && v <= f->max_version;
}

bool kafka_field_regular_in(const struct kafka_field *f, int16_t v)
{
	return f->min_version >= 0 && v >= f->min_version && v <= f->max_version &&
		!kafka_field_tagged_in(f, v);
}

bool kafka_field_nullable_in(const struct kafka_field *f, int16_t v)
{
	return f->nullable_min >= 0 && v >= f->nullable_min && v <= f->nullable_max;
}

bool kafka_msg_is_flexible(const struct kafka_msg_desc *m, int16_t v)
{
	return m->flexible_min >= 0 && v >= m->flexible_min;
}

static void *at(void *obj, size_t off)
{
	return (char *)obj + off;
}

static const void *cat(const void *obj, size_t off)
{
	return (const char *)obj + off;
}

/* Bytes one value of f's type takes in memory (one array element). */
static size_t value_size(const struct kafka_field *f)
{
	switch (f->type) {
	case KAFKA_T_BOOL: return sizeof(bool);
	case KAFKA_T_INT8: return sizeof(int8_t);
	case KAFKA_T_INT16: return sizeof(int16_t);
	case KAFKA_T_UINT16: return sizeof(uint16_t);
	case KAFKA_T_INT32: return sizeof(int32_t);
	case KAFKA_T_UINT32: return sizeof(uint32_t);
	case KAFKA_T_INT64: return sizeof(int64_t);
	case KAFKA_T_FLOAT64: return sizeof(double);
	case KAFKA_T_UUID: return sizeof(struct kafka_uuid);
	case KAFKA_T_STRING:
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS: return sizeof(struct slice);
	case KAFKA_T_STRUCT: return f->sub->size;
	}
	return 0;
}

static bool is_compact(const struct codec *c, const struct kafka_field *f)
{
	return c->flex && !f->compact_never;
}

static size_t min_struct_wire(const struct codec *c, const struct kafka_struct_desc *d);

/* Least bytes one value of f's type takes on the wire in this version. */
static size_t min_value_wire(const struct codec *c, const struct kafka_field *f)
{
	bool compact = is_compact(c, f);
	switch (f->type) {
	case KAFKA_T_BOOL:
	case KAFKA_T_INT8: return 1;
	case KAFKA_T_INT16:
	case KAFKA_T_UINT16: return 2;
	case KAFKA_T_INT32:
	case KAFKA_T_UINT32: return 4;
	case KAFKA_T_INT64:
	case KAFKA_T_FLOAT64: return 8;
	case KAFKA_T_UUID: return 16;
	case KAFKA_T_STRING: return compact ? 1 : 2;
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS: return compact ? 1 : 4;
	case KAFKA_T_STRUCT: return min_struct_wire(c, f->sub);
	}
	return 1;
}

/* Least bytes a struct takes: its regular fields plus the empty tag section. */
static size_t min_struct_wire(const struct codec *c, const struct kafka_struct_desc *d)
{
	size_t n = c->flex ? 1 : 0;
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct kafka_field *f = &d->fields[i];
		if (!kafka_field_regular_in(f, c->v))
			continue;
		if (f->is_array)
			n += is_compact(c, f) ? 1 : 4;
		else
			n += min_value_wire(c, f);
	}
	return n;
}

/* The default text of a string/bytes field that is not null by default. */
static const char *default_text(const struct kafka_field *f)
{
	return f->def_str ? f->def_str : "";
}

static void set_default_value(const struct kafka_field *f, void *p)
{
	switch (f->type) {
	case KAFKA_T_BOOL: *(bool *)p = f->def_int != 0; break;
	case KAFKA_T_INT8: *(int8_t *)p = (int8_t)f->def_int; break;
	case KAFKA_T_INT16: *(int16_t *)p = (int16_t)f->def_int; break;
	case KAFKA_T_UINT16: *(uint16_t *)p = (uint16_t)f->def_int; break;
	case KAFKA_T_INT32: *(int32_t *)p = (int32_t)f->def_int; break;
	case KAFKA_T_UINT32: *(uint32_t *)p = (uint32_t)f->def_int; break;
	case KAFKA_T_INT64: *(int64_t *)p = f->def_int; break;
	case KAFKA_T_FLOAT64: *(double *)p = f->def_float; break;
	case KAFKA_T_UUID: memset(p, 0, sizeof(struct kafka_uuid)); break;
	case KAFKA_T_STRING:
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS: {
		struct slice *s = p;
		if (f->default_null || f->type == KAFKA_T_RECORDS) {
			s->data = NULL;
			s->len = 0;
		} else {
			s->data = (const uint8_t *)default_text(f);
			s->len = strlen(default_text(f));
		}
		break;
	}
	case KAFKA_T_STRUCT: kafka_codec_init(f->sub, p); break;
	}
}

void kafka_codec_init(const struct kafka_struct_desc *d, void *obj)
{
	memset(obj, 0, d->size); /* arrays: NULL, 0 elements, not null */
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct kafka_field *f = &d->fields[i];
		if (!f->is_array)
			set_default_value(f, at(obj, f->offset));
	}
}

static bool value_is_default(const struct kafka_field *f, const void *p)
{
	switch (f->type) {
	case KAFKA_T_BOOL: return *(const bool *)p == (f->def_int != 0);
	case KAFKA_T_INT8: return *(const int8_t *)p == (int8_t)f->def_int;
	case KAFKA_T_INT16: return *(const int16_t *)p == (int16_t)f->def_int;
	case KAFKA_T_UINT16: return *(const uint16_t *)p == (uint16_t)f->def_int;
	case KAFKA_T_INT32: return *(const int32_t *)p == (int32_t)f->def_int;
	case KAFKA_T_UINT32: return *(const uint32_t *)p == (uint32_t)f->def_int;
	case KAFKA_T_INT64: return *(const int64_t *)p == f->def_int;
	case KAFKA_T_FLOAT64: return *(const double *)p == f->def_float;
	case KAFKA_T_UUID: {
		static const struct kafka_uuid zero;
		return memcmp(p, &zero, sizeof zero) == 0;
	}
	case KAFKA_T_STRING:
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS: {
		const struct slice *s = p;
		if (f->default_null || f->type == KAFKA_T_RECORDS)
			return s->data == NULL;
		if (s->data == NULL)
			return false;
		const char *def = default_text(f);
		size_t len = strlen(def);
		return s->len == len && (len == 0 || memcmp(s->data, def, len) == 0);
	}
	case KAFKA_T_STRUCT:
		for (size_t i = 0; i < f->sub->n_fields; i++)
			if (!kafka_codec_field_is_default(&f->sub->fields[i], p))
				return false;
		return true;
	}
	return false;
}

bool kafka_codec_field_is_default(const struct kafka_field *f, const void *obj)
{
	if (f->is_array) {
		bool null = f->null_offset && *(const bool *)cat(obj, f->null_offset);
		return !null && *(const size_t *)cat(obj, f->count_offset) == 0;
	}
	return value_is_default(f, cat(obj, f->offset));
}

/* ---- decoding ---- */

static int decode_struct(const struct codec *c, struct reader *r,
	const struct kafka_struct_desc *d, void *obj);

/* Decodes one value of f's type into p. */
static int decode_value(const struct codec *c, struct reader *r, const struct kafka_field *f,
	bool nullable, void *p)
{
	bool compact = is_compact(c, f);
	switch (f->type) {
	case KAFKA_T_BOOL: *(bool *)p = reader_u8(r) != 0; break;
	case KAFKA_T_INT8: *(int8_t *)p = reader_i8(r); break;
	case KAFKA_T_INT16: *(int16_t *)p = reader_i16(r); break;
	case KAFKA_T_UINT16: *(uint16_t *)p = reader_u16(r); break;
	case KAFKA_T_INT32: *(int32_t *)p = reader_i32(r); break;
	case KAFKA_T_UINT32: *(uint32_t *)p = reader_u32(r); break;
	case KAFKA_T_INT64: *(int64_t *)p = reader_i64(r); break;
	case KAFKA_T_FLOAT64: *(double *)p = reader_f64(r); break;
	case KAFKA_T_UUID: {
		struct slice s = reader_bytes(r, sizeof(struct kafka_uuid));
		if (s.data)
			memcpy(p, s.data, sizeof(struct kafka_uuid));
		break;
	}
	case KAFKA_T_STRING: {
		struct slice s = compact ? reader_compact_bytes(r, nullable) : reader_string(r, nullable);
		if (s.len > KAFKA_STRING_MAX)
			reader_fail(r);
		*(struct slice *)p = s;
		break;
	}
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS:
		*(struct slice *)p = compact ? reader_compact_bytes(r, nullable) : reader_kbytes(r, nullable);
		break;
	case KAFKA_T_STRUCT:
		return decode_struct(c, r, f->sub, p);
	}
	return r->err;
}

/* Decodes field f (a value or an array of them) into obj. */
static int decode_field(const struct codec *c, struct reader *r, const struct kafka_field *f,
	void *obj)
{
	bool nullable = kafka_field_nullable_in(f, c->v);
	if (!f->is_array)
		return decode_value(c, r, f, nullable, at(obj, f->offset));

	/* The count is checked against the bytes left before it sizes anything. */
	size_t min = min_value_wire(c, f);
	int32_t n = is_compact(c, f) ? reader_compact_array_count(r, min)
		: reader_array_count(r, min);
	if (r->err)
		return r->err;
	void *arr = NULL;
	if (n < 0) {
		if (!nullable || !f->null_offset) {
			reader_fail(r);
			return r->err;
		}
		*(bool *)at(obj, f->null_offset) = true;
		n = 0;
	} else if (n > 0) {
		if (!c->arena)
			return -ERR_INVALID;
		arr = kafka_arena_alloc_array(c->arena, (size_t)n, value_size(f));
		if (!arr)
			return c->arena->err ? c->arena->err : -ERR_NOMEM;
	}
	size_t esz = value_size(f);
	for (int32_t i = 0; i < n; i++) {
		int rc = decode_value(c, r, f, false, (char *)arr + (size_t)i * esz);
		if (rc)
			return rc;
	}
	memcpy(at(obj, f->offset), &arr, sizeof arr);
	*(size_t *)at(obj, f->count_offset) = (size_t)n;
	return 0;
}

static const struct kafka_field *find_tagged(const struct kafka_struct_desc *d, uint32_t tag,
	int16_t v)
{
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct kafka_field *f = &d->fields[i];
		if (f->tag == tag && kafka_field_tagged_in(f, v))
			return f;
	}
	return NULL;
}

/* Decodes a tagged-field section; unknown tags are skipped whole. */
static int decode_tags(const struct codec *c, struct reader *r,
	const struct kafka_struct_desc *d, void *obj)
{
	uint32_t n = reader_uvarint(r);
	for (uint32_t i = 0; i < n && !r->err; i++) {
		uint32_t tag = reader_uvarint(r);
		uint32_t size = reader_uvarint(r);
		if (r->err)
			break;
		if (size > reader_remaining(r)) {
			reader_fail(r);
			break;
		}
		const struct kafka_field *f = find_tagged(d, tag, c->v);
		if (!f) {
			reader_skip(r, size);
			continue;
		}
		/* A known field is read from exactly its own bytes. */
		struct reader sub = reader_sub(r, size);
		int rc = decode_field(c, &sub, f, obj);
		if (rc) {
			if (sub.err)
				reader_fail(r);
			return rc;
		}
	}
	return r->err;
}

static int decode_struct(const struct codec *c, struct reader *r,
	const struct kafka_struct_desc *d, void *obj)
{
	kafka_codec_init(d, obj);
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct kafka_field *f = &d->fields[i];
		if (!kafka_field_regular_in(f, c->v))
			continue;
		int rc = decode_field(c, r, f, obj);
		if (rc)
			return rc;
	}
	if (c->flex)
		return decode_tags(c, r, d, obj);
	return r->err;
}

int kafka_codec_decode(const struct kafka_msg_desc *m, struct reader *r, int16_t version,
	struct kafka_arena *arena, void *out)
{
	if (version < m->min_version || version > m->max_version)
		return -ERR_UNSUPPORTED;
	if (r->err)
		return r->err;
	struct codec c = { version, kafka_msg_is_flexible(m, version), arena, NULL, false };
	return decode_struct(&c, r, m->body, out);
}

/* ---- encoding ---- */

static int encode_struct(const struct codec *c, struct writer *w,
	const struct kafka_struct_desc *d, const void *obj);

/* Writes a null string/bytes/records/array in this field's encoding. */
static void write_null(const struct codec *c, struct writer *w, const struct kafka_field *f)
{
	if (is_compact(c, f))
		writer_uvarint(w, 0);
	else if (f->type == KAFKA_T_STRING && !f->is_array)
		writer_i16(w, -1);
	else
		writer_i32(w, -1);
}

/* Writes the length prefix of deferred records and tells the sink where their bytes go. */
static int encode_deferred(const struct codec *c, struct writer *w, const struct kafka_field *f,
	const struct slice *s)
{
	if (f->type != KAFKA_T_RECORDS || !c->sink)
		return -ERR_INVALID;
	if (c->in_tag)
		return -ERR_UNSUPPORTED;
	if (is_compact(c, f)) {
		if (s->len > UINT32_MAX - 1)
			return -ERR_TOO_LARGE;
		writer_uvarint(w, (uint32_t)s->len + 1);
	} else {
		if (s->len > INT32_MAX)
			return -ERR_TOO_LARGE;
		writer_i32(w, (int32_t)s->len);
	}
	if (w->err)
		return w->err;
	return c->sink->deferred(c->sink->arg, s, w->len);
}

static int encode_value(const struct codec *c, struct writer *w, const struct kafka_field *f,
	bool nullable, const void *p)
{
	bool compact = is_compact(c, f);
	switch (f->type) {
	case KAFKA_T_BOOL: writer_u8(w, *(const bool *)p ? 1 : 0); break;
	case KAFKA_T_INT8: writer_i8(w, *(const int8_t *)p); break;
	case KAFKA_T_INT16: writer_i16(w, *(const int16_t *)p); break;
	case KAFKA_T_UINT16: writer_u16(w, *(const uint16_t *)p); break;
	case KAFKA_T_INT32: writer_i32(w, *(const int32_t *)p); break;
	case KAFKA_T_UINT32: writer_u32(w, *(const uint32_t *)p); break;
	case KAFKA_T_INT64: writer_i64(w, *(const int64_t *)p); break;
	case KAFKA_T_FLOAT64: writer_f64(w, *(const double *)p); break;
	case KAFKA_T_UUID: writer_bytes(w, p, sizeof(struct kafka_uuid)); break;
	case KAFKA_T_STRING:
	case KAFKA_T_BYTES:
	case KAFKA_T_RECORDS: {
		const struct slice *s = p;
		if (s->data == NULL) {
			if (!nullable)
				return -ERR_INVALID;
			write_null(c, w, f);
			break;
		}
		if (s->data == KAFKA_RECORDS_DEFERRED)
			return encode_deferred(c, w, f, s);
		if (f->type == KAFKA_T_STRING && s->len > KAFKA_STRING_MAX)
			return -ERR_TOO_LARGE;
		if (compact)
			writer_compact_bytes(w, s->data, s->len);
		else if (f->type == KAFKA_T_STRING)
			writer_string(w, s->data, s->len);
		else
			writer_kbytes(w, s->data, s->len);
		break;
	}
	case KAFKA_T_STRUCT:
		return encode_struct(c, w, f->sub, p);
	}
	return w->err;
}

static int encode_field(const struct codec *c, struct writer *w, const struct kafka_field *f,
	const void *obj)
{
	bool nullable = kafka_field_nullable_in(f, c->v);
	if (!f->is_array)
		return encode_value(c, w, f, nullable, cat(obj, f->offset));

	if (f->null_offset && *(const bool *)cat(obj, f->null_offset)) {
		if (!nullable)
			return -ERR_INVALID;
		write_null(c, w, f);
		return w->err;
	}
	size_t n = *(const size_t *)cat(obj, f->count_offset);
	const void *arr;
	memcpy(&arr, cat(obj, f->offset), sizeof arr);
	if (n > INT32_MAX - 1)
		return -ERR_TOO_LARGE;
	if (n > 0 && arr == NULL)
		return -ERR_INVALID;
	if (is_compact(c, f))
		writer_uvarint(w, (uint32_t)n + 1);
	else
		writer_i32(w, (int32_t)n);
	size_t esz = value_size(f);
	for (size_t i = 0; i < n; i++) {
		int rc = encode_value(c, w, f, false, (const char *)arr + i * esz);
		if (rc)
			return rc;
	}
	return w->err;
}

/* Writes one tagged field: tag, size, then the value encoded on the side. */
static int encode_tagged(const struct codec *c, struct writer *w, const struct kafka_field *f,
	const void *obj)
{
	struct writer tmp;
	writer_init(&tmp, w->limit);
	struct codec side = *c;
	side.in_tag = true;
	int rc = encode_field(&side, &tmp, f, obj);
	if (!rc)
		rc = tmp.err;
	if (!rc && tmp.len > UINT32_MAX)
		rc = -ERR_TOO_LARGE;
	if (!rc) {
		writer_uvarint(w, f->tag);
		writer_uvarint(w, (uint32_t)tmp.len);
		if (tmp.len)
			writer_bytes(w, tmp.buf, tmp.len);
		rc = w->err;
	}
	writer_fini(&tmp);
	return rc;
}

static int encode_struct(const struct codec *c, struct writer *w,
	const struct kafka_struct_desc *d, const void *obj)
{
	uint32_t tagged = 0;
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct kafka_field *f = &d->fields[i];
		if (kafka_field_tagged_in(f, c->v)) {
			if (!kafka_codec_field_is_default(f, obj))
				tagged++;
			continue;
		}
		if (kafka_field_regular_in(f, c->v)) {
			int rc = encode_field(c, w, f, obj);
			if (rc)
				return rc;
		} else if (!f->ignorable && !kafka_codec_field_is_default(f, obj)) {
			/* As Kafka: a meaningful value must not vanish silently. */
			return -ERR_UNSUPPORTED;
		}
	}
	if (!c->flex)
		return w->err;
	/* Tags ascend in schema order (the generator checks), as Kafka writes them. */
	writer_uvarint(w, tagged);
	for (size_t i = 0; i < d->n_fields && tagged > 0; i++) {
		const struct kafka_field *f = &d->fields[i];
		if (!kafka_field_tagged_in(f, c->v) || kafka_codec_field_is_default(f, obj))
			continue;
		int rc = encode_tagged(c, w, f, obj);
		if (rc)
			return rc;
	}
	return w->err;
}

int kafka_codec_encode_deferred(const struct kafka_msg_desc *m, struct writer *w,
	int16_t version, const void *in, const struct kafka_records_sink *sink)
{
	if (version < m->min_version || version > m->max_version)
		return -ERR_UNSUPPORTED;
	if (w->err)
		return w->err;
	size_t start = w->len;
	struct codec c = { version, kafka_msg_is_flexible(m, version), NULL, sink, false };
	int rc = encode_struct(&c, w, m->body, in);
	if (!rc)
		rc = w->err;
	if (rc)
		w->len = start;
	return rc;
}

int kafka_codec_encode(const struct kafka_msg_desc *m, struct writer *w, int16_t version,
	const void *in)
{
	return kafka_codec_encode_deferred(m, w, version, in, NULL);
}
