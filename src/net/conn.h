/*
 * conn.h: one TCP connection, owned by one loop, and the protocol plug-in
 * interface the front ends (Kafka, AMQP, HTTP) implement.
 *
 * Lifecycle:
 *   accept ─► proto->on_open ─► on_data ... (reads, writes) ─► conn_close()
 *          ─► output drained (bounded) ─► uv_close ─► proto->on_close ─► freed
 * A connection is never freed inside one of its own callbacks: conn_close()
 * only marks it closing; the memory goes in the uv_close callback.
 *
 * Input: bytes are read into a buffer and on_data sees every buffered unread
 * byte at once; it returns how many it consumed (0 = need more bytes, e.g. a
 * partial frame) and is called again while it makes progress. More than
 * proto->max_buffer unread bytes close the connection.
 *
 * Output: conn_write() copies, conn_write_owned() moves a buffer in,
 * conn_write_file() queues a file range sent with sendfile(2) (zero-copy).
 * Everything leaves in the order it was queued. Nothing is sent per call:
 * queued buffers are gathered into one uv_try_write (iovec) at the end of each
 * read callback, or on the next loop turn for writes made outside a read
 * callback, or at conn_flush(); what the socket does not take goes to
 * uv_write. A file range is sent once everything before it is written.
 *
 * Back-pressure: when queued output exceeds conn.output.max.bytes the
 * connection stops reading (and delivering buffered input) until the output
 * drains below half of it; proto->on_drain, if set, is called then.
 *
 * Memory: queued output chunks (not file ranges) and the connection's own
 * input buffer are counted in core/mem_account.h (per chunk or buffer change).
 *
 * Every function here is for the owning loop's thread only, except
 * conn_set_limits(), conn_count() and conn_close_all().
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "net/loop.h"

struct conn;

/* A protocol served on a listener. All callbacks run on the connection's loop. */
struct net_proto {
	const char *name; /* for diagnostics: "kafka", "amqp", "http" */
	/* A connection was accepted; returns 0, or <0 to close it (on_close is then not called). */
	int (*on_open)(struct conn *c, void *proto_ctx);
	/* All buffered unread bytes (borrowed: valid until return); returns bytes consumed, 0 = need more, <0 closes. */
	ssize_t (*on_data)(struct conn *c, const uint8_t *data, size_t len);
	/* The connection is gone (peer, error or conn_close); free the protocol state. Optional. */
	void (*on_close)(struct conn *c);
	/* Cap on buffered unread input; exceeding it closes the connection with a warning. */
	size_t max_buffer;
	/* Queued output fell below half of conn.output.max.bytes after passing it. Optional. */
	void (*on_drain)(struct conn *c);
};

/* Default conn.output.max.bytes when conn_set_limits() was never called. */
#define CONN_OUTPUT_MAX_DEFAULT (8 * 1024 * 1024)
/* How long conn_close() waits for queued output to drain before dropping it. */
#define CONN_CLOSE_LINGER_MS 5000

/*
 * Sets the process-wide limits: accepted connections over all listeners
 * (max.connections, <= 0 = no limit) and the per-connection output cap
 * (conn.output.max.bytes). Any thread; affects connections accepted later.
 */
void conn_set_limits(int64_t max_connections, int64_t output_max_bytes);
/* Connections currently open in this process. Any thread. */
int64_t conn_count(void);

/*
 * Accepts one pending connection from a listening stream on loop (the
 * listener's connection callback). Over max.connections the connection is
 * accepted and closed at once with a rate-limited warning. Returns 0 or an
 * error (nothing to free either way).
 */
int conn_accept(struct loop *loop, uv_stream_t *server, const struct net_proto *proto,
		void *proto_ctx);

/* Protocol state set by conn_set_data (borrowed; the protocol frees it in on_close). */
void *conn_data(const struct conn *c);
void conn_set_data(struct conn *c, void *data);
/* The owning loop. */
struct loop *conn_loop(const struct conn *c);
/* The protocol served. */
const struct net_proto *conn_proto(const struct conn *c);
/* Peer address "ip:port" ("[ip6]:port"), for diagnostics (borrowed). */
const char *conn_peer(const struct conn *c);
/* The socket's file descriptor (used by the sendfile path, see docs/net.md), or -1. */
int conn_fd(const struct conn *c);

/* Queues a copy of len bytes. Returns 0, -ERR_CLOSED or -ERR_NOMEM. */
int conn_write(struct conn *c, const void *buf, size_t len);
/*
 * Queues buf without copying (moved: the connection calls free_fn(buf) once
 * sent or discarded, also when this returns an error). free_fn may be NULL for
 * static data. Returns 0, -ERR_CLOSED or -ERR_NOMEM.
 */
int conn_write_owned(struct conn *c, void *buf, size_t len, void (*free_fn)(void *));
/*
 * Queues len bytes of the file fd from file position offset, sent with
 * sendfile(2) after everything queued before it (zero-copy: the bytes never
 * enter user space). fd must stay open and the range must stay in the file
 * until release(arg) runs; the connection calls it exactly once: when the range
 * is sent, when it is dropped by a close, or before this returns an error.
 * release may be NULL. A file that ends inside the range aborts the
 * connection. The range counts towards conn.output.max.bytes. Returns 0,
 * -ERR_CLOSED, -ERR_INVALID (negative fd, offset or length) or -ERR_NOMEM.
 */
int conn_write_file(struct conn *c, int fd, int64_t offset, int64_t len,
		    void (*release)(void *), void *arg);
/* Sends queued output now (uv_try_write, rest via uv_write; file ranges via sendfile). */
void conn_flush(struct conn *c);
/* Bytes queued and not yet written to the socket (file ranges included). */
size_t conn_output_bytes(const struct conn *c);
/* Whether output is over the cap (the protocol should hold further sends). */
int conn_output_full(const struct conn *c);

/* Stops reading (and delivering buffered input) until conn_resume_read. */
void conn_pause_read(struct conn *c);
/* Resumes reading; buffered input is delivered on the next loop turn. */
void conn_resume_read(struct conn *c);
/* Whether the connection currently reads from its socket. */
int conn_reading(const struct conn *c);

/*
 * Closes gracefully: stops reading, sends queued output (for at most
 * CONN_CLOSE_LINGER_MS), then closes; on_close runs later. Idempotent.
 */
void conn_close(struct conn *c);
/* Closes at once, dropping queued output. Idempotent. */
void conn_abort(struct conn *c);
/* Whether conn_close/conn_abort was called or the peer is gone. */
int conn_closing(const struct conn *c);

/*
 * Closes every connection on every loop of g: gracefully, then after half of
 * timeout_ms by abort, and waits until all are gone or timeout_ms passed.
 * Returns how many were still open at the end (0 = all closed). Not from a
 * loop thread of g.
 */
size_t conn_close_all(struct loop_group *g, int64_t timeout_ms);

#endif
