/*
 * mpbuf.h - glue between msgpack-c and the project's types: a packer that
 * writes into a bounded struct nbx_buf (kept for the tests that check
 * mpwrite.h against msgpack-c byte for byte, and the rogue peer), and
 * readers that take typed values out of an unpacked msgpack_object,
 * checking each type.  Not for peer
 * bytes (mpread.h is): only the store's own small tables, unpacked after
 * mpscan, and change_decode_ref's classification of refused input (the
 * list of msgpack paths is in mpread.h).
 */
#ifndef NBX_MPBUF_H
#define NBX_MPBUF_H

#include <msgpack.h>

#include "change.h"

/* Points a msgpack packer at b; packing past b->max fails. */
void nbx_mp_packer_init(msgpack_packer *pk, struct nbx_buf *b);

/*
 * A packer sink that keeps the first error (NBX_ETOOBIG, NBX_ENOMEM), so
 * a caller can pack a whole message unchecked and look once at the end:
 * `struct nbx_mp_sink s; nbx_mp_sink_init(&pk, &s, b); ...; if (s.err)`.
 */
struct nbx_mp_sink {
	struct nbx_buf *b;
	int err;
};

void nbx_mp_sink_init(msgpack_packer *pk, struct nbx_mp_sink *s,
    struct nbx_buf *b);

/* Appends raw bytes through the sink (keeping its first error). */
int nbx_mp_sink_write(void *sink, const char *p, size_t n);

/* Packs a borrowed string. 0 or -1. */
int nbx_mp_pack_str(msgpack_packer *pk, struct nbx_str s);

/*
 * Readers: each returns 0 and sets *out if o has the right type (and fits),
 * else NBX_EMALFORMED.  Strings borrow from the unpacked buffer.
 */
int nbx_mp_get_u64(const msgpack_object *o, uint64_t *out);
int nbx_mp_get_i64(const msgpack_object *o, int64_t *out);
int nbx_mp_get_str(const msgpack_object *o, uint32_t max, struct nbx_str *out);

#endif
