/*
 * kafka_group.h: the Kafka group coordinator (consumer groups: membership,
 * generations, rebalances, assignments) and its lifetime. The request
 * handlers (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
 * DescribeGroups, ListGroups, OffsetCommit, OffsetFetch) are declared in
 * kafka_int.h. Committed offsets are durable in the catalog (through the broker).
 *
 * The coordinator API below is what those handlers call; it knows nothing of
 * requests or sockets, so tests drive it directly. Every function may be
 * called from any thread (one mutex guards the coordinator; docs/kafka-groups.md).
 * Slices passed in are borrowed for the call; the coordinator copies what it
 * keeps. JoinGroup and SyncGroup may have to wait for other members: their
 * callback runs exactly once, on the loop `reply`, either inside the call
 * (when the answer is immediate and the caller is on `reply`) or later.
 * Results are borrowed: valid until the callback returns. Errors are Kafka
 * error codes (enum kafka_error in kafka_int.h).
 */
#ifndef SLUICE_KAFKA_GROUP_H
#define SLUICE_KAFKA_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "net/loop.h"

struct group_coordinator;

/* Creates the coordinator for broker b, with its timers on loops. */
int group_coordinator_new(struct broker *b, struct loop_group *loops,
			  struct group_coordinator **out);
/* Frees it; call after every Kafka connection is closed and the loops stopped. */
void group_coordinator_free(struct group_coordinator *g);
/*
 * Answers every JoinGroup/SyncGroup still waiting (COORDINATOR_NOT_AVAILABLE)
 * and from now on answers new ones at once. Call after the Kafka connections
 * are closed and before the loops stop, so no request stays pending (leaks).
 */
void group_coordinator_quiesce(struct group_coordinator *g);
/*
 * Tuning (tests): the delay an empty group waits for more members on its first
 * join (group.initial.rebalance.delay.ms, default 100) and the shortest session
 * timeout accepted (group.min.session.timeout.ms, default 6000).
 */
void group_coordinator_set_timing(struct group_coordinator *g, int32_t initial_delay_ms,
				  int32_t min_session_timeout_ms);

/* Group states, as Kafka names them in DescribeGroups / ListGroups. */
enum group_state {
	GROUP_EMPTY,
	GROUP_PREPARING_REBALANCE,
	GROUP_COMPLETING_REBALANCE,
	GROUP_STABLE,
	GROUP_DEAD,
};
/* "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead". */
const char *group_state_name(enum group_state s);

/* One protocol (assignor) a member supports, in its order of preference. */
struct group_protocol {
	struct slice name;
	struct slice metadata;
};

/* JoinGroup v0-7 input. */
struct group_join_args {
	struct slice group_id;
	struct slice member_id;          /* empty: a new member */
	struct slice group_instance_id;  /* data NULL: none (dynamic member) */
	struct slice client_id;
	struct slice client_host;
	struct slice protocol_type;
	int32_t session_timeout_ms;
	int32_t rebalance_timeout_ms;    /* < 0: the session timeout (v0) */
	const struct group_protocol *protocols;
	size_t n_protocols;
	bool require_known_member_id;    /* v4+: answer MEMBER_ID_REQUIRED first */
};

struct group_join_member {
	struct slice member_id;
	struct slice group_instance_id;  /* data NULL: none */
	struct slice metadata;           /* for the selected protocol */
};

struct group_join_result {
	int16_t error;
	int32_t generation_id;           /* -1 on error */
	struct slice protocol_type;      /* data NULL: none */
	struct slice protocol_name;      /* data NULL: none */
	struct slice leader;
	struct slice member_id;
	const struct group_join_member *members; /* the leader's only; else none */
	size_t n_members;
};
typedef void (*group_join_cb)(void *arg, const struct group_join_result *res);
/* JoinGroup: cb(arg, result) runs once on reply (see the top of this file). */
void group_coordinator_join(struct group_coordinator *g, const struct group_join_args *a,
			    struct loop *reply, group_join_cb cb, void *arg);

/* One member's assignment, as the leader sends it in SyncGroup. */
struct group_assignment {
	struct slice member_id;
	struct slice assignment;
};

/* SyncGroup v0-5 input. */
struct group_sync_args {
	struct slice group_id;
	struct slice member_id;
	struct slice group_instance_id;  /* data NULL: none */
	struct slice protocol_type;      /* v5: checked when not null */
	struct slice protocol_name;      /* v5: checked when not null */
	int32_t generation_id;
	const struct group_assignment *assignments; /* the leader's; else none */
	size_t n_assignments;
};

struct group_sync_result {
	int16_t error;
	struct slice protocol_type;      /* data NULL: none */
	struct slice protocol_name;      /* data NULL: none */
	struct slice assignment;
};
typedef void (*group_sync_cb)(void *arg, const struct group_sync_result *res);
/* SyncGroup: followers wait for the leader's assignment; cb runs once on reply. */
void group_coordinator_sync(struct group_coordinator *g, const struct group_sync_args *a,
			    struct loop *reply, group_sync_cb cb, void *arg);

/* Heartbeat: resets the member's session timer; returns a Kafka error code. */
int16_t group_coordinator_heartbeat(struct group_coordinator *g, struct slice group_id,
				    struct slice member_id, struct slice group_instance_id,
				    int32_t generation_id);

/* One member leaving (LeaveGroup v3+ batches them); error is set per member. */
struct group_leave_member {
	struct slice member_id;
	struct slice group_instance_id;  /* data NULL: none */
	int16_t error;                   /* out */
};
/* LeaveGroup: removes members; returns the top-level error code. */
int16_t group_coordinator_leave(struct group_coordinator *g, struct slice group_id,
				struct group_leave_member *members, size_t n);

/*
 * OffsetCommit's membership check: NONE when the commit may be stored (a
 * member of the current generation, or a simple commit with generation < 0
 * to a group without members), else UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
 * REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID, INVALID_GROUP_ID. A member's
 * commit also resets its session timer.
 */
int16_t group_coordinator_commit_check(struct group_coordinator *g, struct slice group_id,
				       struct slice member_id, struct slice group_instance_id,
				       int32_t generation_id);

/* A member as DescribeGroups shows it (metadata and assignment only when Stable). */
struct group_member_desc {
	struct slice member_id;
	struct slice group_instance_id;  /* data NULL: none */
	struct slice client_id;
	struct slice client_host;
	struct slice metadata;
	struct slice assignment;
};
struct group_desc {
	struct slice group_id;
	enum group_state state;
	struct slice protocol_type;      /* empty when none */
	struct slice protocol_data;      /* the selected protocol when Stable, else empty */
	const struct group_member_desc *members;
	size_t n_members;
};
/*
 * Calls fn with the group's description (borrowed; the coordinator's lock is
 * held, so fn must not call the coordinator). Returns 0, or -ERR_NOT_FOUND
 * when the coordinator holds no such group (fn not called).
 */
int group_coordinator_describe(struct group_coordinator *g, struct slice group_id,
			       void (*fn)(void *arg, const struct group_desc *d), void *arg);
/* Calls fn for every group held in memory (lock held; fn must not call the coordinator). */
void group_coordinator_list(struct group_coordinator *g,
			    void (*fn)(void *arg, struct slice group_id, struct slice protocol_type,
				       enum group_state state),
			    void *arg);

#endif
