/*
 * import_fuzz.c - libFuzzer harness for one line of `nbxctl import`: the
 * line parsed with json_loadb as nbxctl does, then turned into changes by
 * write_batch_build (daemon/sync/writes.h) as nbxd does for each write of an
 * import request, against the regional schema and this process's store
 * (which holds records with set fields, so that the "remove the elements
 * not listed" path reads real records).  Nothing is applied: the store is
 * only read, so every input replays the same way.
 *
 * A batch that builds must hold what store_apply expects of a local write:
 * the request's collection and record id on every change, field values
 * and set elements that pass the schema's checks, an audience of at most
 * NBX_AUD_MAX valid ids that includes the creator.  A refusal must come
 * with a known code and a NUL-terminated message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

/* The checks above on one built batch; req is what it was built from. */
static void
import_check_batch(const struct write_batch *b, json_t *req)
{
	const struct policy *pol = fz_policy();
	const char *coll = json_string_value(json_object_get(req,
	    "collection"));
	const struct pol_coll *pc = policy_coll(pol, nbx_str_c(coll));
	struct nbx_str id = nbx_str_c(b->id);

	fz_check(pc != NULL, "built for a known collection");
	fz_check(id.n >= 1 && id.n <= NBX_RECID_MAX &&
	    memchr(id.p, ':', id.n) != NULL, "record id");
	for (size_t i = 0; i < b->n; i++) {
		const struct change *c = &b->chs[i];
		const struct pol_field *f = NULL;

		fz_check(nbx_str_eq(c->coll, nbx_str_c(coll)) &&
		    nbx_str_eq(c->id, id), "change names the record");
		fz_check(c->aud.n <= NBX_AUD_MAX, "audience size");
		switch (c->kind) {
		case CHANGE_FIELD:
		case CHANGE_ELEM:
			f = policy_field(pc, c->field);
			fz_check(f != NULL, "known field");
			fz_check((c->kind == CHANGE_ELEM) == (f->type == POL_SET),
			    "kind matches type");
			if (c->kind == CHANGE_FIELD)
				fz_check(policy_value_check(f, &c->val) == 0,
				    "field value passes");
			else
				fz_check(c->val.t == NBX_V_BOOL &&
				    (c->val.i == 0 || c->val.i == 1) &&
				    (c->val.i == 0 ||
				    policy_elem_check(f, c->elem) == 0),
				    "set element passes");
			fz_check(c->aud.n == 0, "no audience on a field change");
			break;
		case CHANGE_STATE:
			fz_check(c->val.t == NBX_V_INT && c->val.i == REC_LIVE,
			    "a put makes the record live");
			break;
		case CHANGE_AUDIENCE:
			fz_check(c->aud.n >= 1 && nbx_audience_has(&c->aud,
			    nbx_id_creator(id)), "audience holds the creator");
			for (uint32_t k = 0; k < c->aud.n; k++)
				fz_check(nbx_node_id_valid(c->aud.ids[k]),
				    "audience ids");
			break;
		default:
			fz_check(0, "a put makes only field, element, state "
			    "and audience changes");
		}
	}
}

int nbx_fuzz_import(const uint8_t *data, size_t size);

int
nbx_fuzz_import(const uint8_t *data, size_t size)
{
	struct write_batch b;
	json_error_t je;
	json_t *req;
	size_t errlen = size % 2 ? 1 + size % 64 : 1024;
	char *err;
	int rc;

	req = json_loadb((const char *)data, size, 0, &je);
	if (req == NULL)
		return 0;
	if (!json_is_object(req)) {	/* nbxd: "line is not a JSON object" */
		json_decref(req);
		return 0;
	}
	err = malloc(errlen);
	fz_check(err != NULL, "malloc");
	err[0] = 0;
	memset(&b, 0, sizeof(b));
	rc = write_batch_build(&b, WRITE_PUT, fz_policy(), fz_store(), FZ_SELF,
	    req, err, errlen);
	if (rc == 0) {
		import_check_batch(&b, req);
	} else {
		fz_check(rc < 0 && rc >= NBX_EPERM, "known code");
		fz_check(memchr(err, 0, errlen) != NULL, "err terminated");
		fz_check(b.n == 0, "a refused write leaves no change behind");
	}
	write_batch_fini(&b);
	json_decref(req);
	free(err);
	return 0;
}

NBX_FUZZ_MAIN(nbx_fuzz_import, (void)fz_store())
