/*
 * jsplit_test.c - the cut of a control request's "writes" array
 * (daemon/jsplit.h): where it falls, the lines that are never cut, and,
 * for every line here, cut or not, that the pieces agree with jansson on
 * the whole line (the fuzz harness's check, tests/fuzz/jsplit_fuzz.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/jsplit_fuzz.c"

/* The cut of s, or a zero cut when it is not cut; checked on jansson. */
static struct jsplit
cut_of(const char *s)
{
	struct jsplit c = { 0, 0 };

	if (!jsplit_find(s, strlen(s), "writes", &c))
		memset(&c, 0, sizeof(c));
	nbx_fuzz_jsplit((const uint8_t *)s, strlen(s));
	return c;
}

/* The two pieces of s as strings (free both). */
static void
pieces_of(const char *s, char **first, char **second)
{
	struct jsplit c;
	size_t n = strlen(s);

	cr_assert(jsplit_find(s, n, "writes", &c), "%s is cut", s);
	*first = calloc(1, n - (c.close - c.cut) + 1);
	*second = calloc(1, c.close - c.cut + 2);
	cr_assert(*first && *second);
	jsplit_pieces(s, n, &c, *first, *second);
}

Test(jsplit, an_import_request_is_cut_between_two_writes)
{
	char *a, *b;

	pieces_of("{\"cmd\":\"import\",\"writes\":[{\"id\":\"a\"},{\"id\":\"b\"},"
	    "{\"id\":\"c\"},{\"id\":\"d\"}],\"brief\":true}", &a, &b);
	cr_assert_str_eq(a, "{\"cmd\":\"import\",\"writes\":[{\"id\":\"a\"},"
	    "{\"id\":\"b\"}],\"brief\":true}");
	cr_assert_str_eq(b, "[{\"id\":\"c\"},{\"id\":\"d\"}]");
	free(a);
	free(b);
	/* whitespace everywhere, two elements */
	pieces_of(" {\n \"writes\" : [ 1 ,\t2 ] } ", &a, &b);
	cr_assert_str_eq(a, " {\n \"writes\" : [ 1 ] } ");
	cr_assert_str_eq(b, "[\t2 ]");
	free(a);
	free(b);
}

Test(jsplit, brackets_commas_and_quotes_inside_strings_do_not_count)
{
	char *a, *b;

	pieces_of("{\"writes\":[\"a,]}\\\"[\",{\"k\":\"x,y\",\"z\":[1,2]},"
	    "\"\\\\\",\"]\"],\"cmd\":\"import\"}", &a, &b);
	cr_assert_str_eq(a, "{\"writes\":[\"a,]}\\\"[\",{\"k\":\"x,y\",\"z\":"
	    "[1,2]}],\"cmd\":\"import\"}");
	cr_assert_str_eq(b, "[\"\\\\\",\"]\"]");
	free(a);
	free(b);
}

Test(jsplit, lines_that_are_never_cut)
{
	static const char *never[] = {
		"",
		"[1,2,3]",				/* not an object */
		"{\"other\":[1,2,3]}",			/* no such member */
		"{\"writes\":[1]}",			/* one element */
		"{\"writes\":[]}",
		"{\"writes\":{\"a\":1,\"b\":2}}",	/* not an array */
		"{\"writes\":\"[1,2]\"}",
		"{\"writes\":12,\"x\":[1,2]}",
		"{\"writes\":[1,2],\"writes\":[3,4]}",	/* named twice */
		"{\"wr\\u0069tes\":[5],\"writes\":[1,2]}",	/* an escape */
		"{\"writes\":[1,2]",			/* not closed */
		"{\"writes\":[1,2}}",			/* mismatched */
		"{\"writes\":[1,2]]}",
		"{\"writes\":[\"1,2]}",			/* open string */
		"{\"writes\":[\"x\\\"],[1,2]}",
		"{\"writes\":[,]}",			/* nothing on a side */
		"{\"writes\":[ ,1]}",
		"{\"writes\":[1, ]}",
		"{\"a\":{\"writes\":[1,2]}}",		/* not at the top */
		("{\"writes\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]"
		    "]]]]]]]]]]]]]]]],2]}"),		/* too deep */
	};

	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
		struct jsplit c = cut_of(never[i]);

		cr_assert_eq(c.cut, 0, "%s cut at %zu", never[i], c.cut);
	}
}

/* Lines jansson refuses may be cut; then a piece is refused too. */
Test(jsplit, a_line_that_is_not_json_gives_a_piece_that_is_not)
{
	static const char *bad[] = {
		"{\"writes\":[1,,2]}",
		"{\"writes\":[1 2,3]}",
		"{\"writes\":[1,2 3]}",
		"{\"writes\":[1,2],}",
		"{\"writes\":[1,2]} x",
		"{\"writes\":[1,\"\\q\"]}",
		"{\"writes\":[tru,1]}",
		"{\"writes\" [1,2]}",
		"{\"writes\"::[1,2]}",
		"{\"a\" \"writes\":[1,2]}",
	};
	json_error_t je;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_null(json_loads(bad[i], 0, &je), "%s", bad[i]);
		(void)cut_of(bad[i]);	/* aborts if both pieces parse */
	}
}

/* The cut falls at the first separator past the middle of the line. */
Test(jsplit, the_cut_is_near_the_middle)
{
	char line[4096];
	int off = snprintf(line, sizeof(line), "{\"writes\":[");
	struct jsplit c;

	for (int i = 0; i < 200; i++)
		off += snprintf(line + off, sizeof(line) - (size_t)off,
		    "%s%d", i ? "," : "", 1000 + i);
	snprintf(line + off, sizeof(line) - (size_t)off, "]}");
	c = cut_of(line);
	cr_assert_geq(c.cut, strlen(line) / 2);
	cr_assert_lt(c.cut, strlen(line) / 2 + 5);
	cr_assert_eq(line[c.cut], ',');
	cr_assert_eq(c.close, strlen(line) - 2);
}
