/*
 * policy.h - the regional schema (conf/schema.conf) and the rules derived
 * from it: which changes are valid, who may write a field, and which peer
 * may receive a field value.
 *
 * Schema file format (INI, read with inih):
 *
 *   [service]                 ; a collection: a section without a dot
 *   description = ...         ; optional, free text
 *   retain_days = 365         ; optional: the creating node erases a record
 *                             ; not changed for this many days (1-36500)
 *
 *   [service.name]            ; a field: <collection>.<field>, after its
 *   type = string             ; collection; string|int|bool|date|enum|set
 *   max = 200                 ; string: max bytes (default 256, cap
 *                             ; NBX_STR_MAX); int: max value; set: max items
 *                             ; (default 32)
 *   min = 0                   ; int only: min value
 *   values = a, b, c          ; enum: required; set: optional allowed set.
 *                             ; May continue on indented lines.
 *   elem_max = 64             ; set only: max bytes of one element
 *   share = region            ; local (default) | region | audience
 *   writers = origin          ; origin (default) | audience
 *
 * Names are 1-32 of [a-z0-9_].  Rules checked at load: writers = audience
 * needs share = audience; a set field may not be share = audience (a purged
 * element would leave its value in the register key).  Unknown keys,
 * duplicate sections and bad numbers are errors.
 *
 * The defaults are the safe ones: a field without `share` never leaves the
 * node, and without `writers` only the record's creator may change it.
 */
#ifndef NBX_POLICY_H
#define NBX_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "change.h"

enum pol_type {
	POL_STRING = 1,
	POL_INT,
	POL_BOOL,
	POL_DATE,		/* "YYYY-MM-DD", a real calendar date */
	POL_ENUM,
	POL_SET,		/* set of strings, replicated element-wise */
};

enum pol_share {
	SHARE_LOCAL = 0,
	SHARE_REGION,
	SHARE_AUDIENCE,
};

enum pol_writers {
	WRITERS_ORIGIN = 0,
	WRITERS_AUDIENCE,
};

struct pol_field {
	char name[NBX_NAME_MAX + 1];
	uint32_t name_len;	/* strlen(name), for lookups */
	enum pol_type type;
	enum pol_share share;
	enum pol_writers writers;
	int64_t min, max;	/* see the file format above */
	uint32_t elem_max;	/* set element max bytes */
	char **values;		/* enum/set allowed values, or NULL */
	size_t nvalues;
	int line;		/* line of the field's section header */
};

/* Slots of a collection's field index: a power of two. */
#define POL_FIELD_SLOTS 128

struct pol_coll {
	char name[NBX_NAME_MAX + 1];
	uint32_t name_len;	/* strlen(name), for lookups */
	struct pol_field *fields;
	size_t nfields;
	/* the fields by a hash of their name (open addressing): index + 1,
	   0 for a free slot; unused (all 0) past POL_FIELD_SLOTS / 2 fields */
	uint8_t slot[POL_FIELD_SLOTS];
	int has_audience_fields;	/* any field with share = audience */
	uint32_t retain_days;	/* erase records unchanged this long; 0 never */
	int line;
};

struct policy;

/*
 * Parses a schema: the `len` bytes at `text`, a file's contents read by
 * the caller (conf_schema_load reads the file), `name` standing for the
 * file in messages.  On success stores a new policy in *out (free with
 * policy_free) and returns 0.  On failure returns NBX_ESCHEMA or
 * NBX_ENOMEM, writes "NAME:LINE: what is wrong" into err (always
 * NUL-terminated when errlen > 0) and leaves *out NULL.
 */
int policy_load_buf(const char *text, size_t len, const char *name,
    struct policy **out, char *err, size_t errlen);

/* As policy_load_buf, over a NUL-terminated string. */
int policy_load_string(const char *text, const char *name,
    struct policy **out, char *err, size_t errlen);

/* Frees a policy; NULL is a no-op. */
void policy_free(struct policy *p);

/*
 * Appends to out the schema in a canonical form (msgpack: collections by
 * name, each with retain_days and its fields by name, each field with
 * every rule that decides validity or sharing), so that two schema files
 * that differ only in order, comments, descriptions or spacing give the
 * same bytes.  Nodes compare a digest of it (the sync HELLO).  0 or
 * NBX_ENOMEM / NBX_ETOOBIG.
 */
int policy_canonical(const struct policy *p, struct nbx_buf *out);

/* Collections in file order. The pointers live as long as the policy. */
size_t policy_ncoll(const struct policy *p);
const struct pol_coll *policy_coll_at(const struct policy *p, size_t i);

/* Lookups; NULL when unknown.  Pointers live as long as the policy. */
const struct pol_coll *policy_coll(const struct policy *p,
    struct nbx_str name);
const struct pol_field *policy_field(const struct pol_coll *c,
    struct nbx_str name);

/*
 * Checks a scalar value against field f (type and limits).  NBX_V_NIL is
 * accepted for every scalar type (it clears the field).  For POL_SET use
 * policy_elem_check.  Returns 0, NBX_ETYPE or NBX_ELIMIT.
 */
int policy_value_check(const struct pol_field *f, const struct nbx_value *v);

/* Checks one element of a set field.  Returns 0, NBX_ETYPE or NBX_ELIMIT. */
int policy_elem_check(const struct pol_field *f, struct nbx_str elem);

/*
 * "May origin O write field f of record `id`?"  writers = origin: O must be
 * the record's creator (nbx_id_creator(id)).  writers = audience: O must be
 * in `aud`, the audience the write was made under.  Returns 0 or
 * NBX_EWRITER.
 */
int policy_may_write(const struct pol_field *f, struct nbx_str origin,
    struct nbx_str id, const struct nbx_audience *aud);

/*
 * "May the value of field f go to peer P?"  share = local: never.
 * share = region: always.  share = audience: only if P is in `value_aud`,
 * the audience the value was written or sent under, and in `rec_aud`, the
 * record's current audience at this node.  Returns 1 or 0.
 */
int policy_may_send(const struct pol_field *f,
    const struct nbx_audience *value_aud, const struct nbx_audience *rec_aud,
    struct nbx_str peer);

struct crdt_record;

/* policy_may_send_change's answers. */
enum policy_send {
	POLICY_SEND_NO = 0,		/* never to this peer */
	POLICY_SEND_YES = 1,		/* to this peer */
	POLICY_SEND_IF_DISCLOSED = 2,	/* only if the peer was disclosed
					   the record before (the caller
					   knows, from the disclosure log) */
};

/*
 * "May change c of record r, as this node holds it, go to peer P?"  The
 * one place that decides what leaves a node; the egress filter only
 * applies the answers.  pc is r's collection.  with_data says whether
 * something else of r (a field, an element or its audience) goes to P in
 * the same batch; it matters for the record's STATE only.
 *   FIELD/ELEM: a known field of the right kind whose value
 *               policy_may_send permits (never a local field); else NO;
 *   AUDIENCE:   YES to a member of r's audience and to a node one of r's
 *               receipts names (the creator's pending revocation names
 *               each node it removed: that is how a removed node learns
 *               it, from any holder); else IF_DISCLOSED;
 *   STATE:      YES with_data, else IF_DISCLOSED;
 *   ERASE:      YES when the collection has a region field (every peer
 *               may hold part of it) or a pending erasure receipt of r
 *               names P (every holder names itself in one), else
 *               IF_DISCLOSED;
 *   RECEIPT:    YES as ERASE, to r's audience, to r's creator, and to a
 *               node r's receipts name (as the purging node or as a
 *               receipt's origin: either way it held r), so receipts go
 *               back along the path the erasure came; else IF_DISCLOSED.
 */
enum policy_send policy_may_send_change(const struct pol_coll *pc,
    const struct crdt_record *r, const struct change *c, struct nbx_str peer,
    int with_data);

/*
 * Validates a change against the schema, as this node `self` sees it.
 * `remote` is 1 for a change received from a peer, 0 for a local write.
 * Checks, in order: the record id ("<creator>:<rest>", creator a valid
 * node id, at most NBX_RECID_MAX bytes), the collection, then by kind:
 *  - FIELD/ELEM: the field exists and its type matches the kind; the value
 *    passes policy_value_check / policy_elem_check; a share = local field
 *    may not arrive remotely (NBX_ELOCAL); an audience-scoped field carries
 *    a non-empty audience that holds `self` (NBX_EAUDIENCE) and other
 *    fields carry none (NBX_EINVAL); the audience's origin must be the
 *    record's creator, who alone sets audiences (NBX_EAUDIENCE);
 *    policy_may_write.
 *  - STATE: val is REC_LIVE or REC_DELETED; origin is the creator.
 *  - AUDIENCE: origin is the creator; the audience is non-empty, holds
 *    valid node ids, includes the creator, and its hlc/origin equal the
 *    change's.  (It need not hold `self`: that is how removal arrives.)
 *  - ERASE: any origin.
 *  - RECEIPT: field "erase" or "revoke", elem a node id, val RECEIPT_*;
 *    RECEIPT_DONE only from that node itself (origin == elem).
 * The origin must be a valid node id.  On success stores the field (or
 * NULL for record-level kinds) in *fout if fout is non-NULL.  Returns 0 or
 * the NBX_E* reason.
 */
int policy_check_change(const struct policy *p, const struct change *c,
    struct nbx_str self, int remote, const struct pol_field **fout);

/*
 * What policy_check_change found valid of the last change it was given
 * with this memo: its record id, origin and collection.  A batch lists a
 * record's changes together, so the next change most often names the
 * same three, and their checks (the id's creator and bytes, the origin,
 * the collection's lookup) need not run again.  Zero it before first use;
 * it borrows the strings of the change it was filled from, which must
 * stay valid as long as the memo is used.
 */
struct policy_memo {
	struct nbx_str coll, id, origin, creator;
	const struct pol_coll *pc;
};

/*
 * policy_check_change with a memo (see above); the same answer for every
 * change as without it.
 */
int policy_check_change_memo(const struct policy *p, const struct change *c,
    struct nbx_str self, int remote, const struct pol_field **fout,
    struct policy_memo *m);

#endif
