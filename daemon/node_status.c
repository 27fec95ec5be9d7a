/*
 * node_status.c - the control socket's status and peer_list: the node and
 * each peer's state and counters as JSON.
 */
#include <stdio.h>
#include <string.h>

#include "hlc.h"
#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

static const char *
peer_state(const struct peer *p)
{
	if (p->active)
		return "up";
	if (p->dialing)
		return "connecting";
	if (p->proto.no_common_version)
		return "incompatible";
	return "down";
}

/* One peer as status and peer_list show it: its state and counters. */
static json_t *
peer_json(struct node *n, const struct peer *p, uint64_t last_seq)
{
	const struct sync_stats *s = conn__peer_stats(p);
	struct peer_proto v = conn__peer_proto(p);
	char addr[300], pin[65];
	json_t *o;

	snprintf(addr, sizeof(addr), "%s:%u", p->host, (unsigned)p->port);
	for (int i = 0; i < 32; i++)
		snprintf(pin + 2 * i, 3, "%02x", p->has_pin ? p->pin[i] : 0);
	o = json_pack("{s:s, s:s, s:s, s:b, s:o, s:s, s:s, s:s}",
	    "id", p->id, "address", addr, "state", peer_state(p),
	    "connected", p->active != NULL, "since", node__json_time(p->since_ms),
	    "identity", p->has_pin ? "CA chain + certificate name + SPKI pin" :
	    "CA chain + certificate name",
	    "source", p->from_config ? "config" : "runtime",
	    "last_error", p->last_error);
	if (p->has_pin)
		json_object_set_new(o, "pin", json_string(pin));
	json_object_set_new(o, "sent_seq", json_integer(s ? (json_int_t)s->sent_seq : 0));
	json_object_set_new(o, "acked_seq", json_integer(s ? (json_int_t)s->acked_seq : 0));
	json_object_set_new(o, "recv_seq", json_integer(s ? (json_int_t)s->recv_seq : 0));
	json_object_set_new(o, "lag", s && s->established ?
	    json_integer((json_int_t)(last_seq > s->acked_seq ?
	    last_seq - s->acked_seq : 0)) : json_null());
	json_object_set_new(o, "bytes_in", json_integer((json_int_t)(p->bytes_in +
	    (s ? s->bytes_in : 0))));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)(p->bytes_out +
	    (s ? s->bytes_out : 0))));
	json_object_set_new(o, "changes_in", json_integer((json_int_t)(p->changes_in +
	    (s ? s->changes_in : 0))));
	json_object_set_new(o, "changes_out", json_integer((json_int_t)(p->changes_out +
	    (s ? s->changes_out : 0))));
	json_object_set_new(o, "quarantined", json_integer((json_int_t)(p->rejected_in +
	    (s ? s->rejected_in : 0))));
	json_object_set_new(o, "last_rx", node__json_time(s ? s->last_rx_ms : 0));
	/* a down peer: how long until it is dialled again (its backoff) */
	if (p->active == NULL && p->dialing == NULL) {
		uint64_t now = log_now_ms();

		json_object_set_new(o, "redial_in_ms", json_integer(
		    (json_int_t)(p->next_dial_ms > now ? p->next_dial_ms - now :
		    0)));
	} else
		json_object_set_new(o, "redial_in_ms", json_null());
	json_object_set_new(o, "protocol", v.version ?
	    json_integer(v.version) : json_null());
	json_object_set_new(o, "peer_protocols", v.vmax ?
	    json_pack("[i, i]", (int)v.vmin, (int)v.vmax) : json_null());
	json_object_set_new(o, "no_common_version",
	    json_boolean(v.no_common_version));
	json_object_set_new(o, "schema_match", v.version == 0 ||
	    v.schema_match < 0 ? json_null() : json_boolean(v.schema_match));
	json_object_set_new(o, "reconcile_runs", json_integer((json_int_t)
	    (p->recon_runs + (s ? s->recon_runs : 0))));
	json_object_set_new(o, "reconcile_active", json_boolean(s &&
	    s->recon_active));
	json_object_set_new(o, "last_reconcile", node__json_time(s &&
	    s->recon_last_ms ? s->recon_last_ms : p->recon_last_ms));
	json_object_set_new(o, "reconcile_changes_in", json_integer(
	    (json_int_t)(s ? s->recon_changes_in : 0)));
	json_object_set_new(o, "reconcile_changes_out", json_integer(
	    (json_int_t)(s ? s->recon_changes_out : 0)));
	(void)n;
	return o;
}

json_t *
node__cmd_peer_list(struct node *n, json_t *req)
{
	struct store_meta m;
	json_t *arr = json_array();

	(void)req;
	if (store_meta_get(n->st, &m) != 0)
		memset(&m, 0, sizeof(m));
	for (struct peer *p = n->peers; p; p = p->next)
		json_array_append_new(arr, peer_json(n, p, m.last_seq));
	return json_pack("{s:b, s:o}", "ok", 1, "peers", arr);
}

json_t *
node__cmd_status(struct node *n, json_t *req)
{
	struct store_meta m;
	json_t *peers, *node;
	int rc;

	(void)req;
	if ((rc = store_meta_get(n->st, &m)) != 0)
		return ctl_error(rc, "%s", store_last_error(n->st));
	peers = json_array();
	for (struct peer *p = n->peers; p; p = p->next)
		json_array_append_new(peers, peer_json(n, p, m.last_seq));
	node = json_pack("{s:s, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:o, s:s}",
	    "id", n->cfg.id, "seq", (json_int_t)m.last_seq,
	    "records", (json_int_t)m.records,
	    "epoch", (json_int_t)(m.epoch & INT64_MAX),
	    "hlc", node__json_time(HLC_MS(m.hlc)), "quarantined", (json_int_t)m.quarantined,
	    "map_size", (json_int_t)m.map_size, "map_used", (json_int_t)m.map_used,
	    "started", node__json_time(n->started_ms), "listen", "");
	{
		char l[300];

		snprintf(l, sizeof(l), "%s:%u", n->cfg.listen_host,
		    (unsigned)n->cfg.listen_port);
		json_object_set_new(node, "listen", json_string(l));
	}
	return json_pack("{s:b, s:o, s:o}", "ok", 1, "node", node, "peers",
	    peers);
}
