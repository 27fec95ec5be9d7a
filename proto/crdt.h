/*
 * crdt.h - the merged state of one record and the merge of a change into it.
 *
 * A record is a set of registers, each a version-stamped value:
 *   - state:    live / deleted, last-writer-wins on (hlc, origin);
 *   - erase:    once present the record is erased; every value is purged and
 *               only the key, the erase version and the eraser remain;
 *   - audience: the set of nodes allowed to hold audience-scoped fields,
 *               last-writer-wins;
 *   - excl:     the greatest audience version seen that excluded this node;
 *   - one register per scalar field and per set element.
 *
 * A field register is ordered by (hlc, origin, audience hlc, audience
 * origin): the same write re-sent under a newer audience supersedes the old
 * copy.  An audience-scoped register holds its value only while its audience
 * version is newer than `excl`; otherwise it is a tombstone that keeps the
 * version and drops the value.
 *
 * Laws.  For a fixed `self`, the state reached from the empty record by
 * crdt_record_merge over any finite set of changes is the same whatever the
 * order of the changes and however many times each is repeated
 * (commutative, associative, idempotent), and crdt_record_encode of it is
 * byte-identical.  Erase is absorbing: after it no change alters anything
 * but the erase version (the greatest wins).  Deleted is last-writer-wins:
 * a newer STATE live revives the record.  Once an audience version that
 * excludes `self` has been seen, every scoped value sent under an older
 * audience is dropped, now and whenever it arrives later.
 *
 * Receipts (CHANGE_RECEIPT) form a map whose values only rise (pending,
 * then done).  Erasure receipts are kept through erasure; revocation
 * receipts end with it (an erased record takes no more of them).
 *
 * Memory: a record borrows every string (collection, id, names, values,
 * node ids) from the buffers it was decoded from or the changes merged into
 * it; they must outlive the record.  Only the register array is owned:
 * crdt_record_fini frees it.
 */
#ifndef NBX_CRDT_H
#define NBX_CRDT_H

#include <stddef.h>
#include <stdint.h>

#include "change.h"

/* A version: greater (hlc, origin) wins. */
struct crdt_ver {
	uint64_t hlc;
	struct nbx_str origin;
};

enum {
	CRDT_REG_SCOPED = 1,	/* audience-scoped field */
	CRDT_REG_VALUE = 2,	/* holds a value (clear: tombstone) */
	CRDT_REG_ELEM = 4,	/* set element register */
};

struct crdt_reg {
	/* field and elem come first: they are the sort key (crdt.c) */
	struct nbx_str field;
	struct nbx_str elem;	/* set element; empty for scalar fields */
	uint32_t flags;		/* CRDT_REG_* */
	struct nbx_value val;	/* valid when CRDT_REG_VALUE */
	struct crdt_ver ver;
	struct nbx_audience aud;/* SCOPED: version; ids only with a value */
};

/*
 * A purge receipt: node `node` has purged (RECEIPT_DONE) or must purge
 * (RECEIPT_PENDING) the record's data, for an erasure or an audience
 * revocation (`what`).  Per (what, node) the greatest (state, version)
 * wins, so DONE beats PENDING.  Receipts survive erasure: they are how
 * the eraser learns that the purge reached everyone.
 */
struct crdt_receipt {
	/* what and node come first: they are the sort key (crdt.c) */
	struct nbx_str what;	/* "erase" or "revoke" */
	struct nbx_str node;
	int state;		/* RECEIPT_PENDING / RECEIPT_DONE */
	struct crdt_ver ver;
};

struct crdt_record {
	struct nbx_str coll, id;
	int erased;
	struct crdt_ver erase;
	int state;		/* REC_LIVE / REC_DELETED */
	struct crdt_ver state_ver;	/* hlc 0: never set */
	struct nbx_audience aud;	/* hlc 0: no audience */
	struct crdt_ver excl;		/* hlc 0: never excluded */
	struct crdt_reg *regs;	/* sorted by (field, elem) */
	size_t nregs, cap;
	struct crdt_receipt *rcpt;	/* sorted by (what, node) */
	size_t nrcpt, rcap;
};

/* Compares versions: <0, 0, >0. */
int crdt_ver_cmp(struct crdt_ver a, struct crdt_ver b);

/* An empty record for (coll, id); strings borrowed. */
void crdt_record_init(struct crdt_record *r, struct nbx_str coll,
    struct nbx_str id);
/* Frees the register and receipt arrays; the record may be re-initialised
 * after. */
void crdt_record_fini(struct crdt_record *r);
/*
 * Empties an initialised record and makes it the empty record for (coll,
 * id), as fini then init would, but keeps its arrays' memory for the next
 * record (one merge after another).  crdt_record_fini still frees it.
 */
void crdt_record_reset(struct crdt_record *r, struct nbx_str coll,
    struct nbx_str id);

/*
 * Merges change c (already validated against the policy) into r, as seen
 * by node `self`.  Sets *changed to 1 if r's state changed, else 0.  The
 * change's strings are borrowed by r.  Returns 0 or NBX_ENOMEM (r is then
 * unchanged).
 */
int crdt_record_merge(struct crdt_record *r, const struct change *c,
    struct nbx_str self, int *changed);

/*
 * Re-stamps every audience-scoped value with the record's current audience,
 * as the record's creator does when it sets a new audience that still
 * holds it: the values then travel under the new audience.  A value whose
 * writer is not in the new audience keeps the audience it was written
 * under (a narrower one never sends it further: policy_may_send wants the
 * peer in both), since no receiver would take its write under an audience
 * without its writer.  Returns the number of registers re-stamped.
 */
size_t crdt_record_restamp(struct crdt_record *r, struct nbx_str self);

/* Finds a register; NULL if absent.  elem empty for scalar fields. */
const struct crdt_reg *crdt_record_find(const struct crdt_record *r,
    struct nbx_str field, struct nbx_str elem);

/* Finds a receipt; NULL if absent. */
const struct crdt_receipt *crdt_record_receipt(const struct crdt_record *r,
    struct nbx_str what, struct nbx_str node);

/*
 * Appends the canonical msgpack encoding of r (everything but coll and id,
 * which form the key) to out.  Equal states give equal bytes.
 */
int crdt_record_encode(const struct crdt_record *r, struct nbx_buf *out);

/*
 * Decodes a record encoded by crdt_record_encode from buf[0..len) into r,
 * which must be initialised (crdt_record_init) with its coll and id.
 * Strings are borrowed from buf.  Returns 0, NBX_EMALFORMED or NBX_ENOMEM;
 * on error r is left empty.
 */
int crdt_record_decode(const void *buf, size_t len, struct crdt_record *r);

/*
 * Calls fn once for each change that, merged into an empty record, rebuilds
 * r's shareable state: ERASE if erased; else STATE, AUDIENCE and one FIELD
 * or ELEM change per register that holds a value; then one RECEIPT per
 * receipt.  Tombstones are not emitted.  Stops early and returns fn's value if fn returns non-zero.
 * The changes borrow from r.
 */
int crdt_record_changes(const struct crdt_record *r,
    int (*fn)(void *arg, const struct change *c), void *arg);

/*
 * The one node that authored every change crdt_record_changes would
 * emit for r (their origins are all equal): returns 1 with *author set
 * (borrowed from r); 0 if they have several origins or there is none.
 */
int crdt_record_sole_author(const struct crdt_record *r,
    struct nbx_str *author);

#endif
