/*
 * session_v2_test.c - version 2 of the sync protocol, two sessions pumped
 * against each other in one process: the version both ends speak, the
 * schema digest, and reconciliation repairing what the log stream cannot
 * (a store restored from a backup), without a record the peer may not
 * see ever crossing the link.
 */
#include "synctest.h"
#include "session_int.h"

TestSuite(v2, .init = setup, .fini = teardown, .timeout = 60);

/* Opens n again on the same directory (after store_close). */
static void
node_reopen(struct node *n)
{
	struct store_opts o = { .node_id = n->id };
	char err[256];

	cr_assert_eq(store_open(n->dir, &o, &n->st, err, sizeof(err)), 0,
	    "store_open: %s", err);
}

/* Copies the file dir/data.mdb to dst/data.mdb. */
static void
copy_data(const char *dir, const char *dst)
{
	char from[256], to[256], buf[65536];
	FILE *in, *out;
	size_t k;

	snprintf(from, sizeof(from), "%s/data.mdb", dir);
	snprintf(to, sizeof(to), "%s/data.mdb", dst);
	cr_assert_not_null(in = fopen(from, "rb"));
	cr_assert_not_null(out = fopen(to, "wb"));
	while ((k = fread(buf, 1, sizeof(buf), in)) > 0)
		cr_assert_eq(fwrite(buf, 1, k, out), k);
	fclose(in);
	cr_assert_eq(fclose(out), 0);
}

/* A backup of n's store in a fresh directory (the store closed and
   reopened around the copy, as mdb_copy of a quiet store would give). */
static char *
node_backup(struct node *n)
{
	char *dir = fast_tmpdir();

	store_close(n->st);
	copy_data(n->dir, dir);
	node_reopen(n);
	return dir;
}

/* Puts the backup in place of n's store and opens it. */
static void
node_restore(struct node *n, const char *backup)
{
	char lock[256];

	store_close(n->st);
	copy_data(backup, n->dir);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", n->dir);
	(void)unlink(lock);
	node_reopen(n);
}

static void
digests_equal(struct node *a, struct node *b)
{
	uint8_t da[32], db[32];
	uint64_t ra, rb, ca, cb;

	cr_assert_eq(store_pair_digest(a->st, pol, nbx_str_c(b->id), da, &ra,
	    &ca), 0);
	cr_assert_eq(store_pair_digest(b->st, pol, nbx_str_c(a->id), db, &rb,
	    &cb), 0);
	cr_assert_eq(ra, rb, "%s counts %llu records, %s %llu", a->id,
	    (unsigned long long)ra, b->id, (unsigned long long)rb);
	cr_assert(memcmp(da, db, 32) == 0, "digests of %s and %s differ",
	    a->id, b->id);
}

static const struct sync_stats *
st_of(struct link *l, int i)
{
	return sync_session_stats(l->s[i]);
}

/* ------------------------------------------------------------------ */
/* Negotiation                                                         */
/* ------------------------------------------------------------------ */

Test(v2, both_speak_2)
{
	struct node ee, lv;
	struct link l;
	struct link *ls[] = { &l };

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	put(&ee, "ee:1", "name", "x", T0);
	link_open(&l, &ee, &lv, NULL, T0);
	run(ls, 1, T0, 100);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(st_of(&l, i)->version, 2);
		cr_assert_eq(st_of(&l, i)->peer_version_min, 1);
		cr_assert_eq(st_of(&l, i)->peer_version_max, 2);
		cr_assert_eq(st_of(&l, i)->schema_match, 1);
	}
	/* the run on connect, started by the smaller id, ended */
	cr_assert_eq(st_of(&l, 0)->recon_runs, 1);
	cr_assert_eq(st_of(&l, 1)->recon_runs, 0);
	assert_same(&ee, &lv, "ee:1", "name", NULL);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* A node limited to version 1 (the previous release) syncs with one
   that speaks 2: rolling upgrades. */
Test(v2, rolling_upgrade)
{
	struct node ee, lv;
	struct sync_session *s[2];
	struct sync_opts o1 = { .version_max = 1 };
	struct link l;
	struct link *ls[] = { &l };

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	put(&ee, "ee:1", "name", "from ee", T0);
	put(&lv, "lv:1", "name", "from lv", T0);
	memset(&l, 0, sizeof(l));
	l.n[0] = &ee;
	l.n[1] = &lv;
	cr_assert_eq(sync_session_new(ee.st, pol, "lv", NULL, &s[0]), 0);
	cr_assert_eq(sync_session_new(lv.st, pol, "ee", &o1, &s[1]), 0);
	l.s[0] = s[0];
	l.s[1] = s[1];
	cr_assert_eq(sync_session_start(s[0], T0), 0);
	cr_assert_eq(sync_session_start(s[1], T0), 0);
	/* lv's HELLO is the version-1 form, 4 elements */
	{
		struct frame_msg m;

		cr_assert_eq(pending_frames(s[1], FRAME_HELLO, &m), 1);
		cr_assert_eq(m.version, 1);
		cr_assert_null(m.schema);
	}
	run(ls, 1, T0, 100);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(st_of(&l, i)->version, 1);
		cr_assert_eq(st_of(&l, i)->recon_msgs_out, 0);
	}
	cr_assert_eq(st_of(&l, 0)->schema_match, -1, "a version-1 peer "
	    "does not say its schema");
	cr_assert_eq(sync_session_reconcile(s[0]), NBX_EVERSION);
	assert_same(&ee, &lv, "ee:1", "name", NULL);
	assert_same(&ee, &lv, "lv:1", "name", NULL);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* No version in common: both ends refuse, with a reason, and say so. */
Test(v2, no_common_version)
{
	struct node ee, lv;
	struct sync_session *a, *b;
	struct sync_opts o2 = { .version_min = 2 }, o1 = { .version_max = 1 };
	const uint8_t *p;
	size_t n;
	int ra, rb;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	cr_assert_eq(sync_session_new(ee.st, pol, "lv", &o2, &a), 0);
	cr_assert_eq(sync_session_new(lv.st, pol, "ee", &o1, &b), 0);
	cr_assert_eq(sync_session_start(a, T0), 0);
	cr_assert_eq(sync_session_start(b, T0), 0);
	n = sync_session_pending(a, &p);
	rb = sync_session_feed(b, p, n, T0);
	n = sync_session_pending(b, &p);
	ra = sync_session_feed(a, p, n, T0);
	cr_assert_eq(rb, NBX_EVERSION, "%s", sync_session_error(b));
	cr_assert(ra == NBX_EVERSION || ra == NBX_ECLOSED, "%d %s", ra,
	    sync_session_error(a));
	cr_assert(strstr(sync_session_error(b), "no common protocol version"),
	    "%s", sync_session_error(b));
	cr_assert(sync_session_stats(a)->no_common_version);
	cr_assert(sync_session_stats(b)->no_common_version);
	sync_session_free(a);
	sync_session_free(b);
	node_close(&ee);
	node_close(&lv);
}

Test(v2, schema_digest_differs)
{
	struct node ee, lv;
	struct sync_opts oa = { 0 }, ob = { 0 };
	struct link l;
	struct link *ls[] = { &l };

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	ob.schema[0] = 1;
	memset(&l, 0, sizeof(l));
	l.n[0] = &ee;
	l.n[1] = &lv;
	cr_assert_eq(sync_session_new(ee.st, pol, "lv", &oa, &l.s[0]), 0);
	cr_assert_eq(sync_session_new(lv.st, pol, "ee", &ob, &l.s[1]), 0);
	cr_assert_eq(sync_session_start(l.s[0], T0), 0);
	cr_assert_eq(sync_session_start(l.s[1], T0), 0);
	put(&ee, "ee:1", "name", "x", T0);
	run(ls, 1, T0, 100);
	cr_assert_eq(st_of(&l, 0)->schema_match, 0);
	cr_assert_eq(st_of(&l, 1)->schema_match, 0);
	assert_same(&ee, &lv, "ee:1", "name", NULL);	/* still syncs */
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* A reconciliation frame on a version-1 session is a violation. */
Test(v2, recon_on_version_1_refused)
{
	struct node ee, lv;
	struct sync_opts o1 = { .version_max = 1 };
	struct sync_session *s;
	struct nbx_buf b;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	nbx_buf_init(&b, 1 << 20);
	cr_assert_eq(sync_session_new(lv.st, pol, "ee", &o1, &s), 0);
	cr_assert_eq(sync_session_start(s, T0), 0);
	cr_assert_eq(frame_put_hello(&b, 1, nbx_str_c("ee"), 7), 0);
	cr_assert_eq(frame_put_recon(&b, 3, "", 0), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), NBX_EPEER);
	cr_assert(strstr(sync_session_error(s), "RECON in protocol version 1"),
	    "%s", sync_session_error(s));
	sync_session_free(s);
	nbx_buf_fini(&b);
	node_close(&ee);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* Reconciliation                                                      */
/* ------------------------------------------------------------------ */

/*
 * The repro: a backup of ee, then ee writes three records and
 * renames one, lv writes one; ee is restored from the backup.  The log
 * stream alone leaves ee without its own later records (lv leaves out
 * ee's own changes); reconciliation brings every one back.
 */
Test(v2, restore_from_backup)
{
	struct node ee, lv;
	struct link l;
	struct link *ls[] = { &l };
	char *backup, v[64];

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < 6; i++) {
		char id[16];

		snprintf(id, sizeof(id), "ee:%d", i);
		put(&ee, id, "name", "before", T0 + (uint64_t)i);
	}
	link_open(&l, &ee, &lv, NULL, T0 + 10);
	run(ls, 1, T0 + 10, 100);
	link_close(&l);
	backup = node_backup(&ee);
	put(&ee, "ee:a", "name", "after", T0 + 100);
	put(&ee, "ee:b", "name", "after", T0 + 101);
	put(&ee, "ee:c", "name", "after", T0 + 102);
	put(&ee, "ee:0", "name", "renamed", T0 + 103);
	put(&lv, "lv:x", "name", "lv's", T0 + 104);
	link_open(&l, &ee, &lv, NULL, T0 + 200);
	run(ls, 1, T0 + 200, 100);
	link_close(&l);
	digests_equal(&ee, &lv);
	/* ee restored: it lost a, b, c and the rename */
	node_restore(&ee, backup);
	cr_assert(!get(&ee, "ee:a", "name", NULL, v, sizeof(v)));
	link_open(&l, &ee, &lv, NULL, T0 + 300);
	run(ls, 1, T0 + 300, 200);
	cr_assert_geq(st_of(&l, 0)->recon_runs, 1);
	assert_same(&ee, &lv, "ee:a", "name", NULL);
	assert_same(&ee, &lv, "ee:b", "name", NULL);
	assert_same(&ee, &lv, "ee:c", "name", NULL);
	assert_same(&ee, &lv, "ee:0", "name", NULL);
	cr_assert(get(&ee, "ee:0", "name", NULL, v, sizeof(v)));
	cr_assert_str_eq(v, "renamed");
	assert_same(&ee, &lv, "lv:x", "name", NULL);
	digests_equal(&ee, &lv);
	/* and a write of the restored ee reaches lv */
	put(&ee, "ee:d", "name", "later", T0 + 400);
	run(ls, 1, T0 + 400, 100);
	assert_same(&ee, &lv, "ee:d", "name", NULL);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* In-sync nodes: a run on demand finds nothing and sends no record. */
Test(v2, in_sync_sends_no_record)
{
	struct node ee, lv;
	struct link l;
	struct link *ls[] = { &l };
	uint64_t before;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < 500; i++) {
		char id[16];

		snprintf(id, sizeof(id), "ee:%d", i);
		put(&ee, id, "name", "x", T0 + (uint64_t)i);
	}
	link_open(&l, &ee, &lv, NULL, T0 + 1000);
	run(ls, 1, T0 + 1000, 100);
	before = st_of(&l, 0)->recon_runs;
	cr_assert_eq(sync_session_reconcile(l.s[1]), 0, "either end may ask");
	cr_assert_eq(sync_session_reconcile(l.s[0]), 0);
	run(ls, 1, T0 + 1001, 100);
	cr_assert_eq(st_of(&l, 0)->recon_runs, before + 1);
	cr_assert_eq(st_of(&l, 1)->recon_runs, 1);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(st_of(&l, i)->recon_changes_out, 0);
		cr_assert_eq(st_of(&l, i)->recon_wanted, 0);
	}
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* Moves side from's bytes to the other side, checking none holds s. */
static size_t
deliver_without(struct link *l, int from, uint64_t now, const void *s,
    size_t slen)
{
	const uint8_t *p;
	size_t n = sync_session_pending(l->s[from], &p);

	cr_assert(n == 0 || memmem(p, n, s, slen) == NULL,
	    "%s sent bytes it must never send to %s", l->n[from]->id,
	    l->n[!from]->id);
	return deliver(l, from, now);
}

/*
 * Asserts that no reconciliation frame s queued (RECON, WANT, RECORDS)
 * holds the key hash kh (8 bytes) or the id, and no frame at all holds
 * the value HIDDEN.  (The log stream may name the id of a record of a
 * collection with region fields in an erasure receipt: policy.c.)
 */
static void
recon_frames_without(struct sync_session *s, const uint8_t *kh,
    const char *id)
{
	const uint8_t *p, *body;
	size_t n = sync_session_pending(s, &p), blen, used;
	struct frame_msg m;

	cr_assert(n == 0 || memmem(p, n, "HIDDEN", 6) == NULL);
	while (n > 0) {
		cr_assert_eq(frame_split(p, n, FRAME_BODY_MAX, &body, &blen,
		    &used), 0);
		cr_assert_eq(frame_decode(body, blen, &m), 0);
		if (m.type == FRAME_RECON || m.type == FRAME_WANT ||
		    m.type == FRAME_RECORDS) {
			cr_assert(memmem(body, blen, kh, 8) == NULL, "a %d "
			    "frame holds the key hash of a record the peer "
			    "may not see", m.type);
			cr_assert(memmem(body, blen, id, strlen(id)) == NULL,
			    "a %d frame holds the id of a record the peer "
			    "may not see", m.type);
		}
		p += used;
		n -= used;
	}
}

/*
 * A record lv may not see (audience ee, fi) leaves no trace on the link
 * to lv during reconciliation: not its id, not its key hash, while lv
 * wants everything (a rebuilt lv) and ee restored wants what lv has.
 */
Test(v2, canary_never_crosses)
{
	struct node ee, lv;
	struct link l;
	uint64_t kh = store_key_hash(nbx_str_c("t"), nbx_str_c("ee:canary"));
	uint8_t khb[8];
	char v[64];

	for (int i = 0; i < 8; i++)
		khb[i] = (uint8_t)(kh >> (56 - 8 * i));
	node_open(&ee, "ee");
	node_open(&lv, "lv");
	put_aud(&ee, "ee:canary", T0, 2, "ee", "fi");
	put(&ee, "ee:canary", "secret", "CANARY-SECRET", T0 + 1);
	put(&ee, "ee:canary", "name", "CANARY-NAME", T0 + 2);
	for (int i = 0; i < 100; i++) {
		char id[16];

		snprintf(id, sizeof(id), "ee:%d", i);
		put(&ee, id, "name", "x", T0 + 10 + (uint64_t)i);
	}
	/* the region field of the canary may go; only the audience part not */
	link_open(&l, &ee, &lv, NULL, T0 + 1000);
	for (int round = 0; round < 200; round++) {
		size_t moved = 0;

		for (int j = 0; j < 2; j++)
			cr_assert_eq(sync_session_pump(l.s[j], T0 + 1000), 0);
		moved += deliver_without(&l, 0, T0 + 1000, "CANARY-SECRET",
		    13);
		moved += deliver(&l, 1, T0 + 1000);
		if (moved == 0)
			break;
	}
	cr_assert(!get(&lv, "ee:canary", "secret", NULL, v, sizeof(v)));
	link_close(&l);
	/* now a record with nothing lv may hold: no item, no key hash */
	put_aud(&ee, "ee:hidden", T0 + 2000, 2, "ee", "fi");
	put(&ee, "ee:hidden", "secret", "HIDDEN", T0 + 2001);
	kh = store_key_hash(nbx_str_c("t"), nbx_str_c("ee:hidden"));
	for (int i = 0; i < 8; i++)
		khb[i] = (uint8_t)(kh >> (56 - 8 * i));
	node_close(&lv);
	node_open(&lv, "lv");		/* rebuilt: wants everything */
	link_open(&l, &ee, &lv, NULL, T0 + 3000);
	cr_assert_eq(sync_session_reconcile(l.s[0]), NBX_EAGAIN);
	for (int round = 0; round < 200; round++) {
		size_t moved = 0;

		for (int j = 0; j < 2; j++)
			cr_assert_eq(sync_session_pump(l.s[j], T0 + 3000), 0);
		recon_frames_without(l.s[0], khb, "ee:hidden");
		moved += deliver(&l, 0, T0 + 3000);
		moved += deliver(&l, 1, T0 + 3000);
		if (moved == 0)
			break;
	}
	cr_assert_geq(st_of(&l, 0)->recon_runs, 1);
	digests_equal(&ee, &lv);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* A WANT for a record the peer may not see is not answered. */
Test(v2, want_outside_policy_unanswered)
{
	struct node ee, lv;
	struct link l;
	struct link *ls[] = { &l };
	struct nbx_buf b;
	uint64_t kh;
	const uint8_t *p;
	size_t n;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	nbx_buf_init(&b, 1 << 20);
	put_aud(&ee, "ee:hidden", T0, 2, "ee", "fi");
	put(&ee, "ee:hidden", "secret", "HIDDEN", T0 + 1);
	link_open(&l, &ee, &lv, NULL, T0 + 10);
	run(ls, 1, T0 + 10, 100);
	kh = store_key_hash(nbx_str_c("t"), nbx_str_c("ee:hidden"));
	cr_assert_eq(frame_put_want(&b, &kh, 1), 0);
	cr_assert_eq(sync_session_feed(l.s[0], b.p, b.len, T0 + 11), 0);
	cr_assert_eq(sync_session_pump(l.s[0], T0 + 11), 0);
	n = sync_session_pending(l.s[0], &p);
	cr_assert(n == 0 || memmem(p, n, "HIDDEN", 6) == NULL);
	cr_assert_eq(count_frames(p, n, FRAME_RECORDS, NULL), 0);
	link_close(&l);
	nbx_buf_fini(&b);
	node_close(&ee);
	node_close(&lv);
}

/* A RECON payload that is not one ends the session with a reason. */
Test(v2, malformed_recon_ends_session)
{
	struct node ee, lv;
	struct link l;
	struct link *ls[] = { &l };
	struct nbx_buf b;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	nbx_buf_init(&b, 1 << 20);
	link_open(&l, &ee, &lv, NULL, T0);
	run(ls, 1, T0, 100);
	cr_assert_eq(frame_put_recon(&b, 9, "\x93\x01\x02", 3), 0);
	cr_assert_eq(sync_session_feed(l.s[0], b.p, b.len, T0),
	    NBX_EMALFORMED);
	cr_assert(strstr(sync_session_error(l.s[0]), "malformed RECON"),
	    "%s", sync_session_error(l.s[0]));
	link_close(&l);
	nbx_buf_fini(&b);
	node_close(&ee);
	node_close(&lv);
}

/*
 * A hostile peer asking for everything again and again (one IDS range
 * over the whole key space, empty) makes what waits to be sent grow to
 * one entry per record, not per message.
 */
Test(v2, repeated_asks_stay_bounded)
{
	struct node ee, lv;
	struct link l;
	struct link *ls[] = { &l };
	struct nbx_buf b;
	static const uint8_t all[] = { 0x93, 0xc0, 0x02, 0xc4, 0x00 };
	const struct sync_recon *r;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	nbx_buf_init(&b, 1 << 20);
	for (int i = 0; i < 300; i++) {
		char id[16];

		snprintf(id, sizeof(id), "ee:%d", i);
		put(&ee, id, "name", "x", T0 + (uint64_t)i);
	}
	link_open(&l, &ee, &lv, NULL, T0 + 1000);
	run(ls, 1, T0 + 1000, 100);
	for (int k = 0; k < 50; k++) {
		b.len = 0;
		cr_assert_eq(frame_put_recon(&b, (uint64_t)k * 2 + 3, all,
		    sizeof(all)), 0);
		cr_assert_eq(sync_session_feed(l.s[0], b.p, b.len, T0 + 1001),
		    0, "%s", sync_session_error(l.s[0]));
	}
	r = &l.s[0]->rc;	/* session_int.h */
	cr_assert_leq(r->nsend, 300, "%zu hashes wait", r->nsend);
	cr_assert_leq(r->keys.len, 300 * 12, "%zu bytes of keys wait",
	    r->keys.len);
	link_close(&l);
	nbx_buf_fini(&b);
	node_close(&ee);
	node_close(&lv);
}
