/*
 * test_log_model.c: a randomized sequence of operations on a log, checked after
 * every step against an in-memory model of what the log must hold.
 *
 * Operations: appends (1-3 batches per call, CreateTime or LogAppendTime,
 * sometimes a corrupt batch that must store nothing), reads at random offsets
 * with random max_bytes (compared byte for byte), offset-for-time lookups,
 * rolls, retention with random limits, delete_before, syncs, reopens, and torn
 * tails (the last batch cut by a "crash", then recovery). The model mirrors the
 * documented rules: when segments roll, what retention deletes, what a read
 * returns (whole batches of one segment, at least one).
 *
 * The seed is printed; SLUICE_SEED=<n> replays a run. Iterations are bounded
 * so the test runs in seconds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/diag.h"
#include "core/err.h"
#include "core/writer.h"
#include "storage/log.h"
#include "storage/record_batch.h"

#define RUNS 4
#define OPS 1500

/* xorshift64*: small, and the same sequence everywhere for a seed. */
static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

/* Uniform in [lo, hi]. */
static int64_t between(int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

struct mbatch {
	int64_t base, last, max_ts;
	size_t len;
	uint8_t *bytes;
};

struct mseg {
	int64_t base, next, size, roll_base, max_ts;
	size_t b0, b1; /* batches [b0, b1) */
};

struct model {
	struct mbatch *b;
	size_t nb, capb;
	struct mseg *s;
	size_t sh, ns, caps; /* live segments are s[sh .. ns) */
	struct log_config cfg;
	int64_t now;
};

static struct mseg *active(struct model *m)
{
	return &m->s[m->ns - 1];
}

static void push_seg(struct model *m, int64_t base)
{
	if (m->ns == m->caps) {
		m->caps = m->caps ? m->caps * 2 : 64;
		m->s = realloc(m->s, m->caps * sizeof *m->s);
	}
	m->s[m->ns++] = (struct mseg){ base, base, 0, INT64_MAX, INT64_MIN, m->nb, m->nb };
}

static int64_t m_end(struct model *m)
{
	return active(m)->next;
}

static int64_t m_start(struct model *m)
{
	return m->s[m->sh].base;
}

static void m_roll(struct model *m)
{
	if (active(m)->size > 0)
		push_seg(m, m_end(m));
}

static void m_delete_first(struct model *m)
{
	if (m->ns - m->sh == 1)
		m_roll(m);
	m->sh++;
}

static int64_t m_size(struct model *m)
{
	int64_t t = 0;
	for (size_t i = m->sh; i < m->ns; i++)
		t += m->s[i].size;
	return t;
}

/* The rule of log.c's needs_roll: age is the newest incoming timestamp (the
 * append time for LogAppendTime) minus the segment's first timestamp. */
static int m_needs_roll(struct model *m, size_t len, int64_t offsets, int64_t batch_ts)
{
	struct mseg *a = active(m);
	if (a->size == 0)
		return 0;
	if ((int64_t)len > m->cfg.segment_bytes - a->size)
		return 1;
	if (m->cfg.segment_ms >= 0 && batch_ts - a->roll_base > m->cfg.segment_ms)
		return 1;
	return a->next - a->base + offsets > (int64_t)UINT32_MAX;
}

/* Adds the batches of an appended (rewritten) buffer to the active segment. */
static void m_add(struct model *m, const uint8_t *buf, size_t len)
{
	struct record_batch_walk w;
	struct record_batch_header h;
	struct slice sl;
	size_t pos;
	record_batch_walk_init(&w, buf, len, SIZE_MAX, 1);
	while (record_batch_walk_next(&w, &h, &sl, &pos) == 1) {
		if (m->nb == m->capb) {
			m->capb = m->capb ? m->capb * 2 : 256;
			m->b = realloc(m->b, m->capb * sizeof *m->b);
		}
		struct mbatch *b = &m->b[m->nb++];
		b->base = h.base_offset;
		b->last = record_batch_last_offset(&h);
		b->max_ts = h.max_timestamp;
		b->len = sl.len;
		b->bytes = malloc(sl.len);
		memcpy(b->bytes, sl.data, sl.len);
		struct mseg *a = active(m);
		if (a->size == 0)
			a->roll_base = b->max_ts <= m->now ? b->max_ts : m->now;
		a->size += (int64_t)b->len;
		a->next = b->last + 1;
		if (b->max_ts > a->max_ts)
			a->max_ts = b->max_ts;
		a->b1 = m->nb;
	}
}

/* Index of the segment holding batch k. */
static size_t seg_of(struct model *m, size_t k)
{
	for (size_t i = m->sh; i < m->ns; i++)
		if (k >= m->s[i].b0 && k < m->s[i].b1)
			return i;
	fail_msg("batch %zu in no segment", k);
	return 0;
}

/* Index of the live batch containing offset (offsets are contiguous here). */
static size_t batch_at(struct model *m, int64_t offset)
{
	size_t lo = m->s[m->sh].b0, hi = m->nb;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->b[mid].last < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	assert_true(lo < m->nb && m->b[lo].base <= offset);
	return lo;
}

/* Checks start, end, size and segment count. */
static void check_shape(struct model *m, struct log *log)
{
	assert_int_equal(log_start_offset(log), m_start(m));
	assert_int_equal(log_end_offset(log), m_end(m));
	assert_int_equal(log_size_bytes(log), m_size(m));
	assert_int_equal(log_segment_count(log), m->ns - m->sh);
}

/* One read at offset with max_bytes, against the model. */
static void check_read(struct model *m, struct log *log, int64_t offset, int64_t max_bytes,
		       struct writer *w)
{
	struct log_read_result r;
	writer_reset(w);
	int rc = log_read_copy(log, offset, max_bytes, w, &r);
	if (offset < m_start(m) || offset > m_end(m)) {
		assert_int_equal(rc, -ERR_RANGE);
		return;
	}
	assert_int_equal(rc, 0);
	if (offset == m_end(m)) {
		assert_int_equal(r.length, 0);
		assert_int_equal(w->len, 0);
		assert_int_equal(r.next_offset, m_end(m));
		return;
	}
	size_t k = batch_at(m, offset), seg = seg_of(m, k), j = k;
	int64_t total = (int64_t)m->b[k].len;
	while (j + 1 < m->s[seg].b1 && total + (int64_t)m->b[j + 1].len <= max_bytes)
		total += (int64_t)m->b[++j].len;
	assert_int_equal(r.first_offset, m->b[k].base);
	assert_int_equal(r.next_offset, m->b[j].last + 1);
	assert_int_equal(r.length, total);
	assert_int_equal(w->len, (size_t)total);
	size_t at = 0;
	for (size_t i = k; i <= j; i++) {
		assert_memory_equal(w->buf + at, m->b[i].bytes, m->b[i].len);
		at += m->b[i].len;
	}
	/* the zero-copy form describes the same range */
	assert_int_equal(log_read(log, offset, max_bytes, &r), 0);
	assert_int_equal(r.length, total);
	assert_true(r.fd >= 0);
	log_read_result_release(&r);
}

static void check_all(struct model *m, struct log *log, struct writer *w)
{
	check_shape(m, log);
	int64_t off = m_start(m);
	while (off < m_end(m)) {
		check_read(m, log, off, 0, w);
		off = m->b[batch_at(m, off)].last + 1;
	}
	check_read(m, log, m_end(m), 100, w);
}

/* A buffer of nb producer batches; returns its length. */
static uint8_t *make_batches(struct model *m, int nb, size_t *len)
{
	struct writer w;
	writer_init(&w, 1 << 22);
	static uint8_t val[400];
	for (int b = 0; b < nb; b++) {
		struct record_batch_rec recs[5];
		int n = (int)between(1, 5);
		for (int i = 0; i < n; i++) {
			memset(&recs[i], 0, sizeof recs[i]);
			recs[i].offset_delta = i;
			recs[i].timestamp_delta = between(0, 5);
			size_t vlen = (size_t)between(0, 300);
			for (size_t k = 0; k < vlen; k++)
				val[k] = (uint8_t)rnd();
			recs[i].value = (struct slice){ val, vlen };
			if (rnd() % 4 == 0)
				recs[i].key = (struct slice){ (const uint8_t *)"key", 3 };
		}
		struct record_batch_params p;
		record_batch_params_init(&p);
		p.base_timestamp = m->now - between(10, 5000);
		assert_int_equal(record_batch_encode(&w, &p, recs, (size_t)n), 0);
	}
	return writer_take(&w, len);
}

static void op_append(struct model *m, struct log *log)
{
	size_t len;
	int nb = (int)between(1, 3);
	uint8_t *buf = make_batches(m, nb, &len);
	struct record_batch_set_info info;
	assert_int_equal(record_batch_validate_all(buf, len, SIZE_MAX, &info), 0);
	int lat = rnd() % 5 == 0;
	struct log_append_result res;
	if (rnd() % 20 == 0) {
		/* a corrupt last batch: nothing is stored */
		buf[len - 1] ^= 0x20;
		assert_int_equal(log_append(log, buf, len, m->now, lat, &res), -ERR_CORRUPT);
		free(buf);
		return;
	}
	int64_t batch_ts = lat || info.max_timestamp < 0 ? m->now : info.max_timestamp;
	if (m_needs_roll(m, len, info.offsets, batch_ts))
		m_roll(m);
	int64_t end = m_end(m);
	assert_int_equal(log_append(log, buf, len, m->now, lat, &res), 0);
	assert_int_equal(res.base_offset, end);
	assert_int_equal(res.last_offset, end + info.offsets - 1);
	assert_int_equal(res.log_append_time, lat ? m->now : -1);
	m_add(m, buf, len);
	free(buf);
}

static void op_offset_for_time(struct model *m, struct log *log)
{
	int64_t ts = m->now - between(-100, 30000);
	int64_t want = m_end(m), got = -1;
	for (size_t k = m->s[m->sh].b0; k < m->nb; k++) {
		if (m->b[k].max_ts >= ts) {
			want = m->b[k].base;
			break;
		}
	}
	assert_int_equal(log_offset_for_time(log, ts, &got), 0);
	assert_int_equal(got, want);
}

static void op_retention(struct model *m, struct log *log)
{
	m->cfg.retention_ms = rnd() % 3 == 0 ? -1 : between(1000, 40000);
	m->cfg.retention_bytes = rnd() % 3 == 0 ? -1 : between(0, 30000);
	assert_int_equal(log_set_config(log, &m->cfg), 0);
	int want = 0, got = -1;
	if (m->cfg.retention_ms >= 0) {
		while (m->s[m->sh].size > 0 && m->now - m->s[m->sh].max_ts > m->cfg.retention_ms) {
			m_delete_first(m);
			want++;
		}
	}
	if (m->cfg.retention_bytes >= 0) {
		int64_t total = m_size(m);
		while (m->ns - m->sh > 1 && total - m->s[m->sh].size >= m->cfg.retention_bytes) {
			total -= m->s[m->sh].size;
			m_delete_first(m);
			want++;
		}
	}
	assert_int_equal(log_retention_apply(log, m->now, &got), 0);
	assert_int_equal(got, want);
}

static void op_delete_before(struct model *m, struct log *log)
{
	int64_t off = between(m_start(m), m_end(m) + 3);
	int want = 0, got = -1;
	while (m->s[m->sh].size > 0 && m->s[m->sh].next <= off) {
		m_delete_first(m);
		want++;
	}
	assert_int_equal(log_delete_before(log, off, &got), 0);
	assert_int_equal(got, want);
}

static struct log *reopen(struct model *m, struct log *log, const char *dir)
{
	assert_int_equal(log_close(log), 0);
	assert_int_equal(log_open(dir, &m->cfg, m->now, &log), 0);
	return log;
}

/* Cuts the last batch of the active segment somewhere inside, as a crash would. */
static struct log *op_torn_tail(struct model *m, struct log *log, const char *dir)
{
	struct mseg *a = active(m);
	if (a->size == 0)
		return log;
	assert_int_equal(log_close(log), 0);
	struct mbatch *last = &m->b[m->nb - 1];
	int64_t from = a->size - (int64_t)last->len;
	int64_t cut = between(from, a->size - 1);
	char path[256];
	snprintf(path, sizeof path, "%s/%020" PRId64 ".log", dir, a->base);
	assert_int_equal(truncate(path, (off_t)cut), 0);
	a->size = from;
	a->next = last->base;
	a->b1--;
	free(last->bytes);
	m->nb--;
	a->max_ts = INT64_MIN;
	for (size_t k = a->b0; k < a->b1; k++)
		if (m->b[k].max_ts > a->max_ts)
			a->max_ts = m->b[k].max_ts;
	if (a->size == 0)
		a->roll_base = INT64_MAX;
	assert_int_equal(log_open(dir, &m->cfg, m->now, &log), 0);
	return log;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void run_model(uint64_t seed, int run)
{
	rng = seed * 0x9E3779B97F4A7C15ULL + (uint64_t)run + 1;
	char dir[64];
	strcpy(dir, "/tmp/sluice-model-XXXXXX");
	assert_non_null(mkdtemp(dir));
	struct model m = { 0 };
	log_config_defaults(&m.cfg);
	m.cfg.segment_bytes = between(400, 6000);
	m.cfg.segment_ms = rnd() % 2 ? -1 : between(2000, 30000);
	int64_t intervals[] = { 0, 64, 300, 4096 };
	m.cfg.index_interval_bytes = intervals[rnd() % 4];
	m.cfg.retention_ms = -1;
	m.cfg.retention_bytes = -1;
	m.now = 1700000000000LL;
	push_seg(&m, 0);
	struct log *log;
	assert_int_equal(log_open(dir, &m.cfg, m.now, &log), 0);
	struct writer w;
	writer_init(&w, 1 << 24);
	int counts[10] = { 0 };

	for (int op = 0; op < OPS; op++) {
		m.now += between(0, 400);
		int r = (int)(rnd() % 100);
		if (r < 45) {
			op_append(&m, log);
			counts[0]++;
		} else if (r < 65) {
			int64_t off = between(m_start(&m) - 2, m_end(&m) + 2);
			int64_t maxes[] = { 0, 1, 100, 700, 3000, 1 << 20 };
			check_read(&m, log, off, maxes[rnd() % 6], &w);
			counts[1]++;
		} else if (r < 71) {
			op_offset_for_time(&m, log);
			counts[2]++;
		} else if (r < 75) {
			assert_int_equal(log_roll(log, m.now), 0);
			m_roll(&m);
			counts[3]++;
		} else if (r < 81) {
			op_retention(&m, log);
			counts[4]++;
		} else if (r < 86) {
			op_delete_before(&m, log);
			counts[5]++;
		} else if (r < 90) {
			log = reopen(&m, log, dir);
			counts[6]++;
		} else if (r < 93) {
			log = op_torn_tail(&m, log, dir);
			counts[7]++;
		} else if (r < 95) {
			assert_int_equal(log_sync(log), 0);
			counts[8]++;
		} else {
			m.now += between(0, 20000); /* time passes: segments age */
			counts[9]++;
		}
		check_shape(&m, log);
		if (op % 100 == 99)
			check_all(&m, log, &w);
	}
	check_all(&m, log, &w);
	log = reopen(&m, log, dir);
	check_all(&m, log, &w);
	printf("run %d: segment_bytes %" PRId64 " segment_ms %" PRId64 " interval %" PRId64
	       ": %d appends %d reads %d time %d rolls %d retention %d delete_before %d reopen"
	       " %d torn %d sync; end %" PRId64 ", %zu segments\n",
	       run, m.cfg.segment_bytes, m.cfg.segment_ms, m.cfg.index_interval_bytes, counts[0],
	       counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7], counts[8],
	       m_end(&m), m.ns - m.sh);
	assert_int_equal(log_close(log), 0);
	writer_fini(&w);
	for (size_t k = 0; k < m.nb; k++)
		free(m.b[k].bytes);
	free(m.b);
	free(m.s);
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_model(void **state)
{
	(void)state;
	uint64_t seed;
	const char *env = getenv("SLUICE_SEED");
	if (env && *env)
		seed = strtoull(env, NULL, 0);
	else
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	printf("test_log_model seed %" PRIu64 " (replay: SLUICE_SEED=%" PRIu64 ")\n", seed, seed);
	fflush(stdout);
	/* torn tails and retention print diagnostics on purpose */
	diag_set_level(DIAG_ERROR);
	for (int run = 0; run < RUNS; run++)
		run_model(seed, run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
