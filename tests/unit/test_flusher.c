/*
 * test_flusher.c: the durability thread: callbacks exactly once per request in
 * every policy, group commit under concurrent appenders, interval fsync timing,
 * drain on free, refcounted fds, -ERR_CLOSED during shutdown and sticky fsync
 * errors (through the flusher_set_fsync_fn seam and through a real failing fd).
 *
 * cmocka's asserts longjmp, so worker threads and callbacks only record what
 * they saw (atomics, counters under a mutex); the main thread asserts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "storage/flusher.h"

#define WAIT_MS 20000 /* upper bound of every wait; generous for sanitizers */

/* ---- temp dir and files ---- */

static char tmpdir[256];

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/sluice-flusher-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static int open_tmp(const char *name)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	return fd;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

/* ---- a request record: counts calls and keeps the status ---- */

struct req {
	atomic_int calls;
	atomic_int status;
	pthread_t caller; /* set before flusher_sync */
	atomic_int in_caller; /* 1 if done ran in the caller's thread */
	atomic_int seq;       /* order among all callbacks */
};

static atomic_int callback_seq;

static void req_done(void *arg, int status)
{
	struct req *r = arg;
	atomic_store(&r->seq, atomic_fetch_add(&callback_seq, 1));
	atomic_store(&r->status, status);
	atomic_store(&r->in_caller, pthread_equal(pthread_self(), r->caller) ? 1 : 0);
	atomic_fetch_add(&r->calls, 1);
}

/* ---- a waitable completion for appenders that wait for their ack ---- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done;
	int status;
};

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->done = 0;
	w->status = 0;
}

static void waiter_done(void *arg, int status)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->done++;
	w->status = status;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

/* Waits (bounded) until done reaches n; returns 0 or -ETIMEDOUT. */
static int waiter_wait(struct waiter *w, int n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	int rc = 0;
	pthread_mutex_lock(&w->mu);
	while (w->done < n && rc == 0)
		rc = pthread_cond_timedwait(&w->cond, &w->mu, &ts);
	int ok = w->done >= n;
	pthread_mutex_unlock(&w->mu);
	return ok ? 0 : -ETIMEDOUT;
}

static void waiter_fini(struct waiter *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cond);
}

/* ---- the fsync seam: counts, delays, fails or blocks chosen fds ---- */

struct seam {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int calls;          /* all fsyncs */
	int fd_calls[64];   /* fsyncs per fd number (fds stay small in this test) */
	int fail_fd;        /* this fd fails with fail_err... */
	int fail_err;
	int fail_times;     /* ...this many times (then succeeds) */
	int block_fd;       /* fsync of this fd blocks while blocked is set */
	bool blocked;
	bool in_block;      /* the flusher thread is waiting in the block */
	int delay_us;       /* every fsync sleeps this long (a slow disk) */
	int inflight;       /* fsyncs running now */
	int max_inflight;   /* most fsyncs seen running at once */
	bool real;          /* also call fdatasync */
};

static void seam_init(struct seam *s)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->fail_fd = -1;
	s->block_fd = -1;
}

static void seam_fini(struct seam *s)
{
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
}

static int seam_fsync(void *arg, int fd)
{
	struct seam *s = arg;
	pthread_mutex_lock(&s->mu);
	s->calls++;
	if (fd >= 0 && fd < 64)
		s->fd_calls[fd]++;
	if (fd == s->block_fd) {
		s->in_block = true;
		pthread_cond_broadcast(&s->cond);
		while (s->blocked)
			pthread_cond_wait(&s->cond, &s->mu);
		s->in_block = false;
	}
	int fail = 0;
	if (fd == s->fail_fd && s->fail_times > 0) {
		s->fail_times--;
		fail = s->fail_err;
	}
	int delay = s->delay_us;
	bool real = s->real;
	if (++s->inflight > s->max_inflight)
		s->max_inflight = s->inflight;
	pthread_mutex_unlock(&s->mu);
	if (delay > 0) {
		struct timespec ts = { 0, (long)delay * 1000 };
		nanosleep(&ts, NULL);
	}
	int rc = 0;
	if (fail)
		rc = -fail;
	else if (real && fdatasync(fd) != 0)
		rc = -errno;
	pthread_mutex_lock(&s->mu);
	s->inflight--;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int seam_fd_calls(struct seam *s, int fd)
{
	pthread_mutex_lock(&s->mu);
	int n = s->fd_calls[fd];
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* Waits (bounded) until the flusher thread sits in the blocking fsync. */
static void seam_wait_in_block(struct seam *s)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&s->mu);
	int rc = 0;
	while (!s->in_block && rc == 0)
		rc = pthread_cond_timedwait(&s->cond, &s->mu, &ts);
	bool in = s->in_block;
	pthread_mutex_unlock(&s->mu);
	assert_true(in);
}

static void seam_release(struct seam *s)
{
	pthread_mutex_lock(&s->mu);
	s->blocked = false;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

/* ---- tests ---- */

/* The fd stays open while any reference remains, and closes at the last one. */
static void test_file_refcount(void **state)
{
	(void)state;
	int fd = open_tmp("ref");
	struct flusher_file *f = flusher_file_new(fd);
	assert_non_null(f);
	assert_int_equal(flusher_file_fd(f), fd);
	assert_int_equal(flusher_file_error(f), 0);
	assert_ptr_equal(flusher_file_ref(f), f); /* the flusher's reference */
	flusher_file_unref(f);                     /* the owner lets go */
	assert_true(fd_is_open(fd));
	assert_int_equal(write(fd, "abc", 3), 3);
	flusher_file_unref(f);
	assert_false(fd_is_open(fd));
	assert_int_equal(errno, EBADF);
	flusher_file_unref(NULL); /* harmless */
}

/*
 * INTERVAL holds a reference on dirty files: the owner may unref (a log closing
 * a rolled segment) and the fd stays open until the flusher fsynced it at free.
 */
static void test_flusher_keeps_fd_open(void **state)
{
	(void)state;
	struct seam s;
	seam_init(&s);
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_INTERVAL, FLUSHER_INTERVAL_MAX_MS, &fl), 0);
	flusher_set_fsync_fn(fl, seam_fsync, &s);
	int fd = open_tmp("keep");
	struct flusher_file *f = flusher_file_new(fd);
	assert_int_equal(write(fd, "x", 1), 1);
	struct req r = { .caller = pthread_self() };
	assert_int_equal(flusher_sync(fl, f, req_done, &r), 0);
	flusher_file_unref(f);
	assert_true(fd_is_open(fd));
	flusher_free(fl); /* fsyncs the dirty file, drops the last reference */
	assert_int_equal(seam_fd_calls(&s, fd), 1);
	assert_false(fd_is_open(fd));
	assert_int_equal(atomic_load(&r.calls), 1);
	seam_fini(&s);
}

/* Every accepted request's callback runs exactly once with status 0, per policy. */
static void callbacks_once(enum config_flush policy)
{
	enum { NREQ = 300 };
	struct flusher *fl;
	assert_int_equal(flusher_new(policy, 20, &fl), 0);
	assert_int_equal(flusher_policy(fl), policy);
	struct flusher_file *files[3];
	for (int i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof name, "once-%d-%d", (int)policy, i);
		files[i] = flusher_file_new(open_tmp(name));
		assert_non_null(files[i]);
	}
	struct req *reqs = calloc(NREQ, sizeof *reqs);
	assert_non_null(reqs);
	for (int i = 0; i < NREQ; i++) {
		struct flusher_file *f = files[i % 3];
		assert_int_equal(write(flusher_file_fd(f), "record\n", 7), 7);
		reqs[i].caller = pthread_self();
		assert_int_equal(flusher_sync(fl, f, req_done, &reqs[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		flusher_file_unref(files[i]); /* the flusher holds its own references */
	uint64_t fsyncs_before_free = flusher_fsync_count(fl);
	flusher_free(fl);
	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(atomic_load(&reqs[i].calls), 1);
		assert_int_equal(atomic_load(&reqs[i].status), 0);
		/* BATCH calls back on the flusher thread, the others in the caller. */
		assert_int_equal(atomic_load(&reqs[i].in_caller), policy == CONFIG_FLUSH_BATCH ? 0 : 1);
	}
	if (policy == CONFIG_FLUSH_OS)
		assert_int_equal(fsyncs_before_free, 0);
	free(reqs);
}

static void test_callbacks_once_batch(void **state)
{
	(void)state;
	callbacks_once(CONFIG_FLUSH_BATCH);
}

static void test_callbacks_once_interval(void **state)
{
	(void)state;
	callbacks_once(CONFIG_FLUSH_INTERVAL);
}

static void test_callbacks_once_os(void **state)
{
	(void)state;
	callbacks_once(CONFIG_FLUSH_OS);
}

static void test_new_rejects_bad_arguments(void **state)
{
	(void)state;
	struct flusher *fl = (struct flusher *)1;
	assert_int_equal(flusher_new(CONFIG_FLUSH_INTERVAL, 0, &fl), -ERR_INVALID);
	assert_null(fl);
	assert_int_equal(flusher_new(CONFIG_FLUSH_INTERVAL, -5, &fl), -ERR_INVALID);
	assert_int_equal(flusher_new(CONFIG_FLUSH_INTERVAL, FLUSHER_INTERVAL_MAX_MS + 1, &fl),
			 -ERR_INVALID);
	assert_int_equal(flusher_new((enum config_flush)42, 10, &fl), -ERR_INVALID);
	/* BATCH and OS ignore the interval. */
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &fl), 0);
	flusher_free(fl);
	assert_int_equal(flusher_new(CONFIG_FLUSH_OS, 0, &fl), 0);
	flusher_free(fl);
	flusher_free(NULL);
}

/* ---- group commit: 8 appenders each waiting for their ack ---- */

enum { GC_THREADS = 8, GC_ROUNDS = 200, GC_RECORD = 1024 };

struct appender {
	struct flusher *fl;
	struct flusher_file *f;
	atomic_int *failures;
};

static void *appender_main(void *p)
{
	struct appender *a = p;
	struct waiter w;
	waiter_init(&w);
	char rec[GC_RECORD];
	memset(rec, 'r', sizeof rec);
	for (int i = 0; i < GC_ROUNDS; i++) {
		/* O_APPEND: each write lands whole at the end, like a log append. */
		if (write(flusher_file_fd(a->f), rec, sizeof rec) != (ssize_t)sizeof rec ||
		    flusher_sync(a->fl, a->f, waiter_done, &w) != 0 ||
		    waiter_wait(&w, i + 1) != 0 || w.status != 0) {
			atomic_fetch_add(a->failures, 1);
			break;
		}
	}
	waiter_fini(&w);
	return NULL;
}

/* Runs the 8-appender workload; returns the number of fsyncs it took. */
static uint64_t group_commit_run(struct seam *s, const char *name)
{
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &fl), 0);
	if (s)
		flusher_set_fsync_fn(fl, seam_fsync, s);
	int fd = open_tmp(name);
	struct flusher_file *f = flusher_file_new(fd);
	atomic_int failures = 0;
	pthread_t th[GC_THREADS];
	struct appender a = { fl, f, &failures };
	for (int i = 0; i < GC_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, appender_main, &a), 0);
	for (int i = 0; i < GC_THREADS; i++)
		pthread_join(th[i], NULL);
	uint64_t fsyncs = flusher_fsync_count(fl);
	flusher_free(fl);
	assert_int_equal(atomic_load(&failures), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, (off_t)GC_THREADS * GC_ROUNDS * GC_RECORD);
	flusher_file_unref(f);
	return fsyncs;
}

/* Real fdatasync on a real file: concurrent appenders share fsyncs. */
static void test_group_commit_real_disk(void **state)
{
	(void)state;
	uint64_t fsyncs = group_commit_run(NULL, "gc-real");
	unsigned requests = GC_THREADS * GC_ROUNDS;
	print_message("group commit (disk): %u requests, %llu fsyncs\n", requests,
		      (unsigned long long)fsyncs);
	assert_true(fsyncs >= 1);
	assert_true(fsyncs < requests / 2);
}

/* A slow disk (1 ms per fsync): rounds must hold many requests. */
static void test_group_commit_slow_disk(void **state)
{
	(void)state;
	struct seam s;
	seam_init(&s);
	s.delay_us = 1000;
	uint64_t fsyncs = group_commit_run(&s, "gc-slow");
	unsigned requests = GC_THREADS * GC_ROUNDS;
	print_message("group commit (1 ms fsync): %u requests, %llu fsyncs\n", requests,
		      (unsigned long long)fsyncs);
	assert_int_equal((uint64_t)s.calls, fsyncs);
	assert_true(fsyncs < requests / 3);
	seam_fini(&s);
}

/* ---- INTERVAL timing ---- */

static uint64_t wait_fsyncs(struct flusher *fl, uint64_t n)
{
	int64_t deadline = clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
	while (flusher_fsync_count(fl) < n && clock_mono_ns() < deadline) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return flusher_fsync_count(fl);
}

static void test_interval_fsyncs_within_bound(void **state)
{
	(void)state;
	enum { INTERVAL_MS = 50, SLACK_MS = 1000 };
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_INTERVAL, INTERVAL_MS, &fl), 0);
	struct flusher_file *f = flusher_file_new(open_tmp("interval"));

	struct timespec idle = { 0, 3 * INTERVAL_MS * 1000000L };
	assert_int_equal(write(flusher_file_fd(f), "a", 1), 1);
	struct req r = { .caller = pthread_self() };
	int64_t t0 = clock_mono_ns();
	assert_int_equal(flusher_sync(fl, f, req_done, &r), 0);
	/* The callback already ran, in this thread. */
	assert_int_equal(atomic_load(&r.calls), 1);
	assert_int_equal(atomic_load(&r.in_caller), 1);
	assert_int_equal(wait_fsyncs(fl, 1), 1);
	int64_t ms = (clock_mono_ns() - t0) / 1000000;
	print_message("interval %d ms: first fsync after %lld ms\n", INTERVAL_MS, (long long)ms);
	assert_true(ms <= INTERVAL_MS + SLACK_MS);

	/* Clean again: no fsync however long we wait. */
	nanosleep(&idle, NULL);
	assert_int_equal(flusher_fsync_count(fl), 1);

	/* Many syncs of one file within a round cost one fsync, not one each. */
	struct req rs[100];
	memset(rs, 0, sizeof rs);
	for (int i = 0; i < 100; i++) {
		rs[i].caller = pthread_self();
		assert_int_equal(flusher_sync(fl, f, req_done, &rs[i]), 0);
		assert_int_equal(atomic_load(&rs[i].calls), 1);
	}
	assert_true(wait_fsyncs(fl, 2) >= 2);
	nanosleep(&idle, NULL);
	assert_true(flusher_fsync_count(fl) <= 3);
	uint64_t settled = flusher_fsync_count(fl);
	nanosleep(&idle, NULL);
	assert_int_equal(flusher_fsync_count(fl), settled); /* clean again: no more fsyncs */

	flusher_file_unref(f);
	flusher_free(fl);
}

/*
 * INTERVAL: a file written again while its fsync runs is fsynced once more
 * after it (never twice at once), even if the tick came during that fsync.
 */
static void test_interval_write_during_fsync(void **state)
{
	(void)state;
	struct seam s;
	seam_init(&s);
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_INTERVAL, 10, &fl), 0);
	flusher_set_fsync_fn(fl, seam_fsync, &s);
	int fd = open_tmp("iresync");
	struct flusher_file *f = flusher_file_new(fd);
	s.block_fd = fd;
	s.blocked = true;
	struct req r1 = { .caller = pthread_self() }, r2 = { .caller = pthread_self() };
	assert_int_equal(flusher_sync(fl, f, req_done, &r1), 0);
	seam_wait_in_block(&s); /* the first tick's fsync is running */
	assert_int_equal(write(fd, "b", 1), 1);
	assert_int_equal(flusher_sync(fl, f, req_done, &r2), 0);
	struct timespec ticks = { 0, 50 * 1000000L }; /* several ticks pass meanwhile */
	nanosleep(&ticks, NULL);
	assert_int_equal(seam_fd_calls(&s, fd), 1);
	seam_release(&s);
	assert_int_equal(wait_fsyncs(fl, 2), 2);
	nanosleep(&ticks, NULL);
	assert_int_equal(seam_fd_calls(&s, fd), 2); /* once more, not once per tick */
	assert_int_equal(s.max_inflight, 1);
	flusher_file_unref(f);
	flusher_free(fl);
	seam_fini(&s);
}

/* ---- free drains pending requests ---- */

static void test_free_drains_pending_batch(void **state)
{
	(void)state;
	enum { NREQ = 120 };
	struct seam s;
	seam_init(&s);
	s.delay_us = 2000; /* the queue is still full when free starts */
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &fl), 0);
	flusher_set_fsync_fn(fl, seam_fsync, &s);
	struct flusher_file *files[4];
	for (int i = 0; i < 4; i++) {
		char name[32];
		snprintf(name, sizeof name, "drain-%d", i);
		files[i] = flusher_file_new(open_tmp(name));
	}
	struct req reqs[NREQ];
	memset(reqs, 0, sizeof reqs);
	for (int i = 0; i < NREQ; i++)
		assert_int_equal(flusher_sync(fl, files[i % 4], req_done, &reqs[i]), 0);
	flusher_free(fl);
	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(atomic_load(&reqs[i].calls), 1);
		assert_int_equal(atomic_load(&reqs[i].status), 0);
	}
	/* Each file was fsynced, and requests shared fsyncs. */
	for (int i = 0; i < 4; i++)
		assert_true(seam_fd_calls(&s, flusher_file_fd(files[i])) >= 1);
	assert_true(s.calls < NREQ);
	for (int i = 0; i < 4; i++)
		flusher_file_unref(files[i]);
	seam_fini(&s);
}

/* ---- -ERR_CLOSED once free began ---- */

struct closed_ctx {
	struct flusher *fl;
	struct flusher_file *f;
	atomic_int inner_rc;
	atomic_int calls;
};

/* A callback that tries to queue more work while the flusher shuts down. */
static void resubmit_done(void *arg, int status)
{
	struct closed_ctx *c = arg;
	(void)status;
	atomic_store(&c->inner_rc, flusher_sync(c->fl, c->f, resubmit_done, c));
	atomic_fetch_add(&c->calls, 1);
}

static void *free_main(void *p)
{
	flusher_free(p);
	return NULL;
}

static void closed_during_free(enum config_flush policy)
{
	struct seam s;
	seam_init(&s);
	struct flusher *fl;
	assert_int_equal(flusher_new(policy, policy == CONFIG_FLUSH_INTERVAL ? 3600000 : 0, &fl), 0);
	flusher_set_fsync_fn(fl, seam_fsync, &s);
	int gate_fd = open_tmp("gate");
	struct flusher_file *gate = flusher_file_new(gate_fd);
	struct flusher_file *f = flusher_file_new(open_tmp("closed"));
	s.block_fd = gate_fd;
	s.blocked = true;

	struct req g = { .caller = pthread_self() };
	assert_int_equal(flusher_sync(fl, gate, req_done, &g), 0);
	struct closed_ctx c = { .fl = fl, .f = f };
	atomic_init(&c.inner_rc, 1);
	if (policy == CONFIG_FLUSH_BATCH) {
		/* A worker blocks in the gate's fsync; c waits for the gate's next one. */
		seam_wait_in_block(&s);
		c.f = gate;
		assert_int_equal(flusher_sync(fl, gate, resubmit_done, &c), 0);
	}

	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, free_main, fl), 0);
	/*
	 * free is stuck behind the blocked fsync (INTERVAL: its drain), so fl is
	 * alive; poll until it refuses new work. Accepted probes are drained later.
	 */
	struct req probes[1000];
	memset(probes, 0, sizeof probes);
	int accepted = 0, rc = 0;
	int64_t deadline = clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
	while (accepted < 1000 && clock_mono_ns() < deadline) {
		probes[accepted].caller = pthread_self();
		rc = flusher_sync(fl, f, req_done, &probes[accepted]);
		if (rc != 0)
			break;
		accepted++;
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	assert_int_equal(rc, -ERR_CLOSED);
	if (policy == CONFIG_FLUSH_INTERVAL)
		seam_wait_in_block(&s);
	seam_release(&s);
	pthread_join(th, NULL);

	assert_int_equal(atomic_load(&g.calls), 1);
	for (int i = 0; i < accepted; i++)
		assert_int_equal(atomic_load(&probes[i].calls), 1);
	if (policy == CONFIG_FLUSH_BATCH) {
		/* Its callback ran during the drain and was refused, not queued. */
		assert_int_equal(atomic_load(&c.calls), 1);
		assert_int_equal(atomic_load(&c.inner_rc), -ERR_CLOSED);
	}
	flusher_file_unref(gate);
	flusher_file_unref(f);
	seam_fini(&s);
}

static void test_closed_batch(void **state)
{
	(void)state;
	closed_during_free(CONFIG_FLUSH_BATCH);
}

static void test_closed_interval(void **state)
{
	(void)state;
	closed_during_free(CONFIG_FLUSH_INTERVAL);
}

/* ---- fsync errors ---- */

/*
 * Requests queued on a file during its fsync share the next one; when an fsync
 * fails, every request waiting on it gets the error, and the failure is sticky
 * (later requests fail without fsync). Another file is unaffected.
 */
static void test_fsync_error_batch(void **state)
{
	(void)state;
	struct seam s;
	seam_init(&s);
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &fl), 0);
	flusher_set_fsync_fn(fl, seam_fsync, &s);
	int bad_fd = open_tmp("bad");
	struct flusher_file *bad = flusher_file_new(bad_fd);
	int good_fd = open_tmp("good");
	struct flusher_file *good = flusher_file_new(good_fd);
	s.block_fd = bad_fd; /* the first fsync of bad blocks until released... */
	s.blocked = true;
	s.fail_fd = bad_fd;  /* ...and fails with EIO */
	s.fail_err = EIO;
	s.fail_times = 1;    /* a second would "succeed": the lie fsyncgate is about */

	struct req first = { 0 };
	assert_int_equal(flusher_sync(fl, bad, req_done, &first), 0);
	seam_wait_in_block(&s);
	/* These wait for bad's next fsync, which the sticky error replaces. */
	struct req rb[3], rg[3];
	memset(rb, 0, sizeof rb);
	memset(rg, 0, sizeof rg);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(flusher_sync(fl, bad, req_done, &rb[i]), 0);
		assert_int_equal(flusher_sync(fl, good, req_done, &rg[i]), 0);
	}
	seam_release(&s);

	struct waiter w;
	waiter_init(&w);
	assert_int_equal(flusher_sync(fl, bad, waiter_done, &w), 0);
	assert_int_equal(waiter_wait(&w, 1), 0);
	/* w came after rb on the same file: their callbacks have run. */
	assert_int_equal(atomic_load(&first.calls), 1);
	assert_int_equal(atomic_load(&first.status), -EIO);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(atomic_load(&rb[i].calls), 1);
		assert_int_equal(atomic_load(&rb[i].status), -EIO);
	}
	/* One failed fsync; the rest of the requests got the sticky error without one. */
	assert_int_equal(seam_fd_calls(&s, bad_fd), 1);
	assert_int_equal(w.status, -EIO);
	assert_int_equal(flusher_file_error(bad), -EIO);

	flusher_free(fl);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(atomic_load(&rg[i].calls), 1);
		assert_int_equal(atomic_load(&rg[i].status), 0);
	}
	assert_int_equal(flusher_file_error(good), 0);
	waiter_fini(&w);
	flusher_file_unref(bad);
	flusher_file_unref(good);
	seam_fini(&s);
}

/* Requests on one file queued during its fsync share the next fsync; callbacks keep order. */
static void test_requests_during_fsync_share_next(void **state)
{
	(void)state;
	enum { NREQ = 50 };
	struct seam s;
	seam_init(&s);
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &fl), 0);
	flusher_set_fsync_fn(fl, seam_fsync, &s);
	int fd = open_tmp("share");
	struct flusher_file *f = flusher_file_new(fd);
	s.block_fd = fd;
	s.blocked = true;
	struct req first = { 0 };
	assert_int_equal(flusher_sync(fl, f, req_done, &first), 0);
	seam_wait_in_block(&s);
	struct req reqs[NREQ];
	memset(reqs, 0, sizeof reqs);
	for (int i = 0; i < NREQ; i++)
		assert_int_equal(flusher_sync(fl, f, req_done, &reqs[i]), 0);
	assert_int_equal(atomic_load(&first.calls), 0); /* its fsync has not returned */
	seam_release(&s);
	flusher_free(fl);
	assert_int_equal(seam_fd_calls(&s, fd), 2);
	assert_int_equal(atomic_load(&first.calls), 1);
	int prev = atomic_load(&first.seq);
	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(atomic_load(&reqs[i].calls), 1);
		assert_int_equal(atomic_load(&reqs[i].status), 0);
		/* One file's callbacks run in request order. */
		assert_true(atomic_load(&reqs[i].seq) > prev);
		prev = atomic_load(&reqs[i].seq);
	}
	flusher_file_unref(f);
	seam_fini(&s);
}

/* While one flusher holds a file, another refuses it; once idle, it may take it. */
static void test_file_bound_to_one_flusher(void **state)
{
	(void)state;
	struct seam s;
	seam_init(&s);
	struct flusher *a, *b;
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &a), 0);
	assert_int_equal(flusher_new(CONFIG_FLUSH_INTERVAL, 3600000, &b), 0);
	flusher_set_fsync_fn(a, seam_fsync, &s);
	int fd = open_tmp("bound");
	struct flusher_file *f = flusher_file_new(fd);
	s.block_fd = fd;
	s.blocked = true;
	struct req r1 = { 0 }, r2 = { .caller = pthread_self() };
	assert_int_equal(flusher_sync(a, f, req_done, &r1), 0);
	seam_wait_in_block(&s);
	assert_int_equal(flusher_sync(b, f, req_done, &r2), -ERR_INVALID);
	assert_int_equal(atomic_load(&r2.calls), 0);
	seam_release(&s);
	flusher_free(a); /* r1 done: f is idle again */
	assert_int_equal(atomic_load(&r1.calls), 1);
	assert_int_equal(flusher_sync(b, f, req_done, &r2), 0);
	assert_int_equal(atomic_load(&r2.calls), 1);
	flusher_free(b);
	flusher_file_unref(f);
	seam_fini(&s);
}

/*
 * Distinct files are fsynced in parallel (appenders on different logs cannot
 * share an fsync), with per-file status.
 */
static void test_distinct_files_fsync_in_parallel(void **state)
{
	(void)state;
	enum { NFILES = 6, PER_FILE = 4 };
	struct seam s;
	seam_init(&s);
	s.delay_us = 20000; /* long enough that parallel helpers overlap */
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &fl), 0);
	flusher_set_fsync_fn(fl, seam_fsync, &s);
	int gate_fd = open_tmp("pgate");
	struct flusher_file *gate = flusher_file_new(gate_fd);
	struct flusher_file *files[NFILES];
	int fds[NFILES];
	for (int i = 0; i < NFILES; i++) {
		char name[32];
		snprintf(name, sizeof name, "par-%d", i);
		fds[i] = open_tmp(name);
		files[i] = flusher_file_new(fds[i]);
	}
	s.fail_fd = fds[2];
	s.fail_err = EIO;
	s.fail_times = 1;
	s.block_fd = gate_fd;
	s.blocked = true;
	struct req g = { 0 };
	assert_int_equal(flusher_sync(fl, gate, req_done, &g), 0);
	seam_wait_in_block(&s);
	struct req reqs[NFILES * PER_FILE];
	memset(reqs, 0, sizeof reqs);
	for (int i = 0; i < NFILES * PER_FILE; i++)
		assert_int_equal(flusher_sync(fl, files[i % NFILES], req_done, &reqs[i]), 0);
	int64_t t0 = clock_mono_ns();
	seam_release(&s);
	flusher_free(fl);
	int64_t ms = (clock_mono_ns() - t0) / 1000000;
	print_message("%d files x 20 ms fsync: took %lld ms, %d in flight at most\n",
		      NFILES, (long long)ms, s.max_inflight);
	assert_true(s.max_inflight >= 2);
	assert_true(s.max_inflight <= FLUSHER_FSYNC_PARALLEL);
	/* A file's first request may start an fsync alone; the rest share the next. */
	for (int i = 0; i < NFILES; i++)
		assert_in_range(s.fd_calls[fds[i]], 1, 2);
	for (int i = 0; i < NFILES * PER_FILE; i++) {
		assert_int_equal(atomic_load(&reqs[i].calls), 1);
		assert_int_equal(atomic_load(&reqs[i].status), i % NFILES == 2 ? -EIO : 0);
	}
	assert_int_equal(atomic_load(&g.calls), 1);
	flusher_file_unref(gate);
	for (int i = 0; i < NFILES; i++)
		flusher_file_unref(files[i]);
	seam_fini(&s);
}

/* A real failing fdatasync (a pipe cannot be synced: EINVAL) reaches the callback. */
static void test_fsync_error_real_fd(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_BATCH, 0, &fl), 0);
	struct flusher_file *f = flusher_file_new(p[1]);
	struct waiter w;
	waiter_init(&w);
	assert_int_equal(flusher_sync(fl, f, waiter_done, &w), 0);
	assert_int_equal(waiter_wait(&w, 1), 0);
	assert_true(w.status < 0);
	assert_int_equal(flusher_file_error(f), w.status);
	flusher_free(fl);
	waiter_fini(&w);
	flusher_file_unref(f);
	close(p[0]);
}

/* INTERVAL: a background fsync failure shows in the next request's callback. */
static void test_fsync_error_interval(void **state)
{
	(void)state;
	struct seam s;
	seam_init(&s);
	struct flusher *fl;
	assert_int_equal(flusher_new(CONFIG_FLUSH_INTERVAL, 10, &fl), 0);
	flusher_set_fsync_fn(fl, seam_fsync, &s);
	int fd = open_tmp("ibad");
	struct flusher_file *f = flusher_file_new(fd);
	s.fail_fd = fd;
	s.fail_err = EIO;
	s.fail_times = 1;
	struct req r1 = { .caller = pthread_self() };
	assert_int_equal(flusher_sync(fl, f, req_done, &r1), 0);
	assert_int_equal(atomic_load(&r1.status), 0); /* promised "within N ms" only */
	assert_int_equal(wait_fsyncs(fl, 1), 1);
	struct req r2 = { .caller = pthread_self() };
	assert_int_equal(flusher_sync(fl, f, req_done, &r2), 0);
	assert_int_equal(atomic_load(&r2.calls), 1);
	assert_int_equal(atomic_load(&r2.status), -EIO);
	flusher_file_unref(f);
	flusher_free(fl);
	seam_fini(&s);
}

int main(void)
{
	diag_set_level(DIAG_ERROR); /* the error tests log expected fsync failures */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_refcount),
		cmocka_unit_test(test_flusher_keeps_fd_open),
		cmocka_unit_test(test_new_rejects_bad_arguments),
		cmocka_unit_test(test_callbacks_once_batch),
		cmocka_unit_test(test_callbacks_once_interval),
		cmocka_unit_test(test_callbacks_once_os),
		cmocka_unit_test(test_group_commit_real_disk),
		cmocka_unit_test(test_group_commit_slow_disk),
		cmocka_unit_test(test_interval_fsyncs_within_bound),
		cmocka_unit_test(test_interval_write_during_fsync),
		cmocka_unit_test(test_free_drains_pending_batch),
		cmocka_unit_test(test_closed_batch),
		cmocka_unit_test(test_closed_interval),
		cmocka_unit_test(test_fsync_error_batch),
		cmocka_unit_test(test_requests_during_fsync_share_next),
		cmocka_unit_test(test_file_bound_to_one_flusher),
		cmocka_unit_test(test_distinct_files_fsync_in_parallel),
		cmocka_unit_test(test_fsync_error_real_fd),
		cmocka_unit_test(test_fsync_error_interval),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
