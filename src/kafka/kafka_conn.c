/*
 * kafka_conn.c: Kafka connections: framing, request headers, dispatch, and
 * sending responses in request order.
 *
 * Frame first, decode second (STYLE.md): a 4-byte big-endian length, checked
 * against socket.request.max.bytes before anything is buffered or allocated;
 * then the whole frame is copied into the request (decoded slices borrow from
 * that copy, so asynchronous handlers keep them), the request header is
 * decoded at the version the API key implies, and the handler runs.
 *
 * A connection's state (struct kafka_conn) outlives the TCP connection while
 * requests are pending: on_close marks it orphaned, and the last request to
 * finish frees it. Malformed frames close only their connection, logged once.
 *
 * Sending a response: the size and response header are copied into the
 * connection's output; a small body is copied behind them, a large one is
 * moved there (no second copy). A body with splices (Fetch) goes out as its
 * pieces between the holes, each hole filled by conn_write_file: the records
 * go from the segment file to the socket with sendfile(2).
 */
#include "kafka/kafka_server.h"

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "core/diag.h"
#include "core/err.h"
#include "kafka/kafka_group.h"
#include "kafka/kafka_int.h"
#include "storage/flusher.h"

/* Arena cap per request: decoded arrays of one request never take more. */
#define KAFKA_REQ_ARENA_MAX (64u << 20)
/* Most requests in flight on one connection before reading pauses. */
#define KAFKA_CONN_INFLIGHT_MAX 1000
/* Bodies up to this size are copied behind the header; larger ones are moved. */
#define KAFKA_BODY_COPY_MAX 4096
/* Longest response frame: its size is an int32. */
#define KAFKA_FRAME_MAX ((uint64_t)INT32_MAX)

struct kafka_server {
	struct broker *broker;
	struct group_coordinator *groups;
	int64_t request_max;
	int64_t response_max;
};

struct kafka_conn {
	struct kafka_server *server;
	struct conn *conn;          /* NULL once the TCP connection is gone */
	struct loop *loop;
	char peer[64];
	struct kafka_req *head, *tail;
	int inflight;
	bool paused;
	bool cancelling;            /* on_close is walking the queue: drain must not free */
};

/* Live struct kafka_conn objects (a closed one lives on while requests finish). */
static atomic_int live_conns;

struct broker *kafka_req_broker(const struct kafka_req *req)
{
	return req->kc->server->broker;
}

struct group_coordinator *kafka_req_groups(const struct kafka_req *req)
{
	return req->kc->server->groups;
}

struct loop *kafka_req_loop(const struct kafka_req *req)
{
	return req->kc->loop;
}

const char *kafka_req_peer(const struct kafka_req *req)
{
	return req->kc->peer;
}

bool kafka_req_orphaned(const struct kafka_req *req)
{
	return req->kc->conn == NULL;
}

/* Drops the file references of splices not handed to the connection. */
static void release_splices(struct kafka_req *req)
{
	for (size_t i = 0; i < req->n_splices; i++)
		if (req->splices[i].file)
			flusher_file_unref(req->splices[i].file);
	req->n_splices = 0;
}

static void req_free(struct kafka_req *req)
{
	release_splices(req);
	free(req->splices);
	if (req->state_free)
		req->state_free(req->state);
	kafka_arena_fini(&req->arena);
	writer_fini(&req->out);
	free(req->frame);
	free(req);
}

static void kconn_free(struct kafka_conn *kc)
{
	while (kc->head) {
		struct kafka_req *r = kc->head;
		kc->head = r->next;
		req_free(r);
	}
	free(kc);
	atomic_fetch_sub(&live_conns, 1);
}

static void release_file(void *arg)
{
	flusher_file_unref(arg);
}

/* Queues the body of req: its bytes, moved when large, copied when small. */
static int send_body(struct conn *c, struct kafka_req *req)
{
	if (req->out.len <= KAFKA_BODY_COPY_MAX)
		return conn_write(c, req->out.buf, req->out.len);
	size_t len;
	uint8_t *buf = writer_take(&req->out, &len);
	return conn_write_owned(c, buf, len, free);
}

/*
 * Queues a body with splices: the bytes between holes copied, each splice as
 * a file range (its reference moves to the connection). Splices must ascend
 * within the body (kafka_req_splice keeps the codec's order).
 */
static int send_spliced_body(struct conn *c, struct kafka_req *req)
{
	int rc = 0;
	size_t pos = 0;
	for (size_t i = 0; i < req->n_splices; i++) {
		struct kafka_splice *sp = &req->splices[i];
		if (!rc && sp->at > pos)
			rc = conn_write(c, req->out.buf + pos, sp->at - pos);
		pos = sp->at;
		struct flusher_file *f = sp->file;
		sp->file = NULL;
		if (!rc)
			rc = conn_write_file(c, flusher_file_fd(f), sp->position, sp->length,
					     release_file, f);
		else
			flusher_file_unref(f);
	}
	if (!rc && req->out.len > pos)
		rc = conn_write(c, req->out.buf + pos, req->out.len - pos);
	return rc;
}

/* Checks splices ascend within the body and adds their bytes to *total. */
static int check_splices(const struct kafka_req *req, uint64_t *total)
{
	size_t pos = 0;
	for (size_t i = 0; i < req->n_splices; i++) {
		const struct kafka_splice *sp = &req->splices[i];
		if (sp->at < pos || sp->at > req->out.len || !sp->file || sp->length < 0 ||
		    (uint64_t)sp->length > KAFKA_FRAME_MAX)
			return -ERR_INVALID;
		pos = sp->at;
		*total += (uint64_t)sp->length;
	}
	return 0;
}

/* Writes one response frame: size, response header, body (with its splices). */
static int send_response(struct kafka_conn *kc, struct kafka_req *req)
{
	struct writer w;
	writer_init(&w, 64);
	size_t len_pos = writer_reserve(&w, 4);
	struct kafka_response_header rh = { .correlation_id = req->hdr.correlation_id };
	int rc = kafka_response_header_encode(&w, kafka_response_header_version(req->api_key,
										 req->version),
					      &rh);
	if (!rc && w.err)
		rc = w.err;
	uint64_t size = (uint64_t)(w.len - 4) + req->out.len;
	if (!rc)
		rc = check_splices(req, &size);
	if (!rc && size > KAFKA_FRAME_MAX)
		rc = -ERR_TOO_LARGE;
	if (!rc) {
		writer_put_u32(&w, len_pos, (uint32_t)size);
		rc = w.err;
	}
	if (!rc)
		rc = conn_write(kc->conn, w.buf, w.len);
	writer_fini(&w);
	if (rc)
		return rc;
	return req->n_splices ? send_spliced_body(kc->conn, req) : send_body(kc->conn, req);
}

/* Sends every finished request at the head of the queue, in order. */
static void drain(struct kafka_conn *kc)
{
	if (kc->cancelling)
		return; /* on_close drains once it has walked the queue */
	while (kc->head && kc->head->done && kc->head->pending == 0) {
		struct kafka_req *req = kc->head;
		kc->head = req->next;
		if (!kc->head)
			kc->tail = NULL;
		kc->inflight--;
		if (kc->conn && !req->no_response) {
			int rc = send_response(kc, req);
			if (rc) {
				diag_warn("kafka", "%s: cannot send %s v%d response: %s", kc->peer,
					  kafka_api_name(req->api_key), req->version, err_str(rc));
				conn_close(kc->conn);
			}
		}
		req_free(req);
	}
	if (!kc->conn) {
		if (!kc->head)
			kconn_free(kc);
		return;
	}
	if (kc->paused && kc->inflight < KAFKA_CONN_INFLIGHT_MAX / 2) {
		kc->paused = false;
		conn_resume_read(kc->conn);
	}
}

/* Ends a response encoding: on error logs, drops splices, closes; then sends what is in order. */
static int finish_respond(struct kafka_req *req, int rc)
{
	if (!rc && req->out.err)
		rc = req->out.err;
	if (rc) {
		diag_error("kafka", "%s: encoding %s v%d response failed: %s", req->kc->peer,
			   kafka_api_name(req->api_key), req->version, err_str(rc));
		release_splices(req);
		if (req->kc->conn)
			conn_close(req->kc->conn);
	}
	req->done = true;
	drain(req->kc);
	return rc;
}

int kafka_req_respond(struct kafka_req *req, kafka_encode_fn encode, const void *msg)
{
	writer_reset(&req->out);
	release_splices(req);
	return finish_respond(req, encode(&req->out, req->version, msg));
}

int kafka_req_respond_deferred(struct kafka_req *req, const struct kafka_msg_desc *m,
			       const void *msg, const struct kafka_records_sink *sink)
{
	writer_reset(&req->out);
	release_splices(req);
	return finish_respond(req, kafka_codec_encode_deferred(m, &req->out, req->version, msg,
							       sink));
}

int kafka_req_splice(struct kafka_req *req, size_t at, struct flusher_file *file,
		     int64_t position, int64_t length)
{
	if (req->n_splices == req->cap_splices) {
		size_t cap = req->cap_splices ? req->cap_splices * 2 : 8;
		struct kafka_splice *p = realloc(req->splices, cap * sizeof *p);
		if (!p) {
			flusher_file_unref(file);
			return -ERR_NOMEM;
		}
		req->splices = p;
		req->cap_splices = cap;
	}
	req->splices[req->n_splices++] = (struct kafka_splice){ at, file, position, length };
	return 0;
}

void kafka_req_finish_silent(struct kafka_req *req)
{
	req->no_response = true;
	req->done = true;
	drain(req->kc);
}

/*
 * Answers an ApiVersions request whose version Sluice does not support with a
 * v0 response: UNSUPPORTED_VERSION plus our own range, as KIP-511 asks, so the
 * client retries with a version we know.
 */
static int answer_api_versions_unsupported(struct kafka_req *req)
{
	const struct kafka_api_support *s = kafka_api_support_find(KAFKA_API_API_VERSIONS);
	struct kafka_api_versions_response_api_version v = { KAFKA_API_API_VERSIONS,
							     s->min_version, s->max_version };
	struct kafka_api_versions_response resp;
	kafka_api_versions_response_init(&resp);
	resp.error_code = KAFKA_UNSUPPORTED_VERSION;
	resp.api_keys = &v;
	resp.api_keys_count = 1;
	req->version = 0;
	return kafka_req_respond(req, (kafka_encode_fn)kafka_api_versions_response_encode, &resp);
}

/* Handles one complete frame (len bytes at p). Returns 0 or <0 to close. */
static int handle_frame(struct kafka_conn *kc, const uint8_t *p, size_t len)
{
	struct reader r;
	reader_init(&r, p, len);
	int16_t api_key = reader_i16(&r);
	int16_t version = reader_i16(&r);
	int32_t correlation_id = reader_i32(&r);
	if (r.err) {
		diag_warn("kafka", "%s: request of %zu bytes too short for a header; closing",
			  kc->peer, len);
		return -ERR_MALFORMED;
	}
	struct kafka_req *req = calloc(1, sizeof *req);
	if (!req)
		return -ERR_NOMEM;
	req->kc = kc;
	req->api_key = api_key;
	req->version = version;
	req->hdr.correlation_id = correlation_id;
	kafka_arena_init(&req->arena, KAFKA_REQ_ARENA_MAX);
	writer_init(&req->out, (size_t)kc->server->response_max);
	req->frame = malloc(len);
	if (!req->frame) {
		req_free(req);
		return -ERR_NOMEM;
	}
	memcpy(req->frame, p, len);
	req->frame_len = len;
	if (kc->tail)
		kc->tail->next = req;
	else
		kc->head = req;
	kc->tail = req;
	kc->inflight++;

	const struct kafka_api_support *s = kafka_api_support_find(api_key);
	if (!s) {
		diag_warn("kafka", "%s: unsupported API key %d (v%d); closing", kc->peer, api_key,
			  version);
		return -ERR_UNSUPPORTED;
	}
	if (version < s->min_version || version > s->max_version) {
		if (api_key == KAFKA_API_API_VERSIONS)
			return answer_api_versions_unsupported(req) ? -ERR_INVALID : 0;
		diag_warn("kafka", "%s: %s v%d not supported (v%d-%d); closing", kc->peer,
			  kafka_api_name(api_key), version, s->min_version, s->max_version);
		return -ERR_UNSUPPORTED;
	}
	reader_init(&r, req->frame, req->frame_len);
	int rc = kafka_request_header_decode(&r, kafka_request_header_version(api_key, version),
					     &req->arena, &req->hdr);
	if (rc) {
		diag_warn("kafka", "%s: malformed %s v%d request header at byte %zu; closing",
			  kc->peer, kafka_api_name(api_key), version, reader_offset(&r));
		return -ERR_MALFORMED;
	}
	size_t body_at = reader_offset(&r);
	rc = s->handler(req, &r);
	if (rc) {
		diag_warn("kafka", "%s: malformed %s v%d request (body from byte %zu, fault near %zu):"
			  " %s; closing", kc->peer, kafka_api_name(api_key), version, body_at,
			  reader_offset(&r), err_str(rc));
		return rc;
	}
	return 0;
}

static int on_open(struct conn *c, void *proto_ctx)
{
	struct kafka_conn *kc = calloc(1, sizeof *kc);
	if (!kc)
		return -ERR_NOMEM;
	atomic_fetch_add(&live_conns, 1);
	kc->server = proto_ctx;
	kc->conn = c;
	kc->loop = conn_loop(c);
	snprintf(kc->peer, sizeof kc->peer, "%s", conn_peer(c));
	conn_set_data(c, kc);
	return 0;
}

static ssize_t on_data(struct conn *c, const uint8_t *data, size_t len)
{
	struct kafka_conn *kc = conn_data(c);
	size_t used = 0;
	while (len - used >= 4 && !kc->paused) {
		struct reader r;
		reader_init(&r, data + used, 4);
		int32_t size = reader_i32(&r);
		if (size < 8 || size > kc->server->request_max) {
			diag_warn("kafka", "%s: request size %d outside 8..%lld; closing", kc->peer,
				  size, (long long)kc->server->request_max);
			return -1;
		}
		if (len - used - 4 < (size_t)size)
			break;
		if (handle_frame(kc, data + used + 4, (size_t)size))
			return -1;
		used += 4 + (size_t)size;
		if (kc->inflight >= KAFKA_CONN_INFLIGHT_MAX && !kc->paused) {
			kc->paused = true;
			conn_pause_read(c);
		}
	}
	return (ssize_t)used;
}

static void on_close(struct conn *c)
{
	struct kafka_conn *kc = conn_data(c);
	if (!kc)
		return;
	kc->conn = NULL;
	/* Requests still waiting on the broker finish first; the last one frees kc. */
	struct kafka_req **pp = &kc->head;
	while (*pp) {
		struct kafka_req *r = *pp;
		if (r->pending == 0) {
			*pp = r->next;
			req_free(r);
		} else {
			pp = &r->next;
		}
	}
	kc->tail = NULL;
	for (struct kafka_req *r = kc->head; r; r = r->next)
		kc->tail = r;
	if (!kc->head) {
		kconn_free(kc);
		return;
	}
	/* Ask waiting requests (fetch long polls) to finish now. They may complete
	 * synchronously and free kc, so walk with care: stop once kc is gone. */
	kc->cancelling = true;
	for (struct kafka_req *r = kc->head; r; r = r->next)
		if (r->cancel)
			r->cancel(r);
	kc->cancelling = false;
	drain(kc);
}

static struct net_proto kafka_proto = {
	.name = "kafka",
	.on_open = on_open,
	.on_data = on_data,
	.on_close = on_close,
	.max_buffer = 0, /* set from socket.request.max.bytes by kafka_server_new */
};

const struct net_proto *kafka_server_proto(void)
{
	return &kafka_proto;
}

int kafka_server_new(struct broker *b, struct loop_group *loops, struct kafka_server **out)
{
	struct kafka_server *s = calloc(1, sizeof *s);
	if (!s)
		return -ERR_NOMEM;
	const struct config *cfg = broker_config(b);
	s->broker = b;
	s->request_max = cfg->socket_request_max_bytes;
	s->response_max = cfg->socket_request_max_bytes > (1 << 30) ? cfg->socket_request_max_bytes
								     : (1 << 30);
	int rc = group_coordinator_new(b, loops, &s->groups);
	if (rc) {
		free(s);
		return rc;
	}
	kafka_proto.max_buffer = (size_t)s->request_max + 4;
	*out = s;
	return 0;
}

void kafka_server_free(struct kafka_server *s)
{
	if (!s)
		return;
	group_coordinator_free(s->groups);
	free(s);
}

bool kafka_server_wait_idle(struct kafka_server *s, int64_t timeout_ms)
{
	/* Parked JoinGroup/SyncGroup requests are answered now, not at their timeouts. */
	group_coordinator_quiesce(s->groups);
	for (int64_t waited = 0; atomic_load(&live_conns) > 0; waited += 10) {
		if (waited >= timeout_ms)
			return false;
		nanosleep(&(struct timespec){ 0, 10 * 1000000 }, NULL);
	}
	return true;
}
