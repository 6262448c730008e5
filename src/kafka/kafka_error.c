/* kafka_error.c: the one place Sluice errors become Kafka error codes. */
#include <errno.h>

#include "core/err.h"
#include "kafka/kafka_int.h"

int16_t kafka_error_from(int err)
{
	switch (err < 0 ? -err : err) {
	case 0: return KAFKA_NONE;
	case ERR_CORRUPT:
	case ERR_MALFORMED: return KAFKA_CORRUPT_MESSAGE;
	case ERR_TOO_LARGE: return KAFKA_MESSAGE_TOO_LARGE;
	case ERR_NOT_FOUND: return KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
	case ERR_EXISTS: return KAFKA_TOPIC_ALREADY_EXISTS;
	case ERR_INVALID: return KAFKA_INVALID_REQUEST;
	case ERR_RANGE: return KAFKA_OFFSET_OUT_OF_RANGE;
	case ERR_UNSUPPORTED: return KAFKA_UNSUPPORTED_VERSION;
	case ERR_SEQUENCE: return KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
	case ERR_FENCED: return KAFKA_INVALID_PRODUCER_EPOCH;
	case ERR_NOSPC:
	case ERR_IO:
	case EIO:
	case ENOSPC: return KAFKA_KAFKA_STORAGE_ERROR;
	default: return KAFKA_UNKNOWN_SERVER_ERROR;
	}
}
