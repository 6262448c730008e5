/*
 * ack_log.c: append-only acks and delivery marks of one queue (see ack_log.h).
 * Entries are read back through struct reader; a torn tail is ignored.
 */
#include "storage/ack_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/diag.h"
#include "core/err.h"
#include "core/reader.h"
#include "core/writer.h"

#define ENTRY 8
#define READ_CHUNK (64 * 1024)
/* Entries buffered before a write (ack_log_flush writes them sooner). */
#define PENDING_MAX 512

struct ack_log {
	char *path; /* owned */
	int fd;
	int64_t size;                        /* bytes in the file and pending */
	uint8_t pending[PENDING_MAX * ENTRY]; /* entries not yet written */
	size_t n_pending;                    /* bytes in pending */
};

/*
 * Writes all of buf at file position pos; 0 or a negative errno. At a fixed
 * position, so that a write that failed part way (a full disk) is retried over
 * the same bytes and the file keeps its 8-byte entries aligned.
 */
static int pwrite_all(int fd, const uint8_t *buf, size_t len, int64_t pos)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t)pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ENOSPC ? -ERR_NOSPC : -errno;
		buf += n;
		len -= (size_t)n;
		pos += n;
	}
	return 0;
}

int ack_log_flush(struct ack_log *a)
{
	if (a->n_pending == 0)
		return 0;
	int rc = pwrite_all(a->fd, a->pending, a->n_pending, a->size - (int64_t)a->n_pending);
	if (rc) {
		diag_error("storage", "writing %s: %s", a->path, err_str(rc));
		return rc; /* kept: retried by the next flush */
	}
	a->n_pending = 0;
	return 0;
}

static int append_entry(struct ack_log *a, int64_t v)
{
	if (a->n_pending == sizeof a->pending) {
		int rc = ack_log_flush(a);
		if (rc)
			return rc;
	}
	struct writer w = { .buf = a->pending + a->n_pending, .cap = ENTRY, .limit = ENTRY };
	writer_i64(&w, v);
	a->n_pending += ENTRY;
	a->size += ENTRY;
	return 0;
}

int ack_log_open(const char *path, ack_log_fn fn, void *arg, int64_t *mark, struct ack_log **out)
{
	struct ack_log *a = calloc(1, sizeof *a);
	uint8_t *buf = malloc(READ_CHUNK);
	if (!a || !buf || !(a->path = strdup(path))) {
		free(buf);
		if (a)
			free(a->path);
		free(a);
		return -ERR_NOMEM;
	}
	a->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (a->fd < 0) {
		int rc = -errno;
		diag_error("storage", "cannot open %s: %s", path, strerror(errno));
		free(buf);
		free(a->path);
		free(a);
		return rc;
	}
	*mark = -1;
	int64_t pos = 0;
	for (;;) {
		ssize_t n = pread(a->fd, buf, READ_CHUNK, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t whole = (size_t)n / ENTRY * ENTRY;
		struct reader r;
		reader_init(&r, buf, whole);
		while (reader_remaining(&r) >= ENTRY) {
			int64_t v = reader_i64(&r);
			if (v >= 0)
				fn(arg, v);
			else if (-(v + 1) > *mark)
				*mark = -(v + 1);
		}
		pos += (int64_t)whole;
		if (whole < (size_t)n)
			break; /* a torn last entry */
	}
	free(buf);
	off_t end = lseek(a->fd, 0, SEEK_END);
	if (end != pos) {
		diag_warn("storage", "%s: ignoring %lld bytes of a torn last entry", path,
			  (long long)(end - pos));
		if (ftruncate(a->fd, pos) == 0)
			lseek(a->fd, pos, SEEK_SET);
	}
	a->size = pos;
	*out = a;
	return 0;
}

void ack_log_close(struct ack_log *a)
{
	if (!a)
		return;
	ack_log_flush(a);
	if (fdatasync(a->fd))
		diag_error("storage", "fsync of %s failed: %s", a->path, strerror(errno));
	close(a->fd);
	free(a->path);
	free(a);
}

int ack_log_ack(struct ack_log *a, int64_t offset)
{
	return offset < 0 ? -ERR_INVALID : append_entry(a, offset);
}

int ack_log_mark(struct ack_log *a, int64_t mark)
{
	return mark < 0 ? -ERR_INVALID : append_entry(a, -(mark + 1));
}

int ack_log_rewrite(struct ack_log *a, const int64_t *acks, size_t n, int64_t mark)
{
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", a->path);
	struct writer w;
	writer_init(&w, (n + 1) * ENTRY);
	for (size_t i = 0; i < n; i++)
		writer_i64(&w, acks[i]);
	if (mark >= 0)
		writer_i64(&w, -(mark + 1));
	int rc = w.err;
	int fd = rc ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (!rc && fd < 0)
		rc = -errno;
	if (!rc)
		rc = pwrite_all(fd, w.buf, w.len, 0);
	if (!rc && fdatasync(fd))
		rc = -errno;
	if (!rc && rename(tmp, a->path))
		rc = -errno;
	if (rc) {
		diag_warn("storage", "rewriting %s failed: %s", a->path, err_str(rc));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		writer_fini(&w);
		return rc;
	}
	close(a->fd);
	a->fd = fd;
	lseek(a->fd, 0, SEEK_END);
	a->size = (int64_t)w.len;
	a->n_pending = 0; /* the rewrite holds every entry that still matters */
	writer_fini(&w);
	return 0;
}

int64_t ack_log_size(const struct ack_log *a)
{
	return a->size;
}
