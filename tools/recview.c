/* recview.c - merged records as JSON and text for people. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hlc.h"
#include "recview.h"

const char *
recview_state(const struct crdt_record *r)
{
	if (r->erased)
		return "erased";
	return r->state == REC_DELETED ? "deleted" : "live";
}

static json_t *
value_json(const struct nbx_value *v)
{
	switch (v->t) {
	case NBX_V_BOOL: return json_boolean(v->i);
	case NBX_V_INT: return json_integer(v->i);
	case NBX_V_STR: return json_stringn(v->s.p, v->s.n);
	default: return json_null();
	}
}

static json_t *
hlc_time(uint64_t hlc)
{
	uint64_t ms = HLC_MS(hlc);
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	char b[32], out[48];

	gmtime_r(&s, &tm);
	strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, sizeof(out), "%s.%03uZ", b, (unsigned)(ms % 1000));
	return json_string(out);
}

static json_t *
aud_json(const struct nbx_audience *a)
{
	json_t *arr = json_array();

	for (uint32_t i = 0; i < a->n; i++)
		json_array_append_new(arr, json_stringn(a->ids[i].p,
		    a->ids[i].n));
	return arr;
}

json_t *
recview_json(const struct crdt_record *r, int meta)
{
	json_t *o, *fields = json_object(), *m = meta ? json_object() : NULL;
	char name[NBX_NAME_MAX + 1];

	o = json_pack("{s:s#, s:s#, s:s}", "collection", r->coll.p,
	    (int)r->coll.n, "id", r->id.p, (int)r->id.n, "state",
	    recview_state(r));
	for (size_t i = 0; i < r->nregs; i++) {
		const struct crdt_reg *g = &r->regs[i];
		json_t *cur;

		if (!(g->flags & CRDT_REG_VALUE))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)g->field.n, g->field.p);
		if (g->flags & CRDT_REG_ELEM) {
			if ((cur = json_object_get(fields, name)) == NULL) {
				cur = json_array();
				json_object_set_new(fields, name, cur);
			}
			if (g->val.i)
				json_array_append_new(cur, json_stringn(g->elem.p,
				    g->elem.n));
		} else {
			json_object_set_new(fields, name, value_json(&g->val));
		}
		if (m && (!json_object_get(m, name) ||
		    !(g->flags & CRDT_REG_ELEM))) {
			json_t *f = json_pack("{s:o, s:I, s:s#}", "time",
			    hlc_time(g->ver.hlc), "hlc", (json_int_t)g->ver.hlc,
			    "origin", g->ver.origin.p, (int)g->ver.origin.n);

			if (g->flags & CRDT_REG_SCOPED)
				json_object_set_new(f, "audience",
				    aud_json(&g->aud));
			json_object_set_new(m, name, f);
		}
	}
	json_object_set_new(o, "fields", fields);
	if (meta && r->nrcpt) {
		json_t *rc = json_array();

		for (size_t i = 0; i < r->nrcpt; i++) {
			const struct crdt_receipt *x = &r->rcpt[i];

			json_array_append_new(rc, json_pack("{s:s#, s:s#, s:s, s:o}",
			    "what", x->what.p, (int)x->what.n, "node", x->node.p,
			    (int)x->node.n, "state", x->state == RECEIPT_DONE ?
			    "done" : "pending", "time", hlc_time(x->ver.hlc)));
		}
		json_object_set_new(o, "receipts", rc);
	}
	if (m) {
		json_object_set_new(o, "meta", m);
		if (r->aud.hlc)
			json_object_set_new(o, "audience", aud_json(&r->aud));
		if (r->erased)
			json_object_set_new(o, "erased_by", json_stringn(
			    r->erase.origin.p, r->erase.origin.n));
	}
	return o;
}

void
recview_text(const struct crdt_record *r, const char *field, char *out,
    size_t len)
{
	struct nbx_str f = nbx_str_c(field);
	size_t off = 0;

	out[0] = 0;
	for (size_t i = 0; i < r->nregs && off + 1 < len; i++) {
		const struct crdt_reg *g = &r->regs[i];

		if (!nbx_str_eq(g->field, f) || !(g->flags & CRDT_REG_VALUE))
			continue;
		if (g->flags & CRDT_REG_ELEM) {
			if (g->val.i)
				off += (size_t)snprintf(out + off, len - off,
				    "%s%.*s", off ? "," : "", (int)g->elem.n,
				    g->elem.p);
			continue;
		}
		switch (g->val.t) {
		case NBX_V_BOOL:
			snprintf(out, len, "%s", g->val.i ? "true" : "false");
			break;
		case NBX_V_INT:
			snprintf(out, len, "%lld", (long long)g->val.i);
			break;
		case NBX_V_STR:
			snprintf(out, len, "%.*s", (int)g->val.s.n, g->val.s.p);
			break;
		default:
			break;
		}
		return;
	}
}
