/*
 * writes.c - client writes (JSON) to changes, with messages that name the
 * field at fault.  See writes.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nbx_err.h"
#include "writes.h"

int
write_batch_reserve(struct write_batch *b, size_t n)
{
	struct change *chs;

	if (n <= b->cap - b->n)
		return 0;
	if (n > SIZE_MAX / sizeof(*chs) - b->n ||
	    (chs = realloc(b->chs, (b->n + n) * sizeof(*chs))) == NULL)
		return NBX_ENOMEM;
	b->chs = chs;
	b->cap = b->n + n;
	return 0;
}

int
write_batch_reserve_for(struct write_batch *b, json_t *writes)
{
	size_t i, n = 0;
	json_t *w;

	json_array_foreach(writes, i, w)
		n += json_object_size(json_object_get(w, "fields")) + 2;
	return write_batch_reserve(b, n);
}

/* Appends a copy of proto, for the caller to finish. */
static struct change *
push(struct write_batch *b, const struct change *proto)
{
	if (b->n == b->cap &&
	    write_batch_reserve(b, b->cap ? b->cap : 16) != 0)
		return NULL;
	change_copy(&b->chs[b->n], proto);
	return &b->chs[b->n++];
}

static char *
own(struct write_batch *b, const char *p, size_t n)
{
	char *s;

	if (b->nowned == b->nowned_cap) {	/* a batch may hold many writes */
		size_t cap = b->nowned_cap ? b->nowned_cap * 2 : 16;
		char **o = realloc(b->owned, cap * sizeof(*o));

		if (o == NULL)
			return NULL;
		b->owned = o;
		b->nowned_cap = cap;
	}
	if ((s = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(s, p, n);
	s[n] = 0;
	b->owned[b->nowned++] = s;
	return s;
}

void
write_batch_fini(struct write_batch *b)
{
	for (size_t i = 0; i < b->nowned; i++)
		free(b->owned[i]);
	free(b->owned);
	free(b->chs);
	memset(b, 0, sizeof(*b));
}

static const char *
type_name(const struct pol_field *f)
{
	switch (f->type) {
	case POL_STRING: return "a string";
	case POL_INT: return "an integer";
	case POL_BOOL: return "a boolean (true/false, yes/no)";
	case POL_DATE: return "a date (YYYY-MM-DD)";
	case POL_ENUM: return "one of the listed values";
	case POL_SET: return "a set (JSON array or comma-separated list)";
	}
	return "a value";
}

/* "a, b, c" of an enum's or set's allowed values, for messages. */
static void
values_text(const struct pol_field *f, char *out, size_t len)
{
	size_t off = 0;

	out[0] = 0;
	for (size_t i = 0; i < f->nvalues && off + 1 < len; i++)
		off += (size_t)snprintf(out + off, len - off, "%s%s",
		    i ? ", " : "", f->values[i]);
}

static int
limit_msg(const struct pol_field *f, const char *coll, char *err,
    size_t errlen)
{
	char vals[512];

	switch (f->type) {
	case POL_INT:
		return nbx_errf(err, errlen, NBX_ELIMIT,
		    "%s.%s: value outside %" PRId64 "..%" PRId64, coll,
		    f->name, f->min, f->max);
	case POL_ENUM:
		values_text(f, vals, sizeof(vals));
		return nbx_errf(err, errlen, NBX_ELIMIT,
		    "%s.%s: value must be one of: %s", coll, f->name, vals);
	case POL_DATE:
		return nbx_errf(err, errlen, NBX_ELIMIT,
		    "%s.%s: not a valid date (YYYY-MM-DD)", coll, f->name);
	case POL_SET:
		if (f->nvalues) {
			values_text(f, vals, sizeof(vals));
			return nbx_errf(err, errlen, NBX_ELIMIT,
			    "%s.%s: elements must be among: %s (at most "
			    "%u bytes each)", coll, f->name, vals,
			    f->elem_max);
		}
		return nbx_errf(err, errlen, NBX_ELIMIT,
		    "%s.%s: elements must be 1-%u bytes of UTF-8", coll,
		    f->name, f->elem_max);
	default:
		return nbx_errf(err, errlen, NBX_ELIMIT,
		    "%s.%s: text longer than %" PRId64 " bytes or not UTF-8",
		    coll, f->name, f->max);
	}
}

/* Parses a whole string as a signed decimal integer. */
static int
parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != 0)
		return -1;
	*out = v;
	return 0;
}

static int
parse_bool(const char *s, int64_t *out)
{
	if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1"))
		*out = 1;
	else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") ||
	    !strcmp(s, "0"))
		*out = 0;
	else
		return -1;
	return 0;
}

/* Converts a JSON value to a scalar value for field f. */
static int
scalar_value(const struct pol_field *f, json_t *v, struct nbx_value *out,
    const char *coll, char *err, size_t errlen)
{
	const char *s;

	memset(out, 0, sizeof(*out));
	if (json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0))
		return 0;	/* NBX_V_NIL: clear the field */
	switch (f->type) {
	case POL_INT:
		out->t = NBX_V_INT;
		if (json_is_integer(v)) {
			out->i = json_integer_value(v);
			return 0;
		}
		if (json_is_string(v) && parse_int(json_string_value(v),
		    &out->i) == 0)
			return 0;
		break;
	case POL_BOOL:
		out->t = NBX_V_BOOL;
		if (json_is_boolean(v)) {
			out->i = json_is_true(v);
			return 0;
		}
		if (json_is_string(v) && parse_bool(json_string_value(v),
		    &out->i) == 0)
			return 0;
		break;
	default:
		if (!json_is_string(v))
			break;
		s = json_string_value(v);
		out->t = NBX_V_STR;
		out->s.p = s;
		out->s.n = (uint32_t)json_string_length(v);
		return 0;
	}
	return nbx_errf(err, errlen, NBX_ETYPE, "%s.%s: expected %s", coll,
	    f->name, type_name(f));
}

struct elem_list {
	struct nbx_str *e;
	size_t n;
};

/* Collects the elements of a set value: JSON array or "a, b" string. */
static int
set_elems(struct write_batch *b, const struct pol_field *f, json_t *v,
    struct elem_list *out, const char *coll, char *err, size_t errlen)
{
	size_t cap = 0;

	out->e = NULL;
	out->n = 0;
	if (json_is_array(v)) {
		cap = json_array_size(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);

		cap = 1;
		for (; *s; s++)
			cap += *s == ',';
	} else if (!json_is_null(v)) {
		return nbx_errf(err, errlen, NBX_ETYPE, "%s.%s: expected %s",
		    coll, f->name, type_name(f));
	}
	if (cap > (size_t)f->max)
		return nbx_errf(err, errlen, NBX_ELIMIT,
		    "%s.%s: more than %" PRId64 " elements", coll, f->name,
		    f->max);
	if (cap && (out->e = calloc(cap, sizeof(*out->e))) == NULL)
		return NBX_ENOMEM;
	if (json_is_array(v)) {
		for (size_t i = 0; i < cap; i++) {
			json_t *x = json_array_get(v, i);

			if (!json_is_string(x)) {
				free(out->e);
				return nbx_errf(err, errlen, NBX_ETYPE,
				    "%s.%s: set elements must be strings",
				    coll, f->name);
			}
			out->e[out->n++] = (struct nbx_str){ json_string_value(x),
			    (uint32_t)json_string_length(x) };
		}
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);

		while (*s) {
			const char *end = strchr(s, ','), *a = s, *z;

			if (end == NULL)
				end = s + strlen(s);
			z = end;
			while (a < z && (*a == ' ' || *a == '\t'))
				a++;
			while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
				z--;
			if (z > a) {
				char *c = own(b, a, (size_t)(z - a));

				if (c == NULL) {
					free(out->e);
					return NBX_ENOMEM;
				}
				out->e[out->n++] = (struct nbx_str){ c,
				    (uint32_t)(z - a) };
			}
			s = *end ? end + 1 : end;
		}
	}
	for (size_t i = 0; i < out->n; i++) {
		if (policy_elem_check(f, out->e[i]) != 0) {
			free(out->e);
			return limit_msg(f, coll, err, errlen);
		}
	}
	return 0;
}

/* Adds ELEM changes making field f of the record exactly `want`. */
static int
set_changes(struct write_batch *b, const struct change *proto,
    const struct elem_list *want, const struct crdt_record *cur)
{
	struct change *c;

	for (size_t i = 0; i < want->n; i++) {
		if ((c = push(b, proto)) == NULL)
			return NBX_ENOMEM;
		c->kind = CHANGE_ELEM;
		c->elem = want->e[i];
		c->val.t = NBX_V_BOOL;
		c->val.i = 1;
	}
	for (size_t i = 0; cur && i < cur->nregs; i++) {
		const struct crdt_reg *g = &cur->regs[i];
		size_t j;
		char *e;

		if (!(g->flags & CRDT_REG_ELEM) || !(g->flags & CRDT_REG_VALUE) ||
		    !g->val.i || !nbx_str_eq(g->field, proto->field))
			continue;
		for (j = 0; j < want->n && !nbx_str_eq(want->e[j], g->elem); j++)
			;
		if (j < want->n)
			continue;
		/* the record's strings die with the read txn: copy */
		if ((e = own(b, g->elem.p, g->elem.n)) == NULL ||
		    (c = push(b, proto)) == NULL)
			return NBX_ENOMEM;
		c->kind = CHANGE_ELEM;
		c->elem = (struct nbx_str){ e, g->elem.n };
		c->val.t = NBX_V_BOOL;
		c->val.i = 0;
	}
	return 0;
}

/* A field of a write: its name and its JSON value. */
struct named {
	const char *name;
	json_t *v;
};

/* Insertion sort by name: a write has a few fields, often in order. */
static void
named_sort(struct named *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct named x = a[i];
		const unsigned char *p = (const unsigned char *)x.name;
		size_t j = i;

		for (; j > 0; j--) {
			const unsigned char *q = (const unsigned char *)
			    a[j - 1].name;

			if (q[0] < p[0] || (q[0] == p[0] &&
			    strcmp((const char *)q, (const char *)p) <= 0))
				break;
			a[j] = a[j - 1];
		}
		a[j] = x;
	}
}

/*
 * The fields of a write in name order, the order of a record's registers
 * (crdt.c), so that the merge appends each one past the last instead of
 * searching and moving the ones after it.  In `room` when they fit, else
 * in *heap (free it).  NULL when out of memory.
 */
static struct named *
fields_sorted(json_t *fields, struct named *room, size_t nroom,
    struct named **heap, size_t *n)
{
	struct named *a = room;
	const char *name;
	json_t *v;
	size_t i = 0;

	*heap = NULL;
	*n = json_object_size(fields);
	if (*n > nroom && (a = *heap = calloc(*n, sizeof(*a))) == NULL)
		return NULL;
	json_object_foreach(fields, name, v) {
		a[i].name = name;
		a[i++].v = v;
	}
	named_sort(a, i);
	*n = i;
	return a;
}

static int
add_fields(struct write_batch *b, const struct pol_coll *pc,
    const struct change *proto, json_t *fields, struct store *st,
    char *err, size_t errlen)
{
	const char *coll = pc->name;
	struct store_rtxn *t = NULL;
	struct crdt_record cur;
	struct named room[32], *heap, *all;
	size_t n;
	int have = 0, rc = 0;

	if (!json_is_object(fields))
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "\"fields\" must be an object of field: value");
	if ((all = fields_sorted(fields, room, 32, &heap, &n)) == NULL)
		return NBX_ENOMEM;
	for (size_t k = 0; k < n; k++) {
		const char *name = all[k].name;
		json_t *v = all[k].v;
		const struct pol_field *f = policy_field(pc, nbx_str_c(name));
		struct change *c;

		if (f == NULL) {
			char known[512];
			size_t off = 0;

			known[0] = 0;
			for (size_t i = 0; i < pc->nfields && off + 1 <
			    sizeof(known); i++)
				off += (size_t)snprintf(known + off,
				    sizeof(known) - off, "%s%s", i ? ", " : "",
				    pc->fields[i].name);
			rc = nbx_errf(err, errlen, NBX_EFIELD,
			    "%s has no field '%s' (fields: %s)", coll, name,
			    known);
			goto out;
		}
		if (f->type == POL_SET) {
			struct elem_list want;
			struct change p = *proto;

			if ((rc = set_elems(b, f, v, &want, coll, err,
			    errlen)) != 0)
				goto out;
			if (!have && st) {
				if ((rc = store_rtxn_begin(st, &t)) != 0) {
					free(want.e);
					goto out;
				}
				have = store_record_get(t, proto->coll,
				    proto->id, &cur) == 0;
				if (!have)
					crdt_record_fini(&cur);
			}
			p.field = nbx_str_c(f->name);
			rc = set_changes(b, &p, &want, have ? &cur : NULL);
			free(want.e);
			if (rc != 0)
				goto out;
			continue;
		}
		if ((c = push(b, proto)) == NULL) {
			rc = NBX_ENOMEM;
			goto out;
		}
		c->kind = CHANGE_FIELD;
		c->field = nbx_str_c(f->name);
		if ((rc = scalar_value(f, v, &c->val, coll, err, errlen)) != 0)
			goto out;
		if (policy_value_check(f, &c->val) != 0) {
			rc = limit_msg(f, coll, err, errlen);
			goto out;
		}
	}
out:
	if (have)
		crdt_record_fini(&cur);
	store_rtxn_end(t);
	free(heap);
	return rc;
}

static int
add_audience(struct write_batch *b, const struct change *proto, json_t *aud,
    const char *self, char *err, size_t errlen)
{
	struct change *c;
	size_t i;
	json_t *x;
	int has_creator = 0;
	struct nbx_str creator = nbx_id_creator(proto->id);

	if (!json_is_array(aud) || json_array_size(aud) == 0 ||
	    json_array_size(aud) > NBX_AUD_MAX)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "audience must be a list of 1-%d node ids", NBX_AUD_MAX);
	if (!nbx_str_eq(creator, nbx_str_c(self)))
		return nbx_errf(err, errlen, NBX_EWRITER,
		    "only %.*s, which created %.*s, may set its audience",
		    (int)creator.n, creator.p, (int)proto->id.n, proto->id.p);
	if ((c = push(b, proto)) == NULL)
		return NBX_ENOMEM;
	c->kind = CHANGE_AUDIENCE;
	json_array_foreach(aud, i, x) {
		struct nbx_str id = { json_string_value(x),
		    (uint32_t)json_string_length(x) };

		if (!json_is_string(x) || !nbx_node_id_valid(id))
			return nbx_errf(err, errlen, NBX_EINVAL,
			    "audience: '%s' is not a node id (1-32 of a-z, 0-9, -)",
			    json_is_string(x) ? json_string_value(x) : "?");
		has_creator |= nbx_str_eq(id, creator);
		c->aud.ids[c->aud.n++] = id;
	}
	if (!has_creator) {
		/* the creator always holds it, in a slot of its own */
		if (c->aud.n >= NBX_AUD_MAX)
			return nbx_errf(err, errlen, NBX_EINVAL,
			    "audience too large");
		c->aud.ids[c->aud.n++] = creator;
	}
	return 0;
}

static int
build_one(struct write_batch *b, enum write_op op, const struct policy *pol,
    struct store *st, const char *self, json_t *req, char *err,
    size_t errlen)
{
	const char *coll = json_string_value(json_object_get(req, "collection"));
	const char *id = json_string_value(json_object_get(req, "id"));
	json_t *fields = json_object_get(req, "fields");
	json_t *aud = json_object_get(req, "audience");
	const struct pol_coll *pc;
	struct change proto, *c;
	int rc;

	b->id = NULL;
	if (coll == NULL || id == NULL || *id == 0)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "a write needs \"collection\" and \"id\" strings");
	if ((pc = policy_coll(pol, nbx_str_c(coll))) == NULL)
		return nbx_errf(err, errlen, NBX_ECOLL,
		    "unknown collection '%s'", coll);
	if (strchr(id, ':') == NULL) {
		char full[2 * NBX_RECID_MAX + 2];
		int n = snprintf(full, sizeof(full), "%s:%s", self, id);

		if (n < 0 || (size_t)n >= sizeof(full))
			return nbx_errf(err, errlen, NBX_EINVAL,
			    "id '%s' is longer than %d bytes", id,
			    NBX_RECID_MAX);
		b->id = own(b, full, (size_t)n);
	} else {
		b->id = own(b, id, strlen(id));
	}
	if (b->id == NULL)
		return NBX_ENOMEM;
	if (strlen(b->id) > NBX_RECID_MAX)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "id '%s' is longer than %d bytes", b->id, NBX_RECID_MAX);
	memset(&proto, 0, sizeof(proto));
	proto.coll = nbx_str_c(pc->name);
	proto.id = nbx_str_c(b->id);
	if (op == WRITE_ERASE || op == WRITE_DELETE) {
		if ((c = push(b, &proto)) == NULL)
			return NBX_ENOMEM;
		c->kind = op == WRITE_ERASE ? CHANGE_ERASE : CHANGE_STATE;
		c->val.t = NBX_V_INT;
		c->val.i = REC_DELETED;
		if (op == WRITE_ERASE)
			memset(&c->val, 0, sizeof(c->val));
		return 0;
	}
	if (aud && !json_is_null(aud) &&
	    (rc = add_audience(b, &proto, aud, self, err, errlen)) != 0)
		return rc;
	if (nbx_str_eq(nbx_id_creator(proto.id), nbx_str_c(self))) {
		/* the creator's write makes the record live again */
		if ((c = push(b, &proto)) == NULL)
			return NBX_ENOMEM;
		c->kind = CHANGE_STATE;
		c->val.t = NBX_V_INT;
		c->val.i = REC_LIVE;
	}
	if (fields && (rc = add_fields(b, pc, &proto, fields, st, err,
	    errlen)) != 0)
		return rc;
	return 0;
}

int
write_batch_build(struct write_batch *b, enum write_op op,
    const struct policy *pol, struct store *st, const char *self,
    json_t *req, char *err, size_t errlen)
{
	size_t n0 = b->n;
	int rc = build_one(b, op, pol, st, self, req, err, errlen);

	if (rc != 0)
		b->n = n0;	/* none of this write's changes stay */
	return rc;
}
