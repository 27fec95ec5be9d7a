/*
 * audit.c - the disclosure log: which peer was sent which fields (names
 * and versions, never values) of which record, and when.  It answers
 * "who received this person's data" and tells erasure where to go.
 *
 *   audit      aseq (u64 BE) -> one batch sent to a peer:
 *                [time, peer, names, records]
 *   disclosed  coll \0 id \0 peer -> time of the last disclosure (u64 BE)
 *
 * Each record of a batch has its own aseq: the entry's key plus its
 * place in `records`, so the entry after it starts at key + the count.
 * A record is [coll, id, base_hlc, base_origin, items]; an item is
 * [kind, field, elem, hlc, origin], or, for a version with an empty elem
 * made by base_origin at base_hlc or later, [kind, field, d] with hlc =
 * base_hlc + d.  Collections, fields and origins are indexes into the
 * entry's `names`: a batch names the same few fields thousands of times.
 * A bench record takes about 65 bytes of the log instead of 164 (the
 * entries of one record each before), and a batch one put instead of one
 * a record.
 *
 * Entries of stores before format 5 hold one record each and spell their
 * names: [time, peer, coll, id, items, base_hlc, base_origin] (format 3
 * and 4), or [time, peer, coll, id, items] with full items only (format
 * 2).  They are read as they are.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpbuf.h"
#include "mpread.h"
#include "mpwrite.h"
#include "nbx_err.h"
#include "store_int.h"

/* The arity of a batch entry; older entries have 5 or 7 members. */
#define BATCH_ARITY	4

/* Places in a record whose names are remembered (disclose_args.memo). */
#define NAME_MEMO	16

/* A name of the entry being written: its bytes in names, its index. */
struct name_slot {
	uint32_t off, len, idx;		/* len UINT32_MAX: empty slot */
};

struct disclose_args {
	struct store *st;
	struct nbx_str peer;
	const struct store_change_src *src;
	uint64_t now_ms;
	struct nbx_buf b;	/* the batch's entry */
	struct nbx_buf recs;	/* its records, before b gets them */
	struct nbx_buf names;	/* its names array's items, msgpack strs */
	struct name_slot *slots;	/* open addressing over names */
	uint32_t nslots, nnames, nrecs;
	/* the slot each name of the record before went to, by its place in
	   the record (coll, origin, each item's field): the next record most
	   often names the same, and a comparison is cheaper than a hash */
	uint32_t memo[2 + NAME_MEMO];
	struct change *rec;	/* the current record's changes */
	size_t nrec, rec_cap;
	MDB_cursor *audit, *disclosed;	/* disclose_txn's, for one attempt */
};

/*
 * A name's hash from its length and its first and last bytes, a load or
 * two each: the names of a batch are few and short, and this runs for
 * every item.
 */
static uint32_t
name_hash(struct nbx_str s)
{
	const uint8_t *p = (const uint8_t *)s.p;
	uint64_t a = 0, b = 0;
	uint32_t a4, b4;

	if (s.n >= 8) {
		memcpy(&a, p, 8);
		memcpy(&b, p + s.n - 8, 8);
	} else if (s.n >= 4) {
		memcpy(&a4, p, 4);
		memcpy(&b4, p + s.n - 4, 4);
		a = a4;
		b = b4;
	} else if (s.n > 0) {
		a = (uint64_t)p[0] | (uint64_t)p[s.n / 2] << 8 |
		    (uint64_t)p[s.n - 1] << 16;
	}
	a = (a ^ (b * UINT64_C(0x9e3779b97f4a7c15)) ^ s.n) *
	    UINT64_C(0xff51afd7ed558ccd);
	return (uint32_t)(a >> 32);
}

/* Empties the name table (a retry, or a new entry). */
static void
names_reset(struct disclose_args *x)
{
	x->names.len = 0;
	x->nnames = 0;
	for (uint32_t i = 0; i < x->nslots; i++)
		x->slots[i].len = UINT32_MAX;
	memset(x->memo, 0xff, sizeof(x->memo));
}

/* Doubles the table (or makes the first one) and places every name again. */
static int
names_grow(struct disclose_args *x)
{
	uint32_t n = x->nslots ? 2 * x->nslots : 64;
	struct name_slot *s = malloc(n * sizeof(*s)), *old = x->slots;

	if (s == NULL)
		return NBX_ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		s[i].len = UINT32_MAX;
	for (uint32_t i = 0; i < x->nslots; i++) {
		struct nbx_str name = { (const char *)x->names.p + old[i].off,
		    old[i].len };
		uint32_t h;

		if (old[i].len == UINT32_MAX)
			continue;
		for (h = name_hash(name) & (n - 1); s[h].len != UINT32_MAX;
		    h = (h + 1) & (n - 1))
			;
		s[h] = old[i];
	}
	free(old);
	x->slots = s;
	x->nslots = n;
	memset(x->memo, 0xff, sizeof(x->memo));	/* the slots moved */
	return 0;
}

/* 1 if slot h holds name. */
static int
slot_is(const struct disclose_args *x, uint32_t h, struct nbx_str name)
{
	const struct name_slot *e = &x->slots[h];

	/* an empty slot's length, UINT32_MAX, is no name's */
	return nbx_str_eq((struct nbx_str){ (const char *)x->names.p + e->off,
	    e->len }, name);
}

/*
 * The index of name in the entry's names, added if new; -1: no memory.
 * *memo: the slot this place in a record named last (UINT32_MAX: none).
 */
static int64_t
name_index(struct disclose_args *x, struct nbx_str name, uint32_t *memo)
{
	struct mpwrite w;
	uint32_t h;

	if (*memo < x->nslots && slot_is(x, *memo, name))
		return x->slots[*memo].idx;
	if (2 * (x->nnames + 1) > x->nslots && names_grow(x) != 0)
		return -1;
	for (h = name_hash(name) & (x->nslots - 1);
	    x->slots[h].len != UINT32_MAX; h = (h + 1) & (x->nslots - 1))
		if (slot_is(x, h, name)) {
			*memo = h;
			return x->slots[h].idx;
		}
	/* names holds the entry's names array as written, header and all */
	mpwrite_init(&w, &x->names);
	mpwrite_str(&w, name);
	if (w.err != 0 || x->names.len > UINT32_MAX)
		return -1;
	x->slots[h].off = (uint32_t)(x->names.len - name.n);
	x->slots[h].len = name.n;
	x->slots[h].idx = x->nnames;
	*memo = h;
	return x->nnames++;
}

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

/* Writes name's index (w->err on no memory). */
static void
put_name(struct mpwrite *w, struct disclose_args *x, struct nbx_str name,
    uint32_t *memo)
{
	int64_t i = name_index(x, name, memo);

	if (i < 0) {
		if (w->err == 0)
			w->err = NBX_ENOMEM;
		return;
	}
	mpwrite_uint(w, (uint64_t)i);
}

/* The record in x->rec: into the entry's records, and its "disclosed" key. */
static int
add_record(struct disclose_args *x)
{
	struct store *st = x->st;
	const struct change *c0 = &x->rec[0];
	uint64_t base = base_hlc(x);
	struct mpwrite w;
	uint8_t key[KEY_MAX + 1 + NBX_ID_MAX], tb[8];
	MDB_val k, d;
	size_t klen;
	int rc;

	mpwrite_init(&w, &x->recs);
	mpwrite_array(&w, 5);
	put_name(&w, x, c0->coll, &x->memo[0]);
	mpwrite_str(&w, c0->id);
	mpwrite_uint(&w, base);
	put_name(&w, x, c0->origin, &x->memo[1]);
	mpwrite_array(&w, (uint32_t)x->nrec);
	for (size_t i = 0; i < x->nrec; i++) {
		const struct change *c = &x->rec[i];
		uint32_t *fm = &x->memo[2 + (i < NAME_MEMO ? i : NAME_MEMO - 1)];

		if (c->elem.n == 0 && c->hlc >= base && c0->origin.n > 0 &&
		    nbx_str_eq(c->origin, c0->origin)) {
			mpwrite_array(&w, 3);
			mpwrite_uint(&w, (uint64_t)c->kind);
			put_name(&w, x, c->field, fm);
			mpwrite_uint(&w, c->hlc - base);
			continue;
		}
		mpwrite_array(&w, 5);
		mpwrite_uint(&w, (uint64_t)c->kind);
		put_name(&w, x, c->field, fm);
		mpwrite_str(&w, c->elem);
		mpwrite_uint(&w, c->hlc);
		put_name(&w, x, c->origin, &x->memo[1]);
	}
	if (w.err != 0)
		return w.err;
	x->nrecs++;
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

/* The batch's entry, from its names and records, at aseq. */
static int
put_entry(struct disclose_args *x, uint64_t aseq)
{
	struct mpwrite w;
	uint8_t kb[8];
	MDB_val k = { 8, kb }, d;
	int rc;

	x->b.len = 0;
	mpwrite_init(&w, &x->b);
	mpwrite_array(&w, BATCH_ARITY);
	mpwrite_uint(&w, x->now_ms);
	mpwrite_str(&w, x->peer);
	mpwrite_array(&w, x->nnames);
	if (w.err == 0 && (rc = nbx_buf_append(&x->b, x->names.p,
	    x->names.len)) != 0)
		return rc;
	mpwrite_array(&w, x->nrecs);
	if (w.err == 0 && (rc = nbx_buf_append(&x->b, x->recs.p,
	    x->recs.len)) != 0)
		return rc;
	if (w.err != 0)
		return w.err;
	store__be64_put(kb, aseq);
	d.mv_size = x->b.len;
	d.mv_data = x->b.p;
	if ((rc = mdb_cursor_put(x->audit, &k, &d, MDB_APPEND)) != 0)
		return store__mdb_code(x->st, rc, "put audit");
	return 0;
}

/*
 * The number of records in an audit value: a batch entry's count, 1 for
 * an older entry; 0 if it does not read as either.
 */
uint64_t
store__audit_records(const MDB_val *d)
{
	struct mpread m = { d->mv_data, d->mv_size, 0 };
	struct nbx_str s;
	uint64_t v;
	uint32_t n, nn;

	if (mpread_array(&m, &n) != 0)
		return 0;
	if (n != BATCH_ARITY)
		return n == 5 || n == 7;
	if (mpread_u64(&m, &v) != 0 || mpread_str(&m, 0, NBX_ID_MAX, &s) != 0 ||
	    mpread_array(&m, &nn) != 0)
		return 0;
	for (uint32_t i = 0; i < nn; i++)
		if (mpread_str(&m, 0, NBX_STR_MAX, &s) != 0)
			return 0;
	return mpread_array(&m, &n) == 0 ? n : 0;
}

/*
 * Takes the changes from the source one at a time, so that a batch is
 * never held decoded in memory: only the record being grouped is.  Each
 * change is read straight into the record's slots; the first change of
 * the next record moves to slot 0 once the record before is written.
 * The batch's records go into one entry, put at the end.
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
	/* after the last entry's records; one that does not read counts 1,
	   so the keys still go up (the reader reports it) */
	if (mdb_cursor_get(x->audit, &k, &d, MDB_LAST) == 0 && k.mv_size == 8) {
		uint64_t n = store__audit_records(&d);

		aseq = store__be64_get(k.mv_data) + (n ? n : 1);
	}
	x->src->rewind(x->src->arg);	/* a retry after the map grew */
	x->nrec = 0;
	x->nrecs = 0;
	x->recs.len = 0;
	names_reset(x);
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
			if ((rc = add_record(x)) != 0)
				return rc;
			change_copy(&x->rec[0], c);
			x->nrec = 0;
		}
		x->nrec++;
	}
	if (rc != 0)
		return rc;
	if (x->nrec > 0 && (rc = add_record(x)) != 0)
		return rc;
	return x->nrecs > 0 ? put_entry(x, aseq) : 0;
}

int
store_disclose_from(struct store *st, struct nbx_str peer,
    const struct store_change_src *src, uint64_t now_ms)
{
	struct disclose_args x;
	int rc;

	if (peer.n == 0 || peer.n > NBX_ID_MAX)
		return NBX_EINVAL;
	memset(&x, 0, sizeof(x));
	x.st = st;
	x.peer = peer;
	x.src = src;
	x.now_ms = now_ms;
	nbx_buf_init(&x.b, SIZE_MAX);
	nbx_buf_init(&x.recs, SIZE_MAX);
	nbx_buf_init(&x.names, SIZE_MAX);
	rc = store__write(st, disclose_txn, &x);
	nbx_buf_fini(&x.b);
	nbx_buf_fini(&x.recs);
	nbx_buf_fini(&x.names);
	free(x.slots);
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

/*
 * A name of a record: a str in an older entry (names NULL), an index into
 * the batch's names in a batch entry.
 */
static int
get_name(const msgpack_object *o, const msgpack_object *names, uint32_t max,
    struct nbx_str *s)
{
	if (names == NULL)
		return nbx_mp_get_str(o, max, s);
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
	    o->via.u64 >= names->via.array.size)
		return NBX_EMALFORMED;
	return nbx_mp_get_str(&names->via.array.ptr[o->via.u64], max, s);
}

/* A record's items into out; a compact item needs a base origin. */
static int
get_items(const msgpack_object *items, const msgpack_object *names,
    uint64_t base, struct nbx_str base_origin, struct store_audit_entry *out)
{
	if (items->type != MSGPACK_OBJECT_ARRAY)
		return NBX_EMALFORMED;
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
			return NBX_EMALFORMED;
		f = it->via.array.ptr;
		if (it->via.array.size == 3 && base_origin.n > 0) {
			/* compact: elem empty, made by base_origin */
			if (nbx_mp_get_u64(&f[0], &kind) != 0 ||
			    get_name(&f[1], names, NBX_NAME_MAX,
			    &o->field) != 0 ||
			    nbx_mp_get_u64(&f[2], &dh) != 0 ||
			    dh > UINT64_MAX - base)
				return NBX_EMALFORMED;
			o->elem = (struct nbx_str){ "", 0 };
			o->hlc = base + dh;
			o->origin = base_origin;
		} else if (it->via.array.size != 5 ||
		    nbx_mp_get_u64(&f[0], &kind) != 0 ||
		    get_name(&f[1], names, NBX_NAME_MAX, &o->field) != 0 ||
		    nbx_mp_get_str(&f[2], NBX_STR_MAX, &o->elem) != 0 ||
		    nbx_mp_get_u64(&f[3], &o->hlc) != 0 ||
		    get_name(&f[4], names, NBX_ID_MAX, &o->origin) != 0)
			return NBX_EMALFORMED;
		o->kind = (uint32_t)kind;
		out->nitems++;
	}
	return 0;
}

/* An entry of a store before format 5, of one record: into out. */
static int
get_single(const MDB_val *d, struct store_audit_entry *out)
{
	msgpack_unpacked u;
	const msgpack_object *e;
	struct nbx_str base_origin = { NULL, 0 };
	uint64_t base = 0;
	int rc = NBX_EMALFORMED;

	msgpack_unpacked_init(&u);
	if (store__unpack(&u, d) != 0 || u.data.type != MSGPACK_OBJECT_ARRAY ||
	    (u.data.via.array.size != 5 && u.data.via.array.size != 7))
		goto out;
	e = u.data.via.array.ptr;
	if (nbx_mp_get_u64(&e[0], &out->time_ms) != 0 ||
	    nbx_mp_get_str(&e[1], NBX_ID_MAX, &out->peer) != 0 ||
	    nbx_mp_get_str(&e[2], NBX_NAME_MAX, &out->coll) != 0 ||
	    nbx_mp_get_str(&e[3], NBX_RECID_MAX, &out->id) != 0)
		goto out;
	if (u.data.via.array.size == 7 &&
	    (nbx_mp_get_u64(&e[5], &base) != 0 ||
	    nbx_mp_get_str(&e[6], NBX_ID_MAX, &base_origin) != 0))
		goto out;
	rc = get_items(&e[4], NULL, base, base_origin, out);
out:
	msgpack_unpacked_destroy(&u);
	return rc;
}

/* 1 if d is a batch entry (by its arity), 0 if not. */
static int
is_batch(const MDB_val *d)
{
	struct mpread m = { d->mv_data, d->mv_size, 0 };
	uint32_t n;

	return mpread_array(&m, &n) == 0 && n == BATCH_ARITY;
}

/* Makes the batch entry d at key the one *at keeps. */
static int
batch_load(struct store__audit_at **at, uint64_t key, const MDB_val *d)
{
	struct store__audit_at *a = *at;
	const msgpack_object *e;

	if (a == NULL) {
		if ((a = calloc(1, sizeof(*a))) == NULL)
			return NBX_ENOMEM;
		msgpack_unpacked_init(&a->u);
		*at = a;
	}
	a->key = a->count = 0;
	msgpack_unpacked_destroy(&a->u);
	msgpack_unpacked_init(&a->u);
	if (store__unpack(&a->u, d) != 0 ||
	    a->u.data.type != MSGPACK_OBJECT_ARRAY ||
	    a->u.data.via.array.size != BATCH_ARITY)
		return NBX_EMALFORMED;
	e = a->u.data.via.array.ptr;
	if (e[2].type != MSGPACK_OBJECT_ARRAY ||
	    e[3].type != MSGPACK_OBJECT_ARRAY || e[3].via.array.size == 0)
		return NBX_EMALFORMED;
	a->key = key;
	a->src = d->mv_data;
	a->count = e[3].via.array.size;
	return 0;
}

/* Record i of the batch *a keeps: into out, which the caller zeroed. */
static int
batch_record(const struct store__audit_at *a, uint64_t i,
    struct store_audit_entry *out)
{
	const msgpack_object *e = a->u.data.via.array.ptr;
	const msgpack_object *names = &e[2], *r = &e[3].via.array.ptr[i], *f;
	struct nbx_str base_origin;
	uint64_t base;

	if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size != 5)
		return NBX_EMALFORMED;
	f = r->via.array.ptr;
	if (nbx_mp_get_u64(&e[0], &out->time_ms) != 0 ||
	    nbx_mp_get_str(&e[1], NBX_ID_MAX, &out->peer) != 0 ||
	    get_name(&f[0], names, NBX_NAME_MAX, &out->coll) != 0 ||
	    nbx_mp_get_str(&f[1], NBX_RECID_MAX, &out->id) != 0 ||
	    nbx_mp_get_u64(&f[2], &base) != 0 ||
	    get_name(&f[3], names, NBX_ID_MAX, &base_origin) != 0)
		return NBX_EMALFORMED;
	out->aseq = a->key + i;
	return get_items(&f[4], names, base, base_origin, out);
}

int
store__audit_read(struct store__audit_at **at, uint64_t key,
    const MDB_val *d, uint64_t i, struct store_audit_entry *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (!is_batch(d)) {
		if (i > 0)
			return NBX_ENOTFOUND;
		out->aseq = key;
		return get_single(d, out);
	}
	/* the batch kept already, when it is this value */
	if ((*at == NULL || (*at)->src != d->mv_data || (*at)->key != key ||
	    (*at)->count == 0) && (rc = batch_load(at, key, d)) != 0)
		return rc;
	if (i >= (*at)->count)
		return NBX_ENOTFOUND;
	return batch_record(*at, i, out);
}

/*
 * The record with aseq `want`, or the first after it: in the entry at
 * want, in the batch entry before it that reaches want, or at index 0 of
 * the entry after.  Loads a batch entry it lands in (t->audit_at).
 */
static int
audit_find(struct store_rtxn *t, uint64_t want, struct store_audit_entry *out)
{
	uint8_t kb[8];
	MDB_cursor *cu;
	MDB_val k = { 8, kb }, d, pk, pd;
	int rc, prc = MDB_NOTFOUND;

	store__be64_put(kb, want);
	if ((rc = mdb_cursor_open(t->txn, t->st->dbi[DB_AUDIT], &cu)) != 0)
		return store__mdb_code(t->st, rc, "cursor");
	rc = mdb_cursor_get(cu, &k, &d, MDB_SET_RANGE);
	if ((rc == 0 && !(k.mv_size == 8 && store__be64_get(k.mv_data) ==
	    want)) || rc == MDB_NOTFOUND)
		prc = mdb_cursor_get(cu, &pk, &pd,
		    rc == 0 ? MDB_PREV : MDB_LAST);
	mdb_cursor_close(cu);
	/* the entry before, a batch that may reach want */
	if (prc == 0 && pk.mv_size == 8) {
		uint64_t key = store__be64_get(pk.mv_data);

		prc = store__audit_read(&t->audit_at, key, &pd, want - key, out);
		if (prc != NBX_ENOTFOUND)
			return prc;
	}
	if (rc != 0)
		return store__mdb_code(t->st, rc, "next audit entry");
	if (k.mv_size != 8)
		return NBX_EMALFORMED;
	return store__audit_read(&t->audit_at, store__be64_get(k.mv_data), &d,
	    0, out);
}

int
store_audit_next(struct store_rtxn *t, uint64_t after,
    struct store_audit_entry *out)
{
	const struct store__audit_at *a = t->audit_at;

	memset(out, 0, sizeof(*out));
	if (after == UINT64_MAX)
		return NBX_ENOTFOUND;
	/* a scan's next record is most often in the batch read last */
	if (a != NULL && a->count > 0 && after + 1 >= a->key &&
	    after + 1 - a->key < a->count)
		return batch_record(a, after + 1 - a->key, out);
	return audit_find(t, after + 1, out);
}
