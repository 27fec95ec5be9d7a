/*
 * frame_fuzz.c - libFuzzer harness for the sync protocol's framing and
 * message codec (proto/frame.h).
 *
 * The input is read twice: as a stream of length-prefixed frames (split
 * with frame_split, as the session does), and as one frame body on its
 * own, so that the fuzzer need not get a length prefix right to reach the
 * decoder.  Every body is decoded; for CHANGES every element is iterated
 * with frame_changes_next and decoded with change_decode.
 *
 * Checked, besides the sanitizers: frame_decode_lazy agrees with
 * frame_decode on what a session would apply, only the documented codes
 * come back, outputs are cleared on failure, everything borrowed lies
 * inside the input, the element iteration yields exactly nchanges
 * elements, and a
 * decoded message re-encoded with the frame_put_* encoders (or the
 * CHANGES builder) decodes to the same message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "frame.h"

static int
frame_inside(struct nbx_str s, const uint8_t *p, size_t n)
{
	return s.n == 0 || ((const uint8_t *)s.p >= p &&
	    (const uint8_t *)s.p + s.n <= p + n);
}

/* The one frame in b, split and decoded; aborts unless it is whole. */
static void
frame_redecode(const struct nbx_buf *b, struct frame_msg *m)
{
	const uint8_t *body;
	size_t blen, used;

	fz_check(frame_split(b->p, b->len, FRAME_BODY_MAX, &body, &blen,
	    &used) == 0 && used == b->len, "re-encoded frame splits");
	fz_check(frame_decode(body, blen, m) == 0, "re-encoded frame decodes");
}

static void
frame_same(const struct frame_msg *a, const struct frame_msg *b)
{
	fz_check(a->type == b->type, "type survives");
	fz_check(a->version == b->version && a->epoch == b->epoch &&
	    a->seq == b->seq && a->nonce == b->nonce && a->code == b->code &&
	    a->hlc == b->hlc && a->nchanges == b->nchanges &&
	    a->version_max == b->version_max && a->last_seq == b->last_seq &&
	    a->run == b->run && a->payload_len == b->payload_len &&
	    a->nkhs == b->nkhs, "numbers survive");
	fz_check((a->schema == NULL) == (b->schema == NULL) &&
	    (a->schema == NULL || memcmp(a->schema, b->schema,
	    FRAME_SCHEMA_LEN) == 0), "schema digest survives");
	fz_check(a->payload_len == 0 || memcmp(a->payload, b->payload,
	    a->payload_len) == 0, "RECON payload survives");
	fz_check(a->nkhs == 0 || memcmp(a->khs, b->khs, 8 * (size_t)a->nkhs) ==
	    0, "WANT key hashes survive");
	fz_check(nbx_str_eq(a->node, b->node) && nbx_str_eq(a->coll, b->coll) &&
	    nbx_str_eq(a->id, b->id) && nbx_str_eq(a->origin, b->origin),
	    "strings survive");
}

/*
 * Rebuilds a CHANGES message from its elements, raw and (where they
 * decode) re-encoded, and compares.
 */
static void
frame_changes_again(const struct frame_msg *m, struct nbx_buf *b)
{
	struct frame_batch fb, fb2;
	struct frame_msg m2;
	struct nbx_buf b2;
	const uint8_t *p;
	size_t off = 0, len, used, off2 = 0;
	struct change c, c2;
	uint32_t n = 0, ndec = 0;
	int rc;

	nbx_buf_init(&b2, FRAME_HDR + FRAME_BODY_MAX);
	if (m->type == FRAME_RECORDS) {
		fz_check(frame_records_begin(b, &fb) == 0, "begin");
		fz_check(frame_records_begin(&b2, &fb2) == 0, "begin 2");
	} else {
		fz_check(frame_changes_begin(b, m->epoch, &fb) == 0, "begin");
		fz_check(frame_changes_begin(&b2, m->epoch, &fb2) == 0,
		    "begin 2");
	}
	while ((rc = frame_changes_next(m, &off, &p, &len)) == 1) {
		fz_check(p >= m->changes && p + len <= m->changes +
		    m->changes_len && len > 0, "element inside the body");
		n++;
		fz_check(frame_changes_add_raw(b, &fb, p, len) == 0, "add raw");
		rc = change_decode(p, len, &c, &used);
		if (rc != 0) {
			fz_check(rc == NBX_EAGAIN || rc == NBX_EMALFORMED ||
			    rc == NBX_ETOOBIG || rc == NBX_EDEPTH,
			    "change_decode code");
			continue;
		}
		fz_check(used >= 1 && used <= len, "change within element");
		if (used != len)
			continue;	/* the session refuses these */
		fz_check(frame_changes_add(&b2, &fb2, &c) == 0, "add decoded");
		ndec++;
	}
	fz_check(rc == 0, "elements fill the body");
	fz_check(n == m->nchanges, "element count");
	fz_check(frame_changes_finish(b, &fb, m->seq) == 0, "finish");
	frame_redecode(b, &m2);
	frame_same(m, &m2);
	fz_check(m2.changes_len == m->changes_len &&
	    memcmp(m2.changes, m->changes, m->changes_len) == 0,
	    "elements survive");

	/* the decodable elements, re-encoded, decode to equal changes */
	fz_check(frame_changes_finish(&b2, &fb2, m->seq) == 0, "finish 2");
	frame_redecode(&b2, &m2);
	fz_check(m2.nchanges == ndec, "decoded count");
	off = 0;
	while ((rc = frame_changes_next(m, &off, &p, &len)) == 1) {
		if (change_decode(p, len, &c, &used) != 0 || used != len)
			continue;
		fz_check(frame_changes_next(&m2, &off2, &p, &len) == 1,
		    "re-encoded element present");
		fz_check(change_decode(p, len, &c2, &used) == 0 && used == len,
		    "re-encoded element decodes");
		fz_check(change_eq(&c, &c2), "change survives");
	}
	nbx_buf_fini(&b2);
}

/*
 * frame_decode_lazy (what the session uses) leaves CHANGES elements to
 * the caller.  Whatever it accepts and the session would then accept
 * (every announced change decodes, and they fill the body) frame_decode
 * accepts too, with the same message; other types decode alike.
 */
static void
lazy_agrees(const uint8_t *body, size_t len)
{
	struct frame_msg ml, m;
	struct change c;
	size_t off = 0;
	uint32_t n = 0;
	int rl = frame_decode_lazy(body, len, &ml), rf, rc = 1;

	rf = frame_decode(body, len, &m);
	if (rl != 0) {
		fz_check(rl == NBX_EMALFORMED || rl == NBX_ETOOBIG, "lazy code");
		fz_check(rf != 0 || m.type == FRAME_CHANGES ||
		    m.type == FRAME_RECORDS,
		    "lazy refuses only CHANGES the scan accepts");
		return;
	}
	if (ml.type == FRAME_CHANGES || ml.type == FRAME_RECORDS) {
		while (n < ml.nchanges &&
		    (rc = frame_changes_decode(&ml, &off, &c)) == 1)
			n++;
		fz_check(off <= ml.changes_len, "decode stays inside");
		if (n != ml.nchanges || off != ml.changes_len)
			return;		/* the session refuses it */
	}
	fz_check(rf == 0, "frame_decode accepts what the session applies");
	fz_check(m.type == ml.type && m.epoch == ml.epoch && m.seq == ml.seq &&
	    m.nchanges == ml.nchanges && m.changes_len == ml.changes_len,
	    "same message");
}

static void
frame_body(const uint8_t *body, size_t len)
{
	static const struct frame_msg zero;
	struct frame_msg m, m2;
	struct nbx_buf b;
	int rc;

	lazy_agrees(body, len);
	rc = frame_decode(body, len, &m);
	if (rc != 0) {
		fz_check(rc == NBX_EMALFORMED || rc == NBX_ETOOBIG,
		    "frame_decode code");
		fz_check(memcmp(&m, &zero, sizeof(m)) == 0, "cleared on error");
		return;
	}
	fz_check(m.type >= FRAME_HELLO && m.type <= FRAME_TYPE_MAX,
	    "known type");
	fz_check(frame_inside(m.node, body, len) &&
	    frame_inside(m.text, body, len) && frame_inside(m.coll, body, len) &&
	    frame_inside(m.id, body, len) && frame_inside(m.origin, body, len),
	    "strings inside the body");
	fz_check(m.node.n <= NBX_ID_MAX && m.text.n <= FRAME_TEXT_MAX &&
	    m.coll.n <= NBX_NAME_MAX && m.id.n <= NBX_RECID_MAX &&
	    m.origin.n <= NBX_ID_MAX, "string caps");

	nbx_buf_init(&b, FRAME_HDR + FRAME_BODY_MAX);
	switch (m.type) {
	case FRAME_HELLO: {
		struct frame_hello h = { m.version, m.version_max, m.node,
		    m.epoch, m.schema, m.last_seq };

		fz_check(m.node.n >= 1, "HELLO node");
		fz_check(m.version_max >= m.version, "HELLO versions ordered");
		fz_check((m.schema != NULL ? frame_put_hello2(&b, &h) :
		    frame_put_hello(&b, m.version, m.node, m.epoch)) == 0,
		    "HELLO encodes");
		break;
	}
	case FRAME_RECON:
		fz_check(frame_put_recon(&b, m.run, m.payload, m.payload_len) ==
		    0, "RECON encodes");
		break;
	case FRAME_WANT: {
		uint64_t *khs = malloc(8 * (size_t)m.nkhs + 8);

		fz_check(khs != NULL && m.nkhs <= FRAME_WANT_MAX, "WANT size");
		for (uint32_t i = 0; i < m.nkhs; i++)
			khs[i] = frame_want_kh(&m, i);
		fz_check(frame_put_want(&b, khs, m.nkhs) == 0, "WANT encodes");
		free(khs);
		break;
	}
	case FRAME_SUBSCRIBE:
		fz_check(frame_put_subscribe(&b, m.epoch, m.seq) == 0,
		    "SUBSCRIBE encodes");
		break;
	case FRAME_CHANGES:
	case FRAME_RECORDS:
		fz_check(m.nchanges <= FRAME_CHANGES_MAX, "CHANGES count");
		frame_changes_again(&m, &b);
		nbx_buf_fini(&b);
		return;
	case FRAME_ACK:
		fz_check(frame_put_ack(&b, m.seq) == 0, "ACK encodes");
		break;
	case FRAME_ERASE_RECEIPT:
		fz_check(frame_put_erase_receipt(&b, m.coll, m.id, m.hlc,
		    m.origin) == 0, "ERASE_RECEIPT encodes");
		break;
	case FRAME_PING:
		fz_check(frame_put_ping(&b, m.nonce) == 0, "PING encodes");
		break;
	case FRAME_PONG:
		fz_check(frame_put_pong(&b, m.nonce) == 0, "PONG encodes");
		break;
	case FRAME_ERROR: {
		/* the encoder takes a C string: compare only NUL-free text */
		char *t = fz_text((const uint8_t *)m.text.p, m.text.n);

		fz_check(frame_put_error(&b, m.code, t) == 0, "ERROR encodes");
		frame_redecode(&b, &m2);
		if (memchr(m.text.p, 0, m.text.n) == NULL)
			fz_check(nbx_str_eq(m.text, m2.text), "text survives");
		free(t);
		break;
	}
	}
	frame_redecode(&b, &m2);
	frame_same(&m, &m2);
	nbx_buf_fini(&b);
}

int nbx_fuzz_frame(const uint8_t *data, size_t size);

int
nbx_fuzz_frame(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *body;
	size_t n = size, blen, used;
	int rc;

	/* the input as a stream of frames */
	for (;;) {
		rc = frame_split(p, n, FRAME_BODY_MAX, &body, &blen, &used);
		if (rc != 0) {
			fz_check(rc == NBX_EAGAIN || rc == NBX_ETOOBIG,
			    "frame_split code");
			fz_check(body == NULL && blen == 0 && used == 0,
			    "frame_split cleared");
			fz_check(rc == NBX_ETOOBIG ? n >= FRAME_HDR : 1,
			    "ETOOBIG only from a whole prefix");
			break;
		}
		fz_check(body == p + FRAME_HDR && used == FRAME_HDR + blen &&
		    used <= n && blen <= FRAME_BODY_MAX, "frame_split bounds");
		/* a smaller cap is decided from the prefix alone */
		if (blen > 0)
			fz_check(frame_split(p, FRAME_HDR, blen - 1, &body,
			    &blen, &used) == NBX_ETOOBIG, "prefix decides cap");
		rc = frame_split(p, n, FRAME_BODY_MAX, &body, &blen, &used);
		fz_check(rc == 0, "split repeats");
		frame_body(body, blen);
		p += used;
		n -= used;
	}
	/* the whole input as one body */
	frame_body(data, size);
	return 0;
}

#ifdef NBX_LIBFUZZER
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return nbx_fuzz_frame(data, size);
}
#endif
