/*
 * ini_lines.h - inih with line numbers, whole section names and the first
 * error kept for a "FILE:LINE: message" report.
 *
 * Debian's inih (r55) is built without INI_HANDLER_LINENO, calls its
 * handler only for "key = value" lines (so a section without keys is never
 * seen), cuts section names at 49 bytes and lets the tail of an over-long
 * line spill into a line of its own.  This wrapper feeds inih through its
 * own line reader, which counts physical lines, reports every "[section]"
 * header whole and in file order, rejects over-long lines, NUL bytes and
 * lines inih cannot parse, and stops at the first error.  It mirrors
 * inih's line classification (comments, continuation lines, headers) for
 * the library's default options.
 *
 * Used by the schema (proto/policy.c) and node configuration
 * (daemon/conf/config.c) parsers; the callers read the files.
 */
#ifndef NBX_INI_LINES_H
#define NBX_INI_LINES_H

#include <stddef.h>

#include <ini.h>

/* Longest line accepted, in bytes, without its line end. */
#define NBX_INI_LINE_MAX	(INI_MAX_LINE - 2)

struct nbx_ini {
	/* Set by the caller before parsing. */
	const char *name;	/* file name used in messages */
	void *user;
	/*
	 * Called for each "[section]" header, before any key under it, with
	 * the text between the brackets as written.
	 */
	void (*on_section)(struct nbx_ini *ini, const char *section);
	/*
	 * Called for each "key = value" line and for each continuation line
	 * (an indented line after a key: same key, that line's value).
	 * `section` is the whole current section name, "" before any.
	 */
	void (*on_key)(struct nbx_ini *ini, const char *section,
	    const char *key, const char *value);

	/* Read by the callbacks. */
	int line;		/* physical line being parsed, 1-based */
	int cont;		/* on_key: 1 if this is a continuation line */

	/* The error with the lowest line number; err_line is 0 when none. */
	int err_line;
	char err[320];

	/* Private to ini_lines.c. */
	const char *sp, *send;
	int eof;
	int have_key;
	char section[INI_MAX_LINE];
};

/* Prepares `ini` for one parse; `name` names the file in messages. */
void nbx_ini_init(struct nbx_ini *ini, const char *name, void *user);

/*
 * Records an error at `line` unless one at a lower or equal line is
 * already recorded.  Callbacks use it during the parse; callers use it
 * for checks after the parse.  No callback runs after the first error.
 */
void nbx_ini_fail(struct nbx_ini *ini, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Parses the `len` bytes at `text` (a file's contents, read by the
 * caller: this module does no I/O; a NUL byte among them is an error of
 * its line).  Returns 0, or NBX_EINVAL when an error was recorded (by the
 * parser or a callback).
 */
int nbx_ini_parse_buf(struct nbx_ini *ini, const char *text, size_t len);

/* As nbx_ini_parse_buf, over a NUL-terminated string. */
int nbx_ini_parse_string(struct nbx_ini *ini, const char *text);

/*
 * Writes the recorded error as "NAME:LINE: message" into buf, always
 * NUL-terminated when len > 0.
 */
void nbx_ini_message(const struct nbx_ini *ini, char *buf, size_t len);

#endif
