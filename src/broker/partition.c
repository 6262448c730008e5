/*
 * partition.c: work on one partition's log, run on the partition's owner loop.
 *
 * Each public call allocates an operation, posts it to the owner loop, which
 * runs the log call, then posts the operation back to the reply loop where the
 * caller's callback runs. An operation holds a topic reference the whole way,
 * so deletion of the topic never frees memory an operation still points to.
 * If a post fails (the loops are stopping) the operation is dropped and freed:
 * the connection that asked is gone by then.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "storage/flusher.h"
#include "storage/record_batch.h"

/* Which loop owns partition i of a topic: a hash of (name, i) over the group. */
static struct loop *owner_for(struct topic *t, int32_t i)
{
	struct loop_group *g = t->broker->loops;
	uint64_t h = broker_hash(t->name, strlen(t->name));
	h += (uint64_t)i * 0x9E3779B97F4A7C15ull;
	h ^= h >> 29;
	return loop_group_get(g, (int)(h % (uint64_t)loop_group_size(g)));
}

int partition_open(struct topic *t, int32_t i, struct partition **out)
{
	struct partition *p = calloc(1, sizeof *p);
	if (!p)
		return -ERR_NOMEM;
	p->topic = t;
	p->index = i;
	p->owner = owner_for(t, i);
	char dir[4420];
	snprintf(dir, sizeof dir, "%s/%d", t->dir, i);
	int rc = log_open(dir, &t->log_cfg, clock_now_ms(), &p->log);
	if (rc) {
		diag_error("broker", "cannot open log %s: %s", dir, err_str(rc));
		free(p);
		return rc;
	}
	atomic_init(&p->high_watermark, log_end_offset(p->log));
	atomic_init(&p->log_start, log_start_offset(p->log));
	*out = p;
	return 0;
}

/* Posts every watch whose offset is below the high watermark (all, if gone). */
static void watches_fire(struct partition *p, bool all)
{
	int64_t hw = atomic_load(&p->high_watermark);
	struct partition_watch **pp = &p->watches;
	while (*pp) {
		struct partition_watch *w = *pp;
		if (all || w->offset < hw) {
			*pp = w->next;
			loop_post(w->reply, w->cb, w->arg);
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

static void delete_on_owner(void *arg)
{
	struct partition *p = arg;
	if (p->log) {
		int rc = log_delete(p->log);
		if (rc)
			diag_warn("broker", "deleting log of %s-%d: %s", p->topic->name, p->index,
				  err_str(rc));
		p->log = NULL;
	}
	watches_fire(p, true);
	topic_release(p->topic);
}

void partition_delete_async(struct partition *p)
{
	topic_ref(p->topic);
	if (loop_post(p->owner, delete_on_owner, p)) {
		/* Loops are stopping: nothing runs on the owner any more. */
		delete_on_owner(p);
	}
}

void partition_free(struct partition *p)
{
	if (p->log) {
		int rc = log_close(p->log);
		if (rc)
			diag_error("broker", "closing log of %s-%d: %s", p->topic->name, p->index,
				   err_str(rc));
	}
	while (p->watches) {
		struct partition_watch *w = p->watches;
		p->watches = w->next;
		free(w);
	}
	free(p->producers);
	free(p);
}

void partition_retention_run(struct partition *p, int64_t now_ms)
{
	if (!p->log)
		return;
	int deleted = 0;
	int rc = log_retention_apply(p->log, now_ms, &deleted);
	if (rc)
		diag_warn("broker", "retention on %s-%d: %s", p->topic->name, p->index, err_str(rc));
	if (deleted)
		diag_info("broker", "retention deleted %d segments of %s-%d", deleted, p->topic->name,
			  p->index);
	atomic_store(&p->log_start, log_start_offset(p->log));
}

int32_t partition_index(const struct partition *p)
{
	return p->index;
}

int64_t partition_high_watermark(const struct partition *p)
{
	return atomic_load(&((struct partition *)p)->high_watermark);
}

int64_t partition_log_start(const struct partition *p)
{
	return atomic_load(&((struct partition *)p)->log_start);
}

/* ---- idempotent producers ---- */

/* The state of producer_id, or a new (or evicted) slot; NULL on allocation failure. */
static struct producer_state *producer_find(struct partition *p, int64_t producer_id, bool create)
{
	struct producer_state *oldest = NULL;
	for (size_t i = 0; i < p->n_producers; i++) {
		struct producer_state *ps = &p->producers[i];
		if (ps->producer_id == producer_id) {
			ps->used = ++p->producer_clock;
			return ps;
		}
		if (!oldest || ps->used < oldest->used)
			oldest = ps;
	}
	if (!create)
		return NULL;
	struct producer_state *ps;
	if (p->n_producers < PRODUCERS_MAX) {
		struct producer_state *arr = realloc(p->producers, (p->n_producers + 1) * sizeof *arr);
		if (!arr)
			return NULL;
		p->producers = arr;
		ps = &arr[p->n_producers++];
	} else {
		ps = oldest;
	}
	memset(ps, 0, sizeof *ps);
	ps->producer_id = producer_id;
	ps->epoch = -1;
	ps->used = ++p->producer_clock;
	return ps;
}

static int32_t seq_add(int32_t seq, int32_t n)
{
	/* Sequences wrap from INT32_MAX to 0 (KIP-98). */
	return (int32_t)(((int64_t)seq + n) % ((int64_t)INT32_MAX + 1));
}

/*
 * Checks the sequence numbers of idempotent batches (producerId >= 0) before
 * an append (KIP-98). Returns 0 to append, 1 when the whole append is a retry
 * of a batch already stored (*dup_offset = its base offset), or -ERR_SEQUENCE /
 * -ERR_FENCED. State is only updated by producer_record after the append.
 */
static int producer_check(struct partition *p, const uint8_t *buf, size_t len, int64_t *dup_offset)
{
	struct record_batch_walk w;
	struct record_batch_header h;
	struct slice batch;
	size_t pos;
	record_batch_walk_init(&w, buf, len, len, 0);
	int n_batches = 0, rc = 0;
	while (record_batch_walk_next(&w, &h, &batch, &pos) == 1) {
		n_batches++;
		if (h.producer_id < 0 || h.base_sequence < 0)
			continue;
		struct producer_state *ps = producer_find(p, h.producer_id, false);
		if (!ps)
			continue; /* first batch seen from this producer: accepted as it comes */
		if (h.producer_epoch < ps->epoch)
			return -ERR_FENCED;
		if (h.producer_epoch > ps->epoch) {
			if (h.base_sequence != 0)
				return -ERR_SEQUENCE;
			continue;
		}
		int32_t last = seq_add(h.base_sequence, h.last_offset_delta);
		for (int i = 0; i < ps->n_recent; i++) {
			if (ps->recent[i].first_seq == h.base_sequence && ps->recent[i].last_seq == last) {
				if (n_batches == 1) {
					*dup_offset = ps->recent[i].base_offset;
					rc = 1;
				}
				break;
			}
		}
		if (rc == 1)
			continue;
		if (h.base_sequence != seq_add(ps->last_seq, 1))
			return -ERR_SEQUENCE;
	}
	return rc == 1 && n_batches == 1 ? 1 : 0;
}

/* Records the idempotent batches just appended (offsets already assigned in buf). */
static void producer_record(struct partition *p, const uint8_t *buf, size_t len)
{
	struct record_batch_walk w;
	struct record_batch_header h;
	struct slice batch;
	size_t pos;
	record_batch_walk_init(&w, buf, len, len, 0);
	while (record_batch_walk_next(&w, &h, &batch, &pos) == 1) {
		if (h.producer_id < 0 || h.base_sequence < 0)
			continue;
		struct producer_state *ps = producer_find(p, h.producer_id, true);
		if (!ps)
			continue;
		if (h.producer_epoch != ps->epoch) {
			ps->epoch = h.producer_epoch;
			ps->n_recent = 0;
		}
		ps->last_seq = seq_add(h.base_sequence, h.last_offset_delta);
		if (ps->n_recent == PRODUCER_BATCHES) {
			memmove(&ps->recent[0], &ps->recent[1], sizeof ps->recent[0] * (PRODUCER_BATCHES - 1));
			ps->n_recent--;
		}
		ps->recent[ps->n_recent].first_seq = h.base_sequence;
		ps->recent[ps->n_recent].last_seq = ps->last_seq;
		ps->recent[ps->n_recent].base_offset = h.base_offset;
		ps->n_recent++;
	}
}

/* ---- append ---- */

struct append_op {
	struct partition *p;
	uint8_t *buf; /* owned until appended */
	size_t len;
	bool wait_durable;
	struct loop *reply;
	partition_append_cb cb;
	void *arg;
	struct partition_append_result res;
};

static void append_op_free(struct append_op *op)
{
	topic_release(op->p->topic);
	free(op->buf);
	free(op);
}

static void append_reply(void *arg)
{
	struct append_op *op = arg;
	op->cb(op->arg, &op->res);
	append_op_free(op);
}

/* Sends the result to the reply loop (any thread); drops it if nobody listens. */
static void append_finish(struct append_op *op)
{
	if (!op->cb || loop_post(op->reply, append_reply, op))
		append_op_free(op);
}

static void append_synced(void *arg, int status)
{
	struct append_op *op = arg;
	if (status) {
		op->res.err = status;
		diag_error("broker", "fsync of %s-%d failed: %s", op->p->topic->name, op->p->index,
			   err_str(status));
	}
	append_finish(op);
}

static void sync_unawaited(void *arg, int status)
{
	(void)arg;
	if (status)
		diag_error("broker", "fsync after an unawaited append failed: %s", err_str(status));
}

static void append_on_owner(void *arg)
{
	struct append_op *op = arg;
	struct partition *p = op->p;
	if (!p->log) {
		op->res.err = -ERR_NOT_FOUND;
		append_finish(op);
		return;
	}
	struct log_append_result r;
	int64_t dup_offset = -1;
	int rc = producer_check(p, op->buf, op->len, &dup_offset);
	if (rc == 1) {
		/* A retry of a stored batch: acknowledge it again, append nothing. */
		op->res.base_offset = dup_offset;
		op->res.log_start_offset = log_start_offset(p->log);
		append_finish(op);
		return;
	}
	if (!rc)
		rc = log_append(p->log, op->buf, op->len, clock_now_ms(), p->topic->log_append_time, &r);
	if (!rc)
		producer_record(p, op->buf, op->len);
	free(op->buf);
	op->buf = NULL;
	if (rc) {
		op->res.err = rc;
		append_finish(op);
		return;
	}
	op->res.base_offset = r.base_offset;
	op->res.log_append_time = r.log_append_time;
	op->res.log_start_offset = log_start_offset(p->log);
	atomic_store(&p->high_watermark, log_end_offset(p->log));
	watches_fire(p, false);
	struct flusher *fl = p->topic->broker->flusher;
	if (!op->wait_durable || !op->cb) {
		/* acks 0 and 1: still made durable per the policy, but nobody waits. */
		if (fl && flusher_policy(fl) == CONFIG_FLUSH_BATCH)
			(void)flusher_sync(fl, r.file, sync_unawaited, NULL);
		append_finish(op);
		return;
	}
	rc = flusher_sync(fl, r.file, append_synced, op);
	if (rc) {
		op->res.err = rc;
		append_finish(op);
	}
}

int partition_append(struct partition *p, uint8_t *batches, size_t len, bool wait_durable,
		     struct loop *reply_loop, partition_append_cb cb, void *arg)
{
	struct append_op *op = calloc(1, sizeof *op);
	if (!op) {
		free(batches);
		return -ERR_NOMEM;
	}
	*op = (struct append_op){ .p = p, .buf = batches, .len = len, .wait_durable = wait_durable,
				  .reply = reply_loop, .cb = cb, .arg = arg };
	op->res.log_append_time = -1;
	topic_ref(p->topic);
	int rc = loop_post(p->owner, append_on_owner, op);
	if (rc) {
		append_op_free(op);
		return rc;
	}
	return 0;
}

/* ---- read ---- */

struct read_op {
	struct partition *p;
	int64_t offset, max_bytes;
	struct loop *reply;
	partition_read_cb cb;
	void *arg;
	struct partition_read_result res;
};

void partition_read_result_release(struct partition_read_result *r)
{
	if (r->file)
		flusher_file_unref(r->file);
	r->file = NULL;
}

static void read_reply(void *arg)
{
	struct read_op *op = arg;
	op->cb(op->arg, &op->res);
	partition_read_result_release(&op->res);
	topic_release(op->p->topic);
	free(op);
}

static void read_on_owner(void *arg)
{
	struct read_op *op = arg;
	struct partition *p = op->p;
	if (!p->log) {
		op->res.err = -ERR_NOT_FOUND;
	} else {
		struct log_read_result r;
		op->res.err = log_read(p->log, op->offset, op->max_bytes, &r);
		if (!op->res.err) {
			op->res.file = r.file;
			op->res.position = r.position;
			op->res.length = r.length;
		}
		op->res.high_watermark = log_end_offset(p->log);
		op->res.log_start_offset = log_start_offset(p->log);
	}
	if (loop_post(op->reply, read_reply, op)) {
		partition_read_result_release(&op->res);
		topic_release(op->p->topic);
		free(op);
	}
}

int partition_read(struct partition *p, int64_t offset, int64_t max_bytes, struct loop *reply_loop,
		   partition_read_cb cb, void *arg)
{
	struct read_op *op = calloc(1, sizeof *op);
	if (!op)
		return -ERR_NOMEM;
	*op = (struct read_op){ .p = p, .offset = offset, .max_bytes = max_bytes,
				.reply = reply_loop, .cb = cb, .arg = arg };
	topic_ref(p->topic);
	int rc = loop_post(p->owner, read_on_owner, op);
	if (rc) {
		topic_release(p->topic);
		free(op);
	}
	return rc;
}

/* ---- list offsets ---- */

struct offset_op {
	struct partition *p;
	int64_t ts;
	struct loop *reply;
	partition_offset_cb cb;
	void *arg;
	int err;
	int64_t offset, timestamp;
};

static void offset_reply(void *arg)
{
	struct offset_op *op = arg;
	op->cb(op->arg, op->err, op->offset, op->timestamp);
	topic_release(op->p->topic);
	free(op);
}

/*
 * Kafka ListOffsets by time: the first record whose timestamp >= ts, and its
 * timestamp; offset -1 when there is none. The log finds the batch; inside an
 * uncompressed batch the records are looked at (a compressed batch answers its
 * base offset and max timestamp).
 */
static int offset_for_time(struct log *log, int64_t ts, int64_t *offset, int64_t *timestamp)
{
	int64_t base;
	int rc = log_offset_for_time(log, ts, &base);
	if (rc)
		return rc;
	*offset = -1;
	*timestamp = -1;
	if (base >= log_end_offset(log))
		return 0;
	struct writer w;
	writer_init(&w, 64u << 20);
	struct log_read_result rr;
	rc = log_read_copy(log, base, 1, &w, &rr);
	struct record_batch_iter it;
	struct record_batch_record rec;
	if (!rc && rr.length > 0 && record_batch_iter_init(&it, w.buf, w.len) == 0) {
		while (record_batch_iter_next(&it, &rec) == 1) {
			if (rec.offset >= base && rec.timestamp >= ts) {
				*offset = rec.offset;
				*timestamp = rec.timestamp;
				break;
			}
		}
	}
	if (!rc && *offset < 0 && rr.length > 0) {
		struct record_batch_header h;
		if (record_batch_header_parse(w.buf, w.len, w.len, &h) == 0) {
			*offset = h.base_offset;
			*timestamp = h.max_timestamp;
		}
	}
	writer_fini(&w);
	return rc;
}

static void offset_on_owner(void *arg)
{
	struct offset_op *op = arg;
	struct partition *p = op->p;
	op->timestamp = -1;
	if (!p->log)
		op->err = -ERR_NOT_FOUND;
	else if (op->ts == PARTITION_OFFSET_LATEST)
		op->offset = log_end_offset(p->log);
	else if (op->ts == PARTITION_OFFSET_EARLIEST)
		op->offset = log_start_offset(p->log);
	else if (op->ts < 0)
		op->err = -ERR_UNSUPPORTED;
	else
		op->err = offset_for_time(p->log, op->ts, &op->offset, &op->timestamp);
	if (loop_post(op->reply, offset_reply, op)) {
		topic_release(op->p->topic);
		free(op);
	}
}

int partition_list_offset(struct partition *p, int64_t ts, struct loop *reply_loop,
			  partition_offset_cb cb, void *arg)
{
	struct offset_op *op = calloc(1, sizeof *op);
	if (!op)
		return -ERR_NOMEM;
	*op = (struct offset_op){ .p = p, .ts = ts, .reply = reply_loop, .cb = cb, .arg = arg };
	topic_ref(p->topic);
	int rc = loop_post(p->owner, offset_on_owner, op);
	if (rc) {
		topic_release(p->topic);
		free(op);
	}
	return rc;
}

/* ---- long-poll watches ---- */

struct watch_op {
	struct partition *p;
	struct partition_watch *w; /* moved to the partition's list */
	uint64_t token;            /* for unwatch */
	partition_watch_cb done;
	void *arg;
	struct loop *reply;
};

static void watch_on_owner(void *arg)
{
	struct watch_op *op = arg;
	struct partition *p = op->p;
	struct partition_watch *w = op->w;
	if (!p->log || atomic_load(&p->high_watermark) > w->offset) {
		loop_post(w->reply, w->cb, w->arg);
		free(w);
	} else {
		w->next = p->watches;
		p->watches = w;
	}
	topic_release(p->topic);
	free(op);
}

int partition_watch(struct partition *p, int64_t offset, struct loop *reply_loop,
		    partition_watch_cb cb, void *arg, uint64_t *token)
{
	static _Atomic uint64_t next_token = 1;
	struct watch_op *op = calloc(1, sizeof *op);
	struct partition_watch *w = calloc(1, sizeof *w);
	if (!op || !w) {
		free(op);
		free(w);
		return -ERR_NOMEM;
	}
	*w = (struct partition_watch){ .token = atomic_fetch_add(&next_token, 1), .offset = offset,
				       .reply = reply_loop, .cb = cb, .arg = arg };
	op->p = p;
	op->w = w;
	*token = w->token;
	topic_ref(p->topic);
	int rc = loop_post(p->owner, watch_on_owner, op);
	if (rc) {
		topic_release(p->topic);
		free(op);
		free(w);
	}
	return rc;
}

static void unwatch_on_owner(void *arg)
{
	struct watch_op *op = arg;
	struct partition *p = op->p;
	for (struct partition_watch **pp = &p->watches; *pp; pp = &(*pp)->next) {
		if ((*pp)->token == op->token) {
			struct partition_watch *w = *pp;
			*pp = w->next;
			free(w);
			break;
		}
	}
	/* Posted after any cb this watch had posted: the reply loop sees cb, then done. */
	loop_post(op->reply, op->done, op->arg);
	topic_release(p->topic);
	free(op);
}

int partition_unwatch(struct partition *p, uint64_t token, struct loop *reply_loop,
		      partition_watch_cb done, void *arg)
{
	struct watch_op *op = calloc(1, sizeof *op);
	if (!op)
		return -ERR_NOMEM;
	*op = (struct watch_op){ .p = p, .token = token, .done = done, .arg = arg,
				 .reply = reply_loop };
	topic_ref(p->topic);
	int rc = loop_post(p->owner, unwatch_on_owner, op);
	if (rc) {
		topic_release(p->topic);
		free(op);
	}
	return rc;
}
