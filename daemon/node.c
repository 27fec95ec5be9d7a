/*
 * node.c - a node from its config file: start-up (config, schema, TLS,
 * store, peers, listener, control socket), the run, and the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conf_file.h"
#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

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

/* SHA-256 of the schema's canonical form: peers compare it (HELLO). */
static int
schema_digest(const struct policy *pol, uint8_t out[SYNC_SCHEMA_LEN])
{
	struct nbx_buf b;
	unsigned int len = SYNC_SCHEMA_LEN;
	int rc;

	nbx_buf_init(&b, 16u << 20);
	if ((rc = policy_canonical(pol, &b)) == 0 &&
	    EVP_Digest(b.p, b.len, out, &len, EVP_sha256(), NULL) != 1)
		rc = NBX_ENOMEM;
	nbx_buf_fini(&b);
	return rc;
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
	    (rc = node__identity_check(&n->cfg, n->tls, err, errlen)) != 0)
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
	n->sopts.version_min = n->cfg.protocol_min;
	n->sopts.version_max = n->cfg.protocol_max;
	n->sopts.reconcile_interval_ms = n->cfg.reconcile_interval_s == 0 ?
	    UINT64_MAX : n->cfg.reconcile_interval_s * 1000;
	if ((rc = schema_digest(n->pol, n->sopts.schema)) != 0) {
		snprintf(err, errlen, "cannot digest the schema: %s",
		    nbx_strerror(rc));
		goto fail;
	}
	if ((rc = node__peers_configure(n, &n->cfg)) != 0 ||
	    (rc = node__peers_load(n)) != 0) {
		snprintf(err, errlen, "cannot load peers: %s", nbx_strerror(rc));
		goto fail;
	}
	if ((rc = start_listener(n, err, errlen)) != 0)
		goto fail_listener;
	if ((rc = ctl_server_start(loop, n->cfg.control_socket, node__control,
	    n, &n->ctl, err, errlen)) != 0)
		goto fail_ctl;
	node__loop_start(n);
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
