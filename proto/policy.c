/*
 * policy.c - the regional schema and the rules derived from it.
 *
 * Loads conf/schema.conf (the only I/O in this file) into collections and
 * typed fields, then answers three questions for the rest of nbx: is this
 * change valid here (policy_check_change), may this origin write this
 * field (policy_may_write), and may this value go to that peer
 * (policy_may_send).  The answers decide what leaves a node, so every
 * default is the safe one and every doubtful input is refused.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crdt.h"
#include "ini_lines.h"
#include "nbx_err.h"
#include "mpwrite.h"
#include "policy.h"

#define STRING_MAX_DEFAULT	256
#define SET_MAX_DEFAULT		32
#define SET_MAX_CAP		1024	/* elements in one set */
#define ELEM_MAX_DEFAULT	256

struct policy {
	struct pol_coll *colls;
	size_t ncoll;
};

/* The keys of a field section. */
enum fkey {
	FK_TYPE, FK_MAX, FK_MIN, FK_VALUES, FK_ELEM_MAX, FK_SHARE, FK_WRITERS,
	FK_N
};

/* The keys seen in the current field section: lines (0 if absent) and
   numeric values. */
struct field_keys {
	int line[FK_N];
	int64_t num[FK_N];
};

struct load {
	struct nbx_ini ini;
	struct policy *p;
	struct pol_coll *coll;		/* current section's collection */
	struct pol_field *field;	/* current field, NULL in [coll] */
	int desc_line;			/* [coll]: line of 'description' */
	struct field_keys k;
	const char *last_key;		/* key a continuation line extends */
	int nomem;
};

/* ------------------------------------------------------------------ */
/* Small checks shared by the loader and the validators               */
/* ------------------------------------------------------------------ */

/* 1 if s[0..n) is a schema name: 1-32 of [a-z0-9_]. */
static int
name_valid(const char *s, size_t n)
{
	if (n == 0 || n > NBX_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/*
 * 1 if s is well-formed UTF-8 (no overlong forms, surrogates or code
 * points past U+10FFFF) without NUL bytes.
 */
static int
utf8_valid(struct nbx_str s)
{
	const unsigned char *p = (const unsigned char *)s.p, *end = p + s.n;
	uint32_t cp, need;

	/* eight bytes at a time while they are ASCII and none is zero (the
	   zero test: a byte's high bit set by the borrow of subtracting 1) */
	while (end - p >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		if (((w | ((w - 0x0101010101010101ull) & ~w)) &
		    0x8080808080808080ull) != 0)
			break;
		p += 8;
	}
	while (p < end) {
		if (*p < 0x80) {
			if (*p++ == 0)
				return 0;
			continue;
		}
		need = *p >= 0xF0 ? 3 : *p >= 0xE0 ? 2 : 1;
		if (*p < 0xC2 || *p > 0xF4 || (size_t)(end - p) <= need)
			return 0;
		cp = *p++ & (0x3Fu >> need);
		for (uint32_t k = 0; k < need; k++, p++) {
			if ((*p & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (*p & 0x3F);
		}
		if (cp < (need == 1 ? 0x80u : need == 2 ? 0x800u : 0x10000u) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
	}
	return 1;
}

/* 1 if the C string c holds exactly the bytes of s (no strlen first). */
static int
cstr_eq(const char *c, struct nbx_str s)
{
	for (uint32_t i = 0; i < s.n; i++)
		if (c[i] == 0 || c[i] != s.p[i])
			return 0;
	return c[s.n] == 0;
}

/* 1 if s is "YYYY-MM-DD", a real date of the Gregorian calendar. */
static int
date_valid(struct nbx_str s)
{
	static const int mdays[12] =
	    { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int v[3] = { 0, 0, 0 }, leap;

	if (s.n != 10 || s.p[4] != '-' || s.p[7] != '-')
		return 0;
	for (int i = 0, k = 0; i < 10; i++) {
		if (i == 4 || i == 7)
			k++;
		else if (s.p[i] < '0' || s.p[i] > '9')
			return 0;
		else
			v[k] = v[k] * 10 + (s.p[i] - '0');
	}
	leap = (v[0] % 4 == 0 && v[0] % 100 != 0) || v[0] % 400 == 0;
	return v[0] >= 1 && v[1] >= 1 && v[1] <= 12 && v[2] >= 1 &&
	    v[2] <= mdays[v[1] - 1] + (v[1] == 2 && leap);
}

static int
in_values(const struct pol_field *f, struct nbx_str s)
{
	for (size_t i = 0; i < f->nvalues; i++)
		if (cstr_eq(f->values[i], s))
			return 1;
	return 0;
}

/*
 * 1 if a holds 1-NBX_AUD_MAX valid node ids.  Order and duplicates are
 * not policy's concern: the CRDT normalises id lists when it merges.
 */
static int
audience_valid(const struct nbx_audience *a)
{
	if (a->n == 0 || a->n > NBX_AUD_MAX)
		return 0;
	for (uint32_t i = 0; i < a->n; i++)
		if (!nbx_node_id_valid(a->ids[i]))
			return 0;
	return 1;
}

/*
 * 1 if id is "<creator>:<rest>": creator a valid node id, rest non-empty,
 * at most NBX_RECID_MAX bytes in all, valid UTF-8 without control bytes
 * (ids are printed by the tools and carried in JSON).
 */
static int
record_id_valid(struct nbx_str id)
{
	struct nbx_str creator = nbx_id_creator(id);
	unsigned char high = 0;

	if (id.n > NBX_RECID_MAX || !nbx_node_id_valid(creator) ||
	    creator.n + 1 >= id.n)
		return 0;
	/* one pass for the usual all-ASCII id; UTF-8 is checked if not */
	for (uint32_t i = 0; i < id.n; i++) {
		unsigned char c = (unsigned char)id.p[i];

		if (c < 0x20 || c == 0x7F)
			return 0;
		high |= c;
	}
	return high < 0x80 || utf8_valid(id);
}

/* ------------------------------------------------------------------ */
/* Loading                                                            */
/* ------------------------------------------------------------------ */

static const char *const fkey_names[FK_N + 1] = { "type", "max", "min",
    "values", "elem_max", "share", "writers", NULL };
static const char *const type_words[] =
    { "string", "int", "bool", "date", "enum", "set", NULL };
static const char *const share_words[] =
    { "local", "region", "audience", NULL };
static const char *const writers_words[] = { "origin", "audience", NULL };

#define T(t)	(1u << (t))
/* The field types each key applies to (0: all), and how to say so. */
static const unsigned fkey_types[FK_N] = { 0, T(POL_STRING) | T(POL_INT) |
    T(POL_SET), T(POL_INT), T(POL_ENUM) | T(POL_SET), T(POL_SET), 0, 0 };
static const char *const fkey_types_text[FK_N] = { NULL,
    "string, int and set fields", "int fields", "enum and set fields",
    "set fields", NULL, NULL };
/* Keys whose value is one word of a list. */
static const char *const *const fkey_words[FK_N] = { type_words, NULL,
    NULL, NULL, NULL, share_words, writers_words };
static const char *const fkey_expect[FK_N] = { "string, int, bool, date, "
    "enum or set", NULL, NULL, NULL, NULL, "local, region or audience",
    "origin or audience" };

/* Looks a word up in a NULL-terminated list; index or -1. */
static int
word_index(const char *const *words, const char *w)
{
	for (int i = 0; words[i]; i++)
		if (strcmp(words[i], w) == 0)
			return i;
	return -1;
}

static void
oom(struct load *L)
{
	L->nomem = 1;
	nbx_ini_fail(&L->ini, L->ini.line, "out of memory");
}

/*
 * Parses a decimal int64 ("-12", "300"); 1 on success.  Rejects empty
 * strings, a '+', trailing text and overflow.
 */
static int
parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s != '-' && (*s < '0' || *s > '9'))
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s)
		return 0;
	*out = v;
	return 1;
}

/*
 * Adds the comma-separated values of one 'values' line to the current
 * field.  Empty items are skipped, so a list may end a line with a comma
 * and go on on the next.  An item is UTF-8 without spaces, controls or
 * INI punctuation (an indented "[section]" after a list would otherwise
 * become one of its values), and unique.
 */
static void
values_add(struct load *L, const char *sect, const char *v)
{
	struct pol_field *f = L->field;

	while (*v) {
		size_t n = strcspn(v, ",");
		struct nbx_str b = { v, 0 };
		char **nv;

		v += n + (v[n] == ',');
		while (n > 0 && (*b.p == ' ' || *b.p == '\t'))
			b.p++, n--;
		while (n > 0 && (b.p[n - 1] == ' ' || b.p[n - 1] == '\t'))
			n--;
		if ((b.n = (uint32_t)n) == 0)
			continue;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)b.p[i] <= 0x20 || b.p[i] == 0x7F ||
			    strchr("[]=;#\"'", b.p[i]))
				b.n = 0;
		if (b.n == 0 || !utf8_valid(b)) {
			nbx_ini_fail(&L->ini, L->ini.line, "[%s]: bad value "
			    "'%.*s' (separate values with commas)", sect,
			    (int)n, b.p);
			return;
		}
		if (in_values(f, b)) {
			nbx_ini_fail(&L->ini, L->ini.line, "[%s]: duplicate "
			    "value '%.*s'", sect, (int)n, b.p);
			return;
		}
		if ((nv = realloc(f->values, (f->nvalues + 1) *
		    sizeof(*nv))) == NULL) {
			oom(L);
			return;
		}
		f->values = nv;
		if ((nv[f->nvalues] = strndup(b.p, n)) == NULL) {
			oom(L);
			return;
		}
		f->nvalues++;
	}
}

/*
 * Checks a finished field section: what needs all of its keys.  Errors
 * about one key point at that key's line, others at the section header.
 */
static void
field_finish(struct load *L)
{
	struct pol_field *f = L->field;
	const int *line = L->k.line;
	const int64_t *num = L->k.num;
	struct nbx_ini *ini = &L->ini;
	const char *c = L->coll->name, *n = f->name;

	if (line[FK_TYPE] == 0) {
		nbx_ini_fail(ini, f->line, "[%s.%s]: missing 'type' (%s)", c,
		    n, fkey_expect[FK_TYPE]);
		return;
	}
	for (int i = 0; i < FK_N; i++)
		if (line[i] && fkey_types[i] && !(fkey_types[i] & T(f->type)))
			nbx_ini_fail(ini, line[i], "[%s.%s]: '%s' applies only "
			    "to %s", c, n, fkey_names[i], fkey_types_text[i]);
	switch (f->type) {
	case POL_STRING:
		f->max = line[FK_MAX] ? num[FK_MAX] : STRING_MAX_DEFAULT;
		if (f->max < 1 || f->max > NBX_STR_MAX)
			nbx_ini_fail(ini, line[FK_MAX], "[%s.%s]: max must be "
			    "between 1 and %d", c, n, NBX_STR_MAX);
		break;
	case POL_INT:
		f->min = line[FK_MIN] ? num[FK_MIN] : INT64_MIN;
		f->max = line[FK_MAX] ? num[FK_MAX] : INT64_MAX;
		if (f->min > f->max)
			nbx_ini_fail(ini, f->line, "[%s.%s]: min (%lld) is "
			    "greater than max (%lld)", c, n,
			    (long long)f->min, (long long)f->max);
		break;
	case POL_ENUM:
		if (f->nvalues == 0)
			nbx_ini_fail(ini, f->line, "[%s.%s]: an enum needs "
			    "'values'", c, n);
		break;
	case POL_SET:
		f->max = line[FK_MAX] ? num[FK_MAX] : SET_MAX_DEFAULT;
		if (f->max < 1 || f->max > SET_MAX_CAP)
			nbx_ini_fail(ini, line[FK_MAX], "[%s.%s]: max must be "
			    "between 1 and %d", c, n, SET_MAX_CAP);
		f->elem_max = ELEM_MAX_DEFAULT;
		if (line[FK_ELEM_MAX] && (num[FK_ELEM_MAX] < 1 ||
		    num[FK_ELEM_MAX] > NBX_STR_MAX))
			nbx_ini_fail(ini, line[FK_ELEM_MAX], "[%s.%s]: "
			    "elem_max must be between 1 and %d", c, n,
			    NBX_STR_MAX);
		else if (line[FK_ELEM_MAX])
			f->elem_max = (uint32_t)num[FK_ELEM_MAX];
		for (size_t i = 0; i < f->nvalues; i++)
			if (strlen(f->values[i]) > f->elem_max)
				nbx_ini_fail(ini, line[FK_VALUES], "[%s.%s]: "
				    "value '%s' is longer than elem_max (%u)",
				    c, n, f->values[i], (unsigned)f->elem_max);
		if (f->share == SHARE_AUDIENCE)
			nbx_ini_fail(ini, f->line, "[%s.%s]: a set cannot be "
			    "share = audience (a purged element would leave "
			    "its value in the register key)", c, n);
		break;
	default:
		break;
	}
	if (f->writers == WRITERS_AUDIENCE && f->share != SHARE_AUDIENCE)
		nbx_ini_fail(ini, f->line, "[%s.%s]: writers = audience needs "
		    "share = audience", c, n);
	if (f->share == SHARE_AUDIENCE)
		L->coll->has_audience_fields = 1;
}

/*
 * A "[collection]" or "[collection.field]" header: closes the previous
 * section and opens a new collection or field.
 */
/* A field name's first slot in the index. */
static unsigned
field_slot(struct nbx_str s)
{
	const unsigned char *p = (const unsigned char *)s.p;

	if (s.n == 0)
		return 0;
	return (s.n * 31u + p[0] * 17u + p[s.n / 2] * 5u + p[s.n - 1]) &
	    (POL_FIELD_SLOTS - 1);
}

/* Enters the collection's last field in its index, while there is room. */
static void
field_index_add(struct pol_coll *c)
{
	const struct pol_field *f = &c->fields[c->nfields - 1];
	unsigned h = field_slot((struct nbx_str){ f->name, f->name_len });

	if (c->nfields > POL_FIELD_SLOTS / 2) {
		memset(c->slot, 0, sizeof(c->slot));	/* full: searched */
		return;
	}
	while (c->slot[h] != 0)
		h = (h + 1) & (POL_FIELD_SLOTS - 1);
	c->slot[h] = (uint8_t)c->nfields;
}

static void
on_section(struct nbx_ini *ini, const char *sect)
{
	struct load *L = ini->user;
	const char *dot = strchr(sect, '.'), *fname = dot ? dot + 1 : "";
	size_t cn = dot ? (size_t)(dot - sect) : strlen(sect);
	struct pol_coll *c;
	struct pol_field *f;
	const struct pol_field *dup;

	if (L->field)
		field_finish(L);
	if (ini->err_line)
		return;
	L->coll = NULL;
	L->field = NULL;
	L->last_key = NULL;
	memset(&L->k, 0, sizeof(L->k));
	L->desc_line = 0;

	if (!name_valid(sect, cn)) {
		nbx_ini_fail(ini, ini->line, "[%s]: bad collection name "
		    "'%.*s' (1-%d of a-z, 0-9, _)", sect, (int)cn, sect,
		    NBX_NAME_MAX);
		return;
	}
	c = (struct pol_coll *)policy_coll(L->p,
	    (struct nbx_str){ sect, (uint32_t)cn });
	if (dot == NULL && c) {
		nbx_ini_fail(ini, ini->line, "duplicate section [%s] (first "
		    "on line %d)", sect, c->line);
	} else if (dot == NULL) {
		if ((c = realloc(L->p->colls, (L->p->ncoll + 1) *
		    sizeof(*c))) == NULL) {
			oom(L);
			return;
		}
		L->p->colls = c;
		c = memset(&c[L->p->ncoll++], 0, sizeof(*c));
		memcpy(c->name, sect, cn);
		c->name_len = (uint32_t)cn;
		c->line = ini->line;
		L->coll = c;
	} else if (!name_valid(fname, strlen(fname))) {
		nbx_ini_fail(ini, ini->line, "[%s]: bad field name '%s' (1-%d "
		    "of a-z, 0-9, _)", sect, fname, NBX_NAME_MAX);
	} else if (c == NULL) {
		nbx_ini_fail(ini, ini->line, "[%s]: collection '%.*s' is not "
		    "declared above its fields", sect, (int)cn, sect);
	} else if ((dup = policy_field(c, nbx_str_c(fname))) != NULL) {
		nbx_ini_fail(ini, ini->line, "duplicate section [%s] (first "
		    "on line %d)", sect, dup->line);
	} else if ((f = realloc(c->fields, (c->nfields + 1) *
	    sizeof(*f))) == NULL) {
		oom(L);
	} else {
		c->fields = f;
		f = memset(&f[c->nfields++], 0, sizeof(*f));
		f->name_len = (uint32_t)strlen(fname);
		memcpy(f->name, fname, f->name_len);
		f->line = ini->line;
		f->share = SHARE_LOCAL;		/* the safe defaults */
		f->writers = WRITERS_ORIGIN;
		field_index_add(c);
		L->coll = c;
		L->field = f;
	}
}

static void
on_key(struct nbx_ini *ini, const char *sect, const char *key,
    const char *val)
{
	struct load *L = ini->user;
	struct pol_field *f = L->field;
	int ki, i;

	if (L->coll == NULL) {
		nbx_ini_fail(ini, ini->line, "key '%s' outside any section",
		    key);
	} else if (ini->cont) {
		/* last_key is set: a continuation follows a key line. */
		if (strcmp(L->last_key, "values") == 0)
			values_add(L, sect, val);
		else if (strcmp(L->last_key, "description") != 0)
			nbx_ini_fail(ini, ini->line, "[%s]: '%s' does not "
			    "continue onto another line (only values and "
			    "description do)", sect, key);
	} else if (f == NULL && strcmp(key, "retain_days") == 0) {
		int64_t d;

		if (L->coll->retain_days)
			nbx_ini_fail(ini, ini->line, "[%s]: duplicate key "
			    "'retain_days'", sect);
		else if (!parse_i64(val, &d) || d < 1 || d > 36500)
			nbx_ini_fail(ini, ini->line, "[%s]: retain_days must be "
			    "1-36500, not '%s'", sect, val);
		else
			L->coll->retain_days = (uint32_t)d;
		L->last_key = "retain_days";
	} else if (f == NULL && strcmp(key, "description") != 0) {
		nbx_ini_fail(ini, ini->line, "[%s]: unknown key '%s' (a "
		    "collection takes 'description' and 'retain_days'; fields "
		    "go in [%s.NAME])", sect, key, sect);
	} else if (f == NULL && L->desc_line) {
		nbx_ini_fail(ini, ini->line, "[%s]: duplicate key "
		    "'description' (first on line %d)", sect, L->desc_line);
	} else if (f == NULL) {
		L->desc_line = ini->line;
		L->last_key = "description";
	} else if ((ki = word_index(fkey_names, key)) < 0) {
		nbx_ini_fail(ini, ini->line, "[%s]: unknown key '%s' (expected "
		    "type, max, min, values, elem_max, share or writers)",
		    sect, key);
	} else if (L->k.line[ki]) {
		nbx_ini_fail(ini, ini->line, "[%s]: duplicate key '%s' (first "
		    "on line %d)", sect, key, L->k.line[ki]);
	} else {
		L->k.line[ki] = ini->line;
		L->last_key = fkey_names[ki];
		if (ki == FK_VALUES) {
			values_add(L, sect, val);
		} else if (fkey_words[ki] == NULL) {
			if (!parse_i64(val, &L->k.num[ki]))
				nbx_ini_fail(ini, ini->line, "[%s]: bad number "
				    "'%s' for '%s'", sect, val, key);
		} else if ((i = word_index(fkey_words[ki], val)) < 0) {
			nbx_ini_fail(ini, ini->line, "[%s]: unknown %s '%s' "
			    "(expected %s)", sect, key, val, fkey_expect[ki]);
		} else if (ki == FK_TYPE) {
			f->type = (enum pol_type)(i + POL_STRING);
		} else if (ki == FK_SHARE) {
			f->share = (enum pol_share)i;
		} else {
			f->writers = (enum pol_writers)i;
		}
	}
}

int
policy_load_buf(const char *text, size_t len, const char *name,
    struct policy **out, char *err, size_t errlen)
{
	struct load L;
	int rc;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	memset(&L, 0, sizeof(L));
	if (name == NULL)
		name = "<string>";
	nbx_ini_init(&L.ini, name, &L);
	L.ini.on_section = on_section;
	L.ini.on_key = on_key;
	if ((L.p = calloc(1, sizeof(*L.p))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", name);
		return NBX_ENOMEM;
	}
	rc = nbx_ini_parse_buf(&L.ini, text, len);
	if (rc == 0 && L.field)
		field_finish(&L);
	if (L.ini.err_line) {
		rc = L.nomem ? NBX_ENOMEM : NBX_ESCHEMA;
		goto out;
	}
	*out = L.p;
	L.p = NULL;
	rc = 0;
out:
	if (rc != 0)
		nbx_ini_message(&L.ini, err, errlen);
	policy_free(L.p);
	return rc;
}

int
policy_load_string(const char *text, const char *name, struct policy **out,
    char *err, size_t errlen)
{
	assert(text != NULL && out != NULL);
	return policy_load_buf(text, strlen(text), name, out, err, errlen);
}

/* ------------------------------------------------------------------ */
/* Canonical form                                                      */
/* ------------------------------------------------------------------ */

static int
coll_by_name(const void *a, const void *b)
{
	return strcmp((*(const struct pol_coll *const *)a)->name,
	    (*(const struct pol_coll *const *)b)->name);
}

static int
field_by_name(const void *a, const void *b)
{
	return strcmp((*(const struct pol_field *const *)a)->name,
	    (*(const struct pol_field *const *)b)->name);
}

static void
canonical_field(struct mpwrite *w, const struct pol_field *f)
{
	mpwrite_array(w, 8);
	mpwrite_str(w, nbx_str_c(f->name));
	mpwrite_uint(w, f->type);
	mpwrite_uint(w, f->share);
	mpwrite_uint(w, f->writers);
	mpwrite_int(w, f->min);
	mpwrite_int(w, f->max);
	mpwrite_uint(w, f->elem_max);
	mpwrite_array(w, (uint32_t)f->nvalues);
	for (size_t v = 0; v < f->nvalues; v++)
		mpwrite_str(w, nbx_str_c(f->values[v]));
}

int
policy_canonical(const struct policy *p, struct nbx_buf *out)
{
	size_t nc = policy_ncoll(p), nf = 0;
	const struct pol_coll **cs;
	const struct pol_field **fs;
	struct mpwrite w;

	for (size_t i = 0; i < nc; i++)
		if (policy_coll_at(p, i)->nfields > nf)
			nf = policy_coll_at(p, i)->nfields;
	cs = calloc(nc ? nc : 1, sizeof(*cs));
	fs = calloc(nf ? nf : 1, sizeof(*fs));
	if (cs == NULL || fs == NULL) {
		free(cs);
		free(fs);
		return NBX_ENOMEM;
	}
	for (size_t i = 0; i < nc; i++)
		cs[i] = policy_coll_at(p, i);
	qsort(cs, nc, sizeof(*cs), coll_by_name);
	mpwrite_init(&w, out);
	mpwrite_array(&w, (uint32_t)nc);
	for (size_t i = 0; i < nc; i++) {
		for (size_t k = 0; k < cs[i]->nfields; k++)
			fs[k] = &cs[i]->fields[k];
		qsort(fs, cs[i]->nfields, sizeof(*fs), field_by_name);
		mpwrite_array(&w, 3);
		mpwrite_str(&w, nbx_str_c(cs[i]->name));
		mpwrite_uint(&w, cs[i]->retain_days);
		mpwrite_array(&w, (uint32_t)cs[i]->nfields);
		for (size_t k = 0; k < cs[i]->nfields; k++)
			canonical_field(&w, fs[k]);
	}
	free(cs);
	free(fs);
	return w.err;
}

void
policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->ncoll; i++) {
		struct pol_coll *c = &p->colls[i];

		for (size_t j = 0; j < c->nfields; j++) {
			for (size_t k = 0; k < c->fields[j].nvalues; k++)
				free(c->fields[j].values[k]);
			free(c->fields[j].values);
		}
		free(c->fields);
	}
	free(p->colls);
	free(p);
}

/* ------------------------------------------------------------------ */
/* Lookups                                                            */
/* ------------------------------------------------------------------ */

size_t
policy_ncoll(const struct policy *p)
{
	return p ? p->ncoll : 0;
}

const struct pol_coll *
policy_coll_at(const struct policy *p, size_t i)
{
	return p && i < p->ncoll ? &p->colls[i] : NULL;
}

const struct pol_coll *
policy_coll(const struct policy *p, struct nbx_str name)
{
	if (p == NULL)
		return NULL;
	for (size_t i = 0; i < p->ncoll; i++)
		if (nbx_str_eq((struct nbx_str){ p->colls[i].name,
		    p->colls[i].name_len }, name))
			return &p->colls[i];
	return NULL;
}

const struct pol_field *
policy_field(const struct pol_coll *c, struct nbx_str name)
{
	if (c == NULL)
		return NULL;
	if (c->nfields <= POL_FIELD_SLOTS / 2) {
		for (unsigned h = field_slot(name); c->slot[h] != 0;
		    h = (h + 1) & (POL_FIELD_SLOTS - 1)) {
			const struct pol_field *f = &c->fields[c->slot[h] - 1];

			if (nbx_str_eq((struct nbx_str){ f->name, f->name_len },
			    name))
				return f;
		}
		return NULL;
	}
	for (size_t i = 0; i < c->nfields; i++)
		if (nbx_str_eq((struct nbx_str){ c->fields[i].name,
		    c->fields[i].name_len }, name))
			return &c->fields[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Values, writers, egress                                            */
/* ------------------------------------------------------------------ */

/*
 * Malformed values (wrong vtype, a string that is not UTF-8, a date that
 * is not a calendar date) are NBX_ETYPE; well-formed values outside the
 * field's limits (too long, out of range, not one of the enum's values)
 * are NBX_ELIMIT.
 */
int
policy_value_check(const struct pol_field *f, const struct nbx_value *v)
{
	if (f->type == POL_SET)
		return NBX_ETYPE;
	if (v->t == NBX_V_NIL)
		return 0;
	switch (f->type) {
	case POL_STRING:
		if (v->t != NBX_V_STR || !utf8_valid(v->s))
			return NBX_ETYPE;
		return (int64_t)v->s.n <= f->max ? 0 : NBX_ELIMIT;
	case POL_INT:
		if (v->t != NBX_V_INT)
			return NBX_ETYPE;
		return v->i >= f->min && v->i <= f->max ? 0 : NBX_ELIMIT;
	case POL_BOOL:
		return v->t == NBX_V_BOOL && (v->i == 0 || v->i == 1) ? 0 :
		    NBX_ETYPE;
	case POL_DATE:
		return v->t == NBX_V_STR && date_valid(v->s) ? 0 : NBX_ETYPE;
	case POL_ENUM:
		if (v->t != NBX_V_STR)
			return NBX_ETYPE;
		return in_values(f, v->s) ? 0 : NBX_ELIMIT;
	default:
		return NBX_ETYPE;
	}
}

int
policy_elem_check(const struct pol_field *f, struct nbx_str elem)
{
	if (f->type != POL_SET)
		return NBX_ETYPE;
	if (elem.n > 0 && !utf8_valid(elem))
		return NBX_ETYPE;
	if (elem.n == 0 || elem.n > f->elem_max)
		return NBX_ELIMIT;
	if (f->nvalues > 0 && !in_values(f, elem))
		return NBX_ELIMIT;
	return 0;
}

/* policy_may_write with the record id's creator already found. */
static int
may_write(const struct pol_field *f, struct nbx_str origin,
    struct nbx_str creator, const struct nbx_audience *aud)
{
	if (f->writers == WRITERS_AUDIENCE)
		return nbx_audience_has(aud, origin) ? 0 : NBX_EWRITER;
	return creator.n > 0 && nbx_str_eq(origin, creator) ? 0 :
	    NBX_EWRITER;
}

int
policy_may_write(const struct pol_field *f, struct nbx_str origin,
    struct nbx_str id, const struct nbx_audience *aud)
{
	return may_write(f, origin, nbx_id_creator(id), aud);
}

int
policy_may_send(const struct pol_field *f,
    const struct nbx_audience *value_aud, const struct nbx_audience *rec_aud,
    struct nbx_str peer)
{
	switch (f->share) {
	case SHARE_REGION:
		return 1;
	case SHARE_AUDIENCE:
		return nbx_audience_has(value_aud, peer) &&
		    nbx_audience_has(rec_aud, peer);
	default:
		return 0;
	}
}

static int
coll_has_region(const struct pol_coll *pc)
{
	for (size_t i = 0; i < pc->nfields; i++)
		if (pc->fields[i].share == SHARE_REGION)
			return 1;
	return 0;
}

/*
 * 1 if a receipt of r names P: P purged, must purge, or itself answered
 * for someone who must.  Each of those held the record, so the receipts
 * tell it nothing it did not know.  After an erasure this is all that
 * is left of who held the record (its audience is purged with the rest).
 */
static int
receipts_name(const struct crdt_record *r, struct nbx_str peer)
{
	for (size_t i = 0; i < r->nrcpt; i++)
		if (nbx_str_eq(r->rcpt[i].node, peer) ||
		    nbx_str_eq(r->rcpt[i].ver.origin, peer))
			return 1;
	return 0;
}

/*
 * 1 if a pending erasure receipt of r names P: P held the record (or was
 * sent it) and has not said it purged.  Before an erasure, each holder's
 * own pending receipt (store/apply.c note_holder) says who must get it,
 * and outlives the disclosure log of a relay rebuilt from empty.
 */
static int
must_purge(const struct crdt_record *r, struct nbx_str peer)
{
	const struct crdt_receipt *x = crdt_record_receipt(r,
	    nbx_str_c("erase"), peer);

	return x != NULL && x->state == RECEIPT_PENDING;
}

static enum policy_send
yes_or_if_disclosed(int yes)
{
	return yes ? POLICY_SEND_YES : POLICY_SEND_IF_DISCLOSED;
}

enum policy_send
policy_may_send_change(const struct pol_coll *pc, const struct crdt_record *r,
    const struct change *c, struct nbx_str peer, int with_data)
{
	const struct pol_field *f;

	switch (c->kind) {
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		f = policy_field(pc, c->field);
		if (f == NULL || f->share == SHARE_LOCAL ||
		    (c->kind == CHANGE_ELEM) != (f->type == POL_SET))
			return POLICY_SEND_NO;
		return policy_may_send(f, &c->aud, &r->aud, peer) == 1 ?
		    POLICY_SEND_YES : POLICY_SEND_NO;
	case CHANGE_AUDIENCE:
		return yes_or_if_disclosed(nbx_audience_has(&r->aud, peer) ||
		    receipts_name(r, peer));
	case CHANGE_STATE:
		return yes_or_if_disclosed(with_data);
	case CHANGE_ERASE:
		return yes_or_if_disclosed(coll_has_region(pc) ||
		    must_purge(r, peer));
	case CHANGE_RECEIPT:
		return yes_or_if_disclosed(coll_has_region(pc) ||
		    nbx_audience_has(&r->aud, peer) || receipts_name(r, peer) ||
		    nbx_str_eq(nbx_id_creator(r->id), peer));
	}
	return POLICY_SEND_NO;
}

/* ------------------------------------------------------------------ */
/* Change validation                                                  */
/* ------------------------------------------------------------------ */

/* FIELD and ELEM changes: the checks of policy_check_change, in order. */
static int
check_field_change(const struct pol_coll *coll, const struct change *c,
    struct nbx_str creator, struct nbx_str self, int remote,
    const struct pol_field **fout)
{
	const struct pol_field *f = policy_field(coll, c->field);
	int rc;

	if (f == NULL)
		return NBX_EFIELD;
	if ((c->kind == CHANGE_ELEM) != (f->type == POL_SET))
		return NBX_ETYPE;
	if (c->kind == CHANGE_FIELD)
		rc = policy_value_check(f, &c->val);
	else if (c->val.t != NBX_V_BOOL || (c->val.i != 0 && c->val.i != 1))
		rc = NBX_ETYPE;
	else
		rc = policy_elem_check(f, c->elem);
	if (rc != 0)
		return rc;
	if (f->share == SHARE_LOCAL && remote)
		return NBX_ELOCAL;
	if (f->share == SHARE_AUDIENCE) {
		/* only the record's creator sets audiences: a value carried
		   under anyone else's audience would widen it */
		if (!audience_valid(&c->aud) || !nbx_audience_has(&c->aud, self) ||
		    !nbx_str_eq(c->aud.origin, creator))
			return NBX_EAUDIENCE;
	} else if (c->aud.n != 0 || c->aud.hlc != 0) {
		return NBX_EINVAL;
	}
	if ((rc = may_write(f, c->origin, creator, &c->aud)) != 0)
		return rc;
	*fout = f;
	return 0;
}

/*
 * See policy.h for the list and order of checks.  Codes beyond the
 * header's: a malformed record id or origin, or an AUDIENCE change whose
 * hlc/origin differ from the change's, is NBX_EINVAL; a STATE value that
 * is not an int is NBX_ETYPE, an int other than REC_LIVE/REC_DELETED is
 * NBX_EINVAL; an audience that is empty, over NBX_AUD_MAX, holds a bad
 * node id or (AUDIENCE) lacks the creator is NBX_EAUDIENCE.
 */
int
policy_check_change(const struct policy *p, const struct change *c,
    struct nbx_str self, int remote, const struct pol_field **fout)
{
	return policy_check_change_memo(p, c, self, remote, fout, NULL);
}

int
policy_check_change_memo(const struct policy *p, const struct change *c,
    struct nbx_str self, int remote, const struct pol_field **fout,
    struct policy_memo *m)
{
	const struct pol_field *f = NULL;
	const struct pol_coll *coll;
	struct nbx_str creator;
	int rc;

	if (fout)
		*fout = NULL;
	if (m != NULL && m->pc != NULL && nbx_str_eq(m->id, c->id) &&
	    nbx_str_eq(m->origin, c->origin) && nbx_str_eq(m->coll, c->coll)) {
		coll = m->pc;
		creator = m->creator;
	} else {
		if (m != NULL)
			m->pc = NULL;
		if (!record_id_valid(c->id) || !nbx_node_id_valid(c->origin))
			return NBX_EINVAL;
		if ((coll = policy_coll(p, c->coll)) == NULL)
			return NBX_ECOLL;
		creator = nbx_id_creator(c->id);
		if (m != NULL) {
			m->coll = c->coll;
			m->id = c->id;
			m->origin = c->origin;
			m->creator = creator;
			m->pc = coll;
		}
	}
	switch (c->kind) {
	case CHANGE_FIELD:
	case CHANGE_ELEM:
		rc = check_field_change(coll, c, creator, self, remote, &f);
		break;
	case CHANGE_STATE:
		if (c->val.t != NBX_V_INT)
			rc = NBX_ETYPE;
		else if (c->val.i != REC_LIVE && c->val.i != REC_DELETED)
			rc = NBX_EINVAL;
		else
			rc = nbx_str_eq(c->origin, creator) ? 0 : NBX_EWRITER;
		break;
	case CHANGE_AUDIENCE:
		if (!nbx_str_eq(c->origin, creator))
			rc = NBX_EWRITER;
		else if (!audience_valid(&c->aud) ||
		    !nbx_audience_has(&c->aud, creator))
			rc = NBX_EAUDIENCE;
		else if (c->aud.hlc != c->hlc ||
		    !nbx_str_eq(c->aud.origin, c->origin))
			rc = NBX_EINVAL;
		else
			rc = 0;
		break;
	case CHANGE_ERASE:
		rc = 0;
		break;
	case CHANGE_RECEIPT:
		/* anyone may announce a pending purge; only the node may
		 * say it has purged */
		if ((!nbx_str_eq(c->field, nbx_str_c("erase")) &&
		    !nbx_str_eq(c->field, nbx_str_c("revoke"))) ||
		    !nbx_node_id_valid(c->elem) || c->val.t != NBX_V_INT ||
		    (c->val.i != RECEIPT_PENDING && c->val.i != RECEIPT_DONE))
			rc = NBX_EINVAL;
		else if (c->val.i == RECEIPT_DONE &&
		    !nbx_str_eq(c->origin, c->elem))
			rc = NBX_EWRITER;
		else
			rc = 0;
		break;
	default:
		rc = NBX_EINVAL;
		break;
	}
	if (rc == 0 && fout)
		*fout = f;
	return rc;
}
