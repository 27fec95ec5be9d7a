/*
 * jarena.c - bump allocation for jansson (see jarena.h).
 *
 * Every block jansson gets carries a 16-byte header saying where it came
 * from, so that the one free function jansson calls can tell an arena's
 * block (nothing to do) from malloc's (free it).  An arena is a list of
 * chunks of at least JA_CHUNK bytes, filled front to back and never
 * reused until the whole arena goes.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "jarena.h"

#define JA_HDR		16		/* keeps blocks 16-byte aligned */
#define JA_CHUNK	(256u << 10)
#define JA_HEAP		UINT64_C(0x6e62782d68656170)	/* "nbx-heap" */
#define JA_ARENA	UINT64_C(0x6e62782d6172656e)	/* "nbx-aren" */

struct ja_chunk {
	struct ja_chunk *next;
	size_t cap, used;
	_Alignas(16) unsigned char data[];
};

struct jarena {
	struct ja_chunk *head;
	size_t bytes;
};

static _Thread_local struct jarena *cur;
static int installed;

static void *
arena_alloc(struct jarena *a, size_t n)
{
	struct ja_chunk *c = a->head;
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (c == NULL || c->cap - c->used < n) {
		size_t cap = n > JA_CHUNK ? n : JA_CHUNK;

		if ((c = malloc(sizeof(*c) + cap)) == NULL)
			return NULL;
		c->cap = cap;
		c->used = 0;
		c->next = a->head;
		a->head = c;
		a->bytes += sizeof(*c) + cap;
	}
	p = c->data + c->used;
	c->used += n;
	return p;
}

static void *
ja_malloc(size_t n)
{
	struct jarena *a = cur;
	uint64_t *h;

	if (n > SIZE_MAX - 2 * JA_HDR)
		return NULL;
	h = a ? arena_alloc(a, n + JA_HDR) : malloc(n + JA_HDR);
	if (h == NULL)
		return NULL;
	h[0] = a ? JA_ARENA : JA_HEAP;
	return (unsigned char *)h + JA_HDR;
}

static void
ja_free(void *p)
{
	uint64_t *h;

	if (p == NULL)
		return;
	h = (uint64_t *)(void *)((unsigned char *)p - JA_HDR);
	if (h[0] == JA_HEAP)
		free(h);
	else if (h[0] != JA_ARENA)
		abort();	/* not ours: allocated before jarena_install */
}

int
jarena_install(void)
{
	json_set_alloc_funcs(ja_malloc, ja_free);
	installed = 1;
	return 0;
}

struct jarena *
jarena_new(void)
{
	return calloc(1, sizeof(struct jarena));
}

void
jarena_enter(struct jarena *a)
{
	cur = a;
}

void
jarena_leave(void)
{
	cur = NULL;
}

void
jarena_free(struct jarena *a)
{
	struct ja_chunk *c, *next;

	if (a == NULL)
		return;
	for (c = a->head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(a);
}

void
jarena_drop_tree(struct jarena *a, json_t *tree)
{
	if (!installed || a == NULL)
		json_decref(tree);	/* it came from malloc after all */
	jarena_free(a);
}

size_t
jarena_size(const struct jarena *a)
{
	return a ? a->bytes : 0;
}

void
jarena_json_free(void *p)
{
	if (installed)
		ja_free(p);
	else
		free(p);
}
