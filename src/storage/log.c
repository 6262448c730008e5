/*
 * log.c: a directory of segments: open and recovery, append with offset
 * assignment and rolling, reads across segments, retention.
 *
 * The segments live in an array sorted by base offset; the last one is active.
 * Offsets are contiguous inside a segment and increasing across segments (a gap
 * can only follow a segment cut by recovery). The active segment is never
 * missing: after every segment was deleted, an empty one sits at the end offset,
 * so the end offset survives a reopen through its file name.
 */
#include "storage/log.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/diag.h"
#include "core/err.h"
#include "storage/flusher.h"
#include "storage/log_segment.h"
#include "storage/record_batch.h"

#define MOD "storage"
#define NAME_DIGITS 20

struct log {
	char *dir;                  /* owned */
	struct log_config cfg;
	struct log_segment **segs;  /* owned; sorted by base offset, last is active */
	size_t nsegs;
	size_t cap;
	int failed;                 /* 0, or the error of a failed fdatasync (sticky) */
	size_t write_buffer;        /* log_set_write_buffer: the active segment's buffer */
};

void log_config_defaults(struct log_config *cfg)
{
	cfg->segment_bytes = 1 << 30;
	cfg->segment_ms = 7LL * 24 * 3600 * 1000;
	cfg->index_interval_bytes = 4096;
	cfg->retention_ms = 7LL * 24 * 3600 * 1000;
	cfg->retention_bytes = -1;
	cfg->max_batch_bytes = 1048588; /* Kafka's message.max.bytes */
}

int log_config_check(const struct log_config *cfg)
{
	if (cfg->segment_bytes < 1 || cfg->segment_bytes > LOG_SEGMENT_MAX_POSITION)
		return -ERR_INVALID;
	if (cfg->segment_ms < -1 || cfg->segment_ms == 0)
		return -ERR_INVALID;
	if (cfg->index_interval_bytes < 0 || cfg->index_interval_bytes > INT32_MAX)
		return -ERR_INVALID;
	if (cfg->retention_ms < -1 || cfg->retention_bytes < -1)
		return -ERR_INVALID;
	if (cfg->max_batch_bytes < RECORD_BATCH_HEADER_SIZE ||
	    cfg->max_batch_bytes > LOG_SEGMENT_MAX_POSITION)
		return -ERR_INVALID;
	return 0;
}

static struct log_segment *active(const struct log *log)
{
	return log->segs[log->nsegs - 1];
}

/* Appends a segment to the array (it must sort last). */
static int push_segment(struct log *log, struct log_segment *s)
{
	if (log->nsegs == log->cap) {
		size_t cap = log->cap ? log->cap * 2 : 8;
		struct log_segment **n = realloc(log->segs, cap * sizeof *n);
		if (!n)
			return -ERR_NOMEM;
		log->segs = n;
		log->cap = cap;
	}
	log->segs[log->nsegs++] = s;
	return 0;
}

/* Removes segment i from the array (the caller closes or deletes it). */
static void drop_segment(struct log *log, size_t i)
{
	memmove(&log->segs[i], &log->segs[i + 1], (log->nsegs - i - 1) * sizeof *log->segs);
	log->nsegs--;
}

/* mkdir -p; 0 or -errno. */
static int make_dirs(const char *dir)
{
	char path[4096];
	size_t len = strlen(dir);
	if (len == 0 || len >= sizeof path)
		return -ERR_INVALID;
	memcpy(path, dir, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		char c = path[i];
		path[i] = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -errno;
		path[i] = c;
	}
	struct stat st;
	if (stat(dir, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* fsync of the directory, so created segment files survive a crash. */
static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

enum file_kind { FILE_OTHER, FILE_LOG, FILE_INDEX, FILE_TIMEINDEX, FILE_TMP };

/* Classifies a directory entry "<20 digits><ext>", parsing the base offset. */
static enum file_kind classify(const char *name, int64_t *base)
{
	int64_t v = 0;
	for (int i = 0; i < NAME_DIGITS; i++) {
		char c = name[i];
		if (c < '0' || c > '9')
			return FILE_OTHER;
		if (v > (INT64_MAX - (c - '0')) / 10)
			return FILE_OTHER;
		v = v * 10 + (c - '0');
	}
	*base = v;
	const char *ext = name + NAME_DIGITS;
	if (strcmp(ext, ".log") == 0)
		return FILE_LOG;
	if (strcmp(ext, ".index") == 0)
		return FILE_INDEX;
	if (strcmp(ext, ".timeindex") == 0)
		return FILE_TIMEINDEX;
	if (strcmp(ext, ".index.tmp") == 0 || strcmp(ext, ".timeindex.tmp") == 0)
		return FILE_TMP;
	return FILE_OTHER;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Growable array of int64. */
struct i64_vec {
	int64_t *v;
	size_t n, cap;
};

static int vec_push(struct i64_vec *a, int64_t x)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		int64_t *n = realloc(a->v, cap * sizeof *n);
		if (!n)
			return -ERR_NOMEM;
		a->v = n;
		a->cap = cap;
	}
	a->v[a->n++] = x;
	return 0;
}

static int vec_has(const struct i64_vec *a, int64_t x)
{
	return a->n > 0 && bsearch(&x, a->v, a->n, sizeof x, cmp_i64) != NULL;
}

/*
 * Lists dir: the base offsets of .log files (sorted) and of index files;
 * removes leftover tmp files and reports files that are not Sluice's.
 */
static int list_dir(const char *dir, struct i64_vec *logs, struct i64_vec *indexes)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int64_t base = 0;
		enum file_kind kind = classify(de->d_name, &base);
		struct stat st;
		if (kind != FILE_OTHER && de->d_type != DT_REG &&
		    (de->d_type != DT_UNKNOWN || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		     !S_ISREG(st.st_mode)))
			kind = FILE_OTHER; /* a directory or link with a segment's name */
		switch (kind) {
		case FILE_LOG:
			rc = vec_push(logs, base);
			break;
		case FILE_INDEX:
		case FILE_TIMEINDEX:
			rc = vec_push(indexes, base);
			break;
		case FILE_TMP:
			if (unlinkat(dirfd(d), de->d_name, 0) < 0)
				diag_warn(MOD, "%s/%s: cannot remove leftover file: %s", dir, de->d_name,
					  strerror(errno));
			break;
		default:
			diag_warn(MOD, "%s/%s: not a segment file, ignored", dir, de->d_name);
			break;
		}
		if (rc)
			break;
	}
	closedir(d);
	if (rc == 0 && logs->n > 1)
		qsort(logs->v, logs->n, sizeof *logs->v, cmp_i64);
	if (rc == 0 && indexes->n > 1)
		qsort(indexes->v, indexes->n, sizeof *indexes->v, cmp_i64);
	return rc;
}

/* Removes index files that have no .log beside them. */
static void remove_orphans(const char *dir, const struct i64_vec *logs, const struct i64_vec *idx)
{
	static const char *exts[] = { ".index", ".timeindex" };
	for (size_t i = 0; i < idx->n; i++) {
		if (vec_has(logs, idx->v[i]) || (i > 0 && idx->v[i] == idx->v[i - 1]))
			continue;
		for (int k = 0; k < 2; k++) {
			char path[4200];
			int n = snprintf(path, sizeof path, "%s/%020" PRId64 "%s", dir, idx->v[i], exts[k]);
			if (n > 0 && (size_t)n < sizeof path && unlink(path) == 0)
				diag_warn(MOD, "%s: index without a log, removed", path);
		}
	}
}

/* Drops segment i from the array and deletes its files, with a warning. */
static int remove_segment(struct log *log, size_t i, const char *why)
{
	struct log_segment *s = log->segs[i];
	diag_warn(MOD, "%s: %s, removed", log_segment_path(s), why);
	drop_segment(log, i);
	return log_segment_delete(s);
}

/*
 * Makes the opened segments consistent with each other: empty segments before
 * the last are deleted; an empty last segment starting inside the previous one
 * is deleted and the previous one, now the tail, is recovered; a segment
 * reaching past the next one's base offset is cut there.
 */
static int fix_segments(struct log *log, int64_t now_ms)
{
	int rc = 0;
	size_t i = 0;
	while (rc == 0 && i + 1 < log->nsegs) {
		if (log_segment_size(log->segs[i]) == 0)
			rc = remove_segment(log, i, "empty segment before the last");
		else
			i++;
	}
	while (rc == 0 && log->nsegs > 1) {
		struct log_segment *last = log->segs[log->nsegs - 1], *prev = log->segs[log->nsegs - 2];
		if (log_segment_size(last) != 0 ||
		    log_segment_base_offset(last) >= log_segment_next_offset(prev))
			break;
		rc = remove_segment(log, log->nsegs - 1, "empty last segment inside the previous one");
		if (rc)
			break;
		int64_t base = log_segment_base_offset(prev);
		drop_segment(log, log->nsegs - 1);
		log_segment_close(prev);
		rc = log_segment_open(log->dir, base, log->cfg.index_interval_bytes, 1, now_ms, &prev);
		if (rc == 0)
			rc = push_segment(log, prev); /* cannot fail: the array just shrank */
	}
	i = 0;
	while (rc == 0 && i + 1 < log->nsegs) {
		struct log_segment *s = log->segs[i], *n = log->segs[i + 1];
		if (log_segment_next_offset(s) <= log_segment_base_offset(n)) {
			i++;
			continue;
		}
		diag_warn(MOD, "%s: offsets %" PRId64 "..%" PRId64 " overlap %s, cutting them",
			  log_segment_path(s), log_segment_base_offset(n),
			  log_segment_next_offset(s) - 1, log_segment_path(n));
		rc = log_segment_truncate_offset(s, log_segment_base_offset(n));
		if (rc == 0 && log_segment_size(s) == 0)
			rc = remove_segment(log, i, "segment emptied by the overlap");
	}
	return rc;
}

static void free_log(struct log *log)
{
	free(log->segs);
	free(log->dir);
	free(log);
}

int log_open(const char *dir, const struct log_config *cfg, int64_t now_ms, struct log **out)
{
	if (log_config_check(cfg))
		return -ERR_INVALID;
	int rc = make_dirs(dir);
	if (rc)
		return rc;
	struct log *log = calloc(1, sizeof *log);
	if (!log)
		return -ERR_NOMEM;
	log->cfg = *cfg;
	log->dir = strdup(dir);
	struct i64_vec logs = { 0 }, idx = { 0 };
	if (!log->dir) {
		rc = -ERR_NOMEM;
		goto fail;
	}
	rc = list_dir(dir, &logs, &idx);
	if (rc)
		goto fail;
	remove_orphans(dir, &logs, &idx);
	for (size_t i = 0; i < logs.n; i++) {
		struct log_segment *s;
		int tail = i + 1 == logs.n;
		rc = log_segment_open(dir, logs.v[i], cfg->index_interval_bytes, tail, now_ms, &s);
		if (rc) {
			diag_error(MOD, "%s/%020" PRId64 ".log: cannot open: %s", dir, logs.v[i], err_str(rc));
			goto fail;
		}
		rc = push_segment(log, s);
		if (rc) {
			log_segment_close(s);
			goto fail;
		}
	}
	rc = fix_segments(log, now_ms);
	if (rc)
		goto fail;
	if (log->nsegs == 0) {
		struct log_segment *s;
		rc = log_segment_create(dir, 0, cfg->index_interval_bytes, &s);
		if (rc)
			goto fail;
		rc = push_segment(log, s);
		if (rc) {
			log_segment_delete(s);
			goto fail;
		}
		rc = sync_dir(dir);
		if (rc)
			goto fail;
	}
	free(logs.v);
	free(idx.v);
	*out = log;
	return 0;
fail:
	for (size_t i = 0; i < log->nsegs; i++)
		log_segment_close(log->segs[i]);
	free(logs.v);
	free(idx.v);
	free_log(log);
	return rc;
}

/*
 * Records a failed fdatasync. After one, the kernel may have dropped the dirty
 * pages and a later fdatasync can succeed without them ("fsyncgate"), so the
 * log takes no more appends: only a restart (recovery) trusts the disk again.
 */
static int sync_failed(struct log *log, struct log_segment *s, int rc)
{
	diag_error(MOD, "%s: fdatasync failed: %s; the log takes no more appends",
		   log_segment_path(s), err_str(rc));
	if (!log->failed)
		log->failed = rc;
	return rc;
}

int log_sync(struct log *log)
{
	if (log->failed)
		return log->failed;
	int rc = 0;
	for (size_t i = 0; i < log->nsegs && rc == 0; i++) {
		if (!log_segment_dirty(log->segs[i]))
			continue;
		rc = log_segment_sync(log->segs[i]);
		if (rc)
			sync_failed(log, log->segs[i], rc);
	}
	return rc;
}

void log_set_write_buffer(struct log *log, size_t bytes)
{
	log->write_buffer = bytes;
	log_segment_set_buffer(active(log), bytes);
}

int log_flush_buffer(struct log *log)
{
	return log_segment_flush(active(log));
}

int log_close(struct log *log)
{
	if (!log)
		return 0;
	int rc = log_sync(log);
	for (size_t i = 0; i < log->nsegs; i++)
		log_segment_close(log->segs[i]);
	free_log(log);
	return rc;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int r = (type == FTW_DP) ? rmdir(path) : unlink(path);
	return r < 0 && errno != ENOENT ? -1 : 0;
}

int log_remove_tree(const char *dir)
{
	if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0)
		return 0;
	return errno ? -errno : -ERR_IO;
}

int log_delete(struct log *log)
{
	for (size_t i = 0; i < log->nsegs; i++)
		log_segment_close(log->segs[i]);
	log->nsegs = 0;
	int rc = log_remove_tree(log->dir);
	if (rc)
		diag_error(MOD, "%s: cannot remove the log directory: %s", log->dir, err_str(rc));
	free_log(log);
	return rc;
}

int log_set_config(struct log *log, const struct log_config *cfg)
{
	if (log_config_check(cfg))
		return -ERR_INVALID;
	/* index_interval_bytes applies to new segments only; existing indexes stay valid */
	log->cfg = *cfg;
	return 0;
}

int64_t log_start_offset(const struct log *log)
{
	return log_segment_base_offset(log->segs[0]);
}

int64_t log_end_offset(const struct log *log)
{
	return log_segment_next_offset(active(log));
}

int64_t log_size_bytes(const struct log *log)
{
	int64_t total = 0;
	for (size_t i = 0; i < log->nsegs; i++)
		total += log_segment_size(log->segs[i]);
	return total;
}

size_t log_segment_count(const struct log *log)
{
	return log->nsegs;
}

const char *log_dir(const struct log *log)
{
	return log->dir;
}

/* Seals the active segment and starts an empty one at the end offset. */
static int roll(struct log *log)
{
	struct log_segment *old = active(log), *s;
	if (log->failed)
		return log->failed;
	if (log_segment_size(old) == 0)
		return 0;
	/*
	 * A sealed segment is durable: recovery checks only the tail, so a batch
	 * torn by a crash must never be left behind in a segment before it. Under
	 * log.flush = batch or interval little is left to sync by now.
	 */
	int rc = log_segment_dirty(old) ? log_segment_sync(old) : 0;
	if (rc)
		return sync_failed(log, old, rc);
	/* create first: if it fails, the old segment stays active and appendable */
	rc = log_segment_create(log->dir, log_segment_next_offset(old),
				log->cfg.index_interval_bytes, &s);
	if (rc)
		return rc;
	rc = push_segment(log, s);
	if (rc) {
		log_segment_delete(s);
		return rc;
	}
	log_segment_set_buffer(s, log->write_buffer);
	rc = log_segment_seal(old);
	if (rc) /* indexes are hints: the segment stays readable, they are rebuilt later */
		diag_warn(MOD, "%s: writing indexes at roll failed: %s", log_segment_path(old),
			  err_str(rc));
	rc = sync_dir(log->dir);
	if (rc)
		diag_warn(MOD, "%s: directory fsync failed: %s", log->dir, err_str(rc));
	return 0;
}

int log_roll(struct log *log, int64_t now_ms)
{
	(void)now_ms;
	return roll(log);
}

/*
 * True when the append (len bytes, offsets offsets, newest timestamp batch_ts)
 * must go to a new segment. Age is Kafka's: the newest timestamp arriving
 * minus the segment's first one, so producers with old CreateTime timestamps
 * do not roll a segment per batch.
 */
static int needs_roll(const struct log *log, size_t len, int64_t offsets, int64_t batch_ts)
{
	const struct log_segment *s = active(log);
	int64_t size = log_segment_size(s);
	if (size == 0)
		return 0;
	if ((int64_t)len > log->cfg.segment_bytes - size)
		return 1;
	if ((int64_t)len > LOG_SEGMENT_MAX_POSITION - size)
		return 1;
	if (log->cfg.segment_ms >= 0 && batch_ts - log_segment_roll_base_ms(s) > log->cfg.segment_ms)
		return 1;
	/* relative offsets of one segment fit u32 */
	if (log_segment_next_offset(s) - log_segment_base_offset(s) + offsets > (int64_t)UINT32_MAX)
		return 1;
	return 0;
}

int log_append(struct log *log, uint8_t *batches, size_t len, int64_t now_ms, int log_append_time,
	       struct log_append_result *res)
{
	if (log->failed)
		return log->failed;
	if (len == 0)
		return -ERR_CORRUPT;
	if ((int64_t)len > LOG_SEGMENT_MAX_POSITION)
		return -ERR_TOO_LARGE;
	/*
	 * One pass validates each batch (header, cap, CRC) and then patches it; a
	 * later bad batch fails the call before anything is written, leaving only
	 * the caller's buffer changed.
	 */
	int64_t base = log_end_offset(log), next = base;
	struct record_batch_walk w;
	struct record_batch_header h;
	struct slice b;
	size_t pos;
	int rc;
	record_batch_walk_init(&w, batches, len, (size_t)log->cfg.max_batch_bytes, 1);
	int64_t batch_ts = -1;
	while ((rc = record_batch_walk_next(&w, &h, &b, &pos)) == 1) {
		int64_t n = (int64_t)h.last_offset_delta + 1;
		int64_t ts = log_append_time || h.max_timestamp < 0 ? now_ms : h.max_timestamp;
		if (ts > batch_ts)
			batch_ts = ts;
		if (next - base + n > INT32_MAX)
			return -ERR_TOO_LARGE;
		if (next > INT64_MAX - n)
			return -ERR_RANGE;
		/* pos and b.len lie within batches: the walk checked them */
		record_batch_set_base_offset(batches + pos, b.len, next);
		if (log_append_time)
			record_batch_set_log_append_time(batches + pos, b.len, now_ms);
		next += n;
	}
	if (rc)
		return rc;
	if (needs_roll(log, len, next - base, batch_ts)) {
		rc = roll(log);
		if (rc)
			return rc;
	}
	struct log_segment *s = active(log);
	rc = log_segment_append(s, batches, len, now_ms);
	if (rc)
		return rc;
	res->base_offset = base;
	res->last_offset = next - 1;
	res->log_append_time = log_append_time ? now_ms : -1;
	res->file = log_segment_file(s);
	return 0;
}

/* Index of the segment holding offset: the last whose base offset is <= offset. */
static size_t find_segment(const struct log *log, int64_t offset)
{
	size_t lo = 0, hi = log->nsegs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (log_segment_base_offset(log->segs[mid]) <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == 0 ? 0 : lo - 1;
}

int log_read(struct log *log, int64_t offset, int64_t max_bytes, struct log_read_result *out)
{
	int64_t end = log_end_offset(log);
	memset(out, 0, sizeof *out);
	out->fd = -1;
	out->first_offset = end;
	out->next_offset = end;
	out->position = log_segment_size(active(log));
	if (offset < log_start_offset(log) || offset > end)
		return -ERR_RANGE;
	for (size_t i = find_segment(log, offset); i < log->nsegs; i++) {
		struct log_segment *s = log->segs[i];
		struct log_segment_range r;
		int rc = log_segment_read(s, offset, max_bytes, &r);
		if (rc == -ERR_NOT_FOUND)
			continue; /* past this segment: a gap, or the end */
		if (rc)
			return rc;
		out->file = flusher_file_ref(log_segment_file(s));
		out->fd = flusher_file_fd(out->file);
		out->position = r.position;
		out->length = r.length;
		out->first_offset = r.first_offset;
		out->next_offset = r.next_offset;
		return 0;
	}
	return 0;
}

void log_read_result_release(struct log_read_result *r)
{
	if (r->file)
		flusher_file_unref(r->file);
	r->file = NULL;
	r->fd = -1;
}

int log_read_copy(struct log *log, int64_t offset, int64_t max_bytes, struct writer *w,
		  struct log_read_result *out)
{
	int rc = log_read(log, offset, max_bytes, out);
	if (rc || out->length == 0)
		goto out;
	size_t at = writer_reserve(w, (size_t)out->length);
	if (w->err) {
		rc = w->err;
		goto out;
	}
	uint8_t *p = w->buf + at;
	size_t left = (size_t)out->length;
	off_t pos = (off_t)out->position;
	while (left > 0) {
		ssize_t n = pread(out->fd, p, left, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -ERR_CORRUPT;
			w->len = at;
			goto out;
		}
		p += n;
		left -= (size_t)n;
		pos += n;
	}
out:
	log_read_result_release(out);
	return rc;
}

int log_offset_for_time(struct log *log, int64_t ts, int64_t *offset)
{
	for (size_t i = 0; i < log->nsegs; i++) {
		struct log_segment *s = log->segs[i];
		if (log_segment_max_timestamp(s) < ts)
			continue;
		int rc = log_segment_find_time(s, ts, offset);
		if (rc == 0)
			return 0;
		if (rc != -ERR_NOT_FOUND)
			return rc;
	}
	*offset = log_end_offset(log);
	return 0;
}

/* Deletes the first segment, rolling first when it is the active one. */
static int delete_first(struct log *log)
{
	if (log->nsegs == 1) {
		int rc = roll(log);
		if (rc)
			return rc;
	}
	struct log_segment *s = log->segs[0];
	drop_segment(log, 0);
	diag_info(MOD, "%s: deleted segment (offsets %" PRId64 "..%" PRId64 ", %" PRId64 " bytes)",
		  log_segment_path(s), log_segment_base_offset(s), log_segment_next_offset(s) - 1,
		  log_segment_size(s));
	return log_segment_delete(s);
}

int log_retention_apply(struct log *log, int64_t now_ms, int *deleted)
{
	int n = 0, rc = 0;
	if (log->cfg.retention_ms >= 0) {
		while (rc == 0 && log_segment_size(log->segs[0]) > 0 &&
		       now_ms - log_segment_retention_ms(log->segs[0]) > log->cfg.retention_ms) {
			rc = delete_first(log);
			n++;
		}
	}
	if (log->cfg.retention_bytes >= 0) {
		int64_t total = log_size_bytes(log);
		while (rc == 0 && log->nsegs > 1 &&
		       total - log_segment_size(log->segs[0]) >= log->cfg.retention_bytes) {
			total -= log_segment_size(log->segs[0]);
			rc = delete_first(log);
			n++;
		}
	}
	if (deleted)
		*deleted = n;
	return rc;
}

int log_delete_before(struct log *log, int64_t offset, int *deleted)
{
	int n = 0, rc = 0;
	while (rc == 0 && log_segment_size(log->segs[0]) > 0 &&
	       log_segment_next_offset(log->segs[0]) <= offset) {
		rc = delete_first(log);
		n++;
	}
	if (deleted)
		*deleted = n;
	return rc;
}
