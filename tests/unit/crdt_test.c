/*
 * crdt_test.c - merge rules of one record, straight on crdt_record_merge:
 * last-writer-wins, erase absorbs, delete is undone by a newer live state,
 * audience narrowing purges and keeps purging, canonical encoding.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crdt.h"
#include "hlc.h"
#include "nbx_err.h"

static const struct nbx_str SELF = NBX_STR("lv");

static struct change
field(const char *f, const char *v, uint64_t hlc, const char *origin)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = CHANGE_FIELD;
	c.coll = nbx_str_c("case");
	c.id = nbx_str_c("ee:1");
	c.field = nbx_str_c(f);
	c.val.t = NBX_V_STR;
	c.val.s = nbx_str_c(v);
	c.hlc = hlc;
	c.origin = nbx_str_c(origin);
	return c;
}

static void
set_aud(struct nbx_audience *a, uint64_t hlc, const char *ids)
{
	static char buf[8][64];
	static int slot;
	char *s = buf[slot++ % 8], *tok, *save;

	memset(a, 0, sizeof(*a));
	a->hlc = hlc;
	a->origin = nbx_str_c("ee");
	snprintf(s, 64, "%s", ids);
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		a->ids[a->n++] = nbx_str_c(tok);
}

static struct change
scoped(const char *f, const char *v, uint64_t hlc, const char *origin,
    uint64_t aud_hlc, const char *aud)
{
	struct change c = field(f, v, hlc, origin);

	set_aud(&c.aud, aud_hlc, aud);
	return c;
}

static struct change
audience(uint64_t hlc, const char *ids)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = CHANGE_AUDIENCE;
	c.coll = nbx_str_c("case");
	c.id = nbx_str_c("ee:1");
	c.hlc = hlc;
	c.origin = nbx_str_c("ee");
	set_aud(&c.aud, hlc, ids);
	return c;
}

static struct change
simple(enum change_kind k, int64_t v, uint64_t hlc, const char *origin)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = k;
	c.coll = nbx_str_c("case");
	c.id = nbx_str_c("ee:1");
	c.hlc = hlc;
	c.origin = nbx_str_c(origin);
	if (k == CHANGE_STATE) {
		c.val.t = NBX_V_INT;
		c.val.i = v;
	}
	return c;
}

static int
merge(struct crdt_record *r, struct change c)
{
	int changed = -1;

	cr_assert_eq(crdt_record_merge(r, &c, SELF, &changed), 0);
	return changed;
}

static const char *
value_of(const struct crdt_record *r, const char *f)
{
	static char out[256];
	const struct crdt_reg *g = crdt_record_find(r, nbx_str_c(f),
	    (struct nbx_str){ "", 0 });

	if (g == NULL || !(g->flags & CRDT_REG_VALUE))
		return NULL;
	snprintf(out, sizeof(out), "%.*s", (int)g->val.s.n, g->val.s.p);
	return out;
}

static struct crdt_record
rec(void)
{
	struct crdt_record r;

	crdt_record_init(&r, nbx_str_c("case"), nbx_str_c("ee:1"));
	return r;
}

Test(crdt, last_writer_wins_with_origin_tiebreak)
{
	struct crdt_record r = rec();

	cr_assert_eq(merge(&r, field("city", "Riga", 10, "ee")), 1);
	cr_assert_eq(merge(&r, field("city", "Tartu", 5, "lv")), 0);
	cr_assert_str_eq(value_of(&r, "city"), "Riga");
	/* same hlc: greater origin wins */
	cr_assert_eq(merge(&r, field("city", "Vilnius", 10, "lt")), 1);
	cr_assert_str_eq(value_of(&r, "city"), "Vilnius");
	cr_assert_eq(merge(&r, field("city", "Riga", 10, "ee")), 0);
	/* duplicate is a no-op */
	cr_assert_eq(merge(&r, field("city", "Vilnius", 10, "lt")), 0);
	crdt_record_fini(&r);
}

Test(crdt, erase_absorbs_everything_after)
{
	struct crdt_record r = rec();
	struct change later = field("city", "Riga", 1000, "ee");

	merge(&r, field("city", "Tartu", 10, "ee"));
	merge(&r, audience(11, "ee,lv"));
	cr_assert_eq(merge(&r, simple(CHANGE_ERASE, 0, 20, "ee")), 1);
	cr_assert(r.erased);
	cr_assert_eq(r.nregs, 0, "erase must purge every register");
	cr_assert_eq(r.aud.n, 0);
	cr_assert_eq(merge(&r, later), 0);
	cr_assert_eq(merge(&r, simple(CHANGE_STATE, REC_LIVE, 2000, "ee")), 0);
	cr_assert_eq(merge(&r, audience(3000, "ee,lv")), 0);
	cr_assert_eq(r.nregs, 0);
	/* a greater erase version replaces the smaller, idempotently */
	cr_assert_eq(merge(&r, simple(CHANGE_ERASE, 0, 30, "lv")), 1);
	cr_assert_eq(r.erase.hlc, 30);
	cr_assert_eq(merge(&r, simple(CHANGE_ERASE, 0, 25, "fi")), 0);
	crdt_record_fini(&r);
}

Test(crdt, deleted_is_lww_and_newer_live_revives)
{
	struct crdt_record r = rec();

	merge(&r, simple(CHANGE_STATE, REC_LIVE, 10, "ee"));
	cr_assert_eq(merge(&r, simple(CHANGE_STATE, REC_DELETED, 20, "ee")), 1);
	cr_assert_eq(r.state, REC_DELETED);
	cr_assert_eq(merge(&r, simple(CHANGE_STATE, REC_LIVE, 15, "ee")), 0);
	cr_assert_eq(r.state, REC_DELETED, "an older live must not revive");
	cr_assert_eq(merge(&r, simple(CHANGE_STATE, REC_LIVE, 30, "ee")), 1);
	cr_assert_eq(r.state, REC_LIVE);
	crdt_record_fini(&r);
}

Test(crdt, narrowing_audience_purges_and_ignores_older)
{
	struct crdt_record r = rec();

	cr_assert_eq(merge(&r, scoped("status", "referred", 20, "ee", 10,
	    "ee,lv")), 1);
	cr_assert_str_eq(value_of(&r, "status"), "referred");
	/* ee drops lv: lv purges its scoped values */
	cr_assert_eq(merge(&r, audience(30, "ee")), 1);
	cr_assert_null(value_of(&r, "status"));
	cr_assert_eq(r.excl.hlc, 30);
	/* a newer value still in flight under the old audience is ignored */
	merge(&r, scoped("status", "accepted", 40, "ee", 10, "ee,lv"));
	cr_assert_null(value_of(&r, "status"));
	merge(&r, scoped("pseudonym", "K.", 41, "ee", 10, "ee,lv"));
	cr_assert_null(value_of(&r, "pseudonym"));
	/* the purged register keeps no audience ids either */
	cr_assert_eq(crdt_record_find(&r, nbx_str_c("status"),
	    (struct nbx_str){ "", 0 })->aud.n, 0);
	/* lv is added back: values sent under the new audience count */
	merge(&r, audience(50, "ee,lv"));
	merge(&r, scoped("status", "accepted", 40, "ee", 50, "ee,lv"));
	cr_assert_str_eq(value_of(&r, "status"), "accepted");
	crdt_record_fini(&r);
}

Test(crdt, narrowing_arriving_late_still_purges)
{
	struct crdt_record a = rec(), b = rec();
	struct change c1 = scoped("status", "referred", 20, "ee", 10, "ee,lv");
	struct change n = audience(30, "ee,fi");
	struct nbx_buf ea, eb;

	merge(&a, c1);
	merge(&a, n);
	merge(&b, n);
	merge(&b, c1);
	nbx_buf_init(&ea, 1 << 20);
	nbx_buf_init(&eb, 1 << 20);
	cr_assert_eq(crdt_record_encode(&a, &ea), 0);
	cr_assert_eq(crdt_record_encode(&b, &eb), 0);
	cr_assert_eq(ea.len, eb.len);
	cr_assert_eq(memcmp(ea.p, eb.p, ea.len), 0,
	    "order of narrowing and value must not matter");
	cr_assert_null(value_of(&a, "status"));
	nbx_buf_fini(&ea);
	nbx_buf_fini(&eb);
	crdt_record_fini(&a);
	crdt_record_fini(&b);
}

Test(crdt, restamp_moves_values_to_new_audience)
{
	struct crdt_record r = rec();
	const struct crdt_reg *g;

	crdt_record_fini(&r);
	crdt_record_init(&r, nbx_str_c("case"), nbx_str_c("ee:1"));
	merge(&r, scoped("status", "referred", 20, "ee", 10, "ee,lv"));
	merge(&r, audience(30, "ee,lv,fi"));
	g = crdt_record_find(&r, nbx_str_c("status"), (struct nbx_str){ "", 0 });
	cr_assert_eq(g->aud.hlc, 10);
	cr_assert_eq(crdt_record_restamp(&r, SELF), 1);
	cr_assert_eq(g->aud.hlc, 30);
	cr_assert_eq(g->aud.n, 3);
	cr_assert_eq(g->ver.hlc, 20, "restamp keeps the write's version");
	crdt_record_fini(&r);
}

Test(crdt, encode_decode_round_trip)
{
	struct crdt_record r = rec(), d;
	struct change e;
	struct nbx_buf b1, b2;

	merge(&r, field("city", "Riga", 10, "ee"));
	merge(&r, scoped("status", "referred", 20, "ee", 10, "lv,ee"));
	merge(&r, simple(CHANGE_STATE, REC_DELETED, 21, "ee"));
	e = field("languages", "", 22, "ee");
	e.kind = CHANGE_ELEM;
	e.elem = nbx_str_c("lv");
	e.val.t = NBX_V_BOOL;
	e.val.i = 1;
	merge(&r, e);
	nbx_buf_init(&b1, 1 << 20);
	nbx_buf_init(&b2, 1 << 20);
	cr_assert_eq(crdt_record_encode(&r, &b1), 0);
	crdt_record_init(&d, r.coll, r.id);
	cr_assert_eq(crdt_record_decode(b1.p, b1.len, &d), 0);
	cr_assert_eq(d.nregs, 3);
	cr_assert_eq(d.state, REC_DELETED);
	cr_assert_str_eq(value_of(&d, "city"), "Riga");
	cr_assert_eq(crdt_record_encode(&d, &b2), 0);
	cr_assert_eq(b1.len, b2.len);
	cr_assert_eq(memcmp(b1.p, b2.p, b1.len), 0);
	/* every truncation of a stored record is refused, never half-read */
	for (size_t n = 0; n < b1.len; n++) {
		struct crdt_record t;

		crdt_record_init(&t, r.coll, r.id);
		cr_assert_eq(crdt_record_decode(b1.p, n, &t), NBX_EMALFORMED);
		cr_assert_eq(t.nregs, 0);
		crdt_record_fini(&t);
	}
	nbx_buf_fini(&b1);
	nbx_buf_fini(&b2);
	crdt_record_fini(&d);
	crdt_record_fini(&r);
}

static int
collect(void *arg, const struct change *c)
{
	struct crdt_record *dst = arg;
	int changed;

	return crdt_record_merge(dst, c, SELF, &changed);
}

Test(crdt, changes_rebuild_the_record)
{
	struct crdt_record r = rec(), d = rec();
	struct nbx_buf b1, b2;

	merge(&r, field("city", "Riga", 10, "ee"));
	merge(&r, audience(11, "ee,lv"));
	merge(&r, scoped("status", "referred", 20, "ee", 11, "ee,lv"));
	merge(&r, simple(CHANGE_STATE, REC_LIVE, 21, "ee"));
	cr_assert_eq(crdt_record_changes(&r, collect, &d), 0);
	nbx_buf_init(&b1, 1 << 20);
	nbx_buf_init(&b2, 1 << 20);
	crdt_record_encode(&r, &b1);
	crdt_record_encode(&d, &b2);
	cr_assert_eq(b1.len, b2.len);
	cr_assert_eq(memcmp(b1.p, b2.p, b1.len), 0);
	nbx_buf_fini(&b1);
	nbx_buf_fini(&b2);
	crdt_record_fini(&d);
	crdt_record_fini(&r);
}

/*
 * A reset record is the empty record for its new key, whatever it held,
 * and keeps its arrays: decoding a larger record into it, then a smaller
 * one, gives what a fresh record would.
 */
Test(crdt, reset_record_is_empty_and_keeps_its_memory)
{
	static const char *const fields[] = { "city", "pseudonym", "language",
	    "case_notes", "country_of_origin", "destination_country",
	    "receiving_organisation", "needs_shelter", "referral_date",
	    "phone", "address", "internal_contact", "legal_name",
	    "consent_date", "return_date", "status", "year_of_birth",
	    "needs_escort" };
	struct crdt_record big = rec(), small = rec(), r = rec(), fresh;
	struct nbx_buf bb, bs, out;
	struct crdt_reg *mem;
	size_t cap;

	for (int i = 0; i < 18; i++)
		merge(&big, field(fields[i], "v", 10 + (uint64_t)i, "ee"));
	merge(&big, simple(CHANGE_STATE, REC_DELETED, 40, "ee"));
	merge(&small, field("city", "Riga", 10, "ee"));
	nbx_buf_init(&bb, 1 << 20);
	nbx_buf_init(&bs, 1 << 20);
	nbx_buf_init(&out, 1 << 20);
	cr_assert_eq(crdt_record_encode(&big, &bb), 0);
	cr_assert_eq(crdt_record_encode(&small, &bs), 0);

	/* r grows past its first arrays, then is reset */
	cr_assert_eq(crdt_record_decode(bb.p, bb.len, &r), 0);
	cr_assert_eq(r.nregs, 18);
	mem = r.regs;
	cap = r.cap;
	crdt_record_reset(&r, nbx_str_c("case"), nbx_str_c("ee:2"));
	cr_assert_eq(r.nregs, 0);
	cr_assert_eq(r.state, REC_LIVE);
	cr_assert_eq(r.state_ver.hlc, 0);
	cr_assert(nbx_str_eq(r.id, nbx_str_c("ee:2")));
	cr_assert_null(value_of(&r, "city"), "nothing of the old record");
	cr_assert_eq(r.regs, mem, "the array is kept");
	cr_assert_eq(r.cap, cap);

	/* the smaller record decodes into the kept array, byte for byte */
	cr_assert_eq(crdt_record_decode(bs.p, bs.len, &r), 0);
	cr_assert_eq(r.regs, mem);
	cr_assert_eq(crdt_record_encode(&r, &out), 0);
	cr_assert_eq(out.len, bs.len);
	cr_assert_eq(memcmp(out.p, bs.p, bs.len), 0);

	/* and the larger again, after a reset, as into a fresh record */
	crdt_record_reset(&r, nbx_str_c("case"), nbx_str_c("ee:1"));
	cr_assert_eq(crdt_record_decode(bb.p, bb.len, &r), 0);
	crdt_record_init(&fresh, nbx_str_c("case"), nbx_str_c("ee:1"));
	cr_assert_eq(crdt_record_decode(bb.p, bb.len, &fresh), 0);
	out.len = 0;
	cr_assert_eq(crdt_record_encode(&r, &out), 0);
	cr_assert_eq(out.len, bb.len);
	cr_assert_eq(memcmp(out.p, bb.p, bb.len), 0);
	cr_assert_eq(r.nregs, fresh.nregs);
	cr_assert_eq(r.state, REC_DELETED);

	/* a merge into a reset record starts from nothing */
	crdt_record_reset(&r, nbx_str_c("case"), nbx_str_c("ee:1"));
	merge(&r, field("city", "Riga", 10, "ee"));
	out.len = 0;
	cr_assert_eq(crdt_record_encode(&r, &out), 0);
	cr_assert_eq(out.len, bs.len);
	cr_assert_eq(memcmp(out.p, bs.p, bs.len), 0);

	crdt_record_fini(&fresh);
	crdt_record_fini(&r);
	crdt_record_fini(&big);
	crdt_record_fini(&small);
	nbx_buf_fini(&bb);
	nbx_buf_fini(&bs);
	nbx_buf_fini(&out);
}
