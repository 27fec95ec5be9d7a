/*
 * ca.c - the regional CA: key and certificate generation, issuance,
 * revocation and CRLs, with the OpenSSL 3 API.  See ca.h for the directory
 * layout.  Private keys are written only to files created O_EXCL with mode
 * 0600, so a key is never, even briefly, readable by anyone else.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "pki.h"
#include "change.h"
#include "nbx_err.h"

#define CA_CN		"nbx regional CA"
#define URN_PREFIX	"urn:nbx:node:"
#define SERIAL_HEX_MAX	64	/* a 20-octet serial is 40 hex digits */
#define INDEX_MAX	(64u << 20)	/* refuse absurd index files */

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

static int
path_join(char *out, const char *dir, const char *name, char *err,
    size_t errlen)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);

	if (n < 0 || n >= PATH_MAX)
		return nbx_errf(err, errlen, NBX_EINVAL, "%s/%s: path too long",
		    dir, name);
	return 0;
}

/* Creates `dir` with mode 0700, or accepts an existing directory. */
static int
dir_make(const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	return nbx_errf(err, errlen, NBX_EIO, "%s: cannot create directory: %s",
	    dir, strerror(errno));
}

/* Makes renames and creations in `dir` durable; best effort. */
static void
dir_sync(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* How file_write creates its file. */
enum wmode {
	W_EXCL,		/* O_EXCL: fail with NBX_EEXIST if it exists */
	W_TRUNC,	/* create or truncate in place */
	W_ATOMIC,	/* write path.tmp, fsync, rename over path */
};

/*
 * Writes `path` with `mode` fixed at creation (never chmod'ed later) by
 * calling wr(f, obj), then flushes and fsyncs.  Private keys go through
 * W_EXCL with 0600, so they are never readable by anyone else, even
 * briefly.  wr returns nonzero on success; a failing wr is reported as an
 * OpenSSL encoding error.  On failure nothing is left at path (W_EXCL,
 * W_ATOMIC) or a truncated file is (W_TRUNC; callers unlink it).
 */
static int
file_write(const char *path, enum wmode how, mode_t mode,
    int (*wr)(FILE *, const void *), const void *obj, char *err,
    size_t errlen)
{
	char tmp[PATH_MAX];
	const char *p = path;
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC, fd, n, rc = 0, e;
	FILE *f;

	if (how == W_ATOMIC) {
		n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
		if (n < 0 || (size_t)n >= sizeof tmp)
			return nbx_errf(err, errlen, NBX_EINVAL, "%s: path too long",
			    path);
		p = tmp;
	}
	flags |= how == W_EXCL ? O_EXCL : O_TRUNC;
	if ((fd = open(p, flags, mode)) < 0) {
		if (errno == EEXIST)
			return nbx_errf(err, errlen, NBX_EEXIST,
			    "%s: already exists; refusing to overwrite it", p);
		return nbx_errf(err, errlen, NBX_EIO, "%s: cannot create: %s", p,
		    strerror(errno));
	}
	if ((f = fdopen(fd, "w")) == NULL) {
		e = errno;
		close(fd);
		rc = nbx_errf(err, errlen, NBX_EIO, "%s: %s", p, strerror(e));
		goto out;
	}
	if (!wr(f, obj)) {
		fclose(f);
		rc = nbx_errf(err, errlen, NBX_ETLS, "%s: cannot encode: %s", p,
		    pki_openssl_reason());
		goto out;
	}
	n = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
	e = errno;
	if (fclose(f) != 0 && !n) {
		n = 1;
		e = errno;
	}
	if (n) {
		rc = nbx_errf(err, errlen, NBX_EIO, "%s: write failed: %s", p,
		    strerror(e));
		goto out;
	}
	if (how == W_ATOMIC && rename(tmp, path) != 0)
		rc = nbx_errf(err, errlen, NBX_EIO, "%s: cannot rename into place: %s",
		    path, strerror(errno));
out:
	if (rc != 0 && how != W_TRUNC)
		unlink(p);
	return rc;
}

/* Writers for file_write. */
static int
wr_key(FILE *f, const void *obj)
{
	return PEM_write_PrivateKey(f, (EVP_PKEY *)obj, NULL, NULL, 0, NULL,
	    NULL);
}

static int
wr_cert(FILE *f, const void *obj)
{
	return PEM_write_X509(f, (X509 *)obj);
}

static int
wr_crl(FILE *f, const void *obj)
{
	return PEM_write_X509_CRL(f, (X509_CRL *)obj);
}

static int
wr_text(FILE *f, const void *obj)
{
	return fputs(obj, f) >= 0;
}

/*
 * Reads the first PEM private key (key != 0) or certificate from `path`.
 * Returns it, or NULL with the reason, naming the file, in err.
 */
static void *
pem_load(const char *path, int key, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	void *obj;

	if (f == NULL) {
		nbx_errf(err, errlen, NBX_EIO, "%s: cannot open: %s", path,
		    strerror(errno));
		return NULL;
	}
	obj = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL) :
	    (void *)PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (obj == NULL)
		nbx_errf(err, errlen, NBX_EIO, "%s: not a PEM %s: %s", path,
		    key ? "private key" : "certificate", pki_openssl_reason());
	return obj;
}

/* Loads dir/ca.key and dir/ca.crt and checks that they belong together. */
static int
ca_load(const char *dir, EVP_PKEY **key, X509 **crt, char *err,
    size_t errlen)
{
	char kpath[PATH_MAX], cpath[PATH_MAX];
	int rc;

	*key = NULL;
	*crt = NULL;
	if ((rc = path_join(kpath, dir, "ca.key", err, errlen)) != 0 ||
	    (rc = path_join(cpath, dir, "ca.crt", err, errlen)) != 0)
		return rc;
	if ((*key = pem_load(kpath, 1, err, errlen)) == NULL ||
	    (*crt = pem_load(cpath, 0, err, errlen)) == NULL) {
		rc = NBX_EIO;
	} else if (X509_check_private_key(*crt, *key) != 1) {
		ERR_clear_error();
		rc = nbx_errf(err, errlen, NBX_EINVAL,
		    "%s does not match the key in %s", cpath, kpath);
	}
	if (rc != 0) {
		EVP_PKEY_free(*key);
		X509_free(*crt);
		*key = NULL;
		*crt = NULL;
	}
	return rc;
}

/* Exclusive lock on the CA directory, released by closing *fd. */
static int
ca_lock(const char *dir, int *fd, char *err, size_t errlen)
{
	int rc = 0;

	*fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0 || flock(*fd, LOCK_EX) != 0) {
		rc = nbx_errf(err, errlen, NBX_EIO, "%s: cannot lock: %s", dir,
		    strerror(errno));
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Certificates                                                        */
/* ------------------------------------------------------------------ */

static EVP_PKEY *
key_gen(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* Sets a random, positive, non-zero 128-bit serial number. */
static int
serial_rand(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn = NULL;
	int ok = 0;

	do {
		if (RAND_bytes(b, sizeof b) != 1)
			return 0;
		BN_free(bn);
		if ((bn = BN_bin2bn(b, sizeof b, NULL)) == NULL)
			return 0;
	} while (BN_is_zero(bn));
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok;
}

/* The serial `ai` as uppercase hex in out; 0 if it does not fit. */
static int
serial_hex(const ASN1_INTEGER *ai, char out[SERIAL_HEX_MAX])
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
	char *h = bn ? BN_bn2hex(bn) : NULL;
	int ok = h && strlen(h) < SERIAL_HEX_MAX;

	if (ok)
		strcpy(out, h);
	OPENSSL_free(h);
	BN_free(bn);
	return ok;
}

static int
ext_add(X509 *x, X509V3_CTX *v3, int nid, const char *val)
{
	X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, v3, nid, val);
	int ok = e && X509_add_ext(x, e, -1);

	X509_EXTENSION_free(e);
	return ok;
}

/*
 * Builds and signs a certificate for `subj_key` named CN=`cn`.  issuer ==
 * NULL makes a self-signed CA certificate; otherwise a node certificate
 * for node id `cn` signed by issuer/`sign_key`.  Validity: notBefore =
 * now + nb_off seconds, notAfter = notBefore + days.
 */
static X509 *
cert_make(X509 *issuer, EVP_PKEY *sign_key, EVP_PKEY *subj_key,
    const char *cn, long nb_off, unsigned days)
{
	X509 *x = X509_new();
	X509_NAME *name = NULL;
	X509V3_CTX v3;
	char san[sizeof URN_PREFIX + NBX_ID_MAX];
	int ok = 0;

	if (x == NULL || !X509_set_version(x, X509_VERSION_3) ||
	    !serial_rand(x))
		goto out;
	if ((name = X509_NAME_new()) == NULL ||
	    !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_subject_name(x, name) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) :
	    name))
		goto out;
	if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, nb_off, NULL) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, nb_off, NULL))
		goto out;
	if (!X509_set_pubkey(x, subj_key))
		goto out;
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	X509V3_set_ctx_nodb(&v3);
	if (!ext_add(x, &v3, NID_subject_key_identifier, "hash"))
		goto out;
	if (issuer == NULL) {
		ok = ext_add(x, &v3, NID_basic_constraints, "critical,CA:TRUE") &&
		    ext_add(x, &v3, NID_key_usage,
		    "critical,keyCertSign,cRLSign");
	} else {
		snprintf(san, sizeof san, "URI:%s%s", URN_PREFIX, cn);
		ok = ext_add(x, &v3, NID_authority_key_identifier,
		    "keyid:always") &&
		    ext_add(x, &v3, NID_basic_constraints, "critical,CA:FALSE") &&
		    ext_add(x, &v3, NID_key_usage, "critical,digitalSignature") &&
		    ext_add(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth") &&
		    ext_add(x, &v3, NID_subject_alt_name, san);
	}
	ok = ok && X509_sign(x, sign_key, EVP_sha256()) > 0;
out:
	X509_NAME_free(name);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

int
ca_spki_pin(X509 *cert, uint8_t out[32])
{
	return pki_spki_pin(cert, out);
}

int
ca_spki_pin_file(const char *cert_path, uint8_t out[32])
{
	X509 *x = NULL;
	int rc;

	if (cert_path == NULL)
		return NBX_EINVAL;
	if ((x = pem_load(cert_path, 0, NULL, 0)) == NULL)
		return NBX_EIO;
	rc = ca_spki_pin(x, out);
	X509_free(x);
	return rc;
}

void
ca_pin_hex(const uint8_t pin[32], char hex[65])
{
	nbx_hex(pin, 32, hex);
}

/* ------------------------------------------------------------------ */
/* The index of issued certificates                                    */
/* ------------------------------------------------------------------ */

struct idx_ent {
	char serial[SERIAL_HEX_MAX];
	char node[NBX_ID_MAX + 1];
	int revoked;
	long long rtime;	/* revocation time, Unix seconds */
};

struct idx {
	struct idx_ent *v;
	size_t n, cap;
};

static void
idx_free(struct idx *ix)
{
	free(ix->v);
	ix->v = NULL;
	ix->n = ix->cap = 0;
}

static int
idx_push(struct idx *ix, const struct idx_ent *e)
{
	if (ix->n == ix->cap) {
		size_t cap = ix->cap ? 2 * ix->cap : 64;
		struct idx_ent *v = realloc(ix->v, cap * sizeof *v);

		if (v == NULL)
			return NBX_ENOMEM;
		ix->v = v;
		ix->cap = cap;
	}
	ix->v[ix->n++] = *e;
	return 0;
}

/* Parses one index line (without its newline) into *e; 0 or -1. */
static int
idx_parse(const char *line, struct idx_ent *e)
{
	char st[8], rt[24], *end;
	int used = -1;

	memset(e, 0, sizeof *e);
	if (sscanf(line, "%63[^\t]\t%32[^\t]\t%7[^\t]\t%23[^\t]%n", e->serial,
	    e->node, st, rt, &used) != 4 || used < 0 || line[used] != '\0')
		return -1;
	if (strcmp(st, "valid") == 0)
		return strcmp(rt, "-") == 0 ? 0 : -1;
	if (strcmp(st, "revoked") != 0)
		return -1;
	e->revoked = 1;
	errno = 0;
	e->rtime = strtoll(rt, &end, 10);
	return (errno || *end || end == rt || e->rtime < 0) ? -1 : 0;
}

static int
idx_load(const char *path, struct idx *ix, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0, total = 0;
	ssize_t n;
	unsigned lineno = 0;
	struct idx_ent e;
	int rc = 0;

	memset(ix, 0, sizeof *ix);
	if (f == NULL)
		return nbx_errf(err, errlen, NBX_EIO, "%s: cannot open: %s", path,
		    strerror(errno));
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		total += (size_t)n;
		if (total > INDEX_MAX) {
			rc = nbx_errf(err, errlen, NBX_EIO, "%s: too large", path);
			goto out;
		}
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (idx_parse(line, &e) != 0) {
			rc = nbx_errf(err, errlen, NBX_EIO, "%s:%u: malformed line",
			    path, lineno);
			goto out;
		}
		if ((rc = idx_push(ix, &e)) != 0) {
			nbx_errf(err, errlen, rc, "%s: out of memory", path);
			goto out;
		}
	}
	if (ferror(f))
		rc = nbx_errf(err, errlen, NBX_EIO, "%s: read failed", path);
out:
	free(line);
	fclose(f);
	if (rc != 0)
		idx_free(ix);
	return rc;
}

static const char idx_header[] = "# serial\tnode\tstatus\trevoked_at\n";

static int
wr_idx(FILE *f, const void *obj)
{
	const struct idx *ix = obj;
	int ok = fputs(idx_header, f) >= 0;

	for (size_t i = 0; ok && i < ix->n; i++) {
		const struct idx_ent *e = &ix->v[i];

		if (e->revoked)
			ok = fprintf(f, "%s\t%s\trevoked\t%lld\n", e->serial,
			    e->node, e->rtime) > 0;
		else
			ok = fprintf(f, "%s\t%s\tvalid\t-\n", e->serial,
			    e->node) > 0;
	}
	return ok;
}

/*
 * Applies `e` to dir/index.txt under the CA lock: the entry with the same
 * serial is marked revoked (keeping an earlier revocation time), or `e` is
 * appended if its serial is new.  The file is rewritten atomically.
 */
static int
idx_update(const char *dir, const struct idx_ent *e, char *err,
    size_t errlen)
{
	char path[PATH_MAX];
	struct idx ix = { 0 };
	int rc, lockfd = -1, found = 0;

	if ((rc = path_join(path, dir, "index.txt", err, errlen)) != 0 ||
	    (rc = ca_lock(dir, &lockfd, err, errlen)) != 0 ||
	    (rc = idx_load(path, &ix, err, errlen)) != 0)
		goto out;
	for (size_t i = 0; i < ix.n; i++) {
		if (strcmp(ix.v[i].serial, e->serial) != 0)
			continue;
		found = 1;
		if (e->revoked && !ix.v[i].revoked) {
			ix.v[i].revoked = 1;
			ix.v[i].rtime = e->rtime;
		}
	}
	if (!found && (rc = idx_push(&ix, e)) != 0) {
		nbx_errf(err, errlen, rc, "%s: out of memory", path);
		goto out;
	}
	rc = file_write(path, W_ATOMIC, 0600, wr_idx, &ix, err, errlen);
out:
	if (lockfd >= 0)
		close(lockfd);
	idx_free(&ix);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Public operations                                                   */
/* ------------------------------------------------------------------ */

int
ca_init(const char *dir, char *err, size_t errlen)
{
	char kpath[PATH_MAX], cpath[PATH_MAX], ipath[PATH_MAX], npath[PATH_MAX];
	struct idx empty = { 0 };
	EVP_PKEY *key = NULL;
	X509 *crt = NULL;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (dir == NULL || *dir == '\0')
		return nbx_errf(err, errlen, NBX_EINVAL, "no CA directory given");
	if ((rc = path_join(kpath, dir, "ca.key", err, errlen)) != 0 ||
	    (rc = path_join(cpath, dir, "ca.crt", err, errlen)) != 0 ||
	    (rc = path_join(ipath, dir, "index.txt", err, errlen)) != 0 ||
	    (rc = path_join(npath, dir, "crlnumber", err, errlen)) != 0)
		return rc;
	if (access(kpath, F_OK) == 0)
		return nbx_errf(err, errlen, NBX_EEXIST,
		    "%s: already exists; refusing to replace a CA", kpath);
	if ((rc = dir_make(dir, err, errlen)) != 0)
		return rc;
	if ((key = key_gen()) == NULL ||
	    (crt = cert_make(NULL, key, key, CA_CN, -CA_BACKDATE_S,
	    CA_CA_DAYS)) == NULL) {
		rc = nbx_errf(err, errlen, NBX_ETLS,
		    "cannot generate the CA key and certificate: %s",
		    pki_openssl_reason());
		goto out;
	}
	/*
	 * ca.key goes first, with O_EXCL: of two concurrent inits, the loser
	 * stops here before it touches any other file.
	 */
	if ((rc = file_write(kpath, W_EXCL, 0600, wr_key, key, err,
	    errlen)) != 0) {
		if (rc == NBX_EEXIST)
			nbx_errf(err, errlen, rc,
			    "%s: already exists; refusing to replace a CA",
			    kpath);
		goto out;
	}
	if ((rc = file_write(cpath, W_ATOMIC, 0644, wr_cert, crt, err,
	    errlen)) != 0 ||
	    (rc = file_write(ipath, W_ATOMIC, 0600, wr_idx, &empty, err,
	    errlen)) != 0 ||
	    (rc = file_write(npath, W_ATOMIC, 0600, wr_text, "1\n", err,
	    errlen)) != 0) {
		unlink(ipath);
		unlink(cpath);
		unlink(kpath);
		goto out;
	}
	dir_sync(dir);
out:
	X509_free(crt);
	EVP_PKEY_free(key);
	return rc;
}

int
ca_issue(const char *dir, const char *node_id, const char *out_dir,
    unsigned days, char pin_hex[65], char *err, size_t errlen)
{
	struct ca_issue_opts o = { days, -CA_BACKDATE_S };

	return ca_issue_ex(dir, node_id, out_dir, &o, pin_hex, err, errlen);
}

int
ca_issue_ex(const char *dir, const char *node_id, const char *out_dir,
    const struct ca_issue_opts *opts, char pin_hex[65], char *err,
    size_t errlen)
{
	char kpath[PATH_MAX], cpath[PATH_MAX], apath[PATH_MAX];
	struct ca_issue_opts o = { CA_NODE_DAYS, -CA_BACKDATE_S };
	struct idx_ent e;
	EVP_PKEY *cakey = NULL, *key = NULL;
	X509 *cacrt = NULL, *crt = NULL;
	uint8_t pin[32];
	int rc, have_key = 0;

	if (pin_hex)
		pin_hex[0] = '\0';
	if (err && errlen)
		err[0] = '\0';
	if (dir == NULL || out_dir == NULL || pin_hex == NULL)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "missing CA directory or output directory");
	if (node_id == NULL || !nbx_node_id_valid(nbx_str_c(node_id)))
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "invalid node id '%s': need 1-32 of [a-z0-9-]",
		    node_id ? node_id : "");
	if (opts) {
		o = *opts;
		if (o.days == 0)
			o.days = CA_NODE_DAYS;
	}
	if (o.days > CA_DAYS_MAX)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "validity of %u days is over the limit of %u", o.days,
		    CA_DAYS_MAX);
	if ((rc = path_join(kpath, out_dir, "node.key", err, errlen)) != 0 ||
	    (rc = path_join(cpath, out_dir, "node.crt", err, errlen)) != 0 ||
	    (rc = path_join(apath, out_dir, "ca.crt", err, errlen)) != 0)
		return rc;
	if (access(kpath, F_OK) == 0)
		return nbx_errf(err, errlen, NBX_EEXIST,
		    "%s: already exists; refusing to overwrite it", kpath);
	if ((rc = ca_load(dir, &cakey, &cacrt, err, errlen)) != 0)
		return rc;
	if ((key = key_gen()) == NULL ||
	    (crt = cert_make(cacrt, cakey, key, node_id, o.not_before_offset_s,
	    o.days)) == NULL ||
	    ca_spki_pin(crt, pin) != 0) {
		rc = nbx_errf(err, errlen, NBX_ETLS,
		    "cannot generate the key and certificate for '%s': %s",
		    node_id, pki_openssl_reason());
		goto out;
	}
	memset(&e, 0, sizeof e);
	if (!serial_hex(X509_get0_serialNumber(crt), e.serial)) {
		rc = nbx_errf(err, errlen, NBX_ETLS, "cannot format the serial");
		goto out;
	}
	strcpy(e.node, node_id);
	if ((rc = dir_make(out_dir, err, errlen)) != 0 ||
	    (rc = file_write(kpath, W_EXCL, 0600, wr_key, key, err,
	    errlen)) != 0)
		goto out;
	have_key = 1;
	/* Recorded before the certificate leaves the CA. */
	if ((rc = idx_update(dir, &e, err, errlen)) != 0 ||
	    (rc = file_write(cpath, W_TRUNC, 0644, wr_cert, crt, err,
	    errlen)) != 0 ||
	    (rc = file_write(apath, W_TRUNC, 0644, wr_cert, cacrt, err,
	    errlen)) != 0)
		goto out;
	dir_sync(out_dir);
	ca_pin_hex(pin, pin_hex);
out:
	if (rc != 0 && have_key) {
		unlink(apath);
		unlink(cpath);
		unlink(kpath);
	}
	X509_free(crt);
	X509_free(cacrt);
	EVP_PKEY_free(key);
	EVP_PKEY_free(cakey);
	return rc;
}

int
ca_revoke(const char *dir, const char *cert_path, char *err, size_t errlen)
{
	char cpath[PATH_MAX];
	X509 *cacrt = NULL, *x = NULL;
	struct idx_ent e;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (dir == NULL || cert_path == NULL)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "missing CA directory or certificate");
	if ((rc = path_join(cpath, dir, "ca.crt", err, errlen)) != 0)
		return rc;
	if ((cacrt = pem_load(cpath, 0, err, errlen)) == NULL ||
	    (x = pem_load(cert_path, 0, err, errlen)) == NULL) {
		rc = NBX_EIO;
		goto out;
	}
	if (X509_check_issued(cacrt, x) != X509_V_OK ||
	    X509_verify(x, X509_get0_pubkey(cacrt)) != 1) {
		ERR_clear_error();
		rc = nbx_errf(err, errlen, NBX_EINVAL,
		    "%s: not issued by the CA in %s", cert_path, dir);
		goto out;
	}
	/*
	 * A certificate we signed but did not record (index restored from
	 * a backup, say) is added as revoked, under node "-".
	 */
	memset(&e, 0, sizeof e);
	strcpy(e.node, "-");
	e.revoked = 1;
	e.rtime = (long long)time(NULL);
	if (!serial_hex(X509_get0_serialNumber(x), e.serial)) {
		rc = nbx_errf(err, errlen, NBX_EINVAL, "%s: serial number too long",
		    cert_path);
		goto out;
	}
	rc = idx_update(dir, &e, err, errlen);
out:
	X509_free(x);
	X509_free(cacrt);
	return rc;
}

int
ca_crl(const char *dir, const char *out_path, unsigned days, char *err,
    size_t errlen)
{
	struct ca_crl_opts o = { days, -CA_BACKDATE_S };

	return ca_crl_ex(dir, out_path, &o, err, errlen);
}

/* Reads dir/crlnumber (1 when missing) and stores the next value. */
static int
crlnum_next(const char *path, long long *num, char *err, size_t errlen)
{
	char buf[32];
	FILE *f = fopen(path, "re");
	int n;

	*num = 1;
	if (f == NULL && errno != ENOENT)
		return nbx_errf(err, errlen, NBX_EIO, "%s: cannot open: %s", path,
		    strerror(errno));
	if (f) {
		n = fscanf(f, "%lld", num);
		fclose(f);
		if (n != 1 || *num < 1 || *num >= LLONG_MAX)
			return nbx_errf(err, errlen, NBX_EIO, "%s: malformed", path);
	}
	snprintf(buf, sizeof buf, "%lld\n", *num + 1);
	return file_write(path, W_ATOMIC, 0600, wr_text, buf, err, errlen);
}

/* Adds one revoked entry to `crl`. */
static int
crl_add(X509_CRL *crl, const struct idx_ent *e)
{
	X509_REVOKED *r = X509_REVOKED_new();
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	ASN1_TIME *t = NULL;
	int ok = 0;

	if (r == NULL || !BN_hex2bn(&bn, e->serial) ||
	    (ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
	    (t = ASN1_TIME_set(NULL, (time_t)e->rtime)) == NULL ||
	    !X509_REVOKED_set_serialNumber(r, ai) ||
	    !X509_REVOKED_set_revocationDate(r, t) ||
	    !X509_CRL_add0_revoked(crl, r))
		goto out;
	r = NULL;	/* now owned by the CRL */
	ok = 1;
out:
	X509_REVOKED_free(r);
	ASN1_TIME_free(t);
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return ok;
}

int
ca_crl_ex(const char *dir, const char *out_path,
    const struct ca_crl_opts *opts, char *err, size_t errlen)
{
	char ipath[PATH_MAX], npath[PATH_MAX];
	struct ca_crl_opts o = { CA_CRL_DAYS, -CA_BACKDATE_S };
	EVP_PKEY *cakey = NULL;
	X509 *cacrt = NULL;
	X509_CRL *crl = NULL;
	X509_EXTENSION *aki = NULL;
	ASN1_TIME *t = NULL;
	ASN1_INTEGER *num = NULL;
	X509V3_CTX v3;
	struct idx ix = { 0 };
	long long crlnum;
	int rc, lockfd = -1;

	if (err && errlen)
		err[0] = '\0';
	if (dir == NULL || out_path == NULL)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "missing CA directory or output file");
	if (opts) {
		o = *opts;
		if (o.days == 0)
			o.days = CA_CRL_DAYS;
	}
	if (o.days > CA_DAYS_MAX)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "CRL lifetime of %u days is over the limit of %u", o.days,
		    CA_DAYS_MAX);
	if ((rc = path_join(ipath, dir, "index.txt", err, errlen)) != 0 ||
	    (rc = path_join(npath, dir, "crlnumber", err, errlen)) != 0)
		return rc;
	if ((rc = ca_load(dir, &cakey, &cacrt, err, errlen)) != 0)
		return rc;
	if ((rc = ca_lock(dir, &lockfd, err, errlen)) != 0 ||
	    (rc = idx_load(ipath, &ix, err, errlen)) != 0 ||
	    (rc = crlnum_next(npath, &crlnum, err, errlen)) != 0)
		goto out;
	rc = NBX_ETLS;
	if ((crl = X509_CRL_new()) == NULL ||
	    !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(cacrt)) ||
	    (t = ASN1_TIME_new()) == NULL ||
	    !X509_time_adj_ex(t, 0, o.last_update_offset_s, NULL) ||
	    !X509_CRL_set1_lastUpdate(crl, t) ||
	    !X509_time_adj_ex(t, (int)o.days, o.last_update_offset_s, NULL) ||
	    !X509_CRL_set1_nextUpdate(crl, t))
		goto ossl;
	for (size_t i = 0; i < ix.n; i++)
		if (ix.v[i].revoked && !crl_add(crl, &ix.v[i]))
			goto ossl;
	if ((num = ASN1_INTEGER_new()) == NULL ||
	    !ASN1_INTEGER_set_int64(num, crlnum) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
		goto ossl;
	X509V3_set_ctx(&v3, cacrt, NULL, NULL, crl, 0);
	X509V3_set_ctx_nodb(&v3);
	if ((aki = X509V3_EXT_nconf_nid(NULL, &v3,
	    NID_authority_key_identifier, "keyid:always")) == NULL ||
	    !X509_CRL_add_ext(crl, aki, -1))
		goto ossl;
	if (!X509_CRL_sort(crl) || X509_CRL_sign(crl, cakey, EVP_sha256()) <= 0)
		goto ossl;
	rc = file_write(out_path, W_ATOMIC, 0644, wr_crl, crl, err, errlen);
	goto out;
ossl:
	nbx_errf(err, errlen, rc, "%s: cannot build the CRL: %s", out_path,
	    pki_openssl_reason());
out:
	if (lockfd >= 0)
		close(lockfd);
	idx_free(&ix);
	X509_EXTENSION_free(aki);
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	X509_free(cacrt);
	EVP_PKEY_free(cakey);
	return rc;
}
