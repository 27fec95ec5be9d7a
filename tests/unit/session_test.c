/*
 * session_test.c - the sync protocol run whole, in memory: real LMDB
 * stores, one session per direction, bytes moved between them by the
 * test.  Checks convergence, what never leaves a node (local fields,
 * audience fields outside their audience, down to the bytes of the data
 * file), narrowing, resumption from the stored cursor, a rebuilt peer,
 * identity, byte-at-a-time input, hostile frames, quarantine, the window
 * and the timers.
 */
#include "synctest.h"

TestSuite(session, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------------ */
/* (a) concurrent writers converge                                     */
/* ------------------------------------------------------------------ */

/* Writes record <node>:<i> with every kind of field. */
static void
write_record(struct node *n, int i, const char *peer, uint64_t now)
{
	char id[64], v[64];

	snprintf(id, sizeof(id), "%s:%d", n->id, i);
	snprintf(v, sizeof(v), "%s name %d", n->id, i);
	put(n, id, "name", v, now);
	snprintf(v, sizeof(v), "%s LOCAL note %d", n->id, i);
	put(n, id, "note", v, now);
	put_elem(n, id, "tags", i % 2 ? "odd" : "even", now);
	if (i % 2 == 0) {
		if (strcmp(n->id, peer) < 0)
			put_aud(n, id, now, 2, n->id, peer);
		else
			put_aud(n, id, now, 2, peer, n->id);
	} else {
		put_aud(n, id, now, 1, n->id);
	}
	snprintf(v, sizeof(v), "%s secret %d", n->id, i);
	put(n, id, "secret", v, now);
}

/* What `b` must see of record <a>:<i> written by write_record. */
static void
check_record(struct node *a, struct node *b, int i)
{
	char id[64], v[256];

	snprintf(id, sizeof(id), "%s:%d", a->id, i);
	assert_same(a, b, id, "name", NULL);
	assert_same(a, b, id, "tags", i % 2 ? "odd" : "even");
	cr_assert(get(a, id, "note", NULL, v, sizeof(v)));
	assert_absent(b, id, "note");
	if (i % 2 == 0)
		assert_same(a, b, id, "secret", NULL);
	else
		assert_absent(b, id, "secret");
}

Test(session, concurrent_writers_converge)
{
	struct node ee, lv;
	struct link l;
	uint64_t q;
	char va[64], vb[64];
	struct change del = test_change(CHANGE_STATE, "ee:3", NULL);

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < 20; i++) {
		write_record(&ee, i, "lv", T0 + (uint64_t)i);
		write_record(&lv, i, "ee", T0 + (uint64_t)i);
	}
	link_open(&l, &ee, &lv, NULL, T0 + 100);
	run1(&l, T0 + 100);
	for (int i = 0; i < 20; i++) {
		check_record(&ee, &lv, i);
		check_record(&lv, &ee, i);
	}
	/* nothing was refused: egress never offers what ingress rejects */
	meta_of(&ee, &q);
	cr_assert_eq(q, 0);
	meta_of(&lv, &q);
	cr_assert_eq(q, 0);
	cr_assert(sync_session_stats(l.s[0])->established);

	/* concurrent writes of one audience-writable field: one wins */
	put(&ee, "ee:0", "status", "a", T0 + 200);
	put(&lv, "ee:0", "status", "c", T0 + 200);
	put(&ee, "ee:2", "name", "renamed", T0 + 200);
	del.val.t = NBX_V_INT;
	del.val.i = REC_DELETED;
	apply_local(&ee, &del, 1, T0 + 200);
	cr_assert_eq(sync_session_pump(l.s[0], T0 + 200), 0);
	run1(&l, T0 + 200);
	assert_same(&ee, &lv, "ee:0", "status", NULL);
	cr_assert(get(&ee, "ee:0", "status", NULL, va, sizeof(va)));
	cr_assert(get(&lv, "ee:0", "status", NULL, vb, sizeof(vb)));
	cr_assert_str_eq(va, "c", "same hlc: greater origin wins");
	assert_same(&ee, &lv, "ee:2", "name", NULL);
	cr_assert_eq(rec_state(&lv, "ee:3"), REC_DELETED);
	cr_assert_eq(rec_state(&lv, "ee:4"), REC_LIVE);
	cr_assert_eq(sync_session_stats(l.s[1])->recv_seq,
	    sync_session_stats(l.s[0])->sent_seq);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* (b) a line ee - lv - fi                                             */
/* ------------------------------------------------------------------ */

struct audit_scan {
	int entries, secret_items, note_items;
};

static void
scan_audit(struct node *n, const char *peer, struct audit_scan *a)
{
	struct store_rtxn *t;
	struct store_audit_entry e;
	uint64_t after = 0;

	memset(a, 0, sizeof(*a));
	cr_assert_eq(store_rtxn_begin(n->st, &t), 0);
	while (store_audit_next(t, after, &e) == 0) {
		after = e.aseq;
		if (!nbx_str_eq(e.peer, nbx_str_c(peer)))
			continue;
		a->entries++;
		for (uint32_t i = 0; i < e.nitems; i++)
			if (nbx_str_eq(e.items[i].field, nbx_str_c("secret")))
				a->secret_items++;
			else if (nbx_str_eq(e.items[i].field,
			    nbx_str_c("note")))
				a->note_items++;
	}
	store_rtxn_end(t);
}

Test(session, line_topology_relays_only_what_policy_permits)
{
	struct node ee, lv, fi;
	struct link l1, l2, *ls[2] = { &l1, &l2 };
	struct audit_scan au;
	uint64_t q;
	char v[256];

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	node_open(&fi, "fi");
	put(&ee, "ee:1", "name", "Tallinn shelter", T0);
	put(&ee, "ee:1", "note", "LOCAL-CANARY-91c2", T0);
	put_aud(&ee, "ee:1", T0, 2, "ee", "lv");
	put(&ee, "ee:1", "secret", "AUD-CANARY-7f3e", T0);
	put(&ee, "ee:2", "name", "Riga route", T0);
	put_aud(&ee, "ee:2", T0, 3, "ee", "fi", "lv");
	put(&ee, "ee:2", "secret", "shared with fi", T0);
	link_open(&l1, &ee, &lv, NULL, T0);
	link_open(&l2, &lv, &fi, NULL, T0);
	run(ls, 2, T0, 1000);

	assert_same(&ee, &fi, "ee:1", "name", NULL);
	assert_same(&ee, &lv, "ee:1", "secret", NULL);
	assert_absent(&fi, "ee:1", "secret");
	assert_absent(&lv, "ee:1", "note");
	assert_absent(&fi, "ee:1", "note");
	assert_same(&ee, &fi, "ee:2", "secret", NULL);
	cr_assert(get(&lv, "ee:1", "secret", NULL, v, sizeof(v)));
	cr_assert(file_has(&lv, "AUD-CANARY-7f3e"), "control: the scan works");
	cr_assert(!file_has(&fi, "AUD-CANARY-7f3e"),
	    "an audience value reached a node outside its audience");
	cr_assert(!file_has(&fi, "LOCAL-CANARY-91c2"));
	cr_assert(!file_has(&lv, "LOCAL-CANARY-91c2"));
	meta_of(&fi, &q);
	cr_assert_eq(q, 0, "lv offered fi something fi had to refuse");
	cr_assert_eq(aud_size(&fi, "ee:1"), 0,
	    "fi, outside the audience and never sent the record before, "
	    "is not told the audience");
	cr_assert_eq(aud_size(&fi, "ee:2"), 3);
	/* the disclosure log names what went, and nothing that did not */
	scan_audit(&lv, "fi", &au);
	cr_assert_gt(au.entries, 0);
	scan_audit(&ee, "lv", &au);
	cr_assert_gt(au.entries, 0);
	/* two secrets, again with their record when lv's receipt naming
	   it a holder came back (store/apply.c note_holder); no note */
	cr_assert_geq(au.secret_items, 2, "ee disclosed two secrets to lv");
	cr_assert_eq(au.note_items, 0, "ee disclosed a local note to lv");

	/* a later write moves through lv without widening either */
	put(&ee, "ee:1", "secret", "AUD-CANARY-second", T0 + 10);
	cr_assert_eq(sync_session_pump(l1.s[0], T0 + 10), 0);
	run(ls, 2, T0 + 10, 1000);
	assert_same(&ee, &lv, "ee:1", "secret", NULL);
	cr_assert(!file_has(&fi, "AUD-CANARY"));
	link_close(&l1);
	link_close(&l2);
	node_close(&ee);
	node_close(&lv);
	node_close(&fi);
}

/* ------------------------------------------------------------------ */
/* (c) narrowing the audience purges the removed node                  */
/* ------------------------------------------------------------------ */

Test(session, narrowing_the_audience_purges_the_removed_node)
{
	struct node ee, lv;
	struct link l;
	char v[256];

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	put(&ee, "ee:1", "name", "case 1", T0);
	put_aud(&ee, "ee:1", T0, 2, "ee", "lv");
	put(&ee, "ee:1", "secret", "NARROW-CANARY", T0);
	link_open(&l, &ee, &lv, NULL, T0);
	run1(&l, T0);
	cr_assert(get(&lv, "ee:1", "secret", NULL, v, sizeof(v)));
	cr_assert_str_eq(v, "NARROW-CANARY");

	put_aud(&ee, "ee:1", T0 + 1000, 1, "ee");
	cr_assert_eq(sync_session_pump(l.s[0], T0 + 1000), 0);
	run1(&l, T0 + 1000);
	assert_absent(&lv, "ee:1", "secret");
	assert_same(&ee, &lv, "ee:1", "name", NULL);
	cr_assert(get(&ee, "ee:1", "secret", NULL, v, sizeof(v)),
	    "the creator keeps its value");

	/* a later write of the secret does not reach lv any more */
	put(&ee, "ee:1", "secret", "NARROW-CANARY-2", T0 + 2000);
	run1(&l, T0 + 2000);
	assert_absent(&lv, "ee:1", "secret");
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/*
 * Line ee - fi - lt.  ee got lt's case through fi; fi is then rebuilt
 * from empty and takes the case back from ee first, so it has disclosed
 * nothing of it to ee (nor remembers that it once did).  lt then removes
 * ee: the creator's pending revocation receipt names ee, and fi tells ee
 * through it, so ee purges the value and answers that it has.
 */
Test(session, a_removed_node_learns_it_through_a_rebuilt_relay)
{
	struct node ee, fi, lt;
	struct link l1, l2, *ls[2] = { &l1, &l2 };
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_receipt *x;
	char v[256];

	node_open(&ee, "ee");
	node_open(&fi, "fi");
	node_open(&lt, "lt");
	put(&lt, "lt:1", "name", "case 1", T0);
	put_aud(&lt, "lt:1", T0, 3, "ee", "fi", "lt");
	put(&lt, "lt:1", "secret", "RELAY-WIPE-CANARY", T0);
	link_open(&l1, &ee, &fi, NULL, T0);
	link_open(&l2, &fi, &lt, NULL, T0);
	run(ls, 2, T0, 1000);
	cr_assert(get(&ee, "lt:1", "secret", NULL, v, sizeof(v)));
	link_close(&l1);
	link_close(&l2);

	node_rebuild(&fi);
	link_open(&l1, &ee, &fi, NULL, T0 + 10);
	run1(&l1, T0 + 10);
	cr_assert(get(&fi, "lt:1", "secret", NULL, v, sizeof(v)),
	    "the rebuilt relay took the case back from ee");
	link_open(&l2, &fi, &lt, NULL, T0 + 10);
	run(ls, 2, T0 + 10, 1000);

	put_aud(&lt, "lt:1", T0 + 20, 2, "fi", "lt");
	cr_assert_eq(sync_session_pump(l2.s[1], T0 + 20), 0);
	run(ls, 2, T0 + 20, 1000);
	assert_absent(&ee, "lt:1", "secret");
	assert_same(&fi, &lt, "lt:1", "secret", NULL);
	assert_same(&ee, &lt, "lt:1", "name", NULL);
	cr_assert_eq(aud_size(&ee, "lt:1"), 2, "ee knows the new audience");
	/* ee's own receipt says it purged; the creator's named it */
	cr_assert_eq(store_rtxn_begin(ee.st, &t), 0);
	cr_assert_eq(store_record_get(t, nbx_str_c("t"), nbx_str_c("lt:1"),
	    &r), 0);
	x = crdt_record_receipt(&r, nbx_str_c("revoke"), nbx_str_c("ee"));
	cr_assert(x != NULL && x->state == RECEIPT_DONE);
	crdt_record_fini(&r);
	store_rtxn_end(t);
	link_close(&l1);
	link_close(&l2);
	node_close(&ee);
	node_close(&fi);
	node_close(&lt);
}

/* The audience version n's copy of (id, field) is stamped with. */
static uint64_t
stamp_of(struct node *n, const char *id, const char *field)
{
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_reg *g;
	uint64_t h = 0;

	cr_assert_eq(store_rtxn_begin(n->st, &t), 0);
	if (store_record_get(t, nbx_str_c("t"), nbx_str_c(id), &r) == 0 &&
	    (g = crdt_record_find(&r, nbx_str_c(field),
	    (struct nbx_str){ "", 0 })) != NULL)
		h = g->aud.hlc;
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return h;
}

/*
 * lv answers ee's case; ee widens the audience and re-stamps lv's answer
 * with it.  That copy goes back to lv too, although lv wrote the value:
 * lv lacks the new stamp, and without it the pair never agrees.
 */
Test(session, a_writer_gets_its_value_back_restamped)
{
	struct node ee, lv;
	struct link l;
	uint8_t x[32], y[32];
	uint64_t nr, nc;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	put_aud(&ee, "ee:1", T0, 2, "ee", "lv");
	link_open(&l, &ee, &lv, NULL, T0);
	run1(&l, T0);
	put(&lv, "ee:1", "status", "a", T0 + 10);
	cr_assert_eq(sync_session_pump(l.s[1], T0 + 10), 0);
	run1(&l, T0 + 10);
	put_aud(&ee, "ee:1", T0 + 20, 3, "ee", "fi", "lv");
	cr_assert_eq(sync_session_pump(l.s[0], T0 + 20), 0);
	run1(&l, T0 + 20);
	assert_same(&ee, &lv, "ee:1", "status", NULL);
	cr_assert_geq(stamp_of(&ee, "ee:1", "status"), HLC_MAKE(T0 + 20, 0),
	    "ee re-stamped lv's value");
	cr_assert_eq(stamp_of(&lv, "ee:1", "status"),
	    stamp_of(&ee, "ee:1", "status"), "lv holds the re-stamped copy");
	cr_assert_eq(store_pair_digest(ee.st, pol, nbx_str_c("lv"), x, &nr,
	    &nc), 0);
	cr_assert_eq(store_pair_digest(lv.st, pol, nbx_str_c("ee"), y, &nr,
	    &nc), 0);
	cr_assert_eq(memcmp(x, y, 32), 0, "ee and lv digests differ");
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* (d) resume from the stored cursor                                   */
/* ------------------------------------------------------------------ */

#define BIG 5000

Test(session, interrupted_stream_resumes_from_the_cursor)
{
	struct node ee, lv;
	struct link l;
	struct store_cursor cur;
	struct sync_opts o = { .batch_bytes = 2048, .window = 4 };
	struct change c[10];
	char ids[10][32], names[10][32], v[64];
	uint64_t mid, records;
	int rounds = 0;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < BIG; i += 10) {
		for (int j = 0; j < 10; j++) {
			snprintf(ids[j], sizeof(ids[j]), "ee:%d", i + j);
			snprintf(names[j], sizeof(names[j]), "n%d", i + j);
			c[j] = test_str(ids[j], "name", names[j]);
		}
		apply_local(&ee, c, 10, T0);
	}
	link_open(&l, &ee, &lv, &o, T0);
	/* run a round at a time until lv applied about half */
	do {
		for (int j = 0; j < 2; j++)
			cr_assert_eq(sync_session_pump(l.s[j], T0), 0);
		deliver(&l, 0, T0);
		deliver(&l, 1, T0);
		cr_assert_eq(store_cursor_get(lv.st, nbx_str_c("ee"), &cur), 0);
		cr_assert_lt(++rounds, 10000);
	} while (cur.seq < BIG / 2);
	mid = cur.seq;
	cr_assert_lt(mid, BIG, "stopped before the end");
	/* drop the connection with whatever was in flight */
	link_close(&l);

	link_open(&l, &ee, &lv, &o, T0 + 5);
	run1(&l, T0 + 5);
	cr_assert_eq(sync_session_stats(l.s[0])->changes_out, BIG - mid,
	    "resumed after %llu, not from 0", (unsigned long long)mid);
	cr_assert_eq(sync_session_stats(l.s[1])->recv_seq, BIG);
	records = meta_of(&lv, NULL);
	cr_assert_eq(records, BIG);
	for (int i = 0; i < BIG; i += 499) {
		snprintf(ids[0], sizeof(ids[0]), "ee:%d", i);
		snprintf(names[0], sizeof(names[0]), "n%d", i);
		cr_assert(get(&lv, ids[0], "name", NULL, v, sizeof(v)));
		cr_assert_str_eq(v, names[0]);
	}
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* (e) a rebuilt store (new epoch) gets everything from 0              */
/* ------------------------------------------------------------------ */

Test(session, new_epoch_restarts_from_zero)
{
	struct node ee, lv;
	struct link l;
	struct store_cursor before, after;
	struct store_meta m;
	char id[32];

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < 100; i++) {
		snprintf(id, sizeof(id), "ee:%d", i);
		put(&ee, id, "name", "old", T0);
	}
	put(&lv, "lv:1", "name", "from lv", T0);
	link_open(&l, &ee, &lv, NULL, T0);
	run1(&l, T0);
	link_close(&l);
	cr_assert_eq(store_cursor_get(lv.st, nbx_str_c("ee"), &before), 0);
	cr_assert_geq(before.seq, 100);

	/*
	 * ee is rebuilt empty and writes more than lv's old cursor covers:
	 * had ee honoured that cursor, lv would miss the first 101.
	 */
	node_rebuild(&ee);
	for (int i = 0; i < 150; i++) {
		snprintf(id, sizeof(id), "ee:new%d", i);
		put(&ee, id, "name", "after rebuild", T0 + 10);
	}
	cr_assert_eq(store_meta_get(ee.st, &m), 0);
	cr_assert_neq(m.epoch, before.epoch);
	cr_assert_gt(m.last_seq, before.seq);
	link_open(&l, &ee, &lv, NULL, T0 + 10);
	run1(&l, T0 + 10);
	assert_same(&ee, &lv, "ee:new0", "name", NULL);
	assert_same(&ee, &lv, "ee:new149", "name", NULL);
	/* and lv, asked from 0 by the new ee, gave everything back */
	assert_same(&ee, &lv, "ee:42", "name", NULL);
	assert_same(&ee, &lv, "lv:1", "name", NULL);
	cr_assert_eq(meta_of(&ee, NULL), 251);
	cr_assert_eq(store_cursor_get(lv.st, nbx_str_c("ee"), &after), 0);
	cr_assert_eq(after.epoch, m.epoch);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/*
 * A node does not stream a peer's own changes back to it (the peer made
 * them, so it has them), except to a peer that subscribed from the start
 * of the log: that may be a rebuilt store recovering its own records, and
 * it gets everything until one whole pass was acknowledged, also across
 * a dropped connection.
 */
Test(session, own_changes_are_not_echoed_but_a_rebuilt_peer_gets_them)
{
	struct node ee, lv;
	struct link l;
	struct store_cursor cur;
	struct sync_opts o = { .batch_bytes = 2048, .window = 2 };
	char id[32];
	int rounds = 0;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	link_open(&l, &ee, &lv, &o, T0);
	run1(&l, T0);			/* both logs empty: passes done */
	for (int i = 0; i < 300; i++) {
		snprintf(id, sizeof(id), "ee:%d", i);
		put(&ee, id, "name", "from ee", T0 + 1);
	}
	put(&lv, "lv:1", "name", "from lv", T0 + 1);
	cr_assert_eq(sync_session_pump(l.s[0], T0 + 1), 0);
	cr_assert_eq(sync_session_pump(l.s[1], T0 + 1), 0);
	run1(&l, T0 + 1);
	cr_assert_eq(meta_of(&lv, NULL), 301);
	cr_assert_eq(meta_of(&ee, NULL), 301);
	/* lv relogged ee's 300 records, but sent ee only its own one */
	cr_assert_eq(sync_session_stats(l.s[1])->changes_out, 1,
	    "lv sent %llu changes to ee", (unsigned long long)
	    sync_session_stats(l.s[1])->changes_out);
	link_close(&l);

	/* ee loses its store; the first pass from lv is cut half way */
	node_rebuild(&ee);
	link_open(&l, &ee, &lv, &o, T0 + 5);
	do {
		for (int j = 0; j < 2; j++)
			cr_assert_eq(sync_session_pump(l.s[j], T0 + 5), 0);
		deliver(&l, 0, T0 + 5);
		deliver(&l, 1, T0 + 5);
		cr_assert_eq(store_cursor_get(ee.st, nbx_str_c("lv"), &cur), 0);
		cr_assert_lt(++rounds, 10000);
	} while (meta_of(&ee, NULL) < 100);
	cr_assert_lt(meta_of(&ee, NULL), 301, "the pass was not cut");
	cr_assert_gt(cur.seq, 0);
	link_close(&l);

	/* resumed from ee's cursor, still a full pass: nothing is missing */
	link_open(&l, &ee, &lv, &o, T0 + 6);
	run1(&l, T0 + 6);
	cr_assert_eq(meta_of(&ee, NULL), 301);
	for (int i = 0; i < 300; i += 37) {
		snprintf(id, sizeof(id), "ee:%d", i);
		assert_same(&ee, &lv, id, "name", NULL);
	}
	link_close(&l);

	/* the pass is done: ee's next write is not echoed */
	link_open(&l, &ee, &lv, &o, T0 + 7);
	run1(&l, T0 + 7);
	put(&ee, "ee:new", "name", "later", T0 + 8);
	cr_assert_eq(sync_session_pump(l.s[0], T0 + 8), 0);
	run1(&l, T0 + 8);
	assert_same(&ee, &lv, "ee:new", "name", NULL);
	cr_assert_eq(sync_session_stats(l.s[1])->changes_out, 0);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* 1 if node n's copy of t/id has a pending receipt naming `holder`. */
static int
holder_named(struct node *n, const char *id, const char *holder)
{
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_receipt *x;
	int named = 0;

	cr_assert_eq(store_rtxn_begin(n->st, &t), 0);
	if (store_record_get(t, nbx_str_c("t"), nbx_str_c(id), &r) == 0) {
		x = crdt_record_receipt(&r, nbx_str_c("erase"),
		    nbx_str_c(holder));
		named = x != NULL && x->state == RECEIPT_PENDING;
	}
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return named;
}

/*
 * A relay does not stream a record back to the peer that sent it every
 * version the relay holds, but does as soon as it holds one that peer did
 * not send: its own receipt naming it a holder (store/apply.c
 * note_holder), once, then a field of its own.  The line ee - lv - lt: lt
 * hears of ee's writes only through lv, and sends lv a stale copy of ee's
 * record with a field of its own.
 */
Test(session, a_record_goes_back_to_its_sender_only_with_something_new)
{
	struct node ee, lv, lt;
	struct link l1, l2, *ls[2] = { &l1, &l2 };
	char v[256];
	uint64_t out;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	node_open(&lt, "lt");
	put_aud(&ee, "ee:1", T0, 3, "ee", "lv", "lt");
	put(&ee, "ee:1", "name", "v1", T0);
	link_open(&l1, &ee, &lv, NULL, T0);
	link_open(&l2, &lv, &lt, NULL, T0);
	run(ls, 2, T0, 1000);
	assert_same(&ee, &lt, "ee:1", "name", NULL);
	cr_assert(holder_named(&ee, "ee:1", "lt"),
	    "lt's receipt naming it a holder reached ee through lv");
	/* that receipt went back once; the record goes back no more */
	out = sync_session_stats(l2.s[1])->changes_out;
	cr_assert_gt(out, 0);
	put(&ee, "ee:2", "name", "marker", T0 + 1);
	cr_assert_eq(sync_session_pump(l1.s[0], T0 + 1), 0);
	run(ls, 2, T0 + 1, 1000);
	assert_same(&ee, &lt, "ee:2", "name", NULL);
	cr_assert_eq(sync_session_stats(l2.s[1])->changes_out, out,
	    "lt sent lv back the record lv sent it (%llu changes)",
	    (unsigned long long)(sync_session_stats(l2.s[1])->changes_out -
	    out));

	/* lt sets a field of its own; ee renames the record, lv hears it */
	put(&lt, "ee:1", "status", "b", T0 + 5);
	put(&ee, "ee:1", "name", "v2", T0 + 5);
	run1(&l1, T0 + 5);
	assert_same(&ee, &lv, "ee:1", "name", NULL);
	/* before lv streams to lt, lt's copy arrives: name v1 and status */
	cr_assert_eq(sync_session_pump(l2.s[1], T0 + 5), 0);
	cr_assert_gt(deliver(&l2, 1, T0 + 5), 0);
	cr_assert_gt(sync_session_stats(l2.s[1])->changes_out, 0);
	run(ls, 2, T0 + 5, 1000);
	cr_assert(get(&lt, "ee:1", "name", NULL, v, sizeof(v)));
	cr_assert_str_eq(v, "v2", "lt never got the rename it did not send");
	assert_same(&ee, &lt, "ee:1", "name", NULL);
	assert_same(&lt, &ee, "ee:1", "status", NULL);
	assert_same(&lt, &lv, "ee:1", "status", NULL);
	link_close(&l1);
	link_close(&l2);
	node_close(&ee);
	node_close(&lv);
	node_close(&lt);
}

/* a and b hold the same value of id.field, or neither holds one. */
static void
same_or_none(struct node *a, struct node *b, const char *id,
    const char *field)
{
	char va[256], vb[256];
	int ha = get(a, id, field, NULL, va, sizeof(va));
	int hb = get(b, id, field, NULL, vb, sizeof(vb));

	cr_assert_eq(ha, hb, "%s.%s: %s %s it, %s %s", id, field, a->id,
	    ha ? "holds" : "lacks", b->id, hb ? "holds" : "lacks");
	if (ha)
		cr_assert_str_eq(va, vb, "%s.%s", id, field);
}

/*
 * Property: four nodes in a full mesh, a ring or a line (by the seed),
 * writes on every node (their own
 * records, and an audience field of shared records all four may write)
 * between pumps and deliveries of random links in random directions, with
 * small batches and a small window.  Whatever relays skip (own changes,
 * records a peer sent in full), every pair ends with equal digests and
 * equal values.  The seeds are printed; NBX_SEED=<n> replays one run,
 * NBX_PROP_ITERS sets how many runs (40).
 */
static void
mesh_run(unsigned seed)
{
	static const char *ids[4] = { "ee", "lv", "lt", "fi" };
	struct node nd[4];
	struct link lk[6], *ls[6];
	struct sync_opts o = { .batch_bytes = 512, .window = 2 };
	uint64_t rng = (uint64_t)seed * 2654435761u + 1, now = T0;
	char id[32], v[32];
	int k = 0, topo = (int)(seed % 3);

#define RND(n) ((unsigned)(test_xorshift(&rng) % (n)))
	for (int i = 0; i < 4; i++)
		node_open(&nd[i], ids[i]);
	for (int s = 0; s < 4; s++) {
		snprintf(id, sizeof(id), "ee:s%d", s);
		put_aud(&nd[0], id, now, 4, "ee", "lv", "lt", "fi");
		put(&nd[0], id, "name", "shared", now);
	}
	/* a full mesh, a ring or a line: relays matter in the last two */
	for (int a = 0; a < 4; a++)
		for (int b = a + 1; b < 4; b++) {
			if (topo == 1 && b != a + 1 && !(a == 0 && b == 3))
				continue;
			if (topo == 2 && b != a + 1)
				continue;
			link_open(&lk[k], &nd[a], &nd[b], &o, now);
			ls[k] = &lk[k];
			k++;
		}
	for (int step = 0; step < 600; step++) {
		unsigned r = RND(10), n = RND(4);

		now++;
		if (r < 2) {
			snprintf(id, sizeof(id), "%s:%u", ids[n], RND(12));
			snprintf(v, sizeof(v), "v%d", step);
			put(&nd[n], id, "name", v, now);
			if (RND(2))
				put_int(&nd[n], id, "count", RND(1000), now);
			if (RND(8) == 0) {	/* deleted; a later put revives */
				struct change del = test_change(CHANGE_STATE,
				    id, NULL);

				del.val.t = NBX_V_INT;
				del.val.i = REC_DELETED;
				apply_local(&nd[n], &del, 1, now);
			}
		} else if (r < 4) {
			static const char *st[3] = { "a", "b", "c" };

			snprintf(id, sizeof(id), "ee:s%u", RND(4));
			if (aud_size(&nd[n], id) > 0)	/* it has the record */
				put(&nd[n], id, "status", st[RND(3)], now);
		} else {
			struct link *l = &lk[RND((unsigned)k)];
			int j = (int)RND(2);

			cr_assert_eq(sync_session_pump(l->s[j], now), 0, "%s",
			    sync_session_error(l->s[j]));
			deliver(l, j, now);
		}
	}
#undef RND
	run(ls, k, now, 10000);
	for (int a = 0; a < 4; a++)
		for (int b = 0; b < 4; b++) {
			uint8_t x[32], y[32];
			uint64_t nr, nc;

			if (a == b)
				continue;
			cr_assert_eq(store_pair_digest(nd[a].st, pol,
			    nbx_str_c(ids[b]), x, &nr, &nc), 0);
			cr_assert_eq(store_pair_digest(nd[b].st, pol,
			    nbx_str_c(ids[a]), y, &nr, &nc), 0);
			cr_assert_eq(memcmp(x, y, 32), 0, "seed %u: %s and %s "
			    "differ", seed, ids[a], ids[b]);
			for (int i = 0; i < 12; i++) {
				snprintf(id, sizeof(id), "%s:%d", ids[a], i);
				same_or_none(&nd[a], &nd[b], id, "name");
				same_or_none(&nd[a], &nd[b], id, "count");
			}
		}
	for (int s = 0; s < 4; s++) {
		snprintf(id, sizeof(id), "ee:s%d", s);
		for (int i = 1; i < 4; i++)
			same_or_none(&nd[0], &nd[i], id, "status");
	}
	for (int a = 0; a < 4; a++)
		for (int i = 0; i < 12; i++) {
			snprintf(id, sizeof(id), "%s:%d", ids[a], i);
			for (int b = 0; b < 4; b++)
				cr_assert_eq(rec_state(&nd[a], id),
				    rec_state(&nd[b], id), "seed %u: %s state",
				    seed, id);
		}
	for (int i = 0; i < k; i++)
		link_close(&lk[i]);
	for (int i = 0; i < 4; i++)
		node_close(&nd[i]);
}

Test(session, random_mesh_converges_whatever_relays_skip)
{
	const char *iters_env = getenv("NBX_PROP_ITERS");
	unsigned seed = test_seed();
	int iters = getenv("NBX_SEED") ? 1 : iters_env ? atoi(iters_env) : 40;

	fprintf(stderr, "property random_mesh: seeds %u..%u, a full mesh, "
	    "ring or line by seed %% 3 (replay one with NBX_SEED=<seed>)\n",
	    seed, seed + (unsigned)iters - 1);
	for (int i = 0; i < iters; i++)
		mesh_run(seed + (unsigned)i);
}

/* ------------------------------------------------------------------ */
/* (f) identity                                                        */
/* ------------------------------------------------------------------ */

Test(session, hello_from_another_node_than_the_certificate_fails)
{
	struct node lv, fi;
	struct sync_session *at_lv, *at_fi;
	const uint8_t *p;
	size_t n;
	struct frame_msg m;

	node_open(&lv, "lv");
	node_open(&fi, "fi");
	put(&fi, "fi:1", "name", "x", T0);
	/* lv believes the certificate says "ee"; the bytes come from fi */
	cr_assert_eq(sync_session_new(lv.st, pol, "ee", NULL, &at_lv), 0);
	cr_assert_eq(sync_session_new(fi.st, pol, "lv", NULL, &at_fi), 0);
	cr_assert_eq(sync_session_start(at_lv, T0), 0);
	cr_assert_eq(sync_session_start(at_fi, T0), 0);
	n = sync_session_pending(at_fi, &p);
	cr_assert_eq(sync_session_feed(at_lv, p, n, T0), NBX_EPEER);
	cr_assert(strstr(sync_session_error(at_lv),
	    "HELLO says 'fi' but certificate says 'ee'"), "got: %s",
	    sync_session_error(at_lv));
	cr_assert_eq(pending_frames(at_lv, FRAME_ERROR, &m), 1);
	cr_assert_eq(m.code, NBX_EPEER);
	/* sticky */
	cr_assert_eq(sync_session_feed(at_lv, p, n, T0), NBX_EPEER);
	cr_assert_eq(sync_session_pump(at_lv, T0), NBX_EPEER);
	cr_assert_eq(meta_of(&lv, NULL), 0);
	/* fi hears the ERROR and closes */
	n = sync_session_pending(at_lv, &p);
	cr_assert_eq(sync_session_feed(at_fi, p, n, T0), NBX_ECLOSED);
	cr_assert(strstr(sync_session_error(at_fi), "certificate says"));
	sync_session_free(at_lv);
	sync_session_free(at_fi);
	node_close(&lv);
	node_close(&fi);
}

/* ------------------------------------------------------------------ */
/* (g) one byte at a time                                              */
/* ------------------------------------------------------------------ */

Test(session, byte_at_a_time_converges)
{
	struct node ee, lv;
	struct link l;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < 6; i++) {
		write_record(&ee, i, "lv", T0);
		write_record(&lv, i, "ee", T0);
	}
	link_open(&l, &ee, &lv, NULL, T0);
	l.bytewise = 1;
	run1(&l, T0);
	for (int i = 0; i < 6; i++) {
		check_record(&ee, &lv, i);
		check_record(&lv, &ee, i);
	}
	cr_assert_eq(sync_session_stats(l.s[0])->bytes_out,
	    sync_session_stats(l.s[1])->bytes_in);
	cr_assert_eq(sync_session_stats(l.s[0])->frames_out,
	    sync_session_stats(l.s[1])->frames_in);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* (h) hostile framing                                                 */
/* ------------------------------------------------------------------ */

/* A session on lv for peer ee that has seen ee's HELLO (epoch 42). */
static struct sync_session *
lv_after_hello(struct node *lv, struct nbx_buf *b)
{
	struct sync_session *s;

	cr_assert_eq(sync_session_new(lv->st, pol, "ee", NULL, &s), 0);
	cr_assert_eq(sync_session_start(s, T0), 0);
	b->len = 0;
	cr_assert_eq(frame_put_hello(b, SYNC_PROTO_VERSION, nbx_str_c("ee"),
	    42), 0);
	cr_assert_eq(sync_session_feed(s, b->p, b->len, T0), 0);
	b->len = 0;
	return s;
}

/* What on_reject was told. */
struct rejects {
	int n, err;
	char field[32], id[32];
};

static void
note_reject(void *arg, const struct change *c, int err)
{
	struct rejects *r = arg;

	r->n++;
	r->err = err;
	snprintf(r->field, sizeof(r->field), "%.*s", (int)c->field.n,
	    c->field.p);
	snprintf(r->id, sizeof(r->id), "%.*s", (int)c->id.n, c->id.p);
}

Test(session, after_the_commit_rejects_are_reported_and_erasures_receipted)
{
	struct node lv;
	struct nbx_buf b;
	struct sync_session *s;
	struct rejects r = { 0 };
	struct sync_opts o = { .on_reject = note_reject, .reject_arg = &r };
	struct frame_batch fb;
	struct frame_msg m;
	struct change c[4] = {
		test_str("ee:1", "name", "kept"),
		test_str("ee:2", "note", "a local field: refused"),
		test_str("ee:2", "name", "kept too"),
		test_change(CHANGE_ERASE, "ee:3", NULL),
	};

	node_open(&lv, "lv");
	nbx_buf_init(&b, 1 << 20);
	cr_assert_eq(sync_session_new(lv.st, pol, "ee", &o, &s), 0);
	cr_assert_eq(sync_session_start(s, T0), 0);
	cr_assert_eq(frame_put_hello(&b, SYNC_PROTO_VERSION, nbx_str_c("ee"),
	    42), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), 0);
	b.len = 0;
	cr_assert_eq(frame_changes_begin(&b, 42, &fb), 0);
	for (int i = 0; i < 4; i++) {
		c[i].origin = nbx_str_c("ee");
		c[i].hlc = HLC_MAKE(T0, (uint64_t)i + 1);
		cr_assert_eq(frame_changes_add(&b, &fb, &c[i]), 0);
	}
	cr_assert_eq(frame_changes_finish(&b, &fb, 4), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), 0, "%s",
	    sync_session_error(s));
	cr_assert_eq(r.n, 1, "one change refused");
	cr_assert_eq(r.err, NBX_ELOCAL);
	cr_assert_str_eq(r.field, "note");
	cr_assert_str_eq(r.id, "ee:2");
	cr_assert_eq(sync_session_stats(s)->rejected_in, 1);
	cr_assert_eq(sync_session_stats(s)->applied_in, 3);
	cr_assert_eq(pending_frames(s, FRAME_ACK, NULL), 1);
	cr_assert_eq(pending_frames(s, FRAME_ERASE_RECEIPT, &m), 1);
	cr_assert(nbx_str_eq(m.id, nbx_str_c("ee:3")));
	{
		char v[64];

		cr_assert(get(&lv, "ee:2", "name", NULL, v, sizeof(v)));
		cr_assert_str_eq(v, "kept too");
		cr_assert(!get(&lv, "ee:2", "note", NULL, v, sizeof(v)));
	}
	cr_assert(is_erased(&lv, "ee:3"));
	sync_session_free(s);
	nbx_buf_fini(&b);
	node_close(&lv);
}

Test(session, malformed_frames_are_fatal_and_touch_nothing)
{
	struct node lv;
	struct nbx_buf b;
	struct sync_session *s;
	struct store_meta m0, m1;
	struct store_cursor cur;
	uint8_t d0[32], d1[32];
	struct frame_batch fb;
	/* [1, 1, "t", "ee:1"]: an array, not a change */
	static const uint8_t notachange[] = { 0x94, 0x01, 0x01, 0xa1, 't',
	    0xa4, 'e', 'e', ':', '1' };
	static const uint8_t garbage[] = { 0, 0, 0, 3, 0xc1, 0xc1, 0xc1 };

	node_open(&lv, "lv");
	put(&lv, "lv:1", "name", "x", T0);
	nbx_buf_init(&b, 1 << 20);
	cr_assert_eq(store_meta_get(lv.st, &m0), 0);
	cr_assert_eq(store_records_digest(lv.st, d0), 0);

	/* garbage body */
	s = lv_after_hello(&lv, &b);
	cr_assert_eq(sync_session_feed(s, garbage, sizeof(garbage), T0),
	    NBX_EMALFORMED);
	cr_assert_eq(pending_frames(s, FRAME_ERROR, NULL), 1);
	sync_session_free(s);

	/* a CHANGES whose element does not decode: nothing is applied */
	s = lv_after_hello(&lv, &b);
	cr_assert_eq(frame_changes_begin(&b, 42, &fb), 0);
	cr_assert_eq(frame_changes_add_raw(&b, &fb, notachange,
	    sizeof(notachange)), 0);
	cr_assert_eq(frame_changes_finish(&b, &fb, 5), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), NBX_EMALFORMED);
	sync_session_free(s);

	/* the same after valid changes, which the store had merged already
	   when it met the bad one: the batch's transaction is dropped whole */
	for (int valid = 1; valid <= 3; valid++) {
		struct change c = test_str("ee:8", "name", "before the bad one");

		c.origin = nbx_str_c("ee");
		s = lv_after_hello(&lv, &b);
		cr_assert_eq(frame_changes_begin(&b, 42, &fb), 0);
		for (int i = 0; i < valid; i++) {
			c.hlc = HLC_MAKE(T0, (uint64_t)i + 1);
			cr_assert_eq(frame_changes_add(&b, &fb, &c), 0);
		}
		cr_assert_eq(frame_changes_add_raw(&b, &fb, notachange,
		    sizeof(notachange)), 0);
		cr_assert_eq(frame_changes_finish(&b, &fb, 5), 0);
		cr_assert_eq(sync_session_feed(s, b.p, b.len, T0),
		    NBX_EMALFORMED);
		cr_assert(strstr(sync_session_error(s), "does not decode"),
		    "%s", sync_session_error(s));
		sync_session_free(s);
	}

	/*
	 * Valid changes, but not the number the frame announces: one more
	 * after the count, or one fewer.  Nothing is applied either way.
	 */
	for (int extra = 1; extra >= -1; extra -= 2) {
		struct change c = test_str("ee:9", "name", "smuggled");

		c.origin = nbx_str_c("ee");
		c.hlc = HLC_MAKE(T0, 1);
		s = lv_after_hello(&lv, &b);
		cr_assert_eq(frame_changes_begin(&b, 42, &fb), 0);
		cr_assert_eq(frame_changes_add(&b, &fb, &c), 0);
		cr_assert_eq(frame_changes_add(&b, &fb, &c), 0);
		fb.n = (uint32_t)(2 - extra);
		cr_assert_eq(frame_changes_finish(&b, &fb, 5), 0);
		cr_assert_eq(sync_session_feed(s, b.p, b.len, T0),
		    NBX_EMALFORMED, "count off by %d", extra);
		sync_session_free(s);
	}

	/* a length prefix of 4 GiB, and one just over the cap, in pieces */
	s = lv_after_hello(&lv, &b);
	cr_assert_eq(sync_session_feed(s, "\xff\xff\xff\xff", 4, T0),
	    NBX_ETOOBIG);
	sync_session_free(s);
	s = lv_after_hello(&lv, &b);
	cr_assert_eq(sync_session_feed(s, "\x01\x00", 2, T0), 0);
	cr_assert_eq(sync_session_feed(s, "\x00\x01", 2, T0), NBX_ETOOBIG);
	cr_assert_eq(sync_session_feed(s, "", 0, T0), NBX_ETOOBIG);
	sync_session_free(s);

	cr_assert_eq(store_meta_get(lv.st, &m1), 0);
	cr_assert_eq(store_records_digest(lv.st, d1), 0);
	cr_assert_eq(memcmp(d0, d1, 32), 0);
	cr_assert_eq(m1.last_seq, m0.last_seq);
	cr_assert_eq(m1.quarantined, 0);
	cr_assert_eq(store_cursor_get(lv.st, nbx_str_c("ee"), &cur), 0);
	cr_assert_eq(cur.seq, 0, "the cursor did not move");
	nbx_buf_fini(&b);
	node_close(&lv);
}

Test(session, protocol_violations_end_the_session)
{
	struct node lv;
	struct nbx_buf b;
	struct sync_session *s;
	struct frame_msg m;

	node_open(&lv, "lv");
	nbx_buf_init(&b, 1 << 20);

	/* anything before HELLO */
	cr_assert_eq(sync_session_new(lv.st, pol, "ee", NULL, &s), 0);
	cr_assert_eq(sync_session_start(s, T0), 0);
	cr_assert_eq(frame_put_ping(&b, 1), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), NBX_EPEER);
	cr_assert(strstr(sync_session_error(s), "PING before HELLO"));
	sync_session_free(s);

	/* a second HELLO */
	s = lv_after_hello(&lv, &b);
	cr_assert_eq(frame_put_hello(&b, 1, nbx_str_c("ee"), 42), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), NBX_EPEER);
	sync_session_free(s);

	/* an ACK for nothing sent */
	s = lv_after_hello(&lv, &b);
	cr_assert_eq(frame_put_ack(&b, 3), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), NBX_EPEER);
	cr_assert(strstr(sync_session_error(s), "ACK 3"));
	sync_session_free(s);

	/* CHANGES of another epoch than HELLO said */
	s = lv_after_hello(&lv, &b);
	{
		struct frame_batch fb;

		cr_assert_eq(frame_changes_begin(&b, 43, &fb), 0);
		cr_assert_eq(frame_changes_finish(&b, &fb, 1), 0);
	}
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), NBX_EPEER);
	sync_session_free(s);

	/* a protocol version this node does not speak */
	cr_assert_eq(sync_session_new(lv.st, pol, "ee", NULL, &s), 0);
	cr_assert_eq(sync_session_start(s, T0), 0);
	b.len = 0;
	cr_assert_eq(frame_put_hello(&b, SYNC_PROTO_MAX + 1, nbx_str_c("ee"),
	    1), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), NBX_EVERSION);
	cr_assert_eq(pending_frames(s, FRAME_ERROR, &m), 1);
	cr_assert_eq(m.code, NBX_EVERSION);
	sync_session_free(s);

	/* the peer says ERROR: closed, with its reason */
	s = lv_after_hello(&lv, &b);
	cr_assert_eq(frame_put_error(&b, NBX_EPERM, "bye\x01now"), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), NBX_ECLOSED);
	cr_assert(strstr(sync_session_error(s), "bye?now"), "got %s",
	    sync_session_error(s));
	cr_assert_eq(pending_frames(s, FRAME_ERROR, NULL), 0,
	    "no ERROR answers an ERROR");
	sync_session_free(s);

	/* we end it: ERROR queued, later input refused */
	s = lv_after_hello(&lv, &b);
	sync_session_fail(s, NBX_ETLS, "certificate revoked");
	cr_assert_eq(pending_frames(s, FRAME_ERROR, &m), 1);
	cr_assert_eq(m.code, NBX_ETLS);
	cr_assert_eq(sync_session_feed(s, "", 0, T0), NBX_ECLOSED);
	sync_session_free(s);
	nbx_buf_fini(&b);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* (i) a rejected change is quarantined and the session goes on        */
/* ------------------------------------------------------------------ */

Test(session, rejected_change_is_quarantined_and_acked)
{
	struct node lv;
	struct nbx_buf b;
	struct sync_session *s;
	struct frame_batch fb;
	struct change bad = test_str("ee:1", "note", "LOCAL from a peer");
	struct change good = test_str("ee:1", "name", "fine");
	struct store_cursor cur;
	struct store_rtxn *t;
	struct store_qentry qe;
	struct frame_msg m;
	uint64_t q;
	char v[64];

	node_open(&lv, "lv");
	nbx_buf_init(&b, 1 << 20);
	s = lv_after_hello(&lv, &b);
	bad.hlc = good.hlc = HLC_MAKE(T0, 1);
	bad.origin = good.origin = nbx_str_c("ee");
	cr_assert_eq(frame_changes_begin(&b, 42, &fb), 0);
	cr_assert_eq(frame_changes_add(&b, &fb, &bad), 0);
	cr_assert_eq(frame_changes_add(&b, &fb, &good), 0);
	cr_assert_eq(frame_changes_finish(&b, &fb, 7), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), 0, "%s",
	    sync_session_error(s));
	cr_assert_eq(sync_session_stats(s)->changes_in, 2);
	cr_assert_eq(sync_session_stats(s)->rejected_in, 1);
	cr_assert_eq(sync_session_stats(s)->applied_in, 1);
	cr_assert_eq(sync_session_stats(s)->recv_seq, 7);
	meta_of(&lv, &q);
	cr_assert_eq(q, 1);
	cr_assert_eq(store_rtxn_begin(lv.st, &t), 0);
	cr_assert_eq(store_quarantine_next(t, 0, &qe), 0);
	cr_assert_eq(qe.err, NBX_ELOCAL);
	cr_assert(nbx_str_eq(qe.peer, nbx_str_c("ee")));
	store_rtxn_end(t);
	assert_absent(&lv, "ee:1", "note");
	cr_assert(get(&lv, "ee:1", "name", NULL, v, sizeof(v)));
	cr_assert_eq(store_cursor_get(lv.st, nbx_str_c("ee"), &cur), 0);
	cr_assert_eq(cur.epoch, 42);
	cr_assert_eq(cur.seq, 7);
	cr_assert_eq(pending_frames(s, FRAME_ACK, &m), 1);
	cr_assert_eq(m.seq, 7);

	/* an empty batch still moves the cursor, and is ACKed */
	b.len = 0;
	cr_assert_eq(frame_changes_begin(&b, 42, &fb), 0);
	cr_assert_eq(frame_changes_finish(&b, &fb, 9), 0);
	cr_assert_eq(sync_session_feed(s, b.p, b.len, T0), 0);
	cr_assert_eq(store_cursor_get(lv.st, nbx_str_c("ee"), &cur), 0);
	cr_assert_eq(cur.seq, 9);
	cr_assert_eq(pending_frames(s, FRAME_ACK, &m), 2);
	cr_assert_eq(m.seq, 9);
	sync_session_free(s);
	nbx_buf_fini(&b);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* (j) the window                                                      */
/* ------------------------------------------------------------------ */

Test(session, window_bounds_unacknowledged_batches)
{
	struct node ee, lv;
	struct link l;
	struct sync_opts o = { .batch_bytes = 1, .window = 2 };
	const uint8_t *p;
	size_t n;
	char id[32];
	int inflight = 0, max_inflight = 0, sent = 0;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < 30; i++) {
		snprintf(id, sizeof(id), "ee:%d", i);
		put(&ee, id, "name", "w", T0);
	}
	link_open(&l, &ee, &lv, &o, T0);
	deliver(&l, 1, T0);		/* lv's HELLO and SUBSCRIBE */
	for (int k = 0; k < 3; k++)
		cr_assert_eq(sync_session_pump(l.s[0], T0), 0);
	cr_assert_eq(pending_frames(l.s[0], FRAME_CHANGES, NULL), 2,
	    "the window holds two batches, however often pump is called");

	for (int round = 0; round < 200; round++) {
		int c, a;

		cr_assert_eq(sync_session_pump(l.s[0], T0), 0);
		cr_assert_eq(sync_session_pump(l.s[1], T0), 0);
		n = sync_session_pending(l.s[0], &p);
		c = count_frames(p, n, FRAME_CHANGES, NULL);
		inflight += c;
		sent += c;
		if (inflight > max_inflight)
			max_inflight = inflight;
		deliver(&l, 0, T0);
		n = sync_session_pending(l.s[1], &p);
		a = count_frames(p, n, FRAME_ACK, NULL);
		if (deliver(&l, 1, T0) == 0 && c == 0)
			break;
		inflight -= a;
	}
	cr_assert_eq(max_inflight, 2);
	cr_assert_geq(sent, 30, "one record per batch");
	cr_assert_eq(meta_of(&lv, NULL), 30);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* (k) timers                                                          */
/* ------------------------------------------------------------------ */

Test(session, ping_pong_and_dead_peer)
{
	struct node ee, lv;
	struct link l;
	struct sync_opts o = { .ping_interval_ms = 1000, .dead_after_ms = 3000 };
	struct frame_msg ping, pong;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	link_open(&l, &ee, &lv, &o, T0);
	run1(&l, T0);
	cr_assert_eq(sync_session_tick(l.s[0], T0 + 999), 0);
	cr_assert_eq(pending_frames(l.s[0], FRAME_PING, NULL), 0);
	cr_assert_eq(sync_session_tick(l.s[0], T0 + 1000), 0);
	cr_assert_eq(pending_frames(l.s[0], FRAME_PING, &ping), 1);
	cr_assert_eq(sync_session_tick(l.s[0], T0 + 1001), 0);
	cr_assert_eq(pending_frames(l.s[0], FRAME_PING, NULL), 1,
	    "a PING counts as sent: no second one at once");
	deliver(&l, 0, T0 + 1001);
	cr_assert_eq(pending_frames(l.s[1], FRAME_PONG, &pong), 1);
	cr_assert_eq(pong.nonce, ping.nonce);
	deliver(&l, 1, T0 + 1002);
	cr_assert_eq(sync_session_stats(l.s[0])->last_rx_ms, T0 + 1002);

	/* alive at 1002: idle long enough to PING at 2002, dead at 4002 */
	cr_assert_eq(sync_session_tick(l.s[0], T0 + 2002), 0);
	cr_assert_eq(pending_frames(l.s[0], FRAME_PING, NULL), 1);
	cr_assert_eq(sync_session_tick(l.s[0], T0 + 4001), 0);
	cr_assert_eq(sync_session_tick(l.s[0], T0 + 4002), NBX_ECLOSED);
	cr_assert(strstr(sync_session_error(l.s[0]), "nothing received"));
	cr_assert_eq(sync_session_tick(l.s[0], T0 + 4003), NBX_ECLOSED);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/*
 * A side that keeps receiving (its peer's ACKs) but has sent nothing for
 * an interval PINGs at once, not an interval after the last frame it got:
 * the peer, which hears nothing else from it, must not call it dead.
 * Idle, the PONG keeps the answering side quiet: one PING per interval.
 * Bytes the caller holds unread count as life.
 */
Test(session, a_side_that_only_receives_still_pings)
{
	struct node ee, lv;
	struct link l;
	struct sync_opts o = { .ping_interval_ms = 1000, .dead_after_ms = 3000 };
	uint64_t t = T0;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	link_open(&l, &ee, &lv, &o, T0);
	run1(&l, T0);
	put(&ee, "ee:1", "name", "x", T0 + 10);
	cr_assert_eq(sync_session_pump(l.s[0], T0 + 10), 0);
	cr_assert_gt(deliver(&l, 0, T0 + 10), 0);	/* ee sent at +10 */
	cr_assert_eq(pending_frames(l.s[1], FRAME_ACK, NULL), 1);
	cr_assert_gt(deliver(&l, 1, T0 + 1100), 0);	/* the ACK comes late */
	t = T0 + 1100;
	cr_assert_eq(sync_session_tick(l.s[0], t), 0);
	cr_assert_eq(pending_frames(l.s[0], FRAME_PING, NULL), 1,
	    "silent for 1090 ms while hearing from lv: PING now");
	deliver(&l, 0, t);
	cr_assert_eq(pending_frames(l.s[1], FRAME_PONG, NULL), 1);
	deliver(&l, 1, t);

	/* idle both ways: ee PINGs at +1000, lv's PONG keeps lv quiet */
	t += 1000;
	cr_assert_eq(sync_session_tick(l.s[1], t - 1), 0);
	cr_assert_eq(pending_frames(l.s[1], FRAME_PING, NULL), 0);
	cr_assert_eq(sync_session_tick(l.s[0], t), 0);
	cr_assert_eq(pending_frames(l.s[0], FRAME_PING, NULL), 1);
	deliver(&l, 0, t);
	cr_assert_eq(pending_frames(l.s[1], FRAME_PONG, NULL), 1);
	cr_assert_eq(sync_session_tick(l.s[1], t + 500), 0);
	cr_assert_eq(pending_frames(l.s[1], FRAME_PING, NULL), 0,
	    "answered with a PONG: no PING of its own");

	/* unread bytes count as life; without more, dead 3 s later */
	sync_session_heard(l.s[0], t + 2500);
	cr_assert_eq(sync_session_tick(l.s[0], t + 5000), 0);
	cr_assert_eq(sync_session_tick(l.s[0], t + 5500), NBX_ECLOSED);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

/* ------------------------------------------------------------------ */
/* More edges                                                          */
/* ------------------------------------------------------------------ */

Test(session, filtered_entries_still_move_the_cursor_once)
{
	struct node ee, lv;
	struct link l;
	struct store_cursor cur;
	const uint8_t *p;
	struct change del = test_change(CHANGE_STATE, "ee:1", NULL);

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	put(&ee, "ee:1", "note", "only local", T0);
	put(&ee, "ee:2", "note", "only local", T0);
	del.val.t = NBX_V_INT;
	del.val.i = REC_DELETED;
	apply_local(&ee, &del, 1, T0);
	link_open(&l, &ee, &lv, NULL, T0);
	run1(&l, T0);
	cr_assert_eq(meta_of(&lv, NULL), 0, "nothing of a local-only record, "
	    "not even its state");
	cr_assert_eq(store_cursor_get(lv.st, nbx_str_c("ee"), &cur), 0);
	cr_assert_eq(cur.seq, 3, "an empty batch moved the cursor");
	cr_assert_eq(sync_session_stats(l.s[0])->changes_out, 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sync_session_pump(l.s[0], T0), 0);
	cr_assert_eq(sync_session_pending(l.s[0], &p), 0,
	    "no empty batch when the position did not move");
	cr_assert(!file_has(&lv, "only local"));
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

Test(session, erase_reaches_the_nodes_that_hold_the_record)
{
	struct node ee, lv;
	struct link l;
	struct change er = test_change(CHANGE_ERASE, "ee:1", NULL);
	struct frame_msg m;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	put(&ee, "ee:1", "name", "ERASE-ME", T0);
	link_open(&l, &ee, &lv, NULL, T0);
	run1(&l, T0);
	assert_same(&ee, &lv, "ee:1", "name", NULL);
	apply_local(&ee, &er, 1, T0 + 10);
	cr_assert_eq(sync_session_pump(l.s[0], T0 + 10), 0);
	deliver(&l, 0, T0 + 10);
	cr_assert(is_erased(&lv, "ee:1"));
	assert_absent(&lv, "ee:1", "name");
	cr_assert_eq(pending_frames(l.s[1], FRAME_ERASE_RECEIPT, &m), 1);
	cr_assert(nbx_str_eq(m.id, nbx_str_c("ee:1")));
	cr_assert(nbx_str_eq(m.origin, nbx_str_c("ee")));
	run1(&l, T0 + 10);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

Test(session, pending_output_stops_production)
{
	struct node ee, lv;
	struct link l;
	struct sync_opts o = { .batch_bytes = 256, .window = 1000,
	    .out_max = 1024 };
	char id[32];
	const uint8_t *p;
	size_t n;

	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "ee:%d", i);
		put(&ee, id, "name", "a name of some length", T0);
	}
	link_open(&l, &ee, &lv, &o, T0);
	deliver(&l, 1, T0);
	n = sync_session_pending(l.s[0], &p);
	cr_assert_lt(n, 1024 + 2 * 512, "stopped near out_max: %zu", n);
	cr_assert_gt(n, 0);
	run1(&l, T0);
	cr_assert_eq(meta_of(&lv, NULL), 200);
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
}

Test(session, new_rejects_bad_arguments)
{
	struct node ee;
	struct sync_session *s = (void *)1;

	node_open(&ee, "ee");
	cr_assert_eq(sync_session_new(ee.st, pol, "EE!", NULL, &s),
	    NBX_EINVAL);
	cr_assert_null(s);
	cr_assert_eq(sync_session_new(ee.st, pol, "lv", NULL, &s), 0);
	cr_assert_str_eq(sync_session_peer(s), "lv");
	cr_assert_eq(sync_session_feed(s, "x", 1, T0), NBX_EINVAL,
	    "feed before start");
	cr_assert_eq(sync_session_start(s, T0), 0);
	cr_assert_eq(sync_session_start(s, T0), NBX_EINVAL);
	sync_session_free(s);
	sync_session_free(NULL);
	node_close(&ee);
}

/* ------------------------------------------------------------------ */
/* Frame capacity                                                      */
/* ------------------------------------------------------------------ */

static const char BLOB_SCHEMA[] =
    "[t]\n"
    "[t.name]\ntype = string\nmax = 65536\nshare = region\n"
    "[t.desc]\ntype = string\nmax = 65536\nshare = region\n";

Test(session, full_frame_ends_the_batch_before_a_record)
{
	struct node ee, lv;
	struct link l;
	/* batches are closed by the frame cap, not by batch_bytes */
	struct sync_opts o = { .batch_bytes = UINT32_MAX, .window = 2,
	    .out_max = (size_t)64 << 20 };
	char *big = malloc(60001), id[32], v[64];
	char err[256];
	int frames = 0;

	cr_assert_not_null(big);
	policy_free(pol);
	pol = NULL;
	cr_assert_eq(policy_load_string(BLOB_SCHEMA, "blob", &pol, err,
	    sizeof(err)), 0, "%s", err);
	node_open(&ee, "ee");
	node_open(&lv, "lv");
	for (int i = 0; i < 300; i++) {
		memset(big, 'a' + i % 26, 60000);
		snprintf(big, 16, "%05d", i);
		big[5] = '-';
		big[60000] = 0;
		snprintf(id, sizeof(id), "ee:%d", i);
		/* two changes a record, so that the frame may fill between
		 * them: the record must then move whole to the next frame */
		big[50000] = 0;
		put(&ee, id, "desc", big, T0);
		big[50000] = 'x';
		big[10000] = 0;
		put(&ee, id, "name", big, T0);
	}
	link_open(&l, &ee, &lv, &o, T0);
	deliver(&l, 1, T0);
	frames = pending_frames(l.s[0], FRAME_CHANGES, NULL);
	cr_assert_eq(frames, 2, "18 MB of records need two frames");
	run1(&l, T0);
	cr_assert_eq(meta_of(&lv, NULL), 300);
	cr_assert_eq(sync_session_stats(l.s[0])->changes_out, 600,
	    "no change was sent twice");
	cr_assert(get(&lv, "ee:299", "name", NULL, big, 60001));
	snprintf(v, sizeof(v), "%.5s", big);
	cr_assert_str_eq(v, "00299");
	link_close(&l);
	node_close(&ee);
	node_close(&lv);
	free(big);
}

/* ------------------------------------------------------------------ */
/* Who held a record travels with it                                   */
/* ------------------------------------------------------------------ */

/* No region field: an erasure goes only where the record went. */
static const char CASE_SCHEMA[] =
    "[t]\n"
    "[t.secret]\ntype = string\nshare = audience\n"
    "[t.status]\ntype = enum\nvalues = a, b, c\nshare = audience\n"
    "writers = audience\n";

static void
use_case_schema(void)
{
	char err[256];

	policy_free(pol);
	cr_assert_eq(policy_load_string(CASE_SCHEMA, "case", &pol, err,
	    sizeof(err)), 0, "%s", err);
}

/*
 * Line ee - fi - lt, ee's case for all three.  fi is rebuilt from empty
 * and, while lt is offline, takes the case back from ee; ee erases it.
 * fi, purging, finds no disclosure to lt in its new log, but lt's
 * receipt naming it a holder came back with the case, so the erasure
 * reaches lt when it returns, and lt's receipt gets back to ee.
 */
Test(session, an_erasure_reaches_a_holder_through_a_rebuilt_relay)
{
	struct node ee, fi, lt;
	struct link l1, l2, *ls[2] = { &l1, &l2 };
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_receipt *x;
	struct change c;
	char v[256];

	use_case_schema();
	node_open(&ee, "ee");
	node_open(&fi, "fi");
	node_open(&lt, "lt");
	put_aud(&ee, "ee:1", T0, 3, "ee", "fi", "lt");
	put(&ee, "ee:1", "secret", "ERASE-WIPE-CANARY", T0);
	link_open(&l1, &ee, &fi, NULL, T0);
	link_open(&l2, &fi, &lt, NULL, T0);
	run(ls, 2, T0, 1000);
	cr_assert(get(&lt, "ee:1", "secret", NULL, v, sizeof(v)));
	link_close(&l1);
	link_close(&l2);

	node_rebuild(&fi);
	link_open(&l1, &ee, &fi, NULL, T0 + 10);
	run1(&l1, T0 + 10);
	cr_assert(get(&fi, "ee:1", "secret", NULL, v, sizeof(v)));
	c = test_change(CHANGE_ERASE, "ee:1", NULL);
	apply_local(&ee, &c, 1, T0 + 20);
	cr_assert_eq(sync_session_pump(l1.s[0], T0 + 20), 0);
	run1(&l1, T0 + 20);
	link_open(&l2, &fi, &lt, NULL, T0 + 30);
	run(ls, 2, T0 + 30, 1000);
	assert_absent(&lt, "ee:1", "secret");
	cr_assert_eq(store_rtxn_begin(ee.st, &t), 0);
	cr_assert_eq(store_record_get(t, nbx_str_c("t"), nbx_str_c("ee:1"),
	    &r), 0);
	cr_assert(r.erased);
	for (int i = 0; i < 3; i++) {
		static const char *const ids[3] = { "ee", "fi", "lt" };

		x = crdt_record_receipt(&r, nbx_str_c("erase"),
		    nbx_str_c(ids[i]));
		cr_assert(x != NULL && x->state == RECEIPT_DONE,
		    "ee lacks %s's receipt", ids[i]);
	}
	crdt_record_fini(&r);
	store_rtxn_end(t);
	link_close(&l1);
	link_close(&l2);
	node_close(&ee);
	node_close(&fi);
	node_close(&lt);
}

/*
 * lt's case for fi and lt.  lt is rebuilt from empty and, before it gets
 * the case back, sets its audience to lt alone: it remembers no audience
 * that held fi, so it leaves no revocation receipt for fi, and has
 * disclosed nothing to fi.  fi's receipt naming it a holder comes back
 * with the case, so lt tells fi, which purges the value.
 */
Test(session, a_rebuilt_creator_tells_a_holder_it_removed)
{
	struct node fi, lt;
	struct link l;
	char v[256];

	use_case_schema();
	node_open(&fi, "fi");
	node_open(&lt, "lt");
	put_aud(&lt, "lt:1", T0, 2, "fi", "lt");
	put(&lt, "lt:1", "secret", "CREATOR-WIPE-CANARY", T0);
	link_open(&l, &fi, &lt, NULL, T0);
	run1(&l, T0);
	cr_assert(get(&fi, "lt:1", "secret", NULL, v, sizeof(v)));
	link_close(&l);

	node_rebuild(&lt);
	put_aud(&lt, "lt:1", T0 + 10, 1, "lt");
	link_open(&l, &fi, &lt, NULL, T0 + 10);
	run1(&l, T0 + 10);
	cr_assert(get(&lt, "lt:1", "secret", NULL, v, sizeof(v)),
	    "the rebuilt creator took its value back");
	assert_absent(&fi, "lt:1", "secret");
	cr_assert_eq(aud_size(&fi, "lt:1"), 1, "fi knows the new audience");
	link_close(&l);
	node_close(&fi);
	node_close(&lt);
}
