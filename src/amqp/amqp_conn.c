/*
 * amqp_conn.c: AMQP 0-9-1 connections: the protocol header, framing, the
 * connection class (start/tune/open/close), heartbeats, channel numbers, and
 * connection errors. Channel-level work is in amqp_channel.c.
 *
 * See amqp_int.h for the state machine and the error rules. One timer per
 * connection drives every deadline: the handshake timeout, heartbeats both
 * ways (send one when nothing was sent for half the interval; close a client
 * silent for two intervals), and the wait for connection.close-ok. It is
 * re-armed for the earliest deadline each time it fires, so an idle
 * connection without heartbeats costs nothing.
 *
 * Memory alarm (core/mem_account.h, config memory.high.watermark.bytes): when
 * a basic.publish frame arrives while the broker holds more message memory
 * than the watermark, the frame is left unread in the input buffer, the
 * client is sent connection.blocked (if it announced the capability) and the
 * socket is no longer read (RabbitMQ blocks a connection when it next
 * publishes, so connections that only consume keep being served and the
 * memory can drain). The blocked connection's timer looks at the alarm every
 * AMQP_MEM_CHECK_MS on the connection's own loop; once it cleared (below the
 * low mark) it sends connection.unblocked and input resumes with that frame.
 * While blocked the client's heartbeats cannot be read, so its silence is not
 * held against it (as RabbitMQ pauses its heartbeat monitor).
 *
 * Disk alarm (core/disk_alarm.h, config disk.free.limit.bytes): the same
 * blocking, with the reason "low on disk", while the data directory's
 * filesystem has less free space than the limit.
 *
 * Users: the accounts of config amqp.users ("name:password,...", guest/guest
 * by default as RabbitMQ's), checked at login with PLAIN or AMQPLAIN; every
 * account may do everything. Virtual hosts: only "/".
 */
#include "amqp/amqp_int.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/disk_alarm.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/mem_account.h"
#include "core/reader.h"
#include "version.h"

/* Live struct amqp_conn objects (for amqp_server_wait_idle). */
static atomic_int live_conns;

static int64_t now_ms(void)
{
	return clock_mono_ns() / 1000000;
}

bool amqp_conn_failed(const struct amqp_conn *ac)
{
	return ac->state >= AMQP_CONN_CLOSING || !ac->conn;
}

bool amqp_conn_live(const struct amqp_conn *ac)
{
	return ac->conn && !conn_closing(ac->conn) && ac->state < AMQP_CONN_CLOSING;
}

void amqp_conn_ref(struct amqp_conn *ac)
{
	ac->refs++;
}

void amqp_conn_unref(struct amqp_conn *ac)
{
	if (--ac->refs > 0)
		return;
	writer_fini(&ac->out);
	free(ac);
	atomic_fetch_sub(&live_conns, 1);
}

/* Pauses input while a synchronous op is in flight or the memory alarm blocks us. */
static void input_update(struct amqp_conn *ac)
{
	if (!ac->conn)
		return;
	if (ac->waiting > 0 || ac->mem_blocked)
		conn_pause_read(ac->conn);
	else
		conn_resume_read(ac->conn);
}

void amqp_conn_wait_begin(struct amqp_conn *ac)
{
	if (ac->waiting++ == 0)
		input_update(ac);
}

void amqp_conn_wait_end(struct amqp_conn *ac)
{
	if (--ac->waiting == 0)
		input_update(ac);
}

/* ---- the timer ---- */

static void timer_free_cb(uv_handle_t *h)
{
	free(h);
}

/* Closes the timer (its memory goes in the close callback). Idempotent. */
static void timer_close(struct amqp_conn *ac)
{
	if (!ac->timer)
		return;
	if (!uv_is_closing((uv_handle_t *)ac->timer))
		uv_close((uv_handle_t *)ac->timer, timer_free_cb);
	ac->timer = NULL;
	loop_member_remove(ac->loop, &ac->member);
}

/* The loop stops before the connection closed: let go of the timer now. */
static void member_close(struct loop_member *m)
{
	struct amqp_conn *ac = (struct amqp_conn *)((char *)m - offsetof(struct amqp_conn, member));
	timer_close(ac);
}

static void timer_cb(uv_timer_t *t);

/* The earliest deadline from now, or -1 when nothing is due. */
static int64_t next_deadline(const struct amqp_conn *ac)
{
	int64_t due = -1;
#define EARLIEST(t) do { int64_t t_ = (t); if (due < 0 || t_ < due) due = t_; } while (0)
	if (ac->state < AMQP_CONN_RUNNING)
		EARLIEST(ac->opened_ms + AMQP_HANDSHAKE_TIMEOUT_MS);
	if (ac->state >= AMQP_CONN_CLOSING)
		EARLIEST(ac->close_deadline_ms);
	if (ac->heartbeat && ac->state >= AMQP_CONN_OPEN && ac->state <= AMQP_CONN_RUNNING) {
		int64_t hb = (int64_t)ac->heartbeat * 1000;
		EARLIEST(ac->last_send_ms + hb / 2);
		if (!ac->mem_blocked)
			EARLIEST(ac->last_recv_ms + 2 * hb);
	}
	if (ac->mem_blocked)
		EARLIEST(ac->mem_check_ms);
#undef EARLIEST
	return due;
}

static void timer_arm(struct amqp_conn *ac)
{
	if (!ac->timer)
		return;
	int64_t due = next_deadline(ac);
	if (due < 0) {
		uv_timer_stop(ac->timer);
		return;
	}
	int64_t wait = due - now_ms();
	uv_timer_start(ac->timer, timer_cb, wait > 0 ? (uint64_t)wait : 0, 0);
}

static void send_heartbeat(struct amqp_conn *ac)
{
	writer_reset(&ac->out);
	if (amqp_frame_heartbeat_encode(&ac->out) == 0 &&
	    conn_write(ac->conn, ac->out.buf, ac->out.len) == 0)
		ac->last_send_ms = now_ms();
}

/* ---- the memory alarm ---- */

/* The alarm as last evaluated on this thread, and the loop time (ms) of that. */
static _Thread_local uint64_t alarm_checked_at = UINT64_MAX;
static _Thread_local bool alarm_cached;

static _Thread_local bool alarm_is_disk; /* the cached alarm is the disk's */

/* Re-evaluates the memory and disk alarms and remembers them for this loop millisecond. */
static bool mem_alarm_refresh(struct amqp_conn *ac)
{
	alarm_checked_at = uv_now(loop_uv(ac->loop));
	bool mem = mem_account_alarm();
	alarm_is_disk = !mem && disk_alarm_raised();
	alarm_cached = mem || alarm_is_disk;
	return alarm_cached;
}

/* Whether the memory or disk alarm is raised; evaluated at most once per loop
 * millisecond on each thread (a burst of publishes reads it from here). */
static bool mem_alarm(struct amqp_conn *ac)
{
	if (uv_now(loop_uv(ac->loop)) != alarm_checked_at)
		return mem_alarm_refresh(ac);
	return alarm_cached;
}

/* A publish met an alarm: tell the client (if it understands) and stop reading. */
static void mem_block(struct amqp_conn *ac)
{
	ac->mem_blocked = true;
	ac->mem_check_ms = now_ms() + AMQP_MEM_CHECK_MS;
	const char *reason = alarm_is_disk ? "low on disk" : "low on memory"; /* RabbitMQ's words */
	if (ac->cap_blocked && !ac->sent_blocked) {
		struct amqp_connection_blocked b = { .reason = amqp_slice_str(reason) };
		if (amqp_send_method(ac, 0, &amqp_connection_blocked_desc, &b) == 0)
			ac->sent_blocked = true;
	}
	diag_debug("amqp", "%s: blocked (%s: %lld bytes held, %lld bytes free on disk); reading paused",
		   ac->peer, reason, (long long)mem_account_total(),
		   (long long)disk_alarm_free_bytes());
	input_update(ac);
	timer_arm(ac);
}

/* The blocked connection's periodic look at the alarm: unblock once it cleared. */
static void mem_recheck(struct amqp_conn *ac, int64_t now)
{
	if (mem_alarm_refresh(ac)) {
		ac->mem_check_ms = now + AMQP_MEM_CHECK_MS;
		return;
	}
	ac->mem_blocked = false;
	if (ac->sent_blocked) {
		ac->sent_blocked = false;
		/* Not after a connection.close of ours: only close-ok may follow it. */
		if (ac->state == AMQP_CONN_RUNNING)
			amqp_send_method(ac, 0, &amqp_connection_unblocked_desc, NULL);
	}
	/* Heartbeats sent meanwhile are still unread: the silence starts now. */
	ac->last_recv_ms = now;
	diag_debug("amqp", "%s: unblocked; reading resumed", ac->peer);
	input_update(ac);
}

/* Whether frame f is a basic.publish method (peeked without decoding the rest). */
static bool is_publish(const struct amqp_frame *f)
{
	if (f->type != AMQP_FRAME_METHOD || f->channel == 0)
		return false;
	struct reader r;
	reader_init(&r, f->payload.data, f->payload.len);
	uint32_t id = reader_u32(&r);
	return !r.err && id == AMQP_BASIC_PUBLISH;
}

static void timer_cb(uv_timer_t *t)
{
	struct amqp_conn *ac = t->data;
	if (!ac->conn || conn_closing(ac->conn))
		return;
	int64_t now = now_ms();
	if (ac->state < AMQP_CONN_RUNNING && now >= ac->opened_ms + AMQP_HANDSHAKE_TIMEOUT_MS) {
		diag_warn("amqp", "%s: handshake not finished within %d ms; closing", ac->peer,
			  AMQP_HANDSHAKE_TIMEOUT_MS);
		conn_close(ac->conn);
		return;
	}
	if (ac->state >= AMQP_CONN_CLOSING && now >= ac->close_deadline_ms) {
		conn_close(ac->conn);
		return;
	}
	if (ac->mem_blocked && now >= ac->mem_check_ms)
		mem_recheck(ac, now);
	if (ac->heartbeat && ac->state >= AMQP_CONN_OPEN && ac->state <= AMQP_CONN_RUNNING) {
		int64_t hb = (int64_t)ac->heartbeat * 1000;
		if (!ac->mem_blocked && now - ac->last_recv_ms >= 2 * hb) {
			diag_warn("amqp", "%s: missed heartbeats from client, timeout: %us; closing",
				  ac->peer, ac->heartbeat);
			conn_close(ac->conn);
			return;
		}
		if (now - ac->last_send_ms >= hb / 2)
			send_heartbeat(ac);
	}
	timer_arm(ac);
}

/* ---- output and errors ---- */

int amqp_send_method(struct amqp_conn *ac, uint16_t channel, const struct amqp_method_desc *d,
		     const void *args)
{
	if (!ac->conn || conn_closing(ac->conn))
		return -ERR_CLOSED;
	writer_reset(&ac->out);
	int rc = amqp_frame_method_encode(&ac->out, channel, d, args);
	if (rc) {
		diag_error("amqp", "%s: cannot encode %s: %s; closing", ac->peer, d->name, err_str(rc));
		conn_close(ac->conn);
		return rc;
	}
	return amqp_send_bytes(ac, ac->out.buf, ac->out.len);
}

int amqp_send_bytes(struct amqp_conn *ac, const uint8_t *buf, size_t len)
{
	if (!ac->conn || conn_closing(ac->conn))
		return -ERR_CLOSED;
	int rc = conn_write(ac->conn, buf, len);
	if (rc) {
		diag_error("amqp", "%s: cannot queue %zu bytes: %s; closing", ac->peer, len,
			   err_str(rc));
		conn_close(ac->conn);
		return rc;
	}
	ac->last_send_ms = now_ms();
	return 0;
}

int amqp_send_owned(struct amqp_conn *ac, uint8_t *buf, size_t len)
{
	if (!ac->conn || conn_closing(ac->conn)) {
		free(buf);
		return -ERR_CLOSED;
	}
	int rc = conn_write_owned(ac->conn, buf, len, free);
	if (rc) {
		diag_error("amqp", "%s: cannot queue %zu bytes: %s; closing", ac->peer, len,
			   err_str(rc));
		conn_close(ac->conn);
		return rc;
	}
	ac->last_send_ms = now_ms();
	return 0;
}

void amqp_reply_text(char *out, size_t n, uint16_t code, const char *fmt, va_list ap)
{
	if (n > AMQP_REPLY_TEXT_MAX + 1)
		n = AMQP_REPLY_TEXT_MAX + 1;
	int k = snprintf(out, n, "%s - ", amqp_reply_name(code));
	if (k >= 0 && (size_t)k < n)
		vsnprintf(out + k, n - (size_t)k, fmt, ap);
}

static void conn_error_v(struct amqp_conn *ac, uint16_t code, uint32_t method_id,
			 const char *fmt, va_list ap)
{
	if (amqp_conn_failed(ac))
		return;
	char text[AMQP_REPLY_TEXT_MAX + 1];
	amqp_reply_text(text, sizeof text, code, fmt, ap);
	diag_warn("amqp", "%s: connection error %u (%s): %s; closing", ac->peer, code,
		  method_id ? amqp_method_name(method_id) : "no method", text);
	struct amqp_connection_close c = {
		.reply_code = code,
		.reply_text = amqp_slice_str(text),
		.class_id = AMQP_METHOD_CLASS(method_id),
		.method_id = AMQP_METHOD_INDEX(method_id),
	};
	amqp_confirm_flush_all(ac); /* confirms owed go first */
	amqp_send_method(ac, 0, &amqp_connection_close_desc, &c);
	ac->state = AMQP_CONN_CLOSING;
	ac->close_deadline_ms = now_ms() + AMQP_CLOSE_TIMEOUT_MS;
	timer_arm(ac);
}

void amqp_conn_error(struct amqp_conn *ac, uint16_t code, uint32_t method_id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conn_error_v(ac, code, method_id, fmt, ap);
	va_end(ap);
}

/* The byte stream cannot be followed any more: close, then only discard input. */
static void framing_lost(struct amqp_conn *ac, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void framing_lost(struct amqp_conn *ac, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conn_error_v(ac, AMQP_FRAME_ERROR, 0, fmt, ap);
	va_end(ap);
	ac->state = AMQP_CONN_DISCARD;
	ac->close_deadline_ms = now_ms() + AMQP_DISCARD_TIMEOUT_MS;
	timer_arm(ac);
}

/*
 * Logs a malformed frame once per connection (a hostile peer may send many):
 * what was wrong, the method if one was read, the fault's offset within the
 * payload, and where the frame started in the connection's byte stream.
 */
static void log_malformed(struct amqp_conn *ac, const struct amqp_frame *f, const char *what,
			  uint32_t method_id, size_t payload_offset, uint64_t frame_at)
{
	if (ac->logged_malformed)
		return;
	ac->logged_malformed = true;
	if (method_id)
		diag_warn("amqp", "%s: malformed method frame on channel %u: %s, class %u method %u"
			  " (%s), fault at payload byte %zu; frame at stream byte %llu", ac->peer,
			  f->channel, what, AMQP_METHOD_CLASS(method_id), AMQP_METHOD_INDEX(method_id),
			  amqp_method_name(method_id), payload_offset, (unsigned long long)frame_at);
	else
		diag_warn("amqp", "%s: malformed frame: %s (type %u, channel %u, size %u); frame at "
			  "stream byte %llu", ac->peer, what, f->type, f->channel, f->size,
			  (unsigned long long)frame_at);
}

/* ---- channels ---- */

static struct amqp_channel *channel_get(const struct amqp_conn *ac, uint16_t n)
{
	return n < ac->n_channels ? ac->channels[n] : NULL;
}

struct amqp_channel *amqp_conn_channel(struct amqp_conn *ac, uint16_t n, uint32_t serial)
{
	if (!amqp_conn_live(ac))
		return NULL;
	struct amqp_channel *ch = channel_get(ac, n);
	return ch && ch->serial == serial && ch->state == AMQP_CH_OPEN ? ch : NULL;
}

static void channel_forget(struct amqp_conn *ac, uint16_t n)
{
	struct amqp_channel *ch = channel_get(ac, n);
	if (ch) {
		ac->channels[n] = NULL;
		amqp_channel_free(ch);
	}
}

static void channels_free_all(struct amqp_conn *ac)
{
	for (uint16_t i = 0; i < ac->n_channels; i++)
		channel_forget(ac, i);
	free(ac->channels);
	ac->channels = NULL;
	ac->n_channels = 0;
}

/* channel.open (20/10): makes room for the number and opens it. */
static void channel_open(struct amqp_conn *ac, uint16_t n)
{
	if (n >= ac->n_channels) {
		size_t len = (size_t)n + 1;
		if (len < 8)
			len = 8;
		if (len > (size_t)ac->channel_max + 1)
			len = (size_t)ac->channel_max + 1;
		struct amqp_channel **chs = realloc(ac->channels, len * sizeof *chs);
		if (!chs) {
			amqp_conn_error(ac, AMQP_INTERNAL_ERROR, AMQP_CHANNEL_OPEN, "out of memory");
			return;
		}
		memset(chs + ac->n_channels, 0, (len - ac->n_channels) * sizeof *chs);
		ac->channels = chs;
		ac->n_channels = (uint16_t)len;
	}
	struct amqp_channel *ch = amqp_channel_new(ac, n);
	if (!ch) {
		amqp_conn_error(ac, AMQP_INTERNAL_ERROR, AMQP_CHANNEL_OPEN, "out of memory");
		return;
	}
	ac->channels[n] = ch;
	struct amqp_channel_open_ok ok = { .channel_id = amqp_slice_str("") };
	amqp_send_method(ac, n, &amqp_channel_open_ok_desc, &ok);
}

/* ---- the connection class ---- */

static int send_start(struct amqp_conn *ac)
{
	const struct amqp_table_entry caps[] = {
		{ amqp_slice_str("publisher_confirms"), amqp_field_bool(true) },
		{ amqp_slice_str("exchange_exchange_bindings"), amqp_field_bool(true) },
		{ amqp_slice_str("basic.nack"), amqp_field_bool(true) },
		{ amqp_slice_str("consumer_cancel_notify"), amqp_field_bool(true) },
		{ amqp_slice_str("connection.blocked"), amqp_field_bool(true) },
		{ amqp_slice_str("consumer_priorities"), amqp_field_bool(true) },
		{ amqp_slice_str("authentication_failure_close"), amqp_field_bool(true) },
		{ amqp_slice_str("per_consumer_qos"), amqp_field_bool(true) },
		{ amqp_slice_str("direct_reply_to"), amqp_field_bool(true) },
	};
	const struct amqp_table_entry props[] = {
		{ amqp_slice_str("product"), amqp_field_cstr("Sluice") },
		{ amqp_slice_str("version"), amqp_field_cstr(SLUICE_VERSION) },
		{ amqp_slice_str("platform"), amqp_field_cstr("C, libuv") },
		{ amqp_slice_str("information"),
		  amqp_field_cstr("A Kafka and AMQP 0-9-1 broker on one storage engine") },
		{ amqp_slice_str("capabilities"),
		  amqp_field_table(amqp_table_of(caps, sizeof caps / sizeof caps[0])) },
	};
	struct amqp_connection_start m;
	amqp_connection_start_init(&m);
	m.version_major = 0;
	m.version_minor = 9;
	m.server_properties = amqp_table_of(props, sizeof props / sizeof props[0]);
	m.mechanisms = amqp_slice_str("PLAIN AMQPLAIN");
	m.locales = amqp_slice_str("en_US");
	return amqp_send_method(ac, 0, &amqp_connection_start_desc, &m);
}

/* Whether a and b hold the same bytes, in time independent of where they differ. */
static bool same_secret(struct slice a, struct slice b)
{
	if (a.len != b.len)
		return false;
	uint8_t d = 0;
	for (size_t i = 0; i < a.len; i++)
		d |= a.data[i] ^ b.data[i];
	return d == 0;
}

/* Checks a user's password against the accounts of amqp.users. */
static bool credentials_ok(const struct amqp_server *s, struct slice user, struct slice password)
{
	for (size_t i = 0; i < s->n_accounts; i++) {
		const struct amqp_account *a = &s->accounts[i];
		if (a->name.len == user.len && memcmp(a->name.data, user.data, user.len) == 0)
			return same_secret(a->password, password);
	}
	return false;
}

/*
 * Parses amqp.users into s->accounts: entries "name:password" separated by
 * commas. A name is 1..255 bytes without ':'; the password is what follows
 * the first ':' (it may be empty). Returns 0, -ERR_NOMEM or -ERR_INVALID
 * (logged with the entry's position).
 */
static int users_load(struct amqp_server *s, const char *spec)
{
	size_t len = strlen(spec), n = 1;
	for (size_t i = 0; i < len; i++)
		n += spec[i] == ',';
	s->users = strdup(spec);
	s->accounts = calloc(n, sizeof *s->accounts);
	if (!s->users || !s->accounts)
		return -ERR_NOMEM;
	char *e = s->users;
	for (size_t i = 0; i < n; i++) {
		size_t elen = strcspn(e, ",");
		char *colon = memchr(e, ':', elen);
		if (!colon || colon == e || colon - e > 255) {
			diag_error("amqp", "amqp.users: entry %zu is not name:password (a name of 1 to 255 "
				   "bytes, then a colon)", i + 1);
			return -ERR_INVALID;
		}
		s->accounts[i] = (struct amqp_account){
			.name = { (const uint8_t *)e, (size_t)(colon - e) },
			.password = { (const uint8_t *)colon + 1, elen - (size_t)(colon - e) - 1 },
		};
		e += elen + 1;
	}
	s->n_accounts = n;
	return 0;
}

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd. */
static int parse_plain(struct slice resp, struct slice *user, struct slice *password)
{
	const uint8_t *p = resp.data, *end = resp.data + resp.len;
	const uint8_t *nul1 = resp.len ? memchr(p, 0, resp.len) : NULL;
	if (!nul1)
		return -ERR_MALFORMED;
	const uint8_t *u = nul1 + 1;
	const uint8_t *nul2 = memchr(u, 0, (size_t)(end - u));
	if (!nul2)
		return -ERR_MALFORMED;
	*user = (struct slice){ u, (size_t)(nul2 - u) };
	*password = (struct slice){ nul2 + 1, (size_t)(end - nul2 - 1) };
	return 0;
}

/* AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD. */
static int parse_amqplain(struct slice resp, struct slice *user, struct slice *password)
{
	if (amqp_table_check(resp))
		return -ERR_MALFORMED;
	struct amqp_table t = { .raw = resp };
	struct amqp_field_value login, pass;
	if (amqp_table_get(&t, "LOGIN", &login) || amqp_table_get(&t, "PASSWORD", &pass) ||
	    login.type != AMQP_FIELD_LONGSTR || pass.type != AMQP_FIELD_LONGSTR)
		return -ERR_MALFORMED;
	*user = login.v.str;
	*password = pass.v.str;
	return 0;
}

/* Reads the client's capabilities we act on. */
static void read_client_caps(struct amqp_conn *ac, const struct amqp_table *props)
{
	struct amqp_field_value caps, v;
	if (amqp_table_get(props, "capabilities", &caps) || caps.type != AMQP_FIELD_TABLE)
		return;
	if (!amqp_table_get(&caps.v.table, "connection.blocked", &v) && v.type == AMQP_FIELD_BOOL)
		ac->cap_blocked = v.v.b;
	if (!amqp_table_get(&caps.v.table, "consumer_cancel_notify", &v) &&
	    v.type == AMQP_FIELD_BOOL)
		ac->cap_cancel_notify = v.v.b;
}

/* connection.start-ok (10/11). */
static void handle_start_ok(struct amqp_conn *ac, const struct amqp_connection_start_ok *m)
{
	struct slice user = { 0 }, password = { 0 };
	int rc;
	if (amqp_slice_is(m->mechanism, "PLAIN")) {
		rc = parse_plain(m->response, &user, &password);
	} else if (amqp_slice_is(m->mechanism, "AMQPLAIN")) {
		rc = parse_amqplain(m->response, &user, &password);
	} else {
		amqp_conn_error(ac, AMQP_COMMAND_INVALID, AMQP_CONNECTION_START_OK,
				"unknown authentication mechanism '%.*s'", (int)m->mechanism.len,
				(const char *)m->mechanism.data);
		return;
	}
	if (rc || !credentials_ok(ac->server, user, password)) {
		diag_warn("amqp", "%s: login refused (mechanism %.*s, user '%.*s')", ac->peer,
			  (int)m->mechanism.len, (const char *)m->mechanism.data,
			  (int)(user.len > 64 ? 64 : user.len), user.data ? (const char *)user.data : "");
		amqp_conn_error(ac, AMQP_ACCESS_REFUSED, 0,
				"Login was refused using authentication mechanism %.*s. For details "
				"see the broker logfile.", (int)m->mechanism.len,
				(const char *)m->mechanism.data);
		return;
	}
	snprintf(ac->user, sizeof ac->user, "%.*s", (int)user.len, (const char *)user.data);
	read_client_caps(ac, &m->client_properties);
	struct amqp_connection_tune t = {
		.channel_max = AMQP_CHANNEL_MAX,
		.frame_max = AMQP_FRAME_MAX,
		.heartbeat = AMQP_HEARTBEAT_S,
	};
	if (amqp_send_method(ac, 0, &amqp_connection_tune_desc, &t) == 0)
		ac->state = AMQP_CONN_TUNE_OK;
}

/* connection.tune-ok (10/31): the client's limits, at most ours (RabbitMQ's rules). */
static void handle_tune_ok(struct amqp_conn *ac, const struct amqp_connection_tune_ok *m)
{
	if (m->channel_max == 0 || m->channel_max > AMQP_CHANNEL_MAX) {
		amqp_conn_error(ac, AMQP_NOT_ALLOWED, AMQP_CONNECTION_TUNE_OK,
				"negotiated channel_max = %u%s is higher than the maximum allowed "
				"value (%u)", m->channel_max, m->channel_max ? "" : " (no limit)",
				AMQP_CHANNEL_MAX);
		return;
	}
	if (m->frame_max == 0 || m->frame_max > AMQP_FRAME_MAX) {
		amqp_conn_error(ac, AMQP_NOT_ALLOWED, AMQP_CONNECTION_TUNE_OK,
				"negotiated frame_max = %u%s is higher than the maximum allowed "
				"value (%u)", m->frame_max, m->frame_max ? "" : " (no limit)",
				AMQP_FRAME_MAX);
		return;
	}
	if (m->frame_max < AMQP_FRAME_MIN_SIZE) {
		amqp_conn_error(ac, AMQP_NOT_ALLOWED, AMQP_CONNECTION_TUNE_OK,
				"frame_max=%u < %u min size", m->frame_max, AMQP_FRAME_MIN_SIZE);
		return;
	}
	ac->channel_max = m->channel_max;
	ac->frame_max = m->frame_max;
	ac->heartbeat = m->heartbeat;
	ac->state = AMQP_CONN_OPEN;
	timer_arm(ac);
}

/* connection.open (10/40): only the virtual host "/" exists. */
static void handle_open(struct amqp_conn *ac, const struct amqp_connection_open *m)
{
	if (!amqp_slice_is(m->virtual_host, "/")) {
		amqp_conn_error(ac, AMQP_NOT_ALLOWED, AMQP_CONNECTION_OPEN, "vhost %.*s not found",
				(int)m->virtual_host.len, (const char *)m->virtual_host.data);
		return;
	}
	struct amqp_connection_open_ok ok = { .known_hosts = amqp_slice_str("") };
	if (amqp_send_method(ac, 0, &amqp_connection_open_ok_desc, &ok) == 0) {
		ac->state = AMQP_CONN_RUNNING;
		timer_arm(ac);
	}
}

/* connection.close from the client (10/50): answer close-ok and close. */
static void handle_close(struct amqp_conn *ac)
{
	channels_free_all(ac);
	amqp_send_method(ac, 0, &amqp_connection_close_ok_desc, NULL);
	ac->state = AMQP_CONN_DISCARD;
	conn_close(ac->conn);
}

static const uint32_t expected_in[] = {
	[AMQP_CONN_START_OK] = AMQP_CONNECTION_START_OK,
	[AMQP_CONN_TUNE_OK] = AMQP_CONNECTION_TUNE_OK,
	[AMQP_CONN_OPEN] = AMQP_CONNECTION_OPEN,
};

/* A method during the handshake: only the one the state expects (and close). */
static void handshake_method(struct amqp_conn *ac, uint16_t channel, const struct amqp_method *m)
{
	if (m->id == AMQP_CONNECTION_CLOSE && channel == 0) {
		handle_close(ac);
		return;
	}
	uint32_t want = expected_in[ac->state];
	if (channel != 0 || m->id != want) {
		amqp_conn_error(ac, AMQP_COMMAND_INVALID, m->id, "expected '%s', got '%s' on channel %u",
				amqp_method_name(want), amqp_method_name(m->id), channel);
		return;
	}
	switch (m->id) {
	case AMQP_CONNECTION_START_OK:
		handle_start_ok(ac, &m->args.connection_start_ok);
		break;
	case AMQP_CONNECTION_TUNE_OK:
		handle_tune_ok(ac, &m->args.connection_tune_ok);
		break;
	case AMQP_CONNECTION_OPEN:
		handle_open(ac, &m->args.connection_open);
		break;
	}
}

/* A method on channel 0 once running: the connection class only. */
static void channel0_method(struct amqp_conn *ac, const struct amqp_method *m)
{
	switch (m->id) {
	case AMQP_CONNECTION_CLOSE:
		handle_close(ac);
		return;
	case AMQP_CONNECTION_UPDATE_SECRET:
		amqp_conn_error(ac, AMQP_NOT_IMPLEMENTED, m->id,
				"connection.update-secret is not supported (no token authentication)");
		return;
	default:
		amqp_conn_error(ac, AMQP_CHANNEL_ERROR, m->id,
				"unexpected method in connection state running");
	}
}

/* A method on channel n > 0 once running. */
static void channel_method(struct amqp_conn *ac, uint16_t n, const struct amqp_method *m)
{
	if (AMQP_METHOD_CLASS(m->id) == AMQP_CLASS_CONNECTION) {
		amqp_conn_error(ac, AMQP_COMMAND_INVALID, m->id,
				"%s is only allowed on channel 0, not %u", amqp_method_name(m->id), n);
		return;
	}
	if (n > ac->channel_max) {
		amqp_conn_error(ac, AMQP_NOT_ALLOWED, m->id,
				"channel %u is above the negotiated channel_max (%u)", n,
				ac->channel_max);
		return;
	}
	struct amqp_channel *ch = channel_get(ac, n);
	if (!ch) {
		if (m->id == AMQP_CHANNEL_OPEN)
			channel_open(ac, n);
		else
			amqp_conn_error(ac, AMQP_CHANNEL_ERROR, m->id, "expected 'channel.open'");
		return;
	}
	if (ch->state == AMQP_CH_CLOSING) {
		/* Everything but the end of the close is discarded (spec 2.2.4). */
		if (m->id == AMQP_CHANNEL_CLOSE)
			amqp_send_method(ac, n, &amqp_channel_close_ok_desc, NULL);
		if (m->id == AMQP_CHANNEL_CLOSE || m->id == AMQP_CHANNEL_CLOSE_OK)
			channel_forget(ac, n);
		return;
	}
	if (m->id == AMQP_CHANNEL_OPEN) {
		amqp_conn_error(ac, AMQP_CHANNEL_ERROR, m->id, "second 'channel.open' seen");
		return;
	}
	if (!(m->desc->flags & AMQP_M_TO_SERVER)) {
		amqp_conn_error(ac, AMQP_COMMAND_INVALID, m->id,
				"%s is sent by servers, not clients", amqp_method_name(m->id));
		return;
	}
	if (m->id == AMQP_CHANNEL_CLOSE) {
		channel_forget(ac, n);
		amqp_send_method(ac, n, &amqp_channel_close_ok_desc, NULL);
		return;
	}
	if (m->id == AMQP_CHANNEL_CLOSE_OK)
		return; /* nothing was asked: ignore, as RabbitMQ does */
	amqp_channel_method(ch, m);
}

/* Handles one method frame. */
static void method_frame(struct amqp_conn *ac, const struct amqp_frame *f, uint64_t frame_at)
{
	struct reader r;
	reader_init(&r, f->payload.data, f->payload.len);
	struct amqp_method m;
	int rc = amqp_method_decode(&r, &m);
	if (ac->state == AMQP_CONN_CLOSING) {
		/* Only the end of the close matters now. */
		if (rc == 0 && f->channel == 0 &&
		    (m.id == AMQP_CONNECTION_CLOSE_OK || m.id == AMQP_CONNECTION_CLOSE)) {
			if (m.id == AMQP_CONNECTION_CLOSE)
				amqp_send_method(ac, 0, &amqp_connection_close_ok_desc, NULL);
			ac->state = AMQP_CONN_DISCARD;
			conn_close(ac->conn);
		}
		return;
	}
	if (rc == -ERR_NOT_FOUND) {
		log_malformed(ac, f, "unknown method", m.id, 0, frame_at);
		amqp_conn_error(ac, AMQP_NOT_IMPLEMENTED, 0, "unknown method: class %u, method %u",
				AMQP_METHOD_CLASS(m.id), AMQP_METHOD_INDEX(m.id));
		return;
	}
	if (rc) {
		log_malformed(ac, f, m.id ? "bad arguments" : "too short for a method", m.id,
			      reader_offset(&r), frame_at);
		amqp_conn_error(ac, AMQP_FRAME_ERROR, m.id,
				"cannot decode %s arguments (fault at byte %zu of %u)",
				m.id ? amqp_method_name(m.id) : "method", reader_offset(&r), f->size);
		return;
	}
	if (ac->state < AMQP_CONN_RUNNING)
		handshake_method(ac, f->channel, &m);
	else if (f->channel == 0)
		channel0_method(ac, &m);
	else
		channel_method(ac, f->channel, &m);
}

/* Handles one whole frame. */
static void handle_frame(struct amqp_conn *ac, const struct amqp_frame *f, uint64_t frame_at)
{
	switch (f->type) {
	case AMQP_FRAME_METHOD:
		method_frame(ac, f, frame_at);
		return;
	case AMQP_FRAME_HEARTBEAT:
		if (ac->state == AMQP_CONN_CLOSING)
			return;
		if (f->channel != 0)
			amqp_conn_error(ac, AMQP_UNEXPECTED_FRAME, 0, "heartbeat frame on channel %u",
					f->channel);
		else if (f->size != 0)
			amqp_conn_error(ac, AMQP_FRAME_ERROR, 0, "heartbeat frame with a %u-byte payload",
					f->size);
		return;
	default: /* content header or body */
		if (ac->state == AMQP_CONN_CLOSING)
			return;
		struct amqp_channel *ch = ac->state == AMQP_CONN_RUNNING ? channel_get(ac, f->channel)
									 : NULL;
		if (!ch) {
			amqp_conn_error(ac, AMQP_UNEXPECTED_FRAME, 0,
					"content frame (type %u) on channel %u, which is not open",
					f->type, f->channel);
			return;
		}
		amqp_channel_content(ch, f);
	}
}

/* ---- the net_proto ---- */

static int on_open(struct conn *c, void *proto_ctx)
{
	struct amqp_conn *ac = calloc(1, sizeof *ac);
	if (!ac)
		return -ERR_NOMEM;
	ac->timer = malloc(sizeof *ac->timer);
	if (!ac->timer) {
		free(ac);
		return -ERR_NOMEM;
	}
	atomic_fetch_add(&live_conns, 1);
	ac->refs = 1; /* the TCP connection's; dropped in on_close */
	ac->server = proto_ctx;
	ac->conn = c;
	ac->loop = conn_loop(c);
	snprintf(ac->peer, sizeof ac->peer, "%s", conn_peer(c));
	ac->state = AMQP_CONN_HEADER;
	ac->frame_max = AMQP_FRAME_MIN_SIZE;
	ac->channel_max = AMQP_CHANNEL_MAX;
	ac->opened_ms = ac->last_recv_ms = ac->last_send_ms = now_ms();
	writer_init(&ac->out, AMQP_FRAME_MAX + AMQP_FRAME_OVERHEAD);
	uv_timer_init(loop_uv(ac->loop), ac->timer);
	ac->timer->data = ac;
	ac->member.close = member_close;
	loop_member_add(ac->loop, &ac->member);
	conn_set_data(c, ac);
	timer_arm(ac);
	return 0;
}

static ssize_t on_data(struct conn *c, const uint8_t *data, size_t len)
{
	struct amqp_conn *ac = conn_data(c);
	ac->last_recv_ms = now_ms();
	if (ac->state == AMQP_CONN_DISCARD)
		return (ssize_t)len;
	struct reader r;
	reader_init(&r, data, len);
	if (ac->state == AMQP_CONN_HEADER) {
		int rc = amqp_protocol_header_check(&r);
		if (rc == -ERR_AGAIN)
			return 0;
		if (rc) {
			/* Spec 4.2.2: answer with the version we speak, then close. */
			diag_info("amqp", "%s: not an AMQP 0-9-1 protocol header; closing", ac->peer);
			conn_write(c, AMQP_PROTOCOL_HEADER, AMQP_PROTOCOL_HEADER_SIZE);
			ac->state = AMQP_CONN_DISCARD;
			conn_close(c);
			return (ssize_t)len;
		}
		if (send_start(ac))
			return -1;
		ac->state = AMQP_CONN_START_OK;
	}
	while (ac->state != AMQP_CONN_DISCARD && !conn_closing(c) && ac->waiting == 0 &&
	       !ac->mem_blocked) {
		uint64_t frame_at = ac->stream_pos + reader_offset(&r); /* r starts at data */
		struct reader before = r;
		struct amqp_frame f;
		int rc = amqp_frame_parse(&r, ac->frame_max, &f);
		if (rc == -ERR_AGAIN)
			break;
		if (rc == 0 && ac->state == AMQP_CONN_RUNNING && is_publish(&f) && mem_alarm(ac)) {
			r = before; /* left unread: handled once the alarm clears */
			mem_block(ac);
			break;
		}
		if (rc == -ERR_TOO_LARGE) {
			log_malformed(ac, &f, "larger than frame_max", 0, 0, frame_at);
			framing_lost(ac, "frame of type %u on channel %u has a %u-byte payload, above "
				     "the negotiated frame_max %u", f.type, f.channel, f.size,
				     ac->frame_max);
		} else if (rc) {
			bool known = f.type == AMQP_FRAME_METHOD || f.type == AMQP_FRAME_HEADER ||
				     f.type == AMQP_FRAME_BODY || f.type == AMQP_FRAME_HEARTBEAT;
			log_malformed(ac, &f, known ? "bad frame-end octet" : "unknown frame type", 0, 0,
				      frame_at);
			if (known)
				framing_lost(ac, "frame of type %u on channel %u does not end with "
					     "frame-end 0xCE", f.type, f.channel);
			else
				framing_lost(ac, "unknown frame type %u", f.type);
		} else {
			handle_frame(ac, &f, frame_at);
		}
		if (ac->state >= AMQP_CONN_CLOSING && ac->channels)
			channels_free_all(ac);
	}
	if (ac->state == AMQP_CONN_DISCARD || conn_closing(c))
		return (ssize_t)len;
	ac->stream_pos += reader_offset(&r);
	return (ssize_t)reader_offset(&r);
}

static void on_close(struct conn *c)
{
	struct amqp_conn *ac = conn_data(c);
	if (!ac)
		return;
	timer_close(ac);
	ac->conn = NULL;
	/* Consumers and ops still running keep ac until their answers came back. */
	channels_free_all(ac);
	amqp_exclusive_drop_owner(ac);
	amqp_conn_unref(ac);
}

static struct net_proto amqp_proto = {
	.name = "amqp",
	.on_open = on_open,
	.on_data = on_data,
	.on_close = on_close,
	/* A whole frame of the largest frame_max fits; bigger ones are refused from
	 * their header before they are buffered. */
	.max_buffer = AMQP_FRAME_MAX + AMQP_FRAME_OVERHEAD,
};

const struct net_proto *amqp_server_proto(void)
{
	return &amqp_proto;
}

int amqp_server_new(struct broker *b, struct loop_group *loops, struct amqp_server **out)
{
	struct amqp_server *s = calloc(1, sizeof *s);
	if (!s)
		return -ERR_NOMEM;
	s->broker = b;
	s->loops = loops;
	int rc = users_load(s, broker_config(b)->amqp_users);
	if (rc) {
		free(s->accounts);
		free(s->users);
		free(s);
		return rc;
	}
	pthread_mutex_init(&s->excl_lock, NULL);
	rc = amqp_reply_init(s);
	if (rc) {
		pthread_mutex_destroy(&s->excl_lock);
		free(s->accounts);
		free(s->users);
		free(s);
		return rc;
	}
	rc = exchange_table_open(b, &amqp_exchange_table_ops, &s->exchanges);
	if (!rc) {
		const struct bqueue_hooks hooks = { .parse_args = amqp_queue_args_load,
						    .dead_letter = amqp_dead_letter,
						    .deleted = amqp_queue_deleted,
						    .ctx = s };
		rc = bqueue_load_all(b, &hooks);
		if (rc)
			exchange_table_free(s->exchanges);
	}
	if (rc) {
		amqp_reply_fini(s);
		pthread_mutex_destroy(&s->excl_lock);
		free(s->accounts);
		free(s->users);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void amqp_server_free(struct amqp_server *s)
{
	if (!s)
		return;
	bqueue_hooks_clear(s->broker);
	exchange_table_free(s->exchanges);
	free(s->excl);
	pthread_mutex_destroy(&s->excl_lock);
	amqp_reply_fini(s);
	free(s->accounts);
	free(s->users);
	free(s);
}

bool amqp_server_wait_idle(struct amqp_server *s, int64_t timeout_ms)
{
	(void)s;
	for (int64_t waited = 0; atomic_load(&live_conns) > 0; waited += 10) {
		if (waited >= timeout_ms)
			return false;
		nanosleep(&(struct timespec){ 0, 10 * 1000000 }, NULL);
	}
	return true;
}
