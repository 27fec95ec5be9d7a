/*
 * change.c - the msgpack codec of a change (see change.h).
 *
 * Wire form, version 1: one msgpack array, positional, whose first two
 * elements fix the rest.
 *
 *   [1, kind, coll, id, hlc, origin, ...by kind]
 *
 *   kind 1 FIELD     ... field, value, aud]                9 elements
 *   kind 2 ELEM      ... field, elem, present, aud]       10 elements
 *   kind 3 STATE     ... state]                            7 elements
 *   kind 4 AUDIENCE  ... [id, ...]]                        7 elements
 *   kind 5 ERASE     ]                                     6 elements
 *   kind 6 RECEIPT   ... what, node, state]                9 elements
 *
 *   coll, field  str 1..NBX_NAME_MAX
 *   id           str 1..NBX_RECID_MAX (the record id)
 *   hlc          uint64
 *   origin       str 1..NBX_ID_MAX
 *   elem         str 0..NBX_STR_MAX
 *   present      bool (ELEM's value: 1 present, 0 removed)
 *   state        int64 (STATE's and RECEIPT's value)
 *   what, node   RECEIPT: str 1..NBX_NAME_MAX ("erase", "revoke") and the
 *                purging node, str 1..NBX_ID_MAX (field and elem)
 *   value        nil | bool | int64 | str 0..NBX_STR_MAX
 *   aud          nil (no audience) |
 *                [aud_hlc uint64, aud_origin str 0..NBX_ID_MAX, [id, ...]]
 *   [id, ...]    0..NBX_AUD_MAX node ids, each str 1..NBX_ID_MAX, strictly
 *                increasing bytewise (sorted, unique)
 *
 * An AUDIENCE change carries its ids once; its audience's hlc and origin
 * are the change's own.  STATE and ERASE carry no audience.  The encoder
 * refuses (NBX_EINVAL) a change whose unused members are not empty, rather
 * than drop them silently.  The leading 1 is the format version: a change
 * to this layout takes a new number, and this decoder refuses any other
 * (NBX_EMALFORMED, as change.h's contract has it).
 *
 * The encoder writes the shortest msgpack form of every item, as
 * msgpack-c's packer does (proto/mpwrite.h); the decoder accepts any
 * msgpack form of the same values (an int in a wider type, a short array
 * in array16) and decodes them to the same struct change.
 *
 * Decoding: change_decode reads valid input in one pass with the mpread
 * cursor.  Whatever it refuses goes to the reference decoder,
 * change_decode_ref, which classifies the error and works in two passes:
 * mpscan_object first validates the bytes
 * against limits derived from this format, because msgpack-c reserves
 * zone memory for every count a header declares; only bytes that passed
 * reach msgpack_unpack_next.  msgpack-c points str objects into the input
 * buffer (no copy), so the struct change filled from them borrows the
 * caller's buffer, as change.h promises.
 *
 * Decoder codes: NBX_ETOOBIG for a length or count over its cap (a string,
 * the audience, the whole change), NBX_EDEPTH for nesting, NBX_EMALFORMED
 * for everything else (type, arity, version, kind, empty name, order);
 * NBX_EAGAIN while the bytes are a valid msgpack prefix whose start could
 * still be a change (outer array of a kind's arity, version, kind);
 * NBX_ENOMEM only if msgpack-c cannot get its one small zone.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include <msgpack.h>

#include "change.h"
#include "mpread.h"
#include "mpwrite.h"
#include "mpscan.h"
#include "nbx_err.h"

#define WIRE_VERSION	1

/* Elements of the outer array, by kind (index 0 unused). */
static const uint32_t arity[] = { 0, 9, 10, 7, 7, 6, 9 };

#define KIND_MIN	CHANGE_FIELD
#define KIND_MAX	CHANGE_RECEIPT

/*
 * The limits the validator applies before msgpack-c sees a byte.  The
 * widest valid change is an ELEM with a full audience: the outer array
 * (1), its 10 elements, the audience's 3 and its 16 ids, 30 objects in
 * all, three containers deep.  The widest array holds NBX_AUD_MAX ids.
 */
#define DEC_MAX_COUNT	(NBX_AUD_MAX > 10 ? NBX_AUD_MAX : 10)
#define DEC_MAX_OBJECTS	32

static const struct mpscan_limits dec_limits = {
	.max_depth = NBX_DEPTH_MAX,
	.max_str = NBX_STR_MAX,
	.max_count = DEC_MAX_COUNT,
	.max_objects = DEC_MAX_OBJECTS,
	.max_size = NBX_CHANGE_MAX,
};

/* ------------------------------------------------------------------ */
/* Encoding                                                           */
/* ------------------------------------------------------------------ */

/* A string of min..max bytes whose pointer can be read. */
static int
str_ok(struct nbx_str s, uint32_t min, uint32_t max)
{
	return s.n >= min && s.n <= max && (s.n == 0 || s.p != NULL);
}

static int
aud_empty(const struct nbx_audience *a)
{
	return a->hlc == 0 && a->origin.n == 0 && a->n == 0;
}

/* Audience ids: at most NBX_AUD_MAX, each a valid length, sorted, unique. */
static int
aud_ids_ok(const struct nbx_audience *a)
{
	if (a->n > NBX_AUD_MAX)
		return 0;
	for (uint32_t i = 0; i < a->n; i++) {
		if (!str_ok(a->ids[i], 1, NBX_ID_MAX))
			return 0;
		if (i > 0 && nbx_str_cmp(a->ids[i - 1], a->ids[i]) >= 0)
			return 0;
	}
	return 1;
}

static int
value_ok(const struct nbx_value *v)
{
	switch (v->t) {
	case NBX_V_NIL:
	case NBX_V_INT:
		return 1;
	case NBX_V_BOOL:
		return v->i == 0 || v->i == 1;
	case NBX_V_STR:
		return str_ok(v->s, 0, NBX_STR_MAX);
	}
	return 0;
}

/*
 * Checks everything the wire form constrains, so that whatever encodes
 * also decodes to the same change.  Members a kind does not use must be
 * empty: a non-empty one is a caller's mistake the encoder would otherwise
 * drop silently.  Returns 0 or NBX_EINVAL.
 */
static int
encode_check(const struct change *c)
{
	int k = (int)c->kind;
	int has_field = k == CHANGE_FIELD || k == CHANGE_ELEM ||
	    k == CHANGE_RECEIPT;

	if (k < KIND_MIN || k > KIND_MAX)
		return NBX_EINVAL;
	if (!str_ok(c->coll, 1, NBX_NAME_MAX) ||
	    !str_ok(c->id, 1, NBX_RECID_MAX) ||
	    !str_ok(c->origin, 1, NBX_ID_MAX))
		return NBX_EINVAL;
	if (has_field ? !str_ok(c->field, 1, NBX_NAME_MAX) : c->field.n != 0)
		return NBX_EINVAL;
	if (k == CHANGE_ELEM ? !str_ok(c->elem, 0, NBX_STR_MAX) :
	    k == CHANGE_RECEIPT ? !str_ok(c->elem, 1, NBX_ID_MAX) :
	    c->elem.n != 0)
		return NBX_EINVAL;
	if (!value_ok(&c->val))
		return NBX_EINVAL;

	switch (k) {
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		if (k == CHANGE_ELEM && c->val.t != NBX_V_BOOL)
			return NBX_EINVAL;
		if (!str_ok(c->aud.origin, 0, NBX_ID_MAX) ||
		    !aud_ids_ok(&c->aud))
			return NBX_EINVAL;
		break;
	case CHANGE_STATE:
		if (c->val.t != NBX_V_INT || !aud_empty(&c->aud))
			return NBX_EINVAL;
		break;
	case CHANGE_AUDIENCE:
		if (c->val.t != NBX_V_NIL || !aud_ids_ok(&c->aud) ||
		    c->aud.hlc != c->hlc ||
		    !nbx_str_eq(c->aud.origin, c->origin))
			return NBX_EINVAL;
		break;
	case CHANGE_ERASE:
		if (c->val.t != NBX_V_NIL || !aud_empty(&c->aud))
			return NBX_EINVAL;
		break;
	case CHANGE_RECEIPT:
		if (c->val.t != NBX_V_INT || !aud_empty(&c->aud))
			return NBX_EINVAL;
		break;
	}
	return 0;
}

static void
put_ids(struct mpwrite *w, const struct nbx_audience *a)
{
	mpwrite_array(w, a->n);
	for (uint32_t i = 0; i < a->n; i++)
		mpwrite_str(w, a->ids[i]);
}

static void
put_aud(struct mpwrite *w, const struct nbx_audience *a)
{
	if (aud_empty(a)) {
		mpwrite_nil(w);
		return;
	}
	mpwrite_array(w, 3);
	mpwrite_uint(w, a->hlc);
	mpwrite_str(w, a->origin);
	put_ids(w, a);
}

/*
 * Writes with the mpwrite cursor, whose errors are sticky: one check at
 * the end decides whether the appended bytes stand.
 */
int
change_encode(const struct change *c, struct nbx_buf *out)
{
	struct mpwrite w;
	size_t mark;
	int r;

	if (c == NULL || out == NULL)
		return NBX_EINVAL;
	mark = out->len;
	if ((r = encode_check(c)) != 0)
		goto out;

	mpwrite_init(&w, out);
	mpwrite_array(&w, arity[c->kind]);
	mpwrite_uint(&w, WIRE_VERSION);
	mpwrite_uint(&w, (uint64_t)c->kind);
	mpwrite_str(&w, c->coll);
	mpwrite_str(&w, c->id);
	mpwrite_uint(&w, c->hlc);
	mpwrite_str(&w, c->origin);
	switch (c->kind) {
	case CHANGE_FIELD:
		mpwrite_str(&w, c->field);
		mpwrite_value(&w, &c->val);
		put_aud(&w, &c->aud);
		break;
	case CHANGE_ELEM:
		mpwrite_str(&w, c->field);
		mpwrite_str(&w, c->elem);
		mpwrite_value(&w, &c->val);
		put_aud(&w, &c->aud);
		break;
	case CHANGE_STATE:
		mpwrite_value(&w, &c->val);
		break;
	case CHANGE_AUDIENCE:
		put_ids(&w, &c->aud);
		break;
	case CHANGE_ERASE:
		break;
	case CHANGE_RECEIPT:
		mpwrite_str(&w, c->field);
		mpwrite_str(&w, c->elem);
		mpwrite_value(&w, &c->val);
		break;
	}
	r = w.err;
out:
	if (r != 0)
		out->len = mark;
	return r;
}

/* ------------------------------------------------------------------ */
/* Decoding                                                           */
/* ------------------------------------------------------------------ */

/* An unsigned integer item (version, kind, hlc): any msgpack int >= 0. */
static int
get_uint(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return NBX_EMALFORMED;
	*v = o->via.u64;
	return 0;
}

/*
 * A str item of min..max bytes, borrowed from the input.  Too long is
 * NBX_ETOOBIG (a declared length over its cap), anything else wrong is
 * NBX_EMALFORMED.  An empty string comes back as { NULL, 0 }.
 */
static int
get_str(const msgpack_object *o, uint32_t min, uint32_t max,
    struct nbx_str *s)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return NBX_EMALFORMED;
	if (o->via.str.size > max)
		return NBX_ETOOBIG;
	if (o->via.str.size < min)
		return NBX_EMALFORMED;
	s->n = o->via.str.size;
	s->p = s->n ? o->via.str.ptr : NULL;
	return 0;
}

static int
get_value(const msgpack_object *o, struct nbx_value *v)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		v->t = NBX_V_NIL;
		return 0;
	case MSGPACK_OBJECT_BOOLEAN:
		v->t = NBX_V_BOOL;
		v->i = o->via.boolean ? 1 : 0;
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > INT64_MAX)
			return NBX_EMALFORMED;
		v->t = NBX_V_INT;
		v->i = (int64_t)o->via.u64;
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		v->t = NBX_V_INT;
		v->i = o->via.i64;
		return 0;
	case MSGPACK_OBJECT_STR:
		v->t = NBX_V_STR;
		return get_str(o, 0, NBX_STR_MAX, &v->s);
	default:
		return NBX_EMALFORMED;
	}
}

/* An array of audience ids into a->ids / a->n: capped, sorted, unique. */
static int
get_ids(const msgpack_object *o, struct nbx_audience *a)
{
	const msgpack_object_array *ar = &o->via.array;
	int r;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return NBX_EMALFORMED;
	if (ar->size > NBX_AUD_MAX)
		return NBX_ETOOBIG;
	for (uint32_t i = 0; i < ar->size; i++) {
		if ((r = get_str(&ar->ptr[i], 1, NBX_ID_MAX, &a->ids[i])) != 0)
			return r;
		if (i > 0 && nbx_str_cmp(a->ids[i - 1], a->ids[i]) >= 0)
			return NBX_EMALFORMED;
	}
	a->n = ar->size;
	return 0;
}

/* nil, or [aud_hlc, aud_origin, [ids]]. */
static int
get_aud(const msgpack_object *o, struct nbx_audience *a)
{
	const msgpack_object_array *ar = &o->via.array;
	int r;

	if (o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (o->type != MSGPACK_OBJECT_ARRAY || ar->size != 3)
		return NBX_EMALFORMED;
	if ((r = get_uint(&ar->ptr[0], &a->hlc)) != 0 ||
	    (r = get_str(&ar->ptr[1], 0, NBX_ID_MAX, &a->origin)) != 0 ||
	    (r = get_ids(&ar->ptr[2], a)) != 0)
		return r;
	return 0;
}

/*
 * Maps an unpacked object onto *c, checking every item's type and cap.
 * Fills *c partly on error; the caller zeroes it.
 */
static int
from_object(const msgpack_object *o, struct change *c)
{
	const msgpack_object *e;
	uint64_t ver, kind;
	int r;

	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 2)
		return NBX_EMALFORMED;
	e = o->via.array.ptr;
	if ((r = get_uint(&e[0], &ver)) != 0 ||
	    (r = get_uint(&e[1], &kind)) != 0)
		return r;
	if (ver != WIRE_VERSION || kind < KIND_MIN || kind > KIND_MAX ||
	    o->via.array.size != arity[kind])
		return NBX_EMALFORMED;
	c->kind = (enum change_kind)kind;

	if ((r = get_str(&e[2], 1, NBX_NAME_MAX, &c->coll)) != 0 ||
	    (r = get_str(&e[3], 1, NBX_RECID_MAX, &c->id)) != 0 ||
	    (r = get_uint(&e[4], &c->hlc)) != 0 ||
	    (r = get_str(&e[5], 1, NBX_ID_MAX, &c->origin)) != 0)
		return r;

	switch (c->kind) {
	case CHANGE_FIELD:
		if ((r = get_str(&e[6], 1, NBX_NAME_MAX, &c->field)) != 0 ||
		    (r = get_value(&e[7], &c->val)) != 0 ||
		    (r = get_aud(&e[8], &c->aud)) != 0)
			return r;
		break;
	case CHANGE_ELEM:
		if ((r = get_str(&e[6], 1, NBX_NAME_MAX, &c->field)) != 0 ||
		    (r = get_str(&e[7], 0, NBX_STR_MAX, &c->elem)) != 0)
			return r;
		if (e[8].type != MSGPACK_OBJECT_BOOLEAN)
			return NBX_EMALFORMED;
		if ((r = get_value(&e[8], &c->val)) != 0 ||
		    (r = get_aud(&e[9], &c->aud)) != 0)
			return r;
		break;
	case CHANGE_STATE:
		if ((r = get_value(&e[6], &c->val)) != 0)
			return r;
		if (c->val.t != NBX_V_INT)
			return NBX_EMALFORMED;
		break;
	case CHANGE_AUDIENCE:
		if ((r = get_ids(&e[6], &c->aud)) != 0)
			return r;
		c->aud.hlc = c->hlc;
		c->aud.origin = c->origin;
		break;
	case CHANGE_ERASE:
		break;
	case CHANGE_RECEIPT:
		if ((r = get_str(&e[6], 1, NBX_NAME_MAX, &c->field)) != 0 ||
		    (r = get_str(&e[7], 1, NBX_ID_MAX, &c->elem)) != 0 ||
		    (r = get_value(&e[8], &c->val)) != 0)
			return r;
		if (c->val.t != NBX_V_INT)
			return NBX_EMALFORMED;
		break;
	}
	return 0;
}

/*
 * Reads an unsigned integer at p[0..avail) for the prefix check: 0 with
 * its value and size, NBX_EAGAIN if cut short, NBX_EMALFORMED if the item
 * is no integer >= 0.
 */
static int
peek_uint(const uint8_t *p, size_t avail, uint64_t *v, size_t *sz)
{
	size_t n;

	if (avail == 0)
		return NBX_EAGAIN;
	if (p[0] <= 0x7f) {
		*v = p[0];
		*sz = 1;
		return 0;
	}
	if (p[0] >= 0xcc && p[0] <= 0xcf)
		n = (size_t)1 << (p[0] - 0xcc);
	else if (p[0] >= 0xd0 && p[0] <= 0xd3)
		n = (size_t)1 << (p[0] - 0xd0);
	else
		return NBX_EMALFORMED;
	if (avail < 1 + n)
		return NBX_EAGAIN;
	if (p[0] >= 0xd0 && (p[1] & 0x80))
		return NBX_EMALFORMED;		/* negative */
	*v = 0;
	for (size_t i = 1; i <= n; i++)
		*v = (*v << 8) | p[i];
	*sz = 1 + n;
	return 0;
}

/*
 * Called when the bytes are a valid msgpack prefix: says NBX_EMALFORMED
 * early if what is already there cannot start a change (not an array, an
 * arity no kind has, a version or kind this decoder does not know), else
 * NBX_EAGAIN.  Deeper mistakes are reported once the object is complete,
 * which mpscan bounds to NBX_CHANGE_MAX bytes.
 */
static int
prefix_check(const uint8_t *p, size_t len)
{
	uint64_t n, ver, kind;
	size_t hdr, sz;
	int r;

	if (len == 0)
		return NBX_EAGAIN;
	if (p[0] >= 0x90 && p[0] <= 0x9f) {
		n = p[0] & 0x0f;
		hdr = 1;
	} else if (p[0] == 0xdc || p[0] == 0xdd) {
		hdr = p[0] == 0xdc ? 3 : 5;
		if (len < hdr)
			return NBX_EAGAIN;
		n = 0;
		for (size_t i = 1; i < hdr; i++)
			n = (n << 8) | p[i];
	} else
		return NBX_EMALFORMED;
	if (n != 6 && n != 7 && n != 9 && n != 10)
		return NBX_EMALFORMED;

	if ((r = peek_uint(p + hdr, len - hdr, &ver, &sz)) != 0)
		return r;
	if (ver != WIRE_VERSION)
		return NBX_EMALFORMED;
	hdr += sz;
	if ((r = peek_uint(p + hdr, len - hdr, &kind, &sz)) != 0)
		return r;
	if (kind < KIND_MIN || kind > KIND_MAX || n != arity[kind])
		return NBX_EMALFORMED;
	return NBX_EAGAIN;
}

/*
 * The fast path: reads the layout above in place with the mpread cursor,
 * in one pass, no allocation.  It accepts exactly the valid encodings
 * (every msgpack form of each item) and fills *c as the reference decoder
 * does; it does not classify failures (*c is then partly filled).
 */
/* A str that may be empty: { NULL, 0 } then, as the reference has it. */
static int
fast_str0(struct mpread *r, uint32_t max, struct nbx_str *s)
{
	if (mpread_str(r, 0, max, s) != 0)
		return NBX_EMALFORMED;
	if (s->n == 0)
		s->p = NULL;
	return 0;
}

static int
fast_ids(struct mpread *r, struct nbx_audience *a)
{
	uint32_t n;

	if (mpread_array(r, &n) != 0 || n > NBX_AUD_MAX)
		return NBX_EMALFORMED;
	for (uint32_t i = 0; i < n; i++) {
		if (mpread_str(r, 1, NBX_ID_MAX, &a->ids[i]) != 0)
			return NBX_EMALFORMED;
		if (i > 0 && nbx_str_cmp(a->ids[i - 1], a->ids[i]) >= 0)
			return NBX_EMALFORMED;
	}
	a->n = n;
	return 0;
}

static int
fast_aud(struct mpread *r, struct nbx_audience *a)
{
	uint32_t n;

	if (mpread_nil(r))
		return 0;
	if (mpread_array(r, &n) != 0 || n != 3 ||
	    mpread_u64(r, &a->hlc) != 0 ||
	    fast_str0(r, NBX_ID_MAX, &a->origin) != 0)
		return NBX_EMALFORMED;
	return fast_ids(r, a);
}

static int
fast_decode(const uint8_t *p, size_t len, struct change *c, size_t *used)
{
	struct mpread r = { p, len, 0 };
	uint64_t ver, kind;
	uint32_t n;
	int present;

	if (mpread_array(&r, &n) != 0 || mpread_u64(&r, &ver) != 0 ||
	    mpread_u64(&r, &kind) != 0 || ver != WIRE_VERSION ||
	    kind < KIND_MIN || kind > KIND_MAX || n != arity[kind])
		return NBX_EMALFORMED;
	c->kind = (enum change_kind)kind;
	if (mpread_str(&r, 1, NBX_NAME_MAX, &c->coll) != 0 ||
	    mpread_str(&r, 1, NBX_RECID_MAX, &c->id) != 0 ||
	    mpread_u64(&r, &c->hlc) != 0 ||
	    mpread_str(&r, 1, NBX_ID_MAX, &c->origin) != 0)
		return NBX_EMALFORMED;
	switch (c->kind) {
	case CHANGE_FIELD:
		if (mpread_str(&r, 1, NBX_NAME_MAX, &c->field) != 0 ||
		    mpread_value(&r, NBX_STR_MAX, &c->val) != 0 ||
		    fast_aud(&r, &c->aud) != 0)
			return NBX_EMALFORMED;
		if (c->val.t == NBX_V_STR && c->val.s.n == 0)
			c->val.s.p = NULL;
		break;
	case CHANGE_ELEM:
		if (mpread_str(&r, 1, NBX_NAME_MAX, &c->field) != 0 ||
		    fast_str0(&r, NBX_STR_MAX, &c->elem) != 0 ||
		    mpread_bool(&r, &present) != 0 ||
		    fast_aud(&r, &c->aud) != 0)
			return NBX_EMALFORMED;
		c->val.t = NBX_V_BOOL;
		c->val.i = present;
		break;
	case CHANGE_STATE:
	case CHANGE_RECEIPT:
		if (c->kind == CHANGE_RECEIPT &&
		    (mpread_str(&r, 1, NBX_NAME_MAX, &c->field) != 0 ||
		    mpread_str(&r, 1, NBX_ID_MAX, &c->elem) != 0))
			return NBX_EMALFORMED;
		if (mpread_i64(&r, &c->val.i) != 0)
			return NBX_EMALFORMED;
		c->val.t = NBX_V_INT;
		break;
	case CHANGE_AUDIENCE:
		if (fast_ids(&r, &c->aud) != 0)
			return NBX_EMALFORMED;
		c->aud.hlc = c->hlc;
		c->aud.origin = c->origin;
		break;
	case CHANGE_ERASE:
		break;
	}
	*used = r.off;
	return 0;
}

/*
 * Valid input, the common case, is decoded by the fast path alone.
 * Anything it refuses goes to the reference decoder, which gives the
 * error its code (NBX_EAGAIN for a prefix, NBX_ETOOBIG, NBX_EDEPTH, ...).
 */
int
change_decode(const void *buf, size_t len, struct change *c, size_t *used)
{
	if (c != NULL && used != NULL && buf != NULL) {
		/* all but the audience's id slots, which count only up to
		 * aud.n: zeroing them was half of a decode's time */
		memset(c, 0, offsetof(struct change, aud.ids));
		if (fast_decode(buf, len, c, used) == 0)
			return 0;
	}
	return change_decode_ref(buf, len, c, used);
}

/*
 * Validate, then unpack, then map.  The unpacked object lives in a zone
 * freed before returning; only string pointers into buf survive in *c.
 */
int
change_decode_ref(const void *buf, size_t len, struct change *c,
    size_t *used)
{
	msgpack_unpacked up;
	msgpack_unpack_return mr;
	size_t size = 0, off = 0;
	int r;

	msgpack_unpacked_init(&up);
	if (used != NULL)
		*used = 0;
	if (c != NULL)
		memset(c, 0, sizeof(*c));
	if (c == NULL || used == NULL || (buf == NULL && len > 0)) {
		r = NBX_EINVAL;
		goto out;
	}

	r = mpscan_object(buf, len, &dec_limits, &size);
	if (r == NBX_EAGAIN)
		r = prefix_check(buf, len);
	if (r != 0)
		goto out;

	mr = msgpack_unpack_next(&up, buf, size, &off);
	if (mr == MSGPACK_UNPACK_NOMEM_ERROR) {
		r = NBX_ENOMEM;
		goto out;
	}
	if (mr != MSGPACK_UNPACK_SUCCESS || off != size) {
		/* mpscan and msgpack-c disagree: refuse, never guess. */
		r = NBX_EMALFORMED;
		goto out;
	}
	if ((r = from_object(&up.data, c)) != 0)
		goto out;
	*used = size;
out:
	msgpack_unpacked_destroy(&up);
	if (r != 0 && c != NULL)
		memset(c, 0, sizeof(*c));
	return r;
}

/* ------------------------------------------------------------------ */
/* Comparison                                                         */
/* ------------------------------------------------------------------ */

int
change_eq(const struct change *a, const struct change *b)
{
	if (a->kind != b->kind || a->hlc != b->hlc ||
	    !nbx_str_eq(a->coll, b->coll) || !nbx_str_eq(a->id, b->id) ||
	    !nbx_str_eq(a->field, b->field) ||
	    !nbx_str_eq(a->elem, b->elem) ||
	    !nbx_str_eq(a->origin, b->origin) || !nbx_value_eq(&a->val, &b->val))
		return 0;
	if (a->aud.hlc != b->aud.hlc || a->aud.n != b->aud.n ||
	    !nbx_str_eq(a->aud.origin, b->aud.origin))
		return 0;
	for (uint32_t i = 0; i < a->aud.n && i < NBX_AUD_MAX; i++)
		if (!nbx_str_eq(a->aud.ids[i], b->aud.ids[i]))
			return 0;
	return 1;
}

int
change_array_room(struct change **a, size_t *cap, size_t n)
{
	struct change *r;
	size_t want;

	if (n < *cap)
		return 0;
	want = *cap ? 2 * *cap : 32;
	if (want > SIZE_MAX / sizeof(*r) ||
	    (r = realloc(*a, want * sizeof(*r))) == NULL)
		return NBX_ENOMEM;
	*a = r;
	*cap = want;
	return 0;
}
