/*
 * writes_test.c - a client's JSON write turned into changes: one change
 * per field and per set element, the array growing past the room
 * reserved for it, and a refused write leaving the earlier ones whole.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "nbx_err.h"
#include "testlib.h"
#include "writes.h"

static struct policy *pol;
static struct write_batch b;
static json_t *held;		/* the writes, which the changes borrow from */

static void
setup(void)
{
	pol = test_policy();
	memset(&b, 0, sizeof(b));
	held = json_array();
}

static void
teardown(void)
{
	write_batch_fini(&b);
	json_decref(held);
	policy_free(pol);
}

TestSuite(writes, .init = setup, .fini = teardown);

/* Builds the write in `json` for node ee, with no store (no set read). */
static int
build(const char *json, char *err, size_t errlen)
{
	json_error_t je;
	json_t *w = json_loads(json, 0, &je);
	int rc;

	cr_assert_not_null(w, "test JSON: %s", je.text);
	rc = write_batch_build(&b, WRITE_PUT, pol, NULL, "ee", w, err, errlen);
	json_array_append_new(held, w);
	return rc;
}

static size_t
count_kind(enum change_kind k, const char *field)
{
	size_t n = 0;

	for (size_t i = 0; i < b.n; i++)
		if (b.chs[i].kind == k && (field == NULL ||
		    nbx_str_eq(b.chs[i].field, nbx_str_c(field))))
			n++;
	return n;
}

Test(writes, grows_past_the_room_reserved)
{
	char json[2048], err[256];
	int off;

	cr_assert_eq(write_batch_reserve(&b, 1), 0);
	cr_assert_geq(b.cap, 1);
	off = snprintf(json, sizeof(json), "{\"collection\":\"t\",\"id\":\"x\","
	    "\"fields\":{\"name\":\"n\",\"count\":5,\"tags\":[");
	for (int i = 0; i < 30; i++)
		off += snprintf(json + off, sizeof(json) - (size_t)off,
		    "%s\"e%d\"", i ? "," : "", i);
	snprintf(json + off, sizeof(json) - (size_t)off, "]}}");

	cr_assert_eq(build(json, err, sizeof(err)), 0, "%s", err);
	/* the creator's state, two scalars and one change per element */
	cr_assert_eq(b.n, 33);
	cr_assert_geq(b.cap, b.n);
	cr_assert_eq(count_kind(CHANGE_STATE, NULL), 1);
	cr_assert_eq(count_kind(CHANGE_FIELD, "name"), 1);
	cr_assert_eq(count_kind(CHANGE_FIELD, "count"), 1);
	cr_assert_eq(count_kind(CHANGE_ELEM, "tags"), 30);
	for (size_t i = 0; i < b.n; i++) {
		const struct change *c = &b.chs[i];

		cr_assert(nbx_str_eq(c->coll, NBX_STR("t")));
		cr_assert(nbx_str_eq(c->id, NBX_STR("ee:x")), "change %zu", i);
		cr_assert_eq(c->aud.n, 0);
		if (c->kind == CHANGE_ELEM) {
			char want[8];

			snprintf(want, sizeof(want), "e%zu", i - 3);
			cr_assert(nbx_str_eq(c->elem, nbx_str_c(want)),
			    "element %zu is %.*s", i, (int)c->elem.n, c->elem.p);
			cr_assert_eq(c->val.t, NBX_V_BOOL);
			cr_assert_eq(c->val.i, 1);
		}
	}
}

Test(writes, refused_write_leaves_the_earlier_ones)
{
	char err[256];
	size_t n;

	cr_assert_eq(build("{\"collection\":\"t\",\"id\":\"a\","
	    "\"fields\":{\"name\":\"first\"}}", err, sizeof(err)), 0, "%s", err);
	n = b.n;
	cr_assert_eq(n, 2);
	/* a valid field before the unknown one: none of its changes stay */
	cr_assert_eq(build("{\"collection\":\"t\",\"id\":\"b\","
	    "\"fields\":{\"name\":\"second\",\"colour\":\"red\"}}", err,
	    sizeof(err)), NBX_EFIELD);
	cr_assert(strstr(err, "colour") != NULL, "%s", err);
	cr_assert_eq(b.n, n);
	cr_assert(nbx_str_eq(b.chs[1].val.s, NBX_STR("first")));
	cr_assert_eq(build("{\"collection\":\"t\",\"id\":\"c\","
	    "\"fields\":{\"count\":1001}}", err, sizeof(err)), NBX_ELIMIT);
	cr_assert(strstr(err, "count") != NULL, "%s", err);
	cr_assert_eq(b.n, n);
}

Test(writes, reserve_refuses_an_impossible_size)
{
	cr_assert_eq(write_batch_reserve(&b, SIZE_MAX / 2), NBX_ENOMEM);
	cr_assert_eq(b.n, 0);
	cr_assert_eq(write_batch_reserve(&b, 0), 0);
}

Test(writes, reserve_for_an_import_counts_fields_state_and_audience)
{
	json_t *ws = json_loads("[{\"fields\":{\"name\":\"a\",\"count\":1}},"
	    "{\"fields\":{\"name\":\"b\"}}, 7, {}]", 0, NULL);

	cr_assert_not_null(ws);
	/* 2 + 2, 1 + 2, and 2 each for what is no write at all */
	cr_assert_eq(write_batch_reserve_for(&b, ws), 0);
	cr_assert_eq(b.cap, 11);
	cr_assert_eq(b.n, 0);
	json_decref(ws);
}
