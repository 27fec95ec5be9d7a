/*
 * verify.c - the pair digest: what two nodes should agree on, hashed, so
 * that equal digests on both ends of a pair mean they converged on every
 * field both may hold.  See store_pair_digests in store.h; which bytes of
 * a record count for a pair is share.c's.  One pass over the records
 * serves any number of peers: a change is encoded once, and the peers
 * that have been given the same bytes so far share one SHA-256 context (a
 * group), so bytes every peer counts (region fields, most of them) are
 * hashed once, not once per peer.  A group splits, its context copied, at
 * the first record whose bytes differ between its peers; the digests are
 * those of hashing each peer's bytes alone.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "nbx_err.h"
#include "store_int.h"

#define NONE	((size_t)-1)

/* One peer's digest in the making. */
struct pair {
	size_t grp;		/* the group (context) it hashes into */
	uint64_t records, changes;
};

/* A SHA-256 context shared by the pairs that were given the same bytes. */
struct grp {
	EVP_MD_CTX *md;
	size_t rep;		/* this record: its first pair, or NONE */
	size_t from;		/* this record: the group it was split from */
};

/* The pass: every pair's state, and the record being hashed. */
struct pass {
	struct store *st;
	struct store__share *sh;	/* the record's bytes for each pair */
	struct pair *pairs;
	size_t npairs;
	struct grp *grps;
	size_t ngrps;
	struct crdt_record r;	/* decoded here, its arrays kept */
};

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
		if (store__share_same(x->sh, g->rep, i))
			continue;
		for (k = first_new; k < x->ngrps; k++)
			if (x->grps[k].from == p->grp &&
			    store__share_same(x->sh, x->grps[k].rep, i))
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

static int
md_update(void *arg, const void *p, size_t n)
{
	return EVP_DigestUpdate(arg, p, n) == 1 ? 0 : NBX_ENOMEM;
}

/* Hashes the record (k, d) into every pair. */
static int
pass_record(void *arg, const struct pol_coll *pc, const MDB_val *k,
    const MDB_val *d)
{
	struct pass *x = arg;
	int rc;

	if ((rc = store__record_decode(x->st, k, d, &x->r)) != 0)
		return rc;
	if (x->r.erased)
		return 0;
	if ((rc = store__share_record(x->sh, pc, &x->r)) != 0 ||
	    (rc = regroup(x)) != 0)
		return rc;
	for (size_t g = 0; g < x->ngrps; g++)
		if (x->grps[g].rep != NONE && (rc = store__share_bytes(x->sh,
		    x->grps[g].rep, md_update, x->grps[g].md)) != 0)
			return rc;
	for (size_t i = 0; i < x->npairs; i++) {
		uint64_t n = store__share_changes(x->sh, i);

		if (n > 0) {
			x->pairs[i].records++;
			x->pairs[i].changes += n;
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
	rc = store__records_each(t, pol, pass_record, x);
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
	x.st = st;
	x.npairs = npeers;
	crdt_record_init(&x.r, (struct nbx_str){ "", 0 },
	    (struct nbx_str){ "", 0 });
	x.pairs = calloc(npeers ? npeers : 1, sizeof(*x.pairs));
	x.grps = calloc(npeers ? npeers : 1, sizeof(*x.grps));
	if (x.pairs == NULL || x.grps == NULL)
		rc = NBX_ENOMEM;
	/* all pairs start in group 0 */
	if (rc == 0 && npeers > 0) {
		x.ngrps = 1;
		if ((x.grps[0].md = EVP_MD_CTX_new()) == NULL ||
		    EVP_DigestInit_ex(x.grps[0].md, EVP_sha256(), NULL) != 1)
			rc = NBX_ENOMEM;
		if (rc == 0)
			rc = store__share_new(nbx_str_c(st->node_id), peers,
			    npeers, &x.sh);
		if (rc == 0)
			rc = pass_run(st, pol, &x);
	}
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
		out[i].records = x.pairs ? x.pairs[i].records : 0;
		out[i].changes = x.pairs ? x.pairs[i].changes : 0;
	}
	free(x.pairs);
	free(x.grps);
	store__share_free(x.sh);
	crdt_record_fini(&x.r);
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
