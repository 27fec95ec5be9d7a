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
 * Encoding goes through mpwrite.h, the project's one msgpack writer
 * (shortest forms, byte for byte what msgpack-c's packer writes), except
 * the CHANGES header's upto_seq and element count, written fixed-width so
 * that finish can patch them in place.
 */
#include <string.h>


#include "frame.h"
#include "mpwrite.h"
#include "mpread.h"
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
	n = mpread_be(buf, FRAME_HDR);
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
/* Reading                                                             */
/* ------------------------------------------------------------------ */

/*
 * The top level of a message is read with the mpread cursor (every read
 * checks the bytes it needs); the rare items nobody reads (HELLO's
 * extensions) are skipped with mpscan, and every change element is
 * scanned once so that the elements provably tile the rest of the body.
 */
/* Skips one object of any type. */
static int
rd_skip(struct mpread *r)
{
	static const struct mpscan_limits any = {
		.max_depth = FRAME_DEPTH_MAX - 1,	/* under the frame */
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
static const uint32_t arity[] = { 0, 4, 3, 4, 2, 5, 2, 2, 3, 3, 4, 2 };
#define HELLO2_ARITY	7

#define CHANGE_MIN_BYTES	10

static int
decode_changes(struct mpread *r, struct frame_msg *m, int scan)
{
	uint32_t n;
	size_t off = 0;
	const uint8_t *p;
	size_t len;
	int rc;

	if (mpread_u64(r, &m->epoch) != 0 || mpread_u64(r, &m->seq) != 0 ||
	    mpread_array(r, &n) != 0)
		return NBX_EMALFORMED;
	if (n > FRAME_CHANGES_MAX)
		return NBX_EMALFORMED;
	m->nchanges = n;
	m->changes = r->p + r->off;
	m->changes_len = r->len - r->off;
	/*
	 * Unscanned, the count must at least fit the bytes: no change
	 * encodes in fewer than CHANGE_MIN_BYTES (an ERASE with 1-byte
	 * names), and callers size arrays by it.
	 */
	if (!scan && (size_t)n * CHANGE_MIN_BYTES > m->changes_len)
		return NBX_EMALFORMED;
	/* every element must be an array and together they fill the rest */
	for (uint32_t i = 0; scan && i < n; i++) {
		if ((rc = frame_changes_next(m, &off, &p, &len)) != 1)
			return NBX_EMALFORMED;
		if (!((p[0] >= 0x90 && p[0] <= 0x9f) || p[0] == 0xdc ||
		    p[0] == 0xdd))
			return NBX_EMALFORMED;
	}
	r->off += scan ? off : m->changes_len;
	return 0;
}

static int
decode_body(struct mpread *r, struct frame_msg *m, int scan)
{
	uint32_t n;
	uint64_t type;
	uint32_t len;

	if (mpread_array(r, &n) != 0 || n < 1 || mpread_u64(r, &type) != 0 ||
	    type < FRAME_HELLO || type > FRAME_TYPE_MAX)
		return NBX_EMALFORMED;
	m->type = (enum frame_type)type;
	if (m->type == FRAME_HELLO ? n < arity[type] : n != arity[type])
		return NBX_EMALFORMED;
	switch (m->type) {
	case FRAME_HELLO:
		if (mpread_u64(r, &m->version) != 0 ||
		    mpread_str(r, 1, NBX_ID_MAX, &m->node) != 0 ||
		    mpread_u64(r, &m->epoch) != 0)
			return NBX_EMALFORMED;
		m->version_max = m->version;
		if (n >= HELLO2_ARITY && (mpread_u64(r, &m->version_max) != 0 ||
		    mpread_bin(r, FRAME_SCHEMA_LEN, FRAME_SCHEMA_LEN, &m->schema,
		    &len) != 0 || mpread_u64(r, &m->last_seq) != 0 ||
		    m->version_max < m->version))
			return NBX_EMALFORMED;
		for (uint32_t i = n >= HELLO2_ARITY ? HELLO2_ARITY : arity[type];
		    i < n; i++)
			if (rd_skip(r) != 0)
				return NBX_EMALFORMED;
		return 0;
	case FRAME_SUBSCRIBE:
		return mpread_u64(r, &m->epoch) || mpread_u64(r, &m->seq) ?
		    NBX_EMALFORMED : 0;
	case FRAME_CHANGES:
		return decode_changes(r, m, scan);
	case FRAME_RECORDS:	/* no log position: epoch and upto are 0 */
		return decode_changes(r, m, scan) != 0 || m->epoch != 0 ||
		    m->seq != 0 ? NBX_EMALFORMED : 0;
	case FRAME_RECON:
		if (mpread_u64(r, &m->run) != 0 || mpread_bin(r, 0,
		    FRAME_BODY_MAX, &m->payload, &len) != 0)
			return NBX_EMALFORMED;
		m->payload_len = len;
		return 0;
	case FRAME_WANT:
		if (mpread_bin(r, 0, FRAME_WANT_MAX * 8, &m->khs, &len) != 0 ||
		    len % 8 != 0)
			return NBX_EMALFORMED;
		m->nkhs = len / 8;
		return 0;
	case FRAME_ACK:
		return mpread_u64(r, &m->seq) ? NBX_EMALFORMED : 0;
	case FRAME_ERASE_RECEIPT:
		return mpread_str(r, 1, NBX_NAME_MAX, &m->coll) ||
		    mpread_str(r, 1, NBX_RECID_MAX, &m->id) ||
		    mpread_u64(r, &m->hlc) ||
		    mpread_str(r, 1, NBX_ID_MAX, &m->origin) ? NBX_EMALFORMED : 0;
	case FRAME_PING:
	case FRAME_PONG:
		return mpread_u64(r, &m->nonce) ? NBX_EMALFORMED : 0;
	case FRAME_ERROR:
		return mpread_i64(r, &m->code) ||
		    mpread_str(r, 0, FRAME_TEXT_MAX, &m->text) ? NBX_EMALFORMED : 0;
	}
	return NBX_EMALFORMED;
}

static int
decode(const uint8_t *body, size_t len, struct frame_msg *out, int scan)
{
	struct mpread r = { body, len, 0 };
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
	if ((rc = decode_body(&r, out, scan)) != 0)
		goto out;
	if (r.off != len)
		rc = NBX_EMALFORMED;
out:
	if (rc != 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

int
frame_decode(const uint8_t *body, size_t len, struct frame_msg *out)
{
	return decode(body, len, out, 1);
}

int
frame_decode_lazy(const uint8_t *body, size_t len, struct frame_msg *out)
{
	return decode(body, len, out, 0);
}

int
frame_changes_next(const struct frame_msg *m, size_t *off, const uint8_t **p,
    size_t *len)
{
	/* an element sits two levels down: the frame, then the batch */
	static const struct mpscan_limits elem = {
		.max_depth = FRAME_DEPTH_MAX - 2,
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

int
frame_changes_decode(const struct frame_msg *m, size_t *off,
    struct change *c)
{
	size_t used;
	int rc;

	if (*off >= m->changes_len)
		return 0;
	if ((rc = change_decode(m->changes + *off, m->changes_len - *off, c,
	    &used)) != 0)
		return rc == NBX_EAGAIN ? NBX_EMALFORMED : rc;
	*off += used;
	return 1;
}

int
frame_src_next(void *arg, struct change *c)
{
	struct frame_src *x = arg;
	int rc;

	if (x->n == x->m->nchanges) {	/* and nothing after them */
		if (x->off == x->m->changes_len)
			return 0;
		return x->err = NBX_EMALFORMED;
	}
	if ((rc = frame_changes_decode(x->m, &x->off, c)) != 1)
		return x->err = rc < 0 ? rc : NBX_EMALFORMED;	/* fewer */
	x->n++;
	return 1;
}

void
frame_src_rewind(void *arg)
{
	struct frame_src *x = arg;

	x->off = 0;
	x->n = 0;
	x->err = 0;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

/*
 * Starts a frame at the end of b: reserves its length prefix and points
 * the writer at b for the body.  Writers' errors are sticky (mpwrite.h),
 * so an encoder writes its whole body and frame_close looks once.
 */
static int
frame_open(struct nbx_buf *b, struct mpwrite *w, size_t *start)
{
	static const uint8_t zero[FRAME_HDR];

	*start = b->len;
	mpwrite_init(w, b);
	return nbx_buf_append(b, zero, sizeof(zero));
}

/* Patches the prefix, or drops the frame if writing it failed. */
static int
frame_close(struct nbx_buf *b, const struct mpwrite *w, size_t start)
{
	size_t n = b->len - start - FRAME_HDR;
	int rc = w->err;

	if (rc == 0 && n > FRAME_BODY_MAX)
		rc = NBX_ETOOBIG;
	if (rc != 0) {
		b->len = start;
		return rc;
	}
	be32_put(b->p + start, (uint32_t)n);
	return 0;
}

/* The two-element messages: [type, unsigned]. */
static int
put_u64_msg(struct nbx_buf *b, enum frame_type t, uint64_t v)
{
	struct mpwrite w;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, 2);
	mpwrite_uint(&w, t);
	mpwrite_uint(&w, v);
	return frame_close(b, &w, start);
}

int
frame_put_hello(struct nbx_buf *b, uint64_t version, struct nbx_str node,
    uint64_t epoch)
{
	struct mpwrite w;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, 4);
	mpwrite_uint(&w, FRAME_HELLO);
	mpwrite_uint(&w, version);
	mpwrite_str(&w, node);
	mpwrite_uint(&w, epoch);
	return frame_close(b, &w, start);
}

int
frame_put_hello2(struct nbx_buf *b, const struct frame_hello *h)
{
	struct mpwrite w;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, HELLO2_ARITY);
	mpwrite_uint(&w, FRAME_HELLO);
	mpwrite_uint(&w, h->version_min);
	mpwrite_str(&w, h->node);
	mpwrite_uint(&w, h->epoch);
	mpwrite_uint(&w, h->version_max);
	mpwrite_bin(&w, h->schema, FRAME_SCHEMA_LEN);
	mpwrite_uint(&w, h->last_seq);
	return frame_close(b, &w, start);
}

int
frame_put_recon(struct nbx_buf *b, uint64_t run, const void *payload,
    size_t len)
{
	struct mpwrite w;
	size_t start;
	int rc;

	if (len > FRAME_BODY_MAX)
		return NBX_ETOOBIG;
	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, 3);
	mpwrite_uint(&w, FRAME_RECON);
	mpwrite_uint(&w, run);
	mpwrite_bin(&w, payload, (uint32_t)len);
	return frame_close(b, &w, start);
}

int
frame_put_want(struct nbx_buf *b, const uint64_t *khs, size_t n)
{
	struct mpwrite w;
	size_t start;
	int rc;

	if (n > FRAME_WANT_MAX)
		return NBX_EINVAL;
	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, 2);
	mpwrite_uint(&w, FRAME_WANT);
	mpwrite_bin_head(&w, (uint32_t)(n * 8));
	for (size_t i = 0; i < n; i++)
		mpwrite_u64be(&w, khs[i]);
	return frame_close(b, &w, start);
}

uint64_t
frame_want_kh(const struct frame_msg *m, uint32_t i)
{
	return mpread_be(m->khs + (size_t)i * 8, 8);
}

int
frame_put_subscribe(struct nbx_buf *b, uint64_t epoch, uint64_t from)
{
	struct mpwrite w;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, 3);
	mpwrite_uint(&w, FRAME_SUBSCRIBE);
	mpwrite_uint(&w, epoch);
	mpwrite_uint(&w, from);
	return frame_close(b, &w, start);
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
	struct mpwrite w;
	size_t start;
	int rc;

	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, 5);
	mpwrite_uint(&w, FRAME_ERASE_RECEIPT);
	mpwrite_str(&w, coll);
	mpwrite_str(&w, id);
	mpwrite_uint(&w, hlc);
	mpwrite_str(&w, origin);
	return frame_close(b, &w, start);
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
	struct nbx_str s = nbx_str_c(msg ? msg : "");
	struct mpwrite w;
	size_t start;
	int rc;

	if (s.n > FRAME_TEXT_MAX)
		s.n = FRAME_TEXT_MAX;
	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, 3);
	mpwrite_uint(&w, FRAME_ERROR);
	mpwrite_int(&w, code);
	mpwrite_str(&w, s);
	return frame_close(b, &w, start);
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

static int
batch_begin(struct nbx_buf *b, enum frame_type type, uint64_t epoch,
    struct frame_batch *fb)
{
	static const uint8_t fixed[UPTO_W + COUNT_W] = { 0xcf, 0, 0, 0, 0, 0,
	    0, 0, 0, 0xdd, 0, 0, 0, 0 };
	struct mpwrite w;
	size_t start;
	int rc;

	memset(fb, 0, sizeof(*fb));
	if ((rc = frame_open(b, &w, &start)) != 0)
		return rc;
	mpwrite_array(&w, 4);
	mpwrite_uint(&w, type);
	mpwrite_uint(&w, epoch);
	fb->fixed = b->len;
	mpwrite_raw(&w, fixed, sizeof(fixed));
	if (w.err != 0) {
		b->len = start;
		return w.err;
	}
	fb->start = start;
	return 0;
}

int
frame_changes_begin(struct nbx_buf *b, uint64_t epoch, struct frame_batch *fb)
{
	return batch_begin(b, FRAME_CHANGES, epoch, fb);
}

int
frame_records_begin(struct nbx_buf *b, struct frame_batch *fb)
{
	return batch_begin(b, FRAME_RECORDS, 0, fb);
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
