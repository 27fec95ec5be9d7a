/*
 * node_loop.c - the running node's own work on the loop: the tick timer
 * (ticks, dials, re-checks, deferred changes), retention's timer, signals,
 * reload and clean shutdown.
 */
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

static void
on_retention(uv_timer_t *t)
{
	node__retention_pass(t->data);
}

/* Just before the loop polls: a new turn's share of reads begins. */
static void
on_turn(uv_prepare_t *h)
{
	conn__turn(h->data);
}

static void
on_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = log_now_ms();

	conn__tick_all(n, now);
	if (n->stopping)
		return;
	/*
	 * Live sessions were verified at their handshake; certificates
	 * expire and CRLs go stale while they run, so each is checked again
	 * now and then against the current context, failing closed.
	 */
	if (++n->ticks % NODE_PEER_RECHECK_TICKS == 0)
		conn__recheck_all(n);
	if (n->ticks % NODE_DEFER_TICKS == 0) {
		size_t applied = 0;

		if (store_retry_deferred(n->st, n->pol, now, &applied) != 0)
			log_msg(LOG_WARN, NULL, "deferred changes: %s",
			    store_last_error(n->st));
		if (applied) {
			log_msg(LOG_INFO, NULL, "applied %zu change(s) held back "
			    "until our clock caught up with their sender's",
			    applied);
			conn__pump_soon(n);
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

void
node__stop(struct node *n)
{
	if (n->stopping)
		return;
	n->stopping = 1;
	conn__shutdown_all(n);
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

int
node__identity_check(const struct nbx_config *cfg,
    const struct tls_ctx *ctx, char *err, size_t errlen)
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
	    (rc = node__identity_check(&cfg, ctx, err, errlen)) != 0) {
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
	conn__recheck_all(n);
	if ((rc = node__peers_configure(n, &cfg)) != 0) {
		config_fini(&cfg);
		return rc;
	}
	/* keep the new TLS paths and sync settings; peers were merged above */
	config_fini(&n->cfg);
	n->cfg = cfg;
	log_msg(LOG_INFO, NULL, "reloaded %s", n->config_path);
	return 0;
}

void
node__loop_start(struct node *n)
{
	uv_loop_t *loop = n->loop;

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
}
