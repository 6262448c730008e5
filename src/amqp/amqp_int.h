/*
 * amqp_int.h: what the AMQP front end's files share: the server, connection
 * and channel state, and the helpers handlers use to answer and to fail.
 * Included only by the files of src/amqp.
 *
 * A connection's life (amqp_conn.c), AMQP 0-9-1 section 4.2 and 2.2.4:
 *
 *   HEADER ──"AMQP"0091──► START_OK ──start-ok──► TUNE_OK ──tune-ok──► OPEN
 *     │ anything else:       (sent start)           (sent tune)           │
 *     └ our header, close                                     connection.open
 *                                                                          ▼
 *   closed ◄──close-ok / timeout── CLOSING ◄──connection error────── RUNNING
 *   closed ◄──────── timeout / EOF── DISCARD ◄──framing lost (501)────┘
 *
 * Frame first, decode second: the 7-byte frame header is checked against the
 * negotiated frame_max (before tune-ok: the spec's minimum, 4096) before the
 * payload is waited for, so an oversized frame is refused (501 FRAME_ERROR)
 * without being buffered. A whole frame is then decoded by the generated
 * codec (amqp_msg.h) straight from the input buffer; decoded slices borrow
 * from it and are valid only while the frame is handled: handlers copy what
 * they keep.
 *
 * Errors (section 1.2 of the spec's reply codes): a channel error (soft: 403,
 * 404, 405, 406) sends channel.close and discards that channel's frames until
 * channel.close-ok; the connection goes on. A connection error (hard: 501-506,
 * 530, 540, 541) sends connection.close and waits (bounded) for close-ok,
 * discarding everything else. When the framing itself is lost (bad frame-end,
 * unknown frame type, oversized frame) the bytes that follow cannot be
 * trusted: after connection.close the connection only discards input until
 * the peer closes or a short timeout passes, then closes.
 *
 * Everything here runs on the connection's loop thread.
 */
#ifndef SLUICE_AMQP_INT_H
#define SLUICE_AMQP_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "amqp/amqp_msg.h"
#include "amqp/amqp_server.h"
#include "broker/broker_queue.h"
#include "broker/exchange.h"
#include "core/writer.h"
#include "net/loop.h"
#include "net/conn.h"

/* printf arguments for a slice: "%.*s", SL(s). */
#define SL(s) (int)(s).len, (const char *)(s).data

/* Whether slice s holds exactly the C string str. */
static inline bool amqp_slice_is(struct slice s, const char *str)
{
	size_t n = strlen(str);
	return s.len == n && (n == 0 || memcmp(s.data, str, n) == 0);
}

/* What Sluice proposes in connection.tune; clients may lower frame_max and
 * channel_max, and choose the heartbeat. */
#define AMQP_CHANNEL_MAX 2047
#define AMQP_FRAME_MAX 131072
#define AMQP_HEARTBEAT_S 60
/* A client must finish the handshake (up to connection.open) within this. */
#define AMQP_HANDSHAKE_TIMEOUT_MS 10000
/* How long a connection error waits for connection.close-ok. */
#define AMQP_CLOSE_TIMEOUT_MS 3000
/* How long input is discarded after the framing was lost. */
#define AMQP_DISCARD_TIMEOUT_MS 1000
/* How often a connection blocked by the memory alarm checks whether it cleared. */
#define AMQP_MEM_CHECK_MS 100

/* Largest message body accepted (RabbitMQ's default max_message_size). */
#define AMQP_MESSAGE_MAX (128u << 20)
/* Most bytes of unfinished message bodies one connection may have buffered. */
#define AMQP_CONN_CONTENT_MAX (256u << 20)
/*
 * Most bytes the open transactions of one connection may hold (published
 * messages waiting for tx.commit, counted as stored plus their queue names
 * and bookkeeping). At least one message of AMQP_MESSAGE_MAX fits.
 */
#define AMQP_CONN_TX_MAX (256u << 20)

/*
 * A registry entry: a queue declared exclusive and the connection that owns
 * it, or (consumer) the count of AMQP consumers of a queue and whether one of
 * them is exclusive (basic.consume exclusive).
 */
struct amqp_exclusive {
	const struct amqp_conn *owner; /* compared only, never followed */
	uint8_t len;
	char name[256];
	bool consumer;                 /* a consumer entry */
	bool exclusive_consumer;       /* consumer entry: its only consumer is exclusive */
	uint32_t consumers;            /* consumer entry: consumers counted */
};

/* One login of amqp.users. */
struct amqp_account {
	struct slice name;
	struct slice password;
};

struct amqp_server {
	struct broker *broker;
	struct loop_group *loops;
	struct exchange_table *exchanges; /* owned */
	pthread_mutex_t excl_lock;        /* guards excl (loops of every connection use it) */
	struct amqp_exclusive *excl;      /* owned: exclusive queues and exclusive consumers */
	size_t n_excl, cap_excl;
	pthread_mutex_t reply_lock;       /* guards replies (amqp_reply.c) */
	struct amqp_reply_entry *replies; /* owned: direct reply-to consumers by key */
	size_t n_replies, cap_replies;
	char *users;                      /* owned: the bytes of amqp.users */
	struct amqp_account *accounts;    /* owned: its entries, slices of users */
	size_t n_accounts;
};

enum amqp_conn_state {
	AMQP_CONN_HEADER,    /* waiting for the protocol header */
	AMQP_CONN_START_OK,  /* sent connection.start */
	AMQP_CONN_TUNE_OK,   /* sent connection.tune */
	AMQP_CONN_OPEN,      /* tuned, waiting for connection.open */
	AMQP_CONN_RUNNING,
	AMQP_CONN_CLOSING,   /* sent connection.close, waiting for close-ok */
	AMQP_CONN_DISCARD,   /* framing lost or closed: input is discarded */
};

enum amqp_channel_state {
	AMQP_CH_OPEN,
	AMQP_CH_CLOSING, /* sent channel.close, waiting for close-ok */
};

struct amqp_conn;
struct amqp_channel;
struct amqp_reply_entry;
struct amqp_tx_msg;

/* Room for a direct reply-to key, "amq.rabbitmq.reply-to.<token>" (amqp_reply.c). */
#define AMQP_REPLY_KEY_MAX 64
struct bqueue;

/*
 * A consumer (basic.consume). It lives until the broker is done with it (the
 * queue was deleted, or basic.cancel / the channel's end was confirmed) AND no
 * unacked delivery refers to it: refs counts the registration, each pending
 * bqueue_cancel and each unacked delivery. Deliveries that arrive after its
 * channel is gone are requeued.
 */
struct amqp_consumer {
	struct amqp_consumer *next;    /* the channel's list (while ch is set) */
	struct amqp_conn *ac;          /* holds a connection reference */
	struct amqp_channel *ch;       /* NULL once the channel is gone or it was cancelled */
	struct bqueue *q;              /* owned reference */
	uint64_t id;                   /* the broker's consumer id */
	int refs;
	bool registered;               /* the broker may still deliver to it */
	bool no_ack;
	bool exclusive;
	uint16_t prefetch;             /* its own prefetch-count (basic.qos global=false) */
	uint8_t tag_len;
	char tag[256];                 /* NUL-terminated too */
};

/* A delivery waiting for basic.ack / nack / reject. */
struct amqp_unacked {
	uint64_t tag;                  /* delivery tag (kept for order once settled) */
	struct amqp_consumer *consumer; /* holds a reference; NULL for basic.get */
	struct bqueue *q;              /* basic.get: owned reference; NULL with consumer
					* NULL: settled (a hole) */
	int64_t offset;                /* the queue's handle */
	uint8_t tx_settle;             /* 0, or 1 + enum bqueue_settle: acked / nacked /
					* rejected in the open transaction, settled at
					* tx.commit (amqp_tx.c) */
};

/* basic.publish waiting for its content header and body frames. */
struct amqp_publish {
	bool active;                   /* a basic.publish was received */
	bool have_header;
	bool mandatory;
	uint8_t exchange_len, key_len;
	uint8_t exchange[255];
	uint8_t routing_key[255];
	uint8_t *header;               /* owned copy of the content header payload */
	size_t header_len;
	uint64_t body_size;
	uint8_t *body;                 /* owned, grows as body frames arrive */
	size_t body_len, body_cap;
};

/* A delivery that arrived while the channel was at its global prefetch. */
struct amqp_parked {
	struct amqp_consumer *consumer; /* holds a reference */
	struct queue_msg msg;           /* msg.data owned */
};

struct amqp_channel {
	struct amqp_conn *ac;
	uint16_t number;
	uint32_t serial;               /* unique per connection: asynchronous replies check it */
	enum amqp_channel_state state;
	/* queue class */
	bool has_current_queue;        /* the last queue declared (an empty name means it) */
	uint8_t current_queue_len;
	char current_queue[256];
	/* basic class */
	uint16_t prefetch;             /* basic.qos prefetch-count for new consumers */
	uint16_t prefetch_global;      /* basic.qos global: unacked deliveries of all
					* the channel's consumers together, 0 none */
	size_t consumer_unacked;       /* live unacked entries from consumers (not get) */
	struct amqp_parked *parked;    /* owned: deliveries held back by prefetch_global */
	size_t park_head, park_len, park_cap;
	bool confirm;                  /* confirm.select was received */
	/* direct reply-to (amqp_reply.c): the consumer of amq.rabbitmq.reply-to */
	bool has_reply;                /* consuming; the key is registered */
	uint8_t reply_key_len, reply_tag_len;
	char reply_key[AMQP_REPLY_KEY_MAX]; /* "amq.rabbitmq.reply-to.<token>" */
	char reply_tag[256];           /* its consumer tag */
	uint64_t next_tag;             /* last delivery tag given */
	uint64_t next_seq;             /* last publish sequence number (confirm mode) */
	/* Confirms (amqp_publish.c, "coalesced confirms"). */
	uint64_t conf_done;            /* every seq up to here is confirmed or in the run */
	uint64_t conf_run;             /* acks up to here not sent yet (one multiple ack); 0 none */
	uint64_t conf_count;           /* seqs confirmed so far (sent or in the run) */
	bool conf_unordered;           /* a confirm went out past a gap: single ones until caught up */
	struct amqp_consumer *consumers;
	struct amqp_unacked *unacked;  /* [ua_head, ua_len): in tag order, with holes */
	size_t ua_head, ua_len, ua_cap, ua_live;
	struct amqp_publish pub;
	struct exchange_dests dests;   /* reused by every publish */
	/* tx class (amqp_tx.c) */
	bool tx;                       /* tx.select was received */
	struct amqp_tx_msg *tx_head;   /* owned: publishes waiting for tx.commit, in order */
	struct amqp_tx_msg **tx_tail;  /* where the next one is linked */
	size_t tx_bytes;               /* their size, counted in the connection's tx_bytes */
	size_t tx_acks;                /* unacked entries marked by the open transaction */
};

/*
 * Broker work answered later (queue.purge, queue.delete, basic.get,
 * basic.cancel, publisher confirms). It holds a connection reference; the
 * channel is found again by number and serial when the answer comes, and is
 * gone if it was closed meanwhile. A synchronous method's op (waits) stops
 * the connection's input until it is answered, so replies and effects keep
 * the order of the client's methods (AMQP 0-9-1 2.2.2: methods on a channel
 * are processed in order).
 */
struct amqp_op {
	struct amqp_conn *ac;
	uint16_t channel;
	uint32_t serial;
	uint32_t method;
	bool waits;
	bool nowait;
	bool if_unused, if_empty, no_ack;
	struct bqueue *q;              /* owned reference, when the op has one */
	struct amqp_consumer *consumer; /* basic.cancel: holds a reference */
	uint64_t seq;                  /* confirms: the publish's sequence number */
	int pending;                   /* confirms, tx.commit: queue appends still running */
	bool nack;                     /* confirms, tx.commit: some queue refused it */
	uint8_t name_len;
	char name[256];                /* a queue's name, NUL-terminated */
};

struct amqp_conn {
	struct amqp_server *server;
	struct conn *conn;           /* NULL once the TCP connection is gone */
	struct loop *loop;
	char peer[64];
	enum amqp_conn_state state;
	int refs;                    /* the TCP connection + consumers and ops in flight */
	int waiting;                 /* synchronous ops in flight: input paused */
	bool mem_blocked;            /* a publish met the memory alarm: input paused */
	bool sent_blocked;           /* connection.blocked sent, connection.unblocked owed */
	int64_t mem_check_ms;        /* mem_blocked: next look at the alarm */
	uint32_t next_serial;        /* for channels */
	uint16_t channel_max;        /* negotiated */
	uint32_t frame_max;          /* negotiated; AMQP_FRAME_MIN_SIZE until tune-ok */
	uint16_t heartbeat;          /* seconds, 0 = none */
	int64_t opened_ms;           /* monotonic ms at accept */
	int64_t last_recv_ms;        /* monotonic ms of the last bytes read */
	int64_t last_send_ms;        /* monotonic ms of the last frame queued */
	int64_t close_deadline_ms;   /* CLOSING / DISCARD: close the socket then */
	uv_timer_t *timer;           /* owned; closed by timer_close() */
	struct loop_member member;   /* closes the timer if the loop stops first */
	struct amqp_channel **channels; /* owned, by number; NULL = not open */
	uint16_t n_channels;         /* length of channels (highest number + 1) */
	bool cap_blocked;            /* client understands connection.blocked */
	bool cap_cancel_notify;      /* client understands a server basic.cancel */
	bool logged_malformed;       /* a malformed frame was logged already */
	uint64_t stream_pos;         /* bytes consumed before the current input */
	size_t content_bytes;        /* buffer bytes of unfinished publishes, all channels */
	size_t tx_bytes;             /* bytes held by open transactions, all channels */
	char user[64];
	struct writer out;           /* reused to encode each frame */
	struct loop_deferred conf_flush; /* sends the channels' coalesced confirms */
	bool conf_flush_queued;      /* conf_flush is queued and holds a reference */
};

/* ---- amqp_message.c: a message as a stored record batch ---- */

/* A message's parts; every slice is borrowed. */
struct amqp_message {
	struct slice exchange;
	struct slice routing_key;
	struct slice props_raw;   /* basic properties: flags words + property list */
	struct slice body;
	int64_t timestamp_ms;     /* when it was published (decode only) */
	uint8_t priority;         /* basic.priority, 0 if absent (encode only: the stored
				   * QUEUE_PRIORITY_HEADER for priority queues) */
	bool has_ttl;             /* encode only: the expiration as QUEUE_TTL_HEADER */
	int64_t ttl_ms;
};
/* Encodes m as one record batch (owned by the caller). Returns 0 or an error. */
int amqp_message_encode(const struct amqp_message *m, int64_t now_ms, uint8_t **out,
			size_t *out_len);
/* Decodes a stored batch; m borrows from it. Returns 0 or -ERR_CORRUPT. */
int amqp_message_decode(const uint8_t *batch, size_t len, struct amqp_message *m);
/*
 * Decodes raw basic properties (property flags + list, as a message stores
 * them) into *out, which borrows from raw. Returns 0 or the errors of
 * amqp_content_header_decode.
 */
int amqp_props_decode(struct slice raw, struct amqp_basic_properties *out);
/* Encodes p as raw basic properties into *out (owned by the caller). 0 or an error. */
int amqp_props_encode(const struct amqp_basic_properties *p, uint8_t **out, size_t *out_len);

/* ---- amqp_conn.c ---- */

/* Takes / drops a reference on the connection state (freed at zero). */
void amqp_conn_ref(struct amqp_conn *ac);
void amqp_conn_unref(struct amqp_conn *ac);
/* Whether the TCP connection is still there and not failed. */
bool amqp_conn_live(const struct amqp_conn *ac);
/* A synchronous op started / finished: input pauses while any is in flight. */
void amqp_conn_wait_begin(struct amqp_conn *ac);
void amqp_conn_wait_end(struct amqp_conn *ac);
/* The open channel number n whose serial is serial, or NULL. */
struct amqp_channel *amqp_conn_channel(struct amqp_conn *ac, uint16_t n, uint32_t serial);

/*
 * Queues a method frame on channel. Returns 0, or an encoding/output error
 * (then the connection is being closed).
 */
int amqp_send_method(struct amqp_conn *ac, uint16_t channel, const struct amqp_method_desc *d,
		     const void *args);
/*
 * Queues encoded frames: amqp_send_bytes copies them; amqp_send_owned moves
 * buf in (freed once sent, also on error). Returns 0, or an output error (then
 * the connection is being closed).
 */
int amqp_send_bytes(struct amqp_conn *ac, const uint8_t *buf, size_t len);
int amqp_send_owned(struct amqp_conn *ac, uint8_t *buf, size_t len);
/*
 * Fails the connection: logs, sends connection.close with code (a hard
 * error), "NAME - text" and the offending method id (0 if none), and waits
 * for close-ok (bounded). Every channel is released.
 */
void amqp_conn_error(struct amqp_conn *ac, uint16_t code, uint32_t method_id, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));
/* Longest reply-text (a shortstr). */
#define AMQP_REPLY_TEXT_MAX 255
/* Formats "NAME - text" (RabbitMQ's style) into out, at most AMQP_REPLY_TEXT_MAX bytes. */
void amqp_reply_text(char *out, size_t n, uint16_t code, const char *fmt, va_list ap);
/* Whether a connection error is in progress (handlers stop). */
bool amqp_conn_failed(const struct amqp_conn *ac);

/* ---- amqp_channel.c ---- */

/* Opens channel number (channel.open); returns it or NULL (out of memory). */
struct amqp_channel *amqp_channel_new(struct amqp_conn *ac, uint16_t number);
/* Releases a channel's broker state and frees it (connection closing). */
void amqp_channel_free(struct amqp_channel *ch);
/* Handles a method on an open or closing channel (channel.open excepted). */
void amqp_channel_method(struct amqp_channel *ch, const struct amqp_method *m);
/* Handles a content header or body frame on an open or closing channel. */
void amqp_channel_content(struct amqp_channel *ch, const struct amqp_frame *f);
/*
 * Fails the channel: sends channel.close with code (a soft error), "NAME -
 * text" and the offending method id; releases its broker state; frames on it
 * are discarded until close-ok.
 */
void amqp_channel_error(struct amqp_channel *ch, uint16_t code, uint32_t method_id,
			const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Queues a method frame on the channel (amqp_send_method). */
int amqp_channel_send(struct amqp_channel *ch, const struct amqp_method_desc *d, const void *args);
/*
 * Starts an op for method on ch (a connection reference taken; waits: input
 * pauses until amqp_op_free). Returns NULL when out of memory (a connection
 * error was raised).
 */
struct amqp_op *amqp_op_new(struct amqp_channel *ch, uint32_t method, bool waits);
/* The op's channel if it is still open, else NULL. */
struct amqp_channel *amqp_op_channel(struct amqp_op *op);
/* Ends an op: releases its queue and connection references, resumes input. */
void amqp_op_free(struct amqp_op *op);

/* ---- amqp_exchange.c: exchange.* (class 40) ---- */

/* The reader of AMQP field tables the exchange table uses (headers exchanges). */
extern const struct exchange_table_ops amqp_exchange_table_ops;
void amqp_exchange_declare(struct amqp_channel *ch, const struct amqp_exchange_declare *m);
void amqp_exchange_delete(struct amqp_channel *ch, const struct amqp_exchange_delete *m);
void amqp_exchange_bind(struct amqp_channel *ch, const struct amqp_exchange_bind *m);
void amqp_exchange_unbind(struct amqp_channel *ch, const struct amqp_exchange_unbind *m);
/*
 * Encodes an AMQP table as stored (u32 length + entries) into a malloc'd
 * buffer (owned by the caller). Returns 0 or an error.
 */
int amqp_table_store(const struct amqp_table *t, struct slice *out);
/*
 * Parses a table stored by amqp_table_store (an empty slice is an empty
 * table); t borrows from args. 0, or an error for a malformed table or bytes
 * after it.
 */
int amqp_table_load(struct slice args, struct amqp_table *t);

/* ---- amqp_queue.c: queue.* (class 50), exclusive queues ---- */

void amqp_queue_declare(struct amqp_channel *ch, const struct amqp_queue_declare *m);
void amqp_queue_bind(struct amqp_channel *ch, const struct amqp_queue_bind *m);
void amqp_queue_unbind(struct amqp_channel *ch, const struct amqp_queue_unbind *m);
void amqp_queue_purge(struct amqp_channel *ch, const struct amqp_queue_purge *m);
void amqp_queue_delete(struct amqp_channel *ch, const struct amqp_queue_delete *m);
/*
 * Resolves a queue named by a method (the empty name is the channel's last
 * declared queue) and takes a reference. On failure the channel or
 * connection error is raised (404, 405, 530) and NULL returned.
 */
struct bqueue *amqp_queue_open(struct amqp_channel *ch, struct slice name, uint32_t method);
/*
 * Counts a new consumer of queue (basic.consume; exclusive: it must be the
 * only one). Returns 0, or -ERR_EXISTS when an exclusive consumer holds the
 * queue or an exclusive one is asked for a queue with consumers.
 */
int amqp_consumer_claim(struct amqp_server *s, const char *queue, bool exclusive);
/* A consumer of queue is gone. */
void amqp_consumer_release(struct amqp_server *s, const char *queue);
/* Deletes the exclusive queues a closing connection owns (AMQP 0-9-1 queue.declare). */
void amqp_exclusive_drop_owner(struct amqp_conn *ac);
/* Removes a deleted queue's bindings and exclusive entry (after any deletion). */
void amqp_queue_forget(struct amqp_server *s, const char *name);
/* The broker deleted a queue by itself (bqueue_hooks.deleted): forget it. */
void amqp_queue_deleted(void *ctx, const char *queue);
/* Reads a durable queue's stored argument table (bqueue_hooks.parse_args). */
int amqp_queue_args_load(struct slice stored, struct bqueue_args *a);

/* ---- amqp_deadletter.c: x-dead-letter-exchange (bqueue_hooks.dead_letter) ---- */

void amqp_dead_letter(void *ctx, const char *queue, const struct bqueue_args *args,
		      enum bqueue_death why, struct queue_msg *msg);

/* ---- amqp_basic.c: basic.* (class 60) except publish, and confirm.select ---- */

void amqp_basic_qos(struct amqp_channel *ch, const struct amqp_basic_qos *m);
void amqp_basic_consume(struct amqp_channel *ch, const struct amqp_basic_consume *m);
void amqp_basic_cancel(struct amqp_channel *ch, const struct amqp_basic_cancel *m);
void amqp_basic_get(struct amqp_channel *ch, const struct amqp_basic_get *m);
void amqp_basic_ack(struct amqp_channel *ch, const struct amqp_basic_ack *m);
void amqp_basic_nack(struct amqp_channel *ch, const struct amqp_basic_nack *m);
void amqp_basic_reject(struct amqp_channel *ch, const struct amqp_basic_reject *m);
void amqp_basic_recover(struct amqp_channel *ch, bool requeue, bool async);
void amqp_confirm_select(struct amqp_channel *ch, const struct amqp_confirm_select *m);
/* The channel is going away: requeue its unacked deliveries, cancel its consumers. */
void amqp_basic_release(struct amqp_channel *ch);
/*
 * Ends the transaction's acks / nacks / rejects: commit settles every
 * delivery marked by them with the broker; rollback unmarks them (they stay
 * unacked).
 */
void amqp_basic_tx_end(struct amqp_channel *ch, bool commit);
/*
 * Queues one message (basic.deliver / basic.get-ok / basic.return method
 * frame args of d, then its content) from a stored batch. Returns 0 or an
 * error (the connection is then being closed).
 */
int amqp_send_message(struct amqp_channel *ch, const struct amqp_method_desc *d,
		      const void *args, const struct amqp_message *msg);

/* ---- amqp_publish.c: basic.publish and its content, confirms ---- */

void amqp_publish_start(struct amqp_channel *ch, const struct amqp_basic_publish *m);
/* A content header or body frame for the publish in progress. */
void amqp_publish_content(struct amqp_channel *ch, const struct amqp_frame *f);
/* Drops a publish in progress (channel closing). */
void amqp_publish_reset(struct amqp_channel *ch);
/*
 * Hands a record batch (moved) to the n queues qs (one copy each). With op
 * (publisher confirms, tx.commit), each append counts in op->pending and
 * amqp_publish_done runs when it is stored (durable when persistent).
 */
void amqp_publish_store(struct amqp_channel *ch, struct bqueue **qs, size_t n, uint8_t *batch,
			size_t len, bool persistent, int64_t ttl_ms, struct amqp_op *op);
/*
 * One append of op finished (a bqueue_done_fn); the last one confirms the
 * publish or completes tx.commit (amqp_tx_stored).
 */
void amqp_publish_done(void *arg, int status, uint64_t offset);
/*
 * Sends the channel's coalesced acks (one basic.ack, multiple=1) now. Called
 * before anything that must come after them: the channel's or connection's
 * close. A no-op when there are none or the channel is not open.
 */
void amqp_confirm_flush(struct amqp_channel *ch);
/* amqp_confirm_flush for every open channel of the connection. */
void amqp_confirm_flush_all(struct amqp_conn *ac);
/* Sends basic.return 312 NO_ROUTE for an unroutable mandatory message. */
void amqp_publish_return(struct amqp_channel *ch, const struct amqp_message *m);

/* ---- amqp_reply.c: direct reply-to (amq.rabbitmq.reply-to, RabbitMQ's) ---- */

/* Sets up / tears down the server's reply table. amqp_reply_init returns 0 or an error. */
int amqp_reply_init(struct amqp_server *s);
void amqp_reply_fini(struct amqp_server *s);
/* Whether name is the pseudo-queue "amq.rabbitmq.reply-to". */
bool amqp_reply_is_queue(struct slice name);
/* Whether a publish to exchange with key is a reply ("" and "amq.rabbitmq.reply-to.*"). */
bool amqp_reply_is_key(struct slice exchange, struct slice key);
/* Whether name is the pseudo-queue or the key of a live reply consumer (passive declare). */
bool amqp_reply_exists(struct amqp_server *s, struct slice name);
/*
 * basic.consume of the pseudo-queue with consumer tag tag (checked unique):
 * no-ack is required (else 406); registers the channel's key and answers.
 */
void amqp_reply_consume(struct amqp_channel *ch, const struct amqp_basic_consume *m,
			const char *tag, size_t tag_len);
/* Whether tag is the channel's reply consumer. */
bool amqp_reply_has_tag(const struct amqp_channel *ch, struct slice tag);
/* Unregisters the channel's reply consumer, if any (basic.cancel, channel closing). */
void amqp_reply_release(struct amqp_channel *ch);
/*
 * A publish whose reply-to is the pseudo-queue gets the channel's key: props
 * (owned by the caller, NULL when nothing changes) are then h's properties
 * re-encoded. Returns false after raising the error (406 without a reply
 * consumer on the channel).
 */
bool amqp_reply_rewrite(struct amqp_channel *ch, const struct amqp_content_header *h,
			uint8_t **props, size_t *props_len);
/*
 * Sends a reply (amqp_reply_is_key) to its consumer's loop (a copy). Returns
 * 0, -ERR_NOT_FOUND without such a consumer, or another error (dropped).
 */
int amqp_reply_send(struct amqp_server *s, const struct amqp_message *m);

/* ---- amqp_tx.c: tx.* (class 90), RabbitMQ's transactions ---- */

void amqp_tx_select(struct amqp_channel *ch);
void amqp_tx_commit(struct amqp_channel *ch);
void amqp_tx_rollback(struct amqp_channel *ch);
/*
 * Holds a routed publish until tx.commit: batch (moved) for the queues named
 * in dests (copied). Over AMQP_CONN_TX_MAX the channel fails (406) and the
 * transaction is discarded. Returns 0 or an error (already raised).
 */
int amqp_tx_add(struct amqp_channel *ch, uint8_t *batch, size_t len, bool persistent,
		int64_t ttl_ms, bool mandatory, const struct exchange_dests *dests);
/* Every append of a tx.commit finished: sends commit-ok (or 406) and ends op. */
void amqp_tx_stored(struct amqp_op *op);
/* Discards the channel's uncommitted publishes (rollback, channel closing). */
void amqp_tx_discard(struct amqp_channel *ch);

#endif
