/*
 * recon_test.c - range-based set reconciliation (proto/recon.h).
 *
 * Two sets reconcile in one process: one side initiates, the replies go
 * back and forth until a side is done, and the key hashes each side was
 * told to send or to ask for are checked against the differences
 * computed directly from the two multisets.  Every message on the way is
 * checked against the wire form by a reader of this file's own
 * (msg_parse), independent of the engine's.  Then the fingerprints'
 * block sums against a plain sum, the reply's shape (merged SKIPs, cuts
 * between different kh), hostile messages of every malformed shape, the
 * limits, and mutated messages.
 *
 * Seeds are printed, from 1000 unless NBX_SEED=<n> is set: it replays
 * one (with NBX_PROP_ITERS, that many from it); NBX_PROP_ITERS sets how
 * many runs of the property test (100).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <endian.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpread.h"
#include "mpwrite.h"
#include "nbx_err.h"
#include "recon.h"
#include "testlib.h"

#define ROUNDS_CAP	64

/* ------------------------------------------------------------------ */
/* Sets, sides and exchanges                                           */
/* ------------------------------------------------------------------ */

struct khs {
	uint64_t *v;
	size_t n, cap;
};

static void
khs_push(struct khs *k, uint64_t kh)
{
	if (k->n == k->cap) {
		k->cap = k->cap ? 2 * k->cap : 64;
		k->v = realloc(k->v, k->cap * sizeof(*k->v));
		cr_assert_not_null(k->v);
	}
	k->v[k->n++] = kh;
}

static int
u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorts k; fails if a kh is in it twice. */
static void
khs_sort_unique(struct khs *k, const char *what, unsigned seed)
{
	if (k->n > 1)
		qsort(k->v, k->n, sizeof(*k->v), u64_cmp);
	for (size_t i = 1; i < k->n; i++)
		cr_assert_neq(k->v[i - 1], k->v[i], "seed %u: %s names kh "
		    "%#llx twice", seed, what, (unsigned long long)k->v[i]);
}

/* One side of an exchange: its items, its set, what it was told. */
struct side {
	struct recon_item *v;
	size_t n, cap;
	struct recon_set s;
	struct khs send, want;
	struct recon_diff d;
	int calls;
};

static int
on_send(void *arg, uint64_t kh)
{
	struct side *x = arg;

	x->calls++;
	khs_push(&x->send, kh);
	return 0;
}

static int
on_want(void *arg, uint64_t kh)
{
	struct side *x = arg;

	x->calls++;
	khs_push(&x->want, kh);
	return 0;
}

static void
side_add(struct side *x, uint64_t kh, uint64_t a, uint64_t b)
{
	if (x->n == x->cap) {
		x->cap = x->cap ? 2 * x->cap : 64;
		x->v = realloc(x->v, x->cap * sizeof(*x->v));
		cr_assert_not_null(x->v);
	}
	x->v[x->n].kh = kh;
	memcpy(x->v[x->n].vh, &a, 8);
	memcpy(x->v[x->n].vh + 8, &b, 8);
	x->n++;
}

static void
side_copy(struct side *to, const struct side *from)
{
	memset(to, 0, sizeof(*to));
	for (size_t i = 0; i < from->n; i++)
		side_add(to, 0, 0, 0);
	if (from->n)
		memcpy(to->v, from->v, from->n * sizeof(*to->v));
}

/* Sorts the items and makes the set; the callbacks record into x. */
static void
side_ready(struct side *x)
{
	recon_sort(x->v, x->n);
	cr_assert_eq(recon_set_init(&x->s, x->v, x->n), 0);
	x->d = (struct recon_diff){ on_send, on_want, x };
	x->send.n = x->want.n = 0;
	x->calls = 0;
}

static void
side_fini(struct side *x)
{
	recon_set_fini(&x->s);
	free(x->v);
	free(x->send.v);
	free(x->want.v);
	memset(x, 0, sizeof(*x));
}

/* A range of a message as this file's reader sees it. */
struct prange {
	uint64_t lo, up;
	int inf;
	uint64_t mode;
	const uint8_t *data;
	uint32_t len;
};

/*
 * Reads a message by the wire form alone (not with recon.c's reader) and
 * fails unless it keeps every rule; its ranges go to g[0..max) and their
 * number is returned.  The array header must be msgpack's shortest form.
 */
static size_t
msg_parse(const uint8_t *p, size_t len, struct prange *g, size_t max)
{
	struct mpread r = { p, len, 0 };
	uint64_t lo = 0, ids = 0, prev = RECON_FP;
	uint32_t n;

	cr_assert_eq(mpread_array(&r, &n), 0, "an array");
	cr_assert(n > 0 && n % 3 == 0 && n / 3 <= RECON_RANGES_MAX,
	    "3k elements, k = %u", n / 3);
	cr_assert_eq(r.off, n < 16 ? 1u : 3u, "shortest array header");
	for (uint32_t i = 0; i < n / 3; i++) {
		struct prange x = { .lo = lo };

		x.inf = mpread_nil(&r);
		if (!x.inf)
			cr_assert(mpread_u64(&r, &x.up) == 0 && x.up > lo,
			    "range %u: upper above %llu", i,
			    (unsigned long long)lo);
		cr_assert_eq(x.inf, i == n / 3 - 1, "only the last upper nil");
		cr_assert_eq(mpread_u64(&r, &x.mode), 0);
		if (x.mode == RECON_SKIP) {
			cr_assert(mpread_nil(&r), "SKIP data nil");
			cr_assert_neq(prev, RECON_SKIP, "SKIPs merged");
		} else if (x.mode == RECON_FP) {
			cr_assert_eq(mpread_bin(&r, 16, 16, &x.data, &x.len), 0);
		} else {
			cr_assert_eq(x.mode, RECON_IDS, "a known mode");
			cr_assert_eq(mpread_bin(&r, 0, UINT32_MAX, &x.data,
			    &x.len), 0);
			cr_assert_eq(x.len % RECON_ITEM_WIRE, 0);
			ids += x.len / RECON_ITEM_WIRE;
			for (uint32_t k = 0; k < x.len; k += RECON_ITEM_WIRE) {
				uint64_t kh = mpread_be(x.data + k, 8);

				cr_assert(kh >= lo && (x.inf || kh < x.up),
				    "IDS kh inside its range");
				cr_assert(k == 0 || memcmp(x.data + k -
				    RECON_ITEM_WIRE, x.data + k,
				    RECON_ITEM_WIRE) <= 0, "IDS sorted");
			}
		}
		if (g != NULL && i < max)
			g[i] = x;
		lo = x.up;
		prev = x.mode;
	}
	cr_assert_leq(ids, RECON_IDS_MAX, "at most RECON_IDS_MAX items");
	cr_assert_eq(r.off, len, "no trailing bytes");
	return n / 3;
}

/*
 * A reconciliation of a (initiating) and b to the end; the bytes of all
 * messages in *bytes; returns the number of replies (rounds).
 */
static int
exchange(struct side *a, struct side *b, size_t *bytes, int cap)
{
	struct side *to = b, *from = a, *t;
	struct nbx_buf m, r;
	int rounds = 0, done;

	nbx_buf_init(&m, SIZE_MAX);
	cr_assert_eq(recon_initiate(&a->s, &m), 0);
	msg_parse(m.p, m.len, NULL, 0);
	*bytes = m.len;
	for (;;) {
		cr_assert_lt(rounds, cap, "not done after %d rounds", cap);
		rounds++;
		nbx_buf_init(&r, SIZE_MAX);
		cr_assert_eq(recon_reply(&to->s, m.p, m.len, &to->d, &r,
		    &done), 0);
		nbx_buf_fini(&m);
		if (done) {
			cr_assert_eq(r.len, 0, "done appends nothing");
			nbx_buf_fini(&r);
			return rounds;
		}
		msg_parse(r.p, r.len, NULL, 0);
		*bytes += r.len;
		m = r;
		t = to;
		to = from;
		from = t;
	}
}

/*
 * The kh where x holds an item y does not, as multisets, sorted: the
 * ones x's record must travel for.
 */
static void
holds_more(const struct side *x, const struct side *y, struct khs *out)
{
	size_t i = 0, j = 0;

	while (i < x->n) {
		int c = j == y->n ? -1 : x->v[i].kh != y->v[j].kh ?
		    (x->v[i].kh < y->v[j].kh ? -1 : 1) :
		    memcmp(x->v[i].vh, y->v[j].vh, RECON_VH_LEN);

		if (c < 0) {
			if (out->n == 0 || out->v[out->n - 1] != x->v[i].kh)
				khs_push(out, x->v[i].kh);
			i++;
		} else if (c > 0)
			j++;
		else {
			i++;
			j++;
		}
	}
}

/* x's list and y's list, one kh each, merged and sorted */
static void
khs_union(const struct khs *x, const struct khs *y, struct khs *out)
{
	for (size_t i = 0; i < x->n; i++)
		khs_push(out, x->v[i]);
	for (size_t i = 0; i < y->n; i++)
		khs_push(out, y->v[i]);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), u64_cmp);
}

static int
khs_has(const struct khs *k, uint64_t kh)
{
	return k->n > 0 &&
	    bsearch(&kh, k->v, k->n, sizeof(kh), u64_cmp) != NULL;
}

/*
 * Reconciles a and b (both ready) and checks: each side names a kh at
 * most once per callback, and a kh on one side only (it was compared
 * once); a.send + b.want are exactly the kh where a holds an item b does
 * not, b.send + a.want those where b holds one a does not.  The rounds
 * and bytes are returned for the caller's bounds.
 */
static void
reconcile_check(struct side *a, struct side *b, unsigned seed, int *rounds,
    size_t *bytes, int cap)
{
	struct khs ua = { 0 }, ub = { 0 }, ea = { 0 }, eb = { 0 };
	struct khs na = { 0 }, nb = { 0 };

	*rounds = exchange(a, b, bytes, cap);
	khs_sort_unique(&a->send, "a.send", seed);
	khs_sort_unique(&a->want, "a.want", seed);
	khs_sort_unique(&b->send, "b.send", seed);
	khs_sort_unique(&b->want, "b.want", seed);
	khs_union(&a->send, &a->want, &na);
	khs_union(&b->send, &b->want, &nb);
	for (size_t i = 0; i < na.n; i++)
		cr_assert(!khs_has(&nb, na.v[i]), "seed %u: kh %#llx named on "
		    "both sides", seed, (unsigned long long)na.v[i]);
	khs_union(&a->send, &b->want, &ua);
	khs_union(&b->send, &a->want, &ub);
	holds_more(a, b, &ea);
	holds_more(b, a, &eb);
	cr_assert_eq(ua.n, ea.n, "seed %u: a.send + b.want name %zu kh, a "
	    "holds more at %zu", seed, ua.n, ea.n);
	cr_assert(ua.n == 0 || memcmp(ua.v, ea.v, ua.n * 8) == 0,
	    "seed %u: a.send + b.want differ from a's extra items", seed);
	cr_assert_eq(ub.n, eb.n, "seed %u: b.send + a.want name %zu kh, b "
	    "holds more at %zu", seed, ub.n, eb.n);
	cr_assert(ub.n == 0 || memcmp(ub.v, eb.v, ub.n * 8) == 0,
	    "seed %u: b.send + a.want differ from b's extra items", seed);
	free(ua.v);
	free(ub.v);
	free(ea.v);
	free(eb.v);
	free(na.v);
	free(nb.v);
}

/* n random items, with some kh repeated (collisions) and duplicates. */
static void
side_random(struct side *x, size_t n, uint64_t *rng)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t r = test_xorshift(rng) % 100;

		if (i > 0 && r < 2) {		/* a collision */
			side_add(x, x->v[test_xorshift(rng) % i].kh,
			    test_xorshift(rng), test_xorshift(rng));
		} else if (i > 0 && r < 3) {	/* an exact duplicate */
			side_add(x, 0, 0, 0);
			x->v[i] = x->v[test_xorshift(rng) % i];
		} else
			side_add(x, test_xorshift(rng), test_xorshift(rng),
			    test_xorshift(rng));
	}
}

static void
side_remove(struct side *x, uint64_t *rng)
{
	if (x->n > 0) {
		size_t i = test_xorshift(rng) % x->n;

		x->v[i] = x->v[--x->n];
	}
}

/* d random differences between a and b (copies of one set). */
static void
make_differences(struct side *a, struct side *b, int d, uint64_t *rng)
{
	for (int k = 0; k < d; k++) {
		struct side *x = test_xorshift(rng) & 1 ? a : b;
		uint64_t op = test_xorshift(rng) % 7, r;
		size_t at;

		if (x->n == 0 && op != 1 && op != 6)
			op = 1;
		at = x->n ? test_xorshift(rng) % x->n : 0;
		switch (op) {
		case 0:		/* removed */
			side_remove(x, rng);
			break;
		case 1:		/* added */
			side_add(x, test_xorshift(rng), test_xorshift(rng),
			    test_xorshift(rng));
			break;
		case 2:		/* changed view (a new hash: a flipped bit
		case 3:		 * on each side could cancel in the sums) */
			r = test_xorshift(rng);
			memcpy(x->v[at].vh + (r & 8), &r, 8);
			break;
		case 4:		/* a collision */
			side_add(x, x->v[at].kh, test_xorshift(rng),
			    test_xorshift(rng));
			break;
		case 5:		/* an exact duplicate */
			side_add(x, 0, 0, 0);
			x->v[x->n - 1] = x->v[at];
			break;
		case 6:		/* at either end of the key space */
			side_add(x, test_xorshift(rng) & 1 ? UINT64_MAX : 0,
			    test_xorshift(rng), test_xorshift(rng));
			break;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Fingerprints                                                        */
/* ------------------------------------------------------------------ */

/* The fingerprint of v[i..j) summed item by item in two words. */
static void
fp_direct(const struct recon_item *v, size_t i, size_t j, uint8_t fp[16])
{
	uint64_t lo = 0, hi = 0, n = j - i, a, b;

	for (size_t k = i; k < j; k++) {
		memcpy(&a, v[k].vh, 8);
		memcpy(&b, v[k].vh + 8, 8);
		a = le64toh(a);
		b = le64toh(b);
		hi += b + (lo + a < lo);
		lo += a;
	}
	/* + n * K, K = 0x9E3779B97F4A7C15F39CC0605CEDC835, a word at a time */
	{
		unsigned __int128 p = (unsigned __int128)n *
		    0xF39CC0605CEDC835ull;
		uint64_t plo = (uint64_t)p, phi = (uint64_t)(p >> 64) +
		    n * 0x9E3779B97F4A7C15ull;

		hi += phi + (lo + plo < lo);
		lo += plo;
	}
	lo = htole64(lo);
	hi = htole64(hi);
	memcpy(fp, &lo, 8);
	memcpy(fp + 8, &hi, 8);
}

Test(recon, fingerprint_known_values)
{
	static const uint8_t k1[16] = { 0x35, 0xc8, 0xed, 0x5c, 0x60, 0xc0,
	    0x9c, 0xf3, 0x15, 0x7c, 0x4a, 0x7f, 0xb9, 0x79, 0x37, 0x9e };
	struct recon_item v[2] = { { 1, { 0 } }, { 2, { 0xcb, 0x37 } } };
	struct recon_set s;
	uint8_t fp[16], want[16] = { 0 };

	cr_assert_eq(recon_set_init(&s, v, 2), 0);
	recon_set_fingerprint(&s, 0, 0, fp);
	cr_assert(memcmp(fp, want, 16) == 0, "empty: 0");
	recon_set_fingerprint(&s, 0, 1, fp);
	cr_assert(memcmp(fp, k1, 16) == 0, "vh 0, one item: K little-endian");
	/* 0x37cb + K: the low bytes 0x35 0xc8 carry into the third */
	recon_set_fingerprint(&s, 1, 2, fp);
	memcpy(want, k1, 16);
	want[0] = 0x00;
	want[1] = 0x00;
	want[2] = 0xee;
	cr_assert(memcmp(fp, want, 16) == 0, "vh 0x37cb, one item");
	recon_set_fini(&s);
	recon_set_fini(&s);	/* twice is fine */
}

Test(recon, fingerprint_block_sums_equal_direct_sums)
{
	uint64_t rng = 88172645463325252ull;
	struct side x = { 0 };
	uint8_t a[16], b[16];
	const size_t edges[] = { 0, 1, 63, 64, 65, 127, 128, 129, 640, 1000,
	    4095, 4096, 4097 };

	side_random(&x, 4097, &rng);
	/* sums that wrap past 2^128 */
	for (size_t i = 0; i < 300; i++)
		memset(x.v[i * 13].vh, 0xff, RECON_VH_LEN);
	side_ready(&x);
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		for (size_t j = i; j < sizeof(edges) / sizeof(edges[0]); j++) {
			recon_set_fingerprint(&x.s, edges[i], edges[j], a);
			fp_direct(x.v, edges[i], edges[j], b);
			cr_assert(memcmp(a, b, 16) == 0, "[%zu, %zu)",
			    edges[i], edges[j]);
		}
	for (int k = 0; k < 20000; k++) {
		size_t i = test_xorshift(&rng) % (x.n + 1);
		size_t j = i + test_xorshift(&rng) % (x.n + 1 - i);

		recon_set_fingerprint(&x.s, i, j, a);
		fp_direct(x.v, i, j, b);
		cr_assert(memcmp(a, b, 16) == 0, "[%zu, %zu)", i, j);
	}
	side_fini(&x);
}

Test(recon, set_init_refuses_unsorted_input)
{
	struct recon_item v[3] = { { 5, { 0 } }, { 5, { 1 } }, { 5, { 1 } } };
	struct recon_set s, zero;

	memset(&zero, 0, sizeof(zero));
	cr_assert_eq(recon_set_init(&s, v, 3), 0, "equal items are a multiset");
	recon_set_fini(&s);
	v[0].vh[0] = 2;		/* same kh, vh out of order */
	cr_assert_eq(recon_set_init(&s, v, 3), NBX_EINVAL);
	cr_assert(memcmp(&s, &zero, sizeof(s)) == 0, "zeroed on failure");
	v[0].vh[0] = 0;
	v[0].kh = 6;
	cr_assert_eq(recon_set_init(&s, v, 3), NBX_EINVAL);
	cr_assert_eq(recon_set_init(&s, NULL, 1), NBX_EINVAL);
	cr_assert_eq(recon_set_init(&s, NULL, 0), 0, "empty");
	recon_set_fini(&s);
	recon_set_fini(&zero);
	recon_sort(v, 3);
	cr_assert(v[0].kh == 5 && v[2].kh == 6 && v[1].vh[0] == 1);
	cr_assert_eq(recon_set_init(&s, v, 3), 0);
	recon_set_fini(&s);
}

/* ------------------------------------------------------------------ */
/* Exchanges                                                           */
/* ------------------------------------------------------------------ */

Test(recon, equal_sets_are_done_at_the_first_reply)
{
	const size_t ns[] = { 0, 1, 32, 33, 1000, 100000 };

	for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++) {
		uint64_t rng = 7 + t;
		struct side a = { 0 }, b;
		size_t bytes;

		side_random(&a, ns[t], &rng);
		side_copy(&b, &a);
		side_ready(&a);
		side_ready(&b);
		cr_assert_eq(exchange(&a, &b, &bytes, ROUNDS_CAP), 1, "n %zu", ns[t]);
		cr_assert_eq(a.calls + b.calls, 0, "n %zu: nothing named",
		    ns[t]);
		side_fini(&a);
		side_fini(&b);
	}
}

/* Builds a and b by hand: kh, then vh's first word, on each side. */
static void
side_of(struct side *x, const uint64_t (*it)[2], size_t n)
{
	memset(x, 0, sizeof(*x));
	for (size_t i = 0; i < n; i++)
		side_add(x, it[i][0], it[i][1], 0);
	side_ready(x);
}

Test(recon, small_sets_differ_by_every_kind)
{
	/* 10 added to a, 20 removed from a, 30 changed, 40 a collision on
	 * b's side, 50 a duplicate on a's side, 0 and UINT64_MAX changed */
	static const uint64_t av[][2] = { { 0, 1 }, { 5, 1 }, { 10, 1 },
	    { 30, 1 }, { 40, 1 }, { 50, 1 }, { 50, 1 }, { UINT64_MAX, 1 } };
	static const uint64_t bv[][2] = { { 0, 2 }, { 5, 1 }, { 20, 1 },
	    { 30, 2 }, { 40, 1 }, { 40, 2 }, { 50, 1 }, { UINT64_MAX, 2 } };
	struct side a, b;
	size_t bytes;
	int rounds;

	for (int dir = 0; dir < 2; dir++) {
		side_of(&a, av, 8);
		side_of(&b, bv, 8);
		if (dir == 0)
			reconcile_check(&a, &b, 0, &rounds, &bytes, ROUNDS_CAP);
		else
			reconcile_check(&b, &a, 0, &rounds, &bytes, ROUNDS_CAP);
		cr_assert_eq(rounds, 1, "IDS both ways: one reply");
		/* b compared a's list (dir 0): it sends 0 20 30 40 MAX and
		 * wants 0 10 30 50 MAX */
		struct side *cmp = dir == 0 ? &b : &a;
		static const uint64_t send0[] = { 0, 20, 30, 40, UINT64_MAX };
		static const uint64_t want0[] = { 0, 10, 30, 50, UINT64_MAX };

		cr_assert_eq(cmp->send.n, 5);
		cr_assert_eq(cmp->want.n, 5);
		cr_assert(memcmp(cmp->send.v, dir == 0 ? send0 : want0,
		    sizeof(send0)) == 0);
		cr_assert(memcmp(cmp->want.v, dir == 0 ? want0 : send0,
		    sizeof(want0)) == 0);
		side_fini(&a);
		side_fini(&b);
	}
}

Test(recon, empty_against_non_empty)
{
	const size_t ns[] = { 1, 32, 33, 100000 };

	for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++)
		for (int dir = 0; dir < 2; dir++) {
			uint64_t rng = 99 + t;
			struct side e = { 0 }, x = { 0 };
			size_t bytes;
			int rounds;

			side_random(&x, ns[t], &rng);
			side_ready(&x);
			side_ready(&e);
			if (dir == 0)
				reconcile_check(&e, &x, 0, &rounds, &bytes, ROUNDS_CAP);
			else
				reconcile_check(&x, &e, 0, &rounds, &bytes, ROUNDS_CAP);
			cr_assert_eq(e.send.n + x.want.n, 0);
			cr_assert_leq(rounds, 3, "n %zu dir %d: %d rounds",
			    ns[t], dir, rounds);
			side_fini(&e);
			side_fini(&x);
		}
}

Test(recon, large_sets_few_differences_cost_little)
{
	unsigned seed = getenv("NBX_SEED") ? test_seed() : 1000;
	uint64_t rng = (uint64_t)seed * 2654435761u + 3;
	const size_t n = 100000;
	struct side base = { 0 };

	fprintf(stderr, "property recon_large: seed %u (replay with "
	    "NBX_SEED=<seed>)\n", seed);
	side_random(&base, n, &rng);
	for (int d = 0; d <= 10; d++) {
		struct side a, b;
		size_t bytes;
		int rounds;

		side_copy(&a, &base);
		side_copy(&b, &base);
		make_differences(&a, &b, d, &rng);
		if (d == 10) {	/* and at both ends of the key space */
			side_add(&a, 0, 1, 2);
			side_add(&b, UINT64_MAX, 3, 4);
		}
		side_ready(&a);
		side_ready(&b);
		reconcile_check(&a, &b, seed, &rounds, &bytes, ROUNDS_CAP);
		cr_assert_lt(bytes, n * RECON_ITEM_WIRE / 10, "d %d: %zu "
		    "bytes", d, bytes);
		/* log16(10^5 / 32) < 3: about that many splits, each side */
		cr_assert_leq(rounds, 8, "d %d: %d rounds", d, rounds);
		cr_log_info("d %d: %d rounds, %zu bytes", d, rounds, bytes);
		side_fini(&a);
		side_fini(&b);
	}
	side_fini(&base);
}

/* ceil(log16(n)), 0 for n <= 1 */
static int
log16_ceil(size_t n)
{
	int k = 0;

	for (size_t p = 1; p < n; p *= 16)
		k++;
	return k;
}

/*
 * So many differences that the replies reach RECON_RANGES_MAX and
 * RECON_IDS_MAX: the ranges over the limits go back as one FP each, and
 * the exchange still ends, exact.
 */
Test(recon, many_differences_reach_the_limits_and_converge)
{
	const int ds[] = { 3000, 30000 };

	for (size_t t = 0; t < sizeof(ds) / sizeof(ds[0]); t++) {
		uint64_t rng = 77 + t;
		struct side base = { 0 }, a, b;
		size_t bytes;
		int rounds;

		side_random(&base, 200000, &rng);
		side_copy(&a, &base);
		side_copy(&b, &base);
		make_differences(&a, &b, ds[t], &rng);
		side_ready(&a);
		side_ready(&b);
		/* each reply settles at least its first differing range;
		 * in practice a few hundred per reply */
		reconcile_check(&a, &b, 0, &rounds, &bytes, 200);
		cr_log_info("200000 items, %d differences: %d rounds, %zu "
		    "bytes", ds[t], rounds, bytes);
		side_fini(&base);
		side_fini(&a);
		side_fini(&b);
	}
}

Test(recon, reconciliation_property, .timeout = 240)
{
	const char *iters_env = getenv("NBX_PROP_ITERS");
	unsigned seed = getenv("NBX_SEED") ? test_seed() : 1000;
	int iters = iters_env ? atoi(iters_env) : getenv("NBX_SEED") ? 1 : 100;
	int max_rounds = 0;

	fprintf(stderr, "property recon: seeds %u..%u, up to 20000 items and "
	    "500 differences (replay one with NBX_SEED=<seed>)\n", seed,
	    seed + (unsigned)iters - 1);
	for (int it = 0; it < iters; it++, seed++) {
		uint64_t rng = (uint64_t)seed * 2654435761u + 1;
		size_t n = test_xorshift(&rng) % 20001;
		int d = (int)(test_xorshift(&rng) % 501), rounds;
		struct side base = { 0 }, a, b;
		size_t bytes;

		if (test_xorshift(&rng) % 4 == 0)	/* small sets too */
			n %= 100;
		side_random(&base, n, &rng);
		side_copy(&a, &base);
		side_copy(&b, &base);
		make_differences(&a, &b, d, &rng);
		side_ready(&a);
		side_ready(&b);
		reconcile_check(&a, &b, seed, &rounds, &bytes, ROUNDS_CAP);
		/* each reply cuts the differing ranges RECON_SPLIT-fold,
		 * down to RECON_IDS_BELOW items: about log16(n) rounds */
		cr_assert_leq(rounds, 4 + 2 * log16_ceil(n), "seed %u: n %zu "
		    "d %d: %d rounds", seed, n, d, rounds);
		if (rounds > max_rounds)
			max_rounds = rounds;
		side_fini(&base);
		side_fini(&a);
		side_fini(&b);
	}
	cr_log_info("at most %d rounds", max_rounds);
}

/* ------------------------------------------------------------------ */
/* The reply's shape                                                   */
/* ------------------------------------------------------------------ */

/* A message SKIP [0, lo), FP [lo, up) of bytes fp, SKIP [up, inf). */
static void
msg_fp_between(struct nbx_buf *b, uint64_t lo, uint64_t up,
    const uint8_t fp[16])
{
	struct mpwrite w;

	mpwrite_init(&w, b);
	mpwrite_array(&w, 9);
	mpwrite_uint(&w, lo);
	mpwrite_uint(&w, RECON_SKIP);
	mpwrite_nil(&w);
	mpwrite_uint(&w, up);
	mpwrite_uint(&w, RECON_FP);
	mpwrite_bin(&w, fp, 16);
	mpwrite_nil(&w);
	mpwrite_uint(&w, RECON_SKIP);
	mpwrite_nil(&w);
	cr_assert_eq(w.err, 0);
}

/* Index of the first item of x with kh >= k. */
static size_t
first_at(const struct side *x, uint64_t k)
{
	size_t i = 0;

	while (i < x->n && x->v[i].kh < k)
		i++;
	return i;
}

/*
 * x answers a differing FP over [lo, up); the reply must be SKIP up to
 * lo, our answer over exactly [lo, up), SKIP after; returns the answer's
 * ranges in g (count in *ng).
 */
static void
answer_between(struct side *x, uint64_t lo, uint64_t up, struct prange *g,
    size_t *ng)
{
	static const uint8_t junk[16] = { 1 };
	struct prange all[RECON_SPLIT + 2];
	struct nbx_buf m, r;
	size_t k;
	int done;

	nbx_buf_init(&m, SIZE_MAX);
	nbx_buf_init(&r, SIZE_MAX);
	msg_fp_between(&m, lo, up, junk);
	cr_assert_eq(recon_reply(&x->s, m.p, m.len, &x->d, &r, &done), 0);
	cr_assert_eq(done, 0);
	k = msg_parse(r.p, r.len, all, RECON_SPLIT + 2);
	cr_assert(k >= 3 && k <= RECON_SPLIT + 2);
	cr_assert(all[0].mode == RECON_SKIP && all[0].up == lo);
	cr_assert(all[k - 1].mode == RECON_SKIP && all[k - 1].inf &&
	    all[k - 1].lo == up, "answer ends at up, SKIP after");
	*ng = k - 2;
	for (size_t i = 0; i < *ng; i++) {
		uint8_t fp[16];

		g[i] = all[i + 1];
		if (g[i].mode != RECON_FP)
			continue;
		recon_set_fingerprint(&x->s, first_at(x, g[i].lo),
		    first_at(x, g[i].up), fp);
		cr_assert(memcmp(fp, g[i].data, 16) == 0, "our fingerprint");
	}
	nbx_buf_fini(&m);
	nbx_buf_fini(&r);
}

Test(recon, differing_ranges_are_split_listed_and_merged)
{
	struct prange g[RECON_SPLIT];
	struct side x = { 0 };
	size_t ng, i;

	/* kh 1000..1999, one item each; then 100 items at kh 5000, 40 each
	 * at 6000 and 6001 */
	for (i = 0; i < 1000; i++)
		side_add(&x, 1000 + i, i, 0);
	for (i = 0; i < 100; i++)
		side_add(&x, 5000, i, 0);
	for (i = 0; i < 40; i++) {
		side_add(&x, 6000, i, 0);
		side_add(&x, 6001, i, 0);
	}
	side_ready(&x);

	/* 1000 items: RECON_SPLIT buckets of 62 or 63 */
	answer_between(&x, 500, 3000, g, &ng);
	cr_assert_eq(ng, RECON_SPLIT);
	for (i = 0; i < ng; i++) {
		size_t c = first_at(&x, g[i].up) - first_at(&x, g[i].lo);

		cr_assert(g[i].mode == RECON_FP && c >= 62 && c <= 63,
		    "bucket %zu: %zu items", i, c);
	}
	/* 32 items: listed; 33: split */
	answer_between(&x, 1000, 1032, g, &ng);
	cr_assert(ng == 1 && g[0].mode == RECON_IDS && g[0].len == 32 * 24);
	answer_between(&x, 1000, 1033, g, &ng);
	cr_assert(ng > 1 && g[0].mode == RECON_FP);
	/* none held: an empty list */
	answer_between(&x, 3000, 4000, g, &ng);
	cr_assert(ng == 1 && g[0].mode == RECON_IDS && g[0].len == 0);
	/* 100 items of one kh cannot be cut: listed whole */
	answer_between(&x, 4000, 5001, g, &ng);
	cr_assert(ng == 1 && g[0].mode == RECON_IDS && g[0].len == 100 * 24);
	/* 80 items of two kh: cut only between them */
	answer_between(&x, 5500, 7000, g, &ng);
	cr_assert_eq(ng, 3, "[5500, 6000) [6000, 6001) [6001, 7000)");
	cr_assert(g[0].up == 6000 && g[1].up == 6001);
	/* 100 at 1900..1999 and 100 at 5000: the cuts that fall among the
	 * 5000s are merged, the last bucket holds them all */
	answer_between(&x, 1900, 6000, g, &ng);
	cr_assert_eq(ng, 9);
	cr_assert(g[7].up == 5000 && g[8].lo == 5000);
	cr_assert_eq(x.calls, 0);
	side_fini(&x);
}

Test(recon, skips_merge_and_all_skip_is_done)
{
	static const uint8_t fp0[16] = { 0 };
	struct side x = { 0 };
	struct prange g[8];
	struct nbx_buf m, r;
	struct mpwrite w;
	size_t fp_at;
	int done;

	side_ready(&x);		/* empty: its fingerprint is 0 */
	nbx_buf_init(&m, SIZE_MAX);
	nbx_buf_init(&r, SIZE_MAX);
	nbx_buf_append(&r, "keep", 4);
	mpwrite_init(&w, &m);
	mpwrite_array(&w, 15);
	mpwrite_uint(&w, 10);
	mpwrite_uint(&w, RECON_SKIP);
	mpwrite_nil(&w);
	mpwrite_uint(&w, 20);
	mpwrite_uint(&w, RECON_FP);
	fp_at = m.len + 2;
	mpwrite_bin(&w, fp0, 16);	/* equal: SKIP */
	mpwrite_uint(&w, 30);
	mpwrite_uint(&w, RECON_IDS);
	mpwrite_bin(&w, NULL, 0);	/* equal lists: SKIP */
	mpwrite_uint(&w, 40);
	mpwrite_uint(&w, RECON_SKIP);
	mpwrite_nil(&w);
	mpwrite_nil(&w);
	mpwrite_uint(&w, RECON_SKIP);
	mpwrite_nil(&w);
	cr_assert_eq(recon_reply(&x.s, m.p, m.len, &x.d, &r, &done), 0);
	cr_assert(done == 1 && r.len == 4 && memcmp(r.p, "keep", 4) == 0);
	{	/* saying nothing needs no room */
		struct nbx_buf full;

		nbx_buf_init(&full, 0);
		cr_assert_eq(recon_reply(&x.s, m.p, m.len, &x.d, &full,
		    &done), 0);
		cr_assert(done == 1 && full.len == 0);
		nbx_buf_fini(&full);
	}

	/* an FP that differs in the middle: SKIP, IDS (empty), SKIP */
	m.p[fp_at + 5] ^= 1;
	cr_assert_eq(recon_reply(&x.s, m.p, m.len, &x.d, &r, &done), 0);
	cr_assert_eq(done, 0);
	cr_assert_eq(msg_parse(r.p + 4, r.len - 4, g, 8), 3);
	cr_assert(g[0].mode == RECON_SKIP && g[0].up == 10);
	cr_assert(g[1].mode == RECON_IDS && g[1].up == 20 && g[1].len == 0);
	cr_assert(g[2].mode == RECON_SKIP && g[2].inf);
	nbx_buf_fini(&m);
	nbx_buf_fini(&r);
	side_fini(&x);
}

/* ------------------------------------------------------------------ */
/* Failures                                                            */
/* ------------------------------------------------------------------ */

static int
refuse(void *arg, uint64_t kh)
{
	(void)arg;
	(void)kh;
	return -42;
}

Test(recon, callback_and_buffer_failures_leave_out_as_it_was)
{
	uint64_t rng = 5;
	struct side a = { 0 }, b;
	struct nbx_buf m, r;
	struct recon_diff d = { refuse, refuse, NULL };
	int done;

	side_random(&a, 20, &rng);
	side_copy(&b, &a);
	b.v[3].vh[0] ^= 1;
	side_ready(&a);
	side_ready(&b);
	nbx_buf_init(&m, SIZE_MAX);
	cr_assert_eq(recon_initiate(&a.s, &m), 0);
	nbx_buf_init(&r, SIZE_MAX);
	nbx_buf_append(&r, "keep", 4);
	cr_assert_eq(recon_reply(&b.s, m.p, m.len, &d, &r, &done), -42);
	cr_assert(r.len == 4 && done == 0);
	cr_assert_eq(recon_reply(&b.s, m.p, m.len, NULL, &r, &done), 0,
	    "no callbacks at all");
	nbx_buf_fini(&r);

	/* a buffer too small for the message */
	nbx_buf_init(&r, 10);
	nbx_buf_append(&r, "keep", 4);
	cr_assert_eq(recon_initiate(&a.s, &r), NBX_ETOOBIG);
	cr_assert_eq(r.len, 4);
	nbx_buf_fini(&r);
	side_fini(&a);
	side_fini(&b);
	side_add(&a, 1, 1, 1);
	for (int i = 0; i < 100; i++)
		side_add(&a, 2 + (uint64_t)i, 1, 1);
	side_copy(&b, &a);
	b.v[50].vh[0] ^= 1;
	side_ready(&a);
	side_ready(&b);
	nbx_buf_fini(&m);
	nbx_buf_init(&m, SIZE_MAX);
	cr_assert_eq(recon_initiate(&a.s, &m), 0);
	nbx_buf_init(&r, 40);
	nbx_buf_append(&r, "keep", 4);
	cr_assert_eq(recon_reply(&b.s, m.p, m.len, &b.d, &r, &done),
	    NBX_ETOOBIG);
	cr_assert(r.len == 4 && memcmp(r.p, "keep", 4) == 0 && done == 0);
	nbx_buf_fini(&r);
	nbx_buf_fini(&m);
	side_fini(&a);
	side_fini(&b);
}

/* An IDS range's data: items (kh, first vh byte). */
static void
ids_put(struct mpwrite *w, const uint64_t (*it)[2], size_t n)
{
	uint8_t e[RECON_ITEM_WIRE];

	mpwrite_bin_head(w, (uint32_t)(n * RECON_ITEM_WIRE));
	for (size_t i = 0; i < n; i++) {
		uint64_t kh = htobe64(it[i][0]);

		memset(e, 0, sizeof(e));
		memcpy(e, &kh, 8);
		e[8] = (uint8_t)it[i][1];
		mpwrite_raw(w, e, sizeof(e));
	}
}

/*
 * Hostile message number `which` into b, named (NULL when there are no
 * more).  Its first range is an IDS list that differs from the set's, so
 * a callback would be called if the engine acted before it checked;
 * `which` -1 is the valid message the others break.
 */
static const char *
hostile(int which, struct nbx_buf *b)
{
	static const uint64_t first[][2] = { { 1, 9 } };
	static const uint64_t unsorted[][2] = { { 150, 0 }, { 120, 0 } };
	static const uint64_t vh_unsorted[][2] = { { 150, 2 }, { 150, 1 } };
	static const uint64_t below[][2] = { { 99, 0 } };
	static const uint64_t at_up[][2] = { { 200, 0 } };
	static const uint8_t fp[17] = { 0 };
	struct mpwrite w;
	const char *what = NULL;
	uint32_t k = which == 7 ? 2 : 3;

	mpwrite_init(&w, b);
	if (which == 0)
		return "not an array";
	if (which == 1) {
		mpwrite_array(&w, 0);
		return "k = 0";
	}
	if (which == 2) {
		mpwrite_array(&w, 4);
		return "4 elements";
	}
	if (which == 3) {
		mpwrite_array(&w, 3 * (RECON_RANGES_MAX + 1));
		for (uint64_t i = 1; i <= RECON_RANGES_MAX; i++) {
			mpwrite_uint(&w, i);
			mpwrite_uint(&w, RECON_SKIP);
			mpwrite_nil(&w);
		}
		mpwrite_nil(&w);
		mpwrite_uint(&w, RECON_SKIP);
		mpwrite_nil(&w);
		return "RECON_RANGES_MAX + 1 ranges";
	}
	if (which == 4) {
		uint64_t lo = 0, step = 3;

		mpwrite_array(&w, 3 * 3);
		for (int i = 0; i < 2; i++, lo += step) {	/* 2 x 32769 */
			mpwrite_uint(&w, lo + step);
			mpwrite_uint(&w, RECON_IDS);
			mpwrite_bin_head(&w, (RECON_IDS_MAX / 2 + 1) * 24);
			for (int j = 0; j < RECON_IDS_MAX / 2 + 1; j++) {
				uint8_t e[24] = { 0 };
				uint64_t kh = htobe64(lo);

				memcpy(e, &kh, 8);
				mpwrite_raw(&w, e, 24);
			}
		}
		mpwrite_nil(&w);
		mpwrite_uint(&w, RECON_SKIP);
		mpwrite_nil(&w);
		return "RECON_IDS_MAX + 2 items";
	}
	/* the rest: [IDS first up to 100] then one range of the case, then
	 * [nil SKIP nil] unless the case ends the message itself */
	switch (which) {
	case -1: what = "valid"; break;
	case 5: what = "upper not increasing"; break;
	case 6: what = "upper equal"; break;
	case 7: what = "last upper not nil"; break;
	case 8: what = "nil upper before the last"; break;
	case 9: what = "mode 3"; break;
	case 10: what = "mode -1"; break;
	case 11: what = "mode a str"; break;
	case 12: what = "SKIP with a bin"; break;
	case 13: what = "FP with nil"; break;
	case 14: what = "FP bin 15"; break;
	case 15: what = "FP bin 17"; break;
	case 16: what = "FP a str of 16"; break;
	case 17: what = "IDS bin 25"; break;
	case 18: what = "IDS nil"; break;
	case 19: what = "IDS kh unsorted"; break;
	case 20: what = "IDS vh unsorted"; break;
	case 21: what = "IDS kh below the range"; break;
	case 22: what = "IDS kh at its upper"; break;
	case 23: what = "trailing byte"; break;
	case 24: what = "upper negative"; break;
	case 25: what = "upper a str"; break;
	case 26: what = "bin longer than the message"; break;
	case 27: what = "cut short"; break;
	case 28: what = "first upper 0"; break;
	case 29: what = "array header cut"; break;
	case 30: what = "a map"; break;
	default: return NULL;
	}
	if (which == 29) {
		mpwrite_raw(&w, "\xdc\x00", 2);
		return what;
	}
	if (which == 30) {
		mpwrite_raw(&w, "\x81\xc0\xc0", 3);
		return what;
	}
	if (which == 28) {
		mpwrite_array(&w, 6);
		mpwrite_uint(&w, 0);
		mpwrite_uint(&w, RECON_SKIP);
		mpwrite_nil(&w);
		mpwrite_nil(&w);
		mpwrite_uint(&w, RECON_SKIP);
		mpwrite_nil(&w);
		return what;
	}
	mpwrite_array(&w, 3 * k);
	mpwrite_uint(&w, 100);
	mpwrite_uint(&w, RECON_IDS);
	ids_put(&w, first, 1);
	switch (which) {
	case 5: mpwrite_uint(&w, 50); break;
	case 6: mpwrite_uint(&w, 100); break;
	case 7: case 23: case 27: mpwrite_uint(&w, 200); break;
	case 8: mpwrite_nil(&w); break;
	case 24: mpwrite_int(&w, -5); break;
	case 25: mpwrite_str(&w, NBX_STR("x")); break;
	default: mpwrite_uint(&w, 200); break;
	}
	switch (which) {
	case 9: mpwrite_uint(&w, 3); mpwrite_nil(&w); break;
	case 10: mpwrite_int(&w, -1); mpwrite_nil(&w); break;
	case 11: mpwrite_str(&w, NBX_STR("fp")); mpwrite_nil(&w); break;
	case 12: mpwrite_uint(&w, RECON_SKIP); mpwrite_bin(&w, fp, 0); break;
	case 13: mpwrite_uint(&w, RECON_FP); mpwrite_nil(&w); break;
	case 14: mpwrite_uint(&w, RECON_FP); mpwrite_bin(&w, fp, 15); break;
	case 15: mpwrite_uint(&w, RECON_FP); mpwrite_bin(&w, fp, 17); break;
	case 16:
		mpwrite_uint(&w, RECON_FP);
		mpwrite_str(&w, (struct nbx_str){ (const char *)fp, 16 });
		break;
	case 17: mpwrite_uint(&w, RECON_IDS); mpwrite_bin(&w, fp, 17);
		mpwrite_raw(&w, fp, 8); b->p[b->len - 26] = 25; break;
	case 18: mpwrite_uint(&w, RECON_IDS); mpwrite_nil(&w); break;
	case 19: mpwrite_uint(&w, RECON_IDS); ids_put(&w, unsorted, 2); break;
	case 20: mpwrite_uint(&w, RECON_IDS); ids_put(&w, vh_unsorted, 2);
		break;
	case 21: mpwrite_uint(&w, RECON_IDS); ids_put(&w, below, 1); break;
	case 22: mpwrite_uint(&w, RECON_IDS); ids_put(&w, at_up, 1); break;
	case 26: mpwrite_uint(&w, RECON_IDS);
		mpwrite_raw(&w, "\xc6\x00\x10\x00\x00", 5); break;
	default: mpwrite_uint(&w, RECON_SKIP); mpwrite_nil(&w); break;
	}
	if (which == 7 || which == 27)
		return what;	/* 2 ranges: the last not nil, or one short */
	mpwrite_nil(&w);
	mpwrite_uint(&w, RECON_SKIP);
	mpwrite_nil(&w);
	if (which == 23)
		mpwrite_nil(&w);
	return what;
}

Test(recon, hostile_messages_are_refused_before_acting)
{
	uint64_t rng = 3;
	struct side x = { 0 };
	const char *what;
	int done, n = 0;

	side_random(&x, 1000, &rng);
	side_add(&x, 2, 2, 2);
	side_ready(&x);
	{	/* unbroken, it names kh 1 and 2 */
		struct nbx_buf m, r;

		nbx_buf_init(&m, SIZE_MAX);
		nbx_buf_init(&r, SIZE_MAX);
		cr_assert_str_eq(hostile(-1, &m), "valid");
		cr_assert_eq(recon_reply(&x.s, m.p, m.len, &x.d, &r, &done),
		    0);
		cr_assert(done && x.send.n == 1 && x.send.v[0] == 2 &&
		    x.want.n == 1 && x.want.v[0] == 1);
		x.calls = 0;
		nbx_buf_fini(&m);
		nbx_buf_fini(&r);
	}
	for (int which = 0;; which++) {
		struct nbx_buf m, r;
		int rc;

		nbx_buf_init(&m, SIZE_MAX);
		if (which == 0)
			nbx_buf_append(&m, "\x05", 1);
		if ((what = hostile(which, &m)) == NULL) {
			nbx_buf_fini(&m);
			break;
		}
		nbx_buf_init(&r, SIZE_MAX);
		nbx_buf_append(&r, "keep", 4);
		done = 7;
		rc = recon_reply(&x.s, m.p, m.len, &x.d, &r, &done);
		cr_assert_eq(rc, NBX_EMALFORMED, "%s: %d", what, rc);
		cr_assert_eq(x.calls, 0, "%s: a callback was called", what);
		cr_assert(r.len == 4 && memcmp(r.p, "keep", 4) == 0,
		    "%s: out changed", what);
		cr_assert_eq(done, 0, "%s", what);
		/* and the empty message */
		cr_assert_eq(recon_reply(&x.s, m.p, 0, &x.d, &r, &done),
		    NBX_EMALFORMED);
		nbx_buf_fini(&m);
		nbx_buf_fini(&r);
		n++;
	}
	cr_assert_eq(n, 31);
	side_fini(&x);
}

Test(recon, limits_of_a_message_are_answered_within_limits)
{
	uint64_t rng = 11;
	struct side x = { 0 };
	const uint64_t step[] = { UINT64_MAX / RECON_RANGES_MAX,
	    UINT64_MAX / 2000, UINT64_MAX / 3 };
	const uint32_t nr[] = { RECON_RANGES_MAX, 2000, 3 };

	side_random(&x, 100000, &rng);
	side_ready(&x);
	/* RECON_RANGES_MAX ranges of about 24 items each (listing hits
	 * RECON_IDS_MAX), 2000 of 50 (splitting hits RECON_RANGES_MAX), 3 of
	 * 33333 */
	for (size_t t = 0; t < 3; t++) {
		static const uint8_t junk[16] = { 1 };
		struct nbx_buf m, r;
		struct mpwrite w;
		int done;

		nbx_buf_init(&m, SIZE_MAX);
		nbx_buf_init(&r, SIZE_MAX);
		mpwrite_init(&w, &m);
		mpwrite_array(&w, 3 * nr[t]);
		for (uint32_t i = 0; i < nr[t]; i++) {
			if (i == nr[t] - 1)
				mpwrite_nil(&w);
			else
				mpwrite_uint(&w, step[t] * (i + 1));
			mpwrite_uint(&w, RECON_FP);
			mpwrite_bin(&w, junk, 16);
		}
		cr_assert_eq(recon_reply(&x.s, m.p, m.len, &x.d, &r, &done),
		    0);
		cr_assert_eq(done, 0);
		cr_log_info("%u FP ranges: a reply of %zu ranges, %zu bytes",
		    nr[t], msg_parse(r.p, r.len, NULL, 0), r.len);
		nbx_buf_fini(&m);
		nbx_buf_fini(&r);
	}
	side_fini(&x);
}

/* Mutates m in place (1 to 4 edits); the length may change. */
static void
mutate(struct nbx_buf *m, uint64_t *rng)
{
	static const uint8_t hot[] = { 0x00, 0x01, 0x02, 0x03, 0x7f, 0x90,
	    0x93, 0xc0, 0xc4, 0xc5, 0xc6, 0xcc, 0xcf, 0xd0, 0xdc, 0xdd, 0xff };
	int edits = 1 + (int)(test_xorshift(rng) % 4);

	for (int e = 0; e < edits; e++) {
		size_t at = m->len ? test_xorshift(rng) % m->len : 0;
		uint8_t c = (uint8_t)test_xorshift(rng);

		switch (test_xorshift(rng) % 5) {
		case 0:
			if (m->len)
				m->p[at] ^= (uint8_t)(1u << (c & 7));
			break;
		case 1:
			if (m->len)
				m->p[at] = hot[c % sizeof(hot)];
			break;
		case 2:
			m->len = at;
			break;
		case 3:
			if (nbx_buf_reserve(m, 1) == 0) {
				memmove(m->p + at + 1, m->p + at, m->len - at);
				m->p[at] = c;
				m->len++;
			}
			break;
		case 4:
			if (m->len) {
				memmove(m->p + at, m->p + at + 1,
				    m->len - at - 1);
				m->len--;
			}
			break;
		}
	}
}

Test(recon, mutated_messages_are_refused_or_answered, .timeout = 240)
{
	uint64_t rng = 1234567;
	struct side a = { 0 }, b, e = { 0 };
	struct nbx_buf pool[16];
	size_t np = 0;
	int accepted = 0;

	/* valid messages: an exchange's, recorded as it goes */
	side_random(&a, 2000, &rng);
	side_copy(&b, &a);
	make_differences(&a, &b, 40, &rng);
	side_ready(&a);
	side_ready(&b);
	side_ready(&e);
	{
		struct side *to = &b, *from = &a, *t;
		int done = 0;

		nbx_buf_init(&pool[np], SIZE_MAX);
		cr_assert_eq(recon_initiate(&a.s, &pool[np]), 0);
		while (np + 1 < 16) {
			nbx_buf_init(&pool[np + 1], SIZE_MAX);
			cr_assert_eq(recon_reply(&to->s, pool[np].p,
			    pool[np].len, NULL, &pool[np + 1], &done), 0);
			np++;
			if (done)
				break;
			t = to;
			to = from;
			from = t;
		}
		if (done)
			nbx_buf_fini(&pool[np]);
		else
			np++;
	}
	cr_assert_geq(np, 3);
	for (int k = 0; k < 10000; k++) {
		const struct nbx_buf *src = &pool[test_xorshift(&rng) % np];
		struct side *x = k & 1 ? &a : &e;
		struct nbx_buf m, r;
		int done, rc;

		nbx_buf_init(&m, SIZE_MAX);
		nbx_buf_append(&m, src->p, src->len);
		mutate(&m, &rng);
		nbx_buf_init(&r, SIZE_MAX);
		nbx_buf_append(&r, "keep", 4);
		x->calls = 0;
		rc = recon_reply(&x->s, m.p, m.len, &x->d, &r, &done);
		cr_assert(rc == 0 || rc == NBX_EMALFORMED, "code %d", rc);
		if (rc != 0) {
			cr_assert_eq(x->calls, 0);
			cr_assert(r.len == 4 && done == 0);
		} else {
			accepted++;
			if (!done)
				msg_parse(r.p + 4, r.len - 4, NULL, 0);
			else
				cr_assert_eq(r.len, 4);
		}
		nbx_buf_fini(&m);
		nbx_buf_fini(&r);
	}
	cr_log_info("10000 mutated messages, %d accepted", accepted);
	for (size_t i = 0; i < np; i++)
		nbx_buf_fini(&pool[i]);
	side_fini(&a);
	side_fini(&b);
	side_fini(&e);
}
