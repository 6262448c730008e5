/*
 * exchange.c: the exchange table, bindings, and routing (see exchange.h).
 *
 * The table is a hash of exchanges by name; each exchange holds an array of
 * its outgoing bindings. A binding to another exchange keeps a pointer to it:
 * deleting an exchange removes every binding to it in the same change, so the
 * pointer never dangles.
 *
 * Changes are planned, then applied. A change (declare, delete, bind,
 * unbind) holds `admin`, so no other change runs; it first works out every
 * consequence by reading the in-memory table (which only changes under
 * `admin`, so no read lock is needed): which exchanges go, which bindings go,
 * including auto-delete cascades. Then it writes the durable part to the
 * catalog in one transaction, and only if that succeeded takes the write lock
 * for the in-memory update. Routing (the read lock) therefore never waits for
 * SQLite, only for a short pointer update.
 *
 * Topic matching runs the binding key as a small NFA over the routing key's
 * words: the states are positions in the binding key's word list; a '#'
 * state loops on any word and can be skipped; '*' and a literal advance on a
 * word they accept. Keys are at most 255 bytes, so at most 256 words each and
 * the state set fits a fixed array: no allocation, O(words * words) worst
 * case, with fast paths for keys without wildcards and for "#".
 */
#include "broker/exchange.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/diag.h"
#include "core/err.h"
#include "storage/catalog.h"

#define BUCKETS_MIN 64
/* Words in a key of at most EXCHANGE_NAME_MAX bytes: one more than the dots. */
#define TOPIC_WORDS_MAX (EXCHANGE_NAME_MAX + 1)

struct binding {
	enum exchange_dest_kind dest_kind;
	struct exchange *dest_x;   /* dest_kind EXCHANGE: the destination (see top) */
	bool durable;              /* stored in the catalog */
	struct slice dest;         /* the four slices point into bytes[] */
	struct slice key;
	struct slice args;
	uint8_t bytes[];
};

struct exchange {
	struct exchange *hash_next;
	uint64_t hash;
	struct exchange_info info;
	struct slice name;         /* into bytes[], NUL-terminated for diagnostics */
	struct slice args;         /* into bytes[] */
	struct binding **bindings; /* owned, outgoing */
	size_t n_bindings, cap_bindings;
	uint8_t bytes[];
};

struct exchange_table {
	struct catalog *cat;       /* NULL: nothing persists */
	pthread_mutex_t *cat_lock;
	const struct exchange_table_ops *ops;
	pthread_mutex_t admin;     /* serializes changes (held across catalog writes) */
	pthread_rwlock_t lock;     /* routing reads; in-memory updates write */
	struct exchange **buckets;
	size_t n_buckets;
	size_t n_exchanges;
};

static const char *const type_names[] = {
	[EXCHANGE_DIRECT] = "direct",
	[EXCHANGE_FANOUT] = "fanout",
	[EXCHANGE_TOPIC] = "topic",
	[EXCHANGE_HEADERS] = "headers",
};

static const struct {
	const char *name;
	enum exchange_type type;
} predeclared[] = {
	{ "", EXCHANGE_DIRECT },	  { "amq.direct", EXCHANGE_DIRECT },
	{ "amq.fanout", EXCHANGE_FANOUT }, { "amq.topic", EXCHANGE_TOPIC },
	{ "amq.headers", EXCHANGE_HEADERS }, { "amq.match", EXCHANGE_HEADERS },
};

int exchange_type_parse(struct slice s, enum exchange_type *out)
{
	for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
		if (s.len == strlen(type_names[i]) && memcmp(s.data, type_names[i], s.len) == 0) {
			*out = (enum exchange_type)i;
			return 0;
		}
	}
	return -ERR_NOT_FOUND;
}

const char *exchange_type_name(enum exchange_type t)
{
	return (unsigned)t < sizeof type_names / sizeof type_names[0] ? type_names[t] : "?";
}

static bool slice_eq(struct slice a, struct slice b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool slice_eq_str(struct slice a, const char *s)
{
	return slice_eq(a, (struct slice){ (const uint8_t *)s, strlen(s) });
}

static bool reserved_name(struct slice name)
{
	return name.len >= 4 && memcmp(name.data, "amq.", 4) == 0;
}

static uint64_t hash_bytes(struct slice s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < s.len; i++) {
		h ^= s.data[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* ---- topic and headers matching ---- */

/* Splits a key into words as RabbitMQ does: "" has none, else dots + 1. */
static size_t split_words(struct slice key, struct slice *words)
{
	if (key.len == 0)
		return 0;
	size_t n = 0, start = 0;
	for (size_t i = 0; i <= key.len; i++) {
		if (i == key.len || key.data[i] == '.') {
			words[n++] = (struct slice){ key.data + start, i - start };
			start = i + 1;
		}
	}
	return n;
}

static bool is_word(struct slice w, char c)
{
	return w.len == 1 && w.data[0] == (uint8_t)c;
}

/* Adds the states reachable by skipping '#' words (they match zero words). */
static void topic_closure(const struct slice *pat, size_t m, bool *states)
{
	for (size_t j = 0; j < m; j++)
		if (states[j] && is_word(pat[j], '#'))
			states[j + 1] = true;
}

bool exchange_topic_match(struct slice binding_key, struct slice routing_key)
{
	if (binding_key.len > EXCHANGE_NAME_MAX || routing_key.len > EXCHANGE_NAME_MAX)
		return false;
	if (binding_key.len == 1 && binding_key.data[0] == '#')
		return true;
	bool wild = false;
	for (size_t i = 0; i < binding_key.len && !wild; i++) {
		uint8_t c = binding_key.data[i];
		if ((c == '#' || c == '*') && (i == 0 || binding_key.data[i - 1] == '.') &&
		    (i + 1 == binding_key.len || binding_key.data[i + 1] == '.'))
			wild = true;
	}
	if (!wild)
		return slice_eq(binding_key, routing_key);

	struct slice pat[TOPIC_WORDS_MAX], key[TOPIC_WORDS_MAX];
	size_t m = split_words(binding_key, pat);
	size_t n = split_words(routing_key, key);
	bool cur[TOPIC_WORDS_MAX + 1] = { false }, next[TOPIC_WORDS_MAX + 1];
	cur[0] = true;
	topic_closure(pat, m, cur);
	for (size_t i = 0; i < n; i++) {
		memset(next, 0, (m + 1) * sizeof next[0]);
		bool any = false;
		for (size_t j = 0; j < m; j++) {
			if (!cur[j])
				continue;
			if (is_word(pat[j], '#')) {
				next[j] = any = true;
			} else if (is_word(pat[j], '*') || slice_eq(pat[j], key[i])) {
				next[j + 1] = any = true;
			}
		}
		if (!any)
			return false;
		topic_closure(pat, m, next);
		memcpy(cur, next, (m + 1) * sizeof cur[0]);
	}
	return cur[m];
}

static bool value_eq(const struct exchange_value *a, const struct exchange_value *b)
{
	switch (a->kind) {
	case EXCHANGE_VALUE_VOID:
		return b->kind == EXCHANGE_VALUE_VOID;
	case EXCHANGE_VALUE_BOOL:
		return b->kind == EXCHANGE_VALUE_BOOL && a->b == b->b;
	case EXCHANGE_VALUE_INT:
		if (b->kind == EXCHANGE_VALUE_INT)
			return a->i == b->i;
		return b->kind == EXCHANGE_VALUE_FLOAT && (double)a->i == b->f;
	case EXCHANGE_VALUE_FLOAT:
		if (b->kind == EXCHANGE_VALUE_FLOAT)
			return a->f == b->f;
		return b->kind == EXCHANGE_VALUE_INT && a->f == (double)b->i;
	case EXCHANGE_VALUE_BYTES:
		return b->kind == EXCHANGE_VALUE_BYTES && slice_eq(a->bytes, b->bytes);
	case EXCHANGE_VALUE_OTHER:
		return b->kind == EXCHANGE_VALUE_OTHER && a->tag == b->tag && a->i == b->i &&
		       slice_eq(a->bytes, b->bytes);
	}
	return false;
}

enum xmatch { XMATCH_ALL, XMATCH_ANY, XMATCH_ALL_WITH_X, XMATCH_ANY_WITH_X, XMATCH_BAD };

/* Reads x-match from binding arguments; a missing one is all. */
static enum xmatch xmatch_of(const struct exchange_table_ops *ops, struct slice args)
{
	struct exchange_value v;
	int rc = ops->args_lookup(args, (struct slice){ (const uint8_t *)"x-match", 7 }, &v);
	if (rc == 0)
		return XMATCH_ALL;
	if (rc < 0 || v.kind != EXCHANGE_VALUE_BYTES)
		return XMATCH_BAD;
	if (slice_eq_str(v.bytes, "all"))
		return XMATCH_ALL;
	if (slice_eq_str(v.bytes, "any"))
		return XMATCH_ANY;
	if (slice_eq_str(v.bytes, "all-with-x"))
		return XMATCH_ALL_WITH_X;
	if (slice_eq_str(v.bytes, "any-with-x"))
		return XMATCH_ANY_WITH_X;
	return XMATCH_BAD;
}

struct headers_walk {
	const struct exchange_table_ops *ops;
	const void *headers;
	bool with_x;
	bool any;          /* any mode: stop at the first match */
	bool matched;      /* some argument matched */
	bool mismatched;   /* some argument did not */
};

static int headers_visit(void *arg, struct slice key, const struct exchange_value *want)
{
	struct headers_walk *w = arg;
	if (key.len >= 2 && key.data[0] == 'x' && key.data[1] == '-') {
		if (slice_eq_str(key, "x-match") || !w->with_x)
			return 0;
	}
	struct exchange_value have;
	int rc = w->headers ? w->ops->header_lookup(w->headers, key, &have) : 0;
	bool ok = rc > 0 && (want->kind == EXCHANGE_VALUE_VOID || value_eq(want, &have));
	if (ok)
		w->matched = true;
	else
		w->mismatched = true;
	/* Stop early once the answer is known. */
	return (w->any && ok) || (!w->any && !ok) ? 1 : 0;
}

bool exchange_headers_match(const struct exchange_table_ops *ops, struct slice args,
			    const void *headers)
{
	enum xmatch mode = xmatch_of(ops, args);
	struct headers_walk w = {
		.ops = ops,
		.headers = headers,
		.with_x = mode == XMATCH_ALL_WITH_X || mode == XMATCH_ANY_WITH_X,
		.any = mode == XMATCH_ANY || mode == XMATCH_ANY_WITH_X,
	};
	if (ops->args_foreach(args, headers_visit, &w) < 0)
		return false;
	return w.any ? w.matched : !w.mismatched;
}

/* ---- the in-memory table (callers hold admin, or the lock) ---- */

static struct exchange *find(const struct exchange_table *t, struct slice name)
{
	uint64_t h = hash_bytes(name);
	for (struct exchange *x = t->buckets[h & (t->n_buckets - 1)]; x; x = x->hash_next)
		if (x->hash == h && slice_eq(x->name, name))
			return x;
	return NULL;
}

static struct exchange *exchange_alloc(struct slice name, const struct exchange_info *info,
				       struct slice args)
{
	struct exchange *x = calloc(1, sizeof *x + name.len + 1 + args.len);
	if (!x)
		return NULL;
	x->info = *info;
	x->hash = hash_bytes(name);
	if (name.len)
		memcpy(x->bytes, name.data, name.len);
	x->bytes[name.len] = 0;
	x->name = (struct slice){ x->bytes, name.len };
	if (args.len)
		memcpy(x->bytes + name.len + 1, args.data, args.len);
	x->args = (struct slice){ x->bytes + name.len + 1, args.len };
	return x;
}

static void exchange_free(struct exchange *x)
{
	for (size_t i = 0; i < x->n_bindings; i++)
		free(x->bindings[i]);
	free(x->bindings);
	free(x);
}

static struct binding *binding_alloc(const struct exchange_binding *b)
{
	size_t n = b->destination.len + b->routing_key.len + b->args.len;
	struct binding *bd = calloc(1, sizeof *bd + n + 1);
	if (!bd)
		return NULL;
	bd->dest_kind = b->dest_kind;
	uint8_t *p = bd->bytes;
	struct slice parts[3] = { b->destination, b->routing_key, b->args };
	struct slice *outs[3] = { &bd->dest, &bd->key, &bd->args };
	for (int i = 0; i < 3; i++) {
		if (parts[i].len)
			memcpy(p, parts[i].data, parts[i].len);
		*outs[i] = (struct slice){ p, parts[i].len };
		p += parts[i].len;
	}
	return bd;
}

static bool binding_equal(const struct binding *bd, const struct exchange_binding *b)
{
	return bd->dest_kind == b->dest_kind && slice_eq(bd->dest, b->destination) &&
	       slice_eq(bd->key, b->routing_key) && slice_eq(bd->args, b->args);
}

/* Grows the bucket array when the load passes 1 (write lock held). */
static void maybe_grow(struct exchange_table *t)
{
	if (t->n_exchanges < t->n_buckets)
		return;
	size_t n = t->n_buckets * 2;
	struct exchange **b = calloc(n, sizeof *b);
	if (!b)
		return; /* keep the longer chains */
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct exchange *x = t->buckets[i];
		while (x) {
			struct exchange *next = x->hash_next;
			x->hash_next = b[x->hash & (n - 1)];
			b[x->hash & (n - 1)] = x;
			x = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = n;
}

static void table_insert(struct exchange_table *t, struct exchange *x)
{
	struct exchange **head = &t->buckets[x->hash & (t->n_buckets - 1)];
	x->hash_next = *head;
	*head = x;
	t->n_exchanges++;
	maybe_grow(t);
}

static void table_unlink(struct exchange_table *t, struct exchange *x)
{
	for (struct exchange **pp = &t->buckets[x->hash & (t->n_buckets - 1)]; *pp;
	     pp = &(*pp)->hash_next) {
		if (*pp == x) {
			*pp = x->hash_next;
			t->n_exchanges--;
			return;
		}
	}
}

static int binding_push(struct exchange *x, struct binding *bd)
{
	if (x->n_bindings == x->cap_bindings) {
		size_t cap = x->cap_bindings ? x->cap_bindings * 2 : 4;
		struct binding **nb = realloc(x->bindings, cap * sizeof *nb);
		if (!nb)
			return -ERR_NOMEM;
		x->bindings = nb;
		x->cap_bindings = cap;
	}
	x->bindings[x->n_bindings++] = bd;
	return 0;
}

/* ---- change plans ---- */

/* A binding a change removes: the source and its index is not stable, so by pointer. */
struct plan_rm {
	struct exchange *source;
	struct binding *b;
};

struct plan {
	struct exchange **del;     /* exchanges to delete */
	size_t n_del, cap_del;
	struct plan_rm *rm;        /* bindings to remove */
	size_t n_rm, cap_rm;
	int err;                   /* -ERR_NOMEM while planning */
};

static void plan_fini(struct plan *p)
{
	free(p->del);
	free(p->rm);
}

static bool plan_deletes(const struct plan *p, const struct exchange *x)
{
	for (size_t i = 0; i < p->n_del; i++)
		if (p->del[i] == x)
			return true;
	return false;
}

static bool plan_removes(const struct plan *p, const struct binding *b)
{
	for (size_t i = 0; i < p->n_rm; i++)
		if (p->rm[i].b == b)
			return true;
	return false;
}

static void plan_delete_exchange(struct exchange_table *t, struct plan *p, struct exchange *x);

/* An auto-delete exchange whose every binding goes is deleted too. */
static void plan_check_auto_delete(struct exchange_table *t, struct plan *p, struct exchange *s)
{
	if (!s->info.auto_delete || s->n_bindings == 0 || plan_deletes(p, s) || reserved_name(s->name))
		return;
	for (size_t i = 0; i < s->n_bindings; i++)
		if (!plan_removes(p, s->bindings[i]))
			return;
	plan_delete_exchange(t, p, s);
}

static void plan_remove_binding(struct exchange_table *t, struct plan *p, struct exchange *s,
				struct binding *b)
{
	if (p->err || plan_removes(p, b))
		return;
	if (p->n_rm == p->cap_rm) {
		size_t cap = p->cap_rm ? p->cap_rm * 2 : 8;
		struct plan_rm *n = realloc(p->rm, cap * sizeof *n);
		if (!n) {
			p->err = -ERR_NOMEM;
			return;
		}
		p->rm = n;
		p->cap_rm = cap;
	}
	p->rm[p->n_rm++] = (struct plan_rm){ s, b };
	plan_check_auto_delete(t, p, s);
}

static void plan_delete_exchange(struct exchange_table *t, struct plan *p, struct exchange *x)
{
	if (p->err || plan_deletes(p, x))
		return;
	if (p->n_del == p->cap_del) {
		size_t cap = p->cap_del ? p->cap_del * 2 : 4;
		struct exchange **n = realloc(p->del, cap * sizeof *n);
		if (!n) {
			p->err = -ERR_NOMEM;
			return;
		}
		p->del = n;
		p->cap_del = cap;
	}
	p->del[p->n_del++] = x;
	/* Bindings to x from other exchanges go (their sources may then auto-delete). */
	for (size_t i = 0; i < t->n_buckets; i++)
		for (struct exchange *s = t->buckets[i]; s; s = s->hash_next)
			for (size_t k = 0; k < s->n_bindings; k++)
				if (s->bindings[k]->dest_x == x)
					plan_remove_binding(t, p, s, s->bindings[k]);
}

static struct catalog_binding catalog_binding_of(const struct exchange *s, const struct binding *b)
{
	return (struct catalog_binding){
		.source = s->name,
		.dest_kind = b->dest_kind == EXCHANGE_DEST_QUEUE ? CATALOG_DEST_QUEUE
								 : CATALOG_DEST_EXCHANGE,
		.destination = b->dest,
		.routing_key = b->key,
		.arguments = b->args,
	};
}

/* Writes the durable part of a plan to the catalog, atomically. */
static int plan_store(struct exchange_table *t, const struct plan *p)
{
	if (!t->cat)
		return 0;
	bool any = false;
	for (size_t i = 0; i < p->n_del && !any; i++)
		any = p->del[i]->info.durable;
	for (size_t i = 0; i < p->n_rm && !any; i++)
		any = p->rm[i].b->durable;
	if (!any)
		return 0;
	pthread_mutex_lock(t->cat_lock);
	int rc = catalog_begin(t->cat);
	for (size_t i = 0; i < p->n_rm && !rc; i++) {
		const struct plan_rm *r = &p->rm[i];
		if (!r->b->durable || plan_deletes(p, r->source) ||
		    (r->b->dest_x && plan_deletes(p, r->b->dest_x)))
			continue; /* goes with the exchange */
		struct catalog_binding cb = catalog_binding_of(r->source, r->b);
		rc = catalog_binding_remove(t->cat, &cb);
		if (rc == -ERR_NOT_FOUND)
			rc = 0; /* e.g. the queue's deletion took it already */
	}
	for (size_t i = 0; i < p->n_del && !rc; i++) {
		if (!p->del[i]->info.durable)
			continue;
		rc = catalog_exchange_delete(t->cat, p->del[i]->name);
		if (rc == -ERR_NOT_FOUND)
			rc = 0;
	}
	if (rc)
		catalog_rollback(t->cat);
	else
		rc = catalog_commit(t->cat);
	pthread_mutex_unlock(t->cat_lock);
	if (rc)
		diag_error("exchange", "catalog update failed: %s", err_str(rc));
	return rc;
}

/* Applies a plan in memory (write lock held). */
static void plan_apply(struct exchange_table *t, const struct plan *p)
{
	for (size_t i = 0; i < p->n_rm; i++) {
		struct exchange *s = p->rm[i].source;
		if (plan_deletes(p, s))
			continue; /* freed with s */
		for (size_t k = 0; k < s->n_bindings; k++) {
			if (s->bindings[k] == p->rm[i].b) {
				free(s->bindings[k]);
				s->bindings[k] = s->bindings[--s->n_bindings];
				break;
			}
		}
	}
	for (size_t i = 0; i < p->n_del; i++) {
		table_unlink(t, p->del[i]);
		exchange_free(p->del[i]);
	}
}

/* Stores and applies a plan; returns 0 or the catalog's error (nothing changed). */
static int plan_run(struct exchange_table *t, struct plan *p)
{
	int rc = p->err ? p->err : plan_store(t, p);
	if (!rc) {
		pthread_rwlock_wrlock(&t->lock);
		plan_apply(t, p);
		pthread_rwlock_unlock(&t->lock);
	}
	plan_fini(p);
	return rc;
}

/* ---- opening: predeclared and stored exchanges ---- */

static int add_loaded_exchange(struct exchange_table *t, struct slice name,
			       const struct exchange_info *info, struct slice args)
{
	struct exchange *x = exchange_alloc(name, info, args);
	if (!x)
		return -ERR_NOMEM;
	table_insert(t, x);
	return 0;
}

static int load_exchange(void *arg, const struct catalog_exchange *cx)
{
	struct exchange_table *t = arg;
	struct exchange_info info = {
		.durable = true, .auto_delete = cx->auto_delete, .internal = cx->internal
	};
	if (exchange_type_parse(cx->type, &info.type)) {
		diag_warn("exchange", "stored exchange '%.*s' has unknown type '%.*s'; not loaded",
			  (int)cx->name.len, (const char *)cx->name.data, (int)cx->type.len,
			  (const char *)cx->type.data);
		return 0;
	}
	if (find(t, cx->name))
		return 0;
	return add_loaded_exchange(t, cx->name, &info, cx->arguments);
}

static int load_binding(void *arg, const struct catalog_binding *cb)
{
	struct exchange_table *t = arg;
	struct exchange *s = find(t, cb->source);
	struct exchange *d = NULL;
	if (cb->dest_kind == CATALOG_DEST_EXCHANGE)
		d = find(t, cb->destination);
	if (!s || (cb->dest_kind == CATALOG_DEST_EXCHANGE && !d)) {
		diag_warn("exchange", "stored binding from '%.*s' to '%.*s' names a missing exchange;"
			  " not loaded", (int)cb->source.len, (const char *)cb->source.data,
			  (int)cb->destination.len, (const char *)cb->destination.data);
		return 0;
	}
	struct exchange_binding b = {
		.source = cb->source,
		.dest_kind = cb->dest_kind == CATALOG_DEST_QUEUE ? EXCHANGE_DEST_QUEUE
								 : EXCHANGE_DEST_EXCHANGE,
		.destination = cb->destination,
		.routing_key = cb->routing_key,
		.args = cb->arguments,
	};
	struct binding *bd = binding_alloc(&b);
	if (!bd)
		return -ERR_NOMEM;
	bd->dest_x = d;
	bd->durable = true;
	if (binding_push(s, bd)) {
		free(bd);
		return -ERR_NOMEM;
	}
	return 0;
}

/* Loads the catalog and creates what is predeclared. */
static int table_load(struct exchange_table *t)
{
	int rc = 0;
	if (t->cat) {
		pthread_mutex_lock(t->cat_lock);
		rc = catalog_exchange_list(t->cat, load_exchange, t);
		pthread_mutex_unlock(t->cat_lock);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < sizeof predeclared / sizeof predeclared[0]; i++) {
		struct slice name = catalog_cstr(predeclared[i].name);
		struct exchange_info info = { .type = predeclared[i].type, .durable = true };
		if (find(t, name))
			continue;
		if (t->cat && name.len) {
			struct catalog_exchange cx = {
				.name = name, .type = catalog_cstr(type_names[info.type]), .durable = true
			};
			pthread_mutex_lock(t->cat_lock);
			rc = catalog_exchange_create(t->cat, &cx);
			pthread_mutex_unlock(t->cat_lock);
			if (rc && rc != -ERR_EXISTS)
				return rc;
		}
		rc = add_loaded_exchange(t, name, &info, (struct slice){ NULL, 0 });
		if (rc)
			return rc;
	}
	if (t->cat) {
		pthread_mutex_lock(t->cat_lock);
		rc = catalog_binding_list(t->cat, load_binding, t);
		pthread_mutex_unlock(t->cat_lock);
	}
	return rc;
}

int exchange_table_new(struct catalog *cat, pthread_mutex_t *cat_lock,
		       const struct exchange_table_ops *ops, struct exchange_table **out)
{
	struct exchange_table *t = calloc(1, sizeof *t);
	if (!t)
		return -ERR_NOMEM;
	t->cat = cat;
	t->cat_lock = cat_lock;
	t->ops = ops;
	t->n_buckets = BUCKETS_MIN;
	t->buckets = calloc(t->n_buckets, sizeof *t->buckets);
	if (!t->buckets) {
		free(t);
		return -ERR_NOMEM;
	}
	pthread_mutex_init(&t->admin, NULL);
	pthread_rwlock_init(&t->lock, NULL);
	int rc = table_load(t);
	if (rc) {
		diag_error("exchange", "cannot load exchanges: %s", err_str(rc));
		exchange_table_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int exchange_table_open(struct broker *b, const struct exchange_table_ops *ops,
			struct exchange_table **out)
{
	return exchange_table_new(b->catalog, &b->catalog_lock, ops, out);
}

void exchange_table_free(struct exchange_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct exchange *x = t->buckets[i];
		while (x) {
			struct exchange *next = x->hash_next;
			exchange_free(x);
			x = next;
		}
	}
	free(t->buckets);
	pthread_rwlock_destroy(&t->lock);
	pthread_mutex_destroy(&t->admin);
	free(t);
}

/* ---- changes ---- */

int exchange_declare(struct exchange_table *t, struct slice name, const struct exchange_info *info,
		     struct slice args, bool *created, struct exchange_info *existing)
{
	if (created)
		*created = false;
	if (name.len == 0 || name.len > EXCHANGE_NAME_MAX)
		return -ERR_INVALID;
	pthread_mutex_lock(&t->admin);
	int rc = 0;
	struct exchange *x = find(t, name);
	if (x) {
		if (x->info.type != info->type || x->info.durable != info->durable ||
		    x->info.auto_delete != info->auto_delete || x->info.internal != info->internal) {
			if (existing)
				*existing = x->info;
			rc = -ERR_EXISTS;
		}
		goto out;
	}
	if (reserved_name(name)) {
		rc = -ERR_INVALID;
		goto out;
	}
	x = exchange_alloc(name, info, args);
	if (!x) {
		rc = -ERR_NOMEM;
		goto out;
	}
	if (info->durable && t->cat) {
		struct catalog_exchange cx = {
			.name = name,
			.type = catalog_cstr(type_names[info->type]),
			.durable = true,
			.auto_delete = info->auto_delete,
			.internal = info->internal,
			.arguments = args,
		};
		pthread_mutex_lock(t->cat_lock);
		rc = catalog_exchange_create(t->cat, &cx);
		pthread_mutex_unlock(t->cat_lock);
		if (rc == -ERR_EXISTS)
			rc = 0; /* a leftover row (e.g. from a failed delete): reuse it */
		if (rc) {
			exchange_free(x);
			goto out;
		}
	}
	pthread_rwlock_wrlock(&t->lock);
	table_insert(t, x);
	pthread_rwlock_unlock(&t->lock);
	if (created)
		*created = true;
out:
	pthread_mutex_unlock(&t->admin);
	return rc;
}

int exchange_lookup(struct exchange_table *t, struct slice name, struct exchange_info *info)
{
	pthread_rwlock_rdlock(&t->lock);
	struct exchange *x = find(t, name);
	if (x && info)
		*info = x->info;
	pthread_rwlock_unlock(&t->lock);
	return x ? 0 : -ERR_NOT_FOUND;
}

int exchange_delete(struct exchange_table *t, struct slice name, bool if_unused)
{
	if (name.len == 0 || reserved_name(name))
		return -ERR_INVALID;
	pthread_mutex_lock(&t->admin);
	int rc;
	struct exchange *x = find(t, name);
	if (!x) {
		rc = -ERR_NOT_FOUND;
	} else if (if_unused && x->n_bindings > 0) {
		rc = -ERR_EXISTS;
	} else {
		struct plan p = { 0 };
		plan_delete_exchange(t, &p, x);
		rc = plan_run(t, &p);
	}
	pthread_mutex_unlock(&t->admin);
	return rc;
}

/* Checks headers-exchange binding arguments (x-match) as RabbitMQ does. */
static int check_headers_args(struct exchange_table *t, struct slice args, char *errbuf,
			      size_t errlen)
{
	struct exchange_value v;
	int rc = t->ops->args_lookup(args, (struct slice){ (const uint8_t *)"x-match", 7 }, &v);
	if (rc < 0) {
		snprintf(errbuf, errlen, "malformed binding arguments");
		return -ERR_INVALID;
	}
	if (rc == 0)
		return 0;
	if (v.kind != EXCHANGE_VALUE_BYTES) {
		snprintf(errbuf, errlen, "Invalid x-match field type; expected longstr");
		return -ERR_INVALID;
	}
	if (xmatch_of(t->ops, args) == XMATCH_BAD) {
		snprintf(errbuf, errlen,
			 "Invalid x-match field value <<\"%.*s\">>; expected all, any, all-with-x, "
			 "or any-with-x", (int)v.bytes.len, (const char *)v.bytes.data);
		return -ERR_INVALID;
	}
	return 0;
}

int exchange_bind(struct exchange_table *t, const struct exchange_binding *b, bool *missing_dest,
		  char *errbuf, size_t errlen)
{
	if (missing_dest)
		*missing_dest = false;
	if (errlen)
		errbuf[0] = 0;
	if (b->source.len == 0 ||
	    (b->dest_kind == EXCHANGE_DEST_EXCHANGE && b->destination.len == 0)) {
		snprintf(errbuf, errlen, "operation not permitted on the default exchange");
		return -ERR_INVALID;
	}
	if (b->routing_key.len > EXCHANGE_NAME_MAX || b->destination.len > EXCHANGE_NAME_MAX)
		return -ERR_INVALID;
	pthread_mutex_lock(&t->admin);
	int rc = 0;
	struct binding *bd = NULL;
	struct exchange *s = find(t, b->source);
	struct exchange *d = NULL;
	if (!s) {
		rc = -ERR_NOT_FOUND;
		goto out;
	}
	if (b->dest_kind == EXCHANGE_DEST_EXCHANGE) {
		d = find(t, b->destination);
		if (!d) {
			if (missing_dest)
				*missing_dest = true;
			rc = -ERR_NOT_FOUND;
			goto out;
		}
	}
	if (s->info.type == EXCHANGE_HEADERS) {
		rc = check_headers_args(t, b->args, errbuf, errlen);
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < s->n_bindings; i++)
		if (binding_equal(s->bindings[i], b))
			goto out; /* already bound */
	bd = binding_alloc(b);
	if (!bd) {
		rc = -ERR_NOMEM;
		goto out;
	}
	bd->dest_x = d;
	bd->durable = s->info.durable && (d ? d->info.durable : b->dest_durable);
	if (bd->durable && t->cat) {
		struct catalog_binding cb = catalog_binding_of(s, bd);
		pthread_mutex_lock(t->cat_lock);
		rc = catalog_binding_add(t->cat, &cb);
		pthread_mutex_unlock(t->cat_lock);
		if (rc == -ERR_EXISTS)
			rc = 0;
		if (rc) {
			diag_error("exchange", "cannot store binding from '%s': %s",
				   (const char *)s->name.data, err_str(rc));
			goto out;
		}
	}
	pthread_rwlock_wrlock(&t->lock);
	rc = binding_push(s, bd);
	pthread_rwlock_unlock(&t->lock);
	if (!rc)
		bd = NULL;
out:
	pthread_mutex_unlock(&t->admin);
	free(bd);
	return rc;
}

int exchange_unbind(struct exchange_table *t, const struct exchange_binding *b)
{
	pthread_mutex_lock(&t->admin);
	int rc = -ERR_NOT_FOUND;
	struct exchange *s = find(t, b->source);
	for (size_t i = 0; s && i < s->n_bindings; i++) {
		if (binding_equal(s->bindings[i], b)) {
			struct plan p = { 0 };
			plan_remove_binding(t, &p, s, s->bindings[i]);
			rc = plan_run(t, &p);
			break;
		}
	}
	pthread_mutex_unlock(&t->admin);
	return rc;
}

size_t exchange_unbind_queue(struct exchange_table *t, struct slice queue)
{
	pthread_mutex_lock(&t->admin);
	struct plan p = { 0 };
	for (size_t i = 0; i < t->n_buckets; i++)
		for (struct exchange *s = t->buckets[i]; s; s = s->hash_next)
			for (size_t k = 0; k < s->n_bindings; k++) {
				struct binding *bd = s->bindings[k];
				if (bd->dest_kind == EXCHANGE_DEST_QUEUE && slice_eq(bd->dest, queue))
					plan_remove_binding(t, &p, s, bd);
			}
	size_t n = 0;
	for (size_t i = 0; i < p.n_rm; i++)
		if (p.rm[i].b->dest_kind == EXCHANGE_DEST_QUEUE && slice_eq(p.rm[i].b->dest, queue))
			n++;
	int rc = plan_run(t, &p);
	pthread_mutex_unlock(&t->admin);
	return rc ? 0 : n;
}

int64_t exchange_binding_count(struct exchange_table *t, struct slice name)
{
	pthread_rwlock_rdlock(&t->lock);
	struct exchange *x = find(t, name);
	int64_t n = x ? (int64_t)x->n_bindings : -ERR_NOT_FOUND;
	pthread_rwlock_unlock(&t->lock);
	return n;
}

/* ---- routing ---- */

void exchange_dests_init(struct exchange_dests *d)
{
	memset(d, 0, sizeof *d);
}

void exchange_dests_fini(struct exchange_dests *d)
{
	free(d->names);
	free(d->offs);
	free(d->buf);
	memset(d, 0, sizeof *d);
}

static int dests_add(struct exchange_dests *d, struct slice name)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct slice *names = realloc(d->names, cap * sizeof *names);
		if (!names)
			return -ERR_NOMEM;
		d->names = names;
		size_t *offs = realloc(d->offs, cap * sizeof *offs);
		if (!offs)
			return -ERR_NOMEM;
		d->offs = offs;
		d->cap = cap;
	}
	if (d->len + name.len > d->buf_cap) {
		size_t cap = d->buf_cap ? d->buf_cap : 256;
		while (cap < d->len + name.len)
			cap *= 2;
		uint8_t *buf = realloc(d->buf, cap);
		if (!buf)
			return -ERR_NOMEM;
		d->buf = buf;
		d->buf_cap = cap;
	}
	if (name.len)
		memcpy(d->buf + d->len, name.data, name.len);
	d->offs[d->n] = d->len;
	d->names[d->n].len = name.len;
	d->n++;
	d->len += name.len;
	return 0;
}

static int slice_cmp(const void *a, const void *b)
{
	const struct slice *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = n ? memcmp(x->data, y->data, n) : 0;
	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* Points names into buf, sorts them and drops repeats. */
static void dests_finish(struct exchange_dests *d)
{
	for (size_t i = 0; i < d->n; i++)
		d->names[i].data = d->buf ? d->buf + d->offs[i] : (const uint8_t *)"";
	if (d->n < 2)
		return;
	qsort(d->names, d->n, sizeof d->names[0], slice_cmp);
	size_t k = 1;
	for (size_t i = 1; i < d->n; i++)
		if (!slice_eq(d->names[i], d->names[k - 1]))
			d->names[k++] = d->names[i];
	d->n = k;
}

static bool binding_matches(const struct exchange_table *t, const struct exchange *x,
			    const struct binding *b, struct slice key, const void *headers)
{
	switch (x->info.type) {
	case EXCHANGE_DIRECT:
		return slice_eq(b->key, key);
	case EXCHANGE_FANOUT:
		return true;
	case EXCHANGE_TOPIC:
		return exchange_topic_match(b->key, key);
	case EXCHANGE_HEADERS:
		return exchange_headers_match(t->ops, b->args, headers);
	}
	return false;
}

/* Exchanges a route has reached, to follow each once. */
struct visited {
	const struct exchange *small[16];
	const struct exchange **v;
	size_t n, cap;
};

static bool visited_has(const struct visited *s, const struct exchange *x)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == x)
			return true;
	return false;
}

static int visited_add(struct visited *s, const struct exchange *x)
{
	if (s->n == s->cap) {
		size_t cap = s->cap * 2;
		const struct exchange **v = malloc(cap * sizeof *v);
		if (!v)
			return -ERR_NOMEM;
		memcpy(v, s->v, s->n * sizeof *v);
		if (s->v != s->small)
			free(s->v);
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = x;
	return 0;
}

int exchange_route(struct exchange_table *t, struct slice name, struct slice routing_key,
		   const void *headers, struct exchange_dests *out)
{
	out->n = 0;
	out->len = 0;
	struct visited seen = { .n = 0, .cap = 16 };
	seen.v = seen.small;
	int rc = 0;
	pthread_rwlock_rdlock(&t->lock);
	const struct exchange *x = find(t, name);
	if (!x) {
		rc = -ERR_NOT_FOUND;
		goto out;
	}
	if (x->info.internal) {
		rc = -ERR_INVALID;
		goto out;
	}
	if (name.len == 0) {
		rc = dests_add(out, routing_key);
		goto out;
	}
	rc = visited_add(&seen, x);
	/* Breadth-first over exchanges: seen doubles as the work list. */
	for (size_t next = 0; !rc && next < seen.n; next++) {
		const struct exchange *e = seen.v[next];
		for (size_t i = 0; !rc && i < e->n_bindings; i++) {
			const struct binding *b = e->bindings[i];
			if (!binding_matches(t, e, b, routing_key, headers))
				continue;
			if (b->dest_kind == EXCHANGE_DEST_QUEUE)
				rc = dests_add(out, b->dest);
			else if (!visited_has(&seen, b->dest_x))
				rc = visited_add(&seen, b->dest_x);
		}
	}
out:
	pthread_rwlock_unlock(&t->lock);
	if (seen.v != seen.small)
		free(seen.v);
	if (rc)
		out->n = 0;
	else
		dests_finish(out);
	return rc;
}
