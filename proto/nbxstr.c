/* nbxstr.c - borrowed strings, node ids and the bounded output buffer. */
#include <stdlib.h>
#include <string.h>

#include "change.h"
#include "nbx_err.h"

void
nbx_hex(const uint8_t *p, size_t n, char *out)
{
	static const char dig[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = dig[p[i] >> 4];
		out[2 * i + 1] = dig[p[i] & 15];
	}
	out[2 * n] = '\0';
}

const char *
change_kind_name(unsigned kind)
{
	static const char *const names[] = { "?", "field", "element", "state",
	    "audience", "erase", "receipt" };

	return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

int
nbx_str_cmp(struct nbx_str a, struct nbx_str b)
{
	uint32_t n = a.n < b.n ? a.n : b.n;
	int r;

	/* names (the usual operands) mostly differ in their first byte */
	if (n && a.p[0] != b.p[0])
		return (unsigned char)a.p[0] - (unsigned char)b.p[0];
	r = n ? memcmp(a.p, b.p, n) : 0;

	if (r != 0)
		return r;
	return (a.n > b.n) - (a.n < b.n);
}

struct nbx_str
nbx_str_c(const char *s)
{
	struct nbx_str r = { s, s ? (uint32_t)strlen(s) : 0 };

	return r;
}

struct nbx_str
nbx_id_creator(struct nbx_str id)
{
	struct nbx_str r = { id.p, 0 };
	const char *colon = id.n ? memchr(id.p, ':', id.n) : NULL;

	if (colon)
		r.n = (uint32_t)(colon - id.p);
	return r;
}

int
nbx_node_id_valid(struct nbx_str s)
{
	if (s.n == 0 || s.n > NBX_ID_MAX)
		return 0;
	for (uint32_t i = 0; i < s.n; i++) {
		char ch = s.p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    ch == '-'))
			return 0;
	}
	return 1;
}

void
nbx_buf_init(struct nbx_buf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void
nbx_buf_fini(struct nbx_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int
nbx_buf_reserve(struct nbx_buf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 256;
	uint8_t *np;

	if (nbx_buf_room(b, n))
		return 0;
	if (n > b->max || b->len > b->max - n)
		return NBX_ETOOBIG;
	while (cap < b->len + n)
		cap *= 2;
	if (cap > b->max)
		cap = b->max;
	if ((np = realloc(b->p, cap)) == NULL)
		return NBX_ENOMEM;
	b->p = np;
	b->cap = cap;
	return 0;
}

/*
 * The encoders append a few bytes at a time, so the common case (room
 * left below both cap and max) is kept short.
 */
int
nbx_buf_append(struct nbx_buf *b, const void *p, size_t n)
{
	int rc;

	if (nbx_buf_room(b, n)) {
		if (n == 1)
			b->p[b->len] = *(const uint8_t *)p;
		else if (n)
			memcpy(b->p + b->len, p, n);
		b->len += n;
		return 0;
	}
	if ((rc = nbx_buf_reserve(b, n)) != 0)
		return rc;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}
