/*
 * kafka_produce.c: Produce v3-7 (ProduceRequest.json); v0-2 are advertised for
 * librdkafka's compression check but refused per partition (they carry the old
 * message formats, which Sluice does not store).
 *
 * Each partition's records are copied out of the request frame and appended on
 * the partition's owner loop (broker/partition.c). acks=-1 (all) answers once
 * the append is as durable as log.flush promises (one node: the leader is every
 * replica); acks=1 answers once the leader wrote it (the fsync still follows);
 * acks=0 answers nothing and returns at once. Errors are per
 * partition Kafka codes; only an undecodable request closes the connection.
 */
#include <stdlib.h>
#include <string.h>

#include "core/diag.h"
#include "kafka/kafka_int.h"
#include "storage/record_batch.h"

/* One partition's pending append: where its result goes. */
struct produce_slot {
	struct kafka_req *req;
	struct kafka_produce_response_partition_produce_response *out;
};

static void produce_respond(struct kafka_req *req)
{
	struct kafka_produce_response *resp = req->state;
	kafka_req_respond(req, (kafka_encode_fn)kafka_produce_response_encode, resp);
}

static void appended(void *arg, const struct partition_append_result *res)
{
	struct produce_slot *slot = arg;
	struct kafka_req *req = slot->req;
	slot->out->error_code = kafka_error_from(res->err);
	if (!res->err) {
		slot->out->base_offset = res->base_offset;
		slot->out->log_append_time_ms = res->log_append_time;
		slot->out->log_start_offset = res->log_start_offset;
	}
	if (--req->pending == 0)
		produce_respond(req);
}

/* Starts the append of one partition's records; sets the slot's error on failure. */
static void produce_partition(struct kafka_req *req, struct topic *t, int16_t acks,
			      const struct kafka_produce_request_partition_produce_data *pd,
			      struct kafka_produce_response_partition_produce_response *out)
{
	struct partition *p = topic_partition(t, pd->index);
	if (!p) {
		out->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
		return;
	}
	if (pd->records.data == NULL || pd->records.len == 0) {
		out->error_code = KAFKA_CORRUPT_MESSAGE;
		return;
	}
	if ((int64_t)pd->records.len > topic_max_message_bytes(t) + 12) {
		out->error_code = KAFKA_MESSAGE_TOO_LARGE;
		return;
	}
	/* Kafka's produce rules on top of the storage checks (which only need counts
	 * >= 0): every batch holds records, one per offset, with a known codec. */
	struct record_batch_walk w;
	struct record_batch_header h;
	struct slice batch;
	size_t pos;
	int step;
	record_batch_walk_init(&w, pd->records.data, pd->records.len, pd->records.len, 0);
	while ((step = record_batch_walk_next(&w, &h, &batch, &pos)) == 1) {
		if (h.record_count <= 0 || h.record_count != h.last_offset_delta + 1 ||
		    (h.attributes & RECORD_BATCH_ATTR_CODEC_MASK) > 4 ||
		    (h.attributes & RECORD_BATCH_ATTR_CONTROL)) {
			out->error_code = KAFKA_CORRUPT_MESSAGE;
			return;
		}
	}
	if (step < 0) {
		out->error_code = KAFKA_CORRUPT_MESSAGE;
		return;
	}
	uint8_t *copy = malloc(pd->records.len);
	struct produce_slot *slot = acks ? kafka_arena_alloc(&req->arena, sizeof *slot) : NULL;
	if (!copy || (acks && !slot)) {
		free(copy);
		out->error_code = KAFKA_UNKNOWN_SERVER_ERROR;
		return;
	}
	memcpy(copy, pd->records.data, pd->records.len);
	if (slot)
		*slot = (struct produce_slot){ req, out };
	req->pending += acks ? 1 : 0;
	int rc = partition_append(p, copy, pd->records.len, acks == -1, kafka_req_loop(req),
				  acks ? appended : NULL, slot);
	if (rc) {
		req->pending -= acks ? 1 : 0;
		out->error_code = kafka_error_from(rc);
	}
}

int kafka_handle_produce(struct kafka_req *req, struct reader *r)
{
	struct kafka_produce_request in;
	int rc = kafka_produce_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct broker *b = kafka_req_broker(req);
	struct kafka_produce_response *resp = kafka_arena_alloc(&req->arena, sizeof *resp);
	if (!resp)
		return -ERR_NOMEM;
	kafka_produce_response_init(resp);
	resp->responses = kafka_arena_alloc_array(&req->arena, in.topic_data_count ? in.topic_data_count : 1,
						  sizeof *resp->responses);
	if (!resp->responses)
		return -ERR_NOMEM;
	resp->responses_count = in.topic_data_count;
	req->state = resp; /* arena memory: no state_free */
	int16_t acks = in.acks;
	bool bad_acks = acks != 0 && acks != 1 && acks != -1;

	/* Hold one pending count while partitions start, so none answers early. */
	req->pending++;
	for (size_t i = 0; i < in.topic_data_count; i++) {
		const struct kafka_produce_request_topic_produce_data *td = &in.topic_data[i];
		struct kafka_produce_response_topic_produce_response *tr = &resp->responses[i];
		kafka_produce_response_topic_produce_response_init(tr);
		tr->name = td->name;
		tr->partition_responses = kafka_arena_alloc_array(
			&req->arena, td->partition_data_count ? td->partition_data_count : 1,
			sizeof *tr->partition_responses);
		if (!tr->partition_responses)
			return -ERR_NOMEM;
		tr->partition_responses_count = td->partition_data_count;
		struct topic *t = NULL;
		int16_t topic_err = KAFKA_NONE;
		if (req->version < 3)
			topic_err = KAFKA_UNSUPPORTED_VERSION;
		else if (bad_acks)
			topic_err = KAFKA_INVALID_REQUIRED_ACKS;
		else if (in.transactional_id.data)
			topic_err = KAFKA_INVALID_REQUEST; /* no transactions (see InitProducerId) */
		else {
			int err = td->name.data ? broker_topic_get(b, td->name, true, &t) : -ERR_INVALID;
			topic_err = err == -ERR_INVALID	  ? KAFKA_INVALID_TOPIC_EXCEPTION
				    : err		  ? KAFKA_UNKNOWN_TOPIC_OR_PARTITION
							  : KAFKA_NONE;
		}
		for (size_t k = 0; k < td->partition_data_count; k++) {
			struct kafka_produce_response_partition_produce_response *out =
				&tr->partition_responses[k];
			kafka_produce_response_partition_produce_response_init(out);
			out->index = td->partition_data[k].index;
			out->base_offset = -1;
			out->log_append_time_ms = -1;
			out->log_start_offset = -1;
			out->error_code = topic_err;
			if (t)
				produce_partition(req, t, acks, &td->partition_data[k], out);
		}
		if (t)
			topic_release(t);
	}
	if (acks == 0 && !bad_acks) {
		req->pending--;
		kafka_req_finish_silent(req);
		return 0;
	}
	if (--req->pending == 0)
		produce_respond(req);
	return 0;
}
