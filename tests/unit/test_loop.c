/*
 * test_loop.c: loop groups and cross-thread messages (src/net/loop.h).
 *
 * Callbacks are counted and the counts asserted after the loops stop (libuv
 * style): every message runs exactly once, on the loop it was posted to, in
 * posting order per poster; stop runs what was queued, closes members and stray
 * handles, and uv_loop_close succeeds. Run under -DSLUICE_TSAN=ON too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/err.h"
#include "net/loop.h"

#define N_LOOPS 4
#define N_POSTERS 4
#define PER_POSTER 25000

/* One message; fields other than the atomics are written only by the target loop. */
struct item {
	int target;
	int poster;
	int seq;
	int ran;
	int wrong_thread;
};

struct post_test {
	struct loop_group *g;
	struct item *items;
	int last_seq[N_LOOPS][N_POSTERS]; /* row i written only by loop i */
	int out_of_order_loop[N_LOOPS];
	atomic_int ran_total;
	atomic_int post_errors;
};

static struct post_test *the_test;

static void ran_item(void *arg)
{
	struct item *it = arg;
	struct loop *cur = loop_current();
	it->ran++;
	if (cur == NULL || loop_index(cur) != it->target) {
		it->wrong_thread++;
	} else {
		int *last = &the_test->last_seq[it->target][it->poster];
		if (it->seq <= *last)
			the_test->out_of_order_loop[it->target]++;
		*last = it->seq;
	}
	atomic_fetch_add(&the_test->ran_total, 1);
}

static void *poster_main(void *arg)
{
	int p = (int)(intptr_t)arg;
	for (int s = 0; s < PER_POSTER; s++) {
		struct item *it = &the_test->items[p * PER_POSTER + s];
		struct loop *loop = loop_group_get(the_test->g, it->target);
		if (loop_post(loop, ran_item, it) != 0)
			atomic_fetch_add(&the_test->post_errors, 1);
	}
	return NULL;
}

/* Waits up to timeout_ms for *v to reach want; returns the last value seen. */
static int wait_for(atomic_int *v, int want, int timeout_ms)
{
	int64_t end = clock_mono_ns() + (int64_t)timeout_ms * 1000000;
	int now;
	while ((now = atomic_load(v)) != want && clock_mono_ns() < end) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return now;
}

static void test_post_many_threads(void **state)
{
	(void)state;
	struct post_test *t = calloc(1, sizeof *t);
	assert_non_null(t);
	the_test = t;
	int total = N_POSTERS * PER_POSTER;
	t->items = calloc((size_t)total, sizeof *t->items);
	assert_non_null(t->items);
	for (int p = 0; p < N_POSTERS; p++) {
		for (int s = 0; s < PER_POSTER; s++) {
			struct item *it = &t->items[p * PER_POSTER + s];
			it->poster = p;
			it->seq = s;
			it->target = (s * 7 + p) % N_LOOPS;
		}
		for (int l = 0; l < N_LOOPS; l++)
			t->last_seq[l][p] = -1;
	}
	assert_int_equal(loop_group_start(N_LOOPS, &t->g), 0);
	assert_int_equal(loop_group_size(t->g), N_LOOPS);

	pthread_t th[N_POSTERS];
	for (int p = 0; p < N_POSTERS; p++)
		assert_int_equal(pthread_create(&th[p], NULL, poster_main, (void *)(intptr_t)p), 0);
	for (int p = 0; p < N_POSTERS; p++)
		pthread_join(th[p], NULL);
	/* Every message runs without a stop forcing it. */
	assert_int_equal(wait_for(&t->ran_total, total, 20000), total);
	assert_int_equal(loop_group_stop(t->g), 0);

	assert_int_equal(atomic_load(&t->post_errors), 0);
	assert_int_equal(atomic_load(&t->ran_total), total);
	for (int i = 0; i < total; i++) {
		assert_int_equal(t->items[i].ran, 1);
		assert_int_equal(t->items[i].wrong_thread, 0);
	}
	for (int l = 0; l < N_LOOPS; l++)
		assert_int_equal(t->out_of_order_loop[l], 0);
	free(t->items);
	free(t);
	the_test = NULL;
}

struct where {
	struct loop *cur;
	int index;
};

static void record_where(void *arg)
{
	struct where *w = arg;
	w->cur = loop_current();
	w->index = w->cur != NULL ? loop_index(w->cur) : -1;
}

static void test_call_current_and_accessors(void **state)
{
	(void)state;
	struct loop_group *g;
	assert_int_equal(loop_group_start(3, &g), 0);
	assert_int_equal(loop_group_size(g), 3);
	assert_null(loop_group_get(g, 3));
	assert_null(loop_group_get(g, -1));
	assert_null(loop_current());
	for (int i = 0; i < 3; i++) {
		struct loop *loop = loop_group_get(g, i);
		assert_non_null(loop);
		assert_int_equal(loop_index(loop), i);
		assert_ptr_equal(loop_group_of(loop), g);
		assert_non_null(loop_uv(loop));
		struct where w = { NULL, -2 };
		assert_int_equal(loop_call(loop, record_where, &w), 0);
		/* loop_call returned: the function ran, on that loop's thread. */
		assert_ptr_equal(w.cur, loop);
		assert_int_equal(w.index, i);
	}
	assert_int_equal(loop_group_stop(g), 0);

	/* threads = 0 means one loop per online core. */
	assert_int_equal(loop_group_start(0, &g), 0);
	assert_true(loop_group_size(g) >= 1);
	assert_int_equal(loop_group_stop(g), 0);
	assert_int_equal(loop_group_start(-1, &g), -ERR_INVALID);
}

/* A message bouncing between two loops, hops counted on each side. */
struct pingpong {
	struct loop_group *g;
	int hops_left;        /* touched only by the loop holding the ball */
	int hops_on[2];       /* hops_on[i] written only by loop i */
	int wrong;
	atomic_int done;
};

static void bounce(void *arg)
{
	struct pingpong *pp = arg;
	int me = loop_index(loop_current());
	pp->hops_on[me]++;
	if (--pp->hops_left == 0) {
		atomic_store(&pp->done, 1);
		return;
	}
	if (loop_post(loop_group_get(pp->g, 1 - me), bounce, pp) != 0)
		pp->wrong++;
}

static void test_ping_pong_between_loops(void **state)
{
	(void)state;
	struct pingpong pp = { .hops_left = 20000 };
	atomic_init(&pp.done, 0);
	assert_int_equal(loop_group_start(2, &pp.g), 0);
	assert_int_equal(loop_post(loop_group_get(pp.g, 0), bounce, &pp), 0);
	assert_int_equal(wait_for(&pp.done, 1, 20000), 1);
	assert_int_equal(loop_group_stop(pp.g), 0);
	assert_int_equal(pp.hops_on[0], 10000);
	assert_int_equal(pp.hops_on[1], 10000);
	assert_int_equal(pp.wrong, 0);
	assert_int_equal(pp.hops_left, 0);
}

/*
 * Coalescing: a loop that reads input in consecutive turns less than gap_us
 * apart starts waiting before its polls; one whose input is further apart
 * never waits. Each input is its own turn: the next is posted only after the
 * previous one ran.
 */
static void note_input(void *arg)
{
	atomic_int *ran = arg;
	loop_note_input(loop_current());
	atomic_fetch_add(ran, 1);
}

static uint64_t waits_after_inputs(int gap_us, int inputs, int pause_us)
{
	struct loop_group *g;
	struct loop_coalesce co = { .wait_us = 200, .gap_us = gap_us };
	assert_int_equal(loop_group_start_opts(1, &co, &g), 0);
	struct loop *loop = loop_group_get(g, 0);
	atomic_int ran;
	atomic_init(&ran, 0);
	for (int i = 0; i < inputs; i++) {
		assert_int_equal(loop_post(loop, note_input, &ran), 0);
		assert_int_equal(wait_for(&ran, i + 1, 5000), i + 1);
		if (pause_us > 0) {
			struct timespec ts = { pause_us / 1000000, (long)(pause_us % 1000000) * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	uint64_t waits = loop_coalesce_waits(loop);
	assert_int_equal(loop_group_stop(g), 0);
	return waits;
}

static void test_coalesce_waits_only_while_streaming(void **state)
{
	(void)state;
	/* Inputs about 1 ms apart against a 10 ms gap: streaming, so the loop waits. */
	assert_true(waits_after_inputs(10000, 20, 0) > 0);
	/* Inputs 3 ms apart against a 1 us gap: sparse, never a wait. */
	assert_int_equal(waits_after_inputs(1, 20, 3000), 0);
	/* Off: never a wait; bad settings refused. */
	struct loop_group *g;
	struct loop_coalesce off = { .wait_us = 0, .gap_us = 50 };
	assert_int_equal(loop_group_start_opts(1, &off, &g), 0);
	assert_int_equal(loop_coalesce_waits(loop_group_get(g, 0)), 0);
	assert_int_equal(loop_group_stop(g), 0);
	struct loop_coalesce bad = { .wait_us = 10001, .gap_us = 50 };
	assert_int_equal(loop_group_start_opts(1, &bad, &g), -ERR_INVALID);
}

/* Counters for the stop test; each is touched by one loop thread, read after join. */
struct stop_test {
	int queued_ran;
	int member_closed;
	int handle_closed;
	int post_in_close;
	struct loop_member member;
	uv_timer_t member_timer; /* closed by the member's close function */
	uv_timer_t *stray;       /* left open on purpose: stop must close it */
	uv_timer_t *stray_unref;
	struct loop *loop;
};

static struct stop_test *stop_t;

static void count_queued(void *arg)
{
	(void)arg;
	stop_t->queued_ran++;
}

static void member_timer_closed(uv_handle_t *h)
{
	(void)h;
	stop_t->handle_closed++;
	loop_member_remove(stop_t->loop, &stop_t->member);
}

static void member_close(struct loop_member *m)
{
	(void)m;
	stop_t->member_closed++;
	/* Posting during stop fails cleanly: the loop refuses new work. */
	stop_t->post_in_close = loop_post(stop_t->loop, count_queued, NULL);
	uv_close((uv_handle_t *)&stop_t->member_timer, member_timer_closed);
}

static void noop_timer(uv_timer_t *t)
{
	(void)t;
}

static void setup_handles(void *arg)
{
	struct stop_test *t = arg;
	t->loop = loop_current();
	uv_loop_t *uv = loop_uv(t->loop);
	uv_timer_init(uv, &t->member_timer);
	uv_timer_start(&t->member_timer, noop_timer, 100000, 100000);
	t->member.close = member_close;
	loop_member_add(t->loop, &t->member);
	uv_timer_init(uv, t->stray);
	uv_timer_start(t->stray, noop_timer, 100000, 100000);
	uv_timer_init(uv, t->stray_unref);
	uv_unref((uv_handle_t *)t->stray_unref);
}

static void count_visits(struct loop_member *m, void *arg)
{
	(void)m;
	(*(int *)arg)++;
}

/* A member kind nobody registered. */
static void other_kind(struct loop_member *m)
{
	(void)m;
}

struct visit_ctx {
	int all;
	int of_kind;
	int of_other_kind;
};

static void visit_members(void *arg)
{
	struct visit_ctx *v = arg;
	struct loop *loop = loop_current();
	loop_member_foreach(loop, NULL, count_visits, &v->all);
	loop_member_foreach(loop, member_close, count_visits, &v->of_kind);
	loop_member_foreach(loop, other_kind, count_visits, &v->of_other_kind);
}

static void test_stop_runs_queued_and_closes_everything(void **state)
{
	(void)state;
	struct stop_test *t = calloc(1, sizeof *t);
	assert_non_null(t);
	stop_t = t;
	t->stray = malloc(sizeof *t->stray);
	t->stray_unref = malloc(sizeof *t->stray_unref);
	struct loop_group *g;
	assert_int_equal(loop_group_start(2, &g), 0);
	struct loop *loop = loop_group_get(g, 1);
	assert_int_equal(loop_call(loop, setup_handles, t), 0);
	struct visit_ctx v = { 0, 0, 0 };
	assert_int_equal(loop_call(loop, visit_members, &v), 0);
	assert_int_equal(v.all, 1);
	assert_int_equal(v.of_kind, 1);
	assert_int_equal(v.of_other_kind, 0);
	/* Queued before the stop message by the same thread: all must run. */
	for (int i = 0; i < 1000; i++)
		assert_int_equal(loop_post(loop, count_queued, NULL), 0);
	assert_int_equal(loop_group_stop(g), 0); /* includes uv_loop_close == 0 */
	assert_int_equal(t->queued_ran, 1000);
	assert_int_equal(t->member_closed, 1);
	assert_int_equal(t->handle_closed, 1);
	assert_int_equal(t->post_in_close, -ERR_CLOSED);
	free(t->stray);
	free(t->stray_unref);
	free(t);
	stop_t = NULL;
}

/* loop_defer: a node deferred many times during one drain runs once, after
 * every message of that drain; deferring from outside a drain still runs it. */
struct defer_test {
	struct loop_deferred d;
	int msgs_run;            /* loop thread */
	int msgs_seen_by_defer;  /* msgs_run when the deferred callback ran */
	int defer_runs;
	atomic_int done;
};

static void deferred_cb(void *arg)
{
	struct defer_test *t = arg;
	t->defer_runs++;
	t->msgs_seen_by_defer = t->msgs_run;
	atomic_store(&t->done, 1);
}

static void defer_msg(void *arg)
{
	struct defer_test *t = arg;
	t->msgs_run++;
	loop_defer(loop_current(), &t->d);
}

static void gate(void *arg)
{
	/* Holds the loop briefly so the messages posted meanwhile form one drain. */
	(void)arg;
	nanosleep(&(struct timespec){ 0, 50 * 1000000 }, NULL);
}

static void defer_outside(void *arg)
{
	struct defer_test *t = arg;
	loop_defer(loop_current(), &t->d);
}

static void test_defer_runs_once_after_the_drain(void **state)
{
	(void)state;
	struct loop_group *g;
	assert_int_equal(loop_group_start(1, &g), 0);
	struct loop *loop = loop_group_get(g, 0);
	struct defer_test t = { .d = { .fn = deferred_cb } };
	t.d.arg = &t;
	assert_int_equal(loop_post(loop, gate, NULL), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(loop_post(loop, defer_msg, &t), 0);
	for (int i = 0; i < 500 && !atomic_load(&t.done); i++)
		nanosleep(&(struct timespec){ 0, 10 * 1000000 }, NULL);
	assert_true(atomic_load(&t.done));
	struct where w = { NULL, -2 };
	assert_int_equal(loop_call(loop, record_where, &w), 0); /* fence: reads below are safe */
	assert_int_equal(t.msgs_run, 100);
	assert_int_equal(t.defer_runs, 1);
	assert_int_equal(t.msgs_seen_by_defer, 100);
	/* Deferred again by a later message: runs again. */
	atomic_store(&t.done, 0);
	assert_int_equal(loop_call(loop, defer_outside, &t), 0);
	for (int i = 0; i < 500 && !atomic_load(&t.done); i++)
		nanosleep(&(struct timespec){ 0, 10 * 1000000 }, NULL);
	assert_true(atomic_load(&t.done));
	assert_int_equal(loop_group_stop(g), 0);
	assert_int_equal(t.defer_runs, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_call_current_and_accessors),
		cmocka_unit_test(test_post_many_threads),
		cmocka_unit_test(test_ping_pong_between_loops),
		cmocka_unit_test(test_coalesce_waits_only_while_streaming),
		cmocka_unit_test(test_stop_runs_queued_and_closes_everything),
		cmocka_unit_test(test_defer_runs_once_after_the_drain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
