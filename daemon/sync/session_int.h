/*
 * session_int.h - inside the sync module: the session's state, shared by
 * session.c (HELLO, the log stream, timers) and reconcile.c (version 2:
 * reconciliation and whole records).  Not for use outside daemon/sync/
 * and its tests.
 */
#ifndef NBX_SESSION_INT_H
#define NBX_SESSION_INT_H

#include <stddef.h>
#include <stdint.h>

#include "egress.h"
#include "frame.h"
#include "recon.h"
#include "session.h"

/* Reconciliation state (reconcile.c). */
struct sync_recon {
	/* our items for the pair, built at the start of a run (ours or the
	   peer's) and kept until it ends: a run works on one snapshot */
	struct recon_item *items;
	size_t nitems;
	struct recon_set set;
	int have_set;
	uint64_t set_run;		/* the run tag they were built for */
	uint64_t next_id;		/* our runs: 1, 2, ... */
	uint64_t run;			/* our run in progress, 0 if none */
	int peer_active;		/* a run of the peer's is going on */
	uint64_t peer_run;		/* its id */
	uint64_t started_ms;
	int asked;			/* a run is wanted at once */
	int initiator;			/* runs periodically (smaller id) */
	int caught_up;			/* the first catch-up both ways done */
	uint64_t next_ms;		/* the next periodic run */
	uint64_t peer_last_seq;		/* HELLO: the peer's log end */
	uint64_t our_last_seq;		/* our log end when it subscribed */
	/* key hashes to ask the peer for / to send it, sorted when used */
	uint64_t *want, *send;
	size_t nwant, want_cap, nsend, send_cap;
	/* the records to send, resolved: "coll\0id\0" back to back */
	struct nbx_buf keys;
	size_t keys_off;		/* next key to send */
	struct nbx_buf msg;		/* a RECON payload being built */
};

struct sync_session {
	struct store *st;
	const struct policy *pol;
	char peer[NBX_ID_MAX + 1];
	char self[NBX_ID_MAX + 1];
	struct sync_opts o;
	struct sync_stats stats;
	uint64_t epoch;			/* our log epoch */
	struct store_cursor cur;	/* what we asked the peer for */

	int started, got_hello, subscribed;
	int fatal;			/* sticky error that ended it */
	char err[256];

	/* receiving */
	struct nbx_buf in;		/* one partial frame */
	uint64_t alive_ms;		/* last frame received, or start */
	uint64_t last_upto;		/* greatest CHANGES upto so far */
	struct store_outcome *outs;	/* of one CHANGES */
	size_t outs_cap;

	/* sending */
	struct nbx_buf out;
	size_t out_off;			/* bytes of out already consumed */
	uint64_t last_tx_ms;
	uint64_t nonce;
	uint64_t send_pos;		/* our log position streamed */
	int resync;			/* a full pass is owed (store.h) */
	int more;			/* sync_session_more */
	uint64_t *inflight;		/* upto of each unacked batch */
	uint32_t ninflight;
	struct sync_egress eg;

	struct sync_recon rc;		/* version 2 */
};

enum tell {
	TELL_NOTHING,		/* the peer ended it, or is gone */
	TELL_REASON,		/* ERROR carries our reason */
	TELL_INTERNAL,		/* ERROR says only "internal error" */
};

/* The peer's certificate-verified id. */
static inline struct nbx_str
sync__peer(const struct sync_session *s)
{
	return nbx_str_c(s->peer);
}

/* Accounts for a frame appended to out at offset `before` by `rc = put`. */
int sync__queued(struct sync_session *s, size_t before, int rc,
    uint64_t now_ms);

/*
 * Ends the session with `code` unless it already ended: records the
 * reason and queues an ERROR frame as `tell` says.  Returns the code the
 * session ended with.
 */
int sync__end(struct sync_session *s, int code, enum tell tell,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* sync__end with NBX_EPEER: "protocol violation: ...". */
int sync__violation(struct sync_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Bytes queued and not yet consumed. */
size_t sync__pending(const struct sync_session *s);

/*
 * Applies the changes of a decoded CHANGES or RECORDS frame from the
 * peer in one transaction, with cur (NULL for RECORDS: no log position)
 * committed alongside, then logs rejects and answers erasures with
 * receipts.  Counts into stats.  0 or the code that ended the session.
 */
int sync__apply(struct sync_session *s, const struct frame_msg *m,
    const struct store_cursor *cur, uint64_t now_ms);

/* reconcile.c */
void sync__recon_init(struct sync_session *s);
void sync__recon_fini(struct sync_session *s);
/* After HELLO both ways and SUBSCRIBE: what catch-up must reach. */
void sync__recon_hello(struct sync_session *s, const struct frame_msg *m);
int sync__recon_on_recon(struct sync_session *s, const struct frame_msg *m,
    uint64_t now_ms);
int sync__recon_on_want(struct sync_session *s, const struct frame_msg *m,
    uint64_t now_ms);
/*
 * After a batch from the peer was applied (outs[i]: the outcome of its
 * i-th change): an audience the peer itself set, older than the one we
 * hold of that record, means the peer lost its newer one (restored from
 * a backup); our record goes back to it whole.  A removed node is the
 * only one that may still hold the newer audience, and reconciliation
 * lists no item it shares with the creator.  0 or the session's end.
 */
int sync__recon_stale_audiences(struct sync_session *s,
    const struct frame_msg *m, const struct store_outcome *outs);
/* Starts a run when one is due, and sends wanted records while the
   output has room.  0 or the code that ended the session. */
int sync__recon_pump(struct sync_session *s, uint64_t now_ms);

#endif
