/*
 * recview.h - what a person sees of a merged record: its visible field
 * values as JSON, with optional per-field metadata.  Used by nbxq (and
 * anything else that prints records).
 */
#ifndef NBX_RECVIEW_H
#define NBX_RECVIEW_H

#include <jansson.h>

#include "crdt.h"
#include "policy.h"

/*
 * The record as {"collection", "id", "state", "fields": {name: value}}; a
 * set is an array of its present elements; purged values are absent.
 * With meta, "meta": {field: {"time", "hlc", "origin", "audience"}} and
 * the record's audience are added.  Returns a new reference or NULL.
 */
json_t *recview_json(const struct crdt_record *r, int meta);

/* "live", "deleted" or "erased". */
const char *recview_state(const struct crdt_record *r);

/* Renders a field's visible value as text (sets joined with ","); "" if
 * absent.  Writes at most len bytes. */
void recview_text(const struct crdt_record *r, const char *field, char *out,
    size_t len);

#endif
