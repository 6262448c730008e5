/*
 * record_batch.c: parsing, checking, patching, encoding and iterating Kafka
 * RecordBatch v2. Every byte is decoded through struct reader; the only writes
 * into a batch are the fixed-position patches of the base offset, attributes,
 * maxTimestamp and CRC (see the layout table in record_batch.h).
 */
#include "storage/record_batch.h"

#include <limits.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/err.h"

#define POS_BASE_OFFSET 0
#define POS_CRC 17
#define POS_ATTRIBUTES 21
#define POS_MAX_TIMESTAMP 35
#define MIN_BATCH_LENGTH (RECORD_BATCH_HEADER_SIZE - RECORD_BATCH_LOG_OVERHEAD)

/* Stores v big-endian in n bytes at p (p points into a checked, owned batch). */
static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* Decodes and checks the header, everything but the size cap. */
static int decode_header(const uint8_t *buf, size_t len, struct record_batch_header *h)
{
	struct reader r;
	reader_init(&r, buf, len < RECORD_BATCH_HEADER_SIZE ? len : RECORD_BATCH_HEADER_SIZE);
	h->base_offset = reader_i64(&r);
	h->batch_length = reader_i32(&r);
	h->partition_leader_epoch = reader_i32(&r);
	h->magic = reader_i8(&r);
	h->crc = reader_u32(&r);
	h->attributes = reader_i16(&r);
	h->last_offset_delta = reader_i32(&r);
	h->base_timestamp = reader_i64(&r);
	h->max_timestamp = reader_i64(&r);
	h->producer_id = reader_i64(&r);
	h->producer_epoch = reader_i16(&r);
	h->base_sequence = reader_i32(&r);
	h->record_count = reader_i32(&r);
	if (r.err)
		return -ERR_CORRUPT;
	if (h->magic != RECORD_BATCH_MAGIC || h->batch_length < MIN_BATCH_LENGTH ||
	    h->record_count < 0 || h->last_offset_delta < 0)
		return -ERR_CORRUPT;
	return 0;
}

int record_batch_header_parse(const uint8_t *buf, size_t len, size_t max_batch_bytes,
			      struct record_batch_header *h)
{
	int rc = decode_header(buf, len, h);
	if (rc)
		return rc;
	if (record_batch_size(h) > max_batch_bytes)
		return -ERR_TOO_LARGE;
	return 0;
}

int record_batch_check_crc(const uint8_t *batch, size_t len, const struct record_batch_header *h)
{
	if (len != record_batch_size(h))
		return -ERR_CORRUPT;
	struct reader r;
	reader_init(&r, batch, len);
	reader_skip(&r, RECORD_BATCH_CRC_START);
	struct slice covered = reader_bytes(&r, len - RECORD_BATCH_CRC_START);
	if (r.err || crc32c(covered.data, covered.len) != h->crc)
		return -ERR_CORRUPT;
	return 0;
}

int record_batch_parse(const uint8_t *buf, size_t len, size_t max_batch_bytes,
		       struct record_batch_header *h)
{
	int rc = decode_header(buf, len, h);
	if (rc)
		return rc;
	size_t size = record_batch_size(h);
	if (size > len)
		return -ERR_CORRUPT;
	if (size > max_batch_bytes)
		return -ERR_TOO_LARGE;
	return record_batch_check_crc(buf, size, h);
}

void record_batch_walk_init(struct record_batch_walk *w, const uint8_t *buf, size_t len,
			    size_t max_batch_bytes, int check_crc)
{
	reader_init(&w->r, buf, len);
	w->max_batch_bytes = max_batch_bytes;
	w->check_crc = check_crc;
}

int record_batch_walk_next(struct record_batch_walk *w, struct record_batch_header *h,
			   struct slice *batch, size_t *pos)
{
	if (w->r.err)
		return -ERR_CORRUPT;
	size_t left = reader_remaining(&w->r);
	if (left == 0)
		return 0;
	int rc = decode_header(w->r.p, left, h);
	if (rc)
		return rc;
	size_t size = record_batch_size(h);
	if (size > left)
		return -ERR_CORRUPT;
	if (size > w->max_batch_bytes)
		return -ERR_TOO_LARGE;
	*pos = reader_offset(&w->r);
	*batch = reader_bytes(&w->r, size);
	if (w->check_crc) {
		rc = record_batch_check_crc(batch->data, batch->len, h);
		if (rc)
			return rc;
	}
	return 1;
}

int record_batch_validate_all(const uint8_t *buf, size_t len, size_t max_batch_bytes,
			      struct record_batch_set_info *info)
{
	struct record_batch_walk w;
	struct record_batch_header h;
	struct slice b;
	size_t pos;
	int rc;

	info->batches = 0;
	info->offsets = 0;
	info->max_timestamp = INT64_MIN;
	if (len == 0)
		return -ERR_CORRUPT;
	record_batch_walk_init(&w, buf, len, max_batch_bytes, 1);
	while ((rc = record_batch_walk_next(&w, &h, &b, &pos)) == 1) {
		info->batches++;
		/* at most 2^31 per batch, and there are fewer batches than 2^32 */
		info->offsets += (int64_t)h.last_offset_delta + 1;
		if (h.max_timestamp > info->max_timestamp)
			info->max_timestamp = h.max_timestamp;
	}
	return rc;
}

int record_batch_set_base_offset(uint8_t *batch, size_t len, int64_t base_offset)
{
	if (len < RECORD_BATCH_HEADER_SIZE)
		return -ERR_INVALID;
	put_be(batch + POS_BASE_OFFSET, (uint64_t)base_offset, 8);
	return 0;
}

int record_batch_set_log_append_time(uint8_t *batch, size_t len, int64_t now_ms)
{
	struct record_batch_header h;
	if (decode_header(batch, len, &h) || record_batch_size(&h) != len)
		return -ERR_INVALID;
	uint16_t attrs = (uint16_t)h.attributes | RECORD_BATCH_ATTR_LOG_APPEND_TIME;
	put_be(batch + POS_ATTRIBUTES, attrs, 2);
	put_be(batch + POS_MAX_TIMESTAMP, (uint64_t)now_ms, 8);
	uint32_t crc = crc32c(batch + RECORD_BATCH_CRC_START, len - RECORD_BATCH_CRC_START);
	put_be(batch + POS_CRC, crc, 4);
	return 0;
}

void record_batch_params_init(struct record_batch_params *p)
{
	memset(p, 0, sizeof *p);
	p->partition_leader_epoch = -1;
	p->producer_id = -1;
	p->producer_epoch = -1;
	p->base_sequence = -1;
}

/* Bytes of an unsigned LEB128. */
static size_t uvarlong_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Bytes of a zigzag varint/varlong. */
static size_t varlong_size(int64_t v)
{
	return uvarlong_size(((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* Bytes of a varint-length byte string (null when data is NULL). */
static size_t varbytes_size(struct slice s)
{
	return s.data ? varlong_size((int64_t)s.len) + s.len : 1;
}

/* Checks one record's arguments and computes the size of its body. */
static int record_body_size(const struct record_batch_rec *rec, size_t *out)
{
	if (rec->key.len > INT32_MAX || rec->value.len > INT32_MAX || rec->header_count > INT32_MAX)
		return -ERR_INVALID;
	if (rec->header_count && !rec->headers)
		return -ERR_INVALID;
	uint64_t size = 1 + varlong_size(rec->timestamp_delta) + varlong_size(rec->offset_delta) +
			varbytes_size(rec->key) + varbytes_size(rec->value) +
			varlong_size((int64_t)rec->header_count);
	for (size_t i = 0; i < rec->header_count; i++) {
		const struct record_batch_kv *kv = &rec->headers[i];
		if (!kv->key.data || kv->key.len > INT32_MAX || kv->value.len > INT32_MAX)
			return -ERR_INVALID;
		size += varbytes_size(kv->key) + varbytes_size(kv->value);
		if (size > INT32_MAX)
			return -ERR_INVALID;
	}
	if (size > INT32_MAX)
		return -ERR_INVALID;
	*out = (size_t)size;
	return 0;
}

/* Writes a varint-length byte string. */
static void write_varbytes(struct writer *w, struct slice s)
{
	writer_varint_bytes(w, s.data, s.len);
}

int record_batch_encode(struct writer *w, const struct record_batch_params *p,
			const struct record_batch_rec *recs, size_t n)
{
	if (n == 0 || n > INT32_MAX || (p->attributes & RECORD_BATCH_ATTR_CODEC_MASK))
		return -ERR_INVALID;
	int64_t max_delta = recs[0].timestamp_delta;
	for (size_t i = 0; i < n; i++) {
		if (recs[i].offset_delta < 0 || (i > 0 && recs[i].offset_delta <= recs[i - 1].offset_delta))
			return -ERR_INVALID;
		if (recs[i].timestamp_delta > max_delta)
			max_delta = recs[i].timestamp_delta;
		size_t unused;
		if (record_body_size(&recs[i], &unused))
			return -ERR_INVALID;
	}
	if (w->err)
		return w->err;

	size_t start = w->len;
	writer_i64(w, p->base_offset);
	size_t len_pos = writer_reserve(w, 4);
	writer_i32(w, p->partition_leader_epoch);
	writer_i8(w, RECORD_BATCH_MAGIC);
	size_t crc_pos = writer_reserve(w, 4);
	writer_i16(w, p->attributes);
	writer_i32(w, recs[n - 1].offset_delta);
	writer_i64(w, p->base_timestamp);
	writer_i64(w, (int64_t)((uint64_t)p->base_timestamp + (uint64_t)max_delta));
	writer_i64(w, p->producer_id);
	writer_i16(w, p->producer_epoch);
	writer_i32(w, p->base_sequence);
	writer_i32(w, (int32_t)n);
	for (size_t i = 0; i < n && !w->err; i++) {
		const struct record_batch_rec *rec = &recs[i];
		size_t body;
		(void)record_body_size(rec, &body); /* checked above */
		writer_varint(w, (int32_t)body);
		writer_i8(w, 0);
		writer_varlong(w, rec->timestamp_delta);
		writer_varint(w, rec->offset_delta);
		write_varbytes(w, rec->key);
		write_varbytes(w, rec->value);
		writer_varint(w, (int32_t)rec->header_count);
		for (size_t k = 0; k < rec->header_count; k++) {
			write_varbytes(w, rec->headers[k].key);
			write_varbytes(w, rec->headers[k].value);
		}
	}
	if (!w->err && w->len - start - RECORD_BATCH_LOG_OVERHEAD > INT32_MAX)
		w->err = -ERR_TOO_LARGE;
	if (w->err) {
		w->len = start;
		return w->err;
	}
	writer_put_u32(w, len_pos, (uint32_t)(w->len - start - RECORD_BATCH_LOG_OVERHEAD));
	size_t covered = start + RECORD_BATCH_CRC_START;
	writer_put_u32(w, crc_pos, crc32c(w->buf + covered, w->len - covered));
	return w->err;
}

int record_batch_iter_init(struct record_batch_iter *it, const uint8_t *buf, size_t len)
{
	int rc = decode_header(buf, len, &it->h);
	if (rc)
		return rc;
	size_t size = record_batch_size(&it->h);
	if (size > len)
		return -ERR_CORRUPT;
	if (it->h.attributes & RECORD_BATCH_ATTR_CODEC_MASK)
		return -ERR_UNSUPPORTED;
	struct reader whole;
	reader_init(&whole, buf, size);
	reader_skip(&whole, RECORD_BATCH_HEADER_SIZE);
	it->r = reader_sub(&whole, size - RECORD_BATCH_HEADER_SIZE);
	it->left = it->h.record_count;
	return it->r.err ? -ERR_CORRUPT : 0;
}

int record_batch_iter_next(struct record_batch_iter *it, struct record_batch_record *rec)
{
	if (it->r.err)
		return -ERR_CORRUPT;
	if (it->left == 0)
		return reader_remaining(&it->r) == 0 ? 0 : -ERR_CORRUPT;
	int32_t len = reader_varint(&it->r);
	if (it->r.err || len < 0)
		goto bad;
	struct reader sub = reader_sub(&it->r, (size_t)len);
	rec->attributes = reader_i8(&sub);
	rec->timestamp_delta = reader_varlong(&sub);
	rec->offset_delta = reader_varint(&sub);
	rec->key = reader_varint_bytes(&sub);
	rec->value = reader_varint_bytes(&sub);
	rec->header_count = reader_varint(&sub);
	if (sub.err || rec->header_count < 0 || rec->offset_delta < 0 ||
	    rec->offset_delta > it->h.last_offset_delta)
		goto bad;
	/* each header takes at least two bytes (two varint lengths) */
	if ((size_t)rec->header_count > reader_remaining(&sub) / 2)
		goto bad;
	rec->headers = sub;
	rec->headers_left = rec->header_count;
	for (int32_t i = 0; i < rec->header_count; i++) {
		struct slice k = reader_varint_bytes(&sub);
		(void)reader_varint_bytes(&sub);
		if (sub.err || k.data == NULL)
			goto bad;
	}
	if (sub.err || reader_remaining(&sub) != 0)
		goto bad;
	rec->offset = (int64_t)((uint64_t)it->h.base_offset + (uint64_t)rec->offset_delta);
	if (it->h.attributes & RECORD_BATCH_ATTR_LOG_APPEND_TIME)
		rec->timestamp = it->h.max_timestamp;
	else
		rec->timestamp = (int64_t)((uint64_t)it->h.base_timestamp + (uint64_t)rec->timestamp_delta);
	it->left--;
	return 1;
bad:
	reader_fail(&it->r);
	return -ERR_CORRUPT;
}

int record_batch_header_next(struct record_batch_record *rec, struct record_batch_kv *kv)
{
	if (rec->headers_left <= 0)
		return 0;
	kv->key = reader_varint_bytes(&rec->headers);
	kv->value = reader_varint_bytes(&rec->headers);
	if (rec->headers.err || kv->key.data == NULL)
		return -ERR_CORRUPT;
	rec->headers_left--;
	return 1;
}
