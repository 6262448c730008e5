/*
 * loop.c: event-loop threads and lock-free message passing between them.
 *
 * Each loop owns a Vyukov intrusive MPSC queue:
 *
 *   producers: m->next = NULL; prev = xchg(head, m); prev->next = m;
 *   consumer:  walks from tail following next pointers; a permanent sentinel node
 *              lets the queue be empty without head or tail becoming NULL.
 *
 * Between a producer's exchange and its store the list is briefly broken; the
 * consumer then sees "empty" and stops, but that producer calls uv_async_send
 * after its store, so the loop wakes again and finds the message. Posts and the
 * drain never take a lock.
 *
 * Stopping must not race a poster's uv_async_send against uv_close of the async
 * handle. Posters therefore count themselves in `posting` around the push and
 * the send, and check `closed` first (both sequentially consistent). The stop
 * message sets `closed` and waits for `posting` to reach zero: after that no
 * poster can touch the handle, and every accepted message is in the queue.
 */
#include "net/loop.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"

/* One queued message; freed by the consumer after it ran. */
struct loop_msg {
	_Atomic(struct loop_msg *) next;
	loop_fn fn;
	void *arg;
};

struct loop {
	/* Written by producers. */
	_Atomic(struct loop_msg *) head;
	atomic_int posting;  /* posters between their closed check and their send */
	atomic_int closed;   /* set once by the stop message: posts now fail */
	/* Loop thread only (or before the thread starts / after it is joined). */
	struct loop_msg *tail;
	struct loop_msg sentinel;
	uv_loop_t uv;
	uv_async_t async;
	/* Input coalescing (loop_coalesce): waits before a poll while streaming. */
	uv_prepare_t co_prepare;
	uv_check_t co_check;
	long co_wait_ns;            /* 0: off (the handles are not initialized) */
	uint64_t co_gap_ns;
	uint64_t co_last_input_ns;  /* when input was last read, outside a wait turn */
	int co_streak;              /* inputs in a row closer than co_gap_ns */
	int co_waited;              /* this turn began with a wait */
	int co_input;               /* this turn read input */
	_Atomic uint64_t co_waits;  /* waits taken (loop_coalesce_waits) */
	struct loop_member members; /* sentinel of a circular list */
	int stopping;               /* the stop message ran */
	struct loop_deferred *deferred;  /* loop_defer list, LIFO */
	int draining;                    /* inside loop_drain */
	int close_result;           /* uv_loop_close's result, read after join */
	int index;
	struct loop_group *group;
	pthread_t thread;
};

struct loop_group {
	int n;
	struct loop **loops;
};

static _Thread_local struct loop *current;

/* Inputs in a row closer than gap_us before a loop starts waiting. */
#define CO_STREAK 2

/*
 * Before each poll. A streaming loop waits on every other turn only: the turn
 * after a wait polls at once, and its input's distance from the wait's tells
 * whether the client still streams (the streak) or only answered (it is reset).
 */
static void co_prepare_cb(uv_prepare_t *h)
{
	struct loop *loop = h->data;
	int waited = loop->co_waited;
	loop->co_waited = 0;
	loop->co_input = 0;
	if (!waited && loop->co_streak >= CO_STREAK) {
		struct timespec ts = { 0, loop->co_wait_ns };
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		loop->co_waited = 1;
		atomic_fetch_add_explicit(&loop->co_waits, 1, memory_order_relaxed);
	}
}

/* After the poll's callbacks: a wait that brought no input ends the streak. */
static void co_check_cb(uv_check_t *h)
{
	struct loop *loop = h->data;
	if (loop->co_waited && !loop->co_input)
		loop->co_streak = 0;
}

/* Closes the coalescing handles, if coalescing is on. */
static void loop_coalesce_close(struct loop *loop)
{
	if (loop->co_wait_ns) {
		uv_close((uv_handle_t *)&loop->co_prepare, NULL);
		uv_close((uv_handle_t *)&loop->co_check, NULL);
	}
}

uint64_t loop_coalesce_waits(const struct loop *loop)
{
	return atomic_load_explicit(&loop->co_waits, memory_order_relaxed);
}

void loop_note_input(struct loop *loop)
{
	if (loop->co_wait_ns == 0 || loop->co_input)
		return;
	loop->co_input = 1;
	uint64_t now = (uint64_t)clock_mono_ns();
	if (!loop->co_waited) {
		int close = now - loop->co_last_input_ns < loop->co_gap_ns;
		loop->co_streak = close ? loop->co_streak + 1 : 0;
	}
	loop->co_last_input_ns = now;
}

static void queue_push(struct loop *loop, struct loop_msg *m)
{
	atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
	struct loop_msg *prev = atomic_exchange_explicit(&loop->head, m, memory_order_acq_rel);
	atomic_store_explicit(&prev->next, m, memory_order_release);
}

/* Takes the oldest message, or NULL when empty or a push is half done. */
static struct loop_msg *queue_pop(struct loop *loop)
{
	struct loop_msg *tail = loop->tail;
	struct loop_msg *next = atomic_load_explicit(&tail->next, memory_order_acquire);
	if (tail == &loop->sentinel) {
		if (next == NULL)
			return NULL;
		loop->tail = next;
		tail = next;
		next = atomic_load_explicit(&next->next, memory_order_acquire);
	}
	if (next != NULL) {
		loop->tail = next;
		return tail;
	}
	struct loop_msg *head = atomic_load_explicit(&loop->head, memory_order_acquire);
	if (tail != head)
		return NULL; /* its poster has not linked it yet; its send wakes us */
	/* tail is the last real node: put the sentinel behind it so it can be taken. */
	queue_push(loop, &loop->sentinel);
	next = atomic_load_explicit(&tail->next, memory_order_acquire);
	if (next != NULL) {
		loop->tail = next;
		return tail;
	}
	return NULL;
}

static void run_deferred(struct loop *loop)
{
	while (loop->deferred) {
		struct loop_deferred *d = loop->deferred;
		loop->deferred = d->next;
		d->next = NULL;
		d->queued = 0;
		d->fn(d->arg);
	}
}

static void loop_drain(struct loop *loop)
{
	struct loop_msg *m;
	loop->draining = 1;
	for (;;) {
		while ((m = queue_pop(loop)) != NULL) {
			loop_fn fn = m->fn;
			void *arg = m->arg;
			free(m);
			fn(arg);
		}
		if (!loop->deferred)
			break;
		run_deferred(loop);
	}
	loop->draining = 0;
}

void loop_defer(struct loop *loop, struct loop_deferred *d)
{
	if (d->queued)
		return;
	d->queued = 1;
	d->next = loop->deferred;
	loop->deferred = d;
	if (!loop->draining)
		uv_async_send(&loop->async); /* run it on the next turn */
}

static void close_stray_cb(uv_handle_t *h, void *arg)
{
	int *count = arg;
	if (!uv_is_closing(h)) {
		uv_close(h, NULL);
		(*count)++;
	}
}

static void close_member_cb(struct loop_member *m, void *arg)
{
	(void)arg;
	m->close(m);
}

/* Closes members, then any other handle (including the async handle). */
static void loop_close_all(struct loop *loop)
{
	loop_member_foreach(loop, NULL, close_member_cb, NULL);
	loop_coalesce_close(loop);
	int stray = 0;
	uv_walk(&loop->uv, close_stray_cb, &stray);
	/* The async handle is always among them; anything else was left open. */
	if (stray > 1)
		diag_debug("net", "loop %d: closed %d handles left open at stop", loop->index,
			   stray - 1);
}

static void loop_async_cb(uv_async_t *h)
{
	struct loop *loop = h->data;
	loop_drain(loop);
	if (loop->stopping && !uv_is_closing((uv_handle_t *)&loop->async)) {
		loop_drain(loop);
		loop_close_all(loop);
	}
}

/* The stop message: refuse new posts and wait out posters already inside. */
static void loop_stop_msg(void *arg)
{
	struct loop *loop = arg;
	atomic_store(&loop->closed, 1);
	while (atomic_load(&loop->posting) > 0)
		sched_yield();
	loop->stopping = 1;
}

static void *loop_thread(void *arg)
{
	struct loop *loop = arg;
	char name[16];
	snprintf(name, sizeof name, "sluice-loop-%d", loop->index);
	pthread_setname_np(pthread_self(), name);
	if (loop->co_wait_ns)
		prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* waits of the length asked */
	current = loop;
	for (int round = 0;; round++) {
		uv_run(&loop->uv, UV_RUN_DEFAULT);
		if (!loop->stopping)
			continue; /* someone called uv_stop(): keep serving */
		/* Close callbacks may have opened handles; close those too. */
		int stray = 0;
		uv_walk(&loop->uv, close_stray_cb, &stray);
		if (stray == 0 && !uv_loop_alive(&loop->uv))
			break;
		if (round > 1000)
			break;
	}
	loop->close_result = uv_loop_close(&loop->uv);
	if (loop->close_result != 0)
		diag_error("net", "loop %d: uv_loop_close: %s", loop->index,
			   uv_strerror(loop->close_result));
	current = NULL;
	return NULL;
}

/* Sets up coalescing on a loop not yet started. */
static void loop_coalesce_init(struct loop *loop, const struct loop_coalesce *co)
{
	if (!co || co->wait_us <= 0)
		return;
	uv_prepare_init(&loop->uv, &loop->co_prepare);
	uv_check_init(&loop->uv, &loop->co_check);
	loop->co_prepare.data = loop;
	loop->co_check.data = loop;
	uv_prepare_start(&loop->co_prepare, co_prepare_cb);
	uv_check_start(&loop->co_check, co_check_cb);
	/* They must not keep the loop alive at stop. */
	uv_unref((uv_handle_t *)&loop->co_prepare);
	uv_unref((uv_handle_t *)&loop->co_check);
	loop->co_wait_ns = (long)co->wait_us * 1000;
	loop->co_gap_ns = (uint64_t)(co->gap_us > 0 ? co->gap_us : 1) * 1000;
}

static struct loop *loop_new(struct loop_group *g, int index)
{
	struct loop *loop = calloc(1, sizeof *loop);
	if (loop == NULL)
		return NULL;
	loop->group = g;
	loop->index = index;
	atomic_init(&loop->sentinel.next, NULL);
	atomic_init(&loop->head, &loop->sentinel);
	atomic_init(&loop->posting, 0);
	atomic_init(&loop->closed, 0);
	loop->tail = &loop->sentinel;
	loop->members.prev = loop->members.next = &loop->members;
	if (uv_loop_init(&loop->uv) != 0) {
		free(loop);
		return NULL;
	}
	if (uv_async_init(&loop->uv, &loop->async, loop_async_cb) != 0) {
		uv_loop_close(&loop->uv);
		free(loop);
		return NULL;
	}
	loop->async.data = loop;
	return loop;
}

/* Frees a loop whose thread never started. */
static void loop_free_unstarted(struct loop *loop)
{
	uv_close((uv_handle_t *)&loop->async, NULL);
	loop_coalesce_close(loop);
	uv_run(&loop->uv, UV_RUN_DEFAULT);
	uv_loop_close(&loop->uv);
	free(loop);
}

/* Asynchronous signals go to the main thread: loop threads block them. */
static void block_async_signals(sigset_t *old)
{
	sigset_t set;
	sigfillset(&set);
	static const int sync_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP };
	for (size_t i = 0; i < sizeof sync_signals / sizeof sync_signals[0]; i++)
		sigdelset(&set, sync_signals[i]);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

int loop_group_start(int threads, struct loop_group **out)
{
	return loop_group_start_opts(threads, NULL, out);
}

int loop_group_start_opts(int threads, const struct loop_coalesce *co, struct loop_group **out)
{
	if (threads < 0)
		return -ERR_INVALID;
	if (co && (co->wait_us < 0 || co->wait_us > 10000 || co->gap_us < 0 || co->gap_us > 10000))
		return -ERR_INVALID;
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (int)n : 1;
	}
	if (threads > LOOP_GROUP_MAX_THREADS)
		threads = LOOP_GROUP_MAX_THREADS;
	struct loop_group *g = calloc(1, sizeof *g);
	if (g == NULL)
		return -ERR_NOMEM;
	g->loops = calloc((size_t)threads, sizeof *g->loops);
	if (g->loops == NULL) {
		free(g);
		return -ERR_NOMEM;
	}
	int rc = 0;
	for (int i = 0; i < threads; i++) {
		g->loops[i] = loop_new(g, i);
		if (g->loops[i] == NULL) {
			rc = -ERR_NOMEM;
			for (int j = 0; j < i; j++)
				loop_free_unstarted(g->loops[j]);
			goto fail;
		}
		loop_coalesce_init(g->loops[i], co);
	}
	sigset_t old;
	block_async_signals(&old);
	int started = 0;
	for (; started < threads; started++) {
		int e = pthread_create(&g->loops[started]->thread, NULL, loop_thread,
				       g->loops[started]);
		if (e != 0) {
			rc = -e;
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	g->n = started;
	if (rc != 0) {
		for (int j = started; j < threads; j++)
			loop_free_unstarted(g->loops[j]);
		loop_group_stop(g);
		return rc;
	}
	*out = g;
	return 0;
fail:
	free(g->loops);
	free(g);
	return rc;
}

int loop_group_stop(struct loop_group *g)
{
	if (g == NULL)
		return 0;
	int rc = 0;
	for (int i = 0; i < g->n; i++) {
		struct loop *loop = g->loops[i];
		if (loop == current) {
			diag_error("net", "loop_group_stop called from loop %d's own thread", i);
			abort();
		}
		/* Retry only on allocation failure: the stop message must get through. */
		int e;
		while ((e = loop_post(loop, loop_stop_msg, loop)) == -ERR_NOMEM)
			sched_yield();
		if (e != 0 && rc == 0)
			rc = e;
	}
	for (int i = 0; i < g->n; i++) {
		struct loop *loop = g->loops[i];
		pthread_join(loop->thread, NULL);
		if (loop->close_result != 0 && rc == 0)
			rc = loop->close_result;
		free(loop);
	}
	free(g->loops);
	free(g);
	return rc;
}

int loop_group_size(const struct loop_group *g)
{
	return g->n;
}

struct loop *loop_group_get(const struct loop_group *g, int i)
{
	if (i < 0 || i >= g->n)
		return NULL;
	return g->loops[i];
}

struct loop *loop_current(void)
{
	return current;
}

int loop_index(const struct loop *loop)
{
	return loop->index;
}

struct loop_group *loop_group_of(const struct loop *loop)
{
	return loop->group;
}

uv_loop_t *loop_uv(struct loop *loop)
{
	return &loop->uv;
}

int loop_post(struct loop *loop, loop_fn fn, void *arg)
{
	struct loop_msg *m = malloc(sizeof *m);
	if (m == NULL)
		return -ERR_NOMEM;
	m->fn = fn;
	m->arg = arg;
	atomic_fetch_add(&loop->posting, 1);
	if (atomic_load(&loop->closed)) {
		atomic_fetch_sub(&loop->posting, 1);
		free(m);
		return -ERR_CLOSED;
	}
	queue_push(loop, m);
	uv_async_send(&loop->async);
	/* Last touch of loop: after this the stop message may close the handle. */
	atomic_fetch_sub(&loop->posting, 1);
	return 0;
}

struct loop_call_ctx {
	loop_fn fn;
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

static void loop_call_run(void *arg)
{
	struct loop_call_ctx *c = arg;
	c->fn(c->arg);
	pthread_mutex_lock(&c->mu);
	c->done = 1;
	pthread_cond_signal(&c->cv);
	/* c lives on the caller's stack: not touched after the unlock. */
	pthread_mutex_unlock(&c->mu);
}

int loop_call(struct loop *loop, loop_fn fn, void *arg)
{
	if (loop == current) {
		fn(arg);
		return 0;
	}
	struct loop_call_ctx c = { .fn = fn, .arg = arg, .done = 0 };
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	int rc = loop_post(loop, loop_call_run, &c);
	if (rc == 0) {
		pthread_mutex_lock(&c.mu);
		while (!c.done)
			pthread_cond_wait(&c.cv, &c.mu);
		pthread_mutex_unlock(&c.mu);
	}
	pthread_cond_destroy(&c.cv);
	pthread_mutex_destroy(&c.mu);
	return rc;
}

void loop_member_add(struct loop *loop, struct loop_member *m)
{
	m->next = &loop->members;
	m->prev = loop->members.prev;
	loop->members.prev->next = m;
	loop->members.prev = m;
}

void loop_member_remove(struct loop *loop, struct loop_member *m)
{
	(void)loop;
	if (m->next == NULL)
		return;
	m->prev->next = m->next;
	m->next->prev = m->prev;
	m->prev = m->next = NULL;
}

size_t loop_member_foreach(struct loop *loop, loop_member_close_fn kind,
			   void (*visit)(struct loop_member *m, void *arg), void *arg)
{
	size_t n = 0;
	struct loop_member *m = loop->members.next;
	while (m != &loop->members) {
		struct loop_member *next = m->next; /* visit may unlink m */
		if (kind == NULL || m->close == kind) {
			visit(m, arg);
			n++;
		}
		m = next;
	}
	return n;
}
