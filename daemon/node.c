/*
 * node.c - nbxd's shell: start-up from the config file, the peer table
 * (static peers from the file, runtime peers from the store), the timer
 * that dials and ticks, signals, reload and clean shutdown.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_file.h"
#include "control.h"
#include "hlc.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

/* ------------------------------------------------------------------ */
/* Peers                                                               */
/* ------------------------------------------------------------------ */

struct peer *
node__peer_find(struct node *n, const char *id, size_t len)
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (strlen(p->id) == len && memcmp(p->id, id, len) == 0)
			return p;
	return NULL;
}

struct peer *
node__peer_add(struct node *n, const char *id, const char *host,
    uint16_t port, const uint8_t *pin, int from_config)
{
	struct peer *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	snprintf(p->id, sizeof(p->id), "%s", id);
	snprintf(p->host, sizeof(p->host), "%s", host);
	p->port = port;
	if (pin) {
		memcpy(p->pin, pin, 32);
		p->has_pin = 1;
	}
	p->from_config = from_config;
	p->since_ms = log_now_ms();
	p->next = n->peers;
	n->peers = p;
	return p;
}

/* Drops a peer: closes its connections, then forgets it. */
void
node__peer_remove(struct node *n, struct peer *p)
{
	struct peer **pp;

	for (struct conn *c = n->conns; c; c = c->next)
		if (c->peer == p) {
			conn__close(c, "peer removed");
			c->peer = NULL;
		}
	for (pp = &n->peers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	free(p);
}

static int
load_store_peers(struct node *n)
{
	struct store_rtxn *t;
	struct store_peer sp;
	struct nbx_str after = { "", 0 };
	char id[NBX_ID_MAX + 1], addr[320], host[256];
	uint16_t port;
	int rc;

	if ((rc = store_rtxn_begin(n->st, &t)) != 0)
		return rc;
	while (store_peer_next(t, after, &sp) == 0) {
		snprintf(id, sizeof(id), "%.*s", (int)sp.id.n, sp.id.p);
		snprintf(addr, sizeof(addr), "%.*s", (int)sp.address.n,
		    sp.address.p);
		after = sp.id;
		if (node__peer_find(n, id, strlen(id))) {
			log_msg(LOG_WARN, id, "stored peer ignored: the config "
			    "file sets it");
			continue;
		}
		if (config_parse_hostport(addr, host, sizeof(host), &port) != 0) {
			log_msg(LOG_WARN, id, "stored peer has a bad address "
			    "'%s'; ignored", addr);
			continue;
		}
		if (node__peer_add(n, id, host, port, sp.has_pin ? sp.pin : NULL,
		    0) == NULL) {
			rc = NBX_ENOMEM;
			break;
		}
	}
	store_rtxn_end(t);
	return rc;
}

/* Makes the static peers match cfg: add new, update changed, drop gone. */
static int
sync_config_peers(struct node *n, const struct nbx_config *cfg)
{
	struct peer *p, *next;

	for (p = n->peers; p; p = p->next)
		p->mark = 0;
	for (size_t i = 0; i < cfg->npeers; i++) {
		const struct nbx_peer_conf *pc = &cfg->peers[i];

		p = node__peer_find(n, pc->id, strlen(pc->id));
		if (p && (strcmp(p->host, pc->host) != 0 || p->port != pc->port ||
		    p->has_pin != pc->has_pin || p->no_relay != pc->no_relay ||
		    (pc->has_pin && memcmp(p->pin, pc->pin, 32) != 0))) {
			node__peer_remove(n, p);	/* changed: start over */
			p = NULL;
		}
		if (p == NULL && (p = node__peer_add(n, pc->id, pc->host,
		    pc->port, pc->has_pin ? pc->pin : NULL, 1)) == NULL)
			return NBX_ENOMEM;
		p->from_config = 1;
		p->no_relay = pc->no_relay;
		p->mark = 1;
	}
	for (p = n->peers; p; p = next) {
		next = p->next;
		if (p->from_config && !p->mark) {
			log_msg(LOG_INFO, p->id, "peer no longer in the config");
			node__peer_remove(n, p);
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Retention                                                           */
/* ------------------------------------------------------------------ */

/* The time of a record's last change: its greatest version. */
static uint64_t
last_change_ms(const struct crdt_record *r)
{
	uint64_t h = r->state_ver.hlc > r->aud.hlc ? r->state_ver.hlc :
	    r->aud.hlc;

	for (size_t i = 0; i < r->nregs; i++)
		if (r->regs[i].ver.hlc > h)
			h = r->regs[i].ver.hlc;
	return HLC_MS(h);
}

/*
 * Erases, with the same propagation and receipts as `nbxctl erase`, the
 * records this node created in collections with retain_days that have not
 * changed for that long.  Ids are collected under a read transaction and
 * erased after it, in batches.
 */
static void
retention_pass(struct node *n)
{
	uint64_t now = log_now_ms();
	struct nbx_str self = nbx_str_c(n->cfg.id);

	for (size_t k = 0; k < policy_ncoll(n->pol); k++) {
		const struct pol_coll *pc = policy_coll_at(n->pol, k);
		uint64_t limit = (uint64_t)pc->retain_days * 86400000ull;
		struct nbx_str coll = nbx_str_c(pc->name), after = { "", 0 }, id;
		char **ids = NULL;
		size_t nids = 0;
		struct store_rtxn *t;
		struct crdt_record r;

		if (pc->retain_days == 0 || store_rtxn_begin(n->st, &t) != 0)
			continue;
		while (store_record_next(t, coll, after, &id, &r) == 0) {
			after = id;
			if (!r.erased && nbx_str_eq(nbx_id_creator(id), self) &&
			    last_change_ms(&r) + limit < now) {
				char **g = realloc(ids, (nids + 1) * sizeof(*g));

				if (g != NULL && (g[nids] = strndup(id.p, id.n)))
					ids = g, nids++;
				else if (g != NULL)
					ids = g;
			}
			crdt_record_fini(&r);
		}
		crdt_record_fini(&r);
		store_rtxn_end(t);
		for (size_t i = 0; i < nids; i += 1000) {
			size_t m = nids - i < 1000 ? nids - i : 1000;
			struct change *chs = calloc(m, sizeof(*chs));
			struct store_outcome *out = calloc(m, sizeof(*out));

			for (size_t j = 0; chs && out && j < m; j++) {
				chs[j].kind = CHANGE_ERASE;
				chs[j].coll = coll;
				chs[j].id = nbx_str_c(ids[i + j]);
			}
			if (chs && out && store_apply(n->st, n->pol, chs, m,
			    (struct nbx_str){ 0 }, NULL, now, 0, out) != 0)
				log_msg(LOG_ERROR, NULL, "retention: %s",
				    store_last_error(n->st));
			free(chs);
			free(out);
		}
		if (nids)
			log_msg(LOG_INFO, NULL, "retention: erased %zu %s "
			    "record(s) unchanged for %u days", nids, pc->name,
			    pc->retain_days);
		for (size_t i = 0; i < nids; i++)
			free(ids[i]);
		free(ids);
		if (nids)
			node__pump_soon(n);
	}
}

static void
on_retention(uv_timer_t *t)
{
	retention_pass(t->data);
}

/* ------------------------------------------------------------------ */
/* Pumping, timer, signals                                             */
/* ------------------------------------------------------------------ */

/*
 * Lets every established session stream what the log gained.  Each
 * session makes at most one batch per call (sopts.pump_batches), a loop
 * turn at most NODE_PUMP_TURN in all (conn__flush), and one with more to
 * send asks for another turn, so that a node streaming to many peers
 * still reads, answers its control socket and pings in between.  Each
 * turn another session goes first, so the share goes round.
 */
static void
pump_all(struct node *n)
{
	unsigned i = 0, first = n->pump_rr;

	if (n->pumping)
		return;		/* a pump in progress will see the new entries */
	n->pumping = 1;
	/* from session pump_rr to the last, then from the first */
	for (unsigned k = 0; k < 2; k++) {
		i = 0;
		for (struct conn *c = n->conns; c; c = c->next, i++)
			if ((k == 0) == (i >= first) &&
			    c->state == CONN_ESTABLISHED)
				conn__flush(c);
	}
	n->pump_rr = first + 1 < i ? first + 1 : 0;	/* i: the conns */
	n->pumping = 0;
}

static void
on_more(uv_idle_t *h)
{
	struct node *n = h->data;

	/*
	 * A local write parsed on the thread pool goes first: its writer
	 * waits for the reply, while the peers' batches can wait a turn
	 * (one, so that a stream of writes never starves them).  The idle
	 * handle stays active, so the loop polls at once and comes back.
	 */
	if (!n->pump_waited && ctl_parsed_waiting() > 0) {
		n->pump_waited = 1;
		return;
	}
	n->pump_waited = 0;
	uv_idle_stop(h);
	pump_all(n);
}

/* Just before the loop polls: a new turn's share of reads begins. */
static void
on_turn(uv_prepare_t *h)
{
	conn__turn(h->data);
}

/*
 * Pumps every session on the loop's next turn, once this turn's I/O was
 * handled: called after each local write, each batch applied from a peer,
 * and by a session with more to send.
 */
void
node__pump_soon(struct node *n)
{
	if (!n->stopping && !uv_is_active((uv_handle_t *)&n->more))
		uv_idle_start(&n->more, on_more);
}

/*
 * Live sessions were verified at their handshake; certificates expire and
 * CRLs go stale while they run.  Each peer is checked again now and then
 * against the current context, failing closed.
 */
static void
recheck_peers(struct node *n)
{
	struct conn *c, *next;
	char why[512];

	for (c = n->conns; c; c = next) {
		next = c->next;
		if (c->state != CONN_ESTABLISHED ||
		    tls_ctx_verify_peer(n->tls, c->tls, why, sizeof(why)) == 0)
			continue;
		log_msg(LOG_WARN, c->peer ? c->peer->id : NULL, "peer no longer "
		    "passes verification: %s", why);
		conn__close(c, why);
	}
}

static void
on_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = log_now_ms();
	struct conn *c, *next;

	for (c = n->conns; c; c = next) {
		next = c->next;
		conn__tick(c, now);
	}
	if (n->stopping)
		return;
	if (++n->ticks % NODE_PEER_RECHECK_TICKS == 0)
		recheck_peers(n);
	if (n->ticks % NODE_DEFER_TICKS == 0) {
		size_t applied = 0;

		if (store_retry_deferred(n->st, n->pol, now, &applied) != 0)
			log_msg(LOG_WARN, NULL, "deferred changes: %s",
			    store_last_error(n->st));
		if (applied) {
			log_msg(LOG_INFO, NULL, "applied %zu change(s) held back "
			    "until our clock caught up with their sender's",
			    applied);
			node__pump_soon(n);
		}
	}
	if (n->ticks % NODE_READER_CHECK_TICKS == 0) {
		int dead = store_reader_check(n->st);

		if (dead > 0)
			log_msg(LOG_INFO, NULL, "cleared %d reader slot(s) left "
			    "by dead processes", dead);
	}
	for (struct peer *p = n->peers; p; p = p->next)
		if (!p->active && !p->dialing && now >= p->next_dial_ms)
			conn__dial(n, p);
}

static void
on_signal(uv_signal_t *s, int signum)
{
	struct node *n = s->data;
	char err[1024];

	if (signum == SIGHUP) {
		log_msg(LOG_INFO, NULL, "SIGHUP: reloading certificates, CRL "
		    "and peers");
		if (node__reload(n, err, sizeof(err)) != 0)
			log_msg(LOG_ERROR, NULL, "reload failed, keeping the old "
			    "settings: %s", err);
		return;
	}
	log_msg(LOG_INFO, NULL, "%s: shutting down", signum == SIGTERM ?
	    "SIGTERM" : "SIGINT");
	node__stop(n);
}

/*
 * Clean shutdown: every session gets close_notify after its queued bytes,
 * the listener and control socket close, and the loop ends when the last
 * handle is closed.  No batch is half-applied: batches commit whole inside
 * one callback.
 */
void
node__stop(struct node *n)
{
	if (n->stopping)
		return;
	n->stopping = 1;
	for (struct conn *c = n->conns; c; c = c->next)
		conn__shutdown(c);
	ctl_server_stop(n->ctl);
	n->ctl = NULL;
	uv_close((uv_handle_t *)&n->listener, NULL);
	uv_close((uv_handle_t *)&n->timer, NULL);
	uv_close((uv_handle_t *)&n->retention, NULL);
	uv_close((uv_handle_t *)&n->more, NULL);
	uv_close((uv_handle_t *)&n->turn, NULL);
	uv_close((uv_handle_t *)&n->sigterm, NULL);
	uv_close((uv_handle_t *)&n->sigint, NULL);
	uv_close((uv_handle_t *)&n->sighup, NULL);
}

/* The node's certificate must name the node the config says it is, and be
 * valid now. */
static int
check_identity(const struct nbx_config *cfg, const struct tls_ctx *ctx,
    char *err, size_t errlen)
{
	if (strcmp(tls_ctx_id(ctx), cfg->id) != 0)
		return nbx_errf(err, errlen, NBX_ECONFIG, "cert %s names node "
		    "'%s', but this node is '%s'", cfg->tls_cert,
		    tls_ctx_id(ctx), cfg->id);
	return tls_ctx_check_validity(ctx, cfg->tls_cert, err, errlen);
}

int
node__reload(struct node *n, char *err, size_t errlen)
{
	struct nbx_config cfg;
	struct tls_ctx *ctx = NULL;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	if ((rc = config_load(n->config_path, &cfg, err, errlen)) != 0)
		return rc;
	if (strcmp(cfg.id, n->cfg.id) != 0 ||
	    strcmp(cfg.data_dir, n->cfg.data_dir) != 0) {
		snprintf(err, errlen, "%s: node id and data_dir cannot change "
		    "while running; restart nbxd", n->config_path);
		config_fini(&cfg);
		return NBX_ECONFIG;
	}
	if ((rc = tls_ctx_new(cfg.tls_ca, cfg.tls_cert, cfg.tls_key,
	    cfg.tls_crl, err, errlen, &ctx)) != 0 ||
	    (rc = check_identity(&cfg, ctx, err, errlen)) != 0) {
		tls_ctx_free(ctx);
		config_fini(&cfg);
		return rc;
	}
	/*
	 * New connections use the new context.  Live ones keep theirs, but
	 * each peer is checked again against the new CA, CRL and clock, and
	 * dropped if it no longer passes (a revoked certificate, say).
	 */
	tls_ctx_free(n->tls);
	n->tls = ctx;
	recheck_peers(n);
	if ((rc = sync_config_peers(n, &cfg)) != 0) {
		config_fini(&cfg);
		return rc;
	}
	/* keep the new TLS paths and sync settings; peers were merged above */
	config_fini(&n->cfg);
	n->cfg = cfg;
	log_msg(LOG_INFO, NULL, "reloaded %s", n->config_path);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */
/* ------------------------------------------------------------------ */

static void
on_listen(uv_stream_t *s, int status)
{
	struct node *n = s->data;

	if (status < 0) {
		log_msg(LOG_WARN, NULL, "accept: %s", uv_strerror(status));
		return;
	}
	conn__accept(n);
}

static int
start_listener(struct node *n, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	int rc;

	if (uv_ip4_addr(n->cfg.listen_host, n->cfg.listen_port,
	    (struct sockaddr_in *)&sa) != 0 &&
	    uv_ip6_addr(n->cfg.listen_host, n->cfg.listen_port,
	    (struct sockaddr_in6 *)&sa) != 0) {
		snprintf(err, errlen, "%s: listen address '%s' must be an IP "
		    "address", n->config_path, n->cfg.listen_host);
		return NBX_ECONFIG;
	}
	uv_tcp_init(n->loop, &n->listener);
	n->listener.data = n;
	if ((rc = uv_tcp_bind(&n->listener, (struct sockaddr *)&sa, 0)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&n->listener, 64, on_listen)) != 0) {
		snprintf(err, errlen, "cannot listen on %s:%u: %s",
		    n->cfg.listen_host, (unsigned)n->cfg.listen_port,
		    uv_strerror(rc));
		return NBX_EIO;
	}
	return 0;
}

int
node_new(uv_loop_t *loop, const char *config_path, struct node **out,
    char *err, size_t errlen)
{
	struct node *n;
	struct store_opts so;
	int rc;

	*out = NULL;
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NBX_ENOMEM;
	n->loop = loop;
	n->started_ms = log_now_ms();
	snprintf(n->config_path, sizeof(n->config_path), "%s", config_path);
	if ((rc = config_load(config_path, &n->cfg, err, errlen)) != 0)
		goto fail;
	if ((rc = conf_schema_load(n->cfg.schema, &n->pol, err, errlen)) != 0)
		goto fail;
	if ((rc = tls_ctx_new(n->cfg.tls_ca, n->cfg.tls_cert, n->cfg.tls_key,
	    n->cfg.tls_crl, err, errlen, &n->tls)) != 0 ||
	    (rc = check_identity(&n->cfg, n->tls, err, errlen)) != 0)
		goto fail;
	memset(&so, 0, sizeof(so));
	so.node_id = n->cfg.id;
	so.map_size = n->cfg.map_size;
	so.max_drift_ms = n->cfg.max_clock_drift_ms;
	if ((rc = store_open(n->cfg.data_dir, &so, &n->st, err, errlen)) != 0)
		goto fail;
	n->sopts.batch_bytes = n->cfg.batch_bytes;
	n->sopts.window = n->cfg.window;
	n->sopts.ping_interval_ms = n->cfg.ping_interval_ms;
	n->sopts.dead_after_ms = n->cfg.dead_after_ms;
	n->sopts.pump_batches = NODE_PUMP_BATCHES;
	if ((rc = sync_config_peers(n, &n->cfg)) != 0 ||
	    (rc = load_store_peers(n)) != 0) {
		snprintf(err, errlen, "cannot load peers: %s", nbx_strerror(rc));
		goto fail;
	}
	if ((rc = start_listener(n, err, errlen)) != 0)
		goto fail_listener;
	if ((rc = ctl_server_start(loop, n->cfg.control_socket, node__control,
	    n, &n->ctl, err, errlen)) != 0)
		goto fail_ctl;
	uv_timer_init(loop, &n->timer);
	n->timer.data = n;
	uv_timer_start(&n->timer, on_timer, NODE_TICK_MS, NODE_TICK_MS);
	uv_idle_init(loop, &n->more);
	n->more.data = n;
	uv_prepare_init(loop, &n->turn);
	n->turn.data = n;
	uv_prepare_start(&n->turn, on_turn);
	uv_timer_init(loop, &n->retention);
	n->retention.data = n;
	uv_timer_start(&n->retention, on_retention, NODE_RETENTION_FIRST_MS,
	    NODE_RETENTION_EVERY_MS);
	uv_signal_init(loop, &n->sigterm);
	uv_signal_init(loop, &n->sigint);
	uv_signal_init(loop, &n->sighup);
	n->sigterm.data = n->sigint.data = n->sighup.data = n;
	uv_signal_start(&n->sigterm, on_signal, SIGTERM);
	uv_signal_start(&n->sigint, on_signal, SIGINT);
	uv_signal_start(&n->sighup, on_signal, SIGHUP);
	*out = n;
	return 0;
fail_ctl:
	uv_close((uv_handle_t *)&n->listener, NULL);
fail_listener:
	uv_run(loop, UV_RUN_NOWAIT);
fail:
	node_free(n);
	return rc;
}

int
node_run(struct node *n)
{
	struct store_meta m;

	if (store_meta_get(n->st, &m) == 0)
		log_msg(LOG_INFO, NULL, "node %s listening on %s:%u, %llu "
		    "records, seq %llu, control %s", n->cfg.id,
		    n->cfg.listen_host, (unsigned)n->cfg.listen_port,
		    (unsigned long long)m.records,
		    (unsigned long long)m.last_seq, n->cfg.control_socket);
	for (struct peer *p = n->peers; p; p = p->next)
		conn__dial(n, p);
	uv_run(n->loop, UV_RUN_DEFAULT);
	log_msg(LOG_INFO, NULL, "stopped");
	return 0;
}

void
node_free(struct node *n)
{
	struct peer *p;

	if (n == NULL)
		return;
	while ((p = n->peers) != NULL) {
		n->peers = p->next;
		free(p);
	}
	node__verify_free(n);
	store_close(n->st);
	tls_ctx_free(n->tls);
	policy_free(n->pol);
	config_fini(&n->cfg);
	free(n);
}
