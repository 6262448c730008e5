/*
 * queue.h: a message queue (AMQP's) on a storage log, with delivery state.
 *
 * A queue is a log (storage/log.h) plus what the log cannot say by itself:
 * which stored messages are ready, which are delivered and waiting for an ack,
 * which are acked. Each message is one record batch, opaque to the queue (the
 * AMQP front end encodes routing key, properties and body into it); the queue
 * knows only its offset, size, the expiry time the caller gives and, in a
 * priority queue, the priority the front end wrote into the record header
 * QUEUE_PRIORITY_HEADER.
 *
 *   publish ──► log append ──► ready ──deliver──► unacked ──ack──► acked
 *                                ▲                   │
 *                                └──── requeue ──────┘ (nack/reject/close)
 *
 * Order: ready messages leave in offset order; a requeued message goes back
 * to its original place, so it is delivered again before younger ones
 * (RabbitMQ's behaviour), with redelivered set. A priority queue (RabbitMQ's
 * x-max-priority, max_priority > 0) delivers its highest priority first, in
 * that order within each priority.
 *
 * Durability (durable queues): the log holds the messages; acks are appended
 * to DIR/acks (8-byte offsets; the log is DIR/log) as they happen, so after kill -9 exactly the
 * unacked messages come back. Delivery marks in the same file let a restart
 * set redelivered on messages that had been delivered. Once every message of
 * a segment is acked the segment is deleted (log_delete_before) and the ack
 * file is rewritten without what lies below the ack floor. A durable priority
 * queue also keeps its maximum priority in DIR/priority, written at creation.
 *
 * Threads: a queue is owned by one thread; every call below comes from it (the
 * broker posts work to the owner, as for partitions). Not thread-safe itself.
 */
#ifndef SLUICE_QUEUE_H
#define SLUICE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/log.h"

struct queue;
struct flusher_file;

/*
 * When a message stamped at `from` (wall-clock ms) with a time to live of
 * ttl ms (>= 0) expires: their sum, saturated, since both may come from a
 * client (x-message-ttl, expiration) or from stored bytes.
 */
static inline int64_t queue_expiry_at(int64_t from, int64_t ttl)
{
	if (from > 0 && ttl > INT64_MAX - from)
		return INT64_MAX;
	if (from < 0 && from + ttl < 0)
		return 0; /* an absurd stamp: expired */
	return from + ttl;
}

/*
 * The record header holding a message's priority: a value of one byte
 * (0-255). Written by the front end (amqp_message.c) into the stored batch of
 * a message with a priority above 0, and read back by priority queues when
 * the message is published and when the queue is rebuilt at open, so the
 * queue never needs to understand the protocol's properties. No header: 0.
 */
#define QUEUE_PRIORITY_HEADER "x-priority"
/* Record header of a stored message with its own time to live: 8 bytes,
 * big-endian milliseconds from its timestamp (AMQP expiration), so a restart
 * expires it on time without parsing the front end's properties. */
#define QUEUE_TTL_HEADER "x-ttl"
/* Highest x-max-priority (RabbitMQ's MAX_SUPPORTED_PRIORITY). */
#define QUEUE_PRIORITY_MAX 255
/* queue_open's max_priority for "as the queue was created" (reopening at start). */
#define QUEUE_PRIORITY_STORED (-1)

/* What to do when a publish would pass max_length / max_length_bytes. */
enum queue_overflow {
	QUEUE_OVERFLOW_DROP_HEAD,         /* drop (or dead-letter) the oldest ready message */
	QUEUE_OVERFLOW_REJECT_PUBLISH,    /* refuse the new message (publisher gets a nack) */
	QUEUE_OVERFLOW_REJECT_PUBLISH_DLX,/* refuse it, and dead-letter it */
};

struct queue_limits {
	int64_t max_length;        /* ready messages; -1 no limit */
	int64_t max_length_bytes;  /* bytes of ready messages; -1 no limit */
	enum queue_overflow overflow;
};

/* One message leaving the queue (a delivery, a get, or a drop). */
struct queue_msg {
	int64_t offset;          /* its place in the log: the queue's handle for acks */
	uint8_t *data;           /* owned by the receiver: the stored record batch */
	size_t len;
	bool redelivered;        /* delivered before (and not acked) */
	uint32_t delivery_count; /* times delivered, this one included */
};

/*
 * Opens (creating) the queue stored in dir. durable: acks are logged and the
 * queue survives restarts; else the directory is wiped at open. max_priority:
 * 0 for a plain queue, 1..QUEUE_PRIORITY_MAX for a priority queue (kept in
 * dir/priority by a durable queue), or QUEUE_PRIORITY_STORED to reopen with
 * what dir/priority says (0 without one). Recovers messages, their
 * priorities and ack state; a recovered message expires message_ttl ms (-1:
 * never) after it was published. Returns 0 or a negative error (-ERR_INVALID
 * for a max_priority out of range).
 */
int queue_open(const char *dir, bool durable, int max_priority, const struct log_config *cfg,
	       int64_t message_ttl, struct queue **out);
/* The queue's max priority (0: not a priority queue). */
unsigned queue_max_priority(const struct queue *q);
/* Closes (syncing acks) and frees. */
void queue_close(struct queue *q);
/* Closes and removes everything on disk (queue.delete). */
void queue_delete(struct queue *q);
/*
 * Writes what the queue buffers in memory: appended messages (up to 64 KiB)
 * and ack-file entries. Call before acknowledging a publish that must
 * survive a process crash, before a delivery leaves (its delivery mark), and
 * at the end of each burst of work. 0 or a negative error.
 */
int queue_flush(struct queue *q);
/* Replaces the length limits. */
void queue_set_limits(struct queue *q, const struct queue_limits *lim);

/*
 * Appends one message (len bytes of one record batch at *batch, rewritten in
 * place with its offset). On success the queue may keep the buffer as its
 * in-memory copy and then sets *batch to NULL; otherwise (and on any other
 * return) the caller still owns it. expires_at: wall-clock ms after which it
 * is dead (-1 never). Returns 0 with *offset and the segment file for a
 * durability wait (borrowed, see log_append), 1 when the overflow policy
 * refused it (reject-publish), or a negative error. With drop-head, messages
 * dropped to make room are handed to dropped(arg, msg) (the receiver owns
 * msg->data) so the caller can dead-letter them; the dropped ones are those
 * queue_next would take first (in a priority queue: the oldest of the highest
 * priority, as RabbitMQ's rabbit_priority_queue:drop/2).
 */
int queue_publish(struct queue *q, uint8_t **batch, size_t len, int64_t expires_at,
		  int64_t now_ms, int64_t *offset, struct flusher_file **file,
		  void (*dropped)(void *arg, struct queue_msg *msg), void *arg);

/*
 * Takes the next ready, unexpired message into *msg (delivered, unacked): the
 * oldest ready one, or in a priority queue the oldest of the highest priority.
 * Expired messages met on the way are handed to expired(arg, msg) (may be NULL:
 * they are just dropped). Returns 1 with a message, 0 when none is ready, or a
 * negative error (a log read failed).
 */
int queue_next(struct queue *q, int64_t now_ms, struct queue_msg *msg,
	       void (*expired)(void *arg, struct queue_msg *msg), void *arg);
/* Acks one delivered message. 0, or -ERR_NOT_FOUND if it is not unacked. */
int queue_ack(struct queue *q, int64_t offset);
/* Puts a delivered message back in its place, ready again. 0 or -ERR_NOT_FOUND. */
int queue_requeue(struct queue *q, int64_t offset);
/*
 * Takes a delivered message out for good (nack/reject without requeue), as an
 * ack does; with msg not NULL its bytes go there first (owned; data NULL if
 * they could not be read) so the caller can dead-letter it. 0 or
 * -ERR_NOT_FOUND if it is not unacked.
 */
int queue_discard(struct queue *q, int64_t offset, struct queue_msg *msg);
/*
 * Kills the expired ready messages at the head of the queue (as RabbitMQ,
 * only from the head: one behind a longer-lived message waits for it),
 * handing each to expired(arg, msg) (may be NULL). Returns how many.
 */
uint64_t queue_expire(struct queue *q, int64_t now_ms,
		      void (*expired)(void *arg, struct queue_msg *msg), void *arg);
/* When the first ready message expires (wall-clock ms), or -1. */
int64_t queue_head_expiry(struct queue *q);
/* Removes every ready message; returns how many. Unacked ones stay. */
uint64_t queue_purge(struct queue *q);

/* Ready messages (not delivered, not expired-and-dropped yet). */
uint64_t queue_ready_count(const struct queue *q);
/* Bytes of ready messages. */
uint64_t queue_ready_bytes(const struct queue *q);
/* Delivered, not yet acked. */
uint64_t queue_unacked_count(const struct queue *q);
/* Bytes of the log on disk. */
int64_t queue_disk_bytes(const struct queue *q);

#endif
