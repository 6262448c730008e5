/*
 * test_mem_account.c: the memory account's counters and the watermark alarm
 * (raised above the high mark, cleared below 90% of it, unchanged between),
 * counters added from several threads, and the queue cache not counting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "core/mem_account.h"

/* Brings every counter back to zero (the account is process-wide). */
static void reset(void)
{
	for (int k = 0; k < MEM_KINDS; k++)
		mem_account_add((enum mem_kind)k, -mem_account_bytes((enum mem_kind)k));
	mem_account_set_watermark(0);
}

static void test_counters(void **state)
{
	(void)state;
	reset();
	mem_account_add(MEM_CONN_OUTPUT, 1000);
	mem_account_add(MEM_CONN_INPUT, 200);
	mem_account_add(MEM_AMQP_CONTENT, 30);
	mem_account_add(MEM_IN_FLIGHT, 4);
	mem_account_add(MEM_QUEUE_CACHE, 1 << 20);
	assert_int_equal(mem_account_total(), 1234); /* the queue cache is not counted */
	assert_int_equal(mem_account_bytes(MEM_QUEUE_CACHE), 1 << 20);
	mem_account_add(MEM_CONN_OUTPUT, -1000);
	assert_int_equal(mem_account_total(), 234);
	assert_string_equal(mem_account_kind_name(MEM_CONN_OUTPUT), "conn_output");
	assert_string_equal(mem_account_kind_name(MEM_QUEUE_CACHE), "queue_cache");
	reset();
}

static void test_alarm_hysteresis(void **state)
{
	(void)state;
	reset();
	/* Disabled: never raised. */
	mem_account_add(MEM_CONN_OUTPUT, INT64_C(1) << 40);
	assert_false(mem_account_alarm());
	reset();

	mem_account_set_watermark(1000);
	assert_int_equal(mem_account_watermark(), 1000);
	mem_account_add(MEM_CONN_OUTPUT, 1000);
	assert_false(mem_account_alarm()); /* at the mark is not above it */
	mem_account_add(MEM_CONN_OUTPUT, 1);
	assert_true(mem_account_alarm());
	/* Between the low mark (900) and the high one: stays raised. */
	mem_account_add(MEM_CONN_OUTPUT, -101);
	assert_int_equal(mem_account_total(), 900);
	assert_true(mem_account_alarm());
	mem_account_add(MEM_CONN_OUTPUT, -1);
	assert_false(mem_account_alarm());
	/* Going up again: stays clear until above the high mark. */
	mem_account_add(MEM_IN_FLIGHT, 100);
	assert_int_equal(mem_account_total(), 999);
	assert_false(mem_account_alarm());
	mem_account_add(MEM_IN_FLIGHT, 2);
	assert_true(mem_account_alarm());
	/* Disabling clears it. */
	mem_account_set_watermark(0);
	assert_false(mem_account_alarm());
	/* The low mark of a huge watermark does not overflow. */
	mem_account_set_watermark(INT64_MAX);
	assert_false(mem_account_alarm());
	reset();
}

#define THREADS 4
#define ADDS 100000

static void *adder(void *arg)
{
	(void)arg;
	for (int i = 0; i < ADDS; i++) {
		mem_account_add(MEM_CONN_OUTPUT, 16384);
		mem_account_add(MEM_IN_FLIGHT, 7);
		mem_account_add(MEM_CONN_OUTPUT, -16384);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	reset();
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, adder, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(mem_account_bytes(MEM_CONN_OUTPUT), 0);
	assert_int_equal(mem_account_bytes(MEM_IN_FLIGHT), (int64_t)THREADS * ADDS * 7);
	reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_alarm_hysteresis),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
