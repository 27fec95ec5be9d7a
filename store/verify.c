/*
 * verify.c - the pair digest: what two nodes should agree on, hashed, so
 * that equal digests on both ends of a pair mean they converged on every
 * field both may hold.  See store_pair_digests in store.h.  One pass over
 * the records serves any number of peers: a change is encoded once, and
 * the peers that have been given the same bytes so far share one SHA-256
 * context (a group), so bytes every peer counts (region fields, most of
 * them) are hashed once, not once per peer.  A group splits, its context
 * copied, at the first record whose bytes differ between its peers; the
 * digests are those of hashing each peer's bytes alone.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "nbx_err.h"
#include "store_int.h"

#define NONE	((size_t)-1)
#define FRAMES_MAX	((size_t)1 << 30)	/* bytes of one record's frames */

/* One peer's digest in the making, and its share of the record at hand. */
struct pair {
	struct nbx_str peer;
	size_t grp;		/* the group (context) it hashes into */
	unsigned keep;		/* bit i: record-level change i of the
				   pass's `kept` counts for this pair */
	size_t fields;		/* field frames of this record that count */
	uint64_t records, changes;
};

/* A SHA-256 context shared by the pairs that were given the same bytes. */
struct grp {
	EVP_MD_CTX *md;
	size_t rep;		/* this record: its first pair, or NONE */
	size_t from;		/* this record: the group it was split from */
};

/* The pass: the record being hashed and every pair's state. */
struct pass {
	const struct pol_coll *pc;
	const struct crdt_record *r;
	struct nbx_str self;
	struct pair *pairs;
	size_t npairs;
	struct grp *grps;
	size_t ngrps;
	/* record-level changes (state, audience) of this record, encoded,
	   hashed for a pair only when a field of the record counts for it
	   (changes() gives them before the fields) */
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
both_may_hold(const struct pass *x, const struct pair *p,
    const struct pol_field *f, const struct change *c)
{
	if (f->share == SHARE_REGION)
		return 1;
	return nbx_audience_has(&x->r->aud, x->self) &&
	    nbx_audience_has(&x->r->aud, p->peer) &&
	    nbx_audience_has(&c->aud, x->self) &&
	    nbx_audience_has(&c->aud, p->peer);
}

static int
bit(const struct pass *x, size_t f, size_t i)
{
	return (x->bits[f * x->words + i / 64] >> (i % 64)) & 1;
}

static int
visit_kept(struct pass *x, const struct change *c)
{
	int self_in = nbx_audience_has(&c->aud, x->self);
	unsigned b = 1u << x->nkept;

	if (x->nkept == 2)
		return 0;	/* a record has one state and one audience */
	x->kept[x->nkept].len = 0;
	if (frame_change(&x->kept[x->nkept], c) != 0)
		return x->err = NBX_EINVAL;
	for (size_t i = 0; i < x->npairs; i++)
		/* a node outside the audience may or may not have been told
		   it; only an audience both are in is common ground */
		if (c->kind == CHANGE_STATE || (self_in &&
		    nbx_audience_has(&c->aud, x->pairs[i].peer)))
			x->pairs[i].keep |= b;
	x->nkept++;
	return 0;
}

/* Room for one more field frame's offset and row. */
static int
frame_room(struct pass *x)
{
	size_t cap;
	size_t *off;
	uint64_t *bits;

	if (x->nf + 2 <= x->fcap)
		return 0;
	cap = x->fcap ? 2 * x->fcap : 64;
	if ((off = realloc(x->off, cap * sizeof(*off))) == NULL)
		return NBX_ENOMEM;
	x->off = off;
	if ((bits = realloc(x->bits, cap * x->words * sizeof(*bits))) == NULL)
		return NBX_ENOMEM;
	x->bits = bits;
	x->fcap = cap;
	return 0;
}

static int
visit_field(struct pass *x, const struct change *c)
{
	const struct pol_field *f = policy_field(x->pc, c->field);
	uint64_t *row;
	int any = 0;

	if (f == NULL || f->share == SHARE_LOCAL)
		return 0;
	if (frame_room(x) != 0)
		return x->err = NBX_ENOMEM;
	row = &x->bits[x->nf * x->words];
	memset(row, 0, x->words * sizeof(*row));
	for (size_t i = 0; i < x->npairs; i++)
		if (both_may_hold(x, &x->pairs[i], f, c)) {
			row[i / 64] |= (uint64_t)1 << (i % 64);
			x->pairs[i].fields++;
			any = 1;
		}
	if (!any)
		return 0;
	if (frame_change(&x->fb, c) != 0)
		return x->err = NBX_EINVAL;
	x->off[++x->nf] = x->fb.len;
	return 0;
}

static int
visit(void *arg, const struct change *c)
{
	struct pass *x = arg;

	switch (c->kind) {
	case CHANGE_AUDIENCE:
	case CHANGE_STATE:
		return visit_kept(x, c);
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		return visit_field(x, c);
	default:
		return 0;	/* erasures and receipts are not compared */
	}
}

/* 1 if pairs a and b are given the same bytes for this record. */
static int
same_share(const struct pass *x, size_t a, size_t b)
{
	const struct pair *pa = &x->pairs[a], *pb = &x->pairs[b];

	if (pa->fields != pb->fields)
		return 0;
	if (pa->fields == 0)
		return 1;	/* neither hashes anything */
	if (pa->keep != pb->keep)
		return 0;
	for (size_t f = 0; f < x->nf; f++)
		if (bit(x, f, a) != bit(x, f, b))
			return 0;
	return 1;
}

/*
 * Regroups the pairs for this record: a pair whose bytes differ from
 * those of its group's first pair moves to a group split from it this
 * record with the same bytes, or to a new one, a copy of the context
 * before this record.
 */
static int
regroup(struct pass *x)
{
	size_t first_new = x->ngrps;

	for (size_t g = 0; g < x->ngrps; g++)
		x->grps[g].rep = NONE;
	for (size_t i = 0; i < x->npairs; i++) {
		struct pair *p = &x->pairs[i];
		struct grp *g = &x->grps[p->grp], *h;
		size_t k;

		if (g->rep == NONE) {
			g->rep = i;
			continue;
		}
		if (same_share(x, g->rep, i))
			continue;
		for (k = first_new; k < x->ngrps; k++)
			if (x->grps[k].from == p->grp &&
			    same_share(x, x->grps[k].rep, i))
				break;
		if (k == x->ngrps) {
			/* a group keeps its first pair: at most npairs */
			h = &x->grps[x->ngrps];
			if ((h->md = EVP_MD_CTX_new()) == NULL ||
			    EVP_MD_CTX_copy_ex(h->md, g->md) != 1) {
				EVP_MD_CTX_free(h->md);
				h->md = NULL;
				return NBX_ENOMEM;
			}
			h->rep = i;
			h->from = p->grp;
			x->ngrps++;
		}
		p->grp = k;
	}
	return 0;
}

/* Hashes the bytes of pair `rep` for this record into group g. */
static int
hash_share(struct pass *x, struct grp *g, size_t rep)
{
	const struct pair *p = &x->pairs[rep];
	size_t f = 0, run;

	if (p->fields == 0)
		return 0;
	for (size_t k = 0; k < x->nkept; k++)
		if ((p->keep & 1u << k) && EVP_DigestUpdate(g->md,
		    x->kept[k].p, x->kept[k].len) != 1)
			return NBX_ENOMEM;
	/* field frames in runs that count for rep: contiguous in fb */
	while (f < x->nf) {
		if (!bit(x, f, rep)) {
			f++;
			continue;
		}
		for (run = f; run < x->nf && bit(x, run, rep); run++)
			;
		if (EVP_DigestUpdate(g->md, x->fb.p + x->off[f],
		    x->off[run] - x->off[f]) != 1)
			return NBX_ENOMEM;
		f = run;
	}
	return 0;
}

/* Hashes record r into every pair. */
static int
pass_record(struct pass *x, const struct crdt_record *r)
{
	int rc;

	x->r = r;
	x->nkept = 0;
	x->nf = 0;
	x->fb.len = 0;
	if ((rc = frame_room(x)) != 0)
		return rc;
	x->off[0] = 0;
	for (size_t i = 0; i < x->npairs; i++) {
		x->pairs[i].keep = 0;
		x->pairs[i].fields = 0;
	}
	if ((rc = crdt_record_changes(r, visit, x)) != 0 ||
	    (rc = x->err) != 0 || (rc = regroup(x)) != 0)
		return rc;
	for (size_t g = 0; g < x->ngrps; g++)
		if (x->grps[g].rep != NONE &&
		    (rc = hash_share(x, &x->grps[g], x->grps[g].rep)) != 0)
			return rc;
	for (size_t i = 0; i < x->npairs; i++) {
		struct pair *p = &x->pairs[i];

		if (p->fields > 0) {
			p->records++;
			p->changes += p->fields +
			    (uint64_t)__builtin_popcount(p->keep);
		}
	}
	return 0;
}

static int
pass_run(struct store *st, const struct policy *pol, struct pass *x)
{
	struct store_rtxn *t;
	int rc;

	if ((rc = store_rtxn_begin(st, &t)) != 0)
		return rc;
	for (size_t k = 0; k < policy_ncoll(pol) && rc == 0; k++) {
		struct nbx_str coll, after = { "", 0 }, id;
		struct crdt_record r;

		x->pc = policy_coll_at(pol, k);
		coll = nbx_str_c(x->pc->name);
		while ((rc = store_record_next(t, coll, after, &id, &r)) == 0) {
			after = id;
			if (!r.erased)
				rc = pass_record(x, &r);
			crdt_record_fini(&r);
			if (rc != 0)
				break;
		}
		crdt_record_fini(&r);
		if (rc == NBX_ENOTFOUND)
			rc = 0;
	}
	store_rtxn_end(t);
	return rc;
}

int
store_pair_digests(struct store *st, const struct policy *pol,
    const struct nbx_str *peers, size_t npeers, struct store_digest *out)
{
	struct pass x;
	int rc = 0;

	memset(&x, 0, sizeof(x));
	x.self = nbx_str_c(st->node_id);
	x.npairs = npeers;
	x.words = (npeers + 63) / 64;
	x.pairs = calloc(npeers ? npeers : 1, sizeof(*x.pairs));
	x.grps = calloc(npeers ? npeers : 1, sizeof(*x.grps));
	if (x.pairs == NULL || x.grps == NULL) {
		free(x.pairs);
		free(x.grps);
		return NBX_ENOMEM;
	}
	nbx_buf_init(&x.fb, FRAMES_MAX);
	nbx_buf_init(&x.kept[0], NBX_CHANGE_MAX + 4);
	nbx_buf_init(&x.kept[1], NBX_CHANGE_MAX + 4);
	for (size_t i = 0; i < npeers; i++)
		x.pairs[i].peer = peers[i];	/* all in group 0 */
	if (npeers > 0) {
		x.ngrps = 1;
		if ((x.grps[0].md = EVP_MD_CTX_new()) == NULL ||
		    EVP_DigestInit_ex(x.grps[0].md, EVP_sha256(), NULL) != 1)
			rc = NBX_ENOMEM;
	}
	if (rc == 0 && npeers > 0)
		rc = pass_run(st, pol, &x);
	for (size_t g = 0; g < x.ngrps; g++) {
		unsigned int mdlen = 32;
		uint8_t d[32];

		if (rc == 0 && EVP_DigestFinal_ex(x.grps[g].md, d, &mdlen) != 1)
			rc = NBX_ENOMEM;
		for (size_t i = 0; rc == 0 && i < npeers; i++)
			if (x.pairs[i].grp == g)
				memcpy(out[i].digest, d, 32);
		EVP_MD_CTX_free(x.grps[g].md);
	}
	for (size_t i = 0; i < npeers; i++) {
		if (rc != 0)
			memset(out[i].digest, 0, 32);
		out[i].records = x.pairs[i].records;
		out[i].changes = x.pairs[i].changes;
	}
	free(x.pairs);
	free(x.grps);
	free(x.off);
	free(x.bits);
	nbx_buf_fini(&x.fb);
	nbx_buf_fini(&x.kept[0]);
	nbx_buf_fini(&x.kept[1]);
	return rc;
}

int
store_pair_digest(struct store *st, const struct policy *pol,
    struct nbx_str peer, uint8_t out[32], uint64_t *records,
    uint64_t *changes)
{
	struct store_digest d = { 0 };	/* zeros also when it fails early */
	int rc = store_pair_digests(st, pol, &peer, 1, &d);

	memcpy(out, d.digest, 32);
	*records = d.records;
	*changes = d.changes;
	return rc;
}
