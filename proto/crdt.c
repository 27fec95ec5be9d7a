/*
 * crdt.c - merge of changes into a record's state, and the record's
 * canonical encoding.  See crdt.h for the laws this file must keep; the
 * property tests in tests/unit/crdt_prop_test.c check them through the
 * store.
 */
#include <stdlib.h>
#include <string.h>

#include "crdt.h"
#include "mpread.h"
#include "mpwrite.h"
#include "nbx_err.h"

#define RECORD_FORMAT 2	/* written; format 1 is still read */

/* ------------------------------------------------------------------ */
/* Versions and audiences                                              */
/* ------------------------------------------------------------------ */

int
crdt_ver_cmp(struct crdt_ver a, struct crdt_ver b)
{
	if (a.hlc != b.hlc)
		return a.hlc < b.hlc ? -1 : 1;
	return nbx_str_cmp(a.origin, b.origin);
}

static struct crdt_ver
aud_ver(const struct nbx_audience *a)
{
	struct crdt_ver v = { a->hlc, a->origin };

	return v;
}

/* Sorts and de-duplicates the id list so equal sets encode equally. */
static void
aud_normalise(struct nbx_audience *a)
{
	uint32_t i, j, n = 0;

	for (i = 1; i < a->n; i++) {
		struct nbx_str t = a->ids[i];

		for (j = i; j > 0 && nbx_str_cmp(a->ids[j - 1], t) > 0; j--)
			a->ids[j] = a->ids[j - 1];
		a->ids[j] = t;
	}
	for (i = 0; i < a->n; i++)
		if (n == 0 || !nbx_str_eq(a->ids[n - 1], a->ids[i]))
			a->ids[n++] = a->ids[i];
	a->n = n;
}

/* ------------------------------------------------------------------ */
/* Registers                                                           */
/* ------------------------------------------------------------------ */

void
crdt_record_init(struct crdt_record *r, struct nbx_str coll, struct nbx_str id)
{
	memset(r, 0, sizeof(*r));
	r->coll = coll;
	r->id = id;
	r->state = REC_LIVE;
}

void
crdt_record_reset(struct crdt_record *r, struct nbx_str coll,
    struct nbx_str id)
{
	struct crdt_reg *regs = r->regs;
	struct crdt_receipt *rcpt = r->rcpt;
	size_t cap = r->cap, rcap = r->rcap;

	crdt_record_init(r, coll, id);
	r->regs = regs;
	r->cap = cap;
	r->rcpt = rcpt;
	r->rcap = rcap;
}

static void
regs_free(struct crdt_record *r)
{
	free(r->regs);
	r->regs = NULL;
	r->nregs = r->cap = 0;
}

void
crdt_record_fini(struct crdt_record *r)
{
	regs_free(r);
	free(r->rcpt);
	r->rcpt = NULL;
	r->nrcpt = r->rcap = 0;
}

/*
 * Registers and receipts are kept in arrays sorted by two strings that are
 * each element's first two members (field, elem / what, node): one binary
 * search and one insertion serve both.
 */
static size_t
key2_search(const void *base, size_t n, size_t size, struct nbx_str a,
    struct nbx_str b, int *found)
{
	size_t lo = 0, hi = n;

	*found = 0;
	/*
	 * Keys mostly come in order (a record's changes as a peer sends them,
	 * an import's fields as writes.c sorts them), so the last key is
	 * looked at first: a key past it is appended without a search.
	 */
	if (n > 0) {
		const struct nbx_str *k = (const struct nbx_str *)(const void *)
		    ((const char *)base + (n - 1) * size);
		int c = nbx_str_cmp(k[0], a);

		if (c == 0)
			c = nbx_str_cmp(k[1], b);
		if (c < 0)
			return n;
		if (c == 0) {
			*found = 1;
			return n - 1;
		}
		hi = n - 1;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct nbx_str *k = (const struct nbx_str *)(const void *)
		    ((const char *)base + mid * size);
		int c = nbx_str_cmp(k[0], a);

		if (c == 0)
			c = nbx_str_cmp(k[1], b);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Opens a zeroed slot at index `at`; *base may move.  0 or NBX_ENOMEM. */
static int
key2_insert(void **base, size_t *n, size_t *cap, size_t size, size_t at)
{
	char *p;

	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;	/* most records fit */

		if ((p = realloc(*base, nc * size)) == NULL)
			return NBX_ENOMEM;
		*base = p;
		*cap = nc;
	}
	p = *base;
	memmove(p + (at + 1) * size, p + at * size, (*n - at) * size);
	memset(p + at * size, 0, size);
	(*n)++;
	return 0;
}

static size_t
reg_search(const struct crdt_record *r, struct nbx_str field,
    struct nbx_str elem, int *found)
{
	return key2_search(r->regs, r->nregs, sizeof(r->regs[0]), field, elem,
	    found);
}

const struct crdt_reg *
crdt_record_find(const struct crdt_record *r, struct nbx_str field,
    struct nbx_str elem)
{
	int found;
	size_t i = reg_search(r, field, elem, &found);

	return found ? &r->regs[i] : NULL;
}

static int
reg_insert(struct crdt_record *r, size_t at, struct crdt_reg **out)
{
	int rc = key2_insert((void **)&r->regs, &r->nregs, &r->cap,
	    sizeof(r->regs[0]), at);

	if (rc == 0)
		*out = &r->regs[at];
	return rc;
}

/* Register order: the write's version, then the audience it travelled under. */
static int
reg_order_cmp(struct crdt_ver v1, struct crdt_ver a1, struct crdt_ver v2,
    struct crdt_ver a2)
{
	int c = crdt_ver_cmp(v1, v2);

	return c ? c : crdt_ver_cmp(a1, a2);
}

static void
reg_purge(struct crdt_reg *g)
{
	g->flags &= ~(uint32_t)CRDT_REG_VALUE;
	memset(&g->val, 0, sizeof(g->val));
	memset(g->aud.ids, 0, sizeof(g->aud.ids));
	g->aud.n = 0;
}

/* ------------------------------------------------------------------ */
/* Merge                                                               */
/* ------------------------------------------------------------------ */

/*
 * Takes in an audience version seen on a change.  The record's audience is
 * the greatest version seen; `excl` is the greatest version seen that did
 * not hold `self`, and every scoped value sent under an older audience is
 * purged when it rises.
 */
static int
adopt_audience(struct crdt_record *r, const struct nbx_audience *a,
    struct nbx_str self)
{
	int changed = 0;
	struct crdt_ver v = aud_ver(a);

	if (crdt_ver_cmp(v, aud_ver(&r->aud)) > 0) {
		r->aud = *a;
		aud_normalise(&r->aud);
		changed = 1;
	}
	if (!nbx_audience_has(a, self) && crdt_ver_cmp(v, r->excl) > 0) {
		r->excl = v;
		changed = 1;
		for (size_t i = 0; i < r->nregs; i++) {
			struct crdt_reg *g = &r->regs[i];

			if ((g->flags & CRDT_REG_SCOPED) &&
			    (g->flags & CRDT_REG_VALUE) &&
			    crdt_ver_cmp(aud_ver(&g->aud), r->excl) < 0)
				reg_purge(g);
		}
	}
	return changed;
}

/* A region or local value's: no version, no ids. */
static const struct nbx_audience no_audience;

static int
merge_register(struct crdt_record *r, const struct change *c,
    struct nbx_str self, int *changed)
{
	int scoped = c->aud.n > 0, found, rc;
	struct crdt_ver v = { c->hlc, c->origin };
	struct nbx_str elem = c->kind == CHANGE_ELEM ? c->elem : (struct nbx_str){ "", 0 };
	struct crdt_reg *g;
	size_t at;

	if (scoped && adopt_audience(r, &c->aud, self))
		*changed = 1;
	at = reg_search(r, c->field, elem, &found);
	if (found) {
		g = &r->regs[at];
		if (reg_order_cmp(g->ver, aud_ver(&g->aud), v,
		    aud_ver(&c->aud)) >= 0)
			return 0;
	} else if ((rc = reg_insert(r, at, &g)) != 0) {
		return rc;
	}
	g->field = c->field;
	g->elem = elem;
	g->ver = v;
	g->flags = (scoped ? CRDT_REG_SCOPED : 0) |
	    (c->kind == CHANGE_ELEM ? CRDT_REG_ELEM : 0) | CRDT_REG_VALUE;
	g->val = c->val;
	nbx_aud_copy(&g->aud, scoped ? &c->aud : &no_audience);
	aud_normalise(&g->aud);
	if (scoped && crdt_ver_cmp(aud_ver(&c->aud), r->excl) <= 0)
		reg_purge(g);
	*changed = 1;
	return 0;
}

static size_t
rcpt_search(const struct crdt_record *r, struct nbx_str what,
    struct nbx_str node, int *found)
{
	return key2_search(r->rcpt, r->nrcpt, sizeof(r->rcpt[0]), what, node,
	    found);
}

const struct crdt_receipt *
crdt_record_receipt(const struct crdt_record *r, struct nbx_str what,
    struct nbx_str node)
{
	int found;
	size_t i = rcpt_search(r, what, node, &found);

	return found ? &r->rcpt[i] : NULL;
}

/* Receipts: per (what, node) the greatest (state, version). */
static int
merge_receipt(struct crdt_record *r, const struct change *c, int *changed)
{
	struct crdt_ver v = { c->hlc, c->origin };
	struct crdt_receipt *x;
	int found;
	size_t at = rcpt_search(r, c->field, c->elem, &found);

	/* an erasure supersedes revocations: their receipts go with it */
	if (r->erased && nbx_str_eq(c->field, nbx_str_c("revoke")))
		return 0;
	if (found) {
		x = &r->rcpt[at];
		if (x->state > c->val.i || (x->state == c->val.i &&
		    crdt_ver_cmp(x->ver, v) >= 0))
			return 0;
	} else {
		if (key2_insert((void **)&r->rcpt, &r->nrcpt, &r->rcap,
		    sizeof(r->rcpt[0]), at) != 0)
			return NBX_ENOMEM;
		x = &r->rcpt[at];
		x->what = c->field;
		x->node = c->elem;
	}
	x->state = (int)c->val.i;
	x->ver = v;
	*changed = 1;
	return 0;
}

int
crdt_record_merge(struct crdt_record *r, const struct change *c,
    struct nbx_str self, int *changed)
{
	struct crdt_ver v = { c->hlc, c->origin };

	*changed = 0;
	if (c->kind == CHANGE_RECEIPT)
		return merge_receipt(r, c, changed);
	if (r->erased) {
		if (c->kind == CHANGE_ERASE && crdt_ver_cmp(v, r->erase) > 0) {
			r->erase = v;
			*changed = 1;
		}
		return 0;
	}
	switch (c->kind) {
	case CHANGE_ERASE: {
		struct crdt_receipt *rc = r->rcpt;
		size_t nrc = r->nrcpt, rcap = r->rcap;

		regs_free(r);
		crdt_record_init(r, r->coll, r->id);
		/* erasure receipts outlive the data; revocations end here */
		r->rcpt = rc;
		r->rcap = rcap;
		r->nrcpt = 0;
		for (size_t i = 0; i < nrc; i++)
			if (!nbx_str_eq(rc[i].what, nbx_str_c("revoke")))
				rc[r->nrcpt++] = rc[i];
		r->erased = 1;
		r->erase = v;
		*changed = 1;
		return 0;
	}
	case CHANGE_STATE:
		if (crdt_ver_cmp(v, r->state_ver) > 0) {
			r->state = (int)c->val.i;
			r->state_ver = v;
			*changed = 1;
		}
		return 0;
	case CHANGE_AUDIENCE:
		*changed = adopt_audience(r, &c->aud, self);
		return 0;
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		return merge_register(r, c, self, changed);
	case CHANGE_RECEIPT:
		break;		/* merged above */
	}
	return NBX_EINVAL;
}

size_t
crdt_record_restamp(struct crdt_record *r, struct nbx_str self)
{
	size_t n = 0;

	if (r->erased || !nbx_audience_has(&r->aud, self))
		return 0;
	for (size_t i = 0; i < r->nregs; i++) {
		struct crdt_reg *g = &r->regs[i];

		/*
		 * A value whose writer left the audience keeps the audience
		 * it was written under: every receiver checks the writer
		 * against the audience a value travels under
		 * (policy_may_write), so re-stamped it would be refused
		 * everywhere but here, and the copies would never agree.
		 */
		if ((g->flags & CRDT_REG_SCOPED) &&
		    (g->flags & CRDT_REG_VALUE) &&
		    crdt_ver_cmp(aud_ver(&g->aud), aud_ver(&r->aud)) < 0 &&
		    nbx_audience_has(&r->aud, g->ver.origin)) {
			g->aud = r->aud;
			n++;
		}
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* Canonical encoding                                                  */
/* ------------------------------------------------------------------ */

/*
 * Layout: [format, erased, erase ver, state, state ver, audience ver,
 * [audience ids], excl ver, [registers], [receipts]] where a version is
 * [hlc, origin], a register is [field, elem, flags, value, ver, aud ver,
 * [aud ids]] and a receipt [what, node, state, ver].
 * Registers are kept sorted and id lists normalised, so equal states
 * encode to equal bytes.
 *
 * Format 2: an unset version (0, "") is nil, and a version after the
 * state version that the state version's origin made at or after it is
 * one int, the distance of its hlc from the state version's (put_near).
 * A record written at once by one node (an import, a peer's record
 * received whole) has a few clock ticks between its versions: 1 byte for
 * the 13 of [hlc, origin], and 1 for the 3 of each unset one, about a
 * third of a stored record.  Format 1 (every version in full) is still
 * read.
 */
#define REC_ARITY 10
#define REG_ARITY 7

static void
put_ver(struct mpwrite *w, struct crdt_ver v)
{
	if (v.hlc == 0 && v.origin.n == 0) {
		mpwrite_nil(w);		/* unset */
		return;
	}
	mpwrite_array(w, 2);
	mpwrite_uint(w, v.hlc);
	mpwrite_str(w, v.origin);
}

/* v, near base if it can be (see the layout); a function of v and base */
static void
put_near(struct mpwrite *w, struct crdt_ver v, struct crdt_ver base)
{
	if (base.origin.n > 0 && v.hlc >= base.hlc &&
	    nbx_str_eq(v.origin, base.origin))
		mpwrite_uint(w, v.hlc - base.hlc);
	else
		put_ver(w, v);
}

static void
put_ids(struct mpwrite *w, const struct nbx_audience *a, int with_ids)
{
	uint32_t n = with_ids ? a->n : 0;

	mpwrite_array(w, n);
	for (uint32_t i = 0; i < n; i++)
		mpwrite_str(w, a->ids[i]);
}

static void
put_reg(struct mpwrite *w, const struct crdt_reg *g, struct crdt_ver base)
{
	static const struct nbx_value nil = { NBX_V_NIL, 0, { NULL, 0 } };
	int has = (g->flags & CRDT_REG_VALUE) != 0;

	mpwrite_array(w, REG_ARITY);
	mpwrite_str(w, g->field);
	mpwrite_str(w, g->elem);
	mpwrite_uint(w, g->flags);
	mpwrite_value(w, has ? &g->val : &nil);
	put_near(w, g->ver, base);
	put_near(w, aud_ver(&g->aud), base);
	put_ids(w, &g->aud, has);
}

/* Written with the mpwrite cursor: errors are sticky, checked once. */
int
crdt_record_encode(const struct crdt_record *r, struct nbx_buf *out)
{
	struct mpwrite w;
	size_t mark = out->len;

	mpwrite_init(&w, out);
	mpwrite_array(&w, REC_ARITY);
	mpwrite_uint(&w, RECORD_FORMAT);
	mpwrite_bool(&w, r->erased);
	put_ver(&w, r->erase);
	mpwrite_int(&w, r->state);
	put_ver(&w, r->state_ver);
	put_near(&w, aud_ver(&r->aud), r->state_ver);
	put_ids(&w, &r->aud, 1);
	put_near(&w, r->excl, r->state_ver);
	mpwrite_array(&w, (uint32_t)r->nregs);
	for (size_t i = 0; i < r->nregs; i++)
		put_reg(&w, &r->regs[i], r->state_ver);
	mpwrite_array(&w, (uint32_t)r->nrcpt);
	for (size_t i = 0; i < r->nrcpt; i++) {
		const struct crdt_receipt *x = &r->rcpt[i];

		mpwrite_array(&w, 4);
		mpwrite_str(&w, x->what);
		mpwrite_str(&w, x->node);
		mpwrite_int(&w, x->state);
		put_near(&w, x->ver, r->state_ver);
	}
	if (w.err != 0) {
		out->len = mark;
		return w.err == NBX_ENOMEM ? NBX_ENOMEM : NBX_ETOOBIG;
	}
	return 0;
}

/*
 * Decoding reads the layout above in place with the mpread cursor: one
 * pass, no msgpack-c object tree.  Every item's type and cap is checked;
 * empty strings come back as "" (not NULL), as they always have.
 */
static int
get_str(struct mpread *m, uint32_t max, struct nbx_str *s)
{
	if (mpread_str(m, 0, max, s) != 0)
		return NBX_EMALFORMED;
	if (s->n == 0)
		s->p = "";
	return 0;
}

/* A version: [hlc, origin], or (format 2: f2 set) nil for an unset one. */
static int
get_ver(struct mpread *m, int f2, struct crdt_ver *v)
{
	uint32_t n;

	if (f2 && mpread_nil(m)) {
		v->hlc = 0;
		v->origin = (struct nbx_str){ "", 0 };
		return 0;
	}
	if (mpread_array(m, &n) != 0 || n != 2 ||
	    mpread_u64(m, &v->hlc) != 0 ||
	    get_str(m, NBX_ID_MAX, &v->origin) != 0)
		return NBX_EMALFORMED;
	return 0;
}

/*
 * A version that may be written near base (format 2; base NULL for
 * format 1): an int is base's origin at base's hlc plus the int.
 */
static int
get_near(struct mpread *m, const struct crdt_ver *base, struct crdt_ver *v)
{
	uint64_t d;

	if (base == NULL || mpread_u64(m, &d) != 0)
		return get_ver(m, base != NULL, v);
	if (base->origin.n == 0 || d > UINT64_MAX - base->hlc)
		return NBX_EMALFORMED;
	v->hlc = base->hlc + d;
	v->origin = base->origin;
	return 0;
}

/* Reads an audience: its version (see get_near), then its id list. */
static int
get_aud(struct mpread *m, const struct crdt_ver *base, struct nbx_audience *a)
{
	struct crdt_ver v;
	uint32_t n;

	a->n = 0;
	if (get_near(m, base, &v) != 0 || mpread_array(m, &n) != 0 ||
	    n > NBX_AUD_MAX)
		return NBX_EMALFORMED;
	a->hlc = v.hlc;
	a->origin = v.origin;
	for (uint32_t i = 0; i < n; i++)
		if (get_str(m, NBX_ID_MAX, &a->ids[i]) != 0)
			return NBX_EMALFORMED;
	a->n = n;
	return 0;
}

static int
get_value(struct mpread *m, struct nbx_value *v)
{
	memset(v, 0, sizeof(*v));
	if (mpread_value(m, NBX_STR_MAX, v) != 0)
		return NBX_EMALFORMED;
	if (v->t == NBX_V_STR && v->s.n == 0)
		v->s.p = "";
	return 0;
}

static int
get_reg(struct mpread *m, const struct crdt_ver *base, struct crdt_reg *g)
{
	uint32_t n;
	uint64_t flags;

	g->elem.n = 0;
	if (mpread_array(m, &n) != 0 || n != REG_ARITY ||
	    get_str(m, NBX_NAME_MAX, &g->field) != 0 ||
	    get_str(m, NBX_STR_MAX, &g->elem) != 0 ||
	    mpread_u64(m, &flags) != 0 || flags > 7 ||
	    get_value(m, &g->val) != 0 ||
	    get_near(m, base, &g->ver) != 0 ||
	    get_aud(m, base, &g->aud) != 0)
		return NBX_EMALFORMED;
	g->flags = (uint32_t)flags;
	return 0;
}

static int
get_receipt(struct mpread *m, const struct crdt_ver *base,
    struct crdt_receipt *o)
{
	uint32_t n;
	int64_t st;

	if (mpread_array(m, &n) != 0 || n != 4 ||
	    get_str(m, NBX_NAME_MAX, &o->what) != 0 ||
	    get_str(m, NBX_ID_MAX, &o->node) != 0 ||
	    mpread_i64(m, &st) != 0 ||
	    (st != RECEIPT_PENDING && st != RECEIPT_DONE) ||
	    get_near(m, base, &o->ver) != 0)
		return NBX_EMALFORMED;
	o->state = (int)st;
	return 0;
}

/*
 * Room for n more elements of `size` bytes in *arr (capacity *cap): a
 * stored count is only trusted as far as the bytes left can back it
 * (every element takes at least `min_bytes`).
 */
static int
reserve_decoded(void **arr, size_t *cap, uint32_t n, size_t size,
    const struct mpread *m, size_t min_bytes)
{
	void *p;

	if (n == 0)
		return 0;
	if (!mpread_has(m, (size_t)n * min_bytes))
		return NBX_EMALFORMED;
	if (n <= *cap)
		return 0;	/* a reset record's arrays (crdt_record_reset) */
	if ((p = malloc((size_t)n * size)) == NULL)
		return NBX_ENOMEM;
	free(*arr);
	*arr = p;
	*cap = n;
	return 0;
}

int
crdt_record_decode(const void *buf, size_t len, struct crdt_record *r)
{
	struct mpread m = { buf, len, 0 };
	const struct crdt_ver *base;
	uint32_t n, nregs, nrcpt;
	uint64_t fmt;
	int64_t state;
	int rc = NBX_EMALFORMED;

	if (mpread_array(&m, &n) != 0 || n != REC_ARITY ||
	    mpread_u64(&m, &fmt) != 0 || (fmt != 1 && fmt != 2) ||
	    mpread_bool(&m, &r->erased) != 0 ||
	    get_ver(&m, fmt == 2, &r->erase) != 0 ||
	    mpread_i64(&m, &state) != 0 ||
	    (state != REC_LIVE && state != REC_DELETED) ||
	    get_ver(&m, fmt == 2, &r->state_ver) != 0)
		goto out;
	base = fmt == 1 ? NULL : &r->state_ver;
	if (get_aud(&m, base, &r->aud) != 0 ||
	    get_near(&m, base, &r->excl) != 0 ||
	    mpread_array(&m, &nregs) != 0)
		goto out;
	r->state = (int)state;
	/* a register takes at least 12 bytes in format 1, 8 in format 2; a
	   receipt at least 7 or 5 */
	if ((rc = reserve_decoded((void **)&r->regs, &r->cap, nregs,
	    sizeof(*r->regs), &m, base ? 8 : 12)) != 0)
		goto out;
	rc = NBX_EMALFORMED;
	for (uint32_t i = 0; i < nregs; i++) {
		if (get_reg(&m, base, &r->regs[i]) != 0)
			goto out;
		r->nregs++;
	}
	if (mpread_array(&m, &nrcpt) != 0)
		goto out;
	if ((rc = reserve_decoded((void **)&r->rcpt, &r->rcap, nrcpt,
	    sizeof(*r->rcpt), &m, base ? 5 : 7)) != 0)
		goto out;
	rc = NBX_EMALFORMED;
	for (uint32_t i = 0; i < nrcpt; i++) {
		if (get_receipt(&m, base, &r->rcpt[i]) != 0)
			goto out;
		r->nrcpt++;
	}
	if (m.off == len)
		rc = 0;
out:
	if (rc != 0) {
		struct nbx_str coll = r->coll, id = r->id;

		crdt_record_fini(r);
		crdt_record_init(r, coll, id);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Record -> changes                                                   */
/* ------------------------------------------------------------------ */

static int
receipt_changes(const struct crdt_record *r,
    int (*fn)(void *arg, const struct change *c), void *arg)
{
	struct change c;
	int rc;

	for (size_t i = 0; i < r->nrcpt; i++) {
		memset(&c, 0, sizeof(c));
		c.kind = CHANGE_RECEIPT;
		c.coll = r->coll;
		c.id = r->id;
		c.field = r->rcpt[i].what;
		c.elem = r->rcpt[i].node;
		c.val.t = NBX_V_INT;
		c.val.i = r->rcpt[i].state;
		c.hlc = r->rcpt[i].ver.hlc;
		c.origin = r->rcpt[i].ver.origin;
		if ((rc = fn(arg, &c)) != 0)
			return rc;
	}
	return 0;
}

int
crdt_record_changes(const struct crdt_record *r,
    int (*fn)(void *arg, const struct change *c), void *arg)
{
	struct change c;
	int rc;

	memset(&c, 0, sizeof(c));
	c.coll = r->coll;
	c.id = r->id;
	if (r->erased) {
		c.kind = CHANGE_ERASE;
		c.hlc = r->erase.hlc;
		c.origin = r->erase.origin;
		if ((rc = fn(arg, &c)) != 0)
			return rc;
		return receipt_changes(r, fn, arg);
	}
	if (r->state_ver.hlc != 0) {
		c.kind = CHANGE_STATE;
		c.val.t = NBX_V_INT;
		c.val.i = r->state;
		c.hlc = r->state_ver.hlc;
		c.origin = r->state_ver.origin;
		if ((rc = fn(arg, &c)) != 0)
			return rc;
	}
	if (r->aud.hlc != 0) {
		memset(&c.val, 0, sizeof(c.val));
		c.kind = CHANGE_AUDIENCE;
		c.hlc = r->aud.hlc;
		c.origin = r->aud.origin;
		nbx_aud_copy(&c.aud, &r->aud);
		if ((rc = fn(arg, &c)) != 0)
			return rc;
	}
	for (size_t i = 0; i < r->nregs; i++) {
		const struct crdt_reg *g = &r->regs[i];

		if (!(g->flags & CRDT_REG_VALUE))
			continue;
		c.kind = (g->flags & CRDT_REG_ELEM) ? CHANGE_ELEM : CHANGE_FIELD;
		c.field = g->field;
		c.elem = g->elem;
		c.val = g->val;
		c.hlc = g->ver.hlc;
		c.origin = g->ver.origin;
		nbx_aud_copy(&c.aud, &g->aud);
		if ((rc = fn(arg, &c)) != 0)
			return rc;
	}
	return receipt_changes(r, fn, arg);
}

/* One more origin seen: 0 once two differ. */
static int
same_author(struct nbx_str *author, int *seen, struct nbx_str origin)
{
	if (*seen)
		return nbx_str_eq(*author, origin);
	*author = origin;
	*seen = 1;
	return 1;
}

/* Walks what crdt_record_changes emits, without building the changes. */
int
crdt_record_sole_author(const struct crdt_record *r, struct nbx_str *author)
{
	int seen = 0;

	*author = (struct nbx_str){ NULL, 0 };
	if (r->erased) {
		if (!same_author(author, &seen, r->erase.origin))
			return 0;
	} else {
		if (r->state_ver.hlc != 0 &&
		    !same_author(author, &seen, r->state_ver.origin))
			return 0;
		if (r->aud.hlc != 0 &&
		    !same_author(author, &seen, r->aud.origin))
			return 0;
		for (size_t i = 0; i < r->nregs; i++)
			if ((r->regs[i].flags & CRDT_REG_VALUE) &&
			    !same_author(author, &seen, r->regs[i].ver.origin))
				return 0;
	}
	for (size_t i = 0; i < r->nrcpt; i++)
		if (!same_author(author, &seen, r->rcpt[i].ver.origin))
			return 0;
	return seen;
}
