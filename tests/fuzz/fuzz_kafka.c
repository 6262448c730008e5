/*
 * fuzz_kafka.c: libFuzzer target for the Kafka request codec (src/kafka) and
 * the record batch reader (src/storage/record_batch.c).
 *
 * Input byte 0 is an API key (low 7 bits; keys without a request schema are
 * skipped), byte 1 picks a version in its range; the rest is a request: its header (v1 or v2, as the version implies)
 * is decoded, then the body, which is encoded again and decoded once more. The
 * whole input is also read as concatenated record batches: walked, validated
 * and each uncompressed batch's records and headers iterated. Nothing may
 * crash, leak or trip a sanitizer; what was encoded must decode.
 * Built by CMake with -DSLUICE_FUZZ=ON (clang); run by scripts/fuzz.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/reader.h"
#include "core/writer.h"
#include "kafka/kafka_arena.h"
#include "kafka/kafka_codec.h"
#include "kafka/kafka_msg.h"
#include "storage/record_batch.h"

#define ARENA_CAP (4u << 20)

static void request(const uint8_t *data, size_t len)
{
	if (len < 2)
		return;
	const struct kafka_api *api = kafka_api_find((int16_t)(data[0] & 0x7f));
	if (!api || !api->request)
		return;
	int16_t span = (int16_t)(api->max_version - api->min_version + 1);
	int16_t version = (int16_t)(api->min_version + data[1] % span);
	data += 2;
	len -= 2;

	struct kafka_arena arena;
	kafka_arena_init(&arena, ARENA_CAP);
	struct reader r;
	reader_init(&r, data, len);
	struct kafka_request_header hdr;
	if (kafka_request_header_decode(&r, kafka_request_header_version(api->key, version), &arena,
					&hdr) != 0) {
		kafka_arena_fini(&arena);
		return;
	}
	void *body = calloc(1, api->request->body->size);
	if (!body)
		abort();
	if (kafka_codec_decode(api->request, &r, version, &arena, body) == 0) {
		struct writer w;
		writer_init(&w, 8u << 20);
		if (kafka_codec_encode(api->request, &w, version, body) == 0) {
			void *again = calloc(1, api->request->body->size);
			if (!again)
				abort();
			struct reader r2;
			reader_init(&r2, w.buf, w.len);
			if (kafka_codec_decode(api->request, &r2, version, &arena, again) != 0 &&
			    arena.err == 0)
				abort(); /* what we encode must decode */
			free(again);
		}
		writer_fini(&w);
	}
	free(body);
	kafka_arena_fini(&arena);
}

static void batches(const uint8_t *data, size_t len)
{
	struct record_batch_set_info info;
	(void)record_batch_validate_all(data, len, 1u << 20, &info);
	struct record_batch_walk w;
	record_batch_walk_init(&w, data, len, 1u << 20, 0);
	struct record_batch_header h;
	struct slice batch;
	size_t pos;
	for (int i = 0; i < 64 && record_batch_walk_next(&w, &h, &batch, &pos) == 1; i++) {
		struct record_batch_iter it;
		if (record_batch_iter_init(&it, batch.data, batch.len) != 0)
			continue;
		struct record_batch_record rec;
		while (record_batch_iter_next(&it, &rec) == 1) {
			struct record_batch_kv kv;
			while (record_batch_header_next(&rec, &kv) == 1)
				;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	request(data, len);
	batches(data, len);
	return 0;
}
