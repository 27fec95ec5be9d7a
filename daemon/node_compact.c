/*
 * node_compact.c - the control socket's compact: the store rewritten
 * without free pages and swapped in while the node runs.
 */
#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"

/*
 * compact: the store is rewritten and swapped in.  The loop is busy for
 * the copy (a short, documented pause); sessions keep their connections
 * and carry on from their positions afterwards.  A store that fails
 * half-way stops the node.
 */
json_t *
node__cmd_compact(struct node *n, json_t *req)
{
	uint64_t before, after;
	uint64_t t0 = log_now_ms();
	int rc;

	(void)req;
	rc = store_compact(n->st, &before, &after);
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
