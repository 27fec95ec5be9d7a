/*
 * importline_test.c - import_line_framed (tools/import.c): which lines
 * nbxctl may pack into a request without parsing them.  The property that
 * matters: a framed line can never change how the lines beside it parse.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "import.h"
#include "testlib.h"

static int
framed(const char *s)
{
	return import_line_framed(s, strlen(s));
}

Test(importline, objects_whose_brackets_and_strings_close_are_framed)
{
	cr_assert(framed("{}"));
	cr_assert(framed("  {\"a\":1}\t "));
	cr_assert(framed("{\"a\":[1,{\"b\":\"}]\"}],\"c\":\"x\\\"y\"}"));
	cr_assert(framed("{\"s\":\"\\\\\"}"), "an escaped backslash ends");
	cr_assert(framed("{\"a\" 1}"), "grammar is the parser's business");
	cr_assert(framed("{\"a\":tru}"));
}

Test(importline, anything_that_could_spill_into_its_neighbours_is_not)
{
	cr_assert(!framed(""));
	cr_assert(!framed("   "));
	cr_assert(!framed("[1,2]"), "not an object");
	cr_assert(!framed("42"));
	cr_assert(!framed("{\"a\":1}, {\"b\":2}"), "two values");
	cr_assert(!framed("{\"a\":1}]"));
	cr_assert(!framed("{\"a\":1}}"));
	cr_assert(!framed("{\"a\":[1}"), "mismatched brackets");
	cr_assert(!framed("{\"a\":\"x}"), "an open string");
	cr_assert(!framed("{\"a\":\"x\\\"}"), "an escaped quote does not close");
	cr_assert(!framed("{\"a\":\"x\\"), "an escape at the end");
	cr_assert(!framed("{\"a\":\"x\ty\"}"), "a control byte in a string");
	cr_assert(!framed("{\"a\":1"));
	cr_assert(!framed("x{\"a\":1}"));
	cr_assert_eq(import_line_framed("{\"a\":\"\0\"}", 9), 0, "a NUL");
}

/* 65 levels: past the scanner's stack, left to the parser */
Test(importline, deep_lines_are_left_to_the_parser)
{
	char s[300];
	size_t n = 0;

	s[n++] = '{';
	s[n++] = '"';
	s[n++] = 'a';
	s[n++] = '"';
	s[n++] = ':';
	for (int i = 0; i < 64; i++)
		s[n++] = '[';
	for (int i = 0; i < 64; i++)
		s[n++] = ']';
	s[n++] = '}';
	cr_assert_eq(import_line_framed(s, n), 0);
	cr_assert_eq(import_line_framed(s + 0, 5 + 62 * 2 + 1), 0,
	    "and a cut one is unbalanced anyway");
}

static uint64_t rng;

static unsigned
rnd(unsigned n)
{
	return (unsigned)(test_xorshift(&rng) % n);
}

/*
 * Property: take valid import lines, mutate them with JSON's structural
 * bytes (and join two into one line); for every mutant that is framed, packing it between two good
 * lines gives an array that parses exactly when the mutant parses alone,
 * and then has three elements.  The seed is printed; NBX_SEED replays.
 */
Test(importline, a_framed_line_never_changes_its_neighbours, .timeout = 120)
{
	static const char *base[] = {
		"{\"collection\":\"service\",\"id\":\"ee:1\",\"fields\":{\"name\":\"A, b\",\"languages\":[\"et\",\"ru\"]}}",
		"{\"collection\":\"case\",\"id\":\"x\",\"audience\":[\"lv\"],\"fields\":{\"pseudonym\":\"P \\\"q\\\" }]\"}}",
		"{\"a\":{\"b\":[1,2,{\"c\":null}]},\"d\":true}",
	};
	static const char alphabet[] = "{}[]\",:\\ a1\t";
	unsigned seed = test_seed();
	int iters = 200000, tested = 0;

	fprintf(stderr, "property importline: seed=%u (replay with "
	    "NBX_SEED=%u)\n", seed, seed);
	rng = (uint64_t)seed * 2654435761u + 1;
	for (int it = 0; it < iters; it++) {
		char m[512], arr[1600];
		const char *b = base[rnd(3)];
		size_t n = strlen(b);
		json_t *alone, *all;
		json_error_t je;
		int edits = 1 + (int)rnd(3);

		memcpy(m, b, n);
		for (int e = 0; e < edits; e++) {
			unsigned at = rnd((unsigned)n + 1), op = rnd(4);
			char ch = alphabet[rnd(sizeof(alphabet) - 1)];
			const char *more = base[rnd(3)];

			if (op == 3 && n + strlen(more) + 1 < sizeof(m)) {
				m[n++] = ',';		/* two lines in one */
				memcpy(m + n, more, strlen(more));
				n += strlen(more);
			} else if (op == 0 && n < sizeof(m) - 1) {	/* insert */
				memmove(m + at + 1, m + at, n - at);
				m[at] = ch;
				n++;
			} else if (op == 1 && at < n) {		/* delete */
				memmove(m + at, m + at + 1, n - at - 1);
				n--;
			} else if (at < n) {			/* replace */
				m[at] = ch;
			}
		}
		if (!import_line_framed(m, n))
			continue;
		tested++;
		snprintf(arr, sizeof(arr), "[%s,%.*s,%s]", base[0], (int)n, m,
		    base[2]);
		alone = json_loadb(m, n, 0, &je);
		all = json_loads(arr, 0, &je);
		cr_assert_eq(alone != NULL, all != NULL, "seed %u: '%.*s' "
		    "parses %s but packed %s", seed, (int)n, m,
		    alone ? "alone" : "not alone", all ? "does" : "does not");
		if (all != NULL)
			cr_assert_eq(json_array_size(all), 3, "seed %u: '%.*s'",
			    seed, (int)n, m);
		json_decref(alone);
		json_decref(all);
	}
	cr_assert_gt(tested, iters / 10, "too few framed mutants (%d)", tested);
}
