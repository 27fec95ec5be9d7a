/*
 * verify.c - the pair digest: what two nodes should agree on, hashed, so
 * that equal digests on both ends of a pair mean they converged on every
 * field both may hold.  See store_pair_digest in store.h.
 */
#include <string.h>

#include <openssl/evp.h>

#include "nbx_err.h"
#include "store_int.h"

struct pair {
	const struct pol_coll *pc;
	const struct crdt_record *r;
	struct nbx_str self, peer;
	struct change *keep;	/* record-level changes, held until a field
				   of the record counts */
	size_t nkeep, cap;
	int fields;		/* fields of this record that count */
	EVP_MD_CTX *md;
	struct nbx_buf enc;
	uint64_t changes;
	int err;
};

static void
hash_change(struct pair *x, const struct change *c)
{
	uint8_t len[4];

	x->enc.len = 0;
	if (change_encode(c, &x->enc) != 0) {
		x->err = NBX_EINVAL;
		return;
	}
	len[0] = (uint8_t)(x->enc.len >> 24);
	len[1] = (uint8_t)(x->enc.len >> 16);
	len[2] = (uint8_t)(x->enc.len >> 8);
	len[3] = (uint8_t)x->enc.len;
	EVP_DigestUpdate(x->md, len, 4);
	EVP_DigestUpdate(x->md, x->enc.p, x->enc.len);
	x->changes++;
}

/* 1 if both nodes may hold the value of field change c. */
static int
both_may_hold(const struct pair *x, const struct change *c)
{
	const struct pol_field *f = policy_field(x->pc, c->field);

	if (f == NULL || f->share == SHARE_LOCAL)
		return 0;
	if (f->share == SHARE_REGION)
		return 1;
	return nbx_audience_has(&x->r->aud, x->self) &&
	    nbx_audience_has(&x->r->aud, x->peer) &&
	    nbx_audience_has(&c->aud, x->self) &&
	    nbx_audience_has(&c->aud, x->peer);
}

static int
visit(void *arg, const struct change *c)
{
	struct pair *x = arg;

	switch (c->kind) {
	case CHANGE_AUDIENCE:
		/* a node outside the audience may or may not have been told
		   it; only an audience both are in is common ground */
		if (!nbx_audience_has(&c->aud, x->self) ||
		    !nbx_audience_has(&c->aud, x->peer))
			return 0;
		/* fall through */
	case CHANGE_STATE:
		/* counted only if a field of the record counts: kept for now
		   (changes() gives them before the fields) */
		if (x->nkeep < x->cap)
			x->keep[x->nkeep++] = *c;
		return 0;
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		if (!both_may_hold(x, c))
			return 0;
		if (x->fields++ == 0)
			for (size_t i = 0; i < x->nkeep; i++)
				hash_change(x, &x->keep[i]);
		hash_change(x, c);
		return x->err;
	default:
		return 0;	/* erasures and receipts are not compared */
	}
}

int
store_pair_digest(struct store *st, const struct policy *pol,
    struct nbx_str peer, uint8_t out[32], uint64_t *records,
    uint64_t *changes)
{
	struct store_rtxn *t;
	struct change keep[2];
	struct pair x;
	unsigned int mdlen = 32;
	int rc;

	memset(&x, 0, sizeof(x));
	*records = *changes = 0;
	x.self = nbx_str_c(st->node_id);
	x.peer = peer;
	x.keep = keep;
	x.cap = 2;
	nbx_buf_init(&x.enc, NBX_CHANGE_MAX);
	if ((x.md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(x.md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(x.md);
		return NBX_ENOMEM;
	}
	if ((rc = store_rtxn_begin(st, &t)) != 0)
		goto out;
	for (size_t k = 0; k < policy_ncoll(pol) && rc == 0; k++) {
		struct nbx_str coll, after = { "", 0 }, id;
		struct crdt_record r;

		x.pc = policy_coll_at(pol, k);
		coll = nbx_str_c(x.pc->name);
		while ((rc = store_record_next(t, coll, after, &id, &r)) == 0) {
			after = id;
			if (!r.erased) {
				x.r = &r;
				x.nkeep = 0;
				x.fields = 0;
				rc = crdt_record_changes(&r, visit, &x);
				*records += x.fields > 0;
			}
			crdt_record_fini(&r);
			if (rc != 0)
				break;
		}
		crdt_record_fini(&r);
		if (rc == NBX_ENOTFOUND)
			rc = 0;
	}
	store_rtxn_end(t);
	if (rc == 0)
		rc = EVP_DigestFinal_ex(x.md, out, &mdlen) == 1 ? 0 : NBX_ENOMEM;
	*changes = x.changes;
out:
	EVP_MD_CTX_free(x.md);
	nbx_buf_fini(&x.enc);
	return rc;
}
