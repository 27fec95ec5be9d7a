/*
 * peers.c - peers added at run time with `nbxctl peer add`, kept in the
 * store so they survive restarts.  Static peers from the config file are
 * not stored here.
 *
 *   peers  id -> [address, pin (bin 32 or nil)]
 */
#include <string.h>

#include "mpbuf.h"
#include "mpwrite.h"
#include "nbx_err.h"
#include "store_int.h"

#define ADDRESS_MAX 300

struct peer_args {
	struct store *st;
	const struct store_peer *p;
	struct nbx_str id;
	struct nbx_buf b;
};

static int
peer_put_txn(MDB_txn *txn, void *arg)
{
	struct peer_args *x = arg;
	MDB_val k = { x->p->id.n, (void *)x->p->id.p };
	MDB_val d = { x->b.len, x->b.p };

	return store__mdb_code(x->st, mdb_put(txn, x->st->dbi[DB_PEERS], &k, &d,
	    0), "put peer");
}

int
store_peer_put(struct store *st, const struct store_peer *p)
{
	struct peer_args x = { st, p, { 0 }, { 0 } };
	struct mpwrite w;
	int rc;

	if (!nbx_node_id_valid(p->id) || p->address.n == 0 ||
	    p->address.n > ADDRESS_MAX)
		return NBX_EINVAL;
	nbx_buf_init(&x.b, 512);
	mpwrite_init(&w, &x.b);
	mpwrite_array(&w, 2);
	mpwrite_str(&w, p->address);
	if (p->has_pin)
		mpwrite_bin(&w, p->pin, 32);
	else
		mpwrite_nil(&w);
	if (w.err != 0) {
		nbx_buf_fini(&x.b);
		return w.err;
	}
	rc = store__write(st, peer_put_txn, &x);
	nbx_buf_fini(&x.b);
	return rc;
}

static int
peer_del_txn(MDB_txn *txn, void *arg)
{
	struct peer_args *x = arg;
	MDB_val k = { x->id.n, (void *)x->id.p };
	int rc;

	rc = mdb_del(txn, x->st->dbi[DB_PEERS], &k, NULL);
	if (rc != 0)
		return store__mdb_code(x->st, rc, "delete peer");
	rc = mdb_del(txn, x->st->dbi[DB_CURSORS], &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return store__mdb_code(x->st, rc, "delete cursor");
	return 0;
}

int
store_peer_del(struct store *st, struct nbx_str id)
{
	struct peer_args x = { st, NULL, id, { 0 } };

	if (id.n == 0 || id.n > NBX_ID_MAX)
		return NBX_ENOTFOUND;
	return store__write(st, peer_del_txn, &x);
}

int
store_peer_next(struct store_rtxn *t, struct nbx_str after,
    struct store_peer *out)
{
	char key[NBX_ID_MAX + 2];
	MDB_cursor *cu;
	MDB_val k, d;
	msgpack_unpacked u;
	const msgpack_object *e;
	int rc;

	memset(out, 0, sizeof(*out));
	if (after.n > NBX_ID_MAX)
		return NBX_ENOTFOUND;
	memcpy(key, after.p, after.n);
	k.mv_size = after.n;
	if (after.n)
		key[k.mv_size++] = 0;	/* smallest key after `after` */
	k.mv_data = key;
	if ((rc = mdb_cursor_open(t->txn, t->st->dbi[DB_PEERS], &cu)) != 0)
		return store__mdb_code(t->st, rc, "cursor");
	rc = k.mv_size ? mdb_cursor_get(cu, &k, &d, MDB_SET_RANGE) :
	    mdb_cursor_get(cu, &k, &d, MDB_FIRST);
	mdb_cursor_close(cu);
	if (rc != 0)
		return store__mdb_code(t->st, rc, "next peer");
	out->id.p = k.mv_data;
	out->id.n = (uint32_t)k.mv_size;
	msgpack_unpacked_init(&u);
	rc = NBX_EMALFORMED;
	if (store__unpack(&u, &d) != 0 || u.data.type != MSGPACK_OBJECT_ARRAY ||
	    u.data.via.array.size != 2)
		goto out;
	e = u.data.via.array.ptr;
	if (nbx_mp_get_str(&e[0], ADDRESS_MAX, &out->address) != 0)
		goto out;
	if (e[1].type == MSGPACK_OBJECT_BIN && e[1].via.bin.size == 32) {
		memcpy(out->pin, e[1].via.bin.ptr, 32);
		out->has_pin = 1;
	} else if (e[1].type != MSGPACK_OBJECT_NIL) {
		goto out;
	}
	rc = 0;
out:
	msgpack_unpacked_destroy(&u);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Full passes for peers that may lack their own changes               */
/* ------------------------------------------------------------------ */

/* meta key "resync/<peer>": present (1) while a full pass is owed */
static void
resync_key(char *k, struct nbx_str peer)
{
	memcpy(k, "resync/", 7);
	memcpy(k + 7, peer.p, peer.n);
	k[7 + peer.n] = '\0';
}

int
store_peer_resync_get(struct store *st, struct nbx_str peer, int *owed)
{
	char k[8 + NBX_ID_MAX];
	struct store_rtxn *t;
	uint64_t v = 0;
	int rc;

	*owed = 0;
	if (!nbx_node_id_valid(peer))
		return NBX_EINVAL;
	resync_key(k, peer);
	if ((rc = store_rtxn_begin(st, &t)) != 0)
		return rc;
	rc = store__meta_get_u64(t->txn, st->dbi[DB_META], k, &v);
	store_rtxn_end(t);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return store__mdb_code(st, rc, "read resync flag");
	*owed = v != 0;
	return 0;
}

struct resync_args {
	struct store *st;
	const char *key;
	int owed;
};

static int
resync_txn(MDB_txn *txn, void *arg)
{
	struct resync_args *x = arg;
	MDB_val k = { strlen(x->key), (void *)x->key };
	int rc;

	if (x->owed)
		rc = store__meta_put_u64(txn, x->st->dbi[DB_META], x->key, 1);
	else if ((rc = mdb_del(txn, x->st->dbi[DB_META], &k, NULL)) ==
	    MDB_NOTFOUND)
		rc = 0;
	return store__mdb_code(x->st, rc, "write resync flag");
}

int
store_peer_resync_set(struct store *st, struct nbx_str peer, int owed)
{
	char k[8 + NBX_ID_MAX];
	struct resync_args x = { st, k, owed };

	if (!nbx_node_id_valid(peer))
		return NBX_EINVAL;
	resync_key(k, peer);
	return store__write(st, resync_txn, &x);
}
