/*
 * node_metrics.c - the control socket's metrics: each peer's and the
 * store's counters as Prometheus text.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"


/* A growing text; an allocation failure truncates it. */
struct text {
	char *p;
	size_t len, cap;
};

/* Appends the formatted text to t. */
static void __attribute__((format(printf, 2, 3)))
text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap - t->len <= (size_t)n)
			cap *= 2;
		char *np = realloc(t->p, cap);
		if (np == NULL)
			return;
		t->p = np;
		t->cap = cap;
	}
}

static void
metric_head(struct text *t, const char *name, const char *type,
    const char *help)
{
	text_add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The metrics as Prometheus text exposition format 0.0.4, in "text". */
json_t *
node__cmd_metrics(struct node *n, json_t *req)
{
	static const struct {
		const char *name, *type, *help;
	} pm[] = {
		{ "nbx_peer_up", "gauge", "1 while the sync session with the peer is established." },
		{ "nbx_peer_lag_changes", "gauge", "Log entries of this node the peer has not acknowledged." },
		{ "nbx_peer_bytes_in_total", "counter", "Plaintext bytes received from the peer." },
		{ "nbx_peer_bytes_out_total", "counter", "Plaintext bytes sent to the peer." },
		{ "nbx_peer_changes_in_total", "counter", "Changes received from the peer." },
		{ "nbx_peer_changes_out_total", "counter", "Changes sent to the peer." },
		{ "nbx_peer_quarantined_total", "counter", "Changes from the peer refused into quarantine." },
		{ "nbx_peer_protocol_version", "gauge", "Sync protocol version the pair speaks (0: not known yet)." },
		{ "nbx_peer_no_common_version", "gauge", "1 when the peer speaks no protocol version this node speaks." },
		{ "nbx_peer_schema_mismatch", "gauge", "1 when the peer's schema digest differs from this node's." },
		{ "nbx_peer_reconcile_runs_total", "counter", "Reconciliation runs this node started with the peer that ended." },
	};
	struct store_meta m;
	struct text t = { NULL, 0, 0 };
	json_t *reply;
	int rc;

	(void)req;
	if ((rc = store_meta_get(n->st, &m)) != 0)
		return ctl_error(rc, "%s", store_last_error(n->st));
	for (size_t k = 0; k < sizeof(pm) / sizeof(pm[0]); k++) {
		metric_head(&t, pm[k].name, pm[k].type, pm[k].help);
		for (struct peer *p = n->peers; p; p = p->next) {
			const struct sync_stats *s = conn__peer_stats(p);
			struct peer_proto pv = conn__peer_proto(p);
			uint64_t v = 0;

			switch (k) {
			case 0: v = p->active != NULL; break;
			case 1: v = s && m.last_seq > s->acked_seq ?
			    m.last_seq - s->acked_seq : (s ? 0 : m.last_seq); break;
			case 2: v = p->bytes_in + (s ? s->bytes_in : 0); break;
			case 3: v = p->bytes_out + (s ? s->bytes_out : 0); break;
			case 4: v = p->changes_in + (s ? s->changes_in : 0); break;
			case 5: v = p->changes_out + (s ? s->changes_out : 0); break;
			case 6: v = p->rejected_in + (s ? s->rejected_in : 0); break;
			case 7: v = pv.version; break;
			case 8: v = pv.no_common_version; break;
			case 9: v = pv.version >= 2 && pv.schema_match == 0; break;
			case 10: v = p->recon_runs + (s ? s->recon_runs : 0); break;
			}
			text_add(&t, "%s{peer=\"%s\"} %llu\n", pm[k].name, p->id,
			    (unsigned long long)v);
		}
	}
	metric_head(&t, "nbx_records", "gauge", "Records in the store.");
	text_add(&t, "nbx_records %llu\n", (unsigned long long)m.records);
	metric_head(&t, "nbx_log_seq", "counter", "Latest change-log sequence number.");
	text_add(&t, "nbx_log_seq %llu\n", (unsigned long long)m.last_seq);
	metric_head(&t, "nbx_quarantined", "gauge", "Entries in quarantine.");
	text_add(&t, "nbx_quarantined %llu\n", (unsigned long long)m.quarantined);
	metric_head(&t, "nbx_store_map_size_bytes", "gauge", "LMDB map size.");
	text_add(&t, "nbx_store_map_size_bytes %llu\n", (unsigned long long)m.map_size);
	metric_head(&t, "nbx_store_map_used_bytes", "gauge", "LMDB map in use.");
	text_add(&t, "nbx_store_map_used_bytes %llu\n", (unsigned long long)m.map_used);
	metric_head(&t, "nbx_store_map_usage_ratio", "gauge", "Share of the LMDB map in use (it grows on demand).");
	text_add(&t, "nbx_store_map_usage_ratio %.4f\n", m.map_size ?
	    (double)m.map_used / (double)m.map_size : 0.0);
	reply = json_pack("{s:b, s:s#}", "ok", 1, "text", t.p ? t.p : "",
	    (int)t.len);
	free(t.p);
	return reply;
}
