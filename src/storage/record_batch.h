/*
 * record_batch.h: the Kafka RecordBatch v2 (magic 2), the unit Sluice stores.
 *
 * A batch is a 61-byte header followed by its records (kafka docs,
 * implementation.html 5.3.1):
 *
 *   off  size  field                 notes
 *     0     8  baseOffset            rewritten by the log on append
 *     8     4  batchLength           bytes after this field (total = 12 + batchLength)
 *    12     4  partitionLeaderEpoch  not covered by the CRC
 *    16     1  magic                 must be 2
 *    17     4  crc                   CRC-32C of bytes 21 .. end
 *    21     2  attributes            bits 0-2 codec, 3 timestamp type (1 = LogAppendTime),
 *                                    4 transactional, 5 control, 6 delete horizon
 *    23     4  lastOffsetDelta
 *    27     8  baseTimestamp
 *    35     8  maxTimestamp          set to the append time for LogAppendTime
 *    43     8  producerId
 *    51     2  producerEpoch
 *    53     4  baseSequence
 *    57     4  records count
 *    61     -  records (compressed as one blob when the codec is not 0)
 *
 * Each record: length varint, attributes i8, timestampDelta varlong, offsetDelta
 * varint, key (varint length, -1 null), value (idem), header count varint, then
 * headers {key (varint length, not null), value (varint length, -1 null)}.
 *
 * This module parses and checks headers (through struct reader), walks buffers
 * of concatenated batches, patches the two fields the broker may change (base
 * offset; timestamp type + maxTimestamp + CRC for LogAppendTime), encodes
 * uncompressed batches and iterates the records of an uncompressed batch. It
 * knows nothing of files or protocols. All functions are pure: any thread.
 */
#ifndef SLUICE_RECORD_BATCH_H
#define SLUICE_RECORD_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/reader.h"
#include "core/writer.h"

#define RECORD_BATCH_HEADER_SIZE 61  /* fixed header, through the records count */
#define RECORD_BATCH_LOG_OVERHEAD 12 /* baseOffset + batchLength, not counted by batchLength */
#define RECORD_BATCH_CRC_START 21    /* the CRC covers attributes .. end */
#define RECORD_BATCH_MAGIC 2

#define RECORD_BATCH_ATTR_CODEC_MASK 0x07
#define RECORD_BATCH_ATTR_LOG_APPEND_TIME 0x08
#define RECORD_BATCH_ATTR_TRANSACTIONAL 0x10
#define RECORD_BATCH_ATTR_CONTROL 0x20

/* The decoded fixed header of one batch. */
struct record_batch_header {
	int64_t base_offset;
	int32_t batch_length;
	int32_t partition_leader_epoch;
	int8_t magic;
	uint32_t crc;
	int16_t attributes;
	int32_t last_offset_delta;
	int64_t base_timestamp;
	int64_t max_timestamp;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int32_t record_count;
};

/* Total bytes of the batch a (checked) header describes: 12 + batchLength. */
static inline size_t record_batch_size(const struct record_batch_header *h)
{
	return RECORD_BATCH_LOG_OVERHEAD + (size_t)(uint32_t)h->batch_length;
}

/*
 * Offset of the batch's last record: baseOffset + lastOffsetDelta (wrapping, never
 * undefined, on a hostile baseOffset: callers compare it with base_offset).
 */
static inline int64_t record_batch_last_offset(const struct record_batch_header *h)
{
	return (int64_t)((uint64_t)h->base_offset + (uint64_t)(uint32_t)h->last_offset_delta);
}

/*
 * Decodes and checks the fixed header at the start of buf: at least 61 bytes,
 * magic 2, batchLength >= 49, records count >= 0, lastOffsetDelta >= 0, and a
 * total size <= max_batch_bytes. Does not look at the records or the CRC, and
 * does not require the whole batch to be in buf. Returns 0, -ERR_CORRUPT or
 * -ERR_TOO_LARGE.
 */
int record_batch_header_parse(const uint8_t *buf, size_t len, size_t max_batch_bytes,
			      struct record_batch_header *h);

/* Checks the CRC-32C of a whole batch of record_batch_size(h) bytes; 0 or -ERR_CORRUPT. */
int record_batch_check_crc(const uint8_t *batch, size_t len, const struct record_batch_header *h);

/*
 * Parses one batch at the start of buf: header checks as above, the whole batch
 * within len, and a correct CRC. Returns 0, -ERR_CORRUPT or -ERR_TOO_LARGE.
 */
int record_batch_parse(const uint8_t *buf, size_t len, size_t max_batch_bytes,
		       struct record_batch_header *h);

/* Walks a buffer of concatenated batches (borrowed; must outlive the walk). */
struct record_batch_walk {
	struct reader r;
	size_t max_batch_bytes;
	int check_crc;
};

/* Starts a walk over len bytes; check_crc selects full validation per batch. */
void record_batch_walk_init(struct record_batch_walk *w, const uint8_t *buf, size_t len,
			    size_t max_batch_bytes, int check_crc);
/*
 * Steps to the next batch: returns 1 with its header, its bytes and its offset
 * from the start of the buffer; 0 at the end; or -ERR_CORRUPT / -ERR_TOO_LARGE
 * (a trailing partial batch is corrupt).
 */
int record_batch_walk_next(struct record_batch_walk *w, struct record_batch_header *h,
			   struct slice *batch, size_t *pos);

/* What record_batch_validate_all found. */
struct record_batch_set_info {
	size_t batches;        /* number of batches */
	int64_t offsets;       /* sum of lastOffsetDelta + 1: offsets the batches take */
	int64_t max_timestamp; /* largest maxTimestamp, INT64_MIN when there is none */
};

/*
 * Fully validates a buffer of one or more batches (header, bounds, CRC, size cap).
 * An empty buffer is corrupt. Returns 0 with info, or -ERR_CORRUPT / -ERR_TOO_LARGE.
 */
int record_batch_validate_all(const uint8_t *buf, size_t len, size_t max_batch_bytes,
			      struct record_batch_set_info *info);

/* Rewrites baseOffset in place (the CRC does not cover it); -ERR_INVALID if len < 61. */
int record_batch_set_base_offset(uint8_t *batch, size_t len, int64_t base_offset);

/*
 * Marks the batch LogAppendTime: sets attribute bit 3, maxTimestamp := now_ms, and
 * recomputes the CRC over the whole batch. len must be the batch's size
 * (-ERR_INVALID otherwise).
 */
int record_batch_set_log_append_time(uint8_t *batch, size_t len, int64_t now_ms);

/* A record header (key never null; value NULL when null). */
struct record_batch_kv {
	struct slice key;
	struct slice value;
};

/* One record to encode. Slices with data NULL encode as null. */
struct record_batch_rec {
	int64_t timestamp_delta;
	int32_t offset_delta;                  /* >= 0, strictly increasing in a batch */
	struct slice key;
	struct slice value;
	const struct record_batch_kv *headers; /* borrowed; header_count entries */
	size_t header_count;
};

/* Batch-level fields for record_batch_encode. */
struct record_batch_params {
	int64_t base_offset;
	int64_t base_timestamp;
	int32_t partition_leader_epoch; /* -1 when unknown */
	int16_t attributes;             /* codec bits must be 0 (no compression) */
	int64_t producer_id;            /* -1 without an idempotent producer */
	int16_t producer_epoch;         /* -1 */
	int32_t base_sequence;          /* -1 */
};

/* Fills p with the usual defaults: offsets and timestamps 0, producer fields -1. */
void record_batch_params_init(struct record_batch_params *p);

/*
 * Appends one uncompressed batch of n >= 1 records to w (after what w holds):
 * lastOffsetDelta = the last record's offset delta, maxTimestamp = base +
 * largest timestamp delta, CRC computed. Returns 0, -ERR_INVALID for bad
 * arguments (w untouched), or w's error (-ERR_TOO_LARGE / -ERR_NOMEM: w's length
 * is restored, its sticky err stays set).
 */
int record_batch_encode(struct writer *w, const struct record_batch_params *p,
			const struct record_batch_rec *recs, size_t n);

/* One decoded record; slices borrow the batch. */
struct record_batch_record {
	int64_t offset;           /* baseOffset + offsetDelta */
	int64_t timestamp;        /* baseTimestamp + delta, or maxTimestamp for LogAppendTime */
	int64_t timestamp_delta;
	int32_t offset_delta;
	int8_t attributes;
	struct slice key;         /* data NULL: null key */
	struct slice value;       /* data NULL: null value */
	int32_t header_count;
	struct reader headers;    /* positioned at the next header; see record_batch_header_next */
	int32_t headers_left;     /* headers not yet taken by record_batch_header_next */
};

/* Iterates the records of one uncompressed batch. */
struct record_batch_iter {
	struct record_batch_header h;
	struct reader r;          /* the records region */
	int32_t left;             /* records still to decode */
};

/*
 * Starts iterating the batch at the start of buf (header checks, whole batch in
 * len; the CRC is not checked here, use record_batch_parse). Returns 0,
 * -ERR_CORRUPT, or -ERR_UNSUPPORTED for a compressed batch.
 */
int record_batch_iter_init(struct record_batch_iter *it, const uint8_t *buf, size_t len);
/*
 * Decodes the next record (fully validated, headers included). Returns 1 with
 * rec, 0 after the last record (the region must then be fully consumed), or
 * -ERR_CORRUPT.
 */
int record_batch_iter_next(struct record_batch_iter *it, struct record_batch_record *rec);
/* Takes the next header of rec: 1 with kv, 0 when none are left, -ERR_CORRUPT. */
int record_batch_header_next(struct record_batch_record *rec, struct record_batch_kv *kv);

#endif
