/*
 * rogue_io.c - the rogue peer's connection (rogue.h): a blocking TCP
 * socket, the project's TLS module over it (daemon/tls.h, as a client
 * that expects the node's identity), frames in and out with the
 * project's frame and change codecs, and the printing of every event.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "hlc.h"
#include "nbx_err.h"
#include "rogue.h"
#include "session.h"

/* ------------------------------------------------------------------ */
/* Output and time                                                     */
/* ------------------------------------------------------------------ */

void
rogue_say(const char *fmt, ...)
{
	va_list ap;

	fputs("rogue: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

uint64_t
rogue_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
rogue_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
rogue_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Printable copy of peer bytes, for output lines. */
const char *
rogue_show(struct nbx_str s)
{
	static char buf[8][160];
	static int k;
	char *b = buf[k = (k + 1) % 8];
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
void
rogue_flush(struct rogue *r)
{
	uint8_t *buf;
	size_t n, off;
	ssize_t k;

	while (!r->closed && r->tls &&
	    (n = tls_conn_take_buf(r->tls, &buf)) > 0) {
		for (off = 0; off < n && !r->closed; off += (size_t)k) {
			k = send(r->fd, buf + off, n - off, MSG_NOSIGNAL);
			if (k < 0 && errno == EINTR) {
				k = 0;
				continue;
			}
			if (k <= 0) {
				rogue_say("send failed: %s (the node closed "
				    "the connection)", k < 0 ?
				    strerror(errno) : "0 bytes");
				r->closed = 1;
				break;
			}
		}
		free(buf);
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
	uint8_t buf[ROGUE_IO_CHUNK];
	size_t got;
	int rc;

	for (;;) {
		rc = tls_conn_read(r->tls, buf, sizeof(buf), &got);
		if (rc == NBX_EAGAIN)
			break;
		if (rc == NBX_ECLOSED) {
			if (!r->closed)
				rogue_say("node sent close_notify");
			r->closed = 1;
			break;
		}
		if (rc != 0) {
			if (!r->closed)
				rogue_say("TLS error from the node: %s",
				    tls_conn_error(r->tls));
			r->closed = 1;
			break;
		}
		if (nbx_buf_append(&r->in, buf, got) != 0) {
			rogue_say("input buffer full; dropping the connection");
			r->closed = 1;
			break;
		}
		drain_frames(r);
	}
	rogue_flush(r);
}

/*
 * Waits up to timeout_ms for bytes from the node and processes them.
 * Returns 1 if something was read, 0 on timeout, -1 once the connection
 * has ended.
 */
int
rogue_pump(struct rogue *r, int timeout_ms)
{
	struct pollfd pfd = { r->fd, POLLIN, 0 };
	uint8_t buf[ROGUE_IO_CHUNK];
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
			rogue_say("connection reset by the node: %s",
			    strerror(errno));
		else if (tls_conn_eof(r->tls) == 0)
			rogue_say("node closed the connection (EOF after "
			    "close_notify)");
		else
			rogue_say("node closed the connection (EOF without "
			    "close_notify)");
		r->closed = 1;
		read_plain(r);
		return -1;
	}
	if (tls_conn_feed(r->tls, buf, (size_t)n) != 0) {
		rogue_say("TLS feed failed: %s", tls_conn_error(r->tls));
		r->closed = 1;
		return -1;
	}
	read_plain(r);
	return r->closed ? -1 : 1;
}

/* Pumps until pred(r) holds, the node closes, or timeout_ms passes. */
int
rogue_wait_for(struct rogue *r, int (*pred)(struct rogue *),
    uint64_t timeout_ms)
{
	uint64_t end = rogue_mono_ms() + timeout_ms;

	while (!(pred && pred(r))) {
		uint64_t t = rogue_mono_ms();

		if (t >= end || rogue_pump(r, (int)(end - t)) < 0)
			break;
	}
	return pred && pred(r);
}

int
rogue_is_closed(struct rogue *r)
{
	return r->closed;
}

static int
has_hello(struct rogue *r)
{
	return r->got_hello;
}

/* Encrypts and sends n bytes of plaintext. */
void
rogue_send_plain(struct rogue *r, const void *p, size_t n)
{
	const uint8_t *b = p;
	int rc;

	while (n > 0 && !r->closed) {
		size_t k = n > ROGUE_IO_CHUNK ? ROGUE_IO_CHUNK : n;

		rc = tls_conn_write(r->tls, b, k);
		if (rc == NBX_EAGAIN) {
			rogue_flush(r);
			continue;
		}
		if (rc != 0) {
			rogue_say("TLS write failed: %s",
			    tls_conn_error(r->tls));
			r->closed = 1;
			return;
		}
		b += k;
		n -= k;
		rogue_flush(r);
	}
}

/* Sends whole frames held in b (counted as `frames`), then empties b. */
void
rogue_send_frames(struct rogue *r, struct nbx_buf *b, unsigned frames)
{
	rogue_send_plain(r, b->p, b->len);
	if (!r->closed)
		r->frames_sent += frames;
	b->len = 0;
}

static int
tcp_connect(struct rogue *r)
{
	struct sockaddr_in sa;
	struct timeval tv = { 3, 0 };
	int one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)r->port);
	if (inet_pton(AF_INET, r->host, &sa.sin_addr) != 1) {
		rogue_say("'%s' is not an IPv4 address", r->host);
		return -1;
	}
	if ((r->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return -1;
	setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* a blocked send gives up rather than hang the test */
	setsockopt(r->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rogue_say("connect %s:%u: %s", r->host, r->port,
		    strerror(errno));
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
int
rogue_conn_open(struct rogue *r)
{
	uint64_t end;
	int rc;

	r->closed = r->got_hello = 0;
	r->frames_sent = r->frames_recv = r->pongs = r->acks = 0;
	r->last_ack = r->errors = r->changes_recv = 0;
	r->in.len = 0;
	if (tcp_connect(r) != 0)
		return -1;
	if ((rc = tls_conn_new(r->ctx, 0, r->expect, NULL, &r->tls)) != 0) {
		rogue_say("tls_conn_new: %s", nbx_strerror(rc));
		return -1;
	}
	end = rogue_mono_ms() + ROGUE_SETUP_MS;
	for (;;) {
		rc = tls_conn_handshake(r->tls);
		rogue_flush(r);
		if (rc == 0)
			break;
		if (rc != NBX_EAGAIN) {
			rogue_say("handshake failed: %s",
			    tls_conn_error(r->tls));
			return -1;
		}
		if (r->closed || rogue_mono_ms() >= end) {
			rogue_say("handshake did not complete");
			return -1;
		}
		{
			struct pollfd pfd = { r->fd, POLLIN, 0 };
			uint8_t buf[ROGUE_IO_CHUNK];
			ssize_t n;

			if (poll(&pfd, 1, (int)(end - rogue_mono_ms())) <= 0)
				continue;
			if ((n = recv(r->fd, buf, sizeof(buf), 0)) <= 0) {
				rogue_say("node closed the connection during "
				    "the handshake");
				return -1;
			}
			if (tls_conn_feed(r->tls, buf, (size_t)n) != 0) {
				rogue_say("handshake failed: %s",
				    tls_conn_error(r->tls));
				return -1;
			}
		}
	}
	rogue_say("connected to %s:%u as '%s', TLS 1.3, node identity '%s' "
	    "verified", r->host, r->port, r->self, tls_conn_peer_id(r->tls));
	/* the node checks our certificate after we finish: its HELLO tells
	 * that it accepted us */
	if (!rogue_wait_for(r, has_hello, ROGUE_SETUP_MS)) {
		rogue_say("no HELLO from the node (%s)", r->closed ?
		    "it closed the connection" : "timed out");
		return -1;
	}
	return 0;
}

void
rogue_conn_close(struct rogue *r)
{
	if (r->tls && !r->closed) {
		tls_conn_shutdown(r->tls);
		rogue_flush(r);
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

const char *
rogue_value_str(const struct nbx_value *v)
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
		snprintf(buf, sizeof(buf), "\"%s\"", rogue_show(v->s));
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
		strcat(aud, rogue_show(c->aud.ids[i]));
	}
	rogue_say("recv change kind=%d %s/%s field=%s elem=%s origin=%s "
	    "hlc=%llu value=%s aud=[%s]", (int)c->kind, rogue_show(c->coll),
	    rogue_show(c->id), rogue_show(c->field), rogue_show(c->elem),
	    rogue_show(c->origin),
	    (unsigned long long)c->hlc, rogue_value_str(&c->val), aud);
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
		rogue_say("recv undecodable frame of %zu bytes: %s", len,
		    nbx_strerror(rc));
		return;
	}
	nbx_buf_init(&b, 1 << 20);
	switch (m.type) {
	case FRAME_HELLO:
		r->got_hello = 1;
		r->peer_epoch = m.epoch;
		rogue_say("recv HELLO version=%llu..%llu node=%s epoch=%llu",
		    (unsigned long long)m.version,
		    (unsigned long long)m.version_max, rogue_show(m.node),
		    (unsigned long long)m.epoch);
		break;
	case FRAME_SUBSCRIBE:
		rogue_say("recv SUBSCRIBE epoch=%llu from=%llu",
		    (unsigned long long)m.epoch, (unsigned long long)m.seq);
		break;
	case FRAME_RECON:
		rogue_say("recv RECON run=%llu payload=%zu bytes",
		    (unsigned long long)m.run, m.payload_len);
		break;
	case FRAME_WANT:
		rogue_say("recv WANT of %u records", m.nkhs);
		break;
	case FRAME_RECORDS:
		rogue_say("recv RECORDS changes=%u", m.nchanges);
		break;
	case FRAME_CHANGES:
		rogue_say("recv CHANGES upto=%llu changes=%u",
		    (unsigned long long)m.seq, m.nchanges);
		while (frame_changes_next(&m, &off, &p, &clen) == 1) {
			if (change_decode(p, clen, &c, &used) == 0) {
				print_change(&c);
				r->changes_recv++;
			} else {
				rogue_say("recv change that does not decode");
			}
		}
		/* a polite peer: acknowledge, so the node keeps streaming */
		if (frame_put_ack(&b, m.seq) == 0)
			rogue_send_frames(r, &b, 1);
		break;
	case FRAME_ACK:
		r->acks++;
		r->last_ack = m.seq;
		rogue_say("recv ACK seq=%llu", (unsigned long long)m.seq);
		break;
	case FRAME_ERASE_RECEIPT:
		rogue_say("recv ERASE_RECEIPT %s/%s", rogue_show(m.coll),
		    rogue_show(m.id));
		break;
	case FRAME_PING:
		if (frame_put_pong(&b, m.nonce) == 0)
			rogue_send_frames(r, &b, 1);
		break;
	case FRAME_PONG:
		r->pongs++;
		if (!r->quiet_pong)
			rogue_say("recv PONG nonce=%llu",
			    (unsigned long long)m.nonce);
		break;
	case FRAME_ERROR:
		r->errors++;
		rogue_say("recv ERROR code=%lld message=\"%s\"",
		    (long long)m.code, rogue_show(m.text));
		break;
	}
	nbx_buf_fini(&b);
}

/* ------------------------------------------------------------------ */
/* Building frames                                                     */
/* ------------------------------------------------------------------ */

void
rogue_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Appends a frame with the given body (any bytes) to b. */
void
rogue_put_raw_frame(struct nbx_buf *b, const void *body, size_t len)
{
	uint8_t hdr[FRAME_HDR];

	rogue_be32(hdr, (uint32_t)len);
	nbx_buf_append(b, hdr, sizeof(hdr));
	nbx_buf_append(b, body, len);
}

/* Sends HELLO, and SUBSCRIBE from 0 if `subscribe`. */
void
rogue_send_hello(struct rogue *r, int subscribe)
{
	struct nbx_buf b;

	nbx_buf_init(&b, 1 << 20);
	frame_put_hello(&b, SYNC_PROTO_VERSION, nbx_str_c(r->self),
	    ROGUE_EPOCH);
	if (subscribe)
		frame_put_subscribe(&b, 0, 0);
	rogue_send_frames(r, &b, subscribe ? 2 : 1);
	rogue_say("sent HELLO%s", subscribe ? " + SUBSCRIBE" : "");
	nbx_buf_fini(&b);
}

/* A change of the rogue's choosing; strings are literals or long-lived. */
struct change
rogue_field(const char *coll, const char *id, const char *field,
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

/* An audience version; the ids are sorted and unique, as the wire wants. */
void
rogue_set_aud(struct nbx_audience *a, uint64_t hlc, const char *origin,
    const char *const *ids)
{
	memset(a, 0, sizeof(*a));
	a->hlc = hlc;
	a->origin = nbx_str_c(origin);
	for (size_t i = 0; ids[i] && a->n < NBX_AUD_MAX; i++) {
		struct nbx_str id = nbx_str_c(ids[i]);
		uint32_t at = 0;

		while (at < a->n && nbx_str_cmp(a->ids[at], id) < 0)
			at++;
		if (at < a->n && nbx_str_eq(a->ids[at], id))
			continue;
		memmove(&a->ids[at + 1], &a->ids[at],
		    (a->n - at) * sizeof(a->ids[0]));
		a->ids[at] = id;
		a->n++;
	}
}

static int
acked(struct rogue *r)
{
	return r->acks > 0 && r->last_ack >= r->want_ack;
}

int
rogue_send_batch(struct rogue *r, const struct change *chs, size_t n,
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
		rogue_say("send change %zu [%s]: %s/%s field=%s origin=%s "
		    "hlc=%llu (ms %+lld from now) value=%s", i,
		    labels ? labels[i] : "", rogue_show(chs[i].coll),
		    rogue_show(chs[i].id), rogue_show(chs[i].field),
		    rogue_show(chs[i].origin), (unsigned long long)chs[i].hlc,
		    (long long)(HLC_MS(chs[i].hlc) - rogue_now_ms()),
		    rogue_value_str(&chs[i].val));
	}
	if ((rc = frame_changes_finish(&b, &fb, upto)) != 0)
		goto fail;
	rogue_send_frames(r, &b, 1);
	rogue_say("sent CHANGES upto=%llu changes=%zu",
	    (unsigned long long)upto, n);
	nbx_buf_fini(&b);
	r->want_ack = upto;
	if (rogue_wait_for(r, acked, r->wait_ms))
		return 1;
	rogue_say("no ACK for upto=%llu%s", (unsigned long long)upto,
	    r->closed ? " (connection closed)" : "");
	return 0;
fail:
	rogue_say("cannot build the batch: %s", nbx_strerror(rc));
	nbx_buf_fini(&b);
	return 0;
}
