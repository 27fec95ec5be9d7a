/*
 * audit_fuzz.c - libFuzzer harness for the disclosure log's reader: one
 * audit value (store__audit_read, store__audit_records), a batch entry
 * of store format 5 or an older entry of one record.
 *
 * The value comes from the node's own LMDB file, but a damaged file must
 * be refused, never overrun.  For every input, read as if stored at a
 * key: each record comes back (0) with its aseq key + i, every string
 * inside the input and within its cap, or the read stops with
 * NBX_EMALFORMED, or with NBX_ENOTFOUND past the last record; when every
 * record read, the count the writer takes from the value to number the
 * next batch is that number of records (or 0 for a value whose unused
 * names do not read), so a new batch never reuses an aseq.  A read far
 * past the end is NBX_ENOTFOUND or NBX_EMALFORMED.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "store_int.h"

/* The key the input is read at: numbers well clear of 0 and the top. */
#define AUDIT_FUZZ_KEY	1000

static int
audit_entry_ok(const struct store_audit_entry *e, const uint8_t *p,
    size_t n)
{
	int ok = e->nitems <= STORE_AUDIT_FIELDS &&
	    e->peer.n <= NBX_ID_MAX && e->coll.n <= NBX_NAME_MAX &&
	    e->id.n <= NBX_RECID_MAX && fz_inside(e->peer, p, n) &&
	    fz_inside(e->coll, p, n) && fz_inside(e->id, p, n);

	for (uint32_t i = 0; ok && i < e->nitems; i++) {
		const struct store_audit_item *it = &e->items[i];

		ok = it->field.n <= NBX_NAME_MAX && it->origin.n <= NBX_ID_MAX &&
		    it->elem.n <= NBX_STR_MAX && fz_inside(it->field, p, n) &&
		    fz_inside(it->elem, p, n) && fz_inside(it->origin, p, n);
	}
	return ok;
}

static int
nbx_fuzz_audit(const uint8_t *data, size_t size)
{
	struct store__audit_at *at = NULL;
	struct store_audit_entry *e = malloc(sizeof(*e));
	MDB_val d = { size, (void *)data };
	uint64_t count = store__audit_records(&d), got = 0;
	int rc;

	fz_check(e != NULL, "memory");
	for (;;) {
		rc = store__audit_read(&at, AUDIT_FUZZ_KEY, &d, got, e);
		fz_check(rc == 0 || rc == NBX_EMALFORMED ||
		    rc == NBX_ENOTFOUND || rc == NBX_ENOMEM, "a known code");
		if (rc != 0)
			break;
		fz_check(e->aseq == AUDIT_FUZZ_KEY + got, "numbered from the key");
		fz_check(audit_entry_ok(e, data, size),
		    "strings inside the input, within their caps");
		got++;
		fz_check(got <= size, "no more records than bytes");
	}
	if (rc == NBX_ENOTFOUND)
		fz_check(got > 0 && (count == got || count == 0),
		    "the writer counts the records the reader reads");
	rc = store__audit_read(&at, AUDIT_FUZZ_KEY, &d, got + 1 + size, e);
	fz_check(rc == NBX_ENOTFOUND || rc == NBX_EMALFORMED,
	    "nothing past the end");
	store__audit_at_free(at);
	free(e);
	return 0;
}

#ifdef NBX_LIBFUZZER
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return nbx_fuzz_audit(data, size);
}
#endif
