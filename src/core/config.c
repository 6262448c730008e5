/*
 * config.c: the table of every setting, and the "key = value" file parser.
 *
 * One static table (keys[] below) lists each key with its type, the offset of
 * its field in struct config, its bounds, its default as text and a one-line
 * description. Everything else is driven by that table:
 *
 *   config_defaults  applies each default text through the same setter that
 *                    parses user input, so a default can never be out of range;
 *   config_set       finds the key and parses the value by its type;
 *   config_dump      prints each field back as text that config_set accepts.
 *
 * Types: a string field is a fixed char array (non-empty, no control
 * characters, shorter than the array); an integer field is an int or int64_t
 * (the width comes from sizeof the field) with an inclusive [min, max], written
 * in plain decimal with a '-' only where min is negative; an enum field is an
 * int-sized field holding the index of its name in a list.
 *
 * The file is read line by line into a bounded buffer, so a hostile file can
 * neither make us allocate nor overflow. See docs/configuration.md for the
 * syntax; it must list the same keys, defaults and ranges as the table.
 */
#include "core/config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/diag.h"
#include "core/err.h"

/* Longest line accepted in a file, in bytes, not counting the newline. Fits
 * the longest data.dir with every byte escaped, so config_dump round-trips. */
#define CONFIG_LINE_MAX 16384
/* Longest value quoted back in an error message. */
#define CONFIG_ECHO_MAX 64
/* 100 years in milliseconds: the cap of every age, so now + age cannot overflow. */
#define CONFIG_MS_MAX INT64_C(3153600000000)
/* Largest size a u32 file position can express. */
#define CONFIG_I32_MAX INT64_C(2147483647)

enum config_type {
	CONFIG_STRING, /* char array; size is its capacity including the NUL */
	CONFIG_INT,    /* int or int64_t by size, inclusive [min, max] */
	CONFIG_ENUM,   /* int-sized; value is an index into names */
};

struct config_key {
	const char *key;
	enum config_type type;
	size_t offset;             /* of the field in struct config */
	size_t size;               /* sizeof the field */
	int64_t min, max;          /* CONFIG_INT only */
	const char *const *names;  /* CONFIG_ENUM only; NULL-terminated */
	const char *def;           /* default, as text config_set accepts */
	const char *desc;          /* one line, for humans */
};

#define FIELD_SIZE(f) sizeof(((struct config *)0)->f)
#define STR(k, f, d, text) \
	{ k, CONFIG_STRING, offsetof(struct config, f), FIELD_SIZE(f), 0, 0, NULL, d, text }
#define INT(k, f, lo, hi, d, text) \
	{ k, CONFIG_INT, offsetof(struct config, f), FIELD_SIZE(f), lo, hi, NULL, d, text }
#define ENUM(k, f, n, d, text) \
	{ k, CONFIG_ENUM, offsetof(struct config, f), FIELD_SIZE(f), 0, 0, n, d, text }

_Static_assert(sizeof(enum config_flush) == sizeof(int), "enum fields are stored as int");

static const char *const level_names[] = {
	[DIAG_DEBUG] = "debug", [DIAG_INFO] = "info", [DIAG_WARN] = "warn",
	[DIAG_ERROR] = "error", NULL,
};

static const char *const flush_names[] = {
	[CONFIG_FLUSH_BATCH] = "batch", [CONFIG_FLUSH_INTERVAL] = "interval",
	[CONFIG_FLUSH_OS] = "os", NULL,
};

static const char *const bool_names[] = { "false", "true", NULL };

static const struct config_key keys[] = {
	STR("data.dir", data_dir, "./data",
	    "directory holding the logs and the catalog; created if missing"),
	STR("listen.host", listen_host, "127.0.0.1",
	    "address every listener binds (0.0.0.0 or :: for all interfaces)"),
	STR("amqp.users", amqp_users, "guest:guest",
	    "AMQP accounts as name:password, comma-separated (no comma in a password, no colon in a name)"),
	INT("port.kafka", port_kafka, 0, 65535, "9092", "Kafka listener port; 0 disables it"),
	INT("port.amqp", port_amqp, 0, 65535, "5672", "AMQP 0-9-1 listener port; 0 disables it"),
	INT("port.http", port_http, 0, 65535, "9600",
	    "HTTP admin API, metrics and dashboard port; 0 disables it"),
	INT("threads", threads, 0, 256, "0", "event-loop threads; 0 means one per CPU core"),
	INT("loop.coalesce.wait.us", loop_coalesce_wait_us, 0, 10000, "250",
	    "a loop reading a streaming client waits this long before polling again, on every other turn; 0 disables"),
	INT("loop.coalesce.gap.us", loop_coalesce_gap_us, 1, 10000, "50",
	    "input arriving less than this apart (twice in a row) counts as streaming"),
	ENUM("log.level", log_level, level_names, "info",
	     "lowest diagnostic level written to stderr"),
	ENUM("log.flush", log_flush, flush_names, "batch",
	     "when an append is durable: fsync per batch, every interval, or by the OS"),
	INT("log.flush.interval.ms", log_flush_interval_ms, 1, 3600000, "1000",
	    "fsync period when log.flush = interval"),
	INT("log.segment.bytes", log_segment_bytes, 1024, CONFIG_I32_MAX, "1073741824",
	    "roll to a new segment once the active one reaches this size"),
	INT("log.segment.ms", log_segment_ms, 1, CONFIG_MS_MAX, "604800000",
	    "roll to a new segment once the active one is this old"),
	INT("log.index.interval.bytes", log_index_interval_bytes, 0, CONFIG_I32_MAX, "4096",
	    "bytes of batches between offset-index entries; 0 indexes every batch"),
	INT("log.retention.ms", log_retention_ms, -1, CONFIG_MS_MAX, "604800000",
	    "delete a segment once its newest record is this old (the active one is rolled first); -1 keeps forever"),
	INT("log.retention.bytes", log_retention_bytes, -1, INT64_MAX, "-1",
	    "delete oldest segments while a log is larger than this; -1 means no limit"),
	INT("log.retention.check.interval.ms", log_retention_check_interval_ms, 1, 86400000,
	    "300000", "how often retention is checked"),
	INT("queue.segment.bytes", queue_segment_bytes, 1024, CONFIG_I32_MAX, "67108864",
	    "segment size of an AMQP queue's log; a segment's disk space is freed once all of it is acked"),
	INT("message.max.bytes", message_max_bytes, 1024, CONFIG_I32_MAX, "1048588",
	    "largest record batch accepted from a producer or publisher"),
	INT("socket.request.max.bytes", socket_request_max_bytes, 1024, CONFIG_I32_MAX,
	    "104857600", "largest request frame read from a client"),
	INT("conn.output.max.bytes", conn_output_max_bytes, 65536, INT64_C(1099511627776),
	    "67108864", "output buffered for one connection before reading from it pauses"),
	ENUM("auto.create.topics.enable", auto_create_topics, bool_names, "true",
	     "create a Kafka topic when a client asks for metadata of or produces to an unknown one"),
	INT("num.partitions", num_partitions, 1, 10000, "1",
	    "partitions of an automatically created Kafka topic"),
	INT("max.connections", max_connections, 1, 1048576, "10000",
	    "open client connections across all listeners; more are refused"),
	INT("shutdown.timeout.ms", shutdown_timeout_ms, 0, 3600000, "10000",
	    "on SIGTERM, how long in-flight work may finish before connections are cut"),
	INT("memory.high.watermark.bytes", memory_high_watermark_bytes, 0, INT64_MAX,
	    "1073741824", "bytes of messages held in memory above which AMQP publishers are blocked; 0 disables"),
	INT("disk.free.limit.bytes", disk_free_limit_bytes, 0, INT64_MAX, "50000000",
	    "free space on the data directory's filesystem below which AMQP publishers are blocked; 0 disables"),
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* Formats into errbuf if there is one. */
__attribute__((format(printf, 3, 4)))
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	if (errbuf == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* Copies value into out (size CONFIG_ECHO_MAX + 4) for an error message,
 * cut with "..." and with control characters shown as '?'. */
static void echo(const char *value, char *out)
{
	size_t i = 0;
	for (; value[i] != '\0' && i < CONFIG_ECHO_MAX; i++) {
		unsigned char c = (unsigned char)value[i];
		out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (value[i] != '\0') {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
}

static const struct config_key *find_key(const char *key)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].key, key) == 0)
			return &keys[i];
	return NULL;
}

/* Writes the accepted range of k ("0..65535", "-1 or 0..N") into out. */
static void range_text(const struct config_key *k, char *out, size_t outlen)
{
	if (k->min == -1)
		snprintf(out, outlen, "-1 or 0..%" PRId64, k->max);
	else
		snprintf(out, outlen, "%" PRId64 "..%" PRId64, k->min, k->max);
}

/* Writes the accepted names of enum key k ("batch|interval|os") into out. */
static void names_text(const struct config_key *k, char *out, size_t outlen)
{
	size_t n = 0;
	out[0] = '\0';
	for (int i = 0; k->names[i] != NULL; i++) {
		int w = snprintf(out + n, outlen - n, "%s%s", i ? "|" : "", k->names[i]);
		if (w < 0 || (size_t)w >= outlen - n)
			return;
		n += (size_t)w;
	}
}

/* Parses plain decimal: an optional '-', then digits only. Returns 0,
 * -ERR_MALFORMED for bad syntax, -ERR_RANGE past int64. */
static int parse_i64(const char *s, int64_t *out)
{
	bool neg = false;
	if (*s == '-') {
		neg = true;
		s++;
	}
	if (*s == '\0')
		return -ERR_MALFORMED;
	uint64_t v = 0;
	uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	bool overflow = false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -ERR_MALFORMED;
		unsigned d = (unsigned)(*s - '0');
		if (overflow || v > (limit - d) / 10)
			overflow = true; /* keep scanning: trailing garbage is a syntax error */
		else
			v = v * 10 + d;
	}
	if (overflow)
		return -ERR_RANGE;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

static int set_string(struct config *cfg, const struct config_key *k, const char *value,
		      char *errbuf, size_t errlen)
{
	size_t len = strlen(value);
	if (len == 0) {
		set_err(errbuf, errlen, "%s: must not be empty", k->key);
		return -ERR_INVALID;
	}
	if (len >= k->size) {
		set_err(errbuf, errlen, "%s: value is %zu bytes, longer than the maximum %zu",
			k->key, len, k->size - 1);
		return -ERR_INVALID;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c < 0x20 || c == 0x7f) {
			set_err(errbuf, errlen, "%s: control character 0x%02x at byte %zu",
				k->key, c, i);
			return -ERR_INVALID;
		}
	}
	char *field = (char *)cfg + k->offset;
	/* Zero the tail so two configs with equal settings compare equal. */
	memset(field, 0, k->size);
	memcpy(field, value, len);
	return 0;
}

static int set_int(struct config *cfg, const struct config_key *k, const char *value,
		   char *errbuf, size_t errlen)
{
	char shown[CONFIG_ECHO_MAX + 4], range[64];
	int64_t v = 0;
	int rc = parse_i64(value, &v);
	/* A '-' is only for keys where -1 means "off"; elsewhere even -0 is out. */
	if (rc == 0 && (v < k->min || v > k->max || (value[0] == '-' && k->min >= 0)))
		rc = -ERR_RANGE;
	if (rc != 0) {
		echo(value, shown);
		range_text(k, range, sizeof range);
		set_err(errbuf, errlen, "%s: \"%s\" is %s, expected an integer in %s", k->key,
			shown, rc == -ERR_RANGE ? "out of range" : "not a decimal integer", range);
		return -ERR_INVALID;
	}
	char *field = (char *)cfg + k->offset;
	if (k->size == sizeof(int)) {
		int iv = (int)v; /* min and max fit an int for every int field */
		memcpy(field, &iv, sizeof iv);
	} else {
		memcpy(field, &v, sizeof v);
	}
	return 0;
}

static int set_enum(struct config *cfg, const struct config_key *k, const char *value,
		    char *errbuf, size_t errlen)
{
	for (int i = 0; k->names[i] != NULL; i++) {
		if (strcmp(k->names[i], value) == 0) {
			memcpy((char *)cfg + k->offset, &i, sizeof i);
			return 0;
		}
	}
	char shown[CONFIG_ECHO_MAX + 4], names[128];
	echo(value, shown);
	names_text(k, names, sizeof names);
	set_err(errbuf, errlen, "%s: \"%s\" is not one of %s", k->key, shown, names);
	return -ERR_INVALID;
}

void config_defaults(struct config *cfg)
{
	char err[256];
	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &keys[i];
		bool bad_width = k->type == CONFIG_INT &&
				 !(k->size == sizeof(int64_t) ||
				   (k->size == sizeof(int) && k->min >= INT_MIN && k->max <= INT_MAX));
		if (bad_width || (k->type == CONFIG_ENUM && k->size != sizeof(int))) {
			diag_error("config", "bad table entry for %s", k->key);
			abort();
		}
		if (config_set(cfg, keys[i].key, keys[i].def, err, sizeof err) != 0) {
			/* A default outside its own bounds is a bug in the table. */
			diag_error("config", "bad embedded default: %s", err);
			abort();
		}
	}
}

int config_set(struct config *cfg, const char *key, const char *value, char *errbuf,
	       size_t errlen)
{
	if (key == NULL || value == NULL) {
		set_err(errbuf, errlen, "missing key or value");
		return -ERR_INVALID;
	}
	const struct config_key *k = find_key(key);
	if (k == NULL) {
		char shown[CONFIG_ECHO_MAX + 4];
		echo(key, shown);
		set_err(errbuf, errlen, "unknown key \"%s\"", shown);
		return -ERR_NOT_FOUND;
	}
	switch (k->type) {
	case CONFIG_STRING: return set_string(cfg, k, value, errbuf, errlen);
	case CONFIG_INT: return set_int(cfg, k, value, errbuf, errlen);
	case CONFIG_ENUM: return set_enum(cfg, k, value, errbuf, errlen);
	}
	return -ERR_INVALID;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/*
 * Splits one line (NUL-terminated, no newline) into key and value in place,
 * removing quotes and escapes. Returns 1 for a key/value pair, 0 for a blank
 * or comment line, or -ERR_MALFORMED with the reason in errbuf.
 */
static int split_line(char *line, char **key_out, char **value_out, char *errbuf,
		      size_t errlen)
{
	char *p = line;
	while (is_blank(*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;
	char *eq = strchr(p, '=');
	if (eq == NULL) {
		set_err(errbuf, errlen, "missing '=' (expected \"key = value\")");
		return -ERR_MALFORMED;
	}
	char *kend = eq;
	while (kend > p && is_blank(kend[-1]))
		kend--;
	if (kend == p) {
		set_err(errbuf, errlen, "missing key before '='");
		return -ERR_MALFORMED;
	}
	*kend = '\0';
	*key_out = p;
	char shown[CONFIG_ECHO_MAX + 4];
	echo(p, shown);

	char *v = eq + 1;
	while (is_blank(*v))
		v++;
	if (*v == '"') {
		/* Quoted: \" and \\ are the only escapes; unquote in place. */
		char *in = v + 1, *out = v;
		for (;;) {
			if (*in == '\0') {
				set_err(errbuf, errlen, "%s: unterminated quoted value", shown);
				return -ERR_MALFORMED;
			}
			if (*in == '"')
				break;
			if (*in == '\\') {
				if (in[1] != '"' && in[1] != '\\') {
					set_err(errbuf, errlen,
						"%s: bad escape in quoted value (only \\\" and \\\\)",
						shown);
					return -ERR_MALFORMED;
				}
				in++;
			}
			*out++ = *in++;
		}
		char *rest = in + 1;
		*out = '\0';
		while (is_blank(*rest))
			rest++;
		if (*rest != '\0' && *rest != '#') {
			set_err(errbuf, errlen, "%s: unexpected text after the closing quote", shown);
			return -ERR_MALFORMED;
		}
	} else {
		/* Unquoted: a '#' first or after whitespace starts a comment. */
		char *end = v;
		while (*end != '\0' && !(*end == '#' && (end == v || is_blank(end[-1]))))
			end++;
		while (end > v && is_blank(end[-1]))
			end--;
		*end = '\0';
	}
	*value_out = v;
	return 1;
}

/* Applies one line; on failure errbuf gets "path:lineno: reason". */
static int apply_line(struct config *cfg, char *line, const char *path, unsigned long lineno,
		      char *errbuf, size_t errlen)
{
	char reason[512];
	char *key = NULL, *value = NULL;
	/* A UTF-8 byte order mark that some editors write is not part of the key. */
	if (lineno == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
		line += 3;
	int rc = split_line(line, &key, &value, reason, sizeof reason);
	if (rc > 0)
		rc = config_set(cfg, key, value, reason, sizeof reason);
	if (rc < 0)
		set_err(errbuf, errlen, "%s:%lu: %s", path, lineno, reason);
	return rc < 0 ? rc : 0;
}

int config_load_file(struct config *cfg, const char *path, char *errbuf, size_t errlen)
{
	if (path == NULL) {
		set_err(errbuf, errlen, "no configuration file named");
		return -ERR_INVALID;
	}
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		int e = errno;
		set_err(errbuf, errlen, "%s: cannot open: %s", path, strerror(e));
		return e > 0 ? -e : -ERR_IO;
	}
	char *line = malloc(CONFIG_LINE_MAX + 1);
	int rc = 0;
	if (line == NULL) {
		set_err(errbuf, errlen, "%s: out of memory", path);
		rc = -ERR_NOMEM;
		goto out;
	}
	size_t len = 0;
	unsigned long lineno = 1;
	for (;;) {
		int c = getc(f);
		if (c == EOF) {
			if (ferror(f)) {
				int e = errno;
				set_err(errbuf, errlen, "%s:%lu: read error: %s", path, lineno,
					strerror(e));
				rc = e > 0 ? -e : -ERR_IO;
				goto out;
			}
			if (len > 0) {
				line[len] = '\0';
				rc = apply_line(cfg, line, path, lineno, errbuf, errlen);
			}
			goto out;
		}
		if (c == '\n') {
			line[len] = '\0';
			rc = apply_line(cfg, line, path, lineno, errbuf, errlen);
			if (rc < 0)
				goto out;
			len = 0;
			lineno++;
			continue;
		}
		if (c == '\0') {
			set_err(errbuf, errlen, "%s:%lu: NUL byte in line", path, lineno);
			rc = -ERR_MALFORMED;
			goto out;
		}
		if (len == CONFIG_LINE_MAX) {
			set_err(errbuf, errlen, "%s:%lu: line longer than %d bytes", path, lineno,
				CONFIG_LINE_MAX);
			rc = -ERR_MALFORMED;
			goto out;
		}
		line[len++] = (char)c;
	}
out:
	free(line);
	fclose(f);
	return rc;
}

/* Whether a string value must be quoted to read back unchanged. */
static bool needs_quotes(const char *s, size_t len)
{
	if (len == 0 || is_blank(s[0]) || is_blank(s[len - 1]) || s[0] == '"' || s[0] == '#')
		return true;
	for (size_t i = 1; i < len; i++)
		if (s[i] == '#' && is_blank(s[i - 1]))
			return true;
	return false;
}

static void dump_string(const struct config_key *k, const char *s, FILE *out)
{
	size_t len = strnlen(s, k->size);
	if (!needs_quotes(s, len)) {
		fprintf(out, "%s = %.*s\n", k->key, (int)len, s);
		return;
	}
	fprintf(out, "%s = \"", k->key);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			fputc('\\', out);
		fputc(s[i], out);
	}
	fputs("\"\n", out);
}

void config_dump(const struct config *cfg, FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &keys[i];
		const char *field = (const char *)cfg + k->offset;
		int iv = 0;
		int64_t v = 0;
		switch (k->type) {
		case CONFIG_STRING:
			dump_string(k, field, out);
			break;
		case CONFIG_INT:
			if (k->size == sizeof(int)) {
				memcpy(&iv, field, sizeof iv);
				v = iv;
			} else {
				memcpy(&v, field, sizeof v);
			}
			fprintf(out, "%s = %" PRId64 "\n", k->key, v);
			break;
		case CONFIG_ENUM: {
			memcpy(&iv, field, sizeof iv);
			int n = 0;
			while (k->names[n] != NULL)
				n++;
			if (iv >= 0 && iv < n)
				fprintf(out, "%s = %s\n", k->key, k->names[iv]);
			else /* set by code, not by config_set: show it, even if unreadable */
				fprintf(out, "%s = %d\n", k->key, iv);
			break;
		}
		}
	}
}
