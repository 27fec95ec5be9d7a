/*
 * testlib.h - small helpers shared by the unit tests: a compact test
 * schema, temporary directories, change builders, and the seeded
 * generator of the property tests.
 */
#ifndef NBX_TESTLIB_H
#define NBX_TESTLIB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "change.h"
#include "policy.h"

/* A schema with one field of each sharing rule. */
static const char TEST_SCHEMA[] =
    "[t]\n"
    "[t.name]\ntype = string\nmax = 64\nshare = region\n"
    "[t.count]\ntype = int\nmin = 0\nmax = 1000\nshare = region\n"
    "[t.tags]\ntype = set\nshare = region\n"
    "[t.note]\ntype = string\nshare = local\n"
    "[t.secret]\ntype = string\nshare = audience\n"
    "[t.status]\ntype = enum\nvalues = a, b, c\nshare = audience\n"
    "writers = audience\n";

static inline struct policy *
test_policy(void)
{
	struct policy *p = NULL;
	char err[256];

	if (policy_load_string(TEST_SCHEMA, "test-schema", &p, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "test schema: %s\n", err);
		abort();
	}
	return p;
}

/*
 * Property tests: the next value of a xorshift64 generator (state never
 * 0), and a seed from NBX_SEED or else the time, for the test to print.
 */
static inline uint64_t
test_xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static inline unsigned
test_seed(void)
{
	const char *env = getenv("NBX_SEED");

	return env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
}

/* A fresh directory under /tmp; the caller removes it with test_rmdir. */
static inline char *
test_tmpdir(void)
{
	char *d = strdup("/tmp/nbx-test-XXXXXX");

	if (d == NULL || mkdtemp(d) == NULL)
		abort();
	return d;
}

static inline void
test_rmdir(char *d)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", d);
	free(d);
}

static inline struct change
test_change(enum change_kind k, const char *id, const char *field)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = k;
	c.coll = nbx_str_c("t");
	c.id = nbx_str_c(id);
	c.field = nbx_str_c(field ? field : "");
	return c;
}

static inline struct change
test_str(const char *id, const char *field, const char *v)
{
	struct change c = test_change(CHANGE_FIELD, id, field);

	c.val.t = NBX_V_STR;
	c.val.s = nbx_str_c(v);
	return c;
}

#endif
