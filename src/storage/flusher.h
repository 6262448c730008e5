/*
 * flusher.h: makes appended data durable, off the event loops.
 *
 * A flusher is one background thread that fsyncs files (fdatasync) according
 * to the durability policy (config log.flush):
 *   - CONFIG_FLUSH_BATCH: flusher_sync() queues the file; the thread takes every
 *     queued request at once, fsyncs each distinct file once, then calls every
 *     request's callback. Requests arriving during an fsync wait for the next
 *     round, so concurrent appenders share fsyncs (group commit).
 *   - CONFIG_FLUSH_INTERVAL: the callback runs at once in the caller's thread
 *     (the policy promises only "within N ms"); the file is marked dirty and the
 *     thread fsyncs dirty files every interval.
 *   - CONFIG_FLUSH_OS: the callback runs at once; nothing is fsynced until
 *     close (the OS writes back).
 * Callbacks of BATCH requests run on the flusher thread: a caller owned by a
 * loop thread posts the result back to its loop itself (net/loop messages).
 *
 * Files are shared between a log (which appends and may close/roll) and the
 * flusher (which fsyncs later) through struct flusher_file, a reference-counted
 * file descriptor: the fd is closed when the last reference is dropped.
 */
#ifndef SLUICE_FLUSHER_H
#define SLUICE_FLUSHER_H

#include <stdint.h>

#include "core/config.h"

struct flusher;
struct flusher_file;

/* Result of a sync request: status 0 or a negative error (fsync failed). */
typedef void (*flusher_done_fn)(void *arg, int status);

/* Wraps fd (moved: closed when the last reference goes); refcount starts at 1. */
struct flusher_file *flusher_file_new(int fd);
/* Adds a reference; returns f. Thread-safe. */
struct flusher_file *flusher_file_ref(struct flusher_file *f);
/* Drops a reference; closes the fd and frees at zero. Thread-safe. */
void flusher_file_unref(struct flusher_file *f);
/* The wrapped descriptor (borrowed). */
int flusher_file_fd(const struct flusher_file *f);

/* Starts a flusher thread with a policy and interval; returns 0 or an error. */
int flusher_new(enum config_flush policy, int64_t interval_ms, struct flusher **out);
/* Completes every queued request (fsyncing first), stops the thread, frees. */
void flusher_free(struct flusher *fl);
/* The policy this flusher applies. */
enum config_flush flusher_policy(const struct flusher *fl);
/*
 * Requests that everything written to f so far be made durable per the policy,
 * then done(arg, status) is called exactly once (see above for which thread).
 * Takes its own reference on f. Returns 0, or -ERR_CLOSED after flusher_free began
 * (done is not called then).
 */
int flusher_sync(struct flusher *fl, struct flusher_file *f, flusher_done_fn done, void *arg);
/* Number of fsync calls made so far (for tests and metrics). */
uint64_t flusher_fsync_count(const struct flusher *fl);

#endif
