/*
 * amqp_server.h: the AMQP 0-9-1 front end (RabbitMQ's dialect), as a
 * net_proto served on the AMQP listener. See amqp_int.h for how frames flow
 * and docs/amqp.md for what is supported.
 */
#ifndef SLUICE_AMQP_SERVER_H
#define SLUICE_AMQP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"
#include "net/conn.h"

struct amqp_server;

/*
 * Creates the front end over broker b (borrowed; outlives the server): loads
 * the exchanges and bindings. Call from the main thread before listening.
 * Returns 0 or a negative error.
 */
int amqp_server_new(struct broker *b, struct loop_group *loops, struct amqp_server **out);
/* Frees it; call after every AMQP connection is closed and the loops stopped. */
void amqp_server_free(struct amqp_server *s);
/*
 * Waits (from a thread outside the loops) until no AMQP connection state is
 * left (connections closed, broker work they started answered), at most
 * timeout_ms. Returns whether it became idle.
 */
bool amqp_server_wait_idle(struct amqp_server *s, int64_t timeout_ms);
/* The protocol to pass to listener_start, with the server as proto_ctx. */
const struct net_proto *amqp_server_proto(void);

#endif
