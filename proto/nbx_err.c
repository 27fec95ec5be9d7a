/* nbx_err.c - descriptions of the NBX_E* codes. */
#include <stdarg.h>
#include <stdio.h>

#include "nbx_err.h"

int
nbx_errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

const char *
nbx_strerror(int err)
{
	switch (err) {
	case NBX_OK:		return "success";
	case NBX_EINVAL:	return "invalid argument";
	case NBX_ENOMEM:	return "out of memory";
	case NBX_EAGAIN:	return "incomplete input";
	case NBX_ETOOBIG:	return "length or count over its limit";
	case NBX_EMALFORMED:	return "malformed encoding";
	case NBX_EDEPTH:	return "nesting too deep";
	case NBX_ENOTFOUND:	return "not found";
	case NBX_EIO:		return "input/output error";
	case NBX_EMAPFULL:	return "store map full";
	case NBX_ESTORE:	return "store error";
	case NBX_ESCHEMA:	return "invalid schema";
	case NBX_ECONFIG:	return "invalid configuration";
	case NBX_ECOLL:		return "unknown collection";
	case NBX_EFIELD:	return "unknown field";
	case NBX_ETYPE:		return "wrong value type";
	case NBX_ELIMIT:	return "value outside schema limits";
	case NBX_EWRITER:	return "origin may not write this field";
	case NBX_EAUDIENCE:	return "audience missing or without this node";
	case NBX_EDRIFT:	return "clock drift beyond bound";
	case NBX_EERASED:	return "record is erased";
	case NBX_ELOCAL:	return "field is local and may not arrive from a peer";
	case NBX_ETLS:		return "TLS failure";
	case NBX_EPEER:		return "peer protocol or identity violation";
	case NBX_ECLOSED:	return "connection closed";
	case NBX_EEXIST:	return "already exists";
	case NBX_EVERSION:	return "unsupported version";
	case NBX_EPERM:		return "not permitted";
	}
	return "unknown error";
}
