/*
 * kafka_admin.c: the topic administration APIs: CreateTopics (v0-7),
 * DeleteTopics (v0-6), CreatePartitions (v0-3) and DescribeConfigs (v0-4).
 *
 * Each handler decodes its request, calls the broker's topic functions
 * (broker/broker.h) on the connection's loop thread, and answers at once with
 * one result per topic or resource. Creating a topic writes the catalog and
 * fsyncs it on this thread: accepted, because admin requests are rare and
 * small. A client mistake (bad name, count, factor or config, unknown topic)
 * is an error code in that entry's result, never a closed connection; only a
 * request that does not decode closes it.
 *
 * Sluice is a single broker, node id 0, without replication: a replication
 * factor must be 1 (or -1, "the broker's default"), and a manual replica
 * assignment is accepted only when every partition lists exactly broker 0.
 * docs/kafka-admin.md lists the error each mistake gets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/diag.h"
#include "core/err.h"
#include "kafka/kafka_int.h"

/* Sluice's node id, as Metadata advertises it. */
#define ADMIN_NODE_ID 0

/* DescribeConfigs resource types (Kafka's ConfigResource.Type). */
#define RESOURCE_TOPIC 2
#define RESOURCE_BROKER 4

/* Config sources (DescribeConfigs v1+, CreateTopics v5+). */
#define CONFIG_SOURCE_DYNAMIC_TOPIC 1
#define CONFIG_SOURCE_STATIC_BROKER 4
#define CONFIG_SOURCE_DEFAULT 5

/* Config data types (DescribeConfigs v3+). */
enum admin_config_type {
	CONFIG_TYPE_UNKNOWN = 0,
	CONFIG_TYPE_BOOLEAN = 1,
	CONFIG_TYPE_STRING = 2,
	CONFIG_TYPE_INT = 3,
	CONFIG_TYPE_LONG = 5,
	CONFIG_TYPE_LIST = 7,
};

/* What DescribeConfigs says about each key Sluice reports. */
static const struct {
	const char *key;
	int8_t type;
	const char *doc;
} config_info[] = {
	{ "cleanup.policy", CONFIG_TYPE_LIST,
	  "Only \"delete\": old segments are removed by retention." },
	{ "retention.ms", CONFIG_TYPE_LONG,
	  "Delete segments older than this; -1 keeps them forever." },
	{ "retention.bytes", CONFIG_TYPE_LONG,
	  "Per partition: delete old segments past this size; -1 no limit." },
	{ "segment.bytes", CONFIG_TYPE_INT, "Roll a new log segment at this size." },
	{ "segment.ms", CONFIG_TYPE_LONG, "Roll a new log segment at this age." },
	{ "message.timestamp.type", CONFIG_TYPE_STRING, "CreateTime or LogAppendTime." },
	{ "max.message.bytes", CONFIG_TYPE_INT, "Largest record batch the topic accepts." },
	{ "message.max.bytes", CONFIG_TYPE_INT,
	  "Largest record batch a topic accepts by default." },
	{ "auto.create.topics.enable", CONFIG_TYPE_BOOLEAN, "Create unknown topics on first use." },
	{ "num.partitions", CONFIG_TYPE_INT,
	  "Partitions of auto-created topics and of CreateTopics with -1." },
	{ "log.retention.ms", CONFIG_TYPE_LONG, "Default retention.ms of topics." },
	{ "log.retention.bytes", CONFIG_TYPE_LONG, "Default retention.bytes of topics." },
	{ "log.segment.bytes", CONFIG_TYPE_INT, "Default segment.bytes of topics." },
	{ "sluice.log.flush", CONFIG_TYPE_STRING,
	  "When an append counts as durable: batch (fsync per batch), interval, or os." },
	{ "sluice.log.flush.interval.ms", CONFIG_TYPE_LONG,
	  "fsync period when sluice.log.flush=interval." },
};
#define N_CONFIG_INFO (sizeof config_info / sizeof config_info[0])

static const struct slice null_slice = { NULL, 0 };

static bool slice_eq(struct slice a, struct slice b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool slice_is(struct slice s, const char *c)
{
	return s.data && slice_eq(s, (struct slice){ (const uint8_t *)c, strlen(c) });
}

/* The name as printable text for messages (a null name prints as "null"). */
#define SLICE_FMT(s) (int)((s).data ? (s).len : 4), ((s).data ? (const char *)(s).data : "null")

/* Copies s into the arena; on failure returns "" and leaves the arena's err set. */
static struct slice arena_str(struct kafka_arena *a, const char *s)
{
	size_t len = strlen(s);
	char *p = kafka_arena_alloc(a, len + 1);
	if (!p)
		return (struct slice){ (const uint8_t *)"", 0 };
	memcpy(p, s, len + 1);
	return (struct slice){ (const uint8_t *)p, len };
}

/* ---- config lists (topic_config_foreach results, broker settings) ---- */

struct config_entry {
	struct slice name; /* in the arena, or borrowed from the request frame */
	struct slice value;
	bool is_default;
};

struct config_list {
	struct kafka_arena *arena;
	struct config_entry *e; /* in the arena */
	size_t n, cap;
};

/* Appends one entry (dropped if the arena is full: its err then fails the request). */
static void config_list_push(struct config_list *l, struct config_entry e)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct config_entry *a = kafka_arena_alloc_array(l->arena, cap, sizeof *a);
		if (!a)
			return;
		if (l->n)
			memcpy(a, l->e, l->n * sizeof *a);
		l->e = a;
		l->cap = cap;
	}
	l->e[l->n++] = e;
}

/* Appends one entry, copying key and value (topic_config_foreach callback). */
static void config_list_add(void *arg, const char *key, const char *value, bool is_default)
{
	struct config_list *l = arg;
	config_list_push(l, (struct config_entry){ arena_str(l->arena, key),
						   arena_str(l->arena, value), is_default });
}

static void config_list_add_i64(struct config_list *l, const char *key, int64_t v, int64_t def)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%lld", (long long)v);
	config_list_add(l, key, buf, v == def);
}

static int config_info_find(struct slice key)
{
	for (size_t i = 0; i < N_CONFIG_INFO; i++)
		if (slice_is(key, config_info[i].key))
			return (int)i;
	return -1;
}

/* ---- duplicate names in one request ---- */

enum dup_mark { DUP_NONE, DUP_FIRST, DUP_LATER };

struct name_ref {
	struct slice name;
	size_t idx;
};

static int name_ref_cmp(const void *pa, const void *pb)
{
	const struct name_ref *a = pa, *b = pb;
	size_t n = a->name.len < b->name.len ? a->name.len : b->name.len;
	int c = n ? memcmp(a->name.data, b->name.data, n) : 0;
	if (c)
		return c;
	if (a->name.len != b->name.len)
		return a->name.len < b->name.len ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/*
 * Marks entries whose name (a struct slice at offset off in each of n
 * elements of stride bytes at base) occurs more than once: DUP_FIRST at the
 * first occurrence, DUP_LATER at the others. Sorting keeps it O(n log n) for
 * requests with many topics. Returns an arena array, or NULL (arena full).
 */
static uint8_t *mark_duplicates(struct kafka_arena *a, const void *base, size_t n, size_t stride,
				size_t off)
{
	uint8_t *mark = kafka_arena_alloc_array(a, n, 1);
	struct name_ref *refs = kafka_arena_alloc_array(a, n, sizeof *refs);
	if (!mark || !refs)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		mark[i] = DUP_NONE;
		memcpy(&refs[i].name, (const char *)base + i * stride + off, sizeof refs[i].name);
		refs[i].idx = i;
	}
	if (n > 1)
		qsort(refs, n, sizeof *refs, name_ref_cmp);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && slice_eq(refs[j].name, refs[i].name))
			j++;
		if (j - i > 1) {
			mark[refs[i].idx] = DUP_FIRST; /* equal names sort by index */
			for (size_t k = i + 1; k < j; k++)
				mark[refs[k].idx] = DUP_LATER;
		}
		i = j;
	}
	return mark;
}

/* An error result's code and message, logged when the fault is Sluice's. */
static void result_fail(struct kafka_req *req, int16_t *code, struct slice *msg, int16_t err,
			struct slice name, const char *text)
{
	*code = err;
	*msg = arena_str(&req->arena, text);
	if (err == KAFKA_KAFKA_STORAGE_ERROR || err == KAFKA_UNKNOWN_SERVER_ERROR)
		diag_warn("kafka", "%s: %s v%d on topic '%.*s': %s", kafka_req_peer(req),
			  kafka_api_name(req->api_key), req->version, SLICE_FMT(name), text);
}

/* ---- CreateTopics v0-7 ---- */

/* Whether a manual assignment lists partitions 0..n-1 once each, each on broker 0 only. */
static bool assignment_single_broker(struct kafka_arena *a,
				     const struct kafka_create_topics_request_creatable_topic *t)
{
	size_t n = t->assignments_count;
	uint8_t *seen = kafka_arena_alloc_array(a, n, 1);
	if (!seen)
		return false;
	memset(seen, 0, n);
	for (size_t i = 0; i < n; i++) {
		const struct kafka_create_topics_request_creatable_replica_assignment *as =
			&t->assignments[i];
		if (as->partition_index < 0 || (size_t)as->partition_index >= n ||
		    seen[as->partition_index])
			return false;
		seen[as->partition_index] = 1;
		if (as->broker_ids_count != 1 || as->broker_ids[0] != ADMIN_NODE_ID)
			return false;
	}
	return true;
}

/* Sets a CreateTopics v5+ result's config list from l. */
static void create_result_configs(struct kafka_req *req,
				  struct kafka_create_topics_response_creatable_topic_result *res,
				  const struct config_list *l, int8_t source)
{
	struct kafka_create_topics_response_creatable_topic_configs *c =
		kafka_arena_alloc_array(&req->arena, l->n, sizeof *c);
	if (!c)
		return;
	for (size_t i = 0; i < l->n; i++) {
		kafka_create_topics_response_creatable_topic_configs_init(&c[i]);
		c[i].name = l->e[i].name;
		c[i].value = l->e[i].value;
		c[i].read_only = false;
		c[i].config_source = l->e[i].is_default ? CONFIG_SOURCE_DEFAULT : source;
		c[i].is_sensitive = false;
	}
	res->configs = c;
	res->configs_count = l->n;
	res->configs_null = false;
}

/*
 * Fills a successful result: partitions, factor 1, and from v5 the topic's
 * configs and id. A validate-only request has no topic to describe: it gets
 * the configs it asked for (see docs/kafka-admin.md).
 */
static void create_result_describe(struct kafka_req *req, struct broker *b,
				   const struct kafka_create_topics_request_creatable_topic *t,
				   int32_t parts, bool validate_only,
				   struct kafka_create_topics_response_creatable_topic_result *res)
{
	res->num_partitions = parts;
	res->replication_factor = 1;
	if (req->version < 5)
		return;
	struct config_list l = { .arena = &req->arena };
	if (validate_only) {
		for (size_t i = 0; i < t->configs_count; i++)
			config_list_push(&l, (struct config_entry){ t->configs[i].name,
								    t->configs[i].value, false });
		create_result_configs(req, res, &l, CONFIG_SOURCE_DYNAMIC_TOPIC);
		return;
	}
	struct topic *tp;
	if (broker_topic_get(b, t->name, false, &tp))
		return; /* deleted meanwhile: nothing to describe */
	memcpy(res->topic_id.bytes, topic_id(tp), sizeof res->topic_id.bytes);
	res->num_partitions = topic_partition_count(tp);
	topic_config_foreach(tp, config_list_add, &l);
	topic_release(tp);
	create_result_configs(req, res, &l, CONFIG_SOURCE_DYNAMIC_TOPIC);
}

/* Validates and creates one topic, filling res. */
static void create_one(struct kafka_req *req, struct broker *b,
		       const struct kafka_create_topics_request_creatable_topic *t,
		       bool validate_only,
		       struct kafka_create_topics_response_creatable_topic_result *res)
{
	struct kafka_arena *a = &req->arena;
	char msg[512];
	struct topic *tp;
	int rc = broker_topic_get(b, t->name, false, &tp);
	if (rc == -ERR_INVALID) {
		snprintf(msg, sizeof msg,
			 "Topic name '%.*s' is illegal: it must be 1 to %d characters of "
			 "[a-zA-Z0-9._-], and not '.' or '..'.",
			 SLICE_FMT(t->name), BROKER_TOPIC_NAME_MAX);
		result_fail(req, &res->error_code, &res->error_message,
			    KAFKA_INVALID_TOPIC_EXCEPTION, t->name, msg);
		return;
	}
	if (rc == 0) {
		topic_release(tp);
		snprintf(msg, sizeof msg, "Topic '%.*s' already exists.", SLICE_FMT(t->name));
		result_fail(req, &res->error_code, &res->error_message, KAFKA_TOPIC_ALREADY_EXISTS,
			    t->name, msg);
		return;
	}

	int32_t parts;
	if (t->assignments_count > 0) {
		if (t->num_partitions != -1 || t->replication_factor != -1) {
			result_fail(
				req, &res->error_code, &res->error_message, KAFKA_INVALID_REQUEST,
				t->name,
				"Both numPartitions or replicationFactor and replicasAssignments "
				"were set. Both cannot be used at the same time.");
			return;
		}
		if (t->assignments_count > BROKER_PARTITIONS_MAX) {
			snprintf(msg, sizeof msg, "Number of partitions must be 1 to %d, got %zu.",
				 BROKER_PARTITIONS_MAX, t->assignments_count);
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_PARTITIONS, t->name, msg);
			return;
		}
		if (!assignment_single_broker(a, t)) {
			snprintf(msg, sizeof msg,
				 "Replica assignment must list partitions 0 to %zu once each, "
				 "each on broker %d only: Sluice is a single broker.",
				 t->assignments_count - 1, ADMIN_NODE_ID);
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_REQUEST, t->name, msg);
			return;
		}
		parts = (int32_t)t->assignments_count;
	} else {
		parts = t->num_partitions;
		if (parts == -1 && req->version >= 4)
			parts = broker_config(b)->num_partitions;
		if (parts < 1 || parts > BROKER_PARTITIONS_MAX) {
			snprintf(msg, sizeof msg, "Number of partitions must be 1 to %d%s, got %d.",
				 BROKER_PARTITIONS_MAX,
				 req->version >= 4 ? " (or -1 for the default)" : "",
				 t->num_partitions);
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_PARTITIONS, t->name, msg);
			return;
		}
		if (t->replication_factor != 1 && t->replication_factor != -1) {
			snprintf(
				msg, sizeof msg,
				"Replication factor must be 1 (or -1 for the default): Sluice is a "
				"single broker, got %d.",
				t->replication_factor);
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_REPLICATION_FACTOR, t->name, msg);
			return;
		}
	}

	struct broker_topic_config *cfg = kafka_arena_alloc_array(a, t->configs_count, sizeof *cfg);
	if (!cfg)
		return; /* the arena's err closes the connection */
	for (size_t i = 0; i < t->configs_count; i++) {
		if (!t->configs[i].value.data) {
			snprintf(msg, sizeof msg,
				 "Null value not supported for topic config '%.*s'.",
				 SLICE_FMT(t->configs[i].name));
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_CONFIG, t->name, msg);
			return;
		}
		cfg[i] = (struct broker_topic_config){ t->configs[i].name, t->configs[i].value };
	}

	char errbuf[256] = "";
	rc = broker_topic_create(b, t->name, parts, cfg, t->configs_count, validate_only, errbuf,
				 sizeof errbuf);
	if (rc) {
		/* Name and count were checked above, so -ERR_INVALID is a config. */
		int16_t code = rc == -ERR_INVALID ? KAFKA_INVALID_CONFIG : kafka_error_from(rc);
		result_fail(req, &res->error_code, &res->error_message, code, t->name,
			    errbuf[0] ? errbuf : err_str(rc));
		return;
	}
	create_result_describe(req, b, t, parts, validate_only, res);
}

int kafka_handle_create_topics(struct kafka_req *req, struct reader *r)
{
	struct kafka_create_topics_request in;
	int rc = kafka_create_topics_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct broker *b = kafka_req_broker(req);
	struct kafka_create_topics_response out;
	kafka_create_topics_response_init(&out);
	uint8_t *dup =
		mark_duplicates(&req->arena, in.topics, in.topics_count, sizeof *in.topics,
				offsetof(struct kafka_create_topics_request_creatable_topic, name));
	out.topics = kafka_arena_alloc_array(&req->arena, in.topics_count, sizeof *out.topics);
	if (!dup || !out.topics)
		return req->arena.err ? req->arena.err : -ERR_NOMEM;
	for (size_t i = 0; i < in.topics_count; i++) {
		if (dup[i] == DUP_LATER)
			continue; /* one result per name, as Kafka answers */
		struct kafka_create_topics_response_creatable_topic_result *res =
			&out.topics[out.topics_count++];
		kafka_create_topics_response_creatable_topic_result_init(res);
		res->name = in.topics[i].name;
		res->error_message = null_slice;
		if (dup[i] == DUP_FIRST)
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_REQUEST, res->name,
				    "Found multiple entries for this topic.");
		else
			create_one(req, b, &in.topics[i], in.validate_only, res);
	}
	if (req->arena.err)
		return req->arena.err;
	return kafka_req_respond(req, (kafka_encode_fn)kafka_create_topics_response_encode, &out);
}

/* ---- DeleteTopics v0-6 ---- */

struct id_ref {
	uint8_t id[16];
	struct slice name; /* in the arena */
};

struct id_snapshot {
	struct kafka_arena *arena;
	struct id_ref *e;
	size_t n, cap;
};

/* broker_topic_foreach callback: records a topic's id and name. */
static void id_snapshot_add(void *arg, struct topic *t)
{
	struct id_snapshot *s = arg;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		struct id_ref *e = kafka_arena_alloc_array(s->arena, cap, sizeof *e);
		if (!e)
			return;
		if (s->n)
			memcpy(e, s->e, s->n * sizeof *e);
		s->e = e;
		s->cap = cap;
	}
	struct id_ref *ref = &s->e[s->n++];
	memcpy(ref->id, topic_id(t), sizeof ref->id);
	ref->name = arena_str(s->arena, topic_name(t));
}

static int id_ref_cmp(const void *a, const void *b)
{
	return memcmp(((const struct id_ref *)a)->id, ((const struct id_ref *)b)->id, 16);
}

static bool uuid_is_zero(const struct kafka_uuid *u)
{
	static const uint8_t zero[16];
	return memcmp(u->bytes, zero, sizeof zero) == 0;
}

/*
 * Deletes the topic named name. With want_id (DeleteTopics v6 by id) the
 * topic under that name must still have that id.
 */
static void delete_one(struct kafka_req *req, struct broker *b, struct slice name,
		       const struct kafka_uuid *want_id,
		       struct kafka_delete_topics_response_deletable_topic_result *res)
{
	char msg[320];
	struct topic *tp;
	int rc = broker_topic_get(b, name, false, &tp);
	if (rc == 0) {
		bool same = !want_id || memcmp(topic_id(tp), want_id->bytes, 16) == 0;
		memcpy(res->topic_id.bytes, topic_id(tp), sizeof res->topic_id.bytes);
		topic_release(tp);
		if (!same)
			rc = -ERR_NOT_FOUND;
		else
			rc = broker_topic_delete(b, name);
	} else {
		rc = -ERR_NOT_FOUND;
	}
	if (rc == -ERR_NOT_FOUND && want_id) {
		memcpy(res->topic_id.bytes, want_id->bytes, sizeof res->topic_id.bytes);
		result_fail(req, &res->error_code, &res->error_message, KAFKA_UNKNOWN_TOPIC_ID,
			    name, "This server does not host this topic ID.");
	} else if (rc == -ERR_NOT_FOUND) {
		snprintf(msg, sizeof msg, "Topic '%.*s' does not exist.", SLICE_FMT(name));
		result_fail(req, &res->error_code, &res->error_message,
			    KAFKA_UNKNOWN_TOPIC_OR_PARTITION, name, msg);
	} else if (rc) {
		result_fail(req, &res->error_code, &res->error_message, kafka_error_from(rc), name,
			    err_str(rc));
	}
}

int kafka_handle_delete_topics(struct kafka_req *req, struct reader *r)
{
	struct kafka_delete_topics_request in;
	int rc = kafka_delete_topics_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct broker *b = kafka_req_broker(req);
	bool by_state = req->version >= 6;
	size_t n = by_state ? in.topics_count : in.topic_names_count;
	struct kafka_delete_topics_response out;
	kafka_delete_topics_response_init(&out);
	out.responses = kafka_arena_alloc_array(&req->arena, n, sizeof *out.responses);
	if (!out.responses)
		return req->arena.err ? req->arena.err : -ERR_NOMEM;

	/* Topics named by id: one snapshot of every topic's id, sorted for lookups. */
	struct id_snapshot ids = { .arena = &req->arena };
	bool any_id = false;
	for (size_t i = 0; by_state && i < n; i++)
		any_id |= !in.topics[i].name.data && !uuid_is_zero(&in.topics[i].topic_id);
	if (any_id) {
		broker_topic_foreach(b, id_snapshot_add, &ids);
		if (ids.n > 1)
			qsort(ids.e, ids.n, sizeof *ids.e, id_ref_cmp);
	}

	for (size_t i = 0; i < n; i++) {
		struct kafka_delete_topics_response_deletable_topic_result *res =
			&out.responses[out.responses_count++];
		kafka_delete_topics_response_deletable_topic_result_init(res);
		res->error_message = null_slice;
		if (!by_state) {
			res->name = in.topic_names[i];
			delete_one(req, b, res->name, NULL, res);
			continue;
		}
		const struct kafka_delete_topics_request_delete_topic_state *st = &in.topics[i];
		res->name = st->name;
		res->topic_id = st->topic_id;
		bool has_id = !uuid_is_zero(&st->topic_id);
		if (st->name.data && has_id) {
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_REQUEST, st->name,
				    "You may not specify both topic name and topic id.");
		} else if (st->name.data) {
			delete_one(req, b, st->name, NULL, res);
		} else if (!has_id) {
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_REQUEST, st->name,
				    "Either a topic name or a topic id is required.");
		} else {
			struct id_ref key;
			memcpy(key.id, st->topic_id.bytes, sizeof key.id);
			const struct id_ref *found =
				ids.n ? bsearch(&key, ids.e, ids.n, sizeof *ids.e, id_ref_cmp)
				      : NULL;
			if (found)
				res->name = found->name;
			delete_one(req, b, found ? found->name : null_slice, &st->topic_id, res);
		}
	}
	if (req->arena.err)
		return req->arena.err;
	return kafka_req_respond(req, (kafka_encode_fn)kafka_delete_topics_response_encode, &out);
}

/* ---- CreatePartitions v0-3 ---- */

/* Raises one topic's partition count, filling res. */
static void add_partitions_one(struct kafka_req *req, struct broker *b,
			       const struct kafka_create_partitions_request_topic *t,
			       bool validate_only,
			       struct kafka_create_partitions_response_topic_result *res)
{
	char msg[512];
	struct topic *tp;
	if (broker_topic_get(b, t->name, false, &tp)) {
		snprintf(msg, sizeof msg, "Topic '%.*s' does not exist.", SLICE_FMT(t->name));
		result_fail(req, &res->error_code, &res->error_message,
			    KAFKA_UNKNOWN_TOPIC_OR_PARTITION, t->name, msg);
		return;
	}
	int32_t current = topic_partition_count(tp);
	topic_release(tp);
	if (t->count <= current || t->count > BROKER_PARTITIONS_MAX) {
		if (t->count == current)
			snprintf(msg, sizeof msg, "Topic already has %d partitions.", current);
		else if (t->count < current)
			snprintf(msg, sizeof msg,
				 "Topic currently has %d partitions, which is higher than the "
				 "requested %d.",
				 current, t->count);
		else
			snprintf(msg, sizeof msg,
				 "Number of partitions must be at most %d, got %d.",
				 BROKER_PARTITIONS_MAX, t->count);
		result_fail(req, &res->error_code, &res->error_message, KAFKA_INVALID_PARTITIONS,
			    t->name, msg);
		return;
	}
	/* An empty list is taken as "no assignment", like null. */
	if (!t->assignments_null && t->assignments_count > 0) {
		bool single = true;
		for (size_t i = 0; i < t->assignments_count; i++)
			single &= t->assignments[i].broker_ids_count == 1 &&
				  t->assignments[i].broker_ids[0] == ADMIN_NODE_ID;
		if (t->assignments_count != (size_t)(t->count - current))
			snprintf(msg, sizeof msg,
				 "Increasing the number of partitions by %d but %zu assignments "
				 "provided.",
				 t->count - current, t->assignments_count);
		else if (!single)
			snprintf(msg, sizeof msg,
				 "Each new partition must be assigned to broker %d only: "
				 "Sluice is a single broker.",
				 ADMIN_NODE_ID);
		if (!single || t->assignments_count != (size_t)(t->count - current)) {
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_REQUEST, t->name, msg);
			return;
		}
	}
	char errbuf[256] = "";
	int rc = broker_topic_add_partitions(b, t->name, t->count, validate_only, errbuf,
					     sizeof errbuf);
	if (rc) {
		int16_t code = rc == -ERR_NOT_FOUND ? KAFKA_UNKNOWN_TOPIC_OR_PARTITION
			       : rc == -ERR_INVALID ? KAFKA_INVALID_PARTITIONS
						    : kafka_error_from(rc);
		result_fail(req, &res->error_code, &res->error_message, code, t->name,
			    errbuf[0] ? errbuf : err_str(rc));
	}
}

int kafka_handle_create_partitions(struct kafka_req *req, struct reader *r)
{
	struct kafka_create_partitions_request in;
	int rc = kafka_create_partitions_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct broker *b = kafka_req_broker(req);
	struct kafka_create_partitions_response out;
	kafka_create_partitions_response_init(&out);
	uint8_t *dup =
		mark_duplicates(&req->arena, in.topics, in.topics_count, sizeof *in.topics,
				offsetof(struct kafka_create_partitions_request_topic, name));
	out.results = kafka_arena_alloc_array(&req->arena, in.topics_count, sizeof *out.results);
	if (!dup || !out.results)
		return req->arena.err ? req->arena.err : -ERR_NOMEM;
	for (size_t i = 0; i < in.topics_count; i++) {
		if (dup[i] == DUP_LATER)
			continue;
		struct kafka_create_partitions_response_topic_result *res =
			&out.results[out.results_count++];
		kafka_create_partitions_response_topic_result_init(res);
		res->name = in.topics[i].name;
		res->error_message = null_slice;
		if (dup[i] == DUP_FIRST)
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_REQUEST, res->name,
				    "Duplicate topic in request.");
		else
			add_partitions_one(req, b, &in.topics[i], in.validate_only, res);
	}
	if (req->arena.err)
		return req->arena.err;
	return kafka_req_respond(req, (kafka_encode_fn)kafka_create_partitions_response_encode,
				 &out);
}

/* ---- DescribeConfigs v0-4 ---- */

static const char *flush_name(enum config_flush f)
{
	switch (f) {
	case CONFIG_FLUSH_BATCH: return "batch";
	case CONFIG_FLUSH_INTERVAL: return "interval";
	case CONFIG_FLUSH_OS: return "os";
	}
	return "unknown";
}

/* The broker settings DescribeConfigs reports, defaults marked. */
static void broker_config_list(struct broker *b, struct config_list *l)
{
	const struct config *c = broker_config(b);
	struct config d; /* the embedded defaults, to tell which settings were changed */
	config_defaults(&d);
	config_list_add_i64(l, "message.max.bytes", c->message_max_bytes, d.message_max_bytes);
	config_list_add(l, "auto.create.topics.enable", c->auto_create_topics ? "true" : "false",
			!c->auto_create_topics == !d.auto_create_topics);
	config_list_add_i64(l, "num.partitions", c->num_partitions, d.num_partitions);
	config_list_add_i64(l, "log.retention.ms", c->log_retention_ms, d.log_retention_ms);
	config_list_add_i64(l, "log.retention.bytes", c->log_retention_bytes,
			    d.log_retention_bytes);
	config_list_add_i64(l, "log.segment.bytes", c->log_segment_bytes, d.log_segment_bytes);
	config_list_add(l, "sluice.log.flush", flush_name(c->log_flush),
			c->log_flush == d.log_flush);
	config_list_add_i64(l, "sluice.log.flush.interval.ms", c->log_flush_interval_ms,
			    d.log_flush_interval_ms);
}

/* Whether a DescribeConfigs resource asks for key (null or empty list: every key). */
static bool key_wanted(const struct kafka_describe_configs_request_resource *rs, struct slice key)
{
	if (rs->configuration_keys_null || rs->configuration_keys_count == 0)
		return true;
	for (size_t i = 0; i < rs->configuration_keys_count; i++)
		if (slice_eq(rs->configuration_keys[i], key))
			return true;
	return false;
}

/* Fills a result's configs from l: the wanted keys, with source, type and docs. */
static void describe_result_configs(struct kafka_req *req,
				    const struct kafka_describe_configs_request *in,
				    const struct kafka_describe_configs_request_resource *rs,
				    const struct config_list *l, int8_t source, bool read_only,
				    struct kafka_describe_configs_response_result *res)
{
	struct kafka_describe_configs_response_resource_result *c =
		kafka_arena_alloc_array(&req->arena, l->n, sizeof *c);
	if (!c)
		return;
	size_t n = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct config_entry *e = &l->e[i];
		if (!key_wanted(rs, e->name))
			continue;
		struct kafka_describe_configs_response_resource_result *x = &c[n++];
		kafka_describe_configs_response_resource_result_init(x);
		x->name = e->name;
		x->value = e->value;
		x->read_only = read_only;
		if (req->version == 0)
			x->is_default = e->is_default; /* v0 only; v1+ carry config_source */
		x->config_source = e->is_default ? CONFIG_SOURCE_DEFAULT : source;
		x->is_sensitive = false;
		int k = config_info_find(e->name);
		x->config_type = k >= 0 ? config_info[k].type : CONFIG_TYPE_UNKNOWN;
		x->documentation = null_slice;
		if (in->include_documentation && k >= 0)
			x->documentation = arena_str(&req->arena, config_info[k].doc);
	}
	res->configs = c;
	res->configs_count = n;
}

/* Answers one DescribeConfigs resource into res. */
static void describe_one(struct kafka_req *req, struct broker *b,
			 const struct kafka_describe_configs_request *in,
			 const struct kafka_describe_configs_request_resource *rs,
			 struct kafka_describe_configs_response_result *res)
{
	char msg[512];
	struct config_list l = { .arena = &req->arena };
	if (rs->resource_type == RESOURCE_TOPIC) {
		struct topic *tp;
		int rc = broker_topic_get(b, rs->resource_name, false, &tp);
		if (rc == -ERR_INVALID) {
			snprintf(msg, sizeof msg, "Topic name '%.*s' is illegal.",
				 SLICE_FMT(rs->resource_name));
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_TOPIC_EXCEPTION, rs->resource_name, msg);
			return;
		}
		if (rc) {
			snprintf(msg, sizeof msg, "Topic '%.*s' does not exist.",
				 SLICE_FMT(rs->resource_name));
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_UNKNOWN_TOPIC_OR_PARTITION, rs->resource_name, msg);
			return;
		}
		topic_config_foreach(tp, config_list_add, &l);
		topic_release(tp);
		describe_result_configs(req, in, rs, &l, CONFIG_SOURCE_DYNAMIC_TOPIC, false, res);
	} else if (rs->resource_type == RESOURCE_BROKER) {
		/* "" asks for the cluster-wide settings, "0" for this broker's: the same here. */
		if (rs->resource_name.len != 0 && !slice_is(rs->resource_name, "0")) {
			snprintf(msg, sizeof msg,
				 "Unexpected broker id, expected %d or empty string, but received "
				 "'%.*s'.",
				 ADMIN_NODE_ID, SLICE_FMT(rs->resource_name));
			result_fail(req, &res->error_code, &res->error_message,
				    KAFKA_INVALID_REQUEST, rs->resource_name, msg);
			return;
		}
		broker_config_list(b, &l);
		/* Settings come from the file or flags and change only with a restart. */
		describe_result_configs(req, in, rs, &l, CONFIG_SOURCE_STATIC_BROKER, true, res);
	} else {
		snprintf(msg, sizeof msg,
			 "Unsupported resource type %d: Sluice describes topics (2) "
			 "and the broker (4).",
			 rs->resource_type);
		result_fail(req, &res->error_code, &res->error_message, KAFKA_INVALID_REQUEST,
			    rs->resource_name, msg);
	}
}

int kafka_handle_describe_configs(struct kafka_req *req, struct reader *r)
{
	struct kafka_describe_configs_request in;
	int rc = kafka_describe_configs_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct broker *b = kafka_req_broker(req);
	struct kafka_describe_configs_response out;
	kafka_describe_configs_response_init(&out);
	out.results = kafka_arena_alloc_array(&req->arena, in.resources_count, sizeof *out.results);
	if (!out.results)
		return req->arena.err ? req->arena.err : -ERR_NOMEM;
	for (size_t i = 0; i < in.resources_count; i++) {
		const struct kafka_describe_configs_request_resource *rs = &in.resources[i];
		struct kafka_describe_configs_response_result *res =
			&out.results[out.results_count++];
		kafka_describe_configs_response_result_init(res);
		res->resource_type = rs->resource_type;
		res->resource_name = rs->resource_name;
		res->error_message = null_slice;
		describe_one(req, b, &in, rs, res);
	}
	if (req->arena.err)
		return req->arena.err;
	return kafka_req_respond(req, (kafka_encode_fn)kafka_describe_configs_response_encode,
				 &out);
}
