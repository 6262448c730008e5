/*
 * kafka_list_offsets.c: ListOffsets v0-5 (ListOffsetsRequest.json): earliest
 * (-2), latest (-1) and by timestamp, answered from each partition's owner loop.
 * v0 answers old_style_offsets (one offset); v1+ offset and timestamp.
 */
#include "kafka/kafka_int.h"

struct lo_slot {
	struct kafka_req *req;
	struct kafka_list_offsets_response_partition_response *out;
	int64_t old_style; /* v0's one-element array */
};

static void lo_respond(struct kafka_req *req)
{
	kafka_req_respond(req, (kafka_encode_fn)kafka_list_offsets_response_encode, req->state);
}

static void offset_done(void *arg, int err, int64_t offset, int64_t timestamp)
{
	struct lo_slot *slot = arg;
	struct kafka_req *req = slot->req;
	slot->out->error_code = kafka_error_from(err);
	if (!err && req->version == 0) {
		slot->old_style = offset;
		slot->out->old_style_offsets = &slot->old_style;
		slot->out->old_style_offsets_count = 1;
	} else if (!err) {
		slot->out->offset = offset;
		slot->out->timestamp = timestamp;
	}
	if (--req->pending == 0)
		lo_respond(req);
}

int kafka_handle_list_offsets(struct kafka_req *req, struct reader *r)
{
	struct kafka_list_offsets_request in;
	int rc = kafka_list_offsets_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct broker *b = kafka_req_broker(req);
	struct kafka_list_offsets_response *resp = kafka_arena_alloc(&req->arena, sizeof *resp);
	if (!resp)
		return -ERR_NOMEM;
	kafka_list_offsets_response_init(resp);
	resp->topics = kafka_arena_alloc_array(&req->arena, in.topics_count ? in.topics_count : 1,
					       sizeof *resp->topics);
	if (!resp->topics)
		return -ERR_NOMEM;
	resp->topics_count = in.topics_count;
	req->state = resp;
	req->pending++; /* held while starting */
	for (size_t i = 0; i < in.topics_count; i++) {
		const struct kafka_list_offsets_request_topic *it = &in.topics[i];
		struct kafka_list_offsets_response_topic_response *tr = &resp->topics[i];
		kafka_list_offsets_response_topic_response_init(tr);
		tr->name = it->name;
		tr->partitions = kafka_arena_alloc_array(&req->arena,
							 it->partitions_count ? it->partitions_count : 1,
							 sizeof *tr->partitions);
		if (!tr->partitions)
			return -ERR_NOMEM;
		tr->partitions_count = it->partitions_count;
		struct topic *t = NULL;
		int err = it->name.data ? broker_topic_get(b, it->name, false, &t) : -ERR_NOT_FOUND;
		for (size_t k = 0; k < it->partitions_count; k++) {
			struct kafka_list_offsets_response_partition_response *out = &tr->partitions[k];
			kafka_list_offsets_response_partition_response_init(out);
			out->partition_index = it->partitions[k].partition_index;
			if (req->version > 0) {
				out->offset = -1;
				out->timestamp = -1;
			}
			struct partition *p = err ? NULL : topic_partition(t, out->partition_index);
			if (!p) {
				out->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			struct lo_slot *slot = kafka_arena_alloc(&req->arena, sizeof *slot);
			if (!slot)
				return -ERR_NOMEM;
			*slot = (struct lo_slot){ req, out, -1 };
			req->pending++;
			int rc2 = partition_list_offset(p, it->partitions[k].timestamp,
							kafka_req_loop(req), offset_done, slot);
			if (rc2) {
				req->pending--;
				out->error_code = kafka_error_from(rc2);
			}
		}
		if (t)
			topic_release(t);
	}
	if (--req->pending == 0)
		lo_respond(req);
	return 0;
}
