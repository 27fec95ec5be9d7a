/*
 * egress.c - what leaves this node for one peer: the CHANGES batches
 * built from the change log, the egress filter that decides which of a
 * record's changes the peer may receive, and the disclosure log entry
 * written before a batch may be queued.
 *
 * A byte that leaves a node where policy did not permit it is the worst
 * bug this project can have, so this file keeps three lines of defence:
 * the filter (sync__egress_filter), a re-check of every change decoded
 * back from the finished frame against the schema before it is disclosed
 * (a local or unknown field stops the batch), and the disclosure log
 * itself, written from those decoded bytes, so it names exactly what the
 * peer will receive.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"
#include "frame.h"
#include "nbx_err.h"

#define EGRESS_SLACK	(64u << 10)	/* reserved beyond a batch's bytes */

void
sync__egress_init(struct sync_egress *e)
{
	memset(e, 0, sizeof(*e));
	nbx_buf_init(&e->frame, FRAME_HDR + FRAME_BODY_MAX);
}

void
sync__egress_fini(struct sync_egress *e)
{
	free(e->rec);
	free(e->keep);
	nbx_buf_fini(&e->frame);
	memset(e, 0, sizeof(*e));
}

/* ------------------------------------------------------------------ */
/* The filter                                                          */
/* ------------------------------------------------------------------ */

static int
coll_has_region(const struct pol_coll *pc)
{
	for (size_t i = 0; i < pc->nfields; i++)
		if (pc->fields[i].share == SHARE_REGION)
			return 1;
	return 0;
}

/* A FIELD or ELEM change: a known field, of its kind, that may go to P. */
static int
field_may_go(const struct pol_coll *pc, const struct crdt_record *r,
    const struct change *c, struct nbx_str peer)
{
	const struct pol_field *f = policy_field(pc, c->field);

	if (f == NULL || f->share == SHARE_LOCAL)
		return 0;
	if ((c->kind == CHANGE_ELEM) != (f->type == POL_SET))
		return 0;
	return policy_may_send(f, &c->aud, &r->aud, peer) == 1;
}

/*
 * 1 if a receipt of r names P: P purged, must purge, or itself answered
 * for someone who must.  Each of those held the record, so the receipts
 * tell it nothing it did not know.  After an erasure this is all that
 * is left of who held the record (its audience is purged with the rest),
 * and it is the way back to the eraser for a node that got the erasure
 * from a relay: the relay is named in the pending receipt it sent along.
 */
static int
receipts_name(const struct crdt_record *r, struct nbx_str peer)
{
	for (size_t i = 0; i < r->nrcpt; i++)
		if (nbx_str_eq(r->rcpt[i].node, peer) ||
		    nbx_str_eq(r->rcpt[i].ver.origin, peer))
			return 1;
	return 0;
}

/*
 * 1 if a pending erasure receipt of r names P: P held the record (or was
 * sent it) and has not said it purged.  Before an erasure, each holder's
 * own pending receipt says who must get it.
 */
static int
must_purge(const struct crdt_record *r, struct nbx_str peer)
{
	const struct crdt_receipt *x = crdt_record_receipt(r,
	    nbx_str_c("erase"), peer);

	return x != NULL && x->state == RECEIPT_PENDING;
}

/*
 * v || disclosed, where disclosed may be unknown: then *ask is set when
 * the answer would depend on it.
 */
static unsigned char
or_disclosed(int v, int disclosed, int *ask)
{
	if (v)
		return 1;
	if (disclosed == EGRESS_DISCLOSED_UNKNOWN) {
		*ask = 1;
		return 0;
	}
	return disclosed != 0;
}

size_t
sync__egress_filter(const struct policy *pol, const struct crdt_record *r,
    const struct change *chs, size_t n, int disclosed, struct nbx_str peer,
    unsigned char *keep)
{
	const struct pol_coll *pc = policy_coll(pol, r->coll);
	size_t count = 0;
	int data = 0, ask = 0;

	if (n > 0)
		memset(keep, 0, n);
	if (pc == NULL)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const struct change *c = &chs[i];

		switch (c->kind) {
		case CHANGE_FIELD:
		case CHANGE_ELEM:
			keep[i] = (unsigned char)field_may_go(pc, r, c, peer);
			data |= keep[i];
			break;
		case CHANGE_AUDIENCE:
			/*
			 * To its members, and to every node that held the
			 * record: this is how a removed node learns it was
			 * removed.  A relay may not have disclosed the record
			 * to it (or lost the log of it when rebuilt), but the
			 * creator's pending revocation receipt names it.
			 */
			keep[i] = or_disclosed(nbx_audience_has(&r->aud, peer) ||
			    receipts_name(r, peer), disclosed, &ask);
			data |= keep[i];
			break;
		case CHANGE_ERASE:
			/*
			 * To every node that held the record and has not
			 * said it purged: each names itself in a pending
			 * receipt (store/apply.c note_holder), which outlives
			 * the disclosure log of the relay that sent it the
			 * record.
			 */
			keep[i] = or_disclosed(coll_has_region(pc) ||
			    must_purge(r, peer), disclosed, &ask);
			break;
		case CHANGE_RECEIPT:
			/*
			 * Receipts say who purged; they travel to whoever had
			 * the record (its audience, the nodes its receipts
			 * name, those it was disclosed to), and back to its
			 * creator, so the eraser learns about nodes it reached
			 * through relays: hop by hop, back along the path the
			 * erasure came.
			 */
			keep[i] = or_disclosed(coll_has_region(pc) ||
			    nbx_audience_has(&r->aud, peer) ||
			    receipts_name(r, peer) ||
			    nbx_str_eq(nbx_id_creator(r->id), peer), disclosed,
			    &ask);
			break;
		case CHANGE_STATE:
			break;		/* decided below, once data is known */
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (chs[i].kind == CHANGE_STATE)
			keep[i] = or_disclosed(data, disclosed, &ask);
		count += keep[i];
	}
	return ask ? EGRESS_ASK : count;
}

/* ------------------------------------------------------------------ */
/* Building a batch                                                    */
/* ------------------------------------------------------------------ */

/* A capacity of at least `need`, doubling from `cap`; 0 on overflow. */
static size_t
next_cap(size_t cap, size_t need, size_t size)
{
	size_t n = cap ? cap : 16;

	while (n < need) {
		if (n > SIZE_MAX / 2 / size)
			return 0;
		n *= 2;
	}
	return n;
}

/* Makes room for `need` changes (and their verdicts) in e->rec. */
static int
rec_reserve(struct sync_egress *e, size_t need)
{
	size_t n = next_cap(e->rec_cap, need, sizeof(*e->rec));
	struct change *rec;
	unsigned char *keep;

	if (need <= e->rec_cap)
		return 0;
	if (n == 0 || (rec = realloc(e->rec, n * sizeof(*rec))) == NULL)
		return NBX_ENOMEM;
	e->rec = rec;
	if ((keep = realloc(e->keep, n)) == NULL)
		return NBX_ENOMEM;
	e->keep = keep;
	e->rec_cap = n;
	return 0;
}

/* crdt_record_changes callback: copies each change into e->rec. */
struct collect {
	struct sync_egress *e;
	size_t n;
};

static int
collect_one(void *arg, const struct change *c)
{
	struct collect *k = arg;

	if (rec_reserve(k->e, k->n + 1) != 0)
		return NBX_ENOMEM;
	change_copy(&k->e->rec[k->n++], c);
	return 0;
}

/*
 * Adds the permitted changes of record (coll, id) to the batch.  Returns
 * 0 (added, or nothing to add), NBX_ETOOBIG if they do not fit in what is
 * left of the frame (the batch is then as before), or an error.
 */
static int
add_record(struct store_rtxn *t, const struct policy *pol,
    struct nbx_str peer, int omit_own, struct sync_egress *e,
    struct frame_batch *fb, struct nbx_str coll, struct nbx_str id)
{
	struct crdt_record r;
	struct collect k = { e, 0 };
	struct frame_batch save = *fb;
	size_t len = e->frame.len, go;
	int rc;

	rc = store_record_get(t, coll, id, &r);
	if (rc == NBX_ENOTFOUND) {
		rc = 0;		/* a log entry without its record: nothing */
		goto out;
	}
	if (rc != 0)
		goto out;
	if ((rc = crdt_record_changes(&r, collect_one, &k)) != 0)
		goto out;
	/* the disclosure index only when a verdict hangs on it */
	go = sync__egress_filter(pol, &r, e->rec, k.n,
	    EGRESS_DISCLOSED_UNKNOWN, peer, e->keep);
	if (go == EGRESS_ASK)
		go = sync__egress_filter(pol, &r, e->rec, k.n,
		    store_disclosed(t, coll, id, peer), peer, e->keep);
	if (go == 0)
		goto out;
	for (size_t i = 0; i < k.n; i++) {
		/*
		 * The peer made it, so the peer has it (store.h: resync);
		 * not a value of the peer's the creator re-stamped with a
		 * new audience (crdt_record_restamp): that copy it lacks.
		 */
		if (omit_own && nbx_str_eq(e->rec[i].origin, peer) &&
		    (e->rec[i].aud.n == 0 ||
		    nbx_str_eq(e->rec[i].aud.origin, peer)))
			e->keep[i] = 0;
		if (!e->keep[i])
			continue;
		if ((rc = frame_changes_add(&e->frame, fb, &e->rec[i])) != 0) {
			*fb = save;
			e->frame.len = len;
			goto out;
		}
	}
out:
	crdt_record_fini(&r);
	return rc;
}

/*
 * The finished frame decoded back, one change at a time, each checked
 * against the schema once more: the disclosure's source (store.h).
 */
struct sent_src {
	const struct policy *pol;
	struct frame_msg m;
	struct frame_src f;
};

static int
sent_next(void *arg, struct change *c)
{
	struct sent_src *x = arg;
	const struct pol_coll *pc;
	const struct pol_field *f;
	int rc;

	if ((rc = frame_src_next(&x->f, c)) != 1)
		return rc;
	if (c->kind == CHANGE_FIELD || c->kind == CHANGE_ELEM) {
		pc = policy_coll(x->pol, c->coll);
		f = pc ? policy_field(pc, c->field) : NULL;
		if (f == NULL || f->share == SHARE_LOCAL)
			return NBX_EPERM;
	}
	return 1;
}

static void
sent_rewind(void *arg)
{
	frame_src_rewind(&((struct sent_src *)arg)->f);
}

/*
 * Decodes the finished frame back into changes, checks each against the
 * schema once more, and records them in the disclosure log; a change
 * that fails the check aborts the disclosure, and so the batch.
 */
static int
disclose(struct store *st, const struct policy *pol, struct nbx_str peer,
    uint64_t now_ms, struct sync_egress *e)
{
	struct sent_src x = { pol, { 0 }, { 0 } };
	struct store_change_src src = { sent_next, sent_rewind, &x };
	int rc;

	x.f.m = &x.m;

	if ((rc = frame_decode_lazy(e->frame.p + FRAME_HDR,
	    e->frame.len - FRAME_HDR, &x.m)) != 0)
		return rc;
	if (x.m.nchanges == 0)		/* nothing disclosed, nothing to write */
		return x.m.changes_len == 0 ? 0 : NBX_EMALFORMED;
	return store_disclose_from(st, peer, &src, now_ms);
}

int
sync__egress_batch(struct store *st, const struct policy *pol,
    struct nbx_str peer, uint64_t epoch, uint64_t now_ms,
    struct sync_egress *e, struct sync_batch *b)
{
	struct store_rtxn *t = NULL;
	struct frame_batch fb;
	uint64_t pos = b->after, seq;
	struct nbx_str coll, id;
	int rc;

	b->upto = b->after;
	b->scanned = 0;
	b->nchanges = 0;
	e->frame.len = 0;
	/*
	 * A batch ends past b->bytes by at most its last record; room for
	 * that at once, so a buffer the session gave back small or empty
	 * (session.c: out_take_frame) is not grown, and copied, step by step.
	 */
	if ((rc = nbx_buf_reserve(&e->frame, b->bytes + EGRESS_SLACK)) != 0 &&
	    rc != NBX_ETOOBIG)
		goto out;
	if ((rc = frame_changes_begin(&e->frame, epoch, &fb)) != 0)
		goto out;
	if ((rc = store_rtxn_begin(st, &t)) != 0)
		goto out;
	while (b->scanned < b->scan_max) {
		rc = store_log_next(t, pos, &seq, &coll, &id);
		if (rc == NBX_ENOTFOUND) {
			rc = 0;
			break;
		}
		if (rc != 0)
			goto out;
		/* all made or sent by the peer: nothing to send or load */
		if (b->omit_own && store_log_peer_has(st, seq, peer))
			rc = 0;
		else
			rc = add_record(t, pol, peer, b->omit_own, e, &fb,
			    coll, id);
		if (rc == NBX_ETOOBIG && fb.n > 0) {
			rc = 0;		/* full: the record opens the next batch */
			break;
		}
		if (rc != 0)
			goto out;
		pos = seq;
		b->scanned++;
		if (frame_changes_size(&e->frame, &fb) >= b->bytes)
			break;
	}
	/* the read transaction must end before the store is written */
	store_rtxn_end(t);
	t = NULL;
	if (b->scanned == 0)
		goto out;
	if ((rc = frame_changes_finish(&e->frame, &fb, pos)) != 0 ||
	    (rc = disclose(st, pol, peer, now_ms, e)) != 0)
		goto out;
	b->upto = pos;
	b->nchanges = fb.n;
out:
	store_rtxn_end(t);
	if (rc != 0 || b->scanned == 0) {
		e->frame.len = 0;
		b->upto = b->after;
		b->scanned = 0;
		b->nchanges = 0;
	}
	return rc;
}
