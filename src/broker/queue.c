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
 * (one pread).
 *
 * Priority queues (x-max-priority = P > 0) keep the same ring, so acks,
 * requeues, trimming and segment deletion work as above, and add one small
 * index per priority level: a ring of entry numbers (an entry's number is its
 * ring index plus `base`, the count of entries trimmed so far, so it never
 * changes while the entry lives), ascending, with that level's own hint and
 * ready count, and a 256-bit mask of the levels that have ready entries:
 *
 *   ring     [0:p1][1:p9][2:p1][3:p9][4:p0][5:p9] ...
 *   level 9  [1][3][5]      hint ─► first entry of level 9 that may be ready
 *   level 1  [0][2]
 *   level 0  [4]            ready_mask: bits 0, 1, 9
 *
 * The next message is the first ready entry of the highest level set in the
 * mask (a find-last-set over four words), found from that level's hint, which
 * skips only entries of the same level that are no longer ready; so choosing costs
 * O(1) plus the same amortised skipping as a plain queue, never a walk over
 * the other levels. A message's level is min(its priority, P), the priority
 * read from the record header QUEUE_PRIORITY_HEADER at publish and rebuild.
 * Trimming pops the front of the trimmed entry's level (same order); a
 * requeue lowers its level's hint to the entry (binary search). A plain queue
 * has no levels and pays one predictable branch per state change.
 *
 * Drop-head (x-max-length) drops what would be delivered next, i.e. the
 * oldest message of the highest priority, as RabbitMQ 3.10 does
 * (rabbit_priority_queue:drop/2 walks the priorities from the highest).
 * Expired messages are dropped when they reach the front of their level's
 * turn, like RabbitMQ's per-priority dropwhile.
 *
 * Cached copies are reported as MEM_QUEUE_CACHE (core/mem_account.h) but not
 * counted against the memory watermark: they are bounded per queue, and
 * shrink only when consumed, so counting them could block publishers for good.
 */
#include "broker/queue.h"

#include <errno.h>
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
#include "core/reader.h"
#include "core/writer.h"
#include "storage/ack_log.h"
#include "storage/log.h"
#include "storage/record_batch.h"

enum entry_state { E_READY, E_UNACKED, E_ACKED, E_DEAD };

/* Bytes of message copies one queue keeps in memory (see above). */
#define QUEUE_CACHE_MAX (8u << 20)
/* Appends buffered in memory before one write (queue_flush writes sooner). */
#define QUEUE_WRITE_BUFFER (64u << 10)
/* Bytes read from the log at once for messages not in the cache. */
#define QUEUE_READAHEAD_BYTES (256u << 10)

struct entry {
	int64_t offset;
	uint8_t *cached;    /* owned copy of the stored batch while in the cache, else NULL */
	int64_t expires_at; /* wall-clock ms, -1 never */
	uint32_t size;
	uint32_t deliveries;
	uint8_t state;
	uint8_t prio;       /* level in a priority queue (<= max_priority), else 0 */
};

/* One priority level's index (priority queues only; see the top comment). */
struct level {
	uint64_t *seq;       /* cap numbers; [head, head + count) in use (mod cap), ascending */
	size_t cap, head, count;
	size_t hint;         /* relative index: no ready entry of this level before it */
	uint64_t n_ready;
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
	int64_t message_ttl;           /* x-message-ttl for recovered messages, -1 none */
	/* Read-ahead: a copy of the log's batches [ra_first, ra_next), so messages
	 * that fell out of the cache are not read back one pread each. */
	struct writer ra;
	bool ra_init;
	int64_t ra_first, ra_next;
	size_t ra_pos;                 /* where the last lookup ended (sequential reads) */
	/* Priority queues only (levels NULL otherwise). */
	unsigned max_priority;         /* x-max-priority */
	struct level *levels;          /* max_priority + 1, owned */
	uint64_t base;                 /* number of the entry at ring index 0 */
	uint64_t ready_mask[4];        /* bit p: levels[p].n_ready > 0 */
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

static void ra_release(struct queue *q);
/* ---- priority levels ---- */

static uint64_t level_at(const struct level *l, size_t i)
{
	return l->seq[(l->head + i) % l->cap];
}

static int level_push(struct level *l, uint64_t seq)
{
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		uint64_t *r = malloc(cap * sizeof *r);
		if (!r)
			return -ERR_NOMEM;
		for (size_t i = 0; i < l->count; i++)
			r[i] = level_at(l, i);
		free(l->seq);
		l->seq = r;
		l->cap = cap;
		l->head = 0;
	}
	l->seq[(l->head + l->count++) % l->cap] = seq;
	return 0;
}

/* Relative index of entry number seq in level l (it must be there). */
static size_t level_find(const struct level *l, uint64_t seq)
{
	size_t lo = 0, hi = l->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (level_at(l, mid) < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The highest level with a ready entry, or -1. */
static int top_level(const struct queue *q)
{
	for (int w = 3; w >= 0; w--)
		if (q->ready_mask[w])
			return w * 64 + 63 - __builtin_clzll(q->ready_mask[w]);
	return -1;
}

/* Counts entry e as ready (again). */
static void ready_add(struct queue *q, const struct entry *e)
{
	q->n_ready++;
	q->ready_bytes += e->size;
	if (q->levels && q->levels[e->prio].n_ready++ == 0)
		q->ready_mask[e->prio / 64] |= 1ull << (e->prio % 64);
}

/* Counts entry e as no longer ready. */
static void ready_sub(struct queue *q, const struct entry *e)
{
	q->n_ready--;
	q->ready_bytes -= e->size;
	if (q->levels && --q->levels[e->prio].n_ready == 0)
		q->ready_mask[e->prio / 64] &= ~(1ull << (e->prio % 64));
}

/* The value of record header key in a stored one-record batch: 1 with *out, 0
 * without it (or when the batch cannot be read). */
static int batch_header(const uint8_t *batch, size_t len, const char *key, struct slice *out)
{
	struct record_batch_iter it;
	struct record_batch_record rec;
	struct record_batch_kv kv;
	if (record_batch_iter_init(&it, batch, len) || record_batch_iter_next(&it, &rec) != 1)
		return 0;
	const size_t klen = strlen(key);
	while (record_batch_header_next(&rec, &kv) == 1) {
		if (kv.key.len == klen && memcmp(kv.key.data, key, klen) == 0 && kv.value.data) {
			*out = kv.value;
			return 1;
		}
	}
	return 0;
}

/*
 * The priority stored in a batch's QUEUE_PRIORITY_HEADER (0 without one, or
 * when the batch cannot be read), capped at the queue's max.
 */
static uint8_t batch_priority(const struct queue *q, const uint8_t *batch, size_t len)
{
	struct slice v;
	unsigned p = batch_header(batch, len, QUEUE_PRIORITY_HEADER, &v) && v.len == 1 ? v.data[0] : 0;
	return (uint8_t)(p < q->max_priority ? p : q->max_priority);
}

/* A stored message's own time to live (QUEUE_TTL_HEADER), or -1. */
static int64_t batch_ttl(const uint8_t *batch, size_t len)
{
	struct slice v;
	if (!batch_header(batch, len, QUEUE_TTL_HEADER, &v) || v.len != 8)
		return -1;
	struct reader r;
	reader_init(&r, v.data, v.len);
	int64_t ttl = reader_i64(&r);
	return ttl >= 0 ? ttl : -1;
}

/* ---- the ring ---- */

static int ring_push(struct queue *q, struct entry e)
{
	if (q->levels) {
		/* The level first: on failure nothing has changed. */
		int rc = level_push(&q->levels[e.prio], q->base + q->count);
		if (rc)
			return rc;
	}
	if (q->count == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct entry *r = malloc(cap * sizeof *r);
		if (!r) {
			if (q->levels)
				q->levels[e.prio].count--; /* undo the push above */
			return -ERR_NOMEM;
		}
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
		if (q->levels) {
			/* The entry is also the front of its level (same order). */
			struct level *l = &q->levels[at(q, 0)->prio];
			l->head = (l->head + 1) % l->cap;
			l->count--;
			if (l->hint > 0)
				l->hint--;
			q->base++;
		}
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
	/* Rewrite the ack file with the acks still above the floor; dead
	 * (dropped, expired, purged) messages are recorded as acks too. */
	size_t n = 0;
	for (size_t i = 0; i < q->count; i++)
		n += at(q, i)->state >= E_ACKED;
	int64_t *list = malloc((n ? n : 1) * sizeof *list);
	if (!list)
		return;
	n = 0;
	for (size_t i = 0; i < q->count; i++)
		if (at(q, i)->state >= E_ACKED)
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
			/* TTLs run from the publish time, across restarts: the
			 * queue's and the message's own, the shorter wins. */
			int64_t ttl = batch_ttl(b.data, b.len);
			if (q->message_ttl >= 0 && (ttl < 0 || q->message_ttl < ttl))
				ttl = q->message_ttl;
			int64_t exp = ttl >= 0 ? queue_expiry_at(h.base_timestamp, ttl) : -1;
			struct entry e = { .offset = h.base_offset, .expires_at = exp,
					   .size = (uint32_t)b.len,
					   .deliveries = h.base_offset < q->mark ? 1 : 0,
					   .state = acked ? E_ACKED : E_READY };
			if (q->levels && !acked)
				e.prio = batch_priority(q, b.data, b.len);
			if ((rc = ring_push(q, e)))
				break;
			if (!acked)
				ready_add(q, &e);
		}
		off = rr.next_offset;
	}
	writer_fini(&w);
	return rc;
}

/*
 * dir/priority: a durable priority queue's x-max-priority in decimal, written
 * once when the queue is created (format 1: one number and a newline; no file
 * is a plain queue), so a restart rebuilds the levels before reading any
 * message.
 */
static int priority_file_read(const char *dir, unsigned *out)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/priority", dir);
	*out = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	unsigned v;
	int n = fscanf(f, "%u", &v);
	fclose(f);
	if (n != 1 || v > QUEUE_PRIORITY_MAX)
		return -ERR_CORRUPT;
	*out = v;
	return 0;
}

/* Writes dir/priority (removes it for 0), durably: temp file, fsync, rename. */
static int priority_file_write(const char *dir, unsigned max)
{
	char path[4200], tmp[4300];
	snprintf(path, sizeof path, "%s/priority", dir);
	if (max == 0)
		return unlink(path) && errno != ENOENT ? -errno : 0;
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	int rc = fprintf(f, "%u\n", max) < 0 || fflush(f) || fsync(fileno(f)) ? -errno : 0;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* Sets up the priority levels for max (0: none). */
static int levels_init(struct queue *q, unsigned max)
{
	q->max_priority = max;
	if (max == 0)
		return 0;
	q->levels = calloc(max + 1, sizeof *q->levels);
	return q->levels ? 0 : -ERR_NOMEM;
}

int queue_open(const char *dir, bool durable, int max_priority, const struct log_config *cfg,
	       int64_t message_ttl, struct queue **out)
{
	if (max_priority < QUEUE_PRIORITY_STORED || max_priority > QUEUE_PRIORITY_MAX)
		return -ERR_INVALID;
	struct queue *q = calloc(1, sizeof *q);
	if (!q)
		return -ERR_NOMEM;
	snprintf(q->dir, sizeof q->dir, "%s", dir);
	q->durable = durable;
	q->message_ttl = message_ttl;
	q->lim = (struct queue_limits){ -1, -1, QUEUE_OVERFLOW_DROP_HEAD };
	q->mark = -1;
	if (!durable)
		log_remove_tree(dir); /* transient: start empty */
	struct recovery rv = { 0 };
	char logdir[4200];
	snprintf(logdir, sizeof logdir, "%s/log", dir);
	int rc = mkdir(dir, 0755) && errno != EEXIST ? -errno : 0;
	unsigned max = max_priority > 0 ? (unsigned)max_priority : 0;
	if (!rc && max_priority == QUEUE_PRIORITY_STORED)
		rc = durable ? priority_file_read(dir, &max) : 0;
	else if (!rc && durable)
		rc = priority_file_write(dir, max);
	if (!rc)
		rc = levels_init(q, max);
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
	log_set_write_buffer(q->log, QUEUE_WRITE_BUFFER);
	*out = q;
	return 0;
}

int queue_flush(struct queue *q)
{
	int rc = log_flush_buffer(q->log);
	if (q->acks) {
		int r2 = ack_log_flush(q->acks);
		if (!rc)
			rc = r2;
	}
	return rc;
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
	ra_release(q);
	free(q->ring);
	for (unsigned p = 0; q->levels && p <= q->max_priority; p++)
		free(q->levels[p].seq);
	free(q->levels);
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
	snprintf(path, sizeof path, "%s/priority", q->dir);
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

/* Finds the batch at offset in the read-ahead copy: 1 with *b, 0 if absent. */
static int ra_find(struct queue *q, int64_t offset, struct slice *b)
{
	if (!q->ra_init || offset < q->ra_first || offset >= q->ra_next)
		return 0;
	for (int pass = 0; pass < 2; pass++) {
		size_t start = pass == 0 ? q->ra_pos : 0;
		if (start >= q->ra.len)
			continue;
		struct record_batch_walk walk;
		struct record_batch_header h;
		size_t pos;
		record_batch_walk_init(&walk, q->ra.buf + start, q->ra.len - start,
				       q->ra.len - start, 0);
		while (record_batch_walk_next(&walk, &h, b, &pos) == 1) {
			if (h.base_offset == offset) {
				q->ra_pos = start + pos + b->len;
				return 1;
			}
			if (h.base_offset > offset)
				break;
		}
	}
	return 0;
}

/* Refills the read-ahead copy from offset on. */
static int ra_fill(struct queue *q, int64_t offset)
{
	if (!q->ra_init) {
		writer_init(&q->ra, 256u << 20); /* a limit, not an allocation: one whole batch always fits */
		q->ra_init = true;
	}
	writer_reset(&q->ra);
	q->ra_first = q->ra_next = -1;
	q->ra_pos = 0;
	struct log_read_result rr;
	int rc = log_read_copy(q->log, offset, QUEUE_READAHEAD_BYTES, &q->ra, &rr);
	if (rc)
		return rc;
	q->ra_first = rr.first_offset;
	q->ra_next = rr.next_offset;
	return 0;
}

/* Drops the read-ahead copy (the queue has nothing ready to read). */
static void ra_release(struct queue *q)
{
	if (q->ra_init) {
		writer_fini(&q->ra);
		q->ra_init = false;
	}
}

unsigned queue_max_priority(const struct queue *q)
{
	return q->max_priority;
}

/* Reads the stored batch of entry e into msg (owned data). */
static int load(struct queue *q, struct entry *e, struct queue_msg *msg)
{
	msg->offset = e->offset;
	msg->redelivered = e->deliveries > 0;
	msg->delivery_count = e->deliveries;
	if (e->cached) {
		/* The copy moves to the receiver. */
		msg->data = e->cached;
		msg->len = e->size;
		e->cached = NULL;
		q->cache_bytes -= e->size;
		mem_account_add(MEM_QUEUE_CACHE, -(int64_t)e->size);
		return 0;
	}
	struct slice b;
	int rc = 0;
	if (!ra_find(q, e->offset, &b)) {
		rc = ra_fill(q, e->offset);
		if (!rc && !ra_find(q, e->offset, &b))
			rc = -ERR_CORRUPT;
	}
	if (!rc && b.len != e->size)
		rc = -ERR_CORRUPT;
	if (rc)
		return rc;
	msg->data = malloc(b.len);
	if (!msg->data)
		return -ERR_NOMEM;
	memcpy(msg->data, b.data, b.len);
	msg->len = b.len;
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
	ready_sub(q, e);
	if (q->acks)
		ack_log_ack(q->acks, e->offset); /* gone for good: never redeliver */
	q->acks_since_rewrite++;
}

/*
 * The next ready entry to deliver, or NULL: the first from the hint on, or in
 * a priority queue the first of the highest ready level. Moves the hint.
 */
static struct entry *first_ready(struct queue *q)
{
	if (q->levels) {
		int p = top_level(q);
		if (p < 0)
			return NULL;
		struct level *l = &q->levels[p];
		/* n_ready > 0: the loop ends on a ready entry before l->count. */
		while (at(q, (size_t)(level_at(l, l->hint) - q->base))->state != E_READY)
			l->hint++;
		return at(q, (size_t)(level_at(l, l->hint) - q->base));
	}
	while (q->hint < q->count && at(q, q->hint)->state != E_READY)
		q->hint++;
	if (q->hint == q->count)
		return NULL;
	return at(q, q->hint);
}

int queue_publish(struct queue *q, uint8_t **batchp, size_t len, int64_t expires_at,
		  int64_t now_ms, int64_t *offset, struct flusher_file **file,
		  void (*dropped)(void *arg, struct queue_msg *msg), void *arg)
{
	uint8_t *batch = *batchp;
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
	if (q->levels)
		e.prio = batch_priority(q, batch, len);
	rc = ring_push(q, e);
	if (rc)
		return rc;
	if (q->cache_bytes + len <= QUEUE_CACHE_MAX) {
		/* The buffer itself (its offset already rewritten) becomes the cached
		 * copy: no copy, and it is freed by the thread that allocated it
		 * once delivered. */
		at(q, q->count - 1)->cached = batch;
		*batchp = NULL;
		q->cache_bytes += len;
		mem_account_add(MEM_QUEUE_CACHE, (int64_t)len);
	}
	ready_add(q, &e);
	*offset = r.base_offset;
	*file = r.file;
	/* drop-head: what would be delivered next makes room (RabbitMQ's default). */
	struct entry *head;
	while (((q->lim.max_length >= 0 && q->n_ready > (uint64_t)q->lim.max_length) ||
		(q->lim.max_length_bytes >= 0 && q->ready_bytes > (uint64_t)q->lim.max_length_bytes)) &&
	       (head = first_ready(q)) != NULL)
		kill_entry(q, head, dropped, arg);
	trim(q);
	return 0;
}

int queue_next(struct queue *q, int64_t now_ms, struct queue_msg *msg,
	       void (*expired)(void *arg, struct queue_msg *msg), void *arg)
{
	struct entry *e;
	while ((e = first_ready(q)) != NULL) {
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
		ready_sub(q, e);
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
	ra_release(q);
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
	ready_add(q, e);
	if ((size_t)i < q->hint)
		q->hint = (size_t)i;
	if (q->levels) {
		struct level *l = &q->levels[e->prio];
		size_t j = level_find(l, q->base + (size_t)i);
		if (j < l->hint)
			l->hint = j;
	}
	return 0;
}

int queue_discard(struct queue *q, int64_t offset, struct queue_msg *msg)
{
	ssize_t i = find(q, offset);
	if (i < 0 || at(q, (size_t)i)->state != E_UNACKED)
		return -ERR_NOT_FOUND;
	struct entry *e = at(q, (size_t)i);
	if (msg) {
		int rc = load(q, e, msg);
		if (rc) {
			diag_warn("queue", "%s: reading discarded offset %lld: %s", q->dir,
				  (long long)offset, err_str(rc));
			msg->data = NULL;
		}
	}
	return queue_ack(q, offset);
}

uint64_t queue_expire(struct queue *q, int64_t now_ms,
		      void (*expired)(void *arg, struct queue_msg *msg), void *arg)
{
	uint64_t n = 0;
	struct entry *e;
	while ((e = first_ready(q)) != NULL && e->expires_at >= 0 && e->expires_at <= now_ms) {
		kill_entry(q, e, expired, arg);
		n++;
	}
	if (n)
		trim(q);
	return n;
}

int64_t queue_head_expiry(struct queue *q)
{
	struct entry *e = first_ready(q);
	return e ? e->expires_at : -1;
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
