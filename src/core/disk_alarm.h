/*
 * disk_alarm.h: the free disk space alarm (config disk.free.limit.bytes), as
 * RabbitMQ's disk_free_limit.
 *
 * When the filesystem holding the data directory has less free space than the
 * limit, the alarm is raised and AMQP publishers are blocked (connection.blocked
 * "low on disk", reading paused) until it has more again, so a full disk stops
 * publishes instead of failing the appends of messages already accepted.
 * Evaluated lazily: whoever asks re-reads statvfs(2) at most once per
 * DISK_ALARM_CHECK_MS across all threads, and gets the state of the last look
 * otherwise. Safe from any thread.
 */
#ifndef SLUICE_DISK_ALARM_H
#define SLUICE_DISK_ALARM_H

#include <stdbool.h>
#include <stdint.h>

/* How old a look at the free space may be before the next ask re-reads it. */
#define DISK_ALARM_CHECK_MS 1000

/*
 * Watches path's filesystem with a limit in bytes (0 disables the alarm and
 * clears it). path is copied. Call before the loops start.
 */
void disk_alarm_configure(const char *path, int64_t limit_bytes);
/* Whether the alarm is raised (re-reading the free space when the last look is old). */
bool disk_alarm_raised(void);
/* Free bytes at the last look (-1 before the first one or when statvfs failed). */
int64_t disk_alarm_free_bytes(void);

#endif
