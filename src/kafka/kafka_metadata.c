/*
 * kafka_metadata.c: Metadata v0-8 (MetadataRequest.json).
 *
 * One broker, node 0, is the leader of every partition and the controller.
 * Null topics (v1+; an empty array in v0) means every topic. Unknown topics are
 * created when auto.create.topics.enable is on and the request allows it
 * (allow_auto_topic_creation, v4+; always for older versions, as Kafka does).
 */
#include <stdlib.h>
#include <string.h>

#include "kafka/kafka_int.h"

/* Collects topic references for "all topics". */
struct topic_list {
	struct topic **items;
	size_t n, cap;
};

static void collect(void *arg, struct topic *t)
{
	struct topic_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct topic **items = realloc(l->items, cap * sizeof *items);
		if (!items)
			return;
		l->items = items;
		l->cap = cap;
	}
	l->items[l->n++] = topic_ref_get(t);
}

/* Fills one topic entry (partitions all led by node 0). */
static int fill_topic(struct kafka_req *req, struct topic *t, struct kafka_metadata_response_topic *out)
{
	int32_t n = topic_partition_count(t);
	out->name = (struct slice){ (const uint8_t *)topic_name(t), strlen(topic_name(t)) };
	memcpy(out->topic_id.bytes, topic_id(t), 16);
	out->partitions = kafka_arena_alloc_array(&req->arena, (size_t)n, sizeof *out->partitions);
	static int32_t node0 = 0;
	if (n && !out->partitions)
		return -ERR_NOMEM;
	out->partitions_count = (size_t)n;
	for (int32_t i = 0; i < n; i++) {
		struct kafka_metadata_response_partition *p = &out->partitions[i];
		kafka_metadata_response_partition_init(p);
		p->partition_index = i;
		p->leader_id = 0;
		p->leader_epoch = 0;
		p->replica_nodes = &node0;
		p->replica_nodes_count = 1;
		p->isr_nodes = &node0;
		p->isr_nodes_count = 1;
	}
	return 0;
}

int kafka_handle_metadata(struct kafka_req *req, struct reader *r)
{
	struct kafka_metadata_request in;
	int rc = kafka_metadata_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct broker *b = kafka_req_broker(req);
	const struct config *cfg = broker_config(b);
	bool all = in.topics_null || (req->version == 0 && in.topics_count == 0);
	bool create = req->version < 4 || in.allow_auto_topic_creation;

	/* Topic references live on the heap, not in the request's arena: answering may
	 * free the request, and they are released after that. */
	struct topic_list list = { 0 };
	size_t n_topics;
	struct kafka_metadata_response_topic *topics;
	if (all) {
		broker_topic_foreach(b, collect, &list);
		n_topics = list.n;
	} else {
		n_topics = in.topics_count;
	}
	topics = kafka_arena_alloc_array(&req->arena, n_topics ? n_topics : 1, sizeof *topics);
	if (!topics)
		rc = -ERR_NOMEM;
	for (size_t i = 0; !rc && i < n_topics; i++) {
		struct kafka_metadata_response_topic *o = &topics[i];
		kafka_metadata_response_topic_init(o);
		struct topic *t = NULL;
		if (all) {
			t = list.items[i];
		} else {
			o->name = in.topics[i].name;
			int err = in.topics[i].name.data
					  ? broker_topic_get(b, in.topics[i].name, create, &t)
					  : -ERR_NOT_FOUND;
			if (err == -ERR_INVALID)
				o->error_code = KAFKA_INVALID_TOPIC_EXCEPTION;
			else if (err)
				o->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
			if (t) {
				/* Keep the reference until the response is encoded. */
				collect(&list, t);
				topic_release(t);
			}
		}
		if (t)
			rc = fill_topic(req, t, o);
	}
	struct kafka_metadata_response_broker self;
	kafka_metadata_response_broker_init(&self);
	self.node_id = 0;
	self.host = (struct slice){ (const uint8_t *)cfg->listen_host, strlen(cfg->listen_host) };
	self.port = cfg->port_kafka;
	struct kafka_metadata_response resp;
	kafka_metadata_response_init(&resp);
	resp.brokers = &self;
	resp.brokers_count = 1;
	resp.cluster_id = (struct slice){ (const uint8_t *)"sluice", 6 };
	resp.controller_id = 0;
	resp.topics = topics;
	resp.topics_count = n_topics;
	if (!rc)
		rc = kafka_req_respond(req, (kafka_encode_fn)kafka_metadata_response_encode, &resp);
	for (size_t i = 0; i < list.n; i++)
		topic_release(list.items[i]);
	free(list.items);
	return rc == -ERR_NOMEM ? rc : 0;
}
