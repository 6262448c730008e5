/*
 * test_log_segment.c: one segment: appends (with short writes, EINTR and ENOSPC
 * injected through the pwrite seam), lookups by offset and time, file-range
 * reads of whole batches, sealing and reopening, index rebuilding, truncation,
 * deletion while the flusher still holds the fd.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/writer.h"
#include "storage/flusher.h"
#include "storage/log_segment.h"
#include "storage/record_batch.h"

#define BASE 1000
#define INTERVAL 300
#define NBATCH 60

/* What the test appended: one entry per batch. */
struct batch_info {
	int64_t base, last, pos, size, max_ts;
};

struct fixture {
	char dir[64];
	char log_path[128], index_path[128], time_path[128];
	struct batch_info b[NBATCH * 2];
	int n;
	uint8_t *all;      /* every appended byte, in order */
	size_t all_len;
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
	strcpy(f->dir, "/tmp/sluice-seg-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->log_path, sizeof f->log_path, "%s/%020d.log", f->dir, BASE);
	snprintf(f->index_path, sizeof f->index_path, "%s/%020d.index", f->dir, BASE);
	snprintf(f->time_path, sizeof f->time_path, "%s/%020d.timeindex", f->dir, BASE);
	f->all = malloc(1 << 20);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	log_segment_pwrite = pwrite;
	nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f->all);
	free(f);
	return 0;
}

/* One batch of n records with vlen-byte values; record i has timestamp ts + i * step. */
static uint8_t *make_batch(int64_t base, int n, size_t vlen, int64_t ts, int64_t step, size_t *len)
{
	struct record_batch_rec recs[8];
	uint8_t val[512];
	assert_true(n <= 8 && vlen <= sizeof val);
	memset(val, 'a' + (int)(base % 26), vlen);
	for (int i = 0; i < n; i++) {
		memset(&recs[i], 0, sizeof recs[i]);
		recs[i].offset_delta = i;
		recs[i].timestamp_delta = i * step;
		recs[i].value = (struct slice){ val, vlen };
	}
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.base_offset = base;
	p.base_timestamp = ts;
	struct writer w;
	writer_init(&w, 1 << 20);
	assert_int_equal(record_batch_encode(&w, &p, recs, (size_t)n), 0);
	return writer_take(&w, len);
}

/* Appends count batches of varied shapes, one append call each, recording them. */
static void append_batches(struct fixture *f, struct log_segment *s, int count)
{
	for (int i = 0; i < count; i++) {
		int k = f->n;
		int64_t base = log_segment_next_offset(s);
		int nrec = 1 + (k * 7) % 4;
		size_t vlen = (size_t)(10 + (k * 37) % 120);
		int64_t ts = 5000 + (k % 5) * 100 - (k % 3) * 70 + k * 10; /* not monotonic */
		size_t len;
		uint8_t *b = make_batch(base, nrec, vlen, ts, 3, &len);
		assert_int_equal(log_segment_append(s, b, len, 1), 0);
		f->b[k] = (struct batch_info){ base, base + nrec - 1, (int64_t)f->all_len, (int64_t)len,
					       ts + (nrec - 1) * 3 };
		memcpy(f->all + f->all_len, b, len);
		f->all_len += len;
		f->n++;
		free(b);
	}
}

/* Checks size, offsets, file contents, and every lookup against what was appended. */
static void check_segment(struct fixture *f, struct log_segment *s)
{
	assert_int_equal(log_segment_base_offset(s), BASE);
	assert_int_equal(log_segment_size(s), (int64_t)f->all_len);
	int64_t next = f->n ? f->b[f->n - 1].last + 1 : BASE;
	assert_int_equal(log_segment_next_offset(s), next);
	int64_t max = INT64_MIN;
	for (int i = 0; i < f->n; i++)
		max = f->b[i].max_ts > max ? f->b[i].max_ts : max;
	assert_int_equal(log_segment_max_timestamp(s), max);

	/* the file holds exactly the appended bytes */
	int fd = open(f->log_path, O_RDONLY);
	assert_true(fd >= 0);
	uint8_t *buf = malloc(f->all_len + 1);
	assert_int_equal(read(fd, buf, f->all_len + 1), (ssize_t)f->all_len);
	assert_memory_equal(buf, f->all, f->all_len);
	free(buf);
	close(fd);

	struct log_segment_batch sb;
	for (int i = 0; i < f->n; i++) {
		for (int64_t o = f->b[i].base; o <= f->b[i].last; o++) {
			assert_int_equal(log_segment_find(s, o, &sb), 0);
			assert_int_equal(sb.position, f->b[i].pos);
			assert_int_equal(sb.size, f->b[i].size);
			assert_int_equal(sb.base_offset, f->b[i].base);
			assert_int_equal(sb.last_offset, f->b[i].last);
			assert_int_equal(sb.max_timestamp, f->b[i].max_ts);
		}
	}
	if (f->n) {
		assert_int_equal(log_segment_find(s, 0, &sb), 0); /* before the base: first batch */
		assert_int_equal(sb.position, 0);
	}
	assert_int_equal(log_segment_find(s, next, &sb), -ERR_NOT_FOUND);

	/* reads: whole batches, total <= max_bytes, at least one */
	int64_t maxes[] = { 0, 1, 100, 333, 1000, 5000, 1 << 20 };
	struct log_segment_range r;
	for (int i = 0; i < f->n; i++) {
		for (size_t m = 0; m < sizeof maxes / sizeof *maxes; m++) {
			int64_t o = f->b[i].base + (f->b[i].last - f->b[i].base) / 2;
			assert_int_equal(log_segment_read(s, o, maxes[m], &r), 0);
			int j = i;
			int64_t total = f->b[i].size;
			while (j + 1 < f->n && total + f->b[j + 1].size <= maxes[m])
				total += f->b[++j].size;
			assert_int_equal(r.position, f->b[i].pos);
			assert_int_equal(r.length, total);
			assert_int_equal(r.first_offset, f->b[i].base);
			assert_int_equal(r.next_offset, f->b[j].last + 1);
		}
	}
	assert_int_equal(log_segment_read(s, next, 100, &r), -ERR_NOT_FOUND);

	/* time lookups against a brute force search */
	for (int64_t ts = 4000; ts < 6000 + f->n * 10; ts += 7) {
		int64_t want = -1, got = -1;
		for (int i = 0; i < f->n && want < 0; i++)
			if (f->b[i].max_ts >= ts)
				want = f->b[i].base;
		int rc = log_segment_find_time(s, ts, &got);
		if (want < 0) {
			assert_int_equal(rc, -ERR_NOT_FOUND);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(got, want);
		}
	}
}

/* The offset-index entries the indexing rule gives for the appended batches. */
static size_t expected_index_entries(struct fixture *f)
{
	size_t n = 0;
	int64_t last = 0;
	for (int i = 0; i < f->n; i++) {
		if (n == 0 || f->b[i].pos - last >= INTERVAL) {
			n++;
			last = f->b[i].pos;
		}
	}
	return n;
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	fstat(fd, &st);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void test_empty_segment(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	assert_int_equal(log_segment_size(s), 0);
	assert_int_equal(log_segment_next_offset(s), BASE);
	assert_int_equal(log_segment_max_timestamp(s), INT64_MIN);
	assert_int_equal(log_segment_roll_base_ms(s), INT64_MAX);
	assert_int_equal(file_size(f->log_path), 0);
	check_segment(f, s);
	int64_t off;
	assert_int_equal(log_segment_find_time(s, 0, &off), -ERR_NOT_FOUND);
	/* the name is taken */
	struct log_segment *dup;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &dup), -ERR_EXISTS);
	log_segment_close(s);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 1, 10, &s), 0);
	check_segment(f, s);
	log_segment_close(s);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 0, 10, &s), 0);
	check_segment(f, s);
	log_segment_close(s);
	assert_int_equal(log_segment_open(f->dir, BASE + 1, INTERVAL, 0, 10, &s), -ERR_NOT_FOUND);
}

static void test_append_find_read(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	append_batches(f, s, NBATCH);
	check_segment(f, s);
	assert_true(log_segment_dirty(s));
	assert_int_equal(log_segment_sync(s), 0);
	assert_false(log_segment_dirty(s));

	/* several batches in one call */
	size_t l1, l2;
	int64_t next = log_segment_next_offset(s);
	uint8_t *b1 = make_batch(next, 3, 40, 9000, 1, &l1);
	uint8_t *b2 = make_batch(next + 3, 2, 40, 9100, 1, &l2);
	uint8_t *both = malloc(l1 + l2);
	memcpy(both, b1, l1);
	memcpy(both + l1, b2, l2);
	assert_int_equal(log_segment_append(s, both, l1 + l2, 1), 0);
	f->b[f->n++] = (struct batch_info){ next, next + 2, (int64_t)f->all_len, (int64_t)l1, 9002 };
	f->b[f->n++] = (struct batch_info){ next + 3, next + 4, (int64_t)(f->all_len + l1), (int64_t)l2, 9101 };
	memcpy(f->all + f->all_len, both, l1 + l2);
	f->all_len += l1 + l2;
	check_segment(f, s);
	free(b1);
	free(b2);
	free(both);
	log_segment_close(s);
}

static void test_bad_appends_change_nothing(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	append_batches(f, s, 5);
	int64_t next = log_segment_next_offset(s);
	size_t len;
	uint8_t *b = make_batch(next + 1, 2, 10, 1, 1, &len); /* a gap */
	assert_int_equal(log_segment_append(s, b, len, 1), -ERR_INVALID);
	free(b);
	b = make_batch(next - 1, 2, 10, 1, 1, &len); /* an overlap */
	assert_int_equal(log_segment_append(s, b, len, 1), -ERR_INVALID);
	/* a good batch followed by a bad one: neither is written */
	uint8_t *good = make_batch(next, 2, 10, 1, 1, &len);
	uint8_t *two = malloc(2 * len);
	memcpy(two, good, len);
	memcpy(two + len, good, len);
	assert_int_equal(log_segment_append(s, two, 2 * len, 1), -ERR_INVALID);
	/* a torn buffer */
	assert_int_equal(log_segment_append(s, good, len - 1, 1), -ERR_CORRUPT);
	check_segment(f, s);
	assert_int_equal(log_segment_append(s, good, 0, 1), 0);
	check_segment(f, s);
	/* sealed segments take no appends */
	assert_int_equal(log_segment_seal(s), 0);
	assert_int_equal(log_segment_append(s, good, len, 1), -ERR_INVALID);
	check_segment(f, s);
	free(b);
	free(good);
	free(two);
	log_segment_close(s);
}

static void test_seal_reopen_and_rebuild(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	append_batches(f, s, NBATCH);
	/* the active segment's indexes stay in memory */
	assert_int_equal(file_size(f->index_path), -1);
	assert_int_equal(log_segment_seal(s), 0);
	size_t nidx = expected_index_entries(f);
	assert_true(nidx > 5 && nidx < NBATCH);
	assert_int_equal(file_size(f->index_path), (off_t)(nidx * 8));
	assert_true(file_size(f->time_path) >= 12);
	assert_int_equal(file_size(f->time_path) % 12, 0);
	check_segment(f, s);
	log_segment_close(s);

	size_t ilen, tlen;
	uint8_t *idx = slurp(f->index_path, &ilen);
	uint8_t *tidx = slurp(f->time_path, &tlen);

	/* trusted open, then recovering open: same state */
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 0, 10, &s), 0);
	check_segment(f, s);
	log_segment_close(s);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 1, 10, &s), 0);
	check_segment(f, s);
	log_segment_close(s);

	/* missing indexes are rebuilt identical to the originals */
	unlink(f->index_path);
	unlink(f->time_path);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 0, 10, &s), 0);
	check_segment(f, s);
	log_segment_close(s);
	size_t l;
	uint8_t *again = slurp(f->index_path, &l);
	assert_int_equal(l, ilen);
	assert_memory_equal(again, idx, l);
	free(again);
	again = slurp(f->time_path, &l);
	assert_int_equal(l, tlen);
	assert_memory_equal(again, tidx, l);
	free(again);

	/* an entry in the middle pointing one byte off: found at first use, rebuilt */
	int fd = open(f->index_path, O_RDWR);
	uint8_t e[8];
	assert_int_equal(pread(fd, e, 8, 8 * 3), 8);
	e[7] += 1;
	assert_int_equal(pwrite(fd, e, 8, 8 * 3), 8);
	close(fd);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 0, 10, &s), 0);
	check_segment(f, s);
	log_segment_close(s);
	again = slurp(f->index_path, &l);
	assert_int_equal(l, ilen);
	assert_memory_equal(again, idx, l);
	free(again);

	/* a time index whose last entry names an offset past the end */
	fd = open(f->time_path, O_RDWR);
	uint8_t t[4] = { 0x7f, 0, 0, 0 };
	assert_int_equal(pwrite(fd, t, 4, (off_t)tlen - 4), 4);
	close(fd);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 0, 10, &s), 0);
	check_segment(f, s);
	log_segment_close(s);
	again = slurp(f->time_path, &l);
	assert_int_equal(l, tlen);
	assert_memory_equal(again, tidx, l);
	free(again);
	free(idx);
	free(tidx);
}

/* Seam state: how the fake pwrite misbehaves. */
static int seam_max_chunk;   /* > 0: write at most this many bytes per call */
static int seam_calls;
static int seam_eintr_every; /* > 0: every n-th call fails with EINTR */
static int seam_fail_after;  /* >= 0: after this many bytes, fail with seam_errno */
static int seam_errno;
static int seam_written;

static ssize_t fake_pwrite(int fd, const void *buf, size_t len, off_t pos)
{
	seam_calls++;
	if (seam_eintr_every && seam_calls % seam_eintr_every == 0) {
		errno = EINTR;
		return -1;
	}
	if (seam_fail_after >= 0 && seam_written >= seam_fail_after) {
		if (seam_errno == 0)
			return 0;
		errno = seam_errno;
		return -1;
	}
	size_t n = len;
	if (seam_max_chunk > 0 && n > (size_t)seam_max_chunk)
		n = (size_t)seam_max_chunk;
	if (seam_fail_after >= 0 && n > (size_t)(seam_fail_after - seam_written))
		n = (size_t)(seam_fail_after - seam_written);
	ssize_t r = pwrite(fd, buf, n, pos);
	if (r > 0)
		seam_written += (int)r;
	return r;
}

static void seam_reset(void)
{
	seam_max_chunk = 0;
	seam_calls = 0;
	seam_eintr_every = 0;
	seam_fail_after = -1;
	seam_errno = 0;
	seam_written = 0;
}

static void test_short_writes_and_eintr(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	seam_reset();
	seam_max_chunk = 7;
	seam_eintr_every = 3;
	log_segment_pwrite = fake_pwrite;
	append_batches(f, s, 20);
	assert_true(seam_calls > 100);
	log_segment_pwrite = pwrite;
	check_segment(f, s);
	log_segment_close(s);
}

static void test_write_errors(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	append_batches(f, s, 10);
	int64_t next = log_segment_next_offset(s);
	size_t len;
	uint8_t *b = make_batch(next, 3, 100, 7000, 1, &len);
	struct { int err; int after; int want; } cases[] = {
		{ ENOSPC, 50, -ERR_NOSPC }, { ENOSPC, 0, -ERR_NOSPC }, { EDQUOT, 10, -ERR_NOSPC },
		{ EIO, 20, -ERR_IO }, { 0, 30, -ERR_IO }, { EBADF, 0, -EBADF },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		seam_reset();
		seam_errno = cases[i].err;
		seam_fail_after = cases[i].after;
		log_segment_pwrite = fake_pwrite;
		assert_int_equal(log_segment_append(s, b, len, 1), cases[i].want);
		log_segment_pwrite = pwrite;
		/* nothing changed: state, indexes, and the file (a partial write is cut) */
		assert_int_equal(file_size(f->log_path), (off_t)f->all_len);
		check_segment(f, s);
	}
	/* the same batch goes in once the disk has room */
	assert_int_equal(log_segment_append(s, b, len, 1), 0);
	f->b[f->n++] = (struct batch_info){ next, next + 2, (int64_t)f->all_len, (int64_t)len, 7002 };
	memcpy(f->all + f->all_len, b, len);
	f->all_len += len;
	check_segment(f, s);
	free(b);
	log_segment_close(s);
}

static void test_truncate(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	append_batches(f, s, 40);
	/* at a batch boundary */
	assert_int_equal(log_segment_truncate(s, f->b[30].pos), 0);
	f->n = 30;
	f->all_len = (size_t)f->b[30].pos;
	check_segment(f, s);
	/* inside a batch: that batch goes too */
	assert_int_equal(log_segment_truncate(s, f->b[25].pos + 20), 0);
	f->n = 25;
	f->all_len = (size_t)f->b[25].pos;
	check_segment(f, s);
	/* by offset: keeps offsets below it, cutting whole batches */
	int64_t mid = f->b[20].base + (f->b[20].last > f->b[20].base ? 1 : 0);
	assert_int_equal(log_segment_truncate_offset(s, mid), 0);
	f->n = 20;
	f->all_len = (size_t)f->b[20].pos;
	check_segment(f, s);
	assert_int_equal(log_segment_truncate(s, f->all_len + 1), -ERR_RANGE);
	/* appends continue at the new end */
	append_batches(f, s, 10);
	check_segment(f, s);
	/* sealed segments truncate too, and their index files follow */
	assert_int_equal(log_segment_seal(s), 0);
	assert_int_equal(log_segment_truncate(s, f->b[10].pos), 0);
	f->n = 10;
	f->all_len = (size_t)f->b[10].pos;
	check_segment(f, s);
	assert_int_equal(file_size(f->index_path), (off_t)(expected_index_entries(f) * 8));
	assert_int_equal(log_segment_truncate_offset(s, 0), 0);
	f->n = 0;
	f->all_len = 0;
	check_segment(f, s);
	log_segment_close(s);
}

static void test_recover_cuts_torn_tail(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	append_batches(f, s, 10);
	log_segment_close(s);
	/* half a batch more, as a crash in the middle of a write leaves it */
	size_t len;
	uint8_t *b = make_batch(f->b[9].last + 1, 2, 50, 1, 1, &len);
	int fd = open(f->log_path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, b, len / 2), (ssize_t)(len / 2));
	close(fd);
	free(b);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 1, 10, &s), 0);
	check_segment(f, s);
	assert_int_equal(file_size(f->log_path), (off_t)f->all_len);
	append_batches(f, s, 2);
	check_segment(f, s);
	log_segment_close(s);

	/* a trusted (non-tail) segment with a bad header after its last index entry */
	fd = open(f->log_path, O_WRONLY | O_APPEND);
	uint8_t junk[100];
	memset(junk, 0x5a, sizeof junk);
	assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
	close(fd);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 0, 10, &s), 0);
	check_segment(f, s);
	log_segment_close(s);
}

/* An entry goes in once a batch starts index_interval_bytes or more after the last one. */
static void test_index_interval_boundary(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *b = make_batch(0, 1, 50, 1, 0, &len);
	free(b);
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, (int64_t)len, &s), 0);
	for (int i = 0; i < 10; i++) {
		b = make_batch(BASE + i, 1, 50, 1, 0, &len); /* all the same size */
		assert_int_equal(log_segment_append(s, b, len, 1), 0);
		free(b);
	}
	assert_int_equal(log_segment_seal(s), 0);
	assert_int_equal(file_size(f->index_path), 10 * 8);
	log_segment_close(s);
	/* one byte more apart: every other batch */
	unlink(f->log_path);
	unlink(f->index_path);
	unlink(f->time_path);
	assert_int_equal(log_segment_create(f->dir, BASE, (int64_t)len + 1, &s), 0);
	for (int i = 0; i < 10; i++) {
		b = make_batch(BASE + i, 1, 50, 1, 0, &len);
		assert_int_equal(log_segment_append(s, b, len, 1), 0);
		free(b);
	}
	assert_int_equal(log_segment_seal(s), 0);
	assert_int_equal(file_size(f->index_path), 5 * 8);
	log_segment_close(s);
}

static void test_roll_base(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	size_t len;
	uint8_t *b = make_batch(BASE, 1, 10, 5000, 0, &len);
	assert_int_equal(log_segment_append(s, b, len, 6000), 0);
	assert_int_equal(log_segment_roll_base_ms(s), 5000); /* the first batch's timestamp */
	free(b);
	b = make_batch(BASE + 1, 1, 10, 100, 0, &len);
	assert_int_equal(log_segment_append(s, b, len, 7000), 0);
	assert_int_equal(log_segment_roll_base_ms(s), 5000);
	assert_int_equal(log_segment_retention_ms(s), 5000);
	free(b);
	log_segment_close(s);
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 1, 9000, &s), 0);
	assert_int_equal(log_segment_roll_base_ms(s), 5000);
	log_segment_close(s);
	/* a first timestamp in the future counts from the open time */
	assert_int_equal(log_segment_open(f->dir, BASE, INTERVAL, 1, 4000, &s), 0);
	assert_int_equal(log_segment_roll_base_ms(s), 4000);
	log_segment_close(s);
}

static void test_delete_keeps_fd_for_flusher(void **state)
{
	struct fixture *f = *state;
	struct log_segment *s;
	assert_int_equal(log_segment_create(f->dir, BASE, INTERVAL, &s), 0);
	append_batches(f, s, 3);
	assert_int_equal(log_segment_seal(s), 0);
	struct flusher_file *ff = flusher_file_ref(log_segment_file(s));
	assert_int_equal(log_segment_delete(s), 0);
	assert_int_equal(file_size(f->log_path), -1);
	assert_int_equal(file_size(f->index_path), -1);
	assert_int_equal(file_size(f->time_path), -1);
	/* the fd is still open and syncable for a pending flush */
	assert_int_equal(fdatasync(flusher_file_fd(ff)), 0);
	struct stat st;
	assert_int_equal(fstat(flusher_file_fd(ff), &st), 0);
	assert_int_equal(st.st_size, (off_t)f->all_len);
	flusher_file_unref(ff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_find_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_appends_change_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_reopen_and_rebuild, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_writes_and_eintr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_cuts_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_interval_boundary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roll_base, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_keeps_fd_for_flusher, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
