/*
 * amqp_channel.c: AMQP channels: the channel class (flow), access.request,
 * dispatch of every other class to its file, channel errors, and content
 * frames.
 *
 * A channel is OPEN until either side closes it. A channel error (a soft
 * reply code) sends channel.close and leaves the channel CLOSING: its broker
 * state is released at once, and every frame on it is discarded until the
 * client's channel.close-ok frees the number (amqp_conn.c). The connection and
 * its other channels carry on.
 */
#include "amqp/amqp_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_queue.h"
#include "core/diag.h"
#include "core/err.h"

struct amqp_channel *amqp_channel_new(struct amqp_conn *ac, uint16_t number)
{
	struct amqp_channel *ch = calloc(1, sizeof *ch);
	if (!ch)
		return NULL;
	ch->ac = ac;
	ch->number = number;
	ch->serial = ++ac->next_serial;
	ch->state = AMQP_CH_OPEN;
	exchange_dests_init(&ch->dests);
	return ch;
}

/*
 * Lets go of everything the channel holds in the broker: unacked deliveries
 * are requeued and consumers cancelled (AMQP 0-9-1 basic.consume: closing a
 * channel cancels its consumers), a publish in progress and an open
 * transaction's publishes are dropped. Idempotent.
 */
static void channel_release(struct amqp_channel *ch)
{
	amqp_confirm_flush(ch); /* before the close(-ok) that follows; no-op once closing */
	amqp_basic_release(ch);
	amqp_reply_release(ch);
	amqp_publish_reset(ch);
	amqp_tx_discard(ch);
}

void amqp_channel_free(struct amqp_channel *ch)
{
	if (!ch)
		return;
	channel_release(ch);
	exchange_dests_fini(&ch->dests);
	free(ch);
}

struct amqp_op *amqp_op_new(struct amqp_channel *ch, uint32_t method, bool waits)
{
	struct amqp_op *op = calloc(1, sizeof *op);
	if (!op) {
		amqp_conn_error(ch->ac, AMQP_INTERNAL_ERROR, method, "out of memory");
		return NULL;
	}
	op->ac = ch->ac;
	op->channel = ch->number;
	op->serial = ch->serial;
	op->method = method;
	op->waits = waits;
	amqp_conn_ref(op->ac);
	if (waits)
		amqp_conn_wait_begin(op->ac);
	return op;
}

struct amqp_channel *amqp_op_channel(struct amqp_op *op)
{
	return amqp_conn_channel(op->ac, op->channel, op->serial);
}

void amqp_op_free(struct amqp_op *op)
{
	if (!op)
		return;
	if (op->q)
		bqueue_release(op->q);
	if (op->waits)
		amqp_conn_wait_end(op->ac);
	amqp_conn_unref(op->ac);
	free(op);
}

int amqp_channel_send(struct amqp_channel *ch, const struct amqp_method_desc *d, const void *args)
{
	return amqp_send_method(ch->ac, ch->number, d, args);
}

void amqp_channel_error(struct amqp_channel *ch, uint16_t code, uint32_t method_id,
			const char *fmt, ...)
{
	if (ch->state != AMQP_CH_OPEN || amqp_conn_failed(ch->ac))
		return;
	char text[AMQP_REPLY_TEXT_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	amqp_reply_text(text, sizeof text, code, fmt, ap);
	va_end(ap);
	diag_info("amqp", "%s: channel %u error %u (%s): %s", ch->ac->peer, ch->number, code,
		  method_id ? amqp_method_name(method_id) : "no method", text);
	struct amqp_channel_close c = {
		.reply_code = code,
		.reply_text = amqp_slice_str(text),
		.class_id = AMQP_METHOD_CLASS(method_id),
		.method_id = AMQP_METHOD_INDEX(method_id),
	};
	amqp_confirm_flush(ch);
	ch->state = AMQP_CH_CLOSING;
	channel_release(ch);
	amqp_channel_send(ch, &amqp_channel_close_desc, &c);
}

/* channel.flow (20/20): RabbitMQ answers active=true and refuses active=false. */
static void channel_flow(struct amqp_channel *ch, const struct amqp_channel_flow *m)
{
	if (!m->active) {
		amqp_conn_error(ch->ac, AMQP_NOT_IMPLEMENTED, AMQP_CHANNEL_FLOW, "active=false");
		return;
	}
	struct amqp_channel_flow_ok ok = { .active = true };
	amqp_channel_send(ch, &amqp_channel_flow_ok_desc, &ok);
}

/* A method Sluice does not serve (docs/amqp.md lists what it serves): 540. */
static void unsupported_method(struct amqp_channel *ch, const struct amqp_method *m)
{
	amqp_conn_error(ch->ac, AMQP_NOT_IMPLEMENTED, m->id, "%s is not supported by Sluice yet",
			amqp_method_name(m->id));
}

void amqp_channel_method(struct amqp_channel *ch, const struct amqp_method *m)
{
	if (ch->state != AMQP_CH_OPEN)
		return;
	if (ch->pub.active) {
		/* Spec 4.2.6: a content-bearing method's frames come as one sequence. */
		amqp_conn_error(ch->ac, AMQP_UNEXPECTED_FRAME, m->id,
				"expected content %s, got non content frame (%s) instead",
				ch->pub.have_header ? "body" : "header", amqp_method_name(m->id));
		return;
	}
	switch (m->id) {
	case AMQP_CHANNEL_FLOW:
		channel_flow(ch, &m->args.channel_flow);
		return;
	case AMQP_CHANNEL_FLOW_OK:
		return; /* Sluice never sends channel.flow; an answer needs nothing */
	case AMQP_ACCESS_REQUEST: {
		/* Dropped in 0-9-1 but still sent by old clients; RabbitMQ answers ticket 1. */
		struct amqp_access_request_ok ok = { .ticket = 1 };
		amqp_channel_send(ch, &amqp_access_request_ok_desc, &ok);
		return;
	}
	case AMQP_EXCHANGE_DECLARE:
		amqp_exchange_declare(ch, &m->args.exchange_declare);
		return;
	case AMQP_EXCHANGE_DELETE:
		amqp_exchange_delete(ch, &m->args.exchange_delete);
		return;
	case AMQP_EXCHANGE_BIND:
		amqp_exchange_bind(ch, &m->args.exchange_bind);
		return;
	case AMQP_EXCHANGE_UNBIND:
		amqp_exchange_unbind(ch, &m->args.exchange_unbind);
		return;
	case AMQP_QUEUE_DECLARE:
		amqp_queue_declare(ch, &m->args.queue_declare);
		return;
	case AMQP_QUEUE_BIND:
		amqp_queue_bind(ch, &m->args.queue_bind);
		return;
	case AMQP_QUEUE_UNBIND:
		amqp_queue_unbind(ch, &m->args.queue_unbind);
		return;
	case AMQP_QUEUE_PURGE:
		amqp_queue_purge(ch, &m->args.queue_purge);
		return;
	case AMQP_QUEUE_DELETE:
		amqp_queue_delete(ch, &m->args.queue_delete);
		return;
	case AMQP_BASIC_QOS:
		amqp_basic_qos(ch, &m->args.basic_qos);
		return;
	case AMQP_BASIC_CONSUME:
		amqp_basic_consume(ch, &m->args.basic_consume);
		return;
	case AMQP_BASIC_CANCEL:
		amqp_basic_cancel(ch, &m->args.basic_cancel);
		return;
	case AMQP_BASIC_PUBLISH:
		amqp_publish_start(ch, &m->args.basic_publish);
		return;
	case AMQP_BASIC_GET:
		amqp_basic_get(ch, &m->args.basic_get);
		return;
	case AMQP_BASIC_ACK:
		amqp_basic_ack(ch, &m->args.basic_ack);
		return;
	case AMQP_BASIC_NACK:
		amqp_basic_nack(ch, &m->args.basic_nack);
		return;
	case AMQP_BASIC_REJECT:
		amqp_basic_reject(ch, &m->args.basic_reject);
		return;
	case AMQP_BASIC_RECOVER:
		amqp_basic_recover(ch, m->args.basic_recover.requeue, false);
		return;
	case AMQP_BASIC_RECOVER_ASYNC:
		amqp_basic_recover(ch, m->args.basic_recover_async.requeue, true);
		return;
	case AMQP_CONFIRM_SELECT:
		amqp_confirm_select(ch, &m->args.confirm_select);
		return;
	case AMQP_TX_SELECT:
		amqp_tx_select(ch);
		return;
	case AMQP_TX_COMMIT:
		amqp_tx_commit(ch);
		return;
	case AMQP_TX_ROLLBACK:
		amqp_tx_rollback(ch);
		return;
	default:
		unsupported_method(ch, m);
	}
}

void amqp_channel_content(struct amqp_channel *ch, const struct amqp_frame *f)
{
	if (ch->state != AMQP_CH_OPEN)
		return; /* discarded until close-ok */
	if (!ch->pub.active) {
		/* No method that carries content is waiting for it. */
		amqp_conn_error(ch->ac, AMQP_UNEXPECTED_FRAME, 0,
				"expected method frame, got non method frame (type %u) instead",
				f->type);
		return;
	}
	amqp_publish_content(ch, f);
}
