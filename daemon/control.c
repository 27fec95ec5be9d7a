/*
 * control.c - the control socket server (see control.h).  Each client
 * connection buffers bytes up to CTL_LINE_MAX and hands every complete line
 * to the handler.  A large line (a bulk import) is parsed on libuv's
 * thread pool, so that the loop applies one request while the next is
 * parsed (a finished parse is applied in the turn's check phase, after
 * the turn's reads have queued, and started parsing, the request after
 * it); requests are still handled, and answered, in the order they
 * came.  One parse runs at a time per client: the loop, which applies,
 * is the pipeline's slowest stage, and more parses than cores would take
 * its CPU.  Only a large import with nothing before it to apply is cut
 * in two (jsplit.h) and its halves parsed at once, so that a writer who
 * sends one request at a time waits for about half a parse.  A queued
 * request's JSON tree lives in an arena of its own (jarena.h), dropped in
 * one go once the request is answered.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "jarena.h"
#include "jsplit.h"
#include "log.h"
#include "nbx_err.h"

#define CTL_PARSE_AWAY	(64u << 10)	/* lines this long: parsed off loop */
#define CTL_CUT_MIN	(64u << 10)	/* ... and may be cut in two */
#define CTL_QUEUE_MAX	4		/* requests waiting per client */

/* The second half of a request cut in two (jsplit.h): its array's tail. */
struct ctl_half {
	uv_work_t work;
	char *text;
	size_t n;
	json_t *val;
	json_error_t je;
	struct jarena *arena;	/* val's values live here */
};

/* A request waiting its turn, parsed or being parsed. */
struct ctl_req {
	uv_work_t work;
	struct ctl_client *c;
	struct ctl_req *next;
	char *line;		/* when cut: the first half */
	size_t n;
	json_t *req;		/* NULL: not JSON, see je */
	struct jarena *arena;	/* req's values live here */
	json_error_t je;
	int parsed;
	int started;		/* its parse is on the thread pool */
	/* cut in two, the halves parsed at once: the line as it came */
	char *whole;
	size_t whole_n;
	struct ctl_half half;
	unsigned pending;	/* its parses still on the thread pool */
	int uncut;		/* the cut halves were refused: parse it whole */
};

struct ctl_client {
	uv_pipe_t pipe;
	struct ctl_server *srv;
	struct ctl_client *next;
	char *buf;
	size_t len, cap;
	struct ctl_req *head, *tail;	/* in arrival order */
	unsigned nreq;		/* in the queue */
	unsigned nwork;		/* parses on the thread pool */
	int closing;
	int closed;		/* handle closed; freed when nwork is 0 */
	int paused;		/* reading stopped until replies drain */
	int full;		/* reading stopped until the queue drains */
	int drain_due;		/* parsed requests to handle at the check */
};

struct ctl_server {
	uv_pipe_t pipe;
	uv_check_t check;	/* handles what parse_done found parsed */
	int handles;		/* open; the server is freed at 0 */
	char path[108];
	ctl_handler_fn *fn;
	void *arg;
	struct ctl_client *clients;
	int stopping;
};

/*
 * Replaces every byte that is not part of valid UTF-8 with '?': a message
 * may quote a client's bytes, or be cut mid-character, and JSON needs
 * valid UTF-8.
 */
void
ctl_utf8_scrub(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p) {
		unsigned c = *p, n, min;
		uint32_t cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, min = 0x80, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, min = 0x800, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, min = 0x10000, cp = c & 0x07;
		else
			n = 0, min = 0, cp = 0;
		for (unsigned i = 1; n && i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80) {
				n = 0;
				break;
			}
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if (n == 0 || cp < min || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff)) {
			*p++ = '?';
			continue;
		}
		p += n + 1;
	}
}

json_t *
ctl_error(int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctl_utf8_scrub(msg);
	return json_pack("{s:b, s:s, s:i, s:s}", "ok", 0, "error", msg, "code",
	    code, "reason", nbx_strerror(code));
}

/* Drops what r's parse made or used: its trees and the texts parsed. */
static void
req_unparse(struct ctl_req *r)
{
	jarena_drop_tree(r->half.arena, r->half.val);
	jarena_drop_tree(r->arena, r->req);
	free(r->half.text);
	free(r->line);
	memset(&r->half, 0, sizeof(r->half));
	r->req = NULL;
	r->arena = NULL;
	r->line = NULL;
}

static void
req_free(struct ctl_req *r)
{
	req_unparse(r);
	free(r->whole);
	free(r);
}

/* Frees c once its handle is closed and no parse still refers to it. */
static void
client_free(struct ctl_client *c)
{
	if (!c->closed || c->nwork > 0)
		return;
	while (c->head != NULL) {
		struct ctl_req *r = c->head;

		c->head = r->next;
		req_free(r);
	}
	free(c->buf);
	free(c);
}

static void
client_closed(uv_handle_t *h)
{
	struct ctl_client *c = h->data;
	struct ctl_client **pp;

	/* a client closed by ctl_server_stop is already off the list */
	for (pp = c->srv ? &c->srv->clients : NULL; pp && *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->closed = 1;
	client_free(c);
}

static void
client_close(struct ctl_client *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_close((uv_handle_t *)&c->pipe, client_closed);
}

#define CTL_WQ_MAX (1u << 20)	/* stop reading while this much is unsent */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void
write_done(uv_write_t *req, int status)
{
	struct ctl_client *c = req->handle->data;

	(void)status;
	jarena_json_free(req->data);
	free(req);
	if (c->paused && !c->closing &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) <
	    CTL_WQ_MAX / 2) {
		c->paused = 0;
		if (!c->full)
			uv_read_start((uv_stream_t *)&c->pipe, on_alloc,
			    on_read);
	}
}

static void
client_reply(struct ctl_client *c, json_t *reply)
{
	char *s = json_dumps(reply, JSON_COMPACT);
	uv_write_t *req;
	uv_buf_t b;
	size_t n;

	json_decref(reply);
	if (s == NULL || c->closing) {
		jarena_json_free(s);
		return;
	}
	n = strlen(s);
	s[n] = '\n';
	if ((req = malloc(sizeof(*req))) == NULL) {
		jarena_json_free(s);
		return;
	}
	req->data = s;
	b = uv_buf_init(s, (unsigned)n + 1);
	if (uv_write(req, (uv_stream_t *)&c->pipe, &b, 1, write_done) != 0) {
		jarena_json_free(s);
		free(req);
		client_close(c);
		return;
	}
	/* a client that sends without reading is not buffered without end */
	if (!c->paused && uv_stream_get_write_queue_size((uv_stream_t *)
	    &c->pipe) > CTL_WQ_MAX) {
		c->paused = 1;
		uv_read_stop((uv_stream_t *)&c->pipe);
	}
}

/* Answers one parsed request (req NULL: not JSON, je says why). */
static void
handle(struct ctl_client *c, json_t *req, const json_error_t *je)
{
	json_t *reply;

	if (req == NULL) {
		client_reply(c, ctl_error(NBX_EMALFORMED,
		    "request is not JSON: %s (column %d)", je->text, je->column));
		return;
	}
	if (!json_is_object(req) ||
	    !json_is_string(json_object_get(req, "cmd"))) {
		client_reply(c, ctl_error(NBX_EINVAL,
		    "request must be an object with a \"cmd\" string"));
		return;
	}
	reply = c->srv->fn(c->srv->arg, req);
	client_reply(c, reply ? reply : ctl_error(NBX_EINVAL, "no reply"));
}

/* Handles the queued requests that are parsed, in order. */
static void
drain(struct ctl_client *c)
{
	while (!c->closing && c->head != NULL && c->head->parsed) {
		struct ctl_req *r = c->head;

		if ((c->head = r->next) == NULL)
			c->tail = NULL;
		c->nreq--;
		handle(c, r->req, &r->je);
		req_free(r);	/* a big tree goes with its arena, at once */
	}
	if (c->full && !c->closing && c->nreq < CTL_QUEUE_MAX) {
		c->full = 0;
		if (!c->paused)
			uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
	}
}

/* Parses finished on the thread pool, not yet taken by the loop. */
static atomic_uint parsed_waiting;

unsigned
ctl_parsed_waiting(void)
{
	return atomic_load(&parsed_waiting);
}

static void
parse_work(uv_work_t *w)
{
	struct ctl_req *r = w->data;

	jarena_enter(r->arena);
	r->req = json_loadb(r->line, r->n, 0, &r->je);
	jarena_leave();
}

/* parse_work on the thread pool, counted until parse_done takes it. */
static void
parse_away(uv_work_t *w)
{
	parse_work(w);
	atomic_fetch_add(&parsed_waiting, 1);
}

/* The second half of a cut request, on the thread pool. */
static void
half_away(uv_work_t *w)
{
	struct ctl_req *r = w->data;

	jarena_enter(r->half.arena);
	r->half.val = json_loadb(r->half.text, r->half.n, 0, &r->half.je);
	jarena_leave();
	atomic_fetch_add(&parsed_waiting, 1);
}

/*
 * Cuts r in two (jsplit.h) when it is a large import first in line: no
 * request before it waits, parsed, for the loop, which would apply that
 * one while this one parses and so keep the second core busy.  Its
 * halves are then parsed at once, one per thread, and a request sent on
 * its own (a live writer's) is answered in about half the parse time.
 * 0 when it is not cut.
 */
static int
cut(struct ctl_client *c, struct ctl_req *r)
{
	struct jsplit sp;
	char *first, *second;

	if (r != c->head || r->uncut || r->n < CTL_CUT_MIN ||
	    !jsplit_find(r->line, r->n, "writes", &sp))
		return 0;
	first = malloc(r->n - (sp.close - sp.cut));
	second = malloc(sp.close - sp.cut + 1);
	if (first == NULL || second == NULL ||
	    (r->half.arena = jarena_new()) == NULL) {
		free(first);
		free(second);
		return 0;
	}
	jsplit_pieces(r->line, r->n, &sp, first, second);
	r->whole = r->line;
	r->whole_n = r->n;
	r->line = first;
	r->n -= sp.close - sp.cut;
	r->half.text = second;
	r->half.n = sp.close - sp.cut + 1;
	r->half.work.data = r;
	return 1;
}

/* Undoes the cut of r: it is parsed whole, as it came. */
static void
uncut(struct ctl_req *r)
{
	req_unparse(r);
	r->arena = jarena_new();	/* NULL: parsed with malloc */
	r->line = r->whole;
	r->n = r->whole_n;
	r->whole = NULL;
	r->uncut = 1;
}

/*
 * The halves of a cut request, parsed: the first one's "writes" gets the
 * second's elements, in the first's arena (the second's arena lives as
 * long as the request).  -1 if either half is not JSON, or the first is
 * not an object with that array: the line is then parsed whole, so the
 * reply is what it always was.
 */
static int
join(struct ctl_req *r)
{
	json_t *w = json_object_get(r->req, "writes");
	int rc;

	if (r->req == NULL || r->half.val == NULL || !json_is_array(w) ||
	    !json_is_array(r->half.val))
		return -1;
	jarena_enter(r->arena);
	rc = json_array_extend(w, r->half.val);
	jarena_leave();
	return rc == 0 ? 0 : -1;
}

static void parse_done(uv_work_t *w, int status);

/*
 * One of r's parses is over (on the loop).  Returns 1 when r is parsed;
 * 0 while a half is still on the thread pool, or when its halves were
 * refused and r waits to be parsed whole.
 */
static int
parse_over(struct ctl_req *r)
{
	if (--r->pending > 0)
		return 0;
	if (r->whole != NULL && join(r) != 0) {
		log_msg(LOG_DEBUG, NULL, "control: the halves of a request of "
		    "%zu bytes are not JSON: parsed whole for the reply",
		    r->whole_n);
		uncut(r);
		r->started = 0;
		return 0;
	}
	r->parsed = 1;
	free(r->line);
	free(r->whole);
	free(r->half.text);
	r->line = r->whole = r->half.text = NULL;
	return 1;
}

/* Parses r on the loop (a small line, or the thread pool refused). */
static void
parse_here(struct ctl_client *c, struct ctl_req *r)
{
	parse_work(&r->work);
	r->pending++;
	if (parse_over(r))
		drain(c);
}

/*
 * Starts the parse of the oldest waiting request on the thread pool, one
 * at a time (or its two halves at once); parses here when the pool
 * refuses.
 */
static void
parse_next(struct ctl_client *c)
{
	uv_loop_t *loop = c->pipe.loop;
	struct ctl_req *r;

	while (c->nwork == 0 && !c->closing) {
		for (r = c->head; r != NULL && (r->parsed || r->started);
		    r = r->next)
			;
		if (r == NULL)
			return;
		r->started = 1;
		if (cut(c, r)) {
			if (uv_queue_work(loop, &r->half.work, half_away,
			    parse_done) == 0) {
				r->pending++;
				c->nwork++;
				log_msg(LOG_DEBUG, NULL, "control: a request of "
				    "%zu bytes parsed in two halves at once",
				    r->whole_n);
			} else {
				uncut(r);
			}
		}
		if (uv_queue_work(loop, &r->work, parse_away, parse_done) == 0) {
			r->pending++;
			c->nwork++;
			return;
		}
		if (r->pending > 0) {
			/* its second half is on the pool: the first here, and
			   the two joined when that one is over */
			parse_work(&r->work);
			return;
		}
		parse_here(c, r);
	}
}

/* The check phase: the clients whose parses finished are handled. */
static void
on_check(uv_check_t *h)
{
	struct ctl_server *s = h->data;
	struct ctl_client *c, *next;

	uv_check_stop(h);
	for (c = s->clients; c != NULL && !s->stopping; c = next) {
		next = c->next;
		if (c->drain_due) {
			c->drain_due = 0;
			drain(c);
		}
	}
}

/*
 * A finished parse is handled in this turn's check phase, not at once:
 * the turn's reads come first, so that the request after it is read,
 * and its parse started, before the loop spends its time applying this
 * one.  (Handled at once, the next request's bytes often waited in the
 * socket until that apply was over, and the parse with them.)
 */
static void
drain_soon(struct ctl_client *c)
{
	if (c->closing)
		return;		/* drain would not handle it either */
	c->drain_due = 1;
	uv_check_start(&c->srv->check, on_check);
}

/* A parse of r on the thread pool is over: all of r, or one half. */
static void
parse_done(uv_work_t *w, int status)
{
	struct ctl_req *r = w->data;
	struct ctl_client *c = r->c;
	int parsed;

	/* a cancelled parse leaves its tree NULL, and was never counted */
	if (status == 0)
		atomic_fetch_sub(&parsed_waiting, 1);
	c->nwork--;
	if (c->closed) {
		client_free(c);
		return;
	}
	parsed = parse_over(r);
	parse_next(c);	/* the next parse runs while this one is applied */
	if (parsed)
		drain_soon(c);
}

static void
handle_line(struct ctl_client *c, const char *line, size_t n)
{
	struct ctl_req *r;
	json_error_t je;
	json_t *req;

	while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (n == 0)
		return;
	if (n < CTL_PARSE_AWAY && c->head == NULL) {
		req = json_loadb(line, n, 0, &je);
		handle(c, req, &je);
		json_decref(req);
		return;
	}
	/* queued behind the requests before it */
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->line = malloc(n)) == NULL ||
	    (r->arena = jarena_new()) == NULL) {
		if (r != NULL)
			free(r->line);
		free(r);
		client_reply(c, ctl_error(NBX_ENOMEM, "out of memory"));
		client_close(c);
		return;
	}
	memcpy(r->line, line, n);
	r->n = n;
	r->c = c;
	r->work.data = r;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->nreq++;
	if (n < CTL_PARSE_AWAY)
		parse_here(c, r);
	else
		parse_next(c);
	if (c->nreq >= CTL_QUEUE_MAX && !c->full && !c->closing) {
		c->full = 1;
		uv_read_stop((uv_stream_t *)&c->pipe);
	}
}

static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct ctl_client *c = h->data;

	(void)hint;
	if (c->cap - c->len < 4096) {
		size_t cap = c->cap ? c->cap * 2 : 8192;
		char *nb;

		if (cap > CTL_LINE_MAX + 8192 || (nb = realloc(c->buf, cap)) == NULL) {
			*b = uv_buf_init(NULL, 0);
			return;
		}
		c->buf = nb;
		c->cap = cap;
	}
	*b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct ctl_client *c = s->data;
	size_t start = 0;
	char *nl;

	(void)b;
	if (nread < 0 || (nread == 0 && b->base == NULL)) {
		if (nread == UV_ENOBUFS)
			client_reply(c, ctl_error(NBX_ETOOBIG,
			    "request line longer than %u bytes",
			    (unsigned)CTL_LINE_MAX));
		client_close(c);
		return;
	}
	c->len += (size_t)nread;
	while (!c->closing && (nl = memchr(c->buf + start, '\n',
	    c->len - start)) != NULL) {
		handle_line(c, c->buf + start, (size_t)(nl - (c->buf + start)));
		start = (size_t)(nl - c->buf) + 1;
	}
	memmove(c->buf, c->buf + start, c->len - start);
	c->len -= start;
	if (c->len > CTL_LINE_MAX) {
		client_reply(c, ctl_error(NBX_ETOOBIG,
		    "request line longer than %u bytes", (unsigned)CTL_LINE_MAX));
		client_close(c);
	}
}

/* Only the daemon's own user, or root, may drive it. */
static int
peer_allowed(uv_pipe_t *p)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)p, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return 0;
	return cred.uid == 0 || cred.uid == geteuid();
}

static void
on_connection(uv_stream_t *server, int status)
{
	struct ctl_server *srv = server->data;
	struct ctl_client *c;

	if (status < 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->srv = srv;
	uv_pipe_init(server->loop, &c->pipe, 0);
	c->pipe.data = c;
	c->next = srv->clients;
	srv->clients = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
		client_close(c);
		return;
	}
	if (!peer_allowed(&c->pipe)) {
		log_msg(LOG_WARN, NULL, "control: refused a client of another "
		    "user");
		client_close(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

/* 1 if something is listening on path. */
static int
socket_alive(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void
server_closed(uv_handle_t *h)
{
	struct ctl_server *s = h->data;

	if (--s->handles == 0)
		free(s);
}

int
ctl_server_start(uv_loop_t *loop, const char *path, ctl_handler_fn *fn,
    void *arg, struct ctl_server **out, char *err, size_t errlen)
{
	struct ctl_server *s;
	struct stat sb;
	mode_t old;
	int rc;

	*out = NULL;
	if (strlen(path) >= sizeof(s->path)) {
		snprintf(err, errlen, "%s: control socket path too long", path);
		return NBX_EINVAL;
	}
	if (socket_alive(path)) {
		snprintf(err, errlen, "%s: another nbxd is already listening "
		    "there", path);
		return NBX_EEXIST;
	}
	/* only ever replace a stale socket, never some other file */
	if (lstat(path, &sb) == 0 && !S_ISSOCK(sb.st_mode)) {
		snprintf(err, errlen, "%s: exists and is not a socket; "
		    "control_socket must name a path of its own", path);
		return NBX_EEXIST;
	}
	(void)unlink(path);
	json_object_seed(0);	/* before any parse runs on another thread */
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NBX_ENOMEM;
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->fn = fn;
	s->arg = arg;
	uv_pipe_init(loop, &s->pipe, 0);
	s->pipe.data = s;
	uv_check_init(loop, &s->check);
	s->check.data = s;
	s->handles = 2;
	old = umask(0177);	/* the socket is born 0600 */
	rc = uv_pipe_bind(&s->pipe, path);
	umask(old);
	if (rc == 0)
		rc = chmod(path, 0600) == 0 ? 0 : uv_translate_sys_error(errno);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->pipe, 16, on_connection);
	if (rc != 0) {
		snprintf(err, errlen, "%s: cannot listen: %s", path,
		    uv_strerror(rc));
		uv_close((uv_handle_t *)&s->pipe, server_closed);
		uv_close((uv_handle_t *)&s->check, server_closed);
		return NBX_EIO;
	}
	*out = s;
	return 0;
}

void
ctl_server_stop(struct ctl_server *s)
{
	if (s == NULL || s->stopping)
		return;
	s->stopping = 1;
	while (s->clients) {
		struct ctl_client *c = s->clients;

		s->clients = c->next;
		c->srv = NULL;
		client_close(c);
	}
	(void)unlink(s->path);
	uv_close((uv_handle_t *)&s->pipe, server_closed);
	uv_close((uv_handle_t *)&s->check, server_closed);
}
