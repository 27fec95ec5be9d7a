/*
 * jarena.h - bump allocation for the JSON trees of queued control
 * requests.
 *
 * jansson allocates every value, key and table of a tree with its own
 * malloc, and frees them one by one: an import request of thousands of
 * writes is tens of thousands of small blocks, and malloc and free cost
 * nbxd about as much as the parse itself.  While a thread is between
 * jarena_enter and jarena_leave, jansson's allocations on that thread
 * come from the arena and its frees of them do nothing; jarena_free then
 * returns the whole arena at once.  Everywhere else jansson allocates
 * with malloc as before.
 *
 * A tree parsed in an arena may be read on any thread (one at a time)
 * until jarena_free; nothing of it may be kept after that.  Allocations
 * made while outside any arena are independent of it (a reply built from
 * the request's strings copies them).
 */
#ifndef NBX_JARENA_H
#define NBX_JARENA_H

#include <jansson.h>
#include <stddef.h>

struct jarena;

/*
 * Routes jansson's allocations through this module.  Call once, before
 * jansson allocates anything in the process (nbxd's main does, first
 * thing); without it the arenas are never used and every function below
 * still works.  Returns 0.
 */
int jarena_install(void);

/* A new, empty arena; NULL when out of memory.  Free with jarena_free. */
struct jarena *jarena_new(void);

/*
 * jansson's allocations on this thread come from a until jarena_leave.
 * Not nested.
 */
void jarena_enter(struct jarena *a);
void jarena_leave(void);

/* Releases a and everything allocated in it; a may be NULL. */
void jarena_free(struct jarena *a);

/*
 * Drops tree, parsed while in a, and a with it: one release of the arena
 * instead of a free per value (without jarena_install, or with a NULL,
 * the tree came from malloc and is decref'd).  Either may be NULL.
 */
void jarena_drop_tree(struct jarena *a, json_t *tree);

/* Bytes a holds from the system (tests, metrics). */
size_t jarena_size(const struct jarena *a);

/* Frees a string jansson returned (json_dumps), installed or not. */
void jarena_json_free(void *p);

#endif
