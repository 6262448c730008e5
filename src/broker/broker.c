/*
 * broker.c: topics and their lifecycle: the catalog, the topic table, the
 * flusher, retention timers, and opening/closing everything at start/stop.
 *
 * The topic table is a fixed array of hash chains under a read-write lock;
 * lookups take a reference on the topic so that deletion never frees a topic a
 * request still uses. Catalog calls are serialized by a mutex (SQLite handle
 * is single-threaded) and happen only on admin paths, never per message.
 */
#include "broker/broker.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/broker_int.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "storage/catalog.h"
#include "storage/flusher.h"
#include "storage/log.h"

#define TABLE_BUCKETS 1024

/* The topic configs Sluice honors, with their Kafka names. */
static const char *const topic_config_keys[] = {
	"cleanup.policy", "retention.ms",	    "retention.bytes",	 "segment.bytes",
	"segment.ms",	  "message.timestamp.type", "max.message.bytes",
};
#define N_TOPIC_CONFIG_KEYS (sizeof topic_config_keys / sizeof topic_config_keys[0])

/* Kafka's topic name rule: 1..249 of [a-zA-Z0-9._-], not "." or "..". */
static int topic_name_check(struct slice name)
{
	if (name.data == NULL || name.len == 0 || name.len > BROKER_TOPIC_NAME_MAX)
		return -ERR_INVALID;
	if ((name.len == 1 && name.data[0] == '.') ||
	    (name.len == 2 && name.data[0] == '.' && name.data[1] == '.'))
		return -ERR_INVALID;
	for (size_t i = 0; i < name.len; i++) {
		uint8_t c = name.data[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -ERR_INVALID;
	}
	return 0;
}

/* Parses a decimal int64 config value with a lower bound. */
static int parse_i64(const char *v, int64_t min, int64_t *out)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < min)
		return -ERR_INVALID;
	*out = n;
	return 0;
}

/*
 * Applies one topic config to t's effective settings; -ERR_INVALID with the
 * reason in errbuf for unknown keys or bad values.
 */
static int topic_config_apply(struct topic *t, const char *key, const char *value, char *errbuf,
			      size_t errlen)
{
	int64_t n;
	int rc = 0;
	if (strcmp(key, "cleanup.policy") == 0) {
		if (strcmp(value, "delete") != 0)
			rc = -ERR_INVALID;
	} else if (strcmp(key, "retention.ms") == 0) {
		rc = parse_i64(value, -1, &n);
		if (!rc)
			t->log_cfg.retention_ms = n;
	} else if (strcmp(key, "retention.bytes") == 0) {
		rc = parse_i64(value, -1, &n);
		if (!rc)
			t->log_cfg.retention_bytes = n;
	} else if (strcmp(key, "segment.bytes") == 0) {
		rc = parse_i64(value, 14, &n);
		if (!rc && n > INT32_MAX)
			rc = -ERR_INVALID;
		if (!rc)
			t->log_cfg.segment_bytes = n;
	} else if (strcmp(key, "segment.ms") == 0) {
		rc = parse_i64(value, 1, &n);
		if (!rc)
			t->log_cfg.segment_ms = n;
	} else if (strcmp(key, "message.timestamp.type") == 0) {
		if (strcmp(value, "CreateTime") == 0)
			t->log_append_time = false;
		else if (strcmp(value, "LogAppendTime") == 0)
			t->log_append_time = true;
		else
			rc = -ERR_INVALID;
	} else if (strcmp(key, "max.message.bytes") == 0) {
		rc = parse_i64(value, 61, &n);
		if (!rc && n > INT32_MAX)
			rc = -ERR_INVALID;
		if (!rc)
			t->log_cfg.max_batch_bytes = n;
	} else {
		snprintf(errbuf, errlen, "unknown or unsupported topic config '%s'", key);
		return -ERR_INVALID;
	}
	if (rc)
		snprintf(errbuf, errlen, "invalid value '%s' for topic config '%s'", value, key);
	return rc;
}

/* The topic settings every topic starts from: the broker's log.* keys. */
static void topic_defaults(const struct broker *b, struct topic *t)
{
	log_config_defaults(&t->log_cfg);
	t->log_cfg.segment_bytes = b->cfg.log_segment_bytes;
	t->log_cfg.segment_ms = b->cfg.log_segment_ms;
	t->log_cfg.index_interval_bytes = b->cfg.log_index_interval_bytes;
	t->log_cfg.retention_ms = b->cfg.log_retention_ms;
	t->log_cfg.retention_bytes = b->cfg.log_retention_bytes;
	t->log_cfg.max_batch_bytes = b->cfg.message_max_bytes;
	t->log_append_time = false;
}

static void topic_free(struct topic *t)
{
	if (t->deleted && t->dir[0] && rmdir(t->dir) && errno != ENOENT)
		diag_warn("broker", "cannot remove %s: %s", t->dir, strerror(errno));
	struct partition **parts = atomic_load(&t->parts);
	int32_t n = atomic_load(&t->n_parts);
	for (int32_t i = 0; i < n; i++)
		partition_free(parts[i]);
	free(parts);
	for (size_t i = 0; i < t->n_retired; i++)
		free(t->retired[i]);
	free(t->retired);
	for (size_t i = 0; i < t->n_overrides; i++) {
		free(t->overrides[i].key);
		free(t->overrides[i].value);
	}
	free(t->overrides);
	free(t);
}

struct topic *topic_ref(struct topic *t)
{
	atomic_fetch_add(&t->refs, 1);
	return t;
}

struct topic *topic_ref_get(struct topic *t)
{
	return topic_ref(t);
}

void topic_release(struct topic *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		topic_free(t);
}

/*
 * Builds a topic object with configs applied (no logs opened, not in the
 * table). Returns 0 or -ERR_INVALID / -ERR_NOMEM.
 */
static int topic_build(struct broker *b, struct slice name, const struct broker_topic_config *configs,
		       size_t n_configs, char *errbuf, size_t errlen, struct topic **out)
{
	struct topic *t = calloc(1, sizeof *t);
	if (!t)
		return -ERR_NOMEM;
	atomic_init(&t->refs, 1);
	t->broker = b;
	memcpy(t->name, name.data, name.len);
	topic_defaults(b, t);
	if (n_configs) {
		t->overrides = calloc(n_configs, sizeof *t->overrides);
		if (!t->overrides) {
			topic_free(t);
			return -ERR_NOMEM;
		}
	}
	for (size_t i = 0; i < n_configs; i++) {
		struct topic_override *o = &t->overrides[t->n_overrides];
		o->key = strndup((const char *)configs[i].key.data, configs[i].key.len);
		o->value = configs[i].value.data
				   ? strndup((const char *)configs[i].value.data, configs[i].value.len)
				   : strdup("");
		if (!o->key || !o->value) {
			free(o->key);
			free(o->value);
			topic_free(t);
			return -ERR_NOMEM;
		}
		t->n_overrides++;
		int rc = topic_config_apply(t, o->key, o->value, errbuf, errlen);
		if (rc) {
			topic_free(t);
			return rc;
		}
	}
	if (log_config_check(&t->log_cfg)) {
		snprintf(errbuf, errlen, "topic configs out of range");
		topic_free(t);
		return -ERR_INVALID;
	}
	*out = t;
	return 0;
}

/* Opens partitions [from, to) of t and publishes them. Table write lock held or t unpublished. */
static int topic_grow(struct topic *t, int32_t to)
{
	if (!t->dir[0]) {
		int n = snprintf(t->dir, sizeof t->dir, "%s/%s.", t->broker->topics_dir, t->name);
		for (int i = 0; i < 16 && n > 0 && (size_t)n + 2 < sizeof t->dir; i++, n += 2)
			snprintf(t->dir + n, sizeof t->dir - (size_t)n, "%02x", t->id[i]);
		if (mkdir(t->dir, 0755) && errno != EEXIST) {
			int rc = -errno;
			diag_error("broker", "cannot create %s: %s", t->dir, strerror(errno));
			t->dir[0] = 0;
			return rc;
		}
	}
	int32_t from = atomic_load(&t->n_parts);
	struct partition **old = atomic_load(&t->parts);
	struct partition **parts = calloc((size_t)to, sizeof *parts);
	if (!parts)
		return -ERR_NOMEM;
	if (from)
		memcpy(parts, old, (size_t)from * sizeof *parts);
	for (int32_t i = from; i < to; i++) {
		int rc = partition_open(t, i, &parts[i]);
		if (rc) {
			for (int32_t k = from; k < i; k++)
				partition_free(parts[k]);
			free(parts);
			return rc;
		}
	}
	if (old) {
		struct partition ***r = realloc(t->retired, (t->n_retired + 1) * sizeof *r);
		if (!r) {
			for (int32_t k = from; k < to; k++)
				partition_free(parts[k]);
			free(parts);
			return -ERR_NOMEM;
		}
		t->retired = r;
		t->retired[t->n_retired++] = old;
	}
	atomic_store(&t->parts, parts);
	atomic_store(&t->n_parts, to);
	return 0;
}

/* Finds a topic in the table (lock held). */
static struct topic *table_find(struct broker *b, const char *name, size_t len)
{
	struct topic *t = b->buckets[broker_hash(name, len) % b->n_buckets];
	for (; t; t = t->hash_next)
		if (strlen(t->name) == len && memcmp(t->name, name, len) == 0)
			return t;
	return NULL;
}

static void table_insert(struct broker *b, struct topic *t)
{
	size_t i = broker_hash(t->name, strlen(t->name)) % b->n_buckets;
	t->hash_next = b->buckets[i];
	b->buckets[i] = t;
	b->n_topics++;
}

static void table_remove(struct broker *b, struct topic *t)
{
	struct topic **pp = &b->buckets[broker_hash(t->name, strlen(t->name)) % b->n_buckets];
	for (; *pp; pp = &(*pp)->hash_next) {
		if (*pp == t) {
			*pp = t->hash_next;
			b->n_topics--;
			return;
		}
	}
}

/* Catalog config rows into a growable array (used at start). */
struct config_rows {
	struct broker_topic_config *rows;
	char **mem;
	size_t n;
};

static int collect_config(void *arg, const struct catalog_config *c)
{
	struct config_rows *cr = arg;
	struct broker_topic_config *rows = realloc(cr->rows, (cr->n + 1) * sizeof *rows);
	char **mem = realloc(cr->mem, (cr->n + 1) * 2 * sizeof *mem);
	if (rows)
		cr->rows = rows;
	if (mem)
		cr->mem = mem;
	if (!rows || !mem)
		return -ERR_NOMEM;
	char *k = malloc(c->key.len + 1), *v = malloc(c->value.len + 1);
	if (!k || !v) {
		free(k);
		free(v);
		return -ERR_NOMEM;
	}
	memcpy(k, c->key.data, c->key.len);
	memcpy(v, c->value.data, c->value.len);
	cr->mem[cr->n * 2] = k;
	cr->mem[cr->n * 2 + 1] = v;
	cr->rows[cr->n] = (struct broker_topic_config){ { (uint8_t *)k, c->key.len },
							{ (uint8_t *)v, c->value.len } };
	cr->n++;
	return 0;
}

static void config_rows_free(struct config_rows *cr)
{
	for (size_t i = 0; i < cr->n * 2; i++)
		free(cr->mem[i]);
	free(cr->mem);
	free(cr->rows);
	memset(cr, 0, sizeof *cr);
}

/* Loads one catalog topic at start: builds it and opens its logs. */
static int load_topic(void *arg, const struct catalog_topic *ct)
{
	struct broker *b = arg;
	struct config_rows cr = { 0 };
	struct catalog_topic full;
	char errbuf[256] = "";
	int rc = catalog_topic_get(b->catalog, ct->name, &full, collect_config, &cr);
	struct topic *t = NULL;
	if (!rc)
		rc = topic_build(b, ct->name, cr.rows, cr.n, errbuf, sizeof errbuf, &t);
	if (!rc) {
		memcpy(t->id, ct->id, 16);
		rc = topic_grow(t, ct->partitions);
	}
	if (!rc) {
		table_insert(b, t);
	} else {
		diag_error("broker", "cannot load topic '%.*s': %s %s", (int)ct->name.len,
			   (const char *)ct->name.data, err_str(rc), errbuf);
		if (t)
			topic_release(t);
	}
	config_rows_free(&cr);
	return rc;
}

/*
 * Removes directories under topics/ that belong to no topic in the catalog:
 * what a crash during a topic deletion left behind.
 */
static void sweep_orphans(struct broker *b)
{
	DIR *d = opendir(b->topics_dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[4700];
		snprintf(path, sizeof path, "%s/%s", b->topics_dir, e->d_name);
		bool known = false;
		for (size_t i = 0; i < b->n_buckets && !known; i++)
			for (struct topic *t = b->buckets[i]; t && !known; t = t->hash_next)
				known = strcmp(t->dir, path) == 0;
		if (known)
			continue;
		diag_warn("broker", "removing %s: no topic in the catalog owns it (an interrupted deletion)",
			  path);
		int r = log_remove_tree(path);
		if (r)
			diag_warn("broker", "cannot remove %s: %s", path, err_str(r));
	}
	closedir(d);
}

static void retention_tick(uv_timer_t *timer)
{
	struct broker *b = timer->data;
	struct loop *self = loop_current();
	int64_t now = clock_now_ms();
	pthread_rwlock_rdlock(&b->table_lock);
	for (size_t i = 0; i < b->n_buckets; i++) {
		for (struct topic *t = b->buckets[i]; t; t = t->hash_next) {
			struct partition **parts = atomic_load(&t->parts);
			int32_t n = atomic_load(&t->n_parts);
			for (int32_t k = 0; k < n; k++)
				if (parts[k]->owner == self)
					partition_retention_run(parts[k], now);
		}
	}
	pthread_rwlock_unlock(&b->table_lock);
}

static void queue_tick(uv_timer_t *timer)
{
	bqueue_tick(timer->data, clock_now_ms());
}

struct timer_ctl {
	struct broker *b;
	int index;
	bool start;
};

static void timer_control(void *arg)
{
	struct timer_ctl *tc = arg;
	uv_timer_t *timer = &tc->b->retention_timers[tc->index];
	uv_timer_t *qtimer = &tc->b->queue_timers[tc->index];
	if (tc->start) {
		uv_timer_init(loop_uv(loop_current()), timer);
		timer->data = tc->b;
		uint64_t every = (uint64_t)tc->b->cfg.log_retention_check_interval_ms;
		uv_timer_start(timer, retention_tick, every, every);
		uv_timer_init(loop_uv(loop_current()), qtimer);
		qtimer->data = tc->b;
		uv_timer_start(qtimer, queue_tick, BQUEUE_TICK_MS, BQUEUE_TICK_MS);
	} else {
		uv_timer_stop(timer);
		uv_timer_stop(qtimer);
	}
}

int broker_open(const struct config *cfg, struct loop_group *loops, struct broker **out)
{
	struct broker *b = calloc(1, sizeof *b);
	if (!b)
		return -ERR_NOMEM;
	b->cfg = *cfg;
	b->loops = loops;
	pthread_mutex_init(&b->catalog_lock, NULL);
	pthread_rwlock_init(&b->table_lock, NULL);
	pthread_rwlock_init(&b->queue_lock, NULL);
	b->n_buckets = TABLE_BUCKETS;
	b->buckets = calloc(b->n_buckets, sizeof *b->buckets);
	int rc = b->buckets ? 0 : -ERR_NOMEM;
	char path[4300];
	snprintf(b->topics_dir, sizeof b->topics_dir, "%s/topics", cfg->data_dir);
	if (!rc && mkdir(b->topics_dir, 0755) && errno != EEXIST) {
		rc = -errno;
		diag_error("broker", "cannot create %s: %s", b->topics_dir, strerror(errno));
	}
	if (!rc) {
		rc = flusher_new(cfg->log_flush, cfg->log_flush_interval_ms, &b->flusher);
		if (rc)
			diag_error("broker", "cannot start the flusher: %s", err_str(rc));
	}
	if (!rc) {
		snprintf(path, sizeof path, "%s/catalog.db", cfg->data_dir);
		rc = catalog_open(path, &b->catalog);
		if (rc)
			diag_error("broker", "cannot open catalog %s: %s", path, err_str(rc));
	}
	if (!rc)
		rc = catalog_topic_list(b->catalog, load_topic, b);
	if (!rc)
		sweep_orphans(b);
	if (!rc) {
		/* Non-durable queues do not outlive the process that declared them. */
		snprintf(path, sizeof path, "%s/queues-transient", cfg->data_dir);
		log_remove_tree(path);
		/* Durable queues are opened by the AMQP front end (bqueue_load_all),
		 * which knows how to read their stored arguments. */
	}
	if (!rc) {
		b->n_timers = loop_group_size(loops);
		b->retention_timers = calloc((size_t)b->n_timers, sizeof *b->retention_timers);
		b->queue_timers = calloc((size_t)b->n_timers, sizeof *b->queue_timers);
		if (!b->retention_timers || !b->queue_timers)
			rc = -ERR_NOMEM;
		for (int i = 0; !rc && i < b->n_timers; i++) {
			struct timer_ctl tc = { b, i, true };
			rc = loop_call(loop_group_get(loops, i), timer_control, &tc);
		}
	}
	if (rc) {
		broker_close(b);
		return rc;
	}
	diag_info("broker", "opened %zu topics in %s (log.flush=%s)", b->n_topics, cfg->data_dir,
		  cfg->log_flush == CONFIG_FLUSH_BATCH	  ? "batch"
		  : cfg->log_flush == CONFIG_FLUSH_INTERVAL ? "interval"
							    : "os");
	*out = b;
	return 0;
}

void broker_quiesce(struct broker *b)
{
	for (int i = 0; b->retention_timers && i < b->n_timers; i++) {
		struct timer_ctl tc = { b, i, false };
		loop_call(loop_group_get(b->loops, i), timer_control, &tc);
	}
}

void broker_close(struct broker *b)
{
	if (!b)
		return;
	/* Pending acknowledgements complete first; their posts fail once loops stopped. */
	if (b->flusher) {
		diag_info("broker", "%llu log fsyncs while running",
			  (unsigned long long)flusher_fsync_count(b->flusher));
		flusher_free(b->flusher);
	}
	b->flusher = NULL;
	for (size_t i = 0; b->buckets && i < b->n_buckets; i++) {
		struct topic *t = b->buckets[i];
		while (t) {
			struct topic *next = t->hash_next;
			topic_release(t);
			t = next;
		}
	}
	free(b->buckets);
	bqueue_close_all(b);
	if (b->catalog)
		catalog_close(b->catalog);
	free(b->retention_timers);
	free(b->queue_timers);
	pthread_mutex_destroy(&b->catalog_lock);
	pthread_rwlock_destroy(&b->table_lock);
	pthread_rwlock_destroy(&b->queue_lock);
	free(b);
}

const struct config *broker_config(const struct broker *b)
{
	return &b->cfg;
}

int64_t broker_next_producer_id(struct broker *b)
{
	(void)b;
	static _Atomic int64_t last;
	int64_t want = clock_now_ms() << 16;
	int64_t prev = atomic_load(&last);
	int64_t next;
	do {
		next = want > prev ? want : prev + 1;
	} while (!atomic_compare_exchange_weak(&last, &prev, next));
	return next;
}

int broker_topic_create(struct broker *b, struct slice name, int32_t partitions,
			const struct broker_topic_config *configs, size_t n_configs,
			bool validate_only, char *errbuf, size_t errlen)
{
	if (topic_name_check(name)) {
		snprintf(errbuf, errlen, "invalid topic name: 1..249 characters of [a-zA-Z0-9._-]");
		return -ERR_INVALID;
	}
	if (partitions < 1 || partitions > BROKER_PARTITIONS_MAX) {
		snprintf(errbuf, errlen, "partitions must be 1..%d", BROKER_PARTITIONS_MAX);
		return -ERR_INVALID;
	}
	struct topic *t;
	int rc = topic_build(b, name, configs, n_configs, errbuf, errlen, &t);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&b->table_lock);
	if (table_find(b, (const char *)name.data, name.len)) {
		rc = -ERR_EXISTS;
		snprintf(errbuf, errlen, "topic '%s' already exists", t->name);
	}
	if (!rc && !validate_only) {
		struct catalog_config *cc = NULL;
		if (n_configs && !(cc = calloc(n_configs, sizeof *cc)))
			rc = -ERR_NOMEM;
		for (size_t i = 0; !rc && i < n_configs; i++)
			cc[i] = (struct catalog_config){ catalog_cstr(t->overrides[i].key),
							 catalog_cstr(t->overrides[i].value) };
		pthread_mutex_lock(&b->catalog_lock);
		if (!rc)
			rc = catalog_topic_create(b->catalog, name, partitions, cc, n_configs);
		struct catalog_topic ct;
		if (!rc)
			rc = catalog_topic_get(b->catalog, name, &ct, NULL, NULL);
		if (!rc)
			memcpy(t->id, ct.id, 16); /* the catalog chose it; directories are named by it */
		pthread_mutex_unlock(&b->catalog_lock);
		free(cc);
		if (!rc)
			rc = topic_grow(t, partitions);
		if (!rc) {
			table_insert(b, topic_ref(t));
			diag_info("broker", "created topic '%s' with %d partitions", t->name, partitions);
		} else if (rc != -ERR_EXISTS) {
			snprintf(errbuf, errlen, "cannot create topic: %s", err_str(rc));
			pthread_mutex_lock(&b->catalog_lock);
			catalog_topic_delete(b->catalog, name);
			pthread_mutex_unlock(&b->catalog_lock);
		}
	}
	pthread_rwlock_unlock(&b->table_lock);
	topic_release(t);
	return rc;
}

int broker_topic_delete(struct broker *b, struct slice name)
{
	pthread_rwlock_wrlock(&b->table_lock);
	struct topic *t = name.data ? table_find(b, (const char *)name.data, name.len) : NULL;
	if (!t) {
		pthread_rwlock_unlock(&b->table_lock);
		return -ERR_NOT_FOUND;
	}
	table_remove(b, t);
	t->deleted = true;
	pthread_mutex_lock(&b->catalog_lock);
	int rc = catalog_topic_delete(b->catalog, name);
	pthread_mutex_unlock(&b->catalog_lock);
	if (rc)
		diag_warn("broker", "catalog delete of topic '%s': %s", t->name, err_str(rc));
	struct partition **parts = atomic_load(&t->parts);
	int32_t n = atomic_load(&t->n_parts);
	for (int32_t i = 0; i < n; i++)
		partition_delete_async(parts[i]);
	pthread_rwlock_unlock(&b->table_lock);
	diag_info("broker", "deleted topic '%s'", t->name);
	topic_release(t);
	return 0;
}

int broker_topic_add_partitions(struct broker *b, struct slice name, int32_t total,
				bool validate_only, char *errbuf, size_t errlen)
{
	pthread_rwlock_wrlock(&b->table_lock);
	struct topic *t = name.data ? table_find(b, (const char *)name.data, name.len) : NULL;
	int rc = 0;
	if (!t) {
		rc = -ERR_NOT_FOUND;
		snprintf(errbuf, errlen, "unknown topic");
	} else if (total <= atomic_load(&t->n_parts) || total > BROKER_PARTITIONS_MAX) {
		rc = -ERR_INVALID;
		snprintf(errbuf, errlen, "topic has %d partitions; the new count must be larger (max %d)",
			 atomic_load(&t->n_parts), BROKER_PARTITIONS_MAX);
	} else if (!validate_only) {
		pthread_mutex_lock(&b->catalog_lock);
		rc = catalog_topic_add_partitions(b->catalog, name, total);
		pthread_mutex_unlock(&b->catalog_lock);
		if (!rc)
			rc = topic_grow(t, total);
		if (rc)
			snprintf(errbuf, errlen, "cannot add partitions: %s", err_str(rc));
	}
	pthread_rwlock_unlock(&b->table_lock);
	return rc;
}

int broker_topic_get(struct broker *b, struct slice name, bool create, struct topic **out)
{
	if (topic_name_check(name))
		return -ERR_INVALID;
	pthread_rwlock_rdlock(&b->table_lock);
	struct topic *t = table_find(b, (const char *)name.data, name.len);
	if (t)
		topic_ref(t);
	pthread_rwlock_unlock(&b->table_lock);
	if (!t && create && b->cfg.auto_create_topics) {
		char errbuf[256];
		int rc = broker_topic_create(b, name, b->cfg.num_partitions, NULL, 0, false, errbuf,
					     sizeof errbuf);
		if (rc && rc != -ERR_EXISTS)
			return rc;
		return broker_topic_get(b, name, false, out);
	}
	if (!t)
		return -ERR_NOT_FOUND;
	*out = t;
	return 0;
}

void broker_topic_foreach(struct broker *b, void (*fn)(void *arg, struct topic *t), void *arg)
{
	/* Snapshot references, then call without the lock (fn may create topics). */
	pthread_rwlock_rdlock(&b->table_lock);
	size_t n = 0, cap = b->n_topics;
	struct topic **all = cap ? calloc(cap, sizeof *all) : NULL;
	for (size_t i = 0; all && i < b->n_buckets; i++)
		for (struct topic *t = b->buckets[i]; t && n < cap; t = t->hash_next)
			all[n++] = topic_ref(t);
	pthread_rwlock_unlock(&b->table_lock);
	for (size_t i = 0; i < n; i++) {
		fn(arg, all[i]);
		topic_release(all[i]);
	}
	free(all);
}

const char *topic_name(const struct topic *t)
{
	return t->name;
}

const uint8_t *topic_id(const struct topic *t)
{
	return t->id;
}

int32_t topic_partition_count(const struct topic *t)
{
	return atomic_load(&((struct topic *)t)->n_parts);
}

struct partition *topic_partition(struct topic *t, int32_t i)
{
	int32_t n = atomic_load(&t->n_parts);
	if (i < 0 || i >= n)
		return NULL;
	return atomic_load(&t->parts)[i];
}

bool topic_log_append_time(const struct topic *t)
{
	return t->log_append_time;
}

int64_t topic_max_message_bytes(const struct topic *t)
{
	return t->log_cfg.max_batch_bytes;
}

void topic_config_foreach(struct topic *t,
			  void (*fn)(void *arg, const char *key, const char *value, bool is_default),
			  void *arg)
{
	char buf[32];
	for (size_t k = 0; k < N_TOPIC_CONFIG_KEYS; k++) {
		const char *key = topic_config_keys[k];
		const char *value = NULL;
		bool is_default = true;
		for (size_t i = 0; i < t->n_overrides; i++) {
			if (strcmp(t->overrides[i].key, key) == 0) {
				value = t->overrides[i].value;
				is_default = false;
			}
		}
		if (!value) {
			int64_t n = 0;
			if (strcmp(key, "cleanup.policy") == 0)
				value = "delete";
			else if (strcmp(key, "message.timestamp.type") == 0)
				value = "CreateTime";
			else if (strcmp(key, "retention.ms") == 0)
				n = t->log_cfg.retention_ms;
			else if (strcmp(key, "retention.bytes") == 0)
				n = t->log_cfg.retention_bytes;
			else if (strcmp(key, "segment.bytes") == 0)
				n = t->log_cfg.segment_bytes;
			else if (strcmp(key, "segment.ms") == 0)
				n = t->log_cfg.segment_ms;
			else
				n = t->log_cfg.max_batch_bytes;
			if (!value) {
				snprintf(buf, sizeof buf, "%lld", (long long)n);
				value = buf;
			}
		}
		fn(arg, key, value, is_default);
	}
}
