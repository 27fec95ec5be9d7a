/* ctlclient.c - JSON-lines client of nbxd's control socket. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlclient.h"
#include "nbx_err.h"

#define LINE_MAX_BYTES (64u << 20)

struct ctl_client {
	int fd;
	char *buf;		/* received bytes not yet returned */
	size_t len, cap;
};

int
ctl_client_open(const char *path, struct ctl_client **out, char *err,
    size_t errlen)
{
	struct sockaddr_un sa;
	struct ctl_client *c;
	int fd;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: control socket path too long", path);
		return NBX_EINVAL;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return NBX_EIO;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		close(fd);
		if (e == ENOENT || e == ECONNREFUSED)
			snprintf(err, errlen, "cannot reach nbxd at %s: %s "
			    "(is the daemon running?)", path, strerror(e));
		else if (e == EACCES)
			snprintf(err, errlen, "cannot reach nbxd at %s: %s "
			    "(the control socket is only for the user that "
			    "runs nbxd)", path, strerror(e));
		else
			snprintf(err, errlen, "cannot reach nbxd at %s: %s",
			    path, strerror(e));
		return NBX_EIO;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NBX_ENOMEM;
	}
	c->fd = fd;
	*out = c;
	return 0;
}

void
ctl_client_close(struct ctl_client *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c->buf);
	free(c);
}

void
ctl_client_send_room(struct ctl_client *c, size_t bytes)
{
	int sz = bytes > INT_MAX / 2 ? INT_MAX / 2 : (int)bytes;

	(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
}

int
ctl_client_send_line(struct ctl_client *c, const char *line, size_t n,
    char *err, size_t errlen)
{
	size_t off = 0;

	while (off < n) {
		ssize_t w = send(c->fd, line + off, n - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			snprintf(err, errlen, "write to nbxd: %s",
			    strerror(errno));
			return NBX_EIO;
		}
		off += (size_t)w;
	}
	return 0;
}

int
ctl_client_send(struct ctl_client *c, json_t *req, char *err, size_t errlen)
{
	char *line = json_dumps(req, JSON_COMPACT);
	size_t n;
	int rc;

	if (line == NULL)
		return NBX_ENOMEM;
	n = strlen(line);
	line[n] = '\n';		/* json_dumps' NUL becomes the line end */
	rc = ctl_client_send_line(c, line, n + 1, err, errlen);
	free(line);
	return rc;
}

int
ctl_client_recv(struct ctl_client *c, json_t **reply, int timeout_ms,
    char *err, size_t errlen)
{
	json_error_t je;
	char *nl;

	*reply = NULL;
	if (timeout_ms <= 0)
		timeout_ms = 30000;
	while ((nl = c->len ? memchr(c->buf, '\n', c->len) : NULL) == NULL) {
		struct pollfd p = { c->fd, POLLIN, 0 };
		ssize_t r;
		int pr;

		if (c->len == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 4096;
			char *b;

			if (cap > LINE_MAX_BYTES) {
				snprintf(err, errlen, "reply from nbxd too long");
				return NBX_ETOOBIG;
			}
			if ((b = realloc(c->buf, cap)) == NULL)
				return NBX_ENOMEM;
			c->buf = b;
			c->cap = cap;
		}
		pr = poll(&p, 1, timeout_ms);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0) {
			snprintf(err, errlen, "nbxd did not answer within %d ms",
			    timeout_ms);
			return NBX_EIO;
		}
		r = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "nbxd closed the control "
			    "connection%s%s", r < 0 ? ": " : "",
			    r < 0 ? strerror(errno) : "");
			return NBX_EIO;
		}
		c->len += (size_t)r;
	}
	*reply = json_loadb(c->buf, (size_t)(nl - c->buf), 0, &je);
	c->len -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->len);
	if (*reply == NULL) {
		snprintf(err, errlen, "bad reply from nbxd: %s", je.text);
		return NBX_EMALFORMED;
	}
	return 0;
}

int
ctl_client_call(struct ctl_client *c, json_t *req, json_t **reply,
    int timeout_ms, char *err, size_t errlen)
{
	int rc = ctl_client_send(c, req, err, errlen);

	return rc ? rc : ctl_client_recv(c, reply, timeout_ms, err, errlen);
}

const char *
ctl_str_or(json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s && *s ? s : dflt;
}
