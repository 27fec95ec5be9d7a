/*
 * audit.c - the disclosure log: which peer was sent which fields (names
 * and versions, never values) of which record, and when.  It answers
 * "who received this person's data" and tells erasure where to go.
 *
 *   audit      aseq (u64 BE) -> [time, peer, coll, id, items,
 *                                base_hlc, base_origin]
 *   disclosed  coll \0 id \0 peer -> time of the last disclosure (u64 BE)
 *
 * An item is [kind, field, elem, hlc, origin], or, for a version with an
 * empty elem made by base_origin at base_hlc or later, [kind, field, d]
 * with hlc = base_hlc + d.  The changes of a record written at once
 * (an import) are one node's, a few clock ticks apart: about 11 bytes
 * an item instead of 25.  Entries written before format 3 have five
 * members and only full items; they are read as they are.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpbuf.h"
#include "mpwrite.h"
#include "nbx_err.h"
#include "store_int.h"

struct disclose_args {
	struct store *st;
	struct nbx_str peer;
	const struct store_change_src *src;
	uint64_t now_ms;
	struct nbx_buf b;	/* one audit entry */
	struct change *rec;	/* the current record's changes */
	size_t nrec, rec_cap;
	MDB_cursor *audit, *disclosed;	/* disclose_txn's, for one attempt */
};

/* The oldest hlc among x->rec's versions made by the first one's origin. */
static uint64_t
base_hlc(const struct disclose_args *x)
{
	uint64_t h = x->rec[0].hlc;

	for (size_t i = 1; i < x->nrec; i++)
		if (x->rec[i].hlc < h &&
		    nbx_str_eq(x->rec[i].origin, x->rec[0].origin))
			h = x->rec[i].hlc;
	return h;
}

/* The audit entry and "disclosed" key of the record in x->rec. */
static int
put_entry(struct disclose_args *x, uint64_t aseq)
{
	struct store *st = x->st;
	const struct change *c0 = &x->rec[0];
	uint64_t base = base_hlc(x);
	struct mpwrite w;
	uint8_t kb[8], key[KEY_MAX + 1 + NBX_ID_MAX], tb[8];
	MDB_val k = { 8, kb }, d;
	size_t klen;
	int rc;

	x->b.len = 0;
	mpwrite_init(&w, &x->b);
	mpwrite_array(&w, 7);
	mpwrite_uint(&w, x->now_ms);
	mpwrite_str(&w, x->peer);
	mpwrite_str(&w, c0->coll);
	mpwrite_str(&w, c0->id);
	mpwrite_array(&w, (uint32_t)x->nrec);
	for (size_t i = 0; i < x->nrec; i++) {
		const struct change *c = &x->rec[i];

		if (c->elem.n == 0 && c->hlc >= base && c0->origin.n > 0 &&
		    nbx_str_eq(c->origin, c0->origin)) {
			mpwrite_array(&w, 3);
			mpwrite_uint(&w, (uint64_t)c->kind);
			mpwrite_str(&w, c->field);
			mpwrite_uint(&w, c->hlc - base);
			continue;
		}
		mpwrite_array(&w, 5);
		mpwrite_uint(&w, (uint64_t)c->kind);
		mpwrite_str(&w, c->field);
		mpwrite_str(&w, c->elem);
		mpwrite_uint(&w, c->hlc);
		mpwrite_str(&w, c->origin);
	}
	mpwrite_uint(&w, base);
	mpwrite_str(&w, c0->origin);
	if (w.err != 0)
		return w.err;
	store__be64_put(kb, aseq);
	d.mv_size = x->b.len;
	d.mv_data = x->b.p;
	if ((rc = mdb_cursor_put(x->audit, &k, &d, MDB_APPEND)) != 0)
		return store__mdb_code(st, rc, "put audit");
	klen = store__rec_key(key, c0->coll, c0->id);
	key[klen++] = 0;
	memcpy(key + klen, x->peer.p, x->peer.n);
	klen += x->peer.n;
	k.mv_size = klen;
	k.mv_data = key;
	store__be64_put(tb, x->now_ms);
	d.mv_size = 8;
	d.mv_data = tb;
	if ((rc = mdb_cursor_put(x->disclosed, &k, &d, 0)) != 0)
		return store__mdb_code(st, rc, "put disclosed");
	return 0;
}

/*
 * Takes the changes from the source one at a time, so that a batch is
 * never held decoded in memory: only the record being grouped is.  Each
 * change is read straight into the record's slots; the first change of
 * the next record moves to slot 0 once the record before is written.
 */
static int
disclose_txn(MDB_txn *txn, void *arg)
{
	struct disclose_args *x = arg;
	MDB_val k, d;
	uint64_t aseq = 1;
	struct change *c;
	int rc;

	/* closed by the transaction's end */
	if ((rc = mdb_cursor_open(txn, x->st->dbi[DB_AUDIT], &x->audit)) != 0 ||
	    (rc = mdb_cursor_open(txn, x->st->dbi[DB_DISCLOSED],
	    &x->disclosed)) != 0)
		return store__mdb_code(x->st, rc, "cursor");
	if (mdb_cursor_get(x->audit, &k, &d, MDB_LAST) == 0 && k.mv_size == 8)
		aseq = store__be64_get(k.mv_data) + 1;
	x->src->rewind(x->src->arg);	/* a retry after the map grew */
	x->nrec = 0;
	for (;;) {
		rc = change_array_room(&x->rec, &x->rec_cap, x->nrec);
		if (rc != 0)
			return rc;
		c = &x->rec[x->nrec];
		if ((rc = x->src->next(x->src->arg, c)) != 1)
			break;
		if (c->coll.n > NBX_NAME_MAX || c->id.n > NBX_RECID_MAX)
			return NBX_EINVAL;
		if (x->nrec > 0 && !change_same_record(c, &x->rec[0])) {
			if ((rc = put_entry(x, aseq++)) != 0)
				return rc;
			change_copy(&x->rec[0], c);
			x->nrec = 0;
		}
		x->nrec++;
	}
	if (rc != 0)
		return rc;
	return x->nrec > 0 ? put_entry(x, aseq) : 0;
}

int
store_disclose_from(struct store *st, struct nbx_str peer,
    const struct store_change_src *src, uint64_t now_ms)
{
	struct disclose_args x = { st, peer, src, now_ms, { 0 }, NULL, 0, 0, NULL, NULL };
	int rc;

	if (peer.n == 0 || peer.n > NBX_ID_MAX)
		return NBX_EINVAL;
	nbx_buf_init(&x.b, SIZE_MAX);
	rc = store__write(st, disclose_txn, &x);
	nbx_buf_fini(&x.b);
	free(x.rec);
	return rc;
}

/* store_disclose's source: an array. */
struct array_src {
	const struct change *chs;
	size_t n, next;
};

static int
array_next(void *arg, struct change *c)
{
	struct array_src *a = arg;

	if (a->next == a->n)
		return 0;
	change_copy(c, &a->chs[a->next++]);
	return 1;
}

static void
array_rewind(void *arg)
{
	((struct array_src *)arg)->next = 0;
}

int
store_disclose(struct store *st, struct nbx_str peer, const struct change *chs,
    size_t n, uint64_t now_ms)
{
	struct array_src a = { chs, n, 0 };
	struct store_change_src src = { array_next, array_rewind, &a };

	if (n == 0)
		return 0;
	return store_disclose_from(st, peer, &src, now_ms);
}

/* The "disclosed" key prefix of a record: coll \0 id \0. */
static size_t
disclosed_prefix(uint8_t *key, struct nbx_str coll, struct nbx_str id)
{
	size_t n = store__rec_key(key, coll, id);

	key[n++] = 0;
	return n;
}

int
store_disclosed(struct store_rtxn *t, struct nbx_str coll, struct nbx_str id,
    struct nbx_str peer)
{
	uint8_t key[KEY_MAX + 1 + NBX_ID_MAX];
	MDB_val k, d;
	size_t n;

	if (coll.n > NBX_NAME_MAX || id.n > NBX_RECID_MAX || peer.n > NBX_ID_MAX)
		return 0;
	n = disclosed_prefix(key, coll, id);
	memcpy(key + n, peer.p, peer.n);
	k.mv_size = n + peer.n;
	k.mv_data = key;
	return mdb_get(t->txn, t->st->dbi[DB_DISCLOSED], &k, &d) == 0;
}

int
store_disclosed_peers(struct store_rtxn *t, struct nbx_str coll,
    struct nbx_str id, int (*fn)(void *arg, struct nbx_str peer,
    uint64_t time_ms), void *arg)
{
	return store__disclosed_peers(t->st, t->txn, coll, id, fn, arg);
}

int
store__disclosed_peers(struct store *st, MDB_txn *txn, struct nbx_str coll,
    struct nbx_str id, int (*fn)(void *arg, struct nbx_str peer,
    uint64_t time_ms), void *arg)
{
	uint8_t key[KEY_MAX + 1];
	MDB_cursor *cu;
	MDB_val k, d;
	size_t plen;
	int rc, op = MDB_SET_RANGE;

	if (coll.n > NBX_NAME_MAX || id.n > NBX_RECID_MAX)
		return 0;
	plen = disclosed_prefix(key, coll, id);
	k.mv_size = plen;
	k.mv_data = key;
	if ((rc = mdb_cursor_open(txn, st->dbi[DB_DISCLOSED], &cu)) != 0)
		return store__mdb_code(st, rc, "cursor");
	while ((rc = mdb_cursor_get(cu, &k, &d, op)) == 0) {
		struct nbx_str peer;

		op = MDB_NEXT;
		if (k.mv_size <= plen || memcmp(k.mv_data, key, plen) != 0 ||
		    d.mv_size != 8)
			break;
		peer.p = (const char *)k.mv_data + plen;
		peer.n = (uint32_t)(k.mv_size - plen);
		if ((rc = fn(arg, peer, store__be64_get(d.mv_data))) != 0)
			break;
	}
	mdb_cursor_close(cu);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
store_audit_next(struct store_rtxn *t, uint64_t after,
    struct store_audit_entry *out)
{
	uint8_t kb[8];
	MDB_cursor *cu;
	MDB_val k = { 8, kb }, d;
	msgpack_unpacked u;
	const msgpack_object *e, *items;
	struct nbx_str base_origin = { NULL, 0 };
	uint64_t base = 0;
	size_t off = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (after == UINT64_MAX)
		return NBX_ENOTFOUND;
	store__be64_put(kb, after + 1);
	if ((rc = mdb_cursor_open(t->txn, t->st->dbi[DB_AUDIT], &cu)) != 0)
		return store__mdb_code(t->st, rc, "cursor");
	rc = mdb_cursor_get(cu, &k, &d, MDB_SET_RANGE);
	mdb_cursor_close(cu);
	if (rc != 0)
		return store__mdb_code(t->st, rc, "next audit entry");
	out->aseq = store__be64_get(k.mv_data);
	msgpack_unpacked_init(&u);
	rc = NBX_EMALFORMED;
	if (msgpack_unpack_next(&u, d.mv_data, d.mv_size, &off) !=
	    MSGPACK_UNPACK_SUCCESS || u.data.type != MSGPACK_OBJECT_ARRAY ||
	    (u.data.via.array.size != 5 && u.data.via.array.size != 7))
		goto out;
	e = u.data.via.array.ptr;
	items = &e[4];
	if (nbx_mp_get_u64(&e[0], &out->time_ms) != 0 ||
	    nbx_mp_get_str(&e[1], NBX_ID_MAX, &out->peer) != 0 ||
	    nbx_mp_get_str(&e[2], NBX_NAME_MAX, &out->coll) != 0 ||
	    nbx_mp_get_str(&e[3], NBX_RECID_MAX, &out->id) != 0 ||
	    items->type != MSGPACK_OBJECT_ARRAY)
		goto out;
	if (u.data.via.array.size == 7 &&
	    (nbx_mp_get_u64(&e[5], &base) != 0 ||
	    nbx_mp_get_str(&e[6], NBX_ID_MAX, &base_origin) != 0))
		goto out;
	for (uint32_t i = 0; i < items->via.array.size; i++) {
		const msgpack_object *it = &items->via.array.ptr[i];
		const msgpack_object *f;
		struct store_audit_item *o;
		uint64_t kind, dh;

		if (out->nitems == STORE_AUDIT_FIELDS) {
			out->more++;
			continue;
		}
		o = &out->items[out->nitems];
		if (it->type != MSGPACK_OBJECT_ARRAY)
			goto out;
		f = it->via.array.ptr;
		if (it->via.array.size == 3 && base_origin.n > 0) {
			/* compact: elem empty, made by base_origin */
			if (nbx_mp_get_u64(&f[0], &kind) != 0 ||
			    nbx_mp_get_str(&f[1], NBX_NAME_MAX,
			    &o->field) != 0 ||
			    nbx_mp_get_u64(&f[2], &dh) != 0 ||
			    dh > UINT64_MAX - base)
				goto out;
			o->elem = (struct nbx_str){ "", 0 };
			o->hlc = base + dh;
			o->origin = base_origin;
		} else if (it->via.array.size != 5 ||
		    nbx_mp_get_u64(&f[0], &kind) != 0 ||
		    nbx_mp_get_str(&f[1], NBX_NAME_MAX, &o->field) != 0 ||
		    nbx_mp_get_str(&f[2], NBX_STR_MAX, &o->elem) != 0 ||
		    nbx_mp_get_u64(&f[3], &o->hlc) != 0 ||
		    nbx_mp_get_str(&f[4], NBX_ID_MAX, &o->origin) != 0)
			goto out;
		o->kind = (uint32_t)kind;
		out->nitems++;
	}
	rc = 0;
out:
	msgpack_unpacked_destroy(&u);
	return rc;
}
