/*
 * broker_int.h: structures shared by the broker module's own files
 * (broker.c: topics, catalog, lifecycle; partition.c: per-partition work on
 * the owner loop). Included only there.
 */
#ifndef SLUICE_BROKER_INT_H
#define SLUICE_BROKER_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "broker/broker.h"
#include "broker/broker_queue.h"
#include "storage/log.h"

struct catalog;
struct flusher;
struct bqueue;

/* A fetch long-poll registration (owner thread only). */
struct partition_watch {
	struct partition_watch *next;
	uint64_t token;
	int64_t offset;
	struct loop *reply;
	partition_watch_cb cb;
	void *arg;
};

/* Batches remembered per producer to recognise retries (Kafka keeps 5). */
#define PRODUCER_BATCHES 5
/* Producers tracked per partition; the least recently used is forgotten. */
#define PRODUCERS_MAX 1024

/* One idempotent producer's state on a partition (owner thread only). */
struct producer_state {
	int64_t producer_id;
	int16_t epoch;
	int32_t last_seq;           /* last sequence appended */
	uint64_t used;              /* LRU clock */
	struct {
		int32_t first_seq, last_seq;
		int64_t base_offset;
	} recent[PRODUCER_BATCHES]; /* ring of the last batches */
	int n_recent;
};

struct partition {
	struct topic *topic;           /* back pointer; the topic outlives its partitions */
	int32_t index;
	struct loop *owner;            /* the loop whose thread runs every log call */
	struct log *log;               /* owner thread only; NULL once the topic is deleted */
	_Atomic int64_t high_watermark;
	_Atomic int64_t log_start;
	struct partition_watch *watches; /* owner thread only */
	uint64_t next_token;           /* owner thread only */
	struct producer_state *producers; /* owner thread only */
	size_t n_producers;
	uint64_t producer_clock;
};

/* Explicitly set topic configs, as given at creation (owned strings). */
struct topic_override {
	char *key;
	char *value;
};

struct topic {
	_Atomic int refs;
	struct broker *broker;
	char name[BROKER_TOPIC_NAME_MAX + 1];
	uint8_t id[16];
	struct log_config log_cfg;     /* effective storage settings */
	bool log_append_time;          /* message.timestamp.type=LogAppendTime */
	struct topic_override *overrides;
	size_t n_overrides;
	/* Partitions: the array only grows; old arrays are kept until the topic is freed
	 * so readers never see freed memory (publish array, then count). */
	_Atomic(struct partition **) parts;
	_Atomic int32_t n_parts;
	struct partition ***retired;
	size_t n_retired;
	struct topic *hash_next;       /* broker table chain, under the table lock */
	char dir[4400];                /* topics/<name>.<id hex>: a re-created topic never
					* meets the directory of a deleted one */
	bool deleted;
};

struct broker {
	struct config cfg;
	struct loop_group *loops;
	struct flusher *flusher;
	pthread_mutex_t catalog_lock;  /* the catalog is single-threaded */
	struct catalog *catalog;
	pthread_rwlock_t table_lock;   /* guards buckets and topic partition growth */
	struct topic **buckets;
	size_t n_buckets;
	size_t n_topics;
	pthread_rwlock_t queue_lock;   /* guards the AMQP queue table (broker_queue.c) */
	struct bqueue **queues;        /* each holds one reference */
	size_t n_queues, cap_queues;
	uv_timer_t *retention_timers;  /* one per loop; freed after the loops stop */
	uv_timer_t *queue_timers;      /* one per loop: bqueue_tick */
	struct bqueue_hooks qhooks;    /* set by the AMQP front end (bqueue_load_all) */
	int n_timers;
	char topics_dir[4200];
};

/* FNV-1a over len bytes: spreads names over buckets and loops. */
static inline uint64_t broker_hash(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* Opens partition i of t (log under topics_dir), owner chosen by hash. */
int partition_open(struct topic *t, int32_t i, struct partition **out);
/* Posts the deletion of p's log to its owner (holds a topic reference meanwhile). */
void partition_delete_async(struct partition *p);
/* Closes p's log (after the loops stopped) and frees p. */
void partition_free(struct partition *p);
/* Applies retention to every partition owned by loop (owner thread). */
void partition_retention_run(struct partition *p, int64_t now_ms);
/* How often each loop expires messages and unused queues (bqueue_tick). */
#define BQUEUE_TICK_MS 50
/* Expires head messages and unused queues owned by the calling loop. */
void bqueue_tick(struct broker *b, int64_t now_ms);
/* Drops the table's queue references (after the loops stopped). */
void bqueue_close_all(struct broker *b);
/* Takes a topic reference. */
struct topic *topic_ref(struct topic *t);

#endif
