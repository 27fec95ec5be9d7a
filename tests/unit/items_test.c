/*
 * items_test.c - the items of set reconciliation (store/items.c): which
 * records a pair lists (region ones for anyone, audience ones for members
 * only, no erased ones), their order, equal items on converged stores
 * whatever order they merged in, a view hash that moves with what the
 * pair shares and only with it, the same bytes as the pair digest (read
 * through the store's internal share.c calls, store_int.h), and the way
 * back from key hashes to records.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <openssl/evp.h>

#include "hlc.h"
#include "nbx_err.h"
#include "store.h"
#include "store_int.h"
#include "testlib.h"

#define NOW 1700000000000ull

static struct store *
open_store(const char *dir, const char *node)
{
	struct store_opts o = { .node_id = node };
	struct store *st = NULL;
	char err[256];
	int rc = store_open(dir, &o, &st, err, sizeof(err));

	cr_assert_eq(rc, 0, "store_open: %s", err);
	return st;
}

static void
local(struct store *st, const struct policy *pol, struct change *c, size_t n,
    uint64_t now)
{
	struct store_outcome out[16];

	cr_assert_leq(n, 16);
	cr_assert_eq(store_apply(st, pol, c, n, (struct nbx_str){ 0 }, NULL,
	    now, 0, out), 0, "%s", store_last_error(st));
	for (size_t i = 0; i < n; i++)
		cr_assert_neq(out[i].status, STORE_REJECTED, "change %zu: %s",
		    i, nbx_strerror(out[i].err));
}

/* An AUDIENCE change of t/id for the ids in the NULL-ended list. */
static struct change
aud_change(const char *id, const char *const *ids)
{
	struct change c = test_change(CHANGE_AUDIENCE, id, NULL);

	while (*ids)
		c.aud.ids[c.aud.n++] = nbx_str_c(*ids++);
	return c;
}

/* The items of (st's node, peer). */
static size_t
items(struct store *st, const struct policy *pol, const char *peer,
    struct recon_item **v)
{
	size_t n = 99;

	cr_assert_eq(store_pair_items(st, pol, nbx_str_c(peer), v, &n), 0,
	    "%s", store_last_error(st));
	cr_assert_eq(n == 0, *v == NULL, "NULL exactly when empty");
	return n;
}

/* The item of t/id in v[0..n), or NULL. */
static const struct recon_item *
item_of(const struct recon_item *v, size_t n, const char *id)
{
	uint64_t kh = store_key_hash(nbx_str_c("t"), nbx_str_c(id));

	for (size_t i = 0; i < n; i++)
		if (v[i].kh == kh)
			return &v[i];
	return NULL;
}

static int
item_less(const struct recon_item *a, const struct recon_item *b)
{
	return a->kh < b->kh || (a->kh == b->kh &&
	    memcmp(a->vh, b->vh, RECON_VH_LEN) < 0);
}

static void
assert_sorted(const struct recon_item *v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		cr_assert(item_less(&v[i - 1], &v[i]), "items %zu, %zu out of "
		    "order", i - 1, i);
}

static void
assert_items_eq(const struct recon_item *a, size_t na,
    const struct recon_item *b, size_t nb, const char *what)
{
	cr_assert_eq(na, nb, "%s: %zu items, %zu", what, na, nb);
	for (size_t i = 0; i < na; i++) {
		cr_assert_eq(a[i].kh, b[i].kh, "%s: item %zu", what, i);
		cr_assert_eq(memcmp(a[i].vh, b[i].vh, RECON_VH_LEN), 0,
		    "%s: item %zu's view", what, i);
	}
}

static int
u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* printf 'case\0ee:c1' | sha256sum: 781336ea73d9f9a0... */
Test(items, key_hash_is_sha256_of_coll_nul_id)
{
	cr_assert_eq(store_key_hash(nbx_str_c("case"), nbx_str_c("ee:c1")),
	    UINT64_C(0x781336ea73d9f9a0));
	cr_assert_eq(store_key_hash(nbx_str_c("t"), nbx_str_c("ee:1")),
	    UINT64_C(0x42c67d444f43e87f));
	cr_assert_neq(store_key_hash(nbx_str_c("cas"), nbx_str_c("eee:c1")),
	    store_key_hash(nbx_str_c("case"), nbx_str_c("ee:c1")),
	    "the 0 byte keeps coll and id apart");
}

/*
 * A region record is an item for any peer, one configured nowhere too;
 * a record with an audience and only audience fields is one for its
 * members only: lt, outside the audience, lists nothing of it.  An
 * erased record is no item; a record with only a local field is none.
 */
Test(items, who_gets_an_item)
{
	static const char *const ee_lv[] = { "ee", "lv", NULL };
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee");
	struct recon_item *v;
	struct change c[4];
	size_t n;

	c[0] = test_str("ee:region", "name", "everyone");
	c[1] = aud_change("ee:secret", ee_lv);
	c[2] = test_str("ee:secret", "secret", "ee and lv");
	c[3] = test_str("ee:local", "note", "mine");
	local(st, pol, c, 4, NOW);
	c[0] = test_str("ee:gone", "name", "erased");
	local(st, pol, c, 1, NOW + 1);
	c[0] = test_change(CHANGE_ERASE, "ee:gone", NULL);
	local(st, pol, c, 1, NOW + 2);

	n = items(st, pol, "lv", &v);
	cr_assert_eq(n, 2, "lv: the region and the audience record");
	cr_assert_not_null(item_of(v, n, "ee:region"));
	cr_assert_not_null(item_of(v, n, "ee:secret"));
	assert_sorted(v, n);
	free(v);
	n = items(st, pol, "lt", &v);
	cr_assert_eq(n, 1, "lt: the region record only");
	cr_assert_not_null(item_of(v, n, "ee:region"));
	cr_assert_null(item_of(v, n, "ee:secret"),
	    "canary: an item of a record lt may not see");
	free(v);
	n = items(st, pol, "zz", &v);
	cr_assert_eq(n, 1);
	cr_assert_not_null(item_of(v, n, "ee:region"));
	free(v);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

Test(items, an_empty_store_has_none)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee");
	struct recon_item *v = (struct recon_item *)1;

	cr_assert_eq(items(st, pol, "lv", &v), 0);
	cr_assert_null(v);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/* Enough items for the radix sort (items.c): sorted, one per record. */
Test(items, many_items_are_sorted_by_key_hash)
{
	enum { N = 3000 };
	static char ids[N][16];
	static struct change c[N];
	static struct store_outcome out[N];
	static uint64_t khs[N];
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee");
	struct recon_item *v;
	size_t n;

	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "ee:%d", i);
		c[i] = test_str(ids[i], "name", i % 2 ? "odd" : "even");
		khs[i] = store_key_hash(nbx_str_c("t"), nbx_str_c(ids[i]));
	}
	cr_assert_eq(store_apply(st, pol, c, N, (struct nbx_str){ 0 }, NULL,
	    NOW, 0, out), 0);
	n = items(st, pol, "lv", &v);
	cr_assert_eq(n, N);
	assert_sorted(v, n);
	qsort(khs, N, sizeof(khs[0]), u64_cmp);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(v[i].kh, khs[i], "item %zu is no record's", i);
	free(v);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/*
 * A write the pair shares moves that record's view hash and no other
 * item; a local write, or a scoped write of a record the peer is not in
 * the audience of, moves none.
 */
Test(items, view_hash_moves_with_what_the_pair_shares_only)
{
	static const char *const ee_lt[] = { "ee", "lt", NULL };
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee");
	struct recon_item *a, *b;
	const struct recon_item *x, *y;
	struct change c[16];
	char ids[10][16];
	size_t na, nb;

	for (int i = 0; i < 10; i++) {
		snprintf(ids[i], sizeof(ids[i]), "ee:%d", i);
		c[i] = test_str(ids[i], "name", ids[i]);
	}
	c[10] = aud_change("ee:lt", ee_lt);
	c[11] = test_str("ee:lt", "name", "both");
	c[12] = test_str("ee:lt", "secret", "ee and lt");
	local(st, pol, c, 13, NOW);
	na = items(st, pol, "lv", &a);
	cr_assert_eq(na, 11);

	c[0] = test_str("ee:3", "note", "local only");
	c[1] = test_str("ee:lt", "secret", "lt's business");
	local(st, pol, c, 2, NOW + 1);
	nb = items(st, pol, "lv", &b);
	assert_items_eq(a, na, b, nb, "a local write, a scoped one not lv's");
	free(b);

	c[0] = test_str("ee:3", "name", "changed");
	local(st, pol, c, 1, NOW + 2);
	nb = items(st, pol, "lv", &b);
	cr_assert_eq(na, nb);
	for (size_t i = 0; i < na; i++) {
		cr_assert_eq(a[i].kh, b[i].kh, "the keys stay");
		if (a[i].kh == item_of(a, na, "ee:3")->kh)
			continue;
		cr_assert_eq(memcmp(a[i].vh, b[i].vh, RECON_VH_LEN), 0,
		    "item %zu moved", i);
	}
	x = item_of(a, na, "ee:3");
	y = item_of(b, nb, "ee:3");
	cr_assert_neq(memcmp(x->vh, y->vh, RECON_VH_LEN), 0,
	    "the changed record's view must move");
	free(a);
	free(b);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* Converged stores                                                    */
/* ------------------------------------------------------------------ */

/*
 * Writes nrec seeded records on st (node ee): region fields, set
 * elements, local notes, audiences with and without lv (with scoped
 * fields, and status that the audience writes), a few erased.
 */
static void
random_records(struct store *st, const struct policy *pol, uint64_t *rng,
    int nrec, int round)
{
	static const char *const auds[][4] = { { "ee", "lv", NULL },
	    { "ee", "lt", NULL }, { "ee", "lv", "fi", NULL } };
	static char ids[64][16], vals[64][24], els[64][8];

	cr_assert_leq(nrec, 64);
	for (int r = 0; r < nrec; r++) {
		struct change c[8];
		size_t n = 0;
		unsigned kind = (unsigned)(test_xorshift(rng) % 5);

		snprintf(ids[r], sizeof(ids[r]), "ee:%d", r);
		snprintf(vals[r], sizeof(vals[r]), "v%d.%llu", round,
		    (unsigned long long)(test_xorshift(rng) % 1000));
		snprintf(els[r], sizeof(els[r]), "e%llu",
		    (unsigned long long)(test_xorshift(rng) % 4));
		if (kind >= 2 && round == 0) {
			c[n++] = aud_change(ids[r], auds[kind - 2]);
			c[n++] = test_str(ids[r], "secret", vals[r]);
			if (test_xorshift(rng) % 2)
				c[n++] = test_str(ids[r], "status", "b");
		}
		if (kind != 3 || test_xorshift(rng) % 2)
			c[n++] = test_str(ids[r], "name", vals[r]);
		if (test_xorshift(rng) % 2) {
			c[n] = test_change(CHANGE_ELEM, ids[r], "tags");
			c[n].elem = nbx_str_c(els[r]);
			c[n].val.t = NBX_V_BOOL;
			c[n++].val.i = 1;
		}
		if (test_xorshift(rng) % 3 == 0)
			c[n++] = test_str(ids[r], "note", vals[r]);
		if (n == 0)
			continue;
		local(st, pol, c, n, NOW + (uint64_t)(round * 100 + r));
		if (round > 0 && test_xorshift(rng) % 10 == 0) {
			c[0] = test_change(CHANGE_ERASE, ids[r], NULL);
			local(st, pol, c, 1, NOW + (uint64_t)(round * 100 + r));
		}
	}
}

struct export {
	const struct pol_coll *pc;
	const struct crdt_record *r;
	struct nbx_str peer;
	struct nbx_buf *out;
	int with_data;
};

static int
with_data_of(void *arg, const struct change *c)
{
	struct export *x = arg;

	if (c->kind != CHANGE_STATE && policy_may_send_change(x->pc, x->r, c,
	    x->peer, 0) == POLICY_SEND_YES)
		x->with_data = 1;
	return 0;
}

static int
export_one(void *arg, const struct change *c)
{
	struct export *x = arg;

	if (policy_may_send_change(x->pc, x->r, c, x->peer, x->with_data) ==
	    POLICY_SEND_YES)
		cr_assert_eq(change_encode(c, x->out), 0);
	return 0;
}

/*
 * Every change of st's records that may go to peer (as egress would
 * send it, to a peer never disclosed anything), encoded back to back.
 */
static void
export_for(struct store *st, const struct policy *pol, const char *peer,
    struct nbx_buf *out)
{
	struct export x = { policy_coll(pol, nbx_str_c("t")), NULL,
	    nbx_str_c(peer), out, 0 };
	struct nbx_str after = { "", 0 }, id;
	struct store_rtxn *t;
	struct crdt_record r;
	int rc;

	nbx_buf_init(out, 1 << 24);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	while ((rc = store_record_next(t, nbx_str_c("t"), after, &id, &r)) ==
	    0) {
		after = id;
		x.r = &r;
		x.with_data = 0;
		cr_assert_eq(crdt_record_changes(&r, with_data_of, &x), 0);
		cr_assert_eq(crdt_record_changes(&r, export_one, &x), 0);
		crdt_record_fini(&r);
	}
	crdt_record_fini(&r);
	cr_assert_eq(rc, NBX_ENOTFOUND);
	store_rtxn_end(t);
}

/* Decodes the changes in b; they borrow from b.  *v: free() it. */
static size_t
decode_all(const struct nbx_buf *b, struct change **v)
{
	size_t n = 0, cap = 0, at = 0, used;

	*v = NULL;
	while (at < b->len) {
		cr_assert_eq(change_array_room(v, &cap, n), 0);
		cr_assert_eq(change_decode(b->p + at, b->len - at, &(*v)[n],
		    &used), 0);
		at += used;
		n++;
	}
	return n;
}

/* Applies v[0..n) to st as received from peer, in the order of perm. */
static void
receive(struct store *st, const struct policy *pol, const char *peer,
    const struct change *v, const size_t *perm, size_t n)
{
	struct store_outcome *out = calloc(n ? n : 1, sizeof(*out));
	struct change *w = calloc(n ? n : 1, sizeof(*w));

	cr_assert(out != NULL && w != NULL);
	for (size_t i = 0; i < n; i++)
		change_copy(&w[i], &v[perm[i]]);
	cr_assert_eq(store_apply(st, pol, w, n, nbx_str_c(peer), NULL,
	    NOW + 100000, 0, out), 0, "%s", store_last_error(st));
	for (size_t i = 0; i < n; i++)
		cr_assert_neq(out[i].status, STORE_REJECTED, "change %zu "
		    "(kind %d, %.*s %.*s): %s", i, w[i].kind, (int)w[i].id.n,
		    w[i].id.p, (int)w[i].field.n, w[i].field.p,
		    nbx_strerror(out[i].err));
	free(out);
	free(w);
}

static void
assert_digests_eq(struct store *a, const char *pa, struct store *b,
    const char *pb, const struct policy *pol, int eq)
{
	uint8_t x[32], y[32];
	uint64_t nr, nc;

	cr_assert_eq(store_pair_digest(a, pol, nbx_str_c(pa), x, &nr, &nc), 0);
	cr_assert_eq(store_pair_digest(b, pol, nbx_str_c(pb), y, &nr, &nc), 0);
	cr_assert_eq(memcmp(x, y, 32) == 0, eq, "digests %s",
	    eq ? "differ" : "agree");
}

/*
 * Property: ee writes seeded records; lv1 and lv2 (both node lv) receive
 * what ee may send lv, lv1 in ee's order and lv2 shuffled.  The three
 * list equal items for their pair (ee for lv, lv for ee), sorted, and
 * their digests agree.  Then ee writes again and only lv1 hears of it:
 * lv2's items differ from ee's exactly where ee's writes went, and so do
 * the digests.
 */
Test(items, converged_stores_list_equal_items_property)
{
	unsigned seed = test_seed();
	uint64_t rng = (uint64_t)seed * 2654435761u + 1;
	char *d0 = test_tmpdir(), *d1 = test_tmpdir(), *d2 = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *ee = open_store(d0, "ee"), *lv1 = open_store(d1, "lv"),
	    *lv2 = open_store(d2, "lv");
	struct recon_item *a, *b, *c;
	struct nbx_buf wire;
	struct change *v;
	size_t na, nb, nc, n, *perm;
	int differ = 0;

	fprintf(stderr, "property converged_items: seed=%u (replay with "
	    "NBX_SEED=%u)\n", seed, seed);
	random_records(ee, pol, &rng, 40, 0);
	export_for(ee, pol, "lv", &wire);
	n = decode_all(&wire, &v);
	cr_assert_gt(n, 0);
	perm = calloc(n, sizeof(*perm));
	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	receive(lv1, pol, "ee", v, perm, n);
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(test_xorshift(&rng) % (i + 1)), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	receive(lv2, pol, "ee", v, perm, n);
	na = items(ee, pol, "lv", &a);
	nb = items(lv1, pol, "ee", &b);
	nc = items(lv2, pol, "ee", &c);
	cr_assert_gt(na, 0);
	assert_sorted(a, na);
	assert_items_eq(a, na, b, nb, "ee and lv1");
	assert_items_eq(b, nb, c, nc, "lv1 and lv2 (shuffled)");
	assert_digests_eq(ee, "lv", lv2, "ee", pol, 1);
	free(b);
	free(c);
	free(v);
	free(perm);
	nbx_buf_fini(&wire);

	/* ee writes again; lv1 hears of it, lv2 not */
	random_records(ee, pol, &rng, 40, 1);
	export_for(ee, pol, "lv", &wire);
	n = decode_all(&wire, &v);
	perm = calloc(n, sizeof(*perm));
	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	receive(lv1, pol, "ee", v, perm, n);
	free(a);
	na = items(ee, pol, "lv", &a);
	nb = items(lv1, pol, "ee", &b);
	nc = items(lv2, pol, "ee", &c);
	assert_items_eq(a, na, b, nb, "ee and lv1 after the second round");
	assert_digests_eq(ee, "lv", lv1, "ee", pol, 1);
	/* lv2 lags: the records whose items differ are those ee changed */
	for (size_t i = 0, j = 0; i < na || j < nc;) {
		if (j == nc || (i < na && a[i].kh < c[j].kh)) {
			i++, differ++;	/* new, or its erasure lv2 lacks */
		} else if (i == na || c[j].kh < a[i].kh) {
			j++, differ++;
		} else {
			differ += memcmp(a[i].vh, c[j].vh, RECON_VH_LEN) != 0;
			i++, j++;
		}
	}
	cr_assert_gt(differ, 0, "seed %u: ee's second round unseen", seed);
	assert_digests_eq(ee, "lv", lv2, "ee", pol, 0);
	free(a);
	free(b);
	free(c);
	free(v);
	free(perm);
	nbx_buf_fini(&wire);
	store_close(ee);
	store_close(lv1);
	store_close(lv2);
	policy_free(pol);
	test_rmdir(d0);
	test_rmdir(d1);
	test_rmdir(d2);
}

/* ------------------------------------------------------------------ */
/* The same bytes as the pair digest                                   */
/* ------------------------------------------------------------------ */

#define NPEERS 4

static const char *const peer_ids[NPEERS] = { "lv", "lt", "fi", "zz" };

/* For each peer: its digest over all records, and one per record. */
struct replay {
	struct store *st;
	struct store__share *sh;
	struct crdt_record r;
	EVP_MD_CTX *all[NPEERS], *one;
	struct recon_item *v[NPEERS];
	size_t n[NPEERS], found[NPEERS];
};

static int
md_feed(void *arg, const void *p, size_t n)
{
	cr_assert_eq(EVP_DigestUpdate(arg, p, n), 1);
	return 0;
}

static int
replay_one(void *arg, const struct pol_coll *pc, const MDB_val *k,
    const MDB_val *d)
{
	struct replay *x = arg;
	uint64_t kh;

	cr_assert_eq(store__record_decode(x->st, k, d, &x->r), 0);
	kh = store_key_hash(x->r.coll, x->r.id);
	if (x->r.erased)
		return 0;
	cr_assert_eq(store__share_record(x->sh, pc, &x->r), 0);
	for (size_t i = 0; i < NPEERS; i++) {
		const struct recon_item *it = NULL;
		uint8_t vh[32];
		unsigned int len = 32;

		for (size_t j = 0; j < x->n[i]; j++)
			if (x->v[i][j].kh == kh)
				it = &x->v[i][j];
		if (store__share_changes(x->sh, i) == 0) {
			cr_assert_null(it, "an item of a record with nothing "
			    "for %s", peer_ids[i]);
			continue;
		}
		cr_assert_not_null(it, "no item for %s", peer_ids[i]);
		x->found[i]++;
		cr_assert_eq(store__share_bytes(x->sh, i, md_feed, x->all[i]),
		    0);
		cr_assert_eq(EVP_DigestInit_ex(x->one, EVP_sha256(), NULL), 1);
		cr_assert_eq(store__share_bytes(x->sh, i, md_feed, x->one), 0);
		cr_assert_eq(EVP_DigestFinal_ex(x->one, vh, &len), 1);
		cr_assert_eq(memcmp(vh, it->vh, RECON_VH_LEN), 0,
		    "the item's view is not its bytes for %s", peer_ids[i]);
	}
	return 0;
}

/*
 * Property: on seeded stores, for each of several peers, SHA-256 over
 * the records' pair bytes (share.c) in scan order is store_pair_digest,
 * each item's view hash is the hash of its record's bytes alone, and the
 * records with bytes are exactly the items.
 */
Test(items, items_hash_the_bytes_the_pair_digest_hashes_property)
{
	unsigned seed = test_seed();
	uint64_t rng = (uint64_t)seed * 2654435761u + 7;
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct replay x;
	struct nbx_str peers[NPEERS];
	struct store_rtxn *t;

	fprintf(stderr, "property items_digest: seed=%u (replay with "
	    "NBX_SEED=%u)\n", seed, seed);
	memset(&x, 0, sizeof(x));
	x.st = open_store(dir, "ee");
	random_records(x.st, pol, &rng, 50, 0);
	random_records(x.st, pol, &rng, 50, 1);
	for (size_t i = 0; i < NPEERS; i++) {
		peers[i] = nbx_str_c(peer_ids[i]);
		x.n[i] = items(x.st, pol, peer_ids[i], &x.v[i]);
		cr_assert_not_null(x.all[i] = EVP_MD_CTX_new());
		cr_assert_eq(EVP_DigestInit_ex(x.all[i], EVP_sha256(), NULL), 1);
	}
	cr_assert_not_null(x.one = EVP_MD_CTX_new());
	cr_assert_eq(store__share_new(nbx_str_c("ee"), peers, NPEERS, &x.sh), 0);
	crdt_record_init(&x.r, (struct nbx_str){ "", 0 },
	    (struct nbx_str){ "", 0 });
	cr_assert_eq(store_rtxn_begin(x.st, &t), 0);
	cr_assert_eq(store__records_each(t, pol, replay_one, &x), 0);
	store_rtxn_end(t);
	for (size_t i = 0; i < NPEERS; i++) {
		uint8_t mine[32], theirs[32];
		unsigned int len = 32;
		uint64_t nr, nc;

		cr_assert_eq(EVP_DigestFinal_ex(x.all[i], mine, &len), 1);
		cr_assert_eq(store_pair_digest(x.st, pol, peers[i], theirs, &nr,
		    &nc), 0);
		cr_assert_eq(memcmp(mine, theirs, 32), 0, "seed %u: %s's digest "
		    "is not over its records' bytes", seed, peer_ids[i]);
		cr_assert_eq(x.found[i], x.n[i], "seed %u: %s", seed,
		    peer_ids[i]);
		cr_assert_eq(nr, x.n[i], "a record in the digest is an item");
		EVP_MD_CTX_free(x.all[i]);
		free(x.v[i]);
	}
	EVP_MD_CTX_free(x.one);
	store__share_free(x.sh);
	crdt_record_fini(&x.r);
	store_close(x.st);
	policy_free(pol);
	test_rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* From key hashes back to records                                     */
/* ------------------------------------------------------------------ */

struct found {
	char ids[8][16];
	int n, stop_after;
};

static int
found_add(void *arg, struct nbx_str coll, struct nbx_str id)
{
	struct found *f = arg;

	cr_assert(nbx_str_eq(coll, nbx_str_c("t")));
	cr_assert_lt(f->n, 8);
	snprintf(f->ids[f->n++], sizeof(f->ids[0]), "%.*s", (int)id.n, id.p);
	return f->n == f->stop_after ? 42 : 0;
}

/*
 * The records named by key hashes are found, an erased one too, each
 * once though its hash is listed twice; a hash of no record finds none;
 * fn's non-zero value stops the pass and is returned.
 */
Test(items, keys_by_hash_finds_the_records_erased_ones_too)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee");
	struct store_rtxn *t;
	struct change c[20];
	char ids[20][16];
	uint64_t khs[5];
	struct found f = { .n = 0 };
	int saw[3] = { 0 };

	for (int i = 0; i < 20; i++) {
		snprintf(ids[i], sizeof(ids[i]), "ee:%d", i);
		c[i] = test_str(ids[i], "name", "x");
	}
	local(st, pol, c, 16, NOW);
	local(st, pol, c + 16, 4, NOW + 1);
	c[0] = test_change(CHANGE_ERASE, "ee:7", NULL);
	local(st, pol, c, 1, NOW + 2);
	khs[0] = store_key_hash(nbx_str_c("t"), nbx_str_c("ee:3"));
	khs[1] = store_key_hash(nbx_str_c("t"), nbx_str_c("ee:7"));
	khs[2] = khs[0];
	khs[3] = store_key_hash(nbx_str_c("t"), nbx_str_c("ee:19"));
	khs[4] = store_key_hash(nbx_str_c("t"), nbx_str_c("ee:nope"));
	qsort(khs, 5, sizeof(khs[0]), u64_cmp);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_keys_by_hash(t, pol, khs, 5, found_add, &f), 0);
	cr_assert_eq(f.n, 3, "ee:3 (listed twice), ee:7 (erased), ee:19");
	for (int i = 0; i < f.n; i++) {
		if (strcmp(f.ids[i], "ee:3") == 0)
			saw[0]++;
		else if (strcmp(f.ids[i], "ee:7") == 0)
			saw[1]++;
		else if (strcmp(f.ids[i], "ee:19") == 0)
			saw[2]++;
	}
	cr_assert(saw[0] == 1 && saw[1] == 1 && saw[2] == 1);
	f.n = 0;
	f.stop_after = 2;
	cr_assert_eq(store_keys_by_hash(t, pol, khs, 5, found_add, &f), 42);
	cr_assert_eq(f.n, 2);
	f.n = 0;
	cr_assert_eq(store_keys_by_hash(t, pol, khs, 0, found_add, &f), 0);
	cr_assert_eq(f.n, 0);
	store_rtxn_end(t);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}
