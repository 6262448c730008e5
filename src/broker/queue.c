/*
 * queue.c: a message queue on a log (see queue.h).
 *
 * In memory the queue keeps one small entry per stored message that is not
 * yet gone, in offset order, in a ring:
 *
 *   head                                                     tail
 *   [acked][unacked][ready][ready][unacked][ready] ...  [ready]
 *    ^ trimmed as soon as it is acked or dead: the ack floor
 *
 * Lookups by offset are binary searches (offsets increase along the ring).
 * `hint` is the ring index before which no entry is ready, so finding the next
 * ready message skips only entries still unacked. Entries cost 40 bytes each.
 * Message bytes are on disk; a newly published message also keeps a copy in
 * memory while the queue's cache holds less than QUEUE_CACHE_MAX bytes, so a
 * consumer that keeps up is served without reading the file back. A delivered
 * message hands its copy to the consumer; requeued or older ones are read back
 * (one pread). The copies are reported as MEM_QUEUE_CACHE (core/mem_account.h)
 * but not counted against the memory watermark: they are bounded per queue,
 * and shrink only when consumed, so counting them could block publishers for
 * good.
 */
#include "broker/queue.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/mem_account.h"
#include "core/writer.h"
#include "storage/ack_log.h"
#include "storage/record_batch.h"

enum entry_state { E_READY, E_UNACKED, E_ACKED, E_DEAD };

/* Bytes of message copies one queue keeps in memory (see above). */
#define QUEUE_CACHE_MAX (8u << 20)

struct entry {
	int64_t offset;
	uint8_t *cached;    /* owned copy of the stored batch while in the cache, else NULL */
	int64_t expires_at; /* wall-clock ms, -1 never */
	uint32_t size;
	uint32_t deliveries;
	uint8_t state;
};

struct queue {
	char dir[4096];
	bool durable;
	struct log *log;
	struct ack_log *acks;          /* durable queues only */
	struct entry *ring;            /* cap entries; [head, head + count) in use (mod cap) */
	size_t cap, head, count;
	size_t hint;                   /* relative index: no ready entry before it */
	uint64_t n_ready, ready_bytes, n_unacked;
	int64_t mark;                  /* persisted delivery mark */
	size_t cache_bytes;            /* bytes held by entries' cached copies */
	int64_t acks_since_rewrite;
	struct queue_limits lim;
};

static struct entry *at(const struct queue *q, size_t i)
{
	return &q->ring[(q->head + i) % q->cap];
}

/* Frees an entry's cached copy, if any. */
static void uncache(struct queue *q, struct entry *e)
{
	if (!e->cached)
		return;
	free(e->cached);
	e->cached = NULL;
	q->cache_bytes -= e->size;
	mem_account_add(MEM_QUEUE_CACHE, -(int64_t)e->size);
}

static int ring_push(struct queue *q, struct entry e)
{
	if (q->count == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct entry *r = malloc(cap * sizeof *r);
		if (!r)
			return -ERR_NOMEM;
		for (size_t i = 0; i < q->count; i++)
			r[i] = *at(q, i);
		free(q->ring);
		q->ring = r;
		q->cap = cap;
		q->head = 0;
	}
	*at(q, q->count++) = e;
	return 0;
}

/* Relative index of offset, or -1. */
static ssize_t find(const struct queue *q, int64_t offset)
{
	size_t lo = 0, hi = q->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int64_t o = at(q, mid)->offset;
		if (o == offset)
			return (ssize_t)mid;
		if (o < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static int collect_ack(const int64_t *acks, size_t n, int64_t offset)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (acks[mid] == offset)
			return 1;
		if (acks[mid] < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/*
 * Drops acked and dead entries from the head, then frees whole segments below
 * the new floor and, when the ack file has grown, rewrites it.
 */
static void trim(struct queue *q)
{
	bool moved = false;
	while (q->count > 0 && at(q, 0)->state >= E_ACKED) {
		q->head = (q->head + 1) % q->cap;
		q->count--;
		if (q->hint > 0)
			q->hint--;
		moved = true;
	}
	if (!moved)
		return;
	int64_t floor = q->count ? at(q, 0)->offset : log_end_offset(q->log);
	/* Sealed segments only: deleting the active one when a consumer keeps up
	 * would create and delete a segment file per message. */
	if (floor >= log_end_offset(q->log))
		floor = log_end_offset(q->log) - 1;
	int deleted = 0;
	int rc = log_delete_before(q->log, floor, &deleted);
	if (rc)
		diag_warn("queue", "%s: freeing acked segments: %s", q->dir, err_str(rc));
	if (!q->acks || q->acks_since_rewrite < 4096)
		return;
	/* Rewrite the ack file with the acks still above the floor. */
	size_t n = 0;
	for (size_t i = 0; i < q->count; i++)
		n += at(q, i)->state == E_ACKED;
	int64_t *list = malloc((n ? n : 1) * sizeof *list);
	if (!list)
		return;
	n = 0;
	for (size_t i = 0; i < q->count; i++)
		if (at(q, i)->state == E_ACKED)
			list[n++] = at(q, i)->offset;
	if (ack_log_rewrite(q->acks, list, n, q->mark) == 0)
		q->acks_since_rewrite = 0;
	free(list);
}

/* State while recovering: acks read from the file (sorted afterwards). */
struct recovery {
	int64_t *acks;
	size_t n, cap;
	int err;
};

static void recover_ack(void *arg, int64_t offset)
{
	struct recovery *rv = arg;
	if (rv->n == rv->cap) {
		size_t cap = rv->cap ? rv->cap * 2 : 256;
		int64_t *a = realloc(rv->acks, cap * sizeof *a);
		if (!a) {
			rv->err = -ERR_NOMEM;
			return;
		}
		rv->acks = a;
		rv->cap = cap;
	}
	rv->acks[rv->n++] = offset;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Rebuilds the entries from the log: every batch not acked is ready again. */
static int rebuild(struct queue *q, const struct recovery *rv)
{
	int64_t off = log_start_offset(q->log), end = log_end_offset(q->log);
	struct writer w;
	writer_init(&w, 256u << 20);
	int rc = 0;
	while (off < end && !rc) {
		struct log_read_result rr;
		writer_reset(&w);
		rc = log_read_copy(q->log, off, 1 << 20, &w, &rr);
		if (rc || rr.length == 0)
			break;
		struct record_batch_walk walk;
		struct record_batch_header h;
		struct slice b;
		size_t pos;
		record_batch_walk_init(&walk, w.buf, w.len, w.len, 0);
		while (record_batch_walk_next(&walk, &h, &b, &pos) == 1) {
			if (h.base_offset < off)
				continue;
			bool acked = collect_ack(rv->acks, rv->n, h.base_offset);
			struct entry e = { .offset = h.base_offset, .expires_at = -1,
					   .size = (uint32_t)b.len,
					   .deliveries = h.base_offset < q->mark ? 1 : 0,
					   .state = acked ? E_ACKED : E_READY };
			if ((rc = ring_push(q, e)))
				break;
			if (!acked) {
				q->n_ready++;
				q->ready_bytes += b.len;
			}
		}
		off = rr.next_offset;
	}
	writer_fini(&w);
	return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) ? -errno : 0;
}

int queue_open(const char *dir, bool durable, const struct log_config *cfg, struct queue **out)
{
	struct queue *q = calloc(1, sizeof *q);
	if (!q)
		return -ERR_NOMEM;
	snprintf(q->dir, sizeof q->dir, "%s", dir);
	q->durable = durable;
	q->lim = (struct queue_limits){ -1, -1, QUEUE_OVERFLOW_DROP_HEAD };
	q->mark = -1;
	if (!durable)
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); /* transient: start empty */
	struct recovery rv = { 0 };
	char logdir[4200];
	snprintf(logdir, sizeof logdir, "%s/log", dir);
	int rc = mkdir(dir, 0755) && errno != EEXIST ? -errno : 0;
	if (!rc)
		rc = log_open(logdir, cfg, clock_now_ms(), &q->log);
	if (!rc && durable) {
		char path[4200];
		snprintf(path, sizeof path, "%s/acks", dir);
		rc = ack_log_open(path, recover_ack, &rv, &q->mark, &q->acks);
		if (!rc)
			rc = rv.err;
	}
	if (!rc) {
		if (rv.n)
			qsort(rv.acks, rv.n, sizeof *rv.acks, cmp_i64);
		rc = rebuild(q, &rv);
	}
	free(rv.acks);
	if (rc) {
		diag_error("queue", "cannot open queue in %s: %s", dir, err_str(rc));
		queue_close(q);
		return rc;
	}
	trim(q);
	*out = q;
	return 0;
}

void queue_close(struct queue *q)
{
	if (!q)
		return;
	if (q->acks)
		ack_log_close(q->acks);
	if (q->log) {
		int rc = log_close(q->log);
		if (rc)
			diag_error("queue", "closing %s: %s", q->dir, err_str(rc));
	}
	for (size_t i = 0; q->ring && i < q->count; i++)
		uncache(q, at(q, i));
	free(q->ring);
	free(q);
}

void queue_delete(struct queue *q)
{
	if (q->acks)
		ack_log_close(q->acks);
	q->acks = NULL;
	char path[4200];
	snprintf(path, sizeof path, "%s/acks", q->dir);
	unlink(path);
	int rc = log_delete(q->log);
	if (rc)
		diag_warn("queue", "deleting %s: %s", q->dir, err_str(rc));
	q->log = NULL;
	rmdir(q->dir);
	queue_close(q);
}

void queue_set_limits(struct queue *q, const struct queue_limits *lim)
{
	q->lim = *lim;
}

/* Reads the stored batch of entry e into msg (owned data). */
static int load(struct queue *q, struct entry *e, struct queue_msg *msg)
{
	if (e->cached) {
		/* The copy moves to the receiver. */
		msg->offset = e->offset;
		msg->data = e->cached;
		msg->len = e->size;
		msg->redelivered = e->deliveries > 0;
		msg->delivery_count = e->deliveries;
		e->cached = NULL;
		q->cache_bytes -= e->size;
		mem_account_add(MEM_QUEUE_CACHE, -(int64_t)e->size);
		return 0;
	}
	struct writer w;
	writer_init(&w, (size_t)e->size + 64);
	struct log_read_result rr;
	int rc = log_read_copy(q->log, e->offset, 1, &w, &rr);
	if (!rc && (rr.length <= 0 || rr.first_offset != e->offset))
		rc = -ERR_CORRUPT;
	if (rc) {
		writer_fini(&w);
		return rc;
	}
	msg->offset = e->offset;
	msg->data = writer_take(&w, &msg->len);
	msg->redelivered = e->deliveries > 0;
	msg->delivery_count = e->deliveries;
	return 0;
}

/* Marks a ready entry dead (dropped/expired/purged), handing its bytes to cb. */
static void kill_entry(struct queue *q, struct entry *e,
		       void (*cb)(void *arg, struct queue_msg *msg), void *arg)
{
	if (cb) {
		struct queue_msg m;
		if (load(q, e, &m) == 0)
			cb(arg, &m);
	}
	uncache(q, e);
	e->state = E_DEAD;
	q->n_ready--;
	q->ready_bytes -= e->size;
	if (q->acks)
		ack_log_ack(q->acks, e->offset); /* gone for good: never redeliver */
	q->acks_since_rewrite++;
}

/* The first ready entry from the hint on, or NULL; moves the hint. */
static struct entry *first_ready(struct queue *q, size_t *idx)
{
	while (q->hint < q->count && at(q, q->hint)->state != E_READY)
		q->hint++;
	if (q->hint == q->count)
		return NULL;
	*idx = q->hint;
	return at(q, q->hint);
}

int queue_publish(struct queue *q, uint8_t *batch, size_t len, int64_t expires_at,
		  int64_t now_ms, int64_t *offset, struct flusher_file **file,
		  void (*dropped)(void *arg, struct queue_msg *msg), void *arg)
{
	bool over_len = q->lim.max_length >= 0 && q->n_ready + 1 > (uint64_t)q->lim.max_length;
	bool over_bytes = q->lim.max_length_bytes >= 0 &&
			  q->ready_bytes + len > (uint64_t)q->lim.max_length_bytes;
	if ((over_len || over_bytes) && q->lim.overflow != QUEUE_OVERFLOW_DROP_HEAD)
		return 1;
	struct log_append_result r;
	int rc = log_append(q->log, batch, len, now_ms, 0, &r);
	if (rc)
		return rc;
	struct entry e = { .offset = r.base_offset, .expires_at = expires_at, .size = (uint32_t)len,
			   .state = E_READY };
	if (q->cache_bytes + len <= QUEUE_CACHE_MAX && (e.cached = malloc(len)) != NULL) {
		memcpy(e.cached, batch, len); /* with its offset already rewritten */
		q->cache_bytes += len;
		mem_account_add(MEM_QUEUE_CACHE, (int64_t)len);
	}
	rc = ring_push(q, e);
	if (rc) {
		if (e.cached) {
			free(e.cached);
			q->cache_bytes -= len;
			mem_account_add(MEM_QUEUE_CACHE, -(int64_t)len);
		}
		return rc;
	}
	q->n_ready++;
	q->ready_bytes += len;
	*offset = r.base_offset;
	*file = r.file;
	/* drop-head: the oldest ready messages make room (RabbitMQ's default). */
	size_t idx;
	struct entry *head;
	while (((q->lim.max_length >= 0 && q->n_ready > (uint64_t)q->lim.max_length) ||
		(q->lim.max_length_bytes >= 0 && q->ready_bytes > (uint64_t)q->lim.max_length_bytes)) &&
	       (head = first_ready(q, &idx)) != NULL)
		kill_entry(q, head, dropped, arg);
	trim(q);
	return 0;
}

int queue_next(struct queue *q, int64_t now_ms, struct queue_msg *msg,
	       void (*expired)(void *arg, struct queue_msg *msg), void *arg)
{
	size_t idx;
	struct entry *e;
	while ((e = first_ready(q, &idx)) != NULL) {
		if (e->expires_at >= 0 && e->expires_at <= now_ms) {
			kill_entry(q, e, expired, arg);
			continue;
		}
		int rc = load(q, e, msg);
		if (rc)
			return rc;
		e->state = E_UNACKED;
		e->deliveries++;
		msg->delivery_count = e->deliveries;
		q->n_ready--;
		q->ready_bytes -= e->size;
		q->n_unacked++;
		if (q->acks && e->offset >= q->mark) {
			/* Persisted before the message leaves, so a restart flags exactly
			 * the messages that may have reached a consumer as redelivered. */
			q->mark = e->offset + 1;
			ack_log_mark(q->acks, q->mark);
		}
		trim(q);
		return 1;
	}
	trim(q);
	return 0;
}

int queue_ack(struct queue *q, int64_t offset)
{
	ssize_t i = find(q, offset);
	if (i < 0 || at(q, (size_t)i)->state != E_UNACKED)
		return -ERR_NOT_FOUND;
	at(q, (size_t)i)->state = E_ACKED;
	q->n_unacked--;
	if (q->acks) {
		int rc = ack_log_ack(q->acks, offset);
		if (rc)
			diag_error("queue", "%s: recording an ack: %s", q->dir, err_str(rc));
	}
	q->acks_since_rewrite++;
	trim(q);
	return 0;
}

int queue_requeue(struct queue *q, int64_t offset)
{
	ssize_t i = find(q, offset);
	if (i < 0 || at(q, (size_t)i)->state != E_UNACKED)
		return -ERR_NOT_FOUND;
	struct entry *e = at(q, (size_t)i);
	e->state = E_READY;
	q->n_unacked--;
	q->n_ready++;
	q->ready_bytes += e->size;
	if ((size_t)i < q->hint)
		q->hint = (size_t)i;
	return 0;
}

uint64_t queue_purge(struct queue *q)
{
	uint64_t n = 0;
	for (size_t i = q->hint; i < q->count; i++) {
		struct entry *e = at(q, i);
		if (e->state == E_READY) {
			kill_entry(q, e, NULL, NULL);
			n++;
		}
	}
	trim(q);
	return n;
}

uint64_t queue_ready_count(const struct queue *q)
{
	return q->n_ready;
}

uint64_t queue_ready_bytes(const struct queue *q)
{
	return q->ready_bytes;
}

uint64_t queue_unacked_count(const struct queue *q)
{
	return q->n_unacked;
}

int64_t queue_disk_bytes(const struct queue *q)
{
	return log_size_bytes(q->log);
}
