/* mpbuf.c - msgpack-c packer into struct nbx_buf, and typed readers. */
#include <string.h>

#include "mpbuf.h"
#include "nbx_err.h"

static int
buf_write(void *data, const char *p, size_t n)
{
	return nbx_buf_append(data, p, n) == 0 ? 0 : -1;
}

void
nbx_mp_packer_init(msgpack_packer *pk, struct nbx_buf *b)
{
	msgpack_packer_init(pk, b, buf_write);
}

int
nbx_mp_sink_write(void *sink, const char *p, size_t n)
{
	struct nbx_mp_sink *s = sink;

	/* sticky: once an append failed, the output is void anyway */
	if (s->err == 0)
		s->err = nbx_buf_append(s->b, p, n);
	return s->err == 0 ? 0 : -1;
}

void
nbx_mp_sink_init(msgpack_packer *pk, struct nbx_mp_sink *s,
    struct nbx_buf *b)
{
	s->b = b;
	s->err = 0;
	msgpack_packer_init(pk, s, nbx_mp_sink_write);
}

int
nbx_mp_pack_str(msgpack_packer *pk, struct nbx_str s)
{
	if (msgpack_pack_str(pk, s.n) != 0)
		return -1;
	return s.n ? msgpack_pack_str_body(pk, s.p, s.n) : 0;
}

int
nbx_mp_get_u64(const msgpack_object *o, uint64_t *out)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return NBX_EMALFORMED;
	*out = o->via.u64;
	return 0;
}

int
nbx_mp_get_i64(const msgpack_object *o, int64_t *out)
{
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		*out = o->via.i64;
	else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
	    o->via.u64 <= INT64_MAX)
		*out = (int64_t)o->via.u64;
	else
		return NBX_EMALFORMED;
	return 0;
}

int
nbx_mp_get_str(const msgpack_object *o, uint32_t max, struct nbx_str *out)
{
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max)
		return NBX_EMALFORMED;
	out->p = o->via.str.size ? o->via.str.ptr : "";
	out->n = o->via.str.size;
	return 0;
}

