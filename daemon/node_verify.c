/*
 * node_verify.c - the control socket's verify: the digest of what this
 * node and a peer may both hold, cached for every peer at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

/*
 * The digests of the last verify, for every peer at once: an operator
 * checks each peer in turn, and one pass over the records costs about
 * what one peer's digest does.  Valid while the store's generation has
 * not moved.
 */
struct verify_cache {
	uint64_t gen;
	size_t n;
	char (*ids)[NBX_ID_MAX + 1];
	struct store_digest *d;
};

/* Drops the cached digests. */
void
node__verify_free(struct node *n)
{
	if (n->verify != NULL) {
		free(n->verify->ids);
		free(n->verify->d);
		free(n->verify);
		n->verify = NULL;
	}
}

/* The cached digest of (this node, peer), or NULL if none is current. */
static const struct store_digest *
verify_cached(const struct node *n, const char *peer)
{
	const struct verify_cache *v = n->verify;

	if (v == NULL || v->gen != store_generation(n->st))
		return NULL;
	for (size_t i = 0; i < v->n; i++)
		if (!strcmp(v->ids[i], peer))
			return &v->d[i];
	return NULL;
}

/* Computes and caches the digests of peer and of every known peer. */
static int
verify_all(struct node *n, const char *peer, const struct store_digest **d)
{
	struct verify_cache *v;
	struct nbx_str *ids;
	size_t k = 1, i;
	int rc;

	node__verify_free(n);
	for (const struct peer *p = n->peers; p != NULL; p = p->next)
		k++;
	if ((v = calloc(1, sizeof(*v))) == NULL ||
	    (v->ids = calloc(k, sizeof(*v->ids))) == NULL ||
	    (v->d = calloc(k, sizeof(*v->d))) == NULL ||
	    (ids = calloc(k, sizeof(*ids))) == NULL) {
		if (v != NULL) {
			free(v->ids);
			free(v->d);
		}
		free(v);
		return NBX_ENOMEM;
	}
	snprintf(v->ids[0], sizeof(v->ids[0]), "%s", peer);
	v->n = 1;
	for (const struct peer *p = n->peers; p != NULL; p = p->next)
		if (strcmp(p->id, peer) != 0)
			snprintf(v->ids[v->n++], sizeof(v->ids[0]), "%s", p->id);
	for (i = 0; i < v->n; i++)
		ids[i] = nbx_str_c(v->ids[i]);
	v->gen = store_generation(n->st);
	rc = store_pair_digests(n->st, n->pol, ids, v->n, v->d);
	free(ids);
	n->verify = v;
	if (rc != 0)
		node__verify_free(n);
	*d = rc == 0 ? &v->d[0] : NULL;
	return rc;
}

/*
 * verify --repair: asks the session with peer for a reconciliation run
 * (session.h) and answers at once with the runs ended so far; nbxctl
 * waits for the count to move, then verifies.
 */
static json_t *
repair(struct node *n, const char *peer)
{
	struct peer *p;
	const struct sync_stats *s;
	int rc;

	for (p = n->peers; p != NULL && strcmp(p->id, peer) != 0; p = p->next)
		;
	if (p == NULL)
		return ctl_error(NBX_ENOTFOUND, "no peer '%s'", peer);
	if ((s = conn__peer_stats(p)) == NULL || !s->established)
		return ctl_error(NBX_EAGAIN, "peer %s is not connected; a "
		    "reconciliation runs by itself when it connects", peer);
	if ((rc = conn__peer_reconcile(p)) == NBX_EVERSION)
		return ctl_error(rc, "peer %s speaks protocol version %u, "
		    "which cannot reconcile (version 2 can)", peer, s->version);
	if (rc == NBX_EAGAIN)
		return ctl_error(rc, "peer %s is still starting its session; "
		    "try again", peer);
	if (rc != 0)
		return ctl_error(rc, "peer %s: %s", peer, nbx_strerror(rc));
	conn__pump_soon(n);
	return json_pack("{s:b, s:s, s:I}", "ok", 1, "peer", peer, "runs",
	    (json_int_t)(p->recon_runs + s->recon_runs));
}

/*
 * verify: the digest this node computes for the pair (this node, peer);
 * the peer's `nbxctl verify` for this node must print the same when the
 * two have converged.
 */
json_t *
node__cmd_verify(struct node *n, json_t *req)
{
	const char *peer = json_string_value(json_object_get(req, "peer"));
	const struct store_digest *d;
	char hex[65];
	int rc;

	if (peer == NULL || !nbx_node_id_valid(nbx_str_c(peer)))
		return ctl_error(NBX_EINVAL, "verify needs a peer id");
	if (json_is_true(json_object_get(req, "repair")))
		return repair(n, peer);
	if ((d = verify_cached(n, peer)) == NULL &&
	    (rc = verify_all(n, peer, &d)) != 0)
		return ctl_error(rc, "verify: %s", rc == NBX_ENOMEM ?
		    "out of memory" : store_last_error(n->st));
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d->digest[i]);
	return json_pack("{s:b, s:s, s:s, s:s, s:I, s:I}", "ok", 1, "node",
	    n->cfg.id, "peer", peer, "digest", hex, "records",
	    (json_int_t)d->records, "changes", (json_int_t)d->changes);
}
