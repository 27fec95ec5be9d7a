/*
 * nbx-rogue.c - a rogue peer for the integration tests: it completes a
 * genuine mutual-TLS 1.3 handshake with a node as one of its configured
 * peers (a real certificate from `nbxctl ca issue`, the project's own TLS
 * module over a plain blocking TCP socket), then sends crafted traffic:
 * hostile frames, changes stamped with hostile clocks, spoofed changes.
 *
 *   nbx-rogue --ca F --cert F --key F --connect 127.0.0.1:PORT \
 *       --expect ID --script NAME [ARG...]
 *
 * It prints one line per event, each starting with "rogue: ": frames sent,
 * frames received (every received change with its value, so a test can
 * look for data that should never have reached this peer), ACKs, ERROR
 * frames, and how the connection ended; then a summary line:
 *
 *   rogue: summary script=NAME frames_sent=N acks=K last_ack=S
 *          closed_by_node=yes|no
 *
 * It exits 0 when the script ran (whatever the node did), 1 when it could
 * not connect or the handshake failed, 2 on a usage error, 3 when the
 * script cannot be run with this build (see "keyupdate").
 *
 * Everything is bounded in time: connecting and the handshake give up
 * after 5 s, every wait for the node after --wait ms (default 3000).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "change.h"
#include "frame.h"
#include "hlc.h"
#include "mpbuf.h"
#include "nbx_err.h"
#include "session.h"
#include "tls.h"

#define IO_CHUNK	(64u << 10)
#define SETUP_MS	5000		/* connect + handshake */
#define ROGUE_EPOCH	4242		/* the log epoch the rogue claims */

static const char USAGE[] =
    "usage: nbx-rogue --ca F --cert F --key F --connect HOST:PORT\n"
    "                 --expect ID --script NAME [ARG...]\n"
    "options: --wait MS     how long to wait for the node (3000)\n"
    "         --drift MS    the node's max_clock_drift_ms (500)\n"
    "         --linger MS   stay connected after the script (0)\n"
    "scripts:\n"
    "  hello                      HELLO + SUBSCRIBE, then wait\n"
    "  oversize                   a length prefix of 0xffffffff\n"
    "  truncated [clean]          half a frame, then EOF (no close_notify,\n"
    "                             or after close_notify with 'clean')\n"
    "  ddff                       a body dd ff ff ff ff (array32 of 2^32-1)\n"
    "  deep                       a body of 100 nested arrays\n"
    "  wrongtypes VARIANT|all     frames with items of the wrong type\n"
    "  trailing [ping|changes]    a valid frame with trailing bytes inside\n"
    "  pingflood N [noread]       N PINGs as fast as possible\n"
    "  garbage-after-hello        HELLO, then a frame of random bytes\n"
    "  keyupdate                  TLS key updates (not possible: see below)\n"
    "  clock                      future-stamped changes (see the source)\n"
    "  spoof VICTIM               spoofed changes (see the source)\n"
    "  record COLL ID FIELD VALUE one genuine change of the rogue's own\n";

static const char *const wrongtype_variants[] = {
	"hello-version-str",	/* [1, "1", id, epoch] */
	"hello-node-int",	/* [1, 1, 7, epoch] */
	"type-str",		/* ["hello", 1, id, epoch] */
	"unknown-type",		/* [99, 1] */
	"map-body",		/* {1: 1} */
	"changes-not-array",	/* [3, epoch, 1, "changes"] */
	"change-bad-kind",	/* a change whose kind is a string */
	"ack-negative",		/* [4, -1] */
	"ping-nil",		/* [6, nil] */
	"subscribe-short",	/* [2, epoch] */
	NULL,
};

struct rogue {
	/* settings */
	const char *ca, *cert, *key, *host, *expect;
	unsigned port;
	uint64_t wait_ms, drift_ms, linger_ms;
	struct tls_ctx *ctx;
	const char *self;	/* our id, from our certificate */

	/* one connection */
	int fd;
	struct tls_conn *tls;
	struct nbx_buf in;	/* plaintext received, not yet framed */
	int closed;		/* the node ended the connection */
	int eof_sent;
	uint64_t peer_epoch;
	int got_hello;

	/* counts, over the connection */
	uint64_t frames_sent, frames_recv, pongs, acks, last_ack, errors;
	uint64_t changes_recv;
	int quiet_pong;		/* don't print each PONG (floods) */
};

static void
say(const char *fmt, ...)
{
	va_list ap;

	fputs("rogue: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Printable copy of peer bytes, for output lines. */
static const char *
show(struct nbx_str s)
{
	static char buf[4][160];
	static int k;
	char *b = buf[k = (k + 1) % 4];
	uint32_t i;

	for (i = 0; i < s.n && i + 1 < sizeof(buf[0]); i++) {
		unsigned char ch = (unsigned char)s.p[i];

		b[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	b[i] = 0;
	return b;
}

/* ------------------------------------------------------------------ */
/* Socket and TLS                                                      */
/* ------------------------------------------------------------------ */

/* Sends all TLS output; a failed send marks the connection closed. */
static void
flush_out(struct rogue *r)
{
	uint8_t buf[IO_CHUNK];
	size_t n, off;
	ssize_t k;

	while (r->tls && (n = tls_conn_take_out(r->tls, buf, sizeof(buf))) > 0) {
		for (off = 0; off < n && !r->closed; off += (size_t)k) {
			k = send(r->fd, buf + off, n - off, MSG_NOSIGNAL);
			if (k < 0 && errno == EINTR) {
				k = 0;
				continue;
			}
			if (k <= 0) {
				say("send failed: %s (the node closed the "
				    "connection)", k < 0 ? strerror(errno) :
				    "0 bytes");
				r->closed = 1;
				return;
			}
		}
	}
}

static void on_frame(struct rogue *r, const uint8_t *body, size_t len);

/* Splits and handles every whole frame received so far. */
static void
drain_frames(struct rogue *r)
{
	const uint8_t *body;
	size_t blen, used, off = 0;

	while (frame_split(r->in.p + off, r->in.len - off, FRAME_BODY_MAX,
	    &body, &blen, &used) == 0) {
		on_frame(r, body, blen);
		off += used;
	}
	if (off > 0) {
		memmove(r->in.p, r->in.p + off, r->in.len - off);
		r->in.len -= off;
	}
}

/* Decrypts what TLS holds into r->in and handles the frames. */
static void
read_plain(struct rogue *r)
{
	uint8_t buf[IO_CHUNK];
	size_t got;
	int rc;

	for (;;) {
		rc = tls_conn_read(r->tls, buf, sizeof(buf), &got);
		if (rc == NBX_EAGAIN)
			break;
		if (rc == NBX_ECLOSED) {
			if (!r->closed)
				say("node sent close_notify");
			r->closed = 1;
			break;
		}
		if (rc != 0) {
			if (!r->closed)
				say("TLS error from the node: %s",
				    tls_conn_error(r->tls));
			r->closed = 1;
			break;
		}
		if (nbx_buf_append(&r->in, buf, got) != 0) {
			say("input buffer full; dropping the connection");
			r->closed = 1;
			break;
		}
		drain_frames(r);
	}
	flush_out(r);
}

/*
 * Waits up to timeout_ms for bytes from the node and processes them.
 * Returns 1 if something was read, 0 on timeout, -1 once the connection
 * has ended.
 */
static int
pump(struct rogue *r, int timeout_ms)
{
	struct pollfd pfd = { r->fd, POLLIN, 0 };
	uint8_t buf[IO_CHUNK];
	ssize_t n;
	int rc;

	if (r->closed)
		return -1;
	rc = poll(&pfd, 1, timeout_ms);
	if (rc < 0)
		return errno == EINTR ? 0 : -1;
	if (rc == 0)
		return 0;
	n = recv(r->fd, buf, sizeof(buf), 0);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		if (n < 0)
			say("connection reset by the node: %s",
			    strerror(errno));
		else if (tls_conn_eof(r->tls) == 0)
			say("node closed the connection (clean EOF after "
			    "close_notify)");
		else
			say("node closed the connection (EOF)");
		read_plain(r);
		r->closed = 1;
		return -1;
	}
	if (tls_conn_feed(r->tls, buf, (size_t)n) != 0) {
		say("TLS feed failed: %s", tls_conn_error(r->tls));
		r->closed = 1;
		return -1;
	}
	read_plain(r);
	return r->closed ? -1 : 1;
}

/* Pumps until pred(r) holds, the node closes, or timeout_ms passes. */
static int
wait_for(struct rogue *r, int (*pred)(struct rogue *), uint64_t timeout_ms)
{
	uint64_t end = mono_ms() + timeout_ms;

	while (!(pred && pred(r))) {
		uint64_t t = mono_ms();

		if (t >= end || pump(r, (int)(end - t)) < 0)
			break;
	}
	return pred && pred(r);
}

static int
is_closed(struct rogue *r)
{
	return r->closed;
}

static int
has_hello(struct rogue *r)
{
	return r->got_hello;
}

/* Encrypts and sends n bytes of plaintext. */
static void
send_plain(struct rogue *r, const void *p, size_t n)
{
	const uint8_t *b = p;
	int rc;

	while (n > 0 && !r->closed) {
		size_t k = n > IO_CHUNK ? IO_CHUNK : n;

		rc = tls_conn_write(r->tls, b, k);
		if (rc == NBX_EAGAIN) {
			flush_out(r);
			continue;
		}
		if (rc != 0) {
			say("TLS write failed: %s", tls_conn_error(r->tls));
			r->closed = 1;
			return;
		}
		b += k;
		n -= k;
		flush_out(r);
	}
}

/* Sends whole frames held in b (counted as `frames`), then empties b. */
static void
send_frames(struct rogue *r, struct nbx_buf *b, unsigned frames)
{
	send_plain(r, b->p, b->len);
	if (!r->closed)
		r->frames_sent += frames;
	b->len = 0;
}

static int
tcp_connect(struct rogue *r)
{
	struct sockaddr_in sa;
	struct timeval tv = { 10, 0 };
	int one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)r->port);
	if (inet_pton(AF_INET, r->host, &sa.sin_addr) != 1) {
		say("'%s' is not an IPv4 address", r->host);
		return -1;
	}
	if ((r->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return -1;
	setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* a blocked send gives up rather than hang the test */
	setsockopt(r->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		say("connect %s:%u: %s", r->host, r->port, strerror(errno));
		close(r->fd);
		r->fd = -1;
		return -1;
	}
	return 0;
}

/*
 * Connects and completes the handshake as a client that expects the node
 * to be r->expect.  Then waits for the node's HELLO.  0 or -1.
 */
static int
conn_open(struct rogue *r)
{
	uint64_t end;
	int rc;

	r->closed = r->eof_sent = r->got_hello = 0;
	r->frames_sent = r->frames_recv = r->pongs = r->acks = 0;
	r->last_ack = r->errors = r->changes_recv = 0;
	r->in.len = 0;
	if (tcp_connect(r) != 0)
		return -1;
	if ((rc = tls_conn_new(r->ctx, 0, r->expect, NULL, &r->tls)) != 0) {
		say("tls_conn_new: %s", nbx_strerror(rc));
		return -1;
	}
	end = mono_ms() + SETUP_MS;
	for (;;) {
		rc = tls_conn_handshake(r->tls);
		flush_out(r);
		if (rc == 0)
			break;
		if (rc != NBX_EAGAIN) {
			say("handshake failed: %s", tls_conn_error(r->tls));
			return -1;
		}
		if (r->closed || mono_ms() >= end) {
			say("handshake did not complete");
			return -1;
		}
		{
			struct pollfd pfd = { r->fd, POLLIN, 0 };
			uint8_t buf[IO_CHUNK];
			ssize_t n;

			if (poll(&pfd, 1, (int)(end - mono_ms())) <= 0)
				continue;
			if ((n = recv(r->fd, buf, sizeof(buf), 0)) <= 0) {
				say("node closed the connection during the "
				    "handshake");
				return -1;
			}
			if (tls_conn_feed(r->tls, buf, (size_t)n) != 0) {
				say("handshake failed: %s",
				    tls_conn_error(r->tls));
				return -1;
			}
		}
	}
	say("connected to %s:%u as '%s', TLS 1.3, node identity '%s' "
	    "verified", r->host, r->port, r->self, tls_conn_peer_id(r->tls));
	/* the node checks our certificate after we finish: its HELLO tells
	 * that it accepted us */
	if (!wait_for(r, has_hello, SETUP_MS)) {
		say("no HELLO from the node (%s)", r->closed ?
		    "it closed the connection" : "timed out");
		return -1;
	}
	return 0;
}

static void
conn_close(struct rogue *r)
{
	if (r->tls && !r->closed) {
		tls_conn_shutdown(r->tls);
		flush_out(r);
	}
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	tls_conn_free(r->tls);
	r->tls = NULL;
}

/* ------------------------------------------------------------------ */
/* Frames received                                                     */
/* ------------------------------------------------------------------ */

static const char *
value_str(const struct nbx_value *v)
{
	static char buf[200];

	switch (v->t) {
	case NBX_V_NIL:
		return "nil";
	case NBX_V_BOOL:
		return v->i ? "true" : "false";
	case NBX_V_INT:
		snprintf(buf, sizeof(buf), "%lld", (long long)v->i);
		return buf;
	case NBX_V_STR:
		snprintf(buf, sizeof(buf), "\"%s\"", show(v->s));
		return buf;
	}
	return "?";
}

static void
print_change(const struct change *c)
{
	char aud[NBX_AUD_MAX * (NBX_ID_MAX + 1) + 1] = "";

	for (uint32_t i = 0; i < c->aud.n; i++) {
		if (i > 0)
			strcat(aud, ",");
		strcat(aud, show(c->aud.ids[i]));
	}
	say("recv change kind=%d %s/%s field=%s elem=%s origin=%s "
	    "hlc=%llu value=%s aud=[%s]", (int)c->kind, show(c->coll),
	    show(c->id), show(c->field), show(c->elem), show(c->origin),
	    (unsigned long long)c->hlc, value_str(&c->val), aud);
}

static void
on_frame(struct rogue *r, const uint8_t *body, size_t len)
{
	struct frame_msg m;
	struct nbx_buf b;
	const uint8_t *p;
	size_t off = 0, clen, used;
	struct change c;
	int rc;

	r->frames_recv++;
	if ((rc = frame_decode(body, len, &m)) != 0) {
		say("recv undecodable frame of %zu bytes: %s", len,
		    nbx_strerror(rc));
		return;
	}
	nbx_buf_init(&b, 1 << 20);
	switch (m.type) {
	case FRAME_HELLO:
		r->got_hello = 1;
		r->peer_epoch = m.epoch;
		say("recv HELLO version=%llu node=%s epoch=%llu",
		    (unsigned long long)m.version, show(m.node),
		    (unsigned long long)m.epoch);
		break;
	case FRAME_SUBSCRIBE:
		say("recv SUBSCRIBE epoch=%llu from=%llu",
		    (unsigned long long)m.epoch, (unsigned long long)m.seq);
		break;
	case FRAME_CHANGES:
		say("recv CHANGES upto=%llu changes=%u",
		    (unsigned long long)m.seq, m.nchanges);
		while (frame_changes_next(&m, &off, &p, &clen) == 1) {
			if (change_decode(p, clen, &c, &used) == 0) {
				print_change(&c);
				r->changes_recv++;
			} else {
				say("recv change that does not decode");
			}
		}
		/* a polite peer: acknowledge, so the node keeps streaming */
		if (frame_put_ack(&b, m.seq) == 0)
			send_frames(r, &b, 1);
		break;
	case FRAME_ACK:
		r->acks++;
		r->last_ack = m.seq;
		say("recv ACK seq=%llu", (unsigned long long)m.seq);
		break;
	case FRAME_ERASE_RECEIPT:
		say("recv ERASE_RECEIPT %s/%s", show(m.coll), show(m.id));
		break;
	case FRAME_PING:
		if (frame_put_pong(&b, m.nonce) == 0)
			send_frames(r, &b, 1);
		break;
	case FRAME_PONG:
		r->pongs++;
		if (!r->quiet_pong)
			say("recv PONG nonce=%llu",
			    (unsigned long long)m.nonce);
		break;
	case FRAME_ERROR:
		r->errors++;
		say("recv ERROR code=%lld message=\"%s\"", (long long)m.code,
		    show(m.text));
		break;
	}
	nbx_buf_fini(&b);
}

/* ------------------------------------------------------------------ */
/* Building frames                                                     */
/* ------------------------------------------------------------------ */

static void
be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Appends a frame with the given body (any bytes) to b. */
static void
put_raw_frame(struct nbx_buf *b, const void *body, size_t len)
{
	uint8_t hdr[FRAME_HDR];

	be32(hdr, (uint32_t)len);
	nbx_buf_append(b, hdr, sizeof(hdr));
	nbx_buf_append(b, body, len);
}

/* Sends HELLO (and SUBSCRIBE from 0 unless hello_only). */
static void
send_hello(struct rogue *r, int subscribe)
{
	struct nbx_buf b;

	nbx_buf_init(&b, 1 << 20);
	frame_put_hello(&b, SYNC_PROTO_VERSION, nbx_str_c(r->self),
	    ROGUE_EPOCH);
	if (subscribe)
		frame_put_subscribe(&b, 0, 0);
	send_frames(r, &b, subscribe ? 2 : 1);
	say("sent HELLO%s", subscribe ? " + SUBSCRIBE" : "");
	nbx_buf_fini(&b);
}

/* A change of the rogue's choosing; strings are literals or long-lived. */
static struct change
mk_field(const char *coll, const char *id, const char *field,
    const char *val, uint64_t hlc, const char *origin)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = CHANGE_FIELD;
	c.coll = nbx_str_c(coll);
	c.id = nbx_str_c(id);
	c.field = nbx_str_c(field);
	c.val.t = NBX_V_STR;
	c.val.s = nbx_str_c(val);
	c.hlc = hlc;
	c.origin = nbx_str_c(origin);
	return c;
}

static void
set_aud(struct nbx_audience *a, uint64_t hlc, const char *origin,
    const char *const *ids)
{
	memset(a, 0, sizeof(*a));
	a->hlc = hlc;
	a->origin = nbx_str_c(origin);
	for (a->n = 0; ids[a->n] && a->n < NBX_AUD_MAX; a->n++)
		a->ids[a->n] = nbx_str_c(ids[a->n]);
}

/*
 * Sends one CHANGES frame (upto `upto`) holding chs[0..n) and waits for
 * its ACK.  Returns 1 if the ACK came.
 */
static uint64_t want_ack;

static int
acked(struct rogue *r)
{
	return r->acks > 0 && r->last_ack >= want_ack;
}

static int
send_batch(struct rogue *r, const struct change *chs, size_t n,
    uint64_t upto, const char *const *labels)
{
	struct nbx_buf b;
	struct frame_batch fb;
	int rc;

	nbx_buf_init(&b, FRAME_HDR + FRAME_BODY_MAX);
	if ((rc = frame_changes_begin(&b, ROGUE_EPOCH, &fb)) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if ((rc = frame_changes_add(&b, &fb, &chs[i])) != 0)
			goto fail;
		say("send change %zu [%s]: %s/%s field=%s origin=%s hlc=%llu "
		    "(ms %+lld from now) value=%s", i, labels ? labels[i] : "",
		    show(chs[i].coll), show(chs[i].id), show(chs[i].field),
		    show(chs[i].origin), (unsigned long long)chs[i].hlc,
		    (long long)(HLC_MS(chs[i].hlc) - now_ms()),
		    value_str(&chs[i].val));
	}
	if ((rc = frame_changes_finish(&b, &fb, upto)) != 0)
		goto fail;
	send_frames(r, &b, 1);
	say("sent CHANGES upto=%llu changes=%zu", (unsigned long long)upto, n);
	nbx_buf_fini(&b);
	want_ack = upto;
	if (wait_for(r, acked, r->wait_ms))
		return 1;
	say("no ACK for upto=%llu%s", (unsigned long long)upto,
	    r->closed ? " (connection closed)" : "");
	return 0;
fail:
	say("cannot build the batch: %s", nbx_strerror(rc));
	nbx_buf_fini(&b);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Scripts: hostile frames                                             */
/* ------------------------------------------------------------------ */

/* After a hostile frame: give the node time to react, and report. */
static void
await_reaction(struct rogue *r)
{
	wait_for(r, is_closed, r->wait_ms);
	if (!r->closed)
		say("node kept the connection open for %llu ms",
		    (unsigned long long)r->wait_ms);
}

static int
script_oversize(struct rogue *r)
{
	static const uint8_t prefix[4] = { 0xff, 0xff, 0xff, 0xff };
	static uint8_t zeros[IO_CHUNK];

	send_hello(r, 1);
	send_plain(r, prefix, sizeof(prefix));
	say("sent length prefix 0xffffffff");
	/* what an attacker would stream next; the node must not buffer it */
	for (int i = 0; i < 16 && !r->closed; i++) {
		send_plain(r, zeros, sizeof(zeros));
		pump(r, 0);
	}
	await_reaction(r);
	return 0;
}

static int
script_truncated(struct rogue *r, int clean)
{
	uint8_t frame[FRAME_HDR + 500];

	send_hello(r, 1);
	/* a frame announcing 1000 body bytes, of which 500 are sent */
	be32(frame, 1000);
	memset(frame + FRAME_HDR, 0x90, 500);
	send_plain(r, frame, sizeof(frame));
	say("sent half a frame (504 of 1004 bytes)");
	pump(r, 100);
	if (clean) {
		tls_conn_shutdown(r->tls);
		flush_out(r);
		say("sent close_notify");
	}
	shutdown(r->fd, SHUT_WR);
	r->eof_sent = 1;
	say("sent EOF (TCP FIN)%s", clean ? "" : " without close_notify");
	await_reaction(r);
	return 0;
}

static int
script_body(struct rogue *r, const char *what, const uint8_t *body,
    size_t len)
{
	struct nbx_buf b;

	send_hello(r, 1);
	nbx_buf_init(&b, 1 << 20);
	put_raw_frame(&b, body, len);
	send_frames(r, &b, 1);
	nbx_buf_fini(&b);
	say("sent %s (body of %zu bytes)", what, len);
	await_reaction(r);
	return 0;
}

static int
script_ddff(struct rogue *r)
{
	static const uint8_t body[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };

	return script_body(r, "dd ff ff ff ff", body, sizeof(body));
}

static int
script_deep(struct rogue *r)
{
	uint8_t body[101];

	memset(body, 0x91, 100);	/* fixarray of 1, 100 times */
	body[100] = 0x90;		/* the innermost: an empty array */
	return script_body(r, "100 nested arrays", body, sizeof(body));
}

/* Builds the body of one wrongtypes variant in b; 0 or -1 if unknown. */
static int
wrongtype_body(struct rogue *r, const char *v, struct nbx_buf *b,
    int *before_hello)
{
	msgpack_packer pk;
	struct nbx_str self = nbx_str_c(r->self);

	nbx_mp_packer_init(&pk, b);
	*before_hello = 0;
	if (!strcmp(v, "hello-version-str")) {
		*before_hello = 1;
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, FRAME_HELLO);
		nbx_mp_pack_str(&pk, NBX_STR("1"));
		nbx_mp_pack_str(&pk, self);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
	} else if (!strcmp(v, "hello-node-int")) {
		*before_hello = 1;
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, FRAME_HELLO);
		msgpack_pack_uint8(&pk, SYNC_PROTO_VERSION);
		msgpack_pack_uint8(&pk, 7);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
	} else if (!strcmp(v, "type-str")) {
		*before_hello = 1;
		msgpack_pack_array(&pk, 4);
		nbx_mp_pack_str(&pk, NBX_STR("hello"));
		msgpack_pack_uint8(&pk, SYNC_PROTO_VERSION);
		nbx_mp_pack_str(&pk, self);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
	} else if (!strcmp(v, "unknown-type")) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint8(&pk, 99);
		msgpack_pack_uint8(&pk, 1);
	} else if (!strcmp(v, "map-body")) {
		msgpack_pack_map(&pk, 1);
		msgpack_pack_uint8(&pk, 1);
		msgpack_pack_uint8(&pk, 1);
	} else if (!strcmp(v, "changes-not-array")) {
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, FRAME_CHANGES);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
		msgpack_pack_uint8(&pk, 1);
		nbx_mp_pack_str(&pk, NBX_STR("changes"));
	} else if (!strcmp(v, "change-bad-kind")) {
		/* [3, epoch, 1, [[1, "field", "service", "x:1", ...]]] */
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, FRAME_CHANGES);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
		msgpack_pack_uint8(&pk, 1);
		msgpack_pack_array(&pk, 1);
		msgpack_pack_array(&pk, 9);
		msgpack_pack_uint8(&pk, 1);
		nbx_mp_pack_str(&pk, NBX_STR("field"));
		nbx_mp_pack_str(&pk, NBX_STR("service"));
		nbx_mp_pack_str(&pk, NBX_STR("rg:wrongtypes"));
		msgpack_pack_uint64(&pk, HLC_MAKE(now_ms(), 0));
		nbx_mp_pack_str(&pk, self);
		nbx_mp_pack_str(&pk, NBX_STR("name"));
		nbx_mp_pack_str(&pk, NBX_STR("CANARY-WRONGTYPE"));
		msgpack_pack_nil(&pk);
	} else if (!strcmp(v, "ack-negative")) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint8(&pk, FRAME_ACK);
		msgpack_pack_int8(&pk, -1);
	} else if (!strcmp(v, "ping-nil")) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint8(&pk, FRAME_PING);
		msgpack_pack_nil(&pk);
	} else if (!strcmp(v, "subscribe-short")) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint8(&pk, FRAME_SUBSCRIBE);
		msgpack_pack_uint64(&pk, 0);
	} else {
		return -1;
	}
	return 0;
}

static int
script_wrongtype(struct rogue *r, const char *v)
{
	struct nbx_buf body, b;
	int before_hello;

	nbx_buf_init(&body, 1 << 20);
	nbx_buf_init(&b, 1 << 20);
	if (wrongtype_body(r, v, &body, &before_hello) != 0) {
		say("unknown wrongtypes variant '%s'", v);
		nbx_buf_fini(&body);
		nbx_buf_fini(&b);
		return 2;
	}
	if (!before_hello)
		send_hello(r, 1);
	put_raw_frame(&b, body.p, body.len);
	send_frames(r, &b, 1);
	say("sent wrongtypes/%s (body of %zu bytes)", v, body.len);
	nbx_buf_fini(&body);
	nbx_buf_fini(&b);
	await_reaction(r);
	return 0;
}

static int
script_trailing(struct rogue *r, const char *v)
{
	struct nbx_buf b, body;
	struct frame_batch fb;
	struct change c;
	uint8_t extra[2] = { 0xc0, 0xc0 };

	nbx_buf_init(&b, 1 << 20);
	nbx_buf_init(&body, 1 << 20);
	send_hello(r, 1);
	if (v == NULL || !strcmp(v, "ping")) {
		/* [6, 1] then two nils, all inside the announced body */
		static const uint8_t ping[] = { 0x92, 0x06, 0x01 };

		nbx_buf_append(&body, ping, sizeof(ping));
		nbx_buf_append(&body, extra, sizeof(extra));
		put_raw_frame(&b, body.p, body.len);
	} else if (!strcmp(v, "changes")) {
		/* a valid one-change CHANGES whose body goes on after it */
		c = mk_field("service", "rg:trailing", "name",
		    "CANARY-TRAILING", HLC_MAKE(now_ms(), 0), r->self);
		frame_changes_begin(&b, ROGUE_EPOCH, &fb);
		frame_changes_add(&b, &fb, &c);
		frame_changes_finish(&b, &fb, 1);
		nbx_buf_append(&b, extra, sizeof(extra));
		be32(b.p + fb.start, (uint32_t)(b.len - fb.start - FRAME_HDR));
	} else {
		say("unknown trailing variant '%s'", v);
		nbx_buf_fini(&b);
		nbx_buf_fini(&body);
		return 2;
	}
	send_frames(r, &b, 1);
	say("sent a valid %s frame with 2 trailing bytes inside its body",
	    v ? v : "ping");
	nbx_buf_fini(&b);
	nbx_buf_fini(&body);
	await_reaction(r);
	return 0;
}

static int
script_pingflood(struct rogue *r, unsigned long n, int noread)
{
	struct nbx_buf b;
	uint64_t t0 = mono_ms(), sent = 0;
	const unsigned per = 4096;

	send_hello(r, 1);
	r->quiet_pong = 1;
	nbx_buf_init(&b, 1 << 20);
	while (sent < n && !r->closed) {
		unsigned k = 0;

		for (; k < per && sent + k < n; k++)
			frame_put_ping(&b, sent + k + 1);
		send_frames(r, &b, k);
		sent += k;
		if (!noread)
			while (pump(r, 0) > 0)
				;
	}
	nbx_buf_fini(&b);
	say("sent %llu PINGs in %llu ms%s", (unsigned long long)sent,
	    (unsigned long long)(mono_ms() - t0), r->closed ?
	    " (connection closed during the flood)" : "");
	/* collect the PONGs (or the node's verdict) */
	{
		uint64_t end = mono_ms() + r->wait_ms;

		while (!r->closed && r->pongs < sent && mono_ms() < end)
			pump(r, 100);
	}
	say("received %llu PONGs for %llu PINGs", (unsigned long long)r->pongs,
	    (unsigned long long)sent);
	return 0;
}

static int
script_garbage(struct rogue *r)
{
	uint8_t body[4092];
	uint32_t x = 0x6e627821;	/* fixed seed: the run is repeatable */

	for (size_t i = 0; i < sizeof(body); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		body[i] = (uint8_t)x;
	}
	/* not a msgpack array: a random first byte could by chance be a
	 * HELLO-looking fixarray; 0xc1 is never valid msgpack */
	body[0] = 0xc1;
	return script_body(r, "seeded random bytes", body, sizeof(body));
}

/* ------------------------------------------------------------------ */
/* Scripts: clocks                                                     */
/* ------------------------------------------------------------------ */

/*
 * On a record the rogue itself created (rg:clock-1, collection service,
 * region fields, writers = origin, so only the clock is wrong):
 *   batch 1  name = "clock genuine 1" stamped now          -> applies
 *   batch 2  city   stamped now + drift + 100 ms           -> quarantined
 *            phone  stamped one day ahead                  -> quarantined
 *            email  stamped hlc = UINT64_MAX               -> quarantined
 *            capacity = 7 stamped (now ms, counter 0xffff) -> applies
 *   batch 3  name = "clock genuine 2" stamped now (later)  -> applies
 * "+ drift + 1 ms" cannot be hit exactly across two processes (the node
 * reads its clock a few ms after ours), so the first is 100 ms past the
 * bound.  Each batch must be ACKed: quarantine keeps the session.
 */
static int
script_clock(struct rogue *r)
{
	char id[NBX_RECID_MAX + 1];
	struct change c[4];
	const char *labels[4];
	uint64_t t;

	snprintf(id, sizeof(id), "%s:clock-1", r->self);
	send_hello(r, 1);
	t = now_ms();
	c[0] = mk_field("service", id, "name", "clock genuine 1",
	    HLC_MAKE(t, 0), r->self);
	labels[0] = "genuine";
	if (!send_batch(r, c, 1, 1, labels))
		return 0;
	sleep_ms(5);
	t = now_ms();
	c[0] = mk_field("service", id, "city", "CANARY-CLOCK-drift",
	    HLC_MAKE(t + r->drift_ms + 100, 0), r->self);
	labels[0] = "drift bound + 100 ms";
	c[1] = mk_field("service", id, "phone", "CANARY-CLOCK-day",
	    HLC_MAKE(t + 86400000ull, 0), r->self);
	labels[1] = "one day ahead";
	c[2] = mk_field("service", id, "email", "CANARY-CLOCK-max",
	    UINT64_MAX, r->self);
	labels[2] = "hlc UINT64_MAX";
	c[3] = mk_field("service", id, "capacity", "", HLC_MAKE(t, 0xffff),
	    r->self);
	c[3].val.t = NBX_V_INT;
	c[3].val.i = 7;
	labels[3] = "counter at max, ms = now";
	if (!send_batch(r, c, 4, 2, labels))
		return 0;
	sleep_ms(5);
	c[0] = mk_field("service", id, "name", "clock genuine 2",
	    HLC_MAKE(now_ms(), 0), r->self);
	labels[0] = "genuine, later";
	send_batch(r, c, 1, 3, labels);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Scripts: spoofing                                                   */
/* ------------------------------------------------------------------ */

/*
 * One batch against records of `victim` (a genuine peer of the node) and
 * of the rogue's own, with the node itself as `node`:
 *   0 service VICTIM:s1 name, origin = rogue             -> writer
 *   1 case VICTIM:case-1 AUDIENCE [node, victim, rogue],
 *     origin = rogue (widening)                          -> writer
 *   2 case ROGUE:case-9 pseudonym under audience
 *     [rogue, victim], without the node                  -> audience
 *   3 service ROGUE:s1 address (share = local)           -> local
 *   4 case VICTIM:case-1 status (writers = audience) by the rogue,
 *     under a claimed newer audience [node, victim, rogue] -> writer
 *   5 service ROGUE:s1 name                              genuine
 *   6 case ROGUE:case-2 AUDIENCE [rogue, node]           genuine
 *   7 case ROGUE:case-2 pseudonym under that audience    genuine
 *   8 service VICTIM:s1 name, origin = VICTIM (forged)   see below
 * Change 8 claims to come from the victim itself.  The node cannot tell
 * it from a relayed change (A -> B -> C carries A's origin), so nothing
 * in the protocol refuses it; it is sent last and marked, so a test can
 * report what the node did with it.
 */
static int
script_spoof(struct rogue *r, const char *victim)
{
	static char vs1[NBX_RECID_MAX + 1], vcase[NBX_RECID_MAX + 1];
	static char rcase9[NBX_RECID_MAX + 1], rs1[NBX_RECID_MAX + 1];
	static char rcase2[NBX_RECID_MAX + 1];
	const char *node = r->expect, *self = r->self;
	const char *wide[] = { node, victim, self, NULL };
	const char *noself[] = { self, victim, NULL };
	const char *mine[] = { self, node, NULL };
	const char *labels[9];
	struct change c[9];
	uint64_t t;

	snprintf(vs1, sizeof(vs1), "%s:s1", victim);
	snprintf(vcase, sizeof(vcase), "%s:case-1", victim);
	snprintf(rcase9, sizeof(rcase9), "%s:case-9", self);
	snprintf(rs1, sizeof(rs1), "%s:s1", self);
	snprintf(rcase2, sizeof(rcase2), "%s:case-2", self);
	send_hello(r, 1);
	t = now_ms();
	c[0] = mk_field("service", vs1, "name", "CANARY-SPOOF-writer",
	    HLC_MAKE(t, 1), self);
	labels[0] = "writer: rogue writes victim's writers=origin field";
	memset(&c[1], 0, sizeof(c[1]));
	c[1].kind = CHANGE_AUDIENCE;
	c[1].coll = NBX_STR("case");
	c[1].id = nbx_str_c(vcase);
	c[1].hlc = HLC_MAKE(t, 2);
	c[1].origin = nbx_str_c(self);
	set_aud(&c[1].aud, c[1].hlc, self, wide);
	labels[1] = "writer: rogue widens the audience of victim's case";
	c[2] = mk_field("case", rcase9, "pseudonym", "CANARY-SPOOF-audience",
	    HLC_MAKE(t, 3), self);
	set_aud(&c[2].aud, HLC_MAKE(t, 0), self, noself);
	labels[2] = "audience: scoped value whose audience lacks the node";
	c[3] = mk_field("service", rs1, "address", "CANARY-SPOOF-local",
	    HLC_MAKE(t, 4), self);
	labels[3] = "local: a share=local field";
	c[4] = mk_field("case", vcase, "status", "declined", HLC_MAKE(t, 5),
	    self);
	set_aud(&c[4].aud, HLC_MAKE(t, 5), self, wide);
	labels[4] = "writer: writers=audience field under a claimed audience";
	c[5] = mk_field("service", rs1, "name", "rogue genuine service",
	    HLC_MAKE(t, 6), self);
	labels[5] = "genuine";
	memset(&c[6], 0, sizeof(c[6]));
	c[6].kind = CHANGE_AUDIENCE;
	c[6].coll = NBX_STR("case");
	c[6].id = nbx_str_c(rcase2);
	c[6].hlc = HLC_MAKE(t, 7);
	c[6].origin = nbx_str_c(self);
	set_aud(&c[6].aud, c[6].hlc, self, mine);
	labels[6] = "genuine";
	c[7] = mk_field("case", rcase2, "pseudonym", "K-rogue-2",
	    HLC_MAKE(t, 8), self);
	set_aud(&c[7].aud, c[6].hlc, self, mine);
	labels[7] = "genuine";
	c[8] = mk_field("service", vs1, "name", "FORGED-ORIGIN-name",
	    HLC_MAKE(t, 9), victim);
	labels[8] = "forged origin: claims to be the victim";
	send_batch(r, c, 9, 1, labels);
	return 0;
}

/* One genuine change of the rogue's own record: a harmless baseline. */
static int
script_record(struct rogue *r, char **args, int nargs)
{
	struct change c;
	const char *label = "genuine";

	if (nargs < 4) {
		say("record needs COLL ID FIELD VALUE");
		return 2;
	}
	send_hello(r, 1);
	c = mk_field(args[0], args[1], args[2], args[3],
	    HLC_MAKE(now_ms(), 0), r->self);
	send_batch(r, &c, 1, 1, &label);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Main                                                                */
/* ------------------------------------------------------------------ */

/* Runs one script on one connection.  Returns the exit status. */
static int
run_script(struct rogue *r, const char *name, char **args, int nargs)
{
	int rc;

	if (conn_open(r) != 0) {
		conn_close(r);
		return 1;
	}
	if (!strcmp(name, "hello")) {
		send_hello(r, 1);
		await_reaction(r);
		rc = 0;
	} else if (!strcmp(name, "oversize")) {
		rc = script_oversize(r);
	} else if (!strcmp(name, "truncated")) {
		rc = script_truncated(r, nargs > 0 && !strcmp(args[0], "clean"));
	} else if (!strcmp(name, "ddff")) {
		rc = script_ddff(r);
	} else if (!strcmp(name, "deep")) {
		rc = script_deep(r);
	} else if (!strcmp(name, "wrongtypes")) {
		rc = script_wrongtype(r, args[0]);
	} else if (!strcmp(name, "trailing")) {
		rc = script_trailing(r, nargs > 0 ? args[0] : NULL);
	} else if (!strcmp(name, "pingflood")) {
		rc = script_pingflood(r, nargs > 0 ? strtoul(args[0], NULL,
		    10) : 100000, nargs > 1 && !strcmp(args[1], "noread"));
	} else if (!strcmp(name, "garbage-after-hello")) {
		rc = script_garbage(r);
	} else if (!strcmp(name, "clock")) {
		rc = script_clock(r);
	} else if (!strcmp(name, "spoof")) {
		rc = script_spoof(r, args[0]);
	} else if (!strcmp(name, "record")) {
		rc = script_record(r, args, nargs);
	} else {
		say("unknown script '%s'", name);
		rc = 2;
	}
	if (r->linger_ms > 0 && !r->closed) {
		say("lingering for %llu ms", (unsigned long long)r->linger_ms);
		wait_for(r, NULL, r->linger_ms);
	}
	say("summary script=%s frames_sent=%llu frames_recv=%llu acks=%llu "
	    "last_ack=%llu errors=%llu closed_by_node=%s", name,
	    (unsigned long long)r->frames_sent,
	    (unsigned long long)r->frames_recv,
	    (unsigned long long)r->acks, (unsigned long long)r->last_ack,
	    (unsigned long long)r->errors, r->closed ? "yes" : "no");
	conn_close(r);
	return rc;
}

static int
usage(const char *why)
{
	if (why)
		fprintf(stderr, "nbx-rogue: %s\n", why);
	fputs(USAGE, stderr);
	return 2;
}

int
main(int argc, char **argv)
{
	struct rogue r;
	const char *script = NULL, *colon;
	char err[512], host[64];
	int i, rc, nargs;
	char **args;

	memset(&r, 0, sizeof(r));
	r.fd = -1;
	r.wait_ms = 3000;
	r.drift_ms = HLC_DEFAULT_DRIFT_MS;
	for (i = 1; i < argc && script == NULL; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(USAGE, stdout);
			return 0;
		}
		if (v == NULL)
			return usage("an option lacks its value");
		i++;
		if (!strcmp(a, "--ca"))
			r.ca = v;
		else if (!strcmp(a, "--cert"))
			r.cert = v;
		else if (!strcmp(a, "--key"))
			r.key = v;
		else if (!strcmp(a, "--expect"))
			r.expect = v;
		else if (!strcmp(a, "--connect"))
			r.host = v;
		else if (!strcmp(a, "--wait"))
			r.wait_ms = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--drift"))
			r.drift_ms = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--linger"))
			r.linger_ms = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--script"))
			script = v;
		else
			return usage("unknown option");
	}
	if (!r.ca || !r.cert || !r.key || !r.expect || !r.host || !script)
		return usage("--ca, --cert, --key, --connect, --expect and "
		    "--script are required");
	if ((colon = strrchr(r.host, ':')) == NULL ||
	    (size_t)(colon - r.host) >= sizeof(host) ||
	    (r.port = (unsigned)strtoul(colon + 1, NULL, 10)) == 0 ||
	    r.port > 65535)
		return usage("--connect takes HOST:PORT");
	memcpy(host, r.host, (size_t)(colon - r.host));
	host[colon - r.host] = 0;
	r.host = host;
	args = argv + i;
	nargs = argc - i;
	if ((!strcmp(script, "wrongtypes") || !strcmp(script, "spoof")) &&
	    nargs < 1)
		return usage("this script needs an argument");
	if (!strcmp(script, "keyupdate")) {
		/*
		 * daemon/tls.h keeps the SSL object opaque and offers no key
		 * update call, so the rogue cannot ask for one through the
		 * project's TLS module.
		 */
		say("skipped: keyupdate: daemon/tls.h has no way to send a TLS "
		    "KeyUpdate");
		return 3;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((rc = tls_ctx_new(r.ca, r.cert, r.key, NULL, err, sizeof(err),
	    &r.ctx)) != 0) {
		say("TLS setup: %s", err);
		return 1;
	}
	r.self = tls_ctx_id(r.ctx);
	nbx_buf_init(&r.in, FRAME_HDR + 2 * (size_t)FRAME_BODY_MAX);
	if (!strcmp(script, "wrongtypes") && !strcmp(args[0], "all")) {
		rc = 0;
		for (int k = 0; wrongtype_variants[k] && rc == 0; k++) {
			char *one[1] = { (char *)wrongtype_variants[k] };

			say("--- wrongtypes %s", one[0]);
			rc = run_script(&r, script, one, 1);
		}
	} else {
		rc = run_script(&r, script, args, nargs);
	}
	nbx_buf_fini(&r.in);
	tls_ctx_free(r.ctx);
	return rc;
}
