/*
 * node_ctl.c - answers the control socket: writes (put, delete, erase),
 * peering (peer_add, peer_remove, peer_list), status, quarantine and
 * reload.  Every reply is one JSON object with "ok"; errors carry a message
 * naming what is wrong.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "hlc.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"
#include "writes.h"

static json_t *
ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

static json_t *
iso(uint64_t ms)
{
	char b[40];

	if (ms == 0)
		return json_null();
	log_time_iso(ms, b, sizeof(b));
	return json_string(b);
}

/* ------------------------------------------------------------------ */
/* Writes                                                              */
/* ------------------------------------------------------------------ */

static const char *
op_name(enum write_op op)
{
	return op == WRITE_PUT ? "put" : op == WRITE_DELETE ? "delete" : "erase";
}

/* 1 if the record is stored here (in any state). */
static int
record_exists(struct node *n, struct nbx_str coll, struct nbx_str id)
{
	struct store_rtxn *t;
	struct crdt_record r;
	int rc;

	if (store_rtxn_begin(n->st, &t) != 0)
		return 1;	/* let the write itself report the failure */
	rc = store_record_get(t, coll, id, &r);
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return rc != NBX_ENOTFOUND;
}

static json_t *
do_write(struct node *n, json_t *req, enum write_op op)
{
	struct write_batch b;
	struct store_outcome *out = NULL;
	char err[1024];
	json_t *reply;
	size_t applied = 0, unchanged = 0;
	uint64_t seq = 0;
	int rc;

	memset(&b, 0, sizeof(b));
	rc = write_batch_build(&b, op, n->pol, n->st, n->cfg.id, req, err,
	    sizeof(err));
	if (rc != 0) {
		reply = ctl_error(rc, "%s", err);
		goto out;
	}
	if (op != WRITE_PUT && !record_exists(n, b.chs[0].coll, b.chs[0].id)) {
		reply = ctl_error(NBX_ENOTFOUND, "%s %.*s/%s: no such record",
		    op_name(op), (int)b.chs[0].coll.n, b.chs[0].coll.p, b.id);
		goto out;
	}
	if ((out = calloc(b.n ? b.n : 1, sizeof(*out))) == NULL) {
		reply = ctl_error(NBX_ENOMEM, "out of memory");
		goto out;
	}
	rc = store_apply(n->st, n->pol, b.chs, b.n, (struct nbx_str){ 0 },
	    NULL, log_now_ms(), STORE_ATOMIC, out);
	if (rc != 0) {
		for (size_t i = 0; i < b.n; i++) {
			if (out[i].status != STORE_REJECTED)
				continue;
			reply = ctl_error(out[i].err, "%s %.*s/%s%s%.*s: %s",
			    op_name(op), (int)b.chs[i].coll.n, b.chs[i].coll.p,
			    b.id, b.chs[i].field.n ? " field " : "",
			    (int)b.chs[i].field.n, b.chs[i].field.p,
			    nbx_strerror(out[i].err));
			goto out;
		}
		reply = ctl_error(rc, "%s: %s", op_name(op),
		    store_last_error(n->st));
		goto out;
	}
	for (size_t i = 0; i < b.n; i++) {
		if (out[i].status == STORE_APPLIED) {
			applied++;
			seq = out[i].seq;
		} else {
			unchanged++;
		}
	}
	reply = json_pack("{s:b, s:s, s:I, s:I, s:I}", "ok", 1, "id", b.id,
	    "applied", (json_int_t)applied, "unchanged", (json_int_t)unchanged,
	    "seq", (json_int_t)seq);
	if (applied)
		node__pump_soon(n);
out:
	free(out);
	write_batch_fini(&b);
	return reply;
}

/*
 * The write whose changes hold change k: the last i with start[i] <= k
 * (start is ascending; a write with no changes shares the next one's).
 */
static size_t
write_of(const size_t *start, size_t nw, size_t k)
{
	size_t lo = 0, hi = nw;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (start[mid] <= k)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*
 * import: {"writes": [write, ...]} applied in one transaction.  Each write
 * is all or nothing: a write the store refuses is dropped and the rest
 * retried, so a bad line never leaves half a record behind.  The reply
 * lists each write's outcome in order; with "brief": true (bulk loads)
 * it holds only the numbers of writes applied and unchanged and the
 * refused ones: "rejected": [{"i": index in writes, "error": why}].
 */
static json_t *
do_import(struct node *n, json_t *req)
{
	json_t *writes = json_object_get(req, "writes"), *results = NULL, *w;
	int brief = json_is_true(json_object_get(req, "brief"));
	size_t writes_applied = 0, writes_unchanged = 0;
	struct write_batch b;
	struct store_outcome *out = NULL;
	size_t nw, i, k, *start = NULL, *cnt = NULL;
	size_t applied_total = 0;
	const char **ids = NULL;
	char **errs = NULL;
	int *dead = NULL, rc = 0;
	char err[1024];

	memset(&b, 0, sizeof(b));
	if (!json_is_array(writes))
		return ctl_error(NBX_EINVAL, "import needs \"writes\": [...]");
	nw = json_array_size(writes);
	start = calloc(nw ? nw : 1, sizeof(*start));
	cnt = calloc(nw ? nw : 1, sizeof(*cnt));
	errs = calloc(nw ? nw : 1, sizeof(*errs));
	ids = calloc(nw ? nw : 1, sizeof(*ids));
	dead = calloc(nw ? nw : 1, sizeof(*dead));
	if (!start || !cnt || !errs || !ids || !dead) {
		rc = NBX_ENOMEM;
		goto out;
	}
	/* every write's changes in one array, write i at start[i] */
	if (write_batch_reserve_for(&b, writes) != 0) {
		rc = NBX_ENOMEM;
		goto out;
	}
	json_array_foreach(writes, i, w) {
		start[i] = b.n;
		if (!json_is_object(w)) {
			errs[i] = strdup("line is not a JSON object");
			dead[i] = 1;
		} else if (write_batch_build(&b, WRITE_PUT, n->pol, n->st,
		    n->cfg.id, w, err, sizeof(err)) != 0) {
			ctl_utf8_scrub(err);
			errs[i] = strdup(err);
			dead[i] = 1;
		} else {
			ids[i] = b.id;	/* owned by b until it is freed */
		}
		cnt[i] = b.n - start[i];
	}
	if ((out = calloc(b.n ? b.n : 1, sizeof(*out))) == NULL) {
		rc = NBX_ENOMEM;
		goto out;
	}
	/* a write the store refuses is taken out whole, the rest retried */
	while ((rc = store_apply(n->st, n->pol, b.chs, b.n,
	    (struct nbx_str){ 0 }, NULL, log_now_ms(), STORE_ATOMIC,
	    out)) != 0) {
		size_t bad, gone;

		for (bad = 0; bad < b.n; bad++)
			if (out[bad].status == STORE_REJECTED)
				break;
		if (bad == b.n)
			goto out;	/* a store failure, not a bad write */
		i = write_of(start, nw, bad);
		snprintf(err, sizeof(err), "%.*s/%.*s%s%.*s: %s",
		    (int)b.chs[bad].coll.n, b.chs[bad].coll.p,
		    (int)b.chs[bad].id.n, b.chs[bad].id.p,
		    b.chs[bad].field.n ? " field " : "",
		    (int)b.chs[bad].field.n, b.chs[bad].field.p,
		    nbx_strerror(out[bad].err));
		ctl_utf8_scrub(err);
		errs[i] = strdup(err);
		dead[i] = 1;
		gone = cnt[i];
		memmove(&b.chs[start[i]], &b.chs[start[i] + gone],
		    (b.n - start[i] - gone) * sizeof(b.chs[0]));
		b.n -= gone;
		cnt[i] = 0;
		for (size_t j = i + 1; j < nw; j++)
			start[j] -= gone;
	}
	results = json_array();
	for (i = 0; i < nw; i++) {
		size_t applied = 0, unchanged = 0;

		for (k = start[i]; k < start[i] + cnt[i]; k++) {
			if (out[k].status == STORE_APPLIED)
				applied++;
			else
				unchanged++;
		}
		applied_total += applied;
		if (brief) {
			if (dead[i])
				json_array_append_new(results, json_pack(
				    "{s:I, s:s}", "i", (json_int_t)i, "error",
				    errs[i] ? errs[i] : "refused"));
			else if (applied)
				writes_applied++;
			else
				writes_unchanged++;
		} else if (dead[i])
			json_array_append_new(results, json_pack("{s:b, s:s}",
			    "ok", 0, "error", errs[i] ? errs[i] : "refused"));
		else
			json_array_append_new(results, json_pack(
			    "{s:b, s:s, s:I, s:I}", "ok", 1, "id", ids[i],
			    "applied", (json_int_t)applied, "unchanged",
			    (json_int_t)unchanged));
	}
	if (applied_total)
		node__pump_soon(n);
out:
	for (i = 0; errs && i < nw; i++)
		free(errs[i]);
	free(errs);
	free(ids);
	free(dead);
	free(start);
	free(cnt);
	free(out);
	write_batch_fini(&b);
	if (rc != 0) {
		json_decref(results);
		return ctl_error(rc, "import: %s", rc == NBX_ENOMEM ?
		    "out of memory" : store_last_error(n->st));
	}
	if (brief)
		return json_pack("{s:b, s:I, s:I, s:o}", "ok", 1, "applied",
		    (json_int_t)writes_applied, "unchanged",
		    (json_int_t)writes_unchanged, "rejected", results);
	return json_pack("{s:b, s:o}", "ok", 1, "results", results);
}

/* ------------------------------------------------------------------ */
/* Peers                                                               */
/* ------------------------------------------------------------------ */

static const char *
peer_state(const struct peer *p)
{
	if (p->active)
		return "up";
	if (p->dialing)
		return "connecting";
	return "down";
}

static json_t *
peer_json(struct node *n, const struct peer *p, uint64_t last_seq)
{
	const struct sync_stats *s = p->active && p->active->sess ?
	    sync_session_stats(p->active->sess) : NULL;
	char addr[300], pin[65];
	json_t *o;

	snprintf(addr, sizeof(addr), "%s:%u", p->host, (unsigned)p->port);
	for (int i = 0; i < 32; i++)
		snprintf(pin + 2 * i, 3, "%02x", p->has_pin ? p->pin[i] : 0);
	o = json_pack("{s:s, s:s, s:s, s:b, s:o, s:s, s:s, s:s}",
	    "id", p->id, "address", addr, "state", peer_state(p),
	    "connected", p->active != NULL, "since", iso(p->since_ms),
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
	json_object_set_new(o, "last_rx", iso(s ? s->last_rx_ms : 0));
	/* a down peer: how long until it is dialled again (its backoff) */
	if (p->active == NULL && p->dialing == NULL) {
		uint64_t now = log_now_ms();

		json_object_set_new(o, "redial_in_ms", json_integer(
		    (json_int_t)(p->next_dial_ms > now ? p->next_dial_ms - now :
		    0)));
	} else
		json_object_set_new(o, "redial_in_ms", json_null());
	(void)n;
	return o;
}

static json_t *
do_peer_list(struct node *n)
{
	struct store_meta m;
	json_t *arr = json_array();

	if (store_meta_get(n->st, &m) != 0)
		memset(&m, 0, sizeof(m));
	for (struct peer *p = n->peers; p; p = p->next)
		json_array_append_new(arr, peer_json(n, p, m.last_seq));
	return json_pack("{s:b, s:o}", "ok", 1, "peers", arr);
}

static json_t *
do_peer_add(struct node *n, json_t *req)
{
	const char *id = json_string_value(json_object_get(req, "id"));
	const char *addr = json_string_value(json_object_get(req, "address"));
	const char *pin_hex = json_string_value(json_object_get(req, "pin"));
	struct store_peer sp;
	struct peer *p;
	char host[256];
	uint16_t port;
	int rc;

	memset(&sp, 0, sizeof(sp));
	if (json_object_get(req, "pin") && !json_is_null(json_object_get(req,
	    "pin")) && !json_is_string(json_object_get(req, "pin")))
		return ctl_error(NBX_EINVAL, "pin must be a string of 64 hex "
		    "digits");
	if (id == NULL || !nbx_node_id_valid(nbx_str_c(id)))
		return ctl_error(NBX_EINVAL, "peer id '%s' is not a node id "
		    "(1-32 of a-z, 0-9, -)", id ? id : "");
	if (strcmp(id, n->cfg.id) == 0)
		return ctl_error(NBX_EINVAL, "'%s' is this node itself", id);
	if (addr == NULL || config_parse_hostport(addr, host, sizeof(host),
	    &port) != 0)
		return ctl_error(NBX_EINVAL, "address '%s' is not HOST:PORT",
		    addr ? addr : "");
	if (pin_hex && *pin_hex && config_parse_pin(pin_hex, sp.pin) != 0)
		return ctl_error(NBX_EINVAL, "pin must be 64 hex digits (the "
		    "SPKI SHA-256 that `nbxctl ca issue` printed)");
	sp.has_pin = pin_hex && *pin_hex;
	p = node__peer_find(n, id, strlen(id));
	if (p && p->from_config)
		return ctl_error(NBX_EEXIST, "peer %s is set in %s; change it "
		    "there and reload", id, n->config_path);
	sp.id = nbx_str_c(id);
	sp.address = nbx_str_c(addr);
	if ((rc = store_peer_put(n->st, &sp)) != 0)
		return ctl_error(rc, "cannot store peer %s: %s", id,
		    store_last_error(n->st));
	if (p)
		node__peer_remove(n, p);
	p = node__peer_add(n, id, host, port, sp.has_pin ? sp.pin : NULL, 0);
	if (p == NULL)
		return ctl_error(NBX_ENOMEM, "out of memory");
	log_msg(LOG_INFO, id, "peer added at %s:%u", host, (unsigned)port);
	conn__dial(n, p);
	return ok();
}

static json_t *
do_peer_remove(struct node *n, json_t *req)
{
	const char *id = json_string_value(json_object_get(req, "id"));
	struct peer *p;
	int rc;

	if (id == NULL)
		return ctl_error(NBX_EINVAL, "peer_remove needs \"id\"");
	p = node__peer_find(n, id, strlen(id));
	if (p && p->from_config)
		return ctl_error(NBX_EPERM, "peer %s is set in %s; remove it "
		    "there and reload", id, n->config_path);
	if ((rc = store_peer_del(n->st, nbx_str_c(id))) != 0 && p == NULL)
		return ctl_error(NBX_ENOTFOUND, "no peer '%s'", id);
	if (p)
		node__peer_remove(n, p);
	log_msg(LOG_INFO, id, "peer removed");
	return ok();
}

/* ------------------------------------------------------------------ */
/* Status, quarantine, reload                                          */
/* ------------------------------------------------------------------ */

static json_t *
do_status(struct node *n)
{
	struct store_meta m;
	json_t *peers, *node;
	int rc;

	if ((rc = store_meta_get(n->st, &m)) != 0)
		return ctl_error(rc, "%s", store_last_error(n->st));
	peers = json_array();
	for (struct peer *p = n->peers; p; p = p->next)
		json_array_append_new(peers, peer_json(n, p, m.last_seq));
	node = json_pack("{s:s, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:o, s:s}",
	    "id", n->cfg.id, "seq", (json_int_t)m.last_seq,
	    "records", (json_int_t)m.records,
	    "epoch", (json_int_t)(m.epoch & INT64_MAX),
	    "hlc", iso(HLC_MS(m.hlc)), "quarantined", (json_int_t)m.quarantined,
	    "map_size", (json_int_t)m.map_size, "map_used", (json_int_t)m.map_used,
	    "started", iso(n->started_ms), "listen", "");
	{
		char l[300];

		snprintf(l, sizeof(l), "%s:%u", n->cfg.listen_host,
		    (unsigned)n->cfg.listen_port);
		json_object_set_new(node, "listen", json_string(l));
	}
	return json_pack("{s:b, s:o, s:o}", "ok", 1, "node", node, "peers",
	    peers);
}

static json_t *
do_quarantine(struct node *n, json_t *req)
{
	json_int_t limit = json_integer_value(json_object_get(req, "limit"));
	struct store_rtxn *t;
	struct store_qentry q;
	json_t *arr = json_array();
	uint64_t after = 0;
	int rc;

	if (limit <= 0)
		limit = 1000;
	if ((rc = store_rtxn_begin(n->st, &t)) != 0) {
		json_decref(arr);
		return ctl_error(rc, "%s", store_last_error(n->st));
	}
	while (limit-- > 0 && store_quarantine_next(t, after, &q) == 0) {
		json_array_append_new(arr, json_pack(
		    "{s:I, s:o, s:s#, s:s#, s:s#, s:s#, s:s#, s:s, s:i}",
		    "qseq", (json_int_t)q.qseq, "time", iso(q.time_ms),
		    "peer", q.peer.p, (int)q.peer.n, "collection", q.coll.p,
		    (int)q.coll.n, "id", q.id.p, (int)q.id.n, "field",
		    q.field.p, (int)q.field.n, "origin", q.origin.p,
		    (int)q.origin.n, "reason", nbx_strerror(q.err), "code",
		    q.err));
		after = q.qseq;
	}
	store_rtxn_end(t);
	return json_pack("{s:b, s:o}", "ok", 1, "entries", arr);
}

/* ------------------------------------------------------------------ */
/* Metrics and audit                                                   */
/* ------------------------------------------------------------------ */

struct text {
	char *p;
	size_t len, cap;
};

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

/* Prometheus text exposition format 0.0.4. */
static json_t *
do_metrics(struct node *n)
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
	};
	struct store_meta m;
	struct text t = { NULL, 0, 0 };
	json_t *reply;
	int rc;

	if ((rc = store_meta_get(n->st, &m)) != 0)
		return ctl_error(rc, "%s", store_last_error(n->st));
	for (size_t k = 0; k < sizeof(pm) / sizeof(pm[0]); k++) {
		metric_head(&t, pm[k].name, pm[k].type, pm[k].help);
		for (struct peer *p = n->peers; p; p = p->next) {
			const struct sync_stats *s = p->active && p->active->sess ?
			    sync_session_stats(p->active->sess) : NULL;
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

/*
 * The disclosure log, filtered by peer, record ("coll/id") and time
 * ("since", Unix ms), oldest first, at most `limit` entries.
 */
static json_t *
do_audit(struct node *n, json_t *req)
{
	const char *peer = json_string_value(json_object_get(req, "peer"));
	const char *record = json_string_value(json_object_get(req, "record"));
	json_int_t since = json_integer_value(json_object_get(req, "since"));
	json_int_t limit = json_integer_value(json_object_get(req, "limit"));
	struct nbx_str coll = { NULL, 0 }, id = { NULL, 0 };
	struct store_rtxn *t;
	struct store_audit_entry *e;
	json_t *arr;
	uint64_t after = 0;
	int rc;

	if (record) {
		const char *slash = strchr(record, '/');

		if (slash == NULL)
			return ctl_error(NBX_EINVAL, "record must be COLL/ID, not "
			    "'%s'", record);
		coll = (struct nbx_str){ record, (uint32_t)(slash - record) };
		id = nbx_str_c(slash + 1);
	}
	if (limit <= 0)
		limit = 100000;
	if ((e = malloc(sizeof(*e))) == NULL)
		return ctl_error(NBX_ENOMEM, "out of memory");
	if ((rc = store_rtxn_begin(n->st, &t)) != 0) {
		free(e);
		return ctl_error(rc, "%s", store_last_error(n->st));
	}
	arr = json_array();
	while (limit > 0 && store_audit_next(t, after, e) == 0) {
		json_t *items;

		after = e->aseq;
		if ((peer && !nbx_str_eq(e->peer, nbx_str_c(peer))) ||
		    (record && (!nbx_str_eq(e->coll, coll) ||
		    !nbx_str_eq(e->id, id))) ||
		    (since > 0 && e->time_ms < (uint64_t)since))
			continue;
		items = json_array();
		for (uint32_t i = 0; i < e->nitems; i++) {
			const struct store_audit_item *it = &e->items[i];

			json_array_append_new(items, json_pack(
			    "{s:s, s:s#, s:s#, s:o, s:s#}", "kind",
			    change_kind_name(it->kind), "field",
			    it->field.p, (int)it->field.n, "element",
			    it->elem.p, (int)it->elem.n, "time",
			    iso(HLC_MS(it->hlc)), "origin", it->origin.p,
			    (int)it->origin.n));
		}
		json_array_append_new(arr, json_pack(
		    "{s:I, s:o, s:s#, s:s#, s:s#, s:o, s:I}", "aseq",
		    (json_int_t)e->aseq, "time", iso(e->time_ms), "peer",
		    e->peer.p, (int)e->peer.n, "collection", e->coll.p,
		    (int)e->coll.n, "id", e->id.p, (int)e->id.n, "items", items,
		    "more", (json_int_t)e->more));
		limit--;
	}
	store_rtxn_end(t);
	free(e);
	return json_pack("{s:b, s:o}", "ok", 1, "entries", arr);
}

/*
 * erasures: every erased record this node knows, with its receipts: who
 * confirmed the purge, and who has not yet.
 */
static json_t *
do_erasures(struct node *n)
{
	struct store_rtxn *t;
	struct nbx_str coll = { "", 0 }, id = { "", 0 };
	json_t *arr = json_array();
	int rc;

	if ((rc = store_rtxn_begin(n->st, &t)) != 0) {
		json_decref(arr);
		return ctl_error(rc, "%s", store_last_error(n->st));
	}
	while (store_erasure_next(t, coll, id, &coll, &id) == 0) {
		struct crdt_record r;
		json_t *done = json_array(), *pending = json_array(), *o;

		if (store_record_get(t, coll, id, &r) != 0) {
			crdt_record_fini(&r);
			json_decref(done);
			json_decref(pending);
			continue;
		}
		for (size_t i = 0; i < r.nrcpt; i++) {
			const struct crdt_receipt *x = &r.rcpt[i];

			if (!nbx_str_eq(x->what, nbx_str_c("erase")))
				continue;
			if (x->state == RECEIPT_DONE)
				json_array_append_new(done, json_pack(
				    "{s:s#, s:o}", "node", x->node.p,
				    (int)x->node.n, "time",
				    iso(HLC_MS(x->ver.hlc))));
			else
				json_array_append_new(pending, json_stringn(
				    x->node.p, x->node.n));
		}
		o = json_pack("{s:s#, s:s#, s:o, s:s#, s:o, s:o}", "collection",
		    coll.p, (int)coll.n, "id", id.p, (int)id.n, "erased_at",
		    iso(HLC_MS(r.erase.hlc)), "erased_by", r.erase.origin.p,
		    (int)r.erase.origin.n, "receipts", done, "pending", pending);
		json_array_append_new(arr, o);
		crdt_record_fini(&r);
	}
	store_rtxn_end(t);
	return json_pack("{s:b, s:o}", "ok", 1, "erasures", arr);
}

/*
 * compact: the store is rewritten and swapped in.  The loop is busy for
 * the copy (a short, documented pause); sessions keep their connections
 * and carry on from their positions afterwards.
 */
static json_t *
do_compact(struct node *n)
{
	uint64_t before, after;
	uint64_t t0 = log_now_ms();
	int rc = store_compact(n->st, &before, &after);

	if (rc == NBX_ESTORE && n->st != NULL) {
		log_msg(LOG_ERROR, NULL, "compaction: %s; stopping",
		    store_last_error(n->st));
		node__stop(n);
		return ctl_error(rc, "%s", store_last_error(n->st));
	}
	if (rc != 0)
		return ctl_error(rc, "compact: %s", store_last_error(n->st));
	log_msg(LOG_INFO, NULL, "compacted the store: %llu -> %llu bytes in "
	    "%llu ms", (unsigned long long)before, (unsigned long long)after,
	    (unsigned long long)(log_now_ms() - t0));
	return json_pack("{s:b, s:I, s:I}", "ok", 1, "before",
	    (json_int_t)before, "after", (json_int_t)after);
}

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
 * verify: the digest this node computes for the pair (this node, peer);
 * the peer's `nbxctl verify` for this node must print the same when the
 * two have converged.
 */
static json_t *
do_verify(struct node *n, json_t *req)
{
	const char *peer = json_string_value(json_object_get(req, "peer"));
	const struct store_digest *d;
	char hex[65];
	int rc;

	if (peer == NULL || !nbx_node_id_valid(nbx_str_c(peer)))
		return ctl_error(NBX_EINVAL, "verify needs a peer id");
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

json_t *
node__control(void *arg, json_t *req)
{
	struct node *n = arg;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	char err[1024];
	int rc;

	if (n->stopping)
		return ctl_error(NBX_ECLOSED, "nbxd is shutting down");
	if (!strcmp(cmd, "put"))
		return do_write(n, req, WRITE_PUT);
	if (!strcmp(cmd, "delete"))
		return do_write(n, req, WRITE_DELETE);
	if (!strcmp(cmd, "erase"))
		return do_write(n, req, WRITE_ERASE);
	if (!strcmp(cmd, "import"))
		return do_import(n, req);
	if (!strcmp(cmd, "status"))
		return do_status(n);
	if (!strcmp(cmd, "peer_list"))
		return do_peer_list(n);
	if (!strcmp(cmd, "peer_add"))
		return do_peer_add(n, req);
	if (!strcmp(cmd, "peer_remove"))
		return do_peer_remove(n, req);
	if (!strcmp(cmd, "quarantine"))
		return do_quarantine(n, req);
	if (!strcmp(cmd, "metrics"))
		return do_metrics(n);
	if (!strcmp(cmd, "audit"))
		return do_audit(n, req);
	if (!strcmp(cmd, "erasures"))
		return do_erasures(n);
	if (!strcmp(cmd, "compact"))
		return do_compact(n);
	if (!strcmp(cmd, "verify"))
		return do_verify(n, req);
	if (!strcmp(cmd, "reload")) {
		if ((rc = node__reload(n, err, sizeof(err))) != 0)
			return ctl_error(rc, "reload failed, still running with "
			    "the old settings: %s", err);
		return ok();
	}
	return ctl_error(NBX_EINVAL, "unknown command '%s'", cmd);
}
