/*
 * amqp_publish.c: basic.publish (60/40): the content that follows it, routing
 * through the exchanges, appending to every queue reached, mandatory returns
 * and publisher confirms.
 *
 * A publish is three kinds of frames on one channel (AMQP 0-9-1 4.2.6):
 * the method, one content header (class, body size, properties), then body
 * frames until body size bytes came. Frames of other channels may come in
 * between; a method on the same channel may not (505 UNEXPECTED_FRAME). The
 * body size is checked against AMQP_MESSAGE_MAX when the header arrives, and
 * the body buffer grows as frames arrive, never to the announced size at once;
 * all unfinished bodies of a connection together stay under
 * AMQP_CONN_CONTENT_MAX (506 RESOURCE_ERROR beyond), so a client announcing
 * large bodies on many channels cannot make the broker hold them all.
 *
 * Once complete, the message is routed (broker/exchange.h), encoded once as a
 * record batch (amqp_message.c) and handed to each queue's owner loop
 * (bqueue_publish). In confirm mode its sequence number is acked when every
 * queue has it (after the fsync for a persistent message in a durable queue)
 * or nacked if a queue refused it (x-overflow reject-publish) or failed; an
 * unroutable message is acked at once, after its basic.return if mandatory
 * (RabbitMQ's order). In a transaction the routed message is held by the
 * channel instead (amqp_tx.c) and stored, or returned, at tx.commit.
 */
#include "amqp/amqp_int.h"

#include <stdlib.h>
#include <string.h>

#include "broker/broker_queue.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/mem_account.h"


void amqp_publish_reset(struct amqp_channel *ch)
{
	struct amqp_publish *p = &ch->pub;
	ch->ac->content_bytes -= p->body_cap;
	if (p->body_cap)
		mem_account_add(MEM_AMQP_CONTENT, -(int64_t)p->body_cap);
	free(p->header);
	free(p->body);
	memset(p, 0, sizeof *p);
}

/* basic.publish (60/40): remember it and wait for its content. */
void amqp_publish_start(struct amqp_channel *ch, const struct amqp_basic_publish *m)
{
	const uint32_t id = AMQP_BASIC_PUBLISH;
	if (m->immediate) {
		amqp_conn_error(ch->ac, AMQP_NOT_IMPLEMENTED, id, "immediate=true");
		return;
	}
	/* Checked now so the content of a doomed publish is never buffered. */
	struct exchange_info info;
	if (exchange_lookup(ch->ac->server->exchanges, m->exchange, &info)) {
		amqp_channel_error(ch, AMQP_NOT_FOUND, id, "no exchange '%.*s' in vhost '/'",
				   SL(m->exchange));
		return;
	}
	if (info.internal) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "cannot publish to internal exchange '%.*s' in vhost '/'",
				   SL(m->exchange));
		return;
	}
	struct amqp_publish *p = &ch->pub;
	amqp_publish_reset(ch);
	p->active = true;
	p->mandatory = m->mandatory;
	p->exchange_len = (uint8_t)m->exchange.len;
	memcpy(p->exchange, m->exchange.data, m->exchange.len);
	p->key_len = (uint8_t)m->routing_key.len;
	memcpy(p->routing_key, m->routing_key.data, m->routing_key.len);
}

static void send_one_confirm(struct amqp_channel *ch, uint64_t seq, bool ack, bool multiple)
{
	if (ack) {
		struct amqp_basic_ack a = { .delivery_tag = seq, .multiple = multiple };
		amqp_channel_send(ch, &amqp_basic_ack_desc, &a);
	} else {
		struct amqp_basic_nack n = { .delivery_tag = seq, .requeue = false };
		amqp_channel_send(ch, &amqp_basic_nack_desc, &n);
	}
}

void amqp_confirm_flush(struct amqp_channel *ch)
{
	if (!ch->conf_run)
		return;
	uint64_t run = ch->conf_run;
	ch->conf_run = 0;
	if (ch->state == AMQP_CH_OPEN && !amqp_conn_failed(ch->ac))
		send_one_confirm(ch, run, true, true);
}

void amqp_confirm_flush_all(struct amqp_conn *ac)
{
	for (uint16_t i = 0; i < ac->n_channels; i++)
		if (ac->channels[i])
			amqp_confirm_flush(ac->channels[i]);
}

/* The end of a turn's completions: each channel's run as one basic.ack. */
static void confirm_flush_deferred(void *arg)
{
	struct amqp_conn *ac = arg;
	ac->conf_flush_queued = false;
	amqp_confirm_flush_all(ac);
	amqp_conn_unref(ac);
}

/*
 * Coalesced confirms. A publisher streaming with confirms gets one basic.ack
 * (multiple=1) per loop turn's completions, as from RabbitMQ, instead of one
 * frame per message. An ack whose seq follows every earlier one (conf_done + 1)
 * only extends the run, sent at the end of the turn (loop_defer) or before the
 * channel or connection closes. A nack, or an ack past a gap (a publish to
 * another queue still being stored), first sends the run, then goes out on its
 * own; past a gap, confirms stay single until every seq given out is
 * confirmed, so that a multiple ack never covers an unconfirmed publish.
 */
static void send_confirm(struct amqp_channel *ch, uint64_t seq, bool ack)
{
	struct amqp_conn *ac = ch->ac;
	ch->conf_count++;
	if (ack && !ch->conf_unordered && seq == ch->conf_done + 1 && amqp_conn_live(ac)) {
		ch->conf_done = seq;
		ch->conf_run = seq;
		if (!ac->conf_flush_queued) {
			ac->conf_flush_queued = true;
			amqp_conn_ref(ac);
			ac->conf_flush = (struct loop_deferred){ .fn = confirm_flush_deferred, .arg = ac };
			loop_defer(ac->loop, &ac->conf_flush);
		}
		return;
	}
	amqp_confirm_flush(ch);
	send_one_confirm(ch, seq, ack, false);
	if (!ch->conf_unordered && seq == ch->conf_done + 1)
		ch->conf_done = seq;
	else
		ch->conf_unordered = true;
	if (ch->conf_unordered && ch->conf_count == ch->next_seq) {
		ch->conf_done = ch->next_seq; /* caught up: every seq is confirmed */
		ch->conf_unordered = false;
	}
}

void amqp_publish_done(void *arg, int status, uint64_t offset)
{
	(void)offset;
	struct amqp_op *op = arg;
	if (status) {
		op->nack = true;
		if (status < 0)
			diag_warn("amqp", "%s: a queue failed to store a message: %s", op->ac->peer,
				  err_str(status));
	}
	if (--op->pending > 0)
		return;
	if (op->method == AMQP_TX_COMMIT) {
		amqp_tx_stored(op);
		return;
	}
	struct amqp_channel *ch = amqp_op_channel(op);
	if (ch)
		send_confirm(ch, op->seq, !op->nack);
	amqp_op_free(op);
}

void amqp_publish_return(struct amqp_channel *ch, const struct amqp_message *m)
{
	struct amqp_basic_return r = {
		.reply_code = AMQP_NO_ROUTE,
		.reply_text = amqp_slice_str("NO_ROUTE"),
		.exchange = m->exchange,
		.routing_key = m->routing_key,
	};
	amqp_send_message(ch, &amqp_basic_return_desc, &r, m);
}

/*
 * The message's own TTL (RabbitMQ): expiration is a decimal string of
 * milliseconds; -1 without one. A malformed one fails the channel (406):
 * returns false.
 */
static bool publish_ttl(struct amqp_channel *ch, const struct amqp_basic_properties *props,
			int64_t *ttl_ms)
{
	*ttl_ms = -1;
	if (!(props->flags & AMQP_BASIC_FLAG_EXPIRATION))
		return true;
	const struct slice e = props->expiration;
	bool ok = e.len > 0 && e.len <= 15;
	int64_t v = 0;
	for (size_t k = 0; ok && k < e.len; k++) {
		ok = e.data[k] >= '0' && e.data[k] <= '9';
		v = v * 10 + (e.data[k] - '0');
	}
	if (!ok) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, AMQP_BASIC_PUBLISH,
				   "PRECONDITION_FAILED - invalid expiration '%.*s'", (int)e.len,
				   (const char *)e.data);
		return false;
	}
	*ttl_ms = v;
	return true;
}

void amqp_publish_store(struct amqp_channel *ch, struct bqueue **qs, size_t n, uint8_t *batch,
			size_t len, bool persistent, int64_t ttl_ms, struct amqp_op *op)
{
	if (n == 0) {
		free(batch);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t *copy = batch;
		if (i + 1 < n) {
			copy = malloc(len);
			if (!copy) {
				if (op)
					op->nack = true;
				continue;
			}
			memcpy(copy, batch, len);
		}
		if (op)
			op->pending++;
		int rc = bqueue_publish(qs[i], copy, len, persistent, ttl_ms, ch->ac->loop,
					op ? amqp_publish_done : NULL, op);
		if (rc && op) { /* the batch was freed by bqueue_publish */
			op->nack = true;
			op->pending--;
		}
	}
}

/*
 * In a transaction (tx.select) the routed message waits in the channel for
 * tx.commit; an unroutable one that is not mandatory has nothing to wait for.
 */
static void publish_tx(struct amqp_channel *ch, const struct amqp_message *m,
		       const struct amqp_basic_properties *props)
{
	int64_t ttl_ms;
	if (!publish_ttl(ch, props, &ttl_ms))
		return;
	if (ch->dests.n == 0 && !ch->pub.mandatory)
		return;
	struct amqp_message mt = *m;
	mt.has_ttl = ttl_ms >= 0;
	mt.ttl_ms = ttl_ms;
	uint8_t *batch;
	size_t len;
	int rc = amqp_message_encode(&mt, clock_now_ms(), &batch, &len);
	if (rc) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_BASIC_PUBLISH,
				"cannot encode a message: %s", err_str(rc));
		return;
	}
	bool persistent = (props->flags & AMQP_BASIC_FLAG_DELIVERY_MODE) && props->delivery_mode == 2;
	amqp_tx_add(ch, batch, len, persistent, ttl_ms, ch->pub.mandatory, &ch->dests);
}

/*
 * A reply (direct reply-to, amqp_reply.c) goes straight to its consumer; one
 * whose consumer is gone is unroutable. Either way it is confirmed at once.
 */
static void publish_reply(struct amqp_channel *ch, const struct amqp_message *m)
{
	int rc = amqp_reply_send(ch->ac->server, m);
	if (rc == -ERR_NOT_FOUND && ch->pub.mandatory)
		amqp_publish_return(ch, m);
	else if (rc && rc != -ERR_NOT_FOUND)
		diag_warn("amqp", "%s: cannot send a direct reply: %s", ch->ac->peer, err_str(rc));
	if (ch->confirm)
		send_confirm(ch, ++ch->next_seq, true);
	amqp_publish_reset(ch);
}

/* Routes, stores and confirms m (or holds it for tx.commit). */
static void publish_route(struct amqp_channel *ch, const struct amqp_content_header *hdr,
			  struct slice props_raw)
{
	const uint32_t id = AMQP_BASIC_PUBLISH;
	struct amqp_publish *p = &ch->pub;
	struct amqp_server *s = ch->ac->server;
	const struct amqp_content_header h = *hdr;
	const struct amqp_basic_properties *props = &h.props.basic;
	struct amqp_message m = {
		.exchange = { p->exchange, p->exchange_len },
		.routing_key = { p->routing_key, p->key_len },
		.props_raw = props_raw,
		.body = { p->body ? p->body : (const uint8_t *)"", p->body_len },
		.priority = props->flags & AMQP_BASIC_FLAG_PRIORITY ? props->priority : 0,
	};
	if (amqp_reply_is_key(m.exchange, m.routing_key)) {
		publish_reply(ch, &m);
		return;
	}
	const void *headers = props->flags & AMQP_BASIC_FLAG_HEADERS ? &props->headers : NULL;
	int rc = exchange_route(s->exchanges, m.exchange, m.routing_key, headers, &ch->dests);
	if (rc == -ERR_NOT_FOUND) {
		amqp_channel_error(ch, AMQP_NOT_FOUND, id, "no exchange '%.*s' in vhost '/'",
				   SL(m.exchange));
		return;
	}
	if (rc) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "routing failed: %s", err_str(rc));
		return;
	}
	if (ch->tx) {
		publish_tx(ch, &m, props);
		amqp_publish_reset(ch);
		return;
	}
	uint64_t seq = ch->confirm ? ++ch->next_seq : 0;
	struct bqueue *small[16], **qs = small;
	size_t n = 0;
	if (ch->dests.n > 16) {
		qs = malloc(ch->dests.n * sizeof *qs);
		if (!qs) {
			amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "out of memory");
			return;
		}
	}
	for (size_t i = 0; i < ch->dests.n; i++)
		if (bqueue_get(s->broker, ch->dests.names[i], &qs[n]) == 0)
			n++;
	if (n == 0) {
		if (p->mandatory)
			amqp_publish_return(ch, &m);
		if (seq)
			send_confirm(ch, seq, true);
		goto out;
	}
	int64_t ttl_ms;
	if (!publish_ttl(ch, props, &ttl_ms))
		goto out;
	m.has_ttl = ttl_ms >= 0;
	m.ttl_ms = ttl_ms;
	uint8_t *batch;
	size_t len;
	rc = amqp_message_encode(&m, clock_now_ms(), &batch, &len);
	if (rc) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "cannot encode a message: %s",
				err_str(rc));
		goto out;
	}
	bool persistent = (props->flags & AMQP_BASIC_FLAG_DELIVERY_MODE) && props->delivery_mode == 2;
	struct amqp_op *op = NULL;
	if (seq) {
		op = amqp_op_new(ch, id, false);
		if (!op) {
			free(batch);
			goto out;
		}
		op->seq = seq;
		op->pending = 1; /* while amqp_publish_store runs */
	}
	amqp_publish_store(ch, qs, n, batch, len, persistent, ttl_ms, op);
	if (op)
		amqp_publish_done(op, 0, 0); /* drops the + 1 */
out:
	for (size_t i = 0; i < n; i++)
		bqueue_release(qs[i]);
	if (qs != small)
		free(qs);
	amqp_publish_reset(ch);
}

/* The content is complete: rewrites a direct reply-to, then routes. */
static void publish_finish(struct amqp_channel *ch)
{
	struct amqp_publish *p = &ch->pub;
	struct amqp_content_header h;
	struct reader r;
	reader_init(&r, p->header, p->header_len);
	amqp_content_header_decode(&r, &h); /* decoded once already: cannot fail */
	uint8_t *props;
	size_t props_len;
	if (!amqp_reply_rewrite(ch, &h, &props, &props_len))
		return;
	publish_route(ch, &h, props ? (struct slice){ props, props_len } : h.props_raw);
	free(props);
}

/* The content header frame (4.2.6.1). */
static void publish_header(struct amqp_channel *ch, const struct amqp_frame *f)
{
	struct amqp_publish *p = &ch->pub;
	struct amqp_content_header h;
	struct reader r;
	reader_init(&r, f->payload.data, f->payload.len);
	int rc = amqp_content_header_decode(&r, &h);
	if (rc == 0 && h.class_id != AMQP_CLASS_BASIC)
		rc = -ERR_NOT_FOUND;
	if (rc == -ERR_NOT_FOUND) {
		amqp_conn_error(ch->ac, AMQP_UNEXPECTED_FRAME, AMQP_BASIC_PUBLISH,
				"expected content header for class basic, got class %u", h.class_id);
		return;
	}
	if (rc) {
		amqp_conn_error(ch->ac, AMQP_FRAME_ERROR, AMQP_BASIC_PUBLISH,
				"cannot decode the content header (fault at byte %zu of %u)",
				reader_offset(&r), f->size);
		return;
	}
	if (h.body_size > AMQP_MESSAGE_MAX) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, AMQP_BASIC_PUBLISH,
				   "message size %llu is larger than configured max size %u",
				   (unsigned long long)h.body_size, AMQP_MESSAGE_MAX);
		return;
	}
	p->header = malloc(f->payload.len ? f->payload.len : 1);
	if (!p->header) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_BASIC_PUBLISH, "out of memory");
		return;
	}
	memcpy(p->header, f->payload.data, f->payload.len);
	p->header_len = f->payload.len;
	p->have_header = true;
	p->body_size = h.body_size;
	if (p->body_size == 0)
		publish_finish(ch);
}

/* A body frame (4.2.6.2): appended until body size bytes came. */
static void publish_body(struct amqp_channel *ch, const struct amqp_frame *f)
{
	struct amqp_publish *p = &ch->pub;
	if (f->size > p->body_size - p->body_len) {
		amqp_conn_error(ch->ac, AMQP_UNEXPECTED_FRAME, AMQP_BASIC_PUBLISH,
				"body frames carry more than the announced body size %llu",
				(unsigned long long)p->body_size);
		return;
	}
	if (p->body_len + f->size > p->body_cap) {
		size_t cap = p->body_cap ? p->body_cap : 4096;
		while (cap < p->body_len + f->size)
			cap *= 2;
		if (cap > p->body_size)
			cap = (size_t)p->body_size;
		if (ch->ac->content_bytes - p->body_cap + cap > AMQP_CONN_CONTENT_MAX) {
			amqp_conn_error(ch->ac, AMQP_RESOURCE_ERROR, AMQP_BASIC_PUBLISH,
					"more than %u bytes of unfinished message bodies on one "
					"connection", AMQP_CONN_CONTENT_MAX);
			return;
		}
		uint8_t *b = realloc(p->body, cap);
		if (!b) {
			amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_BASIC_PUBLISH, "out of memory");
			return;
		}
		ch->ac->content_bytes += cap - p->body_cap;
		mem_account_add(MEM_AMQP_CONTENT, (int64_t)cap - (int64_t)p->body_cap);
		p->body = b;
		p->body_cap = cap;
	}
	if (f->size)
		memcpy(p->body + p->body_len, f->payload.data, f->size);
	p->body_len += f->size;
	if (p->body_len == p->body_size)
		publish_finish(ch);
}

void amqp_publish_content(struct amqp_channel *ch, const struct amqp_frame *f)
{
	bool want_header = !ch->pub.have_header;
	if (want_header != (f->type == AMQP_FRAME_HEADER)) {
		amqp_conn_error(ch->ac, AMQP_UNEXPECTED_FRAME, AMQP_BASIC_PUBLISH,
				"expected content %s, got a %s frame", want_header ? "header" : "body",
				f->type == AMQP_FRAME_HEADER ? "content header" : "content body");
		return;
	}
	if (want_header)
		publish_header(ch, f);
	else
		publish_body(ch, f);
}
