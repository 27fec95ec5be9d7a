/*
 * jsplit.h - where a control request's array member may be cut in two,
 * so that the two halves of a large import are parsed by jansson on two
 * threads at once.
 *
 * This is not a JSON parser: it only follows strings, escapes and
 * brackets far enough to find a comma between two elements of the array
 * member `key` of the top-level object.  jansson parses both pieces and
 * decides whether they are JSON; the cut is chosen so that the pieces are
 * both valid exactly when the whole line is, and together hold the same
 * values in the same order (jsplit_pieces says how to make them).
 */
#ifndef NBX_JSPLIT_H
#define NBX_JSPLIT_H

#include <stddef.h>

#define JSPLIT_DEPTH	32	/* deeper nesting: the line is not cut */

/* A cut of line[0..n): see jsplit_find. */
struct jsplit {
	size_t cut;	/* the comma between two elements of the array */
	size_t close;	/* the array's closing ']' */
};

/*
 * Finds a cut of the array member `key` of the object in line[0..n),
 * near the middle of the array's bytes.  Returns 1 with *out filled, or
 * 0 when the line is not to be cut: not an object, no such member or more
 * than one (a member name written with escapes counts as unknown, so none
 * may be), not an array, fewer than two elements, nesting past
 * JSPLIT_DEPTH, or bytes that end before the array does.
 */
int jsplit_find(const char *line, size_t n, const char *key,
    struct jsplit *out);

/*
 * The two pieces of a cut line:
 *   first  = line[0..cut) line[close..n)    the object, the array's
 *                                           first elements only
 *   second = '[' line[cut+1..close]         the array's other elements
 * first needs n - (close - cut) bytes, second close - cut + 1.
 */
void jsplit_pieces(const char *line, size_t n, const struct jsplit *s,
    char *first, char *second);

#endif
