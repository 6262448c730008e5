/*
 * kafka_server.h: the Kafka wire-protocol front end, as a net_proto served on
 * the Kafka listener. See kafka_int.h for how requests flow.
 */
#ifndef SLUICE_KAFKA_SERVER_H
#define SLUICE_KAFKA_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"
#include "net/conn.h"

struct kafka_server;

/* Creates the front end over broker b (borrowed; outlives the server). */
int kafka_server_new(struct broker *b, struct loop_group *loops, struct kafka_server **out);
/* Frees it; call after every Kafka connection is closed and the loops stopped. */
void kafka_server_free(struct kafka_server *s);
/*
 * Waits (from a thread outside the loops) until no Kafka request is in flight
 * (connections closed, storage work answered), at most timeout_ms. Returns
 * whether it became idle.
 */
bool kafka_server_wait_idle(struct kafka_server *s, int64_t timeout_ms);
/* The protocol to pass to listener_start, with the server as proto_ctx. */
const struct net_proto *kafka_server_proto(void);

#endif
