/*
 * log_index.c: sorted fixed-size entries in memory (a writer buffer) or in a
 * read-only mapping of the index file. Both hold the same big-endian encoding,
 * so one decoder (through struct reader) serves both, and persisting is one
 * write of the memory buffer.
 */
#include "storage/log_index.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/reader.h"
#include "core/writer.h"

#define MEM_LIMIT ((size_t)1 << 31) /* 2^31 bytes: far above any u32-position segment */

struct log_index {
	char *path;                /* owned */
	enum log_index_kind kind;
	size_t esz;                /* entry size */
	size_t n;                  /* entries */
	int in_file;               /* entries are those of the file, not of mem */
	int dirty;                 /* mem holds entries the file lacks */
	struct writer mem;         /* in-memory entries (when !in_file) */
	const uint8_t *map;        /* mapping of the file, NULL until first use */
	size_t map_len;
	struct log_index_entry last; /* valid when n > 0 */
};

static size_t entry_size(enum log_index_kind kind)
{
	return kind == LOG_INDEX_OFFSET ? LOG_INDEX_OFFSET_ENTRY_SIZE : LOG_INDEX_TIME_ENTRY_SIZE;
}

/* Decodes one entry from esz bytes. */
static void decode(enum log_index_kind kind, const uint8_t *p, size_t len, struct log_index_entry *e)
{
	struct reader r;
	reader_init(&r, p, len);
	if (kind == LOG_INDEX_OFFSET)
		e->key = reader_u32(&r);
	else
		e->key = reader_i64(&r);
	e->value = reader_u32(&r);
}

static struct log_index *alloc_index(const char *path, enum log_index_kind kind)
{
	struct log_index *ix = calloc(1, sizeof *ix);
	if (!ix)
		return NULL;
	ix->path = strdup(path);
	if (!ix->path) {
		free(ix);
		return NULL;
	}
	ix->kind = kind;
	ix->esz = entry_size(kind);
	writer_init(&ix->mem, MEM_LIMIT);
	return ix;
}

int log_index_new(const char *path, enum log_index_kind kind, struct log_index **out)
{
	struct log_index *ix = alloc_index(path, kind);
	if (!ix)
		return -ERR_NOMEM;
	*out = ix;
	return 0;
}

/* pread of exactly len bytes at pos; 0, -ERR_CORRUPT on a short file, or -errno. */
static int pread_full(int fd, void *buf, size_t len, off_t pos)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pread(fd, p, len, pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ERR_CORRUPT;
		p += n;
		len -= (size_t)n;
		pos += n;
	}
	return 0;
}

int log_index_open(const char *path, enum log_index_kind kind, struct log_index **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ERR_NOT_FOUND : -errno;
	struct stat st;
	int rc = 0;
	struct log_index *ix = NULL;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	size_t esz = entry_size(kind);
	if (st.st_size < 0 || (uint64_t)st.st_size % esz != 0 || (uint64_t)st.st_size > MEM_LIMIT) {
		rc = -ERR_CORRUPT;
		goto out;
	}
	ix = alloc_index(path, kind);
	if (!ix) {
		rc = -ERR_NOMEM;
		goto out;
	}
	ix->in_file = 1;
	ix->n = (size_t)st.st_size / esz;
	if (ix->n > 0) {
		uint8_t buf[LOG_INDEX_TIME_ENTRY_SIZE];
		rc = pread_full(fd, buf, esz, (off_t)((ix->n - 1) * esz));
		if (rc)
			goto out;
		decode(kind, buf, esz, &ix->last);
	}
out:
	close(fd);
	if (rc) {
		log_index_free(ix);
		return rc;
	}
	*out = ix;
	return 0;
}

static void unmap(struct log_index *ix)
{
	if (ix->map) {
		munmap((void *)ix->map, ix->map_len);
		ix->map = NULL;
		ix->map_len = 0;
	}
}

void log_index_free(struct log_index *ix)
{
	if (!ix)
		return;
	unmap(ix);
	writer_fini(&ix->mem);
	free(ix->path);
	free(ix);
}

size_t log_index_count(const struct log_index *ix)
{
	return ix->n;
}

int log_index_last(const struct log_index *ix, struct log_index_entry *e)
{
	if (ix->n == 0)
		return -ERR_NOT_FOUND;
	*e = ix->last;
	return 0;
}

/* Maps the file of a file-backed index on first use; the file must still hold n entries. */
static int ensure_mapped(struct log_index *ix)
{
	if (!ix->in_file || ix->map || ix->n == 0)
		return 0;
	int fd = open(ix->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ERR_CORRUPT : -errno;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	size_t len = ix->n * ix->esz;
	if ((uint64_t)st.st_size != len) {
		rc = -ERR_CORRUPT; /* changed under us */
		goto out;
	}
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	ix->map = m;
	ix->map_len = len;
out:
	close(fd);
	return rc;
}

/* The encoded entries (mapped or in memory), after ensure_mapped. */
static const uint8_t *entries(const struct log_index *ix)
{
	return ix->in_file ? ix->map : ix->mem.buf;
}

int log_index_get(struct log_index *ix, size_t i, struct log_index_entry *e)
{
	if (i >= ix->n)
		return -ERR_RANGE;
	int rc = ensure_mapped(ix);
	if (rc)
		return rc;
	decode(ix->kind, entries(ix) + i * ix->esz, ix->esz, e);
	return 0;
}

/* Turns a file-backed index into an in-memory one holding the same entries. */
static int load_to_mem(struct log_index *ix)
{
	if (!ix->in_file)
		return 0;
	int rc = ensure_mapped(ix);
	if (rc)
		return rc;
	writer_reset(&ix->mem);
	if (ix->n)
		writer_bytes(&ix->mem, ix->map, ix->n * ix->esz);
	if (ix->mem.err)
		return ix->mem.err;
	unmap(ix);
	ix->in_file = 0;
	return 0;
}

int log_index_append(struct log_index *ix, int64_t key, uint32_t value)
{
	if (ix->n > 0 && (key <= ix->last.key || value <= ix->last.value))
		return -ERR_INVALID;
	if (ix->kind == LOG_INDEX_OFFSET && (key < 0 || key > UINT32_MAX))
		return -ERR_INVALID;
	int rc = load_to_mem(ix);
	if (rc)
		return rc;
	size_t before = ix->mem.len;
	if (ix->kind == LOG_INDEX_OFFSET)
		writer_u32(&ix->mem, (uint32_t)key);
	else
		writer_i64(&ix->mem, key);
	writer_u32(&ix->mem, value);
	if (ix->mem.err) {
		rc = ix->mem.err;
		ix->mem.len = before;
		ix->mem.err = 0;
		return rc;
	}
	ix->n++;
	ix->last.key = key;
	ix->last.value = value;
	ix->dirty = 1;
	return 0;
}

int log_index_truncate(struct log_index *ix, size_t n)
{
	if (n >= ix->n)
		return 0;
	int rc = load_to_mem(ix);
	if (rc)
		return rc;
	ix->n = n;
	ix->mem.len = n * ix->esz;
	if (n > 0)
		decode(ix->kind, ix->mem.buf + (n - 1) * ix->esz, ix->esz, &ix->last);
	ix->dirty = 1;
	return 0;
}

void log_index_clear(struct log_index *ix)
{
	unmap(ix);
	writer_reset(&ix->mem);
	ix->in_file = 0;
	ix->n = 0;
	ix->dirty = 1;
}

int log_index_check(struct log_index *ix, int64_t max_key, uint64_t max_value)
{
	int rc = ensure_mapped(ix);
	if (rc)
		return rc;
	const uint8_t *base = entries(ix);
	struct log_index_entry prev = { 0, 0 }, e;
	for (size_t i = 0; i < ix->n; i++) {
		decode(ix->kind, base + i * ix->esz, ix->esz, &e);
		if (i > 0 && (e.key <= prev.key || e.value <= prev.value))
			return -ERR_CORRUPT;
		if (e.key > max_key || e.value > max_value)
			return -ERR_CORRUPT;
		prev = e;
	}
	return 0;
}

/* Binary search for the last entry whose key (by_value = 0) or value is <= x. */
static int find(struct log_index *ix, int by_value, int64_t key, uint64_t value,
		struct log_index_entry *out)
{
	int rc = ensure_mapped(ix);
	if (rc)
		return rc;
	const uint8_t *base = entries(ix);
	size_t lo = 0, hi = ix->n; /* answer is lo - 1 when the loop ends */
	struct log_index_entry e;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		decode(ix->kind, base + mid * ix->esz, ix->esz, &e);
		int le = by_value ? (uint64_t)e.value <= value : e.key <= key;
		if (le)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -ERR_NOT_FOUND;
	decode(ix->kind, base + (lo - 1) * ix->esz, ix->esz, out);
	return 0;
}

int log_index_find_key(struct log_index *ix, int64_t key, struct log_index_entry *e)
{
	return find(ix, 0, key, 0, e);
}

int log_index_find_value(struct log_index *ix, uint64_t value, struct log_index_entry *e)
{
	return find(ix, 1, 0, value, e);
}

/* Writes len bytes fully; 0 or -errno (ENOSPC mapped to -ERR_NOSPC). */
static int write_full(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == ENOSPC ? -ERR_NOSPC : -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Formats "<path>.tmp" into buf. */
static int tmp_path(const struct log_index *ix, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s.tmp", ix->path);
	return (n < 0 || (size_t)n >= len) ? -ERR_INVALID : 0;
}

int log_index_persist(struct log_index *ix)
{
	if (ix->in_file)
		return 0;
	char tmp[4096 + 8];
	int rc = tmp_path(ix, tmp, sizeof tmp);
	if (rc)
		return rc;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return errno == ENOSPC ? -ERR_NOSPC : -errno;
	rc = write_full(fd, ix->mem.buf, ix->n * ix->esz);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, ix->path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	writer_fini(&ix->mem);
	writer_init(&ix->mem, MEM_LIMIT);
	ix->in_file = 1;
	ix->dirty = 0;
	return 0;
}

int log_index_dirty(const struct log_index *ix)
{
	return ix->dirty;
}

int log_index_unlink(struct log_index *ix)
{
	char tmp[4096 + 8];
	if (tmp_path(ix, tmp, sizeof tmp) == 0)
		unlink(tmp);
	if (ix->in_file)
		log_index_clear(ix);
	ix->dirty = 1;
	if (unlink(ix->path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
