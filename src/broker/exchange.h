/*
 * exchange.h: AMQP exchanges and bindings, and routing a message to queues.
 *
 * An exchange has a name, a type (direct, fanout, topic, headers), flags
 * (durable, auto-delete, internal) and a list of outgoing bindings. A binding
 * goes from a source exchange to a destination that is either a queue or
 * another exchange (RabbitMQ's exchange-to-exchange bindings), with a routing
 * key and arguments. Routing follows the bindings of the exchange published
 * to, and of every exchange reached through exchange-to-exchange bindings
 * (each exchange at most once, so cycles end), and returns the set of queue
 * names reached, each once:
 *
 *   publish("orders", "eu.new")
 *      orders (topic) ──"eu.#"──► queue eu-all
 *                     ──"*.new"─► exchange audit (fanout) ──► queue audit-log
 *                     ──"#"─────► exchange orders (a cycle: not followed twice)
 *      = { "audit-log", "eu-all" }
 *
 * Types:
 *   direct   routing key == binding key
 *   fanout   every binding
 *   topic    binding key words (separated by '.') against the routing key's:
 *            '*' is exactly one word, '#' zero or more; words may be empty
 *            ("a..b" has three words, "" has none), as RabbitMQ splits them
 *   headers  binding arguments against the message headers; x-match = all
 *            (default), any, all-with-x, any-with-x; a void argument only asks
 *            for the header's presence; keys starting with "x-" are ignored
 *            except in the -with-x modes
 * The default exchange "" is a direct exchange with an implicit binding to
 * every queue by its name: routing through it returns the routing key as the
 * queue name, and the caller drops names of queues that do not exist. It has
 * no explicit bindings, cannot be declared, deleted or bound.
 *
 * Argument tables are opaque here: the front end that owns their encoding
 * (AMQP field tables) supplies struct exchange_table_ops to read binding
 * arguments and message headers, so this module never parses a protocol.
 *
 * Predeclared: "", amq.direct, amq.fanout, amq.topic, amq.headers, amq.match
 * (headers), all durable. Names starting with "amq." are reserved: they
 * cannot be created or deleted by clients.
 *
 * Persistence: durable exchanges are stored in the catalog, and so is a
 * binding whose source and destination are both durable. Everything is
 * reloaded by exchange_table_new(); transient ones are gone after a restart.
 *
 * Threads: every function may be called from any thread. Routing runs on
 * every loop thread for every publish, while declarations and bindings change
 * rarely, so the table is guarded by one read-write lock: routing takes it
 * for reading (many at once, never blocking each other), changes take it for
 * writing only for the in-memory update. Changes are serialized among
 * themselves by a separate mutex that is held across the catalog write, so a
 * slow fsync of the catalog never blocks routing. Nothing returned borrows
 * from the table: routing copies queue names out.
 */
#ifndef SLUICE_EXCHANGE_H
#define SLUICE_EXCHANGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reader.h"

struct broker;
struct catalog;
struct exchange_table;

/* Longest exchange name, routing key and queue name (AMQP shortstr). */
#define EXCHANGE_NAME_MAX 255

enum exchange_type {
	EXCHANGE_DIRECT,
	EXCHANGE_FANOUT,
	EXCHANGE_TOPIC,
	EXCHANGE_HEADERS,
};

/* Parses "direct", "fanout", "topic", "headers". 0 or -ERR_NOT_FOUND. */
int exchange_type_parse(struct slice s, enum exchange_type *out);
/* The type's name ("direct"). */
const char *exchange_type_name(enum exchange_type t);

/* ---- argument tables, read through the front end ---- */

/* A header or binding-argument value, as the headers exchange compares them. */
enum exchange_value_kind {
	EXCHANGE_VALUE_VOID,   /* no value: a binding argument that asks for presence */
	EXCHANGE_VALUE_BOOL,
	EXCHANGE_VALUE_INT,    /* any integer width; equal to a FLOAT of the same value */
	EXCHANGE_VALUE_FLOAT,
	EXCHANGE_VALUE_BYTES,  /* strings and byte arrays */
	EXCHANGE_VALUE_OTHER,  /* compared by tag, i and bytes (tables, arrays, decimals) */
};

struct exchange_value {
	enum exchange_value_kind kind;
	bool b;
	int64_t i;
	double f;
	char tag;              /* OTHER: the encoding's type letter */
	struct slice bytes;    /* BYTES / OTHER (borrowed from the table) */
};

/* Walks an argument table; return 0 to go on, anything else stops the walk. */
typedef int (*exchange_arg_fn)(void *arg, struct slice key, const struct exchange_value *v);

struct exchange_table_ops {
	/* Calls fn for each entry of an encoded argument table (as given to
	 * exchange_bind). Returns 0, fn's non-zero value, or <0 if malformed. */
	int (*args_foreach)(struct slice args, exchange_arg_fn fn, void *arg);
	/* Finds key in an encoded argument table: 1 found (*out set), 0 absent, <0 malformed. */
	int (*args_lookup)(struct slice args, struct slice key, struct exchange_value *out);
	/* Finds key in a message's headers (the opaque pointer given to
	 * exchange_route): 1 found, 0 absent, <0 malformed. */
	int (*header_lookup)(const void *headers, struct slice key, struct exchange_value *out);
};

/* ---- the table ---- */

/*
 * Creates the table over catalog cat (NULL: nothing persists), whose calls are
 * serialized by cat_lock (borrowed; may be NULL without a catalog), with the
 * front end's table reader ops (borrowed, static). Creates the predeclared
 * exchanges (storing the amq.* ones in the catalog if missing) and loads
 * every durable exchange and binding. Returns 0 or a negative error.
 */
int exchange_table_new(struct catalog *cat, pthread_mutex_t *cat_lock,
		       const struct exchange_table_ops *ops, struct exchange_table **out);
/* Same, over the broker's catalog. */
int exchange_table_open(struct broker *b, const struct exchange_table_ops *ops,
			struct exchange_table **out);
/* Frees the table (nothing is removed from the catalog). */
void exchange_table_free(struct exchange_table *t);

/* An exchange's attributes. */
struct exchange_info {
	enum exchange_type type;
	bool durable;
	bool auto_delete;
	bool internal;
};

/*
 * Declares an exchange: creates it, or checks an existing one is equivalent
 * (same type, durable, auto_delete, internal; arguments are not compared).
 * args: encoded argument table, stored as is (may be empty). *created says
 * which happened (may be NULL). Returns 0; -ERR_EXISTS when an existing one
 * differs (*existing then holds its attributes; may be NULL); -ERR_INVALID
 * for "" or a new name starting with "amq."; or a catalog error.
 */
int exchange_declare(struct exchange_table *t, struct slice name, const struct exchange_info *info,
		     struct slice args, bool *created, struct exchange_info *existing);
/* Looks an exchange up. 0 (with *info, may be NULL) or -ERR_NOT_FOUND. */
int exchange_lookup(struct exchange_table *t, struct slice name, struct exchange_info *info);
/*
 * Deletes an exchange with every binding from and to it; source exchanges
 * left without bindings that are auto-delete go too. Returns 0;
 * -ERR_NOT_FOUND; -ERR_INVALID for "" and amq.* names; -ERR_EXISTS when
 * if_unused and it is the source of a binding.
 */
int exchange_delete(struct exchange_table *t, struct slice name, bool if_unused);

/* What a binding leads to. */
enum exchange_dest_kind {
	EXCHANGE_DEST_QUEUE,
	EXCHANGE_DEST_EXCHANGE,
};

/* A binding; every slice is borrowed from the caller. */
struct exchange_binding {
	struct slice source;            /* exchange */
	enum exchange_dest_kind dest_kind;
	struct slice destination;       /* queue or exchange name */
	struct slice routing_key;
	struct slice args;              /* encoded argument table (may be empty) */
	bool dest_durable;              /* queues: whether the queue is durable */
};

/*
 * Adds a binding (an existing equal one, arguments compared bytewise, is
 * left as is). The caller checked that a destination queue exists.
 * Returns 0; -ERR_NOT_FOUND when the source (or a destination exchange) does
 * not exist (*missing_dest tells which; may be NULL); -ERR_INVALID with the
 * reason in errbuf for the default exchange or headers arguments with a bad
 * x-match; or a catalog error.
 */
int exchange_bind(struct exchange_table *t, const struct exchange_binding *b, bool *missing_dest,
		  char *errbuf, size_t errlen);
/*
 * Removes the binding equal to *b (dest_durable ignored); an auto-delete
 * source left without bindings is deleted. Returns 0; -ERR_NOT_FOUND when
 * there is no such binding (or no such source exchange).
 */
int exchange_unbind(struct exchange_table *t, const struct exchange_binding *b);
/*
 * Removes every binding to queue (the queue was deleted), auto-deleting
 * sources left without bindings. Returns how many were removed.
 */
size_t exchange_unbind_queue(struct exchange_table *t, struct slice queue);
/* Number of bindings whose source is the exchange, or -ERR_NOT_FOUND. */
int64_t exchange_binding_count(struct exchange_table *t, struct slice name);

/* ---- routing ---- */

/* Queue names a route reached; reuse one per publisher to avoid allocation. */
struct exchange_dests {
	struct slice *names;  /* n distinct names, sorted bytewise, into buf; valid until reset */
	size_t n;
	size_t cap;
	size_t *offs;         /* internal */
	uint8_t *buf;         /* internal: name bytes */
	size_t len, buf_cap;
};
void exchange_dests_init(struct exchange_dests *d);
void exchange_dests_fini(struct exchange_dests *d);

/*
 * Routes a message published to exchange `name` with routing_key and headers
 * (opaque, read with ops->header_lookup; may be NULL) into *out (reset
 * first). Returns 0 (out->n may be 0: unroutable); -ERR_NOT_FOUND when the
 * exchange does not exist; -ERR_INVALID when it is internal (clients cannot
 * publish to it); -ERR_NOMEM.
 */
int exchange_route(struct exchange_table *t, struct slice name, struct slice routing_key,
		   const void *headers, struct exchange_dests *out);

/* Whether a topic binding key matches a routing key (see the top of this file). */
bool exchange_topic_match(struct slice binding_key, struct slice routing_key);
/*
 * Whether binding arguments args match message headers (headers exchange
 * rules, x-match read from args; a bad or missing x-match means all).
 */
bool exchange_headers_match(const struct exchange_table_ops *ops, struct slice args,
			    const void *headers);

#endif
