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

/* The FIELD and ELEM changes of b from `from` on: field names ascending. */
static void
assert_fields_in_name_order(size_t from)
{
	const struct change *last = NULL;

	for (size_t i = from; i < b.n; i++) {
		const struct change *c = &b.chs[i];

		if (c->kind != CHANGE_FIELD && c->kind != CHANGE_ELEM)
			continue;
		if (last != NULL)
			cr_assert_leq(nbx_str_cmp(last->field, c->field), 0,
			    "change %zu: %.*s after %.*s", i, (int)c->field.n,
			    c->field.p, (int)last->field.n, last->field.p);
		last = c;
	}
}

/*
 * A write's fields become changes in name order, the order a record
 * keeps its registers in, whatever order the JSON object has them in;
 * the same fields in another order make the same changes.
 */
Test(writes, fields_in_name_order_whatever_the_json_order)
{
	char err[256];
	size_t n;

	cr_assert_eq(build("{\"collection\":\"t\",\"id\":\"a\",\"fields\":"
	    "{\"tags\":[\"x\",\"y\"],\"name\":\"n\",\"count\":5}}", err,
	    sizeof(err)), 0, "%s", err);
	n = b.n;
	cr_assert_eq(n, 5);
	assert_fields_in_name_order(0);
	cr_assert(nbx_str_eq(b.chs[1].field, NBX_STR("count")));
	cr_assert(nbx_str_eq(b.chs[2].field, NBX_STR("name")));
	cr_assert_eq(build("{\"collection\":\"t\",\"id\":\"a\",\"fields\":"
	    "{\"count\":5,\"name\":\"n\",\"tags\":[\"x\",\"y\"]}}", err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(b.n, 2 * n);
	for (size_t i = 0; i < n; i++) {
		const struct change *x = &b.chs[i], *y = &b.chs[n + i];

		cr_assert_eq(x->kind, y->kind, "change %zu", i);
		cr_assert(nbx_str_eq(x->field, y->field), "change %zu", i);
		cr_assert(nbx_str_eq(x->elem, y->elem), "change %zu", i);
		cr_assert_eq(x->val.t, y->val.t, "change %zu", i);
		cr_assert_eq(x->val.i, y->val.i, "change %zu", i);
		cr_assert(nbx_str_eq(x->val.s, y->val.s), "change %zu", i);
	}
}

/* More fields than writes.c sorts in place: sorted all the same. */
Test(writes, many_fields_in_name_order)
{
	char schema[4096], json[4096], err[256];
	struct policy *many = NULL;
	json_t *w;
	int off = snprintf(schema, sizeof(schema), "[m]\n");
	int joff = snprintf(json, sizeof(json),
	    "{\"collection\":\"m\",\"id\":\"r\",\"fields\":{");

	for (int i = 0; i < 40; i++)
		off += snprintf(schema + off, sizeof(schema) - (size_t)off,
		    "[m.f%02d]\ntype = int\nshare = region\n", (i * 7) % 40);
	for (int i = 39; i >= 0; i--)
		joff += snprintf(json + joff, sizeof(json) - (size_t)joff,
		    "%s\"f%02d\":%d", i == 39 ? "" : ",", i, i);
	snprintf(json + joff, sizeof(json) - (size_t)joff, "}}");
	cr_assert_eq(policy_load_string(schema, "m.conf", &many, err,
	    sizeof(err)), 0, "%s", err);
	w = json_loads(json, 0, NULL);
	cr_assert_not_null(w);
	cr_assert_eq(write_batch_build(&b, WRITE_PUT, many, NULL, "ee", w, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(b.n, 41);
	assert_fields_in_name_order(0);
	for (size_t i = 1; i < b.n; i++)
		cr_assert_eq(b.chs[i].val.i, (int64_t)i - 1, "change %zu", i);
	json_array_append_new(held, w);
	write_batch_fini(&b);
	memset(&b, 0, sizeof(b));
	policy_free(many);
}
