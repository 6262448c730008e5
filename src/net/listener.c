/*
 * listener.c: one SO_REUSEPORT listening socket per loop thread.
 *
 * libuv has no SO_REUSEPORT flag, so each loop creates the socket itself, sets
 * the options, binds, and hands the bound fd to libuv with uv_tcp_open before
 * uv_listen. Every step runs on the loop's own thread (loop_call), so each
 * handle is created, used and closed by its owner only. With port 0 the first
 * socket picks the port and the others bind the same one.
 */
#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/diag.h"
#include "core/err.h"

#define LISTENER_BACKLOG 1024

struct listener_sock {
	struct listener *l;
	struct loop *loop;
	uv_tcp_t tcp;
	int open; /* tcp was initialized: it must be closed */
};

struct listener {
	struct loop_group *group;
	const struct net_proto *proto;
	void *proto_ctx;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int port;
	char address[INET6_ADDRSTRLEN + 16];
	int n;
	struct listener_sock *socks;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int closing; /* socket handles whose close callback has not run */
};

/* Parses an IP literal (brackets allowed around IPv6) and port into l->addr. */
static int parse_address(struct listener *l, const char *host, int port)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof buf) {
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
	} else if (len < sizeof buf) {
		memcpy(buf, host, len + 1);
	} else {
		return -ERR_INVALID;
	}
	memset(&l->addr, 0, sizeof l->addr);
	struct sockaddr_in *a4 = (struct sockaddr_in *)&l->addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&l->addr;
	if (inet_pton(AF_INET, buf, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		l->addrlen = sizeof *a4;
	} else if (inet_pton(AF_INET6, buf, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		l->addrlen = sizeof *a6;
	} else {
		return -ERR_INVALID;
	}
	return 0;
}

static void set_port(struct listener *l, int port)
{
	l->port = port;
	char ip[INET6_ADDRSTRLEN] = "?";
	if (l->addr.ss_family == AF_INET) {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&l->addr;
		a4->sin_port = htons((uint16_t)port);
		inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof ip);
		snprintf(l->address, sizeof l->address, "%s:%d", ip, port);
	} else {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&l->addr;
		a6->sin6_port = htons((uint16_t)port);
		inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof ip);
		snprintf(l->address, sizeof l->address, "[%s]:%d", ip, port);
	}
}

/* Opens a socket on the listener's address; returns the fd or -errno. */
static int bind_socket(const struct listener *l, int reuseport)
{
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
	    bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener_sock *s = server->data;
	if (status < 0) {
		diag_warn("net", "%s: accept on %s: %s", s->l->proto->name, s->l->address,
			  uv_strerror(status));
		return;
	}
	conn_accept(s->loop, server, s->l->proto, s->l->proto_ctx);
}

struct start_ctx {
	struct listener_sock *s;
	int err;
	const char *step;
};

/* On the socket's loop: socket, options, bind, uv_tcp_open, uv_listen. */
static void start_on_loop(void *arg)
{
	struct start_ctx *x = arg;
	struct listener_sock *s = x->s;
	struct listener *l = s->l;
	x->step = "bind";
	int fd = bind_socket(l, 1);
	if (fd < 0) {
		x->err = fd;
		return;
	}
	if (l->port == 0) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
			x->err = -errno;
			x->step = "getsockname";
			close(fd);
			return;
		}
		int port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
						   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		set_port(l, port);
	}
	uv_tcp_init(loop_uv(s->loop), &s->tcp);
	s->tcp.data = s;
	s->open = 1;
	x->step = "uv_tcp_open";
	x->err = uv_tcp_open(&s->tcp, fd);
	if (x->err != 0) {
		close(fd);
		return;
	}
	x->step = "listen";
	x->err = uv_listen((uv_stream_t *)&s->tcp, LISTENER_BACKLOG, on_connection);
}

static void sock_closed_cb(uv_handle_t *h)
{
	struct listener_sock *s = h->data;
	struct listener *l = s->l;
	pthread_mutex_lock(&l->mu);
	l->closing--;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

static void stop_on_loop(void *arg)
{
	struct listener_sock *s = arg;
	uv_close((uv_handle_t *)&s->tcp, sock_closed_cb);
}

/* Closes every open socket handle, waits for their close callbacks, frees l. */
static void listener_free(struct listener *l)
{
	for (int i = 0; i < l->n; i++) {
		struct listener_sock *s = &l->socks[i];
		if (!s->open)
			continue;
		pthread_mutex_lock(&l->mu);
		l->closing++;
		pthread_mutex_unlock(&l->mu);
		if (loop_call(s->loop, stop_on_loop, s) != 0) {
			/* The loop already stopped: its final walk closed the handle. */
			pthread_mutex_lock(&l->mu);
			l->closing--;
			pthread_mutex_unlock(&l->mu);
		}
	}
	pthread_mutex_lock(&l->mu);
	while (l->closing > 0)
		pthread_cond_wait(&l->cv, &l->mu);
	pthread_mutex_unlock(&l->mu);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l->socks);
	free(l);
}

int listener_start(struct loop_group *g, const char *host, int port,
		   const struct net_proto *proto, void *proto_ctx, struct listener **out,
		   char *errbuf, size_t errlen)
{
	if (port < 0 || port > 65535) {
		snprintf(errbuf, errlen, "cannot listen on %s:%d: port out of range", host, port);
		return -ERR_INVALID;
	}
	struct listener *l = calloc(1, sizeof *l);
	if (l == NULL) {
		snprintf(errbuf, errlen, "cannot listen on %s:%d: out of memory", host, port);
		return -ERR_NOMEM;
	}
	l->group = g;
	l->proto = proto;
	l->proto_ctx = proto_ctx;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	l->socks = calloc((size_t)loop_group_size(g), sizeof *l->socks);
	if (l->socks == NULL) {
		listener_free(l);
		snprintf(errbuf, errlen, "cannot listen on %s:%d: out of memory", host, port);
		return -ERR_NOMEM;
	}
	if (parse_address(l, host, port) != 0) {
		listener_free(l);
		snprintf(errbuf, errlen,
			 "cannot listen on %s:%d: host must be an IPv4 or IPv6 address literal",
			 host, port);
		return -ERR_INVALID;
	}
	set_port(l, port);
	if (port != 0) {
		/* A plain socket conflicts with any listener, even a REUSEPORT one. */
		int fd = bind_socket(l, 0);
		if (fd < 0) {
			snprintf(errbuf, errlen, "cannot listen on %s: %s", l->address, err_str(fd));
			listener_free(l);
			return fd;
		}
		close(fd);
	}
	l->n = loop_group_size(g);
	for (int i = 0; i < l->n; i++) {
		struct listener_sock *s = &l->socks[i];
		s->l = l;
		s->loop = loop_group_get(g, i);
		struct start_ctx x = { .s = s, .err = 0, .step = "post" };
		int rc = loop_call(s->loop, start_on_loop, &x);
		if (rc == 0)
			rc = x.err;
		if (rc != 0) {
			snprintf(errbuf, errlen, "cannot listen on %s: %s: %s", l->address, x.step,
				 err_str(rc));
			listener_free(l);
			return rc;
		}
	}
	*out = l;
	return 0;
}

void listener_stop(struct listener *l)
{
	if (l != NULL)
		listener_free(l);
}

int listener_port(const struct listener *l)
{
	return l->port;
}

const char *listener_address(const struct listener *l)
{
	return l->address;
}
