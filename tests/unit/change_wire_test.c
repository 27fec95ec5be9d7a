/*
 * change_wire_test.c - the wire format of a change item by item: every
 * position of every kind given every msgpack type in turn, and the named
 * malformations (versions, kinds, negative and string hlc, caps, audience
 * order).  Round trips and hostile input are in change_test.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "change.h"
#include "nbx_err.h"

/*
 * Decodes an exact-size heap copy (asan sees any over-read).  On success
 * the change must re-encode and decode to itself; on failure *c must be
 * zeroed and nothing consumed.
 */
static int
decode_copy(const uint8_t *p, size_t n)
{
	static const struct change zero;
	uint8_t *copy = malloc(n);
	struct change c, d;
	struct nbx_buf b;
	size_t used = 1, used2;
	int r;

	cr_assert_not_null(copy);
	memcpy(copy, p, n);
	r = change_decode(copy, n, &c, &used);
	if (r != 0) {
		cr_assert_eq(used, 0);
		cr_assert_eq(memcmp(&c, &zero, sizeof(c)), 0);
	} else {
		cr_assert_eq(used, n);
		nbx_buf_init(&b, NBX_CHANGE_MAX);
		cr_assert_eq(change_encode(&c, &b), 0);
		cr_assert_eq(change_decode(b.p, b.len, &d, &used2), 0);
		cr_assert(change_eq(&c, &d));
		nbx_buf_fini(&b);
	}
	free(copy);
	return r;
}

struct el {
	const char *b;
	size_t n;
};

#define EL(s)	{ s, sizeof(s) - 1 }

/* Candidates dropped into each position in turn. */
static const struct el cands[] = {
	EL("\xc0"), EL("\xc3"), EL("\x05"), EL("\xff"), EL("\xa1x"),
	EL("\xa0"), EL("\x90"), EL("\x80"), EL("\xca\0\0\0\0"), EL("\xc4\0"),
	EL("\xd4\x01\x00"), EL("\xd3\xff\xff\xff\xff\xff\xff\xff\xff"),
};
enum { C_NIL, C_TRUE, C_INT, C_NEG, C_STR, C_EMPTY, C_ARR, C_MAP, C_FLT,
    C_BIN, C_EXT, C_NEG64, NCAND };
#define M(x)	(1u << (x))
#define M_NAME	M(C_STR)
#define M_INT	(M(C_INT) | M(C_NEG) | M(C_NEG64))

struct shape {
	enum change_kind kind;
	struct el el[10];
	unsigned ok[10];	/* candidates that make a valid change */
};

#define E_VER		EL("\x01")
#define E_COLL		EL("\xa4""case")
#define E_ID		EL("\xa7""ee:8f3a")
#define E_HLC		EL("\xcf\0\0\0\0\0\0\0\x2a")
#define E_ORIGIN	EL("\xa2""ee")
#define E_FIELD		EL("\xa6""status")
#define E_NIL		EL("\xc0")

static const struct shape shapes[] = {
	{ CHANGE_FIELD, { E_VER, EL("\x01"), E_COLL, E_ID, E_HLC, E_ORIGIN,
	    E_FIELD, EL("\xa8""accepted"), E_NIL },
	  { 0, 0, M_NAME, M_NAME, M(C_INT), M_NAME, M_NAME,
	    M(C_NIL) | M(C_TRUE) | M_INT | M(C_STR) | M(C_EMPTY), M(C_NIL) } },
	{ CHANGE_ELEM, { E_VER, EL("\x02"), E_COLL, E_ID, E_HLC, E_ORIGIN,
	    E_FIELD, EL("\xa2""et"), EL("\xc2"),
	    EL("\x93\x01\xa2""ee\x92\xa2""ee\xa2""lv") },
	  { 0, 0, M_NAME, M_NAME, M(C_INT), M_NAME, M_NAME,
	    M(C_STR) | M(C_EMPTY), M(C_TRUE), M(C_NIL) } },
	{ CHANGE_STATE, { E_VER, EL("\x03"), E_COLL, E_ID, E_HLC, E_ORIGIN,
	    EL("\x01") },
	  { 0, 0, M_NAME, M_NAME, M(C_INT), M_NAME, M_INT } },
	{ CHANGE_AUDIENCE, { E_VER, EL("\x04"), E_COLL, E_ID, E_HLC, E_ORIGIN,
	    EL("\x92\xa2""ee\xa2""lv") },
	  { 0, 0, M_NAME, M_NAME, M(C_INT), M_NAME, M(C_ARR) } },
	{ CHANGE_ERASE, { E_VER, EL("\x05"), E_COLL, E_ID, E_HLC, E_ORIGIN },
	  { 0, M(C_INT), M_NAME, M_NAME, M(C_INT), M_NAME } },
};

/* [el[0], ..., el[n-1]] with el[at] replaced by `sub` (at < 0: none). */
static size_t
build(uint8_t *out, const struct el *els, size_t n, int at,
    const struct el *sub)
{
	size_t o = 0;

	out[o++] = (uint8_t)(0x90 | n);
	for (size_t i = 0; i < n; i++) {
		const struct el *e = (int)i == at ? sub : &els[i];
		memcpy(out + o, e->b, e->n);
		o += e->n;
	}
	return o;
}

static size_t
shape_len(const struct shape *s)
{
	size_t n = 0;

	while (n < 10 && s->el[n].b != NULL)
		n++;
	return n;
}

Test(change_wire, wrong_type_in_each_position)
{
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		const struct shape *sh = &shapes[s];
		size_t n = shape_len(sh), len;
		uint8_t buf[256];

		len = build(buf, sh->el, n, -1, NULL);
		cr_assert_eq(decode_copy(buf, len), 0, "kind %d", sh->kind);
		for (size_t at = 0; at < n; at++) {
			for (int c = 0; c < NCAND; c++) {
				int want = (sh->ok[at] & M(c)) ? 0 :
				    NBX_EMALFORMED;

				len = build(buf, sh->el, n, (int)at, &cands[c]);
				cr_assert_eq(decode_copy(buf, len), want,
				    "kind %d position %zu candidate %d",
				    sh->kind, at, c);
			}
		}
	}
}

static int
decode_els(const struct el *els, size_t n)
{
	uint8_t buf[256];

	return decode_copy(buf, build(buf, els, n, -1, NULL));
}

Test(change_wire, named_malformations)
{
	const struct el *f = shapes[0].el, *a = shapes[1].el;
	struct el e[10];

#define WITH(src, i, s, want) do { memcpy(e, src, sizeof(e)); \
	e[i] = (struct el)EL(s); \
	cr_assert_eq(decode_els(e, shape_len(&shapes[0])), want, \
	    "position %d = %s", i, #s); } while (0)
	WITH(f, 0, "\x00", NBX_EMALFORMED);		/* version 0 */
	WITH(f, 0, "\x02", NBX_EMALFORMED);		/* version 2 */
	WITH(f, 0, "\xcc\x01", 0);			/* wide version */
	WITH(f, 1, "\x00", NBX_EMALFORMED);		/* kind 0 */
	WITH(f, 1, "\x07", NBX_EMALFORMED);		/* kind 7 */
	WITH(f, 1, "\x02", NBX_EMALFORMED);		/* ELEM's arity */
	WITH(f, 4, "\xff", NBX_EMALFORMED);		/* hlc -1 */
	WITH(f, 4, "\xd0\x80", NBX_EMALFORMED);		/* hlc -128 */
	WITH(f, 4, "\xa2""42", NBX_EMALFORMED);		/* hlc as string */
	WITH(f, 4, "\xd0\x05", 0);			/* int8 5 is 5 */
	WITH(f, 2, "\xd9\x21" "123456789012345678901234567890123",
	    NBX_ETOOBIG);				/* coll 33 */
	WITH(f, 5, "\xd9\x21" "123456789012345678901234567890123",
	    NBX_ETOOBIG);				/* origin 33 */
	WITH(f, 7, "\xcf\x80\0\0\0\0\0\0\0", NBX_EMALFORMED); /* > INT64 */
	WITH(f, 7, "\xd3\x80\0\0\0\0\0\0\0", 0);	/* INT64_MIN */
	WITH(f, 7, "\xc4\x01x", NBX_EMALFORMED);	/* bin value */
	WITH(f, 8, "\x92\x01\xa2""ee", NBX_EMALFORMED);	/* aud arity 2 */
	WITH(f, 8, "\x93\xa1x\xa2""ee\x90", NBX_EMALFORMED); /* aud hlc str */
	WITH(f, 8, "\x93\x01\x01\x90", NBX_EMALFORMED);	/* aud origin int */
	WITH(f, 8, "\x93\x01\xa0\x90", 0);		/* no aud origin */
	WITH(f, 8, "\x93\x01\xa2""ee\x80", NBX_EMALFORMED); /* ids a map */
	WITH(f, 8, "\x93\x01\xa2""ee\x91\x01", NBX_EMALFORMED); /* id int */
	WITH(f, 8, "\x93\x01\xa2""ee\x91\xa0", NBX_EMALFORMED); /* id "" */
	WITH(f, 8, "\x93\x01\xa2""ee\x92\xa2""lv\xa2""ee",
	    NBX_EMALFORMED);				/* unsorted */
	WITH(f, 8, "\x93\x01\xa2""ee\x92\xa2""ee\xa2""ee",
	    NBX_EMALFORMED);				/* duplicate */
	WITH(f, 8, "\x93\x01\xa2""ee\x92\xa2""ee\xa3""eee", 0);
#undef WITH
	memcpy(e, a, sizeof(e));
	e[8] = (struct el)EL("\x01");			/* ELEM present 1 */
	cr_assert_eq(decode_els(e, 10), NBX_EMALFORMED);
	/* One element too many or too few. */
	cr_assert_eq(decode_els(f, 8), NBX_EMALFORMED);
	memcpy(e, f, sizeof(e));
	e[9] = (struct el)EL("\xc0");
	cr_assert_eq(decode_els(e, 10), NBX_EMALFORMED);
}

