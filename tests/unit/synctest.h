/*
 * synctest.h - what the sync tests share: real stores in fresh
 * directories (in memory when /dev/shm is there), local writes, readers of
 * a record's visible values, and "links": a session at each end of a pair
 * of nodes, with the bytes moved between them by the test.
 *
 * A file that includes this declares its suites with .init = setup and
 * .fini = teardown, and uses the global `pol` (the testlib.h schema).
 */
#ifndef NBX_SYNCTEST_H
#define NBX_SYNCTEST_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "hlc.h"
#include "nbx_err.h"
#include "session.h"
#include "store.h"
#include "testlib.h"

#define T0	1700000000000ull

static struct policy *pol;

/* Directories still to remove, so a failed test leaves none behind. */
static char *left[8];

static inline void
setup(void)
{
	pol = test_policy();
}

static inline void
teardown(void)
{
	policy_free(pol);
	for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++)
		if (left[i] != NULL)
			test_rmdir(left[i]);
}

/* ------------------------------------------------------------------ */
/* Nodes                                                               */
/* ------------------------------------------------------------------ */

struct node {
	char *dir;
	struct store *st;
	char id[NBX_ID_MAX + 1];
};

/* A fresh directory, in memory when /dev/shm is there. */
static inline char *
fast_tmpdir(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	char *d = malloc(64);

	cr_assert_not_null(d);
	snprintf(d, 64, "%s/nbx-sess-XXXXXX", base);
	cr_assert_not_null(mkdtemp(d));
	for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++) {
		if (left[i] == NULL) {
			left[i] = d;
			break;
		}
	}
	return d;
}

static inline void
node_open(struct node *n, const char *id)
{
	struct store_opts o = { .node_id = id };
	char err[256];

	memset(n, 0, sizeof(*n));
	snprintf(n->id, sizeof(n->id), "%s", id);
	n->dir = fast_tmpdir();
	cr_assert_eq(store_open(n->dir, &o, &n->st, err, sizeof(err)), 0,
	    "store_open: %s", err);
}

static inline void
node_close(struct node *n)
{
	store_close(n->st);
	n->st = NULL;
	for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++)
		if (left[i] == n->dir)
			left[i] = NULL;
	test_rmdir(n->dir);
	n->dir = NULL;
}

/* Replaces the node's store by an empty one: a new log epoch. */
static inline void
node_rebuild(struct node *n)
{
	char id[NBX_ID_MAX + 1];

	snprintf(id, sizeof(id), "%s", n->id);
	node_close(n);
	node_open(n, id);
}

static inline void
apply_local(struct node *n, struct change *c, size_t k, uint64_t now)
{
	struct store_outcome out[16];

	cr_assert(k <= 16);
	cr_assert_eq(store_apply(n->st, pol, c, k, (struct nbx_str){ 0 },
	    NULL, now, 0, out), 0, "%s", store_last_error(n->st));
	for (size_t i = 0; i < k; i++)
		cr_assert_neq(out[i].status, STORE_REJECTED,
		    "local write %zu rejected: %s", i, nbx_strerror(out[i].err));
}

static inline void
put(struct node *n, const char *id, const char *field, const char *v,
    uint64_t now)
{
	struct change c = test_str(id, field, v);

	apply_local(n, &c, 1, now);
}

static inline void
put_int(struct node *n, const char *id, const char *field, int64_t v,
    uint64_t now)
{
	struct change c = test_change(CHANGE_FIELD, id, field);

	c.val.t = NBX_V_INT;
	c.val.i = v;
	apply_local(n, &c, 1, now);
}

static inline void
put_elem(struct node *n, const char *id, const char *field,
    const char *elem, uint64_t now)
{
	struct change c = test_change(CHANGE_ELEM, id, field);

	c.elem = nbx_str_c(elem);
	c.val.t = NBX_V_BOOL;
	c.val.i = 1;
	apply_local(n, &c, 1, now);
}

/* Sets a record's audience; ids must be given sorted. */
static inline void
put_aud(struct node *n, const char *id, uint64_t now, int k, ...)
{
	struct change c = test_change(CHANGE_AUDIENCE, id, NULL);
	va_list ap;

	va_start(ap, k);
	for (int i = 0; i < k; i++)
		c.aud.ids[i] = nbx_str_c(va_arg(ap, const char *));
	va_end(ap);
	c.aud.n = (uint32_t)k;
	apply_local(n, &c, 1, now);
}

/*
 * The visible value of a field (or, with elem, whether that set element
 * is present) as a string in out; 0 if the record or value is absent.
 */
static inline int
get(struct node *n, const char *id, const char *field, const char *elem,
    char *out, size_t outlen)
{
	struct store_rtxn *t;
	struct crdt_record r;
	const struct crdt_reg *g;
	int found = 0;

	out[0] = 0;
	cr_assert_eq(store_rtxn_begin(n->st, &t), 0);
	if (store_record_get(t, nbx_str_c("t"), nbx_str_c(id), &r) == 0 &&
	    (g = crdt_record_find(&r, nbx_str_c(field),
	    nbx_str_c(elem ? elem : ""))) != NULL &&
	    (g->flags & CRDT_REG_VALUE)) {
		found = 1;
		if (g->val.t == NBX_V_STR)
			snprintf(out, outlen, "%.*s", (int)g->val.s.n,
			    g->val.s.p);
		else
			snprintf(out, outlen, "%lld", (long long)g->val.i);
	}
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return found;
}

/* The record's live/deleted state; -1 if absent. */
static inline int
rec_state(struct node *n, const char *id)
{
	struct store_rtxn *t;
	struct crdt_record r;
	int st = -1;

	cr_assert_eq(store_rtxn_begin(n->st, &t), 0);
	if (store_record_get(t, nbx_str_c("t"), nbx_str_c(id), &r) == 0)
		st = r.state;
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return st;
}

/* 1 if the record exists and is erased. */
static inline int
is_erased(struct node *n, const char *id)
{
	struct store_rtxn *t;
	struct crdt_record r;
	int e;

	cr_assert_eq(store_rtxn_begin(n->st, &t), 0);
	e = store_record_get(t, nbx_str_c("t"), nbx_str_c(id), &r) == 0 &&
	    r.erased;
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return e;
}

/* The number of ids in the record's audience as the node knows it. */
static inline uint32_t
aud_size(struct node *n, const char *id)
{
	struct store_rtxn *t;
	struct crdt_record r;
	uint32_t k = 0;

	cr_assert_eq(store_rtxn_begin(n->st, &t), 0);
	if (store_record_get(t, nbx_str_c("t"), nbx_str_c(id), &r) == 0)
		k = r.aud.n;
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return k;
}

/* Asserts the field is visible on both nodes with equal values. */
static inline void
assert_same(struct node *a, struct node *b, const char *id,
    const char *field, const char *elem)
{
	char va[256], vb[256];

	cr_assert(get(a, id, field, elem, va, sizeof(va)),
	    "%s lacks %s.%s", a->id, id, field);
	cr_assert(get(b, id, field, elem, vb, sizeof(vb)),
	    "%s lacks %s.%s (%s has '%s')", b->id, id, field, a->id, va);
	cr_assert_str_eq(va, vb, "%s.%s", id, field);
}

static inline void
assert_absent(struct node *n, const char *id, const char *field)
{
	char v[256];

	cr_assert(!get(n, id, field, NULL, v, sizeof(v)),
	    "%s holds %s.%s = '%s'", n->id, id, field, v);
}

static inline uint64_t
meta_of(struct node *n, uint64_t *quarantined)
{
	struct store_meta m;

	cr_assert_eq(store_meta_get(n->st, &m), 0);
	if (quarantined)
		*quarantined = m.quarantined;
	return m.records;
}

/* 1 if the node's LMDB data file holds the bytes of s anywhere. */
static inline int
file_has(struct node *n, const char *s)
{
	char path[256];
	FILE *f;
	char *buf;
	long len;
	int found;

	snprintf(path, sizeof(path), "%s/data.mdb", n->dir);
	cr_assert_not_null(f = fopen(path, "rb"));
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	rewind(f);
	cr_assert_not_null(buf = malloc((size_t)len + 1));
	cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	found = memmem(buf, (size_t)len, s, strlen(s)) != NULL;
	free(buf);
	return found;
}

/* ------------------------------------------------------------------ */
/* Links: a session on each side, bytes moved by hand                  */
/* ------------------------------------------------------------------ */

struct link {
	struct node *n[2];
	struct sync_session *s[2];
	int bytewise;
};

static inline void
link_open(struct link *l, struct node *a, struct node *b,
    const struct sync_opts *o, uint64_t now)
{
	memset(l, 0, sizeof(*l));
	l->n[0] = a;
	l->n[1] = b;
	cr_assert_eq(sync_session_new(a->st, pol, b->id, o, &l->s[0]), 0);
	cr_assert_eq(sync_session_new(b->st, pol, a->id, o, &l->s[1]), 0);
	cr_assert_eq(sync_session_start(l->s[0], now), 0);
	cr_assert_eq(sync_session_start(l->s[1], now), 0);
}

static inline void
link_close(struct link *l)
{
	sync_session_free(l->s[0]);
	sync_session_free(l->s[1]);
	l->s[0] = l->s[1] = NULL;
}

/* Counts the frames of one type in a byte string of whole frames. */
static inline int
count_frames(const uint8_t *p, size_t n, enum frame_type type,
    struct frame_msg *last)
{
	const uint8_t *body;
	size_t blen, used;
	struct frame_msg m;
	int k = 0;

	while (n > 0) {
		cr_assert_eq(frame_split(p, n, FRAME_BODY_MAX, &body, &blen,
		    &used), 0);
		cr_assert_eq(frame_decode(body, blen, &m), 0);
		if (m.type == type) {
			k++;
			if (last)
				*last = m;
		}
		p += used;
		n -= used;
	}
	return k;
}

static inline int
pending_frames(struct sync_session *s, enum frame_type type,
    struct frame_msg *last)
{
	const uint8_t *p;
	size_t n = sync_session_pending(s, &p);

	return count_frames(p, n, type, last);
}

/* Moves what side `from` queued into the other side; returns bytes. */
static inline size_t
deliver(struct link *l, int from, uint64_t now)
{
	struct sync_session *to = l->s[!from];
	const uint8_t *p;
	size_t n = sync_session_pending(l->s[from], &p);
	int rc = 0;

	if (n == 0)
		return 0;
	if (l->bytewise) {
		for (size_t i = 0; i < n && rc == 0; i++)
			rc = sync_session_feed(to, p + i, 1, now);
	} else {
		rc = sync_session_feed(to, p, n, now);
	}
	cr_assert_eq(rc, 0, "%s -> %s: %s (%s)", l->n[from]->id,
	    l->n[!from]->id, nbx_strerror(rc), sync_session_error(to));
	sync_session_consume(l->s[from], n);
	return n;
}

/* Pumps and delivers over every link until no byte moves. */
static inline int
run(struct link **ls, int nl, uint64_t now, int max_rounds)
{
	for (int round = 0; round < max_rounds; round++) {
		size_t moved = 0;

		for (int i = 0; i < nl; i++)
			for (int j = 0; j < 2; j++)
				cr_assert_eq(sync_session_pump(ls[i]->s[j],
				    now), 0, "%s",
				    sync_session_error(ls[i]->s[j]));
		for (int i = 0; i < nl; i++)
			for (int j = 0; j < 2; j++)
				moved += deliver(ls[i], j, now);
		if (moved == 0)
			return round;
	}
	cr_assert_fail("links did not settle in %d rounds", max_rounds);
	return -1;
}

static inline int
run1(struct link *l, uint64_t now)
{
	return run(&l, 1, now, 10000);
}

#endif
