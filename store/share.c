/*
 * share.c - the bytes of one record that two nodes should agree on: for
 * the pair (this node, peer), the record's changes that both may hold
 * under the policy, framed.  The pair digest (verify.c) hashes them for
 * every record in turn, and an item of set reconciliation (items.c) for
 * one record alone: one rule, here, so that equal digests and equal items
 * mean the same thing.  Several peers are served at once: a change is
 * encoded once, and a bit per peer says whether it counts for that pair.
 */
#include <stdlib.h>
#include <string.h>

#include "nbx_err.h"
#include "store_int.h"

#define FRAMES_MAX	((size_t)1 << 30)	/* bytes of one record's frames */

/* One pair's share of the record at hand. */
struct share_pair {
	struct nbx_str peer;
	unsigned keep;		/* bit i: record-level change i of `kept`
				   counts for this pair */
	size_t fields;		/* field frames of this record that count */
};

struct store__share {
	const struct pol_coll *pc;
	const struct crdt_record *r;
	struct nbx_str self;
	struct share_pair *pairs;
	size_t npairs;
	/* record-level changes (state, audience) of this record, encoded,
	   counted for a pair only when a field of the record counts for it
	   (crdt_record_changes gives them before the fields) */
	struct nbx_buf kept[2];
	size_t nkept;
	/* the record's field frames that count for some pair, back to back:
	   frame f is fb[off[f] .. off[f + 1]), and bit i of its row of
	   `words` words in `bits` says whether it counts for pair i */
	struct nbx_buf fb;
	size_t *off;
	uint64_t *bits;
	size_t nf, fcap, words;
	int err;
};

int
store__share_new(struct nbx_str self, const struct nbx_str *peers,
    size_t npeers, struct store__share **out)
{
	struct store__share *s;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->pairs = calloc(npeers ? npeers : 1, sizeof(*s->pairs))) ==
	    NULL) {
		free(s);
		return NBX_ENOMEM;
	}
	s->self = self;
	s->npairs = npeers;
	s->words = npeers ? (npeers + 63) / 64 : 1;
	for (size_t i = 0; i < npeers; i++)
		s->pairs[i].peer = peers[i];
	nbx_buf_init(&s->fb, FRAMES_MAX);
	nbx_buf_init(&s->kept[0], NBX_CHANGE_MAX + 4);
	nbx_buf_init(&s->kept[1], NBX_CHANGE_MAX + 4);
	*out = s;
	return 0;
}

void
store__share_free(struct store__share *s)
{
	if (s == NULL)
		return;
	free(s->pairs);
	free(s->off);
	free(s->bits);
	nbx_buf_fini(&s->fb);
	nbx_buf_fini(&s->kept[0]);
	nbx_buf_fini(&s->kept[1]);
	free(s);
}

/* Appends change c to buf as 4-byte big-endian length + encoding. */
static int
frame_change(struct nbx_buf *buf, const struct change *c)
{
	size_t at = buf->len;
	uint8_t len[4] = { 0 };
	size_t n;

	if (nbx_buf_append(buf, len, 4) != 0 || change_encode(c, buf) != 0)
		return NBX_EINVAL;
	n = buf->len - at - 4;
	buf->p[at] = (uint8_t)(n >> 24);
	buf->p[at + 1] = (uint8_t)(n >> 16);
	buf->p[at + 2] = (uint8_t)(n >> 8);
	buf->p[at + 3] = (uint8_t)n;
	return 0;
}

/* 1 if both this node and p may hold the value of field change c. */
static int
both_may_hold(const struct store__share *s, const struct share_pair *p,
    const struct pol_field *f, const struct change *c)
{
	if (f->share == SHARE_REGION)
		return 1;
	return nbx_audience_has(&s->r->aud, s->self) &&
	    nbx_audience_has(&s->r->aud, p->peer) &&
	    nbx_audience_has(&c->aud, s->self) &&
	    nbx_audience_has(&c->aud, p->peer);
}

static int
bit(const struct store__share *s, size_t f, size_t i)
{
	return (s->bits[f * s->words + i / 64] >> (i % 64)) & 1;
}

static int
visit_kept(struct store__share *s, const struct change *c)
{
	int self_in = nbx_audience_has(&c->aud, s->self);
	unsigned b = 1u << s->nkept;

	if (s->nkept == 2)
		return 0;	/* a record has one state and one audience */
	s->kept[s->nkept].len = 0;
	if (frame_change(&s->kept[s->nkept], c) != 0)
		return s->err = NBX_EINVAL;
	for (size_t i = 0; i < s->npairs; i++)
		/* a node outside the audience may or may not have been told
		   it; only an audience both are in is common ground */
		if (c->kind == CHANGE_STATE || (self_in &&
		    nbx_audience_has(&c->aud, s->pairs[i].peer)))
			s->pairs[i].keep |= b;
	s->nkept++;
	return 0;
}

/* Room for one more field frame's offset and row. */
static int
frame_room(struct store__share *s)
{
	size_t cap;
	size_t *off;
	uint64_t *bits;

	if (s->nf + 2 <= s->fcap)
		return 0;
	cap = s->fcap ? 2 * s->fcap : 64;
	if ((off = realloc(s->off, cap * sizeof(*off))) == NULL)
		return NBX_ENOMEM;
	s->off = off;
	if ((bits = realloc(s->bits, cap * s->words * sizeof(*bits))) == NULL)
		return NBX_ENOMEM;
	s->bits = bits;
	s->fcap = cap;
	return 0;
}

static int
visit_field(struct store__share *s, const struct change *c)
{
	const struct pol_field *f = policy_field(s->pc, c->field);
	uint64_t *row;
	int any = 0;

	if (f == NULL || f->share == SHARE_LOCAL)
		return 0;
	if (frame_room(s) != 0)
		return s->err = NBX_ENOMEM;
	row = &s->bits[s->nf * s->words];
	memset(row, 0, s->words * sizeof(*row));
	for (size_t i = 0; i < s->npairs; i++)
		if (both_may_hold(s, &s->pairs[i], f, c)) {
			row[i / 64] |= (uint64_t)1 << (i % 64);
			s->pairs[i].fields++;
			any = 1;
		}
	if (!any)
		return 0;
	if (frame_change(&s->fb, c) != 0)
		return s->err = NBX_EINVAL;
	s->off[++s->nf] = s->fb.len;
	return 0;
}

static int
visit(void *arg, const struct change *c)
{
	struct store__share *s = arg;

	switch (c->kind) {
	case CHANGE_AUDIENCE:
	case CHANGE_STATE:
		return visit_kept(s, c);
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		return visit_field(s, c);
	default:
		return 0;	/* erasures and receipts are not compared */
	}
}

int
store__share_record(struct store__share *s, const struct pol_coll *pc,
    const struct crdt_record *r)
{
	int rc;

	s->pc = pc;
	s->r = r;
	s->nkept = 0;
	s->nf = 0;
	s->fb.len = 0;
	s->err = 0;
	if ((rc = frame_room(s)) != 0)
		return rc;
	s->off[0] = 0;
	for (size_t i = 0; i < s->npairs; i++) {
		s->pairs[i].keep = 0;
		s->pairs[i].fields = 0;
	}
	if ((rc = crdt_record_changes(r, visit, s)) != 0)
		return rc;
	return s->err;
}

uint64_t
store__share_changes(const struct store__share *s, size_t i)
{
	const struct share_pair *p = &s->pairs[i];

	if (p->fields == 0)
		return 0;	/* the record-level ones go with a field */
	return p->fields + (uint64_t)__builtin_popcount(p->keep);
}

int
store__share_same(const struct store__share *s, size_t a, size_t b)
{
	const struct share_pair *pa = &s->pairs[a], *pb = &s->pairs[b];

	if (pa->fields != pb->fields)
		return 0;
	if (pa->fields == 0)
		return 1;	/* neither is given anything */
	if (pa->keep != pb->keep)
		return 0;
	for (size_t f = 0; f < s->nf; f++)
		if (bit(s, f, a) != bit(s, f, b))
			return 0;
	return 1;
}

int
store__share_bytes(const struct store__share *s, size_t i,
    int (*fn)(void *arg, const void *p, size_t n), void *arg)
{
	const struct share_pair *p = &s->pairs[i];
	size_t f = 0, run;
	int rc;

	if (p->fields == 0)
		return 0;
	for (size_t k = 0; k < s->nkept; k++)
		if ((p->keep & 1u << k) &&
		    (rc = fn(arg, s->kept[k].p, s->kept[k].len)) != 0)
			return rc;
	/* field frames in runs that count for the pair: contiguous in fb */
	while (f < s->nf) {
		if (!bit(s, f, i)) {
			f++;
			continue;
		}
		for (run = f; run < s->nf && bit(s, run, i); run++)
			;
		if ((rc = fn(arg, s->fb.p + s->off[f],
		    s->off[run] - s->off[f])) != 0)
			return rc;
		f = run;
	}
	return 0;
}
