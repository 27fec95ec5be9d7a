/*
 * policy_test.c - the regional schema (conf/schema.conf) and the rules
 * derived from it: schema loading and its error messages, value checks,
 * who may write, who may receive, and change validation.
 *
 * Run from the repository root: the schema is read from conf/schema.conf.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "change.h"
#include "crdt.h"
#include "conf_file.h"
#include "nbx_err.h"
#include "policy.h"
#include "testlib.h"

#define SCHEMA	"conf/schema.conf"
#define HLC	((uint64_t)1 << 20)

static struct policy *pol;

static void
load_schema(void)
{
	char err[512];
	int rc = conf_schema_load(SCHEMA, &pol, err, sizeof(err));

	cr_assert_eq(rc, 0, "conf_schema_load(%s): %d %s", SCHEMA, rc, err);
	cr_assert_str_empty(err);
}

static void
free_schema(void)
{
	policy_free(pol);
	pol = NULL;
}

static const struct pol_field *
field(const char *coll, const char *name)
{
	const struct pol_coll *c = policy_coll(pol, nbx_str_c(coll));

	cr_assert_not_null(c, "collection %s", coll);
	const struct pol_field *f = policy_field(c, nbx_str_c(name));
	cr_assert_not_null(f, "field %s.%s", coll, name);
	return f;
}

/*
 * An audience over a comma-separated, sorted list of literal ids.  The
 * slices point into `ids`, so pass a string literal.
 */
static struct nbx_audience
aud(uint64_t hlc, const char *origin, const char *ids)
{
	struct nbx_audience a;
	const char *p = ids;

	memset(&a, 0, sizeof(a));
	a.hlc = hlc;
	a.origin = nbx_str_c(origin);
	while (p && *p) {
		const char *e = strchr(p, ',');
		uint32_t n = e ? (uint32_t)(e - p) : (uint32_t)strlen(p);

		a.ids[a.n].p = p;
		a.ids[a.n++].n = n;
		p = e ? e + 1 : NULL;
	}
	return a;
}

static struct nbx_value
vstr(const char *s)
{
	struct nbx_value v = { .t = NBX_V_STR, .s = nbx_str_c(s) };
	return v;
}

static struct nbx_value
vint(int64_t i)
{
	struct nbx_value v = { .t = NBX_V_INT, .i = i };
	return v;
}

static struct nbx_value
vbool(int b)
{
	struct nbx_value v = { .t = NBX_V_BOOL, .i = b };
	return v;
}

static struct nbx_value
vnil(void)
{
	struct nbx_value v = { .t = NBX_V_NIL };
	return v;
}

static struct change
fchange(const char *coll, const char *id, const char *fld,
    struct nbx_value v, const char *origin)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = CHANGE_FIELD;
	c.coll = nbx_str_c(coll);
	c.id = nbx_str_c(id);
	c.field = nbx_str_c(fld);
	c.val = v;
	c.hlc = HLC;
	c.origin = nbx_str_c(origin);
	return c;
}

static struct change
rchange(enum change_kind kind, const char *coll, const char *id,
    const char *origin)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = kind;
	c.coll = nbx_str_c(coll);
	c.id = nbx_str_c(id);
	c.hlc = HLC;
	c.origin = nbx_str_c(origin);
	return c;
}

static int
check(const struct change *c, const char *self, int remote)
{
	return policy_check_change(pol, c, nbx_str_c(self), remote, NULL);
}

/* ------------------------------------------------------------------ */
/* The regional schema file                                           */
/* ------------------------------------------------------------------ */

TestSuite(schema, .init = load_schema, .fini = free_schema);

Test(schema, collections_in_file_order)
{
	static const char *names[] =
	    { "organisation", "service", "case", "training" };

	cr_assert_eq(policy_ncoll(pol), 4);
	for (size_t i = 0; i < 4; i++)
		cr_assert_str_eq(policy_coll_at(pol, i)->name, names[i]);
	cr_assert_null(policy_coll_at(pol, 4));
	cr_assert_null(policy_coll(pol, NBX_STR("cases")));
	cr_assert_null(policy_field(policy_coll(pol, NBX_STR("case")),
	    NBX_STR("name")));
}

/* What identifies, locates or contacts a victim never leaves the node. */
Test(schema, victim_identifiers_are_local)
{
	static const char *local[] = { "legal_name", "date_of_birth",
	    "phone", "address", "case_notes", "internal_contact" };

	for (size_t i = 0; i < sizeof(local) / sizeof(*local); i++) {
		const struct pol_field *f = field("case", local[i]);

		cr_assert_eq(f->share, SHARE_LOCAL, "case.%s", local[i]);
		cr_assert_eq(f->writers, WRITERS_ORIGIN, "case.%s", local[i]);
	}
	cr_assert_eq(field("case", "case_notes")->max, 4096);
	cr_assert_eq(field("case", "date_of_birth")->type, POL_DATE);
	cr_assert_eq(field("service", "address")->share, SHARE_LOCAL);
}

/* A case has no region field: all of it is audience-scoped or local. */
Test(schema, case_fields_are_audience_or_local)
{
	const struct pol_coll *c = policy_coll(pol, NBX_STR("case"));
	size_t naud = 0;

	cr_assert(c->has_audience_fields);
	for (size_t i = 0; i < c->nfields; i++) {
		cr_assert_neq(c->fields[i].share, SHARE_REGION, "case.%s",
		    c->fields[i].name);
		cr_assert_neq(c->fields[i].type, POL_SET, "case.%s",
		    c->fields[i].name);
		naud += c->fields[i].share == SHARE_AUDIENCE;
	}
	cr_assert_geq(naud, 10);
	cr_assert_eq(field("case", "pseudonym")->share, SHARE_AUDIENCE);
	cr_assert_eq(field("case", "referral_date")->type, POL_DATE);
	cr_assert_eq(field("case", "consent_given")->type, POL_BOOL);
	cr_assert_eq(field("case", "needs_shelter")->share, SHARE_AUDIENCE);
}

Test(schema, writers_audience_only_where_the_receiver_acts)
{
	static const char *aw[] =
	    { "status", "receiving_organisation", "return_date" };
	size_t n = 0;

	for (size_t ci = 0; ci < policy_ncoll(pol); ci++) {
		const struct pol_coll *c = policy_coll_at(pol, ci);

		for (size_t i = 0; i < c->nfields; i++) {
			const struct pol_field *f = &c->fields[i];

			if (f->writers != WRITERS_AUDIENCE)
				continue;
			cr_assert_str_eq(c->name, "case");
			cr_assert_eq(f->share, SHARE_AUDIENCE);
			n++;
		}
	}
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(field("case", aw[i])->writers, WRITERS_AUDIENCE);
}

/* The directory (organisations, services, training) is public. */
Test(schema, directory_is_region)
{
	static const char *colls[] = { "organisation", "service", "training" };

	for (size_t k = 0; k < 3; k++) {
		const struct pol_coll *c = policy_coll(pol,
		    nbx_str_c(colls[k]));

		cr_assert_not(c->has_audience_fields);
		for (size_t i = 0; i < c->nfields; i++) {
			const char *n = c->fields[i].name;
			int local = strcmp(n, "address") == 0 ||
			    strcmp(n, "notes") == 0 ||
			    strcmp(n, "internal_notes") == 0;

			cr_assert_eq(c->fields[i].share,
			    local ? SHARE_LOCAL : SHARE_REGION, "%s.%s",
			    colls[k], n);
		}
	}
}

Test(schema, field_details)
{
	const struct pol_field *f = field("case", "status");

	cr_assert_eq(f->type, POL_ENUM);
	cr_assert_eq(f->nvalues, 6);
	cr_assert_str_eq(f->values[0], "referred");
	cr_assert_str_eq(f->values[5], "closed");
	/* service.kind's values continue onto a second line. */
	f = field("service", "kind");
	cr_assert_eq(f->nvalues, 8);
	cr_assert_str_eq(f->values[7], "employment");
	f = field("service", "languages");
	cr_assert_eq(f->type, POL_SET);
	cr_assert_eq(f->max, 16);
	cr_assert_eq(f->elem_max, 8);
	cr_assert_eq(f->nvalues, 0);
	f = field("service", "free_places");
	cr_assert_eq(f->min, 0);
	cr_assert_eq(f->max, 10000);
	f = field("training", "description");
	cr_assert_eq(f->max, 2000);
	cr_assert_eq(f->share, SHARE_REGION);
	cr_assert_eq(field("organisation", "troika_member")->type, POL_BOOL);
	cr_assert_gt(field("case", "status")->line,
	    policy_coll(pol, NBX_STR("case"))->line);
}

/* ------------------------------------------------------------------ */
/* policy_may_send                                                    */
/* ------------------------------------------------------------------ */

Test(schema, may_send_region_to_any_peer)
{
	const struct pol_field *f = field("service", "free_places");
	struct nbx_audience a = aud(HLC, "ee", "ee,lv");

	cr_assert_eq(policy_may_send(f, NULL, NULL, NBX_STR("is")), 1);
	cr_assert_eq(policy_may_send(f, &a, &a, NBX_STR("no")), 1);
}

Test(schema, may_send_local_never)
{
	const struct pol_field *f = field("case", "legal_name");
	struct nbx_audience a = aud(HLC, "ee", "ee,lv");

	cr_assert_eq(policy_may_send(f, &a, &a, NBX_STR("lv")), 0);
	cr_assert_eq(policy_may_send(f, &a, &a, NBX_STR("ee")), 0);
	cr_assert_eq(policy_may_send(f, NULL, NULL, NBX_STR("lv")), 0);
	cr_assert_eq(policy_may_send(field("service", "address"), NULL, NULL,
	    NBX_STR("lv")), 0);
}

Test(schema, may_send_audience_needs_peer_in_both)
{
	const struct pol_field *f = field("case", "pseudonym");
	struct nbx_audience both = aud(HLC, "ee", "ee,lv");
	struct nbx_audience ee_only = aud(HLC + 1, "ee", "ee");
	struct nbx_audience wide = aud(HLC, "ee", "ee,fi,lv");
	struct nbx_audience empty = aud(0, "", "");

	cr_assert_eq(policy_may_send(f, &both, &both, NBX_STR("lv")), 1);
	/* Removed from the record's audience since the value was sent. */
	cr_assert_eq(policy_may_send(f, &both, &ee_only, NBX_STR("lv")), 0);
	/* The record's audience grew, but the value was sent under the
	   narrower one: a relay never widens it. */
	cr_assert_eq(policy_may_send(f, &both, &wide, NBX_STR("fi")), 0);
	cr_assert_eq(policy_may_send(f, &wide, &both, NBX_STR("fi")), 0);
	cr_assert_eq(policy_may_send(f, &both, &both, NBX_STR("fi")), 0);
	cr_assert_eq(policy_may_send(f, NULL, &both, NBX_STR("lv")), 0);
	cr_assert_eq(policy_may_send(f, &both, NULL, NBX_STR("lv")), 0);
	cr_assert_eq(policy_may_send(f, &empty, &empty, NBX_STR("lv")), 0);
	/* A prefix of an id is not the id. */
	cr_assert_eq(policy_may_send(f, &both, &both, NBX_STR("l")), 0);
}

Test(schema, audience_has)
{
	struct nbx_audience a = aud(HLC, "ee", "ee,lt,lv");

	cr_assert_eq(nbx_audience_has(&a, NBX_STR("lt")), 1);
	cr_assert_eq(nbx_audience_has(&a, NBX_STR("lv")), 1);
	cr_assert_eq(nbx_audience_has(&a, NBX_STR("fi")), 0);
	cr_assert_eq(nbx_audience_has(&a, NBX_STR("")), 0);
	cr_assert_eq(nbx_audience_has(NULL, NBX_STR("ee")), 0);
}

/* ------------------------------------------------------------------ */
/* policy_may_write                                                   */
/* ------------------------------------------------------------------ */

Test(schema, may_write_origin)
{
	const struct pol_field *f = field("case", "pseudonym");
	struct nbx_audience a = aud(HLC, "ee", "ee,lv");

	cr_assert_eq(policy_may_write(f, NBX_STR("ee"), NBX_STR("ee:c1"),
	    &a), 0);
	/* In the audience is not enough for writers = origin. */
	cr_assert_eq(policy_may_write(f, NBX_STR("lv"), NBX_STR("ee:c1"),
	    &a), NBX_EWRITER);
	cr_assert_eq(policy_may_write(f, NBX_STR("e"), NBX_STR("ee:c1"),
	    &a), NBX_EWRITER);
	cr_assert_eq(policy_may_write(field("service", "name"), NBX_STR("lv"),
	    NBX_STR("ee:s1"), NULL), NBX_EWRITER);
	cr_assert_eq(policy_may_write(f, NBX_STR(""), NBX_STR("nocolon"),
	    NULL), NBX_EWRITER);
}

Test(schema, may_write_audience)
{
	const struct pol_field *f = field("case", "status");
	struct nbx_audience a = aud(HLC, "ee", "ee,lv");

	cr_assert_eq(policy_may_write(f, NBX_STR("lv"), NBX_STR("ee:c1"),
	    &a), 0);
	cr_assert_eq(policy_may_write(f, NBX_STR("ee"), NBX_STR("ee:c1"),
	    &a), 0);
	cr_assert_eq(policy_may_write(f, NBX_STR("fi"), NBX_STR("ee:c1"),
	    &a), NBX_EWRITER);
	cr_assert_eq(policy_may_write(f, NBX_STR("lv"), NBX_STR("ee:c1"),
	    NULL), NBX_EWRITER);
}

/* ------------------------------------------------------------------ */
/* Value checks                                                       */
/* ------------------------------------------------------------------ */

/*
 * UTF-8 as Unicode's table 3-7 of well-formed byte sequences has it, one
 * byte at a time, and NUL refused: the reference for the checks below.
 */
static int
ref_utf8(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char b = p[i];
		unsigned lo = 0x80, hi = 0xBF, more;

		if (b == 0)
			return 0;
		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xC2 && b <= 0xDF)
			more = 1;
		else if (b >= 0xE0 && b <= 0xEF)
			more = 2, lo = b == 0xE0 ? 0xA0 : 0x80,
			    hi = b == 0xED ? 0x9F : 0xBF;
		else if (b >= 0xF0 && b <= 0xF4)
			more = 3, lo = b == 0xF0 ? 0x90 : 0x80,
			    hi = b == 0xF4 ? 0x8F : 0xBF;
		else
			return 0;
		if (n - i - 1 < more)
			return 0;
		for (unsigned k = 1; k <= more; k++) {
			unsigned char c = p[i + k];

			if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF))
				return 0;
		}
		i += 1 + more;
	}
	return 1;
}

Test(schema, utf8_checks_agree_with_the_reference)
{
	const struct pol_field *f = field("case", "pseudonym");	/* max 64 */
	/* ASCII runs long enough for the word-at-a-time path, and bytes
	   that end it anywhere in a word */
	static const unsigned char pieces[][8] = {
		"a", "bcdefgh", "0123", "\x00", "\x7f", "\xc3\xad", "\xc3",
		"\xad", "\xe2\x82\xac", "\xed\xa0\x80", "\xf0\x9f\x98\x80",
		"\xf4\x90\x80", "\xc0\xaf", "\xff", "\xe0\x80",
	};
	static const size_t plen[] = { 1, 7, 4, 1, 1, 2, 1, 1, 3, 3, 4, 3, 2,
	    1, 2 };
	unsigned seed = test_seed();
	uint64_t rng = (uint64_t)seed * 2654435761u + 1;
	int valid = 0;

	fprintf(stderr, "property utf8: seed=%u (replay with NBX_SEED=%u)\n",
	    seed, seed);
	for (int it = 0; it < 200000; it++) {
		unsigned char b[64];
		size_t n = 0;
		struct nbx_value v;

		while (n < 56 && test_xorshift(&rng) % 12 != 0) {
			size_t k = test_xorshift(&rng) % (sizeof(plen) /
			    sizeof(plen[0]));

			/* mostly ASCII, as real values are */
			if (test_xorshift(&rng) % 4 != 0)
				k = test_xorshift(&rng) % 3;
			memcpy(b + n, pieces[k], plen[k]);
			n += plen[k];
		}
		v.t = NBX_V_STR;
		v.s.p = (const char *)b;
		v.s.n = (uint32_t)n;
		cr_assert_eq(policy_value_check(f, &v) == 0, ref_utf8(b, n),
		    "seed %u, iteration %d, %zu bytes", seed, it, n);
		valid += ref_utf8(b, n);
	}
	cr_assert_gt(valid, 1000, "both kinds of string were tried");
	cr_assert_lt(valid, 199000);
}

/*
 * The memo answers as policy_check_change does, change after change: a
 * seeded walk over records, origins and collections valid and not, each
 * string also held in a second buffer (equal bytes, another pointer), so
 * that both of the memo's ways of finding a repeat are tried.
 */
Test(schema, check_memo_agrees_with_the_plain_check)
{
	static const char *const colls[] = { "service", "case", "nosuch" };
	static const char *const ids[] = { "ee:svc-1", "ee:svc-2", "lv:svc-1",
	    "EE:svc-1", "ee:", "no-colon", "ee:svc\x01" };
	static const char *const origins[] = { "ee", "lv", "EE", "", "e e" };
	static const char *const fields[] = { "name", "kind", "notes",
	    "status", "nosuch" };
	static char copy[3][8][32];
	struct policy_memo memo;
	unsigned seed = test_seed();
	uint64_t rng = (uint64_t)seed * 2654435761u + 1;
	int accepted = 0;

	fprintf(stderr, "property policy memo: seed=%u (replay with "
	    "NBX_SEED=%u)\n", seed, seed);
	for (int i = 0; i < 7; i++)
		snprintf(copy[0][i], 32, "%s", ids[i]);
	for (int i = 0; i < 5; i++)
		snprintf(copy[1][i], 32, "%s", origins[i]);
	for (int i = 0; i < 3; i++)
		snprintf(copy[2][i], 32, "%s", colls[i]);
	memset(&memo, 0, sizeof(memo));
#define PICK(arr, k, alt) (test_xorshift(&rng) % 2 ? nbx_str_c(arr[k]) : \
	    nbx_str_c(alt[k]))
	for (int it = 0; it < 50000; it++) {
		struct change c;
		const struct pol_field *f1, *f2;
		int r1, r2;
		/* runs of one record, as batches have them */
		static size_t ki, ko, kc;

		if (test_xorshift(&rng) % 4 == 0) {
			ki = test_xorshift(&rng) % 7;
			ko = test_xorshift(&rng) % 5;
			kc = test_xorshift(&rng) % 3;
		} else if (test_xorshift(&rng) % 8 == 0) {
			ko = test_xorshift(&rng) % 5;	/* another origin */
		}
		memset(&c, 0, sizeof(c));
		c.id = PICK(ids, ki, copy[0]);
		c.origin = PICK(origins, ko, copy[1]);
		c.coll = PICK(colls, kc, copy[2]);
		c.hlc = HLC;
		switch (test_xorshift(&rng) % 3) {
		case 0:
			c.kind = CHANGE_STATE;
			c.val = vint(REC_LIVE);
			break;
		case 1:
			c.kind = CHANGE_ERASE;
			break;
		default:
			c.kind = CHANGE_FIELD;
			c.field = nbx_str_c(fields[test_xorshift(&rng) % 5]);
			c.val = vstr("shelter");
		}
		r1 = policy_check_change(pol, &c, nbx_str_c("ee"), 1, &f1);
		r2 = policy_check_change_memo(pol, &c, nbx_str_c("ee"), 1, &f2,
		    &memo);
		cr_assert_eq(r2, r1, "seed %u, iteration %d: %d, without the "
		    "memo %d", seed, it, r2, r1);
		cr_assert_eq(f2, f1, "seed %u, iteration %d", seed, it);
		accepted += r1 == 0;
	}
#undef PICK
	cr_assert_gt(accepted, 1000, "valid changes were among them");
}

Test(schema, string_values)
{
	const struct pol_field *f = field("case", "pseudonym");	/* max 64 */
	char s[66];
	struct nbx_value v;

	memset(s, 'a', 64);
	s[64] = '\0';
	v = vstr(s);
	cr_assert_eq(policy_value_check(f, &v), 0);
	s[64] = 'a';
	s[65] = '\0';
	v = vstr(s);
	cr_assert_eq(policy_value_check(f, &v), NBX_ELIMIT);
	v = vstr("Mar\xc3\xad" "a");			/* María */
	cr_assert_eq(policy_value_check(f, &v), 0);
	v = vstr("bad \xc3(");
	cr_assert_eq(policy_value_check(f, &v), NBX_ETYPE);
	v = vstr("\xc0\xaf");				/* overlong '/' */
	cr_assert_eq(policy_value_check(f, &v), NBX_ETYPE);
	v = vstr("\xed\xa0\x80");			/* surrogate */
	cr_assert_eq(policy_value_check(f, &v), NBX_ETYPE);
	v.t = NBX_V_STR;
	v.s.p = "a\0b";
	v.s.n = 3;
	cr_assert_eq(policy_value_check(f, &v), NBX_ETYPE);
	v = vint(3);
	cr_assert_eq(policy_value_check(f, &v), NBX_ETYPE);
	v = vnil();
	cr_assert_eq(policy_value_check(f, &v), 0);
}

Test(schema, int_bool_enum_values)
{
	const struct pol_field *yob = field("case", "year_of_birth");
	const struct pol_field *b = field("case", "consent_given");
	const struct pol_field *e = field("case", "status");
	struct nbx_value v;

	v = vint(1900);
	cr_assert_eq(policy_value_check(yob, &v), 0);
	v = vint(2100);
	cr_assert_eq(policy_value_check(yob, &v), 0);
	v = vint(1899);
	cr_assert_eq(policy_value_check(yob, &v), NBX_ELIMIT);
	v = vint(2101);
	cr_assert_eq(policy_value_check(yob, &v), NBX_ELIMIT);
	v = vstr("1990");
	cr_assert_eq(policy_value_check(yob, &v), NBX_ETYPE);
	v = vbool(1);
	cr_assert_eq(policy_value_check(yob, &v), NBX_ETYPE);
	cr_assert_eq(policy_value_check(b, &v), 0);
	v = vbool(0);
	cr_assert_eq(policy_value_check(b, &v), 0);
	v = vbool(2);
	cr_assert_eq(policy_value_check(b, &v), NBX_ETYPE);
	v = vint(1);
	cr_assert_eq(policy_value_check(b, &v), NBX_ETYPE);
	v = vstr("accepted");
	cr_assert_eq(policy_value_check(e, &v), 0);
	v = vstr("accept");
	cr_assert_eq(policy_value_check(e, &v), NBX_ELIMIT);
	v = vstr("Accepted");
	cr_assert_eq(policy_value_check(e, &v), NBX_ELIMIT);
	v = vint(1);
	cr_assert_eq(policy_value_check(e, &v), NBX_ETYPE);
	v = vnil();
	cr_assert_eq(policy_value_check(yob, &v), 0);
	cr_assert_eq(policy_value_check(b, &v), 0);
	cr_assert_eq(policy_value_check(e, &v), 0);
	/* A set is checked element by element, never as a scalar. */
	cr_assert_eq(policy_value_check(field("service", "languages"), &v),
	    NBX_ETYPE);
}

Test(schema, date_values)
{
	const struct pol_field *f = field("case", "referral_date");
	static const char *good[] = { "2026-03-01", "2024-02-29",
	    "2000-02-29", "0001-01-01", "9999-12-31", "2026-01-31",
	    "2026-04-30" };
	static const char *bad[] = { "2026-02-29", "1900-02-29",
	    "2100-02-29", "2026-04-31", "2026-13-01", "2026-00-10",
	    "2026-01-00", "2026-01-32", "0000-01-01", "2026-1-01",
	    "2026-01-1", "26-01-01", "2026/01/01", "2026-01-01T00",
	    "2026-0a-01", "", " 2026-01-01" };
	struct nbx_value v;

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		v = vstr(good[i]);
		cr_assert_eq(policy_value_check(f, &v), 0, "%s", good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		v = vstr(bad[i]);
		cr_assert_eq(policy_value_check(f, &v), NBX_ETYPE, "'%s'",
		    bad[i]);
	}
	v = vint(20260101);
	cr_assert_eq(policy_value_check(f, &v), NBX_ETYPE);
	v = vnil();
	cr_assert_eq(policy_value_check(f, &v), 0);
}

Test(schema, set_elements)
{
	const struct pol_field *f = field("service", "languages");
	struct nbx_str nul = { "e\0t", 3 };

	cr_assert_eq(policy_elem_check(f, NBX_STR("et")), 0);
	cr_assert_eq(policy_elem_check(f, NBX_STR("bin")), 0);
	cr_assert_eq(policy_elem_check(f, NBX_STR("12345678")), 0);
	cr_assert_eq(policy_elem_check(f, NBX_STR("123456789")), NBX_ELIMIT);
	cr_assert_eq(policy_elem_check(f, NBX_STR("")), NBX_ELIMIT);
	cr_assert_eq(policy_elem_check(f, NBX_STR("\xff")), NBX_ETYPE);
	cr_assert_eq(policy_elem_check(f, nul), NBX_ETYPE);
	cr_assert_eq(policy_elem_check(field("case", "pseudonym"),
	    NBX_STR("et")), NBX_ETYPE);
}

Test(set_values, restricted_set)
{
	struct policy *p = NULL;
	char err[256];
	const struct pol_field *f;

	cr_assert_eq(policy_load_string("[c]\n[c.tags]\ntype = set\n"
	    "values = red, green\nelem_max = 5\nshare = region\n", "t.conf",
	    &p, err, sizeof(err)), 0, "%s", err);
	f = policy_field(policy_coll(p, NBX_STR("c")), NBX_STR("tags"));
	cr_assert_eq(policy_elem_check(f, NBX_STR("red")), 0);
	cr_assert_eq(policy_elem_check(f, NBX_STR("green")), 0);
	cr_assert_eq(policy_elem_check(f, NBX_STR("blue")), NBX_ELIMIT);
	cr_assert_eq(policy_elem_check(f, NBX_STR("re")), NBX_ELIMIT);
	policy_free(p);
}

/* ------------------------------------------------------------------ */
/* policy_check_change: accepted changes                              */
/* ------------------------------------------------------------------ */

Test(schema, accepts_region_field)
{
	struct change c = fchange("service", "ee:shelter-1", "free_places",
	    vint(3), "ee");
	const struct pol_field *f = NULL;

	cr_assert_eq(policy_check_change(pol, &c, NBX_STR("ee"), 0, &f), 0);
	cr_assert_eq(f, field("service", "free_places"));
	cr_assert_eq(policy_check_change(pol, &c, NBX_STR("lv"), 1, &f), 0);
	cr_assert_eq(f, field("service", "free_places"));
	c.val = vnil();
	cr_assert_eq(check(&c, "lv", 1), 0);
}

Test(schema, accepts_local_field_written_locally)
{
	struct change c = fchange("case", "ee:c1", "legal_name",
	    vstr("Name Surname"), "ee");

	cr_assert_eq(check(&c, "ee", 0), 0);
}

Test(schema, accepts_audience_field)
{
	struct change c = fchange("case", "ee:c1", "pseudonym", vstr("Anna"),
	    "ee");

	c.aud = aud(HLC - 5, "ee", "ee,lv");
	cr_assert_eq(check(&c, "ee", 0), 0);
	cr_assert_eq(check(&c, "lv", 1), 0);
	/* writers = audience: the receiving country sets the status. */
	c = fchange("case", "ee:c1", "status", vstr("accepted"), "lv");
	c.aud = aud(HLC - 5, "ee", "ee,lv");
	cr_assert_eq(check(&c, "ee", 1), 0);
	cr_assert_eq(check(&c, "lv", 0), 0);
}

Test(schema, accepts_set_element)
{
	struct change c = fchange("service", "lv:s9", "languages", vbool(1),
	    "lv");
	const struct pol_field *f = NULL;

	c.kind = CHANGE_ELEM;
	c.elem = NBX_STR("ru");
	cr_assert_eq(policy_check_change(pol, &c, NBX_STR("ee"), 1, &f), 0);
	cr_assert_eq(f, field("service", "languages"));
	c.val = vbool(0);
	cr_assert_eq(check(&c, "ee", 1), 0);
}

Test(schema, accepts_record_level_changes)
{
	struct change c = rchange(CHANGE_STATE, "case", "ee:c1", "ee");
	const struct pol_field *f = field("case", "status");

	c.val = vint(REC_DELETED);
	cr_assert_eq(policy_check_change(pol, &c, NBX_STR("lv"), 1, &f), 0);
	cr_assert_null(f);
	c.val = vint(REC_LIVE);
	cr_assert_eq(check(&c, "lv", 1), 0);

	c = rchange(CHANGE_AUDIENCE, "case", "ee:c1", "ee");
	c.aud = aud(HLC, "ee", "ee,lv");
	cr_assert_eq(check(&c, "lv", 1), 0);
	/* Removal arrives as an audience without this node. */
	c.aud = aud(HLC, "ee", "ee,fi");
	cr_assert_eq(check(&c, "lv", 1), 0);

	c = rchange(CHANGE_ERASE, "case", "ee:c1", "lv");
	cr_assert_eq(check(&c, "fi", 1), 0);
}

/* ------------------------------------------------------------------ */
/* policy_check_change: every reject reason                           */
/* ------------------------------------------------------------------ */

Test(schema, rejects_unknown_collection_and_field)
{
	struct change c = fchange("cases", "ee:c1", "pseudonym", vstr("A"),
	    "ee");
	const struct pol_field *f = field("case", "status");

	cr_assert_eq(policy_check_change(pol, &c, NBX_STR("ee"), 0, &f),
	    NBX_ECOLL);
	cr_assert_null(f);
	c = fchange("case", "ee:c1", "pseudonim", vstr("A"), "ee");
	cr_assert_eq(check(&c, "ee", 0), NBX_EFIELD);
	c = rchange(CHANGE_ERASE, "", "ee:c1", "ee");
	cr_assert_eq(check(&c, "ee", 0), NBX_ECOLL);
}

Test(schema, rejects_wrong_kind_and_type)
{
	struct change c = fchange("service", "ee:s1", "capacity", vstr("12"),
	    "ee");

	cr_assert_eq(check(&c, "ee", 0), NBX_ETYPE);
	/* CHANGE_FIELD on a set, CHANGE_ELEM on a scalar. */
	c = fchange("service", "ee:s1", "languages", vstr("et"), "ee");
	cr_assert_eq(check(&c, "ee", 0), NBX_ETYPE);
	c = fchange("service", "ee:s1", "kind", vbool(1), "ee");
	c.kind = CHANGE_ELEM;
	c.elem = NBX_STR("shelter");
	cr_assert_eq(check(&c, "ee", 0), NBX_ETYPE);
	/* An element change carries a bool. */
	c = fchange("service", "ee:s1", "languages", vint(1), "ee");
	c.kind = CHANGE_ELEM;
	c.elem = NBX_STR("et");
	cr_assert_eq(check(&c, "ee", 0), NBX_ETYPE);
	c.val = vbool(1);
	c.elem = NBX_STR("much-too-long");
	cr_assert_eq(check(&c, "ee", 0), NBX_ELIMIT);
}

Test(schema, rejects_values_outside_limits)
{
	char big[300];
	struct change c;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	c = fchange("service", "ee:s1", "name", vstr(big), "ee");
	cr_assert_eq(check(&c, "ee", 0), NBX_ELIMIT);
	c = fchange("service", "ee:s1", "kind", vstr("spa"), "ee");
	cr_assert_eq(check(&c, "ee", 0), NBX_ELIMIT);
	c = fchange("training", "ee:t1", "date", vstr("2026-02-29"), "ee");
	cr_assert_eq(check(&c, "ee", 0), NBX_ETYPE);
	c.val = vstr("2028-02-29");
	cr_assert_eq(check(&c, "ee", 0), 0);
	c = fchange("service", "ee:s1", "free_places", vint(-1), "ee");
	cr_assert_eq(check(&c, "ee", 0), NBX_ELIMIT);
	c.val = vint(10001);
	cr_assert_eq(check(&c, "ee", 0), NBX_ELIMIT);
}

Test(schema, rejects_local_field_from_peer)
{
	struct change c = fchange("case", "lv:c7", "legal_name",
	    vstr("Name Surname"), "lv");

	cr_assert_eq(check(&c, "ee", 1), NBX_ELOCAL);
	c = fchange("case", "lv:c7", "case_notes", vnil(), "lv");
	cr_assert_eq(check(&c, "ee", 1), NBX_ELOCAL);
	c = fchange("service", "lv:s1", "address", vstr("Street 1"), "lv");
	cr_assert_eq(check(&c, "ee", 1), NBX_ELOCAL);
	/* Even carrying an audience that holds us. */
	c = fchange("case", "lv:c7", "phone", vstr("+371"), "lv");
	c.aud = aud(HLC, "lv", "ee,lv");
	cr_assert_eq(check(&c, "ee", 1), NBX_ELOCAL);
}

Test(schema, rejects_audience_without_self)
{
	struct change c = fchange("case", "lv:c7", "pseudonym", vstr("A"),
	    "lv");

	c.aud = aud(HLC, "lv", "fi,lv");
	cr_assert_eq(check(&c, "ee", 1), NBX_EAUDIENCE);
	/* Also for a local write: we may not write what we may not hold. */
	c = fchange("case", "ee:c1", "pseudonym", vstr("A"), "ee");
	c.aud = aud(HLC, "ee", "lv");
	cr_assert_eq(check(&c, "ee", 0), NBX_EAUDIENCE);
}

Test(schema, rejects_scoped_field_without_audience)
{
	struct change c = fchange("case", "ee:c1", "referral_date",
	    vstr("2026-03-01"), "ee");

	cr_assert_eq(check(&c, "ee", 0), NBX_EAUDIENCE);
	cr_assert_eq(check(&c, "lv", 1), NBX_EAUDIENCE);
}

Test(schema, rejects_malformed_audience)
{
	struct change c = fchange("case", "ee:c1", "pseudonym", vstr("A"),
	    "ee");

	/* Order and duplicates are the CRDT's to normalise, not errors. */
	c.aud = aud(HLC, "ee", "lv,ee");
	cr_assert_eq(check(&c, "ee", 0), 0);
	c.aud = aud(HLC, "ee", "ee,ee");
	cr_assert_eq(check(&c, "ee", 0), 0);
	c.aud = aud(HLC, "ee", "EE,ee");		/* bad id */
	cr_assert_eq(check(&c, "ee", 0), NBX_EAUDIENCE);
	c.aud = aud(HLC, "ee", "ee");
	c.aud.n = NBX_AUD_MAX + 1;			/* over the cap */
	cr_assert_eq(check(&c, "ee", 0), NBX_EAUDIENCE);
}

Test(schema, rejects_region_field_with_audience)
{
	struct change c = fchange("service", "ee:s1", "name", vstr("Shelter"),
	    "ee");

	c.aud = aud(HLC, "ee", "ee,lv");
	cr_assert_eq(check(&c, "ee", 0), NBX_EINVAL);
	c.aud = aud(HLC, "ee", "");			/* hlc without ids */
	cr_assert_eq(check(&c, "ee", 0), NBX_EINVAL);
	c = fchange("case", "ee:c1", "legal_name", vstr("N"), "ee");
	c.aud = aud(HLC, "ee", "ee");
	cr_assert_eq(check(&c, "ee", 0), NBX_EINVAL);
}

Test(schema, rejects_writer_not_allowed)
{
	struct change c = fchange("service", "ee:s1", "free_places", vint(2),
	    "lv");

	cr_assert_eq(check(&c, "fi", 1), NBX_EWRITER);
	/* writers = origin even inside the audience. */
	c = fchange("case", "ee:c1", "pseudonym", vstr("A"), "lv");
	c.aud = aud(HLC, "ee", "ee,lv");
	cr_assert_eq(check(&c, "ee", 1), NBX_EWRITER);
	/* writers = audience, but the writer is outside it. */
	c = fchange("case", "ee:c1", "status", vstr("accepted"), "fi");
	c.aud = aud(HLC, "ee", "ee,lv");
	cr_assert_eq(check(&c, "ee", 1), NBX_EWRITER);
}

Test(schema, rejects_state_from_non_creator)
{
	struct change c = rchange(CHANGE_STATE, "case", "ee:c1", "lv");

	c.val = vint(REC_DELETED);
	cr_assert_eq(check(&c, "ee", 1), NBX_EWRITER);
	c.origin = NBX_STR("ee");
	c.val = vint(2);
	cr_assert_eq(check(&c, "lv", 1), NBX_EINVAL);
	c.val = vbool(1);
	cr_assert_eq(check(&c, "lv", 1), NBX_ETYPE);
}

Test(schema, rejects_bad_audience_changes)
{
	struct change c = rchange(CHANGE_AUDIENCE, "case", "ee:c1", "lv");

	c.aud = aud(HLC, "lv", "ee,lv");
	cr_assert_eq(check(&c, "ee", 1), NBX_EWRITER);
	c = rchange(CHANGE_AUDIENCE, "case", "ee:c1", "ee");
	c.aud = aud(HLC, "ee", "fi,lv");		/* without creator */
	cr_assert_eq(check(&c, "lv", 1), NBX_EAUDIENCE);
	c.aud = aud(HLC, "ee", "");			/* empty */
	cr_assert_eq(check(&c, "lv", 1), NBX_EAUDIENCE);
	c.aud = aud(HLC, "ee", "lv,ee");		/* any order */
	cr_assert_eq(check(&c, "lv", 1), 0);
	c.aud = aud(HLC, "ee", "ee,l_v");		/* bad id */
	cr_assert_eq(check(&c, "lv", 1), NBX_EAUDIENCE);
	c.aud = aud(HLC + 1, "ee", "ee,lv");		/* stamp differs */
	cr_assert_eq(check(&c, "lv", 1), NBX_EINVAL);
	c.aud = aud(HLC, "lv", "ee,lv");
	cr_assert_eq(check(&c, "lv", 1), NBX_EINVAL);
}

Test(schema, rejects_bad_record_id)
{
	static const char *bad[] = { "nocolon", ":x", "ee:", "EE:x",
	    "e e:x", "a-very-long-node-id-of-33-chars-x:1", "ee:tab\there",
	    "ee:nl\n", "ee:\x7f", "ee:\xc3(" };
	char longid[NBX_RECID_MAX + 2];
	struct change c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		c = rchange(CHANGE_ERASE, "case", bad[i], "ee");
		cr_assert_eq(check(&c, "ee", 1), NBX_EINVAL, "id '%s'", bad[i]);
	}
	c = rchange(CHANGE_ERASE, "case", "ee:x", "ee");
	c.id.p = "ee:a\0b";
	c.id.n = 6;
	cr_assert_eq(check(&c, "ee", 1), NBX_EINVAL);

	memcpy(longid, "ee:", 3);
	memset(longid + 3, 'x', NBX_RECID_MAX - 3);
	longid[NBX_RECID_MAX] = '\0';
	c = rchange(CHANGE_ERASE, "case", longid, "ee");
	cr_assert_eq(check(&c, "ee", 1), 0);
	longid[NBX_RECID_MAX] = 'x';
	longid[NBX_RECID_MAX + 1] = '\0';
	c = rchange(CHANGE_ERASE, "case", longid, "ee");
	cr_assert_eq(check(&c, "ee", 1), NBX_EINVAL);
	/* Ids with UTF-8 and colons after the first are fine. */
	c = rchange(CHANGE_ERASE, "case", "ee:t\xc3\xb5ru:2", "ee");
	cr_assert_eq(check(&c, "ee", 1), 0);
}

Test(schema, rejects_bad_origin_and_kind)
{
	struct change c = rchange(CHANGE_ERASE, "case", "ee:c1", "EE");

	cr_assert_eq(check(&c, "ee", 1), NBX_EINVAL);
	c.origin = NBX_STR("");
	cr_assert_eq(check(&c, "ee", 1), NBX_EINVAL);
	c.origin = NBX_STR("a-very-long-node-id-of-33-chars-x");
	cr_assert_eq(check(&c, "ee", 1), NBX_EINVAL);
	c = rchange((enum change_kind)9, "case", "ee:c1", "ee");
	cr_assert_eq(check(&c, "ee", 1), NBX_EINVAL);
}

/* The id is checked before the collection, the collection before kinds. */
Test(schema, check_order)
{
	struct change c = fchange("nope", "bad", "nope", vint(1), "ee");

	cr_assert_eq(check(&c, "ee", 1), NBX_EINVAL);
	c.id = NBX_STR("ee:1");
	cr_assert_eq(check(&c, "ee", 1), NBX_ECOLL);
	c.coll = NBX_STR("case");
	cr_assert_eq(check(&c, "ee", 1), NBX_EFIELD);
	c.field = NBX_STR("legal_name");
	cr_assert_eq(check(&c, "ee", 1), NBX_ETYPE);
	c.val = vstr("N");
	cr_assert_eq(check(&c, "ee", 1), NBX_ELOCAL);
}

/* ------------------------------------------------------------------ */
/* Schema file errors                                                 */
/* ------------------------------------------------------------------ */

/* Loads `text` as "t.conf", expects NBX_ESCHEMA and exactly `msg`. */
static void
expect_error(const char *text, const char *msg)
{
	struct policy *p = (struct policy *)1;
	char err[512];
	int rc = policy_load_string(text, "t.conf", &p, err, sizeof(err));

	cr_assert_eq(rc, NBX_ESCHEMA, "rc %d for:\n%s", rc, text);
	cr_assert_null(p);
	cr_assert_str_eq(err, msg);
}

Test(errors, unknown_share)
{
	expect_error("[case]\n[case.status]\ntype = enum\nvalues = a, b\n"
	    "share = regoin\n",
	    "t.conf:5: [case.status]: unknown share 'regoin' (expected local, "
	    "region or audience)");
}

Test(errors, unknown_type_and_writers)
{
	expect_error("[c]\n; comment\n\n[c.a]\ntype = strng\n",
	    "t.conf:5: [c.a]: unknown type 'strng' (expected string, int, "
	    "bool, date, enum or set)");
	expect_error("[c]\n[c.a]\ntype = bool\nwriters = everyone\n",
	    "t.conf:4: [c.a]: unknown writers 'everyone' (expected origin or "
	    "audience)");
}

Test(errors, enum_without_values)
{
	expect_error("[c]\n[c.e]\ntype = enum\nshare = region\n[c.f]\n"
	    "type = int\n",
	    "t.conf:2: [c.e]: an enum needs 'values'");
	/* The last section is checked at the end of the file. */
	expect_error("[c]\n[c.f]\ntype = int\n[c.e]\ntype = enum\n",
	    "t.conf:4: [c.e]: an enum needs 'values'");
}

Test(errors, writers_audience_needs_share_audience)
{
	expect_error("[c]\n\n[c.f]\ntype = bool\nshare = region\n"
	    "writers = audience\n",
	    "t.conf:3: [c.f]: writers = audience needs share = audience");
	expect_error("[c]\n[c.f]\ntype = bool\nwriters = audience\n",
	    "t.conf:2: [c.f]: writers = audience needs share = audience");
}

Test(errors, set_cannot_be_audience)
{
	expect_error("[c]\n[c.tags]\ntype = set\nshare = audience\n",
	    "t.conf:2: [c.tags]: a set cannot be share = audience (a purged "
	    "element would leave its value in the register key)");
}

Test(errors, field_before_collection)
{
	expect_error("[c]\n[c.a]\ntype = int\n[d.b]\ntype = int\n[d]\n",
	    "t.conf:4: [d.b]: collection 'd' is not declared above its "
	    "fields");
}

Test(errors, duplicate_sections)
{
	expect_error("[c]\n[c.a]\ntype = int\n[c.a]\ntype = int\n",
	    "t.conf:4: duplicate section [c.a] (first on line 2)");
	expect_error("[c]\n[d]\n[c]\n",
	    "t.conf:3: duplicate section [c] (first on line 1)");
}

Test(errors, duplicate_key)
{
	expect_error("[c]\n[c.a]\ntype = int\nshare = region\ntype = bool\n",
	    "t.conf:5: [c.a]: duplicate key 'type' (first on line 3)");
	expect_error("[c]\ndescription = x\ndescription = y\n",
	    "t.conf:3: [c]: duplicate key 'description' (first on line 2)");
}

Test(errors, unknown_keys)
{
	expect_error("[c]\n[c.a]\ntype = int\nmaxx = 3\n",
	    "t.conf:4: [c.a]: unknown key 'maxx' (expected type, max, min, "
	    "values, elem_max, share or writers)");
	expect_error("[c]\ntype = int\n",
	    "t.conf:2: [c]: unknown key 'type' (a collection takes "
	    "'description' and 'retain_days'; fields go in [c.NAME])");
	expect_error("type = int\n[c]\n",
	    "t.conf:1: key 'type' outside any section");
}

Test(errors, bad_numbers)
{
	expect_error("[c]\n[c.a]\ntype = int\nmax = 12x\n",
	    "t.conf:4: [c.a]: bad number '12x' for 'max'");
	expect_error("[c]\n[c.a]\ntype = int\nmin = 99999999999999999999\n",
	    "t.conf:4: [c.a]: bad number '99999999999999999999' for 'min'");
	expect_error("[c]\n[c.a]\ntype = int\nmin = \n",
	    "t.conf:4: [c.a]: bad number '' for 'min'");
	expect_error("[c]\n[c.a]\ntype = string\nmax = 0\n",
	    "t.conf:4: [c.a]: max must be between 1 and 65536");
	expect_error("[c]\n[c.a]\nmax = 65537\ntype = string\n",
	    "t.conf:3: [c.a]: max must be between 1 and 65536");
	expect_error("[c]\n[c.a]\ntype = int\nmin = 5\nmax = 1\n",
	    "t.conf:2: [c.a]: min (5) is greater than max (1)");
	expect_error("[c]\n[c.s]\ntype = set\nelem_max = 0\n",
	    "t.conf:4: [c.s]: elem_max must be between 1 and 65536");
}

Test(errors, keys_for_the_wrong_type)
{
	expect_error("[c]\n[c.a]\ntype = string\nmin = 1\n",
	    "t.conf:4: [c.a]: 'min' applies only to int fields");
	expect_error("[c]\n[c.a]\nvalues = x\ntype = int\n",
	    "t.conf:3: [c.a]: 'values' applies only to enum and set fields");
	expect_error("[c]\n[c.a]\ntype = bool\nmax = 1\n",
	    "t.conf:4: [c.a]: 'max' applies only to string, int and set "
	    "fields");
	expect_error("[c]\n[c.a]\ntype = enum\nvalues = x\nelem_max = 3\n",
	    "t.conf:5: [c.a]: 'elem_max' applies only to set fields");
	expect_error("[c]\n[c.a]\nshare = region\n",
	    "t.conf:2: [c.a]: missing 'type' (string, int, bool, date, enum "
	    "or set)");
}

Test(errors, bad_names)
{
	expect_error("[Case]\n",
	    "t.conf:1: [Case]: bad collection name 'Case' (1-32 of a-z, 0-9, "
	    "_)");
	expect_error("[case]\n[case.first-name]\ntype = string\n",
	    "t.conf:2: [case.first-name]: bad field name 'first-name' (1-32 "
	    "of a-z, 0-9, _)");
	expect_error("[c]\n[c.a.b]\n",
	    "t.conf:2: [c.a.b]: bad field name 'a.b' (1-32 of a-z, 0-9, _)");
	expect_error("[c]\n[c.]\n",
	    "t.conf:2: [c.]: bad field name '' (1-32 of a-z, 0-9, _)");
	expect_error("[abcdefghijklmnopqrstuvwxyz0123456]\n",
	    "t.conf:1: [abcdefghijklmnopqrstuvwxyz0123456]: bad collection "
	    "name 'abcdefghijklmnopqrstuvwxyz0123456' (1-32 of a-z, 0-9, _)");
}

Test(errors, values_lists)
{
	expect_error("[c]\n[c.e]\ntype = enum\nvalues = a b, c\n",
	    "t.conf:4: [c.e]: bad value 'a b' (separate values with commas)");
	expect_error("[c]\n[c.e]\ntype = enum\nvalues = a, b,\n  c, a\n",
	    "t.conf:5: [c.e]: duplicate value 'a'");
	/* An indented header continues the list; it is not a value. */
	expect_error("[c]\n[c.e]\ntype = enum\nvalues = a\n  [c.f]\n",
	    "t.conf:5: [c.e]: bad value '[c.f]' (separate values with commas)");
	expect_error("[c]\n[c.s]\ntype = set\nelem_max = 3\nvalues = ab, "
	    "abcd\n",
	    "t.conf:5: [c.s]: value 'abcd' is longer than elem_max (3)");
}

Test(errors, continuation_of_a_plain_key)
{
	expect_error("[c]\n[c.a]\ntype = enum\n    values = a\n",
	    "t.conf:4: [c.a]: 'type' does not continue onto another line "
	    "(only values and description do)");
}

Test(errors, syntax)
{
	expect_error("[c]\n[c.a\n",
	    "t.conf:2: section header without a closing ']'");
	expect_error("[c]\njust words\n",
	    "t.conf:2: expected 'key = value', '[section]' or a comment");
	expect_error("[c] [d]\n",
	    "t.conf:1: unexpected text after [c]");
}

Test(errors, long_line)
{
	char text[512];

	snprintf(text, sizeof(text), "[c]\n[c.a]\ntype = string ; %0*d\n",
	    250, 0);
	expect_error(text, "t.conf:3: line longer than 198 bytes");
}

/* With several mistakes, the first one (by line) is reported. */
Test(errors, first_error_wins)
{
	expect_error("[c]\n[c.e]\ntype = enum\nshare = wide\n[c.e]\n",
	    "t.conf:4: [c.e]: unknown share 'wide' (expected local, region "
	    "or audience)");
	expect_error("[c]\n[c.e]\ntype = enum\nmin = 1\nwriters = audience\n",
	    "t.conf:2: [c.e]: an enum needs 'values'");
}

Test(errors, message_truncated_and_terminated)
{
	struct policy *p = NULL;
	char err[12];

	memset(err, 'z', sizeof(err));
	cr_assert_eq(policy_load_string("[C]\n", "t.conf", &p, err,
	    sizeof(err)), NBX_ESCHEMA);
	cr_assert_str_eq(err, "t.conf:1: [");
	/* errlen 0: nothing is written. */
	cr_assert_eq(policy_load_string("[C]\n", "t.conf", &p, err, 0),
	    NBX_ESCHEMA);
	cr_assert_str_eq(err, "t.conf:1: [");
}

/* ------------------------------------------------------------------ */
/* Loading details                                                    */
/* ------------------------------------------------------------------ */

Test(loading, defaults)
{
	struct policy *p = NULL;
	char err[256];
	const struct pol_coll *c;
	const struct pol_field *f;

	cr_assert_eq(policy_load_string("[c]\n[c.s]\ntype = string\n"
	    "[c.i]\ntype = int\n[c.t]\ntype = set\n[c.b]\ntype = bool\n",
	    NULL, &p, err, sizeof(err)), 0, "%s", err);
	c = policy_coll(p, NBX_STR("c"));
	cr_assert_eq(c->nfields, 4);
	cr_assert_not(c->has_audience_fields);
	f = policy_field(c, NBX_STR("s"));
	cr_assert_eq(f->max, 256);
	cr_assert_eq(f->share, SHARE_LOCAL);
	cr_assert_eq(f->writers, WRITERS_ORIGIN);
	cr_assert_eq(f->line, 2);
	f = policy_field(c, NBX_STR("i"));
	cr_assert_eq(f->min, INT64_MIN);
	cr_assert_eq(f->max, INT64_MAX);
	f = policy_field(c, NBX_STR("t"));
	cr_assert_eq(f->max, 32);
	cr_assert_eq(f->elem_max, 256);
	cr_assert_null(f->values);
	policy_free(p);
}

/*
 * Field lookup goes through a hash index while a collection has at most
 * POL_FIELD_SLOTS / 2 fields and a plain search past that: either way
 * every field is found under its own name, and near misses (a prefix, an
 * extension, another last or middle letter, the same length) are not.
 */
static void
lookup_every_field(size_t nfields)
{
	char *text = malloc(nfields * 64 + 16), name[40], miss[48];
	size_t off = 0;
	struct policy *p = NULL;
	char err[256];
	const struct pol_coll *c;
	const struct pol_field *f;

	cr_assert_not_null(text);
	off += (size_t)sprintf(text + off, "[c]\n");
	for (size_t i = 0; i < nfields; i++)
		off += (size_t)sprintf(text + off, "[c.f%zu_x%zu]\ntype = int\n",
		    i, i % 7);
	cr_assert_eq(policy_load_string(text, "many.conf", &p, err,
	    sizeof(err)), 0, "%s", err);
	free(text);
	c = policy_coll(p, NBX_STR("c"));
	cr_assert_eq(c->nfields, nfields);
	for (size_t i = 0; i < nfields; i++) {
		snprintf(name, sizeof(name), "f%zu_x%zu", i, i % 7);
		f = policy_field(c, nbx_str_c(name));
		cr_assert_not_null(f, "%zu fields: %s not found", nfields, name);
		cr_assert_eq(f, &c->fields[i], "%s found as %s", name, f->name);
		snprintf(miss, sizeof(miss), "%sy", name);
		cr_assert_null(policy_field(c, nbx_str_c(miss)), "%s", miss);
		miss[strlen(name) - 1] = 0;
		cr_assert_null(policy_field(c, nbx_str_c(miss)), "%s", miss);
		snprintf(miss, sizeof(miss), "%s", name);
		miss[strlen(miss) - 1] = miss[strlen(miss) - 1] == '9' ? '8' :
		    '9';
		cr_assert_null(policy_field(c, nbx_str_c(miss)), "%s", miss);
		miss[0] = 'g';
		cr_assert_null(policy_field(c, nbx_str_c(miss)), "%s", miss);
	}
	cr_assert_null(policy_field(c, NBX_STR("")));
	policy_free(p);
}

Test(loading, field_lookup_in_small_and_large_collections)
{
	lookup_every_field(1);
	lookup_every_field(15);
	lookup_every_field(POL_FIELD_SLOTS / 2);
	lookup_every_field(POL_FIELD_SLOTS / 2 + 1);
	lookup_every_field(300);
}

/* inih calls nothing for a section without keys, and cuts section names
   at 49 bytes; neither may lose a collection or rename a field. */
Test(loading, empty_and_long_sections)
{
	static const char *text =
	    "[abcdefghijklmnopqrstuvwxyz012345]\n"
	    "[abcdefghijklmnopqrstuvwxyz012345.abcdefghijklmnopqrstuvwxyz"
	    "012345]\ntype = int\nmin = -5\n"
	    "[empty]\n"
	    "[multi]\n"
	    "[multi.e]\ntype = enum\nvalues =\n    a, b,\n    c\n"
	    "\tz ; comment\nshare = region\n";
	struct policy *p = NULL;
	char err[256];
	const struct pol_coll *c;
	const struct pol_field *f;

	cr_assert_eq(policy_load_string(text, "t.conf", &p, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(policy_ncoll(p), 3);
	c = policy_coll_at(p, 0);
	cr_assert_str_eq(c->name, "abcdefghijklmnopqrstuvwxyz012345");
	cr_assert_eq(c->nfields, 1);
	cr_assert_str_eq(c->fields[0].name,
	    "abcdefghijklmnopqrstuvwxyz012345");
	cr_assert_eq(c->fields[0].min, -5);
	cr_assert_str_eq(policy_coll_at(p, 1)->name, "empty");
	cr_assert_eq(policy_coll_at(p, 1)->line, 5);
	cr_assert_eq(policy_coll_at(p, 1)->nfields, 0);
	f = policy_field(policy_coll_at(p, 2), NBX_STR("e"));
	cr_assert_eq(f->nvalues, 4);
	cr_assert_str_eq(f->values[2], "c");
	cr_assert_str_eq(f->values[3], "z");
	cr_assert_eq(f->share, SHARE_REGION);
	policy_free(p);
}

Test(loading, crlf_and_bom)
{
	struct policy *p = NULL;
	char err[256];

	cr_assert_eq(policy_load_string("\xef\xbb\xbf[c]\r\n[c.a]\r\n"
	    "type = int\r\nmax = 7\r\n", "t.conf", &p, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(policy_coll_at(p, 0)->fields[0].max, 7);
	policy_free(p);
}

Test(loading, missing_file)
{
	struct policy *p = (struct policy *)1;
	char err[512];

	cr_assert_eq(conf_schema_load("/nonexistent/schema.conf", &p, err,
	    sizeof(err)), NBX_EIO);
	cr_assert_null(p);
	cr_assert_str_eq(err, "/nonexistent/schema.conf: cannot open: No "
	    "such file or directory");
}

Test(loading, file_errors_name_the_file)
{
	char dir[] = "/tmp/nbx-policy-XXXXXX", path[64];
	struct policy *p = NULL;
	char err[512], want[128];
	FILE *fp;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/schema.conf", dir);
	cr_assert_not_null(fp = fopen(path, "w"));
	fwrite("[c]\n[c.a]\ntype = i\0nt\n", 1, 22, fp);
	fclose(fp);
	cr_assert_eq(conf_schema_load(path, &p, err, sizeof(err)), NBX_ESCHEMA);
	snprintf(want, sizeof(want), "%s:3: NUL byte in line", path);
	cr_assert_str_eq(err, want);

	cr_assert_not_null(fp = fopen(path, "w"));
	fputs("[c]\n[c.a]\ntype = date\nshare = audience\n", fp);
	fclose(fp);
	cr_assert_eq(conf_schema_load(path, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert(policy_coll_at(p, 0)->has_audience_fields);
	policy_free(p);

	/* A directory opens but cannot be read. */
	cr_assert_eq(conf_schema_load(dir, &p, err, sizeof(err)), NBX_EIO);
	snprintf(want, sizeof(want), "%s: read error: Is a directory", dir);
	cr_assert_str_eq(err, want);
	cr_assert_null(p);
	unlink(path);
	rmdir(dir);
}

Test(loading, free_null)
{
	policy_free(NULL);
	cr_assert_eq(policy_ncoll(NULL), 0);
	cr_assert_null(policy_coll(NULL, NBX_STR("c")));
	cr_assert_null(policy_field(NULL, NBX_STR("c")));
}

Test(errors, retain_days)
{
	struct policy *p = NULL;

	expect_error("[c]\nretain_days = 0\n",
	    "t.conf:2: [c]: retain_days must be 1-36500, not '0'");
	expect_error("[c]\nretain_days = 5\nretain_days = 6\n",
	    "t.conf:3: [c]: duplicate key 'retain_days'");
	cr_assert_eq(policy_load_string("[c]\nretain_days = 30\n[c.f]\n"
	    "type = int\n", "t.conf", &p, NULL, 0), 0);
	cr_assert_eq(policy_coll(p, nbx_str_c("c"))->retain_days, 30);
	policy_free(p);
}

/*
 * policy_may_send_change, the one decision on what leaves a node: each
 * kind of change against a case whose audience is ee, lv and a service.
 */
Test(schema, may_send_change_decides_each_kind)
{
	const struct pol_coll *cases = policy_coll(pol, NBX_STR("case"));
	const struct pol_coll *svcs = policy_coll(pol, NBX_STR("service"));
	struct crdt_record r, s;
	struct crdt_receipt revoke = { NBX_STR("revoke"), NBX_STR("fi"), RECEIPT_PENDING,
	    { HLC, NBX_STR("ee") } };
	struct change c;

	cr_assert(cases != NULL && svcs != NULL);
	crdt_record_init(&r, NBX_STR("case"), NBX_STR("ee:c1"));
	r.aud.hlc = HLC;
	r.aud.origin = NBX_STR("ee");
	r.aud.n = 2;
	r.aud.ids[0] = NBX_STR("ee");
	r.aud.ids[1] = NBX_STR("lv");
	memset(&c, 0, sizeof(c));
	c.coll = NBX_STR("case");
	c.id = NBX_STR("ee:c1");
	c.kind = CHANGE_FIELD;
	c.field = NBX_STR("pseudonym");
	c.aud = r.aud;
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("lv"), 0),
	    POLICY_SEND_YES);
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("fi"), 0),
	    POLICY_SEND_NO, "an audience field to a node outside it");
	c.field = NBX_STR("legal_name");
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("lv"), 0),
	    POLICY_SEND_NO, "a local field leaves no node");
	c.kind = CHANGE_ELEM;
	c.field = NBX_STR("pseudonym");
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("lv"), 0),
	    POLICY_SEND_NO, "an element change to a scalar field");
	c.kind = CHANGE_AUDIENCE;
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("lv"), 0),
	    POLICY_SEND_YES);
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("fi"), 0),
	    POLICY_SEND_IF_DISCLOSED);
	r.rcpt = &revoke;
	r.nrcpt = 1;
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("fi"), 0),
	    POLICY_SEND_YES, "a removed node a revocation names learns it");
	r.rcpt = NULL;
	r.nrcpt = 0;
	c.kind = CHANGE_STATE;
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("fi"), 1),
	    POLICY_SEND_YES);
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("fi"), 0),
	    POLICY_SEND_IF_DISCLOSED);
	c.kind = CHANGE_ERASE;
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("fi"), 0),
	    POLICY_SEND_IF_DISCLOSED, "a case has no region field");
	c.kind = CHANGE_RECEIPT;
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("ee"), 0),
	    POLICY_SEND_YES, "receipts go back to the creator");
	cr_assert_eq(policy_may_send_change(cases, &r, &c, NBX_STR("fi"), 0),
	    POLICY_SEND_IF_DISCLOSED);
	crdt_record_fini(&r);

	crdt_record_init(&s, NBX_STR("service"), NBX_STR("ee:s1"));
	c.coll = NBX_STR("service");
	c.id = NBX_STR("ee:s1");
	c.kind = CHANGE_ERASE;
	cr_assert_eq(policy_may_send_change(svcs, &s, &c, NBX_STR("fi"), 0),
	    POLICY_SEND_YES, "every peer may hold part of a service");
	c.kind = CHANGE_FIELD;
	c.field = NBX_STR("name");
	memset(&c.aud, 0, sizeof(c.aud));
	cr_assert_eq(policy_may_send_change(svcs, &s, &c, NBX_STR("fi"), 0),
	    POLICY_SEND_YES, "a region field");
	crdt_record_fini(&s);
}
