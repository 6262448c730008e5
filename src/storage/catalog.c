/*
 * catalog.c: the metadata catalog on SQLite.
 *
 * One SQLite connection per struct catalog, in WAL mode with synchronous=FULL
 * (a commit returns after the WAL is fsynced), foreign_keys=ON (deletes
 * cascade in the database, not in C), and a busy timeout for other processes.
 * Every statement is prepared once at open, from the constant SQL table below,
 * and reused: names and blobs are only ever bound as parameters, never pasted
 * into SQL text. All names are stored as BLOBs, so any bytes round-trip and
 * compare with memcmp.
 *
 *   topics ──< partitions ──< group_offsets      (cascade on delete, left to right)
 *     └──< topic_configs
 *   exchanges ──< bindings >── queues ──< queue_checkpoints
 *       └────────────< (exchange-to-exchange bindings: dest_exchange_id)
 *
 * The schema's version is PRAGMA user_version and its owner PRAGMA
 * application_id. Opening checks both before changing anything, so a newer
 * catalog or another program's database is refused untouched; older versions
 * are brought forward by the migrations[] table, one transaction per step
 * (step 0 -> 1 creates the schema). After that, PRAGMA quick_check and the
 * preparation of every statement must succeed, so a damaged file or schema is
 * reported at open as -ERR_CORRUPT instead of at some later call.
 *
 * The file is treated as untrusted like any other stored bytes: every value
 * read back is checked for type, length and range before it is handed out
 * (-ERR_CORRUPT otherwise), the longest value SQLite may build is capped,
 * triggers and views are disabled (the schema has none), and trusted_schema is
 * off.
 *
 * Multi-statement changes run in a transaction (BEGIN IMMEDIATE), or in a
 * savepoint when the caller has opened one with catalog_begin(), so a failed
 * call inside an explicit transaction undoes only itself.
 */
#include "storage/catalog.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"

#define CATALOG_APPLICATION_ID 0x536c6963 /* "Slic" */
#define CATALOG_BUSY_TIMEOUT_MS 5000
/* Longest string or blob SQLite may build: the largest value plus room. */
#define CATALOG_SQL_LENGTH_MAX (CATALOG_CHECKPOINT_MAX + (1 << 16))

/* Schema version 1. Caps on lengths live in C, so changing one needs no migration. */
static const char schema_v1[] =
	"CREATE TABLE topics ("
	" id INTEGER PRIMARY KEY,"
	" name BLOB NOT NULL UNIQUE,"
	" uuid BLOB NOT NULL UNIQUE CHECK (length(uuid) = 16),"
	" partitions INTEGER NOT NULL CHECK (partitions >= 1),"
	" created_ms INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE partitions ("
	" topic_id INTEGER NOT NULL REFERENCES topics(id) ON DELETE CASCADE,"
	" idx INTEGER NOT NULL CHECK (idx >= 0),"
	" PRIMARY KEY (topic_id, idx)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE topic_configs ("
	" topic_id INTEGER NOT NULL REFERENCES topics(id) ON DELETE CASCADE,"
	" key BLOB NOT NULL,"
	" value BLOB NOT NULL,"
	" PRIMARY KEY (topic_id, key)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE group_offsets ("
	" group_name BLOB NOT NULL,"
	" topic_id INTEGER NOT NULL,"
	" partition_index INTEGER NOT NULL,"
	" committed_offset INTEGER NOT NULL,"
	" leader_epoch INTEGER NOT NULL,"
	" metadata BLOB,"
	" commit_time_ms INTEGER NOT NULL,"
	" PRIMARY KEY (group_name, topic_id, partition_index),"
	" FOREIGN KEY (topic_id, partition_index)"
	"  REFERENCES partitions(topic_id, idx) ON DELETE CASCADE"
	") STRICT, WITHOUT ROWID;"
	"CREATE INDEX group_offsets_partition ON group_offsets(topic_id, partition_index);"
	"CREATE TABLE exchanges ("
	" id INTEGER PRIMARY KEY,"
	" name BLOB NOT NULL UNIQUE,"
	" type BLOB NOT NULL,"
	" durable INTEGER NOT NULL CHECK (durable IN (0, 1)),"
	" auto_delete INTEGER NOT NULL CHECK (auto_delete IN (0, 1)),"
	" internal INTEGER NOT NULL CHECK (internal IN (0, 1)),"
	" arguments BLOB NOT NULL"
	") STRICT;"
	"CREATE TABLE queues ("
	" id INTEGER PRIMARY KEY,"
	" name BLOB NOT NULL UNIQUE,"
	" durable INTEGER NOT NULL CHECK (durable IN (0, 1)),"
	" exclusive INTEGER NOT NULL CHECK (exclusive IN (0, 1)),"
	" auto_delete INTEGER NOT NULL CHECK (auto_delete IN (0, 1)),"
	" arguments BLOB NOT NULL"
	") STRICT;"
	"CREATE TABLE bindings ("
	" id INTEGER PRIMARY KEY,"
	" source_id INTEGER NOT NULL REFERENCES exchanges(id) ON DELETE CASCADE,"
	" dest_queue_id INTEGER REFERENCES queues(id) ON DELETE CASCADE,"
	" dest_exchange_id INTEGER REFERENCES exchanges(id) ON DELETE CASCADE,"
	" routing_key BLOB NOT NULL,"
	" arguments BLOB NOT NULL,"
	" CHECK ((dest_queue_id IS NULL) <> (dest_exchange_id IS NULL))"
	") STRICT;"
	"CREATE UNIQUE INDEX bindings_identity ON bindings(source_id,"
	" ifnull(dest_queue_id, 0), ifnull(dest_exchange_id, 0), routing_key, arguments);"
	"CREATE INDEX bindings_dest_queue ON bindings(dest_queue_id);"
	"CREATE INDEX bindings_dest_exchange ON bindings(dest_exchange_id);"
	"CREATE TABLE queue_checkpoints ("
	" queue_id INTEGER PRIMARY KEY REFERENCES queues(id) ON DELETE CASCADE,"
	" data BLOB NOT NULL"
	") STRICT;";

/*
 * migrations[v] brings a catalog from version v to v + 1 inside one
 * transaction; user_version is then set to v + 1. To change the schema: bump
 * CATALOG_SCHEMA_VERSION, append the step here, describe it in docs/catalog.md.
 */
static const char *const migrations[CATALOG_SCHEMA_VERSION] = {
	[0] = schema_v1,
};

enum st {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_TOPIC_INSERT,
	ST_TOPIC_DELETE,
	ST_TOPIC_GET,
	ST_TOPIC_LIST,
	ST_TOPIC_SET_PARTITIONS,
	ST_PARTITIONS_INSERT,
	ST_CONFIG_INSERT,
	ST_CONFIG_UPSERT,
	ST_CONFIG_DELETE,
	ST_CONFIG_LIST,
	ST_EXCHANGE_INSERT,
	ST_EXCHANGE_DELETE,
	ST_EXCHANGE_GET,
	ST_EXCHANGE_LIST,
	ST_EXCHANGE_ID,
	ST_QUEUE_INSERT,
	ST_QUEUE_DELETE,
	ST_QUEUE_GET,
	ST_QUEUE_LIST,
	ST_QUEUE_ID,
	ST_BINDING_INSERT,
	ST_BINDING_DELETE,
	ST_BINDING_LIST,
	ST_BINDING_LIST_SOURCE,
	ST_BINDING_LIST_DEST_QUEUE,
	ST_BINDING_LIST_DEST_EXCHANGE,
	ST_OFFSET_UPSERT,
	ST_OFFSET_FETCH,
	ST_OFFSET_LIST,
	ST_GROUP_LIST,
	ST_GROUP_DELETE,
	ST_CHECKPOINT_SET,
	ST_CHECKPOINT_GET,
	ST_COUNT
};

#define BINDING_SELECT \
	"SELECT s.name, b.dest_exchange_id IS NOT NULL, coalesce(q.name, d.name)," \
	" b.routing_key, b.arguments FROM bindings b" \
	" JOIN exchanges s ON s.id = b.source_id" \
	" LEFT JOIN queues q ON q.id = b.dest_queue_id" \
	" LEFT JOIN exchanges d ON d.id = b.dest_exchange_id "

static const char *const st_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT catalog_op",
	[ST_RELEASE] = "RELEASE catalog_op",
	[ST_ROLLBACK_TO] = "ROLLBACK TO catalog_op",
	[ST_TOPIC_INSERT] = "INSERT INTO topics(name, uuid, partitions, created_ms)"
		" VALUES (?1, randomblob(16), ?2, ?3)",
	[ST_TOPIC_DELETE] = "DELETE FROM topics WHERE name = ?1",
	[ST_TOPIC_GET] = "SELECT id, name, uuid, partitions, created_ms FROM topics WHERE name = ?1",
	[ST_TOPIC_LIST] = "SELECT id, name, uuid, partitions, created_ms FROM topics ORDER BY name",
	[ST_TOPIC_SET_PARTITIONS] = "UPDATE topics SET partitions = ?2 WHERE id = ?1",
	[ST_PARTITIONS_INSERT] = "WITH RECURSIVE r(i) AS (SELECT ?2 UNION ALL"
		" SELECT i + 1 FROM r WHERE i + 1 < ?3)"
		" INSERT INTO partitions(topic_id, idx) SELECT ?1, i FROM r",
	[ST_CONFIG_INSERT] = "INSERT INTO topic_configs(topic_id, key, value) VALUES (?1, ?2, ?3)",
	[ST_CONFIG_UPSERT] = "INSERT INTO topic_configs(topic_id, key, value) VALUES (?1, ?2, ?3)"
		" ON CONFLICT(topic_id, key) DO UPDATE SET value = excluded.value",
	[ST_CONFIG_DELETE] = "DELETE FROM topic_configs WHERE topic_id = ?1 AND key = ?2",
	[ST_CONFIG_LIST] = "SELECT key, value FROM topic_configs WHERE topic_id = ?1 ORDER BY key",
	[ST_EXCHANGE_INSERT] = "INSERT INTO exchanges(name, type, durable, auto_delete, internal,"
		" arguments) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_EXCHANGE_DELETE] = "DELETE FROM exchanges WHERE name = ?1",
	[ST_EXCHANGE_GET] = "SELECT name, type, durable, auto_delete, internal, arguments"
		" FROM exchanges WHERE name = ?1",
	[ST_EXCHANGE_LIST] = "SELECT name, type, durable, auto_delete, internal, arguments"
		" FROM exchanges ORDER BY name",
	[ST_EXCHANGE_ID] = "SELECT id FROM exchanges WHERE name = ?1",
	[ST_QUEUE_INSERT] = "INSERT INTO queues(name, durable, exclusive, auto_delete, arguments)"
		" VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_QUEUE_DELETE] = "DELETE FROM queues WHERE name = ?1",
	[ST_QUEUE_GET] = "SELECT name, durable, exclusive, auto_delete, arguments"
		" FROM queues WHERE name = ?1",
	[ST_QUEUE_LIST] = "SELECT name, durable, exclusive, auto_delete, arguments"
		" FROM queues ORDER BY name",
	[ST_QUEUE_ID] = "SELECT id FROM queues WHERE name = ?1",
	[ST_BINDING_INSERT] = "INSERT INTO bindings(source_id, dest_queue_id, dest_exchange_id,"
		" routing_key, arguments) VALUES (?1, nullif(?2, 0), nullif(?3, 0), ?4, ?5)",
	[ST_BINDING_DELETE] = "DELETE FROM bindings WHERE source_id = ?1"
		" AND ifnull(dest_queue_id, 0) = ?2 AND ifnull(dest_exchange_id, 0) = ?3"
		" AND routing_key = ?4 AND arguments = ?5",
	[ST_BINDING_LIST] = BINDING_SELECT "ORDER BY b.id",
	[ST_BINDING_LIST_SOURCE] = BINDING_SELECT "WHERE s.name = ?1 ORDER BY b.id",
	[ST_BINDING_LIST_DEST_QUEUE] = BINDING_SELECT
		"WHERE b.dest_queue_id = (SELECT id FROM queues WHERE name = ?1) ORDER BY b.id",
	[ST_BINDING_LIST_DEST_EXCHANGE] = BINDING_SELECT
		"WHERE b.dest_exchange_id = (SELECT id FROM exchanges WHERE name = ?1) ORDER BY b.id",
	[ST_OFFSET_UPSERT] = "INSERT INTO group_offsets(group_name, topic_id, partition_index,"
		" committed_offset, leader_epoch, metadata, commit_time_ms)"
		" SELECT ?1, id, ?3, ?4, ?5, ?6, ?7 FROM topics WHERE name = ?2"
		" ON CONFLICT(group_name, topic_id, partition_index) DO UPDATE SET"
		" committed_offset = excluded.committed_offset,"
		" leader_epoch = excluded.leader_epoch, metadata = excluded.metadata,"
		" commit_time_ms = excluded.commit_time_ms",
	[ST_OFFSET_FETCH] = "SELECT o.committed_offset, o.leader_epoch, o.metadata, o.commit_time_ms"
		" FROM group_offsets o JOIN topics t ON t.id = o.topic_id"
		" WHERE o.group_name = ?1 AND t.name = ?2 AND o.partition_index = ?3",
	[ST_OFFSET_LIST] = "SELECT t.name, o.partition_index, o.committed_offset, o.leader_epoch,"
		" o.metadata, o.commit_time_ms FROM group_offsets o JOIN topics t ON t.id = o.topic_id"
		" WHERE o.group_name = ?1 ORDER BY t.name, o.partition_index",
	[ST_GROUP_LIST] = "SELECT DISTINCT group_name FROM group_offsets ORDER BY group_name",
	[ST_GROUP_DELETE] = "DELETE FROM group_offsets WHERE group_name = ?1",
	[ST_CHECKPOINT_SET] = "INSERT INTO queue_checkpoints(queue_id, data)"
		" SELECT id, ?2 FROM queues WHERE name = ?1"
		" ON CONFLICT(queue_id) DO UPDATE SET data = excluded.data",
	[ST_CHECKPOINT_GET] = "SELECT c.data FROM queues q"
		" LEFT JOIN queue_checkpoints c ON c.queue_id = q.id WHERE q.name = ?1",
};

struct catalog {
	sqlite3 *db;                   /* owned: closed by catalog_close */
	sqlite3_stmt *stmts[ST_COUNT]; /* owned: prepared at open, finalized at close */
	int iterating;                 /* > 0 while a list callback runs: no changes */
};

/* ---- SQLite results, statements and values ---- */

/* Maps an SQLite result code to an ERR_* code, logging unexpected failures. */
static int map_rc(struct catalog *cat, int rc, const char *what)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_CONSTRAINT:
		/* Expected outcomes of callers' requests: not logged. */
		if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
			return -ERR_NOT_FOUND;
		if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
			return -ERR_EXISTS;
		return -ERR_INVALID;
	default:
		break;
	}
	diag_warn("catalog", "%s: %s (%s)", what,
		  cat && cat->db ? sqlite3_errmsg(cat->db) : "-", sqlite3_errstr(rc));
	switch (rc & 0xff) {
	case SQLITE_NOMEM: return -ERR_NOMEM;
	case SQLITE_FULL: return -ERR_NOSPC;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB: return -ERR_CORRUPT;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -ERR_AGAIN;
	case SQLITE_TOOBIG: return -ERR_TOO_LARGE;
	default: return -ERR_IO;
	}
}

/*
 * Gives the cached statement id, or a fresh one while the cached one is in use
 * further up the stack (a list callback reading the same thing). Refuses
 * statements that write while a list callback runs.
 */
static int stmt_get(struct catalog *cat, enum st id, sqlite3_stmt **out)
{
	sqlite3_stmt *st = cat->stmts[id];
	if (sqlite3_stmt_busy(st)) {
		int rc = sqlite3_prepare_v2(cat->db, st_sql[id], -1, &st, NULL);
		if (rc != SQLITE_OK)
			return map_rc(cat, rc, "prepare");
	}
	if (cat->iterating > 0 && !sqlite3_stmt_readonly(st)) {
		if (st != cat->stmts[id])
			sqlite3_finalize(st);
		return -ERR_INVALID;
	}
	*out = st;
	return 0;
}

/* Returns a statement from stmt_get: resets the cached one, finalizes a fresh one. */
static void stmt_put(struct catalog *cat, enum st id, sqlite3_stmt *st)
{
	if (st == cat->stmts[id]) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	} else {
		sqlite3_finalize(st);
	}
}

/* Steps st once: 1 for a row, 0 when done, or a negative error. */
static int step(struct catalog *cat, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return map_rc(cat, rc, sqlite3_sql(st));
}

/* Runs a parameterless statement (transaction control) to completion. */
static int run(struct catalog *cat, enum st id)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, id, &st);
	if (err)
		return err;
	err = step(cat, st);
	stmt_put(cat, id, st);
	return err < 0 ? err : 0;
}

/* Binders keep the first failure in *rc (like struct reader's err). */
static void bind_int(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_int64(st, i, v);
}

/* Binds bytes as a BLOB; data NULL binds an empty BLOB (never SQL NULL). */
static void bind_blob(sqlite3_stmt *st, int i, struct slice s, int *rc)
{
	if (*rc != SQLITE_OK)
		return;
	if (s.data == NULL || s.len == 0)
		*rc = sqlite3_bind_zeroblob(st, i, 0);
	else
		*rc = sqlite3_bind_blob(st, i, s.data, (int)s.len, SQLITE_STATIC);
}

/* Binds bytes as a BLOB, or SQL NULL when data is NULL. */
static void bind_nullable(sqlite3_stmt *st, int i, struct slice s, int *rc)
{
	if (*rc != SQLITE_OK)
		return;
	if (s.data == NULL)
		*rc = sqlite3_bind_null(st, i);
	else
		bind_blob(st, i, s, rc);
}

/* Steps a bound statement to completion; binding failures are reported first. */
static int exec_bound(struct catalog *cat, sqlite3_stmt *st, int bind_rc)
{
	if (bind_rc != SQLITE_OK)
		return map_rc(cat, bind_rc, "bind");
	int err = step(cat, st);
	if (err == 1) /* statements run this way return no rows */
		err = 0;
	return err;
}

/* A row being decoded: the first bad value sets err (sticky), like struct reader. */
struct row {
	sqlite3_stmt *st;
	int err;
};

static void row_fail(struct row *r, int col, const char *why)
{
	if (r->err == 0)
		diag_error("catalog", "corrupt value in column %s: %s",
			   sqlite3_column_name(r->st, col), why);
	r->err = -ERR_CORRUPT;
}

/* A BLOB column of at most max bytes; NULL (data NULL) only if nullable. */
static struct slice row_bytes(struct row *r, int col, size_t max, bool nullable)
{
	struct slice s = { NULL, 0 };
	if (r->err)
		return s;
	int type = sqlite3_column_type(r->st, col);
	if (type == SQLITE_NULL && nullable)
		return s;
	if (type != SQLITE_BLOB) {
		row_fail(r, col, "not a blob");
		return s;
	}
	const void *p = sqlite3_column_blob(r->st, col);
	int n = sqlite3_column_bytes(r->st, col);
	if (p == NULL && n > 0) {
		r->err = -ERR_NOMEM;
		return s;
	}
	if (n < 0 || (size_t)n > max) {
		row_fail(r, col, "too long");
		return s;
	}
	s.data = p ? p : (const uint8_t *)"";
	s.len = (size_t)n;
	return s;
}

/* A non-empty BLOB column of at most max bytes. */
static struct slice row_name(struct row *r, int col, size_t max)
{
	struct slice s = row_bytes(r, col, max, false);
	if (r->err == 0 && s.len == 0)
		row_fail(r, col, "empty name");
	return s;
}

/* An INTEGER column within [min, max]. */
static int64_t row_int(struct row *r, int col, int64_t min, int64_t max)
{
	if (r->err)
		return 0;
	if (sqlite3_column_type(r->st, col) != SQLITE_INTEGER) {
		row_fail(r, col, "not an integer");
		return 0;
	}
	int64_t v = sqlite3_column_int64(r->st, col);
	if (v < min || v > max) {
		row_fail(r, col, "out of range");
		return 0;
	}
	return v;
}

/*
 * Copies the n slices into one allocation (each NUL-terminated for callers'
 * convenience) and points them at the copy; NULL slices stay NULL. Returns the
 * allocation, or NULL when out of memory.
 */
static void *copy_out(struct slice *const fields[], size_t n)
{
	size_t total = 1;
	for (size_t i = 0; i < n; i++)
		total += fields[i]->len + 1;
	uint8_t *mem = malloc(total);
	if (mem == NULL)
		return NULL;
	uint8_t *p = mem;
	for (size_t i = 0; i < n; i++) {
		if (fields[i]->data == NULL)
			continue;
		memcpy(p, fields[i]->data, fields[i]->len);
		p[fields[i]->len] = 0;
		fields[i]->data = p;
		p += fields[i]->len + 1;
	}
	return mem;
}

/* A name the caller gave: present, non-empty, at most max bytes. */
static bool name_ok(struct slice s, size_t max)
{
	return s.data != NULL && s.len > 0 && s.len <= max;
}

/* A blob the caller gave: at most max bytes (data NULL only when empty). */
static bool blob_ok(struct slice s, size_t max)
{
	return (s.data != NULL || s.len == 0) && s.len <= max;
}

/* Calls each(row, ctx) for every row of st; see the header for fn's result. */
static int iterate(struct catalog *cat, sqlite3_stmt *st,
		   int (*each)(struct row *r, void *ctx), void *ctx)
{
	int err;
	cat->iterating++;
	while ((err = step(cat, st)) == 1) {
		struct row r = { st, 0 };
		err = each(&r, ctx);
		if (err)
			break;
	}
	cat->iterating--;
	return err;
}

/* The user callback of a listing, with its argument. */
struct list_ctx {
	union {
		catalog_topic_fn topic;
		catalog_config_fn config;
		catalog_exchange_fn exchange;
		catalog_queue_fn queue;
		catalog_binding_fn binding;
		catalog_offset_fn offset;
		catalog_group_fn group;
	} fn;
	void *arg;
};

/* Looks up the row id of a name with a "SELECT id ... WHERE name = ?1" statement. */
static int lookup_id(struct catalog *cat, enum st id, struct slice name, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, id, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, name, &rc);
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : step(cat, st);
	if (err == 0)
		err = -ERR_NOT_FOUND;
	if (err == 1) {
		struct row r = { st, 0 };
		*out = row_int(&r, 0, 1, INT64_MAX);
		err = r.err;
	}
	stmt_put(cat, id, st);
	return err;
}

/* Runs a "DELETE ... WHERE name = ?1" statement; -ERR_NOT_FOUND if nothing went. */
static int delete_by_name(struct catalog *cat, enum st id, struct slice name, size_t max)
{
	if (!name_ok(name, max))
		return -ERR_INVALID;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, id, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, name, &rc);
	err = exec_bound(cat, st, rc);
	if (err == 0 && sqlite3_changes(cat->db) == 0)
		err = -ERR_NOT_FOUND;
	stmt_put(cat, id, st);
	return err;
}

/* ---- transactions ---- */

/* Starts an atomic step: a transaction, or a savepoint inside the caller's. */
static int tx_start(struct catalog *cat, bool *outer)
{
	if (cat->iterating > 0)
		return -ERR_INVALID;
	*outer = sqlite3_get_autocommit(cat->db) != 0;
	return run(cat, *outer ? ST_BEGIN : ST_SAVEPOINT);
}

/* Ends what tx_start began: keeps it if err is 0, else undoes it. Returns err or the commit's error. */
static int tx_end(struct catalog *cat, bool outer, int err)
{
	if (err == 0) {
		err = run(cat, outer ? ST_COMMIT : ST_RELEASE);
		if (err == 0)
			return 0;
	}
	/* SQLite may already have rolled the whole transaction back (disk full, I/O). */
	if (sqlite3_get_autocommit(cat->db))
		return err;
	if (outer) {
		run(cat, ST_ROLLBACK);
	} else {
		run(cat, ST_ROLLBACK_TO);
		run(cat, ST_RELEASE);
	}
	return err;
}

int catalog_begin(struct catalog *cat)
{
	if (cat->iterating > 0 || !sqlite3_get_autocommit(cat->db))
		return -ERR_INVALID;
	return run(cat, ST_BEGIN);
}

int catalog_commit(struct catalog *cat)
{
	if (cat->iterating > 0 || sqlite3_get_autocommit(cat->db))
		return -ERR_INVALID;
	int err = run(cat, ST_COMMIT);
	if (err && !sqlite3_get_autocommit(cat->db))
		run(cat, ST_ROLLBACK);
	return err;
}

int catalog_rollback(struct catalog *cat)
{
	if (cat->iterating > 0)
		return -ERR_INVALID;
	if (sqlite3_get_autocommit(cat->db))
		return 0;
	return run(cat, ST_ROLLBACK);
}

/* ---- open, schema, close ---- */

/* Runs one-off SQL returning an integer in its first row (PRAGMAs, counts). */
static int query_int(struct catalog *cat, const char *sql, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return map_rc(cat, rc, sql);
	int err = step(cat, st);
	if (err == 1) {
		*out = sqlite3_column_int64(st, 0);
		err = 0;
	} else if (err == 0) {
		err = -ERR_CORRUPT;
	}
	sqlite3_finalize(st);
	return err;
}

/* Runs one-off SQL and copies the text of its first row into buf. */
static int query_text(struct catalog *cat, const char *sql, char *buf, size_t cap)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return map_rc(cat, rc, sql);
	int err = step(cat, st);
	buf[0] = 0;
	if (err == 1) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(buf, cap, "%s", t ? (const char *)t : "");
		err = 0;
	}
	sqlite3_finalize(st);
	return err;
}

/* Runs SQL text we wrote (schema, PRAGMAs), never text containing input. */
static int exec_sql(struct catalog *cat, const char *sql)
{
	int rc = sqlite3_exec(cat->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : map_rc(cat, rc, "schema");
}

/*
 * Checks that the file is ours (or empty) and not newer than this code, before
 * anything is written to it. Sets *version to its schema version.
 */
static int check_identity(struct catalog *cat, const char *path, int64_t *version)
{
	int64_t app_id, objects;
	int err = query_int(cat, "PRAGMA application_id", &app_id);
	if (err == 0)
		err = query_int(cat, "PRAGMA user_version", version);
	if (err == 0)
		err = query_int(cat, "SELECT count(*) FROM sqlite_schema", &objects);
	if (err)
		return err;
	if (app_id == 0 && *version == 0 && objects == 0)
		return 0; /* a new, empty database */
	if (app_id != CATALOG_APPLICATION_ID || *version <= 0) {
		diag_error("catalog", "%s: not a Sluice catalog (application_id %lld, version %lld)",
			   path, (long long)app_id, (long long)*version);
		return -ERR_CORRUPT;
	}
	if (*version > CATALOG_SCHEMA_VERSION) {
		diag_error("catalog", "%s: schema version %lld is newer than this build's %d",
			   path, (long long)*version, CATALOG_SCHEMA_VERSION);
		return -ERR_UNSUPPORTED;
	}
	return 0;
}

/* Runs every migration step from the file's version up, each in a transaction. */
static int migrate(struct catalog *cat, const char *path)
{
	for (;;) {
		int64_t v;
		int err = exec_sql(cat, "BEGIN IMMEDIATE");
		if (err)
			return err;
		/* Re-read under the write lock: another process may have migrated. */
		err = query_int(cat, "PRAGMA user_version", &v);
		if (err == 0 && (v < 0 || v > CATALOG_SCHEMA_VERSION))
			err = -ERR_UNSUPPORTED;
		if (err == 0 && v == CATALOG_SCHEMA_VERSION) {
			exec_sql(cat, "ROLLBACK");
			return 0;
		}
		if (err == 0)
			err = exec_sql(cat, migrations[v]);
		if (err == 0) {
			char sql[96];
			snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = %d",
				 CATALOG_APPLICATION_ID, (int)v + 1);
			err = exec_sql(cat, sql);
		}
		if (err == 0)
			err = exec_sql(cat, "COMMIT");
		if (err) {
			if (!sqlite3_get_autocommit(cat->db))
				exec_sql(cat, "ROLLBACK");
			return err;
		}
		if (v == 0)
			diag_info("catalog", "%s: created, schema version 1", path);
		else
			diag_info("catalog", "%s: schema migrated from version %lld to %lld", path,
				  (long long)v, (long long)v + 1);
	}
}

int catalog_open(const char *path, struct catalog **out)
{
	*out = NULL;
	if (path == NULL || path[0] == 0)
		return -ERR_INVALID;
	struct catalog *cat = calloc(1, sizeof(*cat));
	if (cat == NULL)
		return -ERR_NOMEM;
	int err;
	int rc = sqlite3_open_v2(path, &cat->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
	if (rc != SQLITE_OK) {
		err = cat->db ? map_rc(cat, rc, path) : -ERR_NOMEM;
		goto fail;
	}
	sqlite3_extended_result_codes(cat->db, 1);
	sqlite3_busy_timeout(cat->db, CATALOG_BUSY_TIMEOUT_MS);
	sqlite3_limit(cat->db, SQLITE_LIMIT_LENGTH, CATALOG_SQL_LENGTH_MAX);
	/* The schema has no triggers or views and needs no functions beyond built-ins. */
	sqlite3_db_config(cat->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(cat->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	sqlite3_db_config(cat->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
	sqlite3_db_config(cat->db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, NULL);

	int64_t version;
	err = check_identity(cat, path, &version);
	if (err)
		goto fail;
	/* SQLite falls back to read-only on a write-protected file; fail now, not at the first write. */
	if (sqlite3_db_readonly(cat->db, "main") != 0) {
		diag_error("catalog", "%s: cannot be opened for writing (check it and its -wal, -shm files)",
			   path);
		err = -ERR_IO;
		goto fail;
	}
	char mode[16];
	err = query_text(cat, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
	if (err)
		goto fail;
	if (strcmp(mode, "wal") != 0)
		diag_warn("catalog", "%s: journal mode is %s, not wal", path, mode);
	err = exec_sql(cat, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON");
	if (err)
		goto fail;
	if (version > 0) {
		char check[256];
		err = query_text(cat, "PRAGMA quick_check", check, sizeof(check));
		for (char *c = check; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' '; /* diag prints one line per event */
		if (err == 0 && strcmp(check, "ok") != 0) {
			diag_error("catalog", "%s: integrity check failed: %s", path, check);
			err = -ERR_CORRUPT;
		}
		if (err)
			goto fail;
	}
	err = migrate(cat, path);
	if (err)
		goto fail;
	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(cat->db, st_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&cat->stmts[i], NULL);
		if (rc != SQLITE_OK) {
			/* Our SQL is fixed, so a failure means the stored schema is not ours. */
			err = map_rc(cat, rc, st_sql[i]);
			if ((rc & 0xff) == SQLITE_ERROR)
				err = -ERR_CORRUPT;
			goto fail;
		}
	}
	*out = cat;
	return 0;
fail:
	catalog_close(cat);
	return err;
}

void catalog_close(struct catalog *cat)
{
	if (cat == NULL)
		return;
	if (cat->db != NULL && !sqlite3_get_autocommit(cat->db)) {
		diag_warn("catalog", "closing with an open transaction: rolled back");
		sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
	}
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(cat->stmts[i]);
	if (cat->db != NULL) {
		int rc = sqlite3_close(cat->db);
		if (rc != SQLITE_OK) {
			diag_warn("catalog", "close: %s", sqlite3_errstr(rc));
			sqlite3_close_v2(cat->db);
		}
	}
	free(cat);
}

/* ---- Kafka topics ---- */

/* Decodes a row of (id, name, uuid, partitions, created_ms). */
static void topic_row(struct row *r, int64_t *id, struct catalog_topic *t)
{
	*id = row_int(r, 0, 1, INT64_MAX);
	t->name = row_name(r, 1, CATALOG_TOPIC_NAME_MAX);
	struct slice uuid = row_bytes(r, 2, sizeof(t->id), false);
	if (r->err == 0 && uuid.len != sizeof(t->id))
		row_fail(r, 2, "not 16 bytes");
	if (r->err == 0)
		memcpy(t->id, uuid.data, sizeof(t->id));
	t->partitions = (int32_t)row_int(r, 3, 1, CATALOG_PARTITIONS_MAX);
	t->created_ms = row_int(r, 4, INT64_MIN, INT64_MAX);
}

/* Finds a topic by name: its row id and description (t->name is the given name). */
static int topic_lookup(struct catalog *cat, struct slice name, int64_t *id,
			struct catalog_topic *t)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_TOPIC_GET, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, name, &rc);
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : step(cat, st);
	if (err == 0)
		err = -ERR_NOT_FOUND;
	if (err == 1) {
		struct row r = { st, 0 };
		topic_row(&r, id, t);
		t->name = name;
		err = r.err;
	}
	stmt_put(cat, ST_TOPIC_GET, st);
	return err;
}

/* Adds partition rows first..last-1 of topic id. */
static int partitions_insert(struct catalog *cat, int64_t id, int32_t first, int32_t last)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_PARTITIONS_INSERT, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_int(st, 1, id, &rc);
	bind_int(st, 2, first, &rc);
	bind_int(st, 3, last, &rc);
	err = exec_bound(cat, st, rc);
	stmt_put(cat, ST_PARTITIONS_INSERT, st);
	return err;
}

/* Runs ST_CONFIG_INSERT/UPSERT/DELETE for one key of topic id. */
static int config_write(struct catalog *cat, enum st id, int64_t topic, struct slice key,
			struct slice value)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, id, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_int(st, 1, topic, &rc);
	bind_blob(st, 2, key, &rc);
	if (id != ST_CONFIG_DELETE)
		bind_blob(st, 3, value, &rc);
	err = exec_bound(cat, st, rc);
	stmt_put(cat, id, st);
	return err;
}

static bool config_ok(const struct catalog_config *c)
{
	return name_ok(c->key, CATALOG_CONFIG_KEY_MAX) && c->value.data != NULL &&
	       blob_ok(c->value, CATALOG_CONFIG_VALUE_MAX);
}

int catalog_topic_create(struct catalog *cat, struct slice name, int32_t partitions,
			 const struct catalog_config *configs, size_t n_configs)
{
	if (!name_ok(name, CATALOG_TOPIC_NAME_MAX) || partitions < 1 ||
	    partitions > CATALOG_PARTITIONS_MAX || n_configs > CATALOG_CONFIGS_MAX ||
	    (n_configs > 0 && configs == NULL))
		return -ERR_INVALID;
	for (size_t i = 0; i < n_configs; i++)
		if (!config_ok(&configs[i]))
			return -ERR_INVALID;
	bool outer;
	int err = tx_start(cat, &outer);
	if (err)
		return err;
	sqlite3_stmt *st = NULL;
	err = stmt_get(cat, ST_TOPIC_INSERT, &st);
	if (err == 0) {
		int rc = SQLITE_OK;
		bind_blob(st, 1, name, &rc);
		bind_int(st, 2, partitions, &rc);
		bind_int(st, 3, clock_now_ms(), &rc);
		err = exec_bound(cat, st, rc);
		stmt_put(cat, ST_TOPIC_INSERT, st);
	}
	int64_t id = sqlite3_last_insert_rowid(cat->db);
	if (err == 0)
		err = partitions_insert(cat, id, 0, partitions);
	for (size_t i = 0; err == 0 && i < n_configs; i++) {
		err = config_write(cat, ST_CONFIG_INSERT, id, configs[i].key, configs[i].value);
		if (err == -ERR_EXISTS) /* the same key twice */
			err = -ERR_INVALID;
	}
	return tx_end(cat, outer, err);
}

int catalog_topic_delete(struct catalog *cat, struct slice name)
{
	return delete_by_name(cat, ST_TOPIC_DELETE, name, CATALOG_TOPIC_NAME_MAX);
}

static int config_each(struct row *r, void *ctx)
{
	struct list_ctx *c = ctx;
	struct catalog_config cfg;
	cfg.key = row_name(r, 0, CATALOG_CONFIG_KEY_MAX);
	cfg.value = row_bytes(r, 1, CATALOG_CONFIG_VALUE_MAX, false);
	return r->err ? r->err : c->fn.config(c->arg, &cfg);
}

int catalog_topic_get(struct catalog *cat, struct slice name, struct catalog_topic *out,
		      catalog_config_fn config_fn, void *arg)
{
	if (!name_ok(name, CATALOG_TOPIC_NAME_MAX))
		return -ERR_INVALID;
	int64_t id;
	struct catalog_topic t;
	int err = topic_lookup(cat, name, &id, &t);
	if (err)
		return err;
	if (out != NULL)
		*out = t;
	if (config_fn == NULL)
		return 0;
	sqlite3_stmt *st = NULL;
	err = stmt_get(cat, ST_CONFIG_LIST, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_int(st, 1, id, &rc);
	struct list_ctx ctx = { .fn.config = config_fn, .arg = arg };
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : iterate(cat, st, config_each, &ctx);
	stmt_put(cat, ST_CONFIG_LIST, st);
	return err;
}

static int topic_each(struct row *r, void *ctx)
{
	struct list_ctx *c = ctx;
	struct catalog_topic t;
	int64_t id;
	topic_row(r, &id, &t);
	return r->err ? r->err : c->fn.topic(c->arg, &t);
}

int catalog_topic_list(struct catalog *cat, catalog_topic_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_TOPIC_LIST, &st);
	if (err)
		return err;
	struct list_ctx ctx = { .fn.topic = fn, .arg = arg };
	err = iterate(cat, st, topic_each, &ctx);
	stmt_put(cat, ST_TOPIC_LIST, st);
	return err;
}

int catalog_topic_add_partitions(struct catalog *cat, struct slice name, int32_t new_count)
{
	if (!name_ok(name, CATALOG_TOPIC_NAME_MAX) || new_count < 1 ||
	    new_count > CATALOG_PARTITIONS_MAX)
		return -ERR_INVALID;
	bool outer;
	int err = tx_start(cat, &outer);
	if (err)
		return err;
	int64_t id;
	struct catalog_topic t;
	err = topic_lookup(cat, name, &id, &t);
	if (err == 0 && new_count <= t.partitions)
		err = -ERR_INVALID; /* Kafka: INVALID_PARTITIONS, counts only grow */
	if (err == 0) {
		sqlite3_stmt *st = NULL;
		err = stmt_get(cat, ST_TOPIC_SET_PARTITIONS, &st);
		if (err == 0) {
			int rc = SQLITE_OK;
			bind_int(st, 1, id, &rc);
			bind_int(st, 2, new_count, &rc);
			err = exec_bound(cat, st, rc);
			stmt_put(cat, ST_TOPIC_SET_PARTITIONS, st);
		}
	}
	if (err == 0)
		err = partitions_insert(cat, id, t.partitions, new_count);
	return tx_end(cat, outer, err);
}

int catalog_topic_config_set(struct catalog *cat, struct slice name, struct slice key,
			     struct slice value)
{
	if (!name_ok(name, CATALOG_TOPIC_NAME_MAX) || !name_ok(key, CATALOG_CONFIG_KEY_MAX) ||
	    (value.data != NULL && !blob_ok(value, CATALOG_CONFIG_VALUE_MAX)))
		return -ERR_INVALID;
	int64_t id;
	struct catalog_topic t;
	int err = topic_lookup(cat, name, &id, &t);
	if (err)
		return err;
	return config_write(cat, value.data ? ST_CONFIG_UPSERT : ST_CONFIG_DELETE, id, key, value);
}

/* ---- AMQP exchanges ---- */

static void exchange_row(struct row *r, struct catalog_exchange *x)
{
	x->name = row_name(r, 0, CATALOG_NAME_MAX);
	x->type = row_name(r, 1, CATALOG_NAME_MAX);
	x->durable = row_int(r, 2, 0, 1);
	x->auto_delete = row_int(r, 3, 0, 1);
	x->internal = row_int(r, 4, 0, 1);
	x->arguments = row_bytes(r, 5, CATALOG_ARGUMENTS_MAX, false);
	x->mem = NULL;
}

int catalog_exchange_create(struct catalog *cat, const struct catalog_exchange *x)
{
	if (x == NULL || !name_ok(x->name, CATALOG_NAME_MAX) ||
	    !name_ok(x->type, CATALOG_NAME_MAX) || !blob_ok(x->arguments, CATALOG_ARGUMENTS_MAX))
		return -ERR_INVALID;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_EXCHANGE_INSERT, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, x->name, &rc);
	bind_blob(st, 2, x->type, &rc);
	bind_int(st, 3, x->durable, &rc);
	bind_int(st, 4, x->auto_delete, &rc);
	bind_int(st, 5, x->internal, &rc);
	bind_blob(st, 6, x->arguments, &rc);
	err = exec_bound(cat, st, rc);
	stmt_put(cat, ST_EXCHANGE_INSERT, st);
	return err;
}

int catalog_exchange_delete(struct catalog *cat, struct slice name)
{
	return delete_by_name(cat, ST_EXCHANGE_DELETE, name, CATALOG_NAME_MAX);
}

int catalog_exchange_get(struct catalog *cat, struct slice name, struct catalog_exchange *out)
{
	memset(out, 0, sizeof(*out));
	if (!name_ok(name, CATALOG_NAME_MAX))
		return -ERR_INVALID;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_EXCHANGE_GET, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, name, &rc);
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : step(cat, st);
	if (err == 0)
		err = -ERR_NOT_FOUND;
	if (err == 1) {
		struct row r = { st, 0 };
		struct catalog_exchange x;
		exchange_row(&r, &x);
		err = r.err;
		if (err == 0) {
			struct slice *const fields[] = { &x.name, &x.type, &x.arguments };
			x.mem = copy_out(fields, 3);
			if (x.mem == NULL)
				err = -ERR_NOMEM;
			else
				*out = x;
		}
	}
	stmt_put(cat, ST_EXCHANGE_GET, st);
	return err;
}

void catalog_exchange_fini(struct catalog_exchange *x)
{
	free(x->mem);
	memset(x, 0, sizeof(*x));
}

static int exchange_each(struct row *r, void *ctx)
{
	struct list_ctx *c = ctx;
	struct catalog_exchange x;
	exchange_row(r, &x);
	return r->err ? r->err : c->fn.exchange(c->arg, &x);
}

int catalog_exchange_list(struct catalog *cat, catalog_exchange_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_EXCHANGE_LIST, &st);
	if (err)
		return err;
	struct list_ctx ctx = { .fn.exchange = fn, .arg = arg };
	err = iterate(cat, st, exchange_each, &ctx);
	stmt_put(cat, ST_EXCHANGE_LIST, st);
	return err;
}

/* ---- AMQP queues ---- */

static void queue_row(struct row *r, struct catalog_queue *q)
{
	q->name = row_name(r, 0, CATALOG_NAME_MAX);
	q->durable = row_int(r, 1, 0, 1);
	q->exclusive = row_int(r, 2, 0, 1);
	q->auto_delete = row_int(r, 3, 0, 1);
	q->arguments = row_bytes(r, 4, CATALOG_ARGUMENTS_MAX, false);
	q->mem = NULL;
}

int catalog_queue_create(struct catalog *cat, const struct catalog_queue *q)
{
	if (q == NULL || !name_ok(q->name, CATALOG_NAME_MAX) ||
	    !blob_ok(q->arguments, CATALOG_ARGUMENTS_MAX))
		return -ERR_INVALID;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_QUEUE_INSERT, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, q->name, &rc);
	bind_int(st, 2, q->durable, &rc);
	bind_int(st, 3, q->exclusive, &rc);
	bind_int(st, 4, q->auto_delete, &rc);
	bind_blob(st, 5, q->arguments, &rc);
	err = exec_bound(cat, st, rc);
	stmt_put(cat, ST_QUEUE_INSERT, st);
	return err;
}

int catalog_queue_delete(struct catalog *cat, struct slice name)
{
	return delete_by_name(cat, ST_QUEUE_DELETE, name, CATALOG_NAME_MAX);
}

int catalog_queue_get(struct catalog *cat, struct slice name, struct catalog_queue *out)
{
	memset(out, 0, sizeof(*out));
	if (!name_ok(name, CATALOG_NAME_MAX))
		return -ERR_INVALID;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_QUEUE_GET, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, name, &rc);
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : step(cat, st);
	if (err == 0)
		err = -ERR_NOT_FOUND;
	if (err == 1) {
		struct row r = { st, 0 };
		struct catalog_queue q;
		queue_row(&r, &q);
		err = r.err;
		if (err == 0) {
			struct slice *const fields[] = { &q.name, &q.arguments };
			q.mem = copy_out(fields, 2);
			if (q.mem == NULL)
				err = -ERR_NOMEM;
			else
				*out = q;
		}
	}
	stmt_put(cat, ST_QUEUE_GET, st);
	return err;
}

void catalog_queue_fini(struct catalog_queue *q)
{
	free(q->mem);
	memset(q, 0, sizeof(*q));
}

static int queue_each(struct row *r, void *ctx)
{
	struct list_ctx *c = ctx;
	struct catalog_queue q;
	queue_row(r, &q);
	return r->err ? r->err : c->fn.queue(c->arg, &q);
}

int catalog_queue_list(struct catalog *cat, catalog_queue_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_QUEUE_LIST, &st);
	if (err)
		return err;
	struct list_ctx ctx = { .fn.queue = fn, .arg = arg };
	err = iterate(cat, st, queue_each, &ctx);
	stmt_put(cat, ST_QUEUE_LIST, st);
	return err;
}

/* ---- AMQP bindings ---- */

/* Validates a binding and resolves its endpoints to row ids (0 for the unused kind). */
static int binding_resolve(struct catalog *cat, const struct catalog_binding *b,
			   int64_t *source, int64_t *dest_queue, int64_t *dest_exchange)
{
	if (b == NULL || !name_ok(b->source, CATALOG_NAME_MAX) ||
	    !name_ok(b->destination, CATALOG_NAME_MAX) ||
	    (b->dest_kind != CATALOG_DEST_QUEUE && b->dest_kind != CATALOG_DEST_EXCHANGE) ||
	    !blob_ok(b->routing_key, CATALOG_NAME_MAX) ||
	    !blob_ok(b->arguments, CATALOG_ARGUMENTS_MAX))
		return -ERR_INVALID;
	*dest_queue = 0;
	*dest_exchange = 0;
	int err = lookup_id(cat, ST_EXCHANGE_ID, b->source, source);
	if (err)
		return err;
	if (b->dest_kind == CATALOG_DEST_QUEUE)
		return lookup_id(cat, ST_QUEUE_ID, b->destination, dest_queue);
	return lookup_id(cat, ST_EXCHANGE_ID, b->destination, dest_exchange);
}

/* Runs ST_BINDING_INSERT or ST_BINDING_DELETE for b. */
static int binding_write(struct catalog *cat, enum st id, const struct catalog_binding *b)
{
	int64_t source, dest_queue, dest_exchange;
	int err = binding_resolve(cat, b, &source, &dest_queue, &dest_exchange);
	if (err)
		return err;
	sqlite3_stmt *st = NULL;
	err = stmt_get(cat, id, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_int(st, 1, source, &rc);
	bind_int(st, 2, dest_queue, &rc);
	bind_int(st, 3, dest_exchange, &rc);
	bind_blob(st, 4, b->routing_key, &rc);
	bind_blob(st, 5, b->arguments, &rc);
	err = exec_bound(cat, st, rc);
	if (err == 0 && id == ST_BINDING_DELETE && sqlite3_changes(cat->db) == 0)
		err = -ERR_NOT_FOUND;
	stmt_put(cat, id, st);
	return err;
}

int catalog_binding_add(struct catalog *cat, const struct catalog_binding *b)
{
	return binding_write(cat, ST_BINDING_INSERT, b);
}

int catalog_binding_remove(struct catalog *cat, const struct catalog_binding *b)
{
	return binding_write(cat, ST_BINDING_DELETE, b);
}

static int binding_each(struct row *r, void *ctx)
{
	struct list_ctx *c = ctx;
	struct catalog_binding b;
	b.source = row_name(r, 0, CATALOG_NAME_MAX);
	b.dest_kind = row_int(r, 1, 0, 1) ? CATALOG_DEST_EXCHANGE : CATALOG_DEST_QUEUE;
	b.destination = row_name(r, 2, CATALOG_NAME_MAX);
	b.routing_key = row_bytes(r, 3, CATALOG_NAME_MAX, false);
	b.arguments = row_bytes(r, 4, CATALOG_ARGUMENTS_MAX, false);
	return r->err ? r->err : c->fn.binding(c->arg, &b);
}

/* Lists bindings with statement id; name binds ?1 unless its data is NULL. */
static int binding_iterate(struct catalog *cat, enum st id, struct slice name,
			   catalog_binding_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, id, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	if (name.data != NULL)
		bind_blob(st, 1, name, &rc);
	struct list_ctx ctx = { .fn.binding = fn, .arg = arg };
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : iterate(cat, st, binding_each, &ctx);
	stmt_put(cat, id, st);
	return err;
}

int catalog_binding_list(struct catalog *cat, catalog_binding_fn fn, void *arg)
{
	return binding_iterate(cat, ST_BINDING_LIST, (struct slice){ NULL, 0 }, fn, arg);
}

int catalog_binding_list_source(struct catalog *cat, struct slice source,
				catalog_binding_fn fn, void *arg)
{
	if (!name_ok(source, CATALOG_NAME_MAX))
		return -ERR_INVALID;
	return binding_iterate(cat, ST_BINDING_LIST_SOURCE, source, fn, arg);
}

int catalog_binding_list_destination(struct catalog *cat, enum catalog_dest kind,
				     struct slice destination, catalog_binding_fn fn, void *arg)
{
	if (!name_ok(destination, CATALOG_NAME_MAX) ||
	    (kind != CATALOG_DEST_QUEUE && kind != CATALOG_DEST_EXCHANGE))
		return -ERR_INVALID;
	return binding_iterate(cat, kind == CATALOG_DEST_QUEUE ? ST_BINDING_LIST_DEST_QUEUE :
			       ST_BINDING_LIST_DEST_EXCHANGE, destination, fn, arg);
}

/* ---- Kafka consumer-group offsets ---- */

/* Checks one entry of a commit: -ERR_INVALID or -ERR_TOO_LARGE (metadata). */
static int offset_check(const struct catalog_offset *o)
{
	if (!name_ok(o->topic, CATALOG_TOPIC_NAME_MAX) || o->partition < 0 ||
	    o->partition >= CATALOG_PARTITIONS_MAX)
		return -ERR_INVALID;
	if (o->metadata.data == NULL)
		return o->metadata.len == 0 ? 0 : -ERR_INVALID;
	return o->metadata.len <= CATALOG_METADATA_MAX ? 0 : -ERR_TOO_LARGE;
}

/* Upserts one offset of group; -ERR_NOT_FOUND for a missing topic or partition. */
static int offset_upsert(struct catalog *cat, struct slice group, const struct catalog_offset *o)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_OFFSET_UPSERT, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, group, &rc);
	bind_blob(st, 2, o->topic, &rc);
	bind_int(st, 3, o->partition, &rc);
	bind_int(st, 4, o->offset, &rc);
	bind_int(st, 5, o->leader_epoch, &rc);
	bind_nullable(st, 6, o->metadata, &rc);
	bind_int(st, 7, o->commit_time_ms, &rc);
	err = exec_bound(cat, st, rc);
	if (err == 0 && sqlite3_changes(cat->db) == 0) /* no such topic: SELECT gave no row */
		err = -ERR_NOT_FOUND;
	stmt_put(cat, ST_OFFSET_UPSERT, st);
	return err;
}

int catalog_offsets_commit(struct catalog *cat, struct slice group,
			   const struct catalog_offset *offsets, size_t n, size_t *failed)
{
	if (!name_ok(group, CATALOG_GROUP_NAME_MAX) || (n > 0 && offsets == NULL))
		return -ERR_INVALID;
	for (size_t i = 0; i < n; i++) {
		int err = offset_check(&offsets[i]);
		if (err) {
			if (failed)
				*failed = i;
			return err;
		}
	}
	if (n == 0)
		return 0;
	bool outer;
	int err = tx_start(cat, &outer);
	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		err = offset_upsert(cat, group, &offsets[i]);
		if (err) {
			if (failed)
				*failed = i;
			break;
		}
	}
	return tx_end(cat, outer, err);
}

/* Decodes (offset, leader_epoch, metadata, commit_time_ms) starting at column col. */
static void offset_row(struct row *r, int col, struct catalog_offset *o)
{
	o->offset = row_int(r, col, INT64_MIN, INT64_MAX);
	o->leader_epoch = (int32_t)row_int(r, col + 1, INT32_MIN, INT32_MAX);
	o->metadata = row_bytes(r, col + 2, CATALOG_METADATA_MAX, true);
	o->commit_time_ms = row_int(r, col + 3, INT64_MIN, INT64_MAX);
	o->mem = NULL;
}

int catalog_offset_fetch(struct catalog *cat, struct slice group, struct slice topic,
			 int32_t partition, struct catalog_offset *out)
{
	memset(out, 0, sizeof(*out));
	if (!name_ok(group, CATALOG_GROUP_NAME_MAX) || !name_ok(topic, CATALOG_TOPIC_NAME_MAX) ||
	    partition < 0)
		return -ERR_INVALID;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_OFFSET_FETCH, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, group, &rc);
	bind_blob(st, 2, topic, &rc);
	bind_int(st, 3, partition, &rc);
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : step(cat, st);
	if (err == 0)
		err = -ERR_NOT_FOUND;
	if (err == 1) {
		struct row r = { st, 0 };
		struct catalog_offset o;
		offset_row(&r, 0, &o);
		err = r.err;
		if (err == 0) {
			struct slice *const fields[] = { &o.metadata };
			o.mem = copy_out(fields, 1);
			o.topic = topic;
			o.partition = partition;
			if (o.mem == NULL)
				err = -ERR_NOMEM;
			else
				*out = o;
		}
	}
	stmt_put(cat, ST_OFFSET_FETCH, st);
	return err;
}

void catalog_offset_fini(struct catalog_offset *o)
{
	free(o->mem);
	memset(o, 0, sizeof(*o));
}

static int offset_each(struct row *r, void *ctx)
{
	struct list_ctx *c = ctx;
	struct catalog_offset o;
	o.topic = row_name(r, 0, CATALOG_TOPIC_NAME_MAX);
	o.partition = (int32_t)row_int(r, 1, 0, CATALOG_PARTITIONS_MAX - 1);
	offset_row(r, 2, &o);
	return r->err ? r->err : c->fn.offset(c->arg, &o);
}

int catalog_offsets_list(struct catalog *cat, struct slice group, catalog_offset_fn fn, void *arg)
{
	if (!name_ok(group, CATALOG_GROUP_NAME_MAX))
		return -ERR_INVALID;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_OFFSET_LIST, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, group, &rc);
	struct list_ctx ctx = { .fn.offset = fn, .arg = arg };
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : iterate(cat, st, offset_each, &ctx);
	stmt_put(cat, ST_OFFSET_LIST, st);
	return err;
}

static int group_each(struct row *r, void *ctx)
{
	struct list_ctx *c = ctx;
	struct slice g = row_name(r, 0, CATALOG_GROUP_NAME_MAX);
	return r->err ? r->err : c->fn.group(c->arg, g);
}

int catalog_groups_list(struct catalog *cat, catalog_group_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_GROUP_LIST, &st);
	if (err)
		return err;
	struct list_ctx ctx = { .fn.group = fn, .arg = arg };
	err = iterate(cat, st, group_each, &ctx);
	stmt_put(cat, ST_GROUP_LIST, st);
	return err;
}

int catalog_group_delete(struct catalog *cat, struct slice group)
{
	return delete_by_name(cat, ST_GROUP_DELETE, group, CATALOG_GROUP_NAME_MAX);
}

/* ---- AMQP queue delivery checkpoints ---- */

int catalog_queue_checkpoint_set(struct catalog *cat, struct slice queue, struct slice data)
{
	if (!name_ok(queue, CATALOG_NAME_MAX) || (data.data == NULL && data.len > 0))
		return -ERR_INVALID;
	if (data.len > CATALOG_CHECKPOINT_MAX)
		return -ERR_TOO_LARGE;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_CHECKPOINT_SET, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, queue, &rc);
	bind_blob(st, 2, data, &rc);
	err = exec_bound(cat, st, rc);
	if (err == 0 && sqlite3_changes(cat->db) == 0) /* no such queue */
		err = -ERR_NOT_FOUND;
	stmt_put(cat, ST_CHECKPOINT_SET, st);
	return err;
}

int catalog_queue_checkpoint_get(struct catalog *cat, struct slice queue,
				 uint8_t **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	if (!name_ok(queue, CATALOG_NAME_MAX))
		return -ERR_INVALID;
	sqlite3_stmt *st = NULL;
	int err = stmt_get(cat, ST_CHECKPOINT_GET, &st);
	if (err)
		return err;
	int rc = SQLITE_OK;
	bind_blob(st, 1, queue, &rc);
	err = rc != SQLITE_OK ? map_rc(cat, rc, "bind") : step(cat, st);
	if (err == 0)
		err = -ERR_NOT_FOUND;
	if (err == 1) {
		struct row r = { st, 0 };
		struct slice s = row_bytes(&r, 0, CATALOG_CHECKPOINT_MAX, true);
		err = r.err;
		if (err == 0 && s.data != NULL) {
			*data = malloc(s.len > 0 ? s.len : 1);
			if (*data == NULL) {
				err = -ERR_NOMEM;
			} else {
				memcpy(*data, s.data, s.len);
				*len = s.len;
			}
		}
	}
	stmt_put(cat, ST_CHECKPOINT_GET, st);
	return err;
}
