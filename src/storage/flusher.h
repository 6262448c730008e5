/*
 * flusher.h: makes appended data durable, off the event loops.
 *
 * A flusher is a background thread (plus fsync helpers, below) that fsyncs
 * files (fdatasync) according to the durability policy (config log.flush):
 *   - CONFIG_FLUSH_BATCH: flusher_sync() queues the request on its file; a
 *     worker takes all of a file's queued requests at once, fsyncs the file
 *     once, then calls every one of their callbacks. Requests arriving during
 *     that fsync wait for the file's next one, so concurrent appenders to one
 *     log share fsyncs (group commit). Different files cannot share an fsync;
 *     they are fsynced in parallel, up to FLUSHER_FSYNC_PARALLEL at once, by the
 *     flusher thread and helper threads it starts when all workers are busy.
 *   - CONFIG_FLUSH_INTERVAL: the callback runs at once in the caller's thread
 *     (the policy promises only "within N ms"); the file is marked dirty and the
 *     thread fsyncs dirty files every interval.
 *   - CONFIG_FLUSH_OS: the callback runs at once; nothing is fsynced until
 *     close (the OS writes back). No thread is started.
 * Callbacks of BATCH requests run on a flusher thread, those of one file in
 * request order: a caller owned by a loop thread posts the result back to its
 * loop itself (net/loop messages), and callbacks must be quick.
 *
 * Files are shared between a log (which appends and may close/roll) and the
 * flusher (which fsyncs later) through struct flusher_file, a reference-counted
 * file descriptor: the fd is closed when the last reference is dropped.
 *
 * A failed fsync is sticky: after fdatasync fails on a file the kernel may have
 * dropped the dirty pages and a later fsync can falsely succeed (PostgreSQL's
 * "fsyncgate"), so the file keeps the error and every later request on it gets
 * the same negative status. The owner must treat that file as lost (close it,
 * truncate to the last durable offset on recovery). Each callback gets the
 * status of its own file's fsync.
 *
 * A file is used with one flusher at a time (one flusher per disk): while a
 * flusher holds requests or a dirty mark for it, flusher_sync through another
 * flusher returns -ERR_INVALID.
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
/* 0, or the negative error of the first failed fsync on f (sticky, see above). */
int flusher_file_error(const struct flusher_file *f);

/*
 * Starts a flusher thread with a policy and interval (used by INTERVAL only:
 * 1 ms .. FLUSHER_INTERVAL_MAX_MS); returns 0, -ERR_INVALID or -ERR_NOMEM.
 * The OS policy needs no thread and starts none.
 */
int flusher_new(enum config_flush policy, int64_t interval_ms, struct flusher **out);
#define FLUSHER_INTERVAL_MAX_MS (7LL * 24 * 3600 * 1000)
/* Most fsyncs in flight at once (the flusher thread and its helpers; see flusher.c). */
#define FLUSHER_FSYNC_PARALLEL 8
/*
 * Completes every queued request (fsyncing first; INTERVAL fsyncs its dirty
 * files), stops the thread, frees. Every accepted request's callback has run
 * when it returns. Must not be called from a flusher callback.
 */
void flusher_free(struct flusher *fl);
/* The policy this flusher applies. */
enum config_flush flusher_policy(const struct flusher *fl);
/*
 * Requests that everything written to f so far be made durable per the policy,
 * then done(arg, status) is called exactly once (see above for which thread).
 * Takes its own reference on f. Returns 0, or -ERR_CLOSED after flusher_free began
 * (or -ERR_NOMEM, or -ERR_INVALID if another flusher holds f); done is not
 * called then. Callbacks may call flusher_sync.
 */
int flusher_sync(struct flusher *fl, struct flusher_file *f, flusher_done_fn done, void *arg);
/* Number of fsync calls made so far (for tests and metrics). */
uint64_t flusher_fsync_count(const struct flusher *fl);

/* An fsync implementation: returns 0 or a negative errno. */
typedef int (*flusher_fsync_fn)(void *arg, int fd);
/*
 * Test seam: replaces fdatasync for later rounds (fn NULL restores it), so
 * tests can inject EIO or slow disks. Thread-safe.
 */
void flusher_set_fsync_fn(struct flusher *fl, flusher_fsync_fn fn, void *arg);

#endif
