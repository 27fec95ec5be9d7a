/*
 * nbx_err.h - the one set of error codes used by every nbx module.
 *
 * Functions return 0 on success or one of the negative codes below.  Foreign
 * codes (MDB_*, SSL_get_error, UV_E*) are translated where they enter, so a
 * caller never has to know which library failed.
 */
#ifndef NBX_ERR_H
#define NBX_ERR_H

#include <stddef.h>

enum nbx_err {
	NBX_OK = 0,
	NBX_EINVAL = -1,	/* bad argument (programmer or user input) */
	NBX_ENOMEM = -2,	/* allocation failed */
	NBX_EAGAIN = -3,	/* incomplete: more bytes are needed */
	NBX_ETOOBIG = -4,	/* a declared length or count is over its cap */
	NBX_EMALFORMED = -5,	/* bytes do not form a valid encoding */
	NBX_EDEPTH = -6,	/* nesting deeper than allowed */
	NBX_ENOTFOUND = -7,	/* no such record, key or entry */
	NBX_EIO = -8,		/* file or system error */
	NBX_EMAPFULL = -9,	/* LMDB map full and could not grow */
	NBX_ESTORE = -10,	/* other LMDB failure */
	NBX_ESCHEMA = -11,	/* schema file is invalid */
	NBX_ECONFIG = -12,	/* node configuration is invalid */
	NBX_ECOLL = -13,	/* unknown collection */
	NBX_EFIELD = -14,	/* unknown field */
	NBX_ETYPE = -15,	/* value has the wrong type */
	NBX_ELIMIT = -16,	/* value outside the schema's limits */
	NBX_EWRITER = -17,	/* origin may not write this field */
	NBX_EAUDIENCE = -18,	/* audience missing, or does not hold this node */
	NBX_EDRIFT = -19,	/* remote clock too far ahead of ours */
	NBX_EERASED = -20,	/* record is erased; nothing may be written */
	NBX_ELOCAL = -21,	/* field is share=local and cannot arrive from a peer */
	NBX_ETLS = -22,		/* TLS failure */
	NBX_EPEER = -23,	/* peer identity or protocol violation */
	NBX_ECLOSED = -24,	/* connection or session closed */
	NBX_EEXIST = -25,	/* already exists */
	NBX_EVERSION = -26,	/* unsupported version */
	NBX_EPERM = -27,	/* not permitted */
};

/* Returns a static, human-readable description of an NBX_E* code. */
const char *nbx_strerror(int err);

/*
 * Formats a message into err (when err is non-NULL and errlen > 0; always
 * NUL-terminated) and returns code, so a failure reads
 * `return nbx_errf(err, errlen, NBX_EIO, "%s: %s", path, why);`.
 */
int nbx_errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
