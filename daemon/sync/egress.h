/*
 * egress.h - inside the sync module: what session.c asks of egress.c.
 * Building one CHANGES batch from the store's log for one peer, applying
 * the egress filter, and recording the disclosure before the batch may be
 * queued.  Not for use outside daemon/sync/session.c and its tests.
 */
#ifndef NBX_EGRESS_H
#define NBX_EGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "change.h"
#include "crdt.h"
#include "policy.h"
#include "store.h"

/* Scratch memory kept across batches, so steady streaming allocates
 * nothing. */
struct sync_egress {
	struct change *rec;	/* one record's changes */
	unsigned char *keep;	/* filter verdict per rec[i] */
	size_t rec_cap;
	struct nbx_buf frame;	/* the CHANGES frame being built */
};

void sync__egress_init(struct sync_egress *e);
void sync__egress_fini(struct sync_egress *e);

/* One batch request and what it produced. */
struct sync_batch {
	uint64_t after;		/* in: scan the log after this seq */
	uint32_t scan_max;	/* in: log entries to visit at most (>= 1) */
	uint32_t bytes;		/* in: close the batch at this body size */
	int omit_own;		/* in: leave out the peer's own changes */
	uint64_t upto;		/* out: last log seq the batch covers */
	uint32_t scanned;	/* out: log entries visited; 0 = nothing new */
	uint32_t nchanges;	/* out: changes in the batch */
};

/*
 * Builds one CHANGES frame (epoch, upto, changes) for `peer` into
 * e->frame (reset first), scanning the log after b->after.  The read
 * transaction is ended before the disclosure of the batch's changes is
 * written with store_disclose; only when that committed does this return
 * 0 with b->scanned > 0, and the frame may be queued.  b->scanned == 0
 * means the log holds nothing after b->after (e->frame is then empty).
 * A record is never split: if its changes do not fit in what is left of
 * the frame (FRAME_BODY_MAX, FRAME_CHANGES_MAX), the batch ends before
 * it; a record that fits in no frame at all fails with NBX_ETOOBIG.
 * Returns 0 or an NBX_E* store error (see store_last_error).
 */
int sync__egress_batch(struct store *st, const struct policy *pol,
    struct nbx_str peer, uint64_t epoch, uint64_t now_ms,
    struct sync_egress *e, struct sync_batch *b);

/*
 * Reconciliation's whole records: one RECORDS frame for `peer` into
 * e->frame with the permitted changes of the records named in
 * keys[*off..keys->len) ("coll\0id\0" back to back), the peer's own
 * included, until the body reaches `bytes`; *off is advanced past the
 * records taken and *nchanges says how many changes went in.  As with a
 * batch, the disclosure is committed before this returns 0; a frame left
 * empty (nothing of those records may go) is not made (e->frame.len 0).
 * 0 or an NBX_E* store error.
 */
int sync__egress_records(struct store *st, const struct policy *pol,
    struct nbx_str peer, uint64_t now_ms, struct sync_egress *e,
    const struct nbx_buf *keys, size_t *off, uint32_t bytes,
    uint32_t *nchanges);

/*
 * The egress filter for one record r and peer P: sets keep[i] to 1 for
 * each of chs[0..n) (the changes crdt_record_changes gave for r) that may
 * go to P, 0 otherwise, and returns how many may.  `disclosed` says
 * whether P was ever sent any part of r (store_disclosed), or is
 * EGRESS_DISCLOSED_UNKNOWN: then, if some verdict depends on it, the
 * filter returns EGRESS_ASK (keep[] undefined) and must be called again
 * with the answer; if none does, the verdicts stand for either answer,
 * and the store need not be asked.  Each verdict is policy's
 * (policy_may_send_change, which says what each kind of change needs);
 * the filter only applies it: "if disclosed" with `disclosed`, and a
 * record's STATE with whether anything else of r goes to P now.
 * A record of a collection the policy does not know sends nothing.
 */
#define EGRESS_DISCLOSED_UNKNOWN	(-1)
#define EGRESS_ASK			((size_t)-1)

size_t sync__egress_filter(const struct policy *pol,
    const struct crdt_record *r, const struct change *chs, size_t n,
    int disclosed, struct nbx_str peer, unsigned char *keep);

#endif
