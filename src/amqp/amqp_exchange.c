/*
 * amqp_exchange.c: the exchange class (40): declare, delete, bind, unbind
 * (RabbitMQ's exchange-to-exchange bindings), over broker/exchange.h; and the
 * reader of AMQP field tables that the exchange table uses to match headers
 * exchanges without knowing the encoding.
 *
 * Reply codes and texts follow RabbitMQ 3.10 (checked side by side, see
 * docs/amqp.md): the default exchange "" is 403 for every operation, a new
 * "amq."-prefixed name is 403, an inequivalent re-declaration is 406 naming
 * the first differing argument, a passive declaration of a missing exchange
 * is 404, an unknown type is the connection error 503, deleting a missing
 * exchange or unbinding what is not bound succeeds, and deleting an in-use
 * one with if-unused is 406.
 */
#include "amqp/amqp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* Largest encoded argument table stored (frames are smaller anyway). */
#define ARGS_STORE_MAX (1u << 20)


/* ---- field tables for the exchange table ---- */

/* Converts an AMQP field value into what the headers exchange compares. */
static void value_of(const struct amqp_field_value *v, struct exchange_value *out)
{
	memset(out, 0, sizeof *out);
	int64_t i;
	switch (v->type) {
	case AMQP_FIELD_BOOL:
		out->kind = EXCHANGE_VALUE_BOOL;
		out->b = v->v.b;
		return;
	case AMQP_FIELD_FLOAT:
		out->kind = EXCHANGE_VALUE_FLOAT;
		out->f = v->v.f32;
		return;
	case AMQP_FIELD_DOUBLE:
		out->kind = EXCHANGE_VALUE_FLOAT;
		out->f = v->v.f64;
		return;
	case AMQP_FIELD_LONGSTR:
	case AMQP_FIELD_BYTES:
		out->kind = EXCHANGE_VALUE_BYTES;
		out->bytes = v->v.str;
		return;
	case AMQP_FIELD_TIMESTAMP:
		if (v->v.ts <= INT64_MAX) {
			out->kind = EXCHANGE_VALUE_INT;
			out->i = (int64_t)v->v.ts;
		} else {
			out->kind = EXCHANGE_VALUE_OTHER;
			out->tag = 'T';
			out->i = (int64_t)(v->v.ts & INT64_MAX);
		}
		return;
	case AMQP_FIELD_DECIMAL:
		out->kind = EXCHANGE_VALUE_OTHER;
		out->tag = 'D';
		out->i = ((int64_t)v->v.dec.scale << 32) | (uint32_t)v->v.dec.value;
		return;
	case AMQP_FIELD_TABLE:
		out->kind = EXCHANGE_VALUE_OTHER;
		out->tag = 'F';
		out->bytes = v->v.table.raw;
		return;
	case AMQP_FIELD_ARRAY:
		out->kind = EXCHANGE_VALUE_OTHER;
		out->tag = 'A';
		out->bytes = v->v.array.raw;
		return;
	case AMQP_FIELD_VOID:
		out->kind = EXCHANGE_VALUE_VOID;
		return;
	default:
		if (amqp_field_int(v, &i) == 0) {
			out->kind = EXCHANGE_VALUE_INT;
			out->i = i;
		} else {
			out->kind = EXCHANGE_VALUE_OTHER;
			out->tag = (char)v->type;
		}
	}
}

/* Walks a decoded table. */
static int table_foreach(const struct amqp_table *t, exchange_arg_fn fn, void *arg)
{
	struct amqp_table_iter it;
	amqp_table_iter_init(&it, t);
	struct slice key;
	struct amqp_field_value v;
	int rc;
	while ((rc = amqp_table_iter_next(&it, &key, &v)) == 1) {
		struct exchange_value ev;
		value_of(&v, &ev);
		int stop = fn(arg, key, &ev);
		if (stop)
			return stop;
	}
	return rc;
}

int amqp_table_load(struct slice args, struct amqp_table *t)
{
	memset(t, 0, sizeof *t);
	if (args.len == 0)
		return 0;
	struct reader r;
	reader_init(&r, args.data, args.len);
	int rc = amqp_table_parse(&r, t);
	return rc ? rc : reader_remaining(&r) ? -ERR_MALFORMED : 0;
}

static int args_foreach(struct slice args, exchange_arg_fn fn, void *arg)
{
	struct amqp_table t;
	int rc = amqp_table_load(args, &t);
	return rc ? rc : table_foreach(&t, fn, arg);
}

struct find {
	struct slice key;
	struct exchange_value *out;
};

static int find_visit(void *arg, struct slice key, const struct exchange_value *v)
{
	struct find *f = arg;
	if (key.len != f->key.len || (key.len && memcmp(key.data, f->key.data, key.len)))
		return 0;
	*f->out = *v;
	return 1;
}

static int args_lookup(struct slice args, struct slice key, struct exchange_value *out)
{
	struct find f = { key, out };
	return args_foreach(args, find_visit, &f);
}

static int header_lookup(const void *headers, struct slice key, struct exchange_value *out)
{
	struct find f = { key, out };
	return table_foreach(headers, find_visit, &f);
}

const struct exchange_table_ops amqp_exchange_table_ops = {
	.args_foreach = args_foreach,
	.args_lookup = args_lookup,
	.header_lookup = header_lookup,
};

int amqp_table_store(const struct amqp_table *t, struct slice *out)
{
	struct writer w;
	writer_init(&w, ARGS_STORE_MAX);
	int rc = amqp_table_encode(&w, t);
	if (rc) {
		writer_fini(&w);
		return rc;
	}
	size_t len;
	uint8_t *buf = writer_take(&w, &len);
	*out = (struct slice){ buf, len };
	return 0;
}

/* ---- the methods ---- */

static void reply(struct amqp_channel *ch, bool nowait, const struct amqp_method_desc *d)
{
	if (!nowait)
		amqp_channel_send(ch, d, NULL);
}

/* Reports a broker failure that is no fault of the client. */
static void internal_error(struct amqp_channel *ch, uint32_t method, int rc)
{
	amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, method, "%s", err_str(rc));
}

/* exchange.declare (40/10). */
void amqp_exchange_declare(struct amqp_channel *ch, const struct amqp_exchange_declare *m)
{
	const uint32_t id = AMQP_EXCHANGE_DECLARE;
	if (m->exchange.len == 0) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "operation not permitted on the default exchange");
		return;
	}
	if (m->passive) {
		if (exchange_lookup(ch->ac->server->exchanges, m->exchange, NULL))
			amqp_channel_error(ch, AMQP_NOT_FOUND, id, "no exchange '%.*s' in vhost '/'",
					   SL(m->exchange));
		else
			reply(ch, m->nowait, &amqp_exchange_declare_ok_desc);
		return;
	}
	struct exchange_info info = {
		.durable = m->durable, .auto_delete = m->auto_delete, .internal = m->internal
	};
	if (exchange_type_parse(m->type, &info.type)) {
		amqp_conn_error(ch->ac, AMQP_COMMAND_INVALID, id, "unknown exchange type '%.*s'",
				SL(m->type));
		return;
	}
	struct slice args;
	int rc = amqp_table_store(&m->arguments, &args);
	if (rc) {
		internal_error(ch, id, rc);
		return;
	}
	struct exchange_info have;
	rc = exchange_declare(ch->ac->server->exchanges, m->exchange, &info, args, NULL, &have);
	free((void *)args.data);
	if (rc == -ERR_INVALID) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "exchange name '%.*s' contains reserved prefix 'amq.*'",
				   SL(m->exchange));
	} else if (rc == -ERR_EXISTS) {
		const char *arg = "type", *got = exchange_type_name(info.type);
		const char *cur = exchange_type_name(have.type);
		if (have.type == info.type) {
			bool g, c;
			if (have.durable != info.durable)
				arg = "durable", g = info.durable, c = have.durable;
			else if (have.auto_delete != info.auto_delete)
				arg = "auto_delete", g = info.auto_delete, c = have.auto_delete;
			else
				arg = "internal", g = info.internal, c = have.internal;
			got = g ? "true" : "false";
			cur = c ? "true" : "false";
		}
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id,
				   "inequivalent arg '%s' for exchange '%.*s' in vhost '/': received "
				   "'%s' but current is '%s'", arg, SL(m->exchange), got, cur);
	} else if (rc) {
		internal_error(ch, id, rc);
	} else {
		reply(ch, m->nowait, &amqp_exchange_declare_ok_desc);
	}
}

/* exchange.delete (40/20). */
void amqp_exchange_delete(struct amqp_channel *ch, const struct amqp_exchange_delete *m)
{
	const uint32_t id = AMQP_EXCHANGE_DELETE;
	if (m->exchange.len == 0) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "operation not permitted on the default exchange");
		return;
	}
	int rc = exchange_delete(ch->ac->server->exchanges, m->exchange, m->if_unused);
	if (rc == -ERR_INVALID)
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "deletion of system exchange '%.*s' in vhost '/' not allowed",
				   SL(m->exchange));
	else if (rc == -ERR_EXISTS)
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id,
				   "exchange '%.*s' in vhost '/' in use", SL(m->exchange));
	else if (rc && rc != -ERR_NOT_FOUND) /* deleting what is not there succeeds */
		internal_error(ch, id, rc);
	else
		reply(ch, m->nowait, &amqp_exchange_delete_ok_desc);
}

/* Fills a binding from exchange.bind/unbind arguments; args is stored (owned). */
static int e2e_binding(const struct amqp_table *arguments, struct slice source,
		       struct slice destination, struct slice key, struct exchange_binding *b)
{
	*b = (struct exchange_binding){
		.source = source,
		.dest_kind = EXCHANGE_DEST_EXCHANGE,
		.destination = destination,
		.routing_key = key,
	};
	return amqp_table_store(arguments, &b->args);
}

/* exchange.bind (40/30): RabbitMQ's exchange-to-exchange binding. */
void amqp_exchange_bind(struct amqp_channel *ch, const struct amqp_exchange_bind *m)
{
	const uint32_t id = AMQP_EXCHANGE_BIND;
	if (m->source.len == 0 || m->destination.len == 0) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "operation not permitted on the default exchange");
		return;
	}
	struct exchange_binding b;
	int rc = e2e_binding(&m->arguments, m->source, m->destination, m->routing_key, &b);
	if (rc) {
		internal_error(ch, id, rc);
		return;
	}
	char err[256];
	bool missing_dest = false;
	rc = exchange_bind(ch->ac->server->exchanges, &b, &missing_dest, err, sizeof err);
	if (rc == -ERR_NOT_FOUND)
		amqp_channel_error(ch, AMQP_NOT_FOUND, id, "no exchange '%.*s' in vhost '/'",
				   SL(missing_dest ? m->destination : m->source));
	else if (rc == -ERR_INVALID)
		amqp_channel_error(ch, AMQP_PRECONDITION_FAILED, id, "%s", err);
	else if (rc)
		internal_error(ch, id, rc);
	else
		reply(ch, m->nowait, &amqp_exchange_bind_ok_desc);
	free((void *)b.args.data);
}

/* exchange.unbind (40/40): unbinding what is not bound succeeds, even when an
 * exchange is missing (as RabbitMQ). */
void amqp_exchange_unbind(struct amqp_channel *ch, const struct amqp_exchange_unbind *m)
{
	const uint32_t id = AMQP_EXCHANGE_UNBIND;
	if (m->source.len == 0 || m->destination.len == 0) {
		amqp_channel_error(ch, AMQP_ACCESS_REFUSED, id,
				   "operation not permitted on the default exchange");
		return;
	}
	struct exchange_binding b;
	int rc = e2e_binding(&m->arguments, m->source, m->destination, m->routing_key, &b);
	if (rc) {
		internal_error(ch, id, rc);
		return;
	}
	rc = exchange_unbind(ch->ac->server->exchanges, &b);
	free((void *)b.args.data);
	if (rc && rc != -ERR_NOT_FOUND)
		internal_error(ch, id, rc);
	else
		reply(ch, m->nowait, &amqp_exchange_unbind_ok_desc);
}
