/*
 * amqp_deadletter.c: dead-lettering (RabbitMQ's x-dead-letter-exchange).
 *
 * A queue with a dead-letter exchange hands every message that dies in it to
 * amqp_dead_letter (the broker's bqueue_hooks.dead_letter), on the queue's
 * owner loop: rejected or nacked without requeue ("rejected"), expired by
 * x-message-ttl or its own expiration ("expired"), dropped or refused by
 * x-max-length / x-max-length-bytes ("maxlen"). The message is republished,
 * as RabbitMQ does, with:
 *
 *   exchange      the queue's x-dead-letter-exchange
 *   routing key   x-dead-letter-routing-key, else the one it was published with
 *   headers       x-death: an array of tables, newest first, one per
 *                 (queue, reason) with a count; an entry for the same queue
 *                 and reason is counted up and moved to the front. Each has
 *                 count, reason, queue, time, exchange, routing-keys and
 *                 original-expiration when the message had an expiration.
 *                 x-first-death-reason / -queue / -exchange are set once.
 *   expiration    removed (kept as original-expiration), so the copy does not
 *                 expire again for the same reason
 *   the rest      properties and body unchanged
 *
 * Routing follows the exchange's bindings like a publish (no mandatory, no
 * confirms: RabbitMQ's default at-most-once dead-lettering). A message whose
 * exchange does not exist is dropped with a warning. Cycles: a message is not
 * delivered to a queue it already died in unless one of its deaths was a
 * rejection (RabbitMQ's rule), so an expiry loop cannot spin forever.
 */
#include "amqp/amqp_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker_queue.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/reader.h"
#include "core/writer.h"

/* Most x-death entries kept; older ones beyond it are dropped. */
#define XDEATH_MAX 64

/* Most header entries a dead-lettered message keeps (besides the ones added). */
#define HEADERS_MAX 1024

static const char *const reasons[] = {
	[BQUEUE_DEATH_REJECTED] = "rejected",
	[BQUEUE_DEATH_EXPIRED] = "expired",
	[BQUEUE_DEATH_MAXLEN] = "maxlen",
};

/* One earlier x-death entry as read: its table and the fields we compare. */
struct death {
	struct amqp_table table;
	struct slice queue, reason;
	int64_t count;
};

static void death_read(const struct amqp_field_value *v, struct death *d)
{
	memset(d, 0, sizeof *d);
	d->table = v->v.table;
	struct amqp_field_value f;
	if (amqp_table_get(&d->table, "queue", &f) == 0 && f.type == AMQP_FIELD_LONGSTR)
		d->queue = f.v.str;
	if (amqp_table_get(&d->table, "reason", &f) == 0 && f.type == AMQP_FIELD_LONGSTR)
		d->reason = f.v.str;
	if (amqp_table_get(&d->table, "count", &f) != 0 || amqp_field_int(&f, &d->count) != 0)
		d->count = 1;
}

/* Everything one dead-lettering builds; freed by dl_fini. */
struct dl {
	struct amqp_table_entry *headers; /* the new headers table */
	size_t n_headers;
	struct death deaths[XDEATH_MAX];  /* the earlier x-death entries kept, in order */
	size_t n_deaths;
	struct amqp_field_value xdeath[XDEATH_MAX];
	struct amqp_table_entry fresh[7]; /* the new x-death entry */
	struct amqp_field_value rk;       /* its routing-keys item */
	bool seen_first;
	bool any_rejected;
};

/*
 * Builds the new headers: the old ones without x-death, then x-death with the
 * new entry first, then x-first-death-* if missing. Returns 0 or an error.
 */
static int build_headers(struct dl *dl, const struct amqp_basic_properties *p, const char *queue,
			 enum bqueue_death why, const struct amqp_message *m, uint64_t now_s)
{
	struct amqp_table empty = { 0 };
	const struct amqp_table *old = p->flags & AMQP_BASIC_FLAG_HEADERS ? &p->headers : &empty;
	size_t n = 0;
	struct amqp_table_iter it;
	struct slice key;
	struct amqp_field_value v;
	int rc;
	amqp_table_iter_init(&it, old);
	while ((rc = amqp_table_iter_next(&it, &key, &v)) == 1)
		n++;
	if (rc < 0 || n > HEADERS_MAX)
		return -ERR_MALFORMED;
	dl->headers = calloc(n + 4, sizeof *dl->headers);
	if (!dl->headers)
		return -ERR_NOMEM;
	int64_t count = 1;
	amqp_table_iter_init(&it, old);
	while (amqp_table_iter_next(&it, &key, &v) == 1) {
		if (amqp_slice_is(key, "x-death")) {
			if (v.type != AMQP_FIELD_ARRAY)
				continue;
			struct amqp_array_iter ai;
			struct amqp_field_value item;
			amqp_array_iter_init(&ai, &v.v.array);
			while (amqp_array_iter_next(&ai, &item) == 1 && dl->n_deaths < XDEATH_MAX - 1) {
				if (item.type != AMQP_FIELD_TABLE)
					continue;
				struct death d;
				death_read(&item, &d);
				if (amqp_slice_is(d.queue, queue) && amqp_slice_is(d.reason, reasons[why])) {
					/* replaced by the new entry; the count is the
					 * client's to write: saturate */
					count = d.count < INT64_MAX ? d.count + 1 : INT64_MAX;
					continue;
				}
				dl->any_rejected |= amqp_slice_is(d.reason, "rejected");
				dl->deaths[dl->n_deaths++] = d;
			}
			continue;
		}
		if (amqp_slice_is(key, "x-first-death-reason"))
			dl->seen_first = true;
		dl->headers[dl->n_headers++] = (struct amqp_table_entry){ key, v };
	}
	dl->any_rejected |= why == BQUEUE_DEATH_REJECTED;
	dl->rk = amqp_field_str(m->routing_key);
	size_t k = 0;
	dl->fresh[k++] = (struct amqp_table_entry){ amqp_slice_str("count"), amqp_field_i64(count) };
	dl->fresh[k++] = (struct amqp_table_entry){ amqp_slice_str("reason"),
						    amqp_field_cstr(reasons[why]) };
	dl->fresh[k++] = (struct amqp_table_entry){ amqp_slice_str("queue"), amqp_field_cstr(queue) };
	dl->fresh[k++] = (struct amqp_table_entry){ amqp_slice_str("time"),
						    amqp_field_timestamp(now_s) };
	dl->fresh[k++] = (struct amqp_table_entry){ amqp_slice_str("exchange"),
						    amqp_field_str(m->exchange) };
	dl->fresh[k++] = (struct amqp_table_entry){ amqp_slice_str("routing-keys"),
						    amqp_field_array(&dl->rk, 1) };
	if (p->flags & AMQP_BASIC_FLAG_EXPIRATION)
		dl->fresh[k++] = (struct amqp_table_entry){ amqp_slice_str("original-expiration"),
							    amqp_field_str(p->expiration) };
	size_t nx = 0;
	dl->xdeath[nx++] = amqp_field_table(amqp_table_of(dl->fresh, k));
	for (size_t i = 0; i < dl->n_deaths; i++)
		dl->xdeath[nx++] = amqp_field_table(dl->deaths[i].table);
	dl->headers[dl->n_headers++] = (struct amqp_table_entry){ amqp_slice_str("x-death"),
								  amqp_field_array(dl->xdeath, nx) };
	if (!dl->seen_first) {
		dl->headers[dl->n_headers++] = (struct amqp_table_entry){
			amqp_slice_str("x-first-death-reason"), amqp_field_cstr(reasons[why]) };
		dl->headers[dl->n_headers++] = (struct amqp_table_entry){
			amqp_slice_str("x-first-death-queue"), amqp_field_cstr(queue) };
		dl->headers[dl->n_headers++] = (struct amqp_table_entry){
			amqp_slice_str("x-first-death-exchange"), amqp_field_str(m->exchange) };
	}
	return 0;
}

/* Whether the message already died in queue name (x-death) without a rejection. */
static bool is_cycle(const struct dl *dl, const char *queue, struct slice dest)
{
	if (dl->any_rejected)
		return false;
	if (dest.len == strlen(queue) && memcmp(dest.data, queue, dest.len) == 0)
		return true;
	for (size_t i = 0; i < dl->n_deaths; i++)
		if (dl->deaths[i].queue.len == dest.len &&
		    memcmp(dl->deaths[i].queue.data, dest.data, dest.len) == 0)
			return true;
	return false;
}

/* Publishes the new message to every queue the route reached. */
static void republish(struct amqp_server *s, const struct dl *dl, const char *queue,
		      const struct exchange_dests *dests, const uint8_t *batch, size_t len,
		      bool persistent)
{
	for (size_t i = 0; i < dests->n; i++) {
		if (is_cycle(dl, queue, dests->names[i])) {
			diag_debug("amqp", "dead-letter cycle: message from '%s' not sent to '%.*s'",
				   queue, SL(dests->names[i]));
			continue;
		}
		struct bqueue *q;
		if (bqueue_get(s->broker, dests->names[i], &q))
			continue;
		uint8_t *copy = malloc(len);
		if (copy) {
			memcpy(copy, batch, len);
			bqueue_publish(q, copy, len, persistent, -1, NULL, NULL, NULL);
		}
		bqueue_release(q);
	}
}

void amqp_dead_letter(void *ctx, const char *queue, const struct bqueue_args *args,
		      enum bqueue_death why, struct queue_msg *msg)
{
	struct amqp_server *s = ctx;
	struct dl *dl = calloc(1, sizeof *dl);
	uint8_t *batch = NULL, *props = NULL;
	size_t len = 0, props_len = 0;
	struct exchange_dests dests;
	exchange_dests_init(&dests);
	struct amqp_message m;
	memset(&m, 0, sizeof m);
	int rc = dl ? amqp_message_decode(msg->data, msg->len, &m) : -ERR_NOMEM;
	struct amqp_basic_properties old, p;
	memset(&p, 0, sizeof p);
	if (!rc)
		rc = amqp_props_decode(m.props_raw, &old);
	if (!rc)
		rc = build_headers(dl, &old, queue, why, &m, (uint64_t)time(NULL));
	if (!rc) {
		p = old;
		p.flags = (uint16_t)((p.flags | AMQP_BASIC_FLAG_HEADERS) & ~AMQP_BASIC_FLAG_EXPIRATION);
		p.headers = amqp_table_of(dl->headers, dl->n_headers);
		rc = amqp_props_encode(&p, &props, &props_len);
	}
	struct slice rk = args->has_dlx_key ? amqp_slice_str(args->dlx_key) : m.routing_key;
	if (!rc) {
		rc = exchange_route(s->exchanges, amqp_slice_str(args->dlx), rk, &p.headers, &dests);
		if (rc == -ERR_NOT_FOUND)
			diag_warn("amqp", "dead-letter exchange '%s' of queue '%s' does not exist: "
				  "message dropped", args->dlx, queue);
	}
	if (!rc && dests.n > 0) {
		struct amqp_message dm = {
			.exchange = amqp_slice_str(args->dlx),
			.routing_key = rk,
			.props_raw = { props, props_len },
			.body = m.body,
			/* stored as the priority header a priority queue orders by */
			.priority = p.flags & AMQP_BASIC_FLAG_PRIORITY ? p.priority : 0,
		};
		rc = amqp_message_encode(&dm, clock_now_ms(), &batch, &len);
		if (!rc) {
			bool persistent = (p.flags & AMQP_BASIC_FLAG_DELIVERY_MODE) &&
					  p.delivery_mode == 2;
			republish(s, dl, queue, &dests, batch, len, persistent);
		}
	}
	if (rc && rc != -ERR_NOT_FOUND)
		diag_warn("amqp", "cannot dead-letter a message from '%s': %s", queue, err_str(rc));
	exchange_dests_fini(&dests);
	free(batch);
	free(props);
	if (dl)
		free(dl->headers);
	free(dl);
	free(msg->data);
	msg->data = NULL;
}
