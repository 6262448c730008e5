/*
 * test_exchange.c: exchanges, bindings and routing (src/broker/exchange.h).
 *
 * The topic table below was produced by RabbitMQ 3.10 (Debian rabbitmq-server):
 * every binding key was bound to its own queue on one topic exchange, every
 * routing key published once, and each queue checked with basic.get. The
 * headers cases follow the same broker's answers (pika client, see
 * docs/amqp.md). Argument tables here use a tiny test encoding read by
 * test_ops ("key=Tvalue;..." with T = S string, I integer, F float, B bool
 * (1/0), V void, X other), so the exchange module is tested through its own
 * header, without the AMQP codec.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/exchange.h"
#include "core/err.h"
#include "storage/catalog.h"

#define S(s) ((struct slice){ (const uint8_t *)(s), strlen(s) })

/* ---- the test encoding of argument tables ---- */

/* Parses one "key=Tvalue" entry of [p, end). */
static void parse_entry(const char *p, const char *end, struct slice *key, struct exchange_value *v)
{
	const char *eq = memchr(p, '=', (size_t)(end - p));
	assert_non_null(eq);
	*key = (struct slice){ (const uint8_t *)p, (size_t)(eq - p) };
	memset(v, 0, sizeof *v);
	char t = eq[1];
	const char *val = eq + 2;
	struct slice text = { (const uint8_t *)val, (size_t)(end - val) };
	char num[64];
	snprintf(num, sizeof num, "%.*s", (int)text.len, val);
	switch (t) {
	case 'S': v->kind = EXCHANGE_VALUE_BYTES; v->bytes = text; break;
	case 'I': v->kind = EXCHANGE_VALUE_INT; v->i = strtoll(num, NULL, 10); break;
	case 'F': v->kind = EXCHANGE_VALUE_FLOAT; v->f = strtod(num, NULL); break;
	case 'B': v->kind = EXCHANGE_VALUE_BOOL; v->b = num[0] == '1'; break;
	case 'V': v->kind = EXCHANGE_VALUE_VOID; break;
	default: v->kind = EXCHANGE_VALUE_OTHER; v->tag = t; v->bytes = text; break;
	}
}

static int test_foreach(struct slice args, exchange_arg_fn fn, void *arg)
{
	const char *p = (const char *)args.data, *end = p + args.len;
	while (p && p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *e = semi ? semi : end;
		struct slice key;
		struct exchange_value v;
		if (e > p) {
			parse_entry(p, e, &key, &v);
			int rc = fn(arg, key, &v);
			if (rc)
				return rc;
		}
		p = e + 1;
	}
	return 0;
}

struct find_ctx {
	struct slice key;
	struct exchange_value *out;
};

static int find_visit(void *arg, struct slice key, const struct exchange_value *v)
{
	struct find_ctx *f = arg;
	if (key.len == f->key.len && memcmp(key.data, f->key.data, key.len) == 0) {
		*f->out = *v;
		return 1;
	}
	return 0;
}

static int test_lookup(struct slice args, struct slice key, struct exchange_value *out)
{
	struct find_ctx f = { key, out };
	return test_foreach(args, find_visit, &f);
}

static int test_header_lookup(const void *headers, struct slice key, struct exchange_value *out)
{
	return test_lookup(S((const char *)headers), key, out);
}

static const struct exchange_table_ops test_ops = {
	.args_foreach = test_foreach,
	.args_lookup = test_lookup,
	.header_lookup = test_header_lookup,
};

/* ---- topic matching ---- */

static const struct {
	const char *binding, *key;
	bool match;
} topic_cases[] = {
	{ "#", "", true }, { "", "", true }, { "*", "", false },
	{ "a", "", false }, { "a.#", "", false }, { "#.a", "", false },
	{ "a.#.b", "", false }, { "a.*", "", false }, { "*.*", "", false },
	{ "#.#", "", true }, { "a..b", "", false }, { "a.*.b", "", false },
	{ "*.b.#", "", false }, { "a.*.#", "", false }, { "#.*", "", false },
	{ "*.#", "", false }, { "#.*.#", "", false }, { "a.#.#.b", "", false },
	{ ".", "", false }, { "a.", "", false }, { ".a", "", false },
	{ "#.", "", false }, { ".#", "", false }, { "*.", "", false },
	{ "a.b.c", "", false }, { "#.b.#", "", false }, { "a.#.*", "", false },
	{ "#.#.a", "", false }, { "a*b", "", false }, { "a.#b", "", false },
	{ "##", "", false }, { "*a", "", false }, { "#", "a", true },
	{ "", "a", false }, { "*", "a", true }, { "a", "a", true },
	{ "a.#", "a", true }, { "#.a", "a", true }, { "a.#.b", "a", false },
	{ "a.*", "a", false }, { "*.*", "a", false }, { "#.#", "a", true },
	{ "a..b", "a", false }, { "a.*.b", "a", false }, { "*.b.#", "a", false },
	{ "a.*.#", "a", false }, { "#.*", "a", true }, { "*.#", "a", true },
	{ "#.*.#", "a", true }, { "a.#.#.b", "a", false }, { ".", "a", false },
	{ "a.", "a", false }, { ".a", "a", false }, { "#.", "a", false },
	{ ".#", "a", false }, { "*.", "a", false }, { "a.b.c", "a", false },
	{ "#.b.#", "a", false }, { "a.#.*", "a", false }, { "#.#.a", "a", true },
	{ "a*b", "a", false }, { "a.#b", "a", false }, { "##", "a", false },
	{ "*a", "a", false }, { "#", "b", true }, { "", "b", false },
	{ "*", "b", true }, { "a", "b", false }, { "a.#", "b", false },
	{ "#.a", "b", false }, { "a.#.b", "b", false }, { "a.*", "b", false },
	{ "*.*", "b", false }, { "#.#", "b", true }, { "a..b", "b", false },
	{ "a.*.b", "b", false }, { "*.b.#", "b", false }, { "a.*.#", "b", false },
	{ "#.*", "b", true }, { "*.#", "b", true }, { "#.*.#", "b", true },
	{ "a.#.#.b", "b", false }, { ".", "b", false }, { "a.", "b", false },
	{ ".a", "b", false }, { "#.", "b", false }, { ".#", "b", false },
	{ "*.", "b", false }, { "a.b.c", "b", false }, { "#.b.#", "b", true },
	{ "a.#.*", "b", false }, { "#.#.a", "b", false }, { "a*b", "b", false },
	{ "a.#b", "b", false }, { "##", "b", false }, { "*a", "b", false },
	{ "#", "a.b", true }, { "", "a.b", false }, { "*", "a.b", false },
	{ "a", "a.b", false }, { "a.#", "a.b", true }, { "#.a", "a.b", false },
	{ "a.#.b", "a.b", true }, { "a.*", "a.b", true }, { "*.*", "a.b", true },
	{ "#.#", "a.b", true }, { "a..b", "a.b", false }, { "a.*.b", "a.b", false },
	{ "*.b.#", "a.b", true }, { "a.*.#", "a.b", true }, { "#.*", "a.b", true },
	{ "*.#", "a.b", true }, { "#.*.#", "a.b", true }, { "a.#.#.b", "a.b", true },
	{ ".", "a.b", false }, { "a.", "a.b", false }, { ".a", "a.b", false },
	{ "#.", "a.b", false }, { ".#", "a.b", false }, { "*.", "a.b", false },
	{ "a.b.c", "a.b", false }, { "#.b.#", "a.b", true }, { "a.#.*", "a.b", true },
	{ "#.#.a", "a.b", false }, { "a*b", "a.b", false }, { "a.#b", "a.b", false },
	{ "##", "a.b", false }, { "*a", "a.b", false }, { "#", "b.a", true },
	{ "", "b.a", false }, { "*", "b.a", false }, { "a", "b.a", false },
	{ "a.#", "b.a", false }, { "#.a", "b.a", true }, { "a.#.b", "b.a", false },
	{ "a.*", "b.a", false }, { "*.*", "b.a", true }, { "#.#", "b.a", true },
	{ "a..b", "b.a", false }, { "a.*.b", "b.a", false }, { "*.b.#", "b.a", false },
	{ "a.*.#", "b.a", false }, { "#.*", "b.a", true }, { "*.#", "b.a", true },
	{ "#.*.#", "b.a", true }, { "a.#.#.b", "b.a", false }, { ".", "b.a", false },
	{ "a.", "b.a", false }, { ".a", "b.a", false }, { "#.", "b.a", false },
	{ ".#", "b.a", false }, { "*.", "b.a", false }, { "a.b.c", "b.a", false },
	{ "#.b.#", "b.a", true }, { "a.#.*", "b.a", false }, { "#.#.a", "b.a", true },
	{ "a*b", "b.a", false }, { "a.#b", "b.a", false }, { "##", "b.a", false },
	{ "*a", "b.a", false }, { "#", "a.b.c", true }, { "", "a.b.c", false },
	{ "*", "a.b.c", false }, { "a", "a.b.c", false }, { "a.#", "a.b.c", true },
	{ "#.a", "a.b.c", false }, { "a.#.b", "a.b.c", false }, { "a.*", "a.b.c", false },
	{ "*.*", "a.b.c", false }, { "#.#", "a.b.c", true }, { "a..b", "a.b.c", false },
	{ "a.*.b", "a.b.c", false }, { "*.b.#", "a.b.c", true }, { "a.*.#", "a.b.c", true },
	{ "#.*", "a.b.c", true }, { "*.#", "a.b.c", true }, { "#.*.#", "a.b.c", true },
	{ "a.#.#.b", "a.b.c", false }, { ".", "a.b.c", false }, { "a.", "a.b.c", false },
	{ ".a", "a.b.c", false }, { "#.", "a.b.c", false }, { ".#", "a.b.c", false },
	{ "*.", "a.b.c", false }, { "a.b.c", "a.b.c", true }, { "#.b.#", "a.b.c", true },
	{ "a.#.*", "a.b.c", true }, { "#.#.a", "a.b.c", false }, { "a*b", "a.b.c", false },
	{ "a.#b", "a.b.c", false }, { "##", "a.b.c", false }, { "*a", "a.b.c", false },
	{ "#", "a.x.y.b", true }, { "", "a.x.y.b", false }, { "*", "a.x.y.b", false },
	{ "a", "a.x.y.b", false }, { "a.#", "a.x.y.b", true }, { "#.a", "a.x.y.b", false },
	{ "a.#.b", "a.x.y.b", true }, { "a.*", "a.x.y.b", false }, { "*.*", "a.x.y.b", false },
	{ "#.#", "a.x.y.b", true }, { "a..b", "a.x.y.b", false }, { "a.*.b", "a.x.y.b", false },
	{ "*.b.#", "a.x.y.b", false }, { "a.*.#", "a.x.y.b", true }, { "#.*", "a.x.y.b", true },
	{ "*.#", "a.x.y.b", true }, { "#.*.#", "a.x.y.b", true }, { "a.#.#.b", "a.x.y.b", true },
	{ ".", "a.x.y.b", false }, { "a.", "a.x.y.b", false }, { ".a", "a.x.y.b", false },
	{ "#.", "a.x.y.b", false }, { ".#", "a.x.y.b", false }, { "*.", "a.x.y.b", false },
	{ "a.b.c", "a.x.y.b", false }, { "#.b.#", "a.x.y.b", true }, { "a.#.*", "a.x.y.b", true },
	{ "#.#.a", "a.x.y.b", false }, { "a*b", "a.x.y.b", false }, { "a.#b", "a.x.y.b", false },
	{ "##", "a.x.y.b", false }, { "*a", "a.x.y.b", false }, { "#", "a.", true },
	{ "", "a.", false }, { "*", "a.", false }, { "a", "a.", false },
	{ "a.#", "a.", true }, { "#.a", "a.", false }, { "a.#.b", "a.", false },
	{ "a.*", "a.", true }, { "*.*", "a.", true }, { "#.#", "a.", true },
	{ "a..b", "a.", false }, { "a.*.b", "a.", false }, { "*.b.#", "a.", false },
	{ "a.*.#", "a.", true }, { "#.*", "a.", true }, { "*.#", "a.", true },
	{ "#.*.#", "a.", true }, { "a.#.#.b", "a.", false }, { ".", "a.", false },
	{ "a.", "a.", true }, { ".a", "a.", false }, { "#.", "a.", true },
	{ ".#", "a.", false }, { "*.", "a.", true }, { "a.b.c", "a.", false },
	{ "#.b.#", "a.", false }, { "a.#.*", "a.", true }, { "#.#.a", "a.", false },
	{ "a*b", "a.", false }, { "a.#b", "a.", false }, { "##", "a.", false },
	{ "*a", "a.", false }, { "#", ".", true }, { "", ".", false },
	{ "*", ".", false }, { "a", ".", false }, { "a.#", ".", false },
	{ "#.a", ".", false }, { "a.#.b", ".", false }, { "a.*", ".", false },
	{ "*.*", ".", true }, { "#.#", ".", true }, { "a..b", ".", false },
	{ "a.*.b", ".", false }, { "*.b.#", ".", false }, { "a.*.#", ".", false },
	{ "#.*", ".", true }, { "*.#", ".", true }, { "#.*.#", ".", true },
	{ "a.#.#.b", ".", false }, { ".", ".", true }, { "a.", ".", false },
	{ ".a", ".", false }, { "#.", ".", true }, { ".#", ".", true },
	{ "*.", ".", true }, { "a.b.c", ".", false }, { "#.b.#", ".", false },
	{ "a.#.*", ".", false }, { "#.#.a", ".", false }, { "a*b", ".", false },
	{ "a.#b", ".", false }, { "##", ".", false }, { "*a", ".", false },
	{ "#", ".a", true }, { "", ".a", false }, { "*", ".a", false },
	{ "a", ".a", false }, { "a.#", ".a", false }, { "#.a", ".a", true },
	{ "a.#.b", ".a", false }, { "a.*", ".a", false }, { "*.*", ".a", true },
	{ "#.#", ".a", true }, { "a..b", ".a", false }, { "a.*.b", ".a", false },
	{ "*.b.#", ".a", false }, { "a.*.#", ".a", false }, { "#.*", ".a", true },
	{ "*.#", ".a", true }, { "#.*.#", ".a", true }, { "a.#.#.b", ".a", false },
	{ ".", ".a", false }, { "a.", ".a", false }, { ".a", ".a", true },
	{ "#.", ".a", false }, { ".#", ".a", true }, { "*.", ".a", false },
	{ "a.b.c", ".a", false }, { "#.b.#", ".a", false }, { "a.#.*", ".a", false },
	{ "#.#.a", ".a", true }, { "a*b", ".a", false }, { "a.#b", ".a", false },
	{ "##", ".a", false }, { "*a", ".a", false }, { "#", "a..b", true },
	{ "", "a..b", false }, { "*", "a..b", false }, { "a", "a..b", false },
	{ "a.#", "a..b", true }, { "#.a", "a..b", false }, { "a.#.b", "a..b", true },
	{ "a.*", "a..b", false }, { "*.*", "a..b", false }, { "#.#", "a..b", true },
	{ "a..b", "a..b", true }, { "a.*.b", "a..b", true }, { "*.b.#", "a..b", false },
	{ "a.*.#", "a..b", true }, { "#.*", "a..b", true }, { "*.#", "a..b", true },
	{ "#.*.#", "a..b", true }, { "a.#.#.b", "a..b", true }, { ".", "a..b", false },
	{ "a.", "a..b", false }, { ".a", "a..b", false }, { "#.", "a..b", false },
	{ ".#", "a..b", false }, { "*.", "a..b", false }, { "a.b.c", "a..b", false },
	{ "#.b.#", "a..b", true }, { "a.#.*", "a..b", true }, { "#.#.a", "a..b", false },
	{ "a*b", "a..b", false }, { "a.#b", "a..b", false }, { "##", "a..b", false },
	{ "*a", "a..b", false }, { "#", "..", true }, { "", "..", false },
	{ "*", "..", false }, { "a", "..", false }, { "a.#", "..", false },
	{ "#.a", "..", false }, { "a.#.b", "..", false }, { "a.*", "..", false },
	{ "*.*", "..", false }, { "#.#", "..", true }, { "a..b", "..", false },
	{ "a.*.b", "..", false }, { "*.b.#", "..", false }, { "a.*.#", "..", false },
	{ "#.*", "..", true }, { "*.#", "..", true }, { "#.*.#", "..", true },
	{ "a.#.#.b", "..", false }, { ".", "..", false }, { "a.", "..", false },
	{ ".a", "..", false }, { "#.", "..", true }, { ".#", "..", true },
	{ "*.", "..", false }, { "a.b.c", "..", false }, { "#.b.#", "..", false },
	{ "a.#.*", "..", false }, { "#.#.a", "..", false }, { "a*b", "..", false },
	{ "a.#b", "..", false }, { "##", "..", false }, { "*a", "..", false },
	{ "#", "a.b.b", true }, { "", "a.b.b", false }, { "*", "a.b.b", false },
	{ "a", "a.b.b", false }, { "a.#", "a.b.b", true }, { "#.a", "a.b.b", false },
	{ "a.#.b", "a.b.b", true }, { "a.*", "a.b.b", false }, { "*.*", "a.b.b", false },
	{ "#.#", "a.b.b", true }, { "a..b", "a.b.b", false }, { "a.*.b", "a.b.b", true },
	{ "*.b.#", "a.b.b", true }, { "a.*.#", "a.b.b", true }, { "#.*", "a.b.b", true },
	{ "*.#", "a.b.b", true }, { "#.*.#", "a.b.b", true }, { "a.#.#.b", "a.b.b", true },
	{ ".", "a.b.b", false }, { "a.", "a.b.b", false }, { ".a", "a.b.b", false },
	{ "#.", "a.b.b", false }, { ".#", "a.b.b", false }, { "*.", "a.b.b", false },
	{ "a.b.c", "a.b.b", false }, { "#.b.#", "a.b.b", true }, { "a.#.*", "a.b.b", true },
	{ "#.#.a", "a.b.b", false }, { "a*b", "a.b.b", false }, { "a.#b", "a.b.b", false },
	{ "##", "a.b.b", false }, { "*a", "a.b.b", false }, { "#", "b.b.a", true },
	{ "", "b.b.a", false }, { "*", "b.b.a", false }, { "a", "b.b.a", false },
	{ "a.#", "b.b.a", false }, { "#.a", "b.b.a", true }, { "a.#.b", "b.b.a", false },
	{ "a.*", "b.b.a", false }, { "*.*", "b.b.a", false }, { "#.#", "b.b.a", true },
	{ "a..b", "b.b.a", false }, { "a.*.b", "b.b.a", false }, { "*.b.#", "b.b.a", true },
	{ "a.*.#", "b.b.a", false }, { "#.*", "b.b.a", true }, { "*.#", "b.b.a", true },
	{ "#.*.#", "b.b.a", true }, { "a.#.#.b", "b.b.a", false }, { ".", "b.b.a", false },
	{ "a.", "b.b.a", false }, { ".a", "b.b.a", false }, { "#.", "b.b.a", false },
	{ ".#", "b.b.a", false }, { "*.", "b.b.a", false }, { "a.b.c", "b.b.a", false },
	{ "#.b.#", "b.b.a", true }, { "a.#.*", "b.b.a", false }, { "#.#.a", "b.b.a", true },
	{ "a*b", "b.b.a", false }, { "a.#b", "b.b.a", false }, { "##", "b.b.a", false },
	{ "*a", "b.b.a", false }, { "#", "a*b", true }, { "", "a*b", false },
	{ "*", "a*b", true }, { "a", "a*b", false }, { "a.#", "a*b", false },
	{ "#.a", "a*b", false }, { "a.#.b", "a*b", false }, { "a.*", "a*b", false },
	{ "*.*", "a*b", false }, { "#.#", "a*b", true }, { "a..b", "a*b", false },
	{ "a.*.b", "a*b", false }, { "*.b.#", "a*b", false }, { "a.*.#", "a*b", false },
	{ "#.*", "a*b", true }, { "*.#", "a*b", true }, { "#.*.#", "a*b", true },
	{ "a.#.#.b", "a*b", false }, { ".", "a*b", false }, { "a.", "a*b", false },
	{ ".a", "a*b", false }, { "#.", "a*b", false }, { ".#", "a*b", false },
	{ "*.", "a*b", false }, { "a.b.c", "a*b", false }, { "#.b.#", "a*b", false },
	{ "a.#.*", "a*b", false }, { "#.#.a", "a*b", false }, { "a*b", "a*b", true },
	{ "a.#b", "a*b", false }, { "##", "a*b", false }, { "*a", "a*b", false },
	{ "#", "a.#b", true }, { "", "a.#b", false }, { "*", "a.#b", false },
	{ "a", "a.#b", false }, { "a.#", "a.#b", true }, { "#.a", "a.#b", false },
	{ "a.#.b", "a.#b", false }, { "a.*", "a.#b", true }, { "*.*", "a.#b", true },
	{ "#.#", "a.#b", true }, { "a..b", "a.#b", false }, { "a.*.b", "a.#b", false },
	{ "*.b.#", "a.#b", false }, { "a.*.#", "a.#b", true }, { "#.*", "a.#b", true },
	{ "*.#", "a.#b", true }, { "#.*.#", "a.#b", true }, { "a.#.#.b", "a.#b", false },
	{ ".", "a.#b", false }, { "a.", "a.#b", false }, { ".a", "a.#b", false },
	{ "#.", "a.#b", false }, { ".#", "a.#b", false }, { "*.", "a.#b", false },
	{ "a.b.c", "a.#b", false }, { "#.b.#", "a.#b", false }, { "a.#.*", "a.#b", true },
	{ "#.#.a", "a.#b", false }, { "a*b", "a.#b", false }, { "a.#b", "a.#b", true },
	{ "##", "a.#b", false }, { "*a", "a.#b", false }, { "#", "##", true },
	{ "", "##", false }, { "*", "##", true }, { "a", "##", false },
	{ "a.#", "##", false }, { "#.a", "##", false }, { "a.#.b", "##", false },
	{ "a.*", "##", false }, { "*.*", "##", false }, { "#.#", "##", true },
	{ "a..b", "##", false }, { "a.*.b", "##", false }, { "*.b.#", "##", false },
	{ "a.*.#", "##", false }, { "#.*", "##", true }, { "*.#", "##", true },
	{ "#.*.#", "##", true }, { "a.#.#.b", "##", false }, { ".", "##", false },
	{ "a.", "##", false }, { ".a", "##", false }, { "#.", "##", false },
	{ ".#", "##", false }, { "*.", "##", false }, { "a.b.c", "##", false },
	{ "#.b.#", "##", false }, { "a.#.*", "##", false }, { "#.#.a", "##", false },
	{ "a*b", "##", false }, { "a.#b", "##", false }, { "##", "##", true },
	{ "*a", "##", false }, { "#", "*a", true }, { "", "*a", false },
	{ "*", "*a", true }, { "a", "*a", false }, { "a.#", "*a", false },
	{ "#.a", "*a", false }, { "a.#.b", "*a", false }, { "a.*", "*a", false },
	{ "*.*", "*a", false }, { "#.#", "*a", true }, { "a..b", "*a", false },
	{ "a.*.b", "*a", false }, { "*.b.#", "*a", false }, { "a.*.#", "*a", false },
	{ "#.*", "*a", true }, { "*.#", "*a", true }, { "#.*.#", "*a", true },
	{ "a.#.#.b", "*a", false }, { ".", "*a", false }, { "a.", "*a", false },
	{ ".a", "*a", false }, { "#.", "*a", false }, { ".#", "*a", false },
	{ "*.", "*a", false }, { "a.b.c", "*a", false }, { "#.b.#", "*a", false },
	{ "a.#.*", "*a", false }, { "#.#.a", "*a", false }, { "a*b", "*a", false },
	{ "a.#b", "*a", false }, { "##", "*a", false }, { "*a", "*a", true },
	{ "#", "#", true }, { "", "#", false }, { "*", "#", true },
	{ "a", "#", false }, { "a.#", "#", false }, { "#.a", "#", false },
	{ "a.#.b", "#", false }, { "a.*", "#", false }, { "*.*", "#", false },
	{ "#.#", "#", true }, { "a..b", "#", false }, { "a.*.b", "#", false },
	{ "*.b.#", "#", false }, { "a.*.#", "#", false }, { "#.*", "#", true },
	{ "*.#", "#", true }, { "#.*.#", "#", true }, { "a.#.#.b", "#", false },
	{ ".", "#", false }, { "a.", "#", false }, { ".a", "#", false },
	{ "#.", "#", false }, { ".#", "#", false }, { "*.", "#", false },
	{ "a.b.c", "#", false }, { "#.b.#", "#", false }, { "a.#.*", "#", false },
	{ "#.#.a", "#", false }, { "a*b", "#", false }, { "a.#b", "#", false },
	{ "##", "#", false }, { "*a", "#", false }, { "#", "*", true },
	{ "", "*", false }, { "*", "*", true }, { "a", "*", false },
	{ "a.#", "*", false }, { "#.a", "*", false }, { "a.#.b", "*", false },
	{ "a.*", "*", false }, { "*.*", "*", false }, { "#.#", "*", true },
	{ "a..b", "*", false }, { "a.*.b", "*", false }, { "*.b.#", "*", false },
	{ "a.*.#", "*", false }, { "#.*", "*", true }, { "*.#", "*", true },
	{ "#.*.#", "*", true }, { "a.#.#.b", "*", false }, { ".", "*", false },
	{ "a.", "*", false }, { ".a", "*", false }, { "#.", "*", false },
	{ ".#", "*", false }, { "*.", "*", false }, { "a.b.c", "*", false },
	{ "#.b.#", "*", false }, { "a.#.*", "*", false }, { "#.#.a", "*", false },
	{ "a*b", "*", false }, { "a.#b", "*", false }, { "##", "*", false },
	{ "*a", "*", false }, { "#", "x.a.y", true }, { "", "x.a.y", false },
	{ "*", "x.a.y", false }, { "a", "x.a.y", false }, { "a.#", "x.a.y", false },
	{ "#.a", "x.a.y", false }, { "a.#.b", "x.a.y", false }, { "a.*", "x.a.y", false },
	{ "*.*", "x.a.y", false }, { "#.#", "x.a.y", true }, { "a..b", "x.a.y", false },
	{ "a.*.b", "x.a.y", false }, { "*.b.#", "x.a.y", false }, { "a.*.#", "x.a.y", false },
	{ "#.*", "x.a.y", true }, { "*.#", "x.a.y", true }, { "#.*.#", "x.a.y", true },
	{ "a.#.#.b", "x.a.y", false }, { ".", "x.a.y", false }, { "a.", "x.a.y", false },
	{ ".a", "x.a.y", false }, { "#.", "x.a.y", false }, { ".#", "x.a.y", false },
	{ "*.", "x.a.y", false }, { "a.b.c", "x.a.y", false }, { "#.b.#", "x.a.y", false },
	{ "a.#.*", "x.a.y", false }, { "#.#.a", "x.a.y", false }, { "a*b", "x.a.y", false },
	{ "a.#b", "x.a.y", false }, { "##", "x.a.y", false }, { "*a", "x.a.y", false },
	{ "#", "a.a", true }, { "", "a.a", false }, { "*", "a.a", false },
	{ "a", "a.a", false }, { "a.#", "a.a", true }, { "#.a", "a.a", true },
	{ "a.#.b", "a.a", false }, { "a.*", "a.a", true }, { "*.*", "a.a", true },
	{ "#.#", "a.a", true }, { "a..b", "a.a", false }, { "a.*.b", "a.a", false },
	{ "*.b.#", "a.a", false }, { "a.*.#", "a.a", true }, { "#.*", "a.a", true },
	{ "*.#", "a.a", true }, { "#.*.#", "a.a", true }, { "a.#.#.b", "a.a", false },
	{ ".", "a.a", false }, { "a.", "a.a", false }, { ".a", "a.a", false },
	{ "#.", "a.a", false }, { ".#", "a.a", false }, { "*.", "a.a", false },
	{ "a.b.c", "a.a", false }, { "#.b.#", "a.a", false }, { "a.#.*", "a.a", true },
	{ "#.#.a", "a.a", true }, { "a*b", "a.a", false }, { "a.#b", "a.a", false },
	{ "##", "a.a", false }, { "*a", "a.a", false }, { "#", "a.a.b", true },
	{ "", "a.a.b", false }, { "*", "a.a.b", false }, { "a", "a.a.b", false },
	{ "a.#", "a.a.b", true }, { "#.a", "a.a.b", false }, { "a.#.b", "a.a.b", true },
	{ "a.*", "a.a.b", false }, { "*.*", "a.a.b", false }, { "#.#", "a.a.b", true },
	{ "a..b", "a.a.b", false }, { "a.*.b", "a.a.b", true }, { "*.b.#", "a.a.b", false },
	{ "a.*.#", "a.a.b", true }, { "#.*", "a.a.b", true }, { "*.#", "a.a.b", true },
	{ "#.*.#", "a.a.b", true }, { "a.#.#.b", "a.a.b", true }, { ".", "a.a.b", false },
	{ "a.", "a.a.b", false }, { ".a", "a.a.b", false }, { "#.", "a.a.b", false },
	{ ".#", "a.a.b", false }, { "*.", "a.a.b", false }, { "a.b.c", "a.a.b", false },
	{ "#.b.#", "a.a.b", true }, { "a.#.*", "a.a.b", true }, { "#.#.a", "a.a.b", false },
	{ "a*b", "a.a.b", false }, { "a.#b", "a.a.b", false }, { "##", "a.a.b", false },
	{ "*a", "a.a.b", false },
	/* Beyond RabbitMQ's table: long keys and many wildcards. */
	{ "#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.z", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z", true },
	{ "#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.z", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.y", false },
	{ "*.*.*.#", "a.b", false },
	{ "*.*.*.#", "a.b.c", true },
	{ "a.#.b.#.c", "a.b.c", true },
	{ "a.#.b.#.c", "a.c.b", false },
	{ "a.#.b.#.c", "a.x.b.y.b.z.c", true },
};

static void test_topic_table(void **state)
{
	(void)state;
	size_t n = sizeof topic_cases / sizeof topic_cases[0];
	for (size_t i = 0; i < n; i++) {
		bool got = exchange_topic_match(S(topic_cases[i].binding), S(topic_cases[i].key));
		if (got != topic_cases[i].match)
			fail_msg("binding '%s' key '%s': got %d, RabbitMQ says %d",
				 topic_cases[i].binding, topic_cases[i].key, got, topic_cases[i].match);
	}
}

/* The longest keys (255 bytes: 128 words) work and take no time. */
static void test_topic_long_keys(void **state)
{
	(void)state;
	char key[256], pat[256];
	for (int i = 0; i < 255; i++) {
		key[i] = i % 2 ? '.' : 'a';
		pat[i] = i % 2 ? '.' : '#';
	}
	key[255] = pat[255] = 0;
	assert_int_equal(strlen(key), 255);
	assert_true(exchange_topic_match(S(pat), S(key)));
	pat[254] = '*';
	assert_true(exchange_topic_match(S(pat), S(key)));
	key[254] = 'b';
	pat[254] = 'a';
	assert_false(exchange_topic_match(S(pat), S(key)));
	char big[300];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_false(exchange_topic_match(S("#"), S(big)) && strlen(big) > 255 &&
		     exchange_topic_match(S(big), S(big)));
}

/* ---- headers matching ---- */

static const struct {
	const char *args, *headers; /* headers NULL: the message has none */
	bool match;
} header_cases[] = {
	{ "x-match=Sall;a=I1", "a=I1", true },
	{ "x-match=Sall;a=I1", "a=BI", false },
	{ "x-match=Sall;a=I1", "a=B1", false },      /* bool is not an integer */
	{ "x-match=Sall;a=I1", "a=F1", true },       /* 1 == 1.0 */
	{ "x-match=Sall;a=I1", "a=F1.5", false },
	{ "x-match=Sall;a=I1", "", false },
	{ "x-match=Sall;a=I1", NULL, false },
	{ "x-match=Sany;a=I1;b=Sx", "a=I1", true },
	{ "x-match=Sany;a=I1;b=Sx", "b=Sx", true },
	{ "x-match=Sany;a=I1;b=Sx", "a=B1", false },
	{ "a=I1;b=Sx", "a=I1;b=Sx", true },           /* no x-match: all */
	{ "a=I1;b=Sx", "a=I1", false },
	{ "x-match=Sall", NULL, true },               /* nothing to check: all holds */
	{ "x-match=Sall", "a=I1", true },
	{ "x-match=Sany", "a=I1", false },            /* nothing matched */
	{ "x-match=Sall;a=V", "a=I1", true },         /* void: presence only */
	{ "x-match=Sall;a=V", "a=V", true },
	{ "x-match=Sall;a=V", "b=I1", false },
	{ "x-match=Sall;x-k=Sv", "a=I1", true },      /* x- keys ignored */
	{ "x-match=Sall-with-x;x-k=Sv", "a=B1", false },
	{ "x-match=Sall-with-x;x-k=Sv", "x-k=Sv", true },
	{ "x-match=Sany-with-x;x-k=Sv;a=I2", "x-k=Sv", true },
	{ "x-match=Sany-with-x;x-k=Sv;a=I2", "a=I2", true },
	{ "x-match=Sany-with-x;x-k=Sv;a=I2", "a=B1", false },
	{ "x-match=Sall;a=B1", "a=B1", true },
	{ "x-match=Sall;a=B1", "a=I1", false },
	{ "x-match=Sall;a=Sx", "a=Sx", true },
	{ "x-match=Sall;a=Sx", "a=Sy", false },
	{ "x-match=Sall;a=I1099511627776", "a=I1099511627776", true },
	{ "x-match=Sall;a=Ftab", "a=Ftab", true },    /* other types: same tag and bytes */
	{ "x-match=Sall;a=Ftab", "a=Atab", false },
	{ "x-match=Sall;a=I1;b=I2", "b=I2;a=I1;c=I3", true },
};

static void test_headers_table(void **state)
{
	(void)state;
	size_t n = sizeof header_cases / sizeof header_cases[0];
	for (size_t i = 0; i < n; i++) {
		bool got = exchange_headers_match(&test_ops, S(header_cases[i].args),
						  header_cases[i].headers);
		if (got != header_cases[i].match)
			fail_msg("args '%s' headers '%s': got %d, want %d", header_cases[i].args,
				 header_cases[i].headers ? header_cases[i].headers : "(none)", got,
				 header_cases[i].match);
	}
}

/* ---- the table ---- */

static struct exchange_info info_of(enum exchange_type type, bool durable)
{
	return (struct exchange_info){ .type = type, .durable = durable };
}

static struct exchange_binding qbind(const char *src, const char *queue, const char *key)
{
	return (struct exchange_binding){
		.source = S(src), .dest_kind = EXCHANGE_DEST_QUEUE, .destination = S(queue),
		.routing_key = S(key), .args = S(""),
	};
}

static struct exchange_binding xbind(const char *src, const char *dest, const char *key)
{
	return (struct exchange_binding){
		.source = S(src), .dest_kind = EXCHANGE_DEST_EXCHANGE, .destination = S(dest),
		.routing_key = S(key), .args = S(""),
	};
}

static int bind(struct exchange_table *t, struct exchange_binding b)
{
	char err[256];
	return exchange_bind(t, &b, NULL, err, sizeof err);
}

/* Routes and returns the queue names as "a,b,c" (sorted, distinct). */
static const char *route(struct exchange_table *t, const char *x, const char *key,
			 const char *headers)
{
	static char out[1024];
	struct exchange_dests d;
	exchange_dests_init(&d);
	int rc = exchange_route(t, S(x), S(key), headers, &d);
	if (rc) {
		snprintf(out, sizeof out, "%s", rc == -ERR_NOT_FOUND ? "not found"
						: rc == -ERR_INVALID ? "invalid" : "error");
	} else {
		out[0] = 0;
		for (size_t i = 0; i < d.n; i++)
			snprintf(out + strlen(out), sizeof out - strlen(out), "%s%.*s", i ? "," : "",
				 (int)d.names[i].len, (const char *)d.names[i].data);
	}
	exchange_dests_fini(&d);
	return out;
}

static void test_predeclared(void **state)
{
	(void)state;
	struct exchange_table *t;
	assert_int_equal(exchange_table_new(NULL, NULL, &test_ops, &t), 0);
	struct exchange_info info;
	const char *names[] = { "", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match" };
	const enum exchange_type types[] = { EXCHANGE_DIRECT, EXCHANGE_DIRECT, EXCHANGE_FANOUT,
					     EXCHANGE_TOPIC, EXCHANGE_HEADERS, EXCHANGE_HEADERS };
	for (int i = 0; i < 6; i++) {
		assert_int_equal(exchange_lookup(t, S(names[i]), &info), 0);
		assert_int_equal(info.type, types[i]);
		assert_true(info.durable);
	}
	/* The default exchange routes to the queue named by the key; the caller
	 * checks it exists. It cannot be declared, deleted or bound. */
	assert_string_equal(route(t, "", "orders", NULL), "orders");
	struct exchange_info d = info_of(EXCHANGE_DIRECT, true);
	assert_int_equal(exchange_declare(t, S(""), &d, S(""), NULL, NULL), -ERR_INVALID);
	assert_int_equal(exchange_delete(t, S(""), false), -ERR_INVALID);
	assert_int_equal(bind(t, qbind("", "q", "k")), -ERR_INVALID);
	/* amq.* is reserved: not created, not deleted; re-declaring an existing one is fine. */
	assert_int_equal(exchange_declare(t, S("amq.new"), &d, S(""), NULL, NULL), -ERR_INVALID);
	assert_int_equal(exchange_delete(t, S("amq.direct"), false), -ERR_INVALID);
	bool created = true;
	assert_int_equal(exchange_declare(t, S("amq.direct"), &d, S(""), &created, NULL), 0);
	assert_false(created);
	assert_int_equal(exchange_lookup(t, S("nope"), NULL), -ERR_NOT_FOUND);
	assert_string_equal(route(t, "nope", "k", NULL), "not found");
	exchange_table_free(t);
}

static void test_declare_equivalence(void **state)
{
	(void)state;
	struct exchange_table *t;
	assert_int_equal(exchange_table_new(NULL, NULL, &test_ops, &t), 0);
	struct exchange_info topic = info_of(EXCHANGE_TOPIC, false), seen;
	bool created = false;
	assert_int_equal(exchange_declare(t, S("logs"), &topic, S(""), &created, NULL), 0);
	assert_true(created);
	assert_int_equal(exchange_declare(t, S("logs"), &topic, S(""), &created, NULL), 0);
	assert_false(created);
	struct exchange_info fan = info_of(EXCHANGE_FANOUT, false);
	assert_int_equal(exchange_declare(t, S("logs"), &fan, S(""), NULL, &seen), -ERR_EXISTS);
	assert_int_equal(seen.type, EXCHANGE_TOPIC);
	struct exchange_info durable = info_of(EXCHANGE_TOPIC, true);
	assert_int_equal(exchange_declare(t, S("logs"), &durable, S(""), NULL, &seen), -ERR_EXISTS);
	assert_false(seen.durable);
	struct exchange_info ad = topic;
	ad.auto_delete = true;
	assert_int_equal(exchange_declare(t, S("logs"), &ad, S(""), NULL, NULL), -ERR_EXISTS);
	struct exchange_info in = topic;
	in.internal = true;
	assert_int_equal(exchange_declare(t, S("logs"), &in, S(""), NULL, NULL), -ERR_EXISTS);
	/* Internal exchanges refuse publishes but are reachable through other exchanges. */
	assert_int_equal(exchange_declare(t, S("inner"), &(struct exchange_info){ .type = EXCHANGE_FANOUT, .internal = true },
					  S(""), NULL, NULL), 0);
	assert_string_equal(route(t, "inner", "k", NULL), "invalid");
	assert_int_equal(bind(t, qbind("inner", "q-inner", "")), 0);
	assert_int_equal(bind(t, xbind("logs", "inner", "#")), 0);
	assert_string_equal(route(t, "logs", "a.b", NULL), "q-inner");
	/* Names are bytes: NUL and UTF-8 are distinct names. */
	struct slice weird = { (const uint8_t *)"a\0b", 3 };
	assert_int_equal(exchange_declare(t, weird, &topic, S(""), &created, NULL), 0);
	assert_true(created);
	assert_int_equal(exchange_lookup(t, S("a"), NULL), -ERR_NOT_FOUND);
	assert_int_equal(exchange_lookup(t, weird, NULL), 0);
	exchange_table_free(t);
}

static void test_route_types(void **state)
{
	(void)state;
	struct exchange_table *t;
	assert_int_equal(exchange_table_new(NULL, NULL, &test_ops, &t), 0);
	/* direct */
	assert_int_equal(bind(t, qbind("amq.direct", "q1", "red")), 0);
	assert_int_equal(bind(t, qbind("amq.direct", "q2", "red")), 0);
	assert_int_equal(bind(t, qbind("amq.direct", "q2", "blue")), 0);
	assert_int_equal(bind(t, qbind("amq.direct", "q2", "blue")), 0); /* again: no-op */
	assert_int_equal(exchange_binding_count(t, S("amq.direct")), 3);
	assert_string_equal(route(t, "amq.direct", "red", NULL), "q1,q2");
	assert_string_equal(route(t, "amq.direct", "blue", NULL), "q2");
	assert_string_equal(route(t, "amq.direct", "green", NULL), "");
	assert_string_equal(route(t, "amq.direct", "", NULL), "");
	/* fanout ignores keys */
	assert_int_equal(bind(t, qbind("amq.fanout", "f2", "x")), 0);
	assert_int_equal(bind(t, qbind("amq.fanout", "f1", "")), 0);
	assert_string_equal(route(t, "amq.fanout", "anything", NULL), "f1,f2");
	/* topic: several bindings to one queue give it once */
	assert_int_equal(bind(t, qbind("amq.topic", "eu", "eu.#")), 0);
	assert_int_equal(bind(t, qbind("amq.topic", "eu", "*.orders")), 0);
	assert_int_equal(bind(t, qbind("amq.topic", "all", "#")), 0);
	assert_string_equal(route(t, "amq.topic", "eu.orders", NULL), "all,eu");
	assert_string_equal(route(t, "amq.topic", "us.orders", NULL), "all,eu");
	assert_string_equal(route(t, "amq.topic", "us.payments", NULL), "all");
	/* headers */
	struct exchange_binding h = qbind("amq.headers", "pdf", "");
	h.args = S("x-match=Sall;format=Spdf;type=Sreport");
	assert_int_equal(bind(t, h), 0);
	h = qbind("amq.headers", "any", "");
	h.args = S("x-match=Sany;format=Spdf;type=Sreport");
	assert_int_equal(bind(t, h), 0);
	assert_string_equal(route(t, "amq.headers", "", "format=Spdf;type=Sreport"), "any,pdf");
	assert_string_equal(route(t, "amq.headers", "", "format=Spdf"), "any");
	assert_string_equal(route(t, "amq.headers", "", NULL), "");
	/* unbind: only the equal binding (arguments too) */
	struct exchange_binding u = qbind("amq.direct", "q2", "red");
	assert_int_equal(exchange_unbind(t, &u), 0);
	assert_int_equal(exchange_unbind(t, &u), -ERR_NOT_FOUND);
	assert_string_equal(route(t, "amq.direct", "red", NULL), "q1");
	h.args = S("x-match=Sany;format=Spdf");
	assert_int_equal(exchange_unbind(t, &h), -ERR_NOT_FOUND);
	/* a deleted queue loses every binding */
	assert_int_equal(exchange_unbind_queue(t, S("eu")), 2);
	assert_string_equal(route(t, "amq.topic", "eu.orders", NULL), "all");
	exchange_table_free(t);
}

static void test_xmatch_validation(void **state)
{
	(void)state;
	struct exchange_table *t;
	assert_int_equal(exchange_table_new(NULL, NULL, &test_ops, &t), 0);
	char err[256];
	struct exchange_binding h = qbind("amq.match", "q", "");
	h.args = S("x-match=Ssome");
	assert_int_equal(exchange_bind(t, &h, NULL, err, sizeof err), -ERR_INVALID);
	assert_non_null(strstr(err, "Invalid x-match field value"));
	h.args = S("x-match=I1");
	assert_int_equal(exchange_bind(t, &h, NULL, err, sizeof err), -ERR_INVALID);
	assert_non_null(strstr(err, "Invalid x-match field type"));
	h.args = S("x-match=Sany-with-x");
	assert_int_equal(exchange_bind(t, &h, NULL, err, sizeof err), 0);
	/* Other exchange types do not look at x-match. */
	struct exchange_binding d = qbind("amq.direct", "q", "k");
	d.args = S("x-match=Ssome");
	assert_int_equal(exchange_bind(t, &d, NULL, err, sizeof err), 0);
	exchange_table_free(t);
}

/* Exchange-to-exchange bindings: cycles end, every queue is given once. */
static void test_e2e_cycles(void **state)
{
	(void)state;
	struct exchange_table *t;
	assert_int_equal(exchange_table_new(NULL, NULL, &test_ops, &t), 0);
	struct exchange_info fan = info_of(EXCHANGE_FANOUT, false);
	struct exchange_info topic = info_of(EXCHANGE_TOPIC, false);
	assert_int_equal(exchange_declare(t, S("a"), &fan, S(""), NULL, NULL), 0);
	assert_int_equal(exchange_declare(t, S("b"), &fan, S(""), NULL, NULL), 0);
	assert_int_equal(exchange_declare(t, S("c"), &topic, S(""), NULL, NULL), 0);
	assert_int_equal(bind(t, xbind("a", "b", "")), 0);
	assert_int_equal(bind(t, xbind("b", "c", "")), 0);
	assert_int_equal(bind(t, xbind("c", "a", "#")), 0); /* a -> b -> c -> a */
	assert_int_equal(bind(t, xbind("a", "a", "")), 0);  /* and a self loop */
	assert_int_equal(bind(t, qbind("a", "qa", "")), 0);
	assert_int_equal(bind(t, qbind("b", "qb", "")), 0);
	assert_int_equal(bind(t, qbind("b", "qa", "")), 0);
	assert_int_equal(bind(t, qbind("c", "qc", "x.*")), 0);
	assert_string_equal(route(t, "a", "x.y", NULL), "qa,qb,qc");
	assert_string_equal(route(t, "b", "x.y", NULL), "qa,qb,qc");
	assert_string_equal(route(t, "c", "x.y", NULL), "qa,qb,qc");
	assert_string_equal(route(t, "c", "y", NULL), "qa,qb"); /* c's binding to a matches "#" */
	/* A missing destination exchange is reported as such. */
	char err[64];
	bool missing = false;
	struct exchange_binding nb = xbind("a", "nope", "");
	assert_int_equal(exchange_bind(t, &nb, &missing, err, sizeof err), -ERR_NOT_FOUND);
	assert_true(missing);
	nb = xbind("nope", "a", "");
	assert_int_equal(exchange_bind(t, &nb, &missing, err, sizeof err), -ERR_NOT_FOUND);
	assert_false(missing);
	/* Deleting b removes a->b and b's bindings; the cycle is broken. */
	assert_int_equal(exchange_delete(t, S("b"), true), -ERR_EXISTS); /* if-unused: in use */
	assert_int_equal(exchange_delete(t, S("b"), false), 0);
	assert_int_equal(exchange_delete(t, S("b"), false), -ERR_NOT_FOUND);
	assert_string_equal(route(t, "a", "x.y", NULL), "qa");
	assert_string_equal(route(t, "c", "x.y", NULL), "qa,qc");
	assert_int_equal(exchange_binding_count(t, S("a")), 2); /* a->a, a->qa */
	/* A long chain of 100 exchanges. */
	char name[32], prev[32] = "c";
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "chain%d", i);
		assert_int_equal(exchange_declare(t, S(name), &fan, S(""), NULL, NULL), 0);
		assert_int_equal(bind(t, xbind(prev, name, "#")), 0);
		strcpy(prev, name);
	}
	assert_int_equal(bind(t, qbind(prev, "end", "")), 0);
	assert_int_equal(bind(t, xbind(prev, "a", "")), 0);
	assert_string_equal(route(t, "c", "z", NULL), "end,qa");
	exchange_table_free(t);
}

static void test_auto_delete(void **state)
{
	(void)state;
	struct exchange_table *t;
	assert_int_equal(exchange_table_new(NULL, NULL, &test_ops, &t), 0);
	struct exchange_info ad = { .type = EXCHANGE_DIRECT, .auto_delete = true };
	struct exchange_info fan = info_of(EXCHANGE_FANOUT, false);
	assert_int_equal(exchange_declare(t, S("tmp"), &ad, S(""), NULL, NULL), 0);
	assert_int_equal(exchange_declare(t, S("up"), &ad, S(""), NULL, NULL), 0);
	assert_int_equal(exchange_declare(t, S("other"), &fan, S(""), NULL, NULL), 0);
	/* Never bound: stays. */
	assert_int_equal(exchange_lookup(t, S("tmp"), NULL), 0);
	assert_int_equal(bind(t, qbind("tmp", "q1", "a")), 0);
	assert_int_equal(bind(t, qbind("tmp", "q2", "a")), 0);
	assert_int_equal(bind(t, xbind("up", "tmp", "k")), 0);
	assert_int_equal(bind(t, xbind("other", "tmp", "")), 0);
	struct exchange_binding b = qbind("tmp", "q1", "a");
	assert_int_equal(exchange_unbind(t, &b), 0);
	assert_int_equal(exchange_lookup(t, S("tmp"), NULL), 0);
	/* Its last binding goes with the queue: tmp goes, then up (whose only
	 * binding led to tmp); other is not auto-delete and stays. */
	assert_int_equal(exchange_unbind_queue(t, S("q2")), 1);
	assert_int_equal(exchange_lookup(t, S("tmp"), NULL), -ERR_NOT_FOUND);
	assert_int_equal(exchange_lookup(t, S("up"), NULL), -ERR_NOT_FOUND);
	assert_int_equal(exchange_lookup(t, S("other"), NULL), 0);
	assert_int_equal(exchange_binding_count(t, S("other")), 0);
	exchange_table_free(t);
}

/* ---- persistence ---- */

static void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			unlink(p);
		}
	}
	closedir(d);
	rmdir(dir);
}

static void test_persistence(void **state)
{
	(void)state;
	char dir[] = "/tmp/sluice-exchange-XXXXXX", path[128];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/catalog.db", dir);
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct catalog *cat;
	assert_int_equal(catalog_open(path, &cat), 0);
	struct catalog_queue cq = { .name = S("dq"), .durable = true };
	assert_int_equal(catalog_queue_create(cat, &cq), 0);

	struct exchange_table *t;
	assert_int_equal(exchange_table_new(cat, &lock, &test_ops, &t), 0);
	struct exchange_info dur = info_of(EXCHANGE_TOPIC, true);
	dur.auto_delete = true;
	struct exchange_info fan = info_of(EXCHANGE_FANOUT, true);
	struct exchange_info tr = info_of(EXCHANGE_DIRECT, false);
	assert_int_equal(exchange_declare(t, S("orders"), &dur, S("args"), NULL, NULL), 0);
	assert_int_equal(exchange_declare(t, S("audit"), &fan, S(""), NULL, NULL), 0);
	assert_int_equal(exchange_declare(t, S("gone"), &fan, S(""), NULL, NULL), 0);
	assert_int_equal(exchange_declare(t, S("transient"), &tr, S(""), NULL, NULL), 0);
	struct exchange_binding b = qbind("orders", "dq", "eu.#");
	b.dest_durable = true;
	assert_int_equal(bind(t, b), 0);
	b = qbind("amq.direct", "dq", "k"); /* predeclared source, durable queue */
	b.dest_durable = true;
	assert_int_equal(bind(t, b), 0);
	assert_int_equal(bind(t, qbind("orders", "tq", "#")), 0);      /* transient queue */
	assert_int_equal(bind(t, xbind("orders", "audit", "*.x")), 0); /* durable e2e */
	assert_int_equal(bind(t, xbind("orders", "transient", "")), 0);
	assert_int_equal(bind(t, xbind("gone", "audit", "")), 0);
	b = qbind("audit", "dq", "");
	b.dest_durable = true;
	assert_int_equal(bind(t, b), 0);
	assert_int_equal(exchange_delete(t, S("gone"), false), 0);
	exchange_table_free(t);

	/* Reopen: durable exchanges and bindings between durable things are back. */
	assert_int_equal(exchange_table_new(cat, &lock, &test_ops, &t), 0);
	struct exchange_info info;
	assert_int_equal(exchange_lookup(t, S("orders"), &info), 0);
	assert_int_equal(info.type, EXCHANGE_TOPIC);
	assert_true(info.durable);
	assert_true(info.auto_delete);
	assert_int_equal(exchange_lookup(t, S("transient"), NULL), -ERR_NOT_FOUND);
	assert_int_equal(exchange_lookup(t, S("gone"), NULL), -ERR_NOT_FOUND);
	assert_int_equal(exchange_lookup(t, S("amq.topic"), NULL), 0);
	assert_int_equal(exchange_binding_count(t, S("orders")), 2); /* eu.# and audit */
	assert_string_equal(route(t, "orders", "eu.x", NULL), "dq");
	assert_string_equal(route(t, "orders", "us.y", NULL), "");
	assert_string_equal(route(t, "amq.direct", "k", NULL), "dq");
	struct catalog_exchange cx;
	assert_int_equal(catalog_exchange_get(cat, S("orders"), &cx), 0);
	assert_int_equal(cx.arguments.len, 4);
	assert_memory_equal(cx.arguments.data, "args", 4);
	catalog_exchange_fini(&cx);
	/* Unbinding durable bindings updates the catalog; the auto-delete source
	 * losing its last binding is deleted from it too. */
	b = qbind("orders", "dq", "eu.#");
	assert_int_equal(exchange_unbind(t, &b), 0);
	b = xbind("orders", "audit", "*.x");
	assert_int_equal(exchange_unbind(t, &b), 0);
	assert_int_equal(exchange_lookup(t, S("orders"), NULL), -ERR_NOT_FOUND);
	assert_int_equal(catalog_exchange_get(cat, S("orders"), &cx), -ERR_NOT_FOUND);
	exchange_table_free(t);
	assert_int_equal(exchange_table_new(cat, &lock, &test_ops, &t), 0);
	assert_int_equal(exchange_lookup(t, S("orders"), NULL), -ERR_NOT_FOUND);
	assert_string_equal(route(t, "audit", "", NULL), "dq");
	exchange_table_free(t);
	catalog_close(cat);
	rm_rf(dir);
}

/* ---- threads: routing while bindings change ---- */

struct race {
	struct exchange_table *t;
	_Atomic int done;
};

#define RACE_ROUTES 20000

static void *router(void *arg)
{
	struct race *r = arg;
	struct exchange_dests d;
	exchange_dests_init(&d);
	for (int n = 0; n < RACE_ROUTES; n++) {
		assert_int_equal(exchange_route(r->t, S("amq.topic"), S("a.b.c"), NULL, &d), 0);
		/* "stable" is never unbound, so it is always there */
		bool found = false;
		for (size_t i = 0; i < d.n; i++)
			found |= d.names[i].len == 6 && memcmp(d.names[i].data, "stable", 6) == 0;
		assert_true(found);
	}
	exchange_dests_fini(&d);
	r->done++;
	return NULL;
}

/* Two threads route while this one binds and unbinds (run under TSan too). */
static void test_concurrent_routing(void **state)
{
	(void)state;
	struct race r = { 0 };
	assert_int_equal(exchange_table_new(NULL, NULL, &test_ops, &r.t), 0);
	assert_int_equal(bind(r.t, qbind("amq.topic", "stable", "a.#")), 0);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, router, &r), 0);
	char q[32];
	long changes = 0;
	for (int i = 0; i < 1 || r.done < 2; i++, changes++) {
		snprintf(q, sizeof q, "q%d", i % 50);
		struct exchange_binding b = qbind("amq.topic", q, i % 2 ? "*.b.*" : "#");
		assert_int_equal(bind(r.t, b), 0);
		if (i % 3 == 0)
			exchange_unbind_queue(r.t, S(q));
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_true(changes > 0);
	exchange_table_free(r.t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topic_table),
		cmocka_unit_test(test_topic_long_keys),
		cmocka_unit_test(test_headers_table),
		cmocka_unit_test(test_predeclared),
		cmocka_unit_test(test_declare_equivalence),
		cmocka_unit_test(test_route_types),
		cmocka_unit_test(test_xmatch_validation),
		cmocka_unit_test(test_e2e_cycles),
		cmocka_unit_test(test_auto_delete),
		cmocka_unit_test(test_persistence),
		cmocka_unit_test(test_concurrent_routing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
