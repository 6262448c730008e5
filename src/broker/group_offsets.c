/*
 * group_offsets.c: consumer-group committed offsets on the catalog.
 *
 * The catalog stores offsets per (group, topic id, partition) and refuses a
 * commit for a topic or partition it does not know, undoing the whole
 * transaction. So a commit first checks every entry against the broker's
 * topic table (cheap, no disk) and sets err on the bad ones; the rest go to
 * catalog_offsets_commit as one transaction. Should a topic vanish between the
 * check and the write (a concurrent delete), the catalog names the entry that
 * failed; it is dropped and the transaction retried, at most once per entry.
 */
#include "broker/group_offsets.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/clock.h"
#include "core/err.h"
#include "storage/catalog.h"

static const uint8_t empty_bytes[1];

static bool group_name_ok(struct slice group)
{
	return group.data != NULL && group.len > 0 && group.len <= CATALOG_GROUP_NAME_MAX;
}

/* Checks one entry against the topic table: 0 or the error to report for it. */
static int entry_check(struct broker *b, const struct group_offset *o)
{
	if (o->partition < 0 || o->topic.data == NULL || o->topic.len == 0 ||
	    o->topic.len > BROKER_TOPIC_NAME_MAX)
		return -ERR_NOT_FOUND;
	if (o->metadata.len > GROUP_OFFSETS_METADATA_MAX)
		return -ERR_TOO_LARGE;
	if (o->metadata.data == NULL && o->metadata.len != 0)
		return -ERR_INVALID;
	struct topic *t;
	if (broker_topic_get(b, o->topic, false, &t))
		return -ERR_NOT_FOUND;
	int rc = o->partition < topic_partition_count(t) ? 0 : -ERR_NOT_FOUND;
	topic_release(t);
	return rc;
}

int group_offsets_commit(struct broker *b, struct slice group, struct group_offset *o, size_t n)
{
	if (!group_name_ok(group))
		return -ERR_INVALID;
	if (n == 0)
		return 0;
	struct catalog_offset *co = calloc(n, sizeof *co);
	size_t *idx = calloc(n, sizeof *idx);
	int rc = 0;
	if (!co || !idx) {
		rc = -ERR_NOMEM;
		goto out;
	}
	int64_t now = clock_now_ms();
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		o[i].err = entry_check(b, &o[i]);
		if (o[i].err)
			continue;
		co[m] = (struct catalog_offset){ .topic = o[i].topic,
						 .partition = o[i].partition,
						 .offset = o[i].offset,
						 .leader_epoch = o[i].leader_epoch,
						 .metadata = o[i].metadata,
						 .commit_time_ms = now };
		idx[m++] = i;
	}
	if (m == 0)
		goto out;
	pthread_mutex_lock(&b->catalog_lock);
	for (size_t tries = 0; tries <= n; tries++) {
		size_t failed = SIZE_MAX;
		rc = catalog_offsets_commit(b->catalog, group, co, m, &failed);
		bool entry_err = rc == -ERR_NOT_FOUND || rc == -ERR_INVALID || rc == -ERR_TOO_LARGE;
		if (!rc || !entry_err || failed >= m)
			break;
		/* That entry alone is bad (its topic went away): drop it, retry the rest. */
		o[idx[failed]].err = rc;
		memmove(&co[failed], &co[failed + 1], (m - failed - 1) * sizeof *co);
		memmove(&idx[failed], &idx[failed + 1], (m - failed - 1) * sizeof *idx);
		m--;
		rc = 0;
		if (m == 0)
			break;
	}
	pthread_mutex_unlock(&b->catalog_lock);
out:
	free(idx);
	free(co);
	return rc;
}

int group_offsets_fetch(struct broker *b, struct slice group, struct group_offset *o, size_t n,
			group_offsets_alloc_fn alloc, void *ctx)
{
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		o[i].offset = -1;
		o[i].leader_epoch = -1;
		o[i].metadata = (struct slice){ empty_bytes, 0 };
		o[i].err = 0;
	}
	if (!group_name_ok(group) || n == 0)
		return 0;
	pthread_mutex_lock(&b->catalog_lock);
	for (size_t i = 0; i < n && !rc; i++) {
		if (o[i].topic.data == NULL || o[i].topic.len == 0 ||
		    o[i].topic.len > CATALOG_TOPIC_NAME_MAX || o[i].partition < 0)
			continue;
		struct catalog_offset co = { 0 };
		int e = catalog_offset_fetch(b->catalog, group, o[i].topic, o[i].partition, &co);
		if (e == -ERR_NOT_FOUND || e == -ERR_INVALID)
			continue;
		if (e) {
			rc = e;
			break;
		}
		o[i].offset = co.offset;
		o[i].leader_epoch = co.leader_epoch;
		if (co.metadata.data == NULL) {
			o[i].metadata = (struct slice){ NULL, 0 };
		} else if (co.metadata.len > 0) {
			uint8_t *p = alloc(ctx, co.metadata.len);
			if (!p)
				rc = -ERR_NOMEM;
			else
				memcpy(p, co.metadata.data, co.metadata.len);
			o[i].metadata = (struct slice){ p, p ? co.metadata.len : 0 };
		}
		catalog_offset_fini(&co);
	}
	pthread_mutex_unlock(&b->catalog_lock);
	return rc;
}

struct list_ctx {
	group_offsets_fn fn;
	void *arg;
};

static int list_one(void *arg, const struct catalog_offset *co)
{
	struct list_ctx *c = arg;
	struct group_offset o = { .topic = co->topic,
				  .partition = co->partition,
				  .offset = co->offset,
				  .leader_epoch = co->leader_epoch,
				  .metadata = co->metadata };
	return c->fn(c->arg, &o);
}

int group_offsets_list(struct broker *b, struct slice group, group_offsets_fn fn, void *arg)
{
	if (!group_name_ok(group))
		return 0;
	struct list_ctx c = { fn, arg };
	pthread_mutex_lock(&b->catalog_lock);
	int rc = catalog_offsets_list(b->catalog, group, list_one, &c);
	pthread_mutex_unlock(&b->catalog_lock);
	return rc;
}

int group_offsets_groups(struct broker *b, group_offsets_group_fn fn, void *arg)
{
	pthread_mutex_lock(&b->catalog_lock);
	int rc = catalog_groups_list(b->catalog, fn, arg);
	pthread_mutex_unlock(&b->catalog_lock);
	return rc;
}

static int stop_at_first(void *arg, const struct catalog_offset *co)
{
	(void)arg;
	(void)co;
	return 1;
}

int group_offsets_exists(struct broker *b, struct slice group)
{
	if (!group_name_ok(group))
		return 0;
	pthread_mutex_lock(&b->catalog_lock);
	int rc = catalog_offsets_list(b->catalog, group, stop_at_first, NULL);
	pthread_mutex_unlock(&b->catalog_lock);
	return rc;
}
