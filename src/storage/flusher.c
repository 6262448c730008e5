/*
 * flusher.c: the durability thread (group commit, interval fsync, OS write-back).
 *
 * Group commit, per file. A request asks for "everything written to f so far";
 * one fdatasync of f that STARTS after the request arrived satisfies it. So
 * each file keeps a list of pending requests, and a worker that picks the file
 * takes the whole list, fsyncs once and calls every callback of it. Requests
 * that arrive while that fsync runs wait on the file's new list for the next
 * one: concurrent appenders to one log share fsyncs.
 *
 *   flusher_sync(f) ──► f.pending += req ──► f on ready list (once) ──► worker:
 *                                               take f.pending, fdatasync(f),
 *                                               done(arg, status) for each;
 *                                               f.pending not empty? ready again
 *
 * A file's callbacks run in request order: its next fsync starts only after
 * the callbacks of the previous one returned (they should be quick: post a
 * message to the owning loop).
 *
 * Different files cannot share an fsync (each log, i.e. partition, has its own
 * segment file), and fdatasync of eight files one after another costs eight
 * times one, while eight issued together cost little more than one (the
 * filesystem merges them into one journal commit and the device serves them
 * together; docs/benchmarks.md has the numbers). So ready files are fsynced by
 * up to FLUSHER_FSYNC_PARALLEL workers: the flusher thread, plus helpers started
 * when a file is ready and every worker is busy. A file is fsynced by one worker
 * at a time; there are no global rounds, so a slow fsync of one file never holds
 * back the acknowledgements of another.
 *
 * INTERVAL: flusher_sync calls back at once and puts f on the dirty list; every
 * interval the flusher thread moves the dirty list to the ready list, and the
 * same workers fsync it. OS: flusher_sync calls back at once; no thread.
 *
 * State: one mutex guards the flusher's lists and the per-file fields below.
 * A file is bound to a flusher (f->owner, with one reference held by the
 * flusher) while it has pending requests, is dirty, ready or being fsynced, and
 * unbound when all of that is over; a second flusher cannot use it meanwhile.
 * Nothing is fsynced or called back with the mutex held.
 *
 * fsync errors are sticky per file (see flusher.h): the first failure is stored
 * in the file and reported to every later request on it without fsyncing again.
 */
#include "storage/flusher.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/diag.h"
#include "core/err.h"

#define REQ_FREELIST_MAX 4096 /* request nodes kept for reuse */

struct flusher_req {
	struct flusher_req *next;
	flusher_done_fn done;
	void *arg;
};

struct flusher_file {
	atomic_int refs;
	int fd;                               /* owned: closed at refs == 0 */
	atomic_int err;                       /* 0 or the first fsync error (sticky) */
	_Atomic(struct flusher *) owner;      /* flusher holding state for f, or NULL */
	/* The rest is guarded by owner->mu and meaningful while owner is set. */
	struct flusher_req *pending;          /* BATCH: waiting for the next fsync, FIFO */
	struct flusher_req **pending_tail;
	bool dirty;                           /* INTERVAL: on owner's dirty list */
	bool ready;                           /* on owner's ready list */
	bool syncing;                         /* a worker is fsyncing it now */
	bool resync;                          /* INTERVAL: ticked during that fsync: once more */
	struct flusher_file *dirty_next;
	struct flusher_file *ready_next;
};

struct flusher {
	enum config_flush policy;
	int64_t interval_ms;
	pthread_mutex_t mu;
	pthread_cond_t cond;                  /* a file got ready, or stop */
	/* Guarded by mu: */
	bool stopping;                        /* flusher_free began */
	struct flusher_file *ready_head;      /* FIFO of files to fsync */
	struct flusher_file *ready_tail;
	struct flusher_file *dirty_head;      /* INTERVAL: files written since their last tick */
	int nworkers;                         /* started: workers[0] is the flusher thread */
	int idle;                             /* workers waiting on cond */
	pthread_t workers[FLUSHER_FSYNC_PARALLEL];
	struct flusher_req *free_reqs;
	int nfree;
	flusher_fsync_fn fsync_fn;
	void *fsync_arg;
	/* Any thread: */
	atomic_uint_fast64_t fsyncs;
};

/* ---- reference-counted files ---- */

struct flusher_file *flusher_file_new(int fd)
{
	struct flusher_file *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	atomic_init(&f->refs, 1);
	f->fd = fd;
	atomic_init(&f->err, 0);
	atomic_init(&f->owner, NULL);
	return f;
}

struct flusher_file *flusher_file_ref(struct flusher_file *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
	return f;
}

void flusher_file_unref(struct flusher_file *f)
{
	if (!f)
		return;
	/* acq_rel: every use by other holders happens before the close below. */
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (f->fd >= 0 && close(f->fd) != 0)
		diag_warn("flusher", "close fd %d: %s", f->fd, err_str(errno));
	free(f);
}

int flusher_file_fd(const struct flusher_file *f)
{
	return f->fd;
}

int flusher_file_error(const struct flusher_file *f)
{
	return atomic_load(&((struct flusher_file *)f)->err);
}

/* ---- per-file state (all called with fl->mu held) ---- */

/* Binds f to fl (taking the flusher's reference) unless it already is; 0 or -ERR_INVALID. */
static int bind_locked(struct flusher *fl, struct flusher_file *f)
{
	struct flusher *expected = NULL;
	if (atomic_compare_exchange_strong(&f->owner, &expected, fl)) {
		flusher_file_ref(f);
		f->pending = NULL;
		f->pending_tail = &f->pending;
		f->dirty = f->ready = f->syncing = f->resync = false;
		return 0;
	}
	if (expected == fl)
		return 0;
	diag_error("flusher", "fd %d is in use by another flusher", f->fd);
	return -ERR_INVALID;
}

/* Unbinds f when nothing is left to do for it; true if so (drop the reference unlocked). */
static bool unbind_locked(struct flusher *fl, struct flusher_file *f)
{
	if (f->pending || f->dirty || f->ready || f->syncing || f->resync)
		return false;
	atomic_store(&f->owner, NULL);
	(void)fl;
	return true;
}

static void ready_push_locked(struct flusher *fl, struct flusher_file *f)
{
	f->ready = true;
	f->ready_next = NULL;
	if (fl->ready_tail)
		fl->ready_tail->ready_next = f;
	else
		fl->ready_head = f;
	fl->ready_tail = f;
	if (fl->idle > 0)
		pthread_cond_signal(&fl->cond);
}

static struct flusher_file *ready_pop_locked(struct flusher *fl)
{
	struct flusher_file *f = fl->ready_head;
	fl->ready_head = f->ready_next;
	if (!fl->ready_head)
		fl->ready_tail = NULL;
	f->ready = false;
	f->ready_next = NULL;
	return f;
}

/* INTERVAL tick (and drain): every dirty file becomes ready unless it already is. */
static void dirty_to_ready_locked(struct flusher *fl)
{
	struct flusher_file *f = fl->dirty_head;
	fl->dirty_head = NULL;
	while (f) {
		struct flusher_file *next = f->dirty_next;
		f->dirty = false;
		f->dirty_next = NULL;
		if (f->syncing)
			f->resync = true; /* that fsync may have started before the write */
		else if (!f->ready)
			ready_push_locked(fl, f);
		f = next;
	}
}

static struct flusher_req *req_alloc_locked(struct flusher *fl)
{
	struct flusher_req *r = fl->free_reqs;
	if (r) {
		fl->free_reqs = r->next;
		fl->nfree--;
		return r;
	}
	return malloc(sizeof *r);
}

static void req_free_list_locked(struct flusher *fl, struct flusher_req *r)
{
	while (r) {
		struct flusher_req *next = r->next;
		if (fl->nfree < REQ_FREELIST_MAX) {
			r->next = fl->free_reqs;
			fl->free_reqs = r;
			fl->nfree++;
		} else {
			free(r);
		}
		r = next;
	}
}

/* ---- fsync ---- */

static int default_fsync(void *arg, int fd)
{
	(void)arg;
	return fdatasync(fd) == 0 ? 0 : -errno;
}

/*
 * fsyncs one file unless it already failed; stores and logs a new failure.
 * Returns the file's status after the attempt.
 */
static int sync_file(struct flusher *fl, flusher_fsync_fn fn, void *arg, struct flusher_file *f)
{
	int err = atomic_load(&f->err);
	if (err)
		return err;
	int rc = fn(arg, f->fd);
	atomic_fetch_add(&fl->fsyncs, 1);
	if (rc == 0)
		return 0;
	if (rc > 0)
		rc = -rc;
	int expected = 0;
	atomic_compare_exchange_strong(&f->err, &expected, rc);
	diag_error("flusher", "fdatasync fd %d failed: %s; data written to it may be lost",
		   f->fd, err_str(rc));
	return atomic_load(&f->err);
}

/* ---- workers ---- */

static void *helper_main(void *p);

/* Starts a helper when a file is ready, nobody is idle and the cap allows. */
static void spawn_locked(struct flusher *fl)
{
	if (fl->stopping || fl->idle > 0 || !fl->ready_head || fl->nworkers >= FLUSHER_FSYNC_PARALLEL)
		return;
	int e = pthread_create(&fl->workers[fl->nworkers], NULL, helper_main, fl);
	if (e != 0) {
		diag_warn("flusher", "cannot start fsync helper: %s; fewer fsyncs in parallel",
			  err_str(e));
		return;
	}
	fl->nworkers++;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	int64_t ns = (int64_t)ts->tv_nsec + (ms % 1000) * 1000000;
	ts->tv_sec += (time_t)(ms / 1000) + (time_t)(ns / 1000000000);
	ts->tv_nsec = (long)(ns % 1000000000);
}

/*
 * A worker: fsyncs ready files until stopped and drained. The flusher thread
 * (timer = true under INTERVAL) also turns the dirty list into ready files
 * every interval.
 */
static void worker_loop(struct flusher *fl, bool timer)
{
	struct timespec next;
	if (timer)
		deadline_after(&next, fl->interval_ms);
	pthread_mutex_lock(&fl->mu);
	for (;;) {
		if (fl->stopping && fl->dirty_head)
			dirty_to_ready_locked(fl); /* drain: fsync what was written before free */
		if (!fl->ready_head) {
			if (fl->stopping)
				break;
			fl->idle++;
			if (timer) {
				int rc = pthread_cond_timedwait(&fl->cond, &fl->mu, &next);
				if (rc == ETIMEDOUT) {
					dirty_to_ready_locked(fl);
					/* From now: a slow round never piles up ticks. */
					deadline_after(&next, fl->interval_ms);
				}
			} else {
				pthread_cond_wait(&fl->cond, &fl->mu);
			}
			fl->idle--;
			continue;
		}
		struct flusher_file *f = ready_pop_locked(fl);
		struct flusher_req *batch = f->pending;
		f->pending = NULL;
		f->pending_tail = &f->pending;
		f->syncing = true;
		f->resync = false;
		spawn_locked(fl);
		flusher_fsync_fn fn = fl->fsync_fn;
		void *arg = fl->fsync_arg;
		pthread_mutex_unlock(&fl->mu);

		int st = sync_file(fl, fn, arg, f);
		/*
		 * Still "syncing" while calling back, so no other worker starts f's
		 * next fsync yet: one file's callbacks run in request order.
		 */
		for (struct flusher_req *r = batch; r; r = r->next)
			r->done(r->arg, st);

		pthread_mutex_lock(&fl->mu);
		req_free_list_locked(fl, batch);
		f->syncing = false;
		if ((f->pending || f->resync) && !f->ready)
			ready_push_locked(fl, f); /* arrived during the fsync: the next one */
		if (unbind_locked(fl, f)) {
			pthread_mutex_unlock(&fl->mu);
			flusher_file_unref(f);
			pthread_mutex_lock(&fl->mu);
		}
	}
	pthread_mutex_unlock(&fl->mu);
}

static void *helper_main(void *p)
{
	worker_loop(p, false);
	return NULL;
}

static void *flusher_main(void *p)
{
	struct flusher *fl = p;
	worker_loop(fl, fl->policy == CONFIG_FLUSH_INTERVAL);
	return NULL;
}

/* ---- public API ---- */

int flusher_new(enum config_flush policy, int64_t interval_ms, struct flusher **out)
{
	*out = NULL;
	if (policy != CONFIG_FLUSH_BATCH && policy != CONFIG_FLUSH_INTERVAL &&
	    policy != CONFIG_FLUSH_OS)
		return -ERR_INVALID;
	if (policy == CONFIG_FLUSH_INTERVAL &&
	    (interval_ms < 1 || interval_ms > FLUSHER_INTERVAL_MAX_MS))
		return -ERR_INVALID;

	struct flusher *fl = calloc(1, sizeof *fl);
	if (!fl)
		return -ERR_NOMEM;
	fl->policy = policy;
	fl->interval_ms = interval_ms;
	fl->fsync_fn = default_fsync;
	atomic_init(&fl->fsyncs, 0);

	int rc = -ERR_NOMEM;
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		goto out_free;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int crc = pthread_cond_init(&fl->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (crc != 0)
		goto out_free;
	if (pthread_mutex_init(&fl->mu, NULL) != 0)
		goto out_cond;
	if (policy != CONFIG_FLUSH_OS) {
		int e = pthread_create(&fl->workers[0], NULL, flusher_main, fl);
		if (e != 0) {
			diag_error("flusher", "cannot start flusher thread: %s", err_str(e));
			goto out_mutex;
		}
		fl->nworkers = 1;
	}
	*out = fl;
	return 0;

out_mutex:
	pthread_mutex_destroy(&fl->mu);
out_cond:
	pthread_cond_destroy(&fl->cond);
out_free:
	free(fl);
	return rc;
}

void flusher_free(struct flusher *fl)
{
	if (!fl)
		return;
	pthread_mutex_lock(&fl->mu);
	fl->stopping = true; /* no helper starts from now on: nworkers is final */
	int n = fl->nworkers;
	pthread_cond_broadcast(&fl->cond);
	pthread_mutex_unlock(&fl->mu);
	for (int i = 0; i < n; i++)
		pthread_join(fl->workers[i], NULL);
	/* Workers drained every list and unbound every file. */
	struct flusher_req *r = fl->free_reqs;
	while (r) {
		struct flusher_req *next = r->next;
		free(r);
		r = next;
	}
	pthread_mutex_destroy(&fl->mu);
	pthread_cond_destroy(&fl->cond);
	free(fl);
}

enum config_flush flusher_policy(const struct flusher *fl)
{
	return fl->policy;
}

uint64_t flusher_fsync_count(const struct flusher *fl)
{
	return atomic_load(&((struct flusher *)fl)->fsyncs);
}

void flusher_set_fsync_fn(struct flusher *fl, flusher_fsync_fn fn, void *arg)
{
	pthread_mutex_lock(&fl->mu);
	fl->fsync_fn = fn ? fn : default_fsync;
	fl->fsync_arg = fn ? arg : NULL;
	pthread_mutex_unlock(&fl->mu);
}

int flusher_sync(struct flusher *fl, struct flusher_file *f, flusher_done_fn done, void *arg)
{
	int rc = 0;
	if (fl->policy == CONFIG_FLUSH_OS) {
		pthread_mutex_lock(&fl->mu);
		bool stopping = fl->stopping;
		pthread_mutex_unlock(&fl->mu);
		if (stopping)
			return -ERR_CLOSED;
		done(arg, flusher_file_error(f));
		return 0;
	}

	pthread_mutex_lock(&fl->mu);
	if (fl->stopping) {
		rc = -ERR_CLOSED;
		goto out_unlock;
	}
	rc = bind_locked(fl, f);
	if (rc != 0)
		goto out_unlock;
	if (fl->policy == CONFIG_FLUSH_INTERVAL) {
		if (!f->dirty) {
			f->dirty = true;
			f->dirty_next = fl->dirty_head;
			fl->dirty_head = f;
		}
		pthread_mutex_unlock(&fl->mu);
		/* Durable "within N ms"; a past fsync failure still shows. */
		done(arg, flusher_file_error(f));
		return 0;
	}

	struct flusher_req *r = req_alloc_locked(fl);
	if (!r) {
		bool unbound = unbind_locked(fl, f);
		pthread_mutex_unlock(&fl->mu);
		if (unbound)
			flusher_file_unref(f);
		return -ERR_NOMEM;
	}
	r->next = NULL;
	r->done = done;
	r->arg = arg;
	*f->pending_tail = r;
	f->pending_tail = &r->next;
	if (!f->ready && !f->syncing) {
		ready_push_locked(fl, f);
		spawn_locked(fl);
	}
out_unlock:
	pthread_mutex_unlock(&fl->mu);
	return rc;
}
