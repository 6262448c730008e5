/*
 * kafka_producer_id.c: InitProducerId (v0-4), which gives an idempotent
 * producer its producer id and epoch.
 *
 * Sluice supports idempotent producing but not transactions. A request
 * without a transactional id gets a fresh id from broker_next_producer_id()
 * (unique across restarts) with epoch 0. From v3 a producer that already has
 * an id may send it with its epoch to have the epoch bumped (KIP-360): it gets
 * the same id with epoch + 1, or a fresh id with epoch 0 once the epoch would
 * reach 32767, as Kafka does when an epoch is exhausted.
 *
 * A transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED
 * (53). Kafka has no code meaning "this broker has no transactions"; 53 is
 * what a Kafka broker answers when it will not let this client use a
 * transactional id, and every client treats it as fatal at once (librdkafka
 * raises a fatal error from init_transactions(), the Java producer throws,
 * KafkaJS does not retry it). The retriable codes (COORDINATOR_NOT_AVAILABLE,
 * NOT_COORDINATOR, CONCURRENT_TRANSACTIONS) would make clients retry until
 * their timeout, and UNSUPPORTED_VERSION would claim a version problem the
 * request does not have. Redpanda answers transactional Produce the same way
 * when its transactions are switched off.
 */
#include <string.h>

#include "core/err.h"
#include "kafka/kafka_int.h"

/* TRANSACTIONAL_ID_AUTHORIZATION_FAILED (protocol_errors.html). */
#define PRODUCER_ID_TXN_REFUSED 53

/* Highest epoch a bump may give; Kafka's producers treat 32767 as exhausted. */
#define PRODUCER_EPOCH_MAX (INT16_MAX - 1)

int kafka_handle_init_producer_id(struct kafka_req *req, struct reader *r)
{
	struct kafka_init_producer_id_request in;
	int rc = kafka_init_producer_id_request_decode(r, req->version, &req->arena, &in);
	if (rc)
		return rc;
	struct kafka_init_producer_id_response out;
	kafka_init_producer_id_response_init(&out);
	out.throttle_time_ms = 0;
	out.producer_id = -1;
	out.producer_epoch = -1;

	/* v0-2 carry no id: the decoder leaves both at their default, -1. */
	bool no_id = in.producer_id == -1 && in.producer_epoch == -1;
	if (in.transactional_id.data && in.transactional_id.len == 0) {
		out.error_code = KAFKA_INVALID_REQUEST; /* Kafka: an empty id is malformed */
	} else if (in.transactional_id.data) {
		out.error_code = PRODUCER_ID_TXN_REFUSED;
	} else if (no_id) {
		out.error_code = KAFKA_NONE;
		out.producer_id = broker_next_producer_id(kafka_req_broker(req));
		out.producer_epoch = 0;
	} else if (in.producer_id < 0 || in.producer_epoch < 0) {
		out.error_code = KAFKA_INVALID_REQUEST; /* one of the pair missing */
	} else if (in.producer_epoch >= PRODUCER_EPOCH_MAX) {
		out.error_code = KAFKA_NONE;
		out.producer_id = broker_next_producer_id(kafka_req_broker(req));
		out.producer_epoch = 0;
	} else {
		out.error_code = KAFKA_NONE;
		out.producer_id = in.producer_id;
		out.producer_epoch = (int16_t)(in.producer_epoch + 1);
	}
	return kafka_req_respond(req, (kafka_encode_fn)kafka_init_producer_id_response_encode, &out);
}
