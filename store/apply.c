/*
 * apply.c - the merge of change batches into the store: validation against
 * the policy, the CRDT merge, seqs and the change log, quarantine, purge
 * receipts, forged-version checks, and changes held back for clock drift.
 * The write transaction itself (and map growth) is store__write's.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "mpbuf.h"
#include "mpwrite.h"
#include "nbx_err.h"
#include "store.h"
#include "store_int.h"

/* ------------------------------------------------------------------ */
/* Apply                                                               */
/* ------------------------------------------------------------------ */

/*
 * The record being merged.  Consecutive changes to one record are merged
 * in memory and written once; its blob is copied out of LMDB because a
 * value read in a write transaction is only valid until the next update.
 */
struct apply_rec {
	uint8_t key[KEY_MAX];
	size_t klen;
	int loaded, dirty;
	uint64_t seq;		/* latest seq given to a change of it */
	uint64_t old_seq;	/* its log entry as stored (0: none) */
	int sender_has;		/* the batch's sender holds all of it */
	struct nbx_buf blob;	/* copy of the stored encoding */
	struct crdt_record rec;
};

struct apply {
	struct store *st;
	MDB_txn *txn;
	/* records and log, kept open for the batch: a cursor already on the
	   right leaf finds the next key without descending the tree, and
	   the changes of a batch mostly come in key (and seq) order */
	MDB_cursor *recs, *log;
	const struct policy *pol;
	struct nbx_str self, peer;
	unsigned flags;
	struct hlc clock;
	uint64_t next_seq, next_qseq, now_ms;
	/* st->own_since as this attempt at the batch leaves it (it is
	   st's once the batch commits); 0: no version stamped yet in this
	   process run.  See own_version_known */
	uint64_t own_since;
	struct apply_rec r;
	struct policy_memo memo;	/* the last change's record checks */
	struct nbx_buf enc;
	char **owned;		/* strings receipts borrow until the batch ends */
	size_t nowned;
};

/* The hint that the batch's sender holds the record as logged at seq. */
static void
note_sender_has(struct apply *a, uint64_t seq)
{
	if (a->r.sender_has && seq != 0)
		store__holder_add(a->st, seq, a->peer);
	a->r.sender_has = 0;
}

/*
 * Writes the record back, moved to its new place in the log: the value
 * carries the seq (store_int.h), so the old log entry is known without
 * a lookup.
 */
static int
rec_flush(struct apply *a)
{
	struct apply_rec *ar = &a->r;
	MDB_val k = { ar->klen, ar->key }, d, sk;
	struct nbx_str author;
	uint8_t sb[8], ob[8];
	int rc;

	if (!ar->loaded)
		return 0;
	if (!ar->dirty) {
		note_sender_has(a, ar->old_seq);
		return 0;
	}
	a->enc.len = 0;
	store__be64_put(sb, ar->seq);
	if ((rc = nbx_buf_append(&a->enc, sb, STORE_SEQ_BYTES)) != 0 ||
	    (rc = crdt_record_encode(&ar->rec, &a->enc)) != 0)
		return rc;
	d.mv_size = a->enc.len;
	d.mv_data = a->enc.p;
	if ((rc = mdb_cursor_put(a->recs, &k, &d, 0)) != 0)
		return store__mdb_code(a->st, rc, "put record");
	a->st->records_written = 1;	/* store_generation moves */
	if (ar->old_seq != 0 && ar->old_seq != ar->seq) {
		store__be64_put(ob, ar->old_seq);
		sk.mv_size = 8;
		sk.mv_data = ob;
		rc = mdb_del(a->txn, a->st->dbi[DB_LOG], &sk, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return store__mdb_code(a->st, rc, "del log");
	}
	sk.mv_size = 8;
	sk.mv_data = sb;
	if (!crdt_record_sole_author(&ar->rec, &author))
		author.n = 0;
	store__hint_set(a->st, ar->seq, author);
	note_sender_has(a, ar->seq);
	if ((rc = mdb_cursor_put(a->log, &sk, &k, MDB_APPEND)) != 0)
		return store__mdb_code(a->st, rc, "put log");
	ar->old_seq = ar->seq;
	ar->dirty = 0;
	return 0;
}

/* Makes a->r the record (coll, id), flushing the previous one. */
static int
rec_load(struct apply *a, struct nbx_str coll, struct nbx_str id)
{
	struct apply_rec *ar = &a->r;
	uint8_t key[KEY_MAX];
	size_t klen;
	MDB_val k, d;
	int rc;

	/* the record's coll and id are those it was loaded for (below) */
	if (ar->loaded && nbx_str_eq(ar->rec.id, id) &&
	    nbx_str_eq(ar->rec.coll, coll))
		return 0;
	klen = store__rec_key(key, coll, id);
	k.mv_size = klen;
	k.mv_data = key;
	if ((rc = rec_flush(a)) != 0)
		return rc;
	ar->loaded = 0;
	memcpy(ar->key, key, klen);
	ar->klen = klen;
	ar->blob.len = 0;
	/* coll and id borrow from the key copy, which outlives the record;
	   its arrays are kept for the next record */
	coll.p = (const char *)ar->key;
	id.p = (const char *)ar->key + coll.n + 1;
	crdt_record_reset(&ar->rec, coll, id);
	ar->old_seq = 0;
	ar->sender_has = 0;
	rc = mdb_cursor_get(a->recs, &k, &d, MDB_SET);
	if (rc == 0) {
		const uint8_t *enc;
		size_t len;

		if (store__rec_val(a->st, &d, &ar->old_seq, &enc, &len) != 0)
			return store__fail(a->st, NBX_ESTORE, "corrupt record "
			    "%.*s/%.*s", (int)coll.n, coll.p, (int)id.n, id.p);
		if ((rc = nbx_buf_append(&ar->blob, enc, len)) != 0)
			return rc;
		if ((rc = crdt_record_decode(ar->blob.p, ar->blob.len,
		    &ar->rec)) != 0)
			return store__fail(a->st, rc, "corrupt record %.*s/%.*s",
			    (int)coll.n, coll.p, (int)id.n, id.p);
	} else if (rc != MDB_NOTFOUND) {
		return store__mdb_code(a->st, rc, "get record");
	}
	ar->loaded = 1;
	ar->dirty = 0;
	return 0;
}

static uint64_t
last_key_u64(MDB_txn *txn, MDB_dbi dbi)
{
	MDB_cursor *cu;
	MDB_val k, d;
	uint64_t v = 0;

	if (mdb_cursor_open(txn, dbi, &cu) != 0)
		return 0;
	if (mdb_cursor_get(cu, &k, &d, MDB_LAST) == 0 && k.mv_size == 8)
		v = store__be64_get(k.mv_data);
	mdb_cursor_close(cu);
	return v;
}

/*
 * A change refused only because its sender's clock runs ahead is kept
 * aside (besides its quarantine entry) and applied once our clock catches
 * up, so an honest node with a skewed clock loses nothing.  Only changes
 * the policy would accept, at most STORE_DEFER_AHEAD_MS ahead, and at
 * most STORE_DEFER_MAX of them, are kept; anything else is only
 * quarantined.
 */
static int
defer_put(struct apply *a, const struct change *c)
{
	struct nbx_buf enc, b;
	struct mpwrite w;
	MDB_stat ms;
	uint8_t kb[8];
	MDB_val k = { 8, kb }, d;
	uint64_t t = c->hlc > c->aud.hlc ? c->hlc : c->aud.hlc;
	int rc = 0;

	if (HLC_MS(t) > a->now_ms + STORE_DEFER_AHEAD_MS ||
	    policy_check_change(a->pol, c, a->self, 1, NULL) != 0 ||
	    mdb_stat(a->txn, a->st->dbi[DB_DEFERRED], &ms) != 0 ||
	    ms.ms_entries >= STORE_DEFER_MAX)
		return 0;
	/* [peer, bin(encoded change)] */
	nbx_buf_init(&enc, NBX_CHANGE_MAX);
	nbx_buf_init(&b, NBX_CHANGE_MAX + 64);
	mpwrite_init(&w, &b);
	if (change_encode(c, &enc) != 0)
		goto out;	/* not encodable: quarantine only */
	mpwrite_array(&w, 2);
	mpwrite_str(&w, a->peer);
	mpwrite_bin(&w, enc.p, (uint32_t)enc.len);
	if (w.err != 0)
		goto out;
	store__be64_put(kb, last_key_u64(a->txn, a->st->dbi[DB_DEFERRED]) + 1);
	d.mv_size = b.len;
	d.mv_data = b.p;
	rc = store__mdb_code(a->st, mdb_put(a->txn, a->st->dbi[DB_DEFERRED], &k,
	    &d, MDB_APPEND), "put deferred");
out:
	nbx_buf_fini(&enc);
	nbx_buf_fini(&b);
	return rc;
}

static int
quarantine_put(struct apply *a, const struct change *c, int reason)
{
	struct nbx_buf b;
	struct mpwrite w;
	uint8_t kb[8];
	MDB_val k = { 8, kb }, d;
	int rc;

	nbx_buf_init(&b, 4 * NBX_RECID_MAX);
	mpwrite_init(&w, &b);
	/* [time, reason, kind, peer, coll, id, field, origin, hlc]; names
	 * longer than their caps are cut: the entry is a report, not data */
#define CUT(s, m) ((struct nbx_str){ (s).p, (s).n > (m) ? (m) : (s).n })
	mpwrite_array(&w, 9);
	mpwrite_uint(&w, a->now_ms);
	mpwrite_int(&w, reason);
	mpwrite_uint(&w, (uint32_t)c->kind);
	mpwrite_str(&w, CUT(a->peer, NBX_ID_MAX));
	mpwrite_str(&w, CUT(c->coll, NBX_NAME_MAX));
	mpwrite_str(&w, CUT(c->id, NBX_RECID_MAX));
	mpwrite_str(&w, CUT(c->field, NBX_NAME_MAX));
	mpwrite_str(&w, CUT(c->origin, NBX_ID_MAX));
	mpwrite_uint(&w, c->hlc);
#undef CUT
	if (w.err != 0) {
		nbx_buf_fini(&b);
		return w.err;
	}
	store__be64_put(kb, a->next_qseq++);
	d.mv_size = b.len;
	d.mv_data = b.p;
	rc = mdb_put(a->txn, a->st->dbi[DB_QUARANTINE], &k, &d, MDB_APPEND);
	nbx_buf_fini(&b);
	return store__mdb_code(a->st, rc, "put quarantine");
}

static int
aud_subset(const struct nbx_audience *x, const struct nbx_audience *y)
{
	for (uint32_t i = 0; i < x->n; i++)
		if (!nbx_audience_has(y, x->ids[i]))
			return 0;
	return 1;
}

/*
 * 1 if r already holds exactly this remote change: the same version and
 * the same value of the same register (or the same state).  Merging it
 * again would change nothing, so it is answered as a no-op before the
 * policy is consulted; in a mesh most of what a node receives is a copy
 * of what another peer relayed first.  Anything else goes the full way.
 */
static int
remote_held(const struct crdt_record *r, const struct change *c)
{
	const struct crdt_reg *g;
	struct nbx_str none = { "", 0 };

	switch (c->kind) {
	case CHANGE_STATE:
		return r->state_ver.hlc == c->hlc && r->state_ver.hlc != 0 &&
		    nbx_str_eq(r->state_ver.origin, c->origin) &&
		    c->val.t == NBX_V_INT && r->state == c->val.i;
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		g = crdt_record_find(r, c->field,
		    c->kind == CHANGE_ELEM ? c->elem : none);
		return g && (g->flags & CRDT_REG_VALUE) &&
		    ((g->flags & CRDT_REG_ELEM) != 0) ==
		    (c->kind == CHANGE_ELEM) &&
		    g->ver.hlc == c->hlc && nbx_str_eq(g->ver.origin,
		    c->origin) && g->aud.hlc == c->aud.hlc &&
		    nbx_str_eq(g->aud.origin, c->aud.origin) &&
		    nbx_value_eq(&g->val, &c->val);
	default:
		return 0;
	}
}

/*
 * A local write that would leave the record as it is gets no new version,
 * so writing (or importing) the same data twice changes nothing.
 */
static int
local_unchanged(const struct crdt_record *r, const struct change *c)
{
	const struct crdt_reg *g;
	struct nbx_str none = { "", 0 };

	switch (c->kind) {
	case CHANGE_STATE:
		return r->state_ver.hlc != 0 && r->state == c->val.i;
	case CHANGE_AUDIENCE:
		return r->aud.hlc != 0 && aud_subset(&r->aud, &c->aud) &&
		    aud_subset(&c->aud, &r->aud);
	case CHANGE_ERASE:
		return r->erased;
	case CHANGE_RECEIPT: {
		const struct crdt_receipt *x = crdt_record_receipt(r, c->field,
		    c->elem);

		return x && x->state >= c->val.i;
	}
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		g = crdt_record_find(r, c->field,
		    c->kind == CHANGE_ELEM ? c->elem : none);
		if (g == NULL && c->kind == CHANGE_ELEM && c->val.i == 0)
			return 1;	/* removing what is not there */
		return g && (g->flags & CRDT_REG_VALUE) &&
		    nbx_value_eq(&g->val, &c->val) &&
		    g->aud.hlc == c->aud.hlc && nbx_str_eq(g->aud.origin,
		    c->aud.origin);
	}
	return 0;
}

static const char *
own_str(struct apply *a, const char *p, size_t n)
{
	char **o = realloc(a->owned, (a->nowned + 1) * sizeof(*o));
	char *s;

	if (o == NULL)
		return NULL;
	a->owned = o;
	if ((s = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(s, p, n);
	s[n] = 0;
	a->owned[a->nowned++] = s;
	return s;
}

/*
 * Merges a receipt this node makes into the record.  It is stamped with
 * the version of what caused it (the erase, or the audience that excluded
 * this node), not with the clock, so that the merged state stays a
 * function of the changes received, whatever their order.
 */
static int
receipt_local(struct apply *a, const char *what, struct nbx_str node,
    int state, uint64_t hlc)
{
	struct change c;
	int changed;

	memset(&c, 0, sizeof(c));
	c.kind = CHANGE_RECEIPT;
	c.coll = a->r.rec.coll;
	c.id = a->r.rec.id;
	c.field = nbx_str_c(what);
	c.elem = node;
	c.val.t = NBX_V_INT;
	c.val.i = state;
	c.origin = a->self;
	c.hlc = hlc;
	return crdt_record_merge(&a->r.rec, &c, a->self, &changed);
}

struct pending_args {
	struct apply *a;
	const char *what;
	uint64_t hlc;
	const struct nbx_audience *keep;	/* revoke: peers still in */
	int rc;
};

static int
pending_one(void *arg, struct nbx_str peer, uint64_t time_ms)
{
	struct pending_args *x = arg;
	const char *p;

	(void)time_ms;
	if (nbx_str_eq(peer, x->a->self) ||
	    (x->keep && nbx_audience_has(x->keep, peer)))
		return 0;
	/* the peer name lives in LMDB only until the next write: copy it */
	if ((p = own_str(x->a, peer.p, peer.n)) == NULL) {
		x->rc = NBX_ENOMEM;
		return 1;
	}
	x->rc = receipt_local(x->a, x->what, (struct nbx_str){ p, peer.n },
	    RECEIPT_PENDING, x->hlc);
	return x->rc != 0;
}

/*
 * The record's creator has just set a new audience: a pending revocation
 * receipt for every node the old audience held and the new one does not,
 * stamped with the new audience's version.  The creator is the one node
 * that knows every audience a record had; the receipts carry that to
 * every holder, so any of them can tell a removed node it was removed
 * (egress.c sends a node a receipt names the record's audience), also a
 * relay that never disclosed the record to it itself or lost the log of
 * it when rebuilt from empty.  A removed node that learns of its removal
 * answers with its own receipt, done.  0 or NBX_ENOMEM.
 */
static int
revoke_removed(struct apply *a, const struct nbx_audience *old)
{
	const struct nbx_audience *now = &a->r.rec.aud;
	const char *p;
	int rc = 0;

	for (uint32_t i = 0; i < old->n && rc == 0; i++) {
		if (nbx_audience_has(now, old->ids[i]))
			continue;
		/* the old ids may live in a blob the next write replaces */
		if ((p = own_str(a, old->ids[i].p, old->ids[i].n)) == NULL)
			return NBX_ENOMEM;
		rc = receipt_local(a, "revoke", (struct nbx_str){ p,
		    old->ids[i].n }, RECEIPT_PENDING, now->hlc);
	}
	return rc;
}

/*
 * A holder's own receipt has no time: the earliest version, so that a
 * node reaches the same state whatever order it got the record's changes
 * in, and any receipt for it with a time (a purge) supersedes it.
 */
#define HOLDER_HLC	1

/*
 * Who held a record is part of the record.  A node that holds a record
 * with an audience names itself in a pending erasure receipt ("received
 * data, must purge"), which travels with the record, merged by union
 * like every receipt, to every node that holds it.  A disclosure log is
 * lost when its node is rebuilt from empty, and the creator's memory of
 * its audiences when the creator is; this is not: the rebuilt node gets
 * it back with the record.  The egress filter sends a node a receipt
 * names the record's audience (so a removed node learns it) and its
 * erasure.  Sets *changed when the receipt is new.  0 or NBX_ENOMEM.
 */
static int
note_holder(struct apply *a, int *changed)
{
	const struct crdt_record *r = &a->r.rec;
	int rc;

	if (r->erased || r->aud.hlc == 0 ||
	    crdt_record_receipt(r, nbx_str_c("erase"), a->self) != NULL)
		return 0;
	if ((rc = receipt_local(a, "erase", a->self, RECEIPT_PENDING,
	    HOLDER_HLC)) != 0)
		return rc;
	*changed = 1;
	return 0;
}

/* 1 if the two audiences hold the same ids. */
static int
aud_same(const struct nbx_audience *x, const struct nbx_audience *y)
{
	return aud_subset(x, y) && aud_subset(y, x);
}

/*
 * This node is the only author of its own versions.  A received change
 * that names this node as its origin, or travels under an audience this
 * node set, can be an echo of what this node made, or a forgery.  Echoes
 * are at most as new as what this node holds (and, for an audience, hold
 * the same ids).  A write under an older audience of ours is taken
 * whether or not its writer is still in our audience: it may have been
 * made before the writer learnt of its removal, every other member takes
 * it, and it travels under the audience it was written under (crdt.h).
 *
 * Except for the versions this store may have lost.  A store restored
 * from a backup (an mdb_copy) or rebuilt from empty cannot know which
 * of its versions it lost: those stamped after the backup, or all of
 * them, are remembered only by its peers.  So own_since is the first
 * version stamped in this process run of the store, 0 ("none yet") when
 * the store opens: a version of ours that this store does not hold and
 * that is older than own_since, or any while it is 0, may be a lost
 * one.  It is taken as the faithful copy any relayed change is taken
 * as, and passes the same policy checks.  This node cannot tell it from
 * a forgery, but that trusts a peer with nothing new: a peer that
 * relays can already forge the versions of any origin but the receiver,
 * and every other node takes this node's versions from it on that same
 * trust.  What stays refused is a version of ours newer than this run's
 * first stamp that this store does not hold: from that stamp on it
 * knows every version it makes.  That is how a rebuilt or restored
 * store gets its own records back, whole, from any peer and in any
 * order.  Returns 1 to accept.
 */
static int
own_version_known(const struct crdt_record *r, const struct change *c,
    struct nbx_str self, uint64_t own_since)
{
	struct crdt_ver v = { c->hlc, c->origin };
	struct crdt_ver av = { c->aud.hlc, c->aud.origin };
	struct crdt_ver cur = { r->aud.hlc, r->aud.origin };
	struct nbx_str none = { "", 0 };
	const struct crdt_reg *g;
	const struct crdt_receipt *x;
	int k;

#define FORMER(h)	(own_since == 0 || (h) < own_since)
	if (c->aud.n && nbx_str_eq(c->aud.origin, self) &&
	    !FORMER(c->aud.hlc)) {
		k = crdt_ver_cmp(av, cur);
		if (k > 0 || (k == 0 && !aud_same(&c->aud, &r->aud)))
			return 0;	/* an audience of ours we never set */
	}
	if (!nbx_str_eq(c->origin, self) || FORMER(c->hlc))
		return 1;
#undef FORMER
	switch (c->kind) {
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		g = crdt_record_find(r, c->field,
		    c->kind == CHANGE_ELEM ? c->elem : none);
		return g && crdt_ver_cmp(g->ver, v) >= 0;
	case CHANGE_AUDIENCE:
		k = crdt_ver_cmp(v, cur);
		return k < 0 || (k == 0 && aud_same(&c->aud, &r->aud));
	case CHANGE_STATE:
		return crdt_ver_cmp(v, r->state_ver) <= 0;
	case CHANGE_ERASE:
		return r->erased && crdt_ver_cmp(v, r->erase) <= 0;
	case CHANGE_RECEIPT:
		x = crdt_record_receipt(r, c->field, c->elem);
		return x && crdt_ver_cmp(x->ver, v) >= 0;
	}
	return 0;
}

/*
 * This node just purged a record's data (erasure) or its audience-scoped
 * values (it left the audience): it records its own receipt and a pending
 * one for every peer it ever sent any part of the record to, so the purge
 * is tracked until each of them confirms.  For an erasure the record also
 * enters the erasures index.
 */
static int
purge_receipts(struct apply *a, const char *what, uint64_t hlc)
{
	struct pending_args x = { a, what, hlc, NULL, 0 };
	struct apply_rec *ar = &a->r;
	int rc;

	if (strcmp(what, "revoke") == 0)
		x.keep = &ar->rec.aud;
	if ((rc = receipt_local(a, what, a->self, RECEIPT_DONE, hlc)) != 0)
		return rc;
	rc = store__disclosed_peers(a->st, a->txn, ar->rec.coll, ar->rec.id,
	    pending_one, &x);
	if (rc == 0)
		rc = x.rc;
	if (rc == 0 && strcmp(what, "erase") == 0) {
		uint8_t tb[8];
		MDB_val k = { ar->klen, ar->key }, d = { 8, tb };

		store__be64_put(tb, ar->rec.erase.hlc);
		rc = store__mdb_code(a->st, mdb_put(a->txn,
		    a->st->dbi[DB_ERASURES], &k, &d, 0), "put erasure");
	}
	return rc;
}

/*
 * Validates and merges one change.  Returns 0 with *out filled (applied,
 * no-op or rejected), or an NBX_E* code that aborts the batch.
 */
static int
apply_one(struct apply *a, const struct change *in, struct store_outcome *out)
{
	struct change c;
	const struct pol_coll *pc;
	const struct pol_field *pf = NULL;
	int remote = a->peer.n > 0, changed = 0, rc;
	struct crdt_ver excl_before, erase_before;
	struct nbx_audience aud_before;

	change_copy(&c, in);
	memset(out, 0, sizeof(*out));
	if (c.coll.n == 0 || c.coll.n > NBX_NAME_MAX || c.id.n == 0 ||
	    c.id.n > NBX_RECID_MAX) {
		rc = c.coll.n == 0 || c.coll.n > NBX_NAME_MAX ? NBX_ECOLL :
		    NBX_EINVAL;
		goto reject;
	}
	if (remote && (a->flags & STORE_NO_RELAY) &&
	    !nbx_str_eq(c.origin, a->peer)) {
		rc = NBX_EPEER;	/* a peer trusted only for its own changes */
		goto reject;
	}
	if (remote) {
		/* the audience version a change carries is a time too */
		if ((rc = hlc_check_drift(c.hlc, a->now_ms,
		    a->st->max_drift_ms)) != 0 ||
		    (rc = hlc_check_drift(c.aud.hlc, a->now_ms,
		    a->st->max_drift_ms)) != 0) {
			if ((rc = defer_put(a, &c)) != 0)
				return rc;
			rc = NBX_EDRIFT;
			goto reject;
		}
	} else {
		/* a local scoped write travels under the record's audience */
		c.origin = a->self;
		c.hlc = 0;
		if (c.kind == CHANGE_AUDIENCE) {
			c.aud.hlc = 0;
			c.aud.origin = a->self;
		}
		pc = policy_coll(a->pol, c.coll);
		if (pc && (c.kind == CHANGE_FIELD || c.kind == CHANGE_ELEM))
			pf = policy_field(pc, c.field);
		if ((rc = rec_load(a, c.coll, c.id)) != 0)
			return rc;
		if (pf && pf->share == SHARE_AUDIENCE)
			nbx_aud_copy(&c.aud, &a->r.rec.aud);
	}
	if (remote && (rc = rec_load(a, c.coll, c.id)) != 0)
		return rc;	/* (a local change loaded it above) */
	if (remote && !a->r.rec.erased && remote_held(&a->r.rec, &c)) {
		out->status = STORE_NOOP;
		return 0;
	}
	if ((rc = policy_check_change_memo(a->pol, &c, a->self, remote, NULL,
	    &a->memo)) != 0)
		goto reject;
	if (a->r.rec.erased && c.kind != CHANGE_ERASE && !remote) {
		rc = NBX_EERASED;
		goto reject;
	}
	if (!remote) {
		/*
		 * Writing what is already there changes nothing, so importing
		 * a file twice is a no-op.  Not for fields several nodes may
		 * write: a peer's concurrent write we have not seen yet would
		 * win over this later one if it kept its old version.
		 */
		if ((pf == NULL || pf->writers != WRITERS_AUDIENCE) &&
		    local_unchanged(&a->r.rec, &c)) {
			out->status = STORE_NOOP;
			return 0;
		}
		c.hlc = hlc_now(&a->clock, a->now_ms);
		if (a->own_since == 0)
			a->own_since = c.hlc;
		if (c.kind == CHANGE_AUDIENCE)
			c.aud.hlc = c.hlc;
	}
	out->hlc = c.hlc;
	if (remote && a->r.rec.erased && c.kind != CHANGE_ERASE &&
	    c.kind != CHANGE_RECEIPT) {
		rc = NBX_EERASED;	/* a stale update: the id is erased */
		goto reject;
	}
	if (remote && (nbx_str_eq(c.origin, a->self) ||
	    (c.aud.n && nbx_str_eq(c.aud.origin, a->self))) &&
	    !own_version_known(&a->r.rec, &c, a->self, a->own_since)) {
		rc = NBX_EPEER;		/* claims to be ours, and is not */
		goto reject;
	}
	if (remote)
		(void)hlc_receive(&a->clock, c.hlc, a->now_ms,
		    a->st->max_drift_ms);
	erase_before = a->r.rec.erase;
	excl_before = a->r.rec.excl;
	if (!remote && c.kind == CHANGE_AUDIENCE)
		nbx_aud_copy(&aud_before, &a->r.rec.aud);
	if ((rc = crdt_record_merge(&a->r.rec, &c, a->self, &changed)) != 0)
		return rc;
	if (changed && !remote && c.kind == CHANGE_AUDIENCE) {
		crdt_record_restamp(&a->r.rec, a->self);
		if ((rc = revoke_removed(a, &aud_before)) != 0)
			return rc;
	}
	/*
	 * A member's write made before it heard of our latest audience
	 * arrives stamped with an older one: re-stamped as it would have
	 * been had it come before that audience, or the members it was not
	 * stamped for never get it, and the winners differ for good.  So
	 * are the values written here under an older audience of ours when
	 * a newer one this store had lost (restored from a backup, rebuilt)
	 * comes back: as if it had been set after them.
	 */
	if (changed && remote && (((c.kind == CHANGE_FIELD ||
	    c.kind == CHANGE_ELEM) && c.aud.n > 0) ||
	    c.kind == CHANGE_AUDIENCE) &&
	    nbx_str_eq(a->r.rec.aud.origin, a->self))
		crdt_record_restamp(&a->r.rec, a->self);
	/* the receipt follows the purge's greatest version */
	if (changed && a->r.rec.erased &&
	    crdt_ver_cmp(a->r.rec.erase, erase_before) != 0 &&
	    (rc = purge_receipts(a, "erase", a->r.rec.erase.hlc)) != 0)
		return rc;
	if (changed && !a->r.rec.erased &&
	    crdt_ver_cmp(a->r.rec.excl, excl_before) != 0 &&
	    (rc = purge_receipts(a, "revoke", a->r.rec.excl.hlc)) != 0)
		return rc;
	if ((rc = note_holder(a, &changed)) != 0)
		return rc;
	if (!changed) {
		out->status = STORE_NOOP;
		return 0;
	}
	a->r.dirty = 1;
	a->r.seq = a->next_seq++;
	out->status = STORE_APPLIED;
	out->seq = a->r.seq;
	return 0;
reject:
	out->status = STORE_REJECTED;
	out->err = rc;
	if (remote)
		return quarantine_put(a, &c, rc);
	return 0;
}

/* 1 if x and y are the same change: kind, place, value and versions. */
static int
change_same(const struct change *x, const struct change *y)
{
	return x->kind == y->kind && x->hlc == y->hlc &&
	    nbx_str_eq(x->origin, y->origin) &&
	    nbx_str_eq(x->field, y->field) && nbx_str_eq(x->elem, y->elem) &&
	    nbx_value_eq(&x->val, &y->val) && x->aud.hlc == y->aud.hlc &&
	    nbx_str_eq(x->aud.origin, y->aud.origin) &&
	    aud_same(&x->aud, &y->aud);
}

/* A record's changes, each looked for among the ones a peer sent. */
struct cover {
	const struct change *sent;
	size_t n, next;
};

static int
cover_one(void *arg, const struct change *c)
{
	struct cover *k = arg;

	/* the sender listed them in the same order: try the next one first */
	for (size_t t = 0; t < k->n; t++) {
		size_t i = (k->next + t) % k->n;

		if (change_same(&k->sent[i], c)) {
			k->next = i + 1;
			return 0;
		}
	}
	return 1;		/* not sent: the sender may lack it */
}

/*
 * After the changes sent[0..n) of one record from the batch's sender were
 * applied: if every version the record now holds is among them, the
 * sender holds all of it, and streaming the record back to it would send
 * nothing new (in a mesh, most relayed records).  Noted on the record, and
 * as a hint once its log seq is final (rec_flush).  Anything refused,
 * erased or missing from what was sent leaves the record unmarked.
 */
static void
held_by_sender(struct apply *a, const struct change *sent, size_t n,
    const struct store_outcome *out)
{
	struct apply_rec *ar = &a->r;
	struct cover k = { sent, n, 0 };
	struct nbx_str author;

	if (!ar->loaded || !nbx_str_eq(ar->rec.coll, sent[0].coll) ||
	    !nbx_str_eq(ar->rec.id, sent[0].id))
		return;		/* refused before it was loaded */
	ar->sender_has = 0;	/* also if an earlier run of the batch had it */
	if (ar->rec.erased)
		return;
	for (size_t i = 0; i < n; i++)
		if (out[i].status == STORE_REJECTED)
			return;
	/* every version the sender's own (a sync from the record's origin):
	 * it holds them, no need to look for each among what it sent */
	if (crdt_record_sole_author(&ar->rec, &author) &&
	    nbx_str_eq(author, a->peer)) {
		ar->sender_has = 1;
		return;
	}
	ar->sender_has = crdt_record_changes(&ar->rec, cover_one, &k) == 0;
}

static int
cursor_put(struct apply *a, const struct store_cursor *cur)
{
	uint8_t b[16];
	MDB_val k = { cur->peer.n, (void *)cur->peer.p }, d = { 16, b };

	store__be64_put(b, cur->epoch);
	store__be64_put(b + 8, cur->seq);
	return store__mdb_code(a->st, mdb_put(a->txn, a->st->dbi[DB_CURSORS], &k, &d,
	    0), "put cursor");
}

/*
 * The arguments of one store_apply, for the write-transaction runner.  The
 * changes come from the caller's array (chs) or from a source (src); from
 * a source, only the changes of the record being merged are held, in rec.
 */
struct apply_args {
	struct apply a;
	const struct change *chs;
	size_t n;			/* array: its length; source: out's */
	const struct store_change_src *src;
	struct change *rec;		/* source: the current record's run */
	size_t nrec, rec_cap;
	size_t run_at;			/* the first change of that run */
	size_t taken;			/* changes taken by the last attempt */
	const struct store_cursor *cur;
	unsigned flags;
	struct store_outcome *out;
};

/*
 * The run of changes to one record that began at change x->run_at ended
 * before change i: a peer's hints for it (held_by_sender), while a->r is
 * still that record.  From a source the run is x->rec[0..nrec).
 */
static void
run_end(struct apply_args *x, size_t i)
{
	if (x->a.peer.n > 0 && i > x->run_at)
		held_by_sender(&x->a, x->src ? x->rec : &x->chs[x->run_at],
		    i - x->run_at, &x->out[x->run_at]);
	x->run_at = i;
}

/*
 * Takes change i into *c, ending the run before it when it starts another
 * record.  From a source, change i is read straight into the run's next
 * slot, and moved to slot 0 when it starts a new run; *c stays valid
 * until the next take.  Returns 1, 0 after the last change, or an NBX_E*
 * code.
 */
static int
take(struct apply_args *x, size_t i, const struct change **c)
{
	int rc;

	if (x->src == NULL) {
		if (i == x->n)
			return 0;
		if (i > x->run_at &&
		    !change_same_record(&x->chs[i], &x->chs[x->run_at]))
			run_end(x, i);
		*c = &x->chs[i];
		return 1;
	}
	if ((rc = change_array_room(&x->rec, &x->rec_cap, x->nrec)) != 0)
		return rc;
	if ((rc = x->src->next(x->src->arg, &x->rec[x->nrec])) != 1)
		return rc;
	if (i == x->n)
		return NBX_EINVAL;	/* more changes than outcomes */
	if (x->nrec > 0 && !change_same_record(&x->rec[x->nrec], &x->rec[0])) {
		run_end(x, i);
		change_copy(&x->rec[0], &x->rec[x->nrec]);
		x->nrec = 0;
	}
	*c = &x->rec[x->nrec++];
	return 1;
}

/* One attempt at the whole batch; store__write retries on a full map. */
static int
apply_batch(MDB_txn *txn, void *arg)
{
	struct apply_args *x = arg;
	struct apply *a = &x->a;
	struct store *st = a->st;
	const struct change *c = NULL;
	size_t i;
	uint64_t h = 0;
	int rc, first_reject = 0;

	/* a retry starts from scratch: forget the previous attempt's record */
	crdt_record_fini(&a->r.rec);
	a->r.loaded = a->r.dirty = 0;
	memset(&a->memo, 0, sizeof(a->memo));
	a->txn = txn;
	/* closed by the transaction's end (a write transaction's are) */
	if ((rc = mdb_cursor_open(txn, st->dbi[DB_RECORDS], &a->recs)) != 0 ||
	    (rc = mdb_cursor_open(txn, st->dbi[DB_LOG], &a->log)) != 0)
		return store__mdb_code(st, rc, "cursor");
	if (x->src != NULL)
		x->src->rewind(x->src->arg);
	x->nrec = x->run_at = 0;
	if ((rc = store__meta_get_u64(txn, st->dbi[DB_META], "next_seq",
	    &a->next_seq)) != 0 ||
	    (rc = store__meta_get_u64(txn, st->dbi[DB_META], "hlc", &h)) != 0)
		return store__mdb_code(st, rc, "read meta");
	a->own_since = st->own_since;
	hlc_init(&a->clock, h);
	a->next_qseq = last_key_u64(txn, st->dbi[DB_QUARANTINE]) + 1;
	for (i = 0; (rc = take(x, i, &c)) == 1; i++) {
		if ((rc = apply_one(a, c, &x->out[i])) != 0)
			return rc;
		if (x->out[i].status == STORE_REJECTED && first_reject == 0)
			first_reject = x->out[i].err;
	}
	if (rc != 0)
		return rc;
	x->taken = i;
	run_end(x, i);
	if ((x->flags & STORE_ATOMIC) && first_reject != 0)
		return first_reject;
	if ((rc = rec_flush(a)) != 0)
		return rc;
	if (x->cur && (rc = cursor_put(a, x->cur)) != 0)
		return rc;
	if ((rc = store__meta_put_u64(txn, st->dbi[DB_META], "next_seq",
	    a->next_seq)) != 0 ||
	    (rc = store__meta_put_u64(txn, st->dbi[DB_META], "hlc",
	    a->clock.last)) != 0)
		return store__mdb_code(st, rc, "write meta");
	return 0;
}

/*
 * Runs one batch, from the array chs or from src; *taken (if not NULL)
 * is how many changes it took, once committed.
 */
static int
apply_run(struct store *st, const struct policy *pol,
    const struct change *chs, const struct store_change_src *src, size_t n,
    struct nbx_str from_peer, const struct store_cursor *cur,
    uint64_t now_ms, unsigned flags, struct store_outcome *out,
    size_t *taken)
{
	struct apply_args x;
	int rc;

	memset(&x, 0, sizeof(x));
	x.chs = chs;
	x.src = src;
	x.n = n;
	x.cur = cur;
	x.flags = flags;
	x.out = out;
	x.a.st = st;
	x.a.pol = pol;
	x.a.self = nbx_str_c(st->node_id);
	x.a.peer = from_peer;
	x.a.now_ms = now_ms;
	x.a.flags = flags;
	nbx_buf_init(&x.a.r.blob, SIZE_MAX);
	nbx_buf_init(&x.a.enc, SIZE_MAX);
	rc = store__write(st, apply_batch, &x);
	if (rc == 0)
		st->own_since = x.a.own_since;	/* committed */
	for (size_t i = 0; i < x.a.nowned; i++)
		free(x.a.owned[i]);
	free(x.a.owned);
	crdt_record_fini(&x.a.r.rec);
	nbx_buf_fini(&x.a.r.blob);
	nbx_buf_fini(&x.a.enc);
	free(x.rec);
	if (taken != NULL)
		*taken = rc == 0 ? x.taken : 0;
	return rc;
}

int
store_apply(struct store *st, const struct policy *pol,
    const struct change *chs, size_t n, struct nbx_str from_peer,
    const struct store_cursor *cur, uint64_t now_ms, unsigned flags,
    struct store_outcome *out)
{
	return apply_run(st, pol, chs, NULL, n, from_peer, cur, now_ms, flags,
	    out, NULL);
}

int
store_apply_from(struct store *st, const struct policy *pol,
    const struct store_change_src *src, size_t max, struct nbx_str from_peer,
    const struct store_cursor *cur, uint64_t now_ms, unsigned flags,
    struct store_outcome *out, size_t *taken)
{
	return apply_run(st, pol, NULL, src, max, from_peer, cur, now_ms,
	    flags, out, taken);
}

/* ------------------------------------------------------------------ */
/* Deferred changes                                                    */
/* ------------------------------------------------------------------ */

struct deferred {
	uint64_t key;
	char peer[NBX_ID_MAX + 1];
	uint8_t *bytes;
	size_t len;
};

static int
deferred_del(MDB_txn *txn, void *arg)
{
	struct store *st = ((void **)arg)[0];
	uint64_t key = *(uint64_t *)((void **)arg)[1];
	uint8_t kb[8];
	MDB_val k = { 8, kb };
	int rc;

	store__be64_put(kb, key);
	rc = mdb_del(txn, st->dbi[DB_DEFERRED], &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : store__mdb_code(st, rc, "del deferred");
}

int
store_retry_deferred(struct store *st, const struct policy *pol,
    uint64_t now_ms, size_t *applied)
{
	struct store_rtxn *t;
	MDB_cursor *cu;
	MDB_val k, d;
	struct deferred *due = NULL;
	size_t ndue = 0, cap = 0;
	int rc, op = MDB_FIRST;

	*applied = 0;
	if ((rc = store_rtxn_begin(st, &t)) != 0)
		return rc;
	if ((rc = mdb_cursor_open(t->txn, st->dbi[DB_DEFERRED], &cu)) != 0) {
		store_rtxn_end(t);
		return store__mdb_code(st, rc, "cursor");
	}
	while (ndue < 1000 && mdb_cursor_get(cu, &k, &d, op) == 0) {
		msgpack_unpacked u;
		struct nbx_str peer;
		struct change c;
		size_t used;
		const msgpack_object *e;

		op = MDB_NEXT;
		msgpack_unpacked_init(&u);
		if (k.mv_size == 8 && store__unpack(&u, &d) == 0 &&
		    u.data.type == MSGPACK_OBJECT_ARRAY &&
		    u.data.via.array.size == 2 &&
		    (e = u.data.via.array.ptr)[1].type == MSGPACK_OBJECT_BIN &&
		    nbx_mp_get_str(&e[0], NBX_ID_MAX, &peer) == 0 &&
		    change_decode(e[1].via.bin.ptr, e[1].via.bin.size, &c,
		    &used) == 0 &&
		    hlc_check_drift(c.hlc, now_ms, st->max_drift_ms) == 0 &&
		    hlc_check_drift(c.aud.hlc, now_ms, st->max_drift_ms) == 0) {
			struct deferred *x;

			if (ndue == cap) {
				cap = cap ? cap * 2 : 16;
				x = realloc(due, cap * sizeof(*due));
				if (x == NULL) {
					msgpack_unpacked_destroy(&u);
					break;
				}
				due = x;
			}
			x = &due[ndue];
			x->key = store__be64_get(k.mv_data);
			snprintf(x->peer, sizeof(x->peer), "%.*s", (int)peer.n,
			    peer.p);
			x->len = e[1].via.bin.size;
			if ((x->bytes = malloc(x->len)) != NULL) {
				memcpy(x->bytes, e[1].via.bin.ptr, x->len);
				ndue++;
			}
		}
		msgpack_unpacked_destroy(&u);
	}
	mdb_cursor_close(cu);
	store_rtxn_end(t);
	for (size_t i = 0; i < ndue && rc == 0; i++) {
		struct change c;
		struct store_outcome out;
		size_t used;
		void *arg[2] = { st, &due[i].key };

		if (change_decode(due[i].bytes, due[i].len, &c, &used) == 0 &&
		    (rc = store_apply(st, pol, &c, 1, nbx_str_c(due[i].peer),
		    NULL, now_ms, 0, &out)) == 0 && out.status == STORE_APPLIED)
			(*applied)++;
		/* applied, or refused for good: either way it is done */
		if (rc == 0)
			rc = store__write(st, deferred_del, arg);
	}
	for (size_t i = 0; i < ndue; i++)
		free(due[i].bytes);
	free(due);
	return rc;
}
