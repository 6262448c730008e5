/*
 * test_disk_alarm.c: the free disk space alarm. A limit above any free space
 * raises it, a limit of one byte or 0 (off) never does, and a path that
 * cannot be read leaves it as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/disk_alarm.h"

static void test_limits(void **state)
{
	(void)state;
	disk_alarm_configure(".", INT64_MAX); /* more than any filesystem has free */
	assert_true(disk_alarm_raised());
	assert_true(disk_alarm_free_bytes() >= 0);
	disk_alarm_configure(".", 1);
	assert_false(disk_alarm_raised());
	assert_true(disk_alarm_free_bytes() >= 1);
	disk_alarm_configure(".", 0); /* off: never raised, no look */
	assert_false(disk_alarm_raised());
	assert_int_equal(disk_alarm_free_bytes(), -1);
}

static void test_unreadable_path_keeps_state(void **state)
{
	(void)state;
	disk_alarm_configure("/nonexistent/sluice-disk-alarm-test", INT64_MAX);
	assert_false(disk_alarm_raised()); /* never read: stays clear */
	assert_int_equal(disk_alarm_free_bytes(), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_unreadable_path_keeps_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
