/*
 * session.h - one sync session with one peer, as a sans-I/O state machine.
 *
 * The session is fed the plaintext bytes that arrived from the peer (after
 * TLS) and is drained of the plaintext bytes to send; time comes in as an
 * argument.  It reads and writes the node's store directly (LMDB is not
 * network I/O), so two sessions over two stores can run a whole exchange
 * in one test process by pumping bytes into each other.
 *
 * Protocol (frames: 4-byte big-endian length + one msgpack array whose
 * first element is the message type; see frame.h):
 *   HELLO     [1, version, node_id, log_epoch]     first frame each way
 *   SUBSCRIBE [2, epoch, from_seq]  "send your changes after from_seq of
 *                                    log epoch `epoch`"; a sender whose
 *                                    epoch differs restarts from 0
 *   CHANGES   [3, epoch, upto_seq, [change, ...]]  a batch; upto_seq is
 *                                    the sender's log position it covers
 *   ACK       [4, upto_seq]          sent only after the batch committed
 *   ERASE_RECEIPT [5, coll, id, erase_hlc, erase_origin]
 *   PING      [6, nonce]   PONG [7, nonce]
 *   ERROR     [8, code, message]     then the sender closes
 *
 * Each side sends HELLO then SUBSCRIBE with the cursor it stored for the
 * peer; the other side streams its log from there in CHANGES batches of at
 * most batch_bytes, keeping at most `window` batches unacknowledged, and
 * after catching up keeps streaming as sync_session_pump finds new log
 * entries (new local writes and merged remote changes).
 *
 * Egress: a record's changes go to the peer only as policy permits (see
 * sync egress rules in session.c); local fields never leave.  Ingress: the
 * peer's identity is the certificate-verified id given at creation, never
 * a message field; HELLO's node id must equal it.  Changes are applied with
 * store_apply(from_peer = peer id, cursor = (peer epoch, upto_seq)), so the
 * cursor and the changes commit together; rejected changes are quarantined
 * and the session goes on.  Malformed framing is a fatal session error.
 */
#ifndef NBX_SESSION_H
#define NBX_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "store.h"

/*
 * Protocol versions this build speaks.  1 is the log stream alone; 2 adds
 * reconciliation (RECON, WANT, RECORDS) and a HELLO that carries the
 * range of versions and the schema digest.  A pair speaks the highest
 * version both speak (sync_opts.version_min/max narrow ours).
 */
#define SYNC_PROTO_VERSION	1	/* the version-1 HELLO's value */
#define SYNC_PROTO_MIN		1
#define SYNC_PROTO_MAX		2
#define SYNC_SCHEMA_LEN		32
#define SYNC_FRAME_MAX		(16u << 20)	/* hard cap on one frame */

struct sync_opts {
	uint32_t batch_bytes;	/* target plaintext bytes per CHANGES; 64 KiB */
	uint32_t window;	/* unacknowledged CHANGES batches; 8 */
	uint64_t ping_interval_ms;	/* idle time before a PING; 15000 */
	uint64_t dead_after_ms;	/* silence after which the peer is dead */
	uint32_t scan_max;	/* log entries read per pump call; 10000 */
	uint32_t pump_batches;	/* batches made per pump call; 0: no limit */
	size_t out_max;		/* stop producing when this much is queued */
	/*
	 * Optional: told of each received change the store refused into
	 * quarantine (c borrows from the frame; valid during the call), so
	 * the caller can log it.  The session itself does no I/O.
	 */
	void (*on_reject)(void *arg, const struct change *c, int err);
	void *reject_arg;
	int no_relay;		/* accept only changes the peer itself made */
	/* versions spoken: 0 means SYNC_PROTO_MIN / SYNC_PROTO_MAX */
	uint32_t version_min, version_max;
	/* the digest of our schema (policy_canonical), sent in HELLO v2 */
	uint8_t schema[SYNC_SCHEMA_LEN];
	/* version 2: time between reconciliation runs started by this end
	   (the end with the smaller node id); 0 means 10 minutes,
	   UINT64_MAX never (runs on connect and on demand still happen) */
	uint64_t reconcile_interval_ms;
};

/* Counters and positions, for status and metrics. */
struct sync_stats {
	int established;	/* HELLO exchanged both ways */
	uint32_t version;	/* the version the pair speaks, once established */
	uint32_t peer_version_min, peer_version_max;	/* from its HELLO */
	int schema_match;	/* 1 equal, 0 differs, -1 unknown (version 1) */
	int no_common_version;	/* refused: no version both speak */
	/* reconciliation (version 2) */
	int recon_active;	/* a run of ours is going on */
	uint64_t recon_runs;	/* runs of ours that ended */
	uint64_t recon_last_ms;	/* when the last one ended */
	uint64_t recon_msgs_in, recon_msgs_out;
	uint64_t recon_wanted;	/* records asked of the peer */
	uint64_t recon_records_out;	/* records found for the peer */
	uint64_t recon_changes_out;	/* changes sent in RECORDS */
	uint64_t recon_changes_in;	/* changes received in RECORDS */
	uint64_t peer_epoch;	/* the peer's log epoch */
	uint64_t sent_seq;	/* our log position sent to the peer */
	uint64_t acked_seq;	/* our log position the peer acknowledged */
	uint64_t recv_seq;	/* the peer's log position we applied */
	uint64_t changes_in, changes_out;
	uint64_t batches_out;	/* CHANGES frames made by sync_session_pump */
	uint64_t applied_in;	/* changes that altered our state */
	uint64_t rejected_in;	/* changes quarantined */
	uint64_t frames_in, frames_out;
	uint64_t bytes_in, bytes_out;
	uint64_t last_rx_ms;	/* time of the last frame received */
};

struct sync_session;

/*
 * Creates a session between this node (store st, policy pol) and the peer
 * whose certificate-verified id is `peer`.  The strings are copied.
 * Nothing is queued until sync_session_start.  Returns 0 or NBX_ENOMEM.
 */
int sync_session_new(struct store *st, const struct policy *pol,
    const char *peer, const struct sync_opts *o,
    struct sync_session **out);

/* Frees a session; NULL is a no-op. */
void sync_session_free(struct sync_session *s);

/* Queues HELLO and SUBSCRIBE (from the stored cursor).  0 or NBX_E*. */
int sync_session_start(struct sync_session *s, uint64_t now_ms);

/*
 * Feeds bytes received from the peer.  Complete frames are processed at
 * once (which may commit to the store and queue replies); a partial frame
 * is kept for the next call.  Returns 0, or a fatal error after which the
 * connection must be closed: NBX_EMALFORMED / NBX_ETOOBIG (bad framing),
 * NBX_EPEER (protocol violation or identity mismatch, reason in
 * sync_session_error), NBX_EVERSION, NBX_ECLOSED (peer sent ERROR), or a
 * store failure.  A frame over SYNC_FRAME_MAX is refused from its length
 * prefix alone, before anything is allocated.
 */
int sync_session_feed(struct sync_session *s, const void *p, size_t n,
    uint64_t now_ms);

/*
 * Produces CHANGES from the log while the window and the output limit
 * allow; call it after each local commit, after the output was drained,
 * and on every tick.  Returns 0 or a store error.
 */
int sync_session_pump(struct sync_session *s, uint64_t now_ms);

/*
 * 1 if the last pump stopped at pump_batches or scan_max with the window
 * still open: the caller should pump again soon (after serving other
 * work), since no acknowledgement will come to prompt it.
 */
int sync_session_more(const struct sync_session *s);

/*
 * Timers: queues a PING when the link was idle both ways for
 * ping_interval_ms, or when nothing was sent for that long while frames
 * kept coming.  Returns NBX_ECLOSED when nothing was received for
 * dead_after_ms (the caller drops the connection), else 0.
 */
int sync_session_tick(struct sync_session *s, uint64_t now_ms);

/*
 * The peer is alive at now_ms although no frame of it was fed: the caller
 * holds bytes from it not yet read (a busy node reads late; the peer's
 * silence is then ours).
 */
void sync_session_heard(struct sync_session *s, uint64_t now_ms);

/*
 * The bytes queued for the peer.  *p is valid until the next call on the
 * session.  sync_session_consume(s, n) removes the first n of them once
 * they were handed to TLS.
 */
size_t sync_session_pending(struct sync_session *s, const uint8_t **p);
void sync_session_consume(struct sync_session *s, size_t n);

/*
 * Asks for a reconciliation run with the peer (nbxctl verify --repair):
 * it starts at the next pump.  0; NBX_EAGAIN before HELLO and SUBSCRIBE
 * came; NBX_EVERSION if the pair speaks version 1; the session's code if
 * it ended.
 */
int sync_session_reconcile(struct sync_session *s);

/* Queues an ERROR frame (code, message) to send before closing. */
void sync_session_fail(struct sync_session *s, int code, const char *msg);

const struct sync_stats *sync_session_stats(const struct sync_session *s);
const char *sync_session_error(const struct sync_session *s);
const char *sync_session_peer(const struct sync_session *s);

#endif
