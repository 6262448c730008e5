/*
 * loop.h: a group of event-loop threads and the messages passed between them.
 *
 * Sluice shares nothing across cores: a loop group is N threads, each running
 * its own uv_loop_t. Every connection, partition and queue is owned by exactly
 * one loop and touched only from that loop's thread. Work for an object owned
 * by another loop is sent as a message: loop_post(loop, fn, arg) may be called
 * from any thread; fn(arg) later runs on the loop's own thread.
 *
 *   thread A ──┐
 *   thread B ──┼─► [lock-free MPSC queue] ──uv_async_send──► loop thread: fn(arg)
 *   loop 2   ──┘
 *
 * The queue is Vyukov's intrusive multi-producer single-consumer list: a post is
 * one atomic exchange plus one store, never a lock. uv_async_send coalesces
 * wake-ups, so a burst of posts costs one eventfd write and one drain.
 *
 * Members: objects living on a loop (connections) register as members so that
 * stopping the loop closes them properly (their close callbacks free them)
 * before a final uv_walk closes whatever handles remain.
 *
 * Who may call what: loop_group_start/stop from a thread outside the group
 * (main); loop_post and loop_call from any thread; everything marked "loop
 * thread" only from that loop's thread.
 */
#ifndef SLUICE_LOOP_H
#define SLUICE_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct loop;
struct loop_group;

/* A message body: runs on the target loop's thread. */
typedef void (*loop_fn)(void *arg);

/* Most loops a group may have. */
#define LOOP_GROUP_MAX_THREADS 256

/*
 * Starts a group of threads loops (0 = number of online cores, capped at
 * LOOP_GROUP_MAX_THREADS), each running until loop_group_stop(). Returns 0 or
 * a negative error; *out is set only on success.
 */
int loop_group_start(int threads, struct loop_group **out);

/*
 * Input coalescing (docs/net.md, "Coalescing input"). A loop whose sockets
 * keep receiving input less than gap_us apart (a client streaming messages)
 * waits wait_us before polling again, on every other turn, so that one
 * wake-up reads many messages. While the loop thread blocks in epoll_wait,
 * every segment a client sends must wake it, and that wake-up is paid by the
 * sender's system call. A loop whose input is sparser never waits, so
 * request/response latency is unchanged. wait_us = 0 turns it off.
 */
struct loop_coalesce {
	int wait_us; /* 0..10000 */
	int gap_us;  /* 1..10000 */
};
/* loop_group_start with coalescing settings (NULL: off). */
int loop_group_start_opts(int threads, const struct loop_coalesce *co, struct loop_group **out);
/*
 * A connection of this loop read input now: the measure coalescing goes by.
 * Loop thread only; cheap when coalescing is off.
 */
void loop_note_input(struct loop *loop);
/* Coalescing waits the loop has taken so far (any thread). */
uint64_t loop_coalesce_waits(const struct loop *loop);
/*
 * Stops every loop: rejects further posts, runs messages already queued,
 * closes every member and then every remaining handle, runs each loop until
 * empty, joins the threads and frees the group. Returns 0, or the first error
 * of uv_loop_close (a handle or request still alive). Must not be called from
 * one of the group's own threads.
 */
int loop_group_stop(struct loop_group *g);
/* Number of loops in the group. */
int loop_group_size(const struct loop_group *g);
/* Loop i of the group (0 <= i < size), or NULL when out of range. */
struct loop *loop_group_get(const struct loop_group *g, int i);

/* The loop whose thread is calling, or NULL outside every loop thread. */
struct loop *loop_current(void);
/* Position of loop in its group, 0-based. */
int loop_index(const struct loop *loop);
/* The group the loop belongs to. */
struct loop_group *loop_group_of(const struct loop *loop);
/* The libuv loop (loop thread only, except for thread-safe uv calls). */
uv_loop_t *loop_uv(struct loop *loop);

/*
 * Queues fn(arg) to run on loop's thread. Safe from any thread, including the
 * loop's own (then fn runs on a later turn, never inside this call). Messages
 * from one poster run in posting order. Returns 0, -ERR_NOMEM, or -ERR_CLOSED
 * once the loop is stopping (fn will not run: the caller still owns arg).
 */
int loop_post(struct loop *loop, loop_fn fn, void *arg);
/*
 * Runs fn(arg) on loop's thread and waits until it has returned. Runs it
 * inline when called from that thread. For control operations (listener start
 * and stop), not hot paths: from another loop thread it blocks that loop.
 * Returns 0, or loop_post's error (fn has not run).
 */
int loop_call(struct loop *loop, loop_fn fn, void *arg);

/*
 * Work deferred to the end of the current batch of messages: a loop drains
 * every message posted to it, then runs each deferred callback once. Lets an
 * owner coalesce per-message work (one dispatch and one write for a burst of
 * publishes). The node is the caller's (embedded, no allocation).
 */
struct loop_deferred {
	struct loop_deferred *next; /* loop's list; internal */
	loop_fn fn;
	void *arg;
	int queued;                 /* internal: on the list */
};
/*
 * Runs d->fn(d->arg) once on the calling loop's thread after the messages
 * being drained now (or on the next turn when called outside a drain). A node
 * already queued is left as it is. Loop thread only; the node must stay valid
 * until fn runs.
 */
void loop_defer(struct loop *loop, struct loop_deferred *d);

/* Something living on one loop that must be closed before the loop stops. */
struct loop_member;
typedef void (*loop_member_close_fn)(struct loop_member *m);
struct loop_member {
	struct loop_member *prev, *next; /* owned by the loop's member list */
	loop_member_close_fn close;      /* starts closing; the owner later calls loop_member_remove() */
};

/* Adds m (close set by the caller) to loop's members. Loop thread. */
void loop_member_add(struct loop *loop, struct loop_member *m);
/* Removes m from loop's members. Loop thread. */
void loop_member_remove(struct loop *loop, struct loop_member *m);
/*
 * Calls visit(m, arg) for every member whose close function is kind (NULL:
 * every member); returns how many were visited. visit may start closing m but
 * must not free it. Loop thread.
 */
size_t loop_member_foreach(struct loop *loop, loop_member_close_fn kind,
			   void (*visit)(struct loop_member *m, void *arg), void *arg);

#endif
