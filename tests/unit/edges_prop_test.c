/*
 * edges_prop_test.c - a seeded property test of a federation's edges:
 * four nodes in a line, a star or a full mesh, sessions
 * pumped against each other in one process, over a collection with no
 * region field (so an erasure and its receipts travel only where the
 * record went).  Two creators write their records, set audiences that
 * widen and narrow while the audience's writers write, erase records,
 * and one node is wiped to an empty store (a new log epoch) in the
 * middle of the run.  Audiences are random subsets, so relays are inside
 * the audience or outside it.
 *
 * At the end, with every link settled:
 *   - no node holds a value policy does not permit it: an audience value
 *     only on a node in the record's audience (and in the audience the
 *     value is stamped with), a local value only on its writer;
 *   - every pair computes equal digests, except two members of a
 *     record's audience cut off from each other by relays outside it
 *     (they can never exchange its values: DESIGN.md, relays and
 *     audiences);
 *   - every node the record reached holds the same winning value of each
 *     field (a write acknowledged anywhere is present wherever policy
 *     and the topology let it go);
 *   - every erasure is confirmed on the eraser by every node that holds
 *     the record, and nothing is pending.
 * Seeds are printed, from 1000 unless NBX_SEED=<n> is set: it replays
 * one (with NBX_PROP_ITERS, that many from it); NBX_PROP_ITERS sets how
 * many runs (60, a few seconds).
 */
#include "synctest.h"

TestSuite(edges, .init = setup, .fini = teardown, .timeout = 240);

/* No region field: receipts cannot lean on "every peer may hold it". */
static const char EDGE_SCHEMA[] =
    "[t]\n"
    "[t.secret]\ntype = string\nshare = audience\n"
    "[t.status]\ntype = enum\nvalues = a, b, c\nshare = audience\n"
    "writers = audience\n"
    "[t.note]\ntype = string\nshare = local\n";

#define NN	4
#define NREC	4
static const char *const ids[NN] = { "ee", "fi", "lt", "lv" };
/* records: two of ee's, two of lt's */
static const char *const recs[NREC] = { "ee:c0", "ee:c1", "lt:c0", "lt:c1" };
static const int creator[NREC] = { 0, 0, 2, 2 };

struct edges {
	struct node nd[NN];
	struct link lk[NN * (NN - 1) / 2];
	int la[NN * (NN - 1) / 2], lb[NN * (NN - 1) / 2];
	int nl;
	int adj[NN][NN];
	struct sync_opts o;
	unsigned seed;
};

/* A local change; a refusal (no audience yet, erased) is not an error. */
static void
try_local(struct node *n, struct change *c, uint64_t now)
{
	struct store_outcome out;

	cr_assert_eq(store_apply(n->st, pol, c, 1, (struct nbx_str){ 0 },
	    NULL, now, 0, &out), 0, "%s", store_last_error(n->st));
}

static void
links_open(struct edges *e, uint64_t now)
{
	for (int i = 0; i < e->nl; i++)
		link_open(&e->lk[i], &e->nd[e->la[i]], &e->nd[e->lb[i]], &e->o,
		    now);
}

static void
links_close(struct edges *e)
{
	for (int i = 0; i < e->nl; i++)
		link_close(&e->lk[i]);
}

static void
settle(struct edges *e, uint64_t now)
{
	struct link *ls[NN * (NN - 1) / 2];

	for (int i = 0; i < e->nl; i++)
		ls[i] = &e->lk[i];
	run(ls, e->nl, now, 10000);
}

/* Loads record id of node n into r (initialised either way); 1 if held. */
static int
load(struct node *n, const char *id, struct crdt_record *r,
    struct store_rtxn **t)
{
	cr_assert_eq(store_rtxn_begin(n->st, t), 0);
	if (store_record_get(*t, nbx_str_c("t"), nbx_str_c(id), r) == 0)
		return 1;
	crdt_record_init(r, nbx_str_c("t"), nbx_str_c(id));
	return 0;
}

static void
unload(struct crdt_record *r, struct store_rtxn *t)
{
	crdt_record_fini(r);
	store_rtxn_end(t);
}

/* The creator's audience of record k as a bit set; 0 if erased/absent. */
static unsigned
final_audience(struct edges *e, int k, int *erased)
{
	struct store_rtxn *t;
	struct crdt_record r;
	unsigned m = 0;

	*erased = 0;
	if (load(&e->nd[creator[k]], recs[k], &r, &t)) {
		*erased = r.erased;
		for (int i = 0; i < NN; i++)
			if (nbx_audience_has(&r.aud, nbx_str_c(ids[i])))
				m |= 1u << i;
	}
	unload(&r, t);
	return m;
}

/* The nodes of `aud` connected to node c through nodes of `aud`. */
static unsigned
reach(struct edges *e, unsigned aud, int c)
{
	unsigned seen = 1u << c, grew = 1;

	if (!(aud & seen))
		return 0;
	while (grew) {
		grew = 0;
		for (int a = 0; a < NN; a++)
			for (int b = 0; b < NN; b++)
				if ((seen >> a & 1) && !(seen >> b & 1) &&
				    (aud >> b & 1) && e->adj[a][b]) {
					seen |= 1u << b;
					grew = 1;
				}
	}
	return seen;
}

/* No value of record k on node i that policy does not permit there. */
static void
check_policy(struct edges *e, int k, int i, unsigned aud, int erased)
{
	struct store_rtxn *t;
	struct crdt_record r;

	if (!load(&e->nd[i], recs[k], &r, &t)) {
		unload(&r, t);
		return;
	}
	for (size_t g = 0; g < r.nregs; g++) {
		const struct crdt_reg *x = &r.regs[g];

		if (!(x->flags & CRDT_REG_VALUE))
			continue;
		cr_assert(!erased, "seed %u: %s holds a value of erased %s",
		    e->seed, ids[i], recs[k]);
		if (nbx_str_eq(x->field, nbx_str_c("note"))) {
			cr_assert_eq(i, creator[k], "seed %u: %s holds %s's "
			    "local note", e->seed, ids[i], recs[k]);
			continue;
		}
		cr_assert(aud >> i & 1, "seed %u: %s holds %s.%.*s outside "
		    "the audience", e->seed, ids[i], recs[k], (int)x->field.n,
		    x->field.p);
		cr_assert(nbx_audience_has(&x->aud, nbx_str_c(ids[i])),
		    "seed %u: %s holds %s.%.*s outside its stamp", e->seed,
		    ids[i], recs[k], (int)x->field.n, x->field.p);
	}
	unload(&r, t);
}

/*
 * Erased record k: the eraser (its creator here) has a done receipt for
 * every node that holds the record, and none pending.
 */
static void
check_receipts(struct edges *e, int k)
{
	struct store_rtxn *t, *u;
	struct crdt_record r, x;

	cr_assert(load(&e->nd[creator[k]], recs[k], &r, &t));
	for (size_t i = 0; i < r.nrcpt; i++)
		if (nbx_str_eq(r.rcpt[i].what, nbx_str_c("erase")))
			cr_assert_eq(r.rcpt[i].state, RECEIPT_DONE, "seed %u: "
			    "%s: %.*s still pending on %s", e->seed, recs[k],
			    (int)r.rcpt[i].node.n, r.rcpt[i].node.p,
			    ids[creator[k]]);
	for (int n = 0; n < NN; n++) {
		const struct crdt_receipt *d;

		if (!load(&e->nd[n], recs[k], &x, &u)) {
			unload(&x, u);
			continue;
		}
		cr_assert(x.erased, "seed %u: %s not erased on %s", e->seed,
		    recs[k], ids[n]);
		d = crdt_record_receipt(&r, nbx_str_c("erase"),
		    nbx_str_c(ids[n]));
		cr_assert(d && d->state == RECEIPT_DONE, "seed %u: %s's "
		    "receipt for %s never reached %s", e->seed, ids[n],
		    recs[k], ids[creator[k]]);
		unload(&x, u);
	}
	unload(&r, t);
}

/*
 * Nodes a and b, both reached by record k: each audience value one holds,
 * the other holds too (same version, value and stamp) unless it is
 * outside the audience the value is stamped with.
 */
static void
same_values(struct edges *e, int k, int a, int b)
{
	struct store_rtxn *t, *u;
	struct crdt_record ra, rb;

	load(&e->nd[a], recs[k], &ra, &t);
	load(&e->nd[b], recs[k], &rb, &u);
	for (size_t g = 0; g < ra.nregs; g++) {
		const struct crdt_reg *x = &ra.regs[g], *y;

		if (!(x->flags & CRDT_REG_SCOPED) ||
		    !(x->flags & CRDT_REG_VALUE))
			continue;
		y = crdt_record_find(&rb, x->field, x->elem);
		if (y == NULL || !(y->flags & CRDT_REG_VALUE)) {
			/* b was removed after the value's audience: it
			   drops it for good (crdt.h) */
			if (crdt_ver_cmp((struct crdt_ver){ x->aud.hlc,
			    x->aud.origin }, rb.excl) <= 0)
				continue;
			cr_assert(!nbx_audience_has(&x->aud, nbx_str_c(ids[b])),
			    "seed %u: %s.%.*s on %s, not on %s", e->seed,
			    recs[k], (int)x->field.n, x->field.p, ids[a],
			    ids[b]);
			continue;
		}
		cr_assert(crdt_ver_cmp(x->ver, y->ver) == 0 &&
		    x->aud.hlc == y->aud.hlc && x->aud.n == y->aud.n &&
		    nbx_str_eq(x->val.s, y->val.s), "seed %u: %s.%.*s differs "
		    "on %s and %s", e->seed, recs[k], (int)x->field.n,
		    x->field.p, ids[a], ids[b]);
	}
	unload(&ra, t);
	unload(&rb, u);
}

static void
edges_run(unsigned seed)
{
	struct edges e;
	uint64_t rng = (uint64_t)seed * 2654435761u + 7, now = T0;
	int topo = (int)(seed % 3), wiped = 0, erasures = 0;
	int split[NN][NN];
	unsigned aud_now[NREC] = { 0 }, removed[NREC] = { 0 };
	char v[32];

	memset(&e, 0, sizeof(e));
	e.seed = seed;
	e.o.batch_bytes = 512;
	e.o.window = 2;
#define RND(n) ((unsigned)(test_xorshift(&rng) % (n)))
	for (int i = 0; i < NN; i++)
		node_open(&e.nd[i], ids[i]);
	/* line 0-1-2-3, star around 1, or a full mesh */
	for (int a = 0; a < NN; a++)
		for (int b = a + 1; b < NN; b++) {
			if (topo == 0 && b != a + 1)
				continue;
			if (topo == 1 && a != 1 && b != 1)
				continue;
			e.la[e.nl] = a;
			e.lb[e.nl++] = b;
			e.adj[a][b] = e.adj[b][a] = 1;
		}
	links_open(&e, now);
	for (int step = 0; step < 500; step++) {
		unsigned r = RND(100), k = RND(NREC), n = RND(NN);
		struct node *c = &e.nd[creator[k]];
		struct change ch;

		now++;
		if (r < 6) {
			/*
			 * The creator sets an audience that holds it and
			 * none it removed before.  (A node let back in after
			 * a removal drops for good what was sent under the
			 * audiences before it, while the others keep it:
			 * not converged, a known limit not generated here.)
			 */
			unsigned m = (RND(1u << NN) | 1u << creator[k]) &
			    ~removed[k];

			ch = test_change(CHANGE_AUDIENCE, recs[k], NULL);
			for (int i = 0; i < NN; i++)
				if (m >> i & 1)
					ch.aud.ids[ch.aud.n++] = nbx_str_c(ids[i]);
			try_local(c, &ch, now);
			if (aud_now[k] != 0)
				removed[k] |= aud_now[k] & ~m;
			aud_now[k] = m;
		} else if (r < 18) {
			snprintf(v, sizeof(v), "s%d", step);
			ch = test_str(recs[k], "secret", v);
			try_local(c, &ch, now);
			ch = test_str(recs[k], "note", v);
			try_local(c, &ch, now);
		} else if (r < 32) {
			static const char *const st[3] = { "a", "b", "c" };

			ch = test_str(recs[k], "status", st[RND(3)]);
			try_local(&e.nd[n], &ch, now);
		} else if (r < 33 && erasures < 2 && step > 100) {
			ch = test_change(CHANGE_ERASE, recs[k], NULL);
			try_local(c, &ch, now);
			erasures++;
		} else if (r < 34 && !wiped && step > 150) {
			/* everything it made has gone where it can; then it
			   loses its store and comes back empty */
			settle(&e, now);
			links_close(&e);
			node_rebuild(&e.nd[n]);
			links_open(&e, now);
			wiped = 1;
		} else {
			struct link *l = &e.lk[RND((unsigned)e.nl)];
			int j = (int)RND(2);

			cr_assert_eq(sync_session_pump(l->s[j], now), 0, "%s",
			    sync_session_error(l->s[j]));
			deliver(l, j, now);
		}
	}
#undef RND
	settle(&e, now);

	memset(split, 0, sizeof(split));
	for (int k = 0; k < NREC; k++) {
		int erased;
		unsigned aud = final_audience(&e, k, &erased);
		unsigned in = reach(&e, aud, creator[k]);

		for (int i = 0; i < NN; i++)
			check_policy(&e, k, i, aud, erased);
		if (erased) {
			check_receipts(&e, k);
			continue;
		}
		/*
		 * Members cut off from each other by relays outside: not
		 * only from the creator (in a star around a node outside,
		 * every member is alone, and each keeps what it wrote)
		 */
		for (int a = 0; a < NN; a++)
			for (int b = 0; b < NN; b++)
				if ((aud >> a & 1) && (aud >> b & 1) &&
				    !(reach(&e, aud, a) >> b & 1))
					split[a][b] = 1;
		for (int a = 0; a < NN; a++)
			for (int b = 0; b < NN; b++)
				if ((in >> a & 1) && (in >> b & 1))
					same_values(&e, k, a, b);
	}
	for (int a = 0; a < NN; a++)
		for (int b = a + 1; b < NN; b++) {
			uint8_t x[32], y[32];
			uint64_t nr, nc;

			if (split[a][b])
				continue;
			cr_assert_eq(store_pair_digest(e.nd[a].st, pol,
			    nbx_str_c(ids[b]), x, &nr, &nc), 0);
			cr_assert_eq(store_pair_digest(e.nd[b].st, pol,
			    nbx_str_c(ids[a]), y, &nr, &nc), 0);
			cr_assert_eq(memcmp(x, y, 32), 0, "seed %u: %s and %s "
			    "digests differ", seed, ids[a], ids[b]);
		}
	links_close(&e);
	for (int i = 0; i < NN; i++)
		node_close(&e.nd[i]);
}

Test(edges, relays_narrowing_erasures_and_a_wiped_node_property)
{
	const char *iters_env = getenv("NBX_PROP_ITERS");
	/*
	 * Fixed unless asked (STYLE.md).  Seeds past 1600 can still meet an
	 * open limit (769513472): a removed member's stale write wins where
	 * its old stamp goes, and a member outside that stamp keeps the
	 * older value it superseded.
	 */
	unsigned seed = getenv("NBX_SEED") ? test_seed() : 1000;
	int iters = iters_env ? atoi(iters_env) : getenv("NBX_SEED") ? 1 : 60;
	char err[256];

	policy_free(pol);
	cr_assert_eq(policy_load_string(EDGE_SCHEMA, "edges", &pol, err,
	    sizeof(err)), 0, "%s", err);
	fprintf(stderr, "property edges: seeds %u..%u, a line, star or full "
	    "mesh by seed %% 3 (replay one with NBX_SEED=<seed>)\n", seed,
	    seed + (unsigned)iters - 1);
	for (int i = 0; i < iters; i++)
		edges_run(seed + (unsigned)i);
}
