/*
 * test_catalog.c: the SQLite metadata catalog (src/storage/catalog.h).
 *
 * Each test opens a fresh catalog in its own temp directory. Raw sqlite3 calls
 * stand in for an outside party that damages or edits the file (garbage,
 * damaged pages, a newer schema version, out-of-range values).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "storage/catalog.h"

#define S(s) catalog_cstr(s)
#define B(p, n) ((struct slice){ (const uint8_t *)(p), (n) })
#define NONE ((struct slice){ NULL, 0 })

struct fixture {
	char dir[64];
	char path[128];
	struct catalog *cat;
};

static void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	strcpy(f->dir, "/tmp/sluice-catalog-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/catalog.db", f->dir);
	assert_int_equal(catalog_open(f->path, &f->cat), 0);
	assert_non_null(f->cat);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	catalog_close(f->cat);
	rm_rf(f->dir);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	catalog_close(f->cat);
	f->cat = NULL;
	assert_int_equal(catalog_open(f->path, &f->cat), 0);
}

/* ---- raw SQLite, as an outside party ---- */

static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "raw_exec %s: %s\n", sql, msg);
	sqlite3_free(msg);
	sqlite3_close(db);
	assert_int_equal(rc, SQLITE_OK);
}

static int64_t raw_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void raw_text(const char *path, const char *sql, char *buf, size_t cap)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Reads at most cap bytes of path; returns the count. */
static size_t read_file(const char *path, void *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, cap);
	assert_true(n >= 0);
	close(fd);
	return (size_t)n;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint8_t rng_byte(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint8_t)rng_state;
}

/* ---- collectors for list callbacks ---- */

#define NAMES_MAX 64
struct names {
	size_t n;
	struct {
		uint8_t b[400];
		size_t len;
		int32_t num;
	} v[NAMES_MAX];
};

static void names_add(struct names *ns, struct slice s, int32_t num)
{
	assert_true(ns->n < NAMES_MAX);
	assert_true(s.len <= sizeof(ns->v[0].b));
	assert_non_null(s.data);
	memcpy(ns->v[ns->n].b, s.data, s.len);
	ns->v[ns->n].len = s.len;
	ns->v[ns->n].num = num;
	ns->n++;
}

static void assert_name(const struct names *ns, size_t i, struct slice s)
{
	assert_true(i < ns->n);
	assert_int_equal(ns->v[i].len, s.len);
	assert_memory_equal(ns->v[i].b, s.data, s.len);
}

static void assert_slice(struct slice got, struct slice want)
{
	assert_non_null(got.data);
	assert_int_equal(got.len, want.len);
	if (want.len > 0)
		assert_memory_equal(got.data, want.data, want.len);
}

static int topic_collect(void *arg, const struct catalog_topic *t)
{
	names_add(arg, t->name, t->partitions);
	return 0;
}

/* Configs: key then value, alternating. */
static int config_collect(void *arg, const struct catalog_config *c)
{
	names_add(arg, c->key, 0);
	names_add(arg, c->value, 0);
	return 0;
}

static int exchange_collect(void *arg, const struct catalog_exchange *x)
{
	names_add(arg, x->name, x->durable | x->auto_delete << 1 | x->internal << 2);
	assert_null(x->mem);
	return 0;
}

static int queue_collect(void *arg, const struct catalog_queue *q)
{
	names_add(arg, q->name, q->durable | q->exclusive << 1 | q->auto_delete << 2);
	return 0;
}

/* Bindings as "source>Q:dest/key" or "source>X:dest/key". */
static int binding_collect(void *arg, const struct catalog_binding *b)
{
	char buf[400];
	snprintf(buf, sizeof(buf), "%.*s>%c:%.*s/%.*s", (int)b->source.len,
			 (const char *)b->source.data, b->dest_kind == CATALOG_DEST_QUEUE ? 'Q' : 'X',
			 (int)b->destination.len, (const char *)b->destination.data,
			 (int)b->routing_key.len, (const char *)b->routing_key.data);
	/* %.*s stops at a NUL in a name and snprintf truncates: strlen is what was written. */
	names_add(arg, B(buf, strlen(buf)), (int32_t)b->arguments.len);
	return 0;
}

static int group_collect(void *arg, struct slice g)
{
	names_add(arg, g, 0);
	return 0;
}

struct offsets_seen {
	size_t n;
	char last_topic[256];
	int32_t last_partition;
	int64_t sum;
	int ordered;
};

static int offset_collect(void *arg, const struct catalog_offset *o)
{
	struct offsets_seen *s = arg;
	char topic[256];
	snprintf(topic, sizeof(topic), "%.*s", (int)o->topic.len, (const char *)o->topic.data);
	int cmp = strcmp(topic, s->last_topic);
	if (s->n > 0 && (cmp < 0 || (cmp == 0 && o->partition <= s->last_partition)))
		s->ordered = 0;
	strcpy(s->last_topic, topic);
	s->last_partition = o->partition;
	s->sum += o->offset;
	s->n++;
	return 0;
}

static struct catalog_exchange exchange(const char *name, const char *type)
{
	return (struct catalog_exchange){ .name = S(name), .type = S(type), .durable = true };
}

static struct catalog_queue queue(const char *name)
{
	return (struct catalog_queue){ .name = S(name), .durable = true };
}

static struct catalog_binding qbind(const char *src, const char *q, const char *key)
{
	return (struct catalog_binding){ .source = S(src), .dest_kind = CATALOG_DEST_QUEUE,
					 .destination = S(q), .routing_key = S(key) };
}

static struct catalog_binding xbind(const char *src, const char *x, const char *key)
{
	return (struct catalog_binding){ .source = S(src), .dest_kind = CATALOG_DEST_EXCHANGE,
					 .destination = S(x), .routing_key = S(key) };
}

static struct catalog_offset off(const char *topic, int32_t p, int64_t offset)
{
	return (struct catalog_offset){ .topic = S(topic), .partition = p, .offset = offset,
					.leader_epoch = 3, .metadata = S("m"),
					.commit_time_ms = 1700000000000 };
}

/* ---- open, schema ---- */

static void test_open_sets_up_schema(void **state)
{
	struct fixture *f = *state;
	char mode[16];
	raw_text(f->path, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal");
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"), CATALOG_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->path, "PRAGMA application_id"), 0x536c6963);
	assert_int_equal(raw_int(f->path,
		"SELECT count(*) FROM sqlite_schema WHERE type = 'table'"), 8);
	/* A second connection to the same file, and reopening, keep the schema. */
	struct catalog *other;
	assert_int_equal(catalog_open(f->path, &other), 0);
	assert_int_equal(catalog_topic_create(other, S("t"), 1, NULL, 0), 0);
	catalog_close(other);
	reopen(f);
	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, NULL, NULL), 0);
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"), CATALOG_SCHEMA_VERSION);
}

static void test_open_bad_paths(void **state)
{
	struct fixture *f = *state;
	struct catalog *c = (struct catalog *)1;
	assert_int_equal(catalog_open("", &c), -ERR_INVALID);
	assert_null(c);
	assert_int_equal(catalog_open(NULL, &c), -ERR_INVALID);
	char p[256];
	snprintf(p, sizeof(p), "%s/no/such/dir/catalog.db", f->dir);
	assert_int_equal(catalog_open(p, &c), -ERR_IO);
	assert_null(c);
	assert_int_equal(catalog_open(f->dir, &c), -ERR_IO); /* a directory */
	assert_null(c);
}

/* ---- topics ---- */

static void test_topic_create_get_list_delete(void **state)
{
	struct fixture *f = *state;
	struct catalog_config cfg[] = {
		{ S("retention.ms"), S("60000") },
		{ S("cleanup.policy"), S("delete") },
	};
	assert_int_equal(catalog_topic_create(f->cat, S("orders"), 6, cfg, 2), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("audit"), 1, NULL, 0), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("zeta"), 3, NULL, 0), 0);

	struct catalog_topic t, t2;
	struct names cfgs = { 0 };
	assert_int_equal(catalog_topic_get(f->cat, S("orders"), &t, config_collect, &cfgs), 0);
	assert_int_equal(t.partitions, 6);
	assert_slice(t.name, S("orders"));
	assert_true(t.created_ms > 1600000000000);
	static const uint8_t zero[16];
	assert_memory_not_equal(t.id, zero, 16);
	assert_int_equal(cfgs.n, 4); /* in key order */
	assert_name(&cfgs, 0, S("cleanup.policy"));
	assert_name(&cfgs, 1, S("delete"));
	assert_name(&cfgs, 2, S("retention.ms"));
	assert_name(&cfgs, 3, S("60000"));
	assert_int_equal(catalog_topic_get(f->cat, S("audit"), &t2, NULL, NULL), 0);
	assert_memory_not_equal(t.id, t2.id, 16);

	struct names ns = { 0 };
	assert_int_equal(catalog_topic_list(f->cat, topic_collect, &ns), 0);
	assert_int_equal(ns.n, 3);
	assert_name(&ns, 0, S("audit"));
	assert_name(&ns, 1, S("orders"));
	assert_int_equal(ns.v[1].num, 6);
	assert_name(&ns, 2, S("zeta"));

	assert_int_equal(catalog_topic_delete(f->cat, S("orders")), 0);
	assert_int_equal(catalog_topic_get(f->cat, S("orders"), &t, NULL, NULL), -ERR_NOT_FOUND);
	memset(&ns, 0, sizeof(ns));
	assert_int_equal(catalog_topic_list(f->cat, topic_collect, &ns), 0);
	assert_int_equal(ns.n, 2);
	/* Its configs went with it: a new topic of the same name starts clean. */
	assert_int_equal(catalog_topic_create(f->cat, S("orders"), 1, NULL, 0), 0);
	memset(&cfgs, 0, sizeof(cfgs));
	assert_int_equal(catalog_topic_get(f->cat, S("orders"), &t2, config_collect, &cfgs), 0);
	assert_int_equal(cfgs.n, 0);
	assert_memory_not_equal(t.id, t2.id, 16);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM topic_configs"), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM partitions"), 1 + 1 + 3);
}

static void test_topic_errors(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 2, NULL, 0), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 2, NULL, 0), -ERR_EXISTS);
	assert_int_equal(catalog_topic_delete(f->cat, S("nope")), -ERR_NOT_FOUND);
	assert_int_equal(catalog_topic_get(f->cat, S("nope"), NULL, NULL, NULL), -ERR_NOT_FOUND);
	assert_int_equal(catalog_topic_add_partitions(f->cat, S("nope"), 5), -ERR_NOT_FOUND);
	assert_int_equal(catalog_topic_config_set(f->cat, S("nope"), S("k"), S("v")),
			 -ERR_NOT_FOUND);

	/* Names: empty, missing, one byte over Kafka's 249. */
	char long_name[251];
	memset(long_name, 'a', sizeof(long_name));
	assert_int_equal(catalog_topic_create(f->cat, B("", 0), 1, NULL, 0), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, NONE, 1, NULL, 0), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, B(NULL, 3), 1, NULL, 0), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, B(long_name, 250), 1, NULL, 0), -ERR_INVALID);
	assert_int_equal(catalog_topic_get(f->cat, B(long_name, 250), NULL, NULL, NULL),
			 -ERR_INVALID);
	assert_int_equal(catalog_topic_delete(f->cat, B("", 0)), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, B(long_name, 249), 1, NULL, 0), 0);

	/* Partition counts. */
	assert_int_equal(catalog_topic_create(f->cat, S("p0"), 0, NULL, 0), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, S("p-1"), -1, NULL, 0), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, S("pmax"), CATALOG_PARTITIONS_MAX + 1,
					      NULL, 0), -ERR_INVALID);

	/* Configs: a repeated key, a null value, an empty key: nothing is created. */
	struct catalog_config dup[] = { { S("a"), S("1") }, { S("a"), S("2") } };
	assert_int_equal(catalog_topic_create(f->cat, S("c1"), 1, dup, 2), -ERR_INVALID);
	struct catalog_config nullv[] = { { S("a"), NONE } };
	assert_int_equal(catalog_topic_create(f->cat, S("c2"), 1, nullv, 1), -ERR_INVALID);
	struct catalog_config nokey[] = { { B("", 0), S("1") } };
	assert_int_equal(catalog_topic_create(f->cat, S("c3"), 1, nokey, 1), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, S("c4"), 1, NULL, 2), -ERR_INVALID);
	struct catalog_config longkey[] = { { B(long_name, 256), S("1") } };
	assert_int_equal(catalog_topic_create(f->cat, S("c5"), 1, longkey, 1), -ERR_INVALID);
	for (const char *n = "1234"; *n; n++) {
		char name[3] = { 'c', *n, 0 };
		assert_int_equal(catalog_topic_get(f->cat, S(name), NULL, NULL, NULL),
				 -ERR_NOT_FOUND);
	}
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM topics"), 2);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM partitions"), 3);
}

static void test_topic_add_partitions(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 3, NULL, 0), 0);
	struct catalog_offset o = off("t", 4, 10);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), &o, 1, NULL), -ERR_NOT_FOUND);

	assert_int_equal(catalog_topic_add_partitions(f->cat, S("t"), 5), 0);
	struct catalog_topic t;
	assert_int_equal(catalog_topic_get(f->cat, S("t"), &t, NULL, NULL), 0);
	assert_int_equal(t.partitions, 5);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), &o, 1, NULL), 0);
	o.partition = 5;
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), &o, 1, NULL), -ERR_NOT_FOUND);

	/* Only growth is allowed. */
	assert_int_equal(catalog_topic_add_partitions(f->cat, S("t"), 5), -ERR_INVALID);
	assert_int_equal(catalog_topic_add_partitions(f->cat, S("t"), 4), -ERR_INVALID);
	assert_int_equal(catalog_topic_add_partitions(f->cat, S("t"), 0), -ERR_INVALID);
	assert_int_equal(catalog_topic_add_partitions(f->cat, S("t"), CATALOG_PARTITIONS_MAX + 1),
			 -ERR_INVALID);
	assert_int_equal(catalog_topic_get(f->cat, S("t"), &t, NULL, NULL), 0);
	assert_int_equal(t.partitions, 5);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM partitions"), 5);
	assert_int_equal(raw_int(f->path, "SELECT max(idx) FROM partitions"), 4);
}

static void test_topic_configs(void **state)
{
	struct fixture *f = *state;
	struct catalog_config cfg[] = { { S("retention.ms"), S("1000") } };
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 1, cfg, 1), 0);
	assert_int_equal(catalog_topic_config_set(f->cat, S("t"), S("retention.ms"), S("2000")), 0);
	assert_int_equal(catalog_topic_config_set(f->cat, S("t"), S("segment.bytes"), S("1024")), 0);
	assert_int_equal(catalog_topic_config_set(f->cat, S("t"), S("empty"), B("", 0)), 0);
	struct names c = { 0 };
	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, config_collect, &c), 0);
	assert_int_equal(c.n, 6);
	assert_name(&c, 0, S("empty"));
	assert_name(&c, 1, B("", 0));
	assert_name(&c, 2, S("retention.ms"));
	assert_name(&c, 3, S("2000"));
	assert_name(&c, 4, S("segment.bytes"));
	assert_name(&c, 5, S("1024"));

	/* A null value removes the key; removing an absent key is fine. */
	assert_int_equal(catalog_topic_config_set(f->cat, S("t"), S("retention.ms"), NONE), 0);
	assert_int_equal(catalog_topic_config_set(f->cat, S("t"), S("absent"), NONE), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, config_collect, &c), 0);
	assert_int_equal(c.n, 4);
	assert_name(&c, 2, S("segment.bytes"));

	assert_int_equal(catalog_topic_config_set(f->cat, S("t"), B("", 0), S("v")), -ERR_INVALID);
	char *big = calloc(1, CATALOG_CONFIG_VALUE_MAX + 1);
	assert_int_equal(catalog_topic_config_set(f->cat, S("t"), S("k"),
						  B(big, CATALOG_CONFIG_VALUE_MAX + 1)),
			 -ERR_INVALID);
	assert_int_equal(catalog_topic_config_set(f->cat, S("t"), S("k"),
						  B(big, CATALOG_CONFIG_VALUE_MAX)), 0);
	free(big);
}

/* ---- exchanges, queues ---- */

static void test_exchanges(void **state)
{
	struct fixture *f = *state;
	static const uint8_t args[] = { 0, 0, 0, 5, 1, 'k', 'S', 0, 0 };
	struct catalog_exchange x = exchange("logs", "topic");
	x.auto_delete = true;
	x.internal = true;
	x.arguments = B(args, sizeof(args));
	assert_int_equal(catalog_exchange_create(f->cat, &x), 0);
	assert_int_equal(catalog_exchange_create(f->cat, &x), -ERR_EXISTS);
	struct catalog_exchange y = exchange("amq.direct", "direct");
	y.durable = false;
	assert_int_equal(catalog_exchange_create(f->cat, &y), 0);

	struct catalog_exchange got;
	assert_int_equal(catalog_exchange_get(f->cat, S("logs"), &got), 0);
	assert_slice(got.name, S("logs"));
	assert_slice(got.type, S("topic"));
	assert_slice(got.arguments, B(args, sizeof(args)));
	assert_true(got.durable && got.auto_delete && got.internal);
	assert_non_null(got.mem);
	assert_string_equal((const char *)got.type.data, "topic"); /* NUL-terminated copy */
	catalog_exchange_fini(&got);
	assert_null(got.mem);
	assert_int_equal(catalog_exchange_get(f->cat, S("amq.direct"), &got), 0);
	assert_false(got.durable || got.auto_delete || got.internal);
	assert_int_equal(got.arguments.len, 0);
	catalog_exchange_fini(&got);

	struct names ns = { 0 };
	assert_int_equal(catalog_exchange_list(f->cat, exchange_collect, &ns), 0);
	assert_int_equal(ns.n, 2);
	assert_name(&ns, 0, S("amq.direct"));
	assert_int_equal(ns.v[0].num, 0);
	assert_name(&ns, 1, S("logs"));
	assert_int_equal(ns.v[1].num, 7);

	assert_int_equal(catalog_exchange_delete(f->cat, S("logs")), 0);
	assert_int_equal(catalog_exchange_delete(f->cat, S("logs")), -ERR_NOT_FOUND);
	assert_int_equal(catalog_exchange_get(f->cat, S("logs"), &got), -ERR_NOT_FOUND);
	assert_null(got.mem);

	/* Bad input. */
	struct catalog_exchange bad = exchange("", "direct");
	assert_int_equal(catalog_exchange_create(f->cat, &bad), -ERR_INVALID);
	bad = exchange("e", "");
	assert_int_equal(catalog_exchange_create(f->cat, &bad), -ERR_INVALID);
	char name[256];
	memset(name, 'x', sizeof(name));
	bad = exchange("e", "direct");
	bad.name = B(name, 256);
	assert_int_equal(catalog_exchange_create(f->cat, &bad), -ERR_INVALID);
	bad.name = B(name, 255);
	assert_int_equal(catalog_exchange_create(f->cat, &bad), 0);
	uint8_t *big = calloc(1, CATALOG_ARGUMENTS_MAX + 1);
	bad = exchange("big", "direct");
	bad.arguments = B(big, CATALOG_ARGUMENTS_MAX + 1);
	assert_int_equal(catalog_exchange_create(f->cat, &bad), -ERR_INVALID);
	bad.arguments = B(big, CATALOG_ARGUMENTS_MAX);
	big[CATALOG_ARGUMENTS_MAX - 1] = 0x5a;
	assert_int_equal(catalog_exchange_create(f->cat, &bad), 0);
	assert_int_equal(catalog_exchange_get(f->cat, S("big"), &got), 0);
	assert_slice(got.arguments, B(big, CATALOG_ARGUMENTS_MAX));
	catalog_exchange_fini(&got);
	free(big);
	assert_int_equal(catalog_exchange_create(f->cat, NULL), -ERR_INVALID);
}

static void test_queues(void **state)
{
	struct fixture *f = *state;
	struct catalog_queue q = queue("jobs");
	q.exclusive = true;
	q.arguments = S("x-max-length");
	assert_int_equal(catalog_queue_create(f->cat, &q), 0);
	assert_int_equal(catalog_queue_create(f->cat, &q), -ERR_EXISTS);
	struct catalog_queue q2 = queue("alpha");
	q2.durable = false;
	q2.auto_delete = true;
	assert_int_equal(catalog_queue_create(f->cat, &q2), 0);

	struct catalog_queue got;
	assert_int_equal(catalog_queue_get(f->cat, S("jobs"), &got), 0);
	assert_slice(got.name, S("jobs"));
	assert_slice(got.arguments, S("x-max-length"));
	assert_true(got.durable && got.exclusive && !got.auto_delete);
	catalog_queue_fini(&got);

	struct names ns = { 0 };
	assert_int_equal(catalog_queue_list(f->cat, queue_collect, &ns), 0);
	assert_int_equal(ns.n, 2);
	assert_name(&ns, 0, S("alpha"));
	assert_int_equal(ns.v[0].num, 4);
	assert_name(&ns, 1, S("jobs"));
	assert_int_equal(ns.v[1].num, 3);

	assert_int_equal(catalog_queue_delete(f->cat, S("jobs")), 0);
	assert_int_equal(catalog_queue_delete(f->cat, S("jobs")), -ERR_NOT_FOUND);
	assert_int_equal(catalog_queue_get(f->cat, S("jobs"), &got), -ERR_NOT_FOUND);
	struct catalog_queue bad = queue("");
	assert_int_equal(catalog_queue_create(f->cat, &bad), -ERR_INVALID);
	bad = queue("q");
	bad.arguments = B(NULL, 4);
	assert_int_equal(catalog_queue_create(f->cat, &bad), -ERR_INVALID);
	assert_int_equal(catalog_queue_get(f->cat, B("", 0), &got), -ERR_INVALID);
	/* Queues and exchanges are separate name spaces. */
	struct catalog_exchange x = exchange("alpha", "fanout");
	assert_int_equal(catalog_exchange_create(f->cat, &x), 0);
}

/* ---- bindings ---- */

static void make_topology(struct catalog *cat)
{
	const char *xs[] = { "x1", "x2", "x3" };
	for (int i = 0; i < 3; i++) {
		struct catalog_exchange x = exchange(xs[i], "direct");
		assert_int_equal(catalog_exchange_create(cat, &x), 0);
	}
	const char *qs[] = { "q1", "q2" };
	for (int i = 0; i < 2; i++) {
		struct catalog_queue q = queue(qs[i]);
		assert_int_equal(catalog_queue_create(cat, &q), 0);
	}
}

static void test_bindings(void **state)
{
	struct fixture *f = *state;
	make_topology(f->cat);
	struct catalog_binding b1 = qbind("x1", "q1", "red");
	struct catalog_binding b2 = qbind("x1", "q2", "");
	struct catalog_binding b3 = xbind("x2", "x1", "blue");
	struct catalog_binding b4 = qbind("x1", "q1", "red");
	b4.arguments = S("x-match=all");
	assert_int_equal(catalog_binding_add(f->cat, &b1), 0);
	assert_int_equal(catalog_binding_add(f->cat, &b2), 0);
	assert_int_equal(catalog_binding_add(f->cat, &b3), 0);
	assert_int_equal(catalog_binding_add(f->cat, &b4), 0); /* differs only in arguments */
	assert_int_equal(catalog_binding_add(f->cat, &b1), -ERR_EXISTS);
	assert_int_equal(catalog_binding_add(f->cat, &b4), -ERR_EXISTS);

	struct names ns = { 0 };
	assert_int_equal(catalog_binding_list(f->cat, binding_collect, &ns), 0);
	assert_int_equal(ns.n, 4);
	assert_name(&ns, 0, S("x1>Q:q1/red"));
	assert_name(&ns, 1, S("x1>Q:q2/"));
	assert_name(&ns, 2, S("x2>X:x1/blue"));
	assert_name(&ns, 3, S("x1>Q:q1/red"));
	assert_int_equal(ns.v[3].num, strlen("x-match=all"));

	memset(&ns, 0, sizeof(ns));
	assert_int_equal(catalog_binding_list_source(f->cat, S("x1"), binding_collect, &ns), 0);
	assert_int_equal(ns.n, 3);
	memset(&ns, 0, sizeof(ns));
	assert_int_equal(catalog_binding_list_destination(f->cat, CATALOG_DEST_QUEUE, S("q1"),
							  binding_collect, &ns), 0);
	assert_int_equal(ns.n, 2);
	memset(&ns, 0, sizeof(ns));
	assert_int_equal(catalog_binding_list_destination(f->cat, CATALOG_DEST_EXCHANGE, S("x1"),
							  binding_collect, &ns), 0);
	assert_int_equal(ns.n, 1);
	assert_name(&ns, 0, S("x2>X:x1/blue"));
	memset(&ns, 0, sizeof(ns));
	assert_int_equal(catalog_binding_list_source(f->cat, S("nope"), binding_collect, &ns), 0);
	assert_int_equal(catalog_binding_list_destination(f->cat, CATALOG_DEST_QUEUE, S("x1"),
							  binding_collect, &ns), 0);
	assert_int_equal(ns.n, 0);

	/* Missing endpoints, wrong kind, bad input. */
	struct catalog_binding bad = qbind("nope", "q1", "k");
	assert_int_equal(catalog_binding_add(f->cat, &bad), -ERR_NOT_FOUND);
	bad = qbind("x1", "nope", "k");
	assert_int_equal(catalog_binding_add(f->cat, &bad), -ERR_NOT_FOUND);
	bad = qbind("x1", "x2", "k"); /* x2 is an exchange, not a queue */
	assert_int_equal(catalog_binding_add(f->cat, &bad), -ERR_NOT_FOUND);
	bad = qbind("q1", "q2", "k"); /* a queue is no source */
	assert_int_equal(catalog_binding_add(f->cat, &bad), -ERR_NOT_FOUND);
	bad = qbind("x1", "q1", "k");
	bad.dest_kind = (enum catalog_dest)7;
	assert_int_equal(catalog_binding_add(f->cat, &bad), -ERR_INVALID);
	char key[256];
	memset(key, 'k', sizeof(key));
	bad = qbind("x1", "q1", "");
	bad.routing_key = B(key, 256);
	assert_int_equal(catalog_binding_add(f->cat, &bad), -ERR_INVALID);
	bad.routing_key = B(key, 255);
	assert_int_equal(catalog_binding_add(f->cat, &bad), 0);
	bad = qbind("", "q1", "k");
	assert_int_equal(catalog_binding_add(f->cat, &bad), -ERR_INVALID);
	assert_int_equal(catalog_binding_add(f->cat, NULL), -ERR_INVALID);
	assert_int_equal(catalog_binding_list_destination(f->cat, (enum catalog_dest)3, S("q1"),
							  binding_collect, &ns), -ERR_INVALID);

	/* Remove: exact identity only. */
	struct catalog_binding r = qbind("x1", "q1", "red");
	r.arguments = S("x-match=any");
	assert_int_equal(catalog_binding_remove(f->cat, &r), -ERR_NOT_FOUND);
	assert_int_equal(catalog_binding_remove(f->cat, &b4), 0);
	assert_int_equal(catalog_binding_remove(f->cat, &b4), -ERR_NOT_FOUND);
	assert_int_equal(catalog_binding_remove(f->cat, &b3), 0);
	r = xbind("x2", "x1", "blue");
	assert_int_equal(catalog_binding_remove(f->cat, &r), -ERR_NOT_FOUND);
	memset(&ns, 0, sizeof(ns));
	assert_int_equal(catalog_binding_list(f->cat, binding_collect, &ns), 0);
	assert_int_equal(ns.n, 3);
	assert_name(&ns, 0, S("x1>Q:q1/red"));
	assert_int_equal(ns.v[0].num, 0);
	/* An empty routing key and empty arguments match as empty, not as NULL. */
	assert_int_equal(catalog_binding_remove(f->cat, &b2), 0);
	assert_int_equal(catalog_binding_remove(f->cat, &b2), -ERR_NOT_FOUND);
}

static void test_exchange_delete_cascades_bindings(void **state)
{
	struct fixture *f = *state;
	make_topology(f->cat);
	struct catalog_binding bs[] = {
		qbind("x1", "q1", "a"), /* from x1 */
		xbind("x2", "x1", "b"), /* to x1 */
		xbind("x1", "x3", "c"), /* from x1 to x3 */
		qbind("x2", "q1", "d"), /* unrelated */
		xbind("x1", "x1", "e"), /* x1 to itself */
	};
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(catalog_binding_add(f->cat, &bs[i]), 0);
	assert_int_equal(catalog_exchange_delete(f->cat, S("x1")), 0);
	struct names ns = { 0 };
	assert_int_equal(catalog_binding_list(f->cat, binding_collect, &ns), 0);
	assert_int_equal(ns.n, 1);
	assert_name(&ns, 0, S("x2>Q:q1/d"));
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM bindings"), 1);
	/* x3 and the queues are untouched. */
	struct catalog_exchange x;
	assert_int_equal(catalog_exchange_get(f->cat, S("x3"), &x), 0);
	catalog_exchange_fini(&x);
}

static void test_queue_delete_cascades(void **state)
{
	struct fixture *f = *state;
	make_topology(f->cat);
	struct catalog_binding b1 = qbind("x1", "q1", "a");
	struct catalog_binding b2 = qbind("x1", "q2", "a");
	assert_int_equal(catalog_binding_add(f->cat, &b1), 0);
	assert_int_equal(catalog_binding_add(f->cat, &b2), 0);
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q1"), S("acked:0-99")), 0);
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q2"), S("acked:0-5")), 0);

	assert_int_equal(catalog_queue_delete(f->cat, S("q1")), 0);
	struct names ns = { 0 };
	assert_int_equal(catalog_binding_list(f->cat, binding_collect, &ns), 0);
	assert_int_equal(ns.n, 1);
	assert_name(&ns, 0, S("x1>Q:q2/a"));
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue_checkpoints"), 1);

	/* A queue created again under the name starts with no checkpoint. */
	struct catalog_queue q = queue("q1");
	assert_int_equal(catalog_queue_create(f->cat, &q), 0);
	uint8_t *data = (uint8_t *)1;
	size_t len = 99;
	assert_int_equal(catalog_queue_checkpoint_get(f->cat, S("q1"), &data, &len), 0);
	assert_null(data);
	assert_int_equal(len, 0);
}

/* ---- checkpoints ---- */

static void test_queue_checkpoints(void **state)
{
	struct fixture *f = *state;
	struct catalog_queue q = queue("q");
	assert_int_equal(catalog_queue_create(f->cat, &q), 0);
	uint8_t *data;
	size_t len;
	assert_int_equal(catalog_queue_checkpoint_get(f->cat, S("q"), &data, &len), 0);
	assert_null(data);
	static const uint8_t ck[] = { 1, 0, 2, 0, 0, 0xff };
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q"), B(ck, sizeof(ck))), 0);
	assert_int_equal(catalog_queue_checkpoint_get(f->cat, S("q"), &data, &len), 0);
	assert_int_equal(len, sizeof(ck));
	assert_memory_equal(data, ck, sizeof(ck));
	free(data);

	/* Replaced, not appended; an empty checkpoint is not "none". */
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q"), B("", 0)), 0);
	assert_int_equal(catalog_queue_checkpoint_get(f->cat, S("q"), &data, &len), 0);
	assert_non_null(data);
	assert_int_equal(len, 0);
	free(data);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue_checkpoints"), 1);

	/* A 1 MiB checkpoint round-trips; one over the cap is refused. */
	size_t n = 1 << 20;
	uint8_t *big = malloc(CATALOG_CHECKPOINT_MAX + 1);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = rng_byte();
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q"), B(big, n)), 0);
	assert_int_equal(catalog_queue_checkpoint_get(f->cat, S("q"), &data, &len), 0);
	assert_int_equal(len, n);
	assert_memory_equal(data, big, n);
	free(data);
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q"),
						      B(big, CATALOG_CHECKPOINT_MAX + 1)),
			 -ERR_TOO_LARGE);
	/* Exactly at the cap is fine (SQLite's own length limit sits above it). */
	big[CATALOG_CHECKPOINT_MAX - 1] = 0x77;
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q"),
						      B(big, CATALOG_CHECKPOINT_MAX)), 0);
	assert_int_equal(catalog_queue_checkpoint_get(f->cat, S("q"), &data, &len), 0);
	assert_int_equal(len, CATALOG_CHECKPOINT_MAX);
	assert_int_equal(data[CATALOG_CHECKPOINT_MAX - 1], 0x77);
	assert_memory_equal(data, big, 4096);
	free(data);
	free(big);

	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("nope"), S("x")), -ERR_NOT_FOUND);
	assert_int_equal(catalog_queue_checkpoint_get(f->cat, S("nope"), &data, &len),
			 -ERR_NOT_FOUND);
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, B("", 0), S("x")), -ERR_INVALID);
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q"), B(NULL, 3)), -ERR_INVALID);
}

/* ---- offsets ---- */

static void test_offsets_commit_fetch_list(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(catalog_topic_create(f->cat, S("b"), 2, NULL, 0), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("a"), 2, NULL, 0), 0);
	struct catalog_offset os[] = { off("b", 1, 100), off("a", 1, 7), off("b", 0, 50) };
	os[1].metadata = NONE;        /* null */
	os[2].metadata = B("", 0);    /* empty, not null */
	os[2].leader_epoch = -1;
	assert_int_equal(catalog_offsets_commit(f->cat, S("g1"), os, 3, NULL), 0);

	struct catalog_offset o;
	assert_int_equal(catalog_offset_fetch(f->cat, S("g1"), S("b"), 1, &o), 0);
	assert_int_equal(o.offset, 100);
	assert_int_equal(o.leader_epoch, 3);
	assert_int_equal(o.commit_time_ms, 1700000000000);
	assert_int_equal(o.partition, 1);
	assert_slice(o.topic, S("b"));
	assert_slice(o.metadata, S("m"));
	catalog_offset_fini(&o);
	assert_int_equal(catalog_offset_fetch(f->cat, S("g1"), S("a"), 1, &o), 0);
	assert_null(o.metadata.data);
	catalog_offset_fini(&o);
	assert_int_equal(catalog_offset_fetch(f->cat, S("g1"), S("b"), 0, &o), 0);
	assert_non_null(o.metadata.data);
	assert_int_equal(o.metadata.len, 0);
	assert_int_equal(o.leader_epoch, -1);
	catalog_offset_fini(&o);
	assert_int_equal(catalog_offset_fetch(f->cat, S("g1"), S("a"), 0, &o), -ERR_NOT_FOUND);
	assert_int_equal(catalog_offset_fetch(f->cat, S("g2"), S("b"), 1, &o), -ERR_NOT_FOUND);
	assert_int_equal(catalog_offset_fetch(f->cat, S("g1"), S("zz"), 1, &o), -ERR_NOT_FOUND);

	/* A later commit replaces. */
	struct catalog_offset upd = off("b", 1, 101);
	upd.metadata = S("second");
	assert_int_equal(catalog_offsets_commit(f->cat, S("g1"), &upd, 1, NULL), 0);
	assert_int_equal(catalog_offset_fetch(f->cat, S("g1"), S("b"), 1, &o), 0);
	assert_int_equal(o.offset, 101);
	assert_slice(o.metadata, S("second"));
	catalog_offset_fini(&o);

	struct offsets_seen seen = { .ordered = 1 };
	assert_int_equal(catalog_offsets_list(f->cat, S("g1"), offset_collect, &seen), 0);
	assert_int_equal(seen.n, 3);
	assert_true(seen.ordered);
	assert_int_equal(seen.sum, 7 + 50 + 101);

	struct catalog_offset o2 = off("a", 0, 1);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g0"), &o2, 1, NULL), 0);
	struct names gs = { 0 };
	assert_int_equal(catalog_groups_list(f->cat, group_collect, &gs), 0);
	assert_int_equal(gs.n, 2);
	assert_name(&gs, 0, S("g0"));
	assert_name(&gs, 1, S("g1"));

	assert_int_equal(catalog_group_delete(f->cat, S("g1")), 0);
	assert_int_equal(catalog_group_delete(f->cat, S("g1")), -ERR_NOT_FOUND);
	memset(&gs, 0, sizeof(gs));
	assert_int_equal(catalog_groups_list(f->cat, group_collect, &gs), 0);
	assert_int_equal(gs.n, 1);
	assert_name(&gs, 0, S("g0"));
	assert_int_equal(catalog_offset_fetch(f->cat, S("g1"), S("b"), 1, &o), -ERR_NOT_FOUND);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(catalog_offsets_list(f->cat, S("g1"), offset_collect, &seen), 0);
	assert_int_equal(seen.n, 0);
}

static void test_offsets_validation(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 2, NULL, 0), 0);
	struct catalog_offset os[] = { off("t", 0, 1), off("t", -1, 1) };
	size_t failed = 99;
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), os, 2, &failed), -ERR_INVALID);
	assert_int_equal(failed, 1);
	os[1] = off("", 0, 1);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), os, 2, &failed), -ERR_INVALID);
	char *big = calloc(1, CATALOG_METADATA_MAX + 1);
	os[1] = off("t", 1, 1);
	os[1].metadata = B(big, CATALOG_METADATA_MAX + 1);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), os, 2, &failed), -ERR_TOO_LARGE);
	assert_int_equal(failed, 1);
	os[1].metadata = B(big, CATALOG_METADATA_MAX);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), os, 2, &failed), 0);
	free(big);
	assert_int_equal(catalog_offsets_commit(f->cat, B("", 0), os, 1, NULL), -ERR_INVALID);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), NULL, 1, NULL), -ERR_INVALID);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), NULL, 0, NULL), 0);
	struct catalog_offset o;
	assert_int_equal(catalog_offset_fetch(f->cat, S("g"), S("t"), -1, &o), -ERR_INVALID);
	assert_int_equal(catalog_offsets_list(f->cat, B("", 0), offset_collect, NULL), -ERR_INVALID);
}

/* Commits 10 topics x 500 partitions in one call, then a batch that fails at its end. */
static void test_offsets_many_atomic(void **state)
{
	struct fixture *f = *state;
	enum { TOPICS = 10, PARTS = 500, N = TOPICS * PARTS };
	char names[TOPICS][16];
	struct catalog_offset *os = calloc(N + 1, sizeof(*os));
	assert_non_null(os);
	for (int t = 0; t < TOPICS; t++) {
		snprintf(names[t], sizeof(names[t]), "t%02d", t);
		assert_int_equal(catalog_topic_create(f->cat, S(names[t]), PARTS, NULL, 0), 0);
		for (int p = 0; p < PARTS; p++)
			os[t * PARTS + p] = off(names[t], p, (int64_t)t * 1000000 + p);
	}
	size_t failed = 99;
	assert_int_equal(catalog_offsets_commit(f->cat, S("big"), os, N, &failed), 0);
	assert_int_equal(failed, 99);
	struct offsets_seen seen = { .ordered = 1 };
	assert_int_equal(catalog_offsets_list(f->cat, S("big"), offset_collect, &seen), 0);
	assert_int_equal(seen.n, N);
	assert_true(seen.ordered);
	struct catalog_offset o;
	assert_int_equal(catalog_offset_fetch(f->cat, S("big"), S("t07"), 123, &o), 0);
	assert_int_equal(o.offset, 7000123);
	catalog_offset_fini(&o);

	/* Every offset moves on by 1, but the last entry names a missing topic. */
	for (int i = 0; i < N; i++)
		os[i].offset += 1;
	os[N] = off("missing", 0, 1);
	assert_int_equal(catalog_offsets_commit(f->cat, S("big"), os, N + 1, &failed),
			 -ERR_NOT_FOUND);
	assert_int_equal(failed, N);
	/* A missing partition is caught the same way. */
	os[N] = off("t03", PARTS, 1);
	assert_int_equal(catalog_offsets_commit(f->cat, S("big"), os, N + 1, &failed),
			 -ERR_NOT_FOUND);
	assert_int_equal(failed, N);
	int64_t before = seen.sum;
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(catalog_offsets_list(f->cat, S("big"), offset_collect, &seen), 0);
	assert_int_equal(seen.n, N);
	assert_int_equal(seen.sum, before); /* nothing of either batch was stored */
	assert_int_equal(catalog_offset_fetch(f->cat, S("big"), S("t00"), 0, &o), 0);
	assert_int_equal(o.offset, 0);
	catalog_offset_fini(&o);
	free(os);
}

static void test_topic_delete_cascades_offsets(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(catalog_topic_create(f->cat, S("t1"), 4, NULL, 0), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("t2"), 4, NULL, 0), 0);
	struct catalog_offset g[] = { off("t1", 0, 1), off("t1", 3, 2), off("t2", 2, 3) };
	struct catalog_offset h[] = { off("t1", 1, 4) };
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), g, 3, NULL), 0);
	assert_int_equal(catalog_offsets_commit(f->cat, S("h"), h, 1, NULL), 0);

	assert_int_equal(catalog_topic_delete(f->cat, S("t1")), 0);
	struct offsets_seen seen = { .ordered = 1 };
	assert_int_equal(catalog_offsets_list(f->cat, S("g"), offset_collect, &seen), 0);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.sum, 3);
	struct names gs = { 0 };
	assert_int_equal(catalog_groups_list(f->cat, group_collect, &gs), 0);
	assert_int_equal(gs.n, 1); /* h had offsets only for t1 */
	assert_name(&gs, 0, S("g"));
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM group_offsets"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM partitions"), 4);

	/* A topic created again under the name has no stale offsets. */
	assert_int_equal(catalog_topic_create(f->cat, S("t1"), 4, NULL, 0), 0);
	struct catalog_offset o;
	assert_int_equal(catalog_offset_fetch(f->cat, S("g"), S("t1"), 0, &o), -ERR_NOT_FOUND);
}

/* ---- durability across close/reopen ---- */

static void test_survives_reopen(void **state)
{
	struct fixture *f = *state;
	struct catalog_config cfg[] = { { S("retention.ms"), S("5") } };
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 3, cfg, 1), 0);
	struct catalog_topic t1, t2;
	assert_int_equal(catalog_topic_get(f->cat, S("t"), &t1, NULL, NULL), 0);
	struct catalog_offset os[] = { off("t", 0, 10), off("t", 2, 30) };
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), os, 2, NULL), 0);
	make_topology(f->cat);
	struct catalog_binding b = qbind("x1", "q1", "k");
	assert_int_equal(catalog_binding_add(f->cat, &b), 0);
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q1"), S("ck")), 0);

	reopen(f);
	assert_int_equal(catalog_topic_get(f->cat, S("t"), &t2, NULL, NULL), 0);
	assert_int_equal(t2.partitions, 3);
	assert_memory_equal(t1.id, t2.id, 16);
	assert_int_equal(t1.created_ms, t2.created_ms);
	struct catalog_offset o;
	assert_int_equal(catalog_offset_fetch(f->cat, S("g"), S("t"), 2, &o), 0);
	assert_int_equal(o.offset, 30);
	assert_slice(o.metadata, S("m"));
	catalog_offset_fini(&o);
	struct names ns = { 0 };
	assert_int_equal(catalog_binding_list(f->cat, binding_collect, &ns), 0);
	assert_int_equal(ns.n, 1);
	uint8_t *data;
	size_t len;
	assert_int_equal(catalog_queue_checkpoint_get(f->cat, S("q1"), &data, &len), 0);
	assert_int_equal(len, 2);
	free(data);
	/* Foreign keys are on after reopening too: cascades still work. */
	assert_int_equal(catalog_topic_delete(f->cat, S("t")), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM group_offsets"), 0);
}

/* ---- transactions ---- */

static void test_transaction_rollback_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(catalog_topic_create(f->cat, S("keep"), 1, NULL, 0), 0);
	struct catalog_offset k = off("keep", 0, 5);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), &k, 1, NULL), 0);

	assert_int_equal(catalog_begin(f->cat), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 2, NULL, 0), 0);
	struct catalog_offset os[] = { off("t", 0, 1), off("keep", 0, 6) };
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), os, 2, NULL), 0);
	make_topology(f->cat);
	struct catalog_binding b = qbind("x1", "q1", "k");
	assert_int_equal(catalog_binding_add(f->cat, &b), 0);
	assert_int_equal(catalog_queue_checkpoint_set(f->cat, S("q1"), S("ck")), 0);
	assert_int_equal(catalog_topic_delete(f->cat, S("keep")), 0);
	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, NULL, NULL), 0); /* visible inside */
	assert_int_equal(catalog_rollback(f->cat), 0);

	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, NULL, NULL), -ERR_NOT_FOUND);
	struct catalog_offset o;
	assert_int_equal(catalog_offset_fetch(f->cat, S("g"), S("keep"), 0, &o), 0);
	assert_int_equal(o.offset, 5);
	catalog_offset_fini(&o);
	const char *tables[] = { "exchanges", "queues", "bindings", "queue_checkpoints" };
	for (int i = 0; i < 4; i++) {
		char sql[64];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i]);
		assert_int_equal(raw_int(f->path, sql), 0);
	}
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM topics"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM group_offsets"), 1);

	/* Closing with a transaction open discards it. */
	assert_int_equal(catalog_begin(f->cat), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 2, NULL, 0), 0);
	reopen(f);
	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, NULL, NULL), -ERR_NOT_FOUND);
}

static void test_transaction_commit(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(catalog_commit(f->cat), -ERR_INVALID);
	assert_int_equal(catalog_rollback(f->cat), 0);
	assert_int_equal(catalog_begin(f->cat), 0);
	assert_int_equal(catalog_begin(f->cat), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 2, NULL, 0), 0);
	/* A failing call inside undoes only itself. */
	struct catalog_config dup[] = { { S("a"), S("1") }, { S("a"), S("2") } };
	assert_int_equal(catalog_topic_create(f->cat, S("u"), 2, dup, 2), -ERR_INVALID);
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 2, NULL, 0), -ERR_EXISTS);
	struct catalog_offset os[] = { off("t", 0, 1), off("t", 9, 1) };
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), os, 2, NULL), -ERR_NOT_FOUND);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), os, 1, NULL), 0);
	struct catalog_queue q = queue("q");
	assert_int_equal(catalog_queue_create(f->cat, &q), 0);
	/* Not visible to another connection before commit. */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM topics"), 0);
	assert_int_equal(catalog_commit(f->cat), 0);
	assert_int_equal(catalog_commit(f->cat), -ERR_INVALID);

	reopen(f);
	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, NULL, NULL), 0);
	assert_int_equal(catalog_topic_get(f->cat, S("u"), NULL, NULL, NULL), -ERR_NOT_FOUND);
	struct catalog_offset o;
	assert_int_equal(catalog_offset_fetch(f->cat, S("g"), S("t"), 0, &o), 0);
	catalog_offset_fini(&o);
	struct catalog_queue got;
	assert_int_equal(catalog_queue_get(f->cat, S("q"), &got), 0);
	catalog_queue_fini(&got);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM partitions"), 2);
}

/* ---- damaged and foreign files ---- */

static void assert_open_fails(const char *path, int want)
{
	struct catalog *c = (struct catalog *)1;
	assert_int_equal(catalog_open(path, &c), want);
	assert_null(c);
}

static void test_garbage_file(void **state)
{
	struct fixture *f = *state;
	char p[256];
	snprintf(p, sizeof(p), "%s/garbage.db", f->dir);
	size_t n = 64 * 1024;
	uint8_t *g = malloc(n), *back = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		g[i] = rng_byte();
	write_file(p, g, n);
	assert_open_fails(p, -ERR_CORRUPT);
	/* Left as it was. */
	assert_int_equal(read_file(p, back, n + 1), n);
	assert_memory_equal(g, back, n);
	write_file(p, "hello, this is not a database\n", 30);
	assert_open_fails(p, -ERR_CORRUPT);
	/* A valid header followed by garbage. */
	memcpy(g, "SQLite format 3", 16);
	write_file(p, g, n);
	assert_open_fails(p, -ERR_CORRUPT);
	free(g);
	free(back);
}

/* Builds a catalog with some content at f->path and closes it; returns its size. */
static size_t build_and_close(struct fixture *f)
{
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 50, NULL, 0), 0);
	struct catalog_offset o = off("t", 1, 1);
	assert_int_equal(catalog_offsets_commit(f->cat, S("g"), &o, 1, NULL), 0);
	make_topology(f->cat);
	catalog_close(f->cat);
	f->cat = NULL;
	char wal[160];
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_int_equal(access(wal, F_OK), -1); /* checkpointed into the main file */
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_true(sb.st_size > 8 * 4096);
	return (size_t)sb.st_size;
}

static void test_damaged_pages(void **state)
{
	struct fixture *f = *state;
	size_t size = build_and_close(f);
	uint8_t *orig = malloc(size), *bad = malloc(size);
	assert_int_equal(read_file(f->path, orig, size), size);

	/* Every page after the first overwritten: the schema names garbage roots. */
	memcpy(bad, orig, size);
	for (size_t i = 4096; i < size; i++)
		bad[i] = rng_byte();
	write_file(f->path, bad, size);
	assert_open_fails(f->path, -ERR_CORRUPT);

	/* The schema page itself damaged past the header. */
	memcpy(bad, orig, size);
	for (size_t i = 100; i < 4096; i++)
		bad[i] = rng_byte();
	write_file(f->path, bad, size);
	assert_open_fails(f->path, -ERR_CORRUPT);

	/* Truncated mid-file. */
	write_file(f->path, orig, 3 * 4096 + 100);
	assert_open_fails(f->path, -ERR_CORRUPT);

	/* The intact file still opens. */
	write_file(f->path, orig, size);
	assert_int_equal(catalog_open(f->path, &f->cat), 0);
	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, NULL, NULL), 0);
	free(orig);
	free(bad);
}

static void test_foreign_database_refused(void **state)
{
	struct fixture *f = *state;
	char p[256], mode[16];
	snprintf(p, sizeof(p), "%s/other.db", f->dir);
	raw_exec(p, "CREATE TABLE topics(x); INSERT INTO topics VALUES (1)");
	assert_open_fails(p, -ERR_CORRUPT);
	raw_text(p, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "delete"); /* not switched to WAL */
	assert_int_equal(raw_int(p, "SELECT count(*) FROM sqlite_schema"), 1);
	/* Ours by application_id but with no version: refused as well. */
	raw_exec(p, "PRAGMA application_id = 1399613795");
	assert_open_fails(p, -ERR_CORRUPT);
}

static void test_newer_version_refused(void **state)
{
	struct fixture *f = *state;
	catalog_close(f->cat);
	f->cat = NULL;
	raw_exec(f->path, "PRAGMA user_version = 2");
	assert_open_fails(f->path, -ERR_UNSUPPORTED);
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 2);
	raw_exec(f->path, "PRAGMA user_version = 1000000");
	assert_open_fails(f->path, -ERR_UNSUPPORTED);
	raw_exec(f->path, "PRAGMA user_version = 1");
	assert_int_equal(catalog_open(f->path, &f->cat), 0);
}

/* A write-protected catalog is refused at open (root writes anyway: skipped). */
static void test_read_only_file_refused(void **state)
{
	struct fixture *f = *state;
	if (geteuid() == 0) {
		skip();
		return;
	}
	catalog_close(f->cat);
	f->cat = NULL;
	assert_int_equal(chmod(f->path, 0444), 0);
	assert_open_fails(f->path, -ERR_IO);
	/* SQLite gave the -wal and -shm files it made the database's mode: restore all. */
	const char *suffix[] = { "", "-wal", "-shm" };
	for (int i = 0; i < 3; i++) {
		char p[160];
		snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
		if (access(p, F_OK) == 0)
			assert_int_equal(chmod(p, 0644), 0);
	}
	assert_int_equal(catalog_open(f->path, &f->cat), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 1, NULL, 0), 0);
}

/* A schema missing a table we use is reported at open, not at first use. */
static void test_altered_schema_refused(void **state)
{
	struct fixture *f = *state;
	catalog_close(f->cat);
	f->cat = NULL;
	raw_exec(f->path, "DROP TABLE queue_checkpoints");
	assert_open_fails(f->path, -ERR_CORRUPT);
}

/* Values out of range in the file are refused when read, never handed out. */
static void test_bad_stored_values(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(catalog_topic_create(f->cat, S("t"), 1, NULL, 0), 0);
	struct catalog_queue q = queue("q");
	assert_int_equal(catalog_queue_create(f->cat, &q), 0);
	raw_exec(f->path, "UPDATE topics SET name = zeroblob(300)");
	raw_exec(f->path, "UPDATE queues SET name = X''");
	struct names ns = { 0 };
	assert_int_equal(catalog_topic_list(f->cat, topic_collect, &ns), -ERR_CORRUPT);
	assert_int_equal(catalog_queue_list(f->cat, queue_collect, &ns), -ERR_CORRUPT);
	assert_int_equal(ns.n, 0);
	struct catalog_queue got;
	assert_int_equal(catalog_queue_get(f->cat, B("", 0), &got), -ERR_INVALID);
	raw_exec(f->path, "UPDATE topics SET name = CAST('t' AS BLOB), created_ms = 1,"
			  " partitions = 200000");
	assert_int_equal(catalog_topic_get(f->cat, S("t"), NULL, NULL, NULL), -ERR_CORRUPT);
	/* The catalog still works for everything else. */
	struct catalog_exchange x = exchange("x", "direct");
	assert_int_equal(catalog_exchange_create(f->cat, &x), 0);
}

/* ---- hostile names ---- */

static void test_names_round_trip(void **state)
{
	struct fixture *f = *state;
	static const char quoted[] = "it's \"quoted\" `x` [y]";
	static const char inject[] = "x'); DROP TABLE topics; --";
	static const char nul[] = { 'a', 0, 'b' };
	static const char nul2[] = { 'a', 0, 'c' };
	static const char utf8[] = "température/温度 🚀";
	uint8_t high[255];
	for (size_t i = 0; i < sizeof(high); i++)
		high[i] = (uint8_t)(0x80 + i % 128); /* not valid UTF-8 */
	struct slice names[] = {
		S(quoted), S(inject), B(nul, 3), B(nul2, 3), B(nul, 1), S(utf8), B(high, 249),
	};
	size_t n = sizeof(names) / sizeof(names[0]);

	for (size_t i = 0; i < n; i++) {
		struct catalog_config cfg[] = { { names[i], names[i] } };
		assert_int_equal(catalog_topic_create(f->cat, names[i], 1, cfg, 1), 0);
		struct catalog_queue q = { .name = names[i], .arguments = names[i] };
		assert_int_equal(catalog_queue_create(f->cat, &q), 0);
		struct catalog_exchange x = { .name = names[i], .type = names[i] };
		assert_int_equal(catalog_exchange_create(f->cat, &x), 0);
		struct catalog_binding b = { .source = names[i], .dest_kind = CATALOG_DEST_QUEUE,
					     .destination = names[i], .routing_key = names[i] };
		assert_int_equal(catalog_binding_add(f->cat, &b), 0);
		struct catalog_offset o = off("", 0, (int64_t)i);
		o.topic = names[i];
		o.metadata = names[i];
		assert_int_equal(catalog_offsets_commit(f->cat, names[i], &o, 1, NULL), 0);
	}
	/* The tables are all still there. */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM topics"), n);

	for (size_t i = 0; i < n; i++) {
		struct names c = { 0 };
		struct catalog_topic t;
		assert_int_equal(catalog_topic_get(f->cat, names[i], &t, config_collect, &c), 0);
		assert_int_equal(c.n, 2);
		assert_name(&c, 0, names[i]);
		assert_name(&c, 1, names[i]);
		struct catalog_queue q;
		assert_int_equal(catalog_queue_get(f->cat, names[i], &q), 0);
		assert_slice(q.name, names[i]);
		assert_slice(q.arguments, names[i]);
		catalog_queue_fini(&q);
		struct catalog_exchange x;
		assert_int_equal(catalog_exchange_get(f->cat, names[i], &x), 0);
		assert_slice(x.name, names[i]);
		assert_slice(x.type, names[i]);
		catalog_exchange_fini(&x);
		struct catalog_offset o;
		assert_int_equal(catalog_offset_fetch(f->cat, names[i], names[i], 0, &o), 0);
		assert_int_equal(o.offset, (int64_t)i);
		assert_slice(o.metadata, names[i]);
		catalog_offset_fini(&o);
		struct names bs = { 0 };
		assert_int_equal(catalog_binding_list_source(f->cat, names[i], binding_collect, &bs), 0);
		assert_int_equal(bs.n, 1);
	}
	/* Lists return the exact bytes, in bytewise order. */
	struct names ns = { 0 };
	assert_int_equal(catalog_topic_list(f->cat, topic_collect, &ns), 0);
	assert_int_equal(ns.n, n);
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < n; j++)
			found |= ns.v[j].len == names[i].len &&
				 memcmp(ns.v[j].b, names[i].data, names[i].len) == 0;
		assert_true(found);
	}
	for (size_t j = 1; j < n; j++) {
		size_t m = ns.v[j - 1].len < ns.v[j].len ? ns.v[j - 1].len : ns.v[j].len;
		int cmp = memcmp(ns.v[j - 1].b, ns.v[j].b, m);
		assert_true(cmp < 0 || (cmp == 0 && ns.v[j - 1].len < ns.v[j].len));
	}
	memset(&ns, 0, sizeof(ns));
	assert_int_equal(catalog_groups_list(f->cat, group_collect, &ns), 0);
	assert_int_equal(ns.n, n);
	/* "a" and "a\0b" are different names: deleting one leaves the other. */
	assert_int_equal(catalog_queue_delete(f->cat, B(nul, 1)), 0);
	struct catalog_queue q;
	assert_int_equal(catalog_queue_get(f->cat, B(nul, 3), &q), 0);
	catalog_queue_fini(&q);
	assert_int_equal(catalog_queue_get(f->cat, S("a"), &q), -ERR_NOT_FOUND);
}

/* ---- list callbacks ---- */

static int stop_at_two(void *arg, const struct catalog_topic *t)
{
	(void)t;
	int *count = arg;
	return ++*count == 2 ? 42 : 0;
}

struct nested {
	struct catalog *cat;
	int topics, inner, configs;
	int write_rc, begin_rc;
};

static int count_config(void *arg, const struct catalog_config *c)
{
	(void)c;
	((struct nested *)arg)->configs++;
	return 0;
}

static int count_inner(void *arg, const struct catalog_topic *t)
{
	(void)t;
	((struct nested *)arg)->inner++;
	return 0;
}

static int nested_reads(void *arg, const struct catalog_topic *t)
{
	struct nested *n = arg;
	n->topics++;
	struct catalog_topic again;
	assert_int_equal(catalog_topic_get(n->cat, t->name, &again, count_config, n), 0);
	assert_int_equal(again.partitions, t->partitions);
	/* The same listing again, from inside the first. */
	assert_int_equal(catalog_topic_list(n->cat, count_inner, n), 0);
	n->write_rc = catalog_topic_create(n->cat, S("new"), 1, NULL, 0);
	n->begin_rc = catalog_begin(n->cat);
	struct catalog_offset o = off("a", 0, 1);
	assert_int_equal(catalog_offsets_commit(n->cat, S("g"), &o, 1, NULL), -ERR_INVALID);
	assert_int_equal(catalog_topic_delete(n->cat, t->name), -ERR_INVALID);
	return 0;
}

static void test_list_callbacks(void **state)
{
	struct fixture *f = *state;
	struct catalog_config cfg[] = { { S("k1"), S("v") }, { S("k2"), S("v") } };
	assert_int_equal(catalog_topic_create(f->cat, S("a"), 1, cfg, 2), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("b"), 2, cfg, 1), 0);
	assert_int_equal(catalog_topic_create(f->cat, S("c"), 3, NULL, 0), 0);
	int count = 0;
	assert_int_equal(catalog_topic_list(f->cat, stop_at_two, &count), 42);
	assert_int_equal(count, 2);

	struct nested n = { .cat = f->cat };
	assert_int_equal(catalog_topic_list(f->cat, nested_reads, &n), 0);
	assert_int_equal(n.topics, 3);
	assert_int_equal(n.inner, 9);
	assert_int_equal(n.configs, 3);
	assert_int_equal(n.write_rc, -ERR_INVALID);
	assert_int_equal(n.begin_rc, -ERR_INVALID);
	/* Writes work again once the listing is over; the statements were reset. */
	assert_int_equal(catalog_topic_create(f->cat, S("new"), 1, NULL, 0), 0);
	count = 0;
	assert_int_equal(catalog_topic_list(f->cat, stop_at_two, &count), 42);
	memset(&n, 0, sizeof(n));
	n.cat = f->cat;
	struct names ns = { 0 };
	assert_int_equal(catalog_topic_list(f->cat, topic_collect, &ns), 0);
	assert_int_equal(ns.n, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_open_sets_up_schema),
		T(test_open_bad_paths),
		T(test_topic_create_get_list_delete),
		T(test_topic_errors),
		T(test_topic_add_partitions),
		T(test_topic_configs),
		T(test_exchanges),
		T(test_queues),
		T(test_bindings),
		T(test_exchange_delete_cascades_bindings),
		T(test_queue_delete_cascades),
		T(test_queue_checkpoints),
		T(test_offsets_commit_fetch_list),
		T(test_offsets_validation),
		T(test_offsets_many_atomic),
		T(test_topic_delete_cascades_offsets),
		T(test_survives_reopen),
		T(test_transaction_rollback_leaves_nothing),
		T(test_transaction_commit),
		T(test_garbage_file),
		T(test_damaged_pages),
		T(test_foreign_database_refused),
		T(test_newer_version_refused),
		T(test_read_only_file_refused),
		T(test_altered_schema_refused),
		T(test_bad_stored_values),
		T(test_names_round_trip),
		T(test_list_callbacks),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
