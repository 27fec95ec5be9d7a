/*
 * frame.c - framing and message codec of the sync protocol (frame.h).
 *
 * Decoding never hands a frame body to msgpack-c: a CHANGES body of 16 MiB
 * may hold millions of tiny objects, and msgpack-c would reserve an object
 * for each.  Instead mpscan validates the whole body within tight limits,
 * and a small cursor reader below takes out the few top-level items a
 * message has.  The change elements are left as bytes for change_decode,
 * one at a time.
 *
 * Encoding uses msgpack-c's packer (shortest forms), except the CHANGES
 * header, which is written with fixed-width upto_seq and element count so
 * that finish can patch them in place.
 */
#include <string.h>

#include <msgpack.h>

#include "frame.h"
#include "mpbuf.h"
#include "mpscan.h"
#include "nbx_err.h"

static void
be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint64_t
be_get(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* ------------------------------------------------------------------ */
/* Splitting                                                           */
/* ------------------------------------------------------------------ */

int
frame_split(const uint8_t *buf, size_t len, size_t max,
    const uint8_t **body, size_t *body_len, size_t *used)
{
	uint64_t n;

	*body = NULL;
	*body_len = 0;
	*used = 0;
	if (len < FRAME_HDR)
		return NBX_EAGAIN;
	n = be_get(buf, FRAME_HDR);
	if (n > max)
		return NBX_ETOOBIG;
	if (len - FRAME_HDR < n)
		return NBX_EAGAIN;
	*body = buf + FRAME_HDR;
	*body_len = (size_t)n;
	*used = FRAME_HDR + (size_t)n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Reading validated msgpack                                           */
/* ------------------------------------------------------------------ */

/*
 * A cursor over bytes mpscan already passed.  Every read still checks the
 * bytes it needs against what is left: the reader trusts mpscan's verdict
 * on structure, not on arithmetic.  Each reader returns 0 or
 * NBX_EMALFORMED (wrong type, value out of range, bytes missing).
 */
struct rd {
	const uint8_t *p;
	size_t len, off;
};

static int
rd_need(const struct rd *r, size_t n)
{
	return r->len - r->off >= n ? 0 : NBX_EMALFORMED;
}

static int
rd_array(struct rd *r, uint32_t *n)
{
	uint8_t b;
	size_t w;

	if (rd_need(r, 1) != 0)
		return NBX_EMALFORMED;
	b = r->p[r->off];
	if (b >= 0x90 && b <= 0x9f) {
		*n = b & 0x0f;
		r->off++;
		return 0;
	}
	if (b != 0xdc && b != 0xdd)
		return NBX_EMALFORMED;
	w = b == 0xdc ? 2 : 4;
	if (rd_need(r, 1 + w) != 0)
		return NBX_EMALFORMED;
	*n = (uint32_t)be_get(r->p + r->off + 1, w);
	r->off += 1 + w;
	return 0;
}

/* Any integer form; *neg tells a negative value (then *v is its bits). */
static int
rd_int(struct rd *r, uint64_t *v, int *neg)
{
	uint8_t b;
	size_t w;

	*neg = 0;
	if (rd_need(r, 1) != 0)
		return NBX_EMALFORMED;
	b = r->p[r->off];
	if (b <= 0x7f || b >= 0xe0) {
		*v = b <= 0x7f ? b : (uint64_t)(int64_t)(int8_t)b;
		*neg = b >= 0xe0;
		r->off++;
		return 0;
	}
	if (b >= 0xcc && b <= 0xcf)
		w = (size_t)1 << (b - 0xcc);
	else if (b >= 0xd0 && b <= 0xd3)
		w = (size_t)1 << (b - 0xd0);
	else
		return NBX_EMALFORMED;
	if (rd_need(r, 1 + w) != 0)
		return NBX_EMALFORMED;
	*v = be_get(r->p + r->off + 1, w);
	if (b >= 0xd0 && (r->p[r->off + 1] & 0x80)) {
		/* sign-extend a negative signed form to 64 bits */
		if (w < 8)
			*v |= ~(uint64_t)0 << (8 * w);
		*neg = 1;
	}
	r->off += 1 + w;
	return 0;
}

static int
rd_u64(struct rd *r, uint64_t *v)
{
	int neg;

	if (rd_int(r, v, &neg) != 0 || neg)
		return NBX_EMALFORMED;
	return 0;
}

static int
rd_i64(struct rd *r, int64_t *v)
{
	uint64_t u;
	int neg;

	if (rd_int(r, &u, &neg) != 0 || (!neg && u > INT64_MAX))
		return NBX_EMALFORMED;
	*v = (int64_t)u;
	return 0;
}

static int
rd_str(struct rd *r, uint32_t min, uint32_t max, struct nbx_str *s)
{
	uint8_t b;
	size_t w = 0;
	uint64_t n;

	if (rd_need(r, 1) != 0)
		return NBX_EMALFORMED;
	b = r->p[r->off];
	if (b >= 0xa0 && b <= 0xbf)
		n = b & 0x1f;
	else if (b >= 0xd9 && b <= 0xdb) {
		w = (size_t)1 << (b - 0xd9);
		if (rd_need(r, 1 + w) != 0)
			return NBX_EMALFORMED;
		n = be_get(r->p + r->off + 1, w);
	} else
		return NBX_EMALFORMED;
	if (n < min || n > max || rd_need(r, 1 + w + (size_t)n) != 0)
		return NBX_EMALFORMED;
	s->p = (const char *)r->p + r->off + 1 + w;
	s->n = (uint32_t)n;
	r->off += 1 + w + (size_t)n;
	return 0;
}

/* Skips one object of any type. */
static int
rd_skip(struct rd *r)
{
	static const struct mpscan_limits any = {
		.max_depth = FRAME_DEPTH_MAX,
		.max_str = NBX_STR_MAX,
		.max_count = FRAME_CHANGES_MAX,
		.max_objects = UINT32_MAX,
		.max_size = FRAME_BODY_MAX,
	};
	size_t size;

	if (mpscan_object(r->p + r->off, r->len - r->off, &any, &size) != 0)
		return NBX_EMALFORMED;
	r->off += size;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding                                                            */
/* ------------------------------------------------------------------ */

/* Elements of each message type, type included (0: no such type). */
static const uint32_t arity[] = { 0, 4, 3, 4, 2, 5, 2, 2, 3 };

static int
decode_changes(struct rd *r, struct frame_msg *m)
{
	uint32_t n;
	size_t off = 0;
	const uint8_t *p;
	size_t len;
	int rc;

	if (rd_u64(r, &m->epoch) != 0 || rd_u64(r, &m->seq) != 0 ||
	    rd_array(r, &n) != 0)
		return NBX_EMALFORMED;
	if (n > FRAME_CHANGES_MAX)
		return NBX_EMALFORMED;
	m->nchanges = n;
	m->changes = r->p + r->off;
	m->changes_len = r->len - r->off;
	/* every element must be an array and together they fill the rest */
	for (uint32_t i = 0; i < n; i++) {
		if ((rc = frame_changes_next(m, &off, &p, &len)) != 1)
			return NBX_EMALFORMED;
		if (!((p[0] >= 0x90 && p[0] <= 0x9f) || p[0] == 0xdc ||
		    p[0] == 0xdd))
			return NBX_EMALFORMED;
	}
	r->off += off;
	return 0;
}

static int
decode_body(struct rd *r, struct frame_msg *m)
{
	uint32_t n;
	uint64_t type;

	if (rd_array(r, &n) != 0 || n < 1 || rd_u64(r, &type) != 0 ||
	    type < FRAME_HELLO || type > FRAME_ERROR)
		return NBX_EMALFORMED;
	m->type = (enum frame_type)type;
	if (m->type == FRAME_HELLO ? n < arity[type] : n != arity[type])
		return NBX_EMALFORMED;
	switch (m->type) {
	case FRAME_HELLO:
		if (rd_u64(r, &m->version) != 0 ||
		    rd_str(r, 1, NBX_ID_MAX, &m->node) != 0 ||
		    rd_u64(r, &m->epoch) != 0)
			return NBX_EMALFORMED;
		for (uint32_t i = arity[type]; i < n; i++)
			if (rd_skip(r) != 0)
				return NBX_EMALFORMED;
		return 0;
	case FRAME_SUBSCRIBE:
		return rd_u64(r, &m->epoch) || rd_u64(r, &m->seq) ?
		    NBX_EMALFORMED : 0;
	case FRAME_CHANGES:
		return decode_changes(r, m);
	case FRAME_ACK:
		return rd_u64(r, &m->seq) ? NBX_EMALFORMED : 0;
	case FRAME_ERASE_RECEIPT:
		return rd_str(r, 1, NBX_NAME_MAX, &m->coll) ||
		    rd_str(r, 1, NBX_RECID_MAX, &m->id) ||
		    rd_u64(r, &m->hlc) ||
		    rd_str(r, 1, NBX_ID_MAX, &m->origin) ? NBX_EMALFORMED : 0;
	case FRAME_PING:
	case FRAME_PONG:
		return rd_u64(r, &m->nonce) ? NBX_EMALFORMED : 0;
	case FRAME_ERROR:
		return rd_i64(r, &m->code) ||
		    rd_str(r, 0, FRAME_TEXT_MAX, &m->text) ? NBX_EMALFORMED : 0;
	}
	return NBX_EMALFORMED;
}

int
frame_decode(const uint8_t *body, size_t len, struct frame_msg *out)
{
	struct mpscan_limits lim = {
		.max_depth = FRAME_DEPTH_MAX,
		.max_str = NBX_STR_MAX,
		.max_count = FRAME_CHANGES_MAX,
		.max_objects = (uint32_t)len,
		.max_size = len,
	};
	struct rd r = { body, len, 0 };
	size_t size;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len > FRAME_BODY_MAX)
		return NBX_ETOOBIG;
	if (body == NULL || len == 0)
		return NBX_EMALFORMED;
	/*
	 * The body is complete, so every failure here (a prefix, a count
	 * larger than the bytes present, too deep, trailing bytes) means
	 * the peer sent something that is not a message.
	 */
	if (mpscan_object(body, len, &lim, &size) != 0 || size != len) {
		rc = NBX_EMALFORMED;
		goto out;
	}
	if ((rc = decode_body(&r, out)) != 0)
		goto out;
	if (r.off != len)
		rc = NBX_EMALFORMED;
out:
	if (rc != 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

int
frame_changes_next(const struct frame_msg *m, size_t *off, const uint8_t **p,
    size_t *len)
{
	static const struct mpscan_limits elem = {
		.max_depth = FRAME_DEPTH_MAX,
		.max_str = NBX_STR_MAX,
		.max_count = FRAME_CHANGES_MAX,
		.max_objects = UINT32_MAX,
		.max_size = FRAME_BODY_MAX,
	};
	size_t size;

	*p = NULL;
	*len = 0;
	if (*off >= m->changes_len)
		return 0;
	if (mpscan_object(m->changes + *off, m->changes_len - *off, &elem,
	    &size) != 0)
		return NBX_EMALFORMED;
	*p = m->changes + *off;
	*len = size;
	*off += size;
	return 1;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

/* Reserves the length prefix and points a packer at b. */
static int
frame_open(struct nbx_buf *b, struct nbx_mp_sink *s, msgpack_packer *pk,
    size_t *start)
{
	static const uint8_t zero[FRAME_HDR];

	*start = b->len;
	nbx_mp_sink_init(pk, s, b);
	return nbx_buf_append(b, zero, sizeof(zero));
}

/* Patches the prefix, or drops the frame if packing failed. */
static int
frame_close(struct nbx_buf *b, const struct nbx_mp_sink *s, size_t start)
{
	size_t n = b->len - start - FRAME_HDR;
	int rc = s->err;

	if (rc == 0 && n > FRAME_BODY_MAX)
		rc = NBX_ETOOBIG;
	if (rc != 0) {
		b->len = start;
		return rc;
	}
	be32_put(b->p + start, (uint32_t)n);
	return 0;
}

/*
 * Each encoder packs through the sink, ignoring the packer's return codes:
 * the sink keeps the first failure, which frame_close reports after
 * dropping the partial frame.
 */

/* The two-element messages: [type, unsigned]. */
static int
put_u64_msg(struct nbx_buf *b, enum frame_type t, uint64_t v)
{
	msgpack_packer pk;
	struct nbx_mp_sink sk;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &sk, &pk, &start)) != 0)
		return rc;
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint32(&pk, t);
	msgpack_pack_uint64(&pk, v);
	return frame_close(b, &sk, start);
}

int
frame_put_hello(struct nbx_buf *b, uint64_t version, struct nbx_str node,
    uint64_t epoch)
{
	msgpack_packer pk;
	struct nbx_mp_sink sk;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &sk, &pk, &start)) != 0)
		return rc;
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, FRAME_HELLO);
	msgpack_pack_uint64(&pk, version);
	nbx_mp_pack_str(&pk, node);
	msgpack_pack_uint64(&pk, epoch);
	return frame_close(b, &sk, start);
}

int
frame_put_subscribe(struct nbx_buf *b, uint64_t epoch, uint64_t from)
{
	msgpack_packer pk;
	struct nbx_mp_sink sk;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &sk, &pk, &start)) != 0)
		return rc;
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint32(&pk, FRAME_SUBSCRIBE);
	msgpack_pack_uint64(&pk, epoch);
	msgpack_pack_uint64(&pk, from);
	return frame_close(b, &sk, start);
}

int
frame_put_ack(struct nbx_buf *b, uint64_t seq)
{
	return put_u64_msg(b, FRAME_ACK, seq);
}

int
frame_put_erase_receipt(struct nbx_buf *b, struct nbx_str coll,
    struct nbx_str id, uint64_t hlc, struct nbx_str origin)
{
	msgpack_packer pk;
	struct nbx_mp_sink sk;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &sk, &pk, &start)) != 0)
		return rc;
	msgpack_pack_array(&pk, 5);
	msgpack_pack_uint32(&pk, FRAME_ERASE_RECEIPT);
	nbx_mp_pack_str(&pk, coll);
	nbx_mp_pack_str(&pk, id);
	msgpack_pack_uint64(&pk, hlc);
	nbx_mp_pack_str(&pk, origin);
	return frame_close(b, &sk, start);
}

int
frame_put_ping(struct nbx_buf *b, uint64_t nonce)
{
	return put_u64_msg(b, FRAME_PING, nonce);
}

int
frame_put_pong(struct nbx_buf *b, uint64_t nonce)
{
	return put_u64_msg(b, FRAME_PONG, nonce);
}

int
frame_put_error(struct nbx_buf *b, int64_t code, const char *msg)
{
	msgpack_packer pk;
	struct nbx_str s = nbx_str_c(msg ? msg : "");
	struct nbx_mp_sink sk;
	size_t start;
	int rc;

	if (s.n > FRAME_TEXT_MAX)
		s.n = FRAME_TEXT_MAX;
	if ((rc = frame_open(b, &sk, &pk, &start)) != 0)
		return rc;
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint32(&pk, FRAME_ERROR);
	msgpack_pack_int64(&pk, code);
	nbx_mp_pack_str(&pk, s);
	return frame_close(b, &sk, start);
}

/* ------------------------------------------------------------------ */
/* CHANGES, built incrementally                                        */
/* ------------------------------------------------------------------ */

/*
 * Layout after the prefix: 0x94 (array of 4), 0x03, epoch (shortest),
 * 0xcf + 8 bytes upto_seq, 0xdd + 4 bytes element count, elements.  The
 * fixed-width fields let finish patch them in place; fb->fixed remembers
 * where they are.
 */
#define UPTO_W	9
#define COUNT_W	5

int
frame_changes_begin(struct nbx_buf *b, uint64_t epoch, struct frame_batch *fb)
{
	static const uint8_t fixed[UPTO_W + COUNT_W] = { 0xcf, 0, 0, 0, 0, 0,
	    0, 0, 0, 0xdd, 0, 0, 0, 0 };
	msgpack_packer pk;
	struct nbx_mp_sink sk;
	size_t start;
	int rc;

	memset(fb, 0, sizeof(*fb));
	if ((rc = frame_open(b, &sk, &pk, &start)) != 0)
		return rc;
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, FRAME_CHANGES);
	msgpack_pack_uint64(&pk, epoch);
	fb->fixed = b->len;
	(void)nbx_mp_sink_write(&sk, (const char *)fixed, sizeof(fixed));
	if (sk.err != 0) {
		b->len = start;
		return sk.err;
	}
	fb->start = start;
	return 0;
}

int
frame_changes_add(struct nbx_buf *b, struct frame_batch *fb,
    const struct change *c)
{
	int rc;

	if (fb->n >= FRAME_CHANGES_MAX)
		return NBX_ETOOBIG;
	if ((rc = change_encode(c, b)) != 0)
		return rc;
	fb->n++;
	return 0;
}

int
frame_changes_add_raw(struct nbx_buf *b, struct frame_batch *fb,
    const void *enc, size_t n)
{
	int rc;

	if (fb->n >= FRAME_CHANGES_MAX)
		return NBX_ETOOBIG;
	if ((rc = nbx_buf_append(b, enc, n)) != 0)
		return rc;
	fb->n++;
	return 0;
}

size_t
frame_changes_size(const struct nbx_buf *b, const struct frame_batch *fb)
{
	return b->len - fb->start - FRAME_HDR;
}

int
frame_changes_finish(struct nbx_buf *b, struct frame_batch *fb, uint64_t upto)
{
	size_t n = frame_changes_size(b, fb);
	uint8_t *p = b->p + fb->fixed;

	if (n > FRAME_BODY_MAX)
		return NBX_ETOOBIG;
	be32_put(b->p + fb->start, (uint32_t)n);
	for (int i = 8; i >= 1; i--, upto >>= 8)
		p[i] = (uint8_t)upto;
	be32_put(p + UPTO_W + 1, fb->n);
	return 0;
}
