/*
 * node_int.h - what the files of nbxd's shell share: the node, its peers
 * and its connections.  node.c owns start-up, peers, timers and signals;
 * conn.c moves bytes for one connection; node_ctl.c answers the control
 * socket.
 */
#ifndef NBX_NODE_INT_H
#define NBX_NODE_INT_H

#include <jansson.h>
#include <stdint.h>
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
#define NODE_HANDSHAKE_MS	10000	/* give up on a silent handshake */
#define NODE_RETENTION_FIRST_MS	2000	/* first retention pass after start */
#define NODE_READER_CHECK_TICKS	20	/* mdb_reader_check every 2 s */
#define NODE_PEER_RECHECK_TICKS	100	/* live peers re-verified every 10 s */
#define NODE_DEFER_TICKS	30	/* retry clock-deferred changes, 3 s */
#define NODE_RETENTION_EVERY_MS	(3600 * 1000)
#define CONN_WQ_MAX		(8u << 20)	/* bytes queued in libuv */
#define CONN_READ_CHUNK		(64u << 10)
#define NODE_RX_TURN		(512u << 10)	/* bytes received per loop turn */
#define NODE_PUMP_TURN		1	/* batches made per loop turn */
#define CONN_STABLE_MS		10000	/* a session this old resets backoff */
#define CONN_REDIAL_MS		250	/* a link up: the others dial this soon */
#define CONN_REDIAL_EVERY_MS	1000	/* ... at most this often */
#define CONN_CLOSE_MS		2000	/* graceful close gives up after this */
#define CONN_REJECT_LOG_MAX	50	/* quarantine log lines per connection */

struct conn;

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
	char last_error[256];
};

enum conn_state {
	CONN_CONNECTING = 1,	/* TCP connect in progress */
	CONN_HANDSHAKE,		/* TLS handshake in progress */
	CONN_ESTABLISHED,	/* identity checked, session running */
	CONN_CLOSING,
};

struct conn {
	struct conn *next;
	struct node *node;
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_getaddrinfo_t *resolving;	/* host name lookup in progress */
	uv_shutdown_t shutdown_req;
	struct tls_conn *tls;
	struct sync_session *sess;
	struct peer *peer;	/* known from the start when we dialled */
	int outbound;
	enum conn_state state;
	uint64_t created_ms;
	char addr[80];		/* remote address, for logs */
	char *rbuf;		/* read buffer, CONN_READ_CHUNK */
	uint8_t *pbuf;		/* plaintext scratch, CONN_READ_CHUNK */
	uint64_t closing_ms;	/* when the graceful close began */
	int read_paused;	/* reading stopped: our output is full */
	int read_yield;		/* reading stopped until the next turn */
	unsigned rejects_logged;
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
	uv_idle_t more;		/* pumps again next turn: node__pump_soon */
	uv_prepare_t turn;	/* ends a loop turn: conn__turn */
	size_t rx_turn;		/* bytes received from peers this turn */
	unsigned pump_turn;	/* batches made for peers this turn */
	unsigned pump_rr;	/* pump_all's first session, in turn */
	uint64_t redial_ms;	/* conn.c: peers_redial_soon last ran */
	uv_signal_t sigterm, sigint, sighup;
	struct ctl_server *ctl;
	struct peer *peers;
	struct conn *conns;
	struct sync_opts sopts;
	struct verify_cache *verify;	/* node_ctl.c, NULL until used */
	int stopping;
	int pumping;
	int pump_waited;		/* on_more let a parsed request go first */
	uint64_t ticks;
	uint64_t started_ms;
};

/* node.c */
struct peer *node__peer_find(struct node *n, const char *id, size_t len);
struct peer *node__peer_add(struct node *n, const char *id, const char *host,
    uint16_t port, const uint8_t *pin, int from_config);
void node__peer_remove(struct node *n, struct peer *p);
void node__pump_soon(struct node *n);
int node__reload(struct node *n, char *err, size_t errlen);
void node__stop(struct node *n);

/* conn.c */
int conn__dial(struct node *n, struct peer *p);
int conn__accept(struct node *n);
void conn__close(struct conn *c, const char *why);
void conn__flush(struct conn *c);
void conn__tick(struct conn *c, uint64_t now);
void conn__shutdown(struct conn *c);
void conn__turn(struct node *n);
int conn__self_connected(const uv_tcp_t *tcp);

/* node_ctl.c */
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

/* node_verify.c */
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
