/*
 * kafka_int.h: what the Kafka front end's files share: the per-connection and
 * per-request state, the handler table, and the helpers handlers use to answer.
 * Included only by the files of src/kafka.
 *
 * A request's life (kafka_conn.c):
 *   frame read (4-byte length, capped) ─► copied into req->frame ─► header
 *   decoded ─► handler(req, body reader) ─► handler decodes its body with the
 *   generated codec (arena = req->arena) and either answers at once with
 *   kafka_req_respond(), or starts asynchronous broker work (req->pending
 *   counts it) and answers from the last completion.
 * Responses leave in request order (Kafka requires it): a finished request
 * waits until every earlier request on the connection has been sent.
 * All of it runs on the connection's loop thread.
 *
 * Zero-copy responses (Fetch): the body is encoded with its RECORDS values
 * deferred (kafka_codec.h), leaving holes; each hole gets a splice, a file
 * range of a segment. Sending writes the header and the body's pieces with
 * conn_write and each splice with conn_write_file (sendfile(2)), in order:
 *
 *   [size | header] [body bytes] <file range> [body bytes] <file range> [...]
 */
#ifndef SLUICE_KAFKA_INT_H
#define SLUICE_KAFKA_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"
#include "core/err.h"
#include "core/reader.h"
#include "core/writer.h"
#include "kafka/kafka_arena.h"
#include "kafka/kafka_codec.h"
#include "kafka/kafka_msg.h"
#include "net/conn.h"

struct kafka_server;
struct kafka_conn;
struct kafka_req;
struct group_coordinator;

/* Kafka error codes used by Sluice (protocol_errors.html). */
enum kafka_error {
	KAFKA_UNKNOWN_SERVER_ERROR = -1,
	KAFKA_NONE = 0,
	KAFKA_OFFSET_OUT_OF_RANGE = 1,
	KAFKA_CORRUPT_MESSAGE = 2,
	KAFKA_UNKNOWN_TOPIC_OR_PARTITION = 3,
	KAFKA_INVALID_FETCH_SIZE = 4,
	KAFKA_LEADER_NOT_AVAILABLE = 5,
	KAFKA_NOT_LEADER_OR_FOLLOWER = 6,
	KAFKA_REQUEST_TIMED_OUT = 7,
	KAFKA_MESSAGE_TOO_LARGE = 10,
	KAFKA_COORDINATOR_LOAD_IN_PROGRESS = 14,
	KAFKA_COORDINATOR_NOT_AVAILABLE = 15,
	KAFKA_NOT_COORDINATOR = 16,
	KAFKA_INVALID_TOPIC_EXCEPTION = 17,
	KAFKA_RECORD_LIST_TOO_LARGE = 18,
	KAFKA_INVALID_REQUIRED_ACKS = 21,
	KAFKA_ILLEGAL_GENERATION = 22,
	KAFKA_INCONSISTENT_GROUP_PROTOCOL = 23,
	KAFKA_INVALID_GROUP_ID = 24,
	KAFKA_UNKNOWN_MEMBER_ID = 25,
	KAFKA_INVALID_SESSION_TIMEOUT = 26,
	KAFKA_REBALANCE_IN_PROGRESS = 27,
	KAFKA_INVALID_COMMIT_OFFSET_SIZE = 28,
	KAFKA_INVALID_TIMESTAMP = 32,
	KAFKA_UNSUPPORTED_SASL_MECHANISM = 33,
	KAFKA_UNSUPPORTED_VERSION = 35,
	KAFKA_TOPIC_ALREADY_EXISTS = 36,
	KAFKA_INVALID_PARTITIONS = 37,
	KAFKA_INVALID_REPLICATION_FACTOR = 38,
	KAFKA_INVALID_CONFIG = 40,
	KAFKA_INVALID_REQUEST = 42,
	KAFKA_POLICY_VIOLATION = 44,
	KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
	KAFKA_DUPLICATE_SEQUENCE_NUMBER = 46,
	KAFKA_INVALID_PRODUCER_EPOCH = 47,
	KAFKA_KAFKA_STORAGE_ERROR = 56,
	KAFKA_UNKNOWN_PRODUCER_ID = 59,
	KAFKA_GROUP_ID_NOT_FOUND = 69,
	KAFKA_NON_EMPTY_GROUP = 68,
	KAFKA_UNSUPPORTED_COMPRESSION_TYPE = 76,
	KAFKA_MEMBER_ID_REQUIRED = 79,
	KAFKA_FENCED_INSTANCE_ID = 82,
	KAFKA_UNKNOWN_TOPIC_ID = 100,
};

/* Maps a Sluice error (0 or negative ERR_* / errno) to a Kafka error code. */
int16_t kafka_error_from(int err);

/* A request handler: decode the body from r, answer now or later. Returns 0, or
 * a negative error to close the connection (malformed request). */
typedef int (*kafka_handler_fn)(struct kafka_req *req, struct reader *r);

/* One supported API: the versions Sluice advertises and its handler. */
struct kafka_api_support {
	int16_t api_key;
	int16_t min_version;
	int16_t max_version;
	kafka_handler_fn handler;
};
/* The table, in kafka_api_versions.c; terminated by handler NULL. */
extern const struct kafka_api_support kafka_apis[];
/* The entry for api_key, or NULL when Sluice does not serve it. */
const struct kafka_api_support *kafka_api_support_find(int16_t api_key);

/* A file range spliced into a response body at a hole left for deferred records. */
struct kafka_splice {
	size_t at;                     /* body offset where the bytes belong */
	struct flusher_file *file;     /* owned reference; NULL once handed to the connection */
	int64_t position;              /* file position of the first byte */
	int64_t length;                /* bytes */
};

struct kafka_req {
	struct kafka_req *next;        /* the connection's queue, in arrival order */
	struct kafka_conn *kc;
	struct kafka_request_header hdr;
	int16_t api_key;
	int16_t version;
	uint8_t *frame;                /* owned: the request bytes (slices point here) */
	size_t frame_len;
	struct kafka_arena arena;      /* decoded arrays; freed with the request */
	struct writer out;             /* the response body once answered */
	struct kafka_splice *splices;  /* owned: file ranges for the body's holes, by offset */
	size_t n_splices, cap_splices;
	int pending;                   /* asynchronous operations outstanding */
	bool done;                     /* response body ready (or none due) */
	bool no_response;              /* Produce acks=0: nothing is sent */
	void *state;                   /* the handler's own (freed by state_free) */
	void (*state_free)(void *state);
	void (*cancel)(struct kafka_req *req); /* optional: the connection closed; finish soon */
};

/* The broker this front end serves. */
struct broker *kafka_req_broker(const struct kafka_req *req);
/* The group coordinator (kafka_group.c). */
struct group_coordinator *kafka_req_groups(const struct kafka_req *req);
/* The loop the request's connection lives on (for partition_* replies). */
struct loop *kafka_req_loop(const struct kafka_req *req);
/* The peer address, for diagnostics. */
const char *kafka_req_peer(const struct kafka_req *req);
/* Whether the connection is gone (async completions then just clean up). */
bool kafka_req_orphaned(const struct kafka_req *req);

/*
 * Answers with a response encoded by encode(w, version, msg) (a generated
 * kafka_*_response_encode, cast). Marks the request done and sends what is in
 * order. Returns 0 or the encoder's error (the connection is then closed).
 */
typedef int (*kafka_encode_fn)(struct writer *w, int16_t version, const void *msg);
int kafka_req_respond(struct kafka_req *req, kafka_encode_fn encode, const void *msg);
/*
 * Answers with message m (a response descriptor of kafka_msg.h) encoded with
 * kafka_codec_encode_deferred: sink is told where each deferred RECORDS value
 * belongs and must call kafka_req_splice for it. Otherwise as
 * kafka_req_respond. Returns 0 or the encoder's or sink's error (the
 * connection is then closed).
 */
int kafka_req_respond_deferred(struct kafka_req *req, const struct kafka_msg_desc *m,
			       const void *msg, const struct kafka_records_sink *sink);
/*
 * Splices length bytes of file from position into the response body at body
 * offset at (a hole reported to a kafka_records_sink). Takes the file reference
 * (moved, also on error): the connection releases it once the range is sent
 * or dropped. Returns 0 or -ERR_NOMEM.
 */
int kafka_req_splice(struct kafka_req *req, size_t at, struct flusher_file *file,
		     int64_t position, int64_t length);
/* Marks a request done with no response (acks=0) and sends what is in order. */
void kafka_req_finish_silent(struct kafka_req *req);

/* Handlers, one file per API family. */
int kafka_handle_api_versions(struct kafka_req *req, struct reader *r);
int kafka_handle_metadata(struct kafka_req *req, struct reader *r);
int kafka_handle_produce(struct kafka_req *req, struct reader *r);
int kafka_handle_fetch(struct kafka_req *req, struct reader *r);
int kafka_handle_list_offsets(struct kafka_req *req, struct reader *r);
/* kafka_group.c */
int kafka_handle_find_coordinator(struct kafka_req *req, struct reader *r);
int kafka_handle_join_group(struct kafka_req *req, struct reader *r);
int kafka_handle_sync_group(struct kafka_req *req, struct reader *r);
int kafka_handle_heartbeat(struct kafka_req *req, struct reader *r);
int kafka_handle_leave_group(struct kafka_req *req, struct reader *r);
int kafka_handle_describe_groups(struct kafka_req *req, struct reader *r);
int kafka_handle_list_groups(struct kafka_req *req, struct reader *r);
/* kafka_offsets.c */
int kafka_handle_offset_commit(struct kafka_req *req, struct reader *r);
int kafka_handle_offset_fetch(struct kafka_req *req, struct reader *r);
/* kafka_admin.c */
int kafka_handle_create_topics(struct kafka_req *req, struct reader *r);
int kafka_handle_delete_topics(struct kafka_req *req, struct reader *r);
int kafka_handle_create_partitions(struct kafka_req *req, struct reader *r);
int kafka_handle_describe_configs(struct kafka_req *req, struct reader *r);
/* kafka_producer_id.c */
int kafka_handle_init_producer_id(struct kafka_req *req, struct reader *r);

#endif
