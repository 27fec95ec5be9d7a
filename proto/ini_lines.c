/*
 * ini_lines.c - feeds inih one physical line at a time so that every
 * callback knows its line number, and sees the section headers inih keeps
 * to itself.  See ini_lines.h for why.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ini_lines.h"
#include "nbx_err.h"

void
nbx_ini_init(struct nbx_ini *ini, const char *name, void *user)
{
	memset(ini, 0, sizeof(*ini));
	ini->name = name ? name : "<string>";
	ini->user = user;
}

void
nbx_ini_fail(struct nbx_ini *ini, int line, const char *fmt, ...)
{
	va_list ap;

	if (line < 1)
		line = 1;
	if (ini->err_line != 0 && ini->err_line <= line)
		return;
	ini->err_line = line;
	va_start(ap, fmt);
	vsnprintf(ini->err, sizeof(ini->err), fmt, ap);
	va_end(ap);
}

void
nbx_ini_message(const struct nbx_ini *ini, char *buf, size_t len)
{
	if (len == 0)
		return;
	if (ini->err_line > 0)
		snprintf(buf, len, "%s:%d: %s", ini->name, ini->err_line,
		    ini->err);
	else
		snprintf(buf, len, "%s", ini->err);
}

/* ------------------------------------------------------------------ */
/* Line classification, as inih does it                               */
/* ------------------------------------------------------------------ */

/*
 * First of `chars` in s, or the start of an inline comment (a comment
 * prefix after whitespace), or the terminating NUL: inih's
 * ini_find_chars_or_comment.
 */
static const char *
find_chars_or_comment(const char *s, const char *chars)
{
	int was_space = 0;

	while (*s && (!chars || !strchr(chars, *s)) &&
	    !(INI_ALLOW_INLINE_COMMENTS && was_space &&
	    strchr(INI_INLINE_COMMENT_PREFIXES, *s))) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

/*
 * Classifies the line inih is about to parse, exactly as inih will: blank
 * or comment, continuation, section header, key line.  Reports headers to
 * on_section and records the syntax errors inih would only count.
 */
static void
classify(struct nbx_ini *ini, const char *buf)
{
	const char *s = buf, *end;
	size_t n;

	if (INI_ALLOW_BOM && ini->line == 1 &&
	    (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
	    (unsigned char)s[2] == 0xBF)
		s += 3;
	while (*s && isspace((unsigned char)*s))
		s++;
	ini->cont = 0;
	if (*s == '\0' || strchr(INI_START_COMMENT_PREFIXES, *s))
		return;
	if (INI_ALLOW_MULTILINE && ini->have_key && s > buf) {
		ini->cont = 1;
		return;
	}
	if (*s == '[') {
		end = find_chars_or_comment(s + 1, "]");
		if (*end != ']') {
			nbx_ini_fail(ini, ini->line,
			    "section header without a closing ']'");
			return;
		}
		n = (size_t)(end - (s + 1));
		memcpy(ini->section, s + 1, n);
		ini->section[n] = '\0';
		for (end++; *end && isspace((unsigned char)*end); end++)
			;
		if (*end && !strchr(INI_INLINE_COMMENT_PREFIXES, *end)) {
			nbx_ini_fail(ini, ini->line,
			    "unexpected text after [%s]", ini->section);
			return;
		}
		ini->have_key = 0;
		ini->on_section(ini, ini->section);
		return;
	}
	end = find_chars_or_comment(s, "=:");
	if (*end != '=' && *end != ':') {
		nbx_ini_fail(ini, ini->line,
		    "expected 'key = value', '[section]' or a comment");
		return;
	}
	/* inih treats later indented lines as continuations only after a
	   non-empty key. */
	ini->have_key = end > s;
}

/* ------------------------------------------------------------------ */
/* The reader and handler given to inih                               */
/* ------------------------------------------------------------------ */

static int
next_char(struct nbx_ini *ini)
{
	if (ini->sp == ini->send)
		return EOF;
	return (unsigned char)*ini->sp++;
}

/*
 * inih's fgets-style reader.  Hands inih exactly one physical line per
 * call, always ending in '\n', so inih's line count equals ours and its
 * own long-line handling never runs.  A line too long for inih's buffer
 * or holding a NUL byte is recorded as an error and handed over empty.
 * Returns NULL at the end of input and after the first error.
 */
static char *
read_line(char *buf, int num, void *stream)
{
	struct nbx_ini *ini = stream;
	int max = num - 2, n = 0, c, too_long = 0, nul = 0;

	if (ini->eof || ini->err_line != 0 || max < 1)
		return NULL;
	for (;;) {
		c = next_char(ini);
		if (c == EOF || c == '\n')
			break;
		if (c == '\0')
			nul = 1;
		else if (n < max)
			buf[n++] = (char)c;
		else
			too_long = 1;
	}
	if (c == EOF) {
		ini->eof = 1;
		if (n == 0 && !too_long && !nul)
			return NULL;
	}
	ini->line++;
	if (nul || too_long) {
		if (nul)
			nbx_ini_fail(ini, ini->line, "NUL byte in line");
		else
			nbx_ini_fail(ini, ini->line,
			    "line longer than %d bytes", max);
		n = 0;
	}
	buf[n++] = '\n';
	buf[n] = '\0';
	classify(ini, buf);
	return buf;
}

/*
 * inih's handler.  Older inih (Debian's r55) leaves inline comments on
 * continuation lines; strip them here so every version gives the same
 * values.
 */
static int
handle_pair(void *user, const char *section, const char *key,
    const char *value)
{
	struct nbx_ini *ini = user;
	char buf[INI_MAX_LINE];
	size_t n;

	(void)section;		/* possibly cut short; ours is whole */
	if (ini->err_line != 0)
		return 1;
	if (ini->cont) {
		n = (size_t)(find_chars_or_comment(value, NULL) - value);
		if (n >= sizeof(buf))
			n = sizeof(buf) - 1;
		while (n > 0 && isspace((unsigned char)value[n - 1]))
			n--;
		memcpy(buf, value, n);
		buf[n] = '\0';
		value = buf;
	}
	ini->on_key(ini, ini->section, key, value);
	return 1;
}

/*
 * Runs inih over the input set up in ini.  inih's own error count only
 * matters if our classification missed a line it rejects; report that
 * line rather than accept a file inih did not fully understand.
 */
static int
parse(struct nbx_ini *ini)
{
	int rc;

	rc = ini_parse_stream(read_line, ini, handle_pair, ini);
	if (rc > 0)
		nbx_ini_fail(ini, rc, "syntax error");
	else if (rc < 0 && ini->err_line == 0)
		nbx_ini_fail(ini, ini->line, "parser failure (%d)", rc);
	return ini->err_line ? NBX_EINVAL : 0;
}

int
nbx_ini_parse_buf(struct nbx_ini *ini, const char *text, size_t len)
{
	ini->sp = text;
	ini->send = text + len;
	return parse(ini);
}

int
nbx_ini_parse_string(struct nbx_ini *ini, const char *text)
{
	return nbx_ini_parse_buf(ini, text, strlen(text));
}
