/*
 * nbxq_test.c - nbxq's output, end to end: a real store is filled with
 * store_apply under the regional schema, then the built nbxq binary reads
 * it.  Table and CSV are compared with golden text; JSON is parsed with
 * jansson and its values checked.  Also the filters, sorting, deleted and
 * erased records, and the errors for a missing store.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "conf_file.h"
#include "nbx_err.h"
#include "policy.h"
#include "store.h"
#include "testlib.h"

#define NOW 1764345600000ull	/* 2025-11-28T16:00:00Z */

static char *dir;

/* Runs nbxq with args on the test store; returns stdout, sets *status. */
static char *
nbxq(const char *args, int *status)
{
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	char cmd[1024];
	static char out[65536];
	size_t n;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s/nbxq -d %s %s 2>&1", build, dir, args);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	*status = WEXITSTATUS(pclose(p));
	return out;
}

static void
put(struct store *st, struct policy *pol, struct change *b, size_t n)
{
	struct store_outcome out[16];

	cr_assert_eq(store_apply(st, pol, b, n, (struct nbx_str){ 0 }, NULL, NOW,
	    STORE_ATOMIC, out), 0, "%s", store_last_error(st));
}

static struct change
fld(const char *coll, const char *id, const char *f, enum nbx_vtype t,
    const char *s, int64_t i)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = CHANGE_FIELD;
	c.coll = nbx_str_c(coll);
	c.id = nbx_str_c(id);
	c.field = nbx_str_c(f);
	c.val.t = t;
	c.val.s = nbx_str_c(s ? s : "");
	c.val.i = i;
	return c;
}

static struct change
elem(const char *id, const char *f, const char *e)
{
	struct change c = fld("service", id, f, NBX_V_BOOL, NULL, 1);

	c.kind = CHANGE_ELEM;
	c.elem = nbx_str_c(e);
	return c;
}

static void
setup(void)
{
	struct policy *pol = NULL;
	struct store *st = NULL;
	struct store_opts o = { .node_id = "ee" };
	char err[256];

	cr_assert_eq(conf_schema_load("conf/schema.conf", &pol, err, sizeof(err)), 0,
	    "%s", err);
	dir = test_tmpdir();
	cr_assert_eq(store_open(dir, &o, &st, err, sizeof(err)), 0, "%s", err);
	{
		struct change b[] = {
			fld("service", "ee:a", "name", NBX_V_STR, "Alpha shelter", 0),
			fld("service", "ee:a", "kind", NBX_V_STR, "shelter", 0),
			fld("service", "ee:a", "capacity", NBX_V_INT, NULL, 12),
			elem("ee:a", "languages", "et"),
			elem("ee:a", "languages", "ru"),
			fld("service", "ee:a", "notes", NBX_V_STR, "local note", 0),
		};
		put(st, pol, b, sizeof(b) / sizeof(b[0]));
	}
	{
		struct change b[] = {
			fld("service", "ee:b", "name", NBX_V_STR,
			    "Beta, \"quoted\" helpline", 0),
			fld("service", "ee:b", "kind", NBX_V_STR, "helpline", 0),
			fld("service", "ee:b", "capacity", NBX_V_INT, NULL, 3),
			fld("service", "ee:b", "open_24h", NBX_V_BOOL, NULL, 1),
		};
		put(st, pol, b, sizeof(b) / sizeof(b[0]));
	}
	{
		struct change b[] = {
			fld("service", "ee:c", "name", NBX_V_STR, "Gamma", 0),
			fld("service", "ee:c", "kind", NBX_V_STR, "medical", 0),
		};
		struct change d = b[0];

		put(st, pol, b, 2);
		d.kind = CHANGE_STATE;
		d.field = nbx_str_c("");
		d.val.t = NBX_V_INT;
		d.val.i = REC_DELETED;
		put(st, pol, &d, 1);
	}
	{
		struct change b = fld("service", "ee:d", "name", NBX_V_STR,
		    "Erased one", 0);
		struct change e = b;

		put(st, pol, &b, 1);
		e.kind = CHANGE_ERASE;
		e.field = nbx_str_c("");
		memset(&e.val, 0, sizeof(e.val));
		put(st, pol, &e, 1);
	}
	store_close(st);
	policy_free(pol);
}

static void
teardown(void)
{
	test_rmdir(dir);
}

TestSuite(nbxq, .init = setup, .fini = teardown);

Test(nbxq, table_golden)
{
	int st;
	const char *out = nbxq("list service --fields name,kind,capacity,"
	    "languages", &st);

	cr_assert_eq(st, 0, "%s", out);
	cr_assert_str_eq(out,
	    "ID    NAME                     KIND      CAPACITY  LANGUAGES\n"
	    "ee:a  Alpha shelter            shelter   12        et,ru\n"
	    "ee:b  Beta, \"quoted\" helpline  helpline  3         \n");
}

Test(nbxq, csv_golden_rfc4180)
{
	int st;
	const char *out = nbxq("list service --fields name,capacity,languages,"
	    "open_24h --format csv", &st);

	cr_assert_eq(st, 0, "%s", out);
	cr_assert_str_eq(out,
	    "id,name,capacity,languages,open_24h\r\n"
	    "ee:a,Alpha shelter,12,\"et,ru\",\r\n"
	    "ee:b,\"Beta, \"\"quoted\"\" helpline\",3,,true\r\n");
}

Test(nbxq, json_values)
{
	int st;
	const char *out = nbxq("list service --format json", &st);
	json_error_t je;
	json_t *arr = json_loads(out, 0, &je), *a, *f;

	cr_assert_eq(st, 0, "%s", out);
	cr_assert_not_null(arr, "not JSON: %s\n%s", je.text, out);
	cr_assert_eq(json_array_size(arr), 2, "deleted and erased are hidden");
	a = json_array_get(arr, 0);
	f = json_object_get(a, "fields");
	cr_assert_str_eq(json_string_value(json_object_get(a, "id")), "ee:a");
	cr_assert_str_eq(json_string_value(json_object_get(a, "state")), "live");
	cr_assert(json_is_integer(json_object_get(f, "capacity")));
	cr_assert_eq(json_integer_value(json_object_get(f, "capacity")), 12);
	cr_assert_eq(json_array_size(json_object_get(f, "languages")), 2);
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(f,
	    "languages"), 1)), "ru");
	cr_assert_str_eq(json_string_value(json_object_get(f, "notes")),
	    "local note", "the node's own local fields are shown to it");
	f = json_object_get(json_array_get(arr, 1), "fields");
	cr_assert(json_is_true(json_object_get(f, "open_24h")));
	cr_assert_str_eq(json_string_value(json_object_get(f, "name")),
	    "Beta, \"quoted\" helpline");
	json_decref(arr);
}

Test(nbxq, jsonl_and_get_meta)
{
	int st;
	char *out = nbxq("list service --jsonl", &st);
	json_t *o;

	cr_assert_eq(st, 0);
	cr_assert_eq(strchr(strchr(out, '\n') + 1, '\n')[1], 0,
	    "two lines: %s", out);
	out = nbxq("get service ee:a --meta --json", &st);
	cr_assert_eq(st, 0, "%s", out);
	o = json_loads(out, 0, NULL);
	cr_assert_not_null(o, "%s", out);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(
	    json_object_get(o, "meta"), "capacity"), "origin")), "ee");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(
	    json_object_get(o, "meta"), "capacity"), "time")),
	    "2025-11-28T16:00:00.000Z");
	json_decref(o);
}

Test(nbxq, filters_sort_limit_count)
{
	int st;

	cr_assert_str_eq(nbxq("count service", &st), "2\n");
	cr_assert_str_eq(nbxq("count service --include-deleted", &st), "3\n");
	cr_assert_str_eq(nbxq("count service --where kind=shelter", &st), "1\n");
	cr_assert_str_eq(nbxq("count service --where kind!=shelter", &st), "1\n");
	cr_assert_str_eq(nbxq("count service --where 'name~BETA'", &st), "1\n");
	cr_assert_str_eq(nbxq("count service --where 'capacity>5'", &st), "1\n");
	cr_assert_str_eq(nbxq("count service --where 'capacity<5'", &st), "1\n");
	cr_assert_str_eq(nbxq("count service --where languages=ru", &st), "1\n");
	cr_assert_str_eq(nbxq("count service --where kind=shelter --where "
	    "'capacity<5'", &st), "0\n");
	cr_assert_str_eq(nbxq("list service --fields capacity --sort capacity "
	    "--format csv", &st), "id,capacity\r\nee:b,3\r\nee:a,12\r\n");
	cr_assert_str_eq(nbxq("list service --fields capacity --sort -capacity "
	    "--limit 1 --format csv", &st), "id,capacity\r\nee:a,12\r\n");
}

Test(nbxq, deleted_and_erased)
{
	int st;
	const char *out;

	out = nbxq("get service ee:c", &st);
	cr_assert_eq(st, 1);
	cr_assert(strstr(out, "no such record"), "%s", out);
	out = nbxq("get service ee:c --include-deleted --json", &st);
	cr_assert_eq(st, 0, "%s", out);
	cr_assert(strstr(out, "\"deleted\""), "%s", out);
	out = nbxq("get service ee:d --include-deleted", &st);
	cr_assert_eq(st, 1, "erased records are never shown: %s", out);
}

Test(nbxq, usage_and_missing_store)
{
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	char cmd[512];
	int st;

	nbxq("list service --format xml", &st);
	cr_assert_eq(st, 2);
	nbxq("frobnicate service", &st);
	cr_assert_eq(st, 2);
	snprintf(cmd, sizeof(cmd), "%s/nbxq -d /nonexistent/nbx count service "
	    ">/dev/null 2>&1", build);
	cr_assert_eq(WEXITSTATUS(system(cmd)), 1);
}
