/*
 * jsplit.c - the cut of a control request's array member (see jsplit.h).
 *
 * Why the pieces are valid exactly when the line is: write the line as
 * P '[' S1 ',' S2 ']' R, where the brackets are the array's and the comma
 * one of its separators.  The pieces are P '[' S1 ']' R and '[' S2 ']'.
 * Every byte but the comma is in one piece, in the same context as in the
 * line (the bytes before the cut are the first piece's own first bytes;
 * after the array the parser is where it was in the line), so an error
 * anywhere in the line is an error in a piece.  Conversely, valid pieces
 * make S1 and S2 valid lists of values, and a comma joins two non-empty
 * lists into one: so S1 and S2 must each hold more than whitespace,
 * which is checked, as "[,1]" is not JSON while "[]" and "[1]" are.  A
 * member name with an escape could name the member too (jansson keeps
 * the last of equal names), so such a line is never cut.
 */
#include <endian.h>
#include <stdint.h>
#include <string.h>

#include "jsplit.h"

static int
is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1 if p[from..to) holds a byte that is not JSON whitespace. */
static int
has_value(const unsigned char *p, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (!is_ws(p[i]))
			return 1;
	return 0;
}

/* Bit 7 of each byte of w that equals c; exact up to the lowest one. */
static uint64_t
bytes_equal(uint64_t w, unsigned char c)
{
	uint64_t x = w ^ (UINT64_C(0x0101010101010101) * c);

	return (x - UINT64_C(0x0101010101010101)) & ~x &
	    UINT64_C(0x8080808080808080);
}

/*
 * The first quote or backslash in p[i..n), or n.  Strings are most of an
 * import's bytes and short: eight bytes are looked at a time.
 */
static size_t
next_special(const unsigned char *p, size_t n, size_t i)
{
	for (; i + 8 <= n; i += 8) {
		uint64_t w, m;

		memcpy(&w, p + i, 8);
		w = le64toh(w);
		if ((m = bytes_equal(w, '"') | bytes_equal(w, '\\')) != 0)
			return i + (size_t)__builtin_ctzll(m) / 8;
	}
	while (i < n && p[i] != '"' && p[i] != '\\')
		i++;
	return i;
}

/*
 * Past the string that opens at p[i] ('"'): the index after its closing
 * quote, or 0 if it does not close.  *esc is set if it holds an escape.
 */
static size_t
string_end(const unsigned char *p, size_t n, size_t i, int *esc)
{
	*esc = 0;
	for (i = next_special(p, n, i + 1); i < n;
	    i = next_special(p, n, i + 2)) {
		if (p[i] == '"')
			return i + 1;
		*esc = 1;	/* a backslash: the byte after it is no quote */
	}
	return 0;
}

int
jsplit_find(const char *line, size_t n, const char *key, struct jsplit *out)
{
	const unsigned char *p = (const unsigned char *)line;
	size_t klen = strlen(key), i = 0, open = 0, before = 0, after = 0;
	unsigned char stack[JSPLIT_DEPTH];
	int depth = 0, want_key = 0, named = 0, esc, seen = 0, inside = 0;
	int done = 0;

	while (i < n && is_ws(p[i]))
		i++;
	if (i == n || p[i] != '{')
		return 0;
	while (i < n) {
		unsigned char c = p[i];

		switch (c) {
		case '"': {
			size_t end = string_end(p, n, i, &esc);

			if (end == 0)
				return 0;	/* unterminated */
			if (depth == 1 && want_key) {
				if (esc)
					return 0;
				want_key = 0;
				named = end - i - 2 == klen &&
				    memcmp(p + i + 1, key, klen) == 0;
				if (named && seen++)
					return 0;	/* named twice */
			} else if (depth == 1 && named) {
				return 0;	/* the member is not an array */
			}
			i = end;
			continue;
		}
		case '{':
		case '[':
			if (depth == JSPLIT_DEPTH)
				return 0;
			if (depth == 1 && named) {
				if (c != '[')
					return 0;
				open = i;
				inside = 1;
				named = 0;
			}
			stack[depth++] = c;
			want_key = depth == 1;
			break;
		case '}':
		case ']':
			if (depth == 0 || stack[depth - 1] != (c == '}' ? '{' :
			    '['))
				return 0;
			if (--depth == 1 && inside) {
				inside = 0;
				done = 1;
				out->close = i;
			}
			break;
		case ',':
			if (depth == 1)
				want_key = 1;
			else if (depth == 2 && inside) {
				/* the first separator past the middle of the
				   line, else the last one before it */
				if (i < n / 2)
					before = i;
				else if (after == 0)
					after = i;
			}
			break;
		default:
			if (depth == 1 && named && c != ':' && !is_ws(c))
				return 0;	/* the member is not an array */
			break;
		}
		i++;
	}
	if (!done || depth != 0)
		return 0;
	out->cut = after ? after : before;
	return out->cut != 0 && has_value(p, open + 1, out->cut) &&
	    has_value(p, out->cut + 1, out->close);
}

void
jsplit_pieces(const char *line, size_t n, const struct jsplit *s,
    char *first, char *second)
{
	memcpy(first, line, s->cut);
	memcpy(first + s->cut, line + s->close, n - s->close);
	second[0] = '[';
	memcpy(second + 1, line + s->cut + 1, s->close - s->cut);
}
