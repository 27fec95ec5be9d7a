/*
 * store.c - LMDB persistence for one node: environment, meta, the merge of
 * change batches into records with the change log, and the readers.
 * MDB_* codes are translated to NBX_E* here and go no further.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "hlc.h"
#include "mpbuf.h"
#include "nbx_err.h"
#include "store.h"
#include "store_int.h"

static const char *const db_names[DB_COUNT] = {
	"records", "log", "logidx", "meta", "peers", "cursors", "audit",
	"disclosed", "quarantine", "erasures", "deferred",
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

int
store__fail(struct store *st, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
	return code;
}

int
store__mdb_code(struct store *st, int rc, const char *what)
{
	int code;

	if (rc == 0)
		return 0;
	if (rc == MDB_NOTFOUND)
		return NBX_ENOTFOUND;
	code = rc == MDB_MAP_FULL ? NBX_EMAPFULL : NBX_ESTORE;
	return store__fail(st, code, "%s: %s", what, mdb_strerror(rc));
}


/* Record key: coll \0 id.  Returns its length. */
size_t
store__rec_key(uint8_t *buf, struct nbx_str coll, struct nbx_str id)
{
	memcpy(buf, coll.p, coll.n);
	buf[coll.n] = 0;
	memcpy(buf + coll.n + 1, id.p, id.n);
	return coll.n + 1 + id.n;
}

int
store__rec_key_split(const MDB_val *k, struct nbx_str *coll, struct nbx_str *id)
{
	const char *p = k->mv_data;
	const char *z = memchr(p, 0, k->mv_size);

	if (z == NULL)
		return NBX_EMALFORMED;
	coll->p = p;
	coll->n = (uint32_t)(z - p);
	id->p = z + 1;
	id->n = (uint32_t)(k->mv_size - coll->n - 1);
	return 0;
}

static int
meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *v)
{
	MDB_val k = { strlen(name), (void *)name }, d;
	int rc = mdb_get(txn, dbi, &k, &d);

	if (rc == 0 && d.mv_size != 8)
		return MDB_CORRUPTED;
	if (rc == 0)
		*v = store__be64_get(d.mv_data);
	return rc;
}

static int
meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t v)
{
	uint8_t b[8];
	MDB_val k = { strlen(name), (void *)name }, d = { 8, b };

	store__be64_put(b, v);
	return mdb_put(txn, dbi, &k, &d, 0);
}

/* ------------------------------------------------------------------ */
/* Open and close                                                      */
/* ------------------------------------------------------------------ */

static int
init_meta(struct store *st, MDB_txn *txn, const char *dir)
{
	MDB_val k = { 7, "node_id" }, d;
	uint64_t epoch = 0;
	int rc;

	rc = mdb_get(txn, st->dbi[DB_META], &k, &d);
	if (rc == 0) {
		if (d.mv_size != strlen(st->node_id) ||
		    memcmp(d.mv_data, st->node_id, d.mv_size) != 0)
			return store__fail(st, NBX_ECONFIG,
			    "%s: store belongs to node '%.*s', not '%s'", dir,
			    (int)d.mv_size, (const char *)d.mv_data,
			    st->node_id);
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return store__mdb_code(st, rc, "read meta");
	while (epoch == 0)
		if (getrandom(&epoch, sizeof(epoch), 0) != sizeof(epoch))
			return store__fail(st, NBX_EIO, "getrandom: %s",
			    strerror(errno));
	d.mv_size = strlen(st->node_id);
	d.mv_data = st->node_id;
	if ((rc = mdb_put(txn, st->dbi[DB_META], &k, &d, 0)) != 0 ||
	    (rc = meta_put_u64(txn, st->dbi[DB_META], "epoch", epoch)) != 0 ||
	    (rc = meta_put_u64(txn, st->dbi[DB_META], "next_seq", 1)) != 0 ||
	    (rc = meta_put_u64(txn, st->dbi[DB_META], "hlc", 0)) != 0 ||
	    (rc = meta_put_u64(txn, st->dbi[DB_META], "format",
	    STORE_FORMAT)) != 0)
		return store__mdb_code(st, rc, "write meta");
	return 0;
}

static int
open_dbis(struct store *st, const char *dir)
{
	MDB_txn *txn = NULL;
	unsigned flags = st->readonly ? 0 : MDB_CREATE;
	int rc;

	rc = mdb_txn_begin(st->env, NULL, st->readonly ? MDB_RDONLY : 0, &txn);
	if (rc != 0)
		return store__mdb_code(st, rc, "begin");
	for (int i = 0; i < DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, db_names[i], flags, &st->dbi[i]);
		if (rc == MDB_NOTFOUND) {
			mdb_txn_abort(txn);
			return store__fail(st, NBX_ENOTFOUND,
			    "%s: no nbx store here (database '%s' missing)",
			    dir, db_names[i]);
		}
		if (rc != 0) {
			mdb_txn_abort(txn);
			return store__mdb_code(st, rc, "open database");
		}
	}
	if (st->readonly) {
		MDB_val k = { 7, "node_id" }, d;

		if (mdb_get(txn, st->dbi[DB_META], &k, &d) == 0 &&
		    d.mv_size <= NBX_ID_MAX) {
			memcpy(st->node_id, d.mv_data, d.mv_size);
			st->node_id[d.mv_size] = 0;
		}
		/* commit, not abort: an aborted txn closes the handles it opened */
		return store__mdb_code(st, mdb_txn_commit(txn), "commit");
	}
	if ((rc = init_meta(st, txn, dir)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	return store__mdb_code(st, mdb_txn_commit(txn), "commit");
}

int
store_open(const char *dir, const struct store_opts *o, struct store **out,
    char *err, size_t errlen)
{
	struct store *st = NULL;
	struct stat sb;
	MDB_envinfo info;
	unsigned flags;
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = 0;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NBX_ENOMEM;
	st->readonly = o->readonly;
	st->map_size = o->map_size ? o->map_size : STORE_MAP_DEFAULT;
	st->max_drift_ms = o->max_drift_ms ? o->max_drift_ms :
	    HLC_DEFAULT_DRIFT_MS;
	if (!o->readonly) {
		if (o->node_id == NULL || !nbx_node_id_valid(nbx_str_c(o->node_id))) {
			rc = store__fail(st, NBX_EINVAL, "invalid node id '%s'",
			    o->node_id ? o->node_id : "");
			goto out;
		}
		snprintf(st->node_id, sizeof(st->node_id), "%s", o->node_id);
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			rc = store__fail(st, NBX_EIO, "%s: cannot create: %s", dir,
			    strerror(errno));
			goto out;
		}
	}
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		rc = store__fail(st, o->readonly ? NBX_ENOTFOUND : NBX_EIO,
		    "%s: not a directory%s%s", dir, errno ? ": " : "",
		    errno ? strerror(errno) : "");
		goto out;
	}
	if (o->readonly) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/data.mdb", dir);
		if (access(path, R_OK) != 0) {
			rc = store__fail(st, NBX_ENOTFOUND, "%s: %s", path,
			    strerror(errno));
			goto out;
		}
	}
	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, DB_COUNT)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, st->map_size)) != 0) {
		rc = store__mdb_code(st, rc, "environment");
		goto out;
	}
	flags = MDB_NOTLS | (o->readonly ? MDB_RDONLY : 0);
	if (o->readonly) {
		char lock[4096];

		/*
		 * A read-only copy (no writable lock file) has no writer to
		 * coordinate with: read it without the lock table.
		 */
		snprintf(lock, sizeof(lock), "%s/lock.mdb", dir);
		if (access(lock, W_OK) != 0 && access(dir, W_OK) != 0)
			flags |= MDB_NOLOCK;
	}
	st->env_flags = flags;
	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	rc = mdb_env_open(st->env, dir, flags, 0600);
	if (rc != 0) {
		rc = store__fail(st, rc == EACCES ? NBX_EIO : NBX_ESTORE,
		    "%s: cannot open store: %s", dir, mdb_strerror(rc));
		goto out;
	}
	if (mdb_env_info(st->env, &info) == 0)
		st->map_size = info.me_mapsize;
	if ((rc = open_dbis(st, dir)) != 0)
		goto out;
	*out = st;
	return 0;
out:
	if (err && errlen)
		snprintf(err, errlen, "%s", st->err[0] ? st->err :
		    nbx_strerror(rc));
	store_close(st);
	return rc;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	if (st->env)
		mdb_env_close(st->env);
	free(st);
}

const char *
store_last_error(const struct store *st)
{
	return st->err[0] ? st->err : "no error";
}

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
	struct nbx_buf blob;	/* copy of the stored encoding */
	struct crdt_record rec;
};

struct apply {
	struct store *st;
	MDB_txn *txn;
	const struct policy *pol;
	struct nbx_str self, peer;
	unsigned flags;
	struct hlc clock;
	uint64_t next_seq, next_qseq, now_ms;
	struct apply_rec r;
	struct nbx_buf enc;
	char **owned;		/* strings receipts borrow until the batch ends */
	size_t nowned;
};

static int
rec_flush(struct apply *a)
{
	struct apply_rec *ar = &a->r;
	MDB_val k = { ar->klen, ar->key }, d, sk;
	uint8_t sb[8];
	int rc;

	if (!ar->loaded || !ar->dirty)
		return 0;
	a->enc.len = 0;
	if ((rc = crdt_record_encode(&ar->rec, &a->enc)) != 0)
		return rc;
	d.mv_size = a->enc.len;
	d.mv_data = a->enc.p;
	if ((rc = mdb_put(a->txn, a->st->dbi[DB_RECORDS], &k, &d, 0)) != 0)
		return store__mdb_code(a->st, rc, "put record");
	/* move the record to its new place in the log */
	rc = mdb_get(a->txn, a->st->dbi[DB_LOGIDX], &k, &d);
	if (rc == 0 && d.mv_size == 8) {
		memcpy(sb, d.mv_data, 8);
		sk.mv_size = 8;
		sk.mv_data = sb;
		rc = mdb_del(a->txn, a->st->dbi[DB_LOG], &sk, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return store__mdb_code(a->st, rc, "del log");
	} else if (rc != MDB_NOTFOUND && rc != 0) {
		return store__mdb_code(a->st, rc, "get logidx");
	}
	store__be64_put(sb, ar->seq);
	sk.mv_size = 8;
	sk.mv_data = sb;
	if ((rc = mdb_put(a->txn, a->st->dbi[DB_LOG], &sk, &k,
	    MDB_APPEND)) != 0 ||
	    (rc = mdb_put(a->txn, a->st->dbi[DB_LOGIDX], &k, &sk, 0)) != 0)
		return store__mdb_code(a->st, rc, "put log");
	ar->dirty = 0;
	return 0;
}

/* Makes a->r the record (coll, id), flushing the previous one. */
static int
rec_load(struct apply *a, struct nbx_str coll, struct nbx_str id)
{
	struct apply_rec *ar = &a->r;
	uint8_t key[KEY_MAX];
	size_t klen = store__rec_key(key, coll, id);
	MDB_val k = { klen, key }, d;
	int rc;

	if (ar->loaded && ar->klen == klen && memcmp(ar->key, key, klen) == 0)
		return 0;
	if ((rc = rec_flush(a)) != 0)
		return rc;
	crdt_record_fini(&ar->rec);
	ar->loaded = 0;
	memcpy(ar->key, key, klen);
	ar->klen = klen;
	ar->blob.len = 0;
	/* coll and id borrow from the key copy, which outlives the record */
	coll.p = (const char *)ar->key;
	id.p = (const char *)ar->key + coll.n + 1;
	crdt_record_init(&ar->rec, coll, id);
	rc = mdb_get(a->txn, a->st->dbi[DB_RECORDS], &k, &d);
	if (rc == 0) {
		if ((rc = nbx_buf_append(&ar->blob, d.mv_data, d.mv_size)) != 0)
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
	msgpack_packer pk;
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
	nbx_mp_packer_init(&pk, &b);
	if (change_encode(c, &enc) != 0 ||
	    msgpack_pack_array(&pk, 2) != 0 ||
	    nbx_mp_pack_str(&pk, a->peer) != 0 ||
	    msgpack_pack_bin(&pk, enc.len) != 0 ||
	    msgpack_pack_bin_body(&pk, enc.p, enc.len) != 0)
		goto out;	/* not encodable: quarantine only */
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
	msgpack_packer pk;
	uint8_t kb[8];
	MDB_val k = { 8, kb }, d;
	int rc;

	nbx_buf_init(&b, 4 * NBX_RECID_MAX);
	nbx_mp_packer_init(&pk, &b);
	/* [time, reason, kind, peer, coll, id, field, origin, hlc]; names
	 * longer than their caps are cut: the entry is a report, not data */
#define CUT(s, m) ((struct nbx_str){ (s).p, (s).n > (m) ? (m) : (s).n })
	if (msgpack_pack_array(&pk, 9) != 0 ||
	    msgpack_pack_uint64(&pk, a->now_ms) != 0 ||
	    msgpack_pack_int32(&pk, reason) != 0 ||
	    msgpack_pack_uint32(&pk, (uint32_t)c->kind) != 0 ||
	    nbx_mp_pack_str(&pk, CUT(a->peer, NBX_ID_MAX)) != 0 ||
	    nbx_mp_pack_str(&pk, CUT(c->coll, NBX_NAME_MAX)) != 0 ||
	    nbx_mp_pack_str(&pk, CUT(c->id, NBX_RECID_MAX)) != 0 ||
	    nbx_mp_pack_str(&pk, CUT(c->field, NBX_NAME_MAX)) != 0 ||
	    nbx_mp_pack_str(&pk, CUT(c->origin, NBX_ID_MAX)) != 0 ||
	    msgpack_pack_uint64(&pk, c->hlc) != 0) {
		nbx_buf_fini(&b);
		return NBX_ENOMEM;
	}
#undef CUT
	store__be64_put(kb, a->next_qseq++);
	d.mv_size = b.len;
	d.mv_data = b.p;
	rc = mdb_put(a->txn, a->st->dbi[DB_QUARANTINE], &k, &d, MDB_APPEND);
	nbx_buf_fini(&b);
	return store__mdb_code(a->st, rc, "put quarantine");
}

static int
value_eq(const struct nbx_value *x, const struct nbx_value *y)
{
	if (x->t != y->t)
		return 0;
	if (x->t == NBX_V_STR)
		return nbx_str_eq(x->s, y->s);
	return x->t == NBX_V_NIL || x->i == y->i;
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
		    value_eq(&g->val, &c->val) &&
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
 * the same ids); a write under an older audience of ours counts only if
 * its writer is still in our audience.  A record this node does not hold
 * at all is taken back whole: that is how a rebuilt store recovers.
 * Returns 1 to accept.
 */
static int
own_version_known(const struct crdt_record *r, const struct change *c,
    struct nbx_str self)
{
	struct crdt_ver v = { c->hlc, c->origin };
	struct crdt_ver av = { c->aud.hlc, c->aud.origin };
	struct crdt_ver cur = { r->aud.hlc, r->aud.origin };
	struct nbx_str none = { "", 0 };
	const struct crdt_reg *g;
	const struct crdt_receipt *x;
	int k;

	/* a record this node does not hold at all: a rebuilt store getting
	   its own data back from its peers (log epoch restarted) */
	if (!r->erased && r->state_ver.hlc == 0 && r->aud.hlc == 0 &&
	    r->nregs == 0)
		return 1;
	if (c->aud.n && nbx_str_eq(c->aud.origin, self)) {
		k = crdt_ver_cmp(av, cur);
		if (k > 0 || (k == 0 && !aud_same(&c->aud, &r->aud)))
			return 0;	/* an audience of ours we never set */
		if (k < 0 && !nbx_audience_has(&r->aud, c->origin))
			return 0;	/* a writer no longer in our audience */
	}
	if (!nbx_str_eq(c->origin, self))
		return 1;
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
	struct change c = *in;
	const struct pol_coll *pc;
	const struct pol_field *pf = NULL;
	int remote = a->peer.n > 0, changed = 0, rc;
	struct crdt_ver excl_before, erase_before;

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
			c.aud = a->r.rec.aud;
	}
	if ((rc = policy_check_change(a->pol, &c, a->self, remote, NULL)) != 0)
		goto reject;
	if ((rc = rec_load(a, c.coll, c.id)) != 0)
		return rc;
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
	    !own_version_known(&a->r.rec, &c, a->self)) {
		rc = NBX_EPEER;		/* claims to be ours, and is not */
		goto reject;
	}
	if (remote)
		(void)hlc_receive(&a->clock, c.hlc, a->now_ms,
		    a->st->max_drift_ms);
	erase_before = a->r.rec.erase;
	excl_before = a->r.rec.excl;
	if ((rc = crdt_record_merge(&a->r.rec, &c, a->self, &changed)) != 0)
		return rc;
	if (changed && !remote && c.kind == CHANGE_AUDIENCE)
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

/* The arguments of one store_apply, for the write-transaction runner. */
struct apply_args {
	struct apply a;
	const struct change *chs;
	size_t n;
	const struct store_cursor *cur;
	unsigned flags;
	struct store_outcome *out;
};

/* One attempt at the whole batch; store__write retries on a full map. */
static int
apply_batch(MDB_txn *txn, void *arg)
{
	struct apply_args *x = arg;
	struct apply *a = &x->a;
	struct store *st = a->st;
	uint64_t h = 0;
	int rc, first_reject = 0;

	/* a retry starts from scratch: forget the previous attempt's record */
	crdt_record_fini(&a->r.rec);
	a->r.loaded = a->r.dirty = 0;
	a->txn = txn;
	if ((rc = meta_get_u64(txn, st->dbi[DB_META], "next_seq",
	    &a->next_seq)) != 0 ||
	    (rc = meta_get_u64(txn, st->dbi[DB_META], "hlc", &h)) != 0)
		return store__mdb_code(st, rc, "read meta");
	hlc_init(&a->clock, h);
	a->next_qseq = last_key_u64(txn, st->dbi[DB_QUARANTINE]) + 1;
	for (size_t i = 0; i < x->n; i++) {
		if ((rc = apply_one(a, &x->chs[i], &x->out[i])) != 0)
			return rc;
		if (x->out[i].status == STORE_REJECTED && first_reject == 0)
			first_reject = x->out[i].err;
	}
	if ((x->flags & STORE_ATOMIC) && first_reject != 0)
		return first_reject;
	if ((rc = rec_flush(a)) != 0)
		return rc;
	if (x->cur && (rc = cursor_put(a, x->cur)) != 0)
		return rc;
	if ((rc = meta_put_u64(txn, st->dbi[DB_META], "next_seq",
	    a->next_seq)) != 0 ||
	    (rc = meta_put_u64(txn, st->dbi[DB_META], "hlc",
	    a->clock.last)) != 0)
		return store__mdb_code(st, rc, "write meta");
	return 0;
}

int
store_reader_check(struct store *st)
{
	int dead = 0, rc;

	if (st->env == NULL || (st->env_flags & MDB_NOLOCK))
		return 0;
	if ((rc = mdb_reader_check(st->env, &dead)) != 0)
		return store__mdb_code(st, rc, "reader check");
	return dead;
}

/* Doubles the map.  Only legal with no transaction open in this process. */
static int
grow_map(struct store *st)
{
	uint64_t size = st->map_size * 2;
	int rc;

	(void)store_reader_check(st);	/* dead readers pin pages */
	if (st->rtxns > 0)
		return store__fail(st, NBX_EMAPFULL,
		    "map full (%llu bytes) and a read transaction is open",
		    (unsigned long long)st->map_size);
	if (size > MAP_MAX)
		return store__fail(st, NBX_EMAPFULL, "map full at %llu bytes",
		    (unsigned long long)st->map_size);
	if ((rc = mdb_env_set_mapsize(st->env, size)) != 0)
		return store__mdb_code(st, rc, "grow map");
	st->map_size = size;
	return 0;
}

/*
 * LMDB reports a short write of a full disk as EIO: say what the operator
 * needs to know, with the space left.  Nothing of the transaction stays.
 */
static int
commit_failed(struct store *st, int mrc)
{
	struct statvfs vfs;
	unsigned long long avail = 0;

	if (statvfs(st->dir, &vfs) == 0)
		avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
	if (mrc == ENOSPC || avail < (1u << 20))
		return store__fail(st, NBX_EIO, "%s: cannot commit: no space "
		    "left on device (%llu bytes free); nothing of this batch "
		    "was applied", st->dir, avail);
	return store__fail(st, NBX_EIO, "%s: cannot commit: %s (%llu bytes "
	    "free); nothing of this batch was applied", st->dir,
	    mdb_strerror(mrc), avail);
}

int
store__write(struct store *st, int (*fn)(MDB_txn *txn, void *arg), void *arg)
{
	MDB_txn *txn;
	int rc;

	if (st->readonly)
		return store__fail(st, NBX_EPERM, "store is read-only");
	for (;;) {
		if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0)
			return store__mdb_code(st, rc, "begin");
		rc = fn(txn, arg);
		if (rc == 0) {
			int mrc = mdb_txn_commit(txn);

			rc = (mrc == EIO || mrc == ENOSPC) ? commit_failed(st,
			    mrc) : store__mdb_code(st, mrc, "commit");
		} else {
			mdb_txn_abort(txn);
		}
		if (rc != NBX_EMAPFULL)
			return rc;
		if ((rc = grow_map(st)) != 0)
			return rc;
	}
}

int
store_apply(struct store *st, const struct policy *pol,
    const struct change *chs, size_t n, struct nbx_str from_peer,
    const struct store_cursor *cur, uint64_t now_ms, unsigned flags,
    struct store_outcome *out)
{
	struct apply_args x;
	int rc;

	memset(&x, 0, sizeof(x));
	x.a.st = st;
	x.a.pol = pol;
	x.a.self = nbx_str_c(st->node_id);
	x.a.peer = from_peer;
	x.a.now_ms = now_ms;
	x.a.flags = flags;
	x.chs = chs;
	x.n = n;
	x.cur = cur;
	x.flags = flags;
	x.out = out;
	nbx_buf_init(&x.a.r.blob, SIZE_MAX);
	nbx_buf_init(&x.a.enc, SIZE_MAX);
	rc = store__write(st, apply_batch, &x);
	for (size_t i = 0; i < x.a.nowned; i++)
		free(x.a.owned[i]);
	free(x.a.owned);
	crdt_record_fini(&x.a.r.rec);
	nbx_buf_fini(&x.a.r.blob);
	nbx_buf_fini(&x.a.enc);
	return rc;
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
		size_t off = 0;
		struct nbx_str peer;
		struct change c;
		size_t used;
		const msgpack_object *e;

		op = MDB_NEXT;
		msgpack_unpacked_init(&u);
		if (k.mv_size == 8 && msgpack_unpack_next(&u, d.mv_data,
		    d.mv_size, &off) == MSGPACK_UNPACK_SUCCESS &&
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

/* ------------------------------------------------------------------ */
/* Compaction                                                          */
/* ------------------------------------------------------------------ */

/* Opens env and databases again after a compaction swapped the file. */
static int
reopen(struct store *st)
{
	int rc;

	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, DB_COUNT)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, st->map_size)) != 0 ||
	    (rc = mdb_env_open(st->env, st->dir, st->env_flags, 0600)) != 0) {
		if (st->env)
			mdb_env_close(st->env);
		st->env = NULL;
		return store__fail(st, NBX_ESTORE, "%s: cannot reopen after "
		    "compaction: %s", st->dir, mdb_strerror(rc));
	}
	return open_dbis(st, st->dir);
}

/*
 * Rewrites the environment with MDB_CP_COMPACT into dir/compact.tmp, then
 * closes the environment, renames the copy over data.mdb and reopens.
 * Only live pages are copied, so bytes of purged values are gone from the
 * file.  The copy needs free space for the data in use; without it the
 * store is left as it was.  Processes that had the old file open (nbxq)
 * keep reading the old snapshot until they exit.
 */
int
store_compact(struct store *st, uint64_t *before, uint64_t *after)
{
	char tmp[4200], from[4300], to[4300];
	struct statvfs vfs;
	struct stat sb;
	struct store_meta m;
	uint64_t need, avail;
	int rc, fd;

	*before = *after = 0;
	if (st->readonly)
		return store__fail(st, NBX_EPERM, "store is read-only");
	if (st->rtxns > 0)
		return store__fail(st, NBX_EINVAL, "a read transaction is open");
	snprintf(tmp, sizeof(tmp), "%s/compact.tmp", st->dir);
	snprintf(from, sizeof(from), "%s/data.mdb", tmp);
	snprintf(to, sizeof(to), "%s/data.mdb", st->dir);
	if (stat(to, &sb) == 0)
		*before = (uint64_t)sb.st_size;
	if ((rc = store_meta_get(st, &m)) != 0)
		return rc;
	need = m.map_used + (1u << 20);
	if (statvfs(st->dir, &vfs) != 0)
		return store__fail(st, NBX_EIO, "%s: %s", st->dir,
		    strerror(errno));
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail < need)
		return store__fail(st, NBX_EIO, "%s: not enough free space to "
		    "compact: the copy needs %llu bytes, %llu are free",
		    st->dir, (unsigned long long)need,
		    (unsigned long long)avail);
	(void)unlink(from);
	(void)rmdir(tmp);
	if (mkdir(tmp, 0700) != 0)
		return store__fail(st, NBX_EIO, "%s: %s", tmp, strerror(errno));
	rc = mdb_env_copy2(st->env, tmp, MDB_CP_COMPACT);
	if (rc == 0 && (fd = open(from, O_RDONLY)) >= 0) {
		if (fsync(fd) != 0)
			rc = errno;
		close(fd);
	}
	if (rc != 0) {
		(void)unlink(from);
		(void)rmdir(tmp);
		return store__fail(st, rc == ENOSPC ? NBX_EIO : NBX_ESTORE,
		    "%s: compaction copy failed: %s", st->dir, mdb_strerror(rc));
	}
	mdb_env_close(st->env);
	st->env = NULL;
	if (rename(from, to) != 0) {
		rc = store__fail(st, NBX_EIO, "%s: %s", to, strerror(errno));
		(void)unlink(from);
		(void)rmdir(tmp);
		return reopen(st) == 0 ? rc : NBX_ESTORE;
	}
	(void)rmdir(tmp);
	if ((fd = open(st->dir, O_RDONLY | O_DIRECTORY)) >= 0) {
		(void)fsync(fd);	/* make the rename durable */
		close(fd);
	}
	if ((rc = reopen(st)) != 0)
		return rc;
	if (stat(to, &sb) == 0)
		*after = (uint64_t)sb.st_size;
	return 0;
}

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
	mdb_txn_abort(t->txn);
	t->st->rtxns--;
	free(t);
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
	if ((rc = mdb_get(t->txn, t->st->dbi[DB_RECORDS], &k, &d)) != 0)
		return store__mdb_code(t->st, rc, "get record");
	/* coll and id stay the caller's; everything else borrows from the txn */
	return crdt_record_decode(d.mv_data, d.mv_size, r);
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
	return crdt_record_decode(d.mv_data, d.mv_size, r);
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

int
store_log_next(struct store_rtxn *t, uint64_t after, uint64_t *seq,
    struct nbx_str *coll, struct nbx_str *id)
{
	uint8_t kb[8];
	MDB_cursor *cu;
	MDB_val k = { 8, kb }, d;
	int rc;

	if (after == UINT64_MAX)
		return NBX_ENOTFOUND;
	store__be64_put(kb, after + 1);
	if ((rc = mdb_cursor_open(t->txn, t->st->dbi[DB_LOG], &cu)) != 0)
		return store__mdb_code(t->st, rc, "cursor");
	rc = mdb_cursor_get(cu, &k, &d, MDB_SET_RANGE);
	mdb_cursor_close(cu);
	if (rc != 0)
		return store__mdb_code(t->st, rc, "next log entry");
	if (k.mv_size != 8 || store__rec_key_split(&d, coll, id) != 0)
		return NBX_EMALFORMED;
	*seq = store__be64_get(k.mv_data);
	return 0;
}

int
store_meta_get(struct store *st, struct store_meta *out)
{
	struct store_rtxn *t;
	MDB_stat ms;
	MDB_envinfo info;
	uint64_t next = 1;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = store_rtxn_begin(st, &t)) != 0)
		return rc;
	snprintf(out->node_id, sizeof(out->node_id), "%s", st->node_id);
	if ((rc = meta_get_u64(t->txn, st->dbi[DB_META], "epoch",
	    &out->epoch)) != 0 ||
	    (rc = meta_get_u64(t->txn, st->dbi[DB_META], "next_seq",
	    &next)) != 0 ||
	    (rc = meta_get_u64(t->txn, st->dbi[DB_META], "hlc",
	    &out->hlc)) != 0) {
		rc = store__mdb_code(st, rc, "read meta");
		goto out;
	}
	out->last_seq = next - 1;
	if (mdb_stat(t->txn, st->dbi[DB_RECORDS], &ms) == 0)
		out->records = ms.ms_entries;
	if (mdb_stat(t->txn, st->dbi[DB_QUARANTINE], &ms) == 0)
		out->quarantined = ms.ms_entries;
	if (mdb_env_info(st->env, &info) == 0 &&
	    mdb_env_stat(st->env, &ms) == 0) {
		out->map_size = info.me_mapsize;
		out->map_used = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
	}
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
	size_t off = 0;
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
	if (msgpack_unpack_next(&u, d.mv_data, d.mv_size, &off) !=
	    MSGPACK_UNPACK_SUCCESS || u.data.type != MSGPACK_OBJECT_ARRAY ||
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
		store__be64_put(len, d.mv_size);
		EVP_DigestUpdate(md, len, 8);
		EVP_DigestUpdate(md, d.mv_data, d.mv_size);
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
