/*
 * broker_queue.c: AMQP queues across the loop threads (see broker_queue.h).
 *
 * The queue table is a small array under a read-write lock (declares and
 * deletes are rare; lookups take a reference). Everything that touches a
 * queue's storage or consumers runs on its owner loop, reached by loop_post;
 * results go back to the caller's loop the same way.
 *
 * A message on its way between threads (a publish posted to the owner, a
 * delivery posted back to the consumer's loop) is counted as MEM_IN_FLIGHT in
 * core/mem_account.h until it is stored or handed to the consumer.
 */
#include "broker/broker_queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker/broker_int.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/mem_account.h"
#include "storage/catalog.h"
#include "storage/flusher.h"
#include "storage/log.h"

struct consumer {
	struct consumer *next;
	uint64_t id;
	struct loop *reply;
	uint32_t prefetch;
	uint32_t unacked;
	int32_t priority;             /* consumer priority (x-priority), 0 default */
	bool no_ack;
	bqueue_deliver_fn deliver;
	bqueue_cancelled_fn cancelled;
	void *arg;
	struct delivery *pending;     /* owner: deliveries gathered during one dispatch */
};

struct bqueue {
	_Atomic int refs;
	struct broker *b;
	char name[BQUEUE_NAME_MAX + 1];
	bool durable, exclusive, auto_delete;
	int64_t message_ttl;
	struct queue_limits limits;
	struct bqueue_args args;      /* as declared (arguments.data NULL); immutable */
	_Atomic int64_t last_used;    /* wall-clock ms of the last declare/consume/get */
	int64_t next_expiry;          /* owner: when the head message expires, -1 none */
	struct loop_deferred later;   /* owner: dispatch + flush at the end of a burst */
	struct op *waiting;           /* owner: publishes whose confirm waits for the flush */
	struct op **waiting_tail;
	struct loop *owner;
	struct queue *q;              /* owner thread only; NULL once deleted */
	struct consumer *consumers;   /* owner thread only */
	size_t n_prioritized;         /* consumers with a priority other than 0; owner */
	struct consumer *rr;          /* next consumer to serve (round robin) */
	bool had_consumer;            /* for auto-delete */
	_Atomic uint64_t ready;
	_Atomic uint32_t n_consumers;
};

/* Queue table (under b->queue_lock). */
static struct bqueue *table_find(struct broker *b, const char *name, size_t len)
{
	for (size_t i = 0; i < b->n_queues; i++)
		if (strlen(b->queues[i]->name) == len && memcmp(b->queues[i]->name, name, len) == 0)
			return b->queues[i];
	return NULL;
}

static void table_remove(struct broker *b, struct bqueue *q)
{
	for (size_t i = 0; i < b->n_queues; i++) {
		if (b->queues[i] == q) {
			b->queues[i] = b->queues[--b->n_queues];
			return;
		}
	}
}

static struct bqueue *bq_ref(struct bqueue *q)
{
	atomic_fetch_add(&q->refs, 1);
	return q;
}

void bqueue_release(struct bqueue *q)
{
	if (!q || atomic_fetch_sub(&q->refs, 1) != 1)
		return;
	if (q->q)
		queue_close(q->q);
	while (q->consumers) {
		struct consumer *c = q->consumers;
		q->consumers = c->next;
		free(c);
	}
	free(q);
}

void bqueue_args_init(struct bqueue_args *a)
{
	memset(a, 0, sizeof *a);
	a->limits = (struct queue_limits){ -1, -1, QUEUE_OVERFLOW_DROP_HEAD };
	a->message_ttl = -1;
	a->expires = -1;
}

void bqueue_args_get(const struct bqueue *q, struct bqueue_args *out)
{
	*out = q->args;
}

void bqueue_touch(struct bqueue *q)
{
	atomic_store_explicit(&q->last_used, clock_now_ms(), memory_order_relaxed);
}

const char *bqueue_name(const struct bqueue *q)
{
	return q->name;
}

bool bqueue_durable(const struct bqueue *q)
{
	return q->durable;
}

uint64_t bqueue_message_count(const struct bqueue *q)
{
	return atomic_load(&((struct bqueue *)q)->ready);
}

uint32_t bqueue_consumer_count(const struct bqueue *q)
{
	return atomic_load(&((struct bqueue *)q)->n_consumers);
}

static struct loop *owner_for(struct broker *b, const char *name)
{
	uint64_t h = broker_hash(name, strlen(name));
	return loop_group_get(b->loops, (int)(h % (uint64_t)loop_group_size(b->loops)));
}

/* The directory of a queue: queues/<hex of the name> (names are any bytes). */
static void queue_dir(struct broker *b, const char *name, bool durable, char *out, size_t n)
{
	int k = snprintf(out, n, "%s/%s/", b->cfg.data_dir, durable ? "queues" : "queues-transient");
	for (const char *s = name; *s && k > 0 && (size_t)k + 3 < n; s++, k += 2)
		snprintf(out + k, n - (size_t)k, "%02x", (uint8_t)*s);
	if (!*name && k > 0 && (size_t)k + 2 < n)
		snprintf(out + k, n - (size_t)k, "_");
}

static void run_later(void *arg);

/* Builds and opens a queue (storage on the calling thread; moved to its owner after). */
static int bq_open(struct broker *b, const char *name, const struct bqueue_args *args,
		   struct bqueue **out)
{
	struct bqueue *q = calloc(1, sizeof *q);
	if (!q)
		return -ERR_NOMEM;
	atomic_init(&q->refs, 1);
	q->b = b;
	snprintf(q->name, sizeof q->name, "%s", name);
	q->durable = args->durable;
	q->exclusive = args->exclusive;
	q->auto_delete = args->auto_delete;
	q->message_ttl = args->message_ttl;
	q->limits = args->limits;
	q->args = *args;
	q->args.arguments = (struct slice){ 0 };
	q->next_expiry = -1;
	atomic_init(&q->last_used, clock_now_ms());
	q->owner = owner_for(b, name);
	q->later.fn = run_later;
	q->later.arg = q;
	q->waiting_tail = &q->waiting;
	char parent[4300], dir[4400];
	snprintf(parent, sizeof parent, "%s/%s", b->cfg.data_dir,
		 args->durable ? "queues" : "queues-transient");
	if (mkdir(parent, 0755) && errno != EEXIST) {
		free(q);
		return -errno;
	}
	queue_dir(b, name, args->durable, dir, sizeof dir);
	struct log_config cfg;
	log_config_defaults(&cfg);
	cfg.segment_bytes = b->cfg.queue_segment_bytes; /* acked segments are freed whole */
	cfg.retention_ms = -1;
	cfg.max_batch_bytes = b->cfg.message_max_bytes;
	int rc = queue_open(dir, args->durable, args->max_priority, &cfg, args->message_ttl, &q->q);
	if (rc) {
		free(q);
		return rc;
	}
	queue_set_limits(q->q, &q->limits);
	q->args.max_priority = (int)queue_max_priority(q->q);
	atomic_store(&q->ready, queue_ready_count(q->q));
	*out = q;
	return 0;
}

static int table_add(struct broker *b, struct bqueue *q)
{
	if (b->n_queues == b->cap_queues) {
		size_t cap = b->cap_queues ? b->cap_queues * 2 : 16;
		struct bqueue **a = realloc(b->queues, cap * sizeof *a);
		if (!a)
			return -ERR_NOMEM;
		b->queues = a;
		b->cap_queues = cap;
	}
	b->queues[b->n_queues++] = q;
	return 0;
}

int bqueue_declare(struct broker *b, struct slice name, const struct bqueue_args *args,
		   bool passive, struct bqueue **out, bool *created)
{
	if (!name.data || name.len > BQUEUE_NAME_MAX || memchr(name.data, 0, name.len))
		return -ERR_INVALID;
	char cname[BQUEUE_NAME_MAX + 1];
	memcpy(cname, name.data, name.len);
	cname[name.len] = 0;
	*created = false;
	pthread_rwlock_wrlock(&b->queue_lock);
	struct bqueue *q = table_find(b, cname, name.len);
	int rc = 0;
	if (q) {
		if (!passive && (q->durable != args->durable || q->exclusive != args->exclusive ||
				 q->auto_delete != args->auto_delete))
			rc = -ERR_INVALID;
		else
			*out = bq_ref(q);
		if (!rc)
			bqueue_touch(q);
	} else if (passive) {
		rc = -ERR_NOT_FOUND;
	} else {
		rc = bq_open(b, cname, args, &q);
		if (!rc && args->durable) {
			struct catalog_queue cq = { .name = name, .durable = true,
						    .exclusive = args->exclusive,
						    .auto_delete = args->auto_delete,
						    .arguments = args->arguments };
			pthread_mutex_lock(&b->catalog_lock);
			rc = catalog_queue_create(b->catalog, &cq);
			pthread_mutex_unlock(&b->catalog_lock);
			if (rc == -ERR_EXISTS)
				rc = 0;
		}
		if (!rc)
			rc = table_add(b, q);
		if (!rc) {
			*out = bq_ref(q);
			*created = true;
		} else if (q) {
			bqueue_release(q);
		}
	}
	pthread_rwlock_unlock(&b->queue_lock);
	return rc;
}

int bqueue_get(struct broker *b, struct slice name, struct bqueue **out)
{
	if (!name.data)
		return -ERR_NOT_FOUND;
	pthread_rwlock_rdlock(&b->queue_lock);
	struct bqueue *q = table_find(b, (const char *)name.data, name.len);
	if (q)
		bq_ref(q);
	pthread_rwlock_unlock(&b->queue_lock);
	if (!q)
		return -ERR_NOT_FOUND;
	*out = q;
	return 0;
}

/* ---- owner-side operations ---- */

/* Deliveries to one consumer, posted together: one hand-off per dispatch
 * round instead of one per message. */
#define DELIVERY_BATCH_MAX 64

struct delivery {
	bqueue_deliver_fn deliver;
	void *arg;
	bool empty;  /* basic.get on an empty queue */
	size_t n;
	struct queue_msg msgs[DELIVERY_BATCH_MAX];
};

static void delivery_run(void *p)
{
	struct delivery *d = p;
	if (d->empty)
		d->deliver(d->arg, NULL);
	int64_t bytes = 0;
	for (size_t i = 0; i < d->n; i++)
		bytes += (int64_t)d->msgs[i].len;
	mem_account_add(MEM_IN_FLIGHT, -bytes); /* once per batch, as delivery_post adds it */
	for (size_t i = 0; i < d->n; i++)
		d->deliver(d->arg, &d->msgs[i]);
	free(d);
}

/* Posts d to reply, or frees it with its messages. */
static void delivery_post(struct loop *reply, struct delivery *d)
{
	/* Counted before the post: the receiver may subtract before loop_post returns. */
	int64_t bytes = 0;
	for (size_t i = 0; i < d->n; i++)
		bytes += (int64_t)d->msgs[i].len;
	mem_account_add(MEM_IN_FLIGHT, bytes);
	if (loop_post(reply, delivery_run, d)) {
		mem_account_add(MEM_IN_FLIGHT, -bytes);
		for (size_t i = 0; i < d->n; i++)
			free(d->msgs[i].data);
		free(d);
	}
}

static void post_delivery(struct loop *reply, bqueue_deliver_fn fn, void *arg, struct queue_msg *m)
{
	struct delivery *d = malloc(sizeof *d);
	if (!d) {
		if (m)
			free(m->data);
		return;
	}
	d->deliver = fn;
	d->arg = arg;
	d->empty = m == NULL;
	d->n = 0;
	if (m)
		d->msgs[d->n++] = *m;
	delivery_post(reply, d);
}

/* Adds m to consumer c's pending batch (posted when full or by flush_pending). */
static void queue_delivery(struct consumer *c, struct queue_msg *m)
{
	if (!c->pending) {
		c->pending = malloc(sizeof *c->pending);
		if (!c->pending) {
			free(m->data);
			return;
		}
		c->pending->deliver = c->deliver;
		c->pending->arg = c->arg;
		c->pending->empty = false;
		c->pending->n = 0;
	}
	c->pending->msgs[c->pending->n++] = *m;
	if (c->pending->n == DELIVERY_BATCH_MAX) {
		delivery_post(c->reply, c->pending);
		c->pending = NULL;
	}
}

static void flush_pending(struct bqueue *q)
{
	bool any = false;
	for (struct consumer *c = q->consumers; c; c = c->next)
		any |= c->pending != NULL;
	if (!any)
		return;
	/* The delivery marks reach the file before the messages leave. */
	if (q->q)
		queue_flush(q->q);
	for (struct consumer *c = q->consumers; c; c = c->next) {
		if (c->pending) {
			delivery_post(c->reply, c->pending);
			c->pending = NULL;
		}
	}
}

/* Hands a message that died in q to the dead-letter hook, or frees it. Owner. */
static void dead_letter(struct bqueue *q, enum bqueue_death why, struct queue_msg *m)
{
	const struct bqueue_hooks *h = &q->b->qhooks;
	if (m->data && q->args.has_dlx && h->dead_letter)
		h->dead_letter(h->ctx, q->name, &q->args, why, m);
	else
		free(m->data);
	m->data = NULL;
}

static void on_expired(void *arg, struct queue_msg *m)
{
	dead_letter(arg, BQUEUE_DEATH_EXPIRED, m);
}

static void on_dropped(void *arg, struct queue_msg *m)
{
	dead_letter(arg, BQUEUE_DEATH_MAXLEN, m);
}

/* The callback that receives q's dead messages: NULL unless they go somewhere,
 * so a queue without a dead-letter exchange never reads them back. */
static void (*death_cb(struct bqueue *q, int which))(void *, struct queue_msg *)
{
	if (!q->args.has_dlx)
		return NULL;
	return which ? on_dropped : on_expired;
}

static void update_counts(struct bqueue *q)
{
	atomic_store(&q->ready, q->q ? queue_ready_count(q->q) : 0);
	q->next_expiry = q->q ? queue_head_expiry(q->q) : -1;
}

/* Hands ready messages to consumers with credit, round robin. Owner thread. */
static void dispatch(struct bqueue *q)
{
	if (!q->q || !q->consumers) {
		update_counts(q);
		return;
	}
	int64_t now = clock_now_ms();
	/* x-single-active-consumer: only the oldest consumer (the list's last:
	 * consumers are added at its head) receives; the next takes over when it
	 * leaves. */
	struct consumer *active = NULL;
	if (q->args.single_active)
		for (active = q->consumers; active->next; active = active->next)
			;
	for (;;) {
		struct consumer *pick = NULL;
		if (active) {
			if (active->prefetch == 0 || active->unacked < active->prefetch)
				pick = active;
		} else {
			/* The highest priority among consumers with credit, then round
			 * robin from rr among those (all 0 by default: plain round robin). */
			bool any = q->n_prioritized == 0; /* all 0: no scan for the top */
			int32_t top = 0;
			for (struct consumer *c = any ? NULL : q->consumers; c; c = c->next) {
				if ((c->prefetch == 0 || c->unacked < c->prefetch) &&
				    (!any || c->priority > top)) {
					top = c->priority;
					any = true;
				}
			}
			struct consumer *start = q->rr ? q->rr : q->consumers, *c = start;
			do {
				if (any && c->priority == top &&
				    (c->prefetch == 0 || c->unacked < c->prefetch)) {
					pick = c;
					break;
				}
				c = c->next ? c->next : q->consumers;
			} while (c != start);
		}
		if (!pick)
			break;
		struct queue_msg m;
		int rc = queue_next(q->q, now, &m, death_cb(q, 0), q);
		if (rc <= 0) {
			if (rc < 0)
				diag_error("queue", "%s: reading a message: %s", q->name, err_str(rc));
			break;
		}
		if (pick->no_ack)
			queue_ack(q->q, m.offset);
		else
			pick->unacked++;
		q->rr = pick->next ? pick->next : q->consumers;
		queue_delivery(pick, &m);
	}
	flush_pending(q);
	update_counts(q);
}

static void complete_waiting(struct bqueue *q, int flush_rc);

/* The end of a burst on the owner: one dispatch and one write for it all,
 * then the confirms that waited for that write. */
static void run_later(void *arg)
{
	struct bqueue *q = arg;
	dispatch(q);
	int rc = q->q ? queue_flush(q->q) : 0;
	complete_waiting(q, rc);
	bqueue_release(q);
}

/* Dispatches (and writes what was buffered) once the owner's current batch of
 * messages is done. Owner thread. */
static void schedule(struct bqueue *q)
{
	if (q->later.queued)
		return;
	bq_ref(q);
	loop_defer(q->owner, &q->later);
}

struct op {
	struct op *next;              /* bqueue.waiting */
	struct flusher_file *file;    /* owned reference while waiting */
	struct bqueue *q;
	struct loop *reply;
	bqueue_done_fn done;
	void *arg;
	int status;
	uint64_t n;
	/* publish */
	uint8_t *batch;
	size_t len;
	bool persistent;
	int64_t ttl_ms;
	/* settle_many: owned offsets (else the one offset below) */
	int64_t *offsets;
	size_t n_offsets;
	/* consume / cancel / settle */
	struct consumer *consumer;
	uint64_t id;
	int64_t offset;
	enum bqueue_settle how;
	bool no_ack;
	bqueue_deliver_fn deliver;
	/* delete */
	bool if_unused, if_empty;
};

static void op_free(struct op *op)
{
	if (op->file)
		flusher_file_unref(op->file);
	if (op->batch)
		mem_account_add(MEM_IN_FLIGHT, -(int64_t)op->len);
	free(op->batch);
	free(op->offsets);
	free(op->consumer);
	bqueue_release(op->q);
	free(op);
}

static void op_reply_run(void *p)
{
	struct op *op = p;
	op->done(op->arg, op->status, op->n);
	op_free(op);
}

/* Sends the result to the caller's loop (any thread), or drops it. */
static void op_finish(struct op *op)
{
	if (!op->done || loop_post(op->reply, op_reply_run, op))
		op_free(op);
}

static int op_post(struct op *op, loop_fn fn)
{
	int rc = loop_post(op->q->owner, fn, op);
	if (rc) {
		op->done = NULL;
		op_free(op);
	}
	return rc;
}

static struct op *op_new(struct bqueue *q, struct loop *reply, bqueue_done_fn done, void *arg)
{
	struct op *op = calloc(1, sizeof *op);
	if (!op)
		return NULL;
	op->q = bq_ref(q);
	op->reply = reply;
	op->done = done;
	op->arg = arg;
	return op;
}

static void synced(void *arg, int status)
{
	struct op *op = arg;
	if (status)
		op->status = status;
	op_finish(op);
}

static void publish_on_owner(void *p)
{
	struct op *op = p;
	struct bqueue *q = op->q;
	if (!q->q) {
		op->status = -ERR_NOT_FOUND;
		op_finish(op);
		return;
	}
	int64_t now = clock_now_ms();
	int64_t off = -1;
	struct flusher_file *file = NULL;
	int64_t ttl = q->message_ttl;
	if (op->ttl_ms >= 0 && (ttl < 0 || op->ttl_ms < ttl))
		ttl = op->ttl_ms;
	int64_t expires = ttl >= 0 ? queue_expiry_at(now, ttl) : -1;
	int rc = queue_publish(q->q, &op->batch, op->len, expires, now, &off, &file,
			       death_cb(q, 1), q);
	mem_account_add(MEM_IN_FLIGHT, -(int64_t)op->len); /* arrived (bqueue_publish counted it) */
	if (rc == 1 && q->limits.overflow == QUEUE_OVERFLOW_REJECT_PUBLISH_DLX && q->args.has_dlx) {
		struct queue_msg m = { .offset = -1, .data = op->batch, .len = op->len };
		op->batch = NULL;
		dead_letter(q, BQUEUE_DEATH_MAXLEN, &m);
	}
	free(op->batch);
	op->batch = NULL;
	op->status = rc;
	op->n = (uint64_t)off;
	update_counts(q);
	schedule(q);
	/* A confirm of a persistent message in a durable queue promises it is
	 * written (and, with log.flush=batch, synced): it waits for the write at
	 * the end of this burst (complete_waiting). */
	if (rc == 0 && q->durable && op->persistent && op->done && file) {
		op->file = flusher_file_ref(file);
		*q->waiting_tail = op;
		q->waiting_tail = &op->next;
		return;
	}
	op_finish(op);
}

static void complete_waiting(struct bqueue *q, int flush_rc)
{
	struct op *op = q->waiting;
	q->waiting = NULL;
	q->waiting_tail = &q->waiting;
	struct flusher *fl = q->b->flusher;
	while (op) {
		struct op *next = op->next;
		op->next = NULL;
		if (flush_rc) {
			op->status = flush_rc;
		} else if (fl && flusher_policy(fl) == CONFIG_FLUSH_BATCH) {
			if (flusher_sync(fl, op->file, synced, op) == 0) {
				op = next;
				continue;
			}
			op->status = -ERR_CLOSED;
		}
		op_finish(op);
		op = next;
	}
}

int bqueue_publish(struct bqueue *q, uint8_t *batch, size_t len, bool persistent, int64_t ttl_ms,
		   struct loop *reply, bqueue_done_fn done, void *arg)
{
	struct op *op = op_new(q, reply, done, arg);
	if (!op) {
		free(batch);
		return -ERR_NOMEM;
	}
	op->batch = batch;
	op->len = len;
	mem_account_add(MEM_IN_FLIGHT, (int64_t)len);
	op->persistent = persistent;
	op->ttl_ms = ttl_ms;
	return op_post(op, publish_on_owner);
}

static void consume_on_owner(void *p)
{
	struct op *op = p;
	struct bqueue *q = op->q;
	struct consumer *c = op->consumer;
	op->consumer = NULL;
	if (!q->q) {
		loop_post(c->reply, c->cancelled, c->arg);
		free(c);
	} else {
		c->next = q->consumers;
		q->consumers = c;
		q->n_prioritized += c->priority != 0;
		q->had_consumer = true;
		atomic_fetch_add(&q->n_consumers, 1);
		dispatch(q);
	}
	op_finish(op);
}

int bqueue_consume(struct bqueue *q, uint32_t prefetch, int32_t priority, bool no_ack,
		   struct loop *reply, bqueue_deliver_fn deliver, bqueue_cancelled_fn cancelled,
		   void *arg, uint64_t *id)
{
	static _Atomic uint64_t next_id = 1;
	struct op *op = op_new(q, reply, NULL, NULL);
	struct consumer *c = calloc(1, sizeof *c);
	if (!op || !c) {
		free(c);
		if (op)
			op_free(op);
		return -ERR_NOMEM;
	}
	*c = (struct consumer){ .id = atomic_fetch_add(&next_id, 1), .reply = reply,
				.prefetch = prefetch, .priority = priority, .no_ack = no_ack,
				.deliver = deliver,
				.cancelled = cancelled, .arg = arg };
	*id = c->id;
	op->consumer = c;
	bqueue_touch(q);
	return op_post(op, consume_on_owner);
}

static struct consumer *find_consumer(struct bqueue *q, uint64_t id, struct consumer ***link)
{
	for (struct consumer **pp = &q->consumers; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			if (link)
				*link = pp;
			return *pp;
		}
	}
	return NULL;
}

static void delete_queue_on_owner(struct bqueue *q);

static void cancel_on_owner(void *p)
{
	struct op *op = p;
	struct bqueue *q = op->q;
	struct consumer **link;
	struct consumer *c = find_consumer(q, op->id, &link);
	if (c) {
		*link = c->next;
		if (q->rr == c)
			q->rr = NULL;
		q->n_prioritized -= c->priority != 0;
		atomic_fetch_sub(&q->n_consumers, 1);
		free(c);
		bqueue_touch(q); /* x-expires counts from the last consumer leaving */
		if (q->auto_delete && q->had_consumer && !q->consumers && q->q)
			delete_queue_on_owner(q);
	}
	op_finish(op);
}

int bqueue_cancel(struct bqueue *q, uint64_t id, struct loop *reply, bqueue_done_fn done,
		  void *arg)
{
	struct op *op = op_new(q, reply, done, arg);
	if (!op)
		return -ERR_NOMEM;
	op->id = id;
	return op_post(op, cancel_on_owner);
}

static void prefetch_on_owner(void *p)
{
	struct op *op = p;
	struct consumer *c = find_consumer(op->q, op->id, NULL);
	if (c) {
		c->prefetch = (uint32_t)op->n;
		schedule(op->q);
	}
	op_finish(op);
}

int bqueue_set_prefetch(struct bqueue *q, uint64_t id, uint32_t prefetch)
{
	struct op *op = op_new(q, NULL, NULL, NULL);
	if (!op)
		return -ERR_NOMEM;
	op->id = id;
	op->n = prefetch;
	return op_post(op, prefetch_on_owner);
}

/* Settles one delivered message on the owner; 0 or an error (logged by the caller). */
static int settle_one(struct bqueue *q, struct consumer *c, int64_t offset, enum bqueue_settle how)
{
	if (c && c->unacked > 0)
		c->unacked--;
	if (how == BQUEUE_ACK)
		return queue_ack(q->q, offset);
	if (how == BQUEUE_DISCARD) {
		struct queue_msg m = { 0 };
		int rc = queue_discard(q->q, offset, q->args.has_dlx ? &m : NULL);
		if (rc == 0 && m.data)
			dead_letter(q, BQUEUE_DEATH_REJECTED, &m);
		return rc;
	}
	return queue_requeue(q->q, offset);
}

static void settle_on_owner(void *p)
{
	struct op *op = p;
	struct bqueue *q = op->q;
	if (q->q) {
		struct consumer *c = op->id ? find_consumer(q, op->id, NULL) : NULL;
		const int64_t *offs = op->offsets ? op->offsets : &op->offset;
		size_t n = op->offsets ? op->n_offsets : 1;
		for (size_t i = 0; i < n && q->q; i++) {
			int rc = settle_one(q, c, offs[i], op->how);
			if (rc)
				diag_debug("queue", "%s: settling offset %lld: %s", q->name,
					   (long long)offs[i], err_str(rc));
		}
		update_counts(q);
		schedule(q);
	}
	op_finish(op);
}

int bqueue_settle(struct bqueue *q, uint64_t consumer_id, int64_t offset, enum bqueue_settle how)
{
	struct op *op = op_new(q, NULL, NULL, NULL);
	if (!op)
		return -ERR_NOMEM;
	op->id = consumer_id;
	op->offset = offset;
	op->how = how;
	return op_post(op, settle_on_owner);
}

int bqueue_settle_many(struct bqueue *q, uint64_t consumer_id, const int64_t *offsets, size_t n,
		       enum bqueue_settle how)
{
	if (n == 1)
		return bqueue_settle(q, consumer_id, offsets[0], how);
	struct op *op = op_new(q, NULL, NULL, NULL);
	if (!op)
		return -ERR_NOMEM;
	op->offsets = malloc(n * sizeof *op->offsets);
	if (!op->offsets) {
		op_free(op);
		return -ERR_NOMEM;
	}
	memcpy(op->offsets, offsets, n * sizeof *op->offsets);
	op->n_offsets = n;
	op->id = consumer_id;
	op->how = how;
	return op_post(op, settle_on_owner);
}

struct bqueue *bqueue_ref(struct bqueue *q)
{
	return bq_ref(q);
}

static void fetch_on_owner(void *p)
{
	struct op *op = p;
	struct bqueue *q = op->q;
	struct queue_msg m;
	int rc = q->q ? queue_next(q->q, clock_now_ms(), &m, death_cb(q, 0), q) : 0;
	if (rc == 1)
		queue_flush(q->q); /* its delivery mark, before it leaves */
	if (rc == 1 && op->no_ack)
		queue_ack(q->q, m.offset);
	update_counts(q);
	post_delivery(op->reply, op->deliver, op->arg, rc == 1 ? &m : NULL);
	op_finish(op);
}

int bqueue_fetch_one(struct bqueue *q, bool no_ack, struct loop *reply, bqueue_deliver_fn deliver,
		     void *arg)
{
	struct op *op = op_new(q, reply, NULL, NULL);
	if (!op)
		return -ERR_NOMEM;
	op->no_ack = no_ack;
	op->deliver = deliver;
	op->arg = arg;
	bqueue_touch(q);
	return op_post(op, fetch_on_owner);
}

static void purge_on_owner(void *p)
{
	struct op *op = p;
	op->n = op->q->q ? queue_purge(op->q->q) : 0;
	update_counts(op->q);
	op_finish(op);
}

int bqueue_purge(struct bqueue *q, struct loop *reply, bqueue_done_fn done, void *arg)
{
	struct op *op = op_new(q, reply, done, arg);
	if (!op)
		return -ERR_NOMEM;
	return op_post(op, purge_on_owner);
}

/* Removes q everywhere: consumers told, table, catalog, disk. Owner thread. */
static void delete_queue_on_owner(struct bqueue *q)
{
	struct broker *b = q->b;
	while (q->consumers) {
		struct consumer *c = q->consumers;
		q->consumers = c->next;
		if (c->cancelled)
			loop_post(c->reply, c->cancelled, c->arg);
		free(c);
	}
	q->rr = NULL;
	q->n_prioritized = 0;
	atomic_store(&q->n_consumers, 0);
	pthread_rwlock_wrlock(&b->queue_lock);
	table_remove(b, q);
	pthread_rwlock_unlock(&b->queue_lock);
	if (q->durable) {
		pthread_mutex_lock(&b->catalog_lock);
		catalog_queue_delete(b->catalog, catalog_cstr(q->name));
		pthread_mutex_unlock(&b->catalog_lock);
	}
	queue_delete(q->q);
	q->q = NULL;
	update_counts(q);
	bqueue_release(q); /* the table's reference */
}

static void delete_on_owner(void *p)
{
	struct op *op = p;
	struct bqueue *q = op->q;
	if (!q->q) {
		op->status = -ERR_NOT_FOUND;
	} else if ((op->if_unused && q->consumers) ||
		   (op->if_empty && queue_ready_count(q->q) + queue_unacked_count(q->q) > 0)) {
		op->status = -ERR_INVALID;
	} else {
		op->n = queue_ready_count(q->q);
		delete_queue_on_owner(q);
	}
	op_finish(op);
}

int bqueue_delete(struct broker *b, struct slice name, bool if_unused, bool if_empty,
		  struct loop *reply, bqueue_done_fn done, void *arg)
{
	struct bqueue *q;
	int rc = bqueue_get(b, name, &q);
	if (rc)
		return rc;
	struct op *op = op_new(q, reply, done, arg);
	bqueue_release(q);
	if (!op)
		return -ERR_NOMEM;
	op->if_unused = if_unused;
	op->if_empty = if_empty;
	return op_post(op, delete_on_owner);
}

/* ---- start and stop (broker.c) ---- */

/* Exclusive queues found at start, deleted after the catalog walk. */
struct load_state {
	struct broker *b;
	char (*exclusive)[BQUEUE_NAME_MAX + 1];
	size_t n_exclusive, cap_exclusive;
};

static int load_queue(void *arg, const struct catalog_queue *cq)
{
	struct load_state *ls = arg;
	struct broker *b = ls->b;
	char name[BQUEUE_NAME_MAX + 1];
	if (cq->name.len > BQUEUE_NAME_MAX)
		return 0;
	memcpy(name, cq->name.data, cq->name.len);
	name[cq->name.len] = 0;
	if (cq->exclusive) {
		/* Its connection is gone with the old process: the queue goes too (as
		 * RabbitMQ), after the walk. */
		if (ls->n_exclusive == ls->cap_exclusive) {
			size_t cap = ls->cap_exclusive ? ls->cap_exclusive * 2 : 8;
			void *a = realloc(ls->exclusive, cap * sizeof *ls->exclusive);
			if (!a)
				return -ERR_NOMEM;
			ls->exclusive = a;
			ls->cap_exclusive = cap;
		}
		memcpy(ls->exclusive[ls->n_exclusive++], name, sizeof name);
		return 0;
	}
	struct bqueue_args args;
	bqueue_args_init(&args);
	if (b->qhooks.parse_args && cq->arguments.len > 0 &&
	    b->qhooks.parse_args(cq->arguments, &args) < 0) {
		diag_warn("queue", "durable queue '%s': stored arguments unreadable; loaded without them",
			  name);
		bqueue_args_init(&args);
	}
	if (!b->qhooks.parse_args)
		args.max_priority = QUEUE_PRIORITY_STORED; /* as dir/priority says */
	args.durable = true;
	args.exclusive = cq->exclusive;
	args.auto_delete = cq->auto_delete;
	struct bqueue *q;
	int rc = bq_open(b, name, &args, &q);
	if (!rc) {
		pthread_rwlock_wrlock(&b->queue_lock);
		rc = table_add(b, q);
		pthread_rwlock_unlock(&b->queue_lock);
		if (rc)
			bqueue_release(q);
	}
	if (rc)
		diag_error("queue", "cannot load durable queue '%s': %s", name, err_str(rc));
	return rc;
}

int bqueue_load_all(struct broker *b, const struct bqueue_hooks *hooks)
{
	if (hooks)
		b->qhooks = *hooks;
	struct load_state ls = { .b = b };
	int rc = catalog_queue_list(b->catalog, load_queue, &ls);
	for (size_t i = 0; !rc && i < ls.n_exclusive; i++) {
		const char *name = ls.exclusive[i];
		diag_info("queue", "deleting exclusive queue '%s': its connection ended with the "
			  "previous run", name);
		pthread_mutex_lock(&b->catalog_lock);
		int r = catalog_queue_delete(b->catalog, catalog_cstr(name));
		pthread_mutex_unlock(&b->catalog_lock);
		if (r)
			diag_warn("queue", "cannot delete exclusive queue '%s': %s", name, err_str(r));
		char dir[4400];
		queue_dir(b, name, true, dir, sizeof dir);
		log_remove_tree(dir);
		if (b->qhooks.deleted)
			b->qhooks.deleted(b->qhooks.ctx, name);
	}
	free(ls.exclusive);
	return rc;
}

void bqueue_hooks_clear(struct broker *b)
{
	memset(&b->qhooks, 0, sizeof b->qhooks);
}

/* ---- the per-loop tick: expiry of messages and of unused queues ---- */

static void tick_queue(struct bqueue *q, int64_t now)
{
	if (!q->q)
		return;
	if (q->next_expiry >= 0 && q->next_expiry <= now) {
		queue_expire(q->q, now, death_cb(q, 0), q);
		update_counts(q);
	}
	if (q->args.expires >= 0 && !q->consumers &&
	    now - atomic_load_explicit(&q->last_used, memory_order_relaxed) >= q->args.expires) {
		diag_info("queue", "deleting queue '%s': unused for %lld ms (x-expires)", q->name,
			  (long long)q->args.expires);
		delete_queue_on_owner(q);
		const struct bqueue_hooks *h = &q->b->qhooks;
		if (h->deleted)
			h->deleted(h->ctx, q->name);
	}
}

void bqueue_tick(struct broker *b, int64_t now)
{
	struct loop *self = loop_current();
	struct bqueue *small[64], **due = small;
	size_t n = 0, cap = 64;
	pthread_rwlock_rdlock(&b->queue_lock);
	for (size_t i = 0; i < b->n_queues; i++) {
		struct bqueue *q = b->queues[i];
		if (q->owner != self)
			continue;
		/* next_expiry is the owner's (this thread's); last_used is atomic. */
		bool expiry = q->next_expiry >= 0 && q->next_expiry <= now;
		bool unused = q->args.expires >= 0 &&
			      now - atomic_load_explicit(&q->last_used, memory_order_relaxed) >=
				      q->args.expires;
		if (!expiry && !unused)
			continue;
		if (n == cap) {
			struct bqueue **a = malloc(cap * 2 * sizeof *a);
			if (!a)
				break;
			memcpy(a, due, n * sizeof *a);
			if (due != small)
				free(due);
			due = a;
			cap *= 2;
		}
		due[n++] = bq_ref(q);
	}
	pthread_rwlock_unlock(&b->queue_lock);
	for (size_t i = 0; i < n; i++) {
		tick_queue(due[i], now);
		bqueue_release(due[i]);
	}
	if (due != small)
		free(due);
}

void bqueue_close_all(struct broker *b)
{
	for (size_t i = 0; i < b->n_queues; i++)
		bqueue_release(b->queues[i]);
	free(b->queues);
	b->queues = NULL;
	b->n_queues = 0;
}
