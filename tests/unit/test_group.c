/*
 * test_group.c: the Kafka group coordinator's state machine (kafka_group.h)
 * and the durable group offsets (broker/group_offsets.h).
 *
 * The coordinator is driven through its own API from the test thread, with
 * answers delivered to loop threads of a real loop group (as for Kafka
 * connections); each answer is copied into a `struct call` and waited for
 * with a bound. Timing is shortened with group_coordinator_set_timing()
 * (initial delay 50 ms, sessions from 100 ms), so every wait is well under a
 * second. The offsets tests open a real broker in a temp directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/group_offsets.h"
#include "core/config.h"
#include "core/err.h"
#include "kafka/kafka_group.h"

/* Kafka error codes (protocol_errors.html) the coordinator answers with. */
enum {
	KAFKA_NONE = 0,
	KAFKA_COORDINATOR_NOT_AVAILABLE = 15,
	KAFKA_ILLEGAL_GENERATION = 22,
	KAFKA_INCONSISTENT_GROUP_PROTOCOL = 23,
	KAFKA_INVALID_GROUP_ID = 24,
	KAFKA_UNKNOWN_MEMBER_ID = 25,
	KAFKA_INVALID_SESSION_TIMEOUT = 26,
	KAFKA_REBALANCE_IN_PROGRESS = 27,
	KAFKA_INVALID_REQUEST = 42,
	KAFKA_MEMBER_ID_REQUIRED = 79,
	KAFKA_GROUP_MAX_SIZE_REACHED = 81,
	KAFKA_FENCED_INSTANCE_ID = 82,
};

#define S(s) ((struct slice){ (const uint8_t *)(s), strlen(s) })
#define NUL ((struct slice){ NULL, 0 })
#define WAIT_MS 3000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* One JoinGroup or SyncGroup call and its copied answer. */
struct call {
	struct loop *reply;
	bool done;
	bool wrong_loop;
	int16_t error;
	int32_t generation;
	char member_id[512];
	char leader[512];
	char protocol[64];
	size_t n_members;
	char members[8][512];
	char metadata[8][64];
	char assignment[256];
};

struct fixture {
	struct loop_group *loops;
	struct group_coordinator *g;
};

static void copy_slice(char *dst, size_t cap, struct slice s)
{
	size_t n = s.len < cap - 1 ? s.len : cap - 1;
	if (n)
		memcpy(dst, s.data, n);
	dst[n] = 0;
}

static void on_join(void *arg, const struct group_join_result *r)
{
	struct call *c = arg;
	pthread_mutex_lock(&mu);
	c->wrong_loop = loop_current() != c->reply;
	c->error = r->error;
	c->generation = r->generation_id;
	copy_slice(c->member_id, sizeof c->member_id, r->member_id);
	copy_slice(c->leader, sizeof c->leader, r->leader);
	copy_slice(c->protocol, sizeof c->protocol, r->protocol_name);
	c->n_members = r->n_members;
	for (size_t i = 0; i < r->n_members && i < 8; i++) {
		copy_slice(c->members[i], sizeof c->members[i], r->members[i].member_id);
		copy_slice(c->metadata[i], sizeof c->metadata[i], r->members[i].metadata);
	}
	c->done = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void on_sync(void *arg, const struct group_sync_result *r)
{
	struct call *c = arg;
	pthread_mutex_lock(&mu);
	c->wrong_loop = loop_current() != c->reply;
	c->error = r->error;
	copy_slice(c->assignment, sizeof c->assignment, r->assignment);
	copy_slice(c->protocol, sizeof c->protocol, r->protocol_name);
	c->done = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* Waits up to ms for c's answer; returns whether it came (on the right loop). */
static bool wait_call(struct call *c, int ms)
{
	struct timespec end;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += ms / 1000;
	end.tv_nsec += (long)(ms % 1000) * 1000000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&mu);
	while (!c->done && pthread_cond_timedwait(&cv, &mu, &end) == 0)
		;
	bool done = c->done;
	pthread_mutex_unlock(&mu);
	assert_false(c->wrong_loop);
	return done;
}

static bool is_done(struct call *c)
{
	pthread_mutex_lock(&mu);
	bool d = c->done;
	pthread_mutex_unlock(&mu);
	return d;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

struct join_opts {
	const char *group;
	const char *member;      /* "" for a new member */
	const char *instance;    /* NULL: dynamic */
	const char *protos[3];   /* protocol names, preference order */
	const char *meta;        /* metadata for every protocol */
	int32_t session_ms;
	int32_t rebalance_ms;
	bool require_known;
	int loop;                /* reply loop index */
};

static void join(struct fixture *f, struct call *c, const struct join_opts *o)
{
	memset(c, 0, sizeof *c);
	c->reply = loop_group_get(f->loops, o->loop);
	struct group_protocol p[3];
	size_t n = 0;
	for (; n < 3 && o->protos[n]; n++)
		p[n] = (struct group_protocol){ S(o->protos[n]), S(o->meta ? o->meta : "") };
	struct group_join_args a = {
		.group_id = S(o->group),
		.member_id = S(o->member),
		.group_instance_id = o->instance ? S(o->instance) : NUL,
		.client_id = S("cli"),
		.client_host = S("/127.0.0.1"),
		.protocol_type = S("consumer"),
		.session_timeout_ms = o->session_ms ? o->session_ms : 1000,
		.rebalance_timeout_ms = o->rebalance_ms ? o->rebalance_ms : 1000,
		.protocols = p,
		.n_protocols = n,
		.require_known_member_id = o->require_known,
	};
	group_coordinator_join(f->g, &a, c->reply, on_join, c);
}

static void sync_(struct fixture *f, struct call *c, const char *group, const char *member,
		  int32_t generation, const struct group_assignment *as, size_t n)
{
	memset(c, 0, sizeof *c);
	c->reply = loop_group_get(f->loops, 1);
	struct group_sync_args a = {
		.group_id = S(group),
		.member_id = S(member),
		.group_instance_id = NUL,
		.protocol_type = NUL,
		.protocol_name = NUL,
		.generation_id = generation,
		.assignments = as,
		.n_assignments = n,
	};
	group_coordinator_sync(f->g, &a, c->reply, on_sync, c);
}

static int16_t heartbeat(struct fixture *f, const char *group, const char *member, int32_t gen)
{
	return group_coordinator_heartbeat(f->g, S(group), S(member), NUL, gen);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	assert_int_equal(loop_group_start(2, &f->loops), 0);
	assert_int_equal(group_coordinator_new(NULL, f->loops, &f->g), 0);
	group_coordinator_set_timing(f->g, 50, 100);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	group_coordinator_quiesce(f->g);
	assert_int_equal(loop_group_stop(f->loops), 0);
	group_coordinator_free(f->g);
	free(f);
	return 0;
}

/* Two members through MEMBER_ID_REQUIRED into one generation (v4+ flow). */
static void form_group(struct fixture *f, const char *group, char *a_id, char *b_id,
		       int32_t *gen, int32_t session_ms)
{
	struct call c1, c2;
	struct join_opts o = { .group = group, .member = "", .protos = { "range" },
			       .meta = "m", .require_known = true, .session_ms = session_ms,
			       .rebalance_ms = 500 };
	join(f, &c1, &o);
	assert_true(wait_call(&c1, WAIT_MS));
	assert_int_equal(c1.error, KAFKA_MEMBER_ID_REQUIRED);
	assert_true(strncmp(c1.member_id, "cli-", 4) == 0);
	assert_int_equal(strlen(c1.member_id), 4 + 36);
	join(f, &c2, &o);
	assert_true(wait_call(&c2, WAIT_MS));
	assert_int_equal(c2.error, KAFKA_MEMBER_ID_REQUIRED);
	assert_string_not_equal(c1.member_id, c2.member_id);
	strcpy(a_id, c1.member_id);
	strcpy(b_id, c2.member_id);

	o.member = a_id;
	o.meta = "meta-a";
	join(f, &c1, &o);
	o.member = b_id;
	o.meta = "meta-b";
	o.loop = 1;
	join(f, &c2, &o);
	assert_true(wait_call(&c1, WAIT_MS));
	assert_true(wait_call(&c2, WAIT_MS));
	assert_int_equal(c1.error, KAFKA_NONE);
	assert_int_equal(c2.error, KAFKA_NONE);
	assert_int_equal(c1.generation, c2.generation);
	assert_string_equal(c1.leader, c2.leader);
	assert_string_equal(c1.leader, a_id); /* the first to join leads */
	assert_string_equal(c1.protocol, "range");
	assert_int_equal(c1.n_members, 2);
	assert_int_equal(c2.n_members, 0);
	bool a_first = strcmp(c1.members[0], a_id) == 0;
	assert_string_equal(c1.metadata[a_first ? 0 : 1], "meta-a");
	assert_string_equal(c1.metadata[a_first ? 1 : 0], "meta-b");
	*gen = c1.generation;

	/* The follower's SyncGroup waits for the leader's assignment. */
	struct group_assignment as[2] = { { S(a_id), S("assign-a") }, { S(b_id), S("assign-b") } };
	sync_(f, &c2, group, b_id, *gen, NULL, 0);
	sleep_ms(60);
	assert_false(is_done(&c2));
	sync_(f, &c1, group, a_id, *gen, as, 2);
	assert_true(wait_call(&c1, WAIT_MS));
	assert_true(wait_call(&c2, WAIT_MS));
	assert_int_equal(c1.error, KAFKA_NONE);
	assert_int_equal(c2.error, KAFKA_NONE);
	assert_string_equal(c1.assignment, "assign-a");
	assert_string_equal(c2.assignment, "assign-b");
	assert_string_equal(c2.protocol, "range");
}

struct desc_copy {
	enum group_state state;
	size_t n_members;
	char protocol[64];
	char assignment[2][64];
};

static void on_desc(void *arg, const struct group_desc *d)
{
	struct desc_copy *dc = arg;
	dc->state = d->state;
	dc->n_members = d->n_members;
	copy_slice(dc->protocol, sizeof dc->protocol, d->protocol_data);
	for (size_t i = 0; i < d->n_members && i < 2; i++)
		copy_slice(dc->assignment[i], sizeof dc->assignment[i], d->members[i].assignment);
}

static void test_join_sync_heartbeat(void **state)
{
	struct fixture *f = *state;
	char a[512], b[512];
	int32_t gen;
	form_group(f, "g1", a, b, &gen, 1000);
	assert_int_equal(gen, 1);
	assert_int_equal(heartbeat(f, "g1", a, gen), KAFKA_NONE);
	assert_int_equal(heartbeat(f, "g1", b, gen), KAFKA_NONE);
	assert_int_equal(heartbeat(f, "g1", b, gen + 5), KAFKA_ILLEGAL_GENERATION);
	assert_int_equal(heartbeat(f, "g1", "nobody", gen), KAFKA_UNKNOWN_MEMBER_ID);
	assert_int_equal(heartbeat(f, "nogroup", a, gen), KAFKA_UNKNOWN_MEMBER_ID);

	struct desc_copy dc = { 0 };
	assert_int_equal(group_coordinator_describe(f->g, S("g1"), on_desc, &dc), 0);
	assert_int_equal(dc.state, GROUP_STABLE);
	assert_int_equal(dc.n_members, 2);
	assert_string_equal(dc.protocol, "range");
	assert_true(strcmp(dc.assignment[0], "assign-a") == 0 ||
		    strcmp(dc.assignment[1], "assign-a") == 0);
	assert_int_equal(group_coordinator_describe(f->g, S("nope"), on_desc, &dc),
			 -ERR_NOT_FOUND);

	/* A Stable follower rejoining with the same metadata gets the generation back. */
	struct call c;
	struct join_opts o = { .group = "g1", .member = b, .protos = { "range" },
			       .meta = "meta-b", .rebalance_ms = 500 };
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_NONE);
	assert_int_equal(c.generation, gen);
	assert_string_equal(c.leader, a);

	/* SyncGroup in Stable: the stored assignment at once. */
	sync_(f, &c, "g1", b, gen, NULL, 0);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_NONE);
	assert_string_equal(c.assignment, "assign-b");
	sync_(f, &c, "g1", b, gen - 1, NULL, 0);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_ILLEGAL_GENERATION);
	sync_(f, &c, "g1", "stranger", gen, NULL, 0);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_UNKNOWN_MEMBER_ID);
}

static void test_rebalance_new_member(void **state)
{
	struct fixture *f = *state;
	char a[512], b[512];
	int32_t gen;
	form_group(f, "g2", a, b, &gen, 1000);

	/* A third member (v0-3 style: no MEMBER_ID_REQUIRED) starts a rebalance. */
	struct call cc, ca, cb, s;
	struct join_opts o = { .group = "g2", .member = "", .protos = { "range" }, .meta = "meta-c",
			       .rebalance_ms = 500 };
	join(f, &cc, &o);
	sleep_ms(20);
	assert_false(is_done(&cc));
	assert_int_equal(heartbeat(f, "g2", a, gen), KAFKA_REBALANCE_IN_PROGRESS);
	sync_(f, &s, "g2", a, gen, NULL, 0);
	assert_true(wait_call(&s, WAIT_MS));
	assert_int_equal(s.error, KAFKA_REBALANCE_IN_PROGRESS);

	o.member = a;
	o.meta = "meta-a";
	join(f, &ca, &o);
	sleep_ms(20);
	assert_false(is_done(&ca)); /* still waiting for b */
	o.member = b;
	o.meta = "meta-b";
	join(f, &cb, &o);
	/* Everyone rejoined: completes at once, well before the rebalance timeout. */
	assert_true(wait_call(&ca, 400));
	assert_true(wait_call(&cb, 400));
	assert_true(wait_call(&cc, 400));
	assert_int_equal(ca.error, KAFKA_NONE);
	assert_int_equal(ca.generation, gen + 1);
	assert_int_equal(cc.generation, gen + 1);
	assert_string_equal(ca.leader, a);
	assert_int_equal(ca.n_members, 3);
	assert_int_equal(cc.n_members, 0);
	assert_true(strncmp(cc.member_id, "cli-", 4) == 0);
	/* Heartbeats during CompletingRebalance keep the member alive. */
	assert_int_equal(heartbeat(f, "g2", b, gen + 1), KAFKA_NONE);
	assert_int_equal(heartbeat(f, "g2", b, gen), KAFKA_ILLEGAL_GENERATION);
}

static void test_session_expiry(void **state)
{
	struct fixture *f = *state;
	char a[512], b[512];
	int32_t gen;
	form_group(f, "g3", a, b, &gen, 200);
	/* Only a heartbeats; b's 200 ms session runs out and it is removed. */
	int16_t e = KAFKA_NONE;
	for (int i = 0; i < 40 && e == KAFKA_NONE; i++) {
		sleep_ms(50);
		e = heartbeat(f, "g3", a, gen);
	}
	assert_int_equal(e, KAFKA_REBALANCE_IN_PROGRESS);
	assert_int_equal(heartbeat(f, "g3", b, gen), KAFKA_UNKNOWN_MEMBER_ID);
	struct call c;
	struct join_opts o = { .group = "g3", .member = a, .protos = { "range" }, .meta = "meta-a",
			       .session_ms = 200, .rebalance_ms = 500 };
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_NONE);
	assert_int_equal(c.generation, gen + 1);
	assert_int_equal(c.n_members, 1);
	assert_string_equal(c.leader, a);
}

static void test_rebalance_timeout_removes_laggard(void **state)
{
	struct fixture *f = *state;
	char a[512], b[512];
	int32_t gen;
	form_group(f, "g4", a, b, &gen, 5000);
	/* a rejoins (new metadata: rebalance); b never does within 500 ms. */
	struct call ca;
	struct join_opts o = { .group = "g4", .member = a, .protos = { "range" }, .meta = "new",
			       .session_ms = 5000, .rebalance_ms = 500 };
	join(f, &ca, &o);
	sleep_ms(200);
	assert_false(is_done(&ca));
	assert_true(wait_call(&ca, WAIT_MS));
	assert_int_equal(ca.error, KAFKA_NONE);
	assert_int_equal(ca.generation, gen + 1);
	assert_int_equal(ca.n_members, 1);
	assert_int_equal(heartbeat(f, "g4", b, gen), KAFKA_UNKNOWN_MEMBER_ID);
	/* The leader does not sync: after the rebalance timeout it is removed too. */
	for (int i = 0; i < 40 && heartbeat(f, "g4", a, gen + 1) == KAFKA_NONE; i++)
		sleep_ms(50);
	assert_int_equal(heartbeat(f, "g4", a, gen + 1), KAFKA_UNKNOWN_MEMBER_ID);
}

static void test_leave_batch(void **state)
{
	struct fixture *f = *state;
	char a[512], b[512];
	int32_t gen;
	form_group(f, "g5", a, b, &gen, 1000);
	struct group_leave_member lm[2] = { { S(a), NUL, -7 }, { S("ghost"), NUL, -7 } };
	assert_int_equal(group_coordinator_leave(f->g, S("g5"), lm, 2), KAFKA_NONE);
	assert_int_equal(lm[0].error, KAFKA_NONE);
	assert_int_equal(lm[1].error, KAFKA_UNKNOWN_MEMBER_ID);
	assert_int_equal(heartbeat(f, "g5", a, gen), KAFKA_UNKNOWN_MEMBER_ID);
	assert_int_equal(heartbeat(f, "g5", b, gen), KAFKA_REBALANCE_IN_PROGRESS);
	/* b rejoins alone and becomes the leader. */
	struct call c;
	struct join_opts o = { .group = "g5", .member = b, .protos = { "range" }, .meta = "meta-b",
			       .rebalance_ms = 500 };
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_NONE);
	assert_string_equal(c.leader, b);
	/* b leaves too: the group is empty and forgotten. */
	struct group_leave_member lb = { S(b), NUL, -7 };
	assert_int_equal(group_coordinator_leave(f->g, S("g5"), &lb, 1), KAFKA_NONE);
	assert_int_equal(lb.error, KAFKA_NONE);
	struct desc_copy dc;
	assert_int_equal(group_coordinator_describe(f->g, S("g5"), on_desc, &dc), -ERR_NOT_FOUND);
	struct group_leave_member lx = { S(b), NUL, -7 };
	assert_int_equal(group_coordinator_leave(f->g, S("g5"), &lx, 1), KAFKA_NONE);
	assert_int_equal(lx.error, KAFKA_UNKNOWN_MEMBER_ID);
}

static void test_protocol_selection(void **state)
{
	struct fixture *f = *state;
	struct call c1, c2, c3;
	struct join_opts o1 = { .group = "g6", .member = "", .protos = { "roundrobin", "range" },
				.meta = "x" };
	struct join_opts o2 = { .group = "g6", .member = "", .protos = { "range", "sticky" },
				.meta = "y", .loop = 1 };
	join(f, &c1, &o1);
	join(f, &c2, &o2);
	/* No common protocol with both: refused at once. */
	struct join_opts o3 = { .group = "g6", .member = "", .protos = { "sticky" }, .meta = "z" };
	join(f, &c3, &o3);
	assert_true(wait_call(&c3, WAIT_MS));
	assert_int_equal(c3.error, KAFKA_INCONSISTENT_GROUP_PROTOCOL);
	assert_true(wait_call(&c1, WAIT_MS));
	assert_true(wait_call(&c2, WAIT_MS));
	assert_int_equal(c1.error, KAFKA_NONE);
	assert_string_equal(c1.protocol, "range");
	assert_string_equal(c2.protocol, "range");
	assert_int_equal(c1.generation, 1);
	/* The leader's member list carries the metadata of the chosen protocol. */
	const struct call *leader = strcmp(c1.leader, c1.member_id) == 0 ? &c1 : &c2;
	assert_int_equal(leader->n_members, 2);
}

/* Votes beat the leader's preference; ties would go to the leader's order. */
static void test_protocol_vote(void **state)
{
	struct fixture *f = *state;
	struct call c[3];
	struct join_opts o[3] = {
		{ .group = "gv", .member = "", .protos = { "rr", "range" }, .meta = "a" },
		{ .group = "gv", .member = "", .protos = { "range", "rr" }, .meta = "b" },
		{ .group = "gv", .member = "", .protos = { "range", "rr" }, .meta = "c" },
	};
	for (int i = 0; i < 3; i++)
		join(f, &c[i], &o[i]);
	for (int i = 0; i < 3; i++) {
		assert_true(wait_call(&c[i], WAIT_MS));
		assert_int_equal(c[i].error, KAFKA_NONE);
		assert_string_equal(c[i].protocol, "range");
	}
	assert_string_equal(c[0].leader, c[0].member_id);
	assert_int_equal(c[0].n_members, 3);
	for (size_t i = 0; i < 3; i++) /* the leader sees each member's "range" metadata */
		assert_int_equal(strlen(c[0].metadata[i]), 1);
}

static void test_commit_check(void **state)
{
	struct fixture *f = *state;
	struct group_coordinator *g = f->g;
	/* No live group: simple commits only. */
	assert_int_equal(group_coordinator_commit_check(g, S("simple"), S(""), NUL, -1), KAFKA_NONE);
	assert_int_equal(group_coordinator_commit_check(g, S("simple"), S("m"), NUL, 3),
			 KAFKA_ILLEGAL_GENERATION);
	assert_int_equal(group_coordinator_commit_check(g, S(""), S(""), NUL, -1),
			 KAFKA_INVALID_GROUP_ID);
	char a[512], b[512];
	int32_t gen;
	form_group(f, "g7", a, b, &gen, 1000);
	assert_int_equal(group_coordinator_commit_check(g, S("g7"), S(a), NUL, gen), KAFKA_NONE);
	assert_int_equal(group_coordinator_commit_check(g, S("g7"), S(a), NUL, gen + 1),
			 KAFKA_ILLEGAL_GENERATION);
	assert_int_equal(group_coordinator_commit_check(g, S("g7"), S("who"), NUL, gen),
			 KAFKA_UNKNOWN_MEMBER_ID);
	assert_int_equal(group_coordinator_commit_check(g, S("g7"), S(""), NUL, -1),
			 KAFKA_UNKNOWN_MEMBER_ID);
	/* A new member joins (no MEMBER_ID_REQUIRED): PreparingRebalance still takes commits. */
	struct call c, ca, cb;
	struct join_opts o = { .group = "g7", .member = "", .protos = { "range" }, .meta = "c",
			       .rebalance_ms = 500 };
	join(f, &c, &o);
	sleep_ms(20);
	assert_int_equal(group_coordinator_commit_check(g, S("g7"), S(a), NUL, gen), KAFKA_NONE);
	o.member = a;
	join(f, &ca, &o);
	o.member = b;
	join(f, &cb, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_true(wait_call(&ca, WAIT_MS));
	assert_true(wait_call(&cb, WAIT_MS));
	/* CompletingRebalance: the commit must wait for the new assignment. */
	assert_int_equal(group_coordinator_commit_check(g, S("g7"), S(a), NUL, gen + 1),
			 KAFKA_REBALANCE_IN_PROGRESS);
}

static void test_limits(void **state)
{
	struct fixture *f = *state;
	struct call c;
	struct join_opts o = { .group = "", .member = "", .protos = { "range" }, .meta = "m" };
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_INVALID_GROUP_ID);
	char *big = malloc(3000);
	assert_non_null(big);
	memset(big, 'g', 2999);
	big[2999] = 0;
	o.group = big;
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_INVALID_GROUP_ID);
	o.group = "lim";
	o.session_ms = 10; /* below the minimum */
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_INVALID_SESSION_TIMEOUT);
	o.session_ms = 0;
	o.protos[0] = NULL;
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_INCONSISTENT_GROUP_PROTOCOL);
	/* Metadata over the cap. */
	char *meta = malloc((2u << 20) + 1);
	assert_non_null(meta);
	memset(meta, 'x', 2u << 20);
	meta[2u << 20] = 0;
	o.protos[0] = "range";
	o.meta = meta;
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_INVALID_REQUEST);
	free(meta);
	free(big);
	/* Unknown member of an unknown group. */
	o.meta = "m";
	o.member = "made-up";
	join(f, &c, &o);
	assert_true(wait_call(&c, WAIT_MS));
	assert_int_equal(c.error, KAFKA_UNKNOWN_MEMBER_ID);
	/* Members per group are capped (pending member ids count). */
	o.member = "";
	o.require_known = true;
	o.session_ms = 5000;
	int16_t last = KAFKA_MEMBER_ID_REQUIRED;
	int n = 0;
	for (; n < 1100 && last == KAFKA_MEMBER_ID_REQUIRED; n++) {
		join(f, &c, &o);
		assert_true(wait_call(&c, WAIT_MS));
		last = c.error;
	}
	assert_int_equal(last, KAFKA_GROUP_MAX_SIZE_REACHED);
	assert_int_equal(n, 1001);
}

static void test_static_member_fenced(void **state)
{
	struct fixture *f = *state;
	struct call c1, c2;
	/* Static members skip MEMBER_ID_REQUIRED. */
	struct join_opts o = { .group = "g8", .member = "", .instance = "inst-1",
			       .protos = { "range" }, .meta = "m", .require_known = true,
			       .rebalance_ms = 300 };
	join(f, &c1, &o);
	assert_true(wait_call(&c1, WAIT_MS));
	assert_int_equal(c1.error, KAFKA_NONE);
	assert_true(strncmp(c1.member_id, "inst-1-", 7) == 0);
	/* The same instance restarts: the old member id is fenced. */
	join(f, &c2, &o);
	assert_true(wait_call(&c2, WAIT_MS));
	assert_int_equal(c2.error, KAFKA_NONE);
	assert_string_not_equal(c1.member_id, c2.member_id);
	assert_int_equal(group_coordinator_heartbeat(f->g, S("g8"), S(c1.member_id), S("inst-1"),
						     c2.generation),
			 KAFKA_FENCED_INSTANCE_ID);
	assert_int_equal(group_coordinator_heartbeat(f->g, S("g8"), S(c2.member_id), S("inst-1"),
						     c2.generation),
			 KAFKA_NONE);
}

static void test_quiesce_answers_waiters(void **state)
{
	struct fixture *f = *state;
	char a[512], b[512];
	int32_t gen;
	form_group(f, "g9", a, b, &gen, 1000);
	struct call c, s;
	struct join_opts o = { .group = "g9", .member = a, .protos = { "range" }, .meta = "new",
			       .rebalance_ms = 2000 };
	join(f, &c, &o); /* waits for b, up to 2 s */
	sleep_ms(20);
	assert_false(is_done(&c));
	group_coordinator_quiesce(f->g);
	assert_true(wait_call(&c, 500));
	assert_int_equal(c.error, KAFKA_COORDINATOR_NOT_AVAILABLE);
	join(f, &c, &o);
	assert_true(wait_call(&c, 500));
	assert_int_equal(c.error, KAFKA_COORDINATOR_NOT_AVAILABLE);
	sync_(f, &s, "g9", b, gen, NULL, 0);
	assert_true(wait_call(&s, 500));
	assert_int_equal(s.error, KAFKA_COORDINATOR_NOT_AVAILABLE);
}

struct listed {
	int n;
	bool saw_g10;
};

static void on_list(void *arg, struct slice id, struct slice type, enum group_state st)
{
	struct listed *l = arg;
	l->n++;
	if (id.len == 3 && memcmp(id.data, "g10", 3) == 0) {
		l->saw_g10 = true;
		assert_int_equal(st, GROUP_STABLE);
		assert_int_equal(type.len, 8);
	}
}

static void test_list(void **state)
{
	struct fixture *f = *state;
	char a[512], b[512];
	int32_t gen;
	form_group(f, "g10", a, b, &gen, 1000);
	struct listed l = { 0 };
	group_coordinator_list(f->g, on_list, &l);
	assert_true(l.saw_g10);
	assert_int_equal(l.n, 1);
	assert_string_equal(group_state_name(GROUP_COMPLETING_REBALANCE), "CompletingRebalance");
}

/* ---- durable offsets ---- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

struct ofs_fixture {
	char dir[64];
	struct loop_group *loops;
	struct broker *b;
};

/* Opens the broker on fresh loops (broker_close wants the loops stopped first). */
static void ofs_open(struct ofs_fixture *o)
{
	assert_int_equal(loop_group_start(1, &o->loops), 0);
	struct config cfg;
	config_defaults(&cfg);
	snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", o->dir);
	assert_int_equal(broker_open(&cfg, o->loops, &o->b), 0);
}

static void ofs_close(struct ofs_fixture *o)
{
	broker_quiesce(o->b);
	assert_int_equal(loop_group_stop(o->loops), 0);
	broker_close(o->b);
	o->b = NULL;
}

static void *alloc_cb(void *ctx, size_t len)
{
	(void)ctx;
	static char buf[4][64];
	static int i;
	assert_true(len <= 64);
	return buf[i++ % 4];
}

struct rows {
	int n;
	char last[64];
};

static int on_row(void *arg, const struct group_offset *o)
{
	struct rows *r = arg;
	r->n++;
	copy_slice(r->last, sizeof r->last, o->topic);
	return 0;
}

static int on_group(void *arg, struct slice g)
{
	int *n = arg;
	if (g.len == 2 && memcmp(g.data, "cg", 2) == 0)
		(*n)++;
	return 0;
}

static void test_group_offsets(void **state)
{
	(void)state;
	struct ofs_fixture o = { .dir = "/tmp/sluice-group-XXXXXX" };
	assert_non_null(mkdtemp(o.dir));
	ofs_open(&o);
	char err[128];
	assert_int_equal(broker_topic_create(o.b, S("t"), 2, NULL, 0, false, err, sizeof err), 0);

	char big[GROUP_OFFSETS_METADATA_MAX + 1];
	memset(big, 'x', sizeof big);
	struct group_offset c[5] = {
		{ .topic = S("t"), .partition = 0, .offset = 5, .leader_epoch = 2, .metadata = S("m") },
		{ .topic = S("t"), .partition = 1, .offset = 7, .leader_epoch = -1, .metadata = NUL },
		{ .topic = S("t"), .partition = 9, .offset = 1, .metadata = S("") },
		{ .topic = S("nope"), .partition = 0, .offset = 1, .metadata = S("") },
		{ .topic = S("t"), .partition = 0, .offset = 1,
		  .metadata = { (const uint8_t *)big, sizeof big } },
	};
	assert_int_equal(group_offsets_commit(o.b, S("cg"), c, 5), 0);
	assert_int_equal(c[0].err, 0);
	assert_int_equal(c[1].err, 0);
	assert_int_equal(c[2].err, -ERR_NOT_FOUND);
	assert_int_equal(c[3].err, -ERR_NOT_FOUND);
	assert_int_equal(c[4].err, -ERR_TOO_LARGE);
	assert_int_equal(group_offsets_commit(o.b, S(""), c, 1), -ERR_INVALID);

	/* Durable across a restart. */
	ofs_close(&o);
	ofs_open(&o);
	struct group_offset q[3] = { { .topic = S("t"), .partition = 0 },
				     { .topic = S("t"), .partition = 1 },
				     { .topic = S("other"), .partition = 0 } };
	assert_int_equal(group_offsets_fetch(o.b, S("cg"), q, 3, alloc_cb, NULL), 0);
	assert_int_equal(q[0].offset, 5);
	assert_int_equal(q[0].leader_epoch, 2);
	assert_int_equal(q[0].metadata.len, 1);
	assert_memory_equal(q[0].metadata.data, "m", 1);
	assert_int_equal(q[1].offset, 7);
	assert_null(q[1].metadata.data); /* null metadata stays null */
	assert_int_equal(q[2].offset, -1);
	assert_non_null(q[2].metadata.data);
	assert_int_equal(group_offsets_fetch(o.b, S("unknown"), q, 1, alloc_cb, NULL), 0);
	assert_int_equal(q[0].offset, -1);

	struct rows r = { 0 };
	assert_int_equal(group_offsets_list(o.b, S("cg"), on_row, &r), 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.last, "t");
	int seen = 0;
	assert_int_equal(group_offsets_groups(o.b, on_group, &seen), 0);
	assert_int_equal(seen, 1);
	assert_int_equal(group_offsets_exists(o.b, S("cg")), 1);
	assert_int_equal(group_offsets_exists(o.b, S("zz")), 0);

	/* A later commit replaces the earlier one. */
	struct group_offset c2 = { .topic = S("t"), .partition = 0, .offset = 50,
				   .leader_epoch = -1, .metadata = S("") };
	assert_int_equal(group_offsets_commit(o.b, S("cg"), &c2, 1), 0);
	assert_int_equal(group_offsets_fetch(o.b, S("cg"), q, 1, alloc_cb, NULL), 0);
	assert_int_equal(q[0].offset, 50);

	ofs_close(&o);
	nftw(o.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_join_sync_heartbeat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rebalance_new_member, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rebalance_timeout_removes_laggard, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_leave_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protocol_selection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protocol_vote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_static_member_fenced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quiesce_answers_waiters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list, setup, teardown),
		cmocka_unit_test(test_group_offsets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
