/*
 * mpscan.c - bounded validation of one msgpack object (see mpscan.h).
 *
 * The scan reads one header at a time and keeps, for each open container,
 * how many elements it still owes.  Before it trusts a header it checks the
 * declared length or count against the limits and against the bytes the
 * rest of the object needs at minimum (one per object still to come), so a
 * five-byte "array of 4G" costs five bytes of reading and nothing else.
 */
#include <stddef.h>
#include <stdint.h>

#include "mpscan.h"
#include "nbx_err.h"

enum item_kind {
	ITEM_SCALAR,		/* nil, bool, int, float: no payload, no kids */
	ITEM_BYTES,		/* str, bin, ext: `len` payload bytes follow */
	ITEM_ARRAY,
	ITEM_MAP,
};

/* One decoded header. */
struct item {
	enum item_kind kind;
	size_t hdr;		/* type byte, length field, ext type byte */
	uint64_t len;		/* ITEM_BYTES payload length */
	uint64_t n;		/* ITEM_ARRAY elements, ITEM_MAP pairs */
};

static uint64_t
be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * Reads the header at p[0..avail), avail >= 1.  Fixed-size scalars are
 * described entirely by their type byte (hdr is their whole size), so they
 * never need more than one byte here; for length-prefixed types the length
 * field must be present.  Returns 0, NBX_EAGAIN (length field cut short)
 * or NBX_EMALFORMED (0xc1).
 */
static int
head(const uint8_t *p, size_t avail, struct item *it)
{
	uint8_t b = p[0];
	size_t lenbytes = 0;

	it->kind = ITEM_SCALAR;
	it->hdr = 1;
	it->len = 0;
	it->n = 0;

	if (b <= 0x7f || b >= 0xe0)		/* positive, negative fixint */
		return 0;
	if (b <= 0x8f) {
		it->kind = ITEM_MAP;
		it->n = b & 0x0f;
		return 0;
	}
	if (b <= 0x9f) {
		it->kind = ITEM_ARRAY;
		it->n = b & 0x0f;
		return 0;
	}
	if (b <= 0xbf) {
		it->kind = ITEM_BYTES;
		it->len = b & 0x1f;
		return 0;
	}

	switch (b) {
	case 0xc0: case 0xc2: case 0xc3:	/* nil, false, true */
		return 0;
	case 0xc1:
		return NBX_EMALFORMED;
	case 0xca: it->hdr = 5; return 0;	/* float32 */
	case 0xcb: it->hdr = 9; return 0;	/* float64 */
	case 0xcc: case 0xd0: it->hdr = 2; return 0;
	case 0xcd: case 0xd1: it->hdr = 3; return 0;
	case 0xce: case 0xd2: it->hdr = 5; return 0;
	case 0xcf: case 0xd3: it->hdr = 9; return 0;
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
		/* fixext 1, 2, 4, 8, 16: type byte then the payload */
		it->kind = ITEM_BYTES;
		it->hdr = 2;
		it->len = (uint64_t)1 << (b - 0xd4);
		return 0;
	case 0xc4: case 0xd9: lenbytes = 1; it->kind = ITEM_BYTES; break;
	case 0xc5: case 0xda: lenbytes = 2; it->kind = ITEM_BYTES; break;
	case 0xc6: case 0xdb: lenbytes = 4; it->kind = ITEM_BYTES; break;
	case 0xc7: lenbytes = 1; it->kind = ITEM_BYTES; it->hdr = 2; break;
	case 0xc8: lenbytes = 2; it->kind = ITEM_BYTES; it->hdr = 2; break;
	case 0xc9: lenbytes = 4; it->kind = ITEM_BYTES; it->hdr = 2; break;
	case 0xdc: lenbytes = 2; it->kind = ITEM_ARRAY; break;
	case 0xdd: lenbytes = 4; it->kind = ITEM_ARRAY; break;
	case 0xde: lenbytes = 2; it->kind = ITEM_MAP; break;
	case 0xdf: lenbytes = 4; it->kind = ITEM_MAP; break;
	default:
		return NBX_EMALFORMED;	/* unreachable: every byte is above */
	}

	/* ext: it->hdr already counts the type byte after the length */
	it->hdr += lenbytes;
	if (avail < 1 + lenbytes)
		return NBX_EAGAIN;
	if (it->kind == ITEM_BYTES)
		it->len = be(p + 1, lenbytes);
	else
		it->n = be(p + 1, lenbytes);
	return 0;
}

/*
 * The scan proper.  `pending` counts the objects still to be read (each
 * needs at least one byte) and `objects` those read so far; both are
 * checked against the limits before a header's count is accepted, which
 * keeps them below 2^33 and all the arithmetic below in range.  The
 * invariant off + pending <= max_size holds after every accepted header.
 */
int
mpscan_object(const void *buf, size_t len, const struct mpscan_limits *lim,
    size_t *size)
{
	const uint8_t *p = buf;
	uint64_t rem[MPSCAN_DEPTH_LIMIT];	/* elements owed per level */
	uint32_t depth = 0, maxd;
	uint64_t pending = 1, objects = 0;
	size_t off = 0;
	struct item it;
	int r;

	if (size == NULL)
		return NBX_EINVAL;
	*size = 0;
	if (lim == NULL || (buf == NULL && len > 0))
		return NBX_EINVAL;
	maxd = lim->max_depth < MPSCAN_DEPTH_LIMIT ? lim->max_depth :
	    MPSCAN_DEPTH_LIMIT;

	for (;;) {
		uint64_t kids = 0, need;

		if (off == len) {
			r = NBX_EAGAIN;
			goto out;
		}
		if ((r = head(p + off, len - off, &it)) != 0)
			goto out;
		objects++;

		if (it.kind == ITEM_ARRAY || it.kind == ITEM_MAP) {
			if (depth >= maxd) {
				r = NBX_EDEPTH;
				goto out;
			}
			if (it.n > lim->max_count) {
				r = NBX_ETOOBIG;
				goto out;
			}
			kids = it.kind == ITEM_MAP ? 2 * it.n : it.n;
		} else if (it.kind == ITEM_BYTES && it.len > lim->max_str) {
			r = NBX_ETOOBIG;
			goto out;
		}

		pending = pending - 1 + kids;
		if (objects + pending > lim->max_objects) {
			r = NBX_ETOOBIG;
			goto out;
		}
		need = it.hdr + it.len + pending;
		if (need > (uint64_t)(lim->max_size - off)) {
			r = NBX_ETOOBIG;
			goto out;
		}
		if (it.hdr + it.len > (uint64_t)(len - off)) {
			r = NBX_EAGAIN;
			goto out;
		}
		off += it.hdr + (size_t)it.len;

		if (kids > 0) {
			rem[depth++] = kids;
			continue;
		}
		/* This object is complete; so is every container it filled. */
		while (depth > 0 && --rem[depth - 1] == 0)
			depth--;
		if (depth == 0)
			break;
	}
	*size = off;
	r = 0;
out:
	return r;
}
