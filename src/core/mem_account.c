/*
 * mem_account.c: counters of memory held for messages, and the watermark
 * alarm with hysteresis (see mem_account.h).
 *
 * Each kind's counter sits on its own cache line: the kinds are updated by
 * different code paths on different threads, and a shared line would bounce
 * between cores on every update. Updates are relaxed: the counters order
 * nothing, they only have to add up. A counter may briefly go negative when a
 * buffer is subtracted on one thread before its addition on another became
 * visible; the total is read as it is.
 */
#include "core/mem_account.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>

#include "core/diag.h"

struct mem_counter {
	_Alignas(64) atomic_llong bytes;
};

static struct mem_counter counters[MEM_KINDS];
static _Alignas(64) atomic_llong high_mark;
static atomic_bool alarm_on;

static const char *const kind_names[MEM_KINDS] = {
	[MEM_CONN_OUTPUT] = "conn_output",
	[MEM_CONN_INPUT] = "conn_input",
	[MEM_AMQP_CONTENT] = "amqp_content",
	[MEM_IN_FLIGHT] = "in_flight",
	[MEM_QUEUE_CACHE] = "queue_cache",
};

void mem_account_add(enum mem_kind kind, int64_t delta)
{
	atomic_fetch_add_explicit(&counters[kind].bytes, delta, memory_order_relaxed);
}

int64_t mem_account_bytes(enum mem_kind kind)
{
	return atomic_load_explicit(&counters[kind].bytes, memory_order_relaxed);
}

int64_t mem_account_total(void)
{
	int64_t total = 0;
	for (int k = 0; k < MEM_COUNTED; k++)
		total += mem_account_bytes((enum mem_kind)k);
	return total;
}

const char *mem_account_kind_name(enum mem_kind kind)
{
	return kind >= 0 && kind < MEM_KINDS ? kind_names[kind] : "?";
}

void mem_account_set_watermark(int64_t high_bytes)
{
	atomic_store(&high_mark, high_bytes > 0 ? high_bytes : 0);
	if (high_bytes <= 0)
		atomic_store(&alarm_on, false);
}

int64_t mem_account_watermark(void)
{
	return atomic_load_explicit(&high_mark, memory_order_relaxed);
}

/* MEM_LOW_PERCENT of high, without overflowing for any int64 high. */
static int64_t low_mark(int64_t high)
{
	return high / 100 * MEM_LOW_PERCENT + high % 100 * MEM_LOW_PERCENT / 100;
}

/* Logs the alarm's change with every counter. */
static void log_change(bool raised, int64_t total, int64_t high)
{
	int64_t low = low_mark(high);
	char detail[256];
	int n = 0;
	detail[0] = '\0';
	for (int k = 0; k < MEM_KINDS && n >= 0 && (size_t)n < sizeof detail; k++)
		n += snprintf(detail + n, sizeof detail - (size_t)n, "%s%s %" PRId64, k ? ", " : "",
			      kind_names[k], mem_account_bytes((enum mem_kind)k));
	if (raised)
		diag_warn("memory", "memory high watermark passed: %" PRId64 " bytes held > %" PRId64
			  "; blocking publishing connections (%s)", total, high, detail);
	else
		diag_info("memory", "memory below the low mark: %" PRId64 " bytes held < %" PRId64
			  "; unblocking publishing connections (%s)", total, low, detail);
}

bool mem_account_alarm(void)
{
	int64_t high = mem_account_watermark();
	if (high == 0)
		return false;
	bool on = atomic_load_explicit(&alarm_on, memory_order_relaxed);
	int64_t total = mem_account_total();
	bool want = on ? total >= low_mark(high) : total > high;
	if (want != on && atomic_compare_exchange_strong(&alarm_on, &on, want))
		log_change(want, total, high);
	return atomic_load_explicit(&alarm_on, memory_order_relaxed);
}
