/* test_queue.c: the queue engine (broker/queue.h) on a real log in a temp dir. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/queue.h"
#include "core/err.h"
#include "core/writer.h"
#include "storage/record_batch.h"

static char dir[256];

static int rm_entry(const char *p, const struct stat *st, int f, struct FTW *w)
{
	(void)st;
	(void)f;
	(void)w;
	return remove(p);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/sluice-test-queue-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* One message as one record batch whose value is "m<n>"; prio >= 0 adds the
 * priority header (as amqp_message.c writes it), -1 leaves it out. */
static uint8_t *message_p(int n, int prio, size_t *len)
{
	char body[32];
	int blen = snprintf(body, sizeof body, "m%d", n);
	uint8_t pb = (uint8_t)prio;
	struct record_batch_kv hdr[2] = {
		{ { (const uint8_t *)"x-other", 7 }, { (const uint8_t *)"v", 1 } },
		{ { (const uint8_t *)QUEUE_PRIORITY_HEADER, sizeof QUEUE_PRIORITY_HEADER - 1 },
		  { &pb, 1 } },
	};
	struct record_batch_rec rec = { 0 };
	rec.value.data = (const uint8_t *)body;
	rec.value.len = (size_t)blen;
	if (prio >= 0) {
		rec.headers = hdr;
		rec.header_count = 2;
	}
	struct record_batch_params p;
	record_batch_params_init(&p);
	p.base_timestamp = 1000;
	struct writer w;
	writer_init(&w, 1 << 20);
	assert_int_equal(record_batch_encode(&w, &p, &rec, 1), 0);
	return writer_take(&w, len);
}

static uint8_t *message(int n, size_t *len)
{
	return message_p(n, -1, len);
}

/* The body number of a delivered message. */
static int body_of(const struct queue_msg *m)
{
	struct record_batch_iter it;
	struct record_batch_record rec;
	assert_int_equal(record_batch_iter_init(&it, m->data, m->len), 0);
	assert_int_equal(record_batch_iter_next(&it, &rec), 1);
	char buf[32] = { 0 };
	assert_true(rec.value.len < sizeof buf);
	memcpy(buf, rec.value.data, rec.value.len);
	return atoi(buf + 1);
}

/* Opens dir/q with max_priority (0 plain, QUEUE_PRIORITY_STORED as created). */
static struct queue *open_pq(bool durable, int max_priority)
{
	struct log_config cfg;
	log_config_defaults(&cfg);
	cfg.segment_bytes = 4096; /* several segments, so acked ones get deleted */
	struct queue *q;
	char qdir[300];
	snprintf(qdir, sizeof qdir, "%s/q", dir);
	assert_int_equal(queue_open(qdir, durable, max_priority, &cfg, -1, &q), 0);
	return q;
}

static struct queue *open_q(bool durable)
{
	return open_pq(durable, 0);
}

static int64_t publish_p(struct queue *q, int n, int prio)
{
	size_t len;
	uint8_t *b = message_p(n, prio, &len);
	int64_t off;
	struct flusher_file *f;
	int rc = queue_publish(q, &b, len, -1, 2000, &off, &f, NULL, NULL);
	free(b);
	assert_int_equal(rc, 0);
	return off;
}

static int64_t publish(struct queue *q, int n)
{
	return publish_p(q, n, -1);
}

/* Delivers the next message, returns its body number (-1 if none). */
static int next(struct queue *q, struct queue_msg *m)
{
	int rc = queue_next(q, 2000, m, NULL, NULL);
	assert_true(rc >= 0);
	if (rc == 0)
		return -1;
	int n = body_of(m);
	free(m->data);
	return n;
}

static void test_fifo_ack_and_requeue_order(void **state)
{
	(void)state;
	struct queue *q = open_q(true);
	for (int i = 0; i < 5; i++)
		publish(q, i);
	assert_int_equal(queue_ready_count(q), 5);
	struct queue_msg m[5];
	for (int i = 0; i < 3; i++)
		assert_int_equal(next(q, &m[i]), i);
	assert_int_equal(queue_unacked_count(q), 3);
	/* Requeue 1: it comes back before 3 and 4, flagged redelivered. */
	assert_int_equal(queue_requeue(q, m[1].offset), 0);
	assert_int_equal(queue_ack(q, m[0].offset), 0);
	assert_int_equal(queue_ack(q, m[0].offset), -ERR_NOT_FOUND);
	struct queue_msg r;
	assert_int_equal(queue_next(q, 2000, &r, NULL, NULL), 1);
	assert_int_equal(body_of(&r), 1);
	assert_true(r.redelivered);
	assert_int_equal(r.delivery_count, 2);
	free(r.data);
	assert_int_equal(next(q, &m[3]), 3);
	assert_int_equal(next(q, &m[4]), 4);
	assert_int_equal(next(q, &r), -1);
	queue_close(q);
}

static void test_restart_redelivers_exactly_unacked(void **state)
{
	(void)state;
	struct queue *q = open_q(true);
	for (int i = 0; i < 200; i++)
		publish(q, i);
	struct queue_msg m;
	/* Deliver 0..99, ack the even ones. */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(next(q, &m), i);
		if (i % 2 == 0)
			assert_int_equal(queue_ack(q, m.offset), 0);
	}
	queue_close(q);
	q = open_q(true);
	assert_int_equal(queue_ready_count(q), 150);
	assert_int_equal(queue_unacked_count(q), 0);
	for (int i = 1; i < 100; i += 2) {
		struct queue_msg r;
		assert_int_equal(queue_next(q, 2000, &r, NULL, NULL), 1);
		assert_int_equal(body_of(&r), i);
		assert_true(r.redelivered); /* it had been delivered */
		assert_int_equal(queue_ack(q, r.offset), 0);
		free(r.data);
	}
	for (int i = 100; i < 200; i++) {
		struct queue_msg r;
		assert_int_equal(queue_next(q, 2000, &r, NULL, NULL), 1);
		assert_int_equal(body_of(&r), i);
		assert_int_equal(queue_ack(q, r.offset), 0);
		free(r.data);
	}
	assert_int_equal(queue_ready_count(q), 0);
	/* Everything acked: whole segments were freed. */
	assert_true(queue_disk_bytes(q) < 4096);
	queue_close(q);
	q = open_q(true);
	assert_int_equal(queue_ready_count(q), 0);
	queue_close(q);
}

static void test_transient_queue_starts_empty(void **state)
{
	(void)state;
	struct queue *q = open_q(false);
	publish(q, 1);
	queue_close(q);
	q = open_q(false);
	assert_int_equal(queue_ready_count(q), 0);
	queue_close(q);
}

static int dropped_count;
static int dropped_first;

static void on_drop(void *arg, struct queue_msg *m)
{
	(void)arg;
	if (dropped_count++ == 0)
		dropped_first = body_of(m);
	free(m->data);
}

static void test_max_length_policies(void **state)
{
	(void)state;
	struct queue *q = open_q(true);
	struct queue_limits lim = { 3, -1, QUEUE_OVERFLOW_REJECT_PUBLISH };
	queue_set_limits(q, &lim);
	for (int i = 0; i < 3; i++)
		publish(q, i);
	size_t len;
	uint8_t *b = message(9, &len);
	int64_t off;
	struct flusher_file *f;
	assert_int_equal(queue_publish(q, &b, len, -1, 2000, &off, &f, NULL, NULL), 1);
	assert_int_equal(queue_ready_count(q), 3);
	/* drop-head: the oldest goes, handed over for dead-lettering. */
	lim.overflow = QUEUE_OVERFLOW_DROP_HEAD;
	queue_set_limits(q, &lim);
	dropped_count = 0;
	assert_int_equal(queue_publish(q, &b, len, -1, 2000, &off, &f, on_drop, NULL), 0);
	free(b);
	assert_int_equal(dropped_count, 1);
	assert_int_equal(dropped_first, 0);
	assert_int_equal(queue_ready_count(q), 3);
	struct queue_msg m;
	assert_int_equal(next(q, &m), 1);
	queue_close(q);
}

static void test_expiry_and_purge(void **state)
{
	(void)state;
	struct queue *q = open_q(true);
	size_t len;
	uint8_t *b = message(1, &len);
	int64_t off;
	struct flusher_file *f;
	assert_int_equal(queue_publish(q, &b, len, 1500, 1000, &off, &f, NULL, NULL), 0);
	free(b);
	publish(q, 2);
	publish(q, 3);
	dropped_count = 0;
	struct queue_msg m;
	assert_int_equal(queue_next(q, 2000, &m, on_drop, NULL), 1);
	assert_int_equal(dropped_count, 1); /* message 1 expired at 1500 */
	assert_int_equal(body_of(&m), 2);
	free(m.data);
	assert_int_equal(queue_purge(q), 1);
	assert_int_equal(queue_ready_count(q), 0);
	assert_int_equal(queue_unacked_count(q), 1);
	queue_close(q);
	/* Expired and purged messages never come back; the unacked one does. */
	q = open_q(true);
	assert_int_equal(queue_ready_count(q), 1);
	assert_int_equal(next(q, &m), 2);
	queue_close(q);
}

struct collected {
	int bodies[16];
	int n;
};

static void collect(void *arg, struct queue_msg *m)
{
	struct collected *c = arg;
	if (c->n < 16)
		c->bodies[c->n++] = body_of(m);
	free(m->data);
}

/* queue_discard hands back the message bytes (for dead-lettering) and removes it
 * for good; queue_expire kills only from the head; recovered messages get the
 * queue TTL again from their publish time. */
static void test_discard_expire_and_recovered_ttl(void **state)
{
	(void)state;
	struct queue *q = open_q(true);
	publish(q, 0);
	publish(q, 1);
	struct queue_msg m;
	assert_int_equal(queue_next(q, 2000, &m, NULL, NULL), 1);
	free(m.data);
	struct queue_msg got = { 0 };
	assert_int_equal(queue_discard(q, m.offset, &got), 0);
	assert_non_null(got.data);
	assert_int_equal(body_of(&got), 0);
	free(got.data);
	assert_int_equal(queue_discard(q, m.offset, NULL), -ERR_NOT_FOUND);
	assert_int_equal(queue_unacked_count(q), 0);

	/* head expires at 2100, the one behind it never, the third at 2050 */
	size_t len;
	int64_t off;
	struct flusher_file *f;
	uint8_t *b = message(2, &len);
	assert_int_equal(queue_publish(q, &b, len, 2100, 2000, &off, &f, NULL, NULL), 0);
	free(b);
	b = message(3, &len);
	assert_int_equal(queue_publish(q, &b, len, 2050, 2000, &off, &f, NULL, NULL), 0);
	free(b);
	/* 1 (no expiry) is at the head: nothing expires */
	struct collected c = { 0 };
	assert_int_equal(queue_head_expiry(q), -1);
	assert_int_equal(queue_expire(q, 5000, collect, &c), 0);
	assert_int_equal(next(q, &m), 1);
	assert_int_equal(queue_ack(q, m.offset), 0);
	assert_int_equal(queue_head_expiry(q), 2100);
	assert_int_equal(queue_expire(q, 2099, collect, &c), 0);
	assert_int_equal(queue_expire(q, 2100, collect, &c), 2); /* 2, then 3 (already due) */
	assert_int_equal(c.n, 2);
	assert_int_equal(c.bodies[0], 2);
	assert_int_equal(c.bodies[1], 3);
	assert_int_equal(queue_ready_count(q), 0);
	publish(q, 4); /* timestamp 1000 in the batch */
	queue_close(q);

	/* Reopened with a TTL of 500 ms: 4 was published at 1000, so it expires at 1500. */
	struct log_config cfg;
	log_config_defaults(&cfg);
	cfg.segment_bytes = 4096;
	char qdir[300];
	snprintf(qdir, sizeof qdir, "%s/q", dir);
	assert_int_equal(queue_open(qdir, true, 0, &cfg, 500, &q), 0);
	assert_int_equal(queue_ready_count(q), 1);
	assert_int_equal(queue_head_expiry(q), 1500);
	queue_close(q);
}

/* ---- priority queues ---- */

/* The level a message of priority prio (-1: none) has under max. */
static int level_of(int prio, int max)
{
	return prio < 0 ? 0 : prio > max ? max : prio;
}

static void test_priority_order_and_fifo_within_level(void **state)
{
	(void)state;
	struct queue *q = open_pq(false, 10);
	assert_int_equal(queue_max_priority(q), 10);
	/* 60 messages, priorities scattered over -1 (none), 0..12 and 200 (> max: max). */
	int prio[60];
	for (int i = 0; i < 60; i++) {
		prio[i] = (i * 7) % 14 - 1;
		if (i % 13 == 5)
			prio[i] = 200;
		publish_p(q, i, prio[i]);
	}
	assert_int_equal(queue_ready_count(q), 60);
	int last_level = 11, last_n = -1;
	struct queue_msg m;
	for (int k = 0; k < 60; k++) {
		int n = next(q, &m);
		assert_true(n >= 0);
		int lv = level_of(prio[n], 10);
		/* Never a higher level after a lower one; FIFO inside a level. */
		assert_true(lv <= last_level);
		if (lv == last_level)
			assert_true(n > last_n);
		last_level = lv;
		last_n = n;
		assert_int_equal(queue_ack(q, m.offset), 0);
	}
	assert_int_equal(next(q, &m), -1);
	assert_int_equal(queue_ready_count(q), 0);
	queue_close(q);
}

static void test_plain_queue_ignores_priority(void **state)
{
	(void)state;
	struct queue *q = open_q(true);
	publish_p(q, 0, 1);
	publish_p(q, 1, 9);
	publish_p(q, 2, 5);
	struct queue_msg m;
	for (int i = 0; i < 3; i++)
		assert_int_equal(next(q, &m), i);
	queue_close(q);
	struct queue *bad;
	assert_int_equal(queue_open("/tmp/never", false, 256, NULL, -1, &bad), -ERR_INVALID);
}

static void test_priority_requeue_goes_back_to_its_place(void **state)
{
	(void)state;
	struct queue *q = open_pq(true, 9);
	publish_p(q, 0, 5);
	publish_p(q, 1, 5);
	publish_p(q, 2, 5);
	publish_p(q, 3, 1);
	publish_p(q, 4, 9);
	struct queue_msg m[5];
	assert_int_equal(next(q, &m[4]), 4);
	assert_int_equal(next(q, &m[0]), 0);
	assert_int_equal(next(q, &m[1]), 1);
	/* Back in their places: 0 and 1 before 2, and 4 first of all. */
	assert_int_equal(queue_requeue(q, m[1].offset), 0);
	assert_int_equal(queue_requeue(q, m[0].offset), 0);
	assert_int_equal(queue_requeue(q, m[4].offset), 0);
	assert_int_equal(queue_ready_count(q), 5);
	int want[] = { 4, 0, 1, 2, 3 };
	for (int i = 0; i < 5; i++) {
		struct queue_msg r;
		assert_int_equal(queue_next(q, 2000, &r, NULL, NULL), 1);
		assert_int_equal(body_of(&r), want[i]);
		assert_int_equal(r.redelivered, want[i] == 4 || want[i] <= 1);
		m[want[i]] = r;
		free(r.data);
	}
	/* A low one requeued while higher ones are unacked is next. */
	assert_int_equal(queue_requeue(q, m[3].offset), 0);
	assert_int_equal(queue_requeue(q, m[2].offset), 0);
	struct queue_msg r;
	assert_int_equal(next(q, &r), 2);
	assert_int_equal(next(q, &r), 3);
	queue_close(q);
}

static int dropped_order[16];

static void on_drop_record(void *arg, struct queue_msg *m)
{
	(void)arg;
	if (dropped_count < 16)
		dropped_order[dropped_count] = body_of(m);
	dropped_count++;
	free(m->data);
}

static void test_priority_max_length_drops_next_to_deliver(void **state)
{
	(void)state;
	struct queue *q = open_pq(true, 10);
	struct queue_limits lim = { 3, -1, QUEUE_OVERFLOW_DROP_HEAD };
	queue_set_limits(q, &lim);
	dropped_count = 0;
	int64_t off;
	struct flusher_file *f;
	const int prios[] = { 1, 5, 1, 9, 0 };
	for (int i = 0; i < 5; i++) {
		size_t len;
		uint8_t *b = message_p(i, prios[i], &len);
		assert_int_equal(queue_publish(q, &b, len, -1, 2000, &off, &f, on_drop_record, NULL), 0);
		free(b);
	}
	/* RabbitMQ's drop/2 takes the head of the highest priority: the p9 message
	 * itself (3), then the p5 one (1). */
	assert_int_equal(dropped_count, 2);
	assert_int_equal(dropped_order[0], 3);
	assert_int_equal(dropped_order[1], 1);
	assert_int_equal(queue_ready_count(q), 3);
	struct queue_msg m;
	assert_int_equal(next(q, &m), 0);
	assert_int_equal(next(q, &m), 2);
	assert_int_equal(next(q, &m), 4);
	queue_close(q);
	/* Dropped ones stay gone after a restart. */
	q = open_pq(true, QUEUE_PRIORITY_STORED);
	assert_int_equal(queue_ready_count(q), 3);
	queue_close(q);
}

static void test_priority_expiry_and_purge(void **state)
{
	(void)state;
	struct queue *q = open_pq(false, 5);
	int64_t off;
	struct flusher_file *f;
	size_t len;
	uint8_t *b = message_p(0, 5, &len);
	assert_int_equal(queue_publish(q, &b, len, 1500, 1000, &off, &f, NULL, NULL), 0);
	free(b);
	publish_p(q, 1, 2);
	publish_p(q, 2, 5);
	publish_p(q, 3, 0);
	dropped_count = 0;
	struct queue_msg m;
	assert_int_equal(queue_next(q, 2000, &m, on_drop, NULL), 1);
	assert_int_equal(dropped_count, 1);
	assert_int_equal(body_of(&m), 2);
	free(m.data);
	assert_int_equal(queue_purge(q), 2);
	assert_int_equal(queue_ready_count(q), 0);
	assert_int_equal(next(q, &m), -1);
	publish_p(q, 4, 1);
	publish_p(q, 5, 3);
	assert_int_equal(next(q, &m), 5);
	assert_int_equal(next(q, &m), 4);
	queue_close(q);
}

static void test_priority_restart_keeps_order(void **state)
{
	(void)state;
	struct queue *q = open_pq(true, 10);
	/* 300 messages (several segments), priorities 0..9 shuffled. */
	int prio[300];
	for (int i = 0; i < 300; i++) {
		prio[i] = (i * 37 + 11) % 10;
		publish_p(q, i, prio[i]);
	}
	/* Take 24 of the 30 of priority 9, ack the even ones. */
	struct queue_msg m;
	int taken[24];
	for (int i = 0; i < 24; i++) {
		taken[i] = next(q, &m);
		assert_int_equal(prio[taken[i]], 9);
		if (i % 2 == 0)
			assert_int_equal(queue_ack(q, m.offset), 0);
	}
	queue_close(q);
	/* Reopened without saying the max: dir/priority remembers it. */
	q = open_pq(true, QUEUE_PRIORITY_STORED);
	assert_int_equal(queue_max_priority(q), 10);
	assert_int_equal(queue_ready_count(q), 288);
	int last_level = 11, last_n = -1, seen = 0;
	for (;;) {
		struct queue_msg r;
		int rc = queue_next(q, 2000, &r, NULL, NULL);
		assert_true(rc >= 0);
		if (rc == 0)
			break;
		int n = body_of(&r);
		free(r.data);
		assert_true(prio[n] <= last_level);
		if (prio[n] == last_level)
			assert_true(n > last_n);
		last_level = prio[n];
		last_n = n;
		/* The odd ones taken before are back, flagged. */
		bool was_taken = false;
		for (int i = 1; i < 24; i += 2)
			was_taken |= taken[i] == n;
		if (was_taken)
			assert_true(r.redelivered);
		assert_int_equal(queue_ack(q, r.offset), 0);
		seen++;
	}
	assert_int_equal(seen, 288);
	queue_close(q);
}

/*
 * Random publishes, deliveries, acks, requeues and reopens against a model:
 * each delivery must be the oldest ready message of the highest level.
 */
static void test_priority_random_against_model(void **state)
{
	(void)state;
	enum { N = 1500 };
	static int prio[N], st[N]; /* st: 0 absent, 1 ready, 2 unacked, 3 gone */
	static int64_t offs[N];
	memset(st, 0, sizeof st);
	unsigned seed = 12345;
	struct queue *q = open_pq(true, 4);
	int published = 0;
	for (int step = 0; step < 6000; step++) {
		seed = seed * 1103515245u + 12345u;
		unsigned r = (seed >> 16) % 100;
		if (r < 40 && published < N) {
			prio[published] = (int)((seed >> 8) % 7) - 1; /* -1..5, max 4 */
			offs[published] = publish_p(q, published, prio[published]);
			st[published++] = 1;
		} else if (r < 70) {
			int want = -1;
			for (int i = 0; i < published; i++)
				if (st[i] == 1 && (want < 0 || level_of(prio[i], 4) > level_of(prio[want], 4)))
					want = i;
			struct queue_msg m;
			int n = next(q, &m);
			assert_int_equal(n, want);
			if (n >= 0)
				st[n] = 2;
		} else if (r < 98) {
			/* Ack or requeue one unacked message, picked at random. */
			int cand[N], k = 0;
			for (int i = 0; i < published; i++)
				if (st[i] == 2)
					cand[k++] = i;
			if (k == 0)
				continue;
			int i = cand[(seed >> 4) % (unsigned)k];
			if (r < 88) {
				assert_int_equal(queue_ack(q, offs[i]), 0);
				st[i] = 3;
			} else {
				assert_int_equal(queue_requeue(q, offs[i]), 0);
				st[i] = 1;
			}
		} else {
			queue_close(q);
			q = open_pq(true, QUEUE_PRIORITY_STORED);
			for (int i = 0; i < published; i++)
				if (st[i] == 2)
					st[i] = 1;
		}
		uint64_t ready = 0;
		for (int i = 0; i < published; i++)
			ready += st[i] == 1;
		assert_int_equal(queue_ready_count(q), ready);
	}
	queue_close(q);
}

/* Expiry sums saturate: TTLs and stamps come from clients and from disk. */
static void test_expiry_at_saturates(void **state)
{
	(void)state;
	assert_int_equal(queue_expiry_at(1000, 500), 1500);
	assert_true(queue_expiry_at(1000, INT64_MAX) == INT64_MAX);
	assert_true(queue_expiry_at(INT64_MAX, 1) == INT64_MAX);
	assert_int_equal(queue_expiry_at(INT64_MIN, 5), 0);
	assert_int_equal(queue_expiry_at(-10, 20), 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fifo_ack_and_requeue_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_redelivers_exactly_unacked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_transient_queue_starts_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_length_policies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_and_purge, setup, teardown),
		cmocka_unit_test(test_expiry_at_saturates),
		cmocka_unit_test_setup_teardown(test_discard_expire_and_recovered_ttl, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_priority_order_and_fifo_within_level, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plain_queue_ignores_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_priority_requeue_goes_back_to_its_place, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_priority_max_length_drops_next_to_deliver, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_priority_expiry_and_purge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_priority_restart_keeps_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_priority_random_against_model, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
