/*
 * kafka_group.c: the Kafka group coordinator (Kafka's "classic" group
 * protocol: JoinGroup / SyncGroup / Heartbeat / LeaveGroup) and the request
 * handlers for it, FindCoordinator, DescribeGroups and ListGroups.
 *
 * Every group moves through Kafka's states:
 *
 *            join (first member)             all members rejoined, or the
 *   Empty ─────────────────────► Preparing ── rebalance timeout passed ──► Completing
 *     ▲      (waits the initial   Rebalance     (generation + 1, a leader,   Rebalance
 *     │       delay for more)        ▲  ▲        protocol chosen; JoinGroup     │
 *     │                              │  │        answers go out)               │ leader's
 *     └─── no member left ───────────┘  │                                      │ SyncGroup
 *                                       │ join / leave / session expiry        ▼
 *                                       └───────────────────────────────── Stable
 *
 * JoinGroup answers wait for the rebalance to complete, and followers'
 * SyncGroup answers wait for the leader's SyncGroup; both are "waiters" the
 * member holds (reply loop, callback, argument). Heartbeats answer
 * REBALANCE_IN_PROGRESS while a rebalance is prepared, which sends members
 * back to JoinGroup. A member whose session passes without a heartbeat (and
 * that is not waiting in JoinGroup or SyncGroup) is removed, which starts a
 * rebalance; members that do not rejoin within the rebalance timeout, or do
 * not send SyncGroup within it after the join completed, are removed too.
 *
 * Threads. Kafka connections live on every loop thread, and group traffic is
 * small (a heartbeat every few seconds per member), so one mutex guards the
 * whole coordinator and every call runs on its caller's thread. Waiting
 * answers are built under the lock into self-contained messages (an arena
 * with copies of everything) and posted to the waiter's loop, where the
 * callback runs; an answer known at once is delivered after the lock is
 * released, inline when the caller is on the reply loop (the request
 * handlers always are). Deadlines (initial delay, rebalance and sync
 * timeouts, sessions) are served by ONE libuv timer on loop 0: an operation
 * that creates a deadline earlier than the timer's posts a re-arm message to
 * loop 0; the timer scans all groups, handles what expired and re-arms for
 * the earliest deadline left. Heartbeats only push deadlines later, so they
 * never touch the timer.
 *
 * Limits (hostile clients): group ids up to GROUP_ID_MAX bytes, at most
 * GROUP_MEMBERS_MAX members (plus pending member ids) per group, COORD_GROUPS_MAX
 * groups, and bytes kept (metadata, assignments, ids) capped per member, per
 * group and overall. Everything kept is copied out of the request frame.
 */
#include "kafka/kafka_group.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/types.h>

#include "broker/group_offsets.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "kafka/kafka_arena.h"
#include "kafka/kafka_int.h"

/* Kafka error codes not in enum kafka_error (protocol_errors.html). */
#define GRP_GROUP_MAX_SIZE_REACHED 81

#define GROUP_ID_MAX 1024                  /* bytes of a group id we keep state for */
#define GROUP_MEMBERS_MAX 1000             /* members + pending member ids per group */
#define GROUP_PROTOCOLS_MAX 16             /* protocols one member may offer */
#define GROUP_NAME_MAX 255                 /* protocol type and protocol names */
#define GROUP_INSTANCE_ID_MAX 249          /* group.instance.id (Kafka's limit) */
#define GROUP_CLIENT_ID_KEEP 255           /* client id bytes used in member ids */
#define GROUP_METADATA_MAX (1u << 20)      /* one member's protocol metadata, all protocols */
#define GROUP_ASSIGNMENT_MAX (1u << 20)    /* one member's assignment */
#define GROUP_BYTES_MAX (64u << 20)        /* everything one group keeps */
#define COORD_GROUPS_MAX 10000             /* groups held in memory */
#define COORD_BYTES_MAX (512u << 20)       /* everything the coordinator keeps */
#define COORD_BUCKETS 1024
#define GROUP_MAX_SESSION_MS 1800000       /* group.max.session.timeout.ms */
#define GROUP_MAX_REBALANCE_MS 1800000
#define GROUP_DEFAULT_INITIAL_DELAY_MS 100 /* group.initial.rebalance.delay.ms */
#define GROUP_DEFAULT_MIN_SESSION_MS 6000  /* group.min.session.timeout.ms */
#define RESULT_ARENA_MAX (GROUP_BYTES_MAX + (8u << 20))

static const uint8_t empty_bytes[1];

/* ------------------------------------------------------------------------ */
/* Owned byte strings                                                       */

struct blob {
	uint8_t *data; /* owned; NULL when null */
	size_t len;
};

static struct slice blob_slice(const struct blob *b)
{
	return (struct slice){ b->data, b->len };
}

static bool slice_eq(struct slice a, struct slice b)
{
	if ((a.data == NULL) != (b.data == NULL))
		return false;
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool blob_eq(const struct blob *b, struct slice s)
{
	return slice_eq(blob_slice(b), s);
}

/* Replaces *b with a copy of s (null stays null). 0 or -ERR_NOMEM. */
static int blob_set(struct blob *b, struct slice s)
{
	uint8_t *p = NULL;
	if (s.data) {
		p = malloc(s.len ? s.len : 1);
		if (!p)
			return -ERR_NOMEM;
		if (s.len)
			memcpy(p, s.data, s.len);
	}
	free(b->data);
	b->data = p;
	b->len = s.data ? s.len : 0;
	return 0;
}

static void blob_fini(struct blob *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

/* A non-null slice: s, or "" when s is null (for non-nullable wire fields). */
static struct slice or_empty(struct slice s)
{
	return s.data ? s : (struct slice){ empty_bytes, 0 };
}

static struct slice cstr(const char *s)
{
	return (struct slice){ (const uint8_t *)s, strlen(s) };
}

/* ------------------------------------------------------------------------ */
/* State                                                                    */

struct join_waiter {
	struct loop *loop;
	group_join_cb cb; /* NULL: none */
	void *arg;
};

struct sync_waiter {
	struct loop *loop;
	group_sync_cb cb; /* NULL: none */
	void *arg;
};

struct proto {
	struct blob name;
	struct blob meta;
};

struct member {
	struct blob id;
	struct blob instance_id;   /* null: dynamic member */
	struct blob client_id;
	struct blob client_host;
	int32_t session_ms;
	int32_t rebalance_ms;
	struct proto *protos;      /* owned, n_protos entries, preference order */
	size_t n_protos;
	struct blob assignment;
	int64_t session_deadline;  /* monotonic ms; ignored while a waiter is held */
	struct join_waiter join;
	struct sync_waiter sync;
	bool synced;               /* sent SyncGroup in this generation */
	size_t bytes;              /* counted in group and coordinator bytes */
};

/* A member id handed out with MEMBER_ID_REQUIRED, not joined yet. */
struct pending {
	struct blob id;
	int64_t deadline;
};

struct group {
	struct group *next;        /* hash chain */
	struct blob id;
	enum group_state state;
	int32_t generation;
	struct blob protocol_type; /* null until the first member */
	struct blob protocol_name; /* null unless a generation is running */
	struct member **members;   /* owned array of owned members */
	size_t n_members, cap_members;
	struct member *leader;     /* one of members, NULL when none */
	struct pending *pending;
	size_t n_pending, cap_pending;
	int64_t join_deadline;     /* PreparingRebalance: complete by then */
	int64_t join_limit;        /* initial join: never extend past this */
	int64_t sync_deadline;     /* CompletingRebalance: remove members not synced */
	bool initial_join;         /* the rebalance started from Empty */
	bool new_member_added;     /* during the initial delay */
	size_t bytes;
};

struct group_coordinator {
	pthread_mutex_t lock;      /* guards everything below except timer fields */
	struct broker *broker;
	struct loop *timer_loop;
	struct group *buckets[COORD_BUCKETS];
	size_t n_groups;
	size_t bytes;
	int32_t initial_delay_ms;
	int32_t min_session_ms;
	bool closing;
	int64_t wake_ms;           /* when the timer fires (or a re-arm is posted for) */
	bool rearm_posted;
	bool in_scan;
	/* timer_loop thread only: */
	uv_timer_t timer;
	bool timer_inited;
};

static int64_t now_ms(void)
{
	return clock_mono_ns() / 1000000;
}

const char *group_state_name(enum group_state s)
{
	switch (s) {
	case GROUP_EMPTY: return "Empty";
	case GROUP_PREPARING_REBALANCE: return "PreparingRebalance";
	case GROUP_COMPLETING_REBALANCE: return "CompletingRebalance";
	case GROUP_STABLE: return "Stable";
	default: return "Dead";
	}
}

/* ------------------------------------------------------------------------ */
/* Answers: self-contained messages run on the waiter's loop                */

struct join_msg {
	group_join_cb cb;
	void *arg;
	struct group_join_result res;
	struct kafka_arena mem;    /* copies of every slice in res */
};

struct sync_msg {
	group_sync_cb cb;
	void *arg;
	struct group_sync_result res;
	struct kafka_arena mem;
};

/* Copies s into a; sets *err on failure (null stays null). */
static struct slice arena_copy(struct kafka_arena *a, struct slice s, int *err)
{
	if (!s.data)
		return s;
	if (s.len == 0)
		return (struct slice){ empty_bytes, 0 };
	uint8_t *p = kafka_arena_alloc(a, s.len);
	if (!p) {
		*err = -ERR_NOMEM;
		return (struct slice){ empty_bytes, 0 };
	}
	memcpy(p, s.data, s.len);
	return (struct slice){ p, s.len };
}

static void join_msg_run(void *arg)
{
	struct join_msg *m = arg;
	m->cb(m->arg, &m->res);
	kafka_arena_fini(&m->mem);
	free(m);
}

static void sync_msg_run(void *arg)
{
	struct sync_msg *m = arg;
	m->cb(m->arg, &m->res);
	kafka_arena_fini(&m->mem);
	free(m);
}

/* Posts fn(msg) to loop; if the loop is gone the answer is dropped (logged). */
static void post_msg(struct loop *loop, loop_fn fn, void *msg, struct kafka_arena *mem)
{
	if (loop_post(loop, fn, msg) == 0)
		return;
	diag_warn("kafka", "group coordinator: loop stopping, an answer was dropped");
	kafka_arena_fini(mem);
	free(msg);
}

/* Runs an immediate answer: inline on its own loop, else posted. */
static void deliver(struct loop *loop, loop_fn fn, void *msg, struct kafka_arena *mem)
{
	if (loop_current() == loop)
		fn(msg);
	else
		post_msg(loop, fn, msg, mem);
}

/* A JoinGroup error answer (NULL only when out of memory). */
static struct join_msg *join_error(const struct join_waiter *w, int16_t error, struct slice member_id)
{
	struct join_msg *m = calloc(1, sizeof *m);
	if (!m) {
		diag_error("kafka", "group coordinator: out of memory answering JoinGroup");
		return NULL;
	}
	kafka_arena_init(&m->mem, RESULT_ARENA_MAX);
	m->cb = w->cb;
	m->arg = w->arg;
	int err = 0;
	m->res.error = error;
	m->res.generation_id = -1;
	m->res.member_id = arena_copy(&m->mem, or_empty(member_id), &err);
	m->res.leader = (struct slice){ empty_bytes, 0 };
	return m;
}

/* The JoinGroup answer for member m of a group that just completed a join. */
static struct join_msg *join_success(const struct group *grp, const struct member *m,
				     const struct join_waiter *w, bool with_members)
{
	struct join_msg *msg = join_error(w, KAFKA_NONE, blob_slice(&m->id));
	if (!msg)
		return NULL;
	struct kafka_arena *a = &msg->mem;
	int err = 0;
	struct group_join_result *r = &msg->res;
	r->generation_id = grp->generation;
	r->protocol_type = arena_copy(a, blob_slice(&grp->protocol_type), &err);
	r->protocol_name = arena_copy(a, blob_slice(&grp->protocol_name), &err);
	r->leader = arena_copy(a, or_empty(grp->leader ? blob_slice(&grp->leader->id)
						     : (struct slice){ NULL, 0 }), &err);
	if (with_members && grp->n_members > 0) {
		struct group_join_member *jm =
			kafka_arena_alloc_array(a, grp->n_members, sizeof *jm);
		if (!jm)
			err = -ERR_NOMEM;
		for (size_t i = 0; jm && i < grp->n_members; i++) {
			const struct member *o = grp->members[i];
			struct slice meta = { empty_bytes, 0 };
			for (size_t k = 0; k < o->n_protos; k++)
				if (blob_eq(&o->protos[k].name, blob_slice(&grp->protocol_name)))
					meta = or_empty(blob_slice(&o->protos[k].meta));
			jm[i].member_id = arena_copy(a, blob_slice(&o->id), &err);
			jm[i].group_instance_id = arena_copy(a, blob_slice(&o->instance_id), &err);
			jm[i].metadata = arena_copy(a, meta, &err);
		}
		r->members = jm;
		r->n_members = jm ? grp->n_members : 0;
	}
	if (err) {
		diag_error("kafka", "group coordinator: out of memory building a JoinGroup answer");
		r->error = KAFKA_UNKNOWN_SERVER_ERROR;
		r->members = NULL;
		r->n_members = 0;
	}
	return msg;
}

static struct sync_msg *sync_answer_new(const struct sync_waiter *w, int16_t error,
					const struct group *grp, const struct member *m)
{
	struct sync_msg *msg = calloc(1, sizeof *msg);
	if (!msg) {
		diag_error("kafka", "group coordinator: out of memory answering SyncGroup");
		return NULL;
	}
	kafka_arena_init(&msg->mem, RESULT_ARENA_MAX);
	msg->cb = w->cb;
	msg->arg = w->arg;
	msg->res.error = error;
	msg->res.assignment = (struct slice){ empty_bytes, 0 };
	if (error == KAFKA_NONE && grp && m) {
		int err = 0;
		msg->res.protocol_type = arena_copy(&msg->mem, blob_slice(&grp->protocol_type), &err);
		msg->res.protocol_name = arena_copy(&msg->mem, blob_slice(&grp->protocol_name), &err);
		msg->res.assignment = arena_copy(&msg->mem, or_empty(blob_slice(&m->assignment)),
						 &err);
		if (err) {
			msg->res = (struct group_sync_result){ .error = KAFKA_UNKNOWN_SERVER_ERROR,
							       .assignment = { empty_bytes, 0 } };
		}
	}
	return msg;
}

/* Answers and clears m's waiting JoinGroup (posted: the lock is held). */
static void answer_join(struct member *m, struct join_msg *msg)
{
	struct loop *loop = m->join.loop;
	m->join.cb = NULL;
	if (msg)
		post_msg(loop, join_msg_run, msg, &msg->mem);
}

static void fail_join(struct member *m, int16_t error)
{
	if (m->join.cb)
		answer_join(m, join_error(&m->join, error, blob_slice(&m->id)));
}

/* Answers and clears m's waiting SyncGroup (posted). */
static void answer_sync(struct member *m, int16_t error, const struct group *grp)
{
	if (!m->sync.cb)
		return;
	struct sync_msg *msg = sync_answer_new(&m->sync, error, grp, m);
	struct loop *loop = m->sync.loop;
	m->sync.cb = NULL;
	if (msg)
		post_msg(loop, sync_msg_run, msg, &msg->mem);
}

/* ------------------------------------------------------------------------ */
/* The timer                                                                */

static void timer_cb(uv_timer_t *t);

/* Timer loop: (re)starts the timer for wake_ms. */
static void timer_arm(struct group_coordinator *g, int64_t when)
{
	if (!g->timer_inited) {
		if (uv_timer_init(loop_uv(g->timer_loop), &g->timer) != 0)
			return;
		g->timer.data = g;
		g->timer_inited = true;
	}
	if (when == INT64_MAX) {
		uv_timer_stop(&g->timer);
		return;
	}
	int64_t delay = when - now_ms();
	uv_timer_start(&g->timer, timer_cb, delay > 0 ? (uint64_t)delay : 0, 0);
}

static void rearm_msg(void *arg)
{
	struct group_coordinator *g = arg;
	pthread_mutex_lock(&g->lock);
	g->rearm_posted = false;
	int64_t when = g->wake_ms;
	pthread_mutex_unlock(&g->lock);
	timer_arm(g, when);
}

/* Makes sure the timer fires by `when` (lock held). */
static void wake_at(struct group_coordinator *g, int64_t when)
{
	if (when >= g->wake_ms)
		return;
	g->wake_ms = when;
	if (g->in_scan || g->rearm_posted)
		return;
	g->rearm_posted = true;
	if (loop_post(g->timer_loop, rearm_msg, g) != 0)
		g->rearm_posted = false;
}

/* ------------------------------------------------------------------------ */
/* Groups and members                                                       */

static uint32_t hash_id(struct slice s)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < s.len; i++)
		h = (h ^ s.data[i]) * 16777619u;
	return h;
}

static struct group *group_find(struct group_coordinator *g, struct slice id)
{
	for (struct group *grp = g->buckets[hash_id(id) % COORD_BUCKETS]; grp; grp = grp->next)
		if (grp->id.len == id.len && memcmp(grp->id.data, id.data, id.len) == 0)
			return grp;
	return NULL;
}

static void account(struct group_coordinator *g, struct group *grp, size_t add, size_t sub)
{
	grp->bytes = grp->bytes + add - sub;
	g->bytes = g->bytes + add - sub;
}

/* Whether add more bytes fit the group's and the coordinator's caps. */
static bool bytes_fit(const struct group_coordinator *g, const struct group *grp, size_t add)
{
	return add <= GROUP_BYTES_MAX - grp->bytes && add <= COORD_BYTES_MAX - g->bytes;
}

static struct group *group_create(struct group_coordinator *g, struct slice id)
{
	if (g->n_groups >= COORD_GROUPS_MAX || !bytes_fit(g, &(struct group){ 0 }, id.len + 256))
		return NULL;
	struct group *grp = calloc(1, sizeof *grp);
	if (!grp || blob_set(&grp->id, or_empty(id))) {
		free(grp);
		return NULL;
	}
	grp->state = GROUP_EMPTY;
	size_t b = hash_id(id) % COORD_BUCKETS;
	grp->next = g->buckets[b];
	g->buckets[b] = grp;
	g->n_groups++;
	account(g, grp, id.len + 256, 0);
	return grp;
}

static void member_free(struct group_coordinator *g, struct group *grp, struct member *m)
{
	account(g, grp, 0, m->bytes);
	blob_fini(&m->id);
	blob_fini(&m->instance_id);
	blob_fini(&m->client_id);
	blob_fini(&m->client_host);
	for (size_t i = 0; i < m->n_protos; i++) {
		blob_fini(&m->protos[i].name);
		blob_fini(&m->protos[i].meta);
	}
	free(m->protos);
	blob_fini(&m->assignment);
	free(m);
}

/* Unlinks and frees a group; its members' waiters must have been answered. */
static void group_destroy(struct group_coordinator *g, struct group *grp)
{
	struct group **pp = &g->buckets[hash_id(blob_slice(&grp->id)) % COORD_BUCKETS];
	while (*pp && *pp != grp)
		pp = &(*pp)->next;
	if (*pp)
		*pp = grp->next;
	g->n_groups--;
	for (size_t i = 0; i < grp->n_members; i++)
		member_free(g, grp, grp->members[i]);
	free(grp->members);
	for (size_t i = 0; i < grp->n_pending; i++) {
		account(g, grp, 0, grp->pending[i].id.len + 64);
		blob_fini(&grp->pending[i].id);
	}
	free(grp->pending);
	account(g, grp, 0, grp->id.len + 256);
	blob_fini(&grp->id);
	blob_fini(&grp->protocol_type);
	blob_fini(&grp->protocol_name);
	free(grp);
}

/* Frees an empty group with nothing pending: it lives on only as committed
 * offsets (ListGroups and DescribeGroups find it in the catalog). */
static bool group_maybe_free(struct group_coordinator *g, struct group *grp)
{
	if (grp->state != GROUP_EMPTY || grp->n_members > 0 || grp->n_pending > 0)
		return false;
	group_destroy(g, grp);
	return true;
}

static struct member *member_find(const struct group *grp, struct slice id)
{
	for (size_t i = 0; i < grp->n_members; i++)
		if (blob_eq(&grp->members[i]->id, id))
			return grp->members[i];
	return NULL;
}

static struct member *member_by_instance(const struct group *grp, struct slice instance)
{
	if (!instance.data)
		return NULL;
	for (size_t i = 0; i < grp->n_members; i++)
		if (blob_eq(&grp->members[i]->instance_id, instance))
			return grp->members[i];
	return NULL;
}

static ssize_t pending_find(const struct group *grp, struct slice id)
{
	if (id.len == 0)
		return -1;
	for (size_t i = 0; i < grp->n_pending; i++)
		if (blob_eq(&grp->pending[i].id, id))
			return (ssize_t)i;
	return -1;
}

static void pending_remove(struct group_coordinator *g, struct group *grp, size_t i)
{
	account(g, grp, 0, grp->pending[i].id.len + 64);
	blob_fini(&grp->pending[i].id);
	grp->pending[i] = grp->pending[--grp->n_pending];
}

static int pending_add(struct group_coordinator *g, struct group *grp, struct slice id,
		       int64_t deadline)
{
	if (!bytes_fit(g, grp, id.len + 64))
		return -ERR_TOO_LARGE;
	if (grp->n_pending == grp->cap_pending) {
		size_t cap = grp->cap_pending ? grp->cap_pending * 2 : 4;
		struct pending *p = realloc(grp->pending, cap * sizeof *p);
		if (!p)
			return -ERR_NOMEM;
		grp->pending = p;
		grp->cap_pending = cap;
	}
	struct pending *p = &grp->pending[grp->n_pending];
	*p = (struct pending){ .deadline = deadline };
	if (blob_set(&p->id, id))
		return -ERR_NOMEM;
	grp->n_pending++;
	account(g, grp, id.len + 64, 0);
	return 0;
}

/* Removes m: its waiters get `error`; a new leader is picked when it led. */
static void member_remove(struct group_coordinator *g, struct group *grp, struct member *m,
			  int16_t error)
{
	fail_join(m, error);
	answer_sync(m, error, NULL);
	for (size_t i = 0; i < grp->n_members; i++) {
		if (grp->members[i] == m) {
			memmove(&grp->members[i], &grp->members[i + 1],
				(grp->n_members - i - 1) * sizeof *grp->members);
			grp->n_members--;
			break;
		}
	}
	if (grp->leader == m)
		grp->leader = grp->n_members ? grp->members[0] : NULL;
	member_free(g, grp, m);
}

/* Bytes the protocols of a join take. */
static size_t protocols_bytes(const struct group_join_args *a)
{
	size_t n = 0;
	for (size_t i = 0; i < a->n_protocols; i++)
		n += a->protocols[i].name.len + a->protocols[i].metadata.len + sizeof(struct proto);
	return n;
}

/* Replaces m's protocols with copies of a's. 0, -ERR_NOMEM or -ERR_TOO_LARGE. */
static int member_set_protocols(struct group_coordinator *g, struct group *grp, struct member *m,
				const struct group_join_args *a)
{
	size_t old = 0;
	for (size_t i = 0; i < m->n_protos; i++)
		old += m->protos[i].name.len + m->protos[i].meta.len + sizeof(struct proto);
	size_t add = protocols_bytes(a);
	if (add > old && !bytes_fit(g, grp, add - old))
		return -ERR_TOO_LARGE;
	struct proto *p = calloc(a->n_protocols, sizeof *p);
	if (!p)
		return -ERR_NOMEM;
	for (size_t i = 0; i < a->n_protocols; i++) {
		if (blob_set(&p[i].name, or_empty(a->protocols[i].name)) ||
		    blob_set(&p[i].meta, or_empty(a->protocols[i].metadata))) {
			for (size_t k = 0; k <= i; k++) {
				blob_fini(&p[k].name);
				blob_fini(&p[k].meta);
			}
			free(p);
			return -ERR_NOMEM;
		}
	}
	for (size_t i = 0; i < m->n_protos; i++) {
		blob_fini(&m->protos[i].name);
		blob_fini(&m->protos[i].meta);
	}
	free(m->protos);
	m->protos = p;
	m->n_protos = a->n_protocols;
	m->bytes = m->bytes + add - old;
	account(g, grp, add, old);
	return 0;
}

static bool member_supports(const struct member *m, struct slice name)
{
	for (size_t i = 0; i < m->n_protos; i++)
		if (blob_eq(&m->protos[i].name, name))
			return true;
	return false;
}

/*
 * Whether a member offering a's protocols can be in the group: same protocol
 * type and at least one protocol that every other member (all but `self`)
 * supports. An empty group takes any non-empty type and protocol list.
 */
static bool group_supports(const struct group *grp, const struct member *self,
			   const struct group_join_args *a)
{
	size_t others = grp->n_members - (self ? 1 : 0);
	if (others == 0)
		return true;
	if (!blob_eq(&grp->protocol_type, a->protocol_type))
		return false;
	for (size_t i = 0; i < a->n_protocols; i++) {
		bool all = true;
		for (size_t k = 0; all && k < grp->n_members; k++)
			if (grp->members[k] != self && !member_supports(grp->members[k],
									a->protocols[i].name))
				all = false;
		if (all)
			return true;
	}
	return false;
}

/* Whether a offers exactly m's protocols and metadata. */
static bool protocols_match(const struct member *m, const struct group_join_args *a)
{
	if (m->n_protos != a->n_protocols)
		return false;
	for (size_t i = 0; i < a->n_protocols; i++)
		if (!blob_eq(&m->protos[i].name, or_empty(a->protocols[i].name)) ||
		    !blob_eq(&m->protos[i].meta, or_empty(a->protocols[i].metadata)))
			return false;
	return true;
}

/*
 * Picks the group's protocol: among those every member supports, each member
 * votes for the first in its own preference order; most votes wins, ties go
 * to the leader's preference order (Kafka: GroupMetadata.selectProtocol).
 * A common protocol is one of the leader's, so the candidates are its list.
 */
static struct slice select_protocol(const struct group *grp)
{
	const struct member *l = grp->leader;
	bool common[GROUP_PROTOCOLS_MAX] = { false };
	size_t votes[GROUP_PROTOCOLS_MAX] = { 0 };
	size_t nc = l->n_protos < GROUP_PROTOCOLS_MAX ? l->n_protos : GROUP_PROTOCOLS_MAX;
	for (size_t c = 0; c < nc; c++) {
		common[c] = true;
		for (size_t k = 0; common[c] && k < grp->n_members; k++)
			common[c] = member_supports(grp->members[k], blob_slice(&l->protos[c].name));
	}
	for (size_t k = 0; k < grp->n_members; k++) {
		const struct member *m = grp->members[k];
		size_t vote = SIZE_MAX;
		for (size_t p = 0; vote == SIZE_MAX && p < m->n_protos; p++)
			for (size_t c = 0; c < nc; c++)
				if (common[c] && blob_eq(&l->protos[c].name,
							 blob_slice(&m->protos[p].name))) {
					vote = c;
					break;
				}
		if (vote != SIZE_MAX)
			votes[vote]++;
	}
	size_t best = SIZE_MAX;
	for (size_t c = 0; c < nc; c++)
		if (common[c] && (best == SIZE_MAX || votes[c] > votes[best]))
			best = c;
	if (best == SIZE_MAX)
		best = 0; /* cannot happen: joins check a common protocol */
	return blob_slice(&l->protos[best].name);
}

static int32_t group_rebalance_ms(const struct group *grp)
{
	int32_t t = 0;
	for (size_t i = 0; i < grp->n_members; i++)
		if (grp->members[i]->rebalance_ms > t)
			t = grp->members[i]->rebalance_ms;
	return t;
}

/* ------------------------------------------------------------------------ */
/* Rebalancing                                                              */

static void check_join_complete(struct group_coordinator *g, struct group *grp);

static void prepare_rebalance(struct group_coordinator *g, struct group *grp, const char *why)
{
	if (grp->state == GROUP_COMPLETING_REBALANCE) {
		/* Members waiting in SyncGroup must rejoin. */
		for (size_t i = 0; i < grp->n_members; i++) {
			struct member *m = grp->members[i];
			answer_sync(m, KAFKA_REBALANCE_IN_PROGRESS, NULL);
			account(g, grp, 0, m->assignment.len);
			m->bytes -= m->assignment.len;
			blob_fini(&m->assignment);
		}
	}
	int64_t now = now_ms();
	int32_t timeout = group_rebalance_ms(grp);
	if (grp->state == GROUP_EMPTY) {
		grp->initial_join = true;
		grp->new_member_added = false;
		grp->join_deadline = now + g->initial_delay_ms;
		grp->join_limit = now + (timeout > g->initial_delay_ms ? timeout : g->initial_delay_ms);
	} else {
		grp->initial_join = false;
		grp->join_deadline = now + timeout;
	}
	diag_debug("kafka", "group %.*s: preparing rebalance from %s, generation %d (%s)",
		   (int)grp->id.len, (const char *)grp->id.data, group_state_name(grp->state),
		   grp->generation, why);
	grp->state = GROUP_PREPARING_REBALANCE;
	wake_at(g, grp->join_deadline);
	/* Everyone may be waiting already (or nobody is left): complete now. */
	check_join_complete(g, grp);
}

static void maybe_prepare_rebalance(struct group_coordinator *g, struct group *grp,
				    const char *why)
{
	if (grp->state == GROUP_STABLE || grp->state == GROUP_COMPLETING_REBALANCE ||
	    grp->state == GROUP_EMPTY)
		prepare_rebalance(g, grp, why);
}

/* Ends the join phase: drops members that did not rejoin, starts the next
 * generation and answers every waiting JoinGroup. */
static void complete_join(struct group_coordinator *g, struct group *grp)
{
	for (size_t i = grp->n_members; i-- > 0;) {
		struct member *m = grp->members[i];
		if (!m->join.cb) {
			diag_info("kafka", "group %.*s: member %.*s did not rejoin in time; removed",
				  (int)grp->id.len, (const char *)grp->id.data, (int)m->id.len,
				  (const char *)m->id.data);
			member_remove(g, grp, m, KAFKA_UNKNOWN_MEMBER_ID);
		}
	}
	grp->generation++;
	if (grp->n_members == 0) {
		blob_fini(&grp->protocol_name);
		grp->state = GROUP_EMPTY;
		diag_info("kafka", "group %.*s: generation %d is empty", (int)grp->id.len,
			  (const char *)grp->id.data, grp->generation);
		return;
	}
	if (!grp->leader)
		grp->leader = grp->members[0];
	if (blob_set(&grp->protocol_name, select_protocol(grp))) {
		diag_error("kafka", "group %.*s: out of memory", (int)grp->id.len,
			   (const char *)grp->id.data);
		for (size_t i = 0; i < grp->n_members; i++)
			fail_join(grp->members[i], KAFKA_UNKNOWN_SERVER_ERROR);
		prepare_rebalance(g, grp, "out of memory");
		return;
	}
	grp->state = GROUP_COMPLETING_REBALANCE;
	int64_t now = now_ms();
	grp->sync_deadline = now + group_rebalance_ms(grp);
	wake_at(g, grp->sync_deadline);
	diag_info("kafka", "group %.*s: generation %d with %zu members, protocol %.*s",
		  (int)grp->id.len, (const char *)grp->id.data, grp->generation, grp->n_members,
		  (int)grp->protocol_name.len, (const char *)grp->protocol_name.data);
	for (size_t i = 0; i < grp->n_members; i++) {
		struct member *m = grp->members[i];
		answer_join(m, join_success(grp, m, &m->join, m == grp->leader));
		m->synced = false;
		m->session_deadline = now + m->session_ms;
		wake_at(g, m->session_deadline);
	}
}

/* Completes the join phase early once everyone expected has rejoined. */
static void check_join_complete(struct group_coordinator *g, struct group *grp)
{
	if (grp->state != GROUP_PREPARING_REBALANCE || grp->initial_join || grp->n_pending > 0)
		return;
	for (size_t i = 0; i < grp->n_members; i++)
		if (!grp->members[i]->join.cb)
			return;
	complete_join(g, grp);
}

/* After members were removed: the group rebalances without them. */
static void after_removal(struct group_coordinator *g, struct group *grp, const char *why)
{
	if (grp->state == GROUP_STABLE || grp->state == GROUP_COMPLETING_REBALANCE)
		prepare_rebalance(g, grp, why);
	else
		check_join_complete(g, grp);
}

/* ------------------------------------------------------------------------ */
/* JoinGroup                                                                */

/* "<prefix>-<uuid v4>" into out (at least GROUP_CLIENT_ID_KEEP + 38 bytes). */
static size_t make_member_id(struct slice prefix, char *out)
{
	uint8_t u[16];
	if (getrandom(u, sizeof u, 0) != (ssize_t)sizeof u) {
		static _Atomic uint64_t counter;
		uint64_t c = ++counter, t = (uint64_t)clock_mono_ns();
		memcpy(u, &c, 8);
		memcpy(u + 8, &t, 8);
	}
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	size_t n = prefix.len > GROUP_CLIENT_ID_KEEP ? GROUP_CLIENT_ID_KEEP : prefix.len;
	if (n)
		memcpy(out, prefix.data, n);
	n += (size_t)sprintf(out + n,
			     "-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			     u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
			     u[11], u[12], u[13], u[14], u[15]);
	return n;
}

/* Checks a JoinGroup's arguments; returns a Kafka error or NONE. */
static int16_t join_validate(const struct group_coordinator *g, const struct group_join_args *a)
{
	if (a->group_id.len == 0 || a->group_id.len > GROUP_ID_MAX)
		return KAFKA_INVALID_GROUP_ID;
	if (a->session_timeout_ms < g->min_session_ms ||
	    a->session_timeout_ms > GROUP_MAX_SESSION_MS)
		return KAFKA_INVALID_SESSION_TIMEOUT;
	if (a->protocol_type.len == 0 || a->protocol_type.len > GROUP_NAME_MAX ||
	    a->n_protocols == 0)
		return KAFKA_INCONSISTENT_GROUP_PROTOCOL;
	if (a->n_protocols > GROUP_PROTOCOLS_MAX ||
	    a->group_instance_id.len > GROUP_INSTANCE_ID_MAX ||
	    (a->group_instance_id.data && a->group_instance_id.len == 0) ||
	    a->client_id.len > 32767 || a->client_host.len > 255)
		return KAFKA_INVALID_REQUEST;
	size_t meta = 0;
	for (size_t i = 0; i < a->n_protocols; i++) {
		if (a->protocols[i].name.len == 0 || a->protocols[i].name.len > GROUP_NAME_MAX)
			return KAFKA_INVALID_REQUEST;
		meta += a->protocols[i].metadata.len;
	}
	if (meta > GROUP_METADATA_MAX)
		return KAFKA_INVALID_REQUEST;
	return KAFKA_NONE;
}

/* Adds a member that waits in JoinGroup and rebalances. Returns an
 * immediate answer (an error), or NULL when the request waits. */
static struct join_msg *add_member(struct group_coordinator *g, struct group *grp,
				   const struct group_join_args *a, const struct join_waiter *w,
				   struct slice id)
{
	size_t fixed = sizeof(struct member) + id.len + a->group_instance_id.len +
		       a->client_id.len + a->client_host.len;
	if (!bytes_fit(g, grp, fixed + protocols_bytes(a)))
		return join_error(w, GRP_GROUP_MAX_SIZE_REACHED, (struct slice){ NULL, 0 });
	if (grp->n_members == grp->cap_members) {
		size_t cap = grp->cap_members ? grp->cap_members * 2 : 4;
		struct member **p = realloc(grp->members, cap * sizeof *p);
		if (!p)
			return join_error(w, KAFKA_UNKNOWN_SERVER_ERROR, id);
		grp->members = p;
		grp->cap_members = cap;
	}
	struct member *m = calloc(1, sizeof *m);
	if (!m)
		return join_error(w, KAFKA_UNKNOWN_SERVER_ERROR, id);
	m->bytes = fixed;
	account(g, grp, fixed, 0);
	if (blob_set(&m->id, id) || blob_set(&m->instance_id, a->group_instance_id) ||
	    blob_set(&m->client_id, or_empty(a->client_id)) ||
	    blob_set(&m->client_host, or_empty(a->client_host)) ||
	    member_set_protocols(g, grp, m, a)) {
		member_free(g, grp, m);
		return join_error(w, KAFKA_UNKNOWN_SERVER_ERROR, id);
	}
	m->session_ms = a->session_timeout_ms;
	m->rebalance_ms = a->rebalance_timeout_ms;
	m->join = *w;
	if (grp->n_members == 0 && blob_set(&grp->protocol_type, a->protocol_type)) {
		member_free(g, grp, m);
		return join_error(w, KAFKA_UNKNOWN_SERVER_ERROR, id);
	}
	grp->members[grp->n_members++] = m;
	if (!grp->leader)
		grp->leader = m;
	if (grp->state == GROUP_PREPARING_REBALANCE && grp->initial_join)
		grp->new_member_added = true;
	maybe_prepare_rebalance(g, grp, "a member joined");
	check_join_complete(g, grp);
	return NULL;
}

/* Updates a known member's protocols and makes it wait for the rebalance. */
static struct join_msg *update_member(struct group_coordinator *g, struct group *grp,
				      struct member *m, const struct group_join_args *a,
				      const struct join_waiter *w)
{
	if (!protocols_match(m, a) && member_set_protocols(g, grp, m, a))
		return join_error(w, KAFKA_UNKNOWN_SERVER_ERROR, blob_slice(&m->id));
	m->session_ms = a->session_timeout_ms;
	m->rebalance_ms = a->rebalance_timeout_ms;
	/* A JoinGroup already waiting is superseded (the client gave up on it). */
	fail_join(m, KAFKA_REBALANCE_IN_PROGRESS);
	m->join = *w;
	maybe_prepare_rebalance(g, grp, "a member rejoined");
	check_join_complete(g, grp);
	return NULL;
}

static struct join_msg *join_new_member(struct group_coordinator *g, struct group *grp,
					const struct group_join_args *a,
					const struct join_waiter *w)
{
	struct slice none = { NULL, 0 };
	if (!group_supports(grp, NULL, a))
		return join_error(w, KAFKA_INCONSISTENT_GROUP_PROTOCOL, none);
	struct member *old = member_by_instance(grp, a->group_instance_id);
	if (!old && grp->n_members + grp->n_pending >= GROUP_MEMBERS_MAX)
		return join_error(w, GRP_GROUP_MAX_SIZE_REACHED, none);
	char idbuf[GROUP_INSTANCE_ID_MAX + GROUP_CLIENT_ID_KEEP + 64];
	struct slice prefix = a->group_instance_id.data ? a->group_instance_id : a->client_id;
	struct slice id = { (const uint8_t *)idbuf, make_member_id(prefix, idbuf) };
	if (old) {
		/* A static member restarted: the old incarnation is fenced. */
		member_remove(g, grp, old, KAFKA_FENCED_INSTANCE_ID);
	} else if (a->require_known_member_id && !a->group_instance_id.data) {
		if (pending_add(g, grp, id, now_ms() + a->session_timeout_ms))
			return join_error(w, GRP_GROUP_MAX_SIZE_REACHED, none);
		wake_at(g, now_ms() + a->session_timeout_ms);
		return join_error(w, KAFKA_MEMBER_ID_REQUIRED, id);
	}
	return add_member(g, grp, a, w, id);
}

static struct join_msg *join_known_member(struct group_coordinator *g, struct group *grp,
					  const struct group_join_args *a,
					  const struct join_waiter *w)
{
	ssize_t p = pending_find(grp, a->member_id);
	if (p >= 0) {
		if (!group_supports(grp, NULL, a))
			return join_error(w, KAFKA_INCONSISTENT_GROUP_PROTOCOL, a->member_id);
		pending_remove(g, grp, (size_t)p);
		return add_member(g, grp, a, w, a->member_id);
	}
	struct member *m = member_find(grp, a->member_id);
	struct member *s = member_by_instance(grp, a->group_instance_id);
	if (a->group_instance_id.data && s && s != m)
		return join_error(w, KAFKA_FENCED_INSTANCE_ID, a->member_id);
	if (!m || (a->group_instance_id.data && !s))
		return join_error(w, KAFKA_UNKNOWN_MEMBER_ID, a->member_id);
	if (!group_supports(grp, m, a))
		return join_error(w, KAFKA_INCONSISTENT_GROUP_PROTOCOL, a->member_id);
	switch (grp->state) {
	case GROUP_PREPARING_REBALANCE:
		return update_member(g, grp, m, a, w);
	case GROUP_COMPLETING_REBALANCE:
		/* Same metadata: it missed the answer; give the current generation again. */
		if (protocols_match(m, a))
			return join_success(grp, m, w, m == grp->leader);
		return update_member(g, grp, m, a, w);
	case GROUP_STABLE:
		/* The leader's join (e.g. topic metadata changed) or new metadata rebalances. */
		if (m == grp->leader || !protocols_match(m, a))
			return update_member(g, grp, m, a, w);
		return join_success(grp, m, w, false);
	default:
		return join_error(w, KAFKA_UNKNOWN_MEMBER_ID, a->member_id);
	}
}

void group_coordinator_join(struct group_coordinator *g, const struct group_join_args *in,
			    struct loop *reply, group_join_cb cb, void *arg)
{
	struct join_waiter w = { reply, cb, arg };
	struct group_join_args a = *in;
	if (a.rebalance_timeout_ms < 0)
		a.rebalance_timeout_ms = a.session_timeout_ms;
	if (a.rebalance_timeout_ms > GROUP_MAX_REBALANCE_MS)
		a.rebalance_timeout_ms = GROUP_MAX_REBALANCE_MS;
	struct join_msg *now = NULL;
	pthread_mutex_lock(&g->lock);
	int16_t e = g->closing ? KAFKA_COORDINATOR_NOT_AVAILABLE : join_validate(g, &a);
	struct group *grp = e ? NULL : group_find(g, a.group_id);
	if (e) {
		now = join_error(&w, e, a.member_id);
	} else if (!grp && a.member_id.len > 0) {
		now = join_error(&w, KAFKA_UNKNOWN_MEMBER_ID, a.member_id);
	} else {
		if (!grp)
			grp = group_create(g, a.group_id);
		if (!grp)
			now = join_error(&w, KAFKA_COORDINATOR_NOT_AVAILABLE, a.member_id);
		else if (a.member_id.len == 0)
			now = join_new_member(g, grp, &a, &w);
		else
			now = join_known_member(g, grp, &a, &w);
		if (grp)
			group_maybe_free(g, grp);
	}
	pthread_mutex_unlock(&g->lock);
	if (now)
		deliver(reply, join_msg_run, now, &now->mem);
}

/* ------------------------------------------------------------------------ */
/* SyncGroup, Heartbeat, LeaveGroup, commit checks                          */

/* Finds the member a request names, checking its static instance id. */
static int16_t member_check(const struct group *grp, struct slice member_id,
			    struct slice instance_id, struct member **out)
{
	*out = NULL;
	if (!grp)
		return KAFKA_UNKNOWN_MEMBER_ID;
	struct member *m = member_find(grp, member_id);
	if (instance_id.data) {
		struct member *s = member_by_instance(grp, instance_id);
		if (!s)
			return KAFKA_UNKNOWN_MEMBER_ID;
		if (s != m)
			return KAFKA_FENCED_INSTANCE_ID;
	}
	if (!m)
		return KAFKA_UNKNOWN_MEMBER_ID;
	*out = m;
	return KAFKA_NONE;
}

/* Stores the leader's assignments (members it left out get an empty one). */
static int16_t set_assignments(struct group_coordinator *g, struct group *grp,
			       const struct group_sync_args *a)
{
	if (a->n_assignments > GROUP_MEMBERS_MAX)
		return KAFKA_INVALID_REQUEST;
	size_t add = 0, old = 0;
	for (size_t i = 0; i < a->n_assignments; i++) {
		if (a->assignments[i].assignment.len > GROUP_ASSIGNMENT_MAX)
			return KAFKA_INVALID_REQUEST;
		add += a->assignments[i].assignment.len;
	}
	for (size_t i = 0; i < grp->n_members; i++)
		old += grp->members[i]->assignment.len;
	if (add > old && !bytes_fit(g, grp, add - old))
		return KAFKA_INVALID_REQUEST;
	for (size_t i = 0; i < grp->n_members; i++) {
		struct member *m = grp->members[i];
		struct slice as = { empty_bytes, 0 };
		for (size_t k = 0; k < a->n_assignments; k++)
			if (blob_eq(&m->id, a->assignments[k].member_id))
				as = or_empty(a->assignments[k].assignment);
		size_t before = m->assignment.len;
		if (blob_set(&m->assignment, as))
			return KAFKA_UNKNOWN_SERVER_ERROR;
		m->bytes = m->bytes + m->assignment.len - before;
		account(g, grp, m->assignment.len, before);
	}
	return KAFKA_NONE;
}

static struct sync_msg *sync_locked(struct group_coordinator *g, const struct group_sync_args *a,
				    const struct sync_waiter *w)
{
	if (g->closing)
		return sync_answer_new(w, KAFKA_COORDINATOR_NOT_AVAILABLE, NULL, NULL);
	struct group *grp = group_find(g, a->group_id);
	struct member *m;
	int16_t e = member_check(grp, a->member_id, a->group_instance_id, &m);
	if (!e && a->generation_id != grp->generation)
		e = KAFKA_ILLEGAL_GENERATION;
	if (!e && ((a->protocol_type.data && !blob_eq(&grp->protocol_type, a->protocol_type)) ||
		   (a->protocol_name.data && grp->protocol_name.data &&
		    !blob_eq(&grp->protocol_name, a->protocol_name))))
		e = KAFKA_INCONSISTENT_GROUP_PROTOCOL;
	if (!e && grp->state == GROUP_PREPARING_REBALANCE)
		e = KAFKA_REBALANCE_IN_PROGRESS;
	if (!e && grp->state != GROUP_COMPLETING_REBALANCE && grp->state != GROUP_STABLE)
		e = KAFKA_UNKNOWN_MEMBER_ID;
	if (e)
		return sync_answer_new(w, e, NULL, NULL);
	if (grp->state == GROUP_STABLE) {
		m->session_deadline = now_ms() + m->session_ms;
		return sync_answer_new(w, KAFKA_NONE, grp, m);
	}
	/* CompletingRebalance: wait for the leader's assignment. */
	answer_sync(m, KAFKA_REBALANCE_IN_PROGRESS, NULL);
	m->sync = *w;
	m->synced = true;
	if (m != grp->leader)
		return NULL;
	e = set_assignments(g, grp, a);
	if (e) {
		diag_warn("kafka", "group %.*s: leader's assignment refused (error %d)",
			  (int)grp->id.len, (const char *)grp->id.data, e);
		m->sync.cb = NULL;
		prepare_rebalance(g, grp, "bad assignment");
		return sync_answer_new(w, e, NULL, NULL);
	}
	grp->state = GROUP_STABLE;
	int64_t now = now_ms();
	for (size_t i = 0; i < grp->n_members; i++) {
		struct member *o = grp->members[i];
		if (o->sync.cb) {
			answer_sync(o, KAFKA_NONE, grp);
			o->session_deadline = now + o->session_ms;
		}
	}
	return NULL;
}

void group_coordinator_sync(struct group_coordinator *g, const struct group_sync_args *a,
			    struct loop *reply, group_sync_cb cb, void *arg)
{
	struct sync_waiter w = { reply, cb, arg };
	pthread_mutex_lock(&g->lock);
	struct sync_msg *now = sync_locked(g, a, &w);
	pthread_mutex_unlock(&g->lock);
	if (now)
		deliver(reply, sync_msg_run, now, &now->mem);
}

int16_t group_coordinator_heartbeat(struct group_coordinator *g, struct slice group_id,
				    struct slice member_id, struct slice group_instance_id,
				    int32_t generation_id)
{
	pthread_mutex_lock(&g->lock);
	struct group *grp = group_find(g, group_id);
	struct member *m;
	int16_t e = g->closing ? KAFKA_COORDINATOR_NOT_AVAILABLE
			       : member_check(grp, member_id, group_instance_id, &m);
	if (!e && generation_id != grp->generation)
		e = KAFKA_ILLEGAL_GENERATION;
	if (!e && grp->state == GROUP_EMPTY)
		e = KAFKA_UNKNOWN_MEMBER_ID;
	if (!e) {
		m->session_deadline = now_ms() + m->session_ms;
		/* CompletingRebalance counts as alive: members heartbeat while the leader assigns. */
		if (grp->state == GROUP_PREPARING_REBALANCE)
			e = KAFKA_REBALANCE_IN_PROGRESS;
	}
	pthread_mutex_unlock(&g->lock);
	return e;
}

int16_t group_coordinator_leave(struct group_coordinator *g, struct slice group_id,
				struct group_leave_member *members, size_t n)
{
	int16_t top = KAFKA_NONE;
	pthread_mutex_lock(&g->lock);
	struct group *grp = group_find(g, group_id);
	if (g->closing)
		top = KAFKA_COORDINATOR_NOT_AVAILABLE;
	else if (group_id.len == 0 || group_id.len > GROUP_ID_MAX)
		top = KAFKA_INVALID_GROUP_ID;
	bool removed = false, unpended = false;
	for (size_t i = 0; i < n; i++) {
		struct group_leave_member *lm = &members[i];
		lm->error = top ? top : KAFKA_UNKNOWN_MEMBER_ID;
		if (top || !grp)
			continue;
		struct member *m = member_find(grp, lm->member_id);
		struct member *s = member_by_instance(grp, lm->group_instance_id);
		if (lm->group_instance_id.data && lm->member_id.len == 0)
			m = s; /* v3+: a static member leaves by instance id alone */
		else if (lm->group_instance_id.data && s && s != m) {
			lm->error = KAFKA_FENCED_INSTANCE_ID;
			continue;
		}
		ssize_t p = pending_find(grp, lm->member_id);
		if (p >= 0) {
			pending_remove(g, grp, (size_t)p);
			unpended = true;
			lm->error = KAFKA_NONE;
		} else if (m) {
			diag_debug("kafka", "group %.*s: member %.*s left", (int)grp->id.len,
				   (const char *)grp->id.data, (int)m->id.len,
				   (const char *)m->id.data);
			member_remove(g, grp, m, KAFKA_UNKNOWN_MEMBER_ID);
			removed = true;
			lm->error = KAFKA_NONE;
		}
	}
	if (grp && removed)
		after_removal(g, grp, "a member left");
	else if (grp && unpended)
		check_join_complete(g, grp);
	if (grp)
		group_maybe_free(g, grp);
	pthread_mutex_unlock(&g->lock);
	return top;
}

int16_t group_coordinator_commit_check(struct group_coordinator *g, struct slice group_id,
				       struct slice member_id, struct slice group_instance_id,
				       int32_t generation_id)
{
	if (group_id.len == 0 || group_id.len > GROUP_ID_MAX)
		return KAFKA_INVALID_GROUP_ID;
	int16_t e = KAFKA_NONE;
	pthread_mutex_lock(&g->lock);
	struct group *grp = group_find(g, group_id);
	struct member *m = NULL;
	if (!grp) {
		/* No live group: only simple (non-member) commits are accepted. */
		e = generation_id < 0 ? KAFKA_NONE : KAFKA_ILLEGAL_GENERATION;
	} else if (generation_id < 0 && grp->state == GROUP_EMPTY) {
		e = KAFKA_NONE;
	} else if (generation_id >= 0 || member_id.len > 0 || group_instance_id.data) {
		e = member_check(grp, member_id, group_instance_id, &m);
		if (!e && generation_id != grp->generation)
			e = KAFKA_ILLEGAL_GENERATION;
	} else if (grp->state != GROUP_EMPTY) {
		e = KAFKA_UNKNOWN_MEMBER_ID;
	}
	if (!e && grp && grp->state == GROUP_COMPLETING_REBALANCE)
		e = KAFKA_REBALANCE_IN_PROGRESS;
	if (!e && m)
		m->session_deadline = now_ms() + m->session_ms;
	pthread_mutex_unlock(&g->lock);
	return e;
}

/* ------------------------------------------------------------------------ */
/* Describe and list                                                        */

int group_coordinator_describe(struct group_coordinator *g, struct slice group_id,
			       void (*fn)(void *arg, const struct group_desc *d), void *arg)
{
	pthread_mutex_lock(&g->lock);
	struct group *grp = group_find(g, group_id);
	if (!grp) {
		pthread_mutex_unlock(&g->lock);
		return -ERR_NOT_FOUND;
	}
	bool stable = grp->state == GROUP_STABLE;
	struct group_member_desc *md =
		grp->n_members ? calloc(grp->n_members, sizeof *md) : NULL;
	struct group_desc d = {
		.group_id = blob_slice(&grp->id),
		.state = grp->state,
		.protocol_type = or_empty(blob_slice(&grp->protocol_type)),
		.protocol_data = stable ? or_empty(blob_slice(&grp->protocol_name))
					: (struct slice){ empty_bytes, 0 },
		.members = md,
		.n_members = md ? grp->n_members : 0,
	};
	for (size_t i = 0; i < d.n_members; i++) {
		const struct member *m = grp->members[i];
		md[i] = (struct group_member_desc){
			.member_id = blob_slice(&m->id),
			.group_instance_id = blob_slice(&m->instance_id),
			.client_id = or_empty(blob_slice(&m->client_id)),
			.client_host = or_empty(blob_slice(&m->client_host)),
			.metadata = { empty_bytes, 0 },
			.assignment = { empty_bytes, 0 },
		};
		if (!stable)
			continue;
		md[i].assignment = or_empty(blob_slice(&m->assignment));
		for (size_t k = 0; k < m->n_protos; k++)
			if (blob_eq(&m->protos[k].name, blob_slice(&grp->protocol_name)))
				md[i].metadata = or_empty(blob_slice(&m->protos[k].meta));
	}
	fn(arg, &d);
	pthread_mutex_unlock(&g->lock);
	free(md);
	return 0;
}

void group_coordinator_list(struct group_coordinator *g,
			    void (*fn)(void *arg, struct slice group_id, struct slice protocol_type,
				       enum group_state state),
			    void *arg)
{
	pthread_mutex_lock(&g->lock);
	for (size_t b = 0; b < COORD_BUCKETS; b++)
		for (struct group *grp = g->buckets[b]; grp; grp = grp->next)
			fn(arg, blob_slice(&grp->id), or_empty(blob_slice(&grp->protocol_type)),
			   grp->state);
	pthread_mutex_unlock(&g->lock);
}

/* ------------------------------------------------------------------------ */
/* Deadlines                                                                */

/* Handles what expired in one group; returns its next deadline (INT64_MAX:
 * none). The group may be freed (then *freed is set). */
static int64_t group_tick(struct group_coordinator *g, struct group *grp, int64_t now,
			  bool *freed)
{
	bool unpended = false, removed = false;
	for (size_t i = grp->n_pending; i-- > 0;) {
		if (now >= grp->pending[i].deadline) {
			pending_remove(g, grp, i);
			unpended = true;
		}
	}
	for (size_t i = grp->n_members; i-- > 0;) {
		struct member *m = grp->members[i];
		if (!m->join.cb && !m->sync.cb && now >= m->session_deadline &&
		    grp->state != GROUP_EMPTY) {
			diag_info("kafka", "group %.*s: member %.*s session expired; removed",
				  (int)grp->id.len, (const char *)grp->id.data, (int)m->id.len,
				  (const char *)m->id.data);
			member_remove(g, grp, m, KAFKA_UNKNOWN_MEMBER_ID);
			removed = true;
		}
	}
	if (removed)
		after_removal(g, grp, "session expired");
	else if (unpended)
		check_join_complete(g, grp);
	if (grp->state == GROUP_PREPARING_REBALANCE && now >= grp->join_deadline) {
		if (grp->initial_join && grp->new_member_added && now < grp->join_limit) {
			/* More members arrived during the initial delay: wait a bit more. */
			grp->new_member_added = false;
			grp->join_deadline = now + g->initial_delay_ms;
			if (grp->join_deadline > grp->join_limit)
				grp->join_deadline = grp->join_limit;
		} else {
			complete_join(g, grp);
		}
	}
	if (grp->state == GROUP_COMPLETING_REBALANCE && now >= grp->sync_deadline) {
		for (size_t i = grp->n_members; i-- > 0;) {
			struct member *m = grp->members[i];
			if (!m->synced) {
				diag_info("kafka", "group %.*s: member %.*s did not sync in time; "
					  "removed", (int)grp->id.len, (const char *)grp->id.data,
					  (int)m->id.len, (const char *)m->id.data);
				member_remove(g, grp, m, KAFKA_UNKNOWN_MEMBER_ID);
			}
		}
		prepare_rebalance(g, grp, "sync timeout");
	}
	if (grp->state == GROUP_PREPARING_REBALANCE)
		check_join_complete(g, grp);
	if (group_maybe_free(g, grp)) {
		*freed = true;
		return INT64_MAX;
	}
	int64_t next = INT64_MAX;
	for (size_t i = 0; i < grp->n_pending; i++)
		if (grp->pending[i].deadline < next)
			next = grp->pending[i].deadline;
	for (size_t i = 0; grp->state != GROUP_EMPTY && i < grp->n_members; i++) {
		const struct member *m = grp->members[i];
		if (!m->join.cb && !m->sync.cb && m->session_deadline < next)
			next = m->session_deadline;
	}
	if (grp->state == GROUP_PREPARING_REBALANCE && grp->join_deadline < next)
		next = grp->join_deadline;
	if (grp->state == GROUP_COMPLETING_REBALANCE && grp->sync_deadline < next)
		next = grp->sync_deadline;
	return next;
}

static void timer_cb(uv_timer_t *t)
{
	struct group_coordinator *g = t->data;
	pthread_mutex_lock(&g->lock);
	int64_t now = now_ms(), next = INT64_MAX;
	g->in_scan = true;
	g->wake_ms = INT64_MAX;
	for (size_t b = 0; !g->closing && b < COORD_BUCKETS; b++) {
		struct group *grp = g->buckets[b];
		while (grp) {
			struct group *after = grp->next;
			bool freed = false;
			int64_t d = group_tick(g, grp, now, &freed);
			if (d < next)
				next = d;
			grp = after;
		}
	}
	g->in_scan = false;
	if (g->wake_ms < next)
		next = g->wake_ms;
	if (next != INT64_MAX && next <= now)
		next = now + 1;
	g->wake_ms = next;
	pthread_mutex_unlock(&g->lock);
	timer_arm(g, next);
}

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                 */

int group_coordinator_new(struct broker *b, struct loop_group *loops,
			  struct group_coordinator **out)
{
	struct group_coordinator *g = calloc(1, sizeof *g);
	if (!g)
		return -ERR_NOMEM;
	pthread_mutex_init(&g->lock, NULL);
	g->broker = b;
	g->timer_loop = loop_group_get(loops, 0);
	g->initial_delay_ms = GROUP_DEFAULT_INITIAL_DELAY_MS;
	g->min_session_ms = GROUP_DEFAULT_MIN_SESSION_MS;
	g->wake_ms = INT64_MAX;
	if (!g->timer_loop) {
		pthread_mutex_destroy(&g->lock);
		free(g);
		return -ERR_INVALID;
	}
	*out = g;
	return 0;
}

void group_coordinator_set_timing(struct group_coordinator *g, int32_t initial_delay_ms,
				  int32_t min_session_timeout_ms)
{
	pthread_mutex_lock(&g->lock);
	g->initial_delay_ms = initial_delay_ms < 0 ? 0 : initial_delay_ms;
	g->min_session_ms = min_session_timeout_ms < 1 ? 1 : min_session_timeout_ms;
	pthread_mutex_unlock(&g->lock);
}

void group_coordinator_quiesce(struct group_coordinator *g)
{
	pthread_mutex_lock(&g->lock);
	g->closing = true;
	for (size_t b = 0; b < COORD_BUCKETS; b++) {
		for (struct group *grp = g->buckets[b]; grp; grp = grp->next) {
			for (size_t i = 0; i < grp->n_members; i++) {
				fail_join(grp->members[i], KAFKA_COORDINATOR_NOT_AVAILABLE);
				answer_sync(grp->members[i], KAFKA_COORDINATOR_NOT_AVAILABLE, NULL);
			}
		}
	}
	pthread_mutex_unlock(&g->lock);
}

void group_coordinator_free(struct group_coordinator *g)
{
	if (!g)
		return;
	for (size_t b = 0; b < COORD_BUCKETS; b++) {
		while (g->buckets[b]) {
			struct group *grp = g->buckets[b];
			for (size_t i = 0; i < grp->n_members; i++) {
				if (grp->members[i]->join.cb || grp->members[i]->sync.cb)
					diag_warn("kafka", "group %.*s: a request was still waiting at "
						  "shutdown", (int)grp->id.len,
						  (const char *)grp->id.data);
				grp->members[i]->join.cb = NULL;
				grp->members[i]->sync.cb = NULL;
			}
			group_destroy(g, grp);
		}
	}
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* ------------------------------------------------------------------------ */
/* Request handlers                                                         */

/* The client host as Kafka shows it: "/<address>" without the port. */
static struct slice client_host(struct kafka_req *req)
{
	const char *peer = kafka_req_peer(req);
	size_t n = strlen(peer);
	const char *colon = strrchr(peer, ':');
	if (colon)
		n = (size_t)(colon - peer);
	const char *start = peer;
	if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']') {
		start++;
		n -= 2;
	}
	char *out = kafka_arena_alloc(&req->arena, n + 1);
	if (!out)
		return (struct slice){ empty_bytes, 0 };
	out[0] = '/';
	memcpy(out + 1, start, n);
	return (struct slice){ (const uint8_t *)out, n + 1 };
}

/* FindCoordinator v0-4: this broker (node 0) coordinates every group. */
int kafka_handle_find_coordinator(struct kafka_req *req, struct reader *r)
{
	struct kafka_find_coordinator_request in;
	int rc = kafka_find_coordinator_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	const struct config *cfg = broker_config(kafka_req_broker(req));
	struct slice host = cstr(cfg->listen_host);
	/* Key types: 0 group, 1 transaction; this single node serves both. */
	bool type_ok = in.key_type == 0 || in.key_type == 1;
	struct kafka_find_coordinator_response resp;
	kafka_find_coordinator_response_init(&resp);
	if (req->version < 4) {
		resp.error_code = type_ok ? KAFKA_NONE : KAFKA_INVALID_REQUEST;
		resp.node_id = type_ok ? 0 : -1;
		resp.host = type_ok ? host : (struct slice){ empty_bytes, 0 };
		resp.port = type_ok ? cfg->port_kafka : -1;
	} else {
		size_t n = in.coordinator_keys_count;
		resp.coordinators = n ? kafka_arena_alloc_array(&req->arena, n,
								sizeof *resp.coordinators)
				      : NULL;
		if (n && !resp.coordinators)
			return -ERR_NOMEM;
		resp.coordinators_count = n;
		for (size_t i = 0; i < n; i++) {
			struct kafka_find_coordinator_response_coordinator *c = &resp.coordinators[i];
			kafka_find_coordinator_response_coordinator_init(c);
			c->key = or_empty(in.coordinator_keys[i]);
			c->error_code = type_ok ? KAFKA_NONE : KAFKA_INVALID_REQUEST;
			c->node_id = type_ok ? 0 : -1;
			c->host = type_ok ? host : (struct slice){ empty_bytes, 0 };
			c->port = type_ok ? cfg->port_kafka : -1;
		}
	}
	return kafka_req_respond(req, (kafka_encode_fn)kafka_find_coordinator_response_encode,
				 &resp);
}

static void join_answered(void *arg, const struct group_join_result *res)
{
	struct kafka_req *req = arg;
	req->pending--;
	struct kafka_join_group_response resp;
	kafka_join_group_response_init(&resp);
	resp.error_code = res->error;
	resp.generation_id = res->generation_id;
	resp.protocol_type = res->protocol_type;
	resp.protocol_name = req->version < 7 ? or_empty(res->protocol_name) : res->protocol_name;
	resp.leader = or_empty(res->leader);
	resp.member_id = or_empty(res->member_id);
	if (res->n_members > 0) {
		resp.members = kafka_arena_alloc_array(&req->arena, res->n_members,
						       sizeof *resp.members);
		if (!resp.members)
			resp.error_code = KAFKA_UNKNOWN_SERVER_ERROR;
		for (size_t i = 0; resp.members && i < res->n_members; i++) {
			kafka_join_group_response_member_init(&resp.members[i]);
			resp.members[i].member_id = or_empty(res->members[i].member_id);
			resp.members[i].group_instance_id = res->members[i].group_instance_id;
			resp.members[i].metadata = or_empty(res->members[i].metadata);
		}
		resp.members_count = resp.members ? res->n_members : 0;
	}
	kafka_req_respond(req, (kafka_encode_fn)kafka_join_group_response_encode, &resp);
}

/* JoinGroup v0-7: answered when the rebalance completes (or at once on error). */
int kafka_handle_join_group(struct kafka_req *req, struct reader *r)
{
	struct kafka_join_group_request in;
	int rc = kafka_join_group_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct group_protocol *p = NULL;
	if (in.protocols_count) {
		p = kafka_arena_alloc_array(&req->arena, in.protocols_count, sizeof *p);
		if (!p)
			return -ERR_NOMEM;
	}
	for (size_t i = 0; i < in.protocols_count; i++)
		p[i] = (struct group_protocol){ in.protocols[i].name, in.protocols[i].metadata };
	struct group_join_args a = {
		.group_id = in.group_id,
		.member_id = or_empty(in.member_id),
		.group_instance_id = in.group_instance_id,
		.client_id = or_empty(req->hdr.client_id),
		.client_host = client_host(req),
		.protocol_type = in.protocol_type,
		.session_timeout_ms = in.session_timeout_ms,
		.rebalance_timeout_ms = req->version >= 1 ? in.rebalance_timeout_ms : -1,
		.protocols = p,
		.n_protocols = in.protocols_count,
		.require_known_member_id = req->version >= 4,
	};
	req->pending++;
	group_coordinator_join(kafka_req_groups(req), &a, kafka_req_loop(req), join_answered, req);
	return 0;
}

static void sync_answered(void *arg, const struct group_sync_result *res)
{
	struct kafka_req *req = arg;
	req->pending--;
	struct kafka_sync_group_response resp;
	kafka_sync_group_response_init(&resp);
	resp.error_code = res->error;
	resp.protocol_type = res->protocol_type;
	resp.protocol_name = res->protocol_name;
	resp.assignment = or_empty(res->assignment);
	kafka_req_respond(req, (kafka_encode_fn)kafka_sync_group_response_encode, &resp);
}

/* SyncGroup v0-5: followers wait for the leader's assignment. */
int kafka_handle_sync_group(struct kafka_req *req, struct reader *r)
{
	struct kafka_sync_group_request in;
	int rc = kafka_sync_group_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct group_assignment *as = NULL;
	if (in.assignments_count) {
		as = kafka_arena_alloc_array(&req->arena, in.assignments_count, sizeof *as);
		if (!as)
			return -ERR_NOMEM;
	}
	for (size_t i = 0; i < in.assignments_count; i++)
		as[i] = (struct group_assignment){ in.assignments[i].member_id,
						   in.assignments[i].assignment };
	struct group_sync_args a = {
		.group_id = in.group_id,
		.member_id = or_empty(in.member_id),
		.group_instance_id = in.group_instance_id,
		.protocol_type = in.protocol_type,
		.protocol_name = in.protocol_name,
		.generation_id = in.generation_id,
		.assignments = as,
		.n_assignments = in.assignments_count,
	};
	req->pending++;
	group_coordinator_sync(kafka_req_groups(req), &a, kafka_req_loop(req), sync_answered, req);
	return 0;
}

/* Heartbeat v0-4. */
int kafka_handle_heartbeat(struct kafka_req *req, struct reader *r)
{
	struct kafka_heartbeat_request in;
	int rc = kafka_heartbeat_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct kafka_heartbeat_response resp;
	kafka_heartbeat_response_init(&resp);
	resp.error_code = group_coordinator_heartbeat(kafka_req_groups(req), in.group_id,
						      or_empty(in.member_id), in.group_instance_id,
						      in.generation_id);
	return kafka_req_respond(req, (kafka_encode_fn)kafka_heartbeat_response_encode, &resp);
}

/* LeaveGroup v0-5 (v3+: a batch of members, each with its own error). */
int kafka_handle_leave_group(struct kafka_req *req, struct reader *r)
{
	struct kafka_leave_group_request in;
	int rc = kafka_leave_group_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	size_t n = req->version >= 3 ? in.members_count : 1;
	struct kafka_leave_group_response resp;
	kafka_leave_group_response_init(&resp);
	if (n > GROUP_MEMBERS_MAX) {
		resp.error_code = KAFKA_INVALID_REQUEST;
		return kafka_req_respond(req, (kafka_encode_fn)kafka_leave_group_response_encode,
					 &resp);
	}
	struct group_leave_member *lm = n ? kafka_arena_alloc_array(&req->arena, n, sizeof *lm)
					  : NULL;
	if (n && !lm)
		return -ERR_NOMEM;
	if (req->version < 3) {
		lm[0] = (struct group_leave_member){ or_empty(in.member_id), { NULL, 0 }, 0 };
	} else {
		for (size_t i = 0; i < n; i++)
			lm[i] = (struct group_leave_member){ or_empty(in.members[i].member_id),
							     in.members[i].group_instance_id, 0 };
	}
	resp.error_code = group_coordinator_leave(kafka_req_groups(req), in.group_id, lm, n);
	if (req->version < 3) {
		if (resp.error_code == KAFKA_NONE)
			resp.error_code = lm[0].error;
	} else if (n) {
		resp.members = kafka_arena_alloc_array(&req->arena, n, sizeof *resp.members);
		if (!resp.members)
			return -ERR_NOMEM;
		resp.members_count = n;
		for (size_t i = 0; i < n; i++) {
			kafka_leave_group_response_member_response_init(&resp.members[i]);
			resp.members[i].member_id = lm[i].member_id;
			resp.members[i].group_instance_id = lm[i].group_instance_id;
			resp.members[i].error_code = lm[i].error;
		}
	}
	return kafka_req_respond(req, (kafka_encode_fn)kafka_leave_group_response_encode, &resp);
}

/* DescribeGroups: the groups in memory now, the rest looked up in the catalog. */
struct describe_state {
	struct kafka_req *req;
	uv_work_t work;
	struct kafka_describe_groups_response resp;
	bool *unknown;             /* per group: not in memory, look for offsets */
	struct kafka_describe_groups_response_described_group *slot;
};

static void describe_fill(void *arg, const struct group_desc *d)
{
	struct describe_state *ds = arg;
	struct kafka_arena *a = &ds->req->arena;
	struct kafka_describe_groups_response_described_group *out = ds->slot;
	int err = 0;
	out->group_state = cstr(group_state_name(d->state));
	out->protocol_type = arena_copy(a, d->protocol_type, &err);
	out->protocol_data = arena_copy(a, d->protocol_data, &err);
	if (d->n_members) {
		out->members = kafka_arena_alloc_array(a, d->n_members, sizeof *out->members);
		if (!out->members)
			err = -ERR_NOMEM;
	}
	for (size_t i = 0; out->members && i < d->n_members; i++) {
		struct kafka_describe_groups_response_described_group_member *m = &out->members[i];
		const struct group_member_desc *s = &d->members[i];
		kafka_describe_groups_response_described_group_member_init(m);
		m->member_id = arena_copy(a, s->member_id, &err);
		m->group_instance_id = arena_copy(a, s->group_instance_id, &err);
		m->client_id = arena_copy(a, s->client_id, &err);
		m->client_host = arena_copy(a, s->client_host, &err);
		m->member_metadata = arena_copy(a, s->metadata, &err);
		m->member_assignment = arena_copy(a, s->assignment, &err);
	}
	out->members_count = out->members ? d->n_members : 0;
	if (err) {
		out->error_code = KAFKA_UNKNOWN_SERVER_ERROR;
		out->members = NULL;
		out->members_count = 0;
	}
}

static void describe_work(uv_work_t *w)
{
	struct describe_state *ds = w->data;
	struct broker *b = kafka_req_broker(ds->req);
	for (size_t i = 0; i < ds->resp.groups_count; i++) {
		if (!ds->unknown[i])
			continue;
		int rc = group_offsets_exists(b, ds->resp.groups[i].group_id);
		if (rc > 0)
			ds->resp.groups[i].group_state = cstr("Empty");
		else if (rc < 0)
			ds->resp.groups[i].error_code = KAFKA_COORDINATOR_NOT_AVAILABLE;
	}
}

static void describe_done(uv_work_t *w, int status)
{
	(void)status;
	struct describe_state *ds = w->data;
	struct kafka_req *req = ds->req;
	req->pending--;
	kafka_req_respond(req, (kafka_encode_fn)kafka_describe_groups_response_encode, &ds->resp);
}

/* DescribeGroups v0-5. A group not held in memory is "Empty" when it has
 * committed offsets, else "Dead" (Kafka's answers for those). */
int kafka_handle_describe_groups(struct kafka_req *req, struct reader *r)
{
	struct kafka_describe_groups_request in;
	int rc = kafka_describe_groups_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct describe_state *ds = kafka_arena_alloc(&req->arena, sizeof *ds);
	if (!ds)
		return -ERR_NOMEM;
	memset(ds, 0, sizeof *ds);
	ds->req = req;
	kafka_describe_groups_response_init(&ds->resp);
	size_t n = in.groups_count;
	if (n) {
		ds->resp.groups = kafka_arena_alloc_array(&req->arena, n, sizeof *ds->resp.groups);
		ds->unknown = kafka_arena_alloc_array(&req->arena, n, sizeof *ds->unknown);
		if (!ds->resp.groups || !ds->unknown)
			return -ERR_NOMEM;
	}
	ds->resp.groups_count = n;
	bool any_unknown = false;
	for (size_t i = 0; i < n; i++) {
		struct kafka_describe_groups_response_described_group *out = &ds->resp.groups[i];
		kafka_describe_groups_response_described_group_init(out);
		out->group_id = or_empty(in.groups[i]);
		out->group_state = cstr("Dead");
		ds->slot = out;
		ds->unknown[i] = group_coordinator_describe(kafka_req_groups(req), out->group_id,
							    describe_fill, ds) != 0;
		any_unknown |= ds->unknown[i] && out->group_id.len > 0;
	}
	if (!any_unknown)
		return kafka_req_respond(req,
					 (kafka_encode_fn)kafka_describe_groups_response_encode,
					 &ds->resp);
	ds->work.data = ds;
	req->pending++;
	rc = uv_queue_work(loop_uv(kafka_req_loop(req)), &ds->work, describe_work, describe_done);
	if (rc) {
		req->pending--;
		for (size_t i = 0; i < n; i++)
			if (ds->unknown[i])
				ds->resp.groups[i].error_code = KAFKA_COORDINATOR_NOT_AVAILABLE;
		return kafka_req_respond(req,
					 (kafka_encode_fn)kafka_describe_groups_response_encode,
					 &ds->resp);
	}
	return 0;
}

/* ListGroups: the groups in memory plus those known only by committed offsets. */
struct list_state {
	struct kafka_req *req;
	uv_work_t work;
	struct kafka_list_groups_request in;
	struct kafka_list_groups_response resp;
	size_t cap;
	size_t n_live;             /* sorted live groups at the front of resp.groups */
	bool failed;
};

/* Whether a group in state passes the v4 states filter (case-insensitive). */
static bool state_wanted(const struct list_state *ls, struct slice state)
{
	if (ls->req->version < 4 || ls->in.states_filter_count == 0)
		return true;
	for (size_t i = 0; i < ls->in.states_filter_count; i++) {
		struct slice f = ls->in.states_filter[i];
		if (f.len == state.len && f.len &&
		    strncasecmp((const char *)f.data, (const char *)state.data, f.len) == 0)
			return true;
	}
	return false;
}

/* Appends a group (copied into the request arena). */
static void list_add(struct list_state *ls, struct slice id, struct slice type, const char *state)
{
	if (ls->failed)
		return;
	struct kafka_arena *a = &ls->req->arena;
	if (ls->resp.groups_count == ls->cap) {
		size_t cap = ls->cap ? ls->cap * 2 : 16;
		struct kafka_list_groups_response_listed_group *p =
			kafka_arena_alloc_array(a, cap, sizeof *p);
		if (!p) {
			ls->failed = true;
			return;
		}
		if (ls->resp.groups_count)
			memcpy(p, ls->resp.groups, ls->resp.groups_count * sizeof *p);
		ls->resp.groups = p;
		ls->cap = cap;
	}
	int err = 0;
	struct kafka_list_groups_response_listed_group *lg = &ls->resp.groups[ls->resp.groups_count];
	kafka_list_groups_response_listed_group_init(lg);
	lg->group_id = arena_copy(a, or_empty(id), &err);
	lg->protocol_type = arena_copy(a, or_empty(type), &err);
	lg->group_state = cstr(state);
	if (err)
		ls->failed = true;
	else
		ls->resp.groups_count++;
}

static void list_live(void *arg, struct slice id, struct slice type, enum group_state state)
{
	list_add(arg, id, type, group_state_name(state));
}

static int listed_cmp(const void *x, const void *y)
{
	const struct kafka_list_groups_response_listed_group *a = x, *b = y;
	size_t n = a->group_id.len < b->group_id.len ? a->group_id.len : b->group_id.len;
	int c = n ? memcmp(a->group_id.data, b->group_id.data, n) : 0;
	return c ? c : (a->group_id.len > b->group_id.len) - (a->group_id.len < b->group_id.len);
}

static int list_stored(void *arg, struct slice group)
{
	struct list_state *ls = arg;
	struct kafka_list_groups_response_listed_group key = { .group_id = group };
	if (ls->n_live && bsearch(&key, ls->resp.groups, ls->n_live, sizeof key, listed_cmp))
		return 0;
	list_add(ls, group, (struct slice){ empty_bytes, 0 }, "Empty");
	return ls->failed ? 1 : 0;
}

/* Threadpool: live groups (sorted, to dedupe), then the catalog's, then the filter. */
static void list_work(uv_work_t *w)
{
	struct list_state *ls = w->data;
	struct kafka_req *req = ls->req;
	group_coordinator_list(kafka_req_groups(req), list_live, ls);
	if (ls->resp.groups_count)
		qsort(ls->resp.groups, ls->resp.groups_count, sizeof *ls->resp.groups, listed_cmp);
	ls->n_live = ls->resp.groups_count;
	int rc = group_offsets_groups(kafka_req_broker(req), list_stored, ls);
	size_t keep = 0;
	for (size_t i = 0; i < ls->resp.groups_count; i++)
		if (state_wanted(ls, ls->resp.groups[i].group_state))
			ls->resp.groups[keep++] = ls->resp.groups[i];
	ls->resp.groups_count = keep;
	if (ls->failed || rc < 0)
		ls->resp.error_code = KAFKA_COORDINATOR_NOT_AVAILABLE;
}

static void list_done(uv_work_t *w, int status)
{
	(void)status;
	struct list_state *ls = w->data;
	struct kafka_req *req = ls->req;
	req->pending--;
	kafka_req_respond(req, (kafka_encode_fn)kafka_list_groups_response_encode, &ls->resp);
}

/* ListGroups v0-4 (v4: states filter). Reads the catalog off the loop. */
int kafka_handle_list_groups(struct kafka_req *req, struct reader *r)
{
	struct list_state *ls = kafka_arena_alloc(&req->arena, sizeof *ls);
	if (!ls)
		return -ERR_NOMEM;
	memset(ls, 0, sizeof *ls);
	int rc = kafka_list_groups_request_decode(r, req->version, &req->arena, &ls->in);
	if (rc)
		return rc;
	ls->req = req;
	kafka_list_groups_response_init(&ls->resp);
	ls->work.data = ls;
	req->pending++;
	rc = uv_queue_work(loop_uv(kafka_req_loop(req)), &ls->work, list_work, list_done);
	if (rc) {
		req->pending--;
		ls->resp.error_code = KAFKA_COORDINATOR_NOT_AVAILABLE;
		return kafka_req_respond(req, (kafka_encode_fn)kafka_list_groups_response_encode,
					 &ls->resp);
	}
	return 0;
}
