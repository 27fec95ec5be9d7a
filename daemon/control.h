/*
 * control.h - nbxd's control socket: a Unix stream socket (mode 0600) that
 * takes one JSON object per line and answers each with one JSON object per
 * line.  Only the daemon's own user (or root) may connect: the peer's
 * credentials are checked with SO_PEERCRED on accept.  A malformed line
 * gets an error reply and the connection stays open; the daemon keeps
 * serving.
 */
#ifndef NBX_CONTROL_H
#define NBX_CONTROL_H

#include <jansson.h>
#include <uv.h>

#define CTL_LINE_MAX (16u << 20)

struct ctl_server;

/*
 * Handles one request; returns the reply (the server sends and frees it).
 * Must not return NULL.
 */
typedef json_t *ctl_handler_fn(void *arg, json_t *req);

/*
 * Binds `path` and starts accepting on `loop`.  A stale socket file left
 * by a dead daemon is replaced; a live one (something answers) makes this
 * fail with NBX_EEXIST.  Errors go to err.
 */
int ctl_server_start(uv_loop_t *loop, const char *path, ctl_handler_fn *fn,
    void *arg, struct ctl_server **out, char *err, size_t errlen);

/* Closes the listener and every client, and removes the socket file. */
void ctl_server_stop(struct ctl_server *s);

/*
 * How many requests of this process have been parsed on the thread pool
 * and wait for the loop to take them (any thread may ask): the loop can
 * serve them before other work of the same turn.
 */
unsigned ctl_parsed_waiting(void);

/* Replaces bytes that are not valid UTF-8 with '?', in place. */
void ctl_utf8_scrub(char *s);

/* A reply {"ok": false, "error": msg, "code": code}; msg is scrubbed to
 * valid UTF-8 so the reply always exists. */
json_t *ctl_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
