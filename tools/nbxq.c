/*
 * nbxq.c - read-only queries of a node's store.  Opens LMDB with
 * MDB_RDONLY, so it works while nbxd writes and never blocks it; it never
 * writes.  Deleted records are hidden unless --include-deleted; erased
 * ones are never shown.  Exit 0 on success, 1 on a runtime failure (e.g.
 * no store), 2 on a usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"
#include "conf_file.h"
#include "config.h"
#include "nbx_err.h"
#include "policy.h"
#include "recview.h"
#include "store.h"

#define WHERE_MAX 16

static const char HELP[] =
    "usage: nbxq [-c FILE | -d DATA_DIR] VERB [ARGS...]\n"
    "\n"
    "Read-only queries of an nbx node's store (safe while nbxd runs).\n"
    "\n"
    "  get COLL ID [--meta]            one merged record\n"
    "  list COLL [--where F=V]... [--fields A,B] [--sort [-]F] [--limit N]\n"
    "            [--format table|json|csv] [--jsonl] [--include-deleted]\n"
    "  count COLL [--where F=V]...\n"
    "  disclosures COLL ID             which peers received which fields\n"
    "\n"
    "Filters: F=V  F!=V  F~text (case-insensitive substring)  F<V  F>V\n"
    "(numbers and dates).  On a set field, F=V means V is in the set.\n"
    "\n"
    "  -c FILE      node config (default $NBX_CONF, else /etc/nbx/nbx.conf)\n"
    "  -d DATA_DIR  the store directory, instead of a config\n"
    "  --json       JSON output (get, count, disclosures)\n";

enum op { OP_EQ, OP_NE, OP_LIKE, OP_LT, OP_GT };

struct where {
	char field[NBX_NAME_MAX + 1];
	enum op op;
	const char *value;
};

struct query {
	const char *coll;
	struct where where[WHERE_MAX];
	int nwhere;
	char **fields;
	int nfields;
	const char *sort;
	long limit;
	const char *format;
	int jsonl, include_deleted, meta, json;
};

static int
parse_where(const char *s, struct where *w)
{
	static const struct { const char *tok; enum op op; } ops[] = {
		{ "!=", OP_NE }, { "~", OP_LIKE }, { "<", OP_LT },
		{ ">", OP_GT }, { "=", OP_EQ },
	};

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const char *p = strstr(s, ops[i].tok);
		size_t n;

		if (p == NULL || p == s)
			continue;
		/* the first operator in the string decides */
		n = (size_t)(p - s);
		if (strcspn(s, "!~<>=") != n)
			continue;
		if (n > NBX_NAME_MAX)
			return -1;
		memcpy(w->field, s, n);
		w->field[n] = 0;
		w->op = ops[i].op;
		w->value = p + strlen(ops[i].tok);
		return 0;
	}
	return -1;
}

/* Compares as numbers when both are numbers, else as text. */
static int
cmp_values(const char *a, const char *b)
{
	char *ea, *eb;
	double x = strtod(a, &ea), y = strtod(b, &eb);

	if (*a && *b && *ea == 0 && *eb == 0)
		return (x > y) - (x < y);
	return strcmp(a, b);
}

static int
set_has(const char *list, const char *v)
{
	size_t n = strlen(v);

	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && memcmp(p, v, n) == 0)
			return 1;
		p += len + (e != NULL);
	}
	return 0;
}

static int
matches(const struct crdt_record *r, const struct query *q)
{
	char v[4096];

	for (int i = 0; i < q->nwhere; i++) {
		const struct where *w = &q->where[i];
		const struct crdt_reg *g;
		int is_set = 0;

		recview_text(r, w->field, v, sizeof(v));
		for (size_t k = 0; k < r->nregs; k++) {
			g = &r->regs[k];
			if (nbx_str_eq(g->field, nbx_str_c(w->field)) &&
			    (g->flags & CRDT_REG_ELEM))
				is_set = 1;
		}
		switch (w->op) {
		case OP_EQ:
			if (is_set ? !set_has(v, w->value) : strcmp(v, w->value))
				return 0;
			break;
		case OP_NE:
			if (is_set ? set_has(v, w->value) : !strcmp(v, w->value))
				return 0;
			break;
		case OP_LIKE:
			if (strcasestr(v, w->value) == NULL)
				return 0;
			break;
		case OP_LT:
			if (!*v || cmp_values(v, w->value) >= 0)
				return 0;
			break;
		case OP_GT:
			if (!*v || cmp_values(v, w->value) <= 0)
				return 0;
			break;
		}
	}
	return 1;
}

static int
visible(const struct crdt_record *r, const struct query *q)
{
	if (r->erased)
		return 0;
	if (r->state == REC_DELETED && !q->include_deleted)
		return 0;
	return matches(r, q);
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static void
print_json(json_t *j, int pretty)
{
	char *s = json_dumps(j, pretty ? JSON_INDENT(2) : JSON_COMPACT);

	if (s)
		puts(s);
	free(s);
}

static void
csv_cell(FILE *f, const char *s, int last)
{
	if (strpbrk(s, ",\"\r\n")) {
		fputc('"', f);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', f);
			fputc(*s, f);
		}
		fputc('"', f);
	} else {
		fputs(s, f);
	}
	fputs(last ? "\r\n" : ",", f);
}

struct row {
	char **cells;
	json_t *obj;
	char *sortkey;
};

static int sort_desc;

static int
row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int c = cmp_values(x->sortkey, y->sortkey);

	return sort_desc ? -c : c;
}

static void
columns_for(const struct query *q, const struct policy *pol, char ***cols,
    int *ncols)
{
	const struct pol_coll *pc = pol ? policy_coll(pol, nbx_str_c(q->coll)) :
	    NULL;

	if (q->nfields) {
		*cols = q->fields;
		*ncols = q->nfields;
		return;
	}
	*ncols = 0;
	*cols = NULL;
	if (pc == NULL)
		return;
	*cols = calloc(pc->nfields, sizeof(char *));
	for (size_t i = 0; i < pc->nfields; i++)
		(*cols)[(*ncols)++] = (char *)pc->fields[i].name;
}

/* Text of a JSON field value for table and CSV cells. */
static char *
cell_text(json_t *v)
{
	if (v == NULL || json_is_null(v))
		return strdup("");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_array(v)) {
		size_t i, len = 1;
		json_t *e;
		char *out;

		json_array_foreach(v, i, e)
			len += json_string_length(e) + 1;
		out = calloc(1, len);
		json_array_foreach(v, i, e) {
			if (i)
				strcat(out, ",");
			strcat(out, json_string_value(e));
		}
		return out;
	}
	if (json_is_boolean(v))
		return strdup(json_is_true(v) ? "true" : "false");
	return json_dumps(v, JSON_ENCODE_ANY);
}

static char **
row_cells(json_t *obj, char **cols, int ncols)
{
	char **cells = calloc((size_t)ncols + 1, sizeof(char *));
	json_t *f = json_object_get(obj, "fields");

	cells[0] = strdup(json_string_value(json_object_get(obj, "id")));
	for (int i = 0; i < ncols; i++)
		cells[i + 1] = cell_text(json_object_get(f, cols[i]));
	return cells;
}

/* Without a schema, the columns are the fields seen, in order seen. */
static void
columns_from_rows(struct row *rows, size_t nrows, char ***cols, int *ncols)
{
	const char *k;
	json_t *v;

	*cols = NULL;
	*ncols = 0;
	for (size_t i = 0; i < nrows; i++) {
		json_object_foreach(json_object_get(rows[i].obj, "fields"), k, v) {
			int j;

			for (j = 0; j < *ncols && strcmp((*cols)[j], k); j++)
				;
			if (j < *ncols)
				continue;
			*cols = realloc(*cols, (size_t)(*ncols + 1) * sizeof(char *));
			(*cols)[(*ncols)++] = (char *)k;
		}
	}
}

static int
cmd_list(struct store *st, const struct policy *pol, struct query *q,
    int count_only)
{
	struct store_rtxn *t;
	struct crdt_record r;
	struct nbx_str after = { "", 0 }, id;
	struct row *rows = NULL;
	size_t nrows = 0, cap = 0;
	char **cols;
	int ncols, rc;
	long count = 0;
	int stream = q->jsonl && !q->sort;

	columns_for(q, pol, &cols, &ncols);
	if ((rc = store_rtxn_begin(st, &t)) != 0) {
		fprintf(stderr, "nbxq: %s\n", store_last_error(st));
		return EXIT_RUNTIME;
	}
	while ((rc = store_record_next(t, nbx_str_c(q->coll), after, &id,
	    &r)) == 0) {
		after = id;
		if (!visible(&r, q)) {
			crdt_record_fini(&r);
			continue;
		}
		count++;
		if (count_only) {
			crdt_record_fini(&r);
			continue;
		}
		json_t *o = recview_json(&r, q->meta);

		if (q->nfields) {	/* keep only the asked fields */
			json_t *f = json_object_get(o, "fields"), *keep = json_object();

			for (int i = 0; i < q->nfields; i++) {
				json_t *v = json_object_get(f, q->fields[i]);

				if (v)
					json_object_set(keep, q->fields[i], v);
			}
			json_object_set_new(o, "fields", keep);
		}
		if (stream) {
			print_json(o, 0);
			json_decref(o);
		} else {
			char buf[4096];

			if (nrows == cap) {
				cap = cap ? cap * 2 : 64;
				rows = realloc(rows, cap * sizeof(*rows));
			}
			rows[nrows].obj = o;
			rows[nrows].cells = NULL;
			rows[nrows].sortkey = NULL;
			if (q->sort) {
				recview_text(&r, q->sort, buf, sizeof(buf));
				rows[nrows].sortkey = strdup(buf);
			}
			nrows++;
		}
		crdt_record_fini(&r);
		if (q->limit > 0 && count >= q->limit && !q->sort)
			break;
	}
	store_rtxn_end(t);
	if (rc != 0 && rc != NBX_ENOTFOUND) {
		fprintf(stderr, "nbxq: %s\n", store_last_error(st));
		if (!q->nfields)
			free(cols);
		return EXIT_RUNTIME;
	}
	if (count_only) {
		if (!q->nfields)
			free(cols);
		if (q->json)
			printf("{\"collection\":\"%s\",\"count\":%ld}\n", q->coll,
			    count);
		else
			printf("%ld\n", count);
		return 0;
	}
	if (q->sort)
		qsort(rows, nrows, sizeof(*rows), row_cmp);
	if (q->limit > 0 && nrows > (size_t)q->limit) {
		for (size_t i = (size_t)q->limit; i < nrows; i++) {
			free(rows[i].sortkey);
			json_decref(rows[i].obj);
		}
		nrows = (size_t)q->limit;
	}
	if (!stream && ncols == 0 && cols == NULL)
		columns_from_rows(rows, nrows, &cols, &ncols);
	for (size_t i = 0; i < nrows; i++)
		rows[i].cells = row_cells(rows[i].obj, cols, ncols);
	if (stream) {
		/* already printed */
	} else if (q->jsonl) {
		for (size_t i = 0; i < nrows; i++)
			print_json(rows[i].obj, 0);
	} else if (!strcmp(q->format, "json")) {
		json_t *arr = json_array();

		for (size_t i = 0; i < nrows; i++)
			json_array_append(arr, rows[i].obj);
		print_json(arr, 1);
		json_decref(arr);
	} else if (!strcmp(q->format, "csv")) {
		csv_cell(stdout, "id", ncols == 0);
		for (int i = 0; i < ncols; i++)
			csv_cell(stdout, cols[i], i == ncols - 1);
		for (size_t r2 = 0; r2 < nrows; r2++)
			for (int i = 0; i <= ncols; i++)
				csv_cell(stdout, rows[r2].cells[i], i == ncols);
	} else {
		size_t *w = calloc((size_t)ncols + 1, sizeof(size_t));

		w[0] = 2;
		for (int i = 0; i < ncols; i++)
			w[i + 1] = strlen(cols[i]);
		for (size_t r2 = 0; r2 < nrows; r2++)
			for (int i = 0; i <= ncols; i++)
				if (strlen(rows[r2].cells[i]) > w[i])
					w[i] = strlen(rows[r2].cells[i]);
		/* aligned columns; the last is not padded */
		printf("%-*s", ncols ? (int)w[0] : 0, "ID");
		for (int i = 0; i < ncols; i++) {
			char up[NBX_NAME_MAX + 1];
			size_t k;

			for (k = 0; cols[i][k] && k < NBX_NAME_MAX; k++)
				up[k] = (char)toupper((unsigned char)cols[i][k]);
			up[k] = 0;
			printf("  %-*s", i + 1 < ncols ? (int)w[i + 1] : 0, up);
		}
		printf("\n");
		for (size_t r2 = 0; r2 < nrows; r2++) {
			printf("%-*s", ncols ? (int)w[0] : 0, rows[r2].cells[0]);
			for (int i = 0; i < ncols; i++)
				printf("  %-*s", i + 1 < ncols ? (int)w[i + 1] : 0,
				    rows[r2].cells[i + 1]);
			printf("\n");
		}
		free(w);
	}
	for (size_t i = 0; i < nrows; i++) {
		for (int k = 0; k <= ncols; k++)
			free(rows[i].cells[k]);
		free(rows[i].cells);
		free(rows[i].sortkey);
		json_decref(rows[i].obj);
	}
	free(rows);
	if (!q->nfields)
		free(cols);
	return 0;
}

static int
cmd_get(struct store *st, struct query *q, const char *id)
{
	struct store_rtxn *t;
	struct crdt_record r;
	json_t *o, *f, *v;
	const char *k;
	int rc;

	if ((rc = store_rtxn_begin(st, &t)) != 0) {
		fprintf(stderr, "nbxq: %s\n", store_last_error(st));
		return EXIT_RUNTIME;
	}
	rc = store_record_get(t, nbx_str_c(q->coll), nbx_str_c(id), &r);
	if (rc == 0 && (r.erased || (r.state == REC_DELETED &&
	    !q->include_deleted)))
		rc = NBX_ENOTFOUND;
	if (rc != 0) {
		crdt_record_fini(&r);
		store_rtxn_end(t);
		fprintf(stderr, "nbxq: %s/%s: %s\n", q->coll, id,
		    rc == NBX_ENOTFOUND ? "no such record" : nbx_strerror(rc));
		return EXIT_RUNTIME;
	}
	o = recview_json(&r, q->meta);
	crdt_record_fini(&r);
	store_rtxn_end(t);
	if (q->json) {
		print_json(o, 0);
	} else {
		printf("%s/%s (%s)\n", q->coll, id, json_string_value(
		    json_object_get(o, "state")));
		f = json_object_get(o, "fields");
		json_object_foreach(f, k, v) {
			char *s = json_is_string(v) ? strdup(json_string_value(v)) :
			    json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			json_t *m = json_object_get(json_object_get(o, "meta"), k);

			printf("  %-24s %s", k, s ? s : "");
			if (m) {
				json_t *a = json_object_get(m, "audience");
				char *as = a ? json_dumps(a, JSON_COMPACT) : NULL;

				printf("    [%s by %s%s%s]", json_string_value(
				    json_object_get(m, "time")), json_string_value(
				    json_object_get(m, "origin")), as ?
				    ", audience " : "", as ? as : "");
				free(as);
			}
			printf("\n");
			free(s);
		}
	}
	json_decref(o);
	return 0;
}

static int
cmd_disclosures(struct store *st, struct query *q, const char *id)
{
	struct store_rtxn *t;
	struct store_audit_entry e;
	uint64_t after = 0;
	int rc, n = 0;

	if ((rc = store_rtxn_begin(st, &t)) != 0) {
		fprintf(stderr, "nbxq: %s\n", store_last_error(st));
		return EXIT_RUNTIME;
	}
	if (!q->json)
		printf("%-24s %-10s %s\n", "TIME", "PEER", "FIELDS");
	while (store_audit_next(t, after, &e) == 0) {
		after = e.aseq;
		if (!nbx_str_eq(e.coll, nbx_str_c(q->coll)) ||
		    !nbx_str_eq(e.id, nbx_str_c(id)))
			continue;
		json_t *items = json_array();
		char ts[40];
		uint64_t ms = e.time_ms;
		time_t s = (time_t)(ms / 1000);
		struct tm tm;

		gmtime_r(&s, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		for (uint32_t i = 0; i < e.nitems; i++) {
			const struct store_audit_item *it = &e.items[i];

			json_array_append_new(items, json_pack("{s:s, s:s#, s:I, s:s#}",
			    "kind", change_kind_name(it->kind), "field",
			    it->field.p, (int)it->field.n, "hlc",
			    (json_int_t)it->hlc, "origin", it->origin.p,
			    (int)it->origin.n));
		}
		if (q->json) {
			json_t *o = json_pack("{s:s, s:s#, s:o}", "time", ts,
			    "peer", e.peer.p, (int)e.peer.n, "items", items);

			print_json(o, 0);
			json_decref(o);
		} else {
			printf("%-24s %-10.*s", ts, (int)e.peer.n, e.peer.p);
			for (uint32_t i = 0; i < e.nitems; i++) {
				const struct store_audit_item *it = &e.items[i];

				if (it->kind == CHANGE_FIELD ||
				    it->kind == CHANGE_ELEM)
					printf("%s%.*s", i ? "," : " ",
					    (int)it->field.n, it->field.p);
				else
					printf("%s(%s)", i ? "," : " ",
					    change_kind_name(it->kind));
			}
			printf("\n");
			json_decref(items);
		}
		n++;
	}
	store_rtxn_end(t);
	if (n == 0 && !q->json)
		printf("(no disclosures of %s/%s)\n", q->coll, id);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *conf = NULL, *dir = NULL, *verb;
	struct query q;
	struct nbx_config cfg;
	struct policy *pol = NULL;
	struct store *st = NULL;
	struct store_opts so;
	char err[1024], *pos[4], *fields_buf = NULL;
	int npos = 0, rc, i;

	memset(&q, 0, sizeof(q));
	memset(&cfg, 0, sizeof(cfg));
	q.format = "table";
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(HELP, stdout);
			return 0;
		} else if (!strcmp(a, "--json")) {
			q.json = 1;
		} else if (!strcmp(a, "--meta")) {
			q.meta = 1;
		} else if (!strcmp(a, "--jsonl")) {
			q.jsonl = 1;
		} else if (!strcmp(a, "--include-deleted")) {
			q.include_deleted = 1;
		} else if (a[0] == '-' && a[1] && v == NULL) {
			return cli_usage_error("%s needs a value", a);
		} else if (!strcmp(a, "-c")) {
			conf = argv[++i];
		} else if (!strcmp(a, "-d")) {
			dir = argv[++i];
		} else if (!strcmp(a, "--where")) {
			if (q.nwhere == WHERE_MAX ||
			    parse_where(argv[++i], &q.where[q.nwhere++]) != 0)
				return cli_usage_error("bad filter '%s' (F=V, F!=V, F~V, "
				    "F<V, F>V)", argv[i]);
		} else if (!strcmp(a, "--fields")) {
			char *s, *save, *tok;

			free(fields_buf);
			s = fields_buf = strdup(argv[++i]);
			q.nfields = 0;

			for (tok = strtok_r(s, ",", &save); tok;
			    tok = strtok_r(NULL, ",", &save)) {
				if (strcmp(tok, "id") == 0)
					continue;	/* always the first column */
				q.fields = realloc(q.fields, (size_t)(q.nfields + 1) *
				    sizeof(char *));
				q.fields[q.nfields++] = tok;
			}
		} else if (!strcmp(a, "--sort")) {
			q.sort = argv[++i];
			if (q.sort[0] == '-') {
				sort_desc = 1;
				q.sort++;
			}
		} else if (!strcmp(a, "--limit")) {
			char *end;

			q.limit = strtol(argv[++i], &end, 10);
			if (*end || q.limit <= 0)
				return cli_usage_error("--limit needs a positive number, "
				    "not '%s'", argv[i]);
		} else if (!strcmp(a, "--format")) {
			q.format = argv[++i];
			if (strcmp(q.format, "table") && strcmp(q.format, "json") &&
			    strcmp(q.format, "csv"))
				return cli_usage_error("--format is table, json or csv, not "
				    "'%s'", q.format);
		} else if (a[0] == '-' && a[1]) {
			return cli_usage_error("unknown option '%s'", a);
		} else if (npos < 4) {
			pos[npos++] = argv[i];
		} else {
			return cli_usage_error("unexpected '%s'", a);
		}
	}
	if (npos < 2)
		return cli_usage_error("%s", npos ? "missing COLL" : "missing VERB");
	verb = pos[0];
	q.coll = pos[1];
	if (!dir) {
		if (!conf)
			conf = getenv("NBX_CONF");
		if (!conf)
			conf = "/etc/nbx/nbx.conf";
		if (config_load(conf, &cfg, err, sizeof(err)) != 0) {
			fprintf(stderr, "nbxq: %s\n", err);
			return EXIT_USAGE;
		}
		dir = cfg.data_dir;
		if (conf_schema_load(cfg.schema, &pol, err, sizeof(err)) != 0)
			pol = NULL;	/* columns then come from the data */
	}
	memset(&so, 0, sizeof(so));
	so.readonly = 1;
	if ((rc = store_open(dir, &so, &st, err, sizeof(err))) != 0) {
		fprintf(stderr, "nbxq: cannot open store: %s\n", err);
		rc = EXIT_RUNTIME;
		goto out;
	}
	if (!strcmp(verb, "get") || !strcmp(verb, "disclosures")) {
		if (npos != 3)
			rc = cli_usage_error("%s COLL ID", verb);
		else if (!strcmp(verb, "get"))
			rc = cmd_get(st, &q, pos[2]);
		else
			rc = cmd_disclosures(st, &q, pos[2]);
	} else if (!strcmp(verb, "list") || !strcmp(verb, "count")) {
		if (npos != 2)
			rc = cli_usage_error("%s takes one collection", verb);
		else
			rc = cmd_list(st, pol, &q, !strcmp(verb, "count"));
	} else {
		rc = cli_usage_error("unknown verb '%s'", verb);
	}
out:
	store_close(st);
	policy_free(pol);
	config_fini(&cfg);
	free(q.fields);
	free(fields_buf);
	return rc;
}
