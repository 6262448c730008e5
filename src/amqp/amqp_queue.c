/*
 * amqp_queue.c: the queue class (50): declare (passive, durable, exclusive,
 * auto-delete, server-named, RabbitMQ's x-arguments), bind, unbind, purge,
 * delete (if-unused, if-empty), over broker/broker_queue.h and the exchange
 * table; and the registry of exclusive queues and exclusive consumers.
 *
 * Exclusive queues belong to the connection that declared them: any other
 * connection touching one gets 405 RESOURCE_LOCKED, and they are deleted when
 * that connection closes. The broker's queue API leaves this to the front end
 * (broker_queue.h), so the server keeps a small table under a mutex (every
 * loop's connections use it; declarations are rare, lookups are per method,
 * never per message).
 *
 * Reply codes and texts follow RabbitMQ 3.10 (checked side by side, see
 * docs/amqp.md).
 */
#include "amqp/amqp_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "broker/broker_queue.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/reader.h"


static const char locked_text[] =
	"cannot obtain exclusive access to locked queue '%.*s' in vhost '/'. It could be "
	"originally declared on another connection or the exclusive property value does not "
	"match that of the original declaration.";

/* ---- the exclusive registry ---- */

static bool entry_is(const struct amqp_exclusive *e, const char *name, size_t len, bool consumer)
{
	return e->consumer == consumer && e->len == len && memcmp(e->name, name, len) == 0;
}

/* Adds an entry (lock held). */
static int excl_add(struct amqp_server *s, const char *name, size_t len,
		    const struct amqp_conn *owner, bool consumer)
{
	if (len > 255)
		return -ERR_INVALID;
	if (s->n_excl == s->cap_excl) {
		size_t cap = s->cap_excl ? s->cap_excl * 2 : 16;
		struct amqp_exclusive *e = realloc(s->excl, cap * sizeof *e);
		if (!e)
			return -ERR_NOMEM;
		s->excl = e;
		s->cap_excl = cap;
	}
	struct amqp_exclusive *e = &s->excl[s->n_excl++];
	memset(e, 0, sizeof *e);
	e->owner = owner;
	e->consumer = consumer;
	e->len = (uint8_t)len;
	memcpy(e->name, name, len);
	return 0;
}

/* The connection owning exclusive queue name, or NULL (not exclusive). */
static const struct amqp_conn *excl_owner(struct amqp_server *s, struct slice name)
{
	const struct amqp_conn *owner = NULL;
	pthread_mutex_lock(&s->excl_lock);
	for (size_t i = 0; i < s->n_excl && !owner; i++)
		if (entry_is(&s->excl[i], (const char *)name.data, name.len, false))
			owner = s->excl[i].owner;
	pthread_mutex_unlock(&s->excl_lock);
	return owner;
}

int amqp_consumer_claim(struct amqp_server *s, const char *queue, bool exclusive)
{
	size_t len = strlen(queue);
	int rc = 0;
	pthread_mutex_lock(&s->excl_lock);
	struct amqp_exclusive *e = NULL;
	for (size_t i = 0; i < s->n_excl && !e; i++)
		if (entry_is(&s->excl[i], queue, len, true))
			e = &s->excl[i];
	if (e && (e->exclusive_consumer || exclusive)) {
		rc = -ERR_EXISTS;
	} else if (e) {
		e->consumers++;
	} else {
		rc = excl_add(s, queue, len, NULL, true);
		if (!rc) {
			s->excl[s->n_excl - 1].consumers = 1;
			s->excl[s->n_excl - 1].exclusive_consumer = exclusive;
		}
	}
	pthread_mutex_unlock(&s->excl_lock);
	return rc;
}

void amqp_consumer_release(struct amqp_server *s, const char *queue)
{
	size_t len = strlen(queue);
	pthread_mutex_lock(&s->excl_lock);
	for (size_t i = 0; i < s->n_excl; i++) {
		struct amqp_exclusive *e = &s->excl[i];
		if (entry_is(e, queue, len, true)) {
			if (--e->consumers == 0)
				*e = s->excl[--s->n_excl];
			break;
		}
	}
	pthread_mutex_unlock(&s->excl_lock);
}

void amqp_queue_forget(struct amqp_server *s, const char *name)
{
	size_t len = strlen(name);
	exchange_unbind_queue(s->exchanges, (struct slice){ (const uint8_t *)name, len });
	pthread_mutex_lock(&s->excl_lock);
	for (size_t i = 0; i < s->n_excl;) {
		if (entry_is(&s->excl[i], name, len, false))
			s->excl[i] = s->excl[--s->n_excl];
		else
			i++;
	}
	pthread_mutex_unlock(&s->excl_lock);
}

void amqp_queue_deleted(void *ctx, const char *queue)
{
	amqp_queue_forget(ctx, queue);
}

void amqp_exclusive_drop_owner(struct amqp_conn *ac)
{
	struct amqp_server *s = ac->server;
	for (;;) {
		char name[256];
		bool found = false;
		pthread_mutex_lock(&s->excl_lock);
		for (size_t i = 0; i < s->n_excl && !found; i++) {
			if (!s->excl[i].consumer && s->excl[i].owner == ac) {
				memcpy(name, s->excl[i].name, s->excl[i].len);
				name[s->excl[i].len] = 0;
				found = true;
			}
		}
		pthread_mutex_unlock(&s->excl_lock);
		if (!found)
			return;
		amqp_queue_forget(s, name);
		int rc = bqueue_delete(s->broker, amqp_slice_str(name), false, false, ac->loop, NULL,
				       NULL);
		if (rc && rc != -ERR_NOT_FOUND)
			diag_warn("amqp", "%s: cannot delete exclusive queue '%s': %s", ac->peer, name,
				  err_str(rc));
	}
}

/* ---- helpers ---- */

/* The queue a method names: the empty name means the channel's last declared one. */
static bool queue_name(struct amqp_channel *ch, struct slice in, uint32_t method,
		       struct slice *out)
{
	if (in.len) {
		*out = in;
		return true;
	}
	if (!ch->has_current_queue) {
		amqp_channel_error(ch, AMQP_NOT_FOUND, method, "no previously declared queue");
		return false;
	}
	*out = (struct slice){ (const uint8_t *)ch->current_queue, ch->current_queue_len };
	return true;
}

/* 405 when the queue is exclusive to another connection. */
static bool queue_accessible(struct amqp_channel *ch, struct slice name, uint32_t method)
{
	const struct amqp_conn *owner = excl_owner(ch->ac->server, name);
	if (owner && owner != ch->ac) {
		amqp_channel_error(ch, AMQP_RESOURCE_LOCKED, method, locked_text, SL(name));
		return false;
	}
	return true;
}

struct bqueue *amqp_queue_open(struct amqp_channel *ch, struct slice name, uint32_t method)
{
	if (!queue_name(ch, name, method, &name))
		return NULL;
	struct bqueue *q;
	if (bqueue_get(ch->ac->server->broker, name, &q)) {
		amqp_channel_error(ch, AMQP_NOT_FOUND, method, "no queue '%.*s' in vhost '/'", SL(name));
		return NULL;
	}
	if (!queue_accessible(ch, name, method)) {
		bqueue_release(q);
		return NULL;
	}
	return q;
}

static void set_current(struct amqp_channel *ch, struct slice name)
{
	ch->has_current_queue = true;
	ch->current_queue_len = (uint8_t)name.len;
	memcpy(ch->current_queue, name.data, name.len);
	ch->current_queue[name.len] = 0;
}

/* "amq.gen-" and 22 characters of URL-safe base64 of 16 random bytes, as RabbitMQ. */
static void generate_name(char out[64])
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t r[22];
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		static _Atomic uint64_t fallback;
		uint64_t n = ++fallback ^ (uint64_t)clock();
		for (size_t i = 0; i < sizeof r; i++)
			r[i] = (uint8_t)(n >> (8 * (i % 8))) ^ (uint8_t)(i * 37);
	}
	memcpy(out, "amq.gen-", 8);
	for (size_t i = 0; i < sizeof r; i++)
		out[8 + i] = b64[r[i] & 63];
	out[8 + sizeof r] = 0;
}

/* RabbitMQ's name of a field value type, for argument errors. */
static const char *type_name(enum amqp_field_type t)
{
	switch (t) {
	case AMQP_FIELD_BOOL: return "bool";
	case AMQP_FIELD_FLOAT: return "float";
	case AMQP_FIELD_DOUBLE: return "double";
	case AMQP_FIELD_DECIMAL: return "decimal";
	case AMQP_FIELD_LONGSTR: return "longstr";
	case AMQP_FIELD_BYTES: return "binary";
	case AMQP_FIELD_ARRAY: return "array";
	case AMQP_FIELD_TIMESTAMP: return "timestamp";
	case AMQP_FIELD_TABLE: return "table";
	case AMQP_FIELD_VOID: return "void";
	default: return "integer";
	}
}

/* Why queue arguments were refused: an AMQP reply code and RabbitMQ's text. */
struct args_error {
	uint16_t code;
	char text[400];
};

static int args_fail(struct args_error *e, uint16_t code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int args_fail(struct args_error *e, uint16_t code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof e->text, fmt, ap);
	va_end(ap);
	e->code = code;
	return -1;
}

/* Reads one non-negative integer queue argument. */
static int int_arg(struct args_error *e, struct slice qname, const char *key,
		   const struct amqp_field_value *v, int64_t *out)
{
	int64_t n;
	if (amqp_field_int(v, &n))
		return args_fail(e, AMQP_PRECONDITION_FAILED,
				 "invalid arg '%s' for queue '%.*s' in vhost '/': \"expected integer,"
				 " got %s\"", key, SL(qname), type_name(v->type));
	if (n < 0)
		return args_fail(e, AMQP_PRECONDITION_FAILED,
				 "invalid arg '%s' for queue '%.*s' in vhost '/': {value_negative,%lld}",
				 key, SL(qname), (long long)n);
	*out = n;
	return 0;
}

/* RabbitMQ's name of a field's exact type (rabbit_binary_parser's type atoms). */
static const char *exact_type_name(enum amqp_field_type t)
{
	switch (t) {
	case AMQP_FIELD_I8: return "byte";
	case AMQP_FIELD_U8: return "unsignedbyte";
	case AMQP_FIELD_I16: return "short";
	case AMQP_FIELD_U16: return "unsignedshort";
	case AMQP_FIELD_I32: return "signedint";
	case AMQP_FIELD_U32: return "unsignedint";
	case AMQP_FIELD_I64: return "long";
	default: return type_name(t);
	}
}

/* Reads a string queue argument (a longstr) into out (a name, at most 255 bytes). */
static int str_arg(struct args_error *e, struct slice qname, const char *key,
		   const struct amqp_field_value *v, char out[BQUEUE_NAME_MAX + 1])
{
	if (v->type != AMQP_FIELD_LONGSTR)
		return args_fail(e, AMQP_PRECONDITION_FAILED,
				 "invalid type '%s' for arg '%s' in queue '%.*s' in vhost '/'",
				 exact_type_name(v->type), key, SL(qname));
	if (v->v.str.len > BQUEUE_NAME_MAX || memchr(v->v.str.data, 0, v->v.str.len))
		return args_fail(e, AMQP_PRECONDITION_FAILED,
				 "invalid arg '%s' for queue '%.*s' in vhost '/': name too long or "
				 "with a NUL byte", key, SL(qname));
	memcpy(out, v->v.str.data, v->v.str.len);
	out[v->v.str.len] = 0;
	return 0;
}

/* RabbitMQ arguments Sluice does not implement yet (docs/amqp.md). */
static const char *const unsupported_args[] = {
	"x-queue-master-locator", "x-delivery-limit", "x-max-in-memory-length",
	"x-max-in-memory-bytes",
};

/*
 * Turns queue.declare arguments into bqueue_args: x-message-ttl, x-expires,
 * x-max-length, x-max-length-bytes, x-overflow, x-dead-letter-exchange,
 * x-dead-letter-routing-key, x-max-priority, x-single-active-consumer, x-queue-type classic,
 * x-queue-mode (every queue pages to disk anyway). Unknown keys are ignored,
 * as RabbitMQ does. Returns 0, or -1 with the reply code and text in *e.
 */
static int args_parse(struct slice qname, const struct amqp_table *t, struct bqueue_args *a,
		      struct args_error *e)
{
	struct amqp_table_iter it;
	amqp_table_iter_init(&it, t);
	struct slice key;
	struct amqp_field_value v;
	int rc;
	while ((rc = amqp_table_iter_next(&it, &key, &v)) == 1) {
		char k[256];
		snprintf(k, sizeof k, "%.*s", SL(key));
		for (size_t i = 0; i < sizeof unsupported_args / sizeof unsupported_args[0]; i++)
			if (amqp_slice_is(key, unsupported_args[i]))
				return args_fail(e, AMQP_NOT_IMPLEMENTED,
						 "queue argument '%s' is not supported yet", k);
		int bad = 0;
		if (amqp_slice_is(key, "x-message-ttl")) {
			bad = int_arg(e, qname, k, &v, &a->message_ttl);
		} else if (amqp_slice_is(key, "x-expires")) {
			bad = int_arg(e, qname, k, &v, &a->expires);
			if (!bad && a->expires == 0)
				return args_fail(e, AMQP_PRECONDITION_FAILED,
						 "invalid arg '%s' for queue '%.*s' in vhost '/': "
						 "{value_zero,0}", k, SL(qname));
		} else if (amqp_slice_is(key, "x-max-length")) {
			bad = int_arg(e, qname, k, &v, &a->limits.max_length);
		} else if (amqp_slice_is(key, "x-max-length-bytes")) {
			bad = int_arg(e, qname, k, &v, &a->limits.max_length_bytes);
		} else if (amqp_slice_is(key, "x-dead-letter-exchange")) {
			bad = str_arg(e, qname, k, &v, a->dlx);
			a->has_dlx = !bad;
		} else if (amqp_slice_is(key, "x-dead-letter-routing-key")) {
			bad = str_arg(e, qname, k, &v, a->dlx_key);
			a->has_dlx_key = !bad;
		} else if (amqp_slice_is(key, "x-single-active-consumer")) {
			if (v.type != AMQP_FIELD_BOOL)
				return args_fail(e, AMQP_PRECONDITION_FAILED,
						 "invalid arg '%s' for queue '%.*s' in vhost '/': "
						 "{unacceptable_type,%s}", k, SL(qname),
						 exact_type_name(v.type));
			a->single_active = v.v.b;
		} else if (amqp_slice_is(key, "x-max-priority")) {
			/* RabbitMQ's check_max_priority_arg: a non-negative integer <= 255. */
			int64_t n = 0;
			bad = int_arg(e, qname, k, &v, &n);
			if (!bad && n > QUEUE_PRIORITY_MAX)
				return args_fail(e, AMQP_PRECONDITION_FAILED,
						 "invalid arg '%s' for queue '%.*s' in vhost '/': "
						 "{max_value_exceeded,%lld}", k, SL(qname), (long long)n);
			a->max_priority = (int)n;
		} else if (amqp_slice_is(key, "x-overflow")) {
			struct slice s = v.type == AMQP_FIELD_LONGSTR ? v.v.str : (struct slice){ 0 };
			if (amqp_slice_is(s, "drop-head"))
				a->limits.overflow = QUEUE_OVERFLOW_DROP_HEAD;
			else if (amqp_slice_is(s, "reject-publish"))
				a->limits.overflow = QUEUE_OVERFLOW_REJECT_PUBLISH;
			else if (amqp_slice_is(s, "reject-publish-dlx"))
				a->limits.overflow = QUEUE_OVERFLOW_REJECT_PUBLISH_DLX;
			else
				return args_fail(e, AMQP_PRECONDITION_FAILED,
						 "invalid arg 'x-overflow' for queue '%.*s' in vhost "
						 "'/': invalid_overflow", SL(qname));
		} else if (amqp_slice_is(key, "x-queue-type")) {
			if (v.type != AMQP_FIELD_LONGSTR || !amqp_slice_is(v.v.str, "classic"))
				return args_fail(e, AMQP_NOT_IMPLEMENTED,
						 "only classic queues are supported (x-queue-type)");
		}
		if (bad)
			return -1;
	}
	if (a->has_dlx_key && !a->has_dlx)
		return args_fail(e, AMQP_PRECONDITION_FAILED,
				 "invalid arg 'x-dead-letter-routing-key' for queue '%.*s' in vhost "
				 "'/': routing_key_but_no_dlx_defined", SL(qname));
	if (rc < 0)
		return args_fail(e, AMQP_FRAME_ERROR, "cannot decode queue arguments");
	return 0;
}

/* args_parse for queue.declare: raises the error on the channel or connection. */
static bool parse_args(struct amqp_channel *ch, struct slice qname, const struct amqp_table *t,
		       struct bqueue_args *a)
{
	struct args_error e;
	if (args_parse(qname, t, a, &e) == 0)
		return true;
	if (e.code == AMQP_PRECONDITION_FAILED)
		amqp_channel_error(ch, e.code, AMQP_QUEUE_DECLARE, "%s", e.text);
	else
		amqp_conn_error(ch->ac, e.code, AMQP_QUEUE_DECLARE, "%s", e.text);
	return false;
}

int amqp_queue_args_load(struct slice stored, struct bqueue_args *a)
{
	struct amqp_table t;
	if (amqp_table_load(stored, &t))
		return -ERR_MALFORMED;
	struct args_error e;
	if (args_parse(amqp_slice_str(""), &t, a, &e)) {
		diag_warn("amqp", "stored queue arguments refused: %s", e.text);
		return -ERR_INVALID;
	}
	return 0;
}

/*
 * The first argument in which a (as declared now) differs from the queue's
 * cur, or NULL; the values as text in got / have.
 */
static const char *args_differ(const struct bqueue_args *a, const struct bqueue_args *cur,
			       char *got, char *have, size_t n)
{
	const struct {
		const char *name;
		int64_t a, cur;
	} ints[] = {
		{ "x-message-ttl", a->message_ttl, cur->message_ttl },
		{ "x-expires", a->expires, cur->expires },
		{ "x-max-length", a->limits.max_length, cur->limits.max_length },
		{ "x-max-length-bytes", a->limits.max_length_bytes, cur->limits.max_length_bytes },
		{ "x-max-priority", a->max_priority ? a->max_priority : -1,
		  cur->max_priority ? cur->max_priority : -1 },
		{ "x-single-active-consumer", a->single_active ? 1 : -1, cur->single_active ? 1 : -1 },
	};
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
		if (ints[i].a == ints[i].cur)
			continue;
		snprintf(got, n, ints[i].a < 0 ? "none" : "'%lld'", (long long)ints[i].a);
		snprintf(have, n, ints[i].cur < 0 ? "none" : "'%lld'", (long long)ints[i].cur);
		return ints[i].name;
	}
	static const char *const overflow[] = { "drop-head", "reject-publish", "reject-publish-dlx" };
	if (a->limits.overflow != cur->limits.overflow) {
		snprintf(got, n, "'%s'", overflow[a->limits.overflow]);
		snprintf(have, n, "'%s'", overflow[cur->limits.overflow]);
		return "x-overflow";
	}
	if (a->has_dlx != cur->has_dlx || (a->has_dlx && strcmp(a->dlx, cur->dlx))) {
		snprintf(got, n, a->has_dlx ? "'%s'" : "none", a->dlx);
		snprintf(have, n, cur->has_dlx ? "'%s'" : "none", cur->dlx);
		return "x-dead-letter-exchange";
	}
	if (a->has_dlx_key != cur->has_dlx_key || (a->has_dlx_key && strcmp(a->dlx_key, cur->dlx_key))) {
		snprintf(got, n, a->has_dlx_key ? "'%s'" : "none", a->dlx_key);
		snprintf(have, n, cur->has_dlx_key ? "'%s'" : "none", cur->dlx_key);
		return "x-dead-letter-routing-key";
	}
	return NULL;
}

/* The owner loop ran everything posted before: the counts include them. */
static void declare_counted(void *arg, int status, uint64_t n)
{
	(void)status;
	(void)n;
	struct amqp_op *op = arg;
	struct amqp_channel *ch = amqp_op_channel(op);
	if (ch) {
		struct amqp_queue_declare_ok ok = {
			.queue = { (const uint8_t *)op->name, op->name_len },
			.message_count = (uint32_t)bqueue_message_count(op->q),
			.consumer_count = bqueue_consumer_count(op->q),
		};
		amqp_channel_send(ch, &amqp_queue_declare_ok_desc, &ok);
	}
	amqp_op_free(op);
}

/*
 * Answers queue.declare with the queue's counts. They are kept by the queue's
 * owner loop, and this channel's publishes may still be on their way there,
 * so the answer waits for a round trip to the owner first (RabbitMQ's counts
 * include the channel's earlier publishes too). The round trip is a
 * bqueue_cancel of consumer id 0, which no consumer has: its completion runs
 * after every earlier message this loop posted to the owner.
 */
static void declare_ok(struct amqp_channel *ch, bool nowait, struct slice name,
		       struct bqueue *q /* moved */)
{
	struct amqp_op *op = nowait ? NULL : amqp_op_new(ch, AMQP_QUEUE_DECLARE, true);
	if (!op) {
		bqueue_release(q);
		return;
	}
	op->q = q;
	op->name_len = (uint8_t)name.len;
	memcpy(op->name, name.data, name.len);
	op->name[name.len] = 0;
	if (bqueue_cancel(q, 0, ch->ac->loop, declare_counted, op)) {
		amqp_op_free(op);
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_QUEUE_DECLARE, "broker stopping");
	}
}

/* queue.declare (50/10). */
void amqp_queue_declare(struct amqp_channel *ch, const struct amqp_queue_declare *m)
{
	const uint32_t id = AMQP_QUEUE_DECLARE;
	struct amqp_server *s = ch->ac->server;
	struct bqueue *q = NULL;
	char generated[64];
	struct slice name = m->queue;
	if (m->passive && amqp_reply_exists(s, name)) {
		/* Direct reply-to's pseudo-queue and keys: no queue, nothing stored. */
		if (!m->nowait) {
			struct amqp_queue_declare_ok ok = { .queue = name };
			amqp_channel_send(ch, &amqp_queue_declare_ok_desc, &ok);
		}
		return;
	}
	if (m->passive) {
		if (!queue_name(ch, name, id, &name) || !(q = amqp_queue_open(ch, name, id)))
			return;
		bqueue_touch(q); /* a passive declare is a use too (x-expires), as RabbitMQ */
		set_current(ch, name);
		declare_ok(ch, m->nowait, name, q);
		return;
	}
	if (name.len == 0) {
		generate_name(generated);
		name = amqp_slice_str(generated);
	} else if (name.len >= 4 && memcmp(name.data, "amq.", 4) == 0) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "queue name '%.*s' contains reserved prefix 'amq.*'", SL(name));
		return;
	} else if (memchr(name.data, 0, name.len)) {
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id,
				   "queue names with a NUL byte are not supported");
		return;
	}
	/* An existing queue must match exclusivity (RabbitMQ answers 405 here). */
	const struct amqp_conn *owner = excl_owner(s, name);
	struct bqueue *existing;
	if (bqueue_get(s->broker, name, &existing) == 0) {
		bqueue_release(existing);
		if ((owner && owner != ch->ac) || (owner != NULL) != m->exclusive) {
			amqp_channel_error(ch, AMQP_RESOURCE_LOCKED, id, locked_text, SL(name));
			return;
		}
	}
	struct bqueue_args args;
	bqueue_args_init(&args);
	args.durable = m->durable;
	args.exclusive = m->exclusive;
	args.auto_delete = m->auto_delete;
	if (!parse_args(ch, name, &m->arguments, &args))
		return;
	int rc = amqp_table_store(&m->arguments, &args.arguments);
	if (rc) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "%s", err_str(rc));
		return;
	}
	bool created = false;
	rc = bqueue_declare(s->broker, name, &args, false, &q, &created);
	free((void *)args.arguments.data);
	if (rc == -ERR_INVALID) {
		/* Which flag differs: durable is visible, exclusive was checked above. */
		bool cur_durable = !m->durable;
		if (bqueue_get(s->broker, name, &existing) == 0) {
			cur_durable = bqueue_durable(existing);
			bqueue_release(existing);
		}
		const char *arg = cur_durable != m->durable ? "durable" : "auto_delete";
		bool got = cur_durable != m->durable ? m->durable : m->auto_delete;
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id,
				   "inequivalent arg '%s' for queue '%.*s' in vhost '/': received '%s' "
				   "but current is '%s'", arg, SL(name), got ? "true" : "false",
				   got ? "false" : "true");
		return;
	}
	if (rc) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "cannot declare queue '%.*s': %s",
				SL(name), err_str(rc));
		return;
	}
	if (created && m->exclusive) {
		pthread_mutex_lock(&s->excl_lock);
		rc = excl_add(s, (const char *)name.data, name.len, ch->ac, false);
		pthread_mutex_unlock(&s->excl_lock);
		if (rc) {
			bqueue_release(q);
			amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "%s", err_str(rc));
			return;
		}
	} else if (!created && m->exclusive && excl_owner(s, name) != ch->ac) {
		/* Another connection created it in the meantime. */
		bqueue_release(q);
		amqp_channel_error(ch, AMQP_RESOURCE_LOCKED, id, locked_text, SL(name));
		return;
	}
	if (!created) {
		/* RabbitMQ refuses a re-declaration with other arguments (406). */
		struct bqueue_args cur;
		bqueue_args_get(q, &cur);
		char got[300], have[300];
		const char *arg = args_differ(&args, &cur, got, have, sizeof got);
		if (arg) {
			bqueue_release(q);
			amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id,
					   "inequivalent arg '%s' for queue '%.*s' in vhost '/': "
					   "received %s but current is %s", arg, SL(name), got, have);
			return;
		}
	}
	set_current(ch, name);
	declare_ok(ch, m->nowait, name, q);
}

/* queue.bind (50/20). */
void amqp_queue_bind(struct amqp_channel *ch, const struct amqp_queue_bind *m)
{
	const uint32_t id = AMQP_QUEUE_BIND;
	if (m->exchange.len == 0) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "operation not permitted on the default exchange");
		return;
	}
	struct slice name;
	if (!queue_name(ch, m->queue, id, &name))
		return;
	struct bqueue *q = amqp_queue_open(ch, name, id);
	if (!q)
		return;
	/* Spec: an empty queue name and routing key bind with the queue's name. */
	struct slice key = m->queue.len == 0 && m->routing_key.len == 0 ? name : m->routing_key;
	struct exchange_binding b = {
		.source = m->exchange,
		.dest_kind = EXCHANGE_DEST_QUEUE,
		.destination = name,
		.routing_key = key,
		.dest_durable = bqueue_durable(q),
	};
	bqueue_release(q);
	int rc = amqp_table_store(&m->arguments, &b.args);
	if (rc) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "%s", err_str(rc));
		return;
	}
	char err[256];
	rc = exchange_bind(ch->ac->server->exchanges, &b, NULL, err, sizeof err);
	free((void *)b.args.data);
	if (rc == -ERR_NOT_FOUND)
		amqp_channel_error(ch, AMQP_NOT_FOUND, id, "no exchange '%.*s' in vhost '/'",
				   SL(m->exchange));
	else if (rc == -ERR_INVALID)
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id, "%s", err);
	else if (rc)
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "%s", err_str(rc));
	else if (!m->nowait)
		amqp_channel_send(ch, &amqp_queue_bind_ok_desc, NULL);
}

/* queue.unbind (50/50): unbinding what is not bound succeeds (as RabbitMQ). */
void amqp_queue_unbind(struct amqp_channel *ch, const struct amqp_queue_unbind *m)
{
	const uint32_t id = AMQP_QUEUE_UNBIND;
	if (m->exchange.len == 0) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "operation not permitted on the default exchange");
		return;
	}
	struct slice name;
	if (!queue_name(ch, m->queue, id, &name) || !queue_accessible(ch, name, id))
		return;
	struct exchange_binding b = {
		.source = m->exchange,
		.dest_kind = EXCHANGE_DEST_QUEUE,
		.destination = name,
		.routing_key = m->routing_key,
	};
	int rc = amqp_table_store(&m->arguments, &b.args);
	if (rc) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "%s", err_str(rc));
		return;
	}
	rc = exchange_unbind(ch->ac->server->exchanges, &b);
	free((void *)b.args.data);
	if (rc && rc != -ERR_NOT_FOUND)
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "%s", err_str(rc));
	else
		amqp_channel_send(ch, &amqp_queue_unbind_ok_desc, NULL);
}

static void purge_done(void *arg, int status, uint64_t n)
{
	struct amqp_op *op = arg;
	struct amqp_channel *ch = amqp_op_channel(op);
	if (ch && status)
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, op->method, "purge failed: %s",
				err_str(status));
	else if (ch && !op->nowait) {
		struct amqp_queue_purge_ok ok = { .message_count = (uint32_t)n };
		amqp_channel_send(ch, &amqp_queue_purge_ok_desc, &ok);
	}
	amqp_op_free(op);
}

/* queue.purge (50/30): answered once the queue's owner loop purged it. */
void amqp_queue_purge(struct amqp_channel *ch, const struct amqp_queue_purge *m)
{
	struct bqueue *q = amqp_queue_open(ch, m->queue, AMQP_QUEUE_PURGE);
	if (!q)
		return;
	struct amqp_op *op = amqp_op_new(ch, AMQP_QUEUE_PURGE, true);
	if (op) {
		op->nowait = m->nowait;
		int rc = bqueue_purge(q, ch->ac->loop, purge_done, op);
		if (rc) {
			amqp_op_free(op);
			amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, AMQP_QUEUE_PURGE, "%s",
					err_str(rc));
		}
	}
	bqueue_release(q);
}

static void delete_ok(struct amqp_channel *ch, bool nowait, uint64_t n)
{
	if (nowait)
		return;
	struct amqp_queue_delete_ok ok = { .message_count = (uint32_t)n };
	amqp_channel_send(ch, &amqp_queue_delete_ok_desc, &ok);
}

static void delete_done(void *arg, int status, uint64_t n)
{
	struct amqp_op *op = arg;
	if (status == 0)
		amqp_queue_forget(op->ac->server, op->name);
	struct amqp_channel *ch = amqp_op_channel(op);
	if (!ch) {
		amqp_op_free(op);
		return;
	}
	if (status == -ERR_INVALID) {
		/* Both flags set: tell which held by looking at the consumers. */
		bool in_use = op->if_unused && !op->if_empty;
		struct bqueue *q;
		if (op->if_unused && op->if_empty &&
		    bqueue_get(op->ac->server->broker, amqp_slice_str(op->name), &q) == 0) {
			in_use = bqueue_consumer_count(q) > 0;
			bqueue_release(q);
		}
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, op->method,
				   "queue '%s' in vhost '/' %s", op->name, in_use ? "in use" : "not empty");
	} else if (status && status != -ERR_NOT_FOUND) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, op->method, "delete failed: %s",
				err_str(status));
	} else {
		delete_ok(ch, op->nowait, status ? 0 : n);
	}
	amqp_op_free(op);
}

/* queue.delete (50/40): deleting a missing queue succeeds (as RabbitMQ). */
void amqp_queue_delete(struct amqp_channel *ch, const struct amqp_queue_delete *m)
{
	const uint32_t id = AMQP_QUEUE_DELETE;
	struct slice name;
	if (!queue_name(ch, m->queue, id, &name) || !queue_accessible(ch, name, id))
		return;
	struct amqp_op *op = amqp_op_new(ch, id, true);
	if (!op)
		return;
	op->nowait = m->nowait;
	op->if_unused = m->if_unused;
	op->if_empty = m->if_empty;
	op->name_len = (uint8_t)name.len;
	memcpy(op->name, name.data, name.len);
	op->name[name.len] = 0;
	int rc = bqueue_delete(ch->ac->server->broker, name, m->if_unused, m->if_empty,
			       ch->ac->loop, delete_done, op);
	if (rc == -ERR_NOT_FOUND) {
		delete_ok(ch, m->nowait, 0);
		amqp_op_free(op);
	} else if (rc) {
		amqp_op_free(op);
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, id, "%s", err_str(rc));
	}
}
