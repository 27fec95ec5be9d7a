/*
 * change.h - the unit of replication, and its msgpack codec.
 *
 * A change names one register of one record and carries a new version of
 * it: a field value, a set element, the record's live/deleted state, its
 * audience, or its erasure.  Every version is ordered by (hlc, origin).
 *
 * Strings in a change are borrowed slices (struct nbx_str): they point into
 * whatever buffer the change was decoded from or built over, and are valid
 * only as long as that buffer.  A change owns no memory.
 */
#ifndef NBX_CHANGE_H
#define NBX_CHANGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NBX_ID_MAX	32	/* node id: 1-32 of [a-z0-9-] */
#define NBX_NAME_MAX	32	/* collection and field names */
#define NBX_RECID_MAX	128	/* record id, "<node>:<local part>" */
#define NBX_AUD_MAX	16	/* nodes in one audience */
#define NBX_STR_MAX	65536	/* hard cap on a string value or set element */
#define NBX_CHANGE_MAX	(NBX_STR_MAX + 4096)	/* encoded size of one change */
#define NBX_DEPTH_MAX	4	/* msgpack nesting accepted in a change */

/* A borrowed byte string; not NUL-terminated. */
struct nbx_str {
	const char *p;
	uint32_t n;
};

#define NBX_STR(lit)	((struct nbx_str){ (lit), (uint32_t)(sizeof(lit) - 1) })

enum nbx_vtype {
	NBX_V_NIL = 0,		/* no value: the field is cleared */
	NBX_V_BOOL = 1,
	NBX_V_INT = 2,
	NBX_V_STR = 3,		/* string, date (YYYY-MM-DD) and enum values */
};

struct nbx_value {
	enum nbx_vtype t;
	int64_t i;		/* NBX_V_BOOL (0/1) and NBX_V_INT */
	struct nbx_str s;	/* NBX_V_STR */
};

/*
 * An audience version: the set of node ids allowed to hold a record's
 * audience-scoped fields, stamped with the (hlc, origin) of the write that
 * set it.  n == 0 and hlc == 0 mean "no audience" (region and local
 * fields).  ids may come in any order, with repeats: the merge (crdt.c)
 * stores them sorted and unique, so equal sets encode equally.
 */
struct nbx_audience {
	uint64_t hlc;
	struct nbx_str origin;
	uint32_t n;
	struct nbx_str ids[NBX_AUD_MAX];
};

enum change_kind {
	CHANGE_FIELD = 1,	/* set scalar field `field` to `val` */
	CHANGE_ELEM = 2,	/* set element `elem` of set field `field`:
				   val is NBX_V_BOOL, 1 present, 0 removed */
	CHANGE_STATE = 3,	/* val is NBX_V_INT REC_LIVE or REC_DELETED */
	CHANGE_AUDIENCE = 4,	/* `aud` is the record's new audience */
	CHANGE_ERASE = 5,	/* the record is erased (absorbing) */
	CHANGE_RECEIPT = 6,	/* a node confirms (or a relay announces) a
				   purge: field "erase" or "revoke", elem the
				   purging node, val NBX_V_INT RECEIPT_* */
};

enum receipt_state {
	RECEIPT_PENDING = 1,	/* the node received data and must purge */
	RECEIPT_DONE = 2,	/* the node purged (only it may say so) */
};

enum rec_state {
	REC_LIVE = 0,
	REC_DELETED = 1,
};

struct change {
	enum change_kind kind;
	struct nbx_str coll;	/* collection name */
	struct nbx_str id;	/* record id */
	struct nbx_str field;	/* FIELD, ELEM; empty otherwise */
	struct nbx_str elem;	/* ELEM; empty otherwise */
	struct nbx_value val;	/* FIELD, ELEM, STATE */
	uint64_t hlc;		/* version of this change */
	struct nbx_str origin;	/* node that made the change */
	/*
	 * FIELD/ELEM of an audience-scoped field: the audience the value was
	 * written or sent under.  AUDIENCE: the new audience; its hlc and
	 * origin equal the change's.  Empty (n == 0, hlc == 0) otherwise.
	 */
	struct nbx_audience aud;
};

/*
 * Copies an audience: its version, its count and the ids in use.  An
 * audience is ~290 bytes, nearly all of it id slots that most values
 * (region fields: none) never use; the slots past n are not copied.
 */
static inline void
nbx_aud_copy(struct nbx_audience *dst, const struct nbx_audience *src)
{
	uint32_t n = src->n < NBX_AUD_MAX ? src->n : NBX_AUD_MAX;

	dst->hlc = src->hlc;
	dst->origin = src->origin;
	dst->n = src->n;
	memcpy(dst->ids, src->ids, n * sizeof(src->ids[0]));
}

/* Copies a change, its audience as nbx_aud_copy does. */
static inline void
change_copy(struct change *dst, const struct change *src)
{
	_Static_assert(offsetof(struct change, aud) + sizeof(src->aud) ==
	    sizeof(struct change) && offsetof(struct nbx_audience, ids) +
	    sizeof(src->aud.ids) == sizeof(struct nbx_audience),
	    "the audience ids come last");
	memcpy(dst, src, offsetof(struct change, aud.ids));
	nbx_aud_copy(&dst->aud, &src->aud);
}

/*
 * Makes room for one more change in a growable array (*a with *cap slots,
 * NULL and 0 at first) of which n are in use, doubling from 32.  0, or
 * NBX_ENOMEM with the array as it was.  Free *a with free().
 */
int change_array_room(struct change **a, size_t *cap, size_t n);

/* A growable output buffer; see change_buf_* below. */
struct nbx_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
	size_t max;		/* appends past this fail with NBX_ETOOBIG */
};

/* Initialises an empty buffer that may grow up to `max` bytes. */
void nbx_buf_init(struct nbx_buf *b, size_t max);
/* Frees the buffer's memory; the buffer may be reused after nbx_buf_init. */
void nbx_buf_fini(struct nbx_buf *b);
/* Appends n bytes; 0, NBX_ENOMEM or NBX_ETOOBIG (nothing appended). */
int nbx_buf_append(struct nbx_buf *b, const void *p, size_t n);
/*
 * Makes room for n more bytes without appending them: 0, NBX_ENOMEM or
 * NBX_ETOOBIG (len + n over max).  p may move.
 */
int nbx_buf_reserve(struct nbx_buf *b, size_t n);

/* 1 if n more bytes fit in the allocation and under max (max may have
 * been lowered below cap). */
static inline int
nbx_buf_room(const struct nbx_buf *b, size_t n)
{
	return n <= b->cap - b->len && b->len <= b->max &&
	    n <= b->max - b->len;
}

/*
 * Appends the msgpack encoding of `c` to `out`.  Returns 0, NBX_EINVAL if
 * the change breaks a structural cap (name lengths, audience size), or the
 * buffer's error.  On error `out` is left as it was.
 */
int change_encode(const struct change *c, struct nbx_buf *out);

/*
 * Decodes one change from the start of buf[0..len).  Every declared length
 * and count is checked against its cap and against the bytes present before
 * anything is trusted; nesting is capped at NBX_DEPTH_MAX.  On success
 * fills *c (strings borrowed from buf), stores the number of bytes consumed
 * in *used and returns 0.  Returns NBX_EAGAIN if buf holds only a prefix of
 * a valid encoding, NBX_ETOOBIG / NBX_EDEPTH / NBX_EMALFORMED if it can
 * never be one.  On error *c is zeroed and *used is 0.  On success the
 * audience id slots past aud.n are left as they were: read aud.ids[i]
 * only for i < aud.n.
 */
int change_decode(const void *buf, size_t len, struct change *c,
    size_t *used);

/*
 * The reference decoder: the same contract as change_decode, built on
 * mpscan and msgpack-c, slower.  change_decode decodes valid input itself
 * and hands everything else to this one, which names the error; the fuzz
 * harness checks that the two agree on every input.
 */
int change_decode_ref(const void *buf, size_t len, struct change *c,
    size_t *used);

/*
 * Returns 1 if a and b describe the same change: equal kind, hlc and
 * audience, strings equal by content, and of the value its type and the
 * member that type uses (i for BOOL and INT, s for STR).
 */
int change_eq(const struct change *a, const struct change *b);

/* "field", "element", "state", "audience", "erase", "receipt" or "?". */
const char *change_kind_name(unsigned kind);

/* Writes n bytes as 2n lowercase hex digits and a NUL into out. */
void nbx_hex(const uint8_t *p, size_t n, char *out);

/*
 * 1 if p[0..n) and q[0..n) hold the same bytes, n >= 1.  Up to 16 bytes
 * (node ids, field and collection names, most record ids) in two loads
 * of each side that overlap in the middle, never past n; longer ones
 * with memcmp, whose call costs more than such a compare.
 */
static inline int
nbx__mem_eq(const char *p, const char *q, uint32_t n)
{
	uint64_t a, b, c, d;
	uint32_t e, f, g, h;

	if (n >= 8 && n <= 16) {
		memcpy(&a, p, 8);
		memcpy(&b, q, 8);
		memcpy(&c, p + n - 8, 8);
		memcpy(&d, q + n - 8, 8);
		return ((a ^ b) | (c ^ d)) == 0;
	}
	if (n >= 4 && n < 8) {
		memcpy(&e, p, 4);
		memcpy(&f, q, 4);
		memcpy(&g, p + n - 4, 4);
		memcpy(&h, q + n - 4, 4);
		return ((e ^ f) | (g ^ h)) == 0;
	}
	if (n < 4)
		return p[0] == q[0] && p[n / 2] == q[n / 2] &&
		    p[n - 1] == q[n - 1];
	return memcmp(p, q, n) == 0;
}

/*
 * Returns 1 if the two strings hold the same bytes.  Inline, and the
 * cheap answers first: the same slice (a record's changes built from
 * one request share their id), or a first byte that differs (names
 * looked up among a schema's few).
 */
static inline int
nbx_str_eq(struct nbx_str a, struct nbx_str b)
{
	return a.n == b.n && (a.n == 0 || a.p == b.p ||
	    (a.p[0] == b.p[0] && nbx__mem_eq(a.p, b.p, a.n)));
}

/* 1 if the two changes are to the same record (collection and id). */
static inline int
change_same_record(const struct change *x, const struct change *y)
{
	return nbx_str_eq(x->id, y->id) && nbx_str_eq(x->coll, y->coll);
}

/* 1 if `id` is in the audience's id list (a NULL audience holds none). */
static inline int
nbx_audience_has(const struct nbx_audience *a, struct nbx_str id)
{
	if (a == NULL)
		return 0;
	for (uint32_t i = 0; i < a->n && i < NBX_AUD_MAX; i++)
		if (nbx_str_eq(a->ids[i], id))
			return 1;
	return 0;
}

/* 1 if the two values are equal: the same type and the same value. */
static inline int
nbx_value_eq(const struct nbx_value *a, const struct nbx_value *b)
{
	if (a->t != b->t)
		return 0;
	if (a->t == NBX_V_STR)
		return nbx_str_eq(a->s, b->s);
	return a->t == NBX_V_NIL || a->i == b->i;
}

/* Bytewise comparison, shorter-is-less on a common prefix: <0, 0, >0. */
int nbx_str_cmp(struct nbx_str a, struct nbx_str b);
/* Slice over a NUL-terminated C string. */
struct nbx_str nbx_str_c(const char *s);

/*
 * The creating node of a record id: the part before the first ':'.
 * Returns an empty string if the id has no ':'.
 */
struct nbx_str nbx_id_creator(struct nbx_str id);

/* 1 if s is a valid node id: 1-32 of [a-z0-9-]. */
int nbx_node_id_valid(struct nbx_str s);

#endif
