/*
 * node_audit.c - the store's logs as the control socket shows them: the
 * quarantine, the disclosure log (audit) and the erasures with receipts.
 */
#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

/* Refused incoming changes, oldest first, at most "limit" (1000). */
json_t *
node__cmd_quarantine(struct node *n, json_t *req)
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
		    "qseq", (json_int_t)q.qseq, "time", node__json_time(q.time_ms),
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

/*
 * The disclosure log, filtered by peer, record ("coll/id") and time
 * ("since", Unix ms), oldest first, at most `limit` entries.
 */
json_t *
node__cmd_audit(struct node *n, json_t *req)
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
			    node__json_time(HLC_MS(it->hlc)), "origin", it->origin.p,
			    (int)it->origin.n));
		}
		json_array_append_new(arr, json_pack(
		    "{s:I, s:o, s:s#, s:s#, s:s#, s:o, s:I}", "aseq",
		    (json_int_t)e->aseq, "time", node__json_time(e->time_ms), "peer",
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
json_t *
node__cmd_erasures(struct node *n, json_t *req)
{
	struct store_rtxn *t;
	struct nbx_str coll = { "", 0 }, id = { "", 0 };
	json_t *arr = json_array();
	int rc;

	(void)req;
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
				    node__json_time(HLC_MS(x->ver.hlc))));
			else
				json_array_append_new(pending, json_stringn(
				    x->node.p, x->node.n));
		}
		o = json_pack("{s:s#, s:s#, s:o, s:s#, s:o, s:o}", "collection",
		    coll.p, (int)coll.n, "id", id.p, (int)id.n, "erased_at",
		    node__json_time(HLC_MS(r.erase.hlc)), "erased_by", r.erase.origin.p,
		    (int)r.erase.origin.n, "receipts", done, "pending", pending);
		json_array_append_new(arr, o);
		crdt_record_fini(&r);
	}
	store_rtxn_end(t);
	return json_pack("{s:b, s:o}", "ok", 1, "erasures", arr);
}
