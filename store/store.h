/*
 * store.h - a node's persistent state in one LMDB environment.
 *
 * Named databases:
 *   records     "coll\0id" -> canonical record (crdt_record_encode)
 *   log         seq (u64 BE) -> "coll\0id": the change log.  A record
 *               appears once, at the seq of its latest change, so a peer
 *               catching up from seq S reads each changed record once.
 *   logidx      "coll\0id" -> its seq in `log`
 *   meta        node_id, epoch, next_seq, hlc, format (and own_since,
 *               which an older nbx kept here and this one no longer
 *               reads: the first version stamped since store_open is
 *               kept in memory; see store_apply)
 *   peers       id -> peer entry (daemon)
 *   cursors     peer id -> (epoch, seq) applied from that peer
 *   audit       disclosure log (daemon)
 *   quarantine  qseq (u64 BE) -> rejected change metadata and reason
 *
 * The environment is opened with MDB_NOTLS and never with MDB_NOSYNC or
 * MDB_WRITEMAP: a commit that returned is on disk.  One process writes
 * (nbxd); others may open read-only while it runs.
 *
 * Threading: a struct store is used by one thread at a time.
 */
#ifndef NBX_STORE_H
#define NBX_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "change.h"
#include "crdt.h"
#include "policy.h"
#include "recon.h"

#define STORE_MAP_DEFAULT	(64u << 20)

struct store;
struct store_rtxn;

struct store_opts {
	const char *node_id;	/* required unless readonly */
	uint64_t map_size;	/* initial map size; 0 = STORE_MAP_DEFAULT */
	int readonly;		/* MDB_RDONLY: for the query tool */
	uint64_t max_drift_ms;	/* 0 = HLC_DEFAULT_DRIFT_MS */
};

/*
 * Opens (creating if needed, directory mode 0700) the store in `dir`.  A
 * new store gets a random log epoch.  Fails with NBX_ECONFIG if the store
 * belongs to another node id, NBX_ENOTFOUND if readonly and no store is
 * there, NBX_EIO / NBX_ESTORE otherwise; store_last_error() of NULL is not
 * available, so a message is written into err (NUL-terminated).
 */
int store_open(const char *dir, const struct store_opts *o,
    struct store **out, char *err, size_t errlen);

/* Closes the store; NULL is a no-op.  No read transaction may be open. */
void store_close(struct store *st);

/* The message of the last failure on this store (static until next call). */
const char *store_last_error(const struct store *st);

enum store_status {
	STORE_APPLIED = 1,	/* state changed; got a seq */
	STORE_NOOP = 2,		/* nothing changed (duplicate, older, erased) */
	STORE_REJECTED = 3,	/* invalid; err says why */
};

struct store_outcome {
	enum store_status status;
	int err;		/* NBX_E* reason when REJECTED */
	uint64_t seq;		/* APPLIED: the change's seq */
	uint64_t hlc;		/* the version written (stamped for local) */
};

/* Where a peer's stream stands: the last seq of its log we applied. */
struct store_cursor {
	struct nbx_str peer;
	uint64_t epoch;
	uint64_t seq;
};

enum {
	STORE_ATOMIC = 1,	/* any rejection aborts the whole batch */
	STORE_NO_RELAY = 2,	/* from_peer may send only changes it made:
				   another origin is refused (NBX_EPEER) */
};

/*
 * Validates and merges a batch of changes in one write transaction.
 *
 * from_peer empty: local writes.  Each change is stamped with a fresh HLC
 * and origin = this node; an audience-scoped field is written under the
 * record's current audience, and a new audience that holds this node
 * re-stamps the record's scoped values.  A rejected local change is not
 * quarantined.
 *
 * from_peer set: changes received from that (certificate-verified) peer.
 * A change beyond the drift bound, or failing policy_check_change, is
 * rejected and recorded in quarantine with the reason, and the batch goes
 * on; accepted changes advance the HLC.  If cur is non-NULL the peer's
 * cursor is written in the same transaction, so "applied" and "cursor
 * advanced" are one atomic fact.  A change naming this node as its origin
 * (or under an audience this node set) is refused (NBX_EPEER) unless this
 * node holds that version already, or the version is older than the
 * first this store stamped since store_open (any, until it stamps one):
 * a store rebuilt from empty or restored from a backup takes the
 * versions it lost back from its peers (an audience of its own so taken
 * back re-stamps the scoped values, as when it was set).  A local
 * AUDIENCE change that removes nodes also records a pending "revoke"
 * receipt for each of them (the way every holder of the record knows
 * whom to tell of the removal).
 *
 * Every change that alters state gets the next seq and puts its record at
 * that seq in the log; one that alters nothing gets no seq.  out[i] tells
 * each change's outcome.  Returns 0 once committed; with STORE_ATOMIC,
 * returns the first rejection's code and commits nothing; NBX_EMAPFULL if
 * the map cannot grow (nothing applied), NBX_ESTORE on other failures
 * (nothing applied).  MDB_MAP_FULL is handled by aborting, doubling the
 * map with no transaction open, and retrying the whole batch; this needs
 * no read transaction of this process to be open.
 */
int store_apply(struct store *st, const struct policy *pol,
    const struct change *chs, size_t n, struct nbx_str from_peer,
    const struct store_cursor *cur, uint64_t now_ms, unsigned flags,
    struct store_outcome *out);

struct store_meta {
	char node_id[NBX_ID_MAX + 1];
	uint64_t epoch;		/* log epoch */
	uint64_t last_seq;	/* latest seq assigned (0 = none) */
	uint64_t hlc;		/* latest HLC issued or received */
	uint64_t records;	/* entries in the records database */
	uint64_t quarantined;	/* entries in quarantine */
	uint64_t map_size;	/* current map size in bytes */
	uint64_t map_used;	/* bytes in use (last page * page size) */
};

int store_meta_get(struct store *st, struct store_meta *out);

/*
 * Read transactions.  Everything read through one (records, log entries,
 * strings) is a consistent snapshot and stays valid until store_rtxn_end.
 * Opening one on a read-only store whose map another process has grown
 * adopts the new size.
 */
int store_rtxn_begin(struct store *st, struct store_rtxn **out);
void store_rtxn_end(struct store_rtxn *t);

/*
 * Reads the merged record (coll, id) into r (which this call initialises;
 * call crdt_record_fini after).  Strings borrow from the transaction.
 * Returns 0, NBX_ENOTFOUND, or NBX_EMALFORMED for a corrupt entry.
 */
int store_record_get(struct store_rtxn *t, struct nbx_str coll,
    struct nbx_str id, struct crdt_record *r);

/*
 * The first log entry with seq > after: its seq and record key.  Returns
 * 0 or NBX_ENOTFOUND at the end of the log.
 */
int store_log_next(struct store_rtxn *t, uint64_t after, uint64_t *seq,
    struct nbx_str *coll, struct nbx_str *id);

/*
 * Iterates records of one collection in id order, starting after `after_id`
 * (empty: from the first).  Returns 0 with *id and r filled, or
 * NBX_ENOTFOUND at the end.
 */
int store_record_next(struct store_rtxn *t, struct nbx_str coll,
    struct nbx_str after_id, struct nbx_str *id, struct crdt_record *r);

/*
 * The erasures index: records erased here or received erased, in key
 * order.  The first after (after_coll, after_id) (both empty: from the
 * start); strings borrow from the transaction.  0 or NBX_ENOTFOUND.
 */
int store_erasure_next(struct store_rtxn *t, struct nbx_str after_coll,
    struct nbx_str after_id, struct nbx_str *coll, struct nbx_str *id);

/*
 * Clears reader slots left by processes that died with a read transaction
 * open (an nbxq killed with -9), which would otherwise pin old pages and
 * make the file grow.  Returns the number cleared, or NBX_ESTORE.
 */
int store_reader_check(struct store *st);

/*
 * Changes refused only because their sender's clock ran ahead of ours
 * (by at most STORE_DEFER_AHEAD_MS) are kept aside besides their
 * quarantine entry.  This applies those whose time has come, as received
 * from their original peer, and forgets them.  *applied counts the ones
 * that altered state.  0 or NBX_E*.
 */
#define STORE_DEFER_AHEAD_MS	(24ull * 3600 * 1000)
#define STORE_DEFER_MAX		100000
int store_retry_deferred(struct store *st, const struct policy *pol,
    uint64_t now_ms, size_t *applied);

/*
 * 1 if this process knows that `peer` holds every version the record
 * logged at seq would stream to it: the peer authored all of them, or
 * sent us all of them (so a stream that leaves out what the peer has
 * has nothing to send for it), else 0.  A hint from recent writes in this
 * process, never a guarantee of absence: 0 means "load the record and
 * see".
 */
int store_log_peer_has(struct store *st, uint64_t seq, struct nbx_str peer);

/* A peer's cursor; 0 with zeros if none is stored. */
int store_cursor_get(struct store *st, struct nbx_str peer,
    struct store_cursor *out);

struct store_qentry {
	uint64_t qseq;
	uint64_t time_ms;
	int err;
	uint32_t kind;
	struct nbx_str peer, coll, id, field, origin;
	uint64_t hlc;
};

/*
 * The first quarantine entry with qseq > after.  No values are kept in
 * quarantine, only what identifies the change and why it was refused: a
 * refused value may be one this node must not hold.  0 or NBX_ENOTFOUND.
 */
int store_quarantine_next(struct store_rtxn *t, uint64_t after,
    struct store_qentry *out);

/*
 * Rewrites the store without free pages (MDB_CP_COMPACT) and swaps the
 * copy in, so bytes of purged values leave the disk.  Needs free space for
 * the data in use: without it, fails with NBX_EIO (message says how much)
 * and changes nothing.  No read transaction may be open.  *before and
 * *after are the file sizes.  0 or NBX_E*; NBX_ESTORE after the swap
 * means the store could not be reopened and the caller must stop.
 */
int store_compact(struct store *st, uint64_t *before, uint64_t *after);

/*
 * The pair digest for `nbxctl verify PEER` (store/verify.c): SHA-256 over
 * the framed canonical encoding of every change (collections in policy
 * order, records in key order) that both this node and `peer` may hold
 * under the policy: region fields, and audience fields of records whose
 * audience holds both (with the record's state and audience when any of
 * its fields counts).  Local fields, erased records and receipts are
 * left out.  Two converged nodes compute equal digests for each other.
 * *records and *changes count what went in.
 */
int store_pair_digest(struct store *st, const struct policy *pol,
    struct nbx_str peer, uint8_t out[32], uint64_t *records,
    uint64_t *changes);

/* One pair's digest and what went into it. */
struct store_digest {
	uint8_t digest[32];
	uint64_t records, changes;
};

/*
 * store_pair_digest for each of peers[0..npeers) in one pass over the
 * records: out[i] is the digest of the pair (this node, peers[i]).
 */
int store_pair_digests(struct store *st, const struct policy *pol,
    const struct nbx_str *peers, size_t npeers, struct store_digest *out);

/*
 * A number that changes whenever a write transaction that wrote a record
 * commits (a batch or local write that changed something, an erasure),
 * so that a result computed from the records may be kept until it does;
 * cursor, audit and quarantine entries leave it.  In memory; starts at 0
 * on open.
 */
uint64_t store_generation(const struct store *st);

/* SHA-256 over every (key, value) of the records database, in key order. */
int store_records_digest(struct store *st, uint8_t out[32]);

/* ------------------------------------------------------------------ */
/* Set reconciliation items (store/items.c)                            */
/* ------------------------------------------------------------------ */

/*
 * One record as a pair sees it is a struct recon_item (recon.h): kh is
 * store_key_hash(coll, id), vh the first RECON_VH_LEN bytes of SHA-256
 * over the record's bytes for the pair (those store_pair_digest hashes).
 */

/*
 * The first 8 bytes, big-endian, of SHA-256 over coll, one 0 byte, id
 * (the record's key).  0 only by chance, or if libcrypto cannot allocate
 * its context.
 */
uint64_t store_key_hash(struct nbx_str coll, struct nbx_str id);

/*
 * The items of the pair (this node, peer): one per record that is not
 * erased and of which at least one change counts for the pair digest
 * (the same rule as store_pair_digest: region fields, audience fields
 * whose record audience and change audience hold both, plus the record's
 * state and audience changes when a field counts), sorted ascending by
 * (kh, vh memcmp).  Two converged nodes list equal items for each other;
 * the records whose items differ are those they differ on.  A record the
 * peer may not see gives no item.  One read transaction, one pass over
 * the records of the policy's collections.  *v is malloc'd (the caller
 * frees it); NULL and 0 when there are none, and on failure.  0,
 * NBX_ENOMEM or a store error.
 */
int store_pair_items(struct store *st, const struct policy *pol,
    struct nbx_str peer, struct recon_item **v, size_t *n);

/*
 * Calls fn(arg, coll, id) for each record (erased ones included) of the
 * policy's collections whose key hash is in khs[0..n) (sorted ascending,
 * duplicates allowed), in any order; coll and id are valid until
 * store_rtxn_end.  One pass over the record keys; no record is decoded.
 * Stops and returns fn's non-zero value; 0 at the end (at once for n 0),
 * NBX_ENOMEM or a store error.
 */
int store_keys_by_hash(struct store_rtxn *t, const struct policy *pol,
    const uint64_t *khs, size_t n,
    int (*fn)(void *arg, struct nbx_str coll, struct nbx_str id), void *arg);

/* ------------------------------------------------------------------ */
/* Disclosure log (store/audit.c)                                      */
/* ------------------------------------------------------------------ */

/*
 * Records that the changes chs[0..n) were sent to `peer` at now_ms: one
 * audit entry per record (consecutive changes of one record are grouped)
 * naming the fields and versions, never the values, and the per-record
 * "disclosed to" index.  One write transaction.  Returns 0 or NBX_E*.
 */
int store_disclose(struct store *st, struct nbx_str peer,
    const struct change *chs, size_t n, uint64_t now_ms);

/*
 * A source of changes, taken one at a time: next fills *c (its strings
 * valid until the disclosure returns) and returns 1, returns 0 after the
 * last one, or returns an NBX_E* code that aborts the disclosure (nothing
 * is written).  rewind starts it again: the write transaction is retried
 * from the start when the map had to grow.
 */
struct store_change_src {
	int (*next)(void *arg, struct change *c);
	void (*rewind)(void *arg);
	void *arg;
};

/*
 * store_disclose with the changes from src, none of them held in memory
 * longer than its record's turn.  An empty source writes nothing.
 */
int store_disclose_from(struct store *st, struct nbx_str peer,
    const struct store_change_src *src, uint64_t now_ms);

/*
 * store_apply with the changes taken from src one at a time, so that a
 * received batch is never held decoded whole: only the changes of the
 * record being merged are (a batch lists each record's changes together).
 * Strings of a change from next must stay valid until this call returns.
 * out has room for max outcomes; out[i] is that of the i-th change taken,
 * and *taken says how many were, once committed.  A source giving more
 * than max changes aborts with NBX_EINVAL; an NBX_E* code from next
 * aborts with that code.  Either way nothing is written, as with any
 * other failure.  The source is rewound when the map grows and the batch
 * is tried again.
 */
int store_apply_from(struct store *st, const struct policy *pol,
    const struct store_change_src *src, size_t max, struct nbx_str from_peer,
    const struct store_cursor *cur, uint64_t now_ms, unsigned flags,
    struct store_outcome *out, size_t *taken);

/* 1 if any part of record (coll, id) was ever sent to peer, else 0. */
int store_disclosed(struct store_rtxn *t, struct nbx_str coll,
    struct nbx_str id, struct nbx_str peer);

/*
 * Calls fn for each peer that ever received any part of (coll, id), with
 * the time of the last disclosure.  Stops and returns fn's value if it is
 * non-zero; 0 at the end.
 */
int store_disclosed_peers(struct store_rtxn *t, struct nbx_str coll,
    struct nbx_str id, int (*fn)(void *arg, struct nbx_str peer,
    uint64_t time_ms), void *arg);

#define STORE_AUDIT_FIELDS 64

struct store_audit_item {
	uint32_t kind;		/* enum change_kind */
	struct nbx_str field, elem, origin;
	uint64_t hlc;
};

struct store_audit_entry {
	uint64_t aseq;
	uint64_t time_ms;
	struct nbx_str peer, coll, id;
	uint32_t nitems;	/* items beyond STORE_AUDIT_FIELDS are counted
				   in `more`, not returned */
	uint32_t more;
	struct store_audit_item items[STORE_AUDIT_FIELDS];
};

/*
 * The first audit entry with aseq > after; strings borrow from the
 * transaction.  0 or NBX_ENOTFOUND at the end.
 */
int store_audit_next(struct store_rtxn *t, uint64_t after,
    struct store_audit_entry *out);

/* ------------------------------------------------------------------ */
/* Peers added at run time (store/peers.c)                             */
/* ------------------------------------------------------------------ */

struct store_peer {
	struct nbx_str id;
	struct nbx_str address;	/* "host:port" */
	int has_pin;
	uint8_t pin[32];	/* SPKI SHA-256 when has_pin */
};

/* Adds or replaces a peer.  0, NBX_EINVAL (bad id or address) or NBX_E*. */
int store_peer_put(struct store *st, const struct store_peer *p);

/* Removes a peer and its cursor.  0 or NBX_ENOTFOUND. */
int store_peer_del(struct store *st, struct nbx_str id);

/*
 * The first peer with id > after (empty: the first).  Strings borrow from
 * the transaction.  0 or NBX_ENOTFOUND at the end.
 */
int store_peer_next(struct store_rtxn *t, struct nbx_str after,
    struct store_peer *out);

/*
 * Echo suppression.  A peer already holds every change it authored, so
 * the log is streamed to it without them, except while a full pass is
 * owed: from the moment it subscribes from the start of our log (a new or
 * rebuilt store, which may have lost its own changes and recovers them
 * from its peers) until one pass over the whole log has been acknowledged.
 * The flag is kept in the store so that an interrupted pass resumes as a
 * full one.  *owed is 0 for a peer never flagged.  0 or NBX_E*.
 */
int store_peer_resync_get(struct store *st, struct nbx_str peer, int *owed);
int store_peer_resync_set(struct store *st, struct nbx_str peer, int owed);

#endif
