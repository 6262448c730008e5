/*
 * conn.c: connections: reading into a bounded input buffer, batched writes,
 * back-pressure, and a close that never frees inside its own callback.
 *
 * Input: while a connection has no unread leftovers, libuv reads into one
 * 64 KiB buffer per loop thread (thread-local) and on_data runs on it directly;
 * only an incomplete tail is copied into the connection's own buffer, which
 * later reads append to (growing geometrically, never past max_buffer + 1) and
 * which is freed as soon as it is empty. An idle connection holds no input
 * memory, and a large frame is copied at most once.
 *
 * Output: a queue of chunks, either copies (small writes are packed into
 * CONN_CHUNK_BYTES chunks), moved buffers with a free function, or file ranges
 * (zero-copy: sent with sendfile(2), never read into memory):
 *
 *   head ─► [sent | unsent] ─► [owned buffer] ─► [file range] ─► [copy chunk] ◄─ tail
 *            off
 *
 * A flush gathers up to CONN_IOV_MAX byte chunks, stopping at the first file
 * range, into one uv_try_write; what the socket refuses goes into a single
 * uv_write, and the next flush waits for its callback. Bytes, not chunks, are
 * counted in flight, so the tail chunk can keep filling while it is being
 * written (copy chunks never move).
 *
 * A file range is sent only once it is the head of the queue: every earlier
 * byte is written and libuv's write queue for the stream is empty (no uv_write
 * in flight), so the bytes reach the peer in queue order. Then sendfile(2) runs
 * on the socket descriptor in a loop. When the socket is full (EAGAIN) the
 * connection waits for it to become writable with a uv_poll on a dup() of the
 * descriptor (libuv refuses a second handle on the same fd with UV_EEXIST);
 * meanwhile later writes stay queued behind the range. The poll handle and the
 * duplicate are made on the first EAGAIN and kept, stopped, until the
 * connection closes (the socket is really closed only when both descriptors
 * are). A finished range calls its release function, and so does freeing the
 * connection for every range still queued: exactly once either way.
 *
 * Each connection has two handles, three once it waited for a file range: the
 * TCP stream, a timer ("kick") that runs deferred work on the next loop turn
 * (flush of writes made outside a read callback, delivery of buffered input
 * after a resume, on_drain) or, once closing, bounds how long queued output may
 * take to drain, and the poll above. The connection is freed when every
 * handle's close callback has run.
 */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/mem_account.h"

#define CONN_READ_BYTES (64 * 1024)
#define CONN_CHUNK_BYTES (16 * 1024)
#define CONN_IOV_MAX 64
#define CONN_MAX_BUFFER_DEFAULT (1024 * 1024)
#define CONN_IOV_BYTES_MAX ((size_t)1 << 30)
/* Most bytes asked of one sendfile(2) call (Linux sends at most 0x7ffff000). */
#define CONN_SENDFILE_MAX ((size_t)1 << 30)

/* A queued piece of output. */
struct out_chunk {
	struct out_chunk *next;
	uint8_t *base;            /* inline data, or the moved buffer; NULL for a file range */
	size_t len;               /* bytes in the chunk */
	size_t off;               /* bytes already written */
	size_t cap;               /* inline capacity; 0 for a moved buffer or a file range */
	void (*free_fn)(void *);  /* moved buffer: free_fn(base); file range: free_fn(arg) */
	void *arg;                /* file range: the release argument */
	int fd;                   /* file range: the file (borrowed until release); else -1 */
	int64_t file_pos;         /* file range: file position of byte 0 of the range */
	size_t acct;              /* bytes counted in MEM_CONN_OUTPUT (0 for a file range) */
	uint8_t data[];
};

struct conn {
	struct loop_member member; /* first: the loop's member list points here */
	uv_tcp_t tcp;
	uv_timer_t kick;
	uv_poll_t poll;           /* on poll_fd, for file ranges; valid while poll_open */
	uv_write_t wreq;
	int poll_fd;              /* owned dup() of the socket; closed after the poll handle */
	struct loop *loop;
	const struct net_proto *proto;
	void *proto_ctx;
	void *data;               /* protocol state; freed by the protocol's on_close */
	char peer[64];
	size_t max_buffer;
	size_t output_max;
	/* Unread input (owned; NULL when empty). */
	uint8_t *in;
	size_t in_len, in_cap;
	/* Output queue (owned chunks). */
	struct out_chunk *out_head, *out_tail;
	size_t out_bytes;         /* unsent bytes, including those in flight */
	size_t inflight_bytes;    /* bytes handed to the pending uv_write */
	int handles_open;         /* handles whose close callback has not run */
	unsigned opened : 1;      /* on_open succeeded: on_close is owed */
	unsigned closing : 1;
	unsigned handles_closing : 1;
	unsigned writing : 1;     /* a uv_write is pending */
	unsigned reading : 1;
	unsigned user_paused : 1;
	unsigned bp_paused : 1;   /* paused by output back-pressure */
	unsigned batching : 1;    /* inside a callback that flushes at its end */
	unsigned want_drain : 1;  /* on_drain owed on the next kick */
	unsigned poll_open : 1;   /* poll and poll_fd exist */
	unsigned polling : 1;     /* waiting for the socket to take more of a file range */
};

static atomic_llong open_count;
static atomic_llong max_connections;
static atomic_llong output_max_bytes = CONN_OUTPUT_MAX_DEFAULT;
static atomic_llong reject_warn_ms;
static atomic_llong reject_suppressed;

static _Thread_local uint8_t read_buf[CONN_READ_BYTES];

static void conn_flush_now(struct conn *c);

void conn_set_limits(int64_t max_conns, int64_t output_max)
{
	atomic_store(&max_connections, max_conns > 0 ? max_conns : 0);
	if (output_max > 0)
		atomic_store(&output_max_bytes, output_max);
}

int64_t conn_count(void)
{
	return atomic_load(&open_count);
}

/* Frees a chunk: a moved buffer's free function, or a file range's release, runs here. */
static void free_chunk(struct out_chunk *ch)
{
	if (ch->acct)
		mem_account_add(MEM_CONN_OUTPUT, -(int64_t)ch->acct);
	if (ch->cap == 0 && ch->free_fn != NULL)
		ch->free_fn(ch->fd >= 0 ? ch->arg : ch->base);
	free(ch);
}

static void conn_free(struct conn *c)
{
	/* Counted out first: once on_close ran, a new connection must fit under the cap. */
	atomic_fetch_sub(&open_count, 1);
	if (c->opened && c->proto->on_close != NULL)
		c->proto->on_close(c);
	struct out_chunk *ch = c->out_head;
	while (ch != NULL) {
		struct out_chunk *next = ch->next;
		free_chunk(ch);
		ch = next;
	}
	if (c->in_cap)
		mem_account_add(MEM_CONN_INPUT, -(int64_t)c->in_cap);
	free(c->in);
	loop_member_remove(c->loop, &c->member);
	free(c);
}

static void handle_closed_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->handles_open == 0)
		conn_free(c);
}

/* The poll handle is closed (it no longer watches poll_fd): close the duplicate. */
static void poll_closed_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	close(c->poll_fd);
	c->poll_fd = -1;
	handle_closed_cb(h);
}

static void close_handles(struct conn *c)
{
	if (c->handles_closing)
		return;
	c->closing = 1;
	c->handles_closing = 1;
	c->reading = 0;
	c->polling = 0;
	c->handles_open = c->poll_open ? 3 : 2;
	uv_close((uv_handle_t *)&c->tcp, handle_closed_cb);
	uv_close((uv_handle_t *)&c->kick, handle_closed_cb);
	if (c->poll_open)
		uv_close((uv_handle_t *)&c->poll, poll_closed_cb);
}

static void kick_cb(uv_timer_t *t);

/* Runs deferred work on the next loop turn (not while closing: the timer then bounds the linger). */
static void arm_kick(struct conn *c)
{
	if (c->closing || uv_is_active((uv_handle_t *)&c->kick))
		return;
	uv_timer_start(&c->kick, kick_cb, 0, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	(void)suggested;
	/* Reading one byte past max_buffer is how an oversized input shows. */
	size_t limit = c->max_buffer + 1;
	if (c->in_len == 0) {
		size_t n = limit < sizeof read_buf ? limit : sizeof read_buf;
		*buf = uv_buf_init((char *)read_buf, (unsigned)n);
		return;
	}
	size_t want = c->in_len + CONN_READ_BYTES;
	if (want > limit)
		want = limit;
	if (want <= c->in_len) {
		*buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
		return;
	}
	if (c->in_cap < want) {
		size_t cap = c->in_cap * 2 > want ? c->in_cap * 2 : want;
		if (cap > limit)
			cap = limit;
		uint8_t *p = realloc(c->in, cap);
		if (p == NULL) {
			*buf = uv_buf_init(NULL, 0);
			return;
		}
		mem_account_add(MEM_CONN_INPUT, (int64_t)cap - (int64_t)c->in_cap);
		c->in = p;
		c->in_cap = cap;
	}
	*buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void update_reading(struct conn *c)
{
	if (c->handles_closing)
		return;
	int want = !c->closing && !c->user_paused && !c->bp_paused;
	if (want && !c->reading) {
		int e = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
		if (e != 0) {
			diag_warn("net", "%s: cannot read from %s: %s", c->proto->name, c->peer,
				  uv_strerror(e));
			close_handles(c);
			return;
		}
		c->reading = 1;
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
}

static int can_deliver(const struct conn *c)
{
	return !c->closing && !c->user_paused && !c->bp_paused;
}

/*
 * Hands p[0..len) to on_data while it makes progress and delivery is allowed.
 * Returns bytes consumed; *starved is set when on_data asked for more bytes.
 */
static size_t deliver(struct conn *c, const uint8_t *p, size_t len, int *starved)
{
	size_t done = 0;
	*starved = 0;
	while (done < len && can_deliver(c)) {
		ssize_t n = c->proto->on_data(c, p + done, len - done);
		if (n < 0) {
			diag_debug("net", "%s: closing %s at the protocol's request", c->proto->name,
				   c->peer);
			conn_close(c);
			break;
		}
		if (n == 0) {
			*starved = 1;
			break;
		}
		if ((size_t)n > len - done) {
			diag_error("net", "%s: on_data consumed %zd of %zu bytes from %s; closing",
				   c->proto->name, n, len - done, c->peer);
			conn_abort(c);
			break;
		}
		done += (size_t)n;
	}
	return done;
}

/* After delivery: an incomplete frame larger than max_buffer closes the connection. */
static void check_input_cap(struct conn *c, size_t unread, int starved)
{
	if (starved && unread > c->max_buffer && !c->closing) {
		diag_warn("net", "%s: %s sent more than %zu unread bytes (max buffer); closing",
			  c->proto->name, c->peer, c->max_buffer);
		conn_close(c);
	}
}

/* Delivers what the connection's own buffer holds, keeping the rest. */
static void deliver_buffered(struct conn *c)
{
	int starved;
	size_t done = deliver(c, c->in, c->in_len, &starved);
	if (c->handles_closing)
		return; /* buffer freed with the connection */
	size_t left = c->in_len - done;
	if (left == 0) {
		mem_account_add(MEM_CONN_INPUT, -(int64_t)c->in_cap);
		free(c->in);
		c->in = NULL;
		c->in_len = c->in_cap = 0;
	} else if (done > 0) {
		memmove(c->in, c->in + done, left);
		c->in_len = left;
	}
	check_input_cap(c, left, starved);
}

/* Keeps the unconsumed tail of a thread-buffer read in the connection's buffer. */
static int keep_leftover(struct conn *c, const uint8_t *p, size_t left)
{
	/* left <= max_buffer + 1: reads are never larger (alloc_cb). */
	size_t cap = left < CONN_CHUNK_BYTES ? CONN_CHUNK_BYTES : left;
	if (cap > c->max_buffer + 1)
		cap = c->max_buffer + 1;
	c->in = malloc(cap);
	if (c->in == NULL)
		return -ERR_NOMEM;
	memcpy(c->in, p, left);
	c->in_len = left;
	c->in_cap = cap;
	mem_account_add(MEM_CONN_INPUT, (int64_t)cap);
	return 0;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		if (nread == UV_EOF) {
			diag_debug("net", "%s: %s closed its side", c->proto->name, c->peer);
			conn_close(c);
		} else if (nread == UV_ENOBUFS) {
			diag_warn("net", "%s: no input buffer for %s (max buffer %zu); closing",
				  c->proto->name, c->peer, c->max_buffer);
			conn_close(c);
		} else {
			diag_debug("net", "%s: read from %s: %s", c->proto->name, c->peer,
				   uv_strerror((int)nread));
			conn_abort(c);
		}
		return;
	}
	c->batching = 1;
	loop_note_input(c->loop);
	if (buf->base == (char *)read_buf) {
		int starved;
		size_t n = (size_t)nread;
		size_t done = deliver(c, read_buf, n, &starved);
		if (!c->handles_closing && done < n) {
			if (keep_leftover(c, read_buf + done, n - done) != 0) {
				diag_warn("net", "%s: out of memory buffering input from %s; closing",
					  c->proto->name, c->peer);
				conn_abort(c);
			} else {
				check_input_cap(c, n - done, starved);
			}
		}
	} else {
		c->in_len += (size_t)nread;
		deliver_buffered(c);
	}
	c->batching = 0;
	/* One flush for everything this read produced (write batching). */
	conn_flush_now(c);
}

static void kick_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->closing) {
		diag_debug("net", "%s: output to %s did not drain in %d ms; dropping it",
			   c->proto->name, c->peer, CONN_CLOSE_LINGER_MS);
		conn_abort(c);
		return;
	}
	c->batching = 1;
	if (c->want_drain && !c->bp_paused) {
		c->want_drain = 0;
		if (c->proto->on_drain != NULL)
			c->proto->on_drain(c);
	}
	if (c->in_len > 0 && can_deliver(c))
		deliver_buffered(c);
	c->batching = 0;
	conn_flush_now(c);
}

/* Re-evaluates back-pressure and a pending graceful close after output changed. */
static void output_changed(struct conn *c)
{
	if (c->handles_closing)
		return;
	if (!c->bp_paused && c->out_bytes > c->output_max) {
		c->bp_paused = 1;
		update_reading(c);
		diag_debug("net", "%s: %zu bytes queued for %s; reading paused", c->proto->name,
			   c->out_bytes, c->peer);
	} else if (c->bp_paused && c->out_bytes <= c->output_max / 2) {
		c->bp_paused = 0;
		update_reading(c);
		c->want_drain = 1;
		arm_kick(c);
	}
	if (c->closing && !c->writing && !c->polling && c->out_bytes == 0)
		close_handles(c);
}

/* Drops n written bytes from the head of the output queue (byte chunks only). */
static void consume_output(struct conn *c, size_t n)
{
	c->out_bytes -= n;
	while (n > 0) {
		struct out_chunk *ch = c->out_head;
		size_t left = ch->len - ch->off;
		if (n < left) {
			ch->off += n;
			return;
		}
		n -= left;
		c->out_head = ch->next;
		if (c->out_head == NULL)
			c->out_tail = NULL;
		free_chunk(ch);
	}
}

/*
 * Fills bufs with up to CONN_IOV_MAX unsent byte pieces from the head, stopping
 * at the first file range; returns the count and their total.
 */
static unsigned gather(struct conn *c, uv_buf_t *bufs, size_t *total)
{
	unsigned n = 0;
	*total = 0;
	for (struct out_chunk *ch = c->out_head; ch != NULL && n < CONN_IOV_MAX && ch->fd < 0;
	     ch = ch->next) {
		size_t left = ch->len - ch->off;
		if (left == 0)
			continue;
		if (left > CONN_IOV_BYTES_MAX)
			left = CONN_IOV_BYTES_MAX; /* uv_buf_t lengths are unsigned int */
		bufs[n++] = uv_buf_init((char *)ch->base + ch->off, (unsigned)left);
		*total += left;
	}
	return n;
}

static void write_cb(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	c->writing = 0;
	if (c->handles_closing)
		return; /* cancelled by close; chunks are freed with the connection */
	if (status < 0) {
		diag_debug("net", "%s: write to %s: %s", c->proto->name, c->peer,
			   uv_strerror(status));
		conn_abort(c);
		return;
	}
	consume_output(c, c->inflight_bytes);
	c->inflight_bytes = 0;
	conn_flush_now(c);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	struct conn *c = p->data;
	(void)events;
	if (c->handles_closing)
		return;
	uv_poll_stop(p);
	c->polling = 0;
	if (status < 0) {
		diag_debug("net", "%s: waiting to write to %s: %s", c->proto->name, c->peer,
			   uv_strerror(status));
		conn_abort(c);
		return;
	}
	conn_flush_now(c);
}

/* Waits until the socket is writable again (the poll on a duplicate descriptor). */
static int wait_writable(struct conn *c)
{
	if (!c->poll_open) {
		int sock = conn_fd(c);
		int fd = sock >= 0 ? fcntl(sock, F_DUPFD_CLOEXEC, 0) : -1;
		if (fd < 0)
			return sock >= 0 ? -errno : -ERR_CLOSED;
		int e = uv_poll_init(loop_uv(c->loop), &c->poll, fd);
		if (e != 0) {
			close(fd);
			return e;
		}
		c->poll.data = c;
		c->poll_fd = fd;
		c->poll_open = 1;
	}
	int e = uv_poll_start(&c->poll, UV_WRITABLE, poll_cb);
	if (e != 0)
		return e;
	c->polling = 1;
	return 0;
}

/*
 * Sends the file range at the head with sendfile(2) until it is all sent (0),
 * the socket is full (-ERR_AGAIN) or it fails: -ERR_CORRUPT when the file ends
 * before the range does, or the negative errno.
 */
static int send_file_range(struct conn *c, struct out_chunk *ch)
{
	int sock = conn_fd(c);
	if (sock < 0)
		return -ERR_CLOSED;
	while (ch->off < ch->len) {
		size_t want = ch->len - ch->off;
		if (want > CONN_SENDFILE_MAX)
			want = CONN_SENDFILE_MAX;
		off_t pos = (off_t)(ch->file_pos + (int64_t)ch->off);
		ssize_t n = sendfile(sock, ch->fd, &pos, want);
		if (n > 0) {
			ch->off += (size_t)n;
			c->out_bytes -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -ERR_CORRUPT; /* end of file inside the range */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -ERR_AGAIN;
		return -errno;
	}
	return 0;
}

/*
 * Sends the file range at the head of the queue, as far as the socket takes it.
 * Returns 1 when it was sent whole (and released), 0 when the connection now
 * waits for the socket, or -1 when the connection was aborted.
 */
static int flush_file_range(struct conn *c)
{
	struct out_chunk *ch = c->out_head;
	int rc = send_file_range(c, ch);
	if (rc == 0) {
		c->out_head = ch->next;
		if (c->out_head == NULL)
			c->out_tail = NULL;
		free_chunk(ch);
		return 1;
	}
	if (rc == -ERR_AGAIN) {
		rc = wait_writable(c);
		if (rc == 0)
			return 0;
		diag_warn("net", "%s: cannot wait to write to %s: %s", c->proto->name, c->peer,
			  err_str(rc));
	} else if (rc == -ERR_CORRUPT) {
		diag_error("net", "%s: file range for %s ends early: %zu of %zu bytes at file position"
			   " %lld sent; closing", c->proto->name, c->peer, ch->off, ch->len,
			   (long long)ch->file_pos);
	} else if (rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN) {
		diag_debug("net", "%s: sendfile to %s: %s", c->proto->name, c->peer, err_str(rc));
	} else {
		diag_warn("net", "%s: sendfile to %s: %s; closing", c->proto->name, c->peer,
			  err_str(rc));
	}
	conn_abort(c);
	return -1;
}

static void conn_flush_now(struct conn *c)
{
	if (c->handles_closing)
		return;
	while (!c->writing && !c->polling && c->out_bytes > 0) {
		if (c->out_head->fd >= 0) {
			/* Our uv_write is the only one and it is done (libuv empties its
			 * queue before write_cb), so this holds; sendfile must never
			 * overtake bytes libuv still holds. */
			if (uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) > 0)
				break;
			int rc = flush_file_range(c);
			if (rc < 0)
				return;
			if (rc == 0)
				break;
			continue;
		}
		uv_buf_t bufs[CONN_IOV_MAX];
		size_t total;
		unsigned n = gather(c, bufs, &total);
		int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
		if (w == UV_EAGAIN || w == UV_ENOSYS)
			w = 0;
		if (w < 0) {
			diag_debug("net", "%s: write to %s: %s", c->proto->name, c->peer,
				   uv_strerror(w));
			conn_abort(c);
			return;
		}
		consume_output(c, (size_t)w);
		if ((size_t)w == total)
			continue; /* more chunks than one iovec may remain */
		/* The socket is full: libuv waits for it to become writable. */
		n = gather(c, bufs, &total);
		c->wreq.data = c;
		int e = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, write_cb);
		if (e != 0) {
			diag_debug("net", "%s: write to %s: %s", c->proto->name, c->peer,
				   uv_strerror(e));
			conn_abort(c);
			return;
		}
		c->writing = 1;
		c->inflight_bytes = total;
	}
	output_changed(c);
}

void conn_flush(struct conn *c)
{
	conn_flush_now(c);
}

/* After queueing: back-pressure check, and a flush on the next turn unless one is due. */
static void after_write(struct conn *c)
{
	output_changed(c);
	if (!c->batching)
		arm_kick(c);
}

static struct out_chunk *append_chunk(struct conn *c, size_t cap)
{
	struct out_chunk *ch = malloc(sizeof *ch + cap);
	if (ch == NULL)
		return NULL;
	ch->next = NULL;
	ch->base = ch->data;
	ch->len = ch->off = 0;
	ch->cap = cap;
	ch->free_fn = NULL;
	ch->arg = NULL;
	ch->fd = -1;
	ch->file_pos = 0;
	ch->acct = cap;
	if (cap)
		mem_account_add(MEM_CONN_OUTPUT, (int64_t)cap);
	if (c->out_tail != NULL)
		c->out_tail->next = ch;
	else
		c->out_head = ch;
	c->out_tail = ch;
	return ch;
}

int conn_write(struct conn *c, const void *buf, size_t len)
{
	if (c->closing)
		return -ERR_CLOSED;
	const uint8_t *p = buf;
	size_t left = len;
	struct out_chunk *t = c->out_tail;
	if (t != NULL && t->cap > t->len && left > 0) {
		size_t n = t->cap - t->len < left ? t->cap - t->len : left;
		memcpy(t->data + t->len, p, n);
		t->len += n;
		c->out_bytes += n;
		p += n;
		left -= n;
	}
	if (left > 0) {
		struct out_chunk *ch = append_chunk(c, left > CONN_CHUNK_BYTES ? left : CONN_CHUNK_BYTES);
		if (ch == NULL) {
			after_write(c);
			return -ERR_NOMEM;
		}
		memcpy(ch->data, p, left);
		ch->len = left;
		c->out_bytes += left;
	}
	after_write(c);
	return 0;
}

int conn_write_owned(struct conn *c, void *buf, size_t len, void (*free_fn)(void *))
{
	if (c->closing || len == 0) {
		if (free_fn != NULL)
			free_fn(buf);
		return c->closing ? -ERR_CLOSED : 0;
	}
	struct out_chunk *ch = append_chunk(c, 0);
	if (ch == NULL) {
		if (free_fn != NULL)
			free_fn(buf);
		return -ERR_NOMEM;
	}
	ch->base = buf;
	ch->len = len;
	ch->free_fn = free_fn;
	ch->acct = len;
	mem_account_add(MEM_CONN_OUTPUT, (int64_t)len);
	c->out_bytes += len;
	after_write(c);
	return 0;
}

int conn_write_file(struct conn *c, int fd, int64_t offset, int64_t len,
		    void (*release)(void *), void *arg)
{
	int rc = 0;
	if (c->closing)
		rc = -ERR_CLOSED;
	else if (fd < 0 || offset < 0 || len < 0 || (uint64_t)len > SIZE_MAX ||
		 offset > INT64_MAX - len)
		rc = -ERR_INVALID;
	if (rc != 0 || len == 0) {
		if (release != NULL)
			release(arg);
		return rc;
	}
	struct out_chunk *ch = append_chunk(c, 0);
	if (ch == NULL) {
		if (release != NULL)
			release(arg);
		return -ERR_NOMEM;
	}
	ch->base = NULL;
	ch->len = (size_t)len;
	ch->free_fn = release;
	ch->arg = arg;
	ch->fd = fd;
	ch->file_pos = offset;
	c->out_bytes += (size_t)len;
	after_write(c);
	return 0;
}

size_t conn_output_bytes(const struct conn *c)
{
	return c->out_bytes;
}

int conn_output_full(const struct conn *c)
{
	return c->out_bytes > c->output_max;
}

void conn_pause_read(struct conn *c)
{
	c->user_paused = 1;
	update_reading(c);
}

void conn_resume_read(struct conn *c)
{
	c->user_paused = 0;
	update_reading(c);
	if (c->in_len > 0)
		arm_kick(c);
}

int conn_reading(const struct conn *c)
{
	return c->reading;
}

void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
	if (!c->writing && !c->polling && c->out_bytes == 0) {
		close_handles(c);
		return;
	}
	/* Bound the linger; the flush below or write_cb finishes the close. */
	uv_timer_start(&c->kick, kick_cb, CONN_CLOSE_LINGER_MS, 0);
	if (!c->batching)
		conn_flush_now(c);
}

void conn_abort(struct conn *c)
{
	close_handles(c);
}

int conn_closing(const struct conn *c)
{
	return c->closing;
}

void *conn_data(const struct conn *c)
{
	return c->data;
}

void conn_set_data(struct conn *c, void *data)
{
	c->data = data;
}

struct loop *conn_loop(const struct conn *c)
{
	return c->loop;
}

const struct net_proto *conn_proto(const struct conn *c)
{
	return c->proto;
}

const char *conn_peer(const struct conn *c)
{
	return c->peer;
}

int conn_fd(const struct conn *c)
{
	uv_os_fd_t fd;
	if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0)
		return -1;
	return fd;
}

/* The loop member close function; also identifies connections among members. */
static void conn_member_close(struct loop_member *m)
{
	conn_abort((struct conn *)m);
}

static void format_peer(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	snprintf(c->peer, sizeof c->peer, "?");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		uv_ip4_name(a, ip, sizeof ip);
		snprintf(c->peer, sizeof c->peer, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		uv_ip6_name(a, ip, sizeof ip);
		snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
	}
}

static void free_handle_cb(uv_handle_t *h)
{
	free(h);
}

/* At most one warning per second about refused connections, with a count. */
static void warn_rejected(int64_t max)
{
	int64_t now = clock_mono_ns() / 1000000;
	long long last = atomic_load(&reject_warn_ms);
	if (now - last < 1000 && last != 0) {
		atomic_fetch_add(&reject_suppressed, 1);
		return;
	}
	if (!atomic_compare_exchange_strong(&reject_warn_ms, &last, now)) {
		atomic_fetch_add(&reject_suppressed, 1);
		return;
	}
	long long more = atomic_exchange(&reject_suppressed, 0);
	diag_warn("net", "max.connections (%lld) reached: refusing connections (%lld more since the last warning)",
		  (long long)max, more);
}

/* Accepts and closes at once (over the connection limit). */
static int reject(struct loop *loop, uv_stream_t *server)
{
	uv_tcp_t *t = malloc(sizeof *t);
	if (t == NULL)
		return -ERR_NOMEM;
	uv_tcp_init(loop_uv(loop), t);
	int e = uv_accept(server, (uv_stream_t *)t);
	uv_close((uv_handle_t *)t, free_handle_cb);
	return e;
}

int conn_accept(struct loop *loop, uv_stream_t *server, const struct net_proto *proto,
		void *proto_ctx)
{
	int64_t max = atomic_load(&max_connections);
	int64_t n = atomic_fetch_add(&open_count, 1) + 1;
	if (max > 0 && n > max) {
		atomic_fetch_sub(&open_count, 1);
		warn_rejected(max);
		int e = reject(loop, server);
		return e != 0 ? e : -ERR_TOO_LARGE;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL) {
		atomic_fetch_sub(&open_count, 1);
		int e = reject(loop, server);
		return e != 0 ? e : -ERR_NOMEM;
	}
	c->loop = loop;
	c->proto = proto;
	c->proto_ctx = proto_ctx;
	c->max_buffer = proto->max_buffer > 0 ? proto->max_buffer : CONN_MAX_BUFFER_DEFAULT;
	c->output_max = (size_t)atomic_load(&output_max_bytes);
	c->member.close = conn_member_close;
	c->poll_fd = -1;
	uv_tcp_init(loop_uv(loop), &c->tcp);
	uv_timer_init(loop_uv(loop), &c->kick);
	c->tcp.data = c;
	c->kick.data = c;
	loop_member_add(loop, &c->member);
	int e = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (e != 0) {
		diag_warn("net", "%s: accept: %s", proto->name, uv_strerror(e));
		conn_abort(c);
		return e;
	}
	/* Writes are batched here, so Nagle would only add latency. */
	uv_tcp_nodelay(&c->tcp, 1);
	format_peer(c);
	c->batching = 1;
	if (proto->on_open != NULL && proto->on_open(c, proto_ctx) != 0) {
		diag_debug("net", "%s: refused %s at open", proto->name, c->peer);
		conn_abort(c);
		return 0;
	}
	c->opened = 1;
	c->batching = 0;
	update_reading(c);
	conn_flush_now(c); /* a greeting, or output owed by a close during on_open */
	return 0;
}

struct close_all_ctx {
	int abort;
};

static void close_visit(struct loop_member *m, void *arg)
{
	struct close_all_ctx *x = arg;
	if (x->abort)
		conn_abort((struct conn *)m);
	else
		conn_close((struct conn *)m);
}

static void close_on_loop(void *arg)
{
	loop_member_foreach(loop_current(), conn_member_close, close_visit, arg);
}

static void count_visit(struct loop_member *m, void *arg)
{
	(void)m;
	(*(size_t *)arg)++;
}

static void count_on_loop(void *arg)
{
	loop_member_foreach(loop_current(), conn_member_close, count_visit, arg);
}

static size_t count_in_group(struct loop_group *g)
{
	size_t total = 0;
	for (int i = 0; i < loop_group_size(g); i++) {
		size_t n = 0;
		if (loop_call(loop_group_get(g, i), count_on_loop, &n) == 0)
			total += n;
	}
	return total;
}

/* Waits until no connection is left in g or the monotonic deadline passes. */
static size_t wait_closed(struct loop_group *g, int64_t deadline_ns)
{
	for (;;) {
		size_t n = count_in_group(g);
		if (n == 0 || clock_mono_ns() >= deadline_ns)
			return n;
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

size_t conn_close_all(struct loop_group *g, int64_t timeout_ms)
{
	int64_t start = clock_mono_ns();
	int64_t half = start + timeout_ms * 1000000 / 2;
	int64_t end = start + timeout_ms * 1000000;
	struct close_all_ctx graceful = { .abort = 0 }, hard = { .abort = 1 };
	for (int i = 0; i < loop_group_size(g); i++)
		loop_call(loop_group_get(g, i), close_on_loop, &graceful);
	size_t left = wait_closed(g, half);
	if (left == 0)
		return 0;
	diag_warn("net", "%zu connections still draining output; dropping it", left);
	for (int i = 0; i < loop_group_size(g); i++)
		loop_call(loop_group_get(g, i), close_on_loop, &hard);
	return wait_closed(g, end);
}
