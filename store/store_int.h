/*
 * store_int.h - what the files of the store module share and nobody else
 * sees: the handle's layout, the database ids, and the write-transaction
 * runner that grows the map.
 */
#ifndef NBX_STORE_INT_H
#define NBX_STORE_INT_H

#include <lmdb.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>

#include "store.h"

/*
 * Store format.  2: a record's value is its log seq (u64 BE) followed by
 * its crdt encoding, so an update finds the log entry to move without an
 * index.  1 (before): the value was the encoding alone and the "logidx"
 * database mapped record keys to seqs; nbxd upgrades such a store when
 * it opens it, and read-only opens read either.  "logidx" stays, empty.
 * 3: audit entries may also take their compact shape (audit.c); those of
 * format 2 are read as they are, so 2 -> 3 only moves the number, and an
 * older nbx refuses the store instead of misreading its audit.
 * 4: records may be in the crdt's record format 2 (crdt.c: versions near
 * the state version as ints, unset ones nil); those written before are
 * read as they are, so 3 -> 4 only moves the number, and an older nbx
 * refuses the store instead of finding its new records corrupt.
 * 5: the disclosure log holds one entry per batch sent, a record each
 * inside it (audit.c); entries written before hold one record and are
 * read as they are, so 4 -> 5 only moves the number, and an older nbx
 * refuses the store instead of misreading its audit.
 */
#define STORE_FORMAT	5
#define STORE_SEQ_BYTES	8
#define MAP_MAX		(UINT64_C(1) << 40)	/* 1 TiB: stop growing */
#define KEY_MAX		(NBX_NAME_MAX + 1 + NBX_RECID_MAX)

enum { DB_RECORDS, DB_LOG, DB_LOGIDX, DB_META, DB_PEERS, DB_CURSORS,
    DB_AUDIT, DB_DISCLOSED, DB_QUARANTINE, DB_ERASURES, DB_DEFERRED,
    DB_COUNT };

/*
 * Hints: for recent log entries, the one node that authored every
 * version the record would stream (0: several, or not known), and the
 * peers known to hold every version of the record as logged at that seq
 * (they sent us all of them: apply.c, held_by_sender).  Egress uses them
 * to skip, without loading it, a record the peer it streams to made or
 * already holds (session.c: echo suppression).  In memory only, two rings
 * indexed by seq; a hints slot holds (seq << 8 | author index + 1), so a
 * slot for another seq reads as unknown, and the holders slot beside it
 * a bit per node of hint_ids.  Both are cleared whenever a write
 * transaction aborts, so no hint outlives the seq numbers it was made
 * for.
 */
#define STORE_HINT_SLOTS	(1u << 18)
#define STORE_HINT_AUTHORS	64

struct store {
	MDB_env *env;
	MDB_dbi dbi[DB_COUNT];
	char node_id[NBX_ID_MAX + 1];
	uint64_t map_size;
	uint64_t max_drift_ms;
	int readonly;
	unsigned env_flags;	/* as opened, for compaction's reopen */
	char dir[4096];
	int rtxns;		/* read transactions open now */
	int format;		/* of the open store: 1 or STORE_FORMAT */
	uint64_t *hints;	/* STORE_HINT_SLOTS, allocated on first use */
	uint64_t *holders;	/* STORE_HINT_SLOTS, beside hints */
	char hint_ids[STORE_HINT_AUTHORS][NBX_ID_MAX + 1];
	unsigned nhint_ids;
	uint64_t gen;		/* store_generation */
	uint64_t own_since;	/* the first version this process run of the
				   store stamped, 0 until it stamps one (a
				   compaction's reopen is the same run):
				   apply.c, own_version_known.  In memory:
				   it is the run's, so opening writes
				   nothing for it (a store on a full disk
				   still opens) */
	int records_written;	/* by the write transaction running now */
	char err[256];
};

struct store__audit_at;		/* below */

struct store_rtxn {
	struct store *st;
	MDB_txn *txn;
	MDB_cursor *log;	/* store_log_next's, opened on first use */
	uint64_t log_at;	/* the seq it stands on, 0 if none */
	MDB_cursor *recs;	/* store_record_get's, opened on first use:
				   a scan of the log reads records mostly in
				   key order, which a cursor finds on the
				   leaf it stands on */
	struct store__audit_at *audit_at;	/* store_audit_next's batch */
};

/*
 * Unpacks a value read from the store into u (msgpack-c; strings borrow
 * from d) once mpscan found every count in it backed by bytes: a damaged
 * value cannot make the unpacker reserve more than its size allows.
 * 0, or NBX_EMALFORMED.
 */
int store__unpack(msgpack_unpacked *u, const MDB_val *d);

/*
 * The batch entry store_audit_next read last, unpacked, for the reads of
 * its next records (audit.c); the read transaction keeps it and frees it
 * at its end.  Strings borrow from the transaction.
 */
struct store__audit_at {
	uint64_t key, count;	/* count 0: none kept */
	const void *src;	/* the value it was unpacked from */
	msgpack_unpacked u;
};

static inline void
store__audit_at_free(struct store__audit_at *a)
{
	if (a == NULL)
		return;
	msgpack_unpacked_destroy(&a->u);
	free(a);
}

/* The map's size and the bytes in use, 0 if LMDB cannot say. */
void store__map_get(struct store *st, uint64_t *size, uint64_t *used);
/*
 * Record i of the audit value d stored at key (aseq key + i): of a batch
 * entry, or (i == 0) of an older entry of one record, into out; strings
 * borrow from d.  *at keeps the batch unpacked for the next call (NULL
 * at first; store__audit_at_free).  NBX_ENOTFOUND past its records,
 * NBX_EMALFORMED if it does not read.
 */
int store__audit_read(struct store__audit_at **at, uint64_t key,
    const MDB_val *d, uint64_t i, struct store_audit_entry *out);
/* The records in an audit value (1 for an older entry); 0: unreadable. */
uint64_t store__audit_records(const MDB_val *d);

/* Records a message for store_last_error and returns code. */
int store__fail(struct store *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Translates an MDB_* code (0 stays 0) and records the message. */
int store__mdb_code(struct store *st, int rc, const char *what);

/*
 * Runs fn inside a write transaction and commits it.  fn returns 0 to
 * commit, or an NBX_E* code to abort (returned as is).  When fn or the
 * commit hits MDB_MAP_FULL, the transaction is aborted, the map doubled
 * and fn run again from the start, so fn must only derive its effects from
 * its argument and the transaction.
 */
int store__write(struct store *st, int (*fn)(MDB_txn *txn, void *arg),
    void *arg);

/*
 * Notes that the record logged at seq (inside the current write
 * transaction) streams only versions by `author` (empty: several).
 */
void store__hint_set(struct store *st, uint64_t seq, struct nbx_str author);
/* Notes that `peer` holds every version of the record logged at seq. */
void store__holder_add(struct store *st, uint64_t seq, struct nbx_str peer);

/* store_disclosed_peers inside any transaction (audit.c). */
int store__disclosed_peers(struct store *st, MDB_txn *txn,
    struct nbx_str coll, struct nbx_str id, int (*fn)(void *arg,
    struct nbx_str peer, uint64_t time_ms), void *arg);

/* Meta values (u64 big-endian under a name); MDB_* codes. */
int store__meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name,
    uint64_t *v);
int store__meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name,
    uint64_t v);

/* Record key: coll \0 id; returns its length (buf holds KEY_MAX). */
size_t store__rec_key(uint8_t *buf, struct nbx_str coll, struct nbx_str id);
int store__rec_key_split(const MDB_val *k, struct nbx_str *coll,
    struct nbx_str *id);

static inline void
store__be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t
store__be64_get(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * Splits a records value into its log seq (0 if the store is of format
 * 1) and its crdt encoding.  MDB_CORRUPTED if it is too short.
 */
static inline int
store__rec_val(const struct store *st, const MDB_val *d, uint64_t *seq,
    const uint8_t **enc, size_t *len)
{
	const uint8_t *p = d->mv_data;

	if (st->format < 2) {
		*seq = 0;
		*enc = p;
		*len = d->mv_size;
		return 0;
	}
	if (d->mv_size < STORE_SEQ_BYTES)
		return MDB_CORRUPTED;
	*seq = store__be64_get(p);
	*enc = p + STORE_SEQ_BYTES;
	*len = d->mv_size - STORE_SEQ_BYTES;
	return 0;
}

/*
 * Decodes the records entry (k, d) into r, which must be initialised: r
 * is reset for the key's coll and id (crdt_record_reset: its arrays are
 * kept for the next record) and its strings borrow from k and d.  0 or
 * NBX_EMALFORMED (also for a key that does not split).
 */
int store__record_decode(const struct store *st, const MDB_val *k,
    const MDB_val *d, struct crdt_record *r);

/*
 * Calls fn(arg, pc, k, d) for each entry of the records database whose
 * collection pc is one of pol's: collections in policy order, and in key
 * order within each, which is the order of the pair digest.  One cursor
 * steps through each collection; k and d borrow from t.  Stops and
 * returns fn's non-zero value; 0 at the end, or a store error.
 */
int store__records_each(struct store_rtxn *t, const struct policy *pol,
    int (*fn)(void *arg, const struct pol_coll *pc, const MDB_val *k,
    const MDB_val *d), void *arg);

/* ------------------------------------------------------------------ */
/* What of a record a pair shares (share.c)                            */
/* ------------------------------------------------------------------ */

/*
 * The bytes of one record that count for the pair (this node self,
 * peers[i]), for each of several peers at once: the rule of the pair
 * digest (store.h, store_pair_digest).  They are frames (4-byte
 * big-endian length, then change_encode) of the record's changes in the
 * order crdt_record_changes gives them: its state change, and its
 * audience change when both are in that audience, provided at least one
 * field change counts; then each region field change, and each audience
 * field change whose record audience and change audience hold both.
 * Local fields, fields the policy does not know, erasures and receipts
 * never count.  The pair digest (verify.c) hashes every record's bytes in
 * store__records_each order; a set reconciliation item (items.c) hashes
 * one record's.  peers (borrowed until store__share_free) must not be
 * empty.
 */
struct store__share;

/* 0 or NBX_ENOMEM; *out is NULL on failure. */
int store__share_new(struct nbx_str self, const struct nbx_str *peers,
    size_t npeers, struct store__share **out);
/* NULL is a no-op. */
void store__share_free(struct store__share *s);
/*
 * Works out r's bytes for each pair; r (not erased) and pc stay borrowed
 * until the next call.  Buffers are kept from one record to the next.
 * 0, NBX_ENOMEM or NBX_EINVAL (a change that does not encode).
 */
int store__share_record(struct store__share *s, const struct pol_coll *pc,
    const struct crdt_record *r);
/*
 * The changes of the record that count for pair i: 0 when the record
 * gives that pair no bytes at all.
 */
uint64_t store__share_changes(const struct store__share *s, size_t i);
/* 1 if pairs a and b are given the same bytes of the record, else 0. */
int store__share_same(const struct store__share *s, size_t a, size_t b);
/*
 * Calls fn(arg, p, n) over pair i's bytes of the record, in order, in a
 * few runs (p borrows from s until the next store__share_record); none
 * when it has none.  Stops and returns fn's non-zero value; else 0.
 */
int store__share_bytes(const struct store__share *s, size_t i,
    int (*fn)(void *arg, const void *p, size_t n), void *arg);

#endif
