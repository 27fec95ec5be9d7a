/*
 * node_peer.c - the node's table of peers: the static ones from the config
 * file and the runtime ones (nbxctl peer add) from the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

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

void
node__peer_remove(struct node *n, struct peer *p)
{
	struct peer **pp;

	conn__close_peer(n, p, "peer removed");
	for (pp = &n->peers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	free(p);
}

int
node__peers_load(struct node *n)
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

int
node__peers_configure(struct node *n, const struct nbx_config *cfg)
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
