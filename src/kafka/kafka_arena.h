/*
 * kafka_arena.h: a bump allocator with a byte cap, for per-request memory.
 *
 * The Kafka codec allocates every decoded array from an arena; a handler may
 * allocate its response's arrays from the same arena. Everything is freed at
 * once by kafka_arena_reset() (keeps one block for the next request) or
 * kafka_arena_fini(). The cap bounds the bytes held in blocks, so a hostile
 * request can make decoding fail with -ERR_TOO_LARGE but never make the
 * broker hold more than the cap. Not thread-safe: one arena per connection
 * or per request, on one thread.
 */
#ifndef SLUICE_KAFKA_ARENA_H
#define SLUICE_KAFKA_ARENA_H

#include <stddef.h>

struct kafka_arena_block;

struct kafka_arena {
	struct kafka_arena_block *blocks; /* owned; newest first; freed by kafka_arena_fini() */
	size_t held;  /* bytes held in blocks, counted against cap */
	size_t cap;   /* never hold more than this */
	int err;      /* 0, or -ERR_TOO_LARGE / -ERR_NOMEM from the last failed allocation */
};

/* Starts an empty arena that may hold up to cap bytes. */
void kafka_arena_init(struct kafka_arena *a, size_t cap);
/* Frees every block. The arena may be initialized again. */
void kafka_arena_fini(struct kafka_arena *a);
/* Frees all allocations at once, keeping the newest block, and clears err. */
void kafka_arena_reset(struct kafka_arena *a);
/* Returns size bytes aligned for any type (not zeroed), or NULL and sets err. */
void *kafka_arena_alloc(struct kafka_arena *a, size_t size);
/* Returns room for n elements of size bytes, or NULL (overflow, cap, memory). */
void *kafka_arena_alloc_array(struct kafka_arena *a, size_t n, size_t size);

#endif
