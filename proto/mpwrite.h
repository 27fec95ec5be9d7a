/*
 * mpwrite.h - msgpack writers that append straight into a struct nbx_buf.
 *
 * The hot encoders (a change, a stored record) write a hundred small
 * items per record; going through msgpack-c's packer costs a callback per
 * item.  These inline writers reserve room and store the bytes directly,
 * in the same shortest forms msgpack-c's packer chooses, so the output is
 * byte for byte what msgpack_pack_* would write (tests/unit/mpwrite_test.c
 * checks them against msgpack-c over the boundaries of every form).
 *
 * Errors are sticky: a writer that cannot get room (NBX_ENOMEM, or
 * NBX_ETOOBIG past the buffer's max) records the code in w->err and every
 * later write does nothing, so an encoder writes a whole message and looks
 * once at the end.
 */
#ifndef NBX_MPWRITE_H
#define NBX_MPWRITE_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "change.h"

struct mpwrite {
	struct nbx_buf *b;
	int err;
};

static inline void
mpwrite_init(struct mpwrite *w, struct nbx_buf *b)
{
	w->b = b;
	w->err = 0;
}

/* Room for n more bytes; a pointer to them, or NULL (w->err set). */
static inline uint8_t *
mpwrite__room(struct mpwrite *w, size_t n)
{
	struct nbx_buf *b = w->b;
	int rc;

	if (w->err != 0)
		return NULL;
	if (!nbx_buf_room(b, n) && (rc = nbx_buf_reserve(b, n)) != 0) {
		w->err = rc;
		return NULL;
	}
	return b->p + b->len;
}

static inline void
mpwrite__be(uint8_t *p, uint64_t v, size_t n)
{
	uint32_t v4;
	uint16_t v2;

	switch (n) {		/* one store each (mpread_be) */
	case 8:
		v = htobe64(v);
		memcpy(p, &v, 8);
		return;
	case 4:
		v4 = htobe32((uint32_t)v);
		memcpy(p, &v4, 4);
		return;
	case 2:
		v2 = htobe16((uint16_t)v);
		memcpy(p, &v2, 2);
		return;
	}
	for (size_t i = n; i-- > 0; v >>= 8)
		p[i] = (uint8_t)v;
}

/* A one-byte tag followed by an n-byte big-endian value. */
static inline void
mpwrite__tagged(struct mpwrite *w, uint8_t tag, uint64_t v, size_t n)
{
	uint8_t *p = mpwrite__room(w, 1 + n);

	if (p == NULL)
		return;
	p[0] = tag;
	mpwrite__be(p + 1, v, n);
	w->b->len += 1 + n;
}

/* 8 raw bytes, big-endian (no msgpack tag: inside a bin). */
static inline void
mpwrite_u64be(struct mpwrite *w, uint64_t v)
{
	uint8_t *p = mpwrite__room(w, 8);

	if (p == NULL)
		return;
	mpwrite__be(p, v, 8);
	w->b->len += 8;
}

static inline void
mpwrite_byte(struct mpwrite *w, uint8_t v)
{
	uint8_t *p = mpwrite__room(w, 1);

	if (p == NULL)
		return;
	*p = v;
	w->b->len++;
}

/* n bytes as they are (msgpack the caller has already encoded). */
static inline void
mpwrite_raw(struct mpwrite *w, const void *v, size_t n)
{
	uint8_t *p = mpwrite__room(w, n);

	if (p == NULL)
		return;
	if (n)
		memcpy(p, v, n);
	w->b->len += n;
}

static inline void
mpwrite_nil(struct mpwrite *w)
{
	mpwrite_byte(w, 0xc0);
}

static inline void
mpwrite_bool(struct mpwrite *w, int v)
{
	mpwrite_byte(w, v ? 0xc3 : 0xc2);
}

static inline void
mpwrite_uint(struct mpwrite *w, uint64_t v)
{
	if (v < 128)
		mpwrite_byte(w, (uint8_t)v);
	else if (v < 256)
		mpwrite__tagged(w, 0xcc, v, 1);
	else if (v < 65536)
		mpwrite__tagged(w, 0xcd, v, 2);
	else if (v <= UINT32_MAX)
		mpwrite__tagged(w, 0xce, v, 4);
	else
		mpwrite__tagged(w, 0xcf, v, 8);
}

static inline void
mpwrite_int(struct mpwrite *w, int64_t v)
{
	if (v >= 0)
		mpwrite_uint(w, (uint64_t)v);
	else if (v >= -32)
		mpwrite_byte(w, (uint8_t)(int8_t)v);
	else if (v >= INT8_MIN)
		mpwrite__tagged(w, 0xd0, (uint64_t)v, 1);
	else if (v >= INT16_MIN)
		mpwrite__tagged(w, 0xd1, (uint64_t)v, 2);
	else if (v >= INT32_MIN)
		mpwrite__tagged(w, 0xd2, (uint64_t)v, 4);
	else
		mpwrite__tagged(w, 0xd3, (uint64_t)v, 8);
}

static inline void
mpwrite_array(struct mpwrite *w, uint32_t n)
{
	if (n < 16)
		mpwrite_byte(w, (uint8_t)(0x90 | n));
	else if (n < 65536)
		mpwrite__tagged(w, 0xdc, n, 2);
	else
		mpwrite__tagged(w, 0xdd, n, 4);
}

static inline void
mpwrite_str(struct mpwrite *w, struct nbx_str s)
{
	size_t hdr = s.n < 32 ? 1 : s.n < 256 ? 2 : s.n < 65536 ? 3 : 5;
	uint8_t *p = mpwrite__room(w, hdr + s.n);

	if (p == NULL)
		return;
	if (hdr == 1)
		p[0] = (uint8_t)(0xa0 | s.n);
	else {
		p[0] = hdr == 2 ? 0xd9 : hdr == 3 ? 0xda : 0xdb;
		mpwrite__be(p + 1, s.n, hdr - 1);
	}
	if (s.n)
		memcpy(p + hdr, s.p, s.n);
	w->b->len += hdr + s.n;
}

/*
 * The header of a bin of n bytes (bin 8/16/32, as msgpack-c's
 * msgpack_pack_bin); the caller writes the n bytes after it (mpwrite_raw),
 * for a body that is not in one piece.
 */
static inline void
mpwrite_bin_head(struct mpwrite *w, uint32_t n)
{
	if (n < 256)
		mpwrite__tagged(w, 0xc4, n, 1);
	else if (n < 65536)
		mpwrite__tagged(w, 0xc5, n, 2);
	else
		mpwrite__tagged(w, 0xc6, n, 4);
}

/* A bin of n bytes. */
static inline void
mpwrite_bin(struct mpwrite *w, const void *v, uint32_t n)
{
	mpwrite_bin_head(w, n);
	mpwrite_raw(w, v, n);
}

/* A value: nil, bool, int64 or str. */
static inline void
mpwrite_value(struct mpwrite *w, const struct nbx_value *v)
{
	switch (v->t) {
	case NBX_V_NIL:
		mpwrite_nil(w);
		break;
	case NBX_V_BOOL:
		mpwrite_bool(w, v->i != 0);
		break;
	case NBX_V_INT:
		mpwrite_int(w, v->i);
		break;
	case NBX_V_STR:
		mpwrite_str(w, v->s);
		break;
	}
}

#endif
