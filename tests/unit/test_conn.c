/*
 * test_conn.c: listeners and connections over real loopback sockets
 * (src/net/listener.h, src/net/conn.h).
 *
 * An echo protocol frames messages as a 4-byte big-endian length and a payload
 * whose first byte is a command:
 *   'E' echo the frame back          'B' + u32 n: reply with an n-byte frame
 *   'C' reply "bye" and close        'P' pause reading, reply "paused"
 *   'F' + u32 off + u32 n: reply with a frame '<' + n bytes of the test file
 *       from off (a file range, sent with sendfile) + '>'
 *   'Q' close, then queue a file range (refused: released at once)
 * Clients are blocking sockets in the test thread with receive timeouts, so
 * every wait is bounded. Callbacks are counted and checked when the loops stop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/err.h"
#include "core/reader.h"
#include "net/conn.h"
#include "net/listener.h"
#include "net/loop.h"

#define OUTPUT_MAX (256 * 1024)
#define MAX_BUFFER (64 * 1024)
#define BIG_REPLY (16 * 1024 * 1024)
#define WAIT_MS 5000

/* Callback counters (any loop thread writes them, the test thread reads). */
static atomic_int n_open, n_close, n_data_calls, n_partial, n_frames, n_drain;
static atomic_int n_owned_freed, n_state_freed;
/* File ranges: released (must equal queued once the loops stop), queued, refused by a close. */
static atomic_int n_file_released, n_file_queued, n_file_refused;
static atomic_int file_fd = -1;             /* the test file ('F'), or -1 */
static atomic_int opens_on_loop[2];
static atomic_size_t max_output_seen;
static atomic_int bad_peer, bad_fd;
static _Atomic(struct conn *) last_conn;

/* Per-connection protocol state (conn_data), freed in on_close. */
struct echo_state {
	int loop_index;
	int frames;
};

static void owned_free(void *p)
{
	free(p);
	atomic_fetch_add(&n_owned_freed, 1);
}

/* The release of a file range: arg is a counter cell that must be hit once. */
static void file_release(void *arg)
{
	atomic_int *hits = arg;
	if (atomic_fetch_add(hits, 1) != 0)
		atomic_fetch_add(&n_file_released, 1000); /* a second release: fails the count */
	atomic_fetch_add(&n_file_released, 1);
	free(arg);
}

/* Queues a file range with its own release cell; returns conn_write_file's result. */
static int queue_file(struct conn *c, uint32_t off, uint32_t len)
{
	atomic_int *hits = calloc(1, sizeof *hits);
	if (hits == NULL)
		return -ERR_NOMEM;
	atomic_fetch_add(&n_file_queued, 1);
	return conn_write_file(c, atomic_load(&file_fd), off, len, file_release, hits);
}

static int echo_open(struct conn *c, void *ctx)
{
	(void)ctx;
	struct echo_state *st = calloc(1, sizeof *st);
	if (st == NULL)
		return -ERR_NOMEM;
	st->loop_index = loop_index(conn_loop(c));
	conn_set_data(c, st);
	if (strncmp(conn_peer(c), "127.0.0.1:", 10) != 0 && strncmp(conn_peer(c), "[::1]:", 6) != 0)
		atomic_fetch_add(&bad_peer, 1);
	if (conn_fd(c) < 0)
		atomic_fetch_add(&bad_fd, 1);
	if (st->loop_index >= 0 && st->loop_index < 2)
		atomic_fetch_add(&opens_on_loop[st->loop_index], 1);
	atomic_store(&last_conn, c);
	atomic_fetch_add(&n_open, 1);
	return 0;
}

static void write_frame(struct conn *c, const void *payload, uint32_t len)
{
	uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			   (uint8_t)len };
	conn_write(c, hdr, 4);
	conn_write(c, payload, len);
}

static void note_output(struct conn *c)
{
	size_t out = conn_output_bytes(c);
	size_t seen = atomic_load(&max_output_seen);
	while (out > seen && !atomic_compare_exchange_weak(&max_output_seen, &seen, out))
		;
}

static ssize_t echo_data(struct conn *c, const uint8_t *data, size_t len)
{
	struct echo_state *st = conn_data(c);
	atomic_fetch_add(&n_data_calls, 1);
	struct reader r;
	reader_init(&r, data, len);
	uint32_t n = reader_u32(&r);
	if (r.err) {
		atomic_fetch_add(&n_partial, 1);
		return 0;
	}
	if (n == 0 || n > MAX_BUFFER * 4)
		return -1;
	struct slice payload = reader_bytes(&r, n);
	if (r.err) {
		atomic_fetch_add(&n_partial, 1);
		return 0;
	}
	st->frames++;
	atomic_fetch_add(&n_frames, 1);
	struct reader pr;
	reader_init(&pr, payload.data, payload.len);
	uint8_t op = reader_u8(&pr);
	switch (op) {
	case 'E':
		write_frame(c, payload.data, (uint32_t)payload.len);
		break;
	case 'B': {
		uint32_t size = reader_u32(&pr);
		if (pr.err)
			return -1;
		uint8_t *buf = malloc(size);
		if (buf == NULL)
			return -1;
		for (uint32_t i = 0; i < size; i++)
			buf[i] = (uint8_t)i;
		uint8_t hdr[4] = { (uint8_t)(size >> 24), (uint8_t)(size >> 16),
				   (uint8_t)(size >> 8), (uint8_t)size };
		conn_write(c, hdr, 4);
		conn_write_owned(c, buf, size, owned_free);
		break;
	}
	case 'C':
		write_frame(c, "bye", 3);
		note_output(c);
		return -1;
	case 'P':
		conn_pause_read(c);
		write_frame(c, "paused", 6);
		break;
	case 'F': {
		uint32_t off = reader_u32(&pr);
		uint32_t size = reader_u32(&pr);
		if (pr.err || size > UINT32_MAX - 2)
			return -1;
		uint32_t total = size + 2;
		uint8_t hdr[5] = { (uint8_t)(total >> 24), (uint8_t)(total >> 16),
				   (uint8_t)(total >> 8), (uint8_t)total, '<' };
		conn_write(c, hdr, 5);
		if (queue_file(c, off, size) != 0)
			return -1;
		conn_write(c, ">", 1);
		break;
	}
	case 'Q':
		conn_close(c);
		if (queue_file(c, 0, 100) == -ERR_CLOSED)
			atomic_fetch_add(&n_file_refused, 1);
		return (ssize_t)(4 + n);
	default:
		return -1;
	}
	note_output(c);
	return (ssize_t)(4 + n);
}

static void echo_close(struct conn *c)
{
	free(conn_data(c));
	atomic_fetch_add(&n_state_freed, 1);
	atomic_fetch_add(&n_close, 1);
}

static void echo_drain(struct conn *c)
{
	(void)c;
	atomic_fetch_add(&n_drain, 1);
}

static const struct net_proto echo_proto = {
	.name = "echo",
	.on_open = echo_open,
	.on_data = echo_data,
	.on_close = echo_close,
	.max_buffer = MAX_BUFFER,
	.on_drain = echo_drain,
};

struct fixture {
	struct loop_group *g;
	struct listener *l;
	int port;
};

static int setup(void **state)
{
	atomic_store(&n_open, 0);
	atomic_store(&n_close, 0);
	atomic_store(&n_data_calls, 0);
	atomic_store(&n_partial, 0);
	atomic_store(&n_frames, 0);
	atomic_store(&n_drain, 0);
	atomic_store(&n_owned_freed, 0);
	atomic_store(&n_state_freed, 0);
	atomic_store(&n_file_released, 0);
	atomic_store(&n_file_queued, 0);
	atomic_store(&n_file_refused, 0);
	atomic_store(&opens_on_loop[0], 0);
	atomic_store(&opens_on_loop[1], 0);
	atomic_store(&max_output_seen, 0);
	atomic_store(&bad_peer, 0);
	atomic_store(&bad_fd, 0);
	atomic_store(&last_conn, NULL);
	conn_set_limits(0, OUTPUT_MAX);
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	assert_int_equal(loop_group_start(2, &f->g), 0);
	char err[256];
	int rc = listener_start(f->g, "127.0.0.1", 0, &echo_proto, NULL, &f->l, err, sizeof err);
	if (rc != 0)
		fail_msg("listener_start: %s", err);
	f->port = listener_port(f->l);
	assert_true(f->port > 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	listener_stop(f->l);
	/* Connections still open are closed by the stop (loop members). */
	assert_int_equal(loop_group_stop(f->g), 0);
	assert_int_equal(atomic_load(&n_close), atomic_load(&n_open));
	assert_int_equal(atomic_load(&n_state_freed), atomic_load(&n_open));
	assert_int_equal(conn_count(), 0);
	assert_int_equal(atomic_load(&bad_peer), 0);
	assert_int_equal(atomic_load(&bad_fd), 0);
	/* Every file range queued was released exactly once. */
	assert_int_equal(atomic_load(&n_file_released), atomic_load(&n_file_queued));
	int fd = atomic_exchange(&file_fd, -1);
	if (fd >= 0)
		close(fd);
	conn_set_limits(0, OUTPUT_MAX);
	free(f);
	return 0;
}

/* Waits up to WAIT_MS for *v to reach at least want; returns the last value. */
static int wait_at_least(atomic_int *v, int want)
{
	int64_t end = clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
	int now;
	while ((now = atomic_load(v)) < want && clock_mono_ns() < end) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return now;
}

static int client_connect_family(int family, int port, int rcvbuf)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct timeval tv = { WAIT_MS / 1000, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	int rc;
	if (family == AF_INET) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	} else {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
		inet_pton(AF_INET6, "::1", &a.sin6_addr);
		rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	}
	assert_int_equal(rc, 0);
	return fd;
}

static int client_connect(int port)
{
	return client_connect_family(AF_INET, port, 0);
}

static void send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/* Reads exactly len bytes; returns 0, or -1 on EOF, error or timeout. */
static int recv_exact(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Appends a frame (length + payload) to out; returns its size. */
static size_t make_frame(uint8_t *out, const void *payload, uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
	memcpy(out + 4, payload, len);
	return 4 + len;
}

/* Receives one frame into payload (cap bytes); returns its length or -1. */
static long recv_frame(int fd, void *payload, size_t cap)
{
	uint8_t hdr[4];
	if (recv_exact(fd, hdr, 4) != 0)
		return -1;
	uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (len > cap)
		return -1;
	if (recv_exact(fd, payload, len) != 0)
		return -1;
	return (long)len;
}

/* 1 when the peer closed (EOF or reset) within WAIT_MS, 0 when data came, -1 on timeout. */
static int wait_peer_closed(int fd)
{
	uint8_t b[256];
	for (;;) {
		ssize_t n = recv(fd, b, sizeof b, 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 1;
		if (n < 0)
			return -1;
	}
}

static void test_echo_partial_frames_and_pipelining(void **state)
{
	struct fixture *f = *state;
	int fd = client_connect(f->port);
	assert_int_equal(wait_at_least(&n_open, 1), 1);

	uint8_t frame[64], reply[64];
	size_t flen = make_frame(frame, "Ehello, partial world", 21);
	/* Header split, then payload split: each piece reaches on_data before the next. */
	size_t cuts[] = { 2, 9, flen };
	size_t sent = 0;
	for (size_t i = 0; i < 3; i++) {
		int calls = atomic_load(&n_data_calls);
		send_all(fd, frame + sent, cuts[i] - sent);
		sent = cuts[i];
		if (i < 2)
			assert_true(wait_at_least(&n_data_calls, calls + 1) > calls);
	}
	assert_int_equal(recv_frame(fd, reply, sizeof reply), 21);
	assert_memory_equal(reply, "Ehello, partial world", 21);
	assert_true(atomic_load(&n_partial) >= 2);

	/* 200 frames in one send come back complete and in order. */
	uint8_t *batch = malloc(200 * 16);
	size_t blen = 0;
	for (int i = 0; i < 200; i++) {
		char p[12];
		int n = snprintf(p, sizeof p, "E%05d", i);
		blen += make_frame(batch + blen, p, (uint32_t)n);
	}
	send_all(fd, batch, blen);
	for (int i = 0; i < 200; i++) {
		char want[12];
		int n = snprintf(want, sizeof want, "E%05d", i);
		assert_int_equal(recv_frame(fd, reply, sizeof reply), n);
		assert_memory_equal(reply, want, (size_t)n);
	}
	free(batch);
	assert_int_equal(atomic_load(&n_frames), 201);
	close(fd);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
}

struct conn_probe {
	struct conn *c;
	int reading;
	size_t output;
};

static void probe_conn(void *arg)
{
	struct conn_probe *p = arg;
	p->reading = conn_reading(p->c);
	p->output = conn_output_bytes(p->c);
}

static void resume_conn(void *arg)
{
	conn_resume_read(arg);
}

/* Samples the server side of the newest connection on its own loop. */
static struct conn_probe probe_last(void)
{
	struct conn_probe p = { .c = atomic_load(&last_conn) };
	assert_non_null(p.c);
	assert_int_equal(loop_call(conn_loop(p.c), probe_conn, &p), 0);
	return p;
}

static void test_backpressure_slow_reader(void **state)
{
	struct fixture *f = *state;
	/* A small receive buffer keeps the kernel from absorbing the reply. */
	int fd = client_connect_family(AF_INET, f->port, 64 * 1024);
	assert_int_equal(wait_at_least(&n_open, 1), 1);
	uint8_t req[4096];
	uint8_t big[5] = { 'B', (uint8_t)(BIG_REPLY >> 24), (uint8_t)(BIG_REPLY >> 16),
			   (uint8_t)(BIG_REPLY >> 8), (uint8_t)BIG_REPLY };
	size_t len = make_frame(req, big, 5);
	for (int i = 0; i < 20; i++) {
		char p[8];
		int n = snprintf(p, sizeof p, "E%02d", i);
		len += make_frame(req + len, p, (uint32_t)n);
	}
	send_all(fd, req, len);

	/* The reply is over the cap: the server stops reading and holds the echoes. */
	int64_t end = clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
	struct conn_probe p;
	do {
		p = probe_last();
	} while ((p.reading || atomic_load(&n_frames) < 1) && clock_mono_ns() < end);
	assert_false(p.reading);
	assert_true(p.output > OUTPUT_MAX);
	assert_int_equal(atomic_load(&n_frames), 1);
	assert_int_equal(atomic_load(&n_drain), 0);

	/* The slow reader catches up: the big reply, then the 20 echoes in order. */
	uint8_t hdr[4];
	assert_int_equal(recv_exact(fd, hdr, 4), 0);
	assert_int_equal((uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3],
			 BIG_REPLY);
	uint8_t *buf = malloc(BIG_REPLY);
	assert_non_null(buf);
	assert_int_equal(recv_exact(fd, buf, BIG_REPLY), 0);
	for (size_t i = 0; i < BIG_REPLY; i += 4093)
		assert_int_equal(buf[i], (uint8_t)i);
	free(buf);
	for (int i = 0; i < 20; i++) {
		char want[8], got[16];
		int n = snprintf(want, sizeof want, "E%02d", i);
		assert_int_equal(recv_frame(fd, got, sizeof got), n);
		assert_memory_equal(got, want, (size_t)n);
	}
	assert_true(atomic_load(&n_drain) >= 1);
	assert_int_equal(atomic_load(&n_owned_freed), 1);
	assert_int_equal(atomic_load(&n_frames), 21);
	/* Reading stopped at the cap: output never grew by more than one reply past it. */
	assert_true(atomic_load(&max_output_seen) <= OUTPUT_MAX + BIG_REPLY + 4 + 64);
	/* The last uv_write callback may still be on its way. */
	end = clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
	do {
		p = probe_last();
	} while ((!p.reading || p.output != 0) && clock_mono_ns() < end);
	assert_true(p.reading);
	assert_int_equal(p.output, 0);
	close(fd);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
}

static void test_pause_and_resume_by_protocol(void **state)
{
	struct fixture *f = *state;
	int fd = client_connect(f->port);
	assert_int_equal(wait_at_least(&n_open, 1), 1);
	uint8_t req[64], got[64];
	size_t len = make_frame(req, "P", 1);
	len += make_frame(req + len, "Ebuffered", 9);
	send_all(fd, req, len);
	assert_int_equal(recv_frame(fd, got, sizeof got), 6);
	assert_memory_equal(got, "paused", 6);
	/* Paused: the buffered echo is not delivered. */
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 300), 0);
	assert_int_equal(atomic_load(&n_frames), 1);
	struct conn_probe p = probe_last();
	assert_false(p.reading);

	assert_int_equal(loop_call(conn_loop(p.c), resume_conn, p.c), 0);
	assert_int_equal(recv_frame(fd, got, sizeof got), 9);
	assert_memory_equal(got, "Ebuffered", 9);
	len = make_frame(req, "Eafter", 6);
	send_all(fd, req, len);
	assert_int_equal(recv_frame(fd, got, sizeof got), 6);
	assert_memory_equal(got, "Eafter", 6);
	close(fd);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
}

static void test_close_from_both_sides(void **state)
{
	struct fixture *f = *state;
	uint8_t req[64], got[64];

	/* Client closes: on_close runs. */
	int a = client_connect(f->port);
	size_t len = make_frame(req, "Ex", 2);
	send_all(a, req, len);
	assert_int_equal(recv_frame(a, got, sizeof got), 2);
	close(a);
	assert_int_equal(wait_at_least(&n_close, 1), 1);

	/* Server closes after its reply: the reply arrives, then EOF. */
	int b = client_connect(f->port);
	len = make_frame(req, "C", 1);
	send_all(b, req, len);
	assert_int_equal(recv_frame(b, got, sizeof got), 3);
	assert_memory_equal(got, "bye", 3);
	assert_int_equal(wait_peer_closed(b), 1);
	close(b);
	assert_int_equal(wait_at_least(&n_close, 2), 2);

	/* Server closes behind a large reply still queued: all of it arrives first. */
	int c = client_connect_family(AF_INET, f->port, 64 * 1024);
	uint32_t size = 4 * 1024 * 1024;
	uint8_t big[5] = { 'B', (uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
			   (uint8_t)size };
	len = make_frame(req, big, 5);
	len += make_frame(req + len, "C", 1);
	send_all(c, req, len);
	uint8_t *buf = malloc(size);
	assert_non_null(buf);
	assert_int_equal(recv_frame(c, buf, size), (long)size);
	assert_int_equal(buf[size - 1], (uint8_t)(size - 1));
	free(buf);
	assert_int_equal(recv_frame(c, got, sizeof got), 3);
	assert_int_equal(wait_peer_closed(c), 1);
	close(c);
	assert_int_equal(wait_at_least(&n_close, 3), 3);
	assert_int_equal(atomic_load(&n_owned_freed), 1);
}

static void test_max_buffer_exceeded_closes(void **state)
{
	struct fixture *f = *state;
	int fd = client_connect(f->port);
	assert_int_equal(wait_at_least(&n_open, 1), 1);
	/* A frame announcing 200 KiB, over the 64 KiB input cap, sent in part. */
	uint32_t claim = 200 * 1024;
	size_t len = 4 + MAX_BUFFER + 1024;
	uint8_t *req = calloc(1, len);
	req[0] = (uint8_t)(claim >> 24);
	req[1] = (uint8_t)(claim >> 16);
	req[2] = (uint8_t)(claim >> 8);
	req[3] = (uint8_t)claim;
	req[4] = 'E';
	ssize_t n = send(fd, req, len, MSG_NOSIGNAL);
	assert_true(n > 0);
	free(req);
	assert_int_equal(wait_peer_closed(fd), 1);
	close(fd);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
	assert_int_equal(atomic_load(&n_frames), 0);

	/* The server still serves others. */
	int ok = client_connect(f->port);
	uint8_t frame[16], got[16];
	size_t flen = make_frame(frame, "Estill", 6);
	send_all(ok, frame, flen);
	assert_int_equal(recv_frame(ok, got, sizeof got), 6);
	close(ok);
}

#define MANY 200

static void test_many_connections_across_loops(void **state)
{
	struct fixture *f = *state;
	int fds[MANY];
	for (int i = 0; i < MANY; i++)
		fds[i] = client_connect(f->port);
	assert_int_equal(wait_at_least(&n_open, MANY), MANY);
	for (int i = 0; i < MANY; i++) {
		uint8_t frame[32];
		char p[16];
		int n = snprintf(p, sizeof p, "Ec%d", i);
		size_t len = make_frame(frame, p, (uint32_t)n);
		send_all(fds[i], frame, len);
	}
	for (int i = 0; i < MANY; i++) {
		char want[16], got[32];
		int n = snprintf(want, sizeof want, "Ec%d", i);
		assert_int_equal(recv_frame(fds[i], got, sizeof got), n);
		assert_memory_equal(got, want, (size_t)n);
	}
	/* SO_REUSEPORT spread the connections over both loops. */
	assert_true(atomic_load(&opens_on_loop[0]) > 0);
	assert_true(atomic_load(&opens_on_loop[1]) > 0);
	assert_int_equal(atomic_load(&opens_on_loop[0]) + atomic_load(&opens_on_loop[1]), MANY);
	assert_int_equal(conn_count(), MANY);
	for (int i = 0; i < MANY / 2; i++)
		close(fds[i]);
	assert_int_equal(wait_at_least(&n_close, MANY / 2), MANY / 2);
	/* The other half is closed by conn_close_all: each client sees EOF. */
	assert_int_equal(conn_close_all(f->g, 2000), 0);
	assert_int_equal(atomic_load(&n_close), MANY);
	for (int i = MANY / 2; i < MANY; i++) {
		assert_int_equal(wait_peer_closed(fds[i]), 1);
		close(fds[i]);
	}
}

static void test_max_connections_cap(void **state)
{
	struct fixture *f = *state;
	conn_set_limits(3, OUTPUT_MAX);
	int fds[3];
	uint8_t frame[16], got[16];
	size_t flen = make_frame(frame, "Eok", 3);
	for (int i = 0; i < 3; i++) {
		fds[i] = client_connect(f->port);
		send_all(fds[i], frame, flen);
		assert_int_equal(recv_frame(fds[i], got, sizeof got), 3);
	}
	assert_int_equal(conn_count(), 3);
	/* The fourth is accepted and closed at once. */
	int extra = client_connect(f->port);
	assert_int_equal(wait_peer_closed(extra), 1);
	close(extra);
	assert_int_equal(atomic_load(&n_open), 3);
	/* Below the cap again, a new connection is served. */
	close(fds[0]);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
	int again = client_connect(f->port);
	send_all(again, frame, flen);
	assert_int_equal(recv_frame(again, got, sizeof got), 3);
	close(again);
	close(fds[1]);
	close(fds[2]);
	assert_int_equal(wait_at_least(&n_close, 4), 4);
}

static void test_stop_with_open_connections(void **state)
{
	struct fixture *f = *state;
	/* Open connections, one with output queued, are closed by the loop stop (teardown). */
	int fds[10];
	for (int i = 0; i < 10; i++)
		fds[i] = client_connect_family(AF_INET, f->port, 64 * 1024);
	assert_int_equal(wait_at_least(&n_open, 10), 10);
	uint8_t req[16];
	uint32_t size = 8 * 1024 * 1024;
	uint8_t big[5] = { 'B', (uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
			   (uint8_t)size };
	size_t len = make_frame(req, big, 5);
	send_all(fds[0], req, len);
	assert_int_equal(wait_at_least(&n_frames, 1), 1);
	listener_stop(f->l);
	f->l = NULL;
	assert_int_equal(loop_group_stop(f->g), 0);
	f->g = NULL;
	assert_int_equal(atomic_load(&n_close), 10);
	assert_int_equal(atomic_load(&n_owned_freed), 1);
	for (int i = 0; i < 10; i++)
		close(fds[i]);
}

static int teardown_stopped(void **state)
{
	struct fixture *f = *state;
	if (f->g != NULL)
		return teardown(state);
	assert_int_equal(conn_count(), 0);
	assert_int_equal(atomic_load(&n_file_released), atomic_load(&n_file_queued));
	int fd = atomic_exchange(&file_fd, -1);
	if (fd >= 0)
		close(fd);
	free(f);
	return 0;
}

static void test_listener_errors_and_ipv6(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct listener *l2;
	/* The port is taken (by our own listener): refused, naming host:port. */
	int rc = listener_start(f->g, "127.0.0.1", f->port, &echo_proto, NULL, &l2, err, sizeof err);
	assert_int_not_equal(rc, 0);
	char want[64];
	snprintf(want, sizeof want, "127.0.0.1:%d", f->port);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, "in use"));
	rc = listener_start(f->g, "localhost", 0, &echo_proto, NULL, &l2, err, sizeof err);
	assert_int_equal(rc, -ERR_INVALID);
	assert_non_null(strstr(err, "literal"));
	rc = listener_start(f->g, "127.0.0.1", 70000, &echo_proto, NULL, &l2, err, sizeof err);
	assert_int_equal(rc, -ERR_INVALID);

	/* IPv6 loopback, brackets accepted. */
	rc = listener_start(f->g, "[::1]", 0, &echo_proto, NULL, &l2, err, sizeof err);
	if (rc != 0)
		fail_msg("listen on [::1]: %s", err);
	assert_non_null(strstr(listener_address(l2), "[::1]:"));
	int fd = client_connect_family(AF_INET6, listener_port(l2), 0);
	uint8_t frame[16], got[16];
	size_t flen = make_frame(frame, "Esix", 4);
	send_all(fd, frame, flen);
	assert_int_equal(recv_frame(fd, got, sizeof got), 4);
	assert_memory_equal(got, "Esix", 4);
	close(fd);
	listener_stop(l2);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
}

/* The byte at position i of the test file. */
static uint8_t file_byte(size_t i)
{
	return (uint8_t)(i * 7 + i / 251);
}

/* Makes the test file of size bytes (file_fd); its directory is removed at once. */
static void make_test_file(size_t size)
{
	char dir[] = "/tmp/sluice-test-conn-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[64];
	snprintf(path, sizeof path, "%s/file", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	unlink(path);
	rmdir(dir);
	uint8_t *buf = malloc(size);
	assert_non_null(buf);
	for (size_t i = 0; i < size; i++)
		buf[i] = file_byte(i);
	assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
	free(buf);
	atomic_store(&file_fd, fd);
}

/* Appends an 'F' request for n bytes of the file from off. */
static size_t make_file_req(uint8_t *out, uint32_t off, uint32_t n)
{
	uint8_t p[9] = { 'F',
			 (uint8_t)(off >> 24), (uint8_t)(off >> 16), (uint8_t)(off >> 8), (uint8_t)off,
			 (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	return make_frame(out, p, sizeof p);
}

/* Receives an 'F' reply and checks it holds the file's bytes [off, off + n). */
static void expect_file_reply(int fd, uint8_t *buf, uint32_t off, uint32_t n)
{
	assert_int_equal(recv_frame(fd, buf, (size_t)n + 2), (long)n + 2);
	assert_int_equal(buf[0], '<');
	assert_int_equal(buf[n + 1], '>');
	for (uint32_t i = 0; i < n; i++)
		if (buf[1 + i] != file_byte((size_t)off + i))
			fail_msg("file byte %u of the reply (file position %u) differs", i, off + i);
}

#define FILE_BYTES (12 * 1024 * 1024)

static void test_file_ranges_in_order_slow_reader(void **state)
{
	struct fixture *f = *state;
	make_test_file(FILE_BYTES);
	/* A small receive buffer: sendfile meets a full socket (EAGAIN) many times. */
	int fd = client_connect_family(AF_INET, f->port, 64 * 1024);
	assert_int_equal(wait_at_least(&n_open, 1), 1);
	/* bytes, the whole file, bytes, two adjacent ranges, bytes: all in one batch. */
	uint8_t req[256];
	size_t len = make_frame(req, "Ebefore", 7);
	len += make_file_req(req + len, 0, FILE_BYTES);
	len += make_frame(req + len, "Emiddle", 7);
	len += make_file_req(req + len, 1000, 3);
	len += make_file_req(req + len, FILE_BYTES - 5000, 5000);
	len += make_frame(req + len, "Eafter", 6);
	send_all(fd, req, len);

	/* Nothing read yet: the range is stuck at the head, counted in the output,
	 * over the cap, so the server stopped reading; the later echoes wait. */
	int64_t end = clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
	struct conn_probe p;
	do {
		p = probe_last();
	} while ((p.reading || atomic_load(&n_frames) < 2) && clock_mono_ns() < end);
	assert_false(p.reading);
	assert_true(p.output > OUTPUT_MAX);
	assert_true(p.output < (size_t)FILE_BYTES + 64);
	assert_int_equal(atomic_load(&n_file_released), 0);

	uint8_t *buf = malloc(FILE_BYTES + 2);
	assert_non_null(buf);
	char got[16];
	assert_int_equal(recv_frame(fd, got, sizeof got), 7);
	assert_memory_equal(got, "Ebefore", 7);
	/* Read slowly at first (bounded pauses), so the poll for writability resumes it. */
	uint8_t hdr[5];
	assert_int_equal(recv_exact(fd, hdr, 5), 0);
	assert_int_equal(hdr[4], '<');
	size_t done = 0;
	for (int i = 0; i < 8; i++) {
		struct timespec ts = { 0, 20 * 1000000 };
		nanosleep(&ts, NULL);
		assert_int_equal(recv_exact(fd, buf + done, 100 * 1000), 0);
		done += 100 * 1000;
	}
	assert_int_equal(recv_exact(fd, buf + done, FILE_BYTES - done), 0);
	for (size_t i = 0; i < FILE_BYTES; i++)
		if (buf[i] != file_byte(i))
			fail_msg("file byte %zu differs", i);
	assert_int_equal(recv_exact(fd, hdr, 1), 0);
	assert_int_equal(hdr[0], '>');
	assert_int_equal(recv_frame(fd, got, sizeof got), 7);
	assert_memory_equal(got, "Emiddle", 7);
	expect_file_reply(fd, buf, 1000, 3);
	expect_file_reply(fd, buf, FILE_BYTES - 5000, 5000);
	assert_int_equal(recv_frame(fd, got, sizeof got), 6);
	assert_memory_equal(got, "Eafter", 6);
	free(buf);

	/* Each range released once it was sent; the output drained and reading resumed. */
	assert_int_equal(wait_at_least(&n_file_released, 3), 3);
	end = clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
	do {
		p = probe_last();
	} while ((!p.reading || p.output != 0) && clock_mono_ns() < end);
	assert_true(p.reading);
	assert_int_equal(p.output, 0);
	assert_true(atomic_load(&n_drain) >= 1);
	/* The connection still serves plain bytes and ranges afterwards. */
	uint8_t small[64];
	len = make_file_req(req, 7, 10);
	send_all(fd, req, len);
	expect_file_reply(fd, small, 7, 10);
	assert_int_equal(wait_at_least(&n_file_released, 4), 4);
	close(fd);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
	assert_int_equal(atomic_load(&n_file_queued), 4);
}

static void test_file_range_peer_disconnects(void **state)
{
	struct fixture *f = *state;
	make_test_file(FILE_BYTES);
	/* A cap above both ranges, so the server reads the second request too. */
	conn_set_limits(0, 4 * FILE_BYTES);
	int fd = client_connect_family(AF_INET, f->port, 64 * 1024);
	assert_int_equal(wait_at_least(&n_open, 1), 1);
	uint8_t req[64];
	size_t len = make_file_req(req, 0, FILE_BYTES);
	len += make_file_req(req + len, 0, FILE_BYTES); /* a second range, never started */
	send_all(fd, req, len);
	assert_int_equal(wait_at_least(&n_frames, 2), 2);
	/* Part of the first range arrives, then the client goes away. */
	uint8_t *buf = malloc(256 * 1024);
	assert_non_null(buf);
	assert_int_equal(recv_exact(fd, buf, 256 * 1024), 0);
	assert_int_equal(buf[4], '<');
	assert_int_equal(buf[5 + 1000], file_byte(1000));
	free(buf);
	close(fd);
	/* The server notices (sendfile fails, or the read sees the reset) and closes:
	 * both ranges are released once each, the first one mid-way. */
	assert_int_equal(wait_at_least(&n_close, 1), 1);
	assert_int_equal(atomic_load(&n_file_queued), 2);
	assert_int_equal(wait_at_least(&n_file_released, 2), 2);
}

static void test_file_range_short_file(void **state)
{
	struct fixture *f = *state;
	make_test_file(64 * 1024);
	int fd = client_connect(f->port);
	assert_int_equal(wait_at_least(&n_open, 1), 1);
	/* A range reaching 1000 bytes past the end of the file: what exists is sent,
	 * then the connection is closed (the frame can never be completed). */
	uint8_t req[64];
	size_t len = make_file_req(req, 32 * 1024, 32 * 1024 + 1000);
	len += make_frame(req + len, "Enever", 6);
	send_all(fd, req, len);
	uint8_t *buf = malloc(64 * 1024);
	assert_non_null(buf);
	assert_int_equal(recv_exact(fd, buf, 5 + 32 * 1024), 0);
	assert_int_equal(buf[4], '<');
	for (size_t i = 0; i < 32 * 1024; i++)
		if (buf[5 + i] != file_byte(32 * 1024 + i))
			fail_msg("file byte %zu differs", i);
	free(buf);
	assert_int_equal(wait_peer_closed(fd), 1);
	close(fd);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
	assert_int_equal(wait_at_least(&n_file_released, 1), 1);
	assert_int_equal(atomic_load(&n_file_queued), 1);
}

static void test_file_range_close_and_stop(void **state)
{
	struct fixture *f = *state;
	make_test_file(FILE_BYTES);
	uint8_t req[64], got[16];

	/* A graceful close sends the queued range first, then "bye", then EOF. */
	int a = client_connect_family(AF_INET, f->port, 64 * 1024);
	size_t len = make_file_req(req, 5, 4 * 1024 * 1024);
	len += make_frame(req + len, "C", 1);
	send_all(a, req, len);
	uint8_t *buf = malloc(4 * 1024 * 1024 + 2);
	assert_non_null(buf);
	expect_file_reply(a, buf, 5, 4 * 1024 * 1024);
	free(buf);
	assert_int_equal(recv_frame(a, got, sizeof got), 3);
	assert_memory_equal(got, "bye", 3);
	assert_int_equal(wait_peer_closed(a), 1);
	close(a);
	assert_int_equal(wait_at_least(&n_close, 1), 1);
	assert_int_equal(atomic_load(&n_file_released), 1);

	/* A range queued after conn_close is refused and released at once. */
	int b = client_connect(f->port);
	len = make_frame(req, "Q", 1);
	send_all(b, req, len);
	assert_int_equal(wait_peer_closed(b), 1);
	close(b);
	assert_int_equal(wait_at_least(&n_close, 2), 2);
	assert_int_equal(atomic_load(&n_file_refused), 1);
	assert_int_equal(atomic_load(&n_file_released), 2);

	/* Stopping the loops with a range in progress (the client reads nothing)
	 * drops it and releases it once. */
	int c = client_connect_family(AF_INET, f->port, 64 * 1024);
	len = make_file_req(req, 0, FILE_BYTES);
	send_all(c, req, len);
	assert_int_equal(wait_at_least(&n_frames, 4), 4);
	listener_stop(f->l);
	f->l = NULL;
	assert_int_equal(loop_group_stop(f->g), 0);
	f->g = NULL;
	assert_int_equal(atomic_load(&n_close), 3);
	assert_int_equal(atomic_load(&n_file_released), 3);
	assert_int_equal(atomic_load(&n_file_queued), 3);
	close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_echo_partial_frames_and_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure_slow_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_and_resume_by_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_from_both_sides, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_buffer_exceeded_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_connections_across_loops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_connections_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_with_open_connections, setup, teardown_stopped),
		cmocka_unit_test_setup_teardown(test_listener_errors_and_ipv6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_ranges_in_order_slow_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_range_peer_disconnects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_range_short_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_range_close_and_stop, setup, teardown_stopped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
