/*
 * catalog.h: the broker's metadata, kept in one SQLite database.
 *
 * The catalog owns everything that describes the broker and nothing that is a
 * message: Kafka topics (partition counts, configs), AMQP exchanges, queues and
 * bindings, Kafka consumer-group offsets, and a small delivery checkpoint per
 * AMQP queue. Messages live in logs (storage/log). The database runs in WAL
 * mode with synchronous=FULL, so a function that returned 0 outside an explicit
 * transaction (or a catalog_commit() that returned 0) survives a crash or power
 * loss. docs/catalog.md describes the schema, durability and versioning.
 *
 * Names (topics, exchanges, queues, groups, routing keys, config keys) are byte
 * strings given as struct slice: any bytes, including NUL, quotes and UTF-8, are
 * stored and returned unchanged and are never part of SQL text. The catalog only
 * checks lengths (-ERR_INVALID when empty or above the caps below); protocol
 * rules such as Kafka's topic character set are the broker's to enforce.
 *
 * Threads: a catalog is used from one thread at a time (the owner serializes
 * calls); it holds no locks of its own. Other processes may open the same file
 * (SQLite's locking with busy_timeout applies), e.g. sluice-admin.
 *
 * Results: functions return 0 or a negative ERR_* code. -ERR_NOT_FOUND and
 * -ERR_EXISTS report missing and duplicate objects, -ERR_INVALID bad
 * arguments, -ERR_CORRUPT a damaged database, -ERR_AGAIN a lock another process
 * held past the busy timeout. List functions call fn once per row with borrowed
 * data (valid until fn returns); fn returns 0 to go on, any other value stops
 * the listing and is returned. A callback may call read functions of the same
 * catalog (get, list) but not change it (-ERR_INVALID).
 */
#ifndef SLUICE_CATALOG_H
#define SLUICE_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/reader.h"

/* The schema version this code reads and writes (PRAGMA user_version). */
#define CATALOG_SCHEMA_VERSION 1

#define CATALOG_TOPIC_NAME_MAX 249        /* Kafka's limit on topic names */
#define CATALOG_NAME_MAX 255              /* AMQP shortstr: exchange, queue, type, routing key */
#define CATALOG_GROUP_NAME_MAX 32767      /* Kafka STRING: consumer group ids */
#define CATALOG_CONFIG_KEY_MAX 255        /* topic config names */
#define CATALOG_CONFIG_VALUE_MAX 32767    /* topic config values */
#define CATALOG_CONFIGS_MAX 1024          /* configs given to one catalog_topic_create() */
#define CATALOG_PARTITIONS_MAX 100000     /* partitions of one topic */
#define CATALOG_ARGUMENTS_MAX (1 << 20)   /* AMQP arguments blob (encoded field table) */
#define CATALOG_METADATA_MAX 32767        /* Kafka offset commit metadata */
#define CATALOG_CHECKPOINT_MAX (16 << 20) /* one queue delivery checkpoint */

struct catalog;

/* A borrowed slice over a NUL-terminated string (not counting the NUL). */
static inline struct slice catalog_cstr(const char *s)
{
	return (struct slice){ (const uint8_t *)s, strlen(s) };
}

/*
 * Opens (creating if missing) the catalog at path and brings its schema to
 * CATALOG_SCHEMA_VERSION, running migrations in a transaction each. Returns
 * -ERR_CORRUPT for a file that is not a healthy Sluice catalog (garbage, damaged
 * pages, another application's database), -ERR_UNSUPPORTED for a schema newer
 * than this code, -ERR_IO when the file cannot be opened for reading and writing
 * (including a write-protected file or -wal/-shm file). *out is NULL on error.
 */
int catalog_open(const char *path, struct catalog **out);
/* Rolls back an open explicit transaction, finalizes statements, closes, frees. */
void catalog_close(struct catalog *cat);

/*
 * Explicit transactions group several calls into one atomic, durable change.
 * Inside one, a call that fails undoes only its own changes. begin fails with
 * -ERR_INVALID if a transaction is already open; commit without one is
 * -ERR_INVALID; a failed commit rolls the transaction back. rollback without a
 * transaction returns 0.
 */
int catalog_begin(struct catalog *cat);
int catalog_commit(struct catalog *cat);
int catalog_rollback(struct catalog *cat);

/* ---- Kafka topics ---- */

/* One topic config entry. value.data NULL means "no value" (see config_set). */
struct catalog_config {
	struct slice key;
	struct slice value;
};

struct catalog_topic {
	struct slice name;      /* borrowed */
	uint8_t id[16];         /* Kafka topic id (UUID), random at creation */
	int32_t partitions;     /* 1..CATALOG_PARTITIONS_MAX */
	int64_t created_ms;     /* wall clock at creation */
};

typedef int (*catalog_topic_fn)(void *arg, const struct catalog_topic *topic);
typedef int (*catalog_config_fn)(void *arg, const struct catalog_config *config);

/*
 * Creates a topic with partitions 0..partitions-1 and the given configs (keys
 * unique, values not null), atomically. -ERR_EXISTS if the name is taken;
 * -ERR_INVALID for a bad name, count, key or value, or a repeated key.
 */
int catalog_topic_create(struct catalog *cat, struct slice name, int32_t partitions,
			 const struct catalog_config *configs, size_t n_configs);
/* Deletes a topic with its partitions, configs and every group's offsets for it. */
int catalog_topic_delete(struct catalog *cat, struct slice name);
/*
 * Looks a topic up: fills *out (may be NULL; out->name borrows name), then, if
 * config_fn is not NULL, calls it for each config in key order.
 */
int catalog_topic_get(struct catalog *cat, struct slice name, struct catalog_topic *out,
		      catalog_config_fn config_fn, void *arg);
/* Calls fn for every topic in name order (bytewise). */
int catalog_topic_list(struct catalog *cat, catalog_topic_fn fn, void *arg);
/* Raises the partition count to new_count; -ERR_INVALID unless it grows. */
int catalog_topic_add_partitions(struct catalog *cat, struct slice name, int32_t new_count);
/* Sets one config of a topic (replacing it); value.data NULL removes the key. */
int catalog_topic_config_set(struct catalog *cat, struct slice name, struct slice key,
			     struct slice value);

/* ---- AMQP exchanges and queues ---- */

struct catalog_exchange {
	struct slice name;
	struct slice type;      /* "direct", "fanout", "topic", "headers", or a plugin's */
	bool durable;
	bool auto_delete;
	bool internal;
	struct slice arguments; /* opaque (an encoded AMQP field table); may be empty */
	void *mem;              /* owned copy from catalog_exchange_get; else NULL */
};

struct catalog_queue {
	struct slice name;
	bool durable;
	bool exclusive;
	bool auto_delete;
	struct slice arguments; /* opaque; may be empty */
	void *mem;              /* owned copy from catalog_queue_get; else NULL */
};

typedef int (*catalog_exchange_fn)(void *arg, const struct catalog_exchange *x);
typedef int (*catalog_queue_fn)(void *arg, const struct catalog_queue *q);

/* Stores an exchange (mem is ignored). -ERR_EXISTS if the name is taken. */
int catalog_exchange_create(struct catalog *cat, const struct catalog_exchange *x);
/* Deletes an exchange and every binding from or to it. */
int catalog_exchange_delete(struct catalog *cat, struct slice name);
/* Copies an exchange into *out (its fields point into out->mem); see _fini. */
int catalog_exchange_get(struct catalog *cat, struct slice name, struct catalog_exchange *out);
/* Frees what catalog_exchange_get copied (safe on a zeroed struct). */
void catalog_exchange_fini(struct catalog_exchange *x);
/* Calls fn for every exchange in name order. */
int catalog_exchange_list(struct catalog *cat, catalog_exchange_fn fn, void *arg);

/* Stores a queue (mem is ignored). -ERR_EXISTS if the name is taken. */
int catalog_queue_create(struct catalog *cat, const struct catalog_queue *q);
/* Deletes a queue, the bindings to it and its delivery checkpoint. */
int catalog_queue_delete(struct catalog *cat, struct slice name);
/* Copies a queue into *out (its fields point into out->mem); see _fini. */
int catalog_queue_get(struct catalog *cat, struct slice name, struct catalog_queue *out);
/* Frees what catalog_queue_get copied (safe on a zeroed struct). */
void catalog_queue_fini(struct catalog_queue *q);
/* Calls fn for every queue in name order. */
int catalog_queue_list(struct catalog *cat, catalog_queue_fn fn, void *arg);

/* ---- AMQP bindings ---- */

enum catalog_dest {
	CATALOG_DEST_QUEUE = 0,    /* queue.bind */
	CATALOG_DEST_EXCHANGE = 1, /* exchange.bind (RabbitMQ extension) */
};

/* A binding is identified by all five fields; arguments compare bytewise. */
struct catalog_binding {
	struct slice source;       /* exchange name */
	enum catalog_dest dest_kind;
	struct slice destination;  /* queue or exchange name */
	struct slice routing_key;  /* may be empty */
	struct slice arguments;    /* opaque; may be empty */
};

typedef int (*catalog_binding_fn)(void *arg, const struct catalog_binding *b);

/* Adds a binding; -ERR_NOT_FOUND if source or destination is missing, -ERR_EXISTS if present. */
int catalog_binding_add(struct catalog *cat, const struct catalog_binding *b);
/* Removes the binding equal to *b; -ERR_NOT_FOUND if there is none. */
int catalog_binding_remove(struct catalog *cat, const struct catalog_binding *b);
/* Calls fn for every binding, in the order they were added. */
int catalog_binding_list(struct catalog *cat, catalog_binding_fn fn, void *arg);
/* Calls fn for the bindings from exchange source (none if it does not exist). */
int catalog_binding_list_source(struct catalog *cat, struct slice source,
				catalog_binding_fn fn, void *arg);
/* Calls fn for the bindings to one queue or exchange (none if it does not exist). */
int catalog_binding_list_destination(struct catalog *cat, enum catalog_dest kind,
				     struct slice destination, catalog_binding_fn fn, void *arg);

/* ---- Kafka consumer-group offsets ---- */

struct catalog_offset {
	struct slice topic;
	int32_t partition;
	int64_t offset;
	int32_t leader_epoch;    /* -1 when unknown */
	struct slice metadata;   /* data NULL = null metadata; may be empty */
	int64_t commit_time_ms;
	void *mem;               /* owned copy from catalog_offset_fetch; else NULL */
};

typedef int (*catalog_offset_fn)(void *arg, const struct catalog_offset *o);
typedef int (*catalog_group_fn)(void *arg, struct slice group);

/*
 * Stores n offsets of group (replacing earlier commits of the same partitions)
 * in one transaction: all are stored or none. -ERR_NOT_FOUND if a topic or
 * partition does not exist; then *failed (if not NULL) is that entry's index.
 */
int catalog_offsets_commit(struct catalog *cat, struct slice group,
			   const struct catalog_offset *offsets, size_t n, size_t *failed);
/* Fetches one committed offset (metadata copied into out->mem; see _fini). */
int catalog_offset_fetch(struct catalog *cat, struct slice group, struct slice topic,
			 int32_t partition, struct catalog_offset *out);
/* Frees what catalog_offset_fetch copied (safe on a zeroed struct). */
void catalog_offset_fini(struct catalog_offset *o);
/* Calls fn for every offset of group, by topic name then partition. */
int catalog_offsets_list(struct catalog *cat, struct slice group, catalog_offset_fn fn, void *arg);
/* Calls fn for every group that has at least one committed offset, in name order. */
int catalog_groups_list(struct catalog *cat, catalog_group_fn fn, void *arg);
/* Deletes every offset of group; -ERR_NOT_FOUND if it has none. */
int catalog_group_delete(struct catalog *cat, struct slice group);

/* ---- AMQP queue delivery checkpoints ---- */

/* Replaces queue's checkpoint blob (at most CATALOG_CHECKPOINT_MAX bytes). */
int catalog_queue_checkpoint_set(struct catalog *cat, struct slice queue, struct slice data);
/*
 * Gets queue's checkpoint as a malloc'd copy (owned: caller frees). A queue
 * that has none yet gives *data NULL and *len 0; a missing queue -ERR_NOT_FOUND.
 */
int catalog_queue_checkpoint_get(struct catalog *cat, struct slice queue,
				 uint8_t **data, size_t *len);

#endif
