/*
 * control.c - the control socket server (see control.h).  Each client
 * connection buffers bytes up to CTL_LINE_MAX and hands every complete line
 * to the handler.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "nbx_err.h"

struct ctl_client {
	uv_pipe_t pipe;
	struct ctl_server *srv;
	struct ctl_client *next;
	char *buf;
	size_t len, cap;
	int closing;
	int paused;		/* reading stopped until replies drain */
};

struct ctl_server {
	uv_pipe_t pipe;
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
	free(c->buf);
	free(c);
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
	free(req->data);
	free(req);
	if (c->paused && !c->closing &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) <
	    CTL_WQ_MAX / 2) {
		c->paused = 0;
		uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
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
		free(s);
		return;
	}
	n = strlen(s);
	s[n] = '\n';
	if ((req = malloc(sizeof(*req))) == NULL) {
		free(s);
		return;
	}
	req->data = s;
	b = uv_buf_init(s, (unsigned)n + 1);
	if (uv_write(req, (uv_stream_t *)&c->pipe, &b, 1, write_done) != 0) {
		free(s);
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

static void
handle_line(struct ctl_client *c, const char *line, size_t n)
{
	json_error_t je;
	json_t *req, *reply;

	while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (n == 0)
		return;
	req = json_loadb(line, n, 0, &je);
	if (req == NULL) {
		client_reply(c, ctl_error(NBX_EMALFORMED,
		    "request is not JSON: %s (column %d)", je.text, je.column));
		return;
	}
	if (!json_is_object(req) ||
	    !json_is_string(json_object_get(req, "cmd"))) {
		client_reply(c, ctl_error(NBX_EINVAL,
		    "request must be an object with a \"cmd\" string"));
		json_decref(req);
		return;
	}
	reply = c->srv->fn(c->srv->arg, req);
	json_decref(req);
	client_reply(c, reply ? reply : ctl_error(NBX_EINVAL, "no reply"));
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
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NBX_ENOMEM;
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->fn = fn;
	s->arg = arg;
	uv_pipe_init(loop, &s->pipe, 0);
	s->pipe.data = s;
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
		uv_close((uv_handle_t *)&s->pipe, (uv_close_cb)free);
		return NBX_EIO;
	}
	*out = s;
	return 0;
}

static void
server_closed(uv_handle_t *h)
{
	free(h->data);
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
}
