/*
 * kafka_arena.c: blocks of doubling size (4 KiB up to 1 MiB, or one block of
 * exactly the request when it is larger), each handing out aligned bytes from
 * its front. The cap counts block sizes, not requested bytes, so padding and
 * the unused tail of a block count too: the cap is what the process holds.
 */
#include "kafka/kafka_arena.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/err.h"

#define ARENA_BLOCK_MIN 4096
#define ARENA_BLOCK_MAX (1024 * 1024)
#define ARENA_ALIGN (_Alignof(max_align_t))

struct kafka_arena_block {
	struct kafka_arena_block *next;
	size_t size; /* bytes in data */
	size_t used; /* bytes handed out from data */
	max_align_t data[];
};

void kafka_arena_init(struct kafka_arena *a, size_t cap)
{
	a->blocks = NULL;
	a->held = 0;
	a->cap = cap;
	a->err = 0;
}

void kafka_arena_fini(struct kafka_arena *a)
{
	struct kafka_arena_block *b = a->blocks;
	while (b) {
		struct kafka_arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->blocks = NULL;
	a->held = 0;
	a->err = 0;
}

void kafka_arena_reset(struct kafka_arena *a)
{
	struct kafka_arena_block *keep = a->blocks;
	if (keep) {
		struct kafka_arena_block *b = keep->next;
		while (b) {
			struct kafka_arena_block *next = b->next;
			free(b);
			b = next;
		}
		keep->next = NULL;
		keep->used = 0;
		a->held = keep->size;
	}
	a->err = 0;
}

/* Adds a block with at least need bytes, or returns NULL and sets err. */
static struct kafka_arena_block *grow(struct kafka_arena *a, size_t need)
{
	size_t room = a->cap > a->held ? a->cap - a->held : 0;
	if (need > room) {
		a->err = -ERR_TOO_LARGE;
		return NULL;
	}
	size_t size = a->held < ARENA_BLOCK_MIN ? ARENA_BLOCK_MIN : a->held;
	if (size > ARENA_BLOCK_MAX)
		size = ARENA_BLOCK_MAX;
	if (size < need)
		size = need;
	if (size > room)
		size = room; /* still >= need */
	struct kafka_arena_block *b = malloc(sizeof *b + size);
	if (!b) {
		a->err = -ERR_NOMEM;
		return NULL;
	}
	b->next = a->blocks;
	b->size = size;
	b->used = 0;
	a->blocks = b;
	a->held += size;
	return b;
}

void *kafka_arena_alloc(struct kafka_arena *a, size_t size)
{
	if (size == 0)
		size = 1;
	if (size > SIZE_MAX - ARENA_ALIGN) {
		a->err = -ERR_TOO_LARGE;
		return NULL;
	}
	size = (size + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
	struct kafka_arena_block *b = a->blocks;
	if (!b || b->size - b->used < size) {
		b = grow(a, size);
		if (!b)
			return NULL;
	}
	void *p = (unsigned char *)b->data + b->used;
	b->used += size;
	return p;
}

void *kafka_arena_alloc_array(struct kafka_arena *a, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size) {
		a->err = -ERR_TOO_LARGE;
		return NULL;
	}
	return kafka_arena_alloc(a, n * size);
}
