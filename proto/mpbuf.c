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
nbx_mp_pack_value(msgpack_packer *pk, const struct nbx_value *v)
{
	switch (v->t) {
	case NBX_V_NIL:
		return msgpack_pack_nil(pk);
	case NBX_V_BOOL:
		return v->i ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	case NBX_V_INT:
		return msgpack_pack_int64(pk, v->i);
	case NBX_V_STR:
		return nbx_mp_pack_str(pk, v->s);
	}
	return -1;
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
nbx_mp_get_bool(const msgpack_object *o, int *out)
{
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return NBX_EMALFORMED;
	*out = o->via.boolean ? 1 : 0;
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

int
nbx_mp_get_value(const msgpack_object *o, uint32_t max_str,
    struct nbx_value *out)
{
	int b;

	memset(out, 0, sizeof(*out));
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		out->t = NBX_V_NIL;
		return 0;
	case MSGPACK_OBJECT_BOOLEAN:
		(void)nbx_mp_get_bool(o, &b);
		out->t = NBX_V_BOOL;
		out->i = b;
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		out->t = NBX_V_INT;
		return nbx_mp_get_i64(o, &out->i);
	case MSGPACK_OBJECT_STR:
		out->t = NBX_V_STR;
		return nbx_mp_get_str(o, max_str, &out->s);
	default:
		return NBX_EMALFORMED;
	}
}
