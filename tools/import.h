/*
 * import.h - the client side of `nbxctl import`: a JSONL file streamed to
 * nbxd in requests of IMPORT_BATCH lines, IMPORT_DEPTH of them in flight,
 * each line sent as it is in the file.
 *
 * Lines are not parsed here on the way: a line whose brackets and strings
 * close within it (import_line_framed) cannot spill into the lines packed
 * beside it, and nbxd's parser judges the request.  Only when nbxd
 * answers that a request is not JSON are its lines parsed here, one by
 * one, to report the bad ones by number and send the rest again.  A line
 * that is not framed is parsed here at once.
 */
#ifndef NBX_IMPORT_H
#define NBX_IMPORT_H

#include <stddef.h>
#include <stdio.h>

#include "ctlclient.h"

#define IMPORT_BATCH	1000
#define IMPORT_LINE_MAX	(1u << 20)
#define IMPORT_BYTES	(2u << 20)	/* a request stays under CTL_LINE_MAX */
#define IMPORT_DEPTH	4		/* requests in flight: nbxd parses
					   some on its thread pool while it
					   applies another */

struct import_stats {
	unsigned long read, applied, unchanged, rejected;
};

/*
 * 1 if p[0..n) is one JSON object as far as its brackets and strings go:
 * it starts with '{' (after white space), every '{' '[' and string it
 * opens is closed, in order, and the object closes at its last non-blank
 * byte; no control byte inside a string.  Says nothing of the rest of
 * JSON's grammar.
 */
int import_line_framed(const char *p, size_t n);

/*
 * Streams f (named `name` in messages) to the daemon on c, reporting each
 * rejected line on stderr as "name:LINE: reason", adding to *st, and with
 * a progress line on stderr when `tty`.  Returns 0 (lines may have been
 * rejected: see st) or -1 when the daemon or the connection failed (said
 * on stderr).
 */
int import_stream(struct ctl_client *c, FILE *f, const char *name, int tty,
    struct import_stats *st);

#endif
