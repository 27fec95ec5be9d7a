/*
 * node.h - nbxd's libuv shell: the listener and outgoing dials, TLS over
 * memory BIOs, one sync session per peer, the control socket, timers and
 * signals.  It only moves bytes: socket -> TLS -> session -> store -> back
 * out.  All policy and merge decisions live in the session, the store and
 * proto/.
 */
#ifndef NBX_NODE_H
#define NBX_NODE_H

#include <uv.h>

struct node;

/*
 * Loads the config file (and from it the schema, the TLS files and the
 * store), binds the listener and the control socket.  On failure writes a
 * message naming the file or setting at fault into err and returns
 * NBX_ECONFIG / NBX_ESCHEMA (fix the files) or NBX_EIO / NBX_ETLS /
 * NBX_ESTORE (runtime).
 */
int node_new(uv_loop_t *loop, const char *config_path, struct node **out,
    char *err, size_t errlen);

/* Runs until SIGTERM/SIGINT; then closes every session cleanly. */
int node_run(struct node *n);

void node_free(struct node *n);

#endif
