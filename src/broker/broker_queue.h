/*
 * broker_queue.h: AMQP queues across the loop threads.
 *
 * Each queue (broker/queue.h: a log plus delivery state) is owned by one loop
 * thread, chosen by hashing its name. Front ends on any loop call the
 * functions below; work runs on the owner and results come back as callbacks
 * on the loop the caller names (reply loop), never inside the call, exactly
 * as for Kafka partitions (broker.h).
 *
 *   channel loop A                     owner loop B                flusher
 *   bqueue_publish ────post──────────► queue_publish ──sync──────► fdatasync
 *        cb(status) ◄─────────────────────────post───────────────── done
 *   bqueue_consume ────post──────────► consumer list
 *        deliver(msg) ◄──post── queue_next (while the consumer has credit)
 *   bqueue_settle (ack / reject) ─post► queue_ack / queue_requeue, credit back
 *
 * Durable queues are recorded in the catalog and reopened at start;
 * non-durable ones live until deleted or the broker stops. A persistent
 * message in a durable queue is confirmed only when the flusher made it
 * durable (log.flush); transient messages and non-durable queues never wait
 * for an fsync.
 */
#ifndef SLUICE_BROKER_QUEUE_H
#define SLUICE_BROKER_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"
#include "broker/queue.h"
#include "core/reader.h"
#include "net/loop.h"

struct bqueue;

/* Longest queue name (AMQP shortstr). */
#define BQUEUE_NAME_MAX 255

struct bqueue_args {
	bool durable;
	bool exclusive;             /* the caller enforces the owning connection */
	bool auto_delete;           /* deleted when its last consumer cancels */
	struct queue_limits limits; /* x-max-length, x-max-length-bytes, x-overflow */
	int64_t message_ttl;        /* x-message-ttl in ms, -1 none */
	int64_t expires;            /* x-expires in ms (deleted once unused that long), -1 none */
	bool single_active;         /* x-single-active-consumer: one consumer at a time */
	bool has_dlx;               /* x-dead-letter-exchange given ("" is the default exchange) */
	bool has_dlx_key;           /* x-dead-letter-routing-key given */
	char dlx[BQUEUE_NAME_MAX + 1];     /* x-dead-letter-exchange */
	char dlx_key[BQUEUE_NAME_MAX + 1]; /* x-dead-letter-routing-key */
	int max_priority;           /* x-max-priority: 0 none, 1..255, or QUEUE_PRIORITY_STORED */
	struct slice arguments;     /* the encoded argument table, stored as is */
};

/* Sets the defaults: no limits, no TTL, no expiry, no dead-letter exchange. */
void bqueue_args_init(struct bqueue_args *a);

/* Why a message is dead-lettered (RabbitMQ's x-death reasons). */
enum bqueue_death {
	BQUEUE_DEATH_REJECTED, /* nack/reject without requeue */
	BQUEUE_DEATH_EXPIRED,  /* its TTL passed */
	BQUEUE_DEATH_MAXLEN,   /* dropped or refused by x-max-length(-bytes) */
};

/*
 * What the broker needs from the front end that owns the message format
 * (AMQP), set once before the queues are loaded (bqueue_load_all).
 */
struct bqueue_hooks {
	/* Fills a (already bqueue_args_init'ed) from a stored argument table, for
	 * durable queues reloaded at start. 0, or <0 when it cannot be read. */
	int (*parse_args)(struct slice table, struct bqueue_args *a);
	/* Dead-letters msg (moved: the callee frees msg->data) that died in
	 * queue (name) for why, to the queue's dead-letter exchange (args: dlx,
	 * dlx_key). Runs on the queue's owner loop; must not block. */
	void (*dead_letter)(void *ctx, const char *queue, const struct bqueue_args *args,
			    enum bqueue_death why, struct queue_msg *msg);
	/* The broker deleted queue (name) by itself (x-expires): the front end
	 * drops what it keeps about it (bindings). Any loop thread. */
	void (*deleted)(void *ctx, const char *queue);
	void *ctx;
};

/*
 * Sets the hooks (copied) and opens every durable queue of the catalog with
 * its stored arguments. Call once, before any client can reach a queue.
 */
int bqueue_load_all(struct broker *b, const struct bqueue_hooks *hooks);
/* Unsets the hooks (the front end is going away). */
void bqueue_hooks_clear(struct broker *b);

/*
 * Declares a queue: creates it (durable ones in the catalog), or with passive
 * only looks it up. An existing queue must be declared with equal durable /
 * exclusive / auto_delete flags (-ERR_INVALID otherwise: AMQP 406). Takes a
 * reference (bqueue_release). Any thread. Returns 0, -ERR_NOT_FOUND (passive),
 * -ERR_INVALID, or an error.
 */
int bqueue_declare(struct broker *b, struct slice name, const struct bqueue_args *args,
		   bool passive, struct bqueue **out, bool *created);
/* Looks a queue up and takes a reference. 0 or -ERR_NOT_FOUND. */
int bqueue_get(struct broker *b, struct slice name, struct bqueue **out);
/* Drops a reference. */
void bqueue_release(struct bqueue *q);
/* The queue's name (borrowed). */
const char *bqueue_name(const struct bqueue *q);
/* Whether the queue was declared durable. */
bool bqueue_durable(const struct bqueue *q);
/* The arguments it was declared with (immutable; arguments.data is NULL). */
void bqueue_args_get(const struct bqueue *q, struct bqueue_args *out);
/*
 * Marks the queue used now (a declare, consume, get): restarts x-expires.
 * Any thread.
 */
void bqueue_touch(struct bqueue *q);
/* Counts as of the last change on the owner (any thread; approximate). */
uint64_t bqueue_message_count(const struct bqueue *q);
uint32_t bqueue_consumer_count(const struct bqueue *q);

/* Result of an operation run on the owner: status 0, 1 (refused by overflow),
 * or a negative error; n is a count where the operation has one. */
typedef void (*bqueue_done_fn)(void *arg, int status, uint64_t n);

/*
 * Deletes a queue (removing its disk); if_unused / if_empty refuse with
 * -ERR_INVALID when it has consumers / messages. done(arg, status, messages)
 * runs on reply. Consumers get their cancelled callback.
 */
int bqueue_delete(struct broker *b, struct slice name, bool if_unused, bool if_empty,
		  struct loop *reply, bqueue_done_fn done, void *arg);
/* Removes every ready message; done(arg, 0, purged) on reply. */
int bqueue_purge(struct bqueue *q, struct loop *reply, bqueue_done_fn done, void *arg);

/*
 * Publishes one message: len bytes of one record batch (moved). persistent:
 * in a durable queue, done runs after the data is durable per log.flush.
 * ttl_ms: the message's own time to live (AMQP expiration), -1 for none; the
 * queue's x-message-ttl applies too, the shorter wins. done(arg, status,
 * offset) runs on reply (may be NULL). Status 1: refused by x-overflow
 * reject-publish.
 */
int bqueue_publish(struct bqueue *q, uint8_t *batch, size_t len, bool persistent, int64_t ttl_ms,
		   struct loop *reply, bqueue_done_fn done, void *arg);

/* A delivery to a consumer or a get: msg->data is owned by the callee. */
typedef void (*bqueue_deliver_fn)(void *arg, struct queue_msg *msg);
/* The consumer is gone (cancelled by the broker: queue deleted). */
typedef void (*bqueue_cancelled_fn)(void *arg);

/*
 * Starts a consumer: deliver(arg, msg) runs on reply for each message while
 * the consumer has credit (prefetch unacked messages; 0 = unlimited). no_ack
 * messages are acked as they leave. Consumers of the highest priority with
 * credit are served first, round robin among them (RabbitMQ's consumer
 * priorities; 0 is the default). Returns 0 and *id (for settle and cancel),
 * or an error.
 */
int bqueue_consume(struct bqueue *q, uint32_t prefetch, int32_t priority, bool no_ack,
		   struct loop *reply, bqueue_deliver_fn deliver, bqueue_cancelled_fn cancelled,
		   void *arg, uint64_t *id);
/* Changes consumer id's prefetch (0 = unlimited). Fire and forget. */
int bqueue_set_prefetch(struct bqueue *q, uint64_t id, uint32_t prefetch);
/*
 * Cancels consumer id; done(arg, 0, 0) runs on reply after any delivery
 * already posted to it, so the consumer's arg may be freed there.
 */
int bqueue_cancel(struct bqueue *q, uint64_t id, struct loop *reply, bqueue_done_fn done,
		  void *arg);

/* How a delivered message is settled. */
enum bqueue_settle {
	BQUEUE_ACK,      /* basic.ack */
	BQUEUE_REQUEUE,  /* nack/reject with requeue, or the channel closed */
	BQUEUE_DISCARD,  /* nack/reject without requeue (dead-lettered later) */
};
/*
 * Settles a delivered message by offset; consumer id (0 for basic.get) gets
 * its credit back. Fire and forget: errors are logged on the owner.
 */
int bqueue_settle(struct bqueue *q, uint64_t consumer_id, int64_t offset, enum bqueue_settle how);
/* Settles n delivered messages of one consumer the same way, in one hand-off. */
int bqueue_settle_many(struct bqueue *q, uint64_t consumer_id, const int64_t *offsets, size_t n,
		       enum bqueue_settle how);
/* Takes a reference (bqueue_release drops it). */
struct bqueue *bqueue_ref(struct bqueue *q);
/*
 * basic.get: deliver(arg, msg) on reply with a message, or with msg NULL when
 * the queue is empty; no_ack acks it at once. done counts the rest.
 */
int bqueue_fetch_one(struct bqueue *q, bool no_ack, struct loop *reply, bqueue_deliver_fn deliver,
		     void *arg);

#endif
