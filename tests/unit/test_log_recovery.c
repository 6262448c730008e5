/*
 * test_log_recovery.c: what log_open makes of damaged directories.
 *
 * A log of N batches is written and closed, its files are snapshotted, and each
 * case restores the snapshot, damages it and reopens:
 *   - the last .log cut at EVERY byte position inside its last batch;
 *   - random bytes flipped in the tail segment (fixed seed);
 *   - index files of sealed segments missing, short, zeroed, garbage, swapped;
 *   - stray, empty and garbage segment files in the directory.
 * After each reopen: every complete batch before the damage reads back byte for
 * byte, nothing after it is returned, the cut is reported with diag_warn, and
 * an append continues at the right offset.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/writer.h"
#include "storage/log.h"
#include "storage/record_batch.h"

#define NBATCH 40 /* at least; more until the tail segment has 4 batches */
#define MAXBATCH 128
#define MAXFILES 128

struct tracked {
	int64_t base, last, max_ts;
	size_t len;
	uint8_t *bytes;
};

struct snapfile {
	char name[64];
	uint8_t *data;
	size_t len;
};

struct fixture {
	char dir[64];
	char logdir[96];
	char errpath[96];
	struct log_config cfg;
	struct tracked t[MAXBATCH];
	int n;
	struct snapfile snap[MAXFILES];
	int nsnap;
	int64_t tail_base;     /* base offset of the last segment */
	int tail_first;        /* index of the first batch in the last segment */
	char tail_path[160];
};

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static uint8_t *make_batch(int n, size_t vlen, int64_t ts, size_t *len)
{
	struct record_batch_rec recs[8];
	static uint8_t val[512];
	for (size_t i = 0; i < sizeof val; i++)
		val[i] = (uint8_t)(i * 31 + (size_t)ts);
	for (int i = 0; i < n; i++) {
		memset(&recs[i], 0, sizeof recs[i]);
		recs[i].offset_delta = i;
		recs[i].timestamp_delta = i;
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

static void track(struct fixture *f, const uint8_t *buf, size_t len)
{
	struct record_batch_header h;
	assert_int_equal(record_batch_parse(buf, len, SIZE_MAX, &h), 0);
	struct tracked *t = &f->t[f->n++];
	t->base = h.base_offset;
	t->last = record_batch_last_offset(&h);
	t->max_ts = h.max_timestamp;
	t->len = len;
	t->bytes = malloc(len);
	memcpy(t->bytes, buf, len);
}

/* Appends one batch and checks it got offset want. */
static void append_expect(struct log *log, int64_t want, int64_t ts)
{
	size_t len;
	uint8_t *b = make_batch(2, 30, ts, &len);
	struct log_append_result res;
	assert_int_equal(log_append(log, b, len, ts, 0, &res), 0);
	assert_int_equal(res.base_offset, want);
	free(b);
}

/*
 * Reads the log batch by batch: the first `good` tracked batches, byte for
 * byte except the leader epoch of batch `epoch_of` (-1: none), and nothing after.
 */
static void check_batches(struct fixture *f, struct log *log, int good, int epoch_of)
{
	int64_t end = good ? f->t[good - 1].last + 1 : 0;
	assert_int_equal(log_start_offset(log), 0);
	assert_int_equal(log_end_offset(log), end);
	struct writer w;
	writer_init(&w, 1 << 22);
	struct log_read_result r;
	int64_t off = 0;
	for (int i = 0; i < good; i++) {
		writer_reset(&w);
		assert_int_equal(log_read_copy(log, off, 1, &w, &r), 0);
		assert_int_equal(r.first_offset, f->t[i].base);
		assert_int_equal(w.len, f->t[i].len);
		if (i == epoch_of) {
			assert_memory_equal(w.buf, f->t[i].bytes, 12);
			assert_memory_equal(w.buf + 16, f->t[i].bytes + 16, w.len - 16);
		} else {
			assert_memory_equal(w.buf, f->t[i].bytes, w.len);
		}
		off = r.next_offset;
	}
	assert_int_equal(off, end);
	/* nothing after the damage, whatever is asked */
	assert_int_equal(log_read(log, end, 1 << 20, &r), 0);
	assert_int_equal(r.length, 0);
	assert_int_equal(log_read(log, end + 1, 1 << 20, &r), -ERR_RANGE);
	/* a big read from the last good batch ends at the end offset */
	if (good > 0) {
		assert_int_equal(log_read(log, f->t[good - 1].base, 1 << 20, &r), 0);
		assert_int_equal(r.next_offset, end);
		log_read_result_release(&r);
	}
	writer_fini(&w);
}

static void check_prefix(struct fixture *f, struct log *log, int good)
{
	check_batches(f, log, good, -1);
}

/* Runs log_open with stderr captured; returns what was printed (malloc'd). */
static char *open_captured(struct fixture *f, struct log **log, int *rc)
{
	fflush(stderr);
	int saved = dup(2);
	int fd = open(f->errpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	*rc = log_open(f->logdir, &f->cfg, 1000000, log);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	struct stat st;
	fstat(fd, &st);
	char *out = calloc(1, (size_t)st.st_size + 1);
	assert_int_equal(pread(fd, out, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	return out;
}

static void snapshot(struct fixture *f)
{
	DIR *d = opendir(f->logdir);
	assert_non_null(d);
	struct dirent *de;
	f->nsnap = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		assert_true(f->nsnap < MAXFILES);
		struct snapfile *s = &f->snap[f->nsnap++];
		assert_true(strlen(de->d_name) < sizeof s->name);
		strcpy(s->name, de->d_name);
		char p[200];
		snprintf(p, sizeof p, "%s/%s", f->logdir, s->name);
		int fd = open(p, O_RDONLY);
		struct stat st;
		fstat(fd, &st);
		s->len = (size_t)st.st_size;
		s->data = malloc(s->len + 1);
		assert_int_equal(read(fd, s->data, s->len), (ssize_t)s->len);
		close(fd);
	}
	closedir(d);
}

static void put_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Puts the directory back exactly as snapshotted. */
static void restore(struct fixture *f)
{
	nftw(f->logdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	assert_int_equal(mkdir(f->logdir, 0755), 0);
	for (int i = 0; i < f->nsnap; i++) {
		char p[200];
		snprintf(p, sizeof p, "%s/%s", f->logdir, f->snap[i].name);
		put_file(p, f->snap[i].data, f->snap[i].len);
	}
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/sluice-recovery-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	*state = f; /* the group teardown cleans up even if this setup fails */
	snprintf(f->logdir, sizeof f->logdir, "%s/log", f->dir);
	snprintf(f->errpath, sizeof f->errpath, "%s/stderr.txt", f->dir);
	log_config_defaults(&f->cfg);
	f->cfg.segment_bytes = 3000;
	f->cfg.index_interval_bytes = 128;
	f->cfg.segment_ms = -1;
	f->cfg.retention_ms = -1;

	struct log *log;
	if (log_open(f->logdir, &f->cfg, 0, &log))
		return -1;
	for (int i = 0; i < MAXBATCH; i++) {
		size_t len;
		uint8_t *b = make_batch(1 + i % 3, (size_t)(40 + (i * 71) % 200), 1000 + i * 10, &len);
		struct log_append_result res;
		if (log_append(log, b, len, 1000 + i * 10, 0, &res))
			return -1;
		track(f, b, len);
		free(b);
		/* the tail segment starts at the batch read back at position 0 */
		struct log_read_result r;
		log_read(log, f->t[i].base, 1, &r);
		if (r.position == 0) {
			f->tail_base = f->t[i].base;
			f->tail_first = i;
		}
		log_read_result_release(&r);
		if (f->n >= NBATCH && f->n - f->tail_first >= 4)
			break;
	}
	if (log_segment_count(log) < 4 || f->n - f->tail_first < 4) {
		fprintf(stderr, "setup: %zu segments, %d batches in the tail\n", log_segment_count(log),
			f->n - f->tail_first);
		return -1;
	}
	log_close(log);
	snprintf(f->tail_path, sizeof f->tail_path, "%s/%020lld.log", f->logdir,
		 (long long)f->tail_base);
	snapshot(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	for (int i = 0; i < f->n; i++)
		free(f->t[i].bytes);
	for (int i = 0; i < f->nsnap; i++)
		free(f->snap[i].data);
	free(f);
	return 0;
}

/* Position of tracked batch i inside the tail segment file. */
static size_t tail_pos(struct fixture *f, int i)
{
	size_t pos = 0;
	for (int k = f->tail_first; k < i; k++)
		pos += f->t[k].len;
	return pos;
}

static void test_clean_reopen(void **state)
{
	struct fixture *f = *state;
	struct log *log;
	int rc;
	restore(f);
	char *err = open_captured(f, &log, &rc);
	assert_int_equal(rc, 0);
	assert_null(strstr(err, "WARN"));
	free(err);
	check_prefix(f, log, f->n);
	append_expect(log, f->t[f->n - 1].last + 1, 5000);
	assert_int_equal(log_close(log), 0);
}

static void test_cut_at_every_byte_of_last_batch(void **state)
{
	struct fixture *f = *state;
	size_t start = tail_pos(f, f->n - 1);
	size_t end = start + f->t[f->n - 1].len;
	const struct snapfile *tail = NULL;
	for (int i = 0; i < f->nsnap; i++)
		if (strcmp(f->snap[i].name, strrchr(f->tail_path, '/') + 1) == 0)
			tail = &f->snap[i];
	assert_non_null(tail);
	assert_int_equal(tail->len, end);
	for (size_t cut = start; cut < end; cut++) {
		restore(f);
		assert_int_equal(truncate(f->tail_path, (off_t)cut), 0);
		struct log *log;
		int rc;
		char *err = open_captured(f, &log, &rc);
		assert_int_equal(rc, 0);
		if (cut == start) {
			assert_null(strstr(err, "truncating"));
		} else {
			/* the cut is reported: file, bytes and position */
			char want[256];
			snprintf(want, sizeof want, "%s: truncating %zu bytes at position %zu",
				 f->tail_path, cut - start, start);
			if (!strstr(err, want))
				fail_msg("cut %zu: expected \"%s\" in \"%s\"", cut, want, err);
		}
		free(err);
		check_prefix(f, log, f->n - 1);
		append_expect(log, f->t[f->n - 2].last + 1, 5000);
		assert_int_equal(log_close(log), 0);
		/* and again: the appended batch survived, nothing else came back, and the
		 * file holds nothing that needs another cut */
		err = open_captured(f, &log, &rc);
		assert_int_equal(rc, 0);
		if (strstr(err, "WARN"))
			fail_msg("cut %zu: second open warned: %s", cut, err);
		free(err);
		int64_t at = f->t[f->n - 2].last + 1;
		assert_int_equal(log_end_offset(log), at + 2);
		struct log_read_result r;
		assert_int_equal(log_read(log, at, 1, &r), 0);
		assert_int_equal(r.first_offset, at);
		assert_int_equal(r.next_offset, at + 2);
		log_read_result_release(&r);
		assert_int_equal(log_close(log), 0);
	}
}

/* Flips one byte of the tail file at pos (xor v) and checks what survives. */
static void flip_and_check(struct fixture *f, size_t pos, uint8_t v)
{
	restore(f);
	int fd = open(f->tail_path, O_RDWR);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, (off_t)pos), 1);
	b ^= v;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)pos), 1);
	close(fd);

	int j = f->tail_first;
	while (j + 1 < f->n && tail_pos(f, j + 1) <= pos)
		j++;
	size_t in_batch = pos - tail_pos(f, j);
	int harmless = in_batch >= 12 && in_batch < 16; /* partitionLeaderEpoch: outside the CRC */

	struct log *log;
	int rc;
	char *err = open_captured(f, &log, &rc);
	assert_int_equal(rc, 0);
	if (harmless) {
		assert_null(strstr(err, "truncating"));
		check_batches(f, log, f->n, j);
		free(err);
		assert_int_equal(log_close(log), 0);
		return;
	}
	if (!strstr(err, "truncating"))
		fail_msg("flip at %zu (batch %d byte %zu): no cut reported", pos, j, in_batch);
	free(err);
	check_prefix(f, log, j);
	append_expect(log, j ? f->t[j - 1].last + 1 : 0, 5000);
	assert_int_equal(log_close(log), 0);
}

static void test_flipped_bytes_in_tail(void **state)
{
	struct fixture *f = *state;
	size_t len = tail_pos(f, f->n);
	unsigned seed = 20261125;
	printf("flip seed %u, tail %zu bytes\n", seed, len);
	/* every header field of the last batches, then random places */
	for (int j = f->n - 3; j < f->n; j++)
		for (size_t k = 0; k < 61; k++)
			flip_and_check(f, tail_pos(f, j) + k, 0x40);
	for (int i = 0; i < 150; i++) {
		size_t pos = (size_t)rand_r(&seed) % len;
		flip_and_check(f, pos, (uint8_t)(1 + rand_r(&seed) % 255));
	}
}

/* Path of a snapshot file of segment i's kind ext (i-th .log in sorted order). */
static void seg_file(struct fixture *f, int i, const char *ext, char *out, size_t len)
{
	int64_t bases[MAXFILES];
	int n = 0;
	for (int k = 0; k < f->nsnap; k++) {
		const char *dot = strchr(f->snap[k].name, '.');
		if (dot && strcmp(dot, ".log") == 0)
			bases[n++] = atoll(f->snap[k].name);
	}
	for (int a = 0; a < n; a++)
		for (int b = a + 1; b < n; b++)
			if (bases[b] < bases[a]) {
				int64_t t = bases[a];
				bases[a] = bases[b];
				bases[b] = t;
			}
	assert_true(i < n);
	snprintf(out, len, "%s/%020lld%s", f->logdir, (long long)bases[i], ext);
}

/* Reopens and checks all data, time lookups and an append. */
static void check_full(struct fixture *f)
{
	struct log *log;
	int rc;
	char *err = open_captured(f, &log, &rc);
	assert_int_equal(rc, 0);
	free(err);
	check_prefix(f, log, f->n);
	for (int i = 0; i < f->n; i += 3) {
		int64_t off;
		assert_int_equal(log_offset_for_time(log, f->t[i].max_ts, &off), 0);
		assert_int_equal(off, f->t[i].base);
	}
	append_expect(log, f->t[f->n - 1].last + 1, 5000);
	assert_int_equal(log_close(log), 0);
}

static void test_damaged_indexes(void **state)
{
	struct fixture *f = *state;
	char a[200], b[200], ta[200], tb[200];
	seg_file(f, 0, ".index", a, sizeof a);
	seg_file(f, 1, ".index", b, sizeof b);
	seg_file(f, 0, ".timeindex", ta, sizeof ta);
	seg_file(f, 1, ".timeindex", tb, sizeof tb);
	uint8_t junk[96];
	unsigned seed = 7;
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)rand_r(&seed);
	uint8_t zeros[96] = { 0 };

	/* missing */
	restore(f);
	unlink(a);
	unlink(tb);
	check_full(f);
	/* short: a partial last entry */
	restore(f);
	assert_int_equal(truncate(a, 13), 0);
	assert_int_equal(truncate(tb, 7), 0);
	check_full(f);
	/* garbage and zeros of whole entries */
	restore(f);
	put_file(a, junk, 96);
	put_file(ta, zeros, 96);
	put_file(b, zeros, 96);
	put_file(tb, junk, 96);
	check_full(f);
	/* swapped: valid files of another segment */
	restore(f);
	rename(a, "/tmp/sluice-recovery-swap");
	rename(b, a);
	rename("/tmp/sluice-recovery-swap", b);
	rename(ta, "/tmp/sluice-recovery-swap");
	rename(tb, ta);
	rename("/tmp/sluice-recovery-swap", tb);
	check_full(f);
	/* empty */
	restore(f);
	put_file(a, junk, 0);
	put_file(tb, junk, 0);
	check_full(f);
	/* after all that, the rebuilt files are the originals again */
	const char *paths[] = { a, b, ta, tb };
	for (int i = 0; i < 4; i++) {
		const struct snapfile *orig = NULL;
		for (int k = 0; k < f->nsnap; k++)
			if (strcmp(f->snap[k].name, strrchr(paths[i], '/') + 1) == 0)
				orig = &f->snap[k];
		assert_non_null(orig);
		uint8_t buf[4096];
		int fd = open(paths[i], O_RDONLY);
		assert_true(fd >= 0);
		assert_int_equal(read(fd, buf, sizeof buf), (ssize_t)orig->len);
		close(fd);
		assert_memory_equal(buf, orig->data, orig->len);
	}
}

static void test_stray_segment_files(void **state)
{
	struct fixture *f = *state;
	char p[200];
	uint8_t junk[300];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 7 + 3);
	int64_t end = f->t[f->n - 1].last + 1;

	/* garbage named inside the last segment: it becomes the tail, empties, goes */
	restore(f);
	snprintf(p, sizeof p, "%s/%020lld.log", f->logdir, (long long)f->tail_base + 1);
	put_file(p, junk, sizeof junk);
	check_full(f);
	assert_int_equal(access(p, F_OK), -1);
	/* garbage named inside a middle segment */
	restore(f);
	snprintf(p, sizeof p, "%s/%020lld.log", f->logdir, 1LL); /* inside the first segment */
	put_file(p, junk, sizeof junk);
	check_full(f);
	/* an empty segment file in the middle, and one at the end offset (a crash
	 * right after a roll created it) */
	restore(f);
	snprintf(p, sizeof p, "%s/%020lld.log", f->logdir, 2LL);
	put_file(p, junk, 0);
	snprintf(p, sizeof p, "%s/%020lld.log", f->logdir, (long long)end);
	put_file(p, junk, 0);
	check_full(f);
	/* directories and links with segment names are not segments */
	restore(f);
	snprintf(p, sizeof p, "%s/%020lld.log", f->logdir, (long long)end + 50);
	assert_int_equal(mkdir(p, 0755), 0);
	char q[200];
	snprintf(q, sizeof q, "%s/%020lld.log", f->logdir, (long long)end + 60);
	assert_int_equal(symlink(f->tail_path, q), 0);
	check_full(f);
	/* the whole tail segment is garbage: it empties, the end moves back to its base */
	restore(f);
	put_file(f->tail_path, junk, sizeof junk);
	struct log *log;
	int rc;
	char *err = open_captured(f, &log, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(err, "truncating 300 bytes at position 0"));
	free(err);
	check_prefix(f, log, f->tail_first);
	append_expect(log, f->tail_base, 5000);
	assert_int_equal(log_close(log), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean_reopen),
		cmocka_unit_test(test_cut_at_every_byte_of_last_batch),
		cmocka_unit_test(test_flipped_bytes_in_tail),
		cmocka_unit_test(test_damaged_indexes),
		cmocka_unit_test(test_stray_segment_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
