/*
 * import.c - `nbxctl import`'s streaming client (see import.h).
 */
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "import.h"
#include "nbx_err.h"

/* One request: its lines verbatim as the "writes" array, and where each
 * came from. */
struct import_req {
	char *buf;
	size_t len, cap;
	size_t n;
	unsigned long lines[IMPORT_BATCH];	/* line numbers in the file */
	size_t off[IMPORT_BATCH], llen[IMPORT_BATCH];	/* in buf */
};

static const char IMPORT_HEAD[] = "{\"cmd\":\"import\",\"brief\":true,"
    "\"writes\":[";

static int
is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

int
import_line_framed(const char *p, size_t n)
{
	char open[64];
	size_t depth = 0, i = 0;
	int in_str = 0;

	while (i < n && is_blank(p[i]))
		i++;
	while (n > i && is_blank(p[n - 1]))
		n--;
	if (i == n || p[i] != '{' || p[n - 1] != '}')
		return 0;
	for (; i < n; i++) {
		char ch = p[i];

		if (in_str) {
			if ((unsigned char)ch < 0x20)
				return 0;
			if (ch == '\\' && ++i == n)
				return 0;
			else if (ch == '"')
				in_str = 0;
			continue;
		}
		switch (ch) {
		case '"':
			in_str = 1;
			break;
		case '{':
		case '[':
			if (depth == sizeof(open))
				return 0;	/* deep: let the parser say */
			open[depth++] = ch;
			break;
		case '}':
		case ']':
			if (depth == 0 || open[depth - 1] != (ch == '}' ? '{' :
			    '['))
				return 0;
			/* the object that opened the line closes at its end */
			if (--depth == 0 && i != n - 1)
				return 0;
			break;
		default:
			break;
		}
	}
	return depth == 0 && !in_str;
}

static void
progress(const struct import_stats *s, double t0, int final)
{
	struct timespec ts;
	double now, rate;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	rate = now > t0 ? (double)s->read / (now - t0) : 0;
	fprintf(stderr, "\r  %lu lines  %lu applied  %lu unchanged  %lu "
	    "rejected  %.0f lines/s%s", s->read, s->applied, s->unchanged,
	    s->rejected, rate, final ? "\n" : "");
}

static int
req_put(struct import_req *r, const char *p, size_t n)
{
	if (r->len + n + 4 > r->cap) {
		size_t cap = r->cap ? r->cap : 1 << 16;
		char *b;

		while (cap < r->len + n + 4)
			cap *= 2;
		if ((b = realloc(r->buf, cap)) == NULL)
			return -1;
		r->buf = b;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	return 0;
}

/* Appends line `lineno` to the request. */
static int
req_add(struct import_req *r, const char *line, size_t len,
    unsigned long lineno)
{
	if (r->n == 0) {
		r->len = 0;
		if (req_put(r, IMPORT_HEAD, sizeof(IMPORT_HEAD) - 1) != 0)
			return -1;
	} else if (req_put(r, ",", 1) != 0) {
		return -1;
	}
	r->off[r->n] = r->len;
	r->llen[r->n] = len;
	if (req_put(r, line, len) != 0)
		return -1;
	r->lines[r->n++] = lineno;
	return 0;
}

/* Closes the request and sends it. */
static int
req_send(struct ctl_client *c, struct import_req *r)
{
	char err[1024];

	if (req_put(r, "]}\n", 3) != 0) {
		fprintf(stderr, "\nnbxctl import: out of memory\n");
		return -1;
	}
	if (ctl_client_send_line(c, r->buf, r->len, err, sizeof(err)) != 0) {
		fprintf(stderr, "\nnbxctl import: %s\n", err);
		return -1;
	}
	return 0;
}

/*
 * Reads the reply to r and accounts for it.  0: done; 1: nbxd could not
 * parse the request (a line is not JSON): r must be checked line by line
 * and sent again; -1: failed.
 */
static int
req_reply(struct ctl_client *c, const struct import_req *r, const char *name,
    struct import_stats *st)
{
	json_t *reply, *x;
	char err[1024];
	size_t i;

	if (ctl_client_recv(c, &reply, 600000, err, sizeof(err)) != 0) {
		fprintf(stderr, "\nnbxctl import: %s\n", err);
		return -1;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		int code = (int)json_integer_value(json_object_get(reply,
		    "code"));

		if (code == NBX_EMALFORMED) {
			json_decref(reply);
			return 1;
		}
		fprintf(stderr, "\nnbxctl import: %s\n", ctl_str_or(reply, "error",
		    "failed"));
		json_decref(reply);
		return -1;
	}
	st->applied += (unsigned long)json_integer_value(json_object_get(reply,
	    "applied"));
	st->unchanged += (unsigned long)json_integer_value(json_object_get(
	    reply, "unchanged"));
	json_array_foreach(json_object_get(reply, "rejected"), i, x) {
		json_int_t k = json_integer_value(json_object_get(x, "i"));

		st->rejected++;
		if (k >= 0 && (size_t)k < r->n)
			fprintf(stderr, "%s:%lu: %s\n", name, r->lines[k],
			    ctl_str_or(x, "error", "rejected"));
		else
			fprintf(stderr, "%s: %s\n", name, ctl_str_or(x, "error",
			    "rejected"));
	}
	json_decref(reply);
	return 0;
}

/* 1 if the line is JSON; else reports it and counts it rejected. */
static int
line_parses(const char *line, size_t len, const char *name,
    unsigned long lineno, struct import_stats *st)
{
	json_error_t je;
	json_t *w = json_loadb(line, len, 0, &je);

	if (w != NULL) {
		json_decref(w);
		return 1;
	}
	fprintf(stderr, "%s:%lu: not JSON: %s (column %d)\n", name, lineno,
	    je.text, je.column);
	st->rejected++;
	return 0;
}

/*
 * nbxd could not parse request r: checks each of its lines here, reports
 * those that are not JSON, and sends the others again, waiting for the
 * answer (nothing else is in flight).
 */
static int
req_retry(struct ctl_client *c, const struct import_req *r, const char *name,
    struct import_stats *st)
{
	static struct import_req again;
	int rc = 0;

	again.n = 0;
	for (size_t i = 0; i < r->n && rc == 0; i++)
		if (line_parses(r->buf + r->off[i], r->llen[i], name,
		    r->lines[i], st) && req_add(&again, r->buf + r->off[i],
		    r->llen[i], r->lines[i]) != 0) {
			fprintf(stderr, "\nnbxctl import: out of memory\n");
			rc = -1;
		}
	if (rc == 0 && again.n > 0 && (rc = req_send(c, &again)) == 0 &&
	    (rc = req_reply(c, &again, name, st)) == 1) {
		fprintf(stderr, "\nnbxctl import: nbxd refused a request of "
		    "JSON lines as not JSON\n");
		rc = -1;
	}
	free(again.buf);
	again = (struct import_req){ 0 };
	return rc;
}

/*
 * Answers the oldest request in flight.  If nbxd could not parse it, the
 * requests after it are answered first, then each unparsed one is checked
 * here and sent again.
 */
static int
settle(struct ctl_client *c, struct import_req *reqs, size_t *oldest,
    size_t *inflight, const char *name, struct import_stats *st)
{
	int redo[IMPORT_DEPTH] = { 0 }, rc;
	size_t first = *oldest, k;

	if ((rc = req_reply(c, &reqs[*oldest], name, st)) < 0)
		return -1;
	redo[*oldest] = rc;
	*oldest = (*oldest + 1) % IMPORT_DEPTH;
	(*inflight)--;
	if (!redo[first])
		return 0;
	while (*inflight > 0) {
		if ((rc = req_reply(c, &reqs[*oldest], name, st)) < 0)
			return -1;
		redo[*oldest] = rc;
		*oldest = (*oldest + 1) % IMPORT_DEPTH;
		(*inflight)--;
	}
	for (k = 0; k < IMPORT_DEPTH; k++) {
		size_t i = (first + k) % IMPORT_DEPTH;

		if (redo[i] && req_retry(c, &reqs[i], name, st) != 0)
			return -1;
	}
	return 0;
}

int
import_stream(struct ctl_client *c, FILE *f, const char *name, int tty,
    struct import_stats *st)
{
	static struct import_req reqs[IMPORT_DEPTH];
	size_t cur = 0, oldest = 0, inflight = 0, cap = 0;
	unsigned long lineno = 0;
	char *line = NULL;
	struct timespec ts;
	double t0;
	ssize_t len;
	int rc = 0;

	/* the requests in flight wait in the socket, not here */
	ctl_client_send_room(c, (size_t)IMPORT_DEPTH * IMPORT_BYTES);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	for (;;) {
		struct import_req *r = &reqs[cur];
		int end;

		len = getline(&line, &cap, f);
		end = len < 0;
		if (!end) {
			lineno++;
			while (len > 0 && (line[len - 1] == '\n' ||
			    line[len - 1] == '\r'))
				line[--len] = 0;
			if (len == 0)
				continue;
			st->read++;
			if ((size_t)len > IMPORT_LINE_MAX) {
				fprintf(stderr, "%s:%lu: line longer than %u "
				    "bytes\n", name, lineno, IMPORT_LINE_MAX);
				st->rejected++;
				continue;
			}
			/* a framed line goes as it is; nbxd parses it */
			if (!import_line_framed(line, (size_t)len) &&
			    !line_parses(line, (size_t)len, name, lineno, st))
				continue;
			if (req_add(r, line, (size_t)len, lineno) != 0) {
				fprintf(stderr, "nbxctl import: out of "
				    "memory\n");
				rc = -1;
				break;
			}
		}
		if (r->n > 0 && (end || r->n == IMPORT_BATCH ||
		    r->len >= IMPORT_BYTES)) {
			if ((rc = req_send(c, r)) != 0)
				break;
			inflight++;
			cur = (cur + 1) % IMPORT_DEPTH;
			/* the next request's slot must be answered first */
			if (inflight == IMPORT_DEPTH && (rc = settle(c, reqs,
			    &oldest, &inflight, name, st)) != 0)
				break;
			reqs[cur].n = 0;
			if (tty)
				progress(st, t0, 0);
		}
		if (end)
			break;
	}
	while (rc == 0 && inflight > 0)
		rc = settle(c, reqs, &oldest, &inflight, name, st);
	if (rc == 0 && tty)
		progress(st, t0, 1);
	free(line);
	for (size_t i = 0; i < IMPORT_DEPTH; i++) {
		free(reqs[i].buf);
		reqs[i] = (struct import_req){ 0 };
	}
	return rc == 0 ? 0 : -1;
}
