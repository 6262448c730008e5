/*
 * kafka_api_versions.c: the APIs and versions Sluice serves (the dispatch
 * table), and ApiVersions v0-3 (KIP-35, KIP-511).
 *
 * The ranges follow shared/specs/kafka/CLIENT-VERSIONS.md: Produce is advertised
 * from v0 because librdkafka 2.0.2 only compresses when Produce v0 is in range
 * (v0-2 are still refused on use, as Kafka 4.0 does: they carry old message
 * formats); Fetch from v4 (RecordBatch v2 only).
 */
#include "kafka/kafka_int.h"

const struct kafka_api_support kafka_apis[] = {
	{ KAFKA_API_PRODUCE, 0, 7, kafka_handle_produce },
	{ KAFKA_API_FETCH, 4, 11, kafka_handle_fetch },
	{ KAFKA_API_LIST_OFFSETS, 0, 5, kafka_handle_list_offsets },
	{ KAFKA_API_METADATA, 0, 8, kafka_handle_metadata },
	{ KAFKA_API_OFFSET_COMMIT, 0, 8, kafka_handle_offset_commit },
	{ KAFKA_API_OFFSET_FETCH, 0, 8, kafka_handle_offset_fetch },
	{ KAFKA_API_FIND_COORDINATOR, 0, 4, kafka_handle_find_coordinator },
	{ KAFKA_API_JOIN_GROUP, 0, 7, kafka_handle_join_group },
	{ KAFKA_API_HEARTBEAT, 0, 4, kafka_handle_heartbeat },
	{ KAFKA_API_LEAVE_GROUP, 0, 5, kafka_handle_leave_group },
	{ KAFKA_API_SYNC_GROUP, 0, 5, kafka_handle_sync_group },
	{ KAFKA_API_DESCRIBE_GROUPS, 0, 5, kafka_handle_describe_groups },
	{ KAFKA_API_LIST_GROUPS, 0, 4, kafka_handle_list_groups },
	{ KAFKA_API_API_VERSIONS, 0, 3, kafka_handle_api_versions },
	{ KAFKA_API_CREATE_TOPICS, 0, 7, kafka_handle_create_topics },
	{ KAFKA_API_DELETE_TOPICS, 0, 6, kafka_handle_delete_topics },
	{ KAFKA_API_INIT_PRODUCER_ID, 0, 4, kafka_handle_init_producer_id },
	{ KAFKA_API_DESCRIBE_CONFIGS, 0, 4, kafka_handle_describe_configs },
	{ KAFKA_API_CREATE_PARTITIONS, 0, 3, kafka_handle_create_partitions },
	{ 0, 0, 0, NULL },
};

const struct kafka_api_support *kafka_api_support_find(int16_t api_key)
{
	for (const struct kafka_api_support *s = kafka_apis; s->handler; s++)
		if (s->api_key == api_key)
			return s;
	return NULL;
}

/* ApiVersions: the table above. The request body (v3: client software name and
 * version) is decoded for validation only. */
int kafka_handle_api_versions(struct kafka_req *req, struct reader *r)
{
	struct kafka_api_versions_request in;
	int rc = kafka_api_versions_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	size_t n = 0;
	while (kafka_apis[n].handler)
		n++;
	struct kafka_api_versions_response_api_version *v =
		kafka_arena_alloc_array(&req->arena, n, sizeof *v);
	if (!v)
		return -ERR_NOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = (struct kafka_api_versions_response_api_version){
			kafka_apis[i].api_key, kafka_apis[i].min_version, kafka_apis[i].max_version
		};
	struct kafka_api_versions_response resp;
	kafka_api_versions_response_init(&resp);
	resp.api_keys = v;
	resp.api_keys_count = n;
	return kafka_req_respond(req, (kafka_encode_fn)kafka_api_versions_response_encode, &resp);
}
