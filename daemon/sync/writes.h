/*
 * writes.h - turns a client's write (a JSON object from nbxctl put, delete,
 * erase or import) into the changes store_apply takes, checked against the
 * schema first so that every refusal names the field and says what is
 * wrong.
 *
 * A write object: {"collection": C, "id": I, "fields": {F: V, ...},
 * "audience": [node, ...]}.  An id without "node:" is prefixed with this
 * node's id.  Values may be typed JSON (import) or strings (command line):
 * "12" is an integer for an int field, "yes"/"no" a bool, "a,b" a set; a
 * JSON array is a set; null or "" clears a field (a set: empties it).
 * Writing a set replaces its elements: the ones not listed are removed.
 */
#ifndef NBX_WRITES_H
#define NBX_WRITES_H

#include <jansson.h>

#include "change.h"
#include "policy.h"
#include "store.h"

enum write_op {
	WRITE_PUT = 1,
	WRITE_DELETE,
	WRITE_ERASE,
};

/*
 * The changes of one or more writes, in order.  They borrow strings from
 * the JSON objects the batch was built from and from the batch's own
 * copies; both must outlive the store_apply call.  Start from a zeroed
 * struct.
 */
struct write_batch {
	struct change *chs;
	size_t n, cap;
	char *id;		/* the last write's full record id (in owned) */
	char **owned;		/* strings made while building, owned */
	size_t nowned, nowned_cap;
};

/*
 * Appends the changes of one write of kind op for node `self` from `req`
 * to *b.  For a set field the current elements are read from st to know
 * what to remove.  On failure returns NBX_E* and writes a message into err
 * naming the collection, id or field at fault; *b then holds the earlier
 * writes' changes only.  Free with write_batch_fini either way.
 */
int write_batch_build(struct write_batch *b, enum write_op op,
    const struct policy *pol, struct store *st, const char *self,
    json_t *req, char *err, size_t errlen);

/* Makes room for n more changes: 0 or NBX_ENOMEM.  Only saves regrowth. */
int write_batch_reserve(struct write_batch *b, size_t n);

/*
 * Makes room for the changes the write objects of the JSON array `writes`
 * usually make (one per field, the record's state, its audience): 0 or
 * NBX_ENOMEM.  Set fields may make more; the batch then grows.
 */
int write_batch_reserve_for(struct write_batch *b, json_t *writes);

void write_batch_fini(struct write_batch *b);

#endif
