/*
 * group_offsets.h: consumer-group committed offsets, durable in the catalog.
 *
 * The broker keeps a group's committed offsets (Kafka OffsetCommit/OffsetFetch)
 * in the catalog's group_offsets table (storage/catalog.h). These functions
 * check topics and partitions against the broker's topic table, then read or
 * write the catalog under the broker's catalog lock. A commit of many offsets
 * is ONE catalog transaction (WAL, synchronous=FULL): when it returns 0 every
 * valid offset of the call is on disk, and after a crash either all of them
 * or none are there.
 *
 * Threads: any thread. Every call takes the catalog lock and may wait for a
 * disk sync (a commit always does), so loop threads should call them off the
 * loop (e.g. uv_queue_work), as the Kafka front end does.
 */
#ifndef SLUICE_GROUP_OFFSETS_H
#define SLUICE_GROUP_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"

/* Longest commit metadata stored (Kafka's offset.metadata.max.bytes default). */
#define GROUP_OFFSETS_METADATA_MAX 4096

/* One partition's committed offset. */
struct group_offset {
	struct slice topic;       /* borrowed */
	int32_t partition;
	int64_t offset;           /* -1 when nothing is committed (fetch) */
	int32_t leader_epoch;     /* -1 when unknown */
	struct slice metadata;    /* data NULL = null; commit: borrowed; fetch: from alloc */
	int err;                  /* out: 0, -ERR_NOT_FOUND (no such topic or partition),
				   * -ERR_INVALID (bad name or index), -ERR_TOO_LARGE (metadata) */
};

/*
 * Commits the offsets of group: entries whose topic/partition does not exist
 * or whose fields are invalid get err set and are skipped; all others are
 * stored (replacing earlier commits) in one catalog transaction. Returns 0 when
 * the valid entries (possibly none) are durable, -ERR_INVALID for a bad group
 * name, or a catalog error (then nothing was stored).
 */
int group_offsets_commit(struct broker *b, struct slice group, struct group_offset *o, size_t n);

/* Allocates len bytes that outlive the call (e.g. from a request arena). */
typedef void *(*group_offsets_alloc_fn)(void *ctx, size_t len);

/*
 * Fetches the committed offsets of n partitions of group: for each entry sets
 * offset (-1 when none), leader_epoch and metadata (copied into memory from
 * alloc; empty when none); err stays 0. A group or topic that has nothing
 * committed is not an error. Returns 0 or a catalog error (-ERR_NOMEM when
 * alloc fails).
 */
int group_offsets_fetch(struct broker *b, struct slice group, struct group_offset *o, size_t n,
			group_offsets_alloc_fn alloc, void *ctx);

/* Called per committed offset with borrowed data (valid until it returns). */
typedef int (*group_offsets_fn)(void *arg, const struct group_offset *o);
/*
 * Calls fn for every committed offset of group, by topic then partition, with
 * the catalog lock held (fn must not call group_offsets_* or the catalog).
 * fn returns 0 to go on; another value stops and is returned.
 */
int group_offsets_list(struct broker *b, struct slice group, group_offsets_fn fn, void *arg);

/* Called per group name (borrowed, valid until it returns). */
typedef int (*group_offsets_group_fn)(void *arg, struct slice group);
/* Calls fn for every group with at least one committed offset, in name order (lock held). */
int group_offsets_groups(struct broker *b, group_offsets_group_fn fn, void *arg);

/* Returns 1 when group has a committed offset, 0 when not, or a negative error. */
int group_offsets_exists(struct broker *b, struct slice group);

#endif
