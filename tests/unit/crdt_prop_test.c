/*
 * crdt_prop_test.c - the CRDT laws, checked through store_apply.
 *
 * For many random change sets written by 3-5 replicas, the observer store
 * must reach byte-identical records (SHA-256 over the records database)
 * whatever the delivery order, batching and duplication.  Change sets mix
 * every kind: region fields and set elements, audience-scoped fields under
 * audiences that add and drop the observer, re-sends under newer
 * audiences, deletes, revivals, erasures and purge receipts, plus changes
 * that must be rejected.
 *
 * The seed is printed; NBX_SEED=<n> replays one run, NBX_PROP_ITERS sets
 * the number of change sets (default 60).
 */
#include <criterion/criterion.h>
#include <time.h>

#include "hlc.h"
#include "nbx_err.h"
#include "store.h"
#include "testlib.h"

#define MAXCH	512
#define NOW	(UINT64_C(1) << 30)	/* far beyond every generated time */

static uint64_t rng;

static uint64_t
rnd(void)
{
	return test_xorshift(&rng);
}

static unsigned
rn(unsigned n)
{
	return (unsigned)(rnd() % n);
}

static const char *const NODES[] = { "r1", "r2", "r3", "r4", "r5" };
static const char *const RECS[] = { "r1:a", "r2:b", "r3:c", "r1:d" };
static const char *const WORDS[] = { "x", "y", "z", "w" };
static const char *const STATUS[] = { "a", "b", "c" };
static const struct nbx_str SELF = NBX_STR("me");

struct gen {
	struct change ch[MAXCH];
	size_t n;
	unsigned nodes;		/* replicas in this set: 3-5 */
	uint64_t used[MAXCH];	/* (hlc, origin index) pairs taken */
	size_t nused;
	/* audience versions per record */
	struct nbx_audience aud[4][6];
	unsigned naud[4];
};

static uint64_t
fresh_hlc(struct gen *g, unsigned origin)
{
	for (;;) {
		uint64_t h = HLC_MAKE(1000 + rn(40), rn(3));
		uint64_t key = (h << 3) | origin;
		size_t i;

		for (i = 0; i < g->nused && g->used[i] != key; i++)
			;
		if (i == g->nused) {
			g->used[g->nused++] = key;
			return h;
		}
	}
}

static unsigned
origin_index(struct nbx_str o)
{
	for (unsigned i = 0; i < 5; i++)
		if (nbx_str_eq(o, nbx_str_c(NODES[i])))
			return i;
	return 7;
}

static struct change *
push(struct gen *g, enum change_kind k, unsigned rec, const char *field)
{
	struct change *c = &g->ch[g->n++];

	memset(c, 0, sizeof(*c));
	c->kind = k;
	c->coll = nbx_str_c("t");
	c->id = nbx_str_c(RECS[rec]);
	c->field = nbx_str_c(field ? field : "");
	c->origin = nbx_id_creator(c->id);
	c->hlc = fresh_hlc(g, origin_index(c->origin));
	return c;
}

static void
make_audiences(struct gen *g, unsigned rec)
{
	struct nbx_str creator = nbx_id_creator(nbx_str_c(RECS[rec]));

	g->naud[rec] = 1 + rn(4);
	for (unsigned v = 0; v < g->naud[rec]; v++) {
		struct nbx_audience *a = &g->aud[rec][v];

		memset(a, 0, sizeof(*a));
		a->origin = creator;
		a->hlc = fresh_hlc(g, origin_index(creator));
		a->ids[a->n++] = creator;
		if (rn(3) != 0)
			a->ids[a->n++] = SELF;	/* usually holds the observer */
		for (unsigned i = 0; i < g->nodes; i++)
			if (!nbx_str_eq(nbx_str_c(NODES[i]), creator) && rn(2))
				a->ids[a->n++] = nbx_str_c(NODES[i]);
	}
}

static void
generate(struct gen *g)
{
	memset(g, 0, sizeof(*g));
	g->nodes = 3 + rn(3);
	for (unsigned r = 0; r < 4; r++) {
		make_audiences(g, r);
		for (unsigned v = 0; v < g->naud[r]; v++) {
			struct change *c = push(g, CHANGE_AUDIENCE, r, NULL);

			c->hlc = g->aud[r][v].hlc;
			c->aud = g->aud[r][v];
		}
	}
	unsigned target = 40 + rn(120);
	while (g->n < target && g->n < MAXCH - 2) {
		unsigned r = rn(4), kind = rn(100);
		struct change *c;

		if (kind < 25) {
			c = push(g, CHANGE_FIELD, r, "name");
			c->val.t = NBX_V_STR;
			c->val.s = nbx_str_c(WORDS[rn(4)]);
			if (rn(10) == 0)
				c->val.t = NBX_V_NIL;
		} else if (kind < 35) {
			c = push(g, CHANGE_FIELD, r, "count");
			c->val.t = NBX_V_INT;
			c->val.i = rn(5) == 0 ? 5000 : rn(1000); /* 5000 is refused */
		} else if (kind < 50) {
			c = push(g, CHANGE_ELEM, r, "tags");
			c->elem = nbx_str_c(WORDS[rn(4)]);
			c->val.t = NBX_V_BOOL;
			c->val.i = rn(2);
		} else if (kind < 80) {
			int status = rn(2);
			const struct nbx_audience *a = &g->aud[r][rn(g->naud[r])];

			c = push(g, CHANGE_FIELD, r, status ? "status" : "secret");
			c->aud = *a;
			c->val.t = NBX_V_STR;
			c->val.s = nbx_str_c(status ? STATUS[rn(3)] : WORDS[rn(4)]);
			if (status) {	/* any audience member may write it */
				c->origin = a->ids[rn(a->n)];
				if (nbx_str_eq(c->origin, SELF))
					c->origin = a->origin;
				c->hlc = fresh_hlc(g, origin_index(c->origin));
			}
			if (rn(4) == 0) {	/* re-sent under another audience */
				struct change *d = &g->ch[g->n++];

				*d = *c;
				d->aud = g->aud[r][rn(g->naud[r])];
			}
		} else if (kind < 92) {
			c = push(g, CHANGE_STATE, r, NULL);
			c->val.t = NBX_V_INT;
			c->val.i = rn(2);
			if (rn(8) == 0)	/* not the creator: refused */
				c->origin = nbx_str_c(NODES[rn(g->nodes)]);
		} else if (kind < 95) {
			c = push(g, CHANGE_ERASE, r, NULL);
			c->origin = nbx_str_c(NODES[rn(g->nodes)]);
			c->hlc = fresh_hlc(g, origin_index(c->origin));
		} else if (kind < 98) {
			/* receipts: done only from the node itself */
			unsigned who = rn(g->nodes);

			c = push(g, CHANGE_RECEIPT, r, rn(2) ? "erase" : "revoke");
			c->elem = nbx_str_c(NODES[who]);
			c->val.t = NBX_V_INT;
			c->val.i = 1 + rn(2);
			c->origin = nbx_str_c(NODES[rn(3) ? who : rn(g->nodes)]);
			c->hlc = fresh_hlc(g, origin_index(c->origin));
		} else {
			c = push(g, CHANGE_FIELD, r, "note");	/* local: refused */
			c->val.t = NBX_V_STR;
			c->val.s = nbx_str_c("leak");
		}
	}
}

/* Applies seq[0..n) in random batches, from random peers. */
static void
apply_all(struct store *st, const struct policy *pol, const struct change *seq,
    size_t n)
{
	static struct store_outcome out[MAXCH * 3];
	size_t i = 0;

	while (i < n) {
		size_t b = 1 + rn(40);

		if (b > n - i)
			b = n - i;
		cr_assert_eq(store_apply(st, pol, seq + i, b,
		    nbx_str_c(NODES[rn(5)]), NULL, NOW, 0, out), 0, "%s",
		    store_last_error(st));
		i += b;
	}
}

static void
digest_of(const struct policy *pol, const struct change *seq, size_t n,
    uint8_t d[32])
{
	char *dir = strdup("/dev/shm/nbx-prop-XXXXXX");
	struct store_opts o = { .node_id = "me", .map_size = 1 << 20 };
	struct store *st = NULL;
	char err[256];

	if (mkdtemp(dir) == NULL) {	/* no /dev/shm: use /tmp */
		free(dir);
		dir = test_tmpdir();
	}
	cr_assert_eq(store_open(dir, &o, &st, err, sizeof(err)), 0, "%s", err);
	apply_all(st, pol, seq, n);
	cr_assert_eq(store_records_digest(st, d), 0);
	store_close(st);
	test_rmdir(dir);
}

static void
shuffle_with_dups(const struct gen *g, struct change *out, size_t *n)
{
	size_t k = 0;

	for (size_t i = 0; i < g->n; i++) {
		out[k++] = g->ch[i];
		if (rn(4) == 0)
			out[k++] = g->ch[rn((unsigned)g->n)];
	}
	for (size_t i = k; i > 1; i--) {
		size_t j = rn((unsigned)i);
		struct change t = out[i - 1];

		out[i - 1] = out[j];
		out[j] = t;
	}
	*n = k;
}

Test(crdt_prop, any_order_with_duplicates_converges, .timeout = 600)
{
	static struct gen g;
	static struct change perm[MAXCH * 3];
	const char *iters_env = getenv("NBX_PROP_ITERS");
	unsigned seed = test_seed();
	int iters = iters_env ? atoi(iters_env) : 60;
	struct policy *pol = test_policy();
	size_t total = 0, nonempty = 0;

	fprintf(stderr, "property crdt_convergence: seed=%u iterations=%d "
	    "(replay with NBX_SEED=%u)\n", seed, iters, seed);
	rng = (uint64_t)seed * 2654435761u + 1;
	for (int it = 0; it < iters; it++) {
		uint8_t ref[32], d[32];
		size_t n;

		generate(&g);
		total += g.n;
		digest_of(pol, g.ch, g.n, ref);
		for (int p = 0; p < 3; p++) {
			shuffle_with_dups(&g, perm, &n);
			digest_of(pol, perm, n, d);
			cr_assert_eq(memcmp(ref, d, 32), 0,
			    "seed %u iteration %d permutation %d: states differ",
			    seed, it, p);
		}
		nonempty++;
	}
	cr_assert_gt(total, (size_t)iters * 40);
	cr_assert_eq(nonempty, (size_t)iters);
	policy_free(pol);
}

/* crdt_record_sole_author against the changes the record really emits. */
struct authors {
	struct nbx_str first;
	size_t n;
	int mixed;
};

static int
note_author(void *arg, const struct change *c)
{
	struct authors *x = arg;

	if (x->n++ == 0)
		x->first = c->origin;
	else if (!nbx_str_eq(x->first, c->origin))
		x->mixed = 1;
	return 0;
}

static void
check_sole_author(const struct crdt_record *r, unsigned seed, int it)
{
	struct authors x = { { NULL, 0 }, 0, 0 };
	struct nbx_str who;
	int sole = crdt_record_sole_author(r, &who);

	crdt_record_changes(r, note_author, &x);
	cr_assert_eq(sole, x.n > 0 && !x.mixed, "seed %u iteration %d: sole "
	    "author %d, changes %zu mixed %d", seed, it, sole, x.n, x.mixed);
	if (sole)
		cr_assert(nbx_str_eq(who, x.first), "seed %u iteration %d",
		    seed, it);
}

/*
 * The observer's state must also not depend on how changes are grouped
 * into records: merging each record's changes straight through crdt
 * (no store, no policy) in two orders gives the same bytes.
 */
Test(crdt_prop, pure_merge_is_order_independent)
{
	static struct gen g;
	const char *env = getenv("NBX_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) :
	    (unsigned)time(NULL) + 1;

	fprintf(stderr, "property crdt_pure_merge: seed=%u\n", seed);
	rng = (uint64_t)seed * 2654435761u + 7;
	for (int it = 0; it < 300; it++) {
		struct crdt_record a, b;
		struct nbx_buf ea, eb;
		int changed;

		generate(&g);
		crdt_record_init(&a, nbx_str_c("t"), nbx_str_c("r1:a"));
		crdt_record_init(&b, nbx_str_c("t"), nbx_str_c("r1:a"));
		for (size_t i = 0; i < g.n; i++)
			if (nbx_str_eq(g.ch[i].id, a.id))
				crdt_record_merge(&a, &g.ch[i], SELF, &changed);
		for (size_t i = g.n; i-- > 0;) {
			if (!nbx_str_eq(g.ch[i].id, b.id))
				continue;
			crdt_record_merge(&b, &g.ch[i], SELF, &changed);
			crdt_record_merge(&b, &g.ch[i], SELF, &changed);
			cr_assert_eq(changed, 0, "seed %u: merge not idempotent",
			    seed);
		}
		check_sole_author(&a, seed, it);
		nbx_buf_init(&ea, SIZE_MAX);
		nbx_buf_init(&eb, SIZE_MAX);
		crdt_record_encode(&a, &ea);
		crdt_record_encode(&b, &eb);
		cr_assert_eq(ea.len, eb.len, "seed %u iteration %d", seed, it);
		cr_assert_eq(memcmp(ea.p, eb.p, ea.len), 0, "seed %u iteration %d",
		    seed, it);
		/* what is stored reads back as the same state */
		crdt_record_fini(&b);
		crdt_record_init(&b, nbx_str_c("t"), nbx_str_c("r1:a"));
		cr_assert_eq(crdt_record_decode(ea.p, ea.len, &b), 0,
		    "seed %u iteration %d: decode", seed, it);
		eb.len = 0;
		crdt_record_encode(&b, &eb);
		cr_assert(eb.len == ea.len && memcmp(ea.p, eb.p, ea.len) == 0,
		    "seed %u iteration %d: decode and encode again", seed, it);
		nbx_buf_fini(&ea);
		nbx_buf_fini(&eb);
		crdt_record_fini(&a);
		crdt_record_fini(&b);
	}
}
