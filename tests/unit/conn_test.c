/*
 * conn_test.c - nbxd's check for a TCP socket joined to itself
 * (daemon/conn.c).  Real sockets on loopback: a socket bound to a port
 * and then dialling that same port connects to itself (TCP simultaneous
 * open), which is what a node dialling an idle port of its own host can
 * meet by chance.
 */
#include <criterion/criterion.h>

#include <string.h>
#include <uv.h>

#include "node_int.h"

struct dial {
	uv_loop_t loop;
	uv_tcp_t listener, server, client;
	uv_connect_t req;
	int status;
	int done;
};

static void
on_dialled(uv_connect_t *req, int status)
{
	struct dial *d = req->data;

	d->status = status;
	d->done = 1;
}

static void
on_incoming(uv_stream_t *s, int status)
{
	struct dial *d = s->data;

	cr_assert_eq(status, 0);
	cr_assert_eq(uv_tcp_init(&d->loop, &d->server), 0);
	cr_assert_eq(uv_accept(s, (uv_stream_t *)&d->server), 0);
}

/* A loop with the client socket, not yet bound or connected. */
static void
dial_init(struct dial *d)
{
	memset(d, 0, sizeof(*d));
	cr_assert_eq(uv_loop_init(&d->loop), 0);
	cr_assert_eq(uv_tcp_init(&d->loop, &d->client), 0);
}

static void
bind_loopback(uv_tcp_t *t, struct sockaddr_in *got)
{
	struct sockaddr_in any;
	int len = sizeof(*got);

	cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &any), 0);
	cr_assert_eq(uv_tcp_bind(t, (const struct sockaddr *)&any, 0), 0);
	cr_assert_eq(uv_tcp_getsockname(t, (struct sockaddr *)got, &len), 0);
}

static void
dial(struct dial *d, const struct sockaddr_in *to)
{
	int turns;

	d->req.data = d;
	cr_assert_eq(uv_tcp_connect(&d->req, &d->client,
	    (const struct sockaddr *)to, on_dialled), 0);
	for (turns = 0; !d->done && turns < 1000; turns++)
		uv_run(&d->loop, UV_RUN_ONCE);
	cr_assert(d->done, "the connection never settled");
}

static void
close_one(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void
close_all(struct dial *d)
{
	uv_walk(&d->loop, close_one, NULL);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&d->loop), 0);
}

Test(conn, a_socket_dialling_its_own_port_is_seen_joined_to_itself)
{
	struct dial d;
	struct sockaddr_in self;

	dial_init(&d);
	bind_loopback(&d.client, &self);
	cr_assert_not(conn__self_connected(&d.client),
	    "a socket that is not connected is not joined to itself");
	dial(&d, &self);
	cr_assert_eq(d.status, 0, "self-connect failed: %s",
	    uv_strerror(d.status));
	cr_assert(conn__self_connected(&d.client));
	close_all(&d);
}

Test(conn, a_socket_connected_to_a_listener_is_not_joined_to_itself)
{
	struct dial d;
	struct sockaddr_in at;

	dial_init(&d);
	cr_assert_eq(uv_tcp_init(&d.loop, &d.listener), 0);
	bind_loopback(&d.listener, &at);
	d.listener.data = &d;
	cr_assert_eq(uv_listen((uv_stream_t *)&d.listener, 4, on_incoming), 0);
	dial(&d, &at);
	cr_assert_eq(d.status, 0);
	cr_assert_not(conn__self_connected(&d.client));
	close_all(&d);
}
