/*
 * store_test.c - the LMDB store: persistence across reopen, change log and
 * seq assignment, map growth, quarantine, local write rules.
 */
#include <criterion/criterion.h>
#include <lmdb.h>
#include <msgpack.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hlc.h"
#include "mpread.h"
#include "nbx_err.h"
#include "store.h"
#include "testlib.h"

#define NOW 1700000000000ull

static struct store *
open_store(const char *dir, const char *node, uint64_t map)
{
	struct store_opts o = { .node_id = node, .map_size = map };
	struct store *st = NULL;
	char err[256];
	int rc = store_open(dir, &o, &st, err, sizeof(err));

	cr_assert_eq(rc, 0, "store_open: %s", err);
	return st;
}

static const char *
get_name(struct store *st, const char *id)
{
	static char out[256];
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_reg *g;
	int rc;

	out[0] = 0;
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	rc = store_record_get(t, nbx_str_c("t"), nbx_str_c(id), &r);
	if (rc == 0 && (g = crdt_record_find(&r, nbx_str_c("name"),
	    (struct nbx_str){ "", 0 })) && (g->flags & CRDT_REG_VALUE))
		snprintf(out, sizeof(out), "%.*s", (int)g->val.s.n, g->val.s.p);
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return rc == 0 ? out : NULL;
}

Test(store, creates_private_directory_and_persists)
{
	char *dir = test_tmpdir(), sub[512];
	struct policy *pol = test_policy();
	struct store *st;
	struct change c = test_str("ee:1", "name", "Shelter Tallinn");
	struct store_outcome out;
	struct store_meta m1, m2;
	struct stat sb;

	snprintf(sub, sizeof(sub), "%s/data", dir);
	st = open_store(sub, "ee", 0);
	cr_assert_eq(stat(sub, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0700);
	cr_assert_eq(store_apply(st, pol, &c, 1, (struct nbx_str){ 0 }, NULL,
	    NOW, 0, &out), 0);
	cr_assert_eq(out.status, STORE_APPLIED);
	cr_assert_eq(out.seq, 1);
	cr_assert_eq(HLC_MS(out.hlc), NOW);
	cr_assert_eq(store_meta_get(st, &m1), 0);
	store_close(st);

	st = open_store(sub, "ee", 0);
	cr_assert_str_eq(get_name(st, "ee:1"), "Shelter Tallinn");
	cr_assert_eq(store_meta_get(st, &m2), 0);
	cr_assert_eq(m2.epoch, m1.epoch, "epoch survives reopen");
	cr_assert_neq(m2.epoch, 0);
	cr_assert_eq(m2.last_seq, 1);
	cr_assert_eq(m2.hlc, out.hlc, "the clock is persisted");
	cr_assert_eq(m2.records, 1);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

Test(store, refuses_another_nodes_store)
{
	char *dir = test_tmpdir(), err[256];
	struct store *st = open_store(dir, "ee", 0);
	struct store_opts o = { .node_id = "lv" };

	store_close(st);
	st = NULL;
	cr_assert_eq(store_open(dir, &o, &st, err, sizeof(err)), NBX_ECONFIG);
	cr_assert_null(st);
	cr_assert(strstr(err, "belongs to node 'ee'"), "got: %s", err);
	test_rmdir(dir);
}

Test(store, readonly_open_of_missing_store_fails_clearly)
{
	char *dir = test_tmpdir(), err[256];
	struct store_opts o = { .readonly = 1 };
	struct store *st = NULL;

	cr_assert_eq(store_open(dir, &o, &st, err, sizeof(err)), NBX_ENOTFOUND);
	cr_assert(strstr(err, dir), "message names the directory: %s", err);
	test_rmdir(dir);
}

Test(store, noop_merge_gets_no_seq_and_log_holds_latest)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct change c = test_str("lv:1", "name", "Riga helpline");
	struct store_outcome out[3];
	struct store_rtxn *t;
	struct nbx_str coll, id;
	uint64_t seq;

	c.hlc = HLC_MAKE(NOW, 1);
	c.origin = nbx_str_c("lv");
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL, NOW,
	    0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED);
	cr_assert_eq(out[0].seq, 1);
	/* the same change again, and an older one: no seq */
	{
		struct change older = c;

		older.hlc = HLC_MAKE(NOW - 5, 0);
		older.val.s = nbx_str_c("older");
		struct change b[2] = { c, older };
		cr_assert_eq(store_apply(st, pol, b, 2, nbx_str_c("lv"), NULL,
		    NOW, 0, out), 0);
	}
	cr_assert_eq(out[0].status, STORE_NOOP);
	cr_assert_eq(out[1].status, STORE_NOOP);
	cr_assert_eq(out[0].seq, 0);
	/* a local write to another record, then to the first one again */
	{
		struct change b[2] = { test_str("ee:9", "name", "x"),
		    test_str("ee:9", "count", "") };
		b[1].val.t = NBX_V_INT;
		b[1].val.i = 4;
		cr_assert_eq(store_apply(st, pol, b, 2, (struct nbx_str){ 0 },
		    NULL, NOW, 0, out), 0);
		cr_assert_eq(out[0].seq, 2);
		cr_assert_eq(out[1].seq, 3);
	}
	c.hlc = HLC_MAKE(NOW, 9);
	c.val.s = nbx_str_c("Riga helpline 24/7");
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL, NOW, 0,
	    out), 0);
	cr_assert_eq(out[0].seq, 4);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_log_next(t, 0, &seq, &coll, &id), 0);
	cr_assert_eq(seq, 3, "ee:9 sits at its latest seq");
	cr_assert_eq(store_log_next(t, seq, &seq, &coll, &id), 0);
	cr_assert_eq(seq, 4);
	cr_assert(nbx_str_eq(id, nbx_str_c("lv:1")));
	cr_assert_eq(store_log_next(t, seq, &seq, &coll, &id), NBX_ENOTFOUND);
	store_rtxn_end(t);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/* store_log_next(after) in a read transaction of its own: the reference. */
static int
log_next_alone(struct store *st, uint64_t after, uint64_t *seq)
{
	struct store_rtxn *t;
	struct nbx_str coll, id;
	int rc;

	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	rc = store_log_next(t, after, seq, &coll, &id);
	store_rtxn_end(t);
	return rc;
}

/*
 * One read transaction keeps a log cursor: a call with the seq it just
 * gave steps, any other searches.  Both must give what a fresh
 * transaction gives, in any order of calls, over a log with gaps.
 */
Test(store, log_next_in_one_transaction_equals_each_alone)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct store_outcome out;
	struct store_rtxn *t;
	struct nbx_str coll, id;
	uint64_t last = 0, want, got;
	/* jumps back, repeats, steps from a gap, runs off the end */
	uint64_t afters[] = { 0, 0, 3, 3, 1, 12, 5, 2, 0, 11, 20, 4 };
	char idb[16];

	for (int i = 0; i < 12; i++) {
		/* ee:0..ee:7, then ee:1, ee:3, ee:5, ee:6 again: gaps */
		int r = i < 8 ? i : (int[]){ 1, 3, 5, 6 }[i - 8];
		struct change c;

		snprintf(idb, sizeof(idb), "ee:%d", r);
		c = test_str(idb, "name", i < 8 ? "first" : "second");
		cr_assert_eq(store_apply(st, pol, &c, 1, (struct nbx_str){ 0 },
		    NULL, NOW + (uint64_t)i, 0, &out), 0);
		cr_assert_eq(out.status, STORE_APPLIED);
		last = out.seq;
	}
	cr_assert_eq(last, 12);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	/* a whole scan, each call from the seq the one before gave */
	for (uint64_t at = 0, n = 0;; n++) {
		int ra = log_next_alone(st, at, &want);
		int rb = store_log_next(t, at, &got, &coll, &id);

		cr_assert_eq(rb, ra, "scan step %llu", (unsigned long long)n);
		if (ra != 0)
			break;
		cr_assert_eq(got, want);
		at = got;
	}
	for (size_t i = 0; i < sizeof(afters) / sizeof(afters[0]); i++) {
		int ra = log_next_alone(st, afters[i], &want);
		int rb = store_log_next(t, afters[i], &got, &coll, &id);

		cr_assert_eq(rb, ra, "after %llu: %d, alone %d",
		    (unsigned long long)afters[i], rb, ra);
		if (ra == 0) {
			cr_assert_eq(got, want, "after %llu",
			    (unsigned long long)afters[i]);
			/* and a step from there */
			ra = log_next_alone(st, got, &want);
			rb = store_log_next(t, got, &got, &coll, &id);
			cr_assert_eq(rb, ra);
			if (ra == 0)
				cr_assert_eq(got, want);
		}
	}
	store_rtxn_end(t);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

Test(store, map_grows_from_tiny_initial_map)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 64 * 1024);
	static char ids[2000][32];
	static struct change b[2000];
	static struct store_outcome out[2000];
	struct store_meta m;
	char name[64];

	memset(name, 'x', 60);
	name[60] = 0;
	for (int i = 0; i < 2000; i++) {
		snprintf(ids[i], sizeof(ids[i]), "ee:rec-%05d", i);
		b[i] = test_str(ids[i], "name", name);
	}
	cr_assert_eq(store_apply(st, pol, b, 2000, (struct nbx_str){ 0 }, NULL,
	    NOW, 0, out), 0, "%s", store_last_error(st));
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_eq(m.records, 2000);
	cr_assert_gt(m.map_size, 64 * 1024, "map must have grown");
	cr_assert_eq(out[1999].seq, 2000, "nothing half-applied or repeated");
	store_close(st);
	st = open_store(dir, "ee", 64 * 1024);
	cr_assert_str_eq(get_name(st, "ee:rec-01999"), name);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

Test(store, rejected_remote_changes_go_to_quarantine_with_reason)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct change b[4];
	struct store_outcome out[4];
	struct store_cursor cur = { nbx_str_c("lv"), 77, 12 }, got;
	struct store_rtxn *t;
	struct store_qentry q;
	struct store_meta m;

	b[0] = test_str("lv:1", "name", "ok");
	b[1] = test_str("lv:1", "note", "a local field from a peer");
	b[2] = test_str("lv:1", "nosuch", "x");
	b[3] = test_str("lv:1", "name", "from the future");
	for (int i = 0; i < 4; i++) {
		b[i].origin = nbx_str_c("lv");
		b[i].hlc = HLC_MAKE(NOW, (uint64_t)i);
	}
	b[3].hlc = HLC_MAKE(NOW + 60000, 0);
	cr_assert_eq(store_apply(st, pol, b, 4, nbx_str_c("lv"), &cur, NOW, 0,
	    out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED);
	cr_assert_eq(out[1].status, STORE_REJECTED);
	cr_assert_eq(out[1].err, NBX_ELOCAL);
	cr_assert_eq(out[2].err, NBX_EFIELD);
	cr_assert_eq(out[3].err, NBX_EDRIFT);
	cr_assert_str_eq(get_name(st, "lv:1"), "ok");
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_lt(HLC_MS(m.hlc), NOW + 1, "drifted time must not move clock");
	cr_assert_eq(m.quarantined, 3);
	cr_assert_eq(store_cursor_get(st, nbx_str_c("lv"), &got), 0);
	cr_assert_eq(got.epoch, 77);
	cr_assert_eq(got.seq, 12, "cursor advances past rejected changes");
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_quarantine_next(t, 0, &q), 0);
	cr_assert_eq(q.err, NBX_ELOCAL);
	cr_assert(nbx_str_eq(q.peer, nbx_str_c("lv")));
	cr_assert(nbx_str_eq(q.field, nbx_str_c("note")));
	cr_assert_eq(q.time_ms, NOW);
	cr_assert_eq(store_quarantine_next(t, q.qseq, &q), 0);
	cr_assert_eq(q.err, NBX_EFIELD);
	cr_assert_eq(store_quarantine_next(t, q.qseq, &q), 0);
	cr_assert_eq(q.err, NBX_EDRIFT);
	cr_assert_eq(store_quarantine_next(t, q.qseq, &q), NBX_ENOTFOUND);
	store_rtxn_end(t);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

Test(store, atomic_batch_commits_nothing_on_rejection)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct change b[2] = { test_str("ee:1", "name", "fine"),
	    test_str("ee:1", "name", "this name is far too long for the schema "
	    "limit of sixty four bytes, so it is refused") };
	struct store_outcome out[2];
	struct store_meta m;

	cr_assert_eq(store_apply(st, pol, b, 2, (struct nbx_str){ 0 }, NULL,
	    NOW, STORE_ATOMIC, out), NBX_ELIMIT);
	cr_assert_null(get_name(st, "ee:1"));
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_eq(m.last_seq, 0);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

Test(store, local_write_rules)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "lv", 0);
	struct store_outcome out[3];
	struct change c;
	struct nbx_str none = { 0 };

	/* lv may not change a region field of ee's record (writers=origin) */
	c = test_str("ee:1", "name", "x");
	cr_assert_eq(store_apply(st, pol, &c, 1, none, NULL, NOW, 0, out), 0);
	cr_assert_eq(out[0].err, NBX_EWRITER);
	/* a scoped field needs an audience first */
	c = test_str("lv:1", "secret", "s");
	cr_assert_eq(store_apply(st, pol, &c, 1, none, NULL, NOW, 0, out), 0);
	cr_assert_eq(out[0].err, NBX_EAUDIENCE);
	{
		struct change b[2];

		b[0] = test_change(CHANGE_AUDIENCE, "lv:1", NULL);
		b[0].aud.n = 2;
		b[0].aud.ids[0] = nbx_str_c("lv");
		b[0].aud.ids[1] = nbx_str_c("ee");
		b[1] = test_str("lv:1", "secret", "s");
		cr_assert_eq(store_apply(st, pol, b, 2, none, NULL, NOW, 0,
		    out), 0);
		cr_assert_eq(out[0].status, STORE_APPLIED, "%s",
		    nbx_strerror(out[0].err));
		cr_assert_eq(out[1].status, STORE_APPLIED, "%s",
		    nbx_strerror(out[1].err));
	}
	/* erase, then nothing may be written to the id again */
	c = test_change(CHANGE_ERASE, "lv:1", NULL);
	cr_assert_eq(store_apply(st, pol, &c, 1, none, NULL, NOW, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED);
	c = test_str("lv:1", "name", "back?");
	cr_assert_eq(store_apply(st, pol, &c, 1, none, NULL, NOW, 0, out), 0);
	cr_assert_eq(out[0].err, NBX_EERASED);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/*
 * The creator narrowing a record's audience leaves a pending revocation
 * receipt for each node it removed, stamped with the new audience's
 * version, and none for a node it kept or added: the receipts are how
 * every holder of the record knows whom to tell (egress.c).
 */
Test(store, narrowing_leaves_a_pending_revocation_for_each_removed_node)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct store_outcome out[2];
	struct change b[2];
	struct nbx_str none = { 0 };
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_receipt *x;

	b[0] = test_change(CHANGE_AUDIENCE, "ee:1", NULL);
	b[0].aud.n = 3;
	b[0].aud.ids[0] = nbx_str_c("ee");
	b[0].aud.ids[1] = nbx_str_c("fi");
	b[0].aud.ids[2] = nbx_str_c("lv");
	b[1] = test_change(CHANGE_AUDIENCE, "ee:1", NULL);
	b[1].aud.n = 2;
	b[1].aud.ids[0] = nbx_str_c("ee");
	b[1].aud.ids[1] = nbx_str_c("lt");
	/* two batches: the old audience's ids come from the stored blob */
	cr_assert_eq(store_apply(st, pol, &b[0], 1, none, NULL, NOW, 0, out),
	    0);
	cr_assert_eq(store_apply(st, pol, &b[1], 1, none, NULL, NOW, 0, out),
	    0);
	cr_assert_eq(out[0].status, STORE_APPLIED);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_record_get(t, nbx_str_c("t"), nbx_str_c("ee:1"),
	    &r), 0);
	/* and ee's own, naming it a holder (apply.c note_holder) */
	cr_assert_eq(r.nrcpt, 3);
	x = crdt_record_receipt(&r, nbx_str_c("erase"), nbx_str_c("ee"));
	cr_assert(x != NULL && x->state == RECEIPT_PENDING);
	for (int i = 0; i < 2; i++) {
		x = crdt_record_receipt(&r, nbx_str_c("revoke"),
		    nbx_str_c(i ? "lv" : "fi"));
		cr_assert(x != NULL && x->state == RECEIPT_PENDING);
		cr_assert_eq(x->ver.hlc, out[0].hlc);
		cr_assert(nbx_str_eq(x->ver.origin, nbx_str_c("ee")));
	}
	crdt_record_fini(&r);
	store_rtxn_end(t);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/*
 * lv writes ee's case under the audience ee,lv before it learns that ee
 * removed it.  Every other member takes that write (it travels under the
 * audience it was written under), so the creator must too, or their
 * copies never agree.
 */
Test(store, creator_takes_a_write_made_under_its_older_audience)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct store_outcome out[1];
	struct change c;
	struct nbx_str none = { 0 };
	struct store_meta m;

	c = test_change(CHANGE_AUDIENCE, "ee:1", NULL);
	c.aud.n = 2;
	c.aud.ids[0] = nbx_str_c("ee");
	c.aud.ids[1] = nbx_str_c("lv");
	cr_assert_eq(store_apply(st, pol, &c, 1, none, NULL, NOW, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED);
	c.aud.hlc = out[0].hlc;
	c.aud.origin = nbx_str_c("ee");
	{
		struct change n = test_change(CHANGE_AUDIENCE, "ee:1", NULL);

		n.aud.n = 1;
		n.aud.ids[0] = nbx_str_c("ee");
		cr_assert_eq(store_apply(st, pol, &n, 1, none, NULL, NOW + 1,
		    0, out), 0);
		cr_assert_eq(out[0].status, STORE_APPLIED);
	}
	/* lv's write, stamped after the narrowing, under the old audience */
	c.kind = CHANGE_FIELD;
	c.field = nbx_str_c("status");
	c.val.t = NBX_V_STR;
	c.val.s = nbx_str_c("a");
	c.hlc = HLC_MAKE(NOW + 2, 0);
	c.origin = nbx_str_c("lv");
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 2, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED, "%s",
	    nbx_strerror(out[0].err));
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_eq(m.quarantined, 0);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/* Sets ee:1's audience on creator st to ids; returns its version's hlc. */
static uint64_t
set_audience(struct store *st, const struct policy *pol, uint64_t now,
    const char *const *ids, uint32_t n)
{
	struct change c = test_change(CHANGE_AUDIENCE, "ee:1", NULL);
	struct store_outcome out[1];

	c.aud.n = n;
	for (uint32_t i = 0; i < n; i++)
		c.aud.ids[i] = nbx_str_c(ids[i]);
	cr_assert_eq(store_apply(st, pol, &c, 1, (struct nbx_str){ 0 }, NULL,
	    now, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED);
	return out[0].hlc;
}

/*
 * fi writes ee's case under the audience ee,fi before it learns that ee
 * widened it to ee,fi,lt.  Had the write come first, ee's widening would
 * have re-stamped it for lt; coming after, it must be re-stamped all the
 * same, or lt (reached only through ee) never gets the winning value
 * that ee and fi hold, and the members disagree for good.  Narrowed to
 * ee,fi again, a write still stamped ee,fi,lt moves to the narrower
 * audience, so it names lt no more.
 */
Test(store, creator_restamps_a_write_made_under_its_older_audience)
{
	static const char *const two[] = { "ee", "fi" };
	static const char *const three[] = { "ee", "fi", "lt" };
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct store_outcome out[1];
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_reg *g;
	struct change c;
	uint64_t a1, a2, a3;

	a1 = set_audience(st, pol, NOW, two, 2);
	a2 = set_audience(st, pol, NOW + 1, three, 3);
	c = test_str("ee:1", "status", "a");
	c.hlc = HLC_MAKE(NOW + 2, 0);
	c.origin = nbx_str_c("fi");
	c.aud.hlc = a1;
	c.aud.origin = nbx_str_c("ee");
	c.aud.n = 2;
	c.aud.ids[0] = nbx_str_c("ee");
	c.aud.ids[1] = nbx_str_c("fi");
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("fi"), NULL,
	    NOW + 2, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED, "%s",
	    nbx_strerror(out[0].err));
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_record_get(t, nbx_str_c("t"), nbx_str_c("ee:1"),
	    &r), 0);
	g = crdt_record_find(&r, nbx_str_c("status"), (struct nbx_str){ 0 });
	cr_assert(g && (g->flags & CRDT_REG_VALUE));
	cr_assert_eq(g->ver.hlc, c.hlc, "still fi's write");
	cr_assert_eq(g->aud.hlc, a2, "stamped with the widened audience");
	cr_assert(nbx_audience_has(&g->aud, nbx_str_c("lt")));
	crdt_record_fini(&r);
	store_rtxn_end(t);

	/* narrowed; then fi's later write, stamped with the wider one */
	a3 = set_audience(st, pol, NOW + 3, two, 2);
	c.val.s = nbx_str_c("b");
	c.hlc = HLC_MAKE(NOW + 4, 0);
	c.aud.hlc = a2;
	c.aud.n = 3;
	c.aud.ids[2] = nbx_str_c("lt");
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("fi"), NULL,
	    NOW + 4, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED, "%s",
	    nbx_strerror(out[0].err));
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_record_get(t, nbx_str_c("t"), nbx_str_c("ee:1"),
	    &r), 0);
	g = crdt_record_find(&r, nbx_str_c("status"), (struct nbx_str){ 0 });
	cr_assert(g && (g->flags & CRDT_REG_VALUE));
	cr_assert_eq(g->ver.hlc, c.hlc);
	cr_assert_eq(g->aud.hlc, a3, "stamped with the narrowed audience");
	cr_assert_not(nbx_audience_has(&g->aud, nbx_str_c("lt")));
	crdt_record_fini(&r);
	store_rtxn_end(t);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/* The pair digest sees region fields and shared audience fields only. */
Test(store, pair_digest_covers_exactly_what_both_may_hold)
{
	char *d1 = test_tmpdir(), *d2 = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *a = open_store(d1, "ee", 0), *b = open_store(d2, "lv", 0);
	struct store_outcome out[4];
	uint8_t x[32], y[32];
	uint64_t nr, nc;
	struct change c[3];

	/* same region data on both, different local notes */
	c[0] = test_str("ee:1", "name", "same");
	c[1] = test_str("ee:1", "note", "local A");
	cr_assert_eq(store_apply(a, pol, c, 2, (struct nbx_str){ 0 }, NULL, NOW,
	    0, out), 0);
	c[1] = test_str("ee:1", "note", "local B, different");
	for (int i = 0; i < 2; i++) {	/* same versions: apply a's as remote */
		c[i].origin = nbx_str_c("ee");
		c[i].hlc = out[i].hlc;
	}
	cr_assert_eq(store_apply(b, pol, c, 1, nbx_str_c("ee"), NULL, NOW, 0,
	    out), 0);
	cr_assert_eq(store_pair_digest(a, pol, nbx_str_c("lv"), x, &nr, &nc), 0);
	cr_assert_eq(store_pair_digest(b, pol, nbx_str_c("ee"), y, &nr, &nc), 0);
	cr_assert_eq(memcmp(x, y, 32), 0, "local fields must not count");
	cr_assert_eq(nr, 1);
	/* a scoped field with an audience without lv: not for the ee-lv pair */
	c[0] = test_change(CHANGE_AUDIENCE, "ee:2", NULL);
	c[0].aud.n = 1;
	c[0].aud.ids[0] = nbx_str_c("ee");
	c[1] = test_str("ee:2", "secret", "only ee");
	cr_assert_eq(store_apply(a, pol, c, 2, (struct nbx_str){ 0 }, NULL, NOW,
	    0, out), 0);
	cr_assert_eq(store_pair_digest(a, pol, nbx_str_c("lv"), x, &nr, &nc), 0);
	cr_assert_eq(memcmp(x, y, 32), 0, "a record lv may not hold counted");
	/* a region value that differs is seen */
	c[0] = test_str("ee:1", "name", "changed");
	cr_assert_eq(store_apply(a, pol, c, 1, (struct nbx_str){ 0 }, NULL, NOW,
	    0, out), 0);
	cr_assert_eq(store_pair_digest(a, pol, nbx_str_c("lv"), x, &nr, &nc), 0);
	cr_assert_neq(memcmp(x, y, 32), 0, "a differing region field unseen");
	store_close(a);
	store_close(b);
	policy_free(pol);
	test_rmdir(d1);
	test_rmdir(d2);
}

/*
 * One pass for several peers gives each the digest it would get alone,
 * also where the peers differ (an audience with one and not the other),
 * and the store's generation moves with every commit that wrote a record,
 * and only then.
 */
Test(store, pair_digests_of_several_peers_equal_each_alone)
{
	char *d1 = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *a = open_store(d1, "ee", 0);
	struct store_outcome out[4];
	struct store_digest all[3];
	struct nbx_str peers[3] = { nbx_str_c("lv"), nbx_str_c("lt"),
	    nbx_str_c("fi") };
	uint64_t nr, nc, gen;
	uint8_t one[32];
	struct change c[3];

	c[0] = test_str("ee:1", "name", "region");
	cr_assert_eq(store_apply(a, pol, c, 1, (struct nbx_str){ 0 }, NULL, NOW,
	    0, out), 0);
	c[0] = test_change(CHANGE_AUDIENCE, "ee:2", NULL);
	c[0].aud.n = 2;
	c[0].aud.ids[0] = nbx_str_c("ee");
	c[0].aud.ids[1] = nbx_str_c("lt");
	c[1] = test_str("ee:2", "secret", "ee and lt");
	gen = store_generation(a);
	cr_assert_eq(store_apply(a, pol, c, 2, (struct nbx_str){ 0 }, NULL, NOW,
	    0, out), 0);
	cr_assert_neq(store_generation(a), gen, "a commit must move it");
	gen = store_generation(a);
	c[0] = test_str("ee:1", "name", "region");	/* as it is: no-op */
	cr_assert_eq(store_apply(a, pol, c, 1, (struct nbx_str){ 0 }, NULL, NOW,
	    0, out), 0);
	cr_assert_eq(out[0].status, STORE_NOOP);
	cr_assert_eq(store_disclose(a, nbx_str_c("lv"), c, 1, NOW), 0);
	cr_assert_eq(store_generation(a), gen,
	    "no record written (a no-op, an audit entry): it stays");
	cr_assert_eq(store_pair_digests(a, pol, peers, 3, all), 0);
	cr_assert_eq(store_generation(a), gen, "reading must not move it");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(store_pair_digest(a, pol, peers[i], one, &nr, &nc),
		    0);
		cr_assert_eq(memcmp(one, all[i].digest, 32), 0, "peer %d", i);
		cr_assert_eq(all[i].records, nr);
		cr_assert_eq(all[i].changes, nc);
	}
	cr_assert_eq(all[0].records, 1, "lv: the region record only");
	cr_assert_eq(all[1].records, 2, "lt: also the one it shares");
	cr_assert_eq(all[1].changes, all[0].changes + 2,
	    "lt: the shared record's audience and field");
	cr_assert_eq(memcmp(all[0].digest, all[2].digest, 32), 0,
	    "lv and fi see the same");
	cr_assert_neq(memcmp(all[0].digest, all[1].digest, 32), 0);
	store_close(a);
	policy_free(pol);
	test_rmdir(d1);
}

/*
 * Property: the digests of many peers in one pass (the peers share a
 * hash context while their bytes agree, verify.c) equal each peer's
 * digest alone, with records and changes counted alike.  Seeded: records
 * of region fields and set elements, some with an audience of this node
 * and up to 15 of 50 peers and audience fields, some with an audience
 * without this node; 20 more peers in no audience (70: more than one word
 * of pair bits, and peers that must agree); the audience
 * records interleave with plain ones, so groups split and split again.
 */
Test(store, pair_digests_grouped_equal_alone_property)
{
	enum { NPEERS = 70, INAUD = 50, NREC = 80 };	/* p50-p69: none */
	unsigned seed = test_seed();
	uint64_t rng = (uint64_t)seed * 2654435761u + 1;
	char *d1 = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *a = open_store(d1, "ee", 0);
	char ids[NPEERS][8], rid[NREC][16], val[NREC][24], el[NREC][3][8];
	struct nbx_str peers[NPEERS];
	struct store_digest all[NPEERS];
	struct store_outcome out[8];
	struct change c[8];
	int differ = 0, agree = 0;

	fprintf(stderr, "property pair_digests_grouped: seed=%u "
	    "(replay with NBX_SEED=%u)\n", seed, seed);
	for (int i = 0; i < NPEERS; i++) {
		snprintf(ids[i], sizeof(ids[i]), "p%02d", i);
		peers[i] = nbx_str_c(ids[i]);
	}
	for (int r = 0; r < NREC; r++) {
		size_t n = 0;
		unsigned kind = (unsigned)(test_xorshift(&rng) % 3);

		snprintf(rid[r], sizeof(rid[r]), "ee:%d", r);
		snprintf(val[r], sizeof(val[r]), "v%llu",
		    (unsigned long long)(test_xorshift(&rng) % 1000));
		if (kind != 0) {	/* an audience: 1 (with ee) or 2 (without) */
			c[n] = test_change(CHANGE_AUDIENCE, rid[r], NULL);
			if (kind == 1)
				c[n].aud.ids[c[n].aud.n++] = nbx_str_c("ee");
			for (unsigned k = test_xorshift(&rng) % 16; k > 0; k--)
				c[n].aud.ids[c[n].aud.n++] =
				    peers[test_xorshift(&rng) % INAUD];
			if (c[n].aud.n == 0)
				c[n].aud.ids[c[n].aud.n++] = peers[0];
			n++;
			/* with or without an audience field: the audience
			   alone then tells its members from the rest */
			if (kind == 1 && test_xorshift(&rng) % 2)
				c[n++] = test_str(rid[r], "secret", val[r]);
		}
		c[n++] = test_str(rid[r], "name", val[r]);
		for (int k = 0; k < 3; k++)
			if (test_xorshift(&rng) % 2) {
				snprintf(el[r][k], sizeof(el[r][k]), "e%d", k);
				c[n] = test_change(CHANGE_ELEM, rid[r], "tags");
				c[n].elem = nbx_str_c(el[r][k]);
				c[n].val.t = NBX_V_BOOL;
				c[n++].val.i = 1;
			}
		cr_assert_eq(store_apply(a, pol, c, n, (struct nbx_str){ 0 },
		    NULL, NOW + (uint64_t)r, 0, out), 0, "seed %u record %d: %s",
		    seed, r, store_last_error(a));
	}
	cr_assert_eq(store_pair_digests(a, pol, peers, NPEERS, all), 0);
	for (int i = 0; i < NPEERS; i++) {
		uint8_t one[32];
		uint64_t nr, nc;

		cr_assert_eq(store_pair_digest(a, pol, peers[i], one, &nr, &nc),
		    0);
		cr_assert_eq(memcmp(one, all[i].digest, 32), 0,
		    "seed %u: peer %s's digest differs from its own alone",
		    seed, ids[i]);
		cr_assert_eq(all[i].records, nr, "seed %u peer %s", seed, ids[i]);
		cr_assert_eq(all[i].changes, nc, "seed %u peer %s", seed, ids[i]);
		/* against the last peer, in no audience */
		if (memcmp(all[i].digest, all[NPEERS - 1].digest, 32) != 0)
			differ++;
		else if (i >= INAUD && i < NPEERS - 1)
			agree++;
	}
	cr_assert_gt(differ, 0, "seed %u: no two peers told apart", seed);
	cr_assert_eq(agree, NPEERS - INAUD - 1,
	    "seed %u: peers in no audience must agree", seed);
	store_close(a);
	policy_free(pol);
	test_rmdir(d1);
}

/* A change refused for clock drift alone is applied once time catches up. */
Test(store, drifted_change_is_deferred_not_lost)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct change b[2];
	struct store_outcome out[2];
	size_t applied;

	b[0] = test_str("lv:1", "name", "ten seconds ahead");
	b[0].origin = nbx_str_c("lv");
	b[0].hlc = HLC_MAKE(NOW + 10000, 0);
	b[1] = test_str("lv:2", "name", "a year ahead");
	b[1].origin = nbx_str_c("lv");
	b[1].hlc = HLC_MAKE(NOW + 365ull * 86400000, 0);
	cr_assert_eq(store_apply(st, pol, b, 2, nbx_str_c("lv"), NULL, NOW, 0,
	    out), 0);
	cr_assert_eq(out[0].err, NBX_EDRIFT);
	cr_assert_eq(out[1].err, NBX_EDRIFT);
	cr_assert_null(get_name(st, "lv:1"));
	/* not yet: nothing applied */
	cr_assert_eq(store_retry_deferred(st, pol, NOW + 1000, &applied), 0);
	cr_assert_eq(applied, 0);
	cr_assert_null(get_name(st, "lv:1"));
	/* our clock has caught up */
	cr_assert_eq(store_retry_deferred(st, pol, NOW + 10000, &applied), 0);
	cr_assert_eq(applied, 1);
	cr_assert_str_eq(get_name(st, "lv:1"), "ten seconds ahead");
	/* the far-future one was never kept; a second pass finds nothing */
	cr_assert_eq(store_retry_deferred(st, pol, NOW + 20000, &applied), 0);
	cr_assert_eq(applied, 0);
	cr_assert_null(get_name(st, "lv:2"));
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/*
 * The store's LMDB environment opened by hand, as another program would,
 * with a transaction begun (read-only when flags has MDB_RDONLY).
 */
static MDB_txn *
raw_begin(const char *dir, unsigned flags, MDB_env **env)
{
	MDB_txn *txn;

	cr_assert_eq(mdb_env_create(env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(*env, 16), 0);
	cr_assert_eq(mdb_env_open(*env, dir, flags, 0600), 0);
	cr_assert_eq(mdb_txn_begin(*env, NULL, flags & MDB_RDONLY, &txn), 0);
	return txn;
}

/*
 * Rewrites a store of the current format into format 1 by hand (values
 * without their seq, a "logidx" from record key to seq, format 1), as an
 * older nbx left it.
 */
static void
make_format1(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi rec, idx, meta;
	MDB_cursor *cu;
	MDB_val k, d, fk = { 6, "format" }, fv;
	uint8_t one[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
	int op = MDB_FIRST;

	txn = raw_begin(dir, 0, &env);
	cr_assert_eq(mdb_dbi_open(txn, "records", 0, &rec), 0);
	cr_assert_eq(mdb_dbi_open(txn, "logidx", 0, &idx), 0);
	cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	cr_assert_eq(mdb_cursor_open(txn, rec, &cu), 0);
	while (mdb_cursor_get(cu, &k, &d, op) == 0) {
		/* copies: pointers into the map die at the next write */
		uint8_t kb[256], v[4096], s8[8];
		MDB_val kc = { k.mv_size, kb }, nv = { d.mv_size - 8, v },
		    sv = { 8, s8 };

		op = MDB_NEXT;
		cr_assert_leq(k.mv_size, sizeof(kb));
		cr_assert_leq(d.mv_size, sizeof(v));
		memcpy(kb, k.mv_data, k.mv_size);
		memcpy(s8, d.mv_data, 8);
		memcpy(v, (uint8_t *)d.mv_data + 8, d.mv_size - 8);
		cr_assert_eq(mdb_cursor_put(cu, &kc, &nv, MDB_CURRENT), 0);
		cr_assert_eq(mdb_put(txn, idx, &kc, &sv, 0), 0);
	}
	mdb_cursor_close(cu);
	fv.mv_size = 8;
	fv.mv_data = one;
	cr_assert_eq(mdb_put(txn, meta, &fk, &fv, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* The log's seqs in order, into seqs; returns how many. */
static size_t
log_seqs(struct store *st, uint64_t *seqs, size_t max)
{
	struct store_rtxn *t;
	struct nbx_str coll, id;
	uint64_t seq = 0;
	size_t n = 0;

	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	while (n < max && store_log_next(t, seq, &seq, &coll, &id) == 0)
		seqs[n++] = seq;
	store_rtxn_end(t);
	return n;
}

Test(store, a_format_1_store_is_read_and_upgraded)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store_opts ro = { .readonly = 1 };
	struct store *st = open_store(dir, "ee", 0);
	struct change c[3] = { test_str("ee:1", "name", "one"),
	    test_str("ee:2", "name", "two"), test_str("ee:3", "name", "three") };
	struct store_outcome out[3];
	uint8_t before[32], after[32];
	uint64_t seqs[8];
	struct store_meta m;
	char err[256];

	cr_assert_eq(store_apply(st, pol, c, 3, (struct nbx_str){ 0 }, NULL,
	    NOW, 0, out), 0);
	/* and enough more that rewriting the values splits pages */
	for (int i = 0; i < 3000; i++) {
		char id[32], name[64];
		struct change x;

		snprintf(id, sizeof(id), "ee:more-%d", i);
		snprintf(name, sizeof(name), "a longer name for record %d", i);
		x = test_str(id, "name", name);
		cr_assert_eq(store_apply(st, pol, &x, 1, (struct nbx_str){ 0 },
		    NULL, NOW, 0, out), 0);
	}
	cr_assert_eq(store_records_digest(st, before), 0);
	store_close(st);
	make_format1(dir);

	/* nbxq's read-only open reads the old layout as it is */
	cr_assert_eq(store_open(dir, &ro, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(get_name(st, "ee:2"), "two");
	cr_assert_eq(store_records_digest(st, after), 0);
	cr_assert_eq(memcmp(before, after, 32), 0);
	store_close(st);

	/* nbxd upgrades it: same records, same log */
	st = open_store(dir, "ee", 0);
	cr_assert_str_eq(get_name(st, "ee:1"), "one");
	cr_assert_eq(store_records_digest(st, after), 0);
	cr_assert_eq(memcmp(before, after, 32), 0);
	cr_assert_eq(log_seqs(st, seqs, 8), 8);
	cr_assert_eq(seqs[0], 1);
	cr_assert_eq(seqs[2], 3);
	cr_assert_eq(seqs[7], 8);
	/* an update moves the record's log entry, leaving no stale one */
	c[0].val.s = nbx_str_c("one again");
	cr_assert_eq(store_apply(st, pol, c, 1, (struct nbx_str){ 0 }, NULL,
	    NOW + 1, 0, out), 0);
	cr_assert_eq(log_seqs(st, seqs, 8), 8);
	cr_assert_eq(seqs[0], 2, "ee:1 left seq 1");
	cr_assert_eq(seqs[1], 3);

	/* ee:1 now sits last in the log, at the newest seq */
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_eq(m.records, 3003);
	{
		struct store_rtxn *t;
		struct nbx_str coll, id;
		uint64_t seq;

		cr_assert_eq(store_rtxn_begin(st, &t), 0);
		cr_assert_eq(store_log_next(t, m.last_seq - 1, &seq, &coll,
		    &id), 0);
		cr_assert_eq(seq, m.last_seq);
		cr_assert(nbx_str_eq(id, nbx_str_c("ee:1")));
		store_rtxn_end(t);
	}
	store_close(st);

	/* and it stays upgraded */
	st = open_store(dir, "ee", 0);
	cr_assert_str_eq(get_name(st, "ee:1"), "one again");
	cr_assert_str_eq(get_name(st, "ee:more-2999"),
	    "a longer name for record 2999");
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* The disclosure log fed one change at a time                         */
/* ------------------------------------------------------------------ */

/* A source over an array that fails with `fail_rc` at change fail_at. */
struct test_src {
	const struct change *chs;
	size_t n, next, fail_at;
	int fail_rc;
	int rewinds;
};

static int
test_src_next(void *arg, struct change *c)
{
	struct test_src *s = arg;

	if (s->fail_rc != 0 && s->next == s->fail_at)
		return s->fail_rc;
	if (s->next == s->n)
		return 0;
	*c = s->chs[s->next++];
	return 1;
}

static void
test_src_rewind(void *arg)
{
	struct test_src *s = arg;

	s->next = 0;
	s->rewinds++;
}

/* What audit_entries keeps of the last entry (the read txn is over). */
struct last_entry {
	char id[64], field1[32];
	uint32_t nitems;
	uint64_t hlc2, time_ms;
};

/* Entries in the audit log, each checked to be for peer lv. */
static size_t
audit_entries(struct store *st, struct last_entry *last)
{
	struct store_audit_entry e;
	struct store_rtxn *t;
	uint64_t after = 0;
	size_t n = 0;

	memset(last, 0, sizeof(*last));
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	while (store_audit_next(t, after, &e) == 0) {
		cr_assert(nbx_str_eq(e.peer, nbx_str_c("lv")));
		snprintf(last->id, sizeof(last->id), "%.*s", (int)e.id.n,
		    e.id.p);
		snprintf(last->field1, sizeof(last->field1), "%.*s",
		    e.nitems > 1 ? (int)e.items[1].field.n : 0,
		    e.nitems > 1 ? e.items[1].field.p : "");
		last->nitems = e.nitems;
		last->hlc2 = e.nitems > 2 ? e.items[2].hlc : 0;
		last->time_ms = e.time_ms;
		after = e.aseq;
		n++;
	}
	store_rtxn_end(t);
	return n;
}

Test(store, disclosure_from_a_source_groups_records_across_a_retry)
{
	char *dir = test_tmpdir();
	struct store *st = open_store(dir, "ee", 64 * 1024);
	static char ids[1000][32];
	static struct change c[3000];
	struct test_src s = { c, 3000, 0, 0, 0, 0 };
	struct store_change_src src = { test_src_next, test_src_rewind, &s };
	struct last_entry e;
	struct store_meta m;
	struct store_rtxn *t;

	for (int i = 0; i < 1000; i++) {
		snprintf(ids[i], sizeof(ids[i]), "ee:rec-%05d", i);
		c[3 * i] = test_str(ids[i], "name", "n");
		c[3 * i + 1] = test_str(ids[i], "note", "private");
		c[3 * i + 2] = test_change(CHANGE_STATE, ids[i], NULL);
		c[3 * i + 2].hlc = (uint64_t)i + 1;
	}
	cr_assert_eq(store_disclose_from(st, nbx_str_c("lv"), &src, NOW), 0,
	    "%s", store_last_error(st));
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_gt(m.map_size, 64 * 1024, "the map grew: the txn was retried");
	cr_assert_geq(s.rewinds, 2, "a retry starts the source again");
	/* one entry per record, in order, nothing twice after the retry */
	cr_assert_eq(audit_entries(st, &e), 1000);
	cr_assert_str_eq(e.id, "ee:rec-00999");
	cr_assert_eq(e.nitems, 3);
	cr_assert_str_eq(e.field1, "note");
	cr_assert_eq(e.hlc2, 1000);
	cr_assert_eq(e.time_ms, NOW);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_disclosed(t, nbx_str_c("t"), nbx_str_c("ee:rec-00000"),
	    nbx_str_c("lv")), 1);
	cr_assert_eq(store_disclosed(t, nbx_str_c("t"), nbx_str_c("ee:rec-00000"),
	    nbx_str_c("lt")), 0);
	store_rtxn_end(t);
	store_close(st);
	test_rmdir(dir);
}

Test(store, disclosure_aborted_by_its_source_writes_nothing)
{
	char *dir = test_tmpdir();
	struct store *st = open_store(dir, "ee", 0);
	struct change c[5] = {
		test_str("ee:1", "name", "a"), test_str("ee:1", "tags", "x"),
		test_str("ee:2", "name", "b"), test_str("ee:3", "name", "c"),
		test_str("ee:3", "note", "private"),
	};
	/* a source that says the fifth change may not leave (NBX_EPERM) */
	struct test_src s = { c, 5, 0, 4, NBX_EPERM, 0 };
	struct store_change_src src = { test_src_next, test_src_rewind, &s };
	struct last_entry e;
	struct store_rtxn *t;

	cr_assert_eq(store_disclose_from(st, nbx_str_c("lv"), &src, NOW),
	    NBX_EPERM);
	cr_assert_eq(audit_entries(st, &e), 0, "no entry of the batch stays");
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_disclosed(t, nbx_str_c("t"), nbx_str_c("ee:1"),
	    nbx_str_c("lv")), 0);
	store_rtxn_end(t);

	/* the same changes in full: three records, the first with two */
	s.fail_rc = 0;
	cr_assert_eq(store_disclose_from(st, nbx_str_c("lv"), &src, NOW), 0);
	cr_assert_eq(audit_entries(st, &e), 3);
	cr_assert_str_eq(e.id, "ee:3");
	cr_assert_eq(e.nitems, 2);
	store_close(st);
	test_rmdir(dir);
}

Test(store, disclosure_of_a_record_with_many_changes)
{
	char *dir = test_tmpdir();
	struct store *st = open_store(dir, "ee", 0);
	static char elems[100][8];
	static struct change c[101];
	struct test_src s = { c, 101, 0, 0, 0, 0 };
	struct store_change_src src = { test_src_next, test_src_rewind, &s };
	struct store_audit_entry e;
	struct last_entry last;

	for (int i = 0; i < 100; i++) {
		snprintf(elems[i], sizeof(elems[i]), "e%d", i);
		c[i] = test_change(CHANGE_ELEM, "ee:big", "tags");
		c[i].elem = nbx_str_c(elems[i]);
	}
	c[100] = test_str("ee:next", "name", "n");
	cr_assert_eq(store_disclose_from(st, nbx_str_c("lv"), &src, NOW), 0);
	cr_assert_eq(audit_entries(st, &last), 2);
	cr_assert_str_eq(last.id, "ee:next");
	{
		struct store_rtxn *t;

		cr_assert_eq(store_rtxn_begin(st, &t), 0);
		cr_assert_eq(store_audit_next(t, 0, &e), 0);
		cr_assert(nbx_str_eq(e.id, nbx_str_c("ee:big")));
		cr_assert_eq(e.nitems + e.more, 100, "all 100 in one entry");
		cr_assert(nbx_str_eq(e.items[63].elem, nbx_str_c("e63")));
		store_rtxn_end(t);
	}
	store_close(st);
	test_rmdir(dir);
}

/*
 * Audit items come back exactly as disclosed, whichever shape each was
 * stored in: the compact one (empty elem, the entry's origin, at or after
 * its oldest hlc) or the full one (an elem, another origin).
 */
Test(store, disclosure_items_read_back_as_disclosed)
{
	char *dir = test_tmpdir();
	struct store *st = open_store(dir, "ee", 0);
	struct change c[7];
	struct store_audit_entry e;
	struct store_rtxn *t;
	const uint64_t h = HLC_MAKE(NOW, 7);

	c[0] = test_str("ee:1", "name", "x");
	c[0].hlc = h + 3;		/* not the oldest: base is c[2]'s */
	c[1] = test_str("ee:1", "city", "y");
	c[1].hlc = h + 300000;		/* far later, one clock tick of ms */
	c[2] = test_change(CHANGE_STATE, "ee:1", NULL);
	c[2].hlc = h;
	c[3] = test_change(CHANGE_ELEM, "ee:1", "tags");
	c[3].elem = nbx_str_c("shelter");
	c[3].hlc = h + 1;		/* an elem: full */
	c[4] = test_str("ee:1", "phone", "z");
	c[4].origin = nbx_str_c("lv");	/* another origin: full */
	c[4].hlc = h - 5;
	c[5] = test_str("ee:1", "kind", "k");
	c[5].hlc = h + 2;
	c[6] = test_change(CHANGE_AUDIENCE, "ee:1", NULL);
	c[6].hlc = UINT64_MAX - 1;	/* the largest delta */
	for (int i = 0; i < 7; i++)
		if (c[i].origin.n == 0)
			c[i].origin = nbx_str_c("ee");
	cr_assert_eq(store_disclose(st, nbx_str_c("lv"), c, 7, NOW), 0);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_audit_next(t, 0, &e), 0);
	cr_assert(nbx_str_eq(e.id, nbx_str_c("ee:1")));
	cr_assert_eq(e.nitems, 7);
	for (int i = 0; i < 7; i++) {
		cr_assert_eq(e.items[i].kind, (uint32_t)c[i].kind, "item %d",
		    i);
		cr_assert(nbx_str_eq(e.items[i].field, c[i].field), "item %d",
		    i);
		cr_assert(nbx_str_eq(e.items[i].elem, c[i].elem), "item %d", i);
		cr_assert_not_null(e.items[i].elem.p, "item %d", i);
		cr_assert_eq(e.items[i].hlc, c[i].hlc, "item %d", i);
		cr_assert(nbx_str_eq(e.items[i].origin, c[i].origin),
		    "item %d", i);
	}
	cr_assert_eq(store_audit_next(t, e.aseq, &e), NBX_ENOTFOUND);
	store_rtxn_end(t);
	store_close(st);
	{
		/* as stored: one batch entry [time, peer, names, records];
		   the record [coll, id, base, base origin, items], its items
		   compact but for the elem and lv's, names each once */
		static const uint32_t arity[7] = { 3, 3, 3, 5, 5, 3, 3 };
		MDB_env *env;
		MDB_txn *txn;
		MDB_dbi audit;
		MDB_cursor *cu;
		MDB_val k, d;
		msgpack_unpacked u;
		const msgpack_object *names, *rec, *items;

		txn = raw_begin(dir, MDB_RDONLY, &env);
		cr_assert_eq(mdb_dbi_open(txn, "audit", 0, &audit), 0);
		cr_assert_eq(mdb_cursor_open(txn, audit, &cu), 0);
		cr_assert_eq(mdb_cursor_get(cu, &k, &d, MDB_FIRST), 0);
		msgpack_unpacked_init(&u);
		cr_assert_eq(msgpack_unpack_next(&u, d.mv_data, d.mv_size,
		    NULL), MSGPACK_UNPACK_SUCCESS);
		cr_assert_eq(u.data.via.array.size, 4);
		names = &u.data.via.array.ptr[2];
		/* t; name, city, "" (state, audience), tags, phone, kind; ee, lv */
		cr_assert_eq(names->via.array.size, 9);
		for (uint32_t i = 0; i < names->via.array.size; i++)
			for (uint32_t j = 0; j < i; j++)
				cr_assert_neq(nbx_str_cmp((struct nbx_str){
				    names->via.array.ptr[i].via.str.ptr,
				    names->via.array.ptr[i].via.str.size },
				    (struct nbx_str){
				    names->via.array.ptr[j].via.str.ptr,
				    names->via.array.ptr[j].via.str.size }), 0,
				    "names %u and %u", i, j);
		cr_assert_eq(u.data.via.array.ptr[3].via.array.size, 1);
		rec = &u.data.via.array.ptr[3].via.array.ptr[0];
		cr_assert_eq(rec->via.array.size, 5);
		cr_assert_eq(rec->via.array.ptr[2].via.u64, h, "the oldest");
		items = &rec->via.array.ptr[4];
		for (int i = 0; i < 7; i++)
			cr_assert_eq(items->via.array.ptr[i].via.array.size,
			    arity[i], "item %d", i);
		msgpack_unpacked_destroy(&u);
		mdb_cursor_close(cu);
		mdb_txn_abort(txn);
		mdb_env_close(env);
	}
	test_rmdir(dir);
}

/* The store's format number as nbx reads it, or as it sets it. */
static uint64_t
raw_format(const char *dir, const uint64_t *set)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
	uint8_t fb[8];
	MDB_val fk = { 6, "format" }, fv = { 8, fb };
	uint64_t f = 0;

	txn = raw_begin(dir, set ? 0 : MDB_RDONLY, &env);
	cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	if (set) {
		for (int i = 0; i < 8; i++)
			fb[i] = (uint8_t)(*set >> (56 - 8 * i));
		cr_assert_eq(mdb_put(txn, meta, &fk, &fv, 0), 0);
		cr_assert_eq(mdb_txn_commit(txn), 0);
		f = *set;
	} else {
		cr_assert_eq(mdb_get(txn, meta, &fk, &fv), 0);
		cr_assert_eq(fv.mv_size, 8);
		for (int i = 0; i < 8; i++)
			f = f << 8 | ((uint8_t *)fv.mv_data)[i];
		mdb_txn_abort(txn);
	}
	mdb_env_close(env);
	return f;
}

/* Puts one raw audit entry (msgpack bytes) at aseq, and the format. */
static void
put_raw_audit(const char *dir, uint64_t aseq, const uint8_t *v, size_t n,
    uint64_t format)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi audit;
	uint8_t kb[8];
	MDB_val k = { 8, kb }, d = { n, (void *)v };

	for (int i = 0; i < 8; i++)
		kb[i] = (uint8_t)(aseq >> (56 - 8 * i));
	txn = raw_begin(dir, 0, &env);
	cr_assert_eq(mdb_dbi_open(txn, "audit", 0, &audit), 0);
	cr_assert_eq(mdb_put(txn, audit, &k, &d, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	raw_format(dir, &format);
}

/* Puts one raw value (msgpack bytes) under key in database db. */
static void
put_raw(const char *dir, const char *db, const void *key, size_t klen,
    const uint8_t *v, size_t n)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { klen, (void *)key }, d = { n, (void *)v };

	txn = raw_begin(dir, 0, &env);
	cr_assert_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
	cr_assert_eq(mdb_put(txn, dbi, &k, &d, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* A copy of the value under key in database db (*n its size). */
static uint8_t *
raw_copy(const char *dir, const char *db, const void *key, size_t klen,
    size_t *n)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { klen, (void *)key }, d;
	uint8_t *v;

	txn = raw_begin(dir, MDB_RDONLY, &env);
	cr_assert_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
	cr_assert_eq(mdb_get(txn, dbi, &k, &d), 0);
	cr_assert_not_null(v = malloc(d.mv_size));
	memcpy(v, d.mv_data, d.mv_size);
	*n = d.mv_size;
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return v;
}

/* What store_audit_next says of the first record of the store in dir. */
static int
first_audit_rc(const char *dir)
{
	struct store *st = open_store(dir, "ee", 0);
	struct store_audit_entry e;
	struct store_rtxn *t;
	int rc;

	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	rc = store_audit_next(t, 0, &e);
	store_rtxn_end(t);
	store_close(st);
	return rc;
}

/*
 * A damaged value that declares an array of 3.7G elements in a few bytes
 * is refused by every reader of the store's msgpack values, before
 * msgpack-c could reserve memory for that count (under ASan the unpacker
 * aborted on it: audit_fuzz's regress-huge-array-count).
 */
Test(store, damaged_values_declaring_huge_counts_are_refused)
{
	char *dir = test_tmpdir();
	struct store *st = open_store(dir, "ee", 0);
	struct policy *pol = test_policy();
	static const uint8_t huge[] = { 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0x01 };
	static const uint8_t one[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
	struct store_audit_entry e;
	struct store_qentry q;
	struct store_peer p;
	struct store_rtxn *t;
	size_t applied = 9;

	store_close(st);
	put_raw(dir, "audit", one, 8, huge, sizeof(huge));
	put_raw(dir, "quarantine", one, 8, huge, sizeof(huge));
	put_raw(dir, "deferred", one, 8, huge, sizeof(huge));
	put_raw(dir, "peers", "lt", 2, huge, sizeof(huge));
	st = open_store(dir, "ee", 0);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_audit_next(t, 0, &e), NBX_EMALFORMED);
	cr_assert_eq(store_quarantine_next(t, 0, &q), NBX_EMALFORMED);
	cr_assert_eq(store_peer_next(t, (struct nbx_str){ "", 0 }, &p),
	    NBX_EMALFORMED);
	store_rtxn_end(t);
	cr_assert_eq(store_retry_deferred(st, pol, NOW, &applied), 0);
	cr_assert_eq(applied, 0, "nothing applied from it");
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/*
 * A format 2 store's entries (five members, full items) read as they are
 * after the upgrade to format 3; a compact item in such an entry, which
 * has no origin to lend it, is malformed.
 */
Test(store, format_2_audit_entries_read_after_the_upgrade)
{
	char *dir = test_tmpdir();
	struct store *st = open_store(dir, "ee", 0);
	struct store_audit_entry e;
	struct store_rtxn *t;
	/* [time, "lv", "t", "ee:1", [[1, "name", "", 5, "ee"]]] */
	static const uint8_t old[] = { 0x95, 0x07, 0xa2, 'l', 'v', 0xa1, 't',
	    0xa4, 'e', 'e', ':', '1', 0x91, 0x95, 0x01, 0xa4, 'n', 'a', 'm',
	    'e', 0xa0, 0x05, 0xa2, 'e', 'e' };
	/* the same with the item compact: [1, "name", 5] */
	static const uint8_t bad[] = { 0x95, 0x07, 0xa2, 'l', 'v', 0xa1, 't',
	    0xa4, 'e', 'e', ':', '1', 0x91, 0x93, 0x01, 0xa4, 'n', 'a', 'm',
	    'e', 0x05 };

	store_close(st);
	put_raw_audit(dir, 1, old, sizeof(old), 2);
	put_raw_audit(dir, 2, bad, sizeof(bad), 2);
	st = open_store(dir, "ee", 0);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_audit_next(t, 0, &e), 0);
	cr_assert_eq(e.time_ms, 7);
	cr_assert(nbx_str_eq(e.peer, nbx_str_c("lv")));
	cr_assert_eq(e.nitems, 1);
	cr_assert(nbx_str_eq(e.items[0].field, nbx_str_c("name")));
	cr_assert_eq(e.items[0].hlc, 5);
	cr_assert(nbx_str_eq(e.items[0].origin, nbx_str_c("ee")));
	cr_assert_eq(store_audit_next(t, 1, &e), NBX_EMALFORMED);
	store_rtxn_end(t);
	store_close(st);
	cr_assert_eq(raw_format(dir, NULL), 5, "upgraded to 5");
	test_rmdir(dir);
}

/*
 * A format 4 store opens as format 5 with its records as they were (a
 * record of the crdt's format 1 reads as before: crdt_test) and its audit
 * entries of one record each: the next batch is numbered after them, and
 * a read finds a record from either kind of entry.  A store a newer nbx
 * wrote is refused, naming its format.
 */
Test(store, format_4_opens_as_5_and_a_newer_store_is_refused)
{
	char *dir = test_tmpdir();
	struct store *st = open_store(dir, "ee", 0);
	struct policy *pol = test_policy();
	struct change c = test_str("ee:1", "name", "before");
	struct change b[3] = { test_str("ee:a", "name", "a"),
	    test_str("ee:b", "name", "b"), test_str("ee:c", "city", "c") };
	struct store_outcome out;
	struct store_opts o = { .node_id = "ee" };
	struct store_audit_entry e;
	struct store_rtxn *t;
	uint64_t six = 6;
	char err[256];
	/* format 3 and 4: [7, "lv", "t", "ee:1", [[1, "name", 2]], 5, "ee"] */
	static const uint8_t one[] = { 0x97, 0x07, 0xa2, 'l', 'v', 0xa1, 't',
	    0xa4, 'e', 'e', ':', '1', 0x91, 0x93, 0x01, 0xa4, 'n', 'a', 'm',
	    'e', 0x02, 0x05, 0xa2, 'e', 'e' };

	cr_assert_eq(raw_format(dir, NULL), 5);
	cr_assert_eq(store_apply(st, pol, &c, 1, (struct nbx_str){ 0 }, NULL,
	    NOW, 0, &out), 0);
	store_close(st);
	put_raw_audit(dir, 1, one, sizeof(one), 4);
	put_raw_audit(dir, 2, one, sizeof(one), 4);
	st = open_store(dir, "ee", 0);
	cr_assert_str_eq(get_name(st, "ee:1"), "before");
	for (int i = 0; i < 3; i++)
		b[i].origin = nbx_str_c("ee");
	cr_assert_eq(store_disclose(st, nbx_str_c("lv"), b, 3, NOW), 0);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_audit_next(t, 0, &e), 0);
	cr_assert_eq(e.aseq, 1);
	cr_assert_eq(e.items[0].hlc, 7);
	cr_assert(nbx_str_eq(e.items[0].origin, nbx_str_c("ee")));
	cr_assert_eq(store_audit_next(t, 1, &e), 0);
	cr_assert_eq(e.aseq, 2);
	cr_assert_eq(store_audit_next(t, 2, &e), 0);
	cr_assert_eq(e.aseq, 3, "the batch after the old entries");
	cr_assert(nbx_str_eq(e.id, nbx_str_c("ee:a")));
	cr_assert_eq(store_audit_next(t, 4, &e), 0);
	cr_assert_eq(e.aseq, 5);
	cr_assert(nbx_str_eq(e.id, nbx_str_c("ee:c")));
	cr_assert(nbx_str_eq(e.items[0].field, nbx_str_c("city")));
	cr_assert_eq(store_audit_next(t, 5, &e), NBX_ENOTFOUND);
	store_rtxn_end(t);
	/* inside the batch with nothing read before (no batch kept) */
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_audit_next(t, 3, &e), 0);
	cr_assert_eq(e.aseq, 4);
	cr_assert(nbx_str_eq(e.id, nbx_str_c("ee:b")));
	cr_assert(nbx_str_eq(e.peer, nbx_str_c("lv")));
	cr_assert_eq(e.time_ms, NOW);
	store_rtxn_end(t);
	store_close(st);
	cr_assert_eq(raw_format(dir, NULL), 5);
	raw_format(dir, &six);
	st = NULL;
	cr_assert_eq(store_open(dir, &o, &st, err, sizeof(err)), NBX_ESTORE);
	cr_assert_null(st);
	cr_assert(strstr(err, "store format 6") != NULL, "%s", err);
	policy_free(pol);
	test_rmdir(dir);
}

/* A random version for audit_random: near base or anywhere. */
static uint64_t
random_hlc(unsigned *seed, uint64_t base)
{
	switch (rand_r(seed) % 4) {
	case 0:
		return base - (uint64_t)(rand_r(seed) % 1000);
	case 1:
		return ((uint64_t)rand_r(seed) << 33) ^ (uint64_t)rand_r(seed);
	default:
		return base + (uint64_t)(rand_r(seed) % 5);
	}
}

/*
 * Random batches of random records (fields, elems, origins, versions
 * near each other or not) disclosed to random peers read back exactly:
 * by a scan, each record at the next aseq; and from any aseq in a fresh
 * transaction, the record after it.  Corrupt entries fail, never crash.
 */
Test(store, audit_batches_read_back_property)
{
	static const char *fields[] = { "name", "city", "kind", "phone",
	    "tags", "capacity", "free_places", "notes", "" };
	static const char *origins[] = { "ee", "lv", "lt", "fi", "" };
	static const char *peers[] = { "lv", "lt", "se-1" };
	enum { RECS = 600, MAXC = 5 };
	static char ids[RECS][24], elems[RECS * MAXC][12];
	static struct change chs[RECS * MAXC];
	static struct { uint32_t first, n; const char *peer; } recs[RECS];
	char *dir = test_tmpdir();
	struct store *st = open_store(dir, "ee", 0);
	unsigned seed = test_seed(), s = seed;
	struct store_audit_entry e;
	struct store_rtxn *t;
	uint32_t nrecs = 0, nchs = 0;
	uint64_t after = 0;

	printf("property audit_batches: seed=%u (replay with NBX_SEED=%u)\n",
	    seed, seed);
	while (nrecs < RECS) {
		uint32_t n = 1 + (uint32_t)rand_r(&s) % 80, first = nchs;
		const char *peer = peers[rand_r(&s) % 3];

		if (n > RECS - nrecs)
			n = RECS - nrecs;
		for (uint32_t r = 0; r < n; r++, nrecs++) {
			uint32_t nc = 1 + (uint32_t)rand_r(&s) % MAXC;
			uint64_t base = HLC_MAKE(NOW, rand_r(&s) % 100);
			const char *o0 = origins[rand_r(&s) % 5];

			snprintf(ids[nrecs], sizeof(ids[nrecs]), "ee:r%u",
			    nrecs);
			recs[nrecs].first = nchs;
			recs[nrecs].n = nc;
			recs[nrecs].peer = peer;
			for (uint32_t i = 0; i < nc; i++, nchs++) {
				struct change *c = &chs[nchs];

				*c = test_change((enum change_kind)(1 +
				    rand_r(&s) % 6), ids[nrecs],
				    fields[rand_r(&s) % 9]);
				if (rand_r(&s) % 7 == 0)
					c->coll = nbx_str_c("organisation");
				c->coll = i ? chs[recs[nrecs].first].coll :
				    c->coll;
				if (rand_r(&s) % 3 == 0) {
					snprintf(elems[nchs],
					    sizeof(elems[nchs]), "e%d",
					    rand_r(&s) % 50);
					c->elem = nbx_str_c(elems[nchs]);
				}
				c->origin = nbx_str_c(rand_r(&s) % 4 ? o0 :
				    origins[rand_r(&s) % 5]);
				c->hlc = random_hlc(&s, base);
			}
		}
		cr_assert_eq(store_disclose(st, nbx_str_c(peer), &chs[first],
		    nchs - first, NOW + nrecs), 0, "%s", store_last_error(st));
	}
	/* a scan: every record, in order */
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	for (uint32_t r = 0; r < RECS; r++) {
		cr_assert_eq(store_audit_next(t, after, &e), 0, "record %u", r);
		cr_assert_eq(e.aseq, after + 1);
		after = e.aseq;
		cr_assert(nbx_str_eq(e.id, nbx_str_c(ids[r])), "record %u", r);
		cr_assert(nbx_str_eq(e.coll, chs[recs[r].first].coll));
		cr_assert(nbx_str_eq(e.peer, nbx_str_c(recs[r].peer)));
		cr_assert_eq(e.nitems, recs[r].n, "record %u", r);
		for (uint32_t i = 0; i < e.nitems; i++) {
			const struct change *c = &chs[recs[r].first + i];

			cr_assert_eq(e.items[i].kind, (uint32_t)c->kind);
			cr_assert(nbx_str_eq(e.items[i].field, c->field));
			cr_assert(nbx_str_eq(e.items[i].elem, c->elem));
			cr_assert_eq(e.items[i].hlc, c->hlc, "record %u item %u",
			    r, i);
			cr_assert(nbx_str_eq(e.items[i].origin, c->origin),
			    "record %u item %u", r, i);
		}
	}
	cr_assert_eq(store_audit_next(t, after, &e), NBX_ENOTFOUND);
	store_rtxn_end(t);
	/* from anywhere, in a fresh transaction */
	for (int i = 0; i < 200; i++) {
		uint32_t r = (uint32_t)rand_r(&s) % RECS;

		cr_assert_eq(store_rtxn_begin(st, &t), 0);
		cr_assert_eq(store_audit_next(t, r, &e), 0);
		cr_assert_eq(e.aseq, r + 1);
		cr_assert(nbx_str_eq(e.id, nbx_str_c(ids[r])), "after %u", r);
		store_rtxn_end(t);
	}
	store_close(st);
	/* the first entry's bytes cut short, then its names made too few */
	{
		static const uint8_t one[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
		size_t n, at;
		uint8_t *v = raw_copy(dir, "audit", one, 8, &n);
		struct mpread m = { v, n, 0 };
		struct nbx_str str;
		uint64_t x;
		uint32_t nn;

		put_raw(dir, "audit", one, 8, v, n / 2);
		cr_assert_eq(first_audit_rc(dir), NBX_EMALFORMED);
		/* [time, peer, [], records]: the names' bytes cut out, so
		   every index is out of range */
		cr_assert_eq(mpread_array(&m, &nn), 0);
		cr_assert_eq(nn, 4);
		cr_assert_eq(mpread_u64(&m, &x), 0);
		cr_assert_eq(mpread_str(&m, 0, 64, &str), 0);
		at = m.off;
		cr_assert_eq(mpread_array(&m, &nn), 0);
		for (uint32_t i = 0; i < nn; i++)
			cr_assert_eq(mpread_str(&m, 0, 1024, &str), 0);
		v[at] = 0x90;
		memmove(v + at + 1, v + m.off, n - m.off);
		put_raw(dir, "audit", one, 8, v, n - (m.off - at - 1));
		cr_assert_eq(first_audit_rc(dir), NBX_EMALFORMED);
		free(v);
	}
	test_rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* The merge fed one change at a time                                  */
/* ------------------------------------------------------------------ */

/* A batch as peer lv sends it: 700 records, the odd ones lt's (relayed,
 * so only what lv sent tells that lv holds them), record 101 with 100 set
 * elements (more than the run's first slots), record 350 with a local
 * field lv may not send. */
#define SRC_RECS	700
#define SRC_N		(3 * SRC_RECS + 100)

static size_t
lv_batch(struct change *c, char (*ids)[32], char (*elems)[8])
{
	static const char name[] = "a name long enough to fill the tiny map";
	size_t n = 0;

	for (int i = 0; i < SRC_RECS; i++) {
		snprintf(ids[i], 32, "%s:rec-%05d", i % 2 ? "lt" : "lv", i);
		c[n++] = test_str(ids[i], "name", name);
		c[n] = test_change(CHANGE_FIELD, ids[i], "count");
		c[n].val.t = NBX_V_INT;
		c[n++].val.i = i % 1000;
		c[n++] = test_str(ids[i], i == 350 ? "note" : "name", "later");
		for (int k = 0; i == 101 && k < 100; k++) {
			snprintf(elems[k], 8, "e%d", k);
			c[n] = test_change(CHANGE_ELEM, ids[i], "tags");
			c[n].elem = nbx_str_c(elems[k]);
			c[n].val.t = NBX_V_BOOL;
			c[n++].val.i = 1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		c[i].origin = nbx_str_c(c[i].id.p[1] == 't' ? "lt" : "lv");
		c[i].hlc = HLC_MAKE(NOW - 1000, (uint64_t)i);
	}
	return n;
}

Test(store, apply_from_a_source_equals_the_array_across_a_retry)
{
	char *da = test_tmpdir(), *db = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *a = open_store(da, "ee", 64 * 1024);
	struct store *b = open_store(db, "ee", 64 * 1024);
	static char ids[SRC_RECS][32], elems[100][8];
	static struct change c[SRC_N];
	static struct store_outcome oa[SRC_N], ob[SRC_N];
	size_t n = lv_batch(c, ids, elems), taken = 0;
	struct test_src s = { c, n, 0, 0, 0, 0 };
	struct store_change_src src = { test_src_next, test_src_rewind, &s };
	struct store_cursor cur = { nbx_str_c("lv"), 5, 42 }, got;
	struct store_meta ma, mb;
	uint8_t ha[32], hb[32];

	cr_assert_eq(n, SRC_N);
	cr_assert_eq(store_apply(a, pol, c, n, nbx_str_c("lv"), &cur, NOW, 0,
	    oa), 0, "%s", store_last_error(a));
	cr_assert_eq(store_apply_from(b, pol, &src, n, nbx_str_c("lv"), &cur,
	    NOW, 0, ob, &taken), 0, "%s", store_last_error(b));
	cr_assert_eq(taken, n);
	cr_assert_eq(store_meta_get(b, &mb), 0);
	cr_assert_gt(mb.map_size, 64 * 1024, "the map grew: the txn was retried");
	cr_assert_geq(s.rewinds, 2, "a retry starts the source again");
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(ob[i].status, oa[i].status, "change %zu", i);
		cr_assert_eq(ob[i].err, oa[i].err, "change %zu", i);
		cr_assert_eq(ob[i].seq, oa[i].seq, "change %zu", i);
	}
	cr_assert_eq(ob[3 * 350 + 100 + 2].err, NBX_ELOCAL);
	cr_assert_eq(ob[3 * 101 + 2 + 100].status, STORE_APPLIED, "the big one");
	cr_assert_eq(ob[n - 1].status, STORE_APPLIED);
	cr_assert_eq(store_meta_get(a, &ma), 0);
	cr_assert_eq(mb.last_seq, ma.last_seq);
	cr_assert_eq(mb.records, SRC_RECS);
	cr_assert_eq(mb.quarantined, 1);
	cr_assert_eq(store_records_digest(a, ha), 0);
	cr_assert_eq(store_records_digest(b, hb), 0);
	cr_assert(memcmp(ha, hb, 32) == 0, "the same records, byte for byte");
	cr_assert_eq(store_cursor_get(b, nbx_str_c("lv"), &got), 0);
	cr_assert_eq(got.seq, 42);
	/* lv holds each record it sent, as after the array: the lt ones it
	 * sent in full (the big one too), and its own but the refused one */
	for (uint64_t q = 1; q <= mb.last_seq; q++)
		cr_assert_eq(store_log_peer_has(b, q, nbx_str_c("lv")),
		    store_log_peer_has(a, q, nbx_str_c("lv")), "seq %llu",
		    (unsigned long long)q);
	cr_assert_eq(store_log_peer_has(b, ob[n - 1].seq, nbx_str_c("lv")), 1,
	    "lt's last record: lv sent all of it");
	cr_assert_eq(store_log_peer_has(b, ob[3 * 101 + 2 + 100].seq,
	    nbx_str_c("lv")), 1, "and the big one");
	store_close(a);
	store_close(b);
	policy_free(pol);
	test_rmdir(da);
	test_rmdir(db);
}

Test(store, apply_aborted_by_its_source_writes_nothing)
{
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct change c[5] = {
		test_str("lv:1", "name", "a"), test_str("lv:1", "note", "x"),
		test_str("lv:2", "name", "b"), test_str("lv:3", "name", "c"),
		test_str("lv:3", "name", "d"),
	};
	/* the fifth change does not decode (NBX_EMALFORMED) */
	struct test_src s = { c, 5, 0, 4, NBX_EMALFORMED, 0 };
	struct store_change_src src = { test_src_next, test_src_rewind, &s };
	struct store_cursor cur = { nbx_str_c("lv"), 5, 9 }, got;
	struct store_outcome out[5];
	struct store_meta m;
	size_t taken = 7;

	for (int i = 0; i < 5; i++) {
		c[i].origin = nbx_str_c("lv");
		c[i].hlc = HLC_MAKE(NOW, (uint64_t)i);
	}
	cr_assert_eq(store_apply_from(st, pol, &src, 5, nbx_str_c("lv"), &cur,
	    NOW, 0, out, &taken), NBX_EMALFORMED);
	cr_assert_eq(taken, 0);
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_eq(m.last_seq, 0, "no change of the batch stays");
	cr_assert_eq(m.records, 0);
	cr_assert_eq(m.quarantined, 0, "nor the quarantine entry of change 2");
	cr_assert_eq(store_cursor_get(st, nbx_str_c("lv"), &got), 0);
	cr_assert_eq(got.seq, 0, "the cursor did not move");

	/* a source with more changes than outcomes: refused, nothing kept */
	s.fail_rc = 0;
	cr_assert_eq(store_apply_from(st, pol, &src, 4, nbx_str_c("lv"), &cur,
	    NOW, 0, out, &taken), NBX_EINVAL);
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_eq(m.last_seq, 0);

	/* the same changes in full */
	cr_assert_eq(store_apply_from(st, pol, &src, 5, nbx_str_c("lv"), &cur,
	    NOW, 0, out, &taken), 0);
	cr_assert_eq(taken, 5);
	cr_assert_eq(out[1].err, NBX_ELOCAL);
	cr_assert_eq(out[4].status, STORE_APPLIED);
	cr_assert_eq(store_meta_get(st, &m), 0);
	cr_assert_eq(m.records, 3);
	cr_assert_eq(m.quarantined, 1);
	cr_assert_eq(store_cursor_get(st, nbx_str_c("lv"), &got), 0);
	cr_assert_eq(got.seq, 9);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* Versions of this node's own, received back from peers               */
/* ------------------------------------------------------------------ */

/* An audience of ee's record ee:1 at NOW + ctr: ids from a list. */
static void
ee_aud(struct nbx_audience *a, uint64_t ctr, const char *const *ids,
    uint32_t n)
{
	memset(a, 0, sizeof(*a));
	a->hlc = HLC_MAKE(NOW, ctr);
	a->origin = nbx_str_c("ee");
	a->n = n;
	for (uint32_t i = 0; i < n; i++)
		a->ids[i] = nbx_str_c(ids[i]);
}

/*
 * ee:1 as a peer holds it after ee made it (state, audience ee,lv,fi,
 * secret) and fi answered (status = a, writers = audience), in the order
 * crdt_record_changes lists a record: b[0..4).
 */
static void
ee_record_copy(struct change *b)
{
	static const char *const ids[] = { "ee", "lv", "fi" };

	b[0] = test_change(CHANGE_STATE, "ee:1", NULL);
	b[0].val.t = NBX_V_INT;
	b[0].val.i = REC_LIVE;
	b[1] = test_change(CHANGE_AUDIENCE, "ee:1", NULL);
	ee_aud(&b[1].aud, 2, ids, 3);
	b[2] = test_str("ee:1", "secret", "P");
	b[3] = test_str("ee:1", "status", "a");
	for (int i = 0; i < 4; i++) {
		b[i].hlc = HLC_MAKE(NOW, (uint64_t)i + 1);
		b[i].origin = nbx_str_c(i == 3 ? "fi" : "ee");
	}
	b[1].hlc = b[1].aud.hlc;
	b[2].aud = b[3].aud = b[1].aud;
}

/* The value of a field of t/ee:1 in st, or NULL. */
static const char *
get_field(struct store *st, const char *field)
{
	static char out[64];
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_reg *g;
	int rc;

	out[0] = 0;
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	rc = store_record_get(t, nbx_str_c("t"), nbx_str_c("ee:1"), &r);
	g = rc == 0 ? crdt_record_find(&r, nbx_str_c(field),
	    (struct nbx_str){ "", 0 }) : NULL;
	if (g && (g->flags & CRDT_REG_VALUE))
		snprintf(out, sizeof(out), "%.*s", (int)g->val.s.n, g->val.s.p);
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return g && out[0] ? out : NULL;
}

/*
 * A store rebuilt from empty (it has stamped nothing yet) takes its own
 * record back whole from a peer: state, audience, its own field and the
 * field another audience member wrote under that audience.  Then, once
 * it has written again, a version of its own it never made (newer than
 * its first) is refused as a forgery, and so is a widened audience of
 * its own, while older versions still come back.  A new process run
 * (a reopen) has stamped nothing yet: before its first write it takes a
 * version of its own it does not hold (it may have lost it, restored
 * from a backup), after it refuses a newer one.
 */
Test(store, rebuilt_store_takes_its_own_record_back_and_refuses_forgeries)
{
	static const char *const wide[] = { "ee", "lv", "fi", "se" };
	char *dir = test_tmpdir();
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct change b[4], c;
	struct store_outcome out[4];
	struct nbx_str none = { 0 };

	ee_record_copy(b);
	cr_assert_eq(store_apply(st, pol, b, 4, nbx_str_c("lv"), NULL,
	    NOW + 10, 0, out), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(out[i].status, STORE_APPLIED, "change %d: %s", i,
		    nbx_strerror(out[i].err));
	cr_assert_str_eq(get_field(st, "secret"), "P");
	cr_assert_str_eq(get_field(st, "status"), "a");

	/* ee writes: from now on it knows every version it makes */
	c = test_str("ee:1", "secret", "Q");
	cr_assert_eq(store_apply(st, pol, &c, 1, none, NULL, NOW + 20, 0, out),
	    0);
	cr_assert_eq(out[0].status, STORE_APPLIED);

	/* a forged later write of ee's */
	c = b[2];
	c.val.s = nbx_str_c("forged");
	c.hlc = HLC_MAKE(NOW + 30, 0);
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 30, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_REJECTED);
	cr_assert_eq(out[0].err, NBX_EPEER);
	/* a forged audience of ee's, widened */
	c = test_change(CHANGE_AUDIENCE, "ee:1", NULL);
	ee_aud(&c.aud, 0, wide, 4);
	c.aud.hlc = c.hlc = HLC_MAKE(NOW + 30, 1);
	c.origin = nbx_str_c("ee");
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 30, 0, out), 0);
	cr_assert_eq(out[0].err, NBX_EPEER);
	/* fi's write under that forged audience */
	c = b[3];
	c.val.s = nbx_str_c("b");
	c.hlc = HLC_MAKE(NOW + 30, 2);
	ee_aud(&c.aud, 0, wide, 4);
	c.aud.hlc = HLC_MAKE(NOW + 30, 1);
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 30, 0, out), 0);
	cr_assert_eq(out[0].err, NBX_EPEER);
	/* a forged later record of ee's it never held */
	c = test_str("ee:2", "name", "forged");
	c.origin = nbx_str_c("ee");
	c.hlc = HLC_MAKE(NOW + 30, 3);
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 30, 0, out), 0);
	cr_assert_eq(out[0].err, NBX_EPEER);
	cr_assert_str_eq(get_field(st, "secret"), "Q");
	cr_assert_str_eq(get_field(st, "status"), "a");

	/* a new run, before its first write: a version of ee's it does not
	   hold may be one it lost, and is taken */
	store_close(st);
	st = open_store(dir, "ee", 0);
	c = test_str("ee:1", "secret", "lost in a restore");
	c.origin = nbx_str_c("ee");
	c.hlc = HLC_MAKE(NOW + 40, 0);
	nbx_aud_copy(&c.aud, &b[1].aud);
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 40, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED, "%s",
	    nbx_strerror(out[0].err));
	cr_assert_str_eq(get_field(st, "secret"), "lost in a restore");
	/* once it writes, a later version of ee's it never made is not */
	c = test_str("ee:1", "name", "run 2");
	cr_assert_eq(store_apply(st, pol, &c, 1, none, NULL, NOW + 50, 0, out),
	    0);
	cr_assert_eq(out[0].status, STORE_APPLIED);
	c = test_str("ee:1", "secret", "forged again");
	c.origin = nbx_str_c("ee");
	c.hlc = HLC_MAKE(NOW + 60, 0);
	nbx_aud_copy(&c.aud, &b[1].aud);
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 60, 0, out), 0);
	cr_assert_eq(out[0].err, NBX_EPEER);
	cr_assert_str_eq(get_field(st, "secret"), "lost in a restore");
	/* and one older than the run's first: taken */
	c = test_str("ee:3", "name", "from before the rebuild");
	c.origin = nbx_str_c("ee");
	c.hlc = HLC_MAKE(NOW, 0);
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 60, 0, out), 0);
	cr_assert_eq(out[0].status, STORE_APPLIED);
	/* the same run goes on across a compaction (a reopen inside it) */
	{
		uint64_t before, after;

		cr_assert_eq(store_compact(st, &before, &after), 0, "%s",
		    store_last_error(st));
	}
	c = test_str("ee:1", "secret", "forged after compaction");
	c.origin = nbx_str_c("ee");
	c.hlc = HLC_MAKE(NOW + 70, 0);
	nbx_aud_copy(&c.aud, &b[1].aud);
	cr_assert_eq(store_apply(st, pol, &c, 1, nbx_str_c("lv"), NULL,
	    NOW + 70, 0, out), 0);
	cr_assert_eq(out[0].err, NBX_EPEER);
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
}

/* Copies file from over to (neither store open). */
static void
copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	char buf[65536];
	size_t n;

	cr_assert(in != NULL && out != NULL, "%s -> %s", from, to);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		cr_assert_eq(fwrite(buf, 1, n, out), n);
	cr_assert_eq(ferror(in), 0);
	fclose(in);
	cr_assert_eq(fclose(out), 0);
}

/* Record t/id of st as crdt_record_encode gives it, into out. */
static void
record_bytes(struct store *st, const char *id, struct nbx_buf *out)
{
	struct store_rtxn *t;
	struct crdt_record r;

	nbx_buf_init(out, 1 << 20);
	cr_assert_eq(store_rtxn_begin(st, &t), 0);
	cr_assert_eq(store_record_get(t, nbx_str_c("t"), nbx_str_c(id), &r), 0,
	    "%s", id);
	cr_assert_eq(crdt_record_encode(&r, out), 0);
	crdt_record_fini(&r);
	store_rtxn_end(t);
}

struct change_list {
	struct change c[32];
	size_t n;
};

static int
change_add(void *arg, const struct change *c)
{
	struct change_list *l = arg;

	cr_assert_lt(l->n, 32);
	l->c[l->n++] = *c;
	return 0;
}

/*
 * A node restored from a backup (its data.mdb copied while it was
 * closed) takes back from a peer the versions it stamped after the
 * backup, and its records are then as they were, byte for byte: a field
 * it wrote again, a scoped field, records it made after the backup (one
 * with an audience, a scoped value, a set element and its holder
 * receipt).  Nothing is refused, and the pair digest is as before.
 */
Test(store, restored_store_takes_back_what_it_stamped_after_the_backup)
{
	static const char *const ids[] = { "ee:1", "ee:2", "ee:3", "ee:4" };
	char *dir = test_tmpdir(), *bdir = test_tmpdir();
	char data[4200], backup[4200], lock[4200];
	struct policy *pol = test_policy();
	struct store *st = open_store(dir, "ee", 0);
	struct nbx_str none = { 0 };
	struct store_outcome out[32];
	struct nbx_buf orig[4];
	struct crdt_record r[4];
	struct change_list l = { .n = 0 };
	struct change c[4];
	uint8_t before[32], after[32];
	uint64_t nr, nc;

	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", dir);
	snprintf(backup, sizeof(backup), "%s/data.mdb", bdir);
	c[0] = test_str("ee:1", "name", "one");
	c[1] = test_change(CHANGE_AUDIENCE, "ee:2", NULL);
	c[1].aud.n = 2;
	c[1].aud.ids[0] = nbx_str_c("ee");
	c[1].aud.ids[1] = nbx_str_c("lv");
	c[2] = test_str("ee:2", "secret", "s1");
	cr_assert_eq(store_apply(st, pol, c, 3, none, NULL, NOW, 0, out), 0);
	store_close(st);
	copy_file(data, backup);	/* the backup */

	st = open_store(dir, "ee", 0);
	c[0] = test_str("ee:1", "name", "one, later");
	c[1] = test_str("ee:2", "secret", "s2");
	c[2] = test_str("ee:3", "name", "three");
	cr_assert_eq(store_apply(st, pol, c, 3, none, NULL, NOW + 10, 0, out),
	    0);
	c[0] = test_change(CHANGE_AUDIENCE, "ee:4", NULL);
	c[0].aud.n = 3;
	c[0].aud.ids[0] = nbx_str_c("ee");
	c[0].aud.ids[1] = nbx_str_c("lv");
	c[0].aud.ids[2] = nbx_str_c("fi");
	c[1] = test_str("ee:4", "secret", "four");
	c[2] = test_change(CHANGE_ELEM, "ee:4", "tags");
	c[2].elem = nbx_str_c("x");
	c[2].val.t = NBX_V_BOOL;
	c[2].val.i = 1;
	cr_assert_eq(store_apply(st, pol, c, 3, none, NULL, NOW + 11, 0, out),
	    0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(out[i].status, STORE_APPLIED, "change %d", i);
	for (int i = 0; i < 4; i++)
		record_bytes(st, ids[i], &orig[i]);
	cr_assert_eq(store_pair_digest(st, pol, nbx_str_c("lv"), before, &nr,
	    &nc), 0);
	store_close(st);

	/* restored: what came after the backup is gone */
	copy_file(backup, data);
	(void)unlink(lock);
	st = open_store(dir, "ee", 0);
	cr_assert_str_eq(get_name(st, "ee:1"), "one");
	cr_assert_null(get_name(st, "ee:3"));

	/* a peer (lv) sends the records as it holds them */
	for (int i = 0; i < 4; i++) {
		crdt_record_init(&r[i], nbx_str_c("t"), nbx_str_c(ids[i]));
		cr_assert_eq(crdt_record_decode(orig[i].p, orig[i].len, &r[i]),
		    0);
		cr_assert_eq(crdt_record_changes(&r[i], change_add, &l), 0);
	}
	cr_assert_eq(store_apply(st, pol, l.c, l.n, nbx_str_c("lv"), NULL,
	    NOW + 20, 0, out), 0);
	for (size_t i = 0; i < l.n; i++)
		cr_assert_neq(out[i].status, STORE_REJECTED,
		    "change %zu (kind %d, %.*s) refused: %s", i, l.c[i].kind,
		    (int)l.c[i].field.n, l.c[i].field.p,
		    nbx_strerror(out[i].err));
	for (int i = 0; i < 4; i++) {
		struct nbx_buf now;

		record_bytes(st, ids[i], &now);
		cr_assert_eq(now.len, orig[i].len, "%s", ids[i]);
		cr_assert_eq(memcmp(now.p, orig[i].p, now.len), 0, "%s differs "
		    "from the original", ids[i]);
		nbx_buf_fini(&now);
	}
	cr_assert_eq(store_pair_digest(st, pol, nbx_str_c("lv"), after, &nr,
	    &nc), 0);
	cr_assert_eq(memcmp(before, after, 32), 0);
	for (int i = 0; i < 4; i++) {
		crdt_record_fini(&r[i]);
		nbx_buf_fini(&orig[i]);
	}
	store_close(st);
	policy_free(pol);
	test_rmdir(dir);
	test_rmdir(bdir);
}
