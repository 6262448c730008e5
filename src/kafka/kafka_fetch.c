/*
 * kafka_fetch.c: Fetch v4-11 (FetchRequest.json), with long polling.
 *
 * A fetch reads every requested partition on its owner loop (partition_read),
 * then answers if it has min_bytes or max_wait_ms is over. Otherwise it waits:
 * a watch on each partition (woken by the next append past the fetch offset)
 * and a timer for the rest of max_wait_ms. The first of those to fire cancels
 * the others, and once every watch is settled the fetch reads again.
 *
 *   read ──► enough? ──yes──► respond
 *              │no
 *              ▼
 *            wait (watches + timer) ──first fires──► cancel others ──► read
 *
 * Every watch settles exactly once: by its callback while waiting, or by the
 * completion of its cancellation (partition_unwatch posts that after any
 * callback already on its way, which is then ignored). Sessions (KIP-227) are
 * not kept: every fetch is a full fetch and session_id is 0, which is what
 * librdkafka and KafkaJS ask for (session epoch -1).
 *
 * Records never pass through user space: each partition's records are a
 * deferred RECORDS value (kafka_codec.h) whose bytes are the file range the
 * read returned; the range's file reference moves to the request as a splice
 * (kafka_req_splice) and then to the connection, which sends it with
 * sendfile(2) and drops the reference once sent (docs/net.md, "Zero-copy
 * fetch"). A segment file found shorter than its range while being sent can no
 * longer be answered with an error code (the response's header is out), so the
 * connection is closed and the client retries.
 */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "kafka/kafka_int.h"

enum watch_state { W_NONE, W_REGISTERED, W_FIRED, W_CANCELING };

struct fetch_state;

struct fetch_part {
	struct fetch_state *fs;
	struct topic *topic;       /* owned reference; NULL when the topic is unknown */
	struct partition *p;       /* borrowed from topic */
	int64_t offset;
	int32_t max_bytes;
	struct kafka_fetch_response_partition_data *out;
	struct partition_read_result res; /* res.file moves to the response's splice */
	enum watch_state watch;
	uint64_t token;
};

struct fetch_state {
	struct kafka_req *req;
	struct kafka_fetch_response resp;
	struct fetch_part *parts;
	size_t n_parts;
	int64_t deadline_ns;
	int32_t min_bytes;
	int32_t max_bytes;
	int reads_outstanding;
	int watches_outstanding;
	bool waiting;
	bool answered;
	size_t splice_cursor;      /* the part the next deferred records likely belong to */
	uv_timer_t *timer;         /* owned; closed (then freed) with the state */
};

static void start_reads(struct fetch_state *fs);

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

static void fetch_state_free(void *arg)
{
	struct fetch_state *fs = arg;
	for (size_t i = 0; i < fs->n_parts; i++) {
		partition_read_result_release(&fs->parts[i].res);
		if (fs->parts[i].topic)
			topic_release(fs->parts[i].topic);
	}
	if (fs->timer) {
		uv_timer_stop(fs->timer);
		uv_close((uv_handle_t *)fs->timer, timer_closed);
	}
	free(fs);
}

/*
 * The codec reached a partition's deferred records at body offset at: hands
 * that partition's file range to the response. Parts come in response order,
 * so the search starts at the cursor.
 */
static int splice_records(void *arg, const struct slice *rec, size_t at)
{
	struct fetch_state *fs = arg;
	for (size_t k = 0; k < fs->n_parts; k++) {
		size_t i = (fs->splice_cursor + k) % fs->n_parts;
		struct fetch_part *fp = &fs->parts[i];
		if (&fp->out->records != rec)
			continue;
		if (!fp->res.file || (uint64_t)fp->res.length != rec->len)
			return -ERR_INVALID;
		fs->splice_cursor = i + 1;
		struct flusher_file *f = fp->res.file;
		fp->res.file = NULL; /* moved */
		return kafka_req_splice(fs->req, at, f, fp->res.position, fp->res.length);
	}
	return -ERR_INVALID;
}

/* Answers: each partition's records are its file range, spliced in at send time. */
static void respond(struct fetch_state *fs)
{
	struct kafka_req *req = fs->req;
	for (size_t i = 0; i < fs->n_parts; i++) {
		struct fetch_part *fp = &fs->parts[i];
		if (fp->res.file && fp->res.length > 0)
			fp->out->records = (struct slice){ KAFKA_RECORDS_DEFERRED,
							   (size_t)fp->res.length };
	}
	fs->answered = true;
	fs->splice_cursor = 0;
	struct kafka_records_sink sink = { splice_records, fs };
	kafka_req_respond_deferred(req, &kafka_fetch_response_desc, &fs->resp, &sink);
}

/* Whether to answer now: enough bytes, an error, or no time left. */
static bool ready(struct fetch_state *fs)
{
	int64_t bytes = 0;
	for (size_t i = 0; i < fs->n_parts; i++) {
		if (fs->parts[i].out->error_code != KAFKA_NONE)
			return true;
		bytes += fs->parts[i].res.length;
	}
	return bytes >= fs->min_bytes || clock_mono_ns() >= fs->deadline_ns ||
	       kafka_req_orphaned(fs->req);
}

static void settle_watch(struct fetch_state *fs)
{
	if (--fs->watches_outstanding > 0)
		return;
	fs->req->pending--;
	start_reads(fs);
}

static void unwatch_done(void *arg)
{
	struct fetch_part *fp = arg;
	fp->watch = W_NONE;
	settle_watch(fp->fs);
}

/* Ends the wait: cancels every registered watch, stops the timer. */
static void stop_waiting(struct fetch_state *fs)
{
	if (!fs->waiting)
		return;
	fs->waiting = false;
	uv_timer_stop(fs->timer);
	for (size_t i = 0; i < fs->n_parts; i++) {
		struct fetch_part *fp = &fs->parts[i];
		if (fp->watch != W_REGISTERED)
			continue;
		fp->watch = W_CANCELING;
		if (partition_unwatch(fp->p, fp->token, kafka_req_loop(fs->req), unwatch_done, fp)) {
			/* The owner loop is gone: nothing will call back. */
			fp->watch = W_NONE;
			fs->watches_outstanding--;
		}
	}
	if (fs->watches_outstanding == 0) {
		fs->req->pending--;
		start_reads(fs);
	}
}

static void watch_fired(void *arg)
{
	struct fetch_part *fp = arg;
	struct fetch_state *fs = fp->fs;
	if (fp->watch != W_REGISTERED)
		return; /* a cancellation is on its way and will settle it */
	fp->watch = W_FIRED;
	if (fs->waiting) {
		fs->watches_outstanding--;
		stop_waiting(fs);
		return;
	}
	settle_watch(fs);
}

static void timer_fired(uv_timer_t *t)
{
	stop_waiting(t->data);
}

/* Registers watches and the timer; the request stays pending meanwhile. */
static void start_waiting(struct fetch_state *fs)
{
	struct kafka_req *req = fs->req;
	if (!fs->timer) {
		fs->timer = malloc(sizeof *fs->timer);
		if (!fs->timer) {
			respond(fs);
			return;
		}
		uv_timer_init(loop_uv(kafka_req_loop(req)), fs->timer);
		fs->timer->data = fs;
	}
	req->pending++;
	fs->waiting = true;
	for (size_t i = 0; i < fs->n_parts; i++) {
		struct fetch_part *fp = &fs->parts[i];
		if (!fp->p)
			continue;
		int64_t wait_past = fp->offset;
		fp->watch = W_REGISTERED;
		fs->watches_outstanding++;
		if (partition_watch(fp->p, wait_past, kafka_req_loop(req), watch_fired, fp, &fp->token)) {
			fp->watch = W_NONE;
			fs->watches_outstanding--;
		}
	}
	int64_t left_ms = (fs->deadline_ns - clock_mono_ns()) / 1000000;
	uv_timer_start(fs->timer, timer_fired, left_ms > 0 ? (uint64_t)left_ms : 0, 0);
}

static void read_done(void *arg, struct partition_read_result *res)
{
	struct fetch_part *fp = arg;
	struct fetch_state *fs = fp->fs;
	fp->res = *res;
	res->file = NULL; /* moved */
	fp->out->error_code = kafka_error_from(res->err);
	fp->out->high_watermark = res->high_watermark;
	fp->out->last_stable_offset = res->high_watermark;
	fp->out->log_start_offset = res->log_start_offset;
	fs->req->pending--;
	if (--fs->reads_outstanding > 0)
		return;
	if (ready(fs))
		respond(fs);
	else
		start_waiting(fs);
}

/* Reads every known partition (again); answers when all are back. */
static void start_reads(struct fetch_state *fs)
{
	struct kafka_req *req = fs->req;
	int64_t budget = fs->max_bytes;
	fs->reads_outstanding = 1; /* held while issuing */
	req->pending++;
	for (size_t i = 0; i < fs->n_parts; i++) {
		struct fetch_part *fp = &fs->parts[i];
		partition_read_result_release(&fp->res);
		memset(&fp->res, 0, sizeof fp->res);
		if (!fp->p)
			continue;
		/* KIP-74: the first partition may exceed max_bytes by one batch. */
		int64_t max = fp->max_bytes < budget ? fp->max_bytes : budget;
		if (max <= 0)
			max = 1;
		budget -= fp->max_bytes;
		fs->reads_outstanding++;
		req->pending++;
		int rc = partition_read(fp->p, fp->offset, max, kafka_req_loop(req), read_done, fp);
		if (rc) {
			fs->reads_outstanding--;
			req->pending--;
			fp->out->error_code = kafka_error_from(rc);
		}
	}
	fs->reads_outstanding--; /* release the hold */
	req->pending--;
	if (fs->reads_outstanding == 0) {
		if (ready(fs))
			respond(fs);
		else
			start_waiting(fs);
	}
}

/* The connection closed: stop waiting so the request finishes now. */
static void fetch_cancel(struct kafka_req *req)
{
	struct fetch_state *fs = req->state;
	if (fs && fs->waiting)
		stop_waiting(fs);
}

int kafka_handle_fetch(struct kafka_req *req, struct reader *r)
{
	struct kafka_fetch_request in;
	int rc = kafka_fetch_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct broker *b = kafka_req_broker(req);
	struct fetch_state *fs = calloc(1, sizeof *fs);
	if (!fs)
		return -ERR_NOMEM;
	fs->req = req;
	req->state = fs;
	req->state_free = fetch_state_free;
	req->cancel = fetch_cancel;
	fs->min_bytes = in.min_bytes;
	fs->max_bytes = in.max_bytes > 0 ? in.max_bytes : INT32_MAX;
	int32_t wait = in.max_wait_ms > 0 ? in.max_wait_ms : 0;
	fs->deadline_ns = clock_mono_ns() + (int64_t)wait * 1000000;
	kafka_fetch_response_init(&fs->resp);
	fs->resp.session_id = 0;
	size_t n_parts = 0;
	for (size_t i = 0; i < in.topics_count; i++)
		n_parts += in.topics[i].partitions_count;
	fs->resp.responses = kafka_arena_alloc_array(&req->arena, in.topics_count ? in.topics_count : 1,
						     sizeof *fs->resp.responses);
	fs->parts = kafka_arena_alloc_array(&req->arena, n_parts ? n_parts : 1, sizeof *fs->parts);
	if (!fs->resp.responses || !fs->parts)
		return -ERR_NOMEM;
	fs->resp.responses_count = in.topics_count;
	for (size_t i = 0; i < in.topics_count; i++) {
		const struct kafka_fetch_request_topic *ft = &in.topics[i];
		struct kafka_fetch_response_fetchable_topic_response *tr = &fs->resp.responses[i];
		kafka_fetch_response_fetchable_topic_response_init(tr);
		tr->topic = ft->topic;
		tr->topic_id = ft->topic_id;
		tr->partitions = kafka_arena_alloc_array(&req->arena,
							 ft->partitions_count ? ft->partitions_count : 1,
							 sizeof *tr->partitions);
		if (!tr->partitions)
			return -ERR_NOMEM;
		tr->partitions_count = ft->partitions_count;
		struct topic *t = NULL;
		int err = ft->topic.data ? broker_topic_get(b, ft->topic, false, &t) : -ERR_NOT_FOUND;
		for (size_t k = 0; k < ft->partitions_count; k++) {
			struct kafka_fetch_response_partition_data *out = &tr->partitions[k];
			kafka_fetch_response_partition_data_init(out);
			out->partition_index = ft->partitions[k].partition;
			out->high_watermark = -1;
			out->last_stable_offset = -1;
			out->log_start_offset = -1;
			/* Empty, not null: librdkafka rejects a null record set (size -1). */
			out->records = (struct slice){ (const uint8_t *)"", 0 };
			struct fetch_part *fp = &fs->parts[fs->n_parts++];
			*fp = (struct fetch_part){ .fs = fs, .out = out,
						   .offset = ft->partitions[k].fetch_offset,
						   .max_bytes = ft->partitions[k].partition_max_bytes };
			if (err) {
				out->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			fp->p = topic_partition(t, out->partition_index);
			if (!fp->p) {
				out->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			fp->topic = topic_ref_get(t);
			if (fp->max_bytes <= 0)
				out->error_code = KAFKA_INVALID_FETCH_SIZE;
		}
		if (t)
			topic_release(t);
	}
	for (size_t i = 0; i < fs->n_parts; i++)
		if (fs->parts[i].out->error_code != KAFKA_NONE)
			fs->parts[i].p = NULL; /* nothing to read there */
	start_reads(fs);
	return 0;
}
