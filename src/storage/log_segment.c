/*
 * log_segment.c: appends, lookups, recovery and index rebuilding for one
 * segment (see log_segment.h for the files and the indexing rule).
 *
 * Everything that reads the .log goes through a small buffered scanner: it
 * reads a window of the file, decodes one batch header at a time with
 * record_batch_header_parse (struct reader underneath), checks that the batch
 * fits in the file and that its offset follows the previous one, and (for
 * recovery) streams the batch body through CRC-32C without holding it whole.
 * Lookups start the scan at an index entry, so they read about
 * index_interval_bytes; recovery and rebuilds scan from position 0.
 *
 * An index is never trusted blindly: the tail's is built while scanning, a
 * sealed segment's files are checked against the .log (last entries at open,
 * every entry before first use), and a lookup that finds the index pointing at
 * something else rebuilds it and retries once.
 */
#include "storage/log_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/diag.h"
#include "core/err.h"
#include "storage/flusher.h"
#include "storage/log_index.h"
#include "storage/record_batch.h"

#define MOD "storage"
#define SCAN_BUF_BIG (1u << 20)  /* recovery and rebuilds */
#define SCAN_BUF_SMALL 8192      /* lookups: about one index interval */

ssize_t (*log_segment_pwrite)(int fd, const void *buf, size_t len, off_t pos) = pwrite;
int (*log_segment_fdatasync)(int fd) = fdatasync;

struct log_segment {
	char *log_path;          /* owned */
	char *index_path;        /* owned */
	char *time_path;         /* owned */
	int64_t base;
	int64_t next;            /* offset after the last batch */
	int64_t size;            /* bytes of whole batches in the .log */
	int64_t max_ts;          /* INT64_MIN while empty */
	int64_t offset_of_max;   /* base offset of the batch that first reached max_ts */
	int64_t roll_base_ms;    /* INT64_MAX while empty */
	int64_t interval;        /* index.interval.bytes */
	int64_t last_index_pos;  /* position of the last offset-index entry */
	struct flusher_file *file; /* owned reference */
	int fd;                  /* flusher_file_fd(file) */
	struct log_index *oix;   /* owned */
	struct log_index *tix;   /* owned */
	int sealed;              /* no more appends; indexes live in their files */
	int checked;             /* every index entry was verified or built here */
	int dirty;               /* appended since the last log_segment_sync */
	/* Append buffer (log_segment_set_buffer): the last wbuf_len bytes of
	 * size, not yet written; every read, sync, seal or close writes it first. */
	uint8_t *wbuf;           /* owned; NULL until first used */
	size_t wbuf_len, wbuf_cap;
};

/* Reads a window of the .log; see scan_window. */
struct scan {
	int fd;
	uint8_t *buf;
	size_t cap;
	int64_t buf_pos;   /* file position of buf[0] */
	size_t buf_len;    /* valid bytes in buf */
	int64_t end;       /* never read at or past this position */
};

static void scan_init(struct scan *sc, int fd, uint8_t *buf, size_t cap, int64_t end)
{
	sc->fd = fd;
	sc->buf = buf;
	sc->cap = cap;
	sc->buf_pos = 0;
	sc->buf_len = 0;
	sc->end = end;
}

/* pread of exactly len bytes; 0, -ERR_CORRUPT if the file is shorter, or an error. */
static int pread_full(int fd, uint8_t *p, size_t len, int64_t pos)
{
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EIO ? -ERR_IO : -errno;
		}
		if (n == 0)
			return -ERR_CORRUPT;
		p += n;
		len -= (size_t)n;
		pos += n;
	}
	return 0;
}

/* Points *p at len (<= cap) bytes at pos, reading a new window when needed. */
static int scan_window(struct scan *sc, int64_t pos, size_t len, const uint8_t **p)
{
	if (pos >= sc->buf_pos && (uint64_t)(pos - sc->buf_pos) + len <= sc->buf_len) {
		*p = sc->buf + (pos - sc->buf_pos);
		return 0;
	}
	int64_t avail = sc->end - pos;
	size_t want = avail < (int64_t)sc->cap ? (size_t)avail : sc->cap;
	if (avail < 0 || want < len)
		return -ERR_CORRUPT;
	sc->buf_len = 0;
	int rc = pread_full(sc->fd, sc->buf, want, pos);
	if (rc)
		return rc;
	sc->buf_pos = pos;
	sc->buf_len = want;
	*p = sc->buf;
	return 0;
}

/*
 * Reads and checks the batch at pos, which must start at offset expect. On
 * -ERR_CORRUPT, *why says what was wrong; other errors are I/O failures.
 */
static int scan_batch(const struct log_segment *s, struct scan *sc, int64_t pos, int64_t expect,
		      int verify_crc, struct record_batch_header *h, const char **why)
{
	const uint8_t *p;
	int rc;
	*why = "read failed";
	if (sc->end - pos < RECORD_BATCH_HEADER_SIZE) {
		*why = "incomplete batch header";
		return -ERR_CORRUPT;
	}
	if (pos > LOG_SEGMENT_MAX_POSITION) {
		*why = "batch starts beyond 4 GiB";
		return -ERR_CORRUPT;
	}
	rc = scan_window(sc, pos, RECORD_BATCH_HEADER_SIZE, &p);
	if (rc)
		return rc;
	if (record_batch_header_parse(p, RECORD_BATCH_HEADER_SIZE, SIZE_MAX, h)) {
		*why = "bad batch header (length, magic or counts)";
		return -ERR_CORRUPT;
	}
	int64_t size = (int64_t)record_batch_size(h);
	if (size > sc->end - pos) {
		*why = "batch extends past the end of the file";
		return -ERR_CORRUPT;
	}
	if (h->base_offset != expect) {
		*why = "offset does not follow the previous batch";
		return -ERR_CORRUPT;
	}
	if ((uint64_t)(expect - s->base) + (uint64_t)h->last_offset_delta + 1 > UINT32_MAX) {
		*why = "offsets beyond the segment's relative range";
		return -ERR_CORRUPT;
	}
	if (!verify_crc)
		return 0;
	uint32_t crc = 0;
	int64_t at = pos + RECORD_BATCH_CRC_START, stop = pos + size;
	while (at < stop) {
		size_t n = stop - at < (int64_t)sc->cap ? (size_t)(stop - at) : sc->cap;
		rc = scan_window(sc, at, n, &p);
		if (rc)
			return rc;
		crc = crc32c_update(crc, p, n);
		at += (int64_t)n;
	}
	if (crc != h->crc) {
		*why = "CRC mismatch";
		return -ERR_CORRUPT;
	}
	return 0;
}

/* Adds the time entry for the current maximum if it grew since the last one. */
static int time_entry(struct log_segment *s)
{
	struct log_index_entry t;
	if (s->max_ts == INT64_MIN)
		return 0;
	if (log_index_last(s->tix, &t) == 0 && s->max_ts <= t.key)
		return 0;
	return log_index_append(s->tix, s->max_ts, (uint32_t)(s->offset_of_max - s->base));
}

/* Accounts one batch at pos: maximum timestamp, and index entries per the rule. */
static int index_batch(struct log_segment *s, int64_t pos, const struct record_batch_header *h,
		       int64_t now_ms)
{
	if (pos == 0 && s->roll_base_ms == INT64_MAX)
		s->roll_base_ms = (h->max_timestamp >= 0 && h->max_timestamp <= now_ms) ?
			h->max_timestamp : now_ms;
	if (h->max_timestamp > s->max_ts) {
		s->max_ts = h->max_timestamp;
		s->offset_of_max = h->base_offset;
	}
	if (log_index_count(s->oix) > 0 && pos - s->last_index_pos < s->interval)
		return 0;
	int rc = log_index_append(s->oix, h->base_offset - s->base, (uint32_t)pos);
	if (rc)
		return rc;
	s->last_index_pos = pos;
	return time_entry(s);
}

/* Adds the final time entry and writes both indexes to their files. */
static int write_indexes(struct log_segment *s)
{
	int rc = time_entry(s);
	if (rc == 0)
		rc = log_index_persist(s->oix);
	if (rc == 0)
		rc = log_index_persist(s->tix);
	return rc;
}

/*
 * Rebuilds the indexes and the derived state by scanning the .log from 0 to
 * end. At a bad batch: with allow_truncate, cuts the file there (diag_warn);
 * otherwise stops with -ERR_CORRUPT, keeping the indexes of the good part.
 */
static int rebuild(struct log_segment *s, int64_t end, int verify_crc, int allow_truncate,
		   int64_t now_ms)
{
	int64_t old_roll = s->roll_base_ms;
	log_index_clear(s->oix);
	log_index_clear(s->tix);
	s->next = s->base;
	s->max_ts = INT64_MIN;
	s->offset_of_max = s->base;
	s->last_index_pos = 0;
	s->roll_base_ms = INT64_MAX;
	s->checked = 1;

	uint8_t *buf = malloc(SCAN_BUF_BIG);
	if (!buf)
		return -ERR_NOMEM;
	struct scan sc;
	scan_init(&sc, s->fd, buf, SCAN_BUF_BIG, end);
	struct record_batch_header h;
	const char *why = "";
	int64_t pos = 0;
	int rc = 0;
	while (pos < end) {
		rc = scan_batch(s, &sc, pos, s->next, verify_crc, &h, &why);
		if (rc)
			break;
		rc = index_batch(s, pos, &h, now_ms);
		if (rc)
			goto out;
		s->next = record_batch_last_offset(&h) + 1;
		pos += (int64_t)record_batch_size(&h);
	}
	if (rc == -ERR_CORRUPT) {
		if (!allow_truncate) {
			diag_error(MOD, "%s: corrupt batch at position %" PRId64 " (offset %" PRId64 "): %s",
				   s->log_path, pos, s->next, why);
			goto out;
		}
		diag_warn(MOD, "%s: truncating %" PRId64 " bytes at position %" PRId64
			  " (offset %" PRId64 "): %s", s->log_path, end - pos, pos, s->next, why);
		if (ftruncate(s->fd, (off_t)pos) < 0) {
			rc = -errno;
			goto out;
		}
		rc = 0;
	}
	if (rc == 0)
		s->size = pos;
out:
	if (s->next != s->base && old_roll != INT64_MAX)
		s->roll_base_ms = old_roll;
	free(buf);
	return rc;
}

/* Rebuilds the indexes from the .log at runtime (no truncation); seals write them out. */
static int reindex(struct log_segment *s)
{
	int rc = rebuild(s, s->size, 0, 0, INT64_MAX);
	if (rc)
		return rc;
	if (s->sealed) {
		rc = write_indexes(s);
		if (rc)
			diag_warn(MOD, "%s: writing rebuilt indexes failed: %s", s->log_path, err_str(rc));
	}
	return 0;
}

/* Verifies every index entry once before the first lookup; rebuilds on mismatch. */
static int ensure_checked(struct log_segment *s)
{
	if (s->checked)
		return 0;
	int64_t max_rel = s->next - s->base - 1;
	int rc = log_index_check(s->oix, max_rel, (uint64_t)(s->size > 0 ? s->size - 1 : 0));
	if (rc == 0)
		rc = log_index_check(s->tix, INT64_MAX, (uint64_t)(max_rel < 0 ? 0 : max_rel));
	if (rc == 0) {
		s->checked = 1;
		return 0;
	}
	diag_warn(MOD, "%s: index files inconsistent with the log (%s), rebuilding",
		  s->log_path, err_str(rc));
	return reindex(s);
}

/* Formats "<dir>/<20-digit base><ext>" into a new string. */
static char *seg_path(const char *dir, int64_t base, const char *ext)
{
	size_t len = strlen(dir) + 1 + 20 + strlen(ext) + 1;
	char *p = malloc(len);
	if (p)
		snprintf(p, len, "%s/%020" PRId64 "%s", dir, base, ext);
	return p;
}

static void segment_free(struct log_segment *s)
{
	if (!s)
		return;
	log_index_free(s->oix);
	log_index_free(s->tix);
	if (s->file)
		flusher_file_unref(s->file);
	free(s->wbuf);
	free(s->log_path);
	free(s->index_path);
	free(s->time_path);
	free(s);
}

/* Allocates a segment and opens (flags) its .log. */
static int segment_alloc(const char *dir, int64_t base, int64_t interval, int flags,
			 struct log_segment **out)
{
	if (base < 0 || interval < 0)
		return -ERR_INVALID;
	struct log_segment *s = calloc(1, sizeof *s);
	if (!s)
		return -ERR_NOMEM;
	s->base = base;
	s->next = base;
	s->max_ts = INT64_MIN;
	s->offset_of_max = base;
	s->roll_base_ms = INT64_MAX;
	s->interval = interval;
	s->fd = -1;
	s->log_path = seg_path(dir, base, ".log");
	s->index_path = seg_path(dir, base, ".index");
	s->time_path = seg_path(dir, base, ".timeindex");
	if (!s->log_path || !s->index_path || !s->time_path) {
		segment_free(s);
		return -ERR_NOMEM;
	}
	int fd = open(s->log_path, flags | O_CLOEXEC, 0644);
	if (fd < 0) {
		int rc = errno == EEXIST ? -ERR_EXISTS : errno == ENOENT ? -ERR_NOT_FOUND :
			 errno == ENOSPC ? -ERR_NOSPC : -errno;
		segment_free(s);
		return rc;
	}
	s->file = flusher_file_new(fd);
	if (!s->file) {
		close(fd);
		segment_free(s);
		return -ERR_NOMEM;
	}
	s->fd = fd;
	*out = s;
	return 0;
}

int log_segment_create(const char *dir, int64_t base, int64_t index_interval_bytes,
		       struct log_segment **out)
{
	struct log_segment *s;
	int rc = segment_alloc(dir, base, index_interval_bytes, O_RDWR | O_CREAT | O_EXCL, &s);
	if (rc)
		return rc;
	rc = log_index_new(s->index_path, LOG_INDEX_OFFSET, &s->oix);
	if (rc == 0)
		rc = log_index_new(s->time_path, LOG_INDEX_TIME, &s->tix);
	if (rc) {
		unlink(s->log_path);
		segment_free(s);
		return rc;
	}
	s->checked = 1;
	*out = s;
	return 0;
}

/* Maps a failure opening an index file to "rebuild it" (-ERR_CORRUPT) or a real error. */
static int index_open_rc(int rc)
{
	return (rc == -ERR_NOT_FOUND || rc == -ERR_CORRUPT) ? -ERR_CORRUPT : rc;
}

static int find_once(struct log_segment *s, struct scan *sc, int64_t offset,
		     struct log_segment_batch *out);

/*
 * Loads a sealed segment's state from its index files and the batches after
 * the last offset-index entry. -ERR_CORRUPT means "rebuild the indexes".
 */
static int load_sealed(struct log_segment *s)
{
	int rc = log_index_open(s->index_path, LOG_INDEX_OFFSET, &s->oix);
	if (rc)
		return index_open_rc(rc);
	rc = log_index_open(s->time_path, LOG_INDEX_TIME, &s->tix);
	if (rc)
		return index_open_rc(rc);
	if (s->size == 0)
		return (log_index_count(s->oix) || log_index_count(s->tix)) ? -ERR_CORRUPT : 0;
	struct log_index_entry e, t;
	if (log_index_last(s->oix, &e) || log_index_last(s->tix, &t) || e.value >= s->size)
		return -ERR_CORRUPT;

	uint8_t buf[SCAN_BUF_SMALL];
	struct scan sc;
	scan_init(&sc, s->fd, buf, sizeof buf, s->size);
	struct record_batch_header h;
	const char *why;
	int64_t pos = e.value, expect = s->base + e.key;
	int64_t max = INT64_MIN, omax = s->base;
	while (pos < s->size) {
		rc = scan_batch(s, &sc, pos, expect, 0, &h, &why);
		if (rc)
			return rc;
		if (h.max_timestamp > max) {
			max = h.max_timestamp;
			omax = h.base_offset;
		}
		expect = record_batch_last_offset(&h) + 1;
		pos += (int64_t)record_batch_size(&h);
	}
	s->next = expect;
	if (s->base + (int64_t)t.value >= s->next)
		return -ERR_CORRUPT;
	/* the last time entry names the batch that reached its timestamp */
	struct log_segment_batch b;
	scan_init(&sc, s->fd, buf, sizeof buf, s->size);
	rc = find_once(s, &sc, s->base + t.value, &b);
	if (rc)
		return rc;
	if (b.base_offset != s->base + (int64_t)t.value || b.max_timestamp != t.key)
		return -ERR_CORRUPT;
	if (max > t.key) {
		s->max_ts = max;
		s->offset_of_max = omax;
	} else {
		s->max_ts = t.key;
		s->offset_of_max = s->base + t.value;
	}
	s->last_index_pos = e.value;
	return 0;
}

/* Makes sure both index objects exist (empty in-memory ones where missing). */
static int ensure_indexes(struct log_segment *s)
{
	int rc = 0;
	if (!s->oix)
		rc = log_index_new(s->index_path, LOG_INDEX_OFFSET, &s->oix);
	if (rc == 0 && !s->tix)
		rc = log_index_new(s->time_path, LOG_INDEX_TIME, &s->tix);
	return rc;
}

int log_segment_open(const char *dir, int64_t base, int64_t index_interval_bytes, int recover,
		     int64_t now_ms, struct log_segment **out)
{
	struct log_segment *s;
	int rc = segment_alloc(dir, base, index_interval_bytes, O_RDWR, &s);
	if (rc)
		return rc;
	struct stat st;
	if (fstat(s->fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	s->size = st.st_size;
	if (recover) {
		rc = ensure_indexes(s);
		if (rc)
			goto fail;
		int64_t before = s->size;
		rc = rebuild(s, s->size, 1, 1, now_ms);
		if (rc)
			goto fail;
		if (s->size != before) {
			/* index files describe bytes that are gone */
			log_index_unlink(s->oix);
			log_index_unlink(s->tix);
		}
	} else {
		s->sealed = 1;
		rc = load_sealed(s);
		if (rc == -ERR_CORRUPT) {
			diag_warn(MOD, "%s: index files missing or inconsistent, rebuilding", s->log_path);
			rc = ensure_indexes(s);
			if (rc == 0)
				rc = rebuild(s, s->size, 0, 1, now_ms);
			if (rc == 0)
				rc = write_indexes(s);
		}
		if (rc)
			goto fail;
	}
	*out = s;
	return 0;
fail:
	segment_free(s);
	return rc;
}

void log_segment_close(struct log_segment *s)
{
	if (!s)
		return;
	int rc = log_segment_flush(s);
	if (rc == 0 && log_index_dirty(s->oix))
		rc = log_index_persist(s->oix);
	if (rc == 0 && log_index_dirty(s->tix))
		rc = log_index_persist(s->tix);
	if (rc)
		diag_warn(MOD, "%s: writing indexes failed: %s", s->log_path, err_str(rc));
	segment_free(s);
}

int log_segment_delete(struct log_segment *s)
{
	int rc = 0;
	if (unlink(s->log_path) < 0 && errno != ENOENT)
		rc = -errno;
	int r2 = log_index_unlink(s->oix);
	int r3 = log_index_unlink(s->tix);
	if (rc == 0)
		rc = r2 ? r2 : r3;
	segment_free(s);
	return rc;
}

/* Writes all of buf at pos through the seam, retrying short writes and EINTR. */
static int pwrite_full(int fd, const uint8_t *p, size_t len, int64_t pos)
{
	while (len > 0) {
		ssize_t n = log_segment_pwrite(fd, p, len, (off_t)pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOSPC || errno == EDQUOT)
				return -ERR_NOSPC;
			return errno == EIO ? -ERR_IO : -errno;
		}
		if (n == 0)
			return -ERR_IO;
		p += n;
		len -= (size_t)n;
		pos += n;
	}
	return 0;
}

int log_segment_flush(struct log_segment *s)
{
	if (s->wbuf_len == 0)
		return 0;
	int rc = pwrite_full(s->fd, s->wbuf, s->wbuf_len, s->size - (int64_t)s->wbuf_len);
	if (rc) {
		diag_error(MOD, "%s: writing buffered appends: %s", s->log_path, err_str(rc));
		return rc; /* kept: retried by the next flush */
	}
	s->wbuf_len = 0;
	return 0;
}

void log_segment_set_buffer(struct log_segment *s, size_t bytes)
{
	if (log_segment_flush(s) == 0 && s->wbuf_cap != bytes) {
		free(s->wbuf);
		s->wbuf = NULL;
		s->wbuf_cap = bytes;
	}
}

/* Writes buf at the end: through the append buffer when it fits. */
static int write_tail(struct log_segment *s, const uint8_t *buf, size_t len)
{
	if (s->wbuf_cap == 0 || len > s->wbuf_cap) {
		int rc = log_segment_flush(s);
		return rc ? rc : pwrite_full(s->fd, buf, len, s->size);
	}
	if (s->wbuf_len + len > s->wbuf_cap) {
		int rc = log_segment_flush(s);
		if (rc)
			return rc;
	}
	if (!s->wbuf && !(s->wbuf = malloc(s->wbuf_cap)))
		return -ERR_NOMEM;
	memcpy(s->wbuf + s->wbuf_len, buf, len);
	s->wbuf_len += len;
	return 0;
}

int log_segment_append(struct log_segment *s, const uint8_t *buf, size_t len, int64_t now_ms)
{
	if (s->sealed)
		return -ERR_INVALID;
	if (len == 0)
		return 0;
	if ((uint64_t)len > (uint64_t)(LOG_SEGMENT_MAX_POSITION - s->size))
		return -ERR_TOO_LARGE;
	/* saved so a failed append leaves no trace */
	size_t n_oix = log_index_count(s->oix), n_tix = log_index_count(s->tix);
	int64_t max_ts = s->max_ts, offset_of_max = s->offset_of_max;
	int64_t last_index_pos = s->last_index_pos, roll_base = s->roll_base_ms;

	struct record_batch_walk w;
	struct record_batch_header h;
	struct slice b;
	size_t pos;
	int64_t next = s->next;
	int rc;
	record_batch_walk_init(&w, buf, len, SIZE_MAX, 0);
	while ((rc = record_batch_walk_next(&w, &h, &b, &pos)) == 1) {
		if (h.base_offset != next) {
			rc = -ERR_INVALID;
			break;
		}
		if ((uint64_t)(next - s->base) + (uint64_t)h.last_offset_delta + 1 > UINT32_MAX) {
			rc = -ERR_TOO_LARGE;
			break;
		}
		rc = index_batch(s, s->size + (int64_t)pos, &h, now_ms);
		if (rc)
			break;
		next = record_batch_last_offset(&h) + 1;
	}
	if (rc == 0)
		rc = write_tail(s, buf, len);
	if (rc) {
		log_index_truncate(s->oix, n_oix);
		log_index_truncate(s->tix, n_tix);
		s->max_ts = max_ts;
		s->offset_of_max = offset_of_max;
		s->last_index_pos = last_index_pos;
		s->roll_base_ms = roll_base;
		/* a partial write would be overwritten by the next append anyway */
		if (ftruncate(s->fd, (off_t)(s->size - (int64_t)s->wbuf_len)) < 0)
			diag_warn(MOD, "%s: cannot cut a failed write: %s", s->log_path, strerror(errno));
		return rc;
	}
	s->size += (int64_t)len;
	s->next = next;
	s->dirty = 1;
	return 0;
}

int log_segment_sync(struct log_segment *s)
{
	int rc = log_segment_flush(s);
	if (rc)
		return rc;
	while (log_segment_fdatasync(s->fd) < 0) {
		if (errno != EINTR)
			return errno == EIO ? -ERR_IO : -errno;
	}
	s->dirty = 0;
	return 0;
}

int log_segment_dirty(const struct log_segment *s)
{
	return s->dirty;
}

int log_segment_seal(struct log_segment *s)
{
	if (s->sealed)
		return 0;
	int rc = log_segment_flush(s);
	if (rc)
		return rc;
	s->sealed = 1;
	return write_indexes(s);
}

/* Position and offset where a scan for offset may start, from the offset index. */
static int index_start(struct log_segment *s, int64_t offset, int64_t *pos, int64_t *expect)
{
	struct log_index_entry e;
	int rc = log_index_find_key(s->oix, offset - s->base, &e);
	if (rc == -ERR_NOT_FOUND) {
		*pos = 0;
		*expect = s->base;
		return 0;
	}
	if (rc)
		return rc;
	*pos = e.value;
	*expect = s->base + e.key;
	return 0;
}

static int find_once(struct log_segment *s, struct scan *sc, int64_t offset,
		     struct log_segment_batch *out)
{
	int64_t pos, expect;
	if (offset < s->base)
		offset = s->base;
	int rc = index_start(s, offset, &pos, &expect);
	if (rc)
		return rc;
	struct record_batch_header h;
	const char *why;
	while (pos < s->size) {
		rc = scan_batch(s, sc, pos, expect, 0, &h, &why);
		if (rc)
			return rc;
		int64_t last = record_batch_last_offset(&h);
		if (last >= offset) {
			out->position = pos;
			out->size = (int64_t)record_batch_size(&h);
			out->base_offset = h.base_offset;
			out->last_offset = last;
			out->max_timestamp = h.max_timestamp;
			return 0;
		}
		pos += (int64_t)record_batch_size(&h);
		expect = last + 1;
	}
	return -ERR_CORRUPT;
}

static int read_once(struct log_segment *s, struct scan *sc, int64_t offset, int64_t max_bytes,
		     struct log_segment_range *out)
{
	struct log_segment_batch b;
	int rc = find_once(s, sc, offset, &b);
	if (rc)
		return rc;
	int64_t end = b.position + b.size, next = b.last_offset + 1;
	int64_t limit = max_bytes > s->size - b.position ? s->size : b.position + max_bytes;
	if (end < limit) {
		/* every batch between end and an indexed position below the limit is whole */
		struct log_index_entry e;
		rc = log_index_find_value(s->oix, (uint64_t)limit, &e);
		if (rc == 0 && (int64_t)e.value > end) {
			end = e.value;
			next = s->base + e.key;
		} else if (rc != 0 && rc != -ERR_NOT_FOUND) {
			return rc;
		}
		struct record_batch_header h;
		const char *why;
		/* the header at end is read even when it cannot fit: it checks the jump */
		while (end < s->size) {
			rc = scan_batch(s, sc, end, next, 0, &h, &why);
			if (rc)
				return rc;
			if ((int64_t)record_batch_size(&h) > limit - end)
				break;
			end += (int64_t)record_batch_size(&h);
			next = record_batch_last_offset(&h) + 1;
		}
	}
	out->position = b.position;
	out->length = end - b.position;
	out->first_offset = b.base_offset;
	out->next_offset = next;
	return 0;
}

static int find_time_once(struct log_segment *s, struct scan *sc, int64_t ts, int64_t *offset)
{
	int64_t pos = 0, expect = s->base;
	struct log_index_entry t;
	int rc;
	/* batches up to the one at an entry with key < ts all have maxTimestamp < ts */
	if (ts > INT64_MIN) {
		rc = log_index_find_key(s->tix, ts - 1, &t);
		if (rc == 0)
			rc = index_start(s, s->base + t.value, &pos, &expect);
		if (rc && rc != -ERR_NOT_FOUND)
			return rc;
	}
	struct record_batch_header h;
	const char *why;
	while (pos < s->size) {
		rc = scan_batch(s, sc, pos, expect, 0, &h, &why);
		if (rc)
			return rc;
		if (h.max_timestamp >= ts) {
			*offset = h.base_offset;
			return 0;
		}
		pos += (int64_t)record_batch_size(&h);
		expect = record_batch_last_offset(&h) + 1;
	}
	return -ERR_CORRUPT; /* max_ts said a batch qualifies */
}

/* One lookup: the kind, its argument, where the answer goes. */
struct lookup {
	enum { LOOKUP_FIND, LOOKUP_READ, LOOKUP_TIME } kind;
	int64_t key;                     /* offset, or timestamp for LOOKUP_TIME */
	int64_t max_bytes;               /* LOOKUP_READ */
	struct log_segment_batch *batch; /* LOOKUP_FIND */
	struct log_segment_range *range; /* LOOKUP_READ */
	int64_t *offset;                 /* LOOKUP_TIME */
};

static int lookup_once(struct log_segment *s, struct scan *sc, const struct lookup *q)
{
	switch (q->kind) {
	case LOOKUP_FIND:
		return find_once(s, sc, q->key, q->batch);
	case LOOKUP_READ:
		return read_once(s, sc, q->key, q->max_bytes, q->range);
	default:
		return find_time_once(s, sc, q->key, q->offset);
	}
}

/*
 * Runs a lookup guided by the indexes; if what it reads disagrees with them,
 * rebuilds them from the .log and runs it once more.
 */
static int lookup(struct log_segment *s, const struct lookup *q)
{
	int rc = log_segment_flush(s);
	if (rc)
		return rc;
	rc = ensure_checked(s);
	if (rc)
		return rc;
	uint8_t buf[SCAN_BUF_SMALL];
	struct scan sc;
	scan_init(&sc, s->fd, buf, sizeof buf, s->size);
	rc = lookup_once(s, &sc, q);
	if (rc != -ERR_CORRUPT)
		return rc;
	diag_warn(MOD, "%s: lookup of %s %" PRId64 " disagrees with the index, rebuilding it",
		  s->log_path, q->kind == LOOKUP_TIME ? "timestamp" : "offset", q->key);
	rc = reindex(s);
	if (rc)
		return rc;
	if (q->kind == LOOKUP_TIME && s->max_ts < q->key)
		return -ERR_NOT_FOUND;
	scan_init(&sc, s->fd, buf, sizeof buf, s->size);
	return lookup_once(s, &sc, q);
}

int log_segment_find(struct log_segment *s, int64_t offset, struct log_segment_batch *out)
{
	if (offset >= s->next)
		return -ERR_NOT_FOUND;
	struct lookup q = { .kind = LOOKUP_FIND, .key = offset, .batch = out };
	return lookup(s, &q);
}

int log_segment_read(struct log_segment *s, int64_t offset, int64_t max_bytes,
		     struct log_segment_range *out)
{
	if (offset >= s->next)
		return -ERR_NOT_FOUND;
	struct lookup q = { .kind = LOOKUP_READ, .key = offset, .max_bytes = max_bytes, .range = out };
	return lookup(s, &q);
}

int log_segment_find_time(struct log_segment *s, int64_t ts, int64_t *offset)
{
	if (s->size == 0 || s->max_ts < ts)
		return -ERR_NOT_FOUND;
	struct lookup q = { .kind = LOOKUP_TIME, .key = ts, .offset = offset };
	return lookup(s, &q);
}

int log_segment_truncate(struct log_segment *s, int64_t position)
{
	int frc = log_segment_flush(s);
	if (frc)
		return frc;
	if (position < 0 || position > s->size)
		return -ERR_RANGE;
	if (position == s->size)
		return 0;
	if (ftruncate(s->fd, (off_t)position) < 0)
		return -errno;
	s->size = position;
	log_index_unlink(s->oix);
	log_index_unlink(s->tix);
	/* a position inside a batch leaves a torn batch: the rebuild cuts it */
	int rc = rebuild(s, position, 0, 1, INT64_MAX);
	if (rc == 0 && s->sealed)
		rc = write_indexes(s);
	return rc;
}

int log_segment_truncate_offset(struct log_segment *s, int64_t offset)
{
	if (offset >= s->next)
		return 0;
	if (offset <= s->base)
		return log_segment_truncate(s, 0);
	struct log_segment_batch b;
	int rc = log_segment_find(s, offset, &b);
	if (rc)
		return rc;
	return log_segment_truncate(s, b.position);
}

int64_t log_segment_base_offset(const struct log_segment *s)
{
	return s->base;
}

int64_t log_segment_next_offset(const struct log_segment *s)
{
	return s->next;
}

int64_t log_segment_size(const struct log_segment *s)
{
	return s->size;
}

int64_t log_segment_max_timestamp(const struct log_segment *s)
{
	return s->max_ts;
}

int64_t log_segment_retention_ms(const struct log_segment *s)
{
	if (s->max_ts >= 0)
		return s->max_ts;
	struct stat st;
	if (fstat(s->fd, &st) < 0)
		return INT64_MAX; /* unknown: never old */
	return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

int64_t log_segment_roll_base_ms(const struct log_segment *s)
{
	return s->roll_base_ms;
}

struct flusher_file *log_segment_file(const struct log_segment *s)
{
	return s->file;
}

const char *log_segment_path(const struct log_segment *s)
{
	return s->log_path;
}
