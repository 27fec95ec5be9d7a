/*
 * node_retain.c - retention: the records a collection's retain_days has
 * outlived are erased, everywhere they were sent.
 */
#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "log.h"
#include "node_int.h"

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
 * Ids are collected under a read transaction and erased after it, in
 * batches.
 */
void
node__retention_pass(struct node *n)
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
			conn__pump_soon(n);
	}
}
