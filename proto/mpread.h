/*
 * mpread.h - a bounds-checked cursor for reading msgpack items in place.
 *
 * The decoders of the hot paths (a change, a stored record, a frame's top
 * level) know the exact shape they expect, so they read it item by item
 * with these functions instead of unpacking a tree with msgpack-c: no
 * allocation, one pass, strings borrowed from the input.  Every read
 * checks the bytes it needs against what is left before it looks at them,
 * so a cursor over hostile bytes can only fail, never overrun.  A failed
 * read returns NBX_EMALFORMED and leaves the cursor where it was.
 *
 * Readers accept every msgpack form of a value (an int in any width, a
 * str in fixstr/str8/16/32, an array in fixarray/array16/32), as the
 * reference decoders built on msgpack-c do.
 *
 * The project's msgpack paths, and why more than one:
 *   read, untrusted (frames and changes from peers): this cursor, behind
 *       mpscan for a whole frame body;
 *   read, for error codes only: change_decode_ref (msgpack-c behind
 *       mpscan) names the reason a change the cursor refused is wrong,
 *       and is the fuzz harness's oracle for the fast decoder;
 *   read, the store's own small tables (peers, quarantine, audit): mpbuf.h
 *       over msgpack-c, behind mpscan (a damaged store is refused, not
 *       trusted);
 *   write: mpwrite.h, everywhere.
 */
#ifndef NBX_MPREAD_H
#define NBX_MPREAD_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "change.h"
#include "nbx_err.h"

struct mpread {
	const uint8_t *p;
	size_t len, off;
};

/*
 * The big-endian unsigned integer in p[0..n), n <= 8.  The widths
 * msgpack uses are one load each, swapped to host order (an hlc is 8
 * bytes in every change and version read).
 */
static inline uint64_t
mpread_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	uint32_t v4;
	uint16_t v2;

	switch (n) {
	case 8:
		memcpy(&v, p, 8);
		return be64toh(v);
	case 4:
		memcpy(&v4, p, 4);
		return be32toh(v4);
	case 2:
		memcpy(&v2, p, 2);
		return be16toh(v2);
	}
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* 1 if n more bytes are present. */
static inline int
mpread_has(const struct mpread *r, size_t n)
{
	return r->len - r->off >= n;
}

/* An array header: its element count in *n. */
static inline int
mpread_array(struct mpread *r, uint32_t *n)
{
	uint8_t b;
	size_t w;

	if (!mpread_has(r, 1))
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
	if (!mpread_has(r, 1 + w))
		return NBX_EMALFORMED;
	*n = (uint32_t)mpread_be(r->p + r->off + 1, w);
	r->off += 1 + w;
	return 0;
}

/* Any integer form; *neg tells a negative value (*v then holds its bits). */
static inline int
mpread_int(struct mpread *r, uint64_t *v, int *neg)
{
	uint8_t b;
	size_t w;

	if (!mpread_has(r, 1))
		return NBX_EMALFORMED;
	b = r->p[r->off];
	if (b <= 0x7f) {
		*v = b;
		*neg = 0;
		r->off++;
		return 0;
	}
	if (b >= 0xe0) {
		*v = (uint64_t)(int64_t)(int8_t)b;
		*neg = 1;
		r->off++;
		return 0;
	}
	if (b >= 0xcc && b <= 0xcf)
		w = (size_t)1 << (b - 0xcc);
	else if (b >= 0xd0 && b <= 0xd3)
		w = (size_t)1 << (b - 0xd0);
	else
		return NBX_EMALFORMED;
	if (!mpread_has(r, 1 + w))
		return NBX_EMALFORMED;
	*v = mpread_be(r->p + r->off + 1, w);
	*neg = 0;
	if (b >= 0xd0 && (r->p[r->off + 1] & 0x80)) {
		/* sign-extend a negative signed form to 64 bits */
		if (w < 8)
			*v |= ~(uint64_t)0 << (8 * w);
		*neg = 1;
	}
	r->off += 1 + w;
	return 0;
}

/* An integer >= 0. */
static inline int
mpread_u64(struct mpread *r, uint64_t *v)
{
	size_t off = r->off;
	int neg;

	if (mpread_int(r, v, &neg) != 0)
		return NBX_EMALFORMED;
	if (neg) {
		r->off = off;
		return NBX_EMALFORMED;
	}
	return 0;
}

/* An integer that fits int64. */
static inline int
mpread_i64(struct mpread *r, int64_t *v)
{
	size_t off = r->off;
	uint64_t u;
	int neg;

	if (mpread_int(r, &u, &neg) != 0)
		return NBX_EMALFORMED;
	if (!neg && u > INT64_MAX) {
		r->off = off;
		return NBX_EMALFORMED;
	}
	*v = (int64_t)u;
	return 0;
}

/* true or false, as 1 or 0. */
static inline int
mpread_bool(struct mpread *r, int *v)
{
	if (!mpread_has(r, 1) || (r->p[r->off] & 0xfe) != 0xc2)
		return NBX_EMALFORMED;
	*v = r->p[r->off++] == 0xc3;
	return 0;
}

/* 1 (and consumes it) if the next item is nil, else 0. */
static inline int
mpread_nil(struct mpread *r)
{
	if (!mpread_has(r, 1) || r->p[r->off] != 0xc0)
		return 0;
	r->off++;
	return 1;
}

/* A str of min..max bytes, borrowed from the input (also when empty). */
static inline int
mpread_str(struct mpread *r, uint32_t min, uint32_t max, struct nbx_str *s)
{
	uint8_t b;
	size_t w = 0;
	uint64_t n;

	if (!mpread_has(r, 1))
		return NBX_EMALFORMED;
	b = r->p[r->off];
	if (b >= 0xa0 && b <= 0xbf)
		n = b & 0x1f;
	else if (b >= 0xd9 && b <= 0xdb) {
		w = (size_t)1 << (b - 0xd9);
		if (!mpread_has(r, 1 + w))
			return NBX_EMALFORMED;
		n = mpread_be(r->p + r->off + 1, w);
	} else
		return NBX_EMALFORMED;
	if (n < min || n > max || !mpread_has(r, 1 + w + (size_t)n))
		return NBX_EMALFORMED;
	s->n = (uint32_t)n;
	s->p = (const char *)r->p + r->off + 1 + w;
	r->off += 1 + w + (size_t)n;
	return 0;
}

/* A bin of min..max bytes, borrowed from the input (also when empty). */
static inline int
mpread_bin(struct mpread *r, uint32_t min, uint32_t max, const uint8_t **p,
    uint32_t *n)
{
	uint8_t b;
	size_t w;
	uint64_t len;

	if (!mpread_has(r, 1))
		return NBX_EMALFORMED;
	b = r->p[r->off];
	if (b < 0xc4 || b > 0xc6)
		return NBX_EMALFORMED;
	w = (size_t)1 << (b - 0xc4);
	if (!mpread_has(r, 1 + w))
		return NBX_EMALFORMED;
	len = mpread_be(r->p + r->off + 1, w);
	if (len < min || len > max || !mpread_has(r, 1 + w + (size_t)len))
		return NBX_EMALFORMED;
	*n = (uint32_t)len;
	*p = r->p + r->off + 1 + w;
	r->off += 1 + w + (size_t)len;
	return 0;
}

/* A value: nil, bool, int64 or a str of at most max_str bytes. */
static inline int
mpread_value(struct mpread *r, uint32_t max_str, struct nbx_value *v)
{
	uint8_t b;

	if (!mpread_has(r, 1))
		return NBX_EMALFORMED;
	b = r->p[r->off];
	if (b == 0xc0) {
		r->off++;
		v->t = NBX_V_NIL;
		return 0;
	}
	if ((b & 0xfe) == 0xc2) {
		r->off++;
		v->t = NBX_V_BOOL;
		v->i = b == 0xc3;
		return 0;
	}
	if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb)) {
		v->t = NBX_V_STR;
		return mpread_str(r, 0, max_str, &v->s);
	}
	if (mpread_i64(r, &v->i) != 0)
		return NBX_EMALFORMED;
	v->t = NBX_V_INT;
	return 0;
}

#endif
