/*
 * test_config.c: the settings table and the configuration file parser.
 *
 * Covers the embedded defaults, every key set at and just past its bounds,
 * the syntax of integers, enums and strings, files with comments, blank lines,
 * quotes and CRLF, each class of file error with its exact "FILE:LINE: " prefix,
 * config_dump read back by config_load_file, and that docs/configuration.md and
 * etc/sluice.conf (found from this file's path) agree with the table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/diag.h"
#include "core/err.h"

#define MS_MAX INT64_C(3153600000000)
#define I32_MAX INT64_C(2147483647)

/* What the tests expect of each integer key; independent of config.c's table. */
struct int_key {
	const char *key;
	size_t offset;
	size_t width;
	int64_t min, max, def;
};

#define IK(k, f, lo, hi, d) \
	{ k, offsetof(struct config, f), sizeof(((struct config *)0)->f), lo, hi, d }

static const struct int_key int_keys[] = {
	IK("port.kafka", port_kafka, 0, 65535, 9092),
	IK("port.amqp", port_amqp, 0, 65535, 5672),
	IK("port.http", port_http, 0, 65535, 9600),
	IK("threads", threads, 0, 256, 0),
	IK("log.flush.interval.ms", log_flush_interval_ms, 1, 3600000, 1000),
	IK("log.segment.bytes", log_segment_bytes, 1024, I32_MAX, 1073741824),
	IK("log.segment.ms", log_segment_ms, 1, MS_MAX, 604800000),
	IK("log.index.interval.bytes", log_index_interval_bytes, 0, I32_MAX, 4096),
	IK("log.retention.ms", log_retention_ms, -1, MS_MAX, 604800000),
	IK("log.retention.bytes", log_retention_bytes, -1, INT64_MAX, -1),
	IK("log.retention.check.interval.ms", log_retention_check_interval_ms, 1, 86400000,
	   300000),
	IK("queue.segment.bytes", queue_segment_bytes, 1024, I32_MAX, 67108864),
	IK("message.max.bytes", message_max_bytes, 1024, I32_MAX, 1048588),
	IK("socket.request.max.bytes", socket_request_max_bytes, 1024, I32_MAX, 104857600),
	IK("conn.output.max.bytes", conn_output_max_bytes, 65536, INT64_C(1099511627776),
	   67108864),
	IK("num.partitions", num_partitions, 1, 10000, 1),
	IK("max.connections", max_connections, 1, 1048576, 10000),
	IK("shutdown.timeout.ms", shutdown_timeout_ms, 0, 3600000, 10000),
	IK("memory.high.watermark.bytes", memory_high_watermark_bytes, 0, INT64_MAX,
	   1073741824),
};
#define N_INT_KEYS (sizeof int_keys / sizeof int_keys[0])
/* 18 integer keys + 2 strings + 3 enums. */
#define N_KEYS 28

static int64_t get_int(const struct config *cfg, const struct int_key *k)
{
	const char *p = (const char *)cfg + k->offset;
	if (k->width == sizeof(int)) {
		int v;
		memcpy(&v, p, sizeof v);
		return v;
	}
	int64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

/* ---- temp files ---- */

static char tmpdir[64];

static int setup_dir(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/sluice-test-config-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes len bytes to a file named name in tmpdir; returns its path (static). */
static const char *write_file_n(const char *name, const void *data, size_t len)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

static const char *write_file(const char *name, const char *text)
{
	return write_file_n(name, text, strlen(text));
}

/* Dumps cfg into a malloc'd string. */
static char *dump_string(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	config_dump(cfg, f);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void assert_same_config(const struct config *a, const struct config *b)
{
	assert_string_equal(a->data_dir, b->data_dir);
	assert_string_equal(a->listen_host, b->listen_host);
	assert_int_equal(a->log_level, b->log_level);
	assert_int_equal(a->log_flush, b->log_flush);
	for (size_t i = 0; i < N_INT_KEYS; i++)
		if (get_int(a, &int_keys[i]) != get_int(b, &int_keys[i]))
			fail_msg("%s: %" PRId64 " != %" PRId64, int_keys[i].key,
				 get_int(a, &int_keys[i]), get_int(b, &int_keys[i]));
	assert_memory_equal(a, b, sizeof *a);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
	(void)state;
	struct config cfg;
	memset(&cfg, 0xa5, sizeof cfg);
	config_defaults(&cfg);
	assert_string_equal(cfg.data_dir, "./data");
	assert_string_equal(cfg.listen_host, "127.0.0.1");
	assert_int_equal(cfg.port_kafka, 9092);
	assert_int_equal(cfg.port_amqp, 5672);
	assert_int_equal(cfg.port_http, 9600);
	assert_int_equal(cfg.threads, 0);
	assert_int_equal(cfg.log_level, DIAG_INFO);
	assert_int_equal(cfg.log_flush, CONFIG_FLUSH_BATCH);
	assert_int_equal(cfg.log_flush_interval_ms, 1000);
	assert_int_equal(cfg.log_segment_bytes, 1073741824);
	assert_int_equal(cfg.log_segment_ms, 604800000);
	assert_int_equal(cfg.log_index_interval_bytes, 4096);
	assert_int_equal(cfg.log_retention_ms, 604800000);
	assert_int_equal(cfg.log_retention_bytes, -1);
	assert_int_equal(cfg.log_retention_check_interval_ms, 300000);
	assert_int_equal(cfg.message_max_bytes, 1048588);
	assert_int_equal(cfg.socket_request_max_bytes, 104857600);
	assert_int_equal(cfg.conn_output_max_bytes, 67108864);
	assert_int_equal(cfg.max_connections, 10000);
	assert_int_equal(cfg.shutdown_timeout_ms, 10000);
	assert_int_equal(cfg.memory_high_watermark_bytes, INT64_C(1073741824));
	for (size_t i = 0; i < N_INT_KEYS; i++)
		assert_int_equal(get_int(&cfg, &int_keys[i]), int_keys[i].def);

	/* Defaults are deterministic to the byte (string tails zeroed). */
	struct config again;
	memset(&again, 0x5a, sizeof again);
	config_defaults(&again);
	assert_memory_equal(&cfg, &again, sizeof cfg);
}

static void test_dump_lists_every_key_once(void **state)
{
	(void)state;
	struct config cfg;
	config_defaults(&cfg);
	char *text = dump_string(&cfg);
	int lines = 0;
	for (char *p = text; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, N_KEYS);
	assert_non_null(strstr(text, "data.dir = ./data\n"));
	assert_non_null(strstr(text, "listen.host = 127.0.0.1\n"));
	assert_non_null(strstr(text, "log.level = info\n"));
	assert_non_null(strstr(text, "log.flush = batch\n"));
	for (size_t i = 0; i < N_INT_KEYS; i++) {
		char want[128];
		snprintf(want, sizeof want, "\n%s = %" PRId64 "\n", int_keys[i].key,
			 int_keys[i].def);
		if (strstr(text, want) == NULL)
			fail_msg("dump lacks %s", want + 1);
	}
	free(text);
}

/* ---- integers ---- */

/* Sets key to text; asserts it is accepted and reads back as want. */
static void set_ok(const struct int_key *k, const char *text, int64_t want)
{
	struct config cfg;
	config_defaults(&cfg);
	char err[256] = "";
	int rc = config_set(&cfg, k->key, text, err, sizeof err);
	if (rc != 0)
		fail_msg("%s = \"%s\" rejected: %s", k->key, text, err);
	if (get_int(&cfg, k) != want)
		fail_msg("%s = \"%s\" read back %" PRId64, k->key, text, get_int(&cfg, k));
}

/* Sets key to text; asserts -ERR_INVALID, no change, and a message naming the
 * key and the accepted range. */
static void set_bad(const struct int_key *k, const char *text)
{
	struct config cfg, before;
	config_defaults(&cfg);
	before = cfg;
	char err[256] = "";
	int rc = config_set(&cfg, k->key, text, err, sizeof err);
	if (rc != -ERR_INVALID)
		fail_msg("%s = \"%s\" gave %d, want -ERR_INVALID", k->key, text, rc);
	assert_memory_equal(&cfg, &before, sizeof cfg);
	char range[96];
	if (k->min == -1)
		snprintf(range, sizeof range, "-1 or 0..%" PRId64, k->max);
	else
		snprintf(range, sizeof range, "%" PRId64 "..%" PRId64, k->min, k->max);
	char prefix[96];
	snprintf(prefix, sizeof prefix, "%s: ", k->key);
	if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, range) == NULL)
		fail_msg("%s = \"%s\": message \"%s\" lacks key or range %s", k->key, text, err,
			 range);
}

static void test_int_bounds(void **state)
{
	(void)state;
	char buf[64];
	for (size_t i = 0; i < N_INT_KEYS; i++) {
		const struct int_key *k = &int_keys[i];
		snprintf(buf, sizeof buf, "%" PRId64, k->min);
		set_ok(k, buf, k->min);
		snprintf(buf, sizeof buf, "%" PRId64, k->max);
		set_ok(k, buf, k->max);
		snprintf(buf, sizeof buf, "%" PRId64, k->def);
		set_ok(k, buf, k->def);
		if (k->min == -1) {
			set_ok(k, "0", 0);
			set_bad(k, "-2");
		} else {
			snprintf(buf, sizeof buf, "%" PRId64, k->min - 1);
			set_bad(k, buf);
			set_bad(k, "-1");
			set_bad(k, "-0"); /* a '-' only where -1 is allowed */
		}
		if (k->max < INT64_MAX) {
			snprintf(buf, sizeof buf, "%" PRId64, k->max + 1);
			set_bad(k, buf);
		}
		/* Leading zeros are decimal, not octal. */
		snprintf(buf, sizeof buf, "00%" PRId64, k->max);
		set_ok(k, buf, k->max);
	}
}

static void test_int_syntax(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", " ", "-", "+1", "1 ", " 1", "1x", "x1", "0x10", "1e3", "1.0", "1,000",
		"1k", "10MB", "--1", "1-", "9223372036854775808", "-9223372036854775809",
		"99999999999999999999999999", "99999999999999999999999999x", "١",
	};
	for (size_t i = 0; i < N_INT_KEYS; i++)
		for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++)
			set_bad(&int_keys[i], bad[j]);

	/* Messages tell out of range from not a number. */
	struct config cfg;
	config_defaults(&cfg);
	char err[256];
	assert_int_equal(config_set(&cfg, "port.kafka", "65536", err, sizeof err), -ERR_INVALID);
	assert_string_equal(err,
			    "port.kafka: \"65536\" is out of range, expected an integer in 0..65535");
	assert_int_equal(config_set(&cfg, "port.kafka", "80x", err, sizeof err), -ERR_INVALID);
	assert_string_equal(
		err, "port.kafka: \"80x\" is not a decimal integer, expected an integer in 0..65535");
	assert_int_equal(config_set(&cfg, "log.retention.bytes", "-2", err, sizeof err),
			 -ERR_INVALID);
	assert_string_equal(err, "log.retention.bytes: \"-2\" is out of range, expected an "
				 "integer in -1 or 0..9223372036854775807");
	/* int64 extremes exactly. */
	assert_int_equal(config_set(&cfg, "log.retention.bytes", "9223372036854775807", err,
				    sizeof err), 0);
	assert_true(cfg.log_retention_bytes == INT64_MAX);
	/* A long bad value is cut in the message. */
	char longv[300];
	memset(longv, '7', sizeof longv - 1);
	longv[sizeof longv - 1] = '\0';
	assert_int_equal(config_set(&cfg, "threads", longv, err, sizeof err), -ERR_INVALID);
	assert_non_null(strstr(err, "...\" is out of range"));
	assert_true(strlen(err) < 200);
}

/* memory.high.watermark.bytes: bytes, 0 disables, no suffixes, from a file too. */
static void test_memory_watermark(void **state)
{
	(void)state;
	struct config cfg;
	config_defaults(&cfg);
	char err[256];
	assert_true(cfg.memory_high_watermark_bytes == INT64_C(1073741824));
	assert_int_equal(config_set(&cfg, "memory.high.watermark.bytes", "0", err, sizeof err), 0);
	assert_true(cfg.memory_high_watermark_bytes == 0);
	assert_int_equal(config_set(&cfg, "memory.high.watermark.bytes", "2097152", err,
				    sizeof err), 0);
	assert_true(cfg.memory_high_watermark_bytes == 2097152);
	assert_int_equal(config_set(&cfg, "memory.high.watermark.bytes", "-1", err, sizeof err),
			 -ERR_INVALID);
	assert_string_equal(err, "memory.high.watermark.bytes: \"-1\" is out of range, expected "
				 "an integer in 0..9223372036854775807");
	assert_int_equal(config_set(&cfg, "memory.high.watermark.bytes", "1GiB", err, sizeof err),
			 -ERR_INVALID);
	assert_int_equal(config_set(&cfg, "memory.high_watermark", "1", err, sizeof err),
			 -ERR_NOT_FOUND);
	assert_true(cfg.memory_high_watermark_bytes == 2097152);

	const char *path = write_file("watermark.conf",
				      "# small watermark for a test\n"
				      "memory.high.watermark.bytes = 4194304   # 4 MiB\n");
	config_defaults(&cfg);
	err[0] = '\0';
	if (config_load_file(&cfg, path, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_true(cfg.memory_high_watermark_bytes == 4194304);
	path = write_file("watermark-bad.conf", "memory.high.watermark.bytes = 1.5\n");
	assert_int_equal(config_load_file(&cfg, path, err, sizeof err), -ERR_INVALID);
	assert_non_null(strstr(err, "watermark-bad.conf:1: memory.high.watermark.bytes: \"1.5\" "
				    "is not a decimal integer"));
}

/* ---- enums ---- */

static void test_enums(void **state)
{
	(void)state;
	struct config cfg;
	config_defaults(&cfg);
	char err[256];
	static const char *const levels[] = { "debug", "info", "warn", "error" };
	for (int i = 0; i < 4; i++) {
		assert_int_equal(config_set(&cfg, "log.level", levels[i], err, sizeof err), 0);
		enum diag_level want;
		assert_int_equal(diag_level_parse(levels[i], &want), 0);
		assert_int_equal(cfg.log_level, (int)want);
	}
	struct {
		const char *name;
		enum config_flush v;
	} flushes[] = {
		{ "batch", CONFIG_FLUSH_BATCH },
		{ "interval", CONFIG_FLUSH_INTERVAL },
		{ "os", CONFIG_FLUSH_OS },
	};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(config_set(&cfg, "log.flush", flushes[i].name, err, sizeof err), 0);
		assert_int_equal(cfg.log_flush, flushes[i].v);
	}

	static const char *const bad[] = { "", "INFO", "Info", " info", "info ", "warning",
					   "1", "0", "fatal", "infox" };
	config_defaults(&cfg);
	struct config before = cfg;
	for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
		assert_int_equal(config_set(&cfg, "log.level", bad[j], err, sizeof err),
				 -ERR_INVALID);
		assert_non_null(strstr(err, "log.level: "));
		assert_non_null(strstr(err, "is not one of debug|info|warn|error"));
		assert_int_equal(config_set(&cfg, "log.flush", bad[j], err, sizeof err),
				 -ERR_INVALID);
		assert_non_null(strstr(err, "log.flush: "));
		assert_non_null(strstr(err, "is not one of batch|interval|os"));
	}
	assert_memory_equal(&cfg, &before, sizeof cfg);
}

/* ---- strings ---- */

static void test_strings(void **state)
{
	(void)state;
	struct config cfg;
	config_defaults(&cfg);
	char err[256];
	assert_int_equal(config_set(&cfg, "data.dir", "/var/lib/sluice", err, sizeof err), 0);
	assert_string_equal(cfg.data_dir, "/var/lib/sluice");
	assert_int_equal(config_set(&cfg, "listen.host", "::", err, sizeof err), 0);
	assert_string_equal(cfg.listen_host, "::");
	/* Spaces, '#' and quotes are plain bytes to config_set. */
	assert_int_equal(config_set(&cfg, "data.dir", " a #b \"c\" \\d ", err, sizeof err), 0);
	assert_string_equal(cfg.data_dir, " a #b \"c\" \\d ");

	/* Longest that fits, and one more. */
	char big[sizeof cfg.data_dir + 1];
	memset(big, 'd', sizeof big);
	big[sizeof cfg.data_dir - 1] = '\0';
	assert_int_equal(config_set(&cfg, "data.dir", big, err, sizeof err), 0);
	assert_int_equal(strlen(cfg.data_dir), sizeof cfg.data_dir - 1);
	big[sizeof cfg.data_dir - 1] = 'd';
	big[sizeof cfg.data_dir] = '\0';
	assert_int_equal(config_set(&cfg, "data.dir", big, err, sizeof err), -ERR_INVALID);
	assert_string_equal(err, "data.dir: value is 4096 bytes, longer than the maximum 4095");

	char host[sizeof cfg.listen_host + 1];
	memset(host, 'h', sizeof host);
	host[sizeof cfg.listen_host - 1] = '\0';
	assert_int_equal(config_set(&cfg, "listen.host", host, err, sizeof err), 0);
	host[sizeof cfg.listen_host - 1] = 'h';
	host[sizeof cfg.listen_host] = '\0';
	assert_int_equal(config_set(&cfg, "listen.host", host, err, sizeof err), -ERR_INVALID);
	assert_non_null(strstr(err, "listen.host: "));
	assert_non_null(strstr(err, "maximum 255"));

	/* A shorter value leaves no trace of the longer one. */
	assert_int_equal(config_set(&cfg, "data.dir", "x", err, sizeof err), 0);
	for (size_t i = 1; i < sizeof cfg.data_dir; i++)
		if (cfg.data_dir[i] != '\0')
			fail_msg("data_dir[%zu] not zeroed", i);

	config_defaults(&cfg);
	struct config before = cfg;
	assert_int_equal(config_set(&cfg, "data.dir", "", err, sizeof err), -ERR_INVALID);
	assert_string_equal(err, "data.dir: must not be empty");
	assert_int_equal(config_set(&cfg, "listen.host", "", err, sizeof err), -ERR_INVALID);
	assert_int_equal(config_set(&cfg, "data.dir", "a\nb", err, sizeof err), -ERR_INVALID);
	assert_string_equal(err, "data.dir: control character 0x0a at byte 1");
	assert_int_equal(config_set(&cfg, "data.dir", "a\tb", err, sizeof err), -ERR_INVALID);
	assert_int_equal(config_set(&cfg, "listen.host", "\x7f", err, sizeof err), -ERR_INVALID);
	assert_memory_equal(&cfg, &before, sizeof cfg);
}

/* ---- config_set, general ---- */

static void test_set_unknown_and_null(void **state)
{
	(void)state;
	struct config cfg, before;
	config_defaults(&cfg);
	before = cfg;
	char err[256];
	assert_int_equal(config_set(&cfg, "port.kafak", "1", err, sizeof err), -ERR_NOT_FOUND);
	/* From the command line there is no file or line to name. */
	assert_string_equal(err, "unknown key \"port.kafak\"");
	assert_int_equal(config_set(&cfg, "", "1", err, sizeof err), -ERR_NOT_FOUND);
	assert_int_equal(config_set(&cfg, "PORT.KAFKA", "1", err, sizeof err), -ERR_NOT_FOUND);
	assert_int_equal(config_set(&cfg, " port.kafka", "1", err, sizeof err), -ERR_NOT_FOUND);
	assert_int_equal(config_set(&cfg, "port.kafka", NULL, err, sizeof err), -ERR_INVALID);
	assert_int_equal(config_set(&cfg, NULL, "1", err, sizeof err), -ERR_INVALID);
	/* errbuf is optional, and a tiny one is cut, never overrun. */
	assert_int_equal(config_set(&cfg, "nope", "1", NULL, 0), -ERR_NOT_FOUND);
	assert_int_equal(config_set(&cfg, "port.kafka", "x", NULL, 0), -ERR_INVALID);
	char tiny[8];
	memset(tiny, 'z', sizeof tiny);
	assert_int_equal(config_set(&cfg, "port.kafka", "x", tiny, 5), -ERR_INVALID);
	assert_string_equal(tiny, "port");
	assert_int_equal(tiny[5], 'z');
	assert_memory_equal(&cfg, &before, sizeof cfg);
}

/* ---- files ---- */

static void test_file_syntax(void **state)
{
	(void)state;
	const char *path = write_file("good.conf",
		"\xef\xbb\xbf# Sluice test configuration\n"
		"\n"
		"   \t\n"
		"   # indented comment\n"
		"data.dir=/srv/sluice\n"
		"  listen.host   =\t0.0.0.0  \n"
		"port.kafka = 19092 # trailing comment\n"
		"port.amqp = 15672\t# tab before comment\n"
		"port.http = 0\n"
		"threads = \"4\"\n"
		"log.level = debug\r\n"
		"log.flush = interval   \r\n"
		"log.flush.interval.ms = 250\n"
		"log.segment.bytes = 1048576\n"
		"log.retention.ms = -1\n"
		"log.retention.bytes = 10737418240\n"
		"max.connections = 5 # first\n"
		"max.connections = 7 # duplicate: last wins\n"
		"shutdown.timeout.ms = 0"); /* no final newline */
	struct config cfg;
	config_defaults(&cfg);
	char err[512] = "";
	int rc = config_load_file(&cfg, path, err, sizeof err);
	if (rc != 0)
		fail_msg("load failed: %d %s", rc, err);
	assert_string_equal(cfg.data_dir, "/srv/sluice");
	assert_string_equal(cfg.listen_host, "0.0.0.0");
	assert_int_equal(cfg.port_kafka, 19092);
	assert_int_equal(cfg.port_amqp, 15672);
	assert_int_equal(cfg.port_http, 0);
	assert_int_equal(cfg.threads, 4);
	assert_int_equal(cfg.log_level, DIAG_DEBUG);
	assert_int_equal(cfg.log_flush, CONFIG_FLUSH_INTERVAL);
	assert_int_equal(cfg.log_flush_interval_ms, 250);
	assert_int_equal(cfg.log_segment_bytes, 1048576);
	assert_int_equal(cfg.log_retention_ms, -1);
	assert_true(cfg.log_retention_bytes == INT64_C(10737418240));
	assert_int_equal(cfg.max_connections, 7);
	assert_int_equal(cfg.shutdown_timeout_ms, 0);
	/* Keys not in the file keep their defaults. */
	assert_int_equal(cfg.message_max_bytes, 1048588);
	assert_int_equal(cfg.log_segment_ms, 604800000);
}

static void test_file_quotes_and_hashes(void **state)
{
	(void)state;
	const char *path = write_file("quotes.conf",
		"data.dir = \"/path with spaces/ # not a comment\"   # a comment\n"
		"listen.host = \"  \\\"q\\\" \\\\ \"\n");
	struct config cfg;
	config_defaults(&cfg);
	char err[512] = "";
	assert_int_equal(config_load_file(&cfg, path, err, sizeof err), 0);
	assert_string_equal(cfg.data_dir, "/path with spaces/ # not a comment");
	assert_string_equal(cfg.listen_host, "  \"q\" \\ ");

	/* Unquoted, '#' is a comment only at the start of the value or after a blank;
	 * quotes and backslashes inside an unquoted value are literal. */
	path = write_file("hash.conf",
		"data.dir = /a#b/c\"d\\e # comment\n"
		"listen.host = host#1\n");
	config_defaults(&cfg);
	assert_int_equal(config_load_file(&cfg, path, err, sizeof err), 0);
	assert_string_equal(cfg.data_dir, "/a#b/c\"d\\e");
	assert_string_equal(cfg.listen_host, "host#1");

	/* '=' inside a value belongs to the value. */
	path = write_file("eq.conf", "data.dir = /x=y\n");
	assert_int_equal(config_load_file(&cfg, path, err, sizeof err), 0);
	assert_string_equal(cfg.data_dir, "/x=y");

	/* An empty file and a comments-only file change nothing. */
	struct config def;
	config_defaults(&def);
	config_defaults(&cfg);
	path = write_file("empty.conf", "");
	assert_int_equal(config_load_file(&cfg, path, err, sizeof err), 0);
	path = write_file("comments.conf", "# a\n\n#b = c\n  # port.kafka = x\n");
	assert_int_equal(config_load_file(&cfg, path, err, sizeof err), 0);
	assert_memory_equal(&cfg, &def, sizeof cfg);
}

/* Loads text from a file and asserts the error code and the exact message. */
static void load_fails(const char *name, const void *text, size_t len, int want_rc,
		       const char *want_tail)
{
	const char *path = write_file_n(name, text, len);
	char want[512];
	if (want_rc == 0)
		want[0] = '\0'; /* success leaves errbuf alone */
	else
		snprintf(want, sizeof want, "%s%s", path, want_tail);
	struct config cfg;
	config_defaults(&cfg);
	char err[512] = "";
	int rc = config_load_file(&cfg, path, err, sizeof err);
	if (rc != want_rc || strcmp(err, want) != 0)
		fail_msg("%s: got %d \"%s\", want %d \"%s\"", name, rc, err, want_rc, want);
}

#define LOAD_FAILS(name, text, rc, tail) load_fails(name, text, sizeof(text) - 1, rc, tail)

static void test_file_errors(void **state)
{
	(void)state;
	LOAD_FAILS("unknown.conf", "# ok\nport.kafka = 1\nport.kafak = 2\n", -ERR_NOT_FOUND,
		   ":3: unknown key \"port.kafak\"");
	LOAD_FAILS("noeq.conf", "\n\nport.kafka 9092\n", -ERR_MALFORMED,
		   ":3: missing '=' (expected \"key = value\")");
	LOAD_FAILS("nokey.conf", "  = 5\n", -ERR_MALFORMED, ":1: missing key before '='");
	LOAD_FAILS("range.conf", "port.http = 9600\nport.http = 65536\n", -ERR_INVALID,
		   ":2: port.http: \"65536\" is out of range, expected an integer in 0..65535");
	LOAD_FAILS("notnum.conf", "threads = four # comment\n", -ERR_INVALID,
		   ":1: threads: \"four\" is not a decimal integer, expected an integer in 0..256");
	LOAD_FAILS("enum.conf", "\nlog.flush = always\n", -ERR_INVALID,
		   ":2: log.flush: \"always\" is not one of batch|interval|os");
	LOAD_FAILS("emptyval.conf", "data.dir =\n", -ERR_INVALID, ":1: data.dir: must not be empty");
	LOAD_FAILS("emptyq.conf", "data.dir = \"\"\n", -ERR_INVALID,
		   ":1: data.dir: must not be empty");
	LOAD_FAILS("hashval.conf", "threads = # nothing\n", -ERR_INVALID,
		   ":1: threads: \"\" is not a decimal integer, expected an integer in 0..256");
	LOAD_FAILS("unterminated.conf", "data.dir = \"/x\n", -ERR_MALFORMED,
		   ":1: data.dir: unterminated quoted value");
	LOAD_FAILS("space.conf", "# x\nlog level = info\n", -ERR_NOT_FOUND,
		   ":2: unknown key \"log level\"");
	LOAD_FAILS("afterq.conf", "data.dir = \"/x\" y\n", -ERR_MALFORMED,
		   ":1: data.dir: unexpected text after the closing quote");
	LOAD_FAILS("escape.conf", "data.dir = \"/x\\n\"\n", -ERR_MALFORMED,
		   ":1: data.dir: bad escape in quoted value (only \\\" and \\\\)");
	LOAD_FAILS("nul.conf", "port.kafka = 1\nport.amqp = 2\0\n", -ERR_MALFORMED,
		   ":2: NUL byte in line");
	LOAD_FAILS("lastline.conf", "port.kafka = 1\nport.amqp = x", -ERR_INVALID,
		   ":2: port.amqp: \"x\" is not a decimal integer, expected an integer in 0..65535");

	/* A line of exactly 16384 bytes is fine; one more byte is not. */
	size_t n = 16384 + 64;
	char *text = malloc(n);
	assert_non_null(text);
	memcpy(text, "port.kafka = 1\n", 15);
	memset(text + 15, '#', 16384);
	text[15 + 16384] = '\n';
	load_fails("max.conf", text, 15 + 16384 + 1, 0, "");
	text[15 + 16384] = '#';
	text[15 + 16385] = '\n';
	load_fails("long.conf", text, 15 + 16385 + 1, -ERR_MALFORMED,
		   ":2: line longer than 16384 bytes");
	free(text);

	/* Missing, a directory, unreadable: negative errno, "PATH: reason". */
	struct config cfg;
	config_defaults(&cfg);
	char err[512], want[512];
	char path[256];
	snprintf(path, sizeof path, "%s/missing.conf", tmpdir);
	assert_int_equal(config_load_file(&cfg, path, err, sizeof err), -ENOENT);
	snprintf(want, sizeof want, "%s: cannot open: %s", path, strerror(ENOENT));
	assert_string_equal(err, want);

	assert_int_equal(config_load_file(&cfg, tmpdir, err, sizeof err), -EISDIR);
	snprintf(want, sizeof want, "%s:1: read error: %s", tmpdir, strerror(EISDIR));
	assert_string_equal(err, want);

	if (geteuid() != 0) { /* root reads anything */
		const char *p = write_file("noperm.conf", "threads = 1\n");
		assert_int_equal(chmod(p, 0), 0);
		assert_int_equal(config_load_file(&cfg, p, err, sizeof err), -EACCES);
	}
}

/* ---- round trip ---- */

/* Dumps cfg to a file, loads it over fresh defaults, and asserts equality. */
static void round_trip(const struct config *cfg)
{
	char *text = dump_string(cfg);
	const char *path = write_file("dump.conf", text);
	struct config back;
	config_defaults(&back);
	char err[512] = "";
	int rc = config_load_file(&back, path, err, sizeof err);
	if (rc != 0)
		fail_msg("reloading the dump failed: %s\n%s", err, text);
	assert_same_config(cfg, &back);
	char *again = dump_string(&back);
	assert_string_equal(text, again);
	free(again);
	free(text);
}

static void test_dump_round_trip(void **state)
{
	(void)state;
	struct config cfg;
	config_defaults(&cfg);
	round_trip(&cfg);

	/* Every key off its default, at its minimum, then at its maximum. */
	char err[256], buf[64];
	for (int pass = 0; pass < 2; pass++) {
		config_defaults(&cfg);
		for (size_t i = 0; i < N_INT_KEYS; i++) {
			snprintf(buf, sizeof buf, "%" PRId64,
				 pass ? int_keys[i].max : int_keys[i].min);
			assert_int_equal(config_set(&cfg, int_keys[i].key, buf, err, sizeof err), 0);
		}
		assert_int_equal(config_set(&cfg, "log.level", pass ? "error" : "debug", err,
					    sizeof err), 0);
		assert_int_equal(config_set(&cfg, "log.flush", pass ? "os" : "interval", err,
					    sizeof err), 0);
		round_trip(&cfg);
	}

	/* Strings that need quoting and escaping. */
	static const char *const tricky[] = {
		" leading", "trailing ", "a # b", "#first", "\"quoted\"", "back\\slash\\",
		"a\"b", "x #", "\\\"", "=", "a = b", "\xc3\xa9t\xc3\xa9",
	};
	for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
		config_defaults(&cfg);
		assert_int_equal(config_set(&cfg, "data.dir", tricky[i], err, sizeof err), 0);
		assert_int_equal(config_set(&cfg, "listen.host", tricky[i], err, sizeof err), 0);
		round_trip(&cfg);
	}

	/* The longest data.dir, all quotes: the longest line a dump can write. */
	config_defaults(&cfg);
	char big[sizeof cfg.data_dir];
	memset(big, '"', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(config_set(&cfg, "data.dir", big, err, sizeof err), 0);
	round_trip(&cfg);
}

/* ---- docs/configuration.md and etc/sluice.conf ---- */

/* Returns source-root-relative path rel as a path from this file's location. */
static const char *source_path(const char *rel)
{
	static char path[1024];
	const char *file = __FILE__; /* .../tests/unit/test_config.c */
	const char *cut = strstr(file, "tests/unit/test_config.c");
	assert_non_null(cut);
	snprintf(path, sizeof path, "%.*s%s", (int)(cut - file), file, rel);
	return path;
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Every key of the dump has a row "| `key` | type | `default` | ..." in the docs. */
static void test_docs_match_table(void **state)
{
	(void)state;
	char *doc = read_all(source_path("docs/configuration.md"));
	struct config cfg;
	config_defaults(&cfg);
	char *text = dump_string(&cfg);
	int rows = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char key[64], value[256];
		assert_int_equal(sscanf(line, "%63s = %255[^\n]", key, value), 2);
		char head[96];
		snprintf(head, sizeof head, "\n| `%s` |", key);
		char *row = strstr(doc, head);
		if (row == NULL)
			fail_msg("docs/configuration.md has no row for %s", key);
		char *end = row ? strchr(row + 1, '\n') : NULL;
		assert_non_null(end);
		char cell[300];
		snprintf(cell, sizeof cell, "| `%s` |", value);
		char *hit = strstr(row + strlen(head), cell);
		if (hit == NULL || hit > end)
			fail_msg("docs row for %s lacks default %s", key, cell);
		for (size_t i = 0; i < N_INT_KEYS; i++) {
			if (strcmp(int_keys[i].key, key) != 0)
				continue;
			char range[96];
			if (int_keys[i].min == -1)
				snprintf(range, sizeof range, "| `-1` or `0..%" PRId64 "` |",
					 int_keys[i].max);
			else
				snprintf(range, sizeof range, "| `%" PRId64 "..%" PRId64 "` |",
					 int_keys[i].min, int_keys[i].max);
			hit = strstr(row + strlen(head), range);
			if (hit == NULL || hit > end)
				fail_msg("docs row for %s lacks range %s", key, range);
		}
		rows++;
	}
	assert_int_equal(rows, N_KEYS);
	free(text);
	free(doc);
}

/* Whether line starts "# key = " with a lowercase dotted key: a setting left
 * commented out, not prose. */
static int is_commented_setting(const char *line)
{
	if (strncmp(line, "# ", 2) != 0)
		return 0;
	const char *p = line + 2;
	while ((*p >= 'a' && *p <= 'z') || *p == '.')
		p++;
	return p > line + 2 && strncmp(p, " = ", 3) == 0;
}

/* etc/sluice.conf loads to the defaults, and so does it with every commented
 * "# key = value" line uncommented. */
static void test_example_file(void **state)
{
	(void)state;
	const char *path = source_path("etc/sluice.conf");
	struct config def, cfg;
	config_defaults(&def);
	config_defaults(&cfg);
	char err[512] = "";
	if (config_load_file(&cfg, path, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_memory_equal(&cfg, &def, sizeof cfg);

	char *text = read_all(path);
	char *out = malloc(strlen(text) + 1);
	assert_non_null(out);
	size_t o = 0;
	int uncommented = 0;
	for (char *line = text; *line;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
		if (is_commented_setting(line)) {
			memcpy(out + o, line + 2, len - 2);
			o += len - 2;
			uncommented++;
		} else {
			memcpy(out + o, line, len);
			o += len;
		}
		line += len;
	}
	out[o] = '\0';
	const char *p2 = write_file("uncommented.conf", out);
	config_defaults(&cfg);
	if (config_load_file(&cfg, p2, err, sizeof err) != 0)
		fail_msg("uncommented example: %s", err);
	assert_memory_equal(&cfg, &def, sizeof cfg);
	assert_int_equal(uncommented, N_KEYS);
	free(out);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_dump_lists_every_key_once),
		cmocka_unit_test(test_int_bounds),
		cmocka_unit_test(test_int_syntax),
		cmocka_unit_test(test_memory_watermark),
		cmocka_unit_test(test_enums),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_set_unknown_and_null),
		cmocka_unit_test(test_file_syntax),
		cmocka_unit_test(test_file_quotes_and_hashes),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_dump_round_trip),
		cmocka_unit_test(test_docs_match_table),
		cmocka_unit_test(test_example_file),
	};
	return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
