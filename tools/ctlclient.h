/*
 * ctlclient.h - the client side of nbxd's control socket: one JSON object
 * per line each way.  Used by nbxctl.
 */
#ifndef NBX_CTLCLIENT_H
#define NBX_CTLCLIENT_H

#include <jansson.h>
#include <stddef.h>

struct ctl_client;

/*
 * Connects to the control socket at `path`.  On failure returns NBX_EIO
 * and writes a message for an operator into err (daemon not running,
 * permission denied, ...).
 */
int ctl_client_open(const char *path, struct ctl_client **out, char *err,
    size_t errlen);
void ctl_client_close(struct ctl_client *c);

/*
 * Sends one request and waits for its reply (timeout_ms, 0 = 30 s).
 * Returns 0 with *reply set (caller json_decref's it) or NBX_EIO /
 * NBX_EMALFORMED with a message in err.
 */
int ctl_client_call(struct ctl_client *c, json_t *req, json_t **reply,
    int timeout_ms, char *err, size_t errlen);

/*
 * Lets up to `bytes` of sent requests wait in the socket for nbxd to read
 * (SO_SNDBUF; the kernel caps it at net.core.wmem_max).  A client that
 * streams requests larger than the default room (about 200 KiB) then
 * hands each one over whole, and nbxd starts parsing the next while it
 * applies one.  Best effort: a refusal leaves the default.
 */
void ctl_client_send_room(struct ctl_client *c, size_t bytes);

/* Sends one request without waiting (for streaming writes). */
int ctl_client_send(struct ctl_client *c, json_t *req, char *err,
    size_t errlen);
/* Sends n bytes that already form one request line ending in '\n'. */
int ctl_client_send_line(struct ctl_client *c, const char *line, size_t n,
    char *err, size_t errlen);
/* Reads one reply line. */
int ctl_client_recv(struct ctl_client *c, json_t **reply, int timeout_ms,
    char *err, size_t errlen);

/* The string o[k] of a reply, or dflt when it is missing or empty. */
const char *ctl_str_or(json_t *o, const char *k, const char *dflt);

#endif
