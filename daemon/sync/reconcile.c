/*
 * reconcile.c - version 2 of the sync protocol: reconciliation
 * (anti-entropy) and whole records.
 *
 * The log stream cannot repair a pair that drifted: a node restored from
 * a backup, rebuilt, rolled back, or a bug.  Reconciliation finds the
 * records whose per-pair view differs (recon.h: range-based set
 * reconciliation over the pair's items, store_pair_items) without
 * sending those the pair agrees on, and exchanges them whole (RECORDS).
 *
 * Items are only the records both ends may share (a record the peer may
 * not see gives no item), so no id, fingerprint or count of another
 * record leaves; a WANT is answered only for a key hash among our items.
 *
 * A run is started by one side (the initiator: on connect once both log
 * streams caught up, then every reconcile interval, by the node of the
 * smaller id; on demand by either side) and answered message by message;
 * replies are computed from the items alone, so both sides keep no state
 * of a run but a snapshot of their items.  A RECON's run number is
 * id * 2 + 1 when the run's initiator sent it, id * 2 when its responder
 * did; an empty payload says "nothing left to ask", and ends the run.
 */
#include <stdlib.h>
#include <string.h>

#include "nbx_err.h"
#include "session_int.h"

#define DEF_RECON_MS	(600u * 1000)	/* periodic runs: 10 minutes */
#define KEYS_MAX	((size_t)1 << 30)	/* resolved keys waiting */
#define KEYS_KEEP	((size_t)1 << 20)	/* freed above when drained */

void
sync__recon_init(struct sync_session *s)
{
	struct sync_recon *r = &s->rc;

	memset(r, 0, sizeof(*r));
	nbx_buf_init(&r->keys, KEYS_MAX);
	nbx_buf_init(&r->msg, FRAME_BODY_MAX - 64);
	if (s->o.reconcile_interval_ms == 0)
		s->o.reconcile_interval_ms = DEF_RECON_MS;
}

static void
items_drop(struct sync_recon *r)
{
	if (r->have_set)
		recon_set_fini(&r->set);
	free(r->items);
	r->items = NULL;
	r->nitems = 0;
	r->have_set = 0;
}

void
sync__recon_fini(struct sync_session *s)
{
	struct sync_recon *r = &s->rc;

	items_drop(r);
	free(r->want);
	free(r->send);
	nbx_buf_fini(&r->keys);
	nbx_buf_fini(&r->msg);
	memset(r, 0, sizeof(*r));
}

void
sync__recon_hello(struct sync_session *s, const struct frame_msg *m)
{
	s->rc.peer_last_seq = m->last_seq;
	/* the initiator's id decided here, once both ids are known */
	s->rc.initiator = strcmp(s->self, s->peer) < 0;
}

/*
 * A snapshot of our items for a run that starts now.  0, or the code the
 * session ended with.
 */
static int
items_build(struct sync_session *s)
{
	struct sync_recon *r = &s->rc;
	int rc;

	items_drop(r);
	if ((rc = store_pair_items(s->st, s->pol, sync__peer(s), &r->items,
	    &r->nitems)) == 0 &&
	    (rc = recon_set_init(&r->set, r->items, r->nitems)) != 0)
		items_drop(r);
	if (rc != 0)
		return sync__end(s, rc, TELL_INTERNAL, "listing records for "
		    "reconciliation: %s", store_last_error(s->st));
	r->have_set = 1;
	return 0;
}

/* Appends kh to a growing array. */
static int
push_kh(uint64_t **v, size_t *n, size_t *cap, uint64_t kh)
{
	uint64_t *p;
	size_t c;

	if (*n == *cap) {
		c = *cap ? *cap * 2 : 256;
		if ((p = realloc(*v, c * sizeof(*p))) == NULL)
			return NBX_ENOMEM;
		*v = p;
		*cap = c;
	}
	(*v)[(*n)++] = kh;
	return 0;
}

static int
on_send(void *arg, uint64_t kh)
{
	struct sync_recon *r = arg;

	return push_kh(&r->send, &r->nsend, &r->send_cap, kh);
}

static int
on_want(void *arg, uint64_t kh)
{
	struct sync_recon *r = arg;

	return push_kh(&r->want, &r->nwant, &r->want_cap, kh);
}

static int
kh_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v[0..*n) and drops repeats. */
static void
sort_unique(uint64_t *v, size_t *n)
{
	size_t k = 0;

	if (*n == 0)
		return;
	qsort(v, *n, sizeof(*v), kh_cmp);
	for (size_t i = 1; i < *n; i++)
		if (v[i] != v[k])
			v[++k] = v[i];
	*n = k + 1;
}

/* store_keys_by_hash callback: queues the record's key to be sent. */
static int
key_add(void *arg, struct nbx_str coll, struct nbx_str id)
{
	struct sync_recon *r = arg;
	static const char zero = 0;

	if (nbx_buf_append(&r->keys, coll.p, coll.n) != 0 ||
	    nbx_buf_append(&r->keys, &zero, 1) != 0 ||
	    nbx_buf_append(&r->keys, id.p, id.n) != 0 ||
	    nbx_buf_append(&r->keys, &zero, 1) != 0)
		return NBX_ENOMEM;
	return 0;
}

/*
 * The records to send, from their key hashes to their keys, in one pass
 * over the store's keys; only once the keys resolved before have all been
 * sent.  Until then the hashes wait in r->send, sorted and unique, so
 * however many messages name the same records (a hostile peer asking for
 * everything again and again) what waits is at most one entry per record.
 */
static int
resolve_sends(struct sync_session *s)
{
	struct sync_recon *r = &s->rc;
	struct store_rtxn *t;
	int rc;

	if (r->nsend == 0 || r->keys_off < r->keys.len)
		return 0;
	r->keys.len = 0;
	r->keys_off = 0;
	if ((rc = store_rtxn_begin(s->st, &t)) == 0) {
		rc = store_keys_by_hash(t, s->pol, r->send, r->nsend, key_add,
		    r);
		store_rtxn_end(t);
	}
	s->stats.recon_records_out += r->nsend;
	r->nsend = 0;
	if (rc != 0)
		return sync__end(s, rc, TELL_INTERNAL, "finding records to "
		    "send: %s", store_last_error(s->st));
	return 0;
}

/*
 * What a message found: the WANT frames for the peer's records we lack,
 * and our records it lacks resolved to their keys, to be sent as RECORDS
 * by sync__recon_pump.
 */
static int
flush_found(struct sync_session *s, uint64_t now_ms)
{
	struct sync_recon *r = &s->rc;
	size_t before;
	int rc = 0;

	sort_unique(r->want, &r->nwant);
	for (size_t i = 0; i < r->nwant && rc == 0; i += FRAME_WANT_MAX) {
		size_t n = r->nwant - i < FRAME_WANT_MAX ? r->nwant - i :
		    FRAME_WANT_MAX;

		before = s->out.len;
		rc = sync__queued(s, before, frame_put_want(&s->out,
		    r->want + i, n), now_ms);
	}
	s->stats.recon_wanted += r->nwant;
	r->nwant = 0;
	if (rc != 0)
		return sync__end(s, rc, TELL_INTERNAL, "output queue: %s",
		    nbx_strerror(rc));
	sort_unique(r->send, &r->nsend);
	return resolve_sends(s);
}

static int
queue_recon(struct sync_session *s, uint64_t run, const void *p, size_t n,
    uint64_t now_ms)
{
	size_t before = s->out.len;
	int rc;

	if ((rc = sync__queued(s, before, frame_put_recon(&s->out, run, p, n),
	    now_ms)) != 0)
		return sync__end(s, rc, TELL_INTERNAL, "output queue: %s",
		    nbx_strerror(rc));
	s->stats.recon_msgs_out++;
	return 0;
}

/* Our run is over: the next periodic one is an interval away. */
static void
run_end(struct sync_session *s, uint64_t now_ms)
{
	struct sync_recon *r = &s->rc;

	r->run = 0;
	s->stats.recon_active = 0;
	s->stats.recon_runs++;
	s->stats.recon_last_ms = now_ms;
	r->next_ms = s->o.reconcile_interval_ms == UINT64_MAX ? UINT64_MAX :
	    now_ms + s->o.reconcile_interval_ms;
}

/* The snapshot of our items goes once no run, ours or the peer's, lasts. */
static void
items_idle(struct sync_recon *r)
{
	if (r->run == 0 && !r->peer_active)
		items_drop(r);
}

int
sync__recon_on_recon(struct sync_session *s, const struct frame_msg *m,
    uint64_t now_ms)
{
	struct sync_recon *r = &s->rc;
	struct recon_diff d = { on_send, on_want, r };
	int theirs = (m->run & 1) != 0, done = 0, rc;
	uint64_t id = m->run >> 1;

	s->stats.recon_msgs_in++;
	if (!theirs && (r->run == 0 || id != r->run))
		return 0;	/* an answer to a run of ours that ended */
	if (m->payload_len == 0) {
		if (theirs)
			r->peer_active = 0;
		else
			run_end(s, now_ms);
		items_idle(r);
		return 0;
	}
	if (theirs && (!r->peer_active || id != r->peer_run)) {
		/* a new run of the peer's: our items as they are now */
		r->peer_active = 1;
		r->peer_run = id;
		if (r->run == 0 && (rc = items_build(s)) != 0)
			return rc;
	}
	if (!r->have_set && (rc = items_build(s)) != 0)
		return rc;
	r->msg.len = 0;
	rc = recon_reply(&r->set, m->payload, m->payload_len, &d, &r->msg,
	    &done);
	if (rc == NBX_EMALFORMED)
		return sync__end(s, rc, TELL_REASON, "malformed RECON payload "
		    "of %zu bytes", m->payload_len);
	if (rc != 0)
		return sync__end(s, rc, TELL_INTERNAL, "reconciling: %s",
		    nbx_strerror(rc));
	/* WANTs go before the reply: they must arrive while a run lasts */
	if ((rc = flush_found(s, now_ms)) != 0)
		return rc;
	if ((rc = queue_recon(s, m->run ^ 1, r->msg.p, done ? 0 : r->msg.len,
	    now_ms)) != 0)
		return rc;
	if (done && theirs)
		r->peer_active = 0;
	else if (done)
		run_end(s, now_ms);
	items_idle(r);
	return 0;
}

int
sync__recon_stale_audiences(struct sync_session *s, const struct frame_msg *m,
    const struct store_outcome *outs)
{
	struct sync_recon *r = &s->rc;
	struct frame_src f = { m, 0, 0, 0 };
	struct store_rtxn *t;
	struct crdt_record rec;
	struct change c;
	int rc = 0, back;

	if ((rc = store_rtxn_begin(s->st, &t)) != 0)
		return sync__end(s, rc, TELL_INTERNAL, "reading: %s",
		    store_last_error(s->st));
	for (uint32_t i = 0; rc == 0 && frame_src_next(&f, &c) == 1; i++) {
		struct crdt_ver theirs = { c.aud.hlc, c.aud.origin };

		if (c.kind != CHANGE_AUDIENCE || outs[i].status != STORE_NOOP ||
		    !nbx_str_eq(c.aud.origin, sync__peer(s)))
			continue;
		if (store_record_get(t, c.coll, c.id, &rec) != 0) {
			crdt_record_fini(&rec);
			continue;
		}
		back = !rec.erased && crdt_ver_cmp((struct crdt_ver){
		    rec.aud.hlc, rec.aud.origin }, theirs) > 0;
		crdt_record_fini(&rec);
		if (back)
			rc = push_kh(&r->send, &r->nsend, &r->send_cap,
			    store_key_hash(c.coll, c.id));
	}
	store_rtxn_end(t);
	if (rc != 0)
		return sync__end(s, rc, TELL_INTERNAL, "no memory");
	sort_unique(r->send, &r->nsend);
	return resolve_sends(s);
}

int
sync__recon_on_want(struct sync_session *s, const struct frame_msg *m,
    uint64_t now_ms)
{
	struct sync_recon *r = &s->rc;
	int rc;

	if (!r->have_set && (rc = items_build(s)) != 0)
		return rc;
	for (uint32_t i = 0; i < m->nkhs; i++) {
		uint64_t kh = frame_want_kh(m, i);

		/* only records the pair shares: nothing else is confirmed */
		if (recon_set_has(&r->set, kh) && (rc = push_kh(&r->send,
		    &r->nsend, &r->send_cap, kh)) != 0)
			return sync__end(s, rc, TELL_INTERNAL, "no memory");
	}
	if ((rc = flush_found(s, now_ms)) == 0)
		items_idle(r);
	return rc;
}

/* Starts a run of ours: our items now, and the opening message. */
static int
run_start(struct sync_session *s, uint64_t now_ms)
{
	struct sync_recon *r = &s->rc;
	int rc;

	if ((!r->peer_active || !r->have_set) && (rc = items_build(s)) != 0)
		return rc;
	r->msg.len = 0;
	if ((rc = recon_initiate(&r->set, &r->msg)) != 0)
		return sync__end(s, rc, TELL_INTERNAL, "reconciling: %s",
		    nbx_strerror(rc));
	r->run = ++r->next_id;
	r->asked = 0;
	r->started_ms = now_ms;
	s->stats.recon_active = 1;
	return queue_recon(s, r->run * 2 + 1, r->msg.p, r->msg.len, now_ms);
}

/* 1 once both log streams have reached where they stood at HELLO. */
static int
caught_up(const struct sync_session *s)
{
	return s->stats.recv_seq >= s->rc.peer_last_seq &&
	    s->send_pos >= s->rc.our_last_seq && s->ninflight == 0;
}

int
sync__recon_pump(struct sync_session *s, uint64_t now_ms)
{
	struct sync_recon *r = &s->rc;
	uint32_t n, made = 0;
	size_t before;
	int rc;

	if (s->stats.version < 2 || !s->subscribed || s->fatal != 0)
		return s->fatal;
	if (!r->caught_up && caught_up(s)) {
		r->caught_up = 1;
		r->next_ms = now_ms;	/* the run on connect */
	}
	if (r->run == 0 && sync__pending(s) < s->o.out_max &&
	    (r->asked || (r->initiator && r->caught_up &&
	    now_ms >= r->next_ms)) && (rc = run_start(s, now_ms)) != 0)
		return rc;
	while (r->keys_off < r->keys.len && sync__pending(s) < s->o.out_max) {
		if (s->o.pump_batches != 0 && made >= s->o.pump_batches) {
			s->more = 1;	/* fair to the other peers */
			break;
		}
		rc = sync__egress_records(s->st, s->pol, sync__peer(s), now_ms,
		    &s->eg, &r->keys, &r->keys_off, s->o.batch_bytes, &n);
		if (rc != 0)
			return sync__end(s, rc, TELL_INTERNAL, "sending "
			    "records: %s", store_last_error(s->st));
		if (s->eg.frame.len == 0)
			continue;
		before = s->out.len;
		if ((rc = sync__queued(s, before, nbx_buf_append(&s->out,
		    s->eg.frame.p, s->eg.frame.len), now_ms)) != 0)
			return sync__end(s, rc, TELL_INTERNAL,
			    "output queue: %s", nbx_strerror(rc));
		s->stats.recon_changes_out += n;
		s->stats.changes_out += n;
		made++;
	}
	if (r->keys_off == r->keys.len && r->keys.len > 0) {
		r->keys.len = 0;
		r->keys_off = 0;
		if (r->keys.cap > KEYS_KEEP)
			nbx_buf_fini(&r->keys);
		if (r->nsend > 0) {
			/* found while the last ones went: next pump sends */
			s->more = 1;
			return resolve_sends(s);
		}
	}
	return 0;
}

int
sync_session_reconcile(struct sync_session *s)
{
	if (s->fatal != 0)
		return s->fatal;
	if (!s->got_hello || !s->subscribed)
		return NBX_EAGAIN;
	if (s->stats.version < 2)
		return NBX_EVERSION;
	s->rc.asked = 1;
	return 0;
}
