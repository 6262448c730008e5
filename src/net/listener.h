/*
 * listener.h: a TCP listening address served by every loop of a group.
 *
 * Each loop thread opens its own socket on the same host:port with
 * SO_REUSEPORT, so the kernel spreads incoming connections over the loops and
 * no accept is ever shared between threads (shared nothing). A connection is
 * accepted on the loop whose socket the kernel chose and lives there until it
 * closes (see conn.h).
 *
 * Because SO_REUSEPORT would let a second process of the same user bind the
 * same port silently, listener_start first probes the address with a plain
 * socket: "address in use" is then reported as such (see docs/net.md for the
 * remaining race).
 *
 * Call from a thread outside the group (main), never from a loop thread.
 */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include <stddef.h>

#include "net/conn.h"
#include "net/loop.h"

struct listener;

/*
 * Listens on host (an IPv4 or IPv6 literal, "[::1]" accepted) and port (0 =
 * a free port chosen by the kernel, see listener_port) on every loop of g,
 * serving proto with proto_ctx (borrowed: must outlive the listener). Returns
 * 0, or a negative error with "cannot listen on HOST:PORT: reason" in errbuf;
 * nothing stays open on error.
 */
int listener_start(struct loop_group *g, const char *host, int port,
		   const struct net_proto *proto, void *proto_ctx, struct listener **out,
		   char *errbuf, size_t errlen);
/*
 * Stops accepting on every loop and waits until each listening socket is
 * closed, then frees l. Connections already accepted stay open. Must be called
 * before loop_group_stop().
 */
void listener_stop(struct listener *l);
/* The port actually bound (useful after port 0). */
int listener_port(const struct listener *l);
/* The address as "host:port" ("[v6]:port"), for logs (borrowed). */
const char *listener_address(const struct listener *l);

#endif
