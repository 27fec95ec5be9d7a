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

/*
 * Policy's answer applied: whether the change goes, where disclosed may
 * be unknown: then *ask is set when the answer would depend on it.
 */
static unsigned char
apply_answer(enum policy_send s, int disclosed, int *ask)
{
	if (s != POLICY_SEND_IF_DISCLOSED)
		return s == POLICY_SEND_YES;
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
	/* policy decides (policy_may_send_change); this applies it */
	for (size_t i = 0; i < n; i++) {
		const struct change *c = &chs[i];

		if (c->kind == CHANGE_STATE)
			continue;	/* decided below, once data is known */
		keep[i] = apply_answer(policy_may_send_change(pc, r, c, peer, 0),
		    disclosed, &ask);
		if (c->kind == CHANGE_FIELD || c->kind == CHANGE_ELEM ||
		    c->kind == CHANGE_AUDIENCE)
			data |= keep[i];
	}
	for (size_t i = 0; i < n; i++) {
		if (chs[i].kind == CHANGE_STATE)
			keep[i] = apply_answer(policy_may_send_change(pc, r, &chs[i],
			    peer, data), disclosed, &ask);
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

/*
 * Whole records, for reconciliation: the permitted changes of each key in
 * keys[*off..) ("coll\0id\0" each), the peer's own included (a restored
 * peer may have lost them), into one RECORDS frame of about `bytes`.
 */
int
sync__egress_records(struct store *st, const struct policy *pol,
    struct nbx_str peer, uint64_t now_ms, struct sync_egress *e,
    const struct nbx_buf *keys, size_t *off, uint32_t bytes,
    uint32_t *nchanges)
{
	struct store_rtxn *t = NULL;
	struct frame_batch fb;
	size_t pos = *off;
	int rc;

	*nchanges = 0;
	e->frame.len = 0;
	if ((rc = nbx_buf_reserve(&e->frame, bytes + EGRESS_SLACK)) != 0 &&
	    rc != NBX_ETOOBIG)
		goto out;
	if ((rc = frame_records_begin(&e->frame, &fb)) != 0 ||
	    (rc = store_rtxn_begin(st, &t)) != 0)
		goto out;
	while (pos < keys->len) {
		const char *k = (const char *)keys->p + pos;
		struct nbx_str coll = nbx_str_c(k);
		struct nbx_str id = nbx_str_c(k + coll.n + 1);

		rc = add_record(t, pol, peer, 0, e, &fb, coll, id);
		if (rc == NBX_ETOOBIG && fb.n > 0) {
			rc = 0;		/* full: the record opens the next one */
			break;
		}
		if (rc != 0)
			goto out;
		pos += coll.n + id.n + 2;
		if (frame_changes_size(&e->frame, &fb) >= bytes)
			break;
	}
	store_rtxn_end(t);
	t = NULL;
	if (fb.n > 0 && ((rc = frame_changes_finish(&e->frame, &fb, 0)) != 0 ||
	    (rc = disclose(st, pol, peer, now_ms, e)) != 0))
		goto out;
	if (fb.n == 0)
		e->frame.len = 0;	/* nothing of them may go: no frame */
	*off = pos;
	*nchanges = fb.n;
out:
	store_rtxn_end(t);
	if (rc != 0)
		e->frame.len = 0;
	return rc;
}
