/*
 * store_read.c - the store's readers: read transactions and what is read
 * in them (records, the log, erasures, quarantine), meta, cursors and the
 * records digest.  Stored values are checked (mpscan) before they are
 * unpacked: a damaged store is refused, not trusted.
 */
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "mpbuf.h"
#include "mpscan.h"
#include "nbx_err.h"
#include "store.h"
#include "store_int.h"

/* ------------------------------------------------------------------ */
/* Reading                                                             */
/* ------------------------------------------------------------------ */

int
store_rtxn_begin(struct store *st, struct store_rtxn **out)
{
	struct store_rtxn *t;
	int rc;

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NBX_ENOMEM;
	rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &t->txn);
	if (rc == MDB_MAP_RESIZED) {
		/* another process grew the map: adopt its size and retry */
		if (st->rtxns == 0 && mdb_env_set_mapsize(st->env, 0) == 0)
			rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &t->txn);
	}
	if (rc != 0) {
		free(t);
		return store__mdb_code(st, rc, "begin read");
	}
	t->st = st;
	st->rtxns++;
	*out = t;
	return 0;
}

void
store_rtxn_end(struct store_rtxn *t)
{
	if (t == NULL)
		return;
	if (t->log != NULL)
		mdb_cursor_close(t->log);
	if (t->recs != NULL)
		mdb_cursor_close(t->recs);
	store__audit_at_free(t->audit_at);
	mdb_txn_abort(t->txn);
	t->st->rtxns--;
	free(t);
}

/* Decodes a records value (store__rec_val) into r. */
static int
record_decode(const struct store *st, const MDB_val *d,
    struct crdt_record *r)
{
	const uint8_t *enc;
	size_t len;
	uint64_t seq;

	if (store__rec_val(st, d, &seq, &enc, &len) != 0)
		return NBX_EMALFORMED;
	return crdt_record_decode(enc, len, r);
}

int
store_record_get(struct store_rtxn *t, struct nbx_str coll, struct nbx_str id,
    struct crdt_record *r)
{
	uint8_t key[KEY_MAX];
	MDB_val k, d;
	int rc;

	crdt_record_init(r, coll, id);
	if (coll.n == 0 || coll.n > NBX_NAME_MAX || id.n > NBX_RECID_MAX)
		return NBX_ENOTFOUND;
	k.mv_size = store__rec_key(key, coll, id);
	k.mv_data = key;
	if (t->recs == NULL &&
	    (rc = mdb_cursor_open(t->txn, t->st->dbi[DB_RECORDS], &t->recs)) != 0) {
		t->recs = NULL;
		return store__mdb_code(t->st, rc, "cursor");
	}
	if ((rc = mdb_cursor_get(t->recs, &k, &d, MDB_SET)) != 0)
		return store__mdb_code(t->st, rc, "get record");
	/* coll and id stay the caller's; everything else borrows from the txn */
	return record_decode(t->st, &d, r);
}

int
store_record_next(struct store_rtxn *t, struct nbx_str coll,
    struct nbx_str after_id, struct nbx_str *id, struct crdt_record *r)
{
	uint8_t key[KEY_MAX + 1];
	MDB_cursor *cu;
	MDB_val k, d;
	struct nbx_str kc;
	int rc;

	crdt_record_init(r, coll, after_id);
	if (coll.n == 0 || coll.n > NBX_NAME_MAX || after_id.n > NBX_RECID_MAX)
		return NBX_ENOTFOUND;
	k.mv_size = store__rec_key(key, coll, after_id);
	if (after_id.n)
		key[k.mv_size++] = 0;	/* smallest key after after_id */
	k.mv_data = key;
	if ((rc = mdb_cursor_open(t->txn, t->st->dbi[DB_RECORDS], &cu)) != 0)
		return store__mdb_code(t->st, rc, "cursor");
	rc = mdb_cursor_get(cu, &k, &d, MDB_SET_RANGE);
	mdb_cursor_close(cu);
	if (rc != 0)
		return store__mdb_code(t->st, rc, "next record");
	if (store__rec_key_split(&k, &kc, id) != 0 || !nbx_str_eq(kc, coll))
		return NBX_ENOTFOUND;
	crdt_record_init(r, kc, *id);
	return record_decode(t->st, &d, r);
}

int
store__record_decode(const struct store *st, const MDB_val *k,
    const MDB_val *d, struct crdt_record *r)
{
	struct nbx_str coll, id;

	if (store__rec_key_split(k, &coll, &id) != 0) {
		crdt_record_reset(r, (struct nbx_str){ "", 0 },
		    (struct nbx_str){ "", 0 });
		return NBX_EMALFORMED;
	}
	crdt_record_reset(r, coll, id);
	return record_decode(st, d, r);
}

/*
 * A collection's keys are contiguous and start at "coll\0": the cursor
 * is placed there once and steps on while the key's collection is coll
 * ("coll2" sorts after every "coll\0...").
 */
int
store__records_each(struct store_rtxn *t, const struct policy *pol,
    int (*fn)(void *arg, const struct pol_coll *pc, const MDB_val *k,
    const MDB_val *d), void *arg)
{
	uint8_t key[KEY_MAX];
	MDB_cursor *cu;
	MDB_val k, d;
	int rc;

	if ((rc = mdb_cursor_open(t->txn, t->st->dbi[DB_RECORDS], &cu)) != 0)
		return store__mdb_code(t->st, rc, "cursor");
	for (size_t i = 0; i < policy_ncoll(pol); i++) {
		const struct pol_coll *pc = policy_coll_at(pol, i);
		struct nbx_str coll = { pc->name, pc->name_len };

		k.mv_size = store__rec_key(key, coll, (struct nbx_str){ "", 0 });
		k.mv_data = key;
		for (rc = mdb_cursor_get(cu, &k, &d, MDB_SET_RANGE); rc == 0;
		    rc = mdb_cursor_get(cu, &k, &d, MDB_NEXT)) {
			if (k.mv_size <= coll.n ||
			    memcmp(k.mv_data, coll.p, coll.n) != 0 ||
			    ((const uint8_t *)k.mv_data)[coll.n] != 0)
				break;	/* past the collection */
			if ((rc = fn(arg, pc, &k, &d)) != 0)
				goto out;
		}
		if (rc != 0 && rc != MDB_NOTFOUND) {
			rc = store__mdb_code(t->st, rc, "next record");
			goto out;
		}
	}
	rc = 0;
out:
	mdb_cursor_close(cu);
	return rc;
}

int
store_erasure_next(struct store_rtxn *t, struct nbx_str after_coll,
    struct nbx_str after_id, struct nbx_str *coll, struct nbx_str *id)
{
	uint8_t key[KEY_MAX + 1];
	MDB_cursor *cu;
	MDB_val k, d;
	int rc;

	if (after_coll.n > NBX_NAME_MAX || after_id.n > NBX_RECID_MAX)
		return NBX_ENOTFOUND;
	if ((rc = mdb_cursor_open(t->txn, t->st->dbi[DB_ERASURES], &cu)) != 0)
		return store__mdb_code(t->st, rc, "cursor");
	if (after_coll.n) {
		k.mv_size = store__rec_key(key, after_coll, after_id);
		key[k.mv_size++] = 0;	/* the smallest key after it */
		k.mv_data = key;
		rc = mdb_cursor_get(cu, &k, &d, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cu, &k, &d, MDB_FIRST);
	}
	mdb_cursor_close(cu);
	if (rc != 0)
		return store__mdb_code(t->st, rc, "next erasure");
	return store__rec_key_split(&k, coll, id);
}

/*
 * A scan calls this with after = the seq it was given last: the cursor
 * kept in t then steps to the next entry instead of searching the tree.
 */
int
store_log_next(struct store_rtxn *t, uint64_t after, uint64_t *seq,
    struct nbx_str *coll, struct nbx_str *id)
{
	uint8_t kb[8];
	MDB_val k = { 8, kb }, d;
	int rc;

	if (after == UINT64_MAX)
		return NBX_ENOTFOUND;
	if (t->log == NULL &&
	    (rc = mdb_cursor_open(t->txn, t->st->dbi[DB_LOG], &t->log)) != 0) {
		t->log = NULL;
		return store__mdb_code(t->st, rc, "cursor");
	}
	if (t->log_at != 0 && t->log_at == after)
		rc = mdb_cursor_get(t->log, &k, &d, MDB_NEXT);
	else {
		store__be64_put(kb, after + 1);
		rc = mdb_cursor_get(t->log, &k, &d, MDB_SET_RANGE);
	}
	t->log_at = 0;
	if (rc != 0)
		return store__mdb_code(t->st, rc, "next log entry");
	if (k.mv_size != 8 || store__rec_key_split(&d, coll, id) != 0)
		return NBX_EMALFORMED;
	*seq = store__be64_get(k.mv_data);
	t->log_at = *seq;
	return 0;
}

int
store_meta_get(struct store *st, struct store_meta *out)
{
	struct store_rtxn *t;
	MDB_stat ms;
	uint64_t next = 1;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = store_rtxn_begin(st, &t)) != 0)
		return rc;
	snprintf(out->node_id, sizeof(out->node_id), "%s", st->node_id);
	if ((rc = store__meta_get_u64(t->txn, st->dbi[DB_META], "epoch",
	    &out->epoch)) != 0 ||
	    (rc = store__meta_get_u64(t->txn, st->dbi[DB_META], "next_seq",
	    &next)) != 0 ||
	    (rc = store__meta_get_u64(t->txn, st->dbi[DB_META], "hlc",
	    &out->hlc)) != 0) {
		rc = store__mdb_code(st, rc, "read meta");
		goto out;
	}
	out->last_seq = next - 1;
	if (mdb_stat(t->txn, st->dbi[DB_RECORDS], &ms) == 0)
		out->records = ms.ms_entries;
	if (mdb_stat(t->txn, st->dbi[DB_QUARANTINE], &ms) == 0)
		out->quarantined = ms.ms_entries;
	store__map_get(st, &out->map_size, &out->map_used);
out:
	store_rtxn_end(t);
	return rc;
}

int
store_cursor_get(struct store *st, struct nbx_str peer,
    struct store_cursor *out)
{
	struct store_rtxn *t;
	MDB_val k = { peer.n, (void *)peer.p }, d;
	int rc;

	memset(out, 0, sizeof(*out));
	out->peer = peer;
	if ((rc = store_rtxn_begin(st, &t)) != 0)
		return rc;
	rc = mdb_get(t->txn, st->dbi[DB_CURSORS], &k, &d);
	if (rc == 0 && d.mv_size == 16) {
		out->epoch = store__be64_get(d.mv_data);
		out->seq = store__be64_get((const uint8_t *)d.mv_data + 8);
	}
	store_rtxn_end(t);
	return (rc == 0 || rc == MDB_NOTFOUND) ? 0 : store__mdb_code(st, rc, "cursor");
}

int
store_quarantine_next(struct store_rtxn *t, uint64_t after,
    struct store_qentry *out)
{
	uint8_t kb[8];
	MDB_cursor *cu;
	MDB_val k = { 8, kb }, d;
	msgpack_unpacked u;
	const msgpack_object *e;
	int64_t reason;
	uint64_t kind;
	int rc;

	memset(out, 0, sizeof(*out));
	if (after == UINT64_MAX)
		return NBX_ENOTFOUND;
	store__be64_put(kb, after + 1);
	if ((rc = mdb_cursor_open(t->txn, t->st->dbi[DB_QUARANTINE], &cu)) != 0)
		return store__mdb_code(t->st, rc, "cursor");
	rc = mdb_cursor_get(cu, &k, &d, MDB_SET_RANGE);
	mdb_cursor_close(cu);
	if (rc != 0)
		return store__mdb_code(t->st, rc, "next quarantine entry");
	out->qseq = store__be64_get(k.mv_data);
	msgpack_unpacked_init(&u);
	rc = NBX_EMALFORMED;
	if (store__unpack(&u, &d) != 0 || u.data.type != MSGPACK_OBJECT_ARRAY ||
	    u.data.via.array.size != 9)
		goto out;
	e = u.data.via.array.ptr;
	if (nbx_mp_get_u64(&e[0], &out->time_ms) != 0 ||
	    nbx_mp_get_i64(&e[1], &reason) != 0 ||
	    nbx_mp_get_u64(&e[2], &kind) != 0 ||
	    nbx_mp_get_str(&e[3], NBX_ID_MAX, &out->peer) != 0 ||
	    nbx_mp_get_str(&e[4], NBX_NAME_MAX, &out->coll) != 0 ||
	    nbx_mp_get_str(&e[5], NBX_RECID_MAX, &out->id) != 0 ||
	    nbx_mp_get_str(&e[6], NBX_NAME_MAX, &out->field) != 0 ||
	    nbx_mp_get_str(&e[7], NBX_ID_MAX, &out->origin) != 0 ||
	    nbx_mp_get_u64(&e[8], &out->hlc) != 0)
		goto out;
	out->err = (int)reason;
	out->kind = (uint32_t)kind;
	rc = 0;
out:
	msgpack_unpacked_destroy(&u);
	return rc;
}

int
store_records_digest(struct store *st, uint8_t out[32])
{
	struct store_rtxn *t;
	MDB_cursor *cu = NULL;
	MDB_val k, d;
	const uint8_t *enc;
	size_t elen;
	uint64_t seq;
	EVP_MD_CTX *md = NULL;
	uint8_t len[8];
	unsigned int mdlen = 32;
	int rc, op = MDB_FIRST;

	if ((rc = store_rtxn_begin(st, &t)) != 0)
		return rc;
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		rc = NBX_ENOMEM;
		goto out;
	}
	if ((rc = mdb_cursor_open(t->txn, st->dbi[DB_RECORDS], &cu)) != 0) {
		rc = store__mdb_code(st, rc, "cursor");
		goto out;
	}
	while ((rc = mdb_cursor_get(cu, &k, &d, op)) == 0) {
		op = MDB_NEXT;
		store__be64_put(len, k.mv_size);
		EVP_DigestUpdate(md, len, 8);
		EVP_DigestUpdate(md, k.mv_data, k.mv_size);
		/* the state, not where it sits in this node's log */
		if (store__rec_val(st, &d, &seq, &enc, &elen) != 0) {
			rc = NBX_EMALFORMED;
			goto out;
		}
		store__be64_put(len, elen);
		EVP_DigestUpdate(md, len, 8);
		EVP_DigestUpdate(md, enc, elen);
	}
	if (rc != MDB_NOTFOUND) {
		rc = store__mdb_code(st, rc, "digest");
		goto out;
	}
	rc = EVP_DigestFinal_ex(md, out, &mdlen) == 1 ? 0 : NBX_ENOMEM;
out:
	if (cu)
		mdb_cursor_close(cu);
	EVP_MD_CTX_free(md);
	store_rtxn_end(t);
	return rc;
}
