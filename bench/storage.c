/*
 * bench/storage.c: append throughput of the storage log under each durability
 * policy (bench_storage; run by bench/run-storage.sh, which measures the raw
 * disk in the same run and prints the ratios; see docs/benchmarks.md).
 *
 * Each case appends 1 KiB records in batches (16 records per batch by default,
 * encoded once with record_batch_encode and re-appended: log_append rewrites
 * only the base offset, and validates the CRC each time as in production) to
 * logs in a fresh directory under --dir, with one shared flusher:
 *
 *   os          1 appender,  log.flush = os;        ends with log_sync
 *   interval    1 appender,  log.flush = interval (1000 ms); ends with log_sync
 *   batch       1 appender,  log.flush = batch, waits for each sync callback
 *   batch8      8 appenders, each its own log, one shared flusher, each waits
 *               for its sync callback before the next append (acks=all producers)
 *   batch8-nowait  the same 8 logs without waiting: every batch asks for a sync,
 *               the callbacks are only counted, and the clock stops when all came
 *
 * os, interval and batch8-nowait write --mb MB in total (as dd/fio do, final
 * fdatasync included; or stop after --max-seconds on a slow disk); batch and
 * batch8 run for --seconds. Output: one line
 * "RESULT case=... mbps=..." per case, MB = 10^6 bytes, for the script to parse.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/writer.h"
#include "storage/flusher.h"
#include "storage/log.h"
#include "storage/record_batch.h"

#define MAX_THREADS 64
#define DRAIN_WAIT_S 120 /* bound on waiting for outstanding callbacks */

struct options {
	const char *dir;
	const char *only;      /* run just this case, or NULL for all */
	int64_t total_mb;      /* bytes-bounded cases */
	double seconds;        /* time-bounded cases */
	double max_seconds;    /* cap on bytes-bounded cases (a slow disk) */
	int records;           /* records per batch */
	int record_bytes;      /* value bytes per record */
	int threads;           /* appenders of the batch8 cases */
	int64_t interval_ms;
};

/* A completion an appender waits on (wait mode) or counts (no-wait mode). */
struct acks {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int64_t done;
	int errors;
};

static void acks_done(void *arg, int status)
{
	struct acks *a = arg;
	pthread_mutex_lock(&a->mu);
	a->done++;
	if (status != 0)
		a->errors++;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->mu);
}

/* Waits until at least n acks arrived or the bound passed; returns 0 or -ETIMEDOUT. */
static int acks_wait(struct acks *a, int64_t n, int bound_s)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += bound_s;
	int rc = 0;
	pthread_mutex_lock(&a->mu);
	while (a->done < n && rc == 0)
		rc = pthread_cond_timedwait(&a->cond, &a->mu, &ts);
	bool ok = a->done >= n;
	pthread_mutex_unlock(&a->mu);
	return ok ? 0 : -ETIMEDOUT;
}

struct appender {
	struct log *log;
	struct flusher *fl;
	uint8_t *batch;        /* owned: one encoded batch, re-appended */
	size_t batch_len;
	bool wait;             /* wait for each sync callback */
	bool final_sync;       /* log_sync at the end (os, interval) */
	int64_t bytes_target;  /* stop after this many bytes (0: at the deadline only) */
	int64_t deadline_ns;   /* stop at this time in any case */
	struct acks acks;
	pthread_mutex_t *log_lock; /* shared-log case: appenders take turns, as the
				    * partition's owner loop serializes producers */
	int64_t bytes;         /* result */
	int64_t appends;       /* result */
	int err;               /* result: first error */
	pthread_t thread;
};

static void *appender_main(void *p)
{
	struct appender *a = p;
	int64_t issued = 0;
	for (;;) {
		if ((a->bytes_target > 0 && a->bytes >= a->bytes_target) ||
		    clock_mono_ns() >= a->deadline_ns)
			break;
		struct log_append_result res;
		if (a->log_lock)
			pthread_mutex_lock(a->log_lock);
		int rc = log_append(a->log, a->batch, a->batch_len, clock_now_ms(), 0, &res);
		if (rc == 0)
			rc = flusher_sync(a->fl, res.file, acks_done, &a->acks);
		if (a->log_lock)
			pthread_mutex_unlock(a->log_lock);
		if (rc != 0) {
			a->err = rc;
			break;
		}
		issued++;
		a->appends++;
		a->bytes += (int64_t)a->batch_len;
		if (a->wait && acks_wait(&a->acks, issued, DRAIN_WAIT_S) != 0) {
			a->err = -ETIMEDOUT;
			break;
		}
	}
	if (a->err == 0 && acks_wait(&a->acks, issued, DRAIN_WAIT_S) != 0)
		a->err = -ETIMEDOUT;
	if (a->err == 0 && a->final_sync && !a->log_lock)
		a->err = log_sync(a->log);
	if (a->err == 0 && a->acks.errors > 0)
		a->err = -ERR_IO;
	return NULL;
}

/* Encodes one batch of n records of size bytes each (values pseudo-random). */
static int encode_batch(int n, int size, uint8_t **out, size_t *len)
{
	uint8_t *values = malloc((size_t)n * (size_t)size);
	struct record_batch_rec *recs = calloc((size_t)n, sizeof *recs);
	if (!values || !recs) {
		free(values);
		free(recs);
		return -ERR_NOMEM;
	}
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < (size_t)n * (size_t)size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		values[i] = (uint8_t)x;
	}
	for (int i = 0; i < n; i++) {
		recs[i].offset_delta = i;
		recs[i].value = (struct slice){ values + (size_t)i * (size_t)size, (size_t)size };
	}
	struct record_batch_params params;
	record_batch_params_init(&params);
	params.base_timestamp = clock_now_ms();
	struct writer w;
	writer_init(&w, (size_t)64 << 20);
	int rc = record_batch_encode(&w, &params, recs, (size_t)n);
	if (rc == 0)
		*out = writer_take(&w, len);
	writer_fini(&w);
	free(values);
	free(recs);
	return rc;
}

struct case_def {
	const char *name;
	enum config_flush policy;
	int threads;      /* 0: opts->threads */
	bool wait;
	bool bytes_bounded;
	bool shared;      /* every appender writes the same log */
};

static const struct case_def cases[] = {
	{ "os", CONFIG_FLUSH_OS, 1, false, true, false },
	{ "interval", CONFIG_FLUSH_INTERVAL, 1, false, true, false },
	{ "batch", CONFIG_FLUSH_BATCH, 1, true, false, false },
	{ "batch8", CONFIG_FLUSH_BATCH, 0, true, false, false },
	{ "batch8-nowait", CONFIG_FLUSH_BATCH, 0, false, true, false },
	{ "batch8-shared", CONFIG_FLUSH_BATCH, 0, true, false, true },
};

static int run_case(const struct options *o, const struct case_def *c)
{
	int nthreads = c->threads ? c->threads : o->threads;
	struct appender *apps = calloc((size_t)nthreads, sizeof *apps);
	struct flusher *fl = NULL;
	char dir[4096];
	int rc = apps ? 0 : -ERR_NOMEM;
	int opened = 0;
	pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
	if (rc == 0)
		rc = flusher_new(c->policy, o->interval_ms, &fl);
	struct log_config cfg;
	log_config_defaults(&cfg);
	for (int i = 0; rc == 0 && i < nthreads; i++) {
		struct appender *a = &apps[i];
		snprintf(dir, sizeof dir, "%s/%s-%d", o->dir, c->name, i);
		if (c->shared && i > 0) {
			a->log = apps[0].log;
		} else {
			rc = log_open(dir, &cfg, clock_now_ms(), &a->log);
			if (rc != 0)
				break;
			opened++;
		}
		if (c->shared)
			a->log_lock = &log_lock;
		rc = encode_batch(o->records, o->record_bytes, &a->batch, &a->batch_len);
		a->fl = fl;
		a->wait = c->wait;
		a->final_sync = c->policy != CONFIG_FLUSH_BATCH;
		a->bytes_target = c->bytes_bounded ? o->total_mb * 1000000 / nthreads : 0;
		pthread_mutex_init(&a->acks.mu, NULL);
		pthread_cond_init(&a->acks.cond, NULL);
	}
	if (rc != 0) {
		fprintf(stderr, "bench_storage: %s: setup failed: %s\n", c->name, err_str(rc));
		goto out;
	}

	int64_t t0 = clock_mono_ns();
	for (int i = 0; i < nthreads; i++) {
		double limit = c->bytes_bounded ? o->max_seconds : o->seconds;
		apps[i].deadline_ns = t0 + (int64_t)(limit * 1e9);
		if (pthread_create(&apps[i].thread, NULL, appender_main, &apps[i]) != 0) {
			apps[i].err = -ERR_NOMEM;
			apps[i].thread = pthread_self();
		}
	}
	int64_t bytes = 0, appends = 0;
	for (int i = 0; i < nthreads; i++) {
		if (!pthread_equal(apps[i].thread, pthread_self()))
			pthread_join(apps[i].thread, NULL);
		bytes += apps[i].bytes;
		appends += apps[i].appends;
		if (apps[i].err && rc == 0)
			rc = apps[i].err;
	}
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	if (rc != 0) {
		fprintf(stderr, "bench_storage: %s: %s\n", c->name, err_str(rc));
		goto out;
	}
	printf("RESULT case=%s threads=%d batch_bytes=%zu records=%d record_bytes=%d "
	       "bytes=%lld appends=%lld fsyncs=%llu seconds=%.3f mbps=%.1f\n",
	       c->name, nthreads, apps[0].batch_len, o->records, o->record_bytes,
	       (long long)bytes, (long long)appends,
	       (unsigned long long)flusher_fsync_count(fl), secs, (double)bytes / 1e6 / secs);
	fflush(stdout);
out:
	flusher_free(fl); /* before the logs: it holds their files */
	for (int i = 0; i < opened; i++) {
		int drc = log_delete(apps[i].log);
		if (drc != 0)
			fprintf(stderr, "bench_storage: delete log: %s\n", err_str(drc));
	}
	for (int i = 0; apps && i < nthreads; i++) {
		pthread_mutex_destroy(&apps[i].acks.mu);
		pthread_cond_destroy(&apps[i].acks.cond);
		free(apps[i].batch);
	}
	free(apps);
	return rc;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_storage --dir DIR [--case os|interval|batch|batch8|batch8-nowait|batch8-shared]\n"
		"       [--mb 1024] [--max-seconds 20] [--seconds 5] [--records 16] [--record-bytes 1024]\n"
		"       [--threads 8] [--interval-ms 1000] | --batch-bytes\n"
		"  --batch-bytes prints the size of one encoded batch and exits.\n");
}

int main(int argc, char **argv)
{
	struct options o = { NULL, NULL, 1024, 5.0, 20.0, 16, 1024, 8, 1000 };
	bool batch_bytes = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--batch-bytes") == 0) {
			batch_bytes = true;
			continue;
		}
		if (!v) {
			usage();
			return 2;
		}
		i++;
		if (strcmp(a, "--dir") == 0)
			o.dir = v;
		else if (strcmp(a, "--case") == 0)
			o.only = v;
		else if (strcmp(a, "--mb") == 0)
			o.total_mb = atoll(v);
		else if (strcmp(a, "--seconds") == 0)
			o.seconds = atof(v);
		else if (strcmp(a, "--max-seconds") == 0)
			o.max_seconds = atof(v);
		else if (strcmp(a, "--records") == 0)
			o.records = atoi(v);
		else if (strcmp(a, "--record-bytes") == 0)
			o.record_bytes = atoi(v);
		else if (strcmp(a, "--threads") == 0)
			o.threads = atoi(v);
		else if (strcmp(a, "--interval-ms") == 0)
			o.interval_ms = atoll(v);
		else {
			usage();
			return 2;
		}
	}
	if (o.total_mb < 1 || o.seconds <= 0 || o.seconds > 3600 || o.max_seconds <= 0 ||
	    o.max_seconds > 3600 || o.records < 1 ||
	    o.records > 100000 || o.record_bytes < 0 || o.record_bytes > (1 << 20) ||
	    o.threads < 1 || o.threads > MAX_THREADS || o.interval_ms < 1) {
		usage();
		return 2;
	}
	if (batch_bytes) {
		uint8_t *b;
		size_t len;
		int rc = encode_batch(o.records, o.record_bytes, &b, &len);
		if (rc != 0) {
			fprintf(stderr, "bench_storage: encode: %s\n", err_str(rc));
			return 1;
		}
		printf("%zu\n", len);
		free(b);
		return 0;
	}
	if (!o.dir) {
		usage();
		return 2;
	}
	diag_set_level(DIAG_WARN);
	int ran = 0, failed = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (o.only && strcmp(o.only, cases[i].name) != 0)
			continue;
		ran++;
		if (run_case(&o, &cases[i]) != 0)
			failed++;
	}
	if (ran == 0) {
		fprintf(stderr, "bench_storage: no case named %s\n", o.only);
		return 2;
	}
	return failed ? 1 : 0;
}
