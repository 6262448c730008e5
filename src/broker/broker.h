/*
 * broker.h: the broker's model of Kafka topics and partitions, on the storage
 * engine, across the loop threads.
 *
 * A topic has N partitions; each partition is one log (storage/log.h) under
 * DATA/topics/<topic>-<partition>/ and is OWNED by one loop thread, chosen by
 * hashing (topic, partition) over the loop group. Every operation on a
 * partition's log runs on its owner's thread: front ends call the partition_*
 * functions below from their own loop, which post the work to the owner and
 * post the result back (net/loop.h messages). The result callback always runs
 * on the loop that asked (reply loop), never inside the call.
 *
 *   conn loop A                 owner loop B                 flusher thread
 *   partition_append ──post──► log_append ──flusher_sync──► fdatasync
 *        cb(result) ◄──────────────post──────────────────── done
 *
 * Topic metadata (names, partition counts, configs) lives in the catalog
 * (storage/catalog.h) and, for lookups from any thread, in a table guarded by a
 * read-write lock (metadata changes are rare; a lookup takes a reference, so a
 * topic deleted meanwhile stays valid until released).
 *
 * Durability: an append is acknowledged (acks 1 or -1) only when the flusher
 * says it is as durable as log.flush promises; acks 0 is never acknowledged.
 */
#ifndef SLUICE_BROKER_H
#define SLUICE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/reader.h"
#include "net/loop.h"

struct broker;
struct topic;
struct partition;
struct flusher_file;

/* Longest topic name (Kafka's limit). */
#define BROKER_TOPIC_NAME_MAX 249
/* Most partitions one topic may have. */
#define BROKER_PARTITIONS_MAX 10000

/*
 * Opens the data directory: catalog DATA/catalog.db, the flusher for log.flush,
 * and every topic's partition logs (recovering them). Logs are assigned to the
 * loops of `loops`; retention timers start on each loop. Call from the main
 * thread before connections arrive. Returns 0 or a negative error.
 */
int broker_open(const struct config *cfg, struct loop_group *loops, struct broker **out);
/*
 * Stops retention timers and drains the flusher (every pending acknowledgement
 * runs). Call while the loops still run, after connections are closed.
 */
void broker_quiesce(struct broker *b);
/* fsyncs and closes every log, closes the catalog, frees. Call after the loops stopped. */
void broker_close(struct broker *b);
/* The configuration the broker runs with (borrowed). */
const struct config *broker_config(const struct broker *b);

/*
 * A new idempotent-producer id, unique across restarts (derived from the wall
 * clock and a counter; never reused while the clock does not step back). Any thread.
 */
int64_t broker_next_producer_id(struct broker *b);

/* A topic config pair; both borrowed. */
struct broker_topic_config {
	struct slice key;
	struct slice value;
};

/*
 * Creates a topic with partitions (1..BROKER_PARTITIONS_MAX) and configs
 * (retention.ms, retention.bytes, segment.bytes, segment.ms, cleanup.policy=delete,
 * message.timestamp.type, max.message.bytes). validate_only checks without
 * creating. Any thread. Returns 0, -ERR_EXISTS, -ERR_INVALID (bad name, count or
 * config; reason in errbuf), or an I/O error.
 */
int broker_topic_create(struct broker *b, struct slice name, int32_t partitions,
			const struct broker_topic_config *configs, size_t n_configs,
			bool validate_only, char *errbuf, size_t errlen);
/* Deletes a topic and frees its disk. Any thread. 0 or -ERR_NOT_FOUND. */
int broker_topic_delete(struct broker *b, struct slice name);
/* Raises a topic's partition count. 0, -ERR_NOT_FOUND, -ERR_INVALID (not an increase). */
int broker_topic_add_partitions(struct broker *b, struct slice name, int32_t total,
				bool validate_only, char *errbuf, size_t errlen);

/*
 * Finds a topic and takes a reference (release with topic_release). When it does
 * not exist and auto-create is on (auto.create.topics.enable) and create is true,
 * creates it with num.partitions. Returns 0, -ERR_NOT_FOUND or -ERR_INVALID.
 */
int broker_topic_get(struct broker *b, struct slice name, bool create, struct topic **out);
/* Calls fn for every topic (referenced during the call). Any thread. */
void broker_topic_foreach(struct broker *b, void (*fn)(void *arg, struct topic *t), void *arg);
/* Takes another reference on a topic the caller holds; returns t. */
struct topic *topic_ref_get(struct topic *t);
/* Drops a reference from broker_topic_get. */
void topic_release(struct topic *t);
/* The topic's name (borrowed, NUL-terminated). */
const char *topic_name(const struct topic *t);
/* The topic's 16-byte id. */
const uint8_t *topic_id(const struct topic *t);
/* Number of partitions. */
int32_t topic_partition_count(const struct topic *t);
/* Partition i, or NULL out of range (borrowed from the topic reference). */
struct partition *topic_partition(struct topic *t, int32_t i);
/*
 * Calls fn(key, value) for every config the topic honors, with its effective
 * value, and whether it is a default. Any thread.
 */
void topic_config_foreach(struct topic *t,
			  void (*fn)(void *arg, const char *key, const char *value, bool is_default),
			  void *arg);
/* Whether the topic stamps LogAppendTime (message.timestamp.type). */
bool topic_log_append_time(const struct topic *t);
/* The topic's max.message.bytes. */
int64_t topic_max_message_bytes(const struct topic *t);

/* Partition index within its topic. */
int32_t partition_index(const struct partition *p);
/* Offsets readable from any thread (updated by the owner after each append). */
int64_t partition_high_watermark(const struct partition *p);
int64_t partition_log_start(const struct partition *p);

/* Result of an append; see partition_append. */
struct partition_append_result {
	int err;                  /* 0 or a negative error */
	int64_t base_offset;
	int64_t log_append_time;  /* -1 unless LogAppendTime */
	int64_t log_start_offset;
};
typedef void (*partition_append_cb)(void *arg, const struct partition_append_result *res);

/*
 * Appends len bytes of record batches (moved: freed by the broker) to p on its
 * owner loop. With wait_durable, cb runs after the flusher made it durable per
 * log.flush; else after the write. cb runs on reply_loop (may be NULL: no
 * callback, e.g. acks=0). Returns 0, or an error (batches freed, cb not called).
 */
int partition_append(struct partition *p, uint8_t *batches, size_t len, bool wait_durable,
		     struct loop *reply_loop, partition_append_cb cb, void *arg);

/* Result of a read; see partition_read. */
struct partition_read_result {
	int err;                   /* 0, -ERR_RANGE (offset out of range), or an error */
	int64_t high_watermark;
	int64_t log_start_offset;
	struct flusher_file *file; /* owned reference, NULL when length 0: release with
				    * partition_read_result_release */
	int64_t position;          /* file position of the first byte */
	int64_t length;            /* bytes of whole batches */
};
typedef void (*partition_read_cb)(void *arg, struct partition_read_result *res);
/* Drops the file reference of a read result. */
void partition_read_result_release(struct partition_read_result *r);

/*
 * Reads whole batches from offset, at most max_bytes (at least one batch), on
 * the owner loop; cb runs on reply_loop and takes ownership of res->file.
 * Returns 0 or an error (cb not called).
 */
int partition_read(struct partition *p, int64_t offset, int64_t max_bytes, struct loop *reply_loop,
		   partition_read_cb cb, void *arg);

/* Which offset partition_list_offset looks up. */
#define PARTITION_OFFSET_LATEST (-1)
#define PARTITION_OFFSET_EARLIEST (-2)
#define PARTITION_OFFSET_MAX_TIMESTAMP (-3)
typedef void (*partition_offset_cb)(void *arg, int err, int64_t offset, int64_t timestamp);
/*
 * Kafka ListOffsets: ts is a timestamp or PARTITION_OFFSET_*; cb(offset,
 * timestamp) runs on reply_loop. Returns 0 or an error (cb not called).
 */
int partition_list_offset(struct partition *p, int64_t ts, struct loop *reply_loop,
			  partition_offset_cb cb, void *arg);

/*
 * Fetch long poll: calls cb(arg) once on reply_loop when the partition's high
 * watermark passes offset (at once if it already has) or the partition goes
 * away. *token identifies the watch for partition_unwatch. The caller keeps
 * arg alive until cb ran or partition_unwatch's completion was posted.
 */
typedef void (*partition_watch_cb)(void *arg);
int partition_watch(struct partition *p, int64_t offset, struct loop *reply_loop,
		    partition_watch_cb cb, void *arg, uint64_t *token);
/*
 * Cancels a watch; done(arg) then runs on reply_loop exactly once (after the
 * watch's cb if that had already been posted), so arg may be freed there.
 */
int partition_unwatch(struct partition *p, uint64_t token, struct loop *reply_loop,
		      partition_watch_cb done, void *arg);

#endif
