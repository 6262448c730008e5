/*
 * amqp_message.c: an AMQP message as the record batch a queue stores.
 *
 * A queue stores each message as one Kafka RecordBatch v2 with one record
 * (ARCHITECTURE.md "Storage engine"), so the same bytes could be read by any
 * tool that reads Sluice's logs:
 *
 *   record key     the routing key it was published with
 *   record value   the body
 *   header "x-amqp-exchange"  the exchange it was published to
 *   header "x-amqp-props"     the basic properties exactly as received: the
 *                             property flags and property list of the content
 *                             header (AMQP 0-9-1 4.2.6.1), so delivery sends
 *                             them back without decoding or re-encoding
 *   header "x-ttl"            (QUEUE_TTL_HEADER, broker/queue.h) 8 bytes, the
 *                             message's expiration in ms when it has one, so
 *                             a restarted queue expires it on time
 *   header "x-priority"       (QUEUE_PRIORITY_HEADER, broker/queue.h) one byte,
 *                             the priority property when it is above 0: a
 *                             copy the queue can read without parsing AMQP
 *                             properties (priority queues, x-max-priority)
 *   timestamp      the wall-clock ms of the publish
 *
 * Stored bytes are untrusted on the way back (a damaged log): decoding goes
 * through record_batch_iter, which checks every length.
 */
#include "amqp/amqp_int.h"

#include <stdlib.h>
#include <string.h>

#include "broker/queue.h"
#include "core/err.h"
#include "core/reader.h"
#include "storage/record_batch.h"

#define HDR_EXCHANGE "x-amqp-exchange"
#define HDR_PROPS "x-amqp-props"

/* Bytes a stored message takes beyond its body, key, exchange and properties
 * (batch header 61, record and header framing, the three header names). */
#define BATCH_OVERHEAD 192

int amqp_message_encode(const struct amqp_message *m, int64_t now_ms, uint8_t **out,
			size_t *out_len)
{
	struct record_batch_kv headers[4] = {
		{ amqp_slice_str(HDR_EXCHANGE), m->exchange.data ? m->exchange : amqp_slice_str("") },
		{ amqp_slice_str(HDR_PROPS), m->props_raw.data ? m->props_raw : amqp_slice_str("") },
	};
	size_t n = 2;
	if (m->priority > 0) /* priority 0 is the default: no header */
		headers[n++] = (struct record_batch_kv){ amqp_slice_str(QUEUE_PRIORITY_HEADER),
							 { &m->priority, 1 } };
	uint8_t ttl[8];
	if (m->has_ttl) {
		struct writer tw = { .buf = ttl, .cap = sizeof ttl, .limit = sizeof ttl };
		writer_i64(&tw, m->ttl_ms);
		headers[n++] = (struct record_batch_kv){ amqp_slice_str(QUEUE_TTL_HEADER),
							 { ttl, sizeof ttl } };
	}
	struct record_batch_rec rec = {
		.key = m->routing_key.data ? m->routing_key : amqp_slice_str(""),
		.value = m->body.data ? m->body : amqp_slice_str(""),
		.headers = headers,
		.header_count = n,
	};
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.base_timestamp = now_ms;
	struct writer w;
	size_t size = m->body.len + m->routing_key.len + m->exchange.len + m->props_raw.len +
		      BATCH_OVERHEAD;
	writer_init(&w, size);
	writer_prealloc(&w, size);
	int rc = record_batch_encode(&w, &p, &rec, 1);
	if (rc) {
		writer_fini(&w);
		return rc;
	}
	*out = writer_take(&w, out_len);
	return 0;
}

int amqp_message_decode(const uint8_t *batch, size_t len, struct amqp_message *m)
{
	memset(m, 0, sizeof *m);
	struct record_batch_iter it;
	struct record_batch_record rec;
	int rc = record_batch_iter_init(&it, batch, len);
	if (rc)
		return rc;
	rc = record_batch_iter_next(&it, &rec);
	if (rc != 1)
		return rc < 0 ? rc : -ERR_CORRUPT;
	m->routing_key = rec.key.data ? rec.key : amqp_slice_str("");
	m->body = rec.value.data ? rec.value : amqp_slice_str("");
	m->timestamp_ms = rec.timestamp;
	struct record_batch_kv kv;
	bool have_props = false;
	while ((rc = record_batch_header_next(&rec, &kv)) == 1) {
		if (amqp_slice_is(kv.key, HDR_EXCHANGE) && kv.value.data)
			m->exchange = kv.value;
		else if (amqp_slice_is(kv.key, HDR_PROPS) && kv.value.data) {
			m->props_raw = kv.value;
			have_props = true;
		}
	}
	if (rc < 0)
		return rc;
	if (!m->exchange.data)
		m->exchange = amqp_slice_str("");
	/* Property flags are at least one 16-bit word (no property: 0x0000). */
	if (!have_props || m->props_raw.len < 2)
		m->props_raw = (struct slice){ (const uint8_t *)"\0\0", 2 };
	return 0;
}

int amqp_props_decode(struct slice raw, struct amqp_basic_properties *out)
{
	struct reader r;
	reader_init(&r, raw.data, raw.len);
	int rc = amqp_props_read(&amqp_basic_properties_desc, &r, out);
	if (!rc && reader_remaining(&r) != 0)
		rc = -ERR_MALFORMED;
	return rc;
}

int amqp_props_encode(const struct amqp_basic_properties *p, uint8_t **out, size_t *out_len)
{
	struct writer w;
	writer_init(&w, AMQP_MESSAGE_MAX);
	int rc = amqp_props_write(&amqp_basic_properties_desc, &w, p);
	if (rc) {
		writer_fini(&w);
		return rc;
	}
	*out = writer_take(&w, out_len);
	return 0;
}
