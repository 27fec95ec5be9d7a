/*
 * store.c - LMDB persistence for one node: the environment and its named
 * databases, opening (and upgrading an older format), the
 * write-transaction runner that grows the map, and compaction.  Reading
 * is store_read.c's, the merge of change batches apply.c's.
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


#include "hlc.h"
#include "mpscan.h"
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

int
store__meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *v)
{
	MDB_val k = { strlen(name), (void *)name }, d;
	int rc = mdb_get(txn, dbi, &k, &d);

	if (rc == 0 && d.mv_size != 8)
		return MDB_CORRUPTED;
	if (rc == 0)
		*v = store__be64_get(d.mv_data);
	return rc;
}

int
store__meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t v)
{
	uint8_t b[8];
	MDB_val k = { strlen(name), (void *)name }, d = { 8, b };

	store__be64_put(b, v);
	return mdb_put(txn, dbi, &k, &d, 0);
}

/* ------------------------------------------------------------------ */
/* Open and close                                                      */
/* ------------------------------------------------------------------ */

/* The store's format into st->format (1 if it predates the key). */
static int
read_format(struct store *st, MDB_txn *txn, const char *dir)
{
	uint64_t f = 1;
	int rc = store__meta_get_u64(txn, st->dbi[DB_META], "format", &f);

	if (rc != 0 && rc != MDB_NOTFOUND)
		return store__mdb_code(st, rc, "read meta");
	if (f < 1 || f > STORE_FORMAT)
		return store__fail(st, NBX_ESTORE, "%s: store format %llu is "
		    "not one this nbx knows (%d or older): a newer nbx wrote "
		    "it", dir, (unsigned long long)f, STORE_FORMAT);
	st->format = (int)f;
	return 0;
}

/*
 * Upgrades to STORE_FORMAT in the opening transaction.  From format 1
 * every record value gets its log seq in front (from "logidx"), and
 * "logidx" is emptied; from 2 only the number moves (store_int.h).
 * Nothing is half done: a failure aborts the transaction and the store
 * stays as it was (the map must hold the larger values; nbxd says so if
 * it cannot).
 */
static int
upgrade(struct store *st, MDB_txn *txn, const char *dir)
{
	MDB_cursor *cu = NULL;
	MDB_val k, d, x;
	uint8_t key[KEY_MAX], *buf = NULL;
	size_t cap = 0;
	int rc, op = MDB_FIRST;

	if (st->format >= 2)
		goto done;	/* the records are as they should be */
	if ((rc = mdb_cursor_open(txn, st->dbi[DB_RECORDS], &cu)) != 0)
		goto out;
	while ((rc = mdb_cursor_get(cu, &k, &d, op)) == 0) {
		uint64_t seq = 0;

		op = MDB_NEXT;
		if (mdb_get(txn, st->dbi[DB_LOGIDX], &k, &x) == 0 &&
		    x.mv_size == 8)
			seq = store__be64_get(x.mv_data);
		if (d.mv_size + STORE_SEQ_BYTES > cap) {
			uint8_t *nb;

			cap = (d.mv_size + STORE_SEQ_BYTES) * 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				rc = ENOMEM;
				goto out;
			}
			buf = nb;
		}
		if (k.mv_size > KEY_MAX) {
			rc = MDB_CORRUPTED;
			goto out;
		}
		/* copies: the put rewrites the page k and d point into */
		memcpy(key, k.mv_data, k.mv_size);
		k.mv_data = key;
		store__be64_put(buf, seq);
		memcpy(buf + STORE_SEQ_BYTES, d.mv_data, d.mv_size);
		x.mv_size = d.mv_size + STORE_SEQ_BYTES;
		x.mv_data = buf;
		if ((rc = mdb_cursor_put(cu, &k, &x, MDB_CURRENT)) != 0)
			goto out;
		st->records_written = 1;
	}
	if (rc != MDB_NOTFOUND)
		goto out;
	if ((rc = mdb_drop(txn, st->dbi[DB_LOGIDX], 0)) != 0)
		goto out;
done:
	if ((rc = store__meta_put_u64(txn, st->dbi[DB_META], "format",
	    STORE_FORMAT)) != 0)
		goto out;
	st->format = STORE_FORMAT;
out:
	if (cu)
		mdb_cursor_close(cu);
	free(buf);
	if (rc == ENOMEM)
		return store__fail(st, NBX_ENOMEM, "%s: upgrading the store "
		    "format: out of memory", dir);
	if (rc != 0)
		return store__fail(st, rc == MDB_MAP_FULL ? NBX_EMAPFULL :
		    NBX_ESTORE, "%s: upgrading the store to format %d: %s%s",
		    dir, STORE_FORMAT, mdb_strerror(rc), rc == MDB_MAP_FULL ?
		    " (raise map_size_mb)" : "");
	return 0;
}

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
		if ((rc = read_format(st, txn, dir)) != 0)
			return rc;
		return st->format < STORE_FORMAT ? upgrade(st, txn, dir) : 0;
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
	    (rc = store__meta_put_u64(txn, st->dbi[DB_META], "epoch", epoch)) != 0 ||
	    (rc = store__meta_put_u64(txn, st->dbi[DB_META], "next_seq", 1)) != 0 ||
	    (rc = store__meta_put_u64(txn, st->dbi[DB_META], "hlc", 0)) != 0 ||
	    (rc = store__meta_put_u64(txn, st->dbi[DB_META], "format",
	    STORE_FORMAT)) != 0)
		return store__mdb_code(st, rc, "write meta");
	st->format = STORE_FORMAT;
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
		if ((rc = read_format(st, txn, dir)) != 0) {
			mdb_txn_abort(txn);
			return rc;
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
	free(st->hints);
	free(st->holders);
	free(st);
}

/* ------------------------------------------------------------------ */
/* Hints (store_int.h)                                                 */
/* ------------------------------------------------------------------ */

static int
hints_alloc(struct store *st)
{
	if (st->hints != NULL)
		return 0;
	st->hints = calloc(STORE_HINT_SLOTS, sizeof(*st->hints));
	st->holders = calloc(STORE_HINT_SLOTS, sizeof(*st->holders));
	if (st->hints == NULL || st->holders == NULL) {
		free(st->hints);
		free(st->holders);
		st->hints = st->holders = NULL;
		return NBX_ENOMEM;	/* no hints: egress loads every record */
	}
	return 0;
}

static void
hints_clear(struct store *st)
{
	if (st->hints != NULL) {
		memset(st->hints, 0, STORE_HINT_SLOTS * sizeof(*st->hints));
		memset(st->holders, 0, STORE_HINT_SLOTS * sizeof(*st->holders));
	}
}

/* The index + 1 of node id in hint_ids, added if `add`; 0 if none. */
static unsigned
hint_id(struct store *st, struct nbx_str id, int add)
{
	if (id.n == 0 || id.n > NBX_ID_MAX)
		return 0;
	for (unsigned i = 0; i < st->nhint_ids; i++)
		if (strlen(st->hint_ids[i]) == id.n &&
		    memcmp(st->hint_ids[i], id.p, id.n) == 0)
			return i + 1;
	if (!add || st->nhint_ids == STORE_HINT_AUTHORS)
		return 0;
	memcpy(st->hint_ids[st->nhint_ids], id.p, id.n);
	st->hint_ids[st->nhint_ids][id.n] = '\0';
	return ++st->nhint_ids;
}

void
store__hint_set(struct store *st, uint64_t seq, struct nbx_str author)
{
	if (hints_alloc(st) != 0)
		return;
	st->hints[seq % STORE_HINT_SLOTS] = seq << 8 | hint_id(st, author, 1);
	st->holders[seq % STORE_HINT_SLOTS] = 0;
}

void
store__holder_add(struct store *st, uint64_t seq, struct nbx_str peer)
{
	size_t slot = seq % STORE_HINT_SLOTS;
	unsigned who;

	if (seq >= (uint64_t)1 << 56 || hints_alloc(st) != 0 ||
	    (who = hint_id(st, peer, 1)) == 0)
		return;
	if (st->hints[slot] >> 8 != seq) {	/* the slot was another seq's */
		st->hints[slot] = seq << 8;
		st->holders[slot] = 0;
	}
	st->holders[slot] |= (uint64_t)1 << (who - 1);
}

int
store_log_peer_has(struct store *st, uint64_t seq, struct nbx_str peer)
{
	size_t slot = seq % STORE_HINT_SLOTS;
	unsigned who;

	if (st->hints == NULL || seq >= (uint64_t)1 << 56 ||
	    st->hints[slot] >> 8 != seq || (who = hint_id(st, peer, 0)) == 0)
		return 0;
	return (st->hints[slot] & 0xff) == who ||
	    (st->holders[slot] >> (who - 1) & 1) != 0;
}

uint64_t
store_generation(const struct store *st)
{
	return st->gen;
}

const char *
store_last_error(const struct store *st)
{
	return st->err[0] ? st->err : "no error";
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

int
store__unpack(msgpack_unpacked *u, const MDB_val *d)
{
	/* every count backed by bytes: msgpack-c reserves what a header
	   declares, and a damaged value may declare anything */
	const struct mpscan_limits lim = { 8, UINT32_MAX, UINT32_MAX,
	    UINT32_MAX, d->mv_size };
	size_t size, off = 0;

	if (mpscan_object(d->mv_data, d->mv_size, &lim, &size) != 0 ||
	    msgpack_unpack_next(u, d->mv_data, d->mv_size, &off) !=
	    MSGPACK_UNPACK_SUCCESS)
		return NBX_EMALFORMED;
	return 0;
}

void
store__map_get(struct store *st, uint64_t *size, uint64_t *used)
{
	MDB_envinfo info;
	MDB_stat ms;

	*size = *used = 0;
	if (mdb_env_info(st->env, &info) == 0 &&
	    mdb_env_stat(st->env, &ms) == 0) {
		*size = info.me_mapsize;
		*used = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
	}
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
		st->records_written = 0;
		rc = fn(txn, arg);
		if (rc == 0) {
			int mrc = mdb_txn_commit(txn);

			rc = (mrc == EIO || mrc == ENOSPC) ? commit_failed(st,
			    mrc) : store__mdb_code(st, mrc, "commit");
			/* also after a failed commit: cheap */
			st->gen += st->records_written != 0;
		} else {
			mdb_txn_abort(txn);
		}
		if (rc != 0)	/* see store_int.h */
			hints_clear(st);
		if (rc != NBX_EMAPFULL)
			return rc;
		if ((rc = grow_map(st)) != 0)
			return rc;
	}
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
	store__map_get(st, &m.map_size, &m.map_used);
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
