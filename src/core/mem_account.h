/*
 * mem_account.h: the broker-wide account of memory held for messages, and the
 * memory high watermark (config memory.high_watermark) with its alarm.
 *
 * Each place that holds message bytes in memory adds to its kind's counter
 * when a buffer is allocated, grown or handed in, and subtracts when it is
 * freed or handed on: once per buffer change, never per byte. Counters are
 * relaxed atomics (one cache line each), so any thread may add. What each
 * kind counts is listed below and in docs/configuration.md.
 *
 * The alarm: once the counted total passes the high watermark it is raised,
 * and it stays raised until the total falls below the low mark (90% of the
 * high one), so publishers are not blocked and unblocked on every message.
 * Whoever asks (mem_account_alarm) re-evaluates it; the AMQP front end asks
 * when a publish arrives and, while a connection is blocked, on a timer.
 *
 * Safe from any thread.
 */
#ifndef SLUICE_MEM_ACCOUNT_H
#define SLUICE_MEM_ACCOUNT_H

#include <stdbool.h>
#include <stdint.h>

enum mem_kind {
	MEM_CONN_OUTPUT,  /* connections' queued output in memory (copies, moved buffers; not file ranges) */
	MEM_CONN_INPUT,   /* connections' own input buffers (capacity; the per-thread read buffer is not counted) */
	MEM_AMQP_CONTENT, /* AMQP message bodies of unfinished publishes (capacity) */
	MEM_IN_FLIGHT,    /* messages posted between loop threads: to a queue's owner, or a delivery back */
	MEM_QUEUE_CACHE,  /* queues' in-memory copies of recent messages: reported, NOT counted */
	MEM_KINDS
};

/* The kinds counted against the watermark are [0, MEM_COUNTED). */
#define MEM_COUNTED MEM_QUEUE_CACHE

/* The low mark, in percent of the high watermark: the alarm clears below it. */
#define MEM_LOW_PERCENT 90

/* Adds delta (may be negative) bytes to kind's counter. Any thread. */
void mem_account_add(enum mem_kind kind, int64_t delta);
/* Bytes currently counted for kind. */
int64_t mem_account_bytes(enum mem_kind kind);
/* Bytes counted against the watermark (every kind below MEM_COUNTED). */
int64_t mem_account_total(void);
/* A kind's name for diagnostics ("conn_output", ...). */
const char *mem_account_kind_name(enum mem_kind kind);

/* Sets the high watermark in bytes (0 disables the alarm and clears it). */
void mem_account_set_watermark(int64_t high_bytes);
/* The high watermark in bytes (0 = disabled). */
int64_t mem_account_watermark(void);
/*
 * Re-evaluates and returns the alarm: raised once the total is above the high
 * watermark, cleared once it is below the low mark, unchanged in between.
 * The thread that changes it logs the change (info) with the counters.
 */
bool mem_account_alarm(void);

#endif
