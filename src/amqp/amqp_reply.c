/*
 * amqp_reply.c: RabbitMQ's direct reply-to (amq.rabbitmq.reply-to), RPC
 * replies sent straight to a consumer, never stored in a queue.
 *
 * A client consumes from the pseudo-queue "amq.rabbitmq.reply-to" with
 * no-ack (there is no queue). Its channel is then given a key,
 * "amq.rabbitmq.reply-to.<token>" with a random token, registered in the
 * server's reply table. A message that channel publishes with reply-to
 * "amq.rabbitmq.reply-to" has reply-to rewritten to that key; whoever answers
 * publishes to the default exchange with the key as routing key, and the
 * message goes to the consumer as basic.deliver:
 *
 *   client channel (loop B)              server channel (loop A)
 *   basic.consume amq.rabbitmq.reply-to
 *     └► table: key → (B, conn, channel, serial)
 *   basic.publish reply-to=amq.rabbitmq.reply-to
 *     └► reply-to=amq.rabbitmq.reply-to.<token> ─► queue ─► basic.get
 *                                                     basic.publish "" key
 *   basic.deliver ◄── loop_post(B, copy of props and body) ◄──┘
 *
 * The table is shared by every loop (a mutex, as the exclusive registry).
 * A connection belongs to its loop thread, so the publisher only looks the
 * key up (unknown: unroutable, mandatory messages come back) and posts a copy
 * of the message to the consumer's loop; there the key is looked up again
 * and the channel found by number and serial. Entries are added and removed
 * only on their connection's loop, and removed before the channel is freed,
 * so on that loop an entry's connection pointer is always valid. A reply
 * whose channel went away between the two looks is dropped, as RabbitMQ
 * drops replies to a closed channel.
 */
#include "amqp/amqp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/diag.h"
#include "core/err.h"
#include "net/loop.h"

#define REPLY_QUEUE "amq.rabbitmq.reply-to"
#define REPLY_QUEUE_LEN (sizeof REPLY_QUEUE - 1)
#define REPLY_TOKEN_LEN 24

/* A registered reply consumer's channel. */
struct amqp_reply_entry {
	char key[AMQP_REPLY_KEY_MAX];
	uint8_t key_len;
	struct loop *loop;
	struct amqp_conn *ac;          /* followed only on loop (see the top comment) */
	uint16_t channel;
	uint32_t serial;
};

/* A reply on its way to the consumer's loop: props then body in data. */
struct reply_msg {
	struct amqp_server *s;
	uint8_t key_len;
	char key[AMQP_REPLY_KEY_MAX];
	size_t props_len, body_len;
	uint8_t data[];
};

static bool slice_is(struct slice s, const char *str, size_t len)
{
	return s.len == len && memcmp(s.data, str, len) == 0;
}

bool amqp_reply_is_queue(struct slice name)
{
	return slice_is(name, REPLY_QUEUE, REPLY_QUEUE_LEN);
}

bool amqp_reply_is_key(struct slice exchange, struct slice key)
{
	return exchange.len == 0 && key.len > REPLY_QUEUE_LEN + 1 &&
	       memcmp(key.data, REPLY_QUEUE ".", REPLY_QUEUE_LEN + 1) == 0;
}

int amqp_reply_init(struct amqp_server *s)
{
	return pthread_mutex_init(&s->reply_lock, NULL) ? -ERR_NOMEM : 0;
}

void amqp_reply_fini(struct amqp_server *s)
{
	free(s->replies);
	s->replies = NULL;
	s->n_replies = s->cap_replies = 0;
	pthread_mutex_destroy(&s->reply_lock);
}

/* The entry of key (lock held), or NULL. */
static struct amqp_reply_entry *entry_find(struct amqp_server *s, const char *key, size_t len)
{
	for (size_t i = 0; i < s->n_replies; i++)
		if (s->replies[i].key_len == len && memcmp(s->replies[i].key, key, len) == 0)
			return &s->replies[i];
	return NULL;
}

/* Registers ch's key. Returns 0 or -ERR_NOMEM. */
static int entry_add(struct amqp_channel *ch)
{
	struct amqp_server *s = ch->ac->server;
	int rc = 0;
	pthread_mutex_lock(&s->reply_lock);
	if (s->n_replies == s->cap_replies) {
		size_t cap = s->cap_replies ? s->cap_replies * 2 : 16;
		struct amqp_reply_entry *e = realloc(s->replies, cap * sizeof *e);
		if (!e) {
			rc = -ERR_NOMEM;
			goto out;
		}
		s->replies = e;
		s->cap_replies = cap;
	}
	struct amqp_reply_entry *e = &s->replies[s->n_replies++];
	memcpy(e->key, ch->reply_key, ch->reply_key_len);
	e->key_len = ch->reply_key_len;
	e->loop = ch->ac->loop;
	e->ac = ch->ac;
	e->channel = ch->number;
	e->serial = ch->serial;
out:
	pthread_mutex_unlock(&s->reply_lock);
	return rc;
}

static void entry_remove(struct amqp_channel *ch)
{
	struct amqp_server *s = ch->ac->server;
	pthread_mutex_lock(&s->reply_lock);
	struct amqp_reply_entry *e = entry_find(s, ch->reply_key, ch->reply_key_len);
	if (e)
		*e = s->replies[--s->n_replies];
	pthread_mutex_unlock(&s->reply_lock);
}

bool amqp_reply_exists(struct amqp_server *s, struct slice name)
{
	if (amqp_reply_is_queue(name))
		return true;
	if (!amqp_reply_is_key(amqp_slice_str(""), name))
		return false;
	pthread_mutex_lock(&s->reply_lock);
	bool found = entry_find(s, (const char *)name.data, name.len) != NULL;
	pthread_mutex_unlock(&s->reply_lock);
	return found;
}

/* Writes a fresh key "amq.rabbitmq.reply-to.<token>" into ch. */
static void make_key(struct amqp_channel *ch)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	static _Atomic uint64_t counter;
	uint8_t r[REPLY_TOKEN_LEN] = { 0 };
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		/* Unique without randomness: a process-wide counter and the channel. */
		uint64_t n = ++counter;
		memcpy(r, &n, sizeof n);
		memcpy(r + 8, &ch->serial, sizeof ch->serial);
		memcpy(r + 12, &ch->ac, sizeof ch->ac);
	}
	size_t k = REPLY_QUEUE_LEN + 1;
	memcpy(ch->reply_key, REPLY_QUEUE ".", k);
	for (size_t i = 0; i < sizeof r; i++)
		ch->reply_key[k + i] = b64[r[i] & 63];
	ch->reply_key_len = (uint8_t)(k + sizeof r);
}

void amqp_reply_consume(struct amqp_channel *ch, const struct amqp_basic_consume *m,
			const char *tag, size_t tag_len)
{
	const uint32_t id = AMQP_BASIC_CONSUME;
	if (!m->no_ack) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id,
				   "reply consumer cannot acknowledge");
		return;
	}
	if (ch->has_reply) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id, "reply consumer already set");
		return;
	}
	make_key(ch);
	if (entry_add(ch)) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "out of memory");
		return;
	}
	ch->has_reply = true;
	ch->reply_tag_len = (uint8_t)tag_len;
	memcpy(ch->reply_tag, tag, tag_len);
	if (!m->nowait) {
		struct amqp_basic_consume_ok ok = { .consumer_tag = { (const uint8_t *)tag,
								      tag_len } };
		amqp_channel_send(ch, &amqp_basic_consume_ok_desc, &ok);
	}
}

bool amqp_reply_has_tag(const struct amqp_channel *ch, struct slice tag)
{
	return ch->has_reply && slice_is(tag, ch->reply_tag, ch->reply_tag_len);
}

void amqp_reply_release(struct amqp_channel *ch)
{
	if (!ch->has_reply)
		return;
	entry_remove(ch);
	ch->has_reply = false;
}

bool amqp_reply_rewrite(struct amqp_channel *ch, const struct amqp_content_header *h,
			uint8_t **props, size_t *props_len)
{
	*props = NULL;
	*props_len = 0;
	const struct amqp_basic_properties *p = &h->props.basic;
	if (!(p->flags & AMQP_BASIC_FLAG_REPLY_TO) || !amqp_reply_is_queue(p->reply_to))
		return true;
	if (!ch->has_reply) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, AMQP_BASIC_PUBLISH,
				   "fast reply consumer does not exist");
		return false;
	}
	struct amqp_basic_properties out = *p;
	out.reply_to = (struct slice){ (const uint8_t *)ch->reply_key, ch->reply_key_len };
	int rc = amqp_props_encode(&out, props, props_len);
	if (rc) {
		*props_len = 0;
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_BASIC_PUBLISH,
				"cannot encode the properties: %s", err_str(rc));
		return false;
	}
	return true;
}

/* A reply reached the consumer's loop: deliver it if the channel is still there. */
static void reply_deliver(void *arg)
{
	struct reply_msg *rm = arg;
	struct amqp_server *s = rm->s;
	struct amqp_conn *ac = NULL;
	uint16_t number = 0;
	uint32_t serial = 0;
	pthread_mutex_lock(&s->reply_lock);
	struct amqp_reply_entry *e = entry_find(s, rm->key, rm->key_len);
	if (e && e->loop == loop_current()) {
		ac = e->ac;
		number = e->channel;
		serial = e->serial;
	}
	pthread_mutex_unlock(&s->reply_lock);
	struct amqp_channel *ch = ac ? amqp_conn_channel(ac, number, serial) : NULL;
	if (ch && ch->state == AMQP_CH_OPEN && ch->has_reply) {
		struct amqp_message m = {
			.exchange = amqp_slice_str(""),
			.routing_key = { (const uint8_t *)rm->key, rm->key_len },
			.props_raw = { rm->data, rm->props_len },
			.body = { rm->data + rm->props_len, rm->body_len },
		};
		struct amqp_basic_deliver d = {
			.consumer_tag = { (const uint8_t *)ch->reply_tag, ch->reply_tag_len },
			.delivery_tag = ++ch->next_tag,
			.exchange = m.exchange,
			.routing_key = m.routing_key,
		};
		amqp_send_message(ch, &amqp_basic_deliver_desc, &d, &m);
	}
	free(rm);
}

int amqp_reply_send(struct amqp_server *s, const struct amqp_message *m)
{
	if (m->routing_key.len > AMQP_REPLY_KEY_MAX)
		return -ERR_NOT_FOUND;
	struct loop *loop = NULL;
	pthread_mutex_lock(&s->reply_lock);
	struct amqp_reply_entry *e = entry_find(s, (const char *)m->routing_key.data,
						m->routing_key.len);
	if (e)
		loop = e->loop;
	pthread_mutex_unlock(&s->reply_lock);
	if (!loop)
		return -ERR_NOT_FOUND;
	struct reply_msg *rm = malloc(sizeof *rm + m->props_raw.len + m->body.len);
	if (!rm)
		return -ERR_NOMEM;
	rm->s = s;
	rm->key_len = (uint8_t)m->routing_key.len;
	memcpy(rm->key, m->routing_key.data, m->routing_key.len);
	rm->props_len = m->props_raw.len;
	rm->body_len = m->body.len;
	if (m->props_raw.len)
		memcpy(rm->data, m->props_raw.data, m->props_raw.len);
	if (m->body.len)
		memcpy(rm->data + m->props_raw.len, m->body.data, m->body.len);
	int rc = loop_post(loop, reply_deliver, rm);
	if (rc)
		free(rm);
	return rc;
}
