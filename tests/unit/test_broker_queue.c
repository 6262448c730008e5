/*
 * test_broker_queue.c: AMQP queues across loop threads (broker/broker_queue.h):
 * publish with confirms, consumers with prefetch, acks, requeue on cancel,
 * durability across a broker restart. Callbacks are counted (libuv style) and
 * every wait is bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "broker/broker_queue.h"
#include "core/config.h"
#include "core/err.h"
#include "core/writer.h"
#include "net/loop.h"
#include "storage/record_batch.h"

static struct slice cstr(const char *s)
{
	return (struct slice){ (const uint8_t *)s, strlen(s) };
}

static char dir[256];
static struct loop_group *loops;
static struct broker *broker;

static atomic_int confirms, confirm_errors, deliveries, cancels_done;
static atomic_llong offsets[1000];
static atomic_int bodies[1000];

static int rm_entry(const char *p, const struct stat *st, int f, struct FTW *w)
{
	(void)st;
	(void)f;
	(void)w;
	return remove(p);
}

static void open_broker(void)
{
	struct config cfg;
	config_defaults(&cfg);
	snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", dir);
	cfg.log_level = 2;
	assert_int_equal(broker_open(&cfg, loops, &broker), 0);
	assert_int_equal(bqueue_load_all(broker, NULL), 0);
}

static void close_broker(void)
{
	broker_quiesce(broker);
	assert_int_equal(loop_group_stop(loops), 0);
	broker_close(broker);
	assert_int_equal(loop_group_start(2, &loops), 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/sluice-test-bqueue-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(loop_group_start(2, &loops), 0);
	open_broker();
	atomic_store(&confirms, 0);
	atomic_store(&confirm_errors, 0);
	atomic_store(&deliveries, 0);
	atomic_store(&cancels_done, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	broker_quiesce(broker);
	assert_int_equal(loop_group_stop(loops), 0);
	broker_close(broker);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* Waits up to 10 s for *v >= want. */
static void wait_for(atomic_int *v, int want)
{
	for (int i = 0; i < 1000 && atomic_load(v) < want; i++)
		nanosleep(&(struct timespec){ 0, 10 * 1000000 }, NULL);
	assert_true(atomic_load(v) >= want);
}

static uint8_t *message(int n, size_t *len)
{
	char body[32];
	int blen = snprintf(body, sizeof body, "%d", n);
	struct record_batch_rec rec = { 0 };
	rec.value = (struct slice){ (const uint8_t *)body, (size_t)blen };
	struct record_batch_params p;
	record_batch_params_init(&p);
	struct writer w;
	writer_init(&w, 1 << 20);
	assert_int_equal(record_batch_encode(&w, &p, &rec, 1), 0);
	return writer_take(&w, len);
}

static void confirmed(void *arg, int status, uint64_t n)
{
	(void)arg;
	(void)n;
	if (status)
		atomic_fetch_add(&confirm_errors, 1);
	atomic_fetch_add(&confirms, 1);
}

static void delivered(void *arg, struct queue_msg *m)
{
	(void)arg;
	struct record_batch_iter it;
	struct record_batch_record rec;
	char buf[32] = { 0 };
	if (record_batch_iter_init(&it, m->data, m->len) == 0 && record_batch_iter_next(&it, &rec) == 1 &&
	    rec.value.len < sizeof buf)
		memcpy(buf, rec.value.data, rec.value.len);
	int i = atomic_fetch_add(&deliveries, 1);
	if (i < 1000) {
		offsets[i] = m->offset;
		bodies[i] = atoi(buf) + (m->redelivered ? 10000 : 0);
	}
	free(m->data);
}

static void cancelled(void *arg)
{
	(void)arg;
}

static void cancel_done(void *arg, int status, uint64_t n)
{
	(void)arg;
	(void)status;
	(void)n;
	atomic_fetch_add(&cancels_done, 1);
}

static struct bqueue *declare(const char *name, bool durable)
{
	struct bqueue_args args = { .durable = durable, .limits = { -1, -1, QUEUE_OVERFLOW_DROP_HEAD },
				    .message_ttl = -1 };
	struct bqueue *q;
	bool created;
	assert_int_equal(bqueue_declare(broker, cstr(name), &args, false, &q, &created), 0);
	return q;
}

static void publish_n(struct bqueue *q, int n)
{
	struct loop *reply = loop_group_get(loops, 0);
	for (int i = 0; i < n; i++) {
		size_t len;
		uint8_t *b = message(i, &len);
		assert_int_equal(bqueue_publish(q, b, len, true, -1, reply, confirmed, NULL), 0);
	}
}

static void test_confirms_prefetch_acks(void **state)
{
	(void)state;
	struct bqueue *q = declare("work", true);
	publish_n(q, 100);
	wait_for(&confirms, 100);
	assert_int_equal(atomic_load(&confirm_errors), 0);
	/* A consumer with prefetch 10 gets exactly 10 until it acks. */
	uint64_t id;
	assert_int_equal(bqueue_consume(q, 10, 0, false, loop_group_get(loops, 1), delivered, cancelled,
					NULL, &id),
			 0);
	wait_for(&deliveries, 10);
	nanosleep(&(struct timespec){ 0, 100 * 1000000 }, NULL);
	assert_int_equal(atomic_load(&deliveries), 10);
	for (int i = 0; i < 100; i++) {
		wait_for(&deliveries, i + 1);
		assert_int_equal(bodies[i], i); /* in order, not redelivered */
		assert_int_equal(bqueue_settle(q, id, offsets[i], BQUEUE_ACK), 0);
	}
	wait_for(&deliveries, 100);
	assert_int_equal(bqueue_cancel(q, id, loop_group_get(loops, 0), cancel_done, NULL), 0);
	wait_for(&cancels_done, 1);
	bqueue_release(q);
}

static void test_restart_redelivers_unacked(void **state)
{
	(void)state;
	struct bqueue *q = declare("orders", true);
	publish_n(q, 20);
	wait_for(&confirms, 20);
	uint64_t id;
	assert_int_equal(bqueue_consume(q, 0, 0, false, loop_group_get(loops, 1), delivered, cancelled,
					NULL, &id),
			 0);
	wait_for(&deliveries, 20);
	for (int i = 0; i < 10; i++) /* ack the first half */
		assert_int_equal(bqueue_settle(q, id, offsets[i], BQUEUE_ACK), 0);
	assert_int_equal(bqueue_cancel(q, id, loop_group_get(loops, 0), cancel_done, NULL), 0);
	wait_for(&cancels_done, 1);
	bqueue_release(q);
	close_broker();
	open_broker();
	atomic_store(&deliveries, 0);
	assert_int_equal(bqueue_get(broker, cstr("orders"), &q), 0);
	assert_int_equal(bqueue_message_count(q), 10);
	assert_int_equal(bqueue_consume(q, 0, 0, true, loop_group_get(loops, 1), delivered, cancelled,
					NULL, &id),
			 0);
	wait_for(&deliveries, 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(bodies[i], 10000 + 10 + i); /* the unacked half, redelivered */
	bqueue_release(q);
}

static void test_transient_queue_gone_after_restart(void **state)
{
	(void)state;
	struct bqueue *q = declare("tmp", false);
	publish_n(q, 5);
	wait_for(&confirms, 5);
	bqueue_release(q);
	close_broker();
	open_broker();
	assert_int_equal(bqueue_get(broker, cstr("tmp"), &q), -ERR_NOT_FOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_confirms_prefetch_acks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_redelivers_unacked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transient_queue_gone_after_restart, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
