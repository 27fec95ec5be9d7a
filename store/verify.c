/*
 * verify.c - the pair digest: what two nodes should agree on, hashed, so
 * that equal digests on both ends of a pair mean they converged on every
 * field both may hold.  See store_pair_digests in store.h.  One pass over
 * the records serves any number of peers: a change is encoded once and
 * hashed into the digest of each peer it counts for.
 */
#include <string.h>

#include <openssl/evp.h>

#include "nbx_err.h"
#include "store_int.h"

/* One peer's digest in the making. */
struct pair {
	struct nbx_str peer;
	EVP_MD_CTX *md;
	unsigned keep;		/* bit i: record-level change i of the
				   pass's `kept` counts for this pair */
	int fields;		/* fields of this record that count */
	uint64_t records, changes;
};

/* The pass: the record being hashed and every pair's state. */
struct pass {
	const struct pol_coll *pc;
	const struct crdt_record *r;
	struct nbx_str self;
	struct pair *pairs;
	size_t npairs;
	/* record-level changes (state, audience) of this record, encoded,
	   held until a field of the record counts for a pair */
	struct nbx_buf kept[2];
	size_t nkept;
	struct nbx_buf enc;
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

static void
hash(struct pair *p, const struct nbx_buf *b)
{
	EVP_DigestUpdate(p->md, b->p, b->len);
	p->changes++;
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
visit_kept(struct pass *x, const struct change *c)
{
	int self_in = nbx_audience_has(&c->aud, x->self);
	unsigned bit = 1u << x->nkept;

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
			x->pairs[i].keep |= bit;
	x->nkept++;
	return 0;
}

static int
visit_field(struct pass *x, const struct change *c)
{
	const struct pol_field *f = policy_field(x->pc, c->field);
	int encoded = 0;

	if (f == NULL || f->share == SHARE_LOCAL)
		return 0;
	for (size_t i = 0; i < x->npairs; i++) {
		struct pair *p = &x->pairs[i];

		if (!both_may_hold(x, p, f, c))
			continue;
		if (!encoded) {
			x->enc.len = 0;
			if (frame_change(&x->enc, c) != 0)
				return x->err = NBX_EINVAL;
			encoded = 1;
		}
		if (p->fields++ == 0)
			for (size_t k = 0; k < x->nkept; k++)
				if (p->keep & 1u << k)
					hash(p, &x->kept[k]);
		hash(p, &x->enc);
	}
	return 0;
}

static int
visit(void *arg, const struct change *c)
{
	struct pass *x = arg;

	switch (c->kind) {
	case CHANGE_AUDIENCE:
	case CHANGE_STATE:
		/* counted only if a field of the record counts: kept for now
		   (changes() gives them before the fields) */
		return visit_kept(x, c);
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		return visit_field(x, c);
	default:
		return 0;	/* erasures and receipts are not compared */
	}
}

/* Hashes record r into every pair. */
static int
pass_record(struct pass *x, const struct crdt_record *r)
{
	int rc;

	x->r = r;
	x->nkept = 0;
	for (size_t i = 0; i < x->npairs; i++) {
		x->pairs[i].keep = 0;
		x->pairs[i].fields = 0;
	}
	rc = crdt_record_changes(r, visit, x);
	for (size_t i = 0; i < x->npairs; i++)
		x->pairs[i].records += x->pairs[i].fields > 0;
	return rc != 0 ? rc : x->err;
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
	if ((x.pairs = calloc(npeers ? npeers : 1, sizeof(*x.pairs))) == NULL)
		return NBX_ENOMEM;
	x.npairs = npeers;
	nbx_buf_init(&x.enc, NBX_CHANGE_MAX + 4);
	nbx_buf_init(&x.kept[0], NBX_CHANGE_MAX + 4);
	nbx_buf_init(&x.kept[1], NBX_CHANGE_MAX + 4);
	for (size_t i = 0; i < npeers && rc == 0; i++) {
		x.pairs[i].peer = peers[i];
		if ((x.pairs[i].md = EVP_MD_CTX_new()) == NULL ||
		    EVP_DigestInit_ex(x.pairs[i].md, EVP_sha256(), NULL) != 1)
			rc = NBX_ENOMEM;
	}
	if (rc == 0)
		rc = pass_run(st, pol, &x);
	for (size_t i = 0; i < npeers; i++) {
		unsigned int mdlen = 32;

		memset(&out[i], 0, sizeof(out[i]));
		if (rc == 0 && EVP_DigestFinal_ex(x.pairs[i].md, out[i].digest,
		    &mdlen) != 1)
			rc = NBX_ENOMEM;
		out[i].records = x.pairs[i].records;
		out[i].changes = x.pairs[i].changes;
		EVP_MD_CTX_free(x.pairs[i].md);
	}
	free(x.pairs);
	nbx_buf_fini(&x.enc);
	nbx_buf_fini(&x.kept[0]);
	nbx_buf_fini(&x.kept[1]);
	return rc;
}

int
store_pair_digest(struct store *st, const struct policy *pol,
    struct nbx_str peer, uint8_t out[32], uint64_t *records,
    uint64_t *changes)
{
	struct store_digest d;
	int rc = store_pair_digests(st, pol, &peer, 1, &d);

	memcpy(out, d.digest, 32);
	*records = d.records;
	*changes = d.changes;
	return rc;
}
