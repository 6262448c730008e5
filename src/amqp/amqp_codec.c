/*
 * amqp_codec.c: interprets the generated method tables (amqp_msg.c) and
 * implements AMQP 0-9-1 framing, content headers and field tables.
 *
 * Method arguments are one walk over a descriptor's fields in wire order. The
 * generator has already decided which octet each bit lives in (field->bit, 0
 * opens a new octet), so the walk only accumulates bits until the next
 * non-bit field. Values are reached through the byte offsets in the tables.
 *
 * Field tables are validated once when decoded (every key, type letter and
 * length, nested tables and arrays to AMQP_TABLE_MAX_DEPTH) and then kept as
 * raw bytes; the iterators re-read them on demand. Validation recursion is
 * bounded by the depth cap, not by the input, and each byte is read once: a
 * parent steps over a nested value by its length and only the nested walk
 * reads inside it.
 */
#include "amqp/amqp_codec.h"

#include <string.h>

#include "amqp/amqp_msg.h"
#include "core/err.h"

static void *at(void *obj, size_t off)
{
	return (char *)obj + off;
}

static const void *cat(const void *obj, size_t off)
{
	return (const char *)obj + off;
}

/* ---- field tables: decoding ---- */

/*
 * Reads one field value: type letter, then its payload. Tables and arrays are
 * taken as raw slices without descending into them. An unknown letter fails
 * the reader. 'L' is read as 'l' (signed 64-bit), as RabbitMQ does.
 */
static void value_read(struct reader *r, struct amqp_field_value *v)
{
	memset(v, 0, sizeof *v);
	uint8_t t = reader_u8(r);
	if (r->err)
		return;
	switch (t) {
	case 't': v->v.b = reader_u8(r) != 0; break;
	case 'b': v->v.i8 = reader_i8(r); break;
	case 'B': v->v.u8 = reader_u8(r); break;
	case 's': v->v.i16 = reader_i16(r); break;
	case 'u': v->v.u16 = reader_u16(r); break;
	case 'I': v->v.i32 = reader_i32(r); break;
	case 'i': v->v.u32 = reader_u32(r); break;
	case 'l':
	case 'L':
		t = 'l';
		v->v.i64 = reader_i64(r);
		break;
	case 'f': {
		uint32_t u = reader_u32(r);
		memcpy(&v->v.f32, &u, sizeof u);
		break;
	}
	case 'd': v->v.f64 = reader_f64(r); break;
	case 'D':
		v->v.dec.scale = reader_u8(r);
		v->v.dec.value = reader_i32(r);
		break;
	case 'S':
	case 'x': v->v.str = reader_longstr(r); break;
	case 'T': v->v.ts = reader_u64(r); break;
	case 'F': v->v.table.raw = reader_longstr(r); break;
	case 'A': v->v.array.raw = reader_longstr(r); break;
	case 'V': break;
	default:
		reader_fail(r);
		return;
	}
	v->type = (enum amqp_field_type)t;
}

static int table_check_depth(struct slice raw, int depth);
static int array_check_depth(struct slice raw, int depth);

/* Validates what a table or array value holds, one level deeper. */
static int nested_check(const struct amqp_field_value *v, int depth)
{
	if (v->type == AMQP_FIELD_TABLE)
		return table_check_depth(v->v.table.raw, depth + 1);
	if (v->type == AMQP_FIELD_ARRAY)
		return array_check_depth(v->v.array.raw, depth + 1);
	return 0;
}

static int table_check_depth(struct slice raw, int depth)
{
	if (depth > AMQP_TABLE_MAX_DEPTH)
		return -ERR_TOO_LARGE;
	struct reader r;
	reader_init(&r, raw.data, raw.len);
	while (reader_remaining(&r) > 0) {
		struct amqp_field_value v;
		(void)reader_shortstr(&r);
		value_read(&r, &v);
		if (r.err)
			break;
		int rc = nested_check(&v, depth);
		if (rc)
			return rc;
	}
	return r.err ? -ERR_MALFORMED : 0;
}

static int array_check_depth(struct slice raw, int depth)
{
	if (depth > AMQP_TABLE_MAX_DEPTH)
		return -ERR_TOO_LARGE;
	struct reader r;
	reader_init(&r, raw.data, raw.len);
	while (reader_remaining(&r) > 0) {
		struct amqp_field_value v;
		value_read(&r, &v);
		if (r.err)
			break;
		int rc = nested_check(&v, depth);
		if (rc)
			return rc;
	}
	return r.err ? -ERR_MALFORMED : 0;
}

int amqp_table_check(struct slice raw)
{
	return table_check_depth(raw, 1);
}

int amqp_table_parse(struct reader *r, struct amqp_table *out)
{
	struct reader save = *r;
	memset(out, 0, sizeof *out);
	struct slice raw = reader_longstr(r);
	if (r->err)
		return -ERR_MALFORMED;
	int rc = amqp_table_check(raw);
	if (rc) {
		*r = save;
		reader_fail(r);
		return rc;
	}
	out->raw = raw;
	return 0;
}

void amqp_table_iter_init(struct amqp_table_iter *it, const struct amqp_table *t)
{
	it->t = t;
	it->i = 0;
	reader_init(&it->r, t->raw.data, t->raw.data ? t->raw.len : 0);
}

int amqp_table_iter_next(struct amqp_table_iter *it, struct slice *key,
	struct amqp_field_value *val)
{
	const struct amqp_table *t = it->t;
	if (t->raw.data) {
		if (it->r.err)
			return -ERR_MALFORMED;
		if (reader_remaining(&it->r) == 0)
			return 0;
		*key = reader_shortstr(&it->r);
		value_read(&it->r, val);
		return it->r.err ? -ERR_MALFORMED : 1;
	}
	if (!t->entries || it->i >= t->n_entries)
		return 0;
	*key = t->entries[it->i].key;
	*val = t->entries[it->i].value;
	it->i++;
	return 1;
}

void amqp_array_iter_init(struct amqp_array_iter *it, const struct amqp_array *a)
{
	it->a = a;
	it->i = 0;
	reader_init(&it->r, a->raw.data, a->raw.data ? a->raw.len : 0);
}

int amqp_array_iter_next(struct amqp_array_iter *it, struct amqp_field_value *val)
{
	const struct amqp_array *a = it->a;
	if (a->raw.data) {
		if (it->r.err)
			return -ERR_MALFORMED;
		if (reader_remaining(&it->r) == 0)
			return 0;
		value_read(&it->r, val);
		return it->r.err ? -ERR_MALFORMED : 1;
	}
	if (!a->items || it->i >= a->n_items)
		return 0;
	*val = a->items[it->i];
	it->i++;
	return 1;
}

int amqp_table_get(const struct amqp_table *t, const char *key, struct amqp_field_value *out)
{
	size_t n = strlen(key);
	struct amqp_table_iter it;
	struct slice k;
	struct amqp_field_value v;
	int rc;
	amqp_table_iter_init(&it, t);
	while ((rc = amqp_table_iter_next(&it, &k, &v)) == 1) {
		if (k.len == n && (n == 0 || memcmp(k.data, key, n) == 0)) {
			*out = v;
			return 0;
		}
	}
	return rc < 0 ? rc : -ERR_NOT_FOUND;
}

int amqp_field_int(const struct amqp_field_value *v, int64_t *out)
{
	switch (v->type) {
	case AMQP_FIELD_I8: *out = v->v.i8; return 0;
	case AMQP_FIELD_U8: *out = v->v.u8; return 0;
	case AMQP_FIELD_I16: *out = v->v.i16; return 0;
	case AMQP_FIELD_U16: *out = v->v.u16; return 0;
	case AMQP_FIELD_I32: *out = v->v.i32; return 0;
	case AMQP_FIELD_U32: *out = v->v.u32; return 0;
	case AMQP_FIELD_I64: *out = v->v.i64; return 0;
	default: return -ERR_INVALID;
	}
}

/* ---- field tables: building and encoding ---- */

struct slice amqp_slice_str(const char *s)
{
	struct slice sl = { (const uint8_t *)(s ? s : ""), s ? strlen(s) : 0 };
	return sl;
}

struct amqp_table amqp_table_of(const struct amqp_table_entry *entries, size_t n)
{
	struct amqp_table t;
	memset(&t, 0, sizeof t);
	t.entries = entries;
	t.n_entries = n;
	return t;
}

static struct amqp_field_value field_of(enum amqp_field_type type)
{
	struct amqp_field_value v;
	memset(&v, 0, sizeof v);
	v.type = type;
	return v;
}

struct amqp_field_value amqp_field_bool(bool b)
{
	struct amqp_field_value v = field_of(AMQP_FIELD_BOOL);
	v.v.b = b;
	return v;
}

struct amqp_field_value amqp_field_i32(int32_t x)
{
	struct amqp_field_value v = field_of(AMQP_FIELD_I32);
	v.v.i32 = x;
	return v;
}

struct amqp_field_value amqp_field_i64(int64_t x)
{
	struct amqp_field_value v = field_of(AMQP_FIELD_I64);
	v.v.i64 = x;
	return v;
}

struct amqp_field_value amqp_field_timestamp(uint64_t seconds)
{
	struct amqp_field_value v = field_of(AMQP_FIELD_TIMESTAMP);
	v.v.ts = seconds;
	return v;
}

struct amqp_field_value amqp_field_str(struct slice s)
{
	struct amqp_field_value v = field_of(AMQP_FIELD_LONGSTR);
	v.v.str = s;
	return v;
}

struct amqp_field_value amqp_field_cstr(const char *s)
{
	return amqp_field_str(amqp_slice_str(s));
}

struct amqp_field_value amqp_field_table(struct amqp_table t)
{
	struct amqp_field_value v = field_of(AMQP_FIELD_TABLE);
	v.v.table = t;
	return v;
}

struct amqp_field_value amqp_field_array(const struct amqp_field_value *items, size_t n)
{
	struct amqp_field_value v = field_of(AMQP_FIELD_ARRAY);
	v.v.array.items = items;
	v.v.array.n_items = n;
	return v;
}

/* Whether a slice can be written: data NULL only when empty. */
static bool slice_ok(struct slice s)
{
	return s.data != NULL || s.len == 0;
}

static int table_body_encode(struct writer *w, const struct amqp_table *t, int depth);
static int array_body_encode(struct writer *w, const struct amqp_array *a, int depth);

/* Writes one tagged value; tables and arrays are one level deeper. */
static int value_encode(struct writer *w, const struct amqp_field_value *v, int depth)
{
	switch (v->type) {
	case AMQP_FIELD_BOOL: case AMQP_FIELD_I8: case AMQP_FIELD_U8: case AMQP_FIELD_I16:
	case AMQP_FIELD_U16: case AMQP_FIELD_I32: case AMQP_FIELD_U32: case AMQP_FIELD_I64:
	case AMQP_FIELD_FLOAT: case AMQP_FIELD_DOUBLE: case AMQP_FIELD_DECIMAL:
	case AMQP_FIELD_LONGSTR: case AMQP_FIELD_BYTES: case AMQP_FIELD_ARRAY:
	case AMQP_FIELD_TIMESTAMP: case AMQP_FIELD_TABLE: case AMQP_FIELD_VOID:
		break;
	default:
		return -ERR_INVALID;
	}
	writer_u8(w, (uint8_t)v->type);
	switch (v->type) {
	case AMQP_FIELD_BOOL: writer_u8(w, v->v.b ? 1 : 0); break;
	case AMQP_FIELD_I8: writer_i8(w, v->v.i8); break;
	case AMQP_FIELD_U8: writer_u8(w, v->v.u8); break;
	case AMQP_FIELD_I16: writer_i16(w, v->v.i16); break;
	case AMQP_FIELD_U16: writer_u16(w, v->v.u16); break;
	case AMQP_FIELD_I32: writer_i32(w, v->v.i32); break;
	case AMQP_FIELD_U32: writer_u32(w, v->v.u32); break;
	case AMQP_FIELD_I64: writer_i64(w, v->v.i64); break;
	case AMQP_FIELD_FLOAT: {
		uint32_t u;
		memcpy(&u, &v->v.f32, sizeof u);
		writer_u32(w, u);
		break;
	}
	case AMQP_FIELD_DOUBLE: writer_f64(w, v->v.f64); break;
	case AMQP_FIELD_DECIMAL:
		writer_u8(w, v->v.dec.scale);
		writer_i32(w, v->v.dec.value);
		break;
	case AMQP_FIELD_LONGSTR:
	case AMQP_FIELD_BYTES:
		if (!slice_ok(v->v.str))
			return -ERR_INVALID;
		writer_longstr(w, v->v.str.data, v->v.str.len);
		break;
	case AMQP_FIELD_TIMESTAMP: writer_u64(w, v->v.ts); break;
	case AMQP_FIELD_TABLE: return table_body_encode(w, &v->v.table, depth + 1);
	case AMQP_FIELD_ARRAY: return array_body_encode(w, &v->v.array, depth + 1);
	case AMQP_FIELD_VOID: break;
	}
	return w->err;
}

/* Patches the u32 length reserved at pos to cover everything after it. */
static int patch_length(struct writer *w, size_t pos)
{
	if (w->err)
		return w->err;
	size_t len = w->len - pos - 4;
	if (len > UINT32_MAX)
		return -ERR_TOO_LARGE;
	writer_put_u32(w, pos, (uint32_t)len);
	return w->err;
}

static int table_body_encode(struct writer *w, const struct amqp_table *t, int depth)
{
	if (depth > AMQP_TABLE_MAX_DEPTH)
		return -ERR_INVALID;
	size_t pos = writer_reserve(w, 4);
	if (t->raw.data) {
		writer_bytes(w, t->raw.data, t->raw.len);
	} else {
		if (t->n_entries && !t->entries)
			return -ERR_INVALID;
		for (size_t i = 0; i < t->n_entries; i++) {
			const struct amqp_table_entry *e = &t->entries[i];
			if (!slice_ok(e->key))
				return -ERR_INVALID;
			writer_shortstr(w, e->key.data, e->key.len);
			int rc = value_encode(w, &e->value, depth);
			if (rc)
				return rc;
		}
	}
	return patch_length(w, pos);
}

static int array_body_encode(struct writer *w, const struct amqp_array *a, int depth)
{
	if (depth > AMQP_TABLE_MAX_DEPTH)
		return -ERR_INVALID;
	size_t pos = writer_reserve(w, 4);
	if (a->raw.data) {
		writer_bytes(w, a->raw.data, a->raw.len);
	} else {
		if (a->n_items && !a->items)
			return -ERR_INVALID;
		for (size_t i = 0; i < a->n_items; i++) {
			int rc = value_encode(w, &a->items[i], depth);
			if (rc)
				return rc;
		}
	}
	return patch_length(w, pos);
}

/* Ends an encoder: on error (rc or the writer's) restores w->len to start. */
static int rollback(struct writer *w, size_t start, int rc)
{
	if (rc == 0 && w->err)
		rc = w->err;
	if (rc && start <= w->len)
		w->len = start;
	return rc;
}

int amqp_table_encode(struct writer *w, const struct amqp_table *t)
{
	if (w->err)
		return w->err;
	size_t start = w->len;
	return rollback(w, start, table_body_encode(w, t, 1));
}

int amqp_array_encode(struct writer *w, const struct amqp_array *a)
{
	if (w->err)
		return w->err;
	size_t start = w->len;
	return rollback(w, start, array_body_encode(w, a, 1));
}

/* ---- method arguments and properties ---- */

/* Decodes one non-bit value of f's type into p. */
static int value_decode(const struct amqp_field *f, struct reader *r, void *p)
{
	switch (f->type) {
	case AMQP_T_OCTET: *(uint8_t *)p = reader_u8(r); break;
	case AMQP_T_SHORT: *(uint16_t *)p = reader_u16(r); break;
	case AMQP_T_LONG: *(uint32_t *)p = reader_u32(r); break;
	case AMQP_T_LONGLONG:
	case AMQP_T_TIMESTAMP: *(uint64_t *)p = reader_u64(r); break;
	case AMQP_T_SHORTSTR: *(struct slice *)p = reader_shortstr(r); break;
	case AMQP_T_LONGSTR: *(struct slice *)p = reader_longstr(r); break;
	case AMQP_T_TABLE: return amqp_table_parse(r, p);
	case AMQP_T_BIT: reader_fail(r); break; /* bits are packed by the caller */
	}
	return r->err ? -ERR_MALFORMED : 0;
}

/* Encodes one non-bit value of f's type from p. */
static int value_write(const struct amqp_field *f, struct writer *w, const void *p)
{
	switch (f->type) {
	case AMQP_T_OCTET: writer_u8(w, *(const uint8_t *)p); break;
	case AMQP_T_SHORT: writer_u16(w, *(const uint16_t *)p); break;
	case AMQP_T_LONG: writer_u32(w, *(const uint32_t *)p); break;
	case AMQP_T_LONGLONG:
	case AMQP_T_TIMESTAMP: writer_u64(w, *(const uint64_t *)p); break;
	case AMQP_T_SHORTSTR:
	case AMQP_T_LONGSTR: {
		const struct slice *s = p;
		if (!slice_ok(*s))
			return -ERR_INVALID;
		if (f->type == AMQP_T_SHORTSTR)
			writer_shortstr(w, s->data, s->len);
		else
			writer_longstr(w, s->data, s->len);
		break;
	}
	case AMQP_T_TABLE: return table_body_encode(w, p, 1);
	case AMQP_T_BIT: return -ERR_INVALID;
	}
	return w->err;
}

void amqp_args_init(const struct amqp_method_desc *d, void *args)
{
	if (d->size == 0)
		return;
	memset(args, 0, d->size);
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct amqp_field *f = &d->fields[i];
		void *p = at(args, f->offset);
		switch (f->type) {
		case AMQP_T_BIT: *(bool *)p = f->def_int != 0; break;
		case AMQP_T_OCTET: *(uint8_t *)p = (uint8_t)f->def_int; break;
		case AMQP_T_SHORT: *(uint16_t *)p = (uint16_t)f->def_int; break;
		case AMQP_T_LONG: *(uint32_t *)p = (uint32_t)f->def_int; break;
		case AMQP_T_LONGLONG:
		case AMQP_T_TIMESTAMP: *(uint64_t *)p = f->def_int; break;
		case AMQP_T_SHORTSTR:
		case AMQP_T_LONGSTR:
			if (f->def_str)
				*(struct slice *)p = amqp_slice_str(f->def_str);
			break;
		case AMQP_T_TABLE: break; /* all zero: the empty table */
		}
	}
}

int amqp_args_decode(const struct amqp_method_desc *d, struct reader *r, void *args)
{
	if (d->size)
		memset(args, 0, d->size);
	uint8_t bits = 0;
	for (size_t i = 0; i < d->n_fields; i++) {
		const struct amqp_field *f = &d->fields[i];
		void *p = at(args, f->offset);
		if (f->type == AMQP_T_BIT) {
			if (f->bit == 0)
				bits = reader_u8(r);
			*(bool *)p = (bits >> f->bit) & 1;
			continue;
		}
		int rc = value_decode(f, r, p);
		if (rc)
			return rc;
	}
	return r->err ? -ERR_MALFORMED : 0;
}

int amqp_args_encode(const struct amqp_method_desc *d, struct writer *w, const void *args)
{
	if (w->err)
		return w->err;
	if (d->n_fields && !args)
		return -ERR_INVALID;
	size_t start = w->len;
	uint8_t bits = 0;
	bool open = false; /* an octet of bits is being filled */
	int rc = 0;
	for (size_t i = 0; i < d->n_fields && rc == 0; i++) {
		const struct amqp_field *f = &d->fields[i];
		const void *p = cat(args, f->offset);
		if (f->type == AMQP_T_BIT) {
			if (f->bit == 0) {
				if (open)
					writer_u8(w, bits);
				bits = 0;
				open = true;
			}
			if (*(const bool *)p)
				bits |= (uint8_t)(1u << f->bit);
			continue;
		}
		if (open) {
			writer_u8(w, bits);
			open = false;
		}
		rc = value_write(f, w, p);
	}
	if (rc == 0 && open)
		writer_u8(w, bits);
	return rollback(w, start, rc);
}

int amqp_method_decode(struct reader *r, struct amqp_method *out)
{
	out->id = 0;
	out->desc = NULL;
	uint16_t class_id = reader_u16(r);
	uint16_t method_id = reader_u16(r);
	if (r->err)
		return -ERR_MALFORMED;
	out->id = AMQP_METHOD_ID(class_id, method_id);
	const struct amqp_method_desc *d = amqp_method_find(class_id, method_id);
	if (!d)
		return -ERR_NOT_FOUND;
	out->desc = d;
	int rc = amqp_args_decode(d, r, &out->args);
	if (rc)
		return rc;
	if (reader_remaining(r) != 0) {
		reader_fail(r);
		return -ERR_MALFORMED;
	}
	return 0;
}

int amqp_method_encode(struct writer *w, const struct amqp_method_desc *d, const void *args)
{
	if (w->err)
		return w->err;
	size_t start = w->len;
	writer_u16(w, d->class_id);
	writer_u16(w, d->method_id);
	return rollback(w, start, amqp_args_encode(d, w, args));
}

void amqp_props_init(const struct amqp_props_desc *d, void *props)
{
	memset(props, 0, d->size);
}

/* The flag bits of d's properties in the first flags word. */
static uint16_t props_mask(const struct amqp_props_desc *d)
{
	uint16_t mask = 0;
	for (size_t i = 0; i < d->n_fields && i < 15; i++)
		mask |= (uint16_t)(0x8000u >> i);
	return mask;
}

/*
 * Property flags then the present properties (4.2.6.1). Flags words follow
 * one another while bit 0 is set; the generator allows at most 15 properties,
 * so every bit of a continuation word names a property the class lacks.
 */
int amqp_props_read(const struct amqp_props_desc *d, struct reader *r, void *props)
{
	amqp_props_init(d, props);
	uint16_t flags = reader_u16(r);
	uint16_t mask = props_mask(d) | 1u;
	uint16_t word = flags;
	for (;;) {
		if (r->err || (word & ~mask)) {
			reader_fail(r);
			return -ERR_MALFORMED;
		}
		if (!(word & 1))
			break;
		word = reader_u16(r);
		mask = 1u; /* continuation words: no property of ours */
	}
	flags &= (uint16_t)~1u;
	*(uint16_t *)at(props, d->flags_offset) = flags;
	for (size_t i = 0; i < d->n_fields; i++) {
		if (!(flags & (0x8000u >> i)))
			continue;
		const struct amqp_field *f = &d->fields[i];
		int rc = value_decode(f, r, at(props, f->offset));
		if (rc)
			return rc;
	}
	return 0;
}

int amqp_props_write(const struct amqp_props_desc *d, struct writer *w, const void *props)
{
	uint16_t flags = *(const uint16_t *)cat(props, d->flags_offset);
	if (flags & ~props_mask(d))
		return -ERR_INVALID;
	writer_u16(w, flags);
	for (size_t i = 0; i < d->n_fields; i++) {
		if (!(flags & (0x8000u >> i)))
			continue;
		const struct amqp_field *f = &d->fields[i];
		int rc = value_write(f, w, cat(props, f->offset));
		if (rc)
			return rc;
	}
	return w->err;
}

int amqp_content_header_decode(struct reader *r, struct amqp_content_header *out)
{
	memset(out, 0, sizeof *out);
	out->class_id = reader_u16(r);
	out->weight = reader_u16(r);
	out->body_size = reader_u64(r);
	if (r->err)
		return -ERR_MALFORMED;
	const struct amqp_props_desc *d = amqp_props_find(out->class_id);
	if (!d)
		return -ERR_NOT_FOUND;
	struct reader rest = *r;
	struct slice raw = reader_bytes(&rest, reader_remaining(&rest));
	int rc = amqp_props_read(d, r, &out->props);
	if (rc)
		return rc;
	if (reader_remaining(r) != 0) {
		reader_fail(r);
		return -ERR_MALFORMED;
	}
	out->props_raw = raw;
	return 0;
}

int amqp_content_header_encode(struct writer *w, const struct amqp_content_header *h)
{
	if (w->err)
		return w->err;
	const struct amqp_props_desc *d = amqp_props_find(h->class_id);
	if (!d)
		return -ERR_NOT_FOUND;
	if (!slice_ok(h->props_raw))
		return -ERR_INVALID;
	size_t start = w->len;
	writer_u16(w, h->class_id);
	writer_u16(w, h->weight);
	writer_u64(w, h->body_size);
	int rc = 0;
	if (h->props_raw.data)
		writer_bytes(w, h->props_raw.data, h->props_raw.len);
	else
		rc = amqp_props_write(d, w, &h->props);
	return rollback(w, start, rc);
}

/* ---- frames ---- */

int amqp_protocol_header_check(struct reader *r)
{
	static const char want[] = AMQP_PROTOCOL_HEADER;
	if (r->err)
		return -ERR_MALFORMED;
	size_t n = reader_remaining(r);
	if (n > AMQP_PROTOCOL_HEADER_SIZE)
		n = AMQP_PROTOCOL_HEADER_SIZE;
	struct reader t = *r;
	struct slice s = reader_bytes(&t, n);
	/* A wrong prefix is refused at once; a right one waits for the rest. */
	if (n > 0 && memcmp(s.data, want, n) != 0)
		return -ERR_UNSUPPORTED;
	if (n < AMQP_PROTOCOL_HEADER_SIZE)
		return -ERR_AGAIN;
	*r = t;
	return 0;
}

int amqp_frame_parse(struct reader *r, uint32_t frame_max, struct amqp_frame *f)
{
	memset(f, 0, sizeof *f);
	if (r->err)
		return -ERR_MALFORMED;
	if (reader_remaining(r) < AMQP_FRAME_HEADER_SIZE)
		return -ERR_AGAIN;
	struct reader t = *r;
	f->type = reader_u8(&t);
	f->channel = reader_u16(&t);
	f->size = reader_u32(&t);
	switch (f->type) {
	case AMQP_FRAME_METHOD:
	case AMQP_FRAME_HEADER:
	case AMQP_FRAME_BODY:
	case AMQP_FRAME_HEARTBEAT:
		break;
	default:
		return -ERR_MALFORMED;
	}
	if (f->size > frame_max)
		return -ERR_TOO_LARGE;
	if (reader_remaining(&t) <= f->size) /* payload + frame-end */
		return -ERR_AGAIN;
	f->payload = reader_bytes(&t, f->size);
	if (reader_u8(&t) != AMQP_FRAME_END)
		return -ERR_MALFORMED;
	*r = t;
	return 0;
}

size_t amqp_frame_begin(struct writer *w, uint8_t type, uint16_t channel)
{
	size_t pos = w->len;
	writer_u8(w, type);
	writer_u16(w, channel);
	writer_u32(w, 0);
	return pos;
}

int amqp_frame_commit(struct writer *w, size_t pos)
{
	if (w->err)
		return w->err;
	if (pos > w->len || w->len - pos < AMQP_FRAME_HEADER_SIZE)
		return -ERR_INVALID;
	size_t len = w->len - pos - AMQP_FRAME_HEADER_SIZE;
	if (len > UINT32_MAX)
		return -ERR_TOO_LARGE;
	writer_put_u32(w, pos + 3, (uint32_t)len);
	writer_u8(w, AMQP_FRAME_END);
	return w->err;
}

int amqp_frame_method_encode(struct writer *w, uint16_t channel,
	const struct amqp_method_desc *d, const void *args)
{
	if (w->err)
		return w->err;
	size_t start = w->len;
	size_t pos = amqp_frame_begin(w, AMQP_FRAME_METHOD, channel);
	int rc = amqp_method_encode(w, d, args);
	if (rc == 0)
		rc = amqp_frame_commit(w, pos);
	return rollback(w, start, rc);
}

int amqp_frame_content_encode(struct writer *w, uint16_t channel,
	const struct amqp_content_header *h, const void *body, size_t body_len,
	uint32_t frame_max)
{
	if (w->err)
		return w->err;
	if (frame_max <= AMQP_FRAME_OVERHEAD || h->body_size != body_len ||
	    (body == NULL && body_len != 0))
		return -ERR_INVALID;
	size_t start = w->len;
	size_t pos = amqp_frame_begin(w, AMQP_FRAME_HEADER, channel);
	int rc = amqp_content_header_encode(w, h);
	if (rc == 0)
		rc = amqp_frame_commit(w, pos);
	/* The body is read through a reader: it may be bytes a peer sent. */
	struct reader br;
	reader_init(&br, body, body_len);
	size_t chunk = frame_max - AMQP_FRAME_OVERHEAD;
	while (rc == 0 && reader_remaining(&br) > 0) {
		size_t n = reader_remaining(&br);
		struct slice s = reader_bytes(&br, n < chunk ? n : chunk);
		pos = amqp_frame_begin(w, AMQP_FRAME_BODY, channel);
		writer_bytes(w, s.data, s.len);
		rc = amqp_frame_commit(w, pos);
	}
	return rollback(w, start, rc);
}

int amqp_frame_heartbeat_encode(struct writer *w)
{
	if (w->err)
		return w->err;
	size_t start = w->len;
	size_t pos = amqp_frame_begin(w, AMQP_FRAME_HEARTBEAT, 0);
	return rollback(w, start, amqp_frame_commit(w, pos));
}
