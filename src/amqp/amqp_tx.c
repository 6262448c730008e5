/*
 * amqp_tx.c: the tx class (90): RabbitMQ's transactions on one channel.
 *
 * tx.select puts the channel in transactional mode for the rest of its life
 * (a channel in confirm mode cannot, nor the reverse: 406, RabbitMQ's texts).
 * From then on the channel's work is held until tx.commit:
 *
 *   basic.publish ─► routed at once (RabbitMQ routes at publish time), encoded,
 *                    and kept with the names of the queues it reached, in order:
 *
 *       tx_head ─► [batch, persistent, ttl, mandatory, "q1" "q2"] ─► [...] ─► NULL
 *
 *   basic.ack / nack / reject ─► the deliveries are marked in the unacked
 *                    window (amqp_unacked.tx_settle) and leave it for later
 *                    acks: a second ack of the same tag is 406 unknown tag.
 *
 *   tx.commit ─► every held publish is handed to the queues still there
 *                (amqp_publish_store, the path publisher confirms use); one
 *                that reaches none is returned (312) if mandatory; then the
 *                marked deliveries are settled. tx.commit-ok is sent when
 *                every queue has stored its copy (after the fsync for a
 *                persistent message in a durable queue, per log.flush). A
 *                queue refusing one (x-overflow reject-publish) or failing
 *                makes it RabbitMQ's 406 "partial tx completion" instead.
 *                Input pauses until then, so later methods see the commit.
 *
 *   tx.rollback ─► held publishes are dropped and the marks cleared: the
 *                deliveries stay unacked (nothing is requeued).
 *
 * Closing the channel discards the transaction: its publishes are dropped and
 * its marked deliveries are requeued with every other unacked one. What
 * transactions hold is bounded per connection (AMQP_CONN_TX_MAX); a publish
 * beyond it fails the channel (406), which discards that transaction whole.
 */
#include "amqp/amqp_int.h"

#include <stdlib.h>
#include <string.h>

#include "broker/broker_queue.h"
#include "core/diag.h"
#include "core/err.h"

/* A publish held until tx.commit; one allocation with its queue names. */
struct amqp_tx_msg {
	struct amqp_tx_msg *next;
	uint8_t *batch;           /* owned: the record batch to store */
	size_t len;
	size_t bytes;             /* counted in the channel's and connection's tx_bytes */
	int64_t ttl_ms;
	bool persistent;
	bool mandatory;
	size_t n_queues;
	struct slice queues[];    /* the names routing reached; bytes follow the array */
};

static void not_transactional(struct amqp_channel *ch, uint32_t method)
{
	amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, method, "channel is not transactional");
}

/* tx.select (90/10). */
void amqp_tx_select(struct amqp_channel *ch)
{
	if (ch->confirm) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, AMQP_TX_SELECT,
				   "cannot switch from confirm to tx mode");
		return;
	}
	if (!ch->tx) {
		ch->tx = true;
		ch->tx_head = NULL;
		ch->tx_tail = &ch->tx_head;
	}
	amqp_channel_send(ch, &amqp_tx_select_ok_desc, NULL);
}

int amqp_tx_add(struct amqp_channel *ch, uint8_t *batch, size_t len, bool persistent,
		int64_t ttl_ms, bool mandatory, const struct exchange_dests *dests)
{
	size_t names = 0;
	for (size_t i = 0; i < dests->n; i++)
		names += dests->names[i].len;
	size_t size = sizeof(struct amqp_tx_msg) + dests->n * sizeof(struct slice) + names;
	size_t bytes = size + len;
	if (bytes > AMQP_CONN_TX_MAX - ch->ac->tx_bytes) {
		free(batch);
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, AMQP_BASIC_PUBLISH,
				   "uncommitted transactions would hold more than %u bytes on "
				   "this connection; transaction discarded", AMQP_CONN_TX_MAX);
		return -ERR_TOO_LARGE;
	}
	struct amqp_tx_msg *t = malloc(size);
	if (!t) {
		free(batch);
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_BASIC_PUBLISH, "out of memory");
		return -ERR_NOMEM;
	}
	t->next = NULL;
	t->batch = batch;
	t->len = len;
	t->bytes = bytes;
	t->ttl_ms = ttl_ms;
	t->persistent = persistent;
	t->mandatory = mandatory;
	t->n_queues = dests->n;
	uint8_t *p = (uint8_t *)(t->queues + dests->n);
	for (size_t i = 0; i < dests->n; i++) {
		const struct slice name = dests->names[i];
		if (name.len)
			memcpy(p, name.data, name.len);
		t->queues[i] = (struct slice){ p, name.len };
		p += name.len;
	}
	*ch->tx_tail = t;
	ch->tx_tail = &t->next;
	ch->tx_bytes += bytes;
	ch->ac->tx_bytes += bytes;
	return 0;
}

/* Takes the channel's held publishes (in order), leaving it none. */
static struct amqp_tx_msg *tx_take(struct amqp_channel *ch)
{
	struct amqp_tx_msg *list = ch->tx_head;
	ch->tx_head = NULL;
	ch->tx_tail = &ch->tx_head;
	ch->ac->tx_bytes -= ch->tx_bytes;
	ch->tx_bytes = 0;
	return list;
}

void amqp_tx_discard(struct amqp_channel *ch)
{
	struct amqp_tx_msg *t = tx_take(ch);
	while (t) {
		struct amqp_tx_msg *next = t->next;
		free(t->batch);
		free(t);
		t = next;
	}
}

/*
 * Stores one held publish in the queues it was routed to that still exist
 * (moving its batch), counted in op; returns it if it reaches none and is
 * mandatory. qs is scratch space of *cap entries, grown as needed.
 */
static void commit_one(struct amqp_channel *ch, struct amqp_tx_msg *t, struct bqueue ***qs,
		       size_t *cap, struct amqp_op *op)
{
	if (t->n_queues > *cap) {
		struct bqueue **grown = realloc(*qs, t->n_queues * sizeof *grown);
		if (!grown) {
			op->nack = true; /* not stored: the commit is partial */
			free(t->batch);
			return;
		}
		*qs = grown;
		*cap = t->n_queues;
	}
	size_t n = 0;
	for (size_t i = 0; i < t->n_queues; i++)
		if (bqueue_get(ch->ac->server->broker, t->queues[i], &(*qs)[n]) == 0)
			n++;
	if (n == 0) {
		struct amqp_message m;
		if (t->mandatory && amqp_message_decode(t->batch, t->len, &m) == 0)
			amqp_publish_return(ch, &m);
		free(t->batch);
		return;
	}
	amqp_publish_store(ch, *qs, n, t->batch, t->len, t->persistent, t->ttl_ms, op);
	for (size_t i = 0; i < n; i++)
		bqueue_release((*qs)[i]);
}

/* tx.commit (90/20): store the held publishes, then apply the held acks. */
void amqp_tx_commit(struct amqp_channel *ch)
{
	if (!ch->tx) {
		not_transactional(ch, AMQP_TX_COMMIT);
		return;
	}
	struct amqp_op *op = amqp_op_new(ch, AMQP_TX_COMMIT, true);
	if (!op)
		return;
	op->pending = 1; /* while the publishes are handed over */
	struct amqp_tx_msg *t = tx_take(ch);
	struct bqueue **qs = NULL;
	size_t cap = 0;
	while (t) {
		struct amqp_tx_msg *next = t->next;
		commit_one(ch, t, &qs, &cap, op);
		free(t);
		t = next;
	}
	free(qs);
	/* RabbitMQ's order: deliveries first, then the acks. */
	amqp_basic_tx_end(ch, true);
	amqp_publish_done(op, 0, 0); /* drops the + 1 */
}

void amqp_tx_stored(struct amqp_op *op)
{
	struct amqp_channel *ch = amqp_op_channel(op);
	if (ch) {
		if (op->nack)
			amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, AMQP_TX_COMMIT,
					   "partial tx completion");
		else
			amqp_channel_send(ch, &amqp_tx_commit_ok_desc, NULL);
	}
	amqp_op_free(op);
}

/* tx.rollback (90/30): drop the held publishes and acks; nothing is requeued. */
void amqp_tx_rollback(struct amqp_channel *ch)
{
	if (!ch->tx) {
		not_transactional(ch, AMQP_TX_ROLLBACK);
		return;
	}
	amqp_tx_discard(ch);
	amqp_basic_tx_end(ch, false);
	amqp_channel_send(ch, &amqp_tx_rollback_ok_desc, NULL);
}
