/*
 * log_segment.h: one segment of a log: "<base>.log" and its two indexes.
 *
 *   00000000000000001000.log        record batches, back to back, offsets
 *                                   contiguous from the base offset (1000)
 *   00000000000000001000.index      sparse offset index (log_index.h)
 *   00000000000000001000.timeindex  sparse time index (log_index.h)
 *
 * The base offset, written with 20 digits, is the offset of the segment's first
 * batch. Index entries are added for the first batch and then for the first
 * batch starting index_interval_bytes or more after the previous entry; a time
 * entry (largest timestamp so far, offset of the batch that reached it) goes
 * with each offset entry when the largest timestamp grew, and once more when
 * the segment is sealed. This rule depends only on the batches, so an index
 * rebuilt from the .log is identical to the one built while appending.
 *
 * The active segment keeps its indexes in memory; sealing (log roll) or closing
 * writes them out. Opening a segment either recovers it (the tail of a log:
 * every batch is checked, CRC included, the file is cut at the first bad one and
 * the indexes are rebuilt) or trusts the .log and checks the index files
 * cheaply, rebuilding them when they do not match.
 *
 * The .log descriptor is held in a struct flusher_file so the flusher thread can
 * fsync it after the segment was closed or deleted.
 *
 * Owned by a struct log; one thread at a time. Positions are u32 (a segment is
 * smaller than 4 GiB) and offsets relative to the base fit u32.
 */
#ifndef SLUICE_LOG_SEGMENT_H
#define SLUICE_LOG_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct flusher_file;
struct log_segment;

#define LOG_SEGMENT_MAX_POSITION ((int64_t)UINT32_MAX)

/* Where a batch lies in a segment. */
struct log_segment_batch {
	int64_t position;      /* file position of the batch's first byte */
	int64_t size;          /* bytes */
	int64_t base_offset;
	int64_t last_offset;
	int64_t max_timestamp;
};

/* A file range of whole batches (log_segment_read). */
struct log_segment_range {
	int64_t position;      /* of the first batch */
	int64_t length;        /* bytes, whole batches */
	int64_t first_offset;  /* base offset of the first batch */
	int64_t next_offset;   /* offset after the last batch */
};

/* Creates an empty segment at base in dir (the .log must not exist). */
int log_segment_create(const char *dir, int64_t base, int64_t index_interval_bytes,
		       struct log_segment **out);
/*
 * Opens an existing segment. recover = 1 (the tail of a log): checks every batch
 * (length, magic, CRC, contiguous offsets), truncates the file at the first bad
 * one with a diag_warn naming file, position and bytes cut, and rebuilds the
 * indexes. recover = 0: trusts the .log; checks the index files against it
 * (last entries, then every entry on first use) and rebuilds them when missing
 * or inconsistent. now_ms clamps the roll clock (log_segment_roll_base_ms).
 */
int log_segment_open(const char *dir, int64_t base, int64_t index_interval_bytes, int recover,
		     int64_t now_ms, struct log_segment **out);
/* Writes dirty in-memory indexes (not sealed: no final time entry), drops the fd, frees. */
void log_segment_close(struct log_segment *s);
/* Removes the segment's files and frees it (pending fsyncs keep the fd alive). */
int log_segment_delete(struct log_segment *s);

/*
 * Appends len bytes of batches (already validated, offsets already assigned:
 * the first must start at log_segment_next_offset, then contiguous). One
 * positioned write of the caller's buffer (short writes and EINTR retried).
 * Nothing changes on failure: -ERR_NOSPC, -ERR_IO / -errno, -ERR_INVALID (bad
 * offsets, sealed), -ERR_TOO_LARGE (past 4 GiB). now_ms starts the roll clock of
 * an empty segment.
 */
int log_segment_append(struct log_segment *s, const uint8_t *buf, size_t len, int64_t now_ms);
/* fdatasync of the .log; clears the dirty mark. */
int log_segment_sync(struct log_segment *s);
/*
 * Buffers appends of up to bytes in memory (0: write each append at once), so
 * many small appends cost one pwrite. Buffered bytes are written by
 * log_segment_flush, by any read, sync, seal, truncate or close, and when the
 * buffer is full; until then they are lost by a process crash, so only logs
 * whose writer flushes before acknowledging anything use it.
 */
void log_segment_set_buffer(struct log_segment *s, size_t bytes);
/* Writes the buffered appends. 0 or a negative error (they stay buffered). */
int log_segment_flush(struct log_segment *s);
/* True when appends happened since the last log_segment_sync. */
int log_segment_dirty(const struct log_segment *s);
/* Ends appends: adds the final time entry and writes both indexes. */
int log_segment_seal(struct log_segment *s);

/* The batch containing offset, or the first batch after it; -ERR_NOT_FOUND past the end. */
int log_segment_find(struct log_segment *s, int64_t offset, struct log_segment_batch *out);
/*
 * Whole batches starting with the batch containing offset (or the first one
 * after it), adding batches while the total stays <= max_bytes, but always at
 * least one. -ERR_NOT_FOUND when offset >= the segment's next offset.
 */
int log_segment_read(struct log_segment *s, int64_t offset, int64_t max_bytes,
		     struct log_segment_range *out);
/* Base offset of the first batch whose maxTimestamp >= ts; -ERR_NOT_FOUND if none. */
int log_segment_find_time(struct log_segment *s, int64_t ts, int64_t *offset);
/*
 * Cuts the .log at position (a batch boundary; a position inside a batch cuts
 * that batch too) and rebuilds the indexes.
 */
int log_segment_truncate(struct log_segment *s, int64_t position);
/* Cuts every batch whose last offset is >= offset (keeps offsets < offset). */
int log_segment_truncate_offset(struct log_segment *s, int64_t offset);

int64_t log_segment_base_offset(const struct log_segment *s);
/* Offset after the last batch (= base when empty). */
int64_t log_segment_next_offset(const struct log_segment *s);
/* Bytes of the .log. */
int64_t log_segment_size(const struct log_segment *s);
/* Largest maxTimestamp of its batches; INT64_MIN when empty. */
int64_t log_segment_max_timestamp(const struct log_segment *s);
/*
 * Time to judge retention by: the largest timestamp, or the file's mtime in ms
 * when no batch carries a timestamp >= 0 (as Kafka).
 */
int64_t log_segment_retention_ms(const struct log_segment *s);
/*
 * Time the segment's age counts from (roll by segment_ms): the first batch's
 * maxTimestamp, or the append/open time when that is negative or in the future;
 * INT64_MAX while empty (an empty segment never rolls by age).
 */
int64_t log_segment_roll_base_ms(const struct log_segment *s);
/* The .log as a shared file (borrowed; take a ref to keep it). */
struct flusher_file *log_segment_file(const struct log_segment *s);
/* Path of the .log (borrowed). */
const char *log_segment_path(const struct log_segment *s);

/* Test seam: the pwrite(2) appends use; tests swap it to inject short writes and ENOSPC. */
extern ssize_t (*log_segment_pwrite)(int fd, const void *buf, size_t len, off_t pos);
/* Test seam: the fdatasync(2) of log_segment_sync; tests swap it to inject EIO. */
extern int (*log_segment_fdatasync)(int fd);

#endif
