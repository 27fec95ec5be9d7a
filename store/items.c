/*
 * items.c - the records a pair may share, one item each, for range-based
 * set reconciliation: (key hash, view hash), where the view hash is over
 * the very bytes of the record that the pair digest hashes (share.c), so
 * that two converged nodes list equal items and the records whose items
 * differ are those the pair has not converged on.  And the way back from
 * key hashes to the records they name.  See store_pair_items in store.h.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "nbx_err.h"
#include "store_int.h"

uint64_t
store_key_hash(struct nbx_str coll, struct nbx_str id)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int mdlen = 32;
	uint8_t d[32];
	uint64_t kh = 0;

	if (md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, coll.p, coll.n) == 1 &&
	    EVP_DigestUpdate(md, "", 1) == 1 &&
	    EVP_DigestUpdate(md, id.p, id.n) == 1 &&
	    EVP_DigestFinal_ex(md, d, &mdlen) == 1)
		kh = store__be64_get(d);
	EVP_MD_CTX_free(md);
	return kh;
}

/*
 * One SHA-256 context and the digest fetched once, reused for every
 * record: a scan of a million records must not allocate per record.
 */
struct hasher {
	EVP_MD *sha;
	EVP_MD_CTX *md;
};

static int
hasher_init(struct hasher *h)
{
	h->sha = EVP_MD_fetch(NULL, "SHA256", NULL);
	h->md = EVP_MD_CTX_new();
	return h->sha != NULL && h->md != NULL ? 0 : NBX_ENOMEM;
}

static void
hasher_fini(struct hasher *h)
{
	EVP_MD_CTX_free(h->md);
	EVP_MD_free(h->sha);
}

static int
md_update(void *arg, const void *p, size_t n)
{
	return EVP_DigestUpdate(arg, p, n) == 1 ? 0 : NBX_ENOMEM;
}

/* The key hash of a records key ("coll\0id": store_key_hash's bytes). */
static int
key_hash(struct hasher *h, const MDB_val *k, uint64_t *kh)
{
	unsigned int mdlen = 32;
	uint8_t d[32];

	if (EVP_DigestInit_ex2(h->md, h->sha, NULL) != 1 ||
	    EVP_DigestUpdate(h->md, k->mv_data, k->mv_size) != 1 ||
	    EVP_DigestFinal_ex(h->md, d, &mdlen) != 1)
		return NBX_ENOMEM;
	*kh = store__be64_get(d);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The items of a pair                                                 */
/* ------------------------------------------------------------------ */

struct items {
	struct store *st;
	struct store__share *sh;	/* one pair: (this node, peer) */
	struct hasher h;
	struct crdt_record r;	/* decoded here, its arrays kept */
	struct recon_item *v;
	size_t n, cap;
};

static int
item_cmp(const void *a, const void *b)
{
	const struct recon_item *x = a, *y = b;

	if (x->kh != y->kh)
		return x->kh < y->kh ? -1 : 1;
	return memcmp(x->vh, y->vh, RECON_VH_LEN);
}

/*
 * Sorts v[0..n) by (kh, vh).  Key hashes are uniform, so a radix sort on
 * kh, 16 bits a pass (four: the result lands back in v), takes about a
 * quarter of qsort's time on a million items; then the rare runs of
 * equal kh are put in vh order.  0 or NBX_ENOMEM (v as it was).
 */
static int
items_sort(struct recon_item *v, size_t n)
{
	struct recon_item *a = v, *b, *tmp, *sw;
	size_t *pos, i, j;

	if (n < 1024) {
		if (n > 1)	/* (v may be NULL when n is 0) */
			qsort(v, n, sizeof(*v), item_cmp);
		return 0;
	}
	tmp = malloc(n * sizeof(*tmp));
	pos = malloc(65536 * sizeof(*pos));
	if (tmp == NULL || pos == NULL) {
		free(tmp);
		free(pos);
		return NBX_ENOMEM;
	}
	b = tmp;
	for (unsigned shift = 0; shift < 64; shift += 16) {
		size_t sum = 0;

		memset(pos, 0, 65536 * sizeof(*pos));
		for (i = 0; i < n; i++)
			pos[(a[i].kh >> shift) & 0xffff]++;
		for (i = 0; i < 65536; i++) {
			size_t c = pos[i];

			pos[i] = sum;
			sum += c;
		}
		for (i = 0; i < n; i++)
			b[pos[(a[i].kh >> shift) & 0xffff]++] = a[i];
		sw = a;
		a = b;
		b = sw;
	}
	free(tmp);
	free(pos);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && v[j].kh == v[i].kh; j++)
			;
		if (j - i > 1)
			qsort(v + i, j - i, sizeof(*v), item_cmp);
	}
	return 0;
}

/* The item of record (k, d), if the pair shares any of it. */
static int
item_add(void *arg, const struct pol_coll *pc, const MDB_val *k,
    const MDB_val *d)
{
	struct items *x = arg;
	struct recon_item *it;
	unsigned int mdlen = 32;
	uint8_t vh[32];
	int rc;

	if ((rc = store__record_decode(x->st, k, d, &x->r)) != 0)
		return rc;
	if (x->r.erased)
		return 0;
	if ((rc = store__share_record(x->sh, pc, &x->r)) != 0)
		return rc;
	if (store__share_changes(x->sh, 0) == 0)
		return 0;	/* nothing of it for this pair */
	if (x->n == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 1024;

		if ((it = realloc(x->v, cap * sizeof(*it))) == NULL)
			return NBX_ENOMEM;
		x->v = it;
		x->cap = cap;
	}
	it = &x->v[x->n];
	if ((rc = key_hash(&x->h, k, &it->kh)) != 0)
		return rc;
	if (EVP_DigestInit_ex2(x->h.md, x->h.sha, NULL) != 1)
		return NBX_ENOMEM;
	if ((rc = store__share_bytes(x->sh, 0, md_update, x->h.md)) != 0)
		return rc;
	if (EVP_DigestFinal_ex(x->h.md, vh, &mdlen) != 1)
		return NBX_ENOMEM;
	memcpy(it->vh, vh, RECON_VH_LEN);
	x->n++;
	return 0;
}

int
store_pair_items(struct store *st, const struct policy *pol,
    struct nbx_str peer, struct recon_item **v, size_t *n)
{
	struct items x;
	struct store_rtxn *t = NULL;
	int rc;

	*v = NULL;
	*n = 0;
	memset(&x, 0, sizeof(x));
	x.st = st;
	crdt_record_init(&x.r, (struct nbx_str){ "", 0 },
	    (struct nbx_str){ "", 0 });
	if ((rc = hasher_init(&x.h)) != 0 ||
	    (rc = store__share_new(nbx_str_c(st->node_id), &peer, 1,
	    &x.sh)) != 0 ||
	    (rc = store_rtxn_begin(st, &t)) != 0)
		goto out;
	rc = store__records_each(t, pol, item_add, &x);
	store_rtxn_end(t);
	if (rc != 0)
		goto out;
	/* listed in policy order then key order: sorted by hash here */
	if ((rc = items_sort(x.v, x.n)) != 0)
		goto out;
	if (x.n > 0) {
		*v = x.v;
		*n = x.n;
		x.v = NULL;
	}
out:
	free(x.v);
	crdt_record_fini(&x.r);
	store__share_free(x.sh);
	hasher_fini(&x.h);
	return rc;
}

/* ------------------------------------------------------------------ */
/* From key hashes back to records                                     */
/* ------------------------------------------------------------------ */

struct by_hash {
	struct hasher h;
	const uint64_t *khs;
	size_t n;
	int (*fn)(void *arg, struct nbx_str coll, struct nbx_str id);
	void *arg;
};

/* 1 if kh is in the sorted khs[0..n). */
static int
kh_wanted(const uint64_t *khs, size_t n, uint64_t kh)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (khs[mid] < kh)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && khs[lo] == kh;
}

static int
by_hash_one(void *arg, const struct pol_coll *pc, const MDB_val *k,
    const MDB_val *d)
{
	struct by_hash *x = arg;
	struct nbx_str coll, id;
	uint64_t kh;
	int rc;

	(void)pc;
	(void)d;
	if ((rc = key_hash(&x->h, k, &kh)) != 0)
		return rc;
	if (!kh_wanted(x->khs, x->n, kh))
		return 0;
	if (store__rec_key_split(k, &coll, &id) != 0)
		return NBX_EMALFORMED;
	return x->fn(x->arg, coll, id);
}

int
store_keys_by_hash(struct store_rtxn *t, const struct policy *pol,
    const uint64_t *khs, size_t n,
    int (*fn)(void *arg, struct nbx_str coll, struct nbx_str id), void *arg)
{
	struct by_hash x = { .khs = khs, .n = n, .fn = fn, .arg = arg };
	int rc;

	if (n == 0)
		return 0;
	if ((rc = hasher_init(&x.h)) == 0)
		rc = store__records_each(t, pol, by_hash_one, &x);
	hasher_fini(&x.h);
	return rc;
}
