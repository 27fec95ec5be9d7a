/*
 * node_int.h - what the files of nbxd's shell share: the node and its
 * peers, and each file's functions for the others.  They call one way:
 * node.c (start-up) -> node_ctl.c (the control commands) -> node_loop.c
 * (timer, signals, reload, stop) -> node_peer.c (the peer table) ->
 * conn.c (the connections), which calls none of them; struct conn is
 * conn.c's alone.
 */
#ifndef NBX_NODE_INT_H
#define NBX_NODE_INT_H

#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "change.h"
#include "config.h"
#include "log.h"
#include "node.h"
#include "policy.h"
#include "session.h"
#include "store.h"
#include "tls.h"

#define NODE_TICK_MS		100
#define NODE_PUMP_BATCHES	1	/* batches per session per loop turn */
#define NODE_RETENTION_FIRST_MS	2000	/* first retention pass after start */
#define NODE_READER_CHECK_TICKS	20	/* mdb_reader_check every 2 s */
#define NODE_PEER_RECHECK_TICKS	100	/* live peers re-verified every 10 s */
#define NODE_DEFER_TICKS	30	/* retry clock-deferred changes, 3 s */
#define NODE_RETENTION_EVERY_MS	(3600 * 1000)

struct conn;		/* conn.c's; a peer's pointers to it say up, dialling */

/* What a session learnt of a peer's HELLO. */
struct peer_proto {
	uint32_t version;		/* protocol version spoken, 0 unknown */
	uint32_t vmin, vmax;		/* versions it speaks, 0 unknown */
	int schema_match;		/* 1, 0, or -1 unknown */
	int no_common_version;		/* the last session found none */
};

struct peer {
	struct peer *next;
	char id[NBX_ID_MAX + 1];
	char host[256];
	uint16_t port;
	int has_pin;
	uint8_t pin[32];
	int from_config;	/* static: removed only by editing the file */
	int no_relay;		/* accept only changes it made itself */
	int mark;		/* scratch, used by reload */
	struct conn *active;	/* the established session, if any */
	struct conn *dialing;	/* our outgoing attempt, if any */
	uint64_t next_dial_ms, backoff_ms;
	uint64_t since_ms;	/* up since / down since */
	/* totals of connections that ended, so counters survive reconnects */
	uint64_t bytes_in, bytes_out, changes_in, changes_out, rejected_in;
	uint64_t recon_runs, recon_last_ms;
	struct peer_proto proto;	/* what the last session learnt */
	char last_error[256];
};

struct node {
	uv_loop_t *loop;
	char config_path[4096];
	struct nbx_config cfg;
	struct policy *pol;
	struct store *st;
	struct tls_ctx *tls;
	uv_tcp_t listener;
	uv_timer_t timer;
	uv_timer_t retention;	/* erases records past their retain_days */
	uv_idle_t more;		/* pumps again next turn: conn__pump_soon */
	uv_prepare_t turn;	/* ends a loop turn: conn__turn */
	size_t rx_turn;		/* conn.c: bytes received from peers this turn */
	unsigned pump_turn;	/* conn.c: batches made for peers this turn */
	unsigned pump_rr;	/* conn.c: pump_all's first session, in turn */
	uint64_t redial_ms;	/* conn.c: peers_redial_soon last ran */
	uv_signal_t sigterm, sigint, sighup;
	struct ctl_server *ctl;
	struct peer *peers;
	struct conn *conns;	/* conn.c's list */
	struct sync_opts sopts;
	struct verify_cache *verify;	/* node_verify.c, NULL until used */
	int stopping;
	int pumping;		/* conn.c: pump_all is running */
	int pump_waited;	/* conn.c: on_more let a parsed request go first */
	uint64_t ticks;
	uint64_t started_ms;
};

/* ------------------------------------------------------------------ */
/* The peer table: node_peer.c                                         */
/* ------------------------------------------------------------------ */

/*
 * The peer whose id is the len bytes at id, or NULL.  Inline so that
 * conn.c, which looks up the peer a handshake names, depends on no other
 * file of the shell.
 */
static inline struct peer *
node__peer_find(struct node *n, const char *id, size_t len)
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (strlen(p->id) == len && memcmp(p->id, id, len) == 0)
			return p;
	return NULL;
}

/*
 * Adds a peer, down since now and due to be dialled at once; pin (32
 * bytes) is copied, NULL for none.  Returns the peer (owned by the node),
 * or NULL when out of memory.  Does not check that the id is new.
 */
struct peer *node__peer_add(struct node *n, const char *id, const char *host,
    uint16_t port, const uint8_t *pin, int from_config);

/*
 * Closes p's connections ("peer removed") and frees p; p is invalid after.
 * The store's record of a runtime peer is the caller's.
 */
void node__peer_remove(struct node *n, struct peer *p);

/*
 * Makes the static peers match cfg's: adds the new, starts over those
 * whose address, pin or no_relay changed, removes those gone.  0 or
 * NBX_ENOMEM (the table may then be partly updated).
 */
int node__peers_configure(struct node *n, const struct nbx_config *cfg);

/*
 * Adds the runtime peers stored by earlier `nbxctl peer add`s; a stored
 * peer the config file also sets, or with a bad address, is logged and
 * skipped.  0, NBX_ENOMEM, or the store's error.
 */
int node__peers_load(struct node *n);

/* ------------------------------------------------------------------ */
/* The running node: node_loop.c, node_retain.c                        */
/* ------------------------------------------------------------------ */

/*
 * Starts the node's handles on its loop: the tick timer, the retention
 * timer, the turn and idle handles conn.c uses, and the signal handlers
 * (SIGTERM and SIGINT stop, SIGHUP reloads).  node__stop closes them.
 */
void node__loop_start(struct node *n);

/*
 * 0 if the certificate of ctx names the node cfg says this is, and is
 * valid now; else NBX_ECONFIG or tls_ctx_check_validity's error, with a
 * message naming the file in err.
 */
int node__identity_check(const struct nbx_config *cfg,
    const struct tls_ctx *ctx, char *err, size_t errlen);

/*
 * Reads the config file again: new TLS files and CRL for new
 * connections, live sessions checked again against them (and dropped if
 * they fail), static peers updated, sync settings kept.  Node id and
 * data_dir cannot change.  0, or an NBX_E* with a message in err and the
 * old settings kept.
 */
int node__reload(struct node *n, char *err, size_t errlen);

/*
 * Clean shutdown: every session gets close_notify after its queued bytes,
 * the listener, control socket and the node's handles close, and the loop
 * ends when the last handle is closed.  No batch is half-applied: batches
 * commit whole inside one callback.  A second call does nothing.
 */
void node__stop(struct node *n);

/*
 * Erases, with the same propagation and receipts as `nbxctl erase`, the
 * records this node created in collections with retain_days that have
 * not changed for that long; failures are logged.
 */
void node__retention_pass(struct node *n);

/* ------------------------------------------------------------------ */
/* The connections: conn.c                                             */
/* ------------------------------------------------------------------ */

/*
 * Dials p unless it is up or being dialled or the node stops.  0, or
 * NBX_ENOMEM / NBX_EIO when the dial could not start (then already
 * closed, logged, and p's next dial scheduled).
 */
int conn__dial(struct node *n, struct peer *p);

/*
 * Accepts one connection from the listener and starts its TLS handshake
 * as the server; the peer is known once its certificate is checked.  0,
 * or an NBX_E* when it was refused (already closed and logged).
 */
int conn__accept(struct node *n);

/*
 * Ends a loop turn's accounting: the reads and pumping the last turn
 * stopped for its share resume (the node's prepare handle calls it).
 */
void conn__turn(struct node *n);

/*
 * Pumps every established session on the loop's next turn, after this
 * turn's I/O: called after each local write, each batch applied from a
 * peer, and by a session with more to send.  Nothing once stopping.
 */
void conn__pump_soon(struct node *n);

/*
 * A timer tick for every connection: handshake and close timeouts, the
 * dead-link check, pings, and what each session has to send.  A
 * connection may close in it.
 */
void conn__tick_all(struct node *n, uint64_t now);

/*
 * Checks every established peer again against the node's current TLS
 * context (expiry, CRL) and closes, with a log line, those that fail.
 */
void conn__recheck_all(struct node *n);

/*
 * Starts the graceful close of every connection (close_notify after what
 * the sessions queued); ones not yet established close at once.
 */
void conn__shutdown_all(struct node *n);

/*
 * Closes p's connections with why as the reason, and unties them from p,
 * so that p may be freed at once.
 */
void conn__close_peer(struct node *n, struct peer *p, const char *why);

/*
 * The counters of p's live session, or NULL when p has none; valid until
 * the loop runs again.  Those of its ended connections are in p.
 */
const struct sync_stats *conn__peer_stats(const struct peer *p);
/* sync_session_reconcile on p's session; NBX_EAGAIN if p is not up. */
int conn__peer_reconcile(struct peer *p);
/*
 * What is known of p's protocol: its live session's HELLO, or else what
 * the last session learnt (an incompatible peer stays down).
 */
struct peer_proto conn__peer_proto(const struct peer *p);

/*
 * 1 if the socket is joined to itself (a dial to a port of this host that
 * nothing listens on, by TCP's simultaneous open), else 0.
 */
int conn__self_connected(const uv_tcp_t *tcp);

/* ------------------------------------------------------------------ */
/* The control socket: node_ctl.c and the command files                */
/* ------------------------------------------------------------------ */

/*
 * The control server's handler (ctl_handler_fn): arg is the node, req a
 * request whose "cmd" is a string (control.c checks).  Returns the reply,
 * never NULL; an unknown command or a stopping node gets an error.
 */
json_t *node__control(void *arg, json_t *req);

/*
 * The control commands kept in files of their own (the table in
 * node_ctl.c names them): each takes the request and returns its reply,
 * never NULL: {"ok": true, ...} or ctl_error's.
 */
json_t *node__cmd_import(struct node *n, json_t *req);		/* node_import.c */
json_t *node__cmd_status(struct node *n, json_t *req);		/* node_status.c */
json_t *node__cmd_peer_list(struct node *n, json_t *req);
json_t *node__cmd_quarantine(struct node *n, json_t *req);	/* node_audit.c */
json_t *node__cmd_audit(struct node *n, json_t *req);
json_t *node__cmd_erasures(struct node *n, json_t *req);
json_t *node__cmd_metrics(struct node *n, json_t *req);	/* node_metrics.c */
json_t *node__cmd_compact(struct node *n, json_t *req);	/* node_compact.c */
json_t *node__cmd_verify(struct node *n, json_t *req);		/* node_verify.c */

/* Frees the digests node_verify.c caches; n->verify is NULL after. */
void node__verify_free(struct node *n);

/* A time (Unix ms) as ISO 8601 UTC in a reply; 0 (never) is null. */
static inline json_t *
node__json_time(uint64_t ms)
{
	char b[40];

	if (ms == 0)
		return json_null();
	log_time_iso(ms, b, sizeof(b));
	return json_string(b);
}

#endif
