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

/* element e of set field f, present */
static struct change
elem(const char *f, const char *e, uint64_t hlc, const char *origin)
{
	struct change c = field(f, "", hlc, origin);

	c.kind = CHANGE_ELEM;
	c.elem = nbx_str_c(e);
	c.val.t = NBX_V_BOOL;
	c.val.i = 1;
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

/* r's canonical encoding is exactly the n bytes at want */
static void
assert_encodes_as(const struct crdt_record *r, const void *want, size_t n)
{
	struct nbx_buf b;

	nbx_buf_init(&b, 1 << 20);
	cr_assert_eq(crdt_record_encode(r, &b), 0);
	cr_assert_eq(b.len, n);
	cr_assert_eq(memcmp(b.p, want, n), 0);
	nbx_buf_fini(&b);
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

/*
 * The creator narrows the audience and drops a writer: the value that
 * writer wrote keeps the audience it was written under (every receiver
 * would refuse the write under an audience without its writer, so a
 * re-stamped copy would never converge), while the creator's own value
 * moves to the new audience.
 */
Test(crdt, restamp_leaves_a_removed_writers_value_under_its_audience)
{
	struct crdt_record r = rec();
	const struct crdt_reg *g;

	merge(&r, audience(10, "ee,lv,fi"));
	merge(&r, scoped("pseudonym", "P", 11, "ee", 10, "ee,lv,fi"));
	merge(&r, scoped("status", "accepted", 12, "fi", 10, "ee,lv,fi"));
	merge(&r, audience(20, "ee,lv"));
	cr_assert_eq(crdt_record_restamp(&r, SELF), 1);
	g = crdt_record_find(&r, nbx_str_c("pseudonym"),
	    (struct nbx_str){ "", 0 });
	cr_assert_eq(g->aud.hlc, 20);
	cr_assert_eq(g->aud.n, 2);
	g = crdt_record_find(&r, nbx_str_c("status"), (struct nbx_str){ "", 0 });
	cr_assert_eq(g->aud.hlc, 10, "fi left: its value keeps its audience");
	cr_assert_eq(g->aud.n, 3);
	cr_assert(g->flags & CRDT_REG_VALUE);
	/* and fi back in the audience: its value moves with it */
	merge(&r, audience(30, "ee,lv,fi"));
	cr_assert_eq(crdt_record_restamp(&r, SELF), 2);
	cr_assert_eq(g->aud.hlc, 30);
	crdt_record_fini(&r);
}

Test(crdt, encode_decode_round_trip)
{
	struct crdt_record r = rec(), d;
	struct nbx_buf b1;

	merge(&r, field("city", "Riga", 10, "ee"));
	merge(&r, scoped("status", "referred", 20, "ee", 10, "lv,ee"));
	merge(&r, simple(CHANGE_STATE, REC_DELETED, 21, "ee"));
	merge(&r, elem("languages", "lv", 22, "ee"));
	nbx_buf_init(&b1, 1 << 20);
	cr_assert_eq(crdt_record_encode(&r, &b1), 0);
	crdt_record_init(&d, r.coll, r.id);
	cr_assert_eq(crdt_record_decode(b1.p, b1.len, &d), 0);
	cr_assert_eq(d.nregs, 3);
	cr_assert_eq(d.state, REC_DELETED);
	cr_assert_str_eq(value_of(&d, "city"), "Riga");
	assert_encodes_as(&d, b1.p, b1.len);
	/* every truncation of a stored record is refused, never half-read */
	for (size_t n = 0; n < b1.len; n++) {
		struct crdt_record t;

		crdt_record_init(&t, r.coll, r.id);
		cr_assert_eq(crdt_record_decode(b1.p, n, &t), NBX_EMALFORMED);
		cr_assert_eq(t.nregs, 0);
		crdt_record_fini(&t);
	}
	nbx_buf_fini(&b1);
	crdt_record_fini(&d);
	crdt_record_fini(&r);
}

/*
 * The record of the format tests: versions near its state version (by
 * its origin, at or after it) and not (older, another origin, unset), an
 * audience, a set element and a receipt.
 */
static struct crdt_record
mixed_record(void)
{
	struct crdt_record r = rec();
	struct change c;

	merge(&r, simple(CHANGE_STATE, REC_LIVE, 100, "ee"));
	merge(&r, audience(101, "ee,lv"));
	merge(&r, field("city", "Riga", 102, "ee"));
	c = field("age", "", 99, "ee");
	c.val.t = NBX_V_INT;
	c.val.i = 41;
	merge(&r, c);
	merge(&r, scoped("status", "accepted", 5000000000u, "lv", 101, "ee,lv"));
	merge(&r, elem("languages", "ru", 103, "ee"));
	c = simple(CHANGE_RECEIPT, 0, 104, "ee");
	c.field = nbx_str_c("revoke");
	c.elem = nbx_str_c("lt");
	c.val.t = NBX_V_INT;
	c.val.i = RECEIPT_PENDING;
	merge(&r, c);
	return r;
}

/* mixed_record() as format 1 wrote it (every version [hlc, origin]) */
static const uint8_t MIXED_FORMAT1[] = {
	0x9a, 0x01, 0xc2, 0x92, 0x00, 0xa0, 0x00, 0x92, 0x64, 0xa2, 0x65, 0x65,
	0x92, 0x65, 0xa2, 0x65, 0x65, 0x92, 0xa2, 0x65, 0x65, 0xa2, 0x6c, 0x76,
	0x92, 0x00, 0xa0, 0x94, 0x97, 0xa3, 0x61, 0x67, 0x65, 0xa0, 0x02, 0x29,
	0x92, 0x63, 0xa2, 0x65, 0x65, 0x92, 0x00, 0xa0, 0x90, 0x97, 0xa4, 0x63,
	0x69, 0x74, 0x79, 0xa0, 0x02, 0xa4, 0x52, 0x69, 0x67, 0x61, 0x92, 0x66,
	0xa2, 0x65, 0x65, 0x92, 0x00, 0xa0, 0x90, 0x97, 0xa9, 0x6c, 0x61, 0x6e,
	0x67, 0x75, 0x61, 0x67, 0x65, 0x73, 0xa2, 0x72, 0x75, 0x06, 0xc3, 0x92,
	0x67, 0xa2, 0x65, 0x65, 0x92, 0x00, 0xa0, 0x90, 0x97, 0xa6, 0x73, 0x74,
	0x61, 0x74, 0x75, 0x73, 0xa0, 0x03, 0xa8, 0x61, 0x63, 0x63, 0x65, 0x70,
	0x74, 0x65, 0x64, 0x92, 0xcf, 0x00, 0x00, 0x00, 0x01, 0x2a, 0x05, 0xf2,
	0x00, 0xa2, 0x6c, 0x76, 0x92, 0x65, 0xa2, 0x65, 0x65, 0x92, 0xa2, 0x65,
	0x65, 0xa2, 0x6c, 0x76, 0x91, 0x94, 0xa6, 0x72, 0x65, 0x76, 0x6f, 0x6b,
	0x65, 0xa2, 0x6c, 0x74, 0x01, 0x92, 0x68, 0xa2, 0x65, 0x65
};

/* Stores written before format 2 read as the state they held. */
Test(crdt, format_1_records_are_still_read)
{
	struct crdt_record r = mixed_record(), d = rec();
	struct nbx_buf want;

	nbx_buf_init(&want, 1 << 20);
	cr_assert_eq(crdt_record_decode(MIXED_FORMAT1, sizeof(MIXED_FORMAT1),
	    &d), 0);
	cr_assert_eq(d.nregs, 4);
	cr_assert_eq(d.nrcpt, 1);
	cr_assert_eq(crdt_record_encode(&r, &want), 0);
	assert_encodes_as(&d, want.p, want.len);
	/* format 2 is smaller: the versions near the state are one int */
	cr_assert_lt(want.len, sizeof(MIXED_FORMAT1));
	nbx_buf_fini(&want);
	crdt_record_fini(&d);
	crdt_record_fini(&r);
}

/* an hlc: 48 bits of milliseconds, a 16-bit counter */
#define HLC(ms, n)	((uint64_t)(ms) << 16 | (uint64_t)(n))

/* occurrences of the msgpack string s in b */
static int
str_count(const struct nbx_buf *b, const char *s)
{
	size_t n = strlen(s);
	int k = 0;

	for (size_t i = 0; i + n + 1 <= b->len; i++)
		k += b->p[i] == (0xa0 | n) && memcmp(b->p + i + 1, s, n) == 0;
	return k;
}

/*
 * A record one node wrote at once names that node once, in its state
 * version; every other version is its distance from it.  A version of
 * another node, or one older than the state, is written in full.
 */
Test(crdt, versions_near_the_state_are_written_as_ints)
{
	static const char *const names[] = { "a", "b", "c", "d", "e", "f",
	    "g", "h" };
	struct crdt_record r = rec(), d = rec();
	struct nbx_buf b;

	nbx_buf_init(&b, 1 << 20);
	merge(&r, simple(CHANGE_STATE, REC_LIVE, HLC(1000, 0), "ee"));
	for (int i = 0; i < 8; i++)
		merge(&r, field(names[i], "v", HLC(1000, i + 1),
		    "ee"));
	cr_assert_eq(crdt_record_encode(&r, &b), 0);
	cr_assert_eq(str_count(&b, "ee"), 1);
	merge(&r, field("z", "v", HLC(1000, 50), "lv"));
	merge(&r, field("y", "v", HLC(999, 0), "ee"));
	b.len = 0;
	cr_assert_eq(crdt_record_encode(&r, &b), 0);
	cr_assert_eq(str_count(&b, "ee"), 2);
	cr_assert_eq(str_count(&b, "lv"), 1);
	cr_assert_eq(crdt_record_decode(b.p, b.len, &d), 0);
	cr_assert_eq(d.nregs, 10);
	for (size_t i = 0; i < r.nregs; i++) {
		cr_assert_eq(d.regs[i].ver.hlc, r.regs[i].ver.hlc);
		cr_assert(nbx_str_eq(d.regs[i].ver.origin, r.regs[i].ver.origin));
	}
	assert_encodes_as(&d, b.p, b.len);
	nbx_buf_fini(&b);
	crdt_record_fini(&d);
	crdt_record_fini(&r);
}

static int
decode_bytes(const uint8_t *p, size_t n)
{
	struct crdt_record d = rec();
	int rc = crdt_record_decode(p, n, &d);

	crdt_record_fini(&d);
	return rc;
}

/*
 * An int version needs a state version to be near, and must fit; nil is
 * an unset version, in format 2 only.
 */
Test(crdt, near_versions_are_checked)
{
	/* [2, false, [0,""], live, [10,"ee"], 1, [], [0,""], [], []] */
	static const uint8_t ok[] = { 0x9a, 0x02, 0xc2, 0x92, 0x00, 0xa0,
	    0x00, 0x92, 0x0a, 0xa2, 0x65, 0x65, 0x01, 0x90, 0x92, 0x00, 0xa0,
	    0x90, 0x90 };
	/* the state version unset: nothing to be near */
	static const uint8_t unset[] = { 0x9a, 0x02, 0xc2, 0x92, 0x00, 0xa0,
	    0x00, 0x92, 0x00, 0xa0, 0x01, 0x90, 0x92, 0x00, 0xa0, 0x90, 0x90 };
	/* the state version's hlc the largest: hlc + 1 overflows */
	static const uint8_t over[] = { 0x9a, 0x02, 0xc2, 0x92, 0x00, 0xa0,
	    0x00, 0x92, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xa2, 0x65, 0x65, 0x01, 0x90, 0x92, 0x00, 0xa0, 0x90, 0x90 };
	/* as written: the unset versions nil */
	static const uint8_t canon[] = { 0x9a, 0x02, 0xc2, 0xc0, 0x00, 0x92,
	    0x0a, 0xa2, 0x65, 0x65, 0x01, 0x90, 0xc0, 0x90, 0x90 };
	/* format 1 has no int or nil versions; format 3 does not exist */
	uint8_t f1[sizeof(ok)], f3[sizeof(ok)], c1[sizeof(canon)];
	struct crdt_record d = rec();

	memcpy(f1, ok, sizeof(ok));
	f1[1] = 0x01;
	memcpy(f3, ok, sizeof(ok));
	f3[1] = 0x03;
	memcpy(c1, canon, sizeof(canon));
	c1[1] = 0x01;
	cr_assert_eq(crdt_record_decode(ok, sizeof(ok), &d), 0);
	cr_assert_eq(d.aud.hlc, 11);
	cr_assert(nbx_str_eq(d.aud.origin, nbx_str_c("ee")));
	assert_encodes_as(&d, canon, sizeof(canon));
	crdt_record_fini(&d);
	cr_assert_eq(decode_bytes(canon, sizeof(canon)), 0);
	cr_assert_eq(decode_bytes(c1, sizeof(c1)), NBX_EMALFORMED);
	cr_assert_eq(decode_bytes(unset, sizeof(unset)), NBX_EMALFORMED);
	cr_assert_eq(decode_bytes(over, sizeof(over)), NBX_EMALFORMED);
	cr_assert_eq(decode_bytes(f1, sizeof(f1)), NBX_EMALFORMED);
	cr_assert_eq(decode_bytes(f3, sizeof(f3)), NBX_EMALFORMED);
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
	struct nbx_buf b1;

	merge(&r, field("city", "Riga", 10, "ee"));
	merge(&r, audience(11, "ee,lv"));
	merge(&r, scoped("status", "referred", 20, "ee", 11, "ee,lv"));
	merge(&r, simple(CHANGE_STATE, REC_LIVE, 21, "ee"));
	cr_assert_eq(crdt_record_changes(&r, collect, &d), 0);
	nbx_buf_init(&b1, 1 << 20);
	cr_assert_eq(crdt_record_encode(&r, &b1), 0);
	assert_encodes_as(&d, b1.p, b1.len);
	nbx_buf_fini(&b1);
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
	struct nbx_buf bb, bs;
	struct crdt_reg *mem;
	size_t cap;

	for (int i = 0; i < 18; i++)
		merge(&big, field(fields[i], "v", 10 + (uint64_t)i, "ee"));
	merge(&big, simple(CHANGE_STATE, REC_DELETED, 40, "ee"));
	merge(&small, field("city", "Riga", 10, "ee"));
	nbx_buf_init(&bb, 1 << 20);
	nbx_buf_init(&bs, 1 << 20);
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
	assert_encodes_as(&r, bs.p, bs.len);

	/* and the larger again, after a reset, as into a fresh record */
	crdt_record_reset(&r, nbx_str_c("case"), nbx_str_c("ee:1"));
	cr_assert_eq(crdt_record_decode(bb.p, bb.len, &r), 0);
	crdt_record_init(&fresh, nbx_str_c("case"), nbx_str_c("ee:1"));
	cr_assert_eq(crdt_record_decode(bb.p, bb.len, &fresh), 0);
	assert_encodes_as(&r, bb.p, bb.len);
	cr_assert_eq(r.nregs, fresh.nregs);
	cr_assert_eq(r.state, REC_DELETED);

	/* a merge into a reset record starts from nothing */
	crdt_record_reset(&r, nbx_str_c("case"), nbx_str_c("ee:1"));
	merge(&r, field("city", "Riga", 10, "ee"));
	assert_encodes_as(&r, bs.p, bs.len);

	crdt_record_fini(&fresh);
	crdt_record_fini(&r);
	crdt_record_fini(&big);
	crdt_record_fini(&small);
	nbx_buf_fini(&bb);
	nbx_buf_fini(&bs);
}
