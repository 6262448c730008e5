/*
 * config.h: Sluice's settings, their defaults, and the parser for the
 * "key = value" configuration file.
 *
 * Every key is listed in one table in config.c with its type, default, bounds
 * and a one-line description; docs/configuration.md documents the same keys.
 * Command-line flags are applied with config_set() after the file, so they
 * override it. Unknown keys and bad values are errors, reported with the file,
 * line and reason in errbuf.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* When an append counts as durable (key log.flush). */
enum config_flush {
	CONFIG_FLUSH_BATCH,    /* fsync after every batch, group-committed */
	CONFIG_FLUSH_INTERVAL, /* fsync every log.flush.interval.ms */
	CONFIG_FLUSH_OS,       /* leave write-back to the OS */
};

struct config {
	char data_dir[4096];          /* data.dir: where logs and the catalog live */
	char listen_host[256];        /* listen.host: address all listeners bind */
	char amqp_users[4096];        /* amqp.users: AMQP accounts, "name:password,..." */
	int port_kafka;               /* port.kafka: 0 disables */
	int port_amqp;                /* port.amqp: 0 disables */
	int port_http;                /* port.http: 0 disables */
	int threads;                  /* threads: event-loop threads, 0 = number of cores */
	int loop_coalesce_wait_us;    /* loop.coalesce.wait.us: wait before polling while streaming */
	int loop_coalesce_gap_us;     /* loop.coalesce.gap.us: input this close counts as streaming */
	int log_level;                /* log.level: enum diag_level */
	enum config_flush log_flush;  /* log.flush */
	int64_t log_flush_interval_ms;    /* log.flush.interval.ms */
	int64_t log_segment_bytes;        /* log.segment.bytes: roll a segment at this size */
	int64_t log_segment_ms;           /* log.segment.ms: roll a segment at this age */
	int64_t log_index_interval_bytes; /* log.index.interval.bytes: sparse index spacing */
	int64_t log_retention_ms;         /* log.retention.ms: -1 keeps forever */
	int64_t log_retention_bytes;      /* log.retention.bytes: per log, -1 no limit */
	int64_t log_retention_check_interval_ms; /* log.retention.check.interval.ms */
	int64_t queue_segment_bytes;      /* queue.segment.bytes: segment size of a queue's log */
	int64_t message_max_bytes;        /* message.max.bytes: largest record batch */
	int64_t socket_request_max_bytes; /* socket.request.max.bytes: largest request frame */
	int64_t conn_output_max_bytes;    /* conn.output.max.bytes: per-connection output buffer cap */
	int auto_create_topics;           /* auto.create.topics.enable: false|true (0|1) */
	int num_partitions;               /* num.partitions: partitions of auto-created topics */
	int64_t max_connections;          /* max.connections: accepted connections, all listeners */
	int64_t shutdown_timeout_ms;      /* shutdown.timeout.ms: in-flight work grace on SIGTERM */
	int64_t memory_high_watermark_bytes; /* memory.high.watermark.bytes: message bytes held in
					      * memory above which publishers are blocked; 0 disables */
	int64_t disk_free_limit_bytes;    /* disk.free.limit.bytes: free space of the data directory's
					   * filesystem below which publishers are blocked; 0 disables */
};

/* Fills cfg with the embedded defaults. */
void config_defaults(struct config *cfg);
/*
 * Sets one key from its text value. Returns 0, or -ERR_NOT_FOUND for an unknown
 * key / -ERR_INVALID for a bad value with the reason in errbuf.
 */
int config_set(struct config *cfg, const char *key, const char *value, char *errbuf, size_t errlen);
/*
 * Applies a "key = value" file ('#' comments, blank lines allowed). Returns 0 or
 * a negative code with "FILE:LINE: reason" in errbuf; cfg may be partly updated.
 */
int config_load_file(struct config *cfg, const char *path, char *errbuf, size_t errlen);
/* Writes every key and its current value, one "key = value" per line, to a stream. */
void config_dump(const struct config *cfg, FILE *out);

#endif
