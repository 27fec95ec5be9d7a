/*
 * conf_file.c - configuration and schema files read whole (conf_file.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_file.h"
#include "nbx_err.h"

int
conf_file_read(const char *path, char **text, size_t *len, char *err,
    size_t errlen)
{
	FILE *fp;
	char *buf = NULL;
	size_t n = 0, cap = 0, got;
	int rc = 0;

	*text = NULL;
	*len = 0;
	if (errlen > 0)
		err[0] = '\0';
	if ((fp = fopen(path, "r")) == NULL)
		return nbx_errf(err, errlen, NBX_EIO, "%s: cannot open: %s",
		    path, strerror(errno));
	errno = 0;
	for (;;) {
		if (cap - n < 4096) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *nb;

			if (ncap > CONF_FILE_MAX + 8192)
				ncap = CONF_FILE_MAX + 8192;
			if ((nb = realloc(buf, ncap)) == NULL) {
				rc = nbx_errf(err, errlen, NBX_ENOMEM,
				    "%s: out of memory", path);
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		got = fread(buf + n, 1, cap - n - 1, fp);
		n += got;
		if (n > CONF_FILE_MAX) {
			rc = nbx_errf(err, errlen, NBX_EIO, "%s: larger than %u "
			    "bytes", path, CONF_FILE_MAX);
			goto out;
		}
		if (got == 0)
			break;
	}
	if (ferror(fp)) {
		rc = nbx_errf(err, errlen, NBX_EIO, "%s: read error: %s", path,
		    strerror(errno ? errno : EIO));
		goto out;
	}
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		rc = nbx_errf(err, errlen, NBX_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	fclose(fp);
	return rc;
}

int
conf_schema_load(const char *path, struct policy **out, char *err,
    size_t errlen)
{
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	if ((rc = conf_file_read(path, &text, &len, err, errlen)) != 0)
		return rc;
	rc = policy_load_buf(text, len, path, out, err, errlen);
	free(text);
	return rc;
}
