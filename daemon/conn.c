/*
 * conn.c - the peer connections: TCP from libuv, TLS 1.3 over memory BIOs,
 * and the sync session once the peer's certificate has been checked; each
 * loop turn's share of reading and pumping among them.  It only moves
 * bytes: socket -> TLS -> session (which commits to the store)
 * -> TLS -> socket.  Not one plaintext byte is handed to the session, or
 * taken from it, before the handshake and identity check succeeded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>


#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

#define WRITE_CHUNK	(256u << 10)	/* plaintext per tls_conn_write */
#define DUPLICATE	"duplicate connection"
#define CONN_HANDSHAKE_MS	10000	/* give up on a silent handshake */
#define CONN_WQ_MAX		(8u << 20)	/* bytes queued in libuv */
#define CONN_READ_CHUNK		(64u << 10)
#define CONN_RX_TURN		(512u << 10)	/* bytes received per loop turn */
#define CONN_PUMP_TURN		1	/* batches made per loop turn */
#define CONN_STABLE_MS		10000	/* a session this old resets backoff */
/* no protocol version in common: redial this much later (an upgrade
   or a config change on either side is what can end it) */
#define CONN_VERSION_BACKOFF_MS	(15 * 60 * 1000)
#define CONN_REDIAL_MS		250	/* a link up: the others dial this soon */
#define CONN_REDIAL_EVERY_MS	1000	/* ... at most this often */
#define CONN_CLOSE_MS		2000	/* graceful close gives up after this */
#define CONN_REJECT_LOG_MAX	50	/* quarantine log lines per connection */

enum conn_state {
	CONN_CONNECTING = 1,	/* TCP connect in progress */
	CONN_HANDSHAKE,		/* TLS handshake in progress */
	CONN_ESTABLISHED,	/* identity checked, session running */
	CONN_CLOSING,
};

/* One connection; the other files see only the pointers in struct peer. */
struct conn {
	struct conn *next;
	struct node *node;
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_getaddrinfo_t *resolving;	/* host name lookup in progress */
	uv_shutdown_t shutdown_req;
	struct tls_conn *tls;
	struct sync_session *sess;
	struct peer *peer;	/* known from the start when we dialled */
	int outbound;
	enum conn_state state;
	uint64_t created_ms;
	char addr[80];		/* remote address, for logs */
	char *rbuf;		/* read buffer, CONN_READ_CHUNK */
	uint8_t *pbuf;		/* plaintext scratch, CONN_READ_CHUNK */
	uint64_t closing_ms;	/* when the graceful close began */
	int read_paused;	/* reading stopped: our output is full */
	int read_yield;		/* reading stopped until the next turn */
	unsigned rejects_logged;
};

/*
 * Kept under the names they had when other files called them: they are
 * file statics now, reached from outside through the conn__*_all and
 * conn__*_peer functions below.
 */
static void conn__close(struct conn *c, const char *why);
static void conn__flush(struct conn *c);
static void conn__shutdown(struct conn *c);

/* A write in flight: the request and the ciphertext it sends. */
struct wreq {
	uv_write_t req;
	uint8_t *data;		/* from tls_conn_take_buf */
};

static const char *
conn_name(const struct conn *c)
{
	return c->peer ? c->peer->id : c->addr[0] ? c->addr : "?";
}

static struct conn *
conn_new(struct node *n)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	if ((c->rbuf = malloc(CONN_READ_CHUNK)) == NULL ||
	    (c->pbuf = malloc(CONN_READ_CHUNK)) == NULL) {
		free(c->rbuf);
		free(c);
		return NULL;
	}
	c->node = n;
	c->created_ms = log_now_ms();
	uv_tcp_init(n->loop, &c->tcp);
	uv_tcp_nodelay(&c->tcp, 1);
	c->tcp.data = c;
	c->next = n->conns;
	n->conns = c;
	return c;
}

static void
conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct conn **pp;

	for (pp = &c->node->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	sync_session_free(c->sess);
	tls_conn_free(c->tls);
	free(c->rbuf);
	free(c->pbuf);
	free(c);
}

/*
 * Updates v with what a session learnt of its peer's HELLO; kept in the
 * peer when the session ends, so that status shows it while the peer is
 * down (an incompatible peer stays down).
 */
static void
peer_learn(struct peer_proto *v, const struct sync_stats *s)
{
	if (s->no_common_version) {
		v->no_common_version = 1;
		v->version = 0;
	} else if (s->established) {
		v->no_common_version = 0;
		v->version = s->version;
		v->schema_match = s->schema_match;
	}
	if (s->peer_version_max != 0) {
		v->vmin = s->peer_version_min;
		v->vmax = s->peer_version_max;
	}
}

/* Schedules the next dial of p: exponential backoff with jitter. */
static void
peer_backoff(struct node *n, struct peer *p, int stable)
{
	uint64_t lo = n->cfg.backoff_min_ms ? n->cfg.backoff_min_ms : 200;
	uint64_t hi = n->cfg.backoff_max_ms ? n->cfg.backoff_max_ms : 30000;
	uint64_t b;

	if (p->backoff_ms == 0 || stable)
		p->backoff_ms = lo;	/* a session that lasted starts over */
	else if (p->backoff_ms < hi)
		p->backoff_ms = p->backoff_ms * 2 > hi ? hi : p->backoff_ms * 2;
	/* jitter in [b/2, 3b/2) keeps restarted nodes from dialling in step */
	b = p->backoff_ms / 2 + (uint64_t)random() % (p->backoff_ms + 1);
	p->next_dial_ms = log_now_ms() + b;
}

/*
 * A link to `up` was just established: the network may have healed (a
 * partition ends, a router comes back), so every other peer still waiting
 * out a long backoff is dialled within CONN_REDIAL_MS instead, at most
 * once per CONN_REDIAL_EVERY_MS (a link that keeps flapping does not make
 * us dial the dead ones without pause).  Their backoff itself is kept: a
 * peer that is really down goes on waiting longer after each failure.
 */
static void
peers_redial_soon(struct node *n, const struct peer *up)
{
	uint64_t now = log_now_ms();

	if (n->redial_ms != 0 && now - n->redial_ms < CONN_REDIAL_EVERY_MS)
		return;
	n->redial_ms = now;
	for (struct peer *q = n->peers; q != NULL; q = q->next)
		if (q != up && !q->active && !q->dialing &&
		    !q->proto.no_common_version &&
		    q->next_dial_ms > now + CONN_REDIAL_MS)
			q->next_dial_ms = now + (uint64_t)random() %
			    (CONN_REDIAL_MS + 1);
}

/*
 * Unties c from its peer and nothing more: no longer its dial, its name
 * kept for the log lines of its close.  The peer's session, schedule and
 * last error are the caller's (peer_detach, or a connection dropped
 * because another one serves the pair).
 */
static void
peer_unlink(struct conn *c)
{
	struct peer *p = c->peer;

	if (p->dialing == c)
		p->dialing = NULL;
	c->peer = NULL;
	snprintf(c->addr, sizeof(c->addr), "%s", p->id);
}

/* Detaches c from its peer, keeping the peer's counters and schedule. */
static void
peer_detach(struct conn *c, const char *why)
{
	struct peer *p = c->peer;
	int was_up, stable = 0;

	if (p == NULL)
		return;
	was_up = p->active == c;
	if (c->sess) {
		const struct sync_stats *s = sync_session_stats(c->sess);

		p->bytes_in += s->bytes_in;
		p->bytes_out += s->bytes_out;
		p->changes_in += s->changes_in;
		p->changes_out += s->changes_out;
		p->rejected_in += s->rejected_in;
		p->recon_runs += s->recon_runs;
		if (s->recon_last_ms)
			p->recon_last_ms = s->recon_last_ms;
		peer_learn(&p->proto, s);
	}
	if (p->active == c) {
		stable = log_now_ms() - p->since_ms > CONN_STABLE_MS;
		p->active = NULL;
		p->since_ms = log_now_ms();
	}
	peer_unlink(c);
	if (why && (was_up || c->outbound))
		snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	if (!p->active && !p->dialing)
		peer_backoff(c->node, p, stable);
	if (!p->active && !p->dialing && p->proto.no_common_version)
		p->next_dial_ms = log_now_ms() + CONN_VERSION_BACKOFF_MS / 2 +
		    (uint64_t)random() % (CONN_VERSION_BACKOFF_MS / 2 + 1);
}

/* Closes c, logged by the caller. */
static void
conn_end(struct conn *c, const char *why)
{
	c->state = CONN_CLOSING;
	if (c->resolving) {	/* the lookup finishes on its own */
		c->resolving->data = NULL;
		c->resolving = NULL;
	}
	peer_detach(c, why);
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void
conn__close(struct conn *c, const char *why)
{
	if (c->state == CONN_CLOSING)
		return;
	if (c->state == CONN_ESTABLISHED)
		log_msg(LOG_INFO, conn_name(c), "disconnected: %s", why);
	else
		log_msg(LOG_WARN, conn_name(c), "connection failed: %s", why);
	conn_end(c, why);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void
write_done(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	struct wreq *w = (struct wreq *)req;	/* req is its first member */

	free(w->data);
	free(w);
	if (status < 0 && status != UV_ECANCELED && c->state != CONN_CLOSING) {
		conn__close(c, uv_strerror(status));
		return;
	}
	if (c->read_paused && c->state == CONN_ESTABLISHED &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <
	    CONN_WQ_MAX / 2) {
		c->read_paused = 0;
		if (!c->read_yield)
			uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
}

/*
 * The loop's turn has taken its share of received bytes (CONN_RX_TURN):
 * c stops reading until the next turn (conn__turn), so that a node
 * receiving from many peers at once answers its control socket, dials and
 * pings in between instead of applying every batch that is waiting.
 */
static void
read_yield(struct conn *c, size_t got)
{
	struct node *n = c->node;

	n->rx_turn += got;
	if (n->rx_turn < CONN_RX_TURN || c->state != CONN_ESTABLISHED ||
	    c->read_paused || c->read_yield)
		return;
	c->read_yield = 1;
	uv_read_stop((uv_stream_t *)&c->tcp);
}

void
conn__turn(struct node *n)
{
	n->rx_turn = 0;
	n->pump_turn = 0;
	for (struct conn *c = n->conns; c; c = c->next) {
		if (!c->read_yield)
			continue;
		c->read_yield = 0;
		if (c->state == CONN_ESTABLISHED && !c->read_paused)
			uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
}

/*
 * A peer that sends but does not read (a PING flood, say) would make us
 * queue answers without end: stop reading it until our output drains.
 */
static void
read_backpressure(struct conn *c)
{
	if (!c->read_paused && c->state == CONN_ESTABLISHED &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >
	    CONN_WQ_MAX) {
		c->read_paused = 1;
		uv_read_stop((uv_stream_t *)&c->tcp);
	}
}

/* Hands everything TLS produced to libuv in one write. */
static int
send_tls_out(struct conn *c)
{
	struct wreq *w;
	uv_buf_t b;
	size_t n;
	int rc;

	if (tls_conn_pending_out(c->tls) == 0 || c->state == CONN_CLOSING)
		return 0;
	if ((w = malloc(sizeof(*w))) == NULL)
		return NBX_ENOMEM;
	n = tls_conn_take_buf(c->tls, &w->data);	/* > 0: pending above */
	w->req.data = c;
	b = uv_buf_init((char *)w->data, (unsigned)n);
	if ((rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1,
	    write_done)) != 0) {
		free(w->data);
		free(w);
		conn__close(c, uv_strerror(rc));
		return NBX_EIO;
	}
	return 0;
}

/*
 * Streams what the session has to send: pump once (at most one batch,
 * pump_all), encrypt in large records, hand to libuv, until the
 * session has nothing more or libuv's queue for this peer is full (a slow
 * reader is paused here, not buffered without bound; the session's window
 * stops it producing, and the dead-link timer eventually drops it).
 */
static void
conn__flush(struct conn *c)
{
	const uint8_t *p;
	size_t n;
	int rounds = 64, rc;

	if (c->state != CONN_ESTABLISHED) {
		if (c->tls)
			send_tls_out(c);
		return;
	}
	if (c->node->pump_turn >= CONN_PUMP_TURN)
		conn__pump_soon(c->node);	/* this turn has made its share */
	else {
		uint64_t made = sync_session_stats(c->sess)->batches_out;

		if ((rc = sync_session_pump(c->sess, log_now_ms())) != 0) {
			conn__close(c, nbx_strerror(rc));
			return;
		}
		c->node->pump_turn += (unsigned)
		    (sync_session_stats(c->sess)->batches_out - made);
		if (sync_session_more(c->sess))
			conn__pump_soon(c->node);
	}
	while (rounds-- > 0 && c->state == CONN_ESTABLISHED) {
		if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >
		    CONN_WQ_MAX)
			break;
		if ((n = sync_session_pending(c->sess, &p)) == 0)
			break;
		if (n > WRITE_CHUNK)
			n = WRITE_CHUNK;
		rc = tls_conn_write(c->tls, p, n);
		if (rc == NBX_EAGAIN)
			break;	/* TLS output is full: wait for libuv */
		if (rc != 0) {
			conn__close(c, tls_conn_error(c->tls));
			return;
		}
		sync_session_consume(c->sess, n);
		send_tls_out(c);
	}
	if (c->state == CONN_ESTABLISHED)
		send_tls_out(c);
}

static void
shutdown_done(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	(void)status;
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/*
 * The end of a graceful close, once close_notify was handed to libuv:
 * the socket is shut down after the writes before it, then closed
 * (tick gives up after CONN_CLOSE_MS).
 */
static void
shutdown_after_notify(struct conn *c, const char *why)
{
	c->state = CONN_CLOSING;
	c->closing_ms = log_now_ms();
	peer_detach(c, why);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp,
	    shutdown_done) != 0)
		uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/*
 * Graceful close: what the session queued (an ERROR, say) and TLS
 * close_notify go out first, then the socket is shut down and closed.
 */
static void
conn__shutdown(struct conn *c)
{
	const uint8_t *p;
	size_t n;

	if (c->state == CONN_CLOSING)
		return;
	if (c->state != CONN_ESTABLISHED) {
		conn__close(c, "shutting down");
		return;
	}
	while ((n = sync_session_pending(c->sess, &p)) > 0 &&
	    tls_conn_write(c->tls, p, n > WRITE_CHUNK ? WRITE_CHUNK : n) == 0)
		sync_session_consume(c->sess, n > WRITE_CHUNK ? WRITE_CHUNK : n);
	tls_conn_shutdown(c->tls);
	send_tls_out(c);
	log_msg(LOG_INFO, conn_name(c), "closing (close_notify sent)");
	shutdown_after_notify(c, "closed by us");
}

/*
 * Drops c, the pair's second connection after both ends dialled at once:
 * with close_notify, then the socket shut down, so that the other end,
 * which may have started a session on it, sees its peer end it cleanly
 * rather than a truncated stream.  What c's session had not yet handed
 * to TLS is not sent (what libuv holds still goes, before the shutdown):
 * the session that stays starts from the peer's cursor.
 */
static void
drop_duplicate(struct conn *c)
{
	log_msg(LOG_DEBUG, conn_name(c), "connection replaced by the one both "
	    "sides keep after dialling each other at once");
	tls_conn_shutdown(c->tls);
	if (send_tls_out(c) != 0)
		conn__close(c, DUPLICATE);	/* at once (if not closed yet) */
	else
		shutdown_after_notify(c, DUPLICATE);
}

/*
 * Gives up d, our dial to its peer still in its handshake, because the
 * peer's dial to us has just finished its own: d, once up, would make a
 * duplicate of the session that is starting, and under the rule of
 * established() it would often be the one kept, the starting session
 * dropped after streaming for a while.  d is not established at the
 * peer either (a TLS 1.3 server finishes after its client), so the peer
 * never holds two connections; it keeps its dial, as we do.  Nothing
 * failed: the backoff and last error stay as they were.
 */
static void
drop_dial(struct conn *d)
{
	log_msg(LOG_DEBUG, d->peer->id, "own dial given up: the peer's dial "
	    "to us finished its handshake first");
	peer_unlink(d);
	conn_end(d, NULL);
}

/*
 * The pin TLS verification asks for (tls_conn_new_lookup), in both
 * directions: the SPKI pin configured for the peer whose certificate
 * names `id`, or NULL when it has none or is no peer of this node (the
 * handshake then completes and established() refuses it).  So a peer with
 * the wrong key fails the handshake itself, whoever dialled.
 */
static const uint8_t *
peer_pin(void *arg, const char *id)
{
	struct peer *p = node__peer_find(arg, id, strlen(id));

	return p && p->has_pin ? p->pin : NULL;
}

/*
 * Refused changes from a peer go to quarantine; the log says so too, up
 * to a limit per connection so a hostile peer cannot flood it.
 */
static void
log_reject(void *arg, const struct change *c, int err)
{
	struct conn *c_ = arg;

	if (++c_->rejects_logged > CONN_REJECT_LOG_MAX) {
		if (c_->rejects_logged == CONN_REJECT_LOG_MAX + 1)
			log_msg(LOG_WARN, conn_name(c_), "more changes "
			    "quarantined; see nbxctl quarantine");
		return;
	}
	log_msg(LOG_WARN, conn_name(c_), "quarantined %s %.*s/%.*s%s%.*s "
	    "(origin %.*s): %s", change_kind_name(c->kind),
	    (int)(c->coll.n > 32 ? 32 : c->coll.n), c->coll.p,
	    (int)(c->id.n > 128 ? 128 : c->id.n), c->id.p,
	    c->field.n ? " field " : "", (int)(c->field.n > 32 ? 32 :
	    c->field.n), c->field.p, (int)(c->origin.n > 32 ? 32 :
	    c->origin.n), c->origin.p, nbx_strerror(err));
}

/*
 * The handshake finished, the peer's chain, identity and pin verified
 * (peer_pin): check that it is a peer of ours, then start the session.
 */
static void
established(struct conn *c)
{
	struct node *n = c->node;
	const char *id = tls_conn_peer_id(c->tls);
	struct sync_opts so;
	struct peer *p;
	int keep_outbound, rc;

	p = c->outbound ? c->peer : node__peer_find(n, id, strlen(id));
	if (p == NULL) {
		snprintf(c->addr, sizeof(c->addr), "%s", id);
		conn__close(c, "refused: not a peer of this node (add it with "
		    "nbxctl peer add)");
		return;
	}
	c->peer = p;
	if (p->active && p->active != c) {
		/* one session per pair: the dial of the smaller id wins */
		keep_outbound = strcmp(n->cfg.id, p->id) < 0;
		if (c->outbound != keep_outbound) {
			log_msg(LOG_DEBUG, p->id, "duplicate connection dropped");
			peer_unlink(c);
			drop_duplicate(c);
			return;
		}
		drop_duplicate(p->active);
	}
	if (p->dialing == c)
		p->dialing = NULL;
	else if (p->dialing != NULL && !c->outbound)
		drop_dial(p->dialing);
	so = n->sopts;
	so.on_reject = log_reject;
	so.reject_arg = c;
	so.no_relay = p->no_relay;
	if ((rc = sync_session_new(n->st, n->pol, p->id, &so,
	    &c->sess)) != 0 || (rc = sync_session_start(c->sess,
	    log_now_ms())) != 0) {
		conn__close(c, nbx_strerror(rc));
		return;
	}
	c->state = CONN_ESTABLISHED;
	p->active = c;
	p->since_ms = log_now_ms();
	p->backoff_ms = 0;
	p->last_error[0] = 0;
	peers_redial_soon(n, p);
	log_msg(LOG_INFO, p->id, "connected (%s %s, TLS 1.3, identity "
	    "verified%s)", c->outbound ? "to" : "from", c->addr,
	    p->has_pin ? ", pin matched" : "");
	conn__flush(c);
}

/* Feeds received plaintext to the session until TLS has no more. */
static void
read_plaintext(struct conn *c)
{
	size_t got;
	int rc;

	for (;;) {
		rc = tls_conn_read(c->tls, c->pbuf, CONN_READ_CHUNK, &got);
		if (rc == NBX_EAGAIN)
			break;
		if (rc == NBX_ECLOSED) {
			conn__close(c, "peer closed the session");
			return;
		}
		if (rc != 0) {
			conn__close(c, tls_conn_error(c->tls));
			return;
		}
		rc = sync_session_feed(c->sess, c->pbuf, got, log_now_ms());
		if (rc != 0) {
			log_msg(LOG_WARN, conn_name(c), "session error: %s (%s)",
			    sync_session_error(c->sess), nbx_strerror(rc));
			if (rc != NBX_ECLOSED)
				sync_session_fail(c->sess, rc,
				    sync_session_error(c->sess));
			conn__shutdown(c);
			return;
		}
	}
	send_tls_out(c);	/* TLS may answer reads (tickets, key update) */
	conn__pump_soon(c->node);
	read_backpressure(c);
}

static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct conn *c = h->data;

	(void)hint;
	*b = uv_buf_init(c->rbuf, CONN_READ_CHUNK);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = s->data;
	int rc;

	if (c->state == CONN_CLOSING)
		return;
	if (nread < 0) {
		if (nread == UV_EOF && c->state == CONN_HANDSHAKE &&
		    !c->outbound) {
			/* a client that gave up its dial (drop_dial), or a
			   probe of the port: nothing of ours was at stake */
			log_msg(LOG_INFO, conn_name(c), "closed by the client "
			    "during the TLS handshake");
			conn_end(c, "closed during the TLS handshake");
		} else if (nread == UV_EOF && c->tls && tls_conn_eof(c->tls) == 0)
			conn__close(c, "peer closed the connection");
		else if (nread == UV_EOF)
			conn__close(c, "connection ended without close_notify "
			    "(truncated; partial frame discarded)");
		else
			conn__close(c, uv_strerror((int)nread));
		return;
	}
	if (nread == 0)
		return;
	if ((rc = tls_conn_feed(c->tls, b->base, (size_t)nread)) != 0) {
		conn__close(c, tls_conn_error(c->tls));
		return;
	}
	if (c->state == CONN_HANDSHAKE) {
		rc = tls_conn_handshake(c->tls);
		send_tls_out(c);
		if (rc == NBX_EAGAIN)
			return;
		if (rc != 0) {
			char why[300];

			snprintf(why, sizeof(why), "TLS handshake refused: %s",
			    tls_conn_error(c->tls));
			conn__close(c, why);
			return;
		}
		established(c);
		if (c->state != CONN_ESTABLISHED)
			return;
	}
	read_plaintext(c);
	read_yield(c, (size_t)nread);
}

static int
start_tls(struct conn *c, int server)
{
	struct peer *p = c->peer;
	int rc;

	rc = tls_conn_new_lookup(c->node->tls, server, server ? NULL : p->id,
	    peer_pin, c->node, &c->tls);
	if (rc != 0)
		return rc;
	c->state = CONN_HANDSHAKE;
	if ((rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) != 0)
		return NBX_EIO;
	if (!server) {
		rc = tls_conn_handshake(c->tls);	/* ClientHello */
		if (rc != NBX_EAGAIN && rc != 0)
			return rc;
		send_tls_out(c);
	}
	return 0;
}

/*
 * 1 if the socket is joined to itself.  Dialling a port of this host that
 * nothing listens on can pick that same port as the source, and TCP's
 * simultaneous open then connects the socket to itself, holding the port
 * the peer is about to listen on.
 */
int
conn__self_connected(const uv_tcp_t *tcp)
{
	struct sockaddr_storage me, them;
	int mlen = sizeof(me), tlen = sizeof(them);

	if (uv_tcp_getsockname(tcp, (struct sockaddr *)&me, &mlen) != 0 ||
	    uv_tcp_getpeername(tcp, (struct sockaddr *)&them, &tlen) != 0)
		return 0;
	if (me.ss_family != them.ss_family)
		return 0;
	if (me.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&me;
		const struct sockaddr_in *b = (const void *)&them;

		return a->sin_port == b->sin_port &&
		    a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (me.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&me;
		const struct sockaddr_in6 *b = (const void *)&them;

		return a->sin6_port == b->sin6_port &&
		    memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
	}
	return 0;
}

static void
on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;

	if (c->state == CONN_CLOSING)
		return;
	if (status < 0) {
		conn__close(c, uv_strerror(status));
		return;
	}
	if (conn__self_connected(&c->tcp)) {
		conn__close(c, "connected to itself: nothing listens there");
		return;
	}
	if (start_tls(c, 0) != 0)
		conn__close(c, c->tls ? tls_conn_error(c->tls) : "TLS setup failed");
}

static int
connect_to(struct conn *c, const struct sockaddr *sa)
{
	int rc;

	c->connect_req.data = c;
	if ((rc = uv_tcp_connect(&c->connect_req, &c->tcp, sa,
	    on_connect)) != 0) {
		conn__close(c, uv_strerror(rc));
		return NBX_EIO;
	}
	log_msg(LOG_DEBUG, conn_name(c), "dialling %s", c->addr);
	return 0;
}

/*
 * A host name resolves asynchronously.  The request lives apart from the
 * connection so that a connection closed meanwhile only detaches it.
 */
static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
	struct conn *c = req->data;

	free(req);
	if (c == NULL) {
		uv_freeaddrinfo(ai);
		return;
	}
	c->resolving = NULL;
	if (status < 0 || ai == NULL) {
		char why[160];

		snprintf(why, sizeof(why), "cannot resolve %s: %s", c->addr,
		    uv_strerror(status));
		conn__close(c, why);
	} else {
		connect_to(c, ai->ai_addr);
	}
	uv_freeaddrinfo(ai);
}

int
conn__dial(struct node *n, struct peer *p)
{
	struct sockaddr_storage sa;
	struct addrinfo hints;
	struct conn *c;
	char port[8];
	int rc;

	if (n->stopping || p->active || p->dialing)
		return 0;
	if ((c = conn_new(n)) == NULL)
		return NBX_ENOMEM;
	c->outbound = 1;
	c->peer = p;
	c->state = CONN_CONNECTING;
	p->dialing = c;
	snprintf(c->addr, sizeof(c->addr), "%.64s:%u", p->host,
	    (unsigned)p->port);
	if (uv_ip4_addr(p->host, p->port, (struct sockaddr_in *)&sa) == 0 ||
	    uv_ip6_addr(p->host, p->port, (struct sockaddr_in6 *)&sa) == 0)
		return connect_to(c, (struct sockaddr *)&sa);
	if ((c->resolving = malloc(sizeof(*c->resolving))) == NULL) {
		conn__close(c, "out of memory");
		return NBX_ENOMEM;
	}
	c->resolving->data = c;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", (unsigned)p->port);
	if ((rc = uv_getaddrinfo(n->loop, c->resolving, on_resolved, p->host,
	    port, &hints)) != 0) {
		free(c->resolving);
		c->resolving = NULL;
		conn__close(c, uv_strerror(rc));
		return NBX_EIO;
	}
	return 0;
}

int
conn__accept(struct node *n)
{
	struct sockaddr_storage sa;
	int len = sizeof(sa);
	struct conn *c = conn_new(n);

	if (c == NULL)
		return NBX_ENOMEM;
	if (uv_accept((uv_stream_t *)&n->listener, (uv_stream_t *)&c->tcp) != 0) {
		conn__close(c, "accept failed");
		return NBX_EIO;
	}
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
		char ip[64] = "?";

		if (sa.ss_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof(ip));
		else
			uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
		snprintf(c->addr, sizeof(c->addr), "%s", ip);
	}
	c->state = CONN_CONNECTING;
	if (start_tls(c, 1) != 0) {
		conn__close(c, "TLS setup failed");
		return NBX_ETLS;
	}
	return 0;
}

/* 1 if the peer's bytes wait in the socket, unread by our busy loop. */
static int
unread_bytes(struct conn *c)
{
	uv_os_fd_t fd;
	int n = 0;

	return uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
	    ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* A timer tick for c: timeouts, pings, and what the session has to send. */
static void
tick(struct conn *c, uint64_t now)
{
	char why[96];
	int rc;

	if (c->state == CONN_CLOSING) {
		/* a peer that never reads would keep a graceful close open */
		if (c->closing_ms && now - c->closing_ms > CONN_CLOSE_MS &&
		    !uv_is_closing((uv_handle_t *)&c->tcp))
			uv_close((uv_handle_t *)&c->tcp, conn_closed);
		return;
	}
	if (c->state != CONN_ESTABLISHED) {
		if (now - c->created_ms > CONN_HANDSHAKE_MS)
			conn__close(c, "handshake timed out");
		return;
	}
	/* not while we stopped reading it on purpose (read_backpressure) */
	if (!c->read_paused && unread_bytes(c))
		sync_session_heard(c->sess, now);
	if ((rc = sync_session_tick(c->sess, now)) == NBX_ECLOSED) {
		snprintf(why, sizeof(why), "dead link: nothing received for "
		    "%llu ms", (unsigned long long)c->node->sopts.dead_after_ms);
		conn__close(c, why);
		return;
	}
	conn__flush(c);
}

/* ------------------------------------------------------------------ */
/* Every connection of the node                                        */
/* ------------------------------------------------------------------ */

/*
 * Lets every established session stream what the log gained.  Each
 * session makes at most one batch per call (sopts.pump_batches), a loop
 * turn at most CONN_PUMP_TURN in all (conn__flush), and one with more to
 * send asks for another turn, so that a node streaming to many peers
 * still reads, answers its control socket and pings in between.  Each
 * turn another session goes first, so the share goes round.
 */
static void
pump_all(struct node *n)
{
	unsigned i = 0, first = n->pump_rr;

	if (n->pumping)
		return;		/* a pump in progress will see the new entries */
	n->pumping = 1;
	/* from session pump_rr to the last, then from the first */
	for (unsigned k = 0; k < 2; k++) {
		i = 0;
		for (struct conn *c = n->conns; c; c = c->next, i++)
			if ((k == 0) == (i >= first) &&
			    c->state == CONN_ESTABLISHED)
				conn__flush(c);
	}
	n->pump_rr = first + 1 < i ? first + 1 : 0;	/* i: the conns */
	n->pumping = 0;
}

static void
on_more(uv_idle_t *h)
{
	struct node *n = h->data;

	/*
	 * A local write parsed on the thread pool goes first: its writer
	 * waits for the reply, while the peers' batches can wait a turn
	 * (one, so that a stream of writes never starves them).  The idle
	 * handle stays active, so the loop polls at once and comes back.
	 */
	if (!n->pump_waited && ctl_parsed_waiting() > 0) {
		n->pump_waited = 1;
		return;
	}
	n->pump_waited = 0;
	uv_idle_stop(h);
	pump_all(n);
}

void
conn__pump_soon(struct node *n)
{
	if (!n->stopping && !uv_is_active((uv_handle_t *)&n->more))
		uv_idle_start(&n->more, on_more);
}

void
conn__tick_all(struct node *n, uint64_t now)
{
	struct conn *c, *next;

	for (c = n->conns; c; c = next) {
		next = c->next;
		tick(c, now);
	}
}

void
conn__recheck_all(struct node *n)
{
	struct conn *c, *next;
	char why[512];

	for (c = n->conns; c; c = next) {
		next = c->next;
		if (c->state != CONN_ESTABLISHED ||
		    tls_ctx_verify_peer(n->tls, c->tls, why, sizeof(why)) == 0)
			continue;
		log_msg(LOG_WARN, c->peer ? c->peer->id : NULL, "peer no longer "
		    "passes verification: %s", why);
		conn__close(c, why);
	}
}

void
conn__shutdown_all(struct node *n)
{
	for (struct conn *c = n->conns; c; c = c->next)
		conn__shutdown(c);
}

void
conn__close_peer(struct node *n, struct peer *p, const char *why)
{
	for (struct conn *c = n->conns; c; c = c->next)
		if (c->peer == p) {
			conn__close(c, why);
			c->peer = NULL;
		}
}

const struct sync_stats *
conn__peer_stats(const struct peer *p)
{
	return p->active && p->active->sess ?
	    sync_session_stats(p->active->sess) : NULL;
}

struct peer_proto
conn__peer_proto(const struct peer *p)
{
	const struct sync_stats *s = conn__peer_stats(p);
	struct peer_proto v = p->proto;

	if (s != NULL)
		peer_learn(&v, s);
	return v;
}

int
conn__peer_reconcile(struct peer *p)
{
	return p->active && p->active->sess ?
	    sync_session_reconcile(p->active->sess) : NBX_EAGAIN;
}
