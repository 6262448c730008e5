/*
 * amqp_basic.c: the basic class (60) but publish: qos, consume, cancel,
 * deliveries, get, ack / nack / reject, recover; confirm.select (85/10); and
 * what a closing channel gives back.
 *
 * Deliveries come from the queue's owner loop as messages (broker_queue.h)
 * and are written here on the connection's loop: basic.deliver or
 * basic.get-ok, the content header with the properties as they were
 * published, and body frames cut to the negotiated frame_max. Each delivery
 * not sent with no-ack gets the channel's next delivery tag and waits in the
 * channel's unacked window, an array in tag order:
 *
 *     ua_head                                       ua_len
 *        [7 a][8 hole][9 a][10 a][11 hole][12 a]  ...
 *
 * Acks usually come in order, so settling the head and skipping holes keeps
 * every operation O(1); an ack out of order leaves a hole; a lookup by tag is
 * a binary search (tags only grow). Closing a channel requeues every unacked
 * delivery (AMQP 0-9-1 basic.recover semantics, RabbitMQ's behaviour) and
 * cancels its consumers. In a transaction (amqp_tx.c) acks only mark their
 * entries, settled at tx.commit.
 *
 * Reply codes and texts follow RabbitMQ 3.10 (checked side by side, see
 * docs/amqp.md).
 */
#include "amqp/amqp_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "broker/broker_queue.h"
#include "core/diag.h"
#include "core/err.h"


/* ---- sending a stored message ---- */

/*
 * A message whose frames come to at most this many bytes is encoded in the
 * connection's own writer and copied into its output chunks: no allocation
 * per delivery. A larger one is encoded into a buffer of its own that the
 * connection takes over (no second copy of a big body).
 */
#define SEND_COPY_MAX (32u << 10)

int amqp_send_message(struct amqp_channel *ch, const struct amqp_method_desc *d,
		      const void *args, const struct amqp_message *msg)
{
	struct amqp_conn *ac = ch->ac;
	size_t frames = msg->body.len / (ac->frame_max - AMQP_FRAME_OVERHEAD) + 3;
	/* Method arguments are at most three short strings and a few fields. */
	size_t bound = msg->body.len + msg->props_raw.len + frames * AMQP_FRAME_OVERHEAD + 1024;
	bool copy = bound <= SEND_COPY_MAX;
	struct writer own, *w = &ac->out;
	if (copy) {
		writer_reset(w);
	} else {
		w = &own;
		writer_init(w, bound + (64u << 10));
		writer_prealloc(w, bound);
	}
	struct amqp_content_header h = {
		.class_id = AMQP_CLASS_BASIC,
		.body_size = msg->body.len,
		.props_raw = msg->props_raw,
	};
	int rc = amqp_frame_method_encode(w, ch->number, d, args);
	if (!rc)
		rc = amqp_frame_content_encode(w, ch->number, &h, msg->body.data, msg->body.len,
					       ac->frame_max);
	if (rc) {
		if (!copy)
			writer_fini(w);
		amqp_conn_error(ac, AMQP_INTERNAL_ERROR, 0, "cannot encode a %s: %s", d->name,
				err_str(rc));
		return rc;
	}
	if (copy)
		return amqp_send_bytes(ac, w->buf, w->len);
	size_t len;
	uint8_t *buf = writer_take(w, &len);
	return amqp_send_owned(ac, buf, len);
}

/* ---- consumers ---- */

static void consumer_unref(struct amqp_consumer *c)
{
	if (--c->refs > 0)
		return;
	bqueue_release(c->q);
	amqp_conn_unref(c->ac);
	free(c);
}

/* The broker will not deliver to c any more: drop its registration. */
static void consumer_unregister(struct amqp_consumer *c)
{
	if (!c->registered)
		return;
	c->registered = false;
	amqp_consumer_release(c->ac->server, bqueue_name(c->q));
	consumer_unref(c);
}

/* Unlinks c from its channel (deliveries to it are requeued from now on). */
static void consumer_detach(struct amqp_consumer *c)
{
	if (!c->ch)
		return;
	for (struct amqp_consumer **pp = &c->ch->consumers; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	c->next = NULL;
	c->ch = NULL;
}

/* An auto-delete queue goes with its last consumer: forget its bindings then. */
static void forget_if_gone(struct amqp_server *s, struct bqueue *q)
{
	struct bqueue *again;
	if (bqueue_get(s->broker, amqp_slice_str(bqueue_name(q)), &again) == 0)
		bqueue_release(again);
	else
		amqp_queue_forget(s, bqueue_name(q));
}

static void drain_parked(struct amqp_channel *ch);

/* ---- the unacked window ---- */

static bool ua_is_hole(const struct amqp_unacked *u)
{
	return !u->consumer && !u->q;
}

static int unacked_push(struct amqp_channel *ch, uint64_t tag, struct amqp_consumer *c,
			struct bqueue *q, int64_t offset)
{
	if (ch->ua_head > 0 && ch->ua_len == ch->ua_cap) {
		/* Slide the live part down before growing. */
		memmove(ch->unacked, ch->unacked + ch->ua_head,
			(ch->ua_len - ch->ua_head) * sizeof *ch->unacked);
		ch->ua_len -= ch->ua_head;
		ch->ua_head = 0;
	}
	if (ch->ua_len == ch->ua_cap) {
		size_t cap = ch->ua_cap ? ch->ua_cap * 2 : 64;
		struct amqp_unacked *u = realloc(ch->unacked, cap * sizeof *u);
		if (!u)
			return -ERR_NOMEM;
		ch->unacked = u;
		ch->ua_cap = cap;
	}
	ch->unacked[ch->ua_len++] = (struct amqp_unacked){ tag, c, q, offset, 0 };
	ch->ua_live++;
	if (c)
		ch->consumer_unacked++;
	return 0;
}

/* The live entry with tag not settled by the open transaction yet, or NULL. */
static struct amqp_unacked *unacked_find(struct amqp_channel *ch, uint64_t tag)
{
	size_t lo = ch->ua_head, hi = ch->ua_len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ch->unacked[mid].tag < tag)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < ch->ua_len && ch->unacked[lo].tag == tag && !ua_is_hole(&ch->unacked[lo]) &&
	    !ch->unacked[lo].tx_settle)
		return &ch->unacked[lo];
	return NULL;
}

/*
 * Settlements gathered while walking the window, sent to the broker as one
 * message per run of entries of the same queue, consumer and kind (a
 * multiple ack of 100 deliveries is one hand-off, not 100).
 */
#define SETTLE_BATCH_MAX 256
struct settle_batch {
	struct bqueue *q;      /* owned reference while n > 0 */
	uint64_t consumer_id;
	enum bqueue_settle how;
	size_t n;
	int64_t offsets[SETTLE_BATCH_MAX];
};

static void batch_send(struct amqp_channel *ch, struct settle_batch *b)
{
	if (b->n == 0)
		return;
	int rc = bqueue_settle_many(b->q, b->consumer_id, b->offsets, b->n, b->how);
	if (rc)
		diag_warn("amqp", "%s: cannot settle deliveries of queue '%s': %s", ch->ac->peer,
			  bqueue_name(b->q), err_str(rc));
	bqueue_release(b->q);
	b->q = NULL;
	b->n = 0;
}

/* Settles one entry with the broker (through b when given) and makes it a hole. */
static void unacked_settle_into(struct amqp_channel *ch, struct amqp_unacked *u,
				enum bqueue_settle how, struct settle_batch *b)
{
	struct amqp_consumer *c = u->consumer;
	struct bqueue *q = c ? c->q : u->q;
	uint64_t id = c ? c->id : 0;
	if (b && b->n > 0 && (b->q != q || b->consumer_id != id || b->how != how ||
			      b->n == SETTLE_BATCH_MAX))
		batch_send(ch, b);
	if (b) {
		if (b->n == 0)
			b->q = bqueue_ref(q); /* the entry's own reference goes below */
		b->consumer_id = id;
		b->how = how;
		b->offsets[b->n++] = u->offset;
	} else {
		int rc = bqueue_settle(q, id, u->offset, how);
		if (rc)
			diag_warn("amqp", "%s: cannot settle a delivery of queue '%s': %s",
				  ch->ac->peer, bqueue_name(q), err_str(rc));
	}
	if (c) {
		ch->consumer_unacked--;
		consumer_unref(c);
	} else {
		bqueue_release(u->q);
	}
	u->consumer = NULL;
	u->q = NULL;
	ch->ua_live--;
	while (ch->ua_head < ch->ua_len && ua_is_hole(&ch->unacked[ch->ua_head]))
		ch->ua_head++;
	if (ch->ua_head == ch->ua_len)
		ch->ua_head = ch->ua_len = 0;
}

static void unacked_settle(struct amqp_channel *ch, struct amqp_unacked *u,
			   enum bqueue_settle how)
{
	unacked_settle_into(ch, u, how, NULL);
}

/*
 * Settles every live entry with a tag up to `upto` (0: all); with_tx: also
 * those the open transaction settles at commit.
 */
static void unacked_settle_upto(struct amqp_channel *ch, uint64_t upto, enum bqueue_settle how,
				bool with_tx)
{
	struct settle_batch b = { .n = 0 }; /* 2 KiB: on the stack, not one malloc per ack */
	for (size_t i = ch->ua_head; i < ch->ua_len; i++) {
		struct amqp_unacked *u = &ch->unacked[i];
		if (upto && u->tag > upto)
			break;
		if (!ua_is_hole(u) && (with_tx || !u->tx_settle)) {
			unacked_settle_into(ch, u, how, &b);
			if (ch->ua_len == 0)
				break; /* all settled: the window was reset */
		}
	}
	batch_send(ch, &b);
}

/* In a transaction: marks a live unmarked entry to be settled with how at tx.commit. */
static void unacked_mark(struct amqp_channel *ch, struct amqp_unacked *u, enum bqueue_settle how)
{
	u->tx_settle = (uint8_t)(1 + how);
	ch->tx_acks++;
}

/* unacked_mark for every live unmarked entry with a tag up to `upto` (0: all). */
static void unacked_mark_upto(struct amqp_channel *ch, uint64_t upto, enum bqueue_settle how)
{
	for (size_t i = ch->ua_head; i < ch->ua_len; i++) {
		struct amqp_unacked *u = &ch->unacked[i];
		if (upto && u->tag > upto)
			break;
		if (!ua_is_hole(u) && !u->tx_settle)
			unacked_mark(ch, u, how);
	}
}

void amqp_basic_tx_end(struct amqp_channel *ch, bool commit)
{
	if (ch->tx_acks == 0)
		return; /* spares a walk over a large unacked window */
	ch->tx_acks = 0;
	for (size_t i = ch->ua_head; i < ch->ua_len; i++) {
		struct amqp_unacked *u = &ch->unacked[i];
		if (ua_is_hole(u) || !u->tx_settle)
			continue;
		if (!commit) {
			u->tx_settle = 0;
			continue;
		}
		enum bqueue_settle how = (enum bqueue_settle)(u->tx_settle - 1);
		u->tx_settle = 0;
		unacked_settle(ch, u, how);
		if (ch->ua_len == 0)
			break; /* all settled: the window was reset */
	}
	drain_parked(ch);
}

/*
 * basic.ack / nack / reject on tag (multiple: every tag up to it; tag 0:
 * all). In a transaction the entries are only marked, and settled at
 * tx.commit (RabbitMQ takes them out of the unacked set at once: a second
 * ack of a tag is an unknown tag).
 */
static void settle_tags(struct amqp_channel *ch, uint32_t method, uint64_t tag, bool multiple,
			enum bqueue_settle how)
{
	if (multiple && tag == 0) {
		if (ch->tx)
			unacked_mark_upto(ch, 0, how);
		else
			unacked_settle_upto(ch, 0, how, false);
		return;
	}
	struct amqp_unacked *u = unacked_find(ch, tag);
	if (!u) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, method, "unknown delivery tag %llu",
				   (unsigned long long)tag);
		return;
	}
	if (ch->tx && multiple)
		unacked_mark_upto(ch, tag, how);
	else if (ch->tx)
		unacked_mark(ch, u, how);
	else if (multiple)
		unacked_settle_upto(ch, tag, how, false);
	else
		unacked_settle(ch, u, how);
}

/* settle_tags, then the deliveries the freed credit lets through. */
static void settle(struct amqp_channel *ch, uint32_t method, uint64_t tag, bool multiple,
		   enum bqueue_settle how)
{
	settle_tags(ch, method, tag, multiple, how);
	drain_parked(ch);
}

void amqp_basic_ack(struct amqp_channel *ch, const struct amqp_basic_ack *m)
{
	settle(ch, AMQP_BASIC_ACK, m->delivery_tag, m->multiple, BQUEUE_ACK);
}

void amqp_basic_nack(struct amqp_channel *ch, const struct amqp_basic_nack *m)
{
	settle(ch, AMQP_BASIC_NACK, m->delivery_tag, m->multiple,
	       m->requeue ? BQUEUE_REQUEUE : BQUEUE_DISCARD);
}

void amqp_basic_reject(struct amqp_channel *ch, const struct amqp_basic_reject *m)
{
	settle(ch, AMQP_BASIC_REJECT, m->delivery_tag, false,
	       m->requeue ? BQUEUE_REQUEUE : BQUEUE_DISCARD);
}

/* basic.recover (60/110) / recover-async (60/100): requeue every unacked delivery. */
void amqp_basic_recover(struct amqp_channel *ch, bool requeue, bool async)
{
	uint32_t id = async ? AMQP_BASIC_RECOVER_ASYNC : AMQP_BASIC_RECOVER;
	if (!requeue) {
		/* RabbitMQ refuses it too: redelivery to the same consumer is not kept. */
		amqp_conn_error(ch->ac, AMQP_NOT_IMPLEMENTED, id, "requeue=false");
		return;
	}
	/* Deliveries acked in the open transaction are not unacked any more. */
	unacked_settle_upto(ch, 0, BQUEUE_REQUEUE, false);
	drain_parked(ch);
	if (!async)
		amqp_channel_send(ch, &amqp_basic_recover_ok_desc, NULL);
}

/* ---- deliveries ---- */

/* Decodes a stored message; a damaged one is logged and dropped. */
static bool decode_stored(struct amqp_conn *ac, const char *queue, const struct queue_msg *msg,
			  struct amqp_message *out)
{
	int rc = amqp_message_decode(msg->data, msg->len, out);
	if (rc)
		diag_error("amqp", "%s: stored message at offset %lld of queue '%s' does not decode "
			   "(%s); dropped", ac->peer, (long long)msg->offset, queue, err_str(rc));
	return rc == 0;
}

/* Sends msg (data freed here) to consumer c as basic.deliver. */
static void deliver_now(struct amqp_consumer *c, struct queue_msg *msg)
{
	struct amqp_channel *ch = c->ch;
	struct amqp_message m;
	if (!ch || !amqp_conn_live(c->ac)) {
		if (!c->no_ack)
			bqueue_settle(c->q, c->id, msg->offset, BQUEUE_REQUEUE);
		free(msg->data);
		return;
	}
	if (!decode_stored(c->ac, bqueue_name(c->q), msg, &m)) {
		if (!c->no_ack)
			bqueue_settle(c->q, c->id, msg->offset, BQUEUE_ACK);
		free(msg->data);
		return;
	}
	uint64_t tag = ++ch->next_tag;
	if (!c->no_ack) {
		if (unacked_push(ch, tag, c, NULL, msg->offset)) {
			bqueue_settle(c->q, c->id, msg->offset, BQUEUE_REQUEUE);
			free(msg->data);
			amqp_conn_error(c->ac, AMQP_INTERNAL_ERROR, 0, "out of memory");
			return;
		}
		c->refs++;
	}
	struct amqp_basic_deliver d = {
		.consumer_tag = { (const uint8_t *)c->tag, c->tag_len },
		.delivery_tag = tag,
		.redelivered = msg->redelivered,
		.exchange = m.exchange,
		.routing_key = m.routing_key,
	};
	amqp_send_message(ch, &amqp_basic_deliver_desc, &d, &m);
	free(msg->data);
}

/* Whether the channel's global prefetch holds a delivery back now. */
static bool at_global_limit(const struct amqp_channel *ch)
{
	return ch->prefetch_global && ch->consumer_unacked >= ch->prefetch_global;
}

/*
 * Holds msg for c until the channel is below its global prefetch. Parked
 * deliveries are bounded: every consumer of the channel gets at most the
 * global prefetch from its queue (amqp_basic_consume).
 */
static void park(struct amqp_channel *ch, struct amqp_consumer *c, struct queue_msg *msg)
{
	if (ch->park_head > 0 && ch->park_len == ch->park_cap) {
		memmove(ch->parked, ch->parked + ch->park_head,
			(ch->park_len - ch->park_head) * sizeof *ch->parked);
		ch->park_len -= ch->park_head;
		ch->park_head = 0;
	}
	if (ch->park_len == ch->park_cap) {
		size_t cap = ch->park_cap ? ch->park_cap * 2 : 16;
		struct amqp_parked *p = realloc(ch->parked, cap * sizeof *p);
		if (!p) {
			bqueue_settle(c->q, c->id, msg->offset, BQUEUE_REQUEUE);
			free(msg->data);
			amqp_conn_error(c->ac, AMQP_INTERNAL_ERROR, 0, "out of memory");
			return;
		}
		ch->parked = p;
		ch->park_cap = cap;
	}
	c->refs++;
	ch->parked[ch->park_len++] = (struct amqp_parked){ c, *msg };
}

/* Sends parked deliveries while the global prefetch allows. */
static void drain_parked(struct amqp_channel *ch)
{
	while (ch->park_head < ch->park_len && !at_global_limit(ch)) {
		struct amqp_parked p = ch->parked[ch->park_head++];
		deliver_now(p.consumer, &p.msg);
		consumer_unref(p.consumer);
	}
	if (ch->park_head == ch->park_len)
		ch->park_head = ch->park_len = 0;
}

/*
 * What the queue may have unacked at consumer c: its own prefetch, and never
 * more than the channel's global limit, which bounds what the channel may
 * have to hold back.
 */
static uint32_t effective_prefetch(const struct amqp_channel *ch, const struct amqp_consumer *c)
{
	uint32_t prefetch = c->prefetch;
	if (ch->prefetch_global && (prefetch == 0 || ch->prefetch_global < prefetch))
		prefetch = ch->prefetch_global;
	return prefetch;
}

/* A message for consumer c (broker_queue.h deliver callback, on our loop). */
static void on_deliver(void *arg, struct queue_msg *msg)
{
	struct amqp_consumer *c = arg;
	struct amqp_channel *ch = c->ch;
	if (ch && !c->no_ack && amqp_conn_live(c->ac) &&
	    (at_global_limit(ch) || ch->park_head < ch->park_len)) {
		park(ch, c, msg);
		return;
	}
	deliver_now(c, msg);
}

/* The broker dropped consumer c (its queue was deleted): tell the client. */
static void on_cancelled(void *arg)
{
	struct amqp_consumer *c = arg;
	struct amqp_channel *ch = c->ch;
	if (ch && c->ac->cap_cancel_notify && amqp_conn_live(c->ac)) {
		struct amqp_basic_cancel bc = {
			.consumer_tag = { (const uint8_t *)c->tag, c->tag_len },
			.nowait = true,
		};
		amqp_channel_send(ch, &amqp_basic_cancel_desc, &bc);
	}
	consumer_detach(c);
	consumer_unregister(c);
}

static void random_tag(char *out, const char *prefix)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t r[22] = { 0 };
	static _Atomic uint64_t counter;
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		uint64_t n = ++counter;
		memcpy(r, &n, sizeof n);
	}
	size_t k = strlen(prefix);
	memcpy(out, prefix, k);
	for (size_t i = 0; i < sizeof r; i++)
		out[k + i] = b64[r[i] & 63];
	out[k + sizeof r] = 0;
}

/* basic.consume (60/20). */
void amqp_basic_consume(struct amqp_channel *ch, const struct amqp_basic_consume *m)
{
	const uint32_t id = AMQP_BASIC_CONSUME;
	char tag[256];
	if (m->consumer_tag.len)
		snprintf(tag, sizeof tag, "%.*s", SL(m->consumer_tag));
	else
		random_tag(tag, "amq.ctag-");
	size_t tag_len = m->consumer_tag.len ? m->consumer_tag.len : strlen(tag);
	bool reused = amqp_reply_has_tag(ch, (struct slice){ (const uint8_t *)tag, tag_len });
	for (struct amqp_consumer *c = ch->consumers; c && !reused; c = c->next)
		reused = c->tag_len == tag_len && memcmp(c->tag, tag, tag_len) == 0;
	if (reused) {
		amqp_conn_error(ch->ac, AMQP_NOT_ALLOWED, id, "attempt to reuse consumer tag '%s'",
				tag);
		return;
	}
	if (amqp_reply_is_queue(m->queue)) {
		amqp_reply_consume(ch, m, tag, tag_len);
		return;
	}
	/* Consumer priority (RabbitMQ's x-priority consume argument). */
	int64_t priority = 0;
	struct amqp_field_value pv;
	int prc = amqp_table_get(&m->arguments, "x-priority", &pv);
	if (prc == 0 && (amqp_field_int(&pv, &priority) || priority < INT32_MIN ||
			 priority > INT32_MAX)) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id,
				   "invalid arg 'x-priority': expected a 32-bit integer");
		return;
	}
	if (prc != 0 && prc != -ERR_NOT_FOUND) {
		amqp_conn_error(ch->ac, AMQP_FRAME_ERROR, id, "cannot decode consumer arguments");
		return;
	}
	struct bqueue *q = amqp_queue_open(ch, m->queue, id);
	if (!q)
		return;
	if (amqp_consumer_claim(ch->ac->server, bqueue_name(q), m->exclusive)) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "queue '%s' in vhost '/' in exclusive use", bqueue_name(q));
		bqueue_release(q);
		return;
	}
	struct amqp_consumer *c = calloc(1, sizeof *c);
	if (!c) {
		amqp_consumer_release(ch->ac->server, bqueue_name(q));
		bqueue_release(q);
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "out of memory");
		return;
	}
	c->ac = ch->ac;
	amqp_conn_ref(c->ac);
	c->q = q;
	c->refs = 1;
	c->no_ack = m->no_ack;
	c->exclusive = m->exclusive;
	c->tag_len = (uint8_t)tag_len;
	memcpy(c->tag, tag, tag_len);
	c->tag[tag_len] = 0;
	c->prefetch = ch->prefetch;
	int rc = bqueue_consume(q, effective_prefetch(ch, c), (int32_t)priority, m->no_ack,
				ch->ac->loop, on_deliver, on_cancelled, c, &c->id);
	if (rc) {
		amqp_consumer_release(ch->ac->server, bqueue_name(q));
		consumer_unref(c);
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "cannot consume: %s", err_str(rc));
		return;
	}
	c->registered = true;
	c->ch = ch;
	c->next = ch->consumers;
	ch->consumers = c;
	/* Deliveries arrive as later loop messages, so consume-ok goes first. */
	if (!m->nowait) {
		struct amqp_basic_consume_ok ok = { .consumer_tag = { (const uint8_t *)c->tag,
								      c->tag_len } };
		amqp_channel_send(ch, &amqp_basic_consume_ok_desc, &ok);
	}
}

/* The broker confirmed basic.cancel: no delivery for c is in flight any more. */
static void cancel_done(void *arg, int status, uint64_t n)
{
	(void)status;
	(void)n;
	struct amqp_op *op = arg;
	struct amqp_consumer *c = op->consumer;
	consumer_unregister(c);
	forget_if_gone(op->ac->server, c->q);
	struct amqp_channel *ch = amqp_op_channel(op);
	if (ch && !op->nowait) {
		struct amqp_basic_cancel_ok ok = { .consumer_tag = { (const uint8_t *)c->tag,
								     c->tag_len } };
		amqp_channel_send(ch, &amqp_basic_cancel_ok_desc, &ok);
	}
	consumer_unref(c);
	amqp_op_free(op);
}

/* basic.cancel (60/30): an unknown tag is answered cancel-ok too (as RabbitMQ). */
void amqp_basic_cancel(struct amqp_channel *ch, const struct amqp_basic_cancel *m)
{
	if (amqp_reply_has_tag(ch, m->consumer_tag)) {
		amqp_reply_release(ch);
		if (!m->nowait) {
			struct amqp_basic_cancel_ok ok = { .consumer_tag = m->consumer_tag };
			amqp_channel_send(ch, &amqp_basic_cancel_ok_desc, &ok);
		}
		return;
	}
	struct amqp_consumer *c = ch->consumers;
	while (c && (c->tag_len != m->consumer_tag.len ||
		     memcmp(c->tag, m->consumer_tag.data, c->tag_len) != 0))
		c = c->next;
	if (!c) {
		if (!m->nowait) {
			struct amqp_basic_cancel_ok ok = { .consumer_tag = m->consumer_tag };
			amqp_channel_send(ch, &amqp_basic_cancel_ok_desc, &ok);
		}
		return;
	}
	struct amqp_op *op = amqp_op_new(ch, AMQP_BASIC_CANCEL, true);
	if (!op)
		return;
	consumer_detach(c);
	op->nowait = m->nowait;
	op->consumer = c;
	c->refs++;
	int rc = bqueue_cancel(c->q, c->id, ch->ac->loop, cancel_done, op);
	if (rc) {
		c->refs--; /* the cancel's reference: nothing will use it */
		consumer_unregister(c);
		amqp_op_free(op);
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_BASIC_CANCEL, "%s", err_str(rc));
	}
}

/* A consumer of a closing channel: the broker confirmed its cancellation. */
static void release_cancel_done(void *arg, int status, uint64_t n)
{
	(void)status;
	(void)n;
	struct amqp_consumer *c = arg;
	consumer_unregister(c);
	forget_if_gone(c->ac->server, c->q);
	consumer_unref(c);
}

void amqp_basic_release(struct amqp_channel *ch)
{
	/* An open transaction's acks die with it: those deliveries are requeued too. */
	unacked_settle_upto(ch, 0, BQUEUE_REQUEUE, true);
	/* Deliveries held back by the global prefetch never reached the client. */
	for (size_t i = ch->park_head; i < ch->park_len; i++) {
		struct amqp_parked *p = &ch->parked[i];
		bqueue_settle(p->consumer->q, p->consumer->id, p->msg.offset, BQUEUE_REQUEUE);
		free(p->msg.data);
		consumer_unref(p->consumer);
	}
	free(ch->parked);
	ch->parked = NULL;
	ch->park_head = ch->park_len = ch->park_cap = 0;
	ch->consumer_unacked = 0;
	free(ch->unacked);
	ch->unacked = NULL;
	ch->ua_head = ch->ua_len = ch->ua_cap = ch->ua_live = 0;
	ch->tx_acks = 0;
	while (ch->consumers) {
		struct amqp_consumer *c = ch->consumers;
		consumer_detach(c);
		c->refs++;
		if (bqueue_cancel(c->q, c->id, ch->ac->loop, release_cancel_done, c)) {
			/* The loops are stopping: nothing will be delivered any more. */
			c->refs--; /* the cancel's reference */
			consumer_unregister(c);
		}
	}
}

/* ---- basic.get ---- */

static void get_delivered(void *arg, struct queue_msg *msg)
{
	struct amqp_op *op = arg;
	struct amqp_channel *ch = amqp_op_channel(op);
	struct amqp_message m;
	if (!ch) {
		if (msg && !op->no_ack)
			bqueue_settle(op->q, 0, msg->offset, BQUEUE_REQUEUE);
	} else if (!msg) {
		struct amqp_basic_get_empty e = { .cluster_id = amqp_slice_str("") };
		amqp_channel_send(ch, &amqp_basic_get_empty_desc, &e);
	} else if (!decode_stored(ch->ac, bqueue_name(op->q), msg, &m)) {
		if (!op->no_ack)
			bqueue_settle(op->q, 0, msg->offset, BQUEUE_ACK);
		struct amqp_basic_get_empty e = { .cluster_id = amqp_slice_str("") };
		amqp_channel_send(ch, &amqp_basic_get_empty_desc, &e);
	} else {
		uint64_t tag = ++ch->next_tag;
		struct amqp_basic_get_ok ok = {
			.delivery_tag = tag,
			.redelivered = msg->redelivered,
			.exchange = m.exchange,
			.routing_key = m.routing_key,
			.message_count = (uint32_t)bqueue_message_count(op->q),
		};
		if (!op->no_ack) {
			if (unacked_push(ch, tag, NULL, op->q, msg->offset)) {
				bqueue_settle(op->q, 0, msg->offset, BQUEUE_REQUEUE);
				amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_BASIC_GET,
						"out of memory");
				goto out;
			}
			op->q = NULL; /* the unacked entry holds the reference now */
		}
		amqp_send_message(ch, &amqp_basic_get_ok_desc, &ok, &m);
	}
out:
	if (msg)
		free(msg->data);
	amqp_op_free(op);
}

/* basic.get (60/70): answered when the queue's owner loop took a message (or none). */
void amqp_basic_get(struct amqp_channel *ch, const struct amqp_basic_get *m)
{
	struct bqueue *q = amqp_queue_open(ch, m->queue, AMQP_BASIC_GET);
	if (!q)
		return;
	struct amqp_op *op = amqp_op_new(ch, AMQP_BASIC_GET, true);
	if (!op) {
		bqueue_release(q);
		return;
	}
	op->q = q;
	op->no_ack = m->no_ack;
	int rc = bqueue_fetch_one(q, m->no_ack, ch->ac->loop, get_delivered, op);
	if (rc) {
		amqp_op_free(op);
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_BASIC_GET, "%s", err_str(rc));
	}
}

/* ---- qos and confirms ---- */

/*
 * basic.qos (60/10), as RabbitMQ with per_consumer_qos: global=false sets the
 * prefetch-count of consumers started afterwards on the channel, each counted
 * alone; global=true limits the unacked deliveries of all the channel's
 * consumers together, at once (deliveries beyond it wait in the channel until
 * acks make room). Both can be set. prefetch-size is refused as RabbitMQ
 * does.
 */
void amqp_basic_qos(struct amqp_channel *ch, const struct amqp_basic_qos *m)
{
	if (m->prefetch_size != 0) {
		amqp_conn_error(ch->ac, AMQP_NOT_IMPLEMENTED, AMQP_BASIC_QOS, "prefetch_size!=0 (%u)",
				m->prefetch_size);
		return;
	}
	if (m->global) {
		ch->prefetch_global = m->prefetch_count;
		for (struct amqp_consumer *c = ch->consumers; c; c = c->next)
			bqueue_set_prefetch(c->q, c->id, effective_prefetch(ch, c));
	} else {
		ch->prefetch = m->prefetch_count;
	}
	amqp_channel_send(ch, &amqp_basic_qos_ok_desc, NULL);
	drain_parked(ch); /* a raised (or removed) global limit lets them through */
}

/*
 * confirm.select (85/10): every later publish on the channel is acked or
 * nacked. Not on a transactional channel (RabbitMQ's 406).
 */
void amqp_confirm_select(struct amqp_channel *ch, const struct amqp_confirm_select *m)
{
	if (ch->tx) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, AMQP_CONFIRM_SELECT,
				   "cannot switch from tx to confirm mode");
		return;
	}
	ch->confirm = true;
	if (!m->nowait)
		amqp_channel_send(ch, &amqp_confirm_select_ok_desc, NULL);
}
