/*
 * log_index.h: the sparse indexes beside each log segment.
 *
 * An index is a sorted array of fixed-size big-endian entries {key, value},
 * both strictly increasing, in one of two formats (index format version 1,
 * no file header; see docs/storage.md):
 *
 *   offset index  (.index, 8 bytes)      key   = offset - segment base (u32)
 *                                        value = file position of that batch (u32)
 *   time index    (.timeindex, 12 bytes) key   = a maximum timestamp so far (i64)
 *                                        value = offset - segment base of the batch
 *                                                that first reached it (u32)
 *
 * An index lives either in memory (the active segment: entries are appended
 * there, no syscall per entry) or in its file (sealed segments: mapped
 * read-only on first use, so old indexes cost page cache, not heap).
 * log_index_persist() writes the memory entries to "<path>.tmp" and renames it
 * over the file, then switches to the file. Index files are hints that can
 * always be rebuilt from the .log: a caller checks them (log_index_check) before
 * trusting them and rebuilds on any inconsistency.
 *
 * Owned by one log_segment, used by one thread at a time.
 */
#ifndef SLUICE_LOG_INDEX_H
#define SLUICE_LOG_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define LOG_INDEX_FORMAT_VERSION 1
#define LOG_INDEX_OFFSET_ENTRY_SIZE 8
#define LOG_INDEX_TIME_ENTRY_SIZE 12

enum log_index_kind { LOG_INDEX_OFFSET, LOG_INDEX_TIME };

struct log_index_entry {
	int64_t key;    /* relative offset (offset index) or timestamp (time index) */
	uint32_t value; /* file position (offset index) or relative offset (time index) */
};

struct log_index;

/* A new empty in-memory index that will persist to path (copied). */
int log_index_new(const char *path, enum log_index_kind kind, struct log_index **out);
/*
 * Opens the existing index file at path (not read or mapped yet, only its size
 * and last entry). Returns 0, -ERR_NOT_FOUND if missing, -ERR_CORRUPT if its
 * size is not a multiple of the entry size, or another error.
 */
int log_index_open(const char *path, enum log_index_kind kind, struct log_index **out);
/* Frees the index (unmaps; memory entries not persisted are lost). */
void log_index_free(struct log_index *ix);

/* Number of entries. */
size_t log_index_count(const struct log_index *ix);
/* The last entry; -ERR_NOT_FOUND when empty. */
int log_index_last(const struct log_index *ix, struct log_index_entry *e);
/* Entry i (< count); 0 or an error mapping the file. */
int log_index_get(struct log_index *ix, size_t i, struct log_index_entry *e);

/*
 * Appends an entry; key and value must be greater than the last entry's
 * (-ERR_INVALID otherwise). A file-backed index is loaded into memory first.
 */
int log_index_append(struct log_index *ix, int64_t key, uint32_t value);
/* Keeps the first n entries (loading a file-backed index into memory). */
int log_index_truncate(struct log_index *ix, size_t n);
/* Drops every entry: an empty in-memory index. */
void log_index_clear(struct log_index *ix);

/*
 * Verifies every entry: keys and values strictly increasing, keys <= max_key and
 * values <= max_value. Returns 0 or -ERR_CORRUPT (or a mapping error).
 */
int log_index_check(struct log_index *ix, int64_t max_key, uint64_t max_value);

/* Largest entry with key <= key: 0 with e, or -ERR_NOT_FOUND. */
int log_index_find_key(struct log_index *ix, int64_t key, struct log_index_entry *e);
/* Largest entry with value <= value: 0 with e, or -ERR_NOT_FOUND. */
int log_index_find_value(struct log_index *ix, uint64_t value, struct log_index_entry *e);

/* Writes the entries to the file (tmp + rename) and serves them from it afterwards. */
int log_index_persist(struct log_index *ix);
/* True while entries exist in memory that the file does not have. */
int log_index_dirty(const struct log_index *ix);
/* Removes the file (and a leftover tmp file); memory entries stay, a file-backed index empties. */
int log_index_unlink(struct log_index *ix);

#endif
