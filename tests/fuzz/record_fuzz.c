/*
 * record_fuzz.c - libFuzzer harness for the stored record codec
 * (crdt_record_decode / crdt_record_encode, formats 1 and 2).
 *
 * A stored record comes from the node's own LMDB file, but a damaged
 * file, or one another build wrote, must be refused, never half-read.
 * For every input: decoding either fails with NBX_EMALFORMED (or
 * NBX_ENOMEM) and leaves the record empty, or succeeds with every
 * string inside the input; a decoded record encodes, that encoding
 * decodes, and encodes again to the same bytes (the canonical form is a
 * fixed point, whatever form the input used); and every proper prefix of
 * the canonical encoding is refused.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "crdt.h"

/* Every string of r borrows from p[0..n). */
static int
record_strings_inside(const struct crdt_record *r, const uint8_t *p,
    size_t n)
{
	int ok = fz_inside(r->erase.origin, p, n) &&
	    fz_inside(r->state_ver.origin, p, n) &&
	    fz_inside(r->aud.origin, p, n) &&
	    fz_inside(r->excl.origin, p, n);

	for (uint32_t i = 0; i < r->aud.n; i++)
		ok = ok && fz_inside(r->aud.ids[i], p, n);
	for (size_t i = 0; i < r->nregs; i++) {
		const struct crdt_reg *g = &r->regs[i];

		ok = ok && fz_inside(g->field, p, n) &&
		    fz_inside(g->elem, p, n) &&
		    fz_inside(g->ver.origin, p, n) &&
		    fz_inside(g->aud.origin, p, n) &&
		    (g->val.t != NBX_V_STR || fz_inside(g->val.s, p, n));
		for (uint32_t j = 0; j < g->aud.n; j++)
			ok = ok && fz_inside(g->aud.ids[j], p, n);
	}
	for (size_t i = 0; i < r->nrcpt; i++)
		ok = ok && fz_inside(r->rcpt[i].what, p, n) &&
		    fz_inside(r->rcpt[i].node, p, n);
	return ok;
}

static int
nbx_fuzz_record(const uint8_t *data, size_t size)
{
	struct nbx_str coll = nbx_str_c("case"), id = nbx_str_c("ee:1");
	struct crdt_record r, again;
	struct nbx_buf e1, e2;
	int rc;

	crdt_record_init(&r, coll, id);
	rc = crdt_record_decode(data, size, &r);
	fz_check(rc == 0 || rc == NBX_EMALFORMED || rc == NBX_ENOMEM,
	    "a known code");
	if (rc != 0) {
		fz_check(r.nregs == 0 && r.nrcpt == 0, "refused means empty");
		crdt_record_fini(&r);
		return 0;
	}
	fz_check(record_strings_inside(&r, data, size),
	    "strings borrowed from the input");
	nbx_buf_init(&e1, SIZE_MAX);
	nbx_buf_init(&e2, SIZE_MAX);
	fz_check(crdt_record_encode(&r, &e1) == 0, "a decoded record encodes");
	crdt_record_init(&again, coll, id);
	fz_check(crdt_record_decode(e1.p, e1.len, &again) == 0,
	    "its encoding decodes");
	fz_check(crdt_record_encode(&again, &e2) == 0, "and encodes again");
	fz_check(e1.len == e2.len && memcmp(e1.p, e2.p, e1.len) == 0,
	    "to the same bytes");
	for (size_t n = 0; n < e1.len; n++) {
		struct crdt_record t;

		crdt_record_init(&t, coll, id);
		fz_check(crdt_record_decode(e1.p, n, &t) == NBX_EMALFORMED,
		    "a proper prefix is refused");
		crdt_record_fini(&t);
	}
	crdt_record_fini(&again);
	crdt_record_fini(&r);
	nbx_buf_fini(&e1);
	nbx_buf_fini(&e2);
	return 0;
}

#ifdef NBX_LIBFUZZER
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return nbx_fuzz_record(data, size);
}
#endif
