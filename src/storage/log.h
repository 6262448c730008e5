/*
 * log.h: a log, the storage of one Kafka partition or one AMQP queue: a
 * directory of segments (log_segment.h) holding Kafka RecordBatch v2 batches
 * with contiguous offsets.
 *
 *   <dir>/00000000000000000000.log  .index  .timeindex    sealed
 *   <dir>/00000000000000004711.log  .index  .timeindex    sealed
 *   <dir>/00000000000000009000.log                        active: appends go here
 *
 * Appends validate every batch (header, size cap, CRC), assign offsets by
 * rewriting each baseOffset in the caller's buffer (and, for LogAppendTime,
 * the timestamp type, maxTimestamp and CRC), then write the buffer as it is
 * with one pwrite. No record is looked at. Reads return file ranges of whole
 * batches for sendfile, found through the sparse index and a short scan.
 *
 * Opening a log recovers it: the tail segment is checked batch by batch and cut
 * at the first bad one (a torn write), indexes are rebuilt where missing or
 * inconsistent, stray files are ignored. See docs/storage.md.
 *
 * Durability is the flusher's job (flusher.h): log_append returns the segment's
 * struct flusher_file for flusher_sync. All of one append goes to one segment
 * (a roll happens before writing, never in the middle), so that one file covers
 * the whole append.
 *
 * Threading: a log has no locks. It is owned by one thread at a time (the loop
 * thread that owns the partition or queue); every call on it, reads included,
 * must come from that thread. Other threads only hold flusher_file references
 * (the flusher, a read in flight), which are thread-safe.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/writer.h"

struct flusher_file;
struct log;

struct log_config {
	int64_t segment_bytes;        /* roll when an append would pass this (1 .. 4 GiB - 1) */
	int64_t segment_ms;           /* roll a segment older than this; -1 never */
	int64_t index_interval_bytes; /* bytes between offset-index entries (>= 0) */
	int64_t retention_ms;         /* delete segments whose newest timestamp is older; -1 never */
	int64_t retention_bytes;      /* delete oldest segments while larger; -1 no limit */
	int64_t max_batch_bytes;      /* largest batch accepted by log_append (>= 61) */
};

/* Kafka's defaults: 1 GiB segments, 7 days, 4096-byte index interval, 7 days retention. */
void log_config_defaults(struct log_config *cfg);
/* Checks the bounds above; 0 or -ERR_INVALID. */
int log_config_check(const struct log_config *cfg);

/* What log_append did. */
struct log_append_result {
	int64_t base_offset;        /* offset of the first record appended */
	int64_t last_offset;        /* offset of the last record appended */
	int64_t log_append_time;    /* now_ms when LogAppendTime was applied, else -1 */
	struct flusher_file *file;  /* borrowed: the segment written; valid until the next
				     * call on the log (flusher_sync takes its own reference) */
};

/* A file range of whole batches from log_read. */
struct log_read_result {
	struct flusher_file *file;  /* owned reference (drop with log_read_result_release);
				     * NULL when length is 0 or after log_read_copy */
	int fd;                     /* flusher_file_fd(file), -1 when file is NULL */
	int64_t position;           /* file position of the first byte */
	int64_t length;             /* bytes; 0 at the end of the log */
	int64_t first_offset;       /* base offset of the first batch (end offset when empty) */
	int64_t next_offset;        /* offset after the last batch returned */
};

/*
 * Opens (creating dir and an empty first segment if needed) and recovers the
 * log in dir. Returns 0, -ERR_INVALID for a bad config, or an I/O error.
 */
int log_open(const char *dir, const struct log_config *cfg, int64_t now_ms, struct log **out);
/* fdatasyncs what was written since the last sync, closes and frees; returns the sync result. */
int log_close(struct log *log);
/*
 * After an fdatasync of the log failed (log_sync, log_close, or the one at a
 * roll), the error is sticky: log_append and log_sync return it from then on
 * (reads still work), because a later fdatasync could succeed without the
 * pages the kernel dropped. Reopening the log (recovery) clears it.
 */
/* Closes and removes the directory and everything in it (topic deletion); frees. */
int log_delete(struct log *log);
/*
 * Removes dir and everything under it (depth first, symlinks not followed);
 * entries that vanish meanwhile are no error, a missing dir is (-ENOENT).
 * 0 or a negative errno. For any tree of the data directory (a log, a queue,
 * a topic).
 */
int log_remove_tree(const char *dir);
/* Replaces the configuration (topic config change); 0 or -ERR_INVALID. */
int log_set_config(struct log *log, const struct log_config *cfg);

/*
 * Appends len bytes of one or more batches. Every batch is validated first;
 * if any is bad nothing is stored: -ERR_CORRUPT (empty, malformed, CRC) or
 * -ERR_TOO_LARGE (a batch over max_batch_bytes, or too many offsets/bytes for
 * one segment). Rolls first when the active segment would pass segment_bytes
 * or is older than segment_ms. Rewrites baseOffsets (and LogAppendTime fields
 * when log_append_time) in batches, then writes them. I/O errors: -ERR_NOSPC,
 * -ERR_IO, -errno. On any error the log is unchanged, but batches may already
 * carry rewritten offsets.
 */
int log_append(struct log *log, uint8_t *batches, size_t len, int64_t now_ms, int log_append_time,
	       struct log_append_result *res);

/*
 * Finds whole batches starting with the one containing offset, up to max_bytes
 * but at least one batch, all from one segment. -ERR_RANGE when offset < start
 * or > end offset; an empty result (length 0) at the end offset.
 */
int log_read(struct log *log, int64_t offset, int64_t max_bytes, struct log_read_result *out);
/* Drops the reference a log_read result holds (safe on an empty result). */
void log_read_result_release(struct log_read_result *r);
/* As log_read, but appends the bytes to w (out->file is NULL). Errors as log_read or w's. */
int log_read_copy(struct log *log, int64_t offset, int64_t max_bytes, struct writer *w,
		  struct log_read_result *out);

/*
 * Buffers appends of up to bytes in memory (0, the default: every append is
 * one pwrite). Buffered appends are written by log_flush_buffer, by any read, sync,
 * roll or close, and when the buffer is full; a process crash loses them, so
 * a writer that uses this must log_flush_buffer before it acknowledges anything
 * (broker/queue.c does, before confirms and deliveries).
 */
void log_set_write_buffer(struct log *log, size_t bytes);
/* Writes the buffered appends. 0 or a negative error (they stay buffered). */
int log_flush_buffer(struct log *log);

/* First offset still stored (the first segment's base offset). */
int64_t log_start_offset(const struct log *log);
/* The next offset to assign. */
int64_t log_end_offset(const struct log *log);
/* Bytes in all .log files. */
int64_t log_size_bytes(const struct log *log);
/* Number of segments, the active one included. */
size_t log_segment_count(const struct log *log);
/* The directory (borrowed). */
const char *log_dir(const struct log *log);

/*
 * Kafka ListOffsets by timestamp: the base offset of the first batch whose
 * maxTimestamp >= ts, or the end offset when there is none.
 */
int log_offset_for_time(struct log *log, int64_t ts, int64_t *offset);

/*
 * Starts a new active segment at the end offset (nothing if the active one is
 * empty), after fdatasyncing the old one: sealed segments hold no torn batch.
 * now_ms is accepted for symmetry; a segment's age counts from its first batch.
 */
int log_roll(struct log *log, int64_t now_ms);
/* fdatasyncs every segment written since its last sync (normally the active one). */
int log_sync(struct log *log);
/*
 * Applies retention: deletes, oldest first, segments whose newest timestamp is
 * more than retention_ms before now_ms (the active one too, after rolling), then
 * oldest non-active segments while the log minus that segment still holds at
 * least retention_bytes (Kafka's rule). *deleted (may be NULL) counts segments.
 */
int log_retention_apply(struct log *log, int64_t now_ms, int *deleted);
/*
 * Deletes, oldest first, whole segments whose every offset is < offset (the
 * active one too, after rolling, once offset >= the end offset): queues call
 * this once messages are acked. *deleted (may be NULL) counts segments.
 */
int log_delete_before(struct log *log, int64_t offset, int *deleted);

#endif
