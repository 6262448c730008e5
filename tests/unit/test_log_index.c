/*
 * test_log_index.c: the sparse offset and time indexes: appends, lookups by key
 * and by value, persisting and reading back the file, checks that reject
 * damaged files, truncation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "storage/log_index.h"

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/sluice-index-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/00000000000000000000.index", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[160];
	unlink(f->path);
	snprintf(p, sizeof p, "%s.tmp", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Entries (10*i, 100*i + 7) for i in 0..n-1. */
static struct log_index *filled(const char *path, size_t n)
{
	struct log_index *ix;
	assert_int_equal(log_index_new(path, LOG_INDEX_OFFSET, &ix), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(log_index_append(ix, (int64_t)(10 * i), (uint32_t)(100 * i + 7)), 0);
	return ix;
}

/* Checks lookups against the entries made by filled(). */
static void check_lookups(struct log_index *ix, size_t n)
{
	struct log_index_entry e;
	assert_int_equal(log_index_count(ix), n);
	assert_int_equal(log_index_find_key(ix, -1, &e), -ERR_NOT_FOUND);
	assert_int_equal(log_index_find_value(ix, 6, &e), -ERR_NOT_FOUND);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(log_index_get(ix, i, &e), 0);
		assert_int_equal(e.key, 10 * i);
		assert_int_equal(e.value, 100 * i + 7);
		for (int d = 0; d < 10; d++) {
			assert_int_equal(log_index_find_key(ix, (int64_t)(10 * i) + d, &e), 0);
			assert_int_equal(e.key, 10 * i);
		}
		assert_int_equal(log_index_find_value(ix, 100 * i + 7, &e), 0);
		assert_int_equal(e.key, 10 * i);
		assert_int_equal(log_index_find_value(ix, 100 * i + 106, &e), 0);
		assert_int_equal(e.key, 10 * i);
	}
	assert_int_equal(log_index_find_key(ix, INT64_MAX, &e), 0);
	assert_int_equal(e.key, 10 * (n - 1));
	assert_int_equal(log_index_get(ix, n, &e), -ERR_RANGE);
	assert_int_equal(log_index_last(ix, &e), 0);
	assert_int_equal(e.key, 10 * (n - 1));
}

static void test_append_and_lookup(void **state)
{
	struct fixture *f = *state;
	struct log_index *ix;
	struct log_index_entry e;
	assert_int_equal(log_index_new(f->path, LOG_INDEX_OFFSET, &ix), 0);
	assert_int_equal(log_index_count(ix), 0);
	assert_int_equal(log_index_last(ix, &e), -ERR_NOT_FOUND);
	assert_int_equal(log_index_find_key(ix, 5, &e), -ERR_NOT_FOUND);
	log_index_free(ix);

	ix = filled(f->path, 1000);
	check_lookups(ix, 1000);
	/* keys and values must both grow */
	assert_int_equal(log_index_append(ix, 9990, 200000), -ERR_INVALID);
	assert_int_equal(log_index_append(ix, 20000, 99907), -ERR_INVALID);
	/* relative offsets are u32 */
	assert_int_equal(log_index_append(ix, (int64_t)UINT32_MAX + 1, 300000), -ERR_INVALID);
	assert_int_equal(log_index_count(ix), 1000);
	assert_int_equal(log_index_check(ix, 9990, 99907), 0);
	assert_int_equal(log_index_check(ix, 9989, 99907), -ERR_CORRUPT);
	assert_int_equal(log_index_check(ix, 9990, 99906), -ERR_CORRUPT);
	/* nothing was written yet */
	assert_int_equal(file_size(f->path), -1);
	assert_true(log_index_dirty(ix));
	log_index_free(ix);
}

static void test_persist_and_open(void **state)
{
	struct fixture *f = *state;
	struct log_index *ix = filled(f->path, 500);
	assert_int_equal(log_index_persist(ix), 0);
	assert_false(log_index_dirty(ix));
	assert_int_equal(file_size(f->path), 500 * LOG_INDEX_OFFSET_ENTRY_SIZE);
	check_lookups(ix, 500); /* now served from the file */
	log_index_free(ix);

	/* the on-disk format: big-endian u32 key, u32 value */
	uint8_t raw[16];
	int fd = open(f->path, O_RDONLY);
	assert_int_equal(read(fd, raw, sizeof raw), (ssize_t)sizeof raw);
	close(fd);
	uint8_t want[16] = { 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 10, 0, 0, 0, 107 };
	assert_memory_equal(raw, want, sizeof want);

	assert_int_equal(log_index_open(f->path, LOG_INDEX_OFFSET, &ix), 0);
	check_lookups(ix, 500);
	assert_int_equal(log_index_check(ix, 4990, 49907), 0);
	/* appending to a file-backed index works on a memory copy */
	assert_int_equal(log_index_append(ix, 5000, 50007), 0);
	check_lookups(ix, 501);
	assert_int_equal(file_size(f->path), 500 * LOG_INDEX_OFFSET_ENTRY_SIZE);
	assert_int_equal(log_index_persist(ix), 0);
	assert_int_equal(file_size(f->path), 501 * LOG_INDEX_OFFSET_ENTRY_SIZE);
	/* truncating a file-backed index */
	assert_int_equal(log_index_truncate(ix, 200), 0);
	check_lookups(ix, 200);
	assert_int_equal(log_index_persist(ix), 0);
	log_index_free(ix);
	assert_int_equal(log_index_open(f->path, LOG_INDEX_OFFSET, &ix), 0);
	check_lookups(ix, 200);
	log_index_clear(ix);
	assert_int_equal(log_index_count(ix), 0);
	assert_int_equal(log_index_unlink(ix), 0);
	assert_int_equal(file_size(f->path), -1);
	log_index_free(ix);
}

static void test_time_index(void **state)
{
	struct fixture *f = *state;
	struct log_index *ix;
	assert_int_equal(log_index_new(f->path, LOG_INDEX_TIME, &ix), 0);
	int64_t keys[] = { -5, 0, 1700000000000LL, 1700000000001LL, INT64_MAX };
	for (int i = 0; i < 5; i++)
		assert_int_equal(log_index_append(ix, keys[i], (uint32_t)i + 1), 0);
	assert_int_equal(log_index_persist(ix), 0);
	log_index_free(ix);
	assert_int_equal(file_size(f->path), 5 * LOG_INDEX_TIME_ENTRY_SIZE);
	assert_int_equal(log_index_open(f->path, LOG_INDEX_TIME, &ix), 0);
	struct log_index_entry e;
	assert_int_equal(log_index_last(ix, &e), 0);
	assert_int_equal(e.key, INT64_MAX);
	assert_int_equal(e.value, 5);
	assert_int_equal(log_index_find_key(ix, -6, &e), -ERR_NOT_FOUND);
	assert_int_equal(log_index_find_key(ix, -1, &e), 0);
	assert_int_equal(e.key, -5);
	assert_int_equal(log_index_find_key(ix, 1700000000000LL, &e), 0);
	assert_int_equal(e.value, 3);
	assert_int_equal(log_index_find_key(ix, INT64_MAX - 1, &e), 0);
	assert_int_equal(e.value, 4);
	assert_int_equal(log_index_check(ix, INT64_MAX, 5), 0);
	assert_int_equal(log_index_check(ix, INT64_MAX, 4), -ERR_CORRUPT);
	log_index_free(ix);
}

static void test_damaged_files(void **state)
{
	struct fixture *f = *state;
	struct log_index *ix;
	assert_int_equal(log_index_open(f->path, LOG_INDEX_OFFSET, &ix), -ERR_NOT_FOUND);
	/* a size that is not a whole number of entries */
	uint8_t junk[13] = { 1, 2, 3 };
	write_file(f->path, junk, sizeof junk);
	assert_int_equal(log_index_open(f->path, LOG_INDEX_OFFSET, &ix), -ERR_CORRUPT);
	write_file(f->path, junk, 8);
	assert_int_equal(log_index_open(f->path, LOG_INDEX_TIME, &ix), -ERR_CORRUPT);
	/* zeros (a crash after the size grew): keys do not increase */
	uint8_t zeros[64] = { 0 };
	write_file(f->path, zeros, sizeof zeros);
	assert_int_equal(log_index_open(f->path, LOG_INDEX_OFFSET, &ix), 0);
	assert_int_equal(log_index_check(ix, 1000, 1000), -ERR_CORRUPT);
	log_index_free(ix);
	/* values going down in the middle */
	uint8_t bad[24] = { 0, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 5, 0, 0, 1, 0,  0, 0, 0, 9, 0, 0, 0, 50 };
	write_file(f->path, bad, sizeof bad);
	assert_int_equal(log_index_open(f->path, LOG_INDEX_OFFSET, &ix), 0);
	assert_int_equal(log_index_check(ix, 1000, 100000), -ERR_CORRUPT);
	log_index_free(ix);
	/* the file shrinking after open: the mapping refuses */
	ix = filled(f->path, 10);
	assert_int_equal(log_index_persist(ix), 0);
	log_index_free(ix);
	assert_int_equal(log_index_open(f->path, LOG_INDEX_OFFSET, &ix), 0);
	assert_int_equal(truncate(f->path, 8), 0);
	struct log_index_entry e;
	assert_int_equal(log_index_find_key(ix, 50, &e), -ERR_CORRUPT);
	log_index_free(ix);
	/* an empty file is an empty index */
	write_file(f->path, junk, 0);
	assert_int_equal(log_index_open(f->path, LOG_INDEX_TIME, &ix), 0);
	assert_int_equal(log_index_count(ix), 0);
	assert_int_equal(log_index_find_key(ix, 50, &e), -ERR_NOT_FOUND);
	assert_int_equal(log_index_check(ix, 0, 0), 0);
	log_index_free(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_and_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persist_and_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_files, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
