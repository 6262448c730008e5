/*
 * test_log.c: a log as a whole: appends and reads across segment rolls (by
 * size and by age), offset assignment and LogAppendTime, validation that stores
 * nothing on a bad batch, reopening, lookups by offset and time, retention by
 * age and size, delete_before, index rebuilding, stray files, deletion, and the
 * flusher_file handed out for durability.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/err.h"
#include "core/writer.h"
#include "storage/flusher.h"
#include "storage/log.h"
#include "storage/log_segment.h"
#include "storage/record_batch.h"

#define MAXB 4096

struct tracked {
	int64_t base, last, max_ts;
	size_t len;
	uint8_t *bytes; /* as stored: offsets assigned */
};

struct fixture {
	char dir[64];
	char logdir[96];
	struct tracked t[MAXB];
	int n;
	int seq; /* varies batch shapes */
};

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/sluice-log-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->logdir, sizeof f->logdir, "%s/topic-0", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	for (int i = 0; i < f->n; i++)
		free(f->t[i].bytes);
	free(f);
	return 0;
}

static struct log_config small_cfg(void)
{
	struct log_config c;
	log_config_defaults(&c);
	c.segment_bytes = 2000;
	c.segment_ms = -1;
	c.index_interval_bytes = 256;
	c.retention_ms = -1;
	c.retention_bytes = -1;
	return c;
}

/* A producer-style batch (baseOffset 0) of n records with vlen-byte values at ts. */
static uint8_t *make_batch(int n, size_t vlen, int64_t ts, size_t *len)
{
	struct record_batch_rec recs[8];
	static uint8_t val[1024];
	memset(val, 'q', sizeof val);
	for (int i = 0; i < n; i++) {
		memset(&recs[i], 0, sizeof recs[i]);
		recs[i].offset_delta = i;
		recs[i].value = (struct slice){ val, vlen };
	}
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.base_timestamp = ts;
	struct writer w;
	writer_init(&w, 1 << 20);
	assert_int_equal(record_batch_encode(&w, &p, recs, (size_t)n), 0);
	return writer_take(&w, len);
}

/* Records the batches of an appended buffer (as rewritten by log_append). */
static void track(struct fixture *f, const uint8_t *buf, size_t len)
{
	struct record_batch_walk w;
	struct record_batch_header h;
	struct slice b;
	size_t pos;
	record_batch_walk_init(&w, buf, len, SIZE_MAX, 1);
	while (record_batch_walk_next(&w, &h, &b, &pos) == 1) {
		assert_true(f->n < MAXB);
		struct tracked *t = &f->t[f->n++];
		t->base = h.base_offset;
		t->last = record_batch_last_offset(&h);
		t->max_ts = h.max_timestamp;
		t->len = b.len;
		t->bytes = malloc(b.len);
		memcpy(t->bytes, b.data, b.len);
	}
}

/* Appends one batch of a varying shape at timestamp ts; checks the result. */
static void append_one(struct fixture *f, struct log *log, int64_t now, int64_t ts)
{
	int k = f->seq++;
	size_t len;
	uint8_t *b = make_batch(1 + k % 4, (size_t)(20 + (k * 53) % 180), ts, &len);
	int64_t end = log_end_offset(log);
	struct log_append_result res;
	assert_int_equal(log_append(log, b, len, now, 0, &res), 0);
	assert_int_equal(res.base_offset, end);
	assert_int_equal(res.last_offset, end + k % 4);
	assert_int_equal(res.log_append_time, -1);
	assert_non_null(res.file);
	assert_int_equal(log_end_offset(log), end + 1 + k % 4);
	track(f, b, len);
	free(b);
}

/* Index of the first tracked batch with base >= offset. */
static int first_at(const struct fixture *f, int64_t offset)
{
	int i = 0;
	while (i < f->n && f->t[i].base < offset)
		i++;
	return i;
}

/* Reads the whole log batch by batch and compares with what was tracked. */
static void check_log(struct fixture *f, struct log *log)
{
	int64_t start = log_start_offset(log), end = log_end_offset(log);
	int i = first_at(f, start);
	int64_t off = start;
	struct writer w;
	writer_init(&w, 1 << 24);
	struct log_read_result r;
	while (off < end) {
		writer_reset(&w);
		assert_int_equal(log_read_copy(log, off, 1, &w, &r), 0);
		assert_true(i < f->n);
		assert_int_equal(r.first_offset, f->t[i].base);
		assert_int_equal(r.next_offset, f->t[i].last + 1);
		assert_int_equal(w.len, f->t[i].len);
		assert_memory_equal(w.buf, f->t[i].bytes, w.len);
		assert_null(r.file);
		off = r.next_offset;
		i++;
	}
	assert_int_equal(i, f->n);
	/* every offset finds its batch */
	for (int k = first_at(f, start); k < f->n; k++) {
		for (int64_t o = f->t[k].base; o <= f->t[k].last; o++) {
			assert_int_equal(log_read(log, o, 0, &r), 0);
			assert_int_equal(r.first_offset, f->t[k].base);
			assert_int_equal(r.length, (int64_t)f->t[k].len);
			assert_non_null(r.file);
			assert_true(r.fd >= 0);
			log_read_result_release(&r);
		}
	}
	/* the end is empty, past it and before the start are out of range */
	assert_int_equal(log_read(log, end, 1000, &r), 0);
	assert_int_equal(r.length, 0);
	assert_null(r.file);
	assert_int_equal(r.first_offset, end);
	assert_int_equal(r.next_offset, end);
	assert_int_equal(log_read(log, end + 1, 1000, &r), -ERR_RANGE);
	if (start > 0)
		assert_int_equal(log_read(log, start - 1, 1000, &r), -ERR_RANGE);
	assert_int_equal(log_read(log, -1, 1000, &r), -ERR_RANGE);
	writer_fini(&w);
	int64_t size = 0;
	for (int k = first_at(f, start); k < f->n; k++)
		size += (int64_t)f->t[k].len;
	assert_int_equal(log_size_bytes(log), size);
}

/* Number of "<20 digits>.log" files in the log directory. */
static int count_files(const char *dir, const char *ext)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l == 20 + strlen(ext) && strcmp(de->d_name + 20, ext) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_config_check(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_config_check(&c), 0);
	struct log_config bad[7];
	for (int i = 0; i < 7; i++)
		bad[i] = c;
	bad[0].segment_bytes = 0;
	bad[1].segment_bytes = 1LL << 33;
	bad[2].segment_ms = 0;
	bad[3].index_interval_bytes = -1;
	bad[4].retention_ms = -2;
	bad[5].retention_bytes = -5;
	bad[6].max_batch_bytes = 60;
	for (int i = 0; i < 7; i++)
		assert_int_equal(log_open(f->logdir, &bad[i], 0, &log), -ERR_INVALID);
	assert_int_equal(file_size(f->logdir), -1); /* nothing was created */
}

static void test_empty_log(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	assert_int_equal(log_start_offset(log), 0);
	assert_int_equal(log_end_offset(log), 0);
	assert_int_equal(log_size_bytes(log), 0);
	assert_int_equal(log_segment_count(log), 1);
	assert_string_equal(log_dir(log), f->logdir);
	check_log(f, log);
	int64_t off = -1;
	assert_int_equal(log_offset_for_time(log, 0, &off), 0);
	assert_int_equal(off, 0);
	assert_int_equal(log_roll(log, 0), 0); /* nothing to roll */
	assert_int_equal(log_segment_count(log), 1);
	assert_int_equal(log_close(log), 0);
	assert_int_equal(count_files(f->logdir, ".log"), 1);
}

static void test_append_read_across_rolls(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	for (int i = 0; i < 120; i++)
		append_one(f, log, 1000 + i, 1000 + i);
	size_t nseg = log_segment_count(log);
	assert_true(nseg >= 10);
	assert_int_equal(count_files(f->logdir, ".log"), (int)nseg);
	/* sealed segments have their index files, the active one not yet */
	assert_int_equal(count_files(f->logdir, ".index"), (int)nseg - 1);
	assert_int_equal(count_files(f->logdir, ".timeindex"), (int)nseg - 1);
	check_log(f, log);

	/* segments never pass segment_bytes (every batch here is smaller) and
	 * reads with a large max_bytes stop at the end of a segment */
	struct log_read_result r;
	int64_t off = 0;
	size_t reads = 0;
	int64_t total = 0;
	while (off < log_end_offset(log)) {
		assert_int_equal(log_read(log, off, 1 << 20, &r), 0);
		assert_true(r.length > 0 && r.length <= 2000);
		assert_int_equal(r.position, 0); /* a whole segment from its start */
		struct stat st;
		assert_int_equal(fstat(r.fd, &st), 0);
		assert_int_equal(st.st_size, r.length);
		total += r.length;
		off = r.next_offset;
		log_read_result_release(&r);
		reads++;
	}
	assert_int_equal(reads, nseg);
	assert_int_equal(total, log_size_bytes(log));

	/* max_bytes: whole batches only, at least one */
	int k = 50;
	int64_t sum = 0;
	int j = k;
	assert_int_equal(log_read(log, f->t[k].base, (int64_t)(f->t[k].len + f->t[k + 1].len), &r), 0);
	while (j < f->n && sum + (int64_t)f->t[j].len <= (int64_t)(f->t[k].len + f->t[k + 1].len) &&
	       f->t[j].base < r.next_offset)
		sum += (int64_t)f->t[j++].len;
	assert_int_equal(r.length, sum);
	assert_true(r.length >= (int64_t)f->t[k].len);
	log_read_result_release(&r);
	assert_int_equal(log_read(log, f->t[k].base, 1, &r), 0);
	assert_int_equal(r.length, (int64_t)f->t[k].len);
	log_read_result_release(&r);
	assert_int_equal(log_close(log), 0);
}

static void test_multi_batch_append_and_rewrite(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	c.segment_bytes = 1 << 20;
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	append_one(f, log, 10, 10);
	size_t l1, l2, l3;
	uint8_t *b1 = make_batch(3, 10, 100, &l1);
	uint8_t *b2 = make_batch(1, 10, 200, &l2);
	uint8_t *b3 = make_batch(5, 10, 300, &l3);
	uint8_t *all = malloc(l1 + l2 + l3);
	memcpy(all, b1, l1);
	memcpy(all + l1, b2, l2);
	memcpy(all + l1 + l2, b3, l3);
	int64_t end = log_end_offset(log);
	struct log_append_result res;
	assert_int_equal(log_append(log, all, l1 + l2 + l3, 400, 0, &res), 0);
	assert_int_equal(res.base_offset, end);
	assert_int_equal(res.last_offset, end + 8);
	/* the caller's buffer now holds the assigned offsets, CRCs still valid */
	struct record_batch_header h;
	assert_int_equal(record_batch_parse(all, l1, 1 << 20, &h), 0);
	assert_int_equal(h.base_offset, end);
	assert_int_equal(record_batch_parse(all + l1, l2, 1 << 20, &h), 0);
	assert_int_equal(h.base_offset, end + 3);
	assert_int_equal(record_batch_parse(all + l1 + l2, l3, 1 << 20, &h), 0);
	assert_int_equal(h.base_offset, end + 4);
	track(f, all, l1 + l2 + l3);
	check_log(f, log);
	/* one read returns all three */
	struct log_read_result r;
	assert_int_equal(log_read(log, end + 1, 1 << 20, &r), 0);
	assert_int_equal(r.first_offset, end);
	assert_int_equal(r.next_offset, end + 9);
	assert_int_equal(r.length, (int64_t)(l1 + l2 + l3));
	log_read_result_release(&r);
	free(b1);
	free(b2);
	free(b3);
	free(all);
	assert_int_equal(log_close(log), 0);
}

static void test_bad_input_stores_nothing(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	c.max_batch_bytes = 1000;
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	for (int i = 0; i < 5; i++)
		append_one(f, log, 10, 10);
	int64_t end = log_end_offset(log), size = log_size_bytes(log);
	size_t nseg = log_segment_count(log);
	struct log_append_result res;

	size_t l1, l2;
	uint8_t *good = make_batch(2, 50, 10, &l1);
	uint8_t *big = make_batch(4, 300, 10, &l2); /* > 1000 bytes */
	uint8_t *buf = malloc(l1 + l2 + 10);
	/* good then corrupt */
	memcpy(buf, good, l1);
	memcpy(buf + l1, good, l1);
	buf[l1 + 70] ^= 1;
	assert_int_equal(log_append(log, buf, 2 * l1, 10, 0, &res), -ERR_CORRUPT);
	/* good then too large */
	memcpy(buf + l1, big, l2);
	assert_int_equal(log_append(log, buf, l1 + l2, 10, 0, &res), -ERR_TOO_LARGE);
	/* good then a partial batch, then trailing junk */
	assert_int_equal(log_append(log, buf, l1 + 30, 10, 0, &res), -ERR_CORRUPT);
	memcpy(buf + l1, "junk", 4);
	assert_int_equal(log_append(log, buf, l1 + 4, 10, 0, &res), -ERR_CORRUPT);
	/* empty */
	assert_int_equal(log_append(log, buf, 0, 10, 0, &res), -ERR_CORRUPT);
	/* wrong magic */
	memcpy(buf, good, l1);
	buf[16] = 1;
	assert_int_equal(log_append(log, buf, l1, 10, 0, &res), -ERR_CORRUPT);

	assert_int_equal(log_end_offset(log), end);
	assert_int_equal(log_size_bytes(log), size);
	assert_int_equal(log_segment_count(log), nseg);
	check_log(f, log);
	/* the good batch alone still goes in */
	assert_int_equal(log_append(log, good, l1, 10, 0, &res), 0);
	assert_int_equal(res.base_offset, end);
	track(f, good, l1);
	check_log(f, log);
	free(good);
	free(big);
	free(buf);
	assert_int_equal(log_close(log), 0);
}

static void test_log_append_time(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	size_t len;
	uint8_t *b = make_batch(3, 10, 5, &len);
	struct log_append_result res;
	assert_int_equal(log_append(log, b, len, 777000, 1, &res), 0);
	assert_int_equal(res.log_append_time, 777000);
	track(f, b, len);
	struct record_batch_header h;
	assert_int_equal(record_batch_parse(f->t[0].bytes, f->t[0].len, 1 << 20, &h), 0);
	assert_true(h.attributes & RECORD_BATCH_ATTR_LOG_APPEND_TIME);
	assert_int_equal(h.max_timestamp, 777000);
	assert_int_equal(h.base_timestamp, 5);
	check_log(f, log);
	int64_t off;
	assert_int_equal(log_offset_for_time(log, 777000, &off), 0);
	assert_int_equal(off, 0);
	assert_int_equal(log_offset_for_time(log, 777001, &off), 0);
	assert_int_equal(off, 3);
	free(b);
	assert_int_equal(log_close(log), 0);
}

static void test_roll_by_age_and_explicit(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	c.segment_bytes = 1 << 20;
	c.segment_ms = 1000;
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	append_one(f, log, 5000, 5000);
	append_one(f, log, 5500, 5500);
	append_one(f, log, 6000, 6000); /* exactly segment_ms old: not older */
	assert_int_equal(log_segment_count(log), 1);
	append_one(f, log, 6001, 6001);
	assert_int_equal(log_segment_count(log), 2);
	assert_int_equal(log_start_offset(log), 0);
	/* the new segment's age counts from its first batch */
	append_one(f, log, 7000, 7000);
	assert_int_equal(log_segment_count(log), 2);
	append_one(f, log, 7002, 7002);
	assert_int_equal(log_segment_count(log), 3);
	/* explicit roll */
	assert_int_equal(log_roll(log, 7002), 0);
	assert_int_equal(log_segment_count(log), 4);
	assert_int_equal(log_roll(log, 7002), 0);
	assert_int_equal(log_segment_count(log), 4);
	append_one(f, log, 7003, 7003);
	check_log(f, log);
	/* the age survives a reopen (it comes from the first batch's timestamp) */
	assert_int_equal(log_close(log), 0);
	assert_int_equal(log_open(f->logdir, &c, 7500, &log), 0);
	assert_int_equal(log_segment_count(log), 4);
	append_one(f, log, 8003, 8003);
	assert_int_equal(log_segment_count(log), 4);
	append_one(f, log, 8004, 8004);
	assert_int_equal(log_segment_count(log), 5);
	check_log(f, log);
	assert_int_equal(log_close(log), 0);
}

/* Appends one batch per segment at the given timestamps (one roll after each). */
static void segments_at(struct fixture *f, struct log *log, const int64_t *ts, int n)
{
	for (int i = 0; i < n; i++) {
		append_one(f, log, ts[i], ts[i]);
		append_one(f, log, ts[i], ts[i] - 50); /* older inside: the max counts */
		assert_int_equal(log_roll(log, ts[i]), 0);
	}
}

static void test_retention_by_age(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	c.segment_bytes = 1 << 20;
	c.retention_ms = 10000;
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	int64_t ts[] = { 1000, 2000, 3000, 2500, 9000 };
	segments_at(f, log, ts, 5);
	append_one(f, log, 9500, 9500); /* the active segment */
	assert_int_equal(log_segment_count(log), 6);
	int deleted = -1;
	assert_int_equal(log_retention_apply(log, 11000, &deleted), 0);
	assert_int_equal(deleted, 0);
	assert_int_equal(log_retention_apply(log, 11001, &deleted), 0);
	assert_int_equal(deleted, 1);
	assert_int_equal(log_start_offset(log), f->t[2].base);
	/* oldest first, stopping at the first segment that is not old enough */
	assert_int_equal(log_retention_apply(log, 12600, &deleted), 0);
	assert_int_equal(deleted, 1); /* 2000 goes; 3000 is young, so 2500 behind it waits */
	assert_int_equal(log_start_offset(log), f->t[4].base);
	assert_int_equal(log_retention_apply(log, 13001, &deleted), 0);
	assert_int_equal(deleted, 2);
	assert_int_equal(log_start_offset(log), f->t[8].base);
	check_log(f, log);
	/* the active segment goes too once it is old; the end offset stays */
	int64_t end = log_end_offset(log);
	assert_int_equal(log_retention_apply(log, 19501, &deleted), 0);
	assert_int_equal(deleted, 2);
	assert_int_equal(log_segment_count(log), 1);
	assert_int_equal(log_start_offset(log), end);
	assert_int_equal(log_end_offset(log), end);
	assert_int_equal(log_size_bytes(log), 0);
	check_log(f, log);
	assert_int_equal(count_files(f->logdir, ".log"), 1);
	assert_int_equal(count_files(f->logdir, ".index"), 0);
	/* reopening keeps the end offset; appends continue there */
	assert_int_equal(log_close(log), 0);
	assert_int_equal(log_open(f->logdir, &c, 20000, &log), 0);
	assert_int_equal(log_start_offset(log), end);
	assert_int_equal(log_end_offset(log), end);
	append_one(f, log, 20000, 20000);
	assert_int_equal(f->t[f->n - 1].base, end);
	check_log(f, log);
	/* retention_ms -1 keeps everything */
	c.retention_ms = -1;
	assert_int_equal(log_set_config(log, &c), 0);
	assert_int_equal(log_retention_apply(log, INT64_MAX, &deleted), 0);
	assert_int_equal(deleted, 0);
	assert_int_equal(log_close(log), 0);
}

static void test_retention_by_size(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	c.segment_bytes = 1 << 20;
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	int64_t ts[] = { 1, 2, 3, 4 };
	segments_at(f, log, ts, 4);
	append_one(f, log, 5, 5);
	int64_t seg[5];
	for (int i = 0; i < 4; i++)
		seg[i] = (int64_t)(f->t[2 * i].len + f->t[2 * i + 1].len);
	seg[4] = (int64_t)f->t[8].len;
	int64_t total = log_size_bytes(log);
	assert_int_equal(total, seg[0] + seg[1] + seg[2] + seg[3] + seg[4]);

	int deleted;
	c.retention_bytes = total - seg[0] + 1; /* dropping the first would go below */
	assert_int_equal(log_set_config(log, &c), 0);
	assert_int_equal(log_retention_apply(log, 100, &deleted), 0);
	assert_int_equal(deleted, 0);
	c.retention_bytes = total - seg[0] - seg[1]; /* exactly two */
	assert_int_equal(log_set_config(log, &c), 0);
	assert_int_equal(log_retention_apply(log, 100, &deleted), 0);
	assert_int_equal(deleted, 2);
	assert_int_equal(log_start_offset(log), f->t[4].base);
	assert_int_equal(log_size_bytes(log), total - seg[0] - seg[1]);
	check_log(f, log);
	/* 0 deletes every sealed segment, never the active one */
	c.retention_bytes = 0;
	assert_int_equal(log_set_config(log, &c), 0);
	assert_int_equal(log_retention_apply(log, 100, &deleted), 0);
	assert_int_equal(deleted, 2);
	assert_int_equal(log_segment_count(log), 1);
	assert_int_equal(log_start_offset(log), f->t[8].base);
	check_log(f, log);
	assert_int_equal(log_close(log), 0);
}

static void test_delete_before(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	for (int i = 0; i < 60; i++)
		append_one(f, log, 100, 100);
	size_t nseg = log_segment_count(log);
	assert_true(nseg > 4);
	int deleted;
	/* nothing below the first segment's end */
	assert_int_equal(log_delete_before(log, 0, &deleted), 0);
	assert_int_equal(deleted, 0);
	assert_int_equal(log_delete_before(log, 1, &deleted), 0);
	assert_int_equal(deleted, 0);
	/* an offset in the middle of the log: whole segments below it go */
	int64_t target = f->t[30].base + 1;
	assert_int_equal(log_delete_before(log, target, &deleted), 0);
	assert_true(deleted > 0);
	int64_t start = log_start_offset(log);
	assert_true(start <= target);
	assert_true(start > 0);
	check_log(f, log);
	/* every offset >= target is still there, and the segment holding target
	 * starts at the new start offset */
	struct log_read_result r;
	assert_int_equal(log_read(log, target, 1, &r), 0);
	log_read_result_release(&r);
	assert_int_equal(log_segment_count(log), nseg - (size_t)deleted);
	/* everything, once the offset reaches the end */
	int64_t end = log_end_offset(log);
	assert_int_equal(log_delete_before(log, end + 100, &deleted), 0);
	assert_int_equal(log_segment_count(log), 1);
	assert_int_equal(log_start_offset(log), end);
	assert_int_equal(log_end_offset(log), end);
	check_log(f, log);
	assert_int_equal(log_delete_before(log, end + 100, &deleted), 0);
	assert_int_equal(deleted, 0);
	append_one(f, log, 100, 100);
	assert_int_equal(f->t[f->n - 1].base, end);
	check_log(f, log);
	assert_int_equal(log_close(log), 0);
}

static void test_offset_for_time(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	c.index_interval_bytes = 100;
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	/* timestamps wander up and down */
	for (int i = 0; i < 150; i++)
		append_one(f, log, 100000, 10000 + (i * 37) % 500 + i * 20);
	for (int pass = 0; pass < 2; pass++) {
		for (int64_t ts = 9000; ts < 10000 + 150 * 20 + 600; ts += 13) {
			int64_t want = log_end_offset(log), got = -1;
			for (int i = 0; i < f->n; i++) {
				if (f->t[i].max_ts >= ts) {
					want = f->t[i].base;
					break;
				}
			}
			assert_int_equal(log_offset_for_time(log, ts, &got), 0);
			assert_int_equal(got, want);
		}
		/* the same answers from indexes read back from their files */
		assert_int_equal(log_close(log), 0);
		assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	}
	assert_int_equal(log_close(log), 0);
}

static void test_reopen_continues(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 25; i++)
			append_one(f, log, 100 + round, 100 + round);
		check_log(f, log);
		size_t nseg = log_segment_count(log);
		int64_t end = log_end_offset(log), size = log_size_bytes(log);
		assert_int_equal(log_close(log), 0);
		assert_int_equal(log_open(f->logdir, &c, 200, &log), 0);
		assert_int_equal(log_segment_count(log), nseg);
		assert_int_equal(log_end_offset(log), end);
		assert_int_equal(log_size_bytes(log), size);
		check_log(f, log);
	}
	assert_int_equal(log_sync(log), 0);
	assert_int_equal(log_close(log), 0);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void spit(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void test_indexes_rebuilt(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	c.index_interval_bytes = 100;
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	for (int i = 0; i < 60; i++)
		append_one(f, log, 100, 100 + i);
	assert_true(log_segment_count(log) >= 4);
	assert_int_equal(log_close(log), 0);

	char p[4][256];
	int64_t bases[2] = { f->t[0].base, 0 };
	/* the second segment starts where the first ends */
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	struct log_read_result r;
	assert_int_equal(log_read(log, 0, 1 << 20, &r), 0);
	bases[1] = r.next_offset;
	log_read_result_release(&r);
	assert_int_equal(log_close(log), 0);
	snprintf(p[0], sizeof p[0], "%s/%020lld.index", f->logdir, (long long)bases[0]);
	snprintf(p[1], sizeof p[1], "%s/%020lld.timeindex", f->logdir, (long long)bases[0]);
	snprintf(p[2], sizeof p[2], "%s/%020lld.index", f->logdir, (long long)bases[1]);
	snprintf(p[3], sizeof p[3], "%s/%020lld.timeindex", f->logdir, (long long)bases[1]);
	uint8_t *orig[4];
	size_t olen[4];
	for (int i = 0; i < 4; i++) {
		orig[i] = slurp(p[i], &olen[i]);
		assert_non_null(orig[i]);
		assert_true(olen[i] > 0);
	}
	/* one index missing, one truncated to a partial entry, garbage, zeros */
	unlink(p[0]);
	assert_int_equal(truncate(p[1], (off_t)olen[1] - 5), 0);
	uint8_t junk[64];
	for (int i = 0; i < 64; i++)
		junk[i] = (uint8_t)(i * 97 + 13);
	spit(p[2], junk, 64);
	uint8_t zeros[120] = { 0 };
	spit(p[3], zeros, 120);

	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	check_log(f, log);
	int64_t off;
	assert_int_equal(log_offset_for_time(log, 105, &off), 0);
	assert_int_equal(off, f->t[5].base);
	assert_int_equal(log_close(log), 0);
	for (int i = 0; i < 4; i++) {
		size_t l;
		uint8_t *now = slurp(p[i], &l);
		assert_non_null(now);
		assert_int_equal(l, olen[i]);
		assert_memory_equal(now, orig[i], l);
		free(now);
		free(orig[i]);
	}
}

static void test_stray_files(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	for (int i = 0; i < 30; i++)
		append_one(f, log, 100, 100);
	assert_int_equal(log_close(log), 0);

	char p[256];
	const char *strays[] = { "notes.txt", "123.log", "00000000000000000000.log.bak",
				 "0000000000000000000x.log", "99999999999999999999.log",
				 "00000000000000000000.LOG" };
	for (size_t i = 0; i < sizeof strays / sizeof *strays; i++) {
		snprintf(p, sizeof p, "%s/%s", f->logdir, strays[i]);
		spit(p, "garbage", 7);
	}
	snprintf(p, sizeof p, "%s/subdir", f->logdir);
	assert_int_equal(mkdir(p, 0755), 0);
	char orphan[256], tmp[256];
	snprintf(orphan, sizeof orphan, "%s/%020d.index", f->logdir, 77777);
	spit(orphan, "12345678", 8);
	snprintf(tmp, sizeof tmp, "%s/%020d.index.tmp", f->logdir, 0);
	spit(tmp, "1234", 4);

	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	check_log(f, log);
	append_one(f, log, 100, 100);
	check_log(f, log);
	assert_int_equal(log_close(log), 0);
	/* leftovers of ours are removed, other files are left alone */
	assert_int_equal(file_size(orphan), -1);
	assert_int_equal(file_size(tmp), -1);
	snprintf(p, sizeof p, "%s/notes.txt", f->logdir);
	assert_int_equal(file_size(p), 7);
}

static void test_log_delete(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	for (int i = 0; i < 30; i++)
		append_one(f, log, 100, 100);
	/* a read in flight keeps its file open after deletion */
	struct log_read_result r;
	assert_int_equal(log_read(log, 0, 100, &r), 0);
	assert_int_equal(log_delete(log), 0);
	assert_int_equal(file_size(f->logdir), -1);
	uint8_t b[8];
	assert_int_equal(pread(r.fd, b, 8, 0), 8);
	assert_memory_equal(b, f->t[0].bytes, 8);
	log_read_result_release(&r);
	/* a fresh log can be made in the same place */
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	assert_int_equal(log_end_offset(log), 0);
	assert_int_equal(log_close(log), 0);
}

static atomic_int sync_calls, sync_status = 99;

static void on_synced(void *arg, int status)
{
	(void)arg;
	atomic_store(&sync_status, status);
	atomic_fetch_add(&sync_calls, 1);
}

static void test_flusher_file_for_durability(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &fl), 0);
	size_t len;
	uint8_t *b = make_batch(2, 100, 5, &len);
	struct log_append_result res;
	assert_int_equal(log_append(log, b, len, 5, 0, &res), 0);
	uint64_t before = flusher_fsync_count(fl);
	assert_int_equal(flusher_sync(fl, res.file, on_synced, NULL), 0);
	/* the segment goes away (rolled, then deleted) while the sync may be pending */
	assert_int_equal(log_delete_before(log, log_end_offset(log), NULL), 0);
	flusher_free(fl); /* completes queued requests */
	assert_int_equal(atomic_load(&sync_calls), 1);
	assert_int_equal(atomic_load(&sync_status), 0);
	(void)before;
	free(b);
	assert_int_equal(log_close(log), 0);
}

static int failing_fdatasync(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

static void test_failed_fsync_is_sticky(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	struct log_config c = small_cfg();
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	for (int i = 0; i < 5; i++)
		append_one(f, log, 100, 100);
	log_segment_fdatasync = failing_fdatasync;
	assert_int_equal(log_sync(log), -ERR_IO);
	log_segment_fdatasync = fdatasync;
	/* a later fdatasync might "succeed" without the lost pages: no more appends */
	size_t len;
	uint8_t *b = make_batch(1, 10, 100, &len);
	struct log_append_result res;
	assert_int_equal(log_append(log, b, len, 100, 0, &res), -ERR_IO);
	assert_int_equal(log_sync(log), -ERR_IO);
	assert_int_equal(log_roll(log, 100), -ERR_IO);
	check_log(f, log); /* reads still work */
	assert_int_equal(log_close(log), -ERR_IO);
	/* a reopen recovers and takes appends again */
	assert_int_equal(log_open(f->logdir, &c, 0, &log), 0);
	check_log(f, log);
	append_one(f, log, 100, 100);
	check_log(f, log);
	/* the fdatasync at a roll fails the same way */
	log_segment_fdatasync = failing_fdatasync;
	assert_int_equal(log_roll(log, 100), -ERR_IO);
	log_segment_fdatasync = fdatasync;
	assert_int_equal(log_append(log, b, len, 100, 0, &res), -ERR_IO);
	assert_int_equal(log_close(log), -ERR_IO);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_read_across_rolls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multi_batch_append_and_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input_stores_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_append_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roll_by_age_and_explicit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_by_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_by_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_before, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offset_for_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_continues, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indexes_rebuilt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stray_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flusher_file_for_durability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_fsync_is_sticky, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
