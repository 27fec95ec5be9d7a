/*
 * schema_fuzz.c - libFuzzer harness for the schema loader
 * (policy_load_string, proto/policy.h) on arbitrary text.
 *
 * The error buffer is a heap block whose size comes from the input, so
 * that a message written past a short buffer is caught.  A schema that
 * loads must keep the rules the loader promises (names, types, limits,
 * writers = audience only with share = audience, no audience-scoped
 * set), every collection and field must be found by name, and the
 * values an enum or set lists must pass the value checks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

static int
schema_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > NBX_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

static void
schema_field_check(const struct pol_coll *c, const struct pol_field *f)
{
	static const char *const ids[] = { "ee", "lv" };
	struct nbx_audience aud = { .n = 2 };
	struct nbx_value v = { .t = NBX_V_NIL };
	struct nbx_str name = nbx_str_c(f->name);

	aud.ids[0] = nbx_str_c(ids[0]);
	aud.ids[1] = nbx_str_c(ids[1]);
	fz_check(schema_name_ok(f->name), "field name");
	fz_check(policy_field(c, name) == f, "field found by name");
	fz_check(f->type >= POL_STRING && f->type <= POL_SET, "field type");
	fz_check(f->share >= SHARE_LOCAL && f->share <= SHARE_AUDIENCE &&
	    f->writers >= WRITERS_ORIGIN && f->writers <= WRITERS_AUDIENCE,
	    "share and writers");
	fz_check(f->writers != WRITERS_AUDIENCE || f->share == SHARE_AUDIENCE,
	    "writers = audience needs share = audience");
	fz_check(f->share != SHARE_AUDIENCE || c->has_audience_fields,
	    "has_audience_fields");
	fz_check(f->nvalues == 0 || f->values != NULL, "values");
	switch (f->type) {
	case POL_STRING:
		fz_check(f->max >= 1 && f->max <= NBX_STR_MAX, "string max");
		break;
	case POL_INT:
		fz_check(f->min <= f->max, "int min <= max");
		v.t = NBX_V_INT;
		v.i = f->min;
		fz_check(policy_value_check(f, &v) == 0, "int min passes");
		v.i = f->max;
		fz_check(policy_value_check(f, &v) == 0, "int max passes");
		break;
	case POL_ENUM:
		fz_check(f->nvalues >= 1, "enum values");
		v.t = NBX_V_STR;
		for (size_t i = 0; i < f->nvalues; i++) {
			v.s = nbx_str_c(f->values[i]);
			fz_check(policy_value_check(f, &v) == 0,
			    "enum value passes");
		}
		break;
	case POL_SET:
		fz_check(f->share != SHARE_AUDIENCE, "no audience set");
		fz_check(f->max >= 1 && f->max <= 1024 && f->elem_max >= 1 &&
		    f->elem_max <= NBX_STR_MAX, "set limits");
		for (size_t i = 0; i < f->nvalues; i++)
			fz_check(policy_elem_check(f, nbx_str_c(f->values[i]))
			    == 0, "set value passes");
		fz_check(policy_elem_check(f, (struct nbx_str){ "", 0 }) != 0,
		    "empty element refused");
		break;
	default:
		break;
	}
	v.t = NBX_V_NIL;
	fz_check(policy_value_check(f, &v) == (f->type == POL_SET ? NBX_ETYPE :
	    0), "nil clears a scalar");
	fz_check(policy_may_send(f, &aud, &aud, NBX_STR("lv")) ==
	    (f->share != SHARE_LOCAL), "may_send");
	fz_check(policy_may_send(f, NULL, NULL, NBX_STR("lv")) ==
	    (f->share == SHARE_REGION), "may_send without audience");
	(void)policy_may_write(f, NBX_STR("ee"), NBX_STR("ee:1"), &aud);
}

int nbx_fuzz_schema(const uint8_t *data, size_t size);

int
nbx_fuzz_schema(const uint8_t *data, size_t size)
{
	char *text = fz_text(data, size);
	size_t errlen = size % 2 ? 1 + size % 48 : 320;
	char *err = malloc(errlen);
	struct policy *p = (struct policy *)1;
	int rc;

	fz_check(err != NULL, "malloc");
	rc = policy_load_string(text, "fuzz.conf", &p, err, errlen);
	if (rc != 0) {
		fz_check(rc == NBX_ESCHEMA || rc == NBX_ENOMEM, "load code");
		fz_check(p == NULL, "no policy on failure");
		fz_check(memchr(err, 0, errlen) != NULL, "err terminated");
		fz_check(errlen < 16 || strncmp(err, "fuzz.conf", 9) == 0 ||
		    rc == NBX_ENOMEM, "err names the file");
		goto out;
	}
	fz_check(p != NULL, "policy");
	for (size_t i = 0; i < policy_ncoll(p); i++) {
		const struct pol_coll *c = policy_coll_at(p, i);
		int aud = 0;

		fz_check(schema_name_ok(c->name), "collection name");
		fz_check(policy_coll(p, nbx_str_c(c->name)) == c,
		    "collection found by name");
		for (size_t j = 0; j < c->nfields; j++) {
			schema_field_check(c, &c->fields[j]);
			aud |= c->fields[j].share == SHARE_AUDIENCE;
		}
		fz_check(aud == c->has_audience_fields, "has_audience_fields");
	}
	fz_check(policy_coll(p, NBX_STR("no such collection!")) == NULL,
	    "unknown collection");
	policy_free(p);
out:
	free(err);
	free(text);
	return 0;
}

#ifdef NBX_LIBFUZZER
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return nbx_fuzz_schema(data, size);
}
#endif
