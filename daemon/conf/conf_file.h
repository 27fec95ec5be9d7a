/*
 * conf_file.h - reading the configuration files (the node's nbx.conf and
 * the regional schema) into memory for the pure parsers of proto/, which
 * do no I/O themselves.
 */
#ifndef NBX_CONF_FILE_H
#define NBX_CONF_FILE_H

#include <stddef.h>

#include "policy.h"

/* The largest configuration or schema file read, in bytes. */
#define CONF_FILE_MAX	(4u << 20)

/*
 * Reads the whole file at `path`.  Returns 0 with *text (malloc'd, owned
 * by the caller, NUL-terminated after its *len bytes, which may hold NUL
 * bytes of their own), or NBX_EIO ("PATH: cannot open: ...", "PATH: read
 * error: ...", "PATH: larger than N bytes") or NBX_ENOMEM with the
 * message in err (always NUL-terminated when errlen > 0); *text is then
 * NULL.
 */
int conf_file_read(const char *path, char **text, size_t *len, char *err,
    size_t errlen);

/*
 * Reads and parses the schema file at `path` (conf_file_read, then
 * policy_load_buf).  Returns 0 and *out (free with policy_free), or
 * NBX_EIO, NBX_ESCHEMA or NBX_ENOMEM with "PATH:LINE: what is wrong" in
 * err, *out NULL.
 */
int conf_schema_load(const char *path, struct policy **out, char *err,
    size_t errlen);

#endif
