/*
 * main.c: the sluice broker process.
 *
 * Start: settings (embedded defaults, then --config FILE, then flags), the
 * data directory (created, then locked with flock on DIR/.lock so two brokers
 * never share it), the event-loop group, and one listener per enabled port.
 *
 * Signals: SIGINT and SIGTERM are blocked in every thread and the main thread
 * takes them with sigwaitinfo, so no code runs in a signal handler. The first
 * one starts an orderly shutdown on a separate thread:
 *   stop accepting ─► close connections (drain, then cut) ─► wait for requests
 *   in flight ─► stop retention ─► stop the loops ─► fsync and close logs and
 *   the catalog ─► unlock the data directory ─► exit 0
 * while the main thread keeps waiting: a second signal exits at once with 1,
 * and so does a shutdown that overruns shutdown.timeout.ms.
 *
 * The Kafka and AMQP listeners serve their front ends (kafka/kafka_server.h,
 * amqp/amqp_server.h). Until the HTTP front end exists its listener serves the
 * "pending" protocol, which accepts connections and discards their input.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/disk_alarm.h"
#include "core/mem_account.h"
#include "net/conn.h"
#include "net/listener.h"
#include "net/loop.h"
#include "broker/broker.h"
#include "kafka/kafka_server.h"
#include "amqp/amqp_server.h"
#include "version.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define SHUTDOWN_MIN_MS 1000

/* A command-line flag and the configuration key it sets (NULL: handled here). */
struct flag {
	const char *name;
	const char *key;
	const char *arg;
	const char *help;
};

static const struct flag flags[] = {
	{ "--config", NULL, "FILE", "read settings from FILE (\"key = value\" lines); flags override it" },
	{ "--data-dir", "data.dir", "DIR", "directory for logs and the catalog (default ./data)" },
	{ "--port-kafka", "port.kafka", "N", "Kafka listener port (default 9092; 0 disables)" },
	{ "--port-amqp", "port.amqp", "N", "AMQP 0-9-1 listener port (default 5672; 0 disables)" },
	{ "--port-http", "port.http", "N", "HTTP admin/metrics port (default 9600; 0 disables)" },
	{ "--threads", "threads", "N", "event-loop threads (default 0 = one per CPU core)" },
	{ "--log-level", "log.level", "L", "debug, info, warn or error (default info)" },
	{ "--help", NULL, NULL, "print this help and exit" },
	{ "--version", NULL, NULL, "print the version and exit" },
};
#define N_FLAGS (sizeof flags / sizeof flags[0])

/* The broker's running state, shared with the shutdown thread. */
struct server {
	struct config cfg;
	struct broker *broker;          /* topics, partitions, storage */
	struct kafka_server *kafka;     /* the Kafka front end */
	struct amqp_server *amqp;       /* the AMQP 0-9-1 front end */
	struct loop_group *group;
	struct listener *listeners[3];
	int n_listeners;
	int lock_fd;
	pthread_t main_thread;
	atomic_int shutdown_done;
	int shutdown_rc;
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: sluice [FLAGS]\n\n"
		     "A message broker speaking the Kafka and AMQP 0-9-1 protocols.\n\n"
		     "Flags (\"--flag VALUE\" or \"--flag=VALUE\"):\n");
	for (size_t i = 0; i < N_FLAGS; i++) {
		char left[40];
		snprintf(left, sizeof left, "%s%s%s", flags[i].name, flags[i].arg ? " " : "",
			 flags[i].arg ? flags[i].arg : "");
		fprintf(out, "  %-20s %s\n", left, flags[i].help);
	}
	fprintf(out, "\nSettings are applied in order: defaults, --config FILE, flags.\n"
		     "SIGTERM or SIGINT shuts down cleanly; a second one exits at once.\n"
		     "Exit status: 0 clean shutdown, 1 runtime failure, 2 bad flags or settings.\n");
}

/* Prints "sluice: reason" and a hint on stderr, exits 2. */
static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "sluice: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry 'sluice --help'.\n");
	va_end(ap);
	exit(EXIT_USAGE);
}

static const struct flag *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < N_FLAGS; i++)
		if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

/*
 * Walks argv; calls apply(flag, value) for each flag. Exits 2 on an unknown
 * flag or a missing value; handles --help and --version.
 */
static void parse_flags(int argc, char **argv,
			void (*apply)(const struct flag *f, const char *value, void *arg), void *arg)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0)
			usage_error("unexpected argument \"%s\"", a);
		const char *eq = strchr(a, '=');
		size_t len = eq ? (size_t)(eq - a) : strlen(a);
		const struct flag *f = find_flag(a, len);
		if (f == NULL)
			usage_error("unknown flag \"%s\"", a);
		if (strcmp(f->name, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strcmp(f->name, "--version") == 0) {
			printf("sluice %s\n", SLUICE_VERSION);
			exit(0);
		}
		const char *value;
		if (eq != NULL)
			value = eq + 1;
		else if (i + 1 < argc)
			value = argv[++i];
		else
			usage_error("%s needs a value (%s)", f->name, f->arg);
		apply(f, value, arg);
	}
}

static void find_config(const struct flag *f, const char *value, void *arg)
{
	if (f->key == NULL)
		*(const char **)arg = value;
}

static void apply_flag(const struct flag *f, const char *value, void *arg)
{
	struct config *cfg = arg;
	char err[512];
	if (f->key == NULL)
		return;
	if (config_set(cfg, f->key, value, err, sizeof err) != 0)
		usage_error("%s: %s", f->name, err);
}

/* Creates dir and its missing parents (mkdir -p); returns 0 or -errno. */
static int mkdir_p(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);
	if (len == 0 || len >= sizeof path)
		return -ENAMETOOLONG;
	memcpy(path, dir, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		char saved = path[i];
		path[i] = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			return -errno;
		path[i] = saved;
	}
	struct stat st;
	if (stat(dir, &st) != 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Takes DIR/.lock exclusively; returns the fd, or -1 with the reason logged. */
static int lock_data_dir(const char *dir)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/.lock", dir) >= (int)sizeof path) {
		diag_error("main", "data directory path too long: %s", dir);
		return -1;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		diag_error("main", "cannot open lock file %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		char owner[32] = "";
		ssize_t n = pread(fd, owner, sizeof owner - 1, 0);
		owner[n > 0 ? n : 0] = '\0';
		owner[strcspn(owner, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			diag_error("main",
				   "data directory %s is in use by another sluice (pid %s holds %s); "
				   "use another --data-dir or stop that broker",
				   dir, owner[0] ? owner : "?", path);
		else
			diag_error("main", "cannot lock %s: %s", path, strerror(e));
		close(fd);
		return -1;
	}
	char pid[32];
	int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
		diag_warn("main", "cannot write pid to %s: %s", path, strerror(errno));
	return fd;
}

static void unlock_data_dir(void *arg)
{
	struct server *b = arg;
	if (b->lock_fd >= 0) {
		flock(b->lock_fd, LOCK_UN);
		close(b->lock_fd);
		b->lock_fd = -1;
	}
}

/* The placeholder protocol: accepts, discards input. Temporary (docs/net.md). */
static int pending_open(struct conn *c, void *proto_ctx)
{
	diag_info("main", "connection from %s on the %s port: protocol not served yet",
		  conn_peer(c), (const char *)proto_ctx);
	return 0;
}

static ssize_t pending_data(struct conn *c, const uint8_t *data, size_t len)
{
	(void)c;
	(void)data;
	return (ssize_t)len;
}

static const struct net_proto pending_proto = {
	.name = "pending",
	.on_open = pending_open,
	.on_data = pending_data,
	.max_buffer = 64 * 1024,
};

/* Stops listeners, connections, loops and storage; returns the exit status. */
static int broker_stop(struct server *b, int64_t conn_timeout_ms)
{
	for (int i = 0; i < b->n_listeners; i++)
		listener_stop(b->listeners[i]);
	b->n_listeners = 0;
	int rc = 0;
	if (b->group != NULL) {
		diag_info("main", "stopped accepting; closing connections");
		size_t left = conn_close_all(b->group, conn_timeout_ms);
		if (left > 0)
			diag_warn("main", "%zu connections did not close in time", left);
	}
	/* Requests still waiting on storage (fsyncs, reads) finish while loops run. */
	if (b->kafka != NULL && !kafka_server_wait_idle(b->kafka, conn_timeout_ms))
		diag_warn("main", "Kafka requests still in flight at shutdown");
	if (b->amqp != NULL && !amqp_server_wait_idle(b->amqp, conn_timeout_ms))
		diag_warn("main", "AMQP work still in flight at shutdown");
	if (b->broker != NULL)
		broker_quiesce(b->broker);
	if (b->group != NULL) {
		int e = loop_group_stop(b->group);
		b->group = NULL;
		if (e != 0) {
			diag_error("main", "event loops did not stop cleanly: %s", err_str(e));
			rc = EXIT_RUNTIME;
		}
	}
	kafka_server_free(b->kafka);
	b->kafka = NULL;
	amqp_server_free(b->amqp);
	b->amqp = NULL;
	/* Logs are fsynced and closed, the catalog closed, after every loop stopped. */
	broker_close(b->broker);
	b->broker = NULL;
	unlock_data_dir(b);
	return rc;
}

static void *shutdown_main(void *arg)
{
	struct server *b = arg;
	int64_t t = b->cfg.shutdown_timeout_ms;
	b->shutdown_rc = broker_stop(b, t / 2);
	atomic_store(&b->shutdown_done, 1);
	pthread_kill(b->main_thread, SIGUSR1);
	return NULL;
}

static const char *signal_name(int sig)
{
	return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal";
}

/* Runs the shutdown thread and waits for it, a second signal, or the deadline. */
static int shutdown_wait(struct server *b, const sigset_t *sigs)
{
	pthread_t th;
	if (pthread_create(&th, NULL, shutdown_main, b) != 0) {
		diag_error("main", "cannot start the shutdown thread; exiting");
		return EXIT_RUNTIME;
	}
	int64_t budget = b->cfg.shutdown_timeout_ms;
	if (budget < SHUTDOWN_MIN_MS)
		budget = SHUTDOWN_MIN_MS;
	struct timespec end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += budget / 1000;
	end.tv_nsec += (budget % 1000) * 1000000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	for (;;) {
		struct timespec now, left;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = end.tv_sec - now.tv_sec;
		left.tv_nsec = end.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000;
		}
		if (left.tv_sec < 0)
			left.tv_sec = left.tv_nsec = 0;
		int sig = sigtimedwait(sigs, NULL, &left);
		if (sig == SIGUSR1 && atomic_load(&b->shutdown_done)) {
			pthread_join(th, NULL);
			return b->shutdown_rc;
		}
		if (sig == SIGINT || sig == SIGTERM) {
			diag_warn("main", "%s during shutdown: exiting now", signal_name(sig));
			pthread_detach(th); /* abandoned on purpose: not a leak */
			_exit(EXIT_RUNTIME);
		}
		if (sig < 0 && errno == EAGAIN) {
			diag_error("main", "shutdown did not finish within %lld ms: exiting now",
				   (long long)budget);
			pthread_detach(th);
			_exit(EXIT_RUNTIME);
		}
	}
}

/* Starts the loops and one listener per enabled port; returns 0 or -1 (logged). */
static int broker_start(struct server *b)
{
	struct loop_coalesce co = { .wait_us = b->cfg.loop_coalesce_wait_us,
				    .gap_us = b->cfg.loop_coalesce_gap_us };
	int rc = loop_group_start_opts(b->cfg.threads, &co, &b->group);
	if (rc != 0) {
		diag_error("main", "cannot start event loops: %s", err_str(rc));
		return -1;
	}
	rc = broker_open(&b->cfg, b->group, &b->broker);
	if (rc != 0) {
		diag_error("main", "cannot open the data directory: %s", err_str(rc));
		return -1;
	}
	rc = kafka_server_new(b->broker, b->group, &b->kafka);
	if (rc != 0) {
		diag_error("main", "cannot start the Kafka front end: %s", err_str(rc));
		return -1;
	}
	rc = amqp_server_new(b->broker, b->group, &b->amqp);
	if (rc != 0) {
		diag_error("main", "cannot start the AMQP front end: %s", err_str(rc));
		return -1;
	}
	static const char *services[] = { "kafka", "amqp", "http" };
	int ports[] = { b->cfg.port_kafka, b->cfg.port_amqp, b->cfg.port_http };
	for (int i = 0; i < 3; i++) {
		if (ports[i] == 0) {
			diag_info("main", "%s listener disabled (port 0)", services[i]);
			continue;
		}
		char err[256];
		struct listener *l;
		const struct net_proto *proto = &pending_proto;
		void *ctx = (void *)services[i];
		if (i == 0) {
			proto = kafka_server_proto();
			ctx = b->kafka;
		} else if (i == 1) {
			proto = amqp_server_proto();
			ctx = b->amqp;
		}
		rc = listener_start(b->group, b->cfg.listen_host, ports[i], proto, ctx, &l, err,
				    sizeof err);
		if (rc != 0) {
			diag_error("main", "%s (%s)", err, services[i]);
			return -1;
		}
		b->listeners[b->n_listeners++] = l;
		diag_info("main", "listening on %s (%s)", listener_address(l), services[i]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	/* Requests use large short-lived buffers (MBs per produce or fetch): keep freed
	 * memory in the heap instead of returning it to the kernel after every request,
	 * which made each request fault its pages in again (measured: bench/kafka). */
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	static struct server b;
	b.lock_fd = -1;
	config_defaults(&b.cfg);

	const char *config_path = NULL;
	parse_flags(argc, argv, find_config, &config_path);
	char err[1024];
	if (config_path != NULL && config_load_file(&b.cfg, config_path, err, sizeof err) != 0) {
		fprintf(stderr, "sluice: %s\n", err);
		return EXIT_USAGE;
	}
	parse_flags(argc, argv, apply_flag, &b.cfg);
	diag_set_level((enum diag_level)b.cfg.log_level);
	conn_set_limits(b.cfg.max_connections, b.cfg.conn_output_max_bytes);
	mem_account_set_watermark(b.cfg.memory_high_watermark_bytes);

	/* Every thread started from here on inherits these blocked signals. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	b.main_thread = pthread_self();

	diag_info("main", "sluice %s starting (data dir %s)", SLUICE_VERSION, b.cfg.data_dir);
	int e = mkdir_p(b.cfg.data_dir);
	if (e != 0) {
		diag_error("main", "cannot create data directory %s: %s", b.cfg.data_dir, strerror(-e));
		return EXIT_RUNTIME;
	}
	b.lock_fd = lock_data_dir(b.cfg.data_dir);
	if (b.lock_fd < 0)
		return EXIT_RUNTIME;
	disk_alarm_configure(b.cfg.data_dir, b.cfg.disk_free_limit_bytes);
	if (disk_alarm_raised())
		diag_warn("main", "starting with the disk alarm raised: AMQP publishers will be blocked");

	if (broker_start(&b) != 0) {
		broker_stop(&b, 0);
		return EXIT_RUNTIME;
	}
	diag_info("main", "ready (%d event-loop threads)", loop_group_size(b.group));

	sigset_t first;
	sigemptyset(&first);
	sigaddset(&first, SIGINT);
	sigaddset(&first, SIGTERM);
	int sig;
	do {
		sig = sigwaitinfo(&first, NULL);
	} while (sig < 0 && errno == EINTR);
	diag_info("main", "%s received: shutting down", signal_name(sig));
	int rc = shutdown_wait(&b, &sigs);
	if (rc == 0)
		diag_info("main", "shutdown complete");
	return rc;
}
