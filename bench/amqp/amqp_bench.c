/*
 * bench/amqp/amqp_bench.c: one AMQP 0-9-1 publisher and one consumer, each on
 * its own connection (and thread), on one queue, through librabbitmq
 * (rabbitmq-c). Run against Sluice and RabbitMQ alike by bench/run-amqp.sh;
 * see docs/benchmarks.md, "AMQP".
 *
 *   amqp_bench throughput --port P --mode M --size B --count N
 *   amqp_bench latency    --port P --mode M --size B --rate R --seconds S
 *   amqp_bench unrouted   --port P --size B --count N
 *
 * Modes:
 *   transient   non-durable queue, delivery_mode 1
 *   persistent  durable queue, delivery_mode 2, no confirms
 *   confirm     durable queue, delivery_mode 2, confirm.select; at most
 *               --window unconfirmed messages (multiple acks honoured)
 *
 * Publisher's sends: librabbitmq writes each publish as three send() calls
 * (method, header, body; MSG_MORE on the first two), so by default every
 * message is pushed to the broker as its own TCP segment. With --flush-every
 * N (throughput modes) the socket is corked (TCP_CORK) and uncorked every N
 * publishes, and, with confirms, also before waiting on a full window;
 * confirms are then read at those points only. The same calls are made, but
 * the kernel sends N messages in one segment. Latency mode never corks.
 *
 * The consumer starts first (basic.qos prefetch --prefetch, manual acks, one
 * basic.ack with multiple=1 every --ack-every deliveries). Throughput is
 * timed from the first publish until the consumer has every message; the
 * publisher's own rate (until its last publish, or last confirm) is reported
 * too. Latency: the publisher keeps an absolute schedule of --rate msg/s
 * (a late wake-up sends what fell due), writes CLOCK_MONOTONIC at send time
 * into the body, and the consumer takes now minus that stamp; the first
 * second is a warm-up that is not counted.
 *
 * Unrouted: the publisher alone, transient messages to the default exchange
 * with a routing key no queue has, so the broker drops each one after parsing
 * and routing it; a basic.qos round trip at the end makes sure the broker has
 * read them all. Its rate is about the most this client publishes on this
 * machine: the reference for how close a queueing run gets to the client's
 * own limit.
 *
 * Prints one line "RESULT key=value ..." on success; exits 1 otherwise. Every
 * wait is bounded by --max-seconds. The queue (named per run) is deleted at
 * the end.
 */
#define _GNU_SOURCE
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_TRANSIENT, MODE_PERSISTENT, MODE_CONFIRM };

struct opts {
	bool latency;
	bool unrouted;
	const char *host;
	int port;
	enum mode mode;
	const char *mode_name;
	size_t size;
	uint64_t count;
	double rate;
	double seconds;
	int prefetch;
	int ack_every;
	int window;
	int flush_every;
	double max_seconds;
	char queue[128];
};

static struct opts g_opt = {
	.host = "127.0.0.1",
	.port = 5672,
	.mode = MODE_TRANSIENT,
	.mode_name = "transient",
	.size = 1024,
	.count = 100000,
	.rate = 5000,
	.seconds = 5,
	.prefetch = 1000,
	.ack_every = 100,
	.window = 1000,
	.max_seconds = 60,
};

/* Shared between the two threads. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_consumer_state; /* 0 starting, 1 consuming, -1 failed */
static uint64_t g_received;
static uint64_t g_t_last_recv;
static uint64_t *g_lat_ns; /* latency samples (latency mode) */
static uint64_t g_lat_n, g_lat_cap;
static uint64_t g_warmup_seq; /* latency mode: seq below this not counted */
static uint64_t g_deadline_ns;
static uint64_t g_cons_cpu_ns; /* consumer thread CPU while consuming */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* CPU time of the calling thread (user + system), ns. */
static uint64_t thread_cpu_ns(void)
{
	return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static void die(const char *what)
{
	fprintf(stderr, "amqp_bench: %s\n", what);
	exit(1);
}

static bool reply_ok(amqp_rpc_reply_t r, const char *what)
{
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return true;
	if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
		fprintf(stderr, "amqp_bench: %s: %s\n", what, amqp_error_string2(r.library_error));
	else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
		 r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
		amqp_channel_close_t *m = r.reply.decoded;
		fprintf(stderr, "amqp_bench: %s: channel closed %u %.*s\n", what, m->reply_code,
			(int)m->reply_text.len, (char *)m->reply_text.bytes);
	} else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
		   r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
		amqp_connection_close_t *m = r.reply.decoded;
		fprintf(stderr, "amqp_bench: %s: connection closed %u %.*s\n", what, m->reply_code,
			(int)m->reply_text.len, (char *)m->reply_text.bytes);
	} else
		fprintf(stderr, "amqp_bench: %s: failed (reply type %d)\n", what, r.reply_type);
	return false;
}

static amqp_connection_state_t connect_broker(void)
{
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	if (!s)
		die("amqp_tcp_socket_new failed");
	struct timeval tv = { .tv_sec = 10 };
	if (amqp_socket_open_noblock(s, g_opt.host, g_opt.port, &tv) != AMQP_STATUS_OK)
		die("cannot connect");
	/* channel_max 0 = server's, frame_max 131072 (Sluice's and RabbitMQ's
	 * default), heartbeats off. */
	if (!reply_ok(amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
		      "login"))
		exit(1);
	amqp_channel_open(c, 1);
	if (!reply_ok(amqp_get_rpc_reply(c), "channel.open"))
		exit(1);
	return c;
}

static void close_broker(amqp_connection_state_t c)
{
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
}

static void set_consumer_state(int st)
{
	pthread_mutex_lock(&g_mu);
	g_consumer_state = st;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

static void *consumer_main(void *arg)
{
	(void)arg;
	amqp_connection_state_t c = connect_broker();
	bool durable = g_opt.mode != MODE_TRANSIENT;
	amqp_queue_declare(c, 1, amqp_cstring_bytes(g_opt.queue), 0, durable, 0, 0, amqp_empty_table);
	if (!reply_ok(amqp_get_rpc_reply(c), "queue.declare")) {
		set_consumer_state(-1);
		return NULL;
	}
	amqp_basic_qos(c, 1, 0, (uint16_t)g_opt.prefetch, 0);
	if (!reply_ok(amqp_get_rpc_reply(c), "basic.qos")) {
		set_consumer_state(-1);
		return NULL;
	}
	amqp_basic_consume(c, 1, amqp_cstring_bytes(g_opt.queue), amqp_empty_bytes, 0, 0, 0,
			   amqp_empty_table);
	if (!reply_ok(amqp_get_rpc_reply(c), "basic.consume")) {
		set_consumer_state(-1);
		return NULL;
	}
	set_consumer_state(1);

	uint64_t cpu0 = thread_cpu_ns();
	uint64_t got = 0, unacked = 0, last_tag = 0;
	bool fail = false;
	for (;;) {
		if (got >= g_opt.count) /* set before this thread started */
			break;
		if (now_ns() > g_deadline_ns) {
			fprintf(stderr, "amqp_bench: consumer timed out after %" PRIu64 " messages\n", got);
			fail = true;
			break;
		}
		amqp_envelope_t env;
		struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
		amqp_maybe_release_buffers(c);
		amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			continue;
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
			amqp_frame_t f;
			if (amqp_simple_wait_frame(c, &f) != AMQP_STATUS_OK) {
				fail = true;
				break;
			}
			continue; /* e.g. a heartbeat */
		}
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			reply_ok(r, "consume");
			fail = true;
			break;
		}
		uint64_t t = now_ns();
		if (g_opt.latency && env.message.body.len >= 16) {
			uint64_t seq, stamp;
			memcpy(&seq, env.message.body.bytes, 8);
			memcpy(&stamp, (char *)env.message.body.bytes + 8, 8);
			if (seq >= g_warmup_seq && g_lat_n < g_lat_cap)
				g_lat_ns[g_lat_n++] = t - stamp;
		}
		last_tag = env.delivery_tag;
		amqp_destroy_envelope(&env);
		got++;
		if (++unacked >= (uint64_t)g_opt.ack_every) {
			amqp_basic_ack(c, 1, last_tag, 1);
			unacked = 0;
		}
		pthread_mutex_lock(&g_mu);
		g_received = got;
		g_t_last_recv = t;
		pthread_mutex_unlock(&g_mu);
	}
	if (unacked && !fail)
		amqp_basic_ack(c, 1, last_tag, 1);
	pthread_mutex_lock(&g_mu);
	g_cons_cpu_ns = thread_cpu_ns() - cpu0;
	pthread_mutex_unlock(&g_mu);
	close_broker(c);
	if (fail)
		set_consumer_state(-1);
	return NULL;
}

#define ACK_RING 65536 /* > the largest --window */
static bool g_ack_ring[ACK_RING];

/* Reads whatever the broker sent the publisher; with confirms, advances
 * *confirmed. Blocks up to the deadline while block is set and nothing came. */
static bool read_confirms(amqp_connection_state_t c, uint64_t *confirmed, bool block)
{
	for (;;) {
		amqp_frame_t f;
		struct timeval tv = { 0, 0 };
		if (block)
			tv.tv_usec = 200000;
		int st = amqp_simple_wait_frame_noblock(c, &f, &tv);
		if (st == AMQP_STATUS_TIMEOUT) {
			if (!block)
				return true;
			if (now_ns() > g_deadline_ns) {
				fprintf(stderr, "amqp_bench: confirms timed out at %" PRIu64 "\n", *confirmed);
				return false;
			}
			continue;
		}
		if (st != AMQP_STATUS_OK) {
			fprintf(stderr, "amqp_bench: publisher read: %s\n", amqp_error_string2(st));
			return false;
		}
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
			amqp_basic_ack_t *a = f.payload.method.decoded;
			/* multiple=1 confirms every tag up to delivery_tag; a single
			 * ack may arrive before an earlier tag's, so it is marked in
			 * a ring (at most --window tags are outstanding) and the
			 * count confirmed moves over every marked tag in order. */
			uint64_t tag = a->delivery_tag;
			if (a->multiple) {
				while (*confirmed < tag)
					g_ack_ring[++*confirmed % ACK_RING] = false;
			} else if (tag > *confirmed) {
				g_ack_ring[tag % ACK_RING] = true;
			}
			while (g_ack_ring[(*confirmed + 1) % ACK_RING]) {
				g_ack_ring[(*confirmed + 1) % ACK_RING] = false;
				++*confirmed;
			}
		} else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
			fprintf(stderr, "amqp_bench: broker nacked a publish\n");
			return false;
		} else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
			   f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
			fprintf(stderr, "amqp_bench: publisher's channel/connection closed by broker\n");
			return false;
		}
		block = false;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *v, uint64_t n, double p)
{
	if (!n)
		return -1;
	uint64_t i = (uint64_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1e6;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: amqp_bench throughput|latency|unrouted [--host H] [--port P] [--mode transient|persistent|confirm]\n"
		"       [--size B] [--count N] [--rate R] [--seconds S] [--prefetch N] [--ack-every N]\n"
		"       [--window N] [--flush-every N] [--max-seconds S] [--queue NAME]\n");
	exit(2);
}

static void parse(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "latency"))
		g_opt.latency = true;
	else if (!strcmp(argv[1], "unrouted"))
		g_opt.unrouted = true;
	else if (strcmp(argv[1], "throughput"))
		usage();
	snprintf(g_opt.queue, sizeof(g_opt.queue), "bench-%d-%ld", (int)getpid(), (long)time(NULL));
	for (int i = 2; i < argc; i++) {
		const char *k = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(k, "--host"))
			g_opt.host = v;
		else if (!strcmp(k, "--port"))
			g_opt.port = atoi(v);
		else if (!strcmp(k, "--mode")) {
			g_opt.mode_name = v;
			if (!strcmp(v, "transient"))
				g_opt.mode = MODE_TRANSIENT;
			else if (!strcmp(v, "persistent"))
				g_opt.mode = MODE_PERSISTENT;
			else if (!strcmp(v, "confirm"))
				g_opt.mode = MODE_CONFIRM;
			else
				usage();
		} else if (!strcmp(k, "--size"))
			g_opt.size = strtoul(v, NULL, 10);
		else if (!strcmp(k, "--count"))
			g_opt.count = strtoull(v, NULL, 10);
		else if (!strcmp(k, "--rate"))
			g_opt.rate = atof(v);
		else if (!strcmp(k, "--seconds"))
			g_opt.seconds = atof(v);
		else if (!strcmp(k, "--prefetch"))
			g_opt.prefetch = atoi(v);
		else if (!strcmp(k, "--ack-every"))
			g_opt.ack_every = atoi(v);
		else if (!strcmp(k, "--window"))
			g_opt.window = atoi(v);
		else if (!strcmp(k, "--flush-every"))
			g_opt.flush_every = atoi(v);
		else if (!strcmp(k, "--max-seconds"))
			g_opt.max_seconds = atof(v);
		else if (!strcmp(k, "--queue"))
			snprintf(g_opt.queue, sizeof(g_opt.queue), "%s", v);
		else
			usage();
	}
	if (g_opt.size < 16 || g_opt.prefetch < 1 || g_opt.prefetch > 65535 || g_opt.ack_every < 1 ||
	    g_opt.window < 1 || g_opt.window > 65535 || g_opt.flush_every < 0 || g_opt.rate <= 0 || g_opt.seconds <= 0 || g_opt.count == 0)
		usage();
	if (g_opt.ack_every > g_opt.prefetch)
		g_opt.ack_every = g_opt.prefetch;
}

/* Sleeps until the absolute CLOCK_MONOTONIC time t (ns). */
static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* --flush-every: the publisher's socket is corked (TCP_CORK) and uncorked
 * every that many publishes, so its frames leave in a few large segments
 * instead of one push per message. Uncorking sends what is queued at once. */
static void cork(amqp_connection_state_t c, int on)
{
	if (g_opt.flush_every > 0 &&
	    setsockopt(amqp_get_sockfd(c), IPPROTO_TCP, TCP_CORK, &on, sizeof on) != 0)
		die("setsockopt TCP_CORK");
}

static void flush_corked(amqp_connection_state_t c)
{
	cork(c, 0);
	cork(c, 1);
}

/* The unrouted mode: publishes only; see the header. */
static int run_unrouted(void)
{
	amqp_connection_state_t c = connect_broker();
	char *body = calloc(1, g_opt.size ? g_opt.size : 1);
	if (!body)
		die("out of memory");
	amqp_basic_properties_t props = { 0 };
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
	props.delivery_mode = 1;
	char rk[160];
	snprintf(rk, sizeof rk, "%s-nowhere", g_opt.queue);
	amqp_bytes_t bb = { .len = g_opt.size, .bytes = body };
	uint64_t t0 = now_ns(), cpu0 = thread_cpu_ns();
	for (uint64_t i = 0; i < g_opt.count; i++) {
		int st = amqp_basic_publish(c, 1, amqp_empty_bytes, amqp_cstring_bytes(rk), 0, 0,
					    &props, bb);
		if (st != AMQP_STATUS_OK) {
			fprintf(stderr, "amqp_bench: publish: %s\n", amqp_error_string2(st));
			return 1;
		}
	}
	uint64_t t_sent = now_ns();
	amqp_basic_qos(c, 1, 0, 0, 0); /* answered once every publish before it is read */
	if (!reply_ok(amqp_get_rpc_reply(c), "basic.qos"))
		return 1;
	uint64_t t1 = now_ns(), cpu = thread_cpu_ns() - cpu0;
	close_broker(c);
	free(body);
	double secs = (double)(t1 - t0) / 1e9;
	printf("RESULT op=unrouted size=%zu msgs=%" PRIu64 " secs=%.3f send_secs=%.3f pub_msgps=%.0f "
	       "pub_cpu_secs=%.3f\n",
	       g_opt.size, g_opt.count, secs, (double)(t_sent - t0) / 1e9, (double)g_opt.count / secs,
	       (double)cpu / 1e9);
	return 0;
}

int main(int argc, char **argv)
{
	parse(argc, argv);
	if (g_opt.unrouted)
		return run_unrouted();
	uint64_t warmup = 0;
	if (g_opt.latency) {
		warmup = (uint64_t)g_opt.rate; /* one second */
		g_opt.count = warmup + (uint64_t)(g_opt.rate * g_opt.seconds);
		g_warmup_seq = warmup;
		g_lat_cap = g_opt.count;
		g_lat_ns = calloc(g_lat_cap, sizeof(*g_lat_ns));
		if (!g_lat_ns)
			die("out of memory");
	}
	g_deadline_ns = now_ns() + (uint64_t)(g_opt.max_seconds * 1e9);

	pthread_t cons;
	if (pthread_create(&cons, NULL, consumer_main, NULL))
		die("pthread_create");
	pthread_mutex_lock(&g_mu);
	while (g_consumer_state == 0)
		pthread_cond_wait(&g_cv, &g_mu);
	int cst = g_consumer_state;
	pthread_mutex_unlock(&g_mu);
	if (cst < 0)
		die("consumer did not start");

	amqp_connection_state_t c = connect_broker();
	if (g_opt.mode == MODE_CONFIRM) {
		amqp_confirm_select(c, 1);
		if (!reply_ok(amqp_get_rpc_reply(c), "confirm.select"))
			exit(1);
	}
	char *body = malloc(g_opt.size);
	if (!body)
		die("out of memory");
	for (size_t i = 0; i < g_opt.size; i++) /* non-zero, not constant */
		body[i] = (char)('a' + (i * 7 + i / 13) % 26);
	amqp_basic_properties_t props = { 0 };
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
	props.delivery_mode = g_opt.mode == MODE_TRANSIENT ? 1 : 2;
	amqp_bytes_t rk = amqp_cstring_bytes(g_opt.queue);
	amqp_bytes_t bb = { .len = g_opt.size, .bytes = body };

	uint64_t n = g_opt.count, confirmed = 0;
	bool ok = true;
	if (g_opt.latency)
		g_opt.flush_every = 0; /* each message goes out when due */
	cork(c, 1);
	uint64_t t0 = now_ns(), pub_cpu0 = thread_cpu_ns();
	double interval_ns = 1e9 / g_opt.rate;
	for (uint64_t i = 0; i < n && ok; i++) {
		if (g_opt.latency) {
			uint64_t due = t0 + (uint64_t)((double)i * interval_ns);
			if (now_ns() < due)
				sleep_until(due);
		}
		bool flush_point = g_opt.flush_every > 0 && i % (uint64_t)g_opt.flush_every == 0;
		if (flush_point && i > 0)
			flush_corked(c);
		if (g_opt.mode == MODE_CONFIRM) {
			/* Corked, confirms are looked for at flush points only. */
			if ((g_opt.flush_every == 0 || flush_point) && !read_confirms(c, &confirmed, false))
				ok = false;
			if (ok && i - confirmed >= (uint64_t)g_opt.window) {
				cork(c, 0); /* the broker must see them to confirm them */
				while (ok && i - confirmed >= (uint64_t)g_opt.window)
					ok = read_confirms(c, &confirmed, true);
				cork(c, 1);
			}
			if (!ok)
				break;
		}
		uint64_t stamp = now_ns();
		if (stamp > g_deadline_ns) {
			fprintf(stderr, "amqp_bench: publisher timed out at %" PRIu64 "\n", i);
			ok = false;
			break;
		}
		memcpy(body, &i, 8);
		memcpy(body + 8, &stamp, 8);
		int st = amqp_basic_publish(c, 1, amqp_empty_bytes, rk, 0, 0, &props, bb);
		if (st != AMQP_STATUS_OK) {
			fprintf(stderr, "amqp_bench: publish: %s\n", amqp_error_string2(st));
			ok = false;
		}
	}
	cork(c, 0);
	while (ok && g_opt.mode == MODE_CONFIRM && confirmed < n)
		ok = read_confirms(c, &confirmed, true);
	uint64_t t_pub = now_ns(), pub_cpu = thread_cpu_ns() - pub_cpu0;

	pthread_join(cons, NULL);
	pthread_mutex_lock(&g_mu);
	uint64_t got = g_received, t_last = g_t_last_recv, cons_cpu = g_cons_cpu_ns;
	cst = g_consumer_state;
	pthread_mutex_unlock(&g_mu);

	amqp_queue_delete(c, 1, rk, 0, 0);
	(void)amqp_get_rpc_reply(c);
	close_broker(c);
	free(body);
	if (!ok || cst < 0 || got < n) {
		fprintf(stderr, "amqp_bench: failed: published ok=%d, received %" PRIu64 " of %" PRIu64 "\n",
			ok, got, n);
		return 1;
	}
	double secs = (double)(t_last - t0) / 1e9;
	double pub_secs = (double)(t_pub - t0) / 1e9;
	if (!g_opt.latency) {
		printf("RESULT op=throughput mode=%s size=%zu msgs=%" PRIu64 " secs=%.3f msgps=%.0f "
		       "mbps=%.1f pub_secs=%.3f pub_msgps=%.0f pub_cpu_secs=%.3f cons_cpu_secs=%.3f\n",
		       g_opt.mode_name, g_opt.size, n, secs, (double)n / secs,
		       (double)n * (double)g_opt.size / secs / 1e6, pub_secs, (double)n / pub_secs,
		       (double)pub_cpu / 1e9, (double)cons_cpu / 1e9);
	} else {
		qsort(g_lat_ns, g_lat_n, sizeof(*g_lat_ns), cmp_u64);
		printf("RESULT op=latency mode=%s size=%zu rate=%.0f samples=%" PRIu64 " p50_ms=%.3f "
		       "p99_ms=%.3f p999_ms=%.3f max_ms=%.3f achieved_msgps=%.0f\n",
		       g_opt.mode_name, g_opt.size, g_opt.rate, g_lat_n, pct_ms(g_lat_ns, g_lat_n, 0.5),
		       pct_ms(g_lat_ns, g_lat_n, 0.99), pct_ms(g_lat_ns, g_lat_n, 0.999),
		       pct_ms(g_lat_ns, g_lat_n, 1.0), (double)n / pub_secs);
	}
	free(g_lat_ns);
	return 0;
}
