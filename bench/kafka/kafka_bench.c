/*
 * bench/kafka/kafka_bench.c: Kafka producer and consumer throughput, end-to-end
 * latency at a fixed rate (all through librdkafka, as a real client sees the
 * broker), and the Redis Streams XADD reference load. Run by
 * bench/run-kafka.sh, which starts the brokers, measures loopback TCP with
 * iperf3 in the same run and prints the ratios (see docs/benchmarks.md).
 *
 * The script builds it with `cc ... $(pkg-config --cflags --libs rdkafka)`.
 * CMake does not: its bench glob takes only the .c files directly in bench/
 * and links them with sluicelib, not librdkafka. It uses nothing of src/.
 *
 *   produce  -b HOST:PORT -t TOPIC -s SIZE -n COUNT -a ACKS
 *            COUNT messages of SIZE value bytes (no key), as fast as the
 *            client's queue takes them; the clock stops when every delivery
 *            report came back (rd_kafka_flush).
 *   consume  -b HOST:PORT -t TOPIC -n COUNT
 *            reads the topic from offset 0 with assign() (no subscribe, no
 *            group join, no commits) until COUNT messages arrived; the rate
 *            is timed from the first message to the last.
 *   latency  -b HOST:PORT -t TOPIC -s SIZE -r RATE -d SECONDS
 *            one producer thread sends RATE msg/s (paced by an absolute clock,
 *            linger.ms=0), each value starting with CLOCK_MONOTONIC ns at
 *            produce time and a sequence number; one consumer in the same
 *            process (so the same clock) records now - stamp. The first
 *            --warmup seconds are not counted. Also reported: the produce
 *            acknowledgement latency (delivery report - stamp) and the share
 *            of the run during which some task on the machine waited for a
 *            CPU or for I/O (/proc/pressure), a measure of outside noise.
 *   xadd     -R HOST:PORT -s SIZE -n COUNT
 *            COUNT `XADD key * d <SIZE bytes>` commands to Redis over one
 *            connection, pipelined (a writer thread streams RESP, the main
 *            thread reads and checks the replies): the Redis Streams reference.
 *   delete   -b HOST:PORT -t T1,T2,...
 *            deletes topics (DeleteTopics), so a run keeps little on disk.
 *
 * Each mode prints one line "RESULT mode=... key=value ..." for the script.
 * MB = 10^6 bytes of message values (payload only, for Kafka and Redis alike).
 * Every wait is bounded by --max-seconds; exit status 0 only if every message
 * was acknowledged (or received) without error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define STAMP_BYTES 16 /* latency payload header: mono ns, sequence */

struct options {
	const char *mode;
	const char *brokers;
	const char *topic;
	const char *redis;
	const char *acks;
	int size;
	int64_t count;
	int rate;
	double seconds;
	double warmup;
	double max_seconds;
	int linger_ms;
	int partition_fetch_bytes;
	int fetch_wait_ms;
	int consume_batch;
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "kafka_bench: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(2);
}

/* Sets one librdkafka property or exits: a typo must not silently change a run. */
static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[512];
	if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK)
		die("%s", err);
}

static void conf_set_int(rd_kafka_conf_t *conf, const char *name, int64_t value)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%" PRId64, value);
	conf_set(conf, name, buf);
}

/* Fills buf with pseudo-random bytes (xorshift), so nothing compresses by accident. */
static void fill_random(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
}

static int log_level = 4; /* warnings and worse; 7 with KAFKA_BENCH_DEBUG */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (level <= log_level)
		fprintf(stderr, "%.6f kafka_bench: rdkafka %s: %s\n", (double)mono_ns() / 1e9, fac, buf);
}

/* KAFKA_BENCH_DEBUG=fetch,msg,... turns on librdkafka's debug contexts. */
static void conf_debug(rd_kafka_conf_t *conf)
{
	const char *d = getenv("KAFKA_BENCH_DEBUG");
	if (d && *d) {
		conf_set(conf, "debug", d);
		log_level = 7;
	}
}

/* ---- producer ---- */

struct delivery {
	atomic_int_fast64_t delivered;
	atomic_int_fast64_t errors;
	atomic_int last_err;
	int64_t *ack_ns;  /* latency mode: per sequence number, ack time - stamp */
	int64_t n_ack;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct delivery *d = opaque;
	if (m->err) {
		atomic_fetch_add(&d->errors, 1);
		atomic_store(&d->last_err, m->err);
	} else if (d->ack_ns && m->len >= STAMP_BYTES) {
		/* Runs in the pacer thread (rd_kafka_poll), the only writer. */
		int64_t stamp, seq;
		memcpy(&stamp, m->payload, 8);
		memcpy(&seq, (const uint8_t *)m->payload + 8, 8);
		if (seq >= 0 && seq < d->n_ack)
			d->ack_ns[seq] = mono_ns() - stamp;
	}
	atomic_fetch_add(&d->delivered, 1);
}

/* A producer with the settings every mode shares; linger and acks per mode. */
static rd_kafka_t *producer_new(const struct options *o, struct delivery *d, int linger_ms)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	conf_set(conf, "bootstrap.servers", o->brokers);
	conf_set(conf, "acks", o->acks);
	conf_set_int(conf, "linger.ms", linger_ms);
	conf_set(conf, "batch.size", "1000000");
	conf_set(conf, "batch.num.messages", "10000");
	conf_set(conf, "queue.buffering.max.messages", "1000000");
	conf_set(conf, "queue.buffering.max.kbytes", "1048576");
	conf_set(conf, "compression.codec", "none");
	conf_set(conf, "socket.nagle.disable", "true");
	conf_set_int(conf, "message.timeout.ms", (int64_t)(o->max_seconds * 1000));
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	conf_debug(conf);
	rd_kafka_conf_set_opaque(conf, d);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!rk)
		die("producer: %s", err);
	return rk;
}

/* Produces one message, waiting (bounded) while the client's queue is full. */
static int produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, void *buf, size_t len, int64_t deadline)
{
	while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, buf, len, NULL, 0,
				NULL) == -1) {
		rd_kafka_resp_err_t e = rd_kafka_last_error();
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			fprintf(stderr, "kafka_bench: produce: %s\n", rd_kafka_err2str(e));
			return -1;
		}
		if (mono_ns() > deadline) {
			fprintf(stderr, "kafka_bench: produce: queue full past the time bound\n");
			return -1;
		}
		rd_kafka_poll(rk, 1);
	}
	return 0;
}

static int run_produce(const struct options *o)
{
	struct delivery d = { 0 };
	rd_kafka_t *rk = producer_new(o, &d, o->linger_ms);
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
	uint8_t *buf = malloc((size_t)o->size);
	if (!buf)
		die("%s", "out of memory");
	fill_random(buf, (size_t)o->size, 42);

	/* Connect and learn the topic (auto-created) before the clock starts. */
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t merr = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
	if (merr)
		die("metadata: %s", rd_kafka_err2str(merr));
	rd_kafka_metadata_destroy(md);

	int64_t t0 = mono_ns();
	int64_t deadline = t0 + (int64_t)(o->max_seconds * 1e9);
	int rc = 0;
	for (int64_t i = 0; i < o->count; i++) {
		memcpy(buf, &i, sizeof i); /* distinct values */
		if (produce_one(rk, rkt, buf, (size_t)o->size, deadline)) {
			rc = 1;
			break;
		}
		if ((i & 1023) == 0)
			rd_kafka_poll(rk, 0);
	}
	int64_t t_sent = mono_ns();
	int left_ms = (int)((deadline - t_sent) / 1000000);
	rd_kafka_resp_err_t ferr = rd_kafka_flush(rk, left_ms > 0 ? left_ms : 0);
	int64_t t1 = mono_ns();
	if (ferr) {
		fprintf(stderr, "kafka_bench: flush: %s (%d messages still queued)\n",
			rd_kafka_err2str(ferr), rd_kafka_outq_len(rk));
		rc = 1;
	}
	int64_t delivered = atomic_load(&d.delivered), errors = atomic_load(&d.errors);
	if (errors) {
		fprintf(stderr, "kafka_bench: %" PRId64 " delivery errors, last: %s\n", errors,
			rd_kafka_err2str(atomic_load(&d.last_err)));
		rc = 1;
	}
	double secs = (double)(t1 - t0) / 1e9;
	int64_t ok = delivered - errors;
	printf("RESULT mode=produce topic=%s size=%d acks=%s msgs=%" PRId64 " errors=%" PRId64
	       " secs=%.3f enqueue_secs=%.3f msgps=%.0f mbps=%.1f\n",
	       o->topic, o->size, o->acks, ok, errors, secs, (double)(t_sent - t0) / 1e9,
	       (double)ok / secs, (double)ok * o->size / secs / 1e6);
	fflush(stdout);
	free(buf);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	return rc || ok != o->count;
}

/* ---- consumer ---- */

/* A consumer that uses assign() only: group.id is set because librdkafka's
 * assign() needs one, but nothing joins, commits or stores offsets. */
static rd_kafka_t *consumer_new(const struct options *o, int fetch_wait_ms)
{
	char err[512], group[64];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	snprintf(group, sizeof group, "kafka-bench-%d", (int)getpid());
	conf_set(conf, "bootstrap.servers", o->brokers);
	conf_set(conf, "group.id", group);
	conf_set(conf, "enable.auto.commit", "false");
	conf_set(conf, "enable.auto.offset.store", "false");
	conf_set(conf, "enable.partition.eof", "false");
	conf_set(conf, "fetch.min.bytes", "1");
	conf_set_int(conf, "fetch.wait.max.ms", fetch_wait_ms);
	conf_set_int(conf, "max.partition.fetch.bytes", o->partition_fetch_bytes);
	conf_set(conf, "fetch.max.bytes", "52428800");
	conf_set(conf, "receive.message.max.bytes", "104857600");
	/* librdkafka 2.0 stops fetching a partition once its local queue holds
	 * queued.min.messages (default 100,000: only 10 MB of 100 B messages) and
	 * then waits fetch.error.backoff.ms (500 ms; 2.1 added fetch.queue.backoff.ms
	 * for this) before it fetches again: 100 B consumers crawled at 15-60 MB/s
	 * with the broker idle. The queue stays bounded by the kbytes limit. */
	conf_set(conf, "queued.min.messages", "1000000");
	conf_set(conf, "queued.max.messages.kbytes", "262144");
	conf_set(conf, "fetch.error.backoff.ms", "10");
	conf_set(conf, "socket.nagle.disable", "true");
	rd_kafka_conf_set_log_cb(conf, log_cb);
	conf_debug(conf);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (!rk)
		die("consumer: %s", err);
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

/* Assigns every partition of the topic from offset 0; returns the partition count. */
static int assign_all(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
	if (e)
		die("metadata: %s", rd_kafka_err2str(e));
	if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1)
		die("topic %s is not there", topic);
	int n = md->topics[0].partition_cnt;
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)->offset =
			RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	e = rd_kafka_assign(rk, parts);
	if (e)
		die("assign: %s", rd_kafka_err2str(e));
	rd_kafka_topic_partition_list_destroy(parts);
	return n;
}

static int run_consume(const struct options *o)
{
	rd_kafka_t *rk = consumer_new(o, o->fetch_wait_ms);
	int64_t t0 = mono_ns();
	int64_t deadline = t0 + (int64_t)(o->max_seconds * 1e9);
	int n_parts = assign_all(rk, o->topic);
	int64_t got = 0, bytes = 0, errors = 0, t_first = 0, first_len = 0;
	/* --batch N > 1: rd_kafka_consume_batch_queue takes up to N messages per
	 * call instead of one rd_kafka_consumer_poll per message. */
	rd_kafka_queue_t *q = o->consume_batch > 1 ? rd_kafka_queue_get_consumer(rk) : NULL;
	rd_kafka_message_t *one[1], **batch = one;
	if (q && !(batch = calloc((size_t)o->consume_batch, sizeof *batch)))
		die("%s", "out of memory");
	while (got < o->count && mono_ns() < deadline) {
		ssize_t n_msgs = 1;
		if (q) {
			n_msgs = rd_kafka_consume_batch_queue(q, 100, batch, (size_t)o->consume_batch);
			if (n_msgs < 0)
				die("consume batch: %s", rd_kafka_err2str(rd_kafka_last_error()));
		} else {
			rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
			if (!m)
				continue;
			batch[0] = m;
		}
		for (ssize_t k = 0; k < n_msgs; k++) {
			rd_kafka_message_t *m = batch[k];
			if (m->err) {
				if (errors++ < 5)
					fprintf(stderr, "kafka_bench: consume: %s\n", rd_kafka_message_errstr(m));
			} else {
				if (!got) {
					t_first = mono_ns();
					first_len = (int64_t)m->len;
				}
				got++;
				bytes += (int64_t)m->len;
			}
			rd_kafka_message_destroy(m);
		}
	}
	if (q) {
		free(batch);
		rd_kafka_queue_destroy(q);
	}
	int64_t t1 = mono_ns();
	/* The rate runs from the first message on: librdkafka 2.0 sometimes starts
	 * an assigned partition before it knows the leader and then retries the
	 * offset lookup after a fixed 500 ms, which says nothing of the broker.
	 * That start-up time is reported apart (first_msg_secs). */
	double secs = got > 1 ? (double)(t1 - t_first) / 1e9 : (double)(t1 - t0) / 1e9;
	int64_t counted = got > 1 ? got - 1 : got, counted_bytes = got > 1 ? bytes - first_len : bytes;
	printf("RESULT mode=consume topic=%s partitions=%d msgs=%" PRId64 " bytes=%" PRId64
	       " errors=%" PRId64 " total_secs=%.3f first_msg_secs=%.3f secs=%.3f msgps=%.0f mbps=%.1f\n",
	       o->topic, n_parts, got, bytes, errors, (double)(t1 - t0) / 1e9,
	       (double)(t_first - t0) / 1e9, secs, (double)counted / secs,
	       (double)counted_bytes / secs / 1e6);
	fflush(stdout);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return got != o->count || errors;
}

/* ---- end-to-end latency ---- */

struct pacer {
	const struct options *o;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	int64_t total;       /* messages to send (warm-up included) */
	int64_t sent;
	int failed;
};

/* Sends total messages at o->rate per second against an absolute schedule, so
 * a late wake-up sends the messages that fell due (no coordinated omission in
 * the sender); the stamp is taken right before each produce call. */
static void *pacer_run(void *arg)
{
	struct pacer *pc = arg;
	const struct options *o = pc->o;
	uint8_t *buf = malloc((size_t)o->size);
	if (!buf) {
		pc->failed = 1;
		return NULL;
	}
	fill_random(buf, (size_t)o->size, 7);
	int64_t start = mono_ns();
	int64_t deadline = start + (int64_t)(o->max_seconds * 1e9);
	double step_ns = 1e9 / o->rate;
	for (int64_t i = 0; i < pc->total; i++) {
		int64_t due = start + (int64_t)(step_ns * (double)i);
		int64_t now = mono_ns();
		if (due > now) {
			struct timespec ts = { due / 1000000000, due % 1000000000 };
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
			now = mono_ns();
		}
		memcpy(buf, &now, 8);
		memcpy(buf + 8, &i, 8);
		if (produce_one(pc->rk, pc->rkt, buf, (size_t)o->size, deadline)) {
			pc->failed = 1;
			break;
		}
		pc->sent = i + 1;
		rd_kafka_poll(pc->rk, 0);
	}
	free(buf);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double pct_ms(const int64_t *v, int64_t n, double p)
{
	if (n == 0)
		return -1;
	int64_t i = (int64_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1e6;
}

/* The "some" total (microseconds during which some task waited) of
 * /proc/pressure/cpu or io, or -1: how much the machine itself delayed us. */
static int64_t psi_some_us(const char *what)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/pressure/%s", what);
	FILE *f = fopen(path, "r");
	int64_t total = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		const char *t = strstr(line, "total=");
		if (!strncmp(line, "some", 4) && t)
			total = atoll(t + 6);
	}
	fclose(f);
	return total;
}

static double psi_pct(int64_t before, int64_t after, int64_t wall_ns)
{
	if (before < 0 || after < before || wall_ns <= 0)
		return -1;
	return 100.0 * (double)(after - before) * 1000 / (double)wall_ns;
}

static int run_latency(const struct options *o)
{
	if (o->size < STAMP_BYTES)
		die("%s", "latency: --size must be at least 16");
	struct delivery d = { 0 };
	rd_kafka_t *prk = producer_new(o, &d, 0);
	rd_kafka_topic_t *prkt = rd_kafka_topic_new(prk, o->topic, NULL);
	int64_t t0 = mono_ns();
	int64_t deadline = t0 + (int64_t)(o->max_seconds * 1e9);

	/* One marker message creates the topic; the consumer starts once it has it,
	 * so every paced message finds a connected, fetching consumer. */
	uint8_t marker[STAMP_BYTES] = { 0 };
	int64_t neg = -1;
	memcpy(marker + 8, &neg, 8);
	if (produce_one(prk, prkt, marker, sizeof marker, deadline) || rd_kafka_flush(prk, 10000))
		die("%s", "latency: could not produce the marker message");
	rd_kafka_t *crk = consumer_new(o, o->fetch_wait_ms);
	assign_all(crk, o->topic);
	bool marker_seen = false;
	while (!marker_seen && mono_ns() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(crk, 100);
		if (m && !m->err && m->len >= STAMP_BYTES) {
			int64_t seq;
			memcpy(&seq, (const uint8_t *)m->payload + 8, 8);
			marker_seen = seq == -1;
		}
		if (m)
			rd_kafka_message_destroy(m);
	}
	if (!marker_seen)
		die("%s", "latency: the consumer never saw the marker message");

	int64_t warm = (int64_t)(o->warmup * o->rate);
	int64_t total = warm + (int64_t)(o->seconds * o->rate);
	int64_t *lat = calloc((size_t)total, sizeof *lat);
	uint8_t *seen = calloc((size_t)total, 1);
	int64_t *ack = calloc((size_t)total, sizeof *ack);
	if (!lat || !seen || !ack)
		die("%s", "out of memory");
	rd_kafka_poll(prk, 0); /* the marker's report, before ack_ns is set */
	d.n_ack = total;
	d.ack_ns = ack;
	int64_t psi_cpu0 = psi_some_us("cpu"), psi_io0 = psi_some_us("io"), t_start = mono_ns();
	struct pacer pc = { .o = o, .rk = prk, .rkt = prkt, .total = total };
	pthread_t th;
	if (pthread_create(&th, NULL, pacer_run, &pc))
		die("%s", "pthread_create failed");

	int64_t got = 0, n_lat = 0, dups = 0, errors = 0;
	int64_t end = mono_ns() + (int64_t)((o->warmup + o->seconds + 5) * 1e9);
	if (end > deadline)
		end = deadline;
	while (got < total && mono_ns() < end) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(crk, 50);
		if (!m)
			continue;
		int64_t now = mono_ns();
		if (m->err) {
			if (errors++ < 5)
				fprintf(stderr, "kafka_bench: consume: %s\n", rd_kafka_message_errstr(m));
		} else if (m->len >= STAMP_BYTES) {
			int64_t stamp, seq;
			memcpy(&stamp, m->payload, 8);
			memcpy(&seq, (const uint8_t *)m->payload + 8, 8);
			if (seq >= 0 && seq < total) {
				if (seen[seq]) {
					dups++;
				} else {
					seen[seq] = 1;
					got++;
					if (seq >= warm)
						lat[n_lat++] = now - stamp;
				}
			}
		}
		rd_kafka_message_destroy(m);
	}
	pthread_join(th, NULL);
	int64_t t_end = mono_ns();
	double cpu_pct = psi_pct(psi_cpu0, psi_some_us("cpu"), t_end - t_start);
	double io_pct = psi_pct(psi_io0, psi_some_us("io"), t_end - t_start);
	rd_kafka_flush(prk, 5000);
	d.ack_ns = NULL; /* the remaining reports come from destroy below */
	int64_t n_ack = 0;
	for (int64_t i = warm; i < total; i++)
		if (ack[i] > 0)
			ack[n_ack++] = ack[i];
	qsort(ack, (size_t)n_ack, sizeof *ack, cmp_i64);
	qsort(lat, (size_t)n_lat, sizeof *lat, cmp_i64);
	double mean = 0;
	for (int64_t i = 0; i < n_lat; i++)
		mean += (double)lat[i] / 1e6;
	mean = n_lat ? mean / (double)n_lat : -1;
	printf("RESULT mode=latency topic=%s size=%d acks=%s rate=%d secs=%.1f warmup_secs=%.1f "
	       "sent=%" PRId64 " received=%" PRId64 " measured=%" PRId64 " lost=%" PRId64
	       " dups=%" PRId64 " errors=%" PRId64 " delivery_errors=%" PRId64
	       " p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f mean_ms=%.3f"
	       " ack_p50_ms=%.3f ack_p99_ms=%.3f cpu_pressure_pct=%.0f io_pressure_pct=%.0f\n",
	       o->topic, o->size, o->acks, o->rate, o->seconds, o->warmup, pc.sent, got, n_lat,
	       total - got, dups, errors, (int64_t)atomic_load(&d.errors), pct_ms(lat, n_lat, 0.50),
	       pct_ms(lat, n_lat, 0.90), pct_ms(lat, n_lat, 0.99), pct_ms(lat, n_lat, 0.999),
	       n_lat ? (double)lat[n_lat - 1] / 1e6 : -1, mean, pct_ms(ack, n_ack, 0.50),
	       pct_ms(ack, n_ack, 0.99), cpu_pct, io_pct);
	fflush(stdout);
	int rc = pc.failed || got != total || errors || atomic_load(&d.errors);
	free(lat);
	free(seen);
	free(ack);
	rd_kafka_consumer_close(crk);
	rd_kafka_destroy(crk);
	rd_kafka_topic_destroy(prkt);
	rd_kafka_destroy(prk);
	return rc;
}

/* ---- Redis Streams reference ---- */

struct xadd_writer {
	int fd;
	const struct options *o;
	int failed;
};

/* Streams COUNT XADD commands in RESP, 256 per write; TCP flow control (and
 * the reader) keep Redis and this thread in step, as redis-cli --pipe does. */
static void *xadd_write(void *arg)
{
	struct xadd_writer *w = arg;
	const struct options *o = w->o;
	char head[128];
	int hl = snprintf(head, sizeof head,
			  "*5\r\n$4\r\nXADD\r\n$%zu\r\n%s\r\n$1\r\n*\r\n$1\r\nd\r\n$%d\r\n",
			  strlen(o->topic), o->topic, o->size);
	size_t cmd = (size_t)hl + (size_t)o->size + 2, per = 256;
	uint8_t *buf = malloc(cmd * per);
	if (!buf) {
		w->failed = 1;
		return NULL;
	}
	for (size_t k = 0; k < per; k++) {
		uint8_t *c = buf + k * cmd;
		memcpy(c, head, (size_t)hl);
		fill_random(c + hl, (size_t)o->size, 42 + k);
		memcpy(c + hl + o->size, "\r\n", 2);
	}
	for (int64_t sent = 0; sent < o->count;) {
		size_t n = (size_t)(o->count - sent) < per ? (size_t)(o->count - sent) : per;
		size_t len = n * cmd, off = 0;
		while (off < len) {
			ssize_t k = write(w->fd, buf + off, len - off);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				w->failed = 1;
				goto out;
			}
			off += (size_t)k;
		}
		sent += (int64_t)n;
	}
out:
	shutdown(w->fd, SHUT_WR);
	free(buf);
	return NULL;
}

static int tcp_connect(const char *hostport)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	if (!colon || (size_t)(colon - hostport) >= sizeof host)
		die("bad address %s (HOST:PORT)", hostport);
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, colon + 1, &hints, &ai))
		die("cannot resolve %s", hostport);
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen))
		die("cannot connect to %s", hostport);
	freeaddrinfo(ai);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* Counts RESP replies in buf[0..len): bulk strings ($n\r\n...\r\n) are XADD's
 * answer, anything else is an error. Returns bytes consumed; *replies and
 * *errors grow. A reply cut at the buffer end is left for the next read. */
static size_t resp_scan(const char *buf, size_t len, int64_t *replies, int64_t *errors)
{
	size_t pos = 0;
	for (;;) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		if (!nl)
			return pos;
		size_t line_end = (size_t)(nl - buf) + 1;
		if (buf[pos] == '$') {
			long n = strtol(buf + pos + 1, NULL, 10);
			size_t need = n >= 0 ? line_end + (size_t)n + 2 : line_end;
			if (need > len)
				return pos;
			pos = need;
		} else {
			if (*errors < 3)
				fprintf(stderr, "kafka_bench: redis: %.*s\n", (int)(line_end - pos), buf + pos);
			(*errors)++;
			pos = line_end;
		}
		(*replies)++;
	}
}

static int run_xadd(const struct options *o)
{
	int fd = tcp_connect(o->redis);
	/* A fresh stream: the reference must not grow a previous run's. */
	char del[128];
	int dl = snprintf(del, sizeof del, "*2\r\n$3\r\nDEL\r\n$%zu\r\n%s\r\n", strlen(o->topic), o->topic);
	char tmp[256];
	if (write(fd, del, (size_t)dl) != dl || read(fd, tmp, sizeof tmp) <= 0)
		die("%s", "redis: DEL failed");
	struct xadd_writer w = { .fd = fd, .o = o };
	struct timeval tv = { .tv_sec = 1 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int64_t t0 = mono_ns();
	int64_t deadline = t0 + (int64_t)(o->max_seconds * 1e9);
	pthread_t th;
	if (pthread_create(&th, NULL, xadd_write, &w))
		die("%s", "pthread_create failed");
	char buf[1 << 16];
	size_t have = 0;
	int64_t replies = 0, errors = 0;
	while (replies < o->count && mono_ns() < deadline) {
		ssize_t k = read(fd, buf + have, sizeof buf - have);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k <= 0)
			break;
		have += (size_t)k;
		size_t used = resp_scan(buf, have, &replies, &errors);
		memmove(buf, buf + used, have - used);
		have -= used;
	}
	int64_t t1 = mono_ns();
	if (replies < o->count)
		shutdown(fd, SHUT_RDWR); /* unblocks a writer stuck on a dead server */
	pthread_join(th, NULL);
	close(fd);
	int64_t ok = replies - errors;
	double secs = (double)(t1 - t0) / 1e9;
	printf("RESULT mode=xadd key=%s size=%d msgs=%" PRId64 " errors=%" PRId64
	       " secs=%.3f msgps=%.0f mbps=%.1f\n",
	       o->topic, o->size, ok, errors, secs, (double)ok / secs, (double)ok * o->size / secs / 1e6);
	fflush(stdout);
	return w.failed || ok != o->count;
}

/* ---- cleanup ---- */

/* Deletes the comma-separated topics in o->topic (DeleteTopics), so that a
 * long run keeps at most one rep's data on disk. */
static int run_delete(const struct options *o)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	conf_set(conf, "bootstrap.servers", o->brokers);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!rk)
		die("admin: %s", err);
	char *names = strdup(o->topic);
	rd_kafka_DeleteTopic_t *del[64];
	size_t n = 0;
	for (char *save = NULL, *t = strtok_r(names, ",", &save); t && n < 64; t = strtok_r(NULL, ",", &save))
		del[n++] = rd_kafka_DeleteTopic_new(t);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_DeleteTopics(rk, del, n, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)(o->max_seconds * 1000));
	int rc = 1;
	if (!ev) {
		fprintf(stderr, "kafka_bench: DeleteTopics: no answer\n");
	} else if (rd_kafka_event_error(ev)) {
		fprintf(stderr, "kafka_bench: DeleteTopics: %s\n", rd_kafka_event_error_string(ev));
	} else {
		size_t cnt;
		const rd_kafka_topic_result_t **res =
			rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
		rc = 0;
		for (size_t i = 0; i < cnt; i++) {
			if (rd_kafka_topic_result_error(res[i])) {
				fprintf(stderr, "kafka_bench: delete %s: %s\n", rd_kafka_topic_result_name(res[i]),
					rd_kafka_topic_result_error_string(res[i]));
				rc = 1;
			}
		}
		printf("RESULT mode=delete topics=%zu errors=%d\n", cnt, rc);
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_DeleteTopic_destroy_array(del, n);
	rd_kafka_queue_destroy(q);
	free(names);
	rd_kafka_destroy(rk);
	return rc;
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: kafka_bench produce|consume|latency|xadd|delete [options]\n"
		"  -b HOST:PORT   Kafka bootstrap server (produce, consume, latency)\n"
		"  -t NAME        topic (or Redis stream key; delete: a comma-separated list),\n"
		"                 default kafka-bench\n"
		"  -R HOST:PORT   Redis server (xadd)\n"
		"  -s BYTES       message value size, default 1024\n"
		"  -n COUNT       messages (produce, consume, xadd), default 200000\n"
		"  -a ACKS        0, 1 or all, default 1\n"
		"  -r RATE        msg/s (latency), default 10000\n"
		"  -d SECONDS     measured seconds (latency), default 5\n"
		"  --warmup S     uncounted seconds before measuring (latency), default 1\n"
		"  --linger MS    linger.ms of the throughput producer, default 5\n"
		"  --partition-fetch-bytes N   max.partition.fetch.bytes, default 1048576\n"
		"  --fetch-wait MS             fetch.wait.max.ms, default 10\n"
		"  --batch N                   consume: up to N messages per call of\n"
		"                              rd_kafka_consume_batch_queue (default 1: one\n"
		"                              rd_kafka_consumer_poll per message)\n"
		"  --max-seconds S             bound on the whole mode, default 60\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	struct options o = { .mode = argv[1], .topic = "kafka-bench", .acks = "1", .size = 1024,
			     .count = 200000, .rate = 10000, .seconds = 5, .warmup = 1,
			     .max_seconds = 60, .linger_ms = 5, .partition_fetch_bytes = 1048576,
			     .fetch_wait_ms = 10 };
	static const struct option longs[] = {
		{ "warmup", required_argument, NULL, 'W' },
		{ "linger", required_argument, NULL, 'L' },
		{ "partition-fetch-bytes", required_argument, NULL, 'F' },
		{ "fetch-wait", required_argument, NULL, 'w' },
		{ "batch", required_argument, NULL, 'B' },
		{ "max-seconds", required_argument, NULL, 'M' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "b:t:R:s:n:a:r:d:", longs, NULL)) != -1) {
		switch (c) {
		case 'b': o.brokers = optarg; break;
		case 't': o.topic = optarg; break;
		case 'R': o.redis = optarg; break;
		case 's': o.size = atoi(optarg); break;
		case 'n': o.count = atoll(optarg); break;
		case 'a': o.acks = optarg; break;
		case 'r': o.rate = atoi(optarg); break;
		case 'd': o.seconds = atof(optarg); break;
		case 'W': o.warmup = atof(optarg); break;
		case 'L': o.linger_ms = atoi(optarg); break;
		case 'F': o.partition_fetch_bytes = atoi(optarg); break;
		case 'w': o.fetch_wait_ms = atoi(optarg); break;
		case 'B': o.consume_batch = atoi(optarg); break;
		case 'M': o.max_seconds = atof(optarg); break;
		default: usage();
		}
	}
	if (o.size < 1 || o.size > 1000000 || o.count < 1 || o.rate < 1 || o.seconds <= 0 ||
	    o.warmup < 0 || o.max_seconds <= 0)
		usage();
	if (!strcmp(o.mode, "xadd")) {
		if (!o.redis)
			usage();
		return run_xadd(&o);
	}
	if (!o.brokers)
		usage();
	if (!strcmp(o.mode, "produce"))
		return run_produce(&o);
	if (!strcmp(o.mode, "consume"))
		return run_consume(&o);
	if (!strcmp(o.mode, "latency"))
		return run_latency(&o);
	if (!strcmp(o.mode, "delete"))
		return run_delete(&o);
	usage();
	return 2;
}
