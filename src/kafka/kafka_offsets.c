/*
 * kafka_offsets.c: OffsetCommit v0-8 and OffsetFetch v0-8 (consumer-group
 * committed offsets; OffsetCommitRequest.json, OffsetFetchRequest.json).
 *
 * Offsets are durable in the catalog (broker/group_offsets.h), which waits for
 * a disk sync on every commit; so the catalog work runs in libuv's threadpool
 * (uv_queue_work on the request's loop) and the answer is encoded back on the
 * loop thread in the work's completion. Meanwhile the request is pending: its
 * frame and arena stay valid (even if the connection closes), and only the
 * worker touches them until the completion runs.
 *
 * OffsetCommit first asks the group coordinator whether the committer may
 * commit (member of the current generation, or a "simple" commit with
 * generation -1 to a group without members), then writes every valid offset
 * of the request in ONE catalog transaction; unknown topics/partitions and
 * oversized metadata get their own per-partition errors, as in Kafka.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/group_offsets.h"
#include "core/diag.h"
#include "core/err.h"
#include "kafka/kafka_group.h"
#include "kafka/kafka_int.h"

/* Kafka error codes not in enum kafka_error (protocol_errors.html). */
#define OFS_OFFSET_METADATA_TOO_LARGE 12

static const uint8_t empty_bytes[1];

static struct slice or_empty(struct slice s)
{
	return s.data ? s : (struct slice){ empty_bytes, 0 };
}

static void *arena_alloc_cb(void *ctx, size_t len)
{
	return kafka_arena_alloc(ctx, len);
}

/* ---- OffsetCommit ---- */

struct commit_state {
	struct kafka_req *req;
	uv_work_t work;
	struct kafka_offset_commit_response resp;
	struct slice group_id;
	struct group_offset *offs;                          /* flat, one per partition */
	struct kafka_offset_commit_response_partition **out; /* where each one's error goes */
	size_t n;
	int rc;
};

static int16_t commit_error(int err)
{
	switch (err) {
	case 0: return KAFKA_NONE;
	case -ERR_TOO_LARGE: return OFS_OFFSET_METADATA_TOO_LARGE;
	default: return KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
	}
}

static void commit_work(uv_work_t *w)
{
	struct commit_state *cs = w->data;
	cs->rc = group_offsets_commit(kafka_req_broker(cs->req), cs->group_id, cs->offs, cs->n);
}

static void commit_done(uv_work_t *w, int status)
{
	(void)status;
	struct commit_state *cs = w->data;
	struct kafka_req *req = cs->req;
	req->pending--;
	if (cs->rc)
		diag_warn("kafka", "%s: OffsetCommit for group %.*s failed: %s", kafka_req_peer(req),
			  (int)(cs->group_id.len > 200 ? 200 : cs->group_id.len),
			  (const char *)cs->group_id.data, err_str(cs->rc));
	for (size_t i = 0; i < cs->n; i++) {
		if (cs->out[i]->error_code != KAFKA_NONE)
			continue;
		cs->out[i]->error_code = cs->rc == -ERR_INVALID ? KAFKA_INVALID_GROUP_ID
					 : cs->rc		? KAFKA_COORDINATOR_NOT_AVAILABLE
								: commit_error(cs->offs[i].err);
	}
	kafka_req_respond(req, (kafka_encode_fn)kafka_offset_commit_response_encode, &cs->resp);
}

/* OffsetCommit v0-8: all offsets of the request in one durable transaction. */
int kafka_handle_offset_commit(struct kafka_req *req, struct reader *r)
{
	struct kafka_offset_commit_request in;
	int rc = kafka_offset_commit_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct kafka_arena *a = &req->arena;
	struct commit_state *cs = kafka_arena_alloc(a, sizeof *cs);
	if (!cs)
		return -ERR_NOMEM;
	memset(cs, 0, sizeof *cs);
	cs->req = req;
	cs->group_id = or_empty(in.group_id);
	kafka_offset_commit_response_init(&cs->resp);
	size_t n = 0;
	for (size_t t = 0; t < in.topics_count; t++)
		n += in.topics[t].partitions_count;
	if (in.topics_count) {
		cs->resp.topics = kafka_arena_alloc_array(a, in.topics_count, sizeof *cs->resp.topics);
		if (!cs->resp.topics)
			return -ERR_NOMEM;
	}
	if (n) {
		cs->offs = kafka_arena_alloc_array(a, n, sizeof *cs->offs);
		cs->out = kafka_arena_alloc_array(a, n, sizeof *cs->out);
		if (!cs->offs || !cs->out)
			return -ERR_NOMEM;
	}
	cs->resp.topics_count = in.topics_count;
	int16_t e = group_coordinator_commit_check(kafka_req_groups(req), cs->group_id,
						   or_empty(in.member_id), in.group_instance_id,
						   in.generation_id_or_member_epoch);
	for (size_t t = 0; t < in.topics_count; t++) {
		const struct kafka_offset_commit_request_topic *it = &in.topics[t];
		struct kafka_offset_commit_response_topic *ot = &cs->resp.topics[t];
		kafka_offset_commit_response_topic_init(ot);
		ot->name = or_empty(it->name);
		if (it->partitions_count) {
			ot->partitions = kafka_arena_alloc_array(a, it->partitions_count,
								 sizeof *ot->partitions);
			if (!ot->partitions)
				return -ERR_NOMEM;
		}
		ot->partitions_count = it->partitions_count;
		for (size_t p = 0; p < it->partitions_count; p++) {
			const struct kafka_offset_commit_request_partition *ip = &it->partitions[p];
			struct kafka_offset_commit_response_partition *op = &ot->partitions[p];
			kafka_offset_commit_response_partition_init(op);
			op->partition_index = ip->partition_index;
			op->error_code = e;
			if (!e && ip->committed_metadata.len > GROUP_OFFSETS_METADATA_MAX)
				op->error_code = OFS_OFFSET_METADATA_TOO_LARGE;
			cs->offs[cs->n] = (struct group_offset){
				.topic = ot->name,
				.partition = ip->partition_index,
				.offset = ip->committed_offset,
				.leader_epoch = ip->committed_leader_epoch,
				.metadata = or_empty(ip->committed_metadata),
			};
			cs->out[cs->n] = op;
			/* Entries already refused are not written. */
			if (op->error_code == KAFKA_NONE)
				cs->n++;
		}
	}
	if (cs->n == 0)
		return kafka_req_respond(req, (kafka_encode_fn)kafka_offset_commit_response_encode,
					 &cs->resp);
	cs->work.data = cs;
	req->pending++;
	rc = uv_queue_work(loop_uv(kafka_req_loop(req)), &cs->work, commit_work, commit_done);
	if (rc) {
		req->pending--;
		for (size_t i = 0; i < cs->n; i++)
			cs->out[i]->error_code = KAFKA_COORDINATOR_NOT_AVAILABLE;
		return kafka_req_respond(req, (kafka_encode_fn)kafka_offset_commit_response_encode,
					 &cs->resp);
	}
	return 0;
}

/* ---- OffsetFetch ---- */

/* One group of the request (v0-7 have exactly one). */
struct fetch_group {
	struct slice group_id;
	bool all;                  /* topics null: every committed offset */
	struct group_offset *rows; /* requested partitions in request order, or listed ones */
	size_t n_rows, cap_rows;
	int16_t error;
};

struct offsets_fetch_state {
	struct kafka_req *req;
	uv_work_t work;
	struct fetch_group *groups;
	size_t n_groups;
	bool failed;               /* arena exhausted while listing */
};

struct list_rows_ctx {
	struct offsets_fetch_state *fs;
	struct fetch_group *fg;
};

/* Worker: appends one listed offset (copied into the request arena). */
static int list_row(void *arg, const struct group_offset *o)
{
	struct list_rows_ctx *c = arg;
	struct fetch_group *fg = c->fg;
	struct kafka_arena *a = &c->fs->req->arena;
	if (fg->n_rows == fg->cap_rows) {
		size_t cap = fg->cap_rows ? fg->cap_rows * 2 : 16;
		struct group_offset *p = kafka_arena_alloc_array(a, cap, sizeof *p);
		if (!p)
			return -ERR_NOMEM;
		if (fg->n_rows)
			memcpy(p, fg->rows, fg->n_rows * sizeof *p);
		fg->rows = p;
		fg->cap_rows = cap;
	}
	struct group_offset *row = &fg->rows[fg->n_rows];
	*row = *o;
	/* Rows of one topic are adjacent: share the previous row's copy of the name. */
	const struct group_offset *prev = fg->n_rows ? &fg->rows[fg->n_rows - 1] : NULL;
	if (prev && prev->topic.len == o->topic.len &&
	    memcmp(prev->topic.data, o->topic.data, o->topic.len) == 0) {
		row->topic = prev->topic;
	} else {
		uint8_t *t = kafka_arena_alloc(a, o->topic.len ? o->topic.len : 1);
		if (!t)
			return -ERR_NOMEM;
		memcpy(t, o->topic.data, o->topic.len);
		row->topic = (struct slice){ t, o->topic.len };
	}
	if (o->metadata.data && o->metadata.len) {
		uint8_t *m = kafka_arena_alloc(a, o->metadata.len);
		if (!m)
			return -ERR_NOMEM;
		memcpy(m, o->metadata.data, o->metadata.len);
		row->metadata = (struct slice){ m, o->metadata.len };
	} else {
		row->metadata = (struct slice){ empty_bytes, 0 };
	}
	fg->n_rows++;
	return 0;
}

static void fetch_work(uv_work_t *w)
{
	struct offsets_fetch_state *fs = w->data;
	struct broker *b = kafka_req_broker(fs->req);
	for (size_t i = 0; i < fs->n_groups; i++) {
		struct fetch_group *fg = &fs->groups[i];
		int rc;
		if (fg->all) {
			struct list_rows_ctx c = { fs, fg };
			rc = group_offsets_list(b, fg->group_id, list_row, &c);
		} else {
			rc = group_offsets_fetch(b, fg->group_id, fg->rows, fg->n_rows, arena_alloc_cb,
						 &fs->req->arena);
		}
		if (rc) {
			diag_warn("kafka", "%s: OffsetFetch: %s", kafka_req_peer(fs->req),
				  err_str(rc));
			fg->error = KAFKA_COORDINATOR_NOT_AVAILABLE;
			fg->n_rows = fg->all ? 0 : fg->n_rows;
		}
	}
}

/* Number of topic runs (adjacent rows with the same name). */
static size_t count_topics(const struct fetch_group *fg)
{
	size_t n = 0;
	for (size_t i = 0; i < fg->n_rows; i++)
		if (i == 0 || fg->rows[i].topic.data != fg->rows[i - 1].topic.data ||
		    fg->rows[i].topic.len != fg->rows[i - 1].topic.len)
			n++;
	return n;
}

static bool same_topic(const struct fetch_group *fg, size_t i)
{
	return i > 0 && fg->rows[i].topic.data == fg->rows[i - 1].topic.data &&
	       fg->rows[i].topic.len == fg->rows[i - 1].topic.len;
}

/* v0-7 body from the one group. Returns 0 or -ERR_NOMEM. */
static int fill_v0(struct kafka_req *req, const struct fetch_group *fg,
		   struct kafka_offset_fetch_response *resp)
{
	struct kafka_arena *a = &req->arena;
	resp->error_code = fg->error;
	size_t nt = count_topics(fg);
	if (nt) {
		resp->topics = kafka_arena_alloc_array(a, nt, sizeof *resp->topics);
		if (!resp->topics)
			return -ERR_NOMEM;
	}
	resp->topics_count = nt;
	size_t t = SIZE_MAX;
	for (size_t i = 0; i < fg->n_rows; i++) {
		if (!same_topic(fg, i)) {
			t = t == SIZE_MAX ? 0 : t + 1;
			size_t np = 1;
			while (i + np < fg->n_rows && same_topic(fg, i + np))
				np++;
			kafka_offset_fetch_response_topic_init(&resp->topics[t]);
			resp->topics[t].name = fg->rows[i].topic;
			resp->topics[t].partitions =
				kafka_arena_alloc_array(a, np, sizeof *resp->topics[t].partitions);
			if (!resp->topics[t].partitions)
				return -ERR_NOMEM;
		}
		struct kafka_offset_fetch_response_topic *ot = &resp->topics[t];
		struct kafka_offset_fetch_response_partition *op = &ot->partitions[ot->partitions_count++];
		kafka_offset_fetch_response_partition_init(op);
		op->partition_index = fg->rows[i].partition;
		op->committed_offset = fg->rows[i].offset;
		op->committed_leader_epoch = fg->rows[i].leader_epoch;
		op->metadata = or_empty(fg->rows[i].metadata);
		/* v0-1 have no top-level error: put it on each partition. */
		op->error_code = req->version < 2 ? fg->error : KAFKA_NONE;
	}
	return 0;
}

/* v8 body: one entry per group. Returns 0 or -ERR_NOMEM. */
static int fill_v8(struct kafka_req *req, const struct offsets_fetch_state *fs,
		   struct kafka_offset_fetch_response *resp)
{
	struct kafka_arena *a = &req->arena;
	if (fs->n_groups) {
		resp->groups = kafka_arena_alloc_array(a, fs->n_groups, sizeof *resp->groups);
		if (!resp->groups)
			return -ERR_NOMEM;
	}
	resp->groups_count = fs->n_groups;
	for (size_t g = 0; g < fs->n_groups; g++) {
		const struct fetch_group *fg = &fs->groups[g];
		struct kafka_offset_fetch_response_group *og = &resp->groups[g];
		kafka_offset_fetch_response_group_init(og);
		og->group_id = fg->group_id;
		og->error_code = fg->error;
		size_t nt = count_topics(fg);
		if (nt) {
			og->topics = kafka_arena_alloc_array(a, nt, sizeof *og->topics);
			if (!og->topics)
				return -ERR_NOMEM;
		}
		og->topics_count = nt;
		size_t t = SIZE_MAX;
		for (size_t i = 0; i < fg->n_rows; i++) {
			if (!same_topic(fg, i)) {
				t = t == SIZE_MAX ? 0 : t + 1;
				size_t np = 1;
				while (i + np < fg->n_rows && same_topic(fg, i + np))
					np++;
				kafka_offset_fetch_response_topics_init(&og->topics[t]);
				og->topics[t].name = fg->rows[i].topic;
				og->topics[t].partitions = kafka_arena_alloc_array(
					a, np, sizeof *og->topics[t].partitions);
				if (!og->topics[t].partitions)
					return -ERR_NOMEM;
			}
			struct kafka_offset_fetch_response_topics *ot = &og->topics[t];
			struct kafka_offset_fetch_response_partitions *op =
				&ot->partitions[ot->partitions_count++];
			kafka_offset_fetch_response_partitions_init(op);
			op->partition_index = fg->rows[i].partition;
			op->committed_offset = fg->rows[i].offset;
			op->committed_leader_epoch = fg->rows[i].leader_epoch;
			op->metadata = or_empty(fg->rows[i].metadata);
		}
	}
	return 0;
}

static void fetch_respond(struct offsets_fetch_state *fs)
{
	struct kafka_req *req = fs->req;
	struct kafka_offset_fetch_response resp;
	kafka_offset_fetch_response_init(&resp);
	int rc = req->version >= 8 ? fill_v8(req, fs, &resp) : fill_v0(req, &fs->groups[0], &resp);
	if (rc) {
		/* Out of arena: answer an error without the (partial) lists. */
		kafka_offset_fetch_response_init(&resp);
		resp.error_code = KAFKA_COORDINATOR_NOT_AVAILABLE;
		if (req->version >= 8) {
			resp.groups = NULL;
			resp.groups_count = 0;
		}
	}
	kafka_req_respond(req, (kafka_encode_fn)kafka_offset_fetch_response_encode, &resp);
}

static void fetch_done(uv_work_t *w, int status)
{
	(void)status;
	struct offsets_fetch_state *fs = w->data;
	fs->req->pending--;
	fetch_respond(fs);
}

/* Fills fg's rows from the requested topics (borrowed from the request). */
static int fetch_group_init(struct kafka_arena *a, struct fetch_group *fg, struct slice group_id,
			    bool all, size_t n_topics, const struct slice *names,
			    int32_t *const *partitions, const size_t *counts)
{
	fg->group_id = or_empty(group_id);
	fg->all = all;
	if (all)
		return 0;
	size_t n = 0;
	for (size_t t = 0; t < n_topics; t++)
		n += counts[t];
	if (n) {
		fg->rows = kafka_arena_alloc_array(a, n, sizeof *fg->rows);
		if (!fg->rows)
			return -ERR_NOMEM;
	}
	for (size_t t = 0; t < n_topics; t++)
		for (size_t p = 0; p < counts[t]; p++)
			fg->rows[fg->n_rows++] = (struct group_offset){
				.topic = or_empty(names[t]),
				.partition = partitions[t][p],
				.offset = -1,
				.leader_epoch = -1,
			};
	fg->cap_rows = n;
	return 0;
}

/* OffsetFetch v0-8 (v8: several groups; null topics: every committed offset). */
int kafka_handle_offset_fetch(struct kafka_req *req, struct reader *r)
{
	struct kafka_offset_fetch_request in;
	int rc = kafka_offset_fetch_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct kafka_arena *a = &req->arena;
	struct offsets_fetch_state *fs = kafka_arena_alloc(a, sizeof *fs);
	if (!fs)
		return -ERR_NOMEM;
	memset(fs, 0, sizeof *fs);
	fs->req = req;
	fs->n_groups = req->version >= 8 ? in.groups_count : 1;
	if (fs->n_groups) {
		fs->groups = kafka_arena_alloc_array(a, fs->n_groups, sizeof *fs->groups);
		if (!fs->groups)
			return -ERR_NOMEM;
		memset(fs->groups, 0, fs->n_groups * sizeof *fs->groups);
	}
	for (size_t g = 0; g < fs->n_groups; g++) {
		size_t nt = req->version >= 8 ? in.groups[g].topics_count : in.topics_count;
		struct slice *names = NULL;
		int32_t **parts = NULL;
		size_t *counts = NULL;
		if (nt) {
			names = kafka_arena_alloc_array(a, nt, sizeof *names);
			parts = kafka_arena_alloc_array(a, nt, sizeof *parts);
			counts = kafka_arena_alloc_array(a, nt, sizeof *counts);
			if (!names || !parts || !counts)
				return -ERR_NOMEM;
		}
		for (size_t t = 0; t < nt; t++) {
			if (req->version >= 8) {
				names[t] = in.groups[g].topics[t].name;
				parts[t] = in.groups[g].topics[t].partition_indexes;
				counts[t] = in.groups[g].topics[t].partition_indexes_count;
			} else {
				names[t] = in.topics[t].name;
				parts[t] = in.topics[t].partition_indexes;
				counts[t] = in.topics[t].partition_indexes_count;
			}
		}
		bool all = req->version >= 8 ? in.groups[g].topics_null : in.topics_null;
		struct slice id = req->version >= 8 ? in.groups[g].group_id : in.group_id;
		rc = fetch_group_init(a, &fs->groups[g], id, all, nt, names, parts, counts);
		if (rc)
			return rc;
	}
	fs->work.data = fs;
	req->pending++;
	rc = uv_queue_work(loop_uv(kafka_req_loop(req)), &fs->work, fetch_work, fetch_done);
	if (rc) {
		req->pending--;
		for (size_t g = 0; g < fs->n_groups; g++)
			fs->groups[g].error = KAFKA_COORDINATOR_NOT_AVAILABLE;
		fetch_respond(fs);
	}
	return 0;
}
