/*
 * disk_alarm.c: the free disk space alarm (see disk_alarm.h).
 *
 * One thread at a time takes the look (a compare-and-swap on the time of the
 * next one); the others read the state as it is. A failing statvfs leaves the
 * alarm as it was and is logged once.
 */
#include "core/disk_alarm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/clock.h"
#include "core/diag.h"

static char watched[4096];
static int64_t limit;                /* set before the loops start */
static atomic_llong next_look_ms;    /* monotonic ms; 0 = look at the next ask */
static atomic_llong free_bytes = -1;
static atomic_bool raised;
static atomic_bool failure_logged;

void disk_alarm_configure(const char *path, int64_t limit_bytes)
{
	snprintf(watched, sizeof watched, "%s", path);
	limit = limit_bytes > 0 ? limit_bytes : 0;
	atomic_store(&next_look_ms, 0);
	atomic_store(&free_bytes, -1);
	atomic_store(&raised, false);
}

static void look(void)
{
	struct statvfs st;
	if (statvfs(watched, &st) != 0) {
		if (!atomic_exchange(&failure_logged, true))
			diag_warn("disk", "cannot read the free space of %s: %s; the disk alarm keeps its state",
				  watched, strerror(errno));
		atomic_store(&free_bytes, -1);
		return;
	}
	/* f_bavail: blocks free to unprivileged users, as df shows them. */
	int64_t avail = st.f_bavail > (uint64_t)INT64_MAX / (st.f_frsize ? st.f_frsize : 1)
				? INT64_MAX
				: (int64_t)(st.f_bavail * st.f_frsize);
	atomic_store(&free_bytes, avail);
	bool now = avail < limit;
	if (atomic_exchange(&raised, now) != now) {
		if (now)
			diag_warn("disk", "free disk space %" PRId64 " bytes is below disk.free.limit.bytes "
				  "%" PRId64 ": publishers are blocked", avail, limit);
		else
			diag_info("disk", "free disk space %" PRId64 " bytes is above disk.free.limit.bytes "
				  "%" PRId64 " again: publishers may go on", avail, limit);
	}
}

bool disk_alarm_raised(void)
{
	if (limit == 0)
		return false;
	int64_t now = clock_mono_ns() / 1000000;
	long long due = atomic_load_explicit(&next_look_ms, memory_order_relaxed);
	if (now >= due &&
	    atomic_compare_exchange_strong(&next_look_ms, &due, now + DISK_ALARM_CHECK_MS))
		look();
	return atomic_load_explicit(&raised, memory_order_relaxed);
}

int64_t disk_alarm_free_bytes(void)
{
	return atomic_load(&free_bytes);
}
