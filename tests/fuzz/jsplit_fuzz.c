/*
 * jsplit_fuzz.c - libFuzzer harness for the cut of a control request
 * (daemon/jsplit.h), checked against jansson itself.
 *
 * The input is one request line.  Whenever jsplit_find cuts it, the two
 * pieces are parsed, and so is the whole line: the pieces must both be
 * JSON exactly when the line is, and then the first piece's "writes"
 * extended by the second must equal the line's tree; both halves hold at
 * least one element.  Lines that are not cut need nothing (control.c
 * parses them whole).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "jsplit.h"

static int
nbx_fuzz_jsplit(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct jsplit s;
	char *first, *second;
	json_t *whole, *a, *b, *w;
	json_error_t je;

	if (!jsplit_find(line, size, "writes", &s))
		return 0;
	fz_check(s.cut < s.close && s.close < size, "cut inside the line");
	fz_check(line[s.cut] == ',' && line[s.close] == ']', "cut at , and ]");
	first = malloc(size - (s.close - s.cut));
	second = malloc(s.close - s.cut + 1);
	fz_check(first != NULL && second != NULL, "memory");
	jsplit_pieces(line, size, &s, first, second);
	whole = json_loadb(line, size, 0, &je);
	a = json_loadb(first, size - (s.close - s.cut), 0, &je);
	b = json_loadb(second, s.close - s.cut + 1, 0, &je);
	fz_check((whole != NULL) == (a != NULL && b != NULL),
	    "the pieces are JSON exactly when the line is");
	if (whole != NULL) {
		w = json_object_get(a, "writes");
		fz_check(json_is_array(w) && json_is_array(b),
		    "both pieces hold arrays");
		fz_check(json_array_size(w) > 0 && json_array_size(b) > 0,
		    "both halves hold elements");
		fz_check(json_array_extend(w, b) == 0, "extend");
		fz_check(json_equal(a, whole), "the joined pieces are the line");
	}
	json_decref(whole);
	json_decref(a);
	json_decref(b);
	free(first);
	free(second);
	return 0;
}

#ifdef NBX_LIBFUZZER
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return nbx_fuzz_jsplit(data, size);
}
#endif
