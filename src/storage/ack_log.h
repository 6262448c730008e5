/*
 * ack_log.h: the append-only record of a queue's acks and delivery marks.
 *
 * A queue on a log (broker/queue.h) must remember which stored messages were
 * acked, so a restart redelivers exactly the others, and how far deliveries
 * went, so a restart can set "redelivered" on messages that had been handed
 * out. Both are appended here as 8-byte big-endian entries:
 *
 *   offset >= 0      message at that offset was acked
 *   -(mark + 1)      every message below `mark` may have been delivered
 *
 * Entries are buffered in memory and written with one write(2) by
 * ack_log_flush (the queue flushes before a delivery leaves and at the end of
 * each burst of work), or when 512 are pending. Written entries survive a
 * process crash; a crash may forget pending acks and a power loss the last
 * written ones, which only means a message is delivered again. A torn last entry is ignored at open. When the queue's ack
 * floor moves, the file is rewritten (temp file, fsync, rename) with only the
 * entries at or above the floor: format version 1, no header.
 *
 * Owned by one thread (the queue's owner).
 */
#ifndef SLUICE_ACK_LOG_H
#define SLUICE_ACK_LOG_H

#include <stddef.h>
#include <stdint.h>

struct ack_log;

/* Called for every ack entry found at open (offset), in file order. */
typedef void (*ack_log_fn)(void *arg, int64_t offset);

/*
 * Opens (creating) path; calls fn for every ack entry and sets *mark to the
 * highest delivery mark (-1 if none). Returns 0 or a negative error.
 */
int ack_log_open(const char *path, ack_log_fn fn, void *arg, int64_t *mark, struct ack_log **out);
/* fsyncs and closes. */
void ack_log_close(struct ack_log *a);
/* Writes the pending entries. 0 or a negative error (they stay pending). */
int ack_log_flush(struct ack_log *a);
/* Appends an ack of offset (pending until the next flush). */
int ack_log_ack(struct ack_log *a, int64_t offset);
/* Appends a delivery mark: messages below mark may have been delivered.
 * It must be flushed before such a message leaves the queue. */
int ack_log_mark(struct ack_log *a, int64_t mark);
/*
 * Rewrites the file with the given acks (all >= the new floor) and the mark,
 * atomically (temp file, fsync, rename). Returns 0 or a negative error (the old
 * file then stays in use).
 */
int ack_log_rewrite(struct ack_log *a, const int64_t *acks, size_t n, int64_t mark);
/* Bytes in the file now (to decide when to rewrite). */
int64_t ack_log_size(const struct ack_log *a);

#endif
