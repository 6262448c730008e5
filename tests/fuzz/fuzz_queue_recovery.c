/*
 * fuzz_queue_recovery.c: libFuzzer target for what a durable queue reads back
 * from disk at startup (src/broker/queue.c over src/storage/log.c).
 *
 * The input is cut into the files of one queue directory: byte 0 (low bits)
 * chooses whether a priority file is written and what it holds; the next two
 * bytes give how many of the following bytes are the ack file; the rest is the
 * first segment (00000000000000000000.log). The queue is then opened as after
 * a restart and drained: every ready message taken, every other one acked and
 * the rest requeued once, then the queue is closed and its directory removed.
 * Damaged files must be cut back or refused with an error, never crash, leak
 * or read out of bounds.
 * Built by CMake with -DSLUICE_FUZZ=ON (clang); run by scripts/fuzz.sh.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/queue.h"
#include "core/diag.h"
#include "storage/log.h"

static char root[64];

static int put(const char *path, const uint8_t *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	ssize_t n = len ? write(fd, data, len) : 0;
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(root, sizeof root, "%s/sluice-fuzz-XXXXXX", base);
	if (!mkdtemp(root))
		abort();
	diag_set_level((enum diag_level)(DIAG_ERROR + 1)); /* recovery logs every damaged byte */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (len < 3)
		return 0;
	uint8_t mode = data[0];
	size_t ack_len = (size_t)data[1] << 8 | data[2];
	data += 3;
	len -= 3;
	if (ack_len > len)
		ack_len = len;

	char dir[128], path[192];
	snprintf(dir, sizeof dir, "%s/q", root);
	snprintf(path, sizeof path, "%s/log", dir);
	if (mkdir(dir, 0755) || mkdir(path, 0755))
		abort();
	snprintf(path, sizeof path, "%s/acks", dir);
	if (put(path, data, ack_len))
		abort();
	snprintf(path, sizeof path, "%s/log/00000000000000000000.log", dir);
	if (put(path, data + ack_len, len - ack_len))
		abort();
	int max_priority = 0;
	if (mode & 1) {
		char p[8];
		int n = snprintf(p, sizeof p, "%d\n", (mode >> 1) & 15);
		snprintf(path, sizeof path, "%s/priority", dir);
		if (put(path, (const uint8_t *)p, (size_t)n))
			abort();
		max_priority = QUEUE_PRIORITY_STORED;
	}

	struct log_config cfg;
	log_config_defaults(&cfg);
	cfg.segment_bytes = 1 << 20;
	cfg.retention_ms = -1;
	cfg.max_batch_bytes = 1 << 20;
	struct queue *q;
	if (queue_open(dir, true, max_priority, &cfg, -1, &q) == 0) {
		int64_t requeued[64];
		size_t n_requeued = 0;
		for (int i = 0; i < 4096; i++) {
			struct queue_msg m;
			if (queue_next(q, 0, &m, NULL, NULL) != 1)
				break;
			free(m.data);
			if (i % 2 == 0 || m.redelivered || n_requeued == 64)
				(void)queue_ack(q, m.offset);
			else
				requeued[n_requeued++] = m.offset;
		}
		for (size_t i = 0; i < n_requeued; i++)
			(void)queue_requeue(q, requeued[i]);
		(void)queue_flush(q);
		queue_close(q);
	}
	if (log_remove_tree(dir) != 0)
		abort();
	return 0;
}
