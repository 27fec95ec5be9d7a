/*
 * node_import.c - the control socket's import: many writes in one store
 * transaction, each applied whole or not at all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"
#include "writes.h"

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
json_t *
node__cmd_import(struct node *n, json_t *req)
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
		conn__pump_soon(n);
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
